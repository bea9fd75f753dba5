//! Where the daemon listens (SPEC 7.5): systemd socket activation
//! (`LISTEN_FDS`/`LISTEN_PID`, as `mtastsd.socket` passes them) and unix sockets
//! given to the owner and group the configuration names.

mod harness;
mod support;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::{enforce, Client, TestClock};
use mtastsd::config::ListenAddr;
use support::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mtastsd");

/// A config for the real binary. Its own listener is a unix socket that must
/// *not* appear when systemd passes sockets.
fn write_config(world: &World, dir: &Path) -> PathBuf {
    let socket = format!("unix:{}/configured.sock", dir.display());
    harness::config_file(world, dir, &socket, "", "")
}

/// Starts `mtastsd serve` the way systemd does for a socket unit: `fd` becomes
/// descriptor 3, and LISTEN_PID is the daemon's own pid (the shell's `$$`, kept
/// across `exec`).
fn spawn_activated(fd: i32, config: &Path) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=mtastsd.socket exec \"$0\" serve --config \"$1\"",
        BIN,
        config.to_str().unwrap(),
    ])
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears FD_CLOEXEC on the copy, unless fd was already 3.
            libc::fcntl(3, libc::F_SETFD, 0);
            Ok(())
        });
    }
    cmd.spawn().expect("sh runs")
}

async fn stop(child: Child) -> String {
    let pid = child.id().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_tcp_socket_passed_by_systemd_instead_of_listen_spec_7_5() {
    let world = World::start().await;
    world.publish("tcp.example", "1", &enforce(&["mx.tcp.example"]));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let child = spawn_activated(listener.as_raw_fd(), &config);
    // Like systemd, this process keeps its copy: connections queue in the
    // socket even before the daemon accepts.
    let mut client = Client::connect(addr).await;
    assert_eq!(
        client.query("postfix", "tcp.example").await,
        "OK secure match=mx.tcp.example servername=hostname"
    );
    assert!(
        !dir.path().join("configured.sock").exists(),
        "[server] listen is not used under socket activation"
    );
    drop(client);
    let log = stop(child).await;
    assert!(log.contains("socket activation"), "{log}");
}

/// If the accept loop ends (its listener broken for good, or a panic), the process
/// must not stay up refusing Postfix: it exits non-zero so that systemd restarts it.
/// Provoked for real: the test shuts down the listening socket it passed to the
/// daemon (the same socket, shared as under socket activation), after which every
/// accept fails with EINVAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exits_non_zero_when_its_accept_loop_ends() {
    let world = World::start().await;
    world.publish("tcp.example", "1", &enforce(&["mx.tcp.example"]));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let child = spawn_activated(listener.as_raw_fd(), &config);
    let mut client = Client::connect(addr).await;
    assert_eq!(
        client.query("postfix", "tcp.example").await,
        "OK secure match=mx.tcp.example servername=hostname"
    );
    // SAFETY: shutdown(2) on a socket this test owns.
    assert_eq!(
        unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) },
        0
    );
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the daemon exits when it can no longer accept")
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("no longer accepting"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_passed_by_systemd_is_left_in_place_at_exit() {
    let world = World::start().await;
    world.publish("unix.example", "1", &enforce(&["mx.unix.example"]));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path());
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let child = spawn_activated(listener.as_raw_fd(), &config);

    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(harness::netstring("postfix unix.example").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b",") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        harness::netstring("OK secure match=mx.unix.example servername=hostname")
    );
    drop(s);
    stop(child).await;
    // The socket file belongs to systemd's socket unit: removing it would cut
    // Postfix off until the unit is restarted.
    assert!(path.exists(), "inherited socket file kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_descriptor_that_is_not_a_listener_is_refused() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&world, dir.path());
    let file = std::fs::File::open(&config).unwrap();
    let child = spawn_activated(file.as_raw_fd(), &config);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("socket activation: file descriptor 3"),
        "{log}"
    );
    assert!(log.contains("ListenStream="), "{log}");
}

/// Group id of `name` from /etc/group, read independently of the daemon.
fn gid_of(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1)?.parse().ok())?
        })
}

fn uid_of(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1)?.parse().ok())?
        })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: giving a socket to another user needs it"
        );
        eprintln!("skipped: giving a socket away needs root");
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_gets_the_configured_owner_group_and_mode() {
    if !running_as_root() {
        return;
    }
    // Debian's base system has both; neither is the daemon's (root's) own.
    let (uid, gid) = (uid_of("nobody").unwrap(), gid_of("daemon").unwrap());
    let world = World::start().await;
    world.publish("own.example", "1", &enforce(&["mx.own.example"]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socketmap");
    let mut config = harness::config(&world, dir.path());
    config.server.listen = vec![ListenAddr::Unix(path.clone())];
    config.server.unix_mode = 0o640;
    config.server.unix_owner = Some("nobody".into());
    config.server.unix_group = Some("daemon".into());
    let daemon = harness::start(config, TestClock::new()).await;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    // Still served.
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(harness::netstring("postfix own.example").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("OK secure match=mx.own.example"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_socket_group_stops_start_up_naming_the_key() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, dir.path());
    config.server.listen = vec![ListenAddr::Unix(dir.path().join("socketmap"))];
    config.server.unix_group = Some("no-such-group-mtastsd".into());
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let err = match mtastsd::daemon::Daemon::start(config, TestClock::new()).await {
        Ok(_) => panic!("started with a group that does not exist"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        "server.unix_group: no group named \"no-such-group-mtastsd\" on this system"
    );
}
