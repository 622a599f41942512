//! The card file: everything one card knows, written once by the issuer
//! (`eapay-server card issue`) and then owned by the card, which writes it
//! back atomically when its state (the SQN window) changes.
//!
//! It holds the card's secrets in the clear (it *is* the card), so it is
//! created with mode 0600 and never read by the terminal.

#![forbid(unsafe_code)]

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
    /// SIM/AKA family credentials: K and OPc (Milenage for AKA and AKA',
    /// GSM-Milenage for SIM), the SQN state, pseudonym and re-authentication
    /// identity (also the inner method of a TTLS card with inner EAP-AKA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aka: Option<AkaCard>,
    /// TLS family credentials (`tls` and `ttls` cards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsCard>,
}

/// The TLS part of a `tls` or `ttls` card. The key pair was generated at
/// issuance; the issuer registered its public key (V-Card, DESIGN.md §5).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsCard {
    /// The card's private key, PKCS#8 PEM (ECDSA P-256 unless issued otherwise).
    pub key: String,
    /// The card's certificate (PEM), issued by the issuer CA for that key.
    pub certificate: String,
    /// The issuer CA certificate (PEM): what a standard supplicant
    /// validates the server with. The card itself relies on `server_pin`.
    pub ca: String,
    /// SHA-256 of the issuer server certificate's SubjectPublicKeyInfo, 64
    /// hex digits: the card talks to that server key and no other.
    pub server_pin: String,
    /// The card's PAN-token, 64 hex digits: with the public key it gives the
    /// V-Card the issuer stored. Absent for a card issued without a PAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pan_token: Option<String>,
    /// TTLS: the inner method, `pap` (default) or `aka`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
    /// TTLS inner PAP: the PIN the holder verifies with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// A TLS session to resume (hex of the DER session), written back after
    /// each conversation that got a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The subscriber part of a SIM, AKA or AKA' card.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AkaCard {
    /// K, 32 hex digits.
    pub k: String,
    /// OPc, 32 hex digits.
    pub opc: String,
    /// SQN_MS: the highest sequence number accepted (unused by a SIM).
    pub sqn: u64,
    /// The highest SEQ accepted per IND slot (TS 33.102 Annex C); empty
    /// until the card has authenticated once.
    #[serde(default)]
    pub seq_ms: Vec<u64>,
    /// The pseudonym the issuer handed out for the next full
    /// authentication (RFC 4187 §4.1.1.7), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym: Option<String>,
    /// The fast re-authentication identity and its keys, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth: Option<ReauthCard>,
}

/// A fast re-authentication identity a SIM/AKA card holds (RFC 4187 §5).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReauthCard {
    /// The identity, a whole NAI.
    pub identity: String,
    /// AT_COUNTER of the last exchange with these keys.
    pub counter: u16,
    /// The keys (MK, or K_encr ‖ K_aut ‖ K_re for AKA'), hex.
    pub keys: String,
}

impl fmt::Debug for ReauthCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReauthCard").field("counter", &self.counter).finish_non_exhaustive()
    }
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

impl fmt::Debug for TlsCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCard")
            .field("server_pin", &self.server_pin)
            .field("inner", &self.inner)
            .field("session", &self.session.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl AkaCard {
    /// A card as issued: K and OPc (hex), nothing used yet.
    pub fn new(k: String, opc: String) -> Self {
        Self { k, opc, sqn: 0, seq_ms: Vec::new(), pseudonym: None, reauth: None }
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
