//! The payment ledger through its public API, every scenario on SQLite and,
//! when `EAPAY_TEST_POSTGRES_URL` names a server, on PostgreSQL too (each
//! test in a database of its own, dropped at the end).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aaa_proto::dictionary::eapay::{CardConfirmation, DeclineCode, SettlementAction};
use aaa_proto::payment::{is_approval_code, PaymentDetails};
use aaa_proto::receipt::{IssuerPublicKey, IssuerSigningKey};
use aaa_server::auc::AuthenticationCentre;
use aaa_server::cards::{CardMethod, Confirmation};
use aaa_server::ledger::{
    Attempt, AuthorizationStatus, CardStatus, Decision, Decline, Evidence, Ledger, LedgerOptions, MerchantSummary,
    NewAkaCredential, NewCard, Outcome, PaymentPolicy, PinUnlock, Settlement, SettlementOutcome, SqlLedger, TxnFilter,
    TxnKey,
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
    card_keys_find_their_card => card_key_scenario;
    wrong_pins_count_and_lock => pin_scenario;
    migration_2_upgrades_a_v1_ledger => migration_2_scenario;
    sim_triplets_and_reauth_floor => sim_and_reauth_scenario;
    two_instances_reserve_disjoint_sqns => disjoint_sqns_scenario;
    config_links_follow_the_configuration => config_links_scenario;
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
        card_key: None,
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

/// Config links follow the configuration; admin links and merchants' names
/// stay; every change is audited and a start with no change writes nothing.
async fn config_links_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    let links = |pairs: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        pairs.iter().map(|(m, c)| (m.to_string(), c.to_string())).collect()
    };
    let clients = |merchants: Vec<MerchantSummary>, id: &str| {
        merchants.into_iter().find(|m| m.merchant_id == id).map(|m| (m.name, m.clients))
    };
    let audit_lines = || async { l.recent_audit(0).await.unwrap().len() };

    // M1 exists with the admin link term1 (the fixture); the file adds M9
    // and links term2 to M1 and M9.
    let first = l.follow_config_links(&links(&[("M1", "term2"), ("M9", "term2")]), "config").await.unwrap();
    assert_eq!(first.merchants_added, ["M9"]);
    assert_eq!(first.links_added.len(), 2);
    assert!(first.links_removed.is_empty());
    let merchants = l.merchants().await.unwrap();
    assert_eq!(clients(merchants.clone(), "M1"), Some(("Corner Shop".into(), vec!["term1".into(), "term2".into()])));
    assert_eq!(clients(merchants, "M9"), Some(("M9".into(), vec!["term2".into()])));

    // The same file again: nothing changes, nothing is audited.
    let before = audit_lines().await;
    let again = l.follow_config_links(&links(&[("M1", "term2"), ("M9", "term2")]), "config").await.unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(audit_lines().await, before);

    // term2 leaves M1 in the file: its config link goes, term1's admin link
    // stays, and so does the merchant's name. An admin who names a config
    // link (`merchant add --client`) makes it an admin link.
    l.add_merchant("M9", "Ninth Shop", &["term2".to_string()], "admin").await.unwrap();
    let third = l.follow_config_links(&links(&[("M1", "term1")]), "config").await.unwrap();
    assert_eq!(third.links_removed, [("M1".to_string(), "term2".to_string())]);
    assert!(third.links_added.is_empty(), "term1's admin link was already there");
    let merchants = l.merchants().await.unwrap();
    assert_eq!(clients(merchants.clone(), "M1"), Some(("Corner Shop".into(), vec!["term1".into()])));
    assert_eq!(clients(merchants, "M9"), Some(("Ninth Shop".into(), vec!["term2".into()])), "admin link kept");
    let removed: Vec<_> = l
        .recent_audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "merchant client removed" && e.actor == "config")
        .map(|e| (e.merchant_id, e.detail))
        .collect();
    assert_eq!(removed, [(Some("M1".into()), "client=term2: no longer in the configuration".into())]);

    // A payment through the removed link is refused 57.
    l.issue_card(card("card-links", USD, 1000), "test").await.unwrap();
    let mut d = details("T-links", 100, USD);
    d.merchant_id = "M1".into();
    let mut a = attempt("card-links", d);
    a.client = "term2".into();
    let refused = l.authorize(a).await.unwrap();
    assert_eq!(declined_code(&refused), Some(57), "{refused:?}");
    f.ledger.close().await;
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

    // `card unblock`: the card pays again, and the audit log says who let it.
    assert!(l.unblock_card("card-blocked", "admin").await.unwrap());
    assert!(!l.unblock_card("no-such-card", "admin").await.unwrap());
    let unblocked = l.authorize(attempt("card-blocked", details("T-unblocked", 100, USD))).await.unwrap();
    approval_code(&unblocked);
    let events: Vec<(String, String)> = l
        .recent_audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.card_id.as_deref() == Some("card-blocked") && e.event.ends_with("blocked"))
        .map(|e| (e.event, e.actor))
        .collect();
    assert_eq!(events, [("card unblocked".into(), "admin".into()), ("card blocked".into(), "test".into())]);
    assert!(l.block_card("card-blocked", "test").await.unwrap());
    assert_eq!(available(l, "card-blocked").await, 900);

    // `merchant remove-client`: the terminal's next payment for the merchant is declined 57.
    l.add_merchant("M3", "Third Shop", &["term1".to_string()], "test").await.unwrap();
    l.issue_card(card("card-m3", USD, 1000), "test").await.unwrap();
    let for_m3 = |txn: &str| {
        let mut d = details(txn, 100, USD);
        d.merchant_id = "M3".into();
        attempt("card-m3", d)
    };
    approval_code(&l.authorize(for_m3("T-m3-linked")).await.unwrap());
    assert!(l.remove_merchant_client("M3", "term1", "admin").await.unwrap());
    assert!(!l.remove_merchant_client("M3", "term1", "admin").await.unwrap());
    let unlinked = l.authorize(for_m3("T-m3-unlinked")).await.unwrap();
    assert!(matches!(&unlinked.outcome, Outcome::Declined(d) if d.code.value() == 57), "{unlinked:?}");
    let removed: Vec<_> =
        l.recent_audit(0).await.unwrap().into_iter().filter(|e| e.event == "merchant client removed").collect();
    assert_eq!(removed.len(), 1);
    assert_eq!((removed[0].merchant_id.as_deref(), removed[0].detail.as_str()), (Some("M3"), "client=term1"));

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
    l.issue_card(tls_card("card-t", &card_keypair().1, [9; 32]), "test").await.unwrap();
    l.issue_card(card("card-b", USD, 1000), "test").await.unwrap();
    l.block_card("card-b", "test").await.unwrap();

    assert_eq!(l.card_profile("card-a").await.unwrap().map(|p| p.method), Some(CardMethod::Aka));
    assert_eq!(
        l.card_profile("card-b").await.unwrap().map(|p| p.method),
        Some(CardMethod::Aka),
        "blocked cards still authenticate"
    );
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

/// Two ledgers on one database (two server instances): the SQNs they hand
/// out for one card, interleaved, are all different, each instance's in
/// increasing order, every one within its durably reserved block.
async fn disjoint_sqns_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    l.issue_card(card("card-a", USD, 1000), "test").await.unwrap();
    let other = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    let milenage = eap_methods::crypto::milenage::Milenage::new(&K, &OPC);
    let sqn_of = |answer: Answer| match answer {
        Answer::AkaVector(v) => {
            let ak = milenage.f2345(&v.rand).ak;
            let bytes: [u8; 6] = core::array::from_fn(|i| v.autn[i] ^ ak[i]);
            Sqn::from_bytes(&bytes).value()
        }
        other => panic!("{other:?}"),
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..80 {
        ours.push(sqn_of(l.aka_vector("card-a", CardMethod::Aka).await.unwrap()));
        theirs.push(sqn_of(other.aka_vector("card-a", CardMethod::Aka).await.unwrap()));
    }
    assert!(ours.windows(2).all(|w| w[0] < w[1]) && theirs.windows(2).all(|w| w[0] < w[1]), "{ours:?} {theirs:?}");
    let mut all: Vec<u64> = ours.iter().chain(&theirs).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 160, "an SQN handed out twice: {ours:?} {theirs:?}");
    // SQN_HE is durably past every SQN either handed out.
    let exports = l.aka_exports(&[CardMethod::Aka]).await.unwrap();
    let stored = exports.iter().find(|c| c.card_id == "card-a").map(|c| c.sqn_he).unwrap();
    assert!(all.iter().all(|&sqn| sqn <= stored), "SQN_HE {stored} behind {all:?}");
    other.close().await;
    f.ledger.close().await;
}

/// EAP-SIM triplets from the card's K/OPc (GSM-Milenage, the card's side
/// agrees), and the fast re-authentication floor: an identity works once,
/// older ones never again, not for a second instance on the same database
/// either, and never for a blocked card.
async fn sim_and_reauth_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    let mut sim = card("card-s", USD, 1000);
    sim.method = CardMethod::Sim;
    l.issue_card(sim, "test").await.unwrap();
    l.issue_card(card("card-a", USD, 1000), "test").await.unwrap();
    let Answer::SimTriplets(triplets) = l.sim_triplets("card-s").await.unwrap() else { panic!("no triplets") };
    assert_eq!(triplets.len(), 3);
    let card_sim = eap_methods::sim_aka::gsm::GsmSim::new(&K, &OPC);
    for t in &triplets {
        assert_eq!(card_sim.run(&t.rand), *t, "the card's GSM-Milenage agrees");
    }
    assert!(triplets[0].rand != triplets[1].rand && triplets[1].rand != triplets[2].rand);
    assert_eq!(l.sim_triplets("card-a").await.unwrap(), Answer::UnknownCard, "an AKA card is no SIM");
    assert_eq!(l.sim_triplets("nope").await.unwrap(), Answer::UnknownCard);
    assert!(matches!(l.aka_vector("card-s", CardMethod::Aka).await.unwrap(), Answer::UnknownCard));

    // Two instances sharing the database.
    let other = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    assert!(l.use_reauth("card-s", 1_000).await.unwrap(), "a fresh identity");
    assert!(!other.use_reauth("card-s", 1_000).await.unwrap(), "the same one at the other instance");
    assert!(!l.use_reauth("card-s", 999).await.unwrap(), "one issued before it");
    assert!(other.use_reauth("card-s", 1_001).await.unwrap(), "one issued after it");
    assert!(!l.use_reauth("card-s", 1_001).await.unwrap());
    assert!(!l.use_reauth("nope", 5_000).await.unwrap(), "an unknown card");
    assert!(l.card_active("card-s").await.unwrap());
    l.block_card("card-s", "test").await.unwrap();
    assert!(!other.card_active("card-s").await.unwrap());
    assert!(!other.use_reauth("card-s", 5_000).await.unwrap(), "a blocked card");
    other.close().await;
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

/// A fresh P-256 key: (private key, DER SubjectPublicKeyInfo).
fn card_keypair() -> (openssl::pkey::PKey<openssl::pkey::Private>, Vec<u8>) {
    use openssl::ec::{EcGroup, EcKey};
    let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let key = openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let spki = key.public_key_to_der().unwrap();
    (key, spki)
}

fn tls_card(id: &str, spki: &[u8], pan_token: [u8; 32]) -> NewCard {
    NewCard {
        method: CardMethod::Tls,
        aka: None,
        card_key: Some(spki.to_vec()),
        pan_token: Some(pan_token),
        ..card(id, USD, 100_000)
    }
}

async fn card_key_scenario(db: &TestDb) {
    use sha2::{Digest, Sha256};
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    let (_, spki) = card_keypair();
    let pan_token = l.kek().pan_token("4111111111111111");
    l.issue_card(tls_card("card-tls", &spki, pan_token), "test").await.unwrap();
    l.issue_card(card("card-aka", USD, 1000), "test").await.unwrap();

    let registered = l.card_key("card-tls").await.unwrap().unwrap();
    assert_eq!(registered.spki, spki);
    let v_card: [u8; 32] = Sha256::new().chain_update(&spki).chain_update(pan_token).finalize().into();
    assert_eq!(registered.v_card, Some(v_card));
    assert_eq!(aaa_server::ledger::v_card(&spki, &pan_token), v_card);
    assert_eq!(l.card_key("card-aka").await.unwrap(), None);
    assert_eq!(l.card_key("card-none").await.unwrap(), None);

    assert_eq!(l.card_by_key(&spki).await.unwrap(), Answer::CardKey { card_id: "card-tls".into() });
    let (_, stranger) = card_keypair();
    assert_eq!(l.card_by_key(&stranger).await.unwrap(), Answer::UnknownCard);
    assert_eq!(l.card_by_key(b"").await.unwrap(), Answer::UnknownCard);
    assert!(l.block_card("card-tls", "test").await.unwrap());
    assert_eq!(l.card_by_key(&spki).await.unwrap(), Answer::BlockedCard);

    // One key, one card; a TLS card needs its key and a PAN-token; only TLS cards have one.
    let err = l.issue_card(tls_card("card-copy", &spki, [1; 32]), "test").await.unwrap_err();
    assert!(err.to_string().contains("already registered to card card-tls"), "{err}");
    let mut keyless = tls_card("card-keyless", &stranger, pan_token);
    keyless.card_key = None;
    assert!(l.issue_card(keyless, "test").await.is_err());
    let mut tokenless = tls_card("card-tokenless", &stranger, pan_token);
    tokenless.pan_token = None;
    assert!(l.issue_card(tokenless, "test").await.is_err());
    let aka_with_key = NewCard { card_key: Some(stranger.clone()), ..card("card-aka-key", USD, 1000) };
    assert!(l.issue_card(aka_with_key, "test").await.is_err());
    assert!(l.issue_card(tls_card("card-junk-key", b"not a key", pan_token), "test").await.is_err());
    assert_eq!(l.cards().await.unwrap().len(), 2);
    let issued = l.recent_audit(0).await.unwrap();
    let line = issued.iter().find(|e| e.card_id.as_deref() == Some("card-tls") && e.event == "card issued").unwrap();
    assert!(line.detail.contains(&format!("card_key_id={}", hex::encode(Sha256::digest(&spki)))), "{line:?}");
    f.ledger.close().await;
}

async fn pin_scenario(db: &TestDb) {
    let f = open(db, PaymentPolicy::default()).await;
    let l = &f.ledger;
    let (_, spki) = card_keypair();
    let ttls = NewCard { method: CardMethod::Ttls, pin: Some("1234".into()), ..tls_card("card-pin", &spki, [7; 32]) };
    l.issue_card(ttls, "test").await.unwrap();
    l.issue_card(card("card-nopin", USD, 1000), "test").await.unwrap();
    let now = now_ms();

    assert_eq!(l.check_pin("card-pin", "1234", now).await.unwrap(), Answer::PinAccepted);
    assert_eq!(l.check_pin("card-pin", "9999", now).await.unwrap(), Answer::PinRejected { tries_left: 2 });
    // The right PIN starts the count again.
    assert_eq!(l.check_pin("card-pin", "1234", now).await.unwrap(), Answer::PinAccepted);
    assert_eq!(l.check_pin("card-pin", "0000", now).await.unwrap(), Answer::PinRejected { tries_left: 2 });
    assert_eq!(l.check_pin("card-pin", "12345", now).await.unwrap(), Answer::PinRejected { tries_left: 1 });
    assert_eq!(l.check_pin("card-pin", "", now).await.unwrap(), Answer::PinLocked);
    // Locked stays locked, the right PIN too.
    assert_eq!(l.check_pin("card-pin", "1234", now).await.unwrap(), Answer::PinLocked);
    assert_eq!(l.check_pin("card-nopin", "1234", now).await.unwrap(), Answer::UnknownCard);
    assert_eq!(l.check_pin("card-none", "1234", now).await.unwrap(), Answer::UnknownCard);

    let audit = l.recent_audit(0).await.unwrap();
    let count =
        |event: &str| audit.iter().filter(|e| e.event == event && e.card_id.as_deref() == Some("card-pin")).count();
    assert_eq!((count("card pin rejected"), count("card pin locked"), count("card pin refused")), (4, 1, 1));
    assert!(!audit.iter().any(|e| e.detail.contains("1234")), "no PIN in the audit log");
    f.ledger.close().await;

    // Durable: a reopened ledger (another server instance) sees the lock.
    let l = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    assert_eq!(l.check_pin("card-pin", "1234", now).await.unwrap(), Answer::PinLocked);

    // `card unlock-pin`: the count starts again, audited; only for a card with a PIN.
    assert_eq!(l.unlock_pin("card-pin", "admin").await.unwrap(), PinUnlock::Unlocked { wrong_tries: 3 });
    assert_eq!(l.check_pin("card-pin", "9999", now).await.unwrap(), Answer::PinRejected { tries_left: 2 });
    assert_eq!(l.check_pin("card-pin", "1234", now).await.unwrap(), Answer::PinAccepted);
    assert_eq!(l.unlock_pin("card-nopin", "admin").await.unwrap(), PinUnlock::NoPin);
    assert_eq!(l.unlock_pin("card-none", "admin").await.unwrap(), PinUnlock::NoCard);
    let audit = l.recent_audit(0).await.unwrap();
    let unlocked: Vec<_> = audit.iter().filter(|e| e.event == "card pin unlocked").collect();
    assert_eq!(unlocked.len(), 1);
    assert_eq!((unlocked[0].actor.as_str(), unlocked[0].detail.as_str()), ("admin", "wrong_tries=3"));
    l.close().await;
}

async fn migration_2_scenario(db: &TestDb) {
    // Make a version 1 ledger: today's schema without what migration 2 adds.
    let l = SqlLedger::open(&db.url, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    l.issue_card(card("card-old", USD, 1000), "test").await.unwrap();
    l.close().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    for statement in [
        "DROP INDEX cards_card_key_id",
        "ALTER TABLE cards DROP COLUMN card_key_id",
        "ALTER TABLE cards DROP COLUMN card_key",
        "DELETE FROM schema_migrations WHERE version = 2",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    assert!(sqlx::query("SELECT card_key FROM cards").fetch_all(&mut conn).await.is_err(), "a v1 schema now");
    conn.close().await.unwrap();

    // Two instances upgrading it at the same moment.
    let kek = || Kek::from_bytes(&KEK);
    let (a, b) = tokio::join!(
        SqlLedger::open(&db.url, kek(), LedgerOptions::default()),
        SqlLedger::open(&db.url, kek(), LedgerOptions::default())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    b.close().await;
    assert_eq!(a.cards().await.unwrap()[0].card_id, "card-old");
    assert_eq!(a.card_key("card-old").await.unwrap(), None);
    let (_, spki) = card_keypair();
    a.issue_card(tls_card("card-new", &spki, [3; 32]), "test").await.unwrap();
    assert_eq!(a.card_by_key(&spki).await.unwrap(), Answer::CardKey { card_id: "card-new".into() });
    a.close().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get(r, 0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    // The unique index is there: a second row with the same key id is refused by the database itself.
    let dup = "INSERT INTO cards (card_id, method, status, confirmation, currency, credit_limit, available, expires_at,
                   issued_at, card_key_id) SELECT 'card-dup', method, status, confirmation, currency, credit_limit,
                   available, expires_at, issued_at, card_key_id FROM cards WHERE card_id = 'card-new'";
    assert!(sqlx::query(dup).execute(&mut conn).await.is_err());
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
    // New ledgers get 1 KiB pages: fewer bytes of WAL per decision.
    let page: i64 = sqlx::Row::get(&sqlx::query("PRAGMA page_size").fetch_one(&mut conn).await.unwrap(), 0);
    assert_eq!(page, 1024);
    conn.close().await.unwrap();

    // A ledger made with other pages keeps them (the size of an existing
    // database cannot change in WAL mode) and opens as before.
    let old = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let mut conn = sqlx::AnyConnection::connect(&old).await.unwrap();
    sqlx::query("PRAGMA page_size = 4096").execute(&mut conn).await.unwrap();
    sqlx::query("CREATE TABLE earlier (x BIGINT)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let ledger = SqlLedger::open(&old, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap();
    ledger.close().await;
    let mut conn = sqlx::AnyConnection::connect(&old).await.unwrap();
    let page: i64 = sqlx::Row::get(&sqlx::query("PRAGMA page_size").fetch_one(&mut conn).await.unwrap(), 0);
    assert_eq!(page, 4096);
    conn.close().await.unwrap();

    for memory in ["sqlite::memory:", "sqlite://:memory:", "sqlite://x.db?mode=memory"] {
        let err = SqlLedger::open(memory, Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("in-memory"), "{err}");
    }
    let err = SqlLedger::open("mysql://db/x", Kek::from_bytes(&KEK), LedgerOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("unsupported ledger URL"), "{err}");
}

// ---------------------------------------------------------------- admin CLI

/// Runs `eapay-server ARGS`: (exit code, stdout, stderr).
fn server_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eapay-server"))
        .args(args)
        .env_remove("EAPAY_KEK")
        .output()
        .expect("running eapay-server");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `card issue` for TLS/TTLS on the command line, and `txn verify` / `txn
/// show` on payments recorded the way the server records them: a genuine
/// card signature verifies, a forged one does not, an AKA MAC is no signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_verify_checks_the_card_signature() {
    use aaa_server::admin::{self, InitOptions, IssueOptions, TermsOptions};
    use eap_methods::tls::confirmation;

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let init = InitOptions {
        data_dir: data_dir.clone(),
        realm: "issuer.test".into(),
        radius_secret: Some("s".into()),
        radius_listen: "127.0.0.1:0".parse().unwrap(),
        diameter_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: None,
        force: false,
    };
    let config = admin::init(&init).await.unwrap().config;
    let config_path = data_dir.canonicalize().unwrap().join(admin::CONFIG_FILE);
    let config_arg = config_path.to_str().unwrap();

    // The command line: a TTLS/PAP card needs its PIN; a TLS card prints its virtual number's last digits.
    let ttls_file = dir.path().join("ttls.json");
    let (code, _, err) = server_cli(&[
        "card",
        "issue",
        "--config",
        config_arg,
        "--method",
        "ttls",
        "--card-file",
        ttls_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("--pin"), "{err}");
    let tls_file = dir.path().join("cli-tls.json");
    let conf = dir.path().join("cli-tls.conf");
    let (code, out, err) = server_cli(&[
        "card",
        "issue",
        "--config",
        config_arg,
        "--method",
        "tls",
        "--card-file",
        tls_file.to_str().unwrap(),
        "--eapol-test",
        conf.to_str().unwrap(),
        "--key-type",
        "rsa2048",
    ]);
    assert_eq!(code, 0, "{err}");
    let cli_card = eapay_card_file::CardFile::load(&tls_file).unwrap();
    let want =
        format!("issued tls card {} as {}@issuer.test -> {}", cli_card.card_id, cli_card.card_id, tls_file.display());
    assert!(out.lines().any(|l| l == want), "{out}");
    assert!(out.contains("virtual card number ending "), "{out}");
    assert!(dir.path().join("cli-tls.key.pem").is_file());

    // Payments recorded through the ledger API, as the server records them.
    let ledger = admin::open_ledger(&config, None).await.unwrap();
    let issue = |method, name: &str| IssueOptions {
        terms: TermsOptions {
            method,
            limit: 100_000,
            currency: USD,
            confirmation: Confirmation::Required,
            pin: None,
            expires: None,
            key_type: None,
            inner: None,
        },
        card_file: dir.path().join(format!("{name}.json")),
        eapol_test: None,
        pan: None,
    };
    let tls = admin::issue_card(&config, &ledger, &issue(CardMethod::Tls, "tls")).await.unwrap().card;
    let aka = admin::issue_card(&config, &ledger, &issue(CardMethod::Aka, "aka")).await.unwrap().card;
    let card_key = openssl::pkey::PKey::private_key_from_pem(tls.tls.as_ref().unwrap().key.as_bytes()).unwrap();
    let pay = |txn: &str, card: &str, method: &'static str, evidence: Evidence| {
        let details = PaymentDetails { merchant_id: admin::DEMO_MERCHANT.into(), ..details(txn, 1250, USD) };
        Attempt {
            client: "demo-terminal".into(),
            details,
            card_id: Some(card.to_string()),
            method,
            confirmation: CardConfirmation::Confirmed,
            evidence: Some(evidence),
            pre_declined: None,
            now_ms: now_ms(),
        }
    };
    let signed = |txn: &str, key: &openssl::pkey::PKey<openssl::pkey::Private>| {
        let details = PaymentDetails { merchant_id: admin::DEMO_MERCHANT.into(), ..details(txn, 1250, USD) };
        let exporter: [u8; 32] = rand::random();
        let signature = confirmation::sign(key, &details.canonical(), &exporter).unwrap();
        let bytes = confirmation::evidence_bytes(&exporter, &signature);
        let mut attempt = pay(txn, &tls.card_id, "tls", Evidence { kind: "signature", bytes });
        attempt.details = details;
        (attempt, exporter, signature)
    };
    let (genuine, exporter, signature) = signed("T-GOOD", &card_key);
    approval_code(&ledger.authorize(genuine).await.unwrap());
    let (forged, _, _) = signed("T-FORGED", &card_keypair().0);
    approval_code(&ledger.authorize(forged).await.unwrap());
    // A genuine signature replayed on other details.
    let (mut replayed, _, _) = signed("T-REPLAY", &card_key);
    let (_, old_exporter, old_signature) = signed("T-ORIGINAL", &card_key);
    replayed.evidence =
        Some(Evidence { kind: "signature", bytes: confirmation::evidence_bytes(&old_exporter, &old_signature) });
    approval_code(&ledger.authorize(replayed).await.unwrap());
    let mac = pay("T-MAC", &aka.card_id, "aka", Evidence { kind: "mac", bytes: b"canonical".to_vec() });
    approval_code(&ledger.authorize(mac).await.unwrap());
    let mut bare = pay("T-BARE", &aka.card_id, "aka", Evidence { kind: "mac", bytes: Vec::new() });
    bare.evidence = None;
    bare.confirmation = CardConfirmation::NotConfirmed;
    ledger.authorize(bare).await.unwrap();
    ledger.close().await;

    let txn = |txn: &str| format!("{}:{txn}", admin::DEMO_MERCHANT);
    let (code, out, err) = server_cli(&["txn", "verify", &txn("T-GOOD"), "--config", config_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("signature verifies with card {}'s registered key\n", tls.card_id)), "{out}");
    for forged in ["T-FORGED", "T-REPLAY"] {
        let (code, out, err) = server_cli(&["txn", "verify", &txn(forged), "--config", config_arg]);
        assert_eq!(code, 1, "{forged}: {out}{err}");
        assert!(out.starts_with("signature DOES NOT verify"), "{out}");
    }
    for (id, why) in [
        (txn("T-MAC"), "holds a MAC, not a signature"),
        (txn("T-BARE"), "has no card signature"),
        (txn("T-NONE"), "no authorization"),
        ("nonsense".to_string(), "neither an authorization id"),
    ] {
        let (code, out, err) = server_cli(&["txn", "verify", &id, "--config", config_arg]);
        assert_eq!(code, 2, "{id}: {out}{err}");
        assert!(out.is_empty() && err.lines().count() == 1 && err.contains(why), "{id}: {err}");
    }

    // `txn show` names the signature's algorithm and prints exporter and signature.
    let (code, out, err) = server_cli(&["txn", "show", &txn("T-GOOD"), "--config", config_arg]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "  evidence         signature (ECDSA P-256, {} octets) exporter {}\n                   {}\n",
        signature.len(),
        hex::encode(exporter),
        hex::encode(&signature)
    );
    assert!(out.contains(&want), "{out}");
    let (_, out, _) = server_cli(&["txn", "show", &txn("T-MAC"), "--config", config_arg]);
    assert!(out.contains(&format!("  evidence (mac)  {}\n", hex::encode(b"canonical"))), "{out}");
}

/// A missing configuration file is one line that names it and says why, once.
#[test]
fn a_missing_config_is_one_line_with_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let (code, _, err) = server_cli(&["serve", "--config", &missing.display().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
