//! [`Error`]: any of keycard's errors, for handlers and hooks that meet
//! more than one domain.

use http::StatusCode;

use crate::SessionError;
use crate::auth::AccountError;
use crate::cnx::CnxError;
use crate::response::plain_response;
use crate::store::StoreError;
use crate::veto::Veto;

/// Any of keycard's errors: each domain has its own type, and this one
/// converts from each, so a handler that uses its session, its
/// connection and the accounts returns `Result<_, keycard::Error>` and
/// uses `?` throughout.
///
/// It implements axum's `IntoResponse` with the status of the error it
/// holds (listed on each domain's variants) and a generic body; the
/// details go to the log, not to the client.
///
/// ```
/// use keycard::{Error, Session, SessionError};
///
/// async fn visit(session: Session) -> Result<String, Error> {
///     let n: u64 = session.get("visits").await?.unwrap_or(0);
///     session.insert("visits", n + 1).await?;
///     Ok(format!("visit {}", n + 1))
/// }
///
/// // A page of its own for one case, the default for the rest.
/// fn page(error: Error) -> (u16, String) {
///     match error {
///         Error::Session(SessionError::Conflict) => (409, "Reload the page.".into()),
///         other => (other.status().as_u16(), other.to_string()),
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session or its store.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The request's database connection.
    #[error(transparent)]
    Cnx(#[from] CnxError),
    /// An account, its password or its API tokens.
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Session(SessionError::Store(error))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Cnx(CnxError::Database(error))
    }
}

impl From<Veto> for Error {
    fn from(veto: Veto) -> Self {
        Error::Cnx(CnxError::Vetoed(veto))
    }
}

impl Error {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_body().0
    }

    /// The response a layer answers with when this error ends a request.
    pub(crate) fn to_response<B: From<&'static str>>(&self) -> http::Response<B> {
        let (status, body) = self.status_and_body();
        plain_response(status, body)
    }

    fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            Error::Session(error) => error.status_and_body(),
            Error::Cnx(error) => error.status_and_body(),
            Error::Account(error) => error.status_and_body(),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.status_and_body();
        tracing::warn!(error = %self, %status, "keycard: handler answered with an error");
        plain_response(status, body)
    }
}
