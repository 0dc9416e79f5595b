//! Signing an anonymous session back in from a credential the browser kept
//! beside it (a remember-me cookie), when the session is first used.
//!
//! The session defines this interface and [`RememberMe`](crate::auth::RememberMe)
//! implements it, so the session never imports the auth module. Asking
//! happens inside the session's first load: a request that never looks at
//! its session (an image, a script) costs nothing, however many cookies it
//! carries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::events::{EndReason, SessionEvent};
use super::state::{RequestFacts, State, Working};
use super::{Login, Session};
use crate::SessionError;
use crate::store::{UserSessions, request_tx};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a restorer found.
pub(crate) enum Restored {
    /// Nothing to restore: the request stays anonymous.
    Nothing,
    /// Sign this user in, on this session, with a fresh token.
    SignIn(Login),
    /// Sign this user in for this request only (a request that raced
    /// another of the same browser, which signed in for both).
    ForThisRequest(Login),
    /// The credential was replayed after it was used: end every session of
    /// this user. The request stays anonymous.
    Stolen {
        /// Whose credential it was.
        user_id: String,
    },
}

/// Whoever can sign an anonymous session back in.
pub(crate) trait Restorer: Send + Sync + 'static {
    /// Looks at the request's credential (and uses it up when it signs in).
    /// What it writes about the credential stands whatever the response,
    /// also inside the request's transaction (the store makes those writes
    /// again if it rolls back).
    fn restore(self: Arc<Self>) -> BoxFuture<Result<Restored, SessionError>>;
}

impl Session {
    /// Asks `restorer` to sign this session in when it is first loaded and
    /// turns out anonymous.
    pub(crate) fn set_restorer(&self, restorer: Arc<dyn Restorer>) {
        // Set once, before the handler runs; a second one is ignored.
        let _ = self.0.restorer.set(restorer);
    }

    /// Runs the restorer on a freshly loaded, anonymous `working` copy.
    pub(super) async fn restore_into(&self, working: &mut Working) -> Result<(), SessionError> {
        let Some(restorer) = self.0.restorer.get().cloned() else {
            return Ok(());
        };
        if working.view.user_id.is_some() || self.is_request_only() {
            return Ok(());
        }
        let now = self.0.ctx.now();
        match restorer.restore().await? {
            Restored::Nothing => {}
            Restored::SignIn(login) => {
                login.validate()?;
                working.sign_in(login, now)?;
            }
            Restored::ForThisRequest(login) => {
                login.validate()?;
                let mut view = self.fresh_fields(now);
                login.apply_to(&mut view, now);
                // A cookie sent the credential: the browser sends it on its
                // own, so no exemption from the synchronizer token.
                self.0.request_only.store(true, Ordering::Release);
                self.0.ambient_credentials.store(true, Ordering::Release);
                *working = Working::fresh(view, tracing::Span::none());
            }
            Restored::Stolen { user_id } => {
                let ended = self
                    .0
                    .ctx
                    .store
                    .delete_for_user(&user_id, UserSessions::All)
                    .await?;
                self.0.ctx.live.poke();
                // The alarm stands whatever the thief's request answers:
                // ended again if the request's transaction rolls back.
                let (ctx, user) = (self.0.ctx.clone(), user_id.clone());
                request_tx::redo_after_rollback(Box::new(move || {
                    Box::pin(async move {
                        ctx.store.delete_for_user(&user, UserSessions::All).await?;
                        ctx.live.poke();
                        Ok(())
                    })
                }));
                tracing::warn!(
                    user = %user_id,
                    ended,
                    "keycard: a used remember-me token came back; every session of the user ended"
                );
                if ended > 0 {
                    // Told when the response leaves, whatever it is: the
                    // sessions are gone already.
                    working.events.push(SessionEvent::SessionsEnded {
                        user_id: Some(user_id),
                        count: ended,
                        reason: EndReason::Theft,
                    });
                }
            }
        }
        Ok(())
    }

    /// Gives the signed-in session a credential name
    /// ([`Login::credential`]) after the sign-in (a remembered device's),
    /// so that revoking the credential ends it. Nothing while anonymous.
    pub(crate) async fn bind_credential(&self, credential: String) -> Result<(), SessionError> {
        self.writable().await?;
        let mut state = self.ready().await?;
        let w = super::ready_mut(&mut state)?;
        if w.view.user_id.is_some() {
            w.view.credential = Some(credential);
            w.credential_changed = true;
        }
        Ok(())
    }

    /// What this request did to the user's sessions, without loading the
    /// session if nothing did.
    pub(crate) async fn request_facts(&self) -> RequestFacts {
        if !self.was_used() {
            return RequestFacts::default();
        }
        match &*self.0.state.lock().await {
            State::Ready(w) => w.facts.clone(),
            State::Unloaded | State::Failed => RequestFacts::default(),
        }
    }

    /// The layer's cookie settings.
    pub(crate) fn config(&self) -> &crate::config::SessionConfig {
        &self.0.ctx.config
    }

    /// The session's device label.
    pub(crate) async fn device_label(&self) -> Result<Option<String>, SessionError> {
        self.with(|w| w.view.device.clone()).await
    }
}
