//! The [`Cnx`] handle: lazy connection, transaction, scopes, operations.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, OnceLock, PoisonError};

use http::Extensions;
use sqlx::{Pool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::CnxDatabase;
use super::CnxError;
use super::conn::{CnxConn, HeldBy, TxGuard};
use super::hooks::{Hook, HookEvent};
use super::ops::{self, CommitState, Deferred, Precommit, Veto};
use super::security::{RowSecurity, Security};
use crate::store::StoreError;
use crate::store::request_tx::{self, Redo};
use crate::{Error, Session};

/// The slot of the request's transaction.
pub(crate) type Slot<DB> = Arc<Mutex<Option<Transaction<'static, DB>>>>;

/// keycard's own work at the end of a transaction (cache evictions).
pub(crate) type AfterTransaction = Box<dyn FnOnce() + Send>;

/// The scope of a value kept with [`Cnx::insert_data`]: the connection's,
/// or the transaction's. (Session data, the third scope, is the
/// [`Session`]'s own values.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Lives as long as the connection: the request, for a request's `Cnx`.
    Connection,
    /// Cleared when the current transaction commits or rolls back.
    Transaction,
}

/// What every connection of one [`CnxLayer`](super::CnxLayer) shares.
pub(crate) struct Settings<DB: CnxDatabase> {
    pub(crate) hooks: Vec<Hook<Cnx<DB>>>,
    pub(crate) row_security: Option<RowSecurity>,
}

impl<DB: CnxDatabase> Clone for Settings<DB> {
    fn clone(&self) -> Self {
        Self {
            hooks: self.hooks.clone(),
            row_security: self.row_security.clone(),
        }
    }
}

/// A database connection bound to the request and its signed-in session.
/// Extract it in a handler (with
/// [`CnxLayer`](super::CnxLayer) around the router); see the
/// [module documentation](super) for its modes and states.
///
/// Cheap to clone: every clone is the same connection.
pub struct Cnx<DB: CnxDatabase>(pub(crate) Arc<CnxInner<DB>>);

impl<DB: CnxDatabase> Clone for Cnx<DB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<DB: CnxDatabase> std::fmt::Debug for Cnx<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cnx")
            .field("database", &DB::NAME)
            .field("internal", &self.0.internal)
            .field("state", &self.commit_state())
            .finish_non_exhaustive()
    }
}

pub(crate) struct CnxInner<DB: CnxDatabase> {
    pub(crate) pool: Pool<DB>,
    pub(crate) settings: Arc<Settings<DB>>,
    pub(crate) internal: bool,
    pub(crate) slot: Slot<DB>,
    ledger: StdMutex<TxLedger<DB>>,
    pub(crate) session: OnceLock<Session>,
    used: AtomicBool,
}

/// Where the request is, as far as its connection is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The handler runs.
    Handler,
    /// The session layer is saving the session; with `forced`, the
    /// response is not a success and what begins now commits anyway.
    Saving { forced: bool },
    /// The request is over: nothing new begins.
    Finished,
}

/// Everything but the transaction itself, under a short synchronous lock.
struct TxLedger<DB: CnxDatabase> {
    state: CommitState,
    /// A transaction is in the slot.
    open: bool,
    phase: Phase,
    /// The user a transaction begun while the session saves runs as.
    save_user: Option<String>,
    /// The session's save and its hooks succeeded.
    saved: bool,
    veto: Option<Veto>,
    precommit: Vec<Precommit<Cnx<DB>>>,
    postcommit: Vec<Deferred>,
    rollback: Vec<Deferred>,
    /// keycard's own work at the end of the transaction (cache evictions).
    after: Vec<AfterTransaction>,
    /// Writes made in the transaction that must stand whatever becomes of
    /// it: made again if it rolls back.
    redo: Vec<Redo>,
    /// A write of `redo` that could not be made again: the response
    /// becomes this error, and the session saves nothing.
    lost: Option<StoreError>,
    connection_data: Extensions,
    transaction_data: Extensions,
    disabled_hooks: BTreeSet<String>,
    security: Security,
    /// Set while a handler holds a [`CnxConn`] on the transaction: the
    /// task holding it (`None` outside a spawned task, as in a test's
    /// `block_on`).
    holder: Option<Option<tokio::task::Id>>,
}

impl<DB: CnxDatabase> Cnx<DB> {
    pub(crate) fn new(pool: Pool<DB>, settings: Arc<Settings<DB>>, internal: bool) -> Self {
        Self(Arc::new(CnxInner {
            pool,
            settings,
            internal,
            slot: Arc::new(Mutex::new(None)),
            ledger: StdMutex::new(TxLedger {
                state: CommitState::Idle,
                open: false,
                phase: Phase::Handler,
                save_user: None,
                saved: false,
                veto: None,
                precommit: Vec::new(),
                postcommit: Vec::new(),
                rollback: Vec::new(),
                after: Vec::new(),
                redo: Vec::new(),
                lost: None,
                connection_data: Extensions::new(),
                transaction_data: Extensions::new(),
                disabled_hooks: BTreeSet::new(),
                security: if internal {
                    Security::OFF
                } else {
                    Security::ON
                },
                holder: None,
            }),
            session: OnceLock::new(),
            used: AtomicBool::new(false),
        }))
    }

    fn ledger(&self) -> MutexGuard<'_, TxLedger<DB>> {
        self.0.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.0.used.store(true, Ordering::Release);
    }

    pub(crate) fn was_used(&self) -> bool {
        self.0.used.load(Ordering::Acquire)
    }

    /// A connection to read with. Outside a transaction it is a pooled
    /// connection of its own, returned to the pool when the value drops
    /// (a read-only use); inside one, or when row security is on, it
    /// is the transaction's connection, so the handler reads its own writes.
    ///
    /// ```
    /// # async fn f(cnx: keycard::cnx::Cnx<sqlx::Sqlite>) -> Result<(), keycard::Error> {
    /// let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
    ///     .fetch_one(&mut *cnx.read().await?)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<CnxConn<DB>, CnxError> {
        self.touch();
        let in_tx = self.ledger().open || self.0.settings.row_security.is_some();
        if in_tx {
            return self.write().await;
        }
        self.check_not_finished()?;
        Ok(CnxConn::pooled(self.0.pool.acquire().await?))
    }

    /// The transaction's connection, beginning the transaction if there is
    /// none: from here until the response leaves (or [`commit`](Self::commit)),
    /// this connection is the request's. Hold it for a statement or a few,
    /// not across calls to [`Session`] methods that write at once
    /// ([`update`](Session::update), `end_*`): those join the same
    /// transaction and are refused with an error while the guard is held.
    ///
    /// ```
    /// # async fn f(cnx: keycard::cnx::Cnx<sqlx::Sqlite>) -> Result<(), keycard::Error> {
    /// sqlx::query("INSERT INTO audit (what) VALUES (?)")
    ///     .bind("signed in")
    ///     .execute(&mut *cnx.write().await?)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self) -> Result<CnxConn<DB>, CnxError> {
        self.touch();
        let guard = self.open_transaction(true).await?.ok_or(CnxError::Closed)?;
        self.ledger().holder = Some(tokio::task::try_id());
        Ok(CnxConn::transaction(guard, self.0.clone()))
    }

    /// Begins the transaction now, if there is none, so that even the
    /// handler's first reads run inside it.
    pub async fn begin(&self) -> Result<(), CnxError> {
        drop(self.write().await?);
        Ok(())
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.ledger().open
    }

    /// Where the transaction is in its life.
    pub fn commit_state(&self) -> CommitState {
        self.ledger().state
    }

    /// Whether this is an internal connection (no user, security off).
    pub fn is_internal(&self) -> bool {
        self.0.internal
    }

    /// The request's session, when [`SessionLayer`](crate::SessionLayer) runs
    /// inside the [`CnxLayer`](super::CnxLayer).
    pub fn session(&self) -> Option<Session> {
        self.0.session.get().cloned()
    }

    /// The connection's read and write security.
    pub fn security(&self) -> Security {
        self.ledger().security
    }

    /// Switches read or write security for the rest of this connection
    /// (until switched again), explicitly and in the log. With
    /// [`RowSecurity`] on PostgreSQL, an open transaction gets the new
    /// flags at once and later ones begin with them.
    pub async fn set_security(&self, security: Security) -> Result<(), CnxError> {
        self.touch();
        let open = {
            let mut ledger = self.ledger();
            if ledger.security == security {
                return Ok(());
            }
            ledger.security = security;
            ledger.open
        };
        tracing::info!(
            read = security.read,
            write = security.write,
            "keycard: connection security switched"
        );
        if let (true, Some(row)) = (open, &self.0.settings.row_security) {
            let user = self.user_for_security(false).await?;
            let applied = row.applied(user, security, self.0.internal);
            let mut slot = self.0.slot.lock().await;
            if let Some(tx) = slot.as_mut() {
                DB::apply_security(&mut *tx, &applied).await?;
            }
        }
        Ok(())
    }

    /// Commits the transaction now: `Commit` hooks and precommit operations
    /// run inside it (any of them can veto), then the commit, then the
    /// postcommit operations. A later write begins a new transaction. A
    /// vetoed or failed commit rolls back and returns the error.
    pub async fn commit(&self) -> Result<(), Error> {
        self.touch();
        self.commit_now().await
    }

    /// Rolls the transaction back now, makes again what keycard wrote in it
    /// that must stand whatever the response (a counted failed sign-in, a
    /// one-time code used up: see the [module documentation](super)), then
    /// runs the rollback operations.
    pub async fn rollback(&self) {
        self.touch();
        self.rollback_now().await;
    }

    /// Makes the transaction uncommitable: it will roll back, and the
    /// response becomes an error with the veto's status.
    pub fn set_uncommitable(&self, veto: Veto) {
        self.touch();
        let mut ledger = self.ledger();
        ledger.state = CommitState::Uncommitable;
        ledger.veto = Some(veto);
    }

    /// Runs `op` at precommit, inside the transaction, after the handler's
    /// work: it may still read and write through the `Cnx` it is given, and
    /// an error (a [`Veto`], say) rolls everything back and becomes the
    /// response. Operations run in the order they were added.
    pub fn on_precommit<F, Fut>(&self, op: F)
    where
        F: FnOnce(Cnx<DB>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.touch();
        self.ledger().precommit.push(ops::precommit(op));
    }

    /// Runs `op` once the transaction has committed (send the e-mail only
    /// once the row exists). It cannot undo anything; it is dropped if the
    /// transaction rolls back.
    pub fn on_postcommit<F, Fut>(&self, op: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.touch();
        self.ledger().postcommit.push(ops::deferred(op));
    }

    /// Runs `op` if the transaction rolls back (also when the request is
    /// cancelled); it is dropped if the transaction commits.
    pub fn on_rollback<F, Fut>(&self, op: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.touch();
        self.ledger().rollback.push(ops::deferred(op));
    }

    /// Keeps `value` in `scope`, one value per type; returns the one it
    /// replaced.
    pub fn insert_data<T: Clone + Send + Sync + 'static>(
        &self,
        scope: Scope,
        value: T,
    ) -> Option<T> {
        self.touch();
        let mut ledger = self.ledger();
        ledger.scope_mut(scope).insert(value)
    }

    /// The value of type `T` kept in `scope`.
    pub fn data<T: Clone + Send + Sync + 'static>(&self, scope: Scope) -> Option<T> {
        self.ledger().scope_mut(scope).get::<T>().cloned()
    }

    /// Removes and returns the value of type `T` kept in `scope`.
    pub fn remove_data<T: Clone + Send + Sync + 'static>(&self, scope: Scope) -> Option<T> {
        self.ledger().scope_mut(scope).remove::<T>()
    }

    /// Switches off the hooks of `category` for the rest of this
    /// connection (an import that should not be audited, say).
    pub fn disable_hooks(&self, category: &str) {
        self.touch();
        tracing::info!(category, "keycard: hooks disabled for this connection");
        self.ledger().disabled_hooks.insert(category.to_owned());
    }

    /// Switches the hooks of `category` back on.
    pub fn enable_hooks(&self, category: &str) {
        self.ledger().disabled_hooks.remove(category);
    }

    /// Whether the hooks of `category` run on this connection.
    pub fn hooks_enabled(&self, category: &str) -> bool {
        !self.ledger().disabled_hooks.contains(category)
    }

    fn check_not_finished(&self) -> Result<(), CnxError> {
        if self.ledger().phase == Phase::Finished {
            return Err(CnxError::Closed);
        }
        Ok(())
    }

    /// The user a transaction begun now runs as, for row security.
    async fn user_for_security(&self, saving: bool) -> Result<Option<String>, CnxError> {
        if self.0.internal || self.0.settings.row_security.is_none() {
            return Ok(None);
        }
        if saving {
            return Ok(self.ledger().save_user.clone());
        }
        match self.session() {
            Some(session) => Ok(session.user_id().await?),
            None => Ok(None),
        }
    }

    /// The transaction's connection; begins the transaction when there is
    /// none and `may_begin`, else `None`.
    pub(crate) async fn open_transaction(
        &self,
        may_begin: bool,
    ) -> Result<Option<TxGuard<DB>>, CnxError> {
        let (open, phase) = {
            let ledger = self.ledger();
            (ledger.open, ledger.phase)
        };
        if phase == Phase::Finished {
            return Err(CnxError::Closed);
        }
        // Asked before the slot is locked: the session's lock is never
        // taken while the slot's is held.
        let user = if open || !may_begin {
            None
        } else {
            self.user_for_security(matches!(phase, Phase::Saving { .. }))
                .await?
        };
        let mut slot = self.0.slot.clone().lock_owned().await;
        if slot.is_none() {
            if !may_begin {
                return Ok(None);
            }
            self.begin_in(&mut slot, user).await?;
        }
        Ok(OwnedMutexGuard::try_map(slot, |slot| slot.as_deref_mut()).ok())
    }

    async fn begin_in(
        &self,
        slot: &mut OwnedMutexGuard<Option<Transaction<'static, DB>>>,
        user: Option<String>,
    ) -> Result<(), CnxError> {
        let mut tx = self.0.pool.begin_with(DB::BEGIN).await?;
        if let Some(row) = &self.0.settings.row_security {
            let security = self.ledger().security;
            DB::apply_security(&mut tx, &row.applied(user, security, self.0.internal)).await?;
        }
        **slot = Some(tx);
        let mut ledger = self.ledger();
        ledger.open = true;
        if ledger.state != CommitState::Uncommitable {
            ledger.state = CommitState::Active;
        }
        self.touch();
        Ok(())
    }

    /// Runs the hooks for `events`, in registration order, skipping the
    /// categories this connection disabled.
    pub(crate) async fn run_hooks(&self, events: Vec<HookEvent>) -> Result<(), Error> {
        if self.0.settings.hooks.is_empty() || events.is_empty() {
            return Ok(());
        }
        let disabled = self.ledger().disabled_hooks.clone();
        for event in events {
            for hook in &self.0.settings.hooks {
                if !disabled.contains(&hook.category) {
                    (hook.run)(self.clone(), event.clone()).await?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn commit_now(&self) -> Result<(), Error> {
        let (open, pending, veto) = {
            let ledger = self.ledger();
            let pending = !ledger.precommit.is_empty() || !ledger.postcommit.is_empty();
            (ledger.open, pending, ledger.veto.clone())
        };
        if let Some(veto) = veto {
            self.rollback_now().await;
            return Err(Error::from(veto));
        }
        if !open && !pending {
            return Ok(());
        }
        self.ledger().state = CommitState::Precommit;
        if let Err(error) = self.precommit().await {
            self.ledger().state = CommitState::Uncommitable;
            self.rollback_now().await;
            return Err(error);
        }
        let tx = self.0.slot.lock().await.take();
        let committed = match tx {
            Some(tx) => tx.commit().await,
            None => Ok(()),
        };
        if let Err(error) = committed {
            self.rollback_now().await;
            return Err(error.into());
        }
        let (postcommit, after) = {
            let mut ledger = self.ledger();
            ledger.open = false;
            ledger.state = CommitState::Postcommit;
            ledger.transaction_data.clear();
            ledger.rollback.clear();
            ledger.redo.clear();
            (
                std::mem::take(&mut ledger.postcommit),
                std::mem::take(&mut ledger.after),
            )
        };
        after.into_iter().for_each(|f| f());
        for op in postcommit {
            op().await;
        }
        self.ledger().state = CommitState::Committed;
        Ok(())
    }

    /// The `Commit` hooks, then the precommit operations (and those they
    /// add), inside the transaction.
    async fn precommit(&self) -> Result<(), Error> {
        if self.ledger().open {
            self.run_hooks(vec![HookEvent::Commit]).await?;
        }
        loop {
            let ops = std::mem::take(&mut self.ledger().precommit);
            if ops.is_empty() {
                break;
            }
            for op in ops {
                op(self.clone()).await?;
            }
            if let Some(veto) = self.ledger().veto.clone() {
                return Err(Error::from(veto));
            }
        }
        Ok(())
    }

    pub(crate) async fn rollback_now(&self) {
        let tx = self.0.slot.lock().await.take();
        let had_tx = tx.is_some();
        if let Some(tx) = tx
            && let Err(error) = tx.rollback().await
        {
            // The connection is closed rather than reused; nothing was committed.
            tracing::warn!(%error, "keycard: rolling back the request transaction failed");
        }
        let (rollback, after, redo) = self.end_transaction(had_tx);
        after.into_iter().for_each(|f| f());
        // Before the application's operations: what must stand is written
        // before anything else runs.
        if let Some(error) = make_again(redo).await {
            self.ledger().lost.get_or_insert(error);
        }
        for op in rollback {
            op().await;
        }
    }

    /// Forgets the transaction's bookkeeping after a rollback.
    fn end_transaction(&self, had_tx: bool) -> (Vec<Deferred>, Vec<AfterTransaction>, Vec<Redo>) {
        let mut ledger = self.ledger();
        let pending = had_tx || !ledger.rollback.is_empty() || ledger.veto.is_some();
        ledger.open = false;
        ledger.veto = None;
        ledger.transaction_data.clear();
        ledger.precommit.clear();
        ledger.postcommit.clear();
        if pending {
            ledger.state = CommitState::RolledBack;
        }
        (
            std::mem::take(&mut ledger.rollback),
            std::mem::take(&mut ledger.after),
            std::mem::take(&mut ledger.redo),
        )
    }

    /// The request is over (or was cancelled): drops the transaction if it
    /// is still open, which rolls it back, and runs the rollback
    /// operations on the runtime if there is one.
    pub(crate) fn abandon(&self) {
        let had_tx = match self.0.slot.try_lock() {
            Ok(mut slot) => slot.take().is_some(),
            Err(_) => false,
        };
        let (rollback, after, redo) = self.end_transaction(had_tx);
        self.ledger().phase = Phase::Finished;
        after.into_iter().for_each(|f| f());
        if !(rollback.is_empty() && redo.is_empty())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                // No response left to fail: the error is in the log.
                make_again(redo).await;
                for op in rollback {
                    op().await;
                }
            });
        }
    }

    pub(crate) fn finish(&self) {
        let mut ledger = self.ledger();
        ledger.phase = Phase::Finished;
        ledger.connection_data.clear();
    }

    /// Whether the open transaction commits whatever the response: it
    /// holds the session changes of a response that is not a success, since
    /// the handler's transaction was rolled back before the session saved,
    /// so any transaction open now began after that.
    pub(crate) fn forced(&self) -> bool {
        let ledger = self.ledger();
        ledger.open && ledger.phase == Phase::Saving { forced: true }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.ledger().phase
    }

    /// Whether the session's save and its hooks succeeded
    /// ([`set_saved`](Self::set_saved)).
    pub(crate) fn saved(&self) -> bool {
        self.ledger().saved
    }

    /// Records that the session's save and its hooks succeeded.
    pub(crate) fn set_saved(&self) {
        self.ledger().saved = true;
    }

    pub(crate) fn set_saving(&self, forced: bool, user: Option<String>) {
        let mut ledger = self.ledger();
        ledger.phase = Phase::Saving { forced };
        ledger.save_user = user;
    }

    /// Keeps a write made in the open transaction to make again if it rolls
    /// back ([`Redo`]); with none open, the write committed on its own.
    pub(crate) fn redo_after_rollback(&self, redo: Redo) {
        let mut ledger = self.ledger();
        if ledger.open {
            ledger.redo.push(redo);
        }
    }

    /// The error of a write that had to stand and could not be made again
    /// after a rollback, once.
    pub(crate) fn take_lost(&self) -> Option<StoreError> {
        self.ledger().lost.take()
    }

    /// Whether the current task holds a [`CnxConn`] on the transaction.
    pub(crate) fn held_here(&self) -> bool {
        self.ledger().holder == Some(tokio::task::try_id())
    }

    /// Runs `f` when the open transaction ends, or now if there is none.
    pub(crate) fn after_transaction(&self, f: AfterTransaction) {
        let mut ledger = self.ledger();
        if ledger.open {
            ledger.after.push(f);
        } else {
            drop(ledger);
            f();
        }
    }

    /// Whether this connection's transactions `SET LOCAL ROLE`.
    pub(crate) fn switches_role(&self) -> bool {
        !self.0.internal
            && self
                .0
                .settings
                .row_security
                .as_ref()
                .is_some_and(RowSecurity::has_role)
    }

    pub(crate) fn has_hooks(&self) -> bool {
        !self.0.settings.hooks.is_empty()
    }
}

/// Makes again, on pooled connections and in order, the writes that had
/// to stand after a rollback; the first error, each one logged.
async fn make_again(redo: Vec<Redo>) -> Option<StoreError> {
    let mut lost = None;
    for redo in redo {
        if let Err(error) = request_tx::outside(redo()).await {
            tracing::error!(
                %error,
                "keycard: a write that must stand could not be made again after the rollback"
            );
            lost.get_or_insert(error);
        }
    }
    lost
}

impl<DB: CnxDatabase> TxLedger<DB> {
    fn scope_mut(&mut self, scope: Scope) -> &mut Extensions {
        match scope {
            Scope::Connection => &mut self.connection_data,
            Scope::Transaction => &mut self.transaction_data,
        }
    }
}

impl<DB: CnxDatabase> HeldBy for CnxInner<DB> {
    fn released(&self) {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holder = None;
    }
}
