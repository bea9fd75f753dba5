//! `mtastsd serve`: wires configuration, resolvers, cache, store and listeners
//! together, and runs until told to stop (SPEC 7.1, 7.3).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::answer::Handler;
use crate::cache::cluster::ClusterError;
use crate::cache::dane::DaneCache;
use crate::cache::redis::RedisCluster;
use crate::cache::store::{Store, StoreError};
use crate::cache::{refresh, CacheSettings, Clock, PolicyCache};
use crate::config::{Config, RedisConfig};
use crate::listen::{BoundAddr, Listener};
use crate::logging::chain;
use crate::resolver::dane::{DaneLookup, ValidatingDns};
use crate::resolver::dns::{Dns, DnsSetupError};
use crate::resolver::https::{FetchSetupError, HttpsFetcher};
use crate::resolver::Resolvers;
use crate::server::{self, AcceptEnded, Limits};
use crate::tlsrpt::aggregate::Aggregate;
use crate::tlsrpt::cluster::TlsrptCluster;
use crate::tlsrpt::collector::{self, Collector, CollectorError};
use crate::tlsrpt::findings;
use crate::tlsrpt::sender;
use crate::tlsrpt::store::{TlsrptStore, TlsrptStoreError};

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Dns(#[from] DnsSetupError),
    #[error(transparent)]
    Fetch(#[from] FetchSetupError),
    #[error("cannot use the policy store (set cache.state_dir to a writable directory, or \"\" to keep the cache in memory only)")]
    Store(#[from] StoreError),
    /// SPEC 5.8: the state file exists but cannot be read; its message says what to do.
    #[error(transparent)]
    StateFile(StoreError),
    #[error(transparent)]
    Shared(#[from] ClusterError),
    #[error(transparent)]
    Listeners(#[from] crate::listen::ListenError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the resolver threads")]
    Threads(#[source] std::io::Error),
    /// SPEC 8.2: the counts need a file; its message names it and says what to do.
    #[error(transparent)]
    TlsrptStore(#[from] TlsrptStoreError),
    #[error(transparent)]
    Tlsrpt(#[from] CollectorError),
    #[error("[tlsrpt] needs cache.state_dir, where its counts are kept (tlsrpt.sqlite)")]
    TlsrptStateDir,
    #[error(transparent)]
    TlsrptClient(#[from] crate::tlsrpt::deliver::ClientError),
    #[error("cannot start the TLS-RPT report sender")]
    Thread(#[source] std::io::Error),
}

/// The threads resolutions run on (DNS, HTTPS fetches, their parsing): one per core,
/// beside the one serving thread, at a lower scheduling priority ([`RESOLVER_NICE`]), so that
/// on a busy machine cached answers, which are most of the traffic and take
/// microseconds, go first, and a burst of re-checks or refreshes waits instead
/// (SPEC 1.5, 3.6: every answer well inside the 100 s Postfix waits).
pub struct ResolverThreads(Option<tokio::runtime::Runtime>);

/// The nice value of the resolver threads, relative to the process's own.
pub const RESOLVER_NICE: i32 = crate::sys::BACKGROUND_NICE;

impl ResolverThreads {
    pub fn start() -> Result<ResolverThreads, StartError> {
        // Fixed now, from the caller's priority: threads that a resolver thread starts
        // (tokio's blocking pool) inherit its nice value and must not lower it again.
        let nice = crate::sys::current_nice().map(|n| (n + RESOLVER_NICE).min(19));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("mtastsd-resolve")
            .on_thread_start(move || {
                if let Some(nice) = nice {
                    crate::sys::set_nice(nice);
                }
            })
            .build()
            .map_err(StartError::Threads)?;
        Ok(ResolverThreads(Some(runtime)))
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("running until dropped")
            .handle()
            .clone()
    }
}

impl Drop for ResolverThreads {
    fn drop(&mut self) {
        // Without waiting: resolutions still running are abandoned, as on exit (the
        // cache is saved without them). Allowed inside an async context, unlike a
        // plain drop of the runtime.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The DNS and HTTPS edges for a configuration.
pub fn build_resolvers(config: &Config) -> Result<Resolvers, StartError> {
    let dns = Dns::new(&config.dns)?;
    let fetch = HttpsFetcher::new(&config.fetch, dns.clone())?;
    Ok(Resolvers {
        txt: Arc::new(dns),
        fetch: Arc::new(fetch),
    })
}

/// SPEC 6.4: the validating resolvers, when configured, and the bound on one DANE
/// check (MX, then A and TLSA per host in parallel: three rounds of queries).
/// The DANE edge for a configuration (none without `[dane] nameservers`) and the
/// deadline of one check.
pub fn dane_lookup(config: &Config) -> (Option<Arc<dyn DaneLookup>>, Duration) {
    let lookup = (!config.dane.nameservers.is_empty()).then(|| {
        Arc::new(ValidatingDns::new(
            config.dane.nameservers.clone(),
            config.dns.timeout,
        )) as Arc<dyn DaneLookup>
    });
    let deadline = (config.dns.timeout * 3 + Duration::from_secs(1)).min(Duration::from_secs(30));
    (lookup, deadline)
}

fn cache_settings(config: &Config) -> CacheSettings {
    // SPEC 3.6: TXT (two queries at most, see resolver::dns) plus the fetch, well
    // inside Postfix's 100 s.
    // A miss may first ask the shared cache (one bounded Redis command).
    let shared = config.redis.as_ref().map_or(Duration::ZERO, |r| r.timeout);
    let answer_timeout =
        (config.dns.timeout * 2 + config.fetch.timeout + shared + Duration::from_secs(1))
            .min(Duration::from_secs(60));
    CacheSettings {
        recheck: config.cache.recheck,
        answer_timeout,
        max_concurrency: config.dns.max_concurrency,
    }
}

/// A running daemon.
pub struct Daemon {
    config: Arc<Config>,
    cache: Arc<PolicyCache>,
    /// SPEC 6.4: DANE results, apart from the policies.
    dane: Arc<DaneCache>,
    handler: Arc<Handler>,
    store: Option<Arc<Store>>,
    /// SPEC 8.1: with `[tlsrpt]`, the collector of Postfix's datagrams, and the
    /// report sender (SPEC 8.4, 8.6) with its stop flag.
    tlsrpt: Option<Collector>,
    sender: Option<sender::SenderThread>,
    addrs: Vec<BoundAddr>,
    metrics_addr: Option<std::net::SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    /// Why the server stopped accepting on its own, if it does (see
    /// [`Daemon::serving_ended`]).
    ended: Option<oneshot::Receiver<AcceptEnded>>,
    /// Last field: dropped after everything that may still hand it work.
    _resolver_threads: ResolverThreads,
}

/// A new configuration with what it needs built: the slow half of a reload. It
/// reads files (the system's resolver configuration, the CA certificates), so the
/// daemon prepares it off the serving thread (`spawn_blocking`) and then
/// [`Daemon::apply`]s it.
pub struct Reload {
    config: Config,
    resolvers: Resolvers,
    dane: (Option<Arc<dyn DaneLookup>>, Duration),
}

impl Reload {
    pub fn prepare(config: Config) -> Result<Reload, StartError> {
        Ok(Reload {
            resolvers: build_resolvers(&config)?,
            dane: dane_lookup(&config),
            config,
        })
    }
}

impl Daemon {
    /// Bind, load the persisted cache and start serving. Must run inside a tokio
    /// runtime. Nothing is served before every listener is bound.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Daemon, StartError> {
        let config = Arc::new(config);
        let metrics_listener = bind_metrics(&config)?;
        let resolver_threads = ResolverThreads::start()?;
        let (cache, dane) = build_caches(&config, clock, &resolver_threads)?;
        if let Some(redis) = &config.redis {
            join_cluster(&cache, redis).await?;
        }
        let store = open_store(&config, &cache)?;

        let listeners = crate::listen::open(&config.server)?;
        let addrs: Vec<BoundAddr> = listeners.iter().map(Listener::local_addr).collect();
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let tlsrpt = start_tlsrpt(&config, &cache)?;
        let sender = start_sender(&config)?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let handler = Arc::new(Handler::new(Arc::clone(&cache), Arc::clone(&config)));
        handler.set_dane(Arc::clone(&dane));
        let (server, ended) = spawn_server(listeners, &handler, &config, shutdown_rx.clone());
        let background = Background {
            cache: &cache,
            store: store.as_ref(),
            metrics_listener,
            resolver_threads: &resolver_threads,
            save_interval: config.cache.save_interval,
        };
        let tasks = background.spawn(shutdown_rx);
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        log::info!(
            "mtastsd {} listening on {}",
            env!("CARGO_PKG_VERSION"),
            list.join(", ")
        );
        Ok(Daemon {
            config,
            cache,
            dane,
            handler,
            store,
            tlsrpt,
            sender,
            addrs,
            metrics_addr,
            shutdown,
            tasks,
            server,
            ended: Some(ended),
            _resolver_threads: resolver_threads,
        })
    }

    /// Where the listeners are (ephemeral ports resolved).
    pub fn addrs(&self) -> &[BoundAddr] {
        &self.addrs
    }

    /// The first inet listener's address, if any.
    pub fn inet_addr(&self) -> Option<std::net::SocketAddr> {
        self.addrs.iter().find_map(|a| match a {
            BoundAddr::Inet(a) => Some(*a),
            BoundAddr::Unix(_) => None,
        })
    }

    /// Where `/metrics` and `/healthz` are served, when configured.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Completes if the server stops accepting without being told to (a listener
    /// broken for good, a panic): the process must then exit non-zero, so that
    /// systemd restarts it, rather than stay up refusing Postfix while `/healthz`
    /// says ok. Never completes for a server that is told to stop. Taken once.
    pub fn serving_ended(&mut self) -> impl std::future::Future<Output = AcceptEnded> + 'static {
        let ended = self.ended.take();
        async move {
            match ended {
                Some(rx) => match rx.await {
                    Ok(e) => e,
                    Err(_) => AcceptEnded::Panicked,
                },
                None => std::future::pending().await,
            }
        }
    }

    pub fn cache(&self) -> &Arc<PolicyCache> {
        &self.cache
    }

    /// The DANE result cache (SPEC 6.4).
    pub fn dane(&self) -> &Arc<DaneCache> {
        &self.dane
    }

    /// SIGHUP (SPEC 7.3): new profiles, DNS (resolv.conf re-read), fetch settings, cache
    /// size and log level, without dropping the cache or connections. Listener and
    /// connection-limit changes need a restart and are reported as such.
    pub fn reload(&mut self, config: Config) -> Result<(), StartError> {
        self.apply(Reload::prepare(config)?);
        Ok(())
    }

    /// The quick half of a reload: swap in what [`Reload::prepare`] built.
    pub fn apply(&mut self, reload: Reload) {
        let Reload {
            config,
            resolvers,
            dane,
        } = reload;
        if config.server != self.config.server {
            log::warn!("changes to [server] (listen, limits) take effect only after a restart");
        }
        if config.redis != self.config.redis {
            log::warn!("changes to cache.backend and [redis] take effect only after a restart");
        }
        if config.metrics != self.config.metrics {
            log::warn!("changes to [metrics] take effect only after a restart");
        }
        if config.dns.max_concurrency != self.config.dns.max_concurrency {
            log::warn!("a new dns.max_concurrency takes effect only after a restart");
        }
        if config.cache.state_dir != self.config.cache.state_dir {
            log::warn!("a new cache.state_dir takes effect only after a restart");
        }
        if config.tlsrpt != self.config.tlsrpt {
            log::warn!("changes to [tlsrpt] take effect only after a restart");
        }
        self.cache
            .reconfigure(config.cache.size, cache_settings(&config), resolvers);
        let (lookup, deadline) = dane;
        self.dane.reconfigure(config.cache.size, lookup, deadline);
        crate::logging::init(config.log.target, config.log.level);
        let config = Arc::new(config);
        self.handler.set_config(Arc::clone(&config));
        self.config = config;
        log::info!("configuration reloaded");
    }

    /// SPEC 7.3: stop accepting, finish requests in flight, persist the cache.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(collector) = self.tlsrpt {
            // Joins two threads and stores the last second's counts: off the
            // runtime's thread.
            let _ = tokio::task::spawn_blocking(move || collector.stop()).await;
        }
        if let Some(store) = &self.store {
            let snapshot = self.cache.snapshot();
            let n = snapshot.len();
            match store.save(&snapshot) {
                Ok(()) => {
                    crate::metrics::store_save(true);
                    log::info!("saved {n} policies to {}", store.path().display())
                }
                Err(e) => {
                    crate::metrics::store_save(false);
                    log::error!("{}; the cache was not saved", chain(&e))
                }
            }
        }
        // Last: a report delivery in flight may take its deadline; the counts and the
        // cache are safe by now.
        if let Some(sender) = self.sender {
            let _ = tokio::task::spawn_blocking(move || sender.stop(SENDER_STOP_WAIT)).await;
        }
    }
}

/// SPEC 7.6: the `/metrics` listener, when configured. The recorder is installed
/// first, before any metric handle is registered, so that they count.
fn bind_metrics(config: &Config) -> Result<Option<std::net::TcpListener>, StartError> {
    let Some(addr) = config.metrics.listen else {
        return Ok(None);
    };
    crate::metrics::install();
    crate::metrics::bind(addr)
        .map(Some)
        .map_err(|source| StartError::Listen {
            addr: format!("{addr} (metrics)"),
            source,
        })
}

/// The MTA-STS policy cache and the DANE result cache (SPEC 5, 6.4), resolving on
/// `threads` so that no resolution delays a cached answer.
fn build_caches(
    config: &Config,
    clock: Arc<dyn Clock>,
    threads: &ResolverThreads,
) -> Result<(Arc<PolicyCache>, Arc<DaneCache>), StartError> {
    let resolvers = build_resolvers(config)?;
    if let Some(warning) = config.dane.off_loopback_warning() {
        log::warn!("{warning}");
    }
    let (lookup, deadline) = dane_lookup(config);
    let dane = Arc::new(DaneCache::new(
        config.cache.size,
        lookup,
        deadline,
        Arc::clone(&clock),
    ));
    let cache = PolicyCache::new(config.cache.size, cache_settings(config), resolvers, clock);
    cache.run_resolutions_on(threads.handle());
    dane.run_resolutions_on(threads.handle());
    Ok((cache, dane))
}

/// SPEC 5.10: share the cache through Redis. Never waits for Redis: a node starts
/// and serves alone if it is down.
async fn join_cluster(cache: &PolicyCache, redis: &RedisConfig) -> Result<(), StartError> {
    let cluster = RedisCluster::connect(redis).await?;
    log::info!(
        "sharing the cache through {}{}",
        crate::cache::redis::redact(&redis.url),
        if redis.key.is_some() {
            ", records signed"
        } else {
            ""
        }
    );
    if let Some(warning) = crate::cache::redis::exposure_warning(redis) {
        log::warn!("{warning}");
    }
    cache.set_cluster(Some(Arc::new(cluster)));
    Ok(())
}

/// SPEC 5.8: the policy store, with the cache loaded from it. A configured store
/// that cannot be used is fatal: running without it would reopen the downgrade
/// window at the next restart, silently.
fn open_store(config: &Config, cache: &PolicyCache) -> Result<Option<Arc<Store>>, StartError> {
    let Some(dir) = &config.cache.state_dir else {
        return Ok(None);
    };
    let store = Arc::new(Store::open(dir)?);
    load(cache, &store)?;
    Ok(Some(store))
}

/// SPEC 8.1, 8.2: with `[tlsrpt]`, the store of the counts
/// (`<state_dir>/tlsrpt.sqlite`) and the collector on Postfix's socket, which gets the
/// socketmap's unix socket mode, owner and group. The counts are relabelled with
/// what the cache knows of failed policy fetches (SPEC 8.3) on their way to the store.
fn start_tlsrpt(
    config: &Config,
    cache: &Arc<PolicyCache>,
) -> Result<Option<Collector>, StartError> {
    let Some(tlsrpt) = &config.tlsrpt else {
        return Ok(None);
    };
    let dir = config
        .cache
        .state_dir
        .as_ref()
        .ok_or(StartError::TlsrptStateDir)?;
    let mut store = TlsrptStore::open(&sender::store_path(dir))?;
    let stored_in = store.path().display().to_string();
    let socket = collector::bind(&tlsrpt.socket)?;
    if let Err(e) = crate::listen::set_unix_access(&tlsrpt.socket, &config.server) {
        let _ = std::fs::remove_file(&tlsrpt.socket);
        return Err(e.into());
    }
    let cache = Arc::clone(cache);
    let relabel = Box::new(move |counts| findings::relabel(counts, |d| cache.finding(d)));
    let sink = Box::new(move |counts: &Aggregate| store.add(counts).map_err(|e| chain(&e)));
    let collector = Collector::start(socket, tlsrpt.socket.clone(), relabel, sink)?;
    log::info!(
        "TLS-RPT: collecting Postfix's reports on {}, counts in {stored_in}",
        tlsrpt.socket.display()
    );
    Ok(Some(collector))
}

/// SPEC 8.4, 8.6: with `[tlsrpt]`, the report sender's thread on its own connection
/// to the store: it sends when `send = true`, and prunes old days either way. With
/// `cache.backend = "redis"` it reports for the cluster (`tlsrpt/cluster.rs`), on
/// its own connection to Redis, made on its thread.
fn start_sender(config: &Config) -> Result<Option<sender::SenderThread>, StartError> {
    let (Some(t), Some(dir)) = (&config.tlsrpt, &config.cache.state_dir) else {
        return Ok(None);
    };
    let roots = crate::resolver::https::trust_roots(config.fetch.ca_file.as_deref())?;
    let client = crate::tlsrpt::deliver::https_client(roots)?;
    let settings = tlsrpt_settings(t);
    let sender = sender::Sender::open(&sender::store_path(dir), client, settings)?;
    let thread = match &config.redis {
        None => sender::spawn(sender),
        Some(redis) => sender::spawn_clustered(sender, tlsrpt_cluster(redis.clone())),
    }
    .map_err(StartError::Thread)?;
    if t.send {
        log::info!("TLS-RPT: sending the daily reports");
    } else {
        log::info!(
            "TLS-RPT: collecting only ([tlsrpt] send = false); `mtastsd tlsrpt report DOMAIN` shows what would be sent"
        );
    }
    Ok(Some(thread))
}

/// How the report sender reaches the cluster's Redis (on its own thread).
fn tlsrpt_cluster(redis: RedisConfig) -> sender::Connect {
    Box::new(move || {
        async move {
            match RedisCluster::connect(&redis).await {
                Ok(c) => Some(Arc::new(c) as Arc<dyn TlsrptCluster>),
                Err(e) => {
                    log::error!("TLS-RPT: {}", chain(&e));
                    None
                }
            }
        }
        .boxed()
    })
}

/// The report sender's settings from `[tlsrpt]` (the daemon's and `mtastsd tlsrpt`'s).
pub fn tlsrpt_settings(t: &crate::config::TlsrptConfig) -> sender::Settings {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    sender::Settings {
        send: t.send,
        organization_name: text(&t.organization_name),
        contact_info: text(&t.contact_info),
        submitter: text(&t.submitter),
        from: text(&t.from),
        sendmail: t.sendmail.clone(),
        delay: t.delay,
        max_details: t.max_details,
        keep_days: t.keep_days,
        http_timeout: t.http_timeout,
        sendmail_timeout: SENDMAIL_TIMEOUT,
    }
}

/// How long shutdown waits for a report delivery in flight (SPEC 7.3: the stop is
/// prompt; the delivery is taken up again after a restart).
const SENDER_STOP_WAIT: Duration = Duration::from_secs(5);

/// How long one sendmail run may take before it is killed and retried later.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// The accept loops (SPEC 7.5, 7.6), with the receiver that learns why they ended
/// if they end on their own. A panic drops the sender without a value: also an end.
fn spawn_server(
    listeners: Vec<Listener>,
    handler: &Arc<Handler>,
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> (JoinHandle<()>, oneshot::Receiver<AcceptEnded>) {
    let limits = Limits {
        idle_timeout: config.server.idle_timeout,
        max_connections: config.server.max_connections,
    };
    let run = server::run(
        listeners,
        Arc::clone(handler),
        limits,
        shutdown,
        SHUTDOWN_GRACE,
    );
    let (ended_tx, ended) = oneshot::channel();
    let server = tokio::spawn(async move {
        if let Err(e) = run.await {
            let _ = ended_tx.send(e);
        }
    });
    (server, ended)
}

/// The tasks beside the server: the refresher (SPEC 5.5), the metrics endpoint
/// (SPEC 7.6) and the saver (SPEC 5.8).
struct Background<'a> {
    cache: &'a Arc<PolicyCache>,
    store: Option<&'a Arc<Store>>,
    metrics_listener: Option<std::net::TcpListener>,
    resolver_threads: &'a ResolverThreads,
    save_interval: Duration,
}

impl Background<'_> {
    fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(refresh::refresher(
            Arc::clone(self.cache),
            shutdown.clone(),
        ))];
        if let Some(listener) = self.metrics_listener {
            // On the resolver threads, not the serving thread: a scrape (rendering,
            // the cache's gauges) or a flood of metrics clients must not delay an
            // answer to Postfix (SPEC 7.6).
            let gauges_of = Arc::clone(self.cache);
            tasks.push(self.resolver_threads.handle().spawn(crate::metrics::serve(
                listener,
                Arc::new(move || gauges_of.gauges()),
                shutdown.clone(),
            )));
        }
        if let Some(store) = self.store {
            tasks.push(tokio::spawn(refresh::saver(
                Arc::clone(self.cache),
                Arc::clone(store),
                self.save_interval,
                shutdown,
            )));
        }
        tasks
    }
}

/// SPEC 5.8: what was saved, back into the cache. A damaged file gives up what is
/// damaged; one that cannot be read at all stops the start-up, so that no save ever
/// replaces it with an almost empty cache.
fn load(cache: &PolicyCache, store: &Store) -> Result<(), StartError> {
    match store.load() {
        Ok(policies) => {
            let total = policies.len();
            let n = cache.restore(policies);
            log::info!(
                "loaded {n} policies from {} ({} expired)",
                store.path().display(),
                total - n
            );
        }
        Err(e @ StoreError::Corrupt { .. }) => {
            // Keep the evidence; start empty rather than refuse to run.
            let bad = store.path().with_extension("json.corrupt");
            let _ = std::fs::rename(store.path(), &bad);
            log::error!(
                "{}; moved it to {} and starting with an empty cache",
                chain(&e),
                bad.display()
            );
        }
        Err(e) => return Err(StartError::StateFile(e)),
    }
    Ok(())
}
