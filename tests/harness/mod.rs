//! Starting mtastsd in-process against a [`support::World`], and a raw socketmap
//! client that speaks netstrings over TCP the way Postfix does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mtastsd::cache::Clock;
use mtastsd::config::{Config, ListenAddr};
use mtastsd::daemon::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::World;

/// A clock the test moves by hand (max_age, recheck and back-off without sleeping).
pub struct TestClock(AtomicU64);

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(1_800_000_000)))
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A configuration pointing at the world: its DNS server only, its CA, its HTTPS
/// port, an ephemeral listener, and the cache in `state_dir`.
pub fn config(world: &World, state_dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = vec![ListenAddr::Inet("127.0.0.1:0".parse().unwrap())];
    c.dns.nameservers = vec![world.dns_addr()];
    c.dns.timeout = Duration::from_secs(1);
    c.fetch.ca_file = Some(world.ca_file().to_path_buf());
    c.fetch.https_port = world.https_port();
    c.fetch.timeout = Duration::from_secs(2);
    c.cache.state_dir = Some(state_dir.to_path_buf());
    c
}

/// The file form of [`config`], for tests of the binary and of `Config::load`:
/// `dir/mtastsd.toml` listening on `listen`, with `state_dir` and `extra` (more
/// TOML, e.g. sections) appended.
pub fn config_file(
    world: &World,
    dir: &Path,
    listen: &str,
    state_dir: &str,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[server]
listen = ["{listen}"]

[dns]
nameservers = ["{dns}"]
timeout = "1s"

[fetch]
ca_file = "{ca}"
https_port = {port}
timeout = "2s"

[cache]
state_dir = "{state_dir}"
{extra}
"#,
        dns = world.dns_addr(),
        ca = world.ca_file().display(),
        port = world.https_port(),
    );
    let path = dir.join("mtastsd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub async fn start(config: Config, clock: Arc<TestClock>) -> Daemon {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Daemon::start(config, clock).await.expect("daemon starts")
}

/// One socketmap connection.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    /// `<map> <key>` → the reply payload, e.g. `NOTFOUND ` or `OK secure match=...`.
    pub async fn query(&mut self, map: &str, key: &str) -> String {
        self.send_raw(netstring(&format!("{map} {key}")).as_bytes())
            .await;
        self.reply()
            .await
            .expect("the daemon answers and keeps the connection")
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next reply, or `None` when the daemon closed the connection.
    pub async fn reply(&mut self) -> Option<String> {
        loop {
            if let Some((payload, used)) = parse_netstring(&self.buf) {
                self.buf.drain(..used);
                return Some(payload);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("reply within 30 s")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "connection closed mid-reply");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the daemon has closed the connection (EOF) within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub fn netstring(s: &str) -> String {
    format!("{}:{s},", s.len())
}

fn parse_netstring(buf: &[u8]) -> Option<(String, usize)> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
    let end = colon + 1 + len;
    if buf.len() < end + 1 {
        return None;
    }
    assert_eq!(buf[end], b',', "reply netstring ends with ','");
    Some((
        String::from_utf8(buf[colon + 1..end].to_vec()).unwrap(),
        end + 1,
    ))
}

/// A simple enforce policy body.
pub fn enforce(mx: &[&str]) -> String {
    policy("enforce", mx, 86400)
}

pub fn policy(mode: &str, mx: &[&str], max_age: u32) -> String {
    let mut s = format!("version: STSv1\nmode: {mode}\n");
    for m in mx {
        s.push_str(&format!("mx: {m}\n"));
    }
    s.push_str(&format!("max_age: {max_age}\n"));
    s
}
