//! One client connection (SPEC 1.1, 1.4, 1.5): frames off the socket, one reply per
//! request, the idle and request timers, and the state the connection limit reads
//! (SPEC 7.6). The accept loop and the limit itself are `server`'s; the answer is
//! the caller's [`Respond`] (the daemon's [`crate::answer::Handler`]), a layer above
//! the protocol.
//!
//! Not pure, unlike the rest of `socketmap`: it reads and writes the socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

use crate::logging::RateLimit;
use crate::socketmap::{netstring, Reply, MAX_REQUEST};

/// What answers a connection's requests: one request frame in, its framed reply
/// appended to `out`.
pub trait Respond {
    fn respond(&self, frame: &[u8], out: &mut BytesMut) -> impl Future<Output = ()>;
}

/// `Conn::idle_since` while the connection is reading or answering a request.
const BUSY: u64 = 0;
/// `Conn::idle_since` once the connection was picked to be closed.
const CLOSING: u64 = u64::MAX;

/// One open connection, as the connection limit sees it (SPEC 7.6).
pub struct Conn {
    id: u64,
    /// When it began waiting for a request, in nanoseconds after
    /// the `epoch` given to [`Conn::new`] plus one; [`BUSY`] or [`CLOSING`] otherwise. One atomic
    /// store per batch of requests on the connection's side.
    idle_since: AtomicU64,
    /// Wakes the connection to close between requests.
    close: Notify,
    epoch: Instant,
}

impl Conn {
    /// A connection numbered `id`, busy until it first waits for a request.
    pub fn new(id: u64, epoch: Instant) -> Conn {
        Conn {
            id,
            idle_since: AtomicU64::new(BUSY),
            close: Notify::new(),
            epoch,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Since when it waits for a request (an opaque instant, only to compare with
    /// other connections'); `None` while it is busy or once picked to close.
    pub fn idle_since(&self) -> Option<u64> {
        let t = self.idle_since.load(Ordering::Relaxed);
        (t != BUSY && t != CLOSING).then_some(t)
    }

    /// Pick it to close, and wake it, if it is still idle since `since`; `false`
    /// when it woke up for a request meanwhile.
    pub fn close_if_idle_since(&self, since: u64) -> bool {
        let picked = self
            .idle_since
            .compare_exchange(since, CLOSING, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if picked {
            self.close.notify_one();
        }
        picked
    }

    /// Between requests since `t` (the connection waits for input).
    fn idle(&self, t: Instant) {
        let ns = t.saturating_duration_since(self.epoch).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(CLOSING - 1).min(CLOSING - 2) + 1;
        // A connection picked to close stays picked.
        let _ = self
            .idle_since
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v != CLOSING).then_some(ns)
            });
    }

    /// Reading or answering a request: not a candidate to close.
    fn busy(&self) {
        let _ = self
            .idle_since
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v != CLOSING).then_some(BUSY)
            });
    }
}

/// A request that has started arriving must be complete within this time. Postfix
/// sends each request in one write; only a stalling client trips it, and it must not
/// hold a connection slot by sending a byte a minute.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies to pipelined requests are written out at the latest when this much has
/// accumulated, so a client that pipelines without reading cannot make us buffer.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// One client connection: any number of requests in sequence, split or batched across
/// reads (SPEC 1.1). Bad framing gets `PERM` and the connection is closed (SPEC 1.4);
/// idle connections are closed after `idle` (SPEC 1.5), and so are clients that stop
/// reading their replies or stall in the middle of a request. Between requests,
/// `conn` says since when it is idle, and may be told to close (SPEC 7.6).
pub async fn serve_connection<S, H: Respond>(
    stream: S,
    handler: &H,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
    conn: &Conn,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *shutdown.borrow_and_update() {
        return;
    }
    // One timer and one shutdown waiter for the whole connection, not one per
    // request: the timer is re-armed only when it fires early (activity since), or
    // when a stalled request brings the deadline forward.
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let stop = shutdown.changed();
    tokio::pin!(stop);
    let closed = conn.close.notified();
    tokio::pin!(closed);
    let mut c = Connection {
        stream,
        input: BytesMut::with_capacity(512),
        output: BytesMut::with_capacity(512),
        idle,
        conn,
    };
    // When the request now in `input` began to arrive.
    let mut request_started: Option<Instant> = None;
    loop {
        let batch = c.answer_buffered(handler).await;
        if batch == Batch::Gone || !c.flush().await {
            return;
        }
        // One clock read per batch of requests. Idle time runs from here, the last
        // thing that happened (a slow answer is not idle).
        let now = Instant::now();
        match batch {
            Batch::Bad => {
                let _ = tokio::time::timeout(idle, c.stream.shutdown()).await;
                return;
            }
            // What follows in `input` is a new request with its own clock.
            Batch::Answered(true) => request_started = None,
            Batch::Answered(false) | Batch::Gone => {}
        }
        // Waiting for a new request: the idle timeout. In the middle of one: also the
        // request timeout, counted from the batch in which its first bytes came (later
        // than those bytes by the time the requests before them took to answer).
        request_started = match (c.input.is_empty(), request_started) {
            (true, _) => None,
            (false, None) => Some(now),
            (false, started) => started,
        };
        let idle_end = later(now, idle);
        let deadline = match request_started {
            None => idle_end,
            Some(t) => later(t, REQUEST_TIMEOUT).min(idle_end),
        };
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        // Idle (SPEC 7.6) from the last thing that happened, or from when the
        // incomplete request began: a client that dribbles bytes is no busier.
        conn.idle(request_started.unwrap_or(now));
        let stalled = request_started.is_some();
        let wait = Wait {
            timer: timer.as_mut(),
            deadline,
            stalled,
        };
        if !c.read_more(wait, stop.as_mut(), closed.as_mut()).await {
            return;
        }
    }
}

/// A connection's socket and buffers.
struct Connection<'c, S> {
    stream: S,
    input: BytesMut,
    output: BytesMut,
    idle: Duration,
    conn: &'c Conn,
}

/// How a batch of buffered requests ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Every complete request answered; `true` when there was one.
    Answered(bool),
    /// Bad framing: `PERM` is queued and the connection closes (SPEC 1.4).
    Bad,
    /// The client is gone, or does not read its replies.
    Gone,
}

/// The timer of a wait between reads.
struct Wait<'t> {
    timer: Pin<&'t mut Sleep>,
    deadline: Instant,
    /// A request is incomplete: the deadline is the request timeout's.
    stalled: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<'_, S> {
    /// Answer every complete request in `input` (pipelining, SPEC 1.1), appending
    /// the replies to `output`.
    async fn answer_buffered<H: Respond>(&mut self, handler: &H) -> Batch {
        let mut answered = false;
        loop {
            match netstring::decode_frame(&self.input, MAX_REQUEST) {
                Ok(Some(frame)) => {
                    handler
                        .respond(&self.input[frame.payload], &mut self.output)
                        .await;
                    self.input.advance(frame.len);
                    answered = true;
                    if self.output.len() >= OUTPUT_HIGH_WATER && !self.flush().await {
                        return Batch::Gone;
                    }
                }
                Ok(None) => return Batch::Answered(answered),
                Err(e) => {
                    crate::logging::refused_request(None, &e);
                    Reply::Perm(e.to_string()).encode(&mut self.output);
                    return Batch::Bad;
                }
            }
        }
    }

    async fn flush(&mut self) -> bool {
        flush(&mut self.stream, &mut self.output, self.idle).await
    }

    /// Wait for more input; `false` when the connection is to close instead: the
    /// client went away, the timer ran out, shutdown, or the connection limit
    /// picked it to make room.
    async fn read_more<T: Future>(
        &mut self,
        mut wait: Wait<'_>,
        mut stop: Pin<&mut T>,
        mut closed: Pin<&mut Notified<'_>>,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.input) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {
                        self.conn.busy();
                        return true;
                    }
                },
                () = wait.timer.as_mut() => {
                    if Instant::now() < wait.deadline {
                        wait.timer.as_mut().reset(wait.deadline);
                        continue;
                    }
                    if wait.stalled {
                        if let Some(held) = STALLED.admit() {
                            log::warn!("closing a connection that left a request incomplete{}", held_back(held));
                        }
                    } else {
                        log::debug!("closing a connection idle for {:?}", self.idle);
                    }
                    return false;
                }
                // SPEC 7.3: between requests, shutdown closes the connection.
                _ = stop.as_mut() => return false,
                // SPEC 7.6: closed to make room for a newcomer at the limit.
                () = closed.as_mut() => {
                    log::debug!("closing an idle connection to make room for a new one");
                    return false;
                }
            }
        }
    }
}

/// Clients closed for stalling (an incomplete request, replies not read): a client
/// can cause these at will, so they are rate-limited (SPEC 7.6).
static STALLED: RateLimit = RateLimit::new();

/// The tail of a rate-limited line: how many like it were held back.
pub(crate) fn held_back(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} more since the last such line)"),
    }
}

/// `t + d`, saturating far in the future (a configured idle timeout may be huge).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(365 * 86_400))
}

/// Write out what is buffered; `false` when the client is gone or does not read
/// within `limit`.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    output: &mut BytesMut,
    limit: Duration,
) -> bool {
    if output.is_empty() {
        return true;
    }
    let mut write = std::pin::pin!(stream.write_all(output));
    // The usual case: the socket takes the replies at once, and no timer is armed.
    let written = match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        Poll::Ready(written) => written,
        Poll::Pending => match tokio::time::timeout(limit, write).await {
            Ok(written) => written,
            Err(_) => {
                if let Some(held) = STALLED.admit() {
                    log::warn!(
                        "closing a connection that does not read its replies{}",
                        held_back(held)
                    );
                }
                return false;
            }
        },
    };
    if written.is_err() {
        return false;
    }
    output.clear();
    true
}
