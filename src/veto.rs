//! [`Veto`]: a refusal to commit, which a request's transaction answers
//! with (see [`cnx`](crate::cnx)). A core type, so that [`SessionError`](crate::SessionError)
//! can carry it without depending on the connections.

use http::StatusCode;

/// A refusal to commit, from a precommit operation, a `Commit` hook or
/// [`Cnx::set_uncommitable`](crate::cnx::Cnx::set_uncommitable): the transaction rolls back and the response
/// becomes an error with this status (default `422 Unprocessable Entity`).
/// The reason goes to the log, not to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Veto {
    status: StatusCode,
    reason: String,
}

impl Veto {
    /// A veto for `reason`, answered `422`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            reason: reason.into(),
        }
    }

    /// Answers with `status` instead.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Why the transaction was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The status the response gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for Veto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
