//! Background work: proactive refresh before expiry (SPEC 5.5) and periodic saves
//! (SPEC 5.8). Both stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::store::Store;
use super::PolicyCache;

/// How often the cache is scanned for policies due for refresh.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(30);
/// Refreshes running at once, so a large cache does not burst at one remote.
pub const REFRESH_CONCURRENCY: usize = 16;

/// Refresh every policy whose refresh time has come, forever.
pub async fn refresher(cache: Arc<PolicyCache>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(REFRESH_CONCURRENCY));
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
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => p.expect("semaphore is never closed"),
                _ = shutdown.changed() => return,
            };
            let resolution = cache.resolve_shared(&domain, true);
            tokio::spawn(async move {
                resolution.await;
                drop(permit);
            });
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
    loop {
        tokio::select! {
            _ = cache.changed() => {
                // Let a burst of changes settle into one write.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        save_if_dirty(&cache, &store).await;
    }
}

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
        Ok(Ok(())) => log::debug!("saved {n} policies"),
        Ok(Err(e)) => {
            log::error!("{e}; policies learnt since the last save would be lost on restart");
            cache
                .dirty
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Err(e) => log::error!("cache save task failed: {e}"),
    }
}
