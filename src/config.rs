//! `mtastsd.toml` → validated [`Config`] (SPEC 7.4, 7.5).
//!
//! Every section and key is optional; the built-in defaults make a working daemon
//! with no file at all. Unknown keys and bad values are errors that name the file,
//! the line and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Socketmap name → profile. Always contains [`DEFAULT_PROFILE`] (added with
    /// defaults when the file does not define it).
    pub profiles: BTreeMap<String, Profile>,
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
    /// Close a connection idle this long (SPEC 1.5). Default 60 s.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the accept queue. Default 1000.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Empty: use /etc/resolv.conf (default). Else these servers, with port.
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout. Default 5 s.
    pub timeout: Duration,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// SPEC 6.2: answer `testing` policies like `enforce`. Default false.
    pub strict_testing: bool,
    /// SPEC 6.1: append `servername=hostname` (Postfix ≥ 3.4). Default true.
    pub servername: bool,
}

/// A configuration error, displayed as `file:line: key: message`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        /// 1-based; 0 when the file as a whole is at fault.
        line: usize,
        /// Dotted key path, e.g. `server.listen`; empty when unknown.
        key: String,
        message: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        todo!("helper C")
    }
}

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        todo!("helper C")
    }

    /// Validate TOML text; `path` is used only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        todo!("helper C")
    }

    /// The profile for a socketmap name; unknown names get the default (SPEC 1.2).
    /// The `bool` is `false` when the name was unknown (the caller logs it once).
    pub fn profile(&self, name: &str) -> (&Profile, bool) {
        todo!("helper C")
    }
}
