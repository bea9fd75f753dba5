//! Command line (clap derive): `serve`, `query`, `check`, `tlsrpt`, `check-config`.

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
    /// Audit a domain's own MTA-STS and TLS-RPT publication: the TXT records, the policy
    /// host's certificate, the policy line by line, whether it covers every MX host,
    /// STARTTLS on each MX host, then a verdict and the next step. For a domain without
    /// (or with a broken) MTA-STS setup, prints what to publish.
    ///
    /// Exit status: 0 no errors, 1 errors found, 2 bad usage. See docs/CHECK.md.
    Check {
        /// The domain to audit.
        #[arg(required_unless_present = "policy_file")]
        domain: Option<String>,
        /// Lint this policy file instead of fetching the domain's (before publishing it).
        #[arg(long, value_name = "FILE")]
        policy_file: Option<PathBuf>,
        /// With --policy-file: check the file against this domain's MX hosts.
        #[arg(long = "domain", value_name = "DOMAIN", requires = "policy_file")]
        for_domain: Option<String>,
        /// Configuration file, for DNS servers, CA file and timeouts (as for serve).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// DNS server (IP or IP:PORT) instead of the configured ones; may be repeated.
        #[arg(long, value_name = "ADDR")]
        nameserver: Vec<String>,
        /// Extra trusted root certificates (PEM) instead of the configured fetch.ca_file.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Deadline of each DNS query, the policy fetch and each TLS or SMTP probe, e.g. 10s.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// SMTP port of the MX hosts (tests only).
        #[arg(long, hide = true, default_value_t = 25)]
        smtp_port: u16,
    },
    /// TLS-RPT (RFC 8460): what Postfix reported to mtastsd, and the daily reports.
    ///
    /// Reads the store <state_dir>/tlsrpt.sqlite that `serve` fills when the
    /// configuration has a [tlsrpt] table; safe while the daemon runs.
    Tlsrpt {
        #[command(subcommand)]
        command: TlsrptCommand,
        /// Configuration file (for state_dir and [tlsrpt]); built-in defaults if
        /// the default file does not exist.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
    },
    /// Validate a configuration file and exit: 0 when valid, 2 with the problem otherwise.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
}

/// The packaged configuration file, read by `tlsrpt` unless --config says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/mtastsd/mtastsd.toml";

#[derive(Debug, Subcommand)]
pub enum TlsrptCommand {
    /// The sessions counted on a UTC day, per domain and policy, with their failure
    /// details, and what became of the day's reports.
    Show {
        /// Only this recipient domain.
        domain: Option<String>,
        /// The UTC day, YYYY-MM-DD (default: today).
        #[arg(long, value_name = "DAY")]
        day: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The report of DOMAIN for a UTC day, exactly as sent (RFC 8460 §4.4 JSON); before
    /// it is built, a preview (with another report-id).
    Report {
        domain: String,
        /// The UTC day, YYYY-MM-DD (default: yesterday).
        #[arg(long, value_name = "DAY")]
        day: Option<String>,
    },
    /// Build a UTC day's reports now and send every one not yet sent or given up,
    /// without waiting for the random delay. A report already sent is never sent
    /// again.
    Send {
        /// The UTC day, YYYY-MM-DD (default: yesterday).
        #[arg(long, value_name = "DAY")]
        day: Option<String>,
        /// Only say where each report would go.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 10s, 500ms or 1m"))
}
