//! The TXT fast path: one UDP query for `TXT _mta-sts.<domain>` on a pooled socket.
//!
//! Every cached domain has its TXT id re-checked while it is in use (SPEC 5.4), so on a
//! busy relay this is the daemon's most frequent network request. The full resolver
//! (hickory) opens, registers and closes a socket per query and builds a few dozen
//! heap objects around it; this path reuses connected sockets (each for at most
//! [`MAX_USES`] queries, so the source port keeps changing) and checks the reply
//! itself ([`super::wire`]). It takes only plain answers: NOERROR with TXT records,
//! NODATA and NXDOMAIN. Truncated replies, error codes and anything unparsable go
//! back to the caller ([`Fast::Defer`]), which asks the full resolver.
//!
//! Source-port and id randomness as in any stub resolver: a fresh random id per query,
//! a kernel-chosen random port per socket, connected sockets (the kernel drops
//! datagrams from any other address), and a socket that sees a datagram that is not
//! the reply it waits for, or a reply it does not take (unparsable, truncated, an
//! error code), is retired.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::wire::{self, Reply, MAX_QUERY};
use super::DnsError;

/// Queries per socket before it is closed and a new one (new random port) opened.
pub const MAX_USES: u32 = 100;
/// Idle sockets kept per server; more are closed when their query ends.
const MAX_IDLE: usize = 64;
/// An idle socket older than this is closed instead of reused.
const MAX_IDLE_AGE: Duration = Duration::from_secs(10);
/// A server that timed out or failed is left to the full resolver for this long, so
/// that a dead first server costs one timeout, not one per lookup.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Large enough for any reply within the payload size we advertise; a larger one is
/// cut off, fails to parse and goes to the full resolver.
const RECV_BUFFER: usize = 4096;

/// What the fast path made of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Fast {
    /// The answer (or, after two timeouts or socket errors, the failure).
    Done(Result<Vec<Vec<u8>>, DnsError>),
    /// Ask the full resolver; the reason is for debug logs.
    Defer(&'static str),
}

/// The fast path's servers and their idle sockets.
pub struct UdpTxt {
    servers: Vec<Server>,
    timeout: Duration,
    /// The clock of [`Server::skip_until_ms`].
    epoch: Instant,
}

struct Server {
    addr: SocketAddr,
    idle: Mutex<Vec<Pooled>>,
    /// Milliseconds after [`UdpTxt::epoch`] until which lookups skip this server.
    skip_until_ms: AtomicU64,
}

struct Pooled {
    udp: UdpSocket,
    uses: u32,
    idle_since: Instant,
}

impl UdpTxt {
    /// `None` without servers (the full resolver then does everything).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Option<UdpTxt> {
        if servers.is_empty() {
            return None;
        }
        Some(UdpTxt {
            servers: servers
                .iter()
                .map(|&addr| Server {
                    addr,
                    idle: Mutex::new(Vec::new()),
                    skip_until_ms: AtomicU64::new(0),
                })
                .collect(),
            timeout,
            epoch: Instant::now(),
        })
    }

    /// The TXT records of `name`, each record's strings concatenated (SPEC 2.2).
    /// The servers are asked in their configured order, skipping those that failed
    /// lately; with none left, the full resolver gets the lookup.
    pub async fn lookup(&self, name: &str) -> Fast {
        let now_ms = self.now_ms();
        let mut usable = self
            .servers
            .iter()
            .filter(|s| s.skip_until_ms.load(Ordering::Relaxed) <= now_ms);
        let Some(first) = usable.next() else {
            return Fast::Defer("every server failed lately");
        };
        // Two queries at most, as the full resolver (`attempts = 1`; the answer-time
        // budget of `cache` counts on it): the second to the next server, or again to
        // the only one.
        let second = usable.next().unwrap_or(first);
        let mut query = [0u8; MAX_QUERY];
        let mut failures: Vec<String> = Vec::new();
        for server in [first, second] {
            let id: u16 = rand::random();
            let Some(len) = wire::txt_query(id, name, &mut query) else {
                return Fast::Defer("name not in plain wire form");
            };
            match self.ask(server, id, name, &query[..len]).await {
                Ok(fast) => return fast,
                Err(e) => {
                    let until = self.now_ms() + SKIP_AFTER_FAILURE.as_millis() as u64;
                    server.skip_until_ms.store(until, Ordering::Relaxed);
                    failures.push(e);
                }
            }
        }
        Fast::Done(Err(DnsError::Failed(failures.join("; "))))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// One query to one server. `Err` for a timeout or a socket error (the socket is
    /// then closed).
    async fn ask(
        &self,
        server: &Server,
        id: u16,
        name: &str,
        query: &[u8],
    ) -> Result<Fast, String> {
        let mut buf = [0u8; RECV_BUFFER];
        // A pooled socket must have nothing queued: a datagram that arrived while it
        // was idle is no reply to the query about to go out (and one guessed in
        // advance must not be taken for it), a pending error belongs to an earlier
        // query. Either way the socket is closed and a fresh one opened.
        let mut sock = match server.take().filter(|s| s.is_clean(&mut buf)) {
            Some(sock) => sock,
            None => Pooled::open(server.addr)
                .await
                .map_err(|e| format!("{}: cannot open a UDP socket: {e}", server.addr))?,
        };
        sock.uses += 1;
        sock.udp
            .send(query)
            .await
            .map_err(|e| format!("{}: {e}", server.addr))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.udp.recv(&mut buf)).await {
                Err(_) => {
                    return Err(format!(
                        "{}: no answer within {} ms",
                        server.addr,
                        self.timeout.as_millis()
                    ))
                }
                // E.g. ECONNREFUSED: nothing listens there (ICMP port unreachable).
                Ok(Err(e)) => return Err(format!("{}: {e}", server.addr)),
                Ok(Ok(n)) => n,
            };
            match wire::txt_reply(id, name, &buf[..n]) {
                // Someone else's datagram reached this port: finish the query, then
                // retire the socket.
                Reply::NotOurs => sock.uses = MAX_USES,
                Reply::Answer(answer) => {
                    server.give_back(sock);
                    return Ok(Fast::Done(answer));
                }
                // Retired, not pooled: an unparsable datagram with our id may be a
                // forger who guessed it, and the port it reached is then known. The
                // full resolver takes the lookup anyway, so a new socket costs little.
                Reply::Defer(why) => return Ok(Fast::Defer(why)),
            }
        }
    }

    /// Idle sockets now (for tests).
    pub fn idle_sockets(&self) -> usize {
        self.servers
            .iter()
            .map(|s| s.idle.lock().unwrap().len())
            .sum()
    }
}

impl Server {
    /// The most recently used idle socket, if it is young enough.
    fn take(&self) -> Option<Pooled> {
        let sock = self.idle.lock().unwrap().pop()?;
        (sock.idle_since.elapsed() < MAX_IDLE_AGE).then_some(sock)
    }

    fn give_back(&self, mut sock: Pooled) {
        if sock.uses >= MAX_USES {
            return;
        }
        let now = Instant::now();
        sock.idle_since = now;
        let mut idle = self.idle.lock().unwrap();
        // The oldest are at the bottom: close those past their age.
        let stale = idle
            .iter()
            .take_while(|s| now.duration_since(s.idle_since) >= MAX_IDLE_AGE)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(sock);
        }
    }
}

impl Pooled {
    /// A socket on a kernel-chosen (random) port, connected to `server`.
    async fn open(server: SocketAddr) -> std::io::Result<Pooled> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let udp = UdpSocket::bind(local).await?;
        udp.connect(server).await?;
        Ok(Pooled {
            udp,
            uses: 0,
            idle_since: Instant::now(),
        })
    }

    /// Nothing queued on the socket: no datagram, no pending error. Costs no system
    /// call when the reactor has seen nothing arrive.
    fn is_clean(&self, buf: &mut [u8]) -> bool {
        matches!(self.udp.try_recv(buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

#[cfg(test)]
mod tests {
    //! Against real UDP servers on 127.0.0.1 that answer as a test tells them to.
    use super::*;
    use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::rdata::TXT;
    use hickory_resolver::proto::rr::{RData, Record};
    use std::sync::Arc;

    const NAME: &str = "_mta-sts.example.com";

    /// What the test server does with each query it receives.
    #[derive(Clone, Copy)]
    enum Behaviour {
        Answer,
        /// First a reply with another id, then the real one.
        StrayThenAnswer,
        Silent,
        Code(ResponseCode),
        Truncated,
        /// The answer, then 50 ms later an unsolicited datagram to the same port.
        AnswerThenStray,
        /// A datagram that starts with the query's id and does not parse.
        Garbage,
    }

    struct TestServer {
        addr: SocketAddr,
        /// The source port of every query received, in order.
        ports: Arc<Mutex<Vec<u16>>>,
    }

    async fn server(behaviour: Behaviour) -> TestServer {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let ports = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ports);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                seen.lock().unwrap().push(peer.port());
                let query = Message::from_vec(&buf[..n]).unwrap();
                let mut reply =
                    Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                reply.add_queries(query.queries.clone());
                match behaviour {
                    Behaviour::Silent => continue,
                    Behaviour::Garbage => {
                        let mut junk = query.metadata.id.to_be_bytes().to_vec();
                        junk.extend_from_slice(&[0xff; 30]);
                        udp.send_to(&junk, peer).await.unwrap();
                        continue;
                    }
                    Behaviour::Code(code) => reply.metadata.response_code = code,
                    Behaviour::Truncated => reply.metadata.truncation = true,
                    Behaviour::Answer | Behaviour::StrayThenAnswer | Behaviour::AnswerThenStray => {
                        reply.add_answer(Record::from_rdata(
                            query.queries[0].name().clone(),
                            300,
                            RData::TXT(TXT::new(vec!["v=STSv1; id=".into(), "42".into()])),
                        ));
                    }
                }
                if let Behaviour::StrayThenAnswer = behaviour {
                    let mut stray = reply.clone();
                    stray.metadata.id = query.metadata.id.wrapping_add(1);
                    udp.send_to(&stray.to_vec().unwrap(), peer).await.unwrap();
                }
                udp.send_to(&reply.to_vec().unwrap(), peer).await.unwrap();
                if let Behaviour::AnswerThenStray = behaviour {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    udp.send_to(&reply.to_vec().unwrap(), peer).await.unwrap();
                }
            }
        });
        TestServer { addr, ports }
    }

    fn answer() -> Fast {
        Fast::Done(Ok(vec![b"v=STSv1; id=42".to_vec()]))
    }

    #[tokio::test]
    async fn a_plain_answer_comes_back_and_the_socket_is_reused() {
        let s = server(Behaviour::Answer).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        assert_eq!(fast.lookup(NAME).await, answer());
        assert_eq!(fast.idle_sockets(), 1);
        assert_eq!(fast.lookup(NAME).await, answer());
        let ports = s.ports.lock().unwrap().clone();
        assert_eq!(ports.len(), 2);
        assert_eq!(
            ports[0], ports[1],
            "the second query goes out on the pooled socket"
        );
    }

    #[tokio::test]
    async fn a_socket_is_replaced_after_max_uses_so_the_source_port_changes() {
        let s = server(Behaviour::Answer).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        for _ in 0..=MAX_USES {
            assert_eq!(fast.lookup(NAME).await, answer());
        }
        let ports = s.ports.lock().unwrap().clone();
        let first = ports[0];
        let n = MAX_USES as usize;
        assert!(ports[..n].iter().all(|&p| p == first));
        assert_ne!(ports[n], first, "query {} goes out on a new socket", n + 1);
    }

    #[tokio::test]
    async fn a_datagram_with_another_id_is_ignored_and_retires_the_socket() {
        let s = server(Behaviour::StrayThenAnswer).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        assert_eq!(fast.lookup(NAME).await, answer());
        assert_eq!(
            fast.idle_sockets(),
            0,
            "a socket that saw a stray datagram is closed"
        );
    }

    #[tokio::test]
    async fn a_reply_with_our_id_that_does_not_parse_retires_the_socket() {
        // Our id on garbage: a forger who guessed the id, or a broken middlebox. The
        // socket's port is known to whoever sent it; it must not carry another query.
        let s = server(Behaviour::Garbage).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        assert_eq!(fast.lookup(NAME).await, Fast::Defer("unparsable reply"));
        assert_eq!(
            fast.idle_sockets(),
            0,
            "a socket that received an unparsable reply is closed"
        );
    }

    #[tokio::test]
    async fn a_socket_with_a_datagram_queued_while_idle_is_not_reused() {
        // Whatever reached an idle socket (a late duplicate, a reply forged in advance
        // for a guessed id) must never be read as the reply to the next query.
        let s = server(Behaviour::AnswerThenStray).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        assert_eq!(fast.lookup(NAME).await, answer());
        assert_eq!(fast.idle_sockets(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await; // the stray arrives
        assert_eq!(fast.lookup(NAME).await, answer());
        let ports = s.ports.lock().unwrap().clone();
        assert_eq!(ports.len(), 2);
        assert_ne!(
            ports[0], ports[1],
            "the second query goes out on a new socket"
        );
    }

    #[tokio::test]
    async fn a_server_that_failed_is_skipped_for_a_while() {
        let silent = server(Behaviour::Silent).await;
        let good = server(Behaviour::Answer).await;
        let fast = UdpTxt::new(&[silent.addr, good.addr], Duration::from_millis(200)).unwrap();
        assert_eq!(fast.lookup(NAME).await, answer());
        // The next lookups go straight to the second server: no timeout each time.
        let started = std::time::Instant::now();
        assert_eq!(fast.lookup(NAME).await, answer());
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(silent.ports.lock().unwrap().len(), 1);
        assert_eq!(good.ports.lock().unwrap().len(), 2);
        // With every server failing lately, the full resolver gets the lookup at once.
        let only = UdpTxt::new(&[silent.addr], Duration::from_millis(200)).unwrap();
        assert!(matches!(only.lookup(NAME).await, Fast::Done(Err(_))));
        let started = std::time::Instant::now();
        assert_eq!(
            only.lookup(NAME).await,
            Fast::Defer("every server failed lately")
        );
        assert!(started.elapsed() < Duration::from_millis(150));
    }

    #[tokio::test]
    async fn error_codes_and_truncation_go_to_the_full_resolver() {
        for (behaviour, why) in [
            (
                Behaviour::Code(ResponseCode::ServFail),
                "error response code",
            ),
            (
                Behaviour::Code(ResponseCode::Refused),
                "error response code",
            ),
            (Behaviour::Truncated, "truncated reply"),
        ] {
            let s = server(behaviour).await;
            let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
            assert_eq!(fast.lookup(NAME).await, Fast::Defer(why));
        }
    }

    #[tokio::test]
    async fn nxdomain_is_an_answer() {
        // SPEC 2.6: NXDOMAIN is "no record", not a failure, and needs no second opinion.
        let s = server(Behaviour::Code(ResponseCode::NXDomain)).await;
        let fast = UdpTxt::new(&[s.addr], Duration::from_secs(2)).unwrap();
        assert_eq!(
            fast.lookup(NAME).await,
            Fast::Done(Err(DnsError::NoRecords {
                nxdomain: true,
                negative_ttl: None
            }))
        );
    }

    #[tokio::test]
    async fn a_silent_server_fails_after_two_timeouts_and_the_second_server_is_asked() {
        // SPEC 2.6: a timeout is a DNS failure (temporary), not "no record".
        let silent = server(Behaviour::Silent).await;
        let fast = UdpTxt::new(&[silent.addr], Duration::from_millis(200)).unwrap();
        let started = std::time::Instant::now();
        let Fast::Done(Err(DnsError::Failed(why))) = fast.lookup(NAME).await else {
            panic!("expected a failure");
        };
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(why.matches("no answer within 200 ms").count(), 2, "{why}");
        assert_eq!(silent.ports.lock().unwrap().len(), 2);
        assert_eq!(fast.idle_sockets(), 0);

        let good = server(Behaviour::Answer).await;
        let fast = UdpTxt::new(&[silent.addr, good.addr], Duration::from_millis(200)).unwrap();
        assert_eq!(fast.lookup(NAME).await, answer());
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast() {
        // Nothing listens: the kernel reports ICMP port unreachable on the connected
        // socket, well before the timeout.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let fast = UdpTxt::new(&[closed], Duration::from_secs(5)).unwrap();
        let started = std::time::Instant::now();
        let Fast::Done(Err(DnsError::Failed(why))) = fast.lookup(NAME).await else {
            panic!("expected a failure");
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(why.contains("refused"), "{why}");
    }

    #[test]
    fn no_servers_means_no_fast_path() {
        assert!(UdpTxt::new(&[], Duration::from_secs(1)).is_none());
    }
}
