//! Local overrides (SPEC 6.5): a domain → fixed answer table from the
//! configuration (`[overrides]`, `[profiles.NAME.overrides]`, and the files they
//! name), consulted before the cache and before any lookup. For a partner whose
//! policy is broken while mail must flow today (`none-from-mtasts`), or to pin a
//! stricter policy than a domain publishes (`secure match=.example.net`).
//!
//! Pure: parsing and lookup. [`crate::config`] reads the files.

use std::collections::HashMap;

use crate::postfix::{check_answer_syntax, fits_reply};
use crate::socketmap::response::MAX_REPLY;
use crate::socketmap::{normalise_key, Key};

/// What an override answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// `none-from-mtasts`: never apply MTA-STS to this domain; Postfix gets
    /// `NOTFOUND ` and uses its own settings (DANE included).
    NoMtaSts,
    /// A Postfix TLS policy (`secure match=...`, `dane-only`, `encrypt`, ...),
    /// answered as `OK <text>`.
    Answer(Box<str>),
}

impl Override {
    /// The socketmap reply payload: `OK <text>` or `NOTFOUND `.
    pub fn reply(&self) -> String {
        match self {
            Override::NoMtaSts => "NOTFOUND ".to_owned(),
            Override::Answer(text) => format!("OK {text}"),
        }
    }
}

/// `none-from-mtasts`, the keyword for "no MTA-STS here".
pub const NO_MTA_STS: &str = "none-from-mtasts";

/// Parse an override answer: `none-from-mtasts`, or a Postfix TLS policy (a
/// security level and attributes) that passes [`check_answer_syntax`].
/// Whitespace is normalised to single spaces.
pub fn parse_answer(text: &str) -> Result<Override, String> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        [] => Err(format!(
            "empty answer: expected {NO_MTA_STS:?} or a Postfix TLS policy like \"secure match=.example.net\""
        )),
        [only] if *only == NO_MTA_STS => Ok(Override::NoMtaSts),
        [first, next, ..] if *first == NO_MTA_STS => Err(format!(
            "{NO_MTA_STS:?} takes no attributes, found {next:?}"
        )),
        _ => {
            let normalised = words.join(" ");
            check_answer_syntax(&normalised).map_err(|e| {
                format!("{e} (or {NO_MTA_STS:?} to leave the domain to Postfix's own settings)")
            })?;
            if !fits_reply(normalised.len()) {
                return Err(format!(
                    "answer of {} bytes is longer than Postfix accepts ({MAX_REPLY})",
                    normalised.len()
                ));
            }
            Ok(Override::Answer(normalised.into_boxed_str()))
        }
    }
}

/// A domain as lookups see it (SPEC 1.6: case, trailing dot, IDN → A-label).
pub fn parse_domain(key: &str) -> Result<String, String> {
    match normalise_key(key) {
        Key::Domain(d) => Ok(d.into_owned()),
        Key::Skip(why) => Err(format!(
            "{key:?} is not a domain name an override can apply to ({})",
            why.as_str()
        )),
    }
}

/// An overrides file: `domain answer...` per line, `#` comments, blank lines.
/// An error carries its 1-based line number.
pub fn parse_file(text: &str) -> Result<Vec<(String, Override)>, (usize, String)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (domain, answer) = line
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(|| (i + 1, format!("{line:?}: expected \"domain answer\"")))?;
        let domain = parse_domain(domain).map_err(|e| (i + 1, e))?;
        let answer = parse_answer(answer).map_err(|e| (i + 1, format!("{domain}: {e}")))?;
        entries.push((domain, answer));
    }
    Ok(entries)
}

/// Every override, for all profiles and per profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    all: HashMap<String, Override>,
    profiles: HashMap<String, HashMap<String, Override>>,
}

impl Overrides {
    /// Add one entry; `profile` `None` is for every profile. A later entry for
    /// the same domain replaces an earlier one.
    pub fn insert(&mut self, profile: Option<&str>, domain: String, answer: Override) {
        let table = match profile {
            None => &mut self.all,
            Some(p) => self.profiles.entry(p.to_owned()).or_default(),
        };
        table.insert(domain, answer);
    }

    /// Adds `other`'s entries, replacing those for the same profile and domain.
    pub fn extend(&mut self, other: Overrides) {
        self.all.extend(other.all);
        for (profile, table) in other.profiles {
            self.profiles.entry(profile).or_default().extend(table);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.profiles.is_empty()
    }

    /// How many entries, over all tables.
    pub fn len(&self) -> usize {
        self.all.len() + self.profiles.values().map(HashMap::len).sum::<usize>()
    }

    /// The override for `domain` (normalised) under `profile`: the profile's own
    /// table first, then the one for every profile.
    pub fn get(&self, profile: &str, domain: &str) -> Option<&Override> {
        self.profiles
            .get(profile)
            .and_then(|t| t.get(domain))
            .or_else(|| self.all.get(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_spec_6_5() {
        let table = [
            ("none-from-mtasts", Ok(Override::NoMtaSts)),
            (
                "secure  match=.example.net\tservername=hostname",
                Ok(Override::Answer(
                    "secure match=.example.net servername=hostname".into(),
                )),
            ),
            ("dane-only", Ok(Override::Answer("dane-only".into()))),
            (
                "encrypt protocols=>=TLSv1.2",
                Ok(Override::Answer("encrypt protocols=>=TLSv1.2".into())),
            ),
        ];
        for (text, want) in table {
            assert_eq!(parse_answer(text), want, "{text:?}");
        }
        for (text, fragment) in [
            ("", "empty answer"),
            ("securee", "unknown security level \"securee\""),
            ("none-from-mtasts secure", "takes no attributes"),
            ("secure match", "not a Postfix TLS policy"),
            ("secure match=", "not a Postfix TLS policy"),
            ("secure matches=x", "unknown attribute \"matches\""),
            ("encrypt match=.example.net", "not a Postfix TLS policy"),
        ] {
            let err = parse_answer(text).unwrap_err();
            assert!(err.contains(fragment), "{text:?}: {err}");
        }
        let hosts: Vec<String> = (0..10_000).map(|i| format!("mx{i}.example.net")).collect();
        let long = format!("secure match={}", hosts.join(":"));
        assert!(parse_answer(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn replies() {
        assert_eq!(Override::NoMtaSts.reply(), "NOTFOUND ");
        assert_eq!(Override::Answer("dane-only".into()).reply(), "OK dane-only");
    }

    #[test]
    fn domains_are_normalised_like_lookups_spec_1_6() {
        assert_eq!(parse_domain("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            parse_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert!(parse_domain("[192.0.2.1]").is_err());
        assert!(parse_domain(".example.com").is_err());
    }

    #[test]
    fn files_name_the_bad_line() {
        let text = "# partners\n\npartner.example none-from-mtasts  # broken policy\nBank.example. secure match=.bank.example\n";
        assert_eq!(
            parse_file(text).unwrap(),
            vec![
                ("partner.example".to_owned(), Override::NoMtaSts),
                (
                    "bank.example".to_owned(),
                    Override::Answer("secure match=.bank.example".into())
                ),
            ]
        );
        let (line, err) = parse_file("a.example dane\nb.example\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(err.contains("expected \"domain answer\""), "{err}");
        let (line, err) = parse_file("a.example dane\n\nb.example bogus\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(
            err.contains("b.example: not a Postfix TLS policy: unknown security level \"bogus\""),
            "{err}"
        );
    }

    #[test]
    fn a_profile_table_wins_over_the_shared_one() {
        let mut o = Overrides::default();
        assert!(o.is_empty());
        o.insert(None, "a.example".into(), Override::NoMtaSts);
        o.insert(
            Some("strict"),
            "a.example".into(),
            Override::Answer("dane-only".into()),
        );
        o.insert(Some("strict"), "b.example".into(), Override::NoMtaSts);
        assert_eq!(o.len(), 3);
        assert_eq!(o.get("postfix", "a.example"), Some(&Override::NoMtaSts));
        assert_eq!(
            o.get("strict", "a.example"),
            Some(&Override::Answer("dane-only".into()))
        );
        assert_eq!(o.get("postfix", "b.example"), None);
        assert_eq!(o.get("strict", "c.example"), None);
    }
}
