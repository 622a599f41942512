//! The ledger's vocabulary: what the request path hands in (attempts,
//! settlements), what it gets back (decisions), and what the admin commands
//! list (cards, merchants, authorizations, audit lines).

use std::fmt;

use aaa_proto::dictionary::eapay;
use aaa_proto::payment::PaymentDetails;

use crate::cards::{CardMethod, Confirmation};

/// One payment attempt as the EAP layer saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// RADIUS client name: the permission check and the audit actor.
    pub client: String,
    pub details: PaymentDetails,
    /// The authenticated card; None if authentication failed before a card was known.
    pub card_id: Option<String>,
    /// Eapay-Auth-Method value ("aka", "aka-prime", ...).
    pub method: &'static str,
    pub confirmation: eapay::CardConfirmation,
    /// What the card sent as its confirmation, kept as evidence.
    pub evidence: Option<Evidence>,
    /// Decided by the EAP layer: 63 authentication failed, 59 mismatch or
    /// missing required confirmation, 14 unknown card.
    pub pre_declined: Option<Decline>,
    /// Server clock, Unix ms.
    pub now_ms: u64,
}

/// The card's confirmation as stored: AKA "aka-mac" (the MAC-covered
/// canonical bytes), TLS/TTLS later a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence").field("kind", &self.kind).field("len", &self.bytes.len()).finish()
    }
}

/// A decline code with the reason shown to the merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub code: eapay::DeclineCode,
    pub reason: String,
}

impl Decline {
    pub fn new(code: eapay::DeclineCode, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// Approved (with the signed receipt; empty if the ledger has no signing key) or declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved { approval_code: String, approved_amount: u64, receipt: Vec<u8> },
    Declined(Decline),
}

/// The answer to an [`Attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// None when nothing was recorded (not permitted, 94, tombstone).
    pub authorization_id: Option<i64>,
    pub outcome: Outcome,
    pub confirmation: eapay::CardConfirmation,
    /// The answer is about an earlier identical request (no new charge).
    pub repeated: bool,
}

/// Capture, reversal or refund of one transaction.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub client: String,
    pub merchant_id: String,
    pub transaction_id: String,
    pub action: eapay::SettlementAction,
    /// If given, must equal the authorized amount (no partial settlement).
    pub amount: Option<u64>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementOutcome {
    Done(AuthorizationStatus),
    AlreadyDone(AuthorizationStatus),
    /// A reversal arrived before its authorization: a tombstone now declines the late original.
    Tombstoned,
    Refused(Decline),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationStatus {
    Approved,
    Declined,
    Captured,
    Reversed,
    Refunded,
}

impl AuthorizationStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Captured => "captured",
            Self::Reversed => "reversed",
            Self::Refunded => "refunded",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Approved, Self::Declined, Self::Captured, Self::Reversed, Self::Refunded]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// Decision policy, from `[payment]` in eapay.toml.
#[derive(Debug, Clone)]
pub struct PaymentPolicy {
    /// Terminal time must be within ± this of the server clock.
    pub time_window_ms: u64,
    /// Approvals per card per velocity window; 0 = unlimited.
    pub velocity_max: u32,
    pub velocity_window_ms: u64,
    /// Largest single amount, minor units.
    pub max_amount: u64,
    pub max_installments: u32,
}

impl Default for PaymentPolicy {
    fn default() -> Self {
        Self {
            time_window_ms: 300_000,
            velocity_max: 30,
            velocity_window_ms: 60_000,
            max_amount: 1_000_000_000_000,
            max_installments: 99,
        }
    }
}

/// Active or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStatus {
    Active,
    Blocked,
}

impl CardStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Blocked => "blocked",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Active, Self::Blocked].into_iter().find(|s| s.name() == name)
    }
}

/// A card to issue. The PAN itself never reaches the ledger: only its
/// PAN-token ([`crate::seal::Kek::pan_token`]). Debug shows no secret.
#[derive(Clone)]
pub struct NewCard {
    pub card_id: String,
    pub method: CardMethod,
    pub confirmation: Confirmation,
    /// ISO 4217 numeric.
    pub currency: u16,
    /// Minor units; the available balance starts here.
    pub credit_limit: u64,
    /// Unix seconds; the card is expired once the clock is past it.
    pub expires_at: u64,
    pub pan_token: Option<[u8; 32]>,
    /// TLS/TTLS cards: the card's public key, DER SubjectPublicKeyInfo. The
    /// ledger stores it with its SHA-256 (one key, one card) and
    /// V-Card = SHA-256(SPKI || PAN-token) (DESIGN.md §5); such a card needs a PAN-token.
    pub card_key: Option<Vec<u8>>,
    /// AKA family credential; for a TTLS card, that of its inner EAP-AKA.
    pub aka: Option<NewAkaCredential>,
    pub pin: Option<String>,
}

/// The public key a TLS/TTLS card was issued with ([`super::Ledger::card_key`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// SHA-256(SPKI || PAN-token).
    pub v_card: Option<[u8; 32]>,
}

impl fmt::Debug for RegisteredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredKey")
            .field("spki", &hex::encode(&self.spki))
            .field("v_card", &self.v_card.map(hex::encode))
            .finish()
    }
}

/// An AKA family credential in the clear, sealed by the ledger on issuance.
#[derive(Clone)]
pub struct NewAkaCredential {
    pub k: [u8; 16],
    pub opc: [u8; 16],
    pub amf: [u8; 2],
    pub sqn_he: u64,
}

impl fmt::Debug for NewAkaCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAkaCredential").field("amf", &self.amf).field("sqn_he", &self.sqn_he).finish_non_exhaustive()
    }
}

/// A card as the admin commands list it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    pub card_id: String,
    pub method: CardMethod,
    pub status: CardStatus,
    pub confirmation: Confirmation,
    pub currency: u16,
    pub credit_limit: u64,
    pub available: u64,
    pub expires_at: u64,
    pub issued_at: u64,
    pub has_pan_token: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantSummary {
    pub merchant_id: String,
    pub name: String,
    pub active: bool,
    /// RADIUS client names allowed to act for the merchant, sorted.
    pub clients: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// Which authorizations to list, newest first.
#[derive(Debug, Clone)]
pub struct TxnFilter {
    pub merchant_id: Option<String>,
    pub card_id: Option<String>,
    /// At most this many; 0 = all.
    pub limit: u32,
}

impl Default for TxnFilter {
    fn default() -> Self {
        Self { merchant_id: None, card_id: None, limit: 50 }
    }
}

/// One authorization, by ledger id or by the merchant's transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnKey {
    Id(i64),
    Merchant { merchant_id: String, transaction_id: String },
}

/// One row of `authorizations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    pub id: i64,
    pub merchant_id: String,
    pub transaction_id: String,
    pub card_id: Option<String>,
    pub amount: u64,
    pub currency: u32,
    pub installments: u32,
    pub terminal_nonce: Vec<u8>,
    pub terminal_time_ms: u64,
    /// The canonical payment details (DESIGN.md §3).
    pub details: Vec<u8>,
    pub status: AuthorizationStatus,
    pub approval_code: Option<String>,
    pub decline_code: Option<u32>,
    pub decline_reason: Option<String>,
    pub method: String,
    pub confirmation: eapay::CardConfirmation,
    pub evidence_kind: Option<String>,
    pub evidence: Option<Vec<u8>>,
    pub receipt: Option<Vec<u8>>,
    /// A reversal that arrived before any authorization.
    pub tombstone: bool,
    pub client: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: u64,
    pub actor: String,
    pub event: String,
    pub authorization_id: Option<i64>,
    pub card_id: Option<String>,
    pub merchant_id: Option<String>,
    pub transaction_id: Option<String>,
    pub detail: String,
}

/// The whole ledger at one moment ([`super::SqlLedger::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// By card id.
    pub cards: Vec<CardSummary>,
    /// Oldest first.
    pub authorizations: Vec<AuthorizationRecord>,
    /// Oldest first.
    pub audit: Vec<AuditEntry>,
}

/// The issuer row: realm and the public half of the receipt signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerInfo {
    pub realm: String,
    pub public_key_pem: Vec<u8>,
    pub key_id: [u8; 8],
    /// Unix seconds.
    pub created_at: u64,
}

/// Options of [`super::SqlLedger::open`].
pub struct LedgerOptions {
    pub policy: PaymentPolicy,
    /// Signs receipts; without it approvals carry no receipt.
    pub signer: Option<aaa_proto::receipt::IssuerSigningKey>,
    /// Most commands per group commit.
    pub batch_max: usize,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self { policy: PaymentPolicy::default(), signer: None, batch_max: 256 }
    }
}

impl fmt::Debug for LedgerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerOptions")
            .field("policy", &self.policy)
            .field("signer", &self.signer.is_some())
            .field("batch_max", &self.batch_max)
            .finish()
    }
}

/// Text forms of the card enums as stored.
pub(crate) fn method_from_name(name: &str) -> Option<CardMethod> {
    [CardMethod::Aka, CardMethod::AkaPrime, CardMethod::Sim, CardMethod::Tls, CardMethod::Ttls]
        .into_iter()
        .find(|m| m.name() == name)
}

pub(crate) fn confirmation_name(c: Confirmation) -> &'static str {
    c.name()
}

pub(crate) fn confirmation_from_name(name: &str) -> Option<Confirmation> {
    [Confirmation::Required, Confirmation::Optional].into_iter().find(|c| c.name() == name)
}

/// What the EAP layer needs to know about a card before and after
/// authentication: which method to run, whether it must confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardProfile {
    pub method: CardMethod,
    pub confirmation: Confirmation,
}

impl std::fmt::Debug for NewCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCard")
            .field("card_id", &self.card_id)
            .field("method", &self.method)
            .field("confirmation", &self.confirmation)
            .field("currency", &self.currency)
            .field("credit_limit", &self.credit_limit)
            .field("expires_at", &self.expires_at)
            .field("pan_token", &self.pan_token.map(|_| "<hidden>"))
            .field("card_key", &self.card_key.as_ref().map(hex::encode))
            .field("aka", &self.aka)
            .field("pin", &self.pin.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}
