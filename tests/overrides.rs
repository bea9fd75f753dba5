//! Local overrides (SPEC 6.5): a domain → fixed answer table in the
//! configuration and in a file re-read on SIGHUP, consulted before the cache and
//! before any DNS query, per profile, and marked as such by `mtastsd query`.

mod harness;
mod support;

use std::path::Path;

use harness::{enforce, policy, Client, TestClock};
use mtastsd::config::Config;
use support::{txt_name, RecordType, World};

const BIN: &str = env!("CARGO_BIN_EXE_mtastsd");

/// A TOML file pointing at the world, with `extra` appended.
fn write_config(world: &World, dir: &Path, extra: &str) -> std::path::PathBuf {
    harness::config_file(world, dir, "127.0.0.1:0", "", extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_answer_first_per_profile_and_follow_the_file_on_reload_spec_6_5() {
    let world = World::start().await;
    // A partner whose published policy is broken for us: MTA-STS must not apply.
    world.publish("partner.example", "1", &enforce(&["mx.partner.example"]));
    // A domain still in testing mode that we pin to a stricter answer.
    world.publish(
        "bank.example",
        "1",
        &policy("testing", &["mx.bank.example"], 86400),
    );
    // An ordinary domain: untouched by the overrides.
    world.publish("plain.example", "1", &enforce(&["mx.plain.example"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides");
    std::fs::write(
        &file,
        "# domain answer\nfile-only.example dane-only\npartner.example secure match=file.example\n",
    )
    .unwrap();
    let path = write_config(
        &world,
        dir.path(),
        &format!(
            r#"
[overrides]
file = "{file}"
"Partner.Example." = "none-from-mtasts"
"bank.example" = "secure match=.bank.example"
[profiles.strict]
strict_testing = true
[profiles.strict.overrides]
"plain.example" = "dane-only"
"#,
            file = file.display()
        ),
    );
    let config = Config::load(&path).unwrap();
    let mut daemon = harness::start(config, TestClock::new()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;

    assert_eq!(c.query("postfix", "partner.example").await, "NOTFOUND ");
    assert_eq!(
        c.query("postfix", "bank.example").await,
        "OK secure match=.bank.example"
    );
    // The TOML table wins over the file; the file's other entries apply.
    assert_eq!(
        c.query("postfix", "file-only.example").await,
        "OK dane-only"
    );
    // Consulted before anything else: not one DNS query for the overridden domains.
    for d in ["partner.example", "bank.example", "file-only.example"] {
        assert_eq!(world.dns.queries_any(&txt_name(d)), 0, "{d}");
    }
    // Everything else resolves as usual; a profile's own table applies to it only,
    // and the table for every profile still applies under a profile.
    assert_eq!(
        c.query("postfix", "plain.example").await,
        "OK secure match=mx.plain.example servername=hostname"
    );
    assert_eq!(c.query("strict", "plain.example").await, "OK dane-only");
    assert_eq!(c.query("strict", "partner.example").await, "NOTFOUND ");
    // An unknown map name uses the default profile's overrides.
    assert_eq!(
        c.query("nosuchmap", "bank.example").await,
        "OK secure match=.bank.example"
    );

    // SIGHUP re-reads the file: an entry removed from it no longer applies.
    std::fs::write(&file, "bank.example none-from-mtasts\n").unwrap();
    daemon.reload(Config::load(&path).unwrap()).unwrap();
    assert_eq!(
        c.query("postfix", "file-only.example").await,
        "NOTFOUND ",
        "no policy published, no override left"
    );
    assert_eq!(
        world
            .dns
            .queries(&txt_name("file-only.example"), RecordType::TXT),
        1
    );
    // ... and the TOML entry still wins over the file's new line.
    assert_eq!(
        c.query("postfix", "bank.example").await,
        "OK secure match=.bank.example"
    );
    daemon.shutdown().await;
}

#[test]
fn a_bad_overrides_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides");
    std::fs::write(&file, "ok.example dane\n\nbad.example sekure\n").unwrap();
    let path = dir.path().join("mtastsd.toml");
    std::fs::write(
        &path,
        format!("[overrides]\nfile = \"{}\"\n", file.display()),
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:3: ", file.display())), "{err}");
    assert!(err.contains("unknown security level \"sekure\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_marks_an_overridden_domain() {
    let world = World::start().await;
    world.publish("partner.example", "1", &enforce(&["mx.partner.example"]));
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &world,
        dir.path(),
        "[overrides]\n\"partner.example\" = \"none-from-mtasts\"\n",
    );
    let out = tokio::process::Command::new(BIN)
        .args(["query", "--config", path.to_str().unwrap(), "--json"])
        .arg("partner.example")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "NOTFOUND ");
    assert_eq!(report["overridden"], true);
    // The published policy is still shown, for information.
    assert_eq!(report["policy"]["mode"], "enforce");

    let out = tokio::process::Command::new(BIN)
        .args(["query", "--config", path.to_str().unwrap()])
        .arg("partner.example")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("local override from the configuration"),
        "{text}"
    );
}
