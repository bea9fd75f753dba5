//! The TLS-RPT collector (SPEC 8.1, 8.2): Postfix's libtlsrpt datagrams off a unix
//! datagram socket, counted into an [`Aggregate`] per UTC day of receipt, handed every
//! second to a writer thread that stores them.
//!
//! An edge: it binds a socket and runs two OS threads. They are threads, not tasks on
//! the daemon's runtime, because libtlsrpt sends with `MSG_DONTWAIT` and loses what the
//! kernel's queue cannot take, and that queue holds only `net.unix.max_dgram_qlen` + 1
//! datagrams (11 by default; the .deb raises it, see packaging/sysctl): the receive
//! loop must never wait behind a scheduler, the socketmap's answers or the disk. So it
//! only receives, parses and counts in memory; the writer thread runs the relabel hook
//! (SPEC 8.3) and the sink (the store's `add`), and a slow or failing disk only makes
//! it keep the counts longer.
//!
//! Durability (SPEC 8.2): the counts of the last second are in memory, everything older
//! is the sink's; a `kill -9` loses at most that second. A sink that fails keeps its
//! counts and is retried every second.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::aggregate::{Aggregate, Day};
use super::datagram::{self, Malformed};

/// The receive buffer. Larger than [`datagram::MAX_DATAGRAM`], so that a datagram past
/// that bound is seen whole (and refused by the parser), and one past this buffer is
/// seen as truncated (`MSG_TRUNC` reports its true length).
pub const RECV_BUFFER: usize = 256 * 1024;
/// How often the counts go to the writer thread: what a `kill -9` may lose (SPEC 8.2).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The receive timeout: how soon the receive thread notices a stop.
const STOP_POLL: Duration = Duration::from_millis(100);
/// At most one log line this often about dropped datagrams, and one about a failing
/// sink (SPEC 7.2: no line per event).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Bytes of a dropped datagram quoted in the log (SPEC 7.6: at most 100).
const SAMPLE: usize = 100;
/// Tries of the last hand-over at stop, a second apart, before its counts are given
/// up (and logged as lost).
const LAST_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(
        "{path}: exists and is not a socket; not replacing it (move it away, or set \
         tlsrpt.socket to another path)",
        path = .path.display()
    )]
    NotASocket { path: PathBuf },
    #[error(
        "{path}: another process receives on this socket (a second mtastsd, or \
         another TLS-RPT collector such as tlsrpt-collectd)",
        path = .path.display()
    )]
    InUse { path: PathBuf },
    #[error(
        "cannot bind the TLS-RPT socket {path} (its directory must exist and be \
         writable by mtastsd, see tlsrpt.socket)",
        path = .path.display()
    )]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the TLS-RPT collector")]
    Thread(#[source] io::Error),
}

/// Binds the datagram socket at `path`. A stale socket file (nobody receiving on it,
/// e.g. left by a crash) is replaced; a live one, or a file that is not a socket, is
/// an error: never remove what may be someone else's. The mode, owner and group are
/// the caller's to set (as the socketmap's sockets: `listen`).
pub fn bind(path: &Path) -> Result<UnixDatagram, CollectorError> {
    let bind_error = |source| CollectorError::Bind {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(CollectorError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) => {
            let probe = UnixDatagram::unbound().map_err(bind_error)?;
            if probe.connect(path).is_ok() {
                return Err(CollectorError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    UnixDatagram::bind(path).map_err(bind_error)
}

/// Where the counts go, on the writer thread: the store's `add` (one transaction).
/// An `Err` (its message, source chain included) keeps the counts for the next try.
pub type Sink = Box<dyn FnMut(&Aggregate) -> Result<(), String> + Send>;

/// SPEC 8.3: what mtastsd knows of a domain's policy, applied to the counts before
/// they are stored. Identity when there is nothing to add.
pub type Relabel = Box<dyn Fn(Aggregate) -> Aggregate + Send>;

/// Datagrams received since the start, by what became of them (the metrics
/// `mtastsd_tlsrpt_datagrams_total{result}` count the same, process-wide).
#[derive(Debug, Default)]
pub struct Stats {
    ok: AtomicU64,
    malformed: AtomicU64,
    truncated: AtomicU64,
}

impl Stats {
    /// Parsed and counted.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    /// Dropped: not a libtlsrpt datagram (SPEC 8.1).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
    /// Dropped: larger than [`datagram::MAX_DATAGRAM`], or than [`RECV_BUFFER`].
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }
}

/// A running collector. [`Collector::stop`] (or dropping it) stops it and hands the
/// last counts to the sink.
pub struct Collector {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    receiver: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts receiving on `socket`, bound at `path` (by [`bind`]).
    pub fn start(
        socket: UnixDatagram,
        path: PathBuf,
        relabel: Relabel,
        sink: Sink,
    ) -> Result<Collector, CollectorError> {
        socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(STOP_POLL)))
            .map_err(CollectorError::Thread)?;
        // The socket file is removed at stop only if it is still this one.
        let identity = std::fs::symlink_metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .ok();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("mtastsd-tlsrpt-w".into())
            .spawn(move || {
                crate::sys::lower_priority(crate::sys::BACKGROUND_NICE);
                write_loop(&rx, &relabel, sink)
            })
            .map_err(CollectorError::Thread)?;
        let receive = Receive {
            socket,
            path: path.clone(),
            identity,
            stop: Arc::clone(&stop),
            stats: Arc::clone(&stats),
            tx,
            writer_gone: std::cell::Cell::new(None),
        };
        // If this fails, the sender is dropped with `receive` and the writer ends.
        let receiver = std::thread::Builder::new()
            .name("mtastsd-tlsrpt-r".into())
            .spawn(move || {
                // Below the serving thread: under a flood of datagrams, Postfix's
                // policy lookups are answered first (SPEC 1.5); the kernel queue
                // (net.unix.max_dgram_qlen) holds what arrives meanwhile.
                crate::sys::lower_priority(crate::sys::BACKGROUND_NICE);
                receive.run()
            })
            .map_err(CollectorError::Thread)?;
        Ok(Collector {
            path,
            stop,
            stats,
            receiver: Some(receiver),
            writer: Some(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters, also readable after [`Collector::stop`].
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Stops: removes the socket file (senders then get ENOENT, which Postfix only
    /// logs), counts what the kernel still queues, hands the last counts to the sink
    /// and waits for it. Blocks for up to a tenth of a second plus the last store.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in [self.receiver.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            if thread.join().is_err() {
                log::error!("the TLS-RPT collector stopped on a panic");
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The receive thread's state.
struct Receive {
    socket: UnixDatagram,
    path: PathBuf,
    identity: Option<(u64, u64)>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    tx: mpsc::Sender<Aggregate>,
    /// When the loss of the writer thread was last logged.
    writer_gone: std::cell::Cell<Option<Instant>>,
}

impl Receive {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut counts = Aggregate::new();
        let mut seen = Seen::default();
        let mut dropped = DroppedLog::default();
        let mut last_flush = Instant::now();
        let mut last_error: Option<Instant> = None;
        let mut stopping = false;
        loop {
            if !stopping && self.stop.load(Ordering::Acquire) {
                stopping = true;
                self.remove_socket_file();
            }
            // Stopping: take what is queued, without waiting for more.
            let flags = libc::MSG_TRUNC | if stopping { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the fd is the
            // socket's, open for as long as `self.socket` lives.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
            if let Ok(len) = usize::try_from(n) {
                if seen.is_full() || seen.is_other_day(unix_now()) {
                    self.settle(&mut seen, &mut counts, &mut dropped);
                }
                self.one(&buf, len, &mut seen, &mut dropped);
            } else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if stopping => break,
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    _ => {
                        if last_error.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            log::error!("TLS-RPT socket {}: {e}", self.path.display());
                            last_error = Some(Instant::now());
                        }
                        if stopping {
                            break;
                        }
                        std::thread::sleep(STOP_POLL);
                    }
                }
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.settle(&mut seen, &mut counts, &mut dropped);
                self.flush(&mut counts);
                dropped.log_if_due(false);
                last_flush = Instant::now();
            }
        }
        self.settle(&mut seen, &mut counts, &mut dropped);
        self.flush(&mut counts);
        dropped.log_if_due(true);
    }

    /// One datagram of true length `len` (the first `RECV_BUFFER` bytes in `buf`):
    /// counted among the second's distinct datagrams, parsed at [`Receive::settle`].
    fn one(&self, buf: &[u8], len: usize, seen: &mut Seen, dropped: &mut DroppedLog) {
        if len > buf.len() {
            let e = Malformed::TooLarge(len);
            self.stats.truncated.fetch_add(1, Ordering::Relaxed);
            crate::metrics::get().tlsrpt_truncated.increment(1);
            dropped.note(&e, buf, true, 1);
            return;
        }
        seen.note(Day::from_unix(unix_now()), &buf[..len]);
    }

    /// Parse each distinct datagram once and count it as often as it came.
    fn settle(&self, seen: &mut Seen, counts: &mut Aggregate, dropped: &mut DroppedLog) {
        let metrics = crate::metrics::get();
        let day = seen.day;
        for (bytes, n) in seen.take() {
            match datagram::parse(&bytes) {
                Ok(d) => {
                    counts.add_n(day, d, n);
                    self.stats.ok.fetch_add(n, Ordering::Relaxed);
                    metrics.tlsrpt_ok.increment(n);
                }
                Err(e @ Malformed::TooLarge(_)) => {
                    self.stats.truncated.fetch_add(n, Ordering::Relaxed);
                    metrics.tlsrpt_truncated.increment(n);
                    dropped.note(&e, &bytes, true, n);
                }
                Err(e) => {
                    self.stats.malformed.fetch_add(n, Ordering::Relaxed);
                    metrics.tlsrpt_malformed.increment(n);
                    dropped.note(&e, &bytes, false, n);
                }
            }
        }
    }

    fn flush(&self, counts: &mut Aggregate) {
        if !counts.is_empty() {
            // The writer ends only after this thread (it waits for the channel to
            // close), so the send fails only if the writer died (a panic): say so
            // loudly, once a minute, with what is lost.
            if let Err(lost) = self.tx.send(std::mem::take(counts)) {
                let now = Instant::now();
                let due = self
                    .writer_gone
                    .get()
                    .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
                if due {
                    self.writer_gone.set(Some(now));
                    log::error!(
                        "TLS-RPT: the thread that stores the counts has stopped; {} session(s) of the last second lost; restart mtastsd",
                        sessions(&lost.0)
                    );
                }
            }
        }
    }

    fn remove_socket_file(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && Some((m.dev(), m.ino())) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The distinct datagrams received since the last [`Receive::settle`], by their
/// bytes, with how often each came. Postfix sends the same bytes for every session
/// to a domain that ends the same way (successes carry no addresses), so a busy
/// second is a few distinct datagrams repeated: each is parsed and counted once,
/// which keeps the receive loop ahead of libtlsrpt (SPEC 8.1). Bounded: at
/// [`Seen::MAX_DISTINCT`] datagrams or [`Seen::MAX_BYTES`] it is settled early.
#[derive(Default)]
struct Seen {
    day: Day,
    by_bytes: HashMap<Box<[u8]>, u64>,
    bytes: usize,
}

impl Seen {
    const MAX_DISTINCT: usize = 4096;
    const MAX_BYTES: usize = 8 << 20;

    fn note(&mut self, day: Day, bytes: &[u8]) {
        if self.by_bytes.is_empty() {
            self.day = day;
        }
        if let Some(n) = self.by_bytes.get_mut(bytes) {
            *n += 1;
        } else {
            self.bytes += bytes.len();
            self.by_bytes.insert(bytes.into(), 1);
        }
    }

    fn is_full(&self) -> bool {
        self.by_bytes.len() >= Self::MAX_DISTINCT || self.bytes >= Self::MAX_BYTES
    }

    /// A datagram received at `now` belongs to another UTC day than those held.
    fn is_other_day(&self, now: i64) -> bool {
        !self.by_bytes.is_empty() && Day::from_unix(now) != self.day
    }

    fn take(&mut self) -> HashMap<Box<[u8]>, u64> {
        self.bytes = 0;
        std::mem::take(&mut self.by_bytes)
    }
}

/// SPEC 8.1, 7.6: dropped datagrams, logged at most once a [`LOG_EVERY`] with how many
/// since the last line and the latest one's reason and first bytes.
#[derive(Default)]
struct DroppedLog {
    malformed: u64,
    truncated: u64,
    latest: Option<(String, String)>,
    last_line: Option<Instant>,
}

impl DroppedLog {
    fn note(&mut self, why: &Malformed, bytes: &[u8], truncated: bool, n: u64) {
        if truncated {
            self.truncated += n;
        } else {
            self.malformed += n;
        }
        let sample = bytes[..bytes.len().min(SAMPLE)].escape_ascii().to_string();
        self.latest = Some((why.to_string(), sample));
        self.log_if_due(false);
    }

    /// The line, if there is something to say and the last line is old enough (or
    /// `now`: at stop).
    fn log_if_due(&mut self, now: bool) {
        let Some((why, sample)) = self.latest.take() else {
            return;
        };
        if !now && self.last_line.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.latest = Some((why, sample));
            return;
        }
        log::warn!(
            "TLS-RPT: dropped {} datagram(s) since the last such line ({} malformed, {} \
             too large); the latest: {why}; its first bytes: \"{sample}\"",
            self.malformed + self.truncated,
            self.malformed,
            self.truncated,
        );
        self.malformed = 0;
        self.truncated = 0;
        self.last_line = Some(Instant::now());
    }
}

/// The writer thread: relabels (SPEC 8.3) and stores the counts, keeping them while
/// the sink fails; ends when the receive thread has gone, after a last store.
fn write_loop(rx: &mpsc::Receiver<Aggregate>, relabel: &Relabel, mut sink: Sink) {
    let mut pending = Aggregate::new();
    let mut failing = Failing::default();
    loop {
        let mut closed = false;
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(counts) => take(&mut pending, relabel(counts)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
        }
        // Whatever queued up behind a slow store goes in the same transaction.
        while let Ok(counts) = rx.try_recv() {
            take(&mut pending, relabel(counts));
        }
        if !pending.is_empty() {
            match sink(&pending) {
                Ok(()) => {
                    pending = Aggregate::new();
                    failing.recovered();
                }
                Err(e) => failing.failed(&e, sessions(&pending)),
            }
        }
        if closed {
            break;
        }
    }
    for _ in 1..LAST_TRIES {
        if pending.is_empty() {
            return;
        }
        std::thread::sleep(FLUSH_EVERY);
        match sink(&pending) {
            Ok(()) => return,
            Err(e) => failing.last_error = Some(e),
        }
    }
    if !pending.is_empty() {
        log::error!(
            "TLS-RPT: the counts of {} session(s) could not be stored and are lost: {}",
            sessions(&pending),
            failing.last_error.as_deref().unwrap_or("unknown error")
        );
    }
}

fn take(pending: &mut Aggregate, counts: Aggregate) {
    if pending.is_empty() {
        *pending = counts;
    } else {
        pending.merge(counts);
    }
}

/// Sessions (successful and failed) in `counts`, for log lines.
fn sessions(counts: &Aggregate) -> u64 {
    counts
        .iter()
        .map(|(_, c)| c.successful.saturating_add(c.failed))
        .fold(0, u64::saturating_add)
}

/// A failing sink, logged once a [`LOG_EVERY`].
#[derive(Default)]
struct Failing {
    since: u64,
    last_line: Option<Instant>,
    last_error: Option<String>,
}

impl Failing {
    fn failed(&mut self, e: &str, kept: u64) {
        self.since += 1;
        if self.last_line.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log::error!(
                "TLS-RPT: cannot store the counts ({} failure(s) since the last such line; \
                 {kept} session(s) kept in memory, retried every second): {e}",
                self.since
            );
            self.since = 0;
            self.last_line = Some(Instant::now());
        }
        self.last_error = Some(e.to_owned());
    }

    fn recovered(&mut self) {
        if self.last_error.take().is_some() {
            log::info!("TLS-RPT: the counts are stored again");
            self.since = 0;
        }
    }
}

#[cfg(test)]
mod tests;
