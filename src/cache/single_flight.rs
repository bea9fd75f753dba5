//! One resolution per key at a time, shared by every waiter (SPEC 3.6), for the
//! MTA-STS cache and the DANE cache alike.
//!
//! Each piece of work runs as a task of its own (on the runtime given to
//! [`SingleFlight::run_on`], else the caller's), so it completes and stores its
//! result even if every waiter goes away; a waiter holds an [`InFlight`] future
//! that any number of others may clone and await.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinError;

/// The work running for one key, as every waiter awaits it.
pub type InFlight<T> = Shared<BoxFuture<'static, T>>;

type Running<T> = Arc<Mutex<HashMap<String, InFlight<T>>>>;

pub(crate) struct SingleFlight<T> {
    running: Running<T>,
    /// Where the work runs, when not on the caller's runtime: the daemon's resolver
    /// threads, so that DNS and TLS work never queues cached answers behind it.
    runtime: OnceLock<tokio::runtime::Handle>,
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    pub(crate) fn new() -> SingleFlight<T> {
        SingleFlight {
            running: Arc::new(Mutex::new(HashMap::new())),
            runtime: OnceLock::new(),
        }
    }

    /// Run every piece of work on `runtime` from now on. Set once; later calls
    /// change nothing.
    pub(crate) fn run_on(&self, runtime: tokio::runtime::Handle) {
        let _ = self.runtime.set(runtime);
    }

    /// Keys with work running now.
    pub(crate) fn len(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// Join the work running for `key`, or start `work()` as a task of its own.
    /// `died` turns a task that panicked or was cancelled into a result for its
    /// waiters.
    pub(crate) fn join_or_start<F>(
        &self,
        key: &str,
        work: impl FnOnce() -> F,
        died: fn(JoinError) -> T,
    ) -> InFlight<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        // Held until the new work is in the table: the task removes it only after.
        let mut running = self.running.lock().unwrap();
        if let Some(work) = running.get(key) {
            return work.clone();
        }
        let work = work();
        let table = Arc::clone(&self.running);
        let owned = key.to_string();
        let task = async move {
            // Made when the task first runs (not here, under the table's lock), and
            // dropped however it ends, a panic or a cancellation included: a key is
            // never left joined to dead work.
            let _done = Done { table, key: owned };
            work.await
        };
        let task = match self.runtime.get() {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        };
        let shared = async move { task.await.unwrap_or_else(died) }
            .boxed()
            .shared();
        running.insert(key.to_string(), shared.clone());
        shared
    }
}

/// Removes a key's work from the table when the task that does it ends.
struct Done<T> {
    table: Running<T>,
    key: String,
}

impl<T> Drop for Done<T> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.table.lock() {
            running.remove(&self.key);
        }
    }
}
