//! The `_smtp._tls.<domain>` TLS-RPT record (RFC 8460 §3), for `mtastsd check`.
//! Pure: no I/O here.
//!
//! ```text
//! tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//! field-delim      = *WSP ";" *WSP
//! tlsrpt-field     = tlsrpt-rua / tlsrpt-extension   ; rua is required
//! tlsrpt-version   = %s"v=TLSRPTv1"
//! tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//! tlsrpt-uri       = URI  ; RFC 3986, with "," and "!" percent-encoded
//! tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
//! tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//! tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
//! ```
//!
//! Choices where RFC 8460 leaves room, as for the STSv1 record (SPEC 2.3, 2.5):
//! spaces before the first `;` are allowed, trailing whitespace without a `;` is not,
//! `rua` must appear exactly once, and only the two schemes RFC 8460 §3 defines
//! (`mailto:`, `https:`) are accepted, since a reporter can use no other.

/// A valid TLS-RPT record: where reports go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsRpt {
    /// The `rua` URIs as written, in order (at least one).
    pub rua: Vec<String>,
}

/// Where one report goes (RFC 8460 §3's `rua` URI, SPEC 8.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An `https:` URI, as written in the record: the report is POSTed there.
    Https(String),
    /// A `mailto:` URI's address, percent-decoded (RFC 6068 §2), without any
    /// `?hfields`: the report is mailed there.
    Mailto(String),
}

impl TlsRpt {
    /// The `rua` URIs a reporter can use, in order (SPEC 8.4). A URI whose address
    /// does not decode to UTF-8 is skipped; [`parse_record`] admits no other scheme.
    pub fn destinations(&self) -> Vec<Destination> {
        self.rua
            .iter()
            .filter_map(|uri| {
                // RFC 3986 §3.1: schemes are case-insensitive.
                let (scheme, rest) = uri.split_once(':')?;
                if scheme.eq_ignore_ascii_case("https") {
                    Some(Destination::Https(uri.clone()))
                } else if scheme.eq_ignore_ascii_case("mailto") {
                    // RFC 6068 §2: `mailto:` to [ "?" hfields ]; RFC 8460 §3 makes the
                    // reporter percent-encode `,` and `!` in the address.
                    let to = rest.split('?').next().unwrap_or_default();
                    percent_decode(to).map(Destination::Mailto)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// RFC 3986 §2.1 percent-decoding; None when the result is not UTF-8 or an escape
/// is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a set of TXT records has no usable TLS-RPT record (RFC 8460 §3: the domain
/// then does not implement TLS-RPT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRptError {
    #[error("no v=TLSRPTv1 record")]
    NoRecord,
    #[error("{0} v=TLSRPTv1 records, exactly one is allowed")]
    Multiple(usize),
    #[error("invalid v=TLSRPTv1 record: {0}")]
    Invalid(String),
}

const VERSION: &str = "v=TLSRPTv1";
const EXT_NAME_MAX: usize = 32;

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 8460 §3: records not beginning with `v=TLSRPTv1` (then optional WSP and `;`)
/// are discarded before counting.
pub fn is_tlsrpt_record(txt: &[u8]) -> bool {
    let Some(rest) = txt.strip_prefix(VERSION.as_bytes()) else {
        return false;
    };
    rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';')
}

/// Parse one record that [`is_tlsrpt_record`] accepted (RFC 8460 §3 grammar).
pub fn parse_record(txt: &[u8]) -> Result<TlsRpt, TlsRptError> {
    let invalid = |why: String| TlsRptError::Invalid(why);
    // Every character the grammar allows is ASCII; this also makes slicing safe.
    let txt = std::str::from_utf8(txt)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| invalid("not ASCII".into()))?;
    let rest = txt
        .strip_prefix(VERSION)
        .ok_or_else(|| invalid("does not begin with v=TLSRPTv1".into()))?;
    let mut pieces = rest.split(';');
    // Before the first `;`: only the delimiter's WSP.
    if !pieces.next().unwrap_or_default().chars().all(is_wsp) || !rest.contains(';') {
        return Err(invalid("expected `;` after v=TLSRPTv1".into()));
    }
    let pieces: Vec<&str> = pieces.collect();
    let mut rua = None;
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let field = piece.trim_start_matches(is_wsp);
        if last && field.is_empty() {
            break; // the optional final delimiter (or no field at all: no rua below)
        }
        // WSP after a field belongs to a following delimiter, so the last field has none.
        if last && field.ends_with(is_wsp) {
            return Err(invalid("trailing whitespace without `;`".into()));
        }
        let field = field.trim_end_matches(is_wsp);
        if field.is_empty() {
            return Err(invalid("empty field".into()));
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(invalid(format!("field {field:?} without `=`")));
        };
        if !is_ext_name(name) {
            return Err(invalid(format!("bad field name {name:?}")));
        }
        if name == "rua" {
            if rua.is_some() {
                return Err(invalid("rua given twice".into()));
            }
            rua = Some(parse_rua(value).map_err(invalid)?);
        } else if value.is_empty() || !value.bytes().all(is_ext_value_char) {
            return Err(invalid(format!("bad value for {name}: {value:?}")));
        }
    }
    match rua {
        Some(rua) => Ok(TlsRpt { rua }),
        None => Err(invalid("no rua field".into())),
    }
}

/// RFC 8460 §3: among all TXT records at `_smtp._tls.<domain>`, exactly one must
/// begin with `v=TLSRPTv1`, and it must parse.
pub fn select_record<R: AsRef<[u8]>>(records: &[R]) -> Result<TlsRpt, TlsRptError> {
    let mut found = records
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| is_tlsrpt_record(r));
    let Some(first) = found.next() else {
        return Err(TlsRptError::NoRecord);
    };
    match found.count() {
        0 => parse_record(first),
        others => Err(TlsRptError::Multiple(others + 1)),
    }
}

fn is_ext_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && b.len() <= EXT_NAME_MAX
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        }
        None => false,
    }
}

fn is_ext_value_char(b: u8) -> bool {
    matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E)
}

/// `tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)`.
fn parse_rua(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|u| check_uri(u.trim_matches(is_wsp)))
        .collect()
}

/// One `rua` URI: RFC 3986 characters (`!` and `,` must be percent-encoded, RFC 8460
/// §3), `%` followed by two hex digits, and a scheme a reporter can use.
fn check_uri(uri: &str) -> Result<String, String> {
    if uri.is_empty() {
        return Err("empty rua URI".into());
    }
    let bytes = uri.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric() || b"-._~:/?#[]@$&'()*+=%".contains(&b);
        if !ok {
            return Err(format!(
                "rua URI {uri:?}: character {:?} not allowed",
                b as char
            ));
        }
        if b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return Err(format!("rua URI {uri:?}: bad percent-encoding"));
        }
    }
    // RFC 3986 §3.1: schemes are case-insensitive.
    let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
    if scheme.eq_ignore_ascii_case("mailto") {
        // RFC 6068: an address, local-part@domain, both non-empty.
        let addr = rest.split('?').next().unwrap_or_default();
        match addr.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {}
            _ => return Err(format!("rua URI {uri:?}: mailto: without an address")),
        }
    } else if scheme.eq_ignore_ascii_case("https") {
        let host = rest
            .strip_prefix("//")
            .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
        if host.is_none_or(str::is_empty) {
            return Err(format!("rua URI {uri:?}: https: without a host"));
        }
    } else {
        return Err(format!("rua URI {uri:?}: scheme must be mailto: or https:"));
    }
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rua(uris: &[&str]) -> Result<TlsRpt, ()> {
        Ok(TlsRpt {
            rua: uris.iter().map(|u| u.to_string()).collect(),
        })
    }

    /// RFC 8460 §3: which records count as TLS-RPT records.
    #[test]
    fn rfc8460_3_is_tlsrpt_record_table() {
        let rows: &[(&[u8], bool)] = &[
            (b"v=TLSRPTv1; rua=mailto:a@b.c", true),
            (b"v=TLSRPTv1;rua=mailto:a@b.c", true),
            (b"v=TLSRPTv1 ;rua=mailto:a@b.c", true),
            (b"v=TLSRPTv1;", true),
            (b"v=TLSRPTv1", false),
            (b"v=tlsrptv1; rua=mailto:a@b.c", false), // %s: case-sensitive
            (b"v=TLSRPTv10; rua=mailto:a@b.c", false),
            (b" v=TLSRPTv1; rua=mailto:a@b.c", false),
            (b"rua=mailto:a@b.c; v=TLSRPTv1", false),
            (b"v=STSv1; id=1", false),
            (b"", false),
        ];
        for (txt, want) in rows {
            assert_eq!(
                is_tlsrpt_record(txt),
                *want,
                "{:?}",
                String::from_utf8_lossy(txt)
            );
        }
    }

    /// RFC 8460 §3: the grammar, and the choices in the module docs.
    #[test]
    fn rfc8460_3_parse_record_table() {
        let name32 = format!("v=TLSRPTv1; rua=mailto:a@b.c; {}=v", "n".repeat(32));
        let name33 = format!("v=TLSRPTv1; rua=mailto:a@b.c; {}=v", "n".repeat(33));
        let rows: Vec<(&str, Result<TlsRpt, ()>)> = vec![
            // valid
            (
                "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
                rua(&["mailto:tlsrpt@example.com"]),
            ),
            (
                "v=TLSRPTv1;rua=https://reports.example.com/v1",
                rua(&["https://reports.example.com/v1"]),
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/x?y=1",
                rua(&["mailto:a@example.com", "https://r.example.com/x?y=1"]),
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@example.com , \thttps://r.example.com",
                rua(&["mailto:a@example.com", "https://r.example.com"]),
            ),
            ("v=TLSRPTv1; rua=mailto:a@b.c;", rua(&["mailto:a@b.c"])), // final delimiter
            ("v=TLSRPTv1 ; rua=mailto:a@b.c ; ", rua(&["mailto:a@b.c"])),
            (
                "v=TLSRPTv1; ext=1; rua=mailto:a@b.c",
                rua(&["mailto:a@b.c"]),
            ), // extension
            ("v=TLSRPTv1; rua=MAILTO:a@b.c", rua(&["MAILTO:a@b.c"])), // scheme any case
            (
                "v=TLSRPTv1; rua=mailto:a%2Cb@b.c",
                rua(&["mailto:a%2Cb@b.c"]),
            ), // encoded `,`
            (
                "v=TLSRPTv1; rua=mailto:a@b.c?subject=x",
                rua(&["mailto:a@b.c?subject=x"]),
            ),
            (
                "v=TLSRPTv1; rua=https://[2001:db8::1]/r",
                rua(&["https://[2001:db8::1]/r"]),
            ),
            (&name32, rua(&["mailto:a@b.c"])),
            (
                "v=TLSRPTv1; rua=mailto:a@b.c; RUA=x",
                rua(&["mailto:a@b.c"]),
            ), // RUA is an extension
            // invalid
            ("v=TLSRPTv1", Err(())),
            ("v=TLSRPTv1;", Err(())),  // no rua
            ("v=TLSRPTv1; ", Err(())), // no rua
            ("v=TLSRPTv1; ext=1", Err(())),
            ("v=TLSRPTv1; RUA=mailto:a@b.c", Err(())), // %s: `RUA` is not `rua`
            ("v=TLSRPTv1; rua=", Err(())),
            ("v=TLSRPTv1; rua=mailto:a@b.c,", Err(())), // empty URI
            ("v=TLSRPTv1; rua=,mailto:a@b.c", Err(())),
            ("v=TLSRPTv1; rua=mailto:", Err(())), // no address
            ("v=TLSRPTv1; rua=mailto:a@", Err(())),
            ("v=TLSRPTv1; rua=mailto:@b.c", Err(())),
            ("v=TLSRPTv1; rua=mailto:ab.c", Err(())),
            ("v=TLSRPTv1; rua=https://", Err(())), // no host
            ("v=TLSRPTv1; rua=https:/r.example.com", Err(())),
            ("v=TLSRPTv1; rua=http://r.example.com", Err(())), // http is not https
            ("v=TLSRPTv1; rua=ftp://r.example.com", Err(())),
            ("v=TLSRPTv1; rua=a@b.c", Err(())), // no scheme
            ("v=TLSRPTv1; rua=mailto:a!b@b.c", Err(())), // `!` must be encoded
            ("v=TLSRPTv1; rua=mailto:a b@b.c", Err(())),
            ("v=TLSRPTv1; rua=mailto:a%2@b.c", Err(())), // bad percent-encoding
            ("v=TLSRPTv1; rua=mailto:a%zz@b.c", Err(())),
            ("v=TLSRPTv1; rua=mailto:a@b.c; rua=mailto:d@e.f", Err(())), // rua twice
            ("v=TLSRPTv1; rua=mailto:a@b.c ", Err(())),                  // trailing WSP without `;`
            ("v=TLSRPTv1;; rua=mailto:a@b.c", Err(())),                  // empty field
            ("v=TLSRPTv1; rua=mailto:a@b.c;;", Err(())),
            ("v=TLSRPTv1 rua=mailto:a@b.c", Err(())), // `;` after the version
            ("v=TLSRPTv1; rua=mailto:a@b.c; x", Err(())), // field without `=`
            ("v=TLSRPTv1; rua=mailto:a@b.c; x=", Err(())),
            ("v=TLSRPTv1; rua=mailto:a@b.c; x=a=b", Err(())),
            ("v=TLSRPTv1; rua=mailto:a@b.c; _x=1", Err(())),
            (&name33, Err(())),
            ("v=TLSRPTv1; rua=mailto:é@b.c", Err(())), // not ASCII
            ("v=tlsrptv1; rua=mailto:a@b.c", Err(())),
            ("", Err(())),
        ];
        for (txt, want) in rows {
            assert_eq!(
                parse_record(txt.as_bytes()).map_err(|_| ()),
                want,
                "{txt:?}"
            );
        }
    }

    /// RFC 8460 §3: exactly one record beginning v=TLSRPTv1; others are ignored.
    #[test]
    fn rfc8460_3_select_record_table() {
        let rows: Vec<(Vec<&str>, Result<TlsRpt, TlsRptError>)> = vec![
            (vec![], Err(TlsRptError::NoRecord)),
            (vec!["v=spf1 -all"], Err(TlsRptError::NoRecord)),
            (
                vec!["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b.c"],
                Ok(TlsRpt {
                    rua: vec!["mailto:a@b.c".into()],
                }),
            ),
            (
                vec![
                    "v=TLSRPTv1; rua=mailto:a@b.c",
                    "v=TLSRPTv1; rua=mailto:a@b.c",
                ],
                Err(TlsRptError::Multiple(2)),
            ),
        ];
        for (records, want) in rows {
            assert_eq!(select_record(&records), want, "{records:?}");
        }
        assert!(matches!(
            select_record(&["v=TLSRPTv1; rua=gopher://x"]),
            Err(TlsRptError::Invalid(_))
        ));
    }

    /// SPEC 8.4: `https:` URIs as written, `mailto:` addresses percent-decoded
    /// (RFC 8460 §3 encodes `,` and `!`), `?hfields` dropped, in record order.
    #[test]
    fn rfc8460_3_destinations_table() {
        use Destination::{Https, Mailto};
        let rows: Vec<(&str, Vec<Destination>)> = vec![
            (
                "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
                vec![Mailto("tlsrpt@example.com".into())],
            ),
            (
                "v=TLSRPTv1; rua=mailto:a%2Cb%21c@example.com,https://r.example.com/x?y=%2C",
                vec![
                    Mailto("a,b!c@example.com".into()),
                    Https("https://r.example.com/x?y=%2C".into()),
                ],
            ),
            (
                "v=TLSRPTv1; rua=MAILTO:A@B.C?subject=x; x=1",
                vec![Mailto("A@B.C".into())],
            ),
            (
                "v=TLSRPTv1; rua=HTTPS://r.example.com",
                vec![Https("HTTPS://r.example.com".into())],
            ),
            // Not UTF-8 once decoded: skipped, the others kept.
            (
                "v=TLSRPTv1; rua=mailto:%ff@b.c,https://r.example.com",
                vec![Https("https://r.example.com".into())],
            ),
        ];
        for (txt, want) in rows {
            let got = parse_record(txt.as_bytes()).unwrap().destinations();
            assert_eq!(got, want, "{txt:?}");
        }
        // A record built by hand (not through parse_record) with another scheme.
        let odd = TlsRpt {
            rua: vec!["gopher://x".into(), "nocolon".into()],
        };
        assert_eq!(odd.destinations(), vec![]);
    }

    proptest! {
        #[test]
        fn never_panics(txt in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = is_tlsrpt_record(&txt);
            let _ = parse_record(&txt);
            let _ = select_record(&[&txt]);
        }

        /// Near-valid inputs reach the field and URI parsers.
        #[test]
        fn never_panics_near_valid(tail in "[ \t;=,:/@%a-zA-Z0-9!\u{80}-\u{ff}]{0,60}") {
            let _ = parse_record(format!("v=TLSRPTv1; rua={tail}").as_bytes());
        }
    }
}
