//! tlsrpt-flood: the sending side of the TLS-RPT collector benchmark
//! (`benches/tlsrpt.sh`, docs/BENCHMARKS.md): real libtlsrpt datagrams (the files of
//! `tests/golden/tlsrpt/`, the recipient domain rewritten to one of `--domains`
//! names) sent to a unix datagram socket, one after another, from a **blocking**
//! socket. Postfix itself sends without blocking and loses what the receiver's
//! queue cannot take; blocking here makes the kernel queue push back, so the rate
//! this achieves is the rate the collector drains, and every datagram sent must be
//! counted. Prints one JSON line: sent, seconds, rate.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Send real libtlsrpt datagrams to a TLS-RPT collector, blocking, as fast as it drains"
)]
struct Args {
    /// The collector's socket (mtastsd's `[tlsrpt] socket`, tlsrpt-collectd's --socketname).
    socket: PathBuf,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many datagrams (0: no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Spread the datagrams over this many recipient domains (d0.flood.test ...).
    #[arg(long, default_value_t = 100)]
    domains: u64,
    /// Send at most this many datagrams a second (0: as fast as the receiver drains).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The directory of the datagram files (one JSON datagram each).
    #[arg(long, default_value = "tests/golden/tlsrpt")]
    datagrams: PathBuf,
}

fn main() {
    let args = Args::parse();
    let templates = load(&args.datagrams);
    let domains = args.domains.max(1);
    // Pre-built: the loop measures the receiver, not this process's formatting.
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for i in 0..domains.min(10_000) {
        for t in &templates {
            datagrams.push(
                t.replace("rpt.example", &format!("d{i}.flood.test"))
                    .into_bytes(),
            );
        }
    }
    let socket = UnixDatagram::unbound().expect("a unix datagram socket");
    socket
        .connect(&args.socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", args.socket.display()));
    let deadline = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut i = 0usize;
    loop {
        if args.count > 0 && sent >= args.count {
            break;
        }
        // Check the clock every 256 datagrams: cheap, and still exact enough.
        if sent.is_multiple_of(256) && started.elapsed() >= deadline && args.count == 0 {
            break;
        }
        if args.rate > 0 && sent.is_multiple_of(64) {
            // Paced in steps of 64: wait until this many are due.
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        match socket.send(&datagrams[i]) {
            Ok(_) => sent += 1,
            Err(e) => panic!("send after {sent} datagrams: {e}"),
        }
        i = (i + 1) % datagrams.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"seconds\":{secs:.3},\"rate\":{:.0}}}",
        sent as f64 / secs
    );
}

/// The datagrams with `rpt.example` as their domain (the others would not spread).
fn load(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.trim_end().to_string();
        if text.contains("rpt.example") {
            out.push(text);
        }
    }
    assert!(
        !out.is_empty(),
        "no datagrams with rpt.example in {}",
        dir.display()
    );
    out
}
