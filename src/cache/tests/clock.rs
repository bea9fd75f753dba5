//! Saving, and time: process seconds against a stepped wall clock (SPEC 5.8, 5.9).

use super::*;

#[tokio::test(start_paused = true)]
async fn saves_follow_changes_but_at_most_every_ten_seconds_spec_5_8() {
    let (cache, s, _) = setup(100);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store::Store::open(dir.path()).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(refresh::saver(
        Arc::clone(&cache),
        Arc::clone(&store),
        Duration::from_secs(3600),
        stopped,
    ));
    let saved = |store: &store::Store| store.load().unwrap().len();
    // The save itself runs on a blocking thread, in real time: wait for it there.
    let saved_soon = |store: &store::Store, n: usize| {
        for _ in 0..200 {
            if saved(store) == n {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        saved(store)
    };
    for d in ["a.example", "b.example"] {
        s.record(d, "1");
        s.policy(d, "enforce", "mx.example.com", 86400);
    }
    cache.lookup("a.example").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        saved_soon(&store, 1),
        1,
        "a change is saved within a second"
    );
    cache.lookup("b.example").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(saved(&store), 1, "the next save waits for the spacing");
    tokio::time::sleep(refresh::MIN_SAVE_SPACING).await;
    assert_eq!(saved_soon(&store, 2), 2);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// The daemon's clock reads like the wall clock, in seconds, while the wall clock is
/// not stepped (SPEC 5.9), and its `wall` is the wall clock: the persisted times
/// depend on it (SPEC 5.8).
#[test]
fn the_system_clock_reads_like_the_wall_clock_in_seconds() {
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = wall();
    let now = SystemClock.now();
    let wall_now = SystemClock.wall();
    let after = wall();
    // The coarse clocks may lag the precise one by a tick, across a second boundary;
    // the process clock rounds twice (its start, its reading).
    assert!(
        (before.saturating_sub(1)..=after + 1).contains(&now),
        "{before} ≤ {now} ≤ {after}"
    );
    assert!(
        (before.saturating_sub(1)..=after).contains(&wall_now),
        "{before} ≤ {wall_now} ≤ {after}"
    );
    // Never backwards.
    let mut last = SystemClock.now();
    for _ in 0..10_000 {
        let t = SystemClock.now();
        assert!(t >= last, "{t} < {last}");
        last = t;
    }
}

/// SPEC 5.9: the wall clock stepped an hour back (a VM snapshot restored, an RTC
/// corrected) freezes no deadline: re-checks keep running, and negative answers and
/// back-offs end on time, so a domain that now publishes `enforce` gets it.
#[tokio::test]
async fn a_wall_clock_stepped_back_freezes_no_deadline_spec_5_9() {
    let (cache, s, clock) = setup(100);
    s.record("sts.example", "1");
    s.policy("sts.example", "enforce", "mx.sts.example", 86400);
    assert_eq!(
        mode_of(&cache.lookup("sts.example").await),
        Some(Mode::Enforce)
    );
    // No record yet: a negative answer for NEGATIVE_TTL_DEFAULT.
    assert_eq!(mode_of(&cache.lookup("new.example").await), None);
    // A failed fetch: quiet for a minute, that id not fetched for five.
    s.record("broken.example", "1");
    s.fetch_error("broken.example");
    assert_eq!(mode_of(&cache.lookup("broken.example").await), None);
    assert_eq!(s.counts(), (3, 2));

    clock.step_wall(-3600);
    clock.advance(60);
    cache.lookup("sts.example").await;
    settle(&cache).await;
    assert_eq!(s.counts(), (4, 2), "the re-check ran a minute later");

    s.record("new.example", "1");
    s.policy("new.example", "enforce", "mx.new.example", 86400);
    s.policy("broken.example", "enforce", "mx.broken.example", 86400);
    clock.advance(NEGATIVE_TTL_DEFAULT.max(FETCH_FAILURE_BACKOFF));
    assert_eq!(
        mode_of(&cache.lookup("new.example").await),
        Some(Mode::Enforce),
        "the negative answer ended on time"
    );
    assert_eq!(
        mode_of(&cache.lookup("broken.example").await),
        Some(Mode::Enforce),
        "the back-off ended on time"
    );
}

/// SPEC 5.9: the wall clock stepped a year forward (an NTP spoof) expires nothing:
/// the policies still answer while DNS is blocked, the next save keeps them, and the
/// file saved after the jump, read back by a process started after it, is judged by
/// the wall clock at load. A file saved before the jump is judged the same way, so
/// its policies are a year old there.
#[tokio::test]
async fn a_wall_clock_stepped_a_year_forward_expires_nothing_spec_5_9() {
    const YEAR: u64 = 365 * 86400;
    let (cache, s, clock) = setup(100);
    for d in ["a.example", "b.example"] {
        s.record(d, "1");
        s.policy(d, "enforce", &format!("mx.{d}"), 86400);
        cache.lookup(d).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(dir.path()).unwrap();
    store.save(&cache.snapshot()).unwrap();
    let saved_before = std::fs::read(store.path()).unwrap();

    clock.step_wall(YEAR as i64);
    clock.advance(1);
    for d in ["a.example", "b.example"] {
        s.txt_error(d, DnsError::Failed("blocked".into()));
        s.fetch_error(d);
        assert_eq!(
            mode_of(&cache.lookup(d).await),
            Some(Mode::Enforce),
            "{d} still answers"
        );
    }
    settle(&cache).await;
    assert_eq!(s.counts().1, 2, "nothing was fetched again");
    assert_eq!(
        cache.snapshot().len(),
        2,
        "the next save keeps the policies"
    );
    store.save(&cache.snapshot()).unwrap();

    // A process started after the jump: its clock reads the jumped wall time.
    let (after, s2, clock2) = setup(100);
    clock2.advance(YEAR + 1);
    assert_eq!(after.restore(store.load().unwrap()), 2);
    for d in ["a.example", "b.example"] {
        s2.txt_error(d, DnsError::Failed("blocked".into()));
        assert_eq!(mode_of(&after.lookup(d).await), Some(Mode::Enforce), "{d}");
    }

    std::fs::write(store.path(), saved_before).unwrap();
    let (late, _, clock3) = setup(100);
    clock3.advance(YEAR + 1);
    assert_eq!(
        late.restore(store.load().unwrap()),
        0,
        "a year old by the wall clock at load"
    );
}

/// SPEC 5.9: a `fetched` time in the future (a file saved before the clock was
/// stepped back) counts as now: the policy lasts `max_age` from its load, no longer.
#[tokio::test]
async fn a_fetched_time_in_the_future_counts_as_now_spec_5_9() {
    let (cache, s, clock) = setup(100);
    let body = "version: STSv1\nmode: enforce\nmx: mx.future.example\nmax_age: 86400\n";
    let policy = parse_policy(body.as_bytes()).unwrap();
    let restored = cache.restore(vec![(
        "future.example".to_string(),
        CachedPolicy::new(policy, "1".into(), T0 + 3600),
    )]);
    assert_eq!(restored, 1);
    s.txt_error("future.example", DnsError::Failed("blocked".into()));
    s.fetch_error("future.example");
    clock.advance(86400 - 1);
    assert_eq!(
        mode_of(&cache.lookup("future.example").await),
        Some(Mode::Enforce)
    );
    settle(&cache).await;
    clock.advance(1);
    assert_eq!(
        mode_of(&cache.lookup("future.example").await),
        None,
        "expired max_age after the load, not after the future time"
    );
}
