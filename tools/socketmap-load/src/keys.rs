//! The keys a benchmark asks for, and the order it asks in.

use std::io;
use std::path::Path;

/// The placeholder a key pattern must contain.
pub const PLACEHOLDER: &str = "{N}";

/// `pattern` with `{N}` replaced by 0..count: `d{N}.bench.test` gives
/// `d0.bench.test`, `d1.bench.test`, ...
pub fn from_pattern(pattern: &str, count: usize) -> Result<Vec<String>, String> {
    if !pattern.contains(PLACEHOLDER) {
        return Err(format!("key pattern {pattern:?} has no {PLACEHOLDER}"));
    }
    Ok((0..count)
        .map(|n| pattern.replace(PLACEHOLDER, &n.to_string()))
        .collect())
}

/// One key per line; blank lines and surrounding white space ignored.
pub fn from_file(path: &Path) -> io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// How each connection walks through the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// In order, each connection starting at its own offset, so all keys are hit
    /// evenly and every connection asks for different keys at any moment.
    RoundRobin,
    /// Uniformly at random (a per-connection xorshift generator: no shared state).
    Random,
}

/// Picks key indexes for one connection.
pub struct Picker {
    order: Order,
    next: usize,
    count: usize,
    state: u64,
}

impl Picker {
    /// For connection `conn` of `conns`, over `count` keys (at least one).
    pub fn new(order: Order, conn: usize, conns: usize, count: usize) -> Picker {
        assert!(count > 0, "no keys");
        let next = (conn as u128 * count as u128 / conns.max(1) as u128) as usize;
        // Any non-zero seed works for xorshift; spread them with a large odd constant.
        let state = (conn as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Picker {
            order,
            next,
            count,
            state,
        }
    }

    pub fn pick(&mut self) -> usize {
        match self.order {
            Order::RoundRobin => {
                let i = self.next;
                self.next = if i + 1 == self.count { 0 } else { i + 1 };
                i
            }
            Order::Random => {
                // xorshift64* (Vigna).
                let mut x = self.state;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                self.state = x;
                let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                ((u128::from(r) * self.count as u128) >> 64) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern() {
        assert_eq!(
            from_pattern("d{N}.bench.test", 3).unwrap(),
            ["d0.bench.test", "d1.bench.test", "d2.bench.test"]
        );
        assert!(from_pattern("bench.test", 3).is_err());
    }

    #[test]
    fn round_robin_offsets_and_wraps() {
        let mut p = Picker::new(Order::RoundRobin, 1, 2, 4);
        let got: Vec<_> = (0..5).map(|_| p.pick()).collect();
        assert_eq!(got, [2, 3, 0, 1, 2]);
    }

    #[test]
    fn random_stays_in_range_and_covers() {
        let mut p = Picker::new(Order::Random, 0, 8, 10);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[p.pick()] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
