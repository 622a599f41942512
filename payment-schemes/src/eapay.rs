//! eapay's columns: not a model. A real `eapay-server` (spawned by the
//! end-to-end harness, `eapay-tests`) and the real card (e-card's EAP peer)
//! pay over loopback RADIUS; the attacker is the terminal between them, which
//! holds the RADIUS secret and therefore can read, change and re-sign every
//! Access-Request, and start conversations of its own.
//!
//! Each RADIUS packet is shown to the [`Terminal`] as a [`Message`] with one
//! field per attribute (`radius-<type>`, the Eapay VSAs by their shared
//! names: Eapay-Amount is [`AMOUNT`], Eapay-Transaction-Id is [`PURCHASE`],
//! Eapay-Terminal-Nonce/-Time are the merchant's nonce and time), so the
//! attacks that run against the models run unchanged here.
//!
//! The leaked database is the server's SQLite ledger (`ledger.db` and its
//! WAL), read from disk while the server runs; the key-encryption key is not
//! part of it. Non-repudiation is judged twice: `eapay-server txn verify`,
//! and an independent check of the stored signature against the card's
//! registered key with eap-methods' verifier, from the ledger row alone.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use aaa_proto::dictionary::{eapay as dict, rfc};
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{encode_request, Attribute, Code, Packet};
use eap_methods::peer::PeerEvent;
use eapay_tests::{Card, Method, Server};
use sha2::{Digest, Sha256};

use crate::attacks::{MERCHANT_NONCE, MERCHANT_TIME};
use crate::pan::{self, Inversion, SearchSpace};
use crate::{
    Evidence, Field, HolderSecrets, IssuerDb, Message, Outcome, Party, Purchase, Scheme, Source, Terminal, AMOUNT,
    PURCHASE,
};

/// The issuer prefix of the PANs eapay's cards are issued with here.
const IIN: &str = "400000";
/// Rounds after which a conversation is abandoned.
const MAX_ROUNDS: usize = 64;

/// One eapay column: a card of one method on a shared server.
pub struct Eapay {
    server: Rc<Server>,
    card: Card,
    pan: String,
}

/// Starts the server every eapay column shares.
pub fn start_server() -> Rc<Server> {
    Rc::new(Server::start_default())
}

impl Eapay {
    /// Issues a card of `method` (confirmation required, our card) for a
    /// random PAN under [`IIN`].
    pub fn new(server: Rc<Server>, method: Method) -> Eapay {
        let pan = pan::random_pan(IIN);
        // A TTLS card with inner PAP has a PIN (its inner password), entered on the card.
        let pin = format!("{:04}", rand::random::<u16>() % 10_000);
        let mut args = vec!["--pan", pan.as_str()];
        if method == Method::Ttls {
            args.extend(["--pin", pin.as_str()]);
        }
        let card = server.card_with(method, &args);
        Eapay { server, card, pan }
    }

    fn available(&self) -> u64 {
        self.server.card_amounts(&self.card).1
    }

    fn ledger(&self) -> PathBuf {
        self.server.data_dir.join("ledger.db")
    }

    fn open_ledger(&self) -> Option<rusqlite::Connection> {
        rusqlite::Connection::open_with_flags(self.ledger(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
    }
}

/// The shared field name of an Eapay vendor type, if the attacks use it.
fn eapay_name(vendor_type: u8) -> String {
    match vendor_type {
        dict::TRANSACTION_ID => PURCHASE.to_owned(),
        dict::AMOUNT => AMOUNT.to_owned(),
        dict::TERMINAL_NONCE => MERCHANT_NONCE.to_owned(),
        dict::TERMINAL_TIME => MERCHANT_TIME.to_owned(),
        t => format!("eapay-{t}"),
    }
}

fn eapay_type(name: &str) -> Option<u8> {
    match name {
        PURCHASE => Some(dict::TRANSACTION_ID),
        AMOUNT => Some(dict::AMOUNT),
        MERCHANT_NONCE => Some(dict::TERMINAL_NONCE),
        MERCHANT_TIME => Some(dict::TERMINAL_TIME),
        n => n.strip_prefix("eapay-").and_then(|t| t.parse().ok()),
    }
}

/// A RADIUS packet as the terminal sees it.
fn to_message(packet: &Packet, from: Party, to: Party) -> Message {
    let mut m = Message::new(from, to, &format!("{:?}", packet.code));
    for a in &packet.attributes {
        let vendor = a.value.get(..4).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        match (a.kind, vendor, a.value.get(4), a.value.get(6..)) {
            (rfc::VENDOR_SPECIFIC, Some(dict::VENDOR_ID), Some(&t), Some(data)) => {
                m.fields.push(Field { name: eapay_name(t), value: data.to_vec() })
            }
            _ => m.fields.push(Field { name: format!("radius-{}", a.kind), value: a.value.clone() }),
        }
    }
    m
}

/// The attributes of a (possibly changed) message, in order.
fn to_attributes(m: &Message) -> Vec<Attribute> {
    m.fields
        .iter()
        .filter_map(|f| {
            if let Some(kind) = f.name.strip_prefix("radius-").and_then(|k| k.parse().ok()) {
                return Some(Attribute { kind, value: f.value.clone() });
            }
            eapay_type(&f.name).map(|t| eapay_tests::eapay_vsa(t, &f.value))
        })
        .collect()
}

/// EAP-Message fields joined (RFC 3579 splits EAP over several).
fn eap_of(m: &Message) -> Vec<u8> {
    let name = format!("radius-{}", rfc::EAP_MESSAGE);
    m.fields.iter().filter(|f| f.name == name).flat_map(|f| f.value.iter().copied()).collect()
}

/// One Access-Request out, its verified answer back: `tries` sends, each
/// waiting `wait` (a server discards what it cannot take into a conversation,
/// so silence is an answer too).
fn exchange(
    server: &Server,
    socket: &UdpSocket,
    identifier: u8,
    attributes: Vec<Attribute>,
    tries: usize,
    wait: Duration,
) -> Option<Packet> {
    let mut p = Packet::new_request(Code::AccessRequest, identifier);
    p.attributes = attributes;
    let wire = encode_request(&p, server.secret.as_bytes()).ok()?;
    for _ in 0..tries {
        socket.send_to(&wire, server.auth).ok()?;
        let deadline = std::time::Instant::now() + wait;
        while let Some((reply, _)) =
            eapay_tests::recv_within(socket, deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if reply.get(1) == Some(&identifier) {
                return Some(eapay_tests::verify_reply(&reply, Code::AccessRequest, &p.authenticator, &server.secret));
            }
        }
    }
    None
}

fn state_of(m: &Message) -> Option<Vec<u8>> {
    let name = format!("radius-{}", rfc::STATE);
    m.fields.iter().find(|f| f.name == name).map(|f| f.value.clone())
}

fn with_state(mut attributes: Vec<Attribute>, state: Option<&[u8]>) -> Vec<Attribute> {
    attributes.retain(|a| a.kind != rfc::STATE);
    if let Some(s) = state {
        attributes.push(Attribute { kind: rfc::STATE, value: s.to_vec() });
    }
    attributes
}

impl Scheme for Eapay {
    fn name(&self) -> String {
        let method = match self.card.method {
            Method::AkaPrime => "AKA'".to_owned(),
            m => m.arg().to_uppercase(),
        };
        format!("eapay {method}")
    }

    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome {
        let parties = vec![Party::Holder, Party::Merchant, Party::Issuer];
        let details = PaymentDetails {
            transaction_id: agreed.item.clone(),
            merchant_id: eapay_tests::MERCHANT.to_owned(),
            amount: agreed.amount,
            currency: eapay_tests::USD,
            installments: 0,
            terminal_nonce: rand::random(),
            terminal_time_ms: eapay_tests::now_ms(),
        };
        let before = self.available();
        // The holder agreed to `details`: the card confirms exactly those.
        let Ok(mut peer) = e_card::peer::session(&self.card.file(), Some(details.canonical())) else {
            return Outcome::declined("the card file drives no peer", parties);
        };
        let socket = eapay_tests::udp_socket("127.0.0.1:0");
        let mut eap = peer.identity_response(0);
        let mut state: Option<Vec<u8>> = None;
        let mut identifier: u8 = rand::random();
        for _ in 0..MAX_ROUNDS {
            let mut p = eapay_tests::eap_access_request_packet(identifier, &self.card.identity, &eap, state.as_deref());
            p.attributes.extend(eapay_tests::payment_attributes(&details));
            let mut request = to_message(&p, Party::Merchant, Party::Issuer);
            terminal.relay(&mut request);
            let attributes = to_attributes(&request);
            let Some(reply) = exchange(&self.server, &socket, identifier, attributes, 2, eapay_tests::REPLY_TIMEOUT)
            else {
                return Outcome::declined("no answer from the server", parties);
            };
            identifier = identifier.wrapping_add(1);
            let mut answer = to_message(&reply, Party::Issuer, Party::Holder);
            terminal.relay(&mut answer);
            let to_card = eap_of(&answer);
            match reply.code {
                Code::AccessChallenge => {
                    state = state_of(&answer);
                    eap = match peer.handle(&to_card) {
                        PeerEvent::Send(response) => response,
                        other => return Outcome::declined(format!("the card stopped: {other:?}"), parties),
                    };
                }
                Code::AccessAccept | Code::AccessReject => {
                    let card_accepts = matches!(peer.handle(&to_card), PeerEvent::Success { .. });
                    return self.outcome(&reply, card_accepts, before, &agreed.item, parties);
                }
                _ => return Outcome::declined("unexpected answer", parties),
            }
        }
        Outcome::declined("no final answer", parties)
    }

    fn submit(&mut self, messages: &[Message]) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer];
        let before = self.available();
        let socket = eapay_tests::udp_socket("127.0.0.1:0");
        let mut identifier: u8 = rand::random();
        let mut state: Option<Vec<u8>> = None;
        let mut eap_id: Option<u8> = None;
        // The recorded requests in order; only the envelope is the
        // terminal's own: RADIUS identifier and authenticator, the State of
        // this new conversation, and the EAP identifier of the server's new
        // request (outside any EAP method's protection, so the recorded
        // responses reach the method instead of being discarded as stale).
        for m in messages.iter().filter(|m| m.to == Party::Issuer) {
            let mut attributes = with_state(to_attributes(m), state.as_deref());
            if let (Some(id), Some(eap)) = (eap_id, attributes.iter_mut().find(|a| a.kind == rfc::EAP_MESSAGE)) {
                if let Some(slot) = eap.value.get_mut(1) {
                    *slot = id;
                }
            }
            let Some(reply) = exchange(&self.server, &socket, identifier, attributes, 1, eapay_tests::NO_REPLY_WAIT)
            else {
                return Outcome::declined("the server discarded the replayed request (no answer)", parties);
            };
            identifier = identifier.wrapping_add(1);
            match reply.code {
                Code::AccessChallenge => {
                    state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                    eap_id = reply.eap_message().and_then(|e| e.get(1).copied());
                }
                _ => {
                    let item = m.text(PURCHASE).unwrap_or_default();
                    return self.outcome(&reply, true, before, &item, parties);
                }
            }
        }
        Outcome::declined("the server kept asking: the recorded answers ran out", parties)
    }

    fn pass_time(&mut self, _ms: u64) {
        // The real clock: eapay's freshness does not wait for time to pass
        // (fresh EAP challenges, nonce and transaction id records).
    }

    fn issuer_db(&self) -> IssuerDb {
        let mut raw = Vec::new();
        for suffix in ["", "-wal"] {
            let mut path = self.ledger().into_os_string();
            path.push(suffix);
            raw.extend(std::fs::read(PathBuf::from(path)).unwrap_or_default());
        }
        let mut records = Vec::new();
        if let Some(db) = self.open_ledger() {
            let row = db.query_row(
                "SELECT card_id, pan_token, v_card, card_key FROM cards WHERE card_id = ?1",
                [&self.card.card_id],
                |r| {
                    Ok([
                        ("card-id", r.get::<_, Option<String>>(0)?.map(String::into_bytes)),
                        ("pan-token", r.get::<_, Option<Vec<u8>>>(1)?),
                        ("v-card", r.get::<_, Option<Vec<u8>>>(2)?),
                        ("card-key", r.get::<_, Option<Vec<u8>>>(3)?),
                    ])
                },
            );
            if let Ok(fields) = row {
                records.push(
                    fields
                        .into_iter()
                        .filter_map(|(name, v)| v.map(|value| Field { name: name.into(), value }))
                        .collect(),
                );
            }
        }
        IssuerDb { raw, records, what: "the eapay ledger (ledger.db and its WAL)".into() }
    }

    fn invert(&self, source: Source<'_>, space: &SearchSpace) -> Inversion {
        let Source::Stored(db) = source else {
            return Inversion::not_applicable(
                "no virtual card number travels: the PAN-token stays inside the card's tunnel",
            );
        };
        let Some(record) = db.records.first() else {
            return Inversion::not_applicable("the card is not in the ledger");
        };
        let token = IssuerDb::field(record, "pan-token");
        let v_card = IssuerDb::field(record, "v-card");
        let spki = IssuerDb::field(record, "card-key").unwrap_or_default();
        let target = if v_card.is_some() {
            "stored V-Card = SHA-256(SPKI || PAN-token), PAN-token = HMAC-SHA-256(issuer key, PAN)"
        } else {
            "stored PAN-token = HMAC-SHA-256(issuer key, PAN)"
        };
        if token.is_none() && v_card.is_none() {
            return Inversion::not_applicable("nothing derived from the PAN is stored");
        }
        // The paper's brute force as it would apply if the hash were
        // unkeyed: every form the attacker can compute without the key.
        let (hit, tried, elapsed) = pan::search(space.pans(), |p| {
            let h: [u8; 32] = Sha256::digest(p).into();
            token == Some(&h[..])
                || v_card.is_some_and(|v| {
                    let paper: [u8; 32] = Sha256::new().chain_update(spki).chain_update(h).finalize().into();
                    let direct: [u8; 32] = Sha256::new().chain_update(spki).chain_update(p).finalize().into();
                    v == paper || v == direct
                })
        });
        let recovered = hit.map(|p| String::from_utf8_lossy(&p).into_owned());
        Inversion {
            target: target.into(),
            full_work_log2: Some(if recovered.is_some() { pan::pans_per_iin_log2() } else { 256.0 }),
            recovered,
            tried,
            elapsed,
            note: "the paper's unkeyed forms match none of the candidates; inverting needs the issuer's PAN key, \
                   derived from the key-encryption key, which the ledger does not hold"
                .into(),
        }
    }

    fn evidence(&self, outcome: &Outcome) -> Evidence {
        let Some(db) = self.open_ledger() else { return Evidence::Nothing { why: "no ledger".into() } };
        let row = db.query_row(
            "SELECT a.evidence_kind, a.evidence, a.details, c.card_key FROM authorizations a \
             JOIN cards c ON c.card_id = a.card_id WHERE a.merchant_id = ?1 AND a.transaction_id = ?2",
            [eapay_tests::MERCHANT, outcome.reference.as_str()],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            },
        );
        let Ok((kind, evidence, details, spki)) = row else {
            return Evidence::Nothing { why: format!("no ledger row for {}", outcome.reference) };
        };
        match (kind.as_deref(), evidence, spki) {
            (Some("signature"), Some(evidence), Some(spki)) => {
                use eap_methods::tls::confirmation;
                let offline = confirmation::split_evidence(&evidence)
                    .is_some_and(|(exporter, signature)| confirmation::verify(&spki, &details, &exporter, signature));
                let id = format!("{}:{}", eapay_tests::MERCHANT, outcome.reference);
                let command = self.server.try_admin(&["txn", "verify", &id]);
                Evidence::HolderSignature {
                    public_key: spki,
                    verifies: offline && command.success(),
                    binding: "the card key registered at issuance with V-Card = SHA-256(SPKI || PAN-token) (no CA); \
                              `eapay-server txn verify` agrees"
                        .into(),
                }
            }
            (Some("mac"), _, _) => Evidence::SharedKeyMac {
                key: format!(
                    "K_aut of EAP-{}, which the issuer derives from the card's K",
                    self.card.method.arg().to_uppercase()
                ),
            },
            (kind, _, _) => Evidence::Nothing { why: format!("evidence kind {kind:?}") },
        }
    }

    fn holder_secrets(&self) -> HolderSecrets {
        let card = self.card.file();
        let mut reusable = Vec::new();
        if let Some(aka) = &card.aka {
            for (name, text) in [("K", &aka.k), ("OPc", &aka.opc)] {
                reusable.push((name.to_owned(), hex::decode(text).unwrap_or_default()));
            }
        }
        if let Some(tls) = &card.tls {
            if let Ok(key) = openssl::pkey::PKey::private_key_from_pem(tls.key.as_bytes()) {
                if let Ok(ec) = key.ec_key() {
                    reusable.push(("card key".into(), ec.private_key().to_vec()));
                }
            }
            if let Some(token) = &tls.pan_token {
                reusable.push(("PAN-token".into(), hex::decode(token).unwrap_or_default()));
            }
            if let Some(pin) = &tls.pin {
                reusable.push(("PIN".into(), pin.clone().into_bytes()));
            }
        }
        HolderSecrets { pan: self.pan.clone(), reusable }
    }
}

impl Eapay {
    /// The decision in a final answer; a charge is new when the card's
    /// available amount went down.
    fn outcome(&self, reply: &Packet, card_accepts: bool, before: u64, item: &str, parties: Vec<Party>) -> Outcome {
        let answer = eapay_tests::PaymentReply::of(reply);
        if reply.code != Code::AccessAccept || !card_accepts {
            let why = format!(
                "{} {}",
                answer.decline_code.map(|c| c.to_string()).unwrap_or_default(),
                answer.decline_reason.unwrap_or_else(|| format!("{:?}", reply.code))
            );
            return Outcome::declined(why.trim().to_owned(), parties);
        }
        // The ledger commits before the answer leaves; give `card list` a moment anyway.
        let mut after = self.available();
        if after == before {
            std::thread::sleep(Duration::from_millis(50));
            after = self.available();
        }
        Outcome {
            approved: true,
            amount: answer.approved_amount,
            new_charge: after < before,
            detail: format!("approval code {}", answer.approval_code.unwrap_or_default()),
            parties,
            reference: item.to_owned(),
        }
    }
}
