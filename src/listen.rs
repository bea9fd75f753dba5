//! Where the socketmap listeners come from (SPEC 7.5): either handed over by
//! systemd socket activation (`sd_listen_fds(3)`, a `mtastsd.socket` unit), which
//! then replaces `[server] listen`; or bound from `[server] listen`, with unix
//! sockets given their configured mode, owner and group. All binding is here
//! ([`Listener`], [`BoundAddr`], [`Listener::bind`]); `server` only accepts.
//!
//! This is an edge: it binds sockets, and reads the account database and the
//! process environment.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::config::{ListenAddr, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error(
        "cannot give unix socket {path} to {what}: {source} \
         (the daemon must run as root to change the owner, and be a member of the group \
         to change the group, or the socket's directory must be set-group-ID to that group; \
         see server.unix_owner and server.unix_group)"
    )]
    Chown {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    #[error("server.{key}: no {kind} named {name:?} on this system")]
    NoSuchAccount {
        key: &'static str,
        kind: &'static str,
        name: String,
    },
    #[error("socket activation: file descriptor {fd} is {what}; the .socket unit must use ListenStream=")]
    Inherited { fd: RawFd, what: String },
    #[error("socket activation: {0}")]
    Activation(io::Error),
}

/// The listeners to serve on. Socket activation wins when systemd passed sockets
/// to this process; `[server] listen` is then ignored (and logged).
pub fn open(config: &ServerConfig) -> Result<Vec<Listener>, ListenError> {
    let inherited = inherited()?;
    if !inherited.is_empty() {
        log::info!(
            "socket activation: serving {} socket(s) passed by systemd; [server] listen is not used",
            inherited.len()
        );
        return Ok(inherited);
    }
    let (owner, group) = accounts(config)?;
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let listener =
            Listener::bind(addr, config.unix_mode).map_err(|source| ListenError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        if let ListenAddr::Unix(path) = addr {
            if owner.is_some() || group.is_some() {
                give(path, owner, group)?;
            }
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A user or group as configured and as looked up: (name, id).
type Account<'a> = Option<(&'a str, u32)>;

/// `[server] unix_owner` and `unix_group`, looked up.
fn accounts(config: &ServerConfig) -> Result<(Account<'_>, Account<'_>), ListenError> {
    let owner = config
        .unix_owner
        .as_deref()
        .map(|name| lookup_user(name).map(|uid| (name, uid)))
        .transpose()?;
    let group = config
        .unix_group
        .as_deref()
        .map(|name| lookup_group(name).map(|gid| (name, gid)))
        .transpose()?;
    Ok((owner, group))
}

/// Gives a unix socket bound elsewhere (the TLS-RPT collector's, SPEC 8.1) the
/// `[server] unix_mode`, `unix_owner` and `unix_group` of the socketmap's sockets,
/// so that the same Postfix set-up reaches both.
pub fn set_unix_access(path: &Path, config: &ServerConfig) -> Result<(), ListenError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.unix_mode)).map_err(
        |source| ListenError::Bind {
            addr: format!("unix:{}", path.display()),
            source,
        },
    )?;
    let (owner, group) = accounts(config)?;
    give(path, owner, group)
}

fn give(
    path: &Path,
    owner: Option<(&str, u32)>,
    group: Option<(&str, u32)>,
) -> Result<(), ListenError> {
    let what = match (owner, group) {
        (Some((u, _)), Some((g, _))) => format!("{u}:{g}"),
        (Some((u, _)), None) => format!("user {u}"),
        (None, Some((g, _))) => format!("group {g}"),
        (None, None) => return Ok(()),
    };
    // A socket made in a set-group-ID directory already has the directory's group
    // (contrib/systemd/chroot.conf): a chown that would change nothing is not
    // made, since the packaged unit's SystemCallFilter=~@privileged (which holds
    // @chown) fails every chown(2), even that one.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::MetadataExt;
        if owner.is_none_or(|(_, uid)| meta.uid() == uid)
            && group.is_none_or(|(_, gid)| meta.gid() == gid)
        {
            return Ok(());
        }
    }
    std::os::unix::fs::chown(path, owner.map(|o| o.1), group.map(|g| g.1)).map_err(|source| {
        // A socket we cannot hand over is useless to the client it was meant for.
        let _ = std::fs::remove_file(path);
        ListenError::Chown {
            path: path.to_owned(),
            what,
            source,
        }
    })
}

fn lookup_user(name: &str) -> Result<u32, ListenError> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(uid);
    }
    lookup(name, |c, buf| {
        // SAFETY: every pointer is valid for the call; getpwnam_r writes only into
        // `pwd` and `buf` (of the length given) and sets `result`.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwnam_r(c, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
            (rc, (!result.is_null()).then_some(pwd.pw_uid))
        }
    })
    .ok_or_else(|| ListenError::NoSuchAccount {
        key: "unix_owner",
        kind: "user",
        name: name.to_owned(),
    })
}

fn lookup_group(name: &str) -> Result<u32, ListenError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    lookup(name, |c, buf| {
        // SAFETY: as in lookup_user, for getgrnam_r.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrnam_r(c, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result);
            (rc, (!result.is_null()).then_some(grp.gr_gid))
        }
    })
    .ok_or_else(|| ListenError::NoSuchAccount {
        key: "unix_group",
        kind: "group",
        name: name.to_owned(),
    })
}

/// Runs a `get*nam_r` call, growing its buffer on ERANGE.
fn lookup(
    name: &str,
    call: impl Fn(*const libc::c_char, &mut Vec<libc::c_char>) -> (libc::c_int, Option<u32>),
) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        match call(c.as_ptr(), &mut buf) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            (0, id) => return id,
            _ => return None,
        }
    }
}

/// The sockets systemd passed to this process (`LISTEN_FDS`, checked against
/// `LISTEN_PID`), as listeners. Empty when not socket-activated.
fn inherited() -> Result<Vec<Listener>, ListenError> {
    let fds = sd_notify::listen_fds().map_err(ListenError::Activation)?;
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        listeners.push(adopt(fd)?);
    }
    Ok(listeners)
}

fn adopt(fd: RawFd) -> Result<Listener, ListenError> {
    let bad = |what: &str| ListenError::Inherited {
        fd,
        what: what.to_owned(),
    };
    if sockopt(fd, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return Err(bad("not a stream socket"));
    }
    if sockopt(fd, libc::SO_ACCEPTCONN) != Some(1) {
        return Err(bad("not a listening socket"));
    }
    // SAFETY: sockaddr_storage is plain data; getsockname writes at most `len` bytes.
    let family = unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return Err(bad("not a socket"));
        }
        libc::c_int::from(addr.ss_family)
    };
    // sd_listen_fds(3) marks the descriptors close-on-exec; so do we.
    // SAFETY: fcntl on a descriptor we were given; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let io_err = ListenError::Activation;
    match family {
        libc::AF_INET | libc::AF_INET6 => {
            // SAFETY: systemd handed this descriptor to us alone; it is a listening
            // TCP socket (checked above) and nothing else owns it.
            let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            std.set_nonblocking(true).map_err(io_err)?;
            Ok(Listener::Tcp(
                tokio::net::TcpListener::from_std(std).map_err(io_err)?,
            ))
        }
        libc::AF_UNIX => {
            // SAFETY: as above, a listening unix stream socket.
            let std = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            std.set_nonblocking(true).map_err(io_err)?;
            let path = std
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_owned))
                .unwrap_or_else(|| PathBuf::from(format!("(fd {fd})")));
            Ok(Listener::InheritedUnix(
                tokio::net::UnixListener::from_std(std).map_err(io_err)?,
                path,
            ))
        }
        other => Err(bad(&format!("of address family {other}"))),
    }
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// The listen queue. std's 128 overflows when many clients connect at once (a
/// Postfix restart, a burst of deliveries); the kernel caps it at somaxconn.
const LISTEN_BACKLOG: u32 = 1024;

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    /// Bound by us: the socket file is removed at exit.
    Unix(UnixListener, PathBuf),
    /// Passed in by systemd socket activation: the socket file is systemd's.
    InheritedUnix(UnixListener, PathBuf),
}

/// Where a listener ended up (ephemeral ports resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoundAddr::Inet(a) => write!(f, "{a}"),
            BoundAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Listener {
    /// Bind one configured address. A stale unix socket file is replaced.
    pub fn bind(addr: &ListenAddr, unix_mode: u32) -> io::Result<Listener> {
        match addr {
            ListenAddr::Inet(a) => {
                let socket = if a.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                // As std does: a restart must not wait for TIME_WAIT to clear.
                socket.set_reuseaddr(true)?;
                socket.bind(*a)?;
                Ok(Listener::Tcp(socket.listen(LISTEN_BACKLOG)?))
            }
            ListenAddr::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        // A stale socket from a previous run is replaced; a live one
                        // belongs to another instance and is left alone.
                        if std::os::unix::net::UnixStream::connect(path).is_ok() {
                            return Err(io::Error::new(
                                io::ErrorKind::AddrInUse,
                                "another process is listening on this socket",
                            ));
                        }
                        std::fs::remove_file(path)?;
                    }
                }
                // The process umask (0077, set in main) keeps the socket private until
                // it has its configured mode.
                let l = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    pub fn local_addr(&self) -> BoundAddr {
        match self {
            Listener::Tcp(l) => {
                BoundAddr::Inet(l.local_addr().expect("bound socket has an address"))
            }
            Listener::Unix(_, p) | Listener::InheritedUnix(_, p) => BoundAddr::Unix(p.clone()),
        }
    }
}

// The unit's system call filter, applied to a test thread: chown(2) under
// `SystemCallFilter=~@privileged` (packaging/debian/mtastsd.service).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A seccomp filter on the calling thread (and threads it starts) that fails
    /// every chown variant with EPERM, as systemd's `@chown` group does under
    /// `SystemCallErrorNumber=EPERM`.
    fn forbid_chown_on_this_thread() {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let denied = [
            libc::SYS_chown,
            libc::SYS_lchown,
            libc::SYS_fchown,
            libc::SYS_fchownat,
        ];
        let mut program = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0)];
        for (i, nr) in denied.iter().enumerate() {
            program.push(libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                // To the EPERM return: past the remaining tests and the allow.
                jt: (denied.len() - i) as u8,
                jf: 0,
                k: *nr as u32,
            });
        }
        program.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
        program.push(stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ));
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: prctl with a valid filter program that outlives the call; the
        // filter only ever affects this thread.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog
                ),
                0,
                "seccomp: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// `open` for one unix socket with `unix_group = group`, on a thread that may
    /// not chown; the socket's group after it, or the error.
    fn open_without_chown(dir: &Path, group: u32) -> Result<u32, String> {
        let path = dir.join("socketmap");
        let config = ServerConfig {
            listen: vec![ListenAddr::Unix(path.clone())],
            unix_group: Some(group.to_string()),
            ..ServerConfig::default()
        };
        std::thread::spawn(move || {
            forbid_chown_on_this_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let _guard = rt.enter();
            let listeners = open(&config).map_err(|e| e.to_string())?;
            assert_eq!(listeners.len(), 1);
            Ok(std::fs::metadata(&path).unwrap().gid())
        })
        .join()
        .unwrap()
    }

    /// SPEC 7.5: the chroot set-up's socket, in a set-group-ID directory of the
    /// socket's group, needs no chown under the packaged unit's filter.
    #[test]
    fn a_group_the_setgid_directory_already_gave_needs_no_chown() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mtastsd");
        std::fs::create_dir(&dir).unwrap();
        // As root, a group the process is not in (as postfix is not mtastsd's);
        // otherwise the process's own group.
        // SAFETY: plain getters.
        let group = if unsafe { libc::geteuid() } == 0 {
            4242
        } else {
            unsafe { libc::getegid() }
        };
        std::os::unix::fs::chown(&dir, None, Some(group)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2750)).unwrap();
        assert_eq!(open_without_chown(&dir, group), Ok(group));
    }

    /// A change that is needed is still made, and its failure still stops the daemon
    /// with the key to look at.
    #[test]
    fn a_group_that_must_change_still_fails_loudly_without_chown() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: a plain getter.
        let other = unsafe { libc::getegid() } + 4242;
        let err = open_without_chown(tmp.path(), other).unwrap_err();
        assert!(err.contains("cannot give unix socket"), "{err}");
        assert!(err.contains("Operation not permitted"), "{err}");
        assert!(!tmp.path().join("socketmap").exists(), "socket left behind");
    }
}
