//! Test support: a store wrapper that counts calls and can be told to fail,
//! the test application, and a client with a cookie jar that drives the app
//! (keycard's own `keycard::testing::TestClient`).
#![allow(dead_code)]

pub mod cnx;
pub mod memory;
pub mod stores;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Router, http};
use chrono::{DateTime, Utc};
use keycard::auth::LockoutPolicy;
use keycard::clock::ManualClock;
use keycard::store::{ApiTokenRecord, NewApiToken, PasskeyRecord, UserRecord, UserStore};
use keycard::store::{
    ExpiryCutoffs, Merge, SessionFields, SessionRecord, SessionStore, StoreError, UserSessions,
};
use keycard::testing::{TestClient, TestResponse};
use keycard::token::TokenHash;
use keycard::{Login, Session, SessionId, SessionLayer};

/// Calls made to the store, by method.
#[derive(Debug, Default)]
pub struct Calls {
    pub load: AtomicU64,
    pub insert: AtomicU64,
    pub update: AtomicU64,
    pub touch: AtomicU64,
    pub delete: AtomicU64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.load.load(Ordering::SeqCst) + self.writes()
    }

    pub fn writes(&self) -> u64 {
        [&self.insert, &self.update, &self.touch, &self.delete]
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum()
    }

    pub fn loads(&self) -> u64 {
        self.load.load(Ordering::SeqCst)
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        for c in [
            &self.load,
            &self.insert,
            &self.update,
            &self.touch,
            &self.delete,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// A real store wrapped to count its calls and, on demand, to fail like a
/// database that went away.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: Arc<dyn SessionStore>,
    pub calls: Calls,
    pub fail_loads: AtomicBool,
    pub fail_writes: AtomicBool,
    pub fail_purges: AtomicBool,
    pub purge_attempts: AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            calls: Calls::default(),
            fail_loads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            fail_purges: AtomicBool::new(false),
            purge_attempts: AtomicU64::new(0),
        }
    }

    fn check(&self, flag: &AtomicBool) -> Result<(), StoreError> {
        if flag.load(Ordering::SeqCst) {
            Err(StoreError::Database(sqlx::Error::PoolTimedOut))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.calls.load.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_loads)?;
        self.inner.load(id).await
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        self.calls.insert.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.insert(fields).await
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        self.calls.update.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.update(id, expected_version, fields).await
    }

    async fn update_data(
        &self,
        id: SessionId,
        expected_version: i64,
        data: &keycard::store::SessionData,
        last_activity: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.calls.update.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner
            .update_data(id, expected_version, data, last_activity)
            .await
    }

    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.calls.update.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.update_locked(id, merge).await
    }

    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.calls.touch.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.touch(id, at).await
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        self.calls.delete.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.delete(id).await
    }

    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        self.purge_attempts.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_purges)?;
        self.inner.delete_expired(cutoffs, limit).await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.check(&self.fail_loads)?;
        self.inner.list_for_user(user_id).await
    }

    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError> {
        self.calls.delete.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.delete_for_user(user_id, which).await
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.calls.delete.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.delete_all().await
    }

    async fn delete_excess_for_user(
        &self,
        user_id: &str,
        api: bool,
        keep: u32,
    ) -> Result<u64, StoreError> {
        self.calls.delete.fetch_add(1, Ordering::SeqCst);
        self.check(&self.fail_writes)?;
        self.inner.delete_excess_for_user(user_id, api, keep).await
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.count_active_since(since).await
    }

    fn combines_updates(&self) -> bool {
        self.inner.combines_updates()
    }
}

/// A [`UserStore`] that can be told to fail.
#[derive(Debug)]
pub struct FlakyUsers {
    pub inner: Arc<dyn UserStore>,
    pub fail: AtomicBool,
}

impl FlakyUsers {
    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Database(sqlx::Error::PoolTimedOut))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl UserStore for FlakyUsers {
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.create_user(user).await
    }
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.check()?;
        self.inner.find_user(username).await
    }
    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_password_hash(username, hash).await
    }
    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.set_disabled(username, disabled).await
    }
    async fn record_failure(
        &self,
        username: &str,
        now: DateTime<Utc>,
        policy: LockoutPolicy,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.check()?;
        self.inner.record_failure(username, now, policy).await
    }
    async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.clear_failures(username).await
    }
    async fn insert_api_token(&self, token: &NewApiToken) -> Result<i64, StoreError> {
        self.check()?;
        self.inner.insert_api_token(token).await
    }
    async fn find_api_token(&self, hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.check()?;
        self.inner.find_api_token(hash).await
    }
    async fn touch_api_token(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch_api_token(id, at).await
    }
    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.check()?;
        self.inner.list_api_tokens(user_id).await
    }
    async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_api_token(user_id, id).await
    }

    async fn insert_one_time_token(
        &self,
        token: &keycard::store::OneTimeToken,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_one_time_token(token).await
    }

    async fn find_one_time_token(
        &self,
        hash: &keycard::token::TokenHash,
        purpose: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<keycard::store::OneTimeToken>, StoreError> {
        self.check()?;
        self.inner.find_one_time_token(hash, purpose, now).await
    }

    async fn delete_expired_one_time_tokens(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_expired_one_time_tokens(now).await
    }

    async fn take_one_time_token(
        &self,
        hash: &keycard::token::TokenHash,
        purpose: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<keycard::store::OneTimeToken>, StoreError> {
        self.check()?;
        self.inner.take_one_time_token(hash, purpose, now).await
    }

    async fn insert_remembered(
        &self,
        device: &keycard::store::RememberedDevice,
    ) -> Result<i64, StoreError> {
        self.check()?;
        self.inner.insert_remembered(device).await
    }

    async fn find_remembered(
        &self,
        series_hash: &TokenHash,
    ) -> Result<Option<keycard::store::RememberedDevice>, StoreError> {
        self.check()?;
        self.inner.find_remembered(series_hash).await
    }

    async fn rotate_remembered(
        &self,
        id: i64,
        current: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.rotate_remembered(id, current, next, now).await
    }

    async fn list_remembered(
        &self,
        user_id: &str,
    ) -> Result<Vec<keycard::store::RememberedDevice>, StoreError> {
        self.check()?;
        self.inner.list_remembered(user_id).await
    }

    async fn delete_remembered(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_remembered(user_id, id).await
    }

    async fn delete_remembered_of(
        &self,
        user_id: &str,
        except: Option<i64>,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_remembered_of(user_id, except).await
    }

    async fn delete_expired_remembered(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_expired_remembered(now).await
    }

    async fn find_totp(
        &self,
        user_id: &str,
    ) -> Result<Option<keycard::store::TotpRecord>, StoreError> {
        self.check()?;
        self.inner.find_totp(user_id).await
    }

    async fn insert_totp(&self, record: &keycard::store::TotpRecord) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.insert_totp(record).await
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        step: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.confirm_totp(user_id, secret, step, at).await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.use_totp_step(user_id, step).await
    }

    async fn delete_second_factor(&self, user_id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_second_factor(user_id).await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[TokenHash],
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.replace_recovery_codes(user_id, hashes).await
    }

    async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        self.check()?;
        self.inner.unused_recovery_codes(user_id).await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.use_recovery_code(user_id, hash, at).await
    }
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<Option<i64>, StoreError> {
        self.check()?;
        self.inner.insert_passkey(passkey).await
    }
    async fn find_passkey(&self, id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        self.check()?;
        self.inner.find_passkey(id).await
    }
    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        self.check()?;
        self.inner.list_passkeys(user_id).await
    }
    async fn use_passkey(&self, used: &PasskeyRecord) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.use_passkey(used).await
    }
    async fn delete_passkey(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_passkey(user_id, id).await
    }
}

pub type AppResult = Result<axum::response::Response, keycard::Error>;

pub async fn read_counter(session: Session) -> AppResult {
    let n: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(n.to_string().into_response())
}

pub async fn incr(session: Session) -> AppResult {
    let n = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string().into_response())
}

async fn set(session: Session, Path((key, value)): Path<(String, String)>) -> AppResult {
    session.insert(&key, value).await?;
    Ok("set".into_response())
}

async fn get_key(session: Session, Path(key): Path<String>) -> AppResult {
    let value: Option<String> = session.get(&key).await?;
    Ok(value.unwrap_or_default().into_response())
}

async fn remove(session: Session, Path(key): Path<String>) -> AppResult {
    session.remove(&key).await?;
    Ok("removed".into_response())
}

async fn login(session: Session, Path(user): Path<String>) -> AppResult {
    session.login(user).await?;
    Ok("signed in".into_response())
}

async fn login_with(session: Session, Path((user, method)): Path<(String, String)>) -> AppResult {
    session.login_with(Login::new(user).method(method)).await?;
    Ok("signed in".into_response())
}

async fn auth(session: Session) -> AppResult {
    let method = session.auth_method().await?.unwrap_or_default();
    let at = session
        .authenticated_at()
        .await?
        .map(|t| t.timestamp_micros().to_string())
        .unwrap_or_default();
    Ok(format!("{method} {at}").into_response())
}

async fn logout_then_set(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> AppResult {
    session.logout().await?;
    let anonymous = session.user_id().await?.is_none();
    session.insert(&key, value).await?;
    Ok(format!("anonymous={anonymous}").into_response())
}

async fn logout_keep(session: Session) -> AppResult {
    session.logout_keeping_values().await?;
    Ok("signed out".into_response())
}

/// One line per session: `id current|other api|human`.
async fn sessions(session: Session) -> AppResult {
    let lines: Vec<String> = session
        .user_sessions()
        .await?
        .iter()
        .map(|s| {
            let current = if s.current { "current" } else { "other" };
            let kind = if s.is_api { "api" } else { "human" };
            format!("{} {current} {kind}", s.id)
        })
        .collect();
    Ok(lines.join("\n").into_response())
}

async fn end_others(session: Session) -> AppResult {
    Ok(session
        .end_other_sessions()
        .await?
        .to_string()
        .into_response())
}

async fn end_one(session: Session, Path(id): Path<String>) -> AppResult {
    let Ok(id) = id.parse::<SessionId>() else {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    };
    Ok(session
        .end_user_session(id)
        .await?
        .to_string()
        .into_response())
}

async fn logout(session: Session) -> AppResult {
    session.logout().await?;
    Ok("signed out".into_response())
}

async fn regenerate(session: Session) -> AppResult {
    session.regenerate().await?;
    Ok("regenerated".into_response())
}

pub async fn whoami(session: Session) -> AppResult {
    Ok(match session.user_id().await? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

async fn persistent(session: Session, Path(on): Path<bool>) -> AppResult {
    session.set_persistent(on).await?;
    session.insert("remember", on).await?;
    Ok("ok".into_response())
}

async fn clear(session: Session) -> AppResult {
    session.clear().await?;
    Ok("cleared".into_response())
}

/// Logs in, then fails: the rotation must not take effect.
async fn login_then_fail(session: Session, Path(user): Path<String>) -> AppResult {
    session.login(user).await?;
    session.insert("half", "written").await?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Reads the session, ignores any error, and answers 200: the layer must
/// still answer 503 when the load failed.
async fn ignore_errors(session: Session) -> &'static str {
    let _ = session.get::<u64>("counter").await;
    "handler says ok"
}

async fn info(session: Session) -> AppResult {
    let id = session
        .id()
        .await?
        .map(|id| id.to_string())
        .unwrap_or_default();
    let created = session.created_at().await?.timestamp_micros();
    let last = session.last_activity().await?.timestamp_micros();
    Ok(format!("{id} {created} {last}").into_response())
}

/// The session's synchronizer token, or nothing.
async fn csrf_token(session: Session) -> AppResult {
    let token = session.csrf_token().await?;
    Ok(token
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default()
        .into_response())
}

#[derive(serde::Deserialize)]
struct Note {
    note: String,
}

/// A form post guarded by the synchronizer token: stores `note`.
async fn guarded_note(session: Session, form: keycard::csrf::CsrfForm<Note>) -> AppResult {
    session.insert("note", form.0.note).await?;
    Ok("noted".into_response())
}

/// A script's post guarded by the token header: bumps the counter.
async fn guarded_incr(_: keycard::csrf::CsrfHeader, session: Session) -> AppResult {
    incr(session).await
}

/// A page the handler marks cacheable itself.
async fn own_cache_control(session: Session) -> AppResult {
    let user = session.user_id().await?.unwrap_or_default();
    Ok(([(header::CACHE_CONTROL, "private, max-age=60")], user).into_response())
}

/// Stores `n` bytes under `fill`.
async fn fill(session: Session, Path(n): Path<usize>) -> AppResult {
    session.insert("fill", "x".repeat(n)).await?;
    Ok("filled".into_response())
}

/// Makes `fill` `n` bytes long through `update`.
async fn fill_by_update(session: Session, Path(n): Path<usize>) -> AppResult {
    session
        .update("fill", |_: Option<String>| "y".repeat(n))
        .await?;
    Ok("filled".into_response())
}

/// The application the behaviour suite drives.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/fill/{n}", post(fill))
        .route("/fill-by-update/{n}", post(fill_by_update))
        .route("/csrf", get(csrf_token))
        .route("/guarded/note", post(guarded_note))
        .route("/guarded/incr", post(guarded_incr))
        .route("/own-cache-control", get(own_cache_control))
        .route("/anon", get(|| async { "ok" }))
        .route("/read", get(read_counter))
        .route("/incr", post(incr))
        .route("/set/{key}/{value}", post(set))
        .route("/get/{key}", get(get_key))
        .route("/remove/{key}", post(remove))
        .route("/clear", post(clear))
        .route("/login/{user}", post(login))
        .route("/login-then-fail/{user}", post(login_then_fail))
        .route("/logout", post(logout))
        .route("/logout-keep", post(logout_keep))
        .route("/logout-then-set/{key}/{value}", post(logout_then_set))
        .route("/login-with/{user}/{method}", post(login_with))
        .route("/auth", get(auth))
        .route("/sessions", get(sessions))
        .route("/sessions/end-others", post(end_others))
        .route("/sessions/{id}/end", post(end_one))
        .route("/regenerate", post(regenerate))
        .route("/whoami", get(whoami))
        .route("/persistent/{on}", post(persistent))
        .route("/ignore-errors", get(ignore_errors))
        .route("/info", get(info))
        .layer(layer)
}

/// A response, read whole, its body as text (so a test says
/// `assert_eq!(reply.body, "1")`): keycard's `TestResponse` as the suites
/// look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl From<TestResponse> for Reply {
    fn from(response: TestResponse) -> Self {
        Self {
            body: response.text(),
            status: response.status,
            headers: response.headers,
        }
    }
}

impl Reply {
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ASCII Set-Cookie").to_owned())
            .collect()
    }
}

/// A browser: keycard's public [`TestClient`] in front of the app, whose
/// requests answer a [`Reply`]. Everything else is the `TestClient`'s,
/// through `Deref`: the jar, the headers and peer address sent with every
/// request, `session_id()`, `csrf_token()`.
#[derive(Clone)]
pub struct Client(TestClient<Router>);

impl Deref for Client {
    type Target = TestClient<Router>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self(TestClient::new(app))
    }

    /// Sends `request` as `TestClient::send` does (the jar's cookies, the
    /// headers, the peer; the cookies set are kept).
    pub async fn send(&mut self, request: Request<Body>) -> Reply {
        checked(self.0.send(request).await)
    }

    /// `method uri`, with an empty body.
    pub async fn call(&mut self, method: &str, uri: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("valid request");
        self.send(request).await
    }

    pub async fn get(&mut self, uri: &str) -> Reply {
        checked(self.0.get(uri).await)
    }

    pub async fn post(&mut self, uri: &str) -> Reply {
        checked(self.0.post(uri).await)
    }

    /// Posts `fields` as an `application/x-www-form-urlencoded` body, as a
    /// browser's form does.
    pub async fn post_form(&mut self, uri: &str, fields: &[(&str, &str)]) -> Reply {
        checked(self.0.post_form(uri, fields).await)
    }

    /// Another browser on the same app: an empty jar, the same headers and
    /// peer.
    pub fn new_browser(&self) -> Self {
        Self(self.0.new_browser())
    }

    /// This browser (its cookies, headers and peer) on another app server.
    pub fn on(&self, app: Router) -> Self {
        let mut moved = TestClient::new(app);
        moved.jar = self.jar.clone();
        moved.headers = self.headers.clone();
        moved.peer = self.peer;
        Self(moved)
    }

    /// Sends `headers` with every request from now on, instead of the ones
    /// before.
    pub fn set_headers(&mut self, headers: impl IntoIterator<Item = (String, String)>) {
        self.headers = header_map(headers);
    }

    /// The raw session token the jar holds (what only keycard's own tests
    /// look at: applications see its synchronizer token).
    pub fn token(&self) -> Option<String> {
        let name = self.jar.names().find(|name| name.ends_with("-token"))?;
        self.jar.get(name).map(str::to_owned)
    }
}

/// A client's reply: every `Set-Cookie` the app sent must be one a browser
/// can read.
fn checked(response: TestResponse) -> Reply {
    for set_cookie in response.headers.get_all(header::SET_COOKIE) {
        let text = set_cookie.to_str().expect("ASCII Set-Cookie");
        cookie::Cookie::parse(text).expect("valid Set-Cookie");
    }
    Reply::from(response)
}

/// `headers` as a header map; a name or value that cannot be one is the
/// test's bug.
pub fn header_map(headers: impl IntoIterator<Item = (String, String)>) -> http::HeaderMap {
    headers
        .into_iter()
        .map(|(name, value)| {
            (
                http::HeaderName::try_from(name).expect("a header name"),
                http::HeaderValue::try_from(value).expect("a header value"),
            )
        })
        .collect()
}

/// Sends `request` as it is: no cookies, no headers, no peer of a client's.
pub async fn send_raw(app: &Router, request: Request<Body>) -> Reply {
    Reply::from(TestClient::new(app.clone()).send(request).await)
}

/// Opens another, independent store (own pool) on the same table: a second
/// app server.
pub type TwinFactory = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn SessionStore>> + Send>>
        + Send
        + Sync,
>;

/// Runs one SQL statement on the store's own database, `{table}` replaced by
/// its sessions table: how a test makes a row no keycard would write.
pub type RawSql = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// Makes a stored row unreadable, as a hand-edited one would be.
pub type Corrupter = Arc<
    dyn Fn(SessionId) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A store under test plus what keeps it alive (a temp dir, a table).
pub struct TestStore {
    /// Raw SQL on the store's database and table.
    pub raw: Option<RawSql>,
    /// How this store's rows are made unreadable.
    pub corrupter: Option<Corrupter>,
    pub counting: Arc<CountingStore>,
    /// The same store's accounts and API tokens, behind a switch that makes
    /// them fail like a database that went away.
    pub users: Arc<FlakyUsers>,
    pub clock: ManualClock,
    twin: TwinFactory,
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl TestStore {
    pub fn new<T: SessionStore + UserStore>(
        store: Arc<T>,
        twin: TwinFactory,
        keep: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        Self {
            counting: Arc::new(CountingStore::new(store.clone())),
            users: Arc::new(FlakyUsers {
                inner: store,
                fail: AtomicBool::new(false),
            }),
            clock: ManualClock::default(),
            twin,
            raw: None,
            corrupter: None,
            _keep: Some(keep),
        }
    }

    /// Gives the test raw SQL on the store's table (and, through it, a way
    /// to corrupt a row: data that is not JSON).
    pub fn with_raw(mut self, raw: RawSql) -> Self {
        let sql = raw.clone();
        self.corrupter = Some(Arc::new(move |id: SessionId| {
            sql(format!(
                "UPDATE {{table}} SET data = 'not json' WHERE id = {}",
                id.get()
            ))
        }));
        self.raw = Some(raw);
        self
    }

    /// Gives the test its own way to corrupt a row.
    pub fn with_corrupter(mut self, corrupter: Corrupter) -> Self {
        self.corrupter = Some(corrupter);
        self
    }

    /// Makes the row `id` unreadable.
    pub async fn corrupt_row(&self, id: SessionId) {
        let corrupt = self
            .corrupter
            .as_ref()
            .expect("this store can corrupt rows");
        corrupt(id).await;
    }

    /// Runs `sql` (with `{table}`) on the store's database.
    pub async fn raw_sql(&self, sql: &str) {
        let raw = self
            .raw
            .as_ref()
            .expect("this store's factory gives raw SQL");
        raw(sql.to_owned()).await;
    }

    /// A second app server's store: its own pool on the same table, the
    /// same clock.
    pub async fn twin(&self) -> TestStore {
        Self {
            counting: Arc::new(CountingStore::new((self.twin)().await)),
            users: self.users.clone(),
            clock: self.clock.clone(),
            twin: self.twin.clone(),
            raw: self.raw.clone(),
            corrupter: self.corrupter.clone(),
            _keep: None,
        }
    }

    /// The layer the suite uses: development cookies (so the jar sees plain
    /// names) unless a test says otherwise, and the manual clock.
    pub fn layer(&self) -> SessionLayer {
        // No background purge: a test's rows change only when it says so.
        SessionLayer::with_shared_store(self.counting.clone())
            .clock(self.clock.clone())
            .no_background_purge()
    }

    pub fn calls(&self) -> &Calls {
        &self.counting.calls
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.counting.inner
    }

    pub async fn row(&self, id: SessionId) -> Option<SessionRecord> {
        self.store().load(id).await.expect("store reachable")
    }
}
