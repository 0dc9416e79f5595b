//! [`KeycardLayer`]: the session, authentication and request-connection
//! layers stacked in the one order that works, by construction.
//!
//! Hand-stacked, the order matters and points two ways: `AuthLayer` must run
//! *inside* `SessionLayer` (it signs the request's session in), and
//! `CnxLayer` *outside* it (the session's writes join the request's
//! transaction). Built from [`SessionLayer::with_auth`] and
//! [`SessionLayer::with_connections`], the order cannot be wrong:
//!
//! ```
//! use axum::{Router, routing::get};
//! use keycard::auth::{AuthLayer, BearerAuth, CurrentUser};
//! use keycard::cnx::CnxLayer;
//! use keycard::{SessionLayer, SqliteStore};
//!
//! async fn me(CurrentUser(user): CurrentUser) -> String {
//!     user.id
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let pool = store.pool().clone();
//! let keycard = SessionLayer::new(store)
//!     .with_auth(AuthLayer::new().retriever(BearerAuth))
//!     .with_connections(CnxLayer::new(pool));
//! let app: Router = Router::new().route("/me", get(me)).layer(keycard);
//! # Ok(()) }
//! ```
//!
//! Stacked by hand in the wrong order, the first request panics with a
//! message that names the fix, rather than answering `500` or quietly
//! skipping the transaction.

use tower_layer::{Identity, Layer};

use crate::SessionLayer;
use crate::auth::AuthLayer;
use crate::cnx::{CnxDatabase, CnxLayer};
use crate::layer::SessionService;

/// `SessionLayer` with an `AuthLayer` inside it (`A`) and a `CnxLayer`
/// around it (`C`), each optional ([`Identity`] when absent). Add it to a
/// router with one `.layer(…)`.
#[derive(Clone, Debug)]
pub struct KeycardLayer<A = Identity, C = Identity> {
    session: SessionLayer,
    auth: A,
    connections: C,
}

impl SessionLayer {
    /// This layer with `auth` inside it: requests that bring credentials
    /// are signed in on their session (see [`AuthLayer`]).
    pub fn with_auth(self, auth: AuthLayer) -> KeycardLayer<AuthLayer, Identity> {
        KeycardLayer {
            session: self,
            auth,
            connections: Identity::new(),
        }
    }

    /// This layer inside `connections`: the session's writes join the
    /// request's transaction (see [`CnxLayer`]).
    pub fn with_connections<DB: CnxDatabase>(
        self,
        connections: CnxLayer<DB>,
    ) -> KeycardLayer<Identity, CnxLayer<DB>> {
        KeycardLayer {
            session: self,
            auth: Identity::new(),
            connections,
        }
    }
}

impl<C> KeycardLayer<Identity, C> {
    /// Adds `auth` inside the session layer.
    pub fn with_auth(self, auth: AuthLayer) -> KeycardLayer<AuthLayer, C> {
        KeycardLayer {
            session: self.session,
            auth,
            connections: self.connections,
        }
    }
}

impl<A> KeycardLayer<A, Identity> {
    /// Adds `connections` around the session layer.
    pub fn with_connections<DB: CnxDatabase>(
        self,
        connections: CnxLayer<DB>,
    ) -> KeycardLayer<A, CnxLayer<DB>> {
        KeycardLayer {
            session: self.session,
            auth: self.auth,
            connections,
        }
    }
}

impl<S, A, C> Layer<S> for KeycardLayer<A, C>
where
    A: Layer<S>,
    C: Layer<SessionService<A::Service>>,
{
    type Service = C::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.connections
            .layer(self.session.layer(self.auth.layer(inner)))
    }
}
