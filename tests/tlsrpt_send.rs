//! SPEC 8.4 and 8.6, the report sender end to end on real parts: the counts in a
//! real SQLite store (as the collector commits them), the report built once, stored,
//! POSTed to the in-process HTTPS server when due, retried with back-off and given up
//! after a day, never sent twice; old days pruned. Times are passed in (unix
//! seconds), so a day of retries takes no time.

mod support;

use std::time::Duration;

use mtastsd::tlsrpt::aggregate::{Aggregate, Day};
use mtastsd::tlsrpt::deliver::https_client;
use mtastsd::tlsrpt::sender::{Sender, Settings, SETTLE_SECS};
use mtastsd::tlsrpt::store::{DeliveryState, TlsrptStore, SENDING_LEASE};
use support::tlsrpt::{counts, datagrams, gunzip};
use support::{CertKind, Reply, World};

const HOST: &str = "localhost";

fn settings(delay: Duration) -> Settings {
    Settings {
        send: true,
        organization_name: "Example Mail".into(),
        contact_info: "tlsrpt@mail.example".into(),
        submitter: "mail.example".into(),
        from: "tlsrpt-noreply@mail.example".into(),
        sendmail: vec!["/bin/false".into()],
        delay,
        max_details: 100,
        keep_days: 14,
        http_timeout: Duration::from_secs(10),
        sendmail_timeout: Duration::from_secs(10),
    }
}

struct Setup {
    world: World,
    dir: tempfile::TempDir,
    day: Day,
}

impl Setup {
    async fn new() -> Setup {
        let world = World::start().await;
        let dir = tempfile::tempdir().unwrap();
        Setup {
            world,
            dir,
            day: Day::parse("2026-11-30").unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("tlsrpt.sqlite")
    }

    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.world.https_port())
    }

    fn sender(&self, delay: Duration) -> Sender {
        let roots = mtastsd::resolver::https::trust_roots(Some(self.world.ca_file())).unwrap();
        Sender::open(&self.path(), https_client(roots).unwrap(), settings(delay)).unwrap()
    }

    /// What the collector's writer does: commit counts.
    fn commit(&self, counts: &Aggregate) {
        TlsrptStore::open(&self.path())
            .unwrap()
            .add(counts)
            .unwrap();
    }
}

/// SPEC 8.4: after the day (and the settle time), one report per domain, due within
/// the spread; POSTed once when due; another round sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_counts_become_one_report_posted_once_when_due_spec_8_4() {
    let s = Setup::new().await;
    s.world.https.set(
        HOST,
        CertKind::Valid,
        Reply::with_type(200, "text/plain", "ok"),
    );
    let url = s.url("/v1/report");
    s.commit(&counts(s.day, &datagrams("rpt.example", &url, 7, 3)));
    let mut sender = s.sender(Duration::from_secs(4 * 3600));

    // During the day and just after it: nothing to build yet.
    let day_end = s.day.end_unix() + 1;
    assert_eq!(sender.plan(day_end - 10).unwrap(), 0);
    assert_eq!(sender.plan(day_end + SETTLE_SECS - 1).unwrap(), 0);
    let now = day_end + SETTLE_SECS;
    assert_eq!(sender.plan(now).unwrap(), 1);
    assert_eq!(sender.plan(now).unwrap(), 0, "built once");

    let stored = sender
        .store()
        .report(s.day, "rpt.example")
        .unwrap()
        .unwrap();
    let d = &stored.deliveries[0];
    assert_eq!(stored.deliveries.len(), 1);
    assert_eq!(d.uri, url);
    assert!(
        d.next_try >= now && d.next_try < now + 4 * 3600,
        "due within the spread: {} after {now}",
        d.next_try
    );
    // Not before it is due.
    let early = sender.deliver_due(d.next_try - 1).await.unwrap();
    assert_eq!(early.sent + early.retried + early.dropped, 0);
    assert_eq!(s.world.https.requests(HOST), 0);

    let round = sender.deliver_due(d.next_try).await.unwrap();
    assert_eq!(round.sent, 1, "{round:?}");
    assert_eq!(s.world.https.requests(HOST), 1);
    let body = gunzip(&s.world.https.last_body(HOST).unwrap());
    assert_eq!(body, stored.json, "the stored report, byte for byte");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["report-id"], stored.report_id.as_str());
    assert_eq!(
        report["date-range"]["start-datetime"],
        "2026-11-30T00:00:00Z"
    );
    let p = &report["policies"][0];
    assert_eq!(p["policy"]["policy-domain"], "rpt.example");
    assert_eq!(p["summary"]["total-successful-session-count"], 7);
    assert_eq!(p["summary"]["total-failure-session-count"], 3);
    assert_eq!(
        p["failure-details"][0]["result-type"],
        "certificate-host-mismatch"
    );
    assert_eq!(
        p["failure-details"][0]["receiving-mx-helo"],
        "mx.rpt.example"
    );
    assert_eq!(p["failure-details"][0]["failed-session-count"], 3);

    // Never twice (SPEC 8.4): later rounds, and a new sender on the same file.
    let later = sender.round(d.next_try + 3600).await;
    assert_eq!((later.planned, later.sent), (0, 0));
    drop(sender);
    let mut again = s.sender(Duration::from_secs(4 * 3600));
    let r = again.round(d.next_try + 7200).await;
    assert_eq!((r.planned, r.sent), (0, 0));
    assert_eq!(s.world.https.requests(HOST), 1);
    let st = again.store().report(s.day, "rpt.example").unwrap().unwrap();
    assert_eq!(st.deliveries[0].state, DeliveryState::Sent);
}

/// RFC 8460 §5.5, SPEC 8.4: a failing endpoint is retried with growing waits, then
/// given up a day after the first attempt; a permanent failure is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_for_a_day_then_dropped_spec_8_4() {
    let s = Setup::new().await;
    s.world.https.set(HOST, CertKind::Valid, Reply::status(503));
    let failing = s.url("/down");
    s.commit(&counts(s.day, &datagrams("down.example", &failing, 1, 0)));
    let mut sender = s.sender(Duration::ZERO);
    let start = s.day.end_unix() + 1 + SETTLE_SECS;
    assert_eq!(sender.plan(start).unwrap(), 1);

    let mut now = start;
    let mut waits = Vec::new();
    loop {
        let r = sender.deliver_due(now).await.unwrap();
        let d = sender
            .store()
            .report(s.day, "down.example")
            .unwrap()
            .unwrap()
            .deliveries
            .remove(0);
        if d.state == DeliveryState::Dropped {
            assert_eq!(r.dropped, 1);
            assert!(d.last_error.unwrap().contains("503"));
            break;
        }
        assert_eq!((r.retried, d.state), (1, DeliveryState::Pending), "{d:?}");
        waits.push(d.next_try - now);
        now = d.next_try;
        assert!(waits.len() < 20, "still retrying after {waits:?}");
    }
    assert!(now <= start + 86_400, "retried past a day: {now}");
    assert!(waits[0] >= 300 && waits[1] > waits[0], "{waits:?}");
    assert_eq!(s.world.https.requests(HOST), waits.len() + 1);
    // Dropped means dropped: nothing more is attempted.
    let r = sender.deliver_due(now + 86_400).await.unwrap();
    assert_eq!(r.sent + r.retried + r.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_not_retried_spec_8_4() {
    let s = Setup::new().await;
    s.world.https.set(HOST, CertKind::Valid, Reply::status(404));
    s.commit(&counts(
        s.day,
        &datagrams("gone.example", &s.url("/x"), 1, 0),
    ));
    let mut sender = s.sender(Duration::ZERO);
    let now = s.day.end_unix() + 1 + SETTLE_SECS;
    let r = sender.round(now).await;
    assert_eq!((r.planned, r.dropped), (1, 1), "{r:?}");
    assert_eq!(s.world.https.requests(HOST), 1);
    let r = sender.round(now + 86_400).await;
    assert_eq!(r.sent + r.retried + r.dropped, 0);
    assert_eq!(s.world.https.requests(HOST), 1);
}

/// A crash between "sending" and its outcome: after a restart the delivery is
/// attempted once more (the same report, the same report-id), then never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_interrupted_by_a_crash_is_resent_once_with_the_same_report_id() {
    let s = Setup::new().await;
    s.world.https.set(HOST, CertKind::Valid, Reply::status(200));
    s.commit(&counts(
        s.day,
        &datagrams("crash.example", &s.url("/r"), 2, 0),
    ));
    let now = s.day.end_unix() + 1 + SETTLE_SECS;
    let mut sender = s.sender(Duration::ZERO);
    sender.plan(now).unwrap();
    // The crash: the attempt was marked, and its process died.
    {
        let mut store = TlsrptStore::open(&s.path()).unwrap();
        let d = store.due(now, 10).unwrap().remove(0);
        store.mark_sending(&d.id, now).unwrap();
    }
    drop(sender);
    let mut sender = s.sender(Duration::ZERO);
    // Held while the crashed attempt might still be running, then taken again.
    let r = sender.round(now + 1).await;
    assert_eq!(r.sent, 0, "{r:?}");
    let later = now + SENDING_LEASE;
    let r = sender.round(later).await;
    assert_eq!(r.sent, 1, "{r:?}");
    let r = sender.round(later + 1).await;
    assert_eq!(r.sent, 0);
    assert_eq!(s.world.https.requests(HOST), 1);
    let stored = sender
        .store()
        .report(s.day, "crash.example")
        .unwrap()
        .unwrap();
    let body = gunzip(&s.world.https.last_body(HOST).unwrap());
    assert_eq!(body, stored.json);
}

/// SPEC 8.4: every `rua` URI gets the report; a record without a usable one keeps
/// it unsent. SPEC 8.6: days older than keep_days are pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rua_gets_the_report_and_old_days_are_pruned_spec_8_4_8_6() {
    let s = Setup::new().await;
    s.world.https.set(HOST, CertKind::Valid, Reply::status(202));
    let two = format!("{},{}", s.url("/a"), s.url("/b"));
    s.commit(&counts(s.day, &datagrams("two.example", &two, 1, 0)));
    let now = s.day.end_unix() + 1 + SETTLE_SECS;
    let mut sender = s.sender(Duration::ZERO);
    let r = sender.round(now).await;
    assert_eq!((r.planned, r.sent), (1, 2), "{r:?}");
    assert_eq!(s.world.https.requests(HOST), 2);

    // keep_days = 14: fifteen days on, the day is gone.
    sender.round(now + 15 * 86_400).await;
    assert!(sender
        .store()
        .report(s.day, "two.example")
        .unwrap()
        .is_none());
    assert!(sender
        .store()
        .counts(s.day, None)
        .unwrap()
        .iter()
        .next()
        .is_none());
}
