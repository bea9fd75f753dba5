//! libtlsrpt datagrams as Postfix 3.10 writes them (SPEC 8.1; the shapes of
//! tests/golden/tlsrpt/), for any domain and `rua`, and the counts they make.

use mtastsd::tlsrpt::aggregate::{Aggregate, Day};
use mtastsd::tlsrpt::datagram::parse;

/// `ok` successful and `failed` certificate-host-mismatch sessions to `domain`
/// under its enforce policy, whose `_smtp._tls` record sends reports to `rua`.
pub fn datagrams(domain: &str, rua: &str, ok: usize, failed: usize) -> Vec<Vec<u8>> {
    let policy = format!(
        r#""policy-type":2,"policy-domain": "{domain}","policy-string":["version: STSv1","mode: enforce","mx: mx.{domain}","max_age: 604800"],"mx-host":["mx.{domain}"]"#
    );
    let head = format!(r#"{{"d": "{domain}","pr": "v=TLSRPTv1; rua={rua}","policies":[{{{policy}"#);
    let success = format!(r#"{head},"t":0,"f":0}}]}}"#);
    let failure = format!(
        r#"{head},"failure-details":[{{"c":202,"s": "192.0.2.1","n": "mx.{domain}","h": "250-mx.{domain}\r\n250 STARTTLS","r": "198.51.100.7"}}],"t":1,"f":1}}]}}"#
    );
    std::iter::repeat_n(success.into_bytes(), ok)
        .chain(std::iter::repeat_n(failure.into_bytes(), failed))
        .collect()
}

/// The counts of these datagrams on `day`, as the collector makes them.
pub fn counts(day: Day, datagrams: &[Vec<u8>]) -> Aggregate {
    let mut a = Aggregate::new();
    for d in datagrams {
        a.add(day, parse(d).expect("a Postfix datagram"));
    }
    a
}

pub fn gunzip(gz: &[u8]) -> String {
    use std::io::Read;
    let mut s = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut s)
        .expect("gzip");
    s
}
