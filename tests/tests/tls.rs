//! EAP-TLS (RFC 5216, RFC 9190) and EAP-TTLS (RFC 5281, RFC 9427) against
//! eapay-server, with cards written by `card issue --eapol-test`:
//!
//! - eapol_test (wpa_supplicant 2.10, a standard peer) pays with TLS 1.2 and
//!   TLS 1.3, and its `-r 2` re-authentications resume the TLS session;
//!   eapol_test checks the MSK against the MS-MPPE keys each time;
//! - our own card (e-card, through `eapay-terminal pay`) confirms the amount
//!   with a signature that the server verifies, stores, and re-checks with
//!   `eapay-server txn verify`;
//! - what must fail does: an unregistered or blocked card key (63), a wrong
//!   PIN (55, then 75 once the tries are used up), a TLS version below the
//!   server's minimum.

use std::path::{Path, PathBuf};

use aaa_proto::dictionary::eapay::{CardConfirmation, DeclineCode};
use aaa_proto::radius::Code;
use eapay_tests::eapol::{
    assert_approved, assert_declined, assert_success, count, eapay_attributes_in, has_line, run_payment, u32_of,
};
use eapay_tests::terminal::{pay_args, terminal};
use eapay_tests::{
    details, eap_access_request, eap_identity_response, eapol_test, exchange, has_token, require_tool, udp_socket,
    verify_reply, Card, Method, Server, MERCHANT, REPLY_TIMEOUT,
};

/// eapol_test's TLS version switch in the network block `card issue` wrote.
const TLS13_ON: &str = "phase1=\"tls_disable_tlsv1_3=0\"";

/// The card's eapol_test configuration, rewritten to offer at most TLS 1.2
/// when `tls12` (eapol_test 2.10's `tls_disable_tlsv1_3=1`).
fn conf_for(server: &Server, card: &Card, tls12: bool, edit: &[(&str, &str)]) -> PathBuf {
    let text = std::fs::read_to_string(&card.eapol_conf).expect("the eapol_test configuration");
    assert!(text.contains(TLS13_ON), "the network block does not enable TLS 1.3:\n{text}");
    let mut text = if tls12 { text.replace(TLS13_ON, "phase1=\"tls_disable_tlsv1_3=1\"") } else { text };
    for (from, to) in edit {
        assert!(text.contains(from), "{from:?} is not in the network block:\n{text}");
        text = text.replace(from, to);
    }
    let path = server.scratch(&format!("{}-{}.conf", card.card_id, if tls12 { "tls12" } else { "tls13" }));
    std::fs::write(&path, text).expect("writing the eapol_test configuration");
    path
}

fn version_line(tls12: bool) -> &'static str {
    if tls12 {
        "SSL: Using TLS version TLSv1.2"
    } else {
        "SSL: Using TLS version TLSv1.3"
    }
}

/// `card issue` arguments for an eapol_test card: `--confirmation
/// optional`, and a PIN for TTLS/PAP (the first n of those four).
fn optional_args(method: Method) -> usize {
    if method == Method::Ttls {
        4
    } else {
        2
    }
}

/// A payment by eapol_test and two re-authentications (`-r 2`): each one
/// approved (the same approval: eapol_test repeats the payment attributes),
/// MPPE keys verified each time, the re-authentications resumed.
fn eapol_test_pays_and_resumes(method: Method, tls12: bool) {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(method, &["--confirmation", "optional", "--pin", "1234"][..optional_args(method)]);
    let conf = conf_for(&server, &card, tls12, &[]);
    let payment = details(if tls12 { "tls12" } else { "tls13" }, 1250);
    let out = run_payment(&tool, &server, &conf, &payment, &["-r", "2"]);
    assert_success(&out, &server, 3);
    assert!(has_line(&out, version_line(tls12)), "not {}:\n{}", version_line(tls12), out.tail(80));
    assert_eq!(count(&out, "(Access-Accept)"), 3, "{}", out.tail(80));
    let code = assert_approved(&server, &payment, &out);
    for accept in eapay_attributes_in(&out, "Access-Accept") {
        assert_eq!(
            eapay_tests::eapol::value_of(&accept, aaa_proto::dictionary::eapay::APPROVAL_CODE),
            Some(code.as_bytes())
        );
    }
    // One authentication per EAP-STARTED: the first a full handshake, the
    // re-authentications abbreviated.
    let runs: Vec<&str> = out.stdout.split("CTRL-EVENT-EAP-STARTED").skip(1).collect();
    let resumed: Vec<bool> = runs.iter().map(|run| run.contains("OpenSSL: Handshake finished - resumed=1")).collect();
    assert_eq!(
        resumed,
        [false, true, true],
        "the re-authentications did not resume the TLS session:\n{}\n--- server ---\n{}",
        out.tail(120),
        server.stderr()
    );
    // The terminal saw only the anonymous outer identity of a TTLS card.
    if method == Method::Ttls {
        assert!(card.identity.starts_with("anonymous@"), "{}", card.identity);
        assert!(out.stdout.contains(&format!("User-Name: \"{}\"", card.identity)) || out.stdout.contains("anonymous@"));
        assert!(!server.txn_show(MERCHANT, &payment.transaction_id).is_empty());
    }
    server.assert_running();
}

#[test]
fn eapol_test_pays_with_eap_tls_1_3_and_resumes() {
    eapol_test_pays_and_resumes(Method::Tls, false);
}

#[test]
fn eapol_test_pays_with_eap_tls_1_2_and_resumes() {
    eapol_test_pays_and_resumes(Method::Tls, true);
}

#[test]
fn eapol_test_pays_with_ttls_pap_over_tls_1_3_and_resumes() {
    eapol_test_pays_and_resumes(Method::Ttls, false);
}

#[test]
fn eapol_test_pays_with_ttls_pap_over_tls_1_2_and_resumes() {
    eapol_test_pays_and_resumes(Method::Ttls, true);
}

/// The PIN of a TTLS/PAP card's network block.
fn pin_of(conf: &Path) -> String {
    let text = std::fs::read_to_string(conf).expect("eapol_test configuration");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("password=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no password in {}:\n{text}", conf.display()))
        .to_owned()
}

/// Wrong PINs are declined 55 while tries are left; the third locks the
/// card (75), and then even the right PIN is refused 75.
#[test]
fn ttls_wrong_pins_are_declined_and_lock_the_card() {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(Method::Ttls, &["--confirmation", "optional", "--pin", "4321"]);
    let pin = pin_of(&card.eapol_conf);
    assert_eq!(pin, "4321");
    let wrong = conf_for(&server, &card, false, &[("password=\"4321\"", "password=\"9999\"")]);
    for (n, expected) in
        [(1, DeclineCode::IncorrectPin), (2, DeclineCode::IncorrectPin), (3, DeclineCode::PinTriesExceeded)]
    {
        let payment = details(&format!("pin{n}"), 100);
        let out = run_payment(&tool, &server, &wrong, &payment, &[]);
        assert!(!out.success() && has_line(&out, "FAILURE"), "a wrong PIN paid:\n{}", out.tail(60));
        assert_declined(&server, &payment, &out, expected);
    }
    let right = conf_for(&server, &card, false, &[]);
    let payment = details("pin-right", 100);
    let out = run_payment(&tool, &server, &right, &payment, &[]);
    assert!(!out.success(), "a locked card paid:\n{}", out.tail(60));
    assert_declined(&server, &payment, &out, DeclineCode::PinTriesExceeded);
    server.assert_running();
}

/// The key decides, not the name: a certificate whose key no card of this
/// issuer registered (a card of another issuer, presented under one of our
/// card's identities or anonymously), another card's key under this card's
/// identity, and the key of a blocked card all complete the TLS handshake
/// and are then refused 63.
#[test]
fn unregistered_mismatched_and_blocked_card_keys_are_refused_63() {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let other = Server::start_default();
    let foreign = other.card(Method::Tls);
    let ours = server.card(Method::Tls);
    let mine = server.card(Method::Tls);
    let line = |card: &Card, key: &str| -> String {
        let text = std::fs::read_to_string(&card.eapol_conf).unwrap();
        text.lines().find(|l| l.trim().starts_with(key)).unwrap().trim().to_owned()
    };
    let identity = |card: &Card| format!("identity=\"{}\"", card.identity);
    let cases = [
        (
            "foreign-key",
            &foreign,
            vec![(line(&foreign, "ca_cert="), line(&ours, "ca_cert=")), (identity(&foreign), identity(&ours))],
        ),
        (
            "foreign-anon",
            &foreign,
            vec![
                (line(&foreign, "ca_cert="), line(&ours, "ca_cert=")),
                (identity(&foreign), format!("identity=\"anonymous@{}\"", server.realm)),
            ],
        ),
        ("other-card-key", &mine, vec![(identity(&mine), identity(&ours))]),
    ];
    for (tag, card, edits) in cases {
        let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let conf = conf_for(&server, card, false, &edits);
        let payment = details(tag, 100);
        let out = run_payment(&tool, &server, &conf, &payment, &[]);
        assert!(!out.success() && has_line(&out, "FAILURE"), "{tag} paid:\n{}", out.tail(60));
        assert!(out.stdout.contains("OpenSSL: Handshake finished"), "{tag}: no TLS handshake:\n{}", out.tail(60));
        assert_declined(&server, &payment, &out, DeclineCode::SecurityViolation);
    }

    server.block(&ours);
    let conf = conf_for(&server, &ours, false, &[]);
    let payment = details("blocked", 100);
    let out = run_payment(&tool, &server, &conf, &payment, &[]);
    assert!(!out.success() && has_line(&out, "FAILURE"), "a blocked key paid:\n{}", out.tail(60));
    assert_declined(&server, &payment, &out, DeclineCode::SecurityViolation);
    server.assert_running();
}

/// A server that requires TLS 1.3 refuses a peer that offers at most 1.2.
#[test]
fn a_tls_version_below_the_minimum_fails() {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_with("issuer.example", "s3cret", |config| {
        let eap = eapay_tests::section(config, "eap");
        let mut tls = toml::Table::new();
        tls.insert("min_version".into(), "1.3".into());
        eap.insert("tls".into(), tls.into());
    });
    let _capture = server.capture();
    let card = server.card(Method::Tls);
    let conf = conf_for(&server, &card, true, &[]);
    let payment = details("old-tls", 100);
    let out = run_payment(&tool, &server, &conf, &payment, &[]);
    assert!(!out.success() && has_line(&out, "FAILURE"), "TLS 1.2 got through a 1.3 minimum:\n{}", out.tail(60));
    assert_declined(&server, &payment, &out, DeclineCode::SecurityViolation);
    server.assert_running();
}

/// Our card confirms the payment with its registered key: approved,
/// Confirmed, the signature stored and re-checked by `txn verify`.
fn our_card_pays_with_a_verified_signature(method: Method, issue: &[&str]) {
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(method, issue);
    let reversals = server.scratch("reversals.json");
    let transaction_id = eapay_tests::transaction_id("signed");
    let out = pay(&server, &card.json, &reversals, "12.50", &transaction_id, &[]);
    assert!(out.success(), "the payment failed:\n{}\n--- server ---\n{}", out.all(), server.stderr());
    assert!(out.stdout.contains("APPROVED 12.50"), "{}", out.stdout);
    let shown = server.txn_show(MERCHANT, &transaction_id);
    assert!(has_token(&shown, "approved") && shown.contains("signature"), "{shown}");
    let id = shown_id(&shown);
    let verify = server.try_admin(&["txn", "verify", &id]);
    assert!(
        verify.success() && verify.stdout.contains("signature verifies"),
        "txn verify {id} did not verify:\n{}",
        verify.all()
    );
    assert_eq!(confirmation_in(&shown), Some(CardConfirmation::Confirmed), "{shown}");
    // A second payment resumes the card's TLS session (the card wrote it
    // back), through a NAS with a small Framed-MTU: the server fragments to it.
    assert!(card.file().tls.as_ref().and_then(|t| t.session.as_ref()).is_some(), "no session kept");
    let second = eapay_tests::transaction_id("signed-2");
    let out = pay(&server, &card.json, &reversals, "3.00", &second, &["--framed-mtu", "300"]);
    assert!(out.success(), "the second payment failed:\n{}", out.all());
    server.assert_running();
}

fn pay(
    server: &Server,
    card: &Path,
    reversals: &Path,
    amount: &str,
    transaction_id: &str,
    extra: &[&str],
) -> eapay_tests::ToolOutput {
    let mut args = pay_args(server, server.auth, server.acct, reversals);
    let card = card.display().to_string();
    args.extend(
        ["--amount", amount, "--currency", "USD", "--card", &card, "--transaction-id", transaction_id]
            .map(String::from),
    );
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    terminal(&args)
}

/// The ledger id in `txn show` output (`id: N` or `authorization N`).
fn shown_id(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .skip_while(|w| *w != "id" && *w != "authorization")
        .nth(1)
        .unwrap_or_else(|| panic!("no id in txn show:\n{text}"))
        .to_owned()
}

fn confirmation_in(text: &str) -> Option<CardConfirmation> {
    [CardConfirmation::Confirmed, CardConfirmation::NotConfirmed, CardConfirmation::Mismatch]
        .into_iter()
        .find(|c| text.to_lowercase().contains(&c.name().to_lowercase()))
}

#[test]
fn our_tls_card_pays_with_a_verified_signature() {
    our_card_pays_with_a_verified_signature(Method::Tls, &[]);
}

#[test]
fn our_ttls_card_pays_with_a_verified_signature() {
    our_card_pays_with_a_verified_signature(Method::Ttls, &["--pin", "2468"]);
}

/// TTLS with inner EAP-AKA: the USIM authenticates inside the tunnel, the
/// card's TLS key signs the payment.
#[test]
fn our_ttls_card_with_inner_aka_pays_with_a_verified_signature() {
    our_card_pays_with_a_verified_signature(Method::Ttls, &["--inner", "aka"]);
}

#[test]
fn eapol_test_reply_attributes_say_not_confirmed() {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Tls);
    let payment = details("notconf", 100);
    let out = run_payment(&tool, &server, &card.eapol_conf, &payment, &[]);
    assert_success(&out, &server, 1);
    let accepts = eapay_attributes_in(&out, "Access-Accept");
    let confirmation = accepts.last().and_then(|a| u32_of(a, aaa_proto::dictionary::eapay::CARD_CONFIRMATION));
    assert_eq!(confirmation, Some(CardConfirmation::NotConfirmed.value()));
}

/// One EAP-TLS response the server must refuse (RFC 5216 §3.1 framing):
/// flags, the TLS Message Length if L is set, then TLS data.
fn eap_tls_response(id: u8, flags: u8, tls_length: Option<u32>, data: &[u8]) -> Vec<u8> {
    let mut type_data = vec![flags];
    if let Some(length) = tls_length {
        type_data.extend_from_slice(&length.to_be_bytes());
    }
    type_data.extend_from_slice(data);
    eap_methods::Packet::new(eap_methods::Code::Response, id, eap_methods::EapType::TLS, type_data)
        .encode()
        .expect("an EAP-TLS response")
}

/// Broken EAP-TLS from a peer: a TLS Message Length over the cap, one that
/// disagrees with the data, bytes that are not TLS, a chain of fragments
/// that never ends. Each conversation ends in Access-Reject with EAP-Failure;
/// the server logs the reason and counts it, and stays up.
#[test]
fn broken_eap_tls_input_ends_in_eap_failure_with_a_reason_and_a_counter() {
    const L: u8 = 0x80;
    const M: u8 = 0x40;
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(Method::Tls);
    let socket = udp_socket("127.0.0.1:0");
    let mut radius_id = 0u8;
    let mut send = |eap: &[u8], state: Option<&[u8]>| -> aaa_proto::radius::Packet {
        radius_id = radius_id.wrapping_add(1);
        let (request, wire) = eap_access_request(radius_id, &card.identity, eap, state, &server.secret);
        let reply = exchange(&socket, server.auth, &wire, REPLY_TIMEOUT).expect("an answer");
        verify_reply(&reply, Code::AccessRequest, &request.authenticator, &server.secret)
    };
    let chunk = vec![0x16u8; 1000];
    // (case, the response to the EAP-TLS Start by its identifier, the reason logged)
    type Case<'a> = (&'a str, Box<dyn Fn(u8) -> Vec<u8> + 'a>, &'a str);
    let cases: [Case; 4] = [
        (
            "length over the cap",
            Box::new(|id| eap_tls_response(id, L | M, Some(10_000_000), &chunk)),
            "over the size cap",
        ),
        (
            "length disagrees",
            Box::new(|id| eap_tls_response(id, L, Some(100), &chunk[..50])),
            "disagrees with the data",
        ),
        ("not TLS", Box::new(|id| eap_tls_response(id, 0, None, b"GET / HTTP/1.1\r\n\r\n")), "TLS handshake failed"),
        ("endless fragments", Box::new(|id| eap_tls_response(id, M, None, &chunk)), "too many round trips"),
    ];
    for (name, response, _) in &cases {
        let start = send(&eap_identity_response(0, &card.identity), None);
        assert_eq!(start.code, Code::AccessChallenge, "{name}: no EAP-TLS Start");
        let mut state = start.get(aaa_proto::dictionary::rfc::STATE).expect("State").to_vec();
        let mut eap_id = start.eap_message().expect("EAP-Message")[1];
        let mut rounds = 0;
        let reject = loop {
            let reply = send(&response(eap_id), Some(&state));
            rounds += 1;
            if reply.code != Code::AccessChallenge {
                break reply;
            }
            // Only the endless chain is acknowledged, fragment after fragment.
            assert!(*name == "endless fragments" && rounds < 200, "{name}: still going after {rounds} rounds");
            state = reply.get(aaa_proto::dictionary::rfc::STATE).expect("State").to_vec();
            eap_id = reply.eap_message().expect("EAP-Message")[1];
        };
        assert_eq!(reject.code, Code::AccessReject, "{name}");
        assert_eq!(reject.eap_message().map(|e| e[0]), Some(4), "{name}: EAP-Failure");
    }
    let log = server.terminate();
    for (name, _, reason) in &cases {
        assert!(
            log.lines().any(|l| l.contains("declined") && l.contains("decline=63") && l.contains(reason)),
            "{name}: no log line with the reason {reason:?}:\n{log}"
        );
    }
    // The endless chain meets the conversation's round limit (64) before
    // the 64 KiB message cap.
    assert!(
        log.contains("eap_failed_protocol=3") && log.contains("eap_failed_too_many_rounds=1"),
        "the failures are counted by reason:\n{log}"
    );
}
