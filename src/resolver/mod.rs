//! Discovery (SPEC 2) and fetch (SPEC 3): the network edge, behind two small traits.
//!
//! - [`dns`]: [`TxtLookup`] on hickory-resolver; also resolves policy hosts for the fetch.
//!   Its TXT lookups go first to [`udp`], a lean UDP client on pooled sockets that
//!   takes plain answers only (the replies are checked by [`wire`], which is pure).
//! - [`https`]: [`PolicyFetch`] on reqwest + rustls.
//! - [`dane`]: [`dane::DaneLookup`], MX / A / TLSA with the AD bit, for DANE
//!   precedence (SPEC 6.4); driven by [`crate::cache::dane`], not through [`Resolvers`].
//!
//! The cache ([`crate::cache`]) and `mtastsd query` both drive these through
//! [`Resolvers`].

pub mod dane;
pub mod dns;
pub mod https;
pub mod udp;
pub mod wire;

use std::sync::Arc;

use futures_util::future::BoxFuture;

/// TXT lookups. Each record's character-strings are already concatenated (SPEC 2.2).
pub trait TxtLookup: Send + Sync + 'static {
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Vec<u8>>, DnsError>>;
}

/// Policy fetches: the body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`
/// after every check of SPEC 3 passed.
pub trait PolicyFetch: Send + Sync + 'static {
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<u8>, FetchError>>;
}

/// The two edges together, swapped as one on SIGHUP.
#[derive(Clone)]
pub struct Resolvers {
    pub txt: Arc<dyn TxtLookup>,
    pub fetch: Arc<dyn PolicyFetch>,
}

/// SPEC 2.6: "no record" and "DNS broken" are different things.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN or NOERROR/NODATA: the domain publishes nothing.
    #[error("{}", if *.nxdomain { "NXDOMAIN" } else { "no records of that type (NODATA)" })]
    NoRecords {
        nxdomain: bool,
        /// From the SOA in the answer, when there was one (SPEC 5.6).
        negative_ttl: Option<u32>,
    },
    /// SERVFAIL, REFUSED, timeout, network trouble: temporary, never evicts (SPEC 5.3).
    #[error("DNS failure: {0}")]
    Failed(String),
}

/// A failed fetch, with the stage it failed at (SPEC 3; shown by `mtastsd query`
/// and in logs). Every variant means "no new policy"; none evicts a cached one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("cannot resolve policy host: {0}")]
    Dns(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTPS: {0}")]
    Https(String),
    #[error("timed out after {0} s")]
    Timeout(u64),
    /// SPEC 3.2: only 200 is a policy; redirects are not followed.
    #[error("HTTP status {status}{}", location.as_ref().map(|l| format!(" (redirect to {l}, not followed)")).unwrap_or_default())]
    HttpStatus {
        status: u16,
        location: Option<String>,
    },
    /// SPEC 3.3.
    #[error("Content-Type is {}, expected text/plain", .0.as_deref().map(|c| format!("{c:?}")).unwrap_or_else(|| "missing".into()))]
    ContentType(Option<String>),
    /// SPEC 3.4: counted while streaming.
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    /// SPEC 4.6: the body arrived but is not a valid policy.
    #[error("invalid policy: {0}")]
    Parse(String),
}

impl FetchError {
    /// The stage names used by `mtastsd query` and the logs.
    pub fn stage(&self) -> &'static str {
        match self {
            FetchError::Dns(_) => "dns",
            FetchError::Tls(_) => "tls",
            FetchError::Https(_) | FetchError::Timeout(_) => "https",
            FetchError::HttpStatus { .. } => "http-status",
            FetchError::ContentType(_) => "content-type",
            FetchError::TooLarge(_) => "size",
            FetchError::Parse(_) => "parse",
        }
    }
}

/// The well-known policy URL for a domain (RFC 8461 §3.3). `port` is 443 except
/// against local test fixtures.
pub fn policy_url(domain: &str, port: u16) -> String {
    if port == 443 {
        format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
    } else {
        format!("https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt")
    }
}
