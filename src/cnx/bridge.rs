//! How the rest of keycard finds the request's connection: the
//! [`CnxLayer`](super::CnxLayer) runs the rest of the request inside two
//! tokio task-locals, this module's (for the session save and its hooks)
//! and the store's (`store::request_tx`, an interface the store defines and
//! this module implements), so that the SQL store joins the transaction
//! without knowing this module or any new parameter on
//! [`SessionStore`](crate::store::SessionStore).

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use sqlx::Pool;
use tokio::task::futures::TaskLocalFuture;

use super::CnxDatabase;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use super::conn::CnxConn;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use super::handle::Phase;
use super::handle::{Cnx, CnxInner};
use super::hooks::HookEvent;
use crate::SessionEvent;
use crate::session::lifecycle::{self, HooksHandle, SessionHooks};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use crate::store::StoreError;
use crate::store::request_tx::{self, RequestTransaction};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use crate::store::request_tx::{ConnectionLender, Lent};
use crate::{Error, Session, SessionError};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
type LendFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<DB: CnxDatabase> SessionHooks for CnxInner<DB> {
    fn attach_session(&self, session: &Session) {
        let _ = self.session.set(session.clone());
    }

    /// For a response that is not a success the handler's work is rolled
    /// back first, and what the session writes then commits on its own.
    /// A write that had to stand whatever the response and could not be
    /// made again after the rollback (another request used the code
    /// meanwhile) fails the save: the session stores nothing of a request
    /// whose proof no longer stands.
    fn session_saving(
        self: Arc<Self>,
        success: bool,
        user: Option<String>,
    ) -> BoxFuture<Result<(), SessionError>> {
        Box::pin(async move {
            let cnx = Cnx(self);
            if !success {
                cnx.rollback_now().await;
            }
            if let Some(error) = cnx.take_lost() {
                return Err(SessionError::Store(error));
            }
            cnx.set_saving(!success, user);
            Ok(())
        })
    }

    fn fire(self: Arc<Self>, events: Vec<SessionEvent>) -> BoxFuture<Result<(), SessionError>> {
        let events = events.into_iter().map(HookEvent::from).collect();
        Box::pin(async move { Cnx(self).run_hooks(events).await.map_err(hook_failed) })
    }

    fn session_saved(self: Arc<Self>) {
        Cnx(self).set_saved();
    }
}

/// A hook's error as the session save's: a session error as it is, any
/// other with its status.
fn hook_failed(error: Error) -> SessionError {
    match error {
        Error::Session(error) => error,
        other => SessionError::Hook {
            status: other.status(),
            source: Box::new(other),
        },
    }
}

/// `work`, run with a connection as the request's: for the session side
/// (its hooks) and for the stores (its transaction).
pub(crate) type Scoped<F> =
    TaskLocalFuture<Arc<dyn SessionHooks>, TaskLocalFuture<Arc<dyn RequestTransaction>, F>>;

/// Runs `work` with `inner` as the request's connection.
pub(crate) fn scope<DB: CnxDatabase, F: Future>(inner: Arc<CnxInner<DB>>, work: F) -> Scoped<F> {
    let tx: Arc<dyn RequestTransaction> = Arc::new(Cnx(inner.clone()));
    lifecycle::scope(inner, request_tx::scope(tx, work))
}

impl<DB: CnxDatabase> Cnx<DB> {
    /// Runs `work` with this connection as the one keycard's SQL session
    /// store joins: for an internal connection, a job's session writes
    /// (a purge, ending a user's sessions) then commit or roll back with
    /// the job's own. A request's connection is joined already.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        scope(self.0.clone(), work).await
    }
}

/// The handle the session layer finds in the request's extensions.
pub(crate) fn hooks_handle<DB: CnxDatabase>(inner: Arc<CnxInner<DB>>) -> HooksHandle {
    HooksHandle(inner)
}

impl<DB: CnxDatabase> RequestTransaction for Cnx<DB> {
    fn transaction_open(&self) -> bool {
        self.in_transaction()
    }

    fn after_transaction(&self, f: Box<dyn FnOnce() + Send>) {
        Cnx::after_transaction(self, f);
    }

    fn redo_after_rollback(&self, redo: request_tx::Redo) {
        Cnx::redo_after_rollback(self, redo);
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(&self) -> Option<&dyn ConnectionLender<sqlx::Sqlite>> {
        let cnx: &dyn Any = self;
        cnx.downcast_ref::<Cnx<sqlx::Sqlite>>()
            .map(|cnx| cnx as &dyn ConnectionLender<sqlx::Sqlite>)
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Option<&dyn ConnectionLender<sqlx::Postgres>> {
        let cnx: &dyn Any = self;
        cnx.downcast_ref::<Cnx<sqlx::Postgres>>()
            .map(|cnx| cnx as &dyn ConnectionLender<sqlx::Postgres>)
    }

    #[cfg(feature = "mysql")]
    fn mysql(&self) -> Option<&dyn ConnectionLender<sqlx::MySql>> {
        let cnx: &dyn Any = self;
        cnx.downcast_ref::<Cnx<sqlx::MySql>>()
            .map(|cnx| cnx as &dyn ConnectionLender<sqlx::MySql>)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: CnxDatabase> Cnx<DB> {
    /// Whether this connection is on `pool` (the same `Pool` value).
    fn on_pool(&self, pool: &Pool<DB>) -> bool {
        Arc::ptr_eq(&self.0.pool.connect_options(), &pool.connect_options())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
impl<DB: CnxDatabase> ConnectionLender<DB> for Cnx<DB> {
    /// The request's open transaction on the same pool (so that a request
    /// holding a transaction never waits for a second connection, which a
    /// busy pool may never free), unless this very task holds it.
    fn lend_read<'a>(&'a self, pool: &'a Pool<DB>) -> LendFuture<'a, Option<Lent<DB>>> {
        Box::pin(async move {
            if !self.on_pool(pool)
                || self.switches_role()
                || self.held_here()
                || !self.in_transaction()
            {
                return None;
            }
            self.open_transaction(false)
                .await
                .ok()
                .flatten()
                .map(|guard| Lent::joined(CnxConn::joined(guard)))
        })
    }

    /// The transaction's connection when this request's connection is on
    /// the same pool and either has a transaction open or is saving the
    /// session with hooks to run beside it.
    fn lend_write<'a>(
        &'a self,
        pool: &'a Pool<DB>,
    ) -> LendFuture<'a, Result<Option<Lent<DB>>, StoreError>> {
        Box::pin(async move {
            if !self.on_pool(pool) || self.switches_role() {
                // With a role switch the transaction runs as the
                // application's restricted role, which has (and should
                // have) no rights on the session table.
                return Ok(None);
            }
            let may_begin = match self.phase() {
                Phase::Finished => return Ok(None),
                Phase::Handler => false,
                Phase::Saving { .. } => self.has_hooks(),
            };
            if !may_begin && !self.in_transaction() {
                return Ok(None);
            }
            // A guard held by this very task would never be released while
            // it waits here: refuse instead of hanging.
            if self.held_here() {
                return Err(StoreError::Backend(
                    "the request's transaction connection is held by this task: drop the \
                     `CnxConn` before keycard writes (the session, an account)"
                        .into(),
                ));
            }
            match self.open_transaction(may_begin).await {
                Ok(guard) => Ok(guard.map(|guard| Lent::joined(CnxConn::joined(guard)))),
                Err(super::CnxError::Database(error)) => Err(StoreError::Database(error)),
                Err(_) => Ok(None),
            }
        })
    }
}
