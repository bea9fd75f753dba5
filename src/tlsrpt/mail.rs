//! The report mail of RFC 8460 §5.3 (SPEC 8.4): a `multipart/report;
//! report-type="tlsrpt"` message with a short human-readable part and the gzipped
//! report as `application/tlsrpt+gzip`, the `TLS-Report-Domain` and
//! `TLS-Report-Submitter` fields, and `TLS-Required: No` (RFC 8689 §5: deliver it
//! despite TLS failures; Postfix 3.10.4+ then also skips TLSRPT for it, SPEC 8.5).
//! Pure: bytes in, bytes out.
//!
//! The message is 7-bit ASCII with CRLF line ends and no line over 78 characters
//! but where a single word is longer (the file name, kept whole rather than split
//! by RFC 2231 continuations that not every receiver reads): what sendmail(1) and
//! every receiver accept as is. Header input that is not printable ASCII is refused, not encoded: every
//! value here (addresses, domains, the report-id) is ASCII by construction, so
//! anything else is a mistake upstream.

use super::aggregate::Day;
use super::report::{self, ReportError};

/// What one report mail is made of; the caller fills in the clock and the ids.
#[derive(Debug, Clone, Copy)]
pub struct MailParts<'a> {
    /// The envelope and header sender (the `[tlsrpt]` sender address).
    pub from: &'a str,
    /// The `mailto:` address of the `rua`, decoded.
    pub to: &'a str,
    /// The policy domain the report is about (`TLS-Report-Domain`).
    pub domain: &'a str,
    /// The submitter domain (`TLS-Report-Submitter`, RFC 8460 §5.3).
    pub submitter: &'a str,
    /// The report's `report-id`, in the subject's `<id@submitter>`.
    pub report_id: &'a str,
    /// The attachment's name, [`report::file_name`].
    pub file_name: &'a str,
    /// For the human-readable part.
    pub organization_name: &'a str,
    /// RFC 5322 §3.3 date-time, e.g. from [`rfc5322_date`].
    pub date: &'a str,
    /// RFC 5322 §3.6.4 msg-id without the angle brackets: `left@right`.
    pub message_id: &'a str,
    /// The gzipped report, attached as it is.
    pub gz: &'a [u8],
}

/// Why no message was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    #[error("{field}: {why}")]
    Field {
        field: &'static str,
        why: &'static str,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Base64 lines: 76 characters (RFC 2045 §6.8).
const B64_LINE: usize = 76;
/// RFC 5322 §2.1.1: lines SHOULD be at most 78 characters.
const FOLD_AT: usize = 78;

/// What goes into a header or a quoted parameter is printable ASCII, and fits.
fn check_fields(p: &MailParts<'_>) -> Result<(), MailError> {
    check_addr("from", p.from)?;
    check_addr("to", p.to)?;
    check_text("date", p.date)?;
    check_addr("message_id", p.message_id)?;
    check_text("organization_name", p.organization_name)?;
    // Inside a quoted-string (RFC 2045 §5.1) without escapes.
    check_text("file_name", p.file_name)?;
    if p.file_name.contains(['"', '\\', ' ']) {
        return Err(MailError::Field {
            field: "file_name",
            why: "contains a quote, backslash or space",
        });
    }
    // RFC 5322 §2.1.1: no line over 998 characters; the name is one unbreakable
    // word of its line (RFC 8460 §5.1 names of two 253-character domains fit).
    if p.file_name.len() > 900 {
        return Err(MailError::Field {
            field: "file_name",
            why: "longer than 900 characters",
        });
    }
    Ok(())
}

/// The RFC 8460 §5.3 message, CRLF line ends.
pub fn message(p: &MailParts<'_>) -> Result<Vec<u8>, MailError> {
    let subject = report::subject(p.submitter, p.domain, p.report_id)?;
    check_fields(p)?;

    let text = fold_words(
        &format!(
            "This is an aggregate TLS report from {} for {}: the sessions of one UTC \
             day, the report-id is {}. The report is attached as JSON, gzipped \
             (RFC 8460).",
            p.organization_name, p.domain, p.report_id
        ),
        "",
    );
    let attachment = base64_lines(p.gz);
    let boundary = boundary(p.report_id, &[&text, &attachment]);

    let mut out = String::with_capacity(attachment.len() + 2048);
    let mut field = |name: &str, value: &str| {
        out.push_str(&fold_words(&format!("{name}: {value}"), " "));
    };
    field("From", p.from);
    field("To", p.to);
    field("Date", p.date);
    field("Message-ID", &format!("<{}>", p.message_id));
    field("Subject", &subject);
    field("MIME-Version", "1.0");
    field("TLS-Report-Domain", p.domain);
    field("TLS-Report-Submitter", p.submitter);
    // RFC 8689 §5; RFC 8460 §3: reports must be delivered despite TLS failures.
    field("TLS-Required", "No");
    // RFC 3834 §5: no auto-replies to it.
    field("Auto-Submitted", "auto-generated");
    field(
        "Content-Type",
        &format!("multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\""),
    );
    out.push_str("\r\n");
    out.push_str(&format!("--{boundary}\r\n"));
    out.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    out.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
    out.push_str(&text);
    out.push_str(&format!("--{boundary}\r\n"));
    out.push_str(&fold_words(
        &format!(
            "Content-Type: application/tlsrpt+gzip; name=\"{}\"",
            p.file_name
        ),
        " ",
    ));
    out.push_str(&fold_words(
        &format!(
            "Content-Disposition: attachment; filename=\"{}\"",
            p.file_name
        ),
        " ",
    ));
    out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    out.push_str(&attachment);
    out.push_str(&format!("--{boundary}--\r\n"));
    Ok(out.into_bytes())
}

/// RFC 5322 §3.3 `date-time` of a Unix time, in UTC: `Thu, 15 Jan 2026 04:05:06 +0000`.
pub fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let day = Day::from_unix(unix);
    let (y, m, d) = day.ymd();
    let secs = unix - day.start_unix();
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[day.0.rem_euclid(7) as usize], // 1970-01-01 was a Thursday
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Printable ASCII, spaces allowed, not empty: safe in a header and a text part.
fn check_text(field: &'static str, v: &str) -> Result<(), MailError> {
    if v.is_empty() {
        return Err(MailError::Field {
            field,
            why: "empty",
        });
    }
    if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(MailError::Field {
            field,
            why: "not printable ASCII",
        });
    }
    Ok(())
}

/// An addr-spec (or msg-id) as one printable ASCII word with an `@`.
fn check_addr(field: &'static str, v: &str) -> Result<(), MailError> {
    check_text(field, v)?;
    if v.contains([' ', '<', '>']) || !v.contains('@') {
        return Err(MailError::Field {
            field,
            why: "not a single local@domain",
        });
    }
    Ok(())
}

/// Lines of at most 78 characters where words allow, broken at spaces, each ending
/// in CRLF; continuation lines begin with `indent` (" " folds a header field,
/// RFC 5322 §2.2.3; "" wraps body text). A single longer word stays whole.
fn fold_words(text: &str, indent: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > FOLD_AT {
            out.push_str(&line);
            out.push_str("\r\n");
            line = indent.to_string();
            line.push_str(word);
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

/// RFC 2045 §6.8 base64 in lines of 76 characters, each ending in CRLF.
fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                flat.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                flat.push(b'=');
            }
        }
    }
    let mut out = String::with_capacity(flat.len() + flat.len() / B64_LINE * 2 + 2);
    for line in flat.chunks(B64_LINE) {
        // The alphabet is ASCII.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// A boundary found in none of the parts (RFC 2046 §5.1.1). `=_` cannot occur in
/// base64, and the counter settles any text part that happens to contain it.
fn boundary(report_id: &str, parts: &[&str]) -> String {
    let base: String = report_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    (0u32..)
        .map(|n| format!("=_tlsrpt_{base}_{n}"))
        .find(|b| !parts.iter().any(|p| p.contains(b.as_str())))
        .expect("some counter value is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GZ: &[u8] = &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3];

    fn parts(gz: &[u8]) -> MailParts<'_> {
        MailParts {
            from: "tlsrpt-noreply@mail.example",
            to: "tlsrpt@rpt.example",
            domain: "rpt.example",
            submitter: "mail.example",
            report_id: "20260115.0123456789abcdef",
            file_name:
                "mail.example!rpt.example!1768435200!1768521599!202601150123456789abcdef.json.gz",
            organization_name: "Example Mail",
            date: "Fri, 16 Jan 2026 06:00:00 +0000",
            message_id: "20260115.0123456789abcdef.1@mail.example",
            gz,
        }
    }

    fn text(p: &MailParts<'_>) -> String {
        String::from_utf8(message(p).unwrap()).unwrap()
    }

    /// The header section, unfolded, as (name, value) pairs.
    fn headers(msg: &str) -> Vec<(String, String)> {
        let head = msg.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        head.split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    /// RFC 8460 §5.3, SPEC 8.4: the header fields, in this order.
    #[test]
    fn rfc8460_5_3_header_fields() {
        let msg = text(&parts(GZ));
        let h = headers(&msg);
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Date",
                "Message-ID",
                "Subject",
                "MIME-Version",
                "TLS-Report-Domain",
                "TLS-Report-Submitter",
                "TLS-Required",
                "Auto-Submitted",
                "Content-Type"
            ]
        );
        let get = |n: &str| h.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("From"), "tlsrpt-noreply@mail.example");
        assert_eq!(get("To"), "tlsrpt@rpt.example");
        assert_eq!(
            get("Message-ID"),
            "<20260115.0123456789abcdef.1@mail.example>"
        );
        assert_eq!(
            get("Subject"),
            "Report Domain: rpt.example Submitter: mail.example \
             Report-ID: <20260115.0123456789abcdef@mail.example>"
        );
        assert_eq!(get("TLS-Report-Domain"), "rpt.example");
        assert_eq!(get("TLS-Report-Submitter"), "mail.example");
        assert_eq!(get("TLS-Required"), "No");
        assert_eq!(get("Auto-Submitted"), "auto-generated");
        assert_eq!(
            get("Content-Type"),
            "multipart/report; report-type=\"tlsrpt\"; \
             boundary=\"=_tlsrpt_202601150123456789abcdef_0\""
        );
    }

    /// CRLF only, ASCII only, no line over 78 characters but for one long word
    /// (the file name) on a folded line of its own.
    #[test]
    fn crlf_ascii_short_lines() {
        let gz: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let msg = message(&parts(&gz)).unwrap();
        assert!(msg.is_ascii());
        let s = String::from_utf8(msg).unwrap();
        assert!(s.ends_with("\r\n"));
        assert!(
            !s.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
        for line in s.split("\r\n") {
            let one_word = line.strip_prefix(' ').is_some_and(|w| !w.contains(' '));
            assert!(line.len() <= 78 || one_word, "{} chars: {line}", line.len());
        }
        // Base64 lines are 76 long but the last.
        let b64: Vec<&str> = s
            .split("\r\n\r\n")
            .nth(3)
            .unwrap()
            .split("\r\n")
            .take_while(|l| !l.starts_with("--"))
            .collect();
        assert!(b64.len() > 2);
        assert!(b64[..b64.len() - 1].iter().all(|l| l.len() == 76));
    }

    /// RFC 8460 §5.3: the human part, then the report as application/tlsrpt+gzip
    /// with the §5.1 file name.
    #[test]
    fn rfc8460_5_3_parts() {
        let msg = text(&parts(GZ));
        let b = "=_tlsrpt_202601150123456789abcdef_0";
        let body = msg.split_once("\r\n\r\n").unwrap().1;
        let pieces: Vec<&str> = body.split(&format!("--{b}")).collect();
        assert_eq!(pieces.len(), 4, "{body}");
        assert_eq!(pieces[0], "");
        assert_eq!(pieces[3], "--\r\n");
        assert!(pieces[1].starts_with(
            "\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n\
             This is an aggregate TLS report from Example Mail for rpt.example:"
        ));
        let att = pieces[2].replace("\r\n ", " ");
        assert!(att.contains(
            "\r\nContent-Type: application/tlsrpt+gzip; name=\"mail.example!rpt.example!\
             1768435200!1768521599!202601150123456789abcdef.json.gz\"\r\n"
        ));
        assert!(att.contains(
            "\r\nContent-Disposition: attachment; filename=\"mail.example!rpt.example!\
             1768435200!1768521599!202601150123456789abcdef.json.gz\"\r\n"
        ));
        assert!(att.ends_with("Content-Transfer-Encoding: base64\r\n\r\nH4sIAAAAAAAA/wECAw==\r\n"));
    }

    /// Header input that is not printable ASCII is refused, not emitted.
    #[test]
    fn refuses_unsafe_header_input() {
        let gz = GZ;
        type Change = Box<dyn Fn(&mut MailParts<'static>)>;
        let bad: Vec<(&str, Change)> = vec![
            ("from", Box::new(|p| p.from = "tlsrpt@mäil.example")),
            ("from", Box::new(|p| p.from = "a@b\r\nBcc: x@y")),
            ("to", Box::new(|p| p.to = "a b@c")),
            ("to", Box::new(|p| p.to = "nobody")),
            ("to", Box::new(|p| p.to = "")),
            ("date", Box::new(|p| p.date = "Fri\n")),
            ("message_id", Box::new(|p| p.message_id = "<x@y>")),
            (
                "organization_name",
                Box::new(|p| p.organization_name = "Exämple"),
            ),
            (
                "organization_name",
                Box::new(|p| p.organization_name = "a\r\nb"),
            ),
            ("file_name", Box::new(|p| p.file_name = "a\"b.json.gz")),
            (
                "file_name",
                Box::new(|p| p.file_name = "x".repeat(901).leak()),
            ),
        ];
        for (field, change) in bad {
            let mut p = parts(gz);
            change(&mut p);
            match message(&p) {
                Err(MailError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut p = parts(gz);
        p.domain = "rpt.exämple";
        assert!(matches!(message(&p), Err(MailError::Report(_))));
        p = parts(gz);
        p.report_id = "a b";
        assert!(matches!(message(&p), Err(MailError::Report(_))));
    }

    /// A boundary never occurs in a part, whatever the organization name says.
    #[test]
    fn boundary_avoids_the_parts() {
        let mut p = parts(GZ);
        p.organization_name =
            "=_tlsrpt_202601150123456789abcdef_0 =_tlsrpt_202601150123456789abcdef_1";
        let msg = text(&p);
        assert!(
            msg.contains("boundary=\"=_tlsrpt_202601150123456789abcdef_2\""),
            "{msg}"
        );
    }

    #[test]
    fn rfc5322_date_table() {
        for (unix, want) in [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (
                1_768_435_200 + 86_400 + 4 * 3600 + 5 * 60 + 6,
                "Fri, 16 Jan 2026 04:05:06 +0000",
            ),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_767_225_599, "Wed, 31 Dec 2025 23:59:59 +0000"),
        ] {
            assert_eq!(rfc5322_date(unix), want);
        }
    }

    #[test]
    fn base64_table() {
        // RFC 4648 §10.
        for (raw, want) in [
            ("", ""),
            ("f", "Zg==\r\n"),
            ("fo", "Zm8=\r\n"),
            ("foo", "Zm9v\r\n"),
            ("foob", "Zm9vYg==\r\n"),
            ("fooba", "Zm9vYmE=\r\n"),
            ("foobar", "Zm9vYmFy\r\n"),
        ] {
            assert_eq!(base64_lines(raw.as_bytes()), want);
        }
    }

    fn decode_base64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let clean: Vec<u8> = s.bytes().filter(|b| !b"\r\n".contains(b)).collect();
        let mut out = Vec::new();
        for q in clean.chunks(4) {
            let pad = q.iter().filter(|&&c| c == b'=').count();
            let n = q
                .iter()
                .map(|&c| if c == b'=' { 0 } else { u32::from(val(c)) })
                .fold(0u32, |a, v| a << 6 | v);
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
        }
        out
    }

    proptest! {
        /// The attachment decodes back to exactly the bytes given, whatever they are.
        #[test]
        fn attachment_decodes_back(gz in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let msg = text(&parts(&gz));
            let att = msg.split("Content-Transfer-Encoding: base64\r\n\r\n").nth(1).unwrap();
            let b64 = att.split("--=_tlsrpt_").next().unwrap();
            prop_assert!(b64.split("\r\n").all(|l| l.len() <= 76));
            prop_assert_eq!(decode_base64(b64), gz);
        }
    }
}
