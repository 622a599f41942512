//! Writes the seed corpora (`fuzz/corpus/TARGET/seed-*`, FUZZING.md):
//!
//! - for the structured targets, real conversations (the real card against
//!   the real server, through the same code as the targets) recorded as
//!   inputs: the setup bytes alone (every message delivered as it is), and
//!   the same run with every real message spelled out as bytes, which
//!   replays the same way for SIM/AKA (deterministic) and gives the fuzzer
//!   real messages to mutate for TLS;
//! - for the decoder targets, the RFC 4186 Appendix A packets and the
//!   messages of those conversations in the form each decoder reads them
//!   (EAP packets, SIM/AKA packets, TLS frames, tunnel AVPs, RADIUS and
//!   Diameter messages carrying them, EAPOL frames, payment encodings).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`; rerun after
//! a change to a target's input format or the methods' messages.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aaa_proto::diameter::{Message, OwnedAvp};
use aaa_proto::dictionary::diameter::{application, avp, command};
use aaa_proto::dictionary::{eapay, rfc};
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{PaymentDetails, PaymentResult};
use aaa_proto::radius::{self, push_mppe_keys, Code};
use eap_methods::ttls::avps::{PeerAvps, ServerAvps, TunnelConfirmation};
use eap_methods::{EapType, Pin};
use eapay_fuzz::aka::{self, CardState};
use eapay_fuzz::conversation::{Outcome, Side};
use eapay_fuzz::tape::Tape;
use eapay_fuzz::targets;
use eapay_fuzz::tls::{self, Inner};

const SECRET: &[u8] = b"fuzz-secret";

struct Corpus {
    root: PathBuf,
    written: BTreeMap<String, usize>,
}

impl Corpus {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed");
        *self.written.entry(target.to_string()).or_default() += 1;
    }
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ASCII"), 16).expect("hex")).collect()
}

/// Runs `run` on `setup` twice: as it is, and recording; writes both.
/// Returns the recorded run's outcome and whether the spelled-out input
/// replayed to the same end.
fn record(
    corpus: &mut Corpus,
    target: &str,
    name: &str,
    setup: &[u8],
    run: impl Fn(&mut Tape<'_>) -> Outcome,
) -> (Outcome, bool) {
    corpus.write(target, name, setup);
    let mut tape = Tape::recording(setup);
    let outcome = run(&mut tape);
    let spelled = tape.into_record().expect("recording");
    corpus.write(target, &format!("{name}-spelled"), &spelled);
    let replay = run(&mut Tape::new(&spelled));
    let same = (replay.accepted, replay.peer_success) == (outcome.accepted, outcome.peer_success);
    println!(
        "{target} {name}: {} messages, server {}, card {}",
        outcome.messages.len(),
        if outcome.accepted { "accepted" } else { "did not accept" },
        if outcome.peer_success { "accepted EAP-Success" } else { "did not succeed" },
    );
    (outcome, same)
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut corpus = Corpus { root, written: BTreeMap::new() };
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut tls_flights: Vec<Vec<Vec<u8>>> = Vec::new();

    // SIM, AKA, AKA': the ordinary run, privacy (pseudonym handed out),
    // the re-authentication it allows, a card ahead (resynchronisation),
    // a card with another key, a Nak.
    let variants = [
        ("plain", false, false, CardState::Normal, false),
        ("privacy", true, false, CardState::Normal, false),
        ("reauth", true, true, CardState::Normal, false),
        ("ahead", false, false, CardState::Ahead, false),
        ("wrongkey", false, false, CardState::WrongKey, false),
        ("nak", false, false, CardState::Normal, true),
    ];
    for (k, kind) in ["sim", "aka", "akaprime"].iter().enumerate() {
        for (variant, privacy, second, card, nak) in variants {
            if k == 0 && card == CardState::Ahead {
                continue;
            }
            let setup = aka::Setup::bytes(k, privacy, second, card, nak);
            let name = format!("{kind}-{variant}");
            for (target, side) in [("server_session_aka", Side::Server), ("peer_session_aka", Side::Peer)] {
                let (outcome, same) = record(&mut corpus, target, &name, &setup, |t| targets::sim_aka(t, side));
                if !same {
                    eprintln!(
                        "note: {target} {name}: the spelled-out replay ends differently (a fresh NONCE_MT or NONCE_S)"
                    );
                }
                messages.extend(outcome.messages);
            }
        }
    }

    // TLS and TTLS: each version range, with and without a payment and
    // resumption; TTLS with each inner method.
    let ranges = ["both", "tls12", "tls13"];
    for (r, range) in ranges.iter().enumerate() {
        for (variant, payment, resume) in
            [("pay", true, false), ("nopay", false, false), ("resume", true, true), ("resume-nopay", false, true)]
        {
            let setup = tls::Setup::bytes(r, payment, resume, Inner::Pap);
            let name = format!("{range}-{variant}");
            let (outcome, _) =
                record(&mut corpus, "server_session_tls", &name, &setup, |t| targets::eap_tls(t, Side::Server));
            tls_flights.push(outcome.messages.clone());
            messages.extend(outcome.messages);
            let peer_setup = [&[0][..], &setup].concat();
            record(&mut corpus, "peer_session_tls", &format!("tls-{name}"), &peer_setup, targets::peer_tls);
        }
        for (variant, inner, resume) in [
            ("pap", Inner::Pap, false),
            ("wrongpin", Inner::WrongPin, false),
            ("aka", Inner::Aka(EapType::AKA), false),
            ("akaprime", Inner::Aka(EapType::AKA_PRIME), false),
            ("pap-resume", Inner::Pap, true),
        ] {
            let setup = tls::Setup::bytes(r, true, resume, inner);
            let name = format!("{range}-{variant}");
            let (outcome, _) =
                record(&mut corpus, "server_session_ttls", &name, &setup, |t| targets::eap_ttls(t, Side::Server));
            tls_flights.push(outcome.messages.clone());
            messages.extend(outcome.messages);
            let peer_setup = [&[1][..], &setup].concat();
            record(&mut corpus, "peer_session_tls", &format!("ttls-{name}"), &peer_setup, targets::peer_tls);
        }
    }

    decoder_seeds(&mut corpus, &messages, &tls_flights);
    for (target, n) in &corpus.written {
        println!("{target}: {n} seeds");
    }
}

/// One message of each (code, type, subtype), in the order first seen.
fn distinct(messages: &[Vec<u8>]) -> Vec<&Vec<u8>> {
    let mut seen = std::collections::BTreeSet::new();
    messages
        .iter()
        .filter(|m| m.len() >= 4 && seen.insert((m[0], m.get(4).copied(), m.get(5).copied(), m.len() > 1000)))
        .collect()
}

fn decoder_seeds(corpus: &mut Corpus, messages: &[Vec<u8>], tls_flights: &[Vec<Vec<u8>>]) {
    let distinct = distinct(messages);
    let is = |m: &[u8], kinds: &[EapType]| m.get(4).is_some_and(|t| kinds.iter().any(|k| k.0 == *t));
    let family = [EapType::SIM, EapType::AKA, EapType::AKA_PRIME];
    let tls_family = [EapType::TLS, EapType::TTLS];

    // EAP packets of every kind the conversations used.
    for (i, m) in distinct.iter().enumerate() {
        corpus.write("eap_packet", &format!("conversation-{i:02}"), m);
    }

    // SIM/AKA/AKA': RFC 4186 Appendix A, then the conversations' packets.
    for (name, packet) in rfc4186_appendix_a() {
        corpus.write("sim_aka_attributes", &format!("rfc4186-{name}"), &packet);
    }
    for (i, m) in distinct.iter().filter(|m| is(m, &family)).enumerate() {
        corpus.write("sim_aka_attributes", &format!("conversation-{i:02}"), m);
    }

    // TLS frames: each direction of a conversation as one run of
    // length-prefixed type-data frames.
    for (i, flight) in tls_flights.iter().enumerate().step_by(4) {
        for (dir, code) in [("requests", 1u8), ("responses", 2u8)] {
            let mut run = Vec::new();
            for m in flight.iter().filter(|m| m.first() == Some(&code) && is(m, &tls_family)) {
                let data = &m[5.min(m.len())..];
                run.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
                run.extend_from_slice(data);
            }
            if !run.is_empty() {
                corpus.write("tls_fragments", &format!("conversation-{i:02}-{dir}"), &run);
            }
        }
    }

    // Tunnel AVPs as the card and the server write them.
    let details = aka::payment_details();
    let aka_request = distinct.iter().find(|m| m[0] == 1 && is(m, &[EapType::AKA])).map(|m| m.to_vec());
    let aka_response = distinct.iter().find(|m| m[0] == 2 && is(m, &[EapType::AKA])).map(|m| m.to_vec());
    let peer_avps = [
        PeerAvps {
            user_name: Some(format!("{}@{}", aka::CARD, aka::REALM)),
            password: Some(Pin(tls::PIN.into())),
            ..PeerAvps::default()
        },
        PeerAvps {
            user_name: Some(aka::CARD.into()),
            password: Some(Pin(tls::PIN.into())),
            confirmation: Some(TunnelConfirmation {
                details: details.clone(),
                signature: Some(vec![0x30; 71]),
                pan_token: Some([0x5a; 32]),
            }),
            ..PeerAvps::default()
        },
        PeerAvps { eap_message: aka_response, ..PeerAvps::default() },
    ];
    for (i, avps) in peer_avps.iter().enumerate() {
        if let Ok(bytes) = avps.encode(eapay::VENDOR_ID) {
            corpus.write("ttls_avps", &format!("peer-{i}"), &bytes);
        }
    }
    let server_avps = [
        ServerAvps { eap_message: aka_request.clone(), ..ServerAvps::default() },
        ServerAvps {
            result: Some(aka::payment_result(true)),
            reply_message: Some("approved".into()),
            ..ServerAvps::default()
        },
        ServerAvps { result: Some(aka::payment_result(false)), ..ServerAvps::default() },
    ];
    for (i, avps) in server_avps.iter().enumerate() {
        if let Ok(bytes) = avps.encode(eapay::VENDOR_ID) {
            corpus.write("ttls_avps", &format!("server-{i}"), &bytes);
        }
    }

    // Payment encodings.
    corpus.write("payment_attributes", "details-canonical", &details);
    corpus.write("payment_attributes", "result-approved", &aka::payment_result(true));
    corpus.write("payment_attributes", "result-declined", &aka::payment_result(false));

    // RADIUS: an Access-Request with the payment and an EAP-Response, the
    // Access-Challenge and Access-Accept a server answers with.
    let payment = PaymentDetails::from_canonical(&details).expect("canonical details");
    let eap_in = distinct.iter().find(|m| m[0] == 2).map(|m| m.to_vec()).unwrap_or_default();
    let eap_out = distinct.iter().find(|m| m[0] == 1).map(|m| m.to_vec()).unwrap_or_default();
    let mut request = radius::Packet::new(Code::AccessRequest, 7, [0x42; 16]);
    request.push(rfc::USER_NAME, format!("{}@{}", aka::CARD, aka::REALM).as_bytes()).expect("User-Name");
    request.push_eap_message(&eap_in);
    payment.push_to(&mut request, eapay::VENDOR_ID).expect("payment");
    request.add_message_authenticator();
    corpus.write("radius_packet", "access-request", &radius::encode_request(&request, SECRET).expect("encode"));
    let mut challenge = radius::Packet::reply_to(&request, Code::AccessChallenge);
    challenge.push_eap_message(&eap_out);
    challenge.push(rfc::STATE, b"state-1").expect("State");
    challenge.add_message_authenticator();
    corpus.write(
        "radius_packet",
        "access-challenge",
        &radius::encode_response(&challenge, &[0x42; 16], SECRET).expect("encode"),
    );
    let mut accept = radius::Packet::reply_to(&request, Code::AccessAccept);
    accept.push_eap_message(&[3, 7, 0, 4]);
    push_mppe_keys(&mut accept, &[0x11; 64], SECRET, &[0x42; 16]).expect("MPPE keys");
    accept.push_vendor(eapay::VENDOR_ID, eapay::APPROVAL_CODE, b"A1B2C3").expect("Approval-Code");
    accept.add_message_authenticator();
    corpus.write(
        "radius_packet",
        "access-accept",
        &radius::encode_response(&accept, &[0x42; 16], SECRET).expect("encode"),
    );

    // Diameter: a DER with the payment and an EAP-Payload, and the DEA.
    let mut der = Message::request(command::DIAMETER_EAP, application::EAP, 1, 2);
    der.push(OwnedAvp::utf8(avp::SESSION_ID, None, true, "nas.example;1;2"))
        .push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP))
        .push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, "nas.example"))
        .push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, "example"))
        .push(OwnedAvp::utf8(avp::DESTINATION_REALM, None, true, aka::REALM))
        .push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap_in));
    for (code, value) in payment.attributes() {
        der.push(OwnedAvp::octets(u32::from(code), Some(eapay::VENDOR_ID), true, &value));
    }
    corpus.write("diameter_message", "der", &der.encode().expect("DER"));
    let mut dea = Message::answer_to(&der);
    dea.push(OwnedAvp::utf8(avp::SESSION_ID, None, true, "nas.example;1;2"))
        .push(OwnedAvp::u32(avp::RESULT_CODE, None, true, 1001))
        .push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap_out));
    corpus.write("diameter_message", "dea", &dea.encode().expect("DEA"));

    // The card link: a payment as the terminal and card exchange it.
    let mut stream = Vec::new();
    let frames = [
        Frame::Start,
        Frame::Payment(PaymentFrame::Details(details.clone())),
        Frame::Payment(PaymentFrame::Consent(true)),
    ]
    .into_iter()
    .chain(distinct.iter().filter(|m| is(m, &family)).take(6).map(|m| Frame::Eap(m.to_vec())))
    .chain([Frame::Payment(PaymentFrame::Shown(aka::payment_result(true))), Frame::Logoff]);
    for frame in frames {
        stream.extend(frame.encode().expect("EAPOL frame"));
    }
    corpus.write("card_link_frames", "payment", &stream);
    let _ = PaymentResult::decode(&aka::payment_result(true)).expect("a result that decodes");
}

/// RFC 4186 Appendix A: the EAP-SIM exchange as published (A.2 to A.6),
/// and the decrypted AT_ENCR_DATA of A.5.
fn rfc4186_appendix_a() -> Vec<(&'static str, Vec<u8>)> {
    let identity = b"1244070100000001@eapsim.foo";
    let mut identity_response = vec![2, 0, 0, 5 + identity.len() as u8, 1];
    identity_response.extend_from_slice(identity);
    let start_request = hex("01 01 0010 12 0a 0000 0f 02 0002 0001 0000");
    let start_response = hex("02 01 0020 12 0a 0000 07 05 0000 01234567 89abcdef fedcba98 76543210 10 01 0001");
    let challenge_request = hex("01 02 0118 12 0b 0000 01 0d 0000
         10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f
         30313233 34353637 38393a3b 3c3d3e3f
         81 05 0000 9e18b0c2 9a652263 c06efb54 dd00a895
         82 2d 0000
         55f2939b bdb1b19e a1b47fc0 b3e0be4c ab2cf737 2d98e302 3c6bb924 15723d58
         bad66ce0 84e101b6 0f535835 4bd42182 78aea7bf 2cbace33 106aeddc 625b0c1d
         5aa67a41 739ae5b5 7950973f c7ff8301 073c6f95 3150fc30 3ea152d1 e10a2d1f
         4f5226da a1ee9005 472252bd b3b71d6f 0c3a3490 316c4692 9871bd45 cdfdbca6
         112f07f8 be717990 d25f6dd7 f2b7b320 bf4d5a99 2e880331 d729945a ec75ae5d
         43c8eda5 fe6233fc ac494ee6 7a0d504d
         0b 05 0000 fef324ac 3962b59f 3bd78253 ae4dcb6a");
    let challenge_response = hex("02 02 001c 12 0b 0000 0b 05 0000 f56d6433 e68ed297 6ac11937 fc3d1154");
    let mut plaintext = vec![0x84, 0x13, 0x00, 0x46];
    plaintext.extend_from_slice(b"w8w49PexCazWJ&xCIARmxuMKht5S1sxRDqXSEFBEg3DcZP9cIxTe5J4OyIwNGVzxeJOU1G\0\0");
    plaintext.extend_from_slice(&[0x85, 0x16, 0x00, 0x51]);
    plaintext
        .extend_from_slice(b"Y24fNSrz8BP274jOJaF17WfxI8YO7QX00pMXk9XMMVOw7broaNhTczuFq53aEpOkk3L0dm@eapsim.foo\0\0\0");
    plaintext.extend_from_slice(&[0x06, 0x03]);
    plaintext.extend_from_slice(&[0; 10]);
    vec![
        ("a2-identity-response", identity_response),
        ("a3-start-request", start_request),
        ("a4-start-response", start_response),
        ("a5-challenge-request", challenge_request),
        ("a5-encr-data-plaintext", plaintext),
        ("a6-challenge-response", challenge_response),
    ]
}
