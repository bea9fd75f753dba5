//! Logs to stderr or to the local syslog, facility mail, ident mtastsd (SPEC 7.2).
//!
//! Small on purpose: the `syslog` crate does not reconnect after the syslog daemon
//! restarts, so this writes RFC 3164 datagrams to `/dev/log` itself and reconnects on
//! the first failed send, falling back to stderr rather than losing the line.
//!
//! SPEC 7.6: no log call blocks. The syslog socket is non-blocking: when it is full
//! (a stalled journal), the line is dropped and counted, and the count is logged once
//! lines flow again. Lines a client can cause at will (refused requests) go through
//! [`RateLimit`] and quote what was sent with [`quote`].

use std::fmt::Display;
use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Where log lines go (`[log] target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Local syslog (`/dev/log`), facility mail, ident mtastsd (SPEC 7.2).
    Syslog,
}

const SYSLOG_SOCKET: &str = "/dev/log";
/// RFC 5424 facility 2, "mail system".
const FACILITY_MAIL: u8 = 2;

struct Logger {
    sink: Mutex<Option<Syslog>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// An error and its sources, `: `-separated, for `main`'s message and the log
/// (STYLE: a `Display` never repeats its source, so the chain is printed whole,
/// once). A source whose text the message already ends with is not repeated: some
/// errors from other crates do put their source in their own message.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// Install the logger (first call) or switch its target and level (SIGHUP).
pub fn init(target: LogTarget, level: LevelFilter) {
    init_at(target, level, Path::new(SYSLOG_SOCKET));
}

/// [`init`] with the syslog socket at `syslog` instead of `/dev/log`.
pub fn init_at(target: LogTarget, level: LevelFilter, syslog: &Path) {
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(None),
    });
    // Fails only when already installed, which is the reload case.
    let _ = log::set_logger(logger);
    *logger.sink.lock().unwrap() = match target {
        LogTarget::Stderr => None,
        LogTarget::Syslog => Some(Syslog::new(syslog)),
    };
    log::set_max_level(level);
}

/// What became of a line handed to [`Syslog::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The socket is full (the syslog daemon does not keep up): dropped and counted.
    Dropped,
    /// No syslog socket to send to: the caller writes the line to stderr instead.
    Failed,
}

/// A connection to a local syslog socket that survives the daemon behind it
/// restarting, and never blocks (SPEC 7.6).
pub struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
    /// Lines dropped on a full socket since the last one delivered.
    dropped: u64,
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        let mut s = Syslog {
            path: path.to_path_buf(),
            sock: None,
            dropped: 0,
        };
        s.connect();
        s
    }

    fn connect(&mut self) {
        self.sock = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| s.connect(&self.path).map(|()| s))
            .ok();
    }

    /// Send one line; on failure reconnect once and retry. A full socket drops the
    /// line (counted, and reported with the next line that gets through).
    pub fn send(&mut self, level: Level, line: &str) -> Sent {
        if self.dropped > 0 {
            let n = self.dropped;
            let notice = format!(
                "warning: {n} log line(s) dropped: the syslog socket {} was full",
                self.path.display()
            );
            match self.send_one(Level::Warn, &notice) {
                Sent::Delivered => self.dropped -= n,
                other => return self.count(other),
            }
        }
        let sent = self.send_one(level, line);
        self.count(sent)
    }

    fn count(&mut self, sent: Sent) -> Sent {
        if sent == Sent::Dropped {
            self.dropped += 1;
            crate::metrics::log_lines_dropped();
        }
        sent
    }

    fn send_one(&mut self, level: Level, line: &str) -> Sent {
        let msg = format!(
            "<{}>mtastsd[{}]: {}",
            FACILITY_MAIL * 8 + severity(level),
            std::process::id(),
            line
        );
        for attempt in 0..2 {
            if let Some(s) = &self.sock {
                match s.send(msg.as_bytes()) {
                    Ok(_) => return Sent::Delivered,
                    // Full: the syslog daemon is there but does not keep up.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Sent::Dropped,
                    Err(_) => {}
                }
            }
            if attempt == 0 {
                // The syslog daemon restarted (or was not there): reconnect once.
                self.connect();
            }
        }
        Sent::Failed
    }
}

/// Lines a minute that [`RateLimit::admit`] lets through.
const LINES_PER_MINUTE: u32 = 5;

/// At most [`LINES_PER_MINUTE`] lines of one kind a minute (SPEC 7.6); the ones held
/// back are counted and the count goes with the next line let through.
pub struct RateLimit(Mutex<Window>);

struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit(Mutex::new(Window {
            start: None,
            logged: 0,
            suppressed: 0,
        }))
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back
    /// since the last one; `None` to hold this one back.
    pub fn admit(&self) -> Option<u64> {
        let mut w = self.0.lock().unwrap();
        let now = Instant::now();
        if w.start
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged >= LINES_PER_MINUTE {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::new()
    }
}

/// How much of what a client sent a log line quotes (SPEC 7.6).
pub const QUOTE_MAX: usize = 100;

/// `bytes` for a log line: at most [`QUOTE_MAX`] bytes, in double quotes, with
/// control characters, quotes, backslashes and non-ASCII bytes escaped (`\n`,
/// `\x1b`), so that nothing sent can start a line of its own or drive a terminal;
/// the total length follows when it was cut.
pub fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTE_MAX)];
    let mut s = format!("\"{}\"", shown.escape_ascii());
    if shown.len() < bytes.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// Refused requests (SPEC 1.3, 1.4): one limit for all connections.
static REFUSED: RateLimit = RateLimit::new();

/// Log a refused request, rate-limited, quoting what was sent (SPEC 7.6).
pub fn refused_request(request: Option<&[u8]>, why: &dyn Display) {
    let Some(held) = REFUSED.admit() else {
        return;
    };
    let held = match held {
        0 => String::new(),
        n => format!(" ({n} more refused since the last such line)"),
    };
    match request {
        Some(r) => log::warn!("refused request {}: {why}{held}", quote(r)),
        None => log::warn!("refused request: {why}; closing the connection{held}"),
    }
}

/// Postfix-style prefixes: information is bare, problems say what they are.
fn prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug | Level::Trace => "debug: ",
    }
}

fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Keep other crates (hyper, rustls, hickory) out unless they warn.
        if !record.target().starts_with("mtastsd") && record.level() > Level::Warn {
            return;
        }
        let line = format!("{}{}", prefix(record.level()), record.args());
        if let Some(syslog) = self.sink.lock().unwrap().as_mut() {
            if syslog.send(record.level(), &line) != Sent::Failed {
                return;
            }
        }
        let _ = writeln!(std::io::stderr().lock(), "mtastsd: {line}");
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(server: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn syslog_lines_carry_facility_mail_and_ident_spec_7_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::new(&path);
        assert_eq!(
            syslog.send(Level::Warn, "warning: example.com: fetch failed"),
            Sent::Delivered
        );
        let pid = std::process::id();
        // mail (2) * 8 + warning (4) = 20
        assert_eq!(
            recv(&server),
            format!("<20>mtastsd[{pid}]: warning: example.com: fetch failed")
        );
        assert_eq!(syslog.send(Level::Info, "x"), Sent::Delivered);
        assert!(recv(&server).starts_with("<22>mtastsd["));
    }

    #[test]
    fn syslog_reconnects_after_the_daemon_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::new(&path);
        assert_eq!(syslog.send(Level::Info, "before"), Sent::Delivered);
        assert!(recv(&server).ends_with("before"));
        // The syslog daemon goes away and comes back with a new socket.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            syslog.send(Level::Info, "while down"),
            Sent::Failed,
            "reported, so it goes to stderr"
        );
        let server = UnixDatagram::bind(&path).unwrap();
        assert_eq!(syslog.send(Level::Info, "after"), Sent::Delivered);
        assert!(recv(&server).ends_with("after"));
    }

    /// SPEC 7.6: a syslog socket that nobody reads never blocks a send; the lines
    /// it cannot take are dropped and counted, and the count is reported once the
    /// socket takes lines again.
    #[test]
    fn a_stalled_syslog_drops_and_counts_instead_of_blocking_spec_7_6() {
        const LINES: usize = 10_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sender_path = path.clone();
        // On a thread of its own: a send that blocks would hang it, not the test.
        std::thread::spawn(move || {
            let mut syslog = Syslog::new(&sender_path);
            let sent: Vec<Sent> = (0..LINES)
                .map(|i| syslog.send(Level::Info, &format!("line {i}")))
                .collect();
            let _ = tx.send((sent, syslog));
        });
        let (sent, mut syslog) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("10 000 sends to a socket nobody reads return");
        let dropped = sent.iter().filter(|&&s| s == Sent::Dropped).count();
        assert!(dropped > 0, "the socket never filled up");
        assert!(
            sent.iter().all(|&s| s != Sent::Failed),
            "not sent to stderr"
        );
        // The syslog daemon catches up: the queue is read empty.
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        while server.recv(&mut buf).is_ok() {}
        assert_eq!(syslog.send(Level::Info, "flowing again"), Sent::Delivered);
        let pid = std::process::id();
        assert_eq!(
            recv(&server),
            format!(
                "<20>mtastsd[{pid}]: warning: {dropped} log line(s) dropped: the syslog socket {} was full",
                path.display()
            )
        );
        assert!(recv(&server).ends_with("flowing again"));
    }

    #[test]
    fn quote_keeps_100_bytes_and_escapes_controls_spec_7_6() {
        assert_eq!(quote(b"postfix example.com"), "\"postfix example.com\"");
        assert_eq!(
            quote(b"a\x1b[2J\r\nmtastsd: x\"\\\xff"),
            "\"a\\x1b[2J\\r\\nmtastsd: x\\\"\\\\\\xff\""
        );
        let long = vec![b'a'; 10_000];
        let q = quote(&long);
        assert_eq!(q, format!("\"{}\"... (10000 bytes)", "a".repeat(100)));
    }

    #[test]
    fn the_rate_limit_lets_five_lines_a_minute_through_and_counts_the_rest() {
        let limit = RateLimit::new();
        for _ in 0..LINES_PER_MINUTE {
            assert_eq!(limit.admit(), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(limit.admit(), None);
        }
        // A minute later (the window moved back by hand): the count comes along.
        limit.0.lock().unwrap().start = Some(Instant::now() - Duration::from_secs(61));
        assert_eq!(limit.admit(), Some(1000));
        assert_eq!(limit.admit(), Some(0));
    }
}
