//! SPEC 6.4: the answers where DANE was partial or failed and the MTA-STS policy
//! answered are counted. Its own test binary: the metrics recorder is process-wide.

mod harness;
mod support;

use std::net::SocketAddr;

use harness::{enforce, Client, TestClock};
use support::{ResponseCode, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of one sample, 0 when the series is absent.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

const PARTIAL: &str = "mtastsd_dane_mta_sts_answers_total{dane=\"partial\"}";
const FAILED: &str = "mtastsd_dane_mta_sts_answers_total{dane=\"failed\"}";

/// `domain` with an enforce policy on `mx1.<domain>` and `mx2.<domain>`, secure,
/// TLSA on the first host only.
fn publish_partial(world: &World, domain: &str) -> String {
    let hosts = [format!("mx1.{domain}"), format!("mx2.{domain}")];
    world.publish(domain, "1", &enforce(&[&hosts[0], &hosts[1]]));
    world
        .dns
        .set_mx(domain, vec![(10, hosts[0].clone()), (20, hosts[1].clone())]);
    for h in &hosts {
        world.dns.set_a(h, std::net::Ipv4Addr::LOCALHOST);
    }
    let tlsa = format!("_25._tcp.{}", hosts[0]);
    world.dns.set_tlsa(&tlsa, vec![(3, 1, 1, vec![0xab; 32])]);
    world.dns.set_secure(domain, true);
    tlsa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_answers_over_partial_or_failed_dane_are_counted_spec_6_4() {
    let world = World::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut config = harness::config(&world, state.path());
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    config.dane.nameservers = vec![world.dns_addr()];
    config.dane.profiles.insert("postfix".into());
    let daemon = harness::start(config, TestClock::new()).await;
    let metrics = daemon.metrics_addr().expect("metrics listener");
    let mut client = Client::connect(daemon.inet_addr().unwrap()).await;

    publish_partial(&world, "partial.example");
    let secure = "OK secure match=mx1.partial.example:mx2.partial.example servername=hostname";
    for _ in 0..2 {
        assert_eq!(client.query("postfix", "partial.example").await, secure);
    }
    let tlsa = publish_partial(&world, "failed.example");
    world.dns.set_failure(&tlsa, ResponseCode::ServFail);
    assert!(client
        .query("postfix", "failed.example")
        .await
        .starts_with("OK secure match="));
    // Partial without a policy answers `dane`: not counted.
    publish_partial(&world, "nopolicy.example");
    world.unpublish("nopolicy.example");
    assert_eq!(client.query("postfix", "nopolicy.example").await, "OK dane");

    let body = scrape(metrics).await;
    assert_eq!(sample(&body, PARTIAL), 2.0, "{body}");
    assert_eq!(sample(&body, FAILED), 1.0, "{body}");
}
