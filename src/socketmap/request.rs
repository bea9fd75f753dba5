//! A socketmap request, `<map name> <key>` (SPEC 1.2), and the normalisation of the
//! key into the policy domain (SPEC 1.6).

use std::borrow::Cow;
use std::net::IpAddr;

/// One request, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The last field of `socketmap:inet:127.0.0.1:8461:postfix`: selects the profile.
    pub map: &'a str,
    /// The lookup key exactly as Postfix sent it.
    pub key: &'a str,
}

/// A frame that cannot be a lookup: answered with `PERM` (SPEC 1.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("map name is not UTF-8")]
    NotUtf8,
    #[error("request has no space between map name and key")]
    NoSpace,
    #[error("request has an empty map name")]
    EmptyMap,
}

/// SPEC 1.2: split `<map name> <key>` at the first space.
///
/// A key that is not UTF-8 is still a lookup (of nothing we could have a policy
/// for): it comes back as an empty key, which normalises to "skip", so Postfix
/// gets `NOTFOUND ` rather than a `PERM` it would treat as a configuration error.
pub fn parse_request(frame: &[u8]) -> Result<Request<'_>, RequestError> {
    let space = frame
        .iter()
        .position(|&b| b == b' ')
        .ok_or(RequestError::NoSpace)?;
    let map = std::str::from_utf8(&frame[..space]).map_err(|_| RequestError::NotUtf8)?;
    if map.is_empty() {
        return Err(RequestError::EmptyMap);
    }
    let key = std::str::from_utf8(&frame[space + 1..]).unwrap_or("");
    Ok(Request { map, key })
}

/// What a key means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// Look up the MTA-STS policy of this domain: lower-case A-labels, no trailing dot.
    /// Borrowed from the request when it already is in that form (the usual case:
    /// no allocation on the answer path).
    Domain(Cow<'a, str>),
    /// Answer `NOTFOUND ` at once, without any DNS traffic.
    Skip(Skip),
}

/// Why a key is answered `NOTFOUND ` without a lookup (SPEC 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `.parent.example`: Postfix's parent-domain retry; RFC 8461 §3.4 forbids
    /// using a parent's policy.
    Parent,
    /// `[192.0.2.1]`, `[ipv6:...]`, a bare address: no domain, no policy.
    IpLiteral,
    /// Not a domain name we could ever have a policy for.
    Invalid,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Parent => "parent-domain key",
            Skip::IpLiteral => "IP literal",
            Skip::Invalid => "not a valid domain name",
        }
    }
}

/// A key after SPEC 1.6, with how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised<'a> {
    pub key: Key<'a>,
    /// Written as a next hop, `[host]`, `[host]:port` or `host:port` (relayhost,
    /// transports): Postfix does not MX-resolve it for DANE, so neither do we
    /// (SPEC 6.4).
    pub next_hop: bool,
}

/// SPEC 1.6: turn a key as Postfix sends it into the policy domain.
///
/// - any case, trailing dot, UTF-8 (IDN) → lower-case A-label, no trailing dot;
/// - `.parent.example` → [`Skip::Parent`];
/// - `[host]`, `[host]:port`, `host:port` → `host` (RFC 8461 §3.4);
/// - IP literals and anything that is not a valid domain name → skipped.
pub fn normalise_key(key: &str) -> Key<'_> {
    normalise(key).key
}

/// [`normalise_key`], also saying whether the key was a next hop. Allocation-free
/// for a key already in the form we keep (the answer path's usual case).
pub fn normalise(key: &str) -> Normalised<'_> {
    let recipient = |key| Normalised {
        key,
        next_hop: false,
    };
    if key.starts_with('.') {
        return recipient(Key::Skip(Skip::Parent));
    }
    // The common case, on the answer path: a domain already in the form we keep
    // (lower-case, no next-hop syntax). One pass over the bytes, nothing copied.
    let host = key.strip_suffix('.').unwrap_or(key);
    if is_policy_domain(host) {
        return recipient(Key::Domain(Cow::Borrowed(host)));
    }
    let (host, next_hop) = match strip_next_hop(key) {
        Ok(found) => found,
        Err(skip) => return recipient(Key::Skip(skip)),
    };
    Normalised {
        key: normalise_host(host),
        next_hop,
    }
}

/// The host part of a key: IDN, case and trailing dot (SPEC 1.6).
fn normalise_host(host: &str) -> Key<'_> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.parse::<IpAddr>().is_ok() {
        return Key::Skip(Skip::IpLiteral);
    }
    let ascii: Cow<'_, str> = if !host.is_ascii() {
        match idna::domain_to_ascii_strict(host) {
            Ok(a) => Cow::Owned(a),
            Err(_) => return Key::Skip(Skip::Invalid),
        }
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    if is_policy_domain(&ascii) {
        Key::Domain(ascii)
    } else {
        Key::Skip(Skip::Invalid)
    }
}

/// `[host]`, `[host]:port`, `host:port` → (`host`, true); a plain name → (itself,
/// false); IP literals are skipped.
fn strip_next_hop(key: &str) -> Result<(&str, bool), Skip> {
    if let Some(rest) = key.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(Skip::Invalid)?;
        if !after.is_empty() && !is_port_suffix(after) {
            return Err(Skip::Invalid);
        }
        // `get`, not `[..5]`: byte 5 may fall inside a UTF-8 character (fuzzing).
        if inner
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("ipv6:"))
        {
            return Err(Skip::IpLiteral);
        }
        if inner.parse::<IpAddr>().is_ok() {
            return Err(Skip::IpLiteral);
        }
        return Ok((inner, true));
    }
    match key.split_once(':') {
        None => Ok((key, false)),
        Some((host, port)) => {
            if is_port_suffix(&key[host.len()..]) {
                Ok((host, true))
            } else if key.parse::<IpAddr>().is_ok() {
                // A bare IPv6 address.
                Err(Skip::IpLiteral)
            } else {
                let _ = port;
                Err(Skip::Invalid)
            }
        }
    }
}

/// `:25`, `:587`: a colon and 1–5 digits.
fn is_port_suffix(s: &str) -> bool {
    match s.strip_prefix(':') {
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Longest policy domain: `_mta-sts.` + the domain must fit in 253 bytes (RFC 1035),
/// so a longer name could never have a record and is not worth a DNS query.
pub const MAX_DOMAIN: usize = 253 - "_mta-sts.".len();

/// A name that can publish MTA-STS: at least two LDH labels of 1–63 bytes, no label
/// starting or ending with `-`, at most [`MAX_DOMAIN`] bytes, and a top-level label
/// that is not all digits (so `192.0.2.1` style keys never reach DNS), in the form
/// we keep: a byte other than a lower-case letter, a digit, `-` or `.` refuses it.
fn is_policy_domain(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_DOMAIN {
        return false;
    }
    // One pass (this runs on every request): where the current label starts, how
    // many labels so far, whether the current one is all digits.
    let mut start = 0;
    let mut labels = 1;
    let mut all_digits = true;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'.' => {
                // The label just ended: not empty, not ending with `-`.
                if i == start || b[i - 1] == b'-' {
                    return false;
                }
                start = i + 1;
                labels += 1;
                all_digits = true;
                continue;
            }
            b'0'..=b'9' => {}
            b'a'..=b'z' => all_digits = false,
            b'-' if i > start => all_digits = false,
            _ => return false,
        }
        if i - start >= 63 {
            return false;
        }
    }
    start < b.len() && b[b.len() - 1] != b'-' && labels >= 2 && !all_digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dom(s: &str) -> Key<'static> {
        Key::Domain(Cow::Owned(s.to_string()))
    }

    #[test]
    fn parse_request_table() {
        // SPEC 1.2 and 1.3: no space / empty map name cannot be a lookup.
        assert_eq!(
            parse_request(b"postfix example.com"),
            Ok(Request {
                map: "postfix",
                key: "example.com"
            })
        );
        assert_eq!(
            parse_request(b"postfix a b"),
            Ok(Request {
                map: "postfix",
                key: "a b"
            })
        );
        assert_eq!(
            parse_request(b"postfix "),
            Ok(Request {
                map: "postfix",
                key: ""
            })
        );
        assert_eq!(parse_request(b"postfix"), Err(RequestError::NoSpace));
        assert_eq!(parse_request(b" example.com"), Err(RequestError::EmptyMap));
        assert_eq!(
            parse_request(b"postfix \xff"),
            Ok(Request {
                map: "postfix",
                key: ""
            })
        );
        assert_eq!(
            parse_request(b"post\xfffix a.example"),
            Err(RequestError::NotUtf8)
        );
    }

    #[test]
    fn normalise_table_spec_1_6() {
        let cases: &[(&str, Key<'static>)] = &[
            // case and trailing dot
            ("example.com", dom("example.com")),
            ("EXAMPLE.Com", dom("example.com")),
            ("example.com.", dom("example.com")),
            ("Mail.Example.COM.", dom("mail.example.com")),
            // IDN → A-label
            ("bücher.example", dom("xn--bcher-kva.example")),
            ("BÜCHER.example.", dom("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", dom("xn--bcher-kva.example")),
            // parent-domain retries: never looked up (RFC 8461 §3.4)
            (".example.com", Key::Skip(Skip::Parent)),
            (".com", Key::Skip(Skip::Parent)),
            // next hops
            ("[mail.example.com]", dom("mail.example.com")),
            ("[Mail.Example.com]:587", dom("mail.example.com")),
            ("mail.example.com:25", dom("mail.example.com")),
            ("[mail.example.com]:", Key::Skip(Skip::Invalid)),
            ("[mail.example.com]:x", Key::Skip(Skip::Invalid)),
            ("[mail.example.com", Key::Skip(Skip::Invalid)),
            ("mail.example.com:abc", Key::Skip(Skip::Invalid)),
            // IP literals
            ("[192.0.2.1]", Key::Skip(Skip::IpLiteral)),
            ("[192.0.2.1]:25", Key::Skip(Skip::IpLiteral)),
            ("[ipv6:2001:db8::1]", Key::Skip(Skip::IpLiteral)),
            ("[IPv6:2001:db8::1]:25", Key::Skip(Skip::IpLiteral)),
            ("[2001:db8::1]", Key::Skip(Skip::IpLiteral)),
            ("2001:db8::1", Key::Skip(Skip::IpLiteral)),
            ("192.0.2.1", Key::Skip(Skip::IpLiteral)),
            ("192.0.2.1.", Key::Skip(Skip::IpLiteral)),
            ("192.0.2.1:25", Key::Skip(Skip::IpLiteral)),
            // not domain names
            ("", Key::Skip(Skip::Invalid)),
            (".", Key::Skip(Skip::Parent)),
            ("localhost", Key::Skip(Skip::Invalid)),
            ("com", Key::Skip(Skip::Invalid)),
            ("a..b", Key::Skip(Skip::Invalid)),
            ("-a.example", Key::Skip(Skip::Invalid)),
            ("a-.example", Key::Skip(Skip::Invalid)),
            ("a_b.example", Key::Skip(Skip::Invalid)),
            ("a b.example", Key::Skip(Skip::Invalid)),
            ("user@example.com", Key::Skip(Skip::Invalid)),
            ("example.com..", Key::Skip(Skip::Invalid)),
            ("999.999.999.999", Key::Skip(Skip::Invalid)),
            ("exa\u{0}mple.com", Key::Skip(Skip::Invalid)),
        ];
        for (key, want) in cases {
            assert_eq!(&normalise_key(key), want, "key {key:?}");
        }
        // A multi-byte character across byte 5 of a bracketed next hop panicked the
        // connection's task (found by the `key` fuzz target).
        assert!(matches!(
            normalise_key("[mxix\u{fc}.example]:587"),
            Key::Domain(d) if d.starts_with("xn--mxix")
        ));
        assert_eq!(
            normalise_key("[mxix\u{5ba}xampleom]:587"),
            Key::Skip(Skip::Invalid)
        );
    }

    /// SPEC 6.4, 1.6: a next hop is told apart (DANE skips it); the domain is the same.
    #[test]
    fn next_hop_keys_are_marked_spec_6_4() {
        for (key, domain, next_hop) in [
            ("example.com", "example.com", false),
            ("Example.COM.", "example.com", false),
            ("b\u{fc}cher.example", "xn--bcher-kva.example", false),
            ("[relay.example]", "relay.example", true),
            ("[relay.example]:587", "relay.example", true),
            ("relay.example:587", "relay.example", true),
            ("[Relay.Example.]:25", "relay.example", true),
            ("[b\u{fc}cher.example]:587", "xn--bcher-kva.example", true),
        ] {
            assert_eq!(
                normalise(key),
                Normalised {
                    key: dom(domain),
                    next_hop
                },
                "key {key:?}"
            );
        }
        assert!(!normalise(".example.com").next_hop);
        assert_eq!(normalise("[192.0.2.1]:25").key, Key::Skip(Skip::IpLiteral));
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        assert_eq!(
            normalise_key(&format!("{label63}.example")),
            dom(&format!("{label63}.example"))
        );
        assert_eq!(
            normalise_key(&format!("{label64}.example")),
            Key::Skip(Skip::Invalid)
        );
        let long = format!("{}.{}.{}.{}", label63, label63, label63, "a".repeat(53));
        assert_eq!(long.len(), MAX_DOMAIN + 1);
        assert_eq!(normalise_key(&long), Key::Skip(Skip::Invalid));
        assert_eq!(normalise_key(&long[1..]), dom(&long[1..]));
    }

    /// SPEC 1.6's domain rule, label by label: the reference for the one-pass
    /// [`is_policy_domain`].
    fn label_rule(name: &str) -> bool {
        let labels: Vec<&str> = name.split('.').collect();
        name.len() <= MAX_DOMAIN
            && labels.len() >= 2
            && labels.iter().all(|l| {
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            })
            && !labels[labels.len() - 1].bytes().all(|c| c.is_ascii_digit())
    }

    #[test]
    fn policy_domain_check_edges() {
        let label63 = "a".repeat(63);
        for (name, want) in [
            ("a.b", true),
            ("a-b.c0", true),
            ("1.2", false),
            ("a.-b", false),
            ("a-.b", false),
            ("a..b", false),
            (".a.b", false),
            ("a.b.", false),
            ("a.b-", false),
            ("ab", false),
            ("A.b", false),
            ("", false),
        ] {
            assert_eq!(is_policy_domain(name), want, "{name:?}");
            assert_eq!(label_rule(name), want, "{name:?}");
        }
        assert!(is_policy_domain(&format!("{label63}.b")));
        assert!(!is_policy_domain(&format!("{label63}a.b")));
        assert!(!is_policy_domain(&format!("b.{label63}a")));
    }

    proptest! {
        #[test]
        fn normalise_never_panics(s in "\\PC{0,80}") {
            let _ = normalise_key(&s);
        }

        /// The one-pass check agrees with the rule written label by label.
        #[test]
        fn policy_domain_check_matches_the_label_rule(s in "[a-z0-9.\\-A]{0,70}") {
            prop_assert_eq!(is_policy_domain(&s), label_rule(&s), "{:?}", s);
        }

        #[test]
        fn normalised_domains_are_fixed_points(s in "[a-zA-Z0-9.\\-\\[\\]:]{0,40}") {
            if let Key::Domain(d) = normalise_key(&s) {
                prop_assert_eq!(normalise_key(&d), Key::Domain(Cow::Borrowed(d.as_ref())));
                prop_assert!(!d.ends_with('.'));
                prop_assert_eq!(d.to_ascii_lowercase(), d);
            }
        }
    }
}
