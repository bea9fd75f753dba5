//! The policy fetch (SPEC 3) on reqwest with our own rustls configuration.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::dns::Dns;
use super::{policy_url, DnsError, FetchError, PolicyFetch};
use crate::config::FetchConfig;

/// SPEC 3.4: the body cap, counted while streaming.
pub const MAX_BODY: usize = 64 * 1024;

/// Fetches policies over HTTPS: no redirects, no proxies, no cookies, no caching,
/// TLS 1.2+ with certificates checked against the system roots plus the configured
/// CA file (SPEC 3.1, 3.7).
pub struct HttpsFetcher {
    client: reqwest::Client,
    port: u16,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchSetupError {
    #[error("fetch.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

impl HttpsFetcher {
    pub fn new(config: &FetchConfig, dns: Dns) -> Result<HttpsFetcher, FetchSetupError> {
        let tls = tls_config(config.ca_file.as_deref())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(Arc::new(HostResolver(dns)))
            // SPEC 3.2: a 3xx comes back as a response, and is then refused.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(config.timeout)
            .user_agent(concat!("mtastsd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchSetupError::Client(e.to_string()))?;
        Ok(HttpsFetcher {
            client,
            port: config.https_port,
            timeout: config.timeout,
        })
    }

    async fn fetch_inner(&self, domain: &str) -> Result<Vec<u8>, FetchError> {
        let url = policy_url(domain, self.port);
        let mut resp = self.client.get(&url).send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(FetchError::HttpStatus { status, location });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_text_plain) {
            return Err(FetchError::ContentType(content_type));
        }
        // A declared length over the cap fails at once; a lying one is caught below.
        if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
            return Err(FetchError::TooLarge(MAX_BODY));
        }
        let mut body = Vec::with_capacity(1024);
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::TooLarge(MAX_BODY));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl PolicyFetch for HttpsFetcher {
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            // SPEC 3.5: one total deadline for connect, handshake, headers and body.
            match tokio::time::timeout(self.timeout, self.fetch_inner(domain)).await {
                // reqwest's own timer (the same deadline) may fire first.
                Ok(Err(FetchError::Timeout(_))) | Err(_) => {
                    Err(FetchError::Timeout(self.timeout.as_secs()))
                }
                Ok(r) => r,
            }
        })
    }
}

/// SPEC 3.3: `text/plain`, any case, parameters and spaces ignored.
pub fn is_text_plain(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
}

/// SPEC 3.7: the system's roots plus `fetch.ca_file`: the trust anchors of the
/// policy fetch, and of `mtastsd check`'s certificate probes.
pub fn trust_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, FetchSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are not fatal: a private root in ca_file may be
    // all that is needed, and a machine without roots fails every fetch loudly.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let ca_err = |message: String| FetchSetupError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no PEM certificates in the file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("unusable certificate: {e}")))?;
        }
    }
    Ok(roots)
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, FetchSetupError> {
    let roots = trust_roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        // SPEC 3.1: TLS 1.2 or newer (rustls speaks nothing older).
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FetchSetupError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Resolves policy hosts through our own [`Dns`], so the fetch uses the same servers
/// as discovery.
struct HostResolver(Dns);

/// Marks a failure of the policy host's address lookup inside reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HostLookupError(DnsError);

impl reqwest::dns::Resolve for HostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match dns.lookup_ip(&host).await {
                Ok(ips) if !ips.is_empty() => {
                    let addrs: Vec<SocketAddr> =
                        ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                    Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
                }
                Ok(_) => Err(Box::new(HostLookupError(DnsError::NoRecords {
                    nxdomain: false,
                    negative_ttl: None,
                })) as Box<dyn StdError + Send + Sync>),
                Err(e) => Err(Box::new(HostLookupError(e)) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

/// Put a reqwest error into its stage by walking the source chain (io::Errors may
/// wrap each other before the rustls error at the bottom).
fn classify(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&e);
    let mut chain = Vec::new();
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<HostLookupError>() {
            return FetchError::Dns(h.0.to_string());
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            if let rustls::Error::InvalidCertificate(_) = t {
                return FetchError::Certificate(t.to_string());
            }
            return FetchError::Tls(t.to_string());
        }
        let text = err.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = match err.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips a custom inner error's own Display; step into it.
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    if e.is_timeout() {
        return FetchError::Timeout(0);
    }
    FetchError::Https(chain.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_table_spec_3_3() {
        for (value, ok) in [
            ("text/plain", true),
            ("TEXT/PLAIN", true),
            ("text/plain; charset=utf-8", true),
            (" text/plain ;charset=us-ascii", true),
            ("text/html", false),
            ("text/plainx", false),
            ("text/ plain", false),
            ("application/octet-stream", false),
            ("", false),
        ] {
            assert_eq!(is_text_plain(value), ok, "{value:?}");
        }
    }

    #[test]
    fn policy_url_spec_3_1() {
        assert_eq!(
            policy_url("example.com", 443),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
        assert_eq!(
            policy_url("example.com", 8443),
            "https://mta-sts.example.com:8443/.well-known/mta-sts.txt"
        );
    }
}
