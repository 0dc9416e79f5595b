//! [`CnxError`]: what can go wrong with a request's database connection,
//! and the status each answers.

use http::StatusCode;

use crate::SessionError;
use crate::veto::Veto;

/// What can go wrong when a handler uses its [`Cnx`](super::Cnx).
///
/// Like [`SessionError`], it answers with the status each variant names
/// and a generic body; handlers may return it, or
/// [`keycard::Error`](crate::Error), with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CnxError {
    /// The application's database failed a query: the request's
    /// transaction rolls back. `500`.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A precommit operation, a `Commit` hook or
    /// [`Cnx::set_uncommitable`](super::Cnx::set_uncommitable) refused the
    /// transaction: it was rolled back. The veto's status (default `422`).
    #[error("the transaction was refused: {0}")]
    Vetoed(Veto),
    /// A [`Cnx`](super::Cnx) was used after its request ended (a clone kept
    /// in a spawned task, say): use an internal connection for work that
    /// outlives the request. `500`.
    #[error(
        "the request's database connection was used after the request ended; \
         use `CnxLayer::internal()` for work that outlives a request"
    )]
    Closed,
    /// Reading the session (the signed-in user, for row security) failed.
    /// The session error's status.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<Veto> for CnxError {
    fn from(veto: Veto) -> Self {
        CnxError::Vetoed(veto)
    }
}

impl CnxError {
    /// The status and generic body this error answers with.
    pub(crate) fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            CnxError::Vetoed(veto) => (veto.status(), "The change was refused.\n"),
            CnxError::Database(_) | CnxError::Closed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error.\n",
            ),
            CnxError::Session(error) => error.status_and_body(),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for CnxError {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.status_and_body();
        tracing::warn!(error = %self, %status, "keycard: handler answered with a connection error");
        crate::response::plain_response(status, body)
    }
}
