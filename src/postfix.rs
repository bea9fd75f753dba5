//! Policy → the data of Postfix's `OK` reply (SPEC 6.1, 6.2). Pure.

use std::collections::HashSet;

use crate::config::Profile;
use crate::mta_sts::{Mode, Policy};

/// The `smtp_tls_policy_maps` answer for a policy under a profile, or `None` for
/// `NOTFOUND ` (SPEC 6.2: `testing` and `none` stay opportunistic unless the profile
/// sets `strict_testing`).
pub fn policy_answer(policy: &Policy, profile: &Profile) -> Option<String> {
    if !enforced(policy.mode, profile) {
        return None;
    }
    let mut answer = secure_match(policy)?;
    answer.push_str(SERVERNAME_SUFFIX[usize::from(profile.servername)]);
    Some(answer)
}

/// SPEC 6.1: appended when the profile checks the certificate against the MX name.
/// Indexed by `profile.servername`.
pub const SERVERNAME_SUFFIX: [&str; 2] = ["", " servername=hostname"];

/// SPEC 6.2: does this profile enforce a policy in this mode?
pub fn enforced(mode: Mode, profile: &Profile) -> bool {
    match mode {
        Mode::Enforce => true,
        Mode::Testing => profile.strict_testing,
        Mode::None => false,
    }
}

/// `secure match=p1:p2:...`, the part of the answer every profile shares; `None` for
/// a policy without mx (mode none).
pub fn secure_match(policy: &Policy) -> Option<String> {
    if policy.mx.is_empty() {
        return None;
    }
    // SPEC 6.1: patterns in policy order, without duplicates, `*.x` as `.x`.
    // (A hash set: a 64 KiB policy can hold thousands of mx lines.)
    let mut answer = String::with_capacity(64);
    answer.push_str("secure match=");
    let mut seen: HashSet<String> = HashSet::with_capacity(policy.mx.len());
    for mx in &policy.mx {
        let m = mx.postfix_match();
        if seen.contains(&m) {
            continue;
        }
        if !seen.is_empty() {
            answer.push(':');
        }
        answer.push_str(&m);
        seen.insert(m);
    }
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::MxPattern;

    fn policy(mode: Mode, mx: &[&str]) -> Policy {
        Policy {
            mode,
            max_age: 86400,
            mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
            max_age_clamped: false,
        }
    }

    const DEFAULT: Profile = Profile {
        strict_testing: false,
        servername: true,
    };

    #[test]
    fn answer_table_spec_6_1_6_2() {
        let no_servername = Profile {
            servername: false,
            ..DEFAULT
        };
        let strict = Profile {
            strict_testing: true,
            ..DEFAULT
        };
        let cases: &[(Policy, Profile, Option<&str>)] = &[
            (
                policy(Mode::Enforce, &["mx1.example.com", "*.example.net"]),
                DEFAULT,
                Some("secure match=mx1.example.com:.example.net servername=hostname"),
            ),
            // policy order kept, duplicates dropped (SPEC 6.1)
            (
                policy(
                    Mode::Enforce,
                    &[
                        "b.example.com",
                        "a.example.com",
                        "B.example.com",
                        "*.x.org",
                        "*.x.org",
                    ],
                ),
                DEFAULT,
                Some("secure match=b.example.com:a.example.com:.x.org servername=hostname"),
            ),
            (
                policy(Mode::Enforce, &["mx.example.com"]),
                no_servername.clone(),
                Some("secure match=mx.example.com"),
            ),
            // SPEC 6.2
            (policy(Mode::Testing, &["mx.example.com"]), DEFAULT, None),
            (
                policy(Mode::Testing, &["mx.example.com"]),
                strict.clone(),
                Some("secure match=mx.example.com servername=hostname"),
            ),
            (policy(Mode::None, &[]), DEFAULT, None),
            (policy(Mode::None, &[]), strict, None),
        ];
        for (p, profile, want) in cases {
            assert_eq!(
                policy_answer(p, profile).as_deref(),
                *want,
                "{p:?} {profile:?}"
            );
        }
    }
}
