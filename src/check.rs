//! `mtastsd check DOMAIN`: audit a domain's own MTA-STS (RFC 8461) and TLS-RPT
//! (RFC 8460) publication (SPEC 7.1), for the people who run that domain.
//!
//! Unlike `query` (what would Postfix get?), this says what is wrong or risky in what
//! the domain publishes: each check yields one or more [`Finding`]s with a stable
//! [`Code`], and [`CheckReport::has_errors`] gives the exit status.

use serde::Serialize;

use crate::mta_sts::policy::{parse_policy, Mode, Policy, MAX_AGE_LIMIT};
use crate::mta_sts::record::{select_record, RecordError};
use crate::query::PolicyReport;
use crate::resolver::dns::Dns;
use crate::resolver::{policy_url, DnsError, Resolvers};
use crate::socketmap::{normalise_key, Key};
use crate::tlsrpt::{self, TlsRptError};

/// RFC 8461 §3.2 recommends a max_age of weeks; under a day, a policy protects little
/// against an attacker who can wait for it to expire (§10.2).
pub const MAX_AGE_SHORT: u32 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: nothing to fix.
    Note,
    Ok,
    /// Works, but weaker than it should be.
    Warning,
    /// Broken: senders get no (or a wrong) policy or report address.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Stable identifiers of findings (the JSON `code`); the severity follows from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The argument is not a domain name (SPEC 1.6 normalisation refused it).
    DomainInvalid,
    /// SPEC 2: exactly one valid `v=STSv1` record with an id.
    StsRecordValid,
    StsRecordMissing,
    StsRecordMultiple,
    StsRecordInvalid,
    StsRecordDnsError,
    /// SPEC 3, 4: the policy was fetched and parses.
    PolicyValid,
    /// SPEC 3: the fetch failed; [`Finding::stage`] says where.
    PolicyFetchFailed,
    PolicyInvalid,
    PolicyModeEnforce,
    PolicyModeTesting,
    PolicyModeNone,
    PolicyMaxAgeOk,
    PolicyMaxAgeShort,
    PolicyMaxAgeClamped,
    /// RFC 8461 §4.1: every MX host matches a policy mx pattern.
    MxCovered,
    MxNotCovered,
    MxPatternUnused,
    MxNone,
    MxNull,
    MxDnsError,
    /// RFC 8460 §3: exactly one valid `v=TLSRPTv1` record.
    TlsrptValid,
    TlsrptMissing,
    TlsrptMultiple,
    TlsrptInvalid,
    TlsrptDnsError,
}

impl Code {
    pub fn severity(self) -> Severity {
        use Code::*;
        match self {
            StsRecordValid | PolicyValid | PolicyModeEnforce | PolicyMaxAgeOk | MxCovered
            | TlsrptValid => Severity::Ok,
            MxNone | MxNull => Severity::Note,
            PolicyModeTesting | PolicyModeNone | PolicyMaxAgeShort | PolicyMaxAgeClamped
            | MxPatternUnused | TlsrptMissing => Severity::Warning,
            DomainInvalid | StsRecordMissing | StsRecordMultiple | StsRecordInvalid
            | StsRecordDnsError | PolicyFetchFailed | PolicyInvalid | MxNotCovered | MxDnsError
            | TlsrptMultiple | TlsrptInvalid | TlsrptDnsError => Severity::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            DomainInvalid => "domain-invalid",
            StsRecordValid => "sts-record-valid",
            StsRecordMissing => "sts-record-missing",
            StsRecordMultiple => "sts-record-multiple",
            StsRecordInvalid => "sts-record-invalid",
            StsRecordDnsError => "sts-record-dns-error",
            PolicyValid => "policy-valid",
            PolicyFetchFailed => "policy-fetch-failed",
            PolicyInvalid => "policy-invalid",
            PolicyModeEnforce => "policy-mode-enforce",
            PolicyModeTesting => "policy-mode-testing",
            PolicyModeNone => "policy-mode-none",
            PolicyMaxAgeOk => "policy-max-age-ok",
            PolicyMaxAgeShort => "policy-max-age-short",
            PolicyMaxAgeClamped => "policy-max-age-clamped",
            MxCovered => "mx-covered",
            MxNotCovered => "mx-not-covered",
            MxPatternUnused => "mx-pattern-unused",
            MxNone => "mx-none",
            MxNull => "mx-null",
            MxDnsError => "mx-dns-error",
            TlsrptValid => "tlsrpt-valid",
            TlsrptMissing => "tlsrpt-missing",
            TlsrptMultiple => "tlsrpt-multiple",
            TlsrptInvalid => "tlsrpt-invalid",
            TlsrptDnsError => "tlsrpt-dns-error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// For [`Code::PolicyFetchFailed`]: the [`crate::resolver::FetchError::stage`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-case, no trailing dot; empty for a null MX (RFC 7505).
    pub host: String,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// After SPEC 1.6 normalisation (or as given, when that refused it).
    pub domain: String,
    /// Every TXT record at `_mta-sts.<domain>`, strings concatenated (SPEC 2.2).
    pub sts_records: Vec<String>,
    pub sts_id: Option<String>,
    pub policy_url: Option<String>,
    pub policy: Option<PolicyReport>,
    pub mx: Vec<MxHost>,
    /// Every TXT record at `_smtp._tls.<domain>`.
    pub tlsrpt_records: Vec<String>,
    pub tlsrpt_rua: Vec<String>,
    /// In check order: STSv1 record, policy, MX coverage, TLS-RPT.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// The caller's exit status: any [`Severity::Error`] finding.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn has(&self, code: Code) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    fn push(&mut self, code: Code, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: code.severity(),
            code,
            message: message.into(),
            stage: None,
        });
    }
}

/// Audit `domain` (any form `query` accepts; normally a plain domain name).
///
/// The TXT lookups and the policy fetch go through `resolvers`, like the daemon's; MX
/// records through `dns`. The four lookups run concurrently; nothing is cached.
pub async fn check(domain: &str, dns: &Dns, resolvers: &Resolvers, https_port: u16) -> CheckReport {
    let mut report = CheckReport {
        domain: domain.to_string(),
        sts_records: Vec::new(),
        sts_id: None,
        policy_url: None,
        policy: None,
        mx: Vec::new(),
        tlsrpt_records: Vec::new(),
        tlsrpt_rua: Vec::new(),
        findings: Vec::new(),
    };
    let domain = match normalise_key(domain) {
        Key::Domain(d) => d.into_owned(),
        Key::Skip(why) => {
            report.push(Code::DomainInvalid, why.as_str());
            return report;
        }
    };
    report.domain.clone_from(&domain);
    report.policy_url = Some(policy_url(&domain, https_port));

    let sts_name = format!("_mta-sts.{domain}");
    let tlsrpt_name = format!("_smtp._tls.{domain}");
    let (sts, fetched, mx, tlsrpt) = tokio::join!(
        resolvers.txt.lookup_txt(&sts_name),
        resolvers.fetch.fetch(&domain),
        dns.lookup_mx(&domain),
        resolvers.txt.lookup_txt(&tlsrpt_name),
    );

    check_sts_record(&mut report, &sts_name, sts);
    let policy = check_policy(&mut report, fetched);
    check_mx(&mut report, policy.as_ref(), mx);
    check_tlsrpt(&mut report, &tlsrpt_name, tlsrpt);
    report
}

fn lossy(records: &[Vec<u8>]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect()
}

/// SPEC 2.3–2.6 through [`select_record`].
fn check_sts_record(report: &mut CheckReport, name: &str, lookup: Result<Vec<Vec<u8>>, DnsError>) {
    let records = match lookup {
        Ok(records) => records,
        Err(DnsError::NoRecords { .. }) => Vec::new(),
        Err(e @ DnsError::Failed(_)) => {
            return report.push(Code::StsRecordDnsError, format!("{name}: {e}"));
        }
    };
    report.sts_records = lossy(&records);
    match select_record(&records) {
        Ok(rec) => {
            report.push(
                Code::StsRecordValid,
                format!("{name}: one valid v=STSv1 record, id {}", rec.id),
            );
            report.sts_id = Some(rec.id);
        }
        Err(RecordError::NoRecord) => report.push(
            Code::StsRecordMissing,
            format!(
                "{name}: no TXT record begins with `v=STSv1;` ({} TXT records): senders \
                 never look for the policy (RFC 8461 §3.1)",
                records.len()
            ),
        ),
        Err(e @ RecordError::Multiple(_)) => {
            report.push(Code::StsRecordMultiple, format!("{name}: {e} (SPEC 2.4)"))
        }
        Err(e @ RecordError::Invalid(_)) => {
            report.push(Code::StsRecordInvalid, format!("{name}: {e} (SPEC 2.5)"))
        }
    }
}

/// SPEC 3 (fetch) and SPEC 4 (parse), then the mode and max_age advice.
fn check_policy(
    report: &mut CheckReport,
    fetched: Result<Vec<u8>, crate::resolver::FetchError>,
) -> Option<Policy> {
    let url = report.policy_url.clone().unwrap_or_default();
    let body = match fetched {
        Ok(body) => body,
        Err(e) => {
            report.push(Code::PolicyFetchFailed, format!("{url}: {e}"));
            if let Some(f) = report.findings.last_mut() {
                f.stage = Some(e.stage());
            }
            return None;
        }
    };
    let policy = match parse_policy(&body) {
        Ok(p) => p,
        Err(e) => {
            report.push(Code::PolicyInvalid, format!("{url}: {e} (SPEC 4.6)"));
            return None;
        }
    };
    let mx: Vec<String> = policy.mx.iter().map(ToString::to_string).collect();
    report.push(
        Code::PolicyValid,
        format!(
            "{url}: mode {}, max_age {}, mx {}",
            policy.mode,
            policy.max_age,
            if mx.is_empty() {
                "(none)".into()
            } else {
                mx.join(", ")
            }
        ),
    );
    report.policy = Some(PolicyReport {
        mode: policy.mode.to_string(),
        max_age: policy.max_age,
        mx,
        text: String::from_utf8_lossy(&body).into_owned(),
    });

    match policy.mode {
        Mode::Enforce => report.push(Code::PolicyModeEnforce, "mode enforce"),
        Mode::Testing => report.push(
            Code::PolicyModeTesting,
            "mode testing: not enforced, senders deliver without TLS checks and only \
             report failures (RFC 8461 §5)",
        ),
        Mode::None => report.push(
            Code::PolicyModeNone,
            "mode none: the domain is withdrawing MTA-STS, nothing is enforced (RFC 8461 §8.3)",
        ),
    }
    if policy.max_age_clamped {
        report.push(
            Code::PolicyMaxAgeClamped,
            format!(
                "max_age is above the maximum {MAX_AGE_LIMIT} (one year); senders clamp it \
                 (RFC 8461 §3.2, SPEC 4.5)"
            ),
        );
    } else if policy.max_age < MAX_AGE_SHORT {
        report.push(
            Code::PolicyMaxAgeShort,
            format!(
                "max_age {} is under a day; RFC 8461 §3.2 recommends weeks or more, so a \
                 cached policy outlives a short DNS or HTTPS outage or attack",
                policy.max_age
            ),
        );
    } else {
        report.push(Code::PolicyMaxAgeOk, format!("max_age {}", policy.max_age));
    }
    Some(policy)
}

/// RFC 8461 §4.1: senders refuse MX hosts that match no mx pattern, so under
/// `enforce` an uncovered MX host loses mail (under `testing` it shows up in reports).
fn check_mx(
    report: &mut CheckReport,
    policy: Option<&Policy>,
    lookup: Result<Vec<(u16, String)>, DnsError>,
) {
    let mut hosts = match lookup {
        Ok(hosts) => hosts,
        Err(DnsError::NoRecords { .. }) => {
            return report.push(
                Code::MxNone,
                "no MX records: mail goes to the domain's own address (RFC 5321 §5.1)",
            );
        }
        Err(e @ DnsError::Failed(_)) => {
            return report.push(Code::MxDnsError, format!("MX {}: {e}", report.domain));
        }
    };
    hosts.sort();
    report.mx = hosts
        .iter()
        .map(|(preference, host)| MxHost {
            preference: *preference,
            host: host.clone(),
        })
        .collect();
    // RFC 7505: a single MX of "." means the domain accepts no mail at all.
    if hosts.len() == 1 && hosts[0].1.is_empty() {
        return report.push(
            Code::MxNull,
            "null MX (RFC 7505): the domain accepts no mail, an MTA-STS policy is moot",
        );
    }
    // Mode none has nothing to enforce; no policy, nothing to compare.
    let Some(policy) = policy.filter(|p| p.mode != Mode::None) else {
        return;
    };
    let mut uncovered = 0;
    for (_, host) in &hosts {
        if !policy.mx.iter().any(|p| p.matches(host)) {
            uncovered += 1;
            report.push(
                Code::MxNotCovered,
                format!(
                    "MX host {host} matches no policy mx pattern: senders refuse it \
                     (RFC 8461 §4.1)"
                ),
            );
        }
    }
    for pattern in &policy.mx {
        if !hosts.iter().any(|(_, h)| pattern.matches(h)) {
            report.push(
                Code::MxPatternUnused,
                format!(
                    "policy mx pattern {pattern} matches no MX host of {}",
                    report.domain
                ),
            );
        }
    }
    if uncovered == 0 {
        let names: Vec<&str> = hosts.iter().map(|(_, h)| h.as_str()).collect();
        report.push(
            Code::MxCovered,
            format!("every MX host matches the policy: {}", names.join(", ")),
        );
    }
}

/// RFC 8460 §3: TLS-RPT is how a domain learns that senders fail its policy; RFC 8461
/// §8 recommends it beside MTA-STS, so its absence is a warning, a broken one an error.
fn check_tlsrpt(report: &mut CheckReport, name: &str, lookup: Result<Vec<Vec<u8>>, DnsError>) {
    let records = match lookup {
        Ok(records) => records,
        Err(DnsError::NoRecords { .. }) => Vec::new(),
        Err(e @ DnsError::Failed(_)) => {
            return report.push(Code::TlsrptDnsError, format!("{name}: {e}"));
        }
    };
    report.tlsrpt_records = lossy(&records);
    match tlsrpt::select_record(&records) {
        Ok(rec) => {
            report.push(
                Code::TlsrptValid,
                format!("{name}: reports go to {}", rec.rua.join(", ")),
            );
            report.tlsrpt_rua = rec.rua;
        }
        Err(TlsRptError::NoRecord) => report.push(
            Code::TlsrptMissing,
            format!(
                "{name}: no v=TLSRPTv1 record; without TLS-RPT (RFC 8460) the domain never \
                 hears of senders failing its policy"
            ),
        ),
        Err(e @ TlsRptError::Multiple(_)) => report.push(
            Code::TlsrptMultiple,
            format!("{name}: {e}: senders ignore them all (RFC 8460 §3)"),
        ),
        Err(e @ TlsRptError::Invalid(_)) => {
            report.push(Code::TlsrptInvalid, format!("{name}: {e} (RFC 8460 §3)"))
        }
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "domain  {}", self.domain)?;
        for finding in &self.findings {
            write!(
                f,
                "{:<8}{:<24}{}",
                finding.severity.as_str(),
                finding.code.as_str(),
                finding.message
            )?;
            match finding.stage {
                Some(stage) => writeln!(f, " [{stage}]")?,
                None => writeln!(f)?,
            }
        }
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        writeln!(
            f,
            "result  {} error(s), {} warning(s)",
            count(Severity::Error),
            count(Severity::Warning)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON code and the text code are the same string, so scripts can use either.
    #[test]
    fn code_serializes_as_its_str() {
        for code in [
            Code::DomainInvalid,
            Code::StsRecordDnsError,
            Code::PolicyMaxAgeClamped,
            Code::MxPatternUnused,
            Code::TlsrptDnsError,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
