//! SPEC 1.2, 1.6: a request frame and its key, normalised into a policy domain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::socketmap::{normalise_key, parse_request, Key};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(data) else {
        return;
    };
    assert!(!request.map.contains(' '));
    let Key::Domain(domain) = normalise_key(request.key) else {
        return;
    };
    // SPEC 1.6: lower-case A-labels, no trailing dot, LDH labels of 1-63 bytes.
    assert!(!domain.is_empty() && domain.len() <= 253, "{domain:?}");
    assert!(!domain.ends_with('.') && !domain.starts_with('.'));
    for label in domain.split('.') {
        assert!((1..=63).contains(&label.len()), "{domain:?}");
        assert!(label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert!(
            !label.starts_with('-') && !label.ends_with('-'),
            "{domain:?}"
        );
    }
    // Idempotent: the domain is its own normal form.
    assert_eq!(normalise_key(&domain), Key::Domain(domain.clone()));
    // Never a parent-domain key or an IP literal (SPEC 1.6: no DNS for those).
    assert!(!request.key.starts_with('.'));
    assert!(domain.parse::<std::net::IpAddr>().is_err());
});
