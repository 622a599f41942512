//! The table of EAP conversations waiting for the peer's next response.
//!
//! Each front end keys it its own way: RADIUS by the State it issued and the
//! NAS it issued it to, Diameter by Session-Id and the Origin-Host that owns
//! the session. A key that names no live conversation is simply not found, so
//! a NAS presenting another NAS's State learns nothing and disturbs nothing.
//!
//! A conversation is taken out of the table while one request drives it and
//! put back afterwards, so two requests can never drive the same session at
//! once. The clock is passed in (`now`), never read here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::eap::Pending;

struct Entry {
    pending: Pending,
    last_used: Instant,
}

/// A conversation the full table could not store, handed back.
pub struct TableFull(pub Box<Pending>);

impl std::fmt::Debug for TableFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableFull")
    }
}

/// Conversations by key `K`, forgotten after `idle`, at most `max`.
pub struct Conversations<K> {
    map: Mutex<HashMap<K, Entry>>,
    /// Conversations dropped (expired) while holding an approval; the
    /// sweeper reverses them.
    orphans: Mutex<Vec<Pending>>,
    idle: Duration,
    max: usize,
    /// Conversations forgotten because the peer stopped answering (a client
    /// that never finishes its handshake ends here).
    expired: AtomicU64,
}

impl<K: Eq + Hash + Clone> Conversations<K> {
    /// A table that forgets conversations idle for `idle` and holds at most `max`.
    pub fn new(idle: Duration, max: usize) -> Self {
        Self { map: Mutex::new(HashMap::new()), orphans: Mutex::new(Vec::new()), idle, max, expired: AtomicU64::new(0) }
    }

    /// Keeps what must not be forgotten of a dropped conversation.
    fn retire(&self, pending: Pending) {
        self.expired.fetch_add(1, Ordering::Relaxed);
        if pending.holds_approval() {
            if let Ok(mut orphans) = self.orphans.lock() {
                orphans.push(pending);
            }
        }
    }

    fn is_stale(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_used) > self.idle
    }

    /// Removes expired conversations from `map`, retiring them.
    fn expire(&self, map: &mut HashMap<K, Entry>, now: Instant) {
        let stale: Vec<K> = map.iter().filter(|(_, e)| self.is_stale(e, now)).map(|(k, _)| k.clone()).collect();
        if !stale.is_empty() {
            tracing::debug!(count = stale.len(), "idle EAP conversations expired");
        }
        for key in stale {
            if let Some(entry) = map.remove(&key) {
                self.retire(entry.pending);
            }
        }
    }

    /// Conversations that were dropped holding an approval, to reverse.
    pub fn take_orphans(&self) -> Vec<Pending> {
        self.orphans.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default()
    }

    /// Removes and returns the conversation under `key`, if it exists and
    /// has not expired.
    pub fn take(&self, key: &K, now: Instant) -> Option<Pending> {
        let entry = self.map.lock().ok()?.remove(key)?;
        if self.is_stale(&entry, now) {
            self.retire(entry.pending);
            return None;
        }
        Some(entry.pending)
    }

    /// Stores a conversation under `key`, unless the table is full even
    /// after dropping expired ones. A conversation it replaces (a Diameter
    /// client restarting EAP in the same session) is retired.
    pub fn put(&self, key: K, pending: Pending, now: Instant) -> Result<(), TableFull> {
        let Ok(mut map) = self.map.lock() else { return Err(TableFull(Box::new(pending))) };
        if map.len() >= self.max && !map.contains_key(&key) {
            self.expire(&mut map, now);
            if map.len() >= self.max {
                return Err(TableFull(Box::new(pending)));
            }
        }
        if let Some(replaced) = map.insert(key, Entry { pending, last_used: now }) {
            drop(map);
            self.retire(replaced.pending);
        }
        Ok(())
    }

    /// Puts a conversation back under the key it was taken with, whatever
    /// the table's size (a discarded packet must not cost the peer its
    /// conversation).
    pub fn restore(&self, key: K, pending: Pending, now: Instant) {
        if let Ok(mut map) = self.map.lock() {
            map.insert(key, Entry { pending, last_used: now });
        }
    }

    /// Drops expired conversations; returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        match self.map.lock() {
            Ok(mut map) => {
                self.expire(&mut map, now);
                map.len()
            }
            Err(_) => 0,
        }
    }

    /// Conversations expired since start.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Number of live conversations.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::payment::Claim;

    fn pending() -> Pending {
        Pending::new(1, Claim::AuthOnly, None)
    }

    #[test]
    fn a_key_is_taken_once_and_only_by_its_owner() {
        let t = Conversations::new(Duration::from_secs(30), 2);
        let now = Instant::now();
        t.put(([1u8; 16], "nas-a"), pending(), now).unwrap();
        assert!(t.take(&([1u8; 16], "nas-b"), now).is_none(), "another NAS finds nothing");
        assert!(t.take(&([1u8; 16], "nas-a"), now).is_some(), "and the owner's conversation is intact");
        assert!(t.take(&([1u8; 16], "nas-a"), now).is_none(), "taken once");
    }

    #[test]
    fn the_table_is_capped_and_expired_entries_make_room() {
        let t = Conversations::new(Duration::from_secs(30), 2);
        let now = Instant::now();
        t.put(1, pending(), now).unwrap();
        t.put(2, pending(), now).unwrap();
        assert!(matches!(t.put(3, pending(), now), Err(TableFull(_))));
        let later = now + Duration::from_secs(31);
        t.put(3, pending(), later).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.expired(), 2);
    }

    #[test]
    fn idle_conversations_expire_on_the_clock_passed_in() {
        let t = Conversations::new(Duration::from_secs(30), 4);
        let now = Instant::now();
        t.put(1, pending(), now).unwrap();
        t.put(2, pending(), now).unwrap();
        assert_eq!(t.sweep(now + Duration::from_secs(30)), 2, "not idle longer than 30 s yet");
        assert!(t.take(&1, now + Duration::from_secs(31)).is_none(), "expired on take");
        assert_eq!(t.sweep(now + Duration::from_secs(31)), 0);
        assert_eq!(t.expired(), 2);
    }
}
