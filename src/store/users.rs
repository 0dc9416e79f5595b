//! [`UserStore`]: the optional accounts of
//! [`PasswordAuthenticator`](crate::auth::PasswordAuthenticator) and the
//! API bearer tokens of [`ApiTokens`](crate::auth::ApiTokens) and the
//! one-time tokens of [`OneTimeTokens`](crate::auth::OneTimeTokens), the
//! remembered browsers of [`RememberMe`](crate::auth::RememberMe) and the
//! second factors of [`SecondFactor`](crate::auth::SecondFactor), kept
//! beside the sessions in `<table>_users`, `<table>_api_tokens`,
//! `<table>_one_time_tokens`, `<table>_remember`, `<table>_totp` and
//! `<table>_recovery_codes`.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::LockoutPolicy;
use super::StoreError;
use crate::token::TokenHash;

/// An account as stored. The password hash is an argon2id PHC string.
///
/// Extensible: outside keycard, start from [`UserRecord::new`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserRecord {
    /// The canonical user name (NFKC, lower case): the account's key and
    /// the user id its sessions carry.
    pub username: String,
    /// The name as the user typed it when the account was created.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// A disabled account cannot sign in.
    pub disabled: bool,
    /// Failed sign-ins since the last success.
    pub failures: u32,
    /// Until when the account is locked after too many failures.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// Bumped by every password change and by disabling the account.
    pub credential_version: i64,
}

impl UserRecord {
    /// An enabled account with no failures, at credential version 0.
    pub fn new(
        username: impl Into<String>,
        display_name: impl Into<String>,
        password_hash: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            username: username.into(),
            display_name: display_name.into(),
            password_hash: password_hash.into(),
            disabled: false,
            failures: 0,
            locked_until: None,
            created_at,
            credential_version: 0,
        }
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .field("failures", &self.failures)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

/// An API bearer token as stored: the token itself never is, only its hash.
///
/// Extensible: outside keycard, start from [`ApiTokenRecord::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiTokenRecord {
    /// The token's key (not secret).
    pub id: i64,
    /// The user the token signs in.
    pub user_id: String,
    /// What the owner called it ("CI", "phone sync").
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used to sign in.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiTokenRecord {
    /// A token never used yet.
    pub fn new(
        id: i64,
        user_id: impl Into<String>,
        name: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            user_id: user_id.into(),
            name: name.into(),
            created_at,
            last_used_at: None,
        }
    }

    /// The name sessions opened with this token record as their
    /// credential ([`Login::credential`](crate::Login::credential)).
    pub fn credential(&self) -> String {
        Self::credential_of(self.id)
    }

    /// [`credential`](Self::credential) of the token with key `id`.
    pub fn credential_of(id: i64) -> String {
        format!("api-token:{id}")
    }
}

/// A one-time token to store (a sign-in link, a password reset): only its
/// hash is kept, it is used at most once, and only before `expires_at`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OneTimeToken {
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// The account it is for (canonical user name).
    pub user_id: String,
    /// What it may be used for (`"sign-in"`, `"password-reset"`, …).
    pub purpose: String,
    /// The account's credential version when it was made: a password
    /// change since then makes it worthless.
    pub credential_version: i64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

impl OneTimeToken {
    /// A token for `user_id` and `purpose`, made at `created_at`, working
    /// until `expires_at`.
    pub fn new(
        token_hash: TokenHash,
        user_id: impl Into<String>,
        purpose: impl Into<String>,
        credential_version: i64,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            token_hash,
            user_id: user_id.into(),
            purpose: purpose.into(),
            credential_version,
            created_at,
            expires_at,
        }
    }
}

/// A remembered browser ("remember me"): a series of tokens, each used
/// once, kept as hashes only. [`RememberMe`](crate::auth::RememberMe)
/// makes, rotates and ends them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RememberedDevice {
    /// The row's key (not secret: it names the device on a "your
    /// sessions" page; the series itself never leaves the cookie).
    pub id: i64,
    /// SHA-256 of the series (the cookie's first half).
    pub series_hash: TokenHash,
    /// SHA-256 of the token that restores the sign-in now.
    pub token_hash: TokenHash,
    /// SHA-256 of the token it replaced, honoured for a short grace window
    /// after `rotated_at` (concurrent requests of one browser restart).
    pub previous_hash: Option<TokenHash>,
    /// When the token last rotated.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The account it signs in.
    pub user_id: String,
    /// The account's credential version when it was made (−1 for a user
    /// keycard keeps no account of): a password change ends it.
    pub credential_version: i64,
    /// When the user asked to be remembered.
    pub created_at: DateTime<Utc>,
    /// When it last restored a sign-in (or was made).
    pub last_used_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The device label of the browser that asked ("Firefox on Linux").
    pub device: Option<String>,
}

impl RememberedDevice {
    /// A series for `user_id` made at `created_at`, working until
    /// `expires_at`, never rotated yet; [`UserStore::insert_remembered`]
    /// assigns its id (0 until then).
    pub fn new(
        series_hash: TokenHash,
        token_hash: TokenHash,
        user_id: impl Into<String>,
        credential_version: i64,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: 0,
            series_hash,
            token_hash,
            previous_hash: None,
            rotated_at: None,
            user_id: user_id.into(),
            credential_version,
            created_at,
            last_used_at: created_at,
            expires_at,
            device: None,
        }
    }
}

/// An account's TOTP enrolment as stored (see
/// [`SecondFactor`](crate::auth::SecondFactor)): its secret, whether it was
/// confirmed by a first valid code, and the last time step accepted. Its
/// `Debug` output leaves the secret out.
///
/// Extensible: outside keycard, start from [`TotpRecord::new`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TotpRecord {
    /// The account (canonical user name).
    pub user_id: String,
    /// The shared secret, as raw bytes (20 from keycard).
    pub secret: Vec<u8>,
    /// When the enrolment began.
    pub created_at: DateTime<Utc>,
    /// When its first valid code confirmed it; until then it is no second
    /// factor.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last time step (Unix time / 30 s) whose code was accepted: no
    /// code of that step or an earlier one is accepted again.
    pub last_step: Option<i64>,
}

impl TotpRecord {
    /// An unconfirmed enrolment with no step used.
    pub fn new(
        user_id: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            secret: secret.into(),
            created_at,
            confirmed_at: None,
            last_step: None,
        }
    }
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is what a code is computed from: never in a log.
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// A passkey (a WebAuthn credential) as stored: see
/// [`Passkeys`](crate::auth::Passkeys). `credential` is the serialised
/// credential of the WebAuthn library (public key, counter, flags); the
/// other fields are what keycard looks a passkey up by and shows.
///
/// Extensible: outside keycard, start from [`PasskeyRecord::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasskeyRecord {
    /// The row's key ([`UserStore::insert_passkey`] assigns it).
    pub id: i64,
    /// The account (canonical user name).
    pub user_id: String,
    /// The credential id the authenticator names it by (unique).
    pub credential_id: Vec<u8>,
    /// The user handle the authenticator keeps for the account: random,
    /// the same for every passkey of one account.
    pub user_handle: Vec<u8>,
    /// The credential, serialised (JSON) by the WebAuthn library.
    pub credential: String,
    /// The authenticator's signature counter last seen (0 for
    /// authenticators that keep none, as synced passkeys do).
    pub sign_count: i64,
    /// Whether the authenticator may back the passkey up (synced passkeys).
    pub backup_eligible: bool,
    /// Whether it is backed up now.
    pub backup_state: bool,
    /// What the user called it.
    pub label: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl PasskeyRecord {
    /// A passkey of `user_id` registered at `created_at`, never used.
    pub fn new(
        user_id: impl Into<String>,
        credential_id: Vec<u8>,
        user_handle: Vec<u8>,
        credential: String,
        label: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: 0,
            user_id: user_id.into(),
            credential_id,
            user_handle,
            credential,
            sign_count: 0,
            backup_eligible: false,
            backup_state: false,
            label: label.into(),
            created_at,
            last_used_at: None,
        }
    }
}

/// A token to store: [`UserStore::insert_api_token`] assigns its id.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// The user the token signs in.
    pub user_id: String,
    /// What the owner called it.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Storage of accounts and API tokens, implemented by the SQL stores.
#[async_trait]
pub trait UserStore: Debug + Send + Sync + 'static {
    /// Creates the account; `false` if the user name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError>;

    /// The account with this canonical user name.
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Replaces the password hash, bumps the credential version and clears
    /// the failure count and lock; `false` if there is no such account.
    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError>;

    /// Disables or re-enables the account and bumps its credential version;
    /// `false` if there is no such one.
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError>;

    /// Counts one failed sign-in and locks the account as `policy` says, in
    /// one transaction holding the account's row, so concurrent failures
    /// are all counted. Returns the account as updated, `None` if unknown.
    async fn record_failure(
        &self,
        username: &str,
        now: DateTime<Utc>,
        policy: LockoutPolicy,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Clears the failure count and lock after a successful sign-in (no
    /// write when there is nothing to clear).
    async fn clear_failures(&self, username: &str) -> Result<(), StoreError>;

    /// Stores a new API token and returns its id;
    /// [`StoreError::AlreadyExists`] if a token with the same hash exists.
    async fn insert_api_token(&self, token: &NewApiToken) -> Result<i64, StoreError>;

    /// The token with this hash.
    async fn find_api_token(&self, hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError>;

    /// Records that the token was used at `at`.
    async fn touch_api_token(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The user's tokens, oldest first.
    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// Revokes (deletes) one of the user's tokens; `false` if it is not
    /// theirs or does not exist.
    async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError>;

    /// Stores a one-time token. The default refuses: a store that keeps
    /// none cannot mint sign-in links.
    async fn insert_one_time_token(&self, token: &OneTimeToken) -> Result<(), StoreError> {
        let _ = token;
        Err(StoreError::Backend(
            "this store keeps no one-time tokens".into(),
        ))
    }

    /// Deletes the one-time tokens that expired before `now`, used or not;
    /// how many. The default deletes nothing.
    async fn delete_expired_one_time_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }

    /// The one-time token of `hash` for `purpose` if it is unused and
    /// unexpired at `now`, without using it (to show a reset form, say).
    /// The default finds none.
    async fn find_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let _ = (hash, purpose, now);
        Ok(None)
    }

    /// Uses the one-time token of `hash` for `purpose`: marks it used if
    /// it is unused and unexpired at `now`, atomically (of two concurrent
    /// calls exactly one gets it), and returns it; `None` otherwise. The
    /// default finds none.
    async fn take_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let _ = (hash, purpose, now);
        Ok(None)
    }

    /// The account's TOTP enrolment, confirmed or not. The default finds
    /// none: a store that keeps no second factors has accounts without one.
    async fn find_totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        let _ = user_id;
        Ok(None)
    }

    /// Stores a new, unconfirmed TOTP enrolment, replacing an unconfirmed
    /// one of the same account; `false`, and nothing changes, if the
    /// account has a confirmed one. The default refuses.
    async fn insert_totp(&self, record: &TotpRecord) -> Result<bool, StoreError> {
        let _ = record;
        Err(StoreError::Backend(
            "this store keeps no second factors".into(),
        ))
    }

    /// Confirms the account's unconfirmed enrolment whose secret is
    /// `secret` at `at`, recording `step` as used; `false` if there is no
    /// such enrolment (confirmed already, or replaced meanwhile). The
    /// default confirms nothing.
    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        step: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _ = (user_id, secret, step, at);
        Ok(false)
    }

    /// Records that a code of time step `step` was accepted for the
    /// account's confirmed enrolment, if no code of that step or a later one
    /// was: one conditional update, so of two concurrent calls with the same
    /// step exactly one gets `true`. The default accepts none.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let _ = (user_id, step);
        Ok(false)
    }

    /// Deletes the account's TOTP enrolment and recovery codes; whether it
    /// had an enrolment. The default deletes nothing.
    async fn delete_second_factor(&self, user_id: &str) -> Result<bool, StoreError> {
        let _ = user_id;
        Ok(false)
    }

    /// Replaces the account's recovery codes (used or not) by the codes of
    /// `hashes` (SHA-256 of each), at once. The default refuses.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[TokenHash],
    ) -> Result<(), StoreError> {
        let _ = (user_id, hashes);
        Err(StoreError::Backend(
            "this store keeps no second factors".into(),
        ))
    }

    /// The hashes of the account's unused recovery codes. The default finds
    /// none.
    async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        let _ = user_id;
        Ok(Vec::new())
    }

    /// Marks the account's recovery code of `hash` used at `at` if it is
    /// unused, atomically (of two concurrent calls exactly one gets
    /// `true`). The default uses none.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _ = (user_id, hash, at);
        Ok(false)
    }

    /// Stores a remembered device and returns its id. The default refuses:
    /// a store that keeps none cannot remember anybody.
    async fn insert_remembered(&self, device: &RememberedDevice) -> Result<i64, StoreError> {
        let _ = device;
        Err(StoreError::Backend(
            "this store keeps no remember-me series".into(),
        ))
    }

    /// The remembered device of the series with this hash. The default
    /// finds none.
    async fn find_remembered(
        &self,
        series_hash: &TokenHash,
    ) -> Result<Option<RememberedDevice>, StoreError> {
        let _ = series_hash;
        Ok(None)
    }

    /// Replaces the device's token `current` by `next` at `now`, keeping
    /// `current` as the previous one, only if `current` is still its token:
    /// of concurrent rotations exactly one returns `true`. The default
    /// rotates nothing.
    async fn rotate_remembered(
        &self,
        id: i64,
        current: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _ = (id, current, next, now);
        Ok(false)
    }

    /// The user's remembered devices, oldest first. The default has none.
    async fn list_remembered(&self, user_id: &str) -> Result<Vec<RememberedDevice>, StoreError> {
        let _ = user_id;
        Ok(Vec::new())
    }

    /// Forgets one of the user's remembered devices; `false` if it is not
    /// theirs or does not exist. The default forgets nothing.
    async fn delete_remembered(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let _ = (user_id, id);
        Ok(false)
    }

    /// Forgets every remembered device of the user but `except`; how many.
    /// The default forgets nothing.
    async fn delete_remembered_of(
        &self,
        user_id: &str,
        except: Option<i64>,
    ) -> Result<u64, StoreError> {
        let _ = (user_id, except);
        Ok(0)
    }

    /// Deletes the remembered devices that expired before `now`; how
    /// many. The default deletes nothing.
    async fn delete_expired_remembered(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }

    /// Stores a new passkey and returns its id; `None`, and nothing
    /// changes, if its credential id is registered already (to anyone).
    /// The default refuses.
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<Option<i64>, StoreError> {
        let _ = passkey;
        Err(StoreError::Backend("this store keeps no passkeys".into()))
    }

    /// The passkey with this credential id. The default finds none.
    async fn find_passkey(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        let _ = credential_id;
        Ok(None)
    }

    /// The account's passkeys, oldest first. The default has none.
    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let _ = user_id;
        Ok(Vec::new())
    }

    /// Records a sign-in with the passkey `used` (its id, and its
    /// `credential`, `sign_count`, backup flags and `last_used_at` as they
    /// are after it) only if its signature counter moved forward: the
    /// stored counter is below `used.sign_count`, or both are 0 (an
    /// authenticator that keeps no counter). One conditional update, so of
    /// two concurrent sign-ins with one counter value exactly one gets
    /// `true`. The default records none.
    async fn use_passkey(&self, used: &PasskeyRecord) -> Result<bool, StoreError> {
        let _ = used;
        Ok(false)
    }

    /// Deletes one of the account's passkeys; `false` if it is not theirs
    /// or does not exist. The default deletes nothing.
    async fn delete_passkey(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let _ = (user_id, id);
        Ok(false)
    }
}
