//! The daemon end to end: socketmap over TCP in front, a real DNS server and a real
//! HTTPS server with a test CA behind (tests/support). Rule numbers are SPEC.md's.

mod harness;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{enforce, policy, Client, TestClock};
use mtastsd::config::Profile;
use support::{policy_host, txt_name, CertKind, RecordType, Reply, ResponseCode, World};

const NOTFOUND: &str = "NOTFOUND ";

fn ok(matches: &str) -> String {
    format!("OK secure match={matches} servername=hostname")
}

/// A world, a daemon on it with a hand-moved clock, and a connected client.
struct Setup {
    world: World,
    clock: Arc<TestClock>,
    daemon: mtastsd::daemon::Daemon,
    client: Client,
    _state: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(tweak: impl FnOnce(&mut mtastsd::config::Config)) -> Setup {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, state.path());
    tweak(&mut config);
    let clock = TestClock::new();
    let daemon = harness::start(config, clock.clone()).await;
    let client = Client::connect(daemon.inet_addr().unwrap()).await;
    Setup {
        world,
        clock,
        daemon,
        client,
        _state: state,
    }
}

/// Wait for background re-checks and refreshes to land.
async fn settle(daemon: &mtastsd::daemon::Daemon) {
    for _ in 0..1000 {
        if daemon.cache().resolutions_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("background resolutions still running after 10 s");
}

// ---- answers (SPEC 6.1, 6.2) -------------------------------------------------------

// On one thread, as `mtastsd serve` runs (src/main.rs), with the test's DNS and
// HTTPS servers beside it; resolutions go to the daemon's resolver threads.
#[tokio::test(flavor = "current_thread")]
async fn enforce_policy_gives_secure_match_spec_6_1() {
    let mut s = setup().await;
    s.world.publish(
        "example.com",
        "20240101",
        &enforce(&["mx1.example.com", "*.example.net", "mx1.example.com"]),
    );
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com:.example.net")
    );
    // SPEC 3.1: the right URL and Host were asked for.
    let req = s
        .world
        .https
        .last_request(&policy_host("example.com"))
        .unwrap();
    assert!(
        req.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1"),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_and_none_are_notfound_spec_6_2() {
    let mut s = setup().await;
    s.world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    s.world.publish(
        "none.example",
        "1",
        "version: STSv1\nmode: none\nmax_age: 86400\n",
    );
    assert_eq!(s.client.query("postfix", "testing.example").await, NOTFOUND);
    assert_eq!(s.client.query("postfix", "none.example").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tlsrpt_profile_appends_the_sts_attributes_spec_6_3() {
    let mut s = setup_with(|c| {
        c.profiles.insert(
            "tlsrpt".into(),
            Profile {
                strict_testing: false,
                servername: true,
                tlsrpt: true,
            },
        );
    })
    .await;
    s.world.publish(
        "rpt.example",
        "1",
        "version: STSv1\nmode: enforce\nmx: mx1.rpt.example\nmx: *.backup.rpt.example\nmax_age: 604800\n",
    );
    s.world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    let golden = "OK secure match=mx1.rpt.example:.backup.rpt.example servername=hostname \
                  policy_type=sts policy_domain=rpt.example \
                  mx_host_pattern=mx1.rpt.example mx_host_pattern=*.backup.rpt.example \
                  { policy_string = version: STSv1 } { policy_string = mode: enforce } \
                  { policy_string = mx: mx1.rpt.example } { policy_string = mx: *.backup.rpt.example } \
                  { policy_string = max_age: 604800 }";
    // Twice: the first hit builds the attributes, the second copies them.
    for _ in 0..2 {
        assert_eq!(s.client.query("tlsrpt", "rpt.example").await, golden);
    }
    // The same cached policy under the default profile: no attributes.
    assert_eq!(
        s.client.query("postfix", "rpt.example").await,
        "OK secure match=mx1.rpt.example:.backup.rpt.example servername=hostname"
    );
    // Testing mode stays NOTFOUND with tlsrpt on (SPEC 6.3).
    assert_eq!(s.client.query("tlsrpt", "testing.example").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_selected_by_map_name_spec_1_2_6_1_6_2() {
    let mut s = setup_with(|c| {
        c.profiles.insert(
            "strict".into(),
            Profile {
                strict_testing: true,
                servername: true,
                tlsrpt: false,
            },
        );
        c.profiles.insert(
            "old".into(),
            Profile {
                strict_testing: false,
                servername: false,
                tlsrpt: false,
            },
        );
    })
    .await;
    s.world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    s.world
        .publish("enforce.example", "1", &enforce(&["mx.enforce.example"]));
    assert_eq!(s.client.query("postfix", "testing.example").await, NOTFOUND);
    assert_eq!(
        s.client.query("strict", "testing.example").await,
        ok("mx.testing.example")
    );
    assert_eq!(
        s.client.query("old", "enforce.example").await,
        "OK secure match=mx.enforce.example"
    );
    // An unknown map name uses the default profile.
    assert_eq!(
        s.client.query("nosuchprofile", "testing.example").await,
        NOTFOUND
    );
    assert_eq!(
        s.client.query("nosuchprofile", "enforce.example").await,
        ok("mx.enforce.example")
    );
}

// ---- discovery (SPEC 2) ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_txt_record_nxdomain_and_nodata_spec_2_6() {
    let mut s = setup().await;
    // NXDOMAIN: nothing at all. NODATA: the name exists with an A record only.
    s.world
        .dns
        .set_a(&txt_name("nodata.example"), "127.0.0.1".parse().unwrap());
    for domain in ["nxdomain.example", "nodata.example"] {
        // A policy host that would answer if it were (wrongly) asked.
        s.world
            .dns
            .set_a(&policy_host(domain), "127.0.0.1".parse().unwrap());
        s.world.https.set(
            &policy_host(domain),
            CertKind::Valid,
            Reply::Policy(enforce(&["mx.x.example"])),
        );
        assert_eq!(
            s.client.query("postfix", domain).await,
            NOTFOUND,
            "{domain}"
        );
        assert_eq!(s.world.https.requests(&policy_host(domain)), 0, "{domain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_record_rules_spec_2_2_to_2_5() {
    let mut s = setup().await;
    let cases: &[(&str, Vec<Vec<&str>>, bool)] = &[
        // SPEC 2.2: strings of one record are concatenated.
        ("split.example", vec![vec!["v=STSv1; ", "id=abc"]], true),
        // SPEC 2.4: an SPF record beside it is fine.
        (
            "spf.example",
            vec![vec!["v=spf1 -all"], vec!["v=STSv1; id=abc"]],
            true,
        ),
        // SPEC 2.4: two STSv1 records.
        (
            "two.example",
            vec![vec!["v=STSv1; id=a"], vec!["v=STSv1; id=b"]],
            false,
        ),
        // SPEC 2.5: bad ids and grammar.
        ("badid.example", vec![vec!["v=STSv1; id=a-b"]], false),
        ("emptyid.example", vec![vec!["v=STSv1; id="]], false),
        (
            "longid.example",
            vec![vec!["v=STSv1; id=123456789012345678901234567890123"]],
            false,
        ),
        ("noid.example", vec![vec!["v=STSv1;"]], false),
        // SPEC 2.3: not STSv1 at all.
        ("lower.example", vec![vec!["v=stsv1; id=abc"]], false),
    ];
    for (domain, txt, has_policy) in cases {
        s.world
            .publish(domain, "unused", &enforce(&[&format!("mx.{domain}")]));
        s.world.dns.set_txt(
            &txt_name(domain),
            txt.iter()
                .map(|r| r.iter().map(|p| p.to_string()).collect())
                .collect(),
        );
        let want = if *has_policy {
            ok(&format!("mx.{domain}"))
        } else {
            NOTFOUND.to_string()
        };
        assert_eq!(s.client.query("postfix", domain).await, want, "{domain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_to_the_txt_record_is_followed_spec_2_1() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "unused", &enforce(&["mx.example.com"]));
    s.world.dns.remove(&txt_name("example.com"));
    s.world
        .dns
        .set_cname(&txt_name("example.com"), "sts.provider.example");
    s.world.dns.set_txt(
        "sts.provider.example",
        vec![vec!["v=STSv1; id=cname1".into()]],
    );
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failure_with_nothing_cached_is_notfound_not_temp_spec_2_6_6_2() {
    let mut s = setup().await;
    s.world
        .publish("servfail.example", "1", &enforce(&["mx.servfail.example"]));
    s.world
        .dns
        .set_failure(&txt_name("servfail.example"), ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "servfail.example").await,
        NOTFOUND
    );
    // SPEC 5.6: backed off: the next query within 60 s does not ask DNS again.
    let asked = s
        .world
        .dns
        .queries(&txt_name("servfail.example"), RecordType::TXT);
    assert_eq!(
        s.client.query("postfix", "servfail.example").await,
        NOTFOUND
    );
    assert_eq!(
        s.world
            .dns
            .queries(&txt_name("servfail.example"), RecordType::TXT),
        asked
    );
}

// On one thread, as `mtastsd serve` runs (src/main.rs), with the test's DNS and
// HTTPS servers beside it; resolutions go to the daemon's resolver threads.
#[tokio::test(flavor = "current_thread")]
async fn a_dns_server_that_never_answers_does_not_hold_up_others_spec_2_6() {
    let s = setup().await; // dns.timeout = 1 s
    s.world
        .publish("silent.example", "1", &enforce(&["mx.silent.example"]));
    s.world.dns.set_timeout(&txt_name("silent.example"));
    s.world
        .publish("fine.example", "1", &enforce(&["mx.fine.example"]));
    let addr = s.daemon.inet_addr().unwrap();
    let silent = tokio::spawn(async move {
        let started = Instant::now();
        let mut c = Client::connect(addr).await;
        (
            c.query("postfix", "silent.example").await,
            started.elapsed(),
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut c = Client::connect(addr).await;
    assert_eq!(
        c.query("postfix", "fine.example").await,
        ok("mx.fine.example")
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let (reply, took) = silent.await.unwrap();
    assert_eq!(reply, NOTFOUND);
    assert!(took < Duration::from_secs(4), "{took:?}");
}

// ---- the fetch (SPEC 3) -------------------------------------------------------------

/// Each hostile or broken policy server: the answer is NOTFOUND, quickly.
// On one thread, as `mtastsd serve` runs (src/main.rs), with the test's DNS and
// HTTPS servers beside it; resolutions go to the daemon's resolver threads.
#[tokio::test(flavor = "current_thread")]
async fn broken_policy_servers_give_notfound_spec_3() {
    let mut s = setup().await;
    let good = enforce(&["mx.example.org"]);
    let cases: Vec<(&str, CertKind, Reply)> = vec![
        ("ok.example", CertKind::Valid, Reply::Policy(good.clone())), // the control
        ("404.example", CertKind::Valid, Reply::status(404)),         // SPEC 3.2
        (
            "redirect.example",
            CertKind::Valid,
            Reply::redirect(301, "https://mta-sts.ok.example/.well-known/mta-sts.txt"),
        ),
        (
            "html.example",
            CertKind::Valid,
            Reply::with_type(200, "text/html", good.clone()),
        ), // SPEC 3.3
        (
            "notype.example",
            CertKind::Valid,
            Reply::Raw {
                status: 200,
                headers: vec![],
                body: good.clone().into_bytes(),
            },
        ),
        (
            "huge.example",
            CertKind::Valid,
            Reply::Huge {
                declared_len: Some(200_000),
                actual_len: 200_000,
            },
        ), // SPEC 3.4
        (
            "liar.example",
            CertKind::Valid,
            Reply::Huge {
                declared_len: Some(1000),
                actual_len: 200_000,
            },
        ),
        (
            "nolength.example",
            CertKind::Valid,
            Reply::Huge {
                declared_len: None,
                actual_len: 200_000,
            },
        ),
        (
            "chunked.example",
            CertKind::Valid,
            Reply::HugeChunked {
                actual_len: 200_000,
            },
        ),
        (
            "wrongname.example",
            CertKind::WrongName,
            Reply::Policy(good.clone()),
        ), // SPEC 3.1
        (
            "expired.example",
            CertKind::Expired,
            Reply::Policy(good.clone()),
        ),
        (
            "untrusted.example",
            CertKind::Untrusted,
            Reply::Policy(good.clone()),
        ),
        (
            "selfsigned.example",
            CertKind::SelfSigned,
            Reply::Policy(good.clone()),
        ),
        (
            "invalid.example",
            CertKind::Valid,
            Reply::Policy("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n".into()),
        ), // SPEC 4.4
        ("close.example", CertKind::Valid, Reply::Close),
    ];
    for (domain, cert, reply) in &cases {
        s.world.publish(domain, "1", &good);
        s.world
            .https
            .set(&policy_host(domain), *cert, reply.clone());
    }
    for (domain, _, _) in &cases {
        let want = if *domain == "ok.example" {
            ok("mx.example.org")
        } else {
            NOTFOUND.to_string()
        };
        let started = Instant::now();
        assert_eq!(s.client.query("postfix", domain).await, want, "{domain}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{domain} took {:?}",
            started.elapsed()
        );
    }
    // SPEC 3.2: the redirect was not followed.
    assert_eq!(s.world.https.requests(&policy_host("ok.example")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hanging_servers_hit_the_deadline_spec_3_5() {
    let mut s = setup().await; // fetch.timeout = 2 s
    let good = enforce(&["mx.example.org"]);
    s.world.publish("slow.example", "1", &good);
    s.world.https.set_reply(
        &policy_host("slow.example"),
        Reply::slow(Duration::from_secs(5), Reply::Policy(good.clone())),
    );
    s.world.publish("drip.example", "1", &good);
    s.world.https.set_reply(
        &policy_host("drip.example"),
        Reply::Drip {
            interval: Duration::from_millis(200),
            body: good.clone(),
        },
    );
    s.world.publish("hang.example", "1", &good);
    s.world
        .https
        .set_reply(&policy_host("hang.example"), Reply::Hang);
    for domain in ["slow.example", "drip.example", "hang.example"] {
        let started = Instant::now();
        assert_eq!(
            s.client.query("postfix", domain).await,
            NOTFOUND,
            "{domain}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
            "{domain}: {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_for_a_new_domain_share_one_resolution_spec_3_6() {
    let s = setup().await;
    let good = enforce(&["mx.herd.example"]);
    s.world.publish("herd.example", "1", &good);
    // Slow enough that all 200 arrive while the first resolution is running.
    s.world.https.set_reply(
        &policy_host("herd.example"),
        Reply::slow(Duration::from_millis(300), Reply::Policy(good)),
    );
    let addr = s.daemon.inet_addr().unwrap();
    let queries: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.query("postfix", "herd.example").await
            })
        })
        .collect();
    for q in queries {
        assert_eq!(q.await.unwrap(), ok("mx.herd.example"));
    }
    assert_eq!(
        s.world
            .dns
            .queries(&txt_name("herd.example"), RecordType::TXT),
        1
    );
    assert_eq!(s.world.https.requests(&policy_host("herd.example")), 1);
}

// ---- the cache (SPEC 5) ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_change_fetches_the_new_policy_spec_5_2() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "1", &enforce(&["mx1.example.com"]));
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    s.world
        .publish("example.com", "2", &enforce(&["mx2.example.com"]));
    // Within the recheck interval: the cached answer, nothing asked.
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    s.clock.advance(61);
    // SPEC 5.4: the re-check runs in the background; this answer is still the old one.
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    settle(&s.daemon).await;
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx2.example.com")
    );
    assert_eq!(s.world.https.requests(&policy_host("example.com")), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_is_not_fetched_again_spec_5_4() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "1", &enforce(&["mx1.example.com"]));
    s.client.query("postfix", "example.com").await;
    for _ in 0..3 {
        s.clock.advance(61);
        s.client.query("postfix", "example.com").await;
        settle(&s.daemon).await;
    }
    assert_eq!(
        s.world
            .dns
            .queries(&txt_name("example.com"), RecordType::TXT),
        4
    );
    assert_eq!(s.world.https.requests(&policy_host("example.com")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_down_after_caching_keeps_the_policy_spec_5_3() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "1", &enforce(&["mx1.example.com"]));
    s.client.query("postfix", "example.com").await;
    // A new id announces a change, but the policy server is down (or blocked).
    s.world.publish_txt("example.com", "2");
    s.world.https.set_down(true);
    s.clock.advance(61);
    s.client.query("postfix", "example.com").await;
    settle(&s.daemon).await;
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    // A server that answers garbage is no better.
    s.world.https.set_down(false);
    s.world
        .https
        .set_reply(&policy_host("example.com"), Reply::status(500));
    s.clock.advance(301);
    s.client.query("postfix", "example.com").await;
    settle(&s.daemon).await;
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_gone_or_dns_broken_after_caching_keeps_the_policy_spec_5_3() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "1", &enforce(&["mx1.example.com"]));
    s.client.query("postfix", "example.com").await;
    s.world.dns.remove(&txt_name("example.com"));
    s.clock.advance(61);
    s.client.query("postfix", "example.com").await;
    settle(&s.daemon).await;
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    s.world
        .dns
        .set_failure(&txt_name("example.com"), ResponseCode::ServFail);
    s.clock.advance(61);
    s.client.query("postfix", "example.com").await;
    settle(&s.daemon).await;
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    assert!(
        s.world
            .dns
            .queries(&txt_name("example.com"), RecordType::TXT)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_expires_after_max_age_spec_5_1() {
    let mut s = setup().await;
    s.world.publish(
        "example.com",
        "1",
        &policy("enforce", &["mx1.example.com"], 3600),
    );
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    // The domain vanishes (TXT and HTTPS): the policy lives exactly max_age.
    s.world.unpublish("example.com");
    s.clock.advance(3599);
    assert_eq!(
        s.client.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    settle(&s.daemon).await;
    s.clock.advance(1);
    assert_eq!(s.client.query("postfix", "example.com").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_policies_without_network_spec_5_8() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    world.publish("example.com", "1", &enforce(&["mx1.example.com"]));
    let daemon = harness::start(harness::config(&world, state.path()), clock.clone()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    assert_eq!(
        c.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    drop(c);
    daemon.shutdown().await;

    // The network is gone: DNS answers nothing, HTTPS refuses.
    world
        .dns
        .set_failure(&txt_name("example.com"), ResponseCode::ServFail);
    world.https.set_down(true);
    let daemon = harness::start(harness::config(&world, state.path()), clock.clone()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    assert_eq!(
        c.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    assert_eq!(world.https.requests(&policy_host("example.com")), 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_is_moved_aside_and_the_daemon_starts_spec_5_8() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("policies.json"), "{ not json").unwrap();
    world.publish("example.com", "1", &enforce(&["mx1.example.com"]));
    let daemon = harness::start(harness::config(&world, state.path()), TestClock::new()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    assert_eq!(
        c.query("postfix", "example.com").await,
        ok("mx1.example.com")
    );
    daemon.shutdown().await;
    assert!(state.path().join("policies.json.corrupt").exists());
    let saved = std::fs::read_to_string(state.path().join("policies.json")).unwrap();
    assert!(saved.contains("example.com"));
}

// ---- the socketmap conversation (SPEC 1) ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_policy_fits_in_a_reply_spec_1_4() {
    let mut s = setup().await;
    // As many mx lines as fit in the 64 KiB body cap.
    let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 86400\n");
    let mut i = 0;
    loop {
        let line = format!("mx: mx{i}.big.example\n");
        if body.len() + line.len() > 64 * 1024 {
            break;
        }
        body.push_str(&line);
        i += 1;
    }
    s.world.publish("big.example", "1", &body);
    let reply = s.client.query("postfix", "big.example").await;
    assert!(reply.starts_with("OK secure match=mx0.big.example:mx1.big.example:"));
    assert_eq!(reply.matches(':').count(), i - 1);
    assert!(reply.len() < 100_000, "{}", reply.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_or_stall_mid_request_are_dropped() {
    let s = setup_with(|c| c.server.idle_timeout = Duration::from_secs(1)).await;
    let addr = s.daemon.inet_addr().unwrap();
    // Half a request, then nothing: closed after the idle/request timeout.
    let mut c = Client::connect(addr).await;
    c.send_raw(b"20:postfix exa").await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    // A million pipelined requests, replies not read: once the kernel buffers are full
    // the daemon's write times out (idle_timeout) and it closes the connection,
    // rather than buffering replies without bound.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let flood = socket.connect(addr).await.unwrap();
    let (mut rd, mut wr) = flood.into_split();
    let one = harness::netstring("postfix [192.0.2.1]");
    let n = 1_000_000;
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let batch = one.repeat(1000);
        for _ in 0..n / 1000 {
            if wr.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    // Meanwhile, everyone else is served.
    let mut other = Client::connect(addr).await;
    assert_eq!(other.query("postfix", "[192.0.2.1]").await, NOTFOUND);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt;
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut got)).await;
    let replies = got.len() / harness::netstring(NOTFOUND).len();
    assert!(replies < n, "all {n} replies were buffered and sent");
    writer.abort();
}

// ---- the socketmap conversation (SPEC 1), continued ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_normalised_and_skipped_keys_cause_no_dns_spec_1_6() {
    let mut s = setup().await;
    s.world
        .publish("example.com", "1", &enforce(&["mx.example.com"]));
    s.world.publish(
        "xn--bcher-kva.example",
        "1",
        &enforce(&["mx.xn--bcher-kva.example"]),
    );
    for key in [
        "EXAMPLE.COM",
        "example.com.",
        "[example.com]",
        "[Example.com]:25",
        "example.com:587",
    ] {
        assert_eq!(
            s.client.query("postfix", key).await,
            ok("mx.example.com"),
            "{key}"
        );
    }
    assert_eq!(
        s.client.query("postfix", "Bücher.example").await,
        ok("mx.xn--bcher-kva.example")
    );
    let before = s.world.dns.total_queries();
    for key in [
        ".example.com",
        "[192.0.2.1]",
        "[ipv6:2001:db8::1]:25",
        "192.0.2.1",
        "localhost",
        "bad_name.example",
        "",
    ] {
        assert_eq!(s.client.query("postfix", key).await, NOTFOUND, "{key:?}");
    }
    assert_eq!(
        s.world.dns.total_queries(),
        before,
        "no DNS traffic for skipped keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_split_requests_spec_1_1() {
    let mut s = setup().await;
    s.world
        .publish("a.example", "1", &enforce(&["mx.a.example"]));
    s.world
        .publish("b.example", "1", &enforce(&["mx.b.example"]));
    // Three requests in one write.
    let batch = format!(
        "{}{}{}",
        harness::netstring("postfix a.example"),
        harness::netstring("postfix b.example"),
        harness::netstring("postfix .a.example")
    );
    s.client.send_raw(batch.as_bytes()).await;
    assert_eq!(s.client.reply().await.unwrap(), ok("mx.a.example"));
    assert_eq!(s.client.reply().await.unwrap(), ok("mx.b.example"));
    assert_eq!(s.client.reply().await.unwrap(), NOTFOUND);
    // One request a byte at a time.
    for b in harness::netstring("postfix b.example").bytes() {
        s.client.send_raw(&[b]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(s.client.reply().await.unwrap(), ok("mx.b.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_framing_gets_perm_and_close_spec_1_4() {
    let s = setup().await;
    let addr = s.daemon.inet_addr().unwrap();
    let bad: &[&[u8]] = &[
        b"x:postfix example.com,",
        b"17:postfix example.com;",
        b":postfix,",
        b"10001:",
        b"99999999999:",
        b"-1:,",
    ];
    for raw in bad {
        let mut c = Client::connect(addr).await;
        c.send_raw(raw).await;
        let reply = c.reply().await.expect("a PERM reply before the close");
        assert!(reply.starts_with("PERM "), "{raw:?}: {reply}");
        assert_eq!(c.reply().await, None, "{raw:?}: connection closed");
    }
    // Well-framed but not a lookup: PERM, and the connection stays usable (SPEC 1.3).
    let mut c = Client::connect(addr).await;
    c.send_raw(harness::netstring("nospace").as_bytes()).await;
    assert!(c.reply().await.unwrap().starts_with("PERM "));
    assert_eq!(c.query("postfix", "[192.0.2.1]").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_cap_is_10000_bytes_spec_1_4() {
    let s = setup().await;
    let addr = s.daemon.inet_addr().unwrap();
    // Exactly 10 000 bytes: an answer (not a valid domain, so NOTFOUND).
    let key = "a".repeat(10_000 - "postfix ".len());
    let mut c = Client::connect(addr).await;
    assert_eq!(c.query("postfix", &key).await, NOTFOUND);
    // One byte more: PERM and close, before the body is even sent.
    let mut c = Client::connect(addr).await;
    c.send_raw(b"10001:").await;
    assert!(c.reply().await.unwrap().starts_with("PERM "));
    assert_eq!(c.reply().await, None);
    // Everyone else is still served.
    let mut other = Client::connect(addr).await;
    assert_eq!(other.query("postfix", "[192.0.2.1]").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_spec_1_5() {
    let mut s = setup_with(|c| c.server.idle_timeout = Duration::from_secs(1)).await;
    assert_eq!(s.client.query("postfix", "[192.0.2.1]").await, NOTFOUND);
    assert!(!s.client.closed_within(Duration::from_millis(500)).await);
    assert!(s.client.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_does_not_count_as_idle_time_spec_1_5() {
    let mut s = setup_with(|c| c.server.idle_timeout = Duration::from_secs(1)).await;
    let good = enforce(&["mx.slow.example"]);
    s.world.publish("slow.example", "1", &good);
    s.world.https.set_reply(
        &policy_host("slow.example"),
        Reply::slow(Duration::from_millis(1500), Reply::Policy(good)),
    );
    // The answer takes longer than idle_timeout; the connection stays usable after it.
    assert_eq!(
        s.client.query("postfix", "slow.example").await,
        ok("mx.slow.example")
    );
    assert_eq!(s.client.query("postfix", "[192.0.2.1]").await, NOTFOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_closes_the_longest_idle_for_a_newcomer_spec_7_6() {
    let mut s = setup_with(|c| c.server.max_connections = 2).await; // s.client holds one
    let addr = s.daemon.inet_addr().unwrap();
    let mut second = Client::connect(addr).await;
    assert_eq!(second.query("postfix", "[192.0.2.1]").await, NOTFOUND);
    // The third is served; s.client, idle for longest, is closed to make room.
    let mut third = Client::connect(addr).await;
    assert_eq!(third.query("postfix", "[192.0.2.2]").await, NOTFOUND);
    assert_eq!(
        s.client.reply().await,
        None,
        "the longest-idle one was closed"
    );
    assert_eq!(second.query("postfix", "[192.0.2.3]").await, NOTFOUND);
    // (When every connection is answering, a newcomer gets TEMP: tests/hardening.rs.)
}

// ---- operations (SPEC 7) -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_profiles_and_keeps_cache_and_connections_spec_7_3() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    let config = harness::config(&world, state.path());
    let mut daemon = harness::start(config.clone(), clock).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    assert_eq!(c.query("postfix", "testing.example").await, NOTFOUND);

    let mut strict = config;
    strict.profiles.get_mut("postfix").unwrap().strict_testing = true;
    daemon.reload(strict).unwrap();
    // Same connection, same cached policy, new profile.
    assert_eq!(
        c.query("postfix", "testing.example").await,
        ok("mx.testing.example")
    );
    assert_eq!(world.https.requests(&policy_host("testing.example")), 1);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_spec_7_3() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let good = enforce(&["mx.slow.example"]);
    world.publish("slow.example", "1", &good);
    world.https.set_reply(
        &policy_host("slow.example"),
        Reply::slow(Duration::from_millis(700), Reply::Policy(good)),
    );
    let daemon = harness::start(harness::config(&world, state.path()), TestClock::new()).await;
    let addr = daemon.inet_addr().unwrap();
    let in_flight = tokio::spawn(async move {
        let mut c = Client::connect(addr).await;
        c.query("postfix", "slow.example").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.shutdown().await;
    assert_eq!(in_flight.await.unwrap(), ok("mx.slow.example"));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // And the policy learnt in flight was saved (SPEC 5.8).
    let saved = std::fs::read_to_string(state.path().join("policies.json")).unwrap();
    assert!(saved.contains("slow.example"), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener_with_mode_spec_7_5() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("socketmap");
    let mut config = harness::config(&world, state.path());
    config.server.listen = vec![mtastsd::config::ListenAddr::Unix(path.clone())];
    config.server.unix_mode = 0o600;
    world.publish("example.com", "1", &enforce(&["mx.example.com"]));
    let daemon = harness::start(config, TestClock::new()).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(harness::netstring("postfix example.com").as_bytes())
        .await
        .unwrap();
    let want = harness::netstring(&ok("mx.example.com"));
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
    daemon.shutdown().await;
    assert!(!path.exists(), "socket removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_new_domains_at_once_are_all_resolved_spec_3_6() {
    // Generous fetch deadline: a thousand TLS handshakes on a busy 2-core CI machine
    // (the fixtures run in this process too) must not hit it.
    let s = setup_with(|c| {
        c.dns.timeout = Duration::from_secs(2);
        c.fetch.timeout = Duration::from_secs(30);
        // 1000 clients plus the setup's own: past the default limit, the last would
        // be refused (TEMP), which is not what this test is about.
        c.server.max_connections = 1100;
    })
    .await;
    let n = 1000;
    for i in 0..n {
        let d = format!("d{i}.burst.example");
        s.world.publish(&d, "1", &enforce(&[&format!("mx.{d}")]));
    }
    let addr = s.daemon.inet_addr().unwrap();
    let queries: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.query("postfix", &format!("d{i}.burst.example")).await
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, q) in queries.into_iter().enumerate() {
        let reply = q.await.unwrap();
        if reply != ok(&format!("mx.d{i}.burst.example")) {
            failed.push((i, reply));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    for i in 0..n {
        let d = format!("d{i}.burst.example");
        // A UDP datagram lost in the burst costs one resolver retry, nothing more.
        let txt = s.world.dns.queries(&txt_name(&d), RecordType::TXT);
        assert!((1..=2).contains(&txt), "{d}: {txt} TXT queries");
        assert_eq!(s.world.https.requests(&policy_host(&d)), 1, "{d}");
    }
}
