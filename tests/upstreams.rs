//! Hostile or failing upstreams (SPEC 3.4–3.6, 5.3, 5.6; docs/RELIABILITY.md), on the real `mtastsd serve`
//! binary (its log and its memory are part of what is checked). Each failure must
//! be bounded in time and memory, leave a clear log line with the domain and the
//! stage, and never touch a cached policy (SPEC 3.5, 2.6, 5.3).

mod child;
mod harness;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use harness::{enforce, Client};
use support::{policy_host, txt_name, RecordType, Reply, ResponseCode, World};

const NOTFOUND: &str = "NOTFOUND ";

fn ok(mx: &str) -> String {
    format!("OK secure match={mx} servername=hostname")
}

/// A daemon against `world`, re-checking cached domains every second.
async fn start(world: &World, state: &std::path::Path, extra_dns: &str) -> child::Daemon {
    let config = world.dir().join("upstreams.toml");
    let text = child::config_text(world, state, "", "")
        .replace("[cache]\n", "[cache]\nrecheck = \"1s\"\n")
        .replace("[dns]\n", &format!("[dns]\n{extra_dns}"));
    std::fs::write(&config, text).unwrap();
    child::Daemon::spawn(&config).await
}

/// Query once; (reply, time taken).
async fn timed(addr: std::net::SocketAddr, domain: &str) -> (String, Duration) {
    let mut c = Client::connect(addr).await;
    let t = Instant::now();
    let r = c.query("postfix", domain).await;
    (r, t.elapsed())
}

/// Policy servers that trickle, send headers without end, die mid-body, reset, or
/// send a gigabyte: for a new domain, `NOTFOUND ` within the fetch deadline (2 s
/// here) and a `stage=https` (or `stage=size`) log line naming it; for a cached domain whose TXT id
/// changed, the refetch fails the same way and the cached policy keeps being
/// answered. Memory stays flat throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policy_servers_are_bounded_and_never_evict_spec_3_4_3_5_5_3() {
    let world = World::start().await;
    let good = |d: &str| enforce(&[&format!("mx.{d}")]);
    let kinds: Vec<(&str, Reply)> = vec![
        (
            "trickle",
            Reply::Drip {
                interval: Duration::from_millis(200),
                body: good("x.example"),
            },
        ),
        (
            "headers",
            Reply::EndlessHeaders {
                interval: Duration::from_micros(100),
            },
        ),
        (
            "cutoff",
            Reply::CutOff {
                declared: 1000,
                body: "version: STSv1\nmode: enf".into(),
            },
        ),
        ("reset", Reply::Reset),
        (
            "huge",
            Reply::Huge {
                declared_len: None,
                actual_len: 1 << 30,
            },
        ),
    ];
    for (k, _) in &kinds {
        let cached = format!("cached-{k}.example");
        world.publish(&cached, "1", &good(&cached));
    }
    let state = tempfile::tempdir().unwrap();
    let mut daemon = start(&world, state.path(), "").await;
    let addr = daemon.addr;
    for (k, _) in &kinds {
        let d = format!("cached-{k}.example");
        assert_eq!(timed(addr, &d).await.0, ok(&format!("mx.{d}")));
    }
    let rss_before = daemon.rss_kib();

    // The cached domains: new id, hostile server.
    for (k, reply) in &kinds {
        let d = format!("cached-{k}.example");
        world.publish_txt(&d, "2");
        world.https.set_reply(&policy_host(&d), reply.clone());
    }
    // New domains behind the same servers.
    for (k, reply) in &kinds {
        let d = format!("fresh-{k}.example");
        world.publish(&d, "1", &good(&d));
        world.https.set_reply(&policy_host(&d), reply.clone());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // past recheck
    let mut figures = HashMap::new();
    let queries = kinds.iter().map(|(k, _)| {
        let (fresh, cached) = (format!("fresh-{k}.example"), format!("cached-{k}.example"));
        async move {
            // The cached domain answers at once (and starts the re-check).
            let (r, t) = timed(addr, &cached).await;
            assert_eq!(r, ok(&format!("mx.{cached}")), "{cached}");
            assert!(t < Duration::from_millis(500), "{cached}: {t:?}");
            let (r, t) = timed(addr, &fresh).await;
            (k.to_string(), r, t)
        }
    });
    let mut rss_max = rss_before;
    let all = futures_util::future::join_all(queries);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            r = &mut all => break r,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                rss_max = rss_max.max(daemon.rss_kib());
            }
        }
    };
    for (k, reply, took) in results {
        assert_eq!(reply, NOTFOUND, "fresh-{k}");
        // The fetch deadline is 2 s; the answer may wait at most 5 s (DNS and fetch).
        assert!(took < Duration::from_secs(4), "fresh-{k}: {took:?}");
        figures.insert(k, took);
    }
    for (k, _) in &kinds {
        // stage=https, or stage=size for the gigabyte (SPEC 3.4).
        let fresh = format!("fresh-{k}.example: stage=");
        let line = daemon
            .wait_for_log(|l| l.contains(&fresh), Duration::from_secs(5))
            .await;
        assert!(
            line.is_some(),
            "no log line for fresh-{k}: {:#?}",
            daemon.log()
        );
        let cached = format!("cached-{k}.example: stage=");
        let line = daemon
            .wait_for_log(
                |l| l.contains(&cached) && l.contains("keeping the cached enforce policy (id 1)"),
                Duration::from_secs(10),
            )
            .await;
        assert!(line.is_some(), "cached-{k}: {:#?}", daemon.log());
        // SPEC 5.3: the cached policy is untouched.
        let d = format!("cached-{k}.example");
        assert_eq!(timed(addr, &d).await.0, ok(&format!("mx.{d}")));
    }
    rss_max = rss_max.max(daemon.rss_kib());
    let lines: Vec<String> = daemon
        .log()
        .into_iter()
        .filter(|l| l.contains("fresh-"))
        .collect();
    println!(
        "FIGURE hostile https: NOTFOUND after {figures:?}; RSS {rss_before} KiB -> max \
         {rss_max} KiB; log lines: {lines:#?}"
    );
    assert!(
        rss_max < rss_before + 32 * 1024,
        "RSS {rss_before} KiB -> {rss_max} KiB"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).await.success());
}

/// A DNS server that answers every query with garbage, over UDP and TCP: random
/// bytes, the query's id then junk, a reply header with nothing behind it.
async fn garbage_dns() -> std::net::SocketAddr {
    // One port for both, as for a real server: retry until TCP gets the UDP port.
    let mut bound = None;
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            bound = Some((udp, tcp, addr));
            break;
        }
    }
    let (udp, tcp, addr) = bound.expect("a port free for UDP and TCP");
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let mut n = 0u64;
        while let Ok((len, from)) = udp.recv_from(&mut buf).await {
            n += 1;
            let junk: Vec<u8> = (0..40).map(|i| (n * 31 + i * 17) as u8).collect();
            let reply = match n % 3 {
                0 => junk,
                1 => [&buf[..2.min(len)], &junk[..]].concat(),
                // id, QR + RD, RCODE 0, QDCOUNT 1 ANCOUNT 5: counts with no records.
                _ => [
                    &buf[..2.min(len)],
                    &[0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0][..],
                ]
                .concat(),
            };
            let _ = udp.send_to(&reply, from).await;
        }
    });
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(&[0, 200]).await;
                let _ = s.write_all(&[0x5a; 50]).await;
            });
        }
    });
    addr
}

/// DNS that is slow, truncates, flaps, or speaks garbage: the TC bit makes the
/// resolver retry over TCP and get the record (SPEC 2.1); slow and garbage answers
/// are DNS errors (SPEC 2.6), bounded by the DNS timeout, logged with `stage=dns`,
/// and never evict a cached policy (SPEC 5.3); flapping never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_dns_is_bounded_and_never_evicts_spec_2_1_2_6_5_3() {
    let world = World::start().await;
    // Truncation: two 1 KB records ahead of the STS record overflow a UDP answer.
    world.publish("big.example", "1", &enforce(&["mx.big.example"]));
    let filler = |c: char| vec![c.to_string().repeat(250); 4];
    world.dns.set_txt(
        &txt_name("big.example"),
        vec![filler('a'), filler('b'), vec!["v=STSv1; id=1".to_string()]],
    );
    for d in ["slow.example", "cachedslow.example", "flap.example"] {
        world.publish(d, "1", &enforce(&[&format!("mx.{d}")]));
    }
    let state = tempfile::tempdir().unwrap();
    let mut daemon = start(&world, state.path(), "").await;
    let addr = daemon.addr;

    assert_eq!(timed(addr, "big.example").await.0, ok("mx.big.example"));
    let tries = world.dns.queries(&txt_name("big.example"), RecordType::TXT);
    assert!(
        tries >= 2,
        "answered without the TCP retry ({tries} queries)"
    );
    for d in ["cachedslow.example", "flap.example"] {
        assert_eq!(timed(addr, d).await.0, ok(&format!("mx.{d}")));
    }

    // Slow: 3 s answers against a 1 s timeout.
    world
        .dns
        .set_delay(&txt_name("slow.example"), Duration::from_secs(3));
    world
        .dns
        .set_delay(&txt_name("cachedslow.example"), Duration::from_secs(3));
    world.publish_txt("cachedslow.example", "2");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past recheck
    let (r, slow_took) = timed(addr, "slow.example").await;
    assert_eq!(r, NOTFOUND);
    assert!(slow_took < Duration::from_secs(5), "{slow_took:?}");
    let (r, t) = timed(addr, "cachedslow.example").await;
    assert_eq!(r, ok("mx.cachedslow.example"));
    assert!(t < Duration::from_millis(500), "{t:?}");
    assert!(daemon
        .wait_for_log(
            |l| l.contains("slow.example: stage=dns"),
            Duration::from_secs(5)
        )
        .await
        .is_some());

    // Flapping: SERVFAIL on and off every 20 ms for 3 s, with id bumps, while the
    // cached domain is asked for every 10 ms.
    let flapper = {
        let dns = world.dns.clone();
        tokio::spawn(async move {
            let name = txt_name("flap.example");
            for i in 0..150 {
                if i % 2 == 0 {
                    dns.set_failure(&name, ResponseCode::ServFail);
                } else {
                    dns.clear_failure(&name);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            dns.clear_failure(&name);
        })
    };
    let mut flap_answers = 0;
    let mut c = Client::connect(addr).await;
    while !flapper.is_finished() {
        assert_eq!(
            c.query("postfix", "flap.example").await,
            ok("mx.flap.example")
        );
        flap_answers += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Afterwards a real change still gets through (SPEC 5.2).
    world.publish("flap.example", "2", &enforce(&["mx2.flap.example"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.query("postfix", "flap.example").await;
        if r == ok("mx2.flap.example") {
            break;
        }
        assert_eq!(r, ok("mx.flap.example"));
        assert!(Instant::now() < deadline, "new policy never fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Garbage: point the daemon at a server that only sends junk (SIGHUP reload).
    let junk = garbage_dns().await;
    let config = world.dir().join("upstreams.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&world.dns_addr().to_string(), &junk.to_string());
    std::fs::write(&config, text).unwrap();
    let from = daemon.log_len();
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_log_from(
            from,
            |l| l.contains("configuration reloaded"),
            Duration::from_secs(5),
        )
        .await
        .expect("reloaded");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past recheck
    let (r, garbage_took) = timed(addr, "new.example").await;
    assert_eq!(r, NOTFOUND);
    assert!(garbage_took < Duration::from_secs(5), "{garbage_took:?}");
    for (d, mx) in [
        ("big.example", "mx.big.example"),
        ("flap.example", "mx2.flap.example"),
        ("cachedslow.example", "mx.cachedslow.example"),
    ] {
        // Twice: the first starts the failing re-check, the second sees its result.
        assert_eq!(timed(addr, d).await.0, ok(mx), "{d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(timed(addr, d).await.0, ok(mx), "{d}");
    }
    let garbage_line = daemon
        .wait_for_log_from(
            from,
            |l| l.contains("new.example: stage=dns"),
            Duration::from_secs(5),
        )
        .await;
    println!(
        "FIGURE hostile dns: TC -> {tries} TXT queries (UDP then TCP) for big.example; \
         3 s DNS vs 1 s timeout: NOTFOUND after {slow_took:?}, cached answered in {t:?}; \
         flapping: {flap_answers} answers, all the cached policy; garbage DNS: NOTFOUND \
         after {garbage_took:?}, log {garbage_line:?}"
    );
    assert!(garbage_line.is_some(), "{:#?}", daemon.log());
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).await.success());
}
