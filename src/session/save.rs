//! Saving a session when the response leaves: at most one write, merged
//! with concurrent writers, and the cookies the response must carry.

use std::sync::atomic::Ordering;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::Instrument as _;

use super::Session;
use super::events::{EndReason, SessionEvent};
use super::lifecycle;
use super::state::{State, Working};
use crate::SessionError;
use crate::store::SessionRecord;
use crate::token::{SessionId, SessionToken};

/// What a save tells the response.
pub(crate) struct Saved {
    /// The cookies to set or expire.
    pub(crate) cookies: CookieAction,
    /// The response belongs to a signed-in user: private, never cached.
    pub(crate) signed_in: bool,
    /// A signed-in user signed out in this request.
    pub(crate) signed_out: bool,
}

impl Saved {
    fn untouched() -> Self {
        Self {
            cookies: CookieAction::None,
            signed_in: false,
            signed_out: false,
        }
    }
}

/// What the response must carry once the session is saved.
pub(crate) enum CookieAction {
    /// Nothing: no cookie, no header.
    None,
    /// Set both cookies; `max_age` for a persistent session.
    Set {
        id: SessionId,
        token: SessionToken,
        max_age: Option<TimeDelta>,
    },
    /// Expire both cookies.
    Expire,
}

impl Session {
    /// The error for a session that a concurrent request ended or gave a
    /// new token: this request's changes are dropped, never written back.
    pub(super) fn conflict(&self, w: &Working) -> SessionError {
        w.span.in_scope(|| {
            tracing::info!("keycard: session ended or rotated by a concurrent request")
        });
        SessionError::Conflict
    }

    /// Whether a method of this session ran during the request.
    pub(crate) fn was_used(&self) -> bool {
        self.0.used.load(Ordering::Acquire)
    }

    /// Saves what the request changed and says which cookies to send; for a
    /// server error (`5xx`), drops the changes instead. Called once, when
    /// the response leaves. A session that failed to load is an error either
    /// way.
    ///
    /// Inside a [`CnxLayer`](crate::cnx::CnxLayer), the request's
    /// connection is told first: for a response that is not a success the
    /// handler's transaction is rolled back before the session saves. The
    /// lifecycle hooks run after the writes, once the session's lock is
    /// released (a hook may read the session).
    pub(crate) async fn save(&self, status: http::StatusCode) -> Result<Saved, SessionError> {
        if let Some(link) = lifecycle::current() {
            // Asked without holding the session's lock: the rollback this
            // may run calls the application's operations, which may use the
            // session.
            let user = match &*self.0.state.lock().await {
                State::Ready(w) if !status.is_server_error() => Some(w.view.user_id.clone()),
                // A server error stores nothing, but what the request did
                // to other sessions stands (a replayed token's alarm):
                // rolled back now, those writes made again by the store,
                // and told in a transaction of the hooks' own.
                State::Ready(w) if !w.events.is_empty() => Some(None),
                _ => None,
            };
            if let Some(user) = user {
                let success = status.is_success() || status.is_redirection();
                link.session_saving(success, user).await?;
            }
        }
        let (saved, events) = {
            let mut state = self.0.state.lock().await;
            match &mut *state {
                State::Unloaded => return Ok(Saved::untouched()),
                State::Failed => return Err(SessionError::Unavailable),
                State::Ready(w) if status.is_server_error() || self.is_request_only() => {
                    // A server error means the handler's work did not
                    // complete: keep the session as it was rather than store
                    // half a change. A request-only session is never stored.
                    // What the load itself ended (a replayed remember-me
                    // token's alarm) is told all the same: it stands.
                    let stored_user = w.stored.as_ref().and_then(|r| r.fields.user_id.as_ref());
                    let saved = Saved {
                        signed_in: w.view.user_id.is_some() || stored_user.is_some(),
                        ..Saved::untouched()
                    };
                    (saved, std::mem::take(&mut w.events))
                }
                State::Ready(w) => {
                    let span = w.span.clone();
                    let cookies = self.save_working(w).instrument(span).await?;
                    let saved = Saved {
                        cookies,
                        signed_in: w.view.user_id.is_some(),
                        signed_out: w.signed_out,
                    };
                    (saved, std::mem::take(&mut w.events))
                }
            }
        };
        // After the writes, without the session's lock (a hook may read the
        // session).
        lifecycle::fire(events).await?;
        if let Some(link) = lifecycle::current() {
            link.session_saved();
        }
        Ok(saved)
    }

    async fn save_working(&self, w: &mut Working) -> Result<CookieAction, SessionError> {
        let ctx = &self.0.ctx;
        let now = ctx.now();
        if let Some(replaced) = w.replaced {
            ctx.store.delete(replaced).await?;
            ctx.live.poke();
            tracing::info!(session.ended = replaced.get(), "keycard: session ended");
            w.events.push(match (w.ended, w.replaced_user.take()) {
                (true, Some(user_id)) => SessionEvent::Logout {
                    id: replaced,
                    user_id,
                },
                (ended, user_id) => SessionEvent::SessionsEnded {
                    user_id,
                    count: 1,
                    reason: if ended {
                        EndReason::User
                    } else {
                        EndReason::Replaced
                    },
                },
            });
        }
        let Some(stored) = &w.stored else {
            return self.insert_new(w, now).await;
        };
        if !w.is_changed() {
            if let Some(at) = ctx.renewal(stored.fields.last_activity, now) {
                ctx.store.touch(stored.id, at).await?;
            }
            return Ok(CookieAction::None);
        }
        let id = stored.id;
        let user_before = stored.fields.user_id.clone();
        let written = if w.only_data_changed() {
            let renewed = ctx.renewal(stored.fields.last_activity, now);
            if let Some(at) = renewed {
                w.view.last_activity = at;
            }
            ctx.store
                .update_data(id, stored.version, &w.view.data, renewed)
                .await?
        } else {
            w.view.last_activity = w.view.last_activity.max(now);
            ctx.store.update(id, stored.version, &w.view).await?
        };
        if !written {
            // A concurrent request wrote first: replay this request's changes
            // on the row as it is now, under its lock.
            let expected = stored.fields.token_hash;
            let mut merge = |current: &SessionRecord| {
                if !current.fields.token_hash.ct_eq(&expected) {
                    return None;
                }
                w.rebase(current.clone());
                w.view.last_activity = w.view.last_activity.max(now);
                Some(w.view.clone())
            };
            match ctx.store.update_locked(id, &mut merge).await? {
                Some(record) => w.stored = Some(record),
                None => return Err(self.conflict(w)),
            }
        }
        if let Some(token) = &w.new_token {
            tracing::info!(
                fingerprint = %token.hash().fingerprint(),
                "keycard: session token rotated"
            );
        }
        if w.identity_changed {
            w.push_identity_events(id, user_before);
        }
        self.apply_session_limit(w).await?;
        Ok(self.cookies_for(id, w))
    }

    /// After a sign-in is saved: ends the user's sessions of the same kind
    /// (human, or API client) beyond what that kind's
    /// [`ConcurrentSessions`](crate::ConcurrentSessions) policy allows.
    /// This session was just written with the latest `last_activity`, so it
    /// is the one the ranking keeps first.
    async fn apply_session_limit(&self, w: &mut Working) -> Result<(), SessionError> {
        let ctx = &self.0.ctx;
        let api = w.view.is_api;
        let policy = if api {
            ctx.config.api_sessions
        } else {
            ctx.config.concurrent_sessions
        };
        let (true, Some(user), Some(keep)) = (w.identity_changed, &w.view.user_id, policy.keep())
        else {
            return Ok(());
        };
        let ended = ctx.store.delete_excess_for_user(user, api, keep).await?;
        if ended > 0 {
            ctx.live.poke();
        }
        if ended > 0 {
            tracing::info!(ended, "keycard: sessions ended by the per-user limit");
            let event = SessionEvent::SessionsEnded {
                user_id: Some(user.clone()),
                count: ended,
                reason: EndReason::Policy,
            };
            w.events.push(event);
        }
        Ok(())
    }

    async fn insert_new(
        &self,
        w: &mut Working,
        now: DateTime<Utc>,
    ) -> Result<CookieAction, SessionError> {
        if w.view.data.is_empty() && w.view.user_id.is_none() {
            // Nothing worth remembering: no row, no cookie (and the cookies
            // of a session this request ended are expired).
            return Ok(if w.replaced.is_some() || (w.ended && self.0.had_cookie) {
                CookieAction::Expire
            } else {
                CookieAction::None
            });
        }
        let token = match w.new_token.take() {
            Some(token) => token,
            None => SessionToken::generate().map_err(|_| SessionError::Randomness)?,
        };
        w.view.token_hash = token.hash();
        w.view.last_activity = now;
        let id = self.0.ctx.store.insert(&w.view).await?;
        tracing::Span::current().record("session.id", id.get());
        tracing::info!(
            session.id = id.get(),
            fingerprint = %w.view.token_hash.fingerprint(),
            "keycard: session created"
        );
        w.new_token = Some(token);
        w.events.push(SessionEvent::SessionCreated { id });
        if w.view.user_id.is_some() {
            w.push_identity_events(id, None);
        }
        self.apply_session_limit(w).await?;
        Ok(self.cookies_for(id, w))
    }

    fn cookies_for(&self, id: SessionId, w: &Working) -> CookieAction {
        let token = match (&w.new_token, &self.0.presented) {
            (Some(token), _) => token.clone(),
            (None, Some((_, token))) if w.persistent_changed => token.clone(),
            _ => return CookieAction::None,
        };
        let max_age = w.view.persistent.then(|| {
            let age = self.0.ctx.now() - w.view.created_at;
            let (_, absolute) = self.0.ctx.config.timeouts(true);
            (absolute - age).max(TimeDelta::zero())
        });
        CookieAction::Set { id, token, max_age }
    }
}
