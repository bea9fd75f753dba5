//! The human output of `mtastsd check` (pure): one line per finding, grouped by area,
//! then the verdict, the next step and what to publish. Colour (ANSI) only when the
//! caller asks for it, i.e. on a terminal without `NO_COLOR`.

use std::fmt::Write;

use super::{Area, CheckReport, Finding, Severity};

fn title(area: Area, r: &CheckReport) -> String {
    let d = &r.domain;
    match area {
        Area::Domain => "Domain".into(),
        Area::StsRecord => format!("_mta-sts.{d} TXT record"),
        Area::PolicyHost => format!("Policy host mta-sts.{d} (HTTPS)"),
        Area::Policy => match &r.policy_file {
            Some(file) => format!("Policy file {file}"),
            None => "Policy file".into(),
        },
        Area::Mx => "MX hosts against the policy".into(),
        Area::MxTls => "MX hosts on port 25 (STARTTLS)".into(),
        Area::Tlsrpt => format!("_smtp._tls.{d} TLS-RPT record"),
    }
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
        let _ = write!(out, "{h}: ");
    }
    out.push_str(&f.message);
    if let Some(stage) = f.stage {
        let _ = write!(out, " [{stage}]");
    }
    out.push('\n');
}

/// The whole report as text.
pub fn render(r: &CheckReport, colour: bool) -> String {
    let mut out = String::new();
    let subject = match (&r.policy_file, r.domain.is_empty()) {
        (Some(file), true) => file.clone(),
        (Some(file), false) => format!("{file} for {}", r.domain),
        (None, _) => r.domain.clone(),
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
    let _ = writeln!(out, "next step: {}", r.next_step);
    if let Some(s) = &r.suggestion {
        let _ = writeln!(out, "\n{}", paint(colour, "1", "What to publish"));
        let _ = writeln!(out, "  DNS:");
        let _ = writeln!(out, "    {}", s.tlsrpt_record);
        let _ = writeln!(out, "    {}", s.sts_record);
        let _ = writeln!(out, "  {} (Content-Type: text/plain):", s.policy_url);
        for l in s.policy.lines() {
            let _ = writeln!(out, "    {l}");
        }
        let _ = writeln!(out, "  {}", s.enforce_reminder);
    }
    out
}
