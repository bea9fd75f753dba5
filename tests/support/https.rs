//! A real HTTPS server (tokio-rustls over a TcpListener on 127.0.0.1:ephemeral) that
//! serves many hosts: the SNI picks the certificate and the reply. HTTP/1.1 is
//! written by hand, one request per connection (`Connection: close`), so replies
//! can misbehave in controlled ways.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::ca::{CertKind, TestCa};

/// Longest request head accepted (request line + headers).
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Longest request body read (and recorded); more is left unread.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// A connection that does not complete its handshake / request head in this time
/// is closed.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server answers to a request for a host.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200, `Content-Type: text/plain`, correct Content-Length, this body.
    Policy(String),
    /// Anything: status, headers as given (Content-Length and `Connection: close`
    /// are added unless present), body as given.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 text/plain; `Content-Length: declared_len` (None = no header, body
    /// delimited by connection close), then `actual_len` bytes of policy-looking
    /// filler (`version: STSv1`, `mode: enforce`, `max_age`, many `mx:` lines).
    Huge {
        declared_len: Option<u64>,
        actual_len: u64,
    },
    /// 200 text/plain, `Transfer-Encoding: chunked`, `actual_len` bytes of filler.
    HugeChunked { actual_len: u64 },
    /// Wait `delay` before sending anything, then send `then`.
    Slow { delay: Duration, then: Box<Reply> },
    /// 200 text/plain with the right Content-Length at once, then the body one byte
    /// per `interval`.
    Drip { interval: Duration, body: String },
    /// Complete the TLS handshake, read the request, never answer.
    Hang,
    /// Complete the TLS handshake, read the request, close without any response.
    Close,
    /// Complete the TLS handshake, read the request, reset the TCP connection (RST).
    Reset,
    /// A status line, then header lines without end, one per `interval`.
    EndlessHeaders { interval: Duration },
    /// 200 text/plain claiming `Content-Length: declared`, then only `body`, then
    /// the connection dropped without a TLS close_notify (a peer that dies mid-body).
    CutOff { declared: usize, body: String },
}

impl Reply {
    /// `Raw` with a status, a Content-Type and a body.
    pub fn with_type(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Raw {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// `Raw` with only a status (and an empty body).
    pub fn status(status: u16) -> Reply {
        Reply::Raw {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A redirect (`status` 301/302/307/308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::Raw {
            status,
            headers: vec![
                ("Location".into(), location.into()),
                ("Content-Type".into(), "text/plain".into()),
            ],
            body: Vec::new(),
        }
    }

    pub fn slow(delay: Duration, then: Reply) -> Reply {
        Reply::Slow {
            delay,
            then: Box::new(then),
        }
    }
}

struct Host {
    kind: CertKind,
    cert: Arc<CertifiedKey>,
    reply: Reply,
}

#[derive(Default, Clone, Debug)]
struct Stats {
    handshakes: usize,
    requests: usize,
    last_request: Option<String>,
    /// The body of the last request (by its Content-Length; empty without one).
    last_body: Option<Vec<u8>>,
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, Host>,
    stats: HashMap<String, Stats>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Debug)]
struct SniResolver {
    state: Shared,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = normalize(client_hello.server_name()?);
        let mut st = lock(&self.state);
        st.stats.entry(sni.clone()).or_default().handshakes += 1;
        st.hosts.get(&sni).map(|h| h.cert.clone())
    }
}

struct Inner {
    addr: SocketAddr,
    state: Shared,
    ca: Arc<TestCa>,
    acceptor: TlsAcceptor,
    runtime: tokio::runtime::Handle,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self
            .accept_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Handle on the HTTPS server; clones share it. Stops when the last clone is dropped.
#[derive(Clone)]
pub struct HttpsServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsServer")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl HttpsServer {
    /// Listen on 127.0.0.1:0. Must be called inside a tokio runtime.
    pub async fn start(ca: Arc<TestCa>) -> HttpsServer {
        let provider = super::ca::provider();
        let state: Shared = Arc::default();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver {
                state: state.clone(),
            }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind HTTPS listener");
        let addr = listener.local_addr().expect("HTTPS local addr");
        let runtime = tokio::runtime::Handle::current();
        let task = runtime.spawn(accept_loop(listener, acceptor.clone(), state.clone()));
        HttpsServer {
            inner: Arc::new(Inner {
                addr,
                state,
                ca,
                acceptor,
                runtime,
                accept_task: Mutex::new(Some(task)),
            }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// Serve `host` (the SNI name) with a certificate of `cert` kind and `reply`.
    /// The certificate is issued now (cached per host and kind).
    pub fn set(&self, host: &str, cert: CertKind, reply: Reply) {
        let host = normalize(host);
        let ck = self.inner.ca.certified_key(&host, cert);
        lock(&self.inner.state).hosts.insert(
            host,
            Host {
                kind: cert,
                cert: ck,
                reply,
            },
        );
    }

    /// Change the reply for `host`, keeping its certificate (Valid if unset).
    pub fn set_reply(&self, host: &str, reply: Reply) {
        let kind = lock(&self.inner.state)
            .hosts
            .get(&normalize(host))
            .map(|h| h.kind)
            .unwrap_or(CertKind::Valid);
        self.set(host, kind, reply);
    }

    /// Change the certificate for `host`, keeping its reply (404 if unset).
    pub fn set_cert(&self, host: &str, cert: CertKind) {
        let reply = lock(&self.inner.state)
            .hosts
            .get(&normalize(host))
            .map(|h| h.reply.clone())
            .unwrap_or_else(|| Reply::status(404));
        self.set(host, cert, reply);
    }

    /// Forget `host`: TLS handshakes with that SNI fail (no certificate).
    pub fn remove(&self, host: &str) {
        lock(&self.inner.state).hosts.remove(&normalize(host));
    }

    /// `true`: close the listening socket (new connections are refused) and drop
    /// every open connection. `false`: listen again on the same port.
    pub fn set_down(&self, down: bool) {
        let mut task = self
            .inner
            .accept_task
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if down {
            if let Some(t) = task.take() {
                t.abort();
            }
        } else if task.is_none() {
            let mut last = None;
            // The aborted task drops the old listener asynchronously: retry briefly.
            for _ in 0..200 {
                match std::net::TcpListener::bind(self.inner.addr) {
                    Ok(l) => {
                        l.set_nonblocking(true).expect("nonblocking");
                        let _guard = self.inner.runtime.enter();
                        let l = TcpListener::from_std(l).expect("tokio listener");
                        *task = Some(self.inner.runtime.spawn(accept_loop(
                            l,
                            self.inner.acceptor.clone(),
                            self.inner.state.clone(),
                        )));
                        return;
                    }
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("could not listen again on {}: {last:?}", self.inner.addr);
        }
    }

    /// Same as `set_down(true)`.
    pub fn stop_all(&self) {
        self.set_down(true);
    }

    /// Number of HTTP requests (complete request heads) received with this SNI.
    pub fn requests(&self, host: &str) -> usize {
        lock(&self.inner.state)
            .stats
            .get(&normalize(host))
            .map_or(0, |s| s.requests)
    }

    /// Number of TLS ClientHellos received with this SNI (whether or not the
    /// handshake then succeeded).
    pub fn handshakes(&self, host: &str) -> usize {
        lock(&self.inner.state)
            .stats
            .get(&normalize(host))
            .map_or(0, |s| s.handshakes)
    }

    /// Total requests over all hosts.
    pub fn total_requests(&self) -> usize {
        lock(&self.inner.state)
            .stats
            .values()
            .map(|s| s.requests)
            .sum()
    }

    /// The last request head for this SNI: request line and headers, lines separated
    /// by CRLF, without the final empty line.
    pub fn last_request(&self, host: &str) -> Option<String> {
        lock(&self.inner.state)
            .stats
            .get(&normalize(host))
            .and_then(|s| s.last_request.clone())
    }

    /// The body of the last request for this SNI (empty when it had none).
    pub fn last_body(&self, host: &str) -> Option<Vec<u8>> {
        lock(&self.inner.state)
            .stats
            .get(&normalize(host))
            .and_then(|s| s.last_body.clone())
    }

    pub fn reset_counts(&self) {
        lock(&self.inner.state).stats.clear();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Shared) {
    // Connection tasks live in this JoinSet: aborting the accept loop (set_down,
    // drop) aborts them too.
    let mut conns = JoinSet::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        conns.spawn(handle_conn(tcp, acceptor.clone(), state.clone()));
        while conns.try_join_next().is_some() {}
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn handle_conn(tcp: TcpStream, acceptor: TlsAcceptor, state: Shared) {
    let _ = tcp.set_nodelay(true);
    let Ok(Ok(mut tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let host = tls
        .get_ref()
        .1
        .server_name()
        .map(normalize)
        .unwrap_or_default();

    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = find_head_end(&buf) {
            break p;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            let _ = write_raw(&mut tls, 431, &[], b"").await;
            return;
        }
        match tokio::time::timeout(IO_TIMEOUT, tls.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    // A request body (a POST's), by its Content-Length: recorded for the test.
    let body_len = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BODY);
    let mut body = buf.split_off(head_end + 4);
    while body.len() < body_len {
        match tokio::time::timeout(IO_TIMEOUT, tls.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => body.extend_from_slice(&tmp[..n]),
        }
    }
    body.truncate(body_len);

    let reply = {
        let mut st = lock(&state);
        let stats = st.stats.entry(host.clone()).or_default();
        stats.requests += 1;
        stats.last_request = Some(head);
        stats.last_body = Some(body);
        st.hosts.get(&host).map(|h| h.reply.clone())
    };
    let reply = reply.unwrap_or_else(|| Reply::status(404));
    if let Reply::Reset = reply {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on the connection's own socket, correctly sized struct.
        unsafe {
            libc::setsockopt(
                tls.get_ref().0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        return; // dropped: the kernel sends RST
    }
    if send_reply(&mut tls, reply).await.is_ok() {
        let _ = tls.shutdown().await;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

async fn write_raw<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await?;
    s.flush().await
}

/// Policy-looking filler: a valid policy head followed by `mx:` lines.
pub fn filler(len: u64) -> Filler {
    Filler { pos: 0, len }
}

pub struct Filler {
    pos: u64,
    len: u64,
}

const FILLER_HEAD: &str = "version: STSv1\nmode: enforce\nmax_age: 86400\n";

impl Filler {
    /// Next chunk of at most `max` bytes, or None at the end.
    pub fn next_chunk(&mut self, max: usize) -> Option<Vec<u8>> {
        if self.pos >= self.len {
            return None;
        }
        let want = (self.len - self.pos).min(max as u64) as usize;
        let mut out = Vec::with_capacity(want + 64);
        while out.len() < want {
            let abs = self.pos + out.len() as u64;
            if abs < FILLER_HEAD.len() as u64 {
                out.extend_from_slice(&FILLER_HEAD.as_bytes()[abs as usize..]);
            } else {
                // Lines of fixed width (27 bytes) so the offset maps to a line.
                let rel = abs - FILLER_HEAD.len() as u64;
                let line_no = rel / 27;
                let line = format!("mx: mx{:08}.example.net\n", line_no % 100_000_000);
                debug_assert_eq!(line.len(), 27);
                out.extend_from_slice(&line.as_bytes()[(rel % 27) as usize..]);
            }
        }
        out.truncate(want);
        self.pos += want as u64;
        Some(out)
    }
}

async fn send_reply<S: AsyncWrite + Unpin>(s: &mut S, reply: Reply) -> io::Result<()> {
    let mut reply = reply;
    loop {
        match reply {
            Reply::Slow { delay, then } => {
                tokio::time::sleep(delay).await;
                reply = *then;
            }
            Reply::Policy(body) => {
                let h = vec![("Content-Type".to_string(), "text/plain".to_string())];
                return write_raw(s, 200, &h, body.as_bytes()).await;
            }
            Reply::Raw {
                status,
                headers,
                body,
            } => return write_raw(s, status, &headers, &body).await,
            Reply::Huge {
                declared_len,
                actual_len,
            } => {
                let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
                if let Some(n) = declared_len {
                    head.push_str(&format!("Content-Length: {n}\r\n"));
                }
                head.push_str("Connection: close\r\n\r\n");
                s.write_all(head.as_bytes()).await?;
                let mut f = filler(actual_len);
                while let Some(chunk) = f.next_chunk(16 * 1024) {
                    s.write_all(&chunk).await?;
                }
                return s.flush().await;
            }
            Reply::HugeChunked { actual_len } => {
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .await?;
                let mut f = filler(actual_len);
                while let Some(chunk) = f.next_chunk(16 * 1024) {
                    let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(b"\r\n");
                    s.write_all(&out).await?;
                }
                s.write_all(b"0\r\n\r\n").await?;
                return s.flush().await;
            }
            Reply::Drip { interval, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).await?;
                s.flush().await?;
                for b in body.as_bytes() {
                    tokio::time::sleep(interval).await;
                    s.write_all(&[*b]).await?;
                    s.flush().await?;
                }
                return Ok(());
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
            }
            Reply::Close | Reply::Reset => return Err(io::Error::other("close without reply")),
            Reply::EndlessHeaders { interval } => {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
                    .await?;
                for i in 0u64.. {
                    s.write_all(format!("X-Filler-{i}: {}\r\n", "x".repeat(64)).as_bytes())
                        .await?;
                    s.flush().await?;
                    tokio::time::sleep(interval).await;
                }
            }
            Reply::CutOff { declared, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {declared}\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await?;
                s.write_all(body.as_bytes()).await?;
                s.flush().await?;
                return Err(io::Error::other("cut off mid-body"));
            }
        }
    }
}
