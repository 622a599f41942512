//! The attacks, one function each, written against [`Scheme`] only: the same
//! attacker faces every scheme. Each returns a [`Finding`]; a property's
//! cell is broken when any of its attacks succeeded.

use std::collections::HashSet;
use std::fmt;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::pan::{self, Inversion, SearchSpace};
use crate::{Evidence, Message, Party, Purchase, Scheme, Source, Terminal, AMOUNT, PURCHASE};

/// A nonce or time the merchant itself puts in its request (eapay's
/// Eapay-Terminal-Nonce / -Time): an attacker reusing a payment makes them new.
pub const MERCHANT_NONCE: &str = "merchant-nonce";
pub const MERCHANT_TIME: &str = "merchant-time";

/// How long "later" is for a replay: within DVCC's month, beyond any
/// timestamp window.
pub const REPLAY_DELAY_MS: u64 = 60 * 60 * 1000;

/// The six rows of the paper's Table 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Confidentiality,
    Integrity,
    NonRepudiation,
    ReuseResistance,
    OneWayness,
    NoExtraInfrastructure,
}

impl Property {
    pub const ALL: [Property; 6] = [
        Property::Confidentiality,
        Property::Integrity,
        Property::NonRepudiation,
        Property::ReuseResistance,
        Property::OneWayness,
        Property::NoExtraInfrastructure,
    ];

    /// The paper's row heading.
    pub fn title(self) -> &'static str {
        match self {
            Property::Confidentiality => "Confidentiality of credit card information",
            Property::Integrity => "Integrity of transaction information",
            Property::NonRepudiation => "Non-repudiation",
            Property::ReuseResistance => "Reuse resistant (freshness)",
            Property::OneWayness => "Onewayness of virtual card number",
            Property::NoExtraInfrastructure => "No need for additional security infrastructure",
        }
    }
}

/// A cell: holds (O), broken (X), or not applicable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Holds,
    Broken,
    NotApplicable,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mark::Holds => "O",
            Mark::Broken => "X",
            Mark::NotApplicable => "n/a",
        })
    }
}

/// What one attack did to one scheme.
#[derive(Debug, Clone)]
pub struct Finding {
    pub attack: &'static str,
    pub mark: Mark,
    pub detail: String,
}

impl Finding {
    fn new(attack: &'static str, broke: bool, detail: impl Into<String>) -> Finding {
        Finding { attack, mark: if broke { Mark::Broken } else { Mark::Holds }, detail: detail.into() }
    }
}

/// A property of one scheme, with the attacks that decided it.
#[derive(Debug, Clone)]
pub struct Cell {
    pub mark: Mark,
    pub findings: Vec<Finding>,
}

impl Cell {
    fn of(findings: Vec<Finding>) -> Cell {
        let mark = if findings.iter().any(|f| f.mark == Mark::Broken) {
            Mark::Broken
        } else if findings.iter().all(|f| f.mark == Mark::NotApplicable) {
            Mark::NotApplicable
        } else {
            Mark::Holds
        };
        Cell { mark, findings }
    }
}

/// Keeps a copy of everything it relays.
#[derive(Default)]
pub struct Recorder {
    pub seen: Vec<Message>,
}

impl Terminal for Recorder {
    fn relay(&mut self, message: &mut Message) {
        self.seen.push(message.clone());
    }
}

/// Shows the holder the agreed amount and the issuer side another one.
pub struct AmountChanger {
    pub agreed: u64,
    pub asserted: u64,
}

impl Terminal for AmountChanger {
    fn relay(&mut self, message: &mut Message) {
        let amount = if message.to == Party::Holder {
            self.agreed
        } else if message.to.is_issuer_side() {
            self.asserted
        } else {
            // What the holder sends the merchant is the merchant's input.
            return;
        };
        message.set(AMOUNT, &amount.to_be_bytes());
    }
}

/// An honest purchase the attacker watched; None when even that was declined.
fn watched(scheme: &mut dyn Scheme, tag: &str, amount: u64) -> Result<(Purchase, Vec<Message>), Finding> {
    let purchase = Purchase::new(tag, amount);
    let mut recorder = Recorder::default();
    let outcome = scheme.purchase(&purchase, &mut recorder);
    if !outcome.approved {
        return Err(Finding {
            attack: "honest payment",
            mark: Mark::NotApplicable,
            detail: format!("an honest payment was declined: {}", outcome.detail),
        });
    }
    Ok((purchase, recorder.seen))
}

/// A secret is "seen" when it is a whole field (short secrets such as PINs
/// would match digits anywhere), or, from 8 bytes on, any 8-byte piece of it
/// appears anywhere in what was relayed (raw, or as hex text).
fn leaked_in<'m>(secret: &[u8], messages: &'m [Message]) -> Option<&'m Message> {
    messages.iter().find(|m| {
        m.fields.iter().any(|f| {
            if f.value == secret {
                return true;
            }
            secret.len() >= 8
                && secret.chunks(8).filter(|c| c.len() == 8).any(|c| {
                    contains(&f.value, c)
                        || contains(&f.value, hex::encode(c).as_bytes())
                        || contains(&f.value, hex::encode_upper(c).as_bytes())
                })
        })
    })
}

/// The message that carries the card number. The IIN is public routing
/// information that every virtual number repeats; what must not travel is
/// the account number behind it (an 8-digit chunk straddling the IIN matched
/// a DVCC V-Card by chance once in 100 payments).
fn card_number_in<'m>(pan: &str, messages: &'m [Message]) -> Option<&'m Message> {
    leaked_in(pan.as_bytes().get(pan::IIN_LEN..).unwrap_or_default(), messages)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A1, confidentiality: the terminal looks for the card number or a
/// reusable secret in what it relayed, in the clear or behind an unkeyed
/// hash of the card number alone (SHA-1 or SHA-256 of its digits, at any
/// offset), which 10^9 tries undo.
pub fn terminal_learns(scheme: &mut dyn Scheme, space: &SearchSpace) -> Finding {
    const ATTACK: &str = "A1 terminal reads what it relays";
    let (_, seen) = match watched(scheme, "a1", 1250) {
        Ok(w) => w,
        Err(f) => return f,
    };
    let secrets = scheme.holder_secrets();
    if let Some(m) = card_number_in(&secrets.pan, &seen) {
        return Finding::new(ATTACK, true, format!("the card number travels in the {}", m.label));
    }
    let learned: Vec<String> = secrets
        .reusable
        .iter()
        .filter_map(|(name, secret)| leaked_in(secret, &seen).map(|m| format!("the {name} in the {}", m.label)))
        .collect();
    if !learned.is_empty() {
        return Finding::new(ATTACK, true, format!("the terminal learns {}", learned.join(", ")));
    }
    let start = std::time::Instant::now();
    let mut table = HashSet::new();
    let mut tried = 0u64;
    for p in space.pans() {
        table.insert(Sha256::digest(p).to_vec());
        table.insert(Sha1::digest(p).to_vec());
        tried += 1;
    }
    let elapsed = start.elapsed();
    let hashes: Vec<Vec<u8>> = seen
        .iter()
        .flat_map(|m| m.fields.iter())
        .flat_map(|f| [20usize, 32].into_iter().flat_map(move |n| f.value.windows(n).map(<[u8]>::to_vec)))
        .collect();
    if let Some(hit) = hashes.iter().find(|h| table.contains(*h)) {
        let label = seen.iter().find(|m| m.fields.iter().any(|f| contains(&f.value, hit))).map(|m| m.label.clone());
        let inv = Inversion {
            target: format!("H(R-Card) in the {}", label.unwrap_or_default()),
            recovered: Some(secrets.pan.clone()),
            tried,
            elapsed,
            full_work_log2: Some(pan::pans_per_iin_log2()),
            note: String::new(),
        };
        return Finding::new(ATTACK, true, format!("the terminal inverts {}", inv.describe()));
    }
    let bytes: usize = seen.iter().map(|m| m.bytes().len()).sum();
    Finding::new(
        ATTACK,
        false,
        format!(
            "{} messages, {bytes} bytes: no card number, no reusable secret, no unkeyed hash of the PAN",
            seen.len()
        ),
    )
}

/// A3, integrity: the terminal shows the holder the agreed amount and tells
/// the issuer side ten times as much.
pub fn terminal_changes_amount(scheme: &mut dyn Scheme) -> Finding {
    const ATTACK: &str = "A3 terminal changes the amount";
    let agreed = Purchase::new("a3", 1000);
    let mut changer = AmountChanger { agreed: agreed.amount, asserted: agreed.amount * 10 };
    let outcome = scheme.purchase(&agreed, &mut changer);
    let broke = outcome.approved && outcome.amount == Some(changer.asserted);
    let detail = if broke {
        format!("the holder agreed to {}, the issuer approved {}", agreed.amount, changer.asserted)
    } else if outcome.approved {
        format!("approved {:?}, not the changed amount", outcome.amount)
    } else {
        format!("declined: {}", outcome.detail)
    };
    Finding::new(ATTACK, broke, detail)
}

/// A4, non-repudiation: the holder denies an approved payment; what the
/// payee side kept is judged by a third party with public data only.
pub fn holder_denies(scheme: &mut dyn Scheme) -> Finding {
    const ATTACK: &str = "A4 holder denies, a third party judges";
    let purchase = Purchase::new("a4", 900);
    let outcome = scheme.purchase(&purchase, &mut crate::HonestTerminal);
    if !outcome.approved {
        return Finding { attack: ATTACK, mark: Mark::NotApplicable, detail: format!("declined: {}", outcome.detail) };
    }
    match scheme.evidence(&outcome) {
        Evidence::HolderSignature { verifies: true, binding, .. } => {
            Finding::new(ATTACK, false, format!("a holder signature verifies offline; key bound by {binding}"))
        }
        Evidence::HolderSignature { verifies: false, .. } => {
            Finding::new(ATTACK, true, "the kept signature does not verify")
        }
        Evidence::SharedKeyMac { key } => Finding::new(
            ATTACK,
            true,
            format!("only a MAC under {key}: integrity to the verifier, no proof to a third party"),
        ),
        Evidence::IssuerStatement { what } => Finding::new(ATTACK, true, format!("only {what}")),
        Evidence::Nothing { why } => Finding::new(ATTACK, true, why),
    }
}

/// A5, freshness: the merchant sends what it relayed for a past payment to
/// the issuer side again, an hour later.
pub fn merchant_replays(scheme: &mut dyn Scheme) -> Finding {
    const ATTACK: &str = "A5 merchant replays a recorded payment";
    let (_, seen) = match watched(scheme, "a5", 700) {
        Ok(w) => w,
        Err(f) => return f,
    };
    scheme.pass_time(REPLAY_DELAY_MS);
    let to_issuer: Vec<Message> = seen.into_iter().filter(|m| m.to.is_issuer_side()).collect();
    let outcome = scheme.submit(&to_issuer);
    let broke = outcome.approved && outcome.new_charge;
    let detail = if broke {
        format!("charged again without the holder ({} message(s) replayed)", to_issuer.len())
    } else if outcome.approved {
        "answered with the original approval, not charged again".to_owned()
    } else {
        format!("declined: {}", outcome.detail)
    };
    Finding::new(ATTACK, broke, detail)
}

/// A6, reuse: the virtual (or one-time) number and everything else of a past
/// payment, put to another purchase (other item, other amount, new merchant
/// nonce and time).
pub fn leaked_number_reused(scheme: &mut dyn Scheme) -> Finding {
    const ATTACK: &str = "A6 leaked V-Card reused for another purchase";
    let (_, seen) = match watched(scheme, "a6", 800) {
        Ok(w) => w,
        Err(f) => return f,
    };
    let other = Purchase::new("a6-other", 4200);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let reused: Vec<Message> = seen
        .into_iter()
        .filter(|m| m.to.is_issuer_side())
        .map(|mut m| {
            m.set(AMOUNT, &other.amount.to_be_bytes());
            m.set(PURCHASE, other.item.as_bytes());
            m.set(MERCHANT_NONCE, &rand::random::<[u8; 16]>());
            m.set(MERCHANT_TIME, &now_ms.to_be_bytes());
            m
        })
        .collect();
    let outcome = scheme.submit(&reused);
    let broke = outcome.approved && outcome.new_charge;
    let detail = if broke {
        format!("approved {} for a purchase the holder never saw", outcome.amount.unwrap_or_default())
    } else {
        format!("declined: {}", outcome.detail)
    };
    Finding::new(ATTACK, broke, detail)
}

/// A2, the issuer side's database leaks: card numbers in the clear, or
/// stored values the scheme's own algorithm inverts within reach.
pub fn database_leaks(scheme: &mut dyn Scheme, space: &SearchSpace) -> Finding {
    const ATTACK: &str = "A2 issuer database leaks";
    let db = scheme.issuer_db();
    let pan = scheme.holder_secrets().pan;
    if contains(&db.raw, pan.as_bytes()) {
        return Finding::new(ATTACK, true, format!("{} holds the card number in the clear", db.what));
    }
    let inv = scheme.invert(Source::Stored(&db), space);
    if inv.full_work_log2.is_none() {
        return Finding { attack: ATTACK, mark: Mark::NotApplicable, detail: inv.note };
    }
    Finding::new(ATTACK, inv.breaks(&pan), format!("{}: {}", db.what, inv.describe()))
}

/// A7, one-wayness: the virtual card number the terminal relayed (or, where
/// none travels, the stored one) and its public inputs, run backwards over
/// the card numbers of one issuer prefix.
pub fn virtual_number_inverted(scheme: &mut dyn Scheme, space: &SearchSpace) -> Finding {
    const ATTACK: &str = "A7 V-Card inverted";
    let (_, seen) = match watched(scheme, "a7", 600) {
        Ok(w) => w,
        Err(f) => return f,
    };
    let pan = scheme.holder_secrets().pan;
    let mut inv = scheme.invert(Source::Relayed(&seen), space);
    if inv.full_work_log2.is_none() {
        let db = scheme.issuer_db();
        let stored = scheme.invert(Source::Stored(&db), space);
        if stored.full_work_log2.is_some() {
            inv = stored;
        }
    }
    if inv.full_work_log2.is_none() {
        return Finding { attack: ATTACK, mark: Mark::NotApplicable, detail: inv.note };
    }
    Finding::new(ATTACK, inv.breaks(&pan), inv.describe())
}

/// A8, infrastructure: who took part in an honest payment beyond holder,
/// merchant and issuer.
pub fn extra_parties(scheme: &mut dyn Scheme) -> Finding {
    const ATTACK: &str = "A8 parties of an honest payment";
    let outcome = scheme.purchase(&Purchase::new("a8", 500), &mut crate::HonestTerminal);
    let extra: Vec<String> = outcome.parties.iter().filter(|p| !p.is_core()).map(|p| p.to_string()).collect();
    let all: Vec<String> = outcome.parties.iter().map(|p| p.to_string()).collect();
    if extra.is_empty() {
        Finding::new(ATTACK, false, format!("only {}", all.join(", ")))
    } else {
        Finding::new(ATTACK, true, format!("also needs the {}", extra.join(" and the ")))
    }
}

/// Every attack against one scheme: its column of the table.
pub fn column(scheme: &mut dyn Scheme, space: &SearchSpace) -> Vec<(Property, Cell)> {
    Property::ALL
        .into_iter()
        .map(|p| {
            let findings = match p {
                Property::Confidentiality => vec![terminal_learns(scheme, space)],
                Property::Integrity => vec![terminal_changes_amount(scheme)],
                Property::NonRepudiation => vec![holder_denies(scheme)],
                Property::ReuseResistance => vec![merchant_replays(scheme), leaked_number_reused(scheme)],
                Property::OneWayness => {
                    vec![virtual_number_inverted(scheme, space), database_leaks(scheme, space)]
                }
                Property::NoExtraInfrastructure => vec![extra_parties(scheme)],
            };
            let mut cell = Cell::of(findings);
            // A scheme without a virtual number has no such cell (the
            // paper's "not use virtual card number"), whatever its database
            // holds; the note keeps what A2 found.
            if p == Property::OneWayness && cell.findings.first().is_some_and(|f| f.mark == Mark::NotApplicable) {
                cell.mark = Mark::NotApplicable;
            }
            (p, cell)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(v_card: &str) -> Vec<Message> {
        vec![Message::new(Party::Holder, Party::Merchant, "payment").with("v-card", v_card)]
    }

    #[test]
    fn a_virtual_number_sharing_the_iin_and_two_digits_is_not_the_card_number() {
        let pan = "4000001234567897";
        assert!(card_number_in(pan, &relayed("4000001299999995")).is_none());
        assert!(card_number_in(pan, &relayed(pan)).is_some());
        assert!(card_number_in(pan, &relayed(&hex::encode(pan))).is_some());
        assert!(card_number_in(pan, &relayed("pan=4000001234567897;")).is_some());
    }
}
