//! eapol_test (wpa_supplicant's EAP peer with the Milenage USIM simulator)
//! against eapay-server: EAP-AKA (RFC 4187) and EAP-AKA' (RFC 5448/9048)
//! over RADIUS (RFC 3579).
//!
//! eapol_test prints `SUCCESS` and exits 0 only if it got an Access-Accept,
//! its own EAP state machine reached success, and the MSK it derived equals
//! the MS-MPPE-Recv/Send-Key the server sent ("MPPE keys OK: 1  mismatch: 0").
//!
//! Every run is a payment: the seven Eapay attributes go into each
//! Access-Request with `-N 26:x:...` (a plain authentication is declined),
//! and the cards are issued `--confirmation optional` because eapol_test, a
//! standard peer, cannot confirm. eapol_test dumps every RADIUS message
//! with its attribute values, so the Eapay attributes of the final answer
//! are read from its output and compared with the ledger (`txn show`).

use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode};
use eapay_tests::eapol::{
    assert_approved, assert_declined, assert_success, count, eapay_attributes_in, has_line, run_eapol_test,
    run_payment, u32_of, value_of,
};
use eapay_tests::{
    details, eapol_test, eapol_test_payment_args, read_usim_password, require_tool, write_usim_password, Card, Method,
    Server,
};

fn setup(method: Method) -> Option<(std::path::PathBuf, Server, Card)> {
    let tool = require_tool("eapol_test", eapol_test())?;
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card(method);
    Some((tool, server, card))
}

/// A payment by eapol_test with an `optional` card: approved.
fn full_authentication(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let _capture = server.capture();
    let payment = details("eapol", 1250);
    let out = run_payment(&tool, &server, &card.eapol_conf, &payment, &[]);
    assert_success(&out, &server, 1);
    assert_approved(&server, &payment, &out);
    // The identity eapol_test presented is the card's permanent NAI, and the
    // server answered with an Access-Accept (not a timeout or a local decision).
    assert!(out.stdout.contains("(Access-Accept)"), "no Access-Accept seen:\n{}", out.tail(60));
    let prefix = match method {
        Method::Sim => '1',
        Method::Aka => '0',
        _ => '6',
    };
    assert!(
        card.identity.starts_with(prefix) && card.identity.ends_with(&format!("@{}", server.realm)),
        "card identity {:?} is not a {method:?} permanent NAI of realm {}",
        card.identity,
        server.realm
    );
    server.assert_running();
}

#[test]
fn sim_full_authentication() {
    full_authentication(Method::Sim);
}

#[test]
fn aka_full_authentication() {
    full_authentication(Method::Aka);
}

#[test]
fn aka_prime_full_authentication() {
    full_authentication(Method::AkaPrime);
}

/// A card whose K differs from the issuer's: the USIM finds the AUTN MAC
/// wrong (TS 33.102 §6.3.3), answers AKA-Authentication-Reject (RFC 4187
/// §9.5), and the server must end with EAP-Failure in an Access-Reject.
fn wrong_k(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let _capture = server.capture();
    let mut pw = read_usim_password(&card.eapol_conf);
    let first = pw.k.chars().next().expect("K is not empty");
    let flipped = if first == '0' { '1' } else { '0' };
    pw.k.replace_range(0..1, &flipped.to_string());
    let conf = server.scratch("wrong-k.conf");
    write_usim_password(&card.eapol_conf, &conf, &pw);

    let payment = details("wrong-k", 1250);
    let out = run_payment(&tool, &server, &conf, &payment, &[]);
    assert!(!has_line(&out, "SUCCESS") && !out.success(), "authentication with a wrong K succeeded:\n{}", out.tail(60));
    assert!(has_line(&out, "FAILURE"), "{}", out.tail(60));
    assert!(
        out.stdout.contains("Generating EAP-AKA Authentication-Reject"),
        "the peer did not reject the network (was the challenge even sent?):\n{}",
        out.tail(60)
    );
    assert!(
        out.stdout.contains("(Access-Reject)"),
        "the server did not answer the Authentication-Reject with an Access-Reject:\n{}\n--- server stderr ---\n{}",
        out.tail(60),
        server.stderr()
    );
    assert!(!out.stdout.contains("(Access-Accept)"), "{}", out.tail(60));
    assert_declined(&server, &payment, &out, DeclineCode::SecurityViolation);
    server.assert_running();
}

#[test]
fn aka_wrong_k_is_rejected() {
    wrong_k(Method::Aka);
}

#[test]
fn aka_prime_wrong_k_is_rejected() {
    wrong_k(Method::AkaPrime);
}

/// The USIM's SQN is ahead of the issuer's: the peer answers the first
/// challenge with AKA-Synchronization-Failure (AT_AUTS), the server resyncs
/// (RFC 4187 §6.2 / TS 33.102 §6.3.5) and the same conversation succeeds.
/// A second run from the same (unchanged) SQN succeeds without resync,
/// because the server's SQN is now ahead of it.
fn sqn_resync(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let _capture = server.capture();
    let mut pw = read_usim_password(&card.eapol_conf);
    pw.sqn = "000000001000".to_owned();
    let conf = server.scratch("sqn-ahead.conf");
    write_usim_password(&card.eapol_conf, &conf, &pw);
    const SYNC_FAILURE: &str = "Generating EAP-AKA Synchronization-Failure";

    let payment = details("resync", 1250);
    let first = run_payment(&tool, &server, &conf, &payment, &[]);
    assert!(
        first.stdout.contains(SYNC_FAILURE),
        "the peer with SQN 0x1000 did not send AT_AUTS (server SQN already ahead?):\n{}",
        first.tail(60)
    );
    assert_success(&first, &server, 1);
    assert_approved(&server, &payment, &first);

    let payment = details("resync2", 1250);
    let second = run_payment(&tool, &server, &conf, &payment, &[]);
    assert_success(&second, &server, 1);
    assert_approved(&server, &payment, &second);
    assert!(
        !second.stdout.contains(SYNC_FAILURE),
        "after resynchronisation the server's SQN should be ahead of the card's, but a second resync happened:\n{}",
        second.tail(60)
    );
    server.assert_running();
}

#[test]
fn aka_sqn_resynchronisation() {
    sqn_resync(Method::Aka);
}

#[test]
fn aka_prime_sqn_resynchronisation() {
    sqn_resync(Method::AkaPrime);
}

/// `-r 3`: after the first success, eapol_test authenticates three more
/// times over the same RADIUS client. The server handed out a fast
/// re-authentication identity (AT_NEXT_REAUTH_ID) in the full
/// authentication and a new one in each re-authentication, so all three are
/// fast re-authentications (RFC 4186/4187 §5: AT_COUNTER, AT_NONCE_S, new
/// MSK), each with matching keys. eapol_test repeats the same `-N`
/// attributes, so each is an identical repeat of the payment: the original
/// approval again, and one authorization in the ledger.
fn reauthentication(method: Method) {
    let Some((tool, server, card)) = setup(method) else { return };
    let _capture = server.capture();
    let payment = details("reauth", 1250);
    let out = run_payment(&tool, &server, &card.eapol_conf, &payment, &["-r", "3"]);
    assert_success(&out, &server, 4);
    let family = if method == Method::Sim { "EAP-SIM" } else { "EAP-AKA" };
    let reauths = count(&out, &format!("Generating {family} Reauthentication"));
    assert_eq!(reauths, 3, "three fast re-authentications after the full one:\n{}", out.tail(80));
    assert_eq!(count(&out, &format!("Generating {family} Challenge")), 1, "one full authentication:\n{}", out.tail(80));
    let code = assert_approved(&server, &payment, &out);
    let accepts = eapay_attributes_in(&out, "Access-Accept");
    assert_eq!(accepts.len(), 4, "{}", out.tail(60));
    for accept in &accepts {
        assert_eq!(value_of(accept, eapay::APPROVAL_CODE), Some(code.as_bytes()), "a repeat got another code");
    }
    let list = server.admin(&["txn", "list", "--card", &card.card_id]);
    assert_eq!(
        list.matches(payment.transaction_id.as_str()).count(),
        1,
        "a repeated payment must be one authorization:\n{list}"
    );
    server.assert_running();
}

#[test]
fn sim_reauthentication() {
    reauthentication(Method::Sim);
}

#[test]
fn aka_reauthentication() {
    reauthentication(Method::Aka);
}

#[test]
fn aka_prime_reauthentication() {
    reauthentication(Method::AkaPrime);
}

/// Only some of the payment attributes (here Eapay-Transaction-Id alone):
/// not a payment the server can decide, declined (12), never approved.
#[test]
fn incomplete_payment_attributes_are_declined() {
    let Some((tool, server, card)) = setup(Method::Aka) else { return };
    let _capture = server.capture();
    let payment = details("partial", 1250);
    let args = eapol_test_payment_args(&payment);
    let out = run_eapol_test(&tool, &server, &card.eapol_conf, &[&args[0], &args[1]]);
    // eapol_test's message dump shows the VSA went out (6 + 2 + id octets).
    let sent = format!("Attribute 26 (Vendor-Specific) length={}", 8 + payment.transaction_id.len());
    assert!(out.stdout.contains(&sent), "eapol_test did not send the VSA (`{sent}`):\n{}", out.tail(60));
    assert!(!out.success() && has_line(&out, "FAILURE"), "an incomplete payment succeeded:\n{}", out.tail(60));
    assert!(out.stdout.contains("(Access-Reject)") && !out.stdout.contains("(Access-Accept)"), "{}", out.tail(60));
    let rejects = eapay_attributes_in(&out, "Access-Reject");
    let last = rejects.last().expect("an Access-Reject");
    assert_eq!(u32_of(last, eapay::DECLINE_CODE), Some(DeclineCode::InvalidTransaction.value()), "{last:?}");
    server.assert_running();
}

/// A standard peer cannot confirm: with a `required` card it is declined 59
/// (Suspected-Fraud) after a successful authentication.
#[test]
fn required_card_with_a_standard_peer_is_declined_59() {
    let Some(tool) = require_tool("eapol_test", eapol_test()) else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let card = server.card_with(Method::AkaPrime, &[]);
    let payment = details("required", 1250);
    let out = run_payment(&tool, &server, &card.eapol_conf, &payment, &[]);
    assert!(!out.success() && !has_line(&out, "SUCCESS"), "a required card paid unconfirmed:\n{}", out.tail(60));
    assert!(out.stdout.contains("(Access-Reject)"), "{}", out.tail(60));
    assert_declined(&server, &payment, &out, DeclineCode::SuspectedFraud);
    let rejects = eapay_attributes_in(&out, "Access-Reject");
    let confirmation = rejects.last().and_then(|a| u32_of(a, eapay::CARD_CONFIRMATION));
    assert_eq!(confirmation, Some(CardConfirmation::NotConfirmed.value()));
    server.assert_running();
}
