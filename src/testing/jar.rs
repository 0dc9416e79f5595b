//! [`CookieJar`]: the cookies a browser would keep, as a test needs them.

use std::collections::BTreeMap;

use cookie::Cookie;
use http::HeaderValue;

/// The cookies a [`TestClient`](super::TestClient) holds, as a browser
/// keeps them for one site: set by `Set-Cookie`, removed by `Max-Age=0` or
/// a past `Expires`, and, at [`restart`](Self::restart), forgotten unless
/// they were persistent. Domain and path are not looked at (a test talks
/// to one application), and `Secure` cookies are sent over plain HTTP, so
/// the same test passes in both of keycard's cookie modes.
///
/// Two jars are equal when they hold the same cookies, with the same values
/// and persistence: a copy taken before a request tells whether the
/// response changed any cookie.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::{get, post}};
/// use keycard::testing::TestClient;
/// use keycard::{Session, SessionLayer, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let app = Router::new()
///     .route("/login", post(|session: Session| async move {
///         session.login("ada").await?;
///         Ok::<_, keycard::Error>("in")
///     }))
///     .route("/", get(|| async { "home" }))
///     .layer(SessionLayer::new(store));
/// let mut browser = TestClient::new(app);
/// browser.post("/login").await;
/// let before = browser.jar.clone();
/// browser.get("/").await;
/// assert_eq!(browser.jar, before, "a page that reads nothing sets no cookie");
/// browser.post("/login").await;
/// assert_ne!(browser.jar, before, "a sign-in issues a new token");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: BTreeMap<String, Kept>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    value: String,
    /// It carried a `Max-Age` or `Expires`: it outlives the browser.
    persistent: bool,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(|kept| kept.value.as_str())
    }

    /// Sets the cookie `name` to `value` as a browser-session cookie (a
    /// forged or copied cookie, say).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let kept = Kept {
            value: value.into(),
            persistent: false,
        };
        self.cookies.insert(name.into(), kept);
    }

    /// Removes the cookie `name`; its value, if it had one.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.cookies.remove(name).map(|kept| kept.value)
    }

    /// The names of the cookies held, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cookies.keys().map(String::as_str)
    }

    /// Whether it holds no cookie.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Forgets every cookie.
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// What a browser restart keeps: the persistent cookies only (a
    /// remember-me cookie, say), not the session's.
    pub fn restart(&mut self) {
        self.cookies.retain(|_, kept| kept.persistent);
    }

    /// Takes in a response's `Set-Cookie` header. One that cannot be parsed
    /// is ignored, as a browser ignores it.
    pub fn absorb(&mut self, set_cookie: &HeaderValue) {
        let Ok(text) = set_cookie.to_str() else {
            return;
        };
        let Ok(cookie) = Cookie::parse(text) else {
            return;
        };
        let removed = cookie.max_age().is_some_and(|age| age.is_zero())
            || cookie
                .expires_datetime()
                .is_some_and(|at| at <= cookie::time::OffsetDateTime::now_utc());
        if removed {
            self.cookies.remove(cookie.name());
            return;
        }
        let persistent = cookie.max_age().is_some() || cookie.expires_datetime().is_some();
        let kept = Kept {
            value: cookie.value().to_owned(),
            persistent,
        };
        self.cookies.insert(cookie.name().to_owned(), kept);
    }

    /// The `Cookie` header a browser would send, if it holds any cookie.
    pub fn header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, kept)| format!("{name}={}", kept.value))
            .collect();
        HeaderValue::try_from(pairs.join("; ")).ok()
    }
}
