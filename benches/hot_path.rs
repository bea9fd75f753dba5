//! Criterion micro-benchmarks of the answer path (docs/BENCHMARKS.md): netstring framing, key
//! normalisation, the cache hit, answer formatting, the TXT record and policy parsers,
//! and one whole request (frame bytes in → reply bytes out) answered from the cache.
//!
//! `cargo bench --bench hot_path` (about a minute and a half on 2 cores). Before the
//! timings it prints allocations per operation, counted by the global allocator below;
//! A cache hit on the steady path must allocate nothing (tests/alloc.rs holds it to that).
//!
//! The cache is filled through its own resolution path (in-memory DNS and fetch edges,
//! the real clock, as the daemon reads it on every hit; nothing expires or is re-checked
//! within a run: a week's `max_age`, a day's re-check), with 1 000 and with 100 000
//! domains, and hit in a shuffled order so the 100 000 case pays its real memory cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::future::BoxFuture;

use mtastsd::answer::Handler;
use mtastsd::cache::{CacheSettings, Lookup, PolicyCache, SystemClock};
use mtastsd::config::{Config, Profile};
use mtastsd::mta_sts::policy::parse_policy;
use mtastsd::mta_sts::record::select_record;
use mtastsd::mta_sts::{Mode, MxPattern, Policy};
use mtastsd::postfix::policy_answer;
use mtastsd::resolver::{DnsError, FetchError, PolicyFetch, Resolvers, TxtLookup};
use mtastsd::socketmap::{netstring, normalise_key, parse_request, Key, Reply, MAX_REQUEST};

// ---------------------------------------------------------------------------
// Counting allocator: every alloc/realloc is one relaxed atomic add (a few ns, also
// inside the timed loops; fine for comparing, and it is the same for every bench).

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Heap bytes currently allocated (allocated minus freed).
static LIVE: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counters() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// Run `op` `n` times (after a warm-up round) and print allocations and bytes per call.
fn report(name: &str, n: u64, mut op: impl FnMut()) {
    for _ in 0..n.min(1000) {
        op();
    }
    let (a0, b0) = counters();
    for _ in 0..n {
        op();
    }
    let (a1, b1) = counters();
    println!(
        "allocs/op {name:<44} {:>6.2} allocs {:>8.1} bytes",
        (a1 - a0) as f64 / n as f64,
        (b1 - b0) as f64 / n as f64
    );
}

// ---------------------------------------------------------------------------
// Fixtures.

/// Every `_mta-sts.*` name has the same record; every domain serves the same policy.
struct InMemory;

const TXT: &[u8] = b"v=STSv1; id=20240101T000000";
const POLICY_BODY: &[u8] =
    b"version: STSv1\nmode: enforce\nmx: mx1.mail.example.net\nmx: *.backup.example.net\nmax_age: 604800\n";

impl TxtLookup for InMemory {
    fn lookup_txt<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Vec<Vec<u8>>, DnsError>> {
        Box::pin(async { Ok(vec![TXT.to_vec()]) })
    }
}

impl PolicyFetch for InMemory {
    fn fetch<'a>(&'a self, _domain: &'a str) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async { Ok(POLICY_BODY.to_vec()) })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// A cache holding `n` enforce policies (`d{i}.bench.test`), and the domains in a
/// shuffled order (deterministic xorshift) to hit them in.
struct Filled {
    cache: Arc<PolicyCache>,
    domains: Vec<String>,
    /// `postfix <domain>` netstrings, in the same order.
    frames: Vec<Vec<u8>>,
}

fn filled(rt: &tokio::runtime::Runtime, n: usize) -> Filled {
    let mut domains: Vec<String> = (0..n).map(|i| format!("d{i}.bench.test")).collect();
    let live0 = LIVE.load(Ordering::Relaxed);
    let cache = PolicyCache::new(
        n,
        CacheSettings {
            recheck: Duration::from_secs(86_400),
            answer_timeout: Duration::from_secs(5),
            max_concurrency: mtastsd::cache::MAX_FOREGROUND,
        },
        Resolvers {
            txt: Arc::new(InMemory),
            fetch: Arc::new(InMemory),
        },
        Arc::new(SystemClock),
    );
    rt.block_on(async {
        for d in &domains {
            assert!(matches!(cache.lookup(d).await, Lookup::Policy(_)));
        }
        while cache.resolutions_in_flight() > 0 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(cache.len(), n);
    let live1 = LIVE.load(Ordering::Relaxed);
    println!(
        "heap held by the cache with {n} enforce policies (2 mx): {:.1} MiB, {} bytes per domain",
        (live1 - live0) as f64 / (1 << 20) as f64,
        (live1 - live0) / n as u64
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..domains.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        domains.swap(i, (x % (i as u64 + 1)) as usize);
    }
    // Re-allocate in hit order, so walking the list is sequential in memory as the
    // server's input buffer is: the cache's own memory is what should miss, not ours.
    let domains: Vec<String> = domains.iter().map(|d| d.as_str().to_owned()).collect();
    let frames = domains
        .iter()
        .map(|d| {
            let mut f = BytesMut::new();
            netstring::encode(format!("postfix {d}").as_bytes(), &mut f);
            f.to_vec()
        })
        .collect();
    Filled {
        cache,
        domains,
        frames,
    }
}

/// The items (domains, request frames) one after another, from the first again
/// after the last.
fn in_turn<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut i = 0;
    move || {
        let item = &items[i];
        i = (i + 1) % items.len();
        item
    }
}

fn policy_with(mx: &[&str]) -> Policy {
    Policy {
        mode: Mode::Enforce,
        max_age: 604_800,
        mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
        max_age_clamped: false,
    }
}

fn profile() -> Profile {
    Profile {
        strict_testing: false,
        servername: true,
        tlsrpt: false,
    }
}

/// A cache-hit request from the public pieces, formatting the answer on every hit
/// (`policy_answer` + `Reply::ok` + `encode`): what the server did before the cache
/// kept each policy's answer text, and the cost that saves.
async fn assembled(
    cache: &Arc<PolicyCache>,
    profile: &Profile,
    input: &mut BytesMut,
    output: &mut BytesMut,
) {
    let frame = netstring::decode(input, MAX_REQUEST).unwrap().unwrap();
    let request = parse_request(&frame).unwrap();
    let reply = match normalise_key(request.key) {
        Key::Domain(d) => match cache.lookup(&d).await {
            Lookup::Policy(p) => match policy_answer(&p.policy, profile) {
                Some(answer) => Reply::ok(answer),
                None => Reply::NotFound,
            },
            Lookup::NoPolicy => Reply::NotFound,
        },
        Key::Skip(_) => Reply::NotFound,
    };
    reply.encode(output);
}

/// The server's own per-request code (`socketmap::connection`'s frame loop): find
/// the frame in place, `Handler::answer` appends the reply, drop the frame's bytes.
async fn via_handler(handler: &Handler, input: &mut BytesMut, output: &mut BytesMut) {
    let frame = netstring::decode_frame(input, MAX_REQUEST)
        .unwrap()
        .unwrap();
    handler.answer(&input[frame.payload], output).await;
    input.advance(frame.len);
}

// ---------------------------------------------------------------------------
// Allocation report.

fn allocation_report_pure() {
    println!("--- allocations per operation (steady state, after warm-up) ---");
    let frame = b"25:postfix d12345.bench.test,";
    let mut input = BytesMut::with_capacity(512);
    report("netstring::decode (reused input buffer)", 10_000, || {
        input.extend_from_slice(frame);
        black_box(netstring::decode(&mut input, MAX_REQUEST).unwrap());
    });
    report("netstring::decode_frame + advance", 10_000, || {
        input.extend_from_slice(frame);
        let f = netstring::decode_frame(&input, MAX_REQUEST)
            .unwrap()
            .unwrap();
        black_box(&input[f.payload]);
        input.advance(f.len);
    });
    let mut out = BytesMut::with_capacity(512);
    report("netstring::encode (reused output buffer)", 10_000, || {
        netstring::encode(black_box(b"OK secure match=mx.example.net"), &mut out);
        out.clear();
    });
    report("parse_request", 10_000, || {
        black_box(parse_request(black_box(b"postfix d1.bench.test")).unwrap());
    });
    report("normalise_key lower-case domain", 10_000, || {
        black_box(normalise_key(black_box("d1.bench.test")));
    });
    report("normalise_key mixed case + trailing dot", 10_000, || {
        black_box(normalise_key(black_box("D1.Bench.TEST.")));
    });
    let p = policy_with(&["mx1.mail.example.net", "*.backup.example.net"]);
    let prof = profile();
    report("policy_answer (2 mx)", 10_000, || {
        black_box(policy_answer(black_box(&p), &prof));
    });
    let reply = Reply::ok(policy_answer(&p, &prof).unwrap());
    report("Reply::encode (reused output buffer)", 10_000, || {
        reply.encode(&mut out);
        out.clear();
    });
    report("select_record (SPF + STSv1)", 10_000, || {
        black_box(select_record(black_box(&[&b"v=spf1 -all"[..], TXT])).ok());
    });
    report("parse_policy (2 mx)", 10_000, || {
        black_box(parse_policy(black_box(POLICY_BODY)).ok());
    });
}

fn allocation_report_cache(rt: &tokio::runtime::Runtime, f: &Filled) {
    // Cache hits and whole requests, inside the runtime like the daemon.
    let n = f.domains.len() as u64;
    rt.block_on(async {
        for d in &f.domains {
            black_box(f.cache.lookup(d).await);
        }
        let (a0, b0) = counters();
        for d in &f.domains {
            black_box(f.cache.lookup(d).await);
        }
        let (a1, b1) = counters();
        println!(
            "allocs/op {:<44} {:>6.2} allocs {:>8.1} bytes",
            format!("PolicyCache::lookup hit ({n} cached)"),
            (a1 - a0) as f64 / n as f64,
            (b1 - b0) as f64 / n as f64
        );

        let prof = profile();
        let mut input = BytesMut::with_capacity(512);
        let mut output = BytesMut::with_capacity(512);
        for fr in &f.frames {
            input.extend_from_slice(fr);
            assembled(&f.cache, &prof, &mut input, &mut output).await;
            output.clear();
        }
        let (a0, b0) = counters();
        for fr in &f.frames {
            input.extend_from_slice(fr);
            assembled(&f.cache, &prof, &mut input, &mut output).await;
            output.clear();
        }
        let (a1, b1) = counters();
        println!(
            "allocs/op {:<44} {:>6.2} allocs {:>8.1} bytes",
            "request→reply, pieces, answer formatted per hit",
            (a1 - a0) as f64 / n as f64,
            (b1 - b0) as f64 / n as f64
        );

        let handler = Handler::new(Arc::clone(&f.cache), Arc::new(Config::default()));
        let live0 = LIVE.load(Ordering::Relaxed);
        for fr in &f.frames {
            input.extend_from_slice(fr);
            via_handler(&handler, &mut input, &mut output).await;
            output.clear();
        }
        let live1 = LIVE.load(Ordering::Relaxed);
        println!(
            "heap added by the first server-path hit of each domain (answer text): {} bytes per domain",
            live1.saturating_sub(live0) / n
        );
        let (a0, b0) = counters();
        for fr in &f.frames {
            input.extend_from_slice(fr);
            via_handler(&handler, &mut input, &mut output).await;
            output.clear();
        }
        let (a1, b1) = counters();
        println!(
            "allocs/op {:<44} {:>6.2} allocs {:>8.1} bytes",
            "request→reply, server path (Handler::answer)",
            (a1 - a0) as f64 / n as f64,
            (b1 - b0) as f64 / n as f64
        );
    });
}

// ---------------------------------------------------------------------------
// Benchmarks.

fn bench_socketmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketmap");
    g.throughput(Throughput::Elements(1));

    let frame = b"25:postfix d12345.bench.test,";
    let mut input = BytesMut::with_capacity(512);
    g.bench_function("netstring_decode", |b| {
        b.iter(|| {
            input.extend_from_slice(black_box(frame));
            black_box(netstring::decode(&mut input, MAX_REQUEST).unwrap())
        })
    });

    g.bench_function("netstring_decode_frame", |b| {
        b.iter(|| {
            input.extend_from_slice(black_box(frame));
            let f = netstring::decode_frame(&input, MAX_REQUEST)
                .unwrap()
                .unwrap();
            black_box(&input[f.payload]);
            input.advance(f.len);
        })
    });

    let mut out = BytesMut::with_capacity(512);
    let payload = b"OK secure match=mx1.mail.example.net:.backup.example.net servername=hostname";
    g.bench_function("netstring_encode", |b| {
        b.iter(|| {
            netstring::encode(black_box(payload), &mut out);
            out.clear();
        })
    });

    g.bench_function("parse_request", |b| {
        b.iter(|| black_box(parse_request(black_box(b"postfix d12345.bench.test")).unwrap()))
    });

    for (name, key) in [
        ("lower", "d12345.bench.test"),
        ("mixed_case_dot", "D12345.Bench.TEST."),
        ("next_hop_port", "[mx.example.com]:25"),
        ("idn", "bücher.example"),
        ("ip_literal", "[192.0.2.1]"),
    ] {
        g.bench_with_input(BenchmarkId::new("normalise_key", name), key, |b, key| {
            b.iter(|| black_box(normalise_key(black_box(key))))
        });
    }
    g.finish();
}

fn bench_answer(c: &mut Criterion) {
    let mut g = c.benchmark_group("answer");
    g.throughput(Throughput::Elements(1));
    let prof = profile();
    let one = policy_with(&["mx.example.com"]);
    let two = policy_with(&["mx1.mail.example.net", "*.backup.example.net"]);
    let many_mx: Vec<String> = (0..20).map(|i| format!("mx{i}.example.net")).collect();
    let many = policy_with(&many_mx.iter().map(String::as_str).collect::<Vec<_>>());
    for (name, p) in [("1mx", &one), ("2mx", &two), ("20mx", &many)] {
        g.bench_with_input(BenchmarkId::new("policy_answer", name), p, |b, p| {
            b.iter(|| black_box(policy_answer(black_box(p), &prof)))
        });
    }
    let reply = Reply::ok(policy_answer(&two, &prof).unwrap());
    let mut out = BytesMut::with_capacity(512);
    g.bench_function("reply_encode", |b| {
        b.iter(|| {
            black_box(&reply).encode(&mut out);
            out.clear();
        })
    });
    g.finish();
}

fn bench_parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parsers");
    g.throughput(Throughput::Elements(1));
    let txt_records: [&[u8]; 3] = [
        b"v=spf1 include:_spf.example.net -all",
        TXT,
        b"google-site-verification=abcdefghijklmnopqrstuvwxyz0123456789",
    ];
    g.bench_function("select_record", |b| {
        b.iter(|| black_box(select_record(black_box(&txt_records[..])).ok()))
    });
    g.bench_function("parse_policy_2mx", |b| {
        b.iter(|| black_box(parse_policy(black_box(POLICY_BODY)).ok()))
    });
    let mut big = String::from("version: STSv1\r\nmode: enforce\r\n");
    for i in 0..20 {
        big.push_str(&format!("mx: mx{i}.mail.example.net\r\n"));
    }
    big.push_str("max_age: 1209600\r\n");
    g.bench_function("parse_policy_20mx_crlf", |b| {
        b.iter(|| black_box(parse_policy(black_box(big.as_bytes())).ok()))
    });
    g.bench_function("mx_parse_wildcard", |b| {
        b.iter(|| black_box(MxPattern::parse(black_box("*.Backup.Example.NET")).ok()))
    });
    let wild = MxPattern::parse("*.backup.example.net").unwrap();
    let exact = MxPattern::parse("mx1.mail.example.net").unwrap();
    g.bench_function("mx_matches_wildcard", |b| {
        b.iter(|| black_box(wild.matches(black_box("MX7.backup.example.net."))))
    });
    g.bench_function("mx_matches_exact", |b| {
        b.iter(|| black_box(exact.matches(black_box("mx1.mail.example.net"))))
    });
    g.finish();
}

/// `iters` sequential cache hits (shuffled domains) inside one `block_on`.
fn bench_cache(c: &mut Criterion, rt: &tokio::runtime::Runtime, sets: &[Filled]) {
    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(1));
    for f in sets {
        let n = f.domains.len();
        // The server's hit: `cached` lends the entry's mode and answer text under the
        // lock (what `Handler::answer` copies into its reply), no reference count.
        g.bench_with_input(BenchmarkId::new("cached", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(f.cache.cached(next(), |hit| hit.answer.len())))
        });
        // `lookup`, for callers that want the policy: the same, plus a clone of the
        // policy's `Arc` (a write to the policy's memory).
        g.bench_with_input(BenchmarkId::new("lookup", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(f.cache.lookup(next()).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    // The floor for "find a random one of n string keys": a std HashMap get, no LRU,
    // no lock, no policy check.
    for f in sets {
        let n = f.domains.len();
        let mut map: HashMap<String, u64> = HashMap::with_capacity(n);
        let mut sorted: Vec<&String> = f.domains.iter().collect();
        sorted.sort();
        for (v, d) in sorted.iter().enumerate() {
            map.insert((*d).clone(), v as u64);
        }
        g.bench_with_input(BenchmarkId::new("std_hashmap_baseline", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(map.get(next()).copied()))
        });
        // The same keys in the `lru` crate (what the cache used before `schnellru`):
        // a table of pointers to list nodes. `get` moves the entry to the front (it
        // writes the two random neighbours' links), `peek` does not.
        let mut lru: lru::LruCache<String, u64> =
            lru::LruCache::new(std::num::NonZeroUsize::new(n).unwrap());
        // Filled in an order unrelated to the hit order, as the real cache is.
        for (v, d) in sorted.iter().enumerate() {
            lru.put((*d).clone(), v as u64);
        }
        g.bench_with_input(BenchmarkId::new("lru_get_baseline", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(lru.get(next()).copied()))
        });
        // The same behind a Mutex, as in the cache: the lock's atomic read-modify-write
        // stops the CPU overlapping one hit's cache misses with the next one's.
        let locked = std::sync::Mutex::new(lru);
        g.bench_with_input(BenchmarkId::new("mutex_lru_get_baseline", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(locked.lock().unwrap().get(next()).copied()))
        });
        let lru = locked.into_inner().unwrap();
        g.bench_with_input(BenchmarkId::new("lru_peek_baseline", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(lru.peek(next()).copied()))
        });
        // `schnellru`, what the cache uses: the entries sit in the hash table itself,
        // so a hit reads one slot instead of a slot and a node.
        let mut flat: schnellru::LruMap<String, u64> =
            schnellru::LruMap::new(schnellru::ByLength::new(n as u32));
        for (v, d) in sorted.iter().enumerate() {
            flat.insert((*d).clone(), v as u64);
        }
        g.bench_with_input(BenchmarkId::new("schnellru_peek_baseline", n), f, |b, f| {
            let mut next = in_turn(&f.domains);
            b.iter(|| black_box(flat.peek(next()).copied()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("request_to_reply");
    g.throughput(Throughput::Elements(1));
    let prof = profile();
    for f in sets {
        let n = f.domains.len();
        g.bench_with_input(BenchmarkId::new("assembled", n), f, |b, f| {
            let mut input = BytesMut::with_capacity(512);
            let mut output = BytesMut::with_capacity(512);
            let mut next = in_turn(&f.frames);
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        input.extend_from_slice(next());
                        assembled(&f.cache, &prof, &mut input, &mut output).await;
                        black_box(&output);
                        output.clear();
                    }
                    start.elapsed()
                })
            })
        });
        let handler = Handler::new(Arc::clone(&f.cache), Arc::new(Config::default()));
        g.bench_with_input(BenchmarkId::new("handler", n), f, |b, f| {
            let mut input = BytesMut::with_capacity(512);
            let mut output = BytesMut::with_capacity(512);
            let mut next = in_turn(&f.frames);
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        input.extend_from_slice(next());
                        via_handler(&handler, &mut input, &mut output).await;
                        black_box(&output);
                        output.clear();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn main() {
    let rt = runtime();
    let t = Instant::now();
    let sets = [filled(&rt, 1_000), filled(&rt, 100_000)];
    println!(
        "filled caches of 1 000 and 100 000 domains in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    allocation_report_pure();
    for f in &sets {
        allocation_report_cache(&rt, f);
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args();
    bench_socketmap(&mut c);
    bench_answer(&mut c);
    bench_parsers(&mut c);
    bench_cache(&mut c, &rt, &sets);
    c.final_summary();
}
