//! Two nodes on one cluster cache in memory (SPEC 5.9, 5.10).

use super::*;

/// A shared cache in memory, for two `PolicyCache`s in one test (the real Redis client
/// is tested against a real redis-server in tests/redis.rs).
#[derive(Default)]
struct MemoryCluster {
    entries: Mutex<HashMap<String, crate::cache::cluster::ClusterRecord>>,
    leases: Mutex<HashMap<String, u64>>,
    released: Mutex<Vec<String>>,
    down: std::sync::atomic::AtomicBool,
}

impl crate::cache::cluster::ClusterCache for MemoryCluster {
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<
        'a,
        Result<Option<crate::cache::cluster::ClusterRecord>, crate::cache::cluster::ClusterError>,
    > {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::cache::cluster::ClusterError("down".into()));
            }
            Ok(self.entries.lock().unwrap().get(domain).cloned())
        })
    }
    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a crate::cache::cluster::ClusterRecord,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), crate::cache::cluster::ClusterError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::cache::cluster::ClusterError("down".into()));
            }
            self.entries
                .lock()
                .unwrap()
                .insert(domain.to_string(), entry.clone());
            Ok(())
        })
    }
    fn lease<'a>(
        &'a self,
        domain: &'a str,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, crate::cache::cluster::ClusterError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::cache::cluster::ClusterError("down".into()));
            }
            let mut leases = self.leases.lock().unwrap();
            let n = leases.entry(domain.to_string()).or_insert(0);
            *n += 1;
            Ok(*n == 1)
        })
    }
    fn release<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<(), crate::cache::cluster::ClusterError>> {
        Box::pin(async move {
            self.released.lock().unwrap().push(domain.to_string());
            Ok(())
        })
    }
}

/// Two nodes on one shared cache, each with its own scripted network and the same
/// (shared) clock.
struct Cluster {
    a: Arc<PolicyCache>,
    sa: Arc<Script>,
    b: Arc<PolicyCache>,
    sb: Arc<Script>,
    shared: Arc<MemoryCluster>,
    clock: Arc<ManualClock>,
}

fn two_nodes() -> Cluster {
    let (a, sa, clock) = setup(100);
    let (b, sb) = cache_on(100, clock.clone());
    let shared = Arc::new(MemoryCluster::default());
    a.set_cluster(Some(shared.clone()));
    b.set_cluster(Some(shared.clone()));
    for s in [&sa, &sb] {
        s.record("example.com", "1");
        s.policy("example.com", "enforce", "mx.example.com", 86400);
    }
    Cluster {
        a,
        sa,
        b,
        sb,
        shared,
        clock,
    }
}

async fn until_shared(shared: &MemoryCluster, domain: &str) {
    for _ in 0..200 {
        if shared.entries.lock().unwrap().contains_key(domain) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{domain} never published");
}

#[tokio::test]
async fn a_node_answers_from_what_another_node_fetched() {
    let Cluster {
        a,
        sa,
        b,
        sb,
        shared,
        ..
    } = two_nodes();
    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
    until_shared(&shared, "example.com").await;
    assert_eq!(sa.counts(), (1, 1));
    // Node B has never seen the domain: no DNS, no fetch.
    assert_eq!(mode_of(&b.lookup("example.com").await), Some(Mode::Enforce));
    assert_eq!(sb.counts(), (0, 0));
    // And keeps it in its own cache (and store).
    assert!(b.take_dirty());
    assert_eq!(b.snapshot().len(), 1);
}

#[tokio::test]
async fn negative_answers_are_shared_too() {
    let Cluster {
        a, b, sb, shared, ..
    } = two_nodes();
    assert_eq!(mode_of(&a.lookup("nopolicy.example").await), None);
    until_shared(&shared, "nopolicy.example").await;
    assert_eq!(mode_of(&b.lookup("nopolicy.example").await), None);
    assert_eq!(sb.counts(), (0, 0));
}

#[tokio::test]
async fn only_the_lease_holder_rechecks() {
    let Cluster {
        a,
        sa,
        b,
        sb,
        shared,
        clock,
    } = two_nodes();
    a.lookup("example.com").await;
    until_shared(&shared, "example.com").await;
    b.lookup("example.com").await;
    clock.advance(61);
    a.lookup("example.com").await; // takes the lease, re-checks
    settle(&a).await;
    b.lookup("example.com").await; // no lease: adopts, no DNS
    settle(&b).await;
    assert_eq!(sa.counts(), (2, 1));
    assert_eq!(sb.counts(), (0, 0));
    // The holder handed the lease back after its re-check.
    for _ in 0..100 {
        if !shared.released.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        *shared.released.lock().unwrap(),
        vec!["example.com".to_string()]
    );
}

#[tokio::test]
async fn a_stale_shared_record_is_not_trusted_on_a_miss() {
    let Cluster {
        a,
        b,
        sb,
        shared,
        clock,
        ..
    } = two_nodes();
    a.lookup("example.com").await;
    until_shared(&shared, "example.com").await;
    clock.advance(61); // past recheck: B resolves itself
    assert_eq!(mode_of(&b.lookup("example.com").await), Some(Mode::Enforce));
    assert_eq!(sb.counts(), (1, 1));
}

#[tokio::test]
async fn a_failing_shared_cache_changes_nothing() {
    let Cluster {
        a,
        sa,
        b,
        sb,
        shared,
        ..
    } = two_nodes();
    shared.down.store(true, Ordering::SeqCst);
    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
    assert_eq!(mode_of(&b.lookup("example.com").await), Some(Mode::Enforce));
    assert_eq!((sa.counts(), sb.counts()), ((1, 1), (1, 1)));
}

/// Another node, holding example.com's lease, published at `now` that it found no
/// policy.
fn another_node_says_no_policy(shared: &MemoryCluster, now: u64) {
    shared.entries.lock().unwrap().insert(
        "example.com".into(),
        crate::cache::cluster::ClusterRecord::Negative {
            checked: now,
            until: now + 3600,
        },
    );
    shared
        .leases
        .lock()
        .unwrap()
        .insert("example.com".into(), 1);
}

#[tokio::test]
async fn a_shared_negative_answer_never_evicts_a_policy_spec_5_3() {
    let Cluster {
        a, shared, clock, ..
    } = two_nodes();
    a.lookup("example.com").await;
    until_shared(&shared, "example.com").await;
    // Another node (its DNS stripped by an attacker) published "no policy", and holds
    // the lease; by the re-check the record is stale, so this node checks itself.
    let now = clock.now();
    another_node_says_no_policy(&shared, now);
    clock.advance(61);
    a.lookup("example.com").await;
    settle(&a).await;
    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
}

#[tokio::test]
async fn a_fresh_shared_negative_beside_a_policy_makes_this_node_check_spec_5_10() {
    let Cluster {
        a,
        sa,
        shared,
        clock,
        ..
    } = two_nodes();
    a.lookup("example.com").await;
    until_shared(&shared, "example.com").await;
    assert_eq!(sa.counts(), (1, 1));
    // Another node holds the lease and has just published "no policy": it disagrees
    // with the policy this node holds, so it is a hint to check here, not a
    // confirmation that skips the re-check (SPEC 5.10).
    clock.advance(61);
    let now = clock.now();
    another_node_says_no_policy(&shared, now);
    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
    settle(&a).await;
    assert_eq!(sa.counts().0, 2, "the re-check was skipped");
    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
}

#[tokio::test]
async fn shared_records_from_the_future_or_forever_are_not_believed() {
    let Cluster {
        b,
        sb,
        shared,
        clock,
        ..
    } = two_nodes();
    let now = clock.now();
    let body = b"version: STSv1\nmode: none\nmax_age: 4294967295\n";
    let poisoned = CachedPolicy::new(parse_policy(body).unwrap(), "x".into(), now + 864_000);
    shared.entries.lock().unwrap().insert(
        "example.com".into(),
        crate::cache::cluster::ClusterRecord::Policy {
            policy: poisoned,
            checked: now + 864_000,
        },
    );
    // Not adopted: B resolves the real (enforce) policy itself.
    assert_eq!(mode_of(&b.lookup("example.com").await), Some(Mode::Enforce));
    assert_eq!(sb.counts(), (1, 1));

    // A negative answer claiming ten days is held for at most an hour.
    shared.entries.lock().unwrap().insert(
        "gone.example".into(),
        crate::cache::cluster::ClusterRecord::Negative {
            checked: now,
            until: now + 864_000,
        },
    );
    assert_eq!(mode_of(&b.lookup("gone.example").await), None);
    assert_eq!(sb.counts(), (1, 1));
    clock.advance(NEGATIVE_TTL_MAX);
    shared.entries.lock().unwrap().remove("gone.example");
    b.lookup("gone.example").await;
    assert_eq!(sb.counts(), (2, 1), "asked DNS again after an hour");
}
/// A node with its own clock on the shared cache `shared`.
fn node_with_clock(
    clock: Arc<ManualClock>,
    shared: &Arc<MemoryCluster>,
) -> (Arc<PolicyCache>, Arc<Script>) {
    let (cache, script) = cache_on(100, clock);
    cache.set_cluster(Some(shared.clone()));
    script.record("example.com", "1");
    script.policy("example.com", "enforce", "mx.example.com", 86400);
    (cache, script)
}

#[tokio::test]
async fn shared_records_carry_wall_clock_times_between_nodes_spec_5_9_5_10() {
    // Node A started while its wall clock was an hour slow; NTP has since corrected
    // it. Its deadlines run on process seconds (SPEC 5.9), an hour behind node B's,
    // but what it publishes must be in the time every node shares: the wall clock.
    let shared = Arc::new(MemoryCluster::default());
    let a_clock = Arc::new(ManualClock::at(T0 - 3600));
    a_clock.step_wall(3600);
    let (a, sa) = node_with_clock(a_clock, &shared);
    let (b, sb) = node_with_clock(Arc::new(ManualClock::at(T0)), &shared);

    assert_eq!(mode_of(&a.lookup("example.com").await), Some(Mode::Enforce));
    until_shared(&shared, "example.com").await;
    assert_eq!(sa.counts(), (1, 1));
    // B sees a record checked just now (not an hour ago) and takes it as it is.
    let Lookup::Policy(p) = b.lookup("example.com").await else {
        panic!("node B has no policy");
    };
    assert_eq!(sb.counts(), (0, 0), "node B resolved the domain itself");
    assert_eq!(p.fetched, T0, "fetched in B's own time");
    // And what A adopts back from B's time is in A's process seconds again.
    let wall = shared.entries.lock().unwrap()["example.com"].clone();
    match wall {
        crate::cache::cluster::ClusterRecord::Policy { policy, checked } => {
            assert_eq!(
                (policy.fetched, checked),
                (T0, T0),
                "published in wall time"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

// SPEC 8.3 with SPEC 5.10: a node whose fetch failed keeps a finding for TLS-RPT;
// another node's "no _mta-sts record" adopted on a miss ends it, as its own lookup
// of a vanished record would.
#[tokio::test]
async fn an_adopted_shared_no_policy_ends_a_fetch_failure_finding_spec_8_3() {
    let Cluster {
        a,
        sa,
        shared,
        clock,
        ..
    } = two_nodes();
    sa.fetch_error("example.com");
    assert_eq!(mode_of(&a.lookup("example.com").await), None);
    assert!(a.finding("example.com").is_some());
    // Past the back-off, another node publishes that the record is gone.
    clock.advance(120);
    let now = clock.now();
    another_node_says_no_policy(&shared, now);
    assert_eq!(mode_of(&a.lookup("example.com").await), None);
    assert_eq!(a.finding("example.com"), None);
}
