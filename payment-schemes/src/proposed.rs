//! The paper's own scheme (§4, Fig. 7): a hash-stored virtual card number.
//!
//! At issuance the holder makes a key pair and gives PK_C to the issuer,
//! which stores V-Card = H(PK_C, H(R-Card)) under the holder's ClientInfo.
//! Per payment: (2) the merchant sends ItemInfo and its timestamp TS_M;
//! (3) the holder builds σ = (TS_M, ClientInfo, ItemInfo, IIN) and signs it
//! with SK_C; (4) it sends σ, SIG(SK_C, σ) and H(R-Card) (and PK_C, which the
//! PG needs to check the signature); (5) the PG, part of the merchant,
//! checks TS_M and the signature, computes V-Card = H(PK_C, H(R-Card)) and
//! (6) asks the issuer named by the IIN with ClientInfo, ItemInfo and V-Card;
//! (7) the issuer compares V-Card with the stored one; (8) accept or deny.
//!
//! H is SHA-256 over the PAN's ASCII digits, and over SPKI DER || H(R-Card)
//! for the V-Card (the paper names no hash; eapay's V-Card is the same shape).
//! The paper assumes a trusted merchant: the freshness and signature checks
//! of step (5) run at the merchant, and the issuer sees neither.

use sha2::{Digest, Sha256};

use crate::pan::{self, Inversion, SearchSpace};
use crate::signing::{self, KeyPair};
use crate::{
    Evidence, Field, HolderSecrets, IssuerDb, Message, Outcome, Party, Purchase, Scheme, Source, Terminal, Wire,
    AMOUNT, MODEL_EPOCH_MS, PURCHASE,
};

/// What the holder signs: σ.
const SIGMA: &[&str] = &["ts-m", "client", PURCHASE, AMOUNT, "iin"];
/// How old a TS_M the PG accepts.
const TS_WINDOW_MS: u64 = 5 * 60 * 1000;

pub struct Proposed {
    iin: String,
    pan: String,
    client: String,
    key: KeyPair,
    /// The issuer's table: ClientInfo -> V-Card (and PK_C, registered at issuance).
    stored_v_card: [u8; 32],
    now_ms: u64,
    /// What the merchant keeps of each payment it checked (σ, SIG, PK_C, H(R-Card)).
    merchant_records: Vec<Message>,
}

/// H(R-Card).
fn card_hash(pan: &[u8]) -> [u8; 32] {
    Sha256::digest(pan).into()
}

/// V-Card = H(PK_C, H(R-Card)).
fn v_card(spki: &[u8], card_hash: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(spki).chain_update(card_hash).finalize().into()
}

impl Proposed {
    pub fn new() -> Result<Proposed, openssl::error::ErrorStack> {
        let iin = "400000".to_owned();
        let pan = pan::random_pan(&iin);
        let key = KeyPair::generate()?;
        let stored_v_card = v_card(key.spki(), &card_hash(pan.as_bytes()));
        Ok(Proposed {
            iin,
            pan,
            client: "Hong Gildong, Seoul".into(),
            key,
            stored_v_card,
            now_ms: MODEL_EPOCH_MS,
            merchant_records: Vec::new(),
        })
    }
}

impl Scheme for Proposed {
    fn name(&self) -> String {
        "Proposed".into()
    }

    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome {
        let mut wire = Wire::new(terminal);
        // (2)
        let request = wire.via_merchant(
            Message::new(Party::Merchant, Party::Holder, "payment request")
                .with(PURCHASE, &agreed.item)
                .with_u64(AMOUNT, agreed.amount)
                .with_u64("ts-m", self.now_ms),
        );
        if request.u64(AMOUNT).ok() != Some(agreed.amount) {
            return Outcome::declined("the holder saw another amount and cancelled", wire.parties());
        }
        // (3), (4)
        let mut payment = Message::new(Party::Holder, Party::Merchant, "payment")
            .with("ts-m", request.get("ts-m").unwrap_or_default())
            .with("client", &self.client)
            .with(PURCHASE, &agreed.item)
            .with_u64(AMOUNT, agreed.amount)
            .with("iin", &self.iin);
        let signature = payment.encode_fields(SIGMA).map(|s| self.key.sign(&s)).unwrap_or_default();
        payment = payment
            .with("sig", signature)
            .with("h(r-card)", card_hash(self.pan.as_bytes()))
            .with("pk-c", self.key.spki());
        let payment = wire.via_merchant(payment);
        // (5) at the PG, which is the merchant's.
        let v = match self.pg_checks(&payment) {
            Ok(v) => v,
            Err(why) => return Outcome::declined(why, wire.parties()),
        };
        self.merchant_records.push(payment.clone());
        // (6)
        let authorization = wire.via_merchant(
            Message::new(Party::Merchant, Party::Issuer, "authorization request")
                .with("client", payment.get("client").unwrap_or_default())
                .with(PURCHASE, payment.get(PURCHASE).unwrap_or_default())
                .with_u64(AMOUNT, payment.u64(AMOUNT).unwrap_or_default())
                .with("v-card", v),
        );
        // (7), (8)
        let mut outcome = self.issuer_decides(&authorization);
        outcome.parties = wire.parties();
        outcome
    }

    fn submit(&mut self, messages: &[Message]) -> Outcome {
        match messages.iter().rev().find(|m| m.to == Party::Issuer) {
            Some(m) => self.issuer_decides(m),
            None => Outcome::declined("nothing sent to the issuer", vec![Party::Merchant]),
        }
    }

    fn pass_time(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    fn issuer_db(&self) -> IssuerDb {
        let record = vec![
            Field { name: "client".into(), value: self.client.clone().into_bytes() },
            Field { name: "pk-c".into(), value: self.key.spki().to_vec() },
            Field { name: "v-card".into(), value: self.stored_v_card.to_vec() },
        ];
        let raw = record.iter().flat_map(|f| f.value.iter().copied()).collect();
        IssuerDb { raw, records: vec![record], what: "the issuer's V-Card table (ClientInfo, PK_C, V-Card)".into() }
    }

    fn invert(&self, source: Source<'_>, space: &SearchSpace) -> Inversion {
        // Either H(R-Card) itself, or V-Card with the PK_C beside it.
        let (target, pk, wanted) = match source {
            Source::Relayed(seen) => {
                let Some(m) = seen.iter().find(|m| m.get("v-card").is_ok()) else {
                    return Inversion::not_applicable("no V-Card relayed");
                };
                // The PG made the V-Card from the PK_C it relayed.
                let Some(pk) = seen.iter().find_map(|m| m.get("pk-c").ok()) else {
                    return Inversion::not_applicable("no PK_C relayed");
                };
                ("relayed V-Card = H(PK_C, H(R-Card))", pk.to_vec(), m.get("v-card").unwrap_or_default().to_vec())
            }
            Source::Stored(db) => {
                let Some(r) = db.records.first() else { return Inversion::not_applicable("empty database") };
                let (Some(pk), Some(v)) = (IssuerDb::field(r, "pk-c"), IssuerDb::field(r, "v-card")) else {
                    return Inversion::not_applicable("no V-Card stored");
                };
                ("stored V-Card = H(PK_C, H(R-Card))", pk.to_vec(), v.to_vec())
            }
        };
        let (hit, tried, elapsed) = pan::search(space.pans(), |p| v_card(&pk, &card_hash(p)).as_slice() == wanted);
        Inversion {
            target: target.into(),
            recovered: hit.map(|p| String::from_utf8_lossy(&p).into_owned()),
            tried,
            elapsed,
            full_work_log2: Some(pan::pans_per_iin_log2()),
            note: "PK_C is public and H is unkeyed: only the 10^9 account numbers are unknown".into(),
        }
    }

    fn evidence(&self, outcome: &Outcome) -> Evidence {
        // The merchant keeps σ, SIG, PK_C and H(R-Card); the issuer's stored
        // V-Card ties PK_C to the card.
        let Some(record) =
            self.merchant_records.iter().find(|m| m.get(PURCHASE).ok() == Some(outcome.reference.as_bytes()))
        else {
            return Evidence::Nothing { why: "the merchant kept no signed σ for this payment".into() };
        };
        let (Ok(sigma), Ok(sig), Ok(pk), Ok(h)) =
            (record.encode_fields(SIGMA), record.get("sig"), record.get("pk-c"), record.get("h(r-card)"))
        else {
            return Evidence::Nothing { why: "incomplete record".into() };
        };
        let bound = v_card(pk, h) == self.stored_v_card;
        Evidence::HolderSignature {
            public_key: pk.to_vec(),
            verifies: signing::verify(pk, &sigma, sig) && bound,
            binding: "H(PK_C, H(R-Card)) equals the V-Card the issuer registered at issuance (no CA)".into(),
        }
    }

    fn holder_secrets(&self) -> HolderSecrets {
        HolderSecrets { pan: self.pan.clone(), reusable: vec![("SK_C".into(), self.key.private_scalar())] }
    }
}

impl Proposed {
    /// Step (5): freshness and signature, at the merchant's PG.
    fn pg_checks(&self, payment: &Message) -> Result<[u8; 32], &'static str> {
        let ts = payment.u64("ts-m").map_err(|_| "no TS_M")?;
        if self.now_ms.saturating_sub(ts) > TS_WINDOW_MS {
            return Err("stale TS_M");
        }
        let sigma = payment.encode_fields(SIGMA).map_err(|_| "incomplete σ")?;
        let (Ok(sig), Ok(pk), Ok(h)) = (payment.get("sig"), payment.get("pk-c"), payment.get("h(r-card)")) else {
            return Err("incomplete payment");
        };
        if !signing::verify(pk, &sigma, sig) {
            return Err("signature does not verify");
        }
        Ok(v_card(pk, h))
    }

    /// Steps (7), (8): the issuer sees ClientInfo, ItemInfo and V-Card only.
    fn issuer_decides(&self, m: &Message) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer];
        let (Ok(client), Ok(amount), Ok(v), Ok(item)) =
            (m.text("client"), m.u64(AMOUNT), m.get("v-card"), m.text(PURCHASE))
        else {
            return Outcome::declined("malformed request", parties);
        };
        if client != self.client || v != self.stored_v_card {
            return Outcome::declined("V-Card does not match", parties);
        }
        Outcome::approved(amount, parties, item)
    }
}
