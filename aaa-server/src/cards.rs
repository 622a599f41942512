//! The issuer's card store: which cards exist, their method and credentials.
//!
//! [`CardStore`] is what the EAP path needs from storage; the AuC functions
//! (vector generation, resynchronisation) run here so K and OPc never leave
//! the store. [`FileCardStore`] keeps the cards in one JSON file in the data
//! directory, rewritten atomically (and fsynced) on every change, with K/OPc
//! sealed under the KEK. The payment ledger (SQLite/PostgreSQL) implements
//! the same trait and replaces it as the default.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use eap_methods::crypto::milenage::Milenage;
use eap_methods::sim_aka::auc::{generate_vector, sqn_from_auts};
use eap_methods::sim_aka::sqn::Sqn;
use eap_methods::Answer;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::seal::Kek;

/// The EAP method a card is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CardMethod {
    Aka,
    AkaPrime,
    Sim,
    Tls,
    Ttls,
}

impl CardMethod {
    /// The name used on the command line, in files and in `Eapay-Auth-Method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aka => "aka",
            Self::AkaPrime => "aka-prime",
            Self::Sim => "sim",
            Self::Tls => "tls",
            Self::Ttls => "ttls",
        }
    }

    /// The NAI prefix digit of a permanent identity, for the SIM/AKA family.
    pub fn identity_prefix(self) -> Option<char> {
        match self {
            Self::Aka => Some('0'),
            Self::Sim => Some('1'),
            Self::AkaPrime => Some('6'),
            Self::Tls | Self::Ttls => None,
        }
    }
}

/// Whether a card must confirm the payment inside the protected channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Confirmation {
    /// Our own cards: no confirmation, no approval.
    Required,
    /// Standard peers (eapol_test): decided on the terminal's assertion.
    Optional,
}

/// Active or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardStatus {
    Active,
    Blocked,
}

/// One card as the issuer stores it. K and OPc are sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardRecord {
    pub card_id: String,
    pub method: CardMethod,
    pub status: CardStatus,
    pub confirmation: Confirmation,
    /// Credit limit in minor units, if any.
    pub limit: Option<u64>,
    /// ISO 4217 numeric currency of the card account.
    pub currency: Option<u16>,
    /// Unix seconds.
    pub issued_at: u64,
    /// AKA family: sealed K and OPc, AMF (hex) and SQN_HE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aka: Option<AkaCredential>,
}

/// The AKA credential at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AkaCredential {
    pub sealed_k: String,
    pub sealed_opc: String,
    pub amf: String,
    pub sqn_he: u64,
}

/// What the EAP path needs from the issuer's storage.
pub trait CardStore: Send + Sync + 'static {
    /// The method of an active card, `None` if unknown or blocked.
    fn method_of(&self, card_id: &str) -> impl Future<Output = Result<Option<CardMethod>, ServerError>> + Send;

    /// A fresh vector for an active AKA/AKA' card of `method`; the new SQN
    /// is durable before the vector is returned.
    fn aka_vector(&self, card_id: &str, method: CardMethod) -> impl Future<Output = Result<Answer, ServerError>> + Send;

    /// Resynchronises from AUTS (TS 33.102 §6.3.5), then a fresh vector.
    fn aka_resync(
        &self,
        card_id: &str,
        method: CardMethod,
        rand: [u8; 16],
        auts: [u8; 14],
    ) -> impl Future<Output = Result<Answer, ServerError>> + Send;
}

/// Cards in `<data_dir>/cards.json`.
///
/// The admin commands and the running server are separate processes that
/// both change the file (new cards; SQN updates), so every operation takes
/// an advisory lock on `cards.json.lock` and re-reads the file under it: no
/// process ever writes back a stale copy.
#[derive(Debug)]
pub struct FileCardStore {
    path: PathBuf,
    lock_path: PathBuf,
    kek: Kek,
    /// Serialises this process's own operations.
    local: Mutex<()>,
}

/// File name of the card store in the data directory.
pub const CARDS_FILE: &str = "cards.json";

type Cards = BTreeMap<String, CardRecord>;

impl FileCardStore {
    /// Opens the store in `data_dir` (created empty on first write).
    pub fn open(data_dir: &Path, kek: Kek) -> Result<Self, ServerError> {
        let path = data_dir.join(CARDS_FILE);
        let lock_path = data_dir.join(format!("{CARDS_FILE}.lock"));
        let store = Self { path, lock_path, kek, local: Mutex::new(()) };
        store.with_cards(false, |_| Ok(((), false)))?;
        Ok(store)
    }

    /// The key-encryption key, for sealing new cards.
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    /// Adds a card; fails if the id exists.
    pub fn insert(&self, card: CardRecord) -> Result<(), ServerError> {
        self.with_cards(true, |cards| {
            if cards.contains_key(&card.card_id) {
                return Err(ServerError::Store(format!("card {} already exists", card.card_id)));
            }
            cards.insert(card.card_id.clone(), card);
            Ok(((), true))
        })
    }

    /// All cards, ordered by id.
    pub fn list(&self) -> Result<Vec<CardRecord>, ServerError> {
        self.with_cards(false, |cards| Ok((cards.values().cloned().collect(), false)))
    }

    /// Runs `f` on the current cards under the file lock (exclusive if
    /// `write`); persists them if `f` reports a change.
    fn with_cards<T>(&self, write: bool, f: impl FnOnce(&mut Cards) -> Result<(T, bool), ServerError>) -> Result<T, ServerError> {
        let _local = self.local.lock().map_err(|_| ServerError::Store("card store lock poisoned".into()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| ServerError::io(&self.lock_path, e))?;
        if write { lock.lock() } else { lock.lock_shared() }.map_err(|e| ServerError::io(&self.lock_path, e))?;
        let mut cards = self.read()?;
        let (out, changed) = f(&mut cards)?;
        if changed {
            self.persist(&cards)?;
        }
        Ok(out)
    }

    fn read(&self) -> Result<Cards, ServerError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(serde_json::from_slice::<Vec<CardRecord>>(&bytes)
                .map_err(|e| ServerError::Store(format!("{}: {e}", self.path.display())))?
                .into_iter()
                .map(|c| (c.card_id.clone(), c))
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ServerError::io(&self.path, e)),
        }
    }

    fn persist(&self, cards: &Cards) -> Result<(), ServerError> {
        let list: Vec<&CardRecord> = cards.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| ServerError::Store(e.to_string()))?;
        crate::fsutil::write_private(&self.path, &bytes)
    }

    fn milenage(&self, card_id: &str, cred: &AkaCredential) -> Result<(Milenage, [u8; 2]), ServerError> {
        let key = |sealed: &str| -> Result<[u8; 16], ServerError> {
            self.kek
                .open(card_id, sealed)?
                .try_into()
                .map_err(|_| ServerError::Store(format!("card {card_id}: sealed key is not 16 bytes")))
        };
        let amf: [u8; 2] = hex::decode(&cred.amf)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ServerError::Store(format!("card {card_id}: AMF is not 2 hex bytes")))?;
        Ok((Milenage::new(&key(&cred.sealed_k)?, &key(&cred.sealed_opc)?), amf))
    }

    /// Issues the next vector under the lock: SQN_HE advances and is
    /// persisted before the vector leaves, so a crash can never make the
    /// server reuse an SQN.
    fn next_vector(&self, card_id: &str, method: CardMethod, resync: Option<([u8; 16], [u8; 14])>) -> Result<Answer, ServerError> {
        self.with_cards(true, |cards| {
            let Some(card) = cards.get_mut(card_id) else { return Ok((Answer::UnknownCard, false)) };
            if card.status != CardStatus::Active || card.method != method {
                return Ok((Answer::UnknownCard, false));
            }
            let Some(cred) = card.aka.as_mut() else { return Ok((Answer::UnknownCard, false)) };
            let (milenage, amf) = self.milenage(card_id, cred)?;
            let mut sqn = Sqn::new(cred.sqn_he);
            if let Some((rand, auts)) = resync {
                match sqn_from_auts(&milenage, &rand, &auts) {
                    Some(sqn_ms) => sqn = sqn.resynchronised(sqn_ms),
                    None => return Ok((Answer::ResyncRejected, false)),
                }
            }
            let sqn = sqn.next();
            cred.sqn_he = sqn.value();
            Ok((Answer::AkaVector(generate_vector(&milenage, sqn, amf, rand::random())), true))
        })
    }
}

impl CardStore for FileCardStore {
    async fn method_of(&self, card_id: &str) -> Result<Option<CardMethod>, ServerError> {
        self.with_cards(false, |cards| {
            Ok((cards.get(card_id).filter(|c| c.status == CardStatus::Active).map(|c| c.method), false))
        })
    }

    async fn aka_vector(&self, card_id: &str, method: CardMethod) -> Result<Answer, ServerError> {
        self.next_vector(card_id, method, None)
    }

    async fn aka_resync(&self, card_id: &str, method: CardMethod, rand: [u8; 16], auts: [u8; 14]) -> Result<Answer, ServerError> {
        self.next_vector(card_id, method, Some((rand, auts)))
    }
}
