//! The [`Session`] handle: typed values, sign-in and sign-out, change tracking.
//!
//! A `Session` is cheap to clone and is put into every request by
//! [`SessionLayer`](crate::SessionLayer). Nothing is read from the store
//! until a handler first calls one of its methods, and nothing is written
//! until the response leaves the layer: the handler's changes are collected
//! here and saved in one statement (see [`Session::update`] for the one
//! exception).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::clock::to_micros;
use crate::store::{SessionData, SessionRecord};
use crate::token::{SessionId, SessionToken};

mod combine;
mod context;
mod csrf;
mod device;
mod devices;
mod error;
mod events;
mod identity;
pub(crate) mod lifecycle;
pub(crate) mod live;
mod load;
mod login;
pub(crate) mod restore;
mod save;
mod state;

pub(crate) use context::{PurgeSchedule, SessionContext};
pub use device::MAX_DEVICE_CHARS;
pub use devices::SessionInfo;
pub use error::SessionError;
pub use events::{EndReason, SessionEvent};
pub use identity::Identity;
pub use live::{LiveEnd, SessionEnded};
pub use login::{Login, MAX_AUTH_METHOD_CHARS, MAX_USER_ID_CHARS};
pub(crate) use save::{CookieAction, Saved};
use state::{State, Working};

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
pub struct Session(Arc<SessionInner>);

struct SessionInner {
    ctx: Arc<SessionContext>,
    /// The (id, token) pair the request's cookies carried, if well-formed.
    presented: Option<(SessionId, SessionToken)>,
    /// Whether the request carried any cookie of ours, valid or not.
    had_cookie: bool,
    client_ip: Option<IpAddr>,
    /// The request's `User-Agent`, for a new session's device label.
    user_agent: Option<http::HeaderValue>,
    /// Set once a method has run, so an untouched session costs nothing at
    /// response time (not even taking the lock).
    used: AtomicBool,
    /// Signed in by the request's own credentials for this request only:
    /// nothing is loaded, stored or sent as a cookie.
    request_only: AtomicBool,
    /// The request-only sign-in came from credentials browsers send on
    /// their own (cached HTTP Basic).
    ambient_credentials: AtomicBool,
    /// Signs the session back in when it loads anonymous (remember-me).
    restorer: std::sync::OnceLock<Arc<dyn restore::Restorer>>,
    state: Mutex<State>,
}

impl Session {
    pub(crate) fn new(
        ctx: Arc<SessionContext>,
        presented: Option<(SessionId, SessionToken)>,
        had_cookie: bool,
        client_ip: Option<IpAddr>,
        user_agent: Option<http::HeaderValue>,
    ) -> Self {
        Self(Arc::new(SessionInner {
            ctx,
            presented,
            had_cookie,
            client_ip,
            user_agent,
            used: AtomicBool::new(false),
            request_only: AtomicBool::new(false),
            ambient_credentials: AtomicBool::new(false),
            restorer: std::sync::OnceLock::new(),
            state: Mutex::new(State::Unloaded),
        }))
    }

    /// The value stored under `key`, read as a `T`; `None` if there is none.
    ///
    /// Fails with [`SessionError::Deserialize`] if the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.with(|w| read(key, &w.view.data)).await?
    }

    /// The JSON value stored under `key`.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.with(|w| w.view.data.get(key).cloned()).await
    }

    /// Stores `value` under `key`. Storing the value a key already has is not
    /// a change and causes no write.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = to_value(key, value)?;
        let limit = self.0.ctx.config.max_data_bytes;
        self.with_mut(|w| {
            fits(&w.view.data, key, &value, limit)?;
            w.set(key, Some(value));
            Ok(())
        })
        .await?
    }

    /// Removes `key` and returns its value, if it had one. (A
    /// [request-only](Self::is_request_only) session holds no values, so
    /// there it removes nothing and returns `None`.)
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, SessionError> {
        if self.is_request_only() {
            return Ok(None);
        }
        self.with_mut(|w| {
            let old = w.view.data.get(key).cloned();
            w.set(key, None);
            old
        })
        .await
    }

    /// Removes every value. The user stays signed in. (A no-op on a
    /// [request-only](Self::is_request_only) session, which holds none.)
    pub async fn clear(&self) -> Result<(), SessionError> {
        if self.is_request_only() {
            return Ok(());
        }
        self.with_mut(Working::clear_data).await
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
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(Option<T>) -> T + Send,
    {
        self.writable().await?;
        let now = self.0.ctx.now();
        let mut state = self.ready().await?;
        let w = ready_mut(&mut state)?;
        let (new, value) = apply(key, &mut f, &w.view.data)?;
        let limit = self.0.ctx.config.max_data_bytes;
        fits(&w.view.data, key, &value, limit)?;
        let Some(stored) = &w.stored else {
            // Nobody else can know an unsaved session: no race to lose.
            w.set(key, Some(value));
            return Ok(new);
        };
        let (id, version) = (stored.id, stored.version);
        let store = &self.0.ctx.store;
        let span = w.span.clone();
        if crate::store::request_tx::current().is_none() && store.combines_updates() {
            // Outside a request transaction: with this server's other
            // updates of the session, applied in turn and written together.
            let ctx = &self.0.ctx;
            let renewal = |last| ctx.renewal(last, now);
            let update = combine::Update {
                id,
                stored,
                key,
                renewal: &renewal,
            };
            let make = |data: &SessionData| {
                let (new, value) = apply(key, &mut f, data)?;
                fits(data, key, &value, limit)?;
                Ok::<_, SessionError>((new, value))
            };
            let combined = ctx.combiner.update(store, update, make);
            if let Some((new, value, record)) = combined.instrument(span.clone()).await? {
                w.rebase(record.clone());
                w.committed(key, value, record);
                return Ok(new);
            }
        } else {
            // In the request's transaction (or on a store that does not
            // combine): one statement, unless a concurrent request wrote
            // first.
            let mut data = stored.fields.data.clone();
            data.insert(key.to_owned(), value.clone());
            let renewed = self.0.ctx.renewal(stored.fields.last_activity, now);
            if store
                .update_data(id, version, &data, renewed)
                .instrument(span.clone())
                .await?
            {
                w.committed_data(key, value, data, renewed);
                return Ok(new);
            }
        }
        let Some(stored) = &w.stored else {
            return Err(self.conflict(w));
        };
        // Slow path: under the row lock, on the row as it is now.
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
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        self.with(|w| w.view.user_id.clone()).await
    }

    /// How the signed-in user was authenticated, as given to
    /// [`Login::method`](crate::Login::method).
    pub async fn auth_method(&self) -> Result<Option<String>, SessionError> {
        self.with(|w| w.view.auth_method.clone()).await
    }

    /// Whether this is an API client's session (see [`Login::api`]).
    pub async fn is_api(&self) -> Result<bool, SessionError> {
        self.with(|w| w.view.is_api).await
    }

    /// When the user last signed in; `None` while anonymous.
    pub async fn authenticated_at(&self) -> Result<Option<DateTime<Utc>>, SessionError> {
        self.with(|w| w.view.authenticated_at).await
    }

    /// The session's id; `None` until it is first stored.
    pub async fn id(&self) -> Result<Option<SessionId>, SessionError> {
        self.with(|w| w.stored.as_ref().map(|r| r.id)).await
    }

    /// When the session was created.
    pub async fn created_at(&self) -> Result<DateTime<Utc>, SessionError> {
        self.with(|w| w.view.created_at).await
    }

    /// When the session was last used before this request (or this request's
    /// time, once renewed).
    pub async fn last_activity(&self) -> Result<DateTime<Utc>, SessionError> {
        self.with(|w| w.view.last_activity).await
    }

    /// Whether the cookies outlive the browser session.
    pub async fn is_persistent(&self) -> Result<bool, SessionError> {
        self.with(|w| w.view.persistent).await
    }

    /// Makes the session cookies persistent (they carry a `Max-Age` that
    /// ends with the persistent absolute timeout, and the session has the
    /// persistent timeouts) or browser-session cookies. It can be called
    /// before or after [`login_with`](Self::login_with), in any request.
    ///
    /// This is *not* the way to "remember me": a persistent session cookie
    /// that is copied works for its whole life and nothing notices. Prefer
    /// [`RememberMe`](crate::auth::RememberMe), which signs the browser
    /// back in with a fresh session and a rotating, revocable token. Keep
    /// `set_persistent` for a session that must survive a browser restart
    /// without a new sign-in (a kiosk).
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), SessionError> {
        self.with_mut(|w| {
            if w.view.persistent != persistent {
                w.view.persistent = persistent;
                w.persistent_changed = true;
            }
        })
        .await
    }

    /// Whether this request was signed in by its own credentials (HTTP
    /// Basic, a bearer token) for this request only: the session is not
    /// stored, and methods that would change it fail with
    /// [`SessionError::RequestOnly`].
    pub fn is_request_only(&self) -> bool {
        self.0.request_only.load(Ordering::Acquire)
    }

    /// The time by the layer's clock (what the session's timestamps are
    /// compared with).
    #[cfg(feature = "axum")]
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.0.ctx.now()
    }

    /// Refuses a change to a request-only session. Loads the session
    /// first: a session can become request-only as it loads (a remembered
    /// browser's racing request, see [`restore`]).
    async fn writable(&self) -> Result<(), SessionError> {
        drop(self.ready().await?);
        if self.is_request_only() {
            return Err(SessionError::RequestOnly);
        }
        Ok(())
    }

    /// Runs `f`, which changes the session, on the loaded session.
    async fn with_mut<R>(&self, f: impl FnOnce(&mut Working) -> R) -> Result<R, SessionError> {
        self.writable().await?;
        self.with(f).await
    }

    /// Runs `f` on the loaded session.
    async fn with<R>(&self, f: impl FnOnce(&mut Working) -> R) -> Result<R, SessionError> {
        let mut state = self.ready().await?;
        Ok(f(ready_mut(&mut state)?))
    }

    /// Locks the state, loading the session on first use.
    async fn ready(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.0.state.lock().await;
        if matches!(*state, State::Unloaded) {
            self.0.used.store(true, Ordering::Release);
            let loaded = match self.load().await {
                Ok(mut working) => self.restore_into(&mut working).await.map(|()| working),
                Err(error) => Err(error),
            };
            *state = match loaded {
                Ok(working) => State::Ready(Box::new(working)),
                Err(error) => {
                    tracing::error!(%error, "keycard: loading the session failed");
                    State::Failed
                }
            };
        }
        Ok(state)
    }
}

fn ready_mut(state: &mut State) -> Result<&mut Working, SessionError> {
    match state {
        State::Ready(w) => Ok(w),
        State::Unloaded | State::Failed => Err(SessionError::Unavailable),
    }
}

/// Refuses `key = value` if it would make `data` longer than `limit` bytes
/// of JSON. An upper bound first (the old value replaced counts as kept),
/// so the common small write builds nothing.
fn fits(data: &SessionData, key: &str, value: &Value, limit: usize) -> Result<(), SessionError> {
    if encoded_len(data) + encoded_len(value) + key.len() + 6 <= limit {
        return Ok(());
    }
    let mut after = data.clone();
    after.insert(key.to_owned(), value.clone());
    if encoded_len(&after) > limit {
        return Err(SessionError::TooLarge { limit });
    }
    Ok(())
}

/// The length of `data` in JSON, as the store keeps it, without building
/// the text.
fn encoded_len(data: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of `Value`s to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, data);
    count.0
}

fn to_value<T: Serialize>(key: &str, value: T) -> Result<Value, SessionError> {
    serde_json::to_value(value).map_err(|source| SessionError::Serialize {
        key: key.to_owned(),
        source,
    })
}

/// The value under `key` in `data`, read as a `T` without copying it first.
fn read<T: DeserializeOwned>(key: &str, data: &SessionData) -> Result<Option<T>, SessionError> {
    data.get(key)
        .map(T::deserialize)
        .transpose()
        .map_err(|source| SessionError::Deserialize {
            key: key.to_owned(),
            source,
        })
}

/// Runs an update closure on the value under `key` in `data`.
fn apply<T, F>(key: &str, f: &mut F, data: &SessionData) -> Result<(T, Value), SessionError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let new = f(read(key, data)?);
    let value = to_value(key, &new)?;
    Ok((new, value))
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.0.presented.as_ref().map(|(id, _)| id))
            .field("used", &self.was_used())
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    /// The current time, at the microsecond precision every store keeps.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        to_micros(self.clock.now())
    }
}
