//! A real authoritative DNS server (hickory-server, UDP + TCP on 127.0.0.1, one
//! ephemeral port) whose data tests change at run time.
//!
//! Semantics:
//! - names are case-insensitive, with or without the trailing dot;
//! - a name that exists with other types (or is an empty non-terminal, i.e. an
//!   ancestor of a name that exists) answers NOERROR/NODATA; anything else NXDOMAIN;
//!   both carry an SOA (record TTL and MINIMUM = the negative TTL, default 300) in
//!   the authority section, so resolvers compute a negative TTL;
//! - records are served with TTL 0 by default (see [`DnsServer::set_ttl`]);
//! - a TXT/A/AAAA query that hits a CNAME gets the CNAME chain plus the target's
//!   records (all names are "in zone"); the final rcode is that of the last name;
//! - every query is counted per (name, type), whatever the answer, and so are the
//!   queries being handled at once (see [`DnsServer::peak_in_flight`]);
//! - answers can be delayed, for one name or for all ([`DnsServer::set_delay`]);
//! - DNSSEC, as a validating resolver shows it (for DANE, SPEC 6.4): nothing is
//!   signed, but answers for names marked secure ([`DnsServer::set_secure`]) carry
//!   the AD bit when the query asked for DNSSEC (DO or AD set), NXDOMAIN/NODATA
//!   included (a secure denial); "bogus" is what such a resolver answers for it,
//!   SERVFAIL ([`DnsServer::set_failure`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TLSA, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;

/// Lower-case, no trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Clone, Debug)]
enum Mode {
    Failure(ResponseCode),
    Timeout,
}

#[derive(Clone, Debug)]
struct Node {
    txt: Vec<Vec<String>>,
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    /// (preference, exchange); exchange `.` is a null MX (RFC 7505).
    mx: Vec<(u16, String)>,
    /// (usage, selector, matching type, data).
    tlsa: Vec<(u8, u8, u8, Vec<u8>)>,
    cname: Option<String>,
}

impl Node {
    fn empty() -> Self {
        Node {
            txt: Vec::new(),
            a: Vec::new(),
            aaaa: Vec::new(),
            mx: Vec::new(),
            tlsa: Vec::new(),
            cname: None,
        }
    }
}

#[derive(Debug)]
struct DnsState {
    nodes: HashMap<String, Node>,
    modes: HashMap<String, Mode>,
    /// Name → secure or not, for it and the names below it (the longest match wins).
    secure: HashMap<String, bool>,
    /// Queries that asked for DNSSEC (DO or AD set), per (name, type).
    dnssec_queries: HashMap<(String, RecordType), usize>,
    ttl: u32,
    negative_ttl: u32,
    queries: HashMap<(String, RecordType), usize>,
    total: usize,
    log: Vec<(String, RecordType)>,
    /// Per-name answer delays; `""` applies to every name without its own.
    delays: HashMap<String, Duration>,
    /// Queries received and not yet answered (or dropped), and the most seen at once.
    in_flight: usize,
    peak_in_flight: usize,
}

type Shared = Arc<Mutex<DnsState>>;

fn lock(s: &Shared) -> MutexGuard<'_, DnsState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle on the DNS server; clones share the same server and data. The server stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct DnsServer {
    state: Shared,
    addr: SocketAddr,
    _server: Arc<Mutex<Server<Handler>>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl DnsServer {
    /// Bind UDP and TCP on the same ephemeral port of 127.0.0.1 and start serving.
    /// Must be called inside a tokio runtime.
    pub async fn start() -> DnsServer {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Like [`DnsServer::start`], on `addr`: port 0 picks a free port; a fixed
    /// port (53, for a resolver that cannot be told another port) must be free.
    pub async fn start_at(addr: std::net::SocketAddr) -> DnsServer {
        let state: Shared = Arc::new(Mutex::new(DnsState {
            nodes: HashMap::new(),
            modes: HashMap::new(),
            secure: HashMap::new(),
            dnssec_queries: HashMap::new(),
            ttl: 0,
            negative_ttl: 300,
            queries: HashMap::new(),
            total: 0,
            log: Vec::new(),
            delays: HashMap::new(),
            in_flight: 0,
            peak_in_flight: 0,
        }));
        let mut last_err = None;
        let attempts = if addr.port() == 0 { 50 } else { 1 };
        for _ in 0..attempts {
            let udp = tokio::net::UdpSocket::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("bind DNS UDP socket {addr}: {e}"));
            let addr = udp.local_addr().expect("UDP local addr");
            match tokio::net::TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let mut server = Server::new(Handler {
                        state: state.clone(),
                    });
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_secs(10), 64);
                    return DnsServer {
                        state,
                        addr,
                        _server: Arc::new(Mutex::new(server)),
                    };
                }
                Err(e) => last_err = Some(e),
            }
        }
        panic!("could not bind DNS UDP+TCP on one port: {last_err:?}");
    }

    /// Address (127.0.0.1:port) for both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn with_node(&self, name: &str, f: impl FnOnce(&mut Node)) {
        let mut st = lock(&self.state);
        let node = st.nodes.entry(normalize(name)).or_insert_with(Node::empty);
        f(node);
    }

    /// Replace the TXT RRset of `name`; each record is a list of character-strings
    /// (each at most 255 bytes) that a client must concatenate. An empty list leaves
    /// the name existing without TXT (NODATA). Removes a CNAME at that name.
    pub fn set_txt(&self, name: &str, records: Vec<Vec<String>>) {
        for r in &records {
            for s in r {
                assert!(
                    s.len() <= 255,
                    "TXT character-string over 255 bytes: split it into several strings"
                );
            }
        }
        self.with_node(name, |n| {
            n.cname = None;
            n.txt = records;
        });
    }

    /// Convenience: one TXT record made of one string.
    pub fn set_txt1(&self, name: &str, text: &str) {
        self.set_txt(name, vec![vec![text.to_string()]]);
    }

    /// Replace the A RRset of `name` with one address. Removes a CNAME at that name.
    pub fn set_a(&self, name: &str, ip: Ipv4Addr) {
        self.set_a_list(name, vec![ip]);
    }

    pub fn set_a_list(&self, name: &str, ips: Vec<Ipv4Addr>) {
        self.with_node(name, |n| {
            n.cname = None;
            n.a = ips;
        });
    }

    pub fn set_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.with_node(name, |n| {
            n.cname = None;
            n.aaaa = vec![ip];
        });
    }

    /// Replace the MX RRset of `name` with (preference, exchange) pairs; exchange `.`
    /// is a null MX (RFC 7505). Removes a CNAME at that name.
    pub fn set_mx(&self, name: &str, records: Vec<(u16, String)>) {
        self.with_node(name, |n| {
            n.cname = None;
            n.mx = records;
        });
    }

    /// Replace the TLSA RRset of `name` (e.g. `_25._tcp.mx.example.com`) with
    /// (usage, selector, matching type, association data) records. Removes a CNAME.
    pub fn set_tlsa(&self, name: &str, records: Vec<(u8, u8, u8, Vec<u8>)>) {
        self.with_node(name, |n| {
            n.cname = None;
            n.tlsa = records;
        });
    }

    /// Answers for `name` and every name below it carry the AD bit (when asked
    /// for): a signed zone behind a validating resolver. `secure = false` marks an
    /// unsigned zone below a signed one; the longest match wins.
    pub fn set_secure(&self, name: &str, secure: bool) {
        lock(&self.state).secure.insert(normalize(name), secure);
    }

    /// Number of queries for (`name`, `rtype`) that asked for DNSSEC (DO or AD bit).
    pub fn dnssec_queries(&self, name: &str, rtype: RecordType) -> usize {
        lock(&self.state)
            .dnssec_queries
            .get(&(normalize(name), rtype))
            .copied()
            .unwrap_or(0)
    }

    /// Make `name` a CNAME to `target` (drops any other data at `name`).
    pub fn set_cname(&self, name: &str, target: &str) {
        let target = normalize(target);
        self.with_node(name, |n| {
            n.txt.clear();
            n.a.clear();
            n.aaaa.clear();
            n.mx.clear();
            n.tlsa.clear();
            n.cname = Some(target);
        });
    }

    /// Answer every query for `name` with `rcode` (e.g. ServFail, Refused). Data at
    /// the name is kept and served again after [`DnsServer::clear_failure`].
    pub fn set_failure(&self, name: &str, rcode: ResponseCode) {
        lock(&self.state)
            .modes
            .insert(normalize(name), Mode::Failure(rcode));
    }

    /// Never answer queries for `name` (they are still counted).
    pub fn set_timeout(&self, name: &str) {
        lock(&self.state)
            .modes
            .insert(normalize(name), Mode::Timeout);
    }

    /// Undo `set_failure` / `set_timeout`.
    pub fn clear_failure(&self, name: &str) {
        lock(&self.state).modes.remove(&normalize(name));
    }

    /// Remove every record (and failure mode) of `name`: NXDOMAIN afterwards
    /// (or NODATA if a name below it still exists).
    pub fn remove(&self, name: &str) {
        let mut st = lock(&self.state);
        st.nodes.remove(&normalize(name));
        st.modes.remove(&normalize(name));
    }

    /// Remove the TXT RRset only (NODATA if other data remains).
    pub fn remove_txt(&self, name: &str) {
        self.with_node(name, |n| n.txt.clear());
    }

    /// TTL of served records (default 0).
    pub fn set_ttl(&self, ttl: u32) {
        lock(&self.state).ttl = ttl;
    }

    /// Negative TTL: TTL and MINIMUM of the SOA in negative answers (default 300).
    pub fn set_negative_ttl(&self, ttl: u32) {
        lock(&self.state).negative_ttl = ttl;
    }

    /// Number of queries received for (`name`, `rtype`), over UDP and TCP.
    pub fn queries(&self, name: &str, rtype: RecordType) -> usize {
        lock(&self.state)
            .queries
            .get(&(normalize(name), rtype))
            .copied()
            .unwrap_or(0)
    }

    /// Number of queries received for `name`, any type.
    pub fn queries_any(&self, name: &str) -> usize {
        let key = normalize(name);
        lock(&self.state)
            .queries
            .iter()
            .filter(|((n, _), _)| *n == key)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Total number of queries received.
    pub fn total_queries(&self) -> usize {
        lock(&self.state).total
    }

    /// Every query received so far, in order: (normalized name, type).
    pub fn query_log(&self) -> Vec<(String, RecordType)> {
        lock(&self.state).log.clone()
    }

    pub fn reset_counts(&self) {
        let mut st = lock(&self.state);
        st.queries.clear();
        st.dnssec_queries.clear();
        st.total = 0;
        st.log.clear();
        st.peak_in_flight = st.in_flight;
    }

    /// Answer queries for `name` only after `delay` (`""`: every name without a
    /// delay of its own). `Duration::ZERO` removes it.
    pub fn set_delay(&self, name: &str, delay: Duration) {
        let mut st = lock(&self.state);
        let key = if name.is_empty() {
            String::new()
        } else {
            normalize(name)
        };
        if delay.is_zero() {
            st.delays.remove(&key);
        } else {
            st.delays.insert(key, delay);
        }
    }

    /// Queries being handled right now (received, not yet answered).
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    /// The most queries handled at once since the start (or [`Self::reset_counts`]).
    pub fn peak_in_flight(&self) -> usize {
        lock(&self.state).peak_in_flight
    }
}

/// What to send for one query, computed under the lock.
enum Outcome {
    NoAnswer,
    Answer {
        rcode: ResponseCode,
        answers: Vec<Record>,
        soa: Vec<Record>,
    },
}

fn mkname(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_else(|e| panic!("bad DNS name {s:?}: {e}"));
    n.set_fqdn(true);
    n
}

/// Zone apex used for the SOA of negative answers: the last two labels.
fn apex_of(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    if labels.len() <= 2 {
        labels.join(".")
    } else {
        labels[labels.len() - 2..].join(".")
    }
}

impl DnsState {
    fn soa_record(&self, qname: &str) -> Record {
        let apex = apex_of(qname);
        let apex = if apex.is_empty() {
            Name::root()
        } else {
            mkname(&apex)
        };
        let mname = Name::from_ascii("ns.invalid.").unwrap_or_else(|_| Name::root());
        let rname = Name::from_ascii("hostmaster.invalid.").unwrap_or_else(|_| Name::root());
        Record::from_rdata(
            apex,
            self.negative_ttl,
            RData::SOA(SOA::new(
                mname,
                rname,
                1,
                3600,
                600,
                86400,
                self.negative_ttl,
            )),
        )
    }

    /// The longest [`DnsServer::set_secure`] entry at or above `name`.
    fn is_secure(&self, name: &str) -> bool {
        let mut candidate = name;
        loop {
            if let Some(secure) = self.secure.get(candidate) {
                return *secure;
            }
            match candidate.split_once('.') {
                Some((_, parent)) => candidate = parent,
                None => return false,
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        if self.nodes.contains_key(name) {
            return true;
        }
        // Empty non-terminal: an ancestor of an existing name exists.
        let suffix = format!(".{name}");
        self.nodes.keys().any(|k| k.ends_with(&suffix))
    }

    fn records_of(&self, name: &str, node: &Node, rtype: RecordType) -> Vec<Record> {
        let owner = mkname(name);
        let ttl = self.ttl;
        let mut out = Vec::new();
        let want = |t: RecordType| rtype == t || rtype == RecordType::ANY;
        if want(RecordType::TXT) {
            for r in &node.txt {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::TXT(TXT::from_bytes(r.iter().map(|s| s.as_bytes()).collect())),
                ));
            }
        }
        if want(RecordType::A) {
            for ip in &node.a {
                out.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
            }
        }
        if want(RecordType::AAAA) {
            for ip in &node.aaaa {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::AAAA(AAAA(*ip)),
                ));
            }
        }
        if want(RecordType::TLSA) {
            for (usage, selector, matching, data) in &node.tlsa {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::TLSA(TLSA::new(
                        CertUsage::from(*usage),
                        Selector::from(*selector),
                        Matching::from(*matching),
                        data.clone(),
                    )),
                ));
            }
        }
        if want(RecordType::MX) {
            for (preference, exchange) in &node.mx {
                let exchange = if exchange == "." {
                    Name::root()
                } else {
                    mkname(exchange)
                };
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::MX(MX::new(*preference, exchange)),
                ));
            }
        }
        out
    }

    fn resolve(&mut self, qname: &str, rtype: RecordType) -> Outcome {
        *self.queries.entry((qname.to_string(), rtype)).or_insert(0) += 1;
        self.total += 1;
        self.log.push((qname.to_string(), rtype));

        let mut answers = Vec::new();
        let mut name = qname.to_string();
        for _hop in 0..16 {
            match self.modes.get(&name) {
                Some(Mode::Timeout) => return Outcome::NoAnswer,
                Some(Mode::Failure(rc)) => {
                    return Outcome::Answer {
                        rcode: *rc,
                        answers: Vec::new(),
                        soa: Vec::new(),
                    }
                }
                None => {}
            }
            let Some(node) = self.nodes.get(&name) else {
                let rcode = if self.exists(&name) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                return Outcome::Answer {
                    rcode,
                    answers,
                    soa: vec![self.soa_record(&name)],
                };
            };
            if let Some(target) = &node.cname {
                answers.push(Record::from_rdata(
                    mkname(&name),
                    self.ttl,
                    RData::CNAME(CNAME(mkname(target))),
                ));
                if rtype == RecordType::CNAME {
                    return Outcome::Answer {
                        rcode: ResponseCode::NoError,
                        answers,
                        soa: Vec::new(),
                    };
                }
                name = target.clone();
                continue;
            }
            let recs = self.records_of(&name, node, rtype);
            let soa = if recs.is_empty() {
                vec![self.soa_record(&name)]
            } else {
                Vec::new()
            };
            answers.extend(recs);
            return Outcome::Answer {
                rcode: ResponseCode::NoError,
                answers,
                soa,
            };
        }
        // CNAME loop or chain too long.
        Outcome::Answer {
            rcode: ResponseCode::ServFail,
            answers: Vec::new(),
            soa: Vec::new(),
        }
    }
}

pub struct Handler {
    state: Shared,
}

/// Counts a query as in flight for as long as it lives.
struct InFlight(Shared);

impl InFlight {
    fn enter(state: &Shared) -> InFlight {
        let mut st = lock(state);
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).in_flight -= 1;
    }
}

impl Handler {
    async fn handle<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let fallback = |rcode: ResponseCode| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = rcode;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        };
        let query = match request.request_info() {
            Ok(info) => info.query.clone(),
            Err(_) => {
                let msg = MessageResponseBuilder::from_message_request(request)
                    .error_msg(&request.metadata, ResponseCode::FormErr);
                return response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| fallback(ResponseCode::FormErr));
            }
        };
        let qname = normalize(&query.name().to_ascii());
        let rtype = query.query_type();
        let wants_dnssec = request.metadata.authentic_data
            || request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let in_flight = InFlight::enter(&self.state);
        let delay = {
            let mut st = lock(&self.state);
            if wants_dnssec {
                *st.dnssec_queries.entry((qname.clone(), rtype)).or_insert(0) += 1;
            }
            st.delays.get(&qname).or_else(|| st.delays.get("")).copied()
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let (outcome, secure) = {
            let mut st = lock(&self.state);
            (st.resolve(&qname, rtype), st.is_secure(&qname))
        };
        let (rcode, answers, soa) = match outcome {
            Outcome::NoAnswer => return fallback(ResponseCode::ServFail),
            Outcome::Answer {
                rcode,
                answers,
                soa,
            } => (rcode, answers, soa),
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = !matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused);
        metadata.recursion_available = false;
        metadata.response_code = rcode;
        metadata.authentic_data = wants_dnssec
            && secure
            && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain);

        let resp_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            e
        });
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let msg = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            std::iter::empty(),
        );
        // Answered from here on: once the reply is on the wire, the client may send
        // its next query before this task gets to run again, and that one must not be
        // counted as in flight beside this one.
        drop(in_flight);
        response
            .send_response(msg)
            .await
            .unwrap_or_else(|_| fallback(ResponseCode::ServFail))
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the expansion written
// out by hand (so the tests need no async-trait dependency).
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.handle(request, response_handle))
    }
}
