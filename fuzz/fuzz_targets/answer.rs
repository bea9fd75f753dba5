//! SPEC 6.1, 6.2, 1.3: every answer built from any policy that parses is a valid
//! Postfix `smtp_tls_policy_maps` value (`postfix::check_answer_syntax`, written from
//! postconf(5)) and fits in a socketmap reply, or is not sent at all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtastsd_fuzz::mta_sts::Mode;
use mtastsd_fuzz::policy::parse_policy;
use mtastsd_fuzz::postfix::Profile;
use mtastsd_fuzz::postfix::{check_answer_syntax, policy_answer_for, secure_match};

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = parse_policy(data) else {
        return;
    };
    for strict_testing in [false, true] {
        for servername in [false, true] {
            for tlsrpt in [false, true] {
                let profile = Profile {
                    strict_testing,
                    servername,
                    tlsrpt,
                };
                match policy_answer_for("example.com", &policy, &profile) {
                    Some(answer) => {
                        if let Err(e) = check_answer_syntax(&answer) {
                            panic!("{e}: {answer:?} from {policy:?}");
                        }
                        assert!(answer.starts_with("secure match="));
                        // SPEC 6.3: the TLS-RPT attributes come after servername,
                        // and only when asked for (and when they fit).
                        let head = answer.split(" policy_type=sts").next().unwrap_or_default();
                        assert_eq!(head.ends_with(" servername=hostname"), servername);
                        if !tlsrpt {
                            assert!(!answer.contains("policy_type="));
                        }
                        assert!(answer.len() + 3 < 100_000);
                    }
                    None => assert!(
                        policy.mode == Mode::None
                            || (policy.mode == Mode::Testing && !strict_testing)
                    ),
                }
            }
        }
    }
    // Every mx pattern reaches the answer (deduplicated, SPEC 6.1).
    if let Some(m) = secure_match(&policy) {
        for mx in &policy.mx {
            let p = mx.postfix_match();
            assert!(m["secure match=".len()..].split(':').any(|x| x == p));
        }
    }
});
