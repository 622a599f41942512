//! Duplicate detection: a request already answered gets the cached reply,
//! byte for byte, and is never processed twice; while the original is still
//! being processed, its copies are dropped. Each front end names a request
//! its own way: RADIUS by client address, port, identifier and
//! authenticator (RFC 5080 §2.2.2), Diameter by End-to-End id and
//! Origin-Host (RFC 6733 §6.3).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

enum Entry<V> {
    InProgress,
    /// The reply sent (None: the request was deliberately not answered).
    Done(Option<V>),
}

/// What to do with an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<V = Vec<u8>> {
    /// New: process it, then call [`DuplicateCache::finish`].
    New,
    /// Being processed: drop this copy.
    InProgress,
    /// Answered before: send this again (or nothing).
    Answered(Option<V>),
}

/// The cache of requests named by `K` and their replies `V` (the encoded
/// datagram for RADIUS), bounded in time and size.
pub struct DuplicateCache<K, V = Vec<u8>> {
    inner: Mutex<Inner<K, V>>,
    window: Duration,
    max: usize,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    order: VecDeque<(Instant, K)>,
}

impl<K: Eq + Hash + Clone, V: Clone> DuplicateCache<K, V> {
    /// Remembers replies for `window`, at most `max` of them.
    pub fn new(window: Duration, max: usize) -> Self {
        Self { inner: Mutex::new(Inner { entries: HashMap::new(), order: VecDeque::new() }), window, max }
    }

    /// Looks a request up, marking it in progress if new.
    pub fn check(&self, key: K, now: Instant) -> Seen<V> {
        let Ok(mut inner) = self.inner.lock() else { return Seen::InProgress };
        while let Some((t, _)) = inner.order.front() {
            if now.duration_since(*t) <= self.window && inner.order.len() < self.max {
                break;
            }
            let Some((_, k)) = inner.order.pop_front() else { break };
            // Only forget finished entries; an in-progress one is finished later.
            if matches!(inner.entries.get(&k), Some(Entry::Done(_))) {
                inner.entries.remove(&k);
            }
        }
        match inner.entries.get(&key) {
            Some(Entry::InProgress) => Seen::InProgress,
            Some(Entry::Done(reply)) => Seen::Answered(reply.clone()),
            None => {
                inner.entries.insert(key, Entry::InProgress);
                Seen::New
            }
        }
    }

    /// Records the reply (or the decision not to reply) for `key`.
    pub fn finish(&self, key: K, reply: Option<V>, now: Instant) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.insert(key.clone(), Entry::Done(reply));
            inner.order.push_back((now, key));
        }
    }

    /// Forgets a request whose processing failed, so a retransmission is
    /// processed afresh.
    pub fn forget(&self, key: K) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> (u8, [u8; 16]) {
        (id, [id; 16])
    }

    #[test]
    fn replays_the_reply_and_blocks_while_in_progress() {
        let c = DuplicateCache::<_, Vec<u8>>::new(Duration::from_secs(30), 100);
        let now = Instant::now();
        assert_eq!(c.check(key(1), now), Seen::New);
        assert_eq!(c.check(key(1), now), Seen::InProgress);
        c.finish(key(1), Some(vec![1, 2, 3]), now);
        assert_eq!(c.check(key(1), now), Seen::Answered(Some(vec![1, 2, 3])));
        assert_eq!(c.check(key(2), now), Seen::New);
    }

    #[test]
    fn bounded_by_size() {
        let c = DuplicateCache::<_, Vec<u8>>::new(Duration::from_secs(30), 2);
        let now = Instant::now();
        for id in 0..5 {
            assert_eq!(c.check(key(id), now), Seen::New);
            c.finish(key(id), None, now);
        }
        assert_eq!(c.check(key(0), now), Seen::New, "oldest evicted");
    }

    #[test]
    fn answers_are_forgotten_after_the_window_on_the_clock_passed_in() {
        let c = DuplicateCache::<_, Vec<u8>>::new(Duration::from_secs(30), 100);
        let now = Instant::now();
        assert_eq!(c.check(key(1), now), Seen::New);
        c.finish(key(1), Some(vec![9]), now);
        assert_eq!(c.check(key(1), now + Duration::from_secs(30)), Seen::Answered(Some(vec![9])));
        assert_eq!(c.check(key(1), now + Duration::from_secs(31)), Seen::New, "past the window: decided afresh");
    }
}
