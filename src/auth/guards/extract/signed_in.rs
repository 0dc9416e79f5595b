//! [`SignedIn<U>`] as an axum extractor: the application's user, loaded
//! once per request by its [`UserLoader`](crate::auth::UserLoader).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CACHE_CONTROL;
use http::request::Parts;

use super::{settings, sign_in_required};
use crate::Session;
use crate::auth::{AuthRejection, MissingUserLoader, SignedIn};

/// The user loaded for this request, in its extensions: the next extractor
/// (or the handler after a middleware) asks the loader nothing. Keyed by
/// the user id, so that it is never taken for another user's.
#[derive(Clone)]
struct Loaded<U> {
    user_id: String,
    /// `None`: the loader said this user does not exist.
    user: Option<U>,
}

/// The signed-in user as a `U`, `None` while anonymous, or when the user no
/// longer exists (the session is then signed out).
async fn app_user<U>(parts: &mut Parts) -> Result<Option<U>, AuthRejection>
where
    U: Clone + Send + Sync + 'static,
{
    // The wiring first, so that the mistake shows on the very first
    // request, anonymous or not.
    let settings = settings(parts);
    let registered = settings.users.as_ref();
    let Some(loader) = registered.and_then(|users| users.loader::<U>()) else {
        let missing = MissingUserLoader::new::<U>(registered.map(|users| users.user_type()));
        return Err(AuthRejection::MissingUserLoader(missing));
    };
    let session = parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or(AuthRejection::MissingSessionLayer)?;
    let Some(identity) = session.identity().await? else {
        return Ok(None);
    };
    if let Some(loaded) = parts.extensions.get::<Loaded<U>>()
        && loaded.user_id == identity.user_id
    {
        return Ok(loaded.user.clone());
    }
    let user = match loader.load_user(&identity.user_id).await {
        Ok(user) => user,
        Err(error) => {
            // The cause stays in the log; the client learns only to retry.
            tracing::error!(%error, user = %identity.user_id, "keycard: loading the signed-in user failed");
            return Err(AuthRejection::UserUnavailable);
        }
    };
    if user.is_none() {
        // A deleted account: its session must not outlive it. A request
        // signed in by its own credentials has no session to end.
        tracing::info!(user = %identity.user_id, "keycard: signed-in user no longer exists; signed out");
        if !session.is_request_only() {
            session.logout().await?;
        }
    }
    parts.extensions.insert(Loaded {
        user_id: identity.user_id,
        user: user.clone(),
    });
    Ok(user)
}

impl<S, U> FromRequestParts<S> for SignedIn<U>
where
    S: Send + Sync,
    U: Clone + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AuthRejection> {
        match app_user::<U>(parts).await? {
            Some(user) => Ok(SignedIn(user)),
            None => Err(sign_in_required(parts)),
        }
    }
}

impl<S, U> OptionalFromRequestParts<S> for SignedIn<U>
where
    S: Send + Sync,
    U: Clone + Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, AuthRejection> {
        Ok(app_user::<U>(parts).await?.map(SignedIn))
    }
}

impl IntoResponse for MissingUserLoader {
    /// `500` with the message, which names the fix: a wiring mistake that
    /// the developer sees on the first request.
    fn into_response(self) -> Response {
        tracing::error!("keycard: {self}");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CACHE_CONTROL, "no-store")],
            format!("{self}\n"),
        )
            .into_response()
    }
}
