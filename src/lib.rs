//! # keycard
//!
//! Server-side sessions and sign-in for [tower] and [axum] applications,
//! kept in a SQL database through [sqlx]: SQLite embedded by default,
//! PostgreSQL and MySQL/MariaDB for several app servers sharing one store.
//!
//! ```
//! use axum::{Router, routing::{get, post}};
//! use keycard::{Session, SessionLayer, SqliteStore};
//!
//! async fn whoami(session: Session) -> Result<String, keycard::Error> {
//!     Ok(session.user_id().await?.unwrap_or_else(|| "nobody".into()))
//! }
//!
//! async fn sign_in(session: Session) -> Result<&'static str, keycard::Error> {
//!     session.login("ada").await?; // fresh token, new cookies on the way out
//!     Ok("signed in")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let app: Router = Router::new()
//!     .route("/", get(whoami))
//!     .route("/login", post(sign_in))
//!     .layer(SessionLayer::new(store));
//! # use tower::ServiceExt;
//! # let response = app.oneshot(http::Request::get("/").body(axum::body::Body::empty())?).await?;
//! # assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! What a request costs is proportional to what its handler does with the
//! session: nothing if it never touches it, one indexed read to read it, one
//! write to change it. See [`layer`] for the way a request takes, [`Session`]
//! for the handle, and [`store`] for the storage contract.
//!
//! ## Safety by default
//!
//! * Tokens are 256 bits from the OS's CSPRNG; the store keeps only their
//!   SHA-256, compared in constant time.
//! * Cookies are `HttpOnly`, `SameSite=Lax`, `Secure` and `__Host-`
//!   prefixed unless you opt into development mode.
//! * Sign-in, sign-out and [`Session::regenerate`] always issue a new token.
//! * Unsafe requests that the browser marks as cross-origin are refused
//!   before any session work; forms can also carry a synchronizer token
//!   ([`csrf`]).
//! * Responses of signed-in sessions are `Cache-Control: no-store`.
//! * Requests that bring their own credentials (Basic, bearer) store
//!   nothing; revoking a token, a password or an account ends its sessions.
//! * Expired rows are purged in the background.
//! * A store failure answers `503`; a session is never silently replaced.
//! * Concurrent requests of one session keep each other's writes.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
//! [sqlx]: https://docs.rs/sqlx

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod auth;
mod auth_versions;
pub mod clock;
pub mod cnx;
pub mod config;
pub mod csrf;
mod error;
#[cfg(feature = "axum")]
pub mod extract;
pub mod layer;
mod response;
mod session;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod stack;
pub mod store;
#[cfg(feature = "test-client")]
pub mod testing;
pub mod token;
mod veto;

pub use admin::{PurgeTask, SessionAdmin};
pub use auth_versions::{AuthVersions, BoxError};
pub use config::{ConcurrentSessions, SessionConfig};
pub use error::Error;
pub use layer::SessionLayer;
pub use session::{
    EndReason, Identity, LiveEnd, Login, MAX_AUTH_METHOD_CHARS, MAX_DEVICE_CHARS,
    MAX_USER_ID_CHARS, Session, SessionEnded, SessionError, SessionEvent, SessionInfo,
};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use stack::KeycardLayer;
#[cfg(feature = "mysql")]
pub use store::MySqlStore;
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use token::SessionId;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
