use super::*;

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact("redis://127.0.0.1:6379/0"),
        "redis://127.0.0.1:6379/0"
    );
    assert_eq!(redact("redis://:pw@h:1/2"), "redis://:***@h:1/2");
    assert_eq!(redact("rediss://u:p@ss@h"), "rediss://u:***@h");
    assert_eq!(redact("redis://pw@h"), "redis://***@h");
}

#[test]
fn errors_are_logged_on_one_line() {
    assert_eq!(
        one_line("Parse error at 1\nUnexpected `84`\r\n"),
        "Parse error at 1\\nUnexpected `84`\\r\\n"
    );
    assert_eq!(one_line("plain é"), "plain é");
}

#[test]
fn ttl_is_clamped_to_what_px_accepts() {
    assert_eq!(ttl_ms(Duration::ZERO), 1);
    assert_eq!(ttl_ms(Duration::from_micros(1500)), 1);
    assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
    assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
}

#[tokio::test]
async fn only_a_bad_url_fails_connect() {
    let config = |url: &str| RedisConfig {
        url: url.to_owned(),
        prefix: "t:".to_owned(),
        timeout: Duration::from_millis(50),
        ca_file: None,
        key_file: None,
        key: None,
    };
    assert!(RedisCluster::connect(&config("http://127.0.0.1:1"))
        .await
        .is_err());
    // rediss:// is supported (TLS through rustls, with the process's provider);
    // nothing listens on port 1, which connect does not mind.
    assert!(Client::open("rediss://127.0.0.1:1/0").is_ok());
    assert!(RedisCluster::connect(&config("redis://127.0.0.1:1/0"))
        .await
        .is_ok());
}

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// SPEC 5.10: with a key, only records signed with it, for this very Redis key,
/// are read; without one, signed and unsigned records alike.
#[test]
fn records_are_read_only_when_signed_with_the_clusters_key() {
    let json = br#"{"kind":"negative","checked":1,"until":2}"#;
    let ours = key("0123456789abcdef0123456789abcdef");
    let theirs = key("fedcba9876543210fedcba9876543210");
    let sealed = seal(&ours, "m:policy:example.com", json);
    assert!(sealed.starts_with(b"hmac-sha256:"), "{sealed:?}");
    assert_eq!(sealed.len(), SEAL_TAG.len() + 64 + 1 + json.len());
    type Row<'a> = (
        Option<&'a hmac::Key>,
        &'a str,
        Vec<u8>,
        Result<&'a [u8], &'a str>,
    );
    let rows: Vec<Row> = vec![
        (
            Some(&ours),
            "m:policy:example.com",
            sealed.clone(),
            Ok(json),
        ),
        (
            Some(&ours),
            "m:policy:example.com",
            json.to_vec(),
            Err("signature"),
        ),
        (
            Some(&theirs),
            "m:policy:example.com",
            sealed.clone(),
            Err("signature"),
        ),
        // Copied to another domain, or another prefix.
        (
            Some(&ours),
            "m:policy:victim.example",
            sealed.clone(),
            Err("signature"),
        ),
        (
            Some(&ours),
            "n:policy:example.com",
            sealed.clone(),
            Err("signature"),
        ),
        // Changed after signing.
        (
            Some(&ours),
            "m:policy:example.com",
            [&sealed[..sealed.len() - 2], b"3}"].concat(),
            Err("signature"),
        ),
        (
            Some(&ours),
            "m:policy:example.com",
            b"hmac-sha256:zz\n{}".to_vec(),
            Err("signature"),
        ),
        (None, "m:policy:example.com", sealed.clone(), Ok(json)),
        (None, "m:policy:example.com", json.to_vec(), Ok(json)),
        (
            None,
            "m:policy:example.com",
            vec![b' '; MAX_RECORD + 1],
            Err("too_large"),
        ),
    ];
    for (secret, redis_key, raw, want) in rows {
        assert_eq!(
            unseal(secret, redis_key, &raw),
            want,
            "{redis_key} {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
    }
}

#[test]
fn plaintext_redis_off_this_host_without_a_key_is_warned_about() {
    let config = |url: &str, key: bool| RedisConfig {
        url: url.to_owned(),
        prefix: "t:".to_owned(),
        timeout: Duration::from_millis(50),
        ca_file: None,
        key_file: None,
        key: key
            .then(|| crate::config::RedisKey::new(b"0123456789abcdef0123456789abcdef").unwrap()),
    };
    for (url, key, warned) in [
        ("redis://10.0.0.5:6379/0", false, true),
        ("redis://:secret@redis.example:6379", false, true),
        ("redis://[2001:db8::1]:6379", false, true),
        ("redis://10.0.0.5:6379/0", true, false),
        ("rediss://10.0.0.5:6380/0", false, false),
        ("redis://127.0.0.1:6379/0", false, false),
        ("redis://127.0.0.2:6379/0", false, false),
        ("redis://[::1]:6379", false, false),
        ("redis://localhost", false, false),
    ] {
        let warning = exposure_warning(&config(url, key));
        assert_eq!(warning.is_some(), warned, "{url} {key}: {warning:?}");
        if let Some(w) = warning {
            assert!(!w.contains("secret"), "{w}");
            assert!(w.contains("key_file"), "{w}");
        }
    }
}

#[test]
fn node_id_names_host_and_pid() {
    let id = node_id();
    assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
    assert!(!id.starts_with(':'), "{id}");
}
