//! The TLS-RPT collector in the daemon (SPEC 8.1, 8.2), with real sockets and the real
//! store: Postfix's datagrams (the recorded ones in tests/golden/tlsrpt/) counted
//! exactly, garbage counted and dropped while the socketmap keeps answering, a flood
//! from a blocking sender counted to the last datagram, and `kill -9` of the real
//! binary losing nothing that was committed, with a restart continuing the day.
//! Its own test binary: the metrics recorder is process-wide.

mod child;
mod harness;
mod support;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Client, TestClock};
use mtastsd::config::TlsrptConfig;
use mtastsd::tlsrpt::aggregate::{Aggregate, Day};
use mtastsd::tlsrpt::datagram;
use mtastsd::tlsrpt::store::TlsrptStore;
use support::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The real datagrams (Debian 13's libtlsrpt, as Postfix 3.10.13 calls it).
fn golden() -> Vec<Vec<u8>> {
    [
        "sts-success.json",
        "sts-failure.json",
        "nopol-success.json",
        "nopol-failure.json",
        "nopol-success-3.10.4.json",
    ]
    .iter()
    .map(|name| {
        let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap().trim_ascii_end().to_vec()
    })
    .collect()
}

fn today() -> Day {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Day::from_unix(secs as i64)
}

/// The counts stored for the days `from..=to` (a test may run across midnight).
fn stored(state: &Path, from: Day, to: Day) -> Aggregate {
    let store = TlsrptStore::open_read_only(&state.join("tlsrpt.sqlite")).unwrap();
    let mut all = Aggregate::new();
    for day in from.0..=to.0 {
        all.merge(store.counts(Day(day), None).unwrap());
    }
    all
}

/// Sessions counted, successful and failed.
fn sessions(a: &Aggregate) -> u64 {
    a.iter().map(|(_, c)| c.successful + c.failed).sum()
}

/// The daemon's configuration with `[tlsrpt]` collecting on `dir/tlsrpt`.
fn config(world: &World, dir: &Path) -> (mtastsd::config::Config, PathBuf) {
    // Before any daemon of this binary counts: a counter handle taken before the
    // recorder exists never counts (see mtastsd::metrics::get).
    mtastsd::metrics::install();
    let mut c = harness::config(world, dir);
    let socket = dir.join("tlsrpt");
    c.tlsrpt = Some(TlsrptConfig {
        socket: socket.clone(),
        ..TlsrptConfig::default()
    });
    (c, socket)
}

async fn metrics_body(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn datagrams(body: &str, result: &str) -> u64 {
    let name = format!("mtastsd_tlsrpt_datagrams_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

fn raise_sndbuf(s: &UnixDatagram, bytes: libc::c_int) {
    // SAFETY: an int option on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// SPEC 8.1, 8.2: each real datagram sent N times is N sessions of its policy in the
/// store, the details with it; the socket's mode is `server.unix_mode`; stop removes
/// the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_datagrams_are_stored_exactly_spec_8_2() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, socket) = config(&world, dir.path());
    config.server.unix_mode = 0o620;
    let daemon = harness::start(config, TestClock::new()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o620);

    let first = today();
    let tx = UnixDatagram::unbound().unwrap();
    let mut expected = Aggregate::new();
    for (i, bytes) in golden().iter().enumerate() {
        let n = 10 * (i + 1);
        for _ in 0..n {
            tx.send_to(bytes, &socket).unwrap();
            expected.add(first, datagram::parse(bytes).unwrap());
        }
    }
    daemon.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed at shutdown");
    let last = today();
    let got = stored(dir.path(), first, last);
    assert_eq!(sessions(&got), 10 * (1 + 2 + 3 + 4 + 5));
    if first == last {
        assert_eq!(got, expected);
    }
}

/// SPEC 8.1: garbage, invalid UTF-8, empty and oversized datagrams are counted by
/// kind and dropped; the daemon goes on counting and answering Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_and_dropped_spec_8_1() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, socket) = config(&world, dir.path());
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let daemon = harness::start(config, TestClock::new()).await;
    let metrics = daemon.metrics_addr().unwrap();

    let tx = UnixDatagram::unbound().unwrap();
    // The kernel doubles this and caps it at net.core.wmem_max (about 416 KiB of
    // send buffer by default): room for a datagram larger than the collector's
    // 256 KiB buffer, which the default would refuse with EMSGSIZE.
    raise_sndbuf(&tx, 4 << 20);
    let oversized = |n: usize| {
        let mut v = br#"{"d": ""#.to_vec();
        v.resize(n, b'a');
        v
    };
    // libtlsrpt copies bytes of 128 and above unchecked: Latin-1 in a string.
    let latin1 = String::from_utf8_lossy(&golden()[0])
        .replace("rpt.example", "r\u{e9}pt.example")
        .into_bytes()
        .into_iter()
        .flat_map(|b| match b {
            0xc3 => None,
            0xa9 => Some(0xe9),
            b => Some(b),
        })
        .collect::<Vec<u8>>();
    assert!(std::str::from_utf8(&latin1).is_err());
    let malformed: [&[u8]; 4] = [
        b"\x00\x01garbage\xff",
        &latin1,
        b"",
        br#"{"d": "rpt.example","pr": "x","policies":[{"policy-type":7,"t":0,"f":0}]}"#,
    ];
    for m in malformed {
        tx.send_to(m, &socket).unwrap();
    }
    tx.send_to(&oversized(datagram::MAX_DATAGRAM + 1), &socket)
        .unwrap();
    tx.send_to(&oversized(300 * 1024), &socket).unwrap();
    let good = &golden()[1];
    tx.send_to(good, &socket).unwrap();

    // Counted as they arrive (process-wide: the other tests here count "ok" ones,
    // only this one sends these).
    let deadline = Instant::now() + Duration::from_secs(30);
    let dropped = |body: &str| (datagrams(body, "malformed"), datagrams(body, "truncated"));
    let body = loop {
        let body = metrics_body(metrics).await;
        let (m, t) = dropped(&body);
        if (m >= 4 && t >= 2) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dropped(&body), (4, 2), "{body}");

    // Still serving Postfix, still counting.
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    assert_eq!(c.query("postfix", "nopolicy.example").await, "NOTFOUND ");
    tx.send_to(good, &socket).unwrap();
    let first = today();
    daemon.shutdown().await;
    assert_eq!(sessions(&stored(dir.path(), first, today())), 2);
}

/// SPEC 8.1: one blocking sender as fast as it can for 3 s (the kernel's queue makes
/// it wait instead of dropping): every datagram sent is counted, while the socketmap
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_counted_exactly_spec_8_1() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(&world, dir.path());
    let daemon = harness::start(config, TestClock::new()).await;
    let first = today();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        let bytes = golden();
        std::thread::spawn(move || {
            let tx = UnixDatagram::unbound().unwrap();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tx.send_to(&bytes[sent as usize % bytes.len()], &socket)
                    .unwrap();
                sent += 1;
            }
            sent
        })
    };
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(c.query("postfix", "nopolicy.example").await, "NOTFOUND ");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    daemon.shutdown().await;
    let got = sessions(&stored(dir.path(), first, today()));
    println!("FIGURE flood: {sent} datagrams in 3 s from one blocking sender, {got} stored; {answered} socketmap answers meanwhile");
    assert_eq!(got, sent);
}

/// SPEC 8.2 on the real binary: `kill -9` in the middle of a burst loses nothing
/// that was committed (at most the last second), the stale socket is replaced at the
/// restart, and the restarted daemon adds to the same day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_what_was_committed_and_the_restart_continues_the_day_spec_8_2() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let socket = dir.path().join("tlsrpt");
    let text = child::config_text(
        &world,
        &state,
        "",
        &format!("[tlsrpt]\nsocket = \"{}\"\n", socket.display()),
    );
    let file = dir.path().join("mtastsd.toml");
    std::fs::write(&file, text).unwrap();
    let first = today();
    let bytes = golden();

    // A first burst, then a pause of more than a second: all of it committed.
    let mut daemon = child::Daemon::spawn(&file).await;
    let tx = UnixDatagram::unbound().unwrap();
    let burst = 5_000u64;
    for i in 0..burst {
        tx.send_to(&bytes[i as usize % bytes.len()], &socket)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sessions(&stored(&state, first, today())) < burst && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let committed = sessions(&stored(&state, first, today()));
    assert_eq!(committed, burst);

    // A second burst, killed in its middle.
    let sent = Arc::new(AtomicU64::new(0));
    let second = {
        let sent = Arc::clone(&sent);
        let socket = socket.clone();
        let bytes = bytes.clone();
        std::thread::spawn(move || {
            let tx = UnixDatagram::unbound().unwrap();
            // Ends when the receiver is gone (ECONNREFUSED).
            while tx
                .send_to(
                    &bytes[sent.load(Ordering::Relaxed) as usize % bytes.len()],
                    &socket,
                )
                .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while sent.load(Ordering::Relaxed) < 20_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.signal(libc::SIGKILL);
    daemon.wait(Duration::from_secs(10)).await;
    second.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let after_kill = sessions(&stored(&state, first, today()));
    println!(
        "FIGURE kill-9: {burst} committed, then {sent} sent in a burst; {} of them \
         committed before the kill",
        after_kill - burst
    );
    assert!(after_kill >= committed && after_kill <= committed + sent);
    assert!(socket.exists(), "kill -9 leaves the socket file behind");

    // The restart replaces the stale socket, keeps every count and adds to the day.
    let mut daemon = child::Daemon::spawn(&file).await;
    assert_eq!(sessions(&stored(&state, first, today())), after_kill);
    let more = 1_000u64;
    for i in 0..more {
        tx.send_to(&bytes[i as usize % bytes.len()], &socket)
            .unwrap();
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(30)).await.success());
    let last = today();
    assert_eq!(sessions(&stored(&state, first, last)), after_kill + more);
    if first == last {
        let store = TlsrptStore::open_read_only(&state.join("tlsrpt.sqlite")).unwrap();
        assert_eq!(
            sessions(&store.counts(first, None).unwrap()),
            after_kill + more,
            "one day"
        );
    }
}

/// SPEC 7.4, 8.1: a file at the socket path that is not a socket stops the start with
/// an error naming it, and is left as it was; so does a store that cannot be created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_the_way_stops_the_start_and_is_kept() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(&world, dir.path());
    std::fs::write(&socket, "not mine").unwrap();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let e = match mtastsd::daemon::Daemon::start(config, TestClock::new()).await {
        Ok(_) => panic!("started over a regular file"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&socket.display().to_string()), "{e}");
    assert!(e.contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read(&socket).unwrap(), b"not mine");

    // A directory where the store's file should be.
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = self::config(&world, dir.path());
    std::fs::create_dir(dir.path().join("tlsrpt.sqlite")).unwrap();
    let e = match mtastsd::daemon::Daemon::start(config, TestClock::new()).await {
        Ok(_) => panic!("started without its store"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("tlsrpt.sqlite"), "{e}");
}

/// SPEC 7.3: a reload keeps the collector; a new socket path waits for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_collecting_on_the_same_socket() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(&world, dir.path());
    let mut daemon = harness::start(config.clone(), TestClock::new()).await;
    let mut moved = config;
    moved.tlsrpt.as_mut().unwrap().socket = dir.path().join("elsewhere");
    daemon.reload(moved).unwrap();
    let first = today();
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(&golden()[0], &socket).unwrap();
    assert!(!dir.path().join("elsewhere").exists());
    daemon.shutdown().await;
    assert_eq!(sessions(&stored(dir.path(), first, today())), 1);
}
