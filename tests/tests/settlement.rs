//! Settlement over RADIUS accounting (DESIGN.md §1, issue 3 item 10):
//! Accounting-Request with Eapay-Settlement-Action capture / reverse /
//! refund, Eapay-Transaction-Id and Eapay-Merchant-Id. The answer is an
//! Accounting-Response; a refused action carries Eapay-Decline-Code.
//!
//! Balances are checked through payments: the card's whole available amount
//! is approved, then one more minor unit is declined 51.

use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};
use aaa_proto::radius::Code;
use eapay_tests::{
    details, exchange, has_token, hex_dump, settlement_request, udp_socket, verify_reply, Card, Method, Server,
    DEFAULT_LIMIT, MERCHANT, REPLY_TIMEOUT,
};

use SettlementAction::{Capture, Refund, Reverse};

/// The card's available amount is exactly `remaining` (spends it).
fn assert_available(server: &Server, card: &Card, remaining: u64) {
    if remaining > 0 {
        let all = details("rest", remaining);
        let run = server.pay(card, &all);
        assert_eq!(run.reply.code, Code::AccessAccept, "{remaining} should be available: {}", run.describe());
        run.assert_approved(server, &all);
    }
    let one = details("one", 1);
    let run = server.pay(card, &one);
    assert_eq!(
        run.answer.decline_code,
        Some(DeclineCode::InsufficientFunds.value()),
        "after spending {remaining}, one more unit must be declined 51: {}",
        run.describe()
    );
}

/// A `required` card and an approved payment of `amount` on it.
fn approved(server: &Server, amount: u64) -> (Card, String) {
    let card = server.card_with(Method::Aka, &[]);
    let d = details("settle", amount);
    server.pay(&card, &d).assert_approved(server, &d);
    (card, d.transaction_id)
}

fn status_is(server: &Server, txn: &str, status: &str) {
    let text = server.txn_show(MERCHANT, txn);
    assert!(has_token(&text.to_lowercase(), status), "txn show {MERCHANT}:{txn} should say {status}:\n{text}");
}

/// A reversal (the terminal got no answer, ISO 8583 timeout reversal)
/// gives the amount back.
#[test]
fn reversal_of_an_approval_restores_the_available_amount() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, DEFAULT_LIMIT);
    let over = details("full", 1);
    server.pay(&card, &over).assert_declined(DeclineCode::InsufficientFunds, Some(&over.transaction_id));
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, 0), "card list after the approval");
    server.settle_demo(Reverse, &txn).assert_done("reverse");
    status_is(&server, &txn, "reversed");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT), "card list after the reversal");
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// Reversing twice answers both and restores the amount once.
#[test]
fn reversal_is_idempotent() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, 300_000);
    for n in 0..3 {
        server.settle_demo(Reverse, &txn).assert_done(&format!("reverse #{n}"));
    }
    status_is(&server, &txn, "reversed");
    // Restored once: 500000 available, not 800000 (the limit check alone
    // would not tell, so spend it all).
    assert_available(&server, &card, DEFAULT_LIMIT);
    // Nothing else is possible on a reversed payment.
    server.settle_demo(Capture, &txn).assert_refused(DeclineCode::InvalidTransaction, "capture after reverse");
    server.settle_demo(Refund, &txn).assert_refused(DeclineCode::InvalidTransaction, "refund after reverse");
}

/// approved -> captured -> refunded; capture and refund are idempotent, a
/// refund gives the amount back (once), a reversal after capture is refused.
#[test]
fn capture_then_refund() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, 200_000);
    server.settle_demo(Refund, &txn).assert_refused(DeclineCode::InvalidTransaction, "refund before capture");
    server.settle_demo(Capture, &txn).assert_done("capture");
    status_is(&server, &txn, "captured");
    server.settle_demo(Capture, &txn).assert_done("capture again");
    server.settle_demo(Reverse, &txn).assert_refused(DeclineCode::InvalidTransaction, "reverse after capture");
    status_is(&server, &txn, "captured");

    // Captured money stays spent.
    let over = details("captured", 300_001);
    server.pay(&card, &over).assert_declined(DeclineCode::InsufficientFunds, Some(&over.transaction_id));

    server.settle_demo(Refund, &txn).assert_done("refund");
    status_is(&server, &txn, "refunded");
    server.settle_demo(Refund, &txn).assert_done("refund again");
    server.settle_demo(Capture, &txn).assert_refused(DeclineCode::InvalidTransaction, "capture after refund");
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// Partial settlement is not supported: an Eapay-Amount other than the
/// authorized one is refused 13; the exact amount is accepted.
#[test]
fn settlement_of_another_amount_is_refused_13() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, 100_000);
    server.settle(Reverse, MERCHANT, &txn, Some(50_000)).assert_refused(DeclineCode::InvalidAmount, "partial reverse");
    server.settle(Capture, MERCHANT, &txn, Some(100_001)).assert_refused(DeclineCode::InvalidAmount, "capture more");
    status_is(&server, &txn, "approved");
    server.settle(Reverse, MERCHANT, &txn, Some(100_000)).assert_done("reverse with the exact amount");
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// A settlement for a merchant the client may not act for is refused 57 and
/// leaves the payment alone (a rogue terminal cannot reverse another's sale).
#[test]
fn settlement_for_another_merchant_is_refused_57() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, 100_000);
    for action in [Reverse, Capture, Refund] {
        server.settle(action, "M-NOT-OURS", &txn, None).assert_refused(DeclineCode::NotPermitted, action.name());
    }
    status_is(&server, &txn, "approved");
    assert_available(&server, &card, DEFAULT_LIMIT - 100_000);
}

/// A reversal that overtakes its authorization leaves a tombstone: the late
/// original (same merchant and transaction id) is declined 12, never
/// approved; the reversal stays idempotent; capture/refund are refused.
#[test]
fn reversal_of_an_unknown_transaction_declines_the_late_original_12() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let late = details("late", 100_000);
    server.settle_demo(Reverse, &late.transaction_id).assert_done("reverse before the original");
    server.settle_demo(Reverse, &late.transaction_id).assert_done("reverse again");
    status_is(&server, &late.transaction_id, "reversed");
    let run = server.pay(&card, &late);
    run.assert_declined(DeclineCode::InvalidTransaction, Some(&late.transaction_id));
    // And again (a retry of the original is no better).
    let run = server.pay(&card, &late);
    run.assert_declined(DeclineCode::InvalidTransaction, Some(&late.transaction_id));
    server.settle_demo(Capture, &late.transaction_id).assert_refused(DeclineCode::InvalidTransaction, "capture");
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// Capture or refund of a transaction nobody knows is refused 12 (and
/// leaves no tombstone: the payment can still happen).
#[test]
fn capture_or_refund_of_an_unknown_transaction_is_refused_12() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("unknown", 1000);
    server.settle_demo(Capture, &d.transaction_id).assert_refused(DeclineCode::InvalidTransaction, "capture");
    server.settle_demo(Refund, &d.transaction_id).assert_refused(DeclineCode::InvalidTransaction, "refund");
    server.pay(&card, &d).assert_approved(&server, &d);
}

/// Settling a declined payment: a reversal is accepted (nothing to undo, the
/// terminal may not know it was declined), capture and refund are refused.
#[test]
fn settlement_of_a_declined_payment() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--limit", "1000"]);
    let d = details("declined", 1001);
    server.pay(&card, &d).assert_declined(DeclineCode::ExceedsLimit, Some(&d.transaction_id));
    server.settle_demo(Capture, &d.transaction_id).assert_refused(DeclineCode::InvalidTransaction, "capture");
    server.settle_demo(Refund, &d.transaction_id).assert_refused(DeclineCode::InvalidTransaction, "refund");
    server.settle_demo(Reverse, &d.transaction_id).assert_done("reverse of a decline");
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "61"), "the decline is still recorded as 61:\n{text}");
    assert_available(&server, &card, 1000);
}

/// RFC 5080 on the accounting port: the same settlement datagram again gets
/// the byte-identical Accounting-Response, and the action happens once.
#[test]
fn retransmitted_settlement_gets_the_identical_answer() {
    let server = Server::start_default();
    let (card, txn) = approved(&server, 200_000);
    let request = settlement_request(77, Reverse, MERCHANT, &txn, None, &server.secret);
    let socket = udp_socket("127.0.0.1:0");
    let first = exchange(&socket, server.acct, &request, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no Accounting-Response\n{}", server.stderr()));
    let authenticator: [u8; 16] = request[4..20].try_into().unwrap();
    let p = verify_reply(&first, Code::AccountingRequest, &authenticator, &server.secret);
    assert_eq!(p.code, Code::AccountingResponse);
    let second = exchange(&socket, server.acct, &request, REPLY_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer to the retransmission\n{}", server.stderr()));
    assert_eq!(hex_dump(&first), hex_dump(&second), "retransmitted settlement got another answer");
    status_is(&server, &txn, "reversed");
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// `txn export --format jsonl`: the card with its limit and available
/// amount, every authorization (approved, reversed, declined, a tombstone)
/// and their audit lines, one JSON object per line, in minor units; the
/// reconciliation of `faults_under_load.rs` reads it.
#[test]
fn txn_export_writes_cards_authorizations_and_audit_lines_as_json_lines() {
    export_lists_every_record(&Server::start_default());
}

/// The same on PostgreSQL (one snapshot: REPEATABLE READ, READ ONLY).
#[test]
fn txn_export_reads_a_postgres_ledger() {
    let Some(db) = eapay_tests::ScratchDatabase::create() else { return };
    export_lists_every_record(&Server::start_on_ledger(&db.url));
}

fn export_lists_every_record(server: &Server) {
    let (card, kept) = approved(server, 1250);
    let reversed = details("export-rev", 300);
    server.pay(&card, &reversed).assert_approved(server, &reversed);
    server.settle_demo(Reverse, &reversed.transaction_id).assert_done("reverse");
    let too_much = details("export-decline", DEFAULT_LIMIT);
    server.pay(&card, &too_much).assert_declined(DeclineCode::InsufficientFunds, Some(&too_much.transaction_id));
    let ghost = details("export-tomb", 1);
    server.settle_demo(Reverse, &ghost.transaction_id).assert_done("reverse of an unknown transaction");

    let stdout = server.admin(&["txn", "export", "--format", "jsonl"]);
    let out = server.scratch("ledger.jsonl");
    server.admin(&["txn", "export", "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stdout, "--out writes what stdout shows");
    let records: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let of = |kind: &str| records.iter().filter(|r| r["record"] == kind).collect::<Vec<_>>();

    let cards = of("card");
    let row = cards.iter().find(|c| c["card_id"] == card.card_id.as_str()).expect("the card");
    assert_eq!(
        (row["credit_limit"].as_u64(), row["available"].as_u64()),
        (Some(DEFAULT_LIMIT), Some(DEFAULT_LIMIT - 1250))
    );

    let authorizations = of("authorization");
    let find = |txn: &str| {
        *authorizations.iter().find(|a| a["transaction_id"] == txn).unwrap_or_else(|| panic!("{txn} in {stdout}"))
    };
    let a = find(&kept);
    assert_eq!(
        (a["status"].as_str(), a["amount"].as_u64(), a["merchant_id"].as_str()),
        (Some("approved"), Some(1250), Some(MERCHANT))
    );
    assert!(a["approval_code"].as_str().is_some_and(|c| c.len() == 6), "{a}");
    assert_eq!(a["card_id"], card.card_id.as_str());
    assert_eq!(find(&reversed.transaction_id)["status"], "reversed");
    let d = find(&too_much.transaction_id);
    assert_eq!((d["status"].as_str(), d["decline_code"].as_u64()), (Some("declined"), Some(51)));
    let t = find(&ghost.transaction_id);
    assert_eq!(
        (t["status"].as_str(), t["tombstone"].as_bool(), t["card_id"].is_null()),
        (Some("reversed"), Some(true), true)
    );
    let ids: Vec<i64> = authorizations.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    let audit = of("audit");
    let events = |id: &serde_json::Value| -> Vec<&str> {
        audit.iter().filter(|l| l["authorization_id"] == *id).map(|l| l["event"].as_str().unwrap()).collect()
    };
    assert_eq!(events(&find(&reversed.transaction_id)["id"]), ["authorization approved", "authorization reversed"]);
    assert_eq!(events(&t["id"]), ["tombstone recorded"]);
    assert!(audit.iter().any(|l| l["event"] == "card issued" && l["card_id"] == card.card_id.as_str()));

    let bad = server.try_admin(&["txn", "export", "--format", "csv"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.tail(5));
    assert_eq!(bad.stderr.lines().count(), 1, "one line: {}", bad.stderr);
}
