//! A redis-server of the test's own (SPEC 5.10, 8.2 clusters): found on PATH, skipped
//! with a message when absent, a failure under CI=true.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// The redis-server binary, or `None` (after saying so) when the test must be skipped.
pub fn redis_server_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_redis_server();
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("redis-server not found but CI=true: .ci/run must install redis-server");
        }
        eprintln!("SKIPPED {test}: redis-server is not installed");
    }
    found
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One redis-server of our own, killed when dropped.
pub struct Redis {
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(bin: &Path) -> Redis {
        Self::start_on(bin, free_port()).await
    }

    /// Start on this port (one a test saw refused while nothing listened).
    pub async fn start_on(bin: &Path, port: u16) -> Redis {
        let mut redis = Redis {
            bin: bin.to_path_buf(),
            port,
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// Start (again) on the same port, and wait until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections (the kernel does) but
    /// answers nothing, like one stuck on a slow command or swapping.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    pub async fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A raw connection, to put in Redis what mtastsd would not.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Redis {
    /// What mtastsd would never write, written anyway: one command.
    pub async fn command(&self, args: &[&str]) {
        let mut conn = self.raw().await;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async::<redis::Value>(&mut conn).await.unwrap();
    }
}
