//! Real Postfix: `postmap -q KEY socketmap:inet:127.0.0.1:PORT:NAME` against the
//! running daemon. Skipped with a visible message where Postfix is not installed;
//! under CI=true a missing Postfix is a failure (.ci/run installs it).

mod child;
mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use harness::{enforce, policy, TestClock};
use support::World;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn find_postmap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("postmap"))
        .find(|p| p.is_file())
}

/// A Postfix configuration directory of our own: postmap refuses to run without
/// a main.cf, and the system's may not exist (or may not be ours to read).
fn postfix_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("postfix");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    std::fs::write(conf.join("master.cf"), "").unwrap();
    conf
}

async fn postmap(postmap: &Path, conf: &Path, table: &str, key: &str) -> Output {
    Command::new(postmap)
        .arg("-c")
        .arg(conf)
        .arg("-q")
        .arg(key)
        .arg(table)
        .output()
        .await
        .expect("postmap runs")
}

/// postmap, or `None` (skipped with a message) where Postfix is not installed.
fn postmap_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_postmap();
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("postmap not found but CI=true: .ci/run must install postfix");
        }
        eprintln!("SKIPPED {test}: Postfix (postmap) is not installed");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmap_gets_policies_from_the_daemon() {
    let Some(postmap_bin) = postmap_or_skip("postmap_gets_policies_from_the_daemon") else {
        return;
    };
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let conf = postfix_conf(state.path());
    let mut config = harness::config(&world, state.path());
    config.profiles.insert(
        "strict".into(),
        mtastsd::config::Profile {
            strict_testing: true,
            servername: true,
            tlsrpt: false,
        },
    );
    let daemon = harness::start(config, TestClock::new()).await;
    let port = daemon.inet_addr().unwrap().port();
    let table = format!("socketmap:inet:127.0.0.1:{port}:postfix");
    let strict = format!("socketmap:inet:127.0.0.1:{port}:strict");

    world.publish(
        "example.com",
        "1",
        &enforce(&["mx1.example.com", "*.example.net"]),
    );
    world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );

    // Found: exit 0 and the answer on stdout (SPEC 6.1). postmap sends the key as
    // given; the daemon lower-cases it (SPEC 1.6).
    let out = postmap(&postmap_bin, &conf, &table, "Example.COM").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secure match=mx1.example.com:.example.net servername=hostname\n"
    );

    // Not found: exit 1, nothing printed, no warning (SPEC 6.2, NOTFOUND with its space).
    for key in [
        "testing.example",
        "nopolicy.example",
        ".example.com",
        "[192.0.2.1]:25",
    ] {
        let out = postmap(&postmap_bin, &conf, &table, key).await;
        assert_eq!(out.status.code(), Some(1), "{key}: {out:?}");
        assert!(out.stdout.is_empty(), "{key}: {out:?}");
        assert!(out.stderr.is_empty(), "{key}: postmap complained: {out:?}");
    }

    // The map name selects the profile (SPEC 1.2).
    let out = postmap(&postmap_bin, &conf, &strict, "testing.example").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secure match=mx.testing.example servername=hostname\n"
    );

    // Many keys over one connection: `postmap -q -` reads keys from stdin.
    let mut child = Command::new(&postmap_bin)
        .arg("-c")
        .arg(&conf)
        .arg("-q")
        .arg("-")
        .arg(&table)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"example.com\nnopolicy.example\n[example.com]:25\n")
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "example.com\tsecure match=mx1.example.com:.example.net servername=hostname\n\
         [example.com]:25\tsecure match=mx1.example.com:.example.net servername=hostname\n",
        "{out:?}"
    );
    daemon.shutdown().await;
}

/// SPEC 7.6: a local user holding every connection slot (the default 1000) with idle
/// clients cannot lock Postfix out: postmap is answered, and the longest-idle client
/// is closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_clients_do_not_lock_postfix_out_spec_7_6() {
    let Some(postmap_bin) =
        postmap_or_skip("a_thousand_idle_clients_do_not_lock_postfix_out_spec_7_6")
    else {
        return;
    };
    // Both ends in this process: 1000 client and 1000 daemon sockets.
    assert!(child::raise_fd_limit() >= 2500, "RLIMIT_NOFILE too low");
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let conf = postfix_conf(state.path());
    let config = harness::config(&world, state.path());
    let limit = config.server.max_connections;
    assert_eq!(limit, 1000, "the default limit");
    let daemon = harness::start(config, TestClock::new()).await;
    let addr = daemon.inet_addr().unwrap();
    let table = format!("socketmap:inet:127.0.0.1:{}:postfix", addr.port());
    world.publish("example.com", "1", &enforce(&["mx1.example.com"]));

    // Every slot held by a client that was answered once, oldest first.
    let mut idle = Vec::with_capacity(limit);
    for _ in 0..limit {
        let mut c = harness::Client::connect(addr).await;
        assert_eq!(c.query("postfix", "[192.0.2.1]").await, "NOTFOUND ");
        idle.push(c);
    }
    let out = postmap(&postmap_bin, &conf, &table, "example.com").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "secure match=mx1.example.com servername=hostname\n"
    );
    assert_eq!(
        idle[0].reply().await,
        None,
        "the longest-idle client was closed"
    );
    assert_eq!(
        idle[limit - 1].query("postfix", "[192.0.2.1]").await,
        "NOTFOUND ",
        "the youngest is still served"
    );
    daemon.shutdown().await;
}
