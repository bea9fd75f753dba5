//! The policy file, line by line (RFC 8461 §3.2, SPEC 4), for `mtastsd check` and
//! `mtastsd check --policy-file`. Pure: bytes in, findings out.
//!
//! [`parse_policy`] decides what senders do with a policy (accept it or not); this
//! tells its author where, by line number, it goes wrong or looks odd: a broken line,
//! a bad value, a key written twice or misspelt, CRLF or LF line ends, a `max_age`
//! that protects little. Both run: the parse is the verdict, the lint the detail.

use std::collections::HashMap;

use super::{Code, Finding};
use crate::mta_sts::mx::MxPattern;
use crate::mta_sts::policy::{
    parse_policy, policy_lines, LineEnd, LineKind, Mode, Policy, PolicyLine, MAX_AGE_LIMIT,
};

/// RFC 8461 §3.2 recommends a max_age of weeks; under a day, an enforced policy
/// protects little against an attacker who can wait for it to expire (§10.2).
pub const MAX_AGE_SHORT: u32 = 86_400;

/// The keys RFC 8461 §3.2 defines; anything else is an extension senders ignore.
const KNOWN_KEYS: [&str; 4] = ["version", "mode", "max_age", "mx"];

/// Parse and lint `body`: the parsed policy when senders would accept it, and the
/// findings in order (validity, then per-line findings by line, then mode and max_age
/// advice for a valid policy). `url` prefixes the validity messages.
pub fn audit_policy(body: &[u8], url: &str) -> (Option<Policy>, Vec<Finding>) {
    let mut findings = Vec::new();
    let parsed = parse_policy(body);
    match &parsed {
        Ok(policy) => {
            let mx: Vec<String> = policy.mx.iter().map(ToString::to_string).collect();
            findings.push(Finding::new(
                Code::PolicyValid,
                format!(
                    "{url}: mode {}, max_age {}, mx {}",
                    policy.mode,
                    policy.max_age,
                    if mx.is_empty() {
                        "(none)".into()
                    } else {
                        mx.join(", ")
                    }
                ),
            ));
        }
        Err(e) => findings.push(Finding::new(
            Code::PolicyInvalid,
            format!("{url}: {e}: senders ignore the policy (SPEC 4.6)"),
        )),
    }
    findings.extend(lint_lines(body));
    let Ok(policy) = parsed else {
        return (None, findings);
    };
    findings.extend(advice(&policy));
    (Some(policy), findings)
}

/// The mode and max_age of a valid policy: how much it protects.
fn advice(policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match policy.mode {
        Mode::Enforce => Finding::new(Code::PolicyModeEnforce, "mode enforce"),
        Mode::Testing => Finding::new(
            Code::PolicyModeTesting,
            "mode testing: not enforced, senders deliver without TLS checks and only \
             report failures (RFC 8461 §5)",
        ),
        Mode::None => Finding::new(
            Code::PolicyModeNone,
            "mode none: the domain is withdrawing MTA-STS, nothing is enforced (RFC 8461 §8.3)",
        ),
    });
    if policy.max_age_clamped {
        out.push(Finding::new(
            Code::PolicyMaxAgeClamped,
            format!(
                "max_age is above the maximum {MAX_AGE_LIMIT} (one year); senders clamp it \
                 (RFC 8461 §3.2, SPEC 4.5)"
            ),
        ));
    } else if policy.mode == Mode::Enforce && policy.max_age < MAX_AGE_SHORT {
        out.push(Finding::new(
            Code::PolicyMaxAgeShort,
            format!(
                "max_age {} is under a day in mode enforce; RFC 8461 §3.2 recommends weeks \
                 or more, so that a cached policy outlives a DNS or HTTPS outage or attack",
                policy.max_age
            ),
        ));
    } else {
        out.push(Finding::new(
            Code::PolicyMaxAgeOk,
            format!("max_age {}", policy.max_age),
        ));
    }
    out
}

/// A line whose text before the `:` is not a key (RFC 8461 §3.2).
fn bad_key(key: &str) -> Finding {
    let why = if key.trim() != key {
        "no spaces are allowed around a key"
    } else {
        "a key is a letter or digit then up to 31 letters, digits, `_`, `-`, `.`"
    };
    Finding::new(
        Code::PolicyLineInvalid,
        format!("key {key:?} is malformed: {why} (RFC 8461 §3.2)"),
    )
}

/// Per-line findings, in line order, then the file-wide ones (missing keys, line ends).
/// Line numbers count from 1 and count blank lines, as an editor does.
pub fn lint_lines(body: &[u8]) -> Vec<Finding> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            let line = body[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return vec![Finding::new(
                Code::PolicyNotUtf8,
                "not UTF-8 (RFC 8461 §3.2: the policy is plain ASCII text)",
            )
            .at_line(line)];
        }
    };
    let mut lint = Lint::default();
    for line in policy_lines(text) {
        lint.line(line);
    }
    lint.finish()
}

/// What [`lint_lines`] has seen so far.
#[derive(Default)]
struct Lint<'a> {
    out: Vec<Finding>,
    crlf: usize,
    lf: usize,
    /// key -> line of its first occurrence.
    first: HashMap<&'a str, usize>,
    /// mx pattern (as written back) -> line of its first occurrence.
    mx_seen: HashMap<String, usize>,
    first_key_line: Option<(usize, &'a str)>,
    mode: Option<&'a str>,
}

impl<'a> Lint<'a> {
    fn line(&mut self, line: PolicyLine<'a>) {
        let n = line.number;
        match line.end {
            LineEnd::CrLf => self.crlf += 1,
            LineEnd::Lf => self.lf += 1,
            LineEnd::Eof => {}
        }
        let (key, value) = match line.kind {
            LineKind::Blank => return,
            LineKind::Field { key, value } => (key, value),
            LineKind::NoColon => {
                self.out.push(
                    Finding::new(
                        Code::PolicyLineInvalid,
                        format!("{:?} is not `key: value`", line.text),
                    )
                    .at_line(n),
                );
                return;
            }
            LineKind::BadKey(key) => {
                self.out.push(bad_key(key).at_line(n));
                return;
            }
        };
        self.first_key_line.get_or_insert((n, key));
        if key == "mx" {
            self.mx(n, value);
        } else if !KNOWN_KEYS.contains(&key) {
            self.out.push(unknown_key(key).at_line(n));
        } else if let Some(&was) = self.first.get(key) {
            self.out.push(
                Finding::new(
                    Code::PolicyKeyDuplicate,
                    format!(
                        "`{key}` again: senders use the first one, on line {was}, and \
                         ignore this one (SPEC 4.3)"
                    ),
                )
                .at_line(n),
            );
        } else {
            self.first.insert(key, n);
            if key == "mode" {
                self.mode = Some(value);
            }
            if let Some(finding) = bad_value(key, value) {
                self.out.push(finding.at_line(n));
            }
        }
    }

    /// An `mx` line: a valid pattern (SPEC 4.4), listed once.
    fn mx(&mut self, n: usize, value: &str) {
        match MxPattern::parse(value) {
            Ok(p) => {
                let p = p.to_string();
                if let Some(&was) = self.mx_seen.get(&p) {
                    self.out.push(
                        Finding::new(
                            Code::PolicyKeyDuplicate,
                            format!("mx {p} is listed twice (first on line {was})"),
                        )
                        .at_line(n),
                    );
                } else {
                    self.mx_seen.insert(p, n);
                }
            }
            Err(e) => self
                .out
                .push(Finding::new(Code::PolicyMxInvalid, format!("{e} (SPEC 4.4)")).at_line(n)),
        }
        self.first.entry("mx").or_insert(n);
    }

    /// The line findings in line order, then the file-wide ones.
    fn finish(mut self) -> Vec<Finding> {
        if let Some((n, key)) = self.first_key_line {
            if key != "version" && self.first.contains_key("version") {
                self.out.push(
                    Finding::new(
                        Code::PolicyVersionNotFirst,
                        format!(
                            "the policy starts with `{key}`, not `version: STSv1`; RFC 8461 §3.2 \
                             puts the version first and some senders expect it there"
                        ),
                    )
                    .at_line(n),
                );
            }
        }
        for key in ["version", "mode", "max_age"] {
            if !self.first.contains_key(key) {
                self.out.push(Finding::new(
                    Code::PolicyKeyMissing,
                    format!("no `{key}` line (RFC 8461 §3.2: required)"),
                ));
            }
        }
        if !self.first.contains_key("mx") && matches!(self.mode, Some("enforce" | "testing")) {
            self.out.push(Finding::new(
                Code::PolicyKeyMissing,
                "no `mx` line: mode enforce and testing need at least one (SPEC 4.2)",
            ));
        }
        // Line findings in line order; the file-wide ones (no line) after them.
        self.out.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
        self.out.extend(line_ends(self.crlf, self.lf));
        self.out
    }
}

/// A key RFC 8461 §3.2 does not define (SPEC 4.3), with a hint when only its case
/// is wrong.
fn unknown_key(key: &str) -> Finding {
    let hint = KNOWN_KEYS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(key))
        .map(|k| format!("; keys are case-sensitive, did you mean `{k}`?"))
        .unwrap_or_default();
    Finding::new(
        Code::PolicyKeyUnknown,
        format!("unknown key `{key}`: senders ignore it (SPEC 4.3){hint}"),
    )
}

/// The first `version`, `mode` or `max_age`, when its value is not one senders accept.
fn bad_value(key: &str, value: &str) -> Option<Finding> {
    match key {
        "version" if value != "STSv1" => Some(Finding::new(
            Code::PolicyVersionInvalid,
            format!("version is {value:?}, expected STSv1"),
        )),
        "mode" if !matches!(value, "enforce" | "testing" | "none") => Some(Finding::new(
            Code::PolicyModeInvalid,
            format!("mode is {value:?}, expected enforce, testing or none"),
        )),
        "max_age"
            if value.is_empty()
                || value.len() > 10
                || !value.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(Finding::new(
                Code::PolicyMaxAgeInvalid,
                format!(
                    "max_age is {value:?}, expected 1 to 10 digits (seconds, at most \
                     {MAX_AGE_LIMIT})"
                ),
            ))
        }
        _ => None,
    }
}

/// Which line ends the file uses (RFC 8461 §3.2 allows both); mixed ones are a
/// sign of an editing accident.
fn line_ends(crlf: usize, lf: usize) -> Option<Finding> {
    match (crlf, lf) {
        (0, 0) => None,
        (_, 0) => Some(Finding::new(
            Code::PolicyLineEndings,
            "lines end in CRLF (RFC 8461 §3.2 allows CRLF and LF)",
        )),
        (0, _) => Some(Finding::new(
            Code::PolicyLineEndings,
            "lines end in LF (RFC 8461 §3.2 allows LF and CRLF)",
        )),
        (c, l) => Some(Finding::new(
            Code::PolicyLineEndingsMixed,
            format!(
                "{c} lines end in CRLF and {l} in LF: allowed, but a sign of an editing \
                 accident; pick one"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Severity;

    const GOOD: &str =
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n";

    fn lint(body: &str) -> Vec<(Code, Option<usize>)> {
        lint_lines(body.as_bytes())
            .into_iter()
            .map(|f| (f.code, f.line))
            .collect()
    }

    /// (body, expected (code, line) list) for every lint rule (RFC 8461 §3.2, SPEC 4).
    #[test]
    fn lint_table_spec_4() {
        use Code::*;
        type Row = (String, Vec<(Code, Option<usize>)>);
        let rows: Vec<Row> = vec![
            (GOOD.into(), vec![(PolicyLineEndings, None)]),
            (GOOD.replace('\n', "\r\n"), vec![(PolicyLineEndings, None)]),
            // SPEC 4.1: mixed line ends parse, but are worth a warning
            (
                GOOD.replacen('\n', "\r\n", 1),
                vec![(PolicyLineEndingsMixed, None)],
            ),
            // no line end at all: nothing to say about line ends
            ("version: STSv1".into(), {
                vec![(PolicyKeyMissing, None), (PolicyKeyMissing, None)]
            }),
            // SPEC 4.1: not key: value, with the line number (blank lines count)
            (
                format!("{GOOD}\nthis is html\n"),
                vec![(PolicyLineInvalid, Some(7)), (PolicyLineEndings, None)],
            ),
            (
                GOOD.replace("mode:", " mode:"),
                vec![
                    (PolicyLineInvalid, Some(2)),
                    (PolicyKeyMissing, None),
                    (PolicyLineEndings, None),
                ],
            ),
            // SPEC 4.3: unknown keys, with a hint for a case slip
            (
                GOOD.replace("mode:", "Mode:"),
                vec![
                    (PolicyKeyUnknown, Some(2)),
                    (PolicyKeyMissing, None),
                    (PolicyLineEndings, None),
                ],
            ),
            (
                format!("{GOOD}x-note: hi\n"),
                vec![(PolicyKeyUnknown, Some(6)), (PolicyLineEndings, None)],
            ),
            // SPEC 4.3: a repeated key, first wins; a repeated mx
            (
                format!("{GOOD}mode: testing\nmx: MAIL.example.com\n"),
                vec![
                    (PolicyKeyDuplicate, Some(6)),
                    (PolicyKeyDuplicate, Some(7)),
                    (PolicyLineEndings, None),
                ],
            ),
            // SPEC 4.2, 4.4, 4.5: bad values
            (
                GOOD.replace("STSv1", "STSv2"),
                vec![(PolicyVersionInvalid, Some(1)), (PolicyLineEndings, None)],
            ),
            (
                GOOD.replace("enforce", "enforcing"),
                vec![(PolicyModeInvalid, Some(2)), (PolicyLineEndings, None)],
            ),
            (
                GOOD.replace("604800", "1w"),
                vec![(PolicyMaxAgeInvalid, Some(5)), (PolicyLineEndings, None)],
            ),
            (
                GOOD.replace("604800", "12345678901"),
                vec![(PolicyMaxAgeInvalid, Some(5)), (PolicyLineEndings, None)],
            ),
            (
                GOOD.replace("*.example.net", "*.*.example.net"),
                vec![(PolicyMxInvalid, Some(4)), (PolicyLineEndings, None)],
            ),
            // version not first: parses, but a warning
            (
                "mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 86400\n".into(),
                vec![(PolicyVersionNotFirst, Some(1)), (PolicyLineEndings, None)],
            ),
            // SPEC 4.2: required keys
            (
                "version: STSv1\nmode: testing\nmax_age: 86400\n".into(),
                vec![(PolicyKeyMissing, None), (PolicyLineEndings, None)],
            ),
            ("".into(), {
                vec![
                    (PolicyKeyMissing, None),
                    (PolicyKeyMissing, None),
                    (PolicyKeyMissing, None),
                ]
            }),
            // mode none needs no mx
            (
                "version: STSv1\nmode: none\nmax_age: 86400\n".into(),
                vec![(PolicyLineEndings, None)],
            ),
        ];
        for (body, want) in rows {
            assert_eq!(lint(&body), want, "{body:?}");
        }
    }

    #[test]
    fn not_utf8_names_the_line() {
        let body = b"version: STSv1\nmode: enforce\nmx: m\xe4il.example\n";
        let f = lint_lines(body);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].line), (Code::PolicyNotUtf8, Some(3)));
        assert_eq!(f[0].severity, Severity::Error);
    }

    fn audit(body: &str) -> Vec<Code> {
        audit_policy(body.as_bytes(), "u")
            .1
            .into_iter()
            .map(|f| f.code)
            .collect()
    }

    /// max_age advice: under a day warns in enforce only; over the RFC maximum warns.
    #[test]
    fn max_age_advice_depends_on_mode() {
        use Code::*;
        let short_enforce = GOOD.replace("604800", "86399");
        assert_eq!(
            audit(&short_enforce),
            vec![
                PolicyValid,
                PolicyLineEndings,
                PolicyModeEnforce,
                PolicyMaxAgeShort
            ]
        );
        let short_testing = short_enforce.replace("enforce", "testing");
        assert_eq!(
            audit(&short_testing),
            vec![
                PolicyValid,
                PolicyLineEndings,
                PolicyModeTesting,
                PolicyMaxAgeOk
            ]
        );
        assert_eq!(
            audit(&GOOD.replace("604800", "86400")),
            vec![
                PolicyValid,
                PolicyLineEndings,
                PolicyModeEnforce,
                PolicyMaxAgeOk
            ]
        );
        assert_eq!(
            audit(&GOOD.replace("604800", "31557601")),
            vec![
                PolicyValid,
                PolicyLineEndings,
                PolicyModeEnforce,
                PolicyMaxAgeClamped
            ]
        );
        // invalid: the verdict first, the detail after, no advice
        assert_eq!(
            audit(&GOOD.replace("enforce", "on")),
            vec![PolicyInvalid, PolicyModeInvalid, PolicyLineEndings]
        );
    }

    /// Every lint code's severity, as the issue lists them.
    #[test]
    fn lint_severities() {
        use Code::*;
        for (code, sev) in [
            (PolicyLineInvalid, Severity::Error),
            (PolicyNotUtf8, Severity::Error),
            (PolicyVersionInvalid, Severity::Error),
            (PolicyModeInvalid, Severity::Error),
            (PolicyMaxAgeInvalid, Severity::Error),
            (PolicyMxInvalid, Severity::Error),
            (PolicyKeyMissing, Severity::Error),
            (PolicyVersionNotFirst, Severity::Warning),
            (PolicyKeyUnknown, Severity::Warning),
            (PolicyKeyDuplicate, Severity::Warning),
            (PolicyLineEndingsMixed, Severity::Warning),
            (PolicyLineEndings, Severity::Note),
        ] {
            assert_eq!(code.severity(), sev, "{code:?}");
        }
    }
}
