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
//!
//! In a cluster ([`Sender::join`], `cluster.rs` has the design) the same thread
//! pushes this node's counts every [`cluster::PUSH_INTERVAL`], and a report is
//! built only by the node holding its lease, from every node's counts, and stored
//! and delivered only when its claim on Redis succeeded; without Redis nothing is
//! built. Pushing does not depend on `send`: a collect-only node still gives its
//! counts to the node that reports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::aggregate::{Aggregate, Day};
use super::cluster::{self, SharedError, TlsrptCluster};
use super::deliver::{self, Destination, Outcome};
use super::mail::{self, MailParts};
use super::report::{self, Report, ReportError, Submitter};
use super::store::{Delivery, DeliveryState, NewReport, TlsrptStore, TlsrptStoreError};

mod clustered;
#[cfg(test)]
mod tests;

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

/// Time after each day ends before its report is built: the collector's last
/// commit of the day lands within a second or two, but a store that failed for a
/// while across midnight catches up later (its counts are kept and retried); ten
/// minutes leave room, and reports wait hours for their random delay anyway.
pub const SETTLE_SECS: i64 = 600;

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
    /// Set by [`Sender::join`] with `cache.backend = "redis"`.
    cluster: Option<Clustered>,
    /// Set by [`Sender::build_none`]: a cluster's node without its Redis.
    build_none: bool,
    /// Reports that failed RFC 8460 §4.4's check (logged once each).
    refused: HashSet<(Day, String)>,
    /// Set when the daemon stops: no further attempt starts.
    stopping: Option<Arc<AtomicBool>>,
    /// The last push to the cluster went through.
    pushed_ok: bool,
}

/// A node's part in the cluster's reports (`cluster.rs`).
struct Clustered {
    shared: Arc<dyn TlsrptCluster>,
    /// This store's node id.
    node: String,
    /// The store's `seen` as of the last push round that succeeded; 0 pushes every
    /// count of the days reports are still built for, and of today.
    pushed: i64,
    /// Days whose wait for other nodes, the end of that wait, or whose loss, was
    /// logged (once each).
    logged_wait: HashSet<Day>,
    logged_gave_up: HashSet<Day>,
    logged_lost: HashSet<Day>,
}

/// Why a cluster round stopped.
#[derive(Debug, thiserror::Error)]
enum ClusterRoundError {
    #[error(transparent)]
    Store(#[from] TlsrptStoreError),
    #[error(transparent)]
    Shared(#[from] SharedError),
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
            cluster: None,
            build_none: false,
            refused: HashSet::new(),
            stopping: None,
            pushed_ok: false,
        }
    }

    /// A node of a cluster that is not joined (`mtastsd tlsrpt send`): only the
    /// daemon builds a cluster's reports, under the lease and the claim; here the
    /// reports already built are sent, and none is built.
    pub fn build_none(&mut self) {
        self.build_none = true;
    }

    /// Report as a node of a cluster (see the module doc): from now on a report is
    /// built only under the lease and the claim on `shared`.
    pub fn join(&mut self, shared: Arc<dyn TlsrptCluster>) -> Result<(), TlsrptStoreError> {
        let node = self.store.node_id()?;
        log::info!("TLS-RPT: reporting for the cluster as node {node}");
        self.cluster = Some(Clustered {
            shared,
            node,
            pushed: 0,
            logged_wait: HashSet::new(),
            logged_gave_up: HashSet::new(),
            logged_lost: HashSet::new(),
        });
        Ok(())
    }

    /// This node's id in the cluster, once joined.
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.node.as_str())
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
    /// [`PLAN_DAYS`] back; the number stored. A single node's: once joined to a
    /// cluster nothing is built here, see [`Sender::plan_cluster`].
    pub fn plan(&mut self, now: i64) -> Result<usize, TlsrptStoreError> {
        if self.cluster.is_some() {
            return Ok(0);
        }
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
        self.store_report(day, domain, &id, &report, &uris, now, due)
    }

    /// Keep a built report with one delivery per URI (SPEC 8.4).
    #[allow(clippy::too_many_arguments)]
    fn store_report(
        &mut self,
        day: Day,
        domain: &str,
        id: &str,
        report: &Report,
        uris: &[String],
        now: i64,
        due: i64,
    ) -> Result<bool, TlsrptStoreError> {
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
            // Logged once: the next rounds would build the same report again.
            if self.refused.insert((day, domain.to_owned())) {
                log::error!("TLS-RPT: the report for {domain} on {day} is not sent: {e}");
            }
            return Ok(false);
        }
        let stored = self.store.put_report(&NewReport {
            day,
            domain,
            report_id: id,
            json: &json,
            uris,
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
        Ok(rua_of(domain, self.store.record(day, domain)?.as_deref()))
    }

    /// Attempt the deliveries due at `now`, one after another (reports are few: one
    /// per domain and day).
    pub async fn deliver_due(&mut self, now: i64) -> Result<Round, TlsrptStoreError> {
        let mut round = Round::default();
        for d in self.store.due(now, 100)? {
            if self
                .stopping
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                break;
            }
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
        // In a cluster, reports are built by the daemons under the lease and the
        // claim (`cluster.rs`): one built here from this node's counts alone could
        // be a second report of the day. Those already built are still sent.
        for domain in &domains {
            if self.cluster.is_none()
                && !self.build_none
                && self.store.report(day, domain)?.is_none()
                && self.store.reported_elsewhere(day, domain)?.is_none()
            {
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
        if self.cluster.is_some() {
            round.planned = self.plan_cluster(now).await;
        } else {
            match self.plan(now) {
                Ok(n) => round.planned = n,
                Err(e) => log::error!("TLS-RPT: building reports: {e}"),
            }
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

/// The runtime-bound half of joining a cluster: connecting to Redis happens on the
/// sender's own thread and runtime (its connection's tasks run there, never on the
/// socketmap's thread). `None` when it cannot be used; the sender then builds no
/// report at all rather than a single node's.
pub type Connect = Box<dyn FnOnce() -> BoxFuture<'static, Option<Arc<dyn TlsrptCluster>>> + Send>;

/// The `rua` URIs of a `_smtp._tls` record text (none for a record that does not parse).
/// The `rua` URIs a report goes to: at most this many. RFC 8460 sets no limit, but
/// each is an attempt (with retries) of the sender's, and a record that lists
/// hundreds would hold every other domain's reports up.
pub const MAX_RUA: usize = 5;

fn rua_of(domain: &str, record: Option<&str>) -> Vec<String> {
    let Some(text) = record else {
        return Vec::new();
    };
    match super::record::parse_record(text.as_bytes()) {
        Ok(mut record) => {
            if record.rua.len() > MAX_RUA {
                log::warn!(
                    "TLS-RPT: {domain}: its record lists {} report addresses; the first {MAX_RUA} get the report",
                    record.rua.len()
                );
                record.rua.truncate(MAX_RUA);
            }
            record.rua
        }
        Err(e) => {
            log::warn!("TLS-RPT: {domain}: its record as Postfix saw it: {e}");
            Vec::new()
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
    /// Stop: no attempt starts after this; one in flight is waited for up to
    /// `wait` (its delivery stays marked `sending` otherwise, and is taken again
    /// after [`super::store::SENDING_LEASE`] by the next start: at most a resend with
    /// the same report-id, never a lost report).
    pub fn stop(self, wait: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let until = Instant::now() + wait;
        while !self.thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            log::warn!("TLS-RPT: a report delivery was still running at stop; it is attempted again after a restart");
        }
    }
}

/// The sender's thread: a round every [`ROUND_INTERVAL`] until stopped.
pub fn spawn(sender: Sender) -> std::io::Result<SenderThread> {
    spawn_with(sender, None)
}

/// [`spawn`], as a node of a cluster: it first joins through `connect`, then pushes
/// every [`cluster::PUSH_INTERVAL`] beside its rounds.
pub fn spawn_clustered(sender: Sender, connect: Connect) -> std::io::Result<SenderThread> {
    spawn_with(sender, Some(connect))
}

fn spawn_with(mut sender: Sender, connect: Option<Connect>) -> std::io::Result<SenderThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    sender.stopping = Some(Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("tlsrpt-sender".into())
        .spawn(move || {
            crate::sys::lower_priority(crate::sys::BACKGROUND_NICE);
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
            let clustered = connect.is_some();
            if let Some(connect) = connect {
                let joined = match rt.block_on(connect()) {
                    Some(shared) => sender.join(shared).map_err(|e| e.to_string()),
                    None => Err("the shared cache cannot be used".to_owned()),
                };
                if let Err(e) = joined {
                    // Never a single node's report in a cluster: it could double
                    // another node's.
                    log::error!("TLS-RPT: cannot report for the cluster ({e}); no report is built, old days are still pruned");
                    sender.settings.send = false;
                }
            }
            let push_every = if clustered && sender.cluster.is_some() {
                cluster::PUSH_INTERVAL
            } else {
                Duration::MAX
            };
            let mut last_round: Option<Instant> = None;
            let mut last_push: Option<Instant> = None;
            // In a cluster, rounds (which plan reports) wait until pushes have gone
            // through for two push intervals without a failure, after the start and
            // after each outage: by then every live node has pushed its counts too,
            // so a report is not built without them (SPEC 8.2: never a lost count).
            let mut pushing_since: Option<Instant> = None;
            while !stopped.load(Ordering::Relaxed) {
                if last_push.is_none_or(|t| t.elapsed() >= push_every) {
                    last_push = Some(Instant::now());
                    match rt.block_on(sender.push(unix_now())) {
                        Ok(_) if sender.pushed_ok() => {
                            pushing_since.get_or_insert_with(Instant::now);
                        }
                        Ok(_) => pushing_since = None,
                        Err(e) => {
                            pushing_since = None;
                            log::error!("TLS-RPT: reading the counts to push: {e}");
                        }
                    }
                }
                let settled = sender.cluster.is_none()
                    || pushing_since.is_some_and(|t| t.elapsed() >= 2 * push_every);
                if settled && last_round.is_none_or(|t| t.elapsed() >= ROUND_INTERVAL) {
                    last_round = Some(Instant::now());
                    rt.block_on(sender.round(unix_now()));
                }
                // Sleep in short steps so that a stop is prompt.
                std::thread::sleep(Duration::from_millis(200));
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
