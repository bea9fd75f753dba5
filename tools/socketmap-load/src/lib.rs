//! Benchmark tools for socketmap servers such as mtastsd (see docs/BENCHMARKS.md).
//!
//! - [`netstring`]: framing, strict reply parsing, request encoding (pure, no I/O);
//! - [`target`]: `tcp:HOST:PORT`, `HOST:PORT` or `unix:/PATH`, for clients and servers;
//! - [`keys`]: the key set (`d{N}.bench.test` pattern or a file) and how to pick keys;
//! - [`report`]: counters, the latency histogram, the printed and JSON report;
//! - [`dns`]: DNS questions and answers for `bench-dns` (a fixed TXT record) and
//!   `bench-world` (TXT and A records of generated domains).
//!
//! The binaries: `socketmap-load` (src/main.rs, the load generator),
//! `socketmap-baseline` (the ceiling every server figure is compared to) and
//! `gen-state` (a hot mtastsd cache file, so mtastsd needs no network) and
//! `bench-dns` (answers mtastsd's background TXT re-checks on loopback) and
//! `bench-world` (DNS and HTTPS for cold misses; benches/cold.sh).

pub mod dns;
pub mod keys;
pub mod netstring;
pub mod report;
pub mod target;

/// A tokio runtime with `threads` workers: the single-threaded scheduler for one
/// (cheaper than a one-worker multi-thread runtime), the multi-thread one otherwise.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}
