//! How a store joins a request's transaction without knowing who opened it.
//!
//! The store defines this interface and a tokio task-local to find it; the
//! request-connection module (`CnxLayer`) implements
//! it and runs the request inside [`scope`]. So the dependency points one
//! way: connections know the store, the store knows only this trait. A store
//! on another pool, or a third party's store, never joins.
//!
//! A write that joins but must stand whatever becomes of the transaction (a
//! counted failed sign-in, a one-time code used up) hands the transaction a
//! [`Redo`]: the same write, made again on a pooled connection ([`outside`])
//! once a rollback is done.

use std::future::Future;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use std::ops::{Deref, DerefMut};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use std::pin::Pin;
use std::sync::Arc;

use super::StoreError;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write that joined the request's transaction but must stand whatever
/// becomes of it (a counted failed sign-in, a one-time code used up): run
/// again, on a pooled connection, once that transaction has rolled back.
/// An error means the write could not be made again (the database failed,
/// or another request used the code meanwhile).
pub(crate) type Redo = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>> + Send,
>;

/// The request's open (or openable) transaction, as a store sees it.
pub(crate) trait RequestTransaction: Send + Sync + 'static {
    /// Whether a transaction is open: a statement failing inside it is not
    /// retried (the database may have rolled the whole transaction back),
    /// and a cache keeps nothing it read or wrote.
    fn transaction_open(&self) -> bool;

    /// Runs `f` when the open transaction ends (now, if none is open).
    fn after_transaction(&self, f: Box<dyn FnOnce() + Send>);

    /// Keeps `redo`, a write made in the open transaction, to run again if
    /// that transaction rolls back; forgotten when it commits.
    fn redo_after_rollback(&self, redo: Redo);

    /// What the transaction lends a SQLite store on its pool.
    #[cfg(feature = "sqlite")]
    fn sqlite(&self) -> Option<&dyn ConnectionLender<sqlx::Sqlite>> {
        None
    }

    /// What the transaction lends a PostgreSQL store on its pool.
    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Option<&dyn ConnectionLender<sqlx::Postgres>> {
        None
    }

    /// What the transaction lends a MySQL store on its pool.
    #[cfg(feature = "mysql")]
    fn mysql(&self) -> Option<&dyn ConnectionLender<sqlx::MySql>> {
        None
    }
}

/// The connection a request's transaction lends a SQL store on the same
/// pool: for reads, so that a request holding a transaction never waits for
/// a second connection; for writes, so that the session's writes commit or
/// roll back with the request's.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) trait ConnectionLender<DB: sqlx::Database>: Send + Sync {
    /// The transaction's connection for a read, if it is on `pool` and
    /// open (and not held by this very task); `None`: use the pool.
    fn lend_read<'a>(&'a self, pool: &'a sqlx::Pool<DB>) -> BoxFuture<'a, Option<Lent<DB>>>;

    /// The transaction's connection for a write, if it is on `pool` and
    /// open or may begin now; `None`: use the pool. An error when waiting
    /// would never end (this task holds the connection).
    fn lend_write<'a>(
        &'a self,
        pool: &'a sqlx::Pool<DB>,
    ) -> BoxFuture<'a, Result<Option<Lent<DB>>, StoreError>>;
}

/// The databases whose stores can join a request's transaction.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) trait JoinableDatabase: sqlx::Database {
    /// What `tx` lends a store of this database.
    fn lender(tx: &dyn RequestTransaction) -> Option<&dyn ConnectionLender<Self>>;
}

#[cfg(feature = "sqlite")]
impl JoinableDatabase for sqlx::Sqlite {
    fn lender(tx: &dyn RequestTransaction) -> Option<&dyn ConnectionLender<Self>> {
        tx.sqlite()
    }
}

#[cfg(feature = "postgres")]
impl JoinableDatabase for sqlx::Postgres {
    fn lender(tx: &dyn RequestTransaction) -> Option<&dyn ConnectionLender<Self>> {
        tx.postgres()
    }
}

#[cfg(feature = "mysql")]
impl JoinableDatabase for sqlx::MySql {
    fn lender(tx: &dyn RequestTransaction) -> Option<&dyn ConnectionLender<Self>> {
        tx.mysql()
    }
}

/// A connection a store runs a statement on: pooled (the common case, no
/// allocation), or lent by the request's transaction (given back when this
/// drops).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) enum Lent<DB: sqlx::Database> {
    /// From the store's pool.
    Pooled(sqlx::pool::PoolConnection<DB>),
    /// The request transaction's, whoever lends it.
    Joined(Box<dyn DerefMut<Target = DB::Connection> + Send>),
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: sqlx::Database> Lent<DB> {
    /// A connection lent by the request's transaction.
    pub(crate) fn joined(conn: impl DerefMut<Target = DB::Connection> + Send + 'static) -> Self {
        Self::Joined(Box::new(conn))
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: sqlx::Database> Deref for Lent<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Lent::Pooled(conn) => conn,
            Lent::Joined(conn) => conn,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: sqlx::Database> DerefMut for Lent<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Lent::Pooled(conn) => conn,
            Lent::Joined(conn) => conn,
        }
    }
}

tokio::task_local! {
    static CURRENT: Arc<dyn RequestTransaction>;
}

/// Runs `work` with `tx` as the request's transaction.
pub(crate) fn scope<F: Future>(
    tx: Arc<dyn RequestTransaction>,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<dyn RequestTransaction>, F> {
    CURRENT.scope(tx, work)
}

/// Runs `work` as if the request had no transaction: stores' statements in
/// it take pooled connections and commit on their own. For writes that
/// must stand whatever the request's transaction does, once the request
/// holds no lock in it (after its rollback): before that, a pooled write
/// could wait for the request's own transaction.
pub(crate) fn outside<F: Future>(
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<dyn RequestTransaction>, F> {
    CURRENT.scope(Arc::new(NoTransaction), work)
}

/// What [`outside`] runs under: nothing open, nothing lent.
struct NoTransaction;

impl RequestTransaction for NoTransaction {
    fn transaction_open(&self) -> bool {
        false
    }

    fn after_transaction(&self, f: Box<dyn FnOnce() + Send>) {
        f();
    }

    fn redo_after_rollback(&self, _redo: Redo) {
        // Nothing is open, so no write joined it: a write made here
        // committed on its own and stands already.
    }
}

/// The request's transaction, if it has one.
pub(crate) fn current() -> Option<Arc<dyn RequestTransaction>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Whether the current request holds an open transaction.
pub(crate) fn transaction_open() -> bool {
    current().is_some_and(|tx| tx.transaction_open())
}

/// Has `redo` run again if the request's open transaction rolls back (see
/// [`Redo`]); nothing without a request transaction.
pub(crate) fn redo_after_rollback(redo: Redo) {
    if let Some(tx) = current() {
        tx.redo_after_rollback(redo);
    }
}

/// The request transaction's connection for a read on `pool`, if it lends
/// one.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) async fn join_read<DB: JoinableDatabase>(pool: &sqlx::Pool<DB>) -> Option<Lent<DB>> {
    let tx = current()?;
    DB::lender(&*tx)?.lend_read(pool).await
}

/// The request transaction's connection for a write on `pool`, if it lends
/// one.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) async fn join_write<DB: JoinableDatabase>(
    pool: &sqlx::Pool<DB>,
) -> Result<Option<Lent<DB>>, StoreError> {
    let Some(tx) = current() else {
        return Ok(None);
    };
    match DB::lender(&*tx) {
        Some(lender) => lender.lend_write(pool).await,
        None => Ok(None),
    }
}
