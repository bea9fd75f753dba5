//! A DNS answer for `bench-dns`: every TXT question gets one fixed TXT record, any
//! other type an empty NOERROR answer. Just enough of RFC 1035 §4.1 for a resolver
//! on loopback, so mtastsd's background TXT re-checks find an unchanged id at once
//! instead of waiting for a timeout.

/// RFC 1035 §3.2.2: TYPE TXT.
const TYPE_TXT: u16 = 16;

/// The reply to `query` (one UDP datagram), or `None` when it is not a query we
/// can parse (dropped, as a real server might).
pub fn answer(query: &[u8], txt: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 {
        return None;
    }
    // The question: labels up to the root label, then QTYPE and QCLASS.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len & 0xC0 != 0 {
            return None; // no compression in a question we accept
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..at + 4)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let is_txt = qtype == TYPE_TXT;

    let mut out = Vec::with_capacity(question.len() + txt.len() + 32);
    out.extend_from_slice(&query[0..2]); // ID
                                         // QR, the query's opcode and RD, RA; RCODE 0.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80);
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&u16::from(is_txt).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(question);
    if is_txt {
        out.extend_from_slice(&[0xC0, 12]); // the name: a pointer to the question's
        out.extend_from_slice(&TYPE_TXT.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&300u32.to_be_bytes()); // TTL
                                                      // RDATA: character-strings of at most 255 bytes each.
        let chunks: Vec<&[u8]> = txt.chunks(255).collect();
        let rdlength = txt.len() + chunks.len().max(1);
        out.extend_from_slice(&u16::try_from(rdlength).ok()?.to_be_bytes());
        if chunks.is_empty() {
            out.push(0);
        }
        for c in chunks {
            out.push(c.len() as u8);
            out.extend_from_slice(c);
        }
    }
    Some(out)
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
    fn other_types_and_garbage() {
        let a = answer(&query("d1.bench.test", 1), b"x").unwrap();
        assert_eq!(&a[6..8], &[0, 0], "A: NODATA");
        assert_eq!(answer(b"short", b"x"), None);
        let mut q = query("x.test", TYPE_TXT);
        q.truncate(q.len() - 2);
        assert_eq!(answer(&q, b"x"), None);
    }
}
