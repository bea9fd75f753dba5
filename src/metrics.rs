//! Prometheus metrics and the health check (`[metrics] listen`).
//!
//! Counters on the answer path are handles registered once ([`get`]): an increment
//! is an atomic add, with no lookup and no allocation. Without `[metrics] listen`
//! no recorder is installed and every handle is a no-op.
//!
//! The endpoint is a deliberately tiny HTTP/1.1 server: `GET /metrics` (text format
//! 0.0.4) and `GET /healthz`, one request per connection. It holds at most
//! [`MAX_CONNECTIONS`] connections, each for at most [`READ_TIMEOUT`] plus
//! [`WRITE_TIMEOUT`], and runs on the resolver threads (see `daemon.rs`), never on
//! the thread that answers Postfix: a flood of scrapers or of idle connections costs
//! a few file descriptors, not the socketmap's answers (SPEC 7.6).
//!
//! This module knows nothing of the cache: the cache counts through the handles
//! here, and the daemon hands [`serve`] a callback ([`GaugesFn`]) that reads the
//! gauges at scrape time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Handles for everything counted on hot or warm paths.
pub struct Metrics {
    pub answers_ok: Counter,
    pub answers_notfound: Counter,
    pub answers_skipped: Counter,
    pub answers_perm: Counter,
    pub cache_hits: Counter,
    pub cache_negative_hits: Counter,
    pub cache_misses: Counter,
    /// SPEC 6.4: answers where DANE covered only some MX hosts (partial) or its
    /// check failed, and the domain's MTA-STS `enforce` policy answered instead.
    pub dane_partial_mta_sts: Counter,
    pub dane_failed_mta_sts: Counter,
    pub connections: Gauge,
    /// SPEC 8.1: libtlsrpt datagrams received, by what became of them: counted
    /// (`ok`), dropped as not a datagram (`malformed`), or dropped as larger than
    /// the collector takes (`truncated`).
    pub tlsrpt_ok: Counter,
    pub tlsrpt_malformed: Counter,
    pub tlsrpt_truncated: Counter,
    pub dns_seconds: Histogram,
    pub fetch_seconds: Histogram,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handles. Registered on first use: [`install`] must run before that to make
/// them count.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics {
        answers_ok: counter!("mtastsd_requests_total", "answer" => "ok"),
        answers_notfound: counter!("mtastsd_requests_total", "answer" => "notfound"),
        answers_skipped: counter!("mtastsd_requests_total", "answer" => "skipped"),
        answers_perm: counter!("mtastsd_requests_total", "answer" => "perm"),
        cache_hits: counter!("mtastsd_cache_lookups_total", "result" => "hit"),
        cache_negative_hits: counter!("mtastsd_cache_lookups_total", "result" => "negative"),
        cache_misses: counter!("mtastsd_cache_lookups_total", "result" => "miss"),
        dane_partial_mta_sts: counter!("mtastsd_dane_mta_sts_answers_total", "dane" => "partial"),
        dane_failed_mta_sts: counter!("mtastsd_dane_mta_sts_answers_total", "dane" => "failed"),
        connections: gauge!("mtastsd_connections"),
        tlsrpt_ok: counter!("mtastsd_tlsrpt_datagrams_total", "result" => "ok"),
        tlsrpt_malformed: counter!("mtastsd_tlsrpt_datagrams_total", "result" => "malformed"),
        tlsrpt_truncated: counter!("mtastsd_tlsrpt_datagrams_total", "result" => "truncated"),
        dns_seconds: histogram!("mtastsd_dns_lookup_seconds"),
        fetch_seconds: histogram!("mtastsd_policy_fetch_seconds"),
    })
}

/// A resolution started (`kind`: miss, recheck, refresh); it may end early with
/// what the shared cache already knows.
pub fn resolution(kind: &'static str) {
    counter!("mtastsd_resolutions_total", "kind" => kind).increment(1);
}

/// The outcome of a TXT lookup (`result`: record, no_record, invalid, error).
pub fn discovery(result: &'static str) {
    counter!("mtastsd_txt_lookups_total", "result" => result).increment(1);
}

/// The outcome of a policy fetch (`stage` is "" on success).
pub fn fetch(ok: bool, stage: &'static str) {
    if ok {
        counter!("mtastsd_policy_fetches_total", "outcome" => "ok").increment(1);
    } else {
        counter!("mtastsd_policy_fetches_total", "outcome" => "error", "stage" => stage)
            .increment(1);
    }
}

/// A policy was learnt or replaced.
pub fn policy_change() {
    counter!("mtastsd_policy_changes_total").increment(1);
}

/// A failed shared-cache (Redis) command.
pub fn cluster_error() {
    counter!("mtastsd_shared_cache_errors_total").increment(1);
}

/// A shared-cache record or lease a node ignored (SPEC 5.10; `reason`: invalid,
/// too_large, signature, lease).
pub fn cluster_record_rejected(reason: &'static str) {
    counter!("mtastsd_shared_records_rejected_total", "reason" => reason).increment(1);
}

/// A log line dropped because the syslog socket was full (SPEC 7.6).
pub fn log_lines_dropped() {
    counter!("mtastsd_log_lines_dropped_total").increment(1);
}

/// A save of the persistent cache.
pub fn store_save(ok: bool) {
    counter!("mtastsd_store_saves_total", "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// One TLS-RPT report delivery attempt ended (SPEC 8.4): `transport` https or
/// mailto, `outcome` sent, retry or dropped.
pub fn tlsrpt_report(transport: &'static str, outcome: &'static str) {
    counter!("mtastsd_tlsrpt_reports_total", "transport" => transport, "outcome" => outcome)
        .increment(1);
}

/// The age in seconds of the oldest TLS-RPT report not yet sent nor given up (0:
/// none waiting).
pub fn tlsrpt_oldest_unsent(seconds: i64) {
    gauge!("mtastsd_tlsrpt_oldest_unsent_report_seconds").set(seconds as f64);
}

/// A round of pushing this node's TLS-RPT counts to the cluster ended (`outcome`
/// ok or error; SPEC 8.2 with 5.10).
pub fn tlsrpt_push(ok: bool) {
    counter!("mtastsd_tlsrpt_pushes_total", "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// A node's TLS-RPT value, heartbeat or listed domain read from the cluster was
/// ignored (SPEC 5.10's checks; `reason`: invalid, too_large, signature).
pub fn tlsrpt_shared_rejected(reason: &'static str) {
    counter!("mtastsd_tlsrpt_shared_values_rejected_total", "reason" => reason).increment(1);
}

/// Install the process-wide recorder. Idempotent: a second daemon in the same
/// process (tests) shares the first one's.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let handle = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        gauge!("mtastsd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Every series that can appear, from the start at 0: a rate over a series
        // that does not exist yet is "no data", not 0.
        for kind in ["miss", "recheck", "refresh"] {
            counter!("mtastsd_resolutions_total", "kind" => kind).increment(0);
        }
        for result in ["record", "no_record", "invalid", "error"] {
            counter!("mtastsd_txt_lookups_total", "result" => result).increment(0);
        }
        counter!("mtastsd_policy_fetches_total", "outcome" => "ok").increment(0);
        counter!("mtastsd_policy_changes_total").increment(0);
        counter!("mtastsd_shared_cache_errors_total").increment(0);
        for reason in ["invalid", "too_large", "signature", "lease"] {
            counter!("mtastsd_shared_records_rejected_total", "reason" => reason).increment(0);
        }
        for dane in ["partial", "failed"] {
            counter!("mtastsd_dane_mta_sts_answers_total", "dane" => dane).increment(0);
        }
        counter!("mtastsd_log_lines_dropped_total").increment(0);
        for outcome in ["ok", "error"] {
            counter!("mtastsd_store_saves_total", "outcome" => outcome).increment(0);
        }
        for result in ["ok", "malformed", "truncated"] {
            counter!("mtastsd_tlsrpt_datagrams_total", "result" => result).increment(0);
        }
        handle
    })
}

/// Connections the endpoint holds at once; more are closed as soon as accepted.
/// Prometheus and a health check need one or two.
pub const MAX_CONNECTIONS: usize = 16;
/// Time for a client to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a client to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve `/metrics` and `/healthz` on `listener` until shutdown. Must run inside the
/// runtime that is to serve it (the listener is registered there).
pub async fn serve(
    listener: std::net::TcpListener,
    gauges: GaugesFn,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("metrics listener: {e}");
            return;
        }
    };
    let handle = install();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("metrics listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            drop(stream); // closed at once
            continue;
        }
        let open = Arc::clone(&open);
        let gauges = Arc::clone(&gauges);
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            let read = tokio::time::timeout(READ_TIMEOUT, async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if read == Ok(true) {
                let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                let (status, body) = match line {
                    l if l.starts_with(b"GET /metrics ") => {
                        set_gauges(gauges());
                        handle.run_upkeep();
                        ("200 OK", handle.render())
                    }
                    l if l.starts_with(b"GET /healthz ") => ("200 OK", "ok\n".to_string()),
                    _ => ("404 Not Found", "GET /metrics or /healthz\n".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                    stream.write_all(response.as_bytes()).await?;
                    stream.shutdown().await
                })
                .await;
            }
            drop(stream);
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Values read at scrape time rather than maintained on every change: what the
/// cache holds (entries by kind, policies by mode) and what it is resolving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Cached policies, of every mode.
    pub policies: usize,
    /// Domains cached without a policy (negative cache and back-off, SPEC 5.6).
    pub negative: usize,
    pub enforce: usize,
    pub testing: usize,
    pub none: usize,
    pub resolutions_in_flight: usize,
}

/// Reads the [`Gauges`] for a scrape; called on the metrics endpoint's thread, so it
/// must be quick (SPEC 7.6).
pub type GaugesFn = Arc<dyn Fn() -> Gauges + Send + Sync>;

fn set_gauges(g: Gauges) {
    gauge!("mtastsd_cache_entries", "kind" => "policy").set(g.policies as f64);
    gauge!("mtastsd_cache_entries", "kind" => "negative").set(g.negative as f64);
    gauge!("mtastsd_resolutions_in_flight").set(g.resolutions_in_flight as f64);
    for (mode, n) in [
        ("enforce", g.enforce),
        ("testing", g.testing),
        ("none", g.none),
    ] {
        gauge!("mtastsd_policies", "mode" => mode).set(n as f64);
    }
}

/// Bind the metrics listener (loopback unless configured otherwise), for [`serve`]
/// on another runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
