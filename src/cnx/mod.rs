//! Database connections bound to the request and its session.
//!
//! [`CnxLayer`] gives every request a [`Cnx`] on the application's own
//! sqlx pool. Nothing is acquired until the handler first uses it, and the
//! connection is always given back, whatever happens to the request.
//!
//! # Modes
//!
//! * **Read.** [`Cnx::read`] lends a pooled connection that goes back to the
//!   pool when it drops, so a handler that only reads holds no connection
//!   between its queries.
//! * **Transaction.** The first [`Cnx::write`] (or [`Cnx::begin`]) begins a
//!   transaction on one connection, which the request then keeps; later
//!   reads run in it too, so the handler reads its own writes.
//!
//! When the response leaves, the transaction **commits for a `2xx` or `3xx`
//! response and rolls back otherwise**, and also if the handler panicked,
//! timed out or the request was cancelled (the future dropped).
//!
//! # One request, one transaction
//!
//! Put the `CnxLayer` *outside* the [`SessionLayer`](crate::SessionLayer)
//! (in axum: `.layer(session_layer).layer(cnx_layer)`; in the other order
//! the first request panics, naming the fix) on the pool the session store uses
//! (`CnxLayer::new(store.pool().clone())`). The session's write then joins
//! the request's transaction: "sign in and write an audit row", or "change
//! application rows and the session", commit or roll back together. A
//! response that is not a success rolls the handler's work back; what the
//! session layer itself saves for it (a sign-out after refused credentials,
//! say) still commits, as it would without a `Cnx`, and a server error
//! discards the session's changes as always. A session store on another
//! pool, or a third-party store, never joins.
//!
//! keycard's account writes on the same pool join too: an account created,
//! a password set, a second factor enrolled or an API token issued commits
//! or rolls back with the handler's work (each in a savepoint, so that a
//! refused row, a name already taken, leaves the transaction usable), and
//! the accounts' reads see the transaction's own writes. Some writes must
//! stand whatever the response: a counted failed sign-in; a one-time token,
//! second-factor code or passkey counter used up; a remember-me token's
//! rotation (the browser gets the new one) and a copied cookie's alarm
//! (every session and remembered browser of the user ended); a remembered
//! browser forgotten. Those are made again, on pooled connections, as soon
//! as a rollback is done. Should another request have used the same
//! one-time code in between, the request that rolled back answers `409`
//! and its session stores nothing ([`StoreError::UsedMeanwhile`]): a code
//! never works twice. The alarm's [`EndReason::Theft`] reaches the hooks
//! even for a server error.
//!
//! On SQLite a transaction begins with `BEGIN IMMEDIATE`: it takes the
//! database's write lock at once, so writing requests queue instead of
//! failing with `SQLITE_BUSY` halfway. That is why nothing keycard writes
//! for a request runs beside its transaction on a connection of its own:
//! there, it would wait for the request's own lock.
//!
//! [`StoreError::UsedMeanwhile`]: crate::store::StoreError::UsedMeanwhile
//!
//! Once a transaction is open, the session's reads and writes run on its
//! connection too, so a request never holds one connection while waiting for
//! a second (which, with as many busy requests as the pool has connections,
//! would never come). Hold a [`Cnx::read`] connection only for its queries,
//! not across calls to the session.
//!
//! # States, scopes and pending operations
//!
//! [`Cnx::commit_state`] tells where the transaction is: [`CommitState::Idle`],
//! `Active`, `Precommit`, `Postcommit`, `Uncommitable`, then `Committed` or
//! `RolledBack`. Work can wait for the outcome:
//!
//! * [`Cnx::on_precommit`] runs inside the transaction just before it
//!   commits, and may still refuse it with a [`Veto`]: the transaction
//!   rolls back and the response becomes an error.
//! * [`Cnx::on_postcommit`] runs once the commit is done (send the e-mail
//!   only once the row exists); [`Cnx::on_rollback`] if it rolls back.
//!
//! Values can be kept per [`Scope`]: `Connection` (dropped with the
//! request) or `Transaction` (cleared at commit or rollback); session data,
//! the third scope, is the [`Session`](crate::Session)'s.
//!
//! # Security and hooks
//!
//! On PostgreSQL, [`CnxLayer::row_security`] tells every transaction who the
//! signed-in user is, so that the application's row-level-security policies
//! apply ([`RowSecurity`]). [`Cnx::set_security`] switches read or write
//! security off for a connection, explicitly and in the log;
//! [`CnxLayer::internal`] gives a connection without a user and with
//! security off, for jobs and admin tasks.
//!
//! [`CnxLayer::hook`] registers code by category for the session's
//! lifecycle ([`HookEvent`]: created, login, logout, ended by policy, user,
//! admin or purge) and for the commit; it runs in the transaction, and
//! [`Cnx::disable_hooks`] switches a category off for one connection (an
//! import that should not be audited).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use keycard::cnx::{Cnx, CnxLayer, HookEvent};
//! use keycard::{Session, SessionLayer, SqliteStore};
//! use sqlx::Sqlite;
//!
//! async fn sign_in(session: Session, cnx: Cnx<Sqlite>) -> Result<&'static str, keycard::Error> {
//!     session.login("ada").await?;
//!     sqlx::query("INSERT INTO notes (owner, body) VALUES (?, ?)")
//!         .bind("ada")
//!         .bind("welcome")
//!         .execute(&mut *cnx.write().await?)
//!         .await?;
//!     // The row, the new session token and the audit row commit together.
//!     Ok("signed in")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let pool = store.pool().clone();
//! sqlx::raw_sql(
//!     "CREATE TABLE notes (owner TEXT, body TEXT); CREATE TABLE audit (what TEXT);",
//! )
//! .execute(&pool)
//! .await?;
//!
//! let app: Router = Router::new()
//!     .route("/login", post(sign_in))
//!     .layer(SessionLayer::new(store))
//!     .layer(CnxLayer::new(pool.clone()).hook("audit", |cnx, event| async move {
//!         if let HookEvent::Login { user_id, .. } = event {
//!             sqlx::query("INSERT INTO audit (what) VALUES (?)")
//!                 .bind(format!("login {user_id}"))
//!                 .execute(&mut *cnx.write().await?)
//!                 .await?;
//!         }
//!         Ok(())
//!     }));
//! # use tower::ServiceExt;
//! # let response = app.oneshot(http::Request::post("/login").body(axum::body::Body::empty())?).await?;
//! # assert_eq!(response.status(), 200);
//! # let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit").fetch_one(&pool).await?;
//! # assert_eq!(audit, 1);
//! # Ok(()) }
//! ```

// Without a database feature there is no store to join: the joining code is
// compiled but unused.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]

mod backend;
pub(crate) mod bridge;
mod conn;
mod error;
mod future;
mod handle;
mod hooks;
mod layer;
mod ops;
mod security;

pub use backend::CnxDatabase;
pub use conn::CnxConn;
pub use error::CnxError;
pub use future::ResponseFuture;
pub use handle::{Cnx, Scope};
pub use hooks::{EndReason, HookEvent};
pub use layer::{CnxLayer, CnxService};
pub use ops::{CommitState, Veto};
pub use security::{RowSecurity, Security};
