use super::*;
use crate::tlsrpt::datagram::parse;
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;

const DAY: Day = Day(20_468); // 2026-01-15

fn golden(name: &str) -> crate::tlsrpt::datagram::Datagram {
    let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
    parse(std::fs::read(&path).unwrap().trim_ascii_end()).unwrap()
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tlsrpt.sqlite");
    (dir, path)
}

fn policy(t: PolicyType, domain: &str, strings: &[&str], mx: &[&str]) -> Policy {
    Policy {
        policy_type: t,
        domain: domain.into(),
        strings: strings.iter().map(|s| s.to_string()).collect(),
        mx_hosts: mx.iter().map(|s| s.to_string()).collect(),
    }
}

fn detail(result_type: ResultType, ip: &str, info: &str) -> FailureDetail {
    FailureDetail {
        result_type,
        sending_ip: "192.0.2.1".into(),
        receiving_mx: "mx.a.example".into(),
        receiving_helo: String::new(),
        receiving_ip: ip.into(),
        additional_info: info.into(),
        reason_code: String::new(),
    }
}

fn key(day: Day, domain: &str, record: &str, policy: Policy) -> Key {
    Key {
        day,
        domain: domain.into(),
        record: record.into(),
        policy,
    }
}

fn counts(successful: u64, failed: u64, failures: &[(FailureDetail, u64)]) -> Counts {
    Counts {
        successful,
        failed,
        failures: failures.iter().cloned().collect(),
    }
}

/// Several days, domains, records and policies, details with absent fields,
/// strings that need quoting.
fn sample() -> Aggregate {
    let sts = policy(
        PolicyType::Sts,
        "a.example",
        &[
            "version: STSv1",
            "mode: enforce",
            "mx: \"odd\", [x]",
            "max_age: 86400",
        ],
        &["*.a.example", "mx.a.example"],
    );
    let tlsa = policy(PolicyType::Tlsa, "a.example", &["3 1 1 AB"], &[]);
    let none = policy(PolicyType::NoPolicyFound, "b.example", &[], &[]);
    let mut a = Aggregate::new();
    a.add(DAY, golden("sts-success.json"));
    a.add(DAY, golden("sts-failure.json"));
    a.add(DAY, golden("nopol-failure.json"));
    a.insert(
        key(
            DAY,
            "a.example",
            "v=TLSRPTv1; rua=mailto:r@a.example",
            sts.clone(),
        ),
        counts(
            7,
            3,
            &[
                (detail(ResultType::ValidationFailure, "198.51.100.1", ""), 2),
                (
                    detail(ResultType::ValidationFailure, "198.51.100.2", "é ünïcode"),
                    1,
                ),
            ],
        ),
    );
    a.insert(
        key(DAY, "a.example", "v=TLSRPTv1; rua=mailto:r@a.example", tlsa),
        counts(1, 1, &[(detail(ResultType::TlsaInvalid, "", ""), 1)]),
    );
    a.insert(
        key(
            Day(DAY.0 + 1),
            "a.example",
            "v=TLSRPTv1; rua=https://r.example/",
            sts,
        ),
        counts(0, 0, &[]),
    );
    a.insert(
        key(Day(DAY.0 + 2), "b.example", "", none),
        counts(u64::from(u32::MAX) + 5, 0, &[]),
    );
    a
}

fn days(store: &TlsrptStore, days: impl IntoIterator<Item = Day>) -> Aggregate {
    let mut all = Aggregate::new();
    for d in days {
        all.merge(store.counts(d, None).unwrap());
    }
    all
}

// The contract: the collector hands the store to its writer thread.
#[test]
fn store_is_send() {
    fn send<T: Send>() {}
    send::<TlsrptStore>();
    send::<TlsrptStoreError>();
}

// SPEC 8.2: every field of every key and count comes back as it went in.
#[test]
fn round_trip() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let a = sample();
    store.add(&a).unwrap();
    assert_eq!(days(&store, (DAY.0 - 1..DAY.0 + 4).map(Day)), a);
    // One domain of one day.
    let one = store.counts(DAY, Some("rpt.example")).unwrap();
    let mut want = Aggregate::new();
    for (k, c) in a.report_entries(DAY, "rpt.example") {
        want.insert(k.clone(), c.clone());
    }
    assert!(!want.is_empty());
    assert_eq!(one, want);
    assert!(store.counts(DAY, Some("c.example")).unwrap().is_empty());
    // And after a restart.
    drop(store);
    let store = TlsrptStore::open(&path).unwrap();
    assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), a);
}

// SPEC 8.2, 8.6: the daemon's two connections, the collector's writer (adding,
// its policy ids remembered) and the sender (pruning, deleting the policies no kept
// day uses): a policy last seen on a pruned day and seen again later is counted.
#[test]
fn a_policy_pruned_by_another_connection_is_counted_when_seen_again() {
    let (_dir, path) = temp();
    let mut writer = TlsrptStore::open(&path).unwrap();
    let one = |day: Day| {
        let mut a = Aggregate::new();
        a.add(day, golden("sts-success.json"));
        a
    };
    writer.add(&one(DAY)).unwrap();
    let mut pruner = TlsrptStore::open(&path).unwrap();
    let later = Day(DAY.0 + 20);
    assert!(pruner.prune(Day(later.0 - 14)).unwrap() > 0);
    writer.add(&one(later)).unwrap();
    assert_eq!(pruner.counts(later, None).unwrap(), one(later));
}

// SPEC 8.2: counts are added, never replaced; a policy is stored once.
#[test]
fn add_twice_is_the_sum() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let a = sample();
    store.add(&a).unwrap();
    store.add(&a).unwrap();
    // A new store (cold policy ids) adds to the same rows.
    drop(store);
    let mut store = TlsrptStore::open(&path).unwrap();
    store.add(&a).unwrap();
    let mut want = a.clone();
    want.merge(a.clone());
    want.merge(a.clone());
    assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), want);
    let policies: i64 = store
        .conn
        .query_row("SELECT count(*) FROM policy", [], |r| r.get(0))
        .unwrap();
    let distinct: HashSet<_> = a
        .iter()
        .map(|(k, _)| (&k.domain, &k.record, &k.policy))
        .collect();
    assert_eq!(policies as usize, distinct.len());
}

// Counts saturate instead of turning into SQLite floats.
#[test]
fn counts_saturate() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let mut a = Aggregate::new();
    let k = key(
        DAY,
        "a.example",
        "",
        policy(PolicyType::Sts, "a.example", &[], &[]),
    );
    let d = detail(ResultType::ValidationFailure, "", "");
    a.insert(
        k.clone(),
        counts(u64::MAX - 1, 1 << 62, &[(d.clone(), 1 << 62)]),
    );
    for _ in 0..3 {
        store.add(&a).unwrap();
    }
    let back = store.counts(DAY, None).unwrap();
    let c = back.iter().next().unwrap().1;
    let max = i64::MAX as u64;
    assert_eq!((c.successful, c.failed, c.failures[&d]), (max, max, max));
}

#[test]
fn file_is_private_and_wal() {
    let (_dir, path) = temp();
    let store = TlsrptStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (journal, vacuum): (String, i64) = store
        .conn
        .query_row(
            "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
             (SELECT auto_vacuum FROM pragma_auto_vacuum)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((journal.as_str(), vacuum), ("wal", 2));
}

// SPEC 8.4: the record seen last decides where the report goes.
#[test]
fn record_seen_last() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let p = policy(PolicyType::Sts, "a.example", &[], &[]);
    let one = |record: &str, n| {
        let mut a = Aggregate::new();
        a.insert(key(DAY, "a.example", record, p.clone()), counts(n, 0, &[]));
        a
    };
    assert_eq!(store.record(DAY, "a.example").unwrap(), None);
    store
        .add(&one("v=TLSRPTv1; rua=mailto:old@a.example", 100))
        .unwrap();
    store
        .add(&one("v=TLSRPTv1; rua=mailto:new@a.example", 1))
        .unwrap();
    assert_eq!(
        store.record(DAY, "a.example").unwrap().as_deref(),
        Some("v=TLSRPTv1; rua=mailto:new@a.example")
    );
    // After a restart the order of adds goes on.
    drop(store);
    let mut store = TlsrptStore::open(&path).unwrap();
    store
        .add(&one("v=TLSRPTv1; rua=mailto:old@a.example", 1))
        .unwrap();
    assert_eq!(
        store.record(DAY, "a.example").unwrap().as_deref(),
        Some("v=TLSRPTv1; rua=mailto:old@a.example")
    );
}

fn new_report<'a>(day: Day, domain: &'a str, id: &'a str, uris: &'a [String]) -> NewReport<'a> {
    NewReport {
        day,
        domain,
        report_id: id,
        json: "{\"report-id\":\"x\"}",
        uris,
        due: 1_000,
        created: 900,
    }
}

// SPEC 8.4, never twice: `mtastsd tlsrpt send` and the daemon are two processes on
// one file; while one's attempt may be running, the other neither sees the
// delivery as due nor can mark it; after the lease (a crash), it can.
#[test]
fn a_delivery_being_sent_is_not_taken_by_another_process() {
    let (_dir, path) = temp();
    let mut daemon = TlsrptStore::open(&path).unwrap();
    let uris = vec!["https://slow.example/".to_owned()];
    assert!(daemon
        .put_report(&new_report(DAY, "a.example", "r1", &uris))
        .unwrap());
    let d = daemon.due(1_000, 10).unwrap().remove(0);
    daemon.mark_sending(&d.id, 1_000).unwrap();
    let mut cli = TlsrptStore::open(&path).unwrap();
    assert!(cli.due(1_001, 10).unwrap().is_empty());
    assert!(cli.mark_sending(&d.id, 1_001).is_err());
    let after = 1_000 + SENDING_LEASE;
    assert_eq!(cli.due(after, 10).unwrap().len(), 1);
    cli.mark_sending(&d.id, after).unwrap();
}

// SPEC 8.6: disk use is bounded. A hostile MX that answers each session with a
// new EHLO name adds at most MAX_STORED_DETAILS rows a day and policy; every
// failure is still counted.
#[test]
fn distinct_failure_details_are_bounded_on_disk_spec_8_6() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let text = String::from_utf8(
        std::fs::read(format!(
            "{}/tests/golden/tlsrpt/sts-failure.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let n = MAX_STORED_DETAILS as u64 + 250;
    // Several adds, as the collector's seconds would make them.
    for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
        let mut a = Aggregate::new();
        for i in chunk {
            let helo = format!("250-mx{i}.rpt.example");
            let one = text.replace("250-mx.rpt.example", &helo);
            a.add(DAY, parse(one.as_bytes()).unwrap());
        }
        store.add(&a).unwrap();
    }
    let rows: i64 = store
        .conn
        .query_row("SELECT count(*) FROM failure", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, MAX_STORED_DETAILS + 1, "the cap and one folded row");
    let got = store.counts(DAY, None).unwrap();
    let (_, c) = got.iter().next().unwrap();
    assert_eq!(c.failed, n);
    assert_eq!(c.failures.values().sum::<u64>(), n);
    let folded: u64 = c
        .failures
        .iter()
        .filter(|(d, _)| d.reason_code == FOLDED_REASON)
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(folded, 250);
}

// SPEC 8.4: one report per (day, domain), never a second.
#[test]
fn report_once() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    store.add(&sample()).unwrap();
    assert_eq!(
        store.unreported(Day(DAY.0 + 2)).unwrap(),
        vec![
            (DAY, "a.example".to_string()),
            (DAY, "nopol.example".to_string()),
            (DAY, "rpt.example".to_string()),
            (Day(DAY.0 + 1), "a.example".to_string()),
        ]
    );
    let uris = vec![
        "mailto:r@a.example".to_string(),
        "https://r.example/".to_string(),
        "mailto:r@a.example".to_string(),
    ];
    assert!(store
        .put_report(&new_report(DAY, "a.example", "id-1", &uris))
        .unwrap());
    let again = NewReport {
        json: "other",
        uris: &uris[..1],
        due: 5,
        created: 5,
        ..new_report(DAY, "a.example", "id-2", &uris)
    };
    assert!(!store.put_report(&again).unwrap());
    // A report id used twice is an error, not a quiet "already".
    assert!(store
        .put_report(&new_report(DAY, "rpt.example", "id-1", &uris))
        .is_err());
    let r = store.report(DAY, "a.example").unwrap().unwrap();
    assert_eq!(
        (r.report_id.as_str(), r.json.as_str(), r.created),
        ("id-1", "{\"report-id\":\"x\"}", 900)
    );
    let got: Vec<_> = r
        .deliveries
        .iter()
        .map(|d| (d.uri.as_str(), d.state, d.tries, d.next_try))
        .collect();
    assert_eq!(
        got,
        vec![
            ("https://r.example/", DeliveryState::Pending, 0, 1_000),
            ("mailto:r@a.example", DeliveryState::Pending, 0, 1_000)
        ]
    );
    assert_eq!(store.report(DAY, "rpt.example").unwrap(), None);
    assert_eq!(
        store.unreported(Day(DAY.0 + 2)).unwrap(),
        vec![
            (DAY, "nopol.example".to_string()),
            (DAY, "rpt.example".to_string()),
            (Day(DAY.0 + 1), "a.example".to_string()),
        ]
    );
}

// SPEC 8.4: pending → sending → sent | retry | dropped; a crash mid-attempt
// leaves `sending`, attempted again after the restart; never sent twice.
#[test]
fn delivery_states() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let uris = vec![
        "https://a/".to_string(),
        "https://b/".to_string(),
        "mailto:c@x".to_string(),
    ];
    store
        .put_report(&new_report(DAY, "a.example", "r1", &uris))
        .unwrap();
    let id = |u: &str| DeliveryId {
        report_id: "r1".into(),
        uri: u.into(),
    };
    let due_uris = |s: &TlsrptStore, now| -> Vec<String> {
        s.due(now, 10).unwrap().into_iter().map(|d| d.uri).collect()
    };
    assert!(due_uris(&store, 999).is_empty());
    assert_eq!(due_uris(&store, 1_000), uris);
    assert_eq!(store.due(1_000, 2).unwrap().len(), 2);
    assert_eq!(store.oldest_unsent(1_500).unwrap(), Some(600));

    // a: sent at once.
    store.mark_sending(&id("https://a/"), 1_000).unwrap();
    assert_eq!(
        due_uris(&store, 1_000),
        ["https://b/", "mailto:c@x"],
        "a's attempt is running"
    );
    assert!(store.mark_sending(&id("https://a/"), 1_000).is_err());
    store.mark_sent(&id("https://a/"), 1_001).unwrap();
    let e = store.mark_sending(&id("https://a/"), 1_002).unwrap_err();
    assert!(e.to_string().contains("cannot be marked sending"), "{e}");
    assert!(store.mark_sent(&id("https://a/"), 1_002).is_err());
    assert!(store.mark_dropped(&id("https://a/"), "x").is_err());

    // b: a retry, then dropped.
    store.mark_sending(&id("https://b/"), 1_000).unwrap();
    store
        .mark_retry(&id("https://b/"), 2_000, "HTTP 503")
        .unwrap();
    assert_eq!(due_uris(&store, 1_999), ["mailto:c@x"]);
    assert!(store
        .mark_retry(&id("https://b/"), 3_000, "not sending")
        .is_err());
    store.mark_sending(&id("https://b/"), 2_000).unwrap();
    store.mark_dropped(&id("https://b/"), "HTTP 404").unwrap();

    // c: the daemon dies during the attempt.
    store.mark_sending(&id("mailto:c@x"), 1_100).unwrap();
    assert!(due_uris(&store, 5_000).is_empty());
    drop(store);
    let mut store = TlsrptStore::open(&path).unwrap();
    let again = store.due(5_000, 10).unwrap();
    assert_eq!(again.len(), 1);
    let c = &again[0];
    assert_eq!(
        (c.uri.as_str(), c.state, c.tries, c.first_try),
        ("mailto:c@x", DeliveryState::Sending, 1, Some(1_100))
    );
    assert_eq!((c.day, c.domain.as_str()), (DAY, "a.example"));
    store.mark_sending(&c.id, 5_000).unwrap();
    store.mark_sent(&c.id, 5_001).unwrap();
    assert!(store.due(i64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.oldest_unsent(6_000).unwrap(), None);

    let r = store.report(DAY, "a.example").unwrap().unwrap();
    let got: Vec<_> = r
        .deliveries
        .iter()
        .map(|d| {
            (
                d.uri.as_str(),
                d.state,
                d.tries,
                d.first_try,
                d.last_error.as_deref(),
                d.sent,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "https://a/",
                DeliveryState::Sent,
                1,
                Some(1_000),
                None,
                Some(1_001)
            ),
            (
                "https://b/",
                DeliveryState::Dropped,
                2,
                Some(1_000),
                Some("HTTP 404"),
                None
            ),
            (
                "mailto:c@x",
                DeliveryState::Sent,
                2,
                Some(1_100),
                None,
                Some(5_001)
            ),
        ]
    );
}

// A wrong file is an error naming it, and is left as it is.
#[test]
fn refuses_foreign_files() {
    let (dir, path) = temp();
    std::fs::write(&path, b"policy cache? no: some text file\n".repeat(200)).unwrap();
    let before = std::fs::read(&path).unwrap();
    for e in [
        TlsrptStore::open(&path).unwrap_err(),
        TlsrptStore::open_read_only(&path).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("not an SQLite database")
                && msg.contains("move it away"),
            "{msg}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let other = |name: &str, sql: &str| {
        let p = dir.path().join(name);
        Connection::open(&p).unwrap().execute_batch(sql).unwrap();
        let e = TlsrptStore::open(&p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        msg
    };
    let msg = other(
        "newer.sqlite",
        &format!(
            "CREATE TABLE t(x); PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;"
        ),
    );
    assert!(
        msg.contains("schema version 2 (written by a newer mtastsd"),
        "{msg}"
    );
    let msg = other("app.sqlite", "CREATE TABLE t(x); PRAGMA user_version = 1;");
    assert!(msg.contains("application_id 0x0"), "{msg}");
    let msg = other("tables.sqlite", &format!("CREATE TABLE policy(x); PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"));
    assert!(
        msg.contains("tables missing: session, failure, report, delivery"),
        "{msg}"
    );

    let missing = dir.path().join("none.sqlite");
    let e = TlsrptStore::open_read_only(&missing).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!missing.exists());
    let e = TlsrptStore::open(&dir.path().join("no/such/dir.sqlite")).unwrap_err();
    assert!(e.to_string().contains("no/such/dir.sqlite"), "{e}");
}

// `mtastsd tlsrpt show` reads while the daemon writes.
#[test]
fn read_only_sees_commits() {
    let (_dir, path) = temp();
    let mut writer = TlsrptStore::open(&path).unwrap();
    let a = sample();
    writer.add(&a).unwrap();
    let mut reader = TlsrptStore::open_read_only(&path).unwrap();
    assert_eq!(
        reader.counts(DAY, None).unwrap(),
        writer.counts(DAY, None).unwrap()
    );
    writer.add(&a).unwrap();
    let mut twice = Aggregate::new();
    for (k, c) in a.report_entries(DAY, "rpt.example") {
        twice.insert(k.clone(), c.clone());
        twice.insert(k.clone(), c.clone());
    }
    assert_eq!(reader.counts(DAY, Some("rpt.example")).unwrap(), twice);
    let e = reader.add(&a).unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

// SPEC 8.6: older days go, with their reports and the policies only they used,
// and the file gives the space back.
#[test]
fn prune_bounds_the_file() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    let long = "x".repeat(2_000);
    for day in 0..10 {
        let mut a = Aggregate::new();
        for n in 0..50 {
            let p = policy(
                PolicyType::Sts,
                &format!("d{n}.example"),
                &[&long, &format!("day {day}")],
                &[],
            );
            a.insert(
                key(Day(DAY.0 + day), &format!("d{n}.example"), "r", p),
                counts(
                    1,
                    1,
                    &[(detail(ResultType::ValidationFailure, "", &long), 1)],
                ),
            );
        }
        store.add(&a).unwrap();
        let uris = vec!["https://r/".to_string()];
        let id = format!("id{day}");
        store
            .put_report(&new_report(Day(DAY.0 + day), "d0.example", &id, &uris))
            .unwrap();
    }
    let rows = |s: &TlsrptStore, t: &str| -> i64 {
        s.conn
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let pages = |s: &TlsrptStore| -> i64 {
        s.conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    };
    let big = pages(&store);
    let kept = days(&store, (DAY.0 + 8..DAY.0 + 10).map(Day));
    let n = store.prune(Day(DAY.0 + 8)).unwrap();
    // 8 days × (50 sessions + 50 failures + 50 policies) + 8 reports + 8 deliveries.
    assert_eq!(n, 8 * 150 + 16);
    for (t, want) in [
        ("session", 100),
        ("failure", 100),
        ("policy", 100),
        ("report", 2),
        ("delivery", 2),
    ] {
        assert_eq!(rows(&store, t), want, "{t}");
    }
    assert_eq!(days(&store, (DAY.0..DAY.0 + 10).map(Day)), kept);
    assert!(store
        .report(Day(DAY.0 + 7), "d0.example")
        .unwrap()
        .is_none());
    assert!(store
        .report(Day(DAY.0 + 8), "d0.example")
        .unwrap()
        .is_some());
    let freelist: i64 = store
        .conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(freelist, 0);
    assert!(pages(&store) * 3 < big, "{} pages of {big}", pages(&store));
    // Adds after a prune intern the deleted policies anew.
    let mut a = Aggregate::new();
    a.add(Day(DAY.0 + 9), golden("sts-success.json"));
    let p = policy(PolicyType::Sts, "d0.example", &[&long, "day 0"], &[]);
    a.insert(key(Day(DAY.0 + 9), "d0.example", "r", p), counts(1, 0, &[]));
    store.add(&a).unwrap();
    let mut want = kept;
    want.merge(a);
    assert_eq!(days(&store, (DAY.0..DAY.0 + 10).map(Day)), want);
    assert_eq!(store.prune(Day(DAY.0 + 8)).unwrap(), 0);
}

// The per-report reads search indexes, never scan a table: a day's reports over
// 10 000 domains must not cost 10 000 × the day's rows.
#[test]
fn per_report_reads_use_indexes() {
    let (_dir, path) = temp();
    let mut store = TlsrptStore::open(&path).unwrap();
    store.add(&sample()).unwrap();
    // (name, SQL, the first step searches one domain's policies)
    for (name, q, by_domain) in [
        ("SESSIONS_OF_DOMAIN", sql::SESSIONS_OF_DOMAIN, true),
        ("FAILURES_OF_DOMAIN", sql::FAILURES_OF_DOMAIN, true),
        ("RECORD", sql::RECORD, true),
        ("REPORT", sql::REPORT, false),
        ("DELIVERIES_OF_REPORT", sql::DELIVERIES_OF_REPORT, false),
        ("DUE", sql::DUE, false),
        ("OLDEST_UNSENT", sql::OLDEST_UNSENT, false),
    ] {
        let mut plan = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
            .unwrap();
        let args = vec![1i64; plan.parameter_count()];
        let steps: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            steps.iter().all(|s| !s.starts_with("SCAN")),
            "{name}: {steps:?}"
        );
        if by_domain {
            assert!(
                steps[0].starts_with("SEARCH p ") && steps[0].contains("(domain=?)"),
                "{name}: {steps:?}"
            );
        }
    }
}

fn arb_aggregate() -> impl Strategy<Value = Aggregate> {
    let policies = vec![
        policy(
            PolicyType::Sts,
            "a.example",
            &["mode: enforce", "mx: *.a.example"],
            &["*.a.example"],
        ),
        policy(PolicyType::Sts, "a.example", &["mode: testing"], &[]),
        policy(
            PolicyType::Tlsa,
            "b.example",
            &["3 1 1 AB", ""],
            &["mx.b.example"],
        ),
        policy(PolicyType::NoPolicyFound, "b.example", &[], &[]),
    ];
    let details = vec![
        detail(ResultType::StarttlsNotSupported, "", ""),
        detail(ResultType::CertificateExpired, "203.0.113.9", "expired"),
        detail(ResultType::StsPolicyFetchError, "", "https: \"quoted\"\n"),
    ];
    let entry = (
        0i64..3,
        prop::sample::select(vec!["a.example", "b.example"]),
        prop::sample::select(vec!["", "v=TLSRPTv1; rua=mailto:x@y"]),
        prop::sample::select(policies),
        0u64..1_000,
        0u64..1_000,
        prop::collection::vec((prop::sample::select(details), 0u64..100), 0..3),
    );
    prop::collection::vec(entry, 0..6).prop_map(|entries| {
        let mut a = Aggregate::new();
        for (day, domain, record, p, s, f, ds) in entries {
            let mut c = counts(s, f, &[]);
            for (d, n) in ds {
                *c.failures.entry(d).or_default() += n;
            }
            a.insert(key(Day(DAY.0 + day), domain, record, p), c);
        }
        a
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    // SPEC 8.2: any sequence of adds reads back as the in-memory merge of them.
    #[test]
    fn adds_read_back_as_merge(adds in prop::collection::vec(arb_aggregate(), 1..5), reopen in 0usize..5) {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let mut want = Aggregate::new();
        for (i, a) in adds.into_iter().enumerate() {
            if i == reopen {
                store = TlsrptStore::open(&path).unwrap();
            }
            store.add(&a).unwrap();
            want.merge(a);
        }
        prop_assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), want);
    }
}
