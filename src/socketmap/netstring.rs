//! Netstrings: `<decimal length>:<bytes>,` (SPEC 1.1, 1.4).
//!
//! `tokio-netstring` splits on the first `,`, which breaks on payloads holding
//! commas; this codec counts bytes instead and refuses oversized frames before
//! buffering them.

use bytes::{Buf, Bytes, BytesMut};

/// SPEC 1.4: a request longer than this gets `PERM` and the connection is closed.
pub const MAX_REQUEST: usize = 10_000;

/// Largest number of length digits we wait for: enough for [`MAX_REQUEST`], and small
/// enough that a peer sending endless digits is refused at once.
const MAX_DIGITS: usize = 5;

/// Framing errors. Every one is fatal to the connection (SPEC 1.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed netstring length")]
    BadLength,
    #[error("request of {0} bytes is over the {MAX_REQUEST}-byte limit")]
    TooLong(usize),
    #[error("netstring does not end with ','")]
    MissingComma,
}

/// A complete netstring at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where the payload is in the buffer.
    pub payload: std::ops::Range<usize>,
    /// Bytes the whole netstring takes (length, `:`, payload, `,`).
    pub len: usize,
}

/// Find the netstring at the front of `buf` without copying or consuming anything:
/// the server answers from `&buf[frame.payload]` and then drops `frame.len` bytes.
///
/// `Ok(None)` means "need more bytes".
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    let mut len: usize = 0;
    let mut digits = 0;
    for &b in buf {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > MAX_DIGITS {
                    return Err(FrameError::TooLong(len));
                }
                len = len * 10 + usize::from(b - b'0');
            }
            b':' if digits > 0 => break,
            _ => return Err(FrameError::BadLength),
        }
    }
    if len > max {
        return Err(FrameError::TooLong(len));
    }
    let header = digits + 1;
    if buf.len() < header + len + 1 {
        // Either the ':' has not arrived yet, or the payload and ',' have not.
        return Ok(None);
    }
    if buf[header + len] != b',' {
        return Err(FrameError::MissingComma);
    }
    Ok(Some(Frame {
        payload: header..header + len,
        len: header + len + 1,
    }))
}

/// Take one netstring payload off the front of `buf`.
///
/// `Ok(None)` means "need more bytes" (the buffer is left untouched); a complete frame
/// is removed from `buf`, so calling again yields the next pipelined request.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(frame) = decode_frame(buf, max)? else {
        return Ok(None);
    };
    buf.advance(frame.payload.start);
    let payload = buf.split_to(frame.payload.len()).freeze();
    buf.advance(1);
    Ok(Some(payload))
}

/// Append `payload` as a netstring to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    encode_parts(&[payload], out);
}

/// Append the concatenation of `parts` as one netstring, without building it first.
pub fn encode_parts(parts: &[&[u8]], out: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Decimal digits of the length, written back to front into a stack buffer.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.reserve(digits.len() - at + len + 2);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b":");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b",");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(input: &[u8]) -> (Result<Option<Bytes>, FrameError>, usize) {
        let mut buf = BytesMut::from(input);
        let r = decode(&mut buf, MAX_REQUEST);
        (r, buf.len())
    }

    type Row = (
        &'static [u8],
        Result<Option<&'static [u8]>, FrameError>,
        usize,
    );

    #[test]
    fn decode_table() {
        // SPEC 1.1 framing, SPEC 1.4 limits.
        let cases: &[Row] = &[
            (b"", Ok(None), 0),
            (b"1", Ok(None), 1),
            (b"12", Ok(None), 2),
            (b"5:", Ok(None), 2),
            (b"5:hell", Ok(None), 6),
            (b"5:hello", Ok(None), 7),
            (b"5:hello,", Ok(Some(b"hello")), 0),
            (b"5:hello,3:abc,", Ok(Some(b"hello")), 6),
            (b"0:,", Ok(Some(b"")), 0),
            (b"3:a,b,", Ok(Some(b"a,b")), 0), // commas inside the payload
            (b"5:hello;", Err(FrameError::MissingComma), 8),
            (b":hello,", Err(FrameError::BadLength), 7),
            (b"x:hello,", Err(FrameError::BadLength), 8),
            (b"-5:hello,", Err(FrameError::BadLength), 9),
            (b" 5:hello,", Err(FrameError::BadLength), 9),
            (b"5 :hello,", Err(FrameError::BadLength), 9),
            (b"10001:", Err(FrameError::TooLong(10001)), 6),
            (b"10000:", Ok(None), 6),
            (b"999999", Err(FrameError::TooLong(99999)), 6),
        ];
        for (input, want, left) in cases {
            let (got, rest) = dec(input);
            let want = want.clone().map(|o| o.map(Bytes::copy_from_slice));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
            assert_eq!(
                rest,
                *left,
                "bytes left for {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn request_of_exactly_the_cap_is_accepted_spec_1_4() {
        let payload = vec![b'a'; MAX_REQUEST];
        let mut out = BytesMut::new();
        encode(&payload, &mut out);
        let got = decode(&mut out, MAX_REQUEST).unwrap().unwrap();
        assert_eq!(got.len(), MAX_REQUEST);
    }

    #[test]
    fn split_reads_assemble_spec_1_1() {
        let mut wire = BytesMut::new();
        encode(b"postfix example.com", &mut wire);
        encode(b"postfix example.net", &mut wire);
        let wire = wire.freeze();
        // Feed one byte at a time: frames appear exactly when complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = decode(&mut buf, MAX_REQUEST).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![&b"postfix example.com"[..], &b"postfix example.net"[..]]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_table() {
        for (payload, want) in [
            (&b""[..], &b"0:,"[..]),
            (b"NOTFOUND ", b"9:NOTFOUND ,"),
            (b"OK secure", b"9:OK secure,"),
        ] {
            let mut out = BytesMut::new();
            encode(payload, &mut out);
            assert_eq!(&out[..], want);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&input[..]);
            let _ = decode(&mut buf, MAX_REQUEST);
        }

        #[test]
        fn roundtrip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5)) {
            let mut wire = BytesMut::new();
            for p in &payloads { encode(p, &mut wire); }
            for p in &payloads {
                let got = decode(&mut wire, MAX_REQUEST).unwrap().unwrap();
                prop_assert_eq!(&got[..], &p[..]);
            }
            prop_assert!(wire.is_empty());
        }
    }
}
