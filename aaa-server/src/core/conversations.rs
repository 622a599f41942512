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
//!
//! # Sharing the table between terminals
//!
//! Every conversation has an owner: the terminal (RADIUS client, Diameter
//! peer) whose requests drive it. A terminal that opens conversations and
//! never finishes them (a broken terminal, or anyone holding one terminal's
//! secret) must not stop the issuer's other terminals, so:
//!
//! - each owner holds at most `per_owner` conversations; beyond that its own
//!   least recently used conversation is evicted to make room;
//! - when the whole table is full, the least recently used conversation of
//!   the owner holding the most is evicted.
//!
//! A flood therefore costs the flooding terminal its own oldest
//! conversations and nobody else's; the table never refuses a newcomer.
//! Evicted conversations are retired like expired ones: one that held an
//! approval is handed to the sweeper, which reverses it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::eap::Pending;

struct Entry {
    pending: Pending,
    last_used: Instant,
    owner: Arc<str>,
    /// The entry's place in its owner's use order.
    seq: u64,
}

/// A conversation the table could not store, handed back.
pub struct TableFull(pub Box<Pending>);

impl std::fmt::Debug for TableFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableFull")
    }
}

/// The conversations and, per owner, their keys from least to most recently used.
struct Table<K> {
    map: HashMap<K, Entry>,
    owners: HashMap<Arc<str>, BTreeMap<u64, K>>,
    next_seq: u64,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn insert(&mut self, key: K, owner: &str, pending: Pending, now: Instant) -> Option<Entry> {
        let replaced = self.remove(&key);
        let owner = match self.owners.get_key_value(owner) {
            Some((name, _)) => name.clone(),
            None => Arc::from(owner),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.owners.entry(owner.clone()).or_default().insert(seq, key.clone());
        self.map.insert(key, Entry { pending, last_used: now, owner, seq });
        replaced
    }

    fn remove(&mut self, key: &K) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        if let Some(order) = self.owners.get_mut(&entry.owner) {
            order.remove(&entry.seq);
            if order.is_empty() {
                self.owners.remove(&entry.owner);
            }
        }
        Some(entry)
    }

    fn held_by(&self, owner: &str) -> usize {
        self.owners.get(owner).map_or(0, BTreeMap::len)
    }

    /// Removes `owner`'s least recently used conversation.
    fn evict_oldest_of(&mut self, owner: &str) -> Option<Entry> {
        let key = self.owners.get(owner)?.first_key_value()?.1.clone();
        self.remove(&key)
    }

    /// The owner holding the most conversations.
    fn largest_owner(&self) -> Option<Arc<str>> {
        self.owners.iter().max_by_key(|(_, order)| order.len()).map(|(owner, _)| owner.clone())
    }
}

/// Conversations by key `K`, forgotten after `idle`, at most `max` in all
/// and `per_owner` for one terminal.
pub struct Conversations<K> {
    table: Mutex<Table<K>>,
    /// Conversations dropped (expired, evicted) while holding an approval;
    /// the sweeper reverses them.
    orphans: Mutex<Vec<Pending>>,
    idle: Duration,
    max: usize,
    per_owner: usize,
    /// Conversations forgotten because the peer stopped answering (a client
    /// that never finishes its handshake ends here).
    expired: AtomicU64,
    /// Conversations dropped to make room for newer ones.
    evicted: AtomicU64,
}

impl<K: Eq + Hash + Clone> Conversations<K> {
    /// A table that forgets conversations idle for `idle`, holds at most
    /// `max`, and at most `per_owner` of one terminal (both at least 1).
    pub fn new(idle: Duration, max: usize, per_owner: usize) -> Self {
        let max = max.max(1);
        Self {
            table: Mutex::new(Table { map: HashMap::new(), owners: HashMap::new(), next_seq: 0 }),
            orphans: Mutex::new(Vec::new()),
            idle,
            max,
            per_owner: per_owner.clamp(1, max),
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Keeps what must not be forgotten of a dropped conversation.
    fn retire(&self, pending: Pending) {
        if pending.holds_approval() {
            if let Ok(mut orphans) = self.orphans.lock() {
                orphans.push(pending);
            }
        }
    }

    fn is_stale(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_used) > self.idle
    }

    /// Removes expired conversations from `table`, retiring them.
    fn expire(&self, table: &mut Table<K>, now: Instant) {
        let stale: Vec<K> = table.map.iter().filter(|(_, e)| self.is_stale(e, now)).map(|(k, _)| k.clone()).collect();
        if !stale.is_empty() {
            tracing::debug!(count = stale.len(), "idle EAP conversations expired");
        }
        for key in stale {
            if let Some(entry) = table.remove(&key) {
                self.expired.fetch_add(1, Ordering::Relaxed);
                self.retire(entry.pending);
            }
        }
    }

    fn evict(&self, entry: Option<Entry>) {
        if let Some(entry) = entry {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.retire(entry.pending);
        }
    }

    /// Conversations that were dropped holding an approval, to reverse.
    pub fn take_orphans(&self) -> Vec<Pending> {
        self.orphans.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default()
    }

    /// Removes and returns the conversation under `key`, if it exists and
    /// has not expired.
    pub fn take(&self, key: &K, now: Instant) -> Option<Pending> {
        let entry = self.table.lock().ok()?.remove(key)?;
        if self.is_stale(&entry, now) {
            self.expired.fetch_add(1, Ordering::Relaxed);
            self.retire(entry.pending);
            return None;
        }
        Some(entry.pending)
    }

    /// Stores `owner`'s conversation under `key`, making room as the module
    /// docs say. A conversation it replaces (a Diameter client restarting
    /// EAP in the same session) is retired.
    pub fn put(&self, key: K, owner: &str, pending: Pending, now: Instant) -> Result<(), TableFull> {
        let Ok(mut table) = self.table.lock() else { return Err(TableFull(Box::new(pending))) };
        if !table.map.contains_key(&key) {
            if table.held_by(owner) >= self.per_owner {
                let oldest = table.evict_oldest_of(owner);
                self.evict(oldest);
            }
            if table.map.len() >= self.max {
                self.expire(&mut table, now);
            }
            if table.map.len() >= self.max {
                let oldest = table.largest_owner().and_then(|largest| table.evict_oldest_of(&largest));
                self.evict(oldest);
            }
        }
        if let Some(replaced) = table.insert(key, owner, pending, now) {
            drop(table);
            self.expired.fetch_add(1, Ordering::Relaxed);
            self.retire(replaced.pending);
        }
        Ok(())
    }

    /// Puts a conversation back under the key it was taken with, whatever
    /// the table's size (a discarded packet must not cost the peer its
    /// conversation).
    pub fn restore(&self, key: K, owner: &str, pending: Pending, now: Instant) {
        if let Ok(mut table) = self.table.lock() {
            table.insert(key, owner, pending, now);
        }
    }

    /// Drops expired conversations; returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        match self.table.lock() {
            Ok(mut table) => {
                self.expire(&mut table, now);
                table.map.len()
            }
            Err(_) => 0,
        }
    }

    /// Conversations expired since start.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Conversations evicted to make room since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Number of live conversations.
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.map.len()).unwrap_or(0)
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
        let t = Conversations::new(Duration::from_secs(30), 2, 2);
        let now = Instant::now();
        t.put(([1u8; 16], "nas-a"), "nas-a", pending(), now).unwrap();
        assert!(t.take(&([1u8; 16], "nas-b"), now).is_none(), "another NAS finds nothing");
        assert!(t.take(&([1u8; 16], "nas-a"), now).is_some(), "and the owner's conversation is intact");
        assert!(t.take(&([1u8; 16], "nas-a"), now).is_none(), "taken once");
    }

    #[test]
    fn expired_entries_make_room_before_anything_is_evicted() {
        let t = Conversations::new(Duration::from_secs(30), 2, 2);
        let now = Instant::now();
        t.put(1, "a", pending(), now).unwrap();
        t.put(2, "b", pending(), now).unwrap();
        let later = now + Duration::from_secs(31);
        t.put(3, "c", pending(), later).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t.expired(), t.evicted()), (2, 0));
    }

    #[test]
    fn idle_conversations_expire_on_the_clock_passed_in() {
        let t = Conversations::new(Duration::from_secs(30), 4, 4);
        let now = Instant::now();
        t.put(1, "a", pending(), now).unwrap();
        t.put(2, "a", pending(), now).unwrap();
        assert_eq!(t.sweep(now + Duration::from_secs(30)), 2, "not idle longer than 30 s yet");
        assert!(t.take(&1, now + Duration::from_secs(31)).is_none(), "expired on take");
        assert_eq!(t.sweep(now + Duration::from_secs(31)), 0);
        assert_eq!(t.expired(), 2);
    }

    /// The issue 16 attack: one terminal opens conversations and never
    /// answers. It only ever displaces its own least recently used ones.
    #[test]
    fn a_flooding_terminal_evicts_only_its_own_oldest_conversations() {
        let t = Conversations::new(Duration::from_secs(30), 100, 25);
        let now = Instant::now();
        t.put(0, "honest", pending(), now).unwrap();
        for key in 1..=10_000 {
            t.put(key, "flood", pending(), now).unwrap();
        }
        assert_eq!(t.len(), 26, "the flood holds its share and no more");
        assert_eq!(t.evicted(), 10_000 - 25);
        assert!(t.take(&0, now).is_some(), "the honest terminal's conversation survived");
        assert!(t.take(&10_000, now).is_some(), "the flood's newest is kept");
        assert!(t.take(&9_975, now).is_none(), "its oldest went first");
    }

    /// Driving a conversation (take, then put back) makes it the owner's
    /// most recently used, so a terminal's own burst evicts its idle
    /// conversations before its active ones.
    #[test]
    fn eviction_follows_use_not_creation() {
        let t = Conversations::new(Duration::from_secs(30), 10, 3);
        let now = Instant::now();
        for key in 1..=3 {
            t.put(key, "a", pending(), now).unwrap();
        }
        let p = t.take(&1, now).unwrap();
        t.put(1, "a", p, now).unwrap();
        t.put(4, "a", pending(), now).unwrap();
        assert!(t.take(&2, now).is_none(), "the least recently used went");
        assert!(t.take(&1, now).is_some(), "the one just driven stayed");
    }

    /// Several terminals fill the table between them: a newcomer displaces
    /// the largest holder's oldest conversation, never a small holder's.
    #[test]
    fn a_full_table_takes_room_from_the_largest_holder() {
        let t = Conversations::new(Duration::from_secs(30), 6, 4);
        let now = Instant::now();
        for key in 1..=4 {
            t.put(key, "big", pending(), now).unwrap();
        }
        t.put(10, "small", pending(), now).unwrap();
        t.put(11, "small", pending(), now).unwrap();
        t.put(20, "new", pending(), now).unwrap();
        assert_eq!(t.len(), 6);
        assert!(t.take(&1, now).is_none(), "big's oldest made room");
        assert!(t.take(&10, now).is_some() && t.take(&11, now).is_some(), "small kept both");
        assert_eq!(t.evicted(), 1);
    }

    #[test]
    fn restoring_a_taken_conversation_ignores_the_limits() {
        let t = Conversations::new(Duration::from_secs(30), 1, 1);
        let now = Instant::now();
        t.put(1, "a", pending(), now).unwrap();
        let p = t.take(&1, now).unwrap();
        t.put(2, "a", pending(), now).unwrap();
        t.restore(1, "a", p, now);
        assert_eq!((t.len(), t.evicted()), (2, 0));
    }
}
