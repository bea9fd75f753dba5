//! The real `mtastsd serve` binary as a child process, pointed at a [`World`]: for
//! what an in-process daemon cannot show (its own RSS and file descriptors,
//! `kill -9`, SIGTERM, more sockets than one process may hold).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::support::World;

/// A configuration file's text for the world: its DNS server, CA and HTTPS port,
/// an ephemeral listener, the cache in `state_dir`; `extra` is appended (TOML keys
/// for `[server]` first, then any further sections).
pub fn config_text(world: &World, state_dir: &Path, server_extra: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server_extra}\n\
         [dns]\nnameservers = [\"{dns}\"]\ntimeout = \"1s\"\n\
         [fetch]\nca_file = \"{ca}\"\nhttps_port = {port}\ntimeout = \"2s\"\n\
         [cache]\nstate_dir = \"{state}\"\n\
         [log]\nlevel = \"debug\"\n{extra}",
        dns = world.dns_addr(),
        ca = world.ca_file().display(),
        port = world.https_port(),
        state = state_dir.display(),
    )
}

/// Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// A running `mtastsd serve`.
pub struct Daemon {
    child: tokio::process::Child,
    pid: u32,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    lines: watch::Receiver<usize>,
}

impl Daemon {
    /// Start with the configuration file `config` and wait until it listens.
    pub async fn spawn(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mtastsd"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mtastsd");
        let pid = child.id().expect("pid");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = watch::channel(0usize);
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        // Drains stderr for the child's whole life, so logging never blocks it.
        tokio::spawn(async move {
            let mut rd = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                let n = {
                    let mut log = sink.lock().unwrap();
                    log.push(line);
                    log.len()
                };
                let _ = tx.send(n);
            }
        });
        let mut d = Daemon {
            child,
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            lines,
        };
        let line = d
            .wait_for_log(|l| l.contains(" listening on "), Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("mtastsd did not start: {:?}", d.log()));
        let addr = line.rsplit(" listening on ").next().unwrap();
        d.addr = addr
            .split(", ")
            .next()
            .unwrap()
            .parse()
            .expect("listen address");
        d
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line (from the start) matching `pred`, waiting up to `within`.
    pub async fn wait_for_log(
        &mut self,
        pred: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Option<String> {
        self.wait_for_log_from(0, pred, within).await
    }

    /// Lines logged so far (an index for [`Self::wait_for_log_from`]).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The first line at index `from` or later matching `pred`.
    pub async fn wait_for_log_from(
        &mut self,
        from: usize,
        pred: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().skip(from).find(|l| pred(l)) {
                return Some(l.clone());
            }
            match tokio::time::timeout_at(deadline, self.lines.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or stderr closed (the process is gone): one last look.
                _ => {
                    return self
                        .log
                        .lock()
                        .unwrap()
                        .iter()
                        .skip(from)
                        .find(|l| pred(l))
                        .cloned()
                }
            }
        }
    }

    /// Resident memory, KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        proc_status(self.pid, "VmRSS:")
    }

    /// Peak resident memory, KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status(self.pid, "VmHWM:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to our own child, by pid.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid);
    }

    /// Wait for the process to end, at most `within`.
    pub async fn wait(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("mtastsd exits in time")
            .expect("wait")
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
