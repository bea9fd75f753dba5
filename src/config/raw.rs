//! The file as written: serde shapes for each section, and their conversion into
//! the [`Config`] model. Every field is optional; values are validated by their
//! types ([`super::values`]) while toml still knows where they are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Spanned;

use super::values::{
    account_name, address_domain, listen_list, parse_nameserver, strip_mailto, AbsPath, AtLeastOne,
    Dur, InetAddr, KeepDays, Late, Level, Port, ProfileName, SocketPath, StateDir, Target,
    UnixMode, UNLIMITED,
};
use super::{
    CacheConfig, Config, DaneConfig, DnsConfig, FetchConfig, LogConfig, MetricsConfig, Profile,
    RedisConfig, ServerConfig, TlsrptConfig, DEFAULT_PROFILE,
};
use crate::overrides::Overrides;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    server: Table<RawServer>,
    dns: Table<RawDns>,
    fetch: Table<RawFetch>,
    cache: Table<RawCache>,
    log: Table<RawLog>,
    metrics: Table<RawMetrics>,
    redis: Option<Table<RawRedis>>,
    dane: Table<RawDane>,
    profiles: Table<BTreeMap<ProfileName, Table<RawProfile>>>,
    overrides: Option<Table<RawOverrides>>,
    tlsrpt: Option<Table<RawTlsrpt>>,
}

/// `[overrides]`: `"domain" = "answer"` entries, and `file` (a path; domain
/// keys always contain a dot, so the two cannot be confused).
type RawOverrides = BTreeMap<String, Spanned<String>>;

/// A section: accepts only a TOML table. (Derived struct impls also take an
/// array and fill the fields in order, which would let `server = [[...]]` through
/// and make `[[server]]` fail with a baffling message.)
#[derive(Debug, Default)]
struct Table<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Table<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Table)
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    /// Validated after deserialization: toml gives list elements no span of
    /// their own in errors, and the element's line is what the user needs.
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    unix_mode: Option<UnixMode>,
    unix_owner: Option<Spanned<String>>,
    unix_group: Option<Spanned<String>>,
    idle_timeout: Option<Dur<UNLIMITED>>,
    max_connections: Option<AtLeastOne>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDns {
    nameservers: Option<Vec<Spanned<String>>>,
    /// One query must leave room for the fetch inside Postfix's 100 s (SPEC 3.6).
    timeout: Option<Dur<30>>,
    max_concurrency: Option<AtLeastOne>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFetch {
    /// SPEC 3.5, 3.6: the answer must stay well inside Postfix's 100 s.
    timeout: Option<Dur<60>>,
    ca_file: Option<AbsPath>,
    https_port: Option<Port>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCache {
    size: Option<AtLeastOne>,
    /// Spanned: `""` beside a `[tlsrpt]` table is an error at this key.
    state_dir: Option<Spanned<StateDir>>,
    recheck: Option<Dur<UNLIMITED>>,
    save_interval: Option<Dur<UNLIMITED>>,
    backend: Option<Spanned<Backend>>,
}

/// `[tlsrpt]` (SPEC 8): the keys whose meaning depends on others (`send`, the
/// addresses) are spanned, so that a missing companion is reported at them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTlsrpt {
    socket: Option<SocketPath>,
    send: Option<Spanned<bool>>,
    organization_name: Option<Spanned<String>>,
    contact_info: Option<Spanned<String>>,
    submitter: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    sendmail: Option<Spanned<Vec<String>>>,
    delay: Option<Spanned<Dur<UNLIMITED>>>,
    keep_days: Option<KeepDays>,
    max_details: Option<AtLeastOne>,
    /// At most 10 minutes: an attempt must end well within the store's hold on a
    /// delivery being sent (`tlsrpt::store::SENDING_LEASE`).
    http_timeout: Option<Dur<600>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    target: Option<Target>,
    level: Option<Level>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRedis {
    url: Option<RedisUrl>,
    prefix: Option<String>,
    /// A shared-cache call must never hold an answer up for long.
    timeout: Option<Dur<5>>,
    ca_file: Option<Spanned<AbsPath>>,
    key_file: Option<AbsPath>,
}

#[derive(Debug)]
struct RedisUrl(String);

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(RedisUrl(text))
        } else {
            Err(de::Error::custom(
                "expected a URL like \"redis://127.0.0.1:6379/0\" or \"rediss://:password@host:6380\"",
            ))
        }
    }
}

#[derive(Debug)]
enum Backend {
    Local,
    Redis,
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "local" => Ok(Backend::Local),
            "redis" => Ok(Backend::Redis),
            other => Err(de::Error::custom(format!(
                "{other:?}: expected \"local\" (the default) or \"redis\""
            ))),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDane {
    nameservers: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    listen: Option<InetAddr>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProfile {
    strict_testing: Option<bool>,
    servername: Option<bool>,
    tlsrpt: Option<bool>,
    /// Spanned: `true` without `[dane] nameservers` is an error at this key.
    dane: Option<Spanned<bool>>,
    overrides: Option<Table<RawOverrides>>,
}

impl RawConfig {
    pub(super) fn into_config(self) -> Result<Config, Late> {
        let RawConfig {
            server: Table(server),
            dns: Table(dns),
            fetch: Table(fetch),
            cache: Table(cache),
            log: Table(log),
            metrics: Table(metrics),
            redis: raw_redis,
            dane: Table(raw_dane),
            profiles: Table(raw_profiles),
            overrides: raw_overrides,
            tlsrpt: raw_tlsrpt,
        } = self;
        let mut overrides = Overrides::default();
        let mut override_files = Vec::new();
        if let Some(Table(raw)) = raw_overrides {
            add_overrides(raw, None, &mut overrides, &mut override_files)?;
        }
        let redis = redis_config(cache.backend.as_ref(), raw_redis)?;
        let tlsrpt = match raw_tlsrpt {
            Some(Table(raw)) => Some(raw.into_config(cache.state_dir.as_ref())?),
            None => None,
        };
        let server = server.into_config()?;
        let dns = dns.into_config()?;
        let dane_nameservers = nameserver_list(raw_dane.nameservers.unwrap_or_default())?;
        let (profiles, dane_profiles) = profiles(
            raw_profiles,
            &dane_nameservers,
            &mut overrides,
            &mut override_files,
        )?;
        Ok(Config {
            server,
            dns,
            fetch: fetch.into_config(),
            cache: cache.into_config(),
            log: log.into_config(),
            metrics: MetricsConfig {
                listen: metrics.listen.map(|a| a.0),
            },
            redis,
            dane: DaneConfig {
                nameservers: dane_nameservers,
                profiles: dane_profiles,
            },
            profiles,
            overrides,
            override_files,
            tlsrpt,
        })
    }
}

/// `[redis]`, which only `backend = "redis"` reads, and which that backend needs.
fn redis_config(
    backend: Option<&Spanned<Backend>>,
    raw: Option<Table<RawRedis>>,
) -> Result<Option<RedisConfig>, Late> {
    let Some(backend) = backend.filter(|b| matches!(b.get_ref(), Backend::Redis)) else {
        return Ok(None);
    };
    let Some(Table(r)) = raw else {
        return Err((
            backend.span(),
            "backend \"redis\" needs a [redis] section with url".to_string(),
        ));
    };
    let Some(RedisUrl(url)) = r.url else {
        return Err((
            backend.span(),
            "backend \"redis\" needs url in a [redis] section".to_string(),
        ));
    };
    if let Some(ca) = &r.ca_file {
        if !url.starts_with("rediss://") {
            return Err((
                ca.span(),
                "ca_file is for TLS: it needs a rediss:// url".to_string(),
            ));
        }
    }
    Ok(Some(RedisConfig {
        url,
        prefix: r.prefix.unwrap_or_else(|| "mtastsd:".to_string()),
        timeout: r.timeout.map_or(Duration::from_millis(250), |t| t.0),
        ca_file: r.ca_file.map(|p| p.into_inner().0),
        key_file: r.key_file.map(|p| p.0),
        // Read by Config::load: parsing does no I/O.
        key: None,
    }))
}

/// `nameservers` lists, each element checked with its own span.
fn nameserver_list(list: Vec<Spanned<String>>) -> Result<Vec<SocketAddr>, Late> {
    list.into_iter()
        .map(|item| parse_nameserver(item.get_ref()).map_err(|m| (item.span(), m)))
        .collect()
}

/// `[profiles.NAME]` sections: the profiles (with [`DEFAULT_PROFILE`] always
/// present, SPEC 1.2), the names with `dane = true` (SPEC 6.4), and each
/// profile's overrides added to `overrides` (SPEC 6.5).
fn profiles(
    raw_profiles: BTreeMap<ProfileName, Table<RawProfile>>,
    dane_nameservers: &[SocketAddr],
    overrides: &mut Overrides,
    override_files: &mut Vec<(Option<String>, PathBuf)>,
) -> Result<(BTreeMap<String, Profile>, BTreeSet<String>), Late> {
    let mut dane_profiles = BTreeSet::new();
    let mut profiles = BTreeMap::new();
    for (ProfileName(name), Table(raw)) in raw_profiles {
        if let Some(dane) = raw.dane {
            if *dane.get_ref() {
                if dane_nameservers.is_empty() {
                    return Err((
                        dane.span(),
                        "dane = true needs [dane] nameservers: the validating resolvers \
                         whose AD bit to trust, e.g. [\"127.0.0.1:53\"] for a local unbound"
                            .to_string(),
                    ));
                }
                dane_profiles.insert(name.clone());
            }
        }
        let profile = Profile {
            strict_testing: raw
                .strict_testing
                .unwrap_or(Profile::BUILTIN.strict_testing),
            servername: raw.servername.unwrap_or(Profile::BUILTIN.servername),
            tlsrpt: raw.tlsrpt.unwrap_or(Profile::BUILTIN.tlsrpt),
        };
        if let Some(Table(raw)) = raw.overrides {
            add_overrides(raw, Some(&name), overrides, override_files)?;
        }
        profiles.insert(name, profile);
    }
    profiles
        .entry(DEFAULT_PROFILE.to_owned())
        .or_insert(Profile::BUILTIN);
    Ok((profiles, dane_profiles))
}

impl RawServer {
    fn into_config(self) -> Result<ServerConfig, Late> {
        let d = ServerConfig::default();
        Ok(ServerConfig {
            listen: match self.listen {
                Some(list) => listen_list(list)?,
                None => d.listen,
            },
            unix_mode: self.unix_mode.map_or(d.unix_mode, |m| m.0),
            unix_owner: account_name(self.unix_owner)?,
            unix_group: account_name(self.unix_group)?,
            idle_timeout: self.idle_timeout.map_or(d.idle_timeout, |t| t.0),
            max_connections: self.max_connections.map_or(d.max_connections, |n| n.0),
        })
    }
}

impl RawDns {
    fn into_config(self) -> Result<DnsConfig, Late> {
        let d = DnsConfig::default();
        Ok(DnsConfig {
            nameservers: match self.nameservers {
                Some(list) => nameserver_list(list)?,
                None => d.nameservers,
            },
            timeout: self.timeout.map_or(d.timeout, |t| t.0),
            max_concurrency: self.max_concurrency.map_or(d.max_concurrency, |n| n.0),
        })
    }
}

impl RawFetch {
    fn into_config(self) -> FetchConfig {
        let d = FetchConfig::default();
        FetchConfig {
            timeout: self.timeout.map_or(d.timeout, |t| t.0),
            ca_file: self.ca_file.map(|p| p.0),
            https_port: self.https_port.map_or(d.https_port, |p| p.0),
        }
    }
}

impl RawCache {
    fn into_config(self) -> CacheConfig {
        let d = CacheConfig::default();
        CacheConfig {
            size: self.size.map_or(d.size, |n| n.0),
            state_dir: self.state_dir.map_or(d.state_dir, |s| s.into_inner().0),
            recheck: self.recheck.map_or(d.recheck, |t| t.0),
            save_interval: self.save_interval.map_or(d.save_interval, |t| t.0),
        }
    }
}

impl RawTlsrpt {
    /// `state_dir`: the `[cache]` key as written, if it was (the counts live there).
    fn into_config(self, state_dir: Option<&Spanned<StateDir>>) -> Result<TlsrptConfig, Late> {
        if let Some(dir) = state_dir.filter(|d| d.get_ref().0.is_none()) {
            return Err((
                dir.span(),
                "[tlsrpt] keeps its counts in state_dir (tlsrpt.sqlite): set a directory, \
                 or remove [tlsrpt]"
                    .to_owned(),
            ));
        }
        let d = TlsrptConfig::default();
        let organization_name = non_empty("organization_name", self.organization_name)?;
        let contact_info = non_empty("contact_info", self.contact_info)?;
        let submitter = submitter(self.submitter, contact_info.as_ref())?;
        let from = from(self.from, contact_info.as_ref())?;
        let sendmail = match self.sendmail {
            Some(argv) => sendmail(argv)?,
            None => d.sendmail,
        };
        let delay = match self.delay {
            Some(delay) if delay.get_ref().0 > TlsrptConfig::MAX_DELAY => {
                return Err((
                    delay.span(),
                    "must be at most \"23h\", so that a report leaves on the day after \
                     the one it covers"
                        .to_owned(),
                ));
            }
            Some(delay) => delay.into_inner().0,
            None => d.delay,
        };
        if let Some(send) = self.send.as_ref().filter(|s| *s.get_ref()) {
            let missing = [
                (organization_name.is_none(), "organization_name"),
                (contact_info.is_none(), "contact_info"),
                (
                    submitter.is_none(),
                    "submitter (contact_info is not an email address)",
                ),
                (
                    from.is_none(),
                    "from (contact_info is not an email address)",
                ),
            ];
            if let Some((_, key)) = missing.iter().find(|(m, _)| *m) {
                return Err((
                    send.span(),
                    format!("send = true needs {key}: reports carry it (RFC 8460 §4.4, §5.3)"),
                ));
            }
        }
        Ok(TlsrptConfig {
            socket: self.socket.map_or(d.socket, |p| p.0),
            send: self.send.is_some_and(|s| s.into_inner()),
            organization_name: organization_name.map(Spanned::into_inner),
            contact_info: contact_info.map(Spanned::into_inner),
            submitter,
            from,
            sendmail,
            delay,
            keep_days: self.keep_days.map_or(d.keep_days, |k| k.0),
            max_details: self.max_details.map_or(d.max_details, |n| n.0),
            http_timeout: self.http_timeout.map_or(d.http_timeout, |t| t.0),
        })
    }
}

/// Not empty, and printable ASCII: the value goes into the report mail's header and
/// text (RFC 8460 §5.3), which mtastsd writes in ASCII only.
fn non_empty(key: &str, v: Option<Spanned<String>>) -> Result<Option<Spanned<String>>, Late> {
    match v {
        Some(v) if v.get_ref().trim().is_empty() => {
            Err((v.span(), format!("{key} must not be empty")))
        }
        Some(v) if !v.get_ref().bytes().all(|b| (b' '..=b'~').contains(&b)) => Err((
            v.span(),
            format!("{key}: only printable ASCII characters (it goes into mail headers)"),
        )),
        other => Ok(other),
    }
}

/// `tlsrpt.submitter`, else the domain of `contact_info` when it is an address.
fn submitter(
    given: Option<Spanned<String>>,
    contact_info: Option<&Spanned<String>>,
) -> Result<Option<String>, Late> {
    let Some(s) = given else {
        return Ok(contact_info.and_then(|c| address_domain(c.get_ref())));
    };
    crate::overrides::parse_domain(s.get_ref())
        .ok()
        .filter(|d| d.contains('.'))
        .map(Some)
        .ok_or_else(|| {
            (
                s.span(),
                format!(
                    "{:?} is not a domain name like \"mail.example.com\"",
                    s.get_ref()
                ),
            )
        })
}

/// `tlsrpt.from`, else `contact_info` when it is an address.
fn from(
    given: Option<Spanned<String>>,
    contact_info: Option<&Spanned<String>>,
) -> Result<Option<String>, Late> {
    let Some(f) = given else {
        return Ok(contact_info
            .filter(|c| address_domain(c.get_ref()).is_some())
            .map(|c| strip_mailto(c.get_ref()).to_owned()));
    };
    let plain = f
        .get_ref()
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b",;<>()\"\\:[]".contains(&b))
        && !f.get_ref().starts_with('-');
    if !plain || address_domain(f.get_ref()).is_none() || strip_mailto(f.get_ref()) != f.get_ref() {
        return Err((
            f.span(),
            format!(
                "{:?} is not an email address like \"tlsrpt@mail.example.com\"",
                f.get_ref()
            ),
        ));
    }
    Ok(Some(f.into_inner()))
}

fn sendmail(argv: Spanned<Vec<String>>) -> Result<Vec<String>, Late> {
    let span = argv.span();
    let argv = argv.into_inner();
    if argv.first().is_none_or(|p| !p.starts_with('/')) {
        return Err((
            span,
            "expected a command as a list, its program an absolute path, \
             e.g. [\"/usr/sbin/sendmail\", \"-i\"]"
                .to_owned(),
        ));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err((span, "an argument contains a NUL byte".to_owned()));
    }
    Ok(argv)
}

impl RawLog {
    fn into_config(self) -> LogConfig {
        let d = LogConfig::default();
        LogConfig {
            target: self.target.map_or(d.target, |t| t.0),
            level: self.level.map_or(d.level, |l| l.0),
        }
    }
}

/// One `[overrides]` table into `overrides` (SPEC 6.5); its `file` key into `files`.
fn add_overrides(
    raw: RawOverrides,
    profile: Option<&str>,
    overrides: &mut Overrides,
    files: &mut Vec<(Option<String>, PathBuf)>,
) -> Result<(), Late> {
    for (key, value) in raw {
        let span = value.span();
        let value = value.into_inner();
        if key == "file" {
            let path = PathBuf::from(&value);
            if !path.is_absolute() {
                return Err((span, format!("file {value:?}: expected an absolute path")));
            }
            files.push((profile.map(str::to_owned), path));
            continue;
        }
        let domain = crate::overrides::parse_domain(&key).map_err(|e| (span.clone(), e))?;
        if !domain.contains('.') {
            return Err((
                span,
                format!("{key:?} is not a domain (or \"file\", the path of an overrides file)"),
            ));
        }
        let answer = crate::overrides::parse_answer(&value).map_err(|e| (span, e))?;
        overrides.insert(profile, domain, answer);
    }
    Ok(())
}
