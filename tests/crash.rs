//! Crash safety and restarts (SPEC 5.8, 7.3), on the real `mtastsd serve` binary.
//!
//! - `kill -9` at random moments while policies are being learnt, refreshed and
//!   saved: the state file always loads whole, and every policy in any saved
//!   version of it survives the restart (SPEC 5.3, 5.8);
//! - SIGTERM under load: every request the daemon has received is answered before
//!   it exits, and it exits 0 after saving (SPEC 7.3);
//! - a state file that exists but cannot be read stops `serve` (exit 1) and is left
//!   as it was, never saved over (SPEC 5.8).
//!
//! Figures (printed with `--nocapture`) are recorded in docs/RELIABILITY.md.

mod child;
mod harness;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{enforce, netstring, Client};
use mtastsd::cache::store::{Snapshot, Store};
use mtastsd::cache::CachedPolicy;
use mtastsd::mta_sts::policy::parse_policy;
use support::{policy_host, txt_name, ResponseCode, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ok(mx: &str) -> String {
    format!("OK secure match={mx} servername=hostname")
}

/// The domains of one version of the state file, parsed strictly (serde_json, not
/// the daemon's tolerant loader): `None` if it is not one whole JSON document.
fn saved_domains(bytes: &[u8]) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("policies")?
        .as_array()?
        .iter()
        .map(|p| p.get("domain").and_then(|d| d.as_str()).map(String::from))
        .collect()
}

/// (domains in any version seen, versions seen, a torn version if one was seen)
type Seen = (BTreeSet<String>, usize, Option<String>);

/// Watches the state file and keeps the union of every version seen. Each version
/// must be whole: a reader never sees a torn file (write, fsync, rename).
struct Watcher {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(path: PathBuf) -> Watcher {
        let seen = Arc::new(Mutex::new((BTreeSet::new(), 0, None)));
        let s = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            use std::os::unix::fs::MetadataExt;
            let mut last = (0, 0, 0);
            loop {
                // A new version is a new inode (rename); read only then.
                let id = std::fs::metadata(&path)
                    .map(|m| (m.ino(), m.mtime_nsec(), m.len()))
                    .unwrap_or_default();
                if id != last {
                    if let Ok(bytes) = std::fs::read(&path) {
                        let mut s = s.lock().unwrap();
                        match saved_domains(&bytes) {
                            Some(d) => {
                                s.0.extend(d);
                                s.1 += 1;
                            }
                            None => s.2 = Some(format!("torn file of {} bytes", bytes.len())),
                        }
                    }
                    last = id;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Watcher { seen, task }
    }

    fn stop(self) -> Seen {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A state file of `n` policies, as a long-running daemon would have.
fn seed(state: &Path, n: usize) -> BTreeSet<String> {
    let store = Store::open(state).unwrap();
    let policies: Vec<(String, Arc<CachedPolicy>)> = (0..n)
        .map(|i| {
            let d = format!("seed{i}.example");
            let body = enforce(&[&format!("mx.{d}")]);
            let p = parse_policy(body.as_bytes()).unwrap();
            (d, Arc::new(CachedPolicy::new(p, "s".into(), now())))
        })
        .collect();
    store.save(&Snapshot::wall(policies.clone())).unwrap();
    policies.into_iter().map(|(d, _)| d).collect()
}

/// Query `domains` over one connection, pipelined; the replies in order.
async fn query_all(addr: std::net::SocketAddr, domains: &[String]) -> Vec<String> {
    let mut c = Client::connect(addr).await;
    let mut out = Vec::with_capacity(domains.len());
    for batch in domains.chunks(200) {
        let mut bytes = String::new();
        for d in batch {
            bytes.push_str(&netstring(&format!("postfix {d}")));
        }
        c.send_raw(bytes.as_bytes()).await;
        for _ in batch {
            out.push(c.reply().await.expect("answered"));
        }
    }
    out
}

/// splitmix64, for reproducible "random" kill times.
fn random(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SPEC 5.8 under `kill -9`, repeated (20 runs; MTASTSD_CRASH_RUNS=100 for the
/// issue's full count). Each run: start on the previous run's state file; check it
/// loaded whole, with every policy of every version of the file seen so far, by
/// asking for those domains while their DNS is broken (only the restored cache can
/// answer, SPEC 5.3); then learn new policies and refresh changed ones, and kill -9
/// at a random moment around the first save (about 1 s after the first change), or,
/// every other run, a few milliseconds after the save's temporary file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_loses_a_saved_policy_spec_5_8() {
    let runs: u64 = std::env::var("MTASTSD_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    const SEEDED: usize = 5000;
    const NEW_PER_RUN: usize = 20;
    const CHURN: usize = 10;
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("policies.json");
    let mut saved = seed(state.path(), SEEDED);
    for j in 0..CHURN {
        let d = format!("churn{j}.crash.example");
        world.publish(&d, "0", &enforce(&[&format!("mx0.{d}")]));
    }
    let config = world.dir().join("crash.toml");
    std::fs::write(
        &config,
        child::config_text(&world, state.path(), "", "").replace(
            "[cache]\n",
            "[cache]\nrecheck = \"1s\"\nsave_interval = \"1s\"\n",
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (mut mid_save, mut versions, mut load_times) = (0, 0, Vec::new());
    let mut learnt: Vec<String> = Vec::new();
    let tmp = state.path().join("policies.json.tmp");
    for run in 0..runs {
        // A temporary file left by the previous kill: gone, so that one found after
        // this run's kill is this run's.
        let _ = std::fs::remove_file(&tmp);
        let watcher = Watcher::start(file.clone());
        let t = Instant::now();
        let mut daemon = child::Daemon::spawn(&config).await;
        let loaded = daemon
            .wait_for_log(|l| l.contains("loaded "), Duration::from_secs(10))
            .await
            .expect("load line");
        load_times.push(t.elapsed());
        assert!(
            !daemon
                .log()
                .iter()
                .any(|l| l.contains("damaged") || l.contains("not a policy store")),
            "run {run}: {:?}",
            daemon.log()
        );
        assert!(!state.path().join("policies.json.corrupt").exists());
        let on_disk = saved_domains(&std::fs::read(&file).unwrap()).expect("whole file");
        assert!(
            loaded.contains(&format!("loaded {} policies", on_disk.len())),
            "run {run}: {loaded} but the file holds {}",
            on_disk.len()
        );
        let missing: Vec<_> = saved.difference(&on_disk).take(5).collect();
        assert!(
            missing.is_empty(),
            "run {run}: saved policies lost: {missing:?}"
        );

        // Every learnt policy that was saved, and a sample of the seeded ones, are
        // answered from the restored cache alone (their DNS now fails).
        let mut check: Vec<String> = learnt
            .iter()
            .filter(|d| saved.contains(*d))
            .cloned()
            .collect();
        check.extend(
            (0..50).map(|i| format!("seed{}.example", (run as usize * 97 + i * 89) % SEEDED)),
        );
        let replies = query_all(daemon.addr, &check).await;
        for (d, r) in check.iter().zip(&replies) {
            assert_eq!(*r, ok(&format!("mx.{d}")), "run {run}: {d}");
        }

        // Load: new policies to learn, changed ids to refetch, then kill -9 at a
        // random moment in the window around the first save.
        let first_change = Instant::now();
        let fresh: Vec<String> = (0..NEW_PER_RUN)
            .map(|j| format!("n{run}-{j}.crash.example"))
            .collect();
        for d in &fresh {
            world.publish(d, "1", &enforce(&[&format!("mx.{d}")]));
        }
        for j in 0..CHURN {
            let d = format!("churn{j}.crash.example");
            world.publish(
                &d,
                &format!("{}", run + 1),
                &enforce(&[&format!("mx{}.{d}", run + 1)]),
            );
        }
        let kill_at = Duration::from_millis(700 + random(run) % 1800);
        let addr = daemon.addr;
        let load = tokio::spawn({
            let fresh = fresh.clone();
            async move {
                // Replies are not checked here (the kill cuts them off); what counts
                // is what the next run finds.
                let Ok(mut c) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let mut sink = vec![0u8; 64 * 1024];
                let mut batch = fresh;
                loop {
                    let mut bytes = String::new();
                    for d in &batch {
                        bytes.push_str(&netstring(&format!("postfix {d}")));
                    }
                    if c.write_all(bytes.as_bytes()).await.is_err()
                        || matches!(c.read(&mut sink).await, Ok(0) | Err(_))
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    batch = (0..CHURN)
                        .map(|j| format!("churn{j}.crash.example"))
                        .collect();
                }
            }
        });
        if run % 2 == 0 {
            // At a random moment of the window in which the first save falls.
            tokio::time::sleep_until((first_change + kill_at).into()).await;
        } else {
            // Aimed at the save itself: a random 0-15 ms after its temporary file
            // appears (or at the end of the window if it does not).
            let end = first_change + Duration::from_secs(3);
            while !tmp.exists() && Instant::now() < end {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            tokio::time::sleep(Duration::from_micros(random(run) % 15_000)).await;
        }
        daemon.signal(libc::SIGKILL);
        let status = daemon.wait(Duration::from_secs(10)).await;
        assert!(!status.success());
        load.abort();
        let _ = load.await;
        if tmp.exists() {
            mid_save += 1;
        }
        let (seen, n, torn) = watcher.stop();
        assert_eq!(torn, None, "run {run}");
        // The first version seen is the one this run started from.
        versions += n.saturating_sub(1);
        saved.extend(seen);
        // After the kill the file still holds everything any saved version held.
        let on_disk = saved_domains(&std::fs::read(&file).unwrap()).expect("whole file");
        assert!(saved.is_subset(&on_disk), "run {run}");
        // From now on only the restored cache can answer for this run's domains.
        for d in &fresh {
            world.dns.set_failure(&txt_name(d), ResponseCode::ServFail);
            world.https.remove(&policy_host(d));
        }
        learnt.extend(fresh);
    }
    let learnt_saved = learnt.iter().filter(|d| saved.contains(*d)).count();
    println!(
        "FIGURE kill-9: {runs} runs in {:?}; {versions} saves observed, none torn; \
         {mid_save} kills landed mid-save (temporary file left behind); {learnt_saved} of \
         {} learnt policies saved before a kill, all restored; state file of {} policies \
         loaded in {:?}..{:?} (start to \"loaded\")",
        started.elapsed(),
        learnt.len(),
        saved.len(),
        load_times.iter().min().unwrap(),
        load_times.iter().max().unwrap(),
    );
    assert!(
        versions > 0 && learnt_saved > 0,
        "the test never saw a save"
    );
}

/// SIGTERM while 20 clients each have a slow request in resolution and 50 more
/// queued behind it (already sent, in the daemon's buffers), and 10 more clients
/// hammer a cached domain: every received request gets its answer, then the
/// connection closes, and the daemon saves and exits 0 (SPEC 7.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_received_request_spec_7_3() {
    const SLOW: usize = 20;
    const QUEUED: usize = 50;
    let world = World::start().await;
    world.publish("hot.example", "1", &enforce(&["mx.hot.example"]));
    for i in 0..SLOW {
        let d = format!("slow{i}.example");
        world.publish(&d, "1", &enforce(&[&format!("mx.{d}")]));
        world
            .dns
            .set_delay(&txt_name(&d), Duration::from_millis(700));
    }
    let state = tempfile::tempdir().unwrap();
    let config = world.dir().join("term.toml");
    std::fs::write(&config, child::config_text(&world, state.path(), "", "")).unwrap();
    let mut daemon = child::Daemon::spawn(&config).await;
    let addr = daemon.addr;
    let mut c = Client::connect(addr).await;
    assert_eq!(
        c.query("postfix", "hot.example").await,
        ok("mx.hot.example")
    );

    // Background load on a cached domain.
    let mut loaders = Vec::new();
    for _ in 0..10 {
        loaders.push(tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let want = netstring(&ok("mx.hot.example"));
            let mut got = vec![0u8; want.len()];
            let mut answered = 0usize;
            loop {
                // Once the daemon has closed between two requests, the write or the
                // read fails: that request was never received.
                if c.write_all(netstring("postfix hot.example").as_bytes())
                    .await
                    .is_err()
                {
                    return answered;
                }
                match c.read_exact(&mut got).await {
                    Ok(_) => {
                        assert_eq!(got, want.as_bytes(), "a whole, correct answer");
                        answered += 1;
                    }
                    Err(_) => return answered,
                }
            }
        }));
    }
    // Each slow client: its slow request, then QUEUED more, in one write.
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut bytes = netstring(&format!("postfix slow{i}.example"));
        for _ in 0..QUEUED {
            bytes.push_str(&netstring("postfix hot.example"));
        }
        s.write_all(bytes.as_bytes()).await.unwrap();
        slow.push(s);
    }
    // Received and being resolved: the DNS server holds all 20 TXT queries.
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.dns.in_flight() < SLOW {
        assert!(
            Instant::now() < deadline,
            "in flight: {}",
            world.dns.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    daemon.signal(libc::SIGTERM);

    for (i, mut s) in slow.into_iter().enumerate() {
        let mut want = netstring(&ok(&format!("mx.slow{i}.example")));
        for _ in 0..QUEUED {
            want.push_str(&netstring(&ok("mx.hot.example")));
        }
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got))
            .await
            .expect("closed in time")
            .expect("closed cleanly, not reset");
        assert_eq!(String::from_utf8_lossy(&got), want, "client {i}");
    }
    let status = daemon.wait(Duration::from_secs(20)).await;
    let exit_time = t.elapsed();
    assert!(status.success(), "{status:?}");
    let mut hot = 0;
    for l in loaders {
        hot += l.await.unwrap();
    }
    let log = daemon.log();
    assert!(log.iter().any(|l| l.contains("stopping")));
    assert!(log
        .iter()
        .any(|l| l.contains("saved ") && l.contains(" policies to ")));
    // The slow policies learnt during shutdown were saved too.
    let on_disk = saved_domains(&std::fs::read(state.path().join("policies.json")).unwrap())
        .expect("whole file");
    assert!(on_disk.contains("slow0.example") && on_disk.contains("hot.example"));
    println!(
        "FIGURE sigterm: {SLOW} slow requests in flight + {} queued behind them all \
         answered; exit 0 {exit_time:?} after SIGTERM; {hot} load requests answered meanwhile",
        SLOW * QUEUED
    );
}

/// Runs `mtastsd serve --config config` (through `setpriv` to uid and gid 65534 when
/// `as_nobody`) and waits for it to exit: (exit code, stderr). A daemon that starts
/// and keeps running instead is stopped and reported as such.
async fn serve_until_exit(config: &Path, as_nobody: bool) -> (Option<i32>, String) {
    let bin = env!("CARGO_BIN_EXE_mtastsd");
    let mut cmd = if as_nobody {
        let mut c = tokio::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            bin,
        ]);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    let child = cmd
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mtastsd");
    match tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("wait for mtastsd");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => panic!("mtastsd kept running on a state file it could not read"),
    }
}

/// A configuration of the daemon's own defaults but an ephemeral listener and
/// `state_dir` (no CA file or other path that another user might not read).
fn minimal_config(dir: &Path, state_dir: &Path) -> PathBuf {
    let path = dir.join("unreadable.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[cache]\nstate_dir = \"{}\"\n",
            state_dir.display()
        ),
    )
    .unwrap();
    path
}

/// SPEC 5.8: a state file that exists but cannot be read (a directory in its place;
/// a file the daemon's user may not read, as after a manual `sudo mtastsd serve`)
/// stops `serve` with exit 1 and a message naming the file and what to do. The file
/// is left as it was: starting empty would save an almost empty cache over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_file_stops_serve_and_is_left_alone_spec_5_8() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A directory in the file's place.
    let state = dir.path().join("state");
    let file = state.join("policies.json");
    std::fs::create_dir_all(&file).unwrap();
    std::fs::write(file.join("keep"), "evidence").unwrap();
    let (code, log) = serve_until_exit(&minimal_config(dir.path(), &state), false).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(log.contains("move it away"), "{log}");
    assert!(!log.contains(" listening on "), "{log}");
    assert_eq!(
        std::fs::read_to_string(file.join("keep")).unwrap(),
        "evidence"
    );
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        1,
        "nothing saved"
    );

    // A file another user owns, not readable by the daemon's user.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI runs as root: reading as another user needs it"
        );
        eprintln!("skipped the permission case: dropping to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let file = state.join("policies.json");
    seed(&state, 3);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::read(&file).unwrap();
    let config = minimal_config(dir.path(), &state);
    let (code, log) = serve_until_exit(&config, true).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&file.display().to_string()), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert!(!log.contains(" listening on "), "{log}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");
}
