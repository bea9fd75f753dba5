//! The report outbox of the TLS-RPT store (SPEC 8.4): reports built once, one
//! delivery per `rua` URI, and their states (never twice).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;

/// A report to store (SPEC 8.4), with the URIs it goes to.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub day: Day,
    pub domain: &'a str,
    pub report_id: &'a str,
    /// The RFC 8460 §4.4 JSON as built: every delivery sends these bytes.
    pub json: &'a str,
    /// The `rua` URIs; one delivery each (a URI listed twice gets one).
    pub uris: &'a [String],
    /// When the deliveries are first due (unix s): SPEC 8.4's random delay.
    pub due: i64,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub report_id: String,
    pub json: String,
    pub created: i64,
    /// In URI order.
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    pub report_id: String,
    pub uri: String,
}

/// One report's delivery to one URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub day: Day,
    pub domain: String,
    pub uri: String,
    pub state: DeliveryState,
    /// Attempts started ([`TlsrptStore::mark_sending`]).
    pub tries: u32,
    /// When the first attempt started: RFC 8460 §5.5's day of retries counts from it.
    pub first_try: Option<i64>,
    pub next_try: i64,
    pub last_error: Option<String>,
    /// When it was sent (unix s).
    pub sent: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for `next_try`.
    Pending,
    /// An attempt was started and has not ended; after a crash, attempted again.
    Sending,
    Sent,
    /// Given up (a permanent failure, or a day of retries, RFC 8460 §5.5).
    Dropped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sending, Self::Sent, Self::Dropped]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// How long (s) a delivery marked `sending` is held by the process that marked it;
/// after that (a crash, a hung attempt) any process may take it again. Longer than
/// any attempt: `tlsrpt.http_timeout` is at most 10 minutes, sendmail's deadline 1.
pub const SENDING_LEASE: i64 = 1800;

impl TlsrptStore {
    /// Store a built report and one delivery row per URI, due at `due` (unix s), in one
    /// transaction; `Ok(false)` when (day, domain) already has a report (never twice,
    /// SPEC 8.4), and nothing is changed then.
    pub fn put_report(&mut self, r: &NewReport<'_>) -> Result<bool, TlsrptStoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<bool> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Only (day, domain) may conflict quietly: a report id used twice is a bug,
            // an error.
            let n = tx.execute(
                "INSERT INTO report(id, day, domain, json, created) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(day, domain) DO NOTHING",
                params![r.report_id, r.day.0, r.domain, r.json, r.created],
            )?;
            if n == 0 {
                return Ok(false);
            }
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO delivery(report, uri, state, next_try) \
                     VALUES (?1, ?2, 'pending', ?3) ON CONFLICT DO NOTHING",
                )?;
                for uri in r.uris {
                    ins.execute(params![r.report_id, uri, r.due])?;
                }
            }
            tx.commit()?;
            Ok(true)
        };
        run(&mut self.conn).map_err(|e| self.sql(e))
    }

    pub fn report(&self, day: Day, domain: &str) -> Result<Option<StoredReport>, TlsrptStoreError> {
        let run = || -> Result<Option<StoredReport>, ReadError> {
            let head = self
                .conn
                .prepare_cached(sql::REPORT)?
                .query_row(params![day.0, domain], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((report_id, json, created)) = head else {
                return Ok(None);
            };
            let mut stmt = self.conn.prepare_cached(sql::DELIVERIES_OF_REPORT)?;
            let mut rows = stmt.query([&report_id])?;
            let mut deliveries = Vec::new();
            while let Some(row) = rows.next()? {
                deliveries.push(delivery(row)?);
            }
            Ok(Some(StoredReport {
                report_id,
                json,
                created,
                deliveries,
            }))
        };
        run().map_err(|e| self.read_error(e))
    }

    fn read_error(&self, e: ReadError) -> TlsrptStoreError {
        match e {
            ReadError::Sql(e) => self.sql(e),
            ReadError::Damaged(why) => self.damaged(why),
        }
    }

    /// Deliveries due at `now` (pending, or `sending` left by a crash, with
    /// `next_try <= now`), oldest first, at most `limit`. Those this store has marked
    /// `sending` itself and not yet finished are left out: their attempt is running.
    pub fn due(&self, now: i64, limit: usize) -> Result<Vec<Delivery>, TlsrptStoreError> {
        let run = || -> Result<Vec<Delivery>, ReadError> {
            let fetch = limit.saturating_add(self.in_flight.len());
            let mut stmt = self.conn.prepare_cached(sql::DUE)?;
            let mut rows = stmt.query(params![now, i64::try_from(fetch).unwrap_or(i64::MAX)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let d = delivery(row)?;
                if !self.in_flight.contains(&d.id) {
                    out.push(d);
                }
            }
            out.truncate(limit);
            Ok(out)
        };
        run().map_err(|e| self.read_error(e))
    }

    /// Committed BEFORE an attempt: a crash mid-attempt leaves `sending`, which `due`
    /// returns again after a restart (one resend per crash, with the same report-id:
    /// exactly once cannot survive a crash between the send and this record of it).
    ///
    /// The mark holds the delivery for [`SENDING_LEASE`] (its `next_try`): another
    /// process on the same file (`mtastsd tlsrpt send` beside the daemon) cannot
    /// take it while the attempt may still be running, only after the lease ran out.
    pub fn mark_sending(&mut self, d: &DeliveryId, now: i64) -> Result<(), TlsrptStoreError> {
        if self.in_flight.contains(d) {
            return Err(self.state(d, "marked sending", "its attempt is already running"));
        }
        self.transition(
            d,
            "UPDATE delivery SET state = 'sending', tries = tries + 1, \
             first_try = coalesce(first_try, ?3), next_try = ?3 + ?4 \
             WHERE report = ?1 AND uri = ?2 \
             AND (state = 'pending' OR (state = 'sending' AND next_try <= ?3))",
            params![d.report_id, d.uri, now, SENDING_LEASE],
            (
                "marked sending",
                "it is sent, dropped, being sent by another process, or unknown",
            ),
        )?;
        self.in_flight.insert(d.clone());
        Ok(())
    }

    pub fn mark_sent(&mut self, d: &DeliveryId, now: i64) -> Result<(), TlsrptStoreError> {
        self.transition(
            d,
            "UPDATE delivery SET state = 'sent', sent = ?3, last_error = NULL \
             WHERE report = ?1 AND uri = ?2 AND state = 'sending'",
            params![d.report_id, d.uri, now],
            ("marked sent", "it was not marked sending"),
        )?;
        self.in_flight.remove(d);
        Ok(())
    }

    pub fn mark_retry(
        &mut self,
        d: &DeliveryId,
        next_try: i64,
        error: &str,
    ) -> Result<(), TlsrptStoreError> {
        self.transition(
            d,
            "UPDATE delivery SET state = 'pending', next_try = ?3, last_error = ?4 \
             WHERE report = ?1 AND uri = ?2 AND state = 'sending'",
            params![d.report_id, d.uri, next_try, error],
            ("retried", "it was not marked sending"),
        )?;
        self.in_flight.remove(d);
        Ok(())
    }

    pub fn mark_dropped(&mut self, d: &DeliveryId, error: &str) -> Result<(), TlsrptStoreError> {
        self.transition(
            d,
            "UPDATE delivery SET state = 'dropped', last_error = ?3 \
             WHERE report = ?1 AND uri = ?2 AND state IN ('pending', 'sending')",
            params![d.report_id, d.uri, error],
            ("dropped", "it is sent, dropped, or unknown"),
        )?;
        self.in_flight.remove(d);
        Ok(())
    }

    fn transition(
        &mut self,
        d: &DeliveryId,
        sql: &str,
        p: &[&dyn rusqlite::ToSql],
        (action, reason): (&'static str, &'static str),
    ) -> Result<(), TlsrptStoreError> {
        let n = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(p))
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(self.state(d, action, reason));
        }
        Ok(())
    }

    fn state(
        &self,
        d: &DeliveryId,
        action: &'static str,
        reason: &'static str,
    ) -> TlsrptStoreError {
        TlsrptStoreError::State {
            path: self.path.clone(),
            report_id: d.report_id.clone(),
            uri: d.uri.clone(),
            action,
            reason,
        }
    }

    /// Age in s of the oldest report with a delivery neither sent nor dropped (metrics).
    pub fn oldest_unsent(&self, now: i64) -> Result<Option<i64>, TlsrptStoreError> {
        self.conn
            .prepare_cached(sql::OLDEST_UNSENT)
            .and_then(|mut s| s.query_row([], |r| r.get::<_, Option<i64>>(0)))
            .map(|created| created.map(|c| now.saturating_sub(c).max(0)))
            .map_err(|e| self.sql(e))
    }
}

fn delivery(r: &rusqlite::Row<'_>) -> Result<Delivery, ReadError> {
    let report_id: String = r.get(0)?;
    let uri: String = r.get(1)?;
    let state = r.get_ref(4)?.as_str()?;
    let state = DeliveryState::parse(state)
        .ok_or_else(|| ReadError::Damaged(format!("delivery state {state:?}")))?;
    Ok(Delivery {
        id: DeliveryId {
            report_id,
            uri: uri.clone(),
        },
        day: Day(r.get(2)?),
        domain: r.get(3)?,
        uri,
        state,
        tries: r.get(5)?,
        first_try: r.get(6)?,
        next_try: r.get(7)?,
        last_error: r.get(8)?,
        sent: r.get(9)?,
    })
}
