//! The policy cache (SPEC 5): answers without waiting when it can, resolves at most
//! once per domain at a time, and never lets a failure evict a policy it still trusts.
//!
//! - this file: [`PolicyCache`], the per-domain state machine and single-flight;
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
//! the shared cache's records, the logs) keeps one kind of number, and a wall time
//! is needed only where a time leaves the process and comes back: the store saves
//! `fetched` as the wall time now minus the policy's age, and a restore judges it
//! by the wall clock at load, a time in the future counting as now
//! ([`PolicyCache::snapshot`], [`PolicyCache::restore`]). Time in the cluster's
//! shared records is process seconds too: nodes' clocks agree as long as nobody
//! steps a wall clock while they run.

pub mod cluster;
pub mod dane;
mod lru;
pub mod redis;
pub mod refresh;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use self::lru::Lru;

use crate::mta_sts::policy::parse_policy;
use crate::mta_sts::record::select_record;
use crate::mta_sts::{Mode, Policy};
use crate::resolver::{DnsError, FetchError, Resolvers};
use cluster::{ClusterCache, ClusterRecord};

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
        static START: OnceLock<(std::time::Instant, u64)> = OnceLock::new();
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
/// What the shared cache says before a resolution.
enum Consult {
    /// The cluster already knew: this is the result.
    Done(Option<Arc<CachedPolicy>>),
    /// Resolve here; `leased` when this node took the domain's lease; `refetch` when
    /// a shared record differs from the local policy (SPEC 5.10): fetch the policy
    /// even if the TXT id has not changed, as a proactive refresh does.
    Proceed { leased: bool, refetch: bool },
}

impl Consult {
    const ALONE: Consult = Consult::Proceed {
        leased: false,
        refetch: false,
    };
}

/// What a shared record did to a node's entry ([`PolicyCache::adopt`]).
enum Adopted {
    /// It filled a miss, or confirmed what the node holds: the lookup's result.
    Used(Lookup),
    /// It differs from the usable local policy, which stays (SPEC 5.10).
    Differs,
}

/// How long a node may hold a domain's shared lease (a re-check or refresh takes at
/// most a DNS timeout plus a fetch deadline; a crashed node's lease lapses).
pub const CLUSTER_LEASE: Duration = Duration::from_secs(30);
/// SPEC 5.5: refresh at least daily.
pub const MAX_REFRESH_INTERVAL: u64 = 86_400;
/// A policy is used for at least this long after a successful fetch, whatever its
/// `max_age` says: `max_age: 0` must not turn every lookup into a fetch (SPEC 5.6's
/// "one broken domain cannot hammer its servers"), and erring towards the policy
/// is the safe side.
pub const MIN_LIFETIME: u64 = 60;

/// A policy we trust, with what we need to keep trusting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPolicy {
    pub policy: Policy,
    /// The TXT id the policy was fetched under (SPEC 5.2).
    pub id: String,
    /// When the last successful fetch was: the `max_age` clock (SPEC 5.1). In the
    /// cache, in process seconds ([`Clock::now`]), so that a policy fetched while the
    /// process runs expires by the time elapsed since; on disk, wall time (SPEC 5.9,
    /// converted by [`PolicyCache::snapshot`] and [`PolicyCache::restore`]).
    pub fetched: u64,
    /// The TLS-RPT attributes after the domain (SPEC 6.3), built on the first hit
    /// under a `tlsrpt` profile so that hits allocate nothing; derived from `policy`,
    /// never saved. (The `secure match=...` text is kept in the cache entry.)
    #[serde(skip)]
    pub tlsrpt: Memo,
}

/// A write-once slot for text derived from a policy (see [`CachedPolicy::tlsrpt`]).
/// Equal to any other: it holds nothing the policy does not determine.
#[derive(Default, Clone)]
pub struct Memo(OnceLock<Box<str>>);

impl Memo {
    pub fn get_or_init(&self, init: impl FnOnce() -> Box<str>) -> &str {
        self.0.get_or_init(init)
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl CachedPolicy {
    pub fn new(policy: Policy, id: String, fetched: u64) -> CachedPolicy {
        CachedPolicy {
            policy,
            id,
            fetched,
            tlsrpt: Memo::default(),
        }
    }

    /// SPEC 5.1: usable until `fetched + max_age` (at least [`MIN_LIFETIME`]).
    pub fn expires(&self) -> u64 {
        self.fetched
            .saturating_add(u64::from(self.policy.max_age).max(MIN_LIFETIME))
    }

    pub fn usable(&self, now: u64) -> bool {
        now < self.expires()
    }

    /// SPEC 5.5: when to refresh proactively: at three quarters of `max_age`, and at
    /// least daily.
    pub fn refresh_at(&self) -> u64 {
        let max_age = u64::from(self.policy.max_age);
        let after = (max_age - max_age / 4).min(MAX_REFRESH_INTERVAL);
        self.fetched.saturating_add(after)
    }
}

/// A cache key: a domain name, stored inline (in the LRU's table slot) when it has
/// at most 24 bytes, as almost all do.
pub(crate) type Name = compact_str::CompactString;

/// Per-domain state. It lives in the LRU's table slot, next to the key, so what a
/// hit reads is here: the expiry, mode and answer text are copies of the policy's
/// (set by [`Entry::set_policy`]), and a hit does not touch the policy itself.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The last policy fetched; used only while [`CachedPolicy::usable`]. Set only
    /// through [`Entry::set_policy`].
    policy: Option<Arc<CachedPolicy>>,
    /// `policy`'s [`CachedPolicy::expires`] (0 without a policy).
    expires: u64,
    /// `policy`'s mode, and the `secure match=...` text of its answer, built on the
    /// first hit ([`crate::postfix::cached_answer`]); derived, never saved.
    mode: Option<Mode>,
    answer: Option<Arc<str>>,
    /// Last TXT id check (or its start, for one in flight): SPEC 5.4.
    checked: u64,
    /// With no usable policy: answer `NOTFOUND ` without resolving until then
    /// (negative cache and back-off, SPEC 5.6).
    quiet_until: u64,
    /// A failed fetch's back-off and the last problem logged. Boxed: rare, and
    /// every entry pays for the field's size (a 100 000-entry cache is mostly this
    /// struct).
    trouble: Option<Box<Trouble>>,
    /// When a hit last moved the entry to the front of its LRU.
    touched: u64,
}

/// What went wrong with a domain lately (see [`Entry::trouble`]).
#[derive(Debug, Clone, Default)]
struct Trouble {
    /// A fetch under this TXT id failed; do not retry it before the time (SPEC 5.6).
    failed: Option<(String, u64)>,
    /// The last problem logged, so a broken domain logs when it changes, not every check.
    last_problem: Option<String>,
}

impl Entry {
    fn usable(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.policy.as_ref().filter(|_| now < self.expires)
    }

    fn failed(&self) -> Option<&(String, u64)> {
        self.trouble.as_ref()?.failed.as_ref()
    }

    fn last_problem(&self) -> Option<&str> {
        self.trouble.as_ref()?.last_problem.as_deref()
    }

    fn set_failed(&mut self, failed: Option<(String, u64)>) {
        if failed.is_some() || self.trouble.is_some() {
            self.change_trouble(|t| t.failed = failed);
        }
    }

    fn set_last_problem(&mut self, problem: Option<String>) {
        if problem.is_some() || self.trouble.is_some() {
            self.change_trouble(|t| t.last_problem = problem);
        }
    }

    /// The box goes when there is nothing left in it (and clearing a field of an
    /// entry without trouble allocates nothing: see the setters).
    fn change_trouble(&mut self, f: impl FnOnce(&mut Trouble)) {
        let trouble = self.trouble.get_or_insert_with(Box::default);
        f(trouble);
        if trouble.failed.is_none() && trouble.last_problem.is_none() {
            self.trouble = None;
        }
    }

    fn set_policy(&mut self, policy: Option<Arc<CachedPolicy>>) {
        self.expires = policy.as_ref().map_or(0, |p| p.expires());
        self.mode = policy.as_ref().map(|p| p.policy.mode);
        self.answer = None;
        self.policy = policy;
    }
}

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

type SharedResolution = Shared<BoxFuture<'static, Option<Arc<CachedPolicy>>>>;

/// The cache. Cheap to share: `Arc<PolicyCache>`.
pub struct PolicyCache {
    entries: Mutex<Entries>,
    /// SPEC 3.6: one resolution per domain at a time, shared by every waiter.
    inflight: Mutex<HashMap<String, SharedResolution>>,
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
    /// The cluster's shared cache, when configured (issue 4).
    cluster: RwLock<Option<Arc<dyn ClusterCache>>>,
    /// Bounds re-checks and refreshes ([`MAX_BACKGROUND`], at most a quarter of
    /// `max_concurrency`).
    background: Arc<Semaphore>,
    /// Bounds all resolutions running at once (`max_concurrency`): background work
    /// takes one of these too, so the resolver never sees more.
    foreground: Arc<Semaphore>,
    /// Where resolutions run, when not on the caller's runtime: the daemon gives them
    /// threads of their own at a lower priority, so that DNS and TLS work never
    /// queues cached answers behind it (issue 3, target 5).
    resolution_runtime: OnceLock<tokio::runtime::Handle>,
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
    pub misses: usize,
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
            inflight: Mutex::new(HashMap::new()),
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
            resolution_runtime: OnceLock::new(),
        })
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Run every resolution (misses, re-checks, refreshes) on `runtime` from now on
    /// instead of the caller's. Set once; later calls change nothing.
    pub fn run_resolutions_on(&self, runtime: tokio::runtime::Handle) {
        let _ = self.resolution_runtime.set(runtime);
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

    fn cluster(&self) -> Option<Arc<dyn ClusterCache>> {
        self.cluster.read().unwrap().clone()
    }

    /// Wall-clock seconds minus process seconds at `now` (SPEC 5.9): what turns this
    /// node's times into the cluster's and back.
    fn wall_offset(&self, now: u64) -> i64 {
        let wall = i128::from(self.clock.wall());
        i64::try_from(wall - i128::from(now)).unwrap_or(0)
    }

    /// Publish a domain's state to the shared cache, off the answer path, its times
    /// in wall-clock seconds.
    fn publish(&self, domain: &str, entry: ClusterRecord, now: u64) {
        let Some(shared) = self.cluster() else { return };
        let until = match &entry {
            ClusterRecord::Policy { policy, .. } => policy.expires(),
            ClusterRecord::Negative { until, .. } => *until,
        };
        let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
        let entry = entry.shifted(self.wall_offset(now));
        let domain = domain.to_string();
        tokio::spawn(async move {
            if let Err(e) = shared.put(&domain, &entry, ttl).await {
                log::debug!("{domain}: {e}");
            }
        });
    }

    /// Take over what another node learnt, within SPEC 5.10: a valid, usable policy
    /// fills a miss (kept locally and persisted like one fetched here) or confirms
    /// the local policy (the same policy under the same id: a later `fetched` then
    /// counts, as if this node had refreshed); a live negative answer fills a miss
    /// (SPEC 5.3: it never takes a policy away). A record that differs from the
    /// usable local policy changes nothing here: [`Adopted::Differs`]. `None` when
    /// the record is invalid or no longer usable.
    fn adopt(&self, domain: &str, entry: ClusterRecord, now: u64) -> Option<Adopted> {
        let Some(entry) = cluster::sanitize(entry, now) else {
            crate::metrics::cluster_record_rejected("invalid");
            log::debug!("{domain}: shared record ignored: invalid or expired");
            return None;
        };
        match entry {
            ClusterRecord::Policy { policy, checked } => {
                let policy = Arc::new(CachedPolicy::new(policy.policy, policy.id, policy.fetched));
                let previous = self
                    .entries
                    .lock()
                    .unwrap()
                    .peek(domain)
                    .and_then(|e| e.usable(now).cloned());
                if let Some(p) = &previous {
                    if !cluster::confirms(&policy, p) {
                        return Some(Adopted::Differs);
                    }
                    if p.fetched >= policy.fetched {
                        let p = Arc::clone(p);
                        self.update(domain, |e| e.checked = e.checked.max(checked));
                        return Some(Adopted::Used(Lookup::Policy(p)));
                    }
                }
                // A miss, or a later fetch of the very same policy.
                log_policy_change(domain, previous.as_deref(), &policy);
                self.update(domain, |e| {
                    e.set_policy(Some(Arc::clone(&policy)));
                    e.checked = e.checked.max(checked);
                    e.quiet_until = 0;
                    e.set_failed(None);
                });
                self.mark_dirty();
                Some(Adopted::Used(Lookup::Policy(policy)))
            }
            ClusterRecord::Negative { checked, until } => {
                let mut kept = None;
                self.update(domain, |e| {
                    // SPEC 5.3: another node seeing no record (maybe because its DNS
                    // is being tampered with) never takes away a policy we trust.
                    kept = e.usable(now).cloned();
                    if kept.is_none() {
                        e.set_policy(None);
                        e.checked = checked;
                        e.quiet_until = until;
                    }
                });
                Some(Adopted::Used(kept.map_or(Lookup::NoPolicy, Lookup::Policy)))
            }
        }
    }

    /// Before resolving: what the cluster already knows. On a miss, a fresh enough
    /// shared record answers without any DNS or HTTPS. For background work, a node
    /// that cannot take the domain's lease leaves the work to the node that holds it
    /// and only adopts what is shared, unless the shared record is stale, of no use
    /// or differs from the local policy (SPEC 5.10): then it re-checks here, and fetches
    /// unless its own policy is younger than a re-check interval (the usual pace of
    /// re-checks, so a record rewritten in a loop costs at most one fetch per
    /// interval, and the fetch's own back-off applies).
    async fn consult_cluster(
        &self,
        domain: &str,
        cached: &Option<Arc<CachedPolicy>>,
        refresh: bool,
    ) -> Consult {
        let Some(shared) = self.cluster() else {
            return Consult::ALONE;
        };
        let recheck = self.recheck_secs.load(Ordering::Relaxed);
        let background = refresh || cached.is_some();
        if background {
            match shared.lease(domain, CLUSTER_LEASE).await {
                Ok(false) => {}
                // Ours: do the work here, then hand the lease back.
                Ok(true) => {
                    return Consult::Proceed {
                        leased: true,
                        refetch: false,
                    }
                }
                // Redis unreachable: do the work here, as if alone.
                Err(_) => return Consult::ALONE,
            }
        }
        let Some(entry) = shared.get(domain).await.ok().flatten() else {
            return Consult::ALONE;
        };
        let now = self.clock.now();
        let entry = entry.shifted(-self.wall_offset(now));
        let fresh = match &entry {
            ClusterRecord::Policy { checked, .. } | ClusterRecord::Negative { checked, .. } => {
                now < checked.saturating_add(recheck)
            }
        };
        if !fresh {
            // On a miss, not worth trusting; in the background, whoever holds the
            // lease has not checked within an interval (or the lease is no node's):
            // check here.
            return Consult::ALONE;
        }
        match self.adopt(domain, entry, now) {
            Some(Adopted::Used(lookup)) => {
                if background {
                    if let (true, Lookup::Policy(p)) = (refresh, &lookup) {
                        // SPEC 5.5: a refresh is left to the lease holder for one
                        // lease at most: leases renewed without refreshing must not
                        // let the policy run out.
                        if now >= p.refresh_at().saturating_add(CLUSTER_LEASE.as_secs()) {
                            return Consult::ALONE;
                        }
                    }
                    // Another node holds the lease and has done the work.
                    self.update(domain, |e| e.checked = now);
                }
                Consult::Done(match lookup {
                    Lookup::Policy(p) => Some(p),
                    Lookup::NoPolicy => None,
                })
            }
            Some(Adopted::Differs) => {
                log::debug!(
                    "{domain}: the shared record differs from the cached policy; checking here"
                );
                Consult::Proceed {
                    leased: false,
                    refetch: cached
                        .as_ref()
                        .is_none_or(|c| now >= c.fetched.saturating_add(recheck)),
                }
            }
            None => Consult::ALONE,
        }
    }

    /// Hand a domain's lease back once the work is done, so the next re-check, by
    /// any node, need not wait for it to lapse.
    fn release_lease(&self, domain: &str) {
        let Some(shared) = self.cluster() else { return };
        let domain = domain.to_string();
        tokio::spawn(async move {
            if let Err(e) = shared.release(&domain).await {
                log::debug!("{domain}: {e}");
            }
        });
    }

    /// Counts for the metrics endpoint: entries by kind, policies by mode. Kept as
    /// entries come and go, so a scrape holds the lock for a few loads (SPEC 7.6). A
    /// policy counts until it is replaced or evicted, even past its expiry (which a
    /// policy reaches only after its refreshes failed for a quarter of `max_age`).
    pub fn stats(&self) -> CacheStats {
        self.entries.lock().unwrap().stats()
    }

    /// Resolutions running now (answer-path misses, re-checks and refreshes).
    pub fn resolutions_in_flight(&self) -> usize {
        self.inflight.lock().unwrap().len()
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
                        Found::Negative
                    } else {
                        Found::Stale
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
                    drop(self.resolve_shared(domain, false, Some(permit)));
                }
                crate::metrics::get().cache_hits.increment(1);
                Cached::Policy(read)
            }
            Some(Found::Negative) => {
                crate::metrics::get().cache_negative_hits.increment(1);
                Cached::NoPolicy
            }
            Some(Found::Stale) | None => Cached::Unknown,
        }
    }

    /// The cold half of the answer path, after [`cached`](Self::cached) found
    /// nothing: wait for the one shared resolution, at most `answer_timeout`.
    pub async fn resolve_miss(self: &Arc<Self>, domain: &str) -> Lookup {
        crate::metrics::get().cache_misses.increment(1);
        let timeout = self.settings.read().unwrap().answer_timeout;
        match tokio::time::timeout(timeout, self.resolve_shared(domain, false, None)).await {
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

    /// Start (or join) the resolution of `domain`. It runs in its own task, so it
    /// completes and updates the cache even if every waiter goes away. Background work
    /// passes its [`background_permit`](Self::background_permit); answer-path misses
    /// pass `None` and queue for one of [`MAX_FOREGROUND`] slots.
    pub fn resolve_shared(
        self: &Arc<Self>,
        domain: &str,
        refresh: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> SharedResolution {
        let mut inflight = self.inflight.lock().unwrap();
        if let Some(running) = inflight.get(domain) {
            return running.clone();
        }
        let this = Arc::clone(self);
        let owned = domain.to_string();
        let resolution = async move {
            // Removes the in-flight entry however the resolution ends, a panic included,
            // so a domain can never be stuck joining a dead resolution.
            let _done = InflightGuard {
                owner: Arc::clone(&this),
                table: |cache: &PolicyCache| &cache.inflight,
                domain: owned.clone(),
            };
            // Background work (holding its own permit) also takes a resolution slot,
            // so `max_concurrency` bounds everything the resolver sees; it waits as
            // long as it must.
            let background = permit;
            let slot = Arc::clone(&this.foreground).acquire_owned();
            let _slot = if background.is_some() {
                slot.await.expect("semaphore is never closed")
            } else {
                // Queue no longer than an answer may wait: past that nobody is
                // waiting, and a flood of new domains must not build a backlog
                // that makes real ones miss their answer (the next query retries).
                let wait = this.settings.read().unwrap().answer_timeout;
                match tokio::time::timeout(wait, slot).await {
                    Ok(p) => p.expect("semaphore is never closed"),
                    Err(_) => return None,
                }
            };
            this.resolve(&owned, refresh).await
        };
        let task = match self.resolution_runtime.get() {
            Some(runtime) => runtime.spawn(resolution),
            None => tokio::spawn(resolution),
        };
        let shared = async move { task.await.unwrap_or(None) }.boxed().shared();
        inflight.insert(domain.to_string(), shared.clone());
        shared
    }

    /// One resolution: TXT, then a fetch when the id is new, the policy unknown or a
    /// proactive `refresh` is due. Updates the entry; returns the usable policy, if any.
    async fn resolve(&self, domain: &str, refresh: bool) -> Option<Arc<CachedPolicy>> {
        let resolvers = self.resolvers.read().unwrap().clone();
        let (cached, failed) = {
            let now = self.clock.now();
            let entries = self.entries.lock().unwrap();
            match entries.peek(domain) {
                Some(e) => (e.usable(now).cloned(), e.failed().cloned()),
                None => (None, None),
            }
        };
        // A re-check of a domain whose refresh is due does the refresh (SPEC 5.5): in a
        // cluster, the node holding the lease may be the only one that gets to.
        let refresh = refresh
            || cached
                .as_ref()
                .is_some_and(|c| self.clock.now() >= c.refresh_at());
        crate::metrics::resolution(match (refresh, &cached) {
            (true, _) => "refresh",
            (false, Some(_)) => "recheck",
            (false, None) => "miss",
        });
        let (leased, refetch) = match self.consult_cluster(domain, &cached, refresh).await {
            Consult::Done(result) => return result,
            Consult::Proceed { leased, refetch } => (leased, refetch),
        };
        let result = self
            .resolve_here(domain, refresh || refetch, cached, failed, &resolvers)
            .await;
        if leased {
            self.release_lease(domain);
        }
        result
    }

    /// The resolution proper, on this node: TXT, then a fetch when needed.
    async fn resolve_here(
        &self,
        domain: &str,
        refresh: bool,
        cached: Option<Arc<CachedPolicy>>,
        failed: Option<(String, u64)>,
        resolvers: &Resolvers,
    ) -> Option<Arc<CachedPolicy>> {
        let txt_name = format!("_mta-sts.{domain}");
        let started = std::time::Instant::now();
        let answer = resolvers.txt.lookup_txt(&txt_name).await;
        crate::metrics::get()
            .dns_seconds
            .record(started.elapsed().as_secs_f64());
        let discovery = match answer {
            Ok(records) => select_record(&records).map_err(|e| Problem::Record(e.to_string())),
            Err(DnsError::NoRecords { negative_ttl, .. }) => Err(Problem::NoRecord(negative_ttl)),
            Err(DnsError::Failed(e)) => Err(Problem::Dns(e)),
        };
        crate::metrics::discovery(match &discovery {
            Ok(_) => "record",
            Err(Problem::NoRecord(_)) => "no_record",
            Err(Problem::Record(_)) => "invalid",
            Err(_) => "error",
        });
        let now = self.clock.now();
        match discovery {
            Ok(record) => {
                let unchanged = cached.as_ref().is_some_and(|c| c.id == record.id);
                let backing_off = failed
                    .as_ref()
                    .is_some_and(|(id, until)| *id == record.id && now < *until);
                if (unchanged && !refresh) || backing_off {
                    if let (true, Some(c)) = (unchanged, &cached) {
                        self.publish(
                            domain,
                            ClusterRecord::Policy {
                                policy: CachedPolicy::clone(c),
                                checked: now,
                            },
                            now,
                        );
                    }
                    self.update(domain, |e| {
                        e.checked = now;
                        e.set_last_problem(None);
                        if cached.is_none() {
                            // SPEC 5.6: the back-off is per TXT id: look at TXT again
                            // soon, fetch only when the id changes or the back-off ends.
                            e.quiet_until = now + DNS_ERROR_BACKOFF;
                        }
                    });
                    return cached;
                }
                if let Some(c) = &cached {
                    if !unchanged {
                        log::info!(
                            "{domain}: TXT id changed from {} to {}, fetching the policy",
                            c.id,
                            record.id
                        );
                    }
                }
                self.fetch(domain, record.id, cached, resolvers).await
            }
            Err(problem) => {
                if let Some(c) = cached {
                    // SPEC 5.3: nothing in DNS takes away a policy we still trust.
                    self.note_problem(domain, now, &problem, Some(&c));
                    if refresh {
                        // SPEC 5.5: refresh regardless of the TXT record's state.
                        let id = c.id.clone();
                        return self.fetch(domain, id, Some(c), resolvers).await;
                    }
                    return Some(c);
                }
                self.note_problem(domain, now, &problem, None);
                if let Problem::NoRecord(_) | Problem::Record(_) = problem {
                    let until = now + problem.backoff();
                    self.publish(
                        domain,
                        ClusterRecord::Negative {
                            checked: now,
                            until,
                        },
                        now,
                    );
                }
                None
            }
        }
    }

    /// Fetch and parse; store the policy on success, keep the cached one on failure.
    async fn fetch(
        &self,
        domain: &str,
        id: String,
        cached: Option<Arc<CachedPolicy>>,
        resolvers: &Resolvers,
    ) -> Option<Arc<CachedPolicy>> {
        let started = std::time::Instant::now();
        let result = match resolvers.fetch.fetch(domain).await {
            Ok(body) => parse_policy(&body).map_err(|e| FetchError::Parse(e.to_string())),
            Err(e) => Err(e),
        };
        crate::metrics::get()
            .fetch_seconds
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => crate::metrics::fetch(true, ""),
            Err(e) => crate::metrics::fetch(false, e.stage()),
        }
        let now = self.clock.now();
        match result {
            Ok(policy) => {
                if policy.max_age_clamped {
                    log::info!(
                        "{domain}: max_age above one year, clamped to {}",
                        policy.max_age
                    );
                }
                let fresh = Arc::new(CachedPolicy::new(policy, id, now));
                log_policy_change(domain, cached.as_deref(), &fresh);
                self.update(domain, |e| {
                    e.set_policy(Some(Arc::clone(&fresh)));
                    e.checked = now;
                    e.quiet_until = 0;
                    e.set_failed(None);
                    e.set_last_problem(None);
                });
                self.mark_dirty();
                self.publish(
                    domain,
                    ClusterRecord::Policy {
                        policy: CachedPolicy::clone(&fresh),
                        checked: now,
                    },
                    now,
                );
                Some(fresh)
            }
            Err(err) => {
                let retry = now + FETCH_FAILURE_BACKOFF;
                let problem = Problem::Fetch(err);
                self.note_problem(domain, now, &problem, cached.as_deref());
                // With nothing cached, note_problem set a one-minute quiet time: TXT is
                // looked at again then, but this id is not fetched before `retry`.
                self.update(domain, |e| e.set_failed(Some((id.clone(), retry))));
                cached
            }
        }
    }

    /// Record a failed or empty resolution: set the negative cache or back-off when
    /// nothing is cached, and log once per distinct problem (SPEC 7.2).
    fn note_problem(&self, domain: &str, now: u64, problem: &Problem, kept: Option<&CachedPolicy>) {
        let text = problem.to_string();
        let mut first = false;
        self.update(domain, |e| {
            e.checked = now;
            if kept.is_none() {
                e.set_policy(None);
                e.quiet_until = now + problem.backoff();
            }
            if e.last_problem() != Some(text.as_str()) {
                first = true;
                e.set_last_problem(Some(text.clone()));
            }
        });
        if !first {
            return;
        }
        let kept_text = |c: &CachedPolicy| {
            format!(
                "keeping the cached {} policy (id {}) until it expires in {} s",
                c.policy.mode,
                c.id,
                c.expires().saturating_sub(now)
            )
        };
        match (kept, problem) {
            (_, Problem::NoRecord(_)) | (_, Problem::Record(_)) if kept.is_none() => {
                log::debug!("{domain}: no MTA-STS policy ({text})")
            }
            // A broken resolver fails every domain at once: one line a minute for all
            // of them, each domain's own line at debug (SPEC 7.2 spirit: no floods).
            (_, Problem::Dns(_)) => {
                let what = kept.map_or_else(|| "no policy yet".to_string(), kept_text);
                log::debug!("{domain}: {text}; {what}");
                self.dns_trouble.note(now, || {
                    format!("DNS lookups are failing, e.g. {domain}: {text}; {what}")
                });
            }
            (Some(c), _) => log::warn!("{domain}: {text}; {}", kept_text(c)),
            (None, Problem::Fetch(_)) => log::warn!(
                "{domain}: {text}; no policy, fetching again in {FETCH_FAILURE_BACKOFF} s or when the TXT id changes"
            ),
            (None, _) => log::warn!("{domain}: {text}; no policy"),
        }
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

/// Removes a domain's in-flight resolution from its owner's table (`table` picks
/// it: the MTA-STS cache's or the DANE cache's) when the resolution task ends, or
/// unwinds, or is cancelled: a domain never stays joined to a dead resolution.
pub(crate) struct InflightGuard<T, V> {
    pub(crate) owner: Arc<T>,
    pub(crate) table: fn(&T) -> &Mutex<HashMap<String, V>>,
    pub(crate) domain: String,
}

impl<T, V> Drop for InflightGuard<T, V> {
    fn drop(&mut self) {
        if let Ok(mut inflight) = (self.table)(&self.owner).lock() {
            inflight.remove(&self.domain);
        }
    }
}

/// Three LRUs, each bounded by `cache.size`: domains with an `enforce` policy,
/// domains with a `testing` or `none` policy, and domains without one (negative
/// cache and back-off). Kept apart so that lookups of many domains, which anyone who
/// can make us send mail can cause, never push out a policy that protects mail: an
/// `enforce` policy is never evicted for a `testing` or `none` policy or a negative
/// entry (SPEC 5.3, 5.7). A hit looks in `enforce`, then `misses`, then `weak`, one
/// hash lookup each: the domains mail goes to most are the first two kinds.
struct Entries {
    enforce: Lru<Entry>,
    weak: Lru<Entry>,
    misses: Lru<Entry>,
    /// The entries' answer texts, one copy of each.
    answers: Answers,
    /// How many of `weak`'s policies are `testing` (the rest are `none`), kept as
    /// entries come and go so that [`PolicyCache::stats`] walks nothing.
    testing: usize,
}

/// Answer texts (`secure match=...`), one copy each, shared by every entry whose
/// policy has that answer. Most domains publish one of a few mail providers' mx
/// lists: they then share a few texts, which stay in the CPU's caches for every hit,
/// and 100 000 such policies keep a few copies instead of 100 000.
#[derive(Default)]
struct Answers {
    texts: HashSet<Arc<str>>,
    /// Texts no entry holds any more are dropped when the set reaches this size:
    /// twice what was in use at the last sweep, so a sweep costs O(1) per insert.
    sweep_at: usize,
}

impl Answers {
    /// The shared copy of `text`.
    fn intern(&mut self, text: Box<str>) -> Arc<str> {
        if let Some(shared) = self.texts.get(&*text) {
            return Arc::clone(shared);
        }
        if self.texts.len() >= self.sweep_at {
            self.texts.retain(|t| Arc::strong_count(t) > 1);
            self.sweep_at = (2 * self.texts.len()).max(1024);
        }
        let shared: Arc<str> = Arc::from(text);
        self.texts.insert(Arc::clone(&shared));
        shared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.texts.len()
    }
}

impl Entries {
    fn new(size: usize) -> Entries {
        Entries {
            enforce: Lru::new(size),
            weak: Lru::new(size),
            misses: Lru::new(size),
            answers: Answers::default(),
            testing: 0,
        }
    }

    /// The tables of policies, the weaker first.
    fn policies(&self) -> impl Iterator<Item = &Lru<Entry>> {
        [&self.weak, &self.enforce].into_iter()
    }

    /// A warning to log (once the lock is released) when policies are dropped.
    fn resize(&mut self, size: usize) -> Option<String> {
        let policies = self.enforce.len().max(self.weak.len());
        let warning = (size < policies).then(|| {
            format!("cache.size {size} is below the {policies} policies of one kind cached: the least recently used are dropped")
        });
        self.enforce.resize(size);
        while self.weak.len() > size.max(1) {
            let popped = self.weak.pop_oldest();
            self.count_out(popped.as_ref().map(|(_, e)| e));
        }
        self.weak.resize(size);
        self.misses.resize(size);
        warning
    }

    fn len(&self) -> usize {
        self.enforce.len() + self.weak.len() + self.misses.len()
    }

    /// The hot path: `f` on the entry for `domain`, with one hash lookup per table
    /// it looks in. The entry moves to the front of its LRU at most once a second: a
    /// hot entry's hits then write no list links (with 100 000 entries, each relink
    /// is a few cache misses), and eviction order stays exact to the second.
    fn hit<R>(
        &mut self,
        domain: &str,
        now: u64,
        f: impl FnOnce(&mut Entry, &mut Answers) -> R,
    ) -> Option<R> {
        fn touch<R, F: FnOnce(&mut Entry, &mut Answers) -> R>(
            lru: &mut Lru<Entry>,
            answers: &mut Answers,
            domain: &str,
            now: u64,
            f: F,
        ) -> Result<R, F> {
            let Some(entry) = lru.peek_mut(domain) else {
                return Err(f);
            };
            // Written only when it changes: a hit on a hot entry leaves its memory
            // clean (no write-back when the line is evicted).
            let stale = entry.touched != now;
            if stale {
                entry.touched = now;
            }
            let r = f(entry, answers);
            if stale {
                // Moved to the front.
                lru.get(domain);
            }
            Ok(r)
        }
        let answers = &mut self.answers;
        touch(&mut self.enforce, answers, domain, now, f)
            .or_else(|f| touch(&mut self.misses, answers, domain, now, f))
            .or_else(|f| touch(&mut self.weak, answers, domain, now, f))
            .ok()
    }

    fn peek(&self, domain: &str) -> Option<&Entry> {
        self.enforce
            .peek(domain)
            .or_else(|| self.misses.peek(domain))
            .or_else(|| self.weak.peek(domain))
    }

    fn take(&mut self, domain: &str) -> Option<Entry> {
        if let Some(e) = self.enforce.pop(domain) {
            return Some(e);
        }
        if let Some(e) = self.misses.pop(domain) {
            return Some(e);
        }
        let e = self.weak.pop(domain);
        self.count_out(e.as_ref());
        e
    }

    /// `entry` left `weak`.
    fn count_out(&mut self, entry: Option<&Entry>) {
        if entry.is_some_and(|e| e.mode == Some(Mode::Testing)) {
            self.testing -= 1;
        }
    }

    /// Insert into the LRU the entry belongs in (by its policy's mode), which must
    /// not hold `domain` already ([`Entries::take`] it first). When a usable policy
    /// had to go to make room, its domain and the table's size, for the caller to
    /// report once the lock is released.
    fn put(&mut self, domain: Name, entry: Entry, now: u64) -> Option<(Name, usize)> {
        debug_assert!(
            self.peek(&domain).is_none(),
            "{domain} is in the cache twice"
        );
        let (lru, weak) = match entry.mode {
            Some(Mode::Enforce) => (&mut self.enforce, false),
            Some(Mode::Testing | Mode::None) => (&mut self.weak, true),
            None => (&mut self.misses, false),
        };
        let testing = entry.mode == Some(Mode::Testing);
        let cap = lru.cap();
        let evicted = lru.push(domain, entry);
        if testing {
            self.testing += 1;
        }
        let (gone, old) = evicted?;
        if weak {
            self.count_out(Some(&old));
        }
        old.usable(now).is_some().then_some((gone, cap))
    }

    /// Counts by kind (see [`PolicyCache::stats`]), without a walk.
    fn stats(&self) -> CacheStats {
        CacheStats {
            policies: self.enforce.len() + self.weak.len(),
            misses: self.misses.len(),
            enforce: self.enforce.len(),
            testing: self.testing,
            none: self.weak.len() - self.testing,
        }
    }
}

/// What a lookup found in the cache.
enum Found<R> {
    /// What the reader made of a usable policy, a permit when its TXT id re-check is
    /// due now, and the length of an answer text too long for Postfix, found when it
    /// was built (to log once the lock is released).
    Policy {
        read: R,
        recheck_permit: Option<OwnedSemaphorePermit>,
        too_long: Option<usize>,
    },
    /// Nothing usable, and quiet (negative cache, back-off).
    Negative,
    /// Nothing usable: resolve.
    Stale,
}

/// Why a resolution produced no new policy.
#[derive(Debug)]
enum Problem {
    /// NXDOMAIN / NODATA (SPEC 2.6), with the negative TTL.
    NoRecord(Option<u32>),
    /// Records exist but none is one valid STSv1 record (SPEC 2.3–2.5).
    Record(String),
    /// SERVFAIL, timeout… (SPEC 2.6).
    Dns(String),
    Fetch(FetchError),
}

impl Problem {
    /// SPEC 5.6.
    fn backoff(&self) -> u64 {
        match self {
            Problem::NoRecord(ttl) => ttl
                .map(u64::from)
                .unwrap_or(NEGATIVE_TTL_DEFAULT)
                .clamp(NEGATIVE_TTL_MIN, NEGATIVE_TTL_MAX),
            Problem::Record(_) => NEGATIVE_TTL_DEFAULT,
            // SPEC 5.6: TXT again after a minute; the failed id itself is not fetched
            // again before FETCH_FAILURE_BACKOFF (Entry::failed).
            Problem::Dns(_) | Problem::Fetch(_) => DNS_ERROR_BACKOFF,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoRecord(_) => f.write_str("stage=dns no _mta-sts TXT record"),
            Problem::Record(e) => write!(f, "stage=dns {e}"),
            Problem::Dns(e) => write!(f, "stage=dns {e}"),
            Problem::Fetch(FetchError::Parse(e)) => {
                write!(f, "stage=parse sts-policy-invalid: {e}")
            }
            Problem::Fetch(e) => write!(f, "stage={} policy fetch failed: {e}", e.stage()),
        }
    }
}

fn log_policy_change(domain: &str, old: Option<&CachedPolicy>, new: &CachedPolicy) {
    if old.is_none_or(|o| o.policy != new.policy || o.id != new.id) {
        crate::metrics::policy_change();
    }
    let mx: Vec<String> = new.policy.mx.iter().map(|m| m.to_string()).collect();
    match old {
        None => log::info!(
            "{domain}: policy id {} mode {} mx {} max_age {}",
            new.id,
            new.policy.mode,
            mx.join(","),
            new.policy.max_age
        ),
        Some(o) if o.policy != new.policy || o.id != new.id => log::info!(
            "{domain}: policy changed: id {} -> {}, mode {} -> {}, mx {}, max_age {}",
            o.id,
            new.id,
            o.policy.mode,
            new.policy.mode,
            mx.join(","),
            new.policy.max_age
        ),
        Some(_) => log::debug!("{domain}: policy refreshed, unchanged"),
    }
}

#[cfg(test)]
mod tests;
