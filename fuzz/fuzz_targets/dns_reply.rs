//! The TXT fast path's reply checks (src/resolver/wire.rs): any datagram, from any
//! sender, gives an answer, "not ours" or "ask the full resolver", never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::wire::{txt_query, txt_reply, Reply, MAX_QUERY};

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the id the reply is checked against, so that the fuzzer
    // reaches past the id check; the name is fixed.
    let name = "_mta-sts.example.com";
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    match txt_reply(id, name, data) {
        Reply::Answer(Ok(records)) => assert!(!records.is_empty()),
        Reply::Answer(Err(_)) | Reply::NotOurs | Reply::Defer(_) => {}
    }
    // Our own query is never taken for a reply to itself.
    let mut buf = [0u8; MAX_QUERY];
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some(n) = txt_query(id, name, &mut buf) {
            assert!(n <= MAX_QUERY);
            assert_eq!(txt_reply(id, name, &buf[..n]), Reply::NotOurs);
        }
    }
});
