//! Self-tests of the integration-test fixtures (tests/support): each feature is
//! exercised with real clients (hickory-resolver for DNS, reqwest for HTTPS).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use support::client::{https_client, resolver, Transport};
use support::{CertKind, Reply, ResponseCode, World};

const T: Duration = Duration::from_secs(2);

fn txts(lookup: &hickory_resolver::lookup::Lookup) -> Vec<String> {
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn a_records(lookup: &hickory_resolver::lookup::Lookup) -> Vec<Ipv4Addr> {
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn resolvers(world: &World) -> Vec<(Transport, TokioResolver)> {
    [Transport::Udp, Transport::Tcp]
        .into_iter()
        .map(|t| (t, resolver(world.dns_addr(), t, T)))
        .collect()
}

#[tokio::test]
async fn dns_txt_with_several_strings_over_udp_and_tcp() {
    let w = World::start().await;
    w.dns.set_txt(
        "_mta-sts.Example.COM.",
        vec![
            vec!["v=STSv1; ".into(), "id=".into(), "20240101".into()],
            vec!["v=spf1 -all".into()],
        ],
    );
    for (t, r) in resolvers(&w) {
        let l = r.txt_lookup("_mta-sts.example.com.").await.unwrap();
        let mut got = txts(&l);
        got.sort();
        assert_eq!(got, ["v=STSv1; id=20240101", "v=spf1 -all"], "{t:?}");
        // The strings arrive separately (the client must concatenate).
        let strings = l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.len()),
                _ => None,
            })
            .max();
        assert_eq!(strings, Some(3));
        assert!(l.answers().iter().all(|r| r.ttl == 0), "default TTL 0");
    }
    assert_eq!(
        w.dns
            .queries("_MTA-STS.example.com", support::RecordType::TXT),
        2
    );
    assert_eq!(
        w.dns
            .queries("_mta-sts.example.com", support::RecordType::A),
        0
    );
}

#[tokio::test]
async fn dns_changes_are_seen_at_once_and_ttl_is_settable() {
    let w = World::start().await;
    let r = resolver(w.dns_addr(), Transport::Udp, T);
    w.publish_txt("example.org", "one");
    let l = r.txt_lookup("_mta-sts.example.org.").await.unwrap();
    assert_eq!(txts(&l), ["v=STSv1; id=one"]);
    w.publish_txt("example.org", "two");
    let l = r.txt_lookup("_mta-sts.example.org.").await.unwrap();
    assert_eq!(txts(&l), ["v=STSv1; id=two"]);

    w.dns.set_ttl(3600);
    let l = r.txt_lookup("_mta-sts.example.org.").await.unwrap();
    assert_eq!(l.answers()[0].ttl, 3600);
    assert_eq!(
        w.dns
            .queries("_mta-sts.example.org", support::RecordType::TXT),
        3
    );
}

#[tokio::test]
async fn dns_nxdomain_vs_nodata_with_negative_ttl() {
    let w = World::start().await;
    w.dns.set_negative_ttl(123);
    w.dns.set_a("mta-sts.example.net", Ipv4Addr::LOCALHOST);
    w.dns.set_txt("_mta-sts.empty.example", vec![]);
    for (t, r) in resolvers(&w) {
        // NXDOMAIN
        let e = r.txt_lookup("_mta-sts.example.net.").await.unwrap_err();
        assert!(e.is_nx_domain(), "{t:?}: {e:?}");
        assert!(e.is_no_records_found(), "{t:?}: {e:?}");
        let NetError::Dns(DnsError::NoRecordsFound(nr)) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(nr.negative_ttl, Some(123), "{t:?}");
        assert_eq!(nr.response_code, ResponseCode::NXDomain);
        assert!(nr.soa.is_some());

        // NODATA: the name has an A record only.
        let e = r.txt_lookup("mta-sts.example.net.").await.unwrap_err();
        assert!(e.is_no_records_found() && !e.is_nx_domain(), "{t:?}: {e:?}");
        let NetError::Dns(DnsError::NoRecordsFound(nr)) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(nr.response_code, ResponseCode::NoError);
        assert_eq!(nr.negative_ttl, Some(123));

        // NODATA: an empty TXT RRset; and an empty non-terminal.
        let e = r.txt_lookup("_mta-sts.empty.example.").await.unwrap_err();
        assert!(e.is_no_records_found() && !e.is_nx_domain(), "{t:?}: {e:?}");
        let e = r.txt_lookup("example.net.").await.unwrap_err();
        assert!(e.is_no_records_found() && !e.is_nx_domain(), "{t:?}: {e:?}");
    }

    // remove() turns an existing name into NXDOMAIN.
    let r = resolver(w.dns_addr(), Transport::Udp, T);
    r.ipv4_lookup("mta-sts.example.net.").await.unwrap();
    w.dns.remove("mta-sts.example.net");
    let e = r.ipv4_lookup("mta-sts.example.net.").await.unwrap_err();
    assert!(e.is_nx_domain(), "{e:?}");
}

#[tokio::test]
async fn dns_servfail_and_refused_are_errors_not_negative_answers() {
    let w = World::start().await;
    w.publish_txt("broken.example", "x");
    w.dns
        .set_failure("_mta-sts.broken.example", ResponseCode::ServFail);
    w.dns
        .set_failure("_mta-sts.refused.example", ResponseCode::Refused);
    for (t, r) in resolvers(&w) {
        let e = r.txt_lookup("_mta-sts.broken.example.").await.unwrap_err();
        assert!(
            !e.is_no_records_found() && !e.is_nx_domain(),
            "{t:?}: {e:?}"
        );
        assert!(
            matches!(
                e,
                NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
            ),
            "{t:?}: {e:?}"
        );
        let e = r.txt_lookup("_mta-sts.refused.example.").await.unwrap_err();
        assert!(
            matches!(
                e,
                NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))
            ),
            "{t:?}: {e:?}"
        );
    }
    assert!(
        w.dns
            .queries("_mta-sts.broken.example", support::RecordType::TXT)
            >= 2
    );

    // Clearing the failure serves the data again.
    w.dns.clear_failure("_mta-sts.broken.example");
    let r = resolver(w.dns_addr(), Transport::Udp, T);
    let l = r.txt_lookup("_mta-sts.broken.example.").await.unwrap();
    assert_eq!(txts(&l), ["v=STSv1; id=x"]);
}

#[tokio::test]
async fn dns_cname_chain_is_answered_with_the_target_records() {
    let w = World::start().await;
    w.dns
        .set_cname("_mta-sts.alias.example", "_mta-sts.middle.example.");
    w.dns
        .set_cname("_mta-sts.middle.example", "_mta-sts.provider.example");
    w.publish_txt("provider.example", "fromprovider");
    w.dns
        .set_cname("mta-sts.alias.example", "mta-sts.provider.example");
    w.dns
        .set_a("mta-sts.provider.example", Ipv4Addr::new(127, 0, 0, 1));
    for (t, r) in resolvers(&w) {
        let l = r.txt_lookup("_mta-sts.alias.example.").await.unwrap();
        assert_eq!(txts(&l), ["v=STSv1; id=fromprovider"], "{t:?}");
        let cnames = l
            .answers()
            .iter()
            .filter(|r| matches!(r.data, RData::CNAME(_)))
            .count();
        assert_eq!(cnames, 2, "{t:?}: {:?}", l.answers());
        let l = r.ipv4_lookup("mta-sts.alias.example.").await.unwrap();
        assert_eq!(a_records(&l), [Ipv4Addr::LOCALHOST], "{t:?}");
    }
    // One query per lookup: the whole chain is in the answer.
    assert_eq!(
        w.dns
            .queries("_mta-sts.alias.example", support::RecordType::TXT),
        2
    );
    assert_eq!(
        w.dns
            .queries("_mta-sts.provider.example", support::RecordType::TXT),
        0
    );

    // A CNAME to a missing name: NXDOMAIN.
    w.dns
        .set_cname("_mta-sts.dangling.example", "_mta-sts.nowhere.example");
    let r = resolver(w.dns_addr(), Transport::Udp, T);
    let res = r.txt_lookup("_mta-sts.dangling.example.").await;
    match res {
        Ok(l) => assert!(txts(&l).is_empty(), "{:?}", l.answers()),
        Err(e) => assert!(e.is_no_records_found(), "{e:?}"),
    }
}

#[tokio::test]
async fn dns_timeout_never_answers_but_counts() {
    let w = World::start().await;
    w.dns.set_timeout("_mta-sts.slow.example");
    for (t, _) in resolvers(&w) {
        let r = resolver(w.dns_addr(), t, Duration::from_millis(200));
        let start = Instant::now();
        let e = r.txt_lookup("_mta-sts.slow.example.").await.unwrap_err();
        assert!(matches!(e, NetError::Timeout), "{t:?}: {e:?}");
        assert!(!e.is_no_records_found());
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    assert!(
        w.dns
            .queries("_mta-sts.slow.example", support::RecordType::TXT)
            >= 2
    );
    // Other names still answer.
    w.publish_txt("fine.example", "ok");
    let r = resolver(w.dns_addr(), Transport::Udp, T);
    assert_eq!(
        txts(&r.txt_lookup("_mta-sts.fine.example.").await.unwrap()),
        ["v=STSv1; id=ok"]
    );
}

#[tokio::test]
async fn dns_large_txt_over_udp_falls_back_to_tcp() {
    let w = World::start().await;
    let strings: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "x".repeat(200)))
        .collect();
    w.dns.set_txt("big.example", vec![strings.clone()]);
    let r = resolver(w.dns_addr(), Transport::UdpTcp, T);
    let l = r.txt_lookup("big.example.").await.unwrap();
    assert_eq!(txts(&l), [strings.concat()]);
}

// ---------------------------------------------------------------- HTTPS

async fn get(
    w: &World,
    domain: &str,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let host = support::policy_host(domain);
    let c = https_client(
        &std::fs::read(w.ca_file()).unwrap(),
        &[host.as_str()],
        timeout,
    );
    c.get(w.policy_url(domain)).send().await
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" / ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[tokio::test]
async fn https_valid_policy_and_request_recording() {
    let w = World::start().await;
    let policy = support::simple_policy("example.com");
    w.publish("example.com", "abc", &policy);
    let resp = get(&w, "example.com", T).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/plain"
    );
    assert_eq!(resp.text().await.unwrap(), policy);
    assert_eq!(w.https.requests("mta-sts.example.com"), 1);
    assert_eq!(w.https.requests("MTA-STS.example.com."), 1);
    let head = w.https.last_request("mta-sts.example.com").unwrap();
    assert!(
        head.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
        "{head}"
    );
    let host_line = format!("host: mta-sts.example.com:{}", w.https_port());
    assert!(
        head.to_ascii_lowercase().lines().any(|l| l == host_line),
        "{head}"
    );

    // The reply can change at run time.
    w.https
        .set_reply("mta-sts.example.com", Reply::Policy("changed".into()));
    let resp = get(&w, "example.com", T).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "changed");
    assert_eq!(w.https.requests("mta-sts.example.com"), 2);
    assert_eq!(w.https.requests("mta-sts.other.example"), 0);
}

#[tokio::test]
async fn https_bad_certificates_are_rejected_by_the_client() {
    let w = World::start().await;
    let cases = [
        (CertKind::WrongName, "wrongname.example", "NotValidForName"),
        (CertKind::Expired, "expired.example", "Expired"),
        (CertKind::Untrusted, "untrusted.example", "UnknownIssuer"),
        (CertKind::SelfSigned, "selfsigned.example", "UnknownIssuer"),
        (CertKind::CnOnly, "cnonly.example", "NotValidForName"),
    ];
    for (kind, domain, why) in cases {
        let host = support::policy_host(domain);
        w.https.set(&host, kind, Reply::Policy("x".into()));
        let e = get(&w, domain, T).await.unwrap_err();
        let text = format!("{} / {e:?}", chain(&e));
        assert!(e.is_connect(), "{kind:?}: {text}");
        assert!(text.contains(why), "{kind:?}: expected {why}: {text}");
        assert_eq!(w.https.handshakes(&host), 1, "{kind:?}");
        assert_eq!(w.https.requests(&host), 0, "{kind:?}");
    }

    // Switching to a valid certificate makes it work.
    w.https.set_cert("mta-sts.expired.example", CertKind::Valid);
    let resp = get(&w, "expired.example", T).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "x");

    // An unknown (or removed) host: no certificate, the handshake fails.
    w.https.remove("mta-sts.expired.example");
    let e = get(&w, "expired.example", T).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let e = get(&w, "never-set.example", T).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
}

#[tokio::test]
async fn https_status_redirect_and_content_type() {
    let w = World::start().await;
    w.https
        .set("mta-sts.a.example", CertKind::Valid, Reply::status(404));
    w.https.set(
        "mta-sts.b.example",
        CertKind::Valid,
        Reply::redirect(301, "https://mta-sts.a.example/.well-known/mta-sts.txt"),
    );
    w.https.set(
        "mta-sts.c.example",
        CertKind::Valid,
        Reply::with_type(200, "text/html; charset=utf-8", "<html></html>"),
    );
    w.https.set(
        "mta-sts.d.example",
        CertKind::Valid,
        Reply::Raw {
            status: 200,
            headers: vec![],
            body: b"no content type".to_vec(),
        },
    );
    let r = get(&w, "a.example", T).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = get(&w, "b.example", T).await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        "https://mta-sts.a.example/.well-known/mta-sts.txt"
    );
    assert_eq!(
        w.https.requests("mta-sts.a.example"),
        1,
        "redirect not followed"
    );
    let r = get(&w, "c.example", T).await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let r = get(&w, "d.example", T).await.unwrap();
    assert!(r.headers().get("content-type").is_none());
    assert_eq!(r.text().await.unwrap(), "no content type");
}

/// Read at most `cap + 1` bytes of the body; `Err` on a body error.
async fn read_capped(mut r: reqwest::Response, cap: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() > cap {
            break;
        }
    }
    Ok(out)
}

#[tokio::test]
async fn https_huge_bodies_and_lying_content_length() {
    const CAP: usize = 64 * 1024;
    let w = World::start().await;
    let set = |d: &str, reply| {
        w.https
            .set(&support::policy_host(d), CertKind::Valid, reply)
    };
    // Honest but too big.
    set(
        "a.example",
        Reply::Huge {
            declared_len: Some(1 << 20),
            actual_len: 1 << 20,
        },
    );
    // No Content-Length, close-delimited.
    set(
        "b.example",
        Reply::Huge {
            declared_len: None,
            actual_len: 1 << 20,
        },
    );
    // Claims less than it sends.
    set(
        "c.example",
        Reply::Huge {
            declared_len: Some(100),
            actual_len: 1 << 20,
        },
    );
    // Claims more than it sends.
    set(
        "d.example",
        Reply::Huge {
            declared_len: Some(1 << 20),
            actual_len: 1000,
        },
    );
    set(
        "e.example",
        Reply::HugeChunked {
            actual_len: 1 << 20,
        },
    );

    let r = get(&w, "a.example", T).await.unwrap();
    assert_eq!(r.content_length(), Some(1 << 20));
    let body = read_capped(r, CAP).await.unwrap();
    assert!(body.len() > CAP);
    assert!(body.starts_with(b"version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx00000000.example.net\nmx: mx00000001.example.net\n"));

    let r = get(&w, "b.example", T).await.unwrap();
    assert_eq!(r.content_length(), None);
    assert!(read_capped(r, CAP).await.unwrap().len() > CAP);

    let r = get(&w, "c.example", T).await.unwrap();
    assert_eq!(r.content_length(), Some(100));
    assert_eq!(read_capped(r, CAP).await.unwrap().len(), 100);

    let r = get(&w, "d.example", T).await.unwrap();
    let e = read_capped(r, CAP).await.unwrap_err();
    assert!(e.is_body() || e.is_decode(), "{e:?}");

    let r = get(&w, "e.example", T).await.unwrap();
    assert_eq!(r.content_length(), None);
    assert!(read_capped(r, CAP).await.unwrap().len() > CAP);

    // The whole of a chunked body arrives intact when read to the end.
    set(
        "f.example",
        Reply::HugeChunked {
            actual_len: 100_000,
        },
    );
    let r = get(&w, "f.example", T).await.unwrap();
    let body = r.bytes().await.unwrap();
    let mut expected = Vec::new();
    let mut f = support::https::filler(100_000);
    while let Some(c) = f.next_chunk(7777) {
        expected.extend(c);
    }
    assert_eq!(body.len(), 100_000);
    assert!(body == expected, "chunked body differs from the filler");
}

#[tokio::test]
async fn https_hang_and_close_hit_the_client() {
    let w = World::start().await;
    w.https
        .set("mta-sts.hang.example", CertKind::Valid, Reply::Hang);
    w.https
        .set("mta-sts.close.example", CertKind::Valid, Reply::Close);
    let start = Instant::now();
    let e = get(&w, "hang.example", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(w.https.requests("mta-sts.hang.example"), 1);

    let e = get(&w, "close.example", T).await.unwrap_err();
    assert!(!e.is_timeout(), "{e:?}");
    assert_eq!(w.https.requests("mta-sts.close.example"), 1);

    // A hanging connection does not block others.
    w.publish("ok.example", "1", "body");
    let resp = get(&w, "ok.example", T).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "body");
}

#[tokio::test]
async fn https_slow_and_drip() {
    let w = World::start().await;
    w.https.set(
        "mta-sts.slow.example",
        CertKind::Valid,
        Reply::slow(Duration::from_millis(150), Reply::Policy("late".into())),
    );
    w.https.set(
        "mta-sts.drip.example",
        CertKind::Valid,
        Reply::Drip {
            interval: Duration::from_millis(10),
            body: "0123456789".into(),
        },
    );
    let start = Instant::now();
    let r = get(&w, "slow.example", T).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(r.text().await.unwrap(), "late");
    // Too slow for a short deadline.
    let e = get(&w, "slow.example", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");

    let start = Instant::now();
    let r = get(&w, "drip.example", T).await.unwrap();
    assert_eq!(r.content_length(), Some(10));
    assert_eq!(r.text().await.unwrap(), "0123456789");
    assert!(start.elapsed() >= Duration::from_millis(100));
    // The headers arrive at once; the body misses a short total deadline.
    let r = get(&w, "drip.example", Duration::from_millis(50)).await;
    match r {
        Ok(r) => assert!(r.text().await.unwrap_err().is_timeout()),
        Err(e) => assert!(e.is_timeout(), "{e:?}"),
    }
}

#[tokio::test]
async fn https_down_refuses_connections_then_comes_back() {
    let w = World::start().await;
    w.publish("example.com", "1", "up");
    w.https.set_down(true);
    let e = get(&w, "example.com", T).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    w.https.set_down(false);
    let r = get(&w, "example.com", T).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "up");
    assert_eq!(w.https.requests("mta-sts.example.com"), 1);
}

#[tokio::test]
async fn world_publish_end_to_end_through_dns_and_https() {
    let w = World::start().await;
    let policy = support::simple_policy("example.com");
    w.publish("Example.COM", "20250101T000000", &policy);

    let r = resolver(w.dns_addr(), Transport::UdpTcp, T);
    let l = r.txt_lookup("_mta-sts.example.com.").await.unwrap();
    assert_eq!(txts(&l), ["v=STSv1; id=20250101T000000"]);
    let l = r.ipv4_lookup("mta-sts.example.com.").await.unwrap();
    let ip = a_records(&l)[0];
    assert_eq!(IpAddr::from(ip), IpAddr::from(Ipv4Addr::LOCALHOST));

    // Fetch with tokio-rustls directly, trusting only ca_file, SNI = policy host.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.ca.root_der()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect((ip, w.https_port()))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("mta-sts.example.com").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Type: text/plain\r\n"), "{text}");
    assert!(text.ends_with(&format!("\r\n\r\n{policy}")), "{text}");
    assert_eq!(
        w.https.last_request("mta-sts.example.com").unwrap(),
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com"
    );

    // unpublish removes everything.
    w.unpublish("example.com");
    let e = r.txt_lookup("_mta-sts.example.com.").await.unwrap_err();
    assert!(e.is_nx_domain(), "{e:?}");
}

/// What a resolver built with `ResolverOpts::default()` does against the fixture:
/// the facts the daemon's resolver configuration has to take into account.
#[tokio::test]
async fn hickory_default_options_retry_and_cache_negative_answers() {
    use hickory_resolver::config::ResolverOpts;
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let w = World::start().await;
    w.dns
        .set_failure("_mta-sts.sf.example", ResponseCode::ServFail);
    w.dns.set_timeout("_mta-sts.to.example");
    let mut b = TokioResolver::builder_with_config(
        support::client::resolver_config(w.dns_addr(), Transport::UdpTcp),
        TokioRuntimeProvider::default(),
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(100);
    *b.options_mut() = opts;
    let r = b.build().unwrap();

    // attempts = 2 (default): one lookup sends 3 queries on SERVFAIL or timeout.
    let e = r.txt_lookup("_mta-sts.sf.example.").await.unwrap_err();
    assert!(matches!(
        e,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
    ));
    assert_eq!(
        w.dns
            .queries("_mta-sts.sf.example", support::RecordType::TXT),
        3
    );
    let e = r.txt_lookup("_mta-sts.to.example.").await.unwrap_err();
    assert!(matches!(e, NetError::Timeout), "{e:?}");
    assert_eq!(
        w.dns
            .queries("_mta-sts.to.example", support::RecordType::TXT),
        3
    );

    // The resolver's own cache keeps NXDOMAIN for the negative TTL (SOA): a record
    // published afterwards is invisible until then unless negative_max_ttl is lowered.
    let e = r.txt_lookup("_mta-sts.late.example.").await.unwrap_err();
    assert!(e.is_nx_domain());
    w.publish_txt("late.example", "now");
    let e = r.txt_lookup("_mta-sts.late.example.").await.unwrap_err();
    assert!(e.is_nx_domain(), "served from hickory's negative cache");
    assert_eq!(
        w.dns
            .queries("_mta-sts.late.example", support::RecordType::TXT),
        1
    );
    r.clear_cache();
    let l = r.txt_lookup("_mta-sts.late.example.").await.unwrap();
    assert_eq!(txts(&l), ["v=STSv1; id=now"]);
}
