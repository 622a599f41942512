//! The card file: everything one card knows, written once by the issuer
//! (`eapay-server card issue`) and then owned by the card, which writes it
//! back atomically when its state (the SQN window) changes.
//!
//! It holds the card's secrets in the clear (it *is* the card), so it is
//! created with mode 0600 and never read by the terminal.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a card file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CardFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a card file: {reason}")]
    Format { path: String, reason: String },
}

/// One card.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    /// Format version of this file.
    pub version: u32,
    /// The random card id (not a card number).
    pub card_id: String,
    /// `aka`, `aka-prime`, `sim`, `tls` or `ttls`.
    pub method: String,
    /// The NAI the card presents, e.g. `0<card-id>@issuer.example`.
    pub identity: String,
    /// The issuer realm (AKA' network name).
    pub realm: String,
    /// AKA family credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aka: Option<AkaCard>,
}

/// The USIM part of an AKA/AKA' card.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AkaCard {
    /// K, 32 hex digits.
    pub k: String,
    /// OPc, 32 hex digits.
    pub opc: String,
    /// SQN_MS: the highest sequence number accepted.
    pub sqn: u64,
    /// The highest SEQ accepted per IND slot (TS 33.102 Annex C); empty
    /// until the card has authenticated once.
    #[serde(default)]
    pub seq_ms: Vec<u64>,
}

impl fmt::Debug for CardFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardFile")
            .field("card_id", &self.card_id)
            .field("method", &self.method)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AkaCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AkaCard").field("sqn", &self.sqn).finish_non_exhaustive()
    }
}

/// The current format version.
pub const VERSION: u32 = 1;

impl CardFile {
    /// Reads a card file.
    pub fn load(path: &Path) -> Result<Self, CardFileError> {
        let bytes =
            std::fs::read(path).map_err(|source| CardFileError::Io { path: path.display().to_string(), source })?;
        let card: CardFile = serde_json::from_slice(&bytes)
            .map_err(|e| CardFileError::Format { path: path.display().to_string(), reason: e.to_string() })?;
        if card.version != VERSION {
            return Err(CardFileError::Format {
                path: path.display().to_string(),
                reason: format!("version {} (this build reads {VERSION})", card.version),
            });
        }
        Ok(card)
    }

    /// The JSON text of the file.
    pub fn to_json(&self) -> String {
        // Plain strings and integers always serialise.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
