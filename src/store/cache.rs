//! [`CachedStore`]: an in-process cache of loaded sessions in front of any
//! store, kept correct across app servers.
//!
//! A read that hits the cache costs no query. Every write and delete made
//! through this process updates or evicts the cached row at once. Writes made
//! by *other* processes reach the cache as invalidations: on PostgreSQL
//! through `LISTEN/NOTIFY` ([`CachedStore::listen`], after
//! `PostgresStore::enable_change_notifications`). Do not cache a store that
//! other processes write without notifications: `SqliteStore` needs no
//! `CachedStore`, as it caches by itself, confirming every hit with
//! SQLite's change counter (`SqliteStore::cache`), which sees every other
//! process's commits.
//!
//! A cached row is never trusted for writes: every write is still a
//! versioned statement against the database, so a row made stale by a
//! notification still in flight can cost a retry, never a lost update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ExpiryCutoffs, Merge, SessionData, SessionFields, SessionRecord, SessionStore, StoreError,
    UserSessions,
};
use crate::token::SessionId;

/// A [`SessionStore`] that keeps loaded sessions in memory.
///
/// A read that hits the cache costs no query; every write and delete made
/// through it updates or evicts the cached row at once, and every write is
/// still a versioned statement against the database, so a stale cached row
/// can cost a retry, never a lost update. Writes by *other* processes reach
/// the cache as invalidations: on PostgreSQL through `LISTEN/NOTIFY`
/// (`CachedStore::listen` after `PostgresStore::enable_change_notifications`).
/// Do not cache a store that other processes write without notifications
/// (MySQL has none; SQLite's store caches by itself, correctly, see
/// `SqliteStore::cache`: over SQLite, `CachedStore` would serve hits
/// without asking SQLite whether `keycard-admin` or another process
/// changed them).
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use keycard::store::CachedStore;
/// use keycard::{SessionLayer, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(CachedStore::new(store, 100_000));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CachedStore<S> {
    inner: S,
    cache: Arc<Cache>,
}

/// The cached rows, and a generation that every invalidation moves on, so
/// that a row read before an invalidation is never cached after it.
#[derive(Debug)]
pub(crate) struct Cache {
    state: Mutex<CacheState>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct CacheState {
    rows: HashMap<SessionId, SessionRecord>,
    generation: u64,
    /// Other processes' changes may be going unheard (the notifications'
    /// connection is down): nothing is cached until it is back.
    suspended: bool,
}

impl Cache {
    /// An empty cache of up to `capacity` rows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(CacheState::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether `id` is cached (and caching is not suspended).
    pub(crate) fn contains(&self, id: SessionId) -> bool {
        let state = self.lock();
        !state.suspended && state.rows.contains_key(&id)
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<SessionRecord> {
        let state = self.lock();
        if state.suspended {
            return None;
        }
        state.rows.get(&id).cloned()
    }

    /// Caches `record` unless something was invalidated since `generation`.
    pub(crate) fn put(&self, record: SessionRecord, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation || state.suspended {
            return;
        }
        if state.rows.len() >= self.capacity && !state.rows.contains_key(&record.id) {
            // Full: start again rather than track recency on every read.
            state.rows.clear();
        }
        state.rows.insert(record.id, record);
    }

    /// Forgets one row (another process changed it, or this one deleted it).
    pub(crate) fn invalidate(&self, id: SessionId) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.remove(&id);
    }

    /// Forgets the rows of one user (some of theirs were deleted, which
    /// ones this process cannot tell).
    pub(crate) fn invalidate_user(&self, user_id: &str) {
        let mut state = self.lock();
        state.generation += 1;
        state
            .rows
            .retain(|_, row| row.fields.user_id.as_deref() != Some(user_id));
    }

    /// Forgets the rows that `cutoffs` expire (a purge deleted them).
    fn invalidate_expired(&self, cutoffs: &ExpiryCutoffs) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.retain(|_, row| !cutoffs.expire(&row.fields));
    }

    /// Forgets every row and caches nothing until [`resume`](Self::resume):
    /// the notifications of other processes' changes stopped coming.
    #[cfg(feature = "postgres")]
    pub(crate) fn suspend(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.clear();
        state.suspended = true;
    }

    /// Caches again, from empty: the notifications flow again, and what
    /// changed meanwhile was never cached.
    #[cfg(feature = "postgres")]
    pub(crate) fn resume(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.clear();
        state.suspended = false;
    }

    /// Forgets every row (notifications may have been missed).
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.clear();
    }
}

impl<S: SessionStore> CachedStore<S> {
    /// Caches up to `capacity` sessions of `inner` (when full, the cache
    /// starts again empty rather than track recency on every read).
    pub fn new(inner: S, capacity: usize) -> Self {
        Self {
            inner,
            cache: Arc::new(Cache::with_capacity(capacity)),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether the session is in the cache now (for tests and metrics).
    pub fn is_cached(&self, id: SessionId) -> bool {
        self.cache.contains(id)
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Runs a write and refreshes (`Some`) or evicts (`None`) the row.
    fn after_write(&self, id: SessionId, record: Option<SessionRecord>, generation: u64) {
        if self.evict_when_transaction_ends(Some(id)) {
            // Uncommitted: never cached.
            self.cache.invalidate(id);
            return;
        }
        match record {
            Some(record) => {
                self.cache.lock().rows.remove(&id);
                self.cache.put(record, generation);
            }
            None => self.cache.invalidate(id),
        }
    }
}

/// What to evict when a request's transaction ends.
enum Evict {
    One(SessionId),
    User(String),
    All,
}

impl<S> CachedStore<S> {
    /// Whether the write just made joined a request's transaction (see
    /// `CnxLayer`), which may still roll back; if
    /// so, the row (`None`: every row) is evicted again when that
    /// transaction ends, so that nothing read in between outlives it. The
    /// caller evicts now and caches nothing the transaction wrote.
    fn evict_when_transaction_ends(&self, id: Option<SessionId>) -> bool {
        self.evict_at_transaction_end(match id {
            Some(id) => Evict::One(id),
            None => Evict::All,
        })
    }

    /// [`evict_when_transaction_ends`](Self::evict_when_transaction_ends),
    /// for any [`Evict`].
    fn evict_at_transaction_end(&self, evict: Evict) -> bool {
        let Some(tx) = super::request_tx::current() else {
            return false;
        };
        if !tx.transaction_open() {
            return false;
        }
        let cache = self.cache.clone();
        tx.after_transaction(Box::new(move || match evict {
            Evict::One(id) => cache.invalidate(id),
            Evict::User(user) => cache.invalidate_user(&user),
            Evict::All => cache.clear(),
        }));
        true
    }

    /// After deleting some of `user_id`'s rows (`deleted` of them): evicts
    /// that user's cached rows, and nothing when none was deleted (a
    /// sign-in under the per-user limit deletes nothing, and must not cost
    /// every other user their cached row).
    fn after_user_delete(&self, user_id: &str, deleted: &Result<u64, StoreError>) {
        if matches!(deleted, Ok(0)) {
            return;
        }
        self.cache.invalidate_user(user_id);
        self.evict_at_transaction_end(Evict::User(user_id.to_owned()));
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for CachedStore<S> {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(record) = self.cache.get(id) {
            return Ok(Some(record));
        }
        let generation = self.cache.generation();
        let record = self.inner.load(id).await?;
        // Read inside a request's transaction, it may hold that request's
        // uncommitted writes.
        if super::request_tx::transaction_open() {
            return Ok(record);
        }
        if let Some(record) = &record {
            self.cache.put(record.clone(), generation);
        }
        Ok(record)
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let generation = self.cache.generation();
        let id = self.inner.insert(fields).await?;
        if self.evict_when_transaction_ends(Some(id)) {
            return Ok(id);
        }
        let record = SessionRecord {
            id,
            version: 1,
            fields: fields.clone(),
        };
        self.cache.put(record, generation);
        Ok(id)
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        let generation = self.cache.generation();
        let written = self.inner.update(id, expected_version, fields).await?;
        let record = written.then(|| SessionRecord {
            id,
            version: expected_version + 1,
            fields: fields.clone(),
        });
        self.after_write(id, record, generation);
        Ok(written)
    }

    async fn update_data(
        &self,
        id: SessionId,
        expected_version: i64,
        data: &SessionData,
        last_activity: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let generation = self.cache.generation();
        let before = self.cache.get(id);
        let written = self
            .inner
            .update_data(id, expected_version, data, last_activity)
            .await?;
        let record = before
            .filter(|r| written && r.version == expected_version)
            .map(|mut r| {
                r.version += 1;
                r.fields.data = data.clone();
                if let Some(at) = last_activity {
                    r.fields.last_activity = at;
                }
                r
            });
        self.after_write(id, record, generation);
        Ok(written)
    }

    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let generation = self.cache.generation();
        let record = self.inner.update_locked(id, merge).await?;
        self.after_write(id, record.clone(), generation);
        Ok(record)
    }

    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let touched = self.inner.touch(id, at).await?;
        if self.evict_when_transaction_ends(Some(id)) {
            self.cache.invalidate(id);
            return Ok(touched);
        }
        let mut state = self.cache.lock();
        if let Some(record) = state.rows.get_mut(&id) {
            record.fields.last_activity = record.fields.last_activity.max(at);
        }
        Ok(touched)
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(id).await;
        self.cache.invalidate(id);
        self.evict_when_transaction_ends(Some(id));
        deleted
    }

    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_expired(cutoffs, limit).await;
        // Only expired rows went: the live ones stay cached.
        if !matches!(deleted, Ok(0)) {
            self.cache.invalidate_expired(&cutoffs);
            self.evict_when_transaction_ends(None);
        }
        deleted
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.list_for_user(user_id).await
    }

    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_for_user(user_id, which).await;
        self.after_user_delete(user_id, &deleted);
        deleted
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_all().await;
        self.cache.clear();
        self.evict_when_transaction_ends(None);
        deleted
    }

    async fn delete_excess_for_user(
        &self,
        user_id: &str,
        api: bool,
        keep: u32,
    ) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_excess_for_user(user_id, api, keep).await;
        self.after_user_delete(user_id, &deleted);
        deleted
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.count_active_since(since).await
    }

    fn combines_updates(&self) -> bool {
        self.inner.combines_updates()
    }
}
