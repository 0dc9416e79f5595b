//! Statement combining: concurrent loads, concurrent value writes and
//! concurrent renewals of different sessions share one statement.
//!
//! A session load is one primary-key `SELECT`; a value write
//! ([`SessionStore::update_data`](crate::store::SessionStore::update_data),
//! what `Session::update`/`insert` cost on a loaded session) is one
//! versioned `UPDATE`; a renewal
//! ([`SessionStore::touch`](crate::store::SessionStore::touch), sliding
//! expiry) one `UPDATE` of `last_activity`. Under load most of their price is not the row but
//! the statement around it: a hand-off to the driver and back (on SQLite,
//! to a connection's own thread), and for a write a commit, on SQLite
//! with its file locks and a write-ahead-log append of the same pages for
//! every row. So a load or write that arrives while another of its kind
//! runs waits in a queue, and the next batch does them all in one
//! statement: `SELECT … WHERE id IN (…)`, or `UPDATE … FROM (rows) …
//! RETURNING id`, which still writes each row only if it has the version
//! its writer read (a renewal: only moves `last_activity` forward) and
//! tells each caller about its own row. MySQL has no `UPDATE … RETURNING`:
//! there a batch of writes or renewals is one transaction, `SELECT id,
//! version … FOR UPDATE` (the rows locked in id order, so their versions
//! cannot move) and one `UPDATE … JOIN` of the rows that qualify, whose
//! set is the answer. A statement
//! that finds its kind idle runs alone on its caller's task, as without
//! batching (holding a [`SoloGuard`] that hands what queued meanwhile to the
//! batch task), so one request at a time pays for nothing but its own
//! statement.
//!
//! What keeps this exactly as safe as one statement each:
//! * a batch is one statement in autocommit (on MySQL one transaction):
//!   all its rows commit, or none;
//! * a batch holds a session at most once: a load or write of a session
//!   that is already running or queued runs alone, as without batching,
//!   so one session's racing requests never queue behind each other (nor
//!   hold up other sessions' batches);
//! * the batch runs in a task of its own, so a request that is cancelled
//!   while waiting cannot leave the others without an answer, and a write
//!   is never run twice: if its batch failed before it could commit (the
//!   database refused the statement, or no connection came), every write
//!   is run alone as if there had been no batch; if it may have committed
//!   (the connection broke mid-way), every writer gets the error. A load
//!   or renewal whose batch failed is simply run alone (running a renewal
//!   twice moves `last_activity` to the same time);
//! * statements inside a request's transaction (`CnxLayer`)
//!   never come here: they run on that transaction.

mod loads;
mod touches;
mod writes;

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::SqlStr;
use tokio::sync::oneshot;

pub(crate) use loads::{Load, Loaded, answer_loads, load_row};
pub(crate) use touches::{Touch, Touched, answer_touches, touch_row};
pub(crate) use writes::{Batched, ValueWrite, answer_writes, write_values};

/// The most sessions one batch statement reads or writes.
pub(crate) const MAX_BATCH: usize = 32;

/// What a batch is made of: loads or value writes of one session each.
pub(crate) trait Job: Send + 'static {
    /// What its caller is told.
    type Answer: Send + 'static;
    /// The session it is about; a batch holds each session once.
    fn session(&self) -> i64;
}

/// A job and where its answer goes.
pub(crate) struct Waiting<J: Job> {
    pub(crate) job: J,
    pub(crate) reply: oneshot::Sender<J::Answer>,
}

impl<J: Job> Waiting<J> {
    /// Sends the answer; a caller that stopped waiting (its request was
    /// cancelled) needs none.
    pub(crate) fn answer(self, answer: J::Answer) {
        let _ = self.reply.send(answer);
    }
}

/// How a store runs a batch of `J`: one statement, then an answer to each.
pub(crate) trait RunBatch<J: Job>: Clone + Send + Sync + 'static {
    /// This store's queue of `J`, `None` when it does not batch them.
    fn batcher(&self) -> Option<&Arc<Batcher<J>>>;

    /// Runs `batch` (distinct sessions, at most [`MAX_BATCH`]) as one
    /// statement of `batcher`'s and answers every job.
    fn run(
        &self,
        batcher: &Batcher<J>,
        batch: Vec<Waiting<J>>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

struct Queue<J: Job> {
    waiting: Vec<Waiting<J>>,
    /// A job runs alone on its caller's [`SoloGuard`], or a batch task runs and
    /// will look at `waiting` before it ends.
    running: bool,
    /// The sessions of the job or batch running now.
    active: Vec<i64>,
}

impl<J: Job> Queue<J> {
    /// Whether a job of `session` is running or waiting already.
    fn has(&self, session: i64) -> bool {
        self.active.contains(&session) || self.waiting.iter().any(|w| w.job.session() == session)
    }
}

/// The jobs waiting for the next batch (one queue per store and kind),
/// and the backend's statements for it.
pub(crate) struct Batcher<J: Job> {
    queue: Mutex<Queue<J>>,
    statements: Vec<SqlStr>,
}

impl<J: Job> std::fmt::Debug for Batcher<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<J: Job> Batcher<J> {
    /// A queue whose batches run `statements` (the backend says which of
    /// them a batch of a given size uses).
    pub(crate) fn new(statements: Vec<SqlStr>) -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
                active: Vec::new(),
            }),
            statements,
        }
    }

    /// The `i`th statement given to [`Batcher::new`].
    pub(crate) fn statement(&self, i: usize) -> Result<&SqlStr, sqlx::Error> {
        self.statements
            .get(i)
            .ok_or_else(|| sqlx::Error::Protocol(format!("keycard has no batch statement {i}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<J>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch: up to [`MAX_BATCH`] jobs in arrival order (the rest
    /// stay queued); their sessions are distinct, as [`submit`] never
    /// queues a session that is running or waiting. Empty when nothing
    /// waits, and then the task is over.
    fn next_batch(&self) -> Vec<Waiting<J>> {
        let mut queue = self.lock();
        let take = queue.waiting.len().min(MAX_BATCH);
        let batch: Vec<Waiting<J>> = queue.waiting.drain(..take).collect();
        queue.active = batch.iter().map(|w| w.job.session()).collect();
        if batch.is_empty() {
            queue.running = false;
        }
        batch
    }
}

/// What became of a job given to [`submit`].
pub(crate) enum Submitted<'a, S: RunBatch<J>, J: Job> {
    /// Its batch ran; here is its answer.
    Answered(J::Answer),
    /// Run it alone, on the caller's task: nothing else of its kind was
    /// running (then with a [`SoloGuard`] to drop when done, so that jobs that
    /// arrived meanwhile go to a batch), its session was already running or
    /// queued, or the store does not batch.
    Alone(J, Option<SoloGuard<'a, S, J>>),
    /// The batch task ended without answering (it panicked): whether a
    /// write landed is unknown.
    Lost,
}

/// The right to run one job solo while other jobs queue; dropping it
/// hands the queue to a batch task, or ends the solo run when nothing waits.
/// A caller that is cancelled mid-statement drops it too, so the jobs that
/// queued behind it are never stranded. It borrows the store: only a guard
/// that hands work on clones it, for the task.
pub(crate) struct SoloGuard<'a, S: RunBatch<J>, J: Job> {
    store: &'a S,
    batcher: &'a Arc<Batcher<J>>,
    runtime: tokio::runtime::Handle,
}

impl<S: RunBatch<J>, J: Job> Drop for SoloGuard<'_, S, J> {
    fn drop(&mut self) {
        {
            let mut queue = self.batcher.lock();
            queue.active.clear();
            if queue.waiting.is_empty() {
                queue.running = false;
                return;
            }
        }
        // The guard goes into the task before it is spawned: a task dropped
        // unpolled (its runtime shut down) still ends the solo run, so the jobs
        // queued behind it fail instead of waiting for ever.
        let guard = EndGuard {
            batcher: self.batcher.clone(),
            ended: false,
        };
        drop(self.runtime.spawn(run_batches(self.store.clone(), guard)));
    }
}

/// Runs `job` alone when no statement of its kind is running (the caller
/// does, holding the returned [`SoloGuard`]); else queues it for the next batch
/// of `store`, which a task runs, and waits for its answer.
///
/// So a request that finds the store idle pays for its one statement only,
/// and batches form exactly when statements would otherwise queue for the
/// database anyway.
pub(crate) async fn submit<S: RunBatch<J>, J: Job>(store: &S, job: J) -> Submitted<'_, S, J> {
    let Some(batcher) = store.batcher() else {
        return Submitted::Alone(job, None);
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Submitted::Alone(job, None);
    };
    let (reply, answer) = oneshot::channel();
    {
        let mut queue = batcher.lock();
        let session = job.session();
        if !queue.running {
            queue.running = true;
            queue.active.push(session);
            let solo = SoloGuard {
                store,
                batcher,
                runtime,
            };
            return Submitted::Alone(job, Some(solo));
        }
        if queue.has(session) {
            // The same session's requests racing each other: each runs
            // alone, as without batching, rather than one by one behind
            // this queue (their writes mostly lose on the version and take
            // the row lock, and must not hold up other sessions' batches).
            return Submitted::Alone(job, None);
        }
        queue.waiting.push(Waiting { job, reply });
    }
    match answer.await {
        Ok(answer) => Submitted::Answered(answer),
        Err(_) => Submitted::Lost,
    }
}

/// Ends the batch task's run if it stops without doing so itself (a
/// panic, or a runtime that shut down before it ran): the next job then
/// starts a new task, and the callers left waiting are told
/// [`Submitted::Lost`] instead of waiting for ever.
struct EndGuard<J: Job> {
    batcher: Arc<Batcher<J>>,
    ended: bool,
}

impl<J: Job> Drop for EndGuard<J> {
    fn drop(&mut self) {
        if !self.ended {
            let mut queue = self.batcher.lock();
            queue.running = false;
            queue.active.clear();
            queue.waiting.clear();
        }
    }
}

/// The batch task: runs batches until the queue is empty.
async fn run_batches<S: RunBatch<J>, J: Job>(store: S, mut guard: EndGuard<J>) {
    let batcher = guard.batcher.clone();
    loop {
        let batch = batcher.next_batch();
        if batch.is_empty() {
            guard.ended = true;
            return;
        }
        tracing::trace!(
            kind = std::any::type_name::<J>(),
            sessions = batch.len(),
            "keycard: batched statement"
        );
        store.run(&batcher, batch).await;
    }
}

/// The statement for `rows` rows among statements made for 1, 2, 4, …
/// [`MAX_BATCH`] rows, and how many rows it takes.
#[cfg(feature = "mysql")]
pub(crate) fn padded(rows: usize) -> (usize, usize) {
    let padded = rows.next_power_of_two();
    (padded.trailing_zeros() as usize, padded)
}

/// The batch sizes statements are made for where a statement's size is
/// fixed (MySQL's `IN (?, …)` placeholders; SQLite and PostgreSQL pass a
/// batch as one array parameter): 1, 2, 4, … [`MAX_BATCH`]. A
/// batch is padded up to the next size with id 0, which no session has, so
/// that each connection prepares a handful of statements, not one per size.
#[cfg(feature = "mysql")]
pub(crate) fn padded_sizes() -> impl Iterator<Item = usize> {
    std::iter::successors(Some(1), |rows| Some(rows * 2)).take_while(|rows| *rows <= MAX_BATCH)
}

/// A backend's batch statement whose size does not depend on the batch
/// (its rows come as one array parameter), with the table in place.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn one_statement(text: &str, table: &crate::store::TableName) -> Vec<SqlStr> {
    use sqlx::{AssertSqlSafe, SqlSafeStr as _};
    let text = text
        .replace("{columns}", crate::store::sql::COLUMNS)
        .replace("{table}", table.as_str());
    vec![AssertSqlSafe(text).into_sql_str()]
}
