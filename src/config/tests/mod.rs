//! The configuration model: defaults, every key, loading from files (SPEC 7.4, 7.5).

mod errors;
mod tlsrpt;

use super::*;

const FILE: &str = "/etc/mtastsd/mtastsd.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

/// (line, key, message) of an error that must be `Invalid`.
fn error(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(ConfigError::Invalid {
            path,
            line,
            key,
            message,
        }) => {
            assert_eq!(path, Path::new(FILE));
            (line, key, message)
        }
        other => panic!("expected an Invalid error for {text:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_error(text: &str, line: usize, key: &str, fragment: &str) {
    let (l, k, m) = error(text);
    assert_eq!((l, k.as_str()), (line, key), "message: {m}");
    assert!(
        m.contains(fragment),
        "message {m:?} lacks {fragment:?} (text {text:?})"
    );
}

#[test]
fn empty_text_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        c.server.listen,
        vec![ListenAddr::Inet("127.0.0.1:8461".parse().unwrap())]
    );
    assert_eq!(c.server.unix_mode, 0o660);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, 1000);
    assert!(c.dns.nameservers.is_empty());
    assert_eq!(c.dns.timeout, Duration::from_secs(5));
    assert_eq!(c.fetch.timeout, Duration::from_secs(10));
    assert_eq!(c.fetch.ca_file, None);
    assert_eq!(c.fetch.https_port, 443);
    assert_eq!(c.cache.size, 100_000);
    assert_eq!(c.cache.state_dir, Some(PathBuf::from("/var/lib/mtastsd")));
    assert_eq!(c.cache.recheck, Duration::from_secs(60));
    assert_eq!(c.cache.save_interval, Duration::from_secs(60));
    assert_eq!(c.log.target, LogTarget::Stderr);
    assert_eq!(c.log.level, log::LevelFilter::Info);
    assert_eq!(c.profiles.len(), 1);
    assert_eq!(
        c.profiles[DEFAULT_PROFILE],
        Profile {
            strict_testing: false,
            servername: true,
            tlsrpt: false,
        }
    );
    // Empty sections change nothing either.
    let sections = "[server]\n[dns]\n[fetch]\n[cache]\n[log]\n[profiles]\n";
    assert_eq!(parse(sections).unwrap(), Config::default());
}

#[test]
fn redis_backend() {
    assert_eq!(parse("").unwrap().redis, None);
    // A [redis] section alone does not switch the backend.
    assert_eq!(
        parse("[redis]\nurl = \"redis://127.0.0.1\"\n")
            .unwrap()
            .redis,
        None
    );
    let c = parse(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://:pw@10.0.0.1:6379/2\"\ntimeout = \"100ms\"\n",
    )
    .unwrap();
    assert_eq!(
        c.redis,
        Some(RedisConfig {
            url: "redis://:pw@10.0.0.1:6379/2".into(),
            prefix: "mtastsd:".into(),
            timeout: Duration::from_millis(100),
            ca_file: None,
            key_file: None,
            key: None,
        })
    );
    assert_error(
        "[cache]\nbackend = \"redis\"\n",
        2,
        "cache.backend",
        "[redis]",
    );
    assert_error(
        "[cache]\nbackend = \"memcached\"\n",
        2,
        "cache.backend",
        "\"local\"",
    );
    assert_error(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"http://x\"\n",
        4,
        "redis.url",
        "redis://",
    );
    assert_error(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\ntimeout = \"10s\"\n",
        5,
        "redis.timeout",
        "at most",
    );
    assert_error(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\nca_file = \"/etc/ca.pem\"\n",
        5,
        "redis.ca_file",
        "needs a rediss:// url",
    );
    let c = parse(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"rediss://x:6380\"\nca_file = \"/etc/ca.pem\"\n",
    )
    .unwrap();
    assert_eq!(c.redis.unwrap().ca_file, Some(PathBuf::from("/etc/ca.pem")));
}

#[test]
fn metrics_listen() {
    assert_eq!(parse("").unwrap().metrics.listen, None);
    let c = parse("[metrics]\nlisten = \"127.0.0.1:9461\"\n").unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9461".parse().unwrap()));
    assert_error(
        "[metrics]\nlisten = \"localhost\"\n",
        2,
        "metrics.listen",
        "expected IP:port",
    );
}

/// A file that sets every key of `[server]`, `[dns]`, `[fetch]`, `[cache]`, `[log]` and
/// `[profiles]` (the other sections have tests of their own).
const EVERY_KEY: &str = r#"
[server]
listen = ["127.0.0.1:8461", "[::1]:8462", "unix:/run/mtastsd/socketmap"]
unix_mode = "0600"
unix_owner = "mtastsd"
unix_group = "postfix"
idle_timeout = "90s"
max_connections = 20
[dns]
nameservers = ["127.0.0.1:53", "[::1]:5353", "192.0.2.1", "2001:db8::1"]
timeout = 3
[fetch]
timeout = "1500ms"
ca_file = "/etc/mtastsd/extra-ca.pem"
https_port = 8443
[cache]
size = 5
state_dir = "/tmp/state"
recheck = "5m"
save_interval = "1h"
[log]
target = "syslog"
level = "debug"
[profiles.postfix]
strict_testing = true
servername = false
[profiles.strict]
strict_testing = true
tlsrpt = true
"#;

#[test]
fn every_key_parsed() {
    let c = parse(EVERY_KEY).unwrap();
    assert_eq!(
        c.server.listen,
        vec![
            ListenAddr::Inet("127.0.0.1:8461".parse().unwrap()),
            ListenAddr::Inet("[::1]:8462".parse().unwrap()),
            ListenAddr::Unix(PathBuf::from("/run/mtastsd/socketmap")),
        ]
    );
    assert_eq!(c.server.unix_mode, 0o600);
    assert_eq!(c.server.unix_owner.as_deref(), Some("mtastsd"));
    assert_eq!(c.server.unix_group.as_deref(), Some("postfix"));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
    assert_eq!(c.server.max_connections, 20);
    assert_eq!(
        c.dns.nameservers,
        vec![
            "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[::1]:5353".parse().unwrap(),
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ]
    );
    assert_eq!(c.dns.timeout, Duration::from_secs(3));
    assert_eq!(c.fetch.timeout, Duration::from_millis(1500));
    assert_eq!(
        c.fetch.ca_file,
        Some(PathBuf::from("/etc/mtastsd/extra-ca.pem"))
    );
    assert_eq!(c.fetch.https_port, 8443);
    assert_eq!(c.cache.size, 5);
    assert_eq!(c.cache.state_dir, Some(PathBuf::from("/tmp/state")));
    assert_eq!(c.cache.recheck, Duration::from_secs(300));
    assert_eq!(c.cache.save_interval, Duration::from_secs(3600));
    assert_eq!(c.log.target, LogTarget::Syslog);
    assert_eq!(c.log.level, log::LevelFilter::Debug);
    assert_eq!(
        c.profiles[DEFAULT_PROFILE],
        Profile {
            strict_testing: true,
            servername: false,
            tlsrpt: false,
        }
    );
    // Keys left out of a profile take the defaults.
    assert_eq!(
        c.profiles["strict"],
        Profile {
            strict_testing: true,
            servername: true,
            tlsrpt: true,
        }
    );
}

#[test]
fn durations() {
    for (text, want) in [
        ("500ms", Duration::from_millis(500)),
        ("10s", Duration::from_secs(10)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("1d", Duration::from_secs(86_400)),
        ("007s", Duration::from_secs(7)),
    ] {
        assert_eq!(parse_duration(text), Some(want), "{text}");
    }
    for text in [
        "",
        "10",
        "s",
        "-1s",
        "+1s",
        "1.5s",
        "10 s",
        " 10s",
        "10S",
        "1w",
        "10sec",
        "99999999999999999999s",
        "18446744073709551615d",
    ] {
        assert_eq!(parse_duration(text), None, "{text:?}");
    }
    let c = parse("[server]\nidle_timeout = 5\n[cache]\nrecheck = \"1d\"").unwrap();
    assert_eq!(c.server.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.cache.recheck, Duration::from_secs(86_400));
    // The limits themselves are allowed.
    let c = parse("[fetch]\ntimeout = \"60s\"\n[dns]\ntimeout = \"30000ms\"").unwrap();
    assert_eq!(c.fetch.timeout, Duration::from_secs(60));
    assert_eq!(c.dns.timeout, Duration::from_secs(30));
}

#[test]
fn state_dir_empty_disables_persistence() {
    let c = parse("[cache]\nstate_dir = \"\"\n").unwrap();
    assert_eq!(c.cache.state_dir, None);
}

#[test]
fn profile_names() {
    assert_error(
        "[profiles.\"a b\"]\n",
        1,
        "profiles.\"a b\"",
        "must not contain spaces",
    );
    assert_error(
        "[server]\n[profiles.\"\"]\nservername = false\n",
        2,
        "profiles.\"\"",
        "must not be empty",
    );
    assert_error("[profiles.\"x:y\"]\n", 1, "profiles.\"x:y\"", "':'");
    let c = parse("[profiles.tls-rpt_3]\n").unwrap();
    assert!(c.profiles.contains_key("tls-rpt_3"));
}

#[test]
fn profile_lookup() {
    let c = parse("[profiles.strict]\nstrict_testing = true\n").unwrap();
    let (p, known) = c.profile("strict");
    assert!(known);
    assert!(p.strict_testing);
    let (p, known) = c.profile(DEFAULT_PROFILE);
    assert!(known);
    assert_eq!(*p, Profile::default());
    let (p, known) = c.profile("Strict");
    assert!(!known);
    assert_eq!(*p, Profile::default());

    // An unknown name gets the configured default profile, not the built-in one.
    let c = parse("[profiles.postfix]\nservername = false\n").unwrap();
    let (p, known) = c.profile("other");
    assert!(!known);
    assert!(!p.servername);

    // A hand-built Config without the default profile still answers.
    let mut c = Config::default();
    c.profiles.clear();
    assert_eq!(c.profile("postfix"), (&Profile::default(), false));
}

#[test]
fn syntax_errors_have_a_line() {
    let (line, _key, message) = error("[server]\nidle_timeout = \"10s\n");
    assert_eq!(line, 2, "{message}");
    assert!(!message.contains('\n'));
    let (line, key, message) = error("[server]\nmax_connections = 1\nmax_connections = 2\n");
    assert_eq!(line, 3, "{message}");
    assert!(message.contains("duplicate key"), "{message}");
    assert!(key.is_empty() || key == "server.max_connections", "{key}");
    let (line, _, _) = error("[log]\n\n\nlevel = = \"info\"\n");
    assert_eq!(line, 4);
}

#[test]
fn display() {
    let err = parse(
        "# mtastsd\n\n[server]\nlisten = [\"127.0.0.1:8461\"]\n\n\nidle_timeout = \"soon\"\n",
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("/etc/mtastsd/mtastsd.toml:7: server.idle_timeout: expected a duration like \"10s\" or \"5m\""),
        "{shown}"
    );
    let whole = ConfigError::Invalid {
        path: PathBuf::from("/x.toml"),
        line: 0,
        key: String::new(),
        message: "oops".into(),
    };
    assert_eq!(whole.to_string(), "/x.toml: oops");
}

#[test]
fn load_reads_files() {
    let dir = std::env::temp_dir().join(format!("mtastsd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[cache]\nsize = 7\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().cache.size, 7);

    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"# ok\n# caf\xe9\n").unwrap();
    match Config::load(&latin1) {
        Err(ConfigError::Invalid { line, message, .. }) => {
            assert_eq!(line, 2);
            assert!(message.contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }

    let missing = dir.join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: cannot read", missing.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SPEC 7.4: `[redis] key_file` is read by `load`; a missing, unreadable or
/// too short key is an error naming the file, the line and the key.
#[test]
fn redis_key_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("redis.key");
    let conf = dir.path().join("mtastsd.toml");
    std::fs::write(
        &conf,
        format!(
            "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://10.0.0.1\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let err = Config::load(&conf).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:5: redis.key_file: cannot read {}: ",
            conf.display(),
            key.display()
        )),
        "{err}"
    );

    std::fs::write(&key, "too short\n").unwrap();
    let err = Config::load(&conf).unwrap_err().to_string();
    assert!(err.contains(":5: redis.key_file: "), "{err}");
    assert!(err.contains("holds 9 bytes, at least 32"), "{err}");

    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    let redis = Config::load(&conf).unwrap().redis.unwrap();
    assert_eq!(redis.key_file.as_deref(), Some(key.as_path()));
    assert_eq!(
        redis.key.as_ref().map(RedisKey::bytes),
        Some(secret.as_bytes())
    );
    // The secret never shows in a printed configuration.
    assert!(!format!("{redis:?}").contains(secret));
    // Parsing alone reads nothing (pure).
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        Config::parse(&text, &conf).unwrap().redis.unwrap().key,
        None
    );
    assert_error(
        "[cache]\nbackend = \"redis\"\n[redis]\nurl = \"redis://x\"\nkey_file = \"redis.key\"\n",
        5,
        "redis.key_file",
        "absolute path",
    );
}

#[test]
fn listen_addr_from_str_and_display_round_trip() {
    for text in [
        "127.0.0.1:8461",
        "[::1]:8461",
        "unix:/run/mtastsd/socketmap",
    ] {
        let addr: ListenAddr = text.parse().unwrap();
        assert_eq!(addr.to_string(), text);
    }
    let err = "localhost:8461".parse::<ListenAddr>().unwrap_err();
    assert!(err
        .to_string()
        .starts_with("listen address must be host:port or unix:/absolute/path"));
}

#[test]
fn dane_keys_spec_6_4() {
    // Off by default, everywhere.
    let c = parse("").unwrap();
    assert_eq!(c.dane, DaneConfig::default());
    assert!(!c.dane.enabled(DEFAULT_PROFILE));
    let c = parse(
        "[dane]\nnameservers = [\"127.0.0.1\", \"[::1]:5353\"]\n\
         [profiles.postfix]\ndane = true\n[profiles.plain]\ndane = false\n",
    )
    .unwrap();
    assert_eq!(
        c.dane.nameservers,
        vec![
            "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert!(c.dane.enabled("postfix"));
    assert!(!c.dane.enabled("plain"));
    // Both on loopback: no warning.
    assert_eq!(c.dane.off_loopback_warning(), None);
    let c =
        parse("[dane]\nnameservers = [\"127.0.0.1\", \"192.0.2.53\", \"[2001:db8::53]:5353\"]\n")
            .unwrap();
    assert_eq!(
        c.dane.off_loopback(),
        vec![
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        ]
    );
    let warning = c.dane.off_loopback_warning().unwrap();
    assert!(
        warning
            .starts_with("[dane] nameservers 192.0.2.53:53, [2001:db8::53]:5353 not on loopback"),
        "{warning}"
    );
    // The other profile settings are untouched.
    assert_eq!(c.profiles["postfix"], Profile::default());
    // SPEC 7.4: dane = true without a validating resolver names file, line, key.
    assert_error(
        "[profiles.postfix]\nservername = true\ndane = true\n",
        3,
        "profiles.postfix.dane",
        "needs [dane] nameservers",
    );
    assert_error(
        "[dane]\nnameservers = []\n[profiles.x]\ndane = true\n",
        4,
        "profiles.x.dane",
        "needs [dane] nameservers",
    );
    assert_error(
        "[dane]\nnameservers = [\"unbound\"]\n",
        2,
        "dane.nameservers",
        "nameserver must be an IP address",
    );
    assert_error(
        "[dane]\nvalidate = true\n",
        2,
        "dane.validate",
        "unknown key",
    );
    assert_error(
        "[profiles.x]\ndane = \"yes\"\n",
        2,
        "profiles.x.dane",
        "bool",
    );
}

#[test]
fn sample_config_is_the_defaults() {
    let sample = include_str!("../../../contrib/mtastsd.toml");
    let c = Config::parse(sample, Path::new("contrib/mtastsd.toml")).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn man_page_example_parses() {
    let page = include_str!("../../../packaging/man/mtastsd.toml.5");
    let example = page
        .split_once(".SH EXAMPLE\n.EX\n")
        .and_then(|(_, rest)| rest.split_once(".EE\n"))
        .map(|(example, _)| example)
        .expect("mtastsd.toml.5 has an EXAMPLE section");
    let c = Config::parse(example, Path::new("mtastsd.toml.5")).unwrap();
    assert!(c.profile("strict").0.strict_testing);
    assert_eq!(
        c.profile("legacy"),
        (
            &Profile {
                strict_testing: false,
                servername: false,
                tlsrpt: false,
            },
            true
        )
    );
}

#[test]
fn sample_config_examples_parse() {
    // The commented-out examples must be valid too: uncomment every `#key = …`
    // line and table header (lines starting with "#[" or "#x = ").
    let sample = include_str!("../../../contrib/mtastsd.toml");
    let uncommented: String = sample
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(uncommented, sample, "the sample should show some examples");
    let c = Config::parse(&uncommented, Path::new("uncommented")).unwrap();
    assert!(c.fetch.ca_file.is_some());
    assert!(c.tlsrpt.is_some_and(|t| t.send));
}
