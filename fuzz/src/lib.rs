//! The mtastsd code under fuzzing, compiled from the main crate's sources, module
//! for module at the same paths (`crate::mta_sts`, `crate::socketmap`, ...), so the
//! files need no change to be built here. All of it is pure (no I/O).

#[path = "../../src/mta_sts/mod.rs"]
pub mod mta_sts;
pub use mta_sts::{mx, policy, record};

#[path = "../../src/socketmap/mod.rs"]
pub mod socketmap;

#[path = "../../src/postfix.rs"]
pub mod postfix;

/// The store's tolerant reader (src/cache/store/salvage.rs).
#[path = "../../src/cache/store/salvage.rs"]
pub mod salvage;

/// The TXT fast path's DNS messages (src/resolver/wire.rs). It names one type of the
/// resolver module, as `super::DnsError`: here the crate root holds a copy with the
/// same variants as `mtastsd::resolver::DnsError`.
#[path = "../../src/resolver/wire.rs"]
pub mod wire;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    NoRecords {
        nxdomain: bool,
        negative_ttl: Option<u32>,
    },
    Failed(String),
}

/// The libtlsrpt datagram parser (src/tlsrpt/datagram.rs).
#[path = "../../src/tlsrpt/datagram.rs"]
pub mod tlsrpt_datagram;
