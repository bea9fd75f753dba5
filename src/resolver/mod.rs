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
mod error;
pub mod https;
pub mod udp;
pub mod wire;

use std::sync::Arc;

pub use error::{DnsError, FetchError};

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

/// The well-known policy URL for a domain (RFC 8461 §3.3). `port` is 443 except
/// against local test fixtures.
pub fn policy_url(domain: &str, port: u16) -> String {
    if port == 443 {
        format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
    } else {
        format!("https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt")
    }
}
