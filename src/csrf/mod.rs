//! Synchronizer tokens: defence in depth against cross-site request
//! forgery, for browsers that send neither `Sec-Fetch-Site` nor `Origin`.
//!
//! [`SessionLayer`](crate::SessionLayer) already refuses unsafe requests
//! that a browser marks as cross-origin, before any session work (that is
//! what closes login CSRF, whose victim has no session yet). On top of it,
//! each stored session has a secret token, [`Session::csrf_token`](crate::Session::csrf_token), which
//! the application's own pages put in their forms (field [`FORM_FIELD`]) or
//! scripts in a header ([`HEADER`]). A page on another site cannot read it,
//! so it cannot forge a request that carries it.
//!
//! The layer does not buffer request bodies, so the check is where a route
//! opts in: [`CsrfForm<T>`] reads an `application/x-www-form-urlencoded`
//! body, checks the token and deserializes the rest into `T`;
//! [`CsrfHeader`] checks the header. Requests with no stored session pass
//! (there is no session to ride on), and so do requests signed in for the
//! request only by a bearer token (browsers do not send those on their
//! own). HTTP Basic is not exempt: browsers resend cached Basic credentials
//! by themselves, so a Basic request on a guarded route is refused.
//!
//! ```
//! use axum::{Router, response::Html, routing::{get, post}};
//! use keycard::csrf::{CsrfForm, FORM_FIELD};
//! use keycard::{Session, SessionLayer, SqliteStore};
//!
//! #[derive(serde::Deserialize)]
//! struct Note { text: String }
//!
//! async fn page(session: Session) -> Result<Html<String>, keycard::Error> {
//!     let token = session.csrf_token().await?.map(|t| t.as_str().to_owned()).unwrap_or_default();
//!     Ok(Html(format!(
//!         r#"<form method="post" action="/note">
//!              <input type="hidden" name="{FORM_FIELD}" value="{token}">
//!              <input name="text"><button>Save</button></form>"#
//!     )))
//! }
//!
//! async fn save(session: Session, CsrfForm(note): CsrfForm<Note>) -> Result<&'static str, keycard::Error> {
//!     session.insert("note", note.text).await?;
//!     Ok("saved")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let app: Router = Router::new()
//!     .route("/", get(page))
//!     .route("/note", post(save))
//!     .layer(SessionLayer::new(store));
//! # Ok(()) }
//! ```

pub use crate::token::CsrfToken;

/// The form field [`CsrfForm`] reads the token from.
pub const FORM_FIELD: &str = "csrf_token";

/// The request header [`CsrfHeader`] reads the token from.
pub const HEADER: &str = "x-csrf-token";

#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "axum")]
pub use extract::{CsrfForm, CsrfHeader, CsrfRejection};
