//! Criterion benchmark of the TLS-RPT store's `add` (SPEC 8.2): what the collector's
//! writer thread commits once a second. A busy relay's second of datagrams collapses
//! to at most one key per (domain, record, policy); 10 000 keys is a second spread
//! over 10 000 domains, 100 keys a typical second.
//!
//! `cargo bench --bench tlsrpt_store -- --warm-up-time 1 --measurement-time 3`
//! (about a minute on 2 cores). The file is in a temporary directory (normally
//! /tmp): on a slow disk the checkpoints cost more.
//!
//! Cases, per size: `same-keys` (the steady state: every policy interned and its row
//! there, the counts added), `new-day` (the first second of a UTC day: new rows for
//! interned policies), `after-restart` (a new store: each policy id looked up in SQL).

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion};

use mtastsd::tlsrpt::aggregate::{Aggregate, Counts, Day, Key};
use mtastsd::tlsrpt::datagram::{FailureDetail, Policy, PolicyType, ResultType};
use mtastsd::tlsrpt::store::TlsrptStore;

const DAY: Day = Day(20_468);

/// `n` keys, one per domain, with an STS policy like a real one; every tenth has a
/// failure detail.
fn aggregate(n: usize, day: Day) -> Aggregate {
    let mut a = Aggregate::new();
    for i in 0..n {
        let domain = format!("d{i}.example");
        let policy = Policy {
            policy_type: PolicyType::Sts,
            domain: domain.clone(),
            strings: vec![
                "version: STSv1".into(),
                "mode: enforce".into(),
                format!("mx: mx1.{domain}"),
                format!("mx: mx2.{domain}"),
                "max_age: 604800".into(),
            ],
            mx_hosts: vec![format!("mx1.{domain}"), format!("mx2.{domain}")],
        };
        let mut counts = Counts {
            successful: 3,
            failed: 0,
            ..Counts::default()
        };
        if i % 10 == 0 {
            counts.failed = 1;
            counts.failures.insert(
                FailureDetail {
                    result_type: ResultType::CertificateExpired,
                    sending_ip: "192.0.2.1".into(),
                    receiving_mx: format!("mx1.{domain}"),
                    receiving_helo: format!("mx1.{domain}"),
                    receiving_ip: "198.51.100.7".into(),
                    additional_info: String::new(),
                    reason_code: String::new(),
                },
                1,
            );
        }
        a.insert(
            Key {
                day,
                record: format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"),
                domain,
                policy,
            },
            counts,
        );
    }
    a
}

fn bench_add(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("tlsrpt_store_add");
    g.sample_size(10);
    for n in [100, 10_000] {
        let path = dir.join(format!("{n}.sqlite"));
        let mut store = TlsrptStore::open(&path).unwrap();
        let a = aggregate(n, DAY);
        store.add(&a).unwrap();
        g.bench_function(BenchmarkId::new("same-keys", n), |b| {
            b.iter(|| store.add(&a).unwrap())
        });
        let mut day = DAY.0;
        g.bench_function(BenchmarkId::new("new-day", n), |b| {
            b.iter_batched(
                || {
                    day += 1;
                    aggregate(n, Day(day))
                },
                |a| store.add(&a).unwrap(),
                BatchSize::PerIteration,
            )
        });
        drop(store);
        g.bench_function(BenchmarkId::new("after-restart", n), |b| {
            b.iter_batched(
                || TlsrptStore::open(&path).unwrap(),
                |mut s| {
                    s.add(&a).unwrap();
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_add(&mut c, dir.path());
    c.final_summary();
}
