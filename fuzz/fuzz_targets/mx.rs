//! SPEC 4.4 / RFC 8461 §4.1: `mx` patterns and matching.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::mx::MxPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First line: the pattern; the rest: a host name to match against it.
    let (value, host) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(pattern) = MxPattern::parse(value) else {
        return;
    };
    let _ = pattern.matches(host);
    // SPEC 4.4: what is accepted is lower-case LDH, re-parses to itself, and
    // never turns into something wider in Postfix's `match=` form (SPEC 6.1).
    let shown = pattern.to_string();
    assert_eq!(MxPattern::parse(&shown).as_ref(), Ok(&pattern));
    let domain = pattern.domain();
    assert!(domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
    assert!(domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'));
    if pattern.is_wildcard() {
        assert_eq!(pattern.postfix_match(), format!(".{domain}"));
        assert!(pattern.matches(&format!("mx.{domain}")));
        assert!(!pattern.matches(domain));
    } else {
        assert_eq!(pattern.postfix_match(), domain);
        assert!(pattern.matches(domain));
    }
});
