//! A cache hit allocates nothing per request (the hot path: `src/lib.rs`,
//! `src/answer.rs`, docs/BENCHMARKS.md). Counts the heap allocations made on this
//! thread while the handler answers requests for cached domains (parse, normalise,
//! lookup, reply bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::BoxFuture;
use mtastsd::answer::Handler;
use mtastsd::cache::{CacheSettings, PolicyCache, SystemClock};
use mtastsd::config::{Config, Profile};
use mtastsd::resolver::{DnsError, FetchError, PolicyFetch, Resolvers, TxtLookup};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Every domain has the same enforce policy.
struct Everyone;

impl TxtLookup for Everyone {
    fn lookup_txt<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Vec<u8>>, DnsError>> {
        Box::pin(async { Ok(vec![b"v=STSv1; id=1".to_vec()]) })
    }
}

impl PolicyFetch for Everyone {
    fn fetch<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async {
            Ok(b"version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.example.org\nmax_age: 604800\n".to_vec())
        })
    }
}

fn frame(map: &str, key: &str) -> Vec<u8> {
    format!("{map} {key}").into_bytes()
}

#[test]
fn cache_hits_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = PolicyCache::new(
            1000,
            CacheSettings {
                recheck: Duration::from_secs(3600),
                answer_timeout: Duration::from_secs(5),
                max_concurrency: mtastsd::cache::MAX_FOREGROUND,
            },
            Resolvers {
                txt: Arc::new(Everyone),
                fetch: Arc::new(Everyone),
            },
            Arc::new(SystemClock),
        );
        let mut config = Config::default();
        config.profiles.insert(
            "old".into(),
            Profile {
                strict_testing: false,
                servername: false,
                tlsrpt: false,
            },
        );
        let handler = Handler::new(cache, Arc::new(config));
        let keys: Vec<String> = (0..100).map(|i| format!("d{i}.example.com")).collect();
        let requests: Vec<Vec<u8>> = keys
            .iter()
            .flat_map(|k| [frame("postfix", k), frame("old", k), frame("unknown", k)])
            .collect();
        let mut out = BytesMut::with_capacity(1 << 20);
        // Misses, then one hit each to build the replies.
        for _ in 0..2 {
            for r in &requests {
                handler.answer(r, &mut out).await;
            }
        }
        assert!(
            out.starts_with(
                b"64:OK secure match=mx1.example.net:.example.org servername=hostname,"
            ),
            "{:?}",
            String::from_utf8_lossy(&out[..80])
        );
        out.clear();

        let before = allocations();
        for _ in 0..10 {
            for r in &requests {
                handler.answer(r, &mut out).await;
            }
            out.clear();
        }
        let per_request = (allocations() - before) as f64 / (10 * requests.len()) as f64;
        assert_eq!(per_request, 0.0, "allocations per cache hit");
    });
}
