//! The TLS-RPT store (SPEC 8.2, 8.4, 8.6): the daily counts, the reports built from
//! them and their deliveries, in one SQLite file, `<state_dir>/tlsrpt.sqlite`. The
//! edge to the disk: [`Aggregate`]s in and out, the RFC logic stays in `aggregate.rs`
//! and `report.rs`.
//!
//! # Durability
//!
//! WAL with `synchronous=NORMAL`: a commit is in the WAL file when [`TlsrptStore::add`]
//! returns, so a crash or `kill -9` of the daemon loses nothing committed (SPEC 8.2: at
//! most the last second, the one the collector had not handed over yet). Only a power
//! loss or a kernel crash can lose the commits since the last checkpoint's fsync (a
//! few seconds of counts, or a delivery's last state change, which then is resent
//! once); the file itself stays consistent. `FULL` would fsync every commit, once a
//! second all day long, to save those seconds of a machine that lost power: not worth
//! the disk wear and the latency.
//!
//! # One writer
//!
//! One process writes (the daemon's writer thread, through [`TlsrptStore::open`]);
//! `mtastsd tlsrpt show` reads at the same time through
//! [`TlsrptStore::open_read_only`] (WAL: readers never block the writer, and
//! `busy_timeout` covers the short moments of a checkpoint).
//!
//! # Schema (`PRAGMA user_version = 1`, `application_id` = [`APPLICATION_ID`])
//!
//! - `policy`: one row per (TLS-RPT domain, `_smtp._tls` record, policy), interned so
//!   a busy day's seconds do not write the same strings again; `strings` and
//!   `mx_hosts` are JSON arrays.
//! - `session(day, policy)`: the session counts; `day` is days since 1970-01-01 UTC
//!   (`date(day * 86400, 'unixepoch')` in the sqlite3 tool); `seen` orders the adds, so
//!   that [`TlsrptStore::record`] finds the record seen last.
//! - `failure(day, policy, detail...)`: the failure details with their counts; an
//!   empty string is a field the datagram did not carry.
//! - `report`: one per (day, domain) (SPEC 8.4), the JSON as built, so that a retry
//!   sends the same bytes; `delivery`: one per (report, URI), its state and retries.
//! - In a cluster (`tlsrpt/cluster.rs`), added to any file when it is opened for
//!   writing (older versions ignore them, so `user_version` stays 1): `node`, the one
//!   row of this store's node id, and `reported_elsewhere(day, domain, report_id)`,
//!   the reports another node built, which this node therefore never builds.
//!
//! Counts are added in SQL (`UPSERT ... count = count + excluded.count`), saturating
//! at 2^63 - 1 instead of [`Counts`]' 2^64 - 1 (SQLite's integers are signed): no
//! domain reaches either.
//!
//! # Bounded (SPEC 8.6)
//!
//! [`TlsrptStore::prune`] deletes the days before the kept ones, then runs `PRAGMA
//! incremental_vacuum` (the file is created with `auto_vacuum = INCREMENTAL`), which
//! gives the freed pages back to the file system, and checkpoints the WAL: the file
//! shrinks with the data instead of keeping its largest size, and no full `VACUUM`
//! (a copy of the whole file, holding the write lock) is ever needed.
//! `journal_size_limit` bounds the WAL between prunes.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::aggregate::{Aggregate, Counts, Day, Key};
use super::datagram::{FailureDetail, Policy, PolicyType, ResultType};

/// `PRAGMA application_id` of the file ("mtst"): tells a store of ours from another
/// program's SQLite file with the same `user_version`.
pub const APPLICATION_ID: i32 = 0x6d74_7374;
/// The schema this code reads and writes.
pub const SCHEMA_VERSION: i32 = 1;
/// How long a statement waits for a lock another connection holds (a checkpoint,
/// the daemon's commit while `tlsrpt show` reads) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The WAL is truncated to this after a checkpoint (bytes).
const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;
const TABLES: [&str; 5] = ["policy", "session", "failure", "report", "delivery"];

const SCHEMA: &str = "
CREATE TABLE policy(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL,
    record TEXT NOT NULL,
    type TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    strings TEXT NOT NULL,
    mx_hosts TEXT NOT NULL,
    UNIQUE(domain, record, type, policy_domain, strings, mx_hosts));
CREATE TABLE session(
    day INTEGER NOT NULL,
    policy INTEGER NOT NULL REFERENCES policy(id),
    successful INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    seen INTEGER NOT NULL,
    PRIMARY KEY(day, policy)) WITHOUT ROWID;
CREATE TABLE failure(
    day INTEGER NOT NULL,
    policy INTEGER NOT NULL,
    result_type TEXT NOT NULL,
    sending_ip TEXT NOT NULL,
    receiving_mx TEXT NOT NULL,
    receiving_helo TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    additional_info TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY(day, policy, result_type, sending_ip, receiving_mx, receiving_helo,
        receiving_ip, additional_info, reason_code),
    FOREIGN KEY(day, policy) REFERENCES session(day, policy) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE report(
    id TEXT PRIMARY KEY,
    day INTEGER NOT NULL,
    domain TEXT NOT NULL,
    json TEXT NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE(day, domain));
CREATE TABLE delivery(
    report TEXT NOT NULL REFERENCES report(id) ON DELETE CASCADE,
    uri TEXT NOT NULL,
    state TEXT NOT NULL CHECK(state IN ('pending', 'sending', 'sent', 'dropped')),
    tries INTEGER NOT NULL DEFAULT 0,
    first_try INTEGER,
    next_try INTEGER NOT NULL,
    last_error TEXT,
    sent INTEGER,
    PRIMARY KEY(report, uri)) WITHOUT ROWID;
CREATE INDEX delivery_due ON delivery(state, next_try);
";

/// The cluster's tables (see the module doc), created if absent by [`TlsrptStore::open`].
const CLUSTER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS node(id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reported_elsewhere(
    day INTEGER NOT NULL,
    domain TEXT NOT NULL,
    report_id TEXT NOT NULL,
    PRIMARY KEY(day, domain)) WITHOUT ROWID;
";

/// What went wrong, naming the file; a `Display` never repeats its source.
#[derive(Debug, thiserror::Error)]
pub enum TlsrptStoreError {
    #[error("cannot create the TLS-RPT store {path}: its directory must exist and be writable by the user mtastsd runs as")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} does not exist: TLS-RPT reporting is not enabled, or the daemon has not run with it yet")]
    Missing { path: PathBuf },
    #[error("cannot open the TLS-RPT store {path}: it must be readable (and for the daemon writable) by the user mtastsd runs as")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Never emptied nor recreated: it may be someone's data (SPEC 8.2 keeps counts
    /// across restarts, so a silent new file would lose them).
    #[error("{path} is not a TLS-RPT store this mtastsd can use: {reason}; it was left as it is: move it away, and mtastsd starts a new, empty one")]
    Foreign { path: PathBuf, reason: String },
    #[error("TLS-RPT store {path}: a stored value is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    /// A caller's mistake the store refuses, so that a report is never sent twice
    /// to one URI (SPEC 8.4).
    #[error("TLS-RPT store {path}: the delivery of report {report_id} to {uri} cannot be {action}: {reason}")]
    State {
        path: PathBuf,
        report_id: String,
        uri: String,
        action: &'static str,
        reason: &'static str,
    },
    #[error("TLS-RPT store {path}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl TlsrptStoreError {
    /// A lock held too long by another connection or a full disk: the same call may
    /// work later. The rest needs the administrator or is a bug.
    pub fn is_temporary(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull};
        match self {
            Self::Sqlite { source, .. } | Self::Open { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(DatabaseBusy | DatabaseLocked | DiskFull)
            ),
            _ => false,
        }
    }
}

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

/// Distinct failure details stored per day and policy (SPEC 8.6: disk use is
/// bounded); more are counted under their result type with [`FOLDED_REASON`]. Ten
/// times the default report cap, so the report's own cap (largest counts) still
/// chooses among real details.
pub const MAX_STORED_DETAILS: i64 = 1000;
/// The `failure-reason-code` of the details counted past [`MAX_STORED_DETAILS`].
pub const FOLDED_REASON: &str = "more-distinct-failures-than-stored";

/// How long (s) a delivery marked `sending` is held by the process that marked it;
/// after that (a crash, a hung attempt) any process may take it again. Longer than
/// any attempt: `tlsrpt.http_timeout` is at most 10 minutes, sendmail's deadline 1.
pub const SENDING_LEASE: i64 = 1800;

/// The SQLite file of SPEC 8.2/8.4. `Send`: it belongs to one thread at a time.
pub struct TlsrptStore {
    conn: Connection,
    path: PathBuf,
    ids: PolicyIds,
    /// The newest day this store added counts for: `ids` hold that day's policies.
    ids_day: Option<Day>,
    /// The last `session.seen` written; read from the file at the first add.
    seen: Option<i64>,
    /// Deliveries this store marked `sending` and not yet finished: `due` leaves them
    /// out, so only a crashed predecessor's `sending` rows are attempted again.
    in_flight: HashSet<DeliveryId>,
}

impl std::fmt::Debug for TlsrptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsrptStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TlsrptStore {
    /// Open the store, creating it (mode 0600: the daemon's own data) if absent.
    pub fn open(path: &Path) -> Result<Self, TlsrptStoreError> {
        // SQLite would create it 0644 less the umask; the WAL and shm files copy
        // the database file's mode.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(TlsrptStoreError::Create {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(path, flags)?;
        let sql = |source| TlsrptStoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if store.check_schema()? {
            // A new file: the vacuum mode can only be set before the first table.
            store
                .conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
                .map_err(sql)?;
            store.set_wal()?;
            let tx = store.conn.unchecked_transaction().map_err(sql)?;
            tx.execute_batch(SCHEMA).map_err(sql)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(sql)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        } else {
            store.set_wal()?;
        }
        store.conn.execute_batch(CLUSTER_SCHEMA).map_err(sql)?;
        store
            .conn
            .execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
            ))
            .map_err(sql)?;
        Ok(store)
    }

    /// Open an existing store to read while the daemon writes (`mtastsd tlsrpt show`).
    pub fn open_read_only(path: &Path) -> Result<Self, TlsrptStoreError> {
        if !path.exists() {
            return Err(TlsrptStoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let store = Self::connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if store.check_schema()? {
            return Err(store.foreign("it is empty".into()));
        }
        Ok(store)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, TlsrptStoreError> {
        let open = |source| TlsrptStoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags).map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        // Every statement of this file, cached (the default holds 16).
        conn.set_prepared_statement_cache_capacity(40);
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            ids: PolicyIds::default(),
            ids_day: None,
            seen: None,
            in_flight: HashSet::new(),
        })
    }

    /// `Ok(true)` for a new, empty file; `Ok(false)` for a store of this version; an
    /// error for anything else, which is left as it is.
    fn check_schema(&self) -> Result<bool, TlsrptStoreError> {
        // The first read: SQLite looks at the file only now.
        let header = self.conn.query_row(
            "SELECT (SELECT application_id FROM pragma_application_id), \
                    (SELECT user_version FROM pragma_user_version), \
                    (SELECT count(*) FROM sqlite_master)",
            [],
            |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, i32>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        );
        let (app, version, objects) = match header {
            Ok(h) => h,
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
                return Err(self.foreign("not an SQLite database".into()));
            }
            Err(source) => return Err(self.sql(source)),
        };
        if (app, version, objects) == (0, 0, 0) {
            // Nothing in it: ours, created a moment ago (or before a crash).
            return Ok(true);
        }
        if app != APPLICATION_ID {
            return Err(self.foreign(format!(
                "application_id {app:#x}, not mtastsd's {APPLICATION_ID:#x}"
            )));
        }
        if version != SCHEMA_VERSION {
            let why = if version > SCHEMA_VERSION {
                "written by a newer mtastsd"
            } else {
                "unknown"
            };
            return Err(self.foreign(format!(
                "schema version {version} ({why}; this mtastsd reads version {SCHEMA_VERSION})"
            )));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .map_err(|e| self.sql(e))?;
        let present: HashSet<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))?;
        let missing: Vec<&str> = TABLES
            .into_iter()
            .filter(|t| !present.contains(*t))
            .collect();
        if !missing.is_empty() {
            return Err(self.foreign(format!("tables missing: {}", missing.join(", "))));
        }
        Ok(false)
    }

    fn set_wal(&self) -> Result<(), TlsrptStoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(self.foreign(format!("journal mode {mode}, WAL cannot be set")));
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> TlsrptStoreError {
        TlsrptStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn foreign(&self, reason: String) -> TlsrptStoreError {
        TlsrptStoreError::Foreign {
            path: self.path.clone(),
            reason,
        }
    }

    fn damaged(&self, reason: String) -> TlsrptStoreError {
        TlsrptStoreError::Damaged {
            path: self.path.clone(),
            reason,
        }
    }

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

    /// SPEC 8.6: delete the counts, reports and deliveries of days before `keep_from`
    /// (and the policies no count uses any more); the number of rows deleted. Then
    /// the freed pages go back to the file system (see the module doc).
    pub fn prune(&mut self, keep_from: Day) -> Result<usize, TlsrptStoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            for sql in [
                "DELETE FROM delivery WHERE report IN (SELECT id FROM report WHERE day < ?1)",
                "DELETE FROM report WHERE day < ?1",
                "DELETE FROM reported_elsewhere WHERE day < ?1",
                "DELETE FROM failure WHERE day < ?1",
                "DELETE FROM session WHERE day < ?1",
            ] {
                n += tx.execute(sql, [keep_from.0])?;
            }
            n += tx.execute(
                "DELETE FROM policy WHERE id NOT IN (SELECT policy FROM session)",
                [],
            )?;
            tx.commit()?;
            Ok(n)
        };
        let result = run(&mut self.conn);
        // Ids of deleted policies must not be reused from memory.
        self.ids = PolicyIds::default();
        let n = result.map_err(|e| self.sql(e))?;
        if n > 0 {
            // It frees one page per step: step it to the end (execute_batch steps once).
            self.conn
                .prepare("PRAGMA incremental_vacuum")
                .and_then(|mut s| {
                    let mut rows = s.query([])?;
                    while rows.next()?.is_some() {}
                    Ok(())
                })
                .map_err(|e| self.sql(e))?;
            // PASSIVE: never waits for a reader (`tlsrpt show`); what a reader still
            // needs is checkpointed later, and journal_size_limit trims the WAL then.
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(|e| self.sql(e))?;
        }
        Ok(n)
    }
}

/// The reads, by name, so that a test can hold their query plans to an index search.
mod sql {
    pub const SESSIONS_OF_DAY: &str = "SELECT s.policy, s.successful, s.failed, p.domain, \
        p.record, p.type, p.policy_domain, p.strings, p.mx_hosts \
        FROM session s JOIN policy p ON p.id = s.policy WHERE s.day = ?1 AND ?2 IS NULL";
    // One domain: its few policies first, then their rows of the day (CROSS JOIN keeps
    // that order), so that building a day's reports is not quadratic in its domains.
    pub const SESSIONS_OF_DOMAIN: &str = "SELECT s.policy, s.successful, s.failed, p.domain, \
        p.record, p.type, p.policy_domain, p.strings, p.mx_hosts \
        FROM policy p CROSS JOIN session s ON s.policy = p.id \
        WHERE p.domain = ?2 AND s.day = ?1";
    pub const FAILURES_OF_DAY: &str = "SELECT f.policy, f.result_type, f.sending_ip, \
        f.receiving_mx, f.receiving_helo, f.receiving_ip, f.additional_info, f.reason_code, \
        f.count FROM failure f WHERE f.day = ?1 AND ?2 IS NULL";
    pub const FAILURES_OF_DOMAIN: &str = "SELECT f.policy, f.result_type, f.sending_ip, \
        f.receiving_mx, f.receiving_helo, f.receiving_ip, f.additional_info, f.reason_code, \
        f.count FROM policy p CROSS JOIN failure f ON f.policy = p.id \
        WHERE p.domain = ?2 AND f.day = ?1";
    pub const UNREPORTED: &str = "SELECT DISTINCT s.day, p.domain \
        FROM session s JOIN policy p ON p.id = s.policy \
        WHERE s.day < ?1 AND NOT EXISTS \
            (SELECT 1 FROM report r WHERE r.day = s.day AND r.domain = p.domain) \
        AND NOT EXISTS (SELECT 1 FROM reported_elsewhere e \
            WHERE e.day = s.day AND e.domain = p.domain) \
        ORDER BY s.day, p.domain";
    // The session rows of `day >= ?1`: a search of the primary key's day prefix.
    pub const LAST_SEEN: &str = "SELECT coalesce(max(seen), 0) FROM session WHERE day >= ?1";
    pub const CHANGED: &str = "SELECT DISTINCT s.day, p.domain \
        FROM session s JOIN policy p ON p.id = s.policy \
        WHERE s.day >= ?1 AND s.seen > ?2 ORDER BY s.day, p.domain";
    pub const RECORD: &str = "SELECT p.record FROM session s JOIN policy p ON p.id = s.policy \
        WHERE s.day = ?1 AND p.domain = ?2 GROUP BY p.record \
        ORDER BY max(s.seen) DESC, sum(s.successful) + sum(s.failed) DESC, p.record LIMIT 1";
    pub const REPORT: &str = "SELECT id, json, created FROM report WHERE day = ?1 AND domain = ?2";
    macro_rules! deliveries {
        ($where:literal) => {
            concat!(
                "SELECT d.report, d.uri, r.day, r.domain, d.state, d.tries, d.first_try, \
                 d.next_try, d.last_error, d.sent FROM delivery d JOIN report r ON r.id = d.report ",
                $where
            )
        };
    }
    pub const DELIVERIES_OF_REPORT: &str = deliveries!("WHERE d.report = ?1 ORDER BY d.uri");
    pub const DUE: &str = deliveries!(
        "WHERE d.state IN ('pending', 'sending') AND d.next_try <= ?1 \
         ORDER BY d.next_try, r.created, d.report, d.uri LIMIT ?2"
    );
    pub const OLDEST_UNSENT: &str = "SELECT min(r.created) \
        FROM delivery d JOIN report r ON r.id = d.report WHERE d.state IN ('pending', 'sending')";
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

enum ReadError {
    Sql(rusqlite::Error),
    Damaged(String),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<rusqlite::types::FromSqlError> for ReadError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Self::Sql(e.into())
    }
}

/// SQLite integers are signed: a count beyond stays at the largest.
/// The host's name, reduced to the characters a node id may hold.
fn host_name() -> String {
    let name: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if name.is_empty() {
        "node".to_owned()
    } else {
        name
    }
}

fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> Result<u64, ReadError> {
    u64::try_from(n).map_err(|_| ReadError::Damaged(format!("negative count {n}")))
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings serialises")
}

fn parse_list(s: &str) -> Result<Vec<String>, ReadError> {
    serde_json::from_str(s).map_err(|e| ReadError::Damaged(format!("string list {s:?}: {e}")))
}

fn policy_type(s: &str) -> Result<PolicyType, ReadError> {
    [PolicyType::Tlsa, PolicyType::Sts, PolicyType::NoPolicyFound]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| ReadError::Damaged(format!("policy type {s:?}")))
}

/// The spellings are datagram.rs's ([`ResultType::as_str`]); this reads them back
/// through its code table, so there is no second list to keep in step.
fn result_type(s: &str) -> Result<ResultType, ReadError> {
    static ALL: OnceLock<Vec<ResultType>> = OnceLock::new();
    ALL.get_or_init(|| (0..1000).filter_map(ResultType::from_code).collect())
        .iter()
        .copied()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| ReadError::Damaged(format!("result type {s:?}")))
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
struct PolicyIds {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::parse;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    const DAY: Day = Day(20_468); // 2026-01-15

    fn golden(name: &str) -> crate::tlsrpt::datagram::Datagram {
        let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(std::fs::read(&path).unwrap().trim_ascii_end()).unwrap()
    }

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tlsrpt.sqlite");
        (dir, path)
    }

    fn policy(t: PolicyType, domain: &str, strings: &[&str], mx: &[&str]) -> Policy {
        Policy {
            policy_type: t,
            domain: domain.into(),
            strings: strings.iter().map(|s| s.to_string()).collect(),
            mx_hosts: mx.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn detail(result_type: ResultType, ip: &str, info: &str) -> FailureDetail {
        FailureDetail {
            result_type,
            sending_ip: "192.0.2.1".into(),
            receiving_mx: "mx.a.example".into(),
            receiving_helo: String::new(),
            receiving_ip: ip.into(),
            additional_info: info.into(),
            reason_code: String::new(),
        }
    }

    fn key(day: Day, domain: &str, record: &str, policy: Policy) -> Key {
        Key {
            day,
            domain: domain.into(),
            record: record.into(),
            policy,
        }
    }

    fn counts(successful: u64, failed: u64, failures: &[(FailureDetail, u64)]) -> Counts {
        Counts {
            successful,
            failed,
            failures: failures.iter().cloned().collect(),
        }
    }

    /// Several days, domains, records and policies, details with absent fields,
    /// strings that need quoting.
    fn sample() -> Aggregate {
        let sts = policy(
            PolicyType::Sts,
            "a.example",
            &[
                "version: STSv1",
                "mode: enforce",
                "mx: \"odd\", [x]",
                "max_age: 86400",
            ],
            &["*.a.example", "mx.a.example"],
        );
        let tlsa = policy(PolicyType::Tlsa, "a.example", &["3 1 1 AB"], &[]);
        let none = policy(PolicyType::NoPolicyFound, "b.example", &[], &[]);
        let mut a = Aggregate::new();
        a.add(DAY, golden("sts-success.json"));
        a.add(DAY, golden("sts-failure.json"));
        a.add(DAY, golden("nopol-failure.json"));
        a.insert(
            key(
                DAY,
                "a.example",
                "v=TLSRPTv1; rua=mailto:r@a.example",
                sts.clone(),
            ),
            counts(
                7,
                3,
                &[
                    (detail(ResultType::ValidationFailure, "198.51.100.1", ""), 2),
                    (
                        detail(ResultType::ValidationFailure, "198.51.100.2", "é ünïcode"),
                        1,
                    ),
                ],
            ),
        );
        a.insert(
            key(DAY, "a.example", "v=TLSRPTv1; rua=mailto:r@a.example", tlsa),
            counts(1, 1, &[(detail(ResultType::TlsaInvalid, "", ""), 1)]),
        );
        a.insert(
            key(
                Day(DAY.0 + 1),
                "a.example",
                "v=TLSRPTv1; rua=https://r.example/",
                sts,
            ),
            counts(0, 0, &[]),
        );
        a.insert(
            key(Day(DAY.0 + 2), "b.example", "", none),
            counts(u64::from(u32::MAX) + 5, 0, &[]),
        );
        a
    }

    fn days(store: &TlsrptStore, days: impl IntoIterator<Item = Day>) -> Aggregate {
        let mut all = Aggregate::new();
        for d in days {
            all.merge(store.counts(d, None).unwrap());
        }
        all
    }

    // The contract: the collector hands the store to its writer thread.
    #[test]
    fn store_is_send() {
        fn send<T: Send>() {}
        send::<TlsrptStore>();
        send::<TlsrptStoreError>();
    }

    // SPEC 8.2: every field of every key and count comes back as it went in.
    #[test]
    fn round_trip() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let a = sample();
        store.add(&a).unwrap();
        assert_eq!(days(&store, (DAY.0 - 1..DAY.0 + 4).map(Day)), a);
        // One domain of one day.
        let one = store.counts(DAY, Some("rpt.example")).unwrap();
        let mut want = Aggregate::new();
        for (k, c) in a.report_entries(DAY, "rpt.example") {
            want.insert(k.clone(), c.clone());
        }
        assert!(!want.is_empty());
        assert_eq!(one, want);
        assert!(store.counts(DAY, Some("c.example")).unwrap().is_empty());
        // And after a restart.
        drop(store);
        let store = TlsrptStore::open(&path).unwrap();
        assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), a);
    }

    // SPEC 8.2, 8.6: the daemon's two connections, the collector's writer (adding,
    // its policy ids remembered) and the sender (pruning, deleting the policies no kept
    // day uses): a policy last seen on a pruned day and seen again later is counted.
    #[test]
    fn a_policy_pruned_by_another_connection_is_counted_when_seen_again() {
        let (_dir, path) = temp();
        let mut writer = TlsrptStore::open(&path).unwrap();
        let one = |day: Day| {
            let mut a = Aggregate::new();
            a.add(day, golden("sts-success.json"));
            a
        };
        writer.add(&one(DAY)).unwrap();
        let mut pruner = TlsrptStore::open(&path).unwrap();
        let later = Day(DAY.0 + 20);
        assert!(pruner.prune(Day(later.0 - 14)).unwrap() > 0);
        writer.add(&one(later)).unwrap();
        assert_eq!(pruner.counts(later, None).unwrap(), one(later));
    }

    // SPEC 8.2: counts are added, never replaced; a policy is stored once.
    #[test]
    fn add_twice_is_the_sum() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let a = sample();
        store.add(&a).unwrap();
        store.add(&a).unwrap();
        // A new store (cold policy ids) adds to the same rows.
        drop(store);
        let mut store = TlsrptStore::open(&path).unwrap();
        store.add(&a).unwrap();
        let mut want = a.clone();
        want.merge(a.clone());
        want.merge(a.clone());
        assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), want);
        let policies: i64 = store
            .conn
            .query_row("SELECT count(*) FROM policy", [], |r| r.get(0))
            .unwrap();
        let distinct: HashSet<_> = a
            .iter()
            .map(|(k, _)| (&k.domain, &k.record, &k.policy))
            .collect();
        assert_eq!(policies as usize, distinct.len());
    }

    // Counts saturate instead of turning into SQLite floats.
    #[test]
    fn counts_saturate() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let mut a = Aggregate::new();
        let k = key(
            DAY,
            "a.example",
            "",
            policy(PolicyType::Sts, "a.example", &[], &[]),
        );
        let d = detail(ResultType::ValidationFailure, "", "");
        a.insert(
            k.clone(),
            counts(u64::MAX - 1, 1 << 62, &[(d.clone(), 1 << 62)]),
        );
        for _ in 0..3 {
            store.add(&a).unwrap();
        }
        let back = store.counts(DAY, None).unwrap();
        let c = back.iter().next().unwrap().1;
        let max = i64::MAX as u64;
        assert_eq!((c.successful, c.failed, c.failures[&d]), (max, max, max));
    }

    #[test]
    fn file_is_private_and_wal() {
        let (_dir, path) = temp();
        let store = TlsrptStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (journal, vacuum): (String, i64) = store
            .conn
            .query_row(
                "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
                 (SELECT auto_vacuum FROM pragma_auto_vacuum)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((journal.as_str(), vacuum), ("wal", 2));
    }

    // SPEC 8.4: the record seen last decides where the report goes.
    #[test]
    fn record_seen_last() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let p = policy(PolicyType::Sts, "a.example", &[], &[]);
        let one = |record: &str, n| {
            let mut a = Aggregate::new();
            a.insert(key(DAY, "a.example", record, p.clone()), counts(n, 0, &[]));
            a
        };
        assert_eq!(store.record(DAY, "a.example").unwrap(), None);
        store
            .add(&one("v=TLSRPTv1; rua=mailto:old@a.example", 100))
            .unwrap();
        store
            .add(&one("v=TLSRPTv1; rua=mailto:new@a.example", 1))
            .unwrap();
        assert_eq!(
            store.record(DAY, "a.example").unwrap().as_deref(),
            Some("v=TLSRPTv1; rua=mailto:new@a.example")
        );
        // After a restart the order of adds goes on.
        drop(store);
        let mut store = TlsrptStore::open(&path).unwrap();
        store
            .add(&one("v=TLSRPTv1; rua=mailto:old@a.example", 1))
            .unwrap();
        assert_eq!(
            store.record(DAY, "a.example").unwrap().as_deref(),
            Some("v=TLSRPTv1; rua=mailto:old@a.example")
        );
    }

    fn new_report<'a>(day: Day, domain: &'a str, id: &'a str, uris: &'a [String]) -> NewReport<'a> {
        NewReport {
            day,
            domain,
            report_id: id,
            json: "{\"report-id\":\"x\"}",
            uris,
            due: 1_000,
            created: 900,
        }
    }

    // SPEC 8.4, never twice: `mtastsd tlsrpt send` and the daemon are two processes on
    // one file; while one's attempt may be running, the other neither sees the
    // delivery as due nor can mark it; after the lease (a crash), it can.
    #[test]
    fn a_delivery_being_sent_is_not_taken_by_another_process() {
        let (_dir, path) = temp();
        let mut daemon = TlsrptStore::open(&path).unwrap();
        let uris = vec!["https://slow.example/".to_owned()];
        assert!(daemon
            .put_report(&new_report(DAY, "a.example", "r1", &uris))
            .unwrap());
        let d = daemon.due(1_000, 10).unwrap().remove(0);
        daemon.mark_sending(&d.id, 1_000).unwrap();
        let mut cli = TlsrptStore::open(&path).unwrap();
        assert!(cli.due(1_001, 10).unwrap().is_empty());
        assert!(cli.mark_sending(&d.id, 1_001).is_err());
        let after = 1_000 + SENDING_LEASE;
        assert_eq!(cli.due(after, 10).unwrap().len(), 1);
        cli.mark_sending(&d.id, after).unwrap();
    }

    // SPEC 8.6: disk use is bounded. A hostile MX that answers each session with a
    // new EHLO name adds at most MAX_STORED_DETAILS rows a day and policy; every
    // failure is still counted.
    #[test]
    fn distinct_failure_details_are_bounded_on_disk_spec_8_6() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let text = String::from_utf8(
            std::fs::read(format!(
                "{}/tests/golden/tlsrpt/sts-failure.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let n = MAX_STORED_DETAILS as u64 + 250;
        // Several adds, as the collector's seconds would make them.
        for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
            let mut a = Aggregate::new();
            for i in chunk {
                let helo = format!("250-mx{i}.rpt.example");
                let one = text.replace("250-mx.rpt.example", &helo);
                a.add(DAY, parse(one.as_bytes()).unwrap());
            }
            store.add(&a).unwrap();
        }
        let rows: i64 = store
            .conn
            .query_row("SELECT count(*) FROM failure", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MAX_STORED_DETAILS + 1, "the cap and one folded row");
        let got = store.counts(DAY, None).unwrap();
        let (_, c) = got.iter().next().unwrap();
        assert_eq!(c.failed, n);
        assert_eq!(c.failures.values().sum::<u64>(), n);
        let folded: u64 = c
            .failures
            .iter()
            .filter(|(d, _)| d.reason_code == FOLDED_REASON)
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(folded, 250);
    }

    // SPEC 8.4: one report per (day, domain), never a second.
    #[test]
    fn report_once() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        store.add(&sample()).unwrap();
        assert_eq!(
            store.unreported(Day(DAY.0 + 2)).unwrap(),
            vec![
                (DAY, "a.example".to_string()),
                (DAY, "nopol.example".to_string()),
                (DAY, "rpt.example".to_string()),
                (Day(DAY.0 + 1), "a.example".to_string()),
            ]
        );
        let uris = vec![
            "mailto:r@a.example".to_string(),
            "https://r.example/".to_string(),
            "mailto:r@a.example".to_string(),
        ];
        assert!(store
            .put_report(&new_report(DAY, "a.example", "id-1", &uris))
            .unwrap());
        let again = NewReport {
            json: "other",
            uris: &uris[..1],
            due: 5,
            created: 5,
            ..new_report(DAY, "a.example", "id-2", &uris)
        };
        assert!(!store.put_report(&again).unwrap());
        // A report id used twice is an error, not a quiet "already".
        assert!(store
            .put_report(&new_report(DAY, "rpt.example", "id-1", &uris))
            .is_err());
        let r = store.report(DAY, "a.example").unwrap().unwrap();
        assert_eq!(
            (r.report_id.as_str(), r.json.as_str(), r.created),
            ("id-1", "{\"report-id\":\"x\"}", 900)
        );
        let got: Vec<_> = r
            .deliveries
            .iter()
            .map(|d| (d.uri.as_str(), d.state, d.tries, d.next_try))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://r.example/", DeliveryState::Pending, 0, 1_000),
                ("mailto:r@a.example", DeliveryState::Pending, 0, 1_000)
            ]
        );
        assert_eq!(store.report(DAY, "rpt.example").unwrap(), None);
        assert_eq!(
            store.unreported(Day(DAY.0 + 2)).unwrap(),
            vec![
                (DAY, "nopol.example".to_string()),
                (DAY, "rpt.example".to_string()),
                (Day(DAY.0 + 1), "a.example".to_string()),
            ]
        );
    }

    // SPEC 8.4: pending → sending → sent | retry | dropped; a crash mid-attempt
    // leaves `sending`, attempted again after the restart; never sent twice.
    #[test]
    fn delivery_states() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let uris = vec![
            "https://a/".to_string(),
            "https://b/".to_string(),
            "mailto:c@x".to_string(),
        ];
        store
            .put_report(&new_report(DAY, "a.example", "r1", &uris))
            .unwrap();
        let id = |u: &str| DeliveryId {
            report_id: "r1".into(),
            uri: u.into(),
        };
        let due_uris = |s: &TlsrptStore, now| -> Vec<String> {
            s.due(now, 10).unwrap().into_iter().map(|d| d.uri).collect()
        };
        assert!(due_uris(&store, 999).is_empty());
        assert_eq!(due_uris(&store, 1_000), uris);
        assert_eq!(store.due(1_000, 2).unwrap().len(), 2);
        assert_eq!(store.oldest_unsent(1_500).unwrap(), Some(600));

        // a: sent at once.
        store.mark_sending(&id("https://a/"), 1_000).unwrap();
        assert_eq!(
            due_uris(&store, 1_000),
            ["https://b/", "mailto:c@x"],
            "a's attempt is running"
        );
        assert!(store.mark_sending(&id("https://a/"), 1_000).is_err());
        store.mark_sent(&id("https://a/"), 1_001).unwrap();
        let e = store.mark_sending(&id("https://a/"), 1_002).unwrap_err();
        assert!(e.to_string().contains("cannot be marked sending"), "{e}");
        assert!(store.mark_sent(&id("https://a/"), 1_002).is_err());
        assert!(store.mark_dropped(&id("https://a/"), "x").is_err());

        // b: a retry, then dropped.
        store.mark_sending(&id("https://b/"), 1_000).unwrap();
        store
            .mark_retry(&id("https://b/"), 2_000, "HTTP 503")
            .unwrap();
        assert_eq!(due_uris(&store, 1_999), ["mailto:c@x"]);
        assert!(store
            .mark_retry(&id("https://b/"), 3_000, "not sending")
            .is_err());
        store.mark_sending(&id("https://b/"), 2_000).unwrap();
        store.mark_dropped(&id("https://b/"), "HTTP 404").unwrap();

        // c: the daemon dies during the attempt.
        store.mark_sending(&id("mailto:c@x"), 1_100).unwrap();
        assert!(due_uris(&store, 5_000).is_empty());
        drop(store);
        let mut store = TlsrptStore::open(&path).unwrap();
        let again = store.due(5_000, 10).unwrap();
        assert_eq!(again.len(), 1);
        let c = &again[0];
        assert_eq!(
            (c.uri.as_str(), c.state, c.tries, c.first_try),
            ("mailto:c@x", DeliveryState::Sending, 1, Some(1_100))
        );
        assert_eq!((c.day, c.domain.as_str()), (DAY, "a.example"));
        store.mark_sending(&c.id, 5_000).unwrap();
        store.mark_sent(&c.id, 5_001).unwrap();
        assert!(store.due(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(store.oldest_unsent(6_000).unwrap(), None);

        let r = store.report(DAY, "a.example").unwrap().unwrap();
        let got: Vec<_> = r
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.uri.as_str(),
                    d.state,
                    d.tries,
                    d.first_try,
                    d.last_error.as_deref(),
                    d.sent,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "https://a/",
                    DeliveryState::Sent,
                    1,
                    Some(1_000),
                    None,
                    Some(1_001)
                ),
                (
                    "https://b/",
                    DeliveryState::Dropped,
                    2,
                    Some(1_000),
                    Some("HTTP 404"),
                    None
                ),
                (
                    "mailto:c@x",
                    DeliveryState::Sent,
                    2,
                    Some(1_100),
                    None,
                    Some(5_001)
                ),
            ]
        );
    }

    // A wrong file is an error naming it, and is left as it is.
    #[test]
    fn refuses_foreign_files() {
        let (dir, path) = temp();
        std::fs::write(&path, b"policy cache? no: some text file\n".repeat(200)).unwrap();
        let before = std::fs::read(&path).unwrap();
        for e in [
            TlsrptStore::open(&path).unwrap_err(),
            TlsrptStore::open_read_only(&path).unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string())
                    && msg.contains("not an SQLite database")
                    && msg.contains("move it away"),
                "{msg}"
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let other = |name: &str, sql: &str| {
            let p = dir.path().join(name);
            Connection::open(&p).unwrap().execute_batch(sql).unwrap();
            let e = TlsrptStore::open(&p).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            msg
        };
        let msg = other("newer.sqlite", &format!("CREATE TABLE t(x); PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;"));
        assert!(
            msg.contains("schema version 2 (written by a newer mtastsd"),
            "{msg}"
        );
        let msg = other("app.sqlite", "CREATE TABLE t(x); PRAGMA user_version = 1;");
        assert!(msg.contains("application_id 0x0"), "{msg}");
        let msg = other("tables.sqlite", &format!("CREATE TABLE policy(x); PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"));
        assert!(
            msg.contains("tables missing: session, failure, report, delivery"),
            "{msg}"
        );

        let missing = dir.path().join("none.sqlite");
        let e = TlsrptStore::open_read_only(&missing).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!missing.exists());
        let e = TlsrptStore::open(&dir.path().join("no/such/dir.sqlite")).unwrap_err();
        assert!(e.to_string().contains("no/such/dir.sqlite"), "{e}");
    }

    // `mtastsd tlsrpt show` reads while the daemon writes.
    #[test]
    fn read_only_sees_commits() {
        let (_dir, path) = temp();
        let mut writer = TlsrptStore::open(&path).unwrap();
        let a = sample();
        writer.add(&a).unwrap();
        let mut reader = TlsrptStore::open_read_only(&path).unwrap();
        assert_eq!(
            reader.counts(DAY, None).unwrap(),
            writer.counts(DAY, None).unwrap()
        );
        writer.add(&a).unwrap();
        let mut twice = Aggregate::new();
        for (k, c) in a.report_entries(DAY, "rpt.example") {
            twice.insert(k.clone(), c.clone());
            twice.insert(k.clone(), c.clone());
        }
        assert_eq!(reader.counts(DAY, Some("rpt.example")).unwrap(), twice);
        let e = reader.add(&a).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    // SPEC 8.6: older days go, with their reports and the policies only they used,
    // and the file gives the space back.
    #[test]
    fn prune_bounds_the_file() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        let long = "x".repeat(2_000);
        for day in 0..10 {
            let mut a = Aggregate::new();
            for n in 0..50 {
                let p = policy(
                    PolicyType::Sts,
                    &format!("d{n}.example"),
                    &[&long, &format!("day {day}")],
                    &[],
                );
                a.insert(
                    key(Day(DAY.0 + day), &format!("d{n}.example"), "r", p),
                    counts(
                        1,
                        1,
                        &[(detail(ResultType::ValidationFailure, "", &long), 1)],
                    ),
                );
            }
            store.add(&a).unwrap();
            let uris = vec!["https://r/".to_string()];
            let id = format!("id{day}");
            store
                .put_report(&new_report(Day(DAY.0 + day), "d0.example", &id, &uris))
                .unwrap();
        }
        let rows = |s: &TlsrptStore, t: &str| -> i64 {
            s.conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        let pages = |s: &TlsrptStore| -> i64 {
            s.conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap()
        };
        let big = pages(&store);
        let kept = days(&store, (DAY.0 + 8..DAY.0 + 10).map(Day));
        let n = store.prune(Day(DAY.0 + 8)).unwrap();
        // 8 days × (50 sessions + 50 failures + 50 policies) + 8 reports + 8 deliveries.
        assert_eq!(n, 8 * 150 + 16);
        for (t, want) in [
            ("session", 100),
            ("failure", 100),
            ("policy", 100),
            ("report", 2),
            ("delivery", 2),
        ] {
            assert_eq!(rows(&store, t), want, "{t}");
        }
        assert_eq!(days(&store, (DAY.0..DAY.0 + 10).map(Day)), kept);
        assert!(store
            .report(Day(DAY.0 + 7), "d0.example")
            .unwrap()
            .is_none());
        assert!(store
            .report(Day(DAY.0 + 8), "d0.example")
            .unwrap()
            .is_some());
        let freelist: i64 = store
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert_eq!(freelist, 0);
        assert!(pages(&store) * 3 < big, "{} pages of {big}", pages(&store));
        // Adds after a prune intern the deleted policies anew.
        let mut a = Aggregate::new();
        a.add(Day(DAY.0 + 9), golden("sts-success.json"));
        let p = policy(PolicyType::Sts, "d0.example", &[&long, "day 0"], &[]);
        a.insert(key(Day(DAY.0 + 9), "d0.example", "r", p), counts(1, 0, &[]));
        store.add(&a).unwrap();
        let mut want = kept;
        want.merge(a);
        assert_eq!(days(&store, (DAY.0..DAY.0 + 10).map(Day)), want);
        assert_eq!(store.prune(Day(DAY.0 + 8)).unwrap(), 0);
    }

    // The per-report reads search indexes, never scan a table: a day's reports over
    // 10 000 domains must not cost 10 000 × the day's rows.
    #[test]
    fn per_report_reads_use_indexes() {
        let (_dir, path) = temp();
        let mut store = TlsrptStore::open(&path).unwrap();
        store.add(&sample()).unwrap();
        // (name, SQL, the first step searches one domain's policies)
        for (name, q, by_domain) in [
            ("SESSIONS_OF_DOMAIN", sql::SESSIONS_OF_DOMAIN, true),
            ("FAILURES_OF_DOMAIN", sql::FAILURES_OF_DOMAIN, true),
            ("RECORD", sql::RECORD, true),
            ("REPORT", sql::REPORT, false),
            ("DELIVERIES_OF_REPORT", sql::DELIVERIES_OF_REPORT, false),
            ("DUE", sql::DUE, false),
            ("OLDEST_UNSENT", sql::OLDEST_UNSENT, false),
        ] {
            let mut plan = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
                .unwrap();
            let args = vec![1i64; plan.parameter_count()];
            let steps: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                steps.iter().all(|s| !s.starts_with("SCAN")),
                "{name}: {steps:?}"
            );
            if by_domain {
                assert!(
                    steps[0].starts_with("SEARCH p ") && steps[0].contains("(domain=?)"),
                    "{name}: {steps:?}"
                );
            }
        }
    }

    fn arb_aggregate() -> impl Strategy<Value = Aggregate> {
        let policies = vec![
            policy(
                PolicyType::Sts,
                "a.example",
                &["mode: enforce", "mx: *.a.example"],
                &["*.a.example"],
            ),
            policy(PolicyType::Sts, "a.example", &["mode: testing"], &[]),
            policy(
                PolicyType::Tlsa,
                "b.example",
                &["3 1 1 AB", ""],
                &["mx.b.example"],
            ),
            policy(PolicyType::NoPolicyFound, "b.example", &[], &[]),
        ];
        let details = vec![
            detail(ResultType::StarttlsNotSupported, "", ""),
            detail(ResultType::CertificateExpired, "203.0.113.9", "expired"),
            detail(ResultType::StsPolicyFetchError, "", "https: \"quoted\"\n"),
        ];
        let entry = (
            0i64..3,
            prop::sample::select(vec!["a.example", "b.example"]),
            prop::sample::select(vec!["", "v=TLSRPTv1; rua=mailto:x@y"]),
            prop::sample::select(policies),
            0u64..1_000,
            0u64..1_000,
            prop::collection::vec((prop::sample::select(details), 0u64..100), 0..3),
        );
        prop::collection::vec(entry, 0..6).prop_map(|entries| {
            let mut a = Aggregate::new();
            for (day, domain, record, p, s, f, ds) in entries {
                let mut c = counts(s, f, &[]);
                for (d, n) in ds {
                    *c.failures.entry(d).or_default() += n;
                }
                a.insert(key(Day(DAY.0 + day), domain, record, p), c);
            }
            a
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        // SPEC 8.2: any sequence of adds reads back as the in-memory merge of them.
        #[test]
        fn adds_read_back_as_merge(adds in prop::collection::vec(arb_aggregate(), 1..5), reopen in 0usize..5) {
            let (_dir, path) = temp();
            let mut store = TlsrptStore::open(&path).unwrap();
            let mut want = Aggregate::new();
            for (i, a) in adds.into_iter().enumerate() {
                if i == reopen {
                    store = TlsrptStore::open(&path).unwrap();
                }
                store.add(&a).unwrap();
                want.merge(a);
            }
            prop_assert_eq!(days(&store, (DAY.0..DAY.0 + 3).map(Day)), want);
        }
    }
}
