use super::*;
use std::sync::Mutex;

const GOLDEN: [&str; 5] = [
    "sts-success.json",
    "sts-failure.json",
    "nopol-success.json",
    "nopol-failure.json",
    "nopol-success-3.10.4.json",
];

fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/golden/tlsrpt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap().trim_ascii_end().to_vec()
}

/// What the sink was given, summed; how often it was called; whether it fails.
#[derive(Default)]
struct Stored {
    counts: Mutex<Aggregate>,
    calls: AtomicU64,
    fail: AtomicBool,
}

impl Stored {
    fn sink(self: &Arc<Self>) -> Sink {
        let me = Arc::clone(self);
        Box::new(move |a: &Aggregate| {
            me.calls.fetch_add(1, Ordering::SeqCst);
            if me.fail.load(Ordering::SeqCst) {
                return Err("disk full".to_owned());
            }
            me.counts.lock().unwrap().merge(a.clone());
            Ok(())
        })
    }

    fn sessions(&self) -> u64 {
        sessions(&self.counts.lock().unwrap())
    }
}

fn start(dir: &Path) -> (Collector, Arc<Stored>, PathBuf) {
    let path = dir.join("tlsrpt");
    let stored = Arc::new(Stored::default());
    let socket = bind(&path).unwrap();
    let c = Collector::start(socket, path.clone(), Box::new(|a| a), stored.sink()).unwrap();
    (c, stored, path)
}

/// A blocking sender, as libtlsrpt's benchmark mode: the kernel queue makes it
/// wait instead of dropping, so every datagram sent is received.
fn sender() -> UnixDatagram {
    UnixDatagram::unbound().unwrap()
}

/// SPEC 8.1, 8.2: the real datagrams, each counted once per send, into the sink.
#[test]
fn real_datagrams_are_counted_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, stored, path) = start(tmp.path());
    let tx = sender();
    let mut expected = Aggregate::new();
    let today = Day::from_unix(unix_now());
    for (i, name) in GOLDEN.iter().enumerate() {
        let bytes = golden(name);
        for _ in 0..(i + 1) * 7 {
            tx.send_to(&bytes, &path).unwrap();
            expected.add(today, datagram::parse(&bytes).unwrap());
        }
    }
    c.stop();
    // A day boundary during the test would move some counts to the next day.
    if Day::from_unix(unix_now()) == today {
        assert_eq!(*stored.counts.lock().unwrap(), expected);
    }
    assert_eq!(stored.sessions(), 7 * (1 + 2 + 3 + 4 + 5));
    assert!(!path.exists(), "the socket file is removed at stop");
}

/// SPEC 8.1: what is not a datagram is counted by kind and dropped; the
/// collector goes on counting.
#[test]
fn malformed_and_oversized_datagrams_are_counted_and_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, stored, path) = start(tmp.path());
    let tx = sender();
    let big = |n: usize| {
        let mut v = b"{\"d\": \"".to_vec();
        v.resize(n, b'a');
        v
    };
    // Room for datagrams past the receive buffer (the kernel doubles the value
    // and caps it at net.core.wmem_max: about 416 KiB by default).
    tx_sndbuf(&tx, 4 << 20);
    let malformed: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        b"".to_vec(),
        b"{\"d\": \"r\xffpt.example\"}".to_vec(),
        br#"{"d": "x.example","pr": "v=TLSRPTv1;","policies":[{"policy-type":7,"t":0,"f":0}]}"#
            .to_vec(),
    ];
    for m in &malformed {
        tx.send_to(m, &path).unwrap();
    }
    // Past the parser's bound but within the buffer; past the buffer.
    tx.send_to(&big(datagram::MAX_DATAGRAM + 1), &path).unwrap();
    let over = big(RECV_BUFFER + 1000);
    let truncated_sent = tx.send_to(&over, &path).is_ok();
    tx.send_to(&golden("sts-success.json"), &path).unwrap();
    assert!(
        truncated_sent,
        "the host refused a {}-byte datagram",
        over.len()
    );
    let stats = c.stats();
    c.stop();
    assert_eq!(stored.sessions(), 1);
    assert_eq!(
        (stats.ok(), stats.malformed(), stats.truncated()),
        (1, malformed.len() as u64, 2)
    );
}

/// A failing store keeps the counts and gets them again (SPEC 8.2: never a lost
/// count while the daemon runs).
#[test]
fn counts_are_kept_while_the_sink_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, stored, path) = start(tmp.path());
    stored.fail.store(true, Ordering::SeqCst);
    let tx = sender();
    let bytes = golden("sts-failure.json");
    for _ in 0..50 {
        tx.send_to(&bytes, &path).unwrap();
    }
    // Wait for two failed tries (one a second), then let the store work again.
    while stored.calls.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored.sessions(), 0);
    for _ in 0..50 {
        tx.send_to(&bytes, &path).unwrap();
    }
    stored.fail.store(false, Ordering::SeqCst);
    c.stop();
    assert_eq!(stored.sessions(), 100);
}

/// Stop hands over what the kernel still queued: a blocking sender that sent N
/// finds N counted.
#[test]
fn more_distinct_datagrams_than_a_second_holds_are_all_counted() {
    // Past Seen::MAX_DISTINCT: the held datagrams are settled early, none lost;
    // repeated garbage is counted as often as it came.
    let tmp = tempfile::tempdir().unwrap();
    let (c, stored, path) = start(tmp.path());
    let tx = sender();
    let text = String::from_utf8(golden("sts-failure.json")).unwrap();
    let n = Seen::MAX_DISTINCT as u64 + 904;
    for i in 0..n {
        let one = text.replace("rpt.example", &format!("d{i}.example"));
        tx.send_to(one.as_bytes(), &path).unwrap();
    }
    for _ in 0..3 {
        tx.send_to(b"{garbage", &path).unwrap();
    }
    let stats = c.stats();
    c.stop();
    assert_eq!((stats.ok(), stats.malformed()), (n, 3));
    assert_eq!(stored.sessions(), n);
}

#[test]
fn a_flood_is_counted_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, stored, path) = start(tmp.path());
    let tx = sender();
    let bytes = golden("sts-success.json");
    let n = 20_000;
    for _ in 0..n {
        tx.send_to(&bytes, &path).unwrap();
    }
    let stats = c.stats();
    c.stop();
    assert_eq!(stats.ok(), n);
    assert_eq!(stored.sessions(), n);
}

#[test]
fn bind_replaces_a_stale_socket_only() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tlsrpt");
    // A regular file: never removed.
    std::fs::write(&path, "keep me").unwrap();
    let e = bind(&path).unwrap_err();
    assert!(matches!(e, CollectorError::NotASocket { .. }), "{e}");
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    std::fs::remove_file(&path).unwrap();
    // A live socket: another receiver's.
    let live = bind(&path).unwrap();
    let e = bind(&path).unwrap_err();
    assert!(matches!(e, CollectorError::InUse { .. }), "{e}");
    // The same socket once its receiver is gone: stale, replaced.
    drop(live);
    assert!(path.exists());
    let again = bind(&path).unwrap();
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x", &path)
        .unwrap();
    let mut b = [0u8; 4];
    assert_eq!(again.recv(&mut b).unwrap(), 1);
    // A missing directory: says where to look.
    let e = bind(&tmp.path().join("no/such/dir")).unwrap_err();
    assert!(e.to_string().contains("its directory must exist"), "{e}");
}

/// A socket file that another process put in place after the start is not ours
/// to remove at stop.
#[test]
fn stop_removes_only_its_own_socket_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, _stored, path) = start(tmp.path());
    std::fs::remove_file(&path).unwrap();
    let other = UnixDatagram::bind(&path).unwrap();
    c.stop();
    assert!(path.exists());
    drop(other);
}

fn tx_sndbuf(s: &UnixDatagram, bytes: libc::c_int) {
    // SAFETY: a valid int option on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}
