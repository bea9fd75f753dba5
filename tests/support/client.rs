//! Real clients pointed at the fixtures (used by the fixture self-tests; also an
//! example of configuring hickory-resolver 0.26 for a custom nameserver port).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// UDP, TCP on truncation.
    UdpTcp,
}

/// hickory-resolver config whose only nameserver is `addr` (custom port).
pub fn resolver_config(addr: SocketAddr, transport: Transport) -> ResolverConfig {
    let conn = |mut c: ConnectionConfig| {
        c.port = addr.port();
        c
    };
    let connections = match transport {
        Transport::Udp => vec![conn(ConnectionConfig::udp())],
        Transport::Tcp => vec![conn(ConnectionConfig::tcp())],
        Transport::UdpTcp => vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
    };
    ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, connections)])
}

/// A resolver for the fixture: no hosts file, `timeout` per attempt, one attempt,
/// and no caching of negative answers (so changes show at once; positive answers
/// come with the fixture's TTL, 0 by default).
pub fn resolver(addr: SocketAddr, transport: Transport, timeout: Duration) -> TokioResolver {
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    opts.negative_max_ttl = Some(Duration::ZERO);
    let mut b = TokioResolver::builder_with_config(
        resolver_config(addr, transport),
        TokioRuntimeProvider::default(),
    );
    *b.options_mut() = opts;
    b.build().expect("build resolver")
}

/// A reqwest client trusting only `ca_pem`, resolving every `hosts` entry to
/// 127.0.0.1, no redirects, no proxy, with a total `timeout`.
pub fn https_client(ca_pem: &[u8], hosts: &[&str], timeout: Duration) -> reqwest::Client {
    super::install_crypto_provider();
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem).expect("CA pem");
    let mut b = reqwest::Client::builder()
        .tls_certs_only(certs)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .timeout(timeout);
    for h in hosts {
        b = b.resolve(h, SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    b.build().expect("reqwest client")
}
