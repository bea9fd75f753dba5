//! SPEC 5.8: the persisted-cache loader on corrupted or truncated state
//! files. It never panics, keeps only whole and valid entries, reads a valid file
//! exactly as a strict JSON parser does, and reads any truncation of one as a prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::policy::Policy;
use mtastsd_fuzz::salvage::salvage;
use serde::Deserialize;

/// The shape of one saved entry (`Persisted` in src/cache/store.rs: the domain and
/// the flattened `CachedPolicy`, whose `tlsrpt` memo is never saved). The policy and
/// its mx patterns are the real types, validated by their own `Deserialize`.
#[derive(Debug, PartialEq, Deserialize)]
struct Entry {
    domain: String,
    policy: Policy,
    id: String,
    fetched: u64,
}

#[derive(Deserialize)]
struct File {
    #[allow(dead_code)]
    version: u32,
    policies: Vec<Entry>,
}

fuzz_target!(|data: &[u8]| {
    let got = salvage::<Entry>(data);
    // A strict reader of the file's format: serde would also take a struct from a
    // JSON array (`[1, []]`), which is not a state file mtastsd ever writes, and
    // serde_json skips the string of an unknown field without checking its UTF-8,
    // where JSON text must be UTF-8 (RFC 8259 section 8.1) and the loader counts
    // such an entry as damaged.
    let is_object = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let is_utf8 = std::str::from_utf8(data).is_ok();
    if let (true, true, Ok(strict)) = (is_object, is_utf8, serde_json::from_slice::<File>(data)) {
        // A file any JSON reader accepts is read whole.
        assert_eq!(got.entries, strict.policies);
        assert!(!got.damaged);
        // Any cut of it loses only what comes after the cut.
        for k in 1..4 {
            let cut = data.len() * k / 4;
            let part = salvage::<Entry>(&data[..cut]);
            assert!(part.entries.len() <= strict.policies.len());
            assert_eq!(part.entries[..], strict.policies[..part.entries.len()]);
        }
    }
    if !got.damaged {
        assert_eq!(got.skipped, 0);
    }
});
