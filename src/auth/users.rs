//! The application's own user type: [`UserLoader`] loads it by keycard's
//! user id, [`SignedIn`] hands it to handlers, once per request.

use std::any::{Any, type_name};
use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;

use crate::BoxError;

/// Loads the application's own user by the user id keycard's session
/// carries. Registered once, at start-up, with
/// [`AuthLayer::users`](super::AuthLayer::users); the [`SignedIn`]
/// extractor then gives handlers the application's user instead of
/// keycard's [`AuthUser`](super::AuthUser).
///
/// `id` is what the session was signed in with:
/// [`Login::new`](crate::Login::new)'s user id, or
/// [`Authenticated::user_id`](super::Authenticated::user_id) for a request
/// an [`Authenticator`](super::Authenticator) signed in. With
/// [`PasswordAuthenticator`](super::PasswordAuthenticator) it is the
/// account's canonical user name
/// ([`canonical_username`](super::PasswordAuthenticator::canonical_username):
/// trimmed, NFKC, lower case), so a loader over another table looks the
/// user up by that name.
///
/// Answer `Ok(None)` for a user who no longer exists (a deleted account):
/// the session is then signed out and the request answered as anonymous.
/// An `Err` (the database is away) answers `503` and leaves the session as
/// it is. `id` comes from a signed-in session, but treat it as input: a
/// malformed one is a user that does not exist, not a panic.
///
/// ```
/// use keycard::BoxError;
/// use keycard::auth::UserLoader;
///
/// #[derive(Clone, Debug)]
/// struct User {
///     id: i64,
///     name: String,
/// }
///
/// #[derive(Clone, Debug)]
/// struct Users(sqlx::SqlitePool);
///
/// #[async_trait::async_trait]
/// impl UserLoader for Users {
///     type User = User;
///
///     async fn load_user(&self, id: &str) -> Result<Option<User>, BoxError> {
///         let Ok(id) = id.parse::<i64>() else {
///             return Ok(None);
///         };
///         let name: Option<String> = sqlx::query_scalar("SELECT name FROM app_users WHERE id = ?")
///             .bind(id)
///             .fetch_optional(&self.0)
///             .await?;
///         Ok(name.map(|name| User { id, name }))
///     }
/// }
/// ```
#[async_trait]
pub trait UserLoader: Debug + Send + Sync + 'static {
    /// The application's user.
    type User: Clone + Send + Sync + 'static;

    /// The user whose keycard user id is `id`, `None` if there is none.
    async fn load_user(&self, id: &str) -> Result<Option<Self::User>, BoxError>;
}

/// The signed-in user as the application's own type `U`, loaded by the
/// [`UserLoader`] registered with [`AuthLayer::users`](super::AuthLayer::users).
///
/// It refuses anonymous requests as [`CurrentUser`](super::CurrentUser)
/// does ([`AuthRejection::SignInRequired`](super::AuthRejection::SignInRequired):
/// browsers get a `303` to the login page with `?next=`, API clients a
/// `401`); `Option<SignedIn<U>>` is `None` for them. The user is loaded at
/// most once per request, however many extractors (and middleware) ask.
/// A session whose user no longer loads (the loader answered `Ok(None)`)
/// is signed out and the request treated as anonymous; a loader error
/// answers `503` ([`AuthRejection::UserUnavailable`](super::AuthRejection::UserUnavailable)).
/// Without a loader for `U`, it answers `500` and logs which registration
/// is missing ([`AuthRejection::MissingUserLoader`](super::AuthRejection::MissingUserLoader)).
///
/// ```
/// use axum::{Router, routing::get};
/// use keycard::BoxError;
/// use keycard::auth::{AuthLayer, SignedIn, UserLoader};
/// use keycard::{SessionLayer, SqliteStore};
///
/// #[derive(Clone, Debug)]
/// struct User {
///     name: String,
/// }
///
/// #[derive(Debug)]
/// struct Users;
///
/// #[async_trait::async_trait]
/// impl UserLoader for Users {
///     type User = User;
///
///     async fn load_user(&self, id: &str) -> Result<Option<User>, BoxError> {
///         Ok(Some(User { name: id.to_owned() }))
///     }
/// }
///
/// async fn profile(SignedIn(user): SignedIn<User>) -> String {
///     format!("hello {}", user.name)
/// }
///
/// async fn home(user: Option<SignedIn<User>>) -> String {
///     match user {
///         Some(SignedIn(user)) => format!("welcome back, {}", user.name),
///         None => "please sign in".to_owned(),
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let app: Router = Router::new()
///     .route("/", get(home))
///     .route("/profile", get(profile))
///     .layer(SessionLayer::new(store).with_auth(AuthLayer::new().users(Users)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn<U>(pub U);

/// The registered [`UserLoader`], its user type erased so that
/// [`AuthSettings`](super::settings::AuthSettings) need not be generic;
/// [`SignedIn<U>`] finds it again by `U`.
#[derive(Clone)]
pub(crate) struct RegisteredUsers {
    /// A [`Typed<L::User>`].
    loader: Arc<dyn Any + Send + Sync>,
    /// For the wiring error and `Debug`.
    user_type: &'static str,
    loader_type: &'static str,
}

/// What [`RegisteredUsers::loader`] holds: the loader behind the one type
/// the extractor can name, its user type.
struct Typed<U>(Arc<dyn UserLoader<User = U>>);

impl RegisteredUsers {
    pub(crate) fn new<L: UserLoader>(loader: L) -> Self {
        let typed: Typed<L::User> = Typed(Arc::new(loader));
        Self {
            loader: Arc::new(typed),
            user_type: type_name::<L::User>(),
            loader_type: type_name::<L>(),
        }
    }

    /// The loader, if it loads `U`s.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn loader<U: 'static>(&self) -> Option<&dyn UserLoader<User = U>> {
        self.loader
            .downcast_ref::<Typed<U>>()
            .map(|typed| typed.0.as_ref())
    }

    /// The name of the user type the loader loads.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn user_type(&self) -> &'static str {
        self.user_type
    }
}

impl Debug for RegisteredUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredUsers")
            .field("loader", &self.loader_type)
            .field("user", &self.user_type)
            .finish()
    }
}

/// Why [`SignedIn<U>`] cannot load a user: no [`UserLoader`] is registered,
/// or the one registered loads another type. A wiring mistake, answered
/// `500` with this message (and logged), on every request until fixed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`SignedIn<{wanted}>` extractor used, but {problem}: {fix}")]
pub struct MissingUserLoader {
    /// The user type the extractor asked for.
    wanted: &'static str,
    /// What is registered instead, in words.
    problem: String,
    /// What to change, in words.
    fix: String,
}

impl MissingUserLoader {
    /// The extractor asked for `U`; `registered` is the user type of the
    /// loader registered, if any.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn new<U>(registered: Option<&'static str>) -> Self {
        let wanted = type_name::<U>();
        let (problem, fix) = match registered {
            None => (
                "no `UserLoader` is registered".to_owned(),
                format!(
                    "implement `UserLoader` with `type User = {wanted};`, register it with \
                     `AuthLayer::new().users(loader)` and add that `AuthLayer` inside \
                     `SessionLayer` (`SessionLayer::new(store).with_auth(auth)`)"
                ),
            ),
            Some(other) => (
                format!("the `UserLoader` registered loads `{other}`"),
                format!(
                    "extract `SignedIn<{other}>`, or register a loader with \
                     `type User = {wanted};` through `AuthLayer::users` (one loader per layer)"
                ),
            ),
        };
        Self {
            wanted,
            problem,
            fix,
        }
    }

    /// The user type the extractor asked for.
    pub fn wanted(&self) -> &'static str {
        self.wanted
    }
}
