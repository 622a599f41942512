//! DVCC, Dynamic Virtual Credit Card numbers (Molloy, Li, Li, FC 2007), as
//! the paper's §3.4 and Fig. 3 describe it.
//!
//! The holder and the issuer share R-Card and a PIN. Per payment the holder
//! sets V-Exp to the last day of the month, derives K = SHA1(R-Card, PIN),
//! builds σ = (ClientInfo, V-Exp, ItemInfo) and computes F_K(σ) mod 10^n
//! with HMAC-SHA1. The last 3 digits are the V-CVV; the rest, behind the IIN
//! and followed by a Luhn digit, is the V-Card. The merchant forwards
//! ClientInfo, ItemInfo and the virtual card to the issuer, which recomputes
//! and compares. The amount is part of ItemInfo (the paper's §5.2: the
//! payment information is covered by the HMAC).
//!
//! Nothing in σ changes between two payments of the same item in one month:
//! that is the replay the paper's Table 2 marks.

use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::pan::{self, Inversion, SearchSpace};
use crate::{
    year_month, Evidence, Field, HolderSecrets, IssuerDb, Message, Outcome, Party, Purchase, Scheme, Source, Terminal,
    Wire, AMOUNT, MODEL_EPOCH_MS, PURCHASE,
};

/// n of F_K(σ) mod 10^n: 9 account digits and 3 V-CVV digits, so that IIN +
/// 9 + Luhn is a 16-digit card number.
const N_DIGITS: u32 = 12;

pub struct Dvcc {
    iin: String,
    pan: String,
    pin: String,
    client: String,
    now_ms: u64,
}

/// The virtual card for one σ.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Virtual {
    v_card: String,
    v_cvv: String,
}

impl Dvcc {
    pub fn new() -> Dvcc {
        let iin = "400000".to_owned();
        let pan = pan::random_pan(&iin);
        let pin = format!("{:04}", rand::random::<u16>() % 10_000);
        Dvcc { iin, pan, pin, client: "Hong Gildong, Seoul".to_owned(), now_ms: MODEL_EPOCH_MS }
    }

    fn v_exp(&self) -> String {
        let (y, m) = year_month(self.now_ms);
        format!("{y:04}{m:02}")
    }
}

impl Default for Dvcc {
    fn default() -> Self {
        Dvcc::new()
    }
}

fn sigma(client: &[u8], v_exp: &[u8], item: &[u8], amount: u64) -> Vec<u8> {
    let mut s = Vec::new();
    for part in [client, v_exp, item, &amount.to_be_bytes()] {
        s.extend_from_slice(&(part.len() as u32).to_be_bytes());
        s.extend_from_slice(part);
    }
    s
}

fn virtual_card(iin: &str, pan: &[u8], pin: &[u8], sigma: &[u8]) -> Virtual {
    let k = Sha1::new().chain_update(pan).chain_update(pin).finalize();
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&k) else {
        // HMAC takes keys of any length.
        return Virtual { v_card: String::new(), v_cvv: String::new() };
    };
    mac.update(sigma);
    let f = mac.finalize().into_bytes();
    let mut head = [0u8; 16];
    head.copy_from_slice(&f[..16]);
    let digits = format!("{:012}", u128::from_be_bytes(head) % 10u128.pow(N_DIGITS));
    let (account, cvv) = digits.split_at(9);
    let mut v_card = format!("{iin}{account}");
    v_card.push(char::from(pan::luhn_digit(v_card.as_bytes())));
    Virtual { v_card, v_cvv: cvv.to_owned() }
}

impl Scheme for Dvcc {
    fn name(&self) -> String {
        "DVCC".into()
    }

    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome {
        let mut wire = Wire::new(terminal);
        let v_exp = self.v_exp();
        let s = sigma(self.client.as_bytes(), v_exp.as_bytes(), agreed.item.as_bytes(), agreed.amount);
        let v = virtual_card(&self.iin, self.pan.as_bytes(), self.pin.as_bytes(), &s);
        let payment = Message::new(Party::Holder, Party::Merchant, "payment")
            .with("client", &self.client)
            .with(PURCHASE, &agreed.item)
            .with_u64(AMOUNT, agreed.amount)
            .with("v-card", &v.v_card)
            .with("v-cvv", &v.v_cvv)
            .with("v-exp", &v_exp);
        let received = wire.via_merchant(payment);
        let mut request = received.clone();
        request.from = Party::Merchant;
        request.to = Party::Issuer;
        request.label = "authorization request".into();
        let request = wire.via_merchant(request);
        let mut outcome = self.issuer_decides(&request);
        outcome.parties = wire.parties();
        outcome
    }

    fn submit(&mut self, messages: &[Message]) -> Outcome {
        let last = messages.iter().rev().find(|m| m.to == Party::Issuer);
        match last {
            Some(m) => self.issuer_decides(m),
            None => Outcome::declined("nothing sent to the issuer", vec![Party::Merchant]),
        }
    }

    fn pass_time(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    fn issuer_db(&self) -> IssuerDb {
        // The issuer recomputes the V-Card, so it keeps what the holder has.
        let record = vec![
            Field { name: "client".into(), value: self.client.clone().into_bytes() },
            Field { name: "r-card".into(), value: self.pan.clone().into_bytes() },
            Field { name: "pin".into(), value: self.pin.clone().into_bytes() },
        ];
        let raw = record.iter().flat_map(|f| f.value.iter().copied()).collect();
        IssuerDb { raw, records: vec![record], what: "the issuer's card table (R-Card, PIN, ClientInfo)".into() }
    }

    fn invert(&self, source: Source<'_>, space: &SearchSpace) -> Inversion {
        let Source::Relayed(seen) = source else {
            return Inversion::not_applicable("the issuer stores R-Card itself, not a virtual number");
        };
        let Some(m) = seen.iter().find(|m| m.get("v-card").is_ok()) else {
            return Inversion::not_applicable("no V-Card relayed");
        };
        let fields = (m.get("v-card"), m.get("v-cvv"), m.get("v-exp"), m.get("client"), m.get(PURCHASE), m.u64(AMOUNT));
        let (Ok(v_card), Ok(v_cvv), Ok(v_exp), Ok(client), Ok(item), Ok(amount)) = fields else {
            return Inversion::not_applicable("the relayed payment lacks σ's fields");
        };
        let s = sigma(client, v_exp, item, amount);
        let iin = String::from_utf8_lossy(&v_card[..pan::IIN_LEN.min(v_card.len())]).into_owned();
        let candidates = space.pans().flat_map(|p| space.pins().map(move |q| (p, q)));
        let (hit, tried, elapsed) = pan::search(candidates, |(p, q)| {
            let v = virtual_card(&iin, p, q, &s);
            v.v_card.as_bytes() == v_card && v.v_cvv.as_bytes() == v_cvv
        });
        Inversion {
            target: "V-Card = IIN | F_K(σ) mod 10^12 | Luhn, K = SHA1(R-Card, PIN)".into(),
            recovered: hit.map(|(p, _)| String::from_utf8_lossy(&p).into_owned()),
            tried,
            elapsed,
            // 10^9 account numbers times 10^4 PINs; the 12 digits of F
            // (about 2^40) single out the pair after a second transaction.
            full_work_log2: Some(pan::pans_per_iin_log2() + 1e4f64.log2()),
            note: "the PIN adds only 10^4".into(),
        }
    }

    fn evidence(&self, _outcome: &Outcome) -> Evidence {
        Evidence::SharedKeyMac { key: "K = SHA1(R-Card, PIN), which the issuer also computes".into() }
    }

    fn holder_secrets(&self) -> HolderSecrets {
        HolderSecrets { pan: self.pan.clone(), reusable: vec![("PIN".into(), self.pin.clone().into_bytes())] }
    }
}

impl Dvcc {
    fn issuer_decides(&self, request: &Message) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer];
        let read = (request.get("client"), request.get(PURCHASE), request.u64(AMOUNT), request.get("v-exp"));
        let (Ok(client), Ok(item), Ok(amount), Ok(v_exp)) = read else {
            return Outcome::declined("malformed request", parties);
        };
        // V-Exp is the end of a month: anything up to then is accepted.
        if v_exp < self.v_exp().as_bytes() {
            return Outcome::declined("virtual card expired", parties);
        }
        let s = sigma(client, v_exp, item, amount);
        let expected = virtual_card(&self.iin, self.pan.as_bytes(), self.pin.as_bytes(), &s);
        if request.get("v-card").ok() != Some(expected.v_card.as_bytes())
            || request.get("v-cvv").ok() != Some(expected.v_cvv.as_bytes())
        {
            return Outcome::declined("V-Card or V-CVV does not match", parties);
        }
        Outcome::approved(amount, parties, expected.v_card)
    }
}
