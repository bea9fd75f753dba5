//! The counts of the TLS-RPT store (SPEC 8.2): added in one transaction per
//! hand-over, read back per day and domain, the record a report goes to.

use super::*;

impl TlsrptStore {
    /// Add these counts (one transaction; counts are added, never replaced).
    pub fn add(&mut self, counts: &Aggregate) -> Result<(), TlsrptStoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let seen = match self.seen {
            Some(s) => s + 1,
            None => {
                let max: i64 = self
                    .conn
                    .query_row("SELECT coalesce(max(seen), 0) FROM session", [], |r| {
                        r.get(0)
                    })
                    .map_err(|e| self.sql(e))?;
                max + 1
            }
        };
        // The remembered policy ids are those of the newest day's adds: the sender's
        // prune (SPEC 8.6, at least three days back) never deletes those, and the
        // memory does not grow with every policy ever seen.
        let newest = counts.iter().map(|(k, _)| k.day).max();
        if newest > self.ids_day {
            self.ids = PolicyIds::default();
            self.ids_day = newest;
        }
        let mut new_ids = Vec::new();
        let mut result = self.add_in_tx(counts, seen, &mut new_ids);
        if is_foreign_key_failure(&result) {
            // Another connection (the sender's prune, SPEC 8.6) deleted a policy this
            // one remembered: forget the ids and look them up again.
            self.ids = PolicyIds::default();
            new_ids.clear();
            result = self.add_in_tx(counts, seen, &mut new_ids);
        }
        match result {
            Ok(()) => {
                self.seen = Some(seen);
                for (key, id) in new_ids {
                    self.ids.insert(key, id);
                }
                Ok(())
            }
            Err(e) => Err(self.sql(e)),
        }
    }

    fn add_in_tx(
        &mut self,
        counts: &Aggregate,
        seen: i64,
        new_ids: &mut Vec<(PolicyKey, i64)>,
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut find = tx.prepare_cached(
                "SELECT id FROM policy WHERE domain = ?1 AND record = ?2 AND type = ?3 \
                 AND policy_domain = ?4 AND strings = ?5 AND mx_hosts = ?6",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO policy(domain, record, type, policy_domain, strings, mx_hosts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut session = tx.prepare_cached(
                "INSERT INTO session(day, policy, successful, failed, seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(day, policy) DO UPDATE SET \
                 successful = CASE WHEN successful > 9223372036854775807 - excluded.successful \
                    THEN 9223372036854775807 ELSE successful + excluded.successful END, \
                 failed = CASE WHEN failed > 9223372036854775807 - excluded.failed \
                    THEN 9223372036854775807 ELSE failed + excluded.failed END, \
                 seen = excluded.seen",
            )?;
            for (key, c) in counts.iter() {
                let id = match self.ids.get(&key.domain, &key.record, &key.policy) {
                    Some(id) => id,
                    None => {
                        let id = policy_row(&mut find, &mut insert, key)?;
                        new_ids.push((
                            (key.domain.clone(), key.record.clone(), key.policy.clone()),
                            id,
                        ));
                        id
                    }
                };
                session.execute(params![
                    key.day.0,
                    id,
                    sql_count(c.successful),
                    sql_count(c.failed),
                    seen
                ])?;
                add_failures(&tx, key.day, id, c)?;
            }
        }
        tx.commit()
    }

    /// The counts of `day` (all domains, or one).
    pub fn counts(&self, day: Day, domain: Option<&str>) -> Result<Aggregate, TlsrptStoreError> {
        // One snapshot for the sessions and the failures read below: between two
        // statements the collector's writer may commit (WAL readers see a commit at
        // their next statement otherwise).
        let snapshot = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let read = self.read_counts(day, domain);
        drop(snapshot);
        read.map_err(|e| match e {
            ReadError::Sql(e) => self.sql(e),
            ReadError::Damaged(why) => self.damaged(why),
        })
    }

    fn read_counts(&self, day: Day, domain: Option<&str>) -> Result<Aggregate, ReadError> {
        let mut policies: HashMap<i64, Key> = HashMap::new();
        let mut counts: HashMap<i64, Counts> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(match domain {
            None => sql::SESSIONS_OF_DAY,
            Some(_) => sql::SESSIONS_OF_DOMAIN,
        })?;
        let mut rows = stmt.query(params![day.0, domain])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let policy = Policy {
                policy_type: policy_type(r.get_ref(5)?.as_str()?)?,
                domain: r.get(6)?,
                strings: parse_list(r.get_ref(7)?.as_str()?)?,
                mx_hosts: parse_list(r.get_ref(8)?.as_str()?)?,
            };
            policies.insert(
                id,
                Key {
                    day,
                    domain: r.get(3)?,
                    record: r.get(4)?,
                    policy,
                },
            );
            counts.insert(
                id,
                Counts {
                    successful: count(r.get(1)?)?,
                    failed: count(r.get(2)?)?,
                    failures: HashMap::new(),
                },
            );
        }
        let mut stmt = self.conn.prepare_cached(match domain {
            None => sql::FAILURES_OF_DAY,
            Some(_) => sql::FAILURES_OF_DOMAIN,
        })?;
        let mut rows = stmt.query(params![day.0, domain])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let detail = FailureDetail {
                result_type: result_type(r.get_ref(1)?.as_str()?)?,
                sending_ip: r.get(2)?,
                receiving_mx: r.get(3)?,
                receiving_helo: r.get(4)?,
                receiving_ip: r.get(5)?,
                additional_info: r.get(6)?,
                reason_code: r.get(7)?,
            };
            let n = count(r.get(8)?)?;
            counts
                .get_mut(&id)
                .ok_or_else(|| {
                    ReadError::Damaged(format!("failure of policy {id} without counts"))
                })?
                .failures
                .insert(detail, n);
        }
        let mut agg = Aggregate::new();
        for (id, key) in policies {
            agg.insert(key, counts.remove(&id).unwrap_or_default());
        }
        Ok(agg)
    }

    /// (day, domain) pairs with counts before `before` and no report yet, oldest first.
    pub fn unreported(&self, before: Day) -> Result<Vec<(Day, String)>, TlsrptStoreError> {
        let run = || -> rusqlite::Result<Vec<(Day, String)>> {
            let mut stmt = self.conn.prepare_cached(sql::UNREPORTED)?;
            let rows = stmt.query_map([before.0], |r| Ok((Day(r.get(0)?), r.get(1)?)))?;
            rows.collect()
        };
        run().map_err(|e| self.sql(e))
    }

    /// The `_smtp._tls` record seen last for (day, domain): where its report goes.
    /// Records seen in the same add: the one with more sessions.
    pub fn record(&self, day: Day, domain: &str) -> Result<Option<String>, TlsrptStoreError> {
        let run = || -> rusqlite::Result<Option<String>> {
            self.conn
                .prepare_cached(sql::RECORD)?
                .query_row(params![day.0, domain], |r| r.get(0))
                .optional()
        };
        run().map_err(|e| self.sql(e))
    }
}

/// The failure details of one (day, policy), added; past [`MAX_STORED_DETAILS`]
/// distinct rows, new ones are counted under their result type alone (SPEC 8.6:
/// bounded on disk too, even when a hostile MX gives a new EHLO name each session).
fn add_failures(tx: &Connection, day: Day, id: i64, c: &Counts) -> rusqlite::Result<()> {
    let mut add = tx.prepare_cached(
        "INSERT INTO failure(day, policy, result_type, sending_ip, receiving_mx, \
         receiving_helo, receiving_ip, additional_info, reason_code, count) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT DO UPDATE SET \
         count = CASE WHEN count > 9223372036854775807 - excluded.count \
            THEN 9223372036854775807 ELSE count + excluded.count END",
    )?;
    let mut known = tx.prepare_cached(
        "SELECT 1 FROM failure WHERE day = ?1 AND policy = ?2 AND result_type = ?3 \
         AND sending_ip = ?4 AND receiving_mx = ?5 AND receiving_helo = ?6 \
         AND receiving_ip = ?7 AND additional_info = ?8 AND reason_code = ?9",
    )?;
    let mut rows =
        tx.prepare_cached("SELECT count(*) FROM failure WHERE day = ?1 AND policy = ?2")?;
    for (d, &n) in &c.failures {
        let fields = [
            d.sending_ip.as_str(),
            &d.receiving_mx,
            &d.receiving_helo,
            &d.receiving_ip,
            &d.additional_info,
            &d.reason_code,
        ];
        let [ip, mx, helo, rip, info, reason] = fields;
        let kind = d.result_type.as_str();
        let full = !known.exists(params![day.0, id, kind, ip, mx, helo, rip, info, reason])?
            && rows.query_row(params![day.0, id], |r| r.get::<_, i64>(0))? >= MAX_STORED_DETAILS;
        let [ip, mx, helo, rip, info, reason] = if full {
            ["", "", "", "", "", FOLDED_REASON]
        } else {
            fields
        };
        add.execute(params![
            day.0,
            id,
            kind,
            ip,
            mx,
            helo,
            rip,
            info,
            reason,
            sql_count(n)
        ])?;
    }
    Ok(())
}

/// The id of `key`'s policy row, inserted when new.
fn policy_row(
    find: &mut rusqlite::CachedStatement<'_>,
    insert: &mut rusqlite::CachedStatement<'_>,
    key: &Key,
) -> rusqlite::Result<i64> {
    let strings = json_list(&key.policy.strings);
    let mx = json_list(&key.policy.mx_hosts);
    let p = params![
        key.domain,
        key.record,
        key.policy.policy_type.as_str(),
        key.policy.domain,
        strings,
        mx
    ];
    match find.query_row(p, |r| r.get(0)).optional()? {
        Some(id) => Ok(id),
        None => insert.insert(p),
    }
}

fn is_foreign_key_failure(r: &rusqlite::Result<()>) -> bool {
    matches!(
        r,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

/// (TLS-RPT domain, record, policy): what a `policy` row holds.
type PolicyKey = (String, String, Policy);

/// The ids of the `policy` rows this store has seen, so that an add finds a known
/// policy without SQL and without copying its strings (looked up by a hash of the
/// borrowed fields).
#[derive(Default)]
pub(super) struct PolicyIds {
    hasher: RandomState,
    by_hash: HashMap<u64, Vec<(PolicyKey, i64)>>,
}

impl PolicyIds {
    fn hash(&self, domain: &str, record: &str, policy: &Policy) -> u64 {
        self.hasher.hash_one((domain, record, policy))
    }

    fn get(&self, domain: &str, record: &str, policy: &Policy) -> Option<i64> {
        self.by_hash
            .get(&self.hash(domain, record, policy))?
            .iter()
            .find(|((d, r, p), _)| d == domain && r == record && p == policy)
            .map(|(_, id)| *id)
    }

    fn insert(&mut self, key: PolicyKey, id: i64) {
        let h = self.hash(&key.0, &key.1, &key.2);
        self.by_hash.entry(h).or_default().push((key, id));
    }
}
