//! Two eapay-server instances on one PostgreSQL ledger (issue 15 §3): the
//! same (merchant, transaction id) sent to both at once is decided once, and
//! the terminal fails over from a dead instance to the other. (That their
//! SQN blocks never overlap is `aaa-server/tests/ledger.rs`,
//! `two_instances_reserve_disjoint_sqns`, on both backends.)
//!
//! Skipped without `EAPAY_TEST_POSTGRES_URL`; a failure under
//! `EAPAY_REQUIRE_INTEROP=1`.

use eapay_tests::terminal::terminal;
use eapay_tests::{details, Method, ScratchDatabase, Server, DEFAULT_LIMIT, MERCHANT};

/// A server on a scratch PostgreSQL database, and a second instance on it.
fn two_servers() -> Option<(ScratchDatabase, Server, Server)> {
    let db = ScratchDatabase::create()?;
    let first = Server::start_on_ledger(&db.url);
    let second = first.second_instance();
    Some((db, first, second))
}

/// The same payment, sent to both instances at the same moment, five times:
/// both answers are the one approval (the repeat gets the original answer),
/// the ledger holds one authorization each time, and the card is charged
/// once each time.
#[test]
fn the_same_payment_at_both_instances_at_once_is_decided_once() {
    let Some((db, first, second)) = two_servers() else { return };
    let card = first.card_with(Method::Aka, &["--confirmation", "required"]);
    for round in 0..5 {
        let d = details(&format!("twice-{round}"), 100);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| first.pay(&card, &d));
            let b = s.spawn(|| second.pay(&card, &d));
            (a.join().expect("first instance"), b.join().expect("second instance"))
        });
        let code_a = a.assert_approved(&first, &d);
        let code_b = b.assert_approved(&second, &d);
        assert_eq!(code_a, code_b, "round {round}: two approvals of one payment");
        let rows = db.text(
            "SELECT count(*)::text FROM authorizations WHERE merchant_id = $1 AND transaction_id = $2",
            &[MERCHANT, &d.transaction_id],
        );
        assert_eq!(rows.as_deref(), Some("1"), "round {round}: authorizations of {}", d.transaction_id);
    }
    assert_eq!(first.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT - 500), "charged once per payment");
    assert_eq!(second.card_amounts(&card), first.card_amounts(&card), "one ledger");
}

/// The first instance is gone (SIGKILL): the terminal, given both, fails
/// over to the second and the payment is approved there.
#[test]
fn the_terminal_fails_over_to_the_other_instance() {
    let Some((_db, first, second)) = two_servers() else { return };
    let card = first.card_with(Method::AkaPrime, &["--confirmation", "required"]);
    first.kill9();
    let reversals = second.scratch("reversals.json");
    let (dead, alive) = (first.auth.to_string(), second.auth.to_string());
    let card_file = card.json.display().to_string();
    let reversal_file = reversals.display().to_string();
    let args = [
        "pay",
        "--server",
        &dead,
        "--server",
        &alive,
        "--acct-server",
        &second.acct.to_string(),
        "--secret",
        &second.secret,
        "--merchant",
        MERCHANT,
        "--amount",
        "2.50",
        "--currency",
        "USD",
        "--card",
        &card_file,
        "--reversals",
        &reversal_file,
        "--timeout",
        "200ms",
        "--retries",
        "1",
        "--transaction-id",
        "FAILOVER-1",
    ];
    let out = terminal(&args);
    let first_line = out.stdout.lines().next().unwrap_or_default();
    assert!(
        out.status.code() == Some(0) && first_line.starts_with("APPROVED 2.50 USD"),
        "{}\n--- second instance ---\n{}",
        out.all(),
        second.stderr()
    );
    let shown = second.txn_show(MERCHANT, "FAILOVER-1").to_lowercase();
    assert!(eapay_tests::has_token(&shown, "approved"), "{shown}");
}
