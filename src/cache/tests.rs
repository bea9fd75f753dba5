//! The cache's state machine against scripted DNS and fetch edges (a trait seam: the
//! real edges are exercised by the integration tests) and a hand-moved clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::*;
use crate::mta_sts::Mode;
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
    let script = Arc::new(Script::default());
    let clock = Arc::new(ManualClock::at(T0));
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
        clock.clone(),
    );
    (cache, script, clock)
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
    cache.resolve_shared("week.example", true, None).await;
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

/// A shared cache in memory, for two `PolicyCache`s in one test (the real Redis client
/// is tested against a real redis-server in tests/redis.rs).
#[derive(Default)]
struct MemoryCluster {
    entries: Mutex<HashMap<String, cluster::ClusterRecord>>,
    leases: Mutex<HashMap<String, u64>>,
    released: Mutex<Vec<String>>,
    down: std::sync::atomic::AtomicBool,
}

impl cluster::ClusterCache for MemoryCluster {
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<cluster::ClusterRecord>, cluster::ClusterError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(cluster::ClusterError("down".into()));
            }
            Ok(self.entries.lock().unwrap().get(domain).cloned())
        })
    }
    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a cluster::ClusterRecord,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), cluster::ClusterError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(cluster::ClusterError("down".into()));
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
    ) -> BoxFuture<'a, Result<bool, cluster::ClusterError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(cluster::ClusterError("down".into()));
            }
            let mut leases = self.leases.lock().unwrap();
            let n = leases.entry(domain.to_string()).or_insert(0);
            *n += 1;
            Ok(*n == 1)
        })
    }
    fn release<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<(), cluster::ClusterError>> {
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
    let sb = Arc::new(Script::default());
    let b = PolicyCache::new(
        100,
        CacheSettings {
            recheck: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(5),
            max_concurrency: MAX_FOREGROUND,
        },
        Resolvers {
            txt: sb.clone(),
            fetch: sb.clone(),
        },
        clock.clone(),
    );
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

#[tokio::test]
async fn a_shared_negative_answer_never_evicts_a_policy_spec_5_3() {
    let Cluster {
        a, shared, clock, ..
    } = two_nodes();
    a.lookup("example.com").await;
    until_shared(&shared, "example.com").await;
    // Another node (its DNS stripped by an attacker) published "no policy", and holds
    // the lease, so this node adopts instead of checking.
    let now = clock.now();
    shared.entries.lock().unwrap().insert(
        "example.com".into(),
        cluster::ClusterRecord::Negative {
            checked: now,
            until: now + 3600,
        },
    );
    shared
        .leases
        .lock()
        .unwrap()
        .insert("example.com".into(), 1);
    clock.advance(61);
    a.lookup("example.com").await;
    settle(&a).await;
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
        cluster::ClusterRecord::Policy {
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
        cluster::ClusterRecord::Negative {
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
            misses: entries.misses.len(),
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
        (stats.policies, stats.enforce, stats.misses),
        (5, 1, 4),
        "{stats:?}"
    );
    let settings = cache.settings.read().unwrap().clone();
    let resolvers = cache.resolvers.read().unwrap().clone();
    cache.reconfigure(2, settings, resolvers);
    assert_eq!(cache.stats(), walked(&cache));
    assert_eq!(cache.stats().misses, 2);
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

/// A node with its own clock on the shared cache `shared`.
fn node_with_clock(
    clock: Arc<ManualClock>,
    shared: &Arc<MemoryCluster>,
) -> (Arc<PolicyCache>, Arc<Script>) {
    let script = Arc::new(Script::default());
    let cache = PolicyCache::new(
        100,
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
        cluster::ClusterRecord::Policy { policy, checked } => {
            assert_eq!(
                (policy.fetched, checked),
                (T0, T0),
                "published in wall time"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
