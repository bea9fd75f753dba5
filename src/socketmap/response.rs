//! Socketmap replies (SPEC 1.3).

use bytes::BytesMut;

use super::netstring;

/// SPEC 1.4: Postfix refuses replies of 100 000 bytes or more.
pub const MAX_REPLY: usize = 100_000;

/// Whether the reply `OK <data>`, with `data_len` bytes of data, stays under
/// [`MAX_REPLY`] once framed as a netstring (`<length>:OK <data>,`), as SPEC 1.4
/// asks. The one place the limit is checked (`crate::postfix` re-exports it).
pub fn fits_reply(data_len: usize) -> bool {
    let payload = "OK ".len() + data_len;
    let digits = payload.checked_ilog10().map_or(1, |d| d as usize + 1);
    payload + digits + ":,".len() < MAX_REPLY
}

/// One reply. `Ok` is never built with empty data (SPEC 1.3: Postfix would defer the
/// mail as an invalid policy); see [`Reply::ok`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    NotFound,
    Temp(String),
    Timeout(String),
    Perm(String),
}

impl Reply {
    /// `OK <data>`; `NOTFOUND ` if `data` is empty (SPEC 1.3) or too long for Postfix
    /// (SPEC 1.4; logged, since the policy then cannot be enforced).
    pub fn ok(data: String) -> Reply {
        if data.is_empty() {
            Reply::NotFound
        } else if !fits_reply(data.len()) {
            log::warn!(
                "answer of {} bytes is too long for Postfix; answering NOTFOUND",
                data.len()
            );
            Reply::NotFound
        } else {
            Reply::Ok(data)
        }
    }

    /// Append this reply, netstring-framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let (status, data) = match self {
            Reply::Ok(d) => ("OK ", d.as_str()),
            // SPEC 1.3: with its trailing space.
            Reply::NotFound => ("NOTFOUND ", ""),
            Reply::Temp(d) => ("TEMP ", d.as_str()),
            Reply::Timeout(d) => ("TIMEOUT ", d.as_str()),
            Reply::Perm(d) => ("PERM ", d.as_str()),
        };
        netstring::encode_parts(&[status.as_bytes(), data.as_bytes()], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: Reply) -> String {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn replies_on_the_wire_spec_1_3() {
        assert_eq!(wire(Reply::NotFound), "9:NOTFOUND ,");
        assert_eq!(
            wire(Reply::Ok("secure match=mx.example.com".into())),
            "30:OK secure match=mx.example.com,"
        );
        assert_eq!(wire(Reply::Perm("bad".into())), "8:PERM bad,");
        assert_eq!(wire(Reply::Temp("dns".into())), "8:TEMP dns,");
        assert_eq!(wire(Reply::Timeout("x".into())), "9:TIMEOUT x,");
    }

    #[test]
    fn ok_with_empty_data_is_notfound_spec_1_3() {
        assert_eq!(Reply::ok(String::new()), Reply::NotFound);
        assert_eq!(Reply::ok("secure".into()), Reply::Ok("secure".into()));
    }

    #[test]
    fn replies_stay_under_100000_bytes_spec_1_4() {
        let big = "a".repeat(MAX_REPLY - 20);
        assert_eq!(wire(Reply::ok(big.clone())).len(), MAX_REPLY - 20 + 3 + 7);
        assert_eq!(Reply::ok("a".repeat(MAX_REPLY)), Reply::NotFound);
        assert_eq!(Reply::ok("a".repeat(MAX_REPLY - 10)), Reply::NotFound);
        assert!(matches!(
            Reply::ok("a".repeat(MAX_REPLY - 11)),
            Reply::Ok(_)
        ));
    }
}
