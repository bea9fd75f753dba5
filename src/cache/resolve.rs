//! The discovery flow (SPEC 2-5): one resolution of a domain, TXT record first, then
//! the policy fetch when the id is new, unknown or due for a refresh; what it learns
//! goes into the entry, what goes wrong into its back-off and the log.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::cluster::{ClusterRecord, Consult};
use super::entry::{CachedPolicy, Entry};
use super::{PolicyCache, Resolution};
use super::{
    DNS_ERROR_BACKOFF, FETCH_FAILURE_BACKOFF, NEGATIVE_TTL_DEFAULT, NEGATIVE_TTL_MAX,
    NEGATIVE_TTL_MIN,
};
use crate::mta_sts::policy::parse_policy;
use crate::mta_sts::record::{select_record, StsRecord};
use crate::resolver::{DnsError, FetchError, Resolvers};
use crate::tlsrpt::findings::{Finding, FindingKind};

impl PolicyCache {
    /// Start (or join) the resolution of `domain`. It runs in its own task, so it
    /// completes and updates the cache even if every waiter goes away. Background work
    /// passes its [`background_permit`](Self::background_permit); answer-path misses
    /// pass `None` and queue for one of [`MAX_FOREGROUND`](super::MAX_FOREGROUND) slots.
    pub fn join_resolution(
        self: &Arc<Self>,
        domain: &str,
        refresh: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Resolution {
        let this = Arc::clone(self);
        let owned = domain.to_string();
        let work = move || async move {
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
        self.inflight.join_or_start(domain, work, |_| None)
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
        let discovery = discover(domain, resolvers).await;
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
                self.without_record(domain, now, problem, refresh, cached, resolvers)
                    .await
            }
        }
    }

    /// The TXT lookup found no valid record, or failed: keep a policy we still
    /// trust (SPEC 5.3), refreshing it when due (5.5); with none, back off (5.6).
    async fn without_record(
        &self,
        domain: &str,
        now: u64,
        problem: Problem,
        refresh: bool,
        cached: Option<Arc<CachedPolicy>>,
        resolvers: &Resolvers,
    ) -> Option<Arc<CachedPolicy>> {
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
            self.update(domain, Entry::clear_finding);
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
                let finding = finding_of(&err);
                let problem = Problem::Fetch(err);
                self.note_problem(domain, now, &problem, cached.as_deref());
                // With nothing cached, note_problem set a one-minute quiet time: TXT is
                // looked at again then, but this id is not fetched before `retry`.
                self.update(domain, |e| e.set_failed(Some((id.clone(), retry, finding))));
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
}

/// SPEC 2: the domain's `_mta-sts` TXT record, timed and counted.
async fn discover(domain: &str, resolvers: &Resolvers) -> Result<StsRecord, Problem> {
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
    discovery
}

/// What TLS-RPT reports of a failed fetch (SPEC 8.3, RFC 8460 §4.3.2): the reason
/// as the log line gives it.
fn finding_of(err: &FetchError) -> Finding {
    let kind = match err {
        FetchError::Parse(_) => FindingKind::PolicyInvalid,
        FetchError::Certificate(_) => FindingKind::WebPkiInvalid,
        _ => FindingKind::FetchError,
    };
    Finding::new(kind, &format!("stage={} {err}", err.stage()))
}

/// Why a resolution produced no new policy.
#[derive(Debug)]
pub(super) enum Problem {
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

pub(super) fn log_policy_change(domain: &str, old: Option<&CachedPolicy>, new: &CachedPolicy) {
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
