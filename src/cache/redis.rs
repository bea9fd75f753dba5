//! [`ClusterCache`] on Redis (or Valkey): `[cache] backend = "redis"`.
//!
//! Keys, under the configured prefix:
//! - `{prefix}policy:{domain}`: the JSON of a [`ClusterRecord`], `SET ... PX ttl`; with
//!   `[redis] key_file`, preceded by `hmac-sha256:<hex>` and a newline (see [`seal`]);
//! - `{prefix}lease:{domain}`: the id of the node refreshing the domain, `SET ... NX PX ttl`.
//!
//! And TLS-RPT's (`tlsrpt/cluster.rs` has why), each value signed like a record,
//! bound to its key and field:
//! - `{prefix}tlsrpt:{day}:{domain}`: a hash, one field per node id, its counts;
//! - `{prefix}tlsrpt:domains:{day}`: the set of the day's domains, for any node to report;
//! - `{prefix}tlsrpt:nodes`: a hash, one field per node id, its heartbeat;
//! - `{prefix}tlsrpt:lease:{day}:{domain}`: the node building the report, `SET NX PX`;
//! - `{prefix}tlsrpt:sent:{day}:{domain}`: the report-id of the report built, `SET NX PX`.
//!
//! What is read is not trusted more than the nodes' own work (SPEC 5.10): at most
//! [`MAX_RECORD`] bytes of a record are read, a record without a valid signature is
//! ignored when the cluster has a key, and a lease longer than the ones nodes take is
//! ignored. Each of these is counted (`mtastsd_shared_records_rejected_total`) and
//! logged at debug, without the record's text.
//!
//! The node must never wait on Redis for long, nor fail because of it:
//! - [`RedisCluster::connect`] does not need Redis to be up: the connection is made
//!   lazily, so a node starts and serves alone, and joins the cluster when Redis comes.
//! - Every call is bounded by `timeout` (the connection's own timeouts, and a
//!   `tokio::time::timeout` around the whole call in case anything else stalls).
//! - After a failure the node stops asking Redis for a second: calls fail at once
//!   instead of each paying the timeout (a down Redis must not slow every lookup),
//!   and a down Redis gets one connection attempt per second per node, not one per
//!   lookup. The first call after that second probes with a fresh connection;
//!   recovery is therefore automatic, about a second after Redis is back.
//! - Failures are logged at warn at most once a minute; recovery once, at info.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ConnectionAddr, RedisError};
use aws_lc_rs::hmac;
use futures_util::future::{BoxFuture, FutureExt};

use super::cluster::{ClusterCache, ClusterError, ClusterRecord, MAX_RECORD};
use crate::config::RedisConfig;
use crate::tlsrpt::aggregate::Day;
use crate::tlsrpt::cluster::{self as tlsrpt, SharedError, TlsrptCluster};

/// How long the node leaves Redis alone after a failure.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// At most one warning per this long while Redis keeps failing.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Redis refuses `PX` values that overflow its clock; a century is plenty.
const MAX_TTL_MS: u64 = 100 * 365 * 86_400 * 1000;

/// A shared cache on one Redis server. Cheap to share (`Arc`); calls may run concurrently.
pub struct RedisCluster {
    client: Client,
    manager_config: ConnectionManagerConfig,
    prefix: String,
    timeout: Duration,
    /// `url` with any password replaced, for log messages.
    display_url: String,
    node_id: String,
    /// `[redis] key_file`: records are signed, and unsigned ones ignored.
    key: Option<hmac::Key>,
    state: Mutex<State>,
}

struct State {
    /// Multiplexed, cloned for each call; replaced by a fresh one when probing after
    /// a failure (see [`RedisCluster::begin`]).
    manager: ConnectionManager,
    /// Set while Redis is considered unreachable.
    down: Option<Down>,
    /// When the last warning was logged, and how many failures went unlogged since.
    last_warn: Option<Instant>,
    unlogged: u64,
}

struct Down {
    since: Instant,
    /// No call touches Redis before this; the first one after it probes.
    retry_at: Instant,
    /// Returned by the calls that fail without trying.
    error: String,
}

/// How a call reaches Redis: on the normal path, or as the one probe after a failure.
enum Attempt {
    Normal(ConnectionManager),
    Probe(ConnectionManager),
}

/// Why a call failed.
enum Failure {
    Redis(RedisError),
    TimedOut,
}

impl RedisCluster {
    /// A shared cache for `config`. Fails only when the URL is unusable (a
    /// configuration error); an unreachable Redis is logged and retried later.
    pub async fn connect(config: &RedisConfig) -> Result<RedisCluster, ClusterError> {
        let display_url = redact(&config.url);
        let client = match &config.ca_file {
            None => Client::open(config.url.as_str()),
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| ClusterError(format!("redis.ca_file {}: {e}", path.display())))?;
                Client::build_with_tls(
                    config.url.as_str(),
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
        }
        .map_err(|e| ClusterError(format!("{display_url}: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // We pace reconnection ourselves (RETRY_INTERVAL): the manager's own
            // back-off would keep callers waiting on a connection that is not coming.
            .set_number_of_retries(0);
        let manager = new_manager(&client, &manager_config, &display_url)?;
        let shared = RedisCluster {
            client,
            manager_config,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            display_url,
            node_id: node_id(),
            key: config
                .key
                .as_ref()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.bytes())),
            state: Mutex::new(State {
                manager,
                down: None,
                last_warn: None,
                unlogged: 0,
            }),
        };
        // Connect now, bounded, so that a wrong URL or password shows in the log at
        // start-up rather than at the first lookup. The result does not matter here.
        let _ = shared
            .call(|mut conn| async move {
                ::redis::cmd("PING")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(Failure::Redis)
            })
            .await;
        Ok(shared)
    }

    /// This node's id, the value of the leases it takes: `hostname:pid`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn policy_key(&self, domain: &str) -> String {
        format!("{}policy:{domain}", self.prefix)
    }

    fn lease_key(&self, domain: &str) -> String {
        format!("{}lease:{domain}", self.prefix)
    }

    /// Run one operation against Redis, bounded by the timeout, failing at once while
    /// Redis is considered down. `op` may be run twice (see below), so it must be
    /// idempotent or harmless to repeat.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let attempt = self.begin()?;
        let result = tokio::time::timeout(self.timeout, async {
            match attempt {
                Attempt::Probe(conn) => op(conn).await,
                Attempt::Normal(conn) => match op(conn.clone()).await {
                    // A connection Redis closed while idle (its `timeout` setting, a
                    // proxy, a restart) fails the first command sent on it; the
                    // manager is already reconnecting, so try once more on the new
                    // connection before declaring Redis down. Repeating is safe: a
                    // SET is idempotent, and a lease whose first SET did land only
                    // reads as "held by another node" until it expires.
                    Err(Failure::Redis(e)) if e.is_connection_dropped() => op(conn).await,
                    other => other,
                },
            }
        })
        .await
        .unwrap_or(Err(Failure::TimedOut));
        match result {
            Ok(value) => {
                self.succeeded();
                Ok(value)
            }
            Err(failure) => Err(self.failed(failure)),
        }
    }

    /// The connection to use, or the error to return without trying.
    fn begin(&self) -> Result<Attempt, ClusterError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Some(down) = &mut state.down else {
            return Ok(Attempt::Normal(state.manager.clone()));
        };
        if now < down.retry_at {
            return Err(ClusterError(down.error.clone()));
        }
        // This call probes; the others keep failing at once until it is done.
        down.retry_at = now + RETRY_INTERVAL;
        // A fresh manager: the old one may hold a failed connection it would never
        // retry (it reconnects only after I/O errors, not, say, a refused password).
        if let Ok(manager) = new_manager(&self.client, &self.manager_config, &self.display_url) {
            state.manager = manager;
        }
        Ok(Attempt::Probe(state.manager.clone()))
    }

    fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(down) = state.down.take() {
            log::info!(
                "shared cache reachable again ({}, after {:.1} s)",
                self.display_url,
                down.since.elapsed().as_secs_f64()
            );
            state.last_warn = None;
            state.unlogged = 0;
        }
    }

    fn failed(&self, failure: Failure) -> ClusterError {
        crate::metrics::cluster_error();
        let message = match failure {
            // On one line: the text may quote what the server (or whatever answers
            // at its address) sent.
            Failure::Redis(e) => format!("{}: {}", self.display_url, one_line(&e.to_string())),
            Failure::TimedOut => format!(
                "{}: no answer within {} ms",
                self.display_url,
                self.timeout.as_millis()
            ),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let since = state.down.as_ref().map_or(now, |d| d.since);
        state.down = Some(Down {
            since,
            retry_at: now + RETRY_INTERVAL,
            error: format!("unavailable: {message}"),
        });
        if state
            .last_warn
            .is_none_or(|at| now.duration_since(at) >= WARN_INTERVAL)
        {
            let unlogged = std::mem::take(&mut state.unlogged);
            let more = if unlogged > 0 {
                format!(" ({unlogged} more failures since the last warning)")
            } else {
                String::new()
            };
            log::warn!(
                "shared cache {message}; carrying on without it, retrying every {} s{more}",
                RETRY_INTERVAL.as_secs()
            );
            state.last_warn = Some(now);
        } else {
            state.unlogged += 1;
            log::debug!("shared cache {message}");
        }
        ClusterError(message)
    }
}

impl ClusterCache for RedisCluster {
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClusterRecord>, ClusterError>> {
        async move {
            let key = self.policy_key(domain);
            let raw = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        // One byte more than a record may have, to tell a record
                        // that is too long: never the whole of a value of any size.
                        match ::redis::cmd("GETRANGE")
                            .arg(key)
                            .arg(0)
                            .arg(MAX_RECORD)
                            .query_async::<Vec<u8>>(&mut conn)
                            .await
                        {
                            // Someone else's value of another type under our key: as
                            // unusable as garbage, and no reason to think Redis down.
                            Err(e) if e.code() == Some("WRONGTYPE") => {
                                log::debug!(
                                    "shared cache: {key}: a value of another type; ignored"
                                );
                                Ok(Vec::new())
                            }
                            other => other.map_err(Failure::Redis),
                        }
                    }
                })
                .await?;
            // GETRANGE answers "" for a missing key (and no record is empty).
            if raw.is_empty() {
                return Ok(None);
            }
            let json = match unseal(self.key.as_ref(), &key, &raw) {
                Ok(json) => json,
                Err(reason) => {
                    crate::metrics::cluster_record_rejected(reason);
                    log::debug!("shared cache: {key}: record ignored ({reason})");
                    return Ok(None);
                }
            };
            // A value we cannot read (another version's format, corruption) is a miss:
            // the node resolves the domain itself and a later put replaces it.
            match serde_json::from_slice::<ClusterRecord>(json) {
                Ok(entry) => Ok(Some(entry)),
                Err(e) => {
                    crate::metrics::cluster_record_rejected("invalid");
                    // Quoted: the message may quote the value, which anyone with
                    // access to Redis writes.
                    log::debug!(
                        "shared cache: {key}: unreadable value ignored: {:?}",
                        e.to_string()
                    );
                    Ok(None)
                }
            }
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a ClusterRecord,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let key = self.policy_key(domain);
            let json = serde_json::to_vec(entry)
                .map_err(|e| ClusterError(format!("{key}: cannot serialise: {e}")))?;
            let value = match &self.key {
                Some(secret) => seal(secret, &key, &json),
                None => json,
            };
            let ms = ttl_ms(ttl);
            self.call(|mut conn| {
                let (key, value) = (&key, &value);
                async move {
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("PX")
                        .arg(ms)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(Failure::Redis)
                }
            })
            .await
        }
        .boxed()
    }

    fn lease<'a>(
        &'a self,
        domain: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, ClusterError>> {
        async move {
            let key = self.lease_key(domain);
            let ms = ttl_ms(ttl);
            let held_for = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        ::redis::cmd("EVAL")
                            .arg(LEASE_SCRIPT)
                            .arg(1)
                            .arg(key)
                            .arg(&self.node_id)
                            .arg(ms)
                            .query_async::<i64>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    }
                })
                .await?;
            Ok(match held_for {
                TAKEN => true,
                // Another node's lease, for at most what a node takes.
                ms_left if (0..=i64::try_from(ms).unwrap_or(i64::MAX)).contains(&ms_left) => {
                    false
                }
                // Longer than any node takes, or for ever (-1): no node's lease.
                other => {
                    crate::metrics::cluster_record_rejected("lease");
                    log::debug!(
                        "shared cache: {key}: lease ignored (held for {other} ms, nodes take {ms} ms)"
                    );
                    true
                }
            })
        }
        .boxed()
    }

    fn release<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let key = self.lease_key(domain);
            self.call(|mut conn| {
                let key = &key;
                async move {
                    // Compare and delete in one step: our lease may have lapsed and be
                    // another node's by now.
                    ::redis::cmd("EVAL")
                        .arg(RELEASE_SCRIPT)
                        .arg(1)
                        .arg(key)
                        .arg(&self.node_id)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(Failure::Redis)
                }
            })
            .await
        }
        .boxed()
    }
}

/// The hash fields (node id, value) of one key, each value longer than ARGV[1] bytes
/// replaced by an empty one (no value is empty), at most ARGV[2] fields: a node
/// never reads more than that, however large what someone wrote.
const CAPPED_HGETALL: &str = "local all = redis.call('HGETALL', KEYS[1]) \
     local out = {} \
     for i = 1, math.min(#all, 2 * tonumber(ARGV[2])), 2 do \
       local v = all[i + 1] \
       if string.len(v) > tonumber(ARGV[1]) then v = '' end \
       out[#out + 1] = all[i] \
       out[#out + 1] = v \
     end \
     return out";

/// Take the report's lease, or keep our own: 1; another node's: 0; a lease longer
/// than nodes take (or for ever), which no node took: 2, ignored.
const TLSRPT_LEASE_SCRIPT: &str =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
     if redis.call('GET', KEYS[1]) == ARGV[1] then \
       redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
     local left = redis.call('PTTL', KEYS[1]) \
     if left < 0 or left > tonumber(ARGV[2]) then return 2 end \
     return 0";

/// `SET NX PX`, and the value in place afterwards (ours when it was set).
const CLAIM_SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) \
     return redis.call('GET', KEYS[1])";

/// How many values one pipeline pushes: each call is bounded by the timeout.
const PUSH_CHUNK: usize = 200;
/// The heartbeats of nodes that stopped go with the hash when no node is left.
const NODES_TTL: Duration = Duration::from_secs(7 * 86_400);
/// A heartbeat is two numbers.
const MAX_HEARTBEAT: usize = 256;
/// Heartbeats read: one per node that ran in the last week.
const MAX_HEARTBEATS: usize = 1024;

impl RedisCluster {
    fn tlsrpt_key(&self, what: std::fmt::Arguments<'_>) -> String {
        format!("{}tlsrpt:{what}", self.prefix)
    }

    fn counts_key(&self, day: Day, domain: &str) -> String {
        self.tlsrpt_key(format_args!("{day}:{domain}"))
    }

    /// A value as stored: signed, with the cluster's key, for this key and field.
    fn seal_field(&self, key: &str, field: &str, json: &[u8]) -> Vec<u8> {
        match &self.key {
            Some(secret) => seal(secret, &format!("{key}\n{field}"), json),
            None => json.to_vec(),
        }
    }

    /// The fields of a hash that pass the size cap and the signature; the others are
    /// counted and logged at debug.
    async fn read_fields(
        &self,
        key: &str,
        max: usize,
        fields: usize,
    ) -> Result<tlsrpt::NodeValues, SharedError> {
        let raw = self
            .call(|mut conn| async move {
                ::redis::cmd("EVAL")
                    .arg(CAPPED_HGETALL)
                    .arg(1)
                    .arg(key)
                    .arg(max)
                    .arg(fields)
                    .query_async::<Vec<Vec<u8>>>(&mut conn)
                    .await
                    .map_err(Failure::Redis)
            })
            .await
            .map_err(shared)?;
        let mut out = Vec::new();
        for pair in raw.chunks_exact(2) {
            let node = match std::str::from_utf8(&pair[0]) {
                Ok(n) if tlsrpt::is_token(n) => n,
                _ => {
                    reject(key, "invalid");
                    continue;
                }
            };
            if pair[1].is_empty() {
                reject(key, "too_large");
                continue;
            }
            match unseal_max(self.key.as_ref(), &format!("{key}\n{node}"), &pair[1], max) {
                Ok(json) => out.push((node.to_owned(), json.to_vec())),
                Err(why) => reject(key, why),
            }
        }
        Ok(out)
    }
}

fn shared(e: ClusterError) -> SharedError {
    SharedError(e.0)
}

fn reject(key: &str, why: &'static str) {
    crate::metrics::tlsrpt_shared_rejected(why);
    log::debug!("shared cache: {key}: a TLS-RPT value ignored ({why})");
}

impl TlsrptCluster for RedisCluster {
    fn has_heartbeat<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<bool, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            self.call(|mut conn| {
                let key = &key;
                async move {
                    ::redis::cmd("HEXISTS")
                        .arg(key)
                        .arg(node)
                        .query_async::<bool>(&mut conn)
                        .await
                        .map_err(Failure::Redis)
                }
            })
            .await
            .map_err(shared)
        }
        .boxed()
    }

    fn push<'a>(
        &'a self,
        node: &'a str,
        values: &'a [(Day, String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let ttl = ttl_ms(tlsrpt::VALUE_TTL);
            for chunk in values.chunks(PUSH_CHUNK) {
                let mut pipe = ::redis::pipe();
                for (day, domain, json) in chunk {
                    let key = self.counts_key(*day, domain);
                    let domains = self.tlsrpt_key(format_args!("domains:{day}"));
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg(node)
                        .arg(self.seal_field(&key, node, json))
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl)
                        .ignore()
                        .cmd("SADD")
                        .arg(&domains)
                        .arg(domain)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&domains)
                        .arg(ttl)
                        .ignore();
                }
                // Repeating a chunk is harmless: the same totals, the same members.
                self.call(|mut conn| {
                    let pipe = &pipe;
                    async move {
                        pipe.query_async::<()>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    }
                })
                .await
                .map_err(shared)?;
            }
            Ok(())
        }
        .boxed()
    }

    fn set_heartbeat<'a>(
        &'a self,
        node: &'a str,
        heartbeat: &'a [u8],
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            let mut pipe = ::redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg(node)
                .arg(self.seal_field(&key, node, heartbeat))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_ms(NODES_TTL))
                .ignore();
            self.call(|mut conn| {
                let pipe = &pipe;
                async move {
                    pipe.query_async::<()>(&mut conn)
                        .await
                        .map_err(Failure::Redis)
                }
            })
            .await
            .map_err(shared)
        }
        .boxed()
    }

    fn heartbeats(&self) -> BoxFuture<'_, Result<tlsrpt::NodeValues, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("nodes"));
            self.read_fields(&key, MAX_HEARTBEAT, MAX_HEARTBEATS).await
        }
        .boxed()
    }

    fn domains(&self, day: Day) -> BoxFuture<'_, Result<Vec<String>, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("domains:{day}"));
            let raw = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        ::redis::cmd("SMEMBERS")
                            .arg(key)
                            .query_async::<Vec<Vec<u8>>>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    }
                })
                .await
                .map_err(shared)?;
            // Checked by the caller (`cluster::is_domain`); not UTF-8 is not a name.
            Ok(raw
                .into_iter()
                .map(|d| String::from_utf8(d).unwrap_or_default())
                .collect())
        }
        .boxed()
    }

    fn values<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<tlsrpt::NodeValues, SharedError>> {
        async move {
            let key = self.counts_key(day, domain);
            self.read_fields(&key, tlsrpt::MAX_VALUE, tlsrpt::MAX_NODES)
                .await
        }
        .boxed()
    }

    fn lease<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("lease:{day}:{domain}"));
            let ms = ttl_ms(tlsrpt::LEASE_TTL);
            let answer = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        ::redis::cmd("EVAL")
                            .arg(TLSRPT_LEASE_SCRIPT)
                            .arg(1)
                            .arg(key)
                            .arg(node)
                            .arg(ms)
                            .query_async::<i64>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    }
                })
                .await
                .map_err(shared)?;
            if answer == 2 {
                reject(&key, "lease");
            }
            Ok(answer != 0)
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("lease:{day}:{domain}"));
            self.call(|mut conn| {
                let key = &key;
                async move {
                    ::redis::cmd("EVAL")
                        .arg(RELEASE_SCRIPT)
                        .arg(1)
                        .arg(key)
                        .arg(node)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(Failure::Redis)
                }
            })
            .await
            .map_err(shared)
        }
        .boxed()
    }

    fn sent<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("sent:{day}:{domain}"));
            let raw = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        ::redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    }
                })
                .await
                .map_err(shared)?;
            Ok(raw.and_then(|raw| self.marker(&key, &raw)))
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        day: Day,
        domain: &'a str,
        report_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SharedError>> {
        async move {
            let key = self.tlsrpt_key(format_args!("sent:{day}:{domain}"));
            let ours = self.seal_field(&key, "", report_id.as_bytes());
            let ms = ttl_ms(tlsrpt::MARKER_TTL);
            // Twice at most: a marker no node wrote (unsigned, garbage) is deleted,
            // exactly that value, and the claim made again.
            for _ in 0..2 {
                let (key_ref, ours_ref) = (&key, &ours);
                let held = self
                    .call(|mut conn| async move {
                        ::redis::cmd("EVAL")
                            .arg(CLAIM_SCRIPT)
                            .arg(1)
                            .arg(key_ref)
                            .arg(ours_ref)
                            .arg(ms)
                            .query_async::<Vec<u8>>(&mut conn)
                            .await
                            .map_err(Failure::Redis)
                    })
                    .await
                    .map_err(shared)?;
                if held == ours {
                    return Ok(report_id.to_owned());
                }
                if let Some(id) = self.marker(&key, &held) {
                    return Ok(id);
                }
                let held = &held;
                self.call(|mut conn| async move {
                    ::redis::cmd("EVAL")
                        .arg(RELEASE_SCRIPT)
                        .arg(1)
                        .arg(key_ref)
                        .arg(held)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(Failure::Redis)
                })
                .await
                .map_err(shared)?;
            }
            Err(SharedError(format!("{key}: the marker cannot be set")))
        }
        .boxed()
    }
}

impl RedisCluster {
    /// The report-id in a marker as read, if a node wrote it.
    fn marker(&self, key: &str, raw: &[u8]) -> Option<String> {
        let id = match unseal_max(self.key.as_ref(), &format!("{key}\n"), raw, 256) {
            Ok(id) => id,
            Err(why) => {
                reject(key, why);
                return None;
            }
        };
        match std::str::from_utf8(id) {
            Ok(id) if tlsrpt::is_token(id) => Some(id.to_owned()),
            _ => {
                reject(key, "invalid");
                None
            }
        }
    }
}

/// Take the lease if it is free (`SET NX PX`), in one step with reading how long the
/// lease in place still runs: [`TAKEN`], or its `PTTL` (-1: no expiry).
const LEASE_SCRIPT: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
     return -3 else return redis.call('PTTL', KEYS[1]) end";

/// [`LEASE_SCRIPT`]'s answer when this node took the lease (no `PTTL` is below -2).
const TAKEN: i64 = -3;

/// What precedes a signed record's JSON: `hmac-sha256:`, 64 hex digits, a newline.
const SEAL_TAG: &[u8] = b"hmac-sha256:";

/// The signed form of a record: the HMAC-SHA256 of the Redis key and the JSON, then
/// the JSON. The key is signed with it so that a record cannot be copied to another
/// domain (or another cluster's prefix).
fn seal(secret: &hmac::Key, redis_key: &str, json: &[u8]) -> Vec<u8> {
    let tag = hmac::sign(secret, &signed_text(redis_key, json));
    let mut out = Vec::with_capacity(SEAL_TAG.len() + 65 + json.len());
    out.extend_from_slice(SEAL_TAG);
    for b in tag.as_ref() {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(json);
    out
}

fn signed_text(redis_key: &str, json: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(redis_key.len() + 1 + json.len());
    text.extend_from_slice(redis_key.as_bytes());
    text.push(b'\n');
    text.extend_from_slice(json);
    text
}

/// The JSON of a record as read, or why it is ignored: too long, or (with a key) not
/// signed by a node of the cluster. Without a key, a signed record's JSON is taken as
/// is, unchecked, so that nodes can be given the key one at a time.
fn unseal<'a>(
    secret: Option<&hmac::Key>,
    redis_key: &str,
    raw: &'a [u8],
) -> Result<&'a [u8], &'static str> {
    unseal_max(secret, redis_key, raw, MAX_RECORD)
}

/// [`unseal`] for values of at most `max` bytes.
fn unseal_max<'a>(
    secret: Option<&hmac::Key>,
    redis_key: &str,
    raw: &'a [u8],
    max: usize,
) -> Result<&'a [u8], &'static str> {
    if raw.len() > max {
        return Err("too_large");
    }
    let sealed = raw.strip_prefix(SEAL_TAG).and_then(|rest| {
        let newline = rest.iter().position(|&b| b == b'\n')?;
        Some((&rest[..newline], &rest[newline + 1..]))
    });
    match (secret, sealed) {
        (None, Some((_, json))) => Ok(json),
        (None, None) => Ok(raw),
        (Some(_), None) => Err("signature"),
        (Some(secret), Some((hex, json))) => {
            let tag = unhex(hex).ok_or("signature")?;
            hmac::verify(secret, &signed_text(redis_key, json), &tag)
                .map(|()| json)
                .map_err(|_| "signature")
        }
    }
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Why the start-up log should warn about `config`, if it should: records neither
/// signed (`key_file`) nor carried over TLS (`rediss://`) to a Redis off this host
/// can be rewritten by anyone on the path. A host name other than `localhost` counts
/// as off this host (it is not resolved here).
pub fn exposure_warning(config: &RedisConfig) -> Option<String> {
    if config.key.is_some() {
        return None;
    }
    let client = Client::open(config.url.as_str()).ok()?;
    let ConnectionAddr::Tcp(host, _) = client.get_connection_info().addr() else {
        // TLS, or a unix socket: not readable or writable on the way.
        return None;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "the shared cache at {} is reached without TLS and its records are not signed: \
             anyone on the network path can change the policies this node learns; \
             use rediss:// or set [redis] key_file",
            redact(&config.url)
        )
    })
}

/// Delete the lease key only if it still holds our node id.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A connection manager that connects on first use, so that creating one never
/// waits on (or fails because of) an unreachable Redis.
fn new_manager(
    client: &Client,
    config: &ConnectionManagerConfig,
    display_url: &str,
) -> Result<ConnectionManager, ClusterError> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| ClusterError(format!("{display_url}: {e}")))
}

/// `PX` wants whole milliseconds, at least 1 (0 is an error), and not so many that
/// Redis's clock overflows.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

/// `text` with control characters (line breaks included) escaped, for a log line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`: URLs go into logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        // `redis://secret@host` is not a password to Redis, but may be meant as one.
        None => format!("{scheme}://***@{host}"),
    }
}

/// `hostname:pid`: unique among the nodes of a cluster, and tells an operator
/// looking at a lease which node holds it.
fn node_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates when
    // the name fits, and we stop at the first NUL or the end of the buffer anyway.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let host = if host.is_empty() { "unknown" } else { &host };
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact("rediss://u:p@ss@h"), "rediss://u:***@h");
        assert_eq!(redact("redis://pw@h"), "redis://***@h");
    }

    #[test]
    fn errors_are_logged_on_one_line() {
        assert_eq!(
            one_line("Parse error at 1\nUnexpected `84`\r\n"),
            "Parse error at 1\\nUnexpected `84`\\r\\n"
        );
        assert_eq!(one_line("plain é"), "plain é");
    }

    #[test]
    fn ttl_is_clamped_to_what_px_accepts() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 1);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[tokio::test]
    async fn only_a_bad_url_fails_connect() {
        let config = |url: &str| RedisConfig {
            url: url.to_owned(),
            prefix: "t:".to_owned(),
            timeout: Duration::from_millis(50),
            ca_file: None,
            key_file: None,
            key: None,
        };
        assert!(RedisCluster::connect(&config("http://127.0.0.1:1"))
            .await
            .is_err());
        // rediss:// is supported (TLS through rustls, with the process's provider);
        // nothing listens on port 1, which connect does not mind.
        assert!(Client::open("rediss://127.0.0.1:1/0").is_ok());
        assert!(RedisCluster::connect(&config("redis://127.0.0.1:1/0"))
            .await
            .is_ok());
    }

    fn key(secret: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
    }

    /// SPEC 5.10: with a key, only records signed with it, for this very Redis key,
    /// are read; without one, signed and unsigned records alike.
    #[test]
    fn records_are_read_only_when_signed_with_the_clusters_key() {
        let json = br#"{"kind":"negative","checked":1,"until":2}"#;
        let ours = key("0123456789abcdef0123456789abcdef");
        let theirs = key("fedcba9876543210fedcba9876543210");
        let sealed = seal(&ours, "m:policy:example.com", json);
        assert!(sealed.starts_with(b"hmac-sha256:"), "{sealed:?}");
        assert_eq!(sealed.len(), SEAL_TAG.len() + 64 + 1 + json.len());
        type Row<'a> = (
            Option<&'a hmac::Key>,
            &'a str,
            Vec<u8>,
            Result<&'a [u8], &'a str>,
        );
        let rows: Vec<Row> = vec![
            (
                Some(&ours),
                "m:policy:example.com",
                sealed.clone(),
                Ok(json),
            ),
            (
                Some(&ours),
                "m:policy:example.com",
                json.to_vec(),
                Err("signature"),
            ),
            (
                Some(&theirs),
                "m:policy:example.com",
                sealed.clone(),
                Err("signature"),
            ),
            // Copied to another domain, or another prefix.
            (
                Some(&ours),
                "m:policy:victim.example",
                sealed.clone(),
                Err("signature"),
            ),
            (
                Some(&ours),
                "n:policy:example.com",
                sealed.clone(),
                Err("signature"),
            ),
            // Changed after signing.
            (
                Some(&ours),
                "m:policy:example.com",
                [&sealed[..sealed.len() - 2], b"3}"].concat(),
                Err("signature"),
            ),
            (
                Some(&ours),
                "m:policy:example.com",
                b"hmac-sha256:zz\n{}".to_vec(),
                Err("signature"),
            ),
            (None, "m:policy:example.com", sealed.clone(), Ok(json)),
            (None, "m:policy:example.com", json.to_vec(), Ok(json)),
            (
                None,
                "m:policy:example.com",
                vec![b' '; MAX_RECORD + 1],
                Err("too_large"),
            ),
        ];
        for (secret, redis_key, raw, want) in rows {
            assert_eq!(
                unseal(secret, redis_key, &raw),
                want,
                "{redis_key} {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(80)])
            );
        }
    }

    #[test]
    fn plaintext_redis_off_this_host_without_a_key_is_warned_about() {
        let config = |url: &str, key: bool| RedisConfig {
            url: url.to_owned(),
            prefix: "t:".to_owned(),
            timeout: Duration::from_millis(50),
            ca_file: None,
            key_file: None,
            key: key.then(|| {
                crate::config::RedisKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
            }),
        };
        for (url, key, warned) in [
            ("redis://10.0.0.5:6379/0", false, true),
            ("redis://:secret@redis.example:6379", false, true),
            ("redis://[2001:db8::1]:6379", false, true),
            ("redis://10.0.0.5:6379/0", true, false),
            ("rediss://10.0.0.5:6380/0", false, false),
            ("redis://127.0.0.1:6379/0", false, false),
            ("redis://127.0.0.2:6379/0", false, false),
            ("redis://[::1]:6379", false, false),
            ("redis://localhost", false, false),
        ] {
            let warning = exposure_warning(&config(url, key));
            assert_eq!(warning.is_some(), warned, "{url} {key}: {warning:?}");
            if let Some(w) = warning {
                assert!(!w.contains("secret"), "{w}");
                assert!(w.contains("key_file"), "{w}");
            }
        }
    }

    #[test]
    fn node_id_names_host_and_pid() {
        let id = node_id();
        assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
        assert!(!id.starts_with(':'), "{id}");
    }
}
