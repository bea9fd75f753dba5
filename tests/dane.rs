//! DANE precedence end to end (SPEC 6.4, RFC 8461 §2, RFC 7672): the daemon in front,
//! the fixture DNS server behind it playing the validating resolver (AD bit on the
//! names marked secure, SERVFAIL for bogus data), the HTTPS fixture serving the
//! MTA-STS policies that DANE must win over.

mod harness;
mod support;

use std::sync::Arc;
use std::time::Duration;

use harness::{enforce, Client, TestClock};
use support::{txt_name, RecordType, ResponseCode, World};

/// (usage, selector, matching type, data), as the fixture takes them.
type TlsaRr = (u8, u8, u8, Vec<u8>);

/// A usable DANE-EE(3) SPKI(1) SHA2-256(1) record.
fn tlsa_3_1_1() -> TlsaRr {
    (3, 1, 1, vec![0xab; 32])
}

fn mts(mx: &str) -> String {
    format!("OK secure match={mx} servername=hostname")
}

struct Setup {
    world: World,
    clock: Arc<TestClock>,
    daemon: mtastsd::daemon::Daemon,
    client: Client,
    _state: tempfile::TempDir,
}

/// Profile `postfix` with `dane = true` against the fixture's DNS server as the
/// validating resolver; profile `plain` without DANE.
async fn setup() -> Setup {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, state.path());
    config.dane.nameservers = vec![world.dns_addr()];
    config.dane.profiles.insert("postfix".into());
    config
        .profiles
        .insert("plain".into(), mtastsd::config::Profile::default());
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

/// `domain` with MTA-STS (enforce, its MX hosts), MX hosts `mx1.<domain>` ...
/// with an A record each, and the given TLSA records per host. Secure (AD) unless
/// told otherwise.
fn publish(world: &World, domain: &str, tlsa: &[Vec<TlsaRr>]) -> Vec<String> {
    let hosts: Vec<String> = (1..=tlsa.len())
        .map(|i| format!("mx{i}.{domain}"))
        .collect();
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    world.publish(domain, "1", &enforce(&refs));
    world.dns.set_mx(
        domain,
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (10 * i as u16, h.clone()))
            .collect(),
    );
    for (host, records) in hosts.iter().zip(tlsa) {
        world.dns.set_a(host, std::net::Ipv4Addr::LOCALHOST);
        if !records.is_empty() {
            world
                .dns
                .set_tlsa(&format!("_25._tcp.{host}"), records.clone());
        }
    }
    world.dns.set_secure(domain, true);
    hosts
}

fn dane_queries(world: &World, domain: &str, hosts: &[String]) -> usize {
    let mut n = world.dns.queries(domain, RecordType::MX);
    for h in hosts {
        n += world.dns.queries(h, RecordType::A);
        n += world
            .dns
            .queries(&format!("_25._tcp.{h}"), RecordType::TLSA);
    }
    n
}

async fn settle(daemon: &mtastsd::daemon::Daemon) {
    for _ in 0..1000 {
        if daemon.dane().in_flight() == 0 && daemon.cache().resolutions_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("resolutions still running after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_tlsa_on_every_mx_is_dane_only_spec_6_4() {
    let mut s = setup().await;
    let hosts = publish(
        &s.world,
        "all.example",
        &[vec![tlsa_3_1_1()], vec![(2, 0, 2, vec![1; 64])]],
    );
    assert_eq!(
        s.client.query("postfix", "all.example").await,
        "OK dane-only"
    );
    // Asked with DNSSEC (DO/AD), and DANE won before any MTA-STS lookup.
    for h in &hosts {
        let tlsa = format!("_25._tcp.{h}");
        assert_eq!(s.world.dns.dnssec_queries(&tlsa, RecordType::TLSA), 1);
    }
    assert_eq!(s.world.dns.dnssec_queries("all.example", RecordType::MX), 1);
    assert_eq!(
        s.world
            .dns
            .queries(&txt_name("all.example"), RecordType::TXT),
        0
    );
    // The same domain under a profile without DANE: MTA-STS as before.
    assert_eq!(
        s.client.query("plain", "all.example").await,
        mts("mx1.all.example:mx2.all.example")
    );
}

/// SPEC 6.4: Postfix's `dane` level runs a host without TLSA at `may`, so partial
/// coverage must not weaken an `enforce` policy: the MTA-STS answer wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_tlsa_on_some_mx_with_enforce_is_the_mta_sts_answer_spec_6_4() {
    let mut s = setup().await;
    publish(&s.world, "some.example", &[vec![tlsa_3_1_1()], vec![]]);
    assert_eq!(
        s.client.query("postfix", "some.example").await,
        mts("mx1.some.example:mx2.some.example")
    );
    // From the caches, the same.
    assert_eq!(
        s.client.query("postfix", "some.example").await,
        mts("mx1.some.example:mx2.some.example")
    );
    // A testing policy protects nothing: `dane` is the stronger answer.
    s.world.publish(
        "testing.example",
        "1",
        &harness::policy("testing", &["mx1.testing.example"], 86400),
    );
    let hosts = ["mx1.testing.example", "mx2.testing.example"];
    s.world.dns.set_mx(
        "testing.example",
        vec![(10, hosts[0].into()), (20, hosts[1].into())],
    );
    for h in hosts {
        s.world.dns.set_a(h, std::net::Ipv4Addr::LOCALHOST);
    }
    s.world
        .dns
        .set_tlsa(&format!("_25._tcp.{}", hosts[0]), vec![tlsa_3_1_1()]);
    s.world.dns.set_secure("testing.example", true);
    assert_eq!(
        s.client.query("postfix", "testing.example").await,
        "OK dane"
    );
}

/// SPEC 6.4: partial coverage and no MTA-STS policy: `dane`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_tlsa_on_some_mx_without_a_policy_is_dane_spec_6_4() {
    let mut s = setup().await;
    publish(&s.world, "some.example", &[vec![tlsa_3_1_1()], vec![]]);
    s.world.unpublish("some.example");
    assert_eq!(s.client.query("postfix", "some.example").await, "OK dane");
}

/// SPEC 6.4, RFC 7672 §2.2: a failed address lookup makes that MX host unusable
/// for DANE; it does not make the whole domain's check a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_address_lookup_makes_one_host_unusable_spec_6_4() {
    let mut s = setup().await;
    // One host securely without TLSA, the other's A lookup fails: no DANE at all,
    // and without an MTA-STS policy that is NOTFOUND, not TEMP.
    let hosts = publish(&s.world, "afail.example", &[vec![], vec![tlsa_3_1_1()]]);
    s.world.unpublish("afail.example");
    s.world.dns.set_failure(&hosts[1], ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "afail.example").await,
        "NOTFOUND "
    );
    assert_eq!(
        s.world
            .dns
            .queries(&format!("_25._tcp.{}", hosts[1]), RecordType::TLSA),
        0
    );
    // Both hosts with TLSA, one A lookup failing: that host is unusable, so DANE
    // covers only some hosts (never dane-only); with enforce, the MTA-STS answer.
    let hosts = publish(
        &s.world,
        "afail2.example",
        &[vec![tlsa_3_1_1()], vec![tlsa_3_1_1()]],
    );
    s.world.dns.set_failure(&hosts[1], ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "afail2.example").await,
        mts("mx1.afail2.example:mx2.afail2.example")
    );
    // And without a policy: `dane`.
    let hosts = publish(
        &s.world,
        "afail3.example",
        &[vec![tlsa_3_1_1()], vec![tlsa_3_1_1()]],
    );
    s.world.unpublish("afail3.example");
    s.world.dns.set_failure(&hosts[1], ResponseCode::ServFail);
    assert_eq!(s.client.query("postfix", "afail3.example").await, "OK dane");
}

/// SPEC 6.4, 1.6: a next hop (`[host]`, `host:port`: relayhost, transports) is not
/// MX-resolved by Postfix, so no DANE check (no MX, A or TLSA query at all) and the
/// host's MTA-STS answer as for any key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_keys_skip_the_dane_check_spec_6_4_1_6() {
    let mut s = setup().await;
    let hosts = publish(&s.world, "relay.example", &[vec![tlsa_3_1_1()]]);
    for h in &hosts {
        s.world
            .dns
            .set_tlsa(&format!("_587._tcp.{h}"), vec![tlsa_3_1_1()]);
    }
    s.world
        .dns
        .set_tlsa("_587._tcp.relay.example", vec![tlsa_3_1_1()]);
    s.world
        .dns
        .set_a("relay.example", std::net::Ipv4Addr::LOCALHOST);
    for key in [
        "[relay.example]:587",
        "relay.example:587",
        "[relay.example]",
        "[Relay.Example.]:25",
    ] {
        assert_eq!(
            s.client.query("postfix", key).await,
            mts("mx1.relay.example"),
            "{key}"
        );
    }
    let log = s.world.dns.query_log();
    let dane: Vec<_> = log
        .iter()
        .filter(|(_, t)| matches!(t, RecordType::MX | RecordType::TLSA))
        .collect();
    assert!(dane.is_empty(), "DANE queries for a next hop: {dane:?}");
    assert_eq!(dane_queries(&s.world, "relay.example", &hosts), 0);
    // The domain itself, as a recipient domain, still gets its DANE check.
    assert_eq!(
        s.client.query("postfix", "relay.example").await,
        "OK dane-only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_denial_keeps_the_mta_sts_answer_spec_6_4() {
    let mut s = setup().await;
    let hosts = publish(&s.world, "denial.example", &[vec![], vec![]]);
    assert_eq!(
        s.client.query("postfix", "denial.example").await,
        mts("mx1.denial.example:mx2.denial.example")
    );
    // The TLSA queries were made (and denied with AD set).
    for h in &hosts {
        let tlsa = format!("_25._tcp.{h}");
        assert_eq!(s.world.dns.dnssec_queries(&tlsa, RecordType::TLSA), 1);
    }
    // No MTA-STS policy and no DANE: NOTFOUND, as before.
    s.world.unpublish("denial.example");
    s.world
        .dns
        .set_mx("nothing.example", vec![(0, "mx1.denial.example".into())]);
    s.world.dns.set_secure("nothing.example", true);
    assert_eq!(
        s.client.query("postfix", "nothing.example").await,
        "NOTFOUND "
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_answers_keep_the_mta_sts_answer_spec_6_4() {
    let mut s = setup().await;
    // TLSA published but nothing validated: no AD bit anywhere.
    let hosts = publish(&s.world, "unsigned.example", &[vec![tlsa_3_1_1()]]);
    s.world.dns.set_secure("unsigned.example", false);
    assert_eq!(
        s.client.query("postfix", "unsigned.example").await,
        mts("mx1.unsigned.example")
    );
    // An unsigned MX RRset ends the DANE check (RFC 7672 §2.2.1), even when its
    // hosts sit in a signed zone with usable TLSA records.
    let hosts2 = publish(&s.world, "unsigned2.example", &[vec![tlsa_3_1_1()]]);
    s.world.dns.set_secure("unsigned2.example", false);
    s.world.dns.set_secure(&hosts2[0], true);
    s.world
        .dns
        .set_secure(&format!("_25._tcp.{}", hosts2[0]), true);
    assert_eq!(
        s.client.query("postfix", "unsigned2.example").await,
        mts("mx1.unsigned2.example")
    );
    for (domain, host) in [
        ("unsigned.example", &hosts[0]),
        ("unsigned2.example", &hosts2[0]),
    ] {
        assert_eq!(s.world.dns.queries(domain, RecordType::MX), 1);
        assert_eq!(s.world.dns.queries(host, RecordType::A), 0);
        let tlsa = format!("_25._tcp.{host}");
        assert_eq!(s.world.dns.queries(&tlsa, RecordType::TLSA), 0);
    }

    // Signed domain, MX host in an unsigned zone whose servers fail TLSA queries:
    // the failure does not count (RFC 7672 §2.2.2), the other host has DANE.
    let hosts = publish(
        &s.world,
        "mixed.example",
        &[vec![tlsa_3_1_1()], vec![tlsa_3_1_1()]],
    );
    // Without an MTA-STS policy, so that partial coverage shows as `dane`.
    s.world.unpublish("mixed.example");
    s.world.dns.set_secure(&hosts[1], false);
    s.world
        .dns
        .set_failure(&format!("_25._tcp.{}", hosts[1]), ResponseCode::ServFail);
    assert_eq!(s.client.query("postfix", "mixed.example").await, "OK dane");
    assert_eq!(
        s.world
            .dns
            .queries(&format!("_25._tcp.{}", hosts[1]), RecordType::TLSA),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tlsa_only_is_no_dane_spec_6_4() {
    let mut s = setup().await;
    // PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1); so is a
    // SHA2-256 digest of the wrong length.
    publish(
        &s.world,
        "pkix.example",
        &[
            vec![(0, 0, 1, vec![1; 32]), (1, 1, 1, vec![1; 32])],
            vec![(3, 1, 1, vec![1; 20])],
        ],
    );
    assert_eq!(
        s.client.query("postfix", "pkix.example").await,
        mts("mx1.pkix.example:mx2.pkix.example")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_on_tlsa_with_nothing_cached_is_temp_spec_6_4() {
    let mut s = setup().await;
    // A validating resolver answers SERVFAIL for bogus data too: this is both the
    // "SERVFAIL on TLSA" and the "bogus" case. No MTA-STS policy either: nothing
    // else protects the domain, so DANE fails closed.
    let hosts = publish(&s.world, "servfail.example", &[vec![tlsa_3_1_1()]]);
    s.world.unpublish("servfail.example");
    let tlsa = format!("_25._tcp.{}", hosts[0]);
    s.world.dns.set_failure(&tlsa, ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "servfail.example").await,
        "TEMP DANE check of servfail.example failed: TLSA _25._tcp.mx1.servfail.example: \
         DNS failure: Server Failure"
    );
    // A failed MX lookup is just as temporary.
    s.world
        .dns
        .set_failure("mxfail.example", ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "mxfail.example").await,
        "TEMP DANE check of mxfail.example failed: MX mxfail.example: DNS failure: Server Failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_after_a_cached_result_answers_from_the_cache_spec_6_4() {
    let mut s = setup().await;
    s.world.dns.set_ttl(300);
    let hosts = publish(&s.world, "cached.example", &[vec![tlsa_3_1_1()]]);
    // No MTA-STS policy: nothing but DANE protects the domain (SPEC 6.4).
    s.world.unpublish("cached.example");
    assert_eq!(
        s.client.query("postfix", "cached.example").await,
        "OK dane-only"
    );
    let tlsa = format!("_25._tcp.{}", hosts[0]);
    s.world.dns.set_failure(&tlsa, ResponseCode::ServFail);
    // Past three quarters of the TTL: the cached answer at once, and a background
    // re-check that fails and keeps it.
    s.clock.advance(230);
    assert_eq!(
        s.client.query("postfix", "cached.example").await,
        "OK dane-only"
    );
    settle(&s.daemon).await;
    assert_eq!(s.world.dns.queries(&tlsa, RecordType::TLSA), 2);
    assert_eq!(
        s.client.query("postfix", "cached.example").await,
        "OK dane-only"
    );
    // Expired: fail closed.
    s.clock.advance(71);
    assert_eq!(
        s.client.query("postfix", "cached.example").await,
        "TEMP DANE check of cached.example failed: TLSA _25._tcp.mx1.cached.example: \
         DNS failure: Server Failure"
    );
    // Back to normal: DANE again once the failure's back-off has passed.
    s.world.dns.clear_failure(&tlsa);
    s.clock.advance(61);
    assert_eq!(
        s.client.query("postfix", "cached.example").await,
        "OK dane-only"
    );
}

/// SPEC 6.4: the DANE check failed, but an `enforce` policy protects the domain:
/// its MTA-STS answer, not `TEMP` (DANE fails closed only where nothing else
/// protects the domain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_failure_with_enforce_is_the_mta_sts_answer_spec_6_4() {
    let mut s = setup().await;
    let hosts = publish(&s.world, "failenf.example", &[vec![tlsa_3_1_1()]]);
    s.world
        .dns
        .set_failure(&format!("_25._tcp.{}", hosts[0]), ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "failenf.example").await,
        mts("mx1.failenf.example")
    );
    // A failed MX lookup too.
    publish(&s.world, "mxfailenf.example", &[vec![tlsa_3_1_1()]]);
    s.world
        .dns
        .set_failure("mxfailenf.example", ResponseCode::ServFail);
    assert_eq!(
        s.client.query("postfix", "mxfailenf.example").await,
        mts("mx1.mxfailenf.example")
    );
}

/// SPEC 6.4, 5.6: a failed DANE check is remembered for a back-off, so the requests
/// that follow neither query the resolver again nor wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_failures_are_backed_off_spec_6_4() {
    let mut s = setup().await;
    let hosts = publish(&s.world, "backoff.example", &[vec![tlsa_3_1_1()]]);
    s.world.unpublish("backoff.example");
    let tlsa = format!("_25._tcp.{}", hosts[0]);
    s.world.dns.set_failure(&tlsa, ResponseCode::ServFail);
    let temp = "TEMP DANE check of backoff.example failed: TLSA _25._tcp.mx1.backoff.example: \
                DNS failure: Server Failure";
    assert_eq!(s.client.query("postfix", "backoff.example").await, temp);
    let first = dane_queries(&s.world, "backoff.example", &hosts);
    for _ in 0..3 {
        s.clock.advance(10);
        assert_eq!(s.client.query("postfix", "backoff.example").await, temp);
    }
    assert_eq!(dane_queries(&s.world, "backoff.example", &hosts), first);
    // Past the back-off: checked again, and the repair shows.
    s.world.dns.clear_failure(&tlsa);
    s.clock.advance(31);
    assert_eq!(
        s.client.query("postfix", "backoff.example").await,
        "OK dane-only"
    );
    assert!(dane_queries(&s.world, "backoff.example", &hosts) > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_cached_by_ttl_spec_6_4() {
    let mut s = setup().await;
    s.world.dns.set_ttl(600);
    let hosts = publish(&s.world, "ttl.example", &[vec![tlsa_3_1_1()], vec![]]);
    // No MTA-STS policy: partial coverage answers `dane` (SPEC 6.4).
    s.world.unpublish("ttl.example");
    // The negative TTL of the denial (SOA) counts too: the smallest is 300.
    s.world.dns.set_negative_ttl(300);
    assert_eq!(s.client.query("postfix", "ttl.example").await, "OK dane");
    let first = dane_queries(&s.world, "ttl.example", &hosts);
    assert_eq!(first, 5, "MX, 2 x A, 2 x TLSA");
    // Within the TTL (and before the background re-check at 3/4): no DNS at all.
    s.clock.advance(200);
    assert_eq!(s.client.query("postfix", "ttl.example").await, "OK dane");
    assert_eq!(dane_queries(&s.world, "ttl.example", &hosts), first);
    // Past the smallest TTL: looked up again, and the change shows.
    s.world
        .dns
        .set_tlsa(&format!("_25._tcp.{}", hosts[1]), vec![tlsa_3_1_1()]);
    s.clock.advance(101);
    assert_eq!(
        s.client.query("postfix", "ttl.example").await,
        "OK dane-only"
    );
    assert_eq!(dane_queries(&s.world, "ttl.example", &hosts), 2 * first);

    // A TTL of 0 is held for the 60 s floor.
    s.world.dns.set_ttl(0);
    s.world.dns.set_negative_ttl(0);
    let hosts = publish(&s.world, "zero.example", &[vec![tlsa_3_1_1()]]);
    assert_eq!(
        s.client.query("postfix", "zero.example").await,
        "OK dane-only"
    );
    let first = dane_queries(&s.world, "zero.example", &hosts);
    s.clock.advance(44);
    assert_eq!(
        s.client.query("postfix", "zero.example").await,
        "OK dane-only"
    );
    assert_eq!(dane_queries(&s.world, "zero.example", &hosts), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_false_sends_no_dane_query_spec_6_4() {
    let mut s = setup().await;
    let hosts = publish(&s.world, "off.example", &[vec![tlsa_3_1_1()]]);
    assert_eq!(
        s.client.query("plain", "off.example").await,
        mts("mx1.off.example")
    );
    // An unknown map name uses the default profile, [profiles.postfix] here, which
    // has DANE; "plain" does not.
    assert_eq!(dane_queries(&s.world, "off.example", &hosts), 0);
    let types: Vec<RecordType> = s
        .world
        .dns
        .query_log()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert!(
        !types.contains(&RecordType::MX) && !types.contains(&RecordType::TLSA),
        "{types:?}"
    );
    assert_eq!(s.client.query("other", "off.example").await, "OK dane-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_never_asks_for_dane() {
    // dane = false is the default: a daemon configured as before sends no MX or
    // TLSA query, whatever the domain publishes.
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = harness::config(&world, state.path());
    let daemon = harness::start(config, TestClock::new()).await;
    let mut client = Client::connect(daemon.inet_addr().unwrap()).await;
    let hosts = publish(&world, "default.example", &[vec![tlsa_3_1_1()]]);
    assert_eq!(
        client.query("postfix", "default.example").await,
        mts("mx1.default.example")
    );
    assert_eq!(dane_queries(&world, "default.example", &hosts), 0);
}

/// `mtastsd query` shows the DANE check and answers as the daemon would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_shows_the_dane_check_spec_6_4_7_1() {
    let world = World::start().await;
    publish(
        &world,
        "q.example",
        &[vec![tlsa_3_1_1()], vec![tlsa_3_1_1()]],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = harness::config_file(
        &world,
        dir.path(),
        "127.0.0.1:0",
        "",
        &format!(
            "[dane]\nnameservers = [\"{}\"]\n[profiles.postfix]\ndane = true\n",
            world.dns_addr()
        ),
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtastsd"))
        .args([
            "query",
            "--json",
            "--config",
            path.to_str().unwrap(),
            "q.example",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "OK dane-only");
    assert_eq!(
        report["dane"],
        "DNSSEC-validated usable TLSA on every MX: dane-only"
    );
    // The MTA-STS policy is still shown.
    assert_eq!(report["policy"]["mode"], "enforce");
}

/// `mtastsd query KEY --json` against `config`.
async fn query_json(config: &std::path::Path, key: &str) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtastsd"))
        .args(["query", "--json", "--config", config.to_str().unwrap(), key])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `mtastsd query` applies the daemon's precedence: partial DANE with an enforce
/// policy is the MTA-STS answer, and a next hop gets no DANE check (SPEC 6.4, 7.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_follows_the_daemons_precedence_spec_6_4_7_1() {
    let world = World::start().await;
    let hosts = publish(&world, "qp.example", &[vec![tlsa_3_1_1()], vec![]]);
    let dir = tempfile::tempdir().unwrap();
    let path = harness::config_file(
        &world,
        dir.path(),
        "127.0.0.1:0",
        "",
        &format!(
            "[dane]\nnameservers = [\"{}\"]\n[profiles.postfix]\ndane = true\n",
            world.dns_addr()
        ),
    );
    let report = query_json(&path, "qp.example").await;
    assert_eq!(report["answer"], mts("mx1.qp.example:mx2.qp.example"));
    world.unpublish("qp.example");
    let report = query_json(&path, "qp.example").await;
    assert_eq!(report["answer"], "OK dane");

    world.dns.reset_counts();
    publish(
        &world,
        "qp.example",
        &[vec![tlsa_3_1_1()], vec![tlsa_3_1_1()]],
    );
    let report = query_json(&path, "[qp.example]:587").await;
    assert_eq!(report["answer"], mts("mx1.qp.example:mx2.qp.example"));
    assert_eq!(dane_queries(&world, "qp.example", &hosts), 0);
}

/// SPEC 6.4: the AD bit is only as trustworthy as the path to the resolver; a
/// `[dane] nameservers` address off loopback is warned about at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_dane_nameservers_are_warned_about_spec_6_4() {
    use tokio::io::AsyncBufReadExt;
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let path = harness::config_file(
        &world,
        dir.path(),
        "127.0.0.1:0",
        state.to_str().unwrap(),
        "[dane]\nnameservers = [\"192.0.2.53\", \"127.0.0.1:5353\", \"[::1]:5353\"]\n",
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtastsd"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Up to the line that says the daemon is serving: the warning comes before it.
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        let serving = line.contains("listening on");
        seen.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill().await;
    assert!(
        seen.last().is_some_and(|l| l.contains("listening on")),
        "{seen:#?}"
    );
    let warned: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("[dane] nameservers"))
        .collect();
    assert_eq!(warned.len(), 1, "{seen:#?}");
    assert!(warned[0].contains("192.0.2.53:53"), "{warned:?}");
    assert!(!warned[0].contains("127.0.0.1:5353"), "{warned:?}");
    assert!(!warned[0].contains("[::1]:5353"), "{warned:?}");
}
