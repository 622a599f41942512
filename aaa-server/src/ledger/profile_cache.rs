//! Card profiles (method and confirmation rule) kept in memory: every
//! conversation starts by looking one up, and neither changes after
//! issuance, so a cached profile is never stale. What does change (status,
//! limits, balance) is read inside the decision's transaction, not here.
//! Unknown cards are not cached: the admin CLI may issue one at any time.

use super::bounded_map::BoundedMap;
use super::model::CardProfile;

/// Profiles kept at most; beyond, one is dropped and read again when needed.
const CAPACITY: usize = 65_536;

#[derive(Debug)]
pub struct ProfileCache {
    profiles: BoundedMap<String, CardProfile>,
}

impl Default for ProfileCache {
    fn default() -> Self {
        Self { profiles: BoundedMap::new(CAPACITY) }
    }
}

impl ProfileCache {
    pub fn get(&self, card_id: &str) -> Option<CardProfile> {
        self.profiles.lock().get(card_id).copied()
    }

    pub fn insert(&self, card_id: &str, profile: CardProfile) {
        self.profiles.insert(card_id.to_owned(), profile);
    }
}
