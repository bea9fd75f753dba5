//! `[tlsrpt]` (SPEC 8): defaults, every key, and errors that name the line and the key
//! (SPEC 7.4).

use super::*;

#[test]
fn off_without_the_table() {
    assert_eq!(parse("").unwrap().tlsrpt, None);
    assert_eq!(parse("[cache]\nstate_dir = \"\"\n").unwrap().tlsrpt, None);
}

#[test]
fn an_empty_table_collects_with_the_defaults() {
    let t = parse("[tlsrpt]\n").unwrap().tlsrpt.unwrap();
    assert_eq!(t, TlsrptConfig::default());
    assert_eq!(t.socket, PathBuf::from("/var/spool/postfix/mtastsd/tlsrpt"));
    assert!(!t.send);
    assert_eq!(t.sendmail, ["/usr/sbin/sendmail", "-i"]);
    assert_eq!(t.delay, Duration::from_secs(4 * 3600));
    assert_eq!(t.keep_days, 14);
    assert_eq!(t.max_details, 100);
    assert_eq!(t.http_timeout, Duration::from_secs(30));
    assert_eq!(
        (t.organization_name, t.contact_info, t.submitter, t.from),
        (None, None, None, None)
    );
}

#[test]
fn every_key_parsed() {
    let t = parse(
        r#"
[tlsrpt]
socket = "/run/mtastsd/tlsrpt"
send = true
organization_name = "Example Mail"
contact_info = "https://mail.example/tlsrpt-contact"
submitter = "Mail.Example."
from = "reports@mail.example"
sendmail = ["/usr/lib/sendmail", "-i", "-odq"]
delay = "2h"
keep_days = 366
max_details = 7
http_timeout = "45s"
"#,
    )
    .unwrap()
    .tlsrpt
    .unwrap();
    assert_eq!(
        t,
        TlsrptConfig {
            socket: PathBuf::from("/run/mtastsd/tlsrpt"),
            send: true,
            organization_name: Some("Example Mail".into()),
            contact_info: Some("https://mail.example/tlsrpt-contact".into()),
            submitter: Some("mail.example".into()),
            from: Some("reports@mail.example".into()),
            sendmail: vec!["/usr/lib/sendmail".into(), "-i".into(), "-odq".into()],
            delay: Duration::from_secs(7200),
            keep_days: 366,
            max_details: 7,
            http_timeout: Duration::from_secs(45),
        }
    );
}

#[test]
fn submitter_and_from_default_to_the_contact_address() {
    for contact in ["tlsrpt@Mail.Example", "mailto:tlsrpt@Mail.Example"] {
        let t = parse(&format!(
            "[tlsrpt]\nsend = true\norganization_name = \"X\"\ncontact_info = \"{contact}\"\n"
        ))
        .unwrap()
        .tlsrpt
        .unwrap();
        assert_eq!(t.submitter.as_deref(), Some("mail.example"), "{contact}");
        assert_eq!(t.from.as_deref(), Some("tlsrpt@Mail.Example"), "{contact}");
    }
    // A URI gives neither.
    let t = parse("[tlsrpt]\ncontact_info = \"https://x.example/\"\n")
        .unwrap()
        .tlsrpt
        .unwrap();
    assert_eq!((t.submitter, t.from), (None, None));
}

#[test]
fn tlsrpt_needs_state_dir() {
    assert_error(
        "[cache]\nstate_dir = \"\"\n\n[tlsrpt]\n",
        2,
        "cache.state_dir",
        "[tlsrpt] keeps its counts in state_dir",
    );
}

#[test]
fn send_needs_who_sends() {
    let base = "[tlsrpt]\n\nsend = true\n";
    assert_error(base, 3, "tlsrpt.send", "needs organization_name");
    assert_error(
        &format!("{base}organization_name = \"X\"\n"),
        3,
        "tlsrpt.send",
        "needs contact_info",
    );
    let uri = format!("{base}organization_name = \"X\"\ncontact_info = \"https://x.example/\"\n");
    assert_error(&uri, 3, "tlsrpt.send", "needs submitter");
    assert_error(
        &format!("{uri}submitter = \"x.example\"\n"),
        3,
        "tlsrpt.send",
        "needs from",
    );
    assert!(parse(&format!(
        "{uri}submitter = \"x.example\"\nfrom = \"r@x.example\"\n"
    ))
    .is_ok());
    // Without send, nothing is required: the reports are only previewed.
    assert!(parse("[tlsrpt]\nsend = false\n").is_ok());
}

#[test]
fn bad_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("socket = \"tlsrpt\"", "tlsrpt.socket", "is not absolute"),
        ("socket = 5", "tlsrpt.socket", "invalid type"),
        ("send = \"yes\"", "tlsrpt.send", "bool"),
        (
            "organization_name = \" \"",
            "tlsrpt.organization_name",
            "must not be empty",
        ),
        (
            "contact_info = \"\"",
            "tlsrpt.contact_info",
            "must not be empty",
        ),
        (
            "submitter = \"not a domain\"",
            "tlsrpt.submitter",
            "is not a domain name",
        ),
        (
            "submitter = \"localhost\"",
            "tlsrpt.submitter",
            "is not a domain name",
        ),
        (
            "from = \"reports\"",
            "tlsrpt.from",
            "is not an email address",
        ),
        (
            "from = \"mailto:r@x.example\"",
            "tlsrpt.from",
            "is not an email address",
        ),
        ("sendmail = []", "tlsrpt.sendmail", "absolute path"),
        (
            "sendmail = [\"sendmail\", \"-i\"]",
            "tlsrpt.sendmail",
            "absolute path",
        ),
        (
            "sendmail = \"/usr/sbin/sendmail\"",
            "tlsrpt.sendmail",
            "invalid type",
        ),
        ("delay = \"24h\"", "tlsrpt.delay", "at most \"23h\""),
        ("delay = 0", "tlsrpt.delay", "greater than 0"),
        ("keep_days = 2", "tlsrpt.keep_days", "from 3 to 366"),
        (
            "organization_name = \"Exämple Mail\"",
            "tlsrpt.organization_name",
            "only printable ASCII",
        ),
        (
            "contact_info = \"tlsrpt@mail.example\\n\"",
            "tlsrpt.contact_info",
            "only printable ASCII",
        ),
        (
            "from = \"-f@mail.example\"",
            "tlsrpt.from",
            "is not an email address",
        ),
        (
            "from = \"a@mail.example,b@x.example\"",
            "tlsrpt.from",
            "is not an email address",
        ),
        ("http_timeout = \"11m\"", "tlsrpt.http_timeout", "at most"),
        ("keep_days = 367", "tlsrpt.keep_days", "from 3 to 366"),
        ("max_details = 0", "tlsrpt.max_details", "at least 1"),
        (
            "http_timeout = \"soon\"",
            "tlsrpt.http_timeout",
            "expected a duration",
        ),
        (
            "sockets = \"/x\"",
            "tlsrpt.sockets",
            "unknown key `sockets`",
        ),
    ];
    for (line, key, fragment) in cases {
        assert_error(&format!("# x\n[tlsrpt]\n{line}\n"), 3, key, fragment);
    }
    let long = format!("socket = \"/{}\"", "a".repeat(107));
    assert_error(
        &format!("[tlsrpt]\n{long}\n"),
        2,
        "tlsrpt.socket",
        "longer than 107 bytes",
    );
}
