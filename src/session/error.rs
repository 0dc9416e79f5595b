//! [`SessionError`]: what can go wrong with a request's session, and the
//! status each answers.

use http::StatusCode;

use crate::response::plain_response;
use crate::store::StoreError;

/// What can go wrong when a handler uses its [`Session`](crate::Session),
/// or an administrator its [`SessionAdmin`](crate::SessionAdmin).
///
/// Handlers can return it with `?` (or return [`keycard::Error`](crate::Error),
/// which it converts into): it implements axum's `IntoResponse` with the
/// status each variant names and a generic body (details go to the log,
/// not to the client). Whatever the handler does with it, a request whose session could
/// not be loaded or saved is answered by the layer with that status anyway:
/// keycard never carries on with a silently replaced session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (database down, timeout, corrupt row). `503`.
    #[error("the session store failed: {0}")]
    Store(#[from] StoreError),
    /// The application's [`AuthVersions`](crate::AuthVersions) failed. `503`.
    #[error("reading the user's credential version failed: {0}")]
    AuthVersions(String),
    /// The session could not be loaded earlier in this request. `503`.
    #[error(
        "the session is unavailable because the store failed earlier in this request; \
         the layer answers 503"
    )]
    Unavailable,
    /// A stored value could not be read as the type the handler asked for.
    /// `500`.
    #[error("session value {key:?} does not have the requested type: {source}")]
    Deserialize {
        /// The key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON (e.g. a map with non-string
    /// keys). `500`.
    #[error("session value {key:?} cannot be stored as JSON: {source}")]
    Serialize {
        /// The key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// Another request ended this session, or signed it in again with a new
    /// token, while this one ran. This request's changes were dropped rather
    /// than bring the old session back. `409`.
    #[error(
        "the session was ended or given a new token by a concurrent request; \
         this request's session changes were dropped"
    )]
    Conflict,
    /// [`Session::login`](crate::Session::login) was given a user id or
    /// method that no store can hold (empty, or too long). Nothing changed.
    /// `400`.
    #[error("invalid login: {0}")]
    InvalidLogin(&'static str),
    /// A request signed in by its own credentials (HTTP Basic, a bearer
    /// token) for that request only has no stored session: values cannot be
    /// kept in it, and it cannot sign in or out. `400`.
    /// Store per-client state elsewhere, or wrap the retriever in
    /// [`StoredSession`](crate::auth::StoredSession) to give such clients a
    /// stored API session.
    #[error(
        "this request is signed in by its own credentials for this request only: its session \
         is not stored and cannot be changed"
    )]
    RequestOnly,
    /// A value would make the session's values larger than
    /// [`max_session_bytes`](crate::SessionLayer::max_session_bytes): it
    /// was not stored, and the session is unchanged. `413`.
    #[error("the session's values would exceed {limit} bytes")]
    TooLarge {
        /// The configured limit, in bytes of JSON.
        limit: usize,
    },
    /// The operating system could not supply random bytes for a token.
    /// `503`.
    #[error("the operating system's random number generator failed")]
    Randomness,
    /// A hook on this request's session events (a `CnxLayer` hook) failed
    /// or refused the change: the request's transaction rolled back. The
    /// status of the hook's error.
    #[error("a session hook failed: {source}")]
    Hook {
        /// The status the hook's error answers with.
        status: StatusCode,
        /// The hook's error.
        source: crate::BoxError,
    },
}

impl SessionError {
    /// The response a layer answers with when this error ends a request.
    pub(crate) fn to_response<B: From<&'static str>>(&self) -> http::Response<B> {
        let (status, body) = self.status_and_body();
        plain_response(status, body)
    }

    /// The status the layer answers with when this error ends a request, and
    /// the generic body it sends.
    pub(crate) fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            SessionError::Conflict => (
                StatusCode::CONFLICT,
                "Your session changed in another request. Please try again.\n",
            ),
            SessionError::InvalidLogin(_) => (StatusCode::BAD_REQUEST, "Invalid sign-in.\n"),
            SessionError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "This is more than the session can keep.\n",
            ),
            SessionError::RequestOnly => (
                StatusCode::BAD_REQUEST,
                "This request carries its own credentials and has no session to change.\n",
            ),
            SessionError::Hook { status, .. } => (*status, "The change was refused.\n"),
            SessionError::Deserialize { .. } | SessionError::Serialize { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error.\n",
            ),
            SessionError::Store(StoreError::UsedMeanwhile) => (
                StatusCode::CONFLICT,
                "This was used by another request meanwhile. Please try again.\n",
            ),
            SessionError::Store(_)
            | SessionError::AuthVersions(_)
            | SessionError::Unavailable
            | SessionError::Randomness => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The session service is temporarily unavailable. Please try again later.\n",
            ),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for SessionError {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.status_and_body();
        // The body is generic; the reason goes to the log.
        tracing::warn!(error = %self, %status, "keycard: handler answered with a session error");
        plain_response(status, body)
    }
}
