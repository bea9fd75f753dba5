//! Logs to stderr or to the local syslog, facility mail, ident mtastsd (SPEC 7.2).
//!
//! Small on purpose: the `syslog` crate does not reconnect after the syslog daemon
//! restarts, so this writes RFC 3164 datagrams to `/dev/log` itself and reconnects on
//! the first failed send, falling back to stderr rather than losing the line.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogTarget;

const SYSLOG_SOCKET: &str = "/dev/log";
/// RFC 5424 facility 2, "mail system".
const FACILITY_MAIL: u8 = 2;

struct Logger {
    sink: Mutex<Option<Syslog>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Install the logger (first call) or switch its target and level (SIGHUP).
pub fn init(target: LogTarget, level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(None),
    });
    // Fails only when already installed, which is the reload case.
    let _ = log::set_logger(logger);
    *logger.sink.lock().unwrap() = match target {
        LogTarget::Stderr => None,
        LogTarget::Syslog => Some(Syslog::new(Path::new(SYSLOG_SOCKET))),
    };
    log::set_max_level(level);
}

/// A connection to a local syslog socket that survives the daemon behind it
/// restarting.
pub struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        let mut s = Syslog {
            path: path.to_path_buf(),
            sock: None,
        };
        s.connect();
        s
    }

    fn connect(&mut self) {
        self.sock = UnixDatagram::unbound()
            .and_then(|s| s.connect(&self.path).map(|()| s))
            .ok();
    }

    /// Send one line; on failure reconnect once and retry. `false` when the line
    /// could not be delivered (the caller writes it to stderr instead).
    pub fn send(&mut self, level: Level, line: &str) -> bool {
        let msg = format!(
            "<{}>mtastsd[{}]: {}",
            FACILITY_MAIL * 8 + severity(level),
            std::process::id(),
            line
        );
        for attempt in 0..2 {
            if let Some(s) = &self.sock {
                if s.send(msg.as_bytes()).is_ok() {
                    return true;
                }
            }
            if attempt == 0 {
                // The syslog daemon restarted (or was not there): reconnect once.
                self.connect();
            }
        }
        false
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
            if syslog.send(record.level(), &line) {
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
        assert!(syslog.send(Level::Warn, "warning: example.com: fetch failed"));
        let pid = std::process::id();
        // mail (2) * 8 + warning (4) = 20
        assert_eq!(
            recv(&server),
            format!("<20>mtastsd[{pid}]: warning: example.com: fetch failed")
        );
        assert!(syslog.send(Level::Info, "x"));
        assert!(recv(&server).starts_with("<22>mtastsd["));
    }

    #[test]
    fn syslog_reconnects_after_the_daemon_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::new(&path);
        assert!(syslog.send(Level::Info, "before"));
        assert!(recv(&server).ends_with("before"));
        // The syslog daemon goes away and comes back with a new socket.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        assert!(
            !syslog.send(Level::Info, "while down"),
            "reported, so it goes to stderr"
        );
        let server = UnixDatagram::bind(&path).unwrap();
        assert!(syslog.send(Level::Info, "after"));
        assert!(recv(&server).ends_with("after"));
    }
}
