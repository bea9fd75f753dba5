//! `mtastsd.toml` → validated [`Config`] (SPEC 7.4, 7.5).
//!
//! Every section and key is optional; the built-in defaults make a working daemon
//! with no file at all. Unknown keys and bad values are errors that name the file,
//! the line and the key.
//!
//! How errors find their line and key: values are checked while they are
//! deserialized (the private newtypes below), so every error, like toml's own
//! syntax and type errors, carries the byte span of the offending key or value.
//! List elements are the exception (toml reports their errors at the list), so
//! `listen` and `nameservers` are read as [`toml::Spanned`] strings and checked
//! just after. The line is counted from the span, and the dotted key is found by
//! a second, span-preserving parse ([`toml::de::DeTable`]) that looks for the key,
//! or the value, covering the span. `contrib/mtastsd.toml` documents every key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::overrides::Overrides;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Local syslog (`/dev/log`), facility mail, ident mtastsd (SPEC 7.2).
    Syslog,
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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` (Prometheus text format) and `GET /healthz`.
    /// Default: off.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// SPEC 6.2: answer `testing` policies like `enforce`. Default false.
    pub strict_testing: bool,
    /// SPEC 6.1: append `servername=hostname` (Postfix ≥ 3.4). Default true.
    pub servername: bool,
    /// SPEC 6.3: append the TLS-RPT attributes to enforce answers (Postfix ≥ 3.10
    /// only: older Postfix defers mail on them). Default false.
    pub tlsrpt: bool,
}

/// A configuration error, displayed as `file:line: key: message`
/// (the line is left out when it is 0, the key when it is empty).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}", path = .path.display())]
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

impl Default for Profile {
    fn default() -> Self {
        BUILTIN_PROFILE
    }
}

/// What [`DEFAULT_PROFILE`] is when the file does not define it.
const BUILTIN_PROFILE: Profile = Profile {
    strict_testing: false,
    servername: true,
    tlsrpt: false,
};

/// Answers for a `Config` built by hand without [`DEFAULT_PROFILE`].
static BUILTIN_PROFILE_REF: Profile = BUILTIN_PROFILE;

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
        parse_listen(text).map_err(ParseListenAddrError)
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
                    .unwrap_or(&BUILTIN_PROFILE_REF),
                false,
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Error location: toml error span → line and dotted key.

fn invalid_from_toml(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    let line = span
        .as_ref()
        .map_or(0, |span| line_at(text.as_bytes(), span.start));
    let key = span.map_or_else(String::new, |span| key_at(text, span.start));
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key,
        message: tidy_message(err.message()),
    }
}

/// 1-based line of a byte offset.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line of the key at `path` (e.g. `["redis", "key_file"]`), or 0 when the text
/// does not have it.
fn line_of_key(text: &str, path: &[&str]) -> usize {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut table = root.get_ref();
    for (i, name) in path.iter().enumerate() {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            return 0;
        };
        if i + 1 == path.len() {
            return line_at(text.as_bytes(), key.span().start);
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return 0,
        }
    }
    0
}

/// The dotted path of the key, or of the key whose value, covers `offset`; empty
/// if none does (a syntax error between entries, say). Parses the text again,
/// keeping spans; recovery makes this work for most syntax errors too.
fn key_at(text: &str, offset: usize) -> String {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut path = Vec::new();
    if find_key(root.get_ref(), offset, &mut path) {
        path.join(".")
    } else {
        String::new()
    }
}

fn find_key(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(quote_key(key.get_ref()));
        if covers(&key.span(), offset) {
            return true;
        }
        // A table written as a `[header]` has its entries elsewhere in the file than
        // its own span: always look inside.
        if let DeValue::Table(inner) = value.get_ref() {
            if find_key(inner, offset, path) {
                return true;
            }
        }
        if covers(&value.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn covers(span: &std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// A key as TOML would write it in a dotted path: bare if it can be.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// toml and serde messages, on one line and in this file's words.
fn tidy_message(message: &str) -> String {
    let one_line = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match one_line.strip_prefix("unknown field") {
        Some(rest) => format!("unknown key{rest}"),
        None => one_line,
    }
}

// ---------------------------------------------------------------------------
// The file as written. Every field is optional; values are validated by their
// types while toml still knows where they are.

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    server: Table<RawServer>,
    dns: Table<RawDns>,
    fetch: Table<RawFetch>,
    cache: Table<RawCache>,
    log: Table<RawLog>,
    metrics: Table<RawMetrics>,
    redis: Option<Table<RawRedis>>,
    dane: Table<RawDane>,
    profiles: Table<BTreeMap<ProfileName, Table<RawProfile>>>,
    overrides: Option<Table<RawOverrides>>,
}

/// `[overrides]`: `"domain" = "answer"` entries, and `file` (a path; domain
/// keys always contain a dot, so the two cannot be confused).
type RawOverrides = BTreeMap<String, Spanned<String>>;

/// A section: accepts only a TOML table. (Derived struct impls also take an
/// array and fill the fields in order, which would let `server = [[...]]` through
/// and make `[[server]]` fail with a baffling message.)
#[derive(Debug, Default)]
struct Table<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Table<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Table)
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    /// Validated after deserialization: toml gives list elements no span of
    /// their own in errors, and the element's line is what the user needs.
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    unix_mode: Option<UnixMode>,
    unix_owner: Option<Spanned<String>>,
    unix_group: Option<Spanned<String>>,
    idle_timeout: Option<Dur<UNLIMITED>>,
    max_connections: Option<AtLeastOne>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDns {
    nameservers: Option<Vec<Spanned<String>>>,
    /// One query must leave room for the fetch inside Postfix's 100 s (SPEC 3.6).
    timeout: Option<Dur<30>>,
    max_concurrency: Option<AtLeastOne>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFetch {
    /// SPEC 3.5, 3.6: the answer must stay well inside Postfix's 100 s.
    timeout: Option<Dur<60>>,
    ca_file: Option<AbsPath>,
    https_port: Option<Port>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCache {
    size: Option<AtLeastOne>,
    state_dir: Option<StateDir>,
    recheck: Option<Dur<UNLIMITED>>,
    save_interval: Option<Dur<UNLIMITED>>,
    backend: Option<Spanned<Backend>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    target: Option<Target>,
    level: Option<Level>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRedis {
    url: Option<RedisUrl>,
    prefix: Option<String>,
    /// A shared-cache call must never hold an answer up for long.
    timeout: Option<Dur<5>>,
    ca_file: Option<Spanned<AbsPath>>,
    key_file: Option<AbsPath>,
}

#[derive(Debug)]
struct RedisUrl(String);

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(RedisUrl(text))
        } else {
            Err(de::Error::custom(
                "expected a URL like \"redis://127.0.0.1:6379/0\" or \"rediss://:password@host:6380\"",
            ))
        }
    }
}

#[derive(Debug)]
enum Backend {
    Local,
    Redis,
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "local" => Ok(Backend::Local),
            "redis" => Ok(Backend::Redis),
            other => Err(de::Error::custom(format!(
                "{other:?}: expected \"local\" (the default) or \"redis\""
            ))),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDane {
    nameservers: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    listen: Option<InetAddr>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProfile {
    strict_testing: Option<bool>,
    servername: Option<bool>,
    tlsrpt: Option<bool>,
    /// Spanned: `true` without `[dane] nameservers` is an error at this key.
    dane: Option<Spanned<bool>>,
    overrides: Option<Table<RawOverrides>>,
}

/// A value that failed validation after deserialization: its span and why.
type Late = (std::ops::Range<usize>, String);

impl RawConfig {
    fn into_config(self) -> Result<Config, Late> {
        let RawConfig {
            server: Table(server),
            dns: Table(dns),
            fetch: Table(fetch),
            cache: Table(cache),
            log: Table(log),
            metrics: Table(metrics),
            redis: raw_redis,
            dane: Table(raw_dane),
            profiles: Table(raw_profiles),
            overrides: raw_overrides,
        } = self;
        let mut overrides = Overrides::default();
        let mut override_files = Vec::new();
        if let Some(Table(raw)) = raw_overrides {
            add_overrides(raw, None, &mut overrides, &mut override_files)?;
        }
        let redis = match (
            cache.backend.as_ref().map(|b| (b.span(), b.get_ref())),
            raw_redis,
        ) {
            (Some((_, Backend::Redis)), Some(Table(r))) => match r.url {
                Some(RedisUrl(url)) => {
                    if let Some(ca) = &r.ca_file {
                        if !url.starts_with("rediss://") {
                            return Err((
                                ca.span(),
                                "ca_file is for TLS: it needs a rediss:// url".to_string(),
                            ));
                        }
                    }
                    Some(RedisConfig {
                        url,
                        prefix: r.prefix.unwrap_or_else(|| "mtastsd:".to_string()),
                        timeout: r.timeout.map_or(Duration::from_millis(250), |t| t.0),
                        ca_file: r.ca_file.map(|p| p.into_inner().0),
                        key_file: r.key_file.map(|p| p.0),
                        // Read by Config::load: parsing does no I/O.
                        key: None,
                    })
                }
                None => {
                    return Err((
                        cache.backend.as_ref().expect("matched").span(),
                        "backend \"redis\" needs url in a [redis] section".to_string(),
                    ))
                }
            },
            (Some((span, Backend::Redis)), None) => {
                return Err((
                    span,
                    "backend \"redis\" needs a [redis] section with url".to_string(),
                ))
            }
            _ => None,
        };
        let d = Config::default();

        let listen = match server.listen {
            Some(list) => listen_list(list)?,
            None => d.server.listen,
        };
        let nameservers = match dns.nameservers {
            Some(list) => list
                .into_iter()
                .map(|item| parse_nameserver(item.get_ref()).map_err(|m| (item.span(), m)))
                .collect::<Result<_, _>>()?,
            None => d.dns.nameservers,
        };
        let dane_nameservers: Vec<SocketAddr> = raw_dane
            .nameservers
            .unwrap_or_default()
            .into_iter()
            .map(|item| parse_nameserver(item.get_ref()).map_err(|m| (item.span(), m)))
            .collect::<Result<_, _>>()?;
        let mut dane_profiles = BTreeSet::new();
        let mut profiles = BTreeMap::new();
        for (ProfileName(name), Table(raw)) in raw_profiles {
            if let Some(dane) = raw.dane {
                if *dane.get_ref() {
                    if dane_nameservers.is_empty() {
                        return Err((
                            dane.span(),
                            "dane = true needs [dane] nameservers: the validating resolvers \
                             whose AD bit to trust, e.g. [\"127.0.0.1:53\"] for a local unbound"
                                .to_string(),
                        ));
                    }
                    dane_profiles.insert(name.clone());
                }
            }
            let profile = Profile {
                strict_testing: raw.strict_testing.unwrap_or(BUILTIN_PROFILE.strict_testing),
                servername: raw.servername.unwrap_or(BUILTIN_PROFILE.servername),
                tlsrpt: raw.tlsrpt.unwrap_or(BUILTIN_PROFILE.tlsrpt),
            };
            if let Some(Table(raw)) = raw.overrides {
                add_overrides(raw, Some(&name), &mut overrides, &mut override_files)?;
            }
            profiles.insert(name, profile);
        }
        profiles
            .entry(DEFAULT_PROFILE.to_owned())
            .or_insert(BUILTIN_PROFILE);

        Ok(Config {
            server: ServerConfig {
                listen,
                unix_mode: server.unix_mode.map_or(d.server.unix_mode, |m| m.0),
                unix_owner: account_name(server.unix_owner)?,
                unix_group: account_name(server.unix_group)?,
                idle_timeout: server.idle_timeout.map_or(d.server.idle_timeout, |t| t.0),
                max_connections: server
                    .max_connections
                    .map_or(d.server.max_connections, |n| n.0),
            },
            dns: DnsConfig {
                nameservers,
                timeout: dns.timeout.map_or(d.dns.timeout, |t| t.0),
                max_concurrency: dns.max_concurrency.map_or(d.dns.max_concurrency, |n| n.0),
            },
            fetch: FetchConfig {
                timeout: fetch.timeout.map_or(d.fetch.timeout, |t| t.0),
                ca_file: fetch.ca_file.map(|p| p.0),
                https_port: fetch.https_port.map_or(d.fetch.https_port, |p| p.0),
            },
            cache: CacheConfig {
                size: cache.size.map_or(d.cache.size, |n| n.0),
                state_dir: cache.state_dir.map_or(d.cache.state_dir, |s| s.0),
                recheck: cache.recheck.map_or(d.cache.recheck, |t| t.0),
                save_interval: cache.save_interval.map_or(d.cache.save_interval, |t| t.0),
            },
            log: LogConfig {
                target: log.target.map_or(d.log.target, |t| t.0),
                level: log.level.map_or(d.log.level, |l| l.0),
            },
            metrics: MetricsConfig {
                listen: metrics.listen.map(|a| a.0),
            },
            redis,
            dane: DaneConfig {
                nameservers: dane_nameservers,
                profiles: dane_profiles,
            },
            profiles,
            overrides,
            override_files,
        })
    }
}

// ---------------------------------------------------------------------------
// Validating value types. Each rejects a bad value with a message saying what
// would be accepted; toml adds the span.

/// `IP:port` (IPv6 in brackets).
#[derive(Debug)]
struct InetAddr(SocketAddr);

impl<'de> Deserialize<'de> for InetAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(InetAddr).map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is not an address: expected IP:port like \"127.0.0.1:9461\" or \"[::1]:9461\""
            ))
        })
    }
}

/// Parse `500ms`, `10s`, `5m`, `1h`, `1d` (no space, no sign, no fraction).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

const UNLIMITED: u64 = u64::MAX;
const DURATION_HINT: &str =
    "a duration like \"10s\" or \"5m\" (units ms, s, m, h, d) or whole seconds";

/// A duration greater than zero and at most `MAX_SECS` seconds.
#[derive(Debug)]
struct Dur<const MAX_SECS: u64>(Duration);

impl<const MAX_SECS: u64> Dur<MAX_SECS> {
    fn check<E: de::Error>(d: Duration) -> Result<Self, E> {
        if d.is_zero() {
            Err(E::custom("must be greater than 0"))
        } else if d > Duration::from_secs(MAX_SECS) {
            // Only the DNS and fetch timeouts have a limit: together they must leave
            // the answer well inside the 100 s Postfix waits (SPEC 3.6).
            Err(E::custom(format!(
                "must be at most \"{MAX_SECS}s\", so that the answer reaches Postfix \
                 well inside the 100 s it waits"
            )))
        } else {
            Ok(Dur(d))
        }
    }
}

impl<'de, const MAX_SECS: u64> Deserialize<'de> for Dur<MAX_SECS> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const M: u64>;
        impl<const M: u64> Visitor<'_> for V<M> {
            type Value = Dur<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_HINT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v <= 0 {
                    return Err(E::custom("must be greater than 0"));
                }
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Dur::check(Duration::from_secs(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match parse_duration(v) {
                    Some(d) => Dur::check(d),
                    None => Err(E::custom(format!("expected {DURATION_HINT}, not {v:?}"))),
                }
            }
        }
        deserializer.deserialize_any(V::<MAX_SECS>)
    }
}

/// An integer ≥ 1.
#[derive(Debug)]
struct AtLeastOne(usize);

impl<'de> Deserialize<'de> for AtLeastOne {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AtLeastOne;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of at least 1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => Ok(AtLeastOne(n)),
                    _ => Err(E::custom(format!("must be at least 1, not {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => Ok(AtLeastOne(n)),
                    _ => Err(E::custom(format!("must be at least 1, not {v}"))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug)]
struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u16::try_from(v) {
                    Ok(p) if p >= 1 => Ok(Port(p)),
                    _ => Err(E::custom(format!(
                        "expected a port number from 1 to 65535, not {v}"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One `[overrides]` table into `overrides` (SPEC 6.5); its `file` key into `files`.
fn add_overrides(
    raw: RawOverrides,
    profile: Option<&str>,
    overrides: &mut Overrides,
    files: &mut Vec<(Option<String>, PathBuf)>,
) -> Result<(), Late> {
    for (key, value) in raw {
        let span = value.span();
        let value = value.into_inner();
        if key == "file" {
            let path = PathBuf::from(&value);
            if !path.is_absolute() {
                return Err((span, format!("file {value:?}: expected an absolute path")));
            }
            files.push((profile.map(str::to_owned), path));
            continue;
        }
        let domain = crate::overrides::parse_domain(&key).map_err(|e| (span.clone(), e))?;
        if !domain.contains('.') {
            return Err((
                span,
                format!("{key:?} is not a domain (or \"file\", the path of an overrides file)"),
            ));
        }
        let answer = crate::overrides::parse_answer(&value).map_err(|e| (span, e))?;
        overrides.insert(profile, domain, answer);
    }
    Ok(())
}

/// A user or group name (or a numeric id) for a unix socket's owner. Whether it
/// exists is checked when the socket is made: the system's account database is I/O.
fn account_name(raw: Option<Spanned<String>>) -> Result<Option<String>, Late> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let name = raw.into_inner();
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if valid {
        Ok(Some(name))
    } else {
        Err((
            span,
            format!("{name:?} is not a user or group name (like \"postfix\") or a numeric id"),
        ))
    }
}

/// A unix socket mode, written as an octal string (`"0660"`).
#[derive(Debug)]
struct UnixMode(u32);

const MODE_HINT: &str = "an octal mode string like \"0660\"";

impl<'de> Deserialize<'de> for UnixMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UnixMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(MODE_HINT)
            }
            // A bare 660 would be read as decimal: refuse integers rather than guess.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "expected {MODE_HINT}, in quotes (a bare {v} is not read as octal)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let octal =
                    !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
                if !octal {
                    return Err(E::custom(format!("expected {MODE_HINT}, not {v:?}")));
                }
                let mode = u32::from_str_radix(v, 8).map_err(E::custom)?;
                if mode > 0o777 {
                    return Err(E::custom(format!(
                        "mode {v:?} is above \"0777\" (setuid, setgid and sticky bits make no sense on a socket)"
                    )));
                }
                Ok(UnixMode(mode))
            }
        }
        deserializer.deserialize_any(V)
    }
}

const LISTEN_HINT: &str = "listen address must be host:port or unix:/absolute/path, \
     e.g. \"127.0.0.1:8461\", \"[::1]:8461\" or \"unix:/run/mtastsd/socketmap\"";

/// Room for the path in `sockaddr_un.sun_path`, without its NUL (Linux).
const MAX_UNIX_PATH: usize = 107;

fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(format!(
                "{LISTEN_HINT}; the unix socket path in {text:?} is not absolute"
            ));
        }
        if path.as_os_str().len() > MAX_UNIX_PATH {
            return Err(format!(
                "unix socket path {text:?} is longer than {MAX_UNIX_PATH} bytes"
            ));
        }
        if text.contains('\0') {
            return Err("unix socket path contains a NUL byte".to_owned());
        }
        return Ok(ListenAddr::Unix(path.to_owned()));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr::Inet(addr));
    }
    let hint = if text.starts_with("inet:") {
        " (leave out Postfix's \"inet:\" prefix)"
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        // "::1:8461" is a valid IPv6 address by itself.
        if ip.is_ipv6() {
            " (write IPv6 addresses in brackets, with a port: \"[::1]:8461\")"
        } else {
            " (the port is missing)"
        }
    } else {
        match text
            .rsplit_once(':')
            .map(|(host, _)| host.parse::<IpAddr>())
        {
            Some(Ok(IpAddr::V6(_))) => " (write IPv6 addresses in brackets: \"[::1]:8461\")",
            Some(Err(_)) => " (the host must be an IP address)",
            _ => "",
        }
    };
    Err(format!("{LISTEN_HINT}, not {text:?}{hint}"))
}

/// `server.listen`: not empty, no address twice.
fn listen_list(list: Spanned<Vec<Spanned<String>>>) -> Result<Vec<ListenAddr>, Late> {
    let span = list.span();
    let items = list.into_inner();
    if items.is_empty() {
        return Err((
            span,
            "listen must name at least one address, e.g. [\"127.0.0.1:8461\"]".to_owned(),
        ));
    }
    let mut out: Vec<ListenAddr> = Vec::with_capacity(items.len());
    for item in items {
        let addr = parse_listen(item.get_ref()).map_err(|m| (item.span(), m))?;
        if out.contains(&addr) {
            return Err((item.span(), format!("\"{addr}\" is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A DNS server: an IP address, with an optional port (default 53). Also for
/// `check --nameserver`.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    let addr = text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    });
    match addr {
        Some(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(
            "nameserver must be an IP address with an optional port, \
             e.g. \"127.0.0.1\", \"127.0.0.1:53\" or \"[::1]:5353\"; not {text:?}"
        )),
    }
}

/// An absolute path (relative ones would depend on the daemon's working directory).
#[derive(Debug)]
struct AbsPath(PathBuf);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let path = PathBuf::from(&text);
        if path.is_absolute() {
            Ok(AbsPath(path))
        } else {
            Err(de::Error::custom(format!(
                "expected an absolute path like \"/etc/mtastsd/extra-ca.pem\", not {text:?}"
            )))
        }
    }
}

/// `cache.state_dir`: an absolute directory, or `""` for no persistence.
#[derive(Debug)]
struct StateDir(Option<PathBuf>);

impl<'de> Deserialize<'de> for StateDir {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let path = PathBuf::from(&text);
        if text.is_empty() {
            Ok(StateDir(None))
        } else if path.is_absolute() {
            Ok(StateDir(Some(path)))
        } else {
            Err(de::Error::custom(format!(
                "expected an absolute path like \"/var/lib/mtastsd\", \
                 or \"\" to keep the cache in memory only; not {text:?}"
            )))
        }
    }
}

#[derive(Debug)]
struct Target(LogTarget);

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "stderr" => Ok(Target(LogTarget::Stderr)),
            "syslog" => Ok(Target(LogTarget::Syslog)),
            _ => Err(de::Error::custom(format!(
                "expected \"stderr\" or \"syslog\", not {text:?}"
            ))),
        }
    }
}

#[derive(Debug)]
struct Level(log::LevelFilter);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<log::LevelFilter>().map(Level).map_err(|_| {
            de::Error::custom(format!(
                "expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\", \"off\"; \
                 not {text:?}"
            ))
        })
    }
}

/// A socketmap name: Postfix sends `<name> <key>` and takes the name from after
/// the last `:` of the map (SPEC 1.2), so no blanks and no colons.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ProfileName(String);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() {
            return Err(de::Error::custom("a profile name must not be empty"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(de::Error::custom(format!(
                "profile name {name:?} must not contain spaces, control characters or ':' \
                 (it is the last field of socketmap:inet:127.0.0.1:8461:NAME)"
            )));
        }
        Ok(ProfileName(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/mtastsd/mtastsd.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    /// (line, key, message) of an error that must be `Invalid`.
    fn error(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                path,
                line,
                key,
                message,
            }) => {
                assert_eq!(path, Path::new(FILE));
                (line, key, message)
            }
            other => panic!("expected an Invalid error for {text:?}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_error(text: &str, line: usize, key: &str, fragment: &str) {
        let (l, k, m) = error(text);
        assert_eq!((l, k.as_str()), (line, key), "message: {m}");
        assert!(
            m.contains(fragment),
            "message {m:?} lacks {fragment:?} (text {text:?})"
        );
    }

    #[test]
    fn empty_text_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.server.listen,
            vec![ListenAddr::Inet("127.0.0.1:8461".parse().unwrap())]
        );
        assert_eq!(c.server.unix_mode, 0o660);
        assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 1000);
        assert!(c.dns.nameservers.is_empty());
        assert_eq!(c.dns.timeout, Duration::from_secs(5));
        assert_eq!(c.fetch.timeout, Duration::from_secs(10));
        assert_eq!(c.fetch.ca_file, None);
        assert_eq!(c.fetch.https_port, 443);
        assert_eq!(c.cache.size, 100_000);
        assert_eq!(c.cache.state_dir, Some(PathBuf::from("/var/lib/mtastsd")));
        assert_eq!(c.cache.recheck, Duration::from_secs(60));
        assert_eq!(c.cache.save_interval, Duration::from_secs(60));
        assert_eq!(c.log.target, LogTarget::Stderr);
        assert_eq!(c.log.level, log::LevelFilter::Info);
        assert_eq!(c.profiles.len(), 1);
        assert_eq!(
            c.profiles[DEFAULT_PROFILE],
            Profile {
                strict_testing: false,
                servername: true,
                tlsrpt: false,
            }
        );
        // Empty sections change nothing either.
        let sections = "[server]\n[dns]\n[fetch]\n[cache]\n[log]\n[profiles]\n";
        assert_eq!(parse(sections).unwrap(), Config::default());
    }

    #[test]
    fn redis_backend() {
        assert_eq!(parse("").unwrap().redis, None);
        // A [redis] section alone does not switch the backend.
        assert_eq!(
            parse("[redis]\nurl = \"redis://127.0.0.1\"\n")
                .unwrap()
                .redis,
            None
        );
        let c = parse(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://:pw@10.0.0.1:6379/2\"\ntimeout = \"100ms\"\n",
        )
        .unwrap();
        assert_eq!(
            c.redis,
            Some(RedisConfig {
                url: "redis://:pw@10.0.0.1:6379/2".into(),
                prefix: "mtastsd:".into(),
                timeout: Duration::from_millis(100),
                ca_file: None,
                key_file: None,
                key: None,
            })
        );
        assert_error(
            "[cache]\nbackend = \"redis\"\n",
            2,
            "cache.backend",
            "[redis]",
        );
        assert_error(
            "[cache]\nbackend = \"memcached\"\n",
            2,
            "cache.backend",
            "\"local\"",
        );
        assert_error(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"http://x\"\n",
            4,
            "redis.url",
            "redis://",
        );
        assert_error(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\ntimeout = \"10s\"\n",
            5,
            "redis.timeout",
            "at most",
        );
        assert_error(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\nca_file = \"/etc/ca.pem\"\n",
            5,
            "redis.ca_file",
            "needs a rediss:// url",
        );
        let c = parse(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"rediss://x:6380\"\nca_file = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.redis.unwrap().ca_file, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn metrics_listen() {
        assert_eq!(parse("").unwrap().metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9461\"\n").unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9461".parse().unwrap()));
        assert_error(
            "[metrics]\nlisten = \"localhost\"\n",
            2,
            "metrics.listen",
            "expected IP:port",
        );
    }

    #[test]
    fn every_key_parsed() {
        let c = parse(
            r#"
[server]
listen = ["127.0.0.1:8461", "[::1]:8462", "unix:/run/mtastsd/socketmap"]
unix_mode = "0600"
unix_owner = "mtastsd"
unix_group = "postfix"
idle_timeout = "90s"
max_connections = 20
[dns]
nameservers = ["127.0.0.1:53", "[::1]:5353", "192.0.2.1", "2001:db8::1"]
timeout = 3
[fetch]
timeout = "1500ms"
ca_file = "/etc/mtastsd/extra-ca.pem"
https_port = 8443
[cache]
size = 5
state_dir = "/tmp/state"
recheck = "5m"
save_interval = "1h"
[log]
target = "syslog"
level = "debug"
[profiles.postfix]
strict_testing = true
servername = false
[profiles.strict]
strict_testing = true
tlsrpt = true
"#,
        )
        .unwrap();
        assert_eq!(
            c.server.listen,
            vec![
                ListenAddr::Inet("127.0.0.1:8461".parse().unwrap()),
                ListenAddr::Inet("[::1]:8462".parse().unwrap()),
                ListenAddr::Unix(PathBuf::from("/run/mtastsd/socketmap")),
            ]
        );
        assert_eq!(c.server.unix_mode, 0o600);
        assert_eq!(c.server.unix_owner.as_deref(), Some("mtastsd"));
        assert_eq!(c.server.unix_group.as_deref(), Some("postfix"));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.server.max_connections, 20);
        assert_eq!(
            c.dns.nameservers,
            vec![
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
            ]
        );
        assert_eq!(c.dns.timeout, Duration::from_secs(3));
        assert_eq!(c.fetch.timeout, Duration::from_millis(1500));
        assert_eq!(
            c.fetch.ca_file,
            Some(PathBuf::from("/etc/mtastsd/extra-ca.pem"))
        );
        assert_eq!(c.fetch.https_port, 8443);
        assert_eq!(c.cache.size, 5);
        assert_eq!(c.cache.state_dir, Some(PathBuf::from("/tmp/state")));
        assert_eq!(c.cache.recheck, Duration::from_secs(300));
        assert_eq!(c.cache.save_interval, Duration::from_secs(3600));
        assert_eq!(c.log.target, LogTarget::Syslog);
        assert_eq!(c.log.level, log::LevelFilter::Debug);
        assert_eq!(
            c.profiles[DEFAULT_PROFILE],
            Profile {
                strict_testing: true,
                servername: false,
                tlsrpt: false,
            }
        );
        // Keys left out of a profile take the defaults.
        assert_eq!(
            c.profiles["strict"],
            Profile {
                strict_testing: true,
                servername: true,
                tlsrpt: true,
            }
        );
    }

    #[test]
    fn durations() {
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("007s", Duration::from_secs(7)),
        ] {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for text in [
            "",
            "10",
            "s",
            "-1s",
            "+1s",
            "1.5s",
            "10 s",
            " 10s",
            "10S",
            "1w",
            "10sec",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
        let c = parse("[server]\nidle_timeout = 5\n[cache]\nrecheck = \"1d\"").unwrap();
        assert_eq!(c.server.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.cache.recheck, Duration::from_secs(86_400));
        // The limits themselves are allowed.
        let c = parse("[fetch]\ntimeout = \"60s\"\n[dns]\ntimeout = \"30000ms\"").unwrap();
        assert_eq!(c.fetch.timeout, Duration::from_secs(60));
        assert_eq!(c.dns.timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_at_top_level() {
        assert_error(
            "# comment\n\n[sever]\nlisten = []\n",
            3,
            "sever",
            "unknown key `sever`",
        );
        assert_error("verbose = true\n", 1, "verbose", "expected one of `server`");
    }

    #[test]
    fn unknown_key_in_a_section() {
        assert_error(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n\nlsten = 5\n",
            4,
            "server.lsten",
            "unknown key `lsten`, expected one of `listen`",
        );
        assert_error(
            "[cache]\nsize = 5\n[profiles.strict]\nstrict_testing = true\ntls_rpt = true\n",
            5,
            "profiles.strict.tls_rpt",
            "unknown key `tls_rpt`",
        );
        // Dotted keys and inline tables find the same path.
        assert_error(
            "log.colour = true\n",
            1,
            "log.colour",
            "unknown key `colour`",
        );
        assert_error(
            "\nprofiles = { a = { servername = true, x = 1 } }\n",
            2,
            "profiles.a.x",
            "unknown key `x`",
        );
    }

    #[test]
    fn bad_duration() {
        assert_error(
            "[server]\n\nidle_timeout = \"10 minutes\"\n",
            3,
            "server.idle_timeout",
            "expected a duration like \"10s\" or \"5m\"",
        );
        assert_error(
            "[cache]\nrecheck = \"0s\"\n",
            2,
            "cache.recheck",
            "must be greater than 0",
        );
        assert_error(
            "[cache]\nsave_interval = -5\n",
            2,
            "cache.save_interval",
            "must be greater than 0",
        );
        assert_error(
            "[server]\nidle_timeout = 1.5\n",
            2,
            "server.idle_timeout",
            "expected a duration like",
        );
    }

    #[test]
    fn out_of_range_timeouts() {
        assert_error(
            "[fetch]\ntimeout = \"61s\"\n",
            2,
            "fetch.timeout",
            "must be at most \"60s\"",
        );
        assert_error(
            "[fetch]\ntimeout = \"2m\"\n",
            2,
            "fetch.timeout",
            "must be at most \"60s\"",
        );
        assert_error(
            "[dns]\ntimeout = 31\n",
            2,
            "dns.timeout",
            "must be at most \"30s\"",
        );
        assert_error("[dns]\ntimeout = 0\n", 2, "dns.timeout", "greater than 0");
    }

    #[test]
    fn bad_listen() {
        let fragment = "listen address must be host:port or unix:/absolute/path";
        assert_error(
            "[server]\nlisten = [\n  \"127.0.0.1:8461\",\n  \"localhost:8461\",\n]\n",
            4,
            "server.listen",
            fragment,
        );
        assert_error(
            "[server]\nlisten = [\"unix:run/socketmap\"]\n",
            2,
            "server.listen",
            "not absolute",
        );
        assert_error(
            "[server]\nlisten = [\"127.0.0.1\"]\n",
            2,
            "server.listen",
            "port is missing",
        );
        assert_error(
            "[server]\nlisten = [\"inet:127.0.0.1:8461\"]\n",
            2,
            "server.listen",
            "inet:",
        );
        assert_error(
            "[server]\nlisten = [\"::1:8461\"]\n",
            2,
            "server.listen",
            "in brackets",
        );
        assert_error(
            "[server]\nlisten = []\n",
            2,
            "server.listen",
            "at least one address",
        );
        assert_error(
            "[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
            2,
            "server.listen",
            "listed twice",
        );
        let long = format!("[server]\nlisten = [\"unix:/{}\"]\n", "x".repeat(107));
        assert_error(&long, 2, "server.listen", "longer than 107 bytes");
        assert_error(
            "[server]\nlisten = [8461]\n",
            2,
            "server.listen",
            "invalid type: integer `8461`, expected a string",
        );
        // A single string is not a list.
        assert_error(
            "[server]\nlisten = \"127.0.0.1:8461\"\n",
            2,
            "server.listen",
            "invalid type: string",
        );
    }

    #[test]
    fn bad_mode() {
        assert_error(
            "[server]\nunix_mode = \"0680\"\n",
            2,
            "server.unix_mode",
            "expected an octal mode string like \"0660\"",
        );
        assert_error(
            "[server]\nunix_mode = \"4755\"\n",
            2,
            "server.unix_mode",
            "above \"0777\"",
        );
        assert_error(
            "[server]\nunix_mode = 660\n",
            2,
            "server.unix_mode",
            "in quotes",
        );
        assert_error(
            "[server]\nunix_mode = \"\"\n",
            2,
            "server.unix_mode",
            "octal",
        );
        let c = parse("[server]\nunix_mode = \"777\"\n").unwrap();
        assert_eq!(c.server.unix_mode, 0o777);
    }

    #[test]
    fn overrides_spec_6_5() {
        use crate::overrides::Override;
        let c = parse(
            "[overrides]\n\"A.example\" = \"dane-only\"\nfile = \"/etc/mtastsd/overrides\"\n[profiles.strict.overrides]\n\"b.example\" = \"none-from-mtasts\"\n",
        )
        .unwrap();
        assert_eq!(
            c.overrides.get("postfix", "a.example"),
            Some(&Override::Answer("dane-only".into()))
        );
        assert_eq!(c.overrides.get("postfix", "b.example"), None);
        assert_eq!(
            c.overrides.get("strict", "b.example"),
            Some(&Override::NoMtaSts)
        );
        assert_eq!(
            c.override_files,
            vec![(None, PathBuf::from("/etc/mtastsd/overrides"))]
        );
        assert_error(
            "[overrides]\n\"a.example\" = \"dane-only\"\n\"b.example\" = \"secure matches=x\"\n",
            3,
            "overrides.\"b.example\"",
            "unknown attribute \"matches\"",
        );
        assert_error(
            "[overrides]\nexample = \"dane\"\n",
            2,
            "overrides.example",
            "is not a domain",
        );
        assert_error(
            "[overrides]\nfile = \"overrides.txt\"\n",
            2,
            "overrides.file",
            "absolute path",
        );
    }

    #[test]
    fn bad_socket_owner() {
        assert_error(
            "[server]\nunix_group = \"\"\n",
            2,
            "server.unix_group",
            "is not a user or group name",
        );
        assert_error(
            "[server]\nunix_owner = \"root postfix\"\n",
            2,
            "server.unix_owner",
            "is not a user or group name",
        );
        let c = parse("[server]\nunix_group = \"119\"\n").unwrap();
        assert_eq!(c.server.unix_group.as_deref(), Some("119"));
        assert_eq!(c.server.unix_owner, None);
    }

    #[test]
    fn bad_log_settings() {
        assert_error(
            "[log]\nlevel = \"verbose\"\n",
            2,
            "log.level",
            "expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\", \"off\"",
        );
        assert_error(
            "[log]\ntarget = \"journal\"\n",
            2,
            "log.target",
            "expected \"stderr\" or \"syslog\"",
        );
        let c = parse("[log]\nlevel = \"OFF\"\ntarget = \"Syslog\"\n").unwrap();
        assert_eq!(c.log.level, log::LevelFilter::Off);
        assert_eq!(c.log.target, LogTarget::Syslog);
    }

    #[test]
    fn wrong_types() {
        assert_error(
            "[profiles.strict]\nservername = \"yes\"\n",
            2,
            "profiles.strict.servername",
            "expected a boolean",
        );
        assert_error("server = 5\n", 1, "server", "expected a table");
        assert_error("[[server]]\n", 1, "server", "expected a table");
        assert_error(
            "server = [[\"127.0.0.1:1\"]]\n",
            1,
            "server",
            "invalid type: sequence, expected a table",
        );
        assert_error("profiles = 5\n", 1, "profiles", "expected a table");
        assert_error(
            "[profiles]\nstrict = true\n",
            2,
            "profiles.strict",
            "invalid type: boolean `true`, expected a table",
        );
        assert_error(
            "[cache]\nsize = \"big\"\n",
            2,
            "cache.size",
            "a whole number of at least 1",
        );
        assert_error(
            "[dns]\nnameservers = \"127.0.0.1\"\n",
            2,
            "dns.nameservers",
            "invalid type",
        );
        assert_error("[fetch]\nca_file = 1\n", 2, "fetch.ca_file", "invalid type");
    }

    /// Issue 5: the resolution concurrency limit is a whole number ≥ 1, with its
    /// file:line (SPEC 7.4).
    #[test]
    fn dns_max_concurrency() {
        assert_eq!(Config::default().dns.max_concurrency, 256);
        let c = parse("[dns]\nmax_concurrency = 8\n").unwrap();
        assert_eq!(c.dns.max_concurrency, 8);
        assert_error(
            "[dns]\n\nmax_concurrency = 0\n",
            3,
            "dns.max_concurrency",
            "at least 1",
        );
        assert_error(
            "[dns]\nmax_concurrency = \"many\"\n",
            2,
            "dns.max_concurrency",
            "a whole number of at least 1",
        );
    }

    #[test]
    fn other_range_checks() {
        assert_error("[cache]\nsize = 0\n", 2, "cache.size", "at least 1");
        assert_error(
            "[server]\nmax_connections = -3\n",
            2,
            "server.max_connections",
            "at least 1",
        );
        assert_error(
            "[fetch]\nhttps_port = 0\n",
            2,
            "fetch.https_port",
            "1 to 65535",
        );
        assert_error(
            "[fetch]\nhttps_port = 65536\n",
            2,
            "fetch.https_port",
            "1 to 65535",
        );
        assert_error(
            "[dns]\nnameservers = [\"ns1.example.net\"]\n",
            2,
            "dns.nameservers",
            "nameserver must be an IP address",
        );
        assert_error(
            "[dns]\nnameservers = [\n  \"127.0.0.1\",\n  \"::1\",\n  \"[::1]\",\n]\n",
            5,
            "dns.nameservers",
            "nameserver must be an IP address",
        );
        assert_error(
            "[dns]\nnameservers = [\"127.0.0.1:0\"]\n",
            2,
            "dns.nameservers",
            "nameserver must be an IP address",
        );
        assert_error(
            "[fetch]\nca_file = \"ca.pem\"\n",
            2,
            "fetch.ca_file",
            "absolute path",
        );
        assert_error(
            "[cache]\nstate_dir = \"state\"\n",
            2,
            "cache.state_dir",
            "absolute path",
        );
    }

    #[test]
    fn state_dir_empty_disables_persistence() {
        let c = parse("[cache]\nstate_dir = \"\"\n").unwrap();
        assert_eq!(c.cache.state_dir, None);
    }

    #[test]
    fn profile_names() {
        assert_error(
            "[profiles.\"a b\"]\n",
            1,
            "profiles.\"a b\"",
            "must not contain spaces",
        );
        assert_error(
            "[server]\n[profiles.\"\"]\nservername = false\n",
            2,
            "profiles.\"\"",
            "must not be empty",
        );
        assert_error("[profiles.\"x:y\"]\n", 1, "profiles.\"x:y\"", "':'");
        let c = parse("[profiles.tls-rpt_3]\n").unwrap();
        assert!(c.profiles.contains_key("tls-rpt_3"));
    }

    #[test]
    fn profile_lookup() {
        let c = parse("[profiles.strict]\nstrict_testing = true\n").unwrap();
        let (p, known) = c.profile("strict");
        assert!(known);
        assert!(p.strict_testing);
        let (p, known) = c.profile(DEFAULT_PROFILE);
        assert!(known);
        assert_eq!(*p, Profile::default());
        let (p, known) = c.profile("Strict");
        assert!(!known);
        assert_eq!(*p, Profile::default());

        // An unknown name gets the configured default profile, not the built-in one.
        let c = parse("[profiles.postfix]\nservername = false\n").unwrap();
        let (p, known) = c.profile("other");
        assert!(!known);
        assert!(!p.servername);

        // A hand-built Config without the default profile still answers.
        let mut c = Config::default();
        c.profiles.clear();
        assert_eq!(c.profile("postfix"), (&Profile::default(), false));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let (line, _key, message) = error("[server]\nidle_timeout = \"10s\n");
        assert_eq!(line, 2, "{message}");
        assert!(!message.contains('\n'));
        let (line, key, message) = error("[server]\nmax_connections = 1\nmax_connections = 2\n");
        assert_eq!(line, 3, "{message}");
        assert!(message.contains("duplicate key"), "{message}");
        assert!(key.is_empty() || key == "server.max_connections", "{key}");
        let (line, _, _) = error("[log]\n\n\nlevel = = \"info\"\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn display() {
        let err = parse(
            "# mtastsd\n\n[server]\nlisten = [\"127.0.0.1:8461\"]\n\n\nidle_timeout = \"soon\"\n",
        )
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("/etc/mtastsd/mtastsd.toml:7: server.idle_timeout: expected a duration like \"10s\" or \"5m\""),
            "{shown}"
        );
        let whole = ConfigError::Invalid {
            path: PathBuf::from("/x.toml"),
            line: 0,
            key: String::new(),
            message: "oops".into(),
        };
        assert_eq!(whole.to_string(), "/x.toml: oops");
    }

    #[test]
    fn load_reads_files() {
        let dir = std::env::temp_dir().join(format!("mtastsd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[cache]\nsize = 7\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().cache.size, 7);

        let latin1 = dir.join("latin1.toml");
        std::fs::write(&latin1, b"# ok\n# caf\xe9\n").unwrap();
        match Config::load(&latin1) {
            Err(ConfigError::Invalid { line, message, .. }) => {
                assert_eq!(line, 2);
                assert!(message.contains("UTF-8"));
            }
            other => panic!("{other:?}"),
        }

        let missing = dir.join("missing.toml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// SPEC 7.4: `[redis] key_file` is read by `load`; a missing, unreadable or
    /// too short key is an error naming the file, the line and the key.
    #[test]
    fn redis_key_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("redis.key");
        let conf = dir.path().join("mtastsd.toml");
        std::fs::write(
            &conf,
            format!(
                "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://10.0.0.1\"\nkey_file = \"{}\"\n",
                key.display()
            ),
        )
        .unwrap();
        let err = Config::load(&conf).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:5: redis.key_file: cannot read {}: ",
                conf.display(),
                key.display()
            )),
            "{err}"
        );

        std::fs::write(&key, "too short\n").unwrap();
        let err = Config::load(&conf).unwrap_err().to_string();
        assert!(err.contains(":5: redis.key_file: "), "{err}");
        assert!(err.contains("holds 9 bytes, at least 32"), "{err}");

        let secret = "0123456789abcdef0123456789abcdef";
        std::fs::write(&key, format!("{secret}\n")).unwrap();
        let redis = Config::load(&conf).unwrap().redis.unwrap();
        assert_eq!(redis.key_file.as_deref(), Some(key.as_path()));
        assert_eq!(
            redis.key.as_ref().map(RedisKey::bytes),
            Some(secret.as_bytes())
        );
        // The secret never shows in a printed configuration.
        assert!(!format!("{redis:?}").contains(secret));
        // Parsing alone reads nothing (pure).
        let text = std::fs::read_to_string(&conf).unwrap();
        assert_eq!(
            Config::parse(&text, &conf).unwrap().redis.unwrap().key,
            None
        );
        assert_error(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\nkey_file = \"redis.key\"\n",
            5,
            "redis.key_file",
            "absolute path",
        );
    }

    #[test]
    fn listen_addr_from_str_and_display_round_trip() {
        for text in [
            "127.0.0.1:8461",
            "[::1]:8461",
            "unix:/run/mtastsd/socketmap",
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let err = "localhost:8461".parse::<ListenAddr>().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("listen address must be host:port or unix:/absolute/path"));
    }

    #[test]
    fn dane_keys_spec_6_4() {
        // Off by default, everywhere.
        let c = parse("").unwrap();
        assert_eq!(c.dane, DaneConfig::default());
        assert!(!c.dane.enabled(DEFAULT_PROFILE));
        let c = parse(
            "[dane]\nnameservers = [\"127.0.0.1\", \"[::1]:5353\"]\n\
             [profiles.postfix]\ndane = true\n[profiles.plain]\ndane = false\n",
        )
        .unwrap();
        assert_eq!(
            c.dane.nameservers,
            vec![
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert!(c.dane.enabled("postfix"));
        assert!(!c.dane.enabled("plain"));
        // Both on loopback: no warning.
        assert_eq!(c.dane.off_loopback_warning(), None);
        let c = parse(
            "[dane]\nnameservers = [\"127.0.0.1\", \"192.0.2.53\", \"[2001:db8::53]:5353\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.dane.off_loopback(),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
        let warning = c.dane.off_loopback_warning().unwrap();
        assert!(
            warning.starts_with(
                "[dane] nameservers 192.0.2.53:53, [2001:db8::53]:5353 not on loopback"
            ),
            "{warning}"
        );
        // The other profile settings are untouched.
        assert_eq!(c.profiles["postfix"], Profile::default());
        // SPEC 7.4: dane = true without a validating resolver names file, line, key.
        assert_error(
            "[profiles.postfix]\nservername = true\ndane = true\n",
            3,
            "profiles.postfix.dane",
            "needs [dane] nameservers",
        );
        assert_error(
            "[dane]\nnameservers = []\n[profiles.x]\ndane = true\n",
            4,
            "profiles.x.dane",
            "needs [dane] nameservers",
        );
        assert_error(
            "[dane]\nnameservers = [\"unbound\"]\n",
            2,
            "dane.nameservers",
            "nameserver must be an IP address",
        );
        assert_error(
            "[dane]\nvalidate = true\n",
            2,
            "dane.validate",
            "unknown key",
        );
        assert_error(
            "[profiles.x]\ndane = \"yes\"\n",
            2,
            "profiles.x.dane",
            "bool",
        );
    }

    #[test]
    fn sample_config_is_the_defaults() {
        let sample = include_str!("../contrib/mtastsd.toml");
        let c = Config::parse(sample, Path::new("contrib/mtastsd.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn man_page_example_parses() {
        let page = include_str!("../packaging/man/mtastsd.toml.5");
        let example = page
            .split_once(".SH EXAMPLE\n.EX\n")
            .and_then(|(_, rest)| rest.split_once(".EE\n"))
            .map(|(example, _)| example)
            .expect("mtastsd.toml.5 has an EXAMPLE section");
        let c = Config::parse(example, Path::new("mtastsd.toml.5")).unwrap();
        assert!(c.profile("strict").0.strict_testing);
        assert_eq!(
            c.profile("legacy"),
            (
                &Profile {
                    strict_testing: false,
                    servername: false,
                    tlsrpt: false,
                },
                true
            )
        );
    }

    #[test]
    fn sample_config_examples_parse() {
        // The commented-out examples must be valid too: uncomment every `#key = …`
        // line and table header (lines starting with "#[" or "#x = ").
        let sample = include_str!("../contrib/mtastsd.toml");
        let uncommented: String = sample
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(uncommented, sample, "the sample should show some examples");
        let c = Config::parse(&uncommented, Path::new("uncommented")).unwrap();
        assert!(c.fetch.ca_file.is_some());
    }
}
