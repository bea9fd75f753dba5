//! A cache shared by several mtastsd nodes: each node keeps its own in-process cache
//! and persisted store in front, and uses the shared one to learn what another node
//! already resolved and to avoid refreshing a domain N times.
//!
//! The shared cache is an optimisation, never a dependency: every call is bounded by a
//! timeout, and a failing shared cache leaves each node working as if alone. Nor is it
//! trusted more than a node's own fetch (SPEC 5.10): a record passes the validation of
//! a fetched policy ([`sanitize`]) before a node looks at it, and a record that
//! differs from a usable local policy only makes the node fetch again itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::resolve::log_policy_change;
use super::{CachedPolicy, Lookup, PolicyCache, NEGATIVE_TTL_MAX};
use crate::mta_sts::policy::parse_policy;
use crate::mta_sts::record::parse_record;
use crate::mta_sts::Policy;
use crate::resolver::https::MAX_BODY;

/// The longest shared record a node reads (SPEC 5.10's size cap): a policy as long
/// as a fetch may be (SPEC 3.4), plus room for the envelope. A record holds a policy
/// in fewer bytes than the policy file does (`"a.bc",` against `mx: a.bc` and a newline).
pub const MAX_RECORD: usize = MAX_BODY + 1024;

/// A shared record's `fetched` or `checked` may be this far ahead of the node's clock
/// (the nodes' clocks differ a little); further, the record is not believed.
const CLOCK_SKEW: u64 = 60;

/// What one domain's shared record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ClusterRecord {
    /// A policy, with the time its TXT id was last confirmed.
    Policy {
        #[serde(flatten)]
        policy: CachedPolicy,
        checked: u64,
    },
    /// The domain publishes no policy, as of `checked`; valid until `until`.
    Negative { checked: u64, until: u64 },
}

impl ClusterRecord {
    /// The same record with every time in it moved by `by` seconds. Records in the
    /// shared cache carry wall-clock times, the one time the nodes share; a node's
    /// cache runs on its own process seconds (SPEC 5.9), which drift from the wall
    /// clock when it is stepped. A time that would fall before the epoch is 0.
    pub(super) fn shifted(self, by: i64) -> ClusterRecord {
        let shift = |t: u64| t.saturating_add_signed(by);
        match self {
            ClusterRecord::Policy {
                mut policy,
                checked,
            } => {
                policy.fetched = shift(policy.fetched);
                ClusterRecord::Policy {
                    policy,
                    checked: shift(checked),
                }
            }
            ClusterRecord::Negative { checked, until } => ClusterRecord::Negative {
                checked: shift(checked),
                until: shift(until),
            },
        }
    }
}

/// A shared-cache operation failed (down, slow, refused). Always temporary.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared cache: {0}")]
pub struct ClusterError(pub String);

/// The shared cache. Implementations bound each call by their own timeout.
pub trait ClusterCache: Send + Sync + 'static {
    /// The shared record of a domain, if any.
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClusterRecord>, ClusterError>>;

    /// Publish a domain's record; it may expire from the shared cache after `ttl`.
    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a ClusterRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Try to take the right to resolve `domain` for `ttl` (`SET NX PX`): `true` when
    /// this node should do the work, `false` when another node holds the lease and
    /// does. A lease held for longer than `ttl` (or for ever) is not one a node took:
    /// it is ignored (`true`), so that a stray key cannot silence re-checks.
    fn lease<'a>(
        &'a self,
        domain: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, ClusterError>>;

    /// Give back this node's lease on `domain` (and only this node's: another node
    /// may hold it if ours lapsed).
    fn release<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<(), ClusterError>>;
}

/// SPEC 5.10: bound what a shared record can claim before a node believes it, with
/// the checks a fetched policy passes, reused from `mta_sts` (one rule, one place):
/// - the id is an `sts-id` (SPEC 2.5): what a TXT record could carry, so it cannot
///   bring a line break or any other text into a log line;
/// - the policy, written out as a policy file, fits the fetch's body cap (SPEC 3.4)
///   and parses (SPEC 4) back to itself: mx syntax (SPEC 4.4), at most the mx a
///   policy can hold, mx present unless the mode is `none`, `max_age` within 4.5;
/// - no fetch or check in the future beyond [`CLOCK_SKEW`] (a record "fetched" next
///   year would never be refreshed or replaced), and a little ahead counts as now
///   (SPEC 5.9); a negative answer for at most SPEC 5.6's hour.
///
/// `None` for a record not worth looking at (invalid, or no longer usable).
pub(super) fn sanitize(entry: ClusterRecord, now: u64) -> Option<ClusterRecord> {
    match entry {
        ClusterRecord::Policy {
            mut policy,
            checked,
        } => {
            if policy.fetched > now + CLOCK_SKEW
                || checked > now + CLOCK_SKEW
                || !valid_id(&policy.id)
                || !valid_policy(&policy.policy)
            {
                return None;
            }
            policy.fetched = policy.fetched.min(now);
            policy.usable(now).then_some(ClusterRecord::Policy {
                policy,
                checked: checked.min(now),
            })
        }
        ClusterRecord::Negative { checked, until } => {
            if checked > now + CLOCK_SKEW {
                return None;
            }
            let until = until.min(now + NEGATIVE_TTL_MAX);
            (now < until).then_some(ClusterRecord::Negative {
                checked: checked.min(now),
                until,
            })
        }
    }
}

/// SPEC 2.5: `id` is what a valid TXT record could give as its id.
fn valid_id(id: &str) -> bool {
    matches!(parse_record(format!("v=STSv1; id={id}").as_bytes()), Ok(r) if r.id == id)
}

/// SPEC 3.4, 4: the policy file `policy` stands for is within the cap and valid,
/// and reads back as `policy`.
fn valid_policy(policy: &Policy) -> bool {
    let mut text = format!(
        "version: STSv1\nmode: {}\nmax_age: {}\n",
        policy.mode, policy.max_age
    );
    for mx in &policy.mx {
        if text.len() > MAX_BODY {
            return false;
        }
        text.push_str("mx: ");
        text.push_str(&mx.to_string());
        text.push('\n');
    }
    text.len() <= MAX_BODY
        && parse_policy(text.as_bytes()).is_ok_and(|parsed| same_rules(&parsed, policy))
}

/// Whether two policies ask the same of Postfix: mode, mx patterns (in order) and
/// lifetime. (`max_age_clamped` only says how a fetch's text read.)
pub(super) fn same_rules(a: &Policy, b: &Policy) -> bool {
    a.mode == b.mode && a.max_age == b.max_age && a.mx == b.mx
}

/// SPEC 5.10: a shared policy confirms a node's own when it is the same policy under
/// the same id; anything else (another id, a weaker or stronger mode, other mx, a
/// shorter or longer lifetime) is only a hint to fetch again.
pub(super) fn confirms(shared: &CachedPolicy, local: &CachedPolicy) -> bool {
    shared.id == local.id && same_rules(&shared.policy, &local.policy)
}

/// What the shared cache says before a resolution.
pub(super) enum Consult {
    /// The cluster already knew: this is the result.
    Done(Option<Arc<CachedPolicy>>),
    /// Resolve here; `leased` when this node took the domain's lease; `refetch` when
    /// a shared record differs from the local policy (SPEC 5.10): fetch the policy
    /// even if the TXT id has not changed, as a proactive refresh does.
    Proceed { leased: bool, refetch: bool },
}

impl Consult {
    pub(super) const ALONE: Consult = Consult::Proceed {
        leased: false,
        refetch: false,
    };
}

/// What a shared record did to a node's entry ([`PolicyCache::adopt`]).
pub(super) enum Adopted {
    /// It filled a miss, or confirmed what the node holds: the lookup's result.
    Used(Lookup),
    /// It differs from the usable local policy, which stays (SPEC 5.10).
    Differs,
}

/// How long a node may hold a domain's shared lease (a re-check or refresh takes at
/// most a DNS timeout plus a fetch deadline; a crashed node's lease lapses).
pub const CLUSTER_LEASE: Duration = Duration::from_secs(30);

impl PolicyCache {
    pub(super) fn cluster(&self) -> Option<Arc<dyn ClusterCache>> {
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
    pub(super) fn publish(&self, domain: &str, entry: ClusterRecord, now: u64) {
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
        let Some(entry) = sanitize(entry, now) else {
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
                    if !confirms(&policy, p) {
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
                let mut kept = false;
                self.update(domain, |e| {
                    // SPEC 5.3: another node seeing no record (maybe because its DNS
                    // is being tampered with) never takes away a policy we trust.
                    kept = e.usable(now).is_some();
                    if !kept {
                        e.set_policy(None);
                        e.checked = checked;
                        e.quiet_until = until;
                        // Shared "no policy" is published for a domain without an
                        // `_mta-sts` record: no fetch failure to report (SPEC 8.3).
                        e.clear_finding();
                    }
                });
                // SPEC 5.10: beside a usable policy, "no policy" disagrees with it: a
                // hint to check here, never a confirmation that skips the re-check.
                Some(if kept {
                    Adopted::Differs
                } else {
                    Adopted::Used(Lookup::NoPolicy)
                })
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
    pub(super) async fn consult_cluster(
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
    pub(super) fn release_lease(&self, domain: &str) {
        let Some(shared) = self.cluster() else { return };
        let domain = domain.to_string();
        tokio::spawn(async move {
            if let Err(e) = shared.release(&domain).await {
                log::debug!("{domain}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn policy(mode: &str, mx: &[&str], max_age: u32, id: &str, fetched: u64) -> ClusterRecord {
        let mut body = format!("version: STSv1\nmode: {mode}\nmax_age: {max_age}\n");
        for m in mx {
            body.push_str(&format!("mx: {m}\n"));
        }
        ClusterRecord::Policy {
            policy: CachedPolicy::new(parse_policy(body.as_bytes()).unwrap(), id.into(), fetched),
            checked: fetched,
        }
    }

    fn with(entry: ClusterRecord, f: impl FnOnce(&mut CachedPolicy)) -> ClusterRecord {
        match entry {
            ClusterRecord::Policy {
                mut policy,
                checked,
            } => {
                f(&mut policy);
                ClusterRecord::Policy { policy, checked }
            }
            other => other,
        }
    }

    fn mx_list(n: usize) -> Vec<crate::mta_sts::MxPattern> {
        (0..n)
            .map(|i| crate::mta_sts::MxPattern::parse(&format!("mx{i}.example.net")).unwrap())
            .collect()
    }

    /// SPEC 5.10: (what, record, believed?) for each check a fetched policy passes.
    fn spec_5_10_rows() -> Vec<(&'static str, ClusterRecord, bool)> {
        let good = policy("enforce", &["mx.example.com"], 86400, "20261101", NOW - 10);
        vec![
            ("a fetched policy", good.clone(), true),
            (
                "mode none without mx",
                policy("none", &[], 86400, "1", NOW),
                true,
            ),
            (
                "id with a newline",
                with(good.clone(), |p| p.id = "1\nforged".into()),
                false,
            ),
            (
                "id with a space",
                with(good.clone(), |p| p.id = "1 2".into()),
                false,
            ),
            (
                "id with a field",
                with(good.clone(), |p| p.id = "1; x=y".into()),
                false,
            ),
            (
                "empty id",
                with(good.clone(), |p| p.id = String::new()),
                false,
            ),
            (
                "33-char id",
                with(good.clone(), |p| p.id = "a".repeat(33)),
                false,
            ),
            (
                "enforce without mx",
                with(good.clone(), |p| p.policy.mx.clear()),
                false,
            ),
            (
                "10 000 mx",
                with(good.clone(), |p| p.policy.mx = mx_list(10_000)),
                false,
            ),
            (
                "100 mx",
                with(good.clone(), |p| p.policy.mx = mx_list(100)),
                true,
            ),
            (
                "max_age over a year",
                with(good.clone(), |p| p.policy.max_age = u32::MAX),
                false,
            ),
            (
                "fetched next year",
                policy("enforce", &["a.example"], 86400, "1", NOW + 31_536_000),
                false,
            ),
            (
                "fetched 2 min ahead",
                policy("enforce", &["a.example"], 86400, "1", NOW + 120),
                false,
            ),
            (
                "fetched 30 s ahead",
                policy("enforce", &["a.example"], 86400, "1", NOW + 30),
                true,
            ),
            (
                "expired",
                policy("enforce", &["a.example"], 86400, "1", NOW - 86_400),
                false,
            ),
        ]
    }

    #[test]
    fn spec_5_10_shared_records_pass_a_fetched_policys_checks() {
        for (what, entry, believed) in spec_5_10_rows() {
            assert_eq!(sanitize(entry, NOW).is_some(), believed, "{what}");
        }
    }

    #[test]
    fn a_record_a_little_ahead_counts_as_now_spec_5_9() {
        let Some(ClusterRecord::Policy { policy, checked }) =
            sanitize(policy("enforce", &["a.example"], 86400, "1", NOW + 30), NOW)
        else {
            panic!("believed");
        };
        assert_eq!((policy.fetched, checked), (NOW, NOW));
    }

    #[test]
    fn negative_records_last_at_most_an_hour() {
        let negative = |checked, until| ClusterRecord::Negative { checked, until };
        assert_eq!(
            sanitize(negative(NOW, NOW + 864_000), NOW),
            Some(negative(NOW, NOW + NEGATIVE_TTL_MAX))
        );
        assert_eq!(sanitize(negative(NOW - 100, NOW - 1), NOW), None);
        assert_eq!(sanitize(negative(NOW + 3600, NOW + 7200), NOW), None);
    }

    /// SPEC 5.10: only the same policy under the same id confirms.
    #[test]
    fn only_the_same_policy_confirms() {
        let local = |e: ClusterRecord| match e {
            ClusterRecord::Policy { policy, .. } => policy,
            ClusterRecord::Negative { .. } => unreachable!(),
        };
        let ours = local(policy(
            "enforce",
            &["mx.example.com"],
            86400,
            "1",
            NOW - 100,
        ));
        let rows = [
            (
                policy("enforce", &["mx.example.com"], 86400, "1", NOW),
                true,
            ),
            (
                policy("enforce", &["mx.example.com"], 86400, "2", NOW),
                false,
            ),
            (
                policy("testing", &["mx.example.com"], 86400, "1", NOW),
                false,
            ),
            (policy("none", &[], 86400, "1", NOW), false),
            (
                policy("enforce", &["mx.attacker.example"], 86400, "1", NOW),
                false,
            ),
            (
                policy("enforce", &["mx.example.com", "b.example"], 86400, "1", NOW),
                false,
            ),
            (
                policy("enforce", &["mx.example.com"], 3600, "1", NOW),
                false,
            ),
        ];
        for (shared, want) in rows {
            let shared = local(shared);
            assert_eq!(confirms(&shared, &ours), want, "{shared:?}");
        }
    }
}
