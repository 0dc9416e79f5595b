//! [`AccountError`]: what can go wrong creating or changing an account, its
//! password or its API tokens, and the status each answers.

use http::StatusCode;

use crate::SessionError;
use crate::store::StoreError;

/// Why an account, its password or one of its API tokens could not be
/// created or changed ([`PasswordAuthenticator`](super::PasswordAuthenticator),
/// [`ApiTokens`](super::ApiTokens)).
///
/// It answers with the status each variant names and a generic body, so a
/// handler may return it (or [`keycard::Error`](crate::Error)) with `?`;
/// a sign-up form will rather match the invalid-input variants and show
/// the form again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Empty, too long, or containing control characters or `:` (which
    /// HTTP Basic cannot carry). `400`.
    #[error("invalid user name: use 1 to 255 characters, no control characters and no `:`")]
    InvalidUsername,
    /// Empty, or longer than 1024 bytes. `400`.
    #[error("invalid password: use 1 to 1024 bytes")]
    InvalidPassword,
    /// An API token's owner or name is empty, longer than 255 characters,
    /// or holds control characters. `400`.
    #[error("invalid API token owner or name: use 1 to 255 characters, no control characters")]
    InvalidTokenName,
    /// Another account has the same canonical name. `409`.
    #[error("an account with this user name exists already")]
    Exists,
    /// [`change_password`](super::PasswordAuthenticator::change_password)
    /// was given a wrong current password (counted toward the lockout).
    /// `403`.
    #[error("the current password is wrong")]
    WrongPassword,
    /// [`change_password`](super::PasswordAuthenticator::change_password)
    /// was called for a session nobody is signed in to. `401`.
    #[error("nobody is signed in to this session")]
    NotSignedIn,
    /// A second factor's code is wrong, malformed or used already, or the
    /// account is locked (counted toward the lockout when signing in).
    /// `403`.
    #[error("the code is wrong or was used already")]
    WrongCode,
    /// No half-open sign-in waits for a second factor on this session (or
    /// it expired, or the account changed since the password). `401`.
    #[error("no sign-in is waiting for a second factor")]
    NoPendingSignIn,
    /// The account has a confirmed second factor already. `409`.
    #[error("the account has a second factor already")]
    AlreadyEnrolled,
    /// The account has no second factor (or no enrolment to confirm).
    /// `409`.
    #[error("the account has no second factor to confirm or use")]
    NotEnrolled,
    /// A passkey was not accepted: a credential keycard does not know, a
    /// signature or challenge that does not verify, a signature counter
    /// that did not advance (a cloned authenticator, or a replay), or a
    /// disabled or locked account (counted toward the lockout when the
    /// account is known). `403`.
    #[error("the passkey was not accepted")]
    PasskeyRefused,
    /// No passkey ceremony of this kind waits on this session (none was
    /// started, it was used, or it expired): start again. `400`.
    #[error("no passkey ceremony is waiting on this session")]
    NoPasskeyCeremony,
    /// The authenticator's credential is registered already (to this or
    /// another account). `409`.
    #[error("this passkey is registered already")]
    PasskeyExists,
    /// The account has [`MAX_PASSKEYS`](super::passkeys::MAX_PASSKEYS)
    /// passkeys already: remove one first. `409`.
    #[error("the account has as many passkeys as it may have")]
    TooManyPasskeys,
    /// The store failed. `503`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The password check could not run (its database is down). `503`.
    #[error("the password check is unavailable: {0}")]
    Unavailable(String),
    /// The operating system could not supply random bytes for a token.
    /// `503`.
    #[error("the operating system's random number generator failed")]
    Randomness,
    /// Hashing failed (the operating system's randomness, or argon2
    /// itself). `500`.
    #[error("password hashing failed")]
    Hashing,
    /// The account was changed, but ending or rotating its sessions failed:
    /// the change stands; retry ending the sessions. The session error's
    /// status.
    #[error("ending the account's sessions failed: {0}")]
    Sessions(#[from] SessionError),
}

impl AccountError {
    /// The status and generic body this error answers with.
    pub(crate) fn status_and_body(&self) -> (StatusCode, &'static str) {
        match self {
            AccountError::InvalidUsername
            | AccountError::InvalidPassword
            | AccountError::InvalidTokenName => (StatusCode::BAD_REQUEST, "Invalid input.\n"),
            AccountError::Exists => (StatusCode::CONFLICT, "This name is taken.\n"),
            AccountError::WrongPassword => (StatusCode::FORBIDDEN, "Wrong password.\n"),
            AccountError::NotSignedIn | AccountError::NoPendingSignIn => {
                (StatusCode::UNAUTHORIZED, "Please sign in.\n")
            }
            AccountError::WrongCode => (StatusCode::FORBIDDEN, "Wrong code.\n"),
            AccountError::AlreadyEnrolled => {
                (StatusCode::CONFLICT, "A second factor is set up already.\n")
            }
            AccountError::NotEnrolled => (StatusCode::CONFLICT, "No second factor is set up.\n"),
            AccountError::PasskeyRefused => {
                (StatusCode::FORBIDDEN, "The passkey was not accepted.\n")
            }
            AccountError::NoPasskeyCeremony => (
                StatusCode::BAD_REQUEST,
                "The passkey request expired. Please try again.\n",
            ),
            AccountError::TooManyPasskeys => (
                StatusCode::CONFLICT,
                "Remove a passkey before adding another.\n",
            ),
            AccountError::PasskeyExists => (
                StatusCode::CONFLICT,
                "This passkey is registered already.\n",
            ),
            AccountError::Store(_) | AccountError::Unavailable(_) | AccountError::Randomness => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The account service is temporarily unavailable. Please try again later.\n",
            ),
            AccountError::Hashing => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error.\n",
            ),
            AccountError::Sessions(error) => error.status_and_body(),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AccountError {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.status_and_body();
        tracing::warn!(error = %self, %status, "keycard: handler answered with an account error");
        crate::response::plain_response(status, body)
    }
}
