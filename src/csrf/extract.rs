//! [`CsrfForm`] and [`CsrfHeader`]: axum extractors that check the
//! session's synchronizer token.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, StatusCode, header};
use serde::de::DeserializeOwned;

use super::{FORM_FIELD, HEADER};
use crate::Session;
use crate::extract::MissingSessionLayer;

/// Why [`CsrfForm`] or [`CsrfHeader`] refused a request. Match on it to
/// render your own page; its `IntoResponse` gives a plain-text one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// The token is missing, wrong, or of another (or an older) session:
    /// `403 Forbidden`.
    #[error("the synchronizer token is missing or wrong")]
    TokenMismatch,
    /// The router has no [`SessionLayer`](crate::SessionLayer): `500`.
    #[error(transparent)]
    MissingSessionLayer(#[from] MissingSessionLayer),
    /// The session could not be loaded: the layer answers `503` anyway.
    #[error(transparent)]
    Session(#[from] crate::SessionError),
    /// The body is not `application/x-www-form-urlencoded`: `415`.
    #[error("the request body is not a form")]
    NotAForm,
    /// The body could not be read (too large, say): its own status.
    #[error(transparent)]
    Body(#[from] BytesRejection),
    /// The form does not have the fields the handler expects: `400`.
    #[error("invalid form: {0}")]
    InvalidForm(String),
}

impl IntoResponse for CsrfRejection {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            CsrfRejection::TokenMismatch => (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site. Reload the page and \
                 try again.\n",
            ),
            CsrfRejection::MissingSessionLayer(missing) => return missing.into_response(),
            CsrfRejection::Session(error) => return error.into_response(),
            CsrfRejection::Body(rejection) => return rejection.into_response(),
            CsrfRejection::NotAForm => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected an application/x-www-form-urlencoded form.\n",
            ),
            CsrfRejection::InvalidForm(_) => (StatusCode::BAD_REQUEST, "Invalid form.\n"),
        };
        (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

fn session(extensions: &http::Extensions) -> Result<Session, CsrfRejection> {
    Ok(extensions
        .get::<Session>()
        .cloned()
        .ok_or(MissingSessionLayer)?)
}

async fn verify(session: &Session, presented: Option<&str>) -> Result<(), CsrfRejection> {
    if session.verify_csrf(presented).await? {
        Ok(())
    } else {
        Err(CsrfRejection::TokenMismatch)
    }
}

/// A form body whose [`FORM_FIELD`] carries the session's synchronizer
/// token; the other fields are deserialized into `T` (which may ignore the
/// token field: serde skips unknown fields unless told otherwise). Safe
/// methods are not checked. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CsrfForm<T> {
    type Rejection = CsrfRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, CsrfRejection> {
        let session = session(request.extensions())?;
        let method = request.method().clone();
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let bytes = Bytes::from_request(request, state).await?;
        if !is_safe(&method) {
            if !is_form {
                return Err(CsrfRejection::NotAForm);
            }
            let mut tokens = form_urlencoded::parse(&bytes)
                .filter(|(name, _)| name == FORM_FIELD)
                .map(|(_, value)| value);
            // A second, different token is no token.
            let presented = match (tokens.next(), tokens.next()) {
                (Some(first), None) => Some(first),
                (Some(first), Some(second)) if first == second => Some(first),
                _ => None,
            };
            verify(&session, presented.as_deref()).await?;
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|error| CsrfRejection::InvalidForm(error.to_string()))
    }
}

/// Checks the session's synchronizer token in the [`HEADER`] request
/// header, for scripts (`fetch` with `X-CSRF-Token`). Safe methods are not
/// checked. See the [module docs](super).
#[derive(Debug, Clone, Copy)]
pub struct CsrfHeader;

impl<S: Send + Sync> FromRequestParts<S> for CsrfHeader {
    type Rejection = CsrfRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, CsrfRejection> {
        if is_safe(&parts.method) {
            return Ok(CsrfHeader);
        }
        let session = session(&parts.extensions)?;
        let mut values = parts.headers.get_all(HEADER).iter();
        let presented = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        };
        verify(&session, presented).await?;
        Ok(CsrfHeader)
    }
}
