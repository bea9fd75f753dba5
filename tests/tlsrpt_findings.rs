//! SPEC 8.3 against the real fetch path: what the daemon's cache says about a domain
//! whose `_mta-sts` record exists but whose policy it could not fetch, parse or
//! authenticate (the in-process DNS and HTTPS servers play the domains). The
//! collector relabels Postfix's `no-policy-found` sessions of such a domain with it;
//! the answer stays `NOTFOUND` (SPEC 6.2: mail is never deferred for it).

mod harness;
mod support;

use harness::{enforce, Client, TestClock};
use mtastsd::tlsrpt::findings::FindingKind;
use support::{policy_host, CertKind, Reply, World};

const NOTFOUND: &str = "NOTFOUND ";

/// A domain, how its policy host serves, and the finding expected (kind, a piece of
/// the reason), or none.
type Case = (
    &'static str,
    CertKind,
    Reply,
    Option<(FindingKind, &'static str)>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_fetch_is_a_finding_and_a_good_policy_is_none_spec_8_3() {
    let world = World::start().await;
    let good = |d: &str| enforce(&[&format!("mx.{d}")]);
    let cases: Vec<Case> = vec![
        (
            "missing.example",
            CertKind::Valid,
            Reply::status(404),
            Some((FindingKind::FetchError, "HTTP status 404")),
        ),
        (
            "html.example",
            CertKind::Valid,
            Reply::with_type(200, "text/html", good("html.example")),
            Some((FindingKind::FetchError, "Content-Type")),
        ),
        (
            "expired.example",
            CertKind::Expired,
            Reply::Policy(good("expired.example")),
            Some((FindingKind::WebPkiInvalid, "stage=tls")),
        ),
        (
            "wrongname.example",
            CertKind::WrongName,
            Reply::Policy(good("wrongname.example")),
            Some((FindingKind::WebPkiInvalid, "stage=tls")),
        ),
        (
            "untrusted.example",
            CertKind::Untrusted,
            Reply::Policy(good("untrusted.example")),
            Some((FindingKind::WebPkiInvalid, "stage=tls")),
        ),
        (
            "invalid.example",
            CertKind::Valid,
            Reply::Policy("version: STSv1\nmode: enforce\n".into()),
            Some((FindingKind::PolicyInvalid, "stage=parse")),
        ),
        (
            "good.example",
            CertKind::Valid,
            Reply::Policy(good("good.example")),
            None,
        ),
    ];
    for (domain, cert, reply, _) in &cases {
        world.publish(domain, "1", "unused");
        world.https.set(&policy_host(domain), *cert, reply.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = harness::start(harness::config(&world, dir.path()), TestClock::new()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    for (domain, _, _, want) in &cases {
        let answer = c.query("postfix", domain).await;
        let finding = daemon.cache().finding(domain);
        match want {
            None => {
                assert!(answer.starts_with("OK secure"), "{domain}: {answer}");
                assert_eq!(finding, None, "{domain}");
            }
            Some((kind, text)) => {
                // SPEC 6.2: the failure never defers mail.
                assert_eq!(answer, NOTFOUND, "{domain}");
                let f = finding.unwrap_or_else(|| panic!("{domain}: no finding"));
                assert_eq!(f.result, *kind, "{domain}: {f:?}");
                assert!(f.reason.contains(text), "{domain}: {f:?}");
            }
        }
    }
    // A domain nobody heard of has no finding (and asking does not resolve it).
    assert_eq!(daemon.cache().finding("never.example"), None);
    daemon.shutdown().await;
}

/// The finding lasts while the record is published and the fetch keeps failing; a
/// successful fetch or the record's removal ends it (SPEC 8.3 reports domains that
/// publish a record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_ends_when_the_fetch_succeeds_or_the_record_goes_spec_8_3() {
    let world = World::start().await;
    for d in ["fixed.example", "gone.example"] {
        world.publish(d, "1", "unused");
        world
            .https
            .set(&policy_host(d), CertKind::Valid, Reply::status(503));
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let daemon = harness::start(harness::config(&world, dir.path()), clock.clone()).await;
    let mut c = Client::connect(daemon.inet_addr().unwrap()).await;
    for d in ["fixed.example", "gone.example"] {
        assert_eq!(c.query("postfix", d).await, NOTFOUND, "{d}");
        assert!(daemon.cache().finding(d).is_some(), "{d}");
    }
    // The policy host recovers under a new id; the other domain drops its record.
    world.publish("fixed.example", "2", &enforce(&["mx.fixed.example"]));
    world.unpublish("gone.example");
    // Past the one-minute back-off of a failed resolution (SPEC 5.6).
    clock.advance(61);
    let fixed = c.query("postfix", "fixed.example").await;
    assert!(fixed.starts_with("OK secure"), "{fixed}");
    assert_eq!(c.query("postfix", "gone.example").await, NOTFOUND);
    assert_eq!(daemon.cache().finding("fixed.example"), None);
    assert_eq!(daemon.cache().finding("gone.example"), None);
    daemon.shutdown().await;
}
