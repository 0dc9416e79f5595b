//! What happened to sessions: the events a save or an administrator's call
//! produces, and hooks consume. Plain data, so that the session's state
//! and the hooks' interface ([`lifecycle`](super::lifecycle)) share them
//! without depending on each other.

use crate::token::SessionId;

/// Why sessions ended, in [`SessionEvent::SessionsEnded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The [`ConcurrentSessions`](crate::ConcurrentSessions) policy ended
    /// the user's oldest sessions at a sign-in.
    Policy,
    /// The user ended them ([`Session::end_other_sessions`](crate::Session::end_other_sessions),
    /// [`Session::end_user_session`](crate::Session::end_user_session)).
    User,
    /// An administrator ended them ([`SessionAdmin`](crate::SessionAdmin)),
    /// or a revoked credential did.
    Admin,
    /// They had expired and were purged.
    Purge,
    /// The session was replaced by a fresh one in the same request: an
    /// [`AuthLayer`](crate::auth::AuthLayer) signed a client in whose
    /// cookie belonged to another user.
    Replaced,
    /// A remember-me token came back after it had been replaced: two
    /// browsers hold copies of one remembered browser's cookie, so every
    /// session and remembered browser of its user was ended
    /// ([`RememberMe`](crate::auth::RememberMe); the request that brought
    /// it stays anonymous).
    Theft,
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
