//! The tables behind the cache (SPEC 5.7): the three LRUs an entry lives in, by the
//! strength of its policy, and the one copy of each answer text they share.

use std::collections::HashSet;
use std::sync::Arc;

use super::entry::{Entry, Name};
use super::lru::Lru;
use super::CacheStats;
use crate::mta_sts::Mode;

/// Three LRUs, each bounded by `cache.size`: domains with an `enforce` policy,
/// domains with a `testing` or `none` policy, and domains without one (negative
/// cache and back-off). Kept apart so that lookups of many domains, which anyone who
/// can make us send mail can cause, never push out a policy that protects mail: an
/// `enforce` policy is never evicted for a `testing` or `none` policy or a negative
/// entry (SPEC 5.3, 5.7). A hit looks in `enforce`, then `negative`, then `weak`, one
/// hash lookup each: the domains mail goes to most are the first two kinds.
pub(super) struct Entries {
    pub(super) enforce: Lru<Entry>,
    pub(super) weak: Lru<Entry>,
    pub(super) negative: Lru<Entry>,
    /// The entries' answer texts, one copy of each.
    pub(super) answers: Answers,
    /// How many of `weak`'s policies are `testing` (the rest are `none`), kept as
    /// entries come and go so that [`PolicyCache::stats`] walks nothing.
    pub(super) testing: usize,
}

/// Answer texts (`secure match=...`), one copy each, shared by every entry whose
/// policy has that answer. Most domains publish one of a few mail providers' mx
/// lists: they then share a few texts, which stay in the CPU's caches for every hit,
/// and 100 000 such policies keep a few copies instead of 100 000.
#[derive(Default)]
pub(super) struct Answers {
    texts: HashSet<Arc<str>>,
    /// Texts no entry holds any more are dropped when the set reaches this size:
    /// twice what was in use at the last sweep, so a sweep costs O(1) per insert.
    sweep_at: usize,
}

impl Answers {
    /// The shared copy of `text`.
    pub(super) fn intern(&mut self, text: Box<str>) -> Arc<str> {
        if let Some(shared) = self.texts.get(&*text) {
            return Arc::clone(shared);
        }
        if self.texts.len() >= self.sweep_at {
            self.texts.retain(|t| Arc::strong_count(t) > 1);
            self.sweep_at = (2 * self.texts.len()).max(1024);
        }
        let shared: Arc<str> = Arc::from(text);
        self.texts.insert(Arc::clone(&shared));
        shared
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.texts.len()
    }
}

impl Entries {
    pub(super) fn new(size: usize) -> Entries {
        Entries {
            enforce: Lru::new(size),
            weak: Lru::new(size),
            negative: Lru::new(size),
            answers: Answers::default(),
            testing: 0,
        }
    }

    /// The tables of policies, the weaker first.
    pub(super) fn policies(&self) -> impl Iterator<Item = &Lru<Entry>> {
        [&self.weak, &self.enforce].into_iter()
    }

    /// A warning to log (once the lock is released) when policies are dropped.
    pub(super) fn resize(&mut self, size: usize) -> Option<String> {
        let policies = self.enforce.len().max(self.weak.len());
        let warning = (size < policies).then(|| {
            format!("cache.size {size} is below the {policies} policies of one kind cached: the least recently used are dropped")
        });
        self.enforce.resize(size);
        while self.weak.len() > size.max(1) {
            let popped = self.weak.pop_oldest();
            self.count_out(popped.as_ref().map(|(_, e)| e));
        }
        self.weak.resize(size);
        self.negative.resize(size);
        warning
    }

    pub(super) fn len(&self) -> usize {
        self.enforce.len() + self.weak.len() + self.negative.len()
    }

    /// The hot path: `f` on the entry for `domain`, with one hash lookup per table
    /// it looks in. The entry moves to the front of its LRU at most once a second: a
    /// hot entry's hits then write no list links (with 100 000 entries, each relink
    /// is a few cache misses), and eviction order stays exact to the second.
    pub(super) fn hit<R>(
        &mut self,
        domain: &str,
        now: u64,
        f: impl FnOnce(&mut Entry, &mut Answers) -> R,
    ) -> Option<R> {
        fn touch<R, F: FnOnce(&mut Entry, &mut Answers) -> R>(
            lru: &mut Lru<Entry>,
            answers: &mut Answers,
            domain: &str,
            now: u64,
            f: F,
        ) -> Result<R, F> {
            let Some(entry) = lru.peek_mut(domain) else {
                return Err(f);
            };
            // Written only when it changes: a hit on a hot entry leaves its memory
            // clean (no write-back when the line is evicted).
            let stale = entry.touched != now;
            if stale {
                entry.touched = now;
            }
            let r = f(entry, answers);
            if stale {
                // Moved to the front.
                lru.get(domain);
            }
            Ok(r)
        }
        let answers = &mut self.answers;
        touch(&mut self.enforce, answers, domain, now, f)
            .or_else(|f| touch(&mut self.negative, answers, domain, now, f))
            .or_else(|f| touch(&mut self.weak, answers, domain, now, f))
            .ok()
    }

    pub(super) fn peek(&self, domain: &str) -> Option<&Entry> {
        self.enforce
            .peek(domain)
            .or_else(|| self.negative.peek(domain))
            .or_else(|| self.weak.peek(domain))
    }

    pub(super) fn take(&mut self, domain: &str) -> Option<Entry> {
        if let Some(e) = self.enforce.pop(domain) {
            return Some(e);
        }
        if let Some(e) = self.negative.pop(domain) {
            return Some(e);
        }
        let e = self.weak.pop(domain);
        self.count_out(e.as_ref());
        e
    }

    /// `entry` left `weak`.
    pub(super) fn count_out(&mut self, entry: Option<&Entry>) {
        if entry.is_some_and(|e| e.mode == Some(Mode::Testing)) {
            self.testing -= 1;
        }
    }

    /// Insert into the LRU the entry belongs in (by its policy's mode), which must
    /// not hold `domain` already ([`Entries::take`] it first). When a usable policy
    /// had to go to make room, its domain and the table's size, for the caller to
    /// report once the lock is released.
    pub(super) fn put(&mut self, domain: Name, entry: Entry, now: u64) -> Option<(Name, usize)> {
        debug_assert!(
            self.peek(&domain).is_none(),
            "{domain} is in the cache twice"
        );
        let (lru, weak) = match entry.mode {
            Some(Mode::Enforce) => (&mut self.enforce, false),
            Some(Mode::Testing | Mode::None) => (&mut self.weak, true),
            None => (&mut self.negative, false),
        };
        let testing = entry.mode == Some(Mode::Testing);
        let cap = lru.cap();
        let evicted = lru.push(domain, entry);
        if testing {
            self.testing += 1;
        }
        let (gone, old) = evicted?;
        if weak {
            self.count_out(Some(&old));
        }
        old.usable(now).is_some().then_some((gone, cap))
    }

    /// Counts by kind (see [`PolicyCache::stats`]), without a walk.
    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            policies: self.enforce.len() + self.weak.len(),
            negative: self.negative.len(),
            enforce: self.enforce.len(),
            testing: self.testing,
            none: self.weak.len() - self.testing,
        }
    }
}
