//! A map shared between tasks that never grows past a capacity: when full,
//! an arbitrary entry makes room. For caches whose entries can always be
//! rebuilt from the ledger (card profiles, reserved SQN blocks), so losing
//! one costs a read, never correctness.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

pub struct BoundedMap<K, V> {
    map: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self { map: Mutex::new(HashMap::new()), capacity }
    }

    /// The map, locked. It holds no invariant a panicking holder could
    /// break, so a poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(key, value);
    }
}

impl<K, V> std::fmt::Debug for BoundedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.lock().map_or(0, |m| m.len());
        f.debug_struct("BoundedMap").field("entries", &len).field("capacity", &self.capacity).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows_past_its_capacity() {
        let m = BoundedMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(2, "b2");
        assert_eq!(m.lock().len(), 2);
        m.insert(3, "c");
        assert_eq!(m.lock().len(), 2);
        assert_eq!(m.lock().get(&3), Some(&"c"));
    }
}
