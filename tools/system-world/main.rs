//! The outside world of `packaging/system-test.sh`, run inside its container (a
//! private network: everything is on loopback). It reuses the test suite's
//! fixtures (`tests/support`: the authoritative DNS server and the HTTPS policy
//! server with its test CA) and adds what Postfix needs to deliver mail: MX hosts
//! that speak SMTP with STARTTLS and accept messages.
//!
//! - DNS on 127.0.0.1:53, the container's only resolver (`/etc/resolv.conf`), for
//!   mtastsd and Postfix alike;
//! - the policy hosts on 127.0.0.1:443 (forwarded to the fixture's port), as
//!   RFC 8461 §3.3 says; while the file `<dir>/policy-host-down` exists, every
//!   connection to it is closed at once (the policy host switched off);
//! - SMTP on 127.0.0.2:25 with a valid certificate for `mx.good.test`, and on
//!   127.0.0.3:25 with a certificate for another name (`wrong.<host>`);
//! - the domains: `good.test` (enforce, MX 127.0.0.2), `badcert.test` (enforce, MX
//!   127.0.0.3: Postfix must defer), `testing.test` (testing, MX 127.0.0.3: Postfix
//!   delivers, opportunistic TLS), `none.test` (no MTA-STS, MX 127.0.0.3);
//! - `good.test` and `badcert.test` publish a TLS-RPT record (RFC 8460 §3) whose
//!   `rua` is [`RUA`], a mailbox of the container's own Postfix: its TLS-RPT
//!   step collects their sessions and mails their reports there.
//!
//! Writes the test CA to `<dir>/ca.pem`, then `<dir>/ready`; logs each delivered
//! message on stderr. Runs until killed.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use support::{CertKind, World};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const GOOD_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WRONG_CERT_MX: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Where `good.test` and `badcert.test` want their reports: `sender.test` is the
/// container's own mail domain (Postfix's `mydestination`), so the report is
/// delivered to a local mailbox, no TLS session of its own (SPEC 8.5).
const RUA: &str = "mailto:reports@sender.test";

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n")
}

#[tokio::main]
async fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: system-world DIR"));
    let world = World::start_with_dns_at("127.0.0.1:53".parse().unwrap()).await;
    for (domain, mode, ip) in [
        ("good.test", Some("enforce"), GOOD_MX),
        ("badcert.test", Some("enforce"), WRONG_CERT_MX),
        ("testing.test", Some("testing"), WRONG_CERT_MX),
        ("none.test", None, WRONG_CERT_MX),
    ] {
        let mx = format!("mx.{domain}");
        world.dns.set_mx(domain, vec![(10, mx.clone())]);
        world.dns.set_a(&mx, ip);
        if let Some(mode) = mode {
            world.publish(domain, "1", &policy(mode, &mx));
        }
        if mode == Some("enforce") {
            world.dns.set_txt1(
                &format!("_smtp._tls.{domain}"),
                &format!("v=TLSRPTv1; rua={RUA}"),
            );
        }
    }
    let https = SocketAddr::from((Ipv4Addr::LOCALHOST, world.https_port()));
    let forward = TcpListener::bind("127.0.0.1:443").await.expect("bind :443");
    tokio::spawn(forward_loop(forward, https, dir.join("policy-host-down")));
    for (ip, host, kind) in [
        (GOOD_MX, "mx.good.test", CertKind::Valid),
        (WRONG_CERT_MX, "mx.badcert.test", CertKind::WrongName),
    ] {
        let key = world.ca.certified_key(host, kind);
        let listener = TcpListener::bind((ip, 25)).await.expect("bind :25");
        tokio::spawn(smtp_loop(listener, acceptor(key), host));
    }
    std::fs::write(dir.join("ca.pem"), world.ca.root_pem()).expect("write ca.pem");
    std::fs::write(dir.join("ready"), "").expect("write ready");
    eprintln!(
        "system-world: DNS 127.0.0.1:53, HTTPS 127.0.0.1:443, SMTP 127.0.0.2:25 and 127.0.0.3:25"
    );
    std::future::pending::<()>().await;
}

async fn forward_loop(listener: TcpListener, to: SocketAddr, down: PathBuf) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        if Path::new(&down).exists() {
            continue; // dropped: connection closed before the TLS handshake
        }
        tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// One certificate for every SNI name (or none): Postfix sends SNI only when told.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn acceptor(key: Arc<CertifiedKey>) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(support::ca::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(key)));
    TlsAcceptor::from(Arc::new(config))
}

static QUEUE_ID: AtomicU64 = AtomicU64::new(1);

async fn smtp_loop(listener: TcpListener, acceptor: TlsAcceptor, name: &'static str) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = smtp_session(tcp, acceptor, name).await {
                eprintln!("system-world: {name}: session ended: {e}");
            }
        });
    }
}

async fn smtp_session(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    name: &'static str,
) -> std::io::Result<()> {
    let mut plain = BufReader::new(tcp);
    plain
        .get_mut()
        .write_all(format!("220 {name} ESMTP system-world\r\n").as_bytes())
        .await?;
    if !dialogue(&mut plain, name, false).await? {
        return Ok(());
    }
    let tls = acceptor.accept(plain.into_inner()).await?;
    dialogue(&mut BufReader::new(tls), name, true).await?;
    Ok(())
}

/// Commands until QUIT or EOF (false) or STARTTLS (true, before TLS only).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    name: &str,
    tls: bool,
) -> std::io::Result<bool> {
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let verb = line
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" if !tls => {
                format!("250-{name}\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            }
            "EHLO" => format!("250-{name}\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
            "HELO" | "MAIL" | "RSET" | "NOOP" => "250 2.0.0 ok\r\n".into(),
            "RCPT" => {
                rcpts.push(line.trim_end().to_owned());
                "250 2.1.5 ok\r\n".into()
            }
            "STARTTLS" if !tls => {
                s.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
                return Ok(true);
            }
            "DATA" => {
                s.get_mut().write_all(b"354 go ahead\r\n").await?;
                loop {
                    let mut body = String::new();
                    if s.read_line(&mut body).await? == 0 {
                        return Ok(false);
                    }
                    if body == ".\r\n" || body == ".\n" {
                        break;
                    }
                }
                let id = QUEUE_ID.fetch_add(1, Ordering::Relaxed);
                let how = if tls { "TLS" } else { "plaintext" };
                eprintln!("system-world: {name}: message {id} for {rcpts:?} over {how}");
                rcpts.clear();
                format!("250 2.0.0 Ok: queued as W{id}\r\n")
            }
            "QUIT" => {
                s.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(false);
            }
            _ => "502 5.5.2 not implemented\r\n".into(),
        };
        s.get_mut().write_all(reply.as_bytes()).await?;
    }
}
