//! `mtastsd check DOMAIN` (SPEC 7.1) against the in-process DNS + HTTPS world:
//! each test breaks one thing in a domain's publication and expects the finding.

mod harness;
mod support;

use harness::{enforce, policy};
use mtastsd::check::{check, CheckReport, Code, Severity};
use mtastsd::daemon::build_resolvers;
use mtastsd::resolver::dns::Dns;
use support::{policy_host, CertKind, Reply, ResponseCode, World};

const D: &str = "example.com";
const TLSRPT: &str = "_smtp._tls.example.com";
const GOOD_TLSRPT: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com";

/// A domain with everything right: one STSv1 record, an enforce policy with a week's
/// max_age covering both MX hosts, and a TLS-RPT record.
async fn good_world() -> World {
    let world = World::start().await;
    world.publish(
        D,
        "20240101",
        &policy("enforce", &["mx1.example.com", "*.example.net"], 604_800),
    );
    world.dns.set_mx(
        D,
        vec![
            (10, "mx1.example.com".into()),
            (20, "in.example.net".into()),
        ],
    );
    world.dns.set_txt1(TLSRPT, GOOD_TLSRPT);
    world
}

async fn run(world: &World, domain: &str) -> CheckReport {
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(world, dir.path());
    let dns = Dns::new(&config.dns).expect("dns");
    let resolvers = build_resolvers(&config).expect("resolvers");
    check(domain, &dns, &resolvers, config.fetch.https_port).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_good_has_only_ok_findings() {
    let world = good_world().await;
    let r = run(&world, "Example.COM.").await;
    assert!(!r.has_errors(), "{r}");
    assert_eq!(
        codes(&r, Severity::Ok),
        vec![
            Code::StsRecordValid,
            Code::PolicyValid,
            Code::PolicyModeEnforce,
            Code::PolicyMaxAgeOk,
            Code::MxCovered,
            Code::TlsrptValid,
        ],
        "{r}"
    );
    assert_eq!(r.findings.len(), 6, "{r}");
    assert_eq!(r.domain, D); // SPEC 1.6 normalisation
    assert_eq!(r.sts_id.as_deref(), Some("20240101"));
    assert_eq!(r.tlsrpt_rua, vec!["mailto:tlsrpt@example.com"]);
    let mx: Vec<(u16, &str)> =
        r.mx.iter()
            .map(|m| (m.preference, m.host.as_str()))
            .collect();
    assert_eq!(mx, vec![(10, "mx1.example.com"), (20, "in.example.net")]);
    assert_eq!(r.policy.as_ref().unwrap().mode, "enforce");

    let text = r.to_string();
    assert!(text.contains("mx-covered"), "{text}");
    assert!(text.contains("0 error(s), 0 warning(s)"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["findings"][0]["code"], "sts-record-valid");
    assert_eq!(json["findings"][0]["severity"], "ok");
    assert_eq!(json["sts_id"], "20240101");
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
    assert_eq!(codes(&r, Severity::Warning), vec![Code::MxPatternUnused]);
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
    assert_eq!(codes(&r, Severity::Note), vec![Code::MxNull], "{r}");
    assert!(!r.has(Code::MxNotCovered) && !r.has(Code::MxCovered), "{r}");
    assert!(!r.has_errors(), "{r}");

    world.dns.set_mx(D, vec![]);
    let r = run(&world, D).await;
    assert_eq!(codes(&r, Severity::Note), vec![Code::MxNone], "{r}");
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
    assert_eq!(codes(&r, Severity::Error), vec![Code::PolicyInvalid], "{r}");
    assert!(
        message(&r, Code::PolicyInvalid).contains("*.*.example.net"),
        "{r}"
    );
}

/// Not a domain: nothing is looked up (SPEC 1.6 normalisation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_domain_is_an_error_without_lookups() {
    let world = World::start().await;
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
