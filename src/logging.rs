//! Logs to stderr or to the local syslog, facility mail, ident mtastsd (SPEC 7.2).
//!
//! Small on purpose: the `syslog` crate does not reconnect after the syslog daemon
//! restarts, so this writes RFC 3164 datagrams to `/dev/log` itself and reconnects on
//! the first failed send, falling back to stderr rather than losing the line.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogTarget;

const SYSLOG_SOCKET: &str = "/dev/log";
/// RFC 5424 facility 2, "mail system".
const FACILITY_MAIL: u8 = 2;

struct Logger {
    target: Mutex<Sink>,
}

enum Sink {
    Stderr,
    Syslog(Option<UnixDatagram>),
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Install the logger (first call) or switch its target and level (SIGHUP).
pub fn init(target: LogTarget, level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| Logger {
        target: Mutex::new(Sink::Stderr),
    });
    // Fails only when already installed, which is the reload case.
    let _ = log::set_logger(logger);
    *logger.target.lock().unwrap() = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::Syslog => Sink::Syslog(connect()),
    };
    log::set_max_level(level);
}

fn connect() -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.connect(Path::new(SYSLOG_SOCKET)).ok()?;
    Some(sock)
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
        // Keep other crates (hyper, rustls, hickory) out unless debugging.
        if !record.target().starts_with("mtastsd") && record.level() > Level::Warn {
            return;
        }
        let line = format!("{}{}", prefix(record.level()), record.args());
        let mut sink = self.target.lock().unwrap();
        if let Sink::Syslog(sock) = &mut *sink {
            let msg = format!(
                "<{}>mtastsd[{}]: {}",
                FACILITY_MAIL * 8 + severity(record.level()),
                std::process::id(),
                line
            );
            for _ in 0..2 {
                if let Some(s) = sock.as_ref() {
                    if s.send(msg.as_bytes()).is_ok() {
                        return;
                    }
                }
                // The syslog daemon restarted (or was not there): reconnect once.
                *sock = connect();
            }
        }
        let _ = writeln!(std::io::stderr().lock(), "mtastsd: {line}");
    }

    fn flush(&self) {}
}
