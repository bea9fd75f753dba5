//! Configuration errors name the file, the line and the key (SPEC 7.4).

use super::*;

#[test]
fn unknown_key_at_top_level() {
    assert_error(
        "# comment\n\n[sever]\nlisten = []\n",
        3,
        "sever",
        "unknown key `sever`",
    );
    assert_error("verbose = true\n", 1, "verbose", "expected one of `server`");
}

#[test]
fn unknown_key_in_a_section() {
    assert_error(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\nlsten = 5\n",
        4,
        "server.lsten",
        "unknown key `lsten`, expected one of `listen`",
    );
    assert_error(
        "[cache]\nsize = 5\n[profiles.strict]\nstrict_testing = true\ntls_rpt = true\n",
        5,
        "profiles.strict.tls_rpt",
        "unknown key `tls_rpt`",
    );
    // Dotted keys and inline tables find the same path.
    assert_error(
        "log.colour = true\n",
        1,
        "log.colour",
        "unknown key `colour`",
    );
    assert_error(
        "\nprofiles = { a = { servername = true, x = 1 } }\n",
        2,
        "profiles.a.x",
        "unknown key `x`",
    );
}

#[test]
fn bad_duration() {
    assert_error(
        "[server]\n\nidle_timeout = \"10 minutes\"\n",
        3,
        "server.idle_timeout",
        "expected a duration like \"10s\" or \"5m\"",
    );
    assert_error(
        "[cache]\nrecheck = \"0s\"\n",
        2,
        "cache.recheck",
        "must be greater than 0",
    );
    assert_error(
        "[cache]\nsave_interval = -5\n",
        2,
        "cache.save_interval",
        "must be greater than 0",
    );
    assert_error(
        "[server]\nidle_timeout = 1.5\n",
        2,
        "server.idle_timeout",
        "expected a duration like",
    );
}

#[test]
fn out_of_range_timeouts() {
    assert_error(
        "[fetch]\ntimeout = \"61s\"\n",
        2,
        "fetch.timeout",
        "must be at most \"60s\"",
    );
    assert_error(
        "[fetch]\ntimeout = \"2m\"\n",
        2,
        "fetch.timeout",
        "must be at most \"60s\"",
    );
    assert_error(
        "[dns]\ntimeout = 31\n",
        2,
        "dns.timeout",
        "must be at most \"30s\"",
    );
    assert_error("[dns]\ntimeout = 0\n", 2, "dns.timeout", "greater than 0");
}

#[test]
fn bad_listen() {
    let fragment = "listen address must be host:port or unix:/absolute/path";
    assert_error(
        "[server]\nlisten = [\n  \"127.0.0.1:8461\",\n  \"localhost:8461\",\n]\n",
        4,
        "server.listen",
        fragment,
    );
    assert_error(
        "[server]\nlisten = [\"unix:run/socketmap\"]\n",
        2,
        "server.listen",
        "not absolute",
    );
    assert_error(
        "[server]\nlisten = [\"127.0.0.1\"]\n",
        2,
        "server.listen",
        "port is missing",
    );
    assert_error(
        "[server]\nlisten = [\"inet:127.0.0.1:8461\"]\n",
        2,
        "server.listen",
        "inet:",
    );
    assert_error(
        "[server]\nlisten = [\"::1:8461\"]\n",
        2,
        "server.listen",
        "in brackets",
    );
    assert_error(
        "[server]\nlisten = []\n",
        2,
        "server.listen",
        "at least one address",
    );
    assert_error(
        "[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
        2,
        "server.listen",
        "listed twice",
    );
    let long = format!("[server]\nlisten = [\"unix:/{}\"]\n", "x".repeat(107));
    assert_error(&long, 2, "server.listen", "longer than 107 bytes");
    assert_error(
        "[server]\nlisten = [8461]\n",
        2,
        "server.listen",
        "invalid type: integer `8461`, expected a string",
    );
    // A single string is not a list.
    assert_error(
        "[server]\nlisten = \"127.0.0.1:8461\"\n",
        2,
        "server.listen",
        "invalid type: string",
    );
}

#[test]
fn bad_mode() {
    assert_error(
        "[server]\nunix_mode = \"0680\"\n",
        2,
        "server.unix_mode",
        "expected an octal mode string like \"0660\"",
    );
    assert_error(
        "[server]\nunix_mode = \"4755\"\n",
        2,
        "server.unix_mode",
        "above \"0777\"",
    );
    assert_error(
        "[server]\nunix_mode = 660\n",
        2,
        "server.unix_mode",
        "in quotes",
    );
    assert_error(
        "[server]\nunix_mode = \"\"\n",
        2,
        "server.unix_mode",
        "octal",
    );
    let c = parse("[server]\nunix_mode = \"777\"\n").unwrap();
    assert_eq!(c.server.unix_mode, 0o777);
}

#[test]
fn overrides_spec_6_5() {
    use crate::overrides::Override;
    let c = parse(
        "[overrides]\n\"A.example\" = \"dane-only\"\nfile = \"/etc/mtastsd/overrides\"\n[profiles.strict.overrides]\n\"b.example\" = \"none-from-mtasts\"\n",
    )
    .unwrap();
    assert_eq!(
        c.overrides.get("postfix", "a.example"),
        Some(&Override::Answer("dane-only".into()))
    );
    assert_eq!(c.overrides.get("postfix", "b.example"), None);
    assert_eq!(
        c.overrides.get("strict", "b.example"),
        Some(&Override::NoMtaSts)
    );
    assert_eq!(
        c.override_files,
        vec![(None, PathBuf::from("/etc/mtastsd/overrides"))]
    );
    assert_error(
        "[overrides]\n\"a.example\" = \"dane-only\"\n\"b.example\" = \"secure matches=x\"\n",
        3,
        "overrides.\"b.example\"",
        "unknown attribute \"matches\"",
    );
    assert_error(
        "[overrides]\nexample = \"dane\"\n",
        2,
        "overrides.example",
        "is not a domain",
    );
    assert_error(
        "[overrides]\nfile = \"overrides.txt\"\n",
        2,
        "overrides.file",
        "absolute path",
    );
}

#[test]
fn bad_socket_owner() {
    assert_error(
        "[server]\nunix_group = \"\"\n",
        2,
        "server.unix_group",
        "is not a user or group name",
    );
    assert_error(
        "[server]\nunix_owner = \"root postfix\"\n",
        2,
        "server.unix_owner",
        "is not a user or group name",
    );
    let c = parse("[server]\nunix_group = \"119\"\n").unwrap();
    assert_eq!(c.server.unix_group.as_deref(), Some("119"));
    assert_eq!(c.server.unix_owner, None);
}

#[test]
fn bad_log_settings() {
    assert_error(
        "[log]\nlevel = \"verbose\"\n",
        2,
        "log.level",
        "expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\", \"off\"",
    );
    assert_error(
        "[log]\ntarget = \"journal\"\n",
        2,
        "log.target",
        "expected \"stderr\" or \"syslog\"",
    );
    let c = parse("[log]\nlevel = \"OFF\"\ntarget = \"Syslog\"\n").unwrap();
    assert_eq!(c.log.level, log::LevelFilter::Off);
    assert_eq!(c.log.target, LogTarget::Syslog);
}

#[test]
fn wrong_types() {
    assert_error(
        "[profiles.strict]\nservername = \"yes\"\n",
        2,
        "profiles.strict.servername",
        "expected a boolean",
    );
    assert_error("server = 5\n", 1, "server", "expected a table");
    assert_error("[[server]]\n", 1, "server", "expected a table");
    assert_error(
        "server = [[\"127.0.0.1:1\"]]\n",
        1,
        "server",
        "invalid type: sequence, expected a table",
    );
    assert_error("profiles = 5\n", 1, "profiles", "expected a table");
    assert_error(
        "[profiles]\nstrict = true\n",
        2,
        "profiles.strict",
        "invalid type: boolean `true`, expected a table",
    );
    assert_error(
        "[cache]\nsize = \"big\"\n",
        2,
        "cache.size",
        "a whole number of at least 1",
    );
    assert_error(
        "[dns]\nnameservers = \"127.0.0.1\"\n",
        2,
        "dns.nameservers",
        "invalid type",
    );
    assert_error("[fetch]\nca_file = 1\n", 2, "fetch.ca_file", "invalid type");
}

/// The resolution concurrency limit (`dns.max_concurrency`) is a whole number ≥ 1;
/// a bad one is named with its file:line (SPEC 7.4).
#[test]
fn dns_max_concurrency() {
    assert_eq!(Config::default().dns.max_concurrency, 256);
    let c = parse("[dns]\nmax_concurrency = 8\n").unwrap();
    assert_eq!(c.dns.max_concurrency, 8);
    assert_error(
        "[dns]\n\nmax_concurrency = 0\n",
        3,
        "dns.max_concurrency",
        "at least 1",
    );
    assert_error(
        "[dns]\nmax_concurrency = \"many\"\n",
        2,
        "dns.max_concurrency",
        "a whole number of at least 1",
    );
}

#[test]
fn other_range_checks() {
    assert_error("[cache]\nsize = 0\n", 2, "cache.size", "at least 1");
    assert_error(
        "[server]\nmax_connections = -3\n",
        2,
        "server.max_connections",
        "at least 1",
    );
    assert_error(
        "[fetch]\nhttps_port = 0\n",
        2,
        "fetch.https_port",
        "1 to 65535",
    );
    assert_error(
        "[fetch]\nhttps_port = 65536\n",
        2,
        "fetch.https_port",
        "1 to 65535",
    );
    assert_error(
        "[dns]\nnameservers = [\"ns1.example.net\"]\n",
        2,
        "dns.nameservers",
        "nameserver must be an IP address",
    );
    assert_error(
        "[dns]\nnameservers = [\n  \"127.0.0.1\",\n  \"::1\",\n  \"[::1]\",\n]\n",
        5,
        "dns.nameservers",
        "nameserver must be an IP address",
    );
    assert_error(
        "[dns]\nnameservers = [\"127.0.0.1:0\"]\n",
        2,
        "dns.nameservers",
        "nameserver must be an IP address",
    );
    assert_error(
        "[fetch]\nca_file = \"ca.pem\"\n",
        2,
        "fetch.ca_file",
        "absolute path",
    );
    assert_error(
        "[cache]\nstate_dir = \"state\"\n",
        2,
        "cache.state_dir",
        "absolute path",
    );
}
