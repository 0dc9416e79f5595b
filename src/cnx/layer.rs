//! [`CnxLayer`] and [`CnxService`].

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use sqlx::Pool;
use tower_layer::Layer;
use tower_service::Service;

use super::CnxDatabase;
use super::bridge;
use super::future::ResponseFuture;
use super::handle::{Cnx, Settings};
use super::hooks::{Hook, HookEvent};
use crate::Error;

/// A tower layer that gives every request a lazy [`Cnx`] on the
/// application's pool, and commits or rolls it back when the response
/// leaves. Add it *after* [`SessionLayer`](crate::SessionLayer) (so that it
/// runs outside it) for the session's writes to join the request's
/// transaction; see the [module documentation](super).
pub struct CnxLayer<DB: CnxDatabase> {
    pool: Pool<DB>,
    settings: Arc<Settings<DB>>,
}

impl<DB: CnxDatabase> Clone for CnxLayer<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<DB: CnxDatabase> std::fmt::Debug for CnxLayer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnxLayer")
            .field("database", &DB::NAME)
            .field("hooks", &self.settings.hooks.len())
            .field("row_security", &self.settings.row_security)
            .finish_non_exhaustive()
    }
}

impl<DB: CnxDatabase> CnxLayer<DB> {
    /// Connections on `pool`. When keycard's session store uses the same
    /// pool (`SqliteStore::new(pool.clone())`, say), the session's writes
    /// join the request's transaction.
    pub fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            settings: Arc::new(Settings {
                hooks: Vec::new(),
                row_security: None,
            }),
        }
    }

    /// The pool connections come from.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Registers a hook in `category`, run for every [`HookEvent`] (match
    /// on the ones it cares about) with the request's connection, so that
    /// what it writes is part of the transaction. An error fails the
    /// request and rolls the transaction back. Hooks run in the order they
    /// were registered; [`Cnx::disable_hooks`] switches a category off.
    ///
    /// ```
    /// use keycard::cnx::{CnxLayer, HookEvent};
    ///
    /// # fn f(pool: sqlx::SqlitePool) {
    /// let layer = CnxLayer::new(pool).hook("audit", |cnx, event| async move {
    ///     if let HookEvent::Login { user_id, .. } = event {
    ///         sqlx::query("INSERT INTO audit (what) VALUES (?)")
    ///             .bind(format!("{user_id} signed in"))
    ///             .execute(&mut *cnx.write().await?)
    ///             .await?;
    ///     }
    ///     Ok(())
    /// });
    /// # }
    /// ```
    pub fn hook<F, Fut>(mut self, category: &str, hook: F) -> Self
    where
        F: Fn(Cnx<DB>, HookEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        Arc::make_mut(&mut self.settings)
            .hooks
            .push(Hook::new(category, hook));
        self
    }

    /// An internal connection, for jobs and admin tasks: no user, read and
    /// write security off, hooks as configured. Nothing commits it for you:
    /// call [`Cnx::commit`]; dropping it uncommitted rolls back. Run
    /// keycard's own session work inside [`Cnx::scope`] for it to join.
    pub fn internal(&self) -> Cnx<DB> {
        Cnx::new(self.pool.clone(), self.settings.clone(), true)
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn settings_mut(&mut self) -> &mut Settings<DB> {
        Arc::make_mut(&mut self.settings)
    }
}

#[cfg(feature = "postgres")]
impl CnxLayer<sqlx::Postgres> {
    /// Tells PostgreSQL who the signed-in user is in every transaction of
    /// a user connection, for the application's row-level security
    /// policies (see [`RowSecurity`](super::RowSecurity)).
    pub fn row_security(mut self, security: super::RowSecurity) -> Self {
        self.settings_mut().row_security = Some(security);
        self
    }
}

impl<S, DB: CnxDatabase> Layer<S> for CnxLayer<DB> {
    type Service = CnxService<S, DB>;

    fn layer(&self, inner: S) -> Self::Service {
        CnxService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`CnxLayer`] wraps around an application.
pub struct CnxService<S, DB: CnxDatabase> {
    inner: S,
    layer: CnxLayer<DB>,
}

impl<S: Clone, DB: CnxDatabase> Clone for CnxService<S, DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, DB: CnxDatabase> std::fmt::Debug for CnxService<S, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnxService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, DB, ReqBody, ResBody> Service<Request<ReqBody>> for CnxService<S, DB>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    DB: CnxDatabase,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, DB, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<crate::Session>().is_some() {
            refuse_misordered();
        }
        let cnx = Cnx::new(self.layer.pool.clone(), self.layer.settings.clone(), false);
        request.extensions_mut().insert(cnx.clone());
        request
            .extensions_mut()
            .insert(bridge::hooks_handle(cnx.0.clone()));
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(bridge::scope(cnx.0.clone(), inner.call(request)), cnx)
    }
}

/// With the `SessionLayer` outside, the session would save after the
/// transaction ended, out of it and without its hooks: a wiring mistake
/// every request would repeat, so it is loud, at once.
fn refuse_misordered() {
    panic!(
        "keycard: `CnxLayer` runs inside `SessionLayer`, so the session's writes could not join \
         the request's transaction: build the stack with \
         `SessionLayer::new(store).with_connections(cnx)` (or add `.layer(cnx)` after \
         `.layer(sessions)`)"
    );
}
