//! Where to connect or listen: `tcp:HOST:PORT`, `HOST:PORT` or `unix:/PATH`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A socket address as Postfix's socketmap spells it (without the `inet:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `HOST:PORT`, resolved when connecting.
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let addr = s
            .strip_prefix("tcp:")
            .or_else(|| s.strip_prefix("inet:"))
            .unwrap_or(s);
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Target::Tcp(addr.to_string()))
            }
            _ => Err(format!(
                "{s}: expected tcp:HOST:PORT, HOST:PORT or unix:/PATH"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected client or accepted server socket of either kind.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Target {
    /// Connect; TCP with Nagle off, as Postfix's socketmap client and mtastsd do.
    pub async fn connect(&self) -> io::Result<Conn> {
        match self {
            Target::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
            Target::Unix(p) => Ok(Conn::Unix(UnixStream::connect(p).await?)),
        }
    }

    /// Bind (a stale unix socket file is removed first).
    pub async fn listen(&self) -> io::Result<Listener> {
        match self {
            Target::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a.as_str()).await?)),
            Target::Unix(p) => {
                let _ = std::fs::remove_file(p);
                Ok(Listener::Unix(UnixListener::bind(p)?))
            }
        }
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    pub async fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
            Listener::Unix(l) => Ok(Conn::Unix(l.accept().await?.0)),
        }
    }

    /// The bound address, for messages (`127.0.0.1:0` becomes the real port).
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp:{a}"))
                .unwrap_or_else(|_| "tcp:?".into()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        let tcp = |s: &str| Target::Tcp(s.to_string());
        assert_eq!("tcp:127.0.0.1:8461".parse(), Ok(tcp("127.0.0.1:8461")));
        assert_eq!("127.0.0.1:8461".parse(), Ok(tcp("127.0.0.1:8461")));
        assert_eq!("inet:localhost:1".parse(), Ok(tcp("localhost:1")));
        assert_eq!("[::1]:8461".parse(), Ok(tcp("[::1]:8461")));
        assert_eq!(
            "unix:/run/x".parse(),
            Ok(Target::Unix(PathBuf::from("/run/x")))
        );
        for bad in ["", "unix:", "127.0.0.1", ":8461", "host:port", "host:70000"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
