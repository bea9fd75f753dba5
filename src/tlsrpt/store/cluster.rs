//! The TLS-RPT store's part in a cluster (SPEC 8.2, 8.4 with 5.10): this node's id,
//! what changed since the last push, and reports another node sent.

use super::*;

impl TlsrptStore {
    /// This store's id in a cluster (`tlsrpt/cluster.rs`), made once: random, after
    /// the host's name for the reader of a log. It belongs to the counts in this
    /// file: a restart keeps it, a new file gets a new one.
    pub fn node_id(&mut self) -> Result<String, TlsrptStoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<String> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = tx
                .query_row("SELECT id FROM node LIMIT 1", [], |r| r.get::<_, String>(0))
                .optional()?;
            let id = match id {
                Some(id) => id,
                None => {
                    let id = format!("{}/{:016x}", host_name(), rand::random::<u64>());
                    tx.execute("INSERT INTO node(id) VALUES (?1)", [&id])?;
                    id
                }
            };
            tx.commit()?;
            Ok(id)
        };
        run(&mut self.conn).map_err(|e| self.sql(e))
    }

    /// The (day, domain)s from `from` on whose counts changed in adds after `seen`
    /// (`session.seen`), and the last add's `seen` as of the same read: the next call
    /// with it returns only what changed after this one.
    pub fn changed_since(
        &self,
        from: Day,
        seen: i64,
    ) -> Result<(Vec<(Day, String)>, i64), TlsrptStoreError> {
        let run = || -> rusqlite::Result<(Vec<(Day, String)>, i64)> {
            // One read transaction: both answers from the same snapshot.
            let tx = self.conn.unchecked_transaction()?;
            let last: i64 = tx
                .prepare_cached(sql::LAST_SEEN)?
                .query_row([from.0], |r| r.get(0))?;
            let changed = tx
                .prepare_cached(sql::CHANGED)?
                .query_map(params![from.0, seen], |r| Ok((Day(r.get(0)?), r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.finish()?;
            Ok((changed, last.max(seen)))
        };
        run().map_err(|e| self.sql(e))
    }

    /// Another node built (day, domain)'s report (`tlsrpt/cluster.rs`): this node
    /// never builds it.
    pub fn mark_reported_elsewhere(
        &mut self,
        day: Day,
        domain: &str,
        report_id: &str,
    ) -> Result<(), TlsrptStoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO reported_elsewhere(day, domain, report_id) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![day.0, domain, report_id]))
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// The report-id of (day, domain)'s report when another node built it.
    pub fn reported_elsewhere(
        &self,
        day: Day,
        domain: &str,
    ) -> Result<Option<String>, TlsrptStoreError> {
        self.conn
            .prepare_cached(
                "SELECT report_id FROM reported_elsewhere WHERE day = ?1 AND domain = ?2",
            )
            .and_then(|mut s| s.query_row(params![day.0, domain], |r| r.get(0)).optional())
            .map_err(|e| self.sql(e))
    }

    /// The domains of `day` whose report is built, here or elsewhere.
    pub fn reported(&self, day: Day) -> Result<HashSet<String>, TlsrptStoreError> {
        let run = || -> rusqlite::Result<HashSet<String>> {
            self.conn
                .prepare_cached(
                    "SELECT domain FROM report WHERE day = ?1 \
                     UNION SELECT domain FROM reported_elsewhere WHERE day = ?1",
                )?
                .query_map([day.0], |r| r.get(0))?
                .collect()
        };
        run().map_err(|e| self.sql(e))
    }
}
