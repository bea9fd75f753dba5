//! DANE precedence (SPEC 6.4, RFC 8461 §2, RFC 7672): which DANE level a domain's
//! DNSSEC-validated MX and TLSA records call for. Pure: the lookups are done by
//! [`crate::cache::dane`] through [`crate::resolver::dane`].
//!
//! # How validation is trusted
//!
//! Like Postfix with `smtp_dns_support_level = dnssec`, mtastsd does not validate
//! DNSSEC itself: it sends its DANE queries (MX, A, TLSA) with the DO and AD bits to
//! the resolvers named in `[dane] nameservers` and believes the AD bit of their
//! answers. Why not validate in-process with hickory's DNSSEC support: the operator
//! already runs a validating resolver for Postfix's own DANE (Postfix needs one for
//! `dane` and `dane-only` to mean anything), so a second validator with its own trust
//! anchor (RFC 5011 rollovers to track), its own NSEC3 rules and its own failure modes
//! could only disagree with the one Postfix uses; and the AD bit is exactly as
//! trustworthy as the path to that resolver (keep it on loopback).
//!
//! # The decision (RFC 7672 §2.2)
//!
//! - The MX RRset must be secure (AD), else DANE does not apply: [`Verdict::NoDane`].
//!   A secure NODATA means the domain itself is the only host (implicit MX).
//! - Per host: its address lookup (A) must be secure, else the host's zone is
//!   unsigned and its TLSA records are not even asked for (RFC 7672 §2.2.2: a
//!   TLSA lookup failure only counts in a signed zone). Then `_25._tcp.<host>` TLSA:
//!   usable records (usage 2/3, selector 0/1, matching 0/1/2 with the right data
//!   length, RFC 7672 §3.1) in a secure answer → the host has DANE; a secure
//!   denial, an unsigned answer or only unusable records → it has not.
//! - A failed address lookup makes that host unusable for DANE (RFC 7672 §2.2: it
//!   cannot be delivered to), not the domain a failure: it counts as without DANE.
//! - Every host with DANE → `dane-only`; some → partial ([`Verdict::Dane`]); none →
//!   the MTA-STS answer.
//! - A TLSA or MX lookup that failed (SERVFAIL, which a validating resolver also
//!   answers for bogus data, timeout, ...) where it counts: [`Verdict::Failed`] when
//!   no host was found with DANE; partial when one was (Postfix's own `dane` level
//!   does its own TLSA lookups and fails closed per host).
//!
//! # The answer ([`precedence`], SPEC 6.4)
//!
//! Postfix's `dane` level runs a host without TLSA at `may`, which an attacker on
//! the path strips. So only `dane-only` wins over MTA-STS outright; a partial or
//! failed check gives way to a usable `enforce` policy (`secure match=...`), and
//! only without one answers `dane` (partial) or `TEMP` (failed: fail closed, as
//! Postfix's own DANE does, RFC 7672).

/// The answer text for the verdicts that win over MTA-STS.
pub const DANE_ONLY: &str = "dane-only";
pub const DANE: &str = "dane";

/// One TLSA record's parameters (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    /// Length of the certificate association data.
    pub data_len: usize,
}

impl Tlsa {
    /// RFC 7672 §3.1: SMTP uses DANE-TA(2) and DANE-EE(3) only (PKIX-TA/EE, 0 and 1,
    /// are unusable for SMTP); selectors Cert(0) and SPKI(1); matching Full(0),
    /// SHA2-256(1) and SHA2-512(2). A digest of the wrong length, or empty full
    /// data, cannot match anything: unusable too (as Postfix treats it).
    pub fn usable(&self) -> bool {
        let usage = matches!(self.usage, 2 | 3);
        let selector = matches!(self.selector, 0 | 1);
        let data = match self.matching {
            0 => self.data_len > 0,
            1 => self.data_len == 32,
            2 => self.data_len == 64,
            _ => false,
        };
        usage && selector && data
    }
}

/// What the DNS said about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    /// Usable TLSA records in a secure answer.
    Dane,
    /// Secure denial, unsigned zone, only unusable records, or an address lookup
    /// that failed (the host is unusable, RFC 7672 §2.2).
    NoDane,
    /// A lookup that counts failed (SERVFAIL in a signed zone, timeout, ...).
    Failed(String),
}

/// The result for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every MX host has usable TLSA records: `dane-only`.
    DaneOnly,
    /// Some do: `dane`, unless a usable `enforce` policy answers (SPEC 6.4).
    Dane,
    /// DANE does not apply (unsigned, secure denial, unusable records): the
    /// MTA-STS answer as before.
    NoDane,
    /// A lookup failed and no host was found with DANE: nothing proven either way.
    Failed(String),
}

/// SPEC 6.4: what a DANE verdict leaves to MTA-STS. The one rule for the daemon
/// and `mtastsd query`, applied by [`crate::answer::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence<'a> {
    /// `OK dane-only`; MTA-STS is not consulted.
    DaneOnly,
    /// DANE does not apply: the MTA-STS answer, whatever it is.
    MtaSts,
    /// DANE is partial or failed: the MTA-STS answer when it is an `OK` (only a
    /// usable `enforce` policy gives one), else the fallback.
    MtaStsSecureElse(Fallback<'a>),
}

/// What a partial or failed DANE check answers when MTA-STS has no `OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback<'a> {
    /// Partial coverage: `OK dane`.
    Dane,
    /// The check failed with no valid cached result: `TEMP`, with the failure.
    Temp(&'a str),
}

impl Fallback<'_> {
    /// The reply data: `OK` data for [`Fallback::Dane`], the `TEMP` reason for
    /// [`Fallback::Temp`].
    pub fn reason(&self, domain: &str) -> String {
        match self {
            Fallback::Dane => DANE.into(),
            Fallback::Temp(why) => format!("DANE check of {domain} failed: {why}"),
        }
    }
}

/// SPEC 6.4: see [`Precedence`].
pub fn precedence(verdict: &Verdict) -> Precedence<'_> {
    match verdict {
        Verdict::DaneOnly => Precedence::DaneOnly,
        Verdict::NoDane => Precedence::MtaSts,
        Verdict::Dane => Precedence::MtaStsSecureElse(Fallback::Dane),
        Verdict::Failed(why) => Precedence::MtaStsSecureElse(Fallback::Temp(why)),
    }
}

impl Verdict {
    /// One line for `mtastsd query`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::DaneOnly => "DNSSEC-validated usable TLSA on every MX: dane-only".into(),
            Verdict::Dane => {
                "DNSSEC-validated usable TLSA on some MX only: the MTA-STS answer if it \
                 enforces, else dane"
                    .into()
            }
            Verdict::NoDane => {
                "does not apply (unsigned, securely denied or unusable TLSA): the MTA-STS answer"
                    .into()
            }
            Verdict::Failed(why) => {
                format!("check failed: {why}: the MTA-STS answer if it enforces, else TEMP")
            }
        }
    }
}

/// The verdict for a domain whose MX RRset was secure, from its hosts' states
/// (in MX order). No host at all (null MX): no DANE.
pub fn decide(hosts: &[HostState]) -> Verdict {
    let with_dane = hosts.iter().filter(|h| **h == HostState::Dane).count();
    let failure = hosts.iter().find_map(|h| match h {
        HostState::Failed(why) => Some(why),
        _ => None,
    });
    match (with_dane, failure) {
        (0, Some(why)) => Verdict::Failed(why.clone()),
        (0, None) => Verdict::NoDane,
        (n, None) if n == hosts.len() => Verdict::DaneOnly,
        // Some hosts with DANE, or a failure beside a host with DANE: Postfix's own
        // `dane` level looks the TLSA records up again and fails closed per host.
        _ => Verdict::Dane,
    }
}

/// The state of one host from its TLSA answer: `secure` is the AD bit; `records`
/// empty for NXDOMAIN / NODATA.
pub fn host_state(secure: bool, records: &[Tlsa]) -> HostState {
    if secure && records.iter().any(Tlsa::usable) {
        HostState::Dane
    } else {
        HostState::NoDane
    }
}

/// A DANE result is cached for the smallest TTL of the records it rests on, within
/// these bounds. The floor keeps a zone with TTL 0 from making every answer wait on
/// DNS; it is short because a stale `dane-only` for a domain that dropped its TLSA
/// records defers its mail (Postfix finds no TLSA) until it expires. The ceiling
/// bounds the same window for long TTLs, like the negative cache (SPEC 5.6).
pub const TTL_MIN: u32 = 60;
pub const TTL_MAX: u32 = 3600;

pub fn clamp_ttl(ttl: u32) -> u32 {
    ttl.clamp(TTL_MIN, TTL_MAX)
}

/// A failed check is remembered this long (SPEC 5.6's floor for DNS errors): the
/// requests meanwhile get the failure at once instead of each waiting up to the
/// check's deadline on a resolver that is failing, and the resolver is asked at
/// most once a minute per domain.
pub const FAILURE_BACKOFF: u32 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    fn tlsa(usage: u8, selector: u8, matching: u8, data_len: usize) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data_len,
        }
    }

    #[test]
    fn tlsa_usability_rfc_7672_3_1() {
        let cases = [
            (tlsa(3, 1, 1, 32), true),
            (tlsa(3, 0, 2, 64), true),
            (tlsa(2, 0, 1, 32), true),
            (tlsa(2, 1, 0, 300), true),
            (tlsa(3, 1, 0, 91), true),
            // PKIX-TA / PKIX-EE are unusable for SMTP.
            (tlsa(0, 0, 1, 32), false),
            (tlsa(1, 1, 1, 32), false),
            (tlsa(4, 1, 1, 32), false),
            (tlsa(255, 1, 1, 32), false),
            // Unknown selector / matching type.
            (tlsa(3, 2, 1, 32), false),
            (tlsa(3, 1, 3, 32), false),
            (tlsa(3, 1, 255, 32), false),
            // Digest of the wrong length, empty full data.
            (tlsa(3, 1, 1, 31), false),
            (tlsa(3, 1, 1, 64), false),
            (tlsa(3, 1, 2, 32), false),
            (tlsa(3, 1, 0, 0), false),
        ];
        for (t, want) in cases {
            assert_eq!(t.usable(), want, "{t:?}");
        }
    }

    #[test]
    fn host_state_needs_ad_and_a_usable_record_spec_6_4() {
        let good = tlsa(3, 1, 1, 32);
        let bad = tlsa(1, 1, 1, 32);
        assert_eq!(
            host_state(true, std::slice::from_ref(&good)),
            HostState::Dane
        );
        assert_eq!(
            host_state(true, &[bad.clone(), good.clone()]),
            HostState::Dane
        );
        assert_eq!(host_state(false, &[good]), HostState::NoDane);
        assert_eq!(host_state(true, &[bad]), HostState::NoDane);
        assert_eq!(host_state(true, &[]), HostState::NoDane);
    }

    #[test]
    fn decision_table_spec_6_4() {
        use HostState::{Dane as D, NoDane as N};
        let f = || HostState::Failed("SERVFAIL".into());
        let cases: Vec<(Vec<HostState>, Verdict)> = vec![
            (vec![D], Verdict::DaneOnly),
            (vec![D, D, D], Verdict::DaneOnly),
            (vec![D, N], Verdict::Dane),
            (vec![N, D], Verdict::Dane),
            (vec![N, N], Verdict::NoDane),
            (vec![], Verdict::NoDane),
            (vec![f()], Verdict::Failed("SERVFAIL".into())),
            (vec![N, f()], Verdict::Failed("SERVFAIL".into())),
            // A failure never yields dane-only, but a host with DANE still wins.
            (vec![D, f()], Verdict::Dane),
        ];
        for (hosts, want) in cases {
            assert_eq!(decide(&hosts), want, "{hosts:?}");
        }
    }

    #[test]
    fn precedence_table_spec_6_4() {
        assert_eq!(precedence(&Verdict::DaneOnly), Precedence::DaneOnly);
        assert_eq!(precedence(&Verdict::NoDane), Precedence::MtaSts);
        assert_eq!(
            precedence(&Verdict::Dane),
            Precedence::MtaStsSecureElse(Fallback::Dane)
        );
        let failed = Verdict::Failed("SERVFAIL".into());
        assert_eq!(
            precedence(&failed),
            Precedence::MtaStsSecureElse(Fallback::Temp("SERVFAIL"))
        );
        assert_eq!(Fallback::Dane.reason("d.example"), "dane");
        assert_eq!(
            Fallback::Temp("SERVFAIL").reason("d.example"),
            "DANE check of d.example failed: SERVFAIL"
        );
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(clamp_ttl(0), 60);
        assert_eq!(clamp_ttl(300), 300);
        assert_eq!(clamp_ttl(86_400), 3600);
    }
}
