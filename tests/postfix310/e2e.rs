//! SPEC 8.1–8.4 and 8.5 end to end: the real Postfix 3.10 of the Debian 13 root, its
//! smtp(8) chrooted as Debian ships it, delivers through an in-process mtastsd
//! (policy map and TLS-RPT collector) to in-process SMTP receivers, one domain per
//! case; the daemon's store then yields each domain's RFC 8460 report, checked field
//! by field and against the JSON Schema written from RFC 8460 §4.4
//! (tests/schema/tlsrpt-report.json).
//!
//! The set-up is the production one of contrib/systemd/chroot.conf: mtastsd binds
//! `<queue_directory>/mtastsd/tlsrpt`, a socket in a set-group-ID directory of group
//! postfix, and main.cf names it relative to the queue directory
//! (`smtp_tlsrpt_socket_name = mtastsd/tlsrpt`), which the chrooted smtp(8) reaches.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mtastsd::config::TlsrptConfig;
use mtastsd::tlsrpt::aggregate::Day;
use mtastsd::tlsrpt::deliver::{sendmail, Outcome};
use mtastsd::tlsrpt::report::{self, Submitter};
use mtastsd::tlsrpt::store::TlsrptStore;
use serde_json::{json, Value};

use super::harness::{self, TestClock};
use super::support::smtp::{Behaviour, Leaf, SmtpServer};
use super::support::{policy_host, CertKind, Reply, World};
use super::{in_root, tlsrpt_profile, trixie_root, write_main_cf, Stopper, ROOT_LOCK, TEST_DNS};

/// What one domain's MX and policy host do.
#[derive(Clone, Copy)]
enum Setup {
    /// An enforce policy for `mx.<domain>`; the MX behaves so and presents a
    /// certificate of that kind.
    Enforce(Behaviour, CertKind),
    /// `_mta-sts` published but the policy host answers `Reply` with a `CertKind`
    /// certificate (SPEC 8.3); the MX is a good one, without a policy Postfix uses
    /// its default `may`.
    FetchFails(CertKind, fn() -> Reply),
}

struct Case {
    domain: &'static str,
    setup: Setup,
    /// Messages sent, each its own session.
    messages: usize,
    /// The MX's address: each MX on a loopback address of its own, all on the
    /// port of `smtp_tcp_port`.
    ip: Ipv4Addr,
}

fn not_found() -> Reply {
    Reply::status(404)
}

fn good_policy() -> Reply {
    // Unused: the certificate fails first.
    Reply::Policy(String::new())
}

fn cases() -> Vec<Case> {
    let case = |domain, setup, messages, last| Case {
        domain,
        setup,
        messages,
        ip: Ipv4Addr::new(127, 0, 31, last),
    };
    vec![
        case(
            "ok.e2e.example",
            Setup::Enforce(Behaviour::Starttls, CertKind::Valid),
            3,
            1,
        ),
        case(
            "nostarttls.e2e.example",
            Setup::Enforce(Behaviour::NoStarttls, CertKind::Valid),
            2,
            2,
        ),
        case(
            "mismatch.e2e.example",
            Setup::Enforce(Behaviour::Starttls, CertKind::WrongName),
            2,
            3,
        ),
        case(
            "expired.e2e.example",
            Setup::Enforce(Behaviour::Starttls, CertKind::Expired),
            2,
            4,
        ),
        case(
            "untrusted.e2e.example",
            Setup::Enforce(Behaviour::Starttls, CertKind::Untrusted),
            2,
            5,
        ),
        case(
            "fetch404.e2e.example",
            Setup::FetchFails(CertKind::Valid, not_found),
            2,
            6,
        ),
        case(
            "badcert.e2e.example",
            Setup::FetchFails(CertKind::Untrusted, good_policy),
            2,
            7,
        ),
    ]
}

fn mx(domain: &str) -> String {
    format!("mx.{domain}")
}

/// The name the MX puts on its EHLO reply: not the MX name, so that the report's
/// `receiving-mx-helo` can only have come from the EHLO.
fn ehlo_name(domain: &str) -> String {
    format!("greeter.{domain}")
}

fn enforce_policy(domain: &str) -> String {
    format!(
        "version: STSv1\nmode: enforce\nmx: {}\nmax_age: 86400\n",
        mx(domain)
    )
}

fn tlsrpt_record(domain: &str) -> String {
    format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}")
}

const LOG: &str = "var/log/postfix-test.log";
const FROM: &str = "sender@sender.postfix310.test";

fn message_id(domain: &str, i: usize) -> String {
    format!("e2e-{i}-{domain}@sender.postfix310.test")
}

fn message(id: &str, tls_required_no: bool) -> Vec<u8> {
    let extra = if tls_required_no {
        "TLS-Required: No\r\n"
    } else {
        ""
    };
    format!("From: {FROM}\r\nMessage-ID: <{id}>\r\nSubject: e2e\r\n{extra}\r\nhello\r\n")
        .into_bytes()
}

/// master.cf as it was, put back when the test ends (even on a panic).
struct RestoreMasterCf(PathBuf, String);

impl Drop for RestoreMasterCf {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, &self.1);
    }
}

/// A user and group id of the root's /etc/passwd or /etc/group.
fn root_id(root: &Path, file: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(root.join("etc").join(file)).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in the root's /etc/{file}"))
}

/// Waits until every message has a delivery status line (final or deferred); the
/// lines by Message-ID.
async fn wait_statuses(root: &Path, ids: &[String]) -> BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let log = std::fs::read_to_string(root.join(LOG)).unwrap_or_default();
        let mut found = BTreeMap::new();
        for id in ids {
            let qid = log
                .lines()
                .find(|l| l.contains(&format!("message-id=<{id}>")))
                .and_then(|l| l.split(": ").nth(1));
            let status = qid.and_then(|qid| {
                log.lines()
                    .find(|l| l.contains(&format!("{qid}: to=")) && l.contains("status="))
            });
            if let Some(s) = status {
                found.insert(id.clone(), s.to_string());
            }
        }
        if found.len() == ids.len() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} messages without a delivery status after 90 s; log:\n{log}",
            ids.len() - found.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn schema_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema/tlsrpt-report.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

/// Every error of `report` against the RFC 8460 §4.4 schema, one per line.
fn schema_errors(v: &jsonschema::Validator, report: &Value) -> String {
    v.iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// SPEC 8.1–8.4 with the real Postfix 3.10 (and 8.5's `TLS-Required: No`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_3_10_sessions_become_the_rfc8460_reports_spec_8() {
    let Some(root) = trixie_root() else { return };
    let _lock = ROOT_LOCK.lock().await;
    let day_before = Day::from_unix(unix_now());
    let world = World::start_with_dns_at(TEST_DNS.parse().unwrap()).await;
    let cases = cases();

    // The MX hosts: one SMTP server per case, all on one port.
    let mut servers: Vec<SmtpServer> = Vec::new();
    let mut port = 0;
    for c in &cases {
        let s = SmtpServer::start_at(world.ca.clone(), SocketAddr::from((c.ip, port))).await;
        port = s.port();
        s.accept_mail();
        s.set_ehlo_name(&ehlo_name(c.domain));
        // Without a policy (and with TLS-Required: No) Postfix's `may` sends no SNI.
        s.set_default_host(&mx(c.domain));
        match c.setup {
            Setup::Enforce(behaviour, cert) => {
                world.publish(c.domain, "1", &enforce_policy(c.domain));
                s.set_behaviour(behaviour);
                s.set_leaf(&mx(c.domain), Leaf::Kind(cert));
            }
            Setup::FetchFails(cert, reply) => {
                world.publish_txt(c.domain, "1");
                world.dns.set_a(&policy_host(c.domain), Ipv4Addr::LOCALHOST);
                world.https.set(&policy_host(c.domain), cert, reply());
            }
        }
        world.dns.set_mx(c.domain, vec![(10, mx(c.domain))]);
        world.dns.set_a(&mx(c.domain), c.ip);
        // Postfix reports only for domains that ask for reports (RFC 8460 §3).
        world.dns.set_txt1(
            &format!("_smtp._tls.{}", c.domain),
            &tlsrpt_record(c.domain),
        );
        servers.push(s);
    }

    // The collector's socket where contrib/systemd/chroot.conf puts it: a directory
    // of group postfix (set-group-ID, so the socket gets the group), mode 0660.
    let spool = root.join("var/spool/postfix");
    let socket_dir = spool.join("mtastsd");
    let _ = std::fs::remove_dir_all(&socket_dir);
    std::fs::create_dir(&socket_dir).unwrap();
    let postfix_gid = root_id(&root, "group", "postfix");
    std::os::unix::fs::chown(&socket_dir, Some(0), Some(postfix_gid)).unwrap();
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o2750)).unwrap();

    let state = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, state.path());
    tlsrpt_profile(&mut config);
    config.tlsrpt = Some(TlsrptConfig {
        socket: socket_dir.join("tlsrpt"),
        ..TlsrptConfig::default()
    });
    let daemon = harness::start(config, TestClock::new()).await;
    let socket_meta = std::fs::metadata(socket_dir.join("tlsrpt")).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(socket_meta.gid(), postfix_gid, "the socket's group");
        assert_eq!(socket_meta.mode() & 0o777, 0o660);
    }

    std::fs::write(root.join("etc/mtastsd-test-ca.pem"), world.ca.root_pem()).unwrap();
    // Copied into the chroot by Debian's configure-instance.sh at `postfix start`.
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {}\n", TEST_DNS.trim_end_matches(":53")),
    )
    .unwrap();
    // A Postfix left running by an interrupted run would keep the old settings,
    // and its queue old mail.
    let _ = Command::new("chroot")
        .arg(&root)
        .args(["postfix", "stop"])
        .output();
    let _ = Command::new("chroot")
        .arg(&root)
        .args(["postsuper", "-d", "ALL"])
        .output();
    write_main_cf(
        &root,
        daemon.inet_addr().unwrap().port(),
        &format!(
            "smtp_tcp_port = {port}
# Every message its own connection and full handshake: a reused connection or a
# resumed TLS session is never reported, and the counts must be exact.
smtp_connection_cache_on_demand = no
smtp_tls_session_cache_database =
smtp_tlsrpt_skip_reused_handshakes = no
# A destination whose TLS failed stays open for the next message (not 'delivery
# temporarily suspended'): each message is one reported session.
default_destination_concurrency_failed_cohort_limit = 1000"
        ),
        "mtastsd/tlsrpt",
    );
    let master_cf = root.join("etc/postfix/master.cf");
    let _restore = RestoreMasterCf(
        master_cf.clone(),
        std::fs::read_to_string(&master_cf).unwrap(),
    );
    // Debian's smtp(8) runs chrooted in the queue directory.
    in_root(&root, &["postconf", "-F", "smtp/unix/chroot=y"], None);
    let _ = std::fs::remove_file(root.join(LOG));
    in_root(&root, &["postfix", "start"], None);
    let _stop = Stopper(root.clone());

    let argv: Vec<String> = ["chroot", root.to_str().unwrap(), "/usr/sbin/sendmail", "-i"]
        .map(String::from)
        .to_vec();
    let mut ids = Vec::new();
    for c in &cases {
        for i in 0..c.messages {
            let id = message_id(c.domain, i);
            let to = format!("user@{}", c.domain);
            let got = sendmail(
                &argv,
                FROM,
                &to,
                &message(&id, false),
                Duration::from_secs(60),
            )
            .await;
            assert_eq!(got, Outcome::Sent, "{id}");
            ids.push(id);
        }
    }
    // SPEC 8.5: mail with `TLS-Required: No` (RFC 8689), as every report mail
    // carries, is not reported (Postfix >= 3.10.4 creates no TLSRPT wrapper for it);
    // it also goes out despite the domain's failing certificate.
    let relaxed = "tls-required-no@sender.postfix310.test".to_string();
    let got = sendmail(
        &argv,
        FROM,
        "user@mismatch.e2e.example",
        &message(&relaxed, true),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(got, Outcome::Sent);
    ids.push(relaxed.clone());

    let statuses = wait_statuses(&root, &ids).await;
    let log = std::fs::read_to_string(root.join(LOG)).unwrap_or_default();
    eprintln!("Postfix log:\n{log}");
    for c in &cases {
        let delivered = matches!(
            c.setup,
            Setup::FetchFails(..) | Setup::Enforce(Behaviour::Starttls, CertKind::Valid)
        );
        for i in 0..c.messages {
            let status = &statuses[&message_id(c.domain, i)];
            // Each message reached its MX itself (no "delivery temporarily
            // suspended"): one session each.
            assert!(
                status.contains(&format!("relay={}[{}]:{port}", mx(c.domain), c.ip)),
                "{status}"
            );
            if delivered {
                // SPEC 8.3: a domain whose policy mtastsd could not fetch is
                // answered NOTFOUND: never deferred for it.
                assert!(status.contains("status=sent"), "{status}");
            } else {
                assert!(status.contains("status=deferred"), "{status}");
            }
        }
    }
    assert!(
        statuses[&relaxed].contains("status=sent"),
        "{}",
        statuses[&relaxed]
    );

    // Postfix's own account of the sessions: one TLSRPT line per message, none for
    // the TLS-Required: No one.
    for c in &cases {
        let lines = log
            .lines()
            .filter(|l| {
                l.contains("TLSRPT: status=") && l.contains(&format!("domain={},", c.domain))
            })
            .count();
        assert_eq!(lines, c.messages, "TLSRPT lines of {}:\n{log}", c.domain);
    }

    // Stop: the collector drains the socket and stores its last counts.
    daemon.shutdown().await;
    let day = Day::from_unix(unix_now());
    if day != day_before {
        eprintln!("the UTC day changed during the test: the counts span two days, not checked");
        return;
    }
    let store = TlsrptStore::open_read_only(&state.path().join("tlsrpt.sqlite")).unwrap();
    let validator = schema_validator();
    let who = Submitter {
        organization_name: "Postfix 3.10 e2e",
        contact_info: "tlsrpt-noreply@sender.postfix310.test",
        domain: "sender.postfix310.test",
    };
    let mut reports = BTreeMap::new();
    for (n, c) in cases.iter().enumerate() {
        let counts = store.counts(day, Some(c.domain)).unwrap();
        let id = format!("e2e.{n}");
        let r = report::build(who, &id, day, c.domain, &counts, 100)
            .unwrap_or_else(|e| panic!("{}: {e}", c.domain));
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        eprintln!("{}: {v}", c.domain);
        // The envelope.
        assert_eq!(v["organization-name"], "Postfix 3.10 e2e");
        assert_eq!(v["contact-info"], "tlsrpt-noreply@sender.postfix310.test");
        assert_eq!(v["report-id"], id);
        assert_eq!(
            v["date-range"],
            json!({"start-datetime": format!("{day}T00:00:00Z"), "end-datetime": format!("{day}T23:59:59Z")})
        );
        assert_eq!(v["policies"].as_array().unwrap().len(), 1, "{v}");
        reports.insert(c.domain, v);
    }

    let detail = |c: &Case, result: &str| {
        json!({
            "result-type": result,
            "sending-mta-ip": "127.0.0.1",
            "receiving-mx-hostname": mx(c.domain),
            "receiving-mx-helo": ehlo_name(c.domain),
            "receiving-ip": c.ip.to_string(),
            "failed-session-count": c.messages,
        })
    };
    for c in &cases {
        let v = &reports[c.domain];
        let p = &v["policies"][0];
        let (policy, summary, details) = match (c.setup, c.domain.split('.').next().unwrap()) {
            (Setup::Enforce(..), kind) => {
                let policy = json!({
                    "policy-type": "sts",
                    "policy-string": enforce_policy(c.domain).lines().collect::<Vec<_>>(),
                    "policy-domain": c.domain,
                    "mx-host": [mx(c.domain)],
                });
                let failed = |d: Value| (json!([0, c.messages]), json!([d]));
                let (summary, details) = match kind {
                    "ok" => (json!([c.messages, 0]), json!([])),
                    "nostarttls" => failed(detail(c, "starttls-not-supported")),
                    "mismatch" => failed(detail(c, "certificate-host-mismatch")),
                    "expired" => failed(detail(c, "certificate-expired")),
                    // What Postfix 3.10.13 really sends for a certificate from a CA
                    // it does not trust: OpenSSL's "unable to get local issuer
                    // certificate", reported as validation-failure (205) with that
                    // reason, not certificate-not-trusted (203).
                    "untrusted" => {
                        let mut d = detail(c, "validation-failure");
                        d["failure-reason-code"] = json!("unable_to_get_local_issuer_certificate");
                        failed(d)
                    }
                    other => unreachable!("{other}"),
                };
                (policy, summary, details)
            }
            // SPEC 8.3: Postfix said no-policy-found; the report says the sts
            // policy that could not be had, every session failed for it.
            (Setup::FetchFails(..), kind) => {
                let policy = json!({
                    "policy-type": "sts",
                    "policy-string": [],
                    "policy-domain": c.domain,
                    "mx-host": [],
                });
                let result = match kind {
                    "fetch404" => "sts-policy-fetch-error",
                    "badcert" => "sts-webpki-invalid",
                    other => unreachable!("{other}"),
                };
                let d = &p["failure-details"][0];
                let reason = d["failure-reason-code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let want_reason = if kind == "fetch404" {
                    "404"
                } else {
                    "stage=tls"
                };
                assert!(reason.contains(want_reason), "{}: {reason}", c.domain);
                // No IP addresses: Postfix's success datagrams carry none, and
                // RFC 8460 §4.4 allows no empty one.
                let want = json!({
                    "result-type": result,
                    "receiving-mx-hostname": policy_host(c.domain),
                    "failed-session-count": c.messages,
                    "failure-reason-code": reason,
                });
                (policy, json!([0, c.messages]), json!([want]))
            }
        };
        assert_eq!(p["policy"], policy, "{}: {v}", c.domain);
        assert_eq!(
            json!([
                p["summary"]["total-successful-session-count"],
                p["summary"]["total-failure-session-count"]
            ]),
            summary,
            "{}: {v}",
            c.domain
        );
        assert_eq!(p["failure-details"], details, "{}: {v}", c.domain);
        // Receivers' parsers break on a null contact-info or a missing
        // policy-domain (SPEC 8.4).
        assert!(v["contact-info"].is_string() && p["policy"]["policy-domain"].is_string());
    }

    // Every report passes the schema written from RFC 8460 §4.4.
    let mut invalid = Vec::new();
    for (domain, v) in &reports {
        let errors = schema_errors(&validator, v);
        if !errors.is_empty() {
            invalid.push(format!("{domain}:\n{errors}"));
        }
    }
    assert!(
        invalid.is_empty(),
        "reports against RFC 8460 §4.4:\n{}",
        invalid.join("\n")
    );
    drop(servers);
}

/// SPEC 8.1: the datagrams the real Postfix 3.10.13 sent in the test above (kept in
/// tests/golden/tlsrpt/) parse to what the report needs; runs without the root.
#[test]
fn real_postfix_3_10_datagrams_parse_spec_8_1() {
    use mtastsd::tlsrpt::datagram::{parse, PolicyType};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tlsrpt");
    // (file, domain label, policy type, failed, (result type, reason) of the detail)
    type Row<'a> = (
        &'a str,
        &'a str,
        PolicyType,
        bool,
        Option<(&'a str, &'a str)>,
    );
    let rows: &[Row<'_>] = &[
        (
            "pf3.10.13-sts-success.json",
            "ok",
            PolicyType::Sts,
            false,
            None,
        ),
        (
            "pf3.10.13-sts-starttls-not-supported.json",
            "nostarttls",
            PolicyType::Sts,
            true,
            Some(("starttls-not-supported", "")),
        ),
        (
            "pf3.10.13-sts-certificate-host-mismatch.json",
            "mismatch",
            PolicyType::Sts,
            true,
            Some(("certificate-host-mismatch", "")),
        ),
        (
            "pf3.10.13-sts-certificate-expired.json",
            "expired",
            PolicyType::Sts,
            true,
            Some(("certificate-expired", "")),
        ),
        (
            "pf3.10.13-sts-unknown-ca.json",
            "untrusted",
            PolicyType::Sts,
            true,
            Some((
                "validation-failure",
                "unable_to_get_local_issuer_certificate",
            )),
        ),
        (
            "pf3.10.13-notfound-success.json",
            "fetch404",
            PolicyType::NoPolicyFound,
            false,
            None,
        ),
    ];
    for &(file, label, policy_type, failed, detail) in rows {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let d = parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let domain = format!("{label}.e2e.example");
        assert_eq!(d.domain, domain, "{file}");
        assert_eq!(d.record, tlsrpt_record(&domain), "{file}");
        assert_eq!(d.policies.len(), 1, "{file}");
        let p = &d.policies[0];
        assert_eq!(p.policy.policy_type, policy_type, "{file}");
        assert_eq!(p.policy.domain, domain, "{file}");
        assert_eq!(p.failed, failed, "{file}");
        match detail {
            None => assert!(p.failures.is_empty(), "{file}"),
            Some((result, reason)) => {
                assert_eq!(p.failures.len(), 1, "{file}");
                let f = &p.failures[0];
                assert_eq!(f.result_type.as_str(), result, "{file}");
                assert_eq!(f.sending_ip, "127.0.0.1", "{file}");
                assert_eq!(f.receiving_mx, mx(&domain), "{file}");
                // The name on the EHLO reply's first line, not the reply.
                assert_eq!(f.receiving_helo, ehlo_name(&domain), "{file}");
                assert!(f.receiving_ip.starts_with("127.0.31."), "{file}");
                assert_eq!(f.reason_code, reason, "{file}");
            }
        }
    }
}

/// The schema itself: the RFC 8460 §4.4 example shape passes, and each thing
/// receivers' parsers break on (SPEC 8.4) or RFC 8460 forbids fails; runs without
/// the root.
#[test]
fn the_rfc8460_schema_refuses_what_receivers_refuse() {
    let v = schema_validator();
    let good = json!({
        "organization-name": "Company-X",
        "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
        "contact-info": "sts-reporting@company-x.example",
        "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
        "policies": [{
            "policy": {
                "policy-type": "sts",
                "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
                "policy-domain": "company-y.example",
                "mx-host": ["*.mail.company-y.example"]
            },
            "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
            "failure-details": [{
                "result-type": "certificate-expired",
                "sending-mta-ip": "2001:db8:abcd:0012::1",
                "receiving-mx-hostname": "mx1.mail.company-y.example",
                "failed-session-count": 100
            }, {
                "result-type": "starttls-not-supported",
                "sending-mta-ip": "2001:db8:abcd:0013::1",
                "receiving-mx-hostname": "mx2.mail.company-y.example",
                "receiving-ip": "203.0.113.56",
                "failed-session-count": 200,
                "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
            }, {
                "result-type": "validation-failure",
                "sending-mta-ip": "198.51.100.62",
                "receiving-ip": "203.0.113.58",
                "receiving-mx-hostname": "mx-backup.mail.company-y.example",
                "failed-session-count": 3,
                "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
            }]
        }]
    });
    assert_eq!(schema_errors(&v, &good), "");
    type Edit = fn(&mut Value);
    let bad: &[(&str, Edit)] = &[
        ("contact-info null", |r| r["contact-info"] = Value::Null),
        ("no policy-domain", |r| {
            r["policies"][0]["policy"]
                .as_object_mut()
                .unwrap()
                .remove("policy-domain");
        }),
        ("policy-type STS", |r| {
            r["policies"][0]["policy"]["policy-type"] = json!("STS")
        }),
        ("mx-host a string", |r| {
            r["policies"][0]["policy"]["mx-host"] = json!("*.mail.company-y.example")
        }),
        ("policies an object", |r| {
            r["policies"] = r["policies"][0].clone()
        }),
        ("a date, not a date-time", |r| {
            r["date-range"]["start-datetime"] = json!("2016-04-01")
        }),
        ("an unknown result-type", |r| {
            r["policies"][0]["failure-details"][0]["result-type"] = json!("certificate-untrusted")
        }),
        ("an empty sending-mta-ip", |r| {
            r["policies"][0]["failure-details"][0]["sending-mta-ip"] = json!("")
        }),
        ("a count as a string", |r| {
            r["policies"][0]["summary"]["total-failure-session-count"] = json!("303")
        }),
        ("no failed-session-count", |r| {
            r["policies"][0]["failure-details"][1]
                .as_object_mut()
                .unwrap()
                .remove("failed-session-count");
        }),
    ];
    for (what, edit) in bad {
        let mut r = good.clone();
        edit(&mut r);
        assert!(!schema_errors(&v, &r).is_empty(), "{what}: accepted");
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
