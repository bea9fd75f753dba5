//! Netstrings (`<decimal length>:<bytes>,`) and the socketmap replies they carry
//! (SPEC 1.1, 1.3). Strict on purpose: the load generator must notice any reply a
//! Postfix client would reject, so it counts them instead of skipping them.

use std::fmt;
use std::ops::Range;

/// Postfix refuses replies over 100 000 bytes (SPEC 1.4).
pub const MAX_REPLY: usize = 100_000;
/// SPEC 1.4: the request size limit of the server; the baseline uses the same.
pub const MAX_REQUEST: usize = 10_000;

/// Why bytes are not a well-formed netstring or socketmap reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Not digits then `:`, or a leading zero (`01:`), or no digits at all.
    BadLength,
    /// Longer than the limit.
    TooLong,
    /// The byte after the payload is not `,`.
    MissingComma,
    /// The payload is not `OK <data>`, `NOTFOUND `, `TEMP ...`, `TIMEOUT ...` or `PERM ...`.
    UnknownStatus,
    /// `OK` with no data (SPEC 1.3: Postfix defers the mail).
    EmptyOk,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::BadLength => "malformed netstring length",
            ReplyError::TooLong => "netstring over the length limit",
            ReplyError::MissingComma => "netstring does not end with ','",
            ReplyError::UnknownStatus => "unknown reply status",
            ReplyError::EmptyOk => "OK reply without data",
        })
    }
}

impl std::error::Error for ReplyError {}

/// The status word of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    NotFound,
    Temp,
    Timeout,
    Perm,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::NotFound,
        Status::Temp,
        Status::Timeout,
        Status::Perm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOTFOUND",
            Status::Temp => "TEMP",
            Status::Timeout => "TIMEOUT",
            Status::Perm => "PERM",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Find one netstring at the front of `buf`: the payload's range and the bytes the
/// whole frame takes. `Ok(None)`: incomplete, read more.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(Range<usize>, usize)>, ReplyError> {
    // Digits needed for `max`, so endless digits are refused at once.
    let max_digits = max.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut len: usize = 0;
    let mut digits = 0;
    let mut colon = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                // "0:" is the empty netstring; "01:" is not a netstring.
                if digits == 1 && len == 0 {
                    return Err(ReplyError::BadLength);
                }
                digits += 1;
                if digits > max_digits {
                    return Err(ReplyError::TooLong);
                }
                len = len * 10 + usize::from(b - b'0');
            }
            b':' if digits > 0 => {
                colon = Some(i);
                break;
            }
            _ => return Err(ReplyError::BadLength),
        }
    }
    if len > max {
        return Err(ReplyError::TooLong);
    }
    let Some(colon) = colon else {
        return Ok(None);
    };
    let start = colon + 1;
    let end = start + len;
    if buf.len() <= end {
        return Ok(None);
    }
    if buf[end] != b',' {
        return Err(ReplyError::MissingComma);
    }
    Ok(Some((start..end, end + 1)))
}

/// The status of a reply payload (SPEC 1.3). `NOTFOUND ` must be exactly that;
/// `OK` needs data; `TEMP`, `TIMEOUT` and `PERM` take any reason, empty included.
pub fn status(payload: &[u8]) -> Result<Status, ReplyError> {
    if payload == b"NOTFOUND " {
        return Ok(Status::NotFound);
    }
    let Some(space) = payload.iter().position(|&b| b == b' ') else {
        return Err(if payload == b"OK" {
            ReplyError::EmptyOk
        } else {
            ReplyError::UnknownStatus
        });
    };
    let (word, rest) = (&payload[..space], &payload[space + 1..]);
    match word {
        b"OK" if rest.is_empty() => Err(ReplyError::EmptyOk),
        b"OK" => Ok(Status::Ok),
        b"TEMP" => Ok(Status::Temp),
        b"TIMEOUT" => Ok(Status::Timeout),
        b"PERM" => Ok(Status::Perm),
        _ => Err(ReplyError::UnknownStatus),
    }
}

/// A reply's status and the bytes it took; `None`: incomplete.
pub type Parsed = Result<Option<(Status, usize)>, ReplyError>;

/// One reply off the front of `buf`.
pub fn parse_reply(buf: &[u8]) -> Parsed {
    match frame(buf, MAX_REPLY)? {
        Some((payload, used)) => Ok(Some((status(&buf[payload])?, used))),
        None => Ok(None),
    }
}

/// Append `payload` as a netstring.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// The request `<map> <key>`, framed.
pub fn request(map: &str, key: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(map.len() + 1 + key.len());
    payload.extend_from_slice(map.as_bytes());
    payload.push(b' ');
    payload.extend_from_slice(key.as_bytes());
    let mut out = Vec::with_capacity(payload.len() + 8);
    encode(&payload, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (bytes, expected): every status, split frames, and each way to be malformed.
    #[test]
    fn parse_reply_table() {
        use ReplyError::*;
        use Status::{NotFound, Perm, Temp, Timeout};
        const OK: Status = Status::Ok;
        let cases: &[(&[u8], Parsed)] = &[
            (b"9:NOTFOUND ,", Ok(Some((NotFound, 12)))),
            (b"4:OK x,", Ok(Some((OK, 7)))),
            (b"8:OK a,b:c,", Ok(Some((OK, 11)))),
            (b"5:TEMP ,", Ok(Some((Temp, 8)))),
            (b"12:TIMEOUT slow,", Ok(Some((Timeout, 16)))),
            (b"8:PERM bad,", Ok(Some((Perm, 11)))),
            // Two replies in one read: only the first is taken.
            (b"4:OK x,9:NOTFOUND ,", Ok(Some((OK, 7)))),
            // Incomplete: need more bytes.
            (b"", Ok(None)),
            (b"1", Ok(None)),
            (b"12", Ok(None)),
            (b"9:", Ok(None)),
            (b"9:NOTFOUND ", Ok(None)),
            // Malformed.
            (b":", Err(BadLength)),
            (b"x", Err(BadLength)),
            (b"09:NOTFOUND ,", Err(BadLength)),
            (b"-1:", Err(BadLength)),
            (b"9:NOTFOUND ;", Err(MissingComma)),
            (b"1000000", Err(TooLong)),
            (b"100001:", Err(TooLong)),
            (b"8:NOTFOUND,", Err(UnknownStatus)),
            (b"10:NOTFOUND x,", Err(UnknownStatus)),
            (b"2:OK,", Err(EmptyOk)),
            (b"3:OK ,", Err(EmptyOk)),
            (b"4:ok x,", Err(UnknownStatus)),
            (b"0:,", Err(UnknownStatus)),
            (b"5:HELLO,", Err(UnknownStatus)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &parse_reply(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Fed one byte at a time, a reply is incomplete until its last byte.
    #[test]
    fn split_reply() {
        let mut reply = Vec::new();
        encode(
            b"OK secure match=mx.example.net servername=hostname",
            &mut reply,
        );
        assert!(reply.starts_with(b"50:"));
        for cut in 0..reply.len() {
            assert_eq!(parse_reply(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_reply(&reply), Ok(Some((Status::Ok, reply.len()))));
    }

    #[test]
    fn request_framing() {
        assert_eq!(
            request("postfix", "d7.bench.test"),
            b"21:postfix d7.bench.test,".to_vec()
        );
        let mut out = Vec::new();
        encode(b"", &mut out);
        assert_eq!(out, b"0:,");
        assert_eq!(frame(&out, 10), Ok(Some((2..2, 3))));
    }
}
