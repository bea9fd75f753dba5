//! `mtastsd.toml` → validated [`Config`] (SPEC 7.4, 7.5).
//!
//! Every section and key is optional; the built-in defaults make a working daemon
//! with no file at all. Unknown keys and bad values are errors that name the file,
//! the line and the key.
//!
//! How errors find their line and key: values are checked while they are
//! deserialized (the newtypes in [`values`]), so every error, like toml's own
//! syntax and type errors, carries the byte span of the offending key or value;
//! [`locate`] turns the span into a line and a dotted key.
//! `contrib/mtastsd.toml` documents every key.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the model ([`Config`] and its sections), defaults, loading |
//! | `raw.rs` | the file as written (serde shapes) and its conversion into the model |
//! | `values.rs` | the validating value types (durations, addresses, modes, names) |
//! | `locate.rs` | a toml span → line and dotted key |

mod locate;
mod raw;
#[cfg(test)]
mod tests;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Defined by the logger, which sits below the configuration.
pub use crate::logging::LogTarget;
use crate::overrides::Overrides;
pub use crate::postfix::Profile;
use locate::{invalid_from_toml, key_at, line_at, line_of_key};
use raw::RawConfig;
pub use values::{parse_duration, parse_nameserver};

/// The name of the built-in profile, the last field of
/// `socketmap:inet:127.0.0.1:8461:postfix` (SPEC 1.2).
pub const DEFAULT_PROFILE: &str = "postfix";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub dns: DnsConfig,
    pub fetch: FetchConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// The shared cache, when `cache.backend = "redis"`.
    pub redis: Option<RedisConfig>,
    /// DANE precedence (SPEC 6.4): `[dane]` and the profiles' `dane` keys.
    pub dane: DaneConfig,
    /// Socketmap name → profile. Always contains [`DEFAULT_PROFILE`] (added with
    /// defaults when the file does not define it).
    pub profiles: BTreeMap<String, Profile>,
    /// SPEC 6.5: fixed answers, consulted before the cache. [`Config::load`] adds
    /// the entries of the files in `override_files`.
    pub overrides: Overrides,
    /// `[overrides] file` and `[profiles.NAME.overrides] file`: (profile, path),
    /// read by [`Config::load`] (again on SIGHUP).
    pub override_files: Vec<(Option<String>, PathBuf)>,
    /// `[tlsrpt]`: TLS-RPT reports (SPEC 8). `None` (no such table): off.
    pub tlsrpt: Option<TlsrptConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`, e.g. `127.0.0.1:8461` or `[::1]:8461` (SPEC 7.5).
    Inet(SocketAddr),
    /// `unix:/run/mtastsd/socketmap`.
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Default: `["127.0.0.1:8461"]`.
    pub listen: Vec<ListenAddr>,
    /// File mode of unix sockets. Default 0o660.
    pub unix_mode: u32,
    /// Owner of unix sockets (user name or uid); `None` keeps the daemon's user.
    /// Giving a socket away needs root: mostly useful for non-systemd setups.
    pub unix_owner: Option<String>,
    /// Group of unix sockets (group name or gid), e.g. `postfix` so that a
    /// chrooted Postfix can connect; the daemon must be a member of it
    /// (`SupplementaryGroups=postfix` under systemd). `None`: the daemon's group.
    pub unix_group: Option<String>,
    /// Close a connection idle this long (SPEC 1.5). Default 60 s.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered `TEMP` and closed. Default 1000.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Empty: use /etc/resolv.conf (default). Else these servers, with port.
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout. Default 5 s.
    pub timeout: Duration,
    /// Resolutions (TXT query, then the policy host's address and the HTTPS fetch)
    /// running at once, answer path and background together: a flood of new domains
    /// cannot put more than this many queries on the resolver. Default 256.
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchConfig {
    /// Total deadline for one policy fetch (SPEC 3.5). Default 10 s.
    pub timeout: Duration,
    /// Extra trust anchors (PEM) on top of the system roots (SPEC 3.7).
    pub ca_file: Option<PathBuf>,
    /// Port of the policy host. Always 443 in production (RFC 8461 §3.3);
    /// settable for local test fixtures. Default 443.
    pub https_port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Most domains kept (SPEC 5.7). Default 100 000.
    pub size: usize,
    /// Where the cache is persisted (SPEC 5.8). Default `/var/lib/mtastsd`.
    /// `None` (configured as `state_dir = ""`) disables persistence.
    pub state_dir: Option<PathBuf>,
    /// Minimum interval between TXT id checks of one domain (SPEC 5.4). Default 60 s.
    pub recheck: Duration,
    /// How often a changed cache is written to disk. Default 60 s.
    pub save_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Default stderr (systemd forwards it to syslog with `SyslogFacility=mail`).
    pub target: LogTarget,
    /// Default info.
    pub level: log::LevelFilter,
}

/// `[redis]`: the shared cache of a cluster (`cache.backend = "redis"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:password@]host[:port][/db]` or `rediss://...` (TLS).
    pub url: String,
    /// Prepended to every key, so several clusters can share one Redis.
    /// Default `mtastsd:`.
    pub prefix: String,
    /// Longest wait for one Redis command; past it the node carries on alone.
    /// Default 250 ms.
    pub timeout: Duration,
    /// With `rediss://`: the CA certificates (PEM) that the Redis server's
    /// certificate must chain to, instead of the system's roots. Default none.
    pub ca_file: Option<PathBuf>,
    /// `key_file`: the secret shared by the cluster's nodes, which sign the records
    /// they write and ignore records without a valid signature (SPEC 5.10). Read
    /// by [`Config::load`] into [`RedisConfig::key`]. Default none.
    pub key_file: Option<PathBuf>,
    /// The contents of `key_file`, surrounding whitespace trimmed.
    pub key: Option<RedisKey>,
}

/// The shared secret of a cluster's nodes (`[redis] key_file`). Its `Debug` does not
/// show it: configurations are printed in logs and test failures.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisKey(Vec<u8>);

/// The fewest bytes a `key_file` may hold: what `openssl rand -hex 16` writes, 128
/// bits of randomness.
pub const REDIS_KEY_MIN: usize = 32;

impl RedisKey {
    /// A key of at least [`REDIS_KEY_MIN`] bytes (surrounding whitespace, such as the
    /// newline an editor or `openssl rand` adds, is not part of it).
    pub fn new(bytes: &[u8]) -> Result<RedisKey, String> {
        let key = bytes.trim_ascii();
        if key.len() < REDIS_KEY_MIN {
            return Err(format!(
                "holds {} bytes, at least {REDIS_KEY_MIN} are needed (make one with \
                 `openssl rand -hex 32`)",
                key.len()
            ));
        }
        Ok(RedisKey(key.to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RedisKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisKey({} bytes)", self.0.len())
    }
}

/// DANE precedence (SPEC 6.4; see [`crate::dane`] for why the AD bit is trusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaneConfig {
    /// `[dane] nameservers`: validating resolvers (a local unbound, say) whose AD
    /// bit is believed. Required when a profile sets `dane = true`. Queries use
    /// `dns.timeout`.
    pub nameservers: Vec<SocketAddr>,
    /// The profiles with `dane = true` (default false). A set beside
    /// [`Config::profiles`] rather than a [`Profile`] field, which tests and benches
    /// build literally.
    pub profiles: BTreeSet<String>,
}

impl DaneConfig {
    /// Does the profile of this map name (as chosen by [`Config::profile`]) check DANE?
    pub fn enabled(&self, profile: &str) -> bool {
        !self.profiles.is_empty() && self.profiles.contains(profile)
    }

    /// The validating resolvers not on loopback: their AD bit is believed from
    /// across the network, where anyone on the path can set it (RFC 6698 §4.1,
    /// RFC 7672 §2.1 assume a trusted path to the validator). Warned about at
    /// start-up.
    pub fn off_loopback(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter(|a| !a.ip().is_loopback())
            .copied()
            .collect()
    }

    /// The start-up warning for [`DaneConfig::off_loopback`], if any.
    pub fn off_loopback_warning(&self) -> Option<String> {
        let far = self.off_loopback();
        if far.is_empty() {
            return None;
        }
        let list: Vec<String> = far.iter().map(ToString::to_string).collect();
        Some(format!(
            "[dane] nameservers {} not on loopback: the AD bit of their answers decides \
             dane-only and is believed from across the network, where anyone on the path \
             can forge it; run the validating resolver on this host (127.0.0.1 or ::1)",
            list.join(", ")
        ))
    }
}

/// `[tlsrpt]`: collect what Postfix 3.10+ reports of its TLS sessions and send the
/// daily RFC 8460 reports (SPEC 8). Needs `cache.state_dir`, where the counts are kept
/// (`tlsrpt.sqlite`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptConfig {
    /// The unix datagram socket libtlsrpt sends to (SPEC 8.1): Postfix's
    /// `smtp_tlsrpt_socket_name`, which is relative to its queue directory, so that a
    /// chrooted smtp(8) reaches it (default `/var/spool/postfix/mtastsd/tlsrpt`, i.e.
    /// `smtp_tlsrpt_socket_name = mtastsd/tlsrpt`). Mode, owner and group as
    /// `[server] unix_mode`, `unix_owner`, `unix_group`.
    pub socket: PathBuf,
    /// Send the reports. Default false: collect, and show what would be sent
    /// (`mtastsd tlsrpt show|report`), nothing leaves the host.
    pub send: bool,
    /// RFC 8460 §4.4 `organization-name`. Required with `send = true`.
    pub organization_name: Option<String>,
    /// RFC 8460 §4.4 `contact-info`: an address or URI, not empty. Required with
    /// `send = true`.
    pub contact_info: Option<String>,
    /// RFC 8460 §5.3: the submitter domain (file name, subject,
    /// `TLS-Report-Submitter`). Default: the domain of `contact_info` when it is an
    /// address (`x@d` or `mailto:x@d`); required with `send = true` otherwise.
    pub submitter: Option<String>,
    /// The sender of `mailto:` reports. Default: `contact_info` when it is an
    /// address; required with `send = true` otherwise.
    pub from: Option<String>,
    /// The local MTA's submission command for `mailto:` reports, the recipient
    /// appended; the message on its standard input. Default
    /// `["/usr/sbin/sendmail", "-i"]`.
    pub sendmail: Vec<String>,
    /// Reports are sent after the UTC day ends, each at a random delay up to this
    /// long (SPEC 8.4: spread, so that receivers are not flooded at midnight).
    /// Default 4 h, at most 23 h.
    pub delay: Duration,
    /// Days of counts and reports kept (SPEC 8.6). Default 14, 3 to 366.
    pub keep_days: u32,
    /// Failure details in one report policy (SPEC 8.6: the largest counts kept, the
    /// rest summed). Default 100.
    pub max_details: usize,
    /// Deadline of one HTTPS report upload. Default 30 s.
    pub http_timeout: Duration,
}

impl TlsrptConfig {
    pub const DEFAULT_SOCKET: &'static str = "/var/spool/postfix/mtastsd/tlsrpt";
    /// The longest [`TlsrptConfig::delay`]: a report must still leave on the day
    /// after the one it covers.
    pub const MAX_DELAY: Duration = Duration::from_secs(23 * 3600);
}

impl Default for TlsrptConfig {
    /// What an empty `[tlsrpt]` table gives.
    fn default() -> Self {
        TlsrptConfig {
            socket: PathBuf::from(Self::DEFAULT_SOCKET),
            send: false,
            organization_name: None,
            contact_info: None,
            submitter: None,
            from: None,
            sendmail: vec!["/usr/sbin/sendmail".to_owned(), "-i".to_owned()],
            delay: Duration::from_secs(4 * 3600),
            keep_days: 14,
            max_details: 100,
            http_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (Prometheus text format) and `GET /healthz`.
    /// Default: off.
    pub listen: Option<SocketAddr>,
}

/// A configuration error, displayed as `file:line: key: message`
/// (the line is left out when it is 0, the key when it is empty).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", located(.path, *.line, .key, .message))]
    Invalid {
        path: PathBuf,
        /// 1-based; 0 when the file as a whole is at fault.
        line: usize,
        /// Dotted key path, e.g. `server.listen`; empty when unknown.
        key: String,
        message: String,
    },
}

fn located(path: &Path, line: usize, key: &str, message: &str) -> String {
    let mut out = path.display().to_string();
    if line > 0 {
        out.push_str(&format!(":{line}"));
    }
    out.push_str(": ");
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}

// ---------------------------------------------------------------------------
// Defaults (keep in step with contrib/mtastsd.toml: a test compares them).

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            dns: DnsConfig::default(),
            fetch: FetchConfig::default(),
            cache: CacheConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            redis: None,
            dane: DaneConfig::default(),
            profiles: BTreeMap::from([(DEFAULT_PROFILE.to_owned(), Profile::default())]),
            overrides: Overrides::default(),
            override_files: Vec::new(),
            tlsrpt: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            // Loopback only: never listen elsewhere unless configured (SPEC 7.5).
            listen: vec![ListenAddr::Inet(SocketAddr::from(([127, 0, 0, 1], 8461)))],
            unix_mode: 0o660,
            unix_owner: None,
            unix_group: None,
            idle_timeout: Duration::from_secs(60),
            max_connections: 1000,
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            max_concurrency: 256,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            timeout: Duration::from_secs(10),
            ca_file: None,
            https_port: 443,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: 100_000,
            state_dir: Some(PathBuf::from("/var/lib/mtastsd")),
            recheck: Duration::from_secs(60),
            save_interval: Duration::from_secs(60),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Stderr,
            level: log::LevelFilter::Info,
        }
    }
}

impl fmt::Display for ListenAddr {
    /// The form the configuration uses: `127.0.0.1:8461`, `[::1]:8461`,
    /// `unix:/run/mtastsd/socketmap`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Inet(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a `--listen`-style address string was refused; says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseListenAddrError(String);

impl std::str::FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    /// The syntax of `server.listen` entries, for the command line.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        values::parse_listen(text).map_err(ParseListenAddrError)
    }
}

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut config = match std::str::from_utf8(&bytes) {
            Ok(text) => Self::parse(text, path)?,
            Err(e) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: line_at(&bytes, e.valid_up_to()),
                key: String::new(),
                message: "the file is not valid UTF-8 (TOML files must be)".to_owned(),
            })?,
        };
        config.load_override_files()?;
        config.load_redis_key(&String::from_utf8_lossy(&bytes), path)?;
        Ok(config)
    }

    /// Reads `[redis] key_file` (SPEC 7.4: an error names this file, the line and the
    /// key; at start-up it stops the daemon, on SIGHUP the old configuration stays).
    fn load_redis_key(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let Some(redis) = &mut self.redis else {
            return Ok(());
        };
        let Some(key_file) = &redis.key_file else {
            return Ok(());
        };
        let read = std::fs::read(key_file)
            .map_err(|e| format!("cannot read {}: {e}", key_file.display()))
            .and_then(|bytes| {
                RedisKey::new(&bytes).map_err(|e| format!("{}: {e}", key_file.display()))
            });
        match read {
            Ok(key) => {
                redis.key = Some(key);
                Ok(())
            }
            Err(message) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of_key(text, &["redis", "key_file"]),
                key: "redis.key_file".to_owned(),
                message,
            }),
        }
    }

    /// Validate TOML text; `path` is used only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid_from_toml(text, path, &e))?;
        raw.into_config()
            .map_err(|(span, message)| ConfigError::Invalid {
                path: path.to_owned(),
                line: line_at(text.as_bytes(), span.start),
                key: key_at(text, span.start),
                message,
            })
    }

    /// Reads the override files (entries in the TOML file win over the file's).
    fn load_override_files(&mut self) -> Result<(), ConfigError> {
        let mut from_files = Overrides::default();
        for (profile, path) in &self.override_files {
            let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            let entries = crate::overrides::parse_file(&text).map_err(|(line, message)| {
                ConfigError::Invalid {
                    path: path.clone(),
                    line,
                    key: String::new(),
                    message,
                }
            })?;
            for (domain, answer) in entries {
                from_files.insert(profile.as_deref(), domain, answer);
            }
        }
        from_files.extend(std::mem::take(&mut self.overrides));
        self.overrides = from_files;
        Ok(())
    }

    /// The profile for a socketmap name; unknown names get the default (SPEC 1.2).
    /// The `bool` is `false` when the name was unknown (the caller logs it once).
    pub fn profile(&self, name: &str) -> (&Profile, bool) {
        match self.profiles.get(name) {
            Some(profile) => (profile, true),
            None => (
                self.profiles
                    .get(DEFAULT_PROFILE)
                    .unwrap_or(&Profile::BUILTIN),
                false,
            ),
        }
    }
}
