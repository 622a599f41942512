//! Group commit: one task owns the write path of the request traffic.
//!
//! Callers send a job over a bounded channel and wait on a oneshot. The task
//! takes one job, drains up to `batch_max - 1` more that are already queued,
//! runs them in ONE transaction in order (a later job sees the earlier ones'
//! effects), commits, and only then answers them all: with synchronous=FULL
//! that is one fsync for the whole batch, and no caller hears about a change
//! that is not durable. If the batch fails, it is rolled back and each job
//! runs again in a transaction of its own, so one bad job cannot fail the
//! others. Only database work happens here; Milenage runs in the callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aaa_proto::receipt::IssuerSigningKey;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::authorizations::{self, Context};
use super::cards::{self, ReservedSqns};
use super::db::Db;
use super::model::{Attempt, Decision, PaymentPolicy, Settlement, SettlementOutcome};
use super::settlement;
use crate::cards::CardMethod;
use crate::error::ServerError;

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Jobs received.
    pub commands: u64,
    /// Transactions committed (a batch counts once).
    pub commits: u64,
    /// Batches that failed and were re-run one job at a time.
    pub fallbacks: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    commits: AtomicU64,
    fallbacks: AtomicU64,
}

/// Reserve a card's next SQNs, optionally after resynchronising to SQN_MS.
#[derive(Debug)]
pub struct SqnRequest {
    pub card_id: String,
    pub method: CardMethod,
    pub resync_to: Option<u64>,
    pub count: u32,
}

type Reply<T> = oneshot::Sender<Result<T, ServerError>>;

enum Job {
    Authorize(Box<Attempt>, Reply<Decision>),
    Settle(Settlement, Reply<SettlementOutcome>),
    AdvanceSqn(SqnRequest, Reply<Option<ReservedSqns>>),
    /// Use up a SIM/AKA re-authentication identity (card, issue time).
    UseReauth(String, u64, Reply<bool>),
}

enum Done {
    Decision(Decision),
    Settlement(SettlementOutcome),
    Sqn(Option<ReservedSqns>),
    Used(bool),
}

impl Job {
    async fn run(&self, w: &Worker, conn: &mut AnyConnection) -> Result<Done, ServerError> {
        match self {
            Job::Authorize(attempt, _) => {
                let ctx = Context { db: &w.db, policy: &w.policy, signer: w.signer.as_ref() };
                authorizations::authorize(&ctx, conn, attempt).await.map(Done::Decision)
            }
            Job::Settle(s, _) => settlement::settle(&w.db, conn, s).await.map(Done::Settlement),
            Job::AdvanceSqn(r, _) => {
                cards::reserve_sqns(&w.db, conn, &r.card_id, r.method, r.resync_to, r.count).await.map(Done::Sqn)
            }
            Job::UseReauth(card_id, issued_us, _) => cards::use_reauth(conn, card_id, *issued_us).await.map(Done::Used),
        }
    }

    /// A caller that gave up waiting is no error of the ledger's: the change is committed.
    fn answer(self, result: Result<Done, ServerError>) {
        let mismatch = || ServerError::Ledger("internal: writer answered the wrong kind".into());
        match self {
            Job::Authorize(_, reply) => {
                let _ =
                    reply.send(result.and_then(|d| if let Done::Decision(x) = d { Ok(x) } else { Err(mismatch()) }));
            }
            Job::Settle(_, reply) => {
                let _ =
                    reply.send(result.and_then(|d| if let Done::Settlement(x) = d { Ok(x) } else { Err(mismatch()) }));
            }
            Job::AdvanceSqn(_, reply) => {
                let _ = reply.send(result.and_then(|d| if let Done::Sqn(x) = d { Ok(x) } else { Err(mismatch()) }));
            }
            Job::UseReauth(_, _, reply) => {
                let _ = reply.send(result.and_then(|d| if let Done::Used(x) = d { Ok(x) } else { Err(mismatch()) }));
            }
        }
    }
}

/// The handle callers hold.
#[derive(Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Authorize(..) => "Authorize",
            Job::Settle(..) => "Settle",
            Job::AdvanceSqn(..) => "AdvanceSqn",
            Job::UseReauth(..) => "UseReauth",
        })
    }
}

struct Worker {
    db: Db,
    policy: PaymentPolicy,
    signer: Option<IssuerSigningKey>,
    batch_max: usize,
    counters: Arc<Counters>,
}

impl Writer {
    pub fn start(db: Db, policy: PaymentPolicy, signer: Option<IssuerSigningKey>, batch_max: usize) -> Self {
        let batch_max = batch_max.max(1);
        let counters = Arc::new(Counters::default());
        let (jobs, rx) = mpsc::channel(batch_max.saturating_mul(4));
        let worker = Worker { db, policy, signer, batch_max, counters: counters.clone() };
        let task = tokio::spawn(worker.run(rx));
        Self { jobs, counters, task }
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            fallbacks: self.counters.fallbacks.load(Ordering::Relaxed),
        }
    }

    pub async fn authorize(&self, attempt: Attempt) -> Result<Decision, ServerError> {
        self.call(|reply| Job::Authorize(Box::new(attempt), reply)).await
    }

    /// See `cards::use_reauth`; durable before it answers.
    pub async fn use_reauth(&self, card_id: String, issued_us: u64) -> Result<bool, ServerError> {
        self.call(|reply| Job::UseReauth(card_id, issued_us, reply)).await
    }

    pub async fn settle(&self, settlement: Settlement) -> Result<SettlementOutcome, ServerError> {
        self.call(|reply| Job::Settle(settlement, reply)).await
    }

    pub async fn advance_sqn(&self, request: SqnRequest) -> Result<Option<ReservedSqns>, ServerError> {
        self.call(|reply| Job::AdvanceSqn(request, reply)).await
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Answers everything already queued, then stops.
    pub async fn close(self) {
        drop(self.jobs);
        if let Err(e) = self.task.await {
            tracing::error!("ledger writer task ended abnormally: {e}");
        }
    }
}

fn stopped() -> ServerError {
    ServerError::Ledger("the ledger writer has stopped".into())
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.counters.commands.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.process(batch).await;
        }
    }

    async fn process(&self, batch: Vec<Job>) {
        if batch.len() > 1 {
            match self.run_batch(&batch).await {
                Ok(results) => {
                    for (job, done) in batch.into_iter().zip(results) {
                        job.answer(Ok(done));
                    }
                    return;
                }
                Err(e) => {
                    self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(jobs = batch.len(), "ledger batch failed, re-running one by one: {e}");
                }
            }
        }
        for job in batch {
            let result = self.run_alone(&job).await;
            job.answer(result);
        }
    }

    async fn run_batch(&self, batch: &[Job]) -> Result<Vec<Done>, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            match job.run(self, &mut tx).await {
                Ok(done) => results.push(done),
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        tx.commit().await?;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(results)
    }

    /// One job in its own transaction. A second attempt covers a race the
    /// first lost to another server instance (PostgreSQL: the same
    /// transaction id inserted concurrently); the re-run sees its result.
    async fn run_alone(&self, job: &Job) -> Result<Done, ServerError> {
        match self.try_alone(job).await {
            Ok(done) => Ok(done),
            Err(first) => {
                tracing::warn!(?job, "ledger job failed, retrying once: {first}");
                self.try_alone(job).await
            }
        }
    }

    async fn try_alone(&self, job: &Job) -> Result<Done, ServerError> {
        let mut tx = self.db.begin_write().await?;
        match job.run(self, &mut tx).await {
            Ok(done) => {
                tx.commit().await?;
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                Ok(done)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}
