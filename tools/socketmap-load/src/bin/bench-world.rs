//! bench-world: a loopback world of MTA-STS domains for cold-miss benchmarks.
//!
//! `bench-world serve` answers, for every generated domain `dN.<suffix>`
//! (default suffix `cold.test`):
//!
//! - DNS over UDP: TXT `_mta-sts.dN.cold.test` → `v=STSv1; id=<id>`, A
//!   `mta-sts.dN.cold.test` → 127.0.0.1, anything else NOERROR/NODATA;
//! - HTTPS: for any SNI `mta-sts.<anything>.cold.test`, a certificate issued on demand
//!   by a test CA made at start (its PEM written to `--ca-file`) and cached, and
//!   `GET /.well-known/mta-sts.txt` → an enforce policy with `mx: mx.dN.cold.test`.
//!
//! Options for long runs: `--id-every S` changes every domain's TXT id every S
//! seconds (a policy update to notice), `--broken-every K` makes every K-th
//! domain's policy server answer HTTP 500 (a domain whose policy cannot be fetched).
//!
//! It counts TXT and A queries and fetches per domain, and writes the totals (with
//! how many domains were asked more than once) to `--stats` every second and on
//! SIGTERM/SIGINT, so a script can check "one DNS query and one fetch per domain".
//!
//! `bench-world probe` is a tiny client for the same world: per fresh domain it
//! times one UDP TXT query, one TCP connect + TLS handshake (verifying the
//! certificate against the CA file) and one HTTP request/response, the raw cost a
//! cold miss of any MTA-STS resolver has to pay.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use socketmap_load::dns;

/// A loopback MTA-STS world (DNS + HTTPS) for generated domains.
#[derive(Debug, Parser)]
#[command(name = "bench-world", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS and HTTPS for dN.<suffix>.
    Serve(ServeArgs),
    /// Time the raw DNS, TLS and HTTP round trips against a running world.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// UDP address of the DNS server.
    #[arg(long, default_value = "127.0.0.1:8553")]
    dns: SocketAddr,
    /// TCP address of the HTTPS server (give mtastsd its port as fetch.https_port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// Write the test CA's certificate (PEM) here, for mtastsd's fetch.ca_file.
    #[arg(long, value_name = "FILE")]
    ca_file: PathBuf,
    /// Write the counters here every second and on SIGTERM/SIGINT.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Domains are d{N}.<suffix>.
    #[arg(long, default_value = "cold.test")]
    suffix: String,
    /// The id in every TXT record.
    #[arg(long, default_value = "cold1")]
    id: String,
    /// Change the id every this many seconds (0: never): a new policy to fetch.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    id_every: u64,
    /// Every K-th domain (index divisible by K) answers its policy fetch with HTTP
    /// 500 while its TXT record stays: a broken policy server (0: none).
    #[arg(long, default_value_t = 0, value_name = "K")]
    broken_every: usize,
    /// Domains d0 .. d{max-domains - 1} are counted one by one (others in totals).
    #[arg(long, default_value_t = 1_100_000)]
    max_domains: usize,
    /// Certificates kept; the cache is emptied when it grows past this.
    #[arg(long, default_value_t = 200_000)]
    cert_cache: usize,
    /// Tokio worker threads of the HTTPS server (1: single-threaded scheduler).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// The world's DNS server.
    #[arg(long, default_value = "127.0.0.1:8553")]
    dns: SocketAddr,
    /// The world's HTTPS server.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// The CA file the world wrote.
    #[arg(long, value_name = "FILE")]
    ca_file: PathBuf,
    #[arg(long, default_value = "cold.test")]
    suffix: String,
    /// Fresh domains probe{N}.<suffix> to time (certificates are issued on demand,
    /// as for a first fetch by mtastsd).
    #[arg(long, default_value_t = 200)]
    count: usize,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Probe(args) => probe(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-world: {e}");
            ExitCode::FAILURE
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------- counters

/// Per-domain counters for d0 .. d{max-1}, and totals.
struct Counters {
    txt: Vec<AtomicU32>,
    a: Vec<AtomicU32>,
    fetch: Vec<AtomicU32>,
    txt_total: AtomicU64,
    a_total: AtomicU64,
    aaaa_total: AtomicU64,
    other_queries: AtomicU64,
    handshakes: AtomicU64,
    fetch_total: AtomicU64,
    bad_requests: AtomicU64,
    certs_issued: AtomicU64,
}

fn zeros(n: usize) -> Vec<AtomicU32> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

/// Total, domains counted at least once, domains counted more than once.
fn spread(v: &[AtomicU32]) -> (u64, u64) {
    v.iter().fold((0, 0), |(once, more), c| {
        let n = c.load(Ordering::Relaxed);
        (once + u64::from(n >= 1), more + u64::from(n > 1))
    })
}

impl Counters {
    fn new(max: usize) -> Counters {
        Counters {
            txt: zeros(max),
            a: zeros(max),
            fetch: zeros(max),
            txt_total: AtomicU64::new(0),
            a_total: AtomicU64::new(0),
            aaaa_total: AtomicU64::new(0),
            other_queries: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            fetch_total: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            certs_issued: AtomicU64::new(0),
        }
    }

    fn bump(v: &[AtomicU32], index: Option<usize>) {
        if let Some(c) = index.and_then(|i| v.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `key value` lines, for shell scripts.
    fn text(&self) -> String {
        let (txt_domains, txt_repeated) = spread(&self.txt);
        let (a_domains, a_repeated) = spread(&self.a);
        let (fetch_domains, fetch_repeated) = spread(&self.fetch);
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "txt_queries {}\ntxt_domains {txt_domains}\ntxt_repeated {txt_repeated}\n\
             a_queries {}\na_domains {a_domains}\na_repeated {a_repeated}\n\
             aaaa_queries {}\nother_queries {}\nhandshakes {}\nfetches {}\n\
             fetch_domains {fetch_domains}\nfetch_repeated {fetch_repeated}\n\
             bad_requests {}\ncerts_issued {}\n",
            l(&self.txt_total),
            l(&self.a_total),
            l(&self.aaaa_total),
            l(&self.other_queries),
            l(&self.handshakes),
            l(&self.fetch_total),
            l(&self.bad_requests),
            l(&self.certs_issued),
        )
    }

    fn write(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        let ok = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(self.text().as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = ok {
            eprintln!("bench-world: {}: {e}", path.display());
        }
    }
}

/// N of `<prefix>dN.<suffix>`.
fn domain_index(name: &str, prefix: &str, suffix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let rest = rest.strip_suffix('.')?.strip_prefix('d')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

// ---------------------------------------------------------------- DNS

/// The TXT record's id: `--id`, or with `--id-every S`, `--id` followed by the
/// number of S-second periods since the epoch (a policy change every S seconds).
struct TxtId {
    base: String,
    every: u64,
}

impl TxtId {
    fn rdata(&self) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let id = match now.checked_div(self.every) {
            None => self.base.clone(),
            Some(period) => format!("{}{period}", self.base),
        };
        dns::txt_rdata(format!("v=STSv1; id={id}").as_bytes())
    }
}

fn dns_loop(socket: UdpSocket, counters: Arc<Counters>, suffix: String, id: TxtId) {
    const TYPE_AAAA: u16 = 28;
    let fixed = id.rdata();
    let dot_suffix = format!(".{suffix}");
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench-world: dns: {e}");
                continue;
            }
        };
        let query = &buf[..n];
        let Some(q) = dns::question(query) else {
            continue;
        };
        let ours = q.name.ends_with(&dot_suffix);
        let rotating;
        let txt: &[u8] = if id.every == 0 {
            &fixed
        } else {
            rotating = id.rdata();
            &rotating
        };
        let rdata: Option<&[u8]> = match q.qtype {
            dns::TYPE_TXT if ours && q.name.starts_with("_mta-sts.") => {
                counters.txt_total.fetch_add(1, Ordering::Relaxed);
                Counters::bump(&counters.txt, domain_index(&q.name, "_mta-sts.", &suffix));
                Some(txt)
            }
            dns::TYPE_A if ours && q.name.starts_with("mta-sts.") => {
                counters.a_total.fetch_add(1, Ordering::Relaxed);
                Counters::bump(&counters.a, domain_index(&q.name, "mta-sts.", &suffix));
                Some(&[127, 0, 0, 1])
            }
            TYPE_AAAA if ours => {
                counters.aaaa_total.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                counters.other_queries.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        if let Some(reply) = dns::reply(query, &q, rdata) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

// ---------------------------------------------------------------- CA

const DAY: Duration = Duration::from_secs(86_400);

fn validity(p: &mut CertificateParams, before_days: u32, after_days: u32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    p.not_before = now - before_days * DAY;
    p.not_after = now + after_days * DAY;
}

/// Issues a leaf certificate per SNI name on demand and keeps it (bounded). All
/// leaves share one key, so issuing costs one CA signature.
struct OnDemand {
    issuer: CertifiedIssuer<'static, KeyPair>,
    leaf_key: KeyPair,
    signing: Arc<dyn SigningKey>,
    dot_suffix: String,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    limit: usize,
    serial: AtomicU64,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand").finish_non_exhaustive()
    }
}

impl OnDemand {
    fn new(
        suffix: &str,
        limit: usize,
        provider: &CryptoProvider,
        counters: Arc<Counters>,
    ) -> Result<OnDemand, String> {
        let e = |e: rcgen::Error| e.to_string();
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bench-world test CA");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p, 2, 3650);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().map_err(e)?).map_err(e)?;
        let leaf_key = KeyPair::generate().map_err(e)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| e.to_string())?;
        Ok(OnDemand {
            issuer,
            leaf_key,
            signing,
            dot_suffix: format!(".{suffix}"),
            cache: Mutex::new(HashMap::new()),
            limit,
            serial: AtomicU64::new(1),
            counters,
        })
    }

    fn issue(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let mut p = CertificateParams::new(vec![host.to_string()]).ok()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        // Positive and minimal: a leading 0x01 byte.
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let mut serial = vec![1u8];
        serial.extend_from_slice(&n.to_be_bytes());
        p.serial_number = Some(SerialNumber::from(serial));
        validity(&mut p, 1, 365);
        let cert = p.signed_by(&self.leaf_key, &self.issuer).ok()?;
        self.counters.certs_issued.fetch_add(1, Ordering::Relaxed);
        Some(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            Arc::clone(&self.signing),
        )))
    }
}

impl ResolvesServerCert for OnDemand {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        let sni = hello
            .server_name()?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !sni.ends_with(&self.dot_suffix) {
            return None;
        }
        if let Some(ck) = self.cache.lock().ok()?.get(&sni) {
            return Some(Arc::clone(ck));
        }
        let ck = self.issue(&sni)?;
        let mut cache = self.cache.lock().ok()?;
        if cache.len() >= self.limit {
            cache.clear();
        }
        cache.insert(sni, Arc::clone(&ck));
        Some(ck)
    }
}

// ---------------------------------------------------------------- HTTPS

const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

async fn https_conn(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    counters: Arc<Counters>,
    suffix: Arc<str>,
    broken_every: usize,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(Ok(mut tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    let good = complete
        && (head.starts_with(format!("GET {POLICY_PATH} ").as_bytes())
            || head.starts_with(format!("GET https://{sni}{POLICY_PATH} ").as_bytes()));
    let index = domain_index(&sni, "mta-sts.", &suffix);
    let broken = broken_every > 0 && index.is_some_and(|i| i % broken_every == 0);
    let response = match sni.strip_prefix("mta-sts.") {
        Some(_) if good && broken => {
            counters.fetch_total.fetch_add(1, Ordering::Relaxed);
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .into()
        }
        Some(domain) if good => {
            counters.fetch_total.fetch_add(1, Ordering::Relaxed);
            Counters::bump(&counters.fetch, domain_index(&sni, "mta-sts.", &suffix));
            let body = format!("version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 604800\n");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
        _ => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
        }
    };
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        tls.write_all(response.as_bytes()).await?;
        tls.shutdown().await
    })
    .await;
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let provider = provider();
    let counters = Arc::new(Counters::new(args.max_domains));
    let resolver = OnDemand::new(
        &args.suffix,
        args.cert_cache.max(1),
        &provider,
        Arc::clone(&counters),
    )?;
    std::fs::write(&args.ca_file, resolver.issuer.pem())
        .map_err(|e| format!("{}: {e}", args.ca_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let udp = UdpSocket::bind(args.dns).map_err(|e| format!("dns {}: {e}", args.dns))?;
    {
        let counters = Arc::clone(&counters);
        let suffix = args.suffix.clone();
        let id = TxtId {
            base: args.id.clone(),
            every: args.id_every,
        };
        std::thread::spawn(move || dns_loop(udp, counters, suffix, id));
    }
    if let Some(path) = args.stats.clone() {
        let counters = Arc::clone(&counters);
        std::thread::spawn(move || loop {
            counters.write(&path);
            std::thread::sleep(Duration::from_secs(1));
        });
    }
    let rt = socketmap_load::runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.https)
            .await
            .map_err(|e| format!("https {}: {e}", args.https))?;
        eprintln!(
            "bench-world: dns udp:{} https:{} ca {} (domains d{{N}}.{})",
            args.dns,
            args.https,
            args.ca_file.display(),
            args.suffix
        );
        let suffix: Arc<str> = Arc::from(args.suffix.as_str());
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        tokio::spawn(https_conn(
                            tcp,
                            acceptor.clone(),
                            Arc::clone(&counters),
                            Arc::clone(&suffix),
                            args.broken_every,
                        ));
                    }
                    Err(e) => {
                        eprintln!("bench-world: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            () = accept => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), String>(())
    })?;
    if let Some(path) = &args.stats {
        counters.write(path);
    }
    eprint!("{}", counters.text());
    Ok(())
}

// ---------------------------------------------------------------- probe

fn txt_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&dns::TYPE_TXT.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn probe(args: ProbeArgs) -> Result<(), String> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca_file)
        .map_err(|e| format!("{}: {e}", args.ca_file.display()))?
    {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    udp.connect(args.dns).map_err(|e| e.to_string())?;
    udp.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let rt = socketmap_load::runtime(1).map_err(|e| e.to_string())?;
    let (mut dns_us, mut tls_us, mut http_us, mut total_us) = (vec![], vec![], vec![], vec![]);
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for i in 0..args.count {
        let domain = format!("probe{salt}x{i}.{}", args.suffix);
        // DNS: one TXT round trip.
        let t0 = Instant::now();
        udp.send(&txt_query(i as u16, &format!("_mta-sts.{domain}")))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        udp.recv(&mut buf).map_err(|e| format!("dns: {e}"))?;
        let t1 = Instant::now();
        // TCP connect + TLS handshake, then one HTTP exchange.
        let host = format!("mta-sts.{domain}");
        let (t2, t3) = rt.block_on(async {
            let tcp = TcpStream::connect(args.https)
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            let t2 = Instant::now();
            let request =
                format!("GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            tls.write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            // The world closes after the response (close_notify or not).
            let _ = tls.read_to_end(&mut body).await;
            if !body.starts_with(b"HTTP/1.1 200") {
                return Err(format!("http: {}", String::from_utf8_lossy(&body)));
            }
            Ok::<_, String>((t2, Instant::now()))
        })?;
        let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
        dns_us.push(us(t0, t1));
        tls_us.push(us(t1, t2));
        http_us.push(us(t2, t3));
        total_us.push(us(t0, t3));
    }
    println!(
        "probe: {} fresh domains, one after another (µs)",
        args.count
    );
    for (name, v) in [
        ("dns_txt_rtt", &mut dns_us),
        ("tcp_tls_handshake", &mut tls_us),
        ("http_rtt", &mut http_us),
        ("total", &mut total_us),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name} p50 {:.0} p99 {:.0} max {:.0}",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes() {
        assert_eq!(
            domain_index("_mta-sts.d42.cold.test", "_mta-sts.", "cold.test"),
            Some(42)
        );
        assert_eq!(
            domain_index("mta-sts.d0.cold.test", "mta-sts.", "cold.test"),
            Some(0)
        );
        assert_eq!(
            domain_index("mta-sts.probe1.cold.test", "mta-sts.", "cold.test"),
            None
        );
        assert_eq!(
            domain_index("mta-sts.d.cold.test", "mta-sts.", "cold.test"),
            None
        );
        assert_eq!(
            domain_index("mta-sts.d1.xcold.test", "mta-sts.", "cold.test"),
            None
        );
    }

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
