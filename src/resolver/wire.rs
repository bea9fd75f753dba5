//! The DNS messages of the TXT fast path ([`super::udp`]): the query bytes for
//! `TXT <name>` (RFC 1035 §4.1, with an EDNS0 OPT record, RFC 6891) and the checks a
//! reply must pass to count as the answer to it. Pure: no I/O. Replies are parsed with
//! hickory-proto; everything this module does not take as a plain answer is handed
//! back as [`Reply::Defer`] so that the full resolver asks again.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::DnsError;

/// The UDP payload size we advertise (the DNS flag day 2020 value): large enough for
/// any sane `_mta-sts` TXT set, small enough not to fragment.
pub const EDNS_PAYLOAD: u16 = 1232;
/// The longest query [`txt_query`] writes: header, a 255-byte name, type and class,
/// the OPT record.
pub const MAX_QUERY: usize = 12 + 255 + 4 + 11;

const TYPE_TXT: u16 = 16;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// Header flags of the query: a standard query with RD (recursion desired).
const FLAGS_RD: u16 = 0x0100;

/// Writes the query for the TXT records of `name` (one trailing dot allowed) into
/// `buf` and returns its length. `None` when `name` is not a plain ASCII host name of
/// at most 255 bytes on the wire (empty or over-long labels, escapes, non-ASCII): the
/// full resolver then gets it, and says what is wrong with it.
pub fn txt_query(id: u16, name: &str, buf: &mut [u8; MAX_QUERY]) -> Option<usize> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    buf[0..2].copy_from_slice(&id.to_be_bytes());
    buf[2..4].copy_from_slice(&FLAGS_RD.to_be_bytes());
    // QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 1 (the OPT record).
    buf[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    let mut at = 12;
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let plain = bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
        // Root label plus type and class must still fit after this label.
        if bytes.is_empty() || bytes.len() > 63 || !plain || at + 1 + bytes.len() > 12 + 254 {
            return None;
        }
        buf[at] = bytes.len() as u8;
        buf[at + 1..at + 1 + bytes.len()].copy_from_slice(bytes);
        at += 1 + bytes.len();
    }
    buf[at] = 0;
    at += 1;
    let tail: [u8; 15] = {
        let [t0, t1] = TYPE_TXT.to_be_bytes();
        let [c0, c1] = CLASS_IN.to_be_bytes();
        let [o0, o1] = TYPE_OPT.to_be_bytes();
        let [p0, p1] = EDNS_PAYLOAD.to_be_bytes();
        // QTYPE, QCLASS; OPT: root owner, type, payload size as class, TTL 0 (no
        // extended rcode, version 0, DO clear), no options.
        [t0, t1, c0, c1, 0, o0, o1, p0, p1, 0, 0, 0, 0, 0, 0]
    };
    buf[at..at + tail.len()].copy_from_slice(&tail);
    Some(at + tail.len())
}

/// What a datagram that arrived on a query's socket means.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Not the reply to this query (another id or question, not a response): ignore
    /// it and keep waiting. Spoofing attempts and late duplicates end here.
    NotOurs,
    /// The answer, as [`super::TxtLookup::lookup_txt`] returns it: each record's
    /// strings concatenated (SPEC 2.2), or NXDOMAIN / NODATA with the negative TTL
    /// (SPEC 2.6, 5.6).
    Answer(Result<Vec<Vec<u8>>, DnsError>),
    /// The reply to this query, but not one the fast path takes: truncated (needs
    /// TCP), an error code (SERVFAIL, REFUSED… the full resolver tries the other
    /// servers), or unparsable. The reason is for debug logs.
    Defer(&'static str),
}

/// Checks `bytes` against the query [`txt_query`] wrote for `id` and `name`.
pub fn txt_reply(id: u16, name: &str, bytes: &[u8]) -> Reply {
    // The id first: most stray datagrams stop here without being parsed.
    if bytes.len() < 12 || bytes[0..2] != id.to_be_bytes() {
        return Reply::NotOurs;
    }
    let Ok(message) = Message::from_vec(bytes) else {
        return Reply::Defer("unparsable reply");
    };
    let meta = &message.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Reply::NotOurs;
    }
    let question = match message.queries.as_slice() {
        [q] if q.query_type() == RecordType::TXT
            && q.query_class() == DNSClass::IN
            && same_name(q.name(), name) =>
        {
            q.name()
        }
        // Some servers answer an error (FORMERR from one that does not know EDNS,
        // say) without repeating the question: the full resolver asks again.
        [] if meta.response_code != ResponseCode::NoError => {
            return Reply::Defer("error response code")
        }
        _ => return Reply::NotOurs,
    };
    if meta.truncation {
        return Reply::Defer("truncated reply");
    }
    match meta.response_code {
        ResponseCode::NoError => {
            // SPEC 2.1: the recursive resolver followed any CNAME and put the chain
            // in the answer. Keep the IN-class TXT records owned by a name of that
            // chain, as the full resolver does: other records in the answer are not
            // the domain's.
            let chain = cname_chain(question, &message.answers);
            let records: Vec<Vec<u8>> = message
                .answers
                .iter()
                .filter(|r| r.dns_class == DNSClass::IN && chain.contains(&&r.name))
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(record_text(txt)),
                    _ => None,
                })
                .collect();
            if records.is_empty() && chain.len() > 1 {
                // An alias whose target the resolver did not answer for: the full
                // resolver follows it with a query of its own.
                return Reply::Defer("CNAME chain not followed to its end");
            }
            if records.is_empty() {
                Reply::Answer(Err(DnsError::NoRecords {
                    nxdomain: false,
                    negative_ttl: negative_ttl(&message.authorities),
                }))
            } else {
                Reply::Answer(Ok(records))
            }
        }
        ResponseCode::NXDomain => Reply::Answer(Err(DnsError::NoRecords {
            nxdomain: true,
            negative_ttl: negative_ttl(&message.authorities),
        })),
        _ => Reply::Defer("error response code"),
    }
}

/// SPEC 2.2: one TXT record's character-strings, concatenated without separators.
pub fn record_text(txt: &TXT) -> Vec<u8> {
    txt.txt_data.concat()
}

/// At most this many aliases are followed through an answer (hickory's limit is 8 too).
const MAX_CNAME_HOPS: usize = 8;

/// `name` and the targets of the CNAME chain that starts at it in `answers`, in order
/// (loops and chains longer than [`MAX_CNAME_HOPS`] are cut).
fn cname_chain<'a>(name: &'a Name, answers: &'a [Record]) -> Vec<&'a Name> {
    let mut chain = vec![name];
    while chain.len() <= MAX_CNAME_HOPS {
        let last = chain[chain.len() - 1];
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(cname) if r.dns_class == DNSClass::IN && &r.name == last => Some(&cname.0),
            _ => None,
        });
        match next {
            Some(target) if !chain.contains(&target) => chain.push(target),
            _ => break,
        }
    }
    chain
}

/// RFC 2308 §5: the negative TTL is the SOA record's TTL, at most its MINIMUM.
fn negative_ttl(authorities: &[Record]) -> Option<u32> {
    authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

/// DNS names compare without regard to ASCII case (RFC 4343).
fn same_name(wire: &Name, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut ours = name.split('.');
    for label in wire.iter() {
        match ours.next() {
            Some(l) if l.as_bytes().eq_ignore_ascii_case(label) => {}
            _ => return false,
        }
    }
    ours.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::rdata::{CNAME, SOA};

    const NAME: &str = "_mta-sts.example.com";

    fn query_bytes(id: u16, name: &str) -> Vec<u8> {
        let mut buf = [0u8; MAX_QUERY];
        let n = txt_query(id, name, &mut buf).expect("encodable");
        buf[..n].to_vec()
    }

    /// A reply as a resolver would send it to `query_bytes(id, NAME)`.
    fn reply(
        id: u16,
        code: ResponseCode,
        answers: Vec<Record>,
        soa: Option<(u32, u32)>,
    ) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.add_query(Query::query(
            Name::from_ascii(NAME).unwrap(),
            RecordType::TXT,
        ));
        m.add_answers(answers);
        if let Some((ttl, minimum)) = soa {
            let zone = Name::from_ascii("example.com.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86_400, minimum);
            m.add_authority(Record::from_rdata(zone, ttl, RData::SOA(soa)));
        }
        m.to_vec().unwrap()
    }

    fn txt(strings: &[&str]) -> Record {
        Record::from_rdata(
            Name::from_ascii(NAME).unwrap(),
            300,
            RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())),
        )
    }

    #[test]
    fn the_query_is_what_hickory_reads_as_a_recursive_txt_query_with_edns() {
        let bytes = query_bytes(0xbeef, "_MTA-sts.Example.com.");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        assert_eq!(m.metadata.message_type, MessageType::Query);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::TXT);
        assert_eq!(m.queries[0].query_class(), DNSClass::IN);
        assert_eq!(m.queries[0].name().to_ascii(), "_MTA-sts.Example.com.");
        let edns: &Edns = m.edns.as_ref().expect("OPT record");
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        assert!(!edns.flags().dnssec_ok);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
    }

    #[test]
    fn names_the_wire_cannot_carry_plainly_go_to_the_full_resolver() {
        let mut buf = [0u8; MAX_QUERY];
        for bad in [
            "",
            ".",
            "a..b",
            "a..",
            "é.example",
            "a\\.b.example",
            "sp ace.example",
        ] {
            assert_eq!(txt_query(1, bad, &mut buf), None, "{bad:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(txt_query(1, &long_label, &mut buf), None);
        // 255 bytes on the wire at most (RFC 1035 §2.3.4): 3 × (1 + 63) + (1 + 61) + 1
        // = 255 fits, one more byte in a label does not.
        let label = "a".repeat(63);
        let fits = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        let n = txt_query(1, &fits, &mut buf).unwrap();
        assert_eq!(n, MAX_QUERY);
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().queries[0]
                .name()
                .num_labels(),
            4
        );
        let over = format!("{fits}b");
        assert_eq!(txt_query(1, &over, &mut buf), None);
        assert!(txt_query(1, &format!("{fits}."), &mut buf).is_some());
    }

    #[test]
    fn a_txt_answer_is_each_records_strings_concatenated() {
        // SPEC 2.2: strings of one record join without separators; records stay apart.
        let bytes = reply(
            7,
            ResponseCode::NoError,
            vec![txt(&["v=STSv1; ", "id=abc"]), txt(&["other"])],
            None,
        );
        assert_eq!(
            txt_reply(7, NAME, &bytes),
            Reply::Answer(Ok(vec![b"v=STSv1; id=abc".to_vec(), b"other".to_vec()]))
        );
        // Case does not matter in the question (RFC 4343), nor a trailing dot.
        assert!(matches!(
            txt_reply(7, "_MTA-STS.EXAMPLE.COM.", &bytes),
            Reply::Answer(Ok(_))
        ));
    }

    fn record(owner: &str, data: RData) -> Record {
        Record::from_rdata(Name::from_ascii(owner).unwrap(), 300, data)
    }

    fn cname(owner: &str, target: &str) -> Record {
        record(
            owner,
            RData::CNAME(CNAME(Name::from_ascii(target).unwrap())),
        )
    }

    fn txt_at(owner: &str, text: &str) -> Record {
        record(owner, RData::TXT(TXT::new(vec![text.to_string()])))
    }

    #[test]
    fn only_txt_records_of_the_name_or_its_cname_chain_count() {
        // SPEC 2.1: the chain is followed; SPEC 2.4 counts the records of the name, so
        // a stray TXT record elsewhere in the answer must not make it "multiple".
        let answers = vec![
            cname("_MTA-STS.example.com.", "sts.provider.net."),
            cname("sts.provider.net.", "sts2.provider.net."),
            txt_at("sts2.provider.net.", "v=STSv1; id=1"),
            txt_at("unrelated.example.org.", "v=STSv1; id=2"),
        ];
        let bytes = reply(4, ResponseCode::NoError, answers, None);
        assert_eq!(
            txt_reply(4, NAME, &bytes),
            Reply::Answer(Ok(vec![b"v=STSv1; id=1".to_vec()]))
        );
        // Records of another class are not ours either.
        let mut other_class = txt_at("_mta-sts.example.com.", "v=STSv1; id=3");
        other_class.dns_class = DNSClass::CH;
        let bytes = reply(4, ResponseCode::NoError, vec![other_class], None);
        assert_eq!(
            txt_reply(4, NAME, &bytes),
            Reply::Answer(Err(DnsError::NoRecords {
                nxdomain: false,
                negative_ttl: None
            }))
        );
    }

    #[test]
    fn a_cname_without_its_target_goes_to_the_full_resolver() {
        // The full resolver follows the alias with a query of its own; "no record"
        // here would cache a negative answer for a domain that may have a policy.
        let bytes = reply(
            4,
            ResponseCode::NoError,
            vec![cname("_mta-sts.example.com.", "sts.provider.net.")],
            None,
        );
        assert_eq!(
            txt_reply(4, NAME, &bytes),
            Reply::Defer("CNAME chain not followed to its end")
        );
        // A loop ends the chain too.
        let looped = vec![
            cname("_mta-sts.example.com.", "a.example.net."),
            cname("a.example.net.", "_mta-sts.example.com."),
        ];
        let bytes = reply(4, ResponseCode::NoError, looped, None);
        assert_eq!(
            txt_reply(4, NAME, &bytes),
            Reply::Defer("CNAME chain not followed to its end")
        );
    }

    #[test]
    fn nxdomain_and_nodata_are_no_records_with_the_soa_negative_ttl() {
        // SPEC 2.6, 5.6; RFC 2308 §5: min(SOA TTL, MINIMUM).
        let nx = reply(9, ResponseCode::NXDomain, vec![], Some((900, 300)));
        assert_eq!(
            txt_reply(9, NAME, &nx),
            Reply::Answer(Err(DnsError::NoRecords {
                nxdomain: true,
                negative_ttl: Some(300)
            }))
        );
        let nodata = reply(9, ResponseCode::NoError, vec![], Some((60, 300)));
        assert_eq!(
            txt_reply(9, NAME, &nodata),
            Reply::Answer(Err(DnsError::NoRecords {
                nxdomain: false,
                negative_ttl: Some(60)
            }))
        );
        let bare = reply(9, ResponseCode::NoError, vec![], None);
        assert_eq!(
            txt_reply(9, NAME, &bare),
            Reply::Answer(Err(DnsError::NoRecords {
                nxdomain: false,
                negative_ttl: None
            }))
        );
    }

    #[test]
    fn replies_to_other_queries_are_ignored() {
        let ok = reply(
            5,
            ResponseCode::NoError,
            vec![txt(&["v=STSv1; id=1"])],
            None,
        );
        // Another id (a spoofing guess, a late reply to an earlier query).
        assert_eq!(txt_reply(6, NAME, &ok), Reply::NotOurs);
        // Another question.
        assert_eq!(txt_reply(5, "_mta-sts.example.org", &ok), Reply::NotOurs);
        assert_eq!(
            txt_reply(5, "_mta-sts.example.com.evil", &ok),
            Reply::NotOurs
        );
        assert_eq!(txt_reply(5, "example.com", &ok), Reply::NotOurs);
        // A query, not a response (our own packet reflected back).
        assert_eq!(txt_reply(5, NAME, &query_bytes(5, NAME)), Reply::NotOurs);
        // Too short to be a message.
        assert_eq!(txt_reply(5, NAME, &ok[..11]), Reply::NotOurs);
        // Another type in the question.
        let mut m = Message::from_vec(&ok).unwrap();
        m.queries[0].set_query_type(RecordType::A);
        assert_eq!(txt_reply(5, NAME, &m.to_vec().unwrap()), Reply::NotOurs);
    }

    #[test]
    fn truncated_error_and_garbled_replies_go_to_the_full_resolver() {
        let mut m = Message::from_vec(&reply(3, ResponseCode::NoError, vec![], None)).unwrap();
        m.metadata.truncation = true;
        assert_eq!(
            txt_reply(3, NAME, &m.to_vec().unwrap()),
            Reply::Defer("truncated reply")
        );
        for code in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::FormErr,
        ] {
            let bytes = reply(3, code, vec![], None);
            assert_eq!(
                txt_reply(3, NAME, &bytes),
                Reply::Defer("error response code"),
                "{code:?}"
            );
        }
        let ok = reply(
            3,
            ResponseCode::NoError,
            vec![txt(&["v=STSv1; id=1"])],
            None,
        );
        assert_eq!(
            txt_reply(3, NAME, &ok[..ok.len() - 3]),
            Reply::Defer("unparsable reply")
        );
        // An error without the question (FORMERR from a server that knows no EDNS).
        let mut formerr = Message::new(3, MessageType::Response, OpCode::Query);
        formerr.metadata.response_code = ResponseCode::FormErr;
        assert_eq!(
            txt_reply(3, NAME, &formerr.to_vec().unwrap()),
            Reply::Defer("error response code")
        );
        // But a NOERROR without the question is not an answer to ours.
        let empty = Message::new(3, MessageType::Response, OpCode::Query);
        assert_eq!(txt_reply(3, NAME, &empty.to_vec().unwrap()), Reply::NotOurs);
    }
}
