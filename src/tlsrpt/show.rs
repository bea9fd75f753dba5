//! `mtastsd tlsrpt show`: what was collected on one UTC day (SPEC 8.2) and what
//! became of the day's reports (SPEC 8.4), as text for people or JSON for scripts.
//! Pure: the caller reads the store.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::aggregate::{Aggregate, Day};
use super::store::StoredReport;

#[derive(Debug, Serialize)]
pub struct DayView {
    pub day: String,
    pub store: String,
    pub domains: Vec<DomainView>,
}

#[derive(Debug, Serialize)]
pub struct DomainView {
    pub domain: String,
    /// The `_smtp._tls` records the sessions saw (usually one).
    pub records: Vec<String>,
    pub policies: Vec<PolicyView>,
    /// The day's report, once built.
    pub report: Option<ReportView>,
}

#[derive(Debug, Serialize)]
pub struct PolicyView {
    #[serde(rename = "policy-type")]
    pub policy_type: &'static str,
    #[serde(rename = "policy-domain")]
    pub policy_domain: String,
    #[serde(rename = "policy-string")]
    pub policy_string: Vec<String>,
    #[serde(rename = "mx-host")]
    pub mx_host: Vec<String>,
    pub successful: u64,
    pub failed: u64,
    #[serde(rename = "failure-details")]
    pub failure_details: Vec<DetailView>,
}

#[derive(Debug, Serialize)]
pub struct DetailView {
    #[serde(rename = "result-type")]
    pub result_type: &'static str,
    pub count: u64,
    #[serde(rename = "sending-mta-ip")]
    pub sending_ip: String,
    #[serde(rename = "receiving-mx-hostname")]
    pub receiving_mx: String,
    #[serde(rename = "receiving-mx-helo")]
    pub receiving_helo: String,
    #[serde(rename = "receiving-ip")]
    pub receiving_ip: String,
    #[serde(rename = "failure-reason-code")]
    pub reason_code: String,
    #[serde(rename = "additional-information")]
    pub additional_info: String,
}

#[derive(Debug, Serialize)]
pub struct ReportView {
    #[serde(rename = "report-id")]
    pub report_id: String,
    /// Unix seconds.
    pub created: i64,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub uri: String,
    pub state: &'static str,
    pub tries: u32,
    /// Unix seconds: when it is (or was last) due.
    pub next_try: i64,
    pub sent: Option<i64>,
    pub last_error: Option<String>,
}

/// The view of `day`'s counts (one domain's, when `counts` holds only it), with each
/// domain's stored report from `report`.
pub fn view(
    day: Day,
    store: &str,
    counts: &Aggregate,
    report: impl Fn(&str) -> Option<StoredReport>,
) -> DayView {
    let mut domains: BTreeMap<&str, DomainView> = BTreeMap::new();
    for (key, c) in counts.report_entries_of_day(day) {
        let d = domains.entry(&key.domain).or_insert_with(|| DomainView {
            domain: key.domain.clone(),
            records: Vec::new(),
            policies: Vec::new(),
            report: None,
        });
        if !d.records.contains(&key.record) {
            d.records.push(key.record.clone());
        }
        let (details, _) = c.capped_failures(usize::MAX);
        d.policies.push(PolicyView {
            policy_type: key.policy.policy_type.as_str(),
            policy_domain: key.policy.domain.clone(),
            policy_string: key.policy.strings.clone(),
            mx_host: key.policy.mx_hosts.clone(),
            successful: c.successful,
            failed: c.failed,
            failure_details: details
                .into_iter()
                .map(|(f, n)| DetailView {
                    result_type: f.result_type.as_str(),
                    count: n,
                    sending_ip: f.sending_ip.clone(),
                    receiving_mx: f.receiving_mx.clone(),
                    receiving_helo: f.receiving_helo.clone(),
                    receiving_ip: f.receiving_ip.clone(),
                    reason_code: f.reason_code.clone(),
                    additional_info: f.additional_info.clone(),
                })
                .collect(),
        });
    }
    let mut domains: Vec<DomainView> = domains.into_values().collect();
    for d in &mut domains {
        d.report = report(&d.domain).map(|r| ReportView {
            report_id: r.report_id,
            created: r.created,
            deliveries: r
                .deliveries
                .into_iter()
                .map(|x| DeliveryView {
                    uri: x.uri,
                    state: x.state.as_str(),
                    tries: x.tries,
                    next_try: x.next_try,
                    sent: x.sent,
                    last_error: x.last_error,
                })
                .collect(),
        });
    }
    DayView {
        day: day.to_string(),
        store: store.to_owned(),
        domains,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(unix: i64) -> String {
    let day = Day::from_unix(unix);
    let secs = unix - day.start_unix();
    format!(
        "{day} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl fmt::Display for DayView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "TLS-RPT counts of {} (UTC), from {}",
            self.day, self.store
        )?;
        if self.domains.is_empty() {
            return writeln!(f, "  nothing collected");
        }
        for d in &self.domains {
            writeln!(f)?;
            writeln!(f, "{}", d.domain)?;
            for r in &d.records {
                writeln!(f, "  record {r:?}")?;
            }
            for p in &d.policies {
                write_policy(f, p)?;
            }
            match &d.report {
                None => writeln!(f, "  report: not built yet")?,
                Some(r) => write_report(f, r)?,
            }
        }
        Ok(())
    }
}

fn write_policy(f: &mut fmt::Formatter<'_>, p: &PolicyView) -> fmt::Result {
    let mode = p
        .policy_string
        .iter()
        .find_map(|l| l.strip_prefix("mode:"))
        .map(|m| format!(" ({})", m.trim()))
        .unwrap_or_default();
    writeln!(
        f,
        "  {}{mode} policy of {}: {} successful, {} failed sessions",
        p.policy_type, p.policy_domain, p.successful, p.failed
    )?;
    if !p.mx_host.is_empty() {
        writeln!(f, "    mx {}", p.mx_host.join(", "))?;
    }
    for x in &p.failure_details {
        let mut line = format!("    {:>6} {}", x.count, x.result_type);
        if !x.receiving_mx.is_empty() {
            line += &format!(" {}", x.receiving_mx);
        }
        if !x.receiving_ip.is_empty() {
            line += &format!(" [{}]", x.receiving_ip);
        }
        if !x.sending_ip.is_empty() {
            line += &format!(" from {}", x.sending_ip);
        }
        if !x.reason_code.is_empty() {
            line += &format!(": {}", x.reason_code);
        }
        writeln!(f, "{}", escape(&line))?;
    }
    Ok(())
}

fn write_report(f: &mut fmt::Formatter<'_>, r: &ReportView) -> fmt::Result {
    writeln!(f, "  report {} built {}", r.report_id, utc(r.created))?;
    if r.deliveries.is_empty() {
        writeln!(f, "    no mailto: or https: address: kept, not sent")?;
    }
    for d in &r.deliveries {
        let when = match (d.state, d.sent) {
            (_, Some(t)) => format!("sent {}", utc(t)),
            ("pending", None) => format!("due {}", utc(d.next_try)),
            (state, None) => state.to_owned(),
        };
        let error = d
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        let line = format!("    {}: {when}, {} tries{error}", d.uri, d.tries);
        writeln!(f, "{}", escape(&line))?;
    }
    Ok(())
}

/// What came from the network (Postfix's datagrams, a server's error) may hold
/// control characters: shown escaped, never sent to the terminal.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::parse;

    fn golden(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/golden/tlsrpt/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_days_counts_by_domain_and_policy_with_details() {
        let day = Day::parse("2026-12-01").unwrap();
        let mut a = Aggregate::new();
        for (name, n) in [
            ("sts-success.json", 7),
            ("sts-failure.json", 3),
            ("nopol-success.json", 2),
        ] {
            for _ in 0..n {
                a.add(day, parse(&golden(name)).unwrap());
            }
        }
        // Another day is not shown.
        a.add(Day(day.0 - 1), parse(&golden("sts-success.json")).unwrap());
        let v = view(day, "/x/tlsrpt.sqlite", &a, |_| None);
        let text = v.to_string();
        assert_eq!(v.domains.len(), 2, "{text}");
        let rpt = &v.domains[1];
        assert_eq!(rpt.domain, "rpt.example");
        assert_eq!(rpt.policies.len(), 1);
        assert_eq!((rpt.policies[0].successful, rpt.policies[0].failed), (7, 3));
        assert!(
            text.contains("sts (enforce) policy of rpt.example: 7 successful, 3 failed sessions"),
            "{text}"
        );
        assert!(
            text.contains("3 certificate-host-mismatch mx.rpt.example [127.0.0.1] from 127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("report: not built yet"), "{text}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["domains"][1]["policies"][0]["failure-details"][0]["count"],
            3
        );
    }

    #[test]
    fn control_characters_from_the_network_are_escaped() {
        assert_eq!(escape("a\u{1b}[2Jb\r\n"), "a\\u{1b}[2Jb\\r\\n");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_633_599), "2025-12-01 23:59:59 UTC");
    }
}
