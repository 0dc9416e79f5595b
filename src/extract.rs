//! axum extractors.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Session;

/// The rejection of the [`Session`] extractor: the handler's router has no
/// [`SessionLayer`](crate::SessionLayer) around it.
#[derive(Debug, thiserror::Error)]
#[error(
    "`Session` extractor used without `SessionLayer`: add `.layer(SessionLayer::new(store))` \
     to the router (after the routes that use sessions)"
)]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// The rejection of the [`Cnx`](crate::cnx::Cnx) extractor: the handler's
/// router has no [`CnxLayer`](crate::cnx::CnxLayer) for this database
/// around it.
#[derive(Debug, thiserror::Error)]
#[error(
    "`Cnx` extractor used without `CnxLayer` of the same database: add \
     `.layer(CnxLayer::new(pool))` to the router, after `SessionLayer`"
)]
pub struct MissingCnxLayer;
impl IntoResponse for MissingCnxLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
impl<S: Send + Sync, DB: crate::cnx::CnxDatabase> FromRequestParts<S> for crate::cnx::Cnx<DB> {
    type Rejection = MissingCnxLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingCnxLayer)
    }
}
