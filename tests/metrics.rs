//! The Prometheus endpoint: counters move as queries are made (docs/ARCHITECTURE.md: metrics). Its own test
//! binary: the metrics recorder is process-wide.

mod child;
mod harness;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{enforce, Client, TestClock};
use support::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of one sample, e.g. `mtastsd_requests_total{answer="ok"}`.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_cache_and_fetches() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, state.path());
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let daemon = harness::start(config, TestClock::new()).await;
    let metrics = daemon.metrics_addr().expect("metrics listener");

    let (status, body) = get(metrics, "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, _) = get(metrics, "/nothing").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    world.publish("example.com", "1", &enforce(&["mx.example.com"]));
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    c.query("postfix", "example.com").await; // miss, fetch, OK
    c.query("postfix", "example.com").await; // hit, OK
    c.query("postfix", "example.com").await; // hit, OK
    c.query("postfix", "nopolicy.example").await; // miss, NOTFOUND
    c.query("postfix", "nopolicy.example").await; // negative hit, NOTFOUND
    c.query("postfix", "[192.0.2.1]").await; // skipped
    c.send_raw(harness::netstring("nospace").as_bytes()).await;
    assert!(c.reply().await.unwrap().starts_with("PERM"));

    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&body, r#"mtastsd_requests_total{answer="ok"}"#), 3.0);
    assert_eq!(
        sample(&body, r#"mtastsd_requests_total{answer="notfound"}"#),
        2.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_requests_total{answer="skipped"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_requests_total{answer="perm"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_cache_lookups_total{result="hit"}"#),
        2.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_cache_lookups_total{result="miss"}"#),
        2.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_cache_lookups_total{result="negative"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_resolutions_total{kind="miss"}"#),
        2.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_txt_lookups_total{result="record"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_txt_lookups_total{result="no_record"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_policy_fetches_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(sample(&body, r#"mtastsd_policy_changes_total"#), 1.0);
    assert_eq!(sample(&body, r#"mtastsd_policies{mode="enforce"}"#), 1.0);
    assert_eq!(
        sample(&body, r#"mtastsd_cache_entries{kind="policy"}"#),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_cache_entries{kind="negative"}"#),
        1.0
    );
    assert_eq!(sample(&body, r#"mtastsd_connections"#), 1.0);
    assert_eq!(sample(&body, r#"mtastsd_shared_cache_errors_total"#), 0.0);
    assert_eq!(sample(&body, r#"mtastsd_dns_lookup_seconds_count"#), 2.0);
    assert_eq!(sample(&body, r#"mtastsd_policy_fetch_seconds_count"#), 1.0);
    let version = format!(
        r#"mtastsd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&body, &version), 1.0);

    // A failing fetch is counted with its stage.
    world.publish("broken.example", "1", &enforce(&["mx.broken.example"]));
    world.https.set_reply(
        &support::policy_host("broken.example"),
        support::Reply::status(404),
    );
    c.query("postfix", "broken.example").await;
    c.query("postfix", "example.com").await;
    let (_, body) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(
            &body,
            r#"mtastsd_policy_fetches_total{outcome="error",stage="http-status"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&body, r#"mtastsd_cache_lookups_total{result="hit"}"#),
        3.0
    );

    // The Grafana dashboard in contrib/ only uses metrics that exist.
    let dashboard = include_str!("../contrib/grafana-dashboard.json");
    let _: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard is JSON");
    let mut used: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("mtastsd_"))
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 10, "{used:?}");
    for name in used {
        let base = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            body.lines().any(|l| l.starts_with(base)),
            "dashboard uses {name}, which /metrics does not export"
        );
    }
    daemon.shutdown().await;
}

/// A port that was free a moment ago, for a child daemon's `[metrics] listen`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 5 000 idle connections to the metrics port: the daemon holds at most a few of
/// them at once (its file descriptors, /proc/PID/fd, are the count), the socketmap
/// keeps answering meanwhile, and once they are gone a scrape is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_metrics_port_are_capped() {
    const IDLE: usize = 5000;
    // Generous: the cap, the listeners, the store, the resolver's sockets.
    const SLACK: usize = 16 + 8;
    assert!(child::raise_fd_limit() >= (IDLE + 500) as u64);
    let world = World::start().await;
    world.publish("hot.example", "1", &enforce(&["mx.hot.example"]));
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = world.dir().join("metrics.toml");
    std::fs::write(
        &config,
        child::config_text(
            &world,
            state.path(),
            "",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ),
    )
    .unwrap();
    let mut daemon = child::Daemon::spawn(&config).await;
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(daemon.addr).await;
    let hot = "OK secure match=mx.hot.example servername=hostname";
    assert_eq!(c.query("postfix", "hot.example").await, hot);
    let (status, _) = get(metrics, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let fds_before = daemon.fds();

    let mut idle = Vec::with_capacity(IDLE);
    let mut fds_max = fds_before;
    while idle.len() < IDLE {
        let batch: Vec<_> = (0..500)
            .map(|_| tokio::net::TcpStream::connect(metrics))
            .collect();
        for s in futures_util::future::join_all(batch).await {
            idle.push(s.expect("connect"));
        }
        fds_max = fds_max.max(daemon.fds());
        assert_eq!(c.query("postfix", "hot.example").await, hot);
    }
    for _ in 0..20 {
        tokio::task::yield_now().await;
        fds_max = fds_max.max(daemon.fds());
        assert_eq!(c.query("postfix", "hot.example").await, hot);
    }
    println!(
        "FIGURE metrics flood: {IDLE} idle connections; daemon fds {fds_before} -> max {fds_max}"
    );
    assert!(
        fds_max <= fds_before + SLACK,
        "the daemon held {fds_max} fds (from {fds_before}) for {IDLE} idle metrics connections"
    );
    // The first, held within the cap, is closed by the read timeout. (Some of the
    // later ones never reached the daemon: past the listen queue, the kernel
    // completes the handshake for the client only.)
    let mut first = idle.swap_remove(0);
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), first.read_to_end(&mut buf))
        .await
        .expect("an idle metrics connection is closed by the daemon")
        .unwrap();
    drop(idle);
    // The slots come back: a scrape is served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = tokio::net::TcpStream::connect(metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text).await;
        if text.starts_with("HTTP/1.1 200 OK") {
            assert!(text.contains("mtastsd_requests_total"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scrape served after the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).await.success());
}
