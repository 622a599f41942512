//! Card profiles (method and confirmation rule) kept in memory: every
//! conversation starts by looking one up, and neither changes after
//! issuance, so a cached profile is never stale. What does change (status,
//! limits, balance) is read inside the decision's transaction, not here.
//! Unknown cards are not cached: the admin CLI may issue one at any time.

use std::collections::HashMap;
use std::sync::Mutex;

use super::model::CardProfile;

/// Profiles kept at most; beyond, one is dropped and read again when needed.
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub struct ProfileCache {
    profiles: Mutex<HashMap<String, CardProfile>>,
}

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache").field("cards", &self.lock().len()).finish()
    }
}

impl ProfileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CardProfile>> {
        // The map holds no invariant a panicking holder could break.
        self.profiles.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, card_id: &str) -> Option<CardProfile> {
        self.lock().get(card_id).cloned()
    }

    pub fn insert(&self, card_id: &str, profile: CardProfile) {
        let mut profiles = self.lock();
        if profiles.len() >= CAPACITY {
            if let Some(victim) = profiles.keys().next().cloned() {
                profiles.remove(&victim);
            }
        }
        profiles.insert(card_id.to_owned(), profile);
    }
}
