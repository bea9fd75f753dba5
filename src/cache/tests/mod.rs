//! The cache's state machine against scripted DNS and fetch edges (a trait seam: the
//! real edges are exercised by the integration tests) and a hand-moved clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::*;
use crate::mta_sts::policy::parse_policy;
use crate::mta_sts::Mode;
use crate::resolver::{DnsError, FetchError};
use crate::resolver::{PolicyFetch, TxtLookup};

/// Process seconds and the wall clock, moved by hand.
struct ManualClock {
    now: AtomicU64,
    wall: AtomicU64,
}

impl ManualClock {
    /// A process started at wall time `t`.
    fn at(t: u64) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(t),
            wall: AtomicU64::new(t),
        }
    }
    /// Time passes.
    fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
        self.wall.fetch_add(secs, Ordering::SeqCst);
    }
    /// The wall clock is stepped (NTP, an RTC corrected, a VM snapshot restored).
    fn step_wall(&self, secs: i64) {
        if secs >= 0 {
            self.wall.fetch_add(secs.unsigned_abs(), Ordering::SeqCst);
        } else {
            self.wall.fetch_sub(secs.unsigned_abs(), Ordering::SeqCst);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn wall(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }
}

type TxtAnswers = HashMap<String, Result<Vec<Vec<u8>>, DnsError>>;

/// Scripted answers, counted. A delay lets concurrent callers pile up.
#[derive(Default)]
struct Script {
    txt: Mutex<TxtAnswers>,
    body: Mutex<HashMap<String, Result<Vec<u8>, FetchError>>>,
    txt_queries: AtomicUsize,
    fetches: AtomicUsize,
    delay_ms: AtomicU64,
}

impl Script {
    fn record(&self, domain: &str, id: &str) {
        self.txt.lock().unwrap().insert(
            format!("_mta-sts.{domain}"),
            Ok(vec![format!("v=STSv1; id={id}").into_bytes()]),
        );
    }
    fn txt_error(&self, domain: &str, e: DnsError) {
        self.txt
            .lock()
            .unwrap()
            .insert(format!("_mta-sts.{domain}"), Err(e));
    }
    fn policy(&self, domain: &str, mode: &str, mx: &str, max_age: u32) {
        let body = format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: {max_age}\n");
        self.body
            .lock()
            .unwrap()
            .insert(domain.to_string(), Ok(body.into_bytes()));
    }
    fn fetch_error(&self, domain: &str) {
        self.body.lock().unwrap().insert(
            domain.to_string(),
            Err(FetchError::HttpStatus {
                status: 404,
                location: None,
            }),
        );
    }
    fn counts(&self) -> (usize, usize) {
        (
            self.txt_queries.load(Ordering::SeqCst),
            self.fetches.load(Ordering::SeqCst),
        )
    }
    async fn pause(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl TxtLookup for Script {
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Vec<u8>>, DnsError>> {
        Box::pin(async move {
            self.txt_queries.fetch_add(1, Ordering::SeqCst);
            self.pause().await;
            self.txt
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or(Err(DnsError::NoRecords {
                    nxdomain: true,
                    negative_ttl: None,
                }))
        })
    }
}

impl PolicyFetch for Script {
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.pause().await;
            self.body
                .lock()
                .unwrap()
                .get(domain)
                .cloned()
                .unwrap_or(Err(FetchError::Https("connection refused".into())))
        })
    }
}

const T0: u64 = 1_700_000_000;

fn setup(size: usize) -> (Arc<PolicyCache>, Arc<Script>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(T0));
    let (cache, script) = cache_on(size, clock.clone());
    (cache, script, clock)
}

/// A cache of `size` on `clock`, with its own scripted network.
fn cache_on(size: usize, clock: Arc<ManualClock>) -> (Arc<PolicyCache>, Arc<Script>) {
    let script = Arc::new(Script::default());
    let cache = PolicyCache::new(
        size,
        CacheSettings {
            recheck: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(5),
            max_concurrency: MAX_FOREGROUND,
        },
        Resolvers {
            txt: script.clone(),
            fetch: script.clone(),
        },
        clock,
    );
    (cache, script)
}

fn mode_of(l: &Lookup) -> Option<Mode> {
    match l {
        Lookup::Policy(p) => Some(p.policy.mode),
        Lookup::NoPolicy => None,
    }
}

/// Let spawned background work finish.
async fn settle(cache: &PolicyCache) {
    for _ in 0..1000 {
        if cache.resolutions_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("background resolution did not finish");
}

#[tokio::test]
async fn miss_fetches_then_hits_answer_from_cache_spec_5_1_5_4() {
    let (cache, s, _) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts(), (1, 1));
    for _ in 0..10 {
        assert_eq!(
            mode_of(&cache.lookup("example.com").await),
            Some(Mode::Enforce)
        );
    }
    settle(&cache).await;
    assert_eq!(
        s.counts(),
        (1, 1),
        "hits within the recheck interval touch nothing"
    );
}

#[tokio::test]
async fn recheck_runs_off_the_answer_path_and_same_id_does_not_refetch_spec_5_4() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    clock.advance(61);
    // A slow DNS server must not delay the answer.
    s.delay_ms.store(300, Ordering::SeqCst);
    let started = std::time::Instant::now();
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // Further hits while the check runs start no second one.
    cache.lookup("example.com").await;
    settle(&cache).await;
    assert_eq!(s.counts(), (2, 1));
}

#[tokio::test]
async fn new_id_replaces_policy_even_by_mode_none_spec_5_2() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    s.record("example.com", "2");
    s.body.lock().unwrap().insert(
        "example.com".into(),
        Ok(b"version: STSv1\nmode: none\nmax_age: 86400\n".to_vec()),
    );
    clock.advance(61);
    cache.lookup("example.com").await; // starts the re-check
    settle(&cache).await;
    let l = cache.lookup("example.com").await;
    assert_eq!(mode_of(&l), Some(Mode::None));
    let Lookup::Policy(p) = l else { unreachable!() };
    assert_eq!(p.id, "2");
    assert_eq!(s.counts(), (2, 2));
}

/// What a hit reads without touching the policy (the mode and answer text kept in
/// the entry) follows the policy when a new id replaces it.
#[tokio::test]
async fn a_hit_reads_the_answer_of_the_current_policy_spec_5_2_6_1() {
    let (cache, s, clock) = setup(100);
    let read = |hit: Hit<'_>| (hit.mode, hit.answer.to_owned(), hit.policy.id.clone());
    assert!(matches!(cache.cached("example.com", read), Cached::Unknown));
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    let Cached::Policy(first) = cache.cached("example.com", read) else {
        panic!("a fetched policy is cached");
    };
    assert_eq!(
        first,
        (
            Mode::Enforce,
            "secure match=mx.example.com".to_owned(),
            "1".to_owned()
        )
    );
    s.record("example.com", "2");
    s.policy("example.com", "testing", "*.example.net", 86400);
    clock.advance(61);
    cache.lookup("example.com").await; // starts the re-check
    settle(&cache).await;
    let Cached::Policy(second) = cache.cached("example.com", read) else {
        panic!("the new policy is cached");
    };
    assert_eq!(
        second,
        (
            Mode::Testing,
            "secure match=.example.net".to_owned(),
            "2".to_owned()
        )
    );
}

#[tokio::test]
async fn failed_refetch_keeps_cached_policy_and_backs_off_per_id_spec_5_2_5_6() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    s.record("example.com", "2");
    s.fetch_error("example.com");
    clock.advance(61);
    cache.lookup("example.com").await;
    settle(&cache).await;
    assert_eq!(s.counts(), (2, 2));
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    // Next re-check within 5 minutes: TXT is asked, the failed id is not fetched again.
    clock.advance(61);
    cache.lookup("example.com").await;
    settle(&cache).await;
    assert_eq!(s.counts(), (3, 2));
    // After the back-off the fetch is retried.
    clock.advance(FETCH_FAILURE_BACKOFF);
    s.policy("example.com", "testing", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    settle(&cache).await;
    assert_eq!(s.counts(), (4, 3));
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Testing)
    );
}

#[tokio::test]
async fn missing_txt_and_dns_errors_never_evict_spec_5_3() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    cache.lookup("example.com").await;
    for problem in [
        DnsError::NoRecords {
            nxdomain: true,
            negative_ttl: Some(60),
        },
        DnsError::NoRecords {
            nxdomain: false,
            negative_ttl: None,
        },
        DnsError::Failed("SERVFAIL".into()),
    ] {
        s.txt_error("example.com", problem.clone());
        clock.advance(61);
        cache.lookup("example.com").await;
        settle(&cache).await;
        assert_eq!(
            mode_of(&cache.lookup("example.com").await),
            Some(Mode::Enforce),
            "{problem:?}"
        );
    }
    // An invalid record (two of them) is no record too.
    s.txt.lock().unwrap().insert(
        "_mta-sts.example.com".into(),
        Ok(vec![b"v=STSv1; id=3".to_vec(), b"v=STSv1; id=4".to_vec()]),
    );
    clock.advance(61);
    cache.lookup("example.com").await;
    settle(&cache).await;
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts().1, 1, "no refetch without a valid new id");
}

#[tokio::test]
async fn policy_expires_after_max_age_spec_5_1() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 3600);
    cache.lookup("example.com").await;
    // DNS and HTTPS both gone: nothing can refresh it (SPEC 5.5 would otherwise).
    s.txt_error("example.com", DnsError::Failed("timeout".into()));
    s.fetch_error("example.com");
    clock.advance(3599);
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    settle(&cache).await;
    clock.advance(1);
    assert_eq!(mode_of(&cache.lookup("example.com").await), None);
}

#[tokio::test]
async fn negative_answers_are_cached_within_bounds_spec_5_6() {
    let (cache, s, clock) = setup(100);
    // A tiny negative TTL is raised to 60 s.
    s.txt_error(
        "nopolicy.example",
        DnsError::NoRecords {
            nxdomain: true,
            negative_ttl: Some(5),
        },
    );
    assert_eq!(mode_of(&cache.lookup("nopolicy.example").await), None);
    clock.advance(59);
    assert_eq!(mode_of(&cache.lookup("nopolicy.example").await), None);
    assert_eq!(s.counts(), (1, 0));
    clock.advance(1);
    cache.lookup("nopolicy.example").await;
    assert_eq!(s.counts(), (2, 0));
    // A huge one is capped at an hour.
    s.txt_error(
        "nopolicy.example",
        DnsError::NoRecords {
            nxdomain: false,
            negative_ttl: Some(86400),
        },
    );
    clock.advance(60);
    cache.lookup("nopolicy.example").await;
    assert_eq!(s.counts(), (3, 0));
    clock.advance(NEGATIVE_TTL_MAX - 1);
    cache.lookup("nopolicy.example").await;
    assert_eq!(s.counts(), (3, 0));
    clock.advance(1);
    cache.lookup("nopolicy.example").await;
    assert_eq!(s.counts(), (4, 0));
}

#[tokio::test]
async fn failures_with_nothing_cached_back_off_spec_5_6() {
    let (cache, s, clock) = setup(100);
    s.txt_error("broken.example", DnsError::Failed("SERVFAIL".into()));
    assert_eq!(mode_of(&cache.lookup("broken.example").await), None);
    clock.advance(DNS_ERROR_BACKOFF - 1);
    cache.lookup("broken.example").await;
    assert_eq!(s.counts(), (1, 0), "DNS errors back off 60 s");
    clock.advance(1);
    s.record("broken.example", "1");
    s.fetch_error("broken.example");
    assert_eq!(mode_of(&cache.lookup("broken.example").await), None);
    assert_eq!(s.counts(), (2, 1));
    // Quiet for a minute, then TXT is asked again but the failed id is not fetched
    // again before 5 minutes have passed (SPEC 5.6: per TXT id).
    clock.advance(DNS_ERROR_BACKOFF - 1);
    cache.lookup("broken.example").await;
    assert_eq!(s.counts(), (2, 1));
    clock.advance(1);
    cache.lookup("broken.example").await;
    assert_eq!(s.counts(), (3, 1), "TXT re-checked, same id not fetched");
    clock.advance(FETCH_FAILURE_BACKOFF - DNS_ERROR_BACKOFF);
    s.policy("broken.example", "enforce", "mx.example.com", 86400);
    assert_eq!(
        mode_of(&cache.lookup("broken.example").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts(), (4, 2), "fetched again after 5 minutes");
}

#[tokio::test]
async fn a_new_id_ends_the_fetch_back_off_spec_5_6() {
    let (cache, s, clock) = setup(100);
    s.record("fixed.example", "1");
    s.fetch_error("fixed.example");
    assert_eq!(mode_of(&cache.lookup("fixed.example").await), None);
    // The owner fixes the policy and bumps the id: picked up at the next TXT look.
    s.record("fixed.example", "2");
    s.policy("fixed.example", "enforce", "mx.example.com", 86400);
    clock.advance(DNS_ERROR_BACKOFF);
    assert_eq!(
        mode_of(&cache.lookup("fixed.example").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts(), (2, 2));
}

#[tokio::test]
async fn max_age_zero_does_not_fetch_on_every_lookup_spec_5_6() {
    let (cache, s, clock) = setup(100);
    s.record("zero.example", "1");
    s.policy("zero.example", "enforce", "mx.example.com", 0);
    for _ in 0..5 {
        assert_eq!(
            mode_of(&cache.lookup("zero.example").await),
            Some(Mode::Enforce)
        );
    }
    assert_eq!(s.counts(), (1, 1));
    clock.advance(MIN_LIFETIME);
    s.txt_error("zero.example", DnsError::Failed("down".into()));
    assert_eq!(
        mode_of(&cache.lookup("zero.example").await),
        None,
        "expired after the floor"
    );
}

#[tokio::test]
async fn domains_without_policy_never_push_policies_out_spec_5_3_5_7() {
    let (cache, s, _) = setup(2);
    for d in ["a.example", "b.example"] {
        s.record(d, "1");
        s.policy(d, "enforce", "mx.example.com", 86400);
        cache.lookup(d).await;
    }
    // A flood of lookups for domains without a policy.
    for i in 0..50 {
        assert_eq!(
            mode_of(&cache.lookup(&format!("none{i}.example")).await),
            None
        );
    }
    s.txt_error("a.example", DnsError::Failed("blocked".into()));
    s.txt_error("b.example", DnsError::Failed("blocked".into()));
    let fetches = s.counts().1;
    assert_eq!(
        mode_of(&cache.lookup("a.example").await),
        Some(Mode::Enforce)
    );
    assert_eq!(
        mode_of(&cache.lookup("b.example").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts().1, fetches);
}

#[tokio::test]
async fn concurrent_misses_share_one_resolution_spec_3_6() {
    let (cache, s, _) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 86400);
    s.delay_ms.store(50, Ordering::SeqCst);
    let lookups: Vec<_> = (0..200)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.lookup("example.com").await })
        })
        .collect();
    for l in lookups {
        assert_eq!(mode_of(&l.await.unwrap()), Some(Mode::Enforce));
    }
    assert_eq!(s.counts(), (1, 1));
}

#[tokio::test]
async fn cache_is_bounded_lru_spec_5_7() {
    let (cache, s, _) = setup(2);
    for d in ["a.example", "b.example", "c.example"] {
        s.record(d, "1");
        s.policy(d, "enforce", "mx.example.com", 86400);
    }
    cache.lookup("a.example").await;
    cache.lookup("b.example").await;
    cache.lookup("a.example").await; // a is now the most recent
    cache.lookup("c.example").await; // evicts b
    assert_eq!(cache.len(), 2);
    assert_eq!(s.counts(), (3, 3));
    cache.lookup("a.example").await;
    assert_eq!(s.counts(), (3, 3), "a survived");
    cache.lookup("b.example").await;
    assert_eq!(s.counts(), (4, 4), "b was evicted and is fetched again");
}

#[tokio::test]
async fn proactive_refresh_before_expiry_regardless_of_txt_spec_5_5() {
    let (cache, s, clock) = setup(100);
    s.record("week.example", "1");
    s.policy("week.example", "enforce", "mx.example.com", 7 * 86400);
    s.record("hour.example", "1");
    s.policy("hour.example", "enforce", "mx.example.com", 3600);
    cache.lookup("week.example").await;
    cache.lookup("hour.example").await;
    assert!(cache.due_for_refresh(clock.now()).is_empty());
    clock.advance(2700); // 3/4 of an hour
    assert_eq!(
        cache.due_for_refresh(clock.now()),
        vec!["hour.example".to_string()]
    );
    clock.advance(86400 - 2700); // a day: weekly policies are refreshed daily
    let mut due = cache.due_for_refresh(clock.now());
    due.sort();
    assert_eq!(
        due,
        vec!["week.example".to_string()],
        "hour.example has expired"
    );
    // The TXT record is gone; the refresh fetches anyway and restarts the clock.
    s.txt_error(
        "week.example",
        DnsError::NoRecords {
            nxdomain: true,
            negative_ttl: None,
        },
    );
    let fetched_before = s.counts().1;
    cache.join_resolution("week.example", true, None).await;
    assert_eq!(s.counts().1, fetched_before + 1);
    let Lookup::Policy(p) = cache.lookup("week.example").await else {
        panic!("policy lost")
    };
    assert_eq!(p.fetched, clock.now());
    assert_eq!(p.id, "1", "the id it was fetched under is kept");
    assert!(cache.due_for_refresh(clock.now()).is_empty());
}

#[tokio::test]
async fn snapshot_and_restore_keep_usable_policies_spec_5_8() {
    let (cache, s, clock) = setup(100);
    s.record("a.example", "1");
    s.policy("a.example", "enforce", "mx.a.example", 86400);
    s.record("b.example", "1");
    s.policy("b.example", "enforce", "mx.b.example", 600);
    cache.lookup("a.example").await;
    cache.lookup("b.example").await;
    assert!(cache.take_dirty());
    let snapshot = cache.snapshot();
    let snap: Vec<(String, CachedPolicy)> = snapshot
        .policies
        .into_iter()
        .map(|(d, p)| {
            let mut p = CachedPolicy::clone(&p);
            p.fetched = p.fetched.saturating_add_signed(snapshot.wall_offset);
            (d, p)
        })
        .collect();
    assert_eq!(snap.len(), 2);

    let (fresh, s2, clock2) = setup(100);
    clock2.advance(clock.now() - T0 + 601);
    assert_eq!(fresh.restore(snap), 1, "b.example expired in between");
    s2.txt_error("a.example", DnsError::Failed("no network".into()));
    assert_eq!(
        mode_of(&fresh.lookup("a.example").await),
        Some(Mode::Enforce)
    );
    // Restored entries count as checked at start-up: no burst of TXT queries.
    assert_eq!(s2.counts(), (0, 0));
    clock2.advance(60);
    fresh.lookup("a.example").await;
    settle(&fresh).await;
    assert_eq!(s2.counts(), (1, 0));
}

#[tokio::test]
async fn background_rechecks_are_bounded_when_dns_is_silent() {
    let (cache, s, clock) = setup(1000);
    for i in 0..100 {
        let d = format!("d{i}.example");
        s.record(&d, "1");
        s.policy(&d, "enforce", "mx.example.com", 86400);
        cache.lookup(&d).await;
    }
    s.delay_ms.store(500, Ordering::SeqCst); // DNS now hangs for half a second
    clock.advance(61);
    let started = std::time::Instant::now();
    for i in 0..100 {
        let d = format!("d{i}.example");
        assert_eq!(mode_of(&cache.lookup(&d).await), Some(Mode::Enforce));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "hits never wait"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.counts().0,
        100 + MAX_BACKGROUND,
        "only {MAX_BACKGROUND} re-checks at once"
    );
    settle(&cache).await;
    // The rest are picked up by later hits, once permits are free.
    for i in 0..100 {
        cache.lookup(&format!("d{i}.example")).await;
    }
    settle(&cache).await;
    assert!(s.counts().0 > 100 + MAX_BACKGROUND);
}

#[test]
fn resolver_trouble_is_logged_once_a_minute() {
    let limit = RateLimited::default();
    assert!(limit.note(T0, String::new));
    assert!(!limit.note(T0 + 1, String::new));
    assert!(!limit.note(T0 + 59, String::new));
    assert!(limit.note(T0 + 60, String::new));
    assert_eq!(limit.suppressed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_slow_resolution_answers_notfound_in_time_and_still_fills_the_cache_spec_3_6() {
    let (cache, s, _) = setup(100);
    cache.settings.write().unwrap().answer_timeout = Duration::from_millis(100);
    s.record("slow.example", "1");
    s.policy("slow.example", "enforce", "mx.example.com", 86400);
    s.delay_ms.store(200, Ordering::SeqCst); // per step: TXT then fetch, 400 ms
    let started = std::time::Instant::now();
    assert_eq!(mode_of(&cache.lookup("slow.example").await), None);
    assert!(started.elapsed() < Duration::from_millis(300));
    settle(&cache).await;
    assert_eq!(
        mode_of(&cache.lookup("slow.example").await),
        Some(Mode::Enforce)
    );
    assert_eq!(s.counts(), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_refresher_refreshes_due_policies_and_keeps_them_on_failure_spec_5_5() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 3600);
    cache.lookup("example.com").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(refresh::refresher(Arc::clone(&cache), stopped));

    // Not due yet: a scan changes nothing.
    tokio::time::sleep(refresh::SCAN_INTERVAL + Duration::from_secs(1)).await;
    assert_eq!(s.counts(), (1, 1));

    // Due (3/4 of max_age), but the policy server is down: the policy stays and the
    // refresh backs off instead of running at every scan.
    clock.advance(2700);
    s.fetch_error("example.com");
    tokio::time::sleep(refresh::SCAN_INTERVAL).await;
    settle(&cache).await;
    assert_eq!(s.counts(), (2, 2));
    assert_eq!(
        mode_of(&cache.lookup("example.com").await),
        Some(Mode::Enforce)
    );
    tokio::time::sleep(refresh::SCAN_INTERVAL).await;
    settle(&cache).await;
    assert_eq!(s.counts().1, 2, "backing off");

    // Back up: the next attempt after the back-off restarts the max_age clock.
    clock.advance(FETCH_FAILURE_BACKOFF);
    s.policy("example.com", "enforce", "mx2.example.com", 3600);
    tokio::time::sleep(refresh::SCAN_INTERVAL).await;
    settle(&cache).await;
    let Lookup::Policy(p) = cache.lookup("example.com").await else {
        panic!("policy lost")
    };
    assert_eq!(p.fetched, clock.now());
    assert_eq!(p.policy.mx[0].to_string(), "mx2.example.com");

    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_recheck_that_finds_a_refresh_due_refreshes_spec_5_5() {
    let (cache, s, clock) = setup(100);
    s.record("example.com", "1");
    s.policy("example.com", "enforce", "mx.example.com", 3600);
    cache.lookup("example.com").await;
    clock.advance(61);
    cache.lookup("example.com").await; // same id, not due: TXT only
    settle(&cache).await;
    assert_eq!(s.counts(), (2, 1));
    clock.advance(2700);
    cache.lookup("example.com").await; // same id, but due: fetched again
    settle(&cache).await;
    assert_eq!(s.counts(), (3, 2));
}

mod clock;
mod cluster;
mod table;
