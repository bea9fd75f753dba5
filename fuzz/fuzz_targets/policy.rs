//! SPEC 4.1–4.6: the policy file parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::policy::{parse_policy, Mode, MAX_AGE_LIMIT};

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = parse_policy(data) {
        // SPEC 4.2, 4.5: invariants of every accepted policy.
        assert!(policy.max_age <= MAX_AGE_LIMIT);
        assert!(policy.mode == Mode::None || !policy.mx.is_empty());
        assert!(!policy.max_age_clamped || policy.max_age == MAX_AGE_LIMIT);
    }
});
