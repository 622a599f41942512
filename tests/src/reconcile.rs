//! Reconciliation of what terminals concluded against what the ledger holds
//! (issue 16 §2): the outcomes files of `eapay-terminal bench --outcomes`
//! (one JSON line per payment a terminal attempted) beside the ledger as
//! `eapay-server txn export --format jsonl` writes it, after the terminals'
//! stored reversals were flushed.
//!
//! The files are read as their documented JSON, not through the crates that
//! write them, so a change of either format shows here.
//!
//! What counts as what:
//! - **lost**: a terminal said approved, and the ledger has no approval of
//!   that (merchant, transaction id) with that approval code (it has none,
//!   another code, a decline, or a reversal the terminal never asked for).
//! - **double**: a (merchant, transaction id) approved more than once (two
//!   ledger rows, two terminals' approvals), an approval code on two
//!   authorizations, or a card whose available amount is below its limit
//!   less its approved, unreversed payments (charged more than the ledger's
//!   approvals explain).
//! - **stranded**: the ledger holds an approved, unreversed payment that no
//!   terminal believes approved (it concluded declined or failed, or was in
//!   doubt and its reversal did not take, or never attempted it): the
//!   card's money is held for a sale nobody completed.
//! - **unbalanced**: a card with more available than its limit less its
//!   approved, unreversed payments.
//! - **unaudited**: an authorization whose changes lack their audit lines
//!   (approved with its code, declined, reversed, captured, refunded,
//!   tombstone), a card without its "card issued" line, or a card whose
//!   available amount its limit and the approvals and reversals in the
//!   audit log do not add up to.
//! - **reversed**: in-doubt payments whose ledger row ends reversed (an
//!   approval taken back, or a tombstone that the reversal left because it
//!   arrived before any authorization).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde_json::Value;

/// The figures of one reconciliation and the problems behind them.
#[derive(Debug, Default, Clone)]
pub struct Reconciliation {
    /// Payments in the outcomes files.
    pub attempted: u64,
    pub approved: u64,
    pub declined: u64,
    pub in_doubt: u64,
    /// Failed before reaching a server, or refused by the card.
    pub not_sent: u64,
    /// In-doubt payments whose ledger row ends reversed.
    pub reversed: u64,
    /// Of `reversed`: tombstones (the reversal came first).
    pub tombstones: u64,
    /// In-doubt payments the ledger declined or never recorded.
    pub in_doubt_not_approved: u64,
    pub lost: u64,
    pub double: u64,
    pub stranded: u64,
    pub unbalanced: u64,
    pub unaudited: u64,
    /// One line per problem, for people.
    pub problems: Vec<String>,
}

impl Reconciliation {
    /// No lost, double, stranded, unbalanced or unaudited payment.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.double == 0 && self.stranded == 0 && self.unbalanced == 0 && self.unaudited == 0
    }
}

impl fmt::Display for Reconciliation {
    /// The report line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempted {} approved {} declined {} in_doubt {} reversed {} lost {} double {} \
             (stranded {} unbalanced {} unaudited {}; not sent {}; in doubt: {} approvals reversed, {} tombstones, \
             {} never approved)",
            self.attempted,
            self.approved,
            self.declined,
            self.in_doubt,
            self.reversed,
            self.lost,
            self.double,
            self.stranded,
            self.unbalanced,
            self.unaudited,
            self.not_sent,
            self.reversed - self.tombstones,
            self.tombstones,
            self.in_doubt_not_approved,
        )
    }
}

/// A line of an outcomes file.
#[derive(Debug, Clone)]
struct Attempt {
    merchant_id: String,
    transaction_id: String,
    card_id: String,
    amount: u64,
    outcome: String,
    approval_code: Option<String>,
    decline_code: Option<u64>,
    reversal_stored: bool,
}

/// A ledger authorization as exported.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    merchant_id: String,
    transaction_id: String,
    card_id: Option<String>,
    amount: u64,
    status: String,
    tombstone: bool,
    approval_code: Option<String>,
}

impl Row {
    /// Approved and not reversed: the card's money is held for it.
    fn holds_funds(&self) -> bool {
        matches!(self.status.as_str(), "approved" | "captured")
    }
}

struct Card {
    card_id: String,
    credit_limit: u64,
    available: u64,
}

struct AuditLine {
    event: String,
    authorization_id: Option<i64>,
    card_id: Option<String>,
    detail: String,
}

struct Ledger {
    cards: Vec<Card>,
    rows: Vec<Row>,
    audit: Vec<AuditLine>,
}

/// Reconciles the outcomes files against a `txn export` of the ledger.
pub fn reconcile_files(outcomes: &[&Path], ledger_export: &Path) -> Result<Reconciliation, String> {
    let mut attempts = Vec::new();
    for path in outcomes {
        attempts.extend(read_outcomes(path)?);
    }
    let ledger = read_ledger(ledger_export)?;
    Ok(reconcile(&attempts, &ledger))
}

fn read_lines(path: &Path) -> Result<Vec<(usize, Value)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map(|v| (n + 1, v))
                .map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), n + 1))
        })
        .collect()
}

fn text(v: &Value, key: &str, at: &str) -> Result<String, String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{at}: no string {key:?}"))
}

fn optional_text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(v: &Value, key: &str, at: &str) -> Result<u64, String> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| format!("{at}: no integer {key:?}"))
}

fn read_outcomes(path: &Path) -> Result<Vec<Attempt>, String> {
    read_lines(path)?
        .into_iter()
        .map(|(n, v)| {
            let at = format!("{}:{n}", path.display());
            Ok(Attempt {
                merchant_id: text(&v, "merchant_id", &at)?,
                transaction_id: text(&v, "transaction_id", &at)?,
                card_id: text(&v, "card_id", &at)?,
                amount: number(&v, "amount", &at)?,
                outcome: text(&v, "outcome", &at)?,
                approval_code: optional_text(&v, "approval_code"),
                decline_code: v.get("decline_code").and_then(Value::as_u64),
                reversal_stored: v.get("reversal_stored").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

fn read_ledger(path: &Path) -> Result<Ledger, String> {
    let mut ledger = Ledger { cards: Vec::new(), rows: Vec::new(), audit: Vec::new() };
    for (n, v) in read_lines(path)? {
        let at = format!("{}:{n}", path.display());
        match text(&v, "record", &at)?.as_str() {
            "card" => ledger.cards.push(Card {
                card_id: text(&v, "card_id", &at)?,
                credit_limit: number(&v, "credit_limit", &at)?,
                available: number(&v, "available", &at)?,
            }),
            "authorization" => ledger.rows.push(Row {
                id: v.get("id").and_then(Value::as_i64).ok_or_else(|| format!("{at}: no id"))?,
                merchant_id: text(&v, "merchant_id", &at)?,
                transaction_id: text(&v, "transaction_id", &at)?,
                card_id: optional_text(&v, "card_id"),
                amount: number(&v, "amount", &at)?,
                status: text(&v, "status", &at)?,
                tombstone: v.get("tombstone").and_then(Value::as_bool).ok_or_else(|| format!("{at}: no tombstone"))?,
                approval_code: optional_text(&v, "approval_code"),
            }),
            "audit" => ledger.audit.push(AuditLine {
                event: text(&v, "event", &at)?,
                authorization_id: v.get("authorization_id").and_then(Value::as_i64),
                card_id: optional_text(&v, "card_id"),
                detail: text(&v, "detail", &at)?,
            }),
            other => return Err(format!("{at}: unknown record {other:?}")),
        }
    }
    Ok(ledger)
}

/// Keeps the first 200 problems: enough to see a pattern.
fn problem(r: &mut Reconciliation, line: String) {
    if r.problems.len() < 200 {
        r.problems.push(line);
    }
}

/// `amount=N` in an audit line's detail.
fn audited_amount(detail: &str) -> Option<u64> {
    let rest = &detail[detail.find("amount=")? + "amount=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn reconcile(attempts: &[Attempt], ledger: &Ledger) -> Reconciliation {
    let mut r = Reconciliation::default();

    // The ledger by (merchant, transaction id); more than one row is a double.
    let mut rows: HashMap<(&str, &str), &Row> = HashMap::new();
    for row in &ledger.rows {
        if let Some(first) = rows.insert((&row.merchant_id, &row.transaction_id), row) {
            r.double += 1;
            problem(
                &mut r,
                format!(
                    "double: {}:{} has authorizations {} and {}",
                    row.merchant_id, row.transaction_id, first.id, row.id
                ),
            );
        }
    }
    let mut codes: HashMap<&str, i64> = HashMap::new();
    for row in &ledger.rows {
        if let Some(code) = &row.approval_code {
            if let Some(other) = codes.insert(code, row.id) {
                r.double += 1;
                problem(&mut r, format!("double: approval code {code} on authorizations {other} and {}", row.id));
            }
        }
    }

    // Each terminal's conclusion against the ledger.
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    for a in attempts {
        r.attempted += 1;
        let key = (a.merchant_id.as_str(), a.transaction_id.as_str());
        if let Some(before) = seen.insert(key, &a.outcome) {
            if before == "approved" && a.outcome == "approved" {
                r.double += 1;
                problem(&mut r, format!("double: {}:{} approved at two terminals", a.merchant_id, a.transaction_id));
            }
        }
        let row = rows.get(&key).copied();
        let name = format!("{}:{} (card {}, {} minor units)", a.merchant_id, a.transaction_id, a.card_id, a.amount);
        let stranded = |r: &mut Reconciliation, why: &str| {
            r.stranded += 1;
            let row = row.map_or(String::new(), |row| format!(" as authorization {}", row.id));
            problem(r, format!("stranded: {name}: the terminal {why}, the ledger holds it approved{row}"));
        };
        match a.outcome.as_str() {
            "approved" => {
                r.approved += 1;
                match row {
                    Some(row) if row.holds_funds() && row.approval_code == a.approval_code => {}
                    Some(row) if row.status == "reversed" && a.reversal_stored => {}
                    Some(row) => {
                        r.lost += 1;
                        problem(
                            &mut r,
                            format!(
                                "lost: {name}: the terminal has approval {}, the ledger {} {}",
                                a.approval_code.as_deref().unwrap_or("-"),
                                row.status,
                                row.approval_code.as_deref().unwrap_or("without approval code")
                            ),
                        );
                    }
                    None => {
                        r.lost += 1;
                        problem(
                            &mut r,
                            format!(
                                "lost: {name}: the terminal has approval {}, the ledger has no such authorization",
                                a.approval_code.as_deref().unwrap_or("-")
                            ),
                        );
                    }
                }
            }
            "declined" => {
                r.declined += 1;
                if row.is_some_and(Row::holds_funds) {
                    let code = a.decline_code.map_or("without a code".to_string(), |c| format!("{c:02}"));
                    stranded(&mut r, &format!("concluded declined {code}"));
                }
            }
            "in_doubt" => {
                r.in_doubt += 1;
                match row {
                    Some(row) if row.status == "reversed" => {
                        r.reversed += 1;
                        r.tombstones += u64::from(row.tombstone);
                    }
                    Some(row) if row.holds_funds() => {
                        stranded(
                            &mut r,
                            if a.reversal_stored {
                                "was in doubt and its reversal did not take"
                            } else {
                                "was in doubt and stored no reversal"
                            },
                        );
                    }
                    _ => r.in_doubt_not_approved += 1,
                }
            }
            "failed" | "refused_by_card" => {
                r.not_sent += 1;
                if row.is_some_and(Row::holds_funds) {
                    stranded(&mut r, "never sent the payment");
                }
            }
            other => problem(&mut r, format!("{name}: unknown outcome {other:?}")),
        }
    }

    // Approvals no terminal attempted (of the merchants the terminals pay).
    let merchants: HashSet<&str> = attempts.iter().map(|a| a.merchant_id.as_str()).collect();
    for row in &ledger.rows {
        let key = (row.merchant_id.as_str(), row.transaction_id.as_str());
        if merchants.contains(key.0) && row.holds_funds() && !seen.contains_key(&key) {
            r.stranded += 1;
            problem(&mut r, format!("stranded: {}:{} approved in the ledger, attempted by no terminal", key.0, key.1));
        }
    }

    // Each card's available amount against its approvals.
    let mut held: BTreeMap<&str, u64> = BTreeMap::new();
    for row in ledger.rows.iter().filter(|row| row.holds_funds()) {
        if let Some(card) = &row.card_id {
            *held.entry(card).or_default() += row.amount;
        }
    }
    for card in &ledger.cards {
        let expected = card.credit_limit.saturating_sub(held.get(card.card_id.as_str()).copied().unwrap_or(0));
        if card.available < expected {
            r.double += 1;
            problem(
                &mut r,
                format!(
                    "double: card {} has {} available, its limit less its approved payments is {expected}",
                    card.card_id, card.available
                ),
            );
        } else if card.available > expected {
            r.unbalanced += 1;
            problem(
                &mut r,
                format!(
                    "unbalanced: card {} has {} available, its limit less its approved payments is {expected}",
                    card.card_id, card.available
                ),
            );
        }
    }

    // The audit log: every change of every authorization, and every change
    // of a card's available amount.
    let mut events: HashMap<i64, Vec<&AuditLine>> = HashMap::new();
    for line in &ledger.audit {
        if let Some(id) = line.authorization_id {
            events.entry(id).or_default().push(line);
        }
    }
    for row in &ledger.rows {
        let lines = events.get(&row.id).map(Vec::as_slice).unwrap_or_default();
        let has = |event: &str| lines.iter().any(|l| l.event == event);
        let approval_audited = || {
            let code = row.approval_code.as_deref().unwrap_or("-");
            lines.iter().any(|l| l.event == "authorization approved" && l.detail.contains(&format!("code={code}")))
        };
        let missing = match (row.status.as_str(), row.tombstone) {
            (_, true) => (!has("tombstone recorded")).then_some("tombstone recorded"),
            ("declined", _) => (!has("authorization declined")).then_some("authorization declined"),
            ("approved", _) => (!approval_audited()).then_some("authorization approved"),
            ("reversed", _) if !approval_audited() => Some("authorization approved"),
            ("reversed", _) => (!has("authorization reversed")).then_some("authorization reversed"),
            ("captured", _) if !approval_audited() => Some("authorization approved"),
            ("captured", _) => (!has("authorization captured")).then_some("authorization captured"),
            ("refunded", _) if !has("authorization captured") => Some("authorization captured"),
            ("refunded", _) => (!has("authorization refunded")).then_some("authorization refunded"),
            _ => Some("a known status"),
        };
        if let Some(event) = missing {
            r.unaudited += 1;
            problem(
                &mut r,
                format!(
                    "unaudited: authorization {} ({}:{}, {}) has no {event:?} line",
                    row.id, row.merchant_id, row.transaction_id, row.status
                ),
            );
        }
    }
    // Replaying the audit log gives each card's available amount, from its
    // issuance on.
    let mut replayed: HashMap<&str, i128> = HashMap::new();
    let mut issued: HashSet<&str> = HashSet::new();
    for line in &ledger.audit {
        let Some(card) = line.card_id.as_deref() else { continue };
        if line.event == "card issued" {
            issued.insert(card);
        }
        let sign = match line.event.as_str() {
            "authorization approved" => -1,
            "authorization reversed" | "authorization refunded" => 1,
            _ => continue,
        };
        let amount = audited_amount(&line.detail).unwrap_or(0);
        *replayed.entry(card).or_default() += sign * i128::from(amount);
    }
    for card in &ledger.cards {
        if !issued.contains(card.card_id.as_str()) {
            r.unaudited += 1;
            problem(&mut r, format!("unaudited: card {} has no \"card issued\" line", card.card_id));
        }
        let from_audit = i128::from(card.credit_limit) + replayed.get(card.card_id.as_str()).copied().unwrap_or(0);
        if from_audit != i128::from(card.available) {
            r.unaudited += 1;
            problem(
                &mut r,
                format!(
                    "unaudited: card {} has {} available, its audited approvals and reversals leave {from_audit}",
                    card.card_id, card.available
                ),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(txn: &str, outcome: &str, code: Option<&str>, reversal: bool) -> Attempt {
        Attempt {
            merchant_id: "M".into(),
            transaction_id: txn.into(),
            card_id: "c1".into(),
            amount: 10,
            outcome: outcome.into(),
            approval_code: code.map(str::to_owned),
            decline_code: None,
            reversal_stored: reversal,
        }
    }

    fn row(id: i64, txn: &str, status: &str, code: Option<&str>) -> Row {
        Row {
            id,
            merchant_id: "M".into(),
            transaction_id: txn.into(),
            card_id: Some("c1".into()),
            amount: 10,
            status: status.into(),
            tombstone: false,
            approval_code: code.map(str::to_owned),
        }
    }

    fn audit(id: i64, event: &str, detail: &str) -> AuditLine {
        AuditLine { event: event.into(), authorization_id: Some(id), card_id: Some("c1".into()), detail: detail.into() }
    }

    /// Three payments: approved, in doubt and reversed, declined; all
    /// audited, the card balanced.
    fn consistent() -> (Vec<Attempt>, Ledger) {
        let attempts = vec![
            attempt("T1", "approved", Some("AAAAA1"), false),
            attempt("T2", "in_doubt", None, true),
            attempt("T3", "declined", None, false),
        ];
        let ledger = Ledger {
            cards: vec![Card { card_id: "c1".into(), credit_limit: 100, available: 90 }],
            rows: vec![
                row(1, "T1", "approved", Some("AAAAA1")),
                row(2, "T2", "reversed", Some("BBBBB2")),
                row(3, "T3", "declined", None),
            ],
            audit: vec![
                AuditLine {
                    event: "card issued".into(),
                    authorization_id: None,
                    card_id: Some("c1".into()),
                    detail: "method=aka".into(),
                },
                audit(1, "authorization approved", "code=AAAAA1 amount=10 currency=840 card=c1"),
                audit(2, "authorization approved", "code=BBBBB2 amount=10 currency=840 card=c1"),
                audit(2, "authorization reversed", "approved -> reversed; amount=10 restored to available"),
                audit(3, "authorization declined", "code=51"),
            ],
        };
        (attempts, ledger)
    }

    #[test]
    fn a_consistent_ledger_reconciles() {
        let (attempts, ledger) = consistent();
        let r = reconcile(&attempts, &ledger);
        assert!(r.clean(), "{r}\n{:?}", r.problems);
        assert_eq!((r.attempted, r.approved, r.declined, r.in_doubt, r.reversed), (3, 1, 1, 1, 1));
        assert!(
            r.to_string().starts_with("attempted 3 approved 1 declined 1 in_doubt 1 reversed 1 lost 0 double 0"),
            "{r}"
        );
    }

    #[test]
    fn each_kind_of_inconsistency_is_counted() {
        // Another approval code: lost.
        let (attempts, mut ledger) = consistent();
        ledger.rows[0].approval_code = Some("ZZZZZ9".into());
        ledger.audit[1].detail = "code=ZZZZZ9 amount=10".into();
        assert_eq!(reconcile(&attempts, &ledger).lost, 1);

        // The reversal never arrived: the money stays held, stranded.
        let (attempts, mut ledger) = consistent();
        ledger.rows[1].status = "approved".into();
        ledger.audit.remove(3);
        ledger.cards[0].available = 80;
        let r = reconcile(&attempts, &ledger);
        assert_eq!((r.stranded, r.double, r.unbalanced, r.unaudited), (1, 0, 0, 0), "{:?}", r.problems);

        // A decline at the terminal that the ledger approved.
        let (attempts, mut ledger) = consistent();
        ledger.rows[2] = row(3, "T3", "approved", Some("CCCCC3"));
        ledger.audit[4] = audit(3, "authorization approved", "code=CCCCC3 amount=10");
        ledger.cards[0].available = 80;
        let r = reconcile(&attempts, &ledger);
        assert_eq!((r.stranded, r.double, r.unaudited, r.lost), (1, 0, 0, 0), "{:?}", r.problems);

        // A card charged twice.
        let (attempts, mut ledger) = consistent();
        ledger.cards[0].available = 80;
        let r = reconcile(&attempts, &ledger);
        assert_eq!((r.double, r.unaudited), (1, 1), "{:?}", r.problems);

        // An approval without its audit line; a card without its issuance.
        let (attempts, mut ledger) = consistent();
        ledger.audit.remove(1);
        assert_eq!(reconcile(&attempts, &ledger).unaudited, 2, "the line and the card's replayed amount");
        let (attempts, mut ledger) = consistent();
        ledger.audit.remove(0);
        assert_eq!(reconcile(&attempts, &ledger).unaudited, 1, "card issued");

        // One transaction id approved twice.
        let (mut attempts, mut ledger) = consistent();
        attempts.push(attempt("T1", "approved", Some("AAAAA1"), false));
        ledger.rows.push(row(4, "T1", "approved", Some("AAAAA1")));
        let r = reconcile(&attempts, &ledger);
        assert!(r.double >= 3, "two rows, one code twice, two terminals: {:?}", r.problems);
    }

    #[test]
    fn amounts_are_read_from_audit_details() {
        assert_eq!(audited_amount("code=AB amount=125 currency=840"), Some(125));
        assert_eq!(audited_amount("approved -> reversed; amount=7 restored"), Some(7));
        assert_eq!(audited_amount("code=51"), None);
    }
}
