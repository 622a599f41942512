//! Durability (DESIGN.md §8, issue 3 item 8): an answer leaves the server
//! only after its ledger change is committed. Each test gets an answer,
//! SIGKILLs the server at once (no shutdown code, nothing flushed), and
//! checks the change with the admin CLI and a restarted server.

use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};
use eapay_tests::{details, has_token, Method, Server, DEFAULT_LIMIT, MERCHANT};

/// Access-Accept, SIGKILL: `txn show` has the approval with its code; the
/// restarted server answers the identical request with the original
/// approval, and has charged the card once.
#[test]
fn approval_survives_sigkill_right_after_the_access_accept() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("kill", 300_000);
    let run = server.pay(&card, &d);
    server.kill9();
    let code = run.assert_approved(&server, &d);

    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(
        text.contains(&code) && has_token(&text, "approved"),
        "after SIGKILL, txn show lacks approval {code}:\n{text}"
    );

    server.restart();
    let again = server.pay(&card, &d);
    assert_eq!(again.assert_approved(&server, &d), code, "after restart, the repeat got another code");
    // Charged once: exactly the rest is available.
    let rest = details("rest", DEFAULT_LIMIT - 300_000);
    server.pay(&card, &rest).assert_approved(&server, &rest);
    let one = details("one", 1);
    server.pay(&card, &one).assert_declined(DeclineCode::InsufficientFunds, Some(&one.transaction_id));
}

/// Several approvals in flight at once (group commit), SIGKILL after the
/// last answer: every approved transaction is in the ledger.
#[test]
fn concurrent_approvals_survive_sigkill() {
    let server = Server::start_default();
    let cards: Vec<_> = (0..4).map(|_| server.card_with(Method::Aka, &[])).collect();
    let payments: Vec<_> = cards.iter().map(|_| details("group", 1000)).collect();
    let codes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cards
            .iter()
            .zip(&payments)
            .map(|(card, d)| {
                let server = &server;
                s.spawn(move || server.pay(card, d))
            })
            .collect();
        let runs: Vec<_> = handles.into_iter().map(|h| h.join().expect("payment thread")).collect();
        server.kill9();
        runs.iter().zip(&payments).map(|(run, d)| run.assert_approved(&server, d)).collect()
    });
    for (d, code) in payments.iter().zip(&codes) {
        let text = server.txn_show(MERCHANT, &d.transaction_id);
        assert!(text.contains(code.as_str()), "after SIGKILL, {} lacks approval {code}:\n{text}", d.transaction_id);
    }
}

/// A decline is recorded before the Access-Reject too.
#[test]
fn decline_survives_sigkill() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--limit", "1000"]);
    let d = details("kill-decline", 1001);
    let run = server.pay(&card, &d);
    server.kill9();
    run.assert_declined(DeclineCode::ExceedsLimit, Some(&d.transaction_id));
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "declined") && has_token(&text, "61"), "after SIGKILL:\n{text}");
}

/// The Accounting-Response to a reversal is sent after the reversal is
/// durable: SIGKILL, then the ledger says reversed and the restarted
/// server has the amount back.
#[test]
fn reversal_survives_sigkill_right_after_the_accounting_response() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("kill-rev", DEFAULT_LIMIT);
    server.pay(&card, &d).assert_approved(&server, &d);
    let settled = server.settle_demo(SettlementAction::Reverse, &d.transaction_id);
    server.kill9();
    settled.assert_done("reverse");
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "reversed"), "after SIGKILL, txn show does not say reversed:\n{text}");

    server.restart();
    let all = details("after", DEFAULT_LIMIT);
    server.pay(&card, &all).assert_approved(&server, &all);
}

/// A tombstone (reversal of an unknown transaction) is durable too: after
/// SIGKILL and restart, the late original is still declined 12.
#[test]
fn tombstone_survives_sigkill() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let late = details("kill-tomb", 1000);
    let settled = server.settle_demo(SettlementAction::Reverse, &late.transaction_id);
    server.kill9();
    settled.assert_done("reverse of an unknown transaction");
    server.restart();
    server.pay(&card, &late).assert_declined(DeclineCode::InvalidTransaction, Some(&late.transaction_id));
}

/// `card block` takes effect on a running server and survives a restart.
#[test]
fn blocked_card_stays_blocked_after_restart() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::AkaPrime, &[]);
    server.block(&card);
    server.kill9();
    server.restart();
    let d = details("blocked", 1000);
    server.pay(&card, &d).assert_declined(DeclineCode::RestrictedCard, Some(&d.transaction_id));
}
