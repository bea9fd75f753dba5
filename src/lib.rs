//! mtastsd: an MTA-STS (RFC 8461) policy daemon for Postfix's `smtp_tls_policy_maps`.
//!
//! # Where a request flows
//!
//! ```text
//! Postfix ──netstring──▶ server.rs ──frame──▶ socketmap/ ──domain──▶ cache/ ──▶ postfix.rs ──▶ reply
//!  (socketmap client)    accept, limits,      netstring.rs framing   mod.rs: hit → answer now,   Policy →
//!                        shutdown             request.rs key → domain       miss → one          "secure match=…"
//!                                             response.rs replies           resolution
//!                                             connection.rs timers            │
//!                                                         resolver/ ◀─────────┘
//!                                                         dns.rs   TXT _mta-sts (udp.rs fast
//!                                                                  path, else hickory)
//!                                                         https.rs policy fetch (reqwest+rustls)
//!                                                         then mta_sts/ parses both (pure)
//! ```
//!
//! Before the cache, [`overrides`] may answer a domain with a fixed value (SPEC 6.5).
//! A profile with `dane = true` asks [`cache::dane`] first, after the overrides,
//! for recipient domains (not next hops); [`dane::precedence`] then decides (SPEC
//! 6.4): `dane-only` wins over the MTA-STS cache, a partial or failed check gives
//! way to an enforce policy. Its lookups go through [`resolver::dane`] to the
//! configured validating resolver.
//!
//! # Which file owns which rule (SPEC = ../shared/SPEC.md)
//!
//! | module | rules |
//! |---|---|
//! | [`socketmap::netstring`] | 1.1 framing, 1.4 request cap |
//! | [`socketmap::request`] | 1.2 map name, 1.6 key normalisation |
//! | [`socketmap::response`] | 1.3 reply kinds |
//! | [`socketmap::connection`] | 1.1 pipelining, 1.4 PERM+close, 1.5 idle and request timeouts: one client connection's frame loop |
//! | [`listen`] | 7.5 listeners, all binding ([`listen::Listener`], [`listen::BoundAddr`]): bound from `[server] listen` (unix socket mode, owner, group) or passed by systemd socket activation |
//! | [`server`] | 7.3 graceful stop, 7.6 the connection limit (longest-idle eviction): the accept loops |
//! | [`answer`] | 6 the answer's precedence, written once ([`answer::answer`]: override 6.5, then DANE 6.4, then MTA-STS 6.1/6.2) for the daemon's [`answer::Handler`] and for `query`; 1.2, 1.3, 1.6 a request frame to its reply |
//! | [`mta_sts::record`] | 2.2–2.5 TXT record |
//! | [`mta_sts::policy`], [`mta_sts::mx`] | 4.1–4.6 policy file and mx patterns; `policy_lines`, the one tokenizer of the policy grammar (`parse_policy` and `check::lint` both use it) |
//! | [`resolver::dns`] | 2.1, 2.6 TXT lookups, NXDOMAIN/NODATA vs failure |
//! | [`resolver::udp`], [`resolver::wire`] | 2.2, 2.6 the TXT fast path: pooled UDP sockets, the query bytes and the reply checks (plain answers only; the rest goes to hickory) |
//! | [`resolver::https`] | 3.1–3.5, 3.7 the fetch |
//! | [`cache`] | 5.1, 5.4 the answer path (`mod.rs`: hit, miss), 5.9 process seconds; per-domain state in `cache/entry.rs`; 5.3, 5.7 the LRUs in `cache/table.rs` and `cache/lru.rs` (entries in the hash table itself: a hit reads one slot) |
//! | `cache::resolve`, `cache::single_flight` | 2, 3, 5.2–5.6 the discovery flow (TXT, fetch, back-off); 3.6 one resolution per domain, for the MTA-STS and DANE caches |
//! | [`cache::refresh`] | 5.5 proactive refresh |
//! | [`cache::store`] | 5.8 persistence |
//! | [`cache::cluster`], [`cache::redis`] | 5.10 the cluster: adopt, lease, publish, and its records on Redis |
//! | [`postfix`] | 6.1, 6.2 the answer under a `Profile` (which `config` re-exports), 6.3 its TLS-RPT attributes (`tlsrpt` profiles), 1.4 the reply cap (`fits_reply`), the postconf(5) syntax check every answer passes |
//! | [`dane`], [`resolver::dane`], [`cache::dane`] | 6.4 DANE precedence: the decision and the precedence over MTA-STS (pure, applied by [`answer::answer`] for the daemon and `query`), the MX/A/TLSA lookups with the AD bit, the result cache (asked after the overrides, before the MTA-STS cache) |
//! | [`overrides`] | 6.5 local overrides, consulted first ([`answer::answer`], before the cache) |
//! | [`config`] | 7.4 configuration errors, 7.5 listen defaults: the model and loading in `config/mod.rs`, the serde shapes in `raw.rs`, the validating types in `values.rs`, span → line and key in `locate.rs` |
//! | [`logging`] | 7.2 syslog / stderr |
//! | [`daemon`] | 7.1 `serve`, 7.3 SIGHUP reload and shutdown wiring |
//! | [`metrics`] | 7.6 Prometheus `/metrics` and `/healthz`: counter handles the modules above call, gauges read through the callback `daemon` gives it (it imports nothing from `cache`) |
//! | [`query`] | 7.1 `query` |
//! | [`cli`] | 7.1 the command line (clap): `serve`, `query`, `check`, `check-config`; `main.rs` dispatches |
//! | [`check`], [`tlsrpt::record`] | 7.1 `check`: audit of a domain's MTA-STS and TLS-RPT (RFC 8460 §3) |
//! | [`tlsrpt::datagram`], [`tlsrpt::aggregate`], [`tlsrpt::report`] | 8.1 a libtlsrpt datagram parsed and bounded, 8.2 the counts per UTC day, domain, record and policy (add, merge), 8.4 the RFC 8460 §4.4 report, its file name and subject, 8.6 the detail cap |
//! | [`tlsrpt::findings`], `cache::resolve` | 8.3 a failed policy fetch kept per domain (`PolicyCache::finding`), Postfix's `no-policy-found` counts relabelled with it on their way to the store |
//! | [`tlsrpt::store`] | 8.2 the SQLite file of the counts (WAL, at most a second lost), 8.4 the reports and their deliveries (never twice), 8.6 pruning |
//! | [`tlsrpt::sender`], [`tlsrpt::deliver`], [`tlsrpt::mail`] | 8.4 the reports of ended days built once, due at a random delay, sent over `https:` (POST, gzip) or `mailto:` (sendmail, RFC 8460 §5.3 message), retried for a day; 8.6 pruning |
//! | [`tlsrpt::cluster`], `cache::redis` (`redis/reports.rs`) | 8.2, 8.4 with 5.10: each node's totals pushed to Redis, one report per day and domain for the whole cluster (lease, claim) |
//! | [`reports`], [`tlsrpt::show`] | `mtastsd tlsrpt show\|report\|send` over the store |
//! | [`tlsrpt::collector`] | 8.1 the datagram socket (bound, stale file replaced, never a non-socket), its receive thread, malformed and oversized datagrams counted and logged once a minute; 8.2 the counts handed every second to the store on a writer thread; `daemon` wires it to `[tlsrpt]` |
//! | [`check::lint`], [`check::advice`], [`check::render`] | `check`: policy lint by line, verdict and what to publish, text output |
//! | [`check::tls`], [`check::smtp`] | `check`: TLS probe of the policy host, STARTTLS probe of each MX host (RFC 8461 §3.3, §4.2) |
//!
//! Pure modules (no I/O): `socketmap` (but `socketmap::connection`), `mta_sts`, `resolver::wire`, `tlsrpt` (but `tlsrpt::collector`, `store`, `deliver`, `sender`), `postfix`, `dane`, `overrides`,
//! `config` (parsing), `check::lint`, `check::advice`, `check::render`.
//! The edges: `resolver` (network), `check::tls` and `check::smtp` (probes),
//! `cache::redis` (the cluster's Redis, optional), `cache::store` (disk), `listen`,
//! `socketmap::connection`, `server`, `metrics` and `tlsrpt::collector` (sockets),
//! `tlsrpt::store` (disk), `tlsrpt::deliver` and `tlsrpt::sender` (network, sendmail).
//!
//! The answer path touches none of the edges for a cached domain: `server` →
//! `socketmap` → `answer` → `cache` (in-memory: `PolicyCache::cached` lends the LRU entry's
//! mode and answer text under the lock) → reply bytes, with no allocation. A miss
//! goes on to `PolicyCache::resolve_miss`, which waits for the one shared resolution.
//!
//! Threads: every connection is served by one thread (the main thread's
//! single-threaded tokio runtime, `main.rs`), with the refresher and the saver.
//! Resolutions (MTA-STS and DANE: DNS, HTTPS, parsing) run on
//! [`daemon::ResolverThreads`], one per core at nice +10, so that they never queue
//! a cached answer behind them. With `[tlsrpt]`, two more threads collect Postfix's
//! TLS-RPT datagrams ([`tlsrpt::collector`]): one receives, one stores; a third
//! builds, sends and prunes the reports ([`tlsrpt::sender`], its own store connection
//! and runtime).

// The modules in layers, top down: each imports only modules declared after it
// (docs/ARCHITECTURE.md, "Layers"), so there is no cycle.
// `mtastsd tlsrpt show|report|send` (SPEC 8)
pub mod reports;
// serve: wiring, reload, shutdown
pub mod daemon;
// `mtastsd check`
pub mod check;
// accept loops, the connection limit, shutdown
pub mod server;
// `mtastsd query`
pub mod query;
// the precedence (SPEC 6) and the daemon's Handler
pub mod answer;
// policies, DANE results, store, cluster, refresh
pub mod cache;
// binding
pub mod listen;
// the network edge: DNS, HTTPS
pub mod resolver;
// the command line
pub mod cli;
// the configuration
pub mod config;
// fixed answers (SPEC 6.5)
pub mod overrides;
// a policy → the Postfix answer
pub mod postfix;
// the wire protocol and the connection loop
pub mod socketmap;
// syslog / stderr
pub mod logging;
// RFC 8460
pub mod tlsrpt;
// counters and the endpoint
pub mod metrics;
// RFC 8461 parsers
pub mod mta_sts;
// DANE's decision
pub mod dane;
// thread priorities (nice)
pub mod sys;
