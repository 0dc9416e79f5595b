//! Value writes of several sessions in one `UPDATE`.

use chrono::{DateTime, Utc};

use super::{Job, SoloGuard, Submitted, Waiting, submit};
use crate::store::StoreError;

/// One session's value write: the row `id` gets `data` (and `last_activity`
/// when `at` is set) if its version is still `version`.
#[derive(Debug)]
pub(crate) struct ValueWrite {
    pub(crate) id: i64,
    pub(crate) version: i64,
    pub(crate) data: String,
    pub(crate) at: Option<DateTime<Utc>>,
}

/// What a writer learns from its batch.
pub(crate) enum Outcome {
    /// Written (`true`) or refused for its version (`false`).
    Done(bool),
    /// The batch failed before it could commit: write it alone.
    Alone(ValueWrite),
    /// The batch may or may not have committed.
    Failed(sqlx::Error),
}

impl Job for ValueWrite {
    type Answer = Outcome;

    fn session(&self) -> i64 {
        self.id
    }
}

/// What [`write_values`] did with a write.
pub(crate) enum Batched<'a, S: super::RunBatch<ValueWrite>> {
    /// Written (`true`) or refused for its version (`false`).
    Written(bool),
    /// Not written, nor tried: the caller writes it alone, then drops the
    /// solo (if any).
    Alone(ValueWrite, Option<SoloGuard<'a, S, ValueWrite>>),
}

/// Writes `write` in the next batch of `store` if other writes are
/// running, or hands it back to be written alone: when nothing else was
/// writing, the store does not batch, or the batch failed before it could
/// commit.
pub(crate) async fn write_values<S: super::RunBatch<ValueWrite>>(
    store: &S,
    write: ValueWrite,
) -> Result<Batched<'_, S>, StoreError> {
    match submit(store, write).await {
        Submitted::Answered(Outcome::Done(written)) => Ok(Batched::Written(written)),
        Submitted::Answered(Outcome::Alone(write)) => Ok(Batched::Alone(write, None)),
        Submitted::Alone(write, solo) => Ok(Batched::Alone(write, solo)),
        Submitted::Answered(Outcome::Failed(error)) => Err(error.into()),
        // Whether the write landed is unknown, so it is not tried again.
        Submitted::Lost => Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
    }
}

/// Tells each writer of `batch` what the batch statement's `result` (the
/// ids it wrote) means for it.
pub(crate) fn answer_writes(
    batch: Vec<Waiting<ValueWrite>>,
    result: Result<Vec<i64>, sqlx::Error>,
) {
    for Waiting { job, reply } in batch {
        let outcome = match &result {
            Ok(written) => Outcome::Done(written.contains(&job.id)),
            Err(error) if not_committed(error) => Outcome::Alone(job),
            Err(error) => Outcome::Failed(copy_error(error)),
        };
        // A writer that stopped waiting (its request was cancelled) needs
        // no answer.
        let _ = reply.send(outcome);
    }
}

/// Errors that come before anything is written: the statement was refused
/// or never sent.
fn not_committed(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

/// The same error for each writer of a batch (`sqlx::Error` is not `Clone`).
fn copy_error(error: &sqlx::Error) -> sqlx::Error {
    let kind = match error {
        sqlx::Error::Io(io) => io.kind(),
        _ => std::io::ErrorKind::Other,
    };
    sqlx::Error::Io(std::io::Error::new(
        kind,
        format!("a batched session write failed: {error}"),
    ))
}
