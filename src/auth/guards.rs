//! Guards: axum extractors that say who the user is and refuse requests
//! that may not go on.
//!
//! | extractor | gives | refuses with |
//! |---|---|---|
//! | [`CurrentUser`] | `Option<AuthUser>` | never (except a store failure: 503) |
//! | [`RequireUser`] | `AuthUser` | `401` + `WWW-Authenticate` for API clients, `303` to the login page for browsers |
//! | [`RequireAuthMethod<M>`] | `AuthUser` signed in by method `M` | as `RequireUser`, then `403` |
//! | [`RequirePermission<P>`] | `AuthUser` allowed `P` by [`Permissions`] | as `RequireUser`, then `403` |

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use crate::BoxError;

/// The method names keycard's retrievers record, for
/// [`Login::method`](crate::Login::method) and [`RequireAuthMethod`].
pub mod methods {
    /// A password typed into the application's own form (by convention:
    /// pass it to `Login::method` when a form sign-in succeeds).
    pub const PASSWORD: &str = "password";
    /// HTTP Basic ([`BasicAuth`](crate::auth::BasicAuth)).
    pub const BASIC: &str = "basic";
    /// A bearer API token ([`BearerAuth`](crate::auth::BearerAuth)).
    pub const BEARER: &str = "bearer";
    /// A trusted front proxy's header ([`TrustedHeader`](crate::auth::TrustedHeader)).
    pub const TRUSTED_HEADER: &str = "trusted-header";
}

/// The application's permission check, for [`RequirePermission`].
#[async_trait]
pub trait Permissions: Debug + Send + Sync + 'static {
    /// Whether `user` may do `permission`.
    async fn allowed(&self, user: &AuthUser, permission: &str) -> Result<bool, BoxError>;
}

/// What guards need from [`AuthLayer`](super::AuthLayer), put in each
/// request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct AuthSettings {
    pub(crate) login_url: String,
    pub(crate) permissions: Option<Arc<dyn Permissions>>,
    pub(crate) challenges: Vec<&'static str>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            login_url: "/login".to_owned(),
            permissions: None,
            challenges: Vec::new(),
        }
    }
}

/// The signed-in user of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthUser {
    /// The user id.
    pub id: String,
    /// How they signed in (see [`methods`]), if recorded.
    pub method: Option<String>,
    /// An API client's session.
    pub is_api: bool,
    /// Marks of the `authenticated` callback, when this request was
    /// authenticated by [`AuthLayer`](super::AuthLayer).
    pub marks: BTreeSet<String>,
}

/// The signed-in user, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser(pub Option<AuthUser>);

/// The signed-in user; refuses anonymous requests: API clients get `401`
/// with a `WWW-Authenticate` challenge, browsers a `303` to the login page
/// with `?next=` the page they asked for (always a path on this site, so it
/// cannot be turned into an open redirect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequireUser(pub AuthUser);

/// A method name for [`RequireAuthMethod`].
pub trait AuthMethodName: Send + Sync + 'static {
    /// The method, as recorded on the session.
    const NAME: &'static str;
}

/// Method markers for [`RequireAuthMethod`].
pub mod method {
    use super::AuthMethodName;

    /// [`methods::PASSWORD`](super::methods::PASSWORD).
    #[derive(Debug)]
    pub struct Password;
    impl AuthMethodName for Password {
        const NAME: &'static str = super::methods::PASSWORD;
    }

    /// [`methods::BASIC`](super::methods::BASIC).
    #[derive(Debug)]
    pub struct Basic;
    impl AuthMethodName for Basic {
        const NAME: &'static str = super::methods::BASIC;
    }

    /// [`methods::BEARER`](super::methods::BEARER).
    #[derive(Debug)]
    pub struct Bearer;
    impl AuthMethodName for Bearer {
        const NAME: &'static str = super::methods::BEARER;
    }

    /// [`methods::TRUSTED_HEADER`](super::methods::TRUSTED_HEADER).
    #[derive(Debug)]
    pub struct TrustedHeader;
    impl AuthMethodName for TrustedHeader {
        const NAME: &'static str = super::methods::TRUSTED_HEADER;
    }
}

/// The signed-in user, if they signed in by method `M`; `403` otherwise
/// ("only a password session may change the password").
///
/// ```
/// use keycard::auth::{RequireAuthMethod, method::Password};
///
/// async fn change_password(RequireAuthMethod(user, ..): RequireAuthMethod<Password>) -> String {
///     format!("{} may change their password", user.id)
/// }
/// ```
#[derive(Debug)]
pub struct RequireAuthMethod<M: AuthMethodName>(pub AuthUser, pub PhantomData<M>);

/// A permission name for [`RequirePermission`].
pub trait Permission: Send + Sync + 'static {
    /// The name the [`Permissions`] hook is asked about.
    const NAME: &'static str;
}

/// The signed-in user, if the application's [`Permissions`] allow them `P`;
/// `403` otherwise (and when no `Permissions` hook is installed).
#[derive(Debug)]
pub struct RequirePermission<P: Permission>(pub AuthUser, pub PhantomData<P>);

#[cfg(feature = "axum")]
mod extract {
    use std::marker::PhantomData;

    use axum::extract::FromRequestParts;
    use axum::response::{IntoResponse, Response};
    use http::header::{ACCEPT, AUTHORIZATION, LOCATION};
    use http::request::Parts;
    use http::{HeaderValue, StatusCode};

    use super::*;
    use crate::Session;
    use crate::auth::AuthInfo;
    use crate::extract::MissingSessionLayer;

    /// Why a guard refused the request.
    fn refuse(status: StatusCode, body: &'static str) -> Response {
        (status, [(http::header::CACHE_CONTROL, "no-store")], body).into_response()
    }

    async fn current_user(parts: &mut Parts) -> Result<Option<AuthUser>, Response> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| MissingSessionLayer.into_response())?;
        let Some(id) = session
            .user_id()
            .await
            .map_err(IntoResponse::into_response)?
        else {
            return Ok(None);
        };
        let method = session
            .auth_method()
            .await
            .map_err(IntoResponse::into_response)?;
        let is_api = session
            .is_api()
            .await
            .map_err(IntoResponse::into_response)?;
        let marks = parts
            .extensions
            .get::<AuthInfo>()
            .filter(|info| info.user_id == id)
            .map(|info| info.marks.clone())
            .unwrap_or_default();
        Ok(Some(AuthUser {
            id,
            method,
            is_api,
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

    /// The page asked for, as a path on this site: never `//host` or
    /// `/\host`, which browsers read as another site.
    fn next_target(parts: &Parts) -> Option<String> {
        let target = parts.uri.path_and_query()?.as_str();
        let local = target.starts_with('/')
            && !target.starts_with("//")
            && !target.starts_with("/\\")
            && !target.chars().any(char::is_control);
        local.then(|| target.to_owned())
    }

    fn not_signed_in(parts: &Parts) -> Response {
        let settings = settings(parts);
        if !is_browser(parts) {
            return crate::auth::layer::challenge(&settings.challenges);
        }
        let mut location = settings.login_url.clone();
        if let Some(next) = next_target(parts) {
            let encoded: String = url_encode(&next);
            location.push(if location.contains('?') { '&' } else { '?' });
            location.push_str("next=");
            location.push_str(&encoded);
        }
        match HeaderValue::try_from(location) {
            Ok(location) => {
                let mut response = refuse(StatusCode::SEE_OTHER, "Please sign in.\n");
                response.headers_mut().insert(LOCATION, location);
                response
            }
            Err(_) => refuse(StatusCode::UNAUTHORIZED, "Please sign in.\n"),
        }
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

    impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
            current_user(parts).await.map(CurrentUser)
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for RequireUser {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
            match current_user(parts).await? {
                Some(user) => Ok(RequireUser(user)),
                None => Err(not_signed_in(parts)),
            }
        }
    }

    impl<S: Send + Sync, M: AuthMethodName> FromRequestParts<S> for RequireAuthMethod<M> {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
            let RequireUser(user) = RequireUser::from_request_parts(parts, state).await?;
            if user.method.as_deref() != Some(M::NAME) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "This needs a sign-in by another method.\n",
                ));
            }
            Ok(RequireAuthMethod(user, PhantomData))
        }
    }

    impl<S: Send + Sync, P: Permission> FromRequestParts<S> for RequirePermission<P> {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
            let RequireUser(user) = RequireUser::from_request_parts(parts, state).await?;
            let Some(permissions) = settings(parts).permissions.clone() else {
                return Err(refuse(StatusCode::FORBIDDEN, "Forbidden.\n"));
            };
            match permissions.allowed(&user, P::NAME).await {
                Ok(true) => Ok(RequirePermission(user, PhantomData)),
                Ok(false) => Err(refuse(StatusCode::FORBIDDEN, "Forbidden.\n")),
                Err(error) => {
                    tracing::error!(%error, "keycard: permission check failed");
                    Err(refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The permission check is temporarily unavailable.\n",
                    ))
                }
            }
        }
    }
}
