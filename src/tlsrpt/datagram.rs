//! One libtlsrpt datagram (SPEC 8.1) → typed values. Pure: no I/O here.
//!
//! Postfix 3.10+ writes one JSON object per TLS session attempt through libtlsrpt,
//! with short keys:
//!
//! ```text
//! {"dpv": "1",                      only libtlsrpt ≥ 0.5.0 (Debian 13 has none)
//!  "d": "example.com",              the delivery domain = the TLS-RPT domain
//!  "pr": "v=TLSRPTv1; rua=...",     its _smtp._tls record as found
//!  "policies": [{"policy-type": 2,  1 tlsa, 2 sts, 9 no-policy-found
//!     "policy-domain": "...",       absent from Postfix 3.10.0–3.10.4 (type 9)
//!     "policy-string": [...], "mx-host": [...],
//!     "failure-details": [{"c": 202, "s": sending IP, "n": MX name,
//!        "h": the whole EHLO reply, "r": receiving IP, "a": additional info,
//!        "f": failure reason code}],
//!     "t": number of details, "f": 0 success / 1 failure}]}
//! ```
//!
//! The datagram comes from any local process that may write to the socket, so
//! everything is bounded: its size, every string, every list. A datagram that breaks a
//! bound or the shape above is a [`Malformed`], never a panic; the collector counts and
//! drops it (SPEC 8.1). The day is not in the datagram: it is the UTC day the
//! collector received it (SPEC 8.2).

use serde::Deserialize;

/// The largest datagram accepted: the kernel's default send buffer
/// (`net.core.wmem_default`, 212 992 bytes), the most a libtlsrpt sender can send
/// with default settings (libtlsrpt itself has no limit). A receive that reports
/// more was truncated.
pub const MAX_DATAGRAM: usize = 212_992;
/// Policies in one datagram (Postfix sends one).
pub const MAX_POLICIES: usize = 16;
/// `policy-string` or `mx-host` entries of one policy.
pub const MAX_STRINGS: usize = 256;
/// Failure details of one policy (Postfix sends at most one per session).
pub const MAX_DETAILS: usize = 64;
/// Bytes of any one string kept in the aggregate: a TLSA policy string with a full
/// certificate in hex fits; the raw EHLO reply (`h`) may be longer, only its first
/// name is kept.
pub const MAX_STRING: usize = 16 * 1024;
/// Bytes of a domain name (RFC 1035 §2.3.4, in text form).
pub const MAX_DOMAIN: usize = 253;

/// Why a datagram was dropped (SPEC 8.1: counted, never fatal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("datagram of {0} bytes, more than {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// Not JSON, not UTF-8, truncated, or a key of the wrong type.
    #[error("not a libtlsrpt datagram: {0}")]
    Json(String),
    #[error("datagram protocol version {0:?}, only \"1\" is known")]
    Version(String),
    #[error("invalid domain {0:?}")]
    Domain(String),
    #[error("unknown policy-type {0}")]
    PolicyType(u64),
    #[error("unknown failure code {0}")]
    FailureCode(u64),
    #[error("final result {0}, expected 0 or 1")]
    FinalResult(u64),
    #[error("no policy")]
    NoPolicy,
    #[error("{what}: {len} entries, more than {max}")]
    TooMany {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: {len} bytes, more than {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

/// RFC 8460 §4.4 `policy-type`, from libtlsrpt's `tlsrpt_policy_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    Tlsa,
    Sts,
    NoPolicyFound,
}

impl PolicyType {
    fn from_code(code: u64) -> Result<Self, Malformed> {
        match code {
            1 => Ok(Self::Tlsa),
            2 => Ok(Self::Sts),
            9 => Ok(Self::NoPolicyFound),
            other => Err(Malformed::PolicyType(other)),
        }
    }

    /// The report's spelling (RFC 8460 §4.4).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tlsa => "tlsa",
            Self::Sts => "sts",
            Self::NoPolicyFound => "no-policy-found",
        }
    }
}

/// RFC 8460 §4.3 result types, from libtlsrpt's `tlsrpt_failure_t` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateNotTrusted,
    CertificateExpired,
    ValidationFailure,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
}

impl ResultType {
    /// libtlsrpt's code; 901 (an unfinished policy) is library-internal and never
    /// valid on the wire.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            201 => Self::StarttlsNotSupported,
            202 => Self::CertificateHostMismatch,
            203 => Self::CertificateNotTrusted,
            204 => Self::CertificateExpired,
            205 => Self::ValidationFailure,
            301 => Self::StsPolicyFetchError,
            302 => Self::StsPolicyInvalid,
            303 => Self::StsWebpkiInvalid,
            304 => Self::TlsaInvalid,
            305 => Self::DnssecInvalid,
            306 => Self::DaneRequired,
            _ => return None,
        })
    }

    /// The report's spelling (RFC 8460 §4.3).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StarttlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::CertificateExpired => "certificate-expired",
            Self::ValidationFailure => "validation-failure",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
        }
    }
}

/// A policy as the report names it (RFC 8460 §4.4 `policy`): part of the
/// aggregation key (SPEC 8.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy {
    pub policy_type: PolicyType,
    /// Always set: from `d` when the datagram has none (Postfix 3.10.0–3.10.4 omit
    /// it for no-policy-found, and receivers reject reports without it).
    pub domain: String,
    pub strings: Vec<String>,
    pub mx_hosts: Vec<String>,
}

/// One failure detail (RFC 8460 §4.4 `failure-details`), the grouping key of SPEC
/// 8.2. An empty string means the datagram did not carry the field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureDetail {
    pub result_type: ResultType,
    pub sending_ip: String,
    pub receiving_mx: String,
    /// The name on the first line of the MX's EHLO reply (SPEC 8.1), not the reply.
    pub receiving_helo: String,
    pub receiving_ip: String,
    pub additional_info: String,
    pub reason_code: String,
}

/// One policy's outcome in one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    pub policy: Policy,
    /// libtlsrpt's final result `f`: the session failed under this policy.
    pub failed: bool,
    pub failures: Vec<FailureDetail>,
}

/// A parsed datagram: one session attempt to `domain` (SPEC 8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The TLS-RPT policy domain the report goes to (`d`), lower case, no final dot.
    pub domain: String,
    /// Its `_smtp._tls` record as Postfix found it (`pr`): the report's `rua`s.
    pub record: String,
    pub policies: Vec<PolicyResult>,
}

// The wire shapes. Unknown keys are ignored so that a later libtlsrpt adding one
// does not make every datagram malformed; the numbers are u64 so that any JSON
// integer reaches the range checks below rather than a serde error.
#[derive(Deserialize)]
struct RawDatagram {
    dpv: Option<String>,
    d: String,
    pr: String,
    policies: Vec<RawPolicy>,
}

#[derive(Deserialize)]
struct RawPolicy {
    #[serde(rename = "policy-type")]
    policy_type: u64,
    #[serde(rename = "policy-domain")]
    policy_domain: Option<String>,
    #[serde(rename = "policy-string", default)]
    policy_string: Vec<String>,
    #[serde(rename = "mx-host", default)]
    mx_host: Vec<String>,
    #[serde(rename = "failure-details", default)]
    failure_details: Vec<RawDetail>,
    // `t` (the number of details) is not needed: the details are counted themselves.
    f: u64,
}

#[derive(Deserialize)]
struct RawDetail {
    c: u64,
    s: Option<String>,
    n: Option<String>,
    h: Option<String>,
    r: Option<String>,
    a: Option<String>,
    f: Option<String>,
}

/// Parse one datagram as received (SPEC 8.1). `len` checks come first, so an
/// oversized datagram costs no parse.
pub fn parse(bytes: &[u8]) -> Result<Datagram, Malformed> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Malformed::TooLarge(bytes.len()));
    }
    // serde_json rejects invalid UTF-8: libtlsrpt copies bytes ≥ 128 unchecked.
    let raw: RawDatagram =
        serde_json::from_slice(bytes).map_err(|e| Malformed::Json(e.to_string()))?;
    if let Some(v) = raw.dpv.filter(|v| v != "1") {
        return Err(Malformed::Version(bounded_sample(&v)));
    }
    let domain = domain(raw.d)?;
    let record = bounded("pr", raw.pr)?;
    if raw.policies.is_empty() {
        return Err(Malformed::NoPolicy);
    }
    count("policies", raw.policies.len(), MAX_POLICIES)?;
    let policies = raw
        .policies
        .into_iter()
        .map(|p| policy(p, &domain))
        .collect::<Result<_, _>>()?;
    Ok(Datagram {
        domain,
        record,
        policies,
    })
}

fn policy(raw: RawPolicy, d: &str) -> Result<PolicyResult, Malformed> {
    let policy_type = PolicyType::from_code(raw.policy_type)?;
    let domain = match raw.policy_domain {
        Some(pd) => domain(pd)?,
        None => d.to_owned(),
    };
    let failed = match raw.f {
        0 => false,
        1 => true,
        other => return Err(Malformed::FinalResult(other)),
    };
    count("policy-string", raw.policy_string.len(), MAX_STRINGS)?;
    count("mx-host", raw.mx_host.len(), MAX_STRINGS)?;
    count("failure-details", raw.failure_details.len(), MAX_DETAILS)?;
    let strings = raw
        .policy_string
        .into_iter()
        .map(|s| bounded("policy-string", s))
        .collect::<Result<_, _>>()?;
    let mx_hosts = raw
        .mx_host
        .into_iter()
        .map(|s| bounded("mx-host", s))
        .collect::<Result<_, _>>()?;
    let failures = raw
        .failure_details
        .into_iter()
        .map(detail)
        .collect::<Result<_, _>>()?;
    Ok(PolicyResult {
        policy: Policy {
            policy_type,
            domain,
            strings,
            mx_hosts,
        },
        failed,
        failures,
    })
}

fn detail(raw: RawDetail) -> Result<FailureDetail, Malformed> {
    let result_type = ResultType::from_code(raw.c).ok_or(Malformed::FailureCode(raw.c))?;
    let opt = |what, s: Option<String>| bounded(what, s.unwrap_or_default());
    let helo = helo_name(raw.h.as_deref().unwrap_or_default());
    // The report's addresses are IP addresses (RFC 8460 §4.4): anything else from
    // the socket is left out rather than passed on to the domain owner.
    let ip = |s: Option<String>| s.filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    Ok(FailureDetail {
        result_type,
        sending_ip: opt("s", ip(raw.s))?,
        receiving_mx: opt("n", raw.n)?,
        receiving_helo: bounded("h", helo.to_owned())?,
        receiving_ip: opt("r", ip(raw.r))?,
        additional_info: opt("a", raw.a)?,
        reason_code: opt("f", raw.f)?,
    })
}

/// SPEC 8.1: `h` is the MX's whole EHLO reply, lines joined by CRLF, each with its
/// `250-`/`250 ` code; the report's `receiving-mx-helo` is the name on the first line.
pub fn helo_name(reply: &str) -> &str {
    let line = reply.split(['\r', '\n']).next().unwrap_or_default();
    let b = line.as_bytes();
    let rest = if b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) {
        match b.get(3) {
            None => "",
            Some(b'-' | b' ') => &line[4..],
            Some(_) => line,
        }
    } else {
        line
    };
    rest.split_ascii_whitespace().next().unwrap_or_default()
}

/// A domain as a report names it: lower case, one final dot dropped, and only the
/// characters of an A-label host name (they end up in the mailto file name, SPEC
/// 8.4, where `!` and `/` must not appear).
fn domain(d: String) -> Result<String, Malformed> {
    let mut d = d;
    if d.ends_with('.') {
        d.pop();
    }
    let ok = !d.is_empty()
        && d.len() <= MAX_DOMAIN
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !d.starts_with('.')
        && !d.contains("..");
    if !ok {
        return Err(Malformed::Domain(bounded_sample(&d)));
    }
    d.make_ascii_lowercase();
    Ok(d)
}

fn bounded(what: &'static str, s: String) -> Result<String, Malformed> {
    if s.len() > MAX_STRING {
        return Err(Malformed::TooLong {
            what,
            len: s.len(),
            max: MAX_STRING,
        });
    }
    Ok(s)
}

fn count(what: &'static str, len: usize, max: usize) -> Result<(), Malformed> {
    if len > max {
        return Err(Malformed::TooMany { what, len, max });
    }
    Ok(())
}

/// The start of a rejected value, for the error (logged once a minute, SPEC 8.1).
fn bounded_sample(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The real datagrams of Debian 13's libtlsrpt 0.5.0rc1, as Postfix 3.10.13 makes
    /// them (tests/golden/tlsrpt/).
    fn golden(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        while b.last() == Some(&b'\n') {
            b.pop();
        }
        b
    }

    fn sts_policy() -> Policy {
        Policy {
            policy_type: PolicyType::Sts,
            domain: "rpt.example".into(),
            strings: vec![
                "version: STSv1".into(),
                "mode: enforce".into(),
                "mx: mx.rpt.example".into(),
                "max_age: 604800".into(),
            ],
            mx_hosts: vec!["mx.rpt.example".into()],
        }
    }

    // SPEC 8.1: a successful session: `f: 0`, no details.
    #[test]
    fn sts_success() {
        let d = parse(&golden("sts-success.json")).unwrap();
        assert_eq!(d.domain, "rpt.example");
        assert_eq!(d.record, "v=TLSRPTv1; rua=mailto:tlsrpt@rpt.example");
        assert_eq!(
            d.policies,
            vec![PolicyResult {
                policy: sts_policy(),
                failed: false,
                failures: vec![],
            }]
        );
    }

    // SPEC 8.1: a failed session: `f: 1` and one detail whose `h` is the whole EHLO
    // reply; the report keeps the first line's name.
    #[test]
    fn sts_failure() {
        let d = parse(&golden("sts-failure.json")).unwrap();
        assert_eq!(
            d.policies,
            vec![PolicyResult {
                policy: sts_policy(),
                failed: true,
                failures: vec![FailureDetail {
                    result_type: ResultType::CertificateHostMismatch,
                    sending_ip: "127.0.0.1".into(),
                    receiving_mx: "mx.rpt.example".into(),
                    receiving_helo: "mx.rpt.example".into(),
                    receiving_ip: "127.0.0.1".into(),
                    additional_info: String::new(),
                    reason_code: String::new(),
                }],
            }]
        );
    }

    // SPEC 8.1, 8.4: no-policy-found, with and without `policy-domain` (Postfix
    // 3.10.0–3.10.4 omit it): the report always has it, from `d`.
    #[test]
    fn no_policy_found_domain_filled_from_d() {
        for name in ["nopol-success.json", "nopol-success-3.10.4.json"] {
            let d = parse(&golden(name)).unwrap();
            let p = &d.policies[0];
            assert_eq!(p.policy.policy_type, PolicyType::NoPolicyFound, "{name}");
            assert_eq!(p.policy.domain, "nopol.example", "{name}");
            assert!(p.policy.strings.is_empty() && p.policy.mx_hosts.is_empty());
            assert!(!p.failed);
        }
        let d = parse(&golden("nopol-failure.json")).unwrap();
        let f = &d.policies[0].failures[0];
        assert_eq!(f.result_type, ResultType::ValidationFailure);
        assert_eq!(f.sending_ip, "192.0.2.1");
        assert_eq!(f.receiving_ip, "198.51.100.7");
        assert_eq!(f.receiving_helo, "mx.nopol.example");
        assert_eq!(f.reason_code, "tls-handshake-failure");
    }

    // SPEC 8.1: libtlsrpt ≥ 0.5.0 starts with `"dpv": "1"`; another version is
    // not understood.
    #[test]
    fn protocol_version() {
        let with = |v: &str| {
            let b = golden("sts-success.json");
            let mut s = format!("{{\"dpv\": {v},");
            s.push_str(std::str::from_utf8(&b[1..]).unwrap());
            s
        };
        assert!(parse(with("\"1\"").as_bytes()).is_ok());
        assert_eq!(
            parse(with("\"2\"").as_bytes()),
            Err(Malformed::Version("2".into()))
        );
        assert!(matches!(
            parse(with("1").as_bytes()),
            Err(Malformed::Json(_))
        ));
    }

    // SPEC 8.1: every libtlsrpt code maps to its RFC 8460 §4.3 result type.
    #[test]
    fn result_codes() {
        let table = [
            (201, "starttls-not-supported"),
            (202, "certificate-host-mismatch"),
            (203, "certificate-not-trusted"),
            (204, "certificate-expired"),
            (205, "validation-failure"),
            (301, "sts-policy-fetch-error"),
            (302, "sts-policy-invalid"),
            (303, "sts-webpki-invalid"),
            (304, "tlsa-invalid"),
            (305, "dnssec-invalid"),
            (306, "dane-required"),
        ];
        for (code, name) in table {
            assert_eq!(
                ResultType::from_code(code).map(ResultType::as_str),
                Some(name)
            );
        }
        for code in [0, 200, 206, 300, 307, 901] {
            assert_eq!(ResultType::from_code(code), None, "{code}");
        }
    }

    // SPEC 8.1: the HELO name is the first line's, code stripped.
    #[test]
    fn helo_names() {
        let table = [
            (
                "250-mx.a.example\r\n250-PIPELINING\r\n250 STARTTLS",
                "mx.a.example",
            ),
            ("250 mx.a.example ESMTP ready", "mx.a.example"),
            (
                "250-mx.a.example Hello [192.0.2.1]\r\n250 SIZE",
                "mx.a.example",
            ),
            ("mx.a.example\r\nPIPELINING", "mx.a.example"),
            ("250", ""),
            ("", ""),
            ("250-\r\n250 X", ""),
            ("250-[192.0.2.1]", "[192.0.2.1]"),
        ];
        for (h, want) in table {
            assert_eq!(helo_name(h), want, "{h:?}");
        }
    }

    fn one(policy: &str) -> String {
        format!(
            r#"{{"d": "a.example","pr": "v=TLSRPTv1;rua=mailto:r@a.example","policies":[{policy}]}}"#
        )
    }

    // RFC 8460 §4.4: the report's addresses are IP addresses; a detail whose `s` or
    // `r` is not one is kept without it.
    #[test]
    fn addresses_that_are_not_ip_addresses_are_left_out() {
        let d = parse(
            one(r#"{"policy-type":2,"failure-details":[{"c":202,"s": "<b>x</b>","n": "mx.a.example","r": "2001:db8::25"}],"t":1,"f":1}"#)
                .as_bytes(),
        )
        .unwrap();
        let f = &d.policies[0].failures[0];
        assert_eq!(
            (f.sending_ip.as_str(), f.receiving_ip.as_str()),
            ("", "2001:db8::25")
        );
    }

    // SPEC 8.1: what is not a datagram is an error, never a panic.
    #[test]
    fn malformed() {
        let long = "x".repeat(MAX_STRING + 1);
        let many = format!("[{}]", vec!["\"s\""; MAX_STRINGS + 1].join(","));
        let table: Vec<(String, &str)> = vec![
            (String::new(), "Json"),
            ("garbage".into(), "Json"),
            ("{}".into(), "Json"),
            ("[1,2]".into(), "Json"),
            (
                r#"{"d": "a.example","pr": "v","policies":[]}"#.into(),
                "NoPolicy",
            ),
            (one(r#"{"policy-type":3,"t":0,"f":0}"#), "PolicyType"),
            (one(r#"{"policy-type":2,"t":0,"f":2}"#), "FinalResult"),
            (one(r#"{"policy-type":2,"t":0}"#), "Json"),
            (one(r#"{"policy-type":-1,"t":0,"f":0}"#), "Json"),
            (
                one(r#"{"policy-type":2,"t":1,"f":1,"failure-details":[{"c":901}]}"#),
                "FailureCode",
            ),
            (
                one(r#"{"policy-type":2,"t":1,"f":1,"failure-details":[{"s":"1"}]}"#),
                "Json",
            ),
            (
                one(r#"{"policy-type":2,"policy-domain":"a/b","t":0,"f":0}"#),
                "Domain",
            ),
            (
                one(r#"{"policy-type":2,"policy-domain":"","t":0,"f":0}"#),
                "Domain",
            ),
            (
                one(&format!(
                    r#"{{"policy-type":2,"policy-string":["{long}"],"t":0,"f":0}}"#
                )),
                "TooLong",
            ),
            (
                one(&format!(
                    r#"{{"policy-type":2,"mx-host":{many},"t":0,"f":0}}"#
                )),
                "TooMany",
            ),
            (
                r#"{"d": "a!b","pr": "v","policies":[{"policy-type":9,"t":0,"f":0}]}"#.into(),
                "Domain",
            ),
            (
                r#"{"d": "..","pr": "v","policies":[{"policy-type":9,"t":0,"f":0}]}"#.into(),
                "Domain",
            ),
        ];
        for (input, want) in table {
            let got = parse(input.as_bytes()).expect_err(&input[..input.len().min(80)]);
            assert!(format!("{got:?}").starts_with(want), "{input:.80}: {got:?}");
        }
    }

    // SPEC 8.1: libtlsrpt copies bytes ≥ 128 unchecked; invalid UTF-8 is malformed.
    #[test]
    fn invalid_utf8() {
        let mut b = one(r#"{"policy-type":2,"t":1,"f":1,"failure-details":[{"c":205,"f":"X"}]}"#)
            .into_bytes();
        let x = b.iter().rposition(|&c| c == b'X').unwrap();
        b[x] = 0xC3; // a two-byte sequence cut after its first byte
        assert!(matches!(parse(&b), Err(Malformed::Json(_))));
    }

    // SPEC 8.1: every proper prefix of a real datagram (a truncated receive) is
    // malformed, and an oversized one is refused before parsing.
    #[test]
    fn truncated_and_oversized() {
        let b = golden("sts-failure.json");
        for n in 0..b.len() {
            assert!(parse(&b[..n]).is_err(), "prefix {n}");
        }
        let mut big = b.clone();
        big.resize(MAX_DATAGRAM + 1, b' ');
        assert_eq!(parse(&big), Err(Malformed::TooLarge(MAX_DATAGRAM + 1)));
        // Trailing whitespace up to the limit is still JSON.
        big.truncate(MAX_DATAGRAM);
        assert!(parse(&big).is_ok());
    }

    // SPEC 8.1: domains are compared as reports name them.
    #[test]
    fn domain_normalised() {
        let b = br#"{"d": "RPT.Example.","pr": "v","policies":[{"policy-type":9,"t":0,"f":0}]}"#;
        let d = parse(b).unwrap();
        assert_eq!(d.domain, "rpt.example");
        assert_eq!(d.policies[0].policy.domain, "rpt.example");
    }

    proptest! {
        // SPEC 8.1: any bytes: an answer, never a panic.
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&b);
        }
    }
}
