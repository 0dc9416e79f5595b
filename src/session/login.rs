//! Signing in and out, and token rotation.

use std::sync::atomic::Ordering;

use super::state::{State, Working};
use super::{Session, ready_mut};
use crate::SessionError;

/// The longest user id a session holds, in characters.
pub const MAX_USER_ID_CHARS: usize = 255;
/// The longest auth method name a session holds, in characters.
pub const MAX_AUTH_METHOD_CHARS: usize = 64;

/// A sign-in: who, and optionally how and under which credential version.
///
/// ```
/// # async fn sign_in(session: keycard::Session) -> Result<(), keycard::Error> {
/// use keycard::Login;
///
/// session
///     .login_with(Login::new("ada").method("password").auth_version(7))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    user_id: String,
    method: Option<String>,
    auth_version: Option<i64>,
    api: bool,
    credential: Option<String>,
}

impl Login {
    /// Signs in `user_id` (1 to [`MAX_USER_ID_CHARS`] characters).
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            method: None,
            auth_version: None,
            api: false,
            credential: None,
        }
    }

    /// Names the credential that signed this session in (an API token's
    /// `api-token:17`, say; 1 to 255 characters): revoking that credential
    /// ends this session (see
    /// [`SessionAdmin::end_sessions_signed_in_by`](crate::SessionAdmin::end_sessions_signed_in_by)).
    pub fn credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// Marks the session as an API client's (a script, a tablet): exempt from
    /// the [`ConcurrentSessions`](crate::ConcurrentSessions) limit on human
    /// sessions. [`AuthLayer`](crate::auth::AuthLayer) sets it for
    /// credentials sent with each request (HTTP Basic, bearer tokens).
    pub fn api(mut self, api: bool) -> Self {
        self.api = api;
        self
    }

    /// Records how the user proved who they are (`"password"`, `"basic"`,
    /// `"bearer"`, …; 1 to [`MAX_AUTH_METHOD_CHARS`] characters), for
    /// guards such as "only password sessions may change the password".
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Records the user's current credential version (see
    /// [`AuthVersions`](crate::AuthVersions)): once the application bumps
    /// it, on a password change say, this session is refused.
    pub fn auth_version(mut self, version: i64) -> Self {
        self.auth_version = Some(version);
        self
    }

    /// A new session's fields, signed in by this login at `now` with the
    /// token of `token_hash` (for a session made outside a request).
    #[cfg(feature = "test-client")]
    pub(crate) fn into_fields(
        self,
        token_hash: crate::token::TokenHash,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::SessionFields, SessionError> {
        self.validate()?;
        let mut fields = crate::store::SessionFields::new(token_hash, now);
        self.apply_to(&mut fields, now);
        Ok(fields)
    }

    /// The user it signs in.
    pub(crate) fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Refuses what not every store can hold, before anything changes, the
    /// same on every store: empty or over-long names, and control
    /// characters (a NUL, which PostgreSQL refuses and SQLite would store;
    /// line breaks that would forge log lines).
    pub(super) fn validate(&self) -> Result<(), SessionError> {
        let valid = |text: &str, max: usize| {
            let chars = text.chars().count();
            chars > 0 && chars <= max && !text.chars().any(char::is_control)
        };
        if !valid(&self.user_id, MAX_USER_ID_CHARS) {
            return Err(SessionError::InvalidLogin(
                "the user id must be 1 to 255 characters, none of them a control character",
            ));
        }
        if self
            .method
            .as_ref()
            .is_some_and(|m| !valid(m, MAX_AUTH_METHOD_CHARS))
        {
            return Err(SessionError::InvalidLogin(
                "the auth method must be 1 to 64 characters, none of them a control character",
            ));
        }
        if self
            .credential
            .as_ref()
            .is_some_and(|c| !valid(c, MAX_USER_ID_CHARS))
        {
            return Err(SessionError::InvalidLogin(
                "the credential name must be 1 to 255 characters",
            ));
        }
        Ok(())
    }

    /// Writes who signed in, how and when into `fields`.
    pub(super) fn apply_to(
        self,
        fields: &mut crate::store::SessionFields,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        fields.user_id = Some(self.user_id);
        fields.auth_method = self.method;
        fields.auth_version = self.auth_version;
        fields.is_api = self.api;
        fields.credential = self.credential;
        fields.authenticated_at = Some(now);
    }
}

impl Session {
    /// Signs `user_id` in: `login_with(Login::new(user_id))`.
    pub async fn login(&self, user_id: impl Into<String>) -> Result<(), SessionError> {
        self.login_with(Login::new(user_id)).await
    }

    /// Signs a user in.
    ///
    /// Takes effect when the response leaves: the session always gets a
    /// fresh token (the old one is dead from then on, against session
    /// fixation), also when the same user signs in again, and new cookies.
    /// Signing in from an anonymous session keeps its values (a basket,
    /// say); signing in as a different user than the current one starts
    /// from empty values, so nothing of one user leaks to the next. The
    /// time is recorded as [`authenticated_at`](Self::authenticated_at), and
    /// the layer's [`ConcurrentSessions`](crate::config::ConcurrentSessions)
    /// policy is applied to the user's other sessions.
    pub async fn login_with(&self, login: Login) -> Result<(), SessionError> {
        self.writable().await?;
        login.validate()?;
        let now = self.0.ctx.now();
        let mut state = self.ready().await?;
        ready_mut(&mut state)?.sign_in(login, now)
    }

    /// Signs the request in for this request only, from credentials it
    /// carried itself (HTTP Basic, a bearer token): handlers and guards see
    /// the user, but nothing is loaded or stored and no cookie is set.
    /// Whatever session cookie the request brought is left as it is.
    ///
    /// `sent_by_browsers`: the credentials are of a kind browsers send on
    /// their own (cached HTTP Basic), so the request gets no exemption from
    /// the synchronizer token check.
    pub(crate) async fn sign_in_for_request(
        &self,
        login: Login,
        sent_by_browsers: bool,
    ) -> Result<(), SessionError> {
        login.validate()?;
        let now = self.0.ctx.now();
        let mut view = self.fresh_fields(now);
        login.apply_to(&mut view, now);
        let mut state = self.0.state.lock().await;
        self.0.request_only.store(true, Ordering::Release);
        self.0
            .ambient_credentials
            .store(sent_by_browsers, Ordering::Release);
        self.0.used.store(true, Ordering::Release);
        *state = State::Ready(Box::new(Working::fresh(view, tracing::Span::none())));
        Ok(())
    }

    /// Signs out and ends the session: from here on the request is
    /// anonymous, and when the response leaves the row is deleted and both
    /// cookies are expired. A replay of the old cookies is an anonymous
    /// request from then on. (A value stored after the logout, a "goodbye"
    /// message say, starts a new anonymous session with new cookies.)
    pub async fn logout(&self) -> Result<(), SessionError> {
        self.writable().await?;
        let now = self.0.ctx.now();
        let fresh = self.fresh_fields(now);
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        let signed_out = w.view.user_id.is_some() || w.signed_out;
        if let Some(user) = w.view.user_id.clone() {
            w.facts.signed_out = Some(user);
        }
        w.restart(fresh);
        w.ended = true;
        w.signed_out = signed_out;
        Ok(())
    }

    /// Signs out but keeps the session's values (a basket, preferences):
    /// the user, how and when they signed in are cleared and the session
    /// gets a fresh token, so the signed-in cookies are dead at once.
    pub async fn logout_keeping_values(&self) -> Result<(), SessionError> {
        self.writable().await?;
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        w.signed_out |= w.view.user_id.is_some();
        if let Some(user) = w.view.user_id.take() {
            w.facts.signed_out = Some(user);
        }
        w.view.credential = None;
        w.view.auth_method = None;
        w.view.authenticated_at = None;
        w.view.auth_version = None;
        w.identity_changed = true;
        w.rotate()
    }

    /// Ends this session and carries on with a fresh, anonymous one in the
    /// same request: when the response leaves, the old row is deleted and,
    /// if the new session holds anything, it is stored under a new id and
    /// token (otherwise the cookies are expired). Unlike
    /// [`logout`](Self::logout), the hooks hear of a replaced session, not
    /// a sign-out: this is how [`AuthLayer`](crate::auth::AuthLayer)
    /// switches over a client whose cookie belongs to another user.
    pub(crate) async fn restart(&self) -> Result<(), SessionError> {
        self.writable().await?;
        let now = self.0.ctx.now();
        let fresh = self.fresh_fields(now);
        let mut state = self.ready().await?;
        ready_mut(&mut state)?.restart(fresh);
        Ok(())
    }

    /// Records that the signed-in user has just proved a credential again
    /// by `method` (re-entered their password, say): the sign-in time
    /// becomes now, the method becomes `method` (so a sign-in restored from
    /// a remember-me cookie counts as a real one from here on) and the
    /// session gets a fresh token, so that
    /// [`RequireRecentAuth`](crate::auth::RequireRecentAuth) lets it through
    /// for the configured time. `false`, and nothing changes, when nobody
    /// is signed in. [`PasswordAuthenticator::confirm`](crate::auth::PasswordAuthenticator::confirm)
    /// checks the password and calls it.
    ///
    /// ```
    /// # async fn handler(session: keycard::Session) -> Result<(), keycard::SessionError> {
    /// use keycard::auth::method;
    ///
    /// // after checking the credential the user just gave:
    /// session.reauthenticated(method::PASSWORD).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reauthenticated(&self, method: &str) -> Result<bool, SessionError> {
        self.writable().await?;
        let now = self.0.ctx.now();
        let check = Login::new("-").method(method);
        check.validate()?;
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        if w.view.user_id.is_none() {
            return Ok(false);
        }
        w.view.authenticated_at = Some(now);
        w.view.auth_method = Some(method.to_owned());
        w.reauthenticated = true;
        w.rotate()?;
        tracing::info!("keycard: sign-in confirmed");
        Ok(true)
    }

    /// Gives the session a fresh token, keeping its values and user. Use it
    /// whenever the session's privileges change.
    pub async fn regenerate(&self) -> Result<(), SessionError> {
        self.writable().await?;
        let mut state = self.ready().await?;
        ready_mut(&mut state)?.rotate()
    }
}
