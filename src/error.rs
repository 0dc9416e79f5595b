//! keycard's [`Error`] type, and how each error becomes a response.

use http::StatusCode;

use crate::store::StoreError;

/// What can go wrong when a handler uses its [`Session`](crate::Session).
///
/// Handlers can return it with `?`: it implements axum's `IntoResponse` with
/// a status that fits and a generic body (details go to the log, not to the
/// client). Whatever the handler does with it, a request whose session could
/// not be loaded or saved is answered by the layer with that status anyway:
/// keycard never carries on with a silently replaced session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (database down, timeout, corrupt row).
    #[error("the session store failed: {0}")]
    Store(#[from] StoreError),
    /// The application's [`AuthVersions`](crate::AuthVersions) failed.
    #[error("reading the user's credential version failed: {0}")]
    AuthVersions(String),
    /// The session could not be loaded earlier in this request.
    #[error(
        "the session is unavailable because the store failed earlier in this request; \
         the layer answers 503"
    )]
    Unavailable,
    /// A stored value could not be read as the type the handler asked for.
    #[error("session value {key:?} does not have the requested type: {source}")]
    Deserialize {
        /// The key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON (e.g. a map with non-string keys).
    #[error("session value {key:?} cannot be stored as JSON: {source}")]
    Serialize {
        /// The key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// Another request ended this session, or signed it in again with a new
    /// token, while this one ran. This request's changes were dropped rather
    /// than bring the old session back; the layer answers 409.
    #[error(
        "the session was ended or given a new token by a concurrent request; \
         this request's session changes were dropped"
    )]
    Conflict,
    /// [`Session::login`](crate::Session::login) was given a user id or
    /// method that no store can hold (empty, or too long). Nothing changed.
    #[error("invalid login: {0}")]
    InvalidLogin(&'static str),
    /// A request signed in by its own credentials (HTTP Basic, a bearer
    /// token) for that request only has no stored session: values cannot be
    /// kept in it, and it cannot sign in or out. The layer answers 400.
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
    /// was not stored, and the session is unchanged. Answered `413`.
    #[error("the session's values would exceed {limit} bytes")]
    TooLarge {
        /// The configured limit, in bytes of JSON.
        limit: usize,
    },
    /// The operating system could not supply random bytes for a token.
    #[error("the operating system's random number generator failed")]
    Randomness,
    /// The application's database failed a query run through a
    /// [`Cnx`](crate::cnx::Cnx): the request's transaction rolls back.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A precommit operation, a `Commit` hook or
    /// [`Cnx::set_uncommitable`](crate::cnx::Cnx::set_uncommitable) refused
    /// the transaction: it was rolled back, and the response has the veto's
    /// status.
    #[error("the transaction was refused: {0}")]
    Vetoed(crate::veto::Veto),
    /// A [`Cnx`](crate::cnx::Cnx) was used after its request ended (a clone
    /// kept in a spawned task, say): use an internal connection for work
    /// that outlives the request.
    #[error(
        "the request's database connection was used after the request ended; \
         use `CnxLayer::internal()` for work that outlives a request"
    )]
    ConnectionClosed,
}

/// A plain-text response that no cache keeps: how keycard's layers answer
/// for themselves.
pub(crate) fn plain_response<B: From<&'static str>>(
    status: StatusCode,
    body: &'static str,
) -> http::Response<B> {
    let mut response = http::Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(http::header::RETRY_AFTER, RETRY_AFTER);
    }
    response
}

/// How long a client is asked to wait after a `503`: the database was busy
/// or away for a moment; a retry soon is likely to work.
const RETRY_AFTER: http::HeaderValue = http::HeaderValue::from_static("2");

impl Error {
    /// The response a layer answers with when this error ends a request.
    pub(crate) fn to_response<B: From<&'static str>>(&self) -> http::Response<B> {
        let (status, body) = self.status_and_body();
        plain_response(status, body)
    }

    /// The status the layer answers with when this error ends a request, and
    /// the generic body it sends.
    pub(crate) fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Conflict => (
                StatusCode::CONFLICT,
                "Your session changed in another request. Please try again.\n",
            ),
            Error::InvalidLogin(_) => (StatusCode::BAD_REQUEST, "Invalid sign-in.\n"),
            Error::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "This is more than the session can keep.\n",
            ),
            Error::RequestOnly => (
                StatusCode::BAD_REQUEST,
                "This request carries its own credentials and has no session to change.\n",
            ),
            Error::Vetoed(veto) => (veto.status(), "The change was refused.\n"),
            Error::Deserialize { .. }
            | Error::Serialize { .. }
            | Error::Database(_)
            | Error::ConnectionClosed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error.\n",
            ),
            Error::Store(_) | Error::AuthVersions(_) | Error::Unavailable | Error::Randomness => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The session service is temporarily unavailable. Please try again later.\n",
            ),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.status_and_body();
        // The body is generic; the reason goes to the log.
        tracing::warn!(error = %self, %status, "keycard: handler answered with a session error");
        plain_response(status, body)
    }
}
