//! What can go wrong in discovery (SPEC 2.6) and fetch (SPEC 3): pure types, so that
//! the TXT reply checks ([`super::wire`]) and the fuzz targets use the very types the
//! daemon does.

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
    /// SPEC 3.1: the policy host's certificate failed PKIX validation (expired, wrong
    /// name, unknown issuer...): TLS-RPT's `sts-webpki-invalid` (SPEC 8.3), where
    /// other TLS failures are `sts-policy-fetch-error`.
    #[error("TLS: {0}")]
    Certificate(String),
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
            FetchError::Tls(_) | FetchError::Certificate(_) => "tls",
            FetchError::Https(_) | FetchError::Timeout(_) => "https",
            FetchError::HttpStatus { .. } => "http-status",
            FetchError::ContentType(_) => "content-type",
            FetchError::TooLarge(_) => "size",
            FetchError::Parse(_) => "parse",
        }
    }
}
