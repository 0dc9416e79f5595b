//! The session's synchronizer token: what forms and scripts send back so
//! that an unsafe request is known to come from this site's own pages.

use std::sync::atomic::Ordering;

use super::{Session, ready_mut};
use crate::SessionError;
use crate::token::{CsrfToken, SessionToken};

impl Session {
    /// The session's synchronizer (anti-CSRF) token, to put in a hidden
    /// form field named [`csrf::FORM_FIELD`](crate::csrf::FORM_FIELD) or a
    /// request header named [`csrf::HEADER`](crate::csrf::HEADER); the
    /// [`CsrfForm`](crate::csrf::CsrfForm) and
    /// [`CsrfHeader`](crate::csrf::CsrfHeader) extractors check it.
    ///
    /// It is derived from the session token, so it is kept server-side with
    /// no extra column or write, and it changes whenever the session token
    /// does: at sign-in, sign-out and [`regenerate`](Self::regenerate). A
    /// token captured before a sign-in fails after it.
    ///
    /// Asking for it stores nothing: for a session that is not stored yet,
    /// it is the token of the session this response will store if the
    /// handler puts something in it, and otherwise of no session at all
    /// (harmless: a request without a stored session has nothing to
    /// forge). `None` for a [request-only](Self::is_request_only) session,
    /// which has no cookie to protect. The token never appears in a log,
    /// an error or [`SessionInfo`](crate::SessionInfo).
    ///
    /// ```
    /// # async fn form(session: keycard::Session) -> Result<String, keycard::Error> {
    /// let token = session.csrf_token().await?;
    /// let field = token.map_or(String::new(), |t| {
    ///     format!(r#"<input type="hidden" name="{}" value="{}">"#, keycard::csrf::FORM_FIELD, t.as_str())
    /// });
    /// Ok(format!(r#"<form method="post" action="/visit">{field}<button>Visit</button></form>"#))
    /// # }
    /// ```
    pub async fn csrf_token(&self) -> Result<Option<CsrfToken>, SessionError> {
        if self.is_request_only() {
            return Ok(None);
        }
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        let token = match (&w.new_token, &w.stored, &self.0.presented) {
            (Some(token), _, _) => token.clone(),
            (None, Some(_), Some((_, token))) => token.clone(),
            (None, _, _) => {
                // Not stored yet: draw the token it will be stored with.
                let token = SessionToken::generate().map_err(|_| SessionError::Randomness)?;
                w.new_token = Some(token.clone());
                token
            }
        };
        Ok(Some(token.csrf_token()))
    }

    /// Whether `presented` is this request's synchronizer token, compared
    /// in constant time. Requests without a stored session pass (there is
    /// no session to ride on; cross-origin forms that would create one are
    /// refused by the layer's origin check), and so do request-only
    /// sessions signed in by a bearer token or another credential browsers
    /// never send on their own. Request-only sessions of HTTP Basic, which
    /// browsers resend by themselves, have no token and never pass.
    pub async fn verify_csrf(&self, presented: Option<&str>) -> Result<bool, SessionError> {
        if self.is_request_only() {
            let ambient = self.0.ambient_credentials.load(Ordering::Acquire);
            if ambient {
                tracing::info!("keycard: unsafe request signed in by HTTP Basic alone refused");
            }
            return Ok(!ambient);
        }
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        let (Some(_), Some((_, token))) = (&w.stored, &self.0.presented) else {
            return Ok(true);
        };
        let expected = match &w.new_token {
            Some(rotated) => rotated.csrf_token(),
            None => token.csrf_token(),
        };
        let valid = presented.is_some_and(|p| expected.matches(p));
        if !valid {
            w.span.in_scope(|| {
                tracing::info!(
                    present = presented.is_some(),
                    "keycard: synchronizer token missing or wrong"
                );
            });
        }
        Ok(valid)
    }
}
