//! Loads of several sessions in one `SELECT`.

use std::marker::PhantomData;

use super::{Job, SoloGuard, Submitted, Waiting, submit};

/// One session's load; `R` is the backend's row type.
pub(crate) struct Load<R> {
    id: i64,
    row: PhantomData<fn() -> R>,
}

impl<R> Load<R> {
    pub(crate) fn new(id: i64) -> Self {
        Self {
            id,
            row: PhantomData,
        }
    }
}

impl<R: Send + 'static> Job for Load<R> {
    /// The session's row, if it has one; `None` when the batch failed and
    /// the caller should load it alone.
    type Answer = Option<Option<R>>;

    fn session(&self) -> i64 {
        self.id
    }
}

/// What [`load_row`] did with a load.
pub(crate) enum Loaded<'a, S: super::RunBatch<Load<R>>, R: Send + 'static> {
    /// Its batch read it: the session's row, if it has one.
    Row(Option<R>),
    /// The caller loads it alone (nothing else was loading, the store does
    /// not batch, or the batch failed: a load is safe to run again), then
    /// drops the guard.
    Alone(Option<SoloGuard<'a, S, Load<R>>>),
}

/// The row of session `id`, from the next batch of `store` if other loads
/// are running.
pub(crate) async fn load_row<S: super::RunBatch<Load<R>>, R: Send + 'static>(
    store: &S,
    id: i64,
) -> Loaded<'_, S, R> {
    match submit(store, Load::new(id)).await {
        Submitted::Answered(Some(row)) => Loaded::Row(row),
        Submitted::Answered(None) | Submitted::Lost => Loaded::Alone(None),
        Submitted::Alone(_, solo) => Loaded::Alone(solo),
    }
}

/// Gives each load of `batch` its row from the batch statement's `rows`
/// (each with its id), or tells them all to load alone if it failed.
pub(crate) fn answer_loads<R: Send + 'static>(
    batch: Vec<Waiting<Load<R>>>,
    rows: Result<Vec<(i64, R)>, sqlx::Error>,
) {
    let Ok(mut rows) = rows else {
        for waiting in batch {
            waiting.answer(None);
        }
        return;
    };
    for waiting in batch {
        let found = rows
            .iter()
            .position(|(id, _)| *id == waiting.job.id)
            .map(|at| rows.swap_remove(at).1);
        waiting.answer(Some(found));
    }
}
