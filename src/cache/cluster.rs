//! A cache shared by several mtastsd nodes: each node keeps its own in-process cache
//! and persisted store in front, and uses the shared one to learn what another node
//! already resolved and to avoid refreshing a domain N times.
//!
//! The shared cache is an optimisation, never a dependency: every call is bounded by a
//! timeout, and a failing shared cache leaves each node working as if alone. Nor is it
//! trusted more than a node's own fetch (SPEC 5.10): a record passes the validation of
//! a fetched policy ([`sanitize`]) before a node looks at it, and a record that
//! differs from a usable local policy only makes the node fetch again itself.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{CachedPolicy, NEGATIVE_TTL_MAX};
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

    /// SPEC 5.10: (record, believed?) for each check a fetched policy passes.
    #[test]
    fn spec_5_10_shared_records_pass_a_fetched_policys_checks() {
        let good = policy("enforce", &["mx.example.com"], 86400, "20261101", NOW - 10);
        let mx = |m: &str| crate::mta_sts::MxPattern::parse(m).unwrap();
        let many: Vec<_> = (0..10_000)
            .map(|i| mx(&format!("mx{i}.example.net")))
            .collect();
        let fitting: Vec<_> = (0..100)
            .map(|i| mx(&format!("mx{i}.example.net")))
            .collect();
        let rows: Vec<(&str, ClusterRecord, bool)> = vec![
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
                with(good.clone(), |p| p.policy.mx = many.clone()),
                false,
            ),
            (
                "100 mx",
                with(good.clone(), |p| p.policy.mx = fitting.clone()),
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
        ];
        for (what, entry, believed) in rows {
            assert_eq!(sanitize(entry, NOW).is_some(), believed, "{what}");
        }
        // A little ahead counts as now (SPEC 5.9).
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
