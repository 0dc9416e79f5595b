//! Remember-me: a browser that asked to be remembered is signed back in
//! after a restart, by a revocable, rotating token kept server-side.
//!
//! * At sign-in the user ticks "remember me" and the handler calls
//!   [`Remember::this_device`]. The response sets a second cookie
//!   (`__Host-keycard-remember`, HttpOnly, like the session's) holding a
//!   *series* and a *token*. Only their SHA-256 hashes are stored, in
//!   `<table>_remember`, with the user, the device label and the times.
//! * A later request that brings the cookie but no live session (the
//!   browser was closed, the session timed out) is signed in again when
//!   its session is first used: a fresh session and token, method
//!   [`method::REMEMBERED`](super::method::REMEMBERED), and a new token for
//!   the same series. The used one dies.
//! * After a restart a browser sends many requests at once (the page, its
//!   scripts, from two app servers). Exactly one rotates the token; the
//!   others, bringing the token it just replaced within a short grace
//!   window (default 20 seconds), are signed in for their own request only
//!   and set no cookie, so the browser ends up with one session.
//! * A token that was already rotated away, used after the grace window,
//!   means two browsers hold one series: the cookie was copied. The whole
//!   series and every session and remembered device of the user end, a
//!   warning is logged (with no token in it), and `CnxLayer` hooks hear
//!   [`EndReason::Theft`](crate::EndReason::Theft). It stands whatever the
//!   request answers, inside a request's transaction too.
//! * It ends with sign-out on that device, with
//!   [`Session::end_other_sessions`](crate::Session::end_other_sessions)
//!   ("sign out everywhere else" ends the other devices' series), with
//!   [`Session::end_user_session`](crate::Session::end_user_session) of a
//!   session it opened, with [`Remember::revoke`] from a "your sessions"
//!   page, with a password change or a disabled account (through
//!   [`PasswordAuthenticator`](super::PasswordAuthenticator), and for any
//!   account whose credential version moved), and after its lifetime
//!   (default 30 days from the sign-in, not extended by use).
//! * A sign-in restored this way is never "recent" for
//!   [`RequireRecentAuth`](super::RequireRecentAuth): confirming the
//!   password makes it so.
//!
//! [`Session::set_persistent`](crate::Session::set_persistent) is a
//! different thing and stays: it keeps the *session* cookie across browser
//! restarts, with the longer persistent timeouts, but a copied cookie is
//! never noticed and nothing rotates. Prefer remember-me; call
//! `set_persistent` only for a session that must survive a restart
//! without a new sign-in (a kiosk).
//!
//! ```
//! use axum::{Form, Router, routing::post};
//! use keycard::auth::{AuthLayer, PasswordAuthenticator, Remember, RememberMe};
//! use keycard::{Login, Session, SessionLayer, SqliteStore};
//!
//! #[derive(serde::Deserialize)]
//! struct SignIn {
//!     username: String,
//!     password: String,
//!     remember: Option<String>,
//! }
//!
//! async fn sign_in(
//!     axum::extract::State(passwords): axum::extract::State<PasswordAuthenticator>,
//!     session: Session,
//!     remember: Remember,
//!     Form(form): Form<SignIn>,
//! ) -> Result<&'static str, keycard::Error> {
//!     let Ok(user) = passwords.verify(&form.username, &form.password).await else {
//!         return Ok("wrong user name or password");
//!     };
//!     // Sign in first, then ask to be remembered.
//!     session.login_with(Login::new(user).method("password")).await?;
//!     if form.remember.is_some() {
//!         remember.this_device().await?;
//!     }
//!     Ok("signed in")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let sessions = SessionLayer::new(store.clone());
//! let passwords = PasswordAuthenticator::new(store.clone(), sessions.admin());
//! let remember = RememberMe::new(store, sessions.admin());
//! let app: Router = Router::new()
//!     .route("/login", post(sign_in))
//!     .with_state(passwords)
//!     .layer(sessions.with_auth(AuthLayer::new().remember(remember)));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::AccountError;
use crate::SessionAdmin;
use crate::clock::{Clock, SystemClock};
use crate::store::{RememberedDevice, UserStore};

mod cookie;
mod request;

pub(crate) use request::PerRequest;
pub use request::{MissingRememberMe, Remember, RememberedBrowser};

/// The default lifetime of a remembered browser.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long a just-rotated token still signs a racing request in.
const DEFAULT_GRACE: Duration = Duration::from_secs(20);

/// Remember-me, configured once and given to
/// [`AuthLayer::remember`](super::AuthLayer::remember); handlers use the
/// request's [`Remember`]. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct RememberMe {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn UserStore>,
    pub(crate) sessions: SessionAdmin,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lifetime: TimeDelta,
    pub(crate) grace: TimeDelta,
}

impl RememberMe {
    /// Remembered browsers in `store` (the table `migrate()` made), whose
    /// sessions are those of `sessions`' layer.
    pub fn new(store: impl UserStore, sessions: SessionAdmin) -> Self {
        Self::with_shared_store(Arc::new(store), sessions)
    }

    /// Remembered browsers in a store shared with other code.
    pub fn with_shared_store(store: Arc<dyn UserStore>, sessions: SessionAdmin) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                sessions,
                clock: Arc::new(SystemClock),
                lifetime: to_delta(DEFAULT_LIFETIME),
                grace: to_delta(DEFAULT_GRACE),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// How long a browser stays remembered after the user asked (default
    /// 30 days); using it does not extend it.
    pub fn lifetime(self, lifetime: Duration) -> Self {
        self.configure(|inner| inner.lifetime = to_delta(lifetime))
    }

    /// How long the token a restore just replaced still signs in a request
    /// of the same burst, for that request only (default 20 seconds). Zero
    /// treats every racing request as a copied cookie.
    pub fn grace_window(self, grace: Duration) -> Self {
        self.configure(|inner| inner.grace = to_delta(grace))
    }

    /// Dates tokens with `clock` (tests use a manual one).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.configure(|inner| inner.clock = Arc::new(clock))
    }

    /// The remembered browsers of `user_id`, oldest first (for an
    /// administrator; a user's own page uses [`Remember::devices`]).
    pub async fn devices_of(&self, user_id: &str) -> Result<Vec<RememberedBrowser>, AccountError> {
        self.inner.browsers(user_id, None).await
    }

    /// Forgets every remembered browser of `user_id` and ends the sessions
    /// they opened (an administrator ending an account's sign-ins; a
    /// password change through `PasswordAuthenticator` does it itself).
    /// Returns how many browsers were forgotten.
    pub async fn forget_user(&self, user_id: &str) -> Result<u64, AccountError> {
        self.inner.forget_all(user_id, None).await
    }
}

impl Inner {
    /// The time, at the precision the stores keep.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        crate::clock::to_micros(self.clock.now())
    }

    /// The user's unexpired remembered browsers, oldest first, `current`
    /// marked.
    pub(crate) async fn browsers(
        &self,
        user_id: &str,
        current: Option<i64>,
    ) -> Result<Vec<RememberedBrowser>, AccountError> {
        let now = self.now();
        let devices = self.store.list_remembered(user_id).await?;
        Ok(devices
            .into_iter()
            .filter(|d| d.expires_at > now)
            .map(|d| RememberedBrowser::of(d, current))
            .collect())
    }

    /// Forgets the user's remembered browsers but `except`, and ends the
    /// sessions each opened.
    pub(crate) async fn forget_all(
        &self,
        user_id: &str,
        except: Option<i64>,
    ) -> Result<u64, AccountError> {
        let devices = self.store.list_remembered(user_id).await?;
        let forgotten = self.store.delete_remembered_of(user_id, except).await?;
        for device in devices.iter().filter(|d| Some(d.id) != except) {
            self.sessions
                .end_sessions_signed_in_by(user_id, &credential_of(device.id))
                .await?;
        }
        if forgotten > 0 {
            tracing::info!(user = %user_id, forgotten, "keycard: remembered browsers forgotten");
        }
        Ok(forgotten)
    }
}

/// The credential name of the sessions a remembered browser opened.
pub(crate) fn credential_of(id: i64) -> String {
    format!("remember:{id}")
}

/// The remembered browser a credential name names, if it names one.
pub(crate) fn device_of(credential: &str) -> Option<i64> {
    credential.strip_prefix("remember:")?.parse().ok()
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Whether `device` may sign its user in at `now` as far as the account
/// goes: not expired, and the account (if keycard keeps it) active and at
/// the credential version the device was made under.
pub(crate) async fn still_valid(
    store: &dyn UserStore,
    device: &RememberedDevice,
    now: DateTime<Utc>,
) -> Result<bool, AccountError> {
    if device.expires_at <= now {
        return Ok(false);
    }
    Ok(match store.find_user(&device.user_id).await? {
        Some(account) => {
            !account.disabled && account.credential_version == device.credential_version
        }
        // A user keycard keeps no account of (the application's own).
        None => device.credential_version == NO_ACCOUNT,
    })
}

/// The credential version of a device whose user has no keycard account.
pub(crate) const NO_ACCOUNT: i64 = -1;
