//! [`CnxConn`]: a connection lent by a [`Cnx`](super::Cnx).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;

use sqlx::Transaction;
use tokio::sync::OwnedMappedMutexGuard;

use super::CnxDatabase;

/// A held transaction connection.
pub(crate) type TxGuard<DB> =
    OwnedMappedMutexGuard<Option<Transaction<'static, DB>>, <DB as sqlx::Database>::Connection>;

/// Whoever remembers which task holds the transaction's connection: told
/// when a handler's guard drops.
pub(crate) trait HeldBy: Send + Sync {
    /// The guard was dropped.
    fn released(&self);
}

/// A database connection lent by [`Cnx::read`](super::Cnx::read) or
/// [`Cnx::write`](super::Cnx::write): run queries on `&mut *conn`. A pooled
/// read connection goes back to the pool when this drops; a transaction's
/// connection stays the request's, and is only released for other users of
/// the same `Cnx`.
pub struct CnxConn<DB: CnxDatabase> {
    held: Held<DB>,
}

enum Held<DB: CnxDatabase> {
    Pooled(PoolConnection<DB>),
    Transaction {
        guard: TxGuard<DB>,
        /// Set for a handler's guard, whose task is remembered as the holder.
        owner: Option<Arc<dyn HeldBy>>,
    },
}

impl<DB: CnxDatabase> CnxConn<DB> {
    pub(crate) fn pooled(conn: PoolConnection<DB>) -> Self {
        Self {
            held: Held::Pooled(conn),
        }
    }

    pub(crate) fn transaction(guard: TxGuard<DB>, owner: Arc<dyn HeldBy>) -> Self {
        Self {
            held: Held::Transaction {
                guard,
                owner: Some(owner),
            },
        }
    }

    /// A transaction connection lent to keycard's own store.
    pub(crate) fn joined(guard: TxGuard<DB>) -> Self {
        Self {
            held: Held::Transaction { guard, owner: None },
        }
    }

    /// Whether this is the transaction's connection (not a pooled one).
    pub fn in_transaction(&self) -> bool {
        matches!(self.held, Held::Transaction { .. })
    }
}

impl<DB: CnxDatabase> Deref for CnxConn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.held {
            Held::Pooled(conn) => conn,
            Held::Transaction { guard, .. } => guard,
        }
    }
}

impl<DB: CnxDatabase> DerefMut for CnxConn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.held {
            Held::Pooled(conn) => conn,
            Held::Transaction { guard, .. } => guard,
        }
    }
}

impl<DB: CnxDatabase> Drop for CnxConn<DB> {
    fn drop(&mut self) {
        if let Held::Transaction {
            owner: Some(owner), ..
        } = &self.held
        {
            owner.released();
        }
    }
}

impl<DB: CnxDatabase> std::fmt::Debug for CnxConn<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnxConn")
            .field("in_transaction", &self.in_transaction())
            .finish_non_exhaustive()
    }
}
