//! How keycard's session code finds the request's connection: the
//! [`CnxLayer`](super::CnxLayer) runs the rest of the request inside a
//! tokio task-local holding it, so that the session save and the SQL store
//! join its transaction without any new parameter on
//! [`SessionStore`](crate::store::SessionStore).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::Pool;

use super::CnxDatabase;
use super::conn::CnxConn;
use super::handle::{Cnx, CnxInner, Phase};
use super::hooks::HookEvent;
use crate::store::StoreError;
use crate::{Error, Session};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A [`Cnx`] with its database type erased, as the session code sees it.
pub(crate) trait Link: Send + Sync + 'static {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The request's session, for [`Cnx::session`] and row security.
    fn attach_session(&self, session: &Session);
    /// The session is about to be saved for a response that is (`success`)
    /// or is not a success: in the latter case the handler's work is rolled
    /// back first, and what the session writes then commits on its own.
    fn session_saving(self: Arc<Self>, success: bool, user: Option<String>) -> BoxFuture<()>;
    /// Runs the hooks registered for these events.
    fn fire(self: Arc<Self>, events: Vec<HookEvent>) -> BoxFuture<Result<(), Error>>;
    /// Whether a transaction is open.
    fn transaction_open(self: Arc<Self>) -> bool;
    /// Runs `f` when the open transaction ends (now, if none is open).
    fn after_transaction(self: Arc<Self>, f: Box<dyn FnOnce() + Send>);
}

impl<DB: CnxDatabase> Link for CnxInner<DB> {
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn attach_session(&self, session: &Session) {
        let _ = self.session.set(session.clone());
    }

    fn session_saving(self: Arc<Self>, success: bool, user: Option<String>) -> BoxFuture<()> {
        Box::pin(async move {
            let cnx = Cnx(self);
            if !success {
                cnx.rollback_now().await;
            }
            cnx.set_saving(!success, user);
        })
    }

    fn fire(self: Arc<Self>, events: Vec<HookEvent>) -> BoxFuture<Result<(), Error>> {
        Box::pin(async move { Cnx(self).run_hooks(events).await })
    }

    fn transaction_open(self: Arc<Self>) -> bool {
        Cnx(self).in_transaction()
    }

    fn after_transaction(self: Arc<Self>, f: Box<dyn FnOnce() + Send>) {
        Cnx(self).after_transaction(f);
    }
}

/// The handle kept in the request's extensions, for the session layer.
#[derive(Clone)]
pub(crate) struct LinkHandle(pub(crate) Arc<dyn Link>);

tokio::task_local! {
    static CURRENT: Arc<dyn Link>;
}

/// Runs `work` with `link` as the current connection.
pub(crate) fn scope<F: Future>(
    link: Arc<dyn Link>,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<dyn Link>, F> {
    CURRENT.scope(link, work)
}

/// The current connection, if the request has one.
pub(crate) fn current() -> Option<Arc<dyn Link>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs the current connection's hooks for `events`.
pub(crate) async fn fire(events: Vec<HookEvent>) -> Result<(), Error> {
    match current() {
        Some(link) if !events.is_empty() => link.fire(events).await,
        _ => Ok(()),
    }
}

/// Tells the current connection's hooks that `count` sessions ended (run
/// an admin call inside [`Cnx::scope`] of an internal connection for its
/// hooks to see it). Nothing for none.
pub(crate) async fn sessions_ended(
    user_id: Option<String>,
    count: u64,
    reason: super::EndReason,
) -> Result<(), Error> {
    if count == 0 {
        return Ok(());
    }
    fire(vec![HookEvent::SessionsEnded {
        user_id,
        count,
        reason,
    }])
    .await
}

/// Whether the current request holds an open transaction: a statement that
/// fails inside it is not retried (the database may have rolled the whole
/// transaction back).
pub(crate) fn transaction_open() -> bool {
    current().is_some_and(|link| link.transaction_open())
}

/// The connection keycard's SQL store reads on: the request's open
/// transaction on the same pool (so that a request holding a transaction
/// never waits for a second connection, which a busy pool may never free),
/// unless this very task holds it, or else `None` (the pool).
pub(crate) async fn join_read<DB: CnxDatabase>(pool: &Pool<DB>) -> Option<CnxConn<DB>> {
    let cnx = same_pool(pool)?;
    if cnx.switches_role() || cnx.held_here() || !cnx.in_transaction() {
        return None;
    }
    cnx.open_transaction(false)
        .await
        .ok()
        .flatten()
        .map(CnxConn::joined)
}

/// The current connection, if it is on `pool`.
fn same_pool<DB: CnxDatabase>(pool: &Pool<DB>) -> Option<Cnx<DB>> {
    let shared = current()?.into_any().downcast::<CnxInner<DB>>().ok()?;
    Arc::ptr_eq(&shared.pool.connect_options(), &pool.connect_options()).then(|| Cnx(shared))
}

/// The transaction connection keycard's SQL store writes on, when the
/// current request's connection is on the same pool and either has a
/// transaction open or is saving the session with hooks to run beside it.
pub(crate) async fn join<DB: CnxDatabase>(
    pool: &Pool<DB>,
) -> Result<Option<CnxConn<DB>>, StoreError> {
    let Some(cnx) = same_pool(pool) else {
        return Ok(None);
    };
    if cnx.switches_role() {
        // The transaction runs as the application's restricted role, which
        // has (and should have) no rights on the session table.
        return Ok(None);
    }
    let may_begin = match cnx.phase() {
        Phase::Finished => return Ok(None),
        Phase::Handler => false,
        Phase::Saving { .. } => cnx.has_hooks(),
    };
    if !may_begin && !cnx.in_transaction() {
        return Ok(None);
    }
    // A guard held by this very task would never be released while it
    // waits here: refuse instead of hanging.
    if cnx.held_here() {
        return Err(StoreError::ConnectionHeld);
    }
    match cnx.open_transaction(may_begin).await {
        Ok(guard) => Ok(guard.map(CnxConn::joined)),
        Err(Error::Database(error)) => Err(StoreError::Database(error)),
        Err(_) => Ok(None),
    }
}
