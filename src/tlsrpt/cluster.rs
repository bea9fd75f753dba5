//! TLS-RPT in a cluster (SPEC 8.2, 8.4 with SPEC 5.10's shared Redis): what the
//! nodes share, as bytes, and the pure rules that make one report per (day, domain)
//! out of every node's counts. The I/O is behind [`TlsrptCluster`] (Redis in
//! `cache::redis`); the sender (`sender.rs`) drives it.
//!
//! # Counts are pushed as totals, never as increments
//!
//! Each node keeps collecting into its own store (SPEC 8.2) and pushes, for each
//! (day, domain), ONE value: its own absolute counts, under its own node id (a field
//! of the (day, domain)'s hash). Pushing the same totals again, or newer ones, can
//! never double a count, and a push that failed is simply retried later with the
//! newer totals: while Redis is down a node's counts wait in its store, and reach the
//! cluster with the first push after Redis is back. The node id is kept in the store
//! file ([`crate::tlsrpt::store::TlsrptStore::node_id`]), not taken from the host
//! name and pid: a restarted node must overwrite its own earlier value (a new id
//! would count its day twice), and a new, empty store must not overwrite the counts
//! its predecessor pushed (they were real sessions).
//!
//! # When a day's counts are complete: heartbeats, not a fixed wait
//!
//! With each successful push round a node writes its [`Heartbeat`]: when, and the
//! last day whose counts it has pushed in full (`through`: every day that had ended
//! [`COMMIT_SLACK`] before the round read its store). The node planning a (day,
//! domain) waits until every node that was alive around that day (a heartbeat less
//! than [`NODE_WINDOW`] before the day began) says `through >= day`
//! ([`waiting_for`]). A node that is busy, partitioned from Redis or down delays the
//! day's reports instead of losing its counts from them; after [`WAIT_LIMIT`] past
//! the day's end the reports go without it, and its warning names it (its counts of
//! that day then never reach a report: RFC 8460 §4.1's daily report cannot wait for
//! ever).
//!
//! # One report: the lease, then the marker
//!
//! Planning (day, domain), a node takes the lease `tlsrpt:lease:<day>:<domain>`
//! (`SET NX PX`, [`LEASE_TTL`]); only the holder merges every other node's pushed
//! value with its own local counts ([`merge`]: its own field is replaced by its
//! store's totals, which are as new as they get), builds the report and then claims
//! it with the marker `tlsrpt:sent:<day>:<domain>` = report-id, `SET NX`. Only a
//! node whose marker was set stores the report and delivers it (SPEC 8.4, as a
//! single node does); a node that finds a marker records the (day, domain) as
//! reported elsewhere and never builds it. The lease only saves the other nodes the
//! work; the marker's `SET NX` is what makes the report single: two nodes that both
//! believe they hold the lease (one paused past its lease) still cannot both claim
//! it. A node crashing between the marker and storing the report loses that report
//! (logged by nobody): the price of never sending two.
//!
//! # Redis down when a report is due
//!
//! Without Redis a node can neither merge the other nodes' counts nor learn whether
//! another node sent the report, so it sends nothing: a partial report under a
//! report-id of its own would double every count another node sent for the same
//! day. It retries every round; the report goes out as soon as Redis is back within
//! the days the sender plans ([`super::sender::PLAN_DAYS`]). If Redis stays away
//! longer, the day is never reported, and an error is logged for it: missing reports
//! are visible to a domain owner as missing, doubled counts would look like data.
//!
//! # What is read is not trusted
//!
//! Every value read passes the checks of SPEC 5.10's records: a size cap
//! ([`MAX_VALUE`]), the HMAC of `[redis] key_file` when set (bound to the key and
//! field, so a value cannot be moved to another domain, day or node), and here the
//! parse through the aggregate's own types and the datagram's bounds ([`decode`]).
//! A value that fails is ignored and counted
//! (`mtastsd_tlsrpt_shared_values_rejected_total`).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::aggregate::{Aggregate, Counts, Day, Key};
use super::datagram::{
    FailureDetail, Policy, PolicyType, ResultType, MAX_DOMAIN, MAX_STRING, MAX_STRINGS,
};

/// How often a node pushes what changed in its store.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(10);
/// The collector commits every second (SPEC 8.2); a day's last counts are in the
/// store this long after the day ends.
pub const COMMIT_SLACK: i64 = 10;
/// A node whose last heartbeat is older than this before a day began is not waited
/// for (it was gone before the day; a decommissioned node stops mattering).
pub const NODE_WINDOW: i64 = 86_400;
/// How long after a day ends its reports wait for nodes that have not pushed it.
pub const WAIT_LIMIT: i64 = 6 * 3600;
/// The lease on building one report: far longer than a build takes.
pub const LEASE_TTL: Duration = Duration::from_secs(3600);
/// Pushed counts stay this long: the day, the days the sender plans, and a margin.
pub const VALUE_TTL: Duration = Duration::from_secs(4 * 86_400);
/// A report's marker outlives every node's plan window for its day.
pub const MARKER_TTL: Duration = Duration::from_secs(7 * 86_400);
/// The largest value a node reads (one node's counts for one day and domain);
/// larger ones are not read at all.
pub const MAX_VALUE: usize = 1024 * 1024;
/// At most this many nodes' values are read per key.
pub const MAX_NODES: usize = 64;
/// Entries (record × policy) of one node's value.
pub const MAX_ENTRIES: usize = 256;
/// Failure details per entry a node pushes (the largest counts, by SPEC 8.6's one
/// cap rule); the report caps again, far lower, after the merge.
pub const MAX_PUSHED_DETAILS: usize = 1000;
/// The longest node id read.
pub const MAX_NODE_ID: usize = 128;

/// The shared store failed (down, slow, refused). Always temporary.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS-RPT shared cache: {0}")]
pub struct SharedError(pub String);

/// What a node last said about itself (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// When (unix s).
    pub seen: i64,
    /// The last day whose counts it has pushed in full (days since the epoch).
    pub through: i64,
}

/// What the cluster shares for TLS-RPT. Values are bytes: this module encodes and
/// checks them; an implementation signs and caps them. Each call is bounded by the
/// implementation's timeout.
pub trait TlsrptCluster: Send + Sync + 'static {
    /// Whether `node`'s heartbeat is there (absent: the first push, or a Redis that
    /// lost its data, and everything recent is pushed again).
    fn has_heartbeat<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<bool, SharedError>>;

    /// Store `node`'s values of these (day, domain)s, and list each domain under its
    /// day so that any node can report it.
    fn push<'a>(
        &'a self,
        node: &'a str,
        values: &'a [(Day, String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<(), SharedError>>;

    fn set_heartbeat<'a>(
        &'a self,
        node: &'a str,
        heartbeat: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SharedError>>;

    /// Every node's heartbeat that passed the size and signature checks.
    fn heartbeats(&self) -> BoxFuture<'_, Result<NodeValues, SharedError>>;

    /// The domains some node pushed counts of on `day`.
    fn domains(&self, day: Day) -> BoxFuture<'_, Result<Vec<String>, SharedError>>;

    /// Every node's value of (day, domain) that passed the size and signature checks.
    fn values<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<NodeValues, SharedError>>;

    /// Take (or keep) the lease on building (day, domain)'s report: `false` when
    /// another node holds it.
    fn lease<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<bool, SharedError>>;

    /// Give back `node`'s lease (and only its own).
    fn release<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>>;

    /// The report-id of (day, domain)'s report, if a node claimed it.
    fn sent<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SharedError>>;

    /// Claim (day, domain)'s report for `report_id` unless it is claimed (`SET NX`):
    /// the report-id that holds the claim afterwards (ours when we won).
    fn claim<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        report_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SharedError>>;
}

/// Values as read, each with the node id of its field.
pub type NodeValues = Vec<(String, Vec<u8>)>;

/// Why a value read was ignored (the metric's `reason`).
pub type Rejected = &'static str;

// The wire shape of one node's counts of one (day, domain): the day and domain are
// the key's (and signed with it), not repeated here.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    entries: Vec<WireEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry {
    record: String,
    #[serde(rename = "type")]
    policy_type: String,
    policy_domain: String,
    strings: Vec<String>,
    mx: Vec<String>,
    ok: u64,
    failed: u64,
    details: Vec<WireDetail>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDetail {
    result: String,
    s: String,
    n: String,
    h: String,
    r: String,
    a: String,
    f: String,
    count: u64,
}

const WIRE_VERSION: u32 = 1;

/// The value a node pushes for (day, domain): its entries of that day and domain in
/// `counts`, each with at most [`MAX_PUSHED_DETAILS`] details.
pub fn encode(counts: &Aggregate, day: Day, domain: &str) -> Vec<u8> {
    let entries = counts
        .report_entries(day, domain)
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|(k, c)| {
            let (details, _) = c.capped_failures(MAX_PUSHED_DETAILS);
            WireEntry {
                record: k.record.clone(),
                policy_type: k.policy.policy_type.as_str().to_owned(),
                policy_domain: k.policy.domain.clone(),
                strings: k.policy.strings.clone(),
                mx: k.policy.mx_hosts.clone(),
                ok: c.successful,
                failed: c.failed,
                details: details
                    .into_iter()
                    .map(|(d, n)| WireDetail {
                        result: d.result_type.as_str().to_owned(),
                        s: d.sending_ip.clone(),
                        n: d.receiving_mx.clone(),
                        h: d.receiving_helo.clone(),
                        r: d.receiving_ip.clone(),
                        a: d.additional_info.clone(),
                        f: d.reason_code.clone(),
                        count: n,
                    })
                    .collect(),
            }
        })
        .collect();
    serde_json::to_vec(&Wire {
        v: WIRE_VERSION,
        entries,
    })
    .expect("strings and numbers serialise")
}

/// A value read back into counts of (day, domain), or why it is ignored: it must
/// hold what [`encode`] writes, within the datagram's bounds (SPEC 8.1).
pub fn decode(json: &[u8], day: Day, domain: &str) -> Result<Aggregate, Rejected> {
    if json.len() > MAX_VALUE {
        return Err("too_large");
    }
    let wire: Wire = serde_json::from_slice(json).map_err(|_| "invalid")?;
    if wire.v != WIRE_VERSION || wire.entries.len() > MAX_ENTRIES {
        return Err("invalid");
    }
    let mut out = Aggregate::new();
    for e in wire.entries {
        let lists_ok = e.strings.len() <= MAX_STRINGS && e.mx.len() <= MAX_STRINGS;
        let strings_ok = [&e.record]
            .into_iter()
            .chain(&e.strings)
            .chain(&e.mx)
            .all(|s| s.len() <= MAX_STRING);
        if !lists_ok
            || !strings_ok
            || e.details.len() > MAX_PUSHED_DETAILS
            || !is_domain(&e.policy_domain)
        {
            return Err("invalid");
        }
        let policy_type = [PolicyType::Tlsa, PolicyType::Sts, PolicyType::NoPolicyFound]
            .into_iter()
            .find(|t| t.as_str() == e.policy_type)
            .ok_or("invalid")?;
        let mut counts = Counts {
            successful: e.ok,
            failed: e.failed,
            failures: HashMap::new(),
        };
        for d in e.details {
            let fields = [&d.s, &d.n, &d.h, &d.r, &d.a, &d.f];
            if fields.iter().any(|s| s.len() > MAX_STRING) {
                return Err("invalid");
            }
            let detail = FailureDetail {
                result_type: result_type(&d.result).ok_or("invalid")?,
                sending_ip: d.s,
                receiving_mx: d.n,
                receiving_helo: d.h,
                receiving_ip: d.r,
                additional_info: d.a,
                reason_code: d.f,
            };
            let c = counts.failures.entry(detail).or_default();
            *c = c.saturating_add(d.count);
        }
        out.insert(
            Key {
                day,
                domain: domain.to_owned(),
                record: e.record,
                policy: Policy {
                    policy_type,
                    domain: e.policy_domain,
                    strings: e.strings,
                    mx_hosts: e.mx,
                },
            },
            counts,
        );
    }
    Ok(out)
}

/// The spellings are datagram.rs's, read back through its code table (no second list).
fn result_type(s: &str) -> Option<ResultType> {
    (200..400)
        .filter_map(ResultType::from_code)
        .find(|t| t.as_str() == s)
}

/// A name as the datagram parser accepts one: what a key may carry (no separator of
/// the keys, no control character, nothing for a log line to misread).
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DOMAIN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A node id or report-id read back: short, and only characters that are safe in a
/// key, a log line and a file name.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NODE_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
}

/// SPEC 8.4 in a cluster: the counts of one report: `local` (this node's store, as
/// new as it gets) and every other node's value; this node's own pushed value is
/// left out, its store replaces it. Values that fail [`decode`] are left out and
/// returned with why.
pub fn merge(
    me: &str,
    day: Day,
    domain: &str,
    local: Aggregate,
    values: &[(String, Vec<u8>)],
) -> (Aggregate, Vec<(String, Rejected)>) {
    let mut merged = local;
    let mut rejected = Vec::new();
    for (node, json) in values {
        if node == me {
            continue;
        }
        match decode(json, day, domain) {
            Ok(counts) => merged.merge(counts),
            Err(why) => rejected.push((node.clone(), why)),
        }
    }
    (merged, rejected)
}

/// The heartbeat a node writes after a push round that read its store at `read_at`
/// and pushed everything changed: every day that had ended [`COMMIT_SLACK`] before
/// it is complete.
pub fn heartbeat(now: i64, read_at: i64) -> Heartbeat {
    Heartbeat {
        seen: now,
        through: Day::from_unix(read_at - COMMIT_SLACK).0 - 1,
    }
}

pub fn encode_heartbeat(h: Heartbeat) -> Vec<u8> {
    serde_json::to_vec(&h).expect("two numbers serialise")
}

/// The nodes a report of `day` must wait for (see the module doc): every other node
/// seen since [`NODE_WINDOW`] before the day began that has not pushed the day in
/// full. Heartbeats that cannot be read are returned apart, to be counted.
pub fn waiting_for(
    me: &str,
    day: Day,
    heartbeats: &[(String, Vec<u8>)],
) -> (Vec<String>, Vec<(String, Rejected)>) {
    let mut waiting = Vec::new();
    let mut rejected = Vec::new();
    for (node, raw) in heartbeats {
        if node == me {
            continue;
        }
        match serde_json::from_slice::<Heartbeat>(raw) {
            Ok(h) => {
                if h.seen >= day.start_unix() - NODE_WINDOW && h.through < day.0 {
                    waiting.push(node.clone());
                }
            }
            Err(_) => rejected.push((node.clone(), "invalid")),
        }
    }
    waiting.sort();
    (waiting, rejected)
}

/// The `_smtp._tls` record a report goes to when this node has none of its own for
/// the day (it saw no session to the domain): the one of the most sessions in the
/// merged counts, the smallest text on a tie (the same answer on every node).
pub fn record_of(counts: &Aggregate, day: Day, domain: &str) -> Option<String> {
    let mut sessions: HashMap<&str, u64> = HashMap::new();
    for (k, c) in counts.report_entries(day, domain) {
        let n = sessions.entry(&k.record).or_default();
        *n = n.saturating_add(c.successful).saturating_add(c.failed);
    }
    sessions
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(r, _)| r.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::parse;

    const DAY: Day = Day(20_000);

    fn datagram(domain: &str, failed: bool) -> Vec<u8> {
        let head = format!(
            r#"{{"d": "{domain}","pr": "v=TLSRPTv1; rua=mailto:r@{domain}","policies":[{{"policy-type":2,"policy-domain": "{domain}","policy-string":["version: STSv1","mode: enforce"],"mx-host":["mx.{domain}"]"#
        );
        if failed {
            format!(
                r#"{head},"failure-details":[{{"c":202,"s": "192.0.2.1","n": "mx.{domain}","h": "250 mx.{domain}","r": "198.51.100.7"}}],"t":1,"f":1}}]}}"#
            )
        } else {
            format!(r#"{head},"t":0,"f":0}}]}}"#)
        }
        .into_bytes()
    }

    fn counts(domain: &str, ok: usize, failed: usize) -> Aggregate {
        let mut a = Aggregate::new();
        for i in 0..ok + failed {
            a.add(DAY, parse(&datagram(domain, i >= ok)).unwrap());
        }
        a
    }

    // SPEC 8.2: a node's counts survive the trip through the shared value exactly.
    #[test]
    fn a_value_decodes_to_the_counts_it_was_encoded_from() {
        let mut a = counts("a.example", 5, 3);
        a.merge(counts("b.example", 1, 1));
        let json = encode(&a, DAY, "a.example");
        let back = decode(&json, DAY, "a.example").unwrap();
        assert_eq!(back, counts("a.example", 5, 3));
        // Another day or domain in the same aggregate is not in the value.
        assert_eq!(
            decode(&encode(&a, Day(DAY.0 + 1), "a.example"), DAY, "a.example").unwrap(),
            Aggregate::new()
        );
    }

    // SPEC 5.10 for TLS-RPT: what is read passes the datagram's bounds.
    #[test]
    fn values_that_break_a_bound_are_rejected() {
        let good = String::from_utf8(encode(&counts("a.example", 1, 1), DAY, "a.example")).unwrap();
        let long = "x".repeat(MAX_STRING + 1);
        let rows: Vec<(String, Rejected)> = vec![
            ("not json".into(), "invalid"),
            (good.replace("\"v\":1", "\"v\":2"), "invalid"),
            (good.replace("\"sts\"", "\"bogus\""), "invalid"),
            (
                good.replace("certificate-host-mismatch", "made-up"),
                "invalid",
            ),
            (good.replace("\"ok\":1", "\"ok\":-1"), "invalid"),
            (good.replace("\"ok\":1", "\"ok\":1,\"extra\":2"), "invalid"),
            (
                good.replace(
                    "\"policy_domain\":\"a.example\"",
                    "\"policy_domain\":\"a b\"",
                ),
                "invalid",
            ),
            (
                good.replace("mx.a.example\"]", &format!("{long}\"]")),
                "invalid",
            ),
            (" ".repeat(MAX_VALUE + 1), "too_large"),
        ];
        for (json, want) in rows {
            assert_eq!(
                decode(json.as_bytes(), DAY, "a.example").err(),
                Some(want),
                "{}",
                &json[..json.len().min(120)]
            );
        }
        assert!(decode(good.as_bytes(), DAY, "a.example").is_ok());
    }

    // SPEC 8.4: the report counts every node once: other nodes' values plus this
    // node's store, its own pushed (older) value left out; a poisoned value is
    // left out and named.
    #[test]
    fn merge_counts_every_node_once() {
        let local = counts("a.example", 10, 2);
        let values = vec![
            (
                "me".to_string(),
                encode(&counts("a.example", 7, 1), DAY, "a.example"),
            ),
            (
                "b".to_string(),
                encode(&counts("a.example", 3, 1), DAY, "a.example"),
            ),
            ("c".to_string(), b"{\"v\":1,\"entries\":[{}]}".to_vec()),
        ];
        let (merged, rejected) = merge("me", DAY, "a.example", local, &values);
        assert_eq!(merged, counts("a.example", 13, 3));
        assert_eq!(rejected, vec![("c".to_string(), "invalid")]);
    }

    // The wait for other nodes' final pushes (module doc).
    #[test]
    fn a_report_waits_for_nodes_that_have_not_pushed_its_day() {
        let start = DAY.start_unix();
        let hb = |seen: i64, through: i64| encode_heartbeat(Heartbeat { seen, through });
        let beats = vec![
            ("me".to_string(), hb(start - 10 * 86_400, 0)),
            ("done".to_string(), hb(start + 86_400 + 30, DAY.0)),
            ("late".to_string(), hb(start + 86_400 + 5, DAY.0 - 1)),
            ("down-since-noon".to_string(), hb(start + 43_200, DAY.0 - 1)),
            (
                "gone-long-ago".to_string(),
                hb(start - NODE_WINDOW - 1, DAY.0 - 3),
            ),
            ("bad".to_string(), b"{\"seen\":1}".to_vec()),
        ];
        let (waiting, rejected) = waiting_for("me", DAY, &beats);
        assert_eq!(waiting, ["down-since-noon", "late"]);
        assert_eq!(rejected, vec![("bad".to_string(), "invalid")]);
    }

    #[test]
    fn a_heartbeat_claims_only_days_ended_before_the_slack() {
        let end = DAY.end_unix() + 1;
        assert_eq!(
            heartbeat(end + 100, end + COMMIT_SLACK - 1).through,
            DAY.0 - 1
        );
        assert_eq!(heartbeat(end + 100, end + COMMIT_SLACK).through, DAY.0);
    }

    #[test]
    fn the_record_of_most_sessions_is_chosen_on_every_node() {
        let mut a = counts("a.example", 1, 0);
        let other = String::from_utf8(datagram("a.example", false))
            .unwrap()
            .replace("rua=mailto:r@a.example", "rua=mailto:z@a.example");
        a.add(DAY, parse(other.as_bytes()).unwrap());
        a.add(DAY, parse(other.as_bytes()).unwrap());
        assert_eq!(
            record_of(&a, DAY, "a.example").as_deref(),
            Some("v=TLSRPTv1; rua=mailto:z@a.example")
        );
        assert_eq!(record_of(&a, DAY, "b.example"), None);
    }

    #[test]
    fn names_read_back_are_checked() {
        assert!(is_domain("mx-1.a_b.example"));
        assert!(!is_domain("a:b") && !is_domain("") && !is_domain(&"a".repeat(254)));
        assert!(is_token("host-1/0123abcd") && is_token("20261130.00ff"));
        assert!(!is_token("a b") && !is_token("a\nb") && !is_token(&"a".repeat(129)));
    }
}
