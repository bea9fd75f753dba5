//! `mtastsd check DOMAIN` (SPEC 7.1) against the in-process DNS + HTTPS + SMTP world:
//! each test breaks one thing in a domain's publication and expects the finding's
//! code and severity. Golden files for the human and JSON output are in
//! `tests/golden/` (regenerate with `UPDATE_GOLDEN=1`, then read the diff).

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::{enforce, policy};
use mtastsd::check::{check, check_policy_file, CheckOptions, CheckReport, Code, Severity};
use mtastsd::daemon::build_resolvers;
use mtastsd::resolver::dns::Dns;
use support::smtp::{Behaviour, Leaf, SmtpServer};
use support::{policy_host, CertKind, Reply, ResponseCode, World};

const D: &str = "example.com";
const TLSRPT: &str = "_smtp._tls.example.com";
const GOOD_TLSRPT: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com";
const MX1: &str = "mx1.example.com";
const MX2: &str = "in.example.net";

/// The DNS + HTTPS world and an SMTP server standing in for every MX host.
struct Setup {
    world: World,
    smtp: SmtpServer,
    /// When set, the policy host's TLS probe goes here instead of the world's HTTPS
    /// server (for certificates the world's CA kinds do not cover).
    https_probe_port: Option<u16>,
}

impl std::ops::Deref for Setup {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

/// A domain with everything right: one STSv1 record, an enforce policy with a week's
/// max_age covering both MX hosts, both MX hosts offering STARTTLS with valid
/// certificates, and a TLS-RPT record.
async fn good_world() -> Setup {
    let world = World::start().await;
    world.publish(
        D,
        "20240101",
        &policy("enforce", &[MX1, "*.example.net"], 604_800),
    );
    world
        .dns
        .set_mx(D, vec![(10, MX1.into()), (20, MX2.into())]);
    world.dns.set_a(MX1, Ipv4Addr::LOCALHOST);
    world.dns.set_a(MX2, Ipv4Addr::LOCALHOST);
    world.dns.set_txt1(TLSRPT, GOOD_TLSRPT);
    let smtp = SmtpServer::start(world.ca.clone()).await;
    Setup {
        world,
        smtp,
        https_probe_port: None,
    }
}

fn options(s: &Setup, config: &mtastsd::config::Config) -> CheckOptions {
    let mut opts = CheckOptions::from_config(config).expect("options");
    let mut roots = mtastsd::check::tls::roots(Some(s.ca_file())).expect("roots");
    roots.add(s.smtp.own_root()).expect("smtp CA root");
    opts.roots = Arc::new(roots);
    opts.smtp_port = s.smtp.port();
    if let Some(port) = s.https_probe_port {
        opts.https_port = port;
    }
    opts.timeout = Duration::from_secs(2);
    opts
}

async fn run(s: &Setup, domain: &str) -> CheckReport {
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(&s.world, dir.path());
    let dns = Dns::new(&config.dns).expect("dns");
    let resolvers = build_resolvers(&config).expect("resolvers");
    check(domain, &dns, &resolvers, &options(s, &config)).await
}

fn codes(r: &CheckReport, severity: Severity) -> Vec<Code> {
    r.findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.code)
        .collect()
}

fn message(r: &CheckReport, code: Code) -> &str {
    r.findings
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.message.as_str())
        .unwrap_or_else(|| panic!("no {code:?} in\n{r}"))
}

/// Every finding with `code`, as (host, severity).
fn hosts(r: &CheckReport, code: Code) -> Vec<(&str, Severity)> {
    r.findings
        .iter()
        .filter(|f| f.code == code)
        .map(|f| (f.host.as_deref().unwrap_or(""), f.severity))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_good_has_only_ok_findings() {
    let s = good_world().await;
    let r = run(&s, "Example.COM.").await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Ok),
        vec![
            Code::StsRecordValid,
            Code::PolicyHostTlsOk,
            Code::PolicyValid,
            Code::PolicyModeEnforce,
            Code::PolicyMaxAgeOk,
            Code::MxCovered,
            Code::MxTlsOk,
            Code::MxTlsOk,
            Code::TlsrptValid,
        ],
        "{r}"
    );
    assert_eq!(codes(&r, Severity::Warning), vec![], "{r}");
    assert_eq!(
        codes(&r, Severity::Note),
        vec![Code::StsIdReminder, Code::PolicyLineEndings],
        "{r}"
    );
    assert_eq!(r.domain, D); // SPEC 1.6 normalisation
    assert_eq!(r.sts_id.as_deref(), Some("20240101"));
    assert!(message(&r, Code::StsIdReminder).contains("20240101"), "{r}");
    assert_eq!(r.tlsrpt_rua, vec!["mailto:tlsrpt@example.com"]);
    let mx: Vec<(u16, &str)> =
        r.mx.iter()
            .map(|m| (m.preference, m.host.as_str()))
            .collect();
    assert_eq!(mx, vec![(10, MX1), (20, MX2)]);
    assert_eq!(r.policy.as_ref().unwrap().mode, "enforce");
    assert_eq!(
        hosts(&r, Code::MxTlsOk),
        vec![(MX1, Severity::Ok), (MX2, Severity::Ok)]
    );
    // RFC 8461 §4.2: the probe names each MX host in SNI and EHLOs before STARTTLS.
    let mut sni = s.smtp.handshakes();
    sni.sort();
    assert_eq!(sni, vec![MX2.to_string(), MX1.to_string()]);
    let commands = s.smtp.commands();
    assert!(commands.iter().any(|c| c == "STARTTLS"), "{commands:?}");
    assert!(
        commands.iter().any(|c| c.starts_with("EHLO ")),
        "{commands:?}"
    );
    assert_eq!(r.verdict.as_str(), "enforced");
    assert!(r.next_step.contains("new id"), "{}", r.next_step);
    assert!(r.suggestion.is_none());

    let text = r.to_string();
    assert!(text.contains("mx-covered"), "{text}");
    assert!(
        text.contains("verdict: enforced (0 error(s), 0 warning(s))"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["findings"][0]["code"], "sts-record-valid");
    assert_eq!(json["findings"][0]["severity"], "ok");
    assert_eq!(json["findings"][0]["area"], "sts-record");
    assert_eq!(json["sts_id"], "20240101");
    assert_eq!(json["summary"]["errors"], 0);
}

/// RFC 8461 §4.1: an MX host outside every pattern is an error naming the host; a
/// pattern matching no MX host is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_not_covered_is_an_error_naming_the_host() {
    let world = good_world().await;
    world.dns.set_mx(
        D,
        vec![
            (10, "mx1.example.com".into()),
            (20, "backup.example.org".into()),
            // one label too deep for *.example.net (RFC 8461 §4.1)
            (30, "a.b.example.net".into()),
        ],
    );
    let r = run(&world, D).await;
    assert!(r.has_errors(), "{r}");
    let uncovered: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.code == Code::MxNotCovered)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(uncovered.len(), 2, "{r}");
    assert!(uncovered[0].contains("backup.example.org"), "{r}");
    assert!(uncovered[1].contains("a.b.example.net"), "{r}");
    assert!(!r.has(Code::MxCovered), "{r}");
    assert!(
        message(&r, Code::MxPatternUnused).contains("*.example.net"),
        "{r}"
    );
    // The uncovered hosts have no address: their probes are warnings, not errors.
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![
            Code::MxPatternUnused,
            Code::MxUnreachable,
            Code::MxUnreachable
        ],
        "{r}"
    );
}

/// The resolver follows a CNAME at the domain to its MX records (the answer carries
/// the CNAME, which lookup_mx must skip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_behind_cname_is_followed() {
    let world = good_world().await;
    world.dns.set_cname(D, "target.example.org");
    world
        .dns
        .set_mx("target.example.org", vec![(5, "MX1.Example.com.".into())]);
    let r = run(&world, D).await;
    let mx: Vec<(u16, &str)> =
        r.mx.iter()
            .map(|m| (m.preference, m.host.as_str()))
            .collect();
    assert_eq!(mx, vec![(5, "mx1.example.com")], "{r}");
    assert!(r.has(Code::MxCovered), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_no_mx_are_notes() {
    let world = good_world().await;
    world.dns.set_mx(D, vec![(0, ".".into())]);
    let r = run(&world, D).await;
    assert_eq!(hosts(&r, Code::MxNull), vec![("", Severity::Note)], "{r}");
    assert!(!r.has(Code::MxTlsOk), "a null MX is not probed\n{r}");
    assert!(!r.has(Code::MxNotCovered) && !r.has(Code::MxCovered), "{r}");
    assert!(!r.has_errors(), "{r}");

    world.dns.set_mx(D, vec![]);
    let r = run(&world, D).await;
    assert_eq!(hosts(&r, Code::MxNone), vec![("", Severity::Note)], "{r}");
    assert!(!r.has_errors(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_servfail_is_an_error() {
    let world = good_world().await;
    world.dns.set_failure(D, ResponseCode::ServFail);
    let r = run(&world, D).await;
    assert!(r.has(Code::MxDnsError), "{r}");
    assert!(r.has_errors());
}

/// RFC 8460 §3 + RFC 8461 §8: TLS-RPT is recommended, its absence only a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tlsrpt_record_is_a_warning() {
    let world = good_world().await;
    world.dns.remove(TLSRPT);
    let r = run(&world, D).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::TlsrptMissing],
        "{r}"
    );

    // Another TXT record there is not a TLS-RPT record either.
    world.dns.set_txt1(TLSRPT, "v=spf1 -all");
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::TlsrptMissing],
        "{r}"
    );
    assert_eq!(r.tlsrpt_records, vec!["v=spf1 -all"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tlsrpt_record_is_an_error() {
    let world = good_world().await;
    for (records, code) in [
        (
            vec!["v=TLSRPTv1; rua=http://r.example.com"],
            Code::TlsrptInvalid,
        ),
        (vec!["v=TLSRPTv1;"], Code::TlsrptInvalid),
        (
            vec!["v=TLSRPTv1; rua=mailto:a!b@example.com"],
            Code::TlsrptInvalid,
        ),
        (vec![GOOD_TLSRPT, GOOD_TLSRPT], Code::TlsrptMultiple),
    ] {
        world.dns.set_txt(
            TLSRPT,
            records.iter().map(|r| vec![r.to_string()]).collect(),
        );
        let r = run(&world, D).await;
        assert!(r.has_errors(), "{records:?}\n{r}");
        assert_eq!(codes(&r, Severity::Error), vec![code], "{records:?}\n{r}");
        assert!(r.tlsrpt_rua.is_empty());
    }
    // A record split into several strings is concatenated first (as for SPEC 2.2).
    world.dns.set_txt(
        TLSRPT,
        vec![vec![
            "v=TLSRPTv1; rua=mai".into(),
            "lto:a@example.com".into(),
        ]],
    );
    assert!(run(&world, D).await.has(Code::TlsrptValid));

    world.dns.set_failure(TLSRPT, ResponseCode::ServFail);
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::TlsrptDnsError],
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_mode_is_a_warning() {
    let world = good_world().await;
    world.publish(
        D,
        "2",
        &policy("testing", &["mx1.example.com", "*.example.net"], 604_800),
    );
    let r = run(&world, D).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyModeTesting],
        "{r}"
    );
    assert!(message(&r, Code::PolicyModeTesting).contains("not enforced"));
    // testing still compares MX hosts (reports would show the failures)
    assert!(r.has(Code::MxCovered), "{r}");

    // Mode none: a warning, and no MX comparison (nothing is enforced).
    world.publish(D, "3", "version: STSv1\nmode: none\nmax_age: 604800\n");
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyModeNone],
        "{r}"
    );
    assert!(!r.has(Code::MxCovered) && !r.has(Code::MxNotCovered), "{r}");
}

/// RFC 8461 §3.2: max_age should be weeks; over a year is clamped (SPEC 4.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_or_clamped_max_age_is_a_warning() {
    let world = good_world().await;
    world.publish(
        D,
        "2",
        &enforce(&["mx1.example.com", "*.example.net"]).replace("86400", "86399"),
    );
    let r = run(&world, D).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyMaxAgeShort],
        "{r}"
    );

    // exactly a day is fine
    world.publish(D, "3", &enforce(&["mx1.example.com", "*.example.net"]));
    assert!(run(&world, D).await.has(Code::PolicyMaxAgeOk));

    world.publish(
        D,
        "4",
        "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 9999999999\n",
    );
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyMaxAgeClamped],
        "{r}"
    );
    assert_eq!(r.policy.as_ref().unwrap().max_age, 31_557_600);
}

/// SPEC 2.3–2.5: no record, several, or a broken one are errors; the policy is still
/// fetched, to help finish a half-done deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_bad_sts_txt_record_is_an_error() {
    let world = good_world().await;
    world.dns.remove("_mta-sts.example.com");
    let r = run(&world, D).await;
    assert!(r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::StsRecordMissing],
        "{r}"
    );
    assert!(r.has(Code::PolicyValid), "{r}");
    assert!(r.sts_id.is_none());

    for (records, code) in [
        (vec!["v=spf1 -all"], Code::StsRecordMissing),
        (vec!["v=STSv1; id=a-b"], Code::StsRecordInvalid),
        (vec!["v=STSv1;"], Code::StsRecordInvalid), // id required
        (
            vec!["v=STSv1; id=1", "v=STSv1; id=2"],
            Code::StsRecordMultiple,
        ),
    ] {
        world.dns.set_txt(
            "_mta-sts.example.com",
            records.iter().map(|r| vec![r.to_string()]).collect(),
        );
        let r = run(&world, D).await;
        assert_eq!(codes(&r, Severity::Error), vec![code], "{records:?}\n{r}");
    }

    world
        .dns
        .set_failure("_mta-sts.example.com", ResponseCode::ServFail);
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::StsRecordDnsError],
        "{r}"
    );
}

/// SPEC 3: the failed stage is reported, in JSON too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failure_reports_the_stage() {
    let world = good_world().await;
    let host = policy_host(D);
    let body = enforce(&["mx1.example.com"]);
    for (reply, stage) in [
        (Reply::with_type(404, "text/plain", "no"), "http-status"),
        (
            Reply::with_type(200, "text/html", body.clone()),
            "content-type",
        ),
    ] {
        world.https.set(&host, CertKind::Valid, reply);
        let r = run(&world, D).await;
        assert_eq!(fetch_stage(&r), Some(stage), "{r}");
        assert!(r.to_string().contains(&format!("[{stage}]")), "{r}");
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["code"] == "policy-fetch-failed" && f["stage"] == stage),
            "{json}"
        );
        // Without a policy there is nothing to compare the MX hosts with.
        assert!(r.policy.is_none() && !r.has(Code::MxCovered), "{r}");
        assert!(r.has_errors());
    }

    // SPEC 3.1: certificate failures are the `tls` stage.
    for cert in [CertKind::WrongName, CertKind::Expired, CertKind::Untrusted] {
        world.https.set(&host, cert, Reply::Policy(body.clone()));
        let r = run(&world, D).await;
        assert_eq!(fetch_stage(&r), Some("tls"), "{cert:?}\n{r}");
        assert!(
            message(&r, Code::PolicyFetchFailed).contains("certificate"),
            "{cert:?}\n{r}"
        );
    }

    // No address for the policy host at all.
    world.dns.remove(&host);
    let r = run(&world, D).await;
    assert_eq!(fetch_stage(&r), Some("dns"), "{r}");
}

fn fetch_stage(r: &CheckReport) -> Option<&'static str> {
    r.findings
        .iter()
        .find(|f| f.code == Code::PolicyFetchFailed)
        .and_then(|f| f.stage)
}

/// SPEC 4.4, 4.6: a policy that does not parse is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_is_an_error() {
    let world = good_world().await;
    world.publish(D, "2", &enforce(&["*.*.example.net"]));
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::PolicyInvalid, Code::PolicyMxInvalid],
        "{r}"
    );
    let line: Vec<Option<usize>> = r
        .findings
        .iter()
        .filter(|f| f.code == Code::PolicyMxInvalid)
        .map(|f| f.line)
        .collect();
    assert_eq!(line, vec![Some(3)], "{r}");
    assert!(
        message(&r, Code::PolicyInvalid).contains("*.*.example.net"),
        "{r}"
    );
}

/// Not a domain: nothing is looked up (SPEC 1.6 normalisation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_domain_is_an_error_without_lookups() {
    let world = good_world().await;
    for key in ["[192.0.2.1]", ".example.com", "exa mple.com"] {
        let r = run(&world, key).await;
        assert_eq!(
            codes(&r, Severity::Error),
            vec![Code::DomainInvalid],
            "{key}\n{r}"
        );
        assert_eq!(r.findings.len(), 1);
    }
    assert_eq!(world.dns.total_queries(), 0);
}

// ---- 1. the _mta-sts TXT record ---------------------------------------------------

/// SPEC 2.3, 2.5: `v=STSv1` must come first; the id is 1–32 letters/digits; extension
/// fields have a strict syntax.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_record_syntax_mistakes_are_errors() {
    let world = good_world().await;
    for (record, code) in [
        ("id=1; v=STSv1", Code::StsRecordMissing),
        (
            "v=STSv1; id=123456789012345678901234567890123",
            Code::StsRecordInvalid,
        ),
        ("v=STSv1; id=1; x=a b", Code::StsRecordInvalid),
        ("v=STSv1; id=1;;", Code::StsRecordInvalid),
    ] {
        world.dns.set_txt1("_mta-sts.example.com", record);
        let r = run(&world, D).await;
        assert_eq!(codes(&r, Severity::Error), vec![code], "{record}\n{r}");
        assert!(r.suggestion.is_some(), "{record}\n{r}");
    }
    // The hint for a misplaced version says what is wrong with the record.
    world.dns.set_txt1("_mta-sts.example.com", "id=1; v=STSv1");
    let r = run(&world, D).await;
    assert!(
        message(&r, Code::StsRecordMissing).contains("must begin with exactly `v=STSv1;`"),
        "{r}"
    );
}

// ---- 2. the policy host ------------------------------------------------------------

/// RFC 8461 §3.3, SPEC 3.1: the policy host's certificate, probed on its own so the
/// report says which check fails (the fetch only says "tls").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_host_certificate_mistakes_are_errors() {
    let world = good_world().await;
    let host = policy_host(D);
    let body = policy("enforce", &[MX1, "*.example.net"], 604_800);
    for (cert, code) in [
        (CertKind::WrongName, Code::PolicyHostCertNameMismatch),
        (CertKind::Expired, Code::PolicyHostCertExpired),
        (CertKind::Untrusted, Code::PolicyHostCertUntrusted),
        (CertKind::SelfSigned, Code::PolicyHostCertUntrusted),
        // SPEC 3.1: no fallback to the CN
        (CertKind::CnOnly, Code::PolicyHostCertNameMismatch),
    ] {
        world.https.set(&host, cert, Reply::Policy(body.clone()));
        let r = run(&world, D).await;
        assert_eq!(
            hosts(&r, code),
            vec![(host.as_str(), Severity::Error)],
            "{cert:?}\n{r}"
        );
        assert_eq!(fetch_stage(&r), Some("tls"), "{cert:?}\n{r}");
        assert!(!r.has(Code::PolicyHostTlsOk), "{cert:?}\n{r}");
    }
    world
        .https
        .set(&host, CertKind::WrongName, Reply::Policy(body));
    let r = run(&world, D).await;
    assert!(
        message(&r, Code::PolicyHostCertNameMismatch).contains("wrong.mta-sts.example.com"),
        "{r}"
    );
}

/// Expiring within 14 days: a warning while it still works. The TLS probe goes to a
/// second TLS server whose CA can issue such a certificate; the fetch still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_host_certificate_expiring_soon_is_a_warning() {
    let mut s = good_world().await;
    let tls = SmtpServer::start(s.ca.clone()).await;
    tls.set_behaviour(Behaviour::ImplicitTls);
    tls.set_leaf(&policy_host(D), Leaf::ExpiresInDays(5));
    s.https_probe_port = Some(tls.port());
    let mut roots = mtastsd::check::tls::roots(Some(s.ca_file())).unwrap();
    roots.add(tls.own_root()).unwrap();
    roots.add(s.smtp.own_root()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(&s.world, dir.path());
    let dns = Dns::new(&config.dns).unwrap();
    let resolvers = build_resolvers(&config).unwrap();
    let mut opts = options(&s, &config);
    opts.roots = Arc::new(roots);
    let r = check(D, &dns, &resolvers, &opts).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyHostCertExpiring],
        "{r}"
    );
    assert!(
        message(&r, Code::PolicyHostCertExpiring).contains("(in 5 days)"),
        "{r}"
    );
    assert_eq!(tls.handshakes(), vec![policy_host(D)]);
}

/// The policy host has no address, or nothing answers on its HTTPS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_host_unreachable_is_an_error() {
    let world = good_world().await;
    let host = policy_host(D);
    world.dns.remove(&host);
    let r = run(&world, D).await;
    assert_eq!(
        hosts(&r, Code::PolicyHostUnreachable),
        vec![(host.as_str(), Severity::Error)],
        "{r}"
    );
    assert!(
        message(&r, Code::PolicyHostUnreachable).contains("no A/AAAA"),
        "{r}"
    );
    // 127.0.0.2 is loopback too, but nothing listens there.
    world.dns.set_a(&host, Ipv4Addr::new(127, 0, 0, 2));
    let r = run(&world, D).await;
    assert_eq!(
        hosts(&r, Code::PolicyHostUnreachable),
        vec![(host.as_str(), Severity::Error)],
        "{r}"
    );
    assert_eq!(fetch_stage(&r), Some("https"), "{r}");
}

/// Something that is not TLS on the HTTPS port (here an SMTP greeting): the handshake
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_host_without_tls_is_an_error() {
    let mut s = good_world().await;
    let plain = SmtpServer::start(s.ca.clone()).await;
    s.https_probe_port = Some(plain.port());
    let r = run(&s, D).await;
    assert_eq!(
        hosts(&r, Code::PolicyHostTlsFailed),
        vec![(policy_host(D).as_str(), Severity::Error)],
        "{r}"
    );
}

// ---- 3. the policy URL and the policy file -----------------------------------------

/// SPEC 3.2: a redirect is an error that says where it points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_redirect_is_an_error_naming_the_target() {
    let world = good_world().await;
    world.https.set_reply(
        &policy_host(D),
        Reply::redirect(301, "https://www.example.com/mta-sts.txt"),
    );
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::PolicyRedirect],
        "{r}"
    );
    let m = message(&r, Code::PolicyRedirect);
    assert!(
        m.contains("301") && m.contains("https://www.example.com/mta-sts.txt"),
        "{m}"
    );
}

/// SPEC 3.4: over 64 KiB is a fetch failure at the `size` stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_too_large_is_an_error() {
    let world = good_world().await;
    world.https.set_reply(
        &policy_host(D),
        Reply::Huge {
            declared_len: None,
            actual_len: 70_000,
        },
    );
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::PolicyFetchFailed],
        "{r}"
    );
    assert_eq!(fetch_stage(&r), Some("size"), "{r}");
}

/// RFC 8461 §3.2, SPEC 4: the line lint of a fetched policy, with line numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_lint_findings_carry_line_numbers() {
    let world = good_world().await;
    let body = "mode: enforce\r\nversion: STSv1\r\nmx: mx1.example.com\r\nmx: *.example.net\r\n\
                max_age: 604800\r\nmode: testing\r\nMax_age: 5\r\nmx: MX1.example.com\r\n";
    world.publish(D, "2", body);
    let r = run(&world, D).await;
    assert!(!r.has_errors(), "{r}");
    let lint: Vec<(Code, Severity, Option<usize>)> = r
        .findings
        .iter()
        .filter(|f| f.line.is_some() || f.code == Code::PolicyLineEndings)
        .map(|f| (f.code, f.severity, f.line))
        .collect();
    assert_eq!(
        lint,
        vec![
            (Code::PolicyVersionNotFirst, Severity::Warning, Some(1)),
            (Code::PolicyKeyDuplicate, Severity::Warning, Some(6)),
            (Code::PolicyKeyUnknown, Severity::Warning, Some(7)),
            (Code::PolicyKeyDuplicate, Severity::Warning, Some(8)),
            (Code::PolicyLineEndings, Severity::Note, None),
        ],
        "{r}"
    );
    assert!(message(&r, Code::PolicyLineEndings).contains("CRLF"), "{r}");
    assert!(
        message(&r, Code::PolicyKeyUnknown).contains("did you mean `max_age`"),
        "{r}"
    );

    // A mode senders do not know: the policy is invalid, and the line says why.
    world.publish(D, "3", &policy("enforcing", &[MX1], 604_800));
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Error),
        vec![Code::PolicyInvalid, Code::PolicyModeInvalid],
        "{r}"
    );
    assert_eq!(
        r.findings
            .iter()
            .find(|f| f.code == Code::PolicyModeInvalid)
            .and_then(|f| f.line),
        Some(2)
    );
}

/// The issue: max_age under a day is a warning in enforce mode only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_max_age_while_testing_is_fine() {
    let world = good_world().await;
    world.publish(D, "2", &policy("testing", &[MX1, "*.example.net"], 3600));
    let r = run(&world, D).await;
    assert_eq!(
        codes(&r, Severity::Warning),
        vec![Code::PolicyModeTesting],
        "{r}"
    );
    assert!(r.has(Code::PolicyMaxAgeOk), "{r}");
}

// ---- 5. each MX host on port 25 ----------------------------------------------------

/// RFC 3207, RFC 8461 §4.2: an MX host without STARTTLS fails every enforcing sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_without_starttls_is_an_error() {
    let world = good_world().await;
    world.smtp.set_behaviour(Behaviour::NoStarttls);
    let r = run(&world, D).await;
    assert_eq!(
        hosts(&r, Code::MxStarttlsMissing),
        vec![(MX1, Severity::Error), (MX2, Severity::Error)],
        "{r}"
    );
    assert!(world.smtp.handshakes().is_empty());
    assert_eq!(r.verdict.as_str(), "broken");
}

/// RFC 8461 §4.2: the MX certificate must be valid for the MX host name, trusted, and
/// in date; expiring within 14 days is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_certificate_mistakes() {
    let world = good_world().await;
    for (leaf, code, severity) in [
        (
            Leaf::Kind(CertKind::WrongName),
            Code::MxCertNameMismatch,
            Severity::Error,
        ),
        (
            Leaf::Kind(CertKind::Expired),
            Code::MxCertExpired,
            Severity::Error,
        ),
        (
            Leaf::Kind(CertKind::Untrusted),
            Code::MxCertUntrusted,
            Severity::Error,
        ),
        (
            Leaf::Kind(CertKind::SelfSigned),
            Code::MxCertUntrusted,
            Severity::Error,
        ),
        (
            Leaf::ExpiresInDays(3),
            Code::MxCertExpiring,
            Severity::Warning,
        ),
    ] {
        world.smtp.set_leaf(MX2, leaf);
        let r = run(&world, D).await;
        assert_eq!(hosts(&r, code), vec![(MX2, severity)], "{leaf:?}\n{r}");
        // the other MX host is unaffected
        assert_eq!(
            hosts(&r, Code::MxTlsOk),
            vec![(MX1, Severity::Ok)],
            "{leaf:?}\n{r}"
        );
        assert_eq!(r.has_errors(), severity == Severity::Error, "{leaf:?}\n{r}");
    }
}

/// STARTTLS accepted, then no TLS: the handshake fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_broken_tls_is_an_error() {
    let world = good_world().await;
    world.smtp.set_behaviour(Behaviour::BrokenTls);
    let r = run(&world, D).await;
    assert_eq!(
        hosts(&r, Code::MxTlsFailed),
        vec![(MX1, Severity::Error), (MX2, Severity::Error)],
        "{r}"
    );
}

/// A host that answers but refuses SMTP (554 greeting) is an error: no sender can
/// deliver to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_refusing_smtp_is_an_error() {
    let world = good_world().await;
    world.smtp.set_behaviour(Behaviour::Refuse);
    let r = run(&world, D).await;
    assert_eq!(
        hosts(&r, Code::MxSmtpError),
        vec![(MX1, Severity::Error), (MX2, Severity::Error)],
        "{r}"
    );
    assert!(message(&r, Code::MxSmtpError).contains("554"), "{r}");
}

/// What a terminal would act on in `text` besides line ends: C0 and C1 control
/// characters and DEL, once the report's own colours are taken out.
fn controls(text: &str) -> Vec<char> {
    let mut text = text.to_string();
    for own in [
        "\x1b[1;31m",
        "\x1b[33m",
        "\x1b[32m",
        "\x1b[36m",
        "\x1b[1m",
        "\x1b[0m",
    ] {
        text = text.replace(own, "");
    }
    text.chars()
        .filter(|&c| c != '\n' && c.is_control())
        .collect()
}

/// Remote text (an SMTP greeting, the TXT record, policy lines) reaches the terminal
/// with its control characters escaped: a domain owner cannot clear the screen, set
/// the window title or rewrite a line of the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_text_is_printed_with_control_characters_escaped() {
    let world = good_world().await;
    world.smtp.set_behaviour(Behaviour::HostileRefuse);
    world
        .dns
        .set_txt1(TLSRPT, "v=TLSRPTv1; rua=mailto:a@example.com\x1b[2J\r");
    world.https.set_reply(
        &policy_host(D),
        Reply::Policy(
            "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\nx-\x1b[2J\u{9b}1m: y\n".into(),
        ),
    );
    let r = run(&world, D).await;
    for colour in [false, true] {
        let text = mtastsd::check::render::render(&r, colour);
        assert_eq!(
            controls(&text),
            Vec::<char>::new(),
            "colour {colour}:\n{text}"
        );
        assert!(text.contains("\\x1b"), "shown escaped:\n{text}");
    }
}

/// No address or nothing listening: a warning (outbound port 25 is often blocked
/// where `check` runs), never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_unreachable_is_a_warning() {
    let world = good_world().await;
    world.dns.remove(MX1);
    world.dns.set_a(MX2, Ipv4Addr::new(127, 0, 0, 2));
    let r = run(&world, D).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        hosts(&r, Code::MxUnreachable),
        vec![(MX1, Severity::Warning), (MX2, Severity::Warning)],
        "{r}"
    );
    assert!(
        message(&r, Code::MxUnreachable).contains("no A/AAAA"),
        "{r}"
    );
}

// ---- 6. TLS-RPT ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsrpt_https_and_several_uris_are_valid() {
    let world = good_world().await;
    world.dns.set_txt1(
        TLSRPT,
        "v=TLSRPTv1; rua=https://reports.example.com/tlsrpt,mailto:a@example.com",
    );
    let r = run(&world, D).await;
    assert!(r.has(Code::TlsrptValid), "{r}");
    assert_eq!(
        r.tlsrpt_rua,
        vec!["https://reports.example.com/tlsrpt", "mailto:a@example.com"]
    );
}

// ---- 7. verdict, next step, what to publish ----------------------------------------

/// The rollout order: TLS-RPT first, then testing, then enforce with a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_follows_the_rollout_order() {
    let world = good_world().await;
    world.publish(D, "2", &policy("testing", &[MX1, "*.example.net"], 604_800));
    let r = run(&world, D).await;
    assert_eq!(r.verdict.as_str(), "testing");
    assert!(
        r.next_step.contains("mode: enforce") && r.next_step.contains("new id"),
        "{}",
        r.next_step
    );
    world.dns.remove(TLSRPT);
    let r = run(&world, D).await;
    assert_eq!(r.verdict.as_str(), "testing");
    assert!(r.next_step.contains("TLS-RPT"), "{}", r.next_step);

    world.publish(D, "3", "version: STSv1\nmode: none\nmax_age: 604800\n");
    assert_eq!(run(&world, D).await.verdict.as_str(), "withdrawn");
}

/// Nothing published: the suggestion is ready to paste and passes our own checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_published_suggests_what_to_publish() {
    let world = good_world().await;
    world.unpublish(D);
    world.dns.remove(TLSRPT);
    let r = run(&world, D).await;
    assert_eq!(r.verdict.as_str(), "not-deployed", "{r}");
    assert!(
        r.next_step.starts_with("Start with TLS-RPT"),
        "{}",
        r.next_step
    );
    let s = r.suggestion.as_ref().expect("a suggestion");
    // The TXT records, as zone-file lines, parse with the daemon's own parsers.
    let txt = |line: &str| {
        line.split_once('"')
            .unwrap()
            .1
            .trim_end_matches('"')
            .to_string()
    };
    assert!(s.sts_record.starts_with("_mta-sts.example.com. IN TXT "));
    let rec = mtastsd::mta_sts::record::parse_record(txt(&s.sts_record).as_bytes())
        .expect("valid STSv1 record");
    assert_eq!(rec.id.len(), 14, "{}", rec.id);
    assert!(s
        .tlsrpt_record
        .starts_with("_smtp._tls.example.com. IN TXT "));
    mtastsd::tlsrpt::parse_record(txt(&s.tlsrpt_record).as_bytes()).expect("valid TLS-RPT");
    // The policy lists the current MX hosts in mode testing and lints clean.
    assert_eq!(
        s.policy,
        "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: in.example.net\nmax_age: 604800\n"
    );
    let (policy, findings) = mtastsd::check::lint::audit_policy(s.policy.as_bytes(), "x");
    assert!(policy.is_some());
    assert!(findings.iter().all(|f| f.severity != Severity::Error));
    assert!(s.enforce_reminder.contains("mode: enforce") && s.enforce_reminder.contains("id"));
    // The human output shows it.
    let text = r.to_string();
    assert!(
        text.contains("What to publish") && text.contains(&s.sts_record),
        "{text}"
    );
}

// ---- --policy-file ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_is_linted_and_compared_with_the_mx_hosts() {
    let world = good_world().await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(&world.world, dir.path());
    let dns = Dns::new(&config.dns).unwrap();
    let path = dir.path().join("mta-sts.txt");
    let body = policy("enforce", &[MX1], 604_800);
    let r = check_policy_file(&path, body.as_bytes(), None, &dns).await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(r.verdict.as_str(), "ready");
    assert_eq!(world.dns.total_queries(), 0, "no domain, no lookups");
    // With --domain: in.example.net is not covered.
    let r = check_policy_file(&path, body.as_bytes(), Some(D), &dns).await;
    assert_eq!(codes(&r, Severity::Error), vec![Code::MxNotCovered], "{r}");
    assert!(message(&r, Code::MxNotCovered).contains(MX2), "{r}");
    assert!(!r.has(Code::MxTlsOk), "no probes for a policy file\n{r}");
}

// ---- the binary: exit status and options --------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_mtastsd");

fn write_config(world: &World, dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"1s\"\n[fetch]\nca_file = \"{}\"\nhttps_port = {}\ntimeout = \"2s\"\n",
        world.dns_addr(),
        world.ca_file().display(),
        world.https_port()
    );
    let path = dir.join("mtastsd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn mtastsd(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .await
        .expect("mtastsd runs")
}

/// The issue: exit 0 without errors, 1 with errors, 2 on usage errors; no colour and
/// no progress line when not on a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_0_1_2() {
    let world = good_world().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path());
    let config = config.to_str().unwrap();
    let port = world.smtp.port().to_string();

    let out = mtastsd(&["check", "-c", config, "--smtp-port", &port, D]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains('\x1b'), "no colour off a terminal: {text:?}");
    assert!(out.stderr.is_empty(), "no progress line off a terminal");

    world.smtp.set_behaviour(Behaviour::NoStarttls);
    let out = mtastsd(&["check", "-c", config, "--smtp-port", &port, "--json", D]).await;
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "broken");

    // --nameserver and --ca-file override the configuration (as for serve).
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let ns = world.dns_addr().to_string();
    let ca = world.ca_file().to_str().unwrap();
    let out = mtastsd(&[
        "check",
        "-c",
        empty.to_str().unwrap(),
        "--nameserver",
        &ns,
        "--ca-file",
        ca,
        "--timeout",
        "2s",
        "--smtp-port",
        &port,
        "--json",
        D,
    ])
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The HTTPS port is not a command-line option: the fetch goes to 443 and fails,
    // but the TXT record came from --nameserver.
    assert_eq!(json["sts_id"], "20240101", "{json}");

    for args in [
        vec!["check"],
        vec!["check", "-c", config, "exa mple.com"],
        vec!["check", "--policy-file", "/nonexistent/mta-sts.txt"],
        vec!["check", "--domain", D],
        vec!["check", "--timeout", "soon", D],
    ] {
        let out = mtastsd(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }

    let file = dir.path().join("mta-sts.txt");
    std::fs::write(&file, policy("enforce", &[MX1, "*.example.net"], 604_800)).unwrap();
    let out = mtastsd(&["check", "--policy-file", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::write(&file, "version: STSv1\nmode: enforce\n").unwrap();
    let out = mtastsd(&["check", "--policy-file", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

// ---- golden files -------------------------------------------------------------------

/// Replace what changes from run to run: ports, dates, fresh ids.
fn normalise(text: &str, s: &Setup) -> String {
    let text = text
        .replace(&format!(":{}", s.https_port()), ":HTTPS_PORT")
        .replace(&format!(":{}", s.smtp.port()), ":SMTP_PORT");
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let date = b.len() >= i + 10
            && b[i..i + 10].iter().enumerate().all(|(k, c)| {
                if k == 4 || k == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if date {
            out.push_str("YYYY-MM-DD");
            i += 10;
        } else if digits == 14 {
            out.push_str("FRESH_ID");
            i += 14;
        } else if digits > 0 {
            out.push_str(&text[i..i + digits]);
            i += digits;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == actual,
        "{} differs (UPDATE_GOLDEN=1 rewrites it):\n--- want\n{want}\n--- got\n{actual}",
        path.display()
    );
}

/// The human output of a correct domain and of one with nothing published, and the
/// JSON of both (the schema: field names, codes, areas, severities).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_outputs() {
    let world = good_world().await;
    let r = run(&world, D).await;
    golden("check-good.txt", &normalise(&r.to_string(), &world));
    golden(
        "check-good.json",
        &normalise(&serde_json::to_string_pretty(&r).unwrap(), &world),
    );

    world.unpublish(D);
    world.smtp.set_leaf(MX2, Leaf::Kind(CertKind::Expired));
    world
        .dns
        .set_txt1(TLSRPT, "v=TLSRPTv1; rua=http://r.example.com");
    let r = run(&world, D).await;
    golden("check-broken.txt", &normalise(&r.to_string(), &world));
    golden(
        "check-broken.json",
        &normalise(&serde_json::to_string_pretty(&r).unwrap(), &world),
    );

    // A policy file with a bit of everything, rendered with colour.
    let body = "mode: enforce\nversion: STSv1\nmx: mx1.example.com\nmx: mx1.example.com\n\
                max_age: 3600\nmode: testing\nMx: backup.example.com\r\n";
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(&world.world, dir.path());
    let dns = Dns::new(&config.dns).unwrap();
    let r = check_policy_file(Path::new("mta-sts.txt"), body.as_bytes(), None, &dns).await;
    golden("check-policy-file.txt", &r.to_string());
    golden(
        "check-policy-file-colour.txt",
        &mtastsd::check::render::render(&r, true),
    );
}
