//! A real SMTP server with STARTTLS (RFC 3207) on 127.0.0.1:ephemeral (or an address
//! of the test's choosing), for the MX probes of `mtastsd check` and, accepting mail,
//! as the MX hosts a real Postfix delivers to. The client's SNI after STARTTLS picks
//! the certificate (so one server stands in for every MX host of a test); what the
//! server offers before TLS is one setting for the whole server.
//!
//! Certificates are either a [`CertKind`] from the world's [`TestCa`] or, for dates the
//! kinds do not cover (expiring soon), a leaf from this server's own CA, whose root a
//! test adds to its trust anchors ([`SmtpServer::own_root`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ca::{provider, CertKind, TestCa};

/// How the server behaves before (and instead of) the TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 220 greeting, EHLO lists STARTTLS, STARTTLS → 220 then the handshake.
    Starttls,
    /// EHLO does not list STARTTLS (and STARTTLS gets 502).
    NoStarttls,
    /// STARTTLS gets 220, then plaintext garbage instead of a TLS handshake.
    BrokenTls,
    /// TLS at once, no SMTP: a stand-in HTTPS endpoint for the policy host probe.
    ImplicitTls,
    /// `554` greeting, then close (a host that refuses SMTP sessions).
    Refuse,
    /// A `554` greeting whose text carries terminal escape sequences and a carriage
    /// return, then close.
    HostileRefuse,
}

/// The certificate presented for one SNI name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    Kind(CertKind),
    /// Right name, issued by this server's own CA, valid until `days` from now.
    ExpiresInDays(u32),
}

struct State {
    behaviour: Behaviour,
    leaves: HashMap<String, Leaf>,
    /// SNI names seen in handshakes (the default host's for none), in order.
    handshakes: Vec<String>,
    /// Commands received (before and after TLS), in order.
    commands: Vec<String>,
    /// Take MAIL, RCPT and DATA (after TLS, or without when STARTTLS is not
    /// offered) instead of answering 502.
    accept_mail: bool,
    /// The name on the first line of the EHLO reply.
    ehlo_name: String,
    /// Messages taken with DATA: whether over TLS, and the message text.
    messages: Vec<(bool, String)>,
    /// The host whose certificate a client without SNI gets (none: the handshake
    /// is refused).
    default_host: Option<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

struct Resolver {
    state: Shared,
    ca: Arc<TestCa>,
    own: Arc<CertifiedIssuer<'static, KeyPair>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (sni, leaf) = {
            let mut st = lock(&self.state);
            let sni = match hello.server_name() {
                Some(name) => name.to_ascii_lowercase(),
                None => st.default_host.clone()?,
            };
            st.handshakes.push(sni.clone());
            let leaf = st
                .leaves
                .get(&sni)
                .copied()
                .unwrap_or(Leaf::Kind(CertKind::Valid));
            (sni, leaf)
        };
        Some(match leaf {
            Leaf::Kind(kind) => self.ca.certified_key(&sni, kind),
            Leaf::ExpiresInDays(days) => Arc::new(expiring_leaf(&self.own, &sni, days)),
        })
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// Valid from `before` ago until `after` from now.
fn set_validity(p: &mut CertificateParams, before: Duration, after: Duration) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    p.not_before = now - before;
    p.not_after = now + after;
}

fn own_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "mtastsd test SMTP CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut p, DAY, 3650 * DAY);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("self-sign")
}

fn expiring_leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    host: &str,
    days: u32,
) -> CertifiedKey {
    let mut p = CertificateParams::new(vec![host.to_string()]).expect("leaf params");
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    // A minute more than the whole days, so the report rounds down to `days`.
    set_validity(&mut p, 80 * DAY, days * DAY + Duration::from_secs(60));
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, issuer).expect("sign leaf");
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    CertifiedKey::from_der(vec![cert.der().clone()], key_der, &provider()).expect("CertifiedKey")
}

/// Handle on the SMTP server; stops when dropped.
pub struct SmtpServer {
    port: u16,
    state: Shared,
    own: Arc<CertifiedIssuer<'static, KeyPair>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Listen on 127.0.0.1:0, offering STARTTLS with `CertKind::Valid` for any name.
    pub async fn start(ca: Arc<TestCa>) -> SmtpServer {
        Self::start_at(ca, ([127, 0, 0, 1], 0).into()).await
    }

    /// Listen on `addr` (a loopback address of its own lets several servers, each
    /// with its behaviour, share the one port a Postfix `smtp_tcp_port` names).
    pub async fn start_at(ca: Arc<TestCa>, addr: std::net::SocketAddr) -> SmtpServer {
        let state: Shared = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Starttls,
            leaves: HashMap::new(),
            handshakes: Vec::new(),
            commands: Vec::new(),
            accept_mail: false,
            ehlo_name: "mx.test".into(),
            messages: Vec::new(),
            default_host: None,
        }));
        let own = Arc::new(own_ca());
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver {
                state: state.clone(),
                ca,
                own: own.clone(),
            }));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind SMTP on {addr}: {e}"));
        let port = listener.local_addr().expect("SMTP addr").port();
        let task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
        SmtpServer {
            port,
            state,
            own,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        lock(&self.state).behaviour = b;
    }

    /// The certificate presented to SNI `host` (default: `CertKind::Valid`).
    pub fn set_leaf(&self, host: &str, leaf: Leaf) {
        lock(&self.state)
            .leaves
            .insert(host.to_ascii_lowercase(), leaf);
    }

    /// The root of this server's own CA (signs `Leaf::ExpiresInDays`).
    pub fn own_root(&self) -> CertificateDer<'static> {
        self.own.der().clone()
    }

    /// SNI names of the TLS handshakes so far.
    pub fn handshakes(&self) -> Vec<String> {
        lock(&self.state).handshakes.clone()
    }

    /// SMTP commands received so far.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.state).commands.clone()
    }

    /// Take mail (MAIL, RCPT, DATA answered 250/354) instead of refusing it.
    pub fn accept_mail(&self) {
        lock(&self.state).accept_mail = true;
    }

    /// The name the EHLO reply starts with (default `mx.test`).
    pub fn set_ehlo_name(&self, name: &str) {
        lock(&self.state).ehlo_name = name.to_string();
    }

    /// The certificate of `host` for clients that send no SNI (as Postfix at
    /// `smtp_tls_security_level = may` without `smtp_tls_servername`).
    pub fn set_default_host(&self, host: &str) {
        lock(&self.state).default_host = Some(host.to_ascii_lowercase());
    }

    /// Messages taken so far: (over TLS, text).
    pub fn messages(&self) -> Vec<(bool, String)> {
        lock(&self.state).messages.clone()
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Shared) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(30), session(tcp, acceptor, state)).await;
        });
    }
}

async fn session(tcp: TcpStream, acceptor: TlsAcceptor, state: Shared) -> std::io::Result<()> {
    let behaviour = lock(&state).behaviour;
    if behaviour == Behaviour::ImplicitTls {
        let mut tls = acceptor.accept(tcp).await?;
        return tls.shutdown().await;
    }
    let mut s = BufReader::new(tcp);
    if behaviour == Behaviour::Refuse {
        return s.get_mut().write_all(b"554 5.3.2 no service\r\n").await;
    }
    if behaviour == Behaviour::HostileRefuse {
        return s
            .get_mut()
            .write_all(b"554-\x1b]0;owned\x07 title\r\n554 5.3.2 \x1b[2Jno\rservice\r\n")
            .await;
    }
    s.get_mut()
        .write_all(b"220 mx.test ESMTP fixture\r\n")
        .await?;
    let starttls = dialogue(&mut s, &state, behaviour, true).await?;
    if !starttls {
        return Ok(());
    }
    if behaviour == Behaviour::BrokenTls {
        return s.get_mut().write_all(b"this is not TLS\r\n\r\n").await;
    }
    let tls = acceptor.accept(s.into_inner()).await?;
    let mut s = BufReader::new(tls);
    dialogue(&mut s, &state, behaviour, false).await?;
    Ok(())
}

/// Answer commands until QUIT (false), EOF (false) or an accepted STARTTLS (true).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    state: &Shared,
    behaviour: Behaviour,
    plain: bool,
) -> std::io::Result<bool> {
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let cmd = line.trim_end().to_string();
        let (accept, ehlo_name) = {
            let mut st = lock(state);
            st.commands.push(cmd.clone());
            (st.accept_mail, st.ehlo_name.clone())
        };
        let verb = cmd
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let offer = plain && behaviour != Behaviour::NoStarttls;
        // Mail is taken over TLS, or in the clear from a server that offers no
        // STARTTLS (as such a server would).
        let mail = accept && !offer;
        let reply: Vec<u8> = match verb.as_str() {
            "EHLO" if offer => {
                format!("250-{ehlo_name}\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                    .into_bytes()
            }
            "EHLO" => format!("250-{ehlo_name}\r\n250-PIPELINING\r\n250 8BITMIME\r\n").into_bytes(),
            "STARTTLS" if offer => {
                s.get_mut()
                    .write_all(b"220 2.0.0 ready to start TLS\r\n")
                    .await?;
                return Ok(true);
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" if mail => b"250 2.0.0 ok\r\n".to_vec(),
            "DATA" if mail => {
                s.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut text = String::new();
                loop {
                    let mut l = String::new();
                    if s.read_line(&mut l).await? == 0 {
                        return Ok(false);
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    text.push_str(&l);
                }
                lock(state).messages.push((!plain, text));
                b"250 2.0.0 queued\r\n".to_vec()
            }
            "QUIT" => {
                s.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(false);
            }
            _ => b"502 5.5.2 not implemented\r\n".to_vec(),
        };
        s.get_mut().write_all(&reply).await?;
    }
}
