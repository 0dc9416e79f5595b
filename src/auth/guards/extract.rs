//! The guards as axum extractors, and their rejection as a response.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, LOCATION};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::method::AuthMethodName;
use super::{
    AuthRejection, AuthUser, CurrentUser, Permission, ReauthenticationRequired, RequireAuthMethod,
    RequirePermission, RequireRecentAuth, SignInRequired,
};
use crate::Session;
use crate::auth::AuthInfo;
use crate::auth::settings::{AuthSettings, challenge};
use crate::extract::MissingSessionLayer;

mod signed_in;

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let refuse = |status: StatusCode, body: &'static str| {
            (status, [(CACHE_CONTROL, "no-store")], body).into_response()
        };
        match self {
            AuthRejection::SignInRequired(required) => required.into_response(),
            AuthRejection::WrongMethod { .. } => refuse(
                StatusCode::FORBIDDEN,
                "This needs a sign-in by another method.\n",
            ),
            AuthRejection::Forbidden { .. } => refuse(StatusCode::FORBIDDEN, "Forbidden.\n"),
            AuthRejection::ReauthenticationRequired(required) => {
                match required
                    .redirect
                    .and_then(|to| see_other(to, "Please confirm your sign-in.\n"))
                {
                    Some(redirect) => redirect,
                    None => refuse(StatusCode::FORBIDDEN, "This needs a recent sign-in.\n"),
                }
            }
            AuthRejection::PermissionCheckFailed => crate::response::plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The permission check is temporarily unavailable.\n",
            ),
            AuthRejection::Session(error) => error.into_response(),
            AuthRejection::MissingSessionLayer => MissingSessionLayer.into_response(),
            AuthRejection::UserUnavailable => crate::response::plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your account is temporarily unavailable. Please try again later.\n",
            ),
            AuthRejection::MissingUserLoader(missing) => missing.into_response(),
        }
    }
}

impl IntoResponse for SignInRequired {
    /// A `303` to the login page for a browser, a `401` with the
    /// `WWW-Authenticate` challenges for anyone else.
    fn into_response(self) -> Response {
        let Some(redirect) = self.redirect else {
            return challenge(&self.challenges);
        };
        see_other(redirect, "Please sign in.\n").unwrap_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                [(CACHE_CONTROL, "no-store")],
                "Please sign in.\n",
            )
                .into_response()
        })
    }
}

/// A `303` to `location`, never cached; `None` if `location` cannot be a
/// header value.
fn see_other(location: String, body: &'static str) -> Option<Response> {
    let location = HeaderValue::try_from(location).ok()?;
    let headers = [
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (LOCATION, location),
    ];
    Some((StatusCode::SEE_OTHER, headers, body).into_response())
}

/// The request's signed-in user, `None` while anonymous: one look at the
/// session.
async fn signed_in(parts: &Parts) -> Result<Option<AuthUser>, AuthRejection> {
    let session = parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or(AuthRejection::MissingSessionLayer)?;
    let Some(identity) = session.identity().await? else {
        return Ok(None);
    };
    let marks = parts
        .extensions
        .get::<AuthInfo>()
        .filter(|info| info.user_id == identity.user_id)
        .map(|info| info.marks.clone())
        .unwrap_or_default();
    Ok(Some(AuthUser {
        id: identity.user_id,
        method: identity.auth_method,
        is_api: identity.is_api,
        authenticated_at: identity.authenticated_at,
        marks,
    }))
}

fn settings(parts: &Parts) -> Arc<AuthSettings> {
    parts
        .extensions
        .get::<Arc<AuthSettings>>()
        .cloned()
        .unwrap_or_default()
}

/// Whether the client is a browser that should be sent to a login page
/// rather than be challenged.
fn is_browser(parts: &Parts) -> bool {
    let asks_html = parts
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    asks_html && !parts.headers.contains_key(AUTHORIZATION)
}

/// The page asked for, as a path on this site: never `//host` or `/\host`,
/// which browsers read as another site.
fn next_target(parts: &Parts) -> Option<String> {
    let target = parts.uri.path_and_query()?.as_str();
    let local = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.chars().any(char::is_control);
    local.then(|| target.to_owned())
}

/// Percent-encodes everything but unreserved characters and `/`.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `page` with `?next=` the page asked for (when it is one on this site),
/// for a browser; `None` for anyone else.
fn browser_redirect(parts: &Parts, page: &str, next: Option<&String>) -> Option<String> {
    is_browser(parts).then(|| {
        let mut location = page.to_owned();
        if let Some(next) = next {
            location.push(if location.contains('?') { '&' } else { '?' });
            location.push_str("next=");
            location.push_str(&url_encode(next));
        }
        location
    })
}

fn sign_in_required(parts: &Parts) -> AuthRejection {
    let settings = settings(parts);
    let next = next_target(parts);
    let redirect = browser_redirect(parts, &settings.login_url, next.as_ref());
    AuthRejection::SignInRequired(SignInRequired {
        redirect,
        challenges: settings.challenges.clone(),
        next,
    })
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AuthRejection> {
        match signed_in(parts).await? {
            Some(user) => Ok(CurrentUser(user)),
            None => Err(sign_in_required(parts)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, AuthRejection> {
        Ok(signed_in(parts).await?.map(CurrentUser))
    }
}

impl<S: Send + Sync, M: AuthMethodName> FromRequestParts<S> for RequireAuthMethod<M> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthRejection> {
        let CurrentUser(user) =
            <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.method.as_deref() != Some(M::NAME) {
            return Err(AuthRejection::WrongMethod { required: M::NAME });
        }
        Ok(RequireAuthMethod(user, PhantomData))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequireRecentAuth {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthRejection> {
        let CurrentUser(user) =
            <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let session = parts
            .extensions
            .get::<Session>()
            .ok_or(AuthRejection::MissingSessionLayer)?;
        let settings = settings(parts);
        let within =
            chrono::TimeDelta::from_std(settings.recent_auth).unwrap_or(chrono::TimeDelta::MAX);
        let now = session.now();
        let recent = !session.is_request_only()
            && user.method.as_deref() != Some(super::method::REMEMBERED)
            && user
                .authenticated_at
                .is_some_and(|at| now.signed_duration_since(at) <= within);
        if recent {
            return Ok(RequireRecentAuth(user));
        }
        let next = next_target(parts);
        let redirect = browser_redirect(parts, &settings.confirm_url, next.as_ref());
        Err(AuthRejection::ReauthenticationRequired(
            ReauthenticationRequired { redirect, next },
        ))
    }
}

impl<S: Send + Sync, P: Permission> FromRequestParts<S> for RequirePermission<P> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthRejection> {
        let CurrentUser(user) =
            <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let forbidden = AuthRejection::Forbidden {
            permission: P::NAME,
        };
        let Some(permissions) = settings(parts).permissions.clone() else {
            return Err(forbidden);
        };
        match permissions.allowed(&user, P::NAME).await {
            Ok(true) => Ok(RequirePermission(user, PhantomData)),
            Ok(false) => Err(forbidden),
            Err(error) => {
                tracing::error!(%error, "keycard: permission check failed");
                Err(AuthRejection::PermissionCheckFailed)
            }
        }
    }
}
