//! [`Identity`]: who is signed in to a session, in one look.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Session;
use crate::SessionError;

/// Who is signed in to a session and how: what a guard or a page header
/// needs, read under one lock instead of one `await` per field. Carries no
/// token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Identity {
    /// The user.
    pub user_id: String,
    /// How they signed in ([`Login::method`](crate::Login::method)).
    pub auth_method: Option<String>,
    /// An API client's session ([`Login::api`](crate::Login::api)).
    pub is_api: bool,
    /// When they signed in.
    pub authenticated_at: Option<DateTime<Utc>>,
    /// The credential that signed them in, when named
    /// ([`Login::credential`](crate::Login::credential)).
    pub signed_in_by: Option<String>,
    /// Signed in by this request's own credentials, for this request only
    /// ([`Session::is_request_only`]).
    pub request_only: bool,
}

impl Session {
    /// Who is signed in, `None` while anonymous.
    ///
    /// ```
    /// # async fn header(session: keycard::Session) -> Result<String, keycard::Error> {
    /// Ok(match session.identity().await? {
    ///     Some(who) => format!("signed in as {} · sign out", who.user_id),
    ///     None => "sign in".to_owned(),
    /// })
    /// # }
    /// ```
    pub async fn identity(&self) -> Result<Option<Identity>, SessionError> {
        let request_only = self.is_request_only();
        self.with(|w| {
            let view = &w.view;
            view.user_id.as_ref().map(|user_id| Identity {
                user_id: user_id.clone(),
                auth_method: view.auth_method.clone(),
                is_api: view.is_api,
                authenticated_at: view.authenticated_at,
                signed_in_by: view.credential.clone(),
                request_only,
            })
        })
        .await
    }
}
