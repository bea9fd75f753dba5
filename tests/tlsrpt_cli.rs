//! `mtastsd tlsrpt show|report|send` on the real binary (SPEC 8.2, 8.4): counts
//! committed to a real store as the collector commits them, the report POSTed to the
//! in-process HTTPS server, never twice.

mod child;
mod support;

use mtastsd::tlsrpt::aggregate::Day;
use mtastsd::tlsrpt::store::TlsrptStore;
use support::tlsrpt::{counts, datagrams, gunzip};
use support::{CertKind, Reply, World};

const BIN: &str = env!("CARGO_BIN_EXE_mtastsd");
const HOST: &str = "localhost";
const DAY: &str = "2026-11-30";

async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Setup {
    world: World,
    _dir: tempfile::TempDir,
    config: String,
}

async fn setup(tlsrpt: &str) -> Setup {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mtastsd.toml");
    std::fs::write(
        &config,
        child::config_text(&world, dir.path(), "", &format!("[tlsrpt]\n{tlsrpt}")),
    )
    .unwrap();
    let url = format!("https://{HOST}:{}/report", world.https_port());
    let day = Day::parse(DAY).unwrap();
    let mut store = TlsrptStore::open(&dir.path().join("tlsrpt.sqlite")).unwrap();
    store
        .add(&counts(day, &datagrams("rpt.example", &url, 5, 2)))
        .unwrap();
    store
        .add(&counts(day, &datagrams("other.example", &url, 1, 0)))
        .unwrap();
    Setup {
        world,
        config: config.display().to_string(),
        _dir: dir,
    }
}

const SENDER: &str =
    "organization_name = \"Example Mail\"\ncontact_info = \"tlsrpt@mail.example\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_lists_the_days_counts_text_and_json_spec_8_2() {
    let s = setup("").await;
    let (code, out, err) = run(&["tlsrpt", "show", "--day", DAY, "-c", &s.config]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TLS-RPT counts of 2026-11-30 (UTC)"), "{out}");
    assert!(
        out.contains("sts (enforce) policy of rpt.example: 5 successful, 2 failed sessions"),
        "{out}"
    );
    assert!(
        out.contains("2 certificate-host-mismatch mx.rpt.example [198.51.100.7] from 192.0.2.1"),
        "{out}"
    );
    assert!(out.contains("report: not built yet"), "{out}");

    let (code, out, _) = run(&[
        "tlsrpt",
        "show",
        "rpt.example",
        "--day",
        DAY,
        "--json",
        "-c",
        &s.config,
    ])
    .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["domains"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["domains"][0]["policies"][0]["successful"], 5);
    assert_eq!(v["domains"][0]["policies"][0]["failed"], 2);

    // Another day: nothing; a bad day: exit 2 with what to write.
    let (code, out, _) = run(&["tlsrpt", "show", "--day", "2026-11-29", "-c", &s.config]).await;
    assert_eq!(
        (code, out.contains("nothing collected")),
        (0, true),
        "{out}"
    );
    let (code, _, err) = run(&["tlsrpt", "show", "--day", "30.11.2026", "-c", &s.config]).await;
    assert_eq!(code, 2);
    assert!(err.contains("is not a day like 2026-12-01"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_previews_then_shows_what_send_sent_exactly_spec_8_4() {
    let s = setup(SENDER).await;
    s.world.https.set(HOST, CertKind::Valid, Reply::status(200));

    // Before sending: a preview, said so on stderr.
    let (code, preview, err) = run(&[
        "tlsrpt",
        "report",
        "rpt.example",
        "--day",
        DAY,
        "-c",
        &s.config,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("preview"), "{err}");
    let p: serde_json::Value = serde_json::from_str(&preview).unwrap();
    assert_eq!(p["organization-name"], "Example Mail");
    assert_eq!(p["contact-info"], "tlsrpt@mail.example");
    assert_eq!(
        p["policies"][0]["summary"]["total-failure-session-count"],
        2
    );

    let (code, out, _) = run(&["tlsrpt", "send", "--day", DAY, "--dry-run", "-c", &s.config]).await;
    assert_eq!(code, 0);
    assert!(out.contains("rpt.example: https://localhost:"), "{out}");
    assert!(out.contains("would be built"), "{out}");
    assert_eq!(s.world.https.requests(HOST), 0, "a dry run sends nothing");

    let (code, out, err) = run(&["tlsrpt", "send", "--day", DAY, "-c", &s.config]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(": sent").count(), 2, "{out}");
    assert_eq!(s.world.https.requests(HOST), 2);

    // What `report` prints now is exactly what was POSTed (the last one posted is
    // one of the two domains': find which).
    let posted = gunzip(&s.world.https.last_body(HOST).unwrap());
    let domain = if posted.contains("\"policy-domain\":\"rpt.example\"") {
        "rpt.example"
    } else {
        "other.example"
    };
    let (_, stored, err) = run(&["tlsrpt", "report", domain, "--day", DAY, "-c", &s.config]).await;
    assert!(!err.contains("preview"), "{err}");
    assert_eq!(stored.trim_end(), posted);

    // Never twice.
    let (code, out, _) = run(&["tlsrpt", "send", "--day", DAY, "-c", &s.config]).await;
    assert_eq!((code, out.trim()), (0, "nothing to send"));
    assert_eq!(s.world.https.requests(HOST), 2);
    let (_, shown, _) = run(&["tlsrpt", "show", "--day", DAY, "-c", &s.config]).await;
    assert_eq!(shown.matches(": sent 20").count(), 2, "{shown}");
}

/// SPEC 8.4: one report per whole UTC day: today's cannot be sent yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_that_has_not_ended_is_not_sent() {
    let s = setup(SENDER).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let today = Day::from_unix(now).to_string();
    let (code, _, err) = run(&["tlsrpt", "send", "--day", &today, "-c", &s.config]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has not ended"), "{err}");
    assert_eq!(s.world.https.requests(HOST), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_need_who_sends_them_and_say_so() {
    let s = setup("").await;
    let (code, _, err) = run(&[
        "tlsrpt",
        "report",
        "rpt.example",
        "--day",
        DAY,
        "-c",
        &s.config,
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("organization_name and contact_info"), "{err}");
    let (code, _, err) = run(&["tlsrpt", "send", "--day", DAY, "-c", &s.config]).await;
    assert_eq!(code, 2);
    assert!(err.contains("organization_name and contact_info"), "{err}");
}
