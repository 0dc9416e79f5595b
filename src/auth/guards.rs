//! Guards: axum extractors that say who the user is and refuse requests
//! that may not go on, with a typed rejection ([`AuthRejection`]) that
//! applications can match on and replace.
//!
//! | extractor | gives | refuses with |
//! |---|---|---|
//! | [`CurrentUser`] | the signed-in [`AuthUser`] | [`AuthRejection::SignInRequired`]: `401` + `WWW-Authenticate` for API clients, `303` to the login page for browsers |
//! | `Option<CurrentUser>` | the user, or `None` while anonymous | only a store failure ([`AuthRejection::Session`], `503`) |
//! | [`RequireAuthMethod<M>`] | the user, signed in by method `M` | as `CurrentUser`, then [`AuthRejection::WrongMethod`] (`403`) |
//! | [`RequirePermission<P>`] | the user, allowed `P` by [`Permissions`] | as `CurrentUser`, then [`AuthRejection::Forbidden`] (`403`) |
//! | [`SignedIn<U>`](super::SignedIn) | the application's own user, from its [`UserLoader`](super::UserLoader) | as `CurrentUser`; [`AuthRejection::UserUnavailable`] (`503`) if the loader fails |
//!
//! A custom sign-in page instead of the redirect, or JSON for an API:
//!
//! ```
//! use axum::response::{IntoResponse, Response};
//! use keycard::auth::{AuthRejection, CurrentUser};
//!
//! async fn me(user: Result<CurrentUser, AuthRejection>) -> Response {
//!     match user {
//!         Ok(CurrentUser(user)) => format!("hello {}", user.id).into_response(),
//!         Err(AuthRejection::SignInRequired(_)) => {
//!             (http::StatusCode::UNAUTHORIZED, "{\"error\":\"sign in first\"}").into_response()
//!         }
//!         Err(other) => other.into_response(),
//!     }
//! }
//! ```

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::marker::PhantomData;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::BoxError;

/// Authentication methods: the names keycard's retrievers record (for
/// [`Login::method`](crate::Login::method)), and marker types naming them
/// for [`RequireAuthMethod`].
pub mod method {
    /// A method name, for [`RequireAuthMethod`](super::RequireAuthMethod).
    pub trait AuthMethodName: Send + Sync + 'static {
        /// The method, as recorded on the session.
        const NAME: &'static str;
    }

    /// A password typed into the application's own form (by convention:
    /// pass it to `Login::method` when a form sign-in succeeds).
    pub const PASSWORD: &str = "password";
    /// HTTP Basic ([`BasicAuth`](crate::auth::BasicAuth)).
    pub const BASIC: &str = "basic";
    /// A bearer API token ([`BearerAuth`](crate::auth::BearerAuth)).
    pub const BEARER: &str = "bearer";
    /// A trusted front proxy's header ([`TrustedHeader`](crate::auth::TrustedHeader)).
    pub const TRUSTED_HEADER: &str = "trusted-header";
    /// A one-time sign-in link ([`OneTimeTokens::sign_in`](crate::auth::OneTimeTokens::sign_in)).
    pub const LINK: &str = "link";
    /// A sign-in restored from a remembered browser
    /// ([`RememberMe`](crate::auth::RememberMe)); never recent.
    pub const REMEMBERED: &str = "remember";

    /// A password and then a TOTP code
    /// ([`SecondFactor::complete_with_totp`](crate::auth::SecondFactor::complete_with_totp)).
    pub const TOTP: &str = "totp";
    /// A password and then a recovery code
    /// ([`SecondFactor::complete_with_recovery_code`](crate::auth::SecondFactor::complete_with_recovery_code)).
    pub const RECOVERY_CODE: &str = "recovery-code";
    /// A passkey alone, which verified the user on the device
    /// (`Passkeys::finish_sign_in`, feature `passkeys`).
    pub const PASSKEY: &str = "passkey";
    /// A password and then a passkey
    /// (`Passkeys::complete_second_factor`, feature `passkeys`).
    pub const PASSWORD_AND_PASSKEY: &str = "password-passkey";

    /// Marks [`PASSWORD`].
    #[derive(Debug)]
    pub struct Password;
    impl AuthMethodName for Password {
        const NAME: &'static str = PASSWORD;
    }

    /// Marks [`BASIC`].
    #[derive(Debug)]
    pub struct Basic;
    impl AuthMethodName for Basic {
        const NAME: &'static str = BASIC;
    }

    /// Marks [`BEARER`].
    #[derive(Debug)]
    pub struct Bearer;
    impl AuthMethodName for Bearer {
        const NAME: &'static str = BEARER;
    }

    /// Marks [`TRUSTED_HEADER`] (a user named by a trusted proxy).
    #[derive(Debug)]
    pub struct TrustedProxy;
    impl AuthMethodName for TrustedProxy {
        const NAME: &'static str = TRUSTED_HEADER;
    }

    /// Marks [`TOTP`].
    #[derive(Debug)]
    pub struct Totp;
    impl AuthMethodName for Totp {
        const NAME: &'static str = TOTP;
    }

    /// Marks [`RECOVERY_CODE`].
    #[derive(Debug)]
    pub struct RecoveryCode;
    impl AuthMethodName for RecoveryCode {
        const NAME: &'static str = RECOVERY_CODE;
    }
}

use method::AuthMethodName;

/// The application's permission check, for [`RequirePermission`].
#[async_trait]
pub trait Permissions: Debug + Send + Sync + 'static {
    /// Whether `user` may do `permission`.
    async fn allowed(&self, user: &AuthUser, permission: &str) -> Result<bool, BoxError>;
}

/// The signed-in user of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthUser {
    /// The user id.
    pub id: String,
    /// How they signed in (see [`method`]), if recorded.
    pub method: Option<String>,
    /// An API client's session.
    pub is_api: bool,
    /// When they signed in.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// Marks of the `authenticated` callback, when this request was
    /// authenticated by [`AuthLayer`](super::AuthLayer).
    pub marks: BTreeSet<String>,
}

/// The signed-in user. As `CurrentUser` it refuses anonymous requests
/// (browsers get a `303` to the login page with `?next=` the page they
/// asked for, always a path on this site so it cannot become an open
/// redirect; API clients a `401` with a `WWW-Authenticate` challenge for
/// each retriever's scheme, or `Cookie realm="keycard"` when there is none,
/// a scheme no browser opens a password dialog for); as
/// `Option<CurrentUser>` it is `None` for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser(pub AuthUser);

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

/// How long a sign-in counts as recent by default for [`RequireRecentAuth`].
pub(crate) const DEFAULT_RECENT_AUTH: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The signed-in user, if they proved a credential recently ("sudo
/// mode"): within [`AuthLayer::recent_auth_within`](super::AuthLayer::recent_auth_within)
/// (default 10 minutes) of their sign-in or of its last confirmation
/// ([`Session::reauthenticated`](crate::Session::reauthenticated),
/// [`PasswordAuthenticator::confirm`](super::PasswordAuthenticator::confirm)).
/// Put it on what an attacker with a stolen session must not do: change
/// the password or e-mail, create an API token, sign out every other
/// device.
///
/// Anonymous requests are refused as by [`CurrentUser`]; an older sign-in
/// gets [`AuthRejection::ReauthenticationRequired`]: a `303` to the
/// confirmation page (`/confirm?next=…`, see
/// [`AuthLayer::confirm_url`](super::AuthLayer::confirm_url)) for a
/// browser, a `403` for anyone else. A request signed in by its own
/// credentials for itself only (HTTP Basic, a bearer token) never counts
/// as recent: it carries no interactive proof. Nor does a sign-in restored
/// from a remembered browser ([`method::REMEMBERED`]) until the user
/// confirms it.
///
/// ```
/// use keycard::auth::RequireRecentAuth;
///
/// async fn create_token(RequireRecentAuth(user): RequireRecentAuth) -> String {
///     format!("a new token for {}", user.id)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequireRecentAuth(pub AuthUser);

/// A permission name for [`RequirePermission`].
pub trait Permission: Send + Sync + 'static {
    /// The name the [`Permissions`] hook is asked about.
    const NAME: &'static str;
}

/// The signed-in user, if the application's [`Permissions`] allow them `P`;
/// `403` otherwise (and when no `Permissions` hook is installed).
#[derive(Debug)]
pub struct RequirePermission<P: Permission>(pub AuthUser, pub PhantomData<P>);

/// Why a guard refused a request. Its `IntoResponse` is keycard's answer;
/// match on it to answer your own way (a sign-in page of your own, JSON).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// Nobody is signed in.
    #[error("nobody is signed in")]
    SignInRequired(SignInRequired),
    /// Signed in, but not by the method the route needs: `403`.
    #[error("this needs a sign-in by {required}")]
    WrongMethod {
        /// The method the route needs.
        required: &'static str,
    },
    /// The [`Permissions`] hook refused (or none is installed): `403`.
    #[error("permission {permission:?} refused")]
    Forbidden {
        /// The permission asked for.
        permission: &'static str,
    },
    /// Signed in, but not recently enough for [`RequireRecentAuth`]: a
    /// `303` to the confirmation page for a browser, `403` otherwise.
    #[error("this needs a recent sign-in")]
    ReauthenticationRequired(ReauthenticationRequired),
    /// The [`Permissions`] hook failed: `503`.
    #[error("the permission check failed")]
    PermissionCheckFailed,
    /// The session could not be read: its error's status (`503`).
    #[error(transparent)]
    Session(#[from] crate::SessionError),
    /// The router has no [`SessionLayer`](crate::SessionLayer): `500`.
    #[error("guard used without `SessionLayer`")]
    MissingSessionLayer,
    /// The application's [`UserLoader`](super::UserLoader) failed (its
    /// database is away): `503`, and the session is left as it is.
    #[error("loading the signed-in user failed")]
    UserUnavailable,
    /// [`SignedIn<U>`](super::SignedIn) is used, but no
    /// [`UserLoader`](super::UserLoader) of `U` is registered: `500`.
    #[error(transparent)]
    MissingUserLoader(super::MissingUserLoader),
}

/// What [`AuthRejection::SignInRequired`] knows to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInRequired {
    /// For a browser: where to send it (the login page, with `next`).
    redirect: Option<String>,
    /// For an API client: the `WWW-Authenticate` schemes on offer.
    challenges: Vec<&'static str>,
    /// The page asked for, when it is a path on this site.
    next: Option<String>,
}

impl SignInRequired {
    /// Whether the client is a browser (it asked for HTML and sent no
    /// credentials), which keycard sends to the login page.
    pub fn is_browser(&self) -> bool {
        self.redirect.is_some()
    }

    /// The login page with `?next=`, for a browser.
    pub fn redirect(&self) -> Option<&str> {
        self.redirect.as_deref()
    }

    /// The page the client asked for, when it is a path on this site (safe
    /// to redirect back to after sign-in).
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref()
    }
}

/// What [`AuthRejection::ReauthenticationRequired`] knows to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReauthenticationRequired {
    /// For a browser: the confirmation page, with `next`.
    redirect: Option<String>,
    /// The page asked for, when it is a path on this site.
    next: Option<String>,
}

impl ReauthenticationRequired {
    /// The confirmation page with `?next=`, for a browser.
    pub fn redirect(&self) -> Option<&str> {
        self.redirect.as_deref()
    }

    /// The page the client asked for, when it is a path on this site (safe
    /// to redirect back to after the confirmation).
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref()
    }
}

#[cfg(feature = "axum")]
mod extract;
