//! The payment ledger through its public API, every scenario on SQLite and,
//! when `EAPAY_TEST_POSTGRES_URL` names a server, on PostgreSQL too (each
//! test in a database of its own, dropped at the end).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aaa_proto::dictionary::eapay::{CardConfirmation, DeclineCode, SettlementAction};
use aaa_proto::payment::{is_approval_code, PaymentDetails};
use aaa_proto::receipt::{IssuerPublicKey, IssuerSigningKey};
use aaa_server::cards::{CardMethod, Confirmation};
use aaa_server::ledger::{
    Attempt, AuthorizationStatus, CardStatus, Decision, Decline, Evidence, Ledger, LedgerOptions, NewAkaCredential,
    NewCard, Outcome, PaymentPolicy, Settlement, SettlementOutcome, SqlLedger, TxnFilter, TxnKey,
};
use aaa_server::seal::Kek;
use eap_methods::sim_aka::sqn::{Sqn, SqnWindow};
use eap_methods::sim_aka::usim::{Usim, UsimResult};
use eap_methods::Answer;
use sqlx::Connection;

// ---------------------------------------------------------------- backends

const PG_ENV: &str = "EAPAY_TEST_POSTGRES_URL";

/// One database to run a scenario against.
struct TestDb {
    name: &'static str,
    url: String,
    /// SQLite: the directory holding the file.
    dir: Option<tempfile::TempDir>,
    /// PostgreSQL: (server URL, database name) to drop at the end.
    pg: Option<(String, String)>,
}

impl TestDb {
    async fn finish(self) {
        if let Some((admin_url, name)) = self.pg {
            // Best effort: a failed drop leaves a database behind, not a wrong result.
            if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
        drop(self.dir);
    }
}

/// The backends every scenario runs on: SQLite always, PostgreSQL if configured.
async fn backends() -> Vec<TestDb> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let mut dbs = vec![TestDb { name: "sqlite", url, dir: Some(dir), pg: None }];
    match std::env::var(PG_ENV) {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("eapay_t_{}", hex::encode(rand::random::<[u8; 8]>()));
            let mut conn = sqlx::AnyConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("{PG_ENV}={admin_url} is set but unreachable: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            let base = admin_url.split('?').next().unwrap();
            let (server, _db) = base.rsplit_once('/').unwrap();
            dbs.push(TestDb {
                name: "postgres",
                url: format!("{server}/{name}"),
                dir: None,
                pg: Some((admin_url, name)),
            });
        }
        _ if std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1") => {
            panic!("EAPAY_REQUIRE_INTEROP=1 but {PG_ENV} is not set: the PostgreSQL ledger tests cannot run")
        }
        _ => eprintln!("SKIP postgres: {PG_ENV} not set"),
    }
    dbs
}

/// Runs `scenario` on every backend.
macro_rules! on_every_backend {
    ($($test:ident => $scenario:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            for db in backends().await {
                eprintln!("{}: {}", stringify!($test), db.name);
                let started = std::time::Instant::now();
                $scenario(&db).await;
                eprintln!("{}: {} done in {:?}", stringify!($test), db.name, started.elapsed());
                db.finish().await;
            }
        }
    )*};
}

on_every_backend! {
    migrations_are_idempotent => migrations_scenario;
    approval_charges_and_signs => approval_scenario;
    every_decline_from_real_state => declines_scenario;
    settlement_follows_the_table => settlement_scenario;
    sqn_advances_and_resynchronises => sqn_scenario;
    group_commit_batches_concurrent_requests => group_commit_scenario;
    one_bad_request_does_not_fail_its_batch => fallback_scenario;
    reopened_ledger_keeps_everything => reopen_scenario;
    audit_log_is_append_only => append_only_scenario;
}

// ---------------------------------------------------------------- fixtures

const KEK: [u8; 32] = [0x42; 32];
const K: [u8; 16] = [0x46; 16];
const OPC: [u8; 16] = [0x2b; 16];
const USD: u16 = 840;
const EUR: u16 = 978;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn next_year() -> u64 {
    now_ms() / 1000 + 365 * 86_400
}

struct Fixture {
    ledger: SqlLedger,
    public: IssuerPublicKey,
}

async fn open(db: &TestDb, policy: PaymentPolicy) -> Fixture {
    let signer = IssuerSigningKey::generate().unwrap();
    let public = signer.public_key().unwrap();
    let options = LedgerOptions { policy, signer: Some(signer), batch_max: 256 };
    let ledger = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), options).await.unwrap();
    ledger.set_issuer("issuer.example", &public.to_pem().unwrap(), public.key_id()).await.unwrap();
    ledger.add_merchant("M1", "Corner Shop", &["term1".to_string()], "test").await.unwrap();
    ledger.add_merchant("M2", "Other Shop", &["term2".to_string()], "test").await.unwrap();
    Fixture { ledger, public }
}

fn card(id: &str, currency: u16, limit: u64) -> NewCard {
    NewCard {
        card_id: id.to_string(),
        method: CardMethod::Aka,
        confirmation: Confirmation::Required,
        currency,
        credit_limit: limit,
        expires_at: next_year(),
        pan_token: None,
        aka: Some(NewAkaCredential { k: K, opc: OPC, amf: [0x80, 0], sqn_he: 0 }),
        pin: None,
    }
}

fn details(txn: &str, amount: u64, currency: u16) -> PaymentDetails {
    PaymentDetails {
        transaction_id: txn.to_string(),
        merchant_id: "M1".to_string(),
        amount,
        currency: u32::from(currency),
        installments: 0,
        terminal_nonce: rand::random(),
        terminal_time_ms: now_ms(),
    }
}

fn attempt(card_id: &str, details: PaymentDetails) -> Attempt {
    let canonical = details.canonical();
    Attempt {
        client: "term1".to_string(),
        details,
        card_id: Some(card_id.to_string()),
        method: "aka",
        confirmation: CardConfirmation::Confirmed,
        evidence: Some(Evidence { kind: "aka-mac", bytes: canonical }),
        pre_declined: None,
        now_ms: now_ms(),
    }
}

fn settlement(txn: &str, action: SettlementAction) -> Settlement {
    Settlement {
        client: "term1".to_string(),
        merchant_id: "M1".to_string(),
        transaction_id: txn.to_string(),
        action,
        amount: None,
        now_ms: now_ms(),
    }
}

fn declined_code(decision: &Decision) -> Option<u32> {
    match &decision.outcome {
        Outcome::Declined(d) => Some(d.code.value()),
        Outcome::Approved { .. } => None,
    }
}

fn approval_code(decision: &Decision) -> String {
    match &decision.outcome {
        Outcome::Approved { approval_code, .. } => approval_code.clone(),
        Outcome::Declined(d) => panic!("declined {d:?}"),
    }
}

async fn available(ledger: &SqlLedger, card_id: &str) -> u64 {
    ledger.card(card_id).await.unwrap().unwrap().available
}

fn key(txn: &str) -> TxnKey {
    TxnKey::Merchant { merchant_id: "M1".into(), transaction_id: txn.into() }
}

// ---------------------------------------------------------------- scenarios

async fn migrations_scenario(db: &TestDb) {
    // Two processes (here: two pools) opening a fresh ledger at the same moment.
    let kek = || Kek::from_bytes(&KEK);
    let (a, b) = tokio::join!(
        SqlLedger::open(&db.url, kek(), LedgerOptions::default()),
        SqlLedger::open(&db.url, kek(), LedgerOptions::default())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.issue_card(card("card-a", USD, 1000), "test").await.unwrap();
    assert_eq!(b.cards().await.unwrap().len(), 1);
    a.close().await;
    b.close().await;
    // And once more, on the migrated schema: nothing to do, nothing lost.
    let again = SqlLedger::open(&db.url, kek(), LedgerOptions::default()).await.unwrap();
    assert_eq!(again.cards().await.unwrap()[0].card_id, "card-a");
    again.close().await;
}

async fn approval_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let mut c = card("card-a", USD, 100_000);
    c.pan_token = Some(f.ledger.kek().pan_token("4111111111111111"));
    f.ledger.issue_card(c, "test").await.unwrap();
    let summary = f.ledger.card("card-a").await.unwrap().unwrap();
    assert_eq!((summary.status, summary.available, summary.credit_limit), (CardStatus::Active, 100_000, 100_000));
    assert!(summary.has_pan_token);

    let a = attempt("card-a", details("T1", 1250, USD));
    let now = a.now_ms;
    let decision = f.ledger.authorize(a).await.unwrap();
    let Outcome::Approved { approval_code, approved_amount, receipt } = &decision.outcome else {
        panic!("{decision:?}")
    };
    assert!(is_approval_code(approval_code), "{approval_code}");
    assert_eq!(*approved_amount, 1250);
    assert!(!decision.repeated);
    assert_eq!(decision.confirmation, CardConfirmation::Confirmed);
    assert_eq!(available(&f.ledger, "card-a").await, 100_000 - 1250);

    let body = f.public.verify(receipt).unwrap();
    assert_eq!(
        (body.approval_code.as_str(), body.transaction_id.as_str(), body.merchant_id.as_str(), body.card_id.as_str()),
        (approval_code.as_str(), "T1", "M1", "card-a")
    );
    assert_eq!((body.amount, body.currency, body.authorized_at_ms), (1250, USD, now));
    let issuer = f.ledger.issuer().await.unwrap().unwrap();
    assert_eq!(IssuerPublicKey::from_pem(&issuer.public_key_pem).unwrap().verify(receipt).unwrap(), body);

    let id = decision.authorization_id.unwrap();
    let record = f.ledger.authorization(&TxnKey::Id(id)).await.unwrap().unwrap();
    assert_eq!(f.ledger.authorization(&key("T1")).await.unwrap().unwrap(), record);
    assert_eq!(record.status, AuthorizationStatus::Approved);
    assert_eq!(record.approval_code.as_deref(), Some(approval_code.as_str()));
    assert_eq!(record.receipt.as_deref(), Some(receipt.as_slice()));
    assert_eq!(record.card_id.as_deref(), Some("card-a"));
    assert_eq!((record.amount, record.currency, record.method.as_str()), (1250, 840, "aka"));
    assert_eq!(record.evidence_kind.as_deref(), Some("aka-mac"));
    assert_eq!(record.evidence.as_deref(), Some(record.details.as_slice()));
    assert_eq!(PaymentDetails::from_canonical(&record.details).unwrap().transaction_id, "T1");
    assert_eq!(record.client, "term1");
    assert!(!record.tombstone);
    let audit = f.ledger.audit(id).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].event.as_str(), audit[0].actor.as_str()), ("authorization approved", "term1"));

    let listed = f.ledger.authorizations(&TxnFilter::default()).await.unwrap();
    assert_eq!(listed, vec![record]);
    f.ledger.close().await;
}

async fn declines_scenario(db: &TestDb) {
    let policy = PaymentPolicy { velocity_max: 3, ..PaymentPolicy::default() };
    let f = open(db, policy).await;
    let l = &f.ledger;
    l.issue_card(card("card-a", USD, 100_000), "test").await.unwrap();
    l.issue_card(card("card-small", USD, 1000), "test").await.unwrap();
    l.issue_card(card("card-blocked", USD, 1000), "test").await.unwrap();
    assert!(l.block_card("card-blocked", "test").await.unwrap());
    assert!(!l.block_card("no-such-card", "test").await.unwrap());
    let mut expired = card("card-expired", USD, 1000);
    expired.expires_at = now_ms() / 1000 - 1;
    l.issue_card(expired, "test").await.unwrap();

    let original = attempt("card-a", details("T1", 1000, USD));
    let first = l.authorize(original.clone()).await.unwrap();
    let code = approval_code(&first);
    let after_first = available(l, "card-a").await;
    assert_eq!(after_first, 99_000);

    // Expected decline code, and whether a row is recorded.
    let mut cases: Vec<(&str, Attempt, u32, bool)> = Vec::new();
    let mut not_permitted = attempt("card-a", details("T-57", 100, USD));
    not_permitted.client = "term2".into();
    cases.push(("client of another merchant", not_permitted, 57, false));
    let mut different = original.clone();
    different.details.amount = 2000;
    cases.push(("same id, other details", different, 94, false));
    let mut other_card = original.clone();
    other_card.card_id = Some("card-small".into());
    cases.push(("same id, other card", other_card, 94, false));
    let mut d = details("T-time", 100, USD);
    d.terminal_time_ms -= 10 * 60 * 1000;
    cases.push(("terminal time", attempt("card-a", d), 12, true));
    let mut d = details("T-nonce", 100, USD);
    d.terminal_nonce = original.details.terminal_nonce;
    cases.push(("nonce reuse", attempt("card-a", d), 12, true));
    let mut d = details("T-cur", 100, USD);
    d.currency = 999;
    cases.push(("unknown currency", attempt("card-a", d), 12, true));
    let mut d = details("T-inst", 100, USD);
    d.installments = 100;
    cases.push(("installments", attempt("card-a", d), 12, true));
    cases.push(("zero", attempt("card-a", details("T-zero", 0, USD)), 13, true));
    cases.push(("negative", attempt("card-a", details("T-neg", u64::MAX - 99, USD)), 13, true));
    cases.push(("too large", attempt("card-a", details("T-big", 1_000_000_000_001, USD)), 13, true));
    let mut no_card = attempt("card-a", details("T-nocard", 100, USD));
    no_card.card_id = None;
    cases.push(("no card", no_card, 14, true));
    cases.push(("unknown card", attempt("card-nope", details("T-unknown", 100, USD)), 14, true));
    cases.push(("blocked", attempt("card-blocked", details("T-blocked", 100, USD)), 62, true));
    cases.push(("expired", attempt("card-expired", details("T-expired", 100, USD)), 54, true));
    cases.push(("currency mismatch", attempt("card-a", details("T-eur", 100, EUR)), 57, true));
    cases.push(("over the limit", attempt("card-small", details("T-limit", 1001, USD)), 61, true));
    let mut pre63 = attempt("card-a", details("T-63", 100, USD));
    pre63.pre_declined = Some(Decline::new(DeclineCode::SecurityViolation, "authentication failed"));
    pre63.confirmation = CardConfirmation::NotConfirmed;
    pre63.evidence = None;
    cases.push(("pre-declined 63", pre63, 63, true));
    let mut pre59 = attempt("card-a", details("T-59", 100, USD));
    pre59.pre_declined = Some(Decline::new(DeclineCode::SuspectedFraud, "payment details differ"));
    pre59.confirmation = CardConfirmation::Mismatch;
    cases.push(("pre-declined 59", pre59, 59, true));

    for (what, a, expected, recorded) in cases {
        let txn = a.details.transaction_id.clone();
        let client = a.client.clone();
        let decision = l.authorize(a).await.unwrap();
        assert_eq!(declined_code(&decision), Some(expected), "{what}: {decision:?}");
        assert!(!decision.repeated, "{what}");
        assert_eq!(decision.authorization_id.is_some(), recorded, "{what}");
        if let Some(id) = decision.authorization_id {
            let record = l.authorization(&TxnKey::Id(id)).await.unwrap().unwrap();
            assert_eq!(record.transaction_id, txn, "{what}");
            assert_eq!(record.status, AuthorizationStatus::Declined, "{what}");
            assert_eq!(record.decline_code, Some(expected), "{what}");
            assert!(record.approval_code.is_none() && record.receipt.is_none(), "{what}");
            let audit = l.audit(id).await.unwrap();
            assert_eq!(audit.len(), 1, "{what}");
            assert_eq!(audit[0].event, "authorization declined", "{what}");
            assert_eq!(audit[0].actor, client, "{what}");
        } else if txn != "T1" {
            assert!(l.authorization(&key(&txn)).await.unwrap().is_none(), "{what}: nothing recorded");
        }
    }
    // The pre-declined 63 keeps what the EAP layer said about confirmation.
    let rec = l.authorization(&key("T-63")).await.unwrap().unwrap();
    assert_eq!((rec.confirmation, rec.evidence.is_none()), (CardConfirmation::NotConfirmed, true));
    // An unknown card is not stored (foreign key); the audit line names it.
    let rec = l.authorization(&key("T-unknown")).await.unwrap().unwrap();
    assert_eq!(rec.card_id, None);
    assert_eq!(l.audit(rec.id).await.unwrap()[0].card_id.as_deref(), Some("card-nope"));
    // The refusals without a row still have their audit lines.
    let events: Vec<String> = l.recent_audit(0).await.unwrap().into_iter().map(|e| e.event).collect();
    assert!(events.contains(&"authorization not permitted".to_string()));
    assert_eq!(events.iter().filter(|e| *e == "duplicate transaction").count(), 2);

    // No decline moved any money.
    assert_eq!(available(l, "card-a").await, after_first);
    assert_eq!(available(l, "card-small").await, 1000);
    assert_eq!(available(l, "card-blocked").await, 1000);

    // The same request again: the original answer, no second charge.
    let again = l.authorize(original.clone()).await.unwrap();
    assert!(again.repeated);
    assert_eq!(again.authorization_id, first.authorization_id);
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(approval_code(&again), code);
    assert_eq!(available(l, "card-a").await, after_first);
    let id = first.authorization_id.unwrap();
    let events: Vec<String> = l.audit(id).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(
        events,
        ["authorization approved", "duplicate transaction", "duplicate transaction", "repeated request"]
    );
    // A repeat of a decline is that decline again.
    let mut zero = attempt("card-a", details("T-zero2", 0, USD));
    let first_zero = l.authorize(zero.clone()).await.unwrap();
    zero.now_ms += 1;
    let second_zero = l.authorize(zero).await.unwrap();
    assert_eq!((second_zero.repeated, &second_zero.outcome), (true, &first_zero.outcome));

    // 51: funds, not the limit.
    approval_code(&l.authorize(attempt("card-small", details("T-s1", 800, USD))).await.unwrap());
    let funds = l.authorize(attempt("card-small", details("T-s2", 300, USD))).await.unwrap();
    assert_eq!(declined_code(&funds), Some(51));
    assert_eq!(available(l, "card-small").await, 200);

    // 65: card-a has one approval; two more reach velocity_max = 3.
    approval_code(&l.authorize(attempt("card-a", details("T-v1", 10, USD))).await.unwrap());
    approval_code(&l.authorize(attempt("card-a", details("T-v2", 10, USD))).await.unwrap());
    let velocity = l.authorize(attempt("card-a", details("T-v3", 10, USD))).await.unwrap();
    assert_eq!(declined_code(&velocity), Some(65));
    assert_eq!(available(l, "card-a").await, after_first - 20);
    f.ledger.close().await;
}

async fn settlement_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    l.issue_card(card("card-a", USD, 100_000), "test").await.unwrap();
    let settle = |txn: &str, action| l.settle(settlement(txn, action));
    use SettlementAction::*;
    use SettlementOutcome::*;
    let refused = |code: DeclineCode| move |o: &SettlementOutcome| matches!(o, Refused(d) if d.code == code);

    // approved -> captured -> refunded
    approval_code(&l.authorize(attempt("card-a", details("T-cap", 1000, USD))).await.unwrap());
    assert_eq!(available(l, "card-a").await, 99_000);
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-cap", Refund).await.unwrap()));
    let mut wrong = settlement("T-cap", Capture);
    wrong.amount = Some(999);
    assert!(refused(DeclineCode::InvalidAmount)(&l.settle(wrong).await.unwrap()));
    let mut right = settlement("T-cap", Capture);
    right.amount = Some(1000);
    assert_eq!(l.settle(right).await.unwrap(), Done(AuthorizationStatus::Captured));
    assert_eq!(settle("T-cap", Capture).await.unwrap(), AlreadyDone(AuthorizationStatus::Captured));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-cap", Reverse).await.unwrap()));
    assert_eq!(available(l, "card-a").await, 99_000);
    assert_eq!(settle("T-cap", Refund).await.unwrap(), Done(AuthorizationStatus::Refunded));
    assert_eq!(available(l, "card-a").await, 100_000);
    assert_eq!(settle("T-cap", Refund).await.unwrap(), AlreadyDone(AuthorizationStatus::Refunded));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-cap", Capture).await.unwrap()));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-cap", Reverse).await.unwrap()));
    assert_eq!(available(l, "card-a").await, 100_000);
    let rec = l.authorization(&key("T-cap")).await.unwrap().unwrap();
    assert_eq!(rec.status, AuthorizationStatus::Refunded);
    assert!(rec.updated_at_ms >= rec.created_at_ms);
    let events: Vec<String> = l.audit(rec.id).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(
        events,
        [
            "authorization approved",
            "settlement refused",
            "settlement refused",
            "authorization captured",
            "settlement repeated",
            "settlement refused",
            "authorization refunded",
            "settlement repeated",
            "settlement refused",
            "settlement refused"
        ]
    );

    // approved -> reversed: the amount comes back, once.
    let original = attempt("card-a", details("T-rev", 2500, USD));
    approval_code(&l.authorize(original.clone()).await.unwrap());
    assert_eq!(available(l, "card-a").await, 97_500);
    assert_eq!(settle("T-rev", Reverse).await.unwrap(), Done(AuthorizationStatus::Reversed));
    assert_eq!(available(l, "card-a").await, 100_000);
    assert_eq!(settle("T-rev", Reverse).await.unwrap(), AlreadyDone(AuthorizationStatus::Reversed));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-rev", Capture).await.unwrap()));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-rev", Refund).await.unwrap()));
    assert_eq!(available(l, "card-a").await, 100_000);
    // The original again after its reversal: declined, not approved.
    let late = l.authorize(original).await.unwrap();
    assert_eq!((declined_code(&late), late.repeated), (Some(12), true));
    assert_eq!(available(l, "card-a").await, 100_000);

    // declined
    assert_eq!(declined_code(&l.authorize(attempt("card-a", details("T-dec", 0, USD))).await.unwrap()), Some(13));
    assert_eq!(settle("T-dec", Reverse).await.unwrap(), AlreadyDone(AuthorizationStatus::Declined));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-dec", Capture).await.unwrap()));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-dec", Refund).await.unwrap()));

    // unknown: capture/refund refused, reversal leaves a tombstone
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-late", Capture).await.unwrap()));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-late", Refund).await.unwrap()));
    assert!(l.authorization(&key("T-late")).await.unwrap().is_none());
    assert_eq!(settle("T-late", Reverse).await.unwrap(), Tombstoned);
    assert_eq!(settle("T-late", Reverse).await.unwrap(), AlreadyDone(AuthorizationStatus::Reversed));
    assert!(refused(DeclineCode::InvalidTransaction)(&settle("T-late", Capture).await.unwrap()));
    let tomb = l.authorization(&key("T-late")).await.unwrap().unwrap();
    assert!(tomb.tombstone);
    assert_eq!((tomb.status, tomb.card_id.as_deref()), (AuthorizationStatus::Reversed, None));
    // ... and the late original is declined 12 without a new row or a charge.
    let late = l.authorize(attempt("card-a", details("T-late", 700, USD))).await.unwrap();
    assert_eq!((declined_code(&late), late.authorization_id, late.repeated), (Some(12), None, false));
    assert_eq!(available(l, "card-a").await, 100_000);
    let events: Vec<String> = l.audit(tomb.id).await.unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(
        events,
        ["tombstone recorded", "settlement repeated", "settlement refused", "late original after reversal"]
    );

    // Another merchant's client can neither settle nor tombstone.
    let mut rogue = settlement("T-rev", Reverse);
    rogue.client = "term2".into();
    assert!(refused(DeclineCode::NotPermitted)(&l.settle(rogue).await.unwrap()));
    let mut rogue = settlement("T-never", Reverse);
    rogue.client = "term2".into();
    assert!(refused(DeclineCode::NotPermitted)(&l.settle(rogue).await.unwrap()));
    assert!(l.authorization(&key("T-never")).await.unwrap().is_none());
    f.ledger.close().await;
}

async fn sqn_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    l.issue_card(card("card-a", USD, 1000), "test").await.unwrap();
    let mut prime = card("card-p", USD, 1000);
    prime.method = CardMethod::AkaPrime;
    l.issue_card(prime, "test").await.unwrap();
    let mut tls = card("card-t", USD, 1000);
    tls.method = CardMethod::Tls;
    tls.aka = None;
    l.issue_card(tls, "test").await.unwrap();
    l.issue_card(card("card-b", USD, 1000), "test").await.unwrap();
    l.block_card("card-b", "test").await.unwrap();

    assert_eq!(l.card_profile("card-a").await.unwrap().map(|p| p.method), Some(CardMethod::Aka));
    assert_eq!(l.card_profile("card-b").await.unwrap().map(|p| p.method), Some(CardMethod::Aka), "blocked cards still authenticate");
    assert_eq!(l.card_profile("nope").await.unwrap(), None);
    let vector = |answer: Answer| match answer {
        Answer::AkaVector(v) => v,
        other => panic!("{other:?}"),
    };
    assert!(matches!(l.aka_vector("nope", CardMethod::Aka).await.unwrap(), Answer::UnknownCard));
    assert!(matches!(l.aka_vector("card-a", CardMethod::AkaPrime).await.unwrap(), Answer::UnknownCard));
    assert!(matches!(l.aka_vector("card-t", CardMethod::Tls).await.unwrap(), Answer::UnknownCard));
    vector(l.aka_vector("card-p", CardMethod::AkaPrime).await.unwrap());
    vector(l.aka_vector("card-b", CardMethod::Aka).await.unwrap());

    // Each vector carries a newer SQN, which the card accepts; the SQNs come
    // from one reserved block, so three vectors cost one ledger write.
    let mut usim = Usim::new(&K, &OPC, SqnWindow::default());
    let writes_before = l.stats().commands;
    for _ in 0..3 {
        let v = vector(l.aka_vector("card-a", CardMethod::Aka).await.unwrap());
        assert!(matches!(usim.authenticate(&v.rand, &v.autn, false), UsimResult::Ok { .. }));
    }
    assert_eq!(usim.window().highest(), Sqn::new(0).next().next().next());
    assert_eq!(l.stats().commands - writes_before, 1, "one reservation for three vectors");
    // SQN_HE is durably past every SQN handed out, so a restart never repeats one.
    let exports = l.aka_exports(&[CardMethod::Aka]).await.unwrap();
    let stored = exports.iter().find(|c| c.card_id == "card-a").map(|c| c.sqn_he);
    assert!(stored.is_some_and(|sqn| Sqn::new(sqn) > usim.window().highest()), "{stored:?}");

    // A card that is ahead (used with another issuer database, say): AUTS resynchronises.
    let ahead = Sqn::new(5000 << 5);
    let mut usim = Usim::new(&K, &OPC, SqnWindow::starting_at(ahead));
    let stale = vector(l.aka_vector("card-a", CardMethod::Aka).await.unwrap());
    let UsimResult::SyncFailure { auts } = usim.authenticate(&stale.rand, &stale.autn, false) else {
        panic!("expected a sync failure")
    };
    let mut forged = auts;
    forged[13] ^= 1;
    assert!(matches!(
        l.aka_resync("card-a", CardMethod::Aka, stale.rand, forged).await.unwrap(),
        Answer::ResyncRejected
    ));
    assert!(matches!(l.aka_resync("nope", CardMethod::Aka, stale.rand, auts).await.unwrap(), Answer::UnknownCard));
    let fresh = vector(l.aka_resync("card-a", CardMethod::Aka, stale.rand, auts).await.unwrap());
    assert!(matches!(usim.authenticate(&fresh.rand, &fresh.autn, false), UsimResult::Ok { .. }));
    assert_eq!(usim.window().highest(), ahead.next());
    // And the ledger goes on from there.
    let next = vector(l.aka_vector("card-a", CardMethod::Aka).await.unwrap());
    assert!(matches!(usim.authenticate(&next.rand, &next.autn, false), UsimResult::Ok { .. }));
    // A replayed AUTS never moves the issuer backwards.
    vector(l.aka_resync("card-a", CardMethod::Aka, stale.rand, auts).await.unwrap());
    let after = vector(l.aka_vector("card-a", CardMethod::Aka).await.unwrap());
    assert!(matches!(usim.authenticate(&after.rand, &after.autn, false), UsimResult::Ok { .. }));
    f.ledger.close().await;
}

async fn group_commit_scenario(db: &TestDb) {
    let policy = PaymentPolicy { velocity_max: 0, ..PaymentPolicy::default() };
    let f = open(db, policy).await;
    f.ledger.issue_card(card("card-a", USD, 10_000_000), "test").await.unwrap();
    let ledger = Arc::new(f.ledger);
    let before = ledger.stats();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.authorize(attempt("card-a", details(&format!("T-{i}"), 100, USD))).await })
        })
        .collect();
    let mut codes = std::collections::HashSet::new();
    for task in tasks {
        let decision = task.await.unwrap().unwrap();
        assert!(codes.insert(approval_code(&decision)), "approval codes are unique");
    }
    let stats = ledger.stats();
    let (commands, commits) = (stats.commands - before.commands, stats.commits - before.commits);
    eprintln!("{}: 200 authorizations in {commits} commits", db.name);
    assert_eq!(commands, 200);
    assert!(commits < commands, "{stats:?}");
    assert_eq!(available(&ledger, "card-a").await, 10_000_000 - 200 * 100);
    let all = ledger.authorizations(&TxnFilter { limit: 0, ..TxnFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 200);
    let newest =
        ledger.authorizations(&TxnFilter { limit: 5, card_id: Some("card-a".into()), merchant_id: None }).await;
    let newest = newest.unwrap();
    assert_eq!(newest.len(), 5);
    assert!(newest.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let other = TxnFilter { merchant_id: Some("M2".into()), ..TxnFilter::default() };
    assert!(ledger.authorizations(&other).await.unwrap().is_empty());
    Arc::try_unwrap(ledger).unwrap().close().await;
}

async fn fallback_scenario(db: &TestDb) {
    let policy = PaymentPolicy { velocity_max: 0, ..PaymentPolicy::default() };
    let f = open(db, policy).await;
    f.ledger.issue_card(card("card-a", USD, 1_000_000), "test").await.unwrap();
    let ledger = Arc::new(f.ledger);
    // A clock beyond BIGINT makes one request fail inside whatever batch it lands in.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut a = attempt("card-a", details(&format!("T-{i}"), 10, USD));
                if i == 25 {
                    a.now_ms = u64::MAX;
                }
                ledger.authorize(a).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 25 {
            assert!(result.is_err());
        } else {
            approval_code(&result.unwrap());
        }
    }
    eprintln!("{}: {:?}", db.name, ledger.stats());
    assert_eq!(available(&ledger, "card-a").await, 1_000_000 - 49 * 10);
    assert!(ledger.authorization(&key("T-25")).await.unwrap().is_none());
    Arc::try_unwrap(ledger).unwrap().close().await;
}

async fn reopen_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    f.ledger.issue_card(card("card-a", USD, 100_000), "test").await.unwrap();
    let decision = f.ledger.authorize(attempt("card-a", details("T1", 500, USD))).await.unwrap();
    let code = approval_code(&decision);
    f.ledger.settle(settlement("T1", SettlementAction::Capture)).await.unwrap();
    f.ledger.settle(settlement("T-gone", SettlementAction::Reverse)).await.unwrap();
    let usim_vector = match f.ledger.aka_vector("card-a", CardMethod::Aka).await.unwrap() {
        Answer::AkaVector(v) => v,
        other => panic!("{other:?}"),
    };
    let audit_before = f.ledger.recent_audit(0).await.unwrap();
    f.ledger.close().await;

    let l = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    assert_eq!(l.cards().await.unwrap().len(), 1);
    assert_eq!(available(&l, "card-a").await, 99_500);
    let merchants = l.merchants().await.unwrap();
    assert_eq!(merchants.iter().map(|m| m.merchant_id.as_str()).collect::<Vec<_>>(), ["M1", "M2"]);
    assert_eq!(merchants[0].clients, ["term1"]);
    assert!(merchants[0].active);
    assert_eq!(merchants[0].name, "Corner Shop");
    let rec = l.authorization(&key("T1")).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.approval_code), (AuthorizationStatus::Captured, Some(code)));
    assert!(l.authorization(&key("T-gone")).await.unwrap().unwrap().tombstone);
    assert_eq!(l.recent_audit(0).await.unwrap(), audit_before);
    assert_eq!(l.issuer().await.unwrap().unwrap().realm, "issuer.example");
    // The SQN survived too: the next vector is newer than the last one.
    let mut usim = Usim::new(&K, &OPC, SqnWindow::default());
    assert!(matches!(usim.authenticate(&usim_vector.rand, &usim_vector.autn, false), UsimResult::Ok { .. }));
    let next = match l.aka_vector("card-a", CardMethod::Aka).await.unwrap() {
        Answer::AkaVector(v) => v,
        other => panic!("{other:?}"),
    };
    assert!(matches!(usim.authenticate(&next.rand, &next.autn, false), UsimResult::Ok { .. }));
    // A new policy on reopen; the data stays what it was.
    l.close().await;
}

async fn append_only_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    f.ledger.issue_card(card("card-a", USD, 100_000), "test").await.unwrap();
    assert!(!f.ledger.recent_audit(0).await.unwrap().is_empty());
    f.ledger.close().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    assert!(sqlx::query("UPDATE audit_log SET actor = 'mallory'").execute(&mut conn).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_log").execute(&mut conn).await.is_err());
    conn.close().await.unwrap();
}

// ---------------------------------------------------------------- SQLite only

/// No PAN, K or OPc in any byte the SQLite ledger wrote.
#[tokio::test]
async fn no_card_secrets_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let pan = "4111111111111111";
    let k: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";
    let opc: [u8; 16] = *b"\xcd\x63\xcb\x71\x95\x4a\x9f\x4e\x48\xa5\x99\x4e\x37\xa0\x2b\xaf";
    let ledger = SqlLedger::open(&url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    let mut c = card("card-secret", USD, 1000);
    c.pan_token = Some(ledger.kek().pan_token(pan));
    c.aka = Some(NewAkaCredential { k, opc, amf: [0x80, 0], sqn_he: 0 });
    c.pin = Some("4321".into());
    ledger.issue_card(c, "test").await.unwrap();
    assert!(matches!(ledger.aka_vector("card-secret", CardMethod::Aka).await.unwrap(), Answer::AkaVector(_)));
    // Read the WAL before the checkpoint on close, and the database after it.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    ledger.close().await;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"card-secret"), "the scan sees the ledger's data");
    for (what, needle) in [
        ("PAN", pan.as_bytes().to_vec()),
        ("K", k.to_vec()),
        ("K hex", hex::encode(k).into_bytes()),
        ("K HEX", hex::encode_upper(k).into_bytes()),
        ("OPc", opc.to_vec()),
        ("OPc hex", hex::encode(opc).into_bytes()),
        ("PIN", b"4321".to_vec()),
    ] {
        assert!(!contains(&needle), "{what} found in the SQLite files");
    }
}

/// WAL is a property of the file; in-memory ledgers are refused.
#[tokio::test]
async fn sqlite_file_settings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = SqlLedger::open(&url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    // Every pooled connection commits with a full fsync (2 = FULL): a
    // SIGKILL test cannot tell this apart from OFF, the page cache survives.
    assert_eq!(ledger.durability().await.unwrap(), "synchronous=2");
    ledger.close().await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::Row::get(&sqlx::query("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap(), 0);
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    for memory in ["sqlite::memory:", "sqlite://:memory:", "sqlite://x.db?mode=memory"] {
        let err = SqlLedger::open(memory, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("in-memory"), "{err}");
    }
    let err = SqlLedger::open("mysql://db/x", Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("unsupported ledger URL"), "{err}");
}
