//! socketmap-baseline: the smallest socketmap server that answers from a HashMap.
//!
//! It is the ceiling a real server is measured against on the same machine: per
//! request it only finds a frame, looks the key up and copies a prepared reply.
//! No normalisation, no timeouts, no limits beyond the request size (SPEC 1.4).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use socketmap_load::keys;
use socketmap_load::netstring::{self, MAX_REQUEST};
use socketmap_load::target::{Conn, Target};

/// Minimal socketmap server for benchmarks: OK <answer> for the pattern's keys,
/// NOTFOUND for anything else.
#[derive(Debug, Parser)]
#[command(name = "socketmap-baseline", version)]
struct Args {
    /// Listen on tcp:HOST:PORT, HOST:PORT or unix:/PATH.
    #[arg(long, default_value = "127.0.0.1:8462")]
    listen: Target,
    /// Known keys; {N} runs from 0 to --key-count - 1.
    #[arg(long, default_value = "d{N}.bench.test")]
    pattern: String,
    #[arg(long, default_value_t = 1000)]
    key_count: usize,
    /// The data of the OK reply; {N} is replaced by the key's number.
    #[arg(
        long,
        default_value = "secure match=mx.example.net servername=hostname"
    )]
    answer: String,
    /// Tokio worker threads (1: the single-threaded scheduler).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Spend this many ns of CPU on each request before answering (a busy wait):
    /// a server made slower on purpose, to see how throughput and the latency tail
    /// depend on the CPU a request costs (docs/BENCHMARKS.md, the throughput and latency table).
    #[arg(long, default_value_t = 0)]
    extra_ns: u64,
}

/// Key → the whole framed reply, ready to copy. Read-only: threads share it freely.
type Map = HashMap<Box<[u8]>, Arc<[u8]>>;

fn main() -> ExitCode {
    let args = Args::parse();
    let keys = match keys::from_pattern(&args.pattern, args.key_count) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("socketmap-baseline: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match socketmap_load::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("socketmap-baseline: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args, keys)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socketmap-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args, keys: Vec<String>) -> std::io::Result<()> {
    let listener = args.listen.listen().await?;
    let map = Arc::new(build_map(&keys, &args.answer));
    eprintln!(
        "socketmap-baseline: {} keys, listening on {}",
        map.len(),
        listener.describe()
    );
    loop {
        match listener.accept().await {
            Ok(conn) => {
                tokio::spawn(connection(conn, Arc::clone(&map), args.extra_ns));
            }
            Err(e) => {
                eprintln!("socketmap-baseline: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One framed reply shared by every key, or one per key when `answer` holds {N}
/// (replaced by the key's number, as gen-state does with its mx patterns).
fn build_map(keys: &[String], answer: &str) -> Map {
    let framed = |answer: &str| -> Arc<[u8]> {
        let mut framed = Vec::new();
        netstring::encode(format!("OK {answer}").as_bytes(), &mut framed);
        framed.into()
    };
    let shared = framed(answer);
    keys.iter()
        .enumerate()
        .map(|(n, k)| {
            let reply = if answer.contains(keys::PLACEHOLDER) {
                framed(&answer.replace(keys::PLACEHOLDER, &n.to_string()))
            } else {
                Arc::clone(&shared)
            };
            (k.as_bytes().into(), reply)
        })
        .collect()
}

/// Burn `ns` of CPU (nothing when 0).
fn busy_wait(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_nanos(ns);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

async fn connection(mut conn: Conn, map: Arc<Map>, extra_ns: u64) {
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    loop {
        match conn.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut at = 0;
        let mut close = false;
        loop {
            match netstring::frame(&input[at..], MAX_REQUEST) {
                Ok(Some((payload, used))) => {
                    let request = &input[at + payload.start..at + payload.end];
                    busy_wait(extra_ns);
                    match request.iter().position(|&b| b == b' ') {
                        Some(space) => match map.get(&request[space + 1..]) {
                            Some(reply) => output.extend_from_slice(reply),
                            None => output.extend_from_slice(b"9:NOTFOUND ,"),
                        },
                        None => {
                            netstring::encode(b"PERM request without a key", &mut output);
                        }
                    }
                    at += used;
                }
                Ok(None) => break,
                Err(e) => {
                    netstring::encode(format!("PERM {e}").as_bytes(), &mut output);
                    close = true;
                    break;
                }
            }
        }
        input.drain(..at);
        if conn.write_all(&output).await.is_err() || close {
            return;
        }
        output.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reply_for_all_keys_or_one_per_key_with_a_placeholder() {
        let keys = keys::from_pattern("d{N}.test", 2).unwrap();
        let shared = build_map(&keys, "secure match=mx.example");
        assert_eq!(&*shared[&b"d1.test"[..]], b"26:OK secure match=mx.example,");
        assert!(Arc::ptr_eq(
            &shared[&b"d0.test"[..]],
            &shared[&b"d1.test"[..]]
        ));
        let each = build_map(&keys, "secure match=mx.d{N}.test");
        assert_eq!(&*each[&b"d0.test"[..]], b"26:OK secure match=mx.d0.test,");
        assert_eq!(&*each[&b"d1.test"[..]], b"26:OK secure match=mx.d1.test,");
    }
}
