//! Reading the session cookies off a request and writing them onto a response.
//!
//! Parsing uses the `cookie` crate (the parser `tower-cookies` is built on),
//! over every `Cookie` header, so that a cookie of ours sent twice with
//! different values can be seen and refused: a jar keeps only one of them.

use std::borrow::Cow;

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue};

use crate::config::SessionConfig;
use crate::session::{CookieAction, Saved};
use crate::token::{SessionId, SessionToken};

/// What the request's cookies said about its session.
#[derive(Debug, Default)]
pub(crate) struct Presented {
    /// A well-formed (id, token) pair, if there was exactly one.
    pub(crate) pair: Option<(SessionId, SessionToken)>,
    /// Whether any cookie with one of our names came, well-formed or not.
    pub(crate) had_cookie: bool,
}

/// One of our cookie names' value(s): a second, different value makes the
/// cookie ambiguous, which counts as absent.
#[derive(Default)]
enum Seen<'a> {
    #[default]
    Absent,
    Once(Cow<'a, str>),
    Ambiguous,
}

impl<'a> Seen<'a> {
    fn add(&mut self, value: Cow<'a, str>) {
        *self = match std::mem::take(self) {
            Seen::Absent => Seen::Once(value),
            Seen::Once(first) if first == value => Seen::Once(first),
            Seen::Once(_) | Seen::Ambiguous => Seen::Ambiguous,
        };
    }

    fn value(&self) -> Option<&str> {
        match self {
            Seen::Once(value) => Some(value),
            Seen::Absent | Seen::Ambiguous => None,
        }
    }
}

/// Reads the id and token cookies. Anything malformed is treated as absent.
pub(crate) fn read(headers: &HeaderMap, config: &SessionConfig) -> Presented {
    let mut id = Seen::Absent;
    let mut token = Seen::Absent;
    for header in headers.get_all(COOKIE) {
        // Other applications' cookies may hold any bytes; ours are ASCII, so
        // a lossy view of the header cannot change them.
        let text = String::from_utf8_lossy(header.as_bytes());
        for cookie in Cookie::split_parse(text.as_ref()).flatten() {
            let (name, value) = cookie.name_value();
            if name == config.id_cookie {
                id.add(Cow::Owned(value.to_owned()));
            } else if name == config.token_cookie {
                token.add(Cow::Owned(value.to_owned()));
            }
        }
    }
    let had_cookie = !matches!(id, Seen::Absent) || !matches!(token, Seen::Absent);
    let parsed_id = id.value().map(str::parse::<SessionId>);
    let parsed_token = token.value().map(str::parse::<SessionToken>);
    let pair = match (parsed_id, parsed_token) {
        (Some(Ok(id)), Some(Ok(token))) => Some((id, token)),
        (None, None) => None,
        (id, token) => {
            tracing::debug!(
                id_ok = matches!(id, Some(Ok(_))),
                token_ok = matches!(token, Some(Ok(_))),
                "keycard: malformed or incomplete session cookies ignored"
            );
            None
        }
    };
    Presented { pair, had_cookie }
}

/// Adds the `Set-Cookie` headers `action` calls for, and `Cache-Control:
/// no-store` with them so that no shared cache keeps a session cookie.
pub(crate) fn write(headers: &mut HeaderMap, action: &CookieAction, config: &SessionConfig) {
    let cookies = match action {
        CookieAction::None => return,
        CookieAction::Set { id, token, max_age } => {
            let max_age = max_age.map(|age| cookie::time::Duration::seconds(age.num_seconds()));
            [
                build(config, config.id_cookie.clone(), id.to_string(), max_age),
                build(config, config.token_cookie.clone(), token.expose(), max_age),
            ]
        }
        CookieAction::Expire => {
            let mut cookies = [
                build(config, config.id_cookie.clone(), String::new(), None),
                build(config, config.token_cookie.clone(), String::new(), None),
            ];
            // Same attributes as the cookie being removed, or some browsers
            // keep the original.
            cookies.iter_mut().for_each(Cookie::make_removal);
            cookies
        }
    };
    for cookie in cookies {
        // Names are validated at configuration and values are digits or
        // base64url, so this never fails; skip rather than panic if it did.
        if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
            headers.append(SET_COOKIE, value);
        }
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Keeps private responses out of every cache: `no-store` for a signed-in
/// session (unless the handler chose its own `Cache-Control`; cookie-setting
/// responses got theirs in [`write`]), `Vary: Cookie` for any response that
/// used the session, and `Clear-Site-Data` on sign-out when configured.
pub(crate) fn mark_private(headers: &mut HeaderMap, saved: &Saved, config: &SessionConfig) {
    if saved.signed_in && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Most responses have no `Vary` yet: no scan then.
    let varies = headers.contains_key(VARY)
        && headers.get_all(VARY).iter().any(|value| {
            value
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|name| name.trim() == "*" || name.trim().eq_ignore_ascii_case("cookie"))
        });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
    if saved.signed_out && config.clear_site_data {
        headers.insert(
            http::HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cache\""),
        );
    }
}

fn build(
    config: &SessionConfig,
    name: String,
    value: String,
    max_age: Option<cookie::time::Duration>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .secure(config.secure)
        .same_site(config.same_site)
        .path("/")
        .build();
    if let Some(max_age) = max_age {
        cookie.set_max_age(max_age);
    }
    cookie
}
