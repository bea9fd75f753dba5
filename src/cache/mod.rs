//! The policy cache (SPEC 5): answers without waiting when it can, resolves at most
//! once per domain at a time, and never lets a failure evict a policy it still trusts.
//!
//! - this file: the API: [`PolicyCache`] and its answer path (a hit, then a miss),
//!   [`Clock`], [`CacheSettings`], the save and restore hooks;
//! - `entry`: what is kept per domain: [`CachedPolicy`] (also what is persisted)
//!   and the per-entry state around it;
//! - `table`: the LRUs the entries live in (5.7) and the shared answer texts;
//! - `resolve`: the discovery flow: TXT, fetch, back-off (2, 3, 5.2–5.6);
//! - [`cluster`]: the cluster's protocol (5.10): adopt, lease, publish; [`redis`]
//!   speaks it to Redis;
//! - `single_flight`: one resolution per domain at a time (3.6), for this cache and
//!   [`dane`]'s;
//! - [`refresh`]: the background task that refreshes policies before they expire (5.5);
//! - [`store`]: the on-disk copy that survives restarts (5.8);
//! - [`dane`]: the DANE results (6.4), a cache of their own with DNS TTLs.
//!
//! # Time (SPEC 5.9)
//!
//! Every time the cache keeps (re-checks, back-offs, negative answers, the DANE
//! TTLs, leases, and the `fetched` of each policy) is in *process seconds*
//! ([`Clock::now`]): the wall time at start-up plus the time elapsed since on a
//! clock that counts suspended time and is never stepped. So a wall clock stepped
//! back freezes no deadline, one stepped forward expires nothing, and a policy
//! fetched while the process runs expires by the time elapsed since its fetch.
//! Process seconds read like unix time, so that the code (and `cache/dane.rs`,
//! the logs) keeps one kind of number, and a wall time is needed only where a
//! time leaves the process and comes back: the store saves `fetched` as the wall
//! time now minus the policy's age, and a restore judges it by the wall clock at
//! load, a time in the future counting as now ([`PolicyCache::snapshot`],
//! [`PolicyCache::restore`]); the cluster's records carry wall-clock times, the
//! one time the nodes share, converted as they leave and arrive
//! (`ClusterRecord::shifted`).

pub mod cluster;
pub mod dane;
mod entry;
mod lru;
pub mod redis;
pub mod refresh;
mod resolve;
mod single_flight;
pub mod store;
mod table;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use self::cluster::ClusterCache;
pub use self::cluster::CLUSTER_LEASE;
use self::entry::Entry;
pub(crate) use self::entry::Name;
pub use self::entry::{CachedPolicy, Memo};
use self::single_flight::{InFlight, SingleFlight};
use self::table::Entries;

use crate::mta_sts::Mode;
use crate::resolver::Resolvers;

/// The cache's time, in whole seconds. A trait so that tests can move time and
/// step the wall clock.
pub trait Clock: Send + Sync + 'static {
    /// Process seconds, the time of every deadline and age the cache keeps (SPEC 5.9):
    /// the wall time at start-up plus the time elapsed since, suspended time included
    /// (`CLOCK_BOOTTIME`). They read like unix time but never jump with the wall clock.
    fn now(&self) -> u64;

    /// The wall clock (unix seconds), read only where a time leaves the process or
    /// comes back in: the on-disk store (SPEC 5.8). A clock whose `now` is its wall
    /// time (one that is never stepped) need not say.
    fn wall(&self) -> u64 {
        self.now()
    }
}

/// The real clock. Every instance reads the same process seconds.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        process_seconds()
    }

    fn wall(&self) -> u64 {
        // The coarse clock (the time at the last tick): whole seconds are enough.
        #[cfg(target_os = "linux")]
        if let Some(ns) = linux::clock_ns(libc::CLOCK_REALTIME_COARSE) {
            return u64::try_from(ns.div_euclid(linux::NS)).unwrap_or(0);
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// See [`Clock::now`]. On Linux, every cache hit reads it, as the coarse monotonic
/// clock (the time at the last tick, as cheap as the coarse wall clock the cache
/// read before) plus two offsets: the wall time minus `CLOCK_BOOTTIME` at start-up,
/// and `CLOCK_BOOTTIME` − `CLOCK_MONOTONIC`, the time spent suspended, which changes
/// only across a suspend. There is no coarse `CLOCK_BOOTTIME`, and a precise clock
/// costs about 190 ns a read against 45 ns for a coarse one where the vDSO cannot
/// read the clock source (measured on the 2-core VM the project is built on), so
/// the second offset is re-read once per second of monotonic time, on the first
/// call in that second: after a resume the process clock lags by the time
/// suspended for at most a second, then catches up. It never goes backwards.
fn process_seconds() -> u64 {
    #[cfg(target_os = "linux")]
    return linux::process_seconds();
    #[cfg(not(target_os = "linux"))]
    {
        static START: std::sync::OnceLock<(std::time::Instant, u64)> = std::sync::OnceLock::new();
        let (at, wall) = START.get_or_init(|| (std::time::Instant::now(), SystemClock.wall()));
        wall + at.elapsed().as_secs()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::OnceLock;

    pub(super) const NS: i64 = 1_000_000_000;

    pub(super) fn clock_ns(id: libc::clockid_t) -> Option<i64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only the struct it is given.
        #[allow(clippy::useless_conversion)] // time_t is 32 bits on some targets
        (unsafe { libc::clock_gettime(id, &mut ts) } == 0)
            .then(|| i64::from(ts.tv_sec) * NS + i64::from(ts.tv_nsec))
    }

    struct Offsets {
        /// Wall time minus `CLOCK_BOOTTIME`, at start-up (ns).
        base: i64,
        /// `CLOCK_BOOTTIME` − `CLOCK_MONOTONIC` (ns): grows by the time suspended.
        suspended: AtomicI64,
        /// The monotonic second in which `suspended` was last read.
        checked: AtomicI64,
    }

    fn suspended() -> i64 {
        let mono = clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0);
        clock_ns(libc::CLOCK_BOOTTIME).unwrap_or(mono) - mono
    }

    pub(super) fn process_seconds() -> u64 {
        static OFFSETS: OnceLock<Offsets> = OnceLock::new();
        let offsets = OFFSETS.get_or_init(|| {
            let boot = clock_ns(libc::CLOCK_BOOTTIME).unwrap_or(0);
            let wall = clock_ns(libc::CLOCK_REALTIME).unwrap_or(0);
            Offsets {
                base: wall - boot,
                suspended: AtomicI64::new(suspended()),
                checked: AtomicI64::new(0),
            }
        });
        let mono = clock_ns(libc::CLOCK_MONOTONIC_COARSE).unwrap_or(0);
        let second = mono / NS;
        if offsets.checked.load(Ordering::Relaxed) != second {
            offsets.checked.store(second, Ordering::Relaxed);
            // Only ever raised, and only by more than read jitter: the process clock
            // must not step back by a second at a boundary.
            let now = suspended();
            let was = offsets.suspended.load(Ordering::Relaxed);
            if now > was + 1_000_000 {
                offsets.suspended.fetch_max(now, Ordering::Relaxed);
            }
        }
        let ns = mono + offsets.suspended.load(Ordering::Relaxed) + offsets.base;
        u64::try_from(ns.div_euclid(NS)).unwrap_or(0)
    }
}

/// SPEC 5.6: back-off after a DNS error with nothing cached.
pub const DNS_ERROR_BACKOFF: u64 = 60;
/// SPEC 5.6: back-off after a failed fetch, per TXT id.
pub const FETCH_FAILURE_BACKOFF: u64 = 300;
/// SPEC 5.6: bounds of the negative cache.
pub const NEGATIVE_TTL_MIN: u64 = 60;
pub const NEGATIVE_TTL_MAX: u64 = 3600;
/// Used when a "no record" answer carried no SOA to take a negative TTL from.
pub const NEGATIVE_TTL_DEFAULT: u64 = 300;
/// SPEC 5.5: refresh at least daily.
pub const MAX_REFRESH_INTERVAL: u64 = 86_400;
/// A policy is used for at least this long after a successful fetch, whatever its
/// `max_age` says: `max_age: 0` must not turn every lookup into a fetch (SPEC 5.6's
/// "one broken domain cannot hammer its servers"), and erring towards the policy
/// is the safe side.
pub const MIN_LIFETIME: u64 = 60;

/// Tunables, replaced on SIGHUP.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// SPEC 5.4.
    pub recheck: Duration,
    /// How long an answer may wait for a resolution with nothing cached; must stay well
    /// inside Postfix's 100 s (SPEC 1.5, 3.6).
    pub answer_timeout: Duration,
    /// Resolutions running at once, answer path and background together
    /// (`dns.max_concurrency`); read when the cache is created.
    pub max_concurrency: usize,
}

/// A resolution of one domain in flight, as its waiters await it.
pub type Resolution = InFlight<Option<Arc<CachedPolicy>>>;

/// The cache. Cheap to share: `Arc<PolicyCache>`.
pub struct PolicyCache {
    entries: Mutex<Entries>,
    /// SPEC 3.6: one resolution per domain at a time, shared by every waiter.
    inflight: SingleFlight<Option<Arc<CachedPolicy>>>,
    resolvers: RwLock<Resolvers>,
    settings: RwLock<CacheSettings>,
    /// `settings.recheck` in whole seconds (at least 1), read on every hit without
    /// taking the lock.
    recheck_secs: AtomicU64,
    clock: Arc<dyn Clock>,
    /// Set when a policy changed since the last save; [`store`] clears it.
    dirty: AtomicBool,
    /// Woken on every policy change so the saver can write soon.
    changed: Notify,
    /// Rate-limits the warning about a failing resolver.
    dns_trouble: RateLimited,
    /// Rate-limits the "cache is full" warning.
    evictions: RateLimited,
    /// The cluster's cache (SPEC 5.10), when `[cache] backend = "redis"`.
    cluster: RwLock<Option<Arc<dyn ClusterCache>>>,
    /// Bounds re-checks and refreshes ([`MAX_BACKGROUND`], at most a quarter of
    /// `max_concurrency`).
    background: Arc<Semaphore>,
    /// Bounds all resolutions running at once (`max_concurrency`): background work
    /// takes one of these too, so the resolver never sees more.
    foreground: Arc<Semaphore>,
}

/// Background resolutions (re-checks, refreshes) running at once. Each holds a DNS
/// socket and maybe a TLS connection for up to a timeout; a silent resolver must not
/// turn 100 000 cached domains into 100 000 open sockets.
pub const MAX_BACKGROUND: usize = 32;
/// The default of `dns.max_concurrency`: resolutions running at once; more wait
/// (answer-path misses within the answer timeout).
pub const MAX_FOREGROUND: usize = 256;

/// A usable cached policy as [`PolicyCache::cached`] lends it, under the cache lock.
/// `mode` and `answer` are kept next to the cache key; reading through `policy`
/// costs another memory access per hit.
pub struct Hit<'a> {
    pub mode: Mode,
    /// `secure match=...`, or empty when the policy has no answer Postfix can take
    /// ([`crate::postfix::cached_answer`]).
    pub answer: &'a str,
    pub policy: &'a Arc<CachedPolicy>,
}

/// What [`PolicyCache::cached`] found.
#[derive(Debug)]
pub enum Cached<R> {
    /// A usable policy, read.
    Policy(R),
    /// No policy, and quiet: negative cache or back-off (SPEC 5.6).
    NoPolicy,
    /// Nothing usable: resolve ([`PolicyCache::resolve_miss`]).
    Unknown,
}

/// See [`PolicyCache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub policies: usize,
    /// Domains cached without a policy: negative cache and back-off (SPEC 5.6).
    pub negative: usize,
    pub enforce: usize,
    pub testing: usize,
    pub none: usize,
}

/// How a lookup was answered, for `query` and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Policy(Arc<CachedPolicy>),
    NoPolicy,
}

impl PolicyCache {
    pub fn new(
        size: usize,
        settings: CacheSettings,
        resolvers: Resolvers,
        clock: Arc<dyn Clock>,
    ) -> Arc<PolicyCache> {
        let settings_limit = settings.max_concurrency.max(1);
        Arc::new(PolicyCache {
            entries: Mutex::new(Entries::new(size)),
            inflight: SingleFlight::new(),
            resolvers: RwLock::new(resolvers),
            recheck_secs: AtomicU64::new(settings.recheck.as_secs().max(1)),
            settings: RwLock::new(settings),
            clock,
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
            dns_trouble: RateLimited::default(),
            evictions: RateLimited::default(),
            cluster: RwLock::new(None),
            // Background work keeps at least three quarters of the slots free for
            // answers.
            background: Arc::new(Semaphore::new(
                (settings_limit / 4).clamp(1, MAX_BACKGROUND),
            )),
            foreground: Arc::new(Semaphore::new(settings_limit)),
        })
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Run every resolution (misses, re-checks, refreshes) on `runtime` from now on
    /// instead of the caller's. Set once; later calls change nothing.
    pub fn run_resolutions_on(&self, runtime: tokio::runtime::Handle) {
        self.inflight.run_on(runtime);
    }

    /// SIGHUP: new resolvers, settings and size; the entries stay (SPEC 7.3).
    pub fn reconfigure(&self, size: usize, settings: CacheSettings, resolvers: Resolvers) {
        *self.resolvers.write().unwrap() = resolvers;
        self.recheck_secs
            .store(settings.recheck.as_secs().max(1), Ordering::Relaxed);
        *self.settings.write().unwrap() = settings;
        let warning = self.entries.lock().unwrap().resize(size);
        // Logged with the lock released: a stalled log must not stall the hits.
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Use (or stop using) a cluster's shared cache.
    pub fn set_cluster(&self, shared: Option<Arc<dyn ClusterCache>>) {
        *self.cluster.write().unwrap() = shared;
    }

    /// Counts for the metrics endpoint: entries by kind, policies by mode. Kept as
    /// entries come and go, so a scrape holds the lock for a few loads (SPEC 7.6). A
    /// policy counts until it is replaced or evicted, even past its expiry (which a
    /// policy reaches only after its refreshes failed for a quarter of `max_age`).
    pub fn stats(&self) -> CacheStats {
        self.entries.lock().unwrap().stats()
    }

    /// What the metrics endpoint shows of the cache, read at scrape time: [`stats`]
    /// and the resolutions in flight.
    ///
    /// [`stats`]: Self::stats
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let stats = self.stats();
        crate::metrics::Gauges {
            policies: stats.policies,
            negative: stats.negative,
            enforce: stats.enforce,
            testing: stats.testing,
            none: stats.none,
            resolutions_in_flight: self.resolutions_in_flight(),
        }
    }

    /// Resolutions running now (answer-path misses, re-checks and refreshes).
    pub fn resolutions_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The answer path, for callers that want the policy itself. Returns at once
    /// when the cache knows the domain (see [`cached`](Self::cached)); otherwise
    /// waits for the one shared resolution ([`resolve_miss`](Self::resolve_miss)).
    pub async fn lookup(self: &Arc<Self>, domain: &str) -> Lookup {
        match self.cached(domain, |hit| Arc::clone(hit.policy)) {
            Cached::Policy(policy) => Lookup::Policy(policy),
            Cached::NoPolicy => Lookup::NoPolicy,
            Cached::Unknown => self.resolve_miss(domain).await,
        }
    }

    /// The hot half of the answer path: `read` on the usable policy cached for
    /// `domain`, under the cache lock (copy out what you need; do not wait), starting
    /// a background TXT re-check when one is due (SPEC 5.4). [`Cached::Unknown`]
    /// when nothing usable or quiet is cached: then [`resolve_miss`](Self::resolve_miss).
    pub fn cached<R>(self: &Arc<Self>, domain: &str, read: impl FnOnce(Hit<'_>) -> R) -> Cached<R> {
        let now = self.clock.now();
        let recheck = self.recheck_secs.load(Ordering::Relaxed);
        let found = self
            .entries
            .lock()
            .unwrap()
            .hit(domain, now, |entry, answers| {
                if entry.usable(now).is_none() {
                    return if now < entry.quiet_until {
                        Found::NoPolicy
                    } else {
                        Found::Unknown
                    };
                }
                let mut recheck_permit = None;
                if now >= entry.checked.saturating_add(recheck) {
                    // Bounded: when DNS is slow or silent, re-checks must not pile up
                    // (sockets, memory). Without a permit the check waits for a later hit.
                    if let Ok(permit) = Arc::clone(&self.background).try_acquire_owned() {
                        // Marked now, so the hits that follow do not start another.
                        entry.checked = now;
                        recheck_permit = Some(permit);
                    }
                }
                let Entry {
                    policy: Some(policy),
                    mode: Some(mode),
                    answer,
                    ..
                } = entry
                else {
                    unreachable!("a usable entry has a policy, set with its mode");
                };
                let mut too_long = None;
                let answer = answer.get_or_insert_with(|| {
                    let text =
                        crate::postfix::cached_answer(&policy.policy).unwrap_or_else(|len| {
                            too_long = Some(len);
                            Box::from("")
                        });
                    answers.intern(text)
                });
                Found::Policy {
                    read: read(Hit {
                        mode: *mode,
                        answer,
                        policy,
                    }),
                    recheck_permit,
                    too_long,
                }
            });
        match found {
            Some(Found::Policy {
                read,
                recheck_permit,
                too_long,
            }) => {
                // Logged once per policy (on its first hit), outside the lock.
                if let Some(len) = too_long {
                    log::warn!(
                        "{domain}: policy answer of {len} bytes is too long for Postfix; answering NOTFOUND"
                    );
                }
                if let Some(permit) = recheck_permit {
                    drop(self.join_resolution(domain, false, Some(permit)));
                }
                crate::metrics::get().cache_hits.increment(1);
                Cached::Policy(read)
            }
            Some(Found::NoPolicy) => {
                crate::metrics::get().cache_negative_hits.increment(1);
                Cached::NoPolicy
            }
            Some(Found::Unknown) | None => Cached::Unknown,
        }
    }

    /// The cold half of the answer path, after [`cached`](Self::cached) found
    /// nothing: wait for the one shared resolution, at most `answer_timeout`.
    pub async fn resolve_miss(self: &Arc<Self>, domain: &str) -> Lookup {
        crate::metrics::get().cache_misses.increment(1);
        let timeout = self.settings.read().unwrap().answer_timeout;
        match tokio::time::timeout(timeout, self.join_resolution(domain, false, None)).await {
            Ok(Some(p)) => Lookup::Policy(p),
            Ok(None) => Lookup::NoPolicy,
            Err(_) => {
                // Per waiter, so debug: the resolution logs its own outcome once.
                log::debug!(
                    "{domain}: no answer within {timeout:?}; NOTFOUND, resolution continues"
                );
                Lookup::NoPolicy
            }
        }
    }

    /// A permit for background work (re-checks, proactive refreshes): at most
    /// [`MAX_BACKGROUND`] run at once.
    pub async fn background_permit(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.background)
            .acquire_owned()
            .await
            .expect("semaphore is never closed")
    }

    fn update(&self, domain: &str, f: impl FnOnce(&mut Entry)) {
        let now = self.clock.now();
        let evicted = {
            let mut entries = self.entries.lock().unwrap();
            let mut e = entries.take(domain).unwrap_or_default();
            f(&mut e);
            entries.put(Name::from(domain), e, now)
        };
        if let Some((gone, cap)) = evicted {
            self.note_eviction(now, &gone, cap);
        }
    }

    /// A usable policy had to go to make room: the cache is too small for this
    /// server's traffic. Logged once a minute at most (a full cache evicts on every
    /// new domain), and never under the entries' lock (SPEC 7.6).
    fn note_eviction(&self, now: u64, gone: &str, cap: usize) {
        self.evictions.note(now, || {
            format!(
                "the cache is full (cache.size {cap}): policies are being dropped, e.g. {gone}'s; raise cache.size"
            )
        });
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Domains whose policy is due for a proactive refresh (SPEC 5.5), not already
    /// backing off after a failed one.
    /// SPEC 8.3: why there is no policy for `domain` although it publishes an
    /// `_mta-sts` record (its last fetch failed), for TLS-RPT; `None` when a usable
    /// policy is cached or nothing failed. Read-only: the LRU order is not touched.
    pub fn finding(&self, domain: &str) -> Option<crate::tlsrpt::findings::Finding> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap();
        let entry = entries.peek(domain)?;
        if entry.usable(now).is_some() {
            return None;
        }
        entry.finding().cloned()
    }

    pub fn due_for_refresh(&self, now: u64) -> Vec<String> {
        let entries = self.entries.lock().unwrap();
        entries
            .policies()
            .flat_map(|lru| lru.iter())
            .filter(|(_, e)| {
                e.usable(now).is_some_and(|p| now >= p.refresh_at())
                    && e.failed().is_none_or(|(_, until)| now >= *until)
            })
            .map(|(d, _)| d.to_string())
            .collect()
    }

    /// Every usable policy, for the on-disk store, with what turns their process
    /// times into wall times.
    /// Shares the policies (no deep copy): the store serialises them outside the lock.
    pub fn snapshot(&self) -> store::Snapshot {
        let now = self.clock.now();
        // SPEC 5.9: saved as wall time minus the policy's age, so that after a jump of
        // the wall clock the file says how old each policy really is, by the new time.
        let wall_offset = i128::from(self.clock.wall()) - i128::from(now);
        let entries = self.entries.lock().unwrap();
        // Least recently used first, so a reload puts them back in the same order.
        let policies = entries
            .policies()
            .flat_map(|lru| lru.iter().rev())
            .filter_map(|(d, e)| e.usable(now).map(|p| (d.to_string(), Arc::clone(p))))
            .collect();
        store::Snapshot {
            policies,
            wall_offset: i64::try_from(wall_offset).unwrap_or(0),
        }
    }

    /// Put persisted policies back (SPEC 5.8), their `fetched` in wall time. Each is
    /// judged by the wall clock now (SPEC 5.9): its age is the wall time since
    /// `fetched`, and a `fetched` in the future (the clock was stepped back since the
    /// save) counts as now. Expired ones are skipped; each is re-checked once
    /// `recheck` has passed, like any other.
    pub fn restore(&self, policies: Vec<(String, CachedPolicy)>) -> usize {
        let now = self.clock.now();
        let wall = self.clock.wall();
        let mut evicted = None;
        let mut n = 0;
        let mut entries = self.entries.lock().unwrap();
        for (domain, mut policy) in policies {
            let age = wall.saturating_sub(policy.fetched);
            policy.fetched = now.saturating_sub(age);
            if !policy.usable(now) {
                continue;
            }
            let mut entry = Entry {
                // Counted as checked at start-up: a restart must not become a burst
                // of one TXT query per known domain. Refreshes still run on time.
                checked: now,
                ..Entry::default()
            };
            entry.set_policy(Some(Arc::new(policy)));
            // A domain listed twice keeps its last copy, in one table.
            entries.take(&domain);
            evicted = entries.put(Name::from(domain), entry, now).or(evicted);
            n += 1;
        }
        drop(entries);
        if let Some((gone, cap)) = evicted {
            self.note_eviction(now, &gone, cap);
        }
        n
    }

    /// Take the "changed since last save" flag.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Resolves when a policy changes.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A warning logged at most once a minute, with a count of what it stood for.
#[derive(Default)]
struct RateLimited {
    /// When the last line was logged (process seconds).
    last: AtomicU64,
    /// Occurrences since the last line.
    suppressed: AtomicU64,
}

impl RateLimited {
    /// Log `line` unless a line was logged in the last minute; `true` if logged.
    fn note(&self, now: u64, line: impl FnOnce() -> String) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        if (last != 0 && now < last + 60)
            || self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let more = self.suppressed.swap(0, Ordering::AcqRel);
        if more > 0 {
            log::warn!("{} (and {more} more since the last report)", line());
        } else {
            log::warn!("{}", line());
        }
        true
    }
}

/// What a lookup found under the cache lock: the three states of [`Cached`], the
/// first with what is to be done once the lock is released.
enum Found<R> {
    /// What the reader made of a usable policy, a permit when its TXT id re-check is
    /// due now, and the length of an answer text too long for Postfix, found when it
    /// was built (to log once the lock is released).
    Policy {
        read: R,
        recheck_permit: Option<OwnedSemaphorePermit>,
        too_long: Option<usize>,
    },
    /// See [`Cached::NoPolicy`].
    NoPolicy,
    /// See [`Cached::Unknown`].
    Unknown,
}

#[cfg(test)]
mod tests;
