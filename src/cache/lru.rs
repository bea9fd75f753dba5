//! The LRU behind the policy and DANE caches (SPEC 5.7): [`schnellru`]'s map, which
//! keeps each entry (key, value, links) in the hash table itself. A hit then reads one table
//! slot, where a map of pointers to list nodes (the `lru` crate's) reads the slot and
//! then the node: at 100 000 domains both are cache misses (docs/BENCHMARKS.md).

use schnellru::{ByLength, LruMap};

use super::Name;

pub(crate) struct Lru<V> {
    map: LruMap<Name, V, ByLength>,
}

impl<V> Lru<V> {
    /// At most `size` entries (at least one); the table grows as it fills.
    pub(crate) fn new(size: usize) -> Lru<V> {
        Lru {
            map: LruMap::new(ByLength::new(limit(size))),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn cap(&self) -> usize {
        self.map.limiter().max_length() as usize
    }

    /// The least recently used go first when `size` is below the length.
    pub(crate) fn resize(&mut self, size: usize) {
        *self.map.limiter_mut() = ByLength::new(limit(size));
        while self.map.len() > self.cap() {
            self.map.pop_oldest();
        }
    }

    /// Without moving the entry up.
    pub(crate) fn peek(&self, key: &str) -> Option<&V> {
        self.map.peek(key)
    }

    /// Without moving the entry up.
    pub(crate) fn peek_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.peek_mut(key)
    }

    /// The entry, moved to the front (most recently used).
    pub(crate) fn get(&mut self, key: &str) -> Option<&mut V> {
        self.map.get(key)
    }

    /// The least recently used entry, removed.
    pub(crate) fn pop_oldest(&mut self) -> Option<(Name, V)> {
        self.map.pop_oldest()
    }

    pub(crate) fn pop(&mut self, key: &str) -> Option<V> {
        self.map.remove(key)
    }

    /// Insert at the front; when full, the least recently used entry goes and is
    /// returned (a replaced entry of the same key is not).
    pub(crate) fn push(&mut self, key: Name, value: V) -> Option<(Name, V)> {
        let evicted = if self.map.len() >= self.cap() && self.map.peek(key.as_str()).is_none() {
            self.map.pop_oldest()
        } else {
            None
        };
        let inserted = self.map.insert(key, value);
        // Only a limiter that refuses, or a table that cannot grow, makes it fail.
        debug_assert!(inserted, "the LRU refused an entry");
        evicted
    }

    /// Most recently used first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&Name, &V)> {
        self.map.iter()
    }
}

fn limit(size: usize) -> u32 {
    u32::try_from(size.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lru: &Lru<u32>) -> Vec<&str> {
        lru.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_full_lru_evicts_the_least_recently_used_spec_5_7() {
        let mut lru = Lru::new(2);
        assert!(lru.push("a".into(), 1).is_none());
        assert!(lru.push("b".into(), 2).is_none());
        // Only a promotion moves an entry up; a peek does not.
        lru.get("a");
        assert_eq!(lru.peek("b"), Some(&2));
        assert_eq!(lru.push("c".into(), 3), Some(("b".into(), 2)));
        assert_eq!(keys(&lru), ["c", "a"]);
        // Replacing a key evicts nothing.
        assert!(lru.push("a".into(), 10).is_none());
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get("a"), Some(&mut 10));
    }

    #[test]
    fn shrinking_drops_the_least_recently_used() {
        let mut lru = Lru::new(4);
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            lru.push(k.into(), i as u32);
        }
        lru.resize(2);
        assert_eq!(lru.cap(), 2);
        assert_eq!(keys(&lru), ["d", "c"]);
        assert_eq!(lru.pop("c"), Some(2));
        assert_eq!(lru.pop("c"), None);
        // A size of zero still holds one entry (cache.size 0 is refused by the
        // configuration; the cache must not panic on it either way).
        lru.resize(0);
        assert_eq!(lru.cap(), 1);
        assert_eq!(keys(&lru), ["d"]);
    }
}
