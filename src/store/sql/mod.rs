//! What the SQL stores share: the generic [`SqlStore`] and its
//! [`SessionStore`](super::SessionStore) and
//! [`UserStore`](super::UserStore) impls, written once over
//! [`SqlBackend`] (each backend's SQL text and its few differences), the
//! statements (formatted once with the table name), the checks that turn
//! a raw row into a [`SessionRecord`](super::SessionRecord), batching and
//! deadlock retries.

use super::TableName;
use super::request_tx::{self, Lent};

mod backend;
mod batch;
mod migrations;
pub(crate) mod read_cache;
mod retry;
mod rows;
mod session_store;
mod statements;
mod user_store;

#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use backend::Arg;
pub(crate) use backend::{Dialect, Io, Query, SqlBackend};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use batch::one_statement;
pub(crate) use batch::{Batcher, Load, Touch, ValueWrite};
#[cfg(feature = "mysql")]
pub(crate) use batch::{Job, padded, padded_sizes};
pub(crate) use migrations::run as migrate;
pub(crate) use retry::retry_deadlocks;
pub(crate) use statements::*;

/// A session store over an sqlx pool. Use it through its aliases,
/// `SqliteStore`, `PostgresStore`
/// and `MySqlStore`, as sqlx's `PgPool` is a `Pool<Postgres>`.
pub struct SqlStore<DB: sqlx::Database> {
    pub(crate) pool: sqlx::Pool<DB>,
    pub(crate) table: TableName,
    pub(crate) sql: std::sync::Arc<SessionSql<sqlx::SqlStr>>,
    pub(crate) users_sql: std::sync::Arc<UserSql<sqlx::SqlStr>>,
    /// The second-factor statements.
    pub(crate) factor_sql: std::sync::Arc<FactorSql<sqlx::SqlStr>>,
    /// The queue of loads waiting for the next batch.
    pub(crate) loads: std::sync::Arc<Batcher<Load<DB::Row>>>,
    /// The queue of value writes, on backends that can batch them.
    pub(crate) writes: Option<std::sync::Arc<Batcher<ValueWrite>>>,
    /// The queue of renewals (`touch`).
    pub(crate) touches: std::sync::Arc<Batcher<Touch>>,
    /// Whether loads, value writes and renewals are batched
    /// ([`SqlStore::batching`]).
    pub(crate) batching: bool,
    /// How long to wait for the database ([`SqlStore::wait_limits`]).
    pub(crate) limits: super::WaitLimits,
    /// Loaded sessions, where the backend can confirm them cheaply
    /// (SQLite: `SqliteStore::cache`).
    pub(crate) read_cache: Option<std::sync::Arc<read_cache::ReadCache>>,
}

impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            sql: self.sql.clone(),
            users_sql: self.users_sql.clone(),
            factor_sql: self.factor_sql.clone(),
            loads: self.loads.clone(),
            writes: self.writes.clone(),
            touches: self.touches.clone(),
            batching: self.batching,
            limits: self.limits,
            read_cache: self.read_cache.clone(),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &DB::NAME)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

// Crate-private methods only: the backend trait is sealed by being
// crate-private, which this lint cannot tell from a leak.
#[allow(private_bounds)]
impl<DB: SqlBackend> SqlStore<DB> {
    /// A store on `pool` and `table`, with the backend's statements.
    pub(crate) fn build(pool: sqlx::Pool<DB>, table: TableName) -> Self {
        let (loads, writes) = DB::batch_statements(&table);
        Self {
            sql: std::sync::Arc::new(DB::SESSIONS.render(&table)),
            users_sql: std::sync::Arc::new(DB::USERS.render(&table)),
            factor_sql: std::sync::Arc::new(DB::FACTORS.render(&table)),
            loads: std::sync::Arc::new(Batcher::new(loads)),
            writes: writes.map(|w| std::sync::Arc::new(Batcher::new(w))),
            touches: std::sync::Arc::new(Batcher::new(DB::touch_statements(&table))),
            batching: true,
            limits: super::WaitLimits::default(),
            read_cache: DB::change_counter(&pool).map(|counter| {
                std::sync::Arc::new(read_cache::ReadCache::new(
                    counter,
                    read_cache::DEFAULT_CAPACITY,
                ))
            }),
            pool,
            table,
        }
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// Whether concurrent loads, concurrent value writes and concurrent
    /// renewals of different sessions share one statement (on by default,
    /// on every SQL store).
    ///
    /// A load is what the first session call of a request costs; a value
    /// write is what `Session::insert`, `remove` and `update` cost on a
    /// session that is already stored; a renewal (`touch`) is what sliding
    /// expiry costs, at most once per touch interval. A statement that
    /// arrives while a batch of its kind runs waits for the next one, which
    /// reads all their rows in one `SELECT`, writes each row in one
    /// `UPDATE` only if it still has the version its writer read, exactly
    /// as a write alone would, or moves each row's `last_activity` forward
    /// and tells each caller whether its own row exists. On MySQL, whose
    /// `UPDATE` cannot say which rows it wrote, a batch of writes or
    /// renewals is one transaction that locks its rows in id order
    /// (`SELECT … FOR UPDATE`, which reads their versions) and then writes
    /// the rows that qualify in one `UPDATE … JOIN`. Statements inside a
    /// request's transaction
    /// (`CnxLayer`) always run on that
    /// transaction. Under many concurrent requests this saves a statement
    /// (and, for writes, a commit) per request: see `BENCHMARKS.md`. A
    /// statement that finds no other of its kind running runs alone, on the
    /// calling task, as it would without batching; only what queues behind
    /// it meanwhile is handed to a task that runs the next batch. Turn it off
    /// to have every statement run alone on the calling task.
    ///
    /// ```
    /// # async fn run() -> Result<(), keycard::store::StoreError> {
    /// let store = keycard::SqliteStore::connect("sqlite::memory:")
    ///     .await?
    ///     .batching(false);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// The retry budget of statements that lost a deadlock or found the
    /// database busy: [`WaitLimits::lock`](super::WaitLimits::lock). The
    /// `connect_with` constructors also set the limits on the pool they
    /// build; over a pool of the application's, set them there too (see
    /// [`WaitLimits`](super::WaitLimits)).
    #[must_use]
    pub fn wait_limits(mut self, limits: super::WaitLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The pool this store uses (the application may share it).
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The sessions table; the accounts and API tokens tables are named
    /// after it (`<table>_users`, `<table>_api_tokens`).
    pub fn table_name(&self) -> &TableName {
        &self.table
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// The connection a session read runs on: the request's open
    /// transaction on this pool when there is one (see
    /// `CnxLayer`), else a pooled connection.
    pub(crate) async fn read_conn(&self) -> Result<Lent<DB>, crate::store::StoreError>
    where
        DB: request_tx::JoinableDatabase,
    {
        if let Some(conn) = request_tx::join_read(&self.pool).await {
            return Ok(conn);
        }
        Ok(Lent::Pooled(self.pool.acquire().await?))
    }

    /// The connection a session write runs on: the request's transaction
    /// when a `CnxLayer` on this pool holds one (or
    /// begins one beside the session save for its hooks), else a pooled
    /// connection of its own.
    pub(crate) async fn write_conn(&self) -> Result<Lent<DB>, crate::store::StoreError>
    where
        DB: request_tx::JoinableDatabase,
    {
        if let Some(conn) = request_tx::join_write(&self.pool).await? {
            return Ok(conn);
        }
        Ok(Lent::Pooled(self.pool.acquire().await?))
    }
}
