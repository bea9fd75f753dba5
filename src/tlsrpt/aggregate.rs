//! The in-memory aggregate of SPEC 8.2: session counts per UTC day, TLS-RPT domain,
//! reporting record and policy, with the failure details grouped and counted
//! (RFC 8460 §4.3). Pure: no I/O here; the store and the cluster add and merge these.

use std::collections::HashMap;
use std::fmt;

use super::datagram::{Datagram, FailureDetail, Policy};

/// A UTC day (RFC 8460 §4.1: a report covers one whole UTC day), as days since
/// 1970-01-01.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day(pub i64);

const SECS_PER_DAY: i64 = 86_400;

impl Day {
    /// The UTC day holding this Unix time (SPEC 8.2: the day a datagram is received).
    pub fn from_unix(secs: i64) -> Self {
        Self(secs.div_euclid(SECS_PER_DAY))
    }

    /// 00:00:00Z of the day, in Unix seconds.
    pub fn start_unix(self) -> i64 {
        self.0 * SECS_PER_DAY
    }

    /// 23:59:59Z of the day, in Unix seconds: the last second a report covers
    /// (RFC 8460 §4.4's `end-datetime`, §5.1's end timestamp, as senders write it).
    pub fn end_unix(self) -> i64 {
        self.start_unix() + SECS_PER_DAY - 1
    }

    /// (year, month, day) of the proleptic Gregorian calendar (H. Hinnant's
    /// `civil_from_days`).
    pub fn ymd(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }

    /// Parse `YYYY-MM-DD` (the form [`Display`](fmt::Display) writes).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = &s[r];
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())?
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || d < 1 {
            return None;
        }
        // days_from_civil, the inverse of `ymd`.
        let y2 = if m <= 2 { y - 1 } else { y };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let day = Self(era * 146_097 + doe - 719_468);
        // Rejects 02-30 and the like: the round trip must give the same date.
        (day.ymd() == (y, m as u32, d as u32)).then_some(day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// What SPEC 8.2 counts by: one report's policy entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub day: Day,
    /// The TLS-RPT domain (the datagram's `d`): one report per (day, domain), SPEC 8.4.
    pub domain: String,
    /// The `_smtp._tls` record the sessions saw: where the report goes.
    pub record: String,
    pub policy: Policy,
}

/// The counts of one [`Key`] (RFC 8460 §4.4 `summary` and `failure-details`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub successful: u64,
    pub failed: u64,
    pub failures: HashMap<FailureDetail, u64>,
}

impl Counts {
    fn merge(&mut self, other: Counts) {
        self.successful = self.successful.saturating_add(other.successful);
        self.failed = self.failed.saturating_add(other.failed);
        for (detail, n) in other.failures {
            let c = self.failures.entry(detail).or_default();
            *c = c.saturating_add(n);
        }
    }

    /// SPEC 8.6: at most `max` failure details (see [`cap`]), and how many failed
    /// sessions the dropped details held.
    pub fn capped_failures(&self, max: usize) -> (Vec<(&FailureDetail, u64)>, u64) {
        let mut all: Vec<(&FailureDetail, u64)> =
            self.failures.iter().map(|(d, &n)| (d, n)).collect();
        let dropped = cap(&mut all, max);
        (all, dropped)
    }
}

/// SPEC 8.6, the one place of the failure-detail cap: keep the `max` largest counts
/// (ties in key order, so a report is the same however its counts were gathered),
/// largest first, and return the sum of the dropped counts. The session totals are
/// not touched by it: they count sessions, not details, so the dropped sessions stay
/// counted there.
pub fn cap<K: Ord>(details: &mut Vec<(K, u64)>, max: usize) -> u64 {
    details.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let dropped = details
        .get(max..)
        .unwrap_or_default()
        .iter()
        .fold(0u64, |s, (_, n)| s.saturating_add(*n));
    details.truncate(max);
    dropped
}

/// The counts of many days and domains (SPEC 8.2): what the collector gathers
/// between commits, and what the store and the cluster merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    entries: HashMap<Key, Counts>,
}

impl Aggregate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Count one session (a parsed datagram) on `day`: per policy a successful or a
    /// failed session (libtlsrpt's final result), and each failure detail once. It
    /// takes the datagram by value: the collector calls this per datagram, and its
    /// strings move into a new key instead of being copied.
    pub fn add(&mut self, day: Day, datagram: Datagram) {
        self.add_n(day, datagram, 1);
    }

    /// Count `n` sessions that sent the very same datagram (the collector parses
    /// each distinct datagram of a second once: most repeat byte for byte).
    pub fn add_n(&mut self, day: Day, datagram: Datagram, n: u64) {
        let Datagram {
            mut domain,
            mut record,
            policies,
        } = datagram;
        let policy_count = policies.len();
        for (i, result) in policies.into_iter().enumerate() {
            // Postfix sends one policy per datagram: the last one takes the strings.
            let last = i + 1 == policy_count;
            let take = |s: &mut String| if last { std::mem::take(s) } else { s.clone() };
            let key = Key {
                day,
                domain: take(&mut domain),
                record: take(&mut record),
                policy: result.policy,
            };
            let counts = self.entries.entry(key).or_default();
            if result.failed {
                counts.failed = counts.failed.saturating_add(n);
            } else {
                counts.successful = counts.successful.saturating_add(n);
            }
            for detail in result.failures {
                let c = counts.failures.entry(detail).or_default();
                *c = c.saturating_add(n);
            }
        }
    }

    /// Add `other`'s counts to these (the sum, whatever the order of merges).
    pub fn merge(&mut self, other: Aggregate) {
        for (key, counts) in other.entries {
            self.entries.entry(key).or_default().merge(counts);
        }
    }

    /// Add counts for one key (a row read back from the store).
    pub fn insert(&mut self, key: Key, counts: Counts) {
        self.entries.entry(key).or_default().merge(counts);
    }

    /// Every key with its counts, taken out, in no particular order.
    pub fn into_entries(self) -> impl Iterator<Item = (Key, Counts)> {
        self.entries.into_iter()
    }

    /// Every key with its counts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Counts)> {
        self.entries.iter()
    }

    /// The entries of one report (SPEC 8.4: one per UTC day and domain), in key
    /// order so that the same counts always give the same report.
    pub fn report_entries(&self, day: Day, domain: &str) -> Vec<(&Key, &Counts)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, _)| k.day == day && k.domain == domain)
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The entries of one day, in key order (domain, then record and policy).
    pub fn report_entries_of_day(&self, day: Day) -> Vec<(&Key, &Counts)> {
        let mut v: Vec<_> = self.entries.iter().filter(|(k, _)| k.day == day).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The (day, domain) pairs that have counts, sorted: the reports to build.
    pub fn reports(&self) -> Vec<(Day, &str)> {
        let mut v: Vec<_> = self
            .entries
            .keys()
            .map(|k| (k.day, k.domain.as_str()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::{parse, ResultType};
    use proptest::prelude::*;

    fn golden(name: &str) -> Datagram {
        let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(std::fs::read(&path).unwrap().trim_ascii_end()).unwrap()
    }

    const DAY: Day = Day(20_468); // 2026-01-15

    // RFC 8460 §4.1: UTC days; the report's bounds.
    #[test]
    fn days() {
        assert_eq!(Day::from_unix(0).to_string(), "1970-01-01");
        assert_eq!(Day::from_unix(-1).to_string(), "1969-12-31");
        assert_eq!(DAY.to_string(), "2026-01-15");
        assert_eq!(DAY.start_unix(), 1_768_435_200);
        assert_eq!(DAY.end_unix(), 1_768_435_200 + 86_399);
        assert_eq!(Day::from_unix(DAY.end_unix()), DAY);
        assert_eq!(Day::from_unix(DAY.end_unix() + 1), Day(DAY.0 + 1));
        assert_eq!(Day::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-15",
            "2026-01-00",
            "+026-01-15",
            "",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn day_edges() {
        for (n, text) in [
            (-719_528, "0000-01-01"),
            (-719_163, "0000-12-31"),
            (2_932_896, "9999-12-31"),
        ] {
            assert_eq!(Day(n).to_string(), text);
            assert_eq!(Day::parse(text), Some(Day(n)));
        }
        assert_eq!(Day::parse(&Day(-719_529).to_string()), None);
    }

    proptest! {
        #[test]
        // Years 0000 to 9999 print as four digits and parse back; others do not parse.
        fn day_round_trip(n in -1_000_000i64..1_000_000) {
            prop_assert_eq!(Day::parse(&Day(n).to_string()), if (-719_528..2_932_897).contains(&n) { Some(Day(n)) } else { None });
        }
    }

    // SPEC 8.2: sessions counted per key; details grouped with their counts.
    #[test]
    fn adds_sessions_and_details() {
        let mut a = Aggregate::new();
        for _ in 0..3 {
            a.add(DAY, golden("sts-success.json"));
        }
        for _ in 0..2 {
            a.add(DAY, golden("sts-failure.json"));
        }
        a.add(DAY, golden("nopol-success.json"));
        a.add(Day(DAY.0 + 1), golden("sts-success.json"));
        assert_eq!(
            a.reports(),
            vec![
                (DAY, "nopol.example"),
                (DAY, "rpt.example"),
                (Day(DAY.0 + 1), "rpt.example")
            ]
        );
        let e = a.report_entries(DAY, "rpt.example");
        assert_eq!(e.len(), 1, "success and failure share the policy key");
        let c = e[0].1;
        assert_eq!((c.successful, c.failed), (3, 2));
        assert_eq!(c.failures.len(), 1);
        let (d, n) = c.failures.iter().next().unwrap();
        assert_eq!(
            (d.result_type, *n),
            (ResultType::CertificateHostMismatch, 2)
        );
        let n = a.report_entries(DAY, "nopol.example");
        assert_eq!((n[0].1.successful, n[0].1.failed), (1, 0));
    }

    // SPEC 8.2 (and the cluster of 5.10): merging is the sum, in any order.
    #[test]
    fn merge_is_the_sum() {
        let inputs = [
            "sts-success.json",
            "sts-failure.json",
            "nopol-failure.json",
            "sts-failure.json",
            "nopol-success-3.10.4.json",
        ];
        let mut whole = Aggregate::new();
        for n in inputs {
            whole.add(DAY, golden(n));
        }
        let (mut left, mut right) = (Aggregate::new(), Aggregate::new());
        for (i, n) in inputs.iter().enumerate() {
            if i % 2 == 0 { &mut left } else { &mut right }.add(DAY, golden(n));
        }
        let mut lr = left.clone();
        lr.merge(right.clone());
        let mut rl = right;
        rl.merge(left);
        assert_eq!(lr, whole);
        assert_eq!(rl, whole);
        // The 3.10.4 datagram (no policy-domain) lands on the same key as the others.
        assert_eq!(whole.report_entries(DAY, "nopol.example").len(), 1);
    }

    // SPEC 8.2: a datagram with several policies counts the session under each.
    #[test]
    fn several_policies() {
        let b = br#"{"d": "a.example","pr": "v=TLSRPTv1;rua=mailto:r@a.example","policies":[{"policy-type":1,"policy-domain": "a.example","policy-string":["3 1 1 AB"],"t":0,"f":0},{"policy-type":2,"t":0,"f":0}]}"#;
        let mut a = Aggregate::new();
        a.add(DAY, parse(b).unwrap());
        let e = a.report_entries(DAY, "a.example");
        assert_eq!(e.len(), 2);
        for (k, c) in e {
            assert_eq!(
                (k.domain.as_str(), k.record.as_str()),
                ("a.example", "v=TLSRPTv1;rua=mailto:r@a.example")
            );
            assert_eq!(k.policy.domain, "a.example");
            assert_eq!((c.successful, c.failed), (1, 0));
        }
    }

    fn detail(ip: &str) -> FailureDetail {
        FailureDetail {
            result_type: ResultType::ValidationFailure,
            sending_ip: "192.0.2.1".into(),
            receiving_mx: "mx.a.example".into(),
            receiving_helo: String::new(),
            receiving_ip: ip.into(),
            additional_info: String::new(),
            reason_code: String::new(),
        }
    }

    // SPEC 8.6: the largest counts kept, ties in key order, the rest summed.
    #[test]
    fn cap_keeps_largest() {
        let mut c = Counts::default();
        for (ip, n) in [
            ("10.0.0.1", 5),
            ("10.0.0.2", 9),
            ("10.0.0.3", 1),
            ("10.0.0.4", 5),
        ] {
            c.failures.insert(detail(ip), n);
        }
        let (kept, dropped) = c.capped_failures(2);
        let kept: Vec<_> = kept
            .iter()
            .map(|(d, n)| (d.receiving_ip.as_str(), *n))
            .collect();
        assert_eq!(kept, vec![("10.0.0.2", 9), ("10.0.0.1", 5)]);
        assert_eq!(dropped, 6);
        let (all, none) = c.capped_failures(10);
        assert_eq!((all.len(), none), (4, 0));
        assert_eq!(c.capped_failures(0).1, 20);
    }
}
