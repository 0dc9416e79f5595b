//! [`OneTimeTokens`]: sign-in links and password resets.

use std::sync::Arc;

use chrono::TimeDelta;

use super::{AccountError, PasswordAuthenticator, method};
use crate::clock::{Clock, SystemClock};
use crate::store::{OneTimeToken, UserStore};
use crate::token::SessionToken;
use crate::{Login, Session};

/// The purpose of a sign-in link.
pub const SIGN_IN: &str = "sign-in";
/// The purpose of a password-reset link.
pub const PASSWORD_RESET: &str = "password-reset";

/// Single-use tokens sent to an account's owner (in an e-mail, say): a
/// sign-in link ("magic link") or a password reset.
///
/// * A token has a purpose and a lifetime; only its SHA-256 is stored
///   (`<table>_one_time_tokens`, made by `migrate()`).
/// * It is used at most once: of two concurrent redemptions exactly one
///   wins.
/// * It is bound to the account's credential version: a password change
///   (or disabling the account) since it was made makes it worthless, so a
///   reset kills every other outstanding link.
/// * No enumeration: [`mint`](Self::mint) for an unknown or disabled
///   account does the same work and stores a token that can never be
///   redeemed; it returns `None`, so that the application sends no mail,
///   but answers the visitor the same ("if the account exists, a link is on
///   its way"). Send the mail off the request path, so that its time does
///   not tell either.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use keycard::{SessionLayer, SqliteStore};
/// use keycard::auth::{OneTimeTokens, PasswordAuthenticator};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(store.clone());
/// let passwords = PasswordAuthenticator::new(store.clone(), layer.admin());
/// passwords.create_user("ada", "a long secret").await?;
/// let links = OneTimeTokens::new(store, passwords);
/// if let Some(secret) = links.mint("ada", keycard::auth::one_time::SIGN_IN, std::time::Duration::from_secs(900)).await? {
///     println!("https://example.com/login/link?token={secret}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OneTimeTokens {
    store: Arc<dyn UserStore>,
    passwords: PasswordAuthenticator,
    clock: Arc<dyn Clock>,
}

impl OneTimeTokens {
    /// Tokens in `store`, for the accounts of `passwords`.
    pub fn new(store: impl UserStore, passwords: PasswordAuthenticator) -> Self {
        Self::with_shared_store(Arc::new(store), passwords)
    }

    /// Tokens in a store shared with other code.
    pub fn with_shared_store(store: Arc<dyn UserStore>, passwords: PasswordAuthenticator) -> Self {
        Self {
            store,
            passwords,
            clock: Arc::new(SystemClock),
        }
    }

    /// Dates tokens with `clock`.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Makes a token for `username`'s `purpose`, working for `lifetime`:
    /// its secret (43 characters of base64url, safe in a URL) for an
    /// active account, `None` for an unknown or disabled one (see the type's
    /// docs on enumeration). `purpose` is 1 to 64 printable characters.
    pub async fn mint(
        &self,
        username: &str,
        purpose: &str,
        lifetime: std::time::Duration,
    ) -> Result<Option<String>, AccountError> {
        let valid_purpose = !purpose.is_empty()
            && purpose.len() <= 64
            && purpose.chars().all(|c| c.is_ascii_graphic());
        if !valid_purpose {
            return Err(AccountError::InvalidTokenName);
        }
        let canonical = PasswordAuthenticator::canonical_username(username);
        let account = match &canonical {
            Some(name) => self.passwords.account(name).await?,
            None => None,
        };
        let secret = SessionToken::generate().map_err(|_| AccountError::Randomness)?;
        let now = self.now();
        let lifetime = TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::MAX);
        let expires_at = now
            .checked_add_signed(lifetime)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let active = account.as_ref().filter(|a| !a.disabled);
        // An unknown account gets a row too (the same work), under a
        // credential version no account has: it never redeems.
        let (user_id, version) = match active {
            Some(account) => (account.username.clone(), account.credential_version),
            None => (canonical.unwrap_or_default(), -1),
        };
        let token = OneTimeToken::new(secret.hash(), user_id, purpose, version, now, expires_at);
        // Each mint clears the expired ones, so that the table stays as
        // small as the tokens alive (asking for links costs no more rows
        // than the asking rate times their lifetime).
        self.store.delete_expired_one_time_tokens(now).await?;
        self.store.insert_one_time_token(&token).await?;
        if active.is_some() {
            tracing::info!(
                user = %token.user_id,
                purpose,
                fingerprint = %token.token_hash.fingerprint(),
                "keycard: one-time token made"
            );
        }
        Ok(active.map(|_| secret.expose()))
    }

    /// The account a `secret` for `purpose` is good for, without using it
    /// (to show a reset form before the new password is posted); `None` if
    /// it is unknown, used, expired, of another purpose, or older than the
    /// account's last credential change.
    pub async fn peek(&self, secret: &str, purpose: &str) -> Result<Option<String>, AccountError> {
        let Some(hash) = hash_of(secret) else {
            return Ok(None);
        };
        match self
            .store
            .find_one_time_token(&hash, purpose, self.now())
            .await?
        {
            Some(token) => self.current(token).await,
            None => Ok(None),
        }
    }

    /// Uses a `secret` for `purpose`, once: the account it was for, or
    /// `None` as for [`peek`](Self::peek). Of two concurrent redemptions,
    /// one gets the account.
    pub async fn redeem(
        &self,
        secret: &str,
        purpose: &str,
    ) -> Result<Option<String>, AccountError> {
        let Some(hash) = hash_of(secret) else {
            return Ok(None);
        };
        let taken = self.store.take_one_time_token(&hash, purpose, self.now());
        let Some(taken) = taken.await? else {
            return Ok(None);
        };
        let user = self.current(taken).await?;
        if let Some(user) = &user {
            tracing::info!(user = %user, purpose, "keycard: one-time token used");
        }
        Ok(user)
    }

    /// Signs `session` in with a sign-in link's `secret` (purpose
    /// [`SIGN_IN`]): a fresh token, method [`method::LINK`], and
    /// [`SignInStep::Done`](super::SignInStep::Done). `None`, and the
    /// session unchanged, if the secret is no good.
    ///
    /// A request signed in for itself only (a bearer token) cannot be
    /// signed in by a link: [`SessionError::RequestOnly`](crate::SessionError::RequestOnly),
    /// and the link is not used.
    ///
    /// For an account with a second factor the link is only the first
    /// one: the session is left half-open, as after its password (see
    /// [`SecondFactor`](super::SecondFactor)), and the answer is
    /// [`SignInStep::SecondFactorDue`](super::SignInStep::SecondFactorDue):
    /// ask for the code next.
    pub async fn sign_in(
        &self,
        session: &Session,
        secret: &str,
    ) -> Result<Option<super::SignInStep>, AccountError> {
        if session.is_request_only() {
            return Err(crate::SessionError::RequestOnly.into());
        }
        let Some(user) = self.redeem(secret, SIGN_IN).await? else {
            return Ok(None);
        };
        if self.passwords.has_second_factor(&user).await? {
            let factors =
                super::SecondFactor::new(self.passwords.clone()).shared_clock(self.clock.clone());
            let pending = factors.begin(session, &user).await?;
            return Ok(Some(super::SignInStep::SecondFactorDue(pending.factors)));
        }
        session
            .login_with(Login::new(user).method(method::LINK))
            .await?;
        Ok(Some(super::SignInStep::Done))
    }

    /// The time, at the precision the stores keep.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        crate::clock::to_micros(self.clock.now())
    }

    /// The token's account if it is active and its credentials have not
    /// changed since the token was made.
    async fn current(&self, token: OneTimeToken) -> Result<Option<String>, AccountError> {
        let Some(account) = self.passwords.account(&token.user_id).await? else {
            return Ok(None);
        };
        let good = !account.disabled && account.credential_version == token.credential_version;
        Ok(good.then_some(account.username))
    }
}

/// The hash of a well-formed secret; `None` for anything else, which never
/// reaches the store.
fn hash_of(secret: &str) -> Option<crate::token::TokenHash> {
    secret
        .parse::<SessionToken>()
        .ok()
        .map(|token| token.hash())
}
