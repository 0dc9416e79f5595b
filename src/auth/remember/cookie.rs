//! The remember-me cookie: `<series>.<token>`, each 43 characters of
//! base64url, read off a request and written onto a response.

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::config::SessionConfig;
use crate::token::{SessionToken, TokenHash};

/// A well-formed remember-me cookie: the series (written back with the
/// next token), and the hashes the store is asked about. The token itself
/// is not kept past the parse.
#[derive(Clone, Debug)]
pub(super) struct Presented {
    pub(super) series: SessionToken,
    pub(super) series_hash: TokenHash,
    pub(super) token: TokenHash,
}

/// What the request's cookies held.
pub(super) enum Read {
    /// No remember-me cookie.
    Absent,
    /// One, well-formed.
    Found(Presented),
    /// One that cannot be ours (truncated, forged, sent twice with two
    /// values): the response expires it.
    Malformed,
}

/// Reads the remember-me cookie of `config`'s name.
pub(super) fn read(headers: &HeaderMap, config: &SessionConfig) -> Read {
    let name = config.remember_cookie_name();
    let mut found: Option<String> = None;
    for header in headers.get_all(COOKIE) {
        let text = String::from_utf8_lossy(header.as_bytes());
        for cookie in Cookie::split_parse(text.as_ref()).flatten() {
            if cookie.name() != name {
                continue;
            }
            match &found {
                Some(value) if value != cookie.value() => return Read::Malformed,
                _ => found = Some(cookie.value().to_owned()),
            }
        }
    }
    let Some(value) = found else {
        return Read::Absent;
    };
    let parsed = value.split_once('.').and_then(|(series, token)| {
        let series = series.parse::<SessionToken>().ok()?;
        let token = token.parse::<SessionToken>().ok()?;
        Some(Presented {
            series_hash: series.hash(),
            series,
            token: token.hash(),
        })
    });
    parsed.map_or(Read::Malformed, Read::Found)
}

/// What the response does with the cookie.
#[derive(Clone, Debug, Default)]
pub(super) enum Action {
    /// Leaves it as it is.
    #[default]
    Keep,
    /// Sets it to `series.token`, for `max_age`.
    Set {
        value: String,
        max_age: chrono::TimeDelta,
    },
    /// Removes it.
    Expire,
}

/// The `<series>.<token>` value of a cookie.
pub(super) fn value(series: &SessionToken, token: &SessionToken) -> String {
    format!("{}.{}", series.expose(), token.expose())
}

/// Adds the `Set-Cookie` `action` calls for, with the session cookies'
/// attributes (HttpOnly, `Secure` and `__Host-` unless in dev mode,
/// `SameSite`, `Path=/`), and `no-store` so that no cache keeps it.
pub(super) fn write(headers: &mut HeaderMap, action: &Action, config: &SessionConfig) {
    let (value, max_age) = match action {
        Action::Keep => return,
        Action::Set { value, max_age } => (value.clone(), Some(*max_age)),
        Action::Expire => (String::new(), None),
    };
    let mut cookie = Cookie::build((config.remember_cookie_name().to_owned(), value))
        .http_only(true)
        .secure(config.secure())
        .same_site(config.same_site)
        .path("/")
        .build();
    match max_age {
        Some(age) => cookie.set_max_age(cookie::time::Duration::seconds(age.num_seconds())),
        None => cookie.make_removal(),
    }
    // The name is validated at configuration and the value is base64url:
    // this never fails; skip rather than panic if it did.
    if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
        headers.append(SET_COOKIE, value);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
