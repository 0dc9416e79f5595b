//! Testing an application's sign-in flows in a line or two (feature
//! `test-client`).
//!
//! [`TestClient`] is a browser for tests: it sends requests to your axum
//! `Router` (or any tower service) through `tower::ServiceExt`, keeps the
//! cookies in a [`CookieJar`] and sends them back, reads keycard's cookie
//! names in both cookie modes, computes the synchronizer token a page would
//! show, and restarts like a browser (session cookies gone, persistent
//! ones kept). [`TestClient::signed_in`] starts a test with a signed-in
//! session, without a sign-in form.
//!
//! Add it to your dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! keycard = { version = "0.1", features = ["test-client"] }
//! ```
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::{get, post}};
//! use keycard::csrf::CsrfForm;
//! use keycard::testing::TestClient;
//! use keycard::{Session, SessionLayer, SqliteStore};
//!
//! #[derive(serde::Deserialize)]
//! struct Note {
//!     text: String,
//! }
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let app = Router::new()
//!     .route("/login", post(|session: Session| async move {
//!         session.login("ada").await?;
//!         Ok::<_, keycard::Error>("in")
//!     }))
//!     .route("/note", post(|session: Session, CsrfForm(note): CsrfForm<Note>| async move {
//!         session.insert("note", note.text).await?;
//!         Ok::<_, keycard::Error>("saved")
//!     }))
//!     .route("/note", get(|session: Session| async move {
//!         Ok::<_, keycard::Error>(session.get::<String>("note").await?.unwrap_or_default())
//!     }))
//!     .layer(SessionLayer::new(store));
//!
//! let mut browser = TestClient::new(app);
//! assert_eq!(browser.post("/login").await.text(), "in");
//! let token = browser.csrf_token().expect("signed in");
//! let saved = browser
//!     .post_form("/note", &[("text", "hello"), ("csrf_token", &token)])
//!     .await;
//! assert_eq!(saved.text(), "saved");
//! assert_eq!(browser.get("/note").await.text(), "hello");
//!
//! // A forged post without the token is refused.
//! assert_eq!(browser.post_form("/note", &[("text", "x")]).await.status, 403);
//!
//! // After a browser restart the session cookies are gone.
//! browser.restart_browser();
//! assert_eq!(browser.get("/note").await.text(), "");
//! # Ok(()) }
//! ```

mod client;
mod jar;

pub use client::{TestClient, TestResponse};
pub use jar::CookieJar;
