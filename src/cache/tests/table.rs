//! The tables: LRU order and bounds, shared answer texts, stats, the lock (SPEC 5.7, 7.6).

use super::*;
use crate::cache::table::Answers;

#[test]
fn hits_move_an_entry_up_at_most_once_a_second_spec_5_7() {
    let mut e = Entries::new(2);
    e.put("a.example".into(), Entry::default(), 100);
    e.put("b.example".into(), Entry::default(), 100);
    // First hits promote (b was put last; a hit on a puts it in front).
    assert_eq!(e.hit("a.example", 100, |_, _| 1), Some(1));
    assert_eq!(e.hit("b.example", 100, |_, _| 2), Some(2));
    // Another hit on a in the same second does not move it: b stays in front.
    assert_eq!(e.hit("a.example", 100, |_, _| 3), Some(3));
    e.put("c.example".into(), Entry::default(), 100);
    assert!(
        e.peek("a.example").is_none(),
        "a was the least recently moved"
    );
    assert!(e.peek("b.example").is_some());
    // A second later, a hit moves b in front again, so c goes next.
    assert!(e.hit("b.example", 101, |_, _| ()).is_some());
    e.put("d.example".into(), Entry::default(), 101);
    assert!(e.peek("c.example").is_none());
    assert!(e.peek("b.example").is_some() && e.peek("d.example").is_some());
    assert_eq!(e.hit("nothing.example", 101, |_, _| ()), None);
}

/// A slot of the LRU's table (key, entry, two u32 links) is what a hit reads: at
/// 100 000 domains every hit misses the CPU caches on it, and the table is most of
/// the cache's memory (131 072 slots at 100 000 entries). Rare state goes in
/// [`Trouble`], boxed; a key of up to 24 bytes is stored inline.
#[test]
fn an_lru_slot_stays_small() {
    let slot = std::mem::size_of::<Name>() + std::mem::size_of::<Entry>() + 8;
    assert!(slot <= 104, "LRU table slot of {slot} bytes");
}

/// Entries whose policies give the same answer share one copy of its text, and
/// texts no entry holds any more do not pile up.
#[tokio::test]
async fn answer_texts_are_shared_and_unused_ones_swept() {
    let (cache, s, _) = setup(100);
    for d in ["a.example", "b.example"] {
        s.record(d, "1");
        s.policy(d, "enforce", "mx.provider.example", 86400);
        cache.lookup(d).await;
    }
    let text = |d: &str| match cache.cached(d, |hit| hit.answer as *const str) {
        Cached::Policy(p) => p,
        other => panic!("{d}: {other:?}"),
    };
    assert!(std::ptr::eq(text("a.example"), text("b.example")));

    let mut answers = Answers::default();
    let held: Vec<Arc<str>> = (0..10)
        .map(|i| answers.intern(format!("secure match=mx{i}.example").into()))
        .collect();
    for i in 0..5000 {
        drop(answers.intern(format!("secure match=gone{i}.example").into()));
        assert!(answers.len() <= 2 * 1024, "{} texts kept", answers.len());
    }
    // The ones still in use survive every sweep, and are still shared.
    for (i, h) in held.iter().enumerate() {
        let again = answers.intern(format!("secure match=mx{i}.example").into());
        assert!(Arc::ptr_eq(h, &again));
    }
}

/// SPEC 5.7: a flood of domains whose policies protect nothing (`testing`, `none`) or
/// that have none never evicts an unexpired `enforce` policy: N enforce, then 10×N
/// domains of each other kind.
#[tokio::test]
async fn a_flood_of_testing_policies_never_evicts_enforce_spec_5_7() {
    const N: usize = 20;
    let (cache, s, _) = setup(N);
    for i in 0..N {
        let d = format!("enforce{i}.example");
        s.record(&d, "1");
        s.policy(&d, "enforce", "mx.example.net", 86400);
        assert_eq!(mode_of(&cache.lookup(&d).await), Some(Mode::Enforce));
    }
    for i in 0..10 * N {
        let d = format!("testing{i}.example");
        s.record(&d, "1");
        s.policy(&d, "testing", "mx.example.net", 86400);
        assert_eq!(mode_of(&cache.lookup(&d).await), Some(Mode::Testing));
    }
    // Nor do `none` policies and domains without one.
    for i in 0..10 * N {
        let d = format!("none{i}.example");
        s.record(&d, "1");
        s.policy(&d, "none", "mx.example.net", 86400);
        assert_eq!(mode_of(&cache.lookup(&d).await), Some(Mode::None));
        assert_eq!(
            mode_of(&cache.lookup(&format!("no{i}.example")).await),
            None
        );
    }
    let mode = |d: &str| match cache.cached(d, |hit| hit.mode) {
        Cached::Policy(m) => Some(m),
        _ => None,
    };
    for i in 0..N {
        let d = format!("enforce{i}.example");
        assert_eq!(mode(&d), Some(Mode::Enforce), "{d} was evicted");
    }
    // The others come and go, least recently used first.
    assert_eq!(
        mode(&format!("none{}.example", 10 * N - 1)),
        Some(Mode::None)
    );
    assert_eq!(mode("testing0.example"), None);
    assert_eq!(cache.stats().enforce, N);
}

/// SPEC 7.6: the counts a metrics scrape reads are kept as entries come and go (no
/// walk under the lock); they agree with a walk through mode changes, evictions,
/// a shrink and a restore.
#[tokio::test]
async fn stats_are_kept_as_entries_come_and_go_spec_7_6() {
    let (cache, s, clock) = setup(4);
    let walked = |cache: &PolicyCache| {
        let entries = cache.entries.lock().unwrap();
        let mut w = CacheStats {
            negative: entries.negative.len(),
            ..CacheStats::default()
        };
        for (_, e) in entries.policies().flat_map(|lru| lru.iter()) {
            w.policies += 1;
            match e.mode {
                Some(Mode::Enforce) => w.enforce += 1,
                Some(Mode::Testing) => w.testing += 1,
                Some(Mode::None) => w.none += 1,
                None => panic!("an entry without a policy among the policies"),
            }
        }
        w
    };
    let modes = ["testing", "enforce", "none", "testing"];
    for round in 0..4 {
        for i in 0..6 {
            let d = format!("d{i}.example");
            s.record(&d, &format!("{round}"));
            s.policy(&d, modes[(i + round) % 4], "mx.example.net", 86400);
            cache.lookup(&d).await;
            cache.lookup(&format!("nothing{round}-{i}.example")).await;
            settle(&cache).await;
            assert_eq!(cache.stats(), walked(&cache), "round {round}, {d}");
        }
        // New ids: every domain is fetched again, under another mode.
        clock.advance(61);
    }
    // The last round: d2 enforce, d3 none, the rest testing; 4 of the 5 weak ones fit.
    let stats = cache.stats();
    assert_eq!(
        (stats.policies, stats.enforce, stats.negative),
        (5, 1, 4),
        "{stats:?}"
    );
    let settings = cache.settings.read().unwrap().clone();
    let resolvers = cache.resolvers.read().unwrap().clone();
    cache.reconfigure(2, settings, resolvers);
    assert_eq!(cache.stats(), walked(&cache));
    assert_eq!(cache.stats().negative, 2);
    let body = "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 86400\n";
    let p = parse_policy(body.as_bytes()).unwrap();
    let restored = cache.restore(vec![
        (
            "d0.example".into(),
            CachedPolicy::new(p.clone(), "r".into(), T0),
        ),
        ("r.example".into(), CachedPolicy::new(p, "r".into(), T0)),
    ]);
    assert_eq!(restored, 2);
    assert_eq!(cache.stats(), walked(&cache));
}

/// Records, per test thread, what was logged while the thread's cache had its
/// entries locked (see [`nothing_is_logged_under_the_entries_lock_spec_7_6`]).
mod under_lock {
    use std::cell::RefCell;
    use std::sync::{Arc, TryLockError};

    use super::PolicyCache;

    /// Each line logged, and whether the lock was held then.
    type Lines = Vec<(bool, String)>;

    thread_local! {
        static WATCHED: RefCell<Option<(Arc<PolicyCache>, Lines)>> = const { RefCell::new(None) };
    }

    struct Logger;

    impl log::Log for Logger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            WATCHED.with(|w| {
                if let Some((cache, lines)) = w.borrow_mut().as_mut() {
                    // On this thread's own runtime, only this thread can hold it.
                    let locked = matches!(cache.entries.try_lock(), Err(TryLockError::WouldBlock));
                    lines.push((locked, record.args().to_string()));
                }
            });
        }
        fn flush(&self) {}
    }

    /// Watch `cache` from this thread on.
    pub fn watch(cache: &Arc<PolicyCache>) {
        static LOGGER: Logger = Logger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
        WATCHED.with(|w| *w.borrow_mut() = Some((Arc::clone(cache), Vec::new())));
    }

    /// (logged under the lock, line) since [`watch`].
    pub fn lines() -> Lines {
        WATCHED.with(|w| w.borrow_mut().take().map(|(_, l)| l).unwrap_or_default())
    }
}

/// SPEC 7.6: no log call blocks the serving thread under the cache lock: the "cache
/// is full" and "cache.size is below" warnings are logged once it is released.
#[tokio::test]
async fn nothing_is_logged_under_the_entries_lock_spec_7_6() {
    let (cache, s, _) = setup(2);
    under_lock::watch(&cache);
    for i in 0..4 {
        let d = format!("full{i}.example");
        s.record(&d, "1");
        s.policy(&d, "enforce", "mx.example.net", 86400);
        cache.lookup(&d).await;
    }
    let settings = cache.settings.read().unwrap().clone();
    let resolvers = cache.resolvers.read().unwrap().clone();
    cache.reconfigure(1, settings, resolvers);
    let lines = under_lock::lines();
    assert!(
        lines.iter().any(|(_, l)| l.contains("the cache is full")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|(_, l)| l.contains("is below the")),
        "{lines:?}"
    );
    let locked: Vec<_> = lines.iter().filter(|(locked, _)| *locked).collect();
    assert!(locked.is_empty(), "logged under the lock: {locked:?}");
}
