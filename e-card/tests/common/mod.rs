//! A terminal and an issuer in a few lines, to drive the card side of a
//! card link in tests: the terminal follows the card link contract, the
//! issuer is eap-methods' AKA server with a Milenage card store in memory.
#![allow(dead_code)]

use aaa_proto::card_link::CardLink;
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};
use e_card::card_file::{AkaCard, CardFile, VERSION};
use eap_methods::crypto::milenage::Milenage;
use eap_methods::method::{Answer, Query, Verdict};
use eap_methods::packet::{Code, EapType, Packet};
use eap_methods::server::{ServerSession, Step};
use eap_methods::sim_aka::server::{SimAkaServer, SimAkaServerConfig};
use eap_methods::sim_aka::auc::{generate_vector, sqn_from_auts, DEFAULT_AMF};
use eap_methods::sim_aka::sqn::Sqn;
use eap_methods::sim_aka::Flavor;

pub const K: [u8; 16] =
    [0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc];
pub const OPC: [u8; 16] =
    [0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf];
pub const REALM: &str = "issuer.example";

/// A card file as `eapay-server card issue` writes it.
pub fn card_file(method: &str) -> CardFile {
    let prefix = if method == "aka" { '0' } else { '6' };
    CardFile {
        version: VERSION,
        card_id: "c0ffee".into(),
        method: method.into(),
        identity: format!("{prefix}c0ffee@{REALM}"),
        realm: REALM.into(),
        aka: Some(AkaCard::new(hex(&K), hex(&OPC))),
        tls: None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn details(transaction_id: &str, amount: u64) -> PaymentDetails {
    PaymentDetails {
        transaction_id: transaction_id.into(),
        merchant_id: "M-DEMO".into(),
        amount,
        currency: 840,
        installments: 0,
        terminal_nonce: [7; 16],
        terminal_time_ms: 1_700_000_000_000,
    }
}

/// The issuer's side of the card: K/OPc and SQN_HE.
pub struct Issuer {
    milenage: Milenage,
    pub sqn: Sqn,
    pub vectors: u32,
}

impl Issuer {
    pub fn new() -> Self {
        Self { milenage: Milenage::new(&K, &OPC), sqn: Sqn::new(0), vectors: 0 }
    }

    fn answer(&mut self, q: Query) -> Answer {
        if let Query::AkaResync { rand, auts, .. } = &q {
            match sqn_from_auts(&self.milenage, rand, auts) {
                Some(ms) => self.sqn = self.sqn.resynchronised(ms),
                None => return Answer::ResyncRejected,
            }
        }
        self.sqn = self.sqn.next();
        self.vectors += 1;
        let rand = [self.vectors as u8; 16];
        Answer::AkaVector(generate_vector(&self.milenage, self.sqn, DEFAULT_AMF, rand))
    }
}

/// What the issuer decides, once the card is authenticated.
#[derive(Clone)]
pub enum Decision {
    Approve(&'static str),
    Decline(u32),
}

/// What the terminal says it displays.
#[derive(Clone)]
pub enum Display {
    /// What the issuer decided.
    Truth,
    /// Something else.
    Lie(PaymentResult),
    /// Nothing (closes the link instead).
    Nothing,
}

/// One run of the terminal.
#[derive(Clone)]
pub struct Plan {
    /// `None`: auth-only.
    pub details: Option<PaymentDetails>,
    pub flavor: Flavor,
    pub decision: Decision,
    pub display: Display,
    /// Stop (return) after relaying this many requests and their responses.
    pub hang_up_after: Option<usize>,
}

impl Plan {
    pub fn pay(details: PaymentDetails) -> Self {
        Self {
            details: Some(details),
            flavor: Flavor::Aka,
            decision: Decision::Approve("ABC123"),
            display: Display::Truth,
            hang_up_after: None,
        }
    }
}

/// What the terminal saw.
#[derive(Debug, Default)]
pub struct Saw {
    pub consent: Option<bool>,
    /// The EAP requests relayed to the card.
    pub requests: Vec<Vec<u8>>,
    /// What the card confirmed inside the method.
    pub confirmation: Option<Vec<u8>>,
    /// Accept (true) or Reject (false), if the conversation ended.
    pub accepted: Option<bool>,
    /// What the issuer decided, as the card should be told it.
    pub result: Option<PaymentResult>,
}

pub fn result_of(details: &PaymentDetails, decision: &Decision) -> PaymentResult {
    let outcome = match decision {
        Decision::Approve(code) => {
            PaymentOutcome::Approved { approval_code: (*code).into(), approved_amount: details.amount }
        }
        Decision::Decline(code) => PaymentOutcome::Declined { code: *code },
    };
    PaymentResult { transaction_id: details.transaction_id.clone(), outcome }
}

pub fn identity_request(id: u8) -> Vec<u8> {
    Packet::new(Code::Request, id, EapType::IDENTITY, Vec::new()).encode().unwrap()
}

/// Plays the terminal (and, behind it, the issuer) for one payment.
pub async fn terminal<L: CardLink>(link: &mut L, issuer: &mut Issuer, plan: &Plan) -> Saw {
    let mut saw = Saw::default();
    if let Some(d) = &plan.details {
        link.send(Frame::Payment(PaymentFrame::Details(d.canonical()))).await.unwrap();
        let Frame::Payment(PaymentFrame::Consent(yes)) = link.recv().await.unwrap() else { panic!("no consent") };
        saw.consent = Some(yes);
        if !yes {
            return saw;
        }
        assert_eq!(link.recv().await.unwrap(), Frame::Start);
    }
    link.send(Frame::Eap(identity_request(1))).await.unwrap();
    let Frame::Eap(first) = link.recv().await.unwrap() else { panic!("no identity") };
    let mut server = ServerSession::new(2);
    let mut step = server.handle(&first);
    loop {
        step = match step {
            Step::NeedMethods { identity } => {
                let method = SimAkaServer::new(SimAkaServerConfig::new(plan.flavor.clone()), &identity);
                server.offer_methods(vec![Box::new(method)])
            }
            Step::Query(q) => server.answer(issuer.answer(q)),
            Step::Authenticated(a) => {
                saw.confirmation = a.confirmation.clone();
                let verdict = match &plan.details {
                    None => Verdict::accept(),
                    Some(d) => {
                        let result = result_of(d, &plan.decision);
                        let approved = matches!(plan.decision, Decision::Approve(_));
                        saw.result = Some(result.clone());
                        Verdict { approved, result: Some(result.encode()) }
                    }
                };
                server.conclude(verdict)
            }
            Step::Send(request) => {
                saw.requests.push(request.clone());
                link.send(Frame::Eap(request)).await.unwrap();
                let response = match link.recv().await.unwrap() {
                    Frame::Eap(response) => response,
                    other => panic!("card sent {other:?} mid-conversation"),
                };
                if plan.hang_up_after == Some(saw.requests.len()) {
                    return saw;
                }
                server.handle(&response)
            }
            Step::Accept { packet, .. } => {
                link.send(Frame::Eap(packet)).await.unwrap();
                saw.accepted = Some(true);
                break;
            }
            Step::Reject { packet, .. } => {
                link.send(Frame::Eap(packet)).await.unwrap();
                saw.accepted = Some(false);
                break;
            }
            Step::Discard(why) => panic!("server discarded: {why}"),
        }
    }
    if plan.details.is_some() {
        let shown = match &plan.display {
            Display::Truth => saw.result.clone(),
            Display::Lie(r) => Some(r.clone()),
            Display::Nothing => None,
        };
        if let Some(shown) = shown {
            link.send(Frame::Payment(PaymentFrame::Shown(shown.encode()))).await.unwrap();
        }
    }
    saw
}
