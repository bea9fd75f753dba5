//! One answer path (SPEC 6, 7.1): `mtastsd query --config` says what the daemon
//! answers. For every kind of answer, the binary's `query` and a daemon started
//! from the same configuration file give the same reply, and it is the one the
//! SPEC rule calls for. The fixture DNS server plays the validating resolver for
//! DANE (AD bit on the names marked secure, SERVFAIL for failures).

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::path::Path;

use harness::{enforce, policy, Client, TestClock};
use mtastsd::config::Config;
use support::{ResponseCode, World};

/// A usable DANE-EE(3) SPKI(1) SHA2-256(1) record (RFC 7672 §3.1).
const TLSA_3_1_1: (u8, u8, u8, [u8; 32]) = (3, 1, 1, [0xab; 32]);

/// MX hosts `mx1.<domain>`, ... with an A record each, and usable TLSA records on
/// the hosts marked `true`; the whole domain DNSSEC-secure (AD). Returns the hosts.
fn publish_dane(world: &World, domain: &str, tlsa: &[bool]) -> Vec<String> {
    let hosts: Vec<String> = (1..=tlsa.len())
        .map(|i| format!("mx{i}.{domain}"))
        .collect();
    let mx = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (10 * i as u16, h.clone()))
        .collect();
    world.dns.set_mx(domain, mx);
    for (host, &usable) in hosts.iter().zip(tlsa) {
        world.dns.set_a(host, Ipv4Addr::LOCALHOST);
        if usable {
            let (u, s, m, data) = TLSA_3_1_1;
            world
                .dns
                .set_tlsa(&format!("_25._tcp.{host}"), vec![(u, s, m, data.to_vec())]);
        }
    }
    world.dns.set_secure(domain, true);
    hosts
}

/// `OK secure match=... servername=hostname` (SPEC 6.1).
fn secure(mx: &str) -> String {
    format!("OK secure match={mx} servername=hostname")
}

/// What `mtastsd query --json --config <config> --profile <profile> <key>` answers.
async fn query_answer(config: &Path, profile: &str, key: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtastsd"))
        .args(["query", "--json", "--config"])
        .arg(config)
        .args(["--profile", profile, key])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["answer"].as_str().unwrap().to_owned()
}

/// Every SPEC 6 case: (what it shows, profile, key, the reply).
fn cases() -> Vec<(&'static str, &'static str, &'static str, String)> {
    vec![
        // SPEC 6.5: the override answers, although DANE covers every MX host.
        (
            "override",
            "postfix",
            "override.example",
            "OK secure match=.override.example".into(),
        ),
        ("dane-only", "postfix", "all.example", "OK dane-only".into()),
        // SPEC 6.4: partial DANE, no MTA-STS policy.
        ("dane", "postfix", "some.example", "OK dane".into()),
        // SPEC 6.4: partial DANE never weakens a usable enforce policy.
        (
            "dane partial, enforce",
            "postfix",
            "someenf.example",
            secure("mx1.someenf.example:mx2.someenf.example"),
        ),
        // SPEC 6.4, 1.6: a next hop gets no DANE check.
        (
            "next hop",
            "postfix",
            "[all.example]:25",
            secure("mx1.all.example:mx2.all.example"),
        ),
        (
            "enforce",
            "postfix",
            "enforce.example",
            secure("mx.enforce.example"),
        ),
        ("testing", "postfix", "testing.example", "NOTFOUND ".into()),
        (
            "strict_testing",
            "strict",
            "testing.example",
            secure("mx.testing.example"),
        ),
        ("none", "postfix", "none.example", "NOTFOUND ".into()),
        // SPEC 6.2: a policy that cannot be fetched, nothing cached.
        ("failure", "postfix", "broken.example", "NOTFOUND ".into()),
        // SPEC 6.4: a failed DANE check with nothing else to protect the domain.
        (
            "dane failure",
            "postfix",
            "servfail.example",
            "TEMP DANE check of servfail.example failed: TLSA _25._tcp.mx1.servfail.example: \
             DNS failure: Server Failure"
                .into(),
        ),
    ]
}

/// The world every case of [`cases`] needs.
fn publish_all(world: &World) {
    world.publish("override.example", "1", &enforce(&["mx.override.example"]));
    publish_dane(world, "override.example", &[true]);
    let all = publish_dane(world, "all.example", &[true, true]);
    world.publish("all.example", "1", &enforce(&[&all[0], &all[1]]));
    publish_dane(world, "some.example", &[true, false]);
    let some = publish_dane(world, "someenf.example", &[true, false]);
    world.publish("someenf.example", "1", &enforce(&[&some[0], &some[1]]));
    world.publish("enforce.example", "1", &enforce(&["mx.enforce.example"]));
    world.publish(
        "testing.example",
        "1",
        &policy("testing", &["mx.testing.example"], 86400),
    );
    world.publish(
        "none.example",
        "1",
        &policy("none", &["mx.none.example"], 86400),
    );
    // A TXT record, but no policy host to fetch from.
    world.publish_txt("broken.example", "1");
    let hosts = publish_dane(world, "servfail.example", &[true]);
    world
        .dns
        .set_failure(&format!("_25._tcp.{}", hosts[0]), ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_the_daemon_give_the_same_answer_for_every_case_spec_6_7_1() {
    let world = World::start().await;
    publish_all(&world);
    let dir = tempfile::tempdir().unwrap();
    let path = harness::config_file(
        &world,
        dir.path(),
        "127.0.0.1:0",
        "",
        &format!(
            r#"
[dane]
nameservers = ["{dns}"]
[profiles.postfix]
dane = true
[profiles.postfix.overrides]
"override.example" = "secure match=.override.example"
[profiles.strict]
strict_testing = true
"#,
            dns = world.dns_addr()
        ),
    );
    let config = Config::load(&path).unwrap();
    let daemon = harness::start(config, TestClock::new()).await;
    let mut client = Client::connect(daemon.inet_addr().unwrap()).await;
    for (case, profile, key, expected) in cases() {
        let from_query = query_answer(&path, profile, key).await;
        let from_daemon = client.query(profile, key).await;
        assert_eq!(from_query, from_daemon, "{case}: query vs daemon");
        assert_eq!(from_daemon, expected, "{case}");
    }
}
