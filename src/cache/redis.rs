//! [`SharedCache`] on Redis (or Valkey): `[cache] backend = "redis"` (issue 4).
//!
//! Keys, under the configured prefix:
//! - `{prefix}policy:{domain}`: the JSON of a [`SharedEntry`], `SET ... PX ttl`;
//! - `{prefix}lease:{domain}`: the id of the node refreshing the domain, `SET ... NX PX ttl`.
//!
//! The node must never wait on Redis for long, nor fail because of it:
//! - [`RedisShared::connect`] does not need Redis to be up: the connection is made
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
use ::redis::{Client, ErrorKind, RedisError, Value};
use futures_util::future::{BoxFuture, FutureExt};

use super::shared::{SharedCache, SharedEntry, SharedError};
use crate::config::RedisConfig;

/// How long the node leaves Redis alone after a failure.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// At most one warning per this long while Redis keeps failing.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Redis refuses `PX` values that overflow its clock; a century is plenty.
const MAX_TTL_MS: u64 = 100 * 365 * 86_400 * 1000;

/// A shared cache on one Redis server. Cheap to share (`Arc`); calls may run concurrently.
pub struct RedisShared {
    client: Client,
    manager_config: ConnectionManagerConfig,
    prefix: String,
    timeout: Duration,
    /// `url` with any password replaced, for log messages.
    display_url: String,
    node_id: String,
    state: Mutex<State>,
}

struct State {
    /// Multiplexed, cloned for each call; replaced by a fresh one when probing after
    /// a failure (see [`RedisShared::begin`]).
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

impl RedisShared {
    /// A shared cache for `config`. Fails only when the URL is unusable (a
    /// configuration error); an unreachable Redis is logged and retried later.
    pub async fn connect(config: &RedisConfig) -> Result<RedisShared, SharedError> {
        let display_url = redact(&config.url);
        let client = match &config.ca_file {
            None => Client::open(config.url.as_str()),
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| SharedError(format!("redis.ca_file {}: {e}", path.display())))?;
                Client::build_with_tls(
                    config.url.as_str(),
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
        }
        .map_err(|e| SharedError(format!("{display_url}: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // We pace reconnection ourselves (RETRY_INTERVAL): the manager's own
            // back-off would keep callers waiting on a connection that is not coming.
            .set_number_of_retries(0);
        let manager = new_manager(&client, &manager_config, &display_url)?;
        let shared = RedisShared {
            client,
            manager_config,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            display_url,
            node_id: node_id(),
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
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, SharedError>
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
    fn begin(&self) -> Result<Attempt, SharedError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Some(down) = &mut state.down else {
            return Ok(Attempt::Normal(state.manager.clone()));
        };
        if now < down.retry_at {
            return Err(SharedError(down.error.clone()));
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

    fn failed(&self, failure: Failure) -> SharedError {
        crate::metrics::shared_cache_error();
        let message = match failure {
            Failure::Redis(e) => format!("{}: {e}", self.display_url),
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
        SharedError(message)
    }
}

impl SharedCache for RedisShared {
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<SharedEntry>, SharedError>> {
        async move {
            let key = self.policy_key(domain);
            let raw = self
                .call(|mut conn| {
                    let key = &key;
                    async move {
                        match ::redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                        {
                            // Someone else's value of another type under our key: as
                            // unusable as garbage, and no reason to think Redis down.
                            Err(e) if e.code() == Some("WRONGTYPE") => {
                                log::debug!("shared cache: {key}: {e}; ignored");
                                Ok(None)
                            }
                            other => other.map_err(Failure::Redis),
                        }
                    }
                })
                .await?;
            let Some(raw) = raw else {
                return Ok(None);
            };
            // A value we cannot read (another version's format, corruption) is a miss:
            // the node resolves the domain itself and a later put replaces it.
            match serde_json::from_slice::<SharedEntry>(&raw) {
                Ok(entry) => Ok(Some(entry)),
                Err(e) => {
                    log::debug!("shared cache: {key}: unreadable value ignored: {e}");
                    Ok(None)
                }
            }
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a SharedEntry,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        async move {
            let key = self.policy_key(domain);
            let value = serde_json::to_vec(entry)
                .map_err(|e| SharedError(format!("{key}: cannot serialise: {e}")))?;
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
    ) -> BoxFuture<'a, Result<bool, SharedError>> {
        async move {
            let key = self.lease_key(domain);
            let ms = ttl_ms(ttl);
            self.call(|mut conn| {
                let key = &key;
                async move {
                    let reply = ::redis::cmd("SET")
                        .arg(key)
                        .arg(&self.node_id)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async::<Value>(&mut conn)
                        .await
                        .map_err(Failure::Redis)?;
                    match reply {
                        // Nil: the key exists, another node holds the lease.
                        Value::Nil => Ok(false),
                        Value::Okay => Ok(true),
                        Value::SimpleString(s) if s == "OK" => Ok(true),
                        other => Err(Failure::Redis(RedisError::from((
                            ErrorKind::UnexpectedReturnType,
                            "unexpected reply to SET NX",
                            format!("{other:?}"),
                        )))),
                    }
                }
            })
            .await
        }
        .boxed()
    }

    fn release<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
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

/// Delete the lease key only if it still holds our node id.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A connection manager that connects on first use, so that creating one never
/// waits on (or fails because of) an unreachable Redis.
fn new_manager(
    client: &Client,
    config: &ConnectionManagerConfig,
    display_url: &str,
) -> Result<ConnectionManager, SharedError> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| SharedError(format!("{display_url}: {e}")))
}

/// `PX` wants whole milliseconds, at least 1 (0 is an error), and not so many that
/// Redis's clock overflows.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
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
        };
        assert!(RedisShared::connect(&config("http://127.0.0.1:1"))
            .await
            .is_err());
        // rediss:// is supported (TLS through rustls, with the process's provider);
        // nothing listens on port 1, which connect does not mind.
        assert!(Client::open("rediss://127.0.0.1:1/0").is_ok());
        assert!(RedisShared::connect(&config("redis://127.0.0.1:1/0"))
            .await
            .is_ok());
    }

    #[test]
    fn node_id_names_host_and_pid() {
        let id = node_id();
        assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
        assert!(!id.starts_with(':'), "{id}");
    }
}
