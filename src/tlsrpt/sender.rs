//! The report sender of SPEC 8.4 (edge: the store, the network, sendmail): after a
//! UTC day ends, each (day, domain) with counts gets one report, built once and kept
//! in the store with one delivery per `rua` URI, due at a random time within the
//! configured spread; due deliveries are attempted, retried with back-off for at
//! most a day (RFC 8460 §5.5), then dropped and logged. A delivery is marked
//! `sending` before its attempt and `sent` after it, so a report is never sent twice
//! to a URI, except once after a crash in the middle of an attempt (with the same
//! report-id, which receivers deduplicate on).
//!
//! It runs on its own thread with its own store connection (SQLite's WAL lets the
//! collector's writer commit meanwhile) and a current-thread runtime for the HTTPS
//! client and sendmail: nothing here shares a thread with the socketmap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::aggregate::Day;
use super::deliver::{self, Destination, Outcome};
use super::mail::{self, MailParts};
use super::report::{self, Report, ReportError, Submitter};
use super::store::{Delivery, DeliveryState, NewReport, TlsrptStore, TlsrptStoreError};

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsrptError {
    #[error(transparent)]
    Store(#[from] TlsrptStoreError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What the sender needs of `[tlsrpt]` (the daemon fills it from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `[tlsrpt] send`: false builds and sends nothing (`mtastsd tlsrpt report`
    /// shows what would be sent); old days are pruned either way (SPEC 8.6).
    pub send: bool,
    pub organization_name: String,
    pub contact_info: String,
    /// The submitter domain (RFC 8460 §5.3).
    pub submitter: String,
    /// The sender address of `mailto:` reports.
    pub from: String,
    pub sendmail: Vec<String>,
    /// SPEC 8.4: each report is first due at a random time in this span after its
    /// day ends.
    pub delay: Duration,
    /// SPEC 8.6.
    pub max_details: usize,
    pub keep_days: u32,
    pub http_timeout: Duration,
    /// The deadline of one sendmail run.
    pub sendmail_timeout: Duration,
}

impl Settings {
    fn submitter(&self) -> Submitter<'_> {
        Submitter {
            organization_name: &self.organization_name,
            contact_info: &self.contact_info,
            domain: &self.submitter,
        }
    }
}

/// Reports are planned for the days since this many days ago: after an outage the
/// recent days are still reported, but enabling `send` does not mail out weeks of
/// previews at once (their counts stay for `mtastsd tlsrpt show`).
pub const PLAN_DAYS: i64 = 2;

/// Commits after each day ends before its report is built: the collector's last
/// commit of the day lands within a second or two; a minute leaves room.
pub const SETTLE_SECS: i64 = 60;

/// A report-id (RFC 8460 §4.4: unique): the day and 64 random bits, letters, digits
/// and one dot, so it is also a valid msg-id left part and file name unique-id
/// (SPEC 8.4).
pub fn report_id(day: Day, random: u64) -> String {
    let (y, m, d) = day.ymd();
    format!("{y:04}{m:02}{d:02}.{random:016x}")
}

/// When a report of `day` is first due: after the day and [`SETTLE_SECS`], plus a
/// random part of `spread` (`fraction` in [0, 1)); never before `now`.
pub fn first_due(day: Day, spread: Duration, fraction: f64, now: i64) -> i64 {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let offset = (spread.as_secs() as f64 * fraction) as i64;
    (day.end_unix() + 1 + SETTLE_SECS + offset).max(now)
}

/// The report sender: one store connection, one HTTPS client.
pub struct Sender {
    store: TlsrptStore,
    client: reqwest::Client,
    settings: Settings,
}

/// What one round did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub planned: usize,
    pub sent: usize,
    pub retried: usize,
    pub dropped: usize,
}

impl Sender {
    pub fn new(store: TlsrptStore, client: reqwest::Client, settings: Settings) -> Sender {
        Sender {
            store,
            client,
            settings,
        }
    }

    /// Open the store at `path` for a sender.
    pub fn open(
        path: &std::path::Path,
        client: reqwest::Client,
        settings: Settings,
    ) -> Result<Sender, TlsrptStoreError> {
        Ok(Sender::new(TlsrptStore::open(path)?, client, settings))
    }

    pub fn store(&self) -> &TlsrptStore {
        &self.store
    }

    /// Build and store the reports of the days that ended (SPEC 8.4), at most
    /// [`PLAN_DAYS`] back; the number stored.
    pub fn plan(&mut self, now: i64) -> Result<usize, TlsrptStoreError> {
        let settled = Day::from_unix(now - SETTLE_SECS);
        let oldest = Day(settled.0 - PLAN_DAYS);
        let mut planned = 0;
        for (day, domain) in self.store.unreported(settled)? {
            if day < oldest {
                continue;
            }
            let due = first_due(day, self.settings.delay, rand::random::<f64>(), now);
            if self.plan_one(day, &domain, now, due)? {
                planned += 1;
            }
        }
        Ok(planned)
    }

    /// Build (day, domain)'s report, the same way the daemon and `mtastsd tlsrpt
    /// report` do.
    pub fn build(&self, day: Day, domain: &str, id: &str) -> Result<Report, TlsrptError> {
        let counts = self.store.counts(day, Some(domain))?;
        Ok(report::build(
            self.settings.submitter(),
            id,
            day,
            domain,
            &counts,
            self.settings.max_details,
        )?)
    }

    fn plan_one(
        &mut self,
        day: Day,
        domain: &str,
        now: i64,
        due: i64,
    ) -> Result<bool, TlsrptStoreError> {
        let id = report_id(day, rand::random());
        let report = match self.build(day, domain, &id) {
            Err(TlsrptError::Store(e)) => return Err(e),
            Ok(r) => r,
            Err(TlsrptError::Report(e)) => {
                log::warn!("TLS-RPT: no report for {domain} on {day}: {e}");
                return Ok(false);
            }
        };
        let uris = self.rua(day, domain)?;
        if uris.is_empty() {
            log::warn!(
                "TLS-RPT: {domain} on {day}: its _smtp._tls record names no mailto: or https: address; the report is kept, not sent"
            );
        }
        let json = report.to_json();
        // SPEC 8.4: validated against RFC 8460 §4.4 before it is stored to be sent.
        let checked = serde_json::from_str(&json)
            .map_err(|e| e.to_string())
            .and_then(|v| report::validate(&v));
        if let Err(e) = checked {
            log::error!("TLS-RPT: the report for {domain} on {day} is not sent: {e}");
            return Ok(false);
        }
        let stored = self.store.put_report(&NewReport {
            day,
            domain,
            report_id: &id,
            json: &json,
            uris: &uris,
            due,
            created: now,
        })?;
        if stored {
            log::info!(
                "TLS-RPT: report {id} for {domain} on {day} to {} address(es), due in {} s",
                uris.len(),
                due - now
            );
        }
        Ok(stored)
    }

    /// The `rua` URIs of the record the day's sessions saw last (SPEC 8.4).
    pub fn rua(&self, day: Day, domain: &str) -> Result<Vec<String>, TlsrptStoreError> {
        let Some(text) = self.store.record(day, domain)? else {
            return Ok(Vec::new());
        };
        Ok(match super::record::parse_record(text.as_bytes()) {
            Ok(record) => record.rua,
            Err(e) => {
                log::warn!("TLS-RPT: {domain}: its record as Postfix saw it: {e}");
                Vec::new()
            }
        })
    }

    /// Attempt the deliveries due at `now`, one after another (reports are few: one
    /// per domain and day).
    pub async fn deliver_due(&mut self, now: i64) -> Result<Round, TlsrptStoreError> {
        let mut round = Round::default();
        for d in self.store.due(now, 100)? {
            match self.deliver_one(&d, now).await? {
                Fate::Sent => round.sent += 1,
                Fate::Retried => round.retried += 1,
                Fate::Dropped => round.dropped += 1,
            }
        }
        Ok(round)
    }

    /// One attempt, and what became of the delivery.
    async fn deliver_one(&mut self, d: &Delivery, now: i64) -> Result<Fate, TlsrptStoreError> {
        let Some(stored) = self.store.report(d.day, &d.domain)? else {
            self.store.mark_dropped(&d.id, "the report is gone")?;
            return Ok(Fate::Dropped);
        };
        let gz = deliver::gzip(&stored.json);
        let destination = super::record::TlsRpt {
            rua: vec![d.uri.clone()],
        }
        .destinations()
        .pop();
        self.store.mark_sending(&d.id, now)?;
        let outcome = match destination {
            Some(Destination::Https(url)) => {
                deliver::post_https(&self.client, &url, gz, self.settings.http_timeout).await
            }
            Some(Destination::Mailto(to)) => self.mail(d, &stored.report_id, &to, &gz, now).await,
            None => Outcome::Failed("not a mailto: or https: URI".into()),
        };
        self.record_outcome(d, now, &outcome)
    }

    async fn mail(&self, d: &Delivery, report_id: &str, to: &str, gz: &[u8], now: i64) -> Outcome {
        let s = &self.settings;
        let file_name = match report::file_name(&s.submitter, &d.domain, d.day, report_id) {
            Ok(f) => f,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let message_id = format!("{report_id}@{}", s.submitter);
        let date = mail::rfc5322_date(now);
        let parts = MailParts {
            from: &s.from,
            to,
            domain: &d.domain,
            submitter: &s.submitter,
            report_id,
            file_name: &file_name,
            organization_name: &s.organization_name,
            date: &date,
            message_id: &message_id,
            gz,
        };
        match mail::message(&parts) {
            Ok(message) => {
                deliver::sendmail(&s.sendmail, &s.from, to, &message, s.sendmail_timeout).await
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn record_outcome(
        &mut self,
        d: &Delivery,
        now: i64,
        outcome: &Outcome,
    ) -> Result<Fate, TlsrptStoreError> {
        let what = format!("TLS-RPT: report for {} on {} to {}", d.domain, d.day, d.uri);
        match outcome {
            Outcome::Sent => {
                crate::metrics::tlsrpt_report(transport(&d.uri), "sent");
                log::info!("{what}: sent");
                self.store.mark_sent(&d.id, now).map(|()| Fate::Sent)
            }
            Outcome::Retry(why) => {
                let first = d.first_try.unwrap_or(now);
                match deliver::next_try(d.tries + 1, first, now, rand::random::<f64>()) {
                    Some(next) => {
                        crate::metrics::tlsrpt_report(transport(&d.uri), "retry");
                        log::warn!("{what}: {why}; trying again in {} s", next - now);
                        self.store
                            .mark_retry(&d.id, next, why)
                            .map(|()| Fate::Retried)
                    }
                    None => {
                        crate::metrics::tlsrpt_report(transport(&d.uri), "dropped");
                        log::warn!("{what}: {why}; given up after a day of retries");
                        self.store.mark_dropped(&d.id, why).map(|()| Fate::Dropped)
                    }
                }
            }
            Outcome::Failed(why) => {
                crate::metrics::tlsrpt_report(transport(&d.uri), "dropped");
                log::warn!("{what}: {why}; not retried");
                self.store.mark_dropped(&d.id, why).map(|()| Fate::Dropped)
            }
        }
    }

    /// `mtastsd tlsrpt send`: build the reports of `day` that are not built yet, due
    /// at once; the domains of the day.
    pub fn plan_day(&mut self, day: Day, now: i64) -> Result<Vec<String>, TlsrptStoreError> {
        let counts = self.store.counts(day, None)?;
        let domains: Vec<String> = counts
            .reports()
            .into_iter()
            .map(|(_, d)| d.to_owned())
            .collect();
        for domain in &domains {
            if self.store.report(day, domain)?.is_none() {
                self.plan_one(day, domain, now, now)?;
            }
        }
        Ok(domains)
    }

    /// `mtastsd tlsrpt send`: attempt every delivery of `day`'s reports that is
    /// neither sent nor given up, whenever it was due; (domain, URI, what became of
    /// it) each. The same marks as the daemon's rounds, so nothing is sent twice.
    pub async fn send_day(
        &mut self,
        day: Day,
        now: i64,
    ) -> Result<Vec<(String, String, &'static str)>, TlsrptStoreError> {
        let mut out = Vec::new();
        for domain in self.plan_day(day, now)? {
            let Some(stored) = self.store.report(day, &domain)? else {
                continue;
            };
            for d in stored.deliveries {
                if matches!(d.state, DeliveryState::Sent | DeliveryState::Dropped) {
                    continue;
                }
                let fate = match self.deliver_one(&d, now).await? {
                    Fate::Sent => "sent",
                    Fate::Retried => "failed, retried later",
                    Fate::Dropped => "failed, given up",
                };
                out.push((domain.clone(), d.uri.clone(), fate));
            }
        }
        Ok(out)
    }

    /// SPEC 8.6: forget the days older than `keep_days`.
    pub fn prune(&mut self, now: i64) -> Result<usize, TlsrptStoreError> {
        let keep_from = Day(Day::from_unix(now).0 - i64::from(self.settings.keep_days));
        self.store.prune(keep_from)
    }

    /// One round: plan, deliver (when sending), prune; errors logged (the next round
    /// tries again).
    pub async fn round(&mut self, now: i64) -> Round {
        let mut round = Round::default();
        if self.settings.send {
            self.send_round(now, &mut round).await;
        }
        if let Err(e) = self.prune(now) {
            log::error!("TLS-RPT: deleting old data: {e}");
        }
        if let Ok(age) = self.store.oldest_unsent(now) {
            crate::metrics::tlsrpt_oldest_unsent(age.unwrap_or(0));
        }
        round
    }

    async fn send_round(&mut self, now: i64, round: &mut Round) {
        match self.plan(now) {
            Ok(n) => round.planned = n,
            Err(e) => log::error!("TLS-RPT: building reports: {e}"),
        }
        match self.deliver_due(now).await {
            Ok(r) => {
                round.sent = r.sent;
                round.retried = r.retried;
                round.dropped = r.dropped;
            }
            Err(e) => log::error!("TLS-RPT: sending reports: {e}"),
        }
    }
}

/// What became of a delivery after an attempt.
enum Fate {
    Sent,
    Retried,
    Dropped,
}

fn transport(uri: &str) -> &'static str {
    if uri
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"))
    {
        "mailto"
    } else {
        "https"
    }
}

/// How often the sender looks for due work.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(60);

/// The sender's running thread.
pub struct SenderThread {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SenderThread {
    /// Stop after the round in progress (an attempt in flight ends within its
    /// deadline; a delivery cut short resumes after a restart) and wait for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// The sender's thread: a round every [`ROUND_INTERVAL`] until stopped.
pub fn spawn(mut sender: Sender) -> std::io::Result<SenderThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("tlsrpt-sender".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("TLS-RPT: no runtime for the report sender: {e}");
                    return;
                }
            };
            while !stopped.load(Ordering::Relaxed) {
                rt.block_on(sender.round(unix_now()));
                // Sleep in short steps so that a stop is prompt.
                let mut slept = Duration::ZERO;
                while slept < ROUND_INTERVAL && !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    slept += Duration::from_millis(200);
                }
            }
        })?;
    Ok(SenderThread { stop, thread })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The store file under `state_dir` (SPEC 8.2).
pub fn store_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("tlsrpt.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ids_are_dot_atoms_unique_per_random_part() {
        let day = Day::parse("2026-12-01").unwrap();
        let id = report_id(day, 0xdead_beef);
        assert_eq!(id, "20261201.00000000deadbeef");
        assert_ne!(id, report_id(day, 0xdead_bee0));
        // Accepted by the report and the file name (SPEC 8.4).
        assert!(report::file_name("sub.example", "d.example", day, &id).is_ok());
        assert!(report::subject("sub.example", "d.example", &id).is_ok());
    }

    #[test]
    fn a_report_is_first_due_after_its_day_within_the_spread_spec_8_4() {
        let day = Day::parse("2026-12-01").unwrap();
        let spread = Duration::from_secs(4 * 3600);
        let end = day.end_unix() + 1;
        assert_eq!(first_due(day, spread, 0.0, 0), end + SETTLE_SECS);
        assert_eq!(first_due(day, spread, 0.5, 0), end + SETTLE_SECS + 2 * 3600);
        let last = first_due(day, spread, 0.999_999, 0);
        assert!(last < end + SETTLE_SECS + 4 * 3600, "{last}");
        // Out-of-range randomness stays in range; a late start is due at once.
        assert_eq!(first_due(day, spread, f64::NAN, 0), end + SETTLE_SECS);
        assert_eq!(first_due(day, spread, 7.0, 0), end + SETTLE_SECS + 4 * 3600);
        assert_eq!(first_due(day, spread, 0.5, end + 86_400), end + 86_400);
    }
}
