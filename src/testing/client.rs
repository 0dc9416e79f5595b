//! [`TestClient`] and its [`TestResponse`].

use std::fmt::Debug;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use tower_service::Service;

use super::CookieJar;
use crate::config::SessionConfig;
use crate::token::{SessionId, SessionToken};
use crate::{Login, SessionAdmin, SessionError};

/// A browser for tests: sends requests to an application (any tower
/// service: an axum `Router`, say) through `tower::ServiceExt::oneshot`,
/// keeps the cookies the responses set in a [`CookieJar`], and sends them
/// back. It knows keycard's cookie names in both cookie modes, so
/// [`session_id`](Self::session_id) and [`csrf_token`](Self::csrf_token)
/// work whether or not the layer uses
/// [`insecure_dev_cookies`](crate::SessionLayer::insecure_dev_cookies)
/// (call [`cookie_names`](Self::cookie_names) for a layer with a
/// [`cookie_name`](crate::SessionLayer::cookie_name) of its own).
///
/// Its requests carry no `Origin` or `Sec-Fetch-Site`, like a script's, so
/// keycard's cross-origin refusal lets them through; add those headers
/// with [`header`](Self::header) to test the refusal.
///
/// Its fields are the browser's state, for a test to look at or change
/// between requests: the [`jar`](Self::jar) (read, forge or copy a
/// cookie; `assert_eq!` two jars), the [`headers`](Self::headers) sent
/// with every request, and the [`peer`](Self::peer) address they come
/// from.
#[derive(Clone, Debug)]
pub struct TestClient<S> {
    service: S,
    /// The browser's cookies.
    pub jar: CookieJar,
    /// Sent with every request, after the request's own headers (the
    /// [`header`](Self::header) builder adds to them). Change them between
    /// requests to send other credentials:
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, http::header::AUTHORIZATION, routing::get};
    /// use keycard::testing::TestClient;
    ///
    /// let app = Router::new().route("/", get(|headers: axum::http::HeaderMap| async move {
    ///     headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default()
    /// }));
    /// let mut api = TestClient::new(app).header("authorization", "Bearer one");
    /// assert_eq!(api.get("/").await.text(), "Bearer one");
    /// api.headers.insert(AUTHORIZATION, "Bearer two".parse()?);
    /// assert_eq!(api.get("/").await.text(), "Bearer two");
    /// api.headers.clear();
    /// assert_eq!(api.get("/").await.text(), "");
    /// # Ok(()) }
    /// ```
    pub headers: HeaderMap,
    /// The address requests come from, given to the application as axum's
    /// `ConnectInfo<SocketAddr>` (what
    /// `into_make_service_with_connect_info::<SocketAddr>()` gives a real
    /// server, and what keycard's client-IP handling reads: trusted
    /// proxies, a sign-in's recorded address). `None`, the default, sends
    /// none, like a plain `oneshot`; a request given to
    /// [`send`](Self::send) with a `ConnectInfo` of its own keeps it.
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::net::SocketAddr;
    ///
    /// use axum::{Router, extract::ConnectInfo, routing::get};
    /// use keycard::testing::TestClient;
    ///
    /// let app = Router::new().route(
    ///     "/ip",
    ///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    /// );
    /// let mut browser = TestClient::new(app);
    /// browser.peer = Some(SocketAddr::from(([203, 0, 113, 9], 40000)));
    /// assert_eq!(browser.get("/ip").await.text(), "203.0.113.9");
    /// # Ok(()) }
    /// ```
    pub peer: Option<SocketAddr>,
    names: Vec<(String, String)>,
}

/// A response as a test looks at it: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, read to its end.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The header `name`'s first value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Where a redirect points.
    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }

    /// The `Set-Cookie` headers, as text.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// The id and token cookie names of keycard's default cookie base, secure
/// and development mode.
fn default_names() -> Vec<(String, String)> {
    let secure = SessionConfig::default();
    let dev = {
        let mut config = SessionConfig::default();
        config.set_secure(false);
        config
    };
    [secure, dev]
        .iter()
        .map(|c| {
            (
                c.id_cookie_name().to_owned(),
                c.token_cookie_name().to_owned(),
            )
        })
        .collect()
}

impl<S, B> TestClient<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send,
    S::Error: Debug,
    S::Future: Send,
    B: axum::body::HttpBody + Send,
    B::Data: Send,
    B::Error: Debug,
{
    /// A browser with an empty jar in front of `service`.
    pub fn new(service: S) -> Self {
        Self {
            service,
            jar: CookieJar::new(),
            headers: HeaderMap::new(),
            peer: None,
            names: default_names(),
        }
    }

    /// A browser that is signed in already: a session for `login` is
    /// stored through `admin` (the application's layer's
    /// [`SessionLayer::admin`](crate::SessionLayer::admin)) and its cookies
    /// put in the jar, so a test of a signed-in page needs no sign-in form.
    /// The session is made as a sign-in makes it, minus the per-user
    /// session limit.
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, routing::get};
    /// use keycard::auth::CurrentUser;
    /// use keycard::testing::TestClient;
    /// use keycard::{Login, SessionLayer, SqliteStore};
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// store.migrate().await?;
    /// let layer = SessionLayer::new(store);
    /// let app = Router::new()
    ///     .route("/me", get(|CurrentUser(user): CurrentUser| async move { user.id }))
    ///     .layer(layer.clone());
    /// let mut ada = TestClient::signed_in(app, &layer.admin(), Login::new("ada")).await?;
    /// assert_eq!(ada.get("/me").await.text(), "ada");
    /// # Ok(()) }
    /// ```
    pub async fn signed_in(
        service: S,
        admin: &SessionAdmin,
        login: Login,
    ) -> Result<Self, SessionError> {
        let mut client = Self::new(service).cookie_names(&admin.ctx.config);
        let token = SessionToken::generate().map_err(|_| SessionError::Randomness)?;
        let fields = login.into_fields(token.hash(), admin.ctx.now())?;
        let id = admin.ctx.store.insert(&fields).await?;
        let config = &admin.ctx.config;
        client
            .jar
            .insert(config.id_cookie_name(), id.get().to_string());
        client
            .jar
            .insert(config.token_cookie_name(), token.expose());
        Ok(client)
    }

    /// Reads keycard's cookies under `config`'s names (a layer with a
    /// cookie base of its own: pass `layer.config()`).
    pub fn cookie_names(mut self, config: &SessionConfig) -> Self {
        self.names = vec![(
            config.id_cookie_name().to_owned(),
            config.token_cookie_name().to_owned(),
        )];
        self
    }

    /// Sends `name: value` with every request (an `Authorization`, a
    /// `User-Agent`, an `Origin` to test the cross-origin refusal). Names or
    /// values that cannot be headers are a test's bug: they panic.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    /// `GET uri`.
    pub async fn get(&mut self, uri: &str) -> TestResponse {
        self.send(request("GET", uri, Body::empty())).await
    }

    /// `POST uri` with an empty body.
    pub async fn post(&mut self, uri: &str) -> TestResponse {
        self.send(request("POST", uri, Body::empty())).await
    }

    /// `POST uri` with `fields` as a form body
    /// (`application/x-www-form-urlencoded`), as a browser submits a form.
    /// Add `("csrf_token", token)` from [`csrf_token`](Self::csrf_token) for
    /// a form that keycard's [`CsrfForm`](crate::csrf::CsrfForm) guards.
    pub async fn post_form(&mut self, uri: &str, fields: &[(&str, &str)]) -> TestResponse {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = request("POST", uri, Body::from(body));
        request.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self.send(request).await
    }

    /// Sends `request` with the jar's cookies (in place of any `Cookie`
    /// header of its own, unless the jar is empty), the client's
    /// [`headers`](Self::headers) and [`peer`](Self::peer), and keeps the
    /// cookies the response sets: for a request [`get`](Self::get),
    /// [`post`](Self::post) and [`post_form`](Self::post_form) do not build
    /// (another method, a JSON body, an extension the application reads).
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, body::Body, http::Request, routing::put};
    /// use keycard::testing::TestClient;
    ///
    /// let app = Router::new().route("/doc", put(|body: String| async move { body.len().to_string() }));
    /// let mut client = TestClient::new(app);
    /// let request = Request::put("/doc").body(Body::from("hello"))?;
    /// let response = client.send(request).await;
    /// assert_eq!((response.status.as_u16(), response.text().as_str()), (200, "5"));
    /// # Ok(()) }
    /// ```
    pub async fn send(&mut self, mut request: Request<Body>) -> TestResponse {
        for (name, value) in &self.headers {
            request.headers_mut().append(name, value.clone());
        }
        if let Some(cookies) = self.jar.header() {
            request.headers_mut().insert(COOKIE, cookies);
        }
        if let Some(peer) = self.peer
            && request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_none()
        {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        // A test's service failing is the test's failure.
        let response = self
            .service
            .clone()
            .oneshot(request)
            .await
            .expect("the service answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body is read").to_bytes();
        for set_cookie in parts.headers.get_all(SET_COOKIE) {
            self.jar.absorb(set_cookie);
        }
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    /// The id of the session the jar's cookies name.
    pub fn session_id(&self) -> Option<SessionId> {
        self.names
            .iter()
            .find_map(|(id, _)| self.jar.get(id))
            .and_then(|id| id.parse().ok())
    }

    /// The synchronizer token of the jar's session, for a form's
    /// `csrf_token` field or an `X-CSRF-Token` header: what
    /// [`Session::csrf_token`](crate::Session::csrf_token) gives the page.
    pub fn csrf_token(&self) -> Option<String> {
        let token = self
            .names
            .iter()
            .find_map(|(_, token)| self.jar.get(token))?;
        let token: SessionToken = token.parse().ok()?;
        Some(token.csrf_token().as_str().to_owned())
    }

    /// What a browser restart does: the session cookies are gone, the
    /// persistent ones (a remember-me cookie) stay.
    pub fn restart_browser(&mut self) {
        self.jar.restart();
    }

    /// Another browser on the same application, with an empty jar (and
    /// the same headers and peer address).
    pub fn new_browser(&self) -> Self {
        Self {
            service: self.service.clone(),
            jar: CookieJar::new(),
            headers: self.headers.clone(),
            peer: self.peer,
            names: self.names.clone(),
        }
    }
}

/// A request of `method` for `uri`; a `uri` that is not one is a test's
/// bug and panics.
fn request(method: &str, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .expect("a valid method and URI")
}
