//! SPEC 7.6: no log call blocks the serving thread. Its own test binary: the logger
//! is process-wide.

mod harness;
mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use harness::{enforce, netstring, Client, TestClock};
use mtastsd::config::LogTarget;
use support::World;

/// The daemon logs to a syslog socket that nobody reads (a stalled journal) at level
/// debug, one line per request below: every request is still answered. The daemon
/// runs on a serving thread of its own, as in `main.rs`, so that a blocked send stalls
/// it and not the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syslog_socket_nobody_reads_does_not_stall_the_answers_spec_7_6() {
    const REQUESTS: usize = 5000;
    let world = World::start().await;
    world.publish("hot.example", "1", &enforce(&["mx.hot.example"]));
    let state = tempfile::tempdir().unwrap();
    let socket = state.path().join("log");
    let _never_read = UnixDatagram::bind(&socket).unwrap();
    mtastsd::logging::init_at(LogTarget::Syslog, log::LevelFilter::Debug, &socket);

    let config = harness::config(&world, state.path());
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let daemon = harness::start(config, TestClock::new()).await;
            let _ = addr_tx.send(daemon.inet_addr().unwrap());
            let _ = stop_rx.await;
            daemon.shutdown().await;
        });
    });
    let addr = addr_rx.await.unwrap();

    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        let mut c = Client::connect(addr).await;
        assert_eq!(
            c.query("postfix", "hot.example").await,
            "OK secure match=mx.hot.example servername=hostname"
        );
        // IP literals: each is answered at once and logged at debug level.
        for batch in 0..REQUESTS / 500 {
            let mut bytes = String::new();
            for i in 0..500 {
                bytes.push_str(&netstring(&format!(
                    "postfix [192.0.2.{}]",
                    (batch + i) % 250
                )));
            }
            c.send_raw(bytes.as_bytes()).await;
            for _ in 0..500 {
                assert_eq!(c.reply().await.as_deref(), Some("NOTFOUND "));
            }
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "the answers stalled behind a syslog socket nobody reads"
    );
    let _ = stop_tx.send(());
    serving.join().unwrap();
}
