//! Card profiles (method and confirmation rule), registered TLS keys and
//! sealed SIM/AKA keys kept in memory: every conversation starts by looking a
//! profile up, every signed confirmation is checked against a key, every
//! EAP-SIM authentication needs K/OPc, and none of them changes after
//! issuance, so a cached one is never stale (the keys stay sealed under the
//! KEK here, as in the ledger). What does change (status,
//! limits, balance) is read inside the decision's transaction, not here.
//! Unknown cards are not cached: the admin CLI may issue one at any time.

use std::time::{Duration, Instant};

use super::bounded_map::BoundedMap;
use super::cards::SealedAka;
use super::model::{CardProfile, RegisteredKey};
use crate::cards::CardMethod;

/// Profiles kept at most; beyond, one is dropped and read again when needed.
const CAPACITY: usize = 65_536;

#[derive(Debug)]
pub struct ProfileCache {
    profiles: BoundedMap<String, CardProfile>,
    keys: BoundedMap<String, RegisteredKey>,
    /// Key id (SHA-256 of the SPKI) -> the active card that owns it, and
    /// when that was read. A key never moves to another card, but the card
    /// may be blocked: the entry is trusted for [`OWNER_FRESHNESS`] only.
    owners: BoundedMap<[u8; 32], (String, Instant)>,
    /// (card, method it was asked for) -> its sealed K/OPc.
    credentials: BoundedMap<(String, CardMethod), SealedAka>,
}

/// How long "this key's card is active" is believed without reading the
/// ledger again: a `card block` reaches authentication within this; a
/// payment reads the status in its own transaction whatever this says.
pub const OWNER_FRESHNESS: Duration = Duration::from_secs(1);

impl Default for ProfileCache {
    fn default() -> Self {
        Self {
            profiles: BoundedMap::new(CAPACITY),
            keys: BoundedMap::new(CAPACITY),
            owners: BoundedMap::new(CAPACITY),
            credentials: BoundedMap::new(CAPACITY),
        }
    }
}

impl ProfileCache {
    pub fn get(&self, card_id: &str) -> Option<CardProfile> {
        self.profiles.lock().get(card_id).copied()
    }

    pub fn insert(&self, card_id: &str, profile: CardProfile) {
        self.profiles.insert(card_id.to_owned(), profile);
    }

    pub fn key(&self, card_id: &str) -> Option<RegisteredKey> {
        self.keys.lock().get(card_id).cloned()
    }

    pub fn insert_key(&self, card_id: &str, key: RegisteredKey) {
        self.keys.insert(card_id.to_owned(), key);
    }

    pub fn credential(&self, card_id: &str, method: CardMethod) -> Option<SealedAka> {
        self.credentials.lock().get(&(card_id.to_owned(), method)).cloned()
    }

    pub fn insert_credential(&self, card_id: &str, method: CardMethod, sealed: SealedAka) {
        self.credentials.insert((card_id.to_owned(), method), sealed);
    }

    /// The active card owning the key with this id, if read recently.
    pub fn owner(&self, key_id: &[u8; 32]) -> Option<String> {
        match self.owners.lock().get(key_id) {
            Some((card_id, read)) if read.elapsed() < OWNER_FRESHNESS => Some(card_id.clone()),
            _ => None,
        }
    }

    pub fn insert_owner(&self, key_id: [u8; 32], card_id: &str) {
        self.owners.insert(key_id, (card_id.to_owned(), Instant::now()));
    }

    /// Forgets that `card_id` is active (this process blocked it; another
    /// process's block reaches authentication within [`OWNER_FRESHNESS`]).
    pub fn forget_owner(&self, card_id: &str) {
        self.owners.lock().retain(|_, (owner, _)| owner != card_id);
    }
}
