//! The cache a SQL store keeps of its own loads when the database can say,
//! cheaply, whether anything was committed since it last looked (SQLite's
//! `PRAGMA data_version`): every hit is confirmed by such a look, so the
//! cache is correct whoever writes the database, this process or another.
//!
//! The look is shared: one runs at a time, on a task of its own (so a
//! cancelled request never leaves it half done), and every hit that arrived
//! before it began waits for it and is confirmed by it. A hit therefore
//! costs a share of one small statement instead of a load, and a hit is
//! never older than the moment its request asked. A miss does not wait for
//! a look: its row is read after whatever the last look saw, and any commit
//! after that look is seen by the next one, which drops the whole cache
//! before any hit can use it.
//!
//! What a look reports is a value that changes when anything at all was
//! committed, not which rows changed: any commit (this process's writes
//! included) empties the cache. That makes the cache worth having where
//! reads outnumber writes. Where they do not, a look mostly finds a commit
//! and its waiters miss anyway; so after a look that saw one, loads stop
//! waiting for looks (and go to the database, as without a cache) until a
//! look, run at most every millisecond meanwhile, finds the file quiet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::store::SessionRecord;
use crate::store::StoreError;
use crate::store::cache::Cache;
use crate::token::SessionId;

/// How many sessions a store caches unless told otherwise: enough for
/// every session active at once on a busy server, a few megabytes at most.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

/// A database's change counter: what a look at it reports.
#[async_trait]
pub(crate) trait ChangeCounter: Send + Sync + std::fmt::Debug + 'static {
    /// A value that differs from the one the previous look returned if
    /// anything was committed in between. `Ok(None)`: this database cannot
    /// say (an in-memory SQLite database), so nothing may be cached.
    async fn look(&self) -> Result<Option<i64>, StoreError>;
}

/// Loaded sessions, confirmed by a look before each hit.
#[derive(Debug)]
pub(crate) struct ReadCache {
    rows: Cache,
    counter: Arc<dyn ChangeCounter>,
    looks: Mutex<Looks>,
    /// A look finished.
    looked: Notify,
    /// The counter cannot tell: caching stopped for good.
    off: AtomicBool,
    /// The last look saw a commit (or failed): commits are coming often, so
    /// hits would mostly wait for a look only to miss. Until a look sees
    /// none, loads go to the database without waiting, nothing is cached,
    /// and a look runs now and then (every [`CHURN_LOOKS`]) to see whether
    /// the file is quiet again.
    churning: AtomicBool,
}

/// Where the shared looks stand.
#[derive(Debug, Default)]
struct Looks {
    /// Looks begun so far (their statement sent); the number of the one
    /// running, if one is.
    begun: u64,
    /// The number of the last look that ended.
    ended: u64,
    /// Whether one is under way (begun, or about to begin).
    running: bool,
    /// What the last successful look returned: the cached rows are as new
    /// as that. `None` after a failed look or before the first.
    counter: Option<i64>,
    /// When the last look ended.
    last_ended: Option<Instant>,
}

/// How often to look while commits come often (see `ReadCache::churning`).
const CHURN_LOOKS: Duration = Duration::from_millis(1);

impl ReadCache {
    /// A cache of up to `capacity` sessions, confirmed by `counter`.
    pub(crate) fn new(counter: Arc<dyn ChangeCounter>, capacity: usize) -> Self {
        Self {
            rows: Cache::with_capacity(capacity),
            counter,
            looks: Mutex::new(Looks::default()),
            looked: Notify::new(),
            off: AtomicBool::new(false),
            churning: AtomicBool::new(false),
        }
    }

    /// The cached row of `id` if it is still what the database holds, as
    /// confirmed by a look begun after this call; `None` to load it.
    pub(crate) async fn get(self: &Arc<Self>, id: SessionId) -> Option<SessionRecord> {
        if self.off.load(Ordering::Acquire) || self.look_later() || !self.rows.contains(id) {
            return None;
        }
        self.look_after_now().await;
        self.rows.get(id)
    }

    /// While commits come often: starts a look if none ran lately, and says
    /// `true` (load without waiting for it).
    fn look_later(self: &Arc<Self>) -> bool {
        if !self.churning.load(Ordering::Acquire) {
            return false;
        }
        let mut looks = self.lock();
        let lately = looks
            .last_ended
            .is_some_and(|at| at.elapsed() < CHURN_LOOKS);
        if !looks.running && !lately {
            self.spawn_look(&mut looks);
        }
        true
    }

    /// Starts the next look on a task of its own.
    fn spawn_look(self: &Arc<Self>, looks: &mut Looks) {
        looks.running = true;
        let cache = self.clone();
        // Dropped with the task, run or not, if it never ends.
        let unfinished = Unfinished(Some(self.clone()));
        tokio::spawn(async move {
            cache.run_look().await;
            unfinished.finished();
        });
    }

    /// What to hand [`put`](Self::put) with a row read from now on.
    pub(crate) fn stamp(&self) -> u64 {
        self.rows.generation()
    }

    /// Caches the record `read` gives, read after `stamp` was taken, unless
    /// a look has dropped the cache since (the row may predate what it saw).
    /// `read` (a clone, on the load's path) runs only if the cache takes
    /// rows now: not while commits come often.
    pub(crate) fn put(&self, read: impl FnOnce() -> SessionRecord, stamp: u64) {
        if !self.off.load(Ordering::Acquire) && !self.churning.load(Ordering::Acquire) {
            self.rows.put(read(), stamp);
        }
    }

    /// Forgets `id`: the database no longer has it.
    pub(crate) fn forget(&self, id: SessionId) {
        self.rows.invalidate(id);
    }

    /// Whether `id` is cached now (for tests and metrics).
    #[cfg(feature = "sqlite")]
    pub(crate) fn contains(&self, id: SessionId) -> bool {
        !self.off.load(Ordering::Acquire) && self.rows.contains(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Looks> {
        self.looks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a look that began after this call has ended (and
    /// dropped the cache if it saw a commit).
    async fn look_after_now(self: &Arc<Self>) {
        let wanted = {
            let looks = self.lock();
            // A look that has begun began before this call; one that has
            // not, after it.
            looks.begun + 1
        };
        loop {
            let ended = self.looked.notified();
            tokio::pin!(ended);
            {
                let mut looks = self.lock();
                if looks.ended >= wanted {
                    return;
                }
                // Registered before the lock is let go: a look ending
                // meanwhile still wakes this call.
                ended.as_mut().enable();
                if !looks.running {
                    self.spawn_look(&mut looks);
                }
            }
            ended.await;
        }
    }

    /// The next look: drops the cache when the counter moved (or could not
    /// be read), then wakes the waiters.
    async fn run_look(&self) {
        // Let the requests that are ready run first (and the runtime take in
        // what arrived on the sockets), so that one look confirms all their
        // hits: a look is numbered when it begins, and confirms every hit
        // that asked before that.
        tokio::task::yield_now().await;
        let number = {
            let mut looks = self.lock();
            looks.begun += 1;
            looks.begun
        };
        let seen = self.counter.look().await;
        let mut looks = self.lock();
        match seen {
            Ok(Some(counter)) => {
                let changed = looks.counter != Some(counter);
                // The first look (or the first since one failed) only
                // learns where the counter stands.
                let churning = changed && looks.counter.is_some();
                self.churning.store(churning, Ordering::Release);
                if changed {
                    tracing::trace!(
                        counter,
                        "keycard: a commit since the last look: cache dropped"
                    );
                    self.rows.clear();
                }
                looks.counter = Some(counter);
            }
            Ok(None) => {
                self.off.store(true, Ordering::Release);
                self.rows.clear();
                looks.counter = None;
            }
            Err(error) => {
                tracing::debug!(%error, "keycard: the change counter could not be read");
                self.rows.clear();
                looks.counter = None;
                self.churning.store(true, Ordering::Release);
            }
        }
        looks.ended = number;
        looks.running = false;
        looks.last_ended = Some(Instant::now());
        drop(looks);
        self.looked.notify_waiters();
    }
}

/// A look dropped before it ended (its runtime shut down, say, when a
/// store outlives the runtime of a test): forget what the counter said and
/// let the next caller start another, rather than leave waiters for a look
/// that will never end.
struct Unfinished(Option<Arc<ReadCache>>);

impl Unfinished {
    /// The look ended: nothing to undo.
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(cache) = self.0.take() else {
            return;
        };
        let mut looks = cache.lock();
        looks.running = false;
        looks.counter = None;
        cache.rows.clear();
        cache.churning.store(true, Ordering::Release);
        drop(looks);
        cache.looked.notify_waiters();
    }
}
