//! Authentication: who is making this request.
//!
//! * **Retrievers** ([`Retriever`]), tried in order, pull login information
//!   out of a request: HTTP Basic ([`BasicAuth`]), bearer API tokens
//!   ([`BearerAuth`]), a header set by a trusted front proxy
//!   ([`TrustedHeader`]), or the application's own. The session cookie is
//!   the first retriever of all: it is [`SessionLayer`](crate::SessionLayer)
//!   itself.
//! * **Authenticators** ([`Authenticator`]), registered at start-up and tried
//!   in order, turn credentials into a user id or an
//!   [`AuthenticationError`]: [`PasswordAuthenticator`] over keycard's
//!   optional users table (argon2id, lockout), [`ApiTokens`] for bearer
//!   tokens, or the application's own.
//! * **One-time tokens** ([`OneTimeTokens`]): sign-in links and password
//!   resets, single use, short-lived, dead after a password change.
//! * **Remember-me** ([`RememberMe`], [`Remember`]): a browser that asked
//!   is signed back in after a restart by a rotating token kept
//!   server-side; a copied cookie is noticed and ends every sign-in of the
//!   user.
//! * **A second factor** ([`SecondFactor`]): TOTP codes from an
//!   authenticator app, with single-use recovery codes. A right password
//!   for an account with one leaves the session half-open (see below).
//! * An **`authenticated` callback** can mark the request ("came through the
//!   trusted header") so that guards dispatch on it.
//! * **Guards** ([`CurrentUser`], `Option<CurrentUser>`,
//!   [`RequireAuthMethod`], [`RequirePermission`], [`RequireRecentAuth`])
//!   are axum extractors whose rejection, [`AuthRejection`], applications
//!   can match on and replace.
//!
//! **The application's own users.** Handlers that need the application's
//! user type rather than keycard's [`AuthUser`] (a row of its own users
//! table, say) register a [`UserLoader`] once with [`AuthLayer::users`] and
//! extract [`SignedIn<User>`](SignedIn) or `Option<SignedIn<User>>`. The
//! loader gets the user id the session carries (with
//! [`PasswordAuthenticator`], the canonical user name), runs at most once
//! per request, and a user it no longer finds is signed out;
//! `examples/own_users.rs` puts an existing table behind keycard this way.
//!
//! [`AuthLayer`] runs the retrievers and authenticators. It runs *inside*
//! `SessionLayer`, because a request that brings credentials is signed in
//! on its session: [`SessionLayer::with_auth`](crate::SessionLayer::with_auth)
//! stacks them that way (see [`KeycardLayer`](crate::KeycardLayer)); by
//! hand, add it before the session layer, as here:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use keycard::auth::{ApiTokens, AuthLayer, BasicAuth, BearerAuth, CurrentUser, PasswordAuthenticator};
//! use keycard::{SessionLayer, SqliteStore};
//!
//! async fn me(CurrentUser(user): CurrentUser) -> String {
//!     format!("hello {}", user.id)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! // The session layer first: the authenticators end sessions through it.
//! let sessions = SessionLayer::new(store.clone());
//! let passwords = PasswordAuthenticator::new(store.clone(), sessions.admin());
//! let tokens = ApiTokens::new(store, sessions.admin());
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(
//!         AuthLayer::new()
//!             .retriever(BasicAuth)
//!             .retriever(BearerAuth)
//!             .authenticator(passwords)
//!             .authenticator(tokens),
//!     )
//!     .layer(sessions);
//! # Ok(()) }
//! ```
//!
//! API clients send their credentials with every request. Each such request
//! is authenticated and signed in **for that request only**: handlers and
//! guards see the user, but no session row is written and no cookie is set,
//! so a thousand `curl` calls leave no trace in the sessions table. A
//! session cookie such a request brings is neither loaded nor changed, and
//! a handler that tries to change the session gets
//! [`SessionError::RequestOnly`](crate::SessionError::RequestOnly).
//!
//! Clients that send their credentials once and then carry the session
//! cookie (a tablet that syncs, say) opt in per retriever with [`StoredSession`]:
//! their sessions are stored API sessions ([`Login::api`](crate::Login::api)),
//! capped per user by
//! [`SessionLayer::api_sessions_per_user`](crate::SessionLayer::api_sessions_per_user),
//! and if the cookie a request brought belongs to somebody else, that
//! session is ended and a fresh one signed in, within the same request.
//! Credentials are read from headers only, never from the query string,
//! where they would end up in logs.
//!
//! Revoking an API token ([`ApiTokens::revoke`]) ends every session it
//! opened; disabling an account or changing its password through
//! [`PasswordAuthenticator`] ends the account's sessions.
//!
//! **A second factor.** Once an account has a confirmed TOTP enrolment
//! ([`SecondFactor::enrol_totp`], then [`SecondFactor::confirm_totp`] with
//! a first code), its password is only the first step: pass the user id
//! that [`PasswordAuthenticator::verify`] returned to
//! [`SecondFactor::sign_in`], which signs in an account without a second
//! factor and otherwise leaves the session **half-open**
//! ([`SignInStep::SecondFactorDue`]): a [`Pending`] sign-in kept as a
//! session value (under [`second_factor::PENDING_KEY`]), anonymous to every
//! guard and to [`Session::user_id`](crate::Session::user_id), which
//! expires after 5 minutes. [`SecondFactor::complete_with_totp`] (or
//! [`complete_with_recovery_code`](SecondFactor::complete_with_recovery_code))
//! signs in with a fresh token. Wrong codes count toward the password's
//! lockout; HTTP Basic, which cannot carry a code, is refused for such
//! accounts unless the application allows it
//! ([`PasswordAuthenticator::allow_basic_with_second_factor`]); API
//! clients use [`ApiTokens`].
//!
//! **Passkeys** (feature `passkeys`): [`Passkeys`] registers WebAuthn
//! credentials for a signed-in account and signs in with them, alone
//! (a passkey checks the user's presence and verification on the device,
//! so it is two factors in itself) or as the second factor of a password
//! sign-in. The ceremonies' state is kept in the session row, never in a
//! cookie.
//!
//! **Sudo mode.** What a thief with a stolen session must not do (change
//! the password, create an API token, sign out the owner's other devices)
//! takes [`RequireRecentAuth`]: a sign-in older than
//! [`AuthLayer::recent_auth_within`] (10 minutes by default) is sent to
//! confirm the password first, which [`PasswordAuthenticator::confirm`]
//! checks:
//!
//! ```
//! use axum::extract::{Form, State};
//! use axum::response::{IntoResponse, Redirect, Response};
//! use axum::{Router, routing::{get, post}};
//! use keycard::Session;
//! use keycard::auth::{AccountError, PasswordAuthenticator, RequireRecentAuth};
//!
//! // Behind the guard: only a recent sign-in gets here; an older one was
//! // sent to `/confirm?next=/tokens`.
//! async fn create_token(RequireRecentAuth(user): RequireRecentAuth) -> String {
//!     format!("a token for {}", user.id)
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Confirm {
//!     password: String,
//! }
//!
//! // `POST /confirm` (read `next` too, and redirect to it if it is a path
//! // on this site).
//! async fn confirm(
//!     State(passwords): State<PasswordAuthenticator>,
//!     session: Session,
//!     Form(form): Form<Confirm>,
//! ) -> Result<Response, keycard::Error> {
//!     match passwords.confirm(&session, &form.password).await {
//!         Ok(()) => Ok(Redirect::to("/tokens").into_response()),
//!         Err(AccountError::WrongPassword) => Ok("Wrong password.".into_response()),
//!         Err(other) => Err(other.into()),
//!     }
//! }
//!
//! fn routes(passwords: PasswordAuthenticator) -> Router {
//!     Router::new()
//!         .route("/tokens", get(create_token))
//!         .route("/confirm", post(confirm))
//!         .with_state(passwords)
//! }
//! ```

use std::fmt::Debug;
use std::net::IpAddr;

use async_trait::async_trait;
use http::{HeaderMap, Method, Uri};

mod error;
mod guards;
mod layer;
pub mod one_time;
#[cfg(feature = "passkeys")]
pub mod passkeys;
mod password;
pub mod remember;
mod retrievers;
pub mod second_factor;
mod settings;
mod tokens;
mod users;

pub use crate::store::LockoutPolicy;
pub use error::AccountError;
pub use guards::method::AuthMethodName;
pub use guards::{
    AuthRejection, AuthUser, CurrentUser, Permission, Permissions, ReauthenticationRequired,
    RequireAuthMethod, RequirePermission, RequireRecentAuth, SignInRequired, method,
};
pub use layer::{AuthInfo, AuthLayer, AuthService};
pub use one_time::OneTimeTokens;
#[cfg(feature = "passkeys")]
pub use passkeys::{PasskeyConfig, PasskeyConfigError, PasskeyInfo, PasskeyRegistered, Passkeys};
pub use password::PasswordAuthenticator;
pub use remember::{Remember, RememberMe, RememberedBrowser};
pub use retrievers::{BasicAuth, BearerAuth, StoredSession, TrustedHeader, TrustedProxyUsers};
pub use second_factor::{
    Factor, Factors, Pending, RecoveryCodes, SecondFactor, SignInStep, TotpEnrolment,
};
pub use tokens::{ApiTokens, NewToken};
pub use users::{MissingUserLoader, SignedIn, UserLoader};

/// What a retriever found: a login and password, a bearer token, a user
/// named by a trusted proxy, or something of the application's.
#[non_exhaustive]
pub enum Credentials {
    /// A login and password (HTTP Basic).
    Password {
        /// The user name as sent.
        login: String,
        /// The password as sent.
        password: String,
    },
    /// A bearer token (`Authorization: Bearer`).
    Bearer(String),
    /// A user named by a trusted front proxy, which authenticated them.
    TrustedUser(String),
    /// An application retriever's credentials, for its own authenticator.
    Custom(Box<dyn std::any::Any + Send + Sync>),
}

impl Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log through `Debug`.
        match self {
            Credentials::Password { login, .. } => f
                .debug_struct("Password")
                .field("login", login)
                .finish_non_exhaustive(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::TrustedUser(user) => f.debug_tuple("TrustedUser").field(user).finish(),
            Credentials::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The parts of a request a retriever may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's URI.
    pub uri: &'a Uri,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The TCP peer, if the server provides it (axum's `ConnectInfo`).
    pub peer: Option<IpAddr>,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`, whose TCP peer is `peer`.
    pub(crate) fn of<B>(request: &'a http::Request<B>, peer: Option<IpAddr>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            peer,
        }
    }
}

/// What a [`Retriever`] says of a request.
#[derive(Debug)]
pub enum Retrieved {
    /// Nothing for this retriever: try the next one.
    Nothing,
    /// Credentials, to be authenticated.
    Found(Credentials),
    /// Credentials this retriever is responsible for, but malformed: the
    /// request is answered `400 Bad Request` with this reason.
    Malformed(&'static str),
}

/// Pulls login information out of a request. Retrievers are tried in the
/// order they were added to [`AuthLayer`]; the first that finds something
/// wins.
pub trait Retriever: Debug + Send + Sync + 'static {
    /// The authentication method recorded on sessions signed in through this
    /// retriever (`"basic"`, `"bearer"`, `"trusted-header"`).
    fn method(&self) -> &'static str;

    /// Whether a session signed in through this retriever is an API
    /// client's (exempt from the per-user limit on human sessions). Default:
    /// yes.
    fn is_api(&self) -> bool {
        true
    }

    /// Whether a request signed in through this retriever gets a stored
    /// session (a row and cookies), rather than being signed in for that
    /// request only. Default: no. Credentials a client sends with every
    /// request need no session; wrap a retriever in [`StoredSession`] for
    /// clients that send them once and carry the cookie from then on.
    /// [`TrustedHeader`] says yes: its users are browsers.
    fn stores_session(&self) -> bool {
        false
    }

    /// Whether browsers send these credentials on their own, as they resend
    /// cached HTTP Basic credentials, so that a form forged by another site
    /// carries them. Such requests get no exemption from the synchronizer
    /// token check ([`CsrfForm`](crate::csrf::CsrfForm)), which a request
    /// signed in for itself by a bearer token or an API key header has.
    /// Default: no; [`BasicAuth`] says yes.
    fn sent_by_browsers(&self) -> bool {
        false
    }

    /// The `WWW-Authenticate` challenge scheme to offer in a `401`, if any.
    fn challenge(&self) -> Option<&'static str> {
        None
    }

    /// Looks at the request.
    fn retrieve(&self, request: &RequestHead<'_>) -> Retrieved;
}

/// A user an [`Authenticator`] accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The user id the session will carry.
    pub user_id: String,
    /// The credential that proved it, when it can be revoked on its own
    /// (an API token's `api-token:17`): recorded on stored sessions, which
    /// end when it is revoked.
    pub credential: Option<String>,
}

impl Authenticated {
    /// `user_id`, with no named credential.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            credential: None,
        }
    }

    /// Names the credential that proved it (see [`Authenticated::credential`]).
    pub fn with_credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }
}

/// Why an [`Authenticator`] did not accept credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationError {
    /// Not the kind of credentials this authenticator checks: the next one
    /// is tried.
    #[error("these credentials are for another authenticator")]
    NotMine,
    /// Wrong, unknown, disabled or locked: all the same to the client.
    #[error("authentication failed")]
    Rejected,
    /// The authenticator could not decide (its database is down). The
    /// request is answered `503` and no failure is counted.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// Turns credentials into a user. Registered on [`AuthLayer`] at start-up
/// and tried in order until one does not answer
/// [`NotMine`](AuthenticationError::NotMine).
#[async_trait]
pub trait Authenticator: Debug + Send + Sync + 'static {
    /// Checks the credentials.
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<Authenticated, AuthenticationError>;
}
