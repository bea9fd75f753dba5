//! SPEC 8.1: the libtlsrpt datagram parser: any bytes give a datagram or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::tlsrpt_datagram::{parse, MAX_DATAGRAM, MAX_DOMAIN, MAX_STRING};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = parse(data) {
        assert!(data.len() <= MAX_DATAGRAM);
        assert!(!d.domain.is_empty() && d.domain.len() <= MAX_DOMAIN);
        assert!(!d.domain.contains('!') && !d.domain.contains('/'));
        assert!(!d.policies.is_empty());
        for p in &d.policies {
            // SPEC 8.4: a report always names the policy domain.
            assert!(!p.policy.domain.is_empty());
            for f in &p.failures {
                assert!(f.receiving_helo.len() <= MAX_STRING);
                assert!(!f.receiving_helo.contains(char::is_whitespace));
            }
        }
    }
});
