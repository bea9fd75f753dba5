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

mod cluster;
mod counts;
mod outbox;
#[cfg(test)]
mod tests;

use counts::PolicyIds;

pub use outbox::{Delivery, DeliveryId, DeliveryState, NewReport, StoredReport, SENDING_LEASE};

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

/// Distinct failure details stored per day and policy (SPEC 8.6: disk use is
/// bounded); more are counted under their result type with [`FOLDED_REASON`]. Ten
/// times the default report cap, so the report's own cap (largest counts) still
/// chooses among real details.
pub const MAX_STORED_DETAILS: i64 = 1000;
/// The `failure-reason-code` of the details counted past [`MAX_STORED_DETAILS`].
pub const FOLDED_REASON: &str = "more-distinct-failures-than-stored";

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
