//! [`SecondFactor`]: half-open sign-ins, TOTP and recovery codes.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use subtle::ConstantTimeEq as _;

use super::{AccountError, AuthenticationError, LockoutPolicy, PasswordAuthenticator, method};
use crate::clock::Clock;
use crate::store::{TotpRecord, UserStore};
use crate::{Login, Session, SessionError};

/// The session value that holds a half-open sign-in. Reserved: an
/// application must not write it.
pub const PENDING_KEY: &str = "keycard.pending";

/// How long a half-open sign-in waits for its second factor by default.
pub const DEFAULT_PENDING_FOR: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// How many recovery codes an enrolment gets.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// The length of a TOTP time step, in seconds (the apps' default).
const STEP_SECONDS: i64 = 30;
/// The bytes of a new TOTP secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;

mod codes;
mod types;

pub(crate) use codes::random_bytes;
use codes::{RECOVERY_ALPHABET, RECOVERY_CHARS, digits_of, recovery_hash};
use types::PendingValue;
pub use types::{Factor, Factors, Pending, RecoveryCodes, SignInStep, TotpEnrolment};

/// A second factor for the accounts of a [`PasswordAuthenticator`]: TOTP
/// (RFC 6238, the codes of authenticator apps) with single-use recovery
/// codes, and half-open sign-ins that wait for it.
///
/// * **Half-open sign-ins.** A right password for an account with a second
///   factor does not sign the session in: [`sign_in`](Self::sign_in) (or
///   [`begin`](Self::begin)) records a [`Pending`] sign-in as a session
///   value under [`PENDING_KEY`] and gives the session a fresh token. The
///   session stays anonymous to every guard and to
///   [`Session::user_id`]; the per-user session limit and "your sessions"
///   see nothing of it, so a stolen password alone ends none of the
///   owner's sessions. It waits [`pending_for`](Self::pending_for) (5
///   minutes by default) for the code; completing it signs in with a fresh
///   token, with the method [`method::TOTP`] or [`method::RECOVERY_CODE`].
/// * **TOTP.** SHA-1, 6 digits, 30 second steps, the step before and the
///   step after accepted too, by keycard's [`Clock`]. Each code is accepted
///   once: the last step used is stored and moved forward by one
///   conditional update, so of concurrent requests with one code exactly
///   one passes. An enrolment is shown once ([`TotpEnrolment`]) and takes
///   effect when a first valid code confirms it.
/// * **Recovery codes.** [`RECOVERY_CODE_COUNT`] codes come with the
///   confirmation, stored as SHA-256, compared in constant time, each used
///   at most once (atomically too).
/// * **Lockout.** A wrong, malformed or replayed code counts toward the
///   account's [`LockoutPolicy`] lockout, the same count a wrong password
///   adds to; a locked account refuses even a right code; a completed
///   sign-in clears the count. A right password alone no longer clears it
///   for an account with a second factor, so that guessing codes between
///   passwords gains nothing.
/// * **HTTP Basic** is refused for an account with a second factor, like a
///   wrong password, unless the application allows it for that account
///   ([`PasswordAuthenticator::allow_basic_with_second_factor`]); API
///   clients should rather use [`ApiTokens`](super::ApiTokens).
/// * A password change or a disabled account leaves the second factor in
///   place; [`remove`](Self::remove) (with the password) or
///   [`remove_for`](Self::remove_for) (an administrator) takes it away.
///
/// **The secret at rest.** TOTP secrets are stored as they are, in
/// `<table>_totp`, protected only by the database's own access control:
/// the server must read them to check a code, so a key kept beside the
/// database would protect nothing, and a key kept elsewhere is a key
/// management scheme keycard does not pretend to provide. A deployment
/// should restrict who can read that table and its backups (a database
/// role of its own, encrypted disks and backups); whoever reads it can
/// compute the codes, but still needs the password.
///
/// ```
/// use axum::extract::{Form, State};
/// use axum::response::{IntoResponse, Redirect, Response};
/// use axum::{Router, routing::post};
/// use keycard::Session;
/// use keycard::auth::{AccountError, PasswordAuthenticator, SecondFactor, SignInStep, method};
///
/// #[derive(Clone)]
/// struct Auth {
///     passwords: PasswordAuthenticator,
///     factors: SecondFactor,
/// }
///
/// #[derive(serde::Deserialize)]
/// struct SignIn {
///     user: String,
///     password: String,
/// }
///
/// // `POST /login`: the password first, then perhaps a code.
/// async fn login(
///     State(auth): State<Auth>,
///     session: Session,
///     Form(form): Form<SignIn>,
/// ) -> Result<Response, keycard::Error> {
///     let Ok(user) = auth.passwords.verify(&form.user, &form.password).await else {
///         return Ok("Wrong user name or password.".into_response());
///     };
///     Ok(match auth.factors.sign_in(&session, &user, method::PASSWORD).await? {
///         SignInStep::Done => Redirect::to("/").into_response(),
///         // The session is anonymous until the code comes.
///         SignInStep::SecondFactorDue(_) => Redirect::to("/login/code").into_response(),
///     })
/// }
///
/// #[derive(serde::Deserialize)]
/// struct Code {
///     code: String,
/// }
///
/// // `POST /login/code`: the code of the authenticator app.
/// async fn code(
///     State(auth): State<Auth>,
///     session: Session,
///     Form(form): Form<Code>,
/// ) -> Result<Response, keycard::Error> {
///     match auth.factors.complete_with_totp(&session, &form.code).await {
///         Ok(()) => Ok(Redirect::to("/").into_response()),
///         Err(AccountError::WrongCode) => Ok("Wrong code.".into_response()),
///         Err(AccountError::NoPendingSignIn) => Ok(Redirect::to("/login").into_response()),
///         Err(other) => Err(other.into()),
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use keycard::{SessionLayer, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let layer = SessionLayer::new(store.clone());
/// let passwords = PasswordAuthenticator::new(store, layer.admin());
/// // Same store, lockout and clock as the passwords.
/// let factors = SecondFactor::new(passwords.clone()).issuer("Example");
/// passwords.create_user("ada", "a long secret").await?;
/// assert!(!factors.has_second_factor("ada").await?);
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/login/code", post(code))
///     .with_state(Auth { passwords, factors })
///     .layer(layer);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(run()).expect("example");
/// ```
#[derive(Clone, Debug)]
pub struct SecondFactor {
    passwords: PasswordAuthenticator,
    store: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    pending_for: TimeDelta,
    issuer: Option<String>,
}

/// The proof a half-open sign-in is completed with.
#[derive(Clone, Copy)]
enum Proof<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

impl SecondFactor {
    /// Second factors for the accounts of `passwords`, in its store, under
    /// its lockout policy and clock.
    pub fn new(passwords: PasswordAuthenticator) -> Self {
        Self {
            store: passwords.store(),
            clock: passwords.time(),
            passwords,
            pending_for: TimeDelta::minutes(5),
            issuer: None,
        }
    }

    /// Dates half-open sign-ins and computes codes with `clock` (by default
    /// the [`PasswordAuthenticator`]'s).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// [`clock`](Self::clock), shared.
    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a half-open sign-in waits for its second factor (default
    /// [`DEFAULT_PENDING_FOR`], 5 minutes).
    pub fn pending_for(mut self, bound: std::time::Duration) -> Self {
        self.pending_for = TimeDelta::from_std(bound).unwrap_or(TimeDelta::minutes(5));
        self
    }

    /// The name authenticator apps show beside the account (the site's
    /// name); a `:`, which the URI format cannot carry, is left out.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer: String = issuer.into().chars().filter(|c| *c != ':').collect();
        self.issuer = (!issuer.is_empty()).then_some(issuer);
        self
    }

    /// Whether `username` has a confirmed second factor.
    pub async fn has_second_factor(&self, username: &str) -> Result<bool, AccountError> {
        self.passwords.has_second_factor(username).await
    }

    /// After a first factor proved `user_id` (a password checked with
    /// [`PasswordAuthenticator::verify`]): signs the session in with
    /// `method` if the account has no second factor, or else
    /// [`begin`](Self::begin)s a half-open sign-in.
    pub async fn sign_in(
        &self,
        session: &Session,
        user_id: &str,
        method: &str,
    ) -> Result<SignInStep, AccountError> {
        if session.is_request_only() {
            return Err(SessionError::RequestOnly.into());
        }
        let factors = self.passwords.second_factors(user_id).await?;
        if !factors.is_empty() {
            let pending = self.begin(session, user_id).await?;
            return Ok(SignInStep::SecondFactorDue(pending.factors));
        }
        session
            .login_with(Login::new(user_id).method(method))
            .await?;
        Ok(SignInStep::Done)
    }

    /// Makes `session` a half-open sign-in of `user_id`, waiting for one of
    /// its second factors: anonymous, with a fresh token (a session that was signed
    /// in is ended and a new one started, so nothing of it carries over).
    /// Call it only after a first factor proved `user_id`.
    pub async fn begin(&self, session: &Session, user_id: &str) -> Result<Pending, AccountError> {
        if session.is_request_only() {
            return Err(SessionError::RequestOnly.into());
        }
        let account = self.passwords.account(user_id).await?;
        let account = account
            .filter(|a| !a.disabled)
            .ok_or(AccountError::NotSignedIn)?;
        if session.user_id().await?.is_some() {
            session.logout().await?;
        } else {
            session.regenerate().await?;
        }
        let now = self.now();
        let factors = self.passwords.second_factors(&account.username).await?;
        let value = PendingValue {
            user: account.username.clone(),
            factor: factors.encode(),
            since: now.timestamp_micros(),
            version: account.credential_version,
        };
        session.insert(PENDING_KEY, &value).await?;
        tracing::info!(user = %account.username, "keycard: second factor due");
        Ok(self.pending_of(value).unwrap_or(Pending {
            user_id: account.username,
            factors,
            started_at: now,
            expires_at: now + self.pending_for,
        }))
    }

    /// The session's half-open sign-in, if it has one that has not
    /// expired.
    pub async fn pending(&self, session: &Session) -> Result<Option<Pending>, AccountError> {
        if session.is_request_only() {
            return Ok(None);
        }
        let value = read_pending(session).await?;
        let now = self.now();
        Ok(value
            .and_then(|value| self.pending_of(value))
            .filter(|pending| now < pending.expires_at))
    }

    /// Completes the session's half-open sign-in with a TOTP `code` (6
    /// digits; spaces are ignored): signs in with a fresh token and the
    /// method [`method::TOTP`]. A wrong, malformed or already used code,
    /// or a locked account, is [`AccountError::WrongCode`] and counts
    /// toward the lockout; no half-open sign-in, or an expired one, is
    /// [`AccountError::NoPendingSignIn`]. Nothing is signed in half-way.
    pub async fn complete_with_totp(
        &self,
        session: &Session,
        code: &str,
    ) -> Result<(), AccountError> {
        self.complete(session, Proof::Totp(code)).await
    }

    /// Completes the session's half-open sign-in with one of the account's
    /// recovery codes (dashes, spaces and case are ignored), which is used
    /// up: as [`complete_with_totp`](Self::complete_with_totp), with the
    /// method [`method::RECOVERY_CODE`].
    pub async fn complete_with_recovery_code(
        &self,
        session: &Session,
        code: &str,
    ) -> Result<(), AccountError> {
        self.complete(session, Proof::RecoveryCode(code)).await
    }

    /// Starts a TOTP enrolment for the user signed in to `session`, shown
    /// once; it replaces an unconfirmed one, and takes effect when
    /// [`confirm_totp`](Self::confirm_totp) sees a first valid code.
    /// [`AccountError::AlreadyEnrolled`] if the account has a confirmed one
    /// ([`remove`](Self::remove) it first). Guard the route with
    /// [`RequireRecentAuth`](super::RequireRecentAuth).
    pub async fn enrol_totp(&self, session: &Session) -> Result<TotpEnrolment, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        // Only the accounts of the password authenticator: a user named by
        // a proxy or an API token alone never signs in with a code.
        if self.passwords.account(&user).await?.is_none() {
            return Err(AccountError::NotSignedIn);
        }
        let mut secret = vec![0u8; SECRET_BYTES];
        random_bytes(&mut secret)?;
        let record = TotpRecord::new(user.clone(), secret.clone(), self.now());
        if !self.store.insert_totp(&record).await? {
            return Err(AccountError::AlreadyEnrolled);
        }
        // A fresh secret of 20 bytes always makes a TOTP; the error is for
        // form's sake.
        let totp = self.totp(secret, &user).ok_or(AccountError::Randomness)?;
        let base32 = totp.secret().to_base32();
        // The account name is a canonical user name, which has no `:`, and
        // the issuer had its `:` removed: the URI is always made.
        let uri = totp.to_url().map_err(|_| AccountError::InvalidUsername)?;
        tracing::info!(user = %user, "keycard: TOTP enrolment started");
        Ok(TotpEnrolment { totp, base32, uri })
    }

    /// Confirms the signed-in user's TOTP enrolment with a first valid
    /// `code`: from now on the account has a second factor. Returns its
    /// [`RECOVERY_CODE_COUNT`] recovery codes, to show once.
    /// [`AccountError::WrongCode`] for a wrong code (not counted toward the
    /// lockout: the session is signed in, and the secret was just shown to
    /// it), [`AccountError::NotEnrolled`] if there is nothing to confirm.
    pub async fn confirm_totp(
        &self,
        session: &Session,
        code: &str,
    ) -> Result<RecoveryCodes, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        let record = self.store.find_totp(&user).await?;
        let Some(record) = record.filter(|r| r.confirmed_at.is_none()) else {
            return Err(AccountError::NotEnrolled);
        };
        let now = self.now();
        let Some(step) = self.matching_step(&record, code, now) else {
            return Err(AccountError::WrongCode);
        };
        if !self
            .store
            .confirm_totp(&user, &record.secret, step, now)
            .await?
        {
            return Err(AccountError::NotEnrolled);
        }
        tracing::info!(user = %user, "keycard: TOTP enrolment confirmed");
        self.new_recovery_codes(&user).await
    }

    /// Replaces the signed-in user's recovery codes by new ones, after
    /// checking their `password` (a wrong one counts toward the lockout
    /// and is [`AccountError::WrongPassword`]).
    pub async fn regenerate_recovery_codes(
        &self,
        session: &Session,
        password: &str,
    ) -> Result<RecoveryCodes, AccountError> {
        let user = self.confirm_password(session, password).await?;
        if !self.has_second_factor(&user).await? {
            return Err(AccountError::NotEnrolled);
        }
        self.new_recovery_codes(&user).await
    }

    /// How many unused recovery codes `username` has left.
    pub async fn recovery_codes_left(&self, username: &str) -> Result<usize, AccountError> {
        let Some(canonical) = PasswordAuthenticator::canonical_username(username) else {
            return Ok(0);
        };
        Ok(self.store.unused_recovery_codes(&canonical).await?.len())
    }

    /// Removes the signed-in user's second factor (TOTP and recovery
    /// codes), after checking their `password` (a wrong one counts toward
    /// the lockout and is [`AccountError::WrongPassword`]). Whether there
    /// was one.
    pub async fn remove(&self, session: &Session, password: &str) -> Result<bool, AccountError> {
        let user = self.confirm_password(session, password).await?;
        self.remove_for(&user).await
    }

    /// Removes `username`'s second factor (an administrator's help for a
    /// user who lost both the app and the codes). Whether there was one.
    pub async fn remove_for(&self, username: &str) -> Result<bool, AccountError> {
        let canonical = PasswordAuthenticator::canonical_username(username)
            .ok_or(AccountError::InvalidUsername)?;
        let removed = self.store.delete_second_factor(&canonical).await?;
        if removed {
            tracing::info!(user = %canonical, "keycard: second factor removed");
        }
        Ok(removed)
    }

    /// The half-open sign-in's completion with a code.
    async fn complete(&self, session: &Session, proof: Proof<'_>) -> Result<(), AccountError> {
        let method = match proof {
            Proof::Totp(_) => method::TOTP,
            Proof::RecoveryCode(_) => method::RECOVERY_CODE,
        };
        self.complete_with(session, method, async |user: &str, now| match proof {
            Proof::Totp(code) => self.use_totp(user, code, now).await,
            Proof::RecoveryCode(code) => self.use_recovery_code(user, code, now).await,
        })
        .await
    }

    /// Completes the session's half-open sign-in with whatever `prove`
    /// checks (given the pending user and the time): signs in with
    /// `method` if it answers `true`, counts a failure toward the lockout
    /// and answers [`AccountError::WrongCode`] if `false`. `prove` is not
    /// called for a locked account (a right proof stays unused).
    pub(crate) async fn complete_with(
        &self,
        session: &Session,
        method: &'static str,
        prove: impl AsyncFnOnce(&str, DateTime<Utc>) -> Result<bool, AccountError>,
    ) -> Result<(), AccountError> {
        if session.is_request_only() {
            return Err(SessionError::RequestOnly.into());
        }
        let now = self.now();
        let value = read_pending(session).await?;
        let Some(value) = value else {
            return Err(AccountError::NoPendingSignIn);
        };
        let version = value.version;
        let pending = self.pending_of(value).filter(|p| now < p.expires_at);
        let Some(pending) = pending else {
            session.remove(PENDING_KEY).await?;
            return Err(AccountError::NoPendingSignIn);
        };
        let user = pending.user_id;
        let account = self.store.find_user(&user).await?;
        let Some(account) = account.filter(|a| !a.disabled && a.credential_version == version)
        else {
            // Disabled, or its password changed, since the first factor.
            session.remove(PENDING_KEY).await?;
            return Err(AccountError::NoPendingSignIn);
        };
        let proven =
            !LockoutPolicy::is_locked(account.locked_until, now) && prove(&user, now).await?;
        if !proven {
            let lockout = self.passwords.lockout_policy();
            let updated = self.store.record_failure(&user, now, lockout).await?;
            if let Some(u) = updated.filter(|u| u.locked_until != account.locked_until) {
                tracing::warn!(user = %u.username, failures = u.failures, "keycard: account locked");
            }
            tracing::info!(user = %user, "keycard: second factor refused");
            return Err(AccountError::WrongCode);
        }
        self.store.clear_failures(&user).await?;
        session.remove(PENDING_KEY).await?;
        session
            .login_with(Login::new(user.clone()).method(method))
            .await?;
        tracing::info!(user = %user, method, "keycard: signed in with a second factor");
        Ok(())
    }

    /// Accepts a TOTP `code` of `user` once: whether it matched a step
    /// after the last one used and this call moved the account to it.
    async fn use_totp(
        &self,
        user: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, AccountError> {
        let record = self.store.find_totp(user).await?;
        let Some(record) = record.filter(|r| r.confirmed_at.is_some()) else {
            return Ok(false);
        };
        let Some(step) = self.matching_step(&record, code, now) else {
            return Ok(false);
        };
        Ok(self.store.use_totp_step(user, step).await?)
    }

    /// Uses a recovery `code` of `user`: whether it was one of the unused
    /// ones and this call used it.
    async fn use_recovery_code(
        &self,
        user: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, AccountError> {
        let Some(hash) = recovery_hash(code) else {
            return Ok(false);
        };
        let unused = self.store.unused_recovery_codes(user).await?;
        // Every stored hash is compared, in constant time: neither the
        // answer nor its timing tells how close a guess came.
        let found = unused
            .iter()
            .fold(false, |found, stored| found | stored.ct_eq(&hash));
        if !found {
            return Ok(false);
        }
        let used = self.store.use_recovery_code(user, &hash, now).await?;
        if used {
            tracing::info!(user = %user, "keycard: recovery code used");
        }
        Ok(used)
    }

    /// The step after `record`'s last used one, within one step of `now`,
    /// whose code `code` is; `None` for malformed input.
    fn matching_step(&self, record: &TotpRecord, code: &str, now: DateTime<Utc>) -> Option<i64> {
        let code = digits_of(code)?;
        let totp = self.totp(record.secret.clone(), &record.user_id)?;
        let current = now.timestamp().div_euclid(STEP_SECONDS);
        let mut matched = None;
        // All three steps are computed and compared, whatever matches.
        for step in current - 1..=current + 1 {
            let fresh = record.last_step.is_none_or(|last| step > last);
            let Ok(at) = u64::try_from(step * STEP_SECONDS) else {
                continue;
            };
            let expected = totp.generate(at).to_string();
            let equal: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if equal && fresh && matched.is_none() {
                matched = Some(step);
            }
        }
        matched
    }

    /// The TOTP of `secret` for `user` (SHA-1, 6 digits, 30 s, ±1 step);
    /// `None` for a secret too short to be one of keycard's.
    fn totp(&self, secret: Vec<u8>, user: &str) -> Option<totp_rs::Totp> {
        totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(secret)
            .with_account_name(user)
            .with_issuer(self.issuer.as_deref())
            .build()
            .ok()
    }

    /// New recovery codes for `user`, replacing the old ones.
    pub(crate) async fn new_recovery_codes(
        &self,
        user: &str,
    ) -> Result<RecoveryCodes, AccountError> {
        let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let mut bytes = [0u8; RECOVERY_CHARS];
            random_bytes(&mut bytes)?;
            let plain: String = bytes
                .iter()
                .map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)]))
                .collect();
            // `plain` is made of the alphabet: it always hashes.
            hashes.push(recovery_hash(&plain).ok_or(AccountError::Randomness)?);
            codes.push(format!("{}-{}-{}", &plain[..4], &plain[4..8], &plain[8..]));
        }
        self.store.replace_recovery_codes(user, &hashes).await?;
        tracing::info!(user = %user, "keycard: new recovery codes");
        Ok(RecoveryCodes(codes))
    }

    /// The user signed in to `session`, after their `password` was checked.
    async fn confirm_password(
        &self,
        session: &Session,
        password: &str,
    ) -> Result<String, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        match self.passwords.verify(&user, password).await {
            Ok(user) => Ok(user),
            Err(AuthenticationError::Unavailable(reason)) => Err(AccountError::Unavailable(reason)),
            Err(_) => Err(AccountError::WrongPassword),
        }
    }

    /// A stored half-open sign-in, read back; `None` if it is not one of
    /// keycard's.
    fn pending_of(&self, value: PendingValue) -> Option<Pending> {
        let factors = Factors::decode(&value.factor)?;
        let started_at = DateTime::from_timestamp_micros(value.since)?;
        Some(Pending {
            user_id: value.user,
            factors,
            started_at,
            expires_at: started_at.checked_add_signed(self.pending_for)?,
        })
    }

    /// The password authenticator the factors are of.
    #[cfg_attr(not(feature = "passkeys"), allow(dead_code))]
    pub(crate) fn passwords(&self) -> &PasswordAuthenticator {
        &self.passwords
    }

    /// The time, at the precision the stores keep.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        crate::clock::to_micros(self.clock.now())
    }
}

/// The session's half-open sign-in value; `None` if it has none, holds
/// something else under the key, or is signed in: a half-open sign-in left
/// behind when the session signed in another way (a sign-in keeps an
/// anonymous session's values) is over, and must never switch the session
/// to its user.
async fn read_pending(session: &Session) -> Result<Option<PendingValue>, SessionError> {
    if session.user_id().await?.is_some() {
        return Ok(None);
    }
    let value = session.get_value(PENDING_KEY).await?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}
