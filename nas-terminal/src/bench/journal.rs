//! `--outcomes FILE` and `--reversals FILE`: the load generator as a fleet
//! of terminals that a reconciliation can hold to account.
//!
//! - **Outcomes** (the terminals' journal): one JSON line per payment a
//!   simulated terminal attempted, with what that terminal concluded:
//!
//!   ```json
//!   {"merchant_id":"M-DEMO","transaction_id":"B19...-3-17","card_id":"c4f...","amount":1,"currency":840,"outcome":"approved","approval_code":"4F2A91","at_ms":1765100000000}
//!   {"merchant_id":"M-DEMO","transaction_id":"B19...-3-18","card_id":"c4f...","amount":1,"currency":840,"outcome":"declined","decline_code":51,"at_ms":1765100000050}
//!   {"merchant_id":"M-DEMO","transaction_id":"B19...-5-2","card_id":"9ab...","amount":1,"currency":840,"outcome":"in_doubt","error":"no valid answer ...","reversal_stored":true,"at_ms":1765100001000}
//!   ```
//!
//!   `amount` is in minor units, `currency` ISO 4217 numeric, `at_ms` when
//!   the terminal concluded (Unix ms). `outcome` is `approved` (with
//!   `approval_code`), `declined` (with `decline_code`, null when the
//!   Reject carried none), `in_doubt` (the payment attributes reached a
//!   server and no usable final answer came back: the server may have
//!   approved, so the terminal owes a reversal; `reversal_stored` says
//!   whether it is in the `--reversals` store), `failed` (the conversation
//!   ended before any payment attribute left the terminal: nothing can
//!   have been approved) or `refused_by_card`. Lines are written through a
//!   buffer as conclusions come, in no particular order; the file is
//!   complete when the bench exits.
//! - **Reversals**: an in-doubt payment's reversal advice goes to the
//!   `--reversals` store exactly as `eapay-terminal pay` stores it
//!   (`nas_terminal::reversal`: locked, rewritten atomically, fsynced)
//!   before its outcome line is written and before that terminal starts
//!   its next payment. The bench does not send them: `eapay-terminal flush
//!   --reversals FILE` does, as a terminal would on its next payment.
//!
//! Without either option nothing here runs: no per-payment I/O, no copy of
//! the payment details.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use aaa_proto::payment::PaymentDetails;
use anyhow::{Context, Result};
use nas_terminal::payment::{Answer, Failed, Finished};
use nas_terminal::reversal::{ReversalAdvice, ReversalStore};
use serde::Serialize;

use crate::options::now_ms;

/// What a terminal concluded about one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Conclusion {
    Approved {
        approval_code: String,
    },
    /// Eapay-Decline-Code, if the Reject carried one.
    Declined {
        decline_code: Option<u32>,
    },
    /// The server may have approved; the terminal owes a reversal.
    InDoubt {
        error: String,
        reversal_stored: bool,
    },
    /// Ended before the payment reached a server.
    Failed {
        error: String,
    },
    RefusedByCard,
}

impl Conclusion {
    /// The conclusion a terminal draws from one payment's result.
    pub fn of(result: &Result<Finished, Failed>) -> Self {
        match result {
            Ok(done) => match &done.answer {
                Answer::Approved { approval_code, .. } => Conclusion::Approved { approval_code: approval_code.clone() },
                Answer::Declined { code, .. } => Conclusion::Declined { decline_code: *code },
                Answer::RefusedByCard => Conclusion::RefusedByCard,
                // A payment is never answered as an authentication (the
                // terminal refuses an Accept without approval): defensive.
                Answer::Authenticated => {
                    Conclusion::InDoubt { error: "an Accept without an approval".into(), reversal_stored: false }
                }
            },
            Err(failed) if failed.in_doubt => {
                Conclusion::InDoubt { error: failed.error.to_string(), reversal_stored: false }
            }
            Err(failed) => Conclusion::Failed { error: failed.error.to_string() },
        }
    }
}

/// One line of the outcomes file.
#[derive(Serialize)]
struct Line<'a> {
    merchant_id: &'a str,
    transaction_id: &'a str,
    card_id: &'a str,
    amount: u64,
    currency: u32,
    #[serde(flatten)]
    conclusion: &'a Conclusion,
    at_ms: u64,
}

/// The outcomes file and the reversal store of a run.
pub struct Journal {
    outcomes: Option<Outcomes>,
    /// The `--reversals` store.
    reversals: Option<PathBuf>,
    stored: AtomicU64,
    not_stored: AtomicU64,
}

struct Outcomes {
    path: PathBuf,
    writer: Mutex<Writer>,
}

struct Writer {
    file: BufWriter<File>,
    lines: u64,
    /// The first write that failed; later lines are not attempted.
    error: Option<std::io::Error>,
}

/// What the journal holds at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct JournalSummary {
    pub outcomes_file: Option<String>,
    pub outcomes_written: u64,
    pub reversals_file: Option<String>,
    pub reversals_stored: u64,
    /// In-doubt payments whose reversal could not be stored (or, without
    /// `--reversals`, was not asked for).
    pub reversals_not_stored: u64,
}

impl Journal {
    /// Creates (truncates) the outcomes file now, so that a path that cannot
    /// be written fails the run before it starts. `None` if neither option
    /// was given.
    pub fn open(outcomes: Option<&Path>, reversals: Option<&Path>) -> Result<Option<Self>> {
        if outcomes.is_none() && reversals.is_none() {
            return Ok(None);
        }
        let outcomes = match outcomes {
            Some(path) => {
                let file = File::create(path).with_context(|| format!("--outcomes {}", path.display()))?;
                let writer = Writer { file: BufWriter::with_capacity(64 * 1024, file), lines: 0, error: None };
                Some(Outcomes { path: path.to_path_buf(), writer: Mutex::new(writer) })
            }
            None => None,
        };
        let reversals = match reversals {
            Some(path) => {
                let store = ReversalStore::new(path);
                // A store that cannot be read now would lose every advice.
                store.pending().with_context(|| format!("--reversals {}", path.display()))?;
                Some(path.to_path_buf())
            }
            None => None,
        };
        Ok(Some(Self { outcomes, reversals, stored: AtomicU64::new(0), not_stored: AtomicU64::new(0) }))
    }

    /// Records a terminal's conclusion about `details` (paid with `card`).
    /// An in-doubt payment's reversal is stored first (blocking file I/O, off
    /// the runtime's workers), so the line can say it is.
    pub async fn record(&self, details: &PaymentDetails, card: &str, mut conclusion: Conclusion) {
        if let Conclusion::InDoubt { error, reversal_stored } = &mut conclusion {
            *reversal_stored = self.store_reversal(details, error).await;
            let counter = if *reversal_stored { &self.stored } else { &self.not_stored };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let Some(outcomes) = &self.outcomes else { return };
        let line = Line {
            merchant_id: &details.merchant_id,
            transaction_id: &details.transaction_id,
            card_id: card,
            amount: details.amount,
            currency: details.currency,
            conclusion: &conclusion,
            at_ms: now_ms(),
        };
        let mut w = outcomes.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.error.is_some() {
            return;
        }
        let written = serde_json::to_writer(&mut w.file, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| w.file.write_all(b"\n"));
        match written {
            Ok(()) => w.lines += 1,
            Err(e) => w.error = Some(e),
        }
    }

    /// Stores the reversal advice of an in-doubt payment; false if there is
    /// no store or it failed (logged).
    async fn store_reversal(&self, details: &PaymentDetails, error: &str) -> bool {
        let Some(path) = &self.reversals else { return false };
        let advice = ReversalAdvice {
            merchant_id: details.merchant_id.clone(),
            transaction_id: details.transaction_id.clone(),
            amount: details.amount,
            currency: details.currency,
            created_ms: now_ms(),
            attempts: 0,
            next_attempt_ms: 0,
            last_error: Some(error.to_owned()),
        };
        let store = ReversalStore::new(path);
        let stored = match tokio::task::spawn_blocking(move || store.add(advice)).await {
            Ok(done) => done.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(transaction = %details.transaction_id, error = %e, "reversal NOT stored");
                false
            }
        }
    }

    /// Flushes the outcomes file; the run's journal figures, or the error
    /// that spoiled the file.
    pub fn finish(&self) -> Result<JournalSummary> {
        let mut summary = JournalSummary {
            outcomes_file: self.outcomes.as_ref().map(|o| o.path.display().to_string()),
            outcomes_written: 0,
            reversals_file: self.reversals.as_ref().map(|p| p.display().to_string()),
            reversals_stored: self.stored.load(Ordering::Relaxed),
            reversals_not_stored: self.not_stored.load(Ordering::Relaxed),
        };
        if let Some(outcomes) = &self.outcomes {
            let mut w = outcomes.writer.lock().unwrap_or_else(|e| e.into_inner());
            if w.error.is_none() {
                if let Err(e) = w.file.flush() {
                    w.error = Some(e);
                }
            }
            if let Some(e) = &w.error {
                anyhow::bail!("--outcomes {}: {e} (the file is incomplete)", outcomes.path.display());
            }
            summary.outcomes_written = w.lines;
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_terminal::payment::PaymentError;

    fn details(id: &str) -> PaymentDetails {
        PaymentDetails {
            transaction_id: id.into(),
            merchant_id: "M-1".into(),
            amount: 125,
            currency: 840,
            installments: 0,
            terminal_nonce: [1; 16],
            terminal_time_ms: 1,
        }
    }

    fn finished(answer: Answer) -> Result<Finished, Failed> {
        Ok(Finished { answer, user_name: None, rounds: 2, reply: None })
    }

    #[test]
    fn conclusions_follow_the_terminal_s_answer() {
        let approved =
            finished(Answer::Approved { approval_code: "AB12CD".into(), approved_amount: 125, receipt: None });
        assert_eq!(Conclusion::of(&approved), Conclusion::Approved { approval_code: "AB12CD".into() });
        let declined = finished(Answer::Declined { code: Some(51), reason: None });
        assert_eq!(Conclusion::of(&declined), Conclusion::Declined { decline_code: Some(51) });
        let doubt = Err(Failed { error: PaymentError::NoEap, in_doubt: true });
        assert!(matches!(Conclusion::of(&doubt), Conclusion::InDoubt { reversal_stored: false, .. }));
        let early = Err(Failed { error: PaymentError::TooManyRounds, in_doubt: false });
        assert!(matches!(Conclusion::of(&early), Conclusion::Failed { .. }));
    }

    #[tokio::test]
    async fn in_doubt_payments_store_their_reversal_before_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let (outcomes, reversals) = (dir.path().join("outcomes.jsonl"), dir.path().join("saf.json"));
        let journal = Journal::open(Some(&outcomes), Some(&reversals)).unwrap().unwrap();
        let doubt = Conclusion::InDoubt { error: "no answer".into(), reversal_stored: false };
        journal.record(&details("T-1"), "card-1", doubt).await;
        journal.record(&details("T-2"), "card-2", Conclusion::Approved { approval_code: "AB12CD".into() }).await;
        let summary = journal.finish().unwrap();
        assert_eq!((summary.outcomes_written, summary.reversals_stored, summary.reversals_not_stored), (2, 1, 0));

        let pending = ReversalStore::new(&reversals).pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].transaction_id.as_str(), pending[0].amount), ("T-1", 125));
        let text = std::fs::read_to_string(&outcomes).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["outcome"], "in_doubt");
        assert_eq!(lines[0]["reversal_stored"], true);
        assert_eq!(lines[0]["transaction_id"], "T-1");
        assert_eq!(lines[0]["merchant_id"], "M-1");
        assert_eq!(lines[0]["card_id"], "card-1");
        assert_eq!(lines[0]["amount"], 125);
        assert_eq!(lines[1]["outcome"], "approved");
        assert_eq!(lines[1]["approval_code"], "AB12CD");
    }

    #[tokio::test]
    async fn without_a_store_an_in_doubt_payment_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let outcomes = dir.path().join("outcomes.jsonl");
        let journal = Journal::open(Some(&outcomes), None).unwrap().unwrap();
        let doubt = Conclusion::InDoubt { error: "no answer".into(), reversal_stored: false };
        journal.record(&details("T-1"), "card-1", doubt).await;
        let summary = journal.finish().unwrap();
        assert_eq!((summary.reversals_stored, summary.reversals_not_stored), (0, 1));
        let text = std::fs::read_to_string(&outcomes).unwrap();
        assert!(text.contains("\"reversal_stored\":false"), "{text}");
        assert!(Journal::open(None, None).unwrap().is_none());
    }
}
