//! Hooks: application code that runs on session lifecycle events and before
//! a commit, registered by category so that a connection can switch a
//! category off for its scope.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Error;
use crate::token::SessionId;

/// Why sessions ended, in [`HookEvent::SessionsEnded`]: the session side's
/// [`EndReason`](crate::EndReason).
pub use crate::session::EndReason;

/// What happened, as a hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookEvent {
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
    /// The connection's transaction is about to commit. Hooks run inside
    /// it, and an error from one rolls it back, like a vetoing
    /// [`Cnx::on_precommit`](super::Cnx::on_precommit) operation.
    Commit,
}

impl From<crate::SessionEvent> for HookEvent {
    fn from(event: crate::SessionEvent) -> Self {
        use crate::SessionEvent as S;
        match event {
            S::SessionCreated { id } => HookEvent::SessionCreated { id },
            S::Login {
                id,
                user_id,
                method,
            } => HookEvent::Login {
                id,
                user_id,
                method,
            },
            S::Logout { id, user_id } => HookEvent::Logout { id, user_id },
            S::SessionsEnded {
                user_id,
                count,
                reason,
            } => HookEvent::SessionsEnded {
                user_id,
                count,
                reason,
            },
        }
    }
}

/// A hook's code, given the connection it runs on (`C` is a
/// [`Cnx`](super::Cnx), named by whoever keeps the hooks).
type HookFn<C> =
    dyn Fn(C, HookEvent) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + Sync;

/// One registered hook.
pub(crate) struct Hook<C> {
    pub(crate) category: String,
    pub(crate) run: Arc<HookFn<C>>,
}

impl<C> Clone for Hook<C> {
    fn clone(&self) -> Self {
        Self {
            category: self.category.clone(),
            run: self.run.clone(),
        }
    }
}

impl<C> Hook<C> {
    pub(crate) fn new<F, Fut>(category: &str, hook: F) -> Self
    where
        F: Fn(C, HookEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        Self {
            category: category.to_owned(),
            run: Arc::new(move |cnx, event| Box::pin(hook(cnx, event))),
        }
    }
}
