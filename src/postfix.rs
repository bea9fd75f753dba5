//! Policy → the data of Postfix's `OK` reply (SPEC 6.1, 6.2), under a
//! [`Profile`], within Postfix's reply limit ([`fits_reply`], SPEC 1.4). Pure.

use std::collections::HashSet;

use crate::mta_sts::{Mode, Policy};
/// SPEC 1.4's reply cap, checked in one place: the framing layer's [`fits_reply`],
/// which the config (overrides), the cache (an answer's longest form), the TLS-RPT
/// attributes (SPEC 6.3) and the reply itself all ask.
pub use crate::socketmap::response::fits_reply;

/// How a socketmap name (SPEC 1.2) wants its answers written. Read from
/// `[profiles.NAME]` by [`crate::config`], which re-exports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// SPEC 6.2: answer `testing` policies like `enforce`. Default false.
    pub strict_testing: bool,
    /// SPEC 6.1: append `servername=hostname` (Postfix ≥ 3.4). Default true.
    pub servername: bool,
    /// SPEC 6.3: append the TLS-RPT attributes to enforce answers (Postfix ≥ 3.10
    /// only: older Postfix defers mail on them). Default false.
    pub tlsrpt: bool,
}

impl Profile {
    /// The built-in profile: what a profile is when the file does not set a key,
    /// and the default profile when the file does not define it.
    pub const BUILTIN: Profile = Profile {
        strict_testing: false,
        servername: true,
        tlsrpt: false,
    };
}

impl Default for Profile {
    fn default() -> Self {
        Profile::BUILTIN
    }
}

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

/// The answer with the TLS-RPT attributes when the profile asks for them
/// (SPEC 6.3): what [`crate::server`] writes, as one string (for `query`).
pub fn policy_answer_for(domain: &str, policy: &Policy, profile: &Profile) -> Option<String> {
    let mut answer = policy_answer(policy, profile)?;
    if profile.tlsrpt {
        let tail = tlsrpt_tail(policy);
        if fits_with_tlsrpt(answer.len(), domain, &tail) {
            answer.push_str(TLSRPT_DOMAIN_PREFIX);
            answer.push_str(domain);
            answer.push_str(&tail);
        }
    }
    Some(answer)
}

/// SPEC 6.3: what follows the answer's `secure ...` part, before the domain.
pub const TLSRPT_DOMAIN_PREFIX: &str = " policy_type=sts policy_domain=";

/// SPEC 6.3: the TLS-RPT attributes after `policy_domain=<domain>`: one
/// `mx_host_pattern=` per distinct mx as published (`*.` kept: Postfix 3.10.5+
/// matches MX hosts against them), then one `{ policy_string = <line> }` per line
/// of the policy. The lines are rebuilt from the parsed policy (version, mode, each
/// mx, max_age as applied): the cache keeps policies parsed, not as fetched, and
/// unknown extension keys are not part of the policy the sender applied.
pub fn tlsrpt_tail(policy: &Policy) -> String {
    let mut tail = String::with_capacity(64 + policy.mx.len() * 64);
    let mut seen = HashSet::with_capacity(policy.mx.len());
    for mx in &policy.mx {
        let pattern = mx.to_string();
        if seen.insert(pattern.clone()) {
            tail.push_str(" mx_host_pattern=");
            tail.push_str(&pattern);
        }
    }
    let mut line = |text: &str| {
        // Braces would end Postfix's { name = value } quoting early.
        if !text.contains(['{', '}']) {
            tail.push_str(" { policy_string = ");
            tail.push_str(text);
            tail.push_str(" }");
        }
    };
    line("version: STSv1");
    line(&format!("mode: {}", policy.mode));
    for mx in &policy.mx {
        line(&format!("mx: {mx}"));
    }
    line(&format!("max_age: {}", policy.max_age));
    tail
}

/// Whether `OK <answer> policy_type=sts policy_domain=<domain><tail>` stays under
/// Postfix's reply limit ([`fits_reply`], SPEC 1.4); if not, the answer goes without
/// the TLS-RPT attributes rather than not at all.
pub fn fits_with_tlsrpt(answer_len: usize, domain: &str, tail: &str) -> bool {
    fits_reply(answer_len + TLSRPT_DOMAIN_PREFIX.len() + domain.len() + tail.len())
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

/// The `secure match=...` text a cache entry keeps for its policy: empty when the
/// policy has no mx (mode none); `Err` with the text's length when the longest reply
/// built on it would be more than Postfix accepts ([`fits_reply`], SPEC 1.4): the
/// server answers `NOTFOUND` then, and the caller says so in the log.
pub fn cached_answer(policy: &Policy) -> Result<Box<str>, usize> {
    let text = secure_match(policy).unwrap_or_default();
    if !fits_reply(text.len() + SERVERNAME_SUFFIX[1].len()) {
        return Err(text.len());
    }
    Ok(text.into_boxed_str())
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

/// An answer Postfix would not accept as an `smtp_tls_policy_maps` value, or would
/// read differently from what was meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Postfix TLS policy: {0}")]
pub struct AnswerSyntaxError(pub String);

/// Check the data of an `OK` reply against the `smtp_tls_policy_maps` syntax of
/// postconf(5) and the way `smtp_tls_policy.c` reads it: a security level, then
/// `name=value` attributes separated by whitespace or commas, an attribute holding
/// spaces written as `{ name = value }`. Stricter than Postfix where Postfix would
/// silently read something else than meant (a comma inside a value splits it, an
/// empty `match` pattern, a wildcard it does not know). Used by the tests and the
/// `answer` fuzz target: every answer the daemon builds must pass (SPEC 1.3, 6.1).
pub fn check_answer_syntax(answer: &str) -> Result<(), AnswerSyntaxError> {
    check_characters(answer)?;
    let mut words = tokens(answer)?.into_iter();
    let level = words.next().unwrap_or_default();
    check_level(&level)?;
    let mut seen: HashSet<String> = HashSet::new();
    for word in words {
        let (name, value) = attribute(&word)?;
        if SINGLE_ATTRIBUTES.contains(&name) && !seen.insert(name.to_string()) {
            return Err(AnswerSyntaxError(format!("attribute {name:?} given twice")));
        }
        check_attribute_value(&level, name, value)?;
    }
    if level == "secure" || level == "verify" {
        // Without match, Postfix falls back to its configured default strategies:
        // never what an MTA-STS answer means.
        if !seen.contains("match") {
            return Err(AnswerSyntaxError(format!("{level} without match")));
        }
    }
    Ok(())
}

/// SPEC 1.3: some data, in printable ASCII (a tab is a separator).
fn check_characters(answer: &str) -> Result<(), AnswerSyntaxError> {
    if answer.is_empty() {
        return Err(AnswerSyntaxError(
            "empty (SPEC 1.3: never OK with empty data)".into(),
        ));
    }
    if let Some(c) = answer
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() && *c != '\t')
    {
        return Err(AnswerSyntaxError(format!("character {c:?}")));
    }
    Ok(())
}

/// The first word: one of postconf(5)'s TLS security levels.
fn check_level(level: &str) -> Result<(), AnswerSyntaxError> {
    const LEVELS: [&str; 8] = [
        "none",
        "may",
        "encrypt",
        "dane",
        "dane-only",
        "fingerprint",
        "verify",
        "secure",
    ];
    if !LEVELS.contains(&level) {
        return Err(AnswerSyntaxError(format!(
            "unknown security level {level:?}"
        )));
    }
    Ok(())
}

/// postconf(5), smtp_tls_policy_maps, and Postfix 3.10's TLSRPT attributes: those
/// given at most once.
const SINGLE_ATTRIBUTES: [&str; 12] = [
    "ciphers",
    "protocols",
    "exclude",
    "match",
    "servername",
    "tafile",
    "connection_reuse",
    "enable_rpk",
    "policy_type",
    "policy_domain",
    "policy_ttl",
    "policy_failure",
];

/// The TLSRPT attributes that may be repeated.
const REPEATED_ATTRIBUTES: [&str; 2] = ["mx_host_pattern", "policy_string"];

/// One `name=value` word after the level, split and trimmed, with a name Postfix
/// knows.
fn attribute(word: &str) -> Result<(&str, &str), AnswerSyntaxError> {
    let Some((name, value)) = word.split_once('=') else {
        return Err(AnswerSyntaxError(format!("{word:?} is not name=value")));
    };
    let (name, value) = (name.trim(), value.trim());
    if !SINGLE_ATTRIBUTES.contains(&name) && !REPEATED_ATTRIBUTES.contains(&name) {
        return Err(AnswerSyntaxError(format!("unknown attribute {name:?}")));
    }
    Ok((name, value))
}

/// An attribute's value as Postfix reads it at `level`: `match` patterns (SPEC 6.1:
/// the policy's mx patterns, `:`-separated) or fingerprints, a `servername`, a
/// yes/no flag; never empty.
fn check_attribute_value(level: &str, name: &str, value: &str) -> Result<(), AnswerSyntaxError> {
    let bad = |m: String| Err(AnswerSyntaxError(m));
    if value.is_empty() {
        return bad(format!("attribute {name:?} without a value"));
    }
    match name {
        "match" => match level {
            "verify" | "secure" => {
                for pattern in value.split(':') {
                    check_match_pattern(pattern).map_err(AnswerSyntaxError)?;
                }
            }
            "fingerprint" => {
                if value.split('|').any(str::is_empty) {
                    return bad("empty fingerprint".into());
                }
            }
            other => return bad(format!("match is not valid at level {other}")),
        },
        "servername" if value != "hostname" => {
            check_match_pattern(value)
                .ok()
                .filter(|_| !value.starts_with('.'))
                .ok_or_else(|| AnswerSyntaxError(format!("servername {value:?}")))?;
        }
        "connection_reuse" | "enable_rpk" if value != "yes" && value != "no" => {
            return bad(format!("{name} must be yes or no, not {value:?}"));
        }
        _ => {}
    }
    Ok(())
}

/// Split as `mystrtokq(cp, ", \t\r\n", "{}")` does: separators outside braces; a
/// brace-quoted token loses its braces.
fn tokens(text: &str) -> Result<Vec<String>, AnswerSyntaxError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return Ok(out);
        }
        if let Some(inner) = rest.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err(AnswerSyntaxError("unbalanced '{'".into()));
            };
            if inner[..end].contains('{') {
                return Err(AnswerSyntaxError("nested '{'".into()));
            }
            out.push(inner[..end].trim().to_string());
            rest = &inner[end + 1..];
            if !rest.is_empty() && !rest.starts_with([',', ' ', '\t']) {
                return Err(AnswerSyntaxError("text right after '}'".into()));
            }
        } else {
            let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.contains(['{', '}']) {
                return Err(AnswerSyntaxError(format!("brace inside {word:?}")));
            }
            out.push(word.to_string());
            rest = &rest[end..];
        }
    }
}

/// One `match=` entry at the verify and secure levels: a strategy, a host name, or
/// `.domain` for its subdomains (SPEC 6.1). Names are LDH, as SPEC 4.4 admits them.
fn check_match_pattern(pattern: &str) -> Result<(), String> {
    if matches!(pattern, "hostname" | "nexthop" | "dot-nexthop") {
        return Ok(());
    }
    let name = pattern.strip_prefix('.').unwrap_or(pattern);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("match pattern {pattern:?}: empty or too long"));
    }
    for label in name.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ldh
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!("match pattern {pattern:?}: bad label {label:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::MxPattern;
    use crate::socketmap::response::Reply;
    use crate::socketmap::response::MAX_REPLY;

    fn policy(mode: Mode, mx: &[&str]) -> Policy {
        Policy {
            mode,
            max_age: 86400,
            mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
            max_age_clamped: false,
        }
    }

    const DEFAULT: Profile = Profile::BUILTIN;

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

    #[test]
    fn tlsrpt_attributes_golden_spec_6_3() {
        let tlsrpt = Profile {
            tlsrpt: true,
            ..DEFAULT
        };
        let p = policy(
            Mode::Enforce,
            &["mail.example.com", "*.example.net", "mail.example.com"],
        );
        assert_eq!(
            policy_answer_for("example.com", &p, &tlsrpt).unwrap(),
            "secure match=mail.example.com:.example.net servername=hostname \
             policy_type=sts policy_domain=example.com \
             mx_host_pattern=mail.example.com mx_host_pattern=*.example.net \
             { policy_string = version: STSv1 } { policy_string = mode: enforce } \
             { policy_string = mx: mail.example.com } { policy_string = mx: *.example.net } \
             { policy_string = mx: mail.example.com } { policy_string = max_age: 86400 }"
        );
        // Off by default: the answer Postfix 3.9 and older accept.
        assert_eq!(
            policy_answer_for("example.com", &p, &DEFAULT).unwrap(),
            "secure match=mail.example.com:.example.net servername=hostname"
        );
        // Testing mode stays NOTFOUND with tlsrpt on.
        let testing = policy(Mode::Testing, &["mail.example.com"]);
        assert_eq!(policy_answer_for("example.com", &testing, &tlsrpt), None);
        // strict_testing enforces it, and the policy string says what was published.
        let strict = Profile {
            strict_testing: true,
            ..tlsrpt.clone()
        };
        let answer = policy_answer_for("example.com", &testing, &strict).unwrap();
        assert!(
            answer.ends_with("{ policy_string = mode: testing } { policy_string = mx: mail.example.com } { policy_string = max_age: 86400 }"),
            "{answer}"
        );
        assert!(!answer.contains("policy_ttl"), "{answer}");
    }

    /// SPEC 1.3: an answer Postfix could not take is not kept as one; the server
    /// answers `NOTFOUND` for it.
    #[test]
    fn the_kept_answer_text_is_refused_when_too_long_for_a_reply_spec_1_3() {
        let p = policy(Mode::Enforce, &["mx.example.org", "*.example.net"]);
        assert_eq!(
            cached_answer(&p).as_deref(),
            Ok("secure match=mx.example.org:.example.net")
        );
        assert_eq!(cached_answer(&policy(Mode::None, &[])).as_deref(), Ok(""));
        // 5 000 distinct mx of 20 bytes: about 105 000 bytes of answer.
        let names: Vec<String> = (0..5000).map(|i| format!("mx{i:05}.example.org")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let huge = policy(Mode::Enforce, &refs);
        let len = secure_match(&huge).unwrap().len();
        assert!(len > MAX_REPLY);
        assert_eq!(cached_answer(&huge), Err(len));
    }

    #[test]
    fn tlsrpt_attributes_are_dropped_rather_than_exceed_the_reply_limit() {
        let tlsrpt = Profile {
            tlsrpt: true,
            ..DEFAULT
        };
        // ~2 000 distinct mx: the secure answer fits (about 40 KB), the answer
        // with every pattern three times over (mx_host_pattern, policy_string) not.
        let names: Vec<String> = (0..2000).map(|i| format!("mx{i:04}.example.org")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = policy(Mode::Enforce, &refs);
        let plain = policy_answer(&p, &DEFAULT).unwrap();
        assert!(plain.len() < MAX_REPLY);
        assert_eq!(
            policy_answer_for("example.org", &p, &tlsrpt).unwrap(),
            plain
        );
        // One mx: the attributes are there.
        let small = policy(Mode::Enforce, &["mx.example.org"]);
        assert!(policy_answer_for("example.org", &small, &tlsrpt)
            .unwrap()
            .contains("policy_domain=example.org"));
    }

    /// The checker itself: what postconf(5) accepts, and what it would misread.
    #[test]
    fn answer_syntax_checker() {
        for good in [
            "secure match=mx1.example.com:.example.net servername=hostname",
            "secure match=mx.example.com",
            "secure match=hostname:nexthop:dot-nexthop",
            "verify match=mx.example.com,servername=mx.example.com",
            "secure match=mx.example.com policy_type=sts policy_domain=example.com \
             mx_host_pattern=*.example.com mx_host_pattern=mx.example.com \
             { policy_string = version: STSv1 } { policy_string = mode: enforce }",
            "fingerprint match=AB:CD|EF:01",
            "dane-only",
            "may",
        ] {
            assert_eq!(check_answer_syntax(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "secure",
            "secure match=",
            "secure match=a.example::b.example",
            "secure match=*.example.com",
            "secure match=mx.example.com,x.example",
            "secure match=-mx.example.com",
            "secure match=mx..example.com",
            "secure match=mx.example.com match=mx2.example.com",
            "secure match=mx.example.com servername=",
            "secure match=mx.example.com servername=.example.com",
            "secure match=mx.example.com nonsense=1",
            "secure match=mx.example.com bare",
            "sekure match=mx.example.com",
            "encrypt match=mx.example.com",
            "secure match=mx.example.com { policy_string = a",
            "secure match=mx.example.com connection_reuse=maybe",
            "secure match=mx.exämple.com",
            "secure match=mx.example.com\n",
        ] {
            assert!(check_answer_syntax(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Every answer this module builds passes the checker (SPEC 6.1), including
    /// policies at the edges of SPEC 4.4's mx syntax.
    #[test]
    fn built_answers_pass_the_checker() {
        let strict = Profile {
            strict_testing: true,
            ..DEFAULT
        };
        let long = format!("{}.example", "a".repeat(63));
        let mx = [
            "mx.example.com",
            "*.example.net",
            "x.y",
            "*.a-b.c0",
            long.as_str(),
        ];
        let tlsrpt = Profile {
            tlsrpt: true,
            ..strict.clone()
        };
        for mode in [Mode::Enforce, Mode::Testing] {
            for profile in [&DEFAULT, &strict, &tlsrpt] {
                let p = policy(mode, &mx);
                if let Some(a) = policy_answer_for("example.com", &p, profile) {
                    assert_eq!(check_answer_syntax(&a), Ok(()), "{a}");
                }
            }
        }
    }

    #[test]
    fn fits_reply_measures_the_framed_reply_spec_1_4() {
        for data_len in [
            0,
            1,
            MAX_REPLY - 20,
            MAX_REPLY - 11,
            MAX_REPLY - 10,
            MAX_REPLY,
        ] {
            let mut wire = bytes::BytesMut::new();
            Reply::Ok("a".repeat(data_len)).encode(&mut wire);
            assert_eq!(fits_reply(data_len), wire.len() < MAX_REPLY, "{data_len}");
        }
        assert!(fits_reply(MAX_REPLY - 11));
        assert!(!fits_reply(MAX_REPLY - 10));
    }
}
