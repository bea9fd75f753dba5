//! A DNS answer for `bench-dns`: every TXT question gets one fixed TXT record, any
//! other type an empty NOERROR answer. Just enough of RFC 1035 §4.1 for a resolver
//! on loopback, so mtastsd's background TXT re-checks find an unchanged id at once
//! instead of waiting for a timeout.

/// RFC 1035 §3.2.2: TYPE TXT.
pub const TYPE_TXT: u16 = 16;
/// RFC 1035 §3.2.2: TYPE A.
pub const TYPE_A: u16 = 1;

/// The question of a query: its name (lower case, dotted, no trailing dot), QTYPE,
/// and where the question section ends in the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    end: usize,
}

/// The question of `query` (one UDP datagram), or `None` when it is not a query we
/// can parse (dropped, as a real server might).
pub fn question(query: &[u8]) -> Option<Question> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 {
        return None;
    }
    // The question: labels up to the root label, then QTYPE and QCLASS.
    let mut name = String::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len & 0xC0 != 0 {
            return None; // no compression in a question we accept
        }
        if len > 0 {
            if !name.is_empty() {
                name.push('.');
            }
            let label = query.get(at + 1..at + 1 + len)?;
            name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    query.get(at + 3)?;
    Some(Question {
        name,
        qtype,
        end: at + 4,
    })
}

/// The reply to `query`, whose question is `q`: NOERROR with one answer record of
/// the question's type holding `rdata`, or NOERROR/NODATA when `rdata` is `None`.
pub fn reply(query: &[u8], q: &Question, rdata: Option<&[u8]>) -> Option<Vec<u8>> {
    let question = query.get(12..q.end)?;
    let mut out = Vec::with_capacity(question.len() + rdata.map_or(0, <[u8]>::len) + 32);
    out.extend_from_slice(&query[0..2]); // ID
                                         // QR, the query's opcode and RD; RA; RCODE 0.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80);
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&u16::from(rdata.is_some()).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(question);
    if let Some(rdata) = rdata {
        out.extend_from_slice(&[0xC0, 12]); // the name: a pointer to the question's
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&300u32.to_be_bytes()); // TTL
        out.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
        out.extend_from_slice(rdata);
    }
    Some(out)
}

/// TXT RDATA: `txt` as character-strings of at most 255 bytes each.
pub fn txt_rdata(txt: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txt.len() + txt.len() / 255 + 1);
    if txt.is_empty() {
        out.push(0);
    }
    for c in txt.chunks(255) {
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
    out
}

/// The reply to `query` for `bench-dns`: every TXT question gets `txt`, any other
/// type NOERROR/NODATA; `None` when it is not a query we can parse.
pub fn answer(query: &[u8], txt: &[u8]) -> Option<Vec<u8>> {
    let q = question(query)?;
    let rdata = (q.qtype == TYPE_TXT).then(|| txt_rdata(txt));
    reply(query, &q, rdata.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn txt_answer() {
        let q = query("_mta-sts.d1.bench.test", TYPE_TXT);
        let a = answer(&q, b"v=STSv1; id=bench1").unwrap();
        assert_eq!(&a[0..2], &[0xAB, 0xCD]);
        assert_eq!(a[2] & 0x80, 0x80);
        assert_eq!(a[3] & 0x0F, 0, "NOERROR");
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[12..q.len()], &q[12..]);
        assert!(a.ends_with(b"\x12v=STSv1; id=bench1"));
    }

    #[test]
    fn question_name_and_a_record() {
        let q = query("MTA-STS.d7.Cold.Test", TYPE_A);
        let parsed = question(&q).unwrap();
        assert_eq!(parsed.name, "mta-sts.d7.cold.test");
        assert_eq!(parsed.qtype, TYPE_A);
        let a = reply(&q, &parsed, Some(&[127, 0, 0, 1])).unwrap();
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert!(a.ends_with(&[0, 4, 127, 0, 0, 1]));
    }

    #[test]
    fn other_types_and_garbage() {
        let a = answer(&query("d1.bench.test", 1), b"x").unwrap();
        assert_eq!(&a[6..8], &[0, 0], "A: NODATA");
        assert_eq!(answer(b"short", b"x"), None);
        let mut q = query("x.test", TYPE_TXT);
        q.truncate(q.len() - 2);
        assert_eq!(answer(&q, b"x"), None);
    }
}
