//! What the guards need from [`AuthLayer`](super::AuthLayer), and the
//! challenge both answer with when nobody is signed in.

use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};

use super::guards::Permissions;
use crate::response::plain_response;

/// Put in each request's extensions by [`AuthLayer`](super::AuthLayer).
#[derive(Clone, Debug)]
pub(crate) struct AuthSettings {
    pub(crate) login_url: String,
    /// Where a browser confirms its sign-in for [`RequireRecentAuth`](super::RequireRecentAuth).
    pub(crate) confirm_url: String,
    /// How long a credential proof counts as recent.
    pub(crate) recent_auth: std::time::Duration,
    pub(crate) permissions: Option<Arc<dyn Permissions>>,
    pub(crate) challenges: Vec<&'static str>,
    /// The application's user loader, for [`SignedIn`](super::SignedIn).
    pub(crate) users: Option<super::users::RegisteredUsers>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            login_url: "/login".to_owned(),
            confirm_url: "/confirm".to_owned(),
            recent_auth: super::guards::DEFAULT_RECENT_AUTH,
            permissions: None,
            challenges: Vec::new(),
            users: None,
        }
    }
}

/// `401` with a `WWW-Authenticate` challenge per scheme on offer.
///
/// HTTP wants at least one. With no retriever of credentials configured the
/// application signs in through its own pages, and the challenge says so
/// with `Cookie`, a scheme no browser answers: offering `Basic` there would
/// make a browser that met the `401` through a script open its own password
/// dialog and then send that password with every request to a server that
/// never reads it.
pub(crate) fn challenge<B: From<&'static str>>(schemes: &[&'static str]) -> Response<B> {
    let mut response = plain_response(StatusCode::UNAUTHORIZED, "Authentication required.\n");
    let schemes = if schemes.is_empty() {
        &["Cookie"][..]
    } else {
        schemes
    };
    for scheme in schemes {
        let value = match *scheme {
            "Basic" => "Basic realm=\"keycard\", charset=\"UTF-8\"",
            "Bearer" => "Bearer realm=\"keycard\"",
            "Cookie" => "Cookie realm=\"keycard\"",
            other => other,
        };
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().append(WWW_AUTHENTICATE, value);
        }
    }
    response
}
