//! What the cache keeps per domain: the policy it trusts ([`CachedPolicy`], the
//! persisted type) and the per-entry state around it ([`Entry`]: expiry, re-check and
//! back-off times, the answer text a hit reads).

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::{MAX_REFRESH_INTERVAL, MIN_LIFETIME};
use crate::mta_sts::{Mode, Policy};
use crate::tlsrpt::findings::Finding;

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
pub(super) struct Entry {
    /// The last policy fetched; used only while [`CachedPolicy::usable`]. Set only
    /// through [`Entry::set_policy`].
    pub(super) policy: Option<Arc<CachedPolicy>>,
    /// `policy`'s [`CachedPolicy::expires`] (0 without a policy).
    pub(super) expires: u64,
    /// `policy`'s mode, and the `secure match=...` text of its answer, built on the
    /// first hit ([`crate::postfix::cached_answer`]); derived, never saved.
    pub(super) mode: Option<Mode>,
    pub(super) answer: Option<Arc<str>>,
    /// Last TXT id check (or its start, for one in flight): SPEC 5.4.
    pub(super) checked: u64,
    /// With no usable policy: answer `NOTFOUND ` without resolving until then
    /// (negative cache and back-off, SPEC 5.6).
    pub(super) quiet_until: u64,
    /// A failed fetch's back-off and the last problem logged. Boxed: rare, and
    /// every entry pays for the field's size (a 100 000-entry cache is mostly this
    /// struct).
    pub(super) trouble: Option<Box<Trouble>>,
    /// When a hit last moved the entry to the front of its LRU.
    pub(super) touched: u64,
}

/// What went wrong with a domain lately (see [`Entry::trouble`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Trouble {
    /// A fetch under this TXT id failed; do not retry it before the time (SPEC 5.6).
    pub(super) failed: Option<(String, u64)>,
    /// The last problem logged, so a broken domain logs when it changes, not every check.
    pub(super) last_problem: Option<String>,
    /// What the failed fetch was, for TLS-RPT (SPEC 8.3): set with `failed`, and
    /// cleared with it or when the domain's `_mta-sts` record is gone.
    pub(super) finding: Option<Finding>,
}

impl Entry {
    pub(super) fn usable(&self, now: u64) -> Option<&Arc<CachedPolicy>> {
        self.policy.as_ref().filter(|_| now < self.expires)
    }

    pub(super) fn failed(&self) -> Option<&(String, u64)> {
        self.trouble.as_ref()?.failed.as_ref()
    }

    pub(super) fn last_problem(&self) -> Option<&str> {
        self.trouble.as_ref()?.last_problem.as_deref()
    }

    pub(super) fn finding(&self) -> Option<&Finding> {
        self.trouble.as_ref()?.finding.as_ref()
    }

    /// A fetch under this id failed (`None`: the last one succeeded); `finding` is
    /// what TLS-RPT reports of it (SPEC 8.3).
    pub(super) fn set_failed(&mut self, failed: Option<(String, u64, Finding)>) {
        if failed.is_some() || self.trouble.is_some() {
            self.change_trouble(|t| match failed {
                Some((id, retry, finding)) => {
                    t.failed = Some((id, retry));
                    t.finding = Some(finding);
                }
                None => {
                    t.failed = None;
                    t.finding = None;
                }
            });
        }
    }

    /// SPEC 8.3 reports fetch failures of domains that publish an `_mta-sts`
    /// record: once the record is gone, the failure is not the domain's news.
    pub(super) fn clear_finding(&mut self) {
        if self.finding().is_some() {
            self.change_trouble(|t| t.finding = None);
        }
    }

    pub(super) fn set_last_problem(&mut self, problem: Option<String>) {
        if problem.is_some() || self.trouble.is_some() {
            self.change_trouble(|t| t.last_problem = problem);
        }
    }

    /// The box goes when there is nothing left in it (and clearing a field of an
    /// entry without trouble allocates nothing: see the setters).
    fn change_trouble(&mut self, f: impl FnOnce(&mut Trouble)) {
        let trouble = self.trouble.get_or_insert_with(Box::default);
        f(trouble);
        if trouble.failed.is_none() && trouble.last_problem.is_none() && trouble.finding.is_none() {
            self.trouble = None;
        }
    }

    pub(super) fn set_policy(&mut self, policy: Option<Arc<CachedPolicy>>) {
        self.expires = policy.as_ref().map_or(0, |p| p.expires());
        self.mode = policy.as_ref().map(|p| p.policy.mode);
        self.answer = None;
        self.policy = policy;
    }
}
