//! SPEC 8.3: what only mtastsd knows. For a domain with an `_mta-sts` record whose
//! policy mtastsd could not fetch, parse or authenticate, it answers `NOTFOUND`
//! (SPEC 6.2: mail is never deferred for it), so Postfix reports those sessions as
//! `no-policy-found`. Before the counts are stored they are relabelled here as what
//! they are, an `sts` policy that failed (RFC 8460 §4.3.2), so that the domain owner
//! learns that senders cannot read the policy. Pure: the cache's view of each domain
//! comes in as a function.
//!
//! The choices, where RFC 8460 leaves room:
//! - every relabelled session counts as failed, also the ones Postfix delivered over
//!   opportunistic TLS: the domain's policy was not applied to them, which is the
//!   failure being reported (large senders report fetch errors the same way);
//! - the added failure detail names the policy host (`mta-sts.<domain>`, RFC 8461
//!   §3.3) as the receiving host and carries mtastsd's reason (stage and error) in
//!   `failure-reason-code`; the sending and receiving IPs are not known and stay empty;
//! - Postfix's own failure details for those sessions (a TLS handshake that failed at
//!   `may`, say) are kept beside it, since RFC 8460 §4.3 result types are not exclusive;
//! - a domain whose policy mtastsd holds (enforce, testing or none) is never
//!   relabelled: Postfix then reports the policy mtastsd answered with.

use super::aggregate::{Aggregate, Counts, Key};
use super::datagram::{FailureDetail, Policy, PolicyType, ResultType};

/// Why mtastsd has no policy for a domain that publishes an `_mta-sts` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// One of the three RFC 8460 §4.3.2 policy result types.
    pub result: FindingKind,
    /// What went wrong, as mtastsd logs it (`stage=... error`), for
    /// `failure-reason-code`; cut to [`REASON_MAX`] bytes.
    pub reason: String,
}

/// RFC 8460 §4.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The policy host could not be reached or did not serve a policy (DNS, TCP,
    /// HTTP status, content type, size, time-out).
    FetchError,
    /// The policy host's certificate did not pass PKIX validation (SPEC 3.1).
    WebPkiInvalid,
    /// The body is not a valid policy (SPEC 4).
    PolicyInvalid,
}

impl FindingKind {
    pub fn result_type(self) -> ResultType {
        match self {
            FindingKind::FetchError => ResultType::StsPolicyFetchError,
            FindingKind::WebPkiInvalid => ResultType::StsWebpkiInvalid,
            FindingKind::PolicyInvalid => ResultType::StsPolicyInvalid,
        }
    }
}

/// A reason longer than this is cut (at a character boundary): the report carries
/// it once per domain and day, and an error text from a hostile server is unbounded.
pub const REASON_MAX: usize = 200;

impl Finding {
    pub fn new(result: FindingKind, reason: &str) -> Finding {
        let mut end = reason.len().min(REASON_MAX);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        // Control characters would make the report's JSON escape them and a reader's
        // terminal act on them; the text is for people.
        let reason = reason[..end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Finding { result, reason }
    }
}

/// Relabel the `no-policy-found` counts of every domain `finding` knows a failure
/// for (SPEC 8.3); everything else passes unchanged. `finding` is asked once per
/// distinct domain with such counts.
pub fn relabel(counts: Aggregate, finding: impl Fn(&str) -> Option<Finding>) -> Aggregate {
    let mut asked: std::collections::HashMap<String, Option<Finding>> = Default::default();
    let mut out = Aggregate::new();
    for (key, c) in counts.into_entries() {
        if key.policy.policy_type != PolicyType::NoPolicyFound {
            out.insert(key, c);
            continue;
        }
        let known = asked
            .entry(key.domain.clone())
            .or_insert_with(|| finding(&key.domain));
        match known {
            Some(f) => {
                let (key, c) = as_sts(key, c, f);
                out.insert(key, c);
            }
            None => out.insert(key, c),
        }
    }
    out
}

/// One `no-policy-found` entry as the failed `sts` policy it was.
fn as_sts(key: Key, c: Counts, finding: &Finding) -> (Key, Counts) {
    let sessions = c.successful.saturating_add(c.failed);
    let policy = Policy {
        policy_type: PolicyType::Sts,
        domain: key.policy.domain,
        strings: Vec::new(),
        mx_hosts: Vec::new(),
    };
    let detail = FailureDetail {
        result_type: finding.result.result_type(),
        sending_ip: String::new(),
        receiving_mx: format!("mta-sts.{}", policy.domain),
        receiving_helo: String::new(),
        receiving_ip: String::new(),
        additional_info: String::new(),
        reason_code: finding.reason.clone(),
    };
    let mut failures = c.failures;
    let n = failures.entry(detail).or_default();
    *n = n.saturating_add(sessions);
    let key = Key { policy, ..key };
    (
        key,
        Counts {
            successful: 0,
            failed: sessions,
            failures,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::aggregate::Day;
    use crate::tlsrpt::datagram::parse;

    const DAY: Day = Day(20_000);

    fn no_policy(domain: &str, failed: bool) -> Vec<u8> {
        let detail = if failed {
            r#","failure-details":[{"c":205,"s": "192.0.2.1","n": "mx.D","r": "198.51.100.7","f": "tls-handshake-failure"}]"#
                .replace('D', domain)
        } else {
            String::new()
        };
        format!(
            r#"{{"d": "{domain}","pr": "v=TLSRPTv1;rua=https://r.example/","policies":[{{"policy-type":9,"policy-domain": "{domain}"{detail},"t":{f},"f":{f}}}]}}"#,
            f = u8::from(failed)
        )
        .into_bytes()
    }

    fn counts_of(datagrams: &[Vec<u8>]) -> Aggregate {
        let mut a = Aggregate::new();
        for d in datagrams {
            a.add(DAY, parse(d).unwrap());
        }
        a
    }

    fn fetch_failed(domain: &str) -> Option<Finding> {
        (domain == "broken.example").then(|| {
            Finding::new(
                FindingKind::FetchError,
                "stage=http-status policy fetch failed: HTTP status 404",
            )
        })
    }

    #[test]
    fn no_policy_found_of_a_domain_whose_fetch_failed_becomes_a_failed_sts_policy_spec_8_3() {
        let counts = counts_of(&[
            no_policy("broken.example", false),
            no_policy("broken.example", false),
            no_policy("broken.example", true),
        ]);
        let out = relabel(counts, fetch_failed);
        let entries: Vec<_> = out.iter().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let (key, c) = entries[0];
        assert_eq!(key.policy.policy_type, PolicyType::Sts);
        assert_eq!(key.policy.domain, "broken.example");
        assert!(key.policy.strings.is_empty() && key.policy.mx_hosts.is_empty());
        assert_eq!((c.successful, c.failed), (0, 3));
        let mut details: Vec<_> = c
            .failures
            .iter()
            .map(|(d, n)| (d.result_type.as_str(), d.receiving_mx.as_str(), *n))
            .collect();
        details.sort();
        assert_eq!(
            details,
            [
                ("sts-policy-fetch-error", "mta-sts.broken.example", 3),
                ("validation-failure", "mx.broken.example", 1),
            ]
        );
        let reason = c
            .failures
            .keys()
            .find(|d| d.result_type == ResultType::StsPolicyFetchError)
            .map(|d| d.reason_code.as_str());
        assert_eq!(
            reason,
            Some("stage=http-status policy fetch failed: HTTP status 404")
        );
    }

    #[test]
    fn other_domains_and_other_policy_types_pass_unchanged_spec_8_3() {
        let sts = br#"{"d": "broken.example","pr": "v=TLSRPTv1;rua=https://r.example/","policies":[{"policy-type":2,"policy-domain": "broken.example","policy-string":["version: STSv1","mode: testing","mx: mx.broken.example","max_age: 86400"],"mx-host":["mx.broken.example"],"t":0,"f":0}]}"#;
        let counts = counts_of(&[no_policy("fine.example", false), sts.to_vec()]);
        let asked = std::cell::RefCell::new(Vec::new());
        let out = relabel(counts.clone(), |d| {
            asked.borrow_mut().push(d.to_owned());
            fetch_failed(d)
        });
        assert_eq!(out, counts);
        // The sts entry of broken.example is never looked up: only no-policy-found is.
        assert_eq!(asked.into_inner(), ["fine.example"]);
    }

    #[test]
    fn each_kind_maps_to_its_rfc_8460_result_type() {
        for (kind, want) in [
            (FindingKind::FetchError, "sts-policy-fetch-error"),
            (FindingKind::WebPkiInvalid, "sts-webpki-invalid"),
            (FindingKind::PolicyInvalid, "sts-policy-invalid"),
        ] {
            let out = relabel(counts_of(&[no_policy("broken.example", false)]), |_| {
                Some(Finding::new(kind, "why"))
            });
            let (_, c) = out.iter().next().unwrap();
            let got: Vec<_> = c.failures.keys().map(|d| d.result_type.as_str()).collect();
            assert_eq!(got, [want]);
        }
    }

    #[test]
    fn a_hostile_reason_is_cut_and_has_no_control_characters() {
        let long = format!("stage=parse \u{1b}[2J{}", "é".repeat(REASON_MAX));
        let f = Finding::new(FindingKind::PolicyInvalid, &long);
        assert!(f.reason.len() <= REASON_MAX, "{}", f.reason.len());
        assert!(!f.reason.chars().any(char::is_control), "{:?}", f.reason);
        assert!(f.reason.starts_with("stage=parse  [2J"), "{:?}", f.reason);
    }

    #[test]
    fn relabelling_asks_once_per_domain() {
        // Two records seen that day: two entries of the one domain.
        let other_record = String::from_utf8(no_policy("broken.example", true))
            .unwrap()
            .replace("r.example/", "other.example/");
        let counts = counts_of(&[
            no_policy("broken.example", false),
            other_record.into_bytes(),
        ]);
        assert_eq!(counts.iter().count(), 2);
        let calls = std::cell::Cell::new(0);
        relabel(counts, |d| {
            calls.set(calls.get() + 1);
            fetch_failed(d)
        });
        assert_eq!(calls.get(), 1);
    }
}
