//! The RFC 8460 §4.4 report of one (UTC day, TLS-RPT domain) (SPEC 8.4), its mailto
//! file name (RFC 8460 §5.1) and subject (§5.3). Pure: no I/O here; compression and
//! delivery are the delivery's.
//!
//! Receivers' parsers are strict in ways RFC 8460 does not spell out, so the JSON
//! has one fixed shape: `policy-domain` always (also for no-policy-found), a
//! non-empty `contact-info` (never null), `policy-string` and `mx-host` always as
//! arrays (possibly empty), `failure-details` always an array, and in each detail
//! `receiving-mx-hostname` always present. `sending-mta-ip` and `receiving-ip` are
//! left out when unknown (SPEC 8.3's detail of a policy fetch has neither): RFC 8460
//! §4.4 makes them IP addresses, which `""` is not, and large senders' fetch-error
//! details carry neither.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::aggregate::{cap, Aggregate, Day};
use super::datagram::{FailureDetail, Policy};

/// Who sends the reports: the `[tlsrpt]` settings a report carries.
#[derive(Debug, Clone, Copy)]
pub struct Submitter<'a> {
    /// RFC 8460 §4.4 `organization-name`.
    pub organization_name: &'a str,
    /// RFC 8460 §4.4 `contact-info`: an address or URI, never empty.
    pub contact_info: &'a str,
    /// RFC 8460 §5.3: the submitter domain, in the file name, the subject and the
    /// `TLS-Report-Submitter` field.
    pub domain: &'a str,
}

/// Why no report could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("no sessions counted for {domain} on {day}")]
    NoSessions { day: Day, domain: String },
    #[error("empty organization-name")]
    OrganizationName,
    #[error("empty contact-info")]
    ContactInfo,
    /// The report-id goes into the subject's `<id@submitter>` (RFC 5322 msg-id) and,
    /// its letters and digits, into the file name's unique-id (RFC 8460 §5.1).
    #[error("report-id {0:?}: letters, digits, '-', '_' and inner dots only")]
    ReportId(String),
    #[error("invalid domain {0:?} for a file name")]
    Domain(String),
}

/// RFC 8460 §4.4, field order as the RFC lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(rename = "organization-name")]
    pub organization_name: String,
    #[serde(rename = "date-range")]
    pub date_range: DateRange,
    #[serde(rename = "contact-info")]
    pub contact_info: String,
    #[serde(rename = "report-id")]
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
    /// Failed sessions whose details SPEC 8.6's cap left out (they stay in the
    /// summaries): for the log, not in the JSON.
    #[serde(skip)]
    pub uncapped_failures: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateRange {
    #[serde(rename = "start-datetime")]
    pub start: String,
    #[serde(rename = "end-datetime")]
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    pub policy: PolicyJson,
    pub summary: Summary,
    #[serde(rename = "failure-details")]
    pub failure_details: Vec<FailureJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyJson {
    #[serde(rename = "policy-type")]
    pub policy_type: &'static str,
    #[serde(rename = "policy-string")]
    pub policy_string: Vec<String>,
    #[serde(rename = "policy-domain")]
    pub policy_domain: String,
    #[serde(rename = "mx-host")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    #[serde(rename = "total-successful-session-count")]
    pub successful: u64,
    #[serde(rename = "total-failure-session-count")]
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureJson {
    #[serde(rename = "result-type")]
    pub result_type: &'static str,
    #[serde(rename = "sending-mta-ip", skip_serializing_if = "String::is_empty")]
    pub sending_ip: String,
    #[serde(rename = "receiving-mx-hostname")]
    pub receiving_mx: String,
    #[serde(rename = "receiving-mx-helo", skip_serializing_if = "String::is_empty")]
    pub receiving_helo: String,
    #[serde(rename = "receiving-ip", skip_serializing_if = "String::is_empty")]
    pub receiving_ip: String,
    #[serde(rename = "failed-session-count")]
    pub count: u64,
    #[serde(
        rename = "additional-information",
        skip_serializing_if = "String::is_empty"
    )]
    pub additional_info: String,
    #[serde(
        rename = "failure-reason-code",
        skip_serializing_if = "String::is_empty"
    )]
    pub reason_code: String,
}

impl Report {
    /// The JSON as sent (compact: receivers gunzip and parse, nobody reads it raw).
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Build the report of `domain` on `day` from the counts (SPEC 8.4), with at most
/// `max_details` failure details in all (SPEC 8.6). Sessions seen under several
/// `_smtp._tls` records that day are one policy entry: the report is per domain.
pub fn build(
    submitter: Submitter<'_>,
    report_id: &str,
    day: Day,
    domain: &str,
    counts: &Aggregate,
    max_details: usize,
) -> Result<Report, ReportError> {
    if submitter.organization_name.trim().is_empty() {
        return Err(ReportError::OrganizationName);
    }
    if submitter.contact_info.trim().is_empty() {
        return Err(ReportError::ContactInfo);
    }
    check_report_id(report_id)?;
    let policies = per_policy(counts, day, domain);
    if policies.is_empty() {
        return Err(ReportError::NoSessions {
            day,
            domain: domain.to_owned(),
        });
    }
    let (policies, uncapped_failures) = capped_policies(policies, max_details);
    Ok(Report {
        organization_name: submitter.organization_name.to_owned(),
        date_range: DateRange {
            start: format!("{day}T00:00:00Z"),
            end: format!("{day}T23:59:59Z"),
        },
        contact_info: submitter.contact_info.to_owned(),
        report_id: report_id.to_owned(),
        policies,
        uncapped_failures,
    })
}

/// One policy's session totals and failure details, summed over the day's records.
type PolicyCounts<'a> = (u64, u64, BTreeMap<&'a FailureDetail, u64>);

/// The day's counts for `domain`, per policy in policy order (RFC 8460 §4.4: one
/// `policies[]` entry per policy, whatever `_smtp._tls` record it was seen under).
fn per_policy<'a>(
    counts: &'a Aggregate,
    day: Day,
    domain: &str,
) -> BTreeMap<&'a Policy, PolicyCounts<'a>> {
    let mut policies: BTreeMap<&Policy, PolicyCounts<'_>> = BTreeMap::new();
    for (key, c) in counts.report_entries(day, domain) {
        let p = policies.entry(&key.policy).or_default();
        p.0 = p.0.saturating_add(c.successful);
        p.1 = p.1.saturating_add(c.failed);
        for (d, &n) in &c.failures {
            let e = p.2.entry(d).or_default();
            *e = e.saturating_add(n);
        }
    }
    policies
}

/// The report's `policies[]`, with SPEC 8.6's cap applied over the whole report;
/// also the failures the cap left out.
fn capped_policies(
    policies: BTreeMap<&Policy, PolicyCounts<'_>>,
    max_details: usize,
) -> (Vec<PolicyReport>, u64) {
    // SPEC 8.6 over the whole report: (policy index, detail) keys keep ties stable.
    let mut details: Vec<((usize, &FailureDetail), u64)> = policies
        .values()
        .enumerate()
        .flat_map(|(i, p)| p.2.iter().map(move |(d, &n)| ((i, *d), n)))
        .collect();
    let uncapped_failures = cap(&mut details, max_details);
    let mut kept: Vec<Vec<FailureJson>> = vec![Vec::new(); policies.len()];
    for ((i, d), n) in details {
        kept[i].push(FailureJson {
            result_type: d.result_type.as_str(),
            sending_ip: d.sending_ip.clone(),
            receiving_mx: d.receiving_mx.clone(),
            receiving_helo: d.receiving_helo.clone(),
            receiving_ip: d.receiving_ip.clone(),
            count: n,
            additional_info: d.additional_info.clone(),
            reason_code: d.reason_code.clone(),
        });
    }
    let reports = policies
        .into_iter()
        .zip(kept)
        .map(|((p, (ok, failed, _)), failure_details)| PolicyReport {
            policy: PolicyJson {
                policy_type: p.policy_type.as_str(),
                policy_string: p.strings.clone(),
                policy_domain: p.domain.clone(),
                mx_host: p.mx_hosts.clone(),
            },
            summary: Summary {
                successful: ok,
                failed,
            },
            failure_details,
        })
        .collect();
    (reports, uncapped_failures)
}

/// RFC 8460 §4.4 checked on the JSON as it will be sent (SPEC 8.4: validated before
/// sending): every required field present with its type, no null, no unknown field,
/// the enumerations, the date format, addresses that are IP addresses. The first
/// problem found, with where it is.
pub fn validate(r: &Value) -> Result<(), String> {
    let top = obj(
        r,
        &[
            "organization-name",
            "date-range",
            "contact-info",
            "report-id",
            "policies",
        ],
        &[],
        "report",
    )?;
    non_empty(&top["organization-name"], "organization-name")?;
    non_empty(&top["contact-info"], "contact-info")?;
    non_empty(&top["report-id"], "report-id")?;
    let dr = obj(
        &top["date-range"],
        &["start-datetime", "end-datetime"],
        &[],
        "date-range",
    )?;
    date(&dr["start-datetime"], "start-datetime")?;
    date(&dr["end-datetime"], "end-datetime")?;
    let ps = top["policies"]
        .as_array()
        .filter(|p| !p.is_empty())
        .ok_or("policies: not a non-empty array")?;
    for p in ps {
        validate_policy(p)?;
    }
    Ok(())
}

fn validate_policy(p: &Value) -> Result<(), String> {
    let p = obj(
        p,
        &["policy", "summary"],
        &["failure-details"],
        "policies[]",
    )?;
    let pol = obj(
        &p["policy"],
        &["policy-type", "policy-domain"],
        &["policy-string", "mx-host"],
        "policy",
    )?;
    let t = string(&pol["policy-type"], "policy-type")?;
    if !["tlsa", "sts", "no-policy-found"].contains(&t) {
        return Err(format!("policy-type {t:?}"));
    }
    non_empty(&pol["policy-domain"], "policy-domain")?;
    for k in ["policy-string", "mx-host"] {
        if let Some(v) = pol.get(k) {
            for s in v.as_array().ok_or(format!("{k}: not an array"))? {
                string(s, k)?;
            }
        }
    }
    let s = obj(
        &p["summary"],
        &[
            "total-successful-session-count",
            "total-failure-session-count",
        ],
        &[],
        "summary",
    )?;
    count(&s["total-successful-session-count"], "summary")?;
    count(&s["total-failure-session-count"], "summary")?;
    let details = match p.get("failure-details") {
        None => &[][..],
        Some(v) => v.as_array().ok_or("failure-details: not an array")?,
    };
    details.iter().try_for_each(validate_detail)
}

fn validate_detail(d: &Value) -> Result<(), String> {
    let d = obj(
        d,
        &[
            "result-type",
            "receiving-mx-hostname",
            "failed-session-count",
        ],
        &[
            "sending-mta-ip",
            "receiving-ip",
            "receiving-mx-helo",
            "additional-information",
            "failure-reason-code",
        ],
        "failure-details[]",
    )?;
    let rt = string(&d["result-type"], "result-type")?;
    let known = (200..400)
        .filter_map(super::datagram::ResultType::from_code)
        .any(|r| r.as_str() == rt);
    if !known {
        return Err(format!("result-type {rt:?}"));
    }
    count(&d["failed-session-count"], "failed-session-count")?;
    for k in [
        "receiving-mx-hostname",
        "receiving-mx-helo",
        "additional-information",
        "failure-reason-code",
    ] {
        if let Some(v) = d.get(k) {
            string(v, k)?;
        }
    }
    for k in ["sending-mta-ip", "receiving-ip"] {
        if let Some(v) = d.get(k) {
            let ip = string(v, k)?;
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("{k}: {ip:?} is not an IP address"));
            }
        }
    }
    Ok(())
}

fn obj<'a>(
    v: &'a Value,
    req: &[&str],
    opt: &[&str],
    at: &str,
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let o = v.as_object().ok_or(format!("{at}: not an object"))?;
    if let Some(k) = req.iter().find(|k| !o.contains_key(**k)) {
        return Err(format!("{at}: {k} missing"));
    }
    if let Some(k) = o
        .keys()
        .find(|k| !req.contains(&k.as_str()) && !opt.contains(&k.as_str()))
    {
        return Err(format!("{at}: unknown {k}"));
    }
    Ok(o)
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.as_str().ok_or(format!("{at}: not a string"))
}

fn non_empty(v: &Value, at: &str) -> Result<(), String> {
    match string(v, at)?.trim() {
        "" => Err(format!("{at}: empty")),
        _ => Ok(()),
    }
}

fn count(v: &Value, at: &str) -> Result<(), String> {
    v.as_u64()
        .map(|_| ())
        .ok_or(format!("{at}: not a non-negative integer"))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the report writes it.
fn date(v: &Value, at: &str) -> Result<(), String> {
    let s = string(v, at)?;
    let ok = s.len() == 20
        && s.get(10..11) == Some("T")
        && s.ends_with('Z')
        && s.get(..10).and_then(Day::parse).is_some();
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: {s:?} is not an RFC 3339 UTC time"))
    }
}

/// A dot-atom of letters, digits, `-` and `_`: valid as the left part of the
/// subject's msg-id (RFC 5322 §3.6.4) and free of what file names and headers would
/// need quoted.
fn check_report_id(id: &str) -> Result<(), ReportError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ReportError::ReportId(id.chars().take(64).collect()))
    }
}

fn check_domain(d: &str) -> Result<(), ReportError> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ReportError::Domain(d.chars().take(64).collect()))
    }
}

/// RFC 8460 §5.1 (SPEC 8.4): `submitter!policy-domain!begin!end!unique-id.json.gz`,
/// begin and end the report's first and last second as Unix seconds (as Google and
/// Microsoft write them), unique-id the report-id's letters and digits (§5.1 allows
/// no other).
pub fn file_name(
    submitter: &str,
    domain: &str,
    day: Day,
    report_id: &str,
) -> Result<String, ReportError> {
    check_domain(submitter)?;
    check_domain(domain)?;
    check_report_id(report_id)?;
    let unique: String = report_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if unique.is_empty() {
        return Err(ReportError::ReportId(report_id.to_owned()));
    }
    Ok(format!(
        "{submitter}!{domain}!{}!{}!{unique}.json.gz",
        day.start_unix(),
        day.end_unix()
    ))
}

/// RFC 8460 §5.3 (SPEC 8.4): `Report Domain: D Submitter: S Report-ID: <id@S>`.
pub fn subject(submitter: &str, domain: &str, report_id: &str) -> Result<String, ReportError> {
    check_domain(submitter)?;
    check_domain(domain)?;
    check_report_id(report_id)?;
    Ok(format!(
        "Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}@{submitter}>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::parse;
    use serde_json::{json, Value};

    const DAY: Day = Day(20_468); // 2026-01-15
    const ID: &str = "20260115.0123456789abcdef";
    const WHO: Submitter<'static> = Submitter {
        organization_name: "Example Mail",
        contact_info: "tlsrpt@mail.example",
        domain: "mail.example",
    };

    fn golden(name: &str) -> crate::tlsrpt::datagram::Datagram {
        let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(std::fs::read(&path).unwrap().trim_ascii_end()).unwrap()
    }

    fn counts(files: &[(&str, usize)]) -> Aggregate {
        let mut a = Aggregate::new();
        for &(f, n) in files {
            for _ in 0..n {
                a.add(DAY, golden(f));
            }
        }
        a
    }

    fn check_rfc8460(r: &Value) {
        if let Err(e) = validate(r) {
            panic!("{e}");
        }
    }

    // SPEC 8.4 / RFC 8460 §4.4: the whole report, field by field.
    #[test]
    fn report_exact() {
        let a = counts(&[
            ("sts-success.json", 3),
            ("sts-failure.json", 2),
            ("nopol-success.json", 1),
        ]);
        let r = build(WHO, ID, DAY, "rpt.example", &a, 100).unwrap();
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "organization-name": "Example Mail",
                "date-range": {
                    "start-datetime": "2026-01-15T00:00:00Z",
                    "end-datetime": "2026-01-15T23:59:59Z"
                },
                "contact-info": "tlsrpt@mail.example",
                "report-id": ID,
                "policies": [{
                    "policy": {
                        "policy-type": "sts",
                        "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.rpt.example", "max_age: 604800"],
                        "policy-domain": "rpt.example",
                        "mx-host": ["mx.rpt.example"]
                    },
                    "summary": {
                        "total-successful-session-count": 3,
                        "total-failure-session-count": 2
                    },
                    "failure-details": [{
                        "result-type": "certificate-host-mismatch",
                        "sending-mta-ip": "127.0.0.1",
                        "receiving-mx-hostname": "mx.rpt.example",
                        "receiving-mx-helo": "mx.rpt.example",
                        "receiving-ip": "127.0.0.1",
                        "failed-session-count": 2
                    }]
                }]
            })
        );
        check_rfc8460(&v);
        // The field order of RFC 8460 §4.4 on the wire.
        assert!(r
            .to_json()
            .starts_with(r#"{"organization-name":"Example Mail","date-range":{"start-datetime""#));
    }

    // SPEC 8.4: no-policy-found keeps policy-domain (also from 3.10.4's datagrams),
    // the arrays stay arrays.
    #[test]
    fn no_policy_found() {
        let a = counts(&[
            ("nopol-success-3.10.4.json", 4),
            ("nopol-success.json", 1),
            ("nopol-failure.json", 1),
        ]);
        let r = build(WHO, ID, DAY, "nopol.example", &a, 100).unwrap();
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        check_rfc8460(&v);
        let p = &v["policies"];
        assert_eq!(
            p.as_array().unwrap().len(),
            1,
            "one policy: domain filled from d"
        );
        assert_eq!(
            p[0]["policy"],
            json!({"policy-type": "no-policy-found", "policy-string": [], "policy-domain": "nopol.example", "mx-host": []})
        );
        assert_eq!(
            p[0]["summary"],
            json!({"total-successful-session-count": 5, "total-failure-session-count": 1})
        );
        assert_eq!(
            p[0]["failure-details"],
            json!([{
                "result-type": "validation-failure",
                "sending-mta-ip": "192.0.2.1",
                "receiving-mx-hostname": "mx.nopol.example",
                "receiving-mx-helo": "mx.nopol.example",
                "receiving-ip": "198.51.100.7",
                "failed-session-count": 1,
                "failure-reason-code": "tls-handshake-failure"
            }])
        );
    }

    // SPEC 8.6: the cap applies to the report; the totals still count every session.
    #[test]
    fn cap_over_the_report() {
        let mut a = Aggregate::new();
        for (i, n) in [(1, 5), (2, 9), (3, 1)] {
            let dg = format!(
                r#"{{"d": "a.example","pr": "v=TLSRPTv1;rua=mailto:r@a.example","policies":[{{"policy-type":9,"failure-details":[{{"c":205,"s": "192.0.2.1","n": "mx{i}.a.example","r": "10.0.0.{i}"}}],"t":1,"f":1}}]}}"#
            );
            for _ in 0..n {
                a.add(DAY, parse(dg.as_bytes()).unwrap());
            }
        }
        let r = build(WHO, ID, DAY, "a.example", &a, 2).unwrap();
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        check_rfc8460(&v);
        let d = v["policies"][0]["failure-details"].as_array().unwrap();
        let got: Vec<_> = d
            .iter()
            .map(|d| {
                (
                    d["receiving-ip"].as_str().unwrap(),
                    d["failed-session-count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, vec![("10.0.0.2", 9), ("10.0.0.1", 5)]);
        assert_eq!(
            v["policies"][0]["summary"]["total-failure-session-count"],
            15
        );
        assert_eq!(r.uncapped_failures, 1);
        // Postfix named no EHLO here: the optional field is left out.
        assert!(d[0].get("receiving-mx-helo").is_none());
    }

    // SPEC 8.4: never a report without sessions, contact-info or a usable id.
    #[test]
    fn refusals() {
        let a = counts(&[("sts-success.json", 1)]);
        assert!(matches!(
            build(WHO, ID, DAY, "other.example", &a, 10),
            Err(ReportError::NoSessions { .. })
        ));
        assert!(matches!(
            build(WHO, ID, Day(DAY.0 + 1), "rpt.example", &a, 10),
            Err(ReportError::NoSessions { .. })
        ));
        let no_contact = Submitter {
            contact_info: " ",
            ..WHO
        };
        assert_eq!(
            build(no_contact, ID, DAY, "rpt.example", &a, 10),
            Err(ReportError::ContactInfo)
        );
        let no_org = Submitter {
            organization_name: "",
            ..WHO
        };
        assert_eq!(
            build(no_org, ID, DAY, "rpt.example", &a, 10),
            Err(ReportError::OrganizationName)
        );
        for bad in [
            "",
            "a b",
            "2026-01-15T00:00:00Z",
            ".x",
            "x.",
            "a..b",
            "<x>",
            "a@b",
        ] {
            assert!(
                matches!(
                    build(WHO, bad, DAY, "rpt.example", &a, 10),
                    Err(ReportError::ReportId(_))
                ),
                "{bad}"
            );
        }
    }

    // SPEC 8.4, RFC 8460 §5.1 and §5.3: the file name and the subject.
    #[test]
    fn file_name_and_subject() {
        assert_eq!(
            file_name("mail.example", "rpt.example", DAY, ID).unwrap(),
            "mail.example!rpt.example!1768435200!1768521599!202601150123456789abcdef.json.gz"
        );
        assert_eq!(
            subject("mail.example", "rpt.example", ID).unwrap(),
            "Report Domain: rpt.example Submitter: mail.example Report-ID: <20260115.0123456789abcdef@mail.example>"
        );
        assert!(file_name("mail.example", "a!b", DAY, ID).is_err());
        assert!(file_name("m/x", "rpt.example", DAY, ID).is_err());
        assert!(file_name("mail.example", "rpt.example", DAY, "---").is_err());
        assert!(subject("mail.example", "rpt.example", "a b").is_err());
    }

    // The checker itself rejects what receivers reject (so the tests above can fail).
    #[test]
    #[should_panic(expected = "contact-info")]
    fn checker_rejects_null_contact_info() {
        let a = counts(&[("sts-success.json", 1)]);
        let mut v: Value = serde_json::from_str(
            &build(WHO, ID, DAY, "rpt.example", &a, 10)
                .unwrap()
                .to_json(),
        )
        .unwrap();
        v["contact-info"] = Value::Null;
        check_rfc8460(&v);
    }

    #[test]
    #[should_panic(expected = "policy-domain missing")]
    fn checker_rejects_missing_policy_domain() {
        let a = counts(&[("nopol-success.json", 1)]);
        let mut v: Value = serde_json::from_str(
            &build(WHO, ID, DAY, "nopol.example", &a, 10)
                .unwrap()
                .to_json(),
        )
        .unwrap();
        v["policies"][0]["policy"]
            .as_object_mut()
            .unwrap()
            .remove("policy-domain");
        check_rfc8460(&v);
    }

    // SPEC 8.3's detail knows no IP addresses: they are left out, never `""`
    // (RFC 8460 §4.4 makes both IP addresses).
    #[test]
    fn a_policy_fetch_detail_has_no_empty_ips_spec_8_3() {
        use crate::tlsrpt::findings::{relabel, Finding, FindingKind};
        let a = relabel(counts(&[("nopol-success.json", 2)]), |_| {
            Some(Finding::new(
                FindingKind::FetchError,
                "stage=http-status HTTP status 404",
            ))
        });
        let r = build(WHO, ID, DAY, "nopol.example", &a, 100).unwrap();
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        check_rfc8460(&v);
        assert_eq!(
            v["policies"][0]["failure-details"],
            json!([{
                "result-type": "sts-policy-fetch-error",
                "receiving-mx-hostname": "mta-sts.nopol.example",
                "failed-session-count": 2,
                "failure-reason-code": "stage=http-status HTTP status 404"
            }])
        );
    }
}
