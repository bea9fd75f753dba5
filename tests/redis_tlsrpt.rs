//! TLS-RPT in a cluster (SPEC 8.2 and 8.4 with SPEC 5.10's Redis; the design is in
//! src/tlsrpt/cluster.rs), on real parts: two nodes, each a real SQLite store and a
//! report sender, share a real redis-server of the test's own and deliver to the
//! in-process HTTPS server. Times of day are passed in (unix seconds); Redis runs on
//! its own clock. The last test runs two real `mtastsd serve` processes on the real
//! clock instead. Skipped with a visible message where redis-server is not
//! installed; under CI=true a missing redis-server is a failure.

mod child;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtastsd::cache::redis::RedisCluster;
use mtastsd::config::{RedisConfig, RedisKey};
use mtastsd::tlsrpt::aggregate::Day;
use mtastsd::tlsrpt::cluster::{Heartbeat, TlsrptCluster, COMMIT_SLACK, PUSH_INTERVAL};
use mtastsd::tlsrpt::deliver::https_client;
use mtastsd::tlsrpt::sender::{Sender, Settings, ROUND_INTERVAL, SETTLE_SECS};
use mtastsd::tlsrpt::store::TlsrptStore;
use support::redis::{redis_server_or_skip, Redis};
use support::tlsrpt::{counts, datagrams, gunzip};
use support::{CertKind, Reply, World};
use tokio::process::Command;

const HOST: &str = "localhost";
const DOMAIN: &str = "rpt.example";
const PREFIX: &str = "t:";

fn redis_config(url: String, key: Option<&str>) -> RedisConfig {
    RedisConfig {
        url,
        prefix: PREFIX.to_owned(),
        timeout: Duration::from_millis(250),
        ca_file: None,
        key_file: None,
        key: key.map(|k| RedisKey::new(k.as_bytes()).unwrap()),
    }
}

fn settings() -> Settings {
    Settings {
        send: true,
        organization_name: "Example Mail".into(),
        contact_info: "tlsrpt@mail.example".into(),
        submitter: "mail.example".into(),
        from: "tlsrpt-noreply@mail.example".into(),
        sendmail: vec!["/bin/false".into()],
        // Due at once: the test sees the delivery in the round that builds.
        delay: Duration::ZERO,
        max_details: 100,
        keep_days: 14,
        http_timeout: Duration::from_secs(10),
        sendmail_timeout: Duration::from_secs(10),
    }
}

/// One node: its state directory, and a sender joined to the cluster.
struct Node {
    dir: tempfile::TempDir,
    sender: Sender,
}

struct Cluster {
    world: World,
    redis: Redis,
    day: Day,
    key: Option<&'static str>,
}

impl Cluster {
    async fn start(test: &str, key: Option<&'static str>) -> Option<Cluster> {
        let bin = redis_server_or_skip(test)?;
        let world = World::start().await;
        world.https.set(HOST, CertKind::Valid, Reply::status(200));
        Some(Cluster {
            world,
            redis: Redis::start(&bin).await,
            day: Day::parse("2026-11-30").unwrap(),
            key,
        })
    }

    fn url(&self) -> String {
        format!("https://{HOST}:{}/v1/report", self.world.https_port())
    }

    async fn shared(&self) -> Arc<dyn TlsrptCluster> {
        Arc::new(
            RedisCluster::connect(&redis_config(self.redis.url(), self.key))
                .await
                .unwrap(),
        )
    }

    async fn node(&self) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let sender = self.sender(dir.path()).await;
        Node { dir, sender }
    }

    /// A sender on `dir`'s store, joined: what a (re)started daemon runs.
    async fn sender(&self, dir: &Path) -> Sender {
        let roots = mtastsd::resolver::https::trust_roots(Some(self.world.ca_file())).unwrap();
        let mut sender = Sender::open(
            &dir.join("tlsrpt.sqlite"),
            https_client(roots).unwrap(),
            settings(),
        )
        .unwrap();
        sender.join(self.shared().await).unwrap();
        sender
    }

    /// What the node's collector does: commit `ok` successful and `failed` failed
    /// sessions to DOMAIN on the day.
    fn collect(&self, node: &Node, ok: usize, failed: usize) {
        TlsrptStore::open(&node.dir.path().join("tlsrpt.sqlite"))
            .unwrap()
            .add(&counts(
                self.day,
                &datagrams(DOMAIN, &self.url(), ok, failed),
            ))
            .unwrap();
    }

    /// During the day.
    fn noon(&self) -> i64 {
        self.day.start_unix() + 43_200
    }

    /// After the day, once every live node's final push can have happened.
    fn after(&self) -> i64 {
        self.day.end_unix() + 1 + COMMIT_SLACK.max(SETTLE_SECS)
    }

    /// The reports POSTed so far, as (successful, failed) totals.
    fn posted(&self) -> (usize, Option<(u64, u64)>) {
        let n = self.world.https.requests(HOST);
        let totals = self.world.https.last_body(HOST).map(|gz| {
            let report: serde_json::Value = serde_json::from_str(&gunzip(&gz)).unwrap();
            let sum = |field: &str| -> u64 {
                report["policies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["summary"][field].as_u64().unwrap())
                    .sum()
            };
            (
                sum("total-successful-session-count"),
                sum("total-failure-session-count"),
            )
        });
        (n, totals)
    }
}

/// Push until a push reaches Redis (the node retries Redis a second after a
/// failure); the values pushed.
async fn push_until_ok(node: &mut Node, now: i64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = node.sender.node_id().unwrap().to_owned();
        let n = node.sender.push(now).await.unwrap();
        assert_eq!(node.sender.node_id().unwrap(), before);
        if n > 0 {
            return n;
        }
        assert!(Instant::now() < deadline, "no push reached Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SPEC 8.4 in a cluster: the counts of both nodes in ONE report, sent once; the
/// report waits until every node pushed the ended day; the other node never builds
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_counts_make_one_report_sent_once_spec_8_4() {
    let Some(c) = Cluster::start("two_nodes_counts_make_one_report_sent_once_spec_8_4", None).await
    else {
        return;
    };
    let (mut a, mut b) = (c.node().await, c.node().await);
    assert_ne!(a.sender.node_id(), b.sender.node_id());
    c.collect(&a, 7, 3);
    c.collect(&b, 5, 1);
    assert_eq!(a.sender.push(c.noon()).await.unwrap(), 1);
    assert_eq!(b.sender.push(c.noon()).await.unwrap(), 1);
    // Pushed again unchanged: nothing new to push (and nothing doubled).
    assert_eq!(a.sender.push(c.noon() + 10).await.unwrap(), 0);

    // The day ended, but B has not said it pushed the whole day: A waits.
    assert_eq!(a.sender.push(c.after()).await.unwrap(), 0);
    let r = a.sender.round(c.after()).await;
    assert_eq!((r.planned, r.sent), (0, 0), "{r:?}");
    assert_eq!(c.posted().0, 0);

    // B's last counts of the day come in, then its push after the day.
    c.collect(&b, 1, 0);
    assert_eq!(b.sender.push(c.after()).await.unwrap(), 1);
    let r = a.sender.round(c.after() + 60).await;
    let s = b.sender.round(c.after() + 60).await;
    assert_eq!(r.planned + s.planned, 1, "{r:?} {s:?}");
    assert_eq!(r.sent + s.sent, 1, "{r:?} {s:?}");
    assert_eq!(c.posted(), (1, Some((7 + 5 + 1, 3 + 1))));

    // Never again, on either node; the node that did not build it knows it was
    // reported elsewhere.
    for now in [c.after() + 120, c.after() + 86_400] {
        let r = a.sender.round(now).await;
        let s = b.sender.round(now).await;
        assert_eq!((r.planned, r.sent, s.planned, s.sent), (0, 0, 0, 0));
    }
    assert_eq!(c.posted().0, 1);
    let (builder, other) = if a.sender.store().report(c.day, DOMAIN).unwrap().is_some() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let id = builder
        .sender
        .store()
        .report(c.day, DOMAIN)
        .unwrap()
        .unwrap()
        .report_id;
    assert_eq!(
        other
            .sender
            .store()
            .reported_elsewhere(c.day, DOMAIN)
            .unwrap(),
        Some(id)
    );
    assert!(other
        .sender
        .store()
        .report(c.day, DOMAIN)
        .unwrap()
        .is_none());
}

/// Redis stops while B collects, and comes back empty (no persistence): B's counts
/// wait in its store, nothing is sent meanwhile (never a partial report), and once
/// Redis is back every count reaches the one report exactly once, also across a
/// restart of B (its node id is kept in its store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_kept_while_redis_is_down_reach_the_report_once_spec_8_2() {
    let Some(mut c) = Cluster::start(
        "counts_kept_while_redis_is_down_reach_the_report_once_spec_8_2",
        None,
    )
    .await
    else {
        return;
    };
    let (mut a, mut b) = (c.node().await, c.node().await);
    c.collect(&a, 4, 0);
    c.collect(&b, 2, 0);
    a.sender.push(c.noon()).await.unwrap();
    b.sender.push(c.noon()).await.unwrap();

    c.redis.kill().await;
    c.collect(&b, 3, 1);
    assert_eq!(
        b.sender.push(c.noon() + 10).await.unwrap(),
        0,
        "Redis is down"
    );
    assert_eq!(a.sender.push(c.after()).await.unwrap(), 0, "Redis is down");
    for n in [&mut a, &mut b] {
        let r = n.sender.round(c.after()).await;
        assert_eq!((r.planned, r.sent), (0, 0), "{r:?}");
    }
    assert_eq!(c.posted().0, 0, "no report while Redis is down");

    // B restarts (a new sender on its store), then Redis comes back with nothing.
    let id_b = b.sender.node_id().unwrap().to_owned();
    drop(b.sender);
    b.sender = c.sender(b.dir.path()).await;
    assert_eq!(
        b.sender.node_id(),
        Some(id_b.as_str()),
        "the node id is kept"
    );
    c.redis.restart().await;
    assert_eq!(push_until_ok(&mut b, c.after()).await, 1);
    // A repushes its day too (Redis lost it): it sees its heartbeat is gone.
    assert_eq!(push_until_ok(&mut a, c.after()).await, 1);
    // And a push by the restarted B again after that doubles nothing.
    b.sender.push(c.after() + 5).await.unwrap();

    let r = a.sender.round(c.after() + 60).await;
    let s = b.sender.round(c.after() + 60).await;
    assert_eq!(r.sent + s.sent, 1, "{r:?} {s:?}");
    assert_eq!(c.posted(), (1, Some((4 + 2 + 3, 1))));
    let r = a.sender.round(c.after() + 120).await;
    let s = b.sender.round(c.after() + 120).await;
    assert_eq!(r.sent + s.sent, 0);
    assert_eq!(c.posted().0, 1);
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// SPEC 5.10's checks on what is read: with `[redis] key_file`, a value or a
/// heartbeat that no node signed, a value moved from another domain, and garbage
/// are ignored; the report holds the two nodes' counts only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_poisoned_values_are_ignored_spec_5_10() {
    let Some(c) = Cluster::start(
        "unsigned_and_poisoned_values_are_ignored_spec_5_10",
        Some(KEY),
    )
    .await
    else {
        return;
    };
    let (mut a, mut b) = (c.node().await, c.node().await);
    c.collect(&a, 1, 1);
    c.collect(&b, 2, 0);
    // A pushes counts of another domain too, to be copied under DOMAIN's key.
    TlsrptStore::open(&a.dir.path().join("tlsrpt.sqlite"))
        .unwrap()
        .add(&counts(c.day, &datagrams("other.example", &c.url(), 50, 0)))
        .unwrap();
    a.sender.push(c.after()).await.unwrap();
    b.sender.push(c.after()).await.unwrap();

    let day = c.day.to_string();
    let key = format!("{PREFIX}tlsrpt:{day}:{DOMAIN}");
    // Unsigned counts, in the format a node writes.
    let forged = r#"{"v":1,"entries":[{"record":"v=TLSRPTv1; rua=mailto:x@evil.example","type":"sts","policy_domain":"rpt.example","strings":[],"mx":[],"ok":1000,"failed":0,"details":[]}]}"#;
    c.redis.command(&["HSET", &key, "evil/1", forged]).await;
    c.redis
        .command(&["HSET", &key, "evil/2", "hmac-sha256:00\n{}"])
        .await;
    // A's signed value of another domain, copied.
    let mut conn = redis::Client::open(c.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let a_id = a.sender.node_id().unwrap().to_owned();
    let copied: Vec<u8> = redis::cmd("HGET")
        .arg(format!("{PREFIX}tlsrpt:{day}:other.example"))
        .arg(&a_id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(copied.starts_with(b"hmac-sha256:"));
    redis::cmd("HSET")
        .arg(&key)
        .arg("evil/3")
        .arg(copied)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    // An unsigned heartbeat of a node that would hold the report back.
    let late = format!(r#"{{"seen":{},"through":0}}"#, c.after());
    c.redis
        .command(&["HSET", &format!("{PREFIX}tlsrpt:nodes"), "evil/4", &late])
        .await;

    let r = a.sender.round(c.after() + 60).await;
    let s = b.sender.round(c.after() + 60).await;
    // DOMAIN's report from both nodes; other.example's from A alone.
    assert_eq!(r.sent + s.sent, 2, "{r:?} {s:?}");
    let stored = [&a, &b]
        .iter()
        .filter_map(|n| n.sender.store().report(c.day, DOMAIN).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(stored.len(), 1, "one report of {DOMAIN}");
    let rpt: Vec<serde_json::Value> = vec![serde_json::from_str(&stored[0].json).unwrap()];
    let summary = &rpt[0]["policies"][0]["summary"];
    assert_eq!(summary["total-successful-session-count"], 1 + 2);
    assert_eq!(summary["total-failure-session-count"], 1);
}

/// The lease and the claim: a node that does not hold the lease builds nothing; a
/// report another node claimed is never built here, and only one of two claims
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_lease_or_the_claim_does_not_send_spec_8_4() {
    let Some(c) = Cluster::start(
        "a_node_without_the_lease_or_the_claim_does_not_send_spec_8_4",
        None,
    )
    .await
    else {
        return;
    };
    let mut a = c.node().await;
    c.collect(&a, 3, 0);
    a.sender.push(c.after()).await.unwrap();
    let day = c.day.to_string();
    c.redis
        .command(&[
            "SET",
            &format!("{PREFIX}tlsrpt:lease:{day}:{DOMAIN}"),
            "other/1",
            "PX",
            "3600000",
        ])
        .await;
    let r = a.sender.round(c.after() + 60).await;
    assert_eq!((r.planned, r.sent), (0, 0), "{r:?}");
    assert!(a
        .sender
        .store()
        .reported_elsewhere(c.day, DOMAIN)
        .unwrap()
        .is_none());

    // The holder claims the report: A records it as reported elsewhere, for good.
    let shared = c.shared().await;
    assert_eq!(
        shared
            .claim(c.day, DOMAIN, "20261130.00000000000000aa")
            .await
            .unwrap(),
        "20261130.00000000000000aa"
    );
    assert_eq!(
        shared
            .claim(c.day, DOMAIN, "20261130.00000000000000bb")
            .await
            .unwrap(),
        "20261130.00000000000000aa",
        "a second claim loses"
    );
    c.redis
        .command(&["DEL", &format!("{PREFIX}tlsrpt:lease:{day}:{DOMAIN}")])
        .await;
    let r = a.sender.round(c.after() + 120).await;
    assert_eq!((r.planned, r.sent), (0, 0), "{r:?}");
    assert_eq!(
        a.sender
            .store()
            .reported_elsewhere(c.day, DOMAIN)
            .unwrap()
            .as_deref(),
        Some("20261130.00000000000000aa")
    );
    assert_eq!(c.posted().0, 0);
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `mtastsd tlsrpt show --day DAY DOMAIN --json` on a node's configuration.
async fn show(config: &Path, day: Day) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mtastsd"))
        .args([
            "tlsrpt",
            "show",
            DOMAIN,
            "--json",
            "--day",
            &day.to_string(),
        ])
        .arg("-c")
        .arg(config)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Poll `done` every 100 ms until it holds, at most `within`; `what` and the
/// daemons' logs otherwise.
async fn until(
    within: Duration,
    what: &str,
    nodes: &[&child::Daemon],
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<Vec<String>> = nodes.iter().map(|d| d.log()).collect();
            panic!("{what} within {within:?}; the nodes logged:\n{logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node's configuration file in `dir` (its state directory): the cluster's
/// Redis, and `[tlsrpt]` sending (`send`) or collecting only.
fn node_config(c: &Cluster, dir: &Path, send: bool) -> PathBuf {
    let text = child::config_text(
        &c.world,
        dir,
        "",
        &format!(
            "[redis]\nurl = \"{url}\"\nprefix = \"{PREFIX}\"\n\
             [tlsrpt]\nsocket = \"{socket}\"\nsend = {send}\ndelay = \"1s\"\n\
             organization_name = \"Example Mail\"\ncontact_info = \"tlsrpt@mail.example\"\n",
            url = c.redis.url(),
            socket = dir.join("tlsrpt").display(),
        ),
    )
    .replace("[cache]\n", "[cache]\nbackend = \"redis\"\n");
    let config = dir.join("mtastsd.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// SPEC 8.2 and 8.4 on the real binary: two `mtastsd serve` nodes with
/// `cache.backend = "redis"`, each with counts of the day that ended two days ago
/// in its own store (its report due at once, still inside the days the sender
/// plans), make ONE report holding both nodes' counts, POSTed once: the daemon's
/// start, the clustered sender thread, push, heartbeat, lease, merge, claim,
/// delivery. B starts collecting only (a `send = false` node still pushes), so
/// that its counts are in Redis before A plans: a node that plans before another
/// ever pushed cannot wait for it. B is then restarted with `send = true`, and
/// records the report as sent elsewhere instead of building its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_send_one_report_of_both_nodes_counts_spec_8_4() {
    let Some(c) = Cluster::start(
        "two_daemons_send_one_report_of_both_nodes_counts_spec_8_4",
        None,
    )
    .await
    else {
        return;
    };
    let started = Instant::now();
    let day = Day(Day::from_unix(unix_now()).0 - 2);
    let shared = c.shared().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ids = Vec::new();
    for (dir, (ok, failed)) in [(&dir_a, (7, 2)), (&dir_b, (5, 1))] {
        let mut store = TlsrptStore::open(&dir.path().join("tlsrpt.sqlite")).unwrap();
        store
            .add(&counts(day, &datagrams(DOMAIN, &c.url(), ok, failed)))
            .unwrap();
        // Made now, kept by the daemon: the test knows whose heartbeat is whose.
        ids.push(store.node_id().unwrap());
    }

    let config_b = node_config(&c, dir_b.path(), false);
    let mut b = child::Daemon::spawn(&config_b).await;
    // B's heartbeat says it pushed every day through the one before today, the
    // report's day with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let beats = shared.heartbeats().await.unwrap();
        let through = beats
            .iter()
            .filter(|(node, _)| *node == ids[1])
            .map(|(_, raw)| serde_json::from_slice::<Heartbeat>(raw).unwrap().through)
            .next();
        if through.is_some_and(|t| t >= day.0) {
            break;
        }
        assert!(Instant::now() < deadline, "B never pushed: {:#?}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let config_a = node_config(&c, dir_a.path(), true);
    let a = child::Daemon::spawn(&config_a).await;
    // One POST, with every count of both nodes.
    until(
        Duration::from_secs(60),
        "no report POSTed",
        &[&a, &b],
        || c.posted().0 > 0,
    )
    .await;
    assert_eq!(
        c.posted(),
        (1, Some((7 + 5, 2 + 1))),
        "{:#?}",
        (a.log(), b.log())
    );
    let posted_after = started.elapsed();
    let (store_a, store_b) = (
        TlsrptStore::open_read_only(&dir_a.path().join("tlsrpt.sqlite")).unwrap(),
        TlsrptStore::open_read_only(&dir_b.path().join("tlsrpt.sqlite")).unwrap(),
    );
    let id = store_a.report(day, DOMAIN).unwrap().unwrap().report_id;

    // B sends too from now on: its first round finds A's claim, and it builds
    // nothing.
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(30)).await.success());
    let config_b = node_config(&c, dir_b.path(), true);
    let b = child::Daemon::spawn(&config_b).await;
    until(
        2 * ROUND_INTERVAL,
        "B did not record the report as sent elsewhere",
        &[&a, &b],
        || store_b.reported_elsewhere(day, DOMAIN).unwrap().as_deref() == Some(id.as_str()),
    )
    .await;
    // A push interval more: each node pushed again (B's restart pushed its day
    // anew, under the same node id): still the one report.
    tokio::time::sleep(PUSH_INTERVAL + Duration::from_secs(1)).await;
    assert_eq!(c.posted().0, 1, "{:#?}", (a.log(), b.log()));
    assert!(store_b.report(day, DOMAIN).unwrap().is_none());
    let beats = shared.heartbeats().await.unwrap();
    let mut nodes: Vec<&String> = beats.iter().map(|(n, _)| n).collect();
    nodes.sort();
    let mut want: Vec<&String> = ids.iter().collect();
    want.sort();
    assert_eq!(nodes, want, "two nodes, each under the id of its store");

    // `tlsrpt show`: each node's own counts; A's report, sent (B's show has no
    // view of a report sent elsewhere).
    let shown_a = show(&config_a, day).await;
    let shown_b = show(&config_b, day).await;
    for (v, (ok, failed)) in [(&shown_a, (7, 2)), (&shown_b, (5, 1))] {
        let p = &v["domains"][0]["policies"][0];
        assert_eq!(
            (p["successful"].as_u64(), p["failed"].as_u64()),
            (Some(ok), Some(failed)),
            "{v}"
        );
    }
    let report = &shown_a["domains"][0]["report"];
    assert_eq!(report["report-id"], id.as_str(), "{report}");
    let deliveries = report["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{report}");
    assert_eq!(deliveries[0]["state"], "sent", "{report}");
    assert_eq!(deliveries[0]["uri"], c.url().as_str(), "{report}");
    assert!(shown_b["domains"][0]["report"].is_null(), "{shown_b}");
    println!(
        "FIGURE cluster of two daemons: report POSTed {posted_after:?} after the start, test {:?}",
        started.elapsed()
    );
}
