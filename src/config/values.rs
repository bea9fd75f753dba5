//! Validating value types. Each rejects a bad value with a message saying what
//! would be accepted; toml adds the span. List elements are the exception (toml
//! reports their errors at the list), so `listen` and `nameservers` are read as
//! [`toml::Spanned`] strings and checked by the functions here, which return a
//! [`Late`] error with the element's own span.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Spanned;

use super::{ListenAddr, LogTarget};

/// A value that failed validation after deserialization: its span and why.
pub(super) type Late = (std::ops::Range<usize>, String);

/// `IP:port` (IPv6 in brackets).
#[derive(Debug)]
pub(super) struct InetAddr(pub(super) SocketAddr);

impl<'de> Deserialize<'de> for InetAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(InetAddr).map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is not an address: expected IP:port like \"127.0.0.1:9461\" or \"[::1]:9461\""
            ))
        })
    }
}

/// Parse `500ms`, `10s`, `5m`, `1h`, `1d` (no space, no sign, no fraction).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

pub(super) const UNLIMITED: u64 = u64::MAX;
const DURATION_HINT: &str =
    "a duration like \"10s\" or \"5m\" (units ms, s, m, h, d) or whole seconds";

/// A duration greater than zero and at most `MAX_SECS` seconds.
#[derive(Debug)]
pub(super) struct Dur<const MAX_SECS: u64>(pub(super) Duration);

impl<const MAX_SECS: u64> Dur<MAX_SECS> {
    fn check<E: de::Error>(d: Duration) -> Result<Self, E> {
        if d.is_zero() {
            Err(E::custom("must be greater than 0"))
        } else if d > Duration::from_secs(MAX_SECS) {
            // Only the DNS and fetch timeouts have a limit: together they must leave
            // the answer well inside the 100 s Postfix waits (SPEC 3.6).
            Err(E::custom(format!(
                "must be at most \"{MAX_SECS}s\", so that the answer reaches Postfix \
                 well inside the 100 s it waits"
            )))
        } else {
            Ok(Dur(d))
        }
    }
}

impl<'de, const MAX_SECS: u64> Deserialize<'de> for Dur<MAX_SECS> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const M: u64>;
        impl<const M: u64> Visitor<'_> for V<M> {
            type Value = Dur<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_HINT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v <= 0 {
                    return Err(E::custom("must be greater than 0"));
                }
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Dur::check(Duration::from_secs(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match parse_duration(v) {
                    Some(d) => Dur::check(d),
                    None => Err(E::custom(format!("expected {DURATION_HINT}, not {v:?}"))),
                }
            }
        }
        deserializer.deserialize_any(V::<MAX_SECS>)
    }
}

/// An integer ≥ 1.
#[derive(Debug)]
pub(super) struct AtLeastOne(pub(super) usize);

impl<'de> Deserialize<'de> for AtLeastOne {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AtLeastOne;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of at least 1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => Ok(AtLeastOne(n)),
                    _ => Err(E::custom(format!("must be at least 1, not {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => Ok(AtLeastOne(n)),
                    _ => Err(E::custom(format!("must be at least 1, not {v}"))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug)]
pub(super) struct Port(pub(super) u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u16::try_from(v) {
                    Ok(p) if p >= 1 => Ok(Port(p)),
                    _ => Err(E::custom(format!(
                        "expected a port number from 1 to 65535, not {v}"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A user or group name (or a numeric id) for a unix socket's owner. Whether it
/// exists is checked when the socket is made: the system's account database is I/O.
pub(super) fn account_name(raw: Option<Spanned<String>>) -> Result<Option<String>, Late> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let name = raw.into_inner();
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if valid {
        Ok(Some(name))
    } else {
        Err((
            span,
            format!("{name:?} is not a user or group name (like \"postfix\") or a numeric id"),
        ))
    }
}

/// A unix socket mode, written as an octal string (`"0660"`).
#[derive(Debug)]
pub(super) struct UnixMode(pub(super) u32);

const MODE_HINT: &str = "an octal mode string like \"0660\"";

impl<'de> Deserialize<'de> for UnixMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UnixMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(MODE_HINT)
            }
            // A bare 660 would be read as decimal: refuse integers rather than guess.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "expected {MODE_HINT}, in quotes (a bare {v} is not read as octal)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let octal =
                    !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
                if !octal {
                    return Err(E::custom(format!("expected {MODE_HINT}, not {v:?}")));
                }
                let mode = u32::from_str_radix(v, 8).map_err(E::custom)?;
                if mode > 0o777 {
                    return Err(E::custom(format!(
                        "mode {v:?} is above \"0777\" (setuid, setgid and sticky bits make no sense on a socket)"
                    )));
                }
                Ok(UnixMode(mode))
            }
        }
        deserializer.deserialize_any(V)
    }
}

const LISTEN_HINT: &str = "listen address must be host:port or unix:/absolute/path, \
     e.g. \"127.0.0.1:8461\", \"[::1]:8461\" or \"unix:/run/mtastsd/socketmap\"";

/// Room for the path in `sockaddr_un.sun_path`, without its NUL (Linux).
const MAX_UNIX_PATH: usize = 107;

pub(super) fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return unix_socket_path(path, text, LISTEN_HINT).map(ListenAddr::Unix);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr::Inet(addr));
    }
    let hint = if text.starts_with("inet:") {
        " (leave out Postfix's \"inet:\" prefix)"
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        // "::1:8461" is a valid IPv6 address by itself.
        if ip.is_ipv6() {
            " (write IPv6 addresses in brackets, with a port: \"[::1]:8461\")"
        } else {
            " (the port is missing)"
        }
    } else {
        match text
            .rsplit_once(':')
            .map(|(host, _)| host.parse::<IpAddr>())
        {
            Some(Ok(IpAddr::V6(_))) => " (write IPv6 addresses in brackets: \"[::1]:8461\")",
            Some(Err(_)) => " (the host must be an IP address)",
            _ => "",
        }
    };
    Err(format!("{LISTEN_HINT}, not {text:?}{hint}"))
}

/// A unix socket's path: absolute, and short enough for `sockaddr_un`. `shown` is
/// the value as written (for the message), `hint` what would be accepted.
fn unix_socket_path(path: &str, shown: &str, hint: &str) -> Result<PathBuf, String> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(format!(
            "{hint}; the unix socket path in {shown:?} is not absolute"
        ));
    }
    if path.as_os_str().len() > MAX_UNIX_PATH {
        return Err(format!(
            "unix socket path {shown:?} is longer than {MAX_UNIX_PATH} bytes"
        ));
    }
    if shown.contains('\0') {
        return Err("unix socket path contains a NUL byte".to_owned());
    }
    Ok(path.to_owned())
}

/// `tlsrpt.socket`: where Postfix's libtlsrpt sends its datagrams (SPEC 8.1).
#[derive(Debug)]
pub(super) struct SocketPath(pub(super) PathBuf);

impl<'de> Deserialize<'de> for SocketPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        unix_socket_path(
            &text,
            &text,
            "expected the absolute path of a unix datagram socket, \
             e.g. \"/var/spool/postfix/mtastsd/tlsrpt\"",
        )
        .map(SocketPath)
        .map_err(de::Error::custom)
    }
}

/// `tlsrpt.keep_days`: 3 to 366 (SPEC 8.6: a bounded store, yet a year is allowed;
/// at least 3 so that a report is not deleted during its day of retries, which can
/// end two days after the day it covers).
#[derive(Debug)]
pub(super) struct KeepDays(pub(super) u32);

impl<'de> Deserialize<'de> for KeepDays {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeepDays;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of days from 3 to 366")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u32::try_from(v) {
                    Ok(n) if (3..=366).contains(&n) => Ok(KeepDays(n)),
                    _ => Err(E::custom(format!("must be from 3 to 366 days, not {v}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The domain of an email address, `local@domain` or `mailto:local@domain` (as
/// RFC 8460 §4.4's `contact-info` may be written), lower case; `None` when `text`
/// is not such an address.
pub(super) fn address_domain(text: &str) -> Option<String> {
    let addr = strip_mailto(text);
    let (local, domain) = addr.rsplit_once('@')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b',' | b'"'))
    };
    let hostname = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !plain(local) || !hostname(domain) {
        return None;
    }
    crate::overrides::parse_domain(domain)
        .ok()
        .filter(|d| d.contains('.'))
}

/// `text` without a leading `mailto:` (any case).
pub(super) fn strip_mailto(text: &str) -> &str {
    match text.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("mailto:") => &text[7..],
        _ => text,
    }
}

/// `server.listen`: not empty, no address twice.
pub(super) fn listen_list(list: Spanned<Vec<Spanned<String>>>) -> Result<Vec<ListenAddr>, Late> {
    let span = list.span();
    let items = list.into_inner();
    if items.is_empty() {
        return Err((
            span,
            "listen must name at least one address, e.g. [\"127.0.0.1:8461\"]".to_owned(),
        ));
    }
    let mut out: Vec<ListenAddr> = Vec::with_capacity(items.len());
    for item in items {
        let addr = parse_listen(item.get_ref()).map_err(|m| (item.span(), m))?;
        if out.contains(&addr) {
            return Err((item.span(), format!("\"{addr}\" is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A DNS server: an IP address, with an optional port (default 53). Also for
/// `check --nameserver`.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    let addr = text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    });
    match addr {
        Some(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(
            "nameserver must be an IP address with an optional port, \
             e.g. \"127.0.0.1\", \"127.0.0.1:53\" or \"[::1]:5353\"; not {text:?}"
        )),
    }
}

/// An absolute path (relative ones would depend on the daemon's working directory).
#[derive(Debug)]
pub(super) struct AbsPath(pub(super) PathBuf);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let path = PathBuf::from(&text);
        if path.is_absolute() {
            Ok(AbsPath(path))
        } else {
            Err(de::Error::custom(format!(
                "expected an absolute path like \"/etc/mtastsd/extra-ca.pem\", not {text:?}"
            )))
        }
    }
}

/// `cache.state_dir`: an absolute directory, or `""` for no persistence.
#[derive(Debug)]
pub(super) struct StateDir(pub(super) Option<PathBuf>);

impl<'de> Deserialize<'de> for StateDir {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let path = PathBuf::from(&text);
        if text.is_empty() {
            Ok(StateDir(None))
        } else if path.is_absolute() {
            Ok(StateDir(Some(path)))
        } else {
            Err(de::Error::custom(format!(
                "expected an absolute path like \"/var/lib/mtastsd\", \
                 or \"\" to keep the cache in memory only; not {text:?}"
            )))
        }
    }
}

#[derive(Debug)]
pub(super) struct Target(pub(super) LogTarget);

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "stderr" => Ok(Target(LogTarget::Stderr)),
            "syslog" => Ok(Target(LogTarget::Syslog)),
            _ => Err(de::Error::custom(format!(
                "expected \"stderr\" or \"syslog\", not {text:?}"
            ))),
        }
    }
}

#[derive(Debug)]
pub(super) struct Level(pub(super) log::LevelFilter);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<log::LevelFilter>().map(Level).map_err(|_| {
            de::Error::custom(format!(
                "expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\", \"off\"; \
                 not {text:?}"
            ))
        })
    }
}

/// A socketmap name: Postfix sends `<name> <key>` and takes the name from after
/// the last `:` of the map (SPEC 1.2), so no blanks and no colons.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ProfileName(pub(super) String);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() {
            return Err(de::Error::custom("a profile name must not be empty"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(de::Error::custom(format!(
                "profile name {name:?} must not contain spaces, control characters or ':' \
                 (it is the last field of socketmap:inet:127.0.0.1:8461:NAME)"
            )));
        }
        Ok(ProfileName(name))
    }
}
