//! In-process test world for integration tests: a real authoritative DNS server
//! (hickory-server, UDP + TCP) and a real multi-host HTTPS server (tokio-rustls)
//! with certificates from a test CA, all on 127.0.0.1 ephemeral ports, all mutable
//! at run time.
//!
//! ```ignore
//! mod support;
//! let world = support::World::start().await;
//! world.publish("example.com", "id1", "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n");
//! // daemon config: nameserver = world.dns_addr(), CA file = world.ca_file(),
//! // policy port = world.https_port()
//! ```
//!
//! The servers run as tasks of the current tokio runtime: a test that blocks its
//! thread (e.g. `std::process::Command::output()` on a current-thread runtime)
//! starves them. Use `#[tokio::test(flavor = "multi_thread")]` or async waiting
//! (`tokio::process`) in that case.
#![allow(dead_code, unused_imports)]

pub mod ca;
pub mod client;
pub mod dns;
pub mod https;
pub mod redis;
pub mod smtp;
pub mod tlsrpt;
pub mod trixie;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ca::{install_crypto_provider, CertKind, TestCa};
pub use dns::DnsServer;
pub use hickory_server::proto::op::ResponseCode;
pub use hickory_server::proto::rr::RecordType;
pub use https::{HttpsServer, Reply};

/// A policy that is valid for `mx.<domain>`, mode enforce, max_age 86400.
pub fn simple_policy(domain: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n")
}

pub struct World {
    pub dns: DnsServer,
    pub https: HttpsServer,
    pub ca: Arc<TestCa>,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl World {
    /// Start DNS and HTTPS servers and write the CA file. Call inside a tokio runtime.
    pub async fn start() -> World {
        Self::start_with_dns_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Like [`World::start`], with the DNS server on `dns` (see
    /// [`DnsServer::start_at`]).
    pub async fn start_with_dns_at(dns: std::net::SocketAddr) -> World {
        install_crypto_provider();
        let ca = Arc::new(TestCa::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.root_pem()).expect("write ca.pem");
        let dns = DnsServer::start_at(dns).await;
        let https = HttpsServer::start(ca.clone()).await;
        World {
            dns,
            https,
            ca,
            dir,
            ca_file,
        }
    }

    /// PEM file holding the test CA root (the only root that signs `CertKind::Valid`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A private temporary directory (holds `ca.pem`; free for config, cache files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The DNS server (UDP and TCP on the same address).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    pub fn https_port(&self) -> u16 {
        self.https.port()
    }

    /// TXT `_mta-sts.<domain>` = `v=STSv1; id=<id>`, A `mta-sts.<domain>` = 127.0.0.1,
    /// HTTPS host `mta-sts.<domain>` serving `policy` as text/plain with a valid cert.
    pub fn publish(&self, domain: &str, id: &str, policy: &str) {
        self.publish_txt(domain, id);
        self.dns.set_a(&policy_host(domain), Ipv4Addr::LOCALHOST);
        self.https.set(
            &policy_host(domain),
            CertKind::Valid,
            Reply::Policy(policy.into()),
        );
    }

    /// Only the TXT record: `_mta-sts.<domain>` = `v=STSv1; id=<id>`.
    pub fn publish_txt(&self, domain: &str, id: &str) {
        self.dns
            .set_txt(&txt_name(domain), vec![vec![format!("v=STSv1; id={id}")]]);
    }

    /// Remove the TXT record, the A record and the HTTPS host of `domain`.
    pub fn unpublish(&self, domain: &str) {
        self.dns.remove(&txt_name(domain));
        self.dns.remove(&policy_host(domain));
        self.https.remove(&policy_host(domain));
    }

    /// `https://mta-sts.<domain>:<port>/.well-known/mta-sts.txt`
    pub fn policy_url(&self, domain: &str) -> String {
        format!(
            "https://{}:{}/.well-known/mta-sts.txt",
            policy_host(domain),
            self.https_port()
        )
    }
}

/// `_mta-sts.<domain>`
pub fn txt_name(domain: &str) -> String {
    format!("_mta-sts.{}", domain.trim_end_matches('.'))
}

/// `mta-sts.<domain>`
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{}", domain.trim_end_matches('.'))
}

#[allow(unused)]
fn _assert_send_sync() {
    fn f<T: Send + Sync + 'static>() {}
    f::<World>();
    f::<DnsServer>();
    f::<HttpsServer>();
    f::<Reply>();
}
