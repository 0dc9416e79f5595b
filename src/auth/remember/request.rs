//! One request's remember-me: the cookie it brought, the restore, what the
//! handler asked for, and what the response does with the cookie.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::cookie::{self, Action, Presented, Read};
use super::{Inner, NO_ACCOUNT, RememberMe, credential_of, device_of, still_valid};
use crate::auth::{AccountError, method};
use crate::session::restore::{Restored, Restorer};
use crate::store::{RememberedDevice, request_tx};
use crate::token::{SessionToken, TokenHash};
use crate::{Login, Session, SessionError};

/// A remembered browser as a "your sessions" page shows it: no token,
/// no hash. Serializes for a JSON API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RememberedBrowser {
    /// Its key, for [`Remember::revoke`] (not a secret).
    pub id: i64,
    /// The device label of the browser that asked ("Firefox on Linux").
    pub device: Option<String>,
    /// When the user asked to be remembered.
    pub created_at: DateTime<Utc>,
    /// When it last signed the browser back in (or was made).
    pub last_used_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The browser of the request that asked.
    pub current: bool,
}

impl RememberedBrowser {
    pub(super) fn of(device: RememberedDevice, current: Option<i64>) -> Self {
        Self {
            id: device.id,
            device: device.device,
            created_at: device.created_at,
            last_used_at: device.last_used_at,
            expires_at: device.expires_at,
            current: current == Some(device.id),
        }
    }
}

/// The request's remember-me, for handlers: remember this browser at
/// sign-in, list and revoke the user's remembered browsers. Put in the
/// request by [`AuthLayer::remember`](crate::auth::AuthLayer::remember);
/// extract it in axum handlers (its rejection is [`MissingRememberMe`]).
#[derive(Clone)]
pub struct Remember(pub(crate) Arc<PerRequest>);

impl std::fmt::Debug for Remember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remember").finish_non_exhaustive()
    }
}

/// What one request knows and decided.
pub(crate) struct PerRequest {
    config: Arc<Inner>,
    session: Session,
    presented: Option<Presented>,
    state: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    cookie: Action,
    /// The remembered browser of this request, once known.
    device: Option<i64>,
    /// A rotation this request made: the device, the token it replaced and
    /// the new one (undone if the response is a server error).
    rotated: Option<(i64, TokenHash, TokenHash)>,
    /// A device this request remembered: (user, id), forgotten again if the
    /// response is a server error.
    issued: Option<(String, i64)>,
    /// The cookie and device as they were before [`Remember::this_device`]
    /// issued a series inside the request's transaction: what the response
    /// keeps instead if that transaction rolls back, and the series with it.
    before_issue: Option<(Action, Option<i64>)>,
}

impl PerRequest {
    /// Reads the request's cookie (a malformed one is expired by the
    /// response).
    pub(crate) fn new(remember: &RememberMe, session: &Session, headers: &HeaderMap) -> Arc<Self> {
        let (presented, cookie) = match cookie::read(headers, session.config()) {
            Read::Absent => (None, Action::Keep),
            Read::Found(presented) => (Some(presented), Action::Keep),
            Read::Malformed => {
                tracing::info!("keycard: malformed remember-me cookie removed");
                (None, Action::Expire)
            }
        };
        Arc::new(Self {
            config: remember.inner.clone(),
            session: session.clone(),
            presented,
            state: Mutex::new(Outcome {
                cookie,
                device: None,
                rotated: None,
                issued: None,
                before_issue: None,
            }),
        })
    }

    /// Whether the request brought a well-formed cookie.
    pub(crate) fn has_cookie(&self) -> bool {
        self.presented.is_some()
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Outcome> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // consistent outcome.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered browser the request's cookie names, whoever it
    /// belongs to.
    async fn presented_device(&self) -> Result<Option<RememberedDevice>, AccountError> {
        match &self.presented {
            Some(presented) => Ok(self
                .config
                .store
                .find_remembered(&presented.series_hash)
                .await?),
            None => Ok(None),
        }
    }

    /// The signed-in user's remembered browser of this request, if any.
    async fn current_device(&self, user: &str) -> Result<Option<i64>, AccountError> {
        if let Some(id) = self.outcome().device {
            return Ok(Some(id));
        }
        Ok(self
            .presented_device()
            .await?
            .filter(|d| d.user_id == user)
            .map(|d| d.id))
    }

    /// After the handler: what it did to the user's sessions ends the
    /// remembered browsers that must not sign them back in, and the
    /// response gets the cookie it needs.
    pub(crate) async fn finish(
        &self,
        status: http::StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), AccountError> {
        let store = &*self.config.store;
        if status.is_server_error() {
            // The session layer drops this request's changes, the restored
            // sign-in among them: the browser must keep a token that
            // works, or its next restore would look like a copied cookie.
            let (rotated, issued) = {
                let mut outcome = self.outcome();
                (outcome.rotated.take(), outcome.issued.take())
            };
            if let Some((device, old, new)) = rotated {
                let now = self.config.now();
                store.rotate_remembered(device, &new, &old, now).await?;
            }
            if let Some((user, device)) = issued {
                store.delete_remembered(&user, device).await?;
            }
            return Ok(());
        }
        let succeeded = status.is_success() || status.is_redirection();
        if !succeeded && request_tx::transaction_open() {
            // The request's transaction rolls back before the session
            // saves, and a series issued in it goes with it: no cookie for
            // a row that will not exist.
            let mut outcome = self.outcome();
            if let Some((cookie, device)) = outcome.before_issue.take() {
                outcome.cookie = cookie;
                outcome.device = device;
                outcome.issued = None;
            }
        }
        let facts = self.session.request_facts().await;
        if let Some(user) = &facts.signed_out {
            if let Some(device) = self.current_device(user).await? {
                store.delete_remembered(user, device).await?;
                tracing::info!("keycard: signed out; this browser is no longer remembered");
            }
            if self.presented.is_some() || !matches!(self.outcome().cookie, Action::Keep) {
                self.outcome().cookie = Action::Expire;
            }
        }
        if let Some(user) = &facts.ended_others_of {
            let keep = self.current_device(user).await?;
            self.config.forget_all(user, keep).await?;
        }
        for (user, credential) in &facts.ended_credentials {
            if let Some(device) = device_of(credential) {
                store.delete_remembered(user, device).await?;
            }
        }
        cookie::write(headers, &self.outcome().cookie, self.session.config());
        Ok(())
    }

    /// Uses the cookie to restore a sign-in (see the module docs).
    async fn restore_now(&self) -> Result<Restored, AccountError> {
        let Some(presented) = &self.presented else {
            return Ok(Restored::Nothing);
        };
        let config = &*self.config;
        let now = config.now();
        let Some(mut device) = config.store.find_remembered(&presented.series_hash).await? else {
            tracing::info!("keycard: unknown remember-me series; cookie removed");
            self.outcome().cookie = Action::Expire;
            return Ok(Restored::Nothing);
        };
        if !still_valid(&*config.store, &device, now).await? {
            config
                .store
                .delete_remembered(&device.user_id, device.id)
                .await?;
            tracing::info!("keycard: remembered browser expired or its credentials changed");
            self.outcome().cookie = Action::Expire;
            return Ok(Restored::Nothing);
        }
        let login = Login::new(device.user_id.clone())
            .method(method::REMEMBERED)
            .credential(credential_of(device.id));
        if device.token_hash.ct_eq(&presented.token) {
            let next = SessionToken::generate().map_err(|_| AccountError::Randomness)?;
            let rotated = config
                .store
                .rotate_remembered(device.id, &presented.token, &next.hash(), now)
                .await?;
            if rotated {
                let mut outcome = self.outcome();
                outcome.cookie = Action::Set {
                    value: cookie::value(&presented.series, &next),
                    max_age: device.expires_at - now,
                };
                outcome.device = Some(device.id);
                outcome.rotated = Some((device.id, presented.token, next.hash()));
                drop(outcome);
                tracing::info!(user = %device.user_id, "keycard: sign-in restored from a remembered browser");
                return Ok(Restored::SignIn(login));
            }
            // Another request of this browser rotated it first.
            match config.store.find_remembered(&presented.series_hash).await? {
                Some(now_device) => device = now_device,
                None => {
                    self.outcome().cookie = Action::Expire;
                    return Ok(Restored::Nothing);
                }
            }
        }
        let just_replaced = device
            .previous_hash
            .is_some_and(|previous| previous.ct_eq(&presented.token))
            && device
                .rotated_at
                .is_some_and(|at| now - at <= config.grace && at <= now);
        if just_replaced {
            self.outcome().device = Some(device.id);
            return Ok(Restored::ForThisRequest(login));
        }
        // A token of this series that is neither the current one nor the
        // one it just replaced: two browsers hold the series.
        let forgotten = config
            .store
            .delete_remembered_of(&device.user_id, None)
            .await?;
        tracing::warn!(
            user = %device.user_id,
            device = device.id,
            forgotten,
            "keycard: a remember-me token was used after it was replaced (a copied cookie?); \
             the user's remembered browsers and sessions are ended"
        );
        self.outcome().cookie = Action::Expire;
        Ok(Restored::Stolen {
            user_id: device.user_id,
        })
    }
}

impl Restorer for PerRequest {
    fn restore(
        self: Arc<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Restored, SessionError>> + Send>> {
        Box::pin(async move { self.restore_now().await.map_err(as_session_error) })
    }
}

/// A restore's account error as the session load's.
fn as_session_error(error: AccountError) -> SessionError {
    match error {
        AccountError::Sessions(error) => error,
        AccountError::Store(error) => SessionError::Store(error),
        AccountError::Randomness => SessionError::Randomness,
        other => SessionError::Store(crate::store::StoreError::Backend(other.to_string().into())),
    }
}

impl Remember {
    /// Remembers this browser for the signed-in user (call it after the
    /// sign-in, in the same request or later): a new series, its row, and
    /// the cookie on this response. Asking again replaces this browser's
    /// series. Refused for a request signed in for itself only
    /// ([`SessionError::RequestOnly`]) and for API sessions
    /// ([`AccountError::NotSignedIn`] while anonymous). Inside a
    /// `CnxLayer` transaction the series is written in it: a response
    /// that is not a success rolls it back, and then sets no cookie.
    pub async fn this_device(&self) -> Result<(), AccountError> {
        let this = &self.0;
        let session = &this.session;
        if session.is_request_only() {
            return Err(SessionError::RequestOnly.into());
        }
        let identity = session.identity().await?.ok_or(AccountError::NotSignedIn)?;
        if identity.is_api {
            return Err(AccountError::NotSignedIn);
        }
        let user = identity.user_id;
        let config = &*this.config;
        let now = config.now();
        // Every new series clears the expired ones, so the table stays as
        // small as the browsers remembered.
        config.store.delete_expired_remembered(now).await?;
        // The cookie this browser had is replaced: its series, whoever it
        // was for, can never be used again.
        let issued = this.outcome().device;
        if let Some(old) = issued {
            config.store.delete_remembered(&user, old).await?;
        }
        if let Some(old) = this.presented_device().await? {
            config.store.delete_remembered(&old.user_id, old.id).await?;
        }
        let version = match config.store.find_user(&user).await? {
            Some(account) => account.credential_version,
            None => NO_ACCOUNT,
        };
        let series = SessionToken::generate().map_err(|_| AccountError::Randomness)?;
        let token = SessionToken::generate().map_err(|_| AccountError::Randomness)?;
        let expires_at = now
            .checked_add_signed(config.lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut device =
            RememberedDevice::new(series.hash(), token.hash(), &user, version, now, expires_at);
        device.device = session.device_label().await?;
        let id = config.store.insert_remembered(&device).await?;
        session.bind_credential(credential_of(id)).await?;
        let mut outcome = this.outcome();
        if request_tx::transaction_open() && outcome.before_issue.is_none() {
            let before = (std::mem::take(&mut outcome.cookie), outcome.device);
            outcome.before_issue = Some(before);
        }
        outcome.cookie = Action::Set {
            value: cookie::value(&series, &token),
            max_age: expires_at - now,
        };
        outcome.device = Some(id);
        outcome.issued = Some((user.clone(), id));
        drop(outcome);
        tracing::info!(user = %user, device = id, "keycard: browser remembered");
        Ok(())
    }

    /// Forgets this browser (the user unticked "remember me"): its series
    /// ends and the cookie is removed. The session stays signed in.
    pub async fn forget_this_device(&self) -> Result<(), AccountError> {
        let this = &self.0;
        let issued = this.outcome().device;
        if let Some(user) = this.session.user_id().await?
            && let Some(id) = issued
        {
            this.config.store.delete_remembered(&user, id).await?;
        }
        // The cookie goes, so its series, whoever it was for, goes too.
        if let Some(old) = this.presented_device().await? {
            this.config
                .store
                .delete_remembered(&old.user_id, old.id)
                .await?;
        }
        let mut outcome = this.outcome();
        outcome.device = None;
        outcome.cookie = Action::Expire;
        Ok(())
    }

    /// The signed-in user's remembered browsers, oldest first, this one
    /// marked [`current`](RememberedBrowser::current); empty while
    /// anonymous.
    pub async fn devices(&self) -> Result<Vec<RememberedBrowser>, AccountError> {
        let this = &self.0;
        let Some(user) = this.session.user_id().await? else {
            return Ok(Vec::new());
        };
        let current = this.current_device(&user).await?;
        this.config.browsers(&user, current).await
    }

    /// Forgets one of the signed-in user's remembered browsers and ends
    /// the sessions it opened, on every app server ("sign out that
    /// device"). `false` if it is not theirs. Refused on a request signed
    /// in for itself only.
    pub async fn revoke(&self, id: i64) -> Result<bool, AccountError> {
        let this = &self.0;
        if this.session.is_request_only() {
            return Err(SessionError::RequestOnly.into());
        }
        let Some(user) = this.session.user_id().await? else {
            return Ok(false);
        };
        // Before the delete: afterwards the cookie's series names nothing.
        let current = this.current_device(&user).await?;
        if !this.config.store.delete_remembered(&user, id).await? {
            return Ok(false);
        }
        this.config
            .sessions
            .end_sessions_signed_in_by(&user, &credential_of(id))
            .await?;
        if current == Some(id) {
            this.session.logout().await?;
        }
        tracing::info!(user = %user, device = id, "keycard: remembered browser revoked");
        Ok(true)
    }
}

/// [`Remember`] was extracted but the request has none: the
/// [`AuthLayer`](crate::auth::AuthLayer) has no
/// [`remember`](crate::auth::AuthLayer::remember) configured. Answers a
/// `500` naming the fix.
#[derive(Debug, thiserror::Error)]
#[error(
    "keycard: `Remember` needs `AuthLayer::remember(RememberMe::new(..))`, inside `SessionLayer`"
)]
pub struct MissingRememberMe;

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::{MissingRememberMe, Remember};

    impl IntoResponse for MissingRememberMe {
        fn into_response(self) -> Response {
            tracing::error!("{self}");
            crate::response::plain_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error.\n",
            )
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Remember {
        type Rejection = MissingRememberMe;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MissingRememberMe> {
            parts
                .extensions
                .get::<Remember>()
                .cloned()
                .ok_or(MissingRememberMe)
        }
    }
}
