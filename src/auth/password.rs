//! [`PasswordAuthenticator`]: accounts with argon2id passwords and lockout.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use unicode_normalization::UnicodeNormalization as _;

use super::{
    AccountError, Authenticated, AuthenticationError, Authenticator, Credentials, Factors,
    LockoutPolicy,
};
use crate::clock::{Clock, SystemClock};
use crate::store::{StoreError, UserRecord, UserStore};

/// The longest password accepted, in bytes: argon2 hashes any length, but an
/// unbounded one is a way to burn the server's CPU.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Accounts in keycard's optional users table (`<table>_users`, created by
/// `migrate()`), with argon2id password hashes and
/// [`LockoutPolicy`] lockout.
///
/// * User names are unique under one canonical form (trimmed, NFKC, lower
///   case), which is also the user id sessions carry: `Ada` and `ada`, or a
///   full-width `ａｄａ`, are one account.
/// * An unknown user costs the same time as a wrong password (a dummy hash
///   is verified) and gets the same answer, as do disabled and locked
///   accounts: no user enumeration.
/// * Failures are counted atomically per account, whichever pathway they
///   came through (a form calling [`verify`](Self::verify), or HTTP Basic
///   through [`AuthLayer`](super::AuthLayer)).
/// * Hashing runs on tokio's blocking pool, not on the request's thread.
/// * Revocation revokes: [`set_password`](Self::set_password) and
///   disabling an account end all of the account's sessions, and
///   [`change_password`](Self::change_password) ends all but the session
///   that made the change, which gets a fresh token (through the session
///   layer's store, so its cache and every app server see it). Each bumps
///   the account's credential version.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use keycard::{SessionLayer, SqliteStore};
/// use keycard::auth::PasswordAuthenticator;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(store.clone());
/// let passwords = PasswordAuthenticator::new(store, layer.admin());
/// let id = passwords.create_user("Ada", "correct horse battery staple").await?;
/// assert_eq!(id, "ada");
/// assert_eq!(passwords.verify("ADA", "correct horse battery staple").await?, "ada");
/// assert!(passwords.verify("ada", "wrong").await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PasswordAuthenticator {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    store: Arc<dyn UserStore>,
    sessions: crate::SessionAdmin,
    argon2: Argon2<'static>,
    lockout: LockoutPolicy,
    clock: Arc<dyn Clock>,
    /// Verified for unknown users, so they cost what a real check costs.
    dummy_hash: String,
    /// Accounts with a second factor that may still sign in by HTTP Basic.
    basic_with_second_factor: Arc<std::collections::HashSet<String>>,
}

impl PasswordAuthenticator {
    /// Accounts in `store`, with argon2id at its recommended parameters
    /// (19 MiB, 2 passes) and the default [`LockoutPolicy`]; password
    /// changes and disabled accounts end sessions through `sessions`
    /// ([`SessionLayer::admin`](crate::SessionLayer::admin)).
    pub fn new(store: impl UserStore, sessions: crate::SessionAdmin) -> Self {
        Self::with_shared_store(Arc::new(store), sessions)
    }

    /// Accounts in a store shared with other code.
    pub fn with_shared_store(store: Arc<dyn UserStore>, sessions: crate::SessionAdmin) -> Self {
        Self::build(
            store,
            sessions,
            Params::default(),
            LockoutPolicy::default(),
            Arc::new(SystemClock),
        )
    }

    fn build(
        store: Arc<dyn UserStore>,
        sessions: crate::SessionAdmin,
        params: Params,
        lockout: LockoutPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon2, "keycard dummy password").unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                store,
                sessions,
                argon2,
                lockout,
                clock,
                dummy_hash,
                basic_with_second_factor: Arc::default(),
            }),
        }
    }

    /// Uses other argon2id parameters for new hashes (existing hashes keep
    /// theirs). Cheap parameters are for tests only.
    pub fn argon2_params(self, params: Params) -> Self {
        let i = &self.inner;
        Self::build(
            i.store.clone(),
            i.sessions.clone(),
            params,
            i.lockout,
            i.clock.clone(),
        )
        .keeping_basic_list(i)
    }

    /// Uses another lockout policy.
    pub fn lockout(self, lockout: LockoutPolicy) -> Self {
        let i = &self.inner;
        Self::build(
            i.store.clone(),
            i.sessions.clone(),
            i.argon2.params().clone(),
            lockout,
            i.clock.clone(),
        )
        .keeping_basic_list(i)
    }

    /// Measures lockouts with `clock` (tests pass a
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(self, clock: impl Clock) -> Self {
        let i = &self.inner;
        Self::build(
            i.store.clone(),
            i.sessions.clone(),
            i.argon2.params().clone(),
            i.lockout,
            Arc::new(clock),
        )
        .keeping_basic_list(i)
    }

    /// Lets the accounts `usernames` sign in by HTTP Basic
    /// ([`BasicAuth`](super::BasicAuth) through [`AuthLayer`](super::AuthLayer))
    /// with their password alone even once they have a second factor
    /// ([`SecondFactor`](super::SecondFactor)), which Basic cannot carry.
    /// Every other account with a second factor is refused by Basic like a
    /// wrong password (and the attempt counts toward the lockout). Prefer
    /// [`ApiTokens`](super::ApiTokens) for API clients.
    pub fn allow_basic_with_second_factor<I, S>(self, usernames: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut inner = (*self.inner).clone();
        inner.basic_with_second_factor = Arc::new(
            usernames
                .into_iter()
                .filter_map(|name| Self::canonical_username(name.as_ref()))
                .collect(),
        );
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This authenticator with `old`'s Basic allow list.
    fn keeping_basic_list(self, old: &Inner) -> Self {
        let mut inner = (*self.inner).clone();
        inner.basic_with_second_factor = old.basic_with_second_factor.clone();
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether `username` has a second factor
    /// ([`SecondFactor`](super::SecondFactor)): a confirmed TOTP
    /// enrolment, or (with the `passkeys` feature) a passkey.
    pub async fn has_second_factor(&self, username: &str) -> Result<bool, AccountError> {
        Ok(!self.second_factors(username).await?.is_empty())
    }

    /// The second factors `username` has. Passkeys count only where this
    /// build can check them (the `passkeys` feature): an account must never
    /// wait for a factor it cannot give.
    pub async fn second_factors(&self, username: &str) -> Result<Factors, AccountError> {
        let Some(canonical) = Self::canonical_username(username) else {
            return Ok(Factors::default());
        };
        let totp = self.inner.store.find_totp(&canonical).await?;
        let totp = totp.is_some_and(|t| t.confirmed_at.is_some());
        #[cfg(feature = "passkeys")]
        let passkey = !self.inner.store.list_passkeys(&canonical).await?.is_empty();
        #[cfg(not(feature = "passkeys"))]
        let passkey = false;
        Ok(Factors::new(totp, passkey))
    }

    /// The accounts' store, for [`SecondFactor`](super::SecondFactor).
    pub(crate) fn store(&self) -> Arc<dyn UserStore> {
        self.inner.store.clone()
    }

    /// The clock lockouts are measured with.
    pub(crate) fn time(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// The lockout policy failures are counted under.
    pub(crate) fn lockout_policy(&self) -> LockoutPolicy {
        self.inner.lockout
    }

    /// The canonical form of a user name (trimmed, NFKC, lower case), or
    /// `None` if it is not a valid one.
    pub fn canonical_username(name: &str) -> Option<String> {
        let canonical: String = name.trim().nfkc().collect::<String>().to_lowercase();
        let chars = canonical.chars().count();
        let valid = chars > 0
            && chars <= crate::MAX_USER_ID_CHARS
            && !canonical.chars().any(|c| c.is_control() || c == ':');
        valid.then_some(canonical)
    }

    /// Creates an account and returns its user id (the canonical name).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, AccountError> {
        let canonical = Self::canonical_username(username).ok_or(AccountError::InvalidUsername)?;
        let password_hash = self.hash(password).await?;
        let created_at = crate::clock::to_micros(self.inner.clock.now());
        let user = UserRecord::new(
            canonical.clone(),
            username.trim(),
            password_hash,
            created_at,
        );
        if self.inner.store.create_user(&user).await? {
            tracing::info!(user = %canonical, "keycard: account created");
            Ok(canonical)
        } else {
            Err(AccountError::Exists)
        }
    }

    /// Sets a new password (an administrator's reset, or a reset link's),
    /// which also clears a lockout and ends every session of the account.
    /// Returns whether the account exists. From the user's own signed-in
    /// session use [`change_password`](Self::change_password), which keeps
    /// that session.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<bool, AccountError> {
        let canonical = Self::canonical_username(username).ok_or(AccountError::InvalidUsername)?;
        let hash = self.hash(password).await?;
        let changed = self
            .inner
            .store
            .set_password_hash(&canonical, &hash)
            .await?;
        if changed {
            tracing::info!(user = %canonical, "keycard: password set; sessions ended");
            self.inner
                .store
                .delete_remembered_of(&canonical, None)
                .await?;
            self.inner
                .sessions
                .end_sessions_of(&canonical, None)
                .await?;
        }
        Ok(changed)
    }

    /// Changes the password of the user signed in to `session`, after
    /// checking `current` (a wrong one counts toward the lockout): every
    /// other session of the account ends, and this one is kept with a fresh
    /// token (the new cookies go out with the response).
    ///
    /// ```
    /// # async fn handler(
    /// #     passwords: keycard::auth::PasswordAuthenticator,
    /// #     session: keycard::Session,
    /// # ) -> Result<(), keycard::auth::AccountError> {
    /// passwords.change_password(&session, "old secret", "new secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn change_password(
        &self,
        session: &crate::Session,
        current: &str,
        new: &str,
    ) -> Result<(), AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        // Before the current password's check, which a refused new one
        // should not cost.
        acceptable(new)?;
        match self.verify(&user, current).await {
            Ok(_) => {}
            Err(AuthenticationError::Unavailable(reason)) => {
                return Err(AccountError::Unavailable(reason));
            }
            Err(_) => return Err(AccountError::WrongPassword),
        }
        let hash = self.hash(new).await?;
        if !self.inner.store.set_password_hash(&user, &hash).await? {
            return Err(AccountError::NotSignedIn);
        }
        let keep = if session.is_request_only() {
            None
        } else {
            session.id().await?
        };
        // Every remembered browser was remembered under the old password.
        self.inner.store.delete_remembered_of(&user, None).await?;
        let ended = self.inner.sessions.end_sessions_of(&user, keep).await?;
        if !session.is_request_only() {
            session.regenerate().await?;
        }
        tracing::info!(user = %user, ended, "keycard: password changed; other sessions ended");
        Ok(())
    }

    /// Confirms the sign-in of the user signed in to `session` with their
    /// `password` ("sudo mode", see
    /// [`RequireRecentAuth`](super::RequireRecentAuth)): a wrong one counts
    /// toward the lockout like any sign-in and is
    /// [`AccountError::WrongPassword`]; a right one makes the sign-in
    /// recent again and gives the session a fresh token
    /// ([`Session::reauthenticated`](crate::Session::reauthenticated)).
    ///
    /// ```
    /// # async fn handler(
    /// #     passwords: keycard::auth::PasswordAuthenticator,
    /// #     session: keycard::Session,
    /// # ) -> Result<(), keycard::auth::AccountError> {
    /// passwords.confirm(&session, "my secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn confirm(
        &self,
        session: &crate::Session,
        password: &str,
    ) -> Result<(), AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        if session.is_request_only() {
            return Err(crate::SessionError::RequestOnly.into());
        }
        match self.verify(&user, password).await {
            Ok(_) => {}
            Err(AuthenticationError::Unavailable(reason)) => {
                return Err(AccountError::Unavailable(reason));
            }
            Err(_) => return Err(AccountError::WrongPassword),
        }
        if !session.reauthenticated(super::method::PASSWORD).await? {
            return Err(AccountError::NotSignedIn);
        }
        Ok(())
    }

    /// Disables (or re-enables) an account: a disabled one can no longer
    /// sign in, and its sessions end at once.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, AccountError> {
        let canonical = Self::canonical_username(username).ok_or(AccountError::InvalidUsername)?;
        let changed = self.inner.store.set_disabled(&canonical, disabled).await?;
        if changed && disabled {
            tracing::info!(user = %canonical, "keycard: account disabled; sessions ended");
            self.inner
                .store
                .delete_remembered_of(&canonical, None)
                .await?;
            self.inner
                .sessions
                .end_sessions_of(&canonical, None)
                .await?;
        }
        Ok(changed)
    }

    /// The account, if it exists (for an admin page: its failure count and
    /// lock).
    pub async fn account(&self, username: &str) -> Result<Option<UserRecord>, AccountError> {
        let Some(canonical) = Self::canonical_username(username) else {
            return Ok(None);
        };
        Ok(self.inner.store.find_user(&canonical).await?)
    }

    /// Checks a user name and password and returns the user id. Unknown
    /// user, wrong password, disabled or locked account: all
    /// [`Rejected`](AuthenticationError::Rejected), after the same work. A
    /// store failure is [`Unavailable`](AuthenticationError::Unavailable)
    /// and counts no failure.
    ///
    /// For an account with a second factor, a right password does not
    /// clear the failure count (the completed sign-in does, see
    /// [`SecondFactor`](super::SecondFactor)); pass the user id to
    /// [`SecondFactor::sign_in`](super::SecondFactor::sign_in) rather than
    /// signing the session in.
    pub async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<String, AuthenticationError> {
        self.verify_factors(username, password)
            .await
            .map(|(user, _)| user)
    }

    /// [`verify`](Self::verify), also saying whether the account has a
    /// second factor.
    async fn verify_factors(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(String, bool), AuthenticationError> {
        let inner = &self.inner;
        let unavailable = |e: StoreError| AuthenticationError::Unavailable(e.to_string());
        let canonical = Self::canonical_username(username);
        let user = match &canonical {
            Some(name) => inner.store.find_user(name).await.map_err(unavailable)?,
            None => None,
        };
        let hash = user
            .as_ref()
            .map_or_else(|| inner.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = self.check(hash, password).await;
        let now = inner.clock.now();
        let Some(user) = user else {
            // The same transaction a known user's failure costs, finding
            // nothing: the answer's timing does not tell who exists.
            let name = canonical.as_deref().unwrap_or("");
            inner
                .store
                .record_failure(name, now, inner.lockout)
                .await
                .map_err(unavailable)?;
            return Err(AuthenticationError::Rejected);
        };
        let locked = LockoutPolicy::is_locked(user.locked_until, now);
        if !matches || locked || user.disabled {
            // Counted whatever the reason, so that the time taken (one more
            // write) tells nothing: not even "right password, but locked".
            let updated = inner
                .store
                .record_failure(&user.username, now, inner.lockout)
                .await
                .map_err(unavailable)?;
            if let Some(u) = updated.filter(|u| u.locked_until != user.locked_until) {
                tracing::warn!(user = %u.username, failures = u.failures, "keycard: account locked");
            }
            tracing::info!(user = %user.username, "keycard: sign-in refused");
            return Err(AuthenticationError::Rejected);
        }
        let totp = inner
            .store
            .find_totp(&user.username)
            .await
            .map_err(unavailable)?;
        let second_factor = totp.is_some_and(|t| t.confirmed_at.is_some());
        // With a second factor due, the password alone is no success: the
        // count is cleared when the sign-in completes, so that failed codes
        // between right passwords still add up to a lockout.
        if !second_factor {
            inner
                .store
                .clear_failures(&user.username)
                .await
                .map_err(unavailable)?;
        }
        Ok((user.username, second_factor))
    }

    async fn hash(&self, password: &str) -> Result<String, AccountError> {
        acceptable(password)?;
        let argon2 = self.inner.argon2.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_with(&argon2, &password))
            .await
            .ok()
            .flatten()
            .ok_or(AccountError::Hashing)
    }

    /// Whether `password` matches the PHC string `hash`, on the blocking
    /// pool. Over-long passwords are checked against nothing, in the same
    /// time as a real check.
    async fn check(&self, hash: String, password: &str) -> bool {
        let argon2 = self.inner.argon2.clone();
        let too_long = password.len() > MAX_PASSWORD_BYTES;
        let password = if too_long {
            String::new()
        } else {
            password.to_owned()
        };
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        verified && !too_long
    }
}

/// Refuses a password that is empty or longer than [`MAX_PASSWORD_BYTES`].
fn acceptable(password: &str) -> Result<(), AccountError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::InvalidPassword);
    }
    Ok(())
}

/// A PHC string for `password` with a fresh 128-bit salt from the OS.
fn hash_with(argon2: &Argon2<'_>, password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut salt).ok()?;
    let salt = SaltString::encode_b64(&salt).ok()?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|hash| hash.to_string())
}

#[async_trait]
impl Authenticator for PasswordAuthenticator {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<Authenticated, AuthenticationError> {
        let Credentials::Password { login, password } = credentials else {
            return Err(AuthenticationError::NotMine);
        };
        let (user_id, second_factor) = self.verify_factors(login, password).await?;
        if second_factor {
            let inner = &self.inner;
            let unavailable = |e: StoreError| AuthenticationError::Unavailable(e.to_string());
            if !inner.basic_with_second_factor.contains(&user_id) {
                // HTTP Basic cannot carry the second factor: refused like a
                // wrong password, and counted like one.
                inner
                    .store
                    .record_failure(&user_id, inner.clock.now(), inner.lockout)
                    .await
                    .map_err(unavailable)?;
                tracing::info!(user = %user_id, "keycard: Basic refused for an account with a second factor");
                return Err(AuthenticationError::Rejected);
            }
            // Allowed with the password alone: that is its whole sign-in.
            inner
                .store
                .clear_failures(&user_id)
                .await
                .map_err(unavailable)?;
        }
        Ok(Authenticated::new(user_id))
    }
}
