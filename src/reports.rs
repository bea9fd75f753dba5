//! `mtastsd tlsrpt show|report|send` (SPEC 8): the administrator's view of the
//! TLS-RPT store under `cache.state_dir` while the daemon runs, and sending by hand.
//! `show` and `report` open the store read-only; `send` writes the same marks as
//! the daemon's sender ([`crate::tlsrpt::sender`]), so a delivery sent by either is
//! never sent again by the other.

use std::path::PathBuf;

use crate::config::Config;
use crate::daemon::tlsrpt_settings;
use crate::logging::chain;
use crate::tlsrpt::aggregate::Day;
use crate::tlsrpt::sender::{self, Sender, TlsrptError};
use crate::tlsrpt::show;
use crate::tlsrpt::store::{DeliveryState, TlsrptStore};

/// A command's failure: the message, and whether it is the configuration's fault
/// (exit 2) or the store's (exit 1).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub config: bool,
}

impl Failure {
    fn config(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            config: true,
        }
    }

    fn runtime(e: &dyn std::error::Error) -> Failure {
        Failure {
            message: chain(e),
            config: false,
        }
    }
}

fn store_path(config: &Config) -> Result<PathBuf, Failure> {
    let dir = config.cache.state_dir.as_ref().ok_or_else(|| {
        Failure::config("cache.state_dir is \"\": there is no TLS-RPT store (SPEC 8.2)")
    })?;
    let path = sender::store_path(dir);
    if !path.exists() {
        return Err(Failure::config(format!(
            "{} does not exist: nothing collected yet (is [tlsrpt] in the configuration, and Postfix's smtp_tlsrpt_enable = yes?)",
            path.display()
        )));
    }
    Ok(path)
}

/// The day a command means: the one given (YYYY-MM-DD), else today or yesterday.
pub fn day_or(given: Option<&str>, days_ago: i64) -> Result<Day, Failure> {
    match given {
        Some(text) => Day::parse(text)
            .ok_or_else(|| Failure::config(format!("{text:?} is not a day like 2026-12-01"))),
        None => Ok(Day(Day::from_unix(unix_now()).0 - days_ago)),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `mtastsd tlsrpt show [--day D] [DOMAIN]`.
pub fn show(config: &Config, day: Day, domain: Option<&str>) -> Result<show::DayView, Failure> {
    let path = store_path(config)?;
    let store = TlsrptStore::open_read_only(&path).map_err(|e| Failure::runtime(&e))?;
    let domain = domain.map(str::to_ascii_lowercase);
    let counts = store
        .counts(day, domain.as_deref())
        .map_err(|e| Failure::runtime(&e))?;
    // A report that cannot be read is shown as not built; `report` says why.
    Ok(show::view(day, &path.display().to_string(), &counts, |d| {
        store.report(day, d).ok().flatten()
    }))
}

/// The report of `domain` on `day`: the stored JSON exactly as sent (true), or,
/// before it is built, a preview built now (false; its report-id will differ).
pub fn report(config: &Config, day: Day, domain: &str) -> Result<(String, bool), Failure> {
    let path = store_path(config)?;
    let domain = domain.to_ascii_lowercase();
    let store = TlsrptStore::open_read_only(&path).map_err(|e| Failure::runtime(&e))?;
    if let Some(stored) = store
        .report(day, &domain)
        .map_err(|e| Failure::runtime(&e))?
    {
        return Ok((stored.json, true));
    }
    let settings = settings(config)?;
    let preview = Sender::new(store, reqwest::Client::new(), settings);
    match preview.build(day, &domain, &sender::report_id(day, 0)) {
        Ok(r) => Ok((r.to_json(), false)),
        Err(TlsrptError::Report(e)) => Err(Failure::config(format!(
            "no report for {domain} on {day}: {e}"
        ))),
        Err(TlsrptError::Store(e)) => Err(Failure::runtime(&e)),
    }
}

fn settings(config: &Config) -> Result<sender::Settings, Failure> {
    let t = config.tlsrpt.as_ref().ok_or_else(|| {
        Failure::config("the configuration has no [tlsrpt] table (see mtastsd.toml(5))")
    })?;
    let settings = tlsrpt_settings(t);
    if settings.organization_name.is_empty() || settings.contact_info.is_empty() {
        return Err(Failure::config(
            "a report needs [tlsrpt] organization_name and contact_info (RFC 8460 §4.4)",
        ));
    }
    Ok(settings)
}

/// One line of `mtastsd tlsrpt send`.
pub struct Sent {
    pub domain: String,
    pub uri: String,
    pub what: String,
}

/// `mtastsd tlsrpt send [--day D] [--dry-run]`: build `day`'s reports now and attempt
/// every delivery not yet sent or given up; with `dry_run`, only say where each
/// would go (nothing is built or stored).
pub async fn send(config: &Config, day: Day, dry_run: bool) -> Result<Vec<Sent>, Failure> {
    let path = store_path(config)?;
    let mut settings = settings(config)?;
    if settings.submitter.is_empty() || settings.from.is_empty() {
        return Err(Failure::config(
            "sending needs [tlsrpt] submitter and from (or a contact_info address)",
        ));
    }
    settings.send = true;
    // SPEC 8.4: a report covers a whole UTC day, and only one is ever stored for it:
    // built before the day is over, it would leave the rest of the day out.
    let settled = Day::from_unix(unix_now() - sender::SETTLE_SECS);
    if day >= settled {
        return Err(Failure::config(format!(
            "{day} has not ended (a report covers a whole UTC day, and is built {} minutes after it)",
            sender::SETTLE_SECS / 60
        )));
    }
    if dry_run {
        return dry(&path, settings, day);
    }
    let roots = crate::resolver::https::trust_roots(config.fetch.ca_file.as_deref())
        .map_err(|e| Failure::runtime(&e))?;
    let client = crate::tlsrpt::deliver::https_client(roots).map_err(|e| Failure::runtime(&e))?;
    let mut sender = Sender::open(&path, client, settings).map_err(|e| Failure::runtime(&e))?;
    if config.redis.is_some() {
        sender.build_none();
    }
    let done = sender
        .send_day(day, unix_now())
        .await
        .map_err(|e| Failure::runtime(&e))?;
    Ok(done
        .into_iter()
        .map(|(domain, uri, what)| Sent {
            domain,
            uri,
            what: what.to_owned(),
        })
        .collect())
}

fn dry(path: &std::path::Path, settings: sender::Settings, day: Day) -> Result<Vec<Sent>, Failure> {
    let store = TlsrptStore::open_read_only(path).map_err(|e| Failure::runtime(&e))?;
    let counts = store.counts(day, None).map_err(|e| Failure::runtime(&e))?;
    let mut out = Vec::new();
    let preview = Sender::new(store, reqwest::Client::new(), settings);
    for (_, domain) in counts.reports() {
        let stored = preview
            .store()
            .report(day, domain)
            .map_err(|e| Failure::runtime(&e))?;
        let uris: Vec<(String, String)> = match stored {
            Some(r) => r
                .deliveries
                .into_iter()
                .map(|d| {
                    let what = match d.state {
                        DeliveryState::Pending | DeliveryState::Sending => "would be sent",
                        DeliveryState::Sent => "already sent",
                        DeliveryState::Dropped => "given up, not sent again",
                    };
                    (d.uri, what.to_owned())
                })
                .collect(),
            None => {
                let built = preview.build(day, domain, &sender::report_id(day, 0));
                let what = match built {
                    Ok(r) => format!("would be built ({} bytes) and sent", r.to_json().len()),
                    Err(e) => format!("cannot be built: {e}"),
                };
                preview
                    .rua(day, domain)
                    .map_err(|e| Failure::runtime(&e))?
                    .into_iter()
                    .map(|u| (u, what.clone()))
                    .collect()
            }
        };
        for (uri, what) in uris {
            out.push(Sent {
                domain: domain.to_owned(),
                uri,
                what,
            });
        }
    }
    Ok(out)
}
