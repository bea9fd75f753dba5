//! The DANE lookups (SPEC 6.4): MX, A and TLSA queries to the validating resolvers
//! of `[dane] nameservers`, with the AD bit of each answer kept.
//!
//! Why hickory-net's client and not the resolver that [`super::dns`] uses:
//! hickory-resolver turns NXDOMAIN and NODATA into errors that drop the response
//! header, so a secure denial (AD set on a negative answer: "DNSSEC proves there is
//! no TLSA record") could not be told from an unsigned one. These queries are few
//! (a DANE result is cached, see [`crate::cache::dane`]), go to one local resolver,
//! and need no search list, hosts file or cache of our own: a plain client is enough.
//!
//! Each query carries DO (EDNS, RFC 3225) and AD (RFC 6840 §5.7), as Postfix sends
//! them. It goes over UDP, again over TCP when truncated, and to the next configured
//! server when a server fails (SERVFAIL, REFUSED, no answer).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::DnsError;
use crate::dane::Tlsa;

/// The record types DANE needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    Mx,
    /// Only to learn whether a host's zone is signed (RFC 7672 §2.2.2).
    A,
    Tlsa,
}

/// One record of an answer, as far as DANE cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rr {
    /// Exchange lower-case without the trailing dot; `""` for a null MX (RFC 7505).
    Mx {
        preference: u16,
        exchange: String,
    },
    A,
    Tlsa(Tlsa),
}

/// A validating resolver's answer (NOERROR or NXDOMAIN; other rcodes are
/// [`DnsError::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureAnswer {
    /// The AD bit: the resolver validated the answer (or the denial) with DNSSEC.
    pub authentic: bool,
    /// Records of the asked type; empty for NXDOMAIN / NODATA.
    pub records: Vec<Rr>,
    pub nxdomain: bool,
    /// Smallest TTL of the records (the CNAMEs leading to them included), or the
    /// negative TTL of a denial (SOA TTL and MINIMUM, RFC 2308); 0 when unknown.
    pub ttl: u32,
}

/// DANE's DNS edge; a trait so that [`crate::cache::dane`] can be tested alone.
pub trait DaneLookup: Send + Sync + 'static {
    fn query<'a>(
        &'a self,
        name: &'a str,
        qtype: QType,
    ) -> BoxFuture<'a, Result<SecureAnswer, DnsError>>;
}

/// [`DaneLookup`] against the configured validating resolvers.
pub struct ValidatingDns {
    servers: Vec<SocketAddr>,
    /// Per query and server.
    timeout: Duration,
    provider: TokioRuntimeProvider,
}

impl ValidatingDns {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> ValidatingDns {
        ValidatingDns {
            servers,
            timeout,
            provider: TokioRuntimeProvider::default(),
        }
    }

    async fn ask(&self, server: SocketAddr, request: DnsRequest) -> Result<DnsResponse, NetError> {
        // A fresh UDP exchange per query: one socket (random port) each, as the
        // resolver does; its background task ends with the exchange.
        let udp = UdpClientStream::builder(server, self.provider.clone())
            .with_timeout(Some(self.timeout))
            .exchange();
        let response = first(udp.send(request.clone())).await?;
        if !response.metadata.truncation {
            return Ok(response);
        }
        let tcp =
            TcpClientStream::exchange(server, None, self.timeout, None, self.provider.clone())
                .await?;
        tokio::time::timeout(self.timeout, first(tcp.send(request)))
            .await
            .map_err(|_| NetError::Timeout)?
    }
}

async fn first<S>(mut stream: S) -> Result<DnsResponse, NetError>
where
    S: futures_util::Stream<Item = Result<DnsResponse, NetError>> + Unpin,
{
    stream
        .next()
        .await
        .unwrap_or(Err(NetError::Message("no response")))
}

fn request(name: Name, rtype: RecordType) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    let mut request = DnsRequest::from_query(Query::query(name, rtype), options);
    request.metadata.authentic_data = true;
    request
}

impl DaneLookup for ValidatingDns {
    fn query<'a>(
        &'a self,
        name: &'a str,
        qtype: QType,
    ) -> BoxFuture<'a, Result<SecureAnswer, DnsError>> {
        Box::pin(async move {
            let mut fqdn = Name::from_ascii(name)
                .map_err(|e| DnsError::Failed(format!("bad name {name:?}: {e}")))?;
            fqdn.set_fqdn(true);
            let rtype = match qtype {
                QType::Mx => RecordType::MX,
                QType::A => RecordType::A,
                QType::Tlsa => RecordType::TLSA,
            };
            let mut last = DnsError::Failed("no nameserver configured".into());
            for server in &self.servers {
                match self.ask(*server, request(fqdn.clone(), rtype)).await {
                    Ok(response) => match classify(&response, rtype) {
                        Ok(answer) => return Ok(answer),
                        Err(e) => last = e,
                    },
                    Err(e) => last = DnsError::Failed(format!("{server}: {e}")),
                }
            }
            Err(last)
        })
    }
}

/// A response → [`SecureAnswer`], or a failure for any rcode but NOERROR/NXDOMAIN.
fn classify(response: &DnsResponse, rtype: RecordType) -> Result<SecureAnswer, DnsError> {
    let authentic = response.metadata.authentic_data;
    let rcode = response.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Err(DnsError::Failed(rcode.to_string()));
    }
    let mut ttl: Option<u32> = None;
    let mut records = Vec::new();
    for record in &response.answers {
        let rr = match &record.data {
            RData::MX(mx) if rtype == RecordType::MX => {
                let host = mx.exchange.to_ascii().to_ascii_lowercase();
                let host = host.strip_suffix('.').unwrap_or(&host).to_string();
                Rr::Mx {
                    preference: mx.preference,
                    exchange: host,
                }
            }
            RData::A(_) if rtype == RecordType::A => Rr::A,
            RData::TLSA(t) if rtype == RecordType::TLSA => Rr::Tlsa(Tlsa {
                usage: t.cert_usage.into(),
                selector: t.selector.into(),
                matching: t.matching.into(),
                data_len: t.cert_data.len(),
            }),
            // The CNAME chain counts for the TTL; anything else is ignored.
            RData::CNAME(_) => {
                ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
                continue;
            }
            _ => continue,
        };
        ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
        records.push(rr);
    }
    if records.is_empty() {
        ttl = response.negative_ttl();
    }
    Ok(SecureAnswer {
        authentic,
        nxdomain: records.is_empty() && rcode == ResponseCode::NXDomain,
        records,
        ttl: ttl.unwrap_or(0),
    })
}
