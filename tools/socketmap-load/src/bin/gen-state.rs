//! gen-state: write a persisted mtastsd cache (`DIR/policies.json`, the format of
//! mtastsd's src/cache/store.rs) holding an enforce policy for every key of a
//! pattern, fetched "now", so mtastsd starts with a hot cache and no network.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde::Serialize;

use socketmap_load::keys;

/// The store's format version (src/cache/store.rs FORMAT_VERSION).
const FORMAT_VERSION: u32 = 1;
/// The store's file name in the state directory.
const FILE_NAME: &str = "policies.json";

/// Write DIR/policies.json for mtastsd --state-dir DIR.
#[derive(Debug, Parser)]
#[command(name = "gen-state", version)]
struct Args {
    /// State directory (created if needed).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Domains; {N} runs from 0 to --key-count - 1.
    #[arg(long, default_value = "d{N}.bench.test")]
    pattern: String,
    #[arg(long, default_value_t = 1000)]
    key_count: usize,
    /// MX patterns of every policy (repeatable); {N} is replaced by the domain's
    /// number, for policies that all differ (`mx.d{N}.bench.test`).
    #[arg(long, default_value = "mx.example.net")]
    mx: Vec<String>,
    /// The policies' max_age, seconds.
    #[arg(long, default_value_t = 604_800)]
    max_age: u32,
    /// The TXT id the policies were "fetched" under.
    #[arg(long, default_value = "bench1")]
    id: String,
    /// Seconds before now the policies were "fetched" (0: now). More than a day
    /// (or three quarters of --max-age) makes them due for mtastsd's proactive
    /// refresh at its first scan.
    #[arg(long, default_value_t = 0)]
    fetched_ago: u64,
}

/// Mirrors mtastsd's `File1` / `Persisted` / `CachedPolicy` / `Policy` serde shapes.
#[derive(Serialize)]
struct StoreFile<'a> {
    version: u32,
    policies: Vec<Persisted<'a>>,
}

#[derive(Serialize)]
struct Persisted<'a> {
    domain: String,
    policy: PolicyJson,
    id: &'a str,
    fetched: u64,
}

#[derive(Serialize)]
struct PolicyJson {
    mode: &'static str,
    max_age: u32,
    mx: Vec<String>,
    max_age_clamped: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-state: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let domains = keys::from_pattern(&args.pattern, args.key_count)?;
    let fetched = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        .saturating_sub(args.fetched_ago);
    let file = StoreFile {
        version: FORMAT_VERSION,
        policies: domains
            .into_iter()
            .enumerate()
            .map(|(n, domain)| Persisted {
                domain,
                policy: PolicyJson {
                    mode: "enforce",
                    max_age: args.max_age,
                    mx: args
                        .mx
                        .iter()
                        .map(|mx| mx.replace(keys::PLACEHOLDER, &n.to_string()))
                        .collect(),
                    max_age_clamped: false,
                },
                id: &args.id,
                fetched,
            })
            .collect(),
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let path = args.dir.join(FILE_NAME);
    let tmp = args.dir.join(format!("{FILE_NAME}.tmp"));
    let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    serde_json::to_writer(&mut out, &file).map_err(|e| io(e.into()))?;
    out.flush().map_err(io)?;
    drop(out);
    std::fs::rename(&tmp, &path).map_err(io)?;
    eprintln!(
        "gen-state: {} enforce policies in {}",
        file.policies.len(),
        path.display()
    );
    Ok(())
}
