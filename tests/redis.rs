//! The Redis shared cache against a real redis-server (issue 4): each test starts its
//! own instance on a free loopback port, and some kill, stop or restart it mid-test.
//! Skipped with a visible message where redis-server is not installed; under CI=true
//! a missing redis-server is a failure (.ci/run installs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mtastsd::cache::redis::RedisShared;
use mtastsd::cache::shared::{SharedCache, SharedEntry};
use mtastsd::cache::CachedPolicy;
use mtastsd::config::RedisConfig;
use mtastsd::mta_sts::policy::parse_policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The daemon's default.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Slack for scheduling on a busy CI machine.
const SLACK: Duration = Duration::from_millis(200);

mod harness;
mod support;

fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// The redis-server binary, or `None` (after saying so) when the test must be skipped.
fn redis_server_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_redis_server();
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("redis-server not found but CI=true: .ci/run must install redis-server");
        }
        eprintln!("SKIPPED {test}: redis-server is not installed");
    }
    found
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One redis-server of our own, killed when dropped.
struct Redis {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start(bin: &Path) -> Redis {
        let mut redis = Redis {
            bin: bin.to_path_buf(),
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// Start (again) on the same port, and wait until it answers.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections (the kernel does) but
    /// answers nothing, like one stuck on a slow command or swapping.
    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A raw connection, to put in Redis what mtastsd would not.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

fn config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        url,
        prefix: prefix.to_owned(),
        timeout: TIMEOUT,
        ca_file: None,
    }
}

fn policy_entry() -> SharedEntry {
    let body =
        b"version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.example.org\nmax_age: 86400\n";
    SharedEntry::Policy {
        policy: CachedPolicy::new(
            parse_policy(body).unwrap(),
            "20261101T000000".to_owned(),
            1_790_000_000,
        ),
        checked: 1_790_000_100,
    }
}

fn negative_entry() -> SharedEntry {
    SharedEntry::Negative {
        checked: 1_790_000_000,
        until: 1_790_000_300,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Poll `f` until it returns `Ok`, for at most `within`; how long it took.
async fn until_ok<T, E: std::fmt::Debug, F, Fut>(within: Duration, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        let err = match f().await {
            Ok(v) => return (start.elapsed(), v),
            Err(e) => e,
        };
        assert!(
            start.elapsed() < within,
            "still failing after {within:?}: {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every operation fails, each within the timeout (plus slack); the slowest time.
async fn all_fail_in_time(shared: &RedisShared) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let start = Instant::now();
        assert!(shared.get("example.com").await.is_err());
        assert!(shared
            .put("example.com", &negative_entry(), HOUR)
            .await
            .is_err());
        assert!(shared.lease("example.com", HOUR).await.is_err());
        // Three calls, each bounded by TIMEOUT; in practice they fail at once.
        let took = start.elapsed();
        assert!(took < 3 * TIMEOUT + SLACK, "took {took:?}");
        slowest = slowest.max(took / 3);
    }
    slowest
}

#[tokio::test]
async fn put_then_get_roundtrips_both_kinds() {
    let Some(bin) = redis_server_or_skip("put_then_get_roundtrips_both_kinds") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();

    assert_eq!(shared.get("example.com").await.unwrap(), None);
    let (policy, negative) = (policy_entry(), negative_entry());
    shared.put("example.com", &policy, HOUR).await.unwrap();
    shared.put("example.net", &negative, HOUR).await.unwrap();
    assert_eq!(shared.get("example.com").await.unwrap(), Some(policy));
    assert_eq!(
        shared.get("example.net").await.unwrap(),
        Some(negative.clone())
    );

    // A put replaces the record, kind and all.
    shared.put("example.com", &negative, HOUR).await.unwrap();
    assert_eq!(shared.get("example.com").await.unwrap(), Some(negative));

    // Stored where and how the brief says: `{prefix}policy:{domain}`, JSON, with a TTL.
    let mut raw = redis.raw().await;
    let json: String = redis::cmd("GET")
        .arg("t:policy:example.net")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(json.contains("\"kind\":\"negative\""), "{json}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg("t:policy:example.net")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 3_500_000 && pttl <= 3_600_000, "{pttl}");
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let Some(bin) = redis_server_or_skip("entries_expire_after_their_ttl") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();

    let ttl = Duration::from_millis(150);
    shared
        .put("example.com", &policy_entry(), ttl)
        .await
        .unwrap();
    shared
        .put("example.net", &policy_entry(), HOUR)
        .await
        .unwrap();
    assert!(shared.get("example.com").await.unwrap().is_some());
    tokio::time::sleep(ttl + Duration::from_millis(150)).await;
    assert_eq!(shared.get("example.com").await.unwrap(), None);
    assert!(shared.get("example.net").await.unwrap().is_some());

    // A zero TTL (which Redis would refuse as PX 0) still stores, briefly.
    shared
        .put("example.org", &policy_entry(), Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_goes_to_one_node_until_it_expires() {
    let Some(bin) = redis_server_or_skip("a_lease_goes_to_one_node_until_it_expires") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let node_a = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    let node_b = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();

    let ttl = Duration::from_millis(200);
    assert!(node_a.lease("example.com", ttl).await.unwrap());
    assert!(!node_b.lease("example.com", ttl).await.unwrap());
    assert!(!node_a.lease("example.com", ttl).await.unwrap());
    // Leases are per domain.
    assert!(node_b.lease("example.net", ttl).await.unwrap());

    // The holder is named, for an operator looking at Redis.
    let mut raw = redis.raw().await;
    let holder: String = redis::cmd("GET")
        .arg("t:lease:example.com")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(holder, node_a.node_id());
    assert!(
        holder.ends_with(&format!(":{}", std::process::id())),
        "{holder}"
    );

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(node_b.lease("example.com", ttl).await.unwrap());
    assert!(!node_a.lease("example.com", ttl).await.unwrap());
}

#[tokio::test]
async fn a_lease_is_released_by_its_holder_only() {
    let Some(bin) = redis_server_or_skip("a_lease_is_released_by_its_holder_only") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let node = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    let ttl = Duration::from_secs(30);
    assert!(node.lease("example.com", ttl).await.unwrap());
    node.release("example.com").await.unwrap();
    // Free again at once, not after 30 s.
    assert!(node.lease("example.com", ttl).await.unwrap());

    // A lease that lapsed and was taken by another node is not ours to release.
    let mut raw = redis.raw().await;
    let () = redis::cmd("SET")
        .arg("t:lease:example.org")
        .arg("another-node:1")
        .query_async(&mut raw)
        .await
        .unwrap();
    node.release("example.org").await.unwrap();
    let holder: Option<String> = redis::cmd("GET")
        .arg("t:lease:example.org")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("another-node:1"));
}

#[tokio::test]
async fn prefixes_keep_clusters_apart() {
    let Some(bin) = redis_server_or_skip("prefixes_keep_clusters_apart") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let one = RedisShared::connect(&config(redis.url(), "one:"))
        .await
        .unwrap();
    let two = RedisShared::connect(&config(redis.url(), "two:"))
        .await
        .unwrap();

    one.put("example.com", &policy_entry(), HOUR).await.unwrap();
    assert_eq!(two.get("example.com").await.unwrap(), None);
    two.put("example.com", &negative_entry(), HOUR)
        .await
        .unwrap();
    assert_eq!(one.get("example.com").await.unwrap(), Some(policy_entry()));
    assert_eq!(
        two.get("example.com").await.unwrap(),
        Some(negative_entry())
    );

    assert!(one.lease("example.com", HOUR).await.unwrap());
    assert!(two.lease("example.com", HOUR).await.unwrap());
    assert!(!one.lease("example.com", HOUR).await.unwrap());
}

#[tokio::test]
async fn an_unreadable_value_is_a_miss() {
    let Some(bin) = redis_server_or_skip("an_unreadable_value_is_a_miss") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    let mut raw = redis.raw().await;

    let garbage: [&[u8]; 4] = [
        b"not json",
        b"{\"kind\":\"martian\"}",
        b"{\"kind\":\"negative\",\"checked\":1}",
        b"\xff\xfe\x00",
    ];
    for value in garbage {
        redis::cmd("SET")
            .arg("t:policy:example.com")
            .arg(value)
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        assert_eq!(shared.get("example.com").await.unwrap(), None);
    }
    // A value of another type (GET answers WRONGTYPE): a miss too, and no outage.
    redis::cmd("RPUSH")
        .arg("t:policy:example.net")
        .arg("x")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    assert_eq!(shared.get("example.net").await.unwrap(), None);
    // A put replaces either.
    shared
        .put("example.net", &policy_entry(), HOUR)
        .await
        .unwrap();
    assert_eq!(
        shared.get("example.net").await.unwrap(),
        Some(policy_entry())
    );
}

#[tokio::test]
async fn redis_down_at_start_fails_fast_then_joins_when_it_comes() {
    let Some(bin) = redis_server_or_skip("redis_down_at_start_fails_fast_then_joins_when_it_comes")
    else {
        return;
    };
    let port = free_port();
    let started = Instant::now();
    let shared = RedisShared::connect(&config(format!("redis://127.0.0.1:{port}"), "t:"))
        .await
        .expect("connect succeeds with Redis down");
    let connect_took = started.elapsed();
    assert!(
        connect_took < TIMEOUT + SLACK,
        "connect took {connect_took:?}"
    );
    let fail_took = all_fail_in_time(&shared).await;

    // Redis comes up: the same RedisShared starts using it, by itself.
    let mut redis = Redis {
        bin,
        port,
        child: None,
    };
    redis.restart().await;
    let entry = policy_entry();
    let (recover_took, ()) = until_ok(Duration::from_secs(5), || {
        shared.put("example.com", &entry, HOUR)
    })
    .await;
    assert_eq!(
        shared.get("example.com").await.unwrap(),
        Some(policy_entry())
    );
    eprintln!(
        "redis down at start: connect {connect_took:?}, calls fail in {fail_took:?}, \
         usable {recover_took:?} after redis-server answered"
    );
}

#[tokio::test]
async fn redis_killed_mid_test_fails_fast_and_recovers_after_restart() {
    let Some(bin) =
        redis_server_or_skip("redis_killed_mid_test_fails_fast_and_recovers_after_restart")
    else {
        return;
    };
    let mut redis = Redis::start(&bin).await;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    shared
        .put("example.com", &policy_entry(), HOUR)
        .await
        .unwrap();
    assert!(shared.get("example.com").await.unwrap().is_some());

    redis.kill().await;
    let fail_took = all_fail_in_time(&shared).await;
    // Still failing, still bounded, a while later (past the retry interval).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_fail_in_time(&shared).await;

    redis.restart().await;
    let (recover_took, entry) =
        until_ok(Duration::from_secs(5), || shared.get("example.com")).await;
    // Restarted without persistence: the record is gone (each node keeps its own).
    assert_eq!(entry, None);
    shared
        .put("example.com", &policy_entry(), HOUR)
        .await
        .unwrap();
    assert!(shared.lease("example.com", HOUR).await.unwrap());
    assert_eq!(
        shared.get("example.com").await.unwrap(),
        Some(policy_entry())
    );
    eprintln!(
        "redis killed: calls fail in {fail_took:?}, \
         usable {recover_took:?} after redis-server answered again"
    );
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_the_timeout() {
    let Some(bin) = redis_server_or_skip("a_hung_redis_costs_at_most_the_timeout") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    shared
        .put("example.com", &policy_entry(), HOUR)
        .await
        .unwrap();

    redis.signal(libc::SIGSTOP);
    let start = Instant::now();
    assert!(shared.get("example.com").await.is_err());
    let first = start.elapsed();
    assert!(first < TIMEOUT + SLACK, "took {first:?}");
    // Then the node leaves Redis alone instead of paying the timeout on every call.
    let fail_took = all_fail_in_time(&shared).await;

    redis.signal(libc::SIGCONT);
    let (recover_took, entry) =
        until_ok(Duration::from_secs(5), || shared.get("example.com")).await;
    assert_eq!(entry, Some(policy_entry()));
    eprintln!(
        "redis hung: first call fails in {first:?}, the next in {fail_took:?}, \
         usable {recover_took:?} after it resumed"
    );
}

/// Log records, kept for [`an_outage_is_logged_once_and_so_is_the_recovery`]. Tests run
/// in parallel in this binary, so each looks only at records naming its own port.
struct Capture(std::sync::Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let mut records = self.0.lock().unwrap();
        records.push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));

fn logged(port: u16, level: log::Level) -> Vec<String> {
    let needle = format!("127.0.0.1:{port}");
    let records = CAPTURE.0.lock().unwrap();
    records
        .iter()
        .filter(|(l, m)| *l == level && m.contains(&needle))
        .map(|(_, m)| m.clone())
        .collect()
}

#[tokio::test]
async fn an_outage_is_logged_once_and_so_is_the_recovery() {
    let Some(bin) = redis_server_or_skip("an_outage_is_logged_once_and_so_is_the_recovery") else {
        return;
    };
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Debug);
    let mut redis = Redis::start(&bin).await;
    let port = redis.port;
    let shared = RedisShared::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    shared
        .put("example.com", &policy_entry(), HOUR)
        .await
        .unwrap();
    assert!(logged(port, log::Level::Warn).is_empty());

    redis.kill().await;
    all_fail_in_time(&shared).await;
    // Past the retry interval: the probe fails too, without a second warning.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    all_fail_in_time(&shared).await;
    let warnings = logged(port, log::Level::Warn);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("carrying on without it"),
        "{warnings:?}"
    );

    redis.restart().await;
    until_ok(Duration::from_secs(5), || shared.get("example.com")).await;
    shared.get("example.com").await.unwrap();
    let infos = logged(port, log::Level::Info);
    eprintln!("logged: {warnings:?} {infos:?}");
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert!(
        infos[0].starts_with("shared cache reachable again"),
        "{infos:?}"
    );
}

/// Two daemons on one Redis, end to end: what one fetched, the other answers without
/// any DNS or HTTPS; with Redis killed, both keep answering and resolving alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_policies_through_redis() {
    use harness::{enforce, Client, TestClock};
    use support::{policy_host, txt_name, RecordType, World};

    let Some(bin) = redis_server_or_skip("two_daemons_share_policies_through_redis") else {
        return;
    };
    let mut redis = Redis::start(&bin).await;
    let world = World::start().await;
    world.publish("example.com", "1", &enforce(&["mx.example.com"]));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = |dir: &Path| {
        let mut c = harness::config(&world, dir);
        c.redis = Some(config(redis.url(), "e2e:"));
        c
    };
    let clock = TestClock::new();
    let a = harness::start(node(dir_a.path()), clock.clone()).await;
    let b = harness::start(node(dir_b.path()), clock.clone()).await;
    let mut ca = Client::connect(a.inet_addr().unwrap()).await;
    let mut cb = Client::connect(b.inet_addr().unwrap()).await;
    let ok = "OK secure match=mx.example.com servername=hostname";

    assert_eq!(ca.query("postfix", "example.com").await, ok);
    // A publishes in the background; B asks once it is there.
    let mut raw = redis.raw().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg("e2e:policy:example.com")
            .query_async(&mut raw)
            .await
            .unwrap();
        if exists == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "A never published example.com");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cb.query("postfix", "example.com").await, ok);
    assert_eq!(
        world.dns.queries(&txt_name("example.com"), RecordType::TXT),
        1
    );
    assert_eq!(world.https.requests(&policy_host("example.com")), 1);

    // Redis goes away: cached answers keep coming at once, new domains are resolved
    // by each node alone, within the Redis timeout plus the resolution.
    redis.kill().await;
    world.publish("other.example", "1", &enforce(&["mx.other.example"]));
    let started = Instant::now();
    assert_eq!(ca.query("postfix", "example.com").await, ok);
    assert_eq!(cb.query("postfix", "example.com").await, ok);
    assert_eq!(
        cb.query("postfix", "other.example").await,
        "OK secure match=mx.other.example servername=hostname"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A redis-server speaking only TLS (`rediss://`), with a certificate for
/// 127.0.0.1 from the test CA; killed when dropped.
async fn start_tls_redis(bin: &Path, dir: &Path, ca: &support::TestCa) -> (Child, u16) {
    let (cert, key) = ca.issue_pem("127.0.0.1", support::CertKind::Valid);
    std::fs::write(dir.join("redis.crt"), cert).unwrap();
    std::fs::write(dir.join("redis.key"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.root_pem()).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("redis.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("redis.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"))
        .args(["--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "TLS redis-server did not listen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (child, port)
}

#[tokio::test]
async fn rediss_with_a_private_ca_shares_entries_and_refuses_other_cas() {
    let Some(bin) = redis_server_or_skip("rediss_with_a_private_ca") else {
        return;
    };
    support::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = support::TestCa::new();
    let (_redis, port) = start_tls_redis(&bin, dir.path(), &ca).await;
    let url = format!("rediss://127.0.0.1:{port}/0");

    // The server's certificate chains to redis.ca_file: entries go through TLS.
    let mut trusted = config(url.clone(), "tls:");
    trusted.ca_file = Some(dir.path().join("ca.pem"));
    let shared = RedisShared::connect(&trusted).await.unwrap();
    let entry = policy_entry();
    let (_, ()) = until_ok(Duration::from_secs(10), || {
        shared.put("example.com", &entry, HOUR)
    })
    .await;
    let other_node = RedisShared::connect(&trusted).await.unwrap();
    let (_, got) = until_ok(Duration::from_secs(10), || other_node.get("example.com")).await;
    assert_eq!(got, Some(policy_entry()));

    // Another CA (and so, too, the system's roots): the handshake fails, every
    // call fails within the timeout, and nothing is read from that server.
    std::fs::write(dir.path().join("other.pem"), ca.untrusted_root_pem()).unwrap();
    let mut wrong = config(url.clone(), "tls:");
    wrong.ca_file = Some(dir.path().join("other.pem"));
    let untrusting = RedisShared::connect(&wrong).await.unwrap();
    all_fail_in_time(&untrusting).await;
    let system_roots = RedisShared::connect(&config(url, "tls:")).await.unwrap();
    all_fail_in_time(&system_roots).await;

    // A CA file that cannot be read is a start-up error naming the key.
    let mut missing = config(trusted.url.clone(), "tls:");
    missing.ca_file = Some(dir.path().join("missing.pem"));
    let err = match RedisShared::connect(&missing).await {
        Ok(_) => panic!("connected without its CA file"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("redis.ca_file"), "{err}");
}
