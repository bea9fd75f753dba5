//! `mx:` patterns of a policy (RFC 8461 §3.2, §4.1; SPEC 4.4).

/// One `mx` line: a domain name, or `*.` + a domain name. Stored lower-case,
/// A-labels only. Constructed only through [`MxPattern::parse`], so a value of this
/// type can never widen what Postfix trusts (SPEC 4.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MxPattern {
    /// `true` for `*.example.net` (any single label in front of `example.net`).
    wildcard: bool,
    /// The domain part, lower-case, without `*.` and without a trailing dot.
    domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mx pattern {value:?}: {reason}")]
pub struct MxError {
    pub value: String,
    pub reason: &'static str,
}

/// RFC 1035 §2.3.4 / RFC 5321 §4.5.3.1.2: the longest domain name, written.
const NAME_MAX: usize = 253;
/// RFC 1035 §2.3.4: the longest label.
const LABEL_MAX: usize = 63;

impl MxPattern {
    /// SPEC 4.4: accept `host.example` or `*.example` made of LDH labels
    /// (A-labels allowed), lower-case it. Everything else is an error.
    ///
    /// The rules, each tested:
    /// - labels are 1–63 chars of `a-z`, `0-9`, `-`, not starting or ending with `-`
    ///   (A-labels such as `xn--bcher-kva` are plain LDH and pass);
    /// - at least two labels after the optional `*.` (a single label, `*` alone,
    ///   `*.com`, would trust a whole TLD or a bare name);
    /// - the last label is not all digits: that rejects IPv4 literals
    ///   (`192.0.2.1`), and no TLD is numeric (RFC 3696 §2);
    /// - the name as written, `*.` included, is at most 253 chars (so any host the
    ///   wildcard can match, `x.` + domain, fits too);
    /// - `*` only as the whole left-most label (`**.x`, `*.*.x`, `*x.y`, `x.*.y`
    ///   are rejected); raw UTF-8, spaces, `_`, `[`, `:` (IPv6) are not LDH;
    /// - one trailing dot (the absolute form `mx.example.net.`) is accepted and
    ///   dropped: it names the same host, so it cannot widen anything, and
    ///   rejecting it would make an otherwise good policy invalid (fail open).
    ///   Two trailing dots are an empty label and rejected.
    pub fn parse(value: &str) -> Result<Self, MxError> {
        let err = |reason: &'static str| MxError {
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() {
            return Err(err("empty"));
        }
        if !value.is_ascii() {
            return Err(err("not ASCII (IDNs must be written as A-labels)"));
        }
        let written = value.strip_suffix('.').unwrap_or(value);
        if written.len() > NAME_MAX {
            return Err(err("longer than 253 characters"));
        }
        let (wildcard, domain) = match written.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, written),
        };
        let domain = domain.to_ascii_lowercase();
        let mut labels = 0usize;
        let mut last = "";
        for label in domain.split('.') {
            if label.is_empty() {
                return Err(err("empty label"));
            }
            if label.len() > LABEL_MAX {
                return Err(err("label longer than 63 characters"));
            }
            if label.contains('*') {
                return Err(err("`*` is allowed only as `*.` at the start"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err("label is not letters, digits and `-`"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("label starts or ends with `-`"));
            }
            labels += 1;
            last = label;
        }
        if labels < 2 {
            return Err(err("needs at least two labels after any `*.`"));
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("all-numeric last label (an IP address?)"));
        }
        Ok(MxPattern { wildcard, domain })
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The domain without `*.`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// RFC 8461 §4.1: does `host` (an MX host name, any case, optional trailing dot)
    /// match? A wildcard matches exactly one extra left-most label:
    /// `*.example.net` matches `mx1.example.net`, not `example.net` nor
    /// `a.mx1.example.net`.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.domain);
        }
        let Some(prefix_len) = host.len().checked_sub(self.domain.len() + 1) else {
            return false;
        };
        // Split on bytes, then check it is a char boundary: `host` may be any text.
        let (Some(label), Some(dot_domain)) = (host.get(..prefix_len), host.get(prefix_len..))
        else {
            return false;
        };
        !label.is_empty()
            && !label.contains('.')
            && dot_domain
                .strip_prefix('.')
                .is_some_and(|d| d.eq_ignore_ascii_case(&self.domain))
    }

    /// The Postfix `match=` form (SPEC 6.1): `*.example.net` becomes `.example.net`
    /// (Postfix reads a leading dot as "any subdomain", the closest it has).
    pub fn postfix_match(&self) -> String {
        if self.wildcard {
            format!(".{}", self.domain)
        } else {
            self.domain.clone()
        }
    }
}

/// As written in the policy (`*.` kept): used by logs, `query` and TLS-RPT (SPEC 6.3).
impl std::fmt::Display for MxPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

impl TryFrom<String> for MxPattern {
    type Error = MxError;
    fn try_from(s: String) -> Result<Self, MxError> {
        MxPattern::parse(&s)
    }
}

impl From<MxPattern> for String {
    fn from(p: MxPattern) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> MxPattern {
        MxPattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// SPEC 4.4: what parses, and to what (wildcard, domain).
    #[test]
    fn spec_4_4_parse_valid_table() {
        let long_label = "a".repeat(63);
        let with_long_label = format!("{long_label}.example.net");
        // 253 chars written: 63+1+63+1+63+1+61 = 253
        let max_name = format!("{0}.{0}.{0}.{1}", long_label, "b".repeat(61));
        let max_wild = format!("*.{0}.{0}.{0}.{1}", long_label, "b".repeat(59));
        let rows: Vec<(&str, bool, &str)> = vec![
            ("mail.example.com", false, "mail.example.com"),
            ("example.com", false, "example.com"), // two labels suffice
            ("*.example.net", true, "example.net"),
            ("*.mail.example.net", true, "mail.example.net"),
            ("MX1.Example.COM", false, "mx1.example.com"), // SPEC 4.4: lower-cased
            ("*.EXAMPLE.NET", true, "example.net"),
            ("xn--bcher-kva.example", false, "xn--bcher-kva.example"), // A-label
            (
                "mx.XN--BCHER-KVA.example",
                false,
                "mx.xn--bcher-kva.example",
            ),
            ("*.xn--p1ai.xn--p1ai", true, "xn--p1ai.xn--p1ai"),
            ("mx-1.ex-ample.com", false, "mx-1.ex-ample.com"), // inner `-`
            ("1.2.3.example", false, "1.2.3.example"),         // numeric labels, not last
            ("123.example.com", false, "123.example.com"),
            ("a.b", false, "a.b"),
            ("mx.example.c0m", false, "mx.example.c0m"), // last label not all digits
            // decision: one trailing dot is dropped
            ("mx.example.com.", false, "mx.example.com"),
            ("*.example.net.", true, "example.net"),
            (&with_long_label, false, &with_long_label), // 63-char label
            (&max_name, false, &max_name),               // 253 chars
        ];
        for (input, wildcard, domain) in rows {
            let got = p(input);
            assert_eq!(
                (got.is_wildcard(), got.domain()),
                (wildcard, domain),
                "{input:?}"
            );
        }
        assert_eq!(max_name.len(), 253);
        assert_eq!(max_wild.len(), 253);
        assert!(MxPattern::parse(&max_wild).is_ok());
    }

    /// SPEC 4.4: every malformed value is rejected (never reaches `match=`).
    #[test]
    fn spec_4_4_parse_invalid_table() {
        let long_label = format!("{}.example.net", "a".repeat(64));
        let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
        let too_long_wild = format!("*.{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(60));
        let rows: Vec<&str> = vec![
            "",
            " ",
            ".",
            "*",
            "*.",
            "**.x",
            "**.example.net",
            "*.*.example.net",
            "*x.example.net",
            "x*.example.net",
            "mx.*.example.net",
            "*example.net",
            ".example.net",     // Postfix's own form is not a policy value
            "example..net",     // empty label
            "mx.example.com..", // two trailing dots
            "localhost",        // single label
            "com",
            "*.com", // wildcard over a single label: a whole TLD
            "*.localhost",
            "-mx.example.net", // leading `-`
            "mx-.example.net", // trailing `-`
            "mx.example-",
            "mx.-example.net",
            "mx_1.example.net", // `_` is not LDH
            "mx example.net",
            " mx.example.net",
            "mx.example.net ",
            "mx.example.net\n",
            "mx.example.net\0",
            "mx@example.net",
            "mx/example.net",
            "mx:25.example.net",
            "bücher.example", // raw UTF-8
            "mx.exämple.net",
            "mx.example.net\u{3002}com", // ideographic full stop
            "192.0.2.1",                 // IPv4
            "192.0.2.1.",
            "*.0.2.1",
            "mx.example.123", // all-numeric last label
            "[192.0.2.1]",
            "2001:db8::1", // IPv6
            "[2001:db8::1]",
            "[ipv6:2001:db8::1]",
            "::1",
            &long_label,    // 64-char label
            &too_long,      // 254 chars
            &too_long_wild, // 254 chars with `*.`
        ];
        for input in rows {
            assert!(
                MxPattern::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
        assert_eq!(too_long.len(), 254);
        assert_eq!(too_long_wild.len(), 254);
    }

    /// The error names the value and the reason (for the `sts-policy-invalid` log).
    #[test]
    fn spec_4_4_error_names_value() {
        let e = MxPattern::parse("*.*.x").unwrap_err();
        assert_eq!(e.value, "*.*.x");
        assert!(e.to_string().contains("\"*.*.x\""), "{e}");
        assert!(e.to_string().contains('*'), "{e}");
    }

    /// RFC 8461 §4.1: matching MX host names.
    #[test]
    fn rfc8461_4_1_matches_table() {
        let rows: &[(&str, &str, bool)] = &[
            ("mail.example.com", "mail.example.com", true),
            ("mail.example.com", "MAIL.Example.COM", true), // case-insensitive
            ("mail.example.com", "mail.example.com.", true), // trailing dot on host
            ("MAIL.example.com", "mail.example.com", true), // pattern lower-cased
            ("mail.example.com", "mail.example.com..", false),
            ("mail.example.com", "mx.mail.example.com", false),
            ("mail.example.com", "example.com", false),
            ("mail.example.com", "mail.example.co", false),
            ("mail.example.com", "", false),
            ("*.example.net", "mx1.example.net", true),
            ("*.example.net", "MX1.EXAMPLE.NET.", true),
            ("*.example.net", "x.example.net", true),
            ("*.example.net", "example.net", false), // RFC 8461 §4.1: not the parent
            ("*.example.net", "a.b.example.net", false), // only one label
            ("*.example.net", ".example.net", false), // empty label
            ("*.example.net", "mx1example.net", false), // no dot before the domain
            ("*.example.net", "mx1.example.net.evil", false),
            ("*.example.net", "mx1.badexample.net", false),
            ("*.example.net", "mx1.example.org", false),
            ("*.example.net", "", false),
            ("*.example.net", "é.example.net", true), // any single label, even odd ones
            ("*.example.net", "éexample.net", false), // multi-byte at the split point
            ("*.example.net", "ééééééééééé", false),
            ("example.net", "example.net.", true),
        ];
        for (pattern, host, want) in rows {
            assert_eq!(p(pattern).matches(host), *want, "{pattern} vs {host:?}");
        }
    }

    /// SPEC 6.1: the Postfix `match=` form; Display keeps `*.` (SPEC 6.3).
    #[test]
    fn spec_6_1_postfix_match_and_display() {
        let rows = [
            ("*.example.net", ".example.net", "*.example.net"),
            ("*.Example.NET.", ".example.net", "*.example.net"),
            ("mx.example.net", "mx.example.net", "mx.example.net"),
            ("MX.example.net.", "mx.example.net", "mx.example.net"),
        ];
        for (input, postfix, display) in rows {
            let m = p(input);
            assert_eq!(m.postfix_match(), postfix, "{input}");
            assert_eq!(m.to_string(), display, "{input}");
        }
    }

    /// The serde form is the written pattern and goes through `parse` (SPEC 4.4:
    /// a corrupted cache cannot smuggle in a bad pattern).
    #[test]
    fn spec_4_4_serde_validates() {
        let m = p("*.Example.net");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"*.example.net\"");
        let back: MxPattern = serde_json::from_str("\"*.example.net\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<MxPattern>("\"*.*.example.net\"").is_err());
        assert!(serde_json::from_str::<MxPattern>("\"192.0.2.1\"").is_err());
    }

    fn label() -> impl Strategy<Value = String> {
        // LDH, 1–63 chars, no leading/trailing `-`, any case.
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    }

    fn valid_pattern() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            proptest::collection::vec(label(), 1..4),
            "[a-zA-Z][a-zA-Z0-9]{0,10}", // last label: never all digits
            any::<bool>(),
        )
            .prop_map(|(wild, mut labels, tld, dot)| {
                labels.push(tld);
                let mut s = labels.join(".");
                if wild {
                    s.insert_str(0, "*.");
                }
                if dot {
                    s.push('.');
                }
                s
            })
            .prop_filter("fits in 253", |s| s.trim_end_matches('.').len() <= 253)
    }

    proptest! {
        /// Arbitrary text never panics `parse` or `matches`.
        #[test]
        fn never_panics(s in any::<String>(), host in any::<String>()) {
            if let Ok(m) = MxPattern::parse(&s) {
                let _ = m.matches(&host);
                let _ = m.postfix_match();
            }
            let _ = p("*.example.net").matches(&host);
            let _ = p("example.net").matches(&host);
        }

        /// Near-valid inputs (the interesting alphabet) never panic, and whatever
        /// parses is well-formed: lower-case, LDH, `*` nowhere in the domain.
        #[test]
        fn accepted_values_are_clean(s in "[*.a-zA-Z0-9_ -]{0,40}") {
            if let Ok(m) = MxPattern::parse(&s) {
                let d = m.domain();
                prop_assert!(d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
                prop_assert!(d.contains('.'));
                prop_assert!(!d.starts_with('.') && !d.ends_with('.') && !d.contains(".."));
                prop_assert!(!m.postfix_match().starts_with(".."));
            }
        }

        /// SPEC 4.4: a generated valid pattern parses; its Display re-parses to the
        /// same value and is the lower-cased input without a trailing dot.
        #[test]
        fn spec_4_4_display_roundtrip(s in valid_pattern()) {
            let m = MxPattern::parse(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let shown = m.to_string();
            prop_assert_eq!(&shown, &s.trim_end_matches('.').to_ascii_lowercase());
            prop_assert_eq!(MxPattern::parse(&shown), Ok(m.clone()));
            prop_assert_eq!(m.is_wildcard(), s.starts_with("*."));
        }

        /// RFC 8461 §4.1: a pattern matches its own domain (plain) or exactly one
        /// extra label (wildcard), in any case, never two labels.
        #[test]
        fn rfc8461_4_1_match_properties(s in valid_pattern(), l1 in label(), l2 in label()) {
            let m = MxPattern::parse(&s).unwrap();
            let d = m.domain().to_ascii_uppercase();
            let one = format!("{l1}.{d}");
            let two = format!("{l2}.{l1}.{d}");
            prop_assert_eq!(m.matches(&d), !m.is_wildcard());
            prop_assert_eq!(m.matches(&one), m.is_wildcard());
            prop_assert_eq!(m.matches(&format!("{one}.")), m.is_wildcard());
            prop_assert!(!m.matches(&two));
        }
    }
}
