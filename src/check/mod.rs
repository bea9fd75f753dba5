//! `mtastsd check DOMAIN`: audit a domain's own MTA-STS (RFC 8461) and TLS-RPT
//! (RFC 8460) publication (SPEC 7.1), for the people who run that domain.
//!
//! Unlike `query` (what would Postfix get?), this says what is wrong or risky in what
//! the domain publishes: each check yields one or more [`Finding`]s with a stable
//! [`Code`], and [`CheckReport::has_errors`] gives the exit status.
//!
//! | module | what | I/O |
//! |---|---|---|
//! | this file | the checks in order, [`check`] and [`check_policy_file`] | drives the probes |
//! | [`lint`] | the policy file line by line, mode and max_age advice | pure |
//! | [`advice`] | certificate findings, verdict, next step, what to publish | pure |
//! | [`render`] | the human output (grouped by area, optional colour) | pure |
//! | [`tls`] | TLS handshake that records the peer certificate and its verdict | network |
//! | [`smtp`] | EHLO / STARTTLS / handshake on each MX host's port 25 | network |
//!
//! The JSON field names and codes are documented in `docs/CHECK.md` and are stable.

pub mod advice;
pub mod lint;
pub mod render;
pub mod smtp;
pub mod tls;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::mta_sts::policy::{Mode, Policy};
use crate::mta_sts::record::{select_record, RecordError};
use crate::query::PolicyReport;
use crate::resolver::dns::Dns;
use crate::resolver::{policy_url, DnsError, FetchError, Resolvers};
use crate::socketmap::{normalise_key, Key};
use crate::tlsrpt::{self, TlsRptError};

pub use lint::MAX_AGE_SHORT;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: nothing to fix.
    Note,
    Ok,
    /// Works, but weaker than it should be.
    Warning,
    /// Broken: senders get no (or a wrong) policy or report address, or would refuse
    /// an MX host.
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

/// What part of the publication a finding is about; the human output groups by it,
/// in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    Domain,
    /// `_mta-sts.<domain>` TXT (RFC 8461 §3.1).
    StsRecord,
    /// `mta-sts.<domain>`: address, HTTPS, certificate (RFC 8461 §3.3).
    PolicyHost,
    /// The policy file (RFC 8461 §3.2).
    Policy,
    /// MX records against the policy's patterns (RFC 8461 §4.1).
    Mx,
    /// Each MX host on port 25: STARTTLS and its certificate (RFC 8461 §4.2).
    MxTls,
    /// `_smtp._tls.<domain>` TXT (RFC 8460 §3).
    Tlsrpt,
}

impl Area {
    pub const ALL: [Area; 7] = [
        Area::Domain,
        Area::StsRecord,
        Area::PolicyHost,
        Area::Policy,
        Area::Mx,
        Area::MxTls,
        Area::Tlsrpt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Domain => "domain",
            Area::StsRecord => "sts-record",
            Area::PolicyHost => "policy-host",
            Area::Policy => "policy",
            Area::Mx => "mx",
            Area::MxTls => "mx-tls",
            Area::Tlsrpt => "tlsrpt",
        }
    }
}

/// One table for every code: its stable string (the JSON `code`), severity and area.
macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $s:literal, $sev:ident, $area:ident; )*) => {
        /// Stable identifiers of findings (the JSON `code`); the severity and the area
        /// follow from the code. Listed with their meaning in `docs/CHECK.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $( $(#[$doc])* $name, )* }

        impl Code {
            /// Every code, in table order (docs and tests walk it).
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$name => $s,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$name => Severity::$sev,)* }
            }

            pub fn area(self) -> Area {
                match self { $(Code::$name => Area::$area,)* }
            }
        }
    };
}

codes! {
    /// The argument is not a domain name (SPEC 1.6 normalisation refused it).
    DomainInvalid = "domain-invalid", Error, Domain;

    /// SPEC 2: exactly one valid `v=STSv1` record with an id.
    StsRecordValid = "sts-record-valid", Ok, StsRecord;
    StsRecordMissing = "sts-record-missing", Error, StsRecord;
    StsRecordMultiple = "sts-record-multiple", Error, StsRecord;
    StsRecordInvalid = "sts-record-invalid", Error, StsRecord;
    StsRecordDnsError = "sts-record-dns-error", Error, StsRecord;
    /// RFC 8461 §3.1: senders refetch only when the id changes.
    StsIdReminder = "sts-id-reminder", Note, StsRecord;

    /// RFC 8461 §3.3: HTTPS on `mta-sts.<domain>` with a valid certificate.
    PolicyHostTlsOk = "policy-host-tls-ok", Ok, PolicyHost;
    PolicyHostUnreachable = "policy-host-unreachable", Error, PolicyHost;
    PolicyHostTlsFailed = "policy-host-tls-failed", Error, PolicyHost;
    PolicyHostCertUntrusted = "policy-host-cert-untrusted", Error, PolicyHost;
    PolicyHostCertNameMismatch = "policy-host-cert-name-mismatch", Error, PolicyHost;
    PolicyHostCertExpired = "policy-host-cert-expired", Error, PolicyHost;
    PolicyHostCertExpiring = "policy-host-cert-expiring", Warning, PolicyHost;
    PolicyHostCertInvalid = "policy-host-cert-invalid", Error, PolicyHost;

    /// SPEC 3, 4: the policy was fetched and parses.
    PolicyValid = "policy-valid", Ok, Policy;
    /// SPEC 3: the fetch failed; [`Finding::stage`] says where.
    PolicyFetchFailed = "policy-fetch-failed", Error, Policy;
    /// SPEC 3.2: a 3xx; senders never follow it. The message names the Location.
    PolicyRedirect = "policy-redirect", Error, Policy;
    PolicyInvalid = "policy-invalid", Error, Policy;
    PolicyNotUtf8 = "policy-not-utf8", Error, Policy;
    PolicyLineInvalid = "policy-line-invalid", Error, Policy;
    PolicyVersionInvalid = "policy-version-invalid", Error, Policy;
    PolicyVersionNotFirst = "policy-version-not-first", Warning, Policy;
    PolicyModeInvalid = "policy-mode-invalid", Error, Policy;
    PolicyMaxAgeInvalid = "policy-max-age-invalid", Error, Policy;
    PolicyMxInvalid = "policy-mx-invalid", Error, Policy;
    PolicyKeyMissing = "policy-key-missing", Error, Policy;
    PolicyKeyUnknown = "policy-key-unknown", Warning, Policy;
    PolicyKeyDuplicate = "policy-key-duplicate", Warning, Policy;
    PolicyLineEndings = "policy-line-endings", Note, Policy;
    PolicyLineEndingsMixed = "policy-line-endings-mixed", Warning, Policy;
    PolicyModeEnforce = "policy-mode-enforce", Ok, Policy;
    PolicyModeTesting = "policy-mode-testing", Warning, Policy;
    PolicyModeNone = "policy-mode-none", Warning, Policy;
    PolicyMaxAgeOk = "policy-max-age-ok", Ok, Policy;
    PolicyMaxAgeShort = "policy-max-age-short", Warning, Policy;
    PolicyMaxAgeClamped = "policy-max-age-clamped", Warning, Policy;

    /// RFC 8461 §4.1: every MX host matches a policy mx pattern.
    MxCovered = "mx-covered", Ok, Mx;
    MxNotCovered = "mx-not-covered", Error, Mx;
    MxPatternUnused = "mx-pattern-unused", Warning, Mx;
    MxNone = "mx-none", Note, Mx;
    MxNull = "mx-null", Note, Mx;
    MxDnsError = "mx-dns-error", Error, Mx;

    /// RFC 8461 §4.2: STARTTLS with a valid certificate for the MX host name.
    MxTlsOk = "mx-tls-ok", Ok, MxTls;
    /// No address, refused, timed out: a warning, since outbound port 25 is often
    /// blocked where `check` runs; the message says which.
    MxUnreachable = "mx-unreachable", Warning, MxTls;
    MxSmtpError = "mx-smtp-error", Error, MxTls;
    MxStarttlsMissing = "mx-starttls-missing", Error, MxTls;
    MxTlsFailed = "mx-tls-failed", Error, MxTls;
    MxCertUntrusted = "mx-cert-untrusted", Error, MxTls;
    MxCertNameMismatch = "mx-cert-name-mismatch", Error, MxTls;
    MxCertExpired = "mx-cert-expired", Error, MxTls;
    MxCertExpiring = "mx-cert-expiring", Warning, MxTls;
    MxCertInvalid = "mx-cert-invalid", Error, MxTls;

    /// RFC 8460 §3: exactly one valid `v=TLSRPTv1` record.
    TlsrptValid = "tlsrpt-valid", Ok, Tlsrpt;
    TlsrptMissing = "tlsrpt-missing", Warning, Tlsrpt;
    TlsrptMultiple = "tlsrpt-multiple", Error, Tlsrpt;
    TlsrptInvalid = "tlsrpt-invalid", Error, Tlsrpt;
    TlsrptDnsError = "tlsrpt-dns-error", Error, Tlsrpt;
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub area: Area,
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// For [`Code::PolicyFetchFailed`]: the [`crate::resolver::FetchError::stage`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// For policy lint findings: the line of the policy file (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// For policy host and MX host findings: the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Finding {
    pub fn new(code: Code, message: impl Into<String>) -> Finding {
        Finding {
            area: code.area(),
            severity: code.severity(),
            code,
            message: message.into(),
            stage: None,
            line: None,
            host: None,
        }
    }

    pub fn at_line(mut self, line: usize) -> Finding {
        self.line = Some(line);
        self
    }

    pub fn for_host(mut self, host: &str) -> Finding {
        self.host = Some(host.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-case, no trailing dot; empty for a null MX (RFC 7505).
    pub host: String,
}

/// Error and warning counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// After SPEC 1.6 normalisation (or as given, when that refused it); empty for
    /// `--policy-file` without `--domain`.
    pub domain: String,
    /// `--policy-file`: the file linted instead of a fetched policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<String>,
    /// Every TXT record at `_mta-sts.<domain>`, strings concatenated (SPEC 2.2).
    pub sts_records: Vec<String>,
    pub sts_id: Option<String>,
    pub policy_url: Option<String>,
    pub policy: Option<PolicyReport>,
    pub mx: Vec<MxHost>,
    /// Every TXT record at `_smtp._tls.<domain>`.
    pub tlsrpt_records: Vec<String>,
    pub tlsrpt_rua: Vec<String>,
    /// Grouped by area in [`Area`] order, in check order within an area.
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// [`advice::Verdict`]: where the domain stands in the rollout.
    pub verdict: advice::Verdict,
    /// One sentence: what to do next, in the safe rollout order.
    pub next_step: String,
    /// What to publish, ready to paste, when MTA-STS is missing or broken.
    pub suggestion: Option<advice::Suggestion>,
}

impl CheckReport {
    fn new(domain: &str) -> CheckReport {
        CheckReport {
            domain: domain.to_string(),
            policy_file: None,
            sts_records: Vec::new(),
            sts_id: None,
            policy_url: None,
            policy: None,
            mx: Vec::new(),
            tlsrpt_records: Vec::new(),
            tlsrpt_rua: Vec::new(),
            findings: Vec::new(),
            summary: Summary::default(),
            verdict: advice::Verdict::Broken,
            next_step: String::new(),
            suggestion: None,
        }
    }

    /// The caller's exit status: any [`Severity::Error`] finding.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn has(&self, code: Code) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    fn push(&mut self, code: Code, message: impl Into<String>) {
        self.findings.push(Finding::new(code, message));
    }

    /// Group by area (stable: check order within an area), count, and conclude.
    fn finish(&mut self, now: u64) {
        self.findings.sort_by_key(|f| f.area);
        self.summary = Summary {
            errors: self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count(),
            warnings: self
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
        };
        let (verdict, next_step) = advice::verdict(self);
        self.verdict = verdict;
        self.next_step = next_step;
        self.suggestion = advice::suggestion(self, now);
    }
}

/// What `check` needs besides the resolvers: ports (443 and 25 except against test
/// fixtures), the probe deadline and the trust anchors (SPEC 3.7: the system's roots
/// plus the configured CA file, as for the daemon's fetches).
#[derive(Clone)]
pub struct CheckOptions {
    pub https_port: u16,
    pub smtp_port: u16,
    /// Deadline of each TLS or SMTP probe (the policy fetch has the fetch timeout).
    pub timeout: Duration,
    pub roots: Arc<rustls::RootCertStore>,
    /// The name sent in EHLO.
    pub helo: String,
}

impl CheckOptions {
    /// From the daemon's configuration: `fetch.https_port`, `fetch.timeout`,
    /// `fetch.ca_file`; SMTP on port 25.
    pub fn from_config(config: &Config) -> Result<CheckOptions, tls::RootsError> {
        Ok(CheckOptions {
            https_port: config.fetch.https_port,
            smtp_port: 25,
            timeout: config.fetch.timeout,
            roots: Arc::new(tls::roots(config.fetch.ca_file.as_deref())?),
            helo: "localhost".into(),
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Audit `domain` (any form `query` accepts; normally a plain domain name).
///
/// The TXT lookups and the policy fetch go through `resolvers`, like the daemon's; MX
/// records and the probes' addresses through `dns`. DNS lookups, the fetch and the
/// policy host's TLS probe run concurrently, then the MX hosts are probed
/// concurrently; nothing is cached.
pub async fn check(
    domain: &str,
    dns: &Dns,
    resolvers: &Resolvers,
    opts: &CheckOptions,
) -> CheckReport {
    let mut report = CheckReport::new(domain);
    let domain = match normalise_key(domain) {
        Key::Domain(d) => d.into_owned(),
        Key::Skip(why) => {
            report.push(Code::DomainInvalid, why.as_str());
            report.finish(unix_now());
            return report;
        }
    };
    report.domain.clone_from(&domain);
    report.policy_url = Some(policy_url(&domain, opts.https_port));

    let sts_name = format!("_mta-sts.{domain}");
    let tlsrpt_name = format!("_smtp._tls.{domain}");
    let policy_host = format!("mta-sts.{domain}");
    let (sts, fetched, mx, tlsrpt, host_tls) = tokio::join!(
        resolvers.txt.lookup_txt(&sts_name),
        resolvers.fetch.fetch(&domain),
        dns.lookup_mx(&domain),
        resolvers.txt.lookup_txt(&tlsrpt_name),
        tls::probe_https(dns, &policy_host, opts),
    );
    let now = unix_now();

    check_sts_record(&mut report, &sts_name, sts);
    report.findings.extend(advice::tls_findings(
        advice::Probed::PolicyHost,
        &policy_host,
        &host_tls,
        now,
    ));
    let policy = check_policy(&mut report, fetched);
    let hosts = check_mx(&mut report, policy.as_ref(), mx);
    let probes = futures_util::future::join_all(
        hosts
            .iter()
            .map(|host| smtp::probe_mx(dns, host, opts))
            .collect::<Vec<_>>(),
    )
    .await;
    for (host, probe) in hosts.iter().zip(&probes) {
        report
            .findings
            .extend(advice::tls_findings(advice::Probed::Mx, host, probe, now));
    }
    check_tlsrpt(&mut report, &tlsrpt_name, tlsrpt);
    report.finish(now);
    report
}

/// `check --policy-file FILE [--domain D]`: lint a policy before publishing it; with
/// a domain, also compare it with the domain's MX records (RFC 8461 §4.1).
pub async fn check_policy_file(
    path: &Path,
    body: &[u8],
    domain: Option<&str>,
    dns: &Dns,
) -> CheckReport {
    let mut report = CheckReport::new(domain.unwrap_or(""));
    report.policy_file = Some(path.display().to_string());
    let domain = match domain.map(normalise_key) {
        None => None,
        Some(Key::Domain(d)) => Some(d.into_owned()),
        Some(Key::Skip(why)) => {
            report.push(Code::DomainInvalid, why.as_str());
            report.finish(unix_now());
            return report;
        }
    };
    let policy = policy_findings(&mut report, body, &path.display().to_string());
    if let Some(domain) = domain {
        report.domain.clone_from(&domain);
        let mx = dns.lookup_mx(&domain).await;
        check_mx(&mut report, policy.as_ref(), mx);
    }
    report.finish(unix_now());
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
            report.push(
                Code::StsIdReminder,
                format!(
                    "change the id (now {}) whenever the policy changes: senders refetch \
                     the policy only when it does (RFC 8461 §3.1)",
                    rec.id
                ),
            );
            report.sts_id = Some(rec.id);
        }
        Err(RecordError::NoRecord) => {
            // SPEC 2.3: `v=STSv1` must come first; say so when it is there but later.
            let misplaced = report
                .sts_records
                .iter()
                .find(|r| r.contains("v=STSv1") || r.to_ascii_lowercase().starts_with("v=stsv1"));
            let hint = match misplaced {
                Some(r) => {
                    format!(": {r:?} is not one, a record must begin with exactly `v=STSv1;`")
                }
                None => format!(" ({} TXT records)", records.len()),
            };
            report.push(
                Code::StsRecordMissing,
                format!(
                    "{name}: no TXT record begins with `v=STSv1;`{hint}; senders never look \
                     for the policy (RFC 8461 §3.1)"
                ),
            )
        }
        Err(e @ RecordError::Multiple(_)) => report.push(
            Code::StsRecordMultiple,
            format!("{name}: {e}: senders ignore them all (SPEC 2.4)"),
        ),
        Err(e @ RecordError::Invalid(_)) => {
            report.push(Code::StsRecordInvalid, format!("{name}: {e} (SPEC 2.5)"))
        }
    }
}

/// SPEC 3 (fetch), then the parse and line lint of [`lint::audit_policy`].
fn check_policy(report: &mut CheckReport, fetched: Result<Vec<u8>, FetchError>) -> Option<Policy> {
    let url = report.policy_url.clone().unwrap_or_default();
    let body = match fetched {
        Ok(body) => body,
        // SPEC 3.2: say where a redirect points, so the fix is obvious.
        Err(FetchError::HttpStatus {
            status,
            location: Some(location),
        }) if (300..400).contains(&status) => {
            report.push(
                Code::PolicyRedirect,
                format!(
                    "{url}: HTTP {status} redirect to {location}: senders never follow \
                     redirects, serve the policy at this URL with status 200 (RFC 8461 §3.3)"
                ),
            );
            if let Some(f) = report.findings.last_mut() {
                f.stage = Some("http-status");
            }
            return None;
        }
        Err(e) => {
            report.push(Code::PolicyFetchFailed, format!("{url}: {e}"));
            if let Some(f) = report.findings.last_mut() {
                f.stage = Some(e.stage());
            }
            return None;
        }
    };
    policy_findings(report, &body, &url)
}

fn policy_findings(report: &mut CheckReport, body: &[u8], source: &str) -> Option<Policy> {
    let (policy, findings) = lint::audit_policy(body, source);
    report.findings.extend(findings);
    let policy = policy?;
    report.policy = Some(PolicyReport {
        mode: policy.mode.to_string(),
        max_age: policy.max_age,
        mx: policy.mx.iter().map(ToString::to_string).collect(),
        text: String::from_utf8_lossy(body).into_owned(),
    });
    Some(policy)
}

/// RFC 8461 §4.1: senders refuse MX hosts that match no mx pattern, so under
/// `enforce` an uncovered MX host loses mail (under `testing` it shows up in reports).
fn check_mx(
    report: &mut CheckReport,
    policy: Option<&Policy>,
    lookup: Result<Vec<(u16, String)>, DnsError>,
) -> Vec<String> {
    let mut hosts = match lookup {
        Ok(hosts) => hosts,
        Err(DnsError::NoRecords { .. }) => {
            report.push(
                Code::MxNone,
                "no MX records: mail goes to the domain's own address (RFC 5321 §5.1)",
            );
            return Vec::new();
        }
        Err(e @ DnsError::Failed(_)) => {
            report.push(Code::MxDnsError, format!("MX {}: {e}", report.domain));
            return Vec::new();
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
        report.push(
            Code::MxNull,
            "null MX (RFC 7505): the domain accepts no mail, an MTA-STS policy is moot",
        );
        return Vec::new();
    }
    // The hosts to probe on port 25 (RFC 8461 §4.2), once each, in preference order.
    let mut probe: Vec<String> = Vec::new();
    for (_, host) in &hosts {
        if !host.is_empty() && !probe.contains(host) {
            probe.push(host.clone());
        }
    }
    // Mode none has nothing to enforce; no policy, nothing to compare.
    let Some(policy) = policy.filter(|p| p.mode != Mode::None) else {
        return probe;
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
    probe
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
        f.write_str(&render::render(self, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON code and the text code are the same string, so scripts can use either;
    /// and no two codes share a string.
    #[test]
    fn code_serializes_as_its_str() {
        let mut seen = std::collections::HashSet::new();
        for &code in Code::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
            assert!(seen.insert(code.as_str()), "{code:?}");
            // the area is the code's prefix, so a reader can tell it from the code
            let prefix = match code.area() {
                Area::Domain => "domain-",
                Area::StsRecord => "sts-",
                Area::PolicyHost => "policy-host-",
                Area::Policy => "policy-",
                Area::Mx | Area::MxTls => "mx-",
                Area::Tlsrpt => "tlsrpt-",
            };
            assert!(code.as_str().starts_with(prefix), "{code:?}");
        }
    }

    /// docs/CHECK.md documents every code with its severity.
    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../docs/CHECK.md");
        for &code in Code::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.severity().as_str());
            assert!(doc.contains(&row), "docs/CHECK.md lacks the row {row}");
        }
    }
}
