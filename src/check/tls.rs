//! TLS probes for `mtastsd check` (network edge): a handshake that records the peer's
//! certificate and what a sender's verification would say about it, instead of
//! stopping at the first problem. Used for `mta-sts.<domain>:443` (RFC 8461 §3.3)
//! and, after STARTTLS, for each MX host (RFC 8461 §4.2, see [`super::smtp`]).
//!
//! The verdict comes from the same webpki verification rustls applies to the policy
//! fetch (SPEC 3.1: DNS-ID only, chain to a trusted root, validity dates); the probe
//! then lets the handshake finish so the report can show the version and the dates.
//! Nothing but the handshake (and an SMTP `QUIT`) is sent over such a connection.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::CheckOptions;
use crate::resolver::dns::Dns;
use crate::resolver::DnsError;

/// What a probe of one host found, from "no address" to a finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProbe {
    /// No A/AAAA record, or the lookup failed.
    NoAddress(String),
    /// Refused, unreachable, or no answer in time.
    Unreachable(String),
    /// SMTP only: the greeting or the EHLO reply was not what RFC 5321 says.
    Smtp(String),
    /// SMTP only: EHLO did not offer STARTTLS (RFC 3207).
    NoStarttls,
    /// The handshake failed: not TLS, no TLS 1.2 or newer in common, a bad signature.
    HandshakeFailed(String),
    Done(TlsInfo),
}

/// A finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2` (rustls speaks nothing older: SPEC 3.1).
    pub version: String,
    pub cert: CertVerdict,
    /// The leaf's notAfter, seconds since 1970, when it parses.
    pub not_after: Option<i64>,
    /// The leaf's DNS names (subjectAltName), for a name mismatch message.
    pub names: Vec<String>,
    pub issuer: Option<String>,
}

/// What a sender's certificate verification says (SPEC 3.1, RFC 8461 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    Valid,
    Expired,
    NameMismatch,
    /// No chain to a trusted root (unknown issuer, self-signed, bad chain signature).
    Untrusted(String),
    /// Anything else (not yet valid, wrong key usage, bad encoding, ...).
    Invalid(String),
}

impl CertVerdict {
    fn from_error(e: &rustls::Error) -> CertVerdict {
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    CertVerdict::Expired
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => CertVerdict::NameMismatch,
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    CertVerdict::Untrusted(e.to_string())
                }
                _ => CertVerdict::Invalid(e.to_string()),
            },
            _ => CertVerdict::Invalid(e.to_string()),
        }
    }
}

/// Trust anchors could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RootsError(crate::resolver::https::FetchSetupError);

/// SPEC 3.7: the system's roots plus the configured CA file, as for the policy fetch.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, RootsError> {
    crate::resolver::https::trust_roots(ca_file).map_err(RootsError)
}

/// Verifies like a sender, remembers the verdict and the leaf, and lets the handshake
/// go on (signatures over the handshake are still checked).
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<(CertVerdict, CertificateDer<'static>)>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_) => CertVerdict::Valid,
            Err(e) => CertVerdict::from_error(&e),
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((verdict, end_entity.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Handshake with `host` (SNI and the name verified) over `stream`.
/// `Ok` with the stream (for a polite `QUIT`) and what was seen, or the failure.
pub async fn handshake<S>(
    stream: S,
    host: &str,
    opts: &CheckOptions,
    alpn: Option<&[u8]>,
) -> Result<(tokio_rustls::client::TlsStream<S>, TlsInfo), TlsProbe>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |e: String| TlsProbe::HandshakeFailed(e);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(opts.roots.clone(), provider.clone())
        .build()
        .map_err(|e| failed(format!("no usable trust anchors: {e}")))?;
    let recorder = Arc::new(Recorder {
        inner,
        seen: Mutex::new(None),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        // SPEC 3.1, RFC 8461 §4.2: TLS 1.2 or newer, as a sender requires.
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| failed(format!("{host}: not a server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let seen = recorder
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some((cert, leaf)) = seen else {
        return Err(failed("the server sent no certificate".into()));
    };
    let mut info = TlsInfo {
        version,
        cert,
        not_after: None,
        names: Vec::new(),
        issuer: None,
    };
    if let Ok((_, x509)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
        info.not_after = Some(x509.validity().not_after.timestamp());
        info.issuer = Some(x509.issuer().to_string());
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            info.names = san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect();
        }
    }
    Ok((tls, info))
}

/// Addresses of `host`, then the first that accepts a TCP connection on `port`.
pub async fn connect(dns: &Dns, host: &str, port: u16) -> Result<TcpStream, TlsProbe> {
    let ips: Vec<IpAddr> = match dns.lookup_ip(host).await {
        Ok(ips) if !ips.is_empty() => ips,
        Ok(_) => return Err(TlsProbe::NoAddress("no A/AAAA record".into())),
        Err(e @ DnsError::NoRecords { .. }) => {
            return Err(TlsProbe::NoAddress(format!("no A/AAAA record ({e})")))
        }
        Err(e) => return Err(TlsProbe::NoAddress(format!("address lookup: {e}"))),
    };
    let mut last = String::new();
    for ip in ips {
        let addr = SocketAddr::new(ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(TlsProbe::Unreachable(last))
}

/// RFC 8461 §3.3: the policy host answers HTTPS with a certificate valid for its name.
pub async fn probe_https(dns: &Dns, host: &str, opts: &CheckOptions) -> TlsProbe {
    let probe = async {
        let tcp = connect(dns, host, opts.https_port).await?;
        let (mut tls, info) = handshake(tcp, host, opts, Some(b"http/1.1")).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok::<_, TlsProbe>(TlsProbe::Done(info))
    };
    match tokio::time::timeout(opts.timeout, probe).await {
        Ok(Ok(done)) | Ok(Err(done)) => done,
        Err(_) => TlsProbe::Unreachable(format!(
            "port {}: no TLS handshake within {} s",
            opts.https_port,
            opts.timeout.as_secs()
        )),
    }
}
