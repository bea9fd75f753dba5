//! One resolution per key at a time (SPEC 3.6), shared by every waiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Removes a domain's in-flight resolution from its owner's table (`table` picks
/// it: the MTA-STS cache's or the DANE cache's) when the resolution task ends, or
/// unwinds, or is cancelled: a domain never stays joined to a dead resolution.
pub(crate) struct InflightGuard<T, V> {
    pub(crate) owner: Arc<T>,
    pub(crate) table: fn(&T) -> &Mutex<HashMap<String, V>>,
    pub(crate) domain: String,
}

impl<T, V> Drop for InflightGuard<T, V> {
    fn drop(&mut self) {
        if let Ok(mut inflight) = (self.table)(&self.owner).lock() {
            inflight.remove(&self.domain);
        }
    }
}
