//! A signed-in user's view of their sessions: list them, end one, end all
//! the others (OWASP ASVS 7.5.2).

use chrono::{DateTime, Utc};

use super::events::EndReason;
use super::lifecycle;
use super::{Session, ready_mut};
use crate::SessionError;
use crate::config::SessionConfig;
use crate::store::{SessionRecord, UserSessions};
use crate::token::SessionId;

/// One of a user's sessions, as a "your sessions" page shows it. Carries no
/// token or token hash; serializes for a JSON API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's id (not a secret: it only names the row).
    pub id: SessionId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used.
    pub last_activity: DateTime<Utc>,
    /// When the user signed in.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// The client address it was created from.
    pub ip_address: Option<String>,
    /// An API client's session rather than a browser's.
    pub is_api: bool,
    /// How the user signed in.
    pub auth_method: Option<String>,
    /// A "remember me" session.
    pub persistent: bool,
    /// The credential that signed it in, if recorded (`api-token:17` for an
    /// API token); not a secret.
    pub signed_in_by: Option<String>,
    /// A short label of the device it was created on ("Firefox on
    /// Linux"), from its `User-Agent`; a hint, not a proof.
    pub device: Option<String>,
    /// The session of the request that asked.
    pub current: bool,
}

impl SessionInfo {
    pub(crate) fn from_record(record: SessionRecord, current: Option<SessionId>) -> Self {
        let f = record.fields;
        Self {
            id: record.id,
            created_at: f.created_at,
            last_activity: f.last_activity,
            authenticated_at: f.authenticated_at,
            ip_address: f.ip_address,
            is_api: f.is_api,
            auth_method: f.auth_method,
            persistent: f.persistent,
            signed_in_by: f.credential,
            device: f.device,
            current: current == Some(record.id),
        }
    }

    /// The user's sessions in `records` that have not expired at `now`.
    pub(crate) fn active(
        records: Vec<SessionRecord>,
        config: &SessionConfig,
        now: DateTime<Utc>,
        current: Option<SessionId>,
    ) -> Vec<Self> {
        records
            .into_iter()
            .filter(|r| {
                let (idle, absolute) = config.timeouts(r.fields.persistent);
                now - r.fields.last_activity <= idle && now - r.fields.created_at <= absolute
            })
            .map(|r| Self::from_record(r, current))
            .collect()
    }
}

impl Session {
    /// The signed-in user's active sessions, most recently used first, this
    /// one marked [`current`](SessionInfo::current). Empty while anonymous.
    pub async fn user_sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (user, current) = self.user_and_id().await?;
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        let ctx = &self.0.ctx;
        let records = ctx.store.list_for_user(&user).await?;
        Ok(SessionInfo::active(
            records,
            &ctx.config,
            ctx.now(),
            current,
        ))
    }

    /// Ends every other session of the signed-in user, at once ("sign out
    /// everywhere else", or after a password change). Returns how many
    /// ended; 0 while anonymous. A [request-only](Self::is_request_only)
    /// session (a bearer token's request) has no session of its own to keep
    /// and gets [`SessionError::RequestOnly`]: an API credential does not sign its
    /// user out of their browsers.
    pub async fn end_other_sessions(&self) -> Result<u64, SessionError> {
        self.writable().await?;
        let (user, current) = self.user_and_id().await?;
        let Some(user) = user else {
            return Ok(0);
        };
        let which = current.map_or(UserSessions::All, UserSessions::AllExcept);
        let ended = self.0.ctx.store.delete_for_user(&user, which).await?;
        self.0.ctx.live.poke();
        tracing::info!(ended, "keycard: other sessions of the user ended");
        self.record_fact(|facts| facts.ended_others_of = Some(user.clone()))
            .await;
        lifecycle::sessions_ended(Some(user), ended, EndReason::User).await?;
        Ok(ended)
    }

    /// Ends one of the signed-in user's sessions, at once, if it is theirs
    /// ("sign out that device"); ending this session is a
    /// [`logout`](Self::logout). Returns whether a session ended. Refused
    /// with [`SessionError::RequestOnly`] on a [request-only](Self::is_request_only)
    /// session, like [`end_other_sessions`](Self::end_other_sessions).
    pub async fn end_user_session(&self, id: SessionId) -> Result<bool, SessionError> {
        self.writable().await?;
        let (user, current) = self.user_and_id().await?;
        let Some(user) = user else {
            return Ok(false);
        };
        if current == Some(id) {
            self.logout().await?;
            return Ok(true);
        }
        // Its credential (a remembered device's) must not sign it back in.
        let credential = match self.0.ctx.store.load(id).await? {
            Some(record) if record.fields.user_id.as_deref() == Some(user.as_str()) => {
                record.fields.credential
            }
            _ => None,
        };
        let ended = self
            .0
            .ctx
            .store
            .delete_for_user(&user, UserSessions::Only(id))
            .await?;
        self.0.ctx.live.poke();
        if let (1, Some(credential)) = (ended, credential) {
            let fact = (user.clone(), credential);
            self.record_fact(|facts| facts.ended_credentials.push(fact))
                .await;
        }
        lifecycle::sessions_ended(Some(user), ended, EndReason::User).await?;
        Ok(ended == 1)
    }

    /// Notes what this request did in its [`RequestFacts`](super::state::RequestFacts).
    async fn record_fact(&self, note: impl FnOnce(&mut super::state::RequestFacts)) {
        if let super::state::State::Ready(w) = &mut *self.0.state.lock().await {
            note(&mut w.facts);
        }
    }

    /// The signed-in user as this request sees it, and this session's id
    /// (`None` until first stored).
    async fn user_and_id(&self) -> Result<(Option<String>, Option<SessionId>), SessionError> {
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        Ok((w.view.user_id.clone(), w.stored.as_ref().map(|r| r.id)))
    }
}
