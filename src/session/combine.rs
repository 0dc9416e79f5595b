//! Concurrent [`Session::update`](super::Session::update)s of one session
//! on one app server meet here before the database: they are applied one
//! after another in memory and written together, one versioned write per
//! batch, instead of each request reading, writing and, when it loses the
//! race, retrying under the row lock.
//!
//! An update that finds nothing in flight for its session is written at
//! once, on its own task, as if there were no combiner. While a write is in
//! flight, the updates that arrive join the next batch, each applied to
//! what the writes before it will have made of the row; a batch is written
//! by a task of its own, so a cancelled request neither loses the others'
//! updates nor holds them up (should the lone writer itself be cancelled,
//! the batch behind it goes on alone). An update returns
//! only once its batch is durable. If the write is refused (another app
//! server wrote the row since), every update of the batch, and of the
//! batch built on it, goes the usual way on its own (the row lock,
//! replayed on the row as it is); if it fails, each of them fails as its
//! own write would have (`503`: it may or may not have committed, so
//! replaying it could count it twice). The
//! versioned write stays what keeps app servers apart; this only spares a
//! server from racing itself.
//!
//! A request whose writes join its transaction (inside a `CnxLayer`) never
//! comes here: its update must commit or roll back with its own rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::SessionError;
use crate::store::{SessionData, SessionRecord, SessionStore};
use crate::token::SessionId;

/// How many sessions' slots may be remembered before the dead ones are
/// swept out.
const SWEEP_AT: usize = 1024;

/// The slots of the sessions being updated on this server.
#[derive(Debug, Default)]
pub(crate) struct Combiner {
    slots: Mutex<HashMap<SessionId, Weak<Slot>>>,
}

/// One session's updates.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The row as this server last wrote it.
    known: Option<SessionRecord>,
    /// The row as the batch being written will leave it.
    in_flight: Option<SessionRecord>,
    /// The batch the next updates join.
    next: Option<Batch>,
}

/// Updates applied in memory, waiting to be written together.
#[derive(Debug)]
struct Batch {
    /// The row they were applied to.
    base: SessionRecord,
    /// Its values after them.
    data: SessionData,
    /// The latest renewal any of them asked for.
    renewed: Option<DateTime<Utc>>,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// What a batch's write tells its updates.
#[derive(Clone, Debug)]
enum Outcome {
    /// Durable: the row as the write left it.
    Written(Arc<SessionRecord>),
    /// Refused (the row changed since): each update goes on alone.
    Refused,
    /// The write failed, and may or may not have committed: each update
    /// fails, as a write of its own would have (`503`), rather than risk
    /// applying itself twice.
    Failed,
}

/// Where an update goes: written alone at once, or queued for the next
/// batch.
enum Step<T> {
    Alone(Box<Batch>, T, Value),
    Queued(T, Value, oneshot::Receiver<Outcome>),
}

/// An update as the combiner sees it: the value a request's function
/// makes of the row's values, and how its session renews.
pub(crate) struct Update<'a> {
    pub(crate) id: SessionId,
    /// The row as this request loaded it.
    pub(crate) stored: &'a SessionRecord,
    pub(crate) key: &'a str,
    /// When the request runs: the renewal is decided against the batch's
    /// row.
    pub(crate) renewal: &'a (dyn Fn(DateTime<Utc>) -> Option<DateTime<Utc>> + Sync),
}

impl Combiner {
    /// Applies `make` (the request's function: the row's values in, the
    /// new value of `update.key` out) to the row as this server's batches
    /// will have left it, and waits for the batch to be written. `Ok(None)`
    /// when the batch was refused: the caller goes on alone. `Err` for
    /// `make`'s own error, before anything is queued, and for a write that
    /// failed.
    pub(crate) async fn update<T>(
        &self,
        store: &Arc<dyn SessionStore>,
        update: Update<'_>,
        make: impl FnOnce(&SessionData) -> Result<(T, Value), SessionError>,
    ) -> Result<Option<(T, Value, SessionRecord)>, SessionError> {
        let slot = self.slot(update.id);
        let step = {
            let mut state = lock(&slot.state);
            Self::place(&mut state, &update, make)?
        };
        let (made, value, waiting) = match step {
            Step::Alone(batch, made, value) => {
                return Solo::new(slot, store).write(batch, made, value).await;
            }
            Step::Queued(made, value, waiting) => (made, value, waiting),
        };
        match waiting.await {
            Ok(Outcome::Written(record)) => Ok(Some((made, value, SessionRecord::clone(&record)))),
            Ok(Outcome::Refused) => Ok(None),
            // `Err`: the writer's task is gone (the runtime shuts down).
            Ok(Outcome::Failed) | Err(_) => Err(SessionError::Unavailable),
        }
    }

    /// Applies the update to the row as this server will have left it and
    /// says where it goes.
    fn place<T>(
        state: &mut SlotState,
        update: &Update<'_>,
        make: impl FnOnce(&SessionData) -> Result<(T, Value), SessionError>,
    ) -> Result<Step<T>, SessionError> {
        if state.in_flight.is_none() {
            // Nobody else is writing this session here: this request writes
            // alone, on its own task, as if there were no combiner; whoever
            // comes meanwhile waits for the next batch.
            let base = newest(update.stored, &None, &state.known);
            let (made, value) = make(&base.fields.data)?;
            let mut batch = Batch {
                data: base.fields.data.clone(),
                renewed: (update.renewal)(base.fields.last_activity),
                base,
                waiters: Vec::new(),
            };
            batch.data.insert(update.key.to_owned(), value.clone());
            state.in_flight = Some(written(&batch));
            return Ok(Step::Alone(Box::new(batch), made, value));
        }
        let batch = match &mut state.next {
            Some(batch) => batch,
            none => {
                let base = newest(update.stored, &state.in_flight, &state.known);
                none.insert(Batch {
                    data: base.fields.data.clone(),
                    base,
                    renewed: None,
                    waiters: Vec::new(),
                })
            }
        };
        let (made, value) = make(&batch.data)?;
        batch.data.insert(update.key.to_owned(), value.clone());
        if let Some(at) = (update.renewal)(batch.base.fields.last_activity) {
            batch.renewed = Some(batch.renewed.map_or(at, |r| r.max(at)));
        }
        let (tell, waiting) = oneshot::channel();
        batch.waiters.push(tell);
        Ok(Step::Queued(made, value, waiting))
    }

    /// The slot of session `id`, made if it has none.
    fn slot(&self, id: SessionId) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&id).and_then(Weak::upgrade) {
            return slot;
        }
        if slots.len() >= SWEEP_AT {
            slots.retain(|_, slot| slot.strong_count() > 0);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(id, Arc::downgrade(&slot));
        slot
    }

    /// Takes the waiting batch for writing, recording how it will leave
    /// the row.
    fn take_next(state: &mut SlotState) -> Option<Batch> {
        let batch = state.next.take()?;
        state.in_flight = Some(written(&batch));
        Some(batch)
    }
}

/// Writes `batch`, then each batch that gathered meanwhile, until none is
/// waiting. A task of its own: no request's cancellation stops it.
async fn write_batches(slot: Arc<Slot>, store: Arc<dyn SessionStore>, mut batch: Option<Batch>) {
    while let Some(current) = batch {
        let id = current.base.id;
        let result = store
            .update_data(id, current.base.version, &current.data, current.renewed)
            .await;
        let mut state = lock(&slot.state);
        let state = &mut *state;
        let outcome = match result {
            Ok(true) => {
                let record = written(&current);
                state.known = Some(record.clone());
                Outcome::Written(Arc::new(record))
            }
            Ok(false) => Outcome::Refused,
            Err(error) => {
                tracing::warn!(%error, "keycard: a session's combined update failed");
                Outcome::Failed
            }
        };
        if !matches!(outcome, Outcome::Written(_)) {
            forget(state);
        }
        for waiter in current.waiters {
            let _ = waiter.send(outcome.clone());
        }
        state.in_flight = None;
        batch = Combiner::take_next(state);
    }
}

/// After a write that did not leave the row as this server thought (it
/// was refused, failed or was cancelled): nothing is known of the row, and
/// the batch built on that write goes on alone, update by update (none of
/// it was written).
fn forget(state: &mut SlotState) {
    state.known = None;
    for waiter in state.next.take().into_iter().flat_map(|b| b.waiters) {
        let _ = waiter.send(Outcome::Refused);
    }
}

/// A request writing its update alone, on its own task. Should it be
/// cancelled mid-write, what queued behind it goes on alone.
struct Solo {
    slot: Arc<Slot>,
    store: Arc<dyn SessionStore>,
    armed: bool,
}

impl Solo {
    fn new(slot: Arc<Slot>, store: &Arc<dyn SessionStore>) -> Self {
        Self {
            slot,
            store: store.clone(),
            armed: true,
        }
    }

    /// Writes `batch` (this request's update alone), then hands what
    /// gathered meanwhile to a writer task.
    async fn write<T>(
        mut self,
        batch: Box<Batch>,
        made: T,
        value: Value,
    ) -> Result<Option<(T, Value, SessionRecord)>, SessionError> {
        let result = self
            .store
            .update_data(
                batch.base.id,
                batch.base.version,
                &batch.data,
                batch.renewed,
            )
            .await;
        self.armed = false;
        let mut state = lock(&self.slot.state);
        let state = &mut *state;
        state.in_flight = None;
        let written = match result {
            Ok(true) => written(&batch),
            Ok(false) => {
                forget(state);
                return Ok(None);
            }
            Err(error) => {
                forget(state);
                return Err(error.into());
            }
        };
        state.known = Some(written.clone());
        if let Some(next) = Combiner::take_next(state) {
            tokio::spawn(write_batches(
                self.slot.clone(),
                self.store.clone(),
                Some(next),
            ));
        }
        Ok(Some((made, value, written)))
    }
}

impl Drop for Solo {
    fn drop(&mut self) {
        if self.armed {
            let mut state = lock(&self.slot.state);
            state.in_flight = None;
            forget(&mut state);
        }
    }
}

/// The row as `batch`'s write leaves it.
fn written(batch: &Batch) -> SessionRecord {
    let mut record = batch.base.clone();
    record.version += 1;
    record.fields.data = batch.data.clone();
    if let Some(at) = batch.renewed {
        record.fields.last_activity = at;
    }
    record
}

/// The newest of the request's row and this server's own record of it:
/// the same row (its token) at the highest version.
fn newest(
    stored: &SessionRecord,
    in_flight: &Option<SessionRecord>,
    known: &Option<SessionRecord>,
) -> SessionRecord {
    [in_flight, known]
        .into_iter()
        .flatten()
        .filter(|r| r.fields.token_hash.ct_eq(&stored.fields.token_hash))
        .filter(|r| r.version > stored.version)
        .max_by_key(|r| r.version)
        .unwrap_or(stored)
        .clone()
}

/// A lock that a panic elsewhere does not poison: the state is consistent
/// between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
