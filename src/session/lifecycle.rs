//! The interface through which whoever runs hooks on a session's events
//! ([`events`](super::events)) hears of them: the request connection,
//! [`CnxLayer`](crate::cnx::CnxLayer).
//!
//! The session side defines the events and this interface; the connection
//! module implements it and runs the request inside [`scope`]. So the
//! session never imports the connections: without a `CnxLayer` there is
//! nobody to tell, and nothing happens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Session;
use super::events::{EndReason, SessionEvent};
use crate::SessionError;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Whoever hears of a request's session events.
pub(crate) trait SessionHooks: Send + Sync + 'static {
    /// The request's session, for whoever needs it later (row security).
    fn attach_session(&self, session: &Session);
    /// The session is about to be saved for a response that is (`success`)
    /// or is not a success; an error when the request's work can no longer
    /// stand, and the session must store nothing.
    fn session_saving(
        self: Arc<Self>,
        success: bool,
        user: Option<String>,
    ) -> BoxFuture<Result<(), SessionError>>;
    /// These events happened.
    fn fire(self: Arc<Self>, events: Vec<SessionEvent>) -> BoxFuture<Result<(), SessionError>>;
    /// The session was saved and its hooks ran without an error.
    fn session_saved(self: Arc<Self>);
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
pub(crate) async fn fire(events: Vec<SessionEvent>) -> Result<(), SessionError> {
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
) -> Result<(), SessionError> {
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
