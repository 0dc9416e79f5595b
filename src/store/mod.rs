//! The [`SessionStore`] trait, its record types, and the SQL stores.
//!
//! A store is deliberately dumb: it reads and writes rows and knows nothing of
//! cookies, timeouts or policies, which live in the layer so that every store
//! behaves the same. Every timestamp it writes is handed to it by the layer
//! (from the application's [`Clock`](crate::clock::Clock)); a store never
//! asks the database for the time.
//!
//! Writes are optimistic: [`SessionStore::update`] names the `version` it
//! read and succeeds only if the row still has it: one statement, which is
//! all an uncontended write costs. When it is refused because a concurrent
//! request of the same session wrote first, the layer falls back to
//! [`SessionStore::update_locked`], which reads the row under a write lock
//! and writes the request's changes merged into it. Two concurrent requests
//! of one session therefore keep each other's writes, and a writer never
//! starves, however many others there are.
//!
//! To write a store for another database, implement the trait and run the
//! behaviour suite in `tests/` against it: `tests/memory.rs` runs it on an
//! in-memory store written from this public API alone, without sqlx
//! (`tests/common/memory.rs`). Such a store reports its own failures as
//! [`StoreError::Backend`] and a taken unique key as
//! [`StoreError::AlreadyExists`]; [`update_data`](SessionStore::update_data)
//! and [`delete_excess_for_user`](SessionStore::delete_excess_for_user)
//! have correct defaults built on the other methods.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::token::{SessionId, TokenHash};

mod cache;
mod limits;
mod lockout;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod migrate;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_notify;
pub(crate) mod request_tx;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_data_version;
mod table_name;
mod users;

pub use cache::CachedStore;
pub use limits::WaitLimits;
pub use lockout::LockoutPolicy;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use sql::SqlStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, WAL_SIZE_LIMIT};
pub use table_name::TableName;
pub use users::{
    ApiTokenRecord, NewApiToken, OneTimeToken, PasskeyRecord, RememberedDevice, TotpRecord,
    UserRecord, UserStore,
};

/// The JSON object of an application's session values.
pub type SessionData = Map<String, Value>;

/// Every column of a session row but the two the store manages (`id`,
/// `version`). This is what [`SessionStore::insert`] and
/// [`SessionStore::update`] write.
///
/// New columns are added as new fields, so the struct cannot be built
/// field by field outside keycard: a store that reads rows starts from
/// [`SessionFields::new`] and sets the fields it reads.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SessionFields {
    /// SHA-256 of the session token; the token itself is never stored.
    pub token_hash: TokenHash,
    /// The application's user key, `None` while anonymous.
    pub user_id: Option<String>,
    /// The client address the session was created from.
    pub ip_address: Option<String>,
    /// An API client's session, exempt from per-user limits on human sessions.
    pub is_api: bool,
    /// How the user was authenticated (`"password"`, `"basic"`, …).
    pub auth_method: Option<String>,
    /// When the user last proved who they are.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// Whether the cookie outlives the browser session ("remember me").
    pub persistent: bool,
    /// When the session was created; the absolute timeout counts from here.
    pub created_at: DateTime<Utc>,
    /// When the session was last used; the idle timeout counts from here.
    pub last_activity: DateTime<Utc>,
    /// The application's values.
    pub data: SessionData,
    /// The user's credential version at sign-in, when the application keeps
    /// one (see [`AuthVersions`](crate::AuthVersions)): a session whose
    /// version is older than the user's current one is refused.
    pub auth_version: Option<i64>,
    /// The credential that signed the session in, when one is named
    /// ([`Login::credential`](crate::Login::credential); an API token's
    /// `api-token:17`): revoking it ends the session.
    pub credential: Option<String>,
    /// A short label of the device the session was created on ("Firefox
    /// on Linux"), from its `User-Agent`: a hint for a person, at most
    /// [`MAX_DEVICE_CHARS`](crate::MAX_DEVICE_CHARS) printable characters.
    pub device: Option<String>,
}

impl SessionFields {
    /// An anonymous session's fields: no user, no values, created and last
    /// active at `created_at`. Stores reading a row set the rest.
    pub fn new(token_hash: TokenHash, created_at: DateTime<Utc>) -> Self {
        Self {
            token_hash,
            user_id: None,
            ip_address: None,
            is_api: false,
            auth_method: None,
            authenticated_at: None,
            persistent: false,
            created_at,
            last_activity: created_at,
            data: SessionData::new(),
            auth_version: None,
            credential: None,
            device: None,
        }
    }
}

/// A session row as read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// The store-assigned key.
    pub id: SessionId,
    /// Incremented by every [`SessionStore::update`]; a write names the
    /// version it read so that it cannot overwrite a newer one.
    pub version: i64,
    /// Everything else.
    pub fields: SessionFields,
}

/// The merge step of [`SessionStore::update_locked`]: the row's current
/// state in, its new fields out (or `None` to leave it as it is).
pub type Merge<'a> = dyn FnMut(&SessionRecord) -> Option<SessionFields> + Send + 'a;

/// The cut-off times of [`SessionStore::delete_expired`]: a browser-session
/// row is expired if it was last active before `idle_before` or created
/// before `created_before`; a persistent ("remember me") row by the
/// `persistent_` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryCutoffs {
    /// Browser sessions with `last_activity` earlier than this are expired.
    pub idle_before: DateTime<Utc>,
    /// Browser sessions with `created_at` earlier than this are expired.
    pub created_before: DateTime<Utc>,
    /// Persistent sessions with `last_activity` earlier than this are expired.
    pub persistent_idle_before: DateTime<Utc>,
    /// Persistent sessions with `created_at` earlier than this are expired.
    pub persistent_created_before: DateTime<Utc>,
}

impl ExpiryCutoffs {
    /// Whether a session with `fields` is expired by these cut-offs.
    pub(crate) fn expire(&self, fields: &SessionFields) -> bool {
        if fields.persistent {
            fields.last_activity < self.persistent_idle_before
                || fields.created_at < self.persistent_created_before
        } else {
            fields.last_activity < self.idle_before || fields.created_at < self.created_before
        }
    }

    /// The cut-offs of `config`'s timeouts at `now`.
    pub fn at(config: &crate::config::SessionConfig, now: DateTime<Utc>) -> Self {
        let (idle, absolute) = config.timeouts(false);
        let (persistent_idle, persistent_absolute) = config.timeouts(true);
        Self {
            idle_before: now - idle,
            created_before: now - absolute,
            persistent_idle_before: now - persistent_idle,
            persistent_created_before: now - persistent_absolute,
        }
    }
}

/// Which of a user's sessions [`SessionStore::delete_for_user`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSessions {
    /// Every session of the user (account disabled).
    All,
    /// Every session but this one ("sign out everywhere else").
    AllExcept(SessionId),
    /// Only this session, and only if it is the user's.
    Only(SessionId),
}

/// What went wrong inside a store.
///
/// Its messages never contain a token or a token hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error or could not be reached.
    #[error("session store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A row holds a value keycard never writes (edited by hand, or another
    /// program shares the table).
    #[error("session row {id} is corrupt: {what}")]
    Corrupt {
        /// The row's key.
        id: i64,
        /// Which column is wrong, and how.
        what: &'static str,
    },
    /// A table name that is not a plain SQL identifier.
    #[error(
        "invalid session table name {0:?}: use 1 to 48 ASCII letters, digits or `_`, not starting with a digit"
    )]
    InvalidTableName(String),
    /// A row with the same unique key exists already (an API token's hash,
    /// say): the caller may try again with another key.
    #[error("a row with this unique key exists already")]
    AlreadyExists,
    /// A one-time use made in a request's transaction that rolled back (a
    /// code or token used up, which must stand whatever the response)
    /// could not be made again, because another request used the same code
    /// or token meanwhile: the request that rolled back answers `409` and
    /// its session stores nothing.
    #[error("a one-time code or token was used by another request after this one rolled back")]
    UsedMeanwhile,
    /// A store that is not one of keycard's SQL stores failed: its own
    /// error, for a store written against this trait without sqlx.
    #[error("session store error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A migration could not be applied.
    #[error("session store migration {version} failed: {source}")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// The database's error.
        source: sqlx::Error,
    },
}

/// Storage of session rows. Implemented by [`SqliteStore`] (and the
/// PostgreSQL and MySQL stores); a wrapper can implement it to add caching,
/// metrics or fault injection.
///
/// Every method is one statement, except [`update_locked`](Self::update_locked),
/// which is one short transaction.
#[async_trait]
pub trait SessionStore: Debug + Send + Sync + 'static {
    /// Reads the row with this id, if there is one. Expired rows are
    /// returned too: judging them is the layer's job.
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Inserts a new row with `version` 1 and returns its store-assigned id.
    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError>;

    /// Overwrites the row `id` with `fields` and increments its version, but
    /// only if its version is still `expected_version`. Returns `false` when
    /// the row is gone or has a newer version.
    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError>;

    /// Like [`update`](Self::update), for a write that changes only the
    /// values, the common case: a narrower statement that leaves the other
    /// columns, and their indexes, alone. `last_activity` is moved too when
    /// given; the layer gives it at most once per touch interval, so that
    /// most writes change no indexed column (which PostgreSQL rewards with a
    /// heap-only update).
    ///
    /// The default reads the row and writes it whole with
    /// [`update`](Self::update), at the version it was given: correct, at
    /// the price of a read.
    async fn update_data(
        &self,
        id: SessionId,
        expected_version: i64,
        data: &SessionData,
        last_activity: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let Some(mut record) = self.load(id).await? else {
            return Ok(false);
        };
        if record.version != expected_version {
            return Ok(false);
        }
        record.fields.data = data.clone();
        if let Some(at) = last_activity {
            record.fields.last_activity = at;
        }
        self.update(id, expected_version, &record.fields).await
    }

    /// Reads the row under a write lock (a transaction with `SELECT … FOR
    /// UPDATE`, or `BEGIN IMMEDIATE` on SQLite), passes it to `merge`, and
    /// writes the fields `merge` returns, incrementing the version, before
    /// the lock is released. Returns the row as written; `None` if the row
    /// is gone or `merge` declined (returned `None`).
    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Moves `last_activity` forward to `at` (never backwards) without
    /// touching the version. Returns `false` if the row is gone.
    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Deletes the row; returns whether there was one.
    async fn delete(&self, id: SessionId) -> Result<bool, StoreError>;

    /// Deletes up to `limit` expired rows and returns how many it deleted.
    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError>;

    /// The user's sessions, most recently active first (expired ones too:
    /// judging them is the layer's job).
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError>;

    /// Deletes the user's sessions that `which` names; returns how many.
    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError>;

    /// Deletes every session of every user (after a suspected compromise of
    /// the session store, say); returns how many.
    async fn delete_all(&self) -> Result<u64, StoreError>;

    /// Deletes the user's sessions of one kind (API client sessions when
    /// `api`, human ones otherwise) beyond the `keep` most recently active;
    /// returns how many.
    ///
    /// The SQL stores do it in one statement, so that racing sign-ins agree;
    /// the default lists the user's sessions and deletes the excess one by
    /// one, which two racing sign-ins can leave one over the limit.
    async fn delete_excess_for_user(
        &self,
        user_id: &str,
        api: bool,
        keep: u32,
    ) -> Result<u64, StoreError> {
        let mut rows: Vec<SessionRecord> = self
            .list_for_user(user_id)
            .await?
            .into_iter()
            .filter(|r| r.fields.is_api == api)
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.fields.last_activity, r.id)));
        let mut ended = 0;
        for row in rows
            .iter()
            .skip(usize::try_from(keep).unwrap_or(usize::MAX))
        {
            ended += self
                .delete_for_user(user_id, UserSessions::Only(row.id))
                .await?;
        }
        Ok(ended)
    }

    /// Counts rows active at or after `since`. Stores keep times at whole
    /// microseconds (every time keycard writes is one); `since`, which may
    /// come from the application, is compared at that precision.
    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Whether concurrent [`Session::update`](crate::Session::update)s of
    /// one session on one app server should meet in memory and be written
    /// together (one versioned write per batch) rather than race each
    /// other in the store. Worth it where a write waits for a database's
    /// round trip, so that updates gather while one is in flight: `true`
    /// by default. keycard's SQLite store says `false`: its writes are
    /// in-process and short, updates rarely meet one in flight, and the
    /// bookkeeping measured a cost (`BENCHMARKS.md`, "Contended writes").
    fn combines_updates(&self) -> bool {
        true
    }
}

/// A shared store is a store: `Arc<dyn SessionStore>` (or `Arc<S>`) can be
/// wrapped again, by a [`CachedStore`] say.
#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for std::sync::Arc<T> {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        (**self).load(id).await
    }
    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        (**self).insert(fields).await
    }
    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        (**self).update(id, expected_version, fields).await
    }
    async fn update_data(
        &self,
        id: SessionId,
        expected_version: i64,
        data: &SessionData,
        last_activity: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        (**self)
            .update_data(id, expected_version, data, last_activity)
            .await
    }
    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        (**self).update_locked(id, merge).await
    }
    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        (**self).touch(id, at).await
    }
    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        (**self).delete_expired(cutoffs, limit).await
    }
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        (**self).list_for_user(user_id).await
    }
    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError> {
        (**self).delete_for_user(user_id, which).await
    }
    async fn delete_all(&self) -> Result<u64, StoreError> {
        (**self).delete_all().await
    }
    async fn delete_excess_for_user(
        &self,
        user_id: &str,
        api: bool,
        keep: u32,
    ) -> Result<u64, StoreError> {
        (**self).delete_excess_for_user(user_id, api, keep).await
    }
    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).count_active_since(since).await
    }
    fn combines_updates(&self) -> bool {
        (**self).combines_updates()
    }
}
