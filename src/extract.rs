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
