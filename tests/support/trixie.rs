//! The Debian 13 root with Postfix 3.10 and libtlsrpt that `tests/postfix310/make-root.sh`
//! makes (`.ci/run` runs it), for the tests that run that Postfix.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The root, when it exists and this process may chroot into it. Skipped with a
/// message otherwise; under CI=true that is a failure.
pub fn trixie_root() -> Option<PathBuf> {
    let root = PathBuf::from(
        std::env::var_os("MTASTSD_TRIXIE_ROOT")
            .unwrap_or_else(|| "/var/cache/mtastsd-tests/trixie".into()),
    );
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if root.join("usr/sbin/postfix").exists() && is_root {
        return Some(root);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "no Postfix 3.10 root at {} (or not running as root) but CI=true: \
             .ci/run must run tests/postfix310/make-root.sh",
            root.display()
        );
    }
    eprintln!(
        "SKIPPED: no Postfix 3.10 root at {} (make it with tests/postfix310/make-root.sh, as root)",
        root.display()
    );
    None
}

/// Runs a command inside the root (`stdin` written to it); its output, or a panic
/// with it.
pub fn in_root(root: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("chroot")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chroot runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chroot {} {args:?}: {:?}\n{stdout}\n{}",
        root.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
