//! OVCN, One-time Virtual Credit card Numbers through the integrated OTP
//! authentication centre (Seo, KIISC 2010), as the paper's §3.5, Fig. 4 and
//! Fig. 5 describe it.
//!
//! The holder's device holds MK (shared with the centre), the VCC code, the
//! user code and a counter C synchronized with the centre. Per payment:
//! K = H(MK, PIN), C' = C + 1, σ = (ClientInfo, TS_C, C', H(R-Card, R-Exp),
//! ItemInfo), OVCN = HMAC-SHA256(K, σ) mod 10^6, and the 16-digit number is
//! VCC code (3) | user code (7) | OVCN (6). The issuer sees the VCC code,
//! forwards to the centre, which fetches MK, PIN, H(R-Card, R-Exp) and C from
//! its database by the user code, recomputes within a timestamp window and
//! a counter look-ahead, and moves C on.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::pan::{self, Inversion, SearchSpace};
use crate::{
    Evidence, Field, HolderSecrets, IssuerDb, Message, Outcome, Party, Purchase, Scheme, Source, Terminal, Wire,
    AMOUNT, MODEL_EPOCH_MS, PURCHASE,
};

/// Accepted clock difference between TS_C and the centre.
const TS_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Counter values the centre tries beyond its own (HOTP-style look-ahead).
const LOOK_AHEAD: u64 = 10;
/// "4" brand digit and "99": a virtual number (Fig. 4).
const VCC_CODE: &str = "499";
/// Expiry months an attacker tries for H(R-Card, R-Exp): cards run five years.
const EXPIRY_MONTHS: f64 = 60.0;

pub struct Ovcn {
    pan: String,
    r_exp: String,
    pin: String,
    mk: [u8; 16],
    user_code: String,
    client: String,
    holder_counter: u64,
    centre_counter: u64,
    now_ms: u64,
}

impl Ovcn {
    pub fn new() -> Ovcn {
        Ovcn {
            pan: pan::random_pan("400000"),
            r_exp: "1912".into(),
            pin: format!("{:04}", rand::random::<u16>() % 10_000),
            mk: rand::random(),
            user_code: format!("{:07}", rand::random::<u32>() % 10_000_000),
            client: "Hong Gildong, Seoul".into(),
            holder_counter: 0,
            centre_counter: 0,
            now_ms: MODEL_EPOCH_MS,
        }
    }

    fn card_hash(&self) -> [u8; 32] {
        card_hash(self.pan.as_bytes(), self.r_exp.as_bytes())
    }
}

impl Default for Ovcn {
    fn default() -> Self {
        Ovcn::new()
    }
}

fn card_hash(pan: &[u8], exp: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(pan).chain_update(exp).finalize().into()
}

/// The payment information σ the OVCN module MACs.
struct Sigma<'a> {
    client: &'a [u8],
    ts: u64,
    counter: u64,
    card: &'a [u8; 32],
    item: &'a [u8],
    amount: u64,
}

fn ovcn(mk: &[u8], pin: &[u8], sigma: &Sigma<'_>) -> String {
    let k = Sha256::new().chain_update(mk).chain_update(pin).finalize();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&k) else { return String::new() };
    let Sigma { client, ts, counter, card, item, amount } = *sigma;
    for part in [client, &ts.to_be_bytes(), &counter.to_be_bytes(), card, item, &amount.to_be_bytes()] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    let f = mac.finalize().into_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&f[..8]);
    format!("{:06}", u64::from_be_bytes(head) % 1_000_000)
}

impl Scheme for Ovcn {
    fn name(&self) -> String {
        "OVCN".into()
    }

    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome {
        let mut wire = Wire::new(terminal);
        self.holder_counter += 1;
        let ts = self.now_ms;
        let card = self.card_hash();
        let sigma = Sigma {
            client: self.client.as_bytes(),
            ts,
            counter: self.holder_counter,
            card: &card,
            item: agreed.item.as_bytes(),
            amount: agreed.amount,
        };
        let value = ovcn(&self.mk, self.pin.as_bytes(), &sigma);
        let v_card = format!("{VCC_CODE}{}{value}", self.user_code);
        // Typed into the issuer's payment pop-up, which the merchant's page hosts.
        let payment = Message::new(Party::Holder, Party::Merchant, "payment")
            .with("client", &self.client)
            .with(PURCHASE, &agreed.item)
            .with_u64(AMOUNT, agreed.amount)
            .with("v-card", &v_card)
            .with_u64("ts-c", ts);
        let received = wire.via_merchant(payment);
        let mut request = received;
        request.from = Party::Merchant;
        request.to = Party::Issuer;
        request.label = "authorization request".into();
        let request = wire.via_merchant(request);
        let mut outcome = self.issuer_decides(&request, &mut wire);
        outcome.parties = wire.parties();
        outcome
    }

    fn submit(&mut self, messages: &[Message]) -> Outcome {
        let mut terminal = crate::HonestTerminal;
        let mut wire = Wire::new(&mut terminal);
        let Some(m) = messages.iter().rev().find(|m| m.to == Party::Issuer) else {
            return Outcome::declined("nothing sent to the issuer", vec![Party::Merchant]);
        };
        self.issuer_decides(m, &mut wire)
    }

    fn pass_time(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    fn issuer_db(&self) -> IssuerDb {
        // What the centre fetches by user code (§3.5).
        let record = vec![
            Field { name: "user-code".into(), value: self.user_code.clone().into_bytes() },
            Field { name: "mk".into(), value: self.mk.to_vec() },
            Field { name: "pin".into(), value: self.pin.clone().into_bytes() },
            Field { name: "h(r-card, r-exp)".into(), value: self.card_hash().to_vec() },
            Field { name: "c".into(), value: self.centre_counter.to_be_bytes().to_vec() },
        ];
        let raw = record.iter().flat_map(|f| f.value.iter().copied()).collect();
        IssuerDb { raw, records: vec![record], what: "the OTP centre's database (MK, PIN, H(R-Card, R-Exp), C)".into() }
    }

    fn invert(&self, source: Source<'_>, space: &SearchSpace) -> Inversion {
        match source {
            Source::Relayed(_) => Inversion::needs_key("OVCN = HMAC-SHA256(H(MK, PIN), σ) mod 10^6", "MK", 128),
            Source::Stored(db) => {
                let Some(stored) = db.records.first().and_then(|r| IssuerDb::field(r, "h(r-card, r-exp)")) else {
                    return Inversion::not_applicable("no stored card hash");
                };
                // The restricted search knows the expiry year; the full one tries five years of months.
                let months: Vec<String> = (1..=12).map(|m| format!("19{m:02}")).collect();
                let candidates = space.pans().flat_map(|p| months.iter().map(move |e| (p, e.clone())));
                let (hit, tried, elapsed) =
                    pan::search(candidates, |(p, e)| card_hash(p, e.as_bytes()).as_slice() == stored);
                Inversion {
                    target: "stored H(R-Card, R-Exp)".into(),
                    recovered: hit.map(|(p, _)| String::from_utf8_lossy(&p).into_owned()),
                    tried,
                    elapsed,
                    full_work_log2: Some(pan::pans_per_iin_log2() + EXPIRY_MONTHS.log2()),
                    note: "unkeyed: 10^9 account numbers times 60 expiry months".into(),
                }
            }
        }
    }

    fn evidence(&self, _outcome: &Outcome) -> Evidence {
        Evidence::SharedKeyMac { key: "K = H(MK, PIN), which the OTP centre also computes".into() }
    }

    fn holder_secrets(&self) -> HolderSecrets {
        HolderSecrets {
            pan: self.pan.clone(),
            reusable: vec![("PIN".into(), self.pin.clone().into_bytes()), ("MK".into(), self.mk.to_vec())],
        }
    }
}

impl Ovcn {
    fn issuer_decides(&mut self, request: &Message, wire: &mut Wire<'_>) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer, Party::AuthCentre];
        let Ok(v_card) = request.text("v-card") else { return Outcome::declined("no card number", parties) };
        if !v_card.starts_with(VCC_CODE) || v_card.len() != 16 || !v_card.bytes().all(|b| b.is_ascii_digit()) {
            return Outcome::declined("not a virtual card number", parties);
        }
        // The VCC code sends the issuer to the centre, with the item information.
        let check = wire.direct(Message {
            from: Party::Issuer,
            to: Party::AuthCentre,
            label: "verification request".into(),
            fields: request.fields.clone(),
        });
        let verdict = self.centre_verifies(&check);
        wire.direct(Message::new(Party::AuthCentre, Party::Issuer, "verification result"));
        match verdict {
            Ok((amount, counter)) => {
                self.centre_counter = counter;
                Outcome::approved(amount, parties, v_card)
            }
            Err(why) => Outcome::declined(why, parties),
        }
    }

    fn centre_verifies(&self, m: &Message) -> Result<(u64, u64), &'static str> {
        let (Ok(v_card), Ok(client), Ok(item), Ok(amount), Ok(ts)) =
            (m.text("v-card"), m.get("client"), m.get(PURCHASE), m.u64(AMOUNT), m.u64("ts-c"))
        else {
            return Err("malformed verification request");
        };
        if v_card.len() != 16 || !v_card.is_ascii() || v_card[3..10] != self.user_code {
            return Err("unknown user code");
        }
        if self.now_ms.abs_diff(ts) > TS_WINDOW_MS {
            return Err("timestamp outside the window");
        }
        let card = self.card_hash();
        (self.centre_counter + 1..=self.centre_counter + LOOK_AHEAD)
            .find(|&counter| {
                let sigma = Sigma { client, ts, counter, card: &card, item, amount };
                ovcn(&self.mk, self.pin.as_bytes(), &sigma) == v_card[10..]
            })
            .map(|c| (amount, c))
            .ok_or("OVCN does not match any expected counter")
    }
}
