//! Real Postfix 3.10 (Debian 13, built with libtlsrpt) against mtastsd's TLS-RPT
//! answers (SPEC 6.3), in the Debian 13 root that
//! `tests/postfix310/make-root.sh` makes (`.ci/run` runs it):
//! - its `postmap -q` takes the answers of a `tlsrpt = true` profile as they are;
//! - a delivery through it to an MX whose certificate names another host fails
//!   (the policy is enforced with the attributes attached) and Postfix hands the
//!   failure, with our policy details, to its TLSRPT socket;
//! - end to end (postfix310/e2e.rs, SPEC 8.1–8.5): its chrooted smtp(8) delivers to
//!   MX hosts that succeed and fail in each way, mtastsd collects the datagrams, and
//!   the reports built from its store are exact and pass RFC 8460 §4.4's schema.
//!
//! Skipped with a message where the root does not exist; under CI=true that is a
//! failure. The tests need root (chroot) and share the one root: they take a lock.

mod harness;
mod support;

#[path = "postfix310/e2e.rs"]
mod e2e;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::TestClock;
use mtastsd::config::Profile;
use support::smtp::{Leaf, SmtpServer};
use support::trixie::{in_root, trixie_root};
use support::{CertKind, World};

/// Serialises the tests: they rewrite the root's main.cf and run its Postfix.
static ROOT_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tlsrpt_profile(c: &mut mtastsd::config::Config) {
    c.profiles.insert(
        "tlsrpt".into(),
        Profile {
            strict_testing: false,
            servername: true,
            tlsrpt: true,
        },
    );
}

/// The DNS server the root's Postfix asks (its /etc/resolv.conf).
const TEST_DNS: &str = "127.0.53.1:53";

/// A minimal main.cf for the root's Postfix: no listener of its own, the test's
/// daemon as policy map, TLSRPT on; `extra` is appended.
fn write_main_cf(root: &Path, daemon_port: u16, extra: &str, tlsrpt_socket: &str) {
    let main_cf = format!(
        "compatibility_level = 3.10
myhostname = sender.postfix310.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
master_service_disable = inet
maillog_file = /var/log/postfix-test.log
{extra}
smtp_tls_security_level = may
smtp_tls_CAfile = /etc/mtastsd-test-ca.pem
smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{daemon_port}:tlsrpt
smtp_tlsrpt_enable = yes
smtp_tlsrpt_socket_name = {tlsrpt_socket}
"
    );
    std::fs::write(root.join("etc/postfix/main.cf"), main_cf).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmap_of_postfix_3_10_takes_the_tlsrpt_answers_spec_6_3() {
    let Some(root) = trixie_root() else { return };
    let _lock = ROOT_LOCK.lock().await;
    let world = World::start().await;
    world.publish(
        "rpt.example",
        "1",
        "version: STSv1\nmode: enforce\nmx: mx.rpt.example\nmx: *.rpt.example\nmax_age: 604800\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, dir.path());
    tlsrpt_profile(&mut config);
    let daemon = harness::start(config, TestClock::new()).await;
    let port = daemon.inet_addr().unwrap().port();
    write_main_cf(&root, port, "", "/run/unused.sock");
    let version = in_root(&root, &["postconf", "-h", "mail_version"], None);
    assert!(version.starts_with("3.10"), "{version}");

    let map = format!("socketmap:inet:127.0.0.1:{port}:tlsrpt");
    let got = in_root(&root, &["postmap", "-q", "rpt.example", &map], None);
    assert_eq!(
        got.trim_end(),
        "secure match=mx.rpt.example:.rpt.example servername=hostname \
         policy_type=sts policy_domain=rpt.example \
         mx_host_pattern=mx.rpt.example mx_host_pattern=*.rpt.example \
         { policy_string = version: STSv1 } { policy_string = mode: enforce } \
         { policy_string = mx: mx.rpt.example } { policy_string = mx: *.rpt.example } \
         { policy_string = max_age: 604800 }"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_reported_to_tlsrpt_with_our_policy_spec_6_3() {
    let Some(root) = trixie_root() else { return };
    let _lock = ROOT_LOCK.lock().await;
    // Postfix's TLSRPT needs DNS (it refuses with smtp_dns_support_level =
    // disabled), and the root's resolver knows no port but 53: the world's DNS
    // server listens on port 53 of a loopback address of its own.
    let world = World::start_with_dns_at(TEST_DNS.parse().unwrap()).await;
    // As on the Internet: Postfix looks up rpt.example's MX, asks mtastsd for
    // rpt.example's policy, connects to the MX (smtp_tcp_port: the fixture's).
    world.publish(
        "rpt.example",
        "1",
        "version: STSv1\nmode: enforce\nmx: mx.rpt.example\nmax_age: 604800\n",
    );
    world
        .dns
        .set_mx("rpt.example", vec![(10, "mx.rpt.example".into())]);
    world
        .dns
        .set_a("mx.rpt.example", std::net::Ipv4Addr::LOCALHOST);
    // Postfix reports only for domains that ask for reports (RFC 8460 §3).
    world.dns.set_txt1(
        "_smtp._tls.rpt.example",
        "v=TLSRPTv1; rua=mailto:tlsrpt@rpt.example",
    );
    let smtp = SmtpServer::start(world.ca.clone()).await;
    // The MX presents a certificate for another name: MTA-STS must refuse it.
    smtp.set_leaf("mx.rpt.example", Leaf::Kind(CertKind::WrongName));

    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, dir.path());
    tlsrpt_profile(&mut config);
    let daemon = harness::start(config, TestClock::new()).await;
    let port = daemon.inet_addr().unwrap().port();

    // TLSRPT's collector socket, inside the root where Postfix's smtp(8) sends to.
    let run = root.join("run/mtastsd-test");
    std::fs::create_dir_all(&run).unwrap();
    let socket_path = run.join("tlsrpt.sock");
    let _ = std::fs::remove_file(&socket_path);
    let collector = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666)).unwrap();

    std::fs::write(root.join("etc/mtastsd-test-ca.pem"), world.ca.root_pem()).unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {}\n", TEST_DNS.trim_end_matches(":53")),
    )
    .unwrap();
    write_main_cf(
        &root,
        port,
        &format!("smtp_tcp_port = {}", smtp.port()),
        "/run/mtastsd-test/tlsrpt.sock",
    );
    in_root(
        &root,
        &[
            "postconf",
            "-F",
            "smtp/unix/chroot=n",
            "pickup/unix/chroot=n",
        ],
        None,
    );
    let _ = std::fs::remove_file(root.join("var/log/postfix-test.log"));
    // A Postfix left running by an interrupted run would keep the old settings.
    let _ = Command::new("chroot")
        .arg(&root)
        .args(["postfix", "stop"])
        .output();
    // Nor its queue: mail from an earlier run would be delivered first.
    let _ = Command::new("chroot")
        .arg(&root)
        .args(["postsuper", "-d", "ALL"])
        .output();
    in_root(&root, &["postfix", "start"], None);
    let stop = Stopper(root.clone());
    in_root(
        &root,
        &[
            "sendmail",
            "-f",
            "sender@sender.postfix310.test",
            "user@rpt.example",
        ],
        Some("Subject: mtastsd TLS-RPT test\n\nhello\n"),
    );

    let mut buf = vec![0u8; 65536];
    let datagram =
        match tokio::time::timeout(Duration::from_secs(60), collector.recv(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            _ => panic!(
                "no TLSRPT datagram within 60 s; Postfix log:\n{}",
                std::fs::read_to_string(root.join("var/log/postfix-test.log")).unwrap_or_default()
            ),
        };
    drop(stop);
    let log = std::fs::read_to_string(root.join("var/log/postfix-test.log")).unwrap_or_default();
    eprintln!("TLSRPT datagram: {datagram}\nPostfix log:\n{log}");
    // The delivery was refused for the certificate, under our policy...
    assert!(log.contains("status=deferred"), "{log}");
    assert!(smtp.handshakes().contains(&"mx.rpt.example".to_string()));
    assert!(
        log.contains(
            "TLSRPT: status=failure, domain=rpt.example, receiving_mx=mx.rpt.example[127.0.0.1], \
             failure_type=certificate_host_mismatch"
        ),
        "{log}"
    );
    // ... and Postfix handed libtlsrpt the policy details mtastsd gave it: the
    // policy type (2: sts), domain, lines and mx patterns of our answer.
    let report: serde_json::Value = serde_json::from_str(&datagram).unwrap();
    assert_eq!(report["d"], "rpt.example");
    assert_eq!(report["pr"], "v=TLSRPTv1; rua=mailto:tlsrpt@rpt.example");
    let policy = &report["policies"][0];
    assert_eq!(policy["policy-type"], 2, "{datagram}");
    assert_eq!(policy["policy-domain"], "rpt.example");
    assert_eq!(
        policy["policy-string"],
        serde_json::json!([
            "version: STSv1",
            "mode: enforce",
            "mx: mx.rpt.example",
            "max_age: 604800"
        ])
    );
    assert_eq!(policy["mx-host"], serde_json::json!(["mx.rpt.example"]));
    assert_eq!(policy["f"], 1, "one failed session: {datagram}");
    daemon.shutdown().await;
}

/// Stops the root's Postfix when the test ends, even on a panic.
struct Stopper(PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = Command::new("chroot")
            .arg(&self.0)
            .args(["postfix", "stop"])
            .output();
    }
}
