//! socketmap-load: a socketmap load generator (see docs/BENCHMARKS.md).
//!
//! N connections each send a request and wait for its reply (closed loop), or send on
//! a schedule (`--rate`, open loop: latency counts from the scheduled time, so a
//! stalled server is charged for every request it delayed, not just one). Replies are
//! checked strictly; a malformed one is counted and its connection replaced.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use socketmap_load::keys::{self, Order, Picker};
use socketmap_load::netstring::Status;
use socketmap_load::netstring::{self, parse_reply};
use socketmap_load::report::{self, Prime, Report, RunConfig, Stats, Usage};
use socketmap_load::target::Conn;
use socketmap_load::target::Target;

/// Load generator for socketmap servers (Postfix's socketmap_table protocol).
#[derive(Debug, Parser)]
#[command(name = "socketmap-load", version)]
struct Args {
    /// Server: tcp:HOST:PORT, HOST:PORT or unix:/PATH.
    #[arg(long, default_value = "tcp:127.0.0.1:8461")]
    target: Target,
    /// Socketmap name sent before each key.
    #[arg(long, default_value = "postfix")]
    map: String,
    /// Connections, each with one request outstanding.
    #[arg(short = 'c', long, default_value_t = 8)]
    connections: usize,
    /// Open loop: requests per second over all connections (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Keys, one per line.
    #[arg(long, value_name = "FILE", conflicts_with = "pattern")]
    keys_file: Option<PathBuf>,
    /// Key pattern; {N} runs from 0 to --key-count - 1.
    #[arg(long, default_value = "d{N}.bench.test")]
    pattern: String,
    /// Number of keys made from --pattern.
    #[arg(long, default_value_t = 1000)]
    key_count: usize,
    /// Order of the keys on each connection.
    #[arg(long, value_enum, default_value_t = Order::RoundRobin)]
    order: Order,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Tokio worker threads (1: the single-threaded scheduler).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Before the warm-up, ask for every key once, spread over the connections (not
    /// measured; its rate is reported): a server that does work on a key's first hit,
    /// like mtastsd's background TXT re-check, is past it when measuring starts.
    #[arg(long)]
    prime: bool,
    /// Ask for every key exactly once, spread over the connections, and measure each
    /// reply (one pass; --warmup and --duration are ignored). With 1 connection the
    /// keys go one after another, in order; with as many connections as keys, all at
    /// once. With --rate, the requests are paced at that rate over all connections
    /// (each still waits for its previous reply), and latency counts from the send.
    #[arg(long, conflicts_with = "prime")]
    once: bool,
    /// Also report this process's CPU use in the measured window (Linux /proc): the
    /// server's, to see which side is saturated.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socketmap-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(args.warmup >= 0.0 && args.duration > 0.0) {
        return Err("--warmup must be >= 0 and --duration > 0".into());
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
    }
    let keys = match &args.keys_file {
        Some(path) => keys::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => keys::from_pattern(&args.pattern, args.key_count)?,
    };
    if keys.is_empty() {
        return Err("no keys".into());
    }
    // Framed once, up front: the generator's per-request work is a copy to the socket.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        keys.iter()
            .map(|k| netstring::request(&args.map, k))
            .collect(),
    );
    let config = RunConfig {
        target: args.target.to_string(),
        map: args.map.clone(),
        connections: args.connections,
        threads: args.threads.max(1),
        rate: args.rate,
        warmup_s: args.warmup,
        duration_s: args.duration,
        keys: keys.len(),
        order: args.order,
    };
    let rt = socketmap_load::runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    if args.once {
        let config = RunConfig {
            warmup_s: 0.0,
            ..config
        };
        let (stats, seconds, used, server_used) = rt.block_on(async {
            let before = report::own_usage();
            let server_before = args.server_pid.and_then(report::process_usage);
            let (stats, seconds) =
                one_pass(&args.target, &requests, args.connections, true, args.rate).await;
            let server_after = args.server_pid.and_then(report::process_usage);
            let server_used = server_before.zip(server_after).map(|(a, b)| b.since(a));
            (
                stats,
                seconds,
                report::own_usage().since(before),
                server_used,
            )
        });
        let config = RunConfig {
            duration_s: seconds,
            ..config
        };
        let report = Report::new(config, &stats, seconds, used, server_used);
        print!("{}", report.text());
        if let Some(path) = &args.json {
            let json = serde_json::to_string_pretty(&report).expect("report serializes");
            std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        return Ok(());
    }
    let (stats, (used, server_used), primed) = rt.block_on(async {
        let primed = match args.prime {
            true => Some(prime(&args.target, &requests, args.connections).await),
            false => None,
        };
        let (stats, used) = load(&args, requests).await;
        (stats, used, primed)
    });
    let mut report = Report::new(config, &stats, args.duration, used, server_used);
    report.prime = primed;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The measured window and the schedule, shared by the connection tasks.
struct Plan {
    target: Target,
    requests: Arc<Vec<Vec<u8>>>,
    order: Order,
    connections: usize,
    /// Replies to requests sent (or scheduled) from here on are measured.
    measure_from: Instant,
    /// Everything stops here; requests still in flight are not counted.
    end: Instant,
    /// Open loop: time between two requests of one connection.
    interval: Option<Duration>,
    start: Instant,
}

/// Run the connections; their merged counters and what this process and
/// --server-pid used while measuring.
async fn load(args: &Args, requests: Arc<Vec<Vec<u8>>>) -> (Stats, (Usage, Option<Usage>)) {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let plan = Arc::new(Plan {
        target: args.target.clone(),
        requests,
        order: args.order,
        connections: args.connections,
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r)),
        start,
    });
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| {
            let plan = Arc::clone(&plan);
            tokio::spawn(async move {
                let mut stats = Stats::new();
                // One timer per connection ends the run; the loop itself never waits
                // on a clock in the closed loop.
                let _ = tokio::time::timeout_at(plan.end, connection(i, &plan, &mut stats)).await;
                stats
            })
        })
        .collect();
    let server = args.server_pid;
    let cpu = tokio::spawn({
        let plan = Arc::clone(&plan);
        async move {
            tokio::time::sleep_until(plan.measure_from).await;
            let before = report::own_usage();
            let server_before = server.and_then(report::process_usage);
            tokio::time::sleep_until(plan.end).await;
            let server_after = server.and_then(report::process_usage);
            (
                report::own_usage().since(before),
                server_before.zip(server_after).map(|(a, b)| b.since(a)),
            )
        }
    });
    let mut total = Stats::new();
    for t in tasks {
        total.merge(&t.await.expect("connection task panicked"));
    }
    (total, cpu.await.unwrap_or_default())
}

/// One connection, reconnecting after errors, until the timeout drops it.
async fn connection(index: usize, plan: &Plan, stats: &mut Stats) {
    let mut picker = Picker::new(plan.order, index, plan.connections, plan.requests.len());
    // Open loop: connections are spread evenly over one interval.
    let mut next_send = plan
        .interval
        .map(|i| plan.start + i * index as u32 / plan.connections as u32);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let mut conn = match plan.target.connect().await {
            Ok(c) => c,
            Err(_) => {
                stats.connection_errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        buf.clear();
        loop {
            let sent = match (&mut next_send, plan.interval) {
                (Some(at), Some(interval)) => {
                    let scheduled = *at;
                    *at += interval;
                    wait_until(scheduled).await;
                    scheduled
                }
                _ => Instant::now(),
            };
            let written = match plan.interval {
                Some(_) => Instant::now(),
                None => sent,
            };
            let request = &plan.requests[picker.pick()];
            match exchange(&mut conn, &mut buf, request).await {
                Ok(status) => {
                    if sent >= plan.measure_from {
                        let now = Instant::now();
                        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
                        stats.reply(status, ns(now - sent), ns(now - written));
                    }
                }
                Err(failure) => {
                    failure.count(stats);
                    break;
                }
            }
        }
    }
}

/// Why a request got no reply; either way the connection is dropped.
enum Failure {
    Malformed,
    Connection,
}

impl Failure {
    fn count(self, stats: &mut Stats) {
        match self {
            Failure::Malformed => stats.malformed += 1,
            Failure::Connection => stats.connection_errors += 1,
        }
    }
}

/// Send one framed request and read its reply. `buf` holds bytes read past a reply
/// (none from a well-behaved server, which answers one request at a time here).
async fn exchange(conn: &mut Conn, buf: &mut Vec<u8>, request: &[u8]) -> Result<Status, Failure> {
    conn.write_all(request)
        .await
        .map_err(|_| Failure::Connection)?;
    loop {
        match parse_reply(buf) {
            Ok(Some((status, used))) => {
                buf.drain(..used);
                return Ok(status);
            }
            Ok(None) => match conn.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(Failure::Connection),
                Ok(_) => {}
            },
            Err(_) => return Err(Failure::Malformed),
        }
    }
}

/// Every key once, not measured (see [`one_pass`]).
async fn prime(target: &Target, requests: &Arc<Vec<Vec<u8>>>, connections: usize) -> Prime {
    let (total, seconds) = one_pass(target, requests, connections, false, None).await;
    let replies: u64 = total.replies.iter().sum();
    Prime {
        seconds,
        requests: replies,
        ok: total.replies[Status::Ok.index()],
        errors: total.malformed + total.connection_errors,
        rate_rps: if seconds > 0.0 {
            replies as f64 / seconds
        } else {
            0.0
        },
    }
}

/// Every key once: connection `i` of `n` asks for keys i, i + n, i + 2n, ...
/// `measure`: record each reply's latency too. `rate`: request `k` (in key order) is
/// sent no earlier than `k / rate` seconds after the start. Returns the merged
/// counters and the seconds the pass took.
async fn one_pass(
    target: &Target,
    requests: &Arc<Vec<Vec<u8>>>,
    connections: usize,
    measure: bool,
    rate: Option<f64>,
) -> (Stats, f64) {
    let started = Instant::now();
    let spacing = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let tasks: Vec<_> = (0..connections)
        .map(|first| {
            let target = target.clone();
            let requests = Arc::clone(requests);
            tokio::spawn(async move {
                let mut stats = Stats::new();
                let mut buf = Vec::with_capacity(4096);
                let mut conn = None;
                for (k, request) in requests.iter().enumerate().skip(first).step_by(connections) {
                    if let Some(spacing) = spacing {
                        // Timer precision (1 ms) is enough here, and unlike
                        // wait_until it does not spin.
                        tokio::time::sleep_until(started + spacing * k as u32).await;
                    }
                    // A failed request is counted and skipped, not retried.
                    if conn.is_none() {
                        match target.connect().await {
                            Ok(c) => conn = Some(c),
                            Err(_) => {
                                stats.connection_errors += 1;
                                continue;
                            }
                        }
                    }
                    let c = conn.as_mut().expect("connected above");
                    let sent = Instant::now();
                    match exchange(c, &mut buf, request).await {
                        Ok(status) if measure => {
                            let ns = sent.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
                            stats.reply(status, ns, ns);
                        }
                        Ok(status) => stats.replies[status.index()] += 1,
                        Err(failure) => {
                            failure.count(&mut stats);
                            conn = None;
                            buf.clear();
                        }
                    }
                }
                stats
            })
        })
        .collect();
    let mut total = Stats::new();
    for t in tasks {
        total.merge(&t.await.expect("prime task panicked"));
    }
    (total, started.elapsed().as_secs_f64())
}

/// Sleep until `at` with sub-millisecond precision. tokio's timer has 1 ms ticks and
/// rounds up, which would add up to 1 ms to every open-loop latency (they count from
/// the scheduled time): sleep to just before, then yield until the moment comes.
async fn wait_until(at: Instant) {
    const MARGIN: Duration = Duration::from_millis(2);
    if at > Instant::now() + MARGIN {
        tokio::time::sleep_until(at - MARGIN).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}
