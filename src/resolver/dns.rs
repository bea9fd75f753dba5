//! DNS on hickory-resolver: TXT discovery (SPEC 2) and the addresses of policy hosts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::system_conf::read_system_conf;
use hickory_resolver::TokioResolver;

use super::udp::{Fast, UdpTxt};
use super::wire;
use super::{DnsError, TxtLookup};
use crate::config::DnsConfig;

/// One resolver for everything the daemon looks up, so that TXT discovery and the
/// policy host's address come from the same (configured) servers.
///
/// TXT lookups try the fast path first ([`super::udp`]: pooled UDP sockets, plain
/// answers only) and fall back to hickory for everything else.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
    fast: Option<Arc<UdpTxt>>,
}

/// Building the resolver failed (unreadable resolv.conf, no servers).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS: {0}")]
pub struct DnsSetupError(String);

impl Dns {
    /// `resolv.conf` when `config.nameservers` is empty (read now: rebuild on SIGHUP to
    /// pick up changes), else exactly the configured servers over UDP with TCP fallback.
    pub fn new(config: &DnsConfig) -> Result<Dns, DnsSetupError> {
        let (resolver_config, system_opts) = if config.nameservers.is_empty() {
            read_system_conf().map_err(|e| DnsSetupError(e.to_string()))?
        } else {
            let servers = config.nameservers.iter().map(server_config).collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        // The fast path asks the same servers, over UDP, in the same order.
        let udp_servers: Vec<SocketAddr> = resolver_config
            .name_servers()
            .iter()
            .filter_map(|ns| {
                ns.connections
                    .iter()
                    .find(|c| matches!(c.protocol, ProtocolConfig::Udp))
                    .map(|c| SocketAddr::new(ns.ip, c.port))
            })
            .collect();
        let fast = UdpTxt::new(&udp_servers, config.timeout).map(Arc::new);
        let mut builder = TokioResolver::builder_with_config(resolver_config, Default::default());
        *builder.options_mut() = system_opts;
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = config.timeout;
        // One retry: a lookup then sends at most two queries (cache::answer timeout
        // budget counts on it).
        opts.attempts = 1;
        // Every name we ask for is absolute; never walk a search list.
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        // Our own cache holds policies; the resolver's only needs to absorb bursts.
        opts.cache_size = 1024;
        // Negative answers are cached by us, with our bounds (SPEC 5.6); a second
        // negative cache here would hide a record published in the meantime.
        opts.negative_max_ttl = Some(Duration::ZERO);
        let resolver = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(Dns {
            resolver: Arc::new(resolver),
            fast,
        })
    }

    /// Addresses of a host (A and AAAA), for the policy fetch.
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = absolute(host);
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) => Err(classify(e)),
        }
    }

    /// MX records of `domain` as (preference, exchange), exchange lower-case without
    /// the trailing dot, for `mtastsd check` (RFC 8461 §4.1 compares MX hosts with
    /// the policy). A null MX (RFC 7505) comes back as `(0, "")`. No MX at all is
    /// [`DnsError::NoRecords`], like [`TxtLookup::lookup_txt`].
    pub async fn lookup_mx(&self, domain: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let lookup = self
            .resolver
            .lookup(absolute(domain).as_str(), RecordType::MX)
            .await
            .map_err(classify)?;
        // The answer may carry the CNAME chain that led to the MX records.
        let hosts: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => {
                    let host = mx.exchange.to_ascii().to_ascii_lowercase();
                    let host = host.strip_suffix('.').unwrap_or(&host).to_string();
                    Some((mx.preference, host))
                }
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Err(DnsError::NoRecords {
                nxdomain: false,
                negative_ttl: None,
            });
        }
        Ok(hosts)
    }
}

fn server_config(addr: &SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    ns.connections = vec![udp, tcp];
    ns
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// SPEC 2.6: NXDOMAIN / NODATA are "no record"; everything else is a DNS failure.
fn classify(e: NetError) -> DnsError {
    if e.is_no_records_found() {
        let nxdomain = e.is_nx_domain();
        let negative_ttl = match &e {
            NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(nr)) => nr.negative_ttl,
            _ => None,
        };
        DnsError::NoRecords {
            nxdomain,
            negative_ttl,
        }
    } else {
        DnsError::Failed(e.to_string())
    }
}

impl TxtLookup for Dns {
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Vec<u8>>, DnsError>> {
        Box::pin(async move {
            if let Some(fast) = &self.fast {
                match fast.lookup(name).await {
                    Fast::Done(answer) => return answer,
                    Fast::Defer(why) => log::debug!("{name}: TXT {why}; asking again in full"),
                }
            }
            let lookup = self
                .resolver
                .lookup(absolute(name).as_str(), RecordType::TXT)
                .await
                .map_err(classify)?;
            // SPEC 2.1: the resolver follows CNAMEs; the answer may carry them, keep TXT only.
            let records: Vec<Vec<u8>> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(wire::record_text(txt)),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                return Err(DnsError::NoRecords {
                    nxdomain: false,
                    negative_ttl: None,
                });
            }
            Ok(records)
        })
    }
}
