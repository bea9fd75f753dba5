//! A cache shared by several mtastsd nodes (issue 4): each node keeps its own
//! in-process cache and persisted store in front, and uses the shared one to learn
//! what another node already resolved and to avoid refreshing a domain N times.
//!
//! The shared cache is an optimisation, never a dependency: every call is bounded by a
//! timeout, and a failing shared cache leaves each node working as if alone.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::CachedPolicy;

/// What one domain's shared record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SharedEntry {
    /// A policy, with the time its TXT id was last confirmed.
    Policy {
        #[serde(flatten)]
        policy: CachedPolicy,
        checked: u64,
    },
    /// The domain publishes no policy, as of `checked`; valid until `until`.
    Negative { checked: u64, until: u64 },
}

/// A shared-cache operation failed (down, slow, refused). Always temporary.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared cache: {0}")]
pub struct SharedError(pub String);

/// The shared cache. Implementations bound each call by their own timeout.
pub trait SharedCache: Send + Sync + 'static {
    /// The shared record of a domain, if any.
    fn get<'a>(
        &'a self,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<SharedEntry>, SharedError>>;

    /// Publish a domain's record; it may expire from the shared cache after `ttl`.
    fn put<'a>(
        &'a self,
        domain: &'a str,
        entry: &'a SharedEntry,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedError>>;

    /// Try to take the right to resolve `domain` for `ttl` (`SET NX PX`): `true` when
    /// this node holds it and should do the work, `false` when another node does.
    fn lease<'a>(
        &'a self,
        domain: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SharedError>>;

    /// Give back this node's lease on `domain` (and only this node's: another node
    /// may hold it if ours lapsed).
    fn release<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<(), SharedError>>;
}
