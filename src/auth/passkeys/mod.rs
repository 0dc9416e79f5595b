//! [`Passkeys`]: WebAuthn credentials as a first factor or a second one
//! (feature `passkeys`).
//!
//! A passkey is a key pair an authenticator (the phone, the laptop's
//! platform authenticator, a security key, a password manager) makes for
//! one site; the site keeps the public half. Signing in is two
//! *ceremonies* of two requests each: the server hands the browser a
//! challenge (`start_…`), the page passes it to
//! `navigator.credentials.create()` or `.get()`, and posts the answer back
//! (`finish_…`). keycard keeps each ceremony's challenge in the session
//! row, server-side (never in a cookie), checks it once, and keeps the
//! passkeys in `<table>_passkeys`.
//!
//! * **Registration** ([`start_registration`](Passkeys::start_registration),
//!   [`finish_registration`](Passkeys::finish_registration)) needs a
//!   signed-in account of the [`PasswordAuthenticator`]; guard the route
//!   with [`RequireRecentAuth`](super::RequireRecentAuth). A credential is
//!   registered once, to one account. The account's first second factor
//!   comes with recovery codes.
//! * **Sign-in with a passkey alone**
//!   ([`start_sign_in`](Passkeys::start_sign_in),
//!   [`finish_sign_in`](Passkeys::finish_sign_in)): the browser offers the
//!   user their passkeys for the site, no user name typed. The
//!   authenticator verified the user (PIN, fingerprint, face), so the
//!   passkey is two factors in itself: the session is signed in with
//!   [`method::PASSKEY`], which counts as a recent sign-in, and no TOTP
//!   code is asked for.
//! * **As a second factor**: an account with a passkey has a second factor
//!   ([`PasswordAuthenticator::second_factors`]); after its password,
//!   [`SecondFactor::sign_in`] leaves the session half-open, and
//!   [`start_second_factor`](Passkeys::start_second_factor) /
//!   [`complete_second_factor`](Passkeys::complete_second_factor) complete
//!   it with one of the account's passkeys ([`method::PASSWORD_AND_PASSKEY`]).
//! * **Failures** of a known passkey (a bad signature, a counter that did
//!   not advance, a locked account) count toward the account's lockout, as
//!   a wrong password does; a disabled account never signs in.
//! * **Listing and removal**: [`list`](Passkeys::list),
//!   [`remove`](Passkeys::remove) (guard it with `RequireRecentAuth` too).
//!
//! The browser side is a few lines of JavaScript: the JSON of
//! `start_…` has binary fields in base64url, which `navigator.credentials`
//! wants as `ArrayBuffer`s (`PublicKeyCredential.parseCreationOptionsFromJSON`
//! and `.parseRequestOptionsFromJSON` convert them where the browser has
//! them), and the credential it returns is posted back as JSON (its
//! `toJSON()`). The demo (`examples/demo/`) has a complete page.
//!
//! ```
//! use axum::extract::State;
//! use axum::{Json, Router, routing::post};
//! use keycard::Session;
//! use keycard::auth::{
//!     AccountError, PasskeyConfig, Passkeys, PasswordAuthenticator, SecondFactor,
//! };
//! use webauthn_rs::prelude::{PublicKeyCredential, RequestChallengeResponse};
//!
//! // `POST /passkey/begin`: the challenge, for `navigator.credentials.get()`.
//! async fn begin(
//!     State(passkeys): State<Passkeys>,
//!     session: Session,
//! ) -> Result<Json<RequestChallengeResponse>, AccountError> {
//!     Ok(Json(passkeys.start_sign_in(&session).await?))
//! }
//!
//! // `POST /passkey/finish`: the browser's answer; signed in if it verifies.
//! async fn finish(
//!     State(passkeys): State<Passkeys>,
//!     session: Session,
//!     Json(answer): Json<PublicKeyCredential>,
//! ) -> Result<&'static str, AccountError> {
//!     passkeys.finish_sign_in(&session, &answer).await?;
//!     Ok("signed in")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use keycard::{SessionLayer, SqliteStore};
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let layer = SessionLayer::new(store.clone());
//! let passwords = PasswordAuthenticator::new(store, layer.admin());
//! let config = PasskeyConfig::new("example.com", "https://example.com").name("Example");
//! let passkeys = Passkeys::new(SecondFactor::new(passwords), config)?;
//! let app: Router = Router::new()
//!     .route("/passkey/begin", post(begin))
//!     .route("/passkey/finish", post(finish))
//!     .with_state(passkeys)
//!     .layer(layer);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(run()).expect("example");
//! ```

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::second_factor::{PENDING_KEY, random_bytes};
use super::{AccountError, Factor, LockoutPolicy, PasswordAuthenticator, SecondFactor, method};
use crate::store::{PasskeyRecord, StoreError, UserStore};
use crate::{Login, Session};

mod ceremony;
mod config;
mod types;

pub use ceremony::CEREMONY_KEY;
use ceremony::Kind;
pub use config::{DEFAULT_CEREMONY_TIMEOUT, PasskeyConfig, PasskeyConfigError};
pub use types::{PasskeyInfo, PasskeyRegistered};

/// The most passkeys one account may have: every one of them goes into
/// the second-factor ceremony's state, which a session row holds.
pub const MAX_PASSKEYS: usize = 32;

/// The longest label kept, in characters.
const MAX_LABEL_CHARS: usize = 100;
/// The label of a passkey registered without one.
const DEFAULT_LABEL: &str = "Passkey";

/// Passkeys for the accounts of a [`PasswordAuthenticator`]: see the
/// [module docs](self) for the ceremonies and an example.
#[derive(Clone)]
pub struct Passkeys {
    factors: SecondFactor,
    store: Arc<dyn UserStore>,
    webauthn: Arc<Webauthn>,
    ceremony_for: TimeDelta,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("origins", &self.webauthn.get_allowed_origins())
            .field("ceremony_for", &self.ceremony_for)
            .finish_non_exhaustive()
    }
}

impl Passkeys {
    /// Passkeys for the accounts of `factors`' password authenticator, in
    /// its store, under its lockout and clock, as the relying party
    /// `config` describes. [`PasskeyConfigError`] if an origin is not a URL
    /// or the relying-party id is not its domain.
    pub fn new(factors: SecondFactor, config: PasskeyConfig) -> Result<Self, PasskeyConfigError> {
        let origins = config
            .origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| PasskeyConfigError(format!("origin `{o}`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, others)) = origins.split_first() else {
            return Err(PasskeyConfigError("no origin".to_owned()));
        };
        let refused = |e: webauthn_rs::prelude::WebauthnError| {
            PasskeyConfigError(format!(
                "relying party `{}` for origin `{first}`: {e}",
                config.rp_id
            ))
        };
        let mut builder = WebauthnBuilder::new(&config.rp_id, first)
            .map_err(refused)?
            .allow_any_port(config.any_port)
            .timeout(config.timeout);
        for origin in others {
            builder = builder.append_allowed_origin(origin);
        }
        if let Some(name) = &config.name {
            builder = builder.rp_name(name);
        }
        let webauthn = builder.build().map_err(refused)?;
        Ok(Self {
            store: factors.passwords().store(),
            ceremony_for: TimeDelta::from_std(config.timeout).unwrap_or(TimeDelta::minutes(5)),
            webauthn: Arc::new(webauthn),
            factors,
        })
    }

    /// Starts registering a passkey for the user signed in to `session`:
    /// the options to pass to `navigator.credentials.create()`.
    /// [`AccountError::TooManyPasskeys`] at [`MAX_PASSKEYS`]. The
    /// account's passkeys are excluded (an authenticator registers once),
    /// and the authenticator is asked for a discoverable credential, so
    /// that the passkey can sign in without a user name.
    pub async fn start_registration(
        &self,
        session: &Session,
    ) -> Result<CreationChallengeResponse, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        // Only the accounts of the password authenticator: a user named by
        // a proxy or an API token alone has no account to add a passkey to.
        let account = self.factors.passwords().account(&user).await?;
        let account = account.ok_or(AccountError::NotSignedIn)?;
        let existing = self.store.list_passkeys(&account.username).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(AccountError::TooManyPasskeys);
        }
        let handle = match existing.first() {
            Some(passkey) => passkey.user_handle.clone(),
            None => {
                let mut handle = vec![0u8; 16];
                random_bytes(&mut handle)?;
                handle
            }
        };
        let uuid =
            Uuid::from_slice(&handle).map_err(|_| corrupt("a user handle is not 16 bytes"))?;
        let exclude = existing.iter().map(|p| p.credential_id.clone()).collect();
        let shown = if account.display_name.is_empty() {
            &account.username
        } else {
            &account.display_name
        };
        let (options, state) = self
            .webauthn
            .start_passkey_registration(uuid, &account.username, shown, Some(exclude))
            .map_err(|e| {
                tracing::warn!(error = %e, "keycard: passkey registration could not start");
                AccountError::PasskeyRefused
            })?;
        let options = prefer_discoverable(options);
        let now = self.factors.now();
        ceremony::begin(
            session,
            Kind::Register,
            Some(&account.username),
            &handle,
            &state,
            now,
        )
        .await?;
        Ok(options)
    }

    /// Finishes the registration [`start_registration`](Self::start_registration)
    /// began on this session, with the browser's `response`, naming the
    /// passkey `label` (trimmed, control characters removed, at most 100
    /// characters; "Passkey" if empty). [`AccountError::PasskeyRefused`]
    /// if the response does not verify, [`AccountError::PasskeyExists`] if
    /// the credential is registered already,
    /// [`AccountError::NoPasskeyCeremony`] if no registration waits (or it
    /// expired, or another user signed in meanwhile).
    pub async fn finish_registration(
        &self,
        session: &Session,
        response: &RegisterPublicKeyCredential,
        label: &str,
    ) -> Result<PasskeyRegistered, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        // The account's name as the registration began it.
        let user = PasswordAuthenticator::canonical_username(&user).unwrap_or(user);
        let now = self.factors.now();
        let taken =
            ceremony::take::<PasskeyRegistration>(session, Kind::Register, self.ceremony_for, now);
        let ceremony = taken.await?;
        if ceremony.user.as_deref() != Some(user.as_str()) {
            return Err(AccountError::NoPasskeyCeremony);
        }
        let passkey = self
            .webauthn
            .finish_passkey_registration(response, &ceremony.state)
            .map_err(|e| {
                tracing::info!(user = %user, error = %e, "keycard: passkey registration refused");
                AccountError::PasskeyRefused
            })?;
        let had_factor = self.factors.has_second_factor(&user).await?;
        let record = PasskeyRecord::new(
            user.clone(),
            passkey.cred_id().to_vec(),
            ceremony.handle,
            encode(&passkey)?,
            clean_label(label),
            now,
        );
        let Some(id) = self.store.insert_passkey(&record).await? else {
            return Err(AccountError::PasskeyExists);
        };
        tracing::info!(user = %user, passkey = id, "keycard: passkey registered");
        let recovery_codes = if had_factor {
            None
        } else {
            Some(self.factors.new_recovery_codes(&user).await?)
        };
        let mut passkey = PasskeyInfo::from(&record);
        passkey.id = id;
        Ok(PasskeyRegistered {
            passkey,
            recovery_codes,
        })
    }

    /// Starts a sign-in with a passkey alone: the options to pass to
    /// `navigator.credentials.get()`, which let the user pick any of their
    /// passkeys for the site (no user name). The options ask for a modal
    /// prompt; set their `mediation` to conditional for the autofill UI.
    pub async fn start_sign_in(
        &self,
        session: &Session,
    ) -> Result<RequestChallengeResponse, AccountError> {
        let (mut options, state) =
            self.webauthn
                .start_discoverable_authentication()
                .map_err(|e| {
                    tracing::warn!(error = %e, "keycard: passkey sign-in could not start");
                    AccountError::PasskeyRefused
                })?;
        options.mediation = None;
        let now = self.factors.now();
        ceremony::begin(session, Kind::SignIn, None, &[], &state, now).await?;
        Ok(options)
    }

    /// Finishes the sign-in [`start_sign_in`](Self::start_sign_in) began on
    /// this session with the browser's `response`: signs the session in
    /// (with a fresh token) as the passkey's account, with
    /// [`method::PASSKEY`]. [`AccountError::PasskeyRefused`] for a passkey
    /// keycard does not know, one that does not verify (counted toward the
    /// lockout), or a disabled or locked account;
    /// [`AccountError::NoPasskeyCeremony`] if no sign-in waits.
    pub async fn finish_sign_in(
        &self,
        session: &Session,
        response: &PublicKeyCredential,
    ) -> Result<(), AccountError> {
        let now = self.factors.now();
        let taken = ceremony::take::<DiscoverableAuthentication>(
            session,
            Kind::SignIn,
            self.ceremony_for,
            now,
        );
        let ceremony = taken.await?;
        let Some(record) = self
            .store
            .find_passkey(response.get_credential_id())
            .await?
        else {
            tracing::info!("keycard: sign-in with an unknown passkey refused");
            return Err(AccountError::PasskeyRefused);
        };
        let user = record.user_id.clone();
        let account = self.store.find_user(&user).await?;
        let Some(account) = account.filter(|a| !a.disabled) else {
            tracing::info!(user = %user, "keycard: passkey of a disabled account refused");
            return Err(AccountError::PasskeyRefused);
        };
        // The authenticator names the account too; it must be the one the
        // credential was registered to.
        let handle_matches = response
            .get_user_unique_id()
            .is_none_or(|handle| handle == record.user_handle.as_slice());
        let proven = handle_matches
            && !LockoutPolicy::is_locked(account.locked_until, now)
            && self
                .verify(&record, now, |passkey| {
                    self.webauthn.finish_discoverable_authentication_v2(
                        response,
                        ceremony.state,
                        passkey,
                    )
                })
                .await?;
        if !proven {
            return self.refuse(&user, account.locked_until, now).await;
        }
        self.store.clear_failures(&user).await?;
        // A half-open password sign-in of this browser is over too.
        session.remove(PENDING_KEY).await?;
        session
            .login_with(Login::new(user.clone()).method(method::PASSKEY))
            .await?;
        tracing::info!(user = %user, passkey = record.id, "keycard: signed in with a passkey");
        Ok(())
    }

    /// Starts completing the session's half-open sign-in with a passkey:
    /// the options for `navigator.credentials.get()`, listing the pending
    /// account's passkeys. [`AccountError::NoPendingSignIn`] if the session
    /// has no half-open sign-in, [`AccountError::NotEnrolled`] if its
    /// account has no passkey.
    pub async fn start_second_factor(
        &self,
        session: &Session,
    ) -> Result<RequestChallengeResponse, AccountError> {
        let pending = self.factors.pending(session).await?;
        let pending = pending.ok_or(AccountError::NoPendingSignIn)?;
        let user = pending.user_id;
        let records = self.store.list_passkeys(&user).await?;
        if !pending.factors.contains(Factor::Passkey) || records.is_empty() {
            return Err(AccountError::NotEnrolled);
        }
        let passkeys = records.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| {
                tracing::warn!(error = %e, "keycard: passkey second factor could not start");
                AccountError::PasskeyRefused
            })?;
        let now = self.factors.now();
        ceremony::begin(session, Kind::SecondFactor, Some(&user), &[], &state, now).await?;
        Ok(options)
    }

    /// Completes the session's half-open sign-in with the browser's
    /// `response` to [`start_second_factor`](Self::start_second_factor):
    /// signs in with a fresh token and [`method::PASSWORD_AND_PASSKEY`].
    /// A response that does not verify, or a locked account, is
    /// [`AccountError::PasskeyRefused`] and counts toward the lockout;
    /// [`AccountError::NoPasskeyCeremony`] if no such ceremony waits,
    /// [`AccountError::NoPendingSignIn`] if the half-open sign-in is over.
    pub async fn complete_second_factor(
        &self,
        session: &Session,
        response: &PublicKeyCredential,
    ) -> Result<(), AccountError> {
        let now = self.factors.now();
        let taken = ceremony::take::<PasskeyAuthentication>(
            session,
            Kind::SecondFactor,
            self.ceremony_for,
            now,
        );
        let ceremony = taken.await?;
        let completed = self
            .factors
            .complete_with(
                session,
                method::PASSWORD_AND_PASSKEY,
                async |user: &str, now| {
                    if ceremony.user.as_deref() != Some(user) {
                        return Ok(false);
                    }
                    let record = self
                        .store
                        .find_passkey(response.get_credential_id())
                        .await?;
                    let Some(record) = record.filter(|r| r.user_id == user) else {
                        return Ok(false);
                    };
                    self.verify(&record, now, |_| {
                        self.webauthn
                            .finish_passkey_authentication(response, &ceremony.state)
                    })
                    .await
                },
            )
            .await;
        match completed {
            Err(AccountError::WrongCode) => Err(AccountError::PasskeyRefused),
            other => other,
        }
    }

    /// The passkeys of the user signed in to `session`, oldest first.
    pub async fn list(&self, session: &Session) -> Result<Vec<PasskeyInfo>, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        self.list_for(&user).await
    }

    /// The passkeys of `username`, oldest first.
    pub async fn list_for(&self, username: &str) -> Result<Vec<PasskeyInfo>, AccountError> {
        let Some(canonical) = PasswordAuthenticator::canonical_username(username) else {
            return Ok(Vec::new());
        };
        let records = self.store.list_passkeys(&canonical).await?;
        Ok(records.iter().map(PasskeyInfo::from).collect())
    }

    /// Removes the signed-in user's passkey `id`; whether it was theirs.
    /// Guard the route with [`RequireRecentAuth`](super::RequireRecentAuth).
    pub async fn remove(&self, session: &Session, id: i64) -> Result<bool, AccountError> {
        let user = session.user_id().await?.ok_or(AccountError::NotSignedIn)?;
        self.remove_for(&user, id).await
    }

    /// Removes `username`'s passkey `id` (an administrator's help for a
    /// lost device); whether it was theirs.
    pub async fn remove_for(&self, username: &str, id: i64) -> Result<bool, AccountError> {
        let canonical = PasswordAuthenticator::canonical_username(username)
            .ok_or(AccountError::InvalidUsername)?;
        let removed = self.store.delete_passkey(&canonical, id).await?;
        if removed {
            tracing::info!(user = %canonical, passkey = id, "keycard: passkey removed");
        }
        Ok(removed)
    }

    /// Checks an assertion of the stored passkey `record` with `check`
    /// (the library's verification, given the stored credential) and
    /// records its use: whether it verified and its counter moved forward
    /// in the store (of two concurrent uses of one counter value, one
    /// passes).
    async fn verify(
        &self,
        record: &PasskeyRecord,
        now: DateTime<Utc>,
        check: impl FnOnce(
            &Passkey,
        ) -> Result<
            webauthn_rs::prelude::AuthenticationResult,
            webauthn_rs::prelude::WebauthnError,
        >,
    ) -> Result<bool, AccountError> {
        let mut passkey = decode(record)?;
        let result = match check(&passkey) {
            Ok(result) => result,
            Err(e) => {
                tracing::info!(user = %record.user_id, passkey = record.id, error = %e, "keycard: passkey assertion refused");
                return Ok(false);
            }
        };
        passkey.update_credential(&result);
        let mut used = record.clone();
        used.credential = encode(&passkey)?;
        used.sign_count = i64::from(result.counter());
        used.backup_eligible = result.backup_eligible();
        used.backup_state = result.backup_state();
        used.last_used_at = Some(now);
        let recorded = self.store.use_passkey(&used).await?;
        if !recorded {
            tracing::warn!(user = %record.user_id, passkey = record.id, "keycard: passkey counter did not advance (a cloned authenticator, or a replay)");
        }
        Ok(recorded)
    }

    /// Counts a refused passkey toward `user`'s lockout.
    async fn refuse(
        &self,
        user: &str,
        locked_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        let lockout = self.factors.passwords().lockout_policy();
        let updated = self.store.record_failure(user, now, lockout).await?;
        if let Some(u) = updated.filter(|u| u.locked_until != locked_until) {
            tracing::warn!(user = %u.username, failures = u.failures, "keycard: account locked");
        }
        Err(AccountError::PasskeyRefused)
    }
}

/// Asks for a discoverable credential where the authenticator can make one
/// ("preferred", not "required": security keys with little storage still
/// register, and then sign in as a second factor only). The library's
/// passkey registration discourages them; a user-name-less sign-in needs
/// them.
fn prefer_discoverable(options: CreationChallengeResponse) -> CreationChallengeResponse {
    let Ok(mut json) = serde_json::to_value(&options) else {
        return options;
    };
    let Some(selection) = json
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return options;
    };
    selection.insert("residentKey".to_owned(), "preferred".into());
    serde_json::from_value(json).unwrap_or(options)
}

/// The stored credential, read back.
fn decode(record: &PasskeyRecord) -> Result<Passkey, AccountError> {
    serde_json::from_str(&record.credential).map_err(|_| {
        AccountError::Store(StoreError::Corrupt {
            id: record.id,
            what: "a passkey's `credential` is not one webauthn-rs wrote",
        })
    })
}

/// The credential, to store.
fn encode(passkey: &Passkey) -> Result<String, AccountError> {
    serde_json::to_string(passkey).map_err(|_| corrupt("a passkey did not serialise"))
}

/// A stored value keycard cannot use.
fn corrupt(what: &'static str) -> AccountError {
    AccountError::Store(StoreError::Corrupt { id: 0, what })
}

/// `label` as kept: trimmed, no control characters, at most
/// [`MAX_LABEL_CHARS`], [`DEFAULT_LABEL`] if nothing is left.
fn clean_label(label: &str) -> String {
    let cleaned: String = label
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        DEFAULT_LABEL.to_owned()
    } else {
        cleaned.to_owned()
    }
}
