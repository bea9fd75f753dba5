//! Serving the listeners bound by [`crate::listen`] (SPEC 7.5): the accept loops, the
//! per-connection request loop (SPEC 1.1, 1.4, 1.5), the connection limit (SPEC 7.6:
//! the longest-idle connection makes room), and graceful shutdown (SPEC 7.3).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::answer::Handler;
use crate::listen::{BoundAddr, Listener};
use crate::logging::RateLimit;
use crate::socketmap::connection::{held_back, serve_connection, Conn};

/// Connection limits, fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Why the server stopped accepting without being told to.
#[derive(Debug, thiserror::Error)]
pub enum AcceptEnded {
    #[error("no longer accepting on {addr}: {source}")]
    Listener {
        addr: BoundAddr,
        #[source]
        source: io::Error,
    },
    #[error("no longer accepting: the accept loop panicked")]
    Panicked,
}

/// Accept and serve until `shutdown` turns true, then wait for every connection to
/// finish its request in flight, at most `grace`. An accept loop that ends on its own
/// (its listener broken for good, or a panic) ends them all with an error at once:
/// the process must then exit, so that systemd restarts it, rather than stay up
/// refusing Postfix.
pub async fn run(
    listeners: Vec<Listener>,
    handler: Arc<Handler>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), AcceptEnded> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Connections::new());
    // Every connection task holds a sender; when all are gone, all have finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accepters = tokio::task::JoinSet::new();
    for listener in listeners {
        accepters.spawn(accept_loop(
            listener,
            Arc::clone(&handler),
            limits,
            Arc::clone(&permits),
            Arc::clone(&open),
            shutdown.clone(),
            done_tx.clone(),
        ));
    }
    drop(done_tx);
    while let Some(ended) = accepters.join_next().await {
        let ended = match ended {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => AcceptEnded::Panicked,
        };
        accepters.abort_all();
        return Err(ended);
    }
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        log::warn!("connections still busy after {grace:?}; closing them");
    }
    Ok(())
}

/// Accept errors that will not go away: the listener itself is broken (closed,
/// shut down, not a listening socket).
fn accept_error_is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EOPNOTSUPP | libc::EFAULT)
    )
}

async fn accept_loop(
    listener: Listener,
    handler: Arc<Handler>,
    limits: Limits,
    permits: Arc<Semaphore>,
    open: Arc<Connections>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) -> Result<(), AcceptEnded> {
    let refusals = Arc::new(Refusals::default());
    let accept_errors = RateLimit::new();
    let ended = loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.changed() => break Ok(()),
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) if accept_error_is_fatal(&e) => {
                break Err(AcceptEnded::Listener {
                    addr: listener.local_addr(),
                    source: e,
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and log a few a
                // minute (a local client can cause them, SPEC 7.6).
                if let Some(held) = accept_errors.admit() {
                    log::error!(
                        "accept on {}: {e}{}",
                        listener.local_addr(),
                        held_back(held)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The connection limit (SPEC 7.6): past it, the longest-idle connection is
        // closed to make room, so that idle clients cannot lock Postfix out. When
        // every connection is answering, the newcomer is told so at once and
        // disconnected (see `refuse`) rather than left waiting in the backlog for a
        // slot that may not come within Postfix's 100 s.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if open.close_longest_idle() => {
                refusals.evicted(limits.max_connections);
                None
            }
            Err(_) => {
                refusals.refuse(stream, limits.max_connections);
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        let done = done.clone();
        let permits = Arc::clone(&permits);
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            serve(
                stream,
                permit,
                permits,
                open,
                &handler,
                limits.idle_timeout,
                shutdown,
            )
            .await;
            drop(done);
        });
    };
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    ended
}

/// Serve one accepted client in its slot (`permit`, or the one freed for it), then
/// give the slot back.
async fn serve(
    stream: Stream,
    permit: Option<OwnedSemaphorePermit>,
    permits: Arc<Semaphore>,
    open: Arc<Connections>,
    handler: &Handler,
    idle: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let Some(permit) = wait_for_slot(permit, permits).await else {
        return stream.refuse().await;
    };
    let connections = &crate::metrics::get().connections;
    connections.increment(1.0);
    let this = open.add();
    match stream {
        Stream::Tcp(s) => {
            let _ = s.set_nodelay(true);
            serve_connection(s, handler, idle, shutdown, &this).await
        }
        Stream::Unix(s) => serve_connection(s, handler, idle, shutdown, &this).await,
    }
    open.remove(&this);
    connections.decrement(1.0);
    drop(permit);
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn refuse(self) {
        match self {
            Stream::Tcp(s) => refuse(s).await,
            Stream::Unix(s) => refuse(s).await,
        }
    }
}

/// How long a newcomer waits for the slot of the idle connection closed for it. The
/// closed connection's task ends at its next poll; only a burst of newcomers larger
/// than the number of idle connections can outlast this.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The slot a newcomer may take: `permit` if it had one at once, else the one freed
/// by the idle connection closed for it.
async fn wait_for_slot(
    permit: Option<OwnedSemaphorePermit>,
    permits: Arc<Semaphore>,
) -> Option<OwnedSemaphorePermit> {
    match permit {
        Some(p) => Some(p),
        None => tokio::time::timeout(SLOT_WAIT, permits.acquire_owned())
            .await
            .ok()?
            .ok(),
    }
}

/// The open connections of every listener, for closing the longest-idle one when
/// the limit is reached (SPEC 7.6). Touched once when a connection opens and once
/// when it closes; the per-request cost is the [`Conn`]'s atomic.
struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Connections {
    fn new() -> Connections {
        Connections {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn add(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.epoch,
        ));
        self.open
            .lock()
            .unwrap()
            .insert(conn.id(), Arc::clone(&conn));
        conn
    }

    fn remove(&self, conn: &Conn) {
        self.open.lock().unwrap().remove(&conn.id());
    }

    /// Tell the connection idle for longest to close; `false` when none is idle
    /// (every one is reading or answering a request). A scan of the open
    /// connections, only when the limit is reached.
    fn close_longest_idle(&self) -> bool {
        let open = self.open.lock().unwrap();
        loop {
            let Some((conn, since)) = open
                .values()
                .filter_map(|c| Some((c, c.idle_since()?)))
                .min_by_key(|&(_, t)| t)
            else {
                return false;
            };
            // Lost a race with the connection waking up for a request: look again.
            if conn.close_if_idle_since(since) {
                return true;
            }
        }
    }
}

/// The reply a client past the connection limit gets before it is disconnected.
/// `TEMP` (SPEC 1.3): Postfix defers the lookup and logs the reason, as it would
/// for a daemon that is down, and retries later; never `PERM` (a configuration
/// error) nor a silent close (a vague "lost connection" in Postfix's log).
pub const REFUSAL: &[u8] = b"25:TEMP too many connections,";
/// Refusals being written at once; past it, excess clients are closed without a
/// word. Keeps a connection flood from turning into a task flood.
const MAX_REFUSING: usize = 64;
/// How long a refused client has to take its reply.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Turns away clients past the connection limit, with rate-limited logging.
#[derive(Default)]
struct Refusals {
    /// Refusals in progress.
    busy: Arc<AtomicUsize>,
    /// Refused and idle connections closed since the last log line, and when that was.
    log: Mutex<LimitLog>,
}

#[derive(Default)]
struct LimitLog {
    refused: u64,
    closed: u64,
    last: Option<Instant>,
}

impl Refusals {
    /// SPEC 7.2: one line per client would flood the log in exactly the situation
    /// where it matters; one a minute with the counts.
    fn count(&self, limit: usize, add: impl FnOnce(&mut LimitLog)) {
        let mut log = self.log.lock().unwrap();
        add(&mut log);
        if log
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            log::warn!(
                "connection limit (server.max_connections {limit}) reached: closed {} idle connection(s) to make room, refused {} client(s) with TEMP",
                log.closed,
                log.refused
            );
            *log = LimitLog {
                last: Some(Instant::now()),
                ..LimitLog::default()
            };
        }
    }

    /// An idle connection was closed to make room for a newcomer.
    fn evicted(&self, limit: usize) {
        self.count(limit, |l| l.closed += 1);
    }

    fn refuse(&self, stream: Stream, limit: usize) {
        self.count(limit, |l| l.refused += 1);
        if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            self.busy.fetch_sub(1, Ordering::AcqRel);
            return; // dropped: closed at once
        }
        let busy = Arc::clone(&self.busy);
        tokio::spawn(async move {
            stream.refuse().await;
            busy.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Send [`REFUSAL`], close our side, and read (and discard) what the client sends
/// for a moment: closing with its request unread would make the kernel reset the
/// connection, and a reset can destroy the reply before the client reads it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut left = 16 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left -= n.min(left),
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        Listener::Unix(l, _) | Listener::InheritedUnix(l, _) => {
            l.accept().await.map(|(s, _)| Stream::Unix(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketmap::{netstring, MAX_REQUEST};

    /// The refusal is one well-formed `TEMP` netstring (SPEC 1.1, 1.3).
    #[test]
    fn refusal_is_a_temp_netstring() {
        let frame = netstring::decode_frame(REFUSAL, MAX_REQUEST)
            .unwrap()
            .expect("complete");
        assert_eq!(frame.len, REFUSAL.len());
        assert!(REFUSAL[frame.payload].starts_with(b"TEMP "));
    }
}
