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

/// The resolver's error types (src/resolver/error.rs), at the crate root where
/// `wire.rs` finds them as `super::DnsError`, as in the daemon.
#[path = "../../src/resolver/error.rs"]
mod error;
pub use error::{DnsError, FetchError};

/// The TXT fast path's DNS messages (src/resolver/wire.rs).
#[path = "../../src/resolver/wire.rs"]
pub mod wire;

/// The libtlsrpt datagram parser (src/tlsrpt/datagram.rs).
#[path = "../../src/tlsrpt/datagram.rs"]
pub mod tlsrpt_datagram;
