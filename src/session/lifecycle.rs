//! A session's lifecycle events, and the interface through which whoever
//! runs hooks on them (the request connection, [`CnxLayer`](crate::cnx::CnxLayer))
//! hears of them.
//!
//! The session side defines the events and this interface; the connection
//! module implements it and runs the request inside [`scope`]. So the
//! session never imports the connections: without a `CnxLayer` there is
//! nobody to tell, and nothing happens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Session;
use crate::Error;
use crate::token::SessionId;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why sessions ended, in [`SessionEvent::SessionsEnded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The [`ConcurrentSessions`](crate::ConcurrentSessions) policy ended
    /// the user's oldest sessions at a sign-in.
    Policy,
    /// The user ended them ([`Session::end_other_sessions`],
    /// [`Session::end_user_session`]).
    User,
    /// An administrator ended them ([`SessionAdmin`](crate::SessionAdmin)),
    /// or a revoked credential did.
    Admin,
    /// They had expired and were purged.
    Purge,
    /// The session was replaced by a fresh one in the same request
    /// ([`Session::restart`], the API-client swap).
    Replaced,
}

/// What happened to sessions: what a save or an administrator's call
/// produces, and hooks consume (as [`HookEvent`](crate::cnx::HookEvent)s).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A new session was stored.
    SessionCreated {
        /// Its id.
        id: SessionId,
    },
    /// A user signed in.
    Login {
        /// The session's id.
        id: SessionId,
        /// The user.
        user_id: String,
        /// How they authenticated, if the application said.
        method: Option<String>,
    },
    /// A user signed out (the session was ended, or kept without its user).
    Logout {
        /// The session's id.
        id: SessionId,
        /// The user who signed out.
        user_id: String,
    },
    /// Sessions ended for another reason than their own sign-out.
    SessionsEnded {
        /// Whose sessions, when they were one user's.
        user_id: Option<String>,
        /// How many.
        count: u64,
        /// Why.
        reason: EndReason,
    },
}

/// Whoever hears of a request's session events.
pub(crate) trait SessionHooks: Send + Sync + 'static {
    /// The request's session, for whoever needs it later (row security).
    fn attach_session(&self, session: &Session);
    /// The session is about to be saved for a response that is (`success`)
    /// or is not a success.
    fn session_saving(self: Arc<Self>, success: bool, user: Option<String>) -> BoxFuture<()>;
    /// These events happened.
    fn fire(self: Arc<Self>, events: Vec<SessionEvent>) -> BoxFuture<Result<(), Error>>;
}

/// The hooks, kept in the request's extensions for the session layer.
#[derive(Clone)]
pub(crate) struct HooksHandle(pub(crate) Arc<dyn SessionHooks>);

tokio::task_local! {
    static CURRENT: Arc<dyn SessionHooks>;
}

/// Runs `work` with `hooks` as the request's.
pub(crate) fn scope<F: Future>(
    hooks: Arc<dyn SessionHooks>,
    work: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<dyn SessionHooks>, F> {
    CURRENT.scope(hooks, work)
}

/// The request's hooks, if any.
pub(crate) fn current() -> Option<Arc<dyn SessionHooks>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Tells the request's hooks of `events`; nothing without hooks.
pub(crate) async fn fire(events: Vec<SessionEvent>) -> Result<(), Error> {
    match current() {
        Some(hooks) if !events.is_empty() => hooks.fire(events).await,
        _ => Ok(()),
    }
}

/// Tells the hooks that `count` sessions ended (nothing for none).
pub(crate) async fn sessions_ended(
    user_id: Option<String>,
    count: u64,
    reason: EndReason,
) -> Result<(), Error> {
    if count == 0 {
        return Ok(());
    }
    fire(vec![SessionEvent::SessionsEnded {
        user_id,
        count,
        reason,
    }])
    .await
}
