//! Renewals (`touch`) of several sessions in one `UPDATE`.

use chrono::{DateTime, Utc};

use super::{Job, SoloGuard, Submitted, Waiting, submit};

/// One session's renewal: the row `id` gets `last_activity` `at` unless it
/// has a later one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Touch {
    pub(crate) id: i64,
    pub(crate) at: DateTime<Utc>,
}

impl Job for Touch {
    /// Whether the session's row exists; `None` when the batch failed and
    /// the caller should renew it alone.
    type Answer = Option<bool>;

    fn session(&self) -> i64 {
        self.id
    }
}

/// What [`touch_row`] did with a renewal.
pub(crate) enum Touched<'a, S: super::RunBatch<Touch>> {
    /// Its batch ran: whether the session's row exists.
    Done(bool),
    /// The caller renews it alone (nothing else was renewing, the store does
    /// not batch, or the batch failed), then drops the guard.
    Alone(Option<SoloGuard<'a, S, Touch>>),
}

/// Renews `touch` in the next batch of `store` if other renewals are
/// running, or hands it back to be run alone.
///
/// A renewal is safe to run again (it only ever moves `last_activity`
/// forward, to the same time), so one whose batch failed, or whose batch
/// task was lost, is simply run alone, whether or not the batch committed.
pub(crate) async fn touch_row<S: super::RunBatch<Touch>>(
    store: &S,
    touch: Touch,
) -> Touched<'_, S> {
    match submit(store, touch).await {
        Submitted::Answered(Some(exists)) => Touched::Done(exists),
        Submitted::Answered(None) | Submitted::Lost => Touched::Alone(None),
        Submitted::Alone(_, solo) => Touched::Alone(solo),
    }
}

/// Tells each renewal of `batch` whether its row is among the `touched` ids
/// of the batch statement, or to run alone if it failed.
pub(crate) fn answer_touches(batch: Vec<Waiting<Touch>>, touched: Result<Vec<i64>, sqlx::Error>) {
    for waiting in batch {
        let answer = touched
            .as_ref()
            .ok()
            .map(|ids| ids.contains(&waiting.job.id));
        waiting.answer(answer);
    }
}
