//! The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1, SPEC 2).
//!
//! The grammar, checked byte by byte (no regex, no allocation on the happy path
//! beyond the id):
//!
//! ```text
//! sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//! sts-field       = sts-id / sts-extension
//! sts-field-delim = *WSP ";" *WSP
//! sts-version     = %s"v=STSv1"
//! sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//! sts-extension   = sts-ext-name "=" sts-ext-value
//! sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//! sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
//! ```
//!
//! `id` is also a valid `sts-ext-name`, so the ABNF alone would read `id=a-b` as an
//! extension; RFC 8461 says `id` is required and SPEC 2.5 lists `id=a-b` as invalid,
//! so every field named exactly `id` (case-sensitive, `%s`) is the `sts-id` and must
//! appear once.

/// A valid STSv1 discovery record. Only `id` matters to us; extension fields
/// are validated (SPEC 2.5) and then ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// 1–32 ASCII letters/digits; a change means "fetch the policy again" (SPEC 5.2).
    pub id: String,
}

/// Why a set of TXT records yields no policy. All of these mean "no policy"
/// to the caller (SPEC 2.4, 2.5); the variants exist for logs and `mtastsd query`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No TXT record begins with `v=STSv1` (SPEC 2.3).
    #[error("no v=STSv1 record")]
    NoRecord,
    /// More than one record begins with `v=STSv1` (SPEC 2.4).
    #[error("{0} v=STSv1 records, exactly one is allowed")]
    Multiple(usize),
    /// The one STSv1 record breaks RFC 8461's grammar (SPEC 2.5).
    #[error("invalid v=STSv1 record: {0}")]
    Invalid(String),
}

/// `sts-version`, case-sensitive (RFC 8461 uses `%s`).
const VERSION: &[u8] = b"v=STSv1";
/// RFC 8461 §3.1: `1*32(ALPHA / DIGIT)`.
const ID_MAX: usize = 32;
/// `sts-ext-name`: one leading char and up to 31 more.
const EXT_NAME_MAX: usize = 32;

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `sts-ext-value` characters: visible ASCII except `;` (0x3B) and `=` (0x3D).
fn is_ext_value_char(b: u8) -> bool {
    matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E)
}

/// SPEC 2.3: does this (already concatenated) record claim to be STSv1?
/// `v=STSv1` followed by optional spaces/tabs and `;`.
///
/// Such a record counts for SPEC 2.4 (exactly one) even when [`parse_record`]
/// then rejects it (`v=STSv1;` has no id): a domain publishing a broken
/// record has no policy, rather than having its other records looked at.
pub fn is_sts_record(txt: &[u8]) -> bool {
    let Some(rest) = txt.strip_prefix(VERSION) else {
        return false;
    };
    // SPEC 2.3 (RFC 8461 §3.1: records not beginning `v=STSv1;` are discarded):
    // a bare `v=STSv1` with no `;` does not count.
    rest.iter().find(|&&b| !is_wsp(b)) == Some(&b';')
}

/// SPEC 2.5: parse one record that [`is_sts_record`] accepted.
///
/// Exact RFC 8461 §3.1 grammar (see the module docs): a byte that does not fit
/// anywhere, a missing or repeated `id`, an empty field (`;;`), or trailing
/// whitespace not followed by `;` makes the whole record invalid.
pub fn parse_record(txt: &[u8]) -> Result<StsRecord, RecordError> {
    if !txt.starts_with(VERSION) {
        return Err(RecordError::Invalid("does not begin with v=STSv1".into()));
    }
    let mut pos = VERSION.len();
    let mut id: Option<String> = None;
    let mut fields = 0usize;

    // Each round: one delimiter, then one field.
    while let Some(field_start) = after_delimiter(txt, pos, fields)? {
        let field = field_at(txt, field_start)?;
        fields += 1;
        if field.name == b"id" {
            if id.is_some() {
                return Err(invalid(field.name_start, "id given twice"));
            }
            id = Some(record_id(&field)?);
        }
        pos = field.end;
        if pos == txt.len() {
            break;
        }
    }

    match id {
        Some(id) => Ok(StsRecord { id }),
        None => Err(RecordError::Invalid("no id field".into())),
    }
}

/// A grammar error, with the byte where it was found.
fn invalid(at: usize, why: &str) -> RecordError {
    RecordError::Invalid(format!("{why} at byte {at}"))
}

/// The first byte at or after `pos` that is not WSP.
fn skip_wsp(txt: &[u8], mut pos: usize) -> usize {
    while pos < txt.len() && is_wsp(txt[pos]) {
        pos += 1;
    }
    pos
}

/// `sts-field-delim = *WSP ";" *WSP` at `pos`: where the next field starts, or
/// `None` when the delimiter ends the record (the optional final `;`). `fields` is
/// how many fields came before, to say what is wrong with a record that ends early.
fn after_delimiter(txt: &[u8], pos: usize, fields: usize) -> Result<Option<usize>, RecordError> {
    let pos = skip_wsp(txt, pos);
    if pos == txt.len() {
        // `v=STSv1` alone, or WSP after the last field with no `;` (SPEC 2.5:
        // `*WSP` belongs to a delimiter, never stands on its own).
        return Err(if fields == 0 {
            RecordError::Invalid("no id field".into())
        } else {
            invalid(pos, "trailing whitespace without `;`")
        });
    }
    if txt[pos] != b';' {
        return Err(invalid(pos, "expected `;`"));
    }
    let pos = skip_wsp(txt, pos + 1);
    // The optional final delimiter (`v=STSv1;` alone, with no field, is then a
    // missing id).
    Ok((pos < txt.len()).then_some(pos))
}

/// One `sts-field`, borrowed from the record.
struct Field<'a> {
    name: &'a [u8],
    name_start: usize,
    value: &'a [u8],
    value_start: usize,
    /// The byte after the value: a delimiter's, or the end of the record.
    end: usize,
}

/// `sts-field = name "=" value` at `start` (RFC 8461 §3.1: `sts-ext-name`,
/// `sts-ext-value`); the value must end at a delimiter or at the end of the record.
fn field_at(txt: &[u8], start: usize) -> Result<Field<'_>, RecordError> {
    let mut pos = start;
    while pos < txt.len() && txt[pos] != b'=' && txt[pos] != b';' && !is_wsp(txt[pos]) {
        pos += 1;
    }
    let name = &txt[start..pos];
    if pos == txt.len() || txt[pos] != b'=' {
        return Err(invalid(start, "field without `=`"));
    }
    if !is_ext_name(name) {
        return Err(invalid(start, "bad field name"));
    }
    pos += 1; // '='
    let value_start = pos;
    while pos < txt.len() && is_ext_value_char(txt[pos]) {
        pos += 1;
    }
    let value = &txt[value_start..pos];
    if value.is_empty() {
        return Err(invalid(value_start, "empty field value"));
    }
    if pos < txt.len() && txt[pos] != b';' && !is_wsp(txt[pos]) {
        return Err(invalid(pos, "bad character in field value"));
    }
    Ok(Field {
        name,
        name_start: start,
        value,
        value_start,
        end: pos,
    })
}

/// SPEC 2.5 (RFC 8461 §3.1 `sts-id = 1*32(ALPHA / DIGIT)`): the `id` field's value.
fn record_id(field: &Field<'_>) -> Result<String, RecordError> {
    let value = field.value;
    if value.len() > ID_MAX || !value.iter().all(u8::is_ascii_alphanumeric) {
        return Err(invalid(field.value_start, "id is not 1-32 letters/digits"));
    }
    Ok(value.iter().map(|&b| char::from(b)).collect())
}

/// `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`
fn is_ext_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && name.len() <= EXT_NAME_MAX
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        }
        None => false,
    }
}

/// SPEC 2.2–2.5: from all TXT records at `_mta-sts.<domain>` (each one's strings
/// already concatenated, SPEC 2.2), pick the single STSv1 record and parse it.
///
/// Records that are not STSv1 (SPF, site verification, …) are ignored (SPEC 2.4);
/// zero or several STSv1 records mean no policy.
pub fn select_record<R: AsRef<[u8]>>(records: &[R]) -> Result<StsRecord, RecordError> {
    let mut sts = records
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| is_sts_record(r));
    let Some(first) = sts.next() else {
        return Err(RecordError::NoRecord);
    };
    let others = sts.count();
    if others > 0 {
        return Err(RecordError::Multiple(others + 1));
    }
    parse_record(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(id: &str) -> Result<StsRecord, ()> {
        Ok(StsRecord { id: id.into() })
    }

    /// SPEC 2.3: which records claim to be STSv1.
    #[test]
    fn spec_2_3_is_sts_record_table() {
        let rows: &[(&[u8], bool)] = &[
            (b"v=STSv1; id=abc", true),
            (b"v=STSv1;id=abc", true),
            (b"v=STSv1 ;id=abc", true),  // SPEC 2.3: spaces before `;`
            (b"v=STSv1\t;id=abc", true), // SPEC 2.3: WSP includes HTAB
            (b"v=STSv1", false),         // SPEC 2.3: no `;`, discarded
            (b"v=STSv1   ", false),
            (b"v=STSv1;", true),
            (b"v=stsv1; id=abc", false), // SPEC 2.3: case-sensitive
            (b"V=STSv1; id=abc", false),
            (b"id=x; v=STSv1", false), // SPEC 2.3: must begin with it
            (b" v=STSv1; id=abc", false),
            (b"v=STSv10; id=abc", false),
            (b"v=STSv1x; id=abc", false),
            (b"v=STSv1 id=abc", false),
            (b"v=STSv2; id=abc", false),
            (b"v=spf1 -all", false),
            (b"", false),
            (b"v=STS", false),
        ];
        for (txt, want) in rows {
            assert_eq!(
                is_sts_record(txt),
                *want,
                "{:?}",
                String::from_utf8_lossy(txt)
            );
        }
    }

    /// SPEC 2.5: the exact RFC 8461 §3.1 grammar.
    #[test]
    fn spec_2_5_parse_record_table() {
        let id32 = "a".repeat(32);
        let id33 = format!("v=STSv1; id={}", "a".repeat(33));
        let rec32 = format!("v=STSv1; id={id32}");
        let name32 = format!("v=STSv1; id=x; {}=v", "n".repeat(32));
        let name33 = format!("v=STSv1; id=x; {}=v", "n".repeat(33));
        let rows: Vec<(&[u8], Result<StsRecord, ()>)> = vec![
            // valid
            (b"v=STSv1; id=20160831085700Z", ok("20160831085700Z")),
            (b"v=STSv1;id=abc", ok("abc")),
            (b"v=STSv1;id=abc;", ok("abc")), // SPEC 2.5: optional final delimiter
            (b"v=STSv1; id=abc ;", ok("abc")), // WSP before final `;`
            (b"v=STSv1; id=abc ; ", ok("abc")), // final delimiter includes trailing WSP
            (b"v=STSv1 ; id=abc", ok("abc")),
            (b"v=STSv1\t;\tid=abc", ok("abc")),
            (b"v=STSv1;  id=abc", ok("abc")),
            (b"v=STSv1; id=A1b2", ok("A1b2")), // id keeps its case
            (b"v=STSv1; id=a", ok("a")),
            (rec32.as_bytes(), ok(&id32)), // 32 chars: the maximum
            (b"v=STSv1; id=abc; ext=value", ok("abc")), // extensions ignored
            (b"v=STSv1; ext=value; id=abc", ok("abc")), // id need not be first
            (b"v=STSv1; id=abc; x-y_z.w=a:b<c>d!~", ok("abc")),
            (b"v=STSv1; id=abc; 9x=1", ok("abc")), // ext name may start with a digit
            (b"v=STSv1; id=abc; ID=other", ok("abc")), // `ID` is an extension (%s)
            (b"v=STSv1; id=abc; v=STSv2", ok("abc")), // `v` as an extension name
            (name32.as_bytes(), ok("x")),          // ext name of 32 chars
            // invalid: SPEC 2.5 lists
            (b"v=STSv1", Err(())),                // id required
            (b"v=STSv1;", Err(())),               // no field at all
            (b"v=STSv1; ", Err(())),              // no field at all
            (b"v=STSv1; id=", Err(())),           // empty id
            (b"v=STSv1; id=a-b", Err(())),        // id is letters/digits only
            (b"v=STSv1; id=a_b", Err(())),        // id is letters/digits only
            (b"v=STSv1; id=abc; x=a b", Err(())), // space inside a value
            (b"v=STSv1; id=abc; x==", Err(())),   // `=` is not a value char
            (b"v=STSv1; id=abc; x=a=b", Err(())),
            (b"v=STSv1;;id=x", Err(())),     // empty field
            (b"v=STSv1; id=x;;", Err(())),   // two final delimiters
            (b"v=STSv1; id=abc ", Err(())),  // trailing space without `;`
            (b"v=STSv1; id=abc\t", Err(())), // trailing tab without `;`
            (b"v=STSv1; id=abc; x=1 ", Err(())),
            (id33.as_bytes(), Err(())),            // 33-char id
            (b"v=STSv1; id=abc; id=abc", Err(())), // id exactly once
            (b"v=STSv1; id=abc; id=def", Err(())),
            (b"v=STSv1; ID=abc", Err(())), // `ID` is not `id`: id missing
            (b"v=STSv1; id =abc", Err(())), // no space before `=`
            (b"v=STSv1; id= abc", Err(())), // no space after `=`
            (b"v=STSv1; id=abc x=1", Err(())), // fields need `;` between them
            (b"v=STSv1 id=abc", Err(())),  // `;` required after version
            (b"v=STSv1; id=abc; =x", Err(())), // empty ext name
            (b"v=STSv1; id=abc; _x=1", Err(())), // ext name starts with `_`
            (b"v=STSv1; id=abc; -x=1", Err(())),
            (b"v=STSv1; id=abc; x/y=1", Err(())), // `/` not a name char
            (b"v=STSv1; id=abc; x", Err(())),     // field without `=`
            (b"v=STSv1; id=abc; x=", Err(())),    // empty ext value
            (name33.as_bytes(), Err(())),         // ext name of 33 chars
            (b"v=STSv1; id=ab\xc3\xa9", Err(())), // non-ASCII in id
            (b"v=STSv1; id=abc; x=\xc3\xa9", Err(())), // non-ASCII in value
            (b"v=STSv1; id=abc; x=a\x7f", Err(())), // DEL
            (b"v=STSv1; id=abc; x=a\x00", Err(())), // NUL
            (b"v=STSv1; id=abc\r\n", Err(())),    // CR/LF are not WSP
            (b"v=STSv1;\nid=abc", Err(())),
            (b"v=stsv1; id=abc", Err(())), // case-sensitive version
            (b"", Err(())),
        ];
        for (txt, want) in rows {
            let got = parse_record(txt).map_err(|_| ());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(txt));
        }
    }

    /// The error says what went wrong (for logs and `mtastsd query`).
    #[test]
    fn spec_2_5_error_messages() {
        let e = parse_record(b"v=STSv1; id=abc; id=def").unwrap_err();
        assert_eq!(
            e,
            RecordError::Invalid("id given twice at byte 17".into()),
            "{e}"
        );
        let e = parse_record(b"v=STSv1; x=1").unwrap_err();
        assert_eq!(e, RecordError::Invalid("no id field".into()));
    }

    /// SPEC 2.3/2.4: exactly one STSv1 record among all TXT records.
    #[test]
    fn spec_2_4_select_record_table() {
        let rows: Vec<(Vec<&str>, Result<StsRecord, RecordError>)> = vec![
            (vec![], Err(RecordError::NoRecord)),
            (vec!["v=spf1 -all"], Err(RecordError::NoRecord)),
            (vec!["v=stsv1; id=abc"], Err(RecordError::NoRecord)), // SPEC 2.3
            (vec!["id=x; v=STSv1"], Err(RecordError::NoRecord)),   // SPEC 2.3
            (vec!["v=STSv1; id=abc"], Ok(StsRecord { id: "abc".into() })),
            // SPEC 2.4: an SPF record beside it is fine
            (
                vec![
                    "v=spf1 -all",
                    "v=STSv1; id=abc",
                    "google-site-verification=x",
                ],
                Ok(StsRecord { id: "abc".into() }),
            ),
            // SPEC 2.4: two STSv1 records, even identical ones: no policy
            (
                vec!["v=STSv1; id=abc", "v=STSv1; id=abc"],
                Err(RecordError::Multiple(2)),
            ),
            (
                vec!["v=STSv1; id=a", "v=spf1", "v=STSv1 ;id=b", "v=STSv1;"],
                Err(RecordError::Multiple(3)),
            ),
            // SPEC 2.3: a bare `v=STSv1` (no `;`) is discarded, not counted
            (
                vec!["v=STSv1; id=abc", "v=STSv1"],
                Ok(StsRecord { id: "abc".into() }),
            ),
            // SPEC 2.3 + 2.5: a broken STSv1 record beside a good one still counts
            (
                vec!["v=STSv1; id=abc", "v=STSv1;"],
                Err(RecordError::Multiple(2)),
            ),
            // a non-STSv1 record that merely looks alike does not count
            (
                vec!["v=STSv1; id=abc", "v=STSv10; id=def"],
                Ok(StsRecord { id: "abc".into() }),
            ),
        ];
        for (records, want) in rows {
            let got = select_record(&records);
            match (&got, &want) {
                (Err(RecordError::Invalid(_)), Err(RecordError::Invalid(_))) => {}
                _ => assert_eq!(got, want, "{records:?}"),
            }
        }
    }

    /// SPEC 2.5: the single STSv1 record must parse, else no policy.
    #[test]
    fn spec_2_5_select_record_invalid() {
        for records in [
            vec!["v=STSv1;"],
            vec!["v=STSv1; id=abc "],
            vec!["v=spf1 -all", "v=STSv1;;id=abc"],
        ] {
            assert!(
                matches!(select_record(&records), Err(RecordError::Invalid(_))),
                "{records:?}"
            );
        }
        // byte slices work too (records straight from DNS)
        let raw: [&[u8]; 2] = [b"v=spf1", b"v=STSv1;id=Z9"];
        assert_eq!(select_record(&raw), Ok(StsRecord { id: "Z9".into() }));
    }

    fn ext_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9_.-]{0,31}".prop_filter("id is not an extension", |n| n != "id")
    }

    proptest! {
        /// No input panics any of the three entry points.
        #[test]
        fn never_panics(txt in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = is_sts_record(&txt);
            let _ = parse_record(&txt);
            let _ = select_record(&[&txt]);
        }

        /// Inputs that start like a record reach the field parser (better coverage
        /// than uniform random bytes).
        #[test]
        fn never_panics_near_valid(tail in "[ \t;=a-zA-Z0-9\\-_.\u{80}-\u{ff}]{0,60}") {
            let txt = format!("v=STSv1{tail}");
            let _ = parse_record(txt.as_bytes());
        }

        /// SPEC 2.5: any record built from the grammar parses, keeps its id, and is
        /// selected among unrelated records.
        #[test]
        fn spec_2_5_generated_valid_records_parse(
            id in "[A-Za-z0-9]{1,32}",
            before in proptest::collection::vec((ext_name(), "[!-:<>-~]{1,20}"), 0..3),
            after in proptest::collection::vec((ext_name(), "[!-:<>-~]{1,20}"), 0..3),
            ws in proptest::collection::vec("[ \t]{0,2}", 16),
            final_delim in any::<bool>(),
        ) {
            let mut fields: Vec<String> = before.iter().map(|(n, v)| format!("{n}={v}")).collect();
            fields.push(format!("id={id}"));
            fields.extend(after.iter().map(|(n, v)| format!("{n}={v}")));
            let mut txt = String::from("v=STSv1");
            for (i, f) in fields.iter().enumerate() {
                txt.push_str(&format!("{};{}{f}", ws[2 * i], ws[2 * i + 1]));
            }
            if final_delim {
                txt.push_str(&format!("{};{}", ws[14], ws[15]));
            }
            prop_assert!(is_sts_record(txt.as_bytes()));
            prop_assert_eq!(parse_record(txt.as_bytes()), Ok(StsRecord { id: id.clone() }));
            prop_assert_eq!(
                select_record(&["v=spf1 -all", txt.as_str()]),
                Ok(StsRecord { id })
            );
            // and trailing whitespace without `;` always breaks it (SPEC 2.5)
            if !final_delim {
                let bad = format!("{txt} ");
                prop_assert!(parse_record(bad.as_bytes()).is_err());
            }
        }
    }
}
