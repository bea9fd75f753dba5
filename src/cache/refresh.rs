//! Background work: proactive refresh before expiry (SPEC 5.5) and periodic saves
//! (SPEC 5.8). Both stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::store::Store;
use super::PolicyCache;

/// How often the cache is scanned for policies due for refresh.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Refresh every policy whose refresh time has come, forever.
pub async fn refresher(cache: Arc<PolicyCache>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SCAN_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let due = cache.due_for_refresh(cache.now());
        if !due.is_empty() {
            log::debug!("refreshing {} policies before they expire", due.len());
        }
        for domain in due {
            // Shares the background bound with re-checks, so a large cache does not
            // burst at the resolver or at one remote.
            let permit = tokio::select! {
                p = cache.background_permit() => p,
                _ = shutdown.changed() => return,
            };
            drop(cache.join_resolution(&domain, true, Some(permit)));
        }
    }
}

/// Write the cache when it changed: soon after a policy change (coalescing bursts),
/// and at least every `interval` otherwise. The final save on shutdown is the caller's.
pub async fn saver(
    cache: Arc<PolicyCache>,
    store: Arc<Store>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // The first change after a quiet spell is saved within a second; under a stream of
    // changes, saves are at least MIN_SAVE_SPACING apart (each one writes the whole
    // cache).
    let mut last_save = tokio::time::Instant::now() - MIN_SAVE_SPACING;
    loop {
        tokio::select! {
            _ = cache.changed() => {
                let at = (tokio::time::Instant::now() + Duration::from_secs(1))
                    .max(last_save + MIN_SAVE_SPACING);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shutdown.changed() => return,
                }
            }
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        save_if_dirty(&cache, &store).await;
        last_save = tokio::time::Instant::now();
    }
}

/// Shortest time between two saves prompted by policy changes.
pub const MIN_SAVE_SPACING: Duration = Duration::from_secs(10);

/// Save when anything changed since the last save; log failures (the cache itself is
/// unaffected, the next change retries).
pub async fn save_if_dirty(cache: &Arc<PolicyCache>, store: &Arc<Store>) {
    if !cache.take_dirty() {
        return;
    }
    let snapshot = cache.snapshot();
    let store = Arc::clone(store);
    let n = snapshot.len();
    let result = tokio::task::spawn_blocking(move || store.save(&snapshot)).await;
    match result {
        Ok(Ok(())) => {
            crate::metrics::store_save(true);
            log::debug!("saved {n} policies")
        }
        Ok(Err(e)) => {
            crate::metrics::store_save(false);
            // The error's message, then what caused it (its Display leaves that out).
            let cause = std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
            log::error!("{e}{cause}; policies learnt since the last save would be lost on restart");
            cache
                .dirty
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Err(e) => log::error!("cache save task failed: {e}"),
    }
}
