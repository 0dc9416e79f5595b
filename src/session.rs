//! The [`Session`] handle: typed values, sign-in and sign-out, change tracking.
//!
//! A `Session` is cheap to clone and is put into every request by
//! [`SessionLayer`](crate::SessionLayer). Nothing is read from the store
//! until a handler first calls one of its methods, and nothing is written
//! until the response leaves the layer: the handler's changes are collected
//! here and saved in one statement (see [`Session::update`] for the one
//! exception).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::Error;
use crate::clock::to_micros;
use crate::layer::Context;
use crate::store::{SessionData, SessionFields, SessionRecord};
use crate::token::{SessionId, SessionToken, TokenHash};

/// The longest user id a session holds, in characters.
pub const MAX_USER_ID_CHARS: usize = 255;
/// The longest auth method name a session holds, in characters.
pub const MAX_AUTH_METHOD_CHARS: usize = 64;

/// A request's session.
///
/// Extract it in an axum handler (with the default `axum` feature), or take
/// it from the request's extensions. All methods are `async` because the
/// first one to run loads the session from the store.
///
/// ```
/// use keycard::Session;
///
/// async fn visit(session: Session) -> Result<String, keycard::Error> {
///     let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", visits).await?;
///     Ok(format!("visit number {visits}"))
/// }
/// ```
#[derive(Clone)]
pub struct Session(Arc<Shared>);

struct Shared {
    ctx: Arc<Context>,
    /// The (id, token) pair the request's cookies carried, if well-formed.
    presented: Option<(SessionId, SessionToken)>,
    /// Whether the request carried any cookie of ours, valid or not.
    had_cookie: bool,
    client_ip: Option<IpAddr>,
    /// Set once a method has run, so an untouched session costs nothing at
    /// response time (not even taking the lock).
    used: AtomicBool,
    state: Mutex<State>,
}

enum State {
    Unloaded,
    Failed,
    Ready(Box<Working>),
}

/// The session as this request sees it, and what it changed.
struct Working {
    /// The row as last read from or written to the store; `None` for a
    /// session that is not stored yet.
    stored: Option<SessionRecord>,
    /// The current view: `stored` with this request's changes applied.
    view: SessionFields,
    /// The token to send: set for a rotation (and for a new session once
    /// saved). `None` keeps the presented one.
    new_token: Option<SessionToken>,
    /// Data keys this request set or removed.
    dirty: BTreeSet<String>,
    /// `clear()` or a sign-in as another user replaced all data.
    cleared: bool,
    /// The user, how and when they authenticated.
    identity_changed: bool,
    persistent_changed: bool,
    ended: bool,
    span: tracing::Span,
}

/// What the response must carry once the session is saved.
pub(crate) enum CookieAction {
    /// Nothing: no cookie, no header.
    None,
    /// Set both cookies; `max_age` for a persistent session.
    Set {
        id: SessionId,
        token: SessionToken,
        max_age: Option<TimeDelta>,
    },
    /// Expire both cookies.
    Expire,
}

impl Session {
    pub(crate) fn new(
        ctx: Arc<Context>,
        presented: Option<(SessionId, SessionToken)>,
        had_cookie: bool,
        client_ip: Option<IpAddr>,
    ) -> Self {
        Self(Arc::new(Shared {
            ctx,
            presented,
            had_cookie,
            client_ip,
            used: AtomicBool::new(false),
            state: Mutex::new(State::Unloaded),
        }))
    }

    /// The value stored under `key`, read as a `T`; `None` if there is none.
    ///
    /// Fails with [`Error::Deserialize`] if the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let value = self.get_value(key).await?;
        value
            .map(serde_json::from_value)
            .transpose()
            .map_err(|source| Error::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// The JSON value stored under `key`.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, Error> {
        self.with(|w| w.view.data.get(key).cloned()).await
    }

    /// Stores `value` under `key`. Storing the value a key already has is not
    /// a change and causes no write.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = to_value(key, value)?;
        self.with(|w| w.set(key, Some(value))).await
    }

    /// Removes `key` and returns its value, if it had one.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, Error> {
        self.with(|w| {
            let old = w.view.data.get(key).cloned();
            w.set(key, None);
            old
        })
        .await
    }

    /// Removes every value. The user stays signed in.
    pub async fn clear(&self) -> Result<(), Error> {
        self.with(Working::clear_data).await
    }

    /// Atomically replaces the value under `key` by `f(old)` and returns the
    /// new value, losing no update to concurrent requests of the same
    /// session.
    ///
    /// Unlike the other methods, which are saved when the response leaves,
    /// this one is written to the store at once (for a session that is
    /// already stored), so the value it returns is the one the store holds.
    /// If another request wrote the session in between, `f` runs again on
    /// the newer value. It is therefore not undone if the handler later
    /// answers with a server error.
    ///
    /// ```
    /// # async fn incr(session: keycard::Session) -> Result<(), keycard::Error> {
    /// let hits = session
    ///     .update("hits", |old: Option<u64>| old.unwrap_or(0) + 1)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(Option<T>) -> T + Send,
    {
        let now = self.0.ctx.now();
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        let (new, value) = apply(key, &mut f, &w.view.data)?;
        let Some(stored) = &w.stored else {
            // Nobody else can know an unsaved session: no race to lose.
            w.set(key, Some(value));
            return Ok(new);
        };
        // Fast path: one statement, unless a concurrent request wrote first.
        let mut fields = stored.fields.clone();
        fields.data.insert(key.to_owned(), value.clone());
        fields.last_activity = fields.last_activity.max(now);
        let store = &self.0.ctx.store;
        let span = w.span.clone();
        if store
            .update(stored.id, stored.version, &fields)
            .instrument(span.clone())
            .await?
        {
            let record = SessionRecord {
                id: stored.id,
                version: stored.version + 1,
                fields,
            };
            w.committed(key, value, record);
            return Ok(new);
        }
        // Slow path: under the row lock, on the row as it is now.
        let id = stored.id;
        let expected = stored.fields.token_hash;
        let mut outcome = None;
        let mut merge = |current: &SessionRecord| {
            if !current.fields.token_hash.ct_eq(&expected) {
                return None;
            }
            let result = apply(key, &mut f, &current.fields.data);
            let mut fields = current.fields.clone();
            if let Ok((_, value)) = &result {
                fields.data.insert(key.to_owned(), value.clone());
                fields.last_activity = fields.last_activity.max(now);
            }
            let write = result.is_ok().then_some(fields);
            outcome = Some(result);
            write
        };
        let written = store.update_locked(id, &mut merge).instrument(span).await?;
        match (written, outcome) {
            (Some(record), Some(Ok((new, value)))) => {
                w.rebase(record.clone());
                w.committed(key, value, record);
                Ok(new)
            }
            (_, Some(Err(error))) => Err(error),
            _ => Err(self.conflict(w)),
        }
    }

    /// The signed-in user's id, `None` while anonymous.
    pub async fn user_id(&self) -> Result<Option<String>, Error> {
        self.with(|w| w.view.user_id.clone()).await
    }

    /// How the signed-in user was authenticated, as given to
    /// [`login_with_method`](Self::login_with_method).
    pub async fn auth_method(&self) -> Result<Option<String>, Error> {
        self.with(|w| w.view.auth_method.clone()).await
    }

    /// When the user last signed in; `None` while anonymous.
    pub async fn authenticated_at(&self) -> Result<Option<DateTime<Utc>>, Error> {
        self.with(|w| w.view.authenticated_at).await
    }

    /// Signs `user_id` (1 to [`MAX_USER_ID_CHARS`] characters) in. Same as [`login_with_method`](Self::login_with_method)
    /// with no method recorded.
    pub async fn login(&self, user_id: impl Into<String>) -> Result<(), Error> {
        self.login_inner(user_id.into(), None).await
    }

    /// Signs `user_id` in, recording how they proved it (`"password"`,
    /// `"basic"`, …).
    ///
    /// Takes effect when the response leaves: the session gets a fresh token
    /// (the old one is dead from then on, against session fixation) and new
    /// cookies. Signing in from an anonymous session keeps its values (a
    /// basket, say); signing in as a different user than the current one
    /// starts from empty values, so nothing of one user leaks to the next.
    pub async fn login_with_method(
        &self,
        user_id: impl Into<String>,
        method: impl Into<String>,
    ) -> Result<(), Error> {
        self.login_inner(user_id.into(), Some(method.into())).await
    }

    async fn login_inner(&self, user: String, method: Option<String>) -> Result<(), Error> {
        // Checked before anything is loaded or changed, and the same on every
        // store (MySQL's columns are the narrowest).
        if user.is_empty() || user.chars().count() > MAX_USER_ID_CHARS {
            return Err(Error::InvalidLogin(
                "the user id must be 1 to 255 characters",
            ));
        }
        if method
            .as_ref()
            .is_some_and(|m| m.is_empty() || m.chars().count() > MAX_AUTH_METHOD_CHARS)
        {
            return Err(Error::InvalidLogin(
                "the auth method must be 1 to 64 characters",
            ));
        }
        let now = self.0.ctx.now();
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        if w.view
            .user_id
            .as_ref()
            .is_some_and(|current| *current != user)
        {
            w.clear_data();
        }
        w.view.user_id = Some(user);
        w.view.auth_method = method;
        w.view.authenticated_at = Some(now);
        w.identity_changed = true;
        w.rotate()
    }

    /// Signs out and ends the session: when the response leaves, the row is
    /// deleted and both cookies are expired. A replay of the old cookies is
    /// an anonymous request from then on.
    pub async fn logout(&self) -> Result<(), Error> {
        self.with(|w| w.ended = true).await
    }

    /// Gives the session a fresh token, keeping its values and user. Use it
    /// whenever the session's privileges change.
    pub async fn regenerate(&self) -> Result<(), Error> {
        let mut state = self.ready().await?;
        ready_mut(&mut state)?.rotate()
    }

    /// The session's id; `None` until it is first stored.
    pub async fn id(&self) -> Result<Option<SessionId>, Error> {
        self.with(|w| w.stored.as_ref().map(|r| r.id)).await
    }

    /// When the session was created.
    pub async fn created_at(&self) -> Result<DateTime<Utc>, Error> {
        self.with(|w| w.view.created_at).await
    }

    /// When the session was last used before this request (or this request's
    /// time, once renewed).
    pub async fn last_activity(&self) -> Result<DateTime<Utc>, Error> {
        self.with(|w| w.view.last_activity).await
    }

    /// Whether the cookies outlive the browser session.
    pub async fn is_persistent(&self) -> Result<bool, Error> {
        self.with(|w| w.view.persistent).await
    }

    /// Makes the cookies persistent ("remember me": they carry a `Max-Age`
    /// that ends with the absolute timeout) or browser-session cookies.
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), Error> {
        self.with(|w| {
            if w.view.persistent != persistent {
                w.view.persistent = persistent;
                w.persistent_changed = true;
            }
        })
        .await
    }

    /// Runs `f` on the loaded session.
    async fn with<R>(&self, f: impl FnOnce(&mut Working) -> R) -> Result<R, Error> {
        let mut state = self.ready().await?;
        Ok(f(ready_mut(&mut state)?))
    }

    /// Locks the state, loading the session on first use.
    async fn ready(&self) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
        let mut state = self.0.state.lock().await;
        if matches!(*state, State::Unloaded) {
            self.0.used.store(true, Ordering::Release);
            *state = match self.load().await {
                Ok(working) => State::Ready(Box::new(working)),
                Err(error) => {
                    tracing::error!(%error, "keycard: loading the session failed");
                    State::Failed
                }
            };
        }
        Ok(state)
    }

    async fn load(&self) -> Result<Working, Error> {
        let shared = &self.0;
        let span = tracing::info_span!("keycard.session", session.id = tracing::field::Empty);
        let now = shared.ctx.now();
        let Some((id, token)) = &shared.presented else {
            return Ok(Working::fresh(self.fresh_fields(now), span));
        };
        span.record("session.id", id.get());
        let record = shared.ctx.store.load(*id).instrument(span.clone()).await?;
        let verdict = match record {
            None => Err("no such session"),
            Some(record) => self.check(&record, token, now).map(|()| record),
        };
        Ok(match verdict {
            Ok(record) => Working::stored(record, span),
            Err(reason) => {
                span.in_scope(|| tracing::info!(reason, "keycard: session cookie rejected"));
                Working::fresh(self.fresh_fields(now), tracing::Span::none())
            }
        })
    }

    /// Why a stored session may not be used by this request, if it may not.
    fn check(
        &self,
        record: &SessionRecord,
        token: &SessionToken,
        now: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        let config = &self.0.ctx.config;
        let f = &record.fields;
        if !f.token_hash.ct_eq(&token.hash()) {
            return Err("token does not match");
        }
        let skew = config.max_clock_skew;
        if f.last_activity > now + skew || f.created_at > now + skew {
            // A clock that stepped back must never extend a session.
            return Err("session timestamps lie in the future");
        }
        if now - f.last_activity > config.idle_timeout {
            return Err("idle timeout");
        }
        if now - f.created_at > config.absolute_timeout {
            return Err("absolute timeout");
        }
        if config.bind_ip && f.ip_address != self.client_ip_text() {
            return Err("client address changed");
        }
        Ok(())
    }

    fn client_ip_text(&self) -> Option<String> {
        self.0.client_ip.map(|ip| ip.to_canonical().to_string())
    }

    fn fresh_fields(&self, now: DateTime<Utc>) -> SessionFields {
        SessionFields {
            // Replaced by a real token's hash when the session is first saved.
            token_hash: TokenHash::UNSET,
            user_id: None,
            ip_address: self.client_ip_text(),
            is_api: false,
            auth_method: None,
            authenticated_at: None,
            persistent: false,
            created_at: now,
            last_activity: now,
            data: SessionData::new(),
        }
    }

    /// The error for a session that a concurrent request ended or gave a
    /// new token: this request's changes are dropped, never written back.
    fn conflict(&self, w: &Working) -> Error {
        w.span.in_scope(|| {
            tracing::info!("keycard: session ended or rotated by a concurrent request")
        });
        Error::Conflict
    }

    /// Whether a method of this session ran during the request.
    pub(crate) fn was_used(&self) -> bool {
        self.0.used.load(Ordering::Acquire)
    }

    /// Saves what the request changed and says which cookies to send; with
    /// `discard`, drops the changes instead. Called once, when the response
    /// leaves. A session that failed to load is an error either way.
    pub(crate) async fn save(&self, discard: bool) -> Result<CookieAction, Error> {
        let mut state = self.0.state.lock().await;
        let w = match &mut *state {
            State::Unloaded => return Ok(CookieAction::None),
            State::Failed => return Err(Error::Unavailable),
            State::Ready(_) if discard => return Ok(CookieAction::None),
            State::Ready(w) => w,
        };
        let span = w.span.clone();
        self.save_working(w).instrument(span).await
    }

    async fn save_working(&self, w: &mut Working) -> Result<CookieAction, Error> {
        let ctx = &self.0.ctx;
        let now = ctx.now();
        if w.ended {
            if let Some(stored) = &w.stored {
                ctx.store.delete(stored.id).await?;
                tracing::info!("keycard: session ended");
            }
            return Ok(if self.0.had_cookie {
                CookieAction::Expire
            } else {
                CookieAction::None
            });
        }
        let Some(stored) = &w.stored else {
            return self.insert_new(w, now).await;
        };
        if !w.is_changed() {
            if now - stored.fields.last_activity >= ctx.config.touch_interval() {
                ctx.store.touch(stored.id, now).await?;
            }
            return Ok(CookieAction::None);
        }
        w.view.last_activity = w.view.last_activity.max(now);
        let id = stored.id;
        if !ctx.store.update(id, stored.version, &w.view).await? {
            // A concurrent request wrote first: replay this request's changes
            // on the row as it is now, under its lock.
            let expected = stored.fields.token_hash;
            let mut merge = |current: &SessionRecord| {
                if !current.fields.token_hash.ct_eq(&expected) {
                    return None;
                }
                w.rebase(current.clone());
                w.view.last_activity = w.view.last_activity.max(now);
                Some(w.view.clone())
            };
            match ctx.store.update_locked(id, &mut merge).await? {
                Some(record) => w.stored = Some(record),
                None => return Err(self.conflict(w)),
            }
        }
        if let Some(token) = &w.new_token {
            tracing::info!(
                fingerprint = %token.hash().fingerprint(),
                "keycard: session token rotated"
            );
        }
        Ok(self.cookies_for(id, w))
    }

    async fn insert_new(&self, w: &mut Working, now: DateTime<Utc>) -> Result<CookieAction, Error> {
        if w.view.data.is_empty() && w.view.user_id.is_none() {
            // Nothing worth remembering: no row, no cookie.
            return Ok(CookieAction::None);
        }
        let token = match w.new_token.take() {
            Some(token) => token,
            None => SessionToken::generate().map_err(|_| Error::Randomness)?,
        };
        w.view.token_hash = token.hash();
        w.view.last_activity = now;
        let id = self.0.ctx.store.insert(&w.view).await?;
        tracing::Span::current().record("session.id", id.get());
        tracing::info!(
            session.id = id.get(),
            fingerprint = %w.view.token_hash.fingerprint(),
            "keycard: session created"
        );
        w.new_token = Some(token);
        Ok(self.cookies_for(id, w))
    }

    fn cookies_for(&self, id: SessionId, w: &Working) -> CookieAction {
        let token = match (&w.new_token, &self.0.presented) {
            (Some(token), _) => token.clone(),
            (None, Some((_, token))) if w.persistent_changed => token.clone(),
            _ => return CookieAction::None,
        };
        let max_age = w.view.persistent.then(|| {
            let age = self.0.ctx.now() - w.view.created_at;
            (self.0.ctx.config.absolute_timeout - age).max(TimeDelta::zero())
        });
        CookieAction::Set { id, token, max_age }
    }
}

fn ready_mut(state: &mut State) -> Result<&mut Working, Error> {
    match state {
        State::Ready(w) => Ok(w),
        State::Unloaded | State::Failed => Err(Error::Unavailable),
    }
}

fn to_value<T: Serialize>(key: &str, value: T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|source| Error::Serialize {
        key: key.to_owned(),
        source,
    })
}

/// Runs an update closure on the value under `key` in `data`.
fn apply<T, F>(key: &str, f: &mut F, data: &SessionData) -> Result<(T, Value), Error>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let old = data
        .get(key)
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|source| Error::Deserialize {
            key: key.to_owned(),
            source,
        })?;
    let new = f(old);
    let value = to_value(key, &new)?;
    Ok((new, value))
}

impl Working {
    fn fresh(view: SessionFields, span: tracing::Span) -> Self {
        Self::new(None, view, span)
    }

    fn stored(record: SessionRecord, span: tracing::Span) -> Self {
        let view = record.fields.clone();
        Self::new(Some(record), view, span)
    }

    fn new(stored: Option<SessionRecord>, view: SessionFields, span: tracing::Span) -> Self {
        Self {
            stored,
            view,
            new_token: None,
            dirty: BTreeSet::new(),
            cleared: false,
            identity_changed: false,
            persistent_changed: false,
            ended: false,
            span,
        }
    }

    /// Sets (`Some`) or removes (`None`) a value, tracking whether it now
    /// differs from the stored one.
    fn set(&mut self, key: &str, value: Option<Value>) {
        match value {
            Some(value) => self.view.data.insert(key.to_owned(), value),
            None => self.view.data.remove(key),
        };
        let stored = self.stored.as_ref().and_then(|r| r.fields.data.get(key));
        if !self.cleared && stored == self.view.data.get(key) {
            self.dirty.remove(key);
        } else {
            self.dirty.insert(key.to_owned());
        }
    }

    /// Records that `key = value` is now stored, as part of `record`.
    fn committed(&mut self, key: &str, value: Value, record: SessionRecord) {
        self.view.last_activity = record.fields.last_activity;
        self.view.data.insert(key.to_owned(), value);
        self.dirty.remove(key);
        self.stored = Some(record);
    }

    fn clear_data(&mut self) {
        self.view.data.clear();
        self.dirty.clear();
        self.cleared = true;
    }

    fn rotate(&mut self) -> Result<(), Error> {
        let token = SessionToken::generate().map_err(|_| Error::Randomness)?;
        self.view.token_hash = token.hash();
        self.new_token = Some(token);
        Ok(())
    }

    fn is_changed(&self) -> bool {
        let stored_data = self.stored.as_ref().map(|r| &r.fields.data);
        !self.dirty.is_empty()
            || (self.cleared && stored_data.is_some_and(|d| !d.is_empty()))
            || self.identity_changed
            || self.persistent_changed
            || self.new_token.is_some()
    }

    /// Makes `fresh` (a newer version of the row) the base, and replays this
    /// request's changes on it.
    fn rebase(&mut self, fresh: SessionRecord) {
        let mut view = fresh.fields.clone();
        if self.cleared {
            view.data = std::mem::take(&mut self.view.data);
        } else {
            for key in &self.dirty {
                match self.view.data.get(key) {
                    Some(value) => view.data.insert(key.clone(), value.clone()),
                    None => view.data.remove(key),
                };
            }
        }
        if self.identity_changed {
            view.user_id = self.view.user_id.take();
            view.auth_method = self.view.auth_method.take();
            view.authenticated_at = self.view.authenticated_at;
            view.is_api = self.view.is_api;
        }
        if self.persistent_changed {
            view.persistent = self.view.persistent;
        }
        if self.new_token.is_some() {
            view.token_hash = self.view.token_hash;
        }
        self.view = view;
        self.stored = Some(fresh);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.0.presented.as_ref().map(|(id, _)| id))
            .field("used", &self.was_used())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The current time, at the microsecond precision every store keeps.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        to_micros(self.clock.now())
    }
}
