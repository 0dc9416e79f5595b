//! A passkey ceremony in progress, held as a session value: the
//! challenge the browser was given lives in the session row, server-side,
//! never in a cookie, and is used at most once.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::AccountError;
use crate::{Session, SessionError};

/// The session value of a passkey ceremony in progress. Reserved: an
/// application must not write it.
pub const CEREMONY_KEY: &str = "keycard.passkey";

/// Which ceremony a session waits to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A signed-in user registers a passkey.
    Register,
    /// Anybody signs in with a passkey of their own choosing.
    SignIn,
    /// A half-open sign-in waits for one of its user's passkeys.
    SecondFactor,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::SignIn => "sign-in",
            Kind::SecondFactor => "second-factor",
        }
    }
}

/// What the session holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    kind: String,
    /// Whose ceremony it is (none for a user-name-less sign-in).
    user: Option<String>,
    /// The user handle a registration gives the authenticator.
    #[serde(default)]
    handle: Vec<u8>,
    /// Microseconds since the epoch.
    since: i64,
    /// The WebAuthn library's state.
    state: serde_json::Value,
}

/// A ceremony taken out of the session, checked: its kind, not expired.
pub(super) struct Ceremony<S> {
    pub(super) user: Option<String>,
    pub(super) handle: Vec<u8>,
    pub(super) state: S,
}

/// Starts a ceremony of `kind` on `session` (replacing any other one).
pub(super) async fn begin(
    session: &Session,
    kind: Kind,
    user: Option<&str>,
    handle: &[u8],
    state: &impl Serialize,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    if session.is_request_only() {
        return Err(SessionError::RequestOnly.into());
    }
    let stored = Stored {
        kind: kind.as_str().to_owned(),
        user: user.map(str::to_owned),
        handle: handle.to_vec(),
        since: now.timestamp_micros(),
        // The library's states always serialise (plain data, no maps with
        // non-string keys); a failure would be a bug there, answered as
        // "try again" rather than a panic.
        state: serde_json::to_value(state).map_err(|_| AccountError::NoPasskeyCeremony)?,
    };
    session.insert(CEREMONY_KEY, &stored).await?;
    Ok(())
}

/// Takes the session's ceremony of `kind`, which must have begun less than
/// `valid_for` before `now`: removed whatever it is, so that a response is
/// checked against a challenge at most once.
/// [`AccountError::NoPasskeyCeremony`] if there is none, it is of another
/// kind, it expired, or it is not one keycard wrote.
pub(super) async fn take<S: DeserializeOwned>(
    session: &Session,
    kind: Kind,
    valid_for: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Ceremony<S>, AccountError> {
    if session.is_request_only() {
        return Err(SessionError::RequestOnly.into());
    }
    let Some(value) = session.remove(CEREMONY_KEY).await? else {
        return Err(AccountError::NoPasskeyCeremony);
    };
    let stored: Stored =
        serde_json::from_value(value).map_err(|_| AccountError::NoPasskeyCeremony)?;
    let started = DateTime::from_timestamp_micros(stored.since);
    let fresh = started
        .and_then(|at| at.checked_add_signed(valid_for))
        .is_some_and(|until| now < until);
    if stored.kind != kind.as_str() || !fresh {
        return Err(AccountError::NoPasskeyCeremony);
    }
    let state =
        serde_json::from_value(stored.state).map_err(|_| AccountError::NoPasskeyCeremony)?;
    Ok(Ceremony {
        user: stored.user,
        handle: stored.handle,
        state,
    })
}
