//! SMTP probe of one MX host (network edge): greeting, `EHLO`, `STARTTLS` (RFC 3207),
//! then the TLS handshake of [`super::tls`] with the MX host name as SNI and as the
//! name to verify (RFC 8461 §4.2: a sender enforcing the policy refuses an MX host
//! whose certificate fails). No mail is sent: `QUIT` follows the handshake.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::tls::{self, TlsProbe};
use super::CheckOptions;
use crate::resolver::dns::Dns;

/// A reply line longer than this is not SMTP (RFC 5321 §4.5.3.1.5 allows 512).
const MAX_LINE: u64 = 2048;
/// More reply lines than this to one command is not SMTP either.
const MAX_LINES: usize = 100;

/// One SMTP reply: its code and the text of each line.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

/// Read one (possibly multi-line) reply: `250-…` lines continue, `250 …` ends it.
async fn read_reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Result<Reply, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = (&mut *r)
            .take(MAX_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err("reply too long".into());
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    cmd: &str,
) -> Result<Reply, String> {
    s.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    read_reply(s).await
}

/// Probe `host` on `opts.smtp_port` within `opts.timeout`.
pub async fn probe_mx(dns: &Dns, host: &str, opts: &CheckOptions) -> TlsProbe {
    match tokio::time::timeout(opts.timeout, probe(dns, host, opts)).await {
        Ok(Ok(done)) | Ok(Err(done)) => done,
        Err(_) => TlsProbe::Unreachable(format!(
            "port {}: no answer within {} s",
            opts.smtp_port,
            opts.timeout.as_secs()
        )),
    }
}

async fn probe(dns: &Dns, host: &str, opts: &CheckOptions) -> Result<TlsProbe, TlsProbe> {
    let tcp = tls::connect(dns, host, opts.smtp_port).await?;
    let mut s = BufReader::new(tcp);
    let smtp = |what: &str, e: String| TlsProbe::Smtp(format!("{what}: {e}"));
    let greeting = read_reply(&mut s).await.map_err(|e| smtp("greeting", e))?;
    if greeting.code != 220 {
        return Err(TlsProbe::Smtp(format!(
            "greeting is {} {}, expected 220",
            greeting.code,
            greeting.lines.join(" ")
        )));
    }
    let ehlo = command(&mut s, &format!("EHLO {}", opts.helo))
        .await
        .map_err(|e| smtp("EHLO", e))?;
    if ehlo.code != 250 {
        return Err(TlsProbe::Smtp(format!(
            "EHLO answered {} {}",
            ehlo.code,
            ehlo.lines.join(" ")
        )));
    }
    // The first line is the server's name; the others are extensions (RFC 5321 §4.1.1.1).
    let starttls = ehlo.lines.iter().skip(1).any(|l| {
        l.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    });
    if !starttls {
        let _ = command(&mut s, "QUIT").await;
        return Err(TlsProbe::NoStarttls);
    }
    let go = command(&mut s, "STARTTLS")
        .await
        .map_err(|e| smtp("STARTTLS", e))?;
    if go.code != 220 {
        return Err(TlsProbe::Smtp(format!(
            "STARTTLS answered {} {}",
            go.code,
            go.lines.join(" ")
        )));
    }
    // Bytes the server sent before the handshake would be read as plaintext (the
    // STARTTLS injection of CVE-2011-0411): refuse them rather than carry them over.
    if !s.buffer().is_empty() {
        return Err(TlsProbe::HandshakeFailed(
            "the server sent data after its STARTTLS reply, before the handshake".into(),
        ));
    }
    let (tls, info) = tls::handshake(s.into_inner(), host, opts, None).await?;
    // Polite: QUIT inside TLS, without waiting long for the answer.
    let mut tls = BufReader::new(tls);
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(1), command(&mut tls, "QUIT")).await;
    Ok(TlsProbe::Done(info))
}
