//! The `mtastsd` binary as an administrator runs it: exit codes, `query` output,
//! `serve` with a config file, SIGHUP and SIGTERM (SPEC 7.1, 7.3, 7.4).

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::{enforce, policy};
use support::{policy_host, Reply, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mtastsd");

/// A config file pointing at the world, listening on a unix socket in `dir`.
fn write_config(world: &World, dir: &Path, extra: &str) -> PathBuf {
    let socket = format!("unix:{}/socketmap", dir.display());
    let state = format!("{}/state", dir.display());
    harness::config_file(world, dir, &socket, &state, extra)
}

async fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("mtastsd runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_the_commands() {
    let out = run(&["--help"]).await;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "query", "check-config", "smtp_tls_policy_maps"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = run(&["--version"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_naming_file_line_and_key_spec_7_4() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:8461\"]\nidle_timout = \"5s\"\n",
    )
    .unwrap();
    let file = path.display().to_string();
    for args in [
        vec!["check-config", file.as_str()],
        vec!["serve", "--config", file.as_str()],
        vec!["query", "--config", file.as_str(), "example.com"],
    ] {
        let out = run(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{file}:3:")), "{args:?}: {err}");
        assert!(err.contains("server.idle_timout"), "{args:?}: {err}");
    }
    // A missing file is a configuration error too.
    let out = run(&["serve", "--config", "/nonexistent/mtastsd.toml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mtastsd.toml"));
    // And a good one passes.
    std::fs::write(&path, "[server]\nidle_timeout = \"5s\"\n").unwrap();
    let out = run(&["check-config", &file]).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_each_stage_spec_7_1() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path(), "");
    let config = config.to_str().unwrap();
    world.publish(
        "good.example",
        "20240101",
        &enforce(&["mx1.good.example", "*.good.example"]),
    );
    world.publish("html.example", "1", &enforce(&["mx.html.example"]));
    world.https.set_reply(
        &policy_host("html.example"),
        Reply::with_type(200, "text/html", "<html>"),
    );

    // Text for a human.
    let out = run(&["query", "--config", config, "Good.Example"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("$ mtastsd query Good.Example\n{text}"); // shown with --nocapture
    for want in [
        "domain    good.example",
        "\"v=STSv1; id=20240101\"",
        "valid STSv1 record, id 20240101",
        "mode enforce, max_age 86400",
        "mx mx1.good.example, *.good.example",
        "answer    OK secure match=mx1.good.example:.good.example servername=hostname",
        "failures  none",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    // JSON for scripts, with the failing stage.
    let out = run(&["query", "--config", config, "html.example"]).await;
    println!(
        "$ mtastsd query html.example\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["query", "--config", config, "nothing.example"]).await;
    println!(
        "$ mtastsd query nothing.example\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["query", "--config", config, "--json", "html.example"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["answer"], "NOTFOUND ");
    assert_eq!(report["txt_id"], "1");
    assert_eq!(report["failures"][0]["stage"], "content-type");

    // SPEC 3.1: a certificate for the wrong name fails at the tls stage.
    world.publish(
        "wrongcert.example",
        "1",
        &enforce(&["mx.wrongcert.example"]),
    );
    world.https.set_cert(
        &policy_host("wrongcert.example"),
        support::CertKind::WrongName,
    );
    let out = run(&["query", "--config", config, "--json", "wrongcert.example"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["failures"][0]["stage"], "tls", "{report}");
    assert_eq!(report["answer"], "NOTFOUND ");

    let out = run(&["query", "--config", config, "--json", "nothing.example"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stages: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["dns", "dns"], "{report}"); // no TXT, and no policy host
}

/// `mtastsd serve --config CONFIG` (a [`write_config`] file in `dir`), once its unix
/// socket exists (at most 5 s), with the socket's path.
async fn serve(config: &Path, dir: &Path, stderr: Stdio) -> (tokio::process::Child, PathBuf) {
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = dir.join("socketmap");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, socket)
}

/// Send one request over the daemon's unix socket.
async fn ask(socket: &Path, key: &str) -> String {
    ask_map(socket, "postfix", key).await
}

async fn ask_map(socket: &Path, map: &str, key: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let req = harness::netstring(&format!("{map} {key}"));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let mut got = Vec::new();
    while !got.ends_with(b",") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    let (_, payload) = text.split_once(':').unwrap();
    payload.trim_end_matches(',').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup_and_saves_on_sigterm_spec_7_3() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path(), "");
    world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    let (child, socket) = serve(&config, dir.path(), Stdio::piped()).await;
    assert_eq!(ask(&socket, "testing.example").await, "NOTFOUND ");
    // Cache hits, and an unknown map name twice.
    for _ in 0..5 {
        assert_eq!(ask(&socket, "testing.example").await, "NOTFOUND ");
    }
    assert_eq!(
        ask_map(&socket, "other", "testing.example").await,
        "NOTFOUND "
    );
    assert_eq!(
        ask_map(&socket, "other", "testing.example").await,
        "NOTFOUND "
    );

    // SIGHUP with strict_testing on: the cached testing policy now enforces.
    write_config(
        &world,
        dir.path(),
        "[profiles.postfix]\nstrict_testing = true\n",
    );
    let pid = child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut answer = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = ask(&socket, "testing.example").await;
        if answer.starts_with("OK") {
            break;
        }
    }
    assert_eq!(
        answer,
        "OK secure match=mx.testing.example servername=hostname"
    );
    assert_eq!(
        world.https.requests(&policy_host("testing.example")),
        1,
        "cache kept"
    );

    // A broken file on SIGHUP keeps the running configuration.
    std::fs::write(&config, "[server\n").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ask(&socket, "testing.example").await.starts_with("OK"));

    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("testing.example: policy id 1 mode testing"),
        "{log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("reload failed, keeping the running configuration"),
        "{log}"
    );
    assert!(log.contains("saved 1 policies"), "{log}");
    let saved = std::fs::read_to_string(dir.path().join("state/policies.json")).unwrap();
    assert!(saved.contains("testing.example"));
    assert!(!socket.exists(), "socket removed");
}

/// The nice value of each of a process's threads, by thread name (Linux /proc).
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // "tid (comm) state ppid ...": nice is field 19, the 17th after the comm.
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        let comm = head.split_once(" (").unwrap().1.to_string();
        let nice: i64 = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm, nice));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_run_on_threads_of_lower_priority_than_the_answers() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path(), "");
    world.publish("a.example", "1", &enforce(&["mx.a.example"]));
    let (mut child, socket) = serve(&config, dir.path(), Stdio::null()).await;
    // A miss: the lookup runs on the resolver threads and answers.
    assert_eq!(
        ask(&socket, "a.example").await,
        "OK secure match=mx.a.example servername=hostname"
    );
    let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } as i64;
    let threads = thread_nice(child.id().unwrap());
    let resolvers: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name == "mtastsd-resolve")
        .map(|(_, nice)| *nice)
        .collect();
    let servers: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name == "mtastsd")
        .map(|(_, nice)| *nice)
        .collect();
    assert!(!resolvers.is_empty() && !servers.is_empty(), "{threads:?}");
    assert!(
        resolvers.iter().all(|&n| n == (own + 10).min(19)),
        "{threads:?}"
    );
    assert!(servers.iter().all(|&n| n == own), "{threads:?}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_audits_a_domain_and_exits_1_on_errors_spec_7_1() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path(), "");
    let config = config.to_str().unwrap();
    world.publish(
        "good.example",
        "1",
        &policy("enforce", &["*.good.example"], 604800),
    );
    world
        .dns
        .set_mx("good.example", vec![(10, "mx1.good.example".into())]);
    world.dns.set_txt(
        "_smtp._tls.good.example",
        vec![vec!["v=TLSRPTv1; rua=mailto:tlsrpt@good.example".into()]],
    );
    let out = run(&["check", "--config", config, "good.example"]).await;
    println!(
        "$ mtastsd check good.example\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // An MX host the policy does not cover: mail to it would fail under enforce.
    world.dns.set_mx(
        "good.example",
        vec![
            (10, "mx1.good.example".into()),
            (20, "backup.other.example".into()),
        ],
    );
    let out = run(&["check", "--config", config, "good.example"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    println!("$ mtastsd check good.example\n{text}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text.contains("backup.other.example"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_state_dir_is_fatal_when_configured_spec_5_8() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    std::fs::write(dir.path().join("state"), "not a directory").unwrap();
    let config = write_config(&world, dir.path(), "");
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        run(&["serve", "--config", config.to_str().unwrap()]),
    )
    .await
    .expect("exits at once");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state") && err.contains("cache.state_dir"),
        "{err}"
    );
}

/// How often `needle` occurs in `text`.
fn occurrences(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// STYLE (errors): a `Display` never repeats its source, and `main` prints the whole
/// chain once: the file, then why it cannot be read, once (SPEC 7.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_on_a_missing_file_prints_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let cause = std::fs::read(&missing).unwrap_err().to_string();
    let out = run(&["check-config", missing.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(occurrences(&err, &cause), 1, "{cause:?} in {err:?}");
}

/// The same for `serve`, whose start-up errors go to the log: an address that is
/// already taken is named with its cause, once (SPEC 7.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_unbindable_address_prints_the_cause_once() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cause = std::net::TcpListener::bind(&addr).unwrap_err().to_string();
    let state = format!("{}/state", dir.path().display());
    let config = harness::config_file(&world, dir.path(), &addr, &state, "");
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        run(&["serve", "--config", config.to_str().unwrap()]),
    )
    .await
    .expect("exits at once");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
    assert_eq!(occurrences(&err, &cause), 1, "{cause:?} in {err:?}");
    drop(taken);
}
