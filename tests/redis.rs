//! The Redis shared cache against a real redis-server: each test starts its
//! own instance on a free loopback port, and some kill, stop or restart it mid-test.
//! Skipped with a visible message where redis-server is not installed; under CI=true
//! a missing redis-server is a failure (.ci/run installs it).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mtastsd::cache::cluster::{ClusterCache, ClusterRecord};
use mtastsd::cache::redis::RedisCluster;
use mtastsd::cache::{CachedPolicy, Clock};
use mtastsd::config::RedisConfig;
use mtastsd::mta_sts::policy::parse_policy;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The daemon's default.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Slack for scheduling on a busy CI machine.
const SLACK: Duration = Duration::from_millis(200);

mod harness;
mod support;

use support::redis::{free_port, redis_server_or_skip, Redis};

fn config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        url,
        prefix: prefix.to_owned(),
        timeout: TIMEOUT,
        ca_file: None,
        key_file: None,
        key: None,
    }
}

fn policy_entry() -> ClusterRecord {
    let body =
        b"version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.example.org\nmax_age: 86400\n";
    ClusterRecord::Policy {
        policy: CachedPolicy::new(
            parse_policy(body).unwrap(),
            "20261101T000000".to_owned(),
            1_790_000_000,
        ),
        checked: 1_790_000_100,
    }
}

fn negative_entry() -> ClusterRecord {
    ClusterRecord::Negative {
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
async fn all_fail_in_time(shared: &RedisCluster) -> Duration {
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let node_a = RedisCluster::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    let node_b = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let node = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let one = RedisCluster::connect(&config(redis.url(), "one:"))
        .await
        .unwrap();
    let two = RedisCluster::connect(&config(redis.url(), "two:"))
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let shared = RedisCluster::connect(&config(format!("redis://127.0.0.1:{port}"), "t:"))
        .await
        .expect("connect succeeds with Redis down");
    let connect_took = started.elapsed();
    assert!(
        connect_took < TIMEOUT + SLACK,
        "connect took {connect_took:?}"
    );
    let fail_took = all_fail_in_time(&shared).await;

    // Redis comes up: the same RedisCluster starts using it, by itself.
    let _redis = Redis::start_on(&bin, port).await;
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let shared = RedisCluster::connect(&config(redis.url(), "t:"))
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
    let shared = RedisCluster::connect(&trusted).await.unwrap();
    let entry = policy_entry();
    let (_, ()) = until_ok(Duration::from_secs(10), || {
        shared.put("example.com", &entry, HOUR)
    })
    .await;
    let other_node = RedisCluster::connect(&trusted).await.unwrap();
    let (_, got) = until_ok(Duration::from_secs(10), || other_node.get("example.com")).await;
    assert_eq!(got, Some(policy_entry()));

    // Another CA (and so, too, the system's roots): the handshake fails, every
    // call fails within the timeout, and nothing is read from that server.
    std::fs::write(dir.path().join("other.pem"), ca.untrusted_root_pem()).unwrap();
    let mut wrong = config(url.clone(), "tls:");
    wrong.ca_file = Some(dir.path().join("other.pem"));
    let untrusting = RedisCluster::connect(&wrong).await.unwrap();
    all_fail_in_time(&untrusting).await;
    let system_roots = RedisCluster::connect(&config(url, "tls:")).await.unwrap();
    all_fail_in_time(&system_roots).await;

    // A CA file that cannot be read is a start-up error naming the key.
    let mut missing = config(trusted.url.clone(), "tls:");
    missing.ca_file = Some(dir.path().join("missing.pem"));
    let err = match RedisCluster::connect(&missing).await {
        Ok(_) => panic!("connected without its CA file"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("redis.ca_file"), "{err}");
}

/// Two daemons on one Redis, each holding example.com's policy (id 1, enforce,
/// mx.example.com), for the SPEC 5.10 tests below.
struct TwoNodes {
    redis: Redis,
    world: support::World,
    clock: std::sync::Arc<harness::TestClock>,
    nodes: Vec<mtastsd::daemon::Daemon>,
    prefix: String,
    _dirs: Vec<tempfile::TempDir>,
}

const OK_MX1: &str = "OK secure match=mx.example.com servername=hostname";
const OK_MX2: &str = "OK secure match=mx2.example.com servername=hostname";

async fn two_nodes(
    bin: &Path,
    prefix: &str,
    redis_config: impl Fn(String) -> RedisConfig,
) -> TwoNodes {
    use harness::{enforce, TestClock};
    let redis = Redis::start(bin).await;
    let world = support::World::start().await;
    world.publish("example.com", "1", &enforce(&["mx.example.com"]));
    let clock = TestClock::new();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut c = harness::config(&world, dir.path());
        let mut r = redis_config(redis.url());
        r.prefix = prefix.to_owned();
        c.redis = Some(r);
        nodes.push(harness::start(c, clock.clone()).await);
        dirs.push(dir);
    }
    let cluster = TwoNodes {
        redis,
        world,
        clock,
        nodes,
        prefix: prefix.to_owned(),
        _dirs: dirs,
    };
    for i in 0..2 {
        assert_eq!(cluster.answer(i, "example.com").await, OK_MX1);
        cluster.wait_published(i, "example.com").await;
    }
    cluster
}

impl TwoNodes {
    async fn answer(&self, node: usize, domain: &str) -> String {
        let mut client = harness::Client::connect(self.nodes[node].inet_addr().unwrap()).await;
        client.query("postfix", domain).await
    }

    /// The policy the node holds: (id, mode, mx).
    async fn held(&self, node: usize, domain: &str) -> Option<(String, String, Vec<String>)> {
        match self.nodes[node].cache().lookup(domain).await {
            mtastsd::cache::Lookup::Policy(p) => Some((
                p.id.clone(),
                p.policy.mode.to_string(),
                p.policy.mx.iter().map(|m| m.to_string()).collect(),
            )),
            mtastsd::cache::Lookup::NoPolicy => None,
        }
    }

    /// A re-check of `domain` on `node`, as a hit past `recheck` starts it, awaited.
    async fn recheck(&self, node: usize, domain: &str) {
        self.clock.advance(61);
        self.nodes[node]
            .cache()
            .join_resolution(domain, false, None)
            .await;
    }

    /// Until the node's record of `domain` is in Redis (publishing is in the background).
    async fn wait_published(&self, _node: usize, domain: &str) {
        let mut raw = self.redis.raw().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(format!("{}policy:{domain}", self.prefix()))
                .query_async(&mut raw)
                .await
                .unwrap();
            if exists == 1 {
                return;
            }
            assert!(Instant::now() < deadline, "{domain} never published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    /// Write `value` as the shared record of `domain`, and a lease held by "another
    /// node" for `lease_ms`, as someone with write access to Redis can.
    async fn poison(&self, domain: &str, value: &[u8], lease_ms: u64) {
        let mut raw = self.redis.raw().await;
        let prefix = self.prefix();
        redis::cmd("SET")
            .arg(format!("{prefix}policy:{domain}"))
            .arg(value)
            .arg("PX")
            .arg(3_600_000)
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        redis::cmd("SET")
            .arg(format!("{prefix}lease:{domain}"))
            .arg("attacker:1")
            .arg("PX")
            .arg(lease_ms)
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
    }

    async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// A shared policy record as a node writes it (the JSON of `ClusterRecord::Policy`).
fn record(mode: &str, mx: &[String], id: &str, fetched: u64) -> serde_json::Value {
    serde_json::json!({
        "kind": "policy",
        "policy": { "mode": mode, "max_age": 86400, "mx": mx },
        "id": id,
        "fetched": fetched,
        "checked": fetched,
    })
}

/// The records of someone who can write to Redis (SPEC 5.10), each as a value.
fn poisoned_records(now: u64) -> Vec<(&'static str, Vec<u8>)> {
    let evil = vec!["mx.attacker.example".to_string()];
    let real = vec!["mx.example.com".to_string()];
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("mx{i}.attacker.example"))
        .collect();
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let mut huge = json(record("enforce", &evil, "1", now));
    huge.resize(huge.len() + (1 << 20), b' ');
    vec![
        (
            "mode none with the real id",
            json(record("none", &[], "1", now)),
        ),
        (
            "other mx with the real id",
            json(record("enforce", &evil, "1", now)),
        ),
        (
            "a fetched time in the future",
            json(record("testing", &evil, "1", now + 50)),
        ),
        ("10 000 mx", json(record("enforce", &many, "1", now))),
        ("a 1 MiB value", huge),
        (
            "a newline in the id",
            json(record("enforce", &real, "1\nmtastsd: forged log line", now)),
        ),
    ]
}

/// SPEC 5.10: a shared record never replaces a usable local policy with a weaker or
/// different one, whether the lease it comes with looks like another node's (30 s)
/// or would silence every re-check (a day); a real change still reaches every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_shared_records_leave_every_node_its_own_policy_spec_5_10() {
    let Some(bin) = redis_server_or_skip("poisoned_shared_records_leave_every_node_its_own_policy")
    else {
        return;
    };
    let cluster = two_nodes(&bin, "poison:", |url| config(url, "")).await;
    let real = Some((
        "1".to_string(),
        "enforce".to_string(),
        vec!["mx.example.com".to_string()],
    ));
    // Every case is tried; the failures are listed together.
    let mut failures = Vec::new();
    for lease_ms in [30_000, 86_400_000] {
        for node in 0..2 {
            for (what, value) in poisoned_records(cluster.clock.now() + 61) {
                cluster.poison("example.com", &value, lease_ms).await;
                cluster.recheck(node, "example.com").await;
                let answer = cluster.answer(node, "example.com").await;
                let held = cluster.held(node, "example.com").await;
                if answer != OK_MX1 || held != real {
                    failures.push(format!(
                        "node {node}, {what}, lease {lease_ms} ms: {answer:?}, holds {held:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A real change (new id, new policy) reaches both nodes, though a day-long lease
    // is still in Redis and one node's record says it first.
    cluster
        .world
        .publish("example.com", "2", &harness::enforce(&["mx2.example.com"]));
    let mut raw = cluster.redis.raw().await;
    let () = redis::cmd("SET")
        .arg("poison:lease:example.com")
        .arg("attacker:1")
        .arg("PX")
        .arg(86_400_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    cluster.recheck(0, "example.com").await;
    assert_eq!(cluster.answer(0, "example.com").await, OK_MX2);
    // Node 1 finds a (short) lease of "another node" and node 0's new record: it
    // re-checks and fetches itself.
    let () = redis::cmd("SET")
        .arg("poison:lease:example.com")
        .arg("node0:1")
        .arg("PX")
        .arg(30_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    let fetches = cluster
        .world
        .https
        .requests(&support::policy_host("example.com"));
    cluster.recheck(1, "example.com").await;
    assert_eq!(cluster.answer(1, "example.com").await, OK_MX2);
    assert_eq!(
        cluster.held(1, "example.com").await.map(|h| h.0),
        Some("2".to_string())
    );
    assert_eq!(
        cluster
            .world
            .https
            .requests(&support::policy_host("example.com")),
        fetches + 1,
        "node 1 fetched the new policy itself"
    );
    cluster.shutdown().await;
}

/// SPEC 5.10: a shared record that fails a fetched policy's validation does not fill
/// a miss either: the node resolves the domain itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_shared_records_never_fill_a_miss_spec_5_10() {
    let Some(bin) = redis_server_or_skip("invalid_shared_records_never_fill_a_miss") else {
        return;
    };
    let cluster = two_nodes(&bin, "miss:", |url| config(url, "")).await;
    let now = cluster.clock.now();
    let mut failures = Vec::new();
    for (what, value) in poisoned_records(now).into_iter().skip(3) {
        let domain = format!("d{}.example", value.len());
        cluster
            .world
            .publish(&domain, "1", &harness::enforce(&[&format!("mx.{domain}")]));
        cluster.poison(&domain, &value, 30_000).await;
        let answer = cluster.answer(1, &domain).await;
        if answer != format!("OK secure match=mx.{domain} servername=hostname") {
            failures.push(format!("{what}: {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    cluster.shutdown().await;
}

/// SPEC 5.10: a lease longer than the ones nodes take (or one without expiry) is no
/// node's: it does not keep this node from doing the work.
#[tokio::test]
async fn a_lease_longer_than_a_nodes_is_ignored() {
    let Some(bin) = redis_server_or_skip("a_lease_longer_than_a_nodes_is_ignored") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let node = RedisCluster::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let lease = Duration::from_secs(30);
    for (domain, px, held) in [
        ("short.example", Some(20_000), true),
        ("exact.example", Some(30_000), true),
        ("day.example", Some(86_400_000), false),
        ("forever.example", None, false),
    ] {
        let mut set = redis::cmd("SET");
        set.arg(format!("t:lease:{domain}")).arg("attacker:1");
        if let Some(px) = px {
            set.arg("PX").arg(px);
        }
        let () = set.query_async(&mut raw).await.unwrap();
        assert_eq!(
            node.lease(domain, lease).await.unwrap(),
            !held,
            "{domain}: lease of {px:?} ms"
        );
    }
}

/// SPEC 5.10: a value longer than any record is not read (at most MAX_RECORD + 1
/// bytes cross the network) and is a miss.
#[tokio::test]
async fn a_value_over_the_record_cap_is_a_miss() {
    let Some(bin) = redis_server_or_skip("a_value_over_the_record_cap_is_a_miss") else {
        return;
    };
    let redis = Redis::start(&bin).await;
    let node = RedisCluster::connect(&config(redis.url(), "t:"))
        .await
        .unwrap();
    node.put("example.com", &policy_entry(), HOUR)
        .await
        .unwrap();
    let mut raw = redis.raw().await;
    let mut value: Vec<u8> = redis::cmd("GET")
        .arg("t:policy:example.com")
        .query_async(&mut raw)
        .await
        .unwrap();
    // Still valid JSON, padded to over the cap.
    value.resize(mtastsd::cache::cluster::MAX_RECORD + 1, b' ');
    let () = redis::cmd("SET")
        .arg("t:policy:example.com")
        .arg(&value)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(node.get("example.com").await.unwrap(), None);
    value.truncate(mtastsd::cache::cluster::MAX_RECORD);
    let () = redis::cmd("SET")
        .arg("t:policy:example.com")
        .arg(&value)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(node.get("example.com").await.unwrap(), Some(policy_entry()));
}

fn keyed(url: String, secret: &str) -> RedisConfig {
    let mut c = config(url, "");
    c.key = Some(mtastsd::config::RedisKey::new(secret.as_bytes()).unwrap());
    c
}

const CLUSTER_KEY: &str = "0123456789abcdef0123456789abcdef";

/// SPEC 5.10 with `[redis] key_file`: a record signed by another node of the
/// cluster is adopted; unsigned records and records signed with another key are
/// ignored (the node resolves the domain itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_only_records_signed_by_the_cluster_are_read() {
    let Some(bin) = redis_server_or_skip("with_a_key_only_records_signed_by_the_cluster_are_read")
    else {
        return;
    };
    let cluster = two_nodes(&bin, "signed:", |url| keyed(url, CLUSTER_KEY)).await;
    let (dns, https) = (&cluster.world.dns, &cluster.world.https);

    // Signed by node 0, read by node 1 without DNS or HTTPS.
    cluster.world.publish(
        "signed.example",
        "1",
        &harness::enforce(&["mx.signed.example"]),
    );
    assert_eq!(
        cluster.answer(0, "signed.example").await,
        "OK secure match=mx.signed.example servername=hostname"
    );
    cluster.wait_published(0, "signed.example").await;
    assert_eq!(
        cluster.answer(1, "signed.example").await,
        "OK secure match=mx.signed.example servername=hostname"
    );
    assert_eq!(
        dns.queries(
            &support::txt_name("signed.example"),
            support::RecordType::TXT
        ),
        1
    );
    assert_eq!(https.requests(&support::policy_host("signed.example")), 1);

    // Unsigned (a node without the key, or anyone who can write to Redis), and
    // signed with another key: ignored, the node fetches the real policy.
    let unkeyed = RedisCluster::connect(&config(cluster.redis.url(), "signed:"))
        .await
        .unwrap();
    let other_key = RedisCluster::connect(&{
        let mut c = keyed(cluster.redis.url(), "fedcba9876543210fedcba9876543210");
        c.prefix = "signed:".into();
        c
    })
    .await
    .unwrap();
    let now = cluster.clock.now();
    for (domain, writer) in [
        ("unsigned.example", &unkeyed),
        ("forged.example", &other_key),
    ] {
        cluster
            .world
            .publish(domain, "1", &harness::enforce(&[&format!("mx.{domain}")]));
        let body = b"version: STSv1\nmode: enforce\nmx: mx.attacker.example\nmax_age: 86400\n";
        let forged = ClusterRecord::Policy {
            policy: CachedPolicy::new(parse_policy(body).unwrap(), "1".into(), now),
            checked: now,
        };
        writer.put(domain, &forged, HOUR).await.unwrap();
        assert_eq!(
            cluster.answer(1, domain).await,
            format!("OK secure match=mx.{domain} servername=hostname"),
            "{domain}"
        );
        assert_eq!(https.requests(&support::policy_host(domain)), 1, "{domain}");
    }
    cluster.shutdown().await;
}
