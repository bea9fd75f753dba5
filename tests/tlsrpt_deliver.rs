//! Sending TLS-RPT reports (SPEC 8.4, 8.5) with real parts:
//! - `post_https` against the in-process HTTPS server (which records the request);
//! - `sendmail` running real processes (a small sh script standing in for
//!   sendmail(1) where only the exit codes and argv matter);
//! - the report mail through the real Postfix 3.10 of the Debian 13 root
//!   (`tests/postfix310/make-root.sh`), delivered to a local mailbox and parsed
//!   with mail-parser;
//! - the no-loop set-up of contrib/postfix/: with TLSRPT on, Postfix reports an
//!   ordinary delivery to a domain with `_smtp._tls`, but not a report delivery.
//!
//! The Postfix tests need root (chroot) and the root; without them they are
//! skipped with a message, and under CI=true they fail. They share the root and
//! take a lock.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mtastsd::tlsrpt::deliver::{gzip, https_client, next_try, post_https, sendmail, Outcome};
use mtastsd::tlsrpt::mail::{message, rfc5322_date, MailParts};
use support::smtp::SmtpServer;
use support::{CertKind, Reply, World};

const JSON: &str = r#"{"organization-name":"Example Mail","date-range":{"start-datetime":"2026-01-15T00:00:00Z","end-datetime":"2026-01-15T23:59:59Z"},"contact-info":"tlsrpt@mail.example","report-id":"20260115.0123456789abcdef","policies":[]}"#;

fn gunzip(gz: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut out)
        .expect("gzip");
    out
}

// ---------------------------------------------------------------- HTTPS

/// The report host of these tests: `localhost` reaches the fixture on 127.0.0.1
/// without a resolver of our own, and the test CA issues it a certificate.
const HOST: &str = "localhost";

async fn https_world() -> (World, reqwest::Client) {
    let world = World::start().await;
    let roots = mtastsd::resolver::https::trust_roots(Some(world.ca_file())).unwrap();
    let client = https_client(roots).unwrap();
    (world, client)
}

fn url(world: &World) -> String {
    format!("https://{HOST}:{}/tlsrpt/v1", world.https_port())
}

/// RFC 8460 §5.4, SPEC 8.4: a POST, `Content-Type: application/tlsrpt+gzip`, the
/// body exactly the gzipped report; a 2xx is success.
#[tokio::test]
async fn https_posts_the_gzipped_report_rfc8460_5_4() {
    let (world, client) = https_world().await;
    world.https.set(
        HOST,
        CertKind::Valid,
        Reply::with_type(201, "text/plain", "thanks"),
    );
    let gz = gzip(JSON);
    let got = post_https(&client, &url(&world), gz.clone(), Duration::from_secs(30)).await;
    assert_eq!(got, Outcome::Sent);
    let head = world.https.last_request(HOST).unwrap();
    assert!(head.starts_with("POST /tlsrpt/v1 HTTP/1.1\r\n"), "{head}");
    let ctype: Vec<&str> = head
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .collect();
    assert_eq!(ctype.len(), 1, "{head}");
    assert_eq!(
        ctype[0].split_once(':').unwrap().1.trim(),
        "application/tlsrpt+gzip"
    );
    let body = world.https.last_body(HOST).unwrap();
    assert_eq!(body, gz, "the body is exactly the gzip bytes");
    assert_eq!(gunzip(&body), JSON);
}

/// SPEC 8.4: 408, 429 and 5xx are retried, other 4xx are permanent, a redirect is
/// not followed and is retried (RFC 8460 §5.4 lets a submitter retry anything but
/// a 2xx, and a moved endpoint may be fixed within the day of retries).
#[tokio::test]
async fn https_status_codes_spec_8_4() {
    let (world, client) = https_world().await;
    let rows: Vec<(Reply, &str)> = vec![
        (Reply::status(200), "sent"),
        (Reply::status(204), "sent"),
        (Reply::status(500), "retry"),
        (Reply::status(503), "retry"),
        (Reply::status(408), "retry"),
        (Reply::status(429), "retry"),
        (Reply::status(404), "failed"),
        (Reply::status(400), "failed"),
        (Reply::status(413), "failed"),
        (Reply::redirect(302, "https://elsewhere.example/r"), "retry"),
        (Reply::redirect(301, "https://elsewhere.example/r"), "retry"),
    ];
    for (reply, want) in rows {
        world.https.set(HOST, CertKind::Valid, reply.clone());
        world.https.reset_counts();
        let got = post_https(&client, &url(&world), gzip(JSON), Duration::from_secs(30)).await;
        let kind = match &got {
            Outcome::Sent => "sent",
            Outcome::Retry(_) => "retry",
            Outcome::Failed(_) => "failed",
        };
        assert_eq!(kind, want, "{reply:?}: {got:?}");
        assert_eq!(world.https.requests(HOST), 1, "{reply:?}: one request");
    }
    // The redirect's reason says where it pointed, and nothing went there.
    world.https.set(
        HOST,
        CertKind::Valid,
        Reply::redirect(302, "https://elsewhere.example/r"),
    );
    let got = post_https(&client, &url(&world), gzip(JSON), Duration::from_secs(30)).await;
    assert!(
        matches!(&got, Outcome::Retry(r) if r.contains("302") && r.contains("elsewhere.example")),
        "{got:?}"
    );
    assert_eq!(world.https.requests("elsewhere.example"), 0);
}

/// SPEC 8.4: a server that takes the report and never answers is given up at the
/// deadline, to be retried.
#[tokio::test]
async fn https_hanging_server_hits_the_deadline() {
    let (world, client) = https_world().await;
    world.https.set(HOST, CertKind::Valid, Reply::Hang);
    let got = post_https(&client, &url(&world), gzip(JSON), Duration::from_secs(2)).await;
    assert!(matches!(&got, Outcome::Retry(_)), "{got:?}");
    // It did reach the server: the deadline, not a connection failure, ended it.
    assert_eq!(world.https.requests(HOST), 1);
}

/// Connection and TLS failures are retried; a URL that is not https is permanent.
#[tokio::test]
async fn https_network_failures_are_retried() {
    let (world, client) = https_world().await;
    world.https.set(HOST, CertKind::Expired, Reply::status(200));
    let got = post_https(&client, &url(&world), gzip(JSON), Duration::from_secs(30)).await;
    assert!(
        matches!(&got, Outcome::Retry(r) if r.to_lowercase().contains("cert")),
        "{got:?}"
    );
    assert_eq!(world.https.requests(HOST), 0);

    world.https.set_down(true);
    let got = post_https(&client, &url(&world), gzip(JSON), Duration::from_secs(30)).await;
    assert!(matches!(&got, Outcome::Retry(_)), "{got:?}");

    let plain = format!("http://{HOST}:{}/tlsrpt", world.https_port());
    let got = post_https(&client, &plain, gzip(JSON), Duration::from_secs(30)).await;
    assert!(matches!(&got, Outcome::Failed(_)), "{got:?}");
}

// ---------------------------------------------------------------- sendmail(1)

/// `sh -c SCRIPT sh`: sendmail's arguments become $1.. of the script.
fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into(), "sh".into()]
}

/// The argv given to sendmail, and the message exactly, on stdin.
#[tokio::test]
async fn sendmail_gets_argv_and_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv");
    let msg = dir.path().join("msg");
    let argv = sh(&format!(
        "printf '%s\\n' \"$@\" > {}; cat > {}",
        out.display(),
        msg.display()
    ));
    let message: Vec<u8> = (0..200_000u32).map(|i| b"ab\r\n"[i as usize % 4]).collect();
    let got = sendmail(
        &argv,
        "tlsrpt@mail.example",
        // A decoded `rua` keeps its `!` (RFC 8460 §3 percent-encodes it); a comma
        // would make sendmail read a list, and is refused (deliver::check_address).
        "a.b!c@rpt.example",
        &message,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(got, Outcome::Sent);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "-f\ntlsrpt@mail.example\n--\na.b!c@rpt.example\n"
    );
    assert_eq!(std::fs::read(&msg).unwrap(), message);
}

/// Exit 0 sent, 75 (EX_TEMPFAIL) and signals retried, others permanent with the
/// first line of stderr.
#[tokio::test]
async fn sendmail_exit_codes() {
    let rows: &[(&str, &str, Option<&str>)] = &[
        ("cat >/dev/null; exit 0", "sent", None),
        (
            "cat >/dev/null; echo 'queue full' >&2; exit 75",
            "retry",
            Some("queue full"),
        ),
        (
            "cat >/dev/null; printf '\\nbad recipient\\nmore\\n' >&2; exit 67",
            "failed",
            Some("exit 67: bad recipient"),
        ),
        ("cat >/dev/null; exit 1", "failed", Some("exit 1")),
        ("kill -9 $$", "retry", Some("signal")),
        // Exits at once without reading: exit 1 is a failure whatever the pipe did.
        ("exit 1", "failed", Some("exit 1")),
    ];
    for &(script, want, text) in rows {
        let got = sendmail(
            &sh(script),
            "f@a.example",
            "t@b.example",
            &[b'x'; 300_000],
            Duration::from_secs(30),
        )
        .await;
        let (kind, reason) = match &got {
            Outcome::Sent => ("sent", ""),
            Outcome::Retry(r) => ("retry", r.as_str()),
            Outcome::Failed(r) => ("failed", r.as_str()),
        };
        assert_eq!(kind, want, "{script}: {got:?}");
        if let Some(text) = text {
            assert!(reason.contains(text), "{script}: {got:?}");
        }
    }
    // A missing program is a configuration error: permanent.
    let got = sendmail(
        &["/nonexistent/sendmail".to_string()],
        "f@a.example",
        "t@b.example",
        b"x",
        Duration::from_secs(30),
    )
    .await;
    assert!(matches!(&got, Outcome::Failed(_)), "{got:?}");
}

/// A sendmail that never finishes is killed at the deadline, to be retried.
#[tokio::test]
async fn sendmail_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let got = sendmail(
        &sh(&script),
        "f@a.example",
        "t@b.example",
        b"x",
        Duration::from_secs(2),
    )
    .await;
    assert!(
        matches!(&got, Outcome::Retry(r) if r.contains("killed")),
        "{got:?}"
    );
    // The process is gone (killed and reaped), not left running.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        // Killed: no such process, or a zombie waiting for tokio to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
        if stat.is_empty() || state == Some('Z') {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "sendmail pid {pid} still running");
}

/// An address can never become a sendmail option or two arguments: refused
/// before anything runs.
#[tokio::test]
async fn sendmail_refuses_unsafe_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let argv = sh(&format!("touch {}; cat >/dev/null", ran.display()));
    for (from, to) in [
        ("f@a.example", "-oQ/tmp/x@b.example"),
        ("-bs", "t@b.example"),
        ("f@a.example", "t@b.example x@c.example"),
        ("f@a.example", "t@b.example\nx@c.example"),
        ("f@a.example", ""),
        ("", "t@b.example"),
    ] {
        let got = sendmail(&argv, from, to, b"x", Duration::from_secs(30)).await;
        assert!(
            matches!(&got, Outcome::Failed(_)),
            "{from:?} {to:?}: {got:?}"
        );
        assert!(!ran.exists(), "{from:?} {to:?}: sendmail ran");
    }
}

/// next_try as a delivery would use it: from the first failure, the tries stop
/// within a day (RFC 8460 §5.5).
#[test]
fn retries_end_within_a_day_rfc8460_5_5() {
    let first = 1_768_435_200;
    let (mut now, mut tries) = (first, 1);
    while let Some(t) = next_try(tries, first, now, 0.5) {
        assert!(t > now && t <= first + 86_400);
        now = t;
        tries += 1;
    }
    assert_eq!(now, first + 86_400, "the last try is at the end of the day");
    assert!((8..=12).contains(&tries), "{tries} tries");
}

// ---------------------------------------------------------------- Postfix 3.10

/// Serialises the Postfix tests: they rewrite the root's configuration.
static ROOT_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a command inside the root; its output, or a panic with it.
fn in_root(root: &Path, args: &[&str]) -> String {
    support::trixie::in_root(root, args, None)
}

use support::trixie::trixie_root;

/// The local domain of the root's Postfix, and the mailbox user there.
const LOCAL_DOMAIN: &str = "reports.postfix310.test";
const MAILBOX_USER: &str = "tlsrptbox";
const LOG: &str = "var/log/postfix-test.log";

/// The root's Postfix, configured for one test: stopped, queue emptied and
/// master.cf restored when dropped (even on a panic).
struct Postfix {
    root: PathBuf,
    master_cf: String,
}

impl Postfix {
    /// main.cf: no listener, local delivery for LOCAL_DOMAIN into Maildirs, no
    /// aliases, opportunistic TLS; `extra` appended; `master_extra` appended to
    /// master.cf.
    fn start(root: &Path, extra: &str, master_extra: &str) -> Postfix {
        let master_path = root.join("etc/postfix/master.cf");
        let master_cf = std::fs::read_to_string(&master_path).unwrap();
        // A Postfix left running by an interrupted run would keep old settings,
        // and its queue old mail.
        let _ = Command::new("chroot")
            .arg(root)
            .args(["postfix", "stop"])
            .output();
        let _ = Command::new("chroot")
            .arg(root)
            .args(["postsuper", "-d", "ALL"])
            .output();
        let main_cf = format!(
            "compatibility_level = 3.10
myhostname = sender.postfix310.test
mydestination = {LOCAL_DOMAIN}
inet_interfaces = loopback-only
inet_protocols = ipv4
master_service_disable = inet
maillog_file = /{LOG}
alias_maps =
alias_database =
home_mailbox = Maildir/
smtp_tls_security_level = may
{extra}
"
        );
        std::fs::write(root.join("etc/postfix/main.cf"), main_cf).unwrap();
        std::fs::write(&master_path, format!("{master_cf}{master_extra}")).unwrap();
        let _ = std::fs::remove_file(root.join(LOG));
        let pf = Postfix {
            root: root.to_path_buf(),
            master_cf,
        };
        in_root(root, &["postfix", "start"]);
        pf
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join(LOG)).unwrap_or_default()
    }

    /// Waits until the message with this Message-ID has a final (or deferred)
    /// delivery status; that log line.
    async fn wait_status(&self, message_id: &str) -> String {
        for _ in 0..600 {
            let log = self.log();
            let qid = log
                .lines()
                .find(|l| l.contains(&format!("message-id=<{message_id}>")))
                .and_then(|l| l.split(": ").nth(1))
                .map(str::to_string);
            if let Some(qid) = qid {
                if let Some(line) = log
                    .lines()
                    .find(|l| l.contains(&format!("{qid}: to=")) && l.contains("status="))
                {
                    return line.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no delivery status for <{message_id}> in 60 s; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("chroot")
            .arg(&self.root)
            .args(["postfix", "stop"])
            .output();
        let _ = Command::new("chroot")
            .arg(&self.root)
            .args(["postsuper", "-d", "ALL"])
            .output();
        let _ = std::fs::write(self.root.join("etc/postfix/master.cf"), &self.master_cf);
    }
}

/// A local user with an empty Maildir in the root; its `Maildir/new`.
fn mailbox(root: &Path) -> PathBuf {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    if !passwd
        .lines()
        .any(|l| l.starts_with(&format!("{MAILBOX_USER}:")))
    {
        in_root(root, &["useradd", "--create-home", MAILBOX_USER]);
    }
    let maildir = root.join("home").join(MAILBOX_USER).join("Maildir");
    let _ = std::fs::remove_dir_all(&maildir);
    maildir.join("new")
}

fn parts<'a>(from: &'a str, to: &'a str, message_id: &'a str, gz: &'a [u8]) -> MailParts<'a> {
    MailParts {
        from,
        to,
        domain: "rpt.example",
        submitter: "mail.example",
        report_id: "20260115.0123456789abcdef",
        file_name:
            "mail.example!rpt.example!1768435200!1768521599!202601150123456789abcdef.json.gz",
        organization_name: "Example Mail",
        date: "Fri, 16 Jan 2026 06:00:00 +0000",
        message_id,
        gz,
    }
}

/// SPEC 8.4, RFC 8460 §5.3: the report mail, handed to the real Postfix 3.10's
/// sendmail(1) and delivered to a local mailbox, is a multipart/report of type
/// tlsrpt with the header fields, subject and attachment a receiver looks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailto_through_postfix_3_10_rfc8460_5_3() {
    let Some(root) = trixie_root() else { return };
    let _lock = ROOT_LOCK.lock().await;
    let new = mailbox(&root);
    let pf = Postfix::start(&root, "", "");
    let gz = gzip(JSON);
    let to = format!("{MAILBOX_USER}@{LOCAL_DOMAIN}");
    let from = "tlsrpt-noreply@mail.example";
    let id = "20260115.0123456789abcdef.1@mail.example";
    let mut p = parts(from, &to, id, &gz);
    let date = rfc5322_date(1_768_543_200);
    p.date = &date;
    let msg = message(&p).unwrap();
    let argv: Vec<String> = ["chroot", root.to_str().unwrap(), "/usr/sbin/sendmail", "-i"]
        .map(String::from)
        .to_vec();
    let got = sendmail(&argv, from, &to, &msg, Duration::from_secs(60)).await;
    assert_eq!(got, Outcome::Sent);
    let status = pf.wait_status(id).await;
    assert!(status.contains("status=sent"), "{status}\n{}", pf.log());

    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1, "one message in {}", new.display());
    let raw = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    let mail = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a parsable message");
    use mail_parser::MimeHeaders;
    let ct = mail.content_type().expect("Content-Type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
    let text = |name: &str| {
        mail.header(name)
            .and_then(|v| v.as_text())
            .map(str::to_string)
    };
    assert_eq!(
        mail.subject(),
        Some(
            "Report Domain: rpt.example Submitter: mail.example \
             Report-ID: <20260115.0123456789abcdef@mail.example>"
        )
    );
    assert_eq!(text("TLS-Report-Domain").as_deref(), Some("rpt.example"));
    assert_eq!(
        text("TLS-Report-Submitter").as_deref(),
        Some("mail.example")
    );
    assert_eq!(text("TLS-Required").as_deref(), Some("No"));
    assert_eq!(text("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert_eq!(mail.message_id(), Some(id));
    assert_eq!(
        mail.from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some(from)
    );
    assert_eq!(
        mail.date().map(|d| d.to_timestamp()),
        Some(1_768_543_200),
        "Date"
    );
    // The human part first, then the report.
    assert!(mail
        .body_text(0)
        .unwrap()
        .starts_with("This is an aggregate TLS report from Example Mail"));
    let atts: Vec<_> = mail.attachments().collect();
    assert_eq!(atts.len(), 1);
    let att = atts[0];
    assert!(att.is_content_type("application", "tlsrpt+gzip"));
    assert_eq!(
        att.attachment_name(),
        Some("mail.example!rpt.example!1768435200!1768521599!202601150123456789abcdef.json.gz")
    );
    assert_eq!(att.contents(), &gz[..], "the attachment is the gzip bytes");
    assert_eq!(gunzip(att.contents()), JSON);
}

/// The DNS server the root's Postfix asks: port 53 (the root's resolver knows no
/// other) on a loopback address of these tests' own.
const TEST_DNS: &str = "127.0.53.8:53";

/// SPEC 8.5 (RFC 8460 §3): with contrib/postfix/'s set-up and TLSRPT on, a report
/// delivery to a domain that publishes `_smtp._tls` is not reported, neither for
/// its `TLS-Required: No` header (Postfix >= 3.10.4) nor, without the header, for
/// the report sender's transport; an ordinary delivery there, before and after,
/// is reported (so the test can tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mail_is_not_reported_contrib_postfix_spec_8_5() {
    let Some(root) = trixie_root() else { return };
    let _lock = ROOT_LOCK.lock().await;
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/postfix");
    let main_extra = std::fs::read_to_string(contrib.join("main.cf.tlsrpt")).unwrap();
    let master_extra = std::fs::read_to_string(contrib.join("master.cf.tlsrpt")).unwrap();
    // The report sender of the contrib lines.
    let report_from = "tlsrpt-noreply@example.net";
    assert!(main_extra.contains(report_from));

    // Postfix's TLSRPT needs DNS: rpt.example's MX and _smtp._tls record.
    let world = World::start_with_dns_at(TEST_DNS.parse().unwrap()).await;
    world
        .dns
        .set_mx("rpt.example", vec![(10, "mx.rpt.example".into())]);
    world
        .dns
        .set_a("mx.rpt.example", std::net::Ipv4Addr::LOCALHOST);
    world.dns.set_txt1(
        "_smtp._tls.rpt.example",
        "v=TLSRPTv1; rua=mailto:tlsrpt@rpt.example",
    );
    let smtp = SmtpServer::start(world.ca.clone()).await;
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {}\n", TEST_DNS.trim_end_matches(":53")),
    )
    .unwrap();

    let run = root.join("run/mtastsd-test");
    std::fs::create_dir_all(&run).unwrap();
    let socket_path = run.join("tlsrpt.sock");
    let _ = std::fs::remove_file(&socket_path);
    let collector = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666)).unwrap();

    let pf = Postfix::start(
        &root,
        &format!(
            "smtp_tcp_port = {port}
smtp_tls_servername = hostname
smtp_tlsrpt_enable = yes
smtp_tlsrpt_socket_name = /run/mtastsd-test/tlsrpt.sock
# Every delivery its own connection and full handshake: a reused one is never
# reported, which would hide what this test looks for.
smtp_connection_cache_on_demand = no
smtp_tls_session_cache_database =
smtp_tlsrpt_skip_reused_handshakes = no
{main_extra}",
            port = smtp.port()
        ),
        &master_extra,
    );
    // Debian's smtp runs chrooted in the queue directory, where this root has no
    // resolver set-up; the contrib transport's chroot column is "-" (no chroot).
    in_root(&root, &["postconf", "-F", "smtp/unix/chroot=n"]);
    in_root(&root, &["postfix", "reload"]);
    let version = in_root(&root, &["postconf", "-h", "mail_version"]);
    let argv: Vec<String> = ["chroot", root.to_str().unwrap(), "/usr/sbin/sendmail", "-i"]
        .map(String::from)
        .to_vec();
    let to = TO;
    let gz = gzip(JSON);

    expect_reported(
        &pf,
        &collector,
        &argv,
        1,
        "control-1@sender.postfix310.test",
    )
    .await;

    // Report mail: the real message (with TLS-Required: No) from the report
    // sender (the contrib transport), the same from another sender (the header
    // alone), and a plain message from the report sender (the transport alone).
    let report_id = "report-1@mail.example";
    let report = message(&parts(report_from, to, report_id, &gz)).unwrap();
    let header_only_id = "report-2@mail.example";
    let header_only = message(&parts("other@mail.example", to, header_only_id, &gz)).unwrap();
    let transport_only_id = "report-3@mail.example";
    let transport_only = ordinary(transport_only_id);
    let header_applies = postfix_at_least(&version, (3, 10, 4));
    let mut cases = vec![
        (report_from, report_id, report),
        (report_from, transport_only_id, transport_only),
    ];
    if header_applies {
        cases.push(("other@mail.example", header_only_id, header_only));
    } else {
        eprintln!("Postfix {version}: older than 3.10.4, TLS-Required: No alone not tested");
    }
    for (from, id, msg) in &cases {
        let got = sendmail(&argv, from, to, msg, Duration::from_secs(60)).await;
        assert_eq!(got, Outcome::Sent);
        let status = pf.wait_status(id).await;
        // It was delivered to the MX with TLS (the fixture then refuses it).
        assert!(
            status.contains("relay=mx.rpt.example[127.0.0.1]"),
            "{status}"
        );
        if *from == report_from {
            assert!(status.contains("postfix/tlsrpt-out/smtp["), "{status}");
        }
    }
    let mut buf = vec![0u8; 65536];
    let sni = smtp
        .handshakes()
        .iter()
        .filter(|h| *h == "mx.rpt.example")
        .count();
    assert_eq!(
        sni,
        1 + cases.len(),
        "every delivery made its own TLS handshake"
    );
    // The datagram is sent at the handshake, before the status line: none queued.
    match collector.try_recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(n) => panic!(
            "a report delivery was reported: {}\nlog:\n{}",
            String::from_utf8_lossy(&buf[..n]),
            pf.log()
        ),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        pf.log().matches("TLSRPT: status=").count(),
        1,
        "{}",
        pf.log()
    );

    // And TLSRPT still works for ordinary mail afterwards.
    expect_reported(
        &pf,
        &collector,
        &argv,
        2,
        "control-2@sender.postfix310.test",
    )
    .await;
    drop(pf);
}

const TO: &str = "tlsrpt@rpt.example";

/// An ordinary message, not a report.
fn ordinary(id: &str) -> Vec<u8> {
    format!(
        "From: someone@sender.postfix310.test\r\nMessage-ID: <{id}>\r\n\
         Subject: hello\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

/// Sends an ordinary message to rpt.example and expects its TLSRPT datagram,
/// and `n` TLSRPT log lines in all.
async fn expect_reported(
    pf: &Postfix,
    collector: &tokio::net::UnixDatagram,
    argv: &[String],
    n: usize,
    id: &str,
) {
    let from = "someone@sender.postfix310.test";
    let got = sendmail(argv, from, TO, &ordinary(id), Duration::from_secs(60)).await;
    assert_eq!(got, Outcome::Sent);
    let status = pf.wait_status(id).await;
    let mut buf = vec![0u8; 65536];
    let datagram =
        match tokio::time::timeout(Duration::from_secs(60), collector.recv(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            _ => panic!(
                "control delivery {id}: no TLSRPT datagram ({status}); log:\n{}",
                pf.log()
            ),
        };
    assert!(datagram.contains("\"rpt.example\""), "{datagram}");
    let lines = pf.log().matches("TLSRPT: status=").count();
    assert_eq!(lines, n, "TLSRPT log lines after {id}:\n{}", pf.log());
}

/// `3.10.13` >= (3, 10, 4)?
fn postfix_at_least(version: &str, want: (u32, u32, u32)) -> bool {
    let mut n = version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let got = (
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
    );
    got >= want
}
