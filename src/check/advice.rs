//! Conclusions for `mtastsd check` (pure, no I/O): findings from a TLS probe, the
//! verdict and next step in the safe rollout order (TLS-RPT first, then
//! `mode: testing` for a couple of weeks, then `enforce` with a new id), and what to
//! publish when MTA-STS is missing or broken.

use serde::Serialize;

use crate::tlsrpt::aggregate::Day;

use super::tls::{CertVerdict, TlsInfo, TlsProbe};
use super::{CheckReport, Code, Finding, Severity};

/// A certificate expiring within this is a warning (renewal has failed or is late).
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// `max_age` of the suggested testing policy: a week (RFC 8461 §3.2 suggests weeks).
pub const SUGGESTED_MAX_AGE: u32 = 604_800;
/// The least `max_age` to use once enforcing: two weeks.
pub const ENFORCE_MAX_AGE: u32 = 1_209_600;

/// Which kind of host a probe was for: picks the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// `mta-sts.<domain>` on 443.
    PolicyHost,
    /// An MX host on 25.
    Mx,
}

struct Codes {
    ok: Code,
    unreachable: Code,
    failed: Code,
    untrusted: Code,
    name: Code,
    expired: Code,
    expiring: Code,
    invalid: Code,
}

impl Probed {
    fn codes(self) -> Codes {
        match self {
            Probed::PolicyHost => Codes {
                ok: Code::PolicyHostTlsOk,
                unreachable: Code::PolicyHostUnreachable,
                failed: Code::PolicyHostTlsFailed,
                untrusted: Code::PolicyHostCertUntrusted,
                name: Code::PolicyHostCertNameMismatch,
                expired: Code::PolicyHostCertExpired,
                expiring: Code::PolicyHostCertExpiring,
                invalid: Code::PolicyHostCertInvalid,
            },
            Probed::Mx => Codes {
                ok: Code::MxTlsOk,
                unreachable: Code::MxUnreachable,
                failed: Code::MxTlsFailed,
                untrusted: Code::MxCertUntrusted,
                name: Code::MxCertNameMismatch,
                expired: Code::MxCertExpired,
                expiring: Code::MxCertExpiring,
                invalid: Code::MxCertInvalid,
            },
        }
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), proleptic Gregorian.
pub fn date(unix: i64) -> String {
    let (y, m, d, _, _, _) = civil(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day, hour, minute, second) of a Unix time, UTC: the calendar day
/// is [`Day::ymd`]'s, the one place the proleptic Gregorian conversion is written.
fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = Day::from_unix(unix).ymd();
    let secs = unix.rem_euclid(86_400);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// A fresh `_mta-sts` id: the UTC time as `YYYYMMDDhhmmss`, 14 digits (RFC 8461 §3.1
/// allows 1–32 letters and digits; a timestamp only ever grows).
pub fn fresh_id(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(i64::try_from(unix).unwrap_or(i64::MAX / 2));
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// Findings of one probe of `host` at time `now` (Unix seconds).
pub fn tls_findings(kind: Probed, host: &str, probe: &TlsProbe, now: u64) -> Vec<Finding> {
    let (code, message) = match handshake(kind, probe) {
        Ok(info) => certificate(kind, host, info, now),
        Err(failed) => failed,
    };
    vec![Finding::new(code, message).for_host(host)]
}

/// What a failure means for senders: RFC 8461 §3.3 (the policy host) or §4.2 (an MX
/// host).
fn consequence(kind: Probed) -> &'static str {
    match kind {
        Probed::PolicyHost => "senders cannot fetch the policy (RFC 8461 §3.3)",
        Probed::Mx => "a sender enforcing the policy refuses this MX host (RFC 8461 §4.2)",
    }
}

/// The TLS session of a probe that got one, else the finding of how it failed
/// before a certificate could be looked at.
fn handshake(kind: Probed, probe: &TlsProbe) -> Result<&TlsInfo, (Code, String)> {
    let c = kind.codes();
    let what = consequence(kind);
    Err(match probe {
        TlsProbe::Done(info) => return Ok(info),
        TlsProbe::NoAddress(e) => (c.unreachable, format!("{e}: {what}")),
        TlsProbe::Unreachable(e) => {
            let why = match kind {
                Probed::PolicyHost => what,
                Probed::Mx => "could not check STARTTLS (is outbound port 25 blocked here?)",
            };
            (c.unreachable, format!("{e}: {why}"))
        }
        TlsProbe::Smtp(e) => (Code::MxSmtpError, format!("SMTP {e}")),
        TlsProbe::NoStarttls => (
            Code::MxStarttlsMissing,
            format!("EHLO does not offer STARTTLS: {what}"),
        ),
        TlsProbe::HandshakeFailed(e) => (
            c.failed,
            format!("TLS handshake failed (TLS 1.2 or newer is required): {e}: {what}"),
        ),
    })
}

/// The finding on the certificate `host` presented (RFC 8461 §3.3, §4.2: valid for
/// the host's name, chaining to a trusted root, not expired), warning ahead of its
/// expiry.
fn certificate(kind: Probed, host: &str, info: &TlsInfo, now: u64) -> (Code, String) {
    let c = kind.codes();
    let what = consequence(kind);
    match &info.cert {
        CertVerdict::Valid => valid_certificate(&c, host, info, now),
        CertVerdict::Expired => (
            c.expired,
            format!(
                "certificate expired{}: {what}",
                info.not_after
                    .map(|t| format!(" on {}", date(t)))
                    .unwrap_or_default()
            ),
        ),
        CertVerdict::NameMismatch => (
            c.name,
            format!(
                "certificate is not valid for {host} (it names {}): {what}",
                if info.names.is_empty() {
                    "no DNS name".to_string()
                } else {
                    info.names.join(", ")
                }
            ),
        ),
        CertVerdict::Untrusted(e) => (
            c.untrusted,
            format!(
                "certificate does not chain to a trusted root ({e}; issuer {}): {what}",
                info.issuer.as_deref().unwrap_or("unknown")
            ),
        ),
        CertVerdict::Invalid(e) => (c.invalid, format!("certificate {e}: {what}")),
    }
}

/// A valid certificate: fine, or about to expire (an expired one fails every sender).
fn valid_certificate(c: &Codes, host: &str, info: &TlsInfo, now: u64) -> (Code, String) {
    let left = info.not_after.map(|t| t - now as i64);
    match left {
        Some(left) if left < EXPIRY_WARNING_DAYS * 86_400 => (
            c.expiring,
            format!(
                "certificate expires on {} (in {} days): renew it now, an expired \
                 certificate fails every sender",
                date(info.not_after.unwrap_or_default()),
                left.div_euclid(86_400)
            ),
        ),
        _ => {
            let until = info
                .not_after
                .map(|t| format!(", valid until {}", date(t)))
                .unwrap_or_default();
            let version = info.version.replace("TLSv1_", "TLS 1.");
            (
                c.ok,
                format!("{version}, certificate valid for {host}{until}"),
            )
        }
    }
}

/// Where the domain stands (the JSON `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No `_mta-sts` record and no policy: MTA-STS is not deployed.
    NotDeployed,
    /// At least one error.
    Broken,
    /// Deployed in `mode: testing`, no errors.
    Testing,
    /// Deployed in `mode: enforce`, no errors.
    Enforced,
    /// Deployed in `mode: none`, no errors.
    Withdrawn,
    /// `--policy-file`: the file has no errors.
    Ready,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotDeployed => "not-deployed",
            Verdict::Broken => "broken",
            Verdict::Testing => "testing",
            Verdict::Enforced => "enforced",
            Verdict::Withdrawn => "withdrawn",
            Verdict::Ready => "ready",
        }
    }
}

/// The verdict and the next step, following the safe rollout order.
pub fn verdict(r: &CheckReport) -> (Verdict, String) {
    let first_error = r.findings.iter().find(|f| f.severity == Severity::Error);
    let tlsrpt_ok = r.has(Code::TlsrptValid);
    let mode = r.policy.as_ref().map(|p| p.mode.as_str());
    if r.policy_file.is_some() {
        return policy_file_verdict(r, first_error);
    }
    if r.has(Code::DomainInvalid) {
        return (
            Verdict::Broken,
            "Give a domain name, e.g. example.com.".into(),
        );
    }
    if r.has(Code::StsRecordMissing) && r.policy.is_none() {
        return (Verdict::NotDeployed, first_step(&r.domain, tlsrpt_ok));
    }
    if let Some(e) = first_error {
        return (Verdict::Broken, fix_first(e, mode));
    }
    deployed_verdict(r, mode, tlsrpt_ok)
}

/// `--policy-file`: ready to publish, or the first error to fix.
fn policy_file_verdict(r: &CheckReport, first_error: Option<&Finding>) -> (Verdict, String) {
    match first_error {
        Some(e) => (
            Verdict::Broken,
            format!("Fix {} first: {}", e.code.as_str(), e.message),
        ),
        None => (
            Verdict::Ready,
            format!(
                "{}serve it as text/plain at https://mta-sts.<domain>/.well-known/mta-sts.txt \
                 and publish a new id in the _mta-sts record.",
                if r.summary.warnings > 0 {
                    "No errors; review the warnings above, then "
                } else {
                    "Ready to publish: "
                }
            ),
        ),
    }
}

/// Nothing deployed yet: TLS-RPT first (RFC 8460), then the policy in mode testing,
/// then the `_mta-sts` record that makes senders fetch it.
fn first_step(domain: &str, tlsrpt_ok: bool) -> String {
    if tlsrpt_ok {
        format!(
            "TLS-RPT is in place. Publish the policy below in mode testing at \
             https://mta-sts.{domain}/.well-known/mta-sts.txt, then the _mta-sts record."
        )
    } else {
        format!(
            "Start with TLS-RPT: publish the _smtp._tls.{domain} record below so that \
             senders report TLS failures; then the policy in mode testing and the \
             _mta-sts record."
        )
    }
}

/// The first error to fix, and under an enforced policy why it is urgent.
fn fix_first(e: &Finding, mode: Option<&str>) -> String {
    let mut step = format!("Fix {} first: {}", e.code.as_str(), e.message);
    if mode == Some("enforce") {
        step.push_str(
            " (the policy is enforced: senders that cached it refuse MX hosts failing \
             these checks)",
        );
    }
    step
}

/// A deployment without errors: the next step for its mode (RFC 8461 §5: testing,
/// then enforce; §8.3: none to withdraw).
fn deployed_verdict(r: &CheckReport, mode: Option<&str>, tlsrpt_ok: bool) -> (Verdict, String) {
    let domain = &r.domain;
    match mode {
        Some("testing") if !tlsrpt_ok => (
            Verdict::Testing,
            format!(
                "Publish a TLS-RPT record at _smtp._tls.{domain}: in mode testing the \
                 reports are the whole point."
            ),
        ),
        Some("testing") => (
            Verdict::Testing,
            format!(
                "After a couple of weeks of clean TLS-RPT reports, change `mode: testing` to \
                 `mode: enforce`, raise max_age to at least {ENFORCE_MAX_AGE}, and publish a \
                 new id in _mta-sts.{domain}."
            ),
        ),
        Some("none") => (
            Verdict::Withdrawn,
            format!(
                "mode none withdraws MTA-STS: keep it published (with a new id) for the old \
                 max_age, then remove the _mta-sts.{domain} record (RFC 8461 §8.3)."
            ),
        ),
        _ if r.summary.warnings > 0 => (
            Verdict::Enforced,
            "Enforced and working; review the warnings above.".into(),
        ),
        _ => (
            Verdict::Enforced,
            format!(
                "Nothing to do. When the policy changes (an MX host, the mode, max_age), \
                 publish a new id in _mta-sts.{domain}, or senders keep the old policy."
            ),
        ),
    }
}

/// What to publish, ready to paste (the JSON `suggestion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// Zone-file line for `_mta-sts.<domain>` with a fresh id.
    pub sts_record: String,
    /// Zone-file line for `_smtp._tls.<domain>`; the existing record when valid,
    /// else one whose `rua` mailbox the user fills in.
    pub tlsrpt_record: String,
    /// The URL to serve `policy` at, as `text/plain`.
    pub policy_url: String,
    /// The policy file: the current MX hosts, `mode: testing`, a week's max_age.
    pub policy: String,
    /// What to change (and which id to bump) when moving to enforce.
    pub enforce_reminder: String,
}

/// A suggestion when the `_mta-sts` record or the policy is missing or broken.
pub fn suggestion(r: &CheckReport, now: u64) -> Option<Suggestion> {
    let d = &r.domain;
    let broken = [
        Code::StsRecordMissing,
        Code::StsRecordMultiple,
        Code::StsRecordInvalid,
        Code::PolicyFetchFailed,
        Code::PolicyRedirect,
        Code::PolicyInvalid,
    ];
    if d.is_empty()
        || r.policy_file.is_some()
        || r.has(Code::DomainInvalid)
        || !broken.iter().any(|&c| r.has(c))
    {
        return None;
    }
    let id = fresh_id(now);
    let tlsrpt_record = match r.tlsrpt_rua.is_empty() {
        false => format!(
            "_smtp._tls.{d}. IN TXT \"v=TLSRPTv1; rua={}\"",
            r.tlsrpt_rua.join(",")
        ),
        true => format!("_smtp._tls.{d}. IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{d}\""),
    };
    let mut policy = String::from("version: STSv1\nmode: testing\n");
    let hosts: Vec<&str> =
        r.mx.iter()
            .map(|m| m.host.as_str())
            .filter(|h| !h.is_empty())
            .collect();
    if hosts.is_empty() {
        policy.push_str(&format!("mx: mail.{d}\n"));
    }
    for h in &hosts {
        policy.push_str(&format!("mx: {h}\n"));
    }
    policy.push_str(&format!("max_age: {SUGGESTED_MAX_AGE}\n"));
    Some(Suggestion {
        sts_record: format!("_mta-sts.{d}. IN TXT \"v=STSv1; id={id}\""),
        tlsrpt_record,
        policy_url: format!("https://mta-sts.{d}/.well-known/mta-sts.txt"),
        policy,
        enforce_reminder: format!(
            "To enforce, after a couple of weeks of clean TLS-RPT reports: change \
             `mode: testing` to `mode: enforce`, set max_age to {ENFORCE_MAX_AGE} or more, \
             and replace the id in _mta-sts.{d} with a new one (e.g. the date and time)."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tls::TlsInfo;

    #[test]
    fn dates_and_ids() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_305_600), "2026-11-22");
        assert_eq!(date(-86_400), "1969-12-31");
        assert_eq!(fresh_id(1_795_361_234), "20261122152714");
        // RFC 8461 §3.1: 1–32 letters/digits
        let id = fresh_id(4_102_444_800);
        assert!(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    fn done(cert: CertVerdict, not_after: i64) -> TlsProbe {
        TlsProbe::Done(TlsInfo {
            version: "TLSv1_3".into(),
            cert,
            not_after: Some(not_after),
            names: vec!["wrong.mx.example".into()],
            issuer: Some("CN=ca".into()),
        })
    }

    /// (probe, code) for both kinds of host: each outcome has its own code.
    #[test]
    fn probe_outcomes_table() {
        let now = 1_800_000_000u64;
        let day = 86_400i64;
        let later = now as i64 + 90 * day;
        let rows = [
            (
                done(CertVerdict::Valid, later),
                Code::PolicyHostTlsOk,
                Code::MxTlsOk,
            ),
            (
                done(CertVerdict::Valid, now as i64 + 13 * day),
                Code::PolicyHostCertExpiring,
                Code::MxCertExpiring,
            ),
            (
                done(CertVerdict::Valid, now as i64 + 15 * day),
                Code::PolicyHostTlsOk,
                Code::MxTlsOk,
            ),
            (
                done(CertVerdict::Expired, now as i64 - day),
                Code::PolicyHostCertExpired,
                Code::MxCertExpired,
            ),
            (
                done(CertVerdict::NameMismatch, later),
                Code::PolicyHostCertNameMismatch,
                Code::MxCertNameMismatch,
            ),
            (
                done(CertVerdict::Untrusted("x".into()), later),
                Code::PolicyHostCertUntrusted,
                Code::MxCertUntrusted,
            ),
            (
                done(CertVerdict::Invalid("x".into()), later),
                Code::PolicyHostCertInvalid,
                Code::MxCertInvalid,
            ),
            (
                TlsProbe::HandshakeFailed("x".into()),
                Code::PolicyHostTlsFailed,
                Code::MxTlsFailed,
            ),
            (
                TlsProbe::NoAddress("x".into()),
                Code::PolicyHostUnreachable,
                Code::MxUnreachable,
            ),
            (
                TlsProbe::Unreachable("x".into()),
                Code::PolicyHostUnreachable,
                Code::MxUnreachable,
            ),
        ];
        for (probe, host_code, mx_code) in rows {
            let f = tls_findings(Probed::PolicyHost, "h.example", &probe, now);
            assert_eq!((f.len(), f[0].code), (1, host_code), "{probe:?}");
            assert_eq!(f[0].host.as_deref(), Some("h.example"));
            let f = tls_findings(Probed::Mx, "mx.example", &probe, now);
            assert_eq!((f.len(), f[0].code), (1, mx_code), "{probe:?}");
        }
        let f = tls_findings(Probed::Mx, "mx.example", &TlsProbe::NoStarttls, now);
        assert_eq!(f[0].code, Code::MxStarttlsMissing);
        let f = tls_findings(
            Probed::Mx,
            "mx.example",
            &done(CertVerdict::NameMismatch, 0),
            now,
        );
        assert!(
            f[0].message.contains("wrong.mx.example"),
            "{}",
            f[0].message
        );
    }
}
