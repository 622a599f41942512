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
//!
//! The worker is written once over [`Store`]: on PostgreSQL it is a tokio
//! task over the sqlx pool; on SQLite a thread of its own that owns a
//! rusqlite connection (`sqlite_store.rs`) and waits for jobs with
//! [`block_on`].

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Instant;

use aaa_proto::receipt::IssuerSigningKey;
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::authorizations::{self, ApprovalDraft, Context};
use super::cards::{self, ReservedSqns};
use super::db::{Backend, Db};
use super::model::{Attempt, Decision, PaymentPolicy, Settlement, SettlementOutcome};
use super::settlement;
use super::sql::SqlConn;
use super::sqlite_store::SqliteStore;
use crate::cards::CardMethod;
use crate::error::ServerError;
use crate::metrics::histogram::{Histogram, HistogramSnapshot};

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Jobs received.
    pub commands: u64,
    /// Transactions committed (a batch counts once).
    pub commits: u64,
    /// Batches that failed and were re-run one job at a time.
    pub fallbacks: u64,
    /// From a transaction's start to its durable commit (a batch counts once).
    pub commit_seconds: HistogramSnapshot,
}

impl WriterStats {
    /// Named as the server's `stopped` line lists counters.
    pub fn snapshot(&self) -> [(&'static str, u64); 3] {
        [("ledger_jobs", self.commands), ("ledger_commits", self.commits), ("ledger_fallbacks", self.fallbacks)]
    }
}

#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    commits: AtomicU64,
    fallbacks: AtomicU64,
    commit_seconds: Histogram,
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
    /// The draft is taken by the first run of the job.
    Authorize(Box<Attempt>, std::cell::Cell<Option<ApprovalDraft>>, Reply<Decision>),
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
    async fn run<C: SqlConn>(&self, rules: &Rules, conn: &mut C) -> Result<Done, ServerError> {
        match self {
            Job::Authorize(attempt, draft, _) => {
                let ctx = Context { policy: &rules.policy, signer: rules.signer.as_deref() };
                // A second run of the job (after a failed batch) draws afresh.
                let draft = draft.take();
                authorizations::authorize(&ctx, conn, attempt, draft).await.map(Done::Decision)
            }
            Job::Settle(s, _) => settlement::settle(conn, s).await.map(Done::Settlement),
            Job::AdvanceSqn(r, _) => {
                cards::reserve_sqns(conn, &r.card_id, r.method, r.resync_to, r.count).await.map(Done::Sqn)
            }
            Job::UseReauth(card_id, issued_us, _) => cards::use_reauth(conn, card_id, *issued_us).await.map(Done::Used),
        }
    }

    /// A caller that gave up waiting is no error of the ledger's: the change is committed.
    fn answer(self, result: Result<Done, ServerError>) {
        let mismatch = || ServerError::Ledger("internal: writer answered the wrong kind".into());
        match self {
            Job::Authorize(_, _, reply) => {
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
    signer: Option<Arc<IssuerSigningKey>>,
    counters: Arc<Counters>,
    worker: Running,
}

/// The writer's thread. Both backends run the worker on a thread of its
/// own under [`block_on`]: SQLite because its connection lives there, and
/// PostgreSQL with the runtime entered, so sqlx's sockets and timers are
/// driven by the server's runtime while the writer's futures need not be
/// `Send` (rustc cannot yet prove it for a worker generic over a store's
/// borrowed transaction, rust-lang/rust#100013).
#[derive(Debug)]
struct Running(std::thread::JoinHandle<()>);

fn spawn<S: Store>(worker: Worker<S>, rx: mpsc::Receiver<Job>) -> Result<Running, ServerError> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("eapay-ledger-writer".into())
        .spawn(move || {
            let _entered = runtime.enter();
            block_on(worker.run(rx))
        })
        .map(Running)
        .map_err(|e| ServerError::Ledger(format!("cannot start the ledger writer thread: {e}")))
}

/// Where the writer's transactions run: the sqlx pool, or the SQLite
/// writer thread's own connection.
pub trait Store: Send + 'static {
    type Tx<'a>: SqlConn
    where
        Self: 'a;

    fn begin(&mut self) -> impl Future<Output = Result<Self::Tx<'_>, ServerError>> + Send;
    fn commit(tx: Self::Tx<'_>) -> impl Future<Output = Result<(), ServerError>> + Send;
    fn rollback(tx: Self::Tx<'_>) -> impl Future<Output = ()> + Send;

    /// Upkeep between two batches, after the first is answered: whatever
    /// must run on the writer's connection without delaying an answer.
    fn between_batches(&mut self) {}
}

/// PostgreSQL (and SQLite in tests that want the sqlx path): a pooled
/// connection per transaction.
pub struct PoolStore(pub Db);

impl Store for PoolStore {
    type Tx<'a> = Transaction<'static, Any>;

    fn begin(&mut self) -> impl Future<Output = Result<Self::Tx<'_>, ServerError>> + Send {
        self.0.begin_write()
    }

    async fn commit(tx: Self::Tx<'_>) -> Result<(), ServerError> {
        Ok(tx.commit().await?)
    }

    async fn rollback(tx: Self::Tx<'_>) {
        if let Err(e) = tx.rollback().await {
            tracing::warn!("ledger writer: rollback failed: {e}");
        }
    }
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

/// What a job needs besides the database.
struct Rules {
    policy: PaymentPolicy,
    signer: Option<Arc<IssuerSigningKey>>,
}

struct Worker<S> {
    store: S,
    rules: Rules,
    batch_max: usize,
    counters: Arc<Counters>,
}

impl Writer {
    /// On SQLite a writer thread with its own connection to the file `db`
    /// has open; on PostgreSQL a task over the pool.
    pub async fn start(
        db: Db,
        policy: PaymentPolicy,
        signer: Option<IssuerSigningKey>,
        batch_max: usize,
    ) -> Result<Self, ServerError> {
        let batch_max = batch_max.max(1);
        let counters = Arc::new(Counters::default());
        let (jobs, rx) = mpsc::channel(batch_max.saturating_mul(4));
        let signer = signer.map(Arc::new);
        let rules = Rules { policy, signer: signer.clone() };
        let worker = match db.backend {
            Backend::Sqlite => {
                let store = SqliteStore::open(&db.sqlite_file().await?)?;
                spawn(Worker { store, rules, batch_max, counters: counters.clone() }, rx)?
            }
            Backend::Postgres => {
                spawn(Worker { store: PoolStore(db), rules, batch_max, counters: counters.clone() }, rx)?
            }
        };
        Ok(Self { jobs, signer, counters, worker })
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            fallbacks: self.counters.fallbacks.load(Ordering::Relaxed),
            commit_seconds: self.counters.commit_seconds.snapshot(),
        }
    }

    /// Draws the approval code and signs its receipt here, on the caller's
    /// thread, before the job queues for the writer.
    pub async fn authorize(&self, attempt: Attempt) -> Result<Decision, ServerError> {
        let draft = ApprovalDraft::for_attempt(self.signer.as_deref(), &attempt)?;
        self.call(|reply| Job::Authorize(Box::new(attempt), std::cell::Cell::new(draft), reply)).await
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
        let stats = self.stats();
        tracing::info!(
            jobs = stats.commands,
            commits = stats.commits,
            fallbacks = stats.fallbacks,
            "ledger writer stopping"
        );
        drop(self.jobs);
        let thread = self.worker.0;
        let ended = match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(joined) => joined.map_err(|_| "panicked".to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = ended {
            tracing::error!("ledger writer ended abnormally: {e}");
        }
    }
}

/// Runs a future to completion on the current thread, parking it while the
/// future waits (here: for the next job on the channel). The writer thread
/// needs nothing more of an executor.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn stopped() -> ServerError {
    ServerError::Ledger("the ledger writer has stopped".into())
}

impl<S: Store> Worker<S> {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
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
            self.store.between_batches();
        }
    }

    async fn process(&mut self, batch: Vec<Job>) {
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

    async fn run_batch(&mut self, batch: &[Job]) -> Result<Vec<Done>, ServerError> {
        let started = Instant::now();
        let mut tx = self.store.begin().await?;
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            match job.run(&self.rules, &mut tx).await {
                Ok(done) => results.push(done),
                Err(e) => {
                    S::rollback(tx).await;
                    return Err(e);
                }
            }
        }
        S::commit(tx).await?;
        self.committed(started);
        Ok(results)
    }

    /// One job in its own transaction. A second attempt covers a race the
    /// first lost to another server instance (PostgreSQL: the same
    /// transaction id inserted concurrently); the re-run sees its result.
    async fn run_alone(&mut self, job: &Job) -> Result<Done, ServerError> {
        match self.try_alone(job).await {
            Ok(done) => Ok(done),
            Err(first) => {
                tracing::warn!(?job, "ledger job failed, retrying once: {first}");
                self.try_alone(job).await
            }
        }
    }

    fn committed(&self, started: Instant) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.commit_seconds.observe(started.elapsed());
    }

    async fn try_alone(&mut self, job: &Job) -> Result<Done, ServerError> {
        let started = Instant::now();
        let mut tx = self.store.begin().await?;
        match job.run(&self.rules, &mut tx).await {
            Ok(done) => {
                S::commit(tx).await?;
                self.committed(started);
                Ok(done)
            }
            Err(e) => {
                S::rollback(tx).await;
                Err(e)
            }
        }
    }
}
