//! The report sender as a node of a cluster (SPEC 8.2, 8.4 with 5.10): it pushes
//! this node's totals, and builds a report only under the lease, from every
//! node's counts, keeping it only when its claim holds (`tlsrpt::cluster`).

use super::*;

/// The cluster's part (`cluster.rs`).
impl Sender {
    /// Whether the last [`Sender::push`] reached the shared cache.
    pub fn pushed_ok(&self) -> bool {
        self.pushed_ok
    }

    /// Push this node's counts that changed since the last push that succeeded (all
    /// of today and of the days reports are still built for, after a start or when
    /// Redis lost them), then its heartbeat; the number of (day, domain) values
    /// pushed. Nothing is marked pushed unless all of it went through: a failed
    /// round is repeated whole, with the newer totals.
    pub async fn push(&mut self, now: i64) -> Result<usize, TlsrptStoreError> {
        if self.cluster.is_none() {
            return Ok(0);
        }
        let result = self.push_round(now).await;
        self.pushed_ok = result.is_ok();
        match result {
            Ok(n) => {
                crate::metrics::tlsrpt_push(true);
                Ok(n)
            }
            Err(ClusterRoundError::Store(e)) => {
                crate::metrics::tlsrpt_push(false);
                Err(e)
            }
            Err(ClusterRoundError::Shared(e)) => {
                crate::metrics::tlsrpt_push(false);
                // The shared cache logs its own failures (at most once a minute).
                log::debug!("TLS-RPT: counts not pushed: {e}");
                Ok(0)
            }
        }
    }

    async fn push_round(&mut self, now: i64) -> Result<usize, ClusterRoundError> {
        let Some(c) = self.cluster.as_mut() else {
            return Ok(0);
        };
        if !c.shared.has_heartbeat(&c.node).await? {
            // A first push, or a Redis that lost its data: everything recent again.
            c.pushed = 0;
        }
        // From the oldest day the planner still builds (`plan_cluster_days`): the
        // heartbeat below says every day through yesterday is pushed in full, and
        // a day left out would be reported (SPEC 8.4) by another node without
        // this node's counts.
        let from = Day(Day::from_unix(now - SETTLE_SECS).0 - PLAN_DAYS);
        let (changed, last) = self.store.changed_since(from, c.pushed)?;
        let mut by_day: BTreeMap<Day, Vec<String>> = BTreeMap::new();
        for (day, domain) in changed {
            by_day.entry(day).or_default().push(domain);
        }
        let mut values = Vec::new();
        for (day, domains) in by_day {
            // One read of the day: cheaper than one per domain on a busy node.
            let counts = self.store.counts(day, None)?;
            for domain in domains {
                let value = cluster::encode(&counts, day, &domain);
                values.push((day, domain, value));
            }
        }
        if !values.is_empty() {
            c.shared.push(&c.node, &values).await?;
        }
        let beat = cluster::encode_heartbeat(cluster::heartbeat(now, now));
        c.shared.set_heartbeat(&c.node, &beat).await?;
        c.pushed = last;
        Ok(values.len())
    }

    /// SPEC 8.4 in a cluster: build the reports of the days that ended, each by one
    /// node, from every node's counts; the number built here. Errors are logged: the
    /// next round tries again.
    pub async fn plan_cluster(&mut self, now: i64) -> usize {
        let mut planned = 0;
        match self.plan_cluster_days(now, &mut planned).await {
            Ok(()) => {}
            Err(ClusterRoundError::Store(e)) => log::error!("TLS-RPT: building reports: {e}"),
            Err(ClusterRoundError::Shared(e)) => log::warn!(
                "TLS-RPT: reports wait for the shared cache, never sent from one node's counts alone: {e}"
            ),
        }
        planned
    }

    async fn plan_cluster_days(
        &mut self,
        now: i64,
        planned: &mut usize,
    ) -> Result<(), ClusterRoundError> {
        let Some(c) = self.cluster.as_ref() else {
            return Ok(());
        };
        let (shared, me) = (Arc::clone(&c.shared), c.node.clone());
        let settled = Day::from_unix(now - SETTLE_SECS);
        let oldest = Day(settled.0 - PLAN_DAYS);
        let mut local: BTreeMap<Day, BTreeSet<String>> = BTreeMap::new();
        for (day, domain) in self.store.unreported(settled)? {
            local.entry(day).or_default().insert(domain);
        }
        self.log_lost(&local, oldest);
        let beats = shared.heartbeats().await?;
        for day in (oldest.0..settled.0).map(Day) {
            let mut candidates = local.remove(&day).unwrap_or_default();
            for domain in shared.domains(day).await? {
                if cluster::is_domain(&domain) {
                    candidates.insert(domain);
                } else {
                    crate::metrics::tlsrpt_shared_rejected("invalid");
                }
            }
            let reported = self.store.reported(day)?;
            candidates.retain(|d| !reported.contains(d));
            if candidates.is_empty() {
                continue;
            }
            let (waiting, rejected) = cluster::waiting_for(&me, day, &beats);
            for (node, why) in rejected {
                crate::metrics::tlsrpt_shared_rejected(why);
                log::debug!("TLS-RPT: heartbeat of node {node} ignored ({why})");
            }
            if !waiting.is_empty() && !self.waited(day, now, &waiting, candidates.len()) {
                continue;
            }
            for domain in candidates {
                if self
                    .plan_cluster_one(&*shared, &me, day, &domain, now)
                    .await?
                {
                    *planned += 1;
                }
            }
        }
        Ok(())
    }

    /// Whether `day`'s reports go now although `waiting` have not pushed the day:
    /// only after [`cluster::WAIT_LIMIT`]. Logged once per day.
    fn waited(&mut self, day: Day, now: i64, waiting: &[String], reports: usize) -> bool {
        let limit = day.end_unix() + 1 + cluster::WAIT_LIMIT;
        let give_up = now >= limit;
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        if give_up {
            if c.logged_gave_up.insert(day) {
                log::warn!(
                    "TLS-RPT: {reports} report(s) of {day} built without the counts of node(s) {}, which have not pushed that day for {} h",
                    waiting.join(", "),
                    cluster::WAIT_LIMIT / 3600
                );
            }
        } else if c.logged_wait.insert(day) {
            log::info!(
                "TLS-RPT: {reports} report(s) of {day} wait for the counts of node(s) {} (at most until {} s after the day)",
                waiting.join(", "),
                cluster::WAIT_LIMIT
            );
        }
        give_up
    }

    /// Local counts of days the sender no longer plans that no node reported: say so
    /// once, loudly (the module doc of `cluster.rs`: never a partial report).
    fn log_lost(&mut self, local: &BTreeMap<Day, BTreeSet<String>>, oldest: Day) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        for (day, domains) in local.range(..oldest) {
            if c.logged_lost.insert(*day) {
                log::error!(
                    "TLS-RPT: {} report(s) of {day} were never built: the shared cache was unreachable until the day left the {PLAN_DAYS} days reports are built for",
                    domains.len()
                );
            }
        }
    }

    /// Whether a node claimed (day, domain)'s report; then it is recorded here as
    /// reported elsewhere, never built here.
    async fn sent_elsewhere(
        &mut self,
        shared: &dyn TlsrptCluster,
        day: Day,
        domain: &str,
    ) -> Result<bool, ClusterRoundError> {
        let Some(id) = shared.sent(day, domain).await? else {
            return Ok(false);
        };
        self.store.mark_reported_elsewhere(day, domain, &id)?;
        Ok(true)
    }

    /// One (day, domain): reported elsewhere, or another node's to build, or built
    /// here from the merge and stored only once our claim holds.
    async fn plan_cluster_one(
        &mut self,
        shared: &dyn TlsrptCluster,
        me: &str,
        day: Day,
        domain: &str,
        now: i64,
    ) -> Result<bool, ClusterRoundError> {
        if self.sent_elsewhere(shared, day, domain).await? {
            return Ok(false);
        }
        if !shared.lease(day, domain, me).await? {
            return Ok(false);
        }
        let built = self.build_and_claim(shared, me, day, domain, now).await;
        // The claim decides; the lease only spared the others the work. If this
        // fails the lease runs out by itself.
        let _ = shared.release(day, domain, me).await;
        built
    }

    async fn build_and_claim(
        &mut self,
        shared: &dyn TlsrptCluster,
        me: &str,
        day: Day,
        domain: &str,
        now: i64,
    ) -> Result<bool, ClusterRoundError> {
        // The lease may have come free because its holder just built the report.
        if self.sent_elsewhere(shared, day, domain).await? {
            return Ok(false);
        }
        let values = shared.values(day, domain).await?;
        let local = self.store.counts(day, Some(domain))?;
        let (counts, rejected) = cluster::merge(me, day, domain, local, &values);
        for (node, why) in rejected {
            crate::metrics::tlsrpt_shared_rejected(why);
            log::debug!("TLS-RPT: counts of node {node} for {domain} on {day} ignored ({why})");
        }
        if counts.is_empty() {
            // Listed by a node, with no counts left to read (expired or rejected).
            return Ok(false);
        }
        let record = match self.store.record(day, domain)? {
            Some(r) => Some(r),
            None => cluster::record_of(&counts, day, domain),
        };
        let id = report_id(day, rand::random());
        let report = match self.build_from(day, domain, &id, &counts) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("TLS-RPT: no report for {domain} on {day}: {e}");
                return Ok(false);
            }
        };
        let owner = shared.claim(day, domain, &id).await?;
        if owner != id {
            self.store.mark_reported_elsewhere(day, domain, &owner)?;
            return Ok(false);
        }
        let uris = rua_of(domain, record.as_deref());
        let due = first_due(day, self.settings.delay, rand::random::<f64>(), now);
        self.store_report(day, domain, &id, &report, &uris, now, due)
            .inspect_err(|e| {
                log::error!(
                    "TLS-RPT: report {id} for {domain} on {day} is claimed by this node but could not be stored, and will not be sent: {e}"
                )
            })
            .map_err(Into::into)
    }

    fn build_from(
        &self,
        day: Day,
        domain: &str,
        id: &str,
        counts: &Aggregate,
    ) -> Result<Report, ReportError> {
        report::build(
            self.settings.submitter(),
            id,
            day,
            domain,
            counts,
            self.settings.max_details,
        )
    }
}
