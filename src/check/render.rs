//! The human output of `mtastsd check` (pure): one line per finding, grouped by area,
//! then the verdict, the next step and what to publish. Colour (ANSI) only when the
//! caller asks for it, i.e. on a terminal without `NO_COLOR`.
//!
//! Much of a report is remote text (SMTP greetings, TXT records, policy lines, host
//! names): every piece of it goes through [`clean`], so that what a domain publishes
//! cannot drive the terminal (escape sequences) or forge lines of the report.

use std::borrow::Cow;
use std::fmt::Write;

use super::{Area, CheckReport, Finding, Severity};

fn title(area: Area, r: &CheckReport) -> String {
    let d = clean(&r.domain);
    match area {
        Area::Domain => "Domain".into(),
        Area::StsRecord => format!("_mta-sts.{d} TXT record"),
        Area::PolicyHost => format!("Policy host mta-sts.{d} (HTTPS)"),
        Area::Policy => match &r.policy_file {
            Some(file) => format!("Policy file {}", clean(file)),
            None => "Policy file".into(),
        },
        Area::Mx => "MX hosts against the policy".into(),
        Area::MxTls => "MX hosts on port 25 (STARTTLS)".into(),
        Area::Tlsrpt => format!("_smtp._tls.{d} TLS-RPT record"),
    }
}

/// `text` with control characters (C0, DEL, C1; line ends included) written as
/// escapes: `\x1b`, `\r`, `\u{9b}`.
fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn paint(colour: bool, code: &str, text: &str) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn severity(colour: bool, s: Severity) -> String {
    let padded = format!("{:<8}", s.as_str());
    let code = match s {
        Severity::Error => "1;31",
        Severity::Warning => "33",
        Severity::Ok => "32",
        Severity::Note => "36",
    };
    paint(colour, code, &padded)
}

fn line(out: &mut String, f: &Finding, colour: bool) {
    let _ = write!(
        out,
        "  {}{:<31} ",
        severity(colour, f.severity),
        f.code.as_str()
    );
    if let Some(n) = f.line {
        let _ = write!(out, "line {n}: ");
    }
    if let Some(h) = &f.host {
        let _ = write!(out, "{}: ", clean(h));
    }
    out.push_str(&clean(&f.message));
    if let Some(stage) = f.stage {
        let _ = write!(out, " [{stage}]");
    }
    out.push('\n');
}

/// The whole report as text.
pub fn render(r: &CheckReport, colour: bool) -> String {
    let mut out = String::new();
    let subject = match (&r.policy_file, r.domain.is_empty()) {
        (Some(file), true) => clean(file).into_owned(),
        (Some(file), false) => format!("{} for {}", clean(file), clean(&r.domain)),
        (None, _) => clean(&r.domain).into_owned(),
    };
    let _ = writeln!(out, "{}", paint(colour, "1", &format!("check {subject}")));
    for area in Area::ALL {
        let mut findings = r.findings.iter().filter(|f| f.area == area).peekable();
        if findings.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "\n{}", paint(colour, "1", &title(area, r)));
        for f in findings {
            line(&mut out, f, colour);
        }
    }
    let verdict = format!(
        "verdict: {} ({} error(s), {} warning(s))",
        r.verdict.as_str(),
        r.summary.errors,
        r.summary.warnings
    );
    let verdict_colour = if r.summary.errors > 0 { "1;31" } else { "1" };
    let _ = writeln!(out, "\n{}", paint(colour, verdict_colour, &verdict));
    let _ = writeln!(out, "next step: {}", clean(&r.next_step));
    if let Some(s) = &r.suggestion {
        let _ = writeln!(out, "\n{}", paint(colour, "1", "What to publish"));
        let _ = writeln!(out, "  DNS:");
        let _ = writeln!(out, "    {}", clean(&s.tlsrpt_record));
        let _ = writeln!(out, "    {}", clean(&s.sts_record));
        let _ = writeln!(
            out,
            "  {} (Content-Type: text/plain):",
            clean(&s.policy_url)
        );
        for l in s.policy.lines() {
            let _ = writeln!(out, "    {}", clean(l));
        }
        let _ = writeln!(out, "  {}", clean(&s.enforce_reminder));
    }
    out
}
