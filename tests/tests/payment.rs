//! Payments end to end: the real card (e-card's EAP-AKA/AKA' peer, confirming
//! the payment inside the method) relayed over real RADIUS datagrams to a
//! real `eapay-server` with its SQLite (or PostgreSQL) ledger.
//!
//! Each test runs its own server (nextest runs every test in its own process,
//! so a server shared through a static would be started per test anyway, and
//! never stopped); tests that need a particular `[payment]` policy say so.
//! "No change to balances" is checked through the ledger's own answers: a
//! card with the default limit (500000) still approves exactly its whole
//! limit after the declines, and then declines 51 for one more minor unit.

use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode, SettlementAction};
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::Code;
use eapay_tests::{
    details, eapay_vsa, edit_toml, has_token, hex_dump, payment_attributes, relay_payment, relay_payment_with, renewed,
    section, Card, Method, PaymentRun, ScratchDatabase, Server, DEFAULT_LIMIT, MERCHANT,
};

/// The card's whole available amount is `remaining`: exactly that much is
/// approved, and then a single minor unit is declined 51.
fn assert_available(server: &Server, card: &Card, remaining: u64) {
    if remaining > 0 {
        let all = details("rest", remaining);
        let run = server.pay(card, &all);
        assert_eq!(
            run.reply.code,
            Code::AccessAccept,
            "the card should still have {remaining} available (was something charged?): {}",
            run.describe()
        );
        run.assert_approved(server, &all);
    }
    let one = details("one", 1);
    let run = server.pay(card, &one);
    assert_eq!(
        run.answer.decline_code,
        Some(DeclineCode::InsufficientFunds.value()),
        "after spending {remaining}, one more unit must be declined 51 (was something not charged?): {}",
        run.describe()
    );
}

/// A card issued `required` (the server's default): it must confirm.
fn required_card(server: &Server, method: Method) -> Card {
    // A TTLS/PAP card needs a PIN; the others take none.
    let pin: &[&str] = if method == Method::Ttls { &["--pin", "1357"] } else { &[] };
    server.card_with(method, pin)
}

/// `txn show` of a declined payment names the status and the code, and
/// has an audit line for the decline.
fn assert_recorded_decline(server: &Server, d: &PaymentDetails, code: DeclineCode) {
    let text = server.txn_show(&d.merchant_id, &d.transaction_id);
    let n = code.value().to_string();
    assert!(
        has_token(&text, "declined") && has_token(&text, &n),
        "txn show {}:{} should show a decline {n}:\n{text}",
        d.merchant_id,
        d.transaction_id,
    );
    assert!(
        text.lines().any(|l| has_token(l, "declined") && l.contains(&format!("code={n}"))),
        "txn show {}:{} has no audit line for the decline {n}:\n{text}",
        d.merchant_id,
        d.transaction_id,
    );
}

// ---------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------

/// DESIGN.md §1 steps 1-7 with both methods: the card confirms the payment
/// inside the method, the server approves, the terminal gets the approval
/// code, amount, keys and a receipt that verifies offline with `issuer.pub`,
/// and the card gets the same result inside its protected channel.
#[test]
fn confirmed_payment_is_approved_with_code_receipt_and_keys() {
    let server = Server::start_default();
    for method in [Method::Sim, Method::Aka, Method::AkaPrime] {
        let card = required_card(&server, method);
        let d = details("ok", 1250);
        let run = server.pay(&card, &d);
        let code = run.assert_approved(&server, &d);
        assert_eq!(run.confirmation(), Some(CardConfirmation::Confirmed), "{method:?}: {}", run.describe());
        assert_eq!(run.answer.auth_method.as_deref(), Some(method.arg()), "{}", run.describe());

        // The ledger has it, with the same code and receipt.
        let text = server.txn_show(MERCHANT, &d.transaction_id);
        let receipt = hex_dump(run.answer.receipt.as_deref().unwrap_or_default());
        assert!(
            text.contains(&code) && text.to_lowercase().contains("approved"),
            "txn show does not show approval {code}:\n{text}"
        );
        assert!(text.to_lowercase().contains(&receipt), "txn show does not show the receipt {receipt}:\n{text}");
        let receipt_line = text.lines().find(|l| l.to_lowercase().contains(&receipt)).unwrap_or_default();
        assert!(has_token(receipt_line, "verifies"), "txn show should say the receipt verifies: {receipt_line}");
        // The card's confirmation is kept as evidence: the canonical details.
        assert!(
            text.to_lowercase().contains(&hex_dump(&d.canonical())),
            "txn show lacks the confirmed details {} as evidence:\n{text}",
            hex_dump(&d.canonical())
        );
        assert!(
            text.lines().any(|l| has_token(l, "approved") && l.contains(&format!("code={code}"))),
            "no audit line for the approval:\n{text}"
        );
        let list = server.admin(&["txn", "list", "--card", &card.card_id]);
        assert!(
            list.contains(&d.transaction_id),
            "txn list --card {} lacks {}:\n{list}",
            card.card_id,
            d.transaction_id
        );
    }
    server.assert_running();
}

/// Two approvals of the same card get different codes (unique, not a counter
/// one could guess from a receipt is beyond an end-to-end test).
#[test]
fn approval_codes_differ_between_payments() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let (a, b) = (details("c1", 100), details("c2", 100));
    let first = server.pay(&card, &a).assert_approved(&server, &a);
    let second = server.pay(&card, &b).assert_approved(&server, &b);
    assert_ne!(first, second, "two payments got the same approval code");
}

/// 64-byte merchant and transaction ids make the receipt longer than one
/// Vendor-Specific holds: it comes split over several Eapay-Receipt
/// attributes, and the concatenation verifies.
#[test]
fn long_receipt_is_split_over_attributes_and_verifies() {
    let server = Server::start_default();
    let merchant = format!("M-{}", "L".repeat(62));
    server.admin(&["merchant", "add", &merchant, "--client", "demo-terminal"]);
    let card = required_card(&server, Method::AkaPrime);
    let d = PaymentDetails {
        merchant_id: merchant.clone(),
        transaction_id: format!("T-{}", "9".repeat(62)),
        ..details("long", 4321)
    };
    let run = server.pay(&card, &d);
    run.assert_approved(&server, &d);
    let parts = run
        .reply
        .vendor_attributes(eapay::VENDOR_ID)
        .unwrap()
        .iter()
        .filter(|a| a.vendor_type == eapay::RECEIPT)
        .count();
    assert!(parts >= 2, "a {}-byte receipt in {parts} attribute(s)", run.answer.receipt.as_ref().map_or(0, Vec::len));
}

/// A standard peer (no confirmation) with an `optional` card: decided on the
/// terminal's attributes, answered Not-Confirmed.
#[test]
fn optional_card_without_confirmation_is_approved_not_confirmed() {
    let server = Server::start_default();
    let card = server.card(Method::Aka);
    let d = details("opt", 2000);
    let run = server.pay_unconfirmed(&card, &d);
    run.assert_approved(&server, &d);
    assert_eq!(run.confirmation(), Some(CardConfirmation::NotConfirmed), "{}", run.describe());
    assert_available(&server, &card, DEFAULT_LIMIT - 2000);
}

// ---------------------------------------------------------------------------
// 59: card confirmation
// ---------------------------------------------------------------------------

/// A `required` card that does not confirm is declined 59, Not-Confirmed.
#[test]
fn required_card_without_confirmation_is_declined_59() {
    let server = Server::start_default();
    let card = required_card(&server, Method::AkaPrime);
    let d = details("noconf", 1000);
    let run = server.pay_unconfirmed(&card, &d);
    run.assert_declined(DeclineCode::SuspectedFraud, Some(&d.transaction_id));
    assert_eq!(run.confirmation(), Some(CardConfirmation::NotConfirmed), "{}", run.describe());
    assert_recorded_decline(&server, &d, DeclineCode::SuspectedFraud);
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// The Done-when case: the card confirmed 10.00, the terminal asks for
/// 1000.00 (and for the opposite). Declined 59, Mismatch, nothing charged;
/// in every method (AKA's MAC-covered attribute, the TLS family's signed
/// confirmation).
#[test]
fn terminal_changing_the_amount_after_the_card_confirmed_is_declined_59() {
    let server = Server::start_default();
    for method in [Method::Sim, Method::Aka, Method::AkaPrime, Method::Tls, Method::Ttls] {
        let card = required_card(&server, method);
        let confirmed = details("tamper", 1000);
        let asserted = PaymentDetails { amount: 100_000, ..confirmed.clone() };
        let run = server.pay_tampered(&card, &confirmed, &asserted);
        run.assert_declined(DeclineCode::SuspectedFraud, Some(&asserted.transaction_id));
        assert_eq!(run.confirmation(), Some(CardConfirmation::Mismatch), "{method:?}: {}", run.describe());

        // Any other field counts too: here the merchant's transaction id.
        let confirmed = details("tamper2", 1000);
        let asserted = renewed(&confirmed, "other");
        let run = server.pay_tampered(&card, &confirmed, &asserted);
        run.assert_declined(DeclineCode::SuspectedFraud, Some(&asserted.transaction_id));
        assert_eq!(run.confirmation(), Some(CardConfirmation::Mismatch), "{method:?}: {}", run.describe());
        assert_available(&server, &card, DEFAULT_LIMIT);
    }
    // An `optional` card that does confirm is held to what it confirmed.
    let card = server.card(Method::Aka);
    let confirmed = details("tamper3", 500);
    let asserted = PaymentDetails { amount: 5000, ..confirmed.clone() };
    let run = server.pay_tampered(&card, &confirmed, &asserted);
    run.assert_declined(DeclineCode::SuspectedFraud, Some(&asserted.transaction_id));
    assert_eq!(run.confirmation(), Some(CardConfirmation::Mismatch), "{}", run.describe());
}

// ---------------------------------------------------------------------------
// 12: invalid transaction
// ---------------------------------------------------------------------------

/// No payment attributes: plain authentication gets no approval (and no
/// keys), whatever the card's confirmation policy.
#[test]
fn authentication_only_request_is_declined_12() {
    let server = Server::start_default();
    for card in [server.card(Method::Aka), required_card(&server, Method::AkaPrime)] {
        let run = server.authenticate_only(&card);
        run.assert_declined(DeclineCode::InvalidTransaction, None);
        assert_eq!(run.answer.transaction_id, None, "no transaction id was sent: {}", run.describe());
    }
    // A terminal that sends the attributes only in the first Access-Request
    // is a payment all the same (the attributes need not be repeated).
    let card = required_card(&server, Method::Aka);
    let d = details("first-only", 700);
    let attributes = payment_attributes(&d);
    let run = relay_payment(&server, &card.file(), Some(d.canonical()), &mut |round| {
        if round == 0 {
            attributes.clone()
        } else {
            Vec::new()
        }
    });
    run.assert_approved(&server, &d);
}

/// Terminal time more than 5 minutes off the server's, either way.
#[test]
fn terminal_time_outside_the_window_is_declined_12() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    for offset in [-6 * 60_000i64, 6 * 60_000] {
        let mut d = details("time", 1000);
        d.terminal_time_ms = d.terminal_time_ms.checked_add_signed(offset).expect("time");
        server.pay(&card, &d).assert_declined(DeclineCode::InvalidTransaction, Some(&d.transaction_id));
        assert_recorded_decline(&server, &d, DeclineCode::InvalidTransaction);
    }
    // Inside the window is fine.
    let mut d = details("time-ok", 1000);
    d.terminal_time_ms -= 60_000;
    server.pay(&card, &d).assert_approved(&server, &d);
}

/// A nonce the merchant already used, with a new transaction id: a replayed
/// payment request is declined, never approved twice.
#[test]
fn reused_terminal_nonce_with_a_new_transaction_id_is_declined_12() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let first = details("nonce", 1000);
    server.pay(&card, &first).assert_approved(&server, &first);
    let replay = PaymentDetails { transaction_id: eapay_tests::transaction_id("nonce2"), ..first.clone() };
    let run = server.pay(&card, &replay);
    run.assert_declined(DeclineCode::InvalidTransaction, Some(&replay.transaction_id));
    assert_available(&server, &card, DEFAULT_LIMIT - 1000);
}

/// ISO 4217 has no 999; 100 installments exceed max_installments (99).
#[test]
fn unknown_currency_and_too_many_installments_are_declined_12() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let d = PaymentDetails { currency: 999, ..details("cur", 1000) };
    server.pay(&card, &d).assert_declined(DeclineCode::InvalidTransaction, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::InvalidTransaction);
    let d = PaymentDetails { installments: 100, ..details("inst", 1000) };
    server.pay(&card, &d).assert_declined(DeclineCode::InvalidTransaction, Some(&d.transaction_id));
    let d = PaymentDetails { installments: 99, ..details("inst-ok", 1000) };
    server.pay(&card, &d).assert_approved(&server, &d);
    assert_available(&server, &card, DEFAULT_LIMIT - 1000);
}

/// Bad input: a terminal that repeats the attributes must repeat them
/// unchanged; here the amount grows after the first round (the card
/// confirms nothing, so only the terminal's inconsistency is judged).
#[test]
fn payment_attributes_changing_between_rounds_are_declined_12() {
    let server = Server::start_default();
    let card = server.card(Method::Aka);
    let first = details("rounds", 1000);
    let later = PaymentDetails { amount: 90_000, ..first.clone() };
    let (a, b) = (payment_attributes(&first), payment_attributes(&later));
    let run = relay_payment(&server, &card.file(), None, &mut |round| if round == 0 { a.clone() } else { b.clone() });
    assert!(run.rounds > 1, "the server decided before a second round: {}", run.describe());
    run.assert_declined(DeclineCode::InvalidTransaction, Some(&first.transaction_id));

    // Present in the first round, missing from a later one, then back: a
    // later round that adds attributes the first one did not have.
    let d = details("rounds2", 1000);
    let attrs = payment_attributes(&d);
    let run = relay_payment(&server, &card.file(), None, &mut |round| {
        if round == 0 {
            Vec::new()
        } else {
            attrs.clone()
        }
    });
    assert_eq!(run.reply.code, Code::AccessReject, "payment attributes appearing mid-conversation: {}", run.describe());
    assert_eq!(
        run.answer.decline_code,
        Some(DeclineCode::InvalidTransaction.value()),
        "payment attributes appearing mid-conversation: {}",
        run.describe()
    );
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// Bad input: duplicated, missing, wrong-length and out-of-range payment
/// attributes each get decline 12 with a reason, and change no balance.
#[test]
fn duplicated_missing_or_malformed_payment_attributes_are_declined_12() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let good = details("bad", 1000);
    let base = payment_attributes(&good);
    let without = |t: u8| -> Vec<_> { base.iter().filter(|a| a.value.get(4) != Some(&t)).cloned().collect() };
    let mut cases: Vec<(String, Vec<aaa_proto::radius::Attribute>, bool)> = Vec::new();
    let mut dup = base.clone();
    dup.push(eapay_vsa(eapay::AMOUNT, &1000u64.to_be_bytes()));
    cases.push(("Eapay-Amount twice (same value)".into(), dup, true));
    let mut dup = base.clone();
    dup.push(eapay_vsa(eapay::TRANSACTION_ID, b"another-id"));
    cases.push(("Eapay-Transaction-Id twice".into(), dup, false));
    for (t, name) in [
        (eapay::TERMINAL_TIME, "Eapay-Terminal-Time"),
        (eapay::TERMINAL_NONCE, "Eapay-Terminal-Nonce"),
        (eapay::AMOUNT, "Eapay-Amount"),
        (eapay::MERCHANT_ID, "Eapay-Merchant-Id"),
        (eapay::TRANSACTION_ID, "Eapay-Transaction-Id"),
    ] {
        cases.push((format!("{name} missing"), without(t), t != eapay::TRANSACTION_ID));
    }
    let replaced = |t: u8, value: &[u8]| -> Vec<_> {
        let mut v = without(t);
        v.push(eapay_vsa(t, value));
        v
    };
    cases.push(("Eapay-Terminal-Nonce of 15 bytes".into(), replaced(eapay::TERMINAL_NONCE, &[7; 15]), true));
    cases.push(("Eapay-Amount of 4 bytes".into(), replaced(eapay::AMOUNT, &1000u32.to_be_bytes()), true));
    cases.push(("Eapay-Currency of 2 bytes".into(), replaced(eapay::CURRENCY, &840u16.to_be_bytes()), true));
    cases.push(("Eapay-Terminal-Time of 4 bytes".into(), replaced(eapay::TERMINAL_TIME, &[0, 0, 0, 1]), true));
    cases.push(("empty Eapay-Transaction-Id".into(), replaced(eapay::TRANSACTION_ID, b""), false));
    cases.push(("Eapay-Transaction-Id with a space".into(), replaced(eapay::TRANSACTION_ID, b"a b"), false));
    cases.push(("Eapay-Transaction-Id of 65 bytes".into(), replaced(eapay::TRANSACTION_ID, &[b'T'; 65]), false));
    cases.push(("Eapay-Merchant-Id of 65 bytes".into(), replaced(eapay::MERCHANT_ID, &[b'M'; 65]), true));
    cases.push(("Eapay-Merchant-Id with a control character".into(), replaced(eapay::MERCHANT_ID, b"M-\x01"), true));

    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, attrs, txn_valid)| {
                let (server, card, good) = (&server, &card, &good);
                s.spawn(move || {
                    let run = server.pay_raw(card, good, attrs.clone());
                    let txn = txn_valid.then_some(good.transaction_id.as_str());
                    run.check_declined(DeclineCode::InvalidTransaction, txn).err().map(|e| format!("{name}: {e}"))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("case thread")).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert_available(&server, &card, DEFAULT_LIMIT);
}

// ---------------------------------------------------------------------------
// 13, 14, 51, 54, 57, 61, 62, 63, 65, 94
// ---------------------------------------------------------------------------

/// Zero, "negative" (integer64 above i64::MAX) and above max_amount.
#[test]
fn zero_negative_and_oversized_amounts_are_declined_13() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    for amount in [0, u64::MAX, i64::MAX as u64 + 1, 1_000_000_000_001] {
        let d = details("amount", amount);
        let run = server.pay(&card, &d);
        assert_eq!(
            run.answer.decline_code,
            Some(DeclineCode::InvalidAmount.value()),
            "amount {amount}: {}",
            run.describe()
        );
        run.assert_declined(DeclineCode::InvalidAmount, Some(&d.transaction_id));
    }
    assert_available(&server, &card, DEFAULT_LIMIT);
}

/// An identity whose card id was never issued.
#[test]
fn unknown_card_is_declined_14() {
    let server = Server::start_default();
    let issued = required_card(&server, Method::Aka);
    let mut file = issued.file();
    file.card_id = "ffffffffffffffffffff".to_owned();
    file.identity = format!("0ffffffffffffffffffff@{}", server.realm);
    let d = details("unknown", 1000);
    let attributes = payment_attributes(&d);
    let run = relay_payment(&server, &file, Some(d.canonical()), &mut |_| attributes.clone());
    run.assert_declined(DeclineCode::InvalidCard, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::InvalidCard);
}

/// Spending in steps: the second payment exceeds what the first left.
#[test]
fn amount_above_the_available_amount_is_declined_51() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let first = details("funds", 400_000);
    server.pay(&card, &first).assert_approved(&server, &first);
    let second = details("funds2", 100_001);
    server.pay(&card, &second).assert_declined(DeclineCode::InsufficientFunds, Some(&second.transaction_id));
    assert_recorded_decline(&server, &second, DeclineCode::InsufficientFunds);
    assert_available(&server, &card, 100_000);
}

#[test]
fn expired_card_is_declined_54() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--expires", "2020-01"]);
    let d = details("expired", 1000);
    server.pay(&card, &d).assert_declined(DeclineCode::ExpiredCard, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::ExpiredCard);
    // A card valid until a future month pays.
    let card = server.card_with(Method::Aka, &["--expires", "2099-12"]);
    let d = details("valid", 1000);
    server.pay(&card, &d).assert_approved(&server, &d);
}

/// The client `demo-terminal` may act for M-DEMO only: another merchant id
/// is declined 57 and nothing is recorded under it.
#[test]
fn merchant_the_client_may_not_act_for_is_declined_57() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let d = PaymentDetails { merchant_id: "M-NOT-OURS".to_owned(), ..details("perm", 1000) };
    server.pay(&card, &d).assert_declined(DeclineCode::NotPermitted, Some(&d.transaction_id));
    let shown = server.try_admin(&["txn", "show", &format!("{}:{}", d.merchant_id, d.transaction_id)]);
    assert!(
        !shown.success(),
        "a 57 must not record an authorization under the other merchant's transaction id:\n{}",
        shown.tail(20)
    );
    // The same transaction id is still free for that merchant's own
    // terminal; for us, the real merchant works.
    let ok = details("perm-ok", 1000);
    server.pay(&card, &ok).assert_approved(&server, &ok);
}

/// A EUR card (978) cannot pay in USD (840).
#[test]
fn card_currency_other_than_the_payment_currency_is_declined_57() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--currency", "978"]);
    let d = details("eur", 1000);
    server.pay(&card, &d).assert_declined(DeclineCode::NotPermitted, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::NotPermitted);
    let eur = PaymentDetails { currency: 978, ..details("eur-ok", 1000) };
    server.pay(&card, &eur).assert_approved(&server, &eur);
    // `--currency USD` (alphabetic) is the same as 840.
    let card = server.card_with(Method::Aka, &["--currency", "USD"]);
    let usd = details("usd", 1000);
    server.pay(&card, &usd).assert_approved(&server, &usd);
}

#[test]
fn amount_above_the_credit_limit_is_declined_61() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--limit", "20000"]);
    let d = details("limit", 20_001);
    server.pay(&card, &d).assert_declined(DeclineCode::ExceedsLimit, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::ExceedsLimit);
    assert_available(&server, &card, 20_000);
}

#[test]
fn blocked_card_is_declined_62() {
    let server = Server::start_default();
    let card = required_card(&server, Method::AkaPrime);
    let before = details("pre-block", 1000);
    server.pay(&card, &before).assert_approved(&server, &before);
    server.block(&card);
    let list = server.admin(&["card", "list"]);
    let row = list.lines().find(|l| l.contains(&card.card_id)).unwrap_or_else(|| panic!("card list:\n{list}"));
    assert!(has_token(row, "blocked"), "card list does not show the card blocked: {row}");
    let d = details("blocked", 1000);
    server.pay(&card, &d).assert_declined(DeclineCode::RestrictedCard, Some(&d.transaction_id));
    assert_recorded_decline(&server, &d, DeclineCode::RestrictedCard);
}

/// A card whose K is not the issuer's: authentication fails, declined 63,
/// and the decline is recorded.
#[test]
fn card_with_the_wrong_key_is_declined_63() {
    let server = Server::start_default();
    for method in [Method::Sim, Method::Aka, Method::AkaPrime] {
        let card = required_card(&server, method);
        let mut file = card.file();
        if let Some(aka) = file.aka.as_mut() {
            aka.k = if aka.k.starts_with('0') { format!("1{}", &aka.k[1..]) } else { format!("0{}", &aka.k[1..]) };
        }
        let d = details("wrong-k", 1000);
        let attributes = payment_attributes(&d);
        let run = relay_payment(&server, &file, Some(d.canonical()), &mut |_| attributes.clone());
        run.assert_declined(DeclineCode::SecurityViolation, Some(&d.transaction_id));
        assert_recorded_decline(&server, &d, DeclineCode::SecurityViolation);
        assert_available(&server, &card, DEFAULT_LIMIT);
    }
}

/// velocity_max = 2: the third approval within the window is declined 65;
/// another card is not affected.
#[test]
fn third_payment_within_the_velocity_window_is_declined_65() {
    let server = Server::start_with_payment(&[("velocity_max", 2)]);
    let card = required_card(&server, Method::Aka);
    for n in 0..2 {
        let d = details(&format!("vel{n}"), 100);
        server.pay(&card, &d).assert_approved(&server, &d);
    }
    let third = details("vel2", 100);
    server.pay(&card, &third).assert_declined(DeclineCode::ExceedsFrequency, Some(&third.transaction_id));
    assert_recorded_decline(&server, &third, DeclineCode::ExceedsFrequency);
    let other = required_card(&server, Method::Aka);
    let d = details("vel-other", 100);
    server.pay(&other, &d).assert_approved(&server, &d);
}

/// The same (merchant, transaction id) with other details (here the amount,
/// with a new nonce) is declined 94 and leaves the original as it was.
#[test]
fn same_transaction_id_with_different_details_is_declined_94() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let original = details("dup", 1000);
    let code = server.pay(&card, &original).assert_approved(&server, &original);
    let changed = PaymentDetails { amount: 2000, terminal_nonce: rand_nonce(), ..original.clone() };
    server.pay(&card, &changed).assert_declined(DeclineCode::DuplicateTransaction, Some(&changed.transaction_id));
    let text = server.txn_show(MERCHANT, &original.transaction_id);
    assert!(text.contains(&code), "the original approval {code} is gone:\n{text}");
    assert_available(&server, &card, DEFAULT_LIMIT - 1000);
}

fn rand_nonce() -> [u8; 16] {
    details("n", 1).terminal_nonce
}

// ---------------------------------------------------------------------------
// Exactly once
// ---------------------------------------------------------------------------

/// DESIGN.md §8: the same request again (same details, nonce and time; a new
/// EAP conversation) gets the original approval code, and is charged once.
#[test]
fn identical_repeat_returns_the_original_approval_and_charges_once() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let d = details("repeat", 300_000);
    let first = server.pay(&card, &d);
    let code = first.assert_approved(&server, &d);
    for _ in 0..2 {
        let again = server.pay(&card, &d);
        let repeated = again.assert_approved(&server, &d);
        assert_eq!(repeated, code, "a repeat got a new approval code: {}", again.describe());
        assert_eq!(again.answer.receipt, first.answer.receipt, "a repeat got another receipt: {}", again.describe());
    }
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 300_000), "card list after the repeats");
    assert_available(&server, &card, DEFAULT_LIMIT - 300_000);
}

/// RFC 5080 + DESIGN.md §8: the final Access-Request retransmitted byte for
/// byte gets the byte-identical answer, and the payment is charged once.
#[test]
fn retransmitted_final_request_gets_the_identical_answer_and_charges_once() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let d = details("retx", 250_000);
    let run = server.pay(&card, &d);
    run.assert_approved(&server, &d);
    for _ in 0..3 {
        let again = run.retransmit_final();
        assert_eq!(
            hex_dump(&again),
            hex_dump(&run.reply_datagram),
            "the retransmission got another answer (a second decision?)"
        );
    }
    // The same for a decline.
    let declined = details("retx-decline", 250_001);
    let run = server.pay(&card, &declined);
    run.assert_declined(DeclineCode::InsufficientFunds, Some(&declined.transaction_id));
    assert_eq!(hex_dump(&run.retransmit_final()), hex_dump(&run.reply_datagram), "retransmitted decline");
    assert_available(&server, &card, DEFAULT_LIMIT - 250_000);
}

/// A new transaction id with the same amount is a new payment (not a
/// repeat): both are charged.
#[test]
fn same_amount_under_a_new_transaction_id_is_charged_again() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let a = details("twice", 200_000);
    let b = renewed(&a, "twice2");
    let code_a = server.pay(&card, &a).assert_approved(&server, &a);
    let code_b = server.pay(&card, &b).assert_approved(&server, &b);
    assert_ne!(code_a, code_b);
    assert_available(&server, &card, DEFAULT_LIMIT - 400_000);
}

// ---------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------

/// `init` writes the configuration with the `[payment]` defaults, the
/// issuer's keys and the SQLite ledger; `serve` signs receipts with that key.
#[test]
fn init_writes_keys_ledger_and_payment_defaults() {
    let server = Server::start_default();
    for file in ["eapay.toml", "issuer.pub", "issuer-key.sealed", "ledger.db"] {
        assert!(server.data_dir.join(file).is_file(), "init did not write {file}");
    }
    let config: toml::Table = std::fs::read_to_string(&server.config).unwrap().parse().unwrap();
    let payment = config.get("payment").and_then(|p| p.as_table()).expect("[payment] in eapay.toml");
    for (key, value) in [
        ("time_window_secs", 300),
        ("velocity_max", 30),
        ("velocity_window_secs", 60),
        ("max_amount", 1_000_000_000_000),
        ("max_installments", 99),
    ] {
        assert_eq!(payment.get(key).and_then(|v| v.as_integer()), Some(value), "[payment] {key}");
    }
    let ledger = config.get("ledger").and_then(|l| l.get("url")).and_then(|u| u.as_str()).unwrap_or_default();
    assert!(ledger.starts_with("sqlite:") && ledger.ends_with("ledger.db"), "[ledger] url = {ledger:?}");
    // The issuer key signs what this server approves (checked in the receipt).
    let card = required_card(&server, Method::Aka);
    let d = details("init", 10);
    server.pay(&card, &d).assert_approved(&server, &d);
    let merchants = server.admin(&["merchant", "list"]);
    let row = merchants.lines().find(|l| has_token(l, MERCHANT)).unwrap_or_else(|| panic!("{merchants}"));
    assert!(has_token(row, "demo-terminal"), "M-DEMO is not registered for demo-terminal: {row}");
}

/// `merchant add` lets the client act for another merchant, on the running
/// server: declined 57 before, approved after. A merchant registered for
/// another client (`other-terminal`, 127.0.0.2) stays off limits.
#[test]
fn merchant_added_for_the_client_can_be_paid() {
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        let radius = section(config, "radius");
        let clients = radius.get_mut("clients").and_then(|c| c.as_array_mut()).expect("[[radius.clients]]");
        let mut other = toml::Table::new();
        other.insert("name".into(), "other-terminal".into());
        other.insert("address".into(), "127.0.0.2/32".into());
        other.insert("secret".into(), "other-secret".into());
        clients.push(toml::Value::Table(other));
    });
    let card = required_card(&server, Method::Aka);
    let before = PaymentDetails { merchant_id: "M-SECOND".to_owned(), ..details("m2", 100) };
    server.pay(&card, &before).assert_declined(DeclineCode::NotPermitted, Some(&before.transaction_id));
    server.admin(&["merchant", "add", "M-SECOND", "--client", "demo-terminal", "--name", "Second Shop"]);
    server.admin(&["merchant", "add", "M-THIRD", "--client", "other-terminal"]);
    let list = server.admin(&["merchant", "list"]);
    assert!(list.contains("M-SECOND") && list.contains("Second Shop"), "merchant list:\n{list}");
    let after = PaymentDetails { merchant_id: "M-SECOND".to_owned(), ..details("m2b", 100) };
    server.pay(&card, &after).assert_approved(&server, &after);
    let text = server.txn_show("M-SECOND", &after.transaction_id);
    assert!(has_token(&text, "approved"), "{text}");
    let third = PaymentDetails { merchant_id: "M-THIRD".to_owned(), ..details("m3", 100) };
    server.pay(&card, &third).assert_declined(DeclineCode::NotPermitted, Some(&third.transaction_id));
    let list = server.admin(&["txn", "list", "--merchant", "M-SECOND"]);
    assert!(list.contains(&after.transaction_id) && !list.contains(&third.transaction_id), "{list}");
}

/// The merchants eapay.toml lists for a terminal are links that follow the
/// file: removed there, the terminal is refused 57 after a restart; listed
/// again, it pays again. A link made with `merchant add --client` stays.
#[test]
fn merchant_links_from_the_configuration_follow_it() {
    let mut server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let first = details("link-1", 100);
    server.pay(&card, &first).assert_approved(&server, &first);
    server.admin(&["merchant", "add", "M-KEPT", "--client", "demo-terminal"]);
    let set_demo_merchants = |server: &Server, merchants: &[&str]| {
        let list = toml::Value::Array(merchants.iter().map(|m| toml::Value::from(*m)).collect());
        edit_toml(&server.config, |config| {
            for (section_name, entries) in [("radius", "clients"), ("diameter", "peers")] {
                let terminals = section(config, section_name).get_mut(entries).and_then(|e| e.as_array_mut());
                for terminal in terminals.into_iter().flatten() {
                    terminal.as_table_mut().expect("terminal").insert("merchants".into(), list.clone());
                }
            }
        });
    };
    set_demo_merchants(&server, &[]);
    server.kill9();
    server.restart();
    let refused = details("link-2", 100);
    server.pay(&card, &refused).assert_declined(DeclineCode::NotPermitted, Some(&refused.transaction_id));
    let list = server.admin(&["merchant", "list"]);
    let row = |id: &str| list.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_string();
    assert!(!row(MERCHANT).contains("demo-terminal"), "the config link is gone:\n{list}");
    assert!(row("M-KEPT").contains("demo-terminal"), "the admin link stays:\n{list}");

    set_demo_merchants(&server, &[MERCHANT]);
    server.kill9();
    server.restart();
    let back = details("link-3", 100);
    server.pay(&card, &back).assert_approved(&server, &back);
}

/// Admin errors are one line on stderr and exit status 2, never a panic.
#[test]
fn admin_errors_are_one_line_and_exit_2() {
    let server = Server::start_default();
    let card_file = server.scratch("never.json");
    let card_file = card_file.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["txn", "show", "M-DEMO:no-such-transaction"],
        vec!["txn", "show", "999999"],
        vec!["card", "block", "ffffffffffffffffffff"],
        vec!["card", "unblock", "ffffffffffffffffffff"],
        vec!["card", "unlock-pin", "ffffffffffffffffffff"],
        vec!["merchant", "remove-client", "M-DEMO", "--client", "no-such-terminal"],
        vec!["merchant", "add", "M-X", "--client", "no-such-terminal"],
        vec!["card", "issue", "--method", "aka", "--card-file", card_file, "--currency", "XYZ"],
        vec!["card", "issue", "--method", "aka", "--card-file", card_file, "--expires", "2030-13"],
        vec!["card", "issue", "--method", "aka", "--card-file", card_file, "--confirmation", "sometimes"],
    ];
    for args in cases {
        let out = server.try_admin(&args);
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            out.status.code() == Some(2) && lines.len() == 1 && !out.stderr.contains("panicked"),
            "`{}`: want exit 2 and one line on stderr:\n{}",
            args.join(" "),
            out.tail(10)
        );
    }
    assert!(!server.scratch("never.json").exists(), "a failed card issue left a card file");
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// `[ledger] url = "postgres://..."`: approval, identical repeat (original
/// code, one charge) and reversal against a fresh database.
#[test]
fn postgres_ledger_approves_repeats_and_reverses() {
    let Some(db) = ScratchDatabase::create() else { return };
    let server = Server::start_on_ledger(&db.url);
    let card = required_card(&server, Method::Aka);
    let d = details("pg", 300_000);
    let code = server.pay(&card, &d).assert_approved(&server, &d);
    let again = server.pay(&card, &d);
    assert_eq!(again.assert_approved(&server, &d), code, "repeat on PostgreSQL: {}", again.describe());
    let over = details("pg-over", 200_001);
    server.pay(&card, &over).assert_declined(DeclineCode::InsufficientFunds, Some(&over.transaction_id));
    server.settle_demo(SettlementAction::Reverse, &d.transaction_id).assert_done("reverse on PostgreSQL");
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(text.to_lowercase().contains("reversed"), "txn show after the reversal:\n{text}");
    assert_available(&server, &card, DEFAULT_LIMIT);
    // It is that database that holds the ledger.
    let status = db.text(
        "SELECT status || ' ' || approval_code FROM authorizations WHERE merchant_id = $1 AND transaction_id = $2",
        &[MERCHANT, &d.transaction_id],
    );
    assert_eq!(status, Some(format!("reversed {code}")), "the authorization in {}", db.url);
    drop(server);
    drop(db);
}

/// Guards the harness: a decline check must fail on an approval and the
/// reverse (every test here must be able to fail).
#[test]
fn harness_checks_can_fail() {
    let server = Server::start_default();
    let card = required_card(&server, Method::Aka);
    let d = details("harness", 100);
    let run: PaymentRun = server.pay(&card, &d);
    run.assert_approved(&server, &d);
    assert!(run.check_declined(DeclineCode::InvalidTransaction, None).is_err(), "check_declined passed an approval");
    let other = PaymentDetails { amount: 101, ..d.clone() };
    assert!(run.check_approved(&server, &other).is_err(), "check_approved passed another amount");
    let other = PaymentDetails { transaction_id: "other".into(), ..d.clone() };
    assert!(run.check_approved(&server, &other).is_err(), "check_approved passed another transaction id");
    let declined = server.pay(&card, &details("harness-decline", 0));
    declined.assert_declined(DeclineCode::InvalidAmount, None);
    assert!(declined.check_declined(DeclineCode::InvalidTransaction, None).is_err(), "wrong decline code passed");
    assert!(declined.check_approved(&server, &d).is_err(), "check_approved passed a decline");
}

/// The approval is committed when the card has authenticated, but with
/// AT_RESULT_IND it reaches the card in a Notification round first. A card
/// (or a forging terminal: Client-Error carries no MAC) that ends the
/// conversation there never completes the payment: the terminal gets a
/// decline without approval attributes and the ledger reverses the approval.
#[test]
fn conversation_failing_after_the_approval_is_reversed_not_answered_as_approved() {
    const AKA_NOTIFICATION: u8 = 12;
    const AKA_CLIENT_ERROR: u8 = 14;
    let server = Server::start_default();
    let card = required_card(&server, Method::AkaPrime);
    let d = details("withdrawn", 700);
    let attributes = payment_attributes(&d);
    let mut replaced = false;
    let run = relay_payment_with(
        &server,
        &card.file(),
        Some(d.canonical()),
        &mut |_| attributes.clone(),
        &mut |request, response| match request {
            // EAP-Request/AKA'-Notification: answer with AKA-Client-Error
            // (code 0, "unable to process packet") instead.
            [1, id, _, _, kind, AKA_NOTIFICATION, ..] => {
                replaced = true;
                vec![2, *id, 0, 12, *kind, AKA_CLIENT_ERROR, 0, 0, 22, 1, 0, 0]
            }
            _ => response,
        },
    );
    assert!(replaced, "the server sent no Notification round (AT_RESULT_IND): {}", run.describe());
    assert_eq!(run.reply.code, Code::AccessReject, "{}", run.describe());
    run.assert_declined(DeclineCode::SecurityViolation, Some(&d.transaction_id));
    assert_eq!(run.answer.approval_code, None, "approval attributes in a reject: {}", run.describe());
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "reversed"), "the approval should be reversed in the ledger:\n{text}");
    // Nothing stays charged: the whole limit is still available.
    assert_available(&server, &card, DEFAULT_LIMIT);
}
