//! The DANE result cache (SPEC 6.4), separate from the MTA-STS policies: one
//! [`Verdict`] per domain, kept for the smallest TTL of the records it rests on
//! (bounded by [`crate::dane::TTL_MIN`] and [`crate::dane::TTL_MAX`]).
//!
//! - A valid entry answers at once; past three quarters of its life it is
//!   re-resolved in the background, so a busy domain never waits on DNS.
//! - One resolution per domain at a time, shared by every waiter, run as its own
//!   task (a client that hangs up does not cancel it).
//! - A failed resolution never replaces or evicts a valid result: it keeps
//!   answering until it expires (fail closed, RFC 7672), and its next re-check
//!   waits [`FAILURE_BACKOFF`]. With no valid result the failure itself is kept for
//!   [`FAILURE_BACKOFF`] (SPEC 5.6): the requests meanwhile get
//!   [`Verdict::Failed`] at once, without waiting on a failing resolver again.
//! - Not persisted: entries live minutes, not the months of an MTA-STS policy.
//! - Nothing is logged while the entries are locked: a stalled log must not stall
//!   every DANE answer behind the lock.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::join_all;

use super::lru::Lru;
use super::single_flight::{InFlight, SingleFlight};
use super::{Clock, Name};
use crate::dane::{clamp_ttl, decide, host_state, HostState, Tlsa, Verdict, FAILURE_BACKOFF};
use crate::resolver::dane::{DaneLookup, QType, Rr};

/// MX hosts checked per domain, in preference order. Hosts past this count are
/// taken as without DANE, so such a domain gets at most `dane`, never `dane-only`.
pub const MAX_HOSTS: usize = 16;

/// How often the MTA-STS answer replacing a partial or failed DANE check is logged
/// per domain (SPEC 6.4: logged and counted; SPEC 7.2: not one line per request).
pub const MTA_STS_LOG_INTERVAL: u64 = 3600;

#[derive(Debug, Clone)]
struct Entry {
    /// A result, or a [`Verdict::Failed`] held for [`FAILURE_BACKOFF`].
    verdict: Verdict,
    /// [`Clock::now`] reading; unusable from then on.
    expires: u64,
    /// Re-resolve in the background from then on.
    refresh_at: u64,
    /// When an MTA-STS answer over this domain's partial or failed check was last
    /// logged; kept across re-resolutions.
    mta_sts_logged: Option<u64>,
}

impl Entry {
    fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed(_))
    }
}

/// What a resolution has to say, logged once the entries are unlocked.
enum Note {
    None,
    Kept { why: String, kept: Verdict },
    Failed(String),
    Changed { fresh: Verdict, ttl: u32 },
}

struct Inner {
    entries: Mutex<Lru<Entry>>,
    /// One resolution per domain at a time, shared by every waiter (SPEC 3.6).
    inflight: SingleFlight<Verdict>,
    /// `None` until configured; lookups then fail (never happens with a validated
    /// configuration: `dane = true` requires `[dane] nameservers`).
    lookup: RwLock<Option<Arc<dyn DaneLookup>>>,
    /// Bound on one whole resolution (MX, then A and TLSA per host).
    deadline: RwLock<Duration>,
    clock: Arc<dyn Clock>,
}

/// Cheap to share: `Arc<DaneCache>`.
pub struct DaneCache {
    inner: Arc<Inner>,
}

impl DaneCache {
    pub fn new(
        size: usize,
        lookup: Option<Arc<dyn DaneLookup>>,
        deadline: Duration,
        clock: Arc<dyn Clock>,
    ) -> DaneCache {
        DaneCache {
            inner: Arc::new(Inner {
                entries: Mutex::new(Lru::new(size)),
                inflight: SingleFlight::new(),
                lookup: RwLock::new(lookup),
                deadline: RwLock::new(deadline),
                clock,
            }),
        }
    }

    /// Run resolutions on `runtime` (the daemon's resolver threads), not on the
    /// runtime that asks.
    pub fn run_resolutions_on(&self, runtime: tokio::runtime::Handle) {
        self.inner.inflight.run_on(runtime);
    }

    /// SIGHUP: new resolvers and bounds; entries are kept.
    pub fn reconfigure(
        &self,
        size: usize,
        lookup: Option<Arc<dyn DaneLookup>>,
        deadline: Duration,
    ) {
        self.inner.entries.lock().unwrap().resize(size);
        *self.inner.lookup.write().unwrap() = lookup;
        *self.inner.deadline.write().unwrap() = deadline;
    }

    /// The DANE verdict for `domain`: from the cache when it holds a valid entry
    /// (without waiting), else from a resolution. [`Verdict::Failed`] only when
    /// there is no valid entry to fall back on.
    pub async fn lookup(&self, domain: &str) -> Verdict {
        let now = self.inner.clock.now();
        let cached = {
            let mut entries = self.inner.entries.lock().unwrap();
            entries
                .get(domain)
                .filter(|e| now < e.expires)
                .map(|e| (e.verdict.clone(), now >= e.refresh_at))
        };
        if let Some((verdict, stale)) = cached {
            if stale {
                // Runs on its own; the answer does not wait for it.
                drop(self.start(domain));
            }
            return verdict;
        }
        self.start(domain).await
    }

    /// SPEC 6.4: an MTA-STS policy answered for `domain` instead of its partial or
    /// failed DANE check. `true` when that is to be logged now: at most once per
    /// domain and [`MTA_STS_LOG_INTERVAL`]. The caller logs, after this returns
    /// (never under the lock).
    pub fn mta_sts_log_due(&self, domain: &str) -> bool {
        let now = self.inner.clock.now();
        let mut entries = self.inner.entries.lock().unwrap();
        // No entry (its resolution died, or it was just evicted): nothing to
        // remember the time in, so no line; the counter still counts.
        let Some(entry) = entries.peek_mut(domain) else {
            return false;
        };
        if entry
            .mta_sts_logged
            .is_some_and(|t| now < t.saturating_add(MTA_STS_LOG_INTERVAL))
        {
            return false;
        }
        entry.mta_sts_logged = Some(now);
        true
    }

    /// Resolutions running now (for tests and shutdown).
    pub fn in_flight(&self) -> usize {
        self.inner.inflight.len()
    }

    fn start(&self, domain: &str) -> InFlight<Verdict> {
        let inner = Arc::clone(&self.inner);
        let name = domain.to_string();
        let work = move || async move { inner.resolve_and_store(&name).await };
        self.inner.inflight.join_or_start(domain, work, |e| {
            Verdict::Failed(format!("DANE lookup task: {e}"))
        })
    }
}

impl Inner {
    async fn resolve_and_store(&self, domain: &str) -> Verdict {
        let lookup = self.lookup.read().unwrap().clone();
        let deadline = *self.deadline.read().unwrap();
        let (verdict, ttl) = match lookup {
            None => (Verdict::Failed("no [dane] nameservers".into()), 0),
            Some(lookup) => {
                match tokio::time::timeout(deadline, resolve(lookup.as_ref(), domain)).await {
                    Ok(result) => result,
                    Err(_) => (Verdict::Failed(format!("timed out after {deadline:?}")), 0),
                }
            }
        };
        let now = self.clock.now();
        let (answer, note) = self.store(domain, verdict, ttl, now);
        match note {
            Note::None => {}
            Note::Kept { why, kept } => {
                log::warn!("{domain}: DANE check failed ({why}); keeping {kept:?}")
            }
            Note::Failed(why) => log::warn!("{domain}: DANE check failed: {why}"),
            Note::Changed { fresh, ttl } => log::info!("{domain}: DANE {fresh:?} for {ttl} s"),
        }
        answer
    }

    /// Put a resolution's outcome in the entries; what to answer, and what to log
    /// once the lock is released.
    fn store(&self, domain: &str, verdict: Verdict, ttl: u32, now: u64) -> (Verdict, Note) {
        let mut entries = self.entries.lock().unwrap();
        let (valid, logged) = match entries.peek_mut(domain) {
            Some(e) => (now < e.expires, e.mta_sts_logged),
            None => (false, None),
        };
        if let Verdict::Failed(why) = &verdict {
            // SPEC 6.4: a failure keeps a valid result; the caller falls back to it.
            // Its re-check waits for the back-off, like a first failure's.
            if let Some(kept) = entries.peek_mut(domain).filter(|e| valid && !e.failed()) {
                kept.refresh_at = now.saturating_add(u64::from(FAILURE_BACKOFF));
                let kept = kept.verdict.clone();
                let note = Note::Kept {
                    why: why.clone(),
                    kept: kept.clone(),
                };
                return (kept, note);
            }
            let until = now.saturating_add(u64::from(FAILURE_BACKOFF));
            let note = Note::Failed(why.clone());
            entries.push(
                Name::from(domain),
                Entry {
                    verdict: verdict.clone(),
                    expires: until,
                    // Never re-checked in the background: past the back-off, the
                    // next request resolves again.
                    refresh_at: until,
                    mta_sts_logged: logged,
                },
            );
            return (verdict, note);
        }
        let previous = entries
            .peek(domain)
            .filter(|_| valid)
            .map(|e| e.verdict.clone());
        let note = if previous.as_ref() == Some(&verdict) {
            Note::None
        } else {
            Note::Changed {
                fresh: verdict.clone(),
                ttl,
            }
        };
        let ttl = u64::from(clamp_ttl(ttl));
        entries.push(
            Name::from(domain),
            Entry {
                verdict: verdict.clone(),
                expires: now.saturating_add(ttl),
                refresh_at: now.saturating_add(ttl - ttl / 4),
                mta_sts_logged: logged,
            },
        );
        (verdict, note)
    }
}

/// RFC 7672 §2.2 for one domain: the verdict and the smallest TTL it rests on.
async fn resolve(lookup: &dyn DaneLookup, domain: &str) -> (Verdict, u32) {
    let mx = match lookup.query(domain, QType::Mx).await {
        Ok(answer) => answer,
        Err(e) => return (Verdict::Failed(format!("MX {domain}: {e}")), 0),
    };
    // An unsigned MX RRset: DANE does not apply (RFC 7672 §2.2.1).
    if !mx.authentic || mx.nxdomain {
        return (Verdict::NoDane, mx.ttl);
    }
    let mut hosts: Vec<(u16, String)> = mx
        .records
        .into_iter()
        .filter_map(|r| match r {
            Rr::Mx {
                preference,
                exchange,
            } => Some((preference, exchange)),
            _ => None,
        })
        .collect();
    if hosts.is_empty() {
        // Secure NODATA: the domain itself is the mail host (RFC 5321 §5.1).
        hosts.push((0, domain.to_string()));
    }
    hosts.sort();
    let mut names: Vec<String> = Vec::with_capacity(hosts.len());
    for (_, host) in hosts {
        // A null MX (RFC 7505) receives no mail: nothing to protect.
        if !host.is_empty() && !names.contains(&host) {
            names.push(host);
        }
    }
    if names.is_empty() {
        return (Verdict::NoDane, mx.ttl);
    }
    let unchecked = names.len().saturating_sub(MAX_HOSTS);
    names.truncate(MAX_HOSTS);
    let checked = join_all(names.iter().map(|h| check_host(lookup, h))).await;
    let mut ttl = mx.ttl;
    let mut states = Vec::with_capacity(checked.len() + unchecked);
    for (state, host_ttl) in checked {
        ttl = ttl.min(host_ttl);
        states.push(state);
    }
    states.extend(std::iter::repeat_n(HostState::NoDane, unchecked));
    (decide(&states), ttl)
}

/// One MX host: its A lookup says whether its zone is signed (RFC 7672 §2.2.2);
/// only then do its TLSA records count.
async fn check_host(lookup: &dyn DaneLookup, host: &str) -> (HostState, u32) {
    let a = match lookup.query(host, QType::A).await {
        Ok(answer) => answer,
        // SPEC 6.4, RFC 7672 §2.2: the host is unusable (no delivery to it), not
        // the domain's check a failure. TTL 0: held for the floor only.
        Err(e) => {
            log::debug!("{host}: address lookup for DANE failed ({e}): host unusable");
            return (HostState::NoDane, 0);
        }
    };
    if !a.authentic || a.nxdomain {
        return (HostState::NoDane, a.ttl);
    }
    let name = format!("_25._tcp.{host}");
    match lookup.query(&name, QType::Tlsa).await {
        Err(e) => (HostState::Failed(format!("TLSA {name}: {e}")), 0),
        Ok(t) => {
            let records: Vec<Tlsa> = t
                .records
                .into_iter()
                .filter_map(|r| match r {
                    Rr::Tlsa(t) => Some(t),
                    _ => None,
                })
                .collect();
            (host_state(t.authentic, &records), a.ttl.min(t.ttl))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::resolver::dane::SecureAnswer;
    use crate::resolver::DnsError;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    struct Clock0(AtomicU64);
    impl Clock for Clock0 {
        fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A table of answers; a name missing from it is a secure NXDOMAIN.
    #[derive(Default)]
    struct Table {
        answers: Mutex<HashMap<(String, QType), Result<SecureAnswer, DnsError>>>,
        queries: AtomicUsize,
    }

    impl Table {
        fn set(&self, name: &str, q: QType, a: Result<SecureAnswer, DnsError>) {
            self.answers.lock().unwrap().insert((name.into(), q), a);
        }
    }

    impl DaneLookup for Table {
        fn query<'a>(
            &'a self,
            name: &'a str,
            qtype: QType,
        ) -> BoxFuture<'a, Result<SecureAnswer, DnsError>> {
            self.queries.fetch_add(1, Ordering::SeqCst);
            let a = self
                .answers
                .lock()
                .unwrap()
                .get(&(name.to_string(), qtype))
                .cloned()
                .unwrap_or(Ok(SecureAnswer {
                    authentic: true,
                    records: vec![],
                    nxdomain: true,
                    ttl: 300,
                }));
            Box::pin(async move { a })
        }
    }

    fn secure(records: Vec<Rr>, ttl: u32) -> Result<SecureAnswer, DnsError> {
        Ok(SecureAnswer {
            authentic: true,
            records,
            nxdomain: false,
            ttl,
        })
    }

    fn good_tlsa() -> Rr {
        Rr::Tlsa(Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data_len: 32,
        })
    }

    fn setup(table: Arc<Table>) -> (DaneCache, Arc<Clock0>) {
        let clock = Arc::new(Clock0(AtomicU64::new(1_000_000)));
        let cache = DaneCache::new(
            100,
            Some(table as Arc<dyn DaneLookup>),
            Duration::from_secs(5),
            clock.clone(),
        );
        (cache, clock)
    }

    fn mx(hosts: &[&str]) -> Vec<Rr> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Rr::Mx {
                preference: i as u16 * 10,
                exchange: h.to_string(),
            })
            .collect()
    }

    async fn settle(cache: &DaneCache) {
        for _ in 0..500 {
            if cache.in_flight() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("resolution still running");
    }

    #[tokio::test]
    async fn ttl_is_the_smallest_and_failures_keep_the_entry_spec_6_4() {
        let t = Arc::new(Table::default());
        t.set("d.example", QType::Mx, secure(mx(&["mx.d.example"]), 3600));
        t.set("mx.d.example", QType::A, secure(vec![Rr::A], 600));
        t.set(
            "_25._tcp.mx.d.example",
            QType::Tlsa,
            secure(vec![good_tlsa()], 400),
        );
        let (cache, clock) = setup(t.clone());
        assert_eq!(cache.lookup("d.example").await, Verdict::DaneOnly);
        assert_eq!(t.queries.load(Ordering::SeqCst), 3);
        // Inside three quarters of 400 s: no query.
        clock.0.fetch_add(299, Ordering::SeqCst);
        assert_eq!(cache.lookup("d.example").await, Verdict::DaneOnly);
        assert_eq!(t.queries.load(Ordering::SeqCst), 3);
        // Past it: the cached answer now, a refresh behind it, which fails and
        // keeps the entry.
        t.set(
            "_25._tcp.mx.d.example",
            QType::Tlsa,
            Err(DnsError::Failed("SERVFAIL".into())),
        );
        clock.0.fetch_add(2, Ordering::SeqCst);
        assert_eq!(cache.lookup("d.example").await, Verdict::DaneOnly);
        settle(&cache).await;
        assert_eq!(t.queries.load(Ordering::SeqCst), 6);
        assert_eq!(cache.lookup("d.example").await, Verdict::DaneOnly);
        // Expired: the failure shows.
        clock.0.fetch_add(100, Ordering::SeqCst);
        assert!(matches!(
            cache.lookup("d.example").await,
            Verdict::Failed(why) if why.contains("SERVFAIL")
        ));
    }

    /// Panics on its first query, then answers from the table.
    struct PanicsOnce {
        table: Table,
        panicked: std::sync::atomic::AtomicBool,
    }

    impl DaneLookup for PanicsOnce {
        fn query<'a>(
            &'a self,
            name: &'a str,
            qtype: QType,
        ) -> BoxFuture<'a, Result<SecureAnswer, DnsError>> {
            if !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("a bug in a lookup (test)");
            }
            self.table.query(name, qtype)
        }
    }

    /// A resolution that dies (a panic) is reported, and the next lookup of the
    /// domain starts afresh instead of joining the dead one.
    #[tokio::test]
    async fn a_failed_resolution_task_does_not_stay_in_flight() {
        let lookup = Arc::new(PanicsOnce {
            table: Table::default(),
            panicked: Default::default(),
        });
        let cache = DaneCache::new(
            100,
            Some(lookup.clone() as Arc<dyn DaneLookup>),
            Duration::from_secs(5),
            Arc::new(Clock0(AtomicU64::new(1_000_000))),
        );
        assert!(matches!(
            cache.lookup("p.example").await,
            Verdict::Failed(why) if why.contains("DANE lookup task")
        ));
        assert_eq!(cache.in_flight(), 0);
        // The table has nothing for the name: a secure NXDOMAIN, no DANE.
        assert_eq!(cache.lookup("p.example").await, Verdict::NoDane);
        assert!(lookup.table.queries.load(Ordering::SeqCst) >= 1);
    }

    /// SPEC 6.4, 5.6: a failure with nothing valid cached is held for the back-off:
    /// no query meanwhile; then resolved again.
    #[tokio::test]
    async fn failures_are_held_for_the_back_off_spec_6_4() {
        let t = Arc::new(Table::default());
        t.set(
            "f.example",
            QType::Mx,
            Err(DnsError::Failed("SERVFAIL".into())),
        );
        let (cache, clock) = setup(t.clone());
        assert!(matches!(
            cache.lookup("f.example").await,
            Verdict::Failed(_)
        ));
        assert_eq!(t.queries.load(Ordering::SeqCst), 1);
        clock
            .0
            .fetch_add(u64::from(FAILURE_BACKOFF) - 1, Ordering::SeqCst);
        assert!(matches!(
            cache.lookup("f.example").await,
            Verdict::Failed(_)
        ));
        assert_eq!(t.queries.load(Ordering::SeqCst), 1);
        t.set("f.example", QType::Mx, secure(vec![], 300));
        clock.0.fetch_add(1, Ordering::SeqCst);
        // Secure NODATA, the domain's own A secure NXDOMAIN: no DANE.
        assert_eq!(cache.lookup("f.example").await, Verdict::NoDane);
        assert_eq!(t.queries.load(Ordering::SeqCst), 3);
    }

    /// SPEC 6.4, RFC 7672 §2.2: a failed address lookup makes the host unusable,
    /// never the domain a failure.
    #[tokio::test]
    async fn a_failed_address_lookup_is_an_unusable_host() {
        let t = Arc::new(Table::default());
        t.set("a.example", QType::Mx, secure(mx(&["mx1.a", "mx2.a"]), 300));
        t.set("mx1.a", QType::A, secure(vec![Rr::A], 300));
        t.set(
            "_25._tcp.mx1.a",
            QType::Tlsa,
            secure(vec![good_tlsa()], 300),
        );
        t.set("mx2.a", QType::A, Err(DnsError::Failed("SERVFAIL".into())));
        let (cache, _) = setup(t.clone());
        assert_eq!(cache.lookup("a.example").await, Verdict::Dane);
        t.set("b.example", QType::Mx, secure(mx(&["mx2.a"]), 300));
        assert_eq!(cache.lookup("b.example").await, Verdict::NoDane);
    }

    /// SPEC 6.4: the MTA-STS answer over a weaker DANE result is logged at most once
    /// per domain and hour.
    #[tokio::test]
    async fn mta_sts_answers_are_logged_once_an_hour() {
        let t = Arc::new(Table::default());
        t.set("p.example", QType::Mx, secure(mx(&["mx1.p", "mx2.p"]), 300));
        t.set("mx1.p", QType::A, secure(vec![Rr::A], 300));
        t.set(
            "_25._tcp.mx1.p",
            QType::Tlsa,
            secure(vec![good_tlsa()], 300),
        );
        t.set("mx2.p", QType::A, secure(vec![Rr::A], 300));
        let (cache, clock) = setup(t.clone());
        // Nothing known about the domain: nothing to log against.
        assert!(!cache.mta_sts_log_due("p.example"));
        assert_eq!(cache.lookup("p.example").await, Verdict::Dane);
        assert!(cache.mta_sts_log_due("p.example"));
        assert!(!cache.mta_sts_log_due("p.example"));
        // Re-resolved (past the TTL): still within the hour.
        clock.0.fetch_add(400, Ordering::SeqCst);
        assert_eq!(cache.lookup("p.example").await, Verdict::Dane);
        assert!(!cache.mta_sts_log_due("p.example"));
        clock
            .0
            .fetch_add(MTA_STS_LOG_INTERVAL - 400, Ordering::SeqCst);
        assert_eq!(cache.lookup("p.example").await, Verdict::Dane);
        assert!(cache.mta_sts_log_due("p.example"));
    }

    #[tokio::test]
    async fn unsigned_zones_stop_the_lookups_rfc_7672_2_2() {
        let t = Arc::new(Table::default());
        // Unsigned MX RRset: no host lookups at all.
        t.set(
            "u.example",
            QType::Mx,
            Ok(SecureAnswer {
                authentic: false,
                records: mx(&["mx.u.example"]),
                nxdomain: false,
                ttl: 300,
            }),
        );
        let (cache, _) = setup(t.clone());
        assert_eq!(cache.lookup("u.example").await, Verdict::NoDane);
        assert_eq!(t.queries.load(Ordering::SeqCst), 1);

        // Signed MX, host in an unsigned zone: its TLSA SERVFAIL does not count.
        t.set(
            "s.example",
            QType::Mx,
            secure(mx(&["mx.s.example", "mx.other"]), 300),
        );
        t.set("mx.s.example", QType::A, secure(vec![Rr::A], 300));
        t.set(
            "_25._tcp.mx.s.example",
            QType::Tlsa,
            secure(vec![good_tlsa()], 300),
        );
        t.set(
            "mx.other",
            QType::A,
            Ok(SecureAnswer {
                authentic: false,
                records: vec![Rr::A],
                nxdomain: false,
                ttl: 300,
            }),
        );
        t.set(
            "_25._tcp.mx.other",
            QType::Tlsa,
            Err(DnsError::Failed("SERVFAIL".into())),
        );
        assert_eq!(cache.lookup("s.example").await, Verdict::Dane);
    }

    #[tokio::test]
    async fn null_mx_implicit_mx_and_host_cap() {
        let t = Arc::new(Table::default());
        t.set("null.example", QType::Mx, secure(mx(&[""]), 300));
        // Secure NODATA for MX: the domain is its own host.
        t.set("implicit.example", QType::Mx, secure(vec![], 300));
        t.set("implicit.example", QType::A, secure(vec![Rr::A], 300));
        t.set(
            "_25._tcp.implicit.example",
            QType::Tlsa,
            secure(vec![good_tlsa()], 300),
        );
        let many: Vec<String> = (0..MAX_HOSTS + 1).map(|i| format!("mx{i}.many")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        t.set("many.example", QType::Mx, secure(mx(&refs), 300));
        for h in &many {
            t.set(h, QType::A, secure(vec![Rr::A], 300));
            t.set(
                &format!("_25._tcp.{h}"),
                QType::Tlsa,
                secure(vec![good_tlsa()], 300),
            );
        }
        let (cache, _) = setup(t.clone());
        assert_eq!(cache.lookup("null.example").await, Verdict::NoDane);
        assert_eq!(cache.lookup("implicit.example").await, Verdict::DaneOnly);
        assert_eq!(cache.lookup("many.example").await, Verdict::Dane);
    }
}
