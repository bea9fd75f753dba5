//! Thin entry point: parse the command line, load the configuration, dispatch.
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration (SPEC 7.4).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};

use mtastsd::answer::checks_dane;
use mtastsd::cache::SystemClock;
use mtastsd::cli::{Cli, Command, TlsrptCommand, DEFAULT_CONFIG};
use mtastsd::config::{Config, ListenAddr, LogTarget, DEFAULT_PROFILE};
use mtastsd::daemon::{self, Daemon, Reload};
use mtastsd::logging::chain;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Files and sockets we create are ours alone until given their configured mode
    // (the unix socket) or for good (the policy store).
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe { libc::umask(0o077) };
    // One process-wide crypto provider, chosen before anything touches rustls.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Serve {
            config,
            listen,
            state_dir,
            log_level,
        } => serve(config, listen, state_dir, log_level),
        Command::Query {
            domain,
            config,
            profile,
            json,
        } => query(config, &domain, &profile, json),
        Command::Check {
            domain,
            policy_file,
            for_domain,
            config,
            nameserver,
            ca_file,
            timeout,
            json,
            smtp_port,
        } => check(CheckArgs {
            config_path: config,
            domain,
            policy_file,
            for_domain,
            nameserver,
            ca_file,
            timeout,
            json,
            smtp_port,
        }),
        Command::Tlsrpt { command, config } => tlsrpt(&config, command),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
    }
}

/// `mtastsd tlsrpt ...`: the packaged configuration file when it exists, else the
/// built-in defaults (whose state_dir is the packaged one too).
fn tlsrpt(config_path: &Path, command: TlsrptCommand) -> ExitCode {
    let config = if config_path == Path::new(DEFAULT_CONFIG) && !config_path.exists() {
        Ok(Config::default())
    } else {
        Config::load(config_path)
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    mtastsd::logging::init(LogTarget::Stderr, log::LevelFilter::Warn);
    let result = match command {
        TlsrptCommand::Show { domain, day, json } => mtastsd::reports::day_or(day.as_deref(), 0)
            .and_then(|day| {
                let view = mtastsd::reports::show(&config, day, domain.as_deref())?;
                print_report(&view, json);
                Ok(())
            }),
        TlsrptCommand::Report { domain, day } => mtastsd::reports::day_or(day.as_deref(), 1)
            .and_then(|day| mtastsd::reports::report(&config, day, &domain))
            .map(|(json, stored)| {
                if !stored {
                    eprintln!("mtastsd: not built yet: a preview, its report-id will differ");
                }
                println!("{json}");
            }),
        TlsrptCommand::Send { day, dry_run } => mtastsd::reports::day_or(day.as_deref(), 1)
            .and_then(|day| runtime().block_on(mtastsd::reports::send(&config, day, dry_run)))
            .map(|sent| {
                if sent.is_empty() {
                    println!("nothing to send");
                }
                for s in sent {
                    println!("{}: {}: {}", s.domain, s.uri, s.what);
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mtastsd: {}", f.message);
            ExitCode::from(if f.config { EXIT_CONFIG } else { EXIT_RUNTIME })
        }
    }
}

fn fail(code: u8, e: &dyn std::error::Error) -> ExitCode {
    eprintln!("mtastsd: {}", chain(e));
    ExitCode::from(code)
}

fn load_config(path: Option<&Path>) -> Result<Config, mtastsd::config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// The serving runtime: one thread. A cached answer is a few microseconds of work,
/// mostly the kernel's, so one core answers some 200 000 lookups a second; on one
/// thread a woken connection runs without a cross-thread hand-off, and in the order
/// it was woken (tokio's multi-threaded scheduler runs the last-woken task first:
/// under the load of `benches/load.sh` the median answer took 14 % longer: see
/// "What the profile showed, and what changed" in docs/BENCHMARKS.md).
/// Resolutions (DNS, HTTPS, parsing) never run here: they have threads of their
/// own ([`mtastsd::daemon::ResolverThreads`]).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

/// The command line's settings over the file's, applied at start and again at each
/// reload (shared with the reloads, which prepare on a blocking thread).
type Overrides = dyn Fn(Config) -> Result<Config, String> + Send + Sync;

fn serve(
    config_path: Option<PathBuf>,
    listen: Vec<String>,
    state_dir: Option<PathBuf>,
    log_level: Option<log::LevelFilter>,
) -> ExitCode {
    let state_dir_given = state_dir.is_some();
    let overrides = command_line_overrides(listen, state_dir, log_level);
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let mut config = match overrides(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mtastsd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    mtastsd::logging::init(config.log.target, config.log.level);
    if config_path.is_none() && !state_dir_given {
        memory_only_if_unwritable(&mut config);
    }
    runtime().block_on(async move {
        // Before anything else, so a SIGHUP during start-up is not fatal.
        let Some(signals) = Signals::install() else {
            log::error!("cannot install signal handlers");
            return ExitCode::from(EXIT_RUNTIME);
        };
        let daemon = match Daemon::start(config, Arc::new(SystemClock)).await {
            Ok(d) => d,
            Err(e) => {
                log::error!("{}", chain(&e));
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        run_until_stopped(daemon, signals, config_path, overrides).await
    })
}

/// `--listen`, `--state-dir` and `--log-level` over the configuration file's values.
fn command_line_overrides(
    listen: Vec<String>,
    state_dir: Option<PathBuf>,
    log_level: Option<log::LevelFilter>,
) -> Arc<Overrides> {
    Arc::new(move |mut config: Config| -> Result<Config, String> {
        if !listen.is_empty() {
            config.server.listen = listen
                .iter()
                .map(|s| {
                    s.parse::<ListenAddr>()
                        .map_err(|e| format!("--listen {s}: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(dir) = &state_dir {
            config.cache.state_dir = (!dir.as_os_str().is_empty()).then(|| dir.clone());
        }
        if let Some(level) = log_level {
            config.log.level = level;
        }
        Ok(config)
    })
}

/// The built-in default state directory, e.g. `cargo run -- serve` as a user: run
/// without persistence rather than not at all, and say how to fix it.
fn memory_only_if_unwritable(config: &mut Config) {
    if let Some(dir) = &config.cache.state_dir {
        if let Err(e) = mtastsd::cache::store::Store::open(dir) {
            log::warn!(
                "{}; keeping the cache in memory only (use --state-dir DIR to persist it)",
                chain(&e)
            );
            config.cache.state_dir = None;
        }
    }
}

/// SIGTERM and SIGINT stop the daemon, SIGHUP reloads it (SPEC 7.3).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Option<Signals> {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some(Signals { term, int, hup }),
            _ => None,
        }
    }
}

/// Serves until a stop signal, or until the server stops accepting on its own;
/// reloads on SIGHUP (SPEC 7.3). Tells systemd each change of state.
async fn run_until_stopped(
    mut daemon: Daemon,
    mut signals: Signals,
    config_path: Option<PathBuf>,
    overrides: Arc<Overrides>,
) -> ExitCode {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let ended = daemon.serving_ended();
    tokio::pin!(ended);
    let mut code = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
            // Exit non-zero so that systemd (Restart=on-failure) starts a fresh
            // process instead of leaving one that refuses Postfix.
            e = &mut ended => {
                log::error!("{}; exiting so that the service is restarted", chain(&e));
                code = ExitCode::from(EXIT_RUNTIME);
                break;
            }
            _ = signals.hup.recv() => reload(&mut daemon, &config_path, &overrides).await,
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    log::info!("stopping");
    daemon.shutdown().await;
    code
}

/// SIGHUP: files are read and resolvers built on a blocking thread, so the serving
/// thread goes on answering meanwhile; a bad file keeps the running configuration
/// (SPEC 7.3, 7.4).
async fn reload(daemon: &mut Daemon, config_path: &Option<PathBuf>, overrides: &Arc<Overrides>) {
    let _ = sd_notify::notify(&[NotifyState::Reloading]);
    let prepare = {
        let path = config_path.clone();
        let overrides = Arc::clone(overrides);
        move || prepare_reload(path.as_deref(), &*overrides)
    };
    match tokio::task::spawn_blocking(prepare).await {
        Ok(Some(reload)) => daemon.apply(reload),
        Ok(None) => {}
        Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
    }
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

/// SIGHUP: the new configuration, read and built; `None` (logged) when it cannot be:
/// a bad file leaves the running configuration in place (SPEC 7.3, 7.4).
fn prepare_reload(
    path: Option<&Path>,
    overrides: &dyn Fn(Config) -> Result<Config, String>,
) -> Option<Reload> {
    let prepared = load_config(path)
        .map_err(|e| chain(&e))
        .and_then(overrides)
        .and_then(|config| Reload::prepare(config).map_err(|e| chain(&e)));
    match prepared {
        Ok(reload) => Some(reload),
        Err(e) => {
            log::error!("reload failed, keeping the running configuration: {e}");
            None
        }
    }
}

/// What `query` needs: the configuration (for DNS servers, CA file and
/// timeouts), quiet logging (problems are the report's business), a runtime.
fn one_shot<F, Fut>(config_path: Option<PathBuf>, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    mtastsd::logging::init(LogTarget::Stderr, log::LevelFilter::Error);
    runtime().block_on(run(config))
}

fn print_report<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("report serialises")
        );
    } else {
        print!("{report}");
    }
}

fn query(config_path: Option<PathBuf>, domain: &str, profile_name: &str, json: bool) -> ExitCode {
    one_shot(config_path, |config| async move {
        let (profile, known) = config.profile(profile_name);
        if !known {
            eprintln!("mtastsd: no profile {profile:?} in the configuration; using the default");
        }
        let resolvers = match daemon::build_resolvers(&config) {
            Ok(r) => r,
            Err(e) => return fail(EXIT_RUNTIME, &e),
        };
        let profile_name = if known { profile_name } else { DEFAULT_PROFILE };
        let normalised = mtastsd::overrides::parse_domain(domain).ok();
        let overridden = normalised
            .as_deref()
            .and_then(|d| config.overrides.get(profile_name, d));
        let dane = match normalised.as_deref() {
            // Asked here too, so that a next hop starts no DANE lookup at all.
            Some(d)
                if config.dane.enabled(profile_name)
                    && checks_dane(mtastsd::socketmap::normalise(domain).next_hop) =>
            {
                let (lookup, deadline) = daemon::dane_lookup(&config);
                let cache = mtastsd::cache::dane::DaneCache::new(
                    1,
                    lookup,
                    deadline,
                    Arc::new(SystemClock),
                );
                Some(cache.lookup(d).await)
            }
            _ => None,
        };
        let local = mtastsd::query::Local {
            overridden,
            dane: dane.as_ref(),
        };
        let report =
            mtastsd::query::query(domain, &resolvers, profile, local, config.fetch.https_port)
                .await;
        print_report(&report, json);
        ExitCode::SUCCESS
    })
}

/// `check`'s command line, after clap.
struct CheckArgs {
    config_path: Option<PathBuf>,
    domain: Option<String>,
    policy_file: Option<PathBuf>,
    for_domain: Option<String>,
    nameserver: Vec<String>,
    ca_file: Option<PathBuf>,
    timeout: Option<std::time::Duration>,
    json: bool,
    smtp_port: u16,
}

/// Colour only on a terminal, and never with `NO_COLOR` set to anything (no-color.org).
fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A progress line on stderr while the probes run, only when stderr is a terminal;
/// the returned guard erases it.
fn progress(text: &str) -> impl Drop {
    use std::io::IsTerminal;
    struct Erase(bool);
    impl Drop for Erase {
        fn drop(&mut self) {
            if self.0 {
                eprint!("\r\x1b[K");
            }
        }
    }
    let tty = std::io::stderr().is_terminal();
    if tty {
        eprint!("mtastsd: {text}\u{2026}");
    }
    Erase(tty)
}

fn check(args: CheckArgs) -> ExitCode {
    let config = match load_config(args.config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let config = match with_check_options(config, &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mtastsd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Read the policy file before any network: an unreadable file is a usage error.
    let policy_file = match &args.policy_file {
        Some(path) => match std::fs::read(path) {
            Ok(body) => Some((path.clone(), body)),
            Err(e) => {
                eprintln!("mtastsd: {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let json = args.json;
    let smtp_port = args.smtp_port;
    let domain = args.for_domain.or(args.domain);
    mtastsd::logging::init(LogTarget::Stderr, log::LevelFilter::Error);
    runtime().block_on(async move {
        let dns = match mtastsd::resolver::dns::Dns::new(&config.dns) {
            Ok(d) => d,
            Err(e) => return fail(EXIT_RUNTIME, &e),
        };
        let report = match policy_file {
            Some((path, body)) => {
                let _progress = progress("looking up MX records");
                mtastsd::check::check_policy_file(&path, &body, domain.as_deref(), &dns).await
            }
            None => match check_domain(&config, &domain.unwrap_or_default(), &dns, smtp_port).await
            {
                Ok(report) => report,
                Err(code) => return code,
            },
        };
        print_check_report(&report, json);
        check_exit_code(&report)
    })
}

/// `--nameserver`, `--ca-file` and `--timeout` over the configuration file's values;
/// the error is the usage message.
fn with_check_options(mut config: Config, args: &CheckArgs) -> Result<Config, String> {
    if !args.nameserver.is_empty() {
        config.dns.nameservers = args
            .nameserver
            .iter()
            .map(|s| mtastsd::config::parse_nameserver(s).map_err(|e| format!("--nameserver: {e}")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(ca) = &args.ca_file {
        config.fetch.ca_file = Some(ca.clone());
    }
    if let Some(t) = args.timeout {
        config.fetch.timeout = t;
        config.dns.timeout = t;
    }
    Ok(config)
}

/// The audit of a published domain: its records, its policy over HTTPS and a
/// STARTTLS probe of each MX host; `Err` is the exit code of a failure to start.
async fn check_domain(
    config: &Config,
    domain: &str,
    dns: &mtastsd::resolver::dns::Dns,
    smtp_port: u16,
) -> Result<mtastsd::check::CheckReport, ExitCode> {
    let resolvers = daemon::build_resolvers(config).map_err(|e| fail(EXIT_RUNTIME, &e))?;
    let mut opts =
        mtastsd::check::CheckOptions::from_config(config).map_err(|e| fail(EXIT_CONFIG, &e))?;
    opts.smtp_port = smtp_port;
    let _progress = progress(&format!(
        "checking {domain}: DNS, HTTPS, STARTTLS on each MX host"
    ));
    Ok(mtastsd::check::check(domain, dns, &resolvers, &opts).await)
}

fn print_check_report(report: &mtastsd::check::CheckReport, json: bool) {
    if json {
        print_report(report, true);
    } else {
        print!(
            "{}",
            mtastsd::check::render::render(report, colour_stdout())
        );
    }
}

/// An invalid domain name is bad usage (2), any error found a failure (1), SPEC 7.4.
fn check_exit_code(report: &mtastsd::check::CheckReport) -> ExitCode {
    if report.has(mtastsd::check::Code::DomainInvalid) {
        ExitCode::from(EXIT_CONFIG)
    } else if report.has_errors() {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    }
}
