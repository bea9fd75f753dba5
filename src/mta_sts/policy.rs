//! The policy file served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (RFC 8461 §3.2, SPEC 4).

use super::mx::{MxError, MxPattern};

/// SPEC 4.5: RFC 8461 caps max_age at one year (31 557 600 s).
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, valid policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// Seconds, already clamped to [`MAX_AGE_LIMIT`] (SPEC 4.5).
    pub max_age: u32,
    /// In policy order, duplicates kept as published (the answer removes them, SPEC 6.1).
    pub mx: Vec<MxPattern>,
    /// `true` when the published max_age was above [`MAX_AGE_LIMIT`] (for the log line).
    #[serde(default)]
    pub max_age_clamped: bool,
}

/// Why a policy body is invalid (SPEC 4.6: reported as `sts-policy-invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not UTF-8")]
    NotUtf8,
    #[error("line {line}: not `key: value`")]
    BadLine { line: usize },
    #[error("missing required key `{0}`")]
    Missing(&'static str),
    #[error("version is {0:?}, expected STSv1")]
    BadVersion(String),
    #[error("mode is {0:?}, expected enforce, testing or none")]
    BadMode(String),
    #[error("max_age is {0:?}, expected 1 to 10 digits")]
    BadMaxAge(String),
    #[error("mode {0} needs at least one mx")]
    NoMx(Mode),
    #[error(transparent)]
    Mx(#[from] MxError),
}

/// `sts-policy-ext-name` (RFC 8461 §3.2), the shape of every key, known or not.
pub fn is_key(key: &str) -> bool {
    let b = key.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && b.len() <= 32
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        }
        None => false,
    }
}

/// SPEC 4.1: the whitespace a line or value may be padded with (`\r` covers CRLF).
fn is_pad(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// How a line of a policy body ended (SPEC 4.1: LF and CRLF are both accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Lf,
    CrLf,
    /// The last line, with no line end after it.
    Eof,
}

/// What one line of a policy body is, by RFC 8461 §3.2's grammar
/// (`sts-policy-field = sts-policy-ext-name ":" *WSP sts-policy-ext-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind<'a> {
    /// Empty or only padding: skipped.
    Blank,
    /// `key: value`, the key of [`is_key`]'s shape, the value without the
    /// whitespace after `:`.
    Field { key: &'a str, value: &'a str },
    /// No `:` at all.
    NoColon,
    /// What comes before the first `:` is not a key (spaces around it, say).
    BadKey(&'a str),
}

/// One line of a policy body, as [`policy_lines`] splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLine<'a> {
    /// 1-based, counting blank lines, as an editor does.
    pub number: usize,
    /// The line without its end and trailing padding (SPEC 4.1).
    pub text: &'a str,
    pub end: LineEnd,
    pub kind: LineKind<'a>,
}

/// The policy grammar's tokenizer, line by line: [`parse_policy`] (the verdict)
/// and `mtastsd check`'s lint (the detail, by line number) both read a body
/// through it, so they cannot disagree on what a line is.
pub fn policy_lines(body: &str) -> impl Iterator<Item = PolicyLine<'_>> {
    body.split_inclusive('\n').enumerate().map(|(i, piece)| {
        let (line, end) = match piece.strip_suffix('\n') {
            Some(line) if line.ends_with('\r') => (line, LineEnd::CrLf),
            Some(line) => (line, LineEnd::Lf),
            None => (piece, LineEnd::Eof),
        };
        let text = line.trim_end_matches(is_pad);
        let kind = match text.split_once(':') {
            _ if text.is_empty() => LineKind::Blank,
            None => LineKind::NoColon,
            Some((key, value)) if is_key(key) => LineKind::Field {
                key,
                value: value.trim_start_matches([' ', '\t']),
            },
            Some((key, _)) => LineKind::BadKey(key),
        };
        PolicyLine {
            number: i + 1,
            text,
            end,
            kind,
        }
    })
}

/// SPEC 4.5: 1–10 ASCII digits, clamped to [`MAX_AGE_LIMIT`]. `0` is accepted:
/// RFC 8461's grammar is `1*10DIGIT`, and a zero max_age only means "do not
/// cache", which is never less safe than a longer one.
fn parse_max_age(value: &str) -> Result<(u32, bool), PolicyError> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::BadMaxAge(value.to_owned()));
    }
    // 10 digits fit in u64 (< 10^10), so this cannot overflow.
    let n = value
        .bytes()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if n > u64::from(MAX_AGE_LIMIT) {
        Ok((MAX_AGE_LIMIT, true))
    } else {
        // n <= MAX_AGE_LIMIT, a u32.
        Ok((n as u32, false))
    }
}

/// SPEC 4.1–4.6: parse a policy body (the bytes the server sent, already capped).
///
/// Choices where RFC 8461 leaves room (each tested):
/// - lines end in LF or CRLF; trailing spaces, tabs and CRs are ignored, and so is
///   the whitespace after `:` (`sts-policy-field-delim = ":" *WSP`);
/// - blank (or whitespace-only) lines are skipped;
/// - keys are case-sensitive and must have the RFC's key shape
///   (letter/digit, then up to 31 of letter/digit/`_`/`-`/`.`), right before the `:`:
///   ` mode: enforce` or `mode : enforce` is a [`PolicyError::BadLine`], while
///   `Mode: enforce` is merely an unknown key (then `mode` is missing);
/// - for `version`, `mode`, `max_age` the first occurrence wins and later ones are
///   not even looked at; unknown keys are ignored with their values;
/// - every `mx` is validated, also under mode `none`; order and duplicates are kept;
/// - `max_age: 0` is valid: the grammar is `1*10DIGIT`, and 0 only means "do not cache".
pub fn parse_policy(body: &[u8]) -> Result<Policy, PolicyError> {
    let body = std::str::from_utf8(body).map_err(|_| PolicyError::NotUtf8)?;

    let mut version: Option<&str> = None;
    let mut mode: Option<&str> = None;
    let mut max_age: Option<&str> = None;
    let mut mx = Vec::new();

    for line in policy_lines(body) {
        let (key, value) = match line.kind {
            LineKind::Blank => continue,
            LineKind::Field { key, value } => (key, value),
            LineKind::NoColon | LineKind::BadKey(_) => {
                return Err(PolicyError::BadLine { line: line.number })
            }
        };
        match key {
            "version" => {
                version.get_or_insert(value);
            }
            "mode" => {
                mode.get_or_insert(value);
            }
            "max_age" => {
                max_age.get_or_insert(value);
            }
            "mx" => mx.push(MxPattern::parse(value)?),
            _ => {} // SPEC 4.3: unknown keys are ignored
        }
    }

    match version {
        None => return Err(PolicyError::Missing("version")),
        Some("STSv1") => {}
        Some(v) => return Err(PolicyError::BadVersion(v.to_owned())),
    }
    let mode = match mode {
        None => return Err(PolicyError::Missing("mode")),
        Some("enforce") => Mode::Enforce,
        Some("testing") => Mode::Testing,
        Some("none") => Mode::None,
        Some(m) => return Err(PolicyError::BadMode(m.to_owned())),
    };
    let (max_age, max_age_clamped) = match max_age {
        None => return Err(PolicyError::Missing("max_age")),
        Some(v) => parse_max_age(v)?,
    };
    if mx.is_empty() && mode != Mode::None {
        return Err(PolicyError::NoMx(mode));
    }
    // Policies live in the cache for days, by the hundred thousand: no spare capacity.
    mx.shrink_to_fit();
    Ok(Policy {
        mode,
        max_age,
        mx,
        max_age_clamped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mx(s: &str) -> MxPattern {
        MxPattern::parse(s).unwrap()
    }

    fn policy(mode: Mode, max_age: u32, mxs: &[&str], clamped: bool) -> Policy {
        Policy {
            mode,
            max_age,
            mx: mxs.iter().map(|s| mx(s)).collect(),
            max_age_clamped: clamped,
        }
    }

    const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n";

    /// RFC 8461 §3.2's example and the layout rules of SPEC 4.1.
    #[test]
    fn spec_4_1_valid_layouts_table() {
        let want = policy(
            Mode::Enforce,
            604800,
            &["mail.example.com", "*.example.net", "backupmx.example.com"],
            false,
        );
        let crlf = GOOD.replace('\n', "\r\n");
        let no_final_newline = GOOD.trim_end().to_owned();
        let trailing_ws = GOOD.replace('\n', " \t \n");
        let trailing_ws_crlf = GOOD.replace('\n', "  \r\n");
        let blank_lines = format!("\n\n{}\n \n\t\n\r\n", GOOD.replace('\n', "\n\n"));
        let no_space_after_colon = GOOD.replace(": ", ":");
        let many_spaces = GOOD.replace(": ", ": \t  ");
        let mixed = GOOD.replacen('\n', "\r\n", 2);
        let reordered = "max_age: 604800\nmx: mail.example.com\nmode: enforce\nmx: *.example.net\nversion: STSv1\nmx: backupmx.example.com";
        let unknown_keys =
            format!("foo: bar\n{GOOD}x-ext.1_a: any value: with colons ü\nmx_extra: 1.2.3.4\n");
        for body in [
            GOOD,
            &crlf,
            &no_final_newline,
            &trailing_ws,
            &trailing_ws_crlf,
            &blank_lines,
            &no_space_after_colon,
            &many_spaces,
            &mixed,
            reordered,
            &unknown_keys,
        ] {
            assert_eq!(parse_policy(body.as_bytes()), Ok(want.clone()), "{body:?}");
        }
    }

    /// SPEC 4.1–4.6: (body, expected) for every rule.
    #[test]
    fn spec_4_rules_table() {
        use PolicyError::*;
        let rows: Vec<(&str, Result<Policy, PolicyError>)> = vec![
            // SPEC 4.2: the three modes
            (
                "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400",
                Ok(policy(Mode::Testing, 86400, &["mx.example.com"], false)),
            ),
            (
                "version: STSv1\nmode: none\nmax_age: 86400",
                Ok(policy(Mode::None, 86400, &[], false)), // SPEC 4.2: mx optional for none
            ),
            (
                "version: STSv1\nmode: none\nmx: mx.example.com\nmax_age: 1",
                Ok(policy(Mode::None, 1, &["mx.example.com"], false)),
            ),
            // SPEC 4.2: required keys
            ("mode: enforce\nmx: a.example\nmax_age: 1", Err(Missing("version"))),
            ("version: STSv1\nmx: a.example\nmax_age: 1", Err(Missing("mode"))),
            ("version: STSv1\nmode: enforce\nmx: a.example", Err(Missing("max_age"))),
            ("", Err(Missing("version"))),
            ("\n\r\n  \n", Err(Missing("version"))),
            // SPEC 4.2: at least one mx unless mode none
            ("version: STSv1\nmode: enforce\nmax_age: 1", Err(NoMx(Mode::Enforce))),
            ("version: STSv1\nmode: testing\nmax_age: 1", Err(NoMx(Mode::Testing))),
            // SPEC 4.2: exact version and mode values, case-sensitive
            ("version: STSv2\nmode: none\nmax_age: 1", Err(BadVersion("STSv2".into()))),
            ("version: stsv1\nmode: none\nmax_age: 1", Err(BadVersion("stsv1".into()))),
            ("version: STSv1 x\nmode: none\nmax_age: 1", Err(BadVersion("STSv1 x".into()))),
            ("version:\nmode: none\nmax_age: 1", Err(BadVersion("".into()))),
            ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1", Err(BadMode("Enforce".into()))),
            ("version: STSv1\nmode: report\nmx: a.example\nmax_age: 1", Err(BadMode("report".into()))),
            ("version: STSv1\nmode:\nmax_age: 1", Err(BadMode("".into()))),
            // SPEC 4.1: keys are case-sensitive: `Mode` is unknown, so mode is missing
            ("version: STSv1\nMode: enforce\nmx: a.example\nmax_age: 1", Err(Missing("mode"))),
            ("Version: STSv1\nmode: none\nmax_age: 1", Err(Missing("version"))),
            // SPEC 4.3: first wins for a repeated key other than mx
            (
                "version: STSv1\nmode: none\nmode: enforce\nmax_age: 5\nmax_age: 7",
                Ok(policy(Mode::None, 5, &[], false)),
            ),
            (
                "version: STSv1\nmode: enforce\nmode: bogus\nmx: a.example\nmax_age: 5\nmax_age: x",
                Ok(policy(Mode::Enforce, 5, &["a.example"], false)),
            ),
            (
                "version: STSv1\nversion: STSv2\nmode: none\nmax_age: 5",
                Ok(policy(Mode::None, 5, &[], false)),
            ),
            ("version: STSv2\nversion: STSv1\nmode: none\nmax_age: 5", Err(BadVersion("STSv2".into()))),
            ("version: STSv1\nmode: bogus\nmode: enforce\nmx: a.example\nmax_age: 5", Err(BadMode("bogus".into()))),
            // SPEC 4.3 + 6.1: mx kept in order, duplicates kept
            (
                "version: STSv1\nmode: enforce\nmx: b.example\nmx: A.example\nmx: b.example\nmx: *.a.example\nmax_age: 5",
                Ok(policy(Mode::Enforce, 5, &["b.example", "a.example", "b.example", "*.a.example"], false)),
            ),
            // SPEC 4.4: a bad mx makes the whole policy invalid, even for mode none
            ("version: STSv1\nmode: enforce\nmx: a.example\nmx: *.*.example\nmax_age: 5", Err(Mx(MxError { value: "*.*.example".into(), reason: "`*` is allowed only as `*.` at the start" }))),
            ("version: STSv1\nmode: none\nmx: 192.0.2.1\nmax_age: 5", Err(Mx(MxError { value: "192.0.2.1".into(), reason: "all-numeric last label (an IP address?)" }))),
            ("version: STSv1\nmode: enforce\nmx:\nmax_age: 5", Err(Mx(MxError { value: "".into(), reason: "empty" }))),
            // SPEC 4.1: a line without `:`, or a malformed key
            ("version: STSv1\nmode enforce\nmx: a.example\nmax_age: 5", Err(BadLine { line: 2 })),
            ("version: STSv1\r\nmode: none\r\nmax_age: 5\r\ngarbage\r\n", Err(BadLine { line: 4 })),
            ("\nversion: STSv1\n\nmode : none\nmax_age: 5", Err(BadLine { line: 4 })),
            ("version: STSv1\n mode: none\nmax_age: 5", Err(BadLine { line: 2 })),
            ("version: STSv1\n: none\nmode: none\nmax_age: 5", Err(BadLine { line: 2 })),
            ("version: STSv1\nmode: none\nmax_age: 5\n_x: y", Err(BadLine { line: 4 })),
            ("version: STSv1\nmode: none\nmax_age: 5\n# comment", Err(BadLine { line: 4 })),
            ("<html><body>Not found</body></html>", Err(BadLine { line: 1 })),
            // SPEC 4.5: max_age digits, clamping, no overflow
            ("version: STSv1\nmode: none\nmax_age: 0", Ok(policy(Mode::None, 0, &[], false))),
            ("version: STSv1\nmode: none\nmax_age: 31557600", Ok(policy(Mode::None, MAX_AGE_LIMIT, &[], false))),
            ("version: STSv1\nmode: none\nmax_age: 31557601", Ok(policy(Mode::None, MAX_AGE_LIMIT, &[], true))),
            ("version: STSv1\nmode: none\nmax_age: 4294967295", Ok(policy(Mode::None, MAX_AGE_LIMIT, &[], true))),
            ("version: STSv1\nmode: none\nmax_age: 4294967296", Ok(policy(Mode::None, MAX_AGE_LIMIT, &[], true))),
            ("version: STSv1\nmode: none\nmax_age: 9999999999", Ok(policy(Mode::None, MAX_AGE_LIMIT, &[], true))),
            ("version: STSv1\nmode: none\nmax_age: 0000000001", Ok(policy(Mode::None, 1, &[], false))),
            ("version: STSv1\nmode: none\nmax_age: 00000000001", Err(BadMaxAge("00000000001".into()))),
            ("version: STSv1\nmode: none\nmax_age: 10000000000", Err(BadMaxAge("10000000000".into()))),
            ("version: STSv1\nmode: none\nmax_age: -1", Err(BadMaxAge("-1".into()))),
            ("version: STSv1\nmode: none\nmax_age: +1", Err(BadMaxAge("+1".into()))),
            ("version: STSv1\nmode: none\nmax_age: 1d", Err(BadMaxAge("1d".into()))),
            ("version: STSv1\nmode: none\nmax_age: 1 2", Err(BadMaxAge("1 2".into()))),
            ("version: STSv1\nmode: none\nmax_age: 1.5", Err(BadMaxAge("1.5".into()))),
            ("version: STSv1\nmode: none\nmax_age: \u{661}", Err(BadMaxAge("\u{661}".into()))), // Arabic-Indic one
            ("version: STSv1\nmode: none\nmax_age:", Err(BadMaxAge("".into()))),
            // SPEC 4.1: only ASCII padding is trimmed
            ("version: STSv1\u{a0}\nmode: none\nmax_age: 5", Err(BadVersion("STSv1\u{a0}".into()))),
            // a lone CR is not a line break
            ("version: STSv1\rmode: none\nmax_age: 5", Err(BadVersion("STSv1\rmode: none".into()))),
        ];
        for (body, want) in rows {
            assert_eq!(parse_policy(body.as_bytes()), want, "{body:?}");
        }
    }

    /// SPEC 4.6: the body must be UTF-8.
    #[test]
    fn spec_4_6_not_utf8() {
        let rows: &[&[u8]] = &[
            b"version: STSv1\nmode: none\nmax_age: 5\nx: \xff",
            b"\xef\xbb", // truncated BOM
            b"version: STSv1\nmode: none\nmax_age: 5\nx: \xc3",
        ];
        for body in rows {
            assert_eq!(parse_policy(body), Err(PolicyError::NotUtf8), "{body:?}");
        }
        // valid UTF-8 in an unknown key's value is fine
        assert!(parse_policy("version: STSv1\nmode: none\nmax_age: 5\nx: é".as_bytes()).is_ok());
    }

    /// The serde form of a policy (the on-disk cache, SPEC 5.8) round-trips, and
    /// `max_age_clamped` defaults to false for older records.
    #[test]
    fn policy_serde_roundtrip() {
        let p = parse_policy(GOOD.as_bytes()).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
        let old = r#"{"mode":"testing","max_age":5,"mx":["*.example.net"]}"#;
        assert_eq!(
            serde_json::from_str::<Policy>(old).unwrap(),
            policy(Mode::Testing, 5, &["*.example.net"], false)
        );
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)]
    }

    proptest! {
        /// No body panics the parser.
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_policy(&body);
        }

        /// Bodies made of near-valid lines reach every branch without panicking.
        #[test]
        fn never_panics_near_valid(lines in proptest::collection::vec(
            prop_oneof![
                Just("version: STSv1".to_owned()),
                "(mode|max_age|mx|version): ?[a-zA-Z0-9*. ]{0,20}",
                "max_age: [0-9]{0,12}",
                "[ -~]{0,20}",
            ],
            0..8,
        ), crlf in any::<bool>()) {
            let body = lines.join(if crlf { "\r\n" } else { "\n" });
            let _ = parse_policy(body.as_bytes());
        }

        /// SPEC 4.1–4.5: a policy written out in any valid layout parses back to the
        /// same values, with max_age clamped exactly when it is above the limit.
        #[test]
        fn spec_4_generated_policies_parse(
            mode in mode(),
            max_age in 0u64..10_000_000_000,
            mxs in proptest::collection::vec("(\\*\\.)?[a-z0-9]{1,8}\\.[a-z]{2,6}", 0..5),
            crlf in any::<bool>(),
            pad in "[ \t]{0,3}",
            shuffle in any::<proptest::sample::Index>(),
        ) {
            prop_assume!(mode == Mode::None || !mxs.is_empty());
            let mut lines = vec![
                "version: STSv1".to_owned(),
                format!("mode:{pad}{mode}"),
                format!("max_age: {max_age}{pad}"),
            ];
            lines.extend(mxs.iter().map(|m| format!("mx: {m}")));
            // Move one key line somewhere else: order of keys does not matter, of mx does.
            let first = lines.remove(shuffle.index(3));
            let at = shuffle.index(lines.len() + 1);
            lines.insert(at, first);
            let body = lines.join(if crlf { "\r\n" } else { "\n" });
            let got = parse_policy(body.as_bytes()).map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
            prop_assert_eq!(got.mode, mode);
            prop_assert_eq!(u64::from(got.max_age), max_age.min(u64::from(MAX_AGE_LIMIT)));
            prop_assert_eq!(got.max_age_clamped, max_age > u64::from(MAX_AGE_LIMIT));
            let written: Vec<String> = got.mx.iter().map(ToString::to_string).collect();
            prop_assert_eq!(written, mxs);
        }
    }
}
