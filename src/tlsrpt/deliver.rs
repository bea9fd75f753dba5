//! Sending one stored report to one `rua` destination (SPEC 8.4, RFC 8460 §5):
//! the HTTPS POST, the hand-over to the local MTA's sendmail(1), and when to try
//! again. The edge of the TLS-RPT subsystem (network, processes); the schedule
//! ([`next_try`]) and the message ([`super::mail`]) are pure.
//!
//! Every attempt ends in an [`Outcome`]: the caller marks the delivery sent, due
//! again at [`next_try`], or dropped.

use std::error::Error as StdError;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

pub use super::record::Destination;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: a 2xx, or sendmail's exit 0.
    Sent,
    /// Worth another attempt later (RFC 8460 §5.5), with what went wrong.
    Retry(String),
    /// Permanent: the same attempt would fail again (a 4xx but 408/429, a sendmail
    /// exit other than EX_TEMPFAIL, an address that cannot be handed over safely).
    Failed(String),
}

/// RFC 8460 §5.2: reports SHOULD be gzipped, for both transports. The report is
/// built once and stored, so every retry sends the same bytes.
pub fn gzip(json: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    enc.write_all(json.as_bytes()).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Why no HTTPS client for reports could be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTPS client for TLS-RPT reports")]
pub struct ClientError(#[source] reqwest::Error);

/// The client for [`post_https`], on the TLS stack of the policy fetch (rustls with
/// aws-lc-rs, TLS 1.2+, the trust anchors the caller gives, as
/// `resolver::https::trust_roots` makes them): no redirects (a 3xx is an answer),
/// no proxies, https only.
pub fn https_client(roots: rustls::RootCertStore) -> Result<reqwest::Client, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .no_proxy()
        .user_agent(concat!("mtastsd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError)
}

/// RFC 8460 §5.4 (SPEC 8.4): POST the gzipped report with `Content-Type:
/// application/tlsrpt+gzip`; one `deadline` for connect, handshake, upload and the
/// response head. A 2xx is success (§5.4); a 3xx is not followed (the report would
/// go where the record does not say) and is retried, since §5.4 lets a submitter
/// retry any other code and a moved endpoint may be fixed within the day; 408, 429
/// and 5xx are retried; other 4xx are permanent.
pub async fn post_https(
    client: &reqwest::Client,
    url: &str,
    gz: Vec<u8>,
    deadline: Duration,
) -> Outcome {
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/tlsrpt+gzip")
        .body(gz)
        .timeout(deadline)
        .send();
    let resp = match tokio::time::timeout(deadline, request).await {
        Err(_) => return Outcome::Retry(format!("no answer within {deadline:?}")),
        Ok(Err(e)) if e.is_builder() => return Outcome::Failed(chain(&e)),
        Ok(Err(e)) if e.is_timeout() => {
            return Outcome::Retry(format!("no answer within {deadline:?}"))
        }
        Ok(Err(e)) => return Outcome::Retry(chain(&e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    let what = format!("HTTP {}", status.as_u16());
    match status.as_u16() {
        200..=299 => Outcome::Sent,
        300..=399 => {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(200)
                        .collect()
                })
                .unwrap_or_else(|| "nowhere".to_string());
            Outcome::Retry(format!("{what}: redirect to {to} not followed"))
        }
        408 | 429 | 500..=599 => Outcome::Retry(what),
        _ => Outcome::Failed(what),
    }
}

/// An error and its sources, once each (reqwest nests io and rustls errors).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = match err.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips a custom inner error's own Display.
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    parts.join(": ")
}

/// sysexits.h EX_TEMPFAIL: sendmail(1)'s "try again later".
const EX_TEMPFAIL: i32 = 75;

/// RFC 8460 §5.3 (SPEC 8.4): hand `message` to the local MTA: `argv` (e.g.
/// `["/usr/sbin/sendmail", "-i"]`, no shell) plus `-f from -- to`, the message on
/// stdin, all within `deadline` (then the process is killed). Exit 0 is sent;
/// EX_TEMPFAIL (75) and death by a signal are retried; any other exit is permanent,
/// with the first line sendmail wrote to stderr.
pub async fn sendmail(
    argv: &[String],
    from: &str,
    to: &str,
    message: &[u8],
    deadline: Duration,
) -> Outcome {
    // The addresses come from DNS (`rua`) and the configuration: neither may become
    // an option of sendmail(1) nor split into two arguments downstream.
    for (what, addr) in [("recipient", to), ("sender", from)] {
        if let Err(why) = check_address(addr) {
            return Outcome::Failed(format!("{what} {:?}: {why}", escape(addr)));
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return Outcome::Failed("no sendmail command configured".into());
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .args(["-f", from, "--", to])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A timeout drops the future below, and with it the child: killed, reaped.
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot run {program}: {e}");
            return match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Outcome::Failed(why)
                }
                _ => Outcome::Retry(why),
            };
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let write = async move {
        let r = stdin.write_all(message).await;
        // EOF ends the message (with -i, a lone "." does not).
        drop(stdin);
        r
    };
    // Write and wait together: a sendmail that fills its stderr pipe before reading
    // all of stdin must not block us, nor we it.
    let run = async { tokio::join!(write, child.wait_with_output()) };
    let (written, output) = match tokio::time::timeout(deadline, run).await {
        Ok(r) => r,
        Err(_) => return Outcome::Retry(format!("{program}: killed after {deadline:?}")),
    };
    let output = match output {
        Ok(o) => o,
        Err(e) => return Outcome::Retry(format!("{program}: {e}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = escape(stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    match output.status.code() {
        Some(0) => match written {
            Ok(()) => Outcome::Sent,
            // Exit 0 without having read the whole message: not trusted as sent.
            Err(e) => Outcome::Retry(format!("{program}: exit 0, but writing the message: {e}")),
        },
        Some(EX_TEMPFAIL) => Outcome::Retry(format!("{program}: exit 75 (EX_TEMPFAIL): {first}")),
        Some(code) => Outcome::Failed(format!("{program}: exit {code}: {first}")),
        None => Outcome::Retry(format!("{program}: killed by a signal: {first}")),
    }
}

/// An address for sendmail's argv: non-empty, not an option, no whitespace or
/// control characters (which Postfix would split on or refuse).
fn check_address(addr: &str) -> Result<(), &'static str> {
    let (local, domain) = addr.rsplit_once('@').unwrap_or_default();
    if addr.is_empty() {
        Err("empty")
    } else if addr.starts_with('-') {
        Err("begins with '-'")
    } else if addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err("contains whitespace or control characters")
    } else if addr.contains([',', ';', '<', '>', '(', ')', '"', '\\', ':', '[', ']']) {
        // sendmail(1) reads a recipient argument as an address list: one `rua`
        // (a `%2C` decodes to a comma) must not become several recipients.
        Err("is not one plain address (list or route characters)")
    } else if local.is_empty() || local.contains('@') || !domain.contains('.') {
        // Also keeps a `rua` from naming a local mailbox (`root@localhost`).
        Err("is not one address at a domain name with a dot")
    } else {
        Ok(())
    }
}

/// Text from outside (an address, sendmail's stderr) made safe for a log line,
/// at most 200 characters.
fn escape(s: &str) -> String {
    s.chars().take(200).flat_map(char::escape_debug).collect()
}

/// RFC 8460 §5.5 back-off: the first retry 5 minutes after the first failed attempt,
/// each later one twice as far, plus up to a quarter more (`jitter` in [0, 1), so
/// reports that failed together do not all come back together). `tries` counts the
/// attempts made so far (including the one that just failed). Never after 24 hours
/// from `first_try`: a wait that would end later is cut to that instant (the last
/// attempt), and from then on there is none (None: drop the delivery).
pub fn next_try(tries: u32, first_try: i64, now: i64, jitter: f64) -> Option<i64> {
    const FIRST: i64 = 5 * 60;
    const LIMIT: i64 = 24 * 60 * 60;
    let last = first_try.saturating_add(LIMIT);
    if now >= last {
        return None;
    }
    // 5 min × 2^20 is far beyond a day: larger exponents change nothing.
    let wait = FIRST << tries.saturating_sub(1).min(20);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let wait = wait + (wait as f64 * jitter / 4.0) as i64;
    Some(now.saturating_add(wait).min(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const T0: i64 = 1_768_435_200; // 2026-01-15T00:00:00Z

    /// RFC 8460 §5.5: exponential back-off from 5 minutes, within 24 h.
    #[test]
    fn rfc8460_5_5_next_try_table() {
        let rows: &[(u32, i64, f64, Option<i64>)] = &[
            // (tries, now - first_try, jitter, want - now)
            (0, 0, 0.0, Some(300)), // no attempt recorded yet: as after the first
            (1, 0, 0.0, Some(300)),
            (2, 300, 0.0, Some(600)),
            (3, 900, 0.0, Some(1200)),
            (1, 0, 0.5, Some(337)), // 300 + 300 × 0.5 / 4
            (1, 0, 0.999, Some(374)),
            (1, 0, 7.0, Some(375)), // out of range: clamped
            (1, 0, -1.0, Some(300)),
            (1, 0, f64::NAN, Some(300)),
            (9, 20 * H, 0.0, Some(4 * H)), // 5 min × 256 > the 4 h left: the last instant
            (u32::MAX, 0, 1.0, Some(24 * H)),
            (2, 24 * H - 1, 0.0, Some(1)), // one second left: the last attempt then
            (2, 24 * H, 0.0, None),        // a day after the first attempt: dropped
            (2, 30 * H, 0.0, None),
        ];
        for &(tries, age, jitter, want) in rows {
            let now = T0 + age;
            let got = next_try(tries, T0, now, jitter).map(|t| t - now);
            assert_eq!(got, want, "tries {tries}, age {age}, jitter {jitter}");
        }
    }

    /// RFC 8460 §5.5: whatever the inputs, never after first_try + 24 h, never
    /// before now, and a retry is always offered before that.
    #[test]
    fn next_try_stays_within_the_day() {
        for tries in [1, 2, 5, 8, 9, 10, 12, 40] {
            for age in [0, 1, 299, 4 * H, 23 * H, 24 * H - 1] {
                for jitter in [0.0, 0.3, 0.99] {
                    let now = T0 + age;
                    let t = next_try(tries, T0, now, jitter).expect("within the day");
                    assert!(t > now && t <= T0 + 24 * H, "{tries} {age} {jitter}: {t}");
                }
            }
        }
    }

    #[test]
    fn address_check() {
        for ok in [
            "a@b.c",
            "tlsrpt+x@example.com",
            "first.last@mail.example.net",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-oQ/tmp@x",
            "-",
            "a b@c",
            "a@b\n",
            "a\r@b",
            "a\t@b",
            "a\u{7f}@b",
            // One rua, one recipient: a decoded %2C must not make a list.
            "a@b.example,victim@c.example",
            "a@b.example;c@d.example",
            "Name <a@b.example>",
            "@relay.example:a@b.example",
            "root@localhost",
            "a@@b.example",
            "no-at-sign.example",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gzip_round_trip() {
        use std::io::Read;
        let json = r#"{"organization-name":"x"}"#;
        let gz = gzip(json);
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic (RFC 1952)");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, json);
    }
}
