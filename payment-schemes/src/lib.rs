//! The virtual card number paper's Table 2 (Park, Kim, Park: "Virtual Credit
//! Card Number Payment System with Stored Hash Value for Efficient
//! Authentication", KIISC 2015) as attacks that run.
//!
//! The paper compares DVCC, OVCN, 3-D Secure and its own hash-stored V-Card
//! scheme on six properties and argues each cell in prose. Here every scheme
//! is a small model written from the paper's description ([`dvcc`],
//! [`ovcn`], [`three_d_secure`], [`proposed`]), eapay is the real server and
//! card over loopback ([`eapay`]), and every cell is decided by attacks
//! ([`attacks`]) that get the same capabilities against every scheme:
//!
//! - the attacker is the merchant (shop, terminal, MPI or PG: the paper puts
//!   the PG inside the merchant entity): it relays every message between the
//!   holder and the issuer side ([`Terminal`]), keeps a copy, may change what
//!   it sends on, and may later talk to the issuer side alone
//!   ([`Scheme::submit`]);
//! - the database the issuer side verifies payments with leaks
//!   ([`Scheme::issuer_db`]); keys kept apart from it (a holder's PIN, a key
//!   under eapay's key-encryption key) do not;
//! - it knows every scheme's public algorithm and may brute-force the card
//!   number behind one issuer prefix ([`pan::SearchSpace`]).
//!
//! `cargo run -p payment-schemes -- table2` prints the table
//! ([`table`]); SECURITY.md at the repository root explains each cell.

#![forbid(unsafe_code)]

pub mod attacks;
pub mod dvcc;
pub mod eapay;
pub mod ovcn;
pub mod pan;
pub mod proposed;
mod signing;
pub mod table;
pub mod three_d_secure;

use std::fmt;

/// Who sends or receives a message. The paper's traditional flow has three
/// parties; anything else a scheme needs online is additional infrastructure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// The cardholder (the paper's Client), or eapay's card.
    Holder,
    /// The shop with its PG/MPI, or eapay's terminal: the attacker.
    Merchant,
    /// The card issuer (with 3-D Secure's ACS, which the issuer runs).
    Issuer,
    /// OVCN's integrated OTP authentication centre.
    AuthCentre,
    /// 3-D Secure's Visa Directory Server.
    DirectoryServer,
}

impl Party {
    /// The parties of the paper's traditional card payment (its Fig. 2).
    pub fn is_core(self) -> bool {
        matches!(self, Party::Holder | Party::Merchant | Party::Issuer)
    }

    /// Where the merchant's changes go: everything it sends that a verifier
    /// (not the holder) acts on.
    pub fn is_issuer_side(self) -> bool {
        matches!(self, Party::Issuer | Party::AuthCentre | Party::DirectoryServer)
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Party::Holder => "holder",
            Party::Merchant => "merchant",
            Party::Issuer => "issuer",
            Party::AuthCentre => "OTP authentication centre",
            Party::DirectoryServer => "Visa Directory Server",
        };
        f.write_str(name)
    }
}

/// The field every scheme uses for the amount (u64 minor units, big-endian),
/// so that one tampering terminal works against all of them.
pub const AMOUNT: &str = "amount";
/// The field naming what is bought (the paper's ItemInfo; eapay's
/// transaction id): a purchase of something else changes it.
pub const PURCHASE: &str = "purchase";

/// One named field of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: Vec<u8>,
}

/// A message on the wire, as the relaying merchant sees it: named fields in
/// order. eapay's RADIUS packets are shown the same way (one field per
/// attribute), so the attacks never look inside a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: Party,
    pub to: Party,
    /// The paper's (or the protocol's) name for it, e.g. "PAReq".
    pub label: String,
    pub fields: Vec<Field>,
}

/// Why a message does not parse for the party receiving it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{label}: no {field} field")]
    Missing { label: String, field: String },
    #[error("{label}: {field} is malformed")]
    Malformed { label: String, field: String },
}

impl Message {
    pub fn new(from: Party, to: Party, label: &str) -> Message {
        Message { from, to, label: label.to_owned(), fields: Vec::new() }
    }

    /// Appends a field (builder style).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Message {
        self.fields.push(Field { name: name.to_owned(), value: value.as_ref().to_vec() });
        self
    }

    pub fn with_u64(self, name: &str, value: u64) -> Message {
        self.with(name, value.to_be_bytes())
    }

    pub fn get(&self, name: &str) -> Result<&[u8], MessageError> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_slice())
            .ok_or_else(|| MessageError::Missing { label: self.label.clone(), field: name.to_owned() })
    }

    pub fn text(&self, name: &str) -> Result<String, MessageError> {
        String::from_utf8(self.get(name)?.to_vec())
            .map_err(|_| MessageError::Malformed { label: self.label.clone(), field: name.to_owned() })
    }

    pub fn u64(&self, name: &str) -> Result<u64, MessageError> {
        let bytes: [u8; 8] = self
            .get(name)?
            .try_into()
            .map_err(|_| MessageError::Malformed { label: self.label.clone(), field: name.to_owned() })?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Replaces every field called `name`; false when there is none.
    pub fn set(&mut self, name: &str, value: &[u8]) -> bool {
        let mut found = false;
        for f in self.fields.iter_mut().filter(|f| f.name == name) {
            f.value = value.to_vec();
            found = true;
        }
        found
    }

    /// Every byte the message carries, for scanning.
    pub fn bytes(&self) -> Vec<u8> {
        self.fields.iter().flat_map(|f| f.value.iter().copied()).collect()
    }

    /// The fields in a fixed encoding (length-prefixed), e.g. what a party signs.
    pub fn encode_fields(&self, names: &[&str]) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        for name in names {
            let value = self.get(name)?;
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        Ok(out)
    }
}

/// The merchant's hand on the wire: every message that passes through the
/// merchant, in either direction, goes through `relay` before it goes on.
/// Messages the merchant itself signs pass here before its signature (the
/// merchant holds its own keys).
pub trait Terminal {
    fn relay(&mut self, message: &mut Message);
}

/// A merchant that forwards everything unchanged.
pub struct HonestTerminal;

impl Terminal for HonestTerminal {
    fn relay(&mut self, _message: &mut Message) {}
}

/// A purchase the holder agrees to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// What is bought (ItemInfo), unique per purchase.
    pub item: String,
    /// Minor units.
    pub amount: u64,
}

impl Purchase {
    /// A fresh purchase: `tag` plus a random suffix.
    pub fn new(tag: &str, amount: u64) -> Purchase {
        Purchase { item: format!("{tag}-{:08x}", rand::random::<u32>()), amount }
    }
}

/// What the issuer side decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub approved: bool,
    /// The amount approved (what the issuer saw), when approved.
    pub amount: Option<u64>,
    /// Whether the approval charged the card again (eapay answers an
    /// identical repeat with the original approval and charges once).
    pub new_charge: bool,
    /// The decline reason, or the approval reference.
    pub detail: String,
    /// Every party that sent or received a message.
    pub parties: Vec<Party>,
    /// The issuer's reference to this payment, for evidence.
    pub reference: String,
}

impl Outcome {
    /// A model's approval: a new charge of `amount`, kept under `reference`.
    pub fn approved(amount: u64, parties: Vec<Party>, reference: impl Into<String>) -> Outcome {
        Outcome {
            approved: true,
            amount: Some(amount),
            new_charge: true,
            detail: "approved".into(),
            parties,
            reference: reference.into(),
        }
    }

    pub fn declined(detail: impl Into<String>, parties: Vec<Party>) -> Outcome {
        Outcome {
            approved: false,
            amount: None,
            new_charge: false,
            detail: detail.into(),
            parties,
            reference: String::new(),
        }
    }
}

/// What the payee side (issuer or merchant) holds to show a third party that
/// the holder made a payment.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// A signature by a key bound to the holder: anyone with the public key
    /// checks it offline.
    HolderSignature {
        /// SubjectPublicKeyInfo DER.
        public_key: Vec<u8>,
        /// Checks the signature with only public data.
        verifies: bool,
        /// How the key is tied to the holder (not by a CA in any scheme here).
        binding: String,
    },
    /// A MAC under a key the verifier shares with the holder: proves
    /// integrity to the verifier, nothing to a third party (the verifier
    /// could have computed it).
    SharedKeyMac { key: String },
    /// A statement signed by the issuer itself (3-D Secure's PARes).
    IssuerStatement { what: String },
    /// Nothing at all.
    Nothing { why: String },
}

/// What leaks from the issuer side: the raw stored bytes and the records.
#[derive(Debug, Clone, Default)]
pub struct IssuerDb {
    /// What the database holds, e.g. the whole SQLite file.
    pub raw: Vec<u8>,
    /// The records the scheme verifies with, one per card.
    pub records: Vec<Vec<Field>>,
    /// Which database this is.
    pub what: String,
}

impl IssuerDb {
    pub fn field<'a>(record: &'a [Field], name: &str) -> Option<&'a [u8]> {
        record.iter().find(|f| f.name == name).map(|f| f.value.as_slice())
    }
}

/// Secrets the holder must keep: the judge of an attack looks for them in
/// what the attacker got. Never given to an attacker.
#[derive(Debug, Clone)]
pub struct HolderSecrets {
    /// The real card number, 16 ASCII digits.
    pub pan: String,
    /// Anything else that would let the attacker pay again: PIN, password, keys.
    pub reusable: Vec<(String, Vec<u8>)>,
}

/// Where the attacker takes the material it inverts from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// What the merchant relayed.
    Relayed(&'a [Message]),
    /// The leaked issuer-side database.
    Stored(&'a IssuerDb),
}

/// One scheme under attack. Everything an attack may do to a scheme is a
/// method here, so every scheme faces the same attacker.
pub trait Scheme {
    /// The column heading.
    fn name(&self) -> String;
    /// One purchase the holder agrees to, relayed by `terminal`.
    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome;
    /// The merchant alone sends these messages (taken from what it relayed,
    /// possibly changed) to the issuer side, in order, as a new conversation.
    fn submit(&mut self, messages: &[Message]) -> Outcome;
    /// Lets time pass (models have a clock of their own; eapay runs on the
    /// real clock and ignores this).
    fn pass_time(&mut self, ms: u64);
    /// The issuer-side verification database, leaked.
    fn issuer_db(&self) -> IssuerDb;
    /// The scheme's public algorithm run backwards: search `space` for the
    /// card number behind a virtual card number (or hash) found in `source`.
    fn invert(&self, source: Source<'_>, space: &pan::SearchSpace) -> pan::Inversion;
    /// What the payee side holds for a past approved payment.
    fn evidence(&self, outcome: &Outcome) -> Evidence;
    /// For judging only.
    fn holder_secrets(&self) -> HolderSecrets;
}

/// How the models move messages: every message touching the merchant goes
/// through its [`Terminal`], and every party on the way is noted.
pub(crate) struct Wire<'t> {
    terminal: &'t mut dyn Terminal,
    parties: std::collections::BTreeSet<Party>,
}

impl<'t> Wire<'t> {
    pub(crate) fn new(terminal: &'t mut dyn Terminal) -> Wire<'t> {
        Wire { terminal, parties: Default::default() }
    }

    /// A message from or to the merchant, or one the merchant carries for
    /// others (a browser redirect through its page).
    pub(crate) fn via_merchant(&mut self, mut m: Message) -> Message {
        self.note(&m);
        self.parties.insert(Party::Merchant);
        self.terminal.relay(&mut m);
        m
    }

    /// A message between other parties (issuer to OTP centre).
    pub(crate) fn direct(&mut self, m: Message) -> Message {
        self.note(&m);
        m
    }

    fn note(&mut self, m: &Message) {
        self.parties.insert(m.from);
        self.parties.insert(m.to);
    }

    pub(crate) fn parties(&self) -> Vec<Party> {
        self.parties.iter().copied().collect()
    }
}

/// The models' clock: Unix milliseconds, starting mid-month so that "later
/// the same month" is an hour away.
pub(crate) const MODEL_EPOCH_MS: u64 = 1_420_891_200_000; // 2015-01-10 12:00 UTC

/// (year, month) of a Unix time in ms (Howard Hinnant's civil_from_days).
pub(crate) fn year_month(ms: u64) -> (i64, u32) {
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod clock_tests {
    #[test]
    fn the_model_epoch_is_january_2015() {
        assert_eq!(super::year_month(super::MODEL_EPOCH_MS), (2015, 1));
        assert_eq!(super::year_month(super::MODEL_EPOCH_MS + 22 * 86_400_000), (2015, 2));
    }
}
