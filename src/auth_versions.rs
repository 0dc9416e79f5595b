//! [`AuthVersions`]: per-user credential versions that invalidate older
//! sessions.
//!
//! Ending a user's sessions on a password change
//! ([`SessionAdmin::end_sessions_of`](crate::SessionAdmin::end_sessions_of))
//! covers the store as it is. A credential version also covers the store as
//! it may become: a backup restored after the change brings the old rows
//! back, but their version is older than the user's, so they are refused.
//!
//! The application keeps the version (a counter column in its users table,
//! bumped on every credential change), passes it to
//! [`Login::auth_version`](crate::Login::auth_version) at sign-in, and tells
//! the layer how to read it:
//!
//! ```
//! use async_trait::async_trait;
//! use keycard::{AuthVersions, BoxError};
//!
//! #[derive(Debug)]
//! struct UsersTable; // e.g. holding a sqlx pool
//!
//! #[async_trait]
//! impl AuthVersions for UsersTable {
//!     async fn current(&self, user_id: &str) -> Result<Option<i64>, BoxError> {
//!         // SELECT auth_version FROM users WHERE id = $1
//!         Ok(Some(if user_id == "ada" { 2 } else { 1 }))
//!     }
//! }
//! ```

use std::fmt::Debug;

use async_trait::async_trait;

/// An error from application code, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The current credential version of each user. Installed with
/// [`SessionLayer::auth_versions`](crate::SessionLayer::auth_versions), it is
/// asked once per request that loads a signed-in session; a session whose
/// recorded version differs from the current one is refused (the request is
/// anonymous), and so is a versioned user's session that recorded no
/// version. A user for whom it answers `None` is not versioned.
///
/// If it fails, the request fails with `503`, as when the store fails.
#[async_trait]
pub trait AuthVersions: Debug + Send + Sync + 'static {
    /// The user's current credential version, if the user is versioned.
    async fn current(&self, user_id: &str) -> Result<Option<i64>, BoxError>;
}
