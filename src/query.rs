//! `mtastsd query DOMAIN`: resolve one domain from scratch, with no cache, and say
//! what Postfix would get and why, stage by stage (SPEC 7.1).

use serde::Serialize;

use crate::answer::{Answer, Sources};
use crate::config::Profile;
use crate::dane::{Fallback, Verdict, DANE, DANE_ONLY};
use crate::mta_sts::policy::parse_policy;
use crate::mta_sts::record::{is_sts_record, select_record};
use crate::mta_sts::Policy;
use crate::overrides::Override;
use crate::postfix::policy_answer_for;
use crate::resolver::{policy_url, Resolvers};
use crate::socketmap::{normalise, Key, Normalised};

#[derive(Debug, Serialize)]
pub struct Report {
    /// The key as given.
    pub key: String,
    /// The policy domain after SPEC 1.6 normalisation; absent when the key is skipped.
    pub domain: Option<String>,
    pub txt_name: Option<String>,
    /// Every TXT record found, strings concatenated (SPEC 2.2).
    pub txt_records: Vec<String>,
    /// The id of the one valid STSv1 record.
    pub txt_id: Option<String>,
    pub policy_url: Option<String>,
    pub policy: Option<PolicyReport>,
    /// What Postfix would get from a daemon with an empty cache.
    pub answer: String,
    /// SPEC 6.5: the answer comes from a local override in the configuration;
    /// the MTA-STS lookups above are shown for information only.
    pub overridden: bool,
    /// SPEC 6.4: the DANE check, for a profile with `dane = true`.
    pub dane: Option<String>,
    pub failures: Vec<Failure>,
}

/// What the configuration decides before MTA-STS, found by the caller.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local<'a> {
    /// SPEC 6.5: the domain's override under the profile.
    pub overridden: Option<&'a Override>,
    /// SPEC 6.4: the DANE verdict, when the profile has `dane = true`.
    pub dane: Option<&'a Verdict>,
}

#[derive(Debug, Serialize)]
pub struct PolicyReport {
    pub mode: String,
    pub max_age: u32,
    pub mx: Vec<String>,
    /// The body as served.
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    /// dns / https / tls / http-status / content-type / size / parse
    pub stage: &'static str,
    pub message: String,
}

/// Resolve `key` like the daemon would with an empty cache. The policy is fetched even
/// when the TXT record is missing or broken, to help diagnose a half-done deployment;
/// the answer still follows the rules (no valid record, no policy).
pub async fn query(
    key: &str,
    resolvers: &Resolvers,
    profile: &Profile,
    local: Local<'_>,
    https_port: u16,
) -> Report {
    let mut report = Report {
        key: key.to_string(),
        domain: None,
        txt_name: None,
        txt_records: Vec::new(),
        txt_id: None,
        policy_url: None,
        policy: None,
        answer: "NOTFOUND ".into(),
        overridden: false,
        dane: None,
        failures: Vec::new(),
    };
    let Normalised {
        key: normalised,
        next_hop,
    } = normalise(key);
    let domain = match normalised {
        Key::Domain(d) => d.into_owned(),
        Key::Skip(why) => {
            report.failures.push(Failure {
                stage: "key",
                message: format!("{}: answered NOTFOUND without any lookup", why.as_str()),
            });
            return report;
        }
    };
    let txt_name = format!("_mta-sts.{domain}");
    look_up_txt(&mut report, resolvers, &txt_name).await;
    report.policy_url = Some(policy_url(&domain, https_port));
    let policy = fetch_policy(&mut report, resolvers, &domain).await;
    if let (Some(_), Some(p)) = (&report.txt_id, &policy) {
        if let Some(answer) = policy_answer_for(&domain, p, profile) {
            report.answer = format!("OK {answer}");
        }
    }
    if let Some(v) = local.dane {
        report.dane = Some(if next_hop {
            "not checked for a next hop ([host], host:port)".into()
        } else {
            v.describe()
        });
    }
    let mut found = Found {
        report: &mut report,
        dane: local.dane,
        domain: &domain,
    };
    crate::answer::answer(local.overridden, next_hop, &mut found).await;
    report.domain = Some(domain);
    report.txt_name = Some(txt_name);
    report
}

/// SPEC 2.1-2.5: the TXT records at `txt_name` and the one valid STSv1 record, into
/// `report`.
async fn look_up_txt(report: &mut Report, resolvers: &Resolvers, txt_name: &str) {
    match resolvers.txt.lookup_txt(txt_name).await {
        Ok(records) => {
            report.txt_records = records
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect();
            match select_record(&records) {
                Ok(rec) => report.txt_id = Some(rec.id),
                Err(e) => report.failures.push(Failure {
                    stage: "dns",
                    message: format!(
                        "{e} ({} of {} TXT records start with v=STSv1)",
                        records.iter().filter(|r| is_sts_record(r)).count(),
                        records.len()
                    ),
                }),
            }
        }
        Err(e) => report.failures.push(Failure {
            stage: "dns",
            message: format!("{txt_name}: {e}"),
        }),
    }
}

/// SPEC 3, 4: fetch and parse the policy, into `report`; the policy when it parses.
async fn fetch_policy(report: &mut Report, resolvers: &Resolvers, domain: &str) -> Option<Policy> {
    let mut policy = None;
    match resolvers.fetch.fetch(domain).await {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            match parse_policy(&body) {
                Ok(p) => {
                    report.policy = Some(PolicyReport {
                        mode: p.mode.to_string(),
                        max_age: p.max_age,
                        mx: p.mx.iter().map(ToString::to_string).collect(),
                        text,
                    });
                    policy = Some(p);
                }
                Err(e) => report.failures.push(Failure {
                    stage: "parse",
                    message: format!("sts-policy-invalid: {e}"),
                }),
            }
        }
        Err(e) => report.failures.push(Failure {
            stage: e.stage(),
            message: e.to_string(),
        }),
    }
    policy
}

/// `query`'s sources for [`crate::answer::answer`]: everything was resolved
/// already, for the report; the answer is its text.
struct Found<'a> {
    report: &'a mut Report,
    dane: Option<&'a Verdict>,
    domain: &'a str,
}

impl Sources for Found<'_> {
    async fn dane(&mut self) -> Option<Verdict> {
        self.dane.cloned()
    }

    async fn mta_sts(&mut self) -> bool {
        self.report.answer.starts_with("OK ")
    }

    fn give(&mut self, answer: Answer<'_>) {
        self.report.answer = match answer {
            Answer::Override(o) => {
                self.report.overridden = true;
                o.reply()
            }
            Answer::DaneOnly => format!("OK {DANE_ONLY}"),
            Answer::Fallback(Fallback::Dane) => format!("OK {DANE}"),
            Answer::Fallback(fallback @ Fallback::Temp(_)) => {
                format!("TEMP {}", fallback.reason(self.domain))
            }
        };
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "key       {}", self.key)?;
        if let Some(d) = &self.domain {
            writeln!(f, "domain    {d}")?;
        }
        if let Some(name) = &self.txt_name {
            writeln!(f, "txt       {name}")?;
            for r in &self.txt_records {
                writeln!(f, "            {r:?}")?;
            }
            match &self.txt_id {
                Some(id) => writeln!(f, "          valid STSv1 record, id {id}")?,
                None => writeln!(f, "          no valid STSv1 record")?,
            }
        }
        if let Some(url) = &self.policy_url {
            writeln!(f, "policy    {url}")?;
            match &self.policy {
                Some(p) => {
                    writeln!(f, "          mode {}, max_age {}", p.mode, p.max_age)?;
                    writeln!(f, "          mx {}", p.mx.join(", "))?;
                    if self.txt_id.is_none() {
                        writeln!(
                            f,
                            "          (not used: without a valid TXT record there is no policy)"
                        )?;
                    }
                }
                None => writeln!(f, "          none")?,
            }
        }
        if let Some(d) = &self.dane {
            writeln!(f, "dane      {d}")?;
        }
        writeln!(f, "answer    {}", self.answer)?;
        if self.overridden {
            writeln!(
                f,
                "          local override from the configuration ([overrides]): the daemon answers this without looking at MTA-STS"
            )?;
        }
        if self.failures.is_empty() {
            writeln!(f, "failures  none")?;
        }
        for (i, fail) in self.failures.iter().enumerate() {
            let head = if i == 0 { "failures" } else { "" };
            writeln!(f, "{head:<9} [{}] {}", fail.stage, fail.message)?;
        }
        writeln!(
            f,
            "note      resolved from scratch: a running daemon answers from its cache, which may hold an older policy"
        )
    }
}
