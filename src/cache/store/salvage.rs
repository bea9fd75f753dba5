//! Reading a policy store that may be damaged (SPEC 5.8): every entry that
//! is whole and valid is taken, the rest is skipped, nothing panics. A torn or
//! hand-edited file then costs the entries it damaged, not the whole cache (which
//! would reopen the downgrade window of SPEC 5.3 for every domain).
//!
//! Pure (bytes in, entries out) and generic over the entry type, so the fuzz target
//! in `fuzz/` runs exactly this code.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// What [`salvage`] made of a file.
#[derive(Debug)]
pub struct Salvaged<T> {
    /// The `version` field, when one was read.
    pub version: Option<u64>,
    /// Entries that parsed whole and converted to `T`, in file order.
    pub entries: Vec<T>,
    /// Whole JSON values in the list that are not a valid `T` (e.g. an mx pattern that
    /// fails SPEC 4.4), and damaged stretches skipped over.
    pub skipped: usize,
    /// Anything other than the file [`super::Store::save`] writes: skipped entries,
    /// a torn end, stray bytes.
    pub damaged: bool,
}

/// Read `{"version": N, "policies": [entry, ...]}` entry by entry.
pub fn salvage<T: DeserializeOwned>(bytes: &[u8]) -> Salvaged<T> {
    let mut out = Salvaged {
        version: None,
        entries: Vec::new(),
        skipped: 0,
        damaged: false,
    };
    let mut p = Parser { bytes, pos: 0 };
    if !p.eat(b'{') {
        out.damaged = true;
        return out;
    }
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            // The end of the object: only whitespace may follow.
            p.skip_ws();
            out.damaged |= p.pos != bytes.len();
            return out;
        }
        let Some(Value::String(key)) = p.value() else {
            out.damaged = true;
            return out;
        };
        if !p.eat(b':') {
            out.damaged = true;
            return out;
        }
        if key == "policies" {
            if !p.eat(b'[') {
                out.damaged = true;
                return out;
            }
            if !entries(&mut p, &mut out) {
                out.damaged = true;
                return out;
            }
        } else {
            match p.value() {
                Some(Value::Number(n)) if key == "version" => out.version = n.as_u64(),
                Some(_) => {}
                None => {
                    out.damaged = true;
                    return out;
                }
            }
        }
        if !p.eat(b',') && !p.peek(b'}') {
            out.damaged = true;
            return out;
        }
    }
}

/// The list's elements, after its `[`; `false` when the list does not end properly.
/// A damaged element is skipped by resynchronising on the next `{"domain"`, the
/// start of every entry `save` writes.
fn entries<T: DeserializeOwned>(p: &mut Parser<'_>, out: &mut Salvaged<T>) -> bool {
    const ENTRY: &[u8] = b"{\"domain\"";
    loop {
        p.skip_ws();
        if p.eat(b']') {
            return true;
        }
        match p.value() {
            Some(v) => match serde_json::from_value::<T>(v) {
                Ok(entry) => out.entries.push(entry),
                Err(_) => {
                    out.skipped += 1;
                    out.damaged = true;
                }
            },
            None => {
                out.damaged = true;
                out.skipped += 1;
                // Past the damage: the next entry, if any.
                let from = (p.pos + 1).min(p.bytes.len());
                match find(&p.bytes[from..], ENTRY) {
                    Some(i) => {
                        p.pos = from + i;
                        continue;
                    }
                    None => return false,
                }
            }
        }
        if p.eat(b',') {
            continue;
        }
        if !p.peek(b']') {
            out.damaged = true;
            let from = p.pos.min(p.bytes.len());
            match find(&p.bytes[from..], ENTRY) {
                Some(i) => p.pos = from + i,
                None => return false,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skip whitespace, then consume `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek(&mut self, b: u8) -> bool {
        self.skip_ws();
        self.bytes.get(self.pos) == Some(&b)
    }

    /// One JSON value at the current position (serde_json bounds its nesting depth,
    /// so hostile input cannot overflow the stack).
    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        let rest = self.bytes.get(self.pos..)?;
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                self.pos += stream.byte_offset();
                Some(v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct E {
        domain: String,
        n: u8,
    }

    fn domains(s: &Salvaged<E>) -> Vec<&str> {
        s.entries.iter().map(|e| e.domain.as_str()).collect()
    }

    const GOOD: &str = r#"{"version":1,"policies":[{"domain":"a","n":1},{"domain":"b","n":2},{"domain":"c","n":3}]}"#;

    #[test]
    fn a_whole_file_is_read_whole() {
        let s = salvage::<E>(GOOD.as_bytes());
        assert_eq!(s.version, Some(1));
        assert_eq!(domains(&s), ["a", "b", "c"]);
        assert!(!s.damaged);
        assert_eq!(s.skipped, 0);
        let spaced = " {\n \"version\" : 1 ,\n \"policies\" : [ ] }\n";
        let s = salvage::<E>(spaced.as_bytes());
        assert!(!s.damaged && s.entries.is_empty() && s.version == Some(1));
    }

    #[test]
    fn every_truncation_keeps_the_entries_before_the_cut() {
        for cut in 0..GOOD.len() {
            let s = salvage::<E>(&GOOD.as_bytes()[..cut]);
            assert!(s.damaged, "cut {cut}");
            let got = domains(&s);
            // Entries are whole or absent, and always a prefix of the original.
            assert_eq!(got, ["a", "b", "c"][..got.len()], "cut {cut}");
            let whole = GOOD[..cut].matches('}').count();
            assert_eq!(got.len(), whole.min(3), "cut {cut}");
        }
    }

    #[test]
    fn a_damaged_or_invalid_entry_costs_only_itself() {
        // n out of range for u8: a whole value, not a valid entry.
        let bad = GOOD.replace(r#""n":2"#, r#""n":999"#);
        let s = salvage::<E>(bad.as_bytes());
        assert_eq!(domains(&s), ["a", "c"]);
        assert_eq!(s.skipped, 1);
        assert!(s.damaged);
        // Garbage bytes inside the second entry.
        let torn = GOOD.replace(r#""n":2"#, "\"n\":\u{1}\u{0}zz");
        let s = salvage::<E>(torn.as_bytes());
        assert_eq!(domains(&s), ["a", "c"]);
        assert!(s.damaged);
    }

    /// JSON text is UTF-8 (RFC 8259 section 8.1): bytes that are not, even in a
    /// field nobody reads, mean the entry was damaged. (serde_json's own reader
    /// skips an unknown field's string without checking; the fuzz target found it.)
    #[test]
    fn bytes_that_are_not_utf8_damage_their_entry() {
        let mut bad = GOOD
            .replace(r#""n":2"#, r#""n":2,"note":"xx""#)
            .into_bytes();
        let at = bad.windows(4).position(|w| w == b"\"xx\"").unwrap();
        bad[at + 1] = 0xff;
        let s = salvage::<E>(&bad);
        assert_eq!(domains(&s), ["a", "c"]);
        assert!(s.damaged);
    }

    #[test]
    fn not_a_store_gives_nothing() {
        for text in ["", "{ not json", "[]", "null", "{\"policies\":7}"] {
            let s = salvage::<E>(text.as_bytes());
            assert!(s.entries.is_empty(), "{text}");
            assert!(s.damaged, "{text}");
        }
    }
}
