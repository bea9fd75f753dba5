//! Error location: a toml error's byte span → the line and the dotted key that an
//! error message names (SPEC 7.4).
//!
//! The line is counted from the span; the key is found by a second,
//! span-preserving parse ([`toml::de::DeTable`]) that looks for the key, or the
//! value, covering the span.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::ConfigError;

pub(super) fn invalid_from_toml(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    let line = span
        .as_ref()
        .map_or(0, |span| line_at(text.as_bytes(), span.start));
    let key = span.map_or_else(String::new, |span| key_at(text, span.start));
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key,
        message: tidy_message(err.message()),
    }
}

/// 1-based line of a byte offset.
pub(super) fn line_at(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line of the key at `path` (e.g. `["redis", "key_file"]`), or 0 when the text
/// does not have it.
pub(super) fn line_of_key(text: &str, path: &[&str]) -> usize {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut table = root.get_ref();
    for (i, name) in path.iter().enumerate() {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            return 0;
        };
        if i + 1 == path.len() {
            return line_at(text.as_bytes(), key.span().start);
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return 0,
        }
    }
    0
}

/// The dotted path of the key, or of the key whose value, covers `offset`; empty
/// if none does (a syntax error between entries, say). Parses the text again,
/// keeping spans; recovery makes this work for most syntax errors too.
pub(super) fn key_at(text: &str, offset: usize) -> String {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut path = Vec::new();
    if find_key(root.get_ref(), offset, &mut path) {
        path.join(".")
    } else {
        String::new()
    }
}

fn find_key(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(quote_key(key.get_ref()));
        if covers(&key.span(), offset) {
            return true;
        }
        // A table written as a `[header]` has its entries elsewhere in the file than
        // its own span: always look inside.
        if let DeValue::Table(inner) = value.get_ref() {
            if find_key(inner, offset, path) {
                return true;
            }
        }
        if covers(&value.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn covers(span: &std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// A key as TOML would write it in a dotted path: bare if it can be.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// toml and serde messages, on one line and in this file's words.
fn tidy_message(message: &str) -> String {
    let one_line = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match one_line.strip_prefix("unknown field") {
        Some(rest) => format!("unknown key{rest}"),
        None => one_line,
    }
}
