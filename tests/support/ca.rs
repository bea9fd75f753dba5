//! Test certificate authority (rcgen): a trusted root written to `ca.pem`, a second
//! untrusted root, and leaf certificates issued on demand (cached per host and kind).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// Which certificate the HTTPS fixture presents for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// SAN dNSName = host, issued by the trusted test CA, valid yesterday .. next year.
    Valid,
    /// SAN dNSName = `wrong.<host>` only (CN too), trusted CA.
    WrongName,
    /// Right name, trusted CA, not_after 30 days ago.
    Expired,
    /// Right name, valid dates, issued by a second CA that is not in `ca.pem`.
    Untrusted,
    /// Right name, valid dates, self-signed leaf.
    SelfSigned,
    /// CN = host and no subjectAltName at all (clients must not fall back to CN).
    CnOnly,
}

const DAY: Duration = Duration::from_secs(86_400);

/// Validity from `now - before_days` to `now + after_days` (negative: in the past).
fn set_validity(p: &mut CertificateParams, before_days: u64, after_days: i64) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs);
    p.not_before = now - before_days as u32 * DAY;
    p.not_after = if after_days >= 0 {
        now + after_days as u32 * DAY
    } else {
        now - after_days.unsigned_abs() as u32 * DAY
    };
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Install aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "mtastsd tests");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, 365, 3650);
    p
}

pub struct TestCa {
    root: CertifiedIssuer<'static, KeyPair>,
    other: CertifiedIssuer<'static, KeyPair>,
    provider: Arc<CryptoProvider>,
    cache: Mutex<HashMap<(String, CertKind), Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let provider = provider();
        let root = CertifiedIssuer::self_signed(
            ca_params("mtastsd test root CA"),
            KeyPair::generate().expect("CA key"),
        )
        .expect("self-sign CA");
        let other = CertifiedIssuer::self_signed(
            ca_params("mtastsd UNTRUSTED CA"),
            KeyPair::generate().expect("CA key"),
        )
        .expect("self-sign CA");
        TestCa {
            root,
            other,
            provider,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// PEM of the trusted root (the content of `World::ca_file()`).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// PEM of the second, untrusted root that signs `CertKind::Untrusted` leaves.
    pub fn untrusted_root_pem(&self) -> String {
        self.other.pem()
    }

    /// Certificate + key for `host` of the given kind (cached).
    pub fn certified_key(&self, host: &str, kind: CertKind) -> Arc<CertifiedKey> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let key = (host.clone(), kind);
        if let Some(ck) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return ck.clone();
        }
        let ck = Arc::new(self.issue(&host, kind));
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(ck)
            .clone()
    }

    /// Leaf certificate PEM and private key PEM (PKCS#8) for `host`, e.g. to hand
    /// to another server.
    pub fn issue_pem(&self, host: &str, kind: CertKind) -> (String, String) {
        let (cert, key) = self.issue_raw(host, kind);
        (cert.pem(), key.serialize_pem())
    }

    fn issue_raw(&self, host: &str, kind: CertKind) -> (rcgen::Certificate, KeyPair) {
        let leaf_name = match kind {
            CertKind::WrongName => format!("wrong.{host}"),
            _ => host.to_string(),
        };
        let sans = match kind {
            CertKind::CnOnly => Vec::new(),
            _ => vec![leaf_name.clone()],
        };
        let mut p = CertificateParams::new(sans).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf_name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        match kind {
            CertKind::Expired => set_validity(&mut p, 400, -30),
            _ => set_validity(&mut p, 1, 365),
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = match kind {
            CertKind::SelfSigned => {
                p.use_authority_key_identifier_extension = false;
                p.self_signed(&key)
            }
            CertKind::Untrusted => p.signed_by(&key, &self.other),
            _ => p.signed_by(&key, &self.root),
        }
        .expect("sign leaf");
        (cert, key)
    }

    fn issue(&self, host: &str, kind: CertKind) -> CertifiedKey {
        let (cert, key) = self.issue_raw(host, kind);
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        CertifiedKey::from_der(vec![cert.der().clone()], key_der, &self.provider)
            .expect("rustls CertifiedKey")
    }
}
