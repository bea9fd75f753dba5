//! Command line (clap derive): `serve`, `query`, `check`, `check-config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// MTA-STS (RFC 8461) policy daemon for Postfix.
///
/// Answers Postfix smtp_tls_policy_maps socketmap lookups with "secure match=..."
/// for domains that publish an enforced MTA-STS policy. In main.cf:
///
///   smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix
#[derive(Debug, Parser)]
#[command(name = "mtastsd", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd Type=notify).
    ///
    /// Without --config, built-in defaults: listen on 127.0.0.1:8461, log to stderr,
    /// keep the cache in /var/lib/mtastsd. SIGHUP reloads the configuration file;
    /// SIGTERM stops after saving the cache.
    Serve {
        /// Configuration file (TOML); see mtastsd.toml(5).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen address instead of the configured ones: HOST:PORT or unix:/PATH.
        /// May be repeated.
        #[arg(long, value_name = "ADDR")]
        listen: Vec<String>,
        /// Directory for the persistent cache instead of the configured one
        /// ("" disables persistence).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Log level instead of the configured one (error, warn, info, debug, trace).
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<log::LevelFilter>,
    },
    /// Resolve one domain from scratch and show the TXT record, the policy, the answer
    /// Postfix would get, and every failure with its stage.
    Query {
        /// The domain (or key as Postfix would send it, e.g. "[mx.example.com]:25").
        domain: String,
        /// Configuration file, for DNS servers, CA file, timeouts and profiles.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Profile (socketmap name) whose answer to show.
        #[arg(short, long, default_value = crate::config::DEFAULT_PROFILE)]
        profile: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Audit a domain's own MTA-STS and TLS-RPT publication: the TXT records, the
    /// policy, whether the policy covers every MX host. Exit 1 when something is wrong.
    Check {
        /// The domain to audit.
        domain: String,
        /// Configuration file, for DNS servers, CA file and timeouts.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and exit: 0 when valid, 2 with the problem otherwise.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
}
