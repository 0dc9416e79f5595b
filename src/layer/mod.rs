//! [`SessionLayer`]: server-side sessions for any tower service.
//!
//! The layer reads the session cookies of each request, puts a lazy
//! [`Session`](crate::Session) handle into the request's extensions, and,
//! when the response comes back, saves whatever the handler changed and sets
//! the cookies. In order:
//!
//! 1. **Cookies in.** The id and token cookies are parsed strictly; a
//!    malformed, incomplete or ambiguous pair is treated as no cookie and
//!    costs no store query.
//! 2. **Lazy load.** The first [`Session`](crate::Session) method the handler
//!    calls loads the row (one query by primary key), compares token hashes
//!    in constant time and checks the idle and absolute timeouts (and the
//!    client address, if bound). Anything wrong gives a fresh anonymous
//!    session that is not stored yet.
//! 3. **Save on the way out.** Untouched: nothing. Read only: at most a
//!    `last_activity` renewal per [`touch_interval`](SessionLayer::touch_interval).
//!    Changed: one write, merged with concurrent writers. New with values or
//!    a user: one insert and two cookies. Logged out: one delete and expired
//!    cookies. A 5xx response from the handler discards the changes.
//! 4. **Fail closed.** If the store fails while loading or saving, the
//!    response becomes `503 Service Unavailable` with `Retry-After`,
//!    whatever the handler answered, and carries no cookie. Every wait for
//!    the database is bounded (see [`WaitLimits`](crate::store::WaitLimits)),
//!    and a response that sets a session cookie means the row was
//!    committed. A stored row that does not decode (edited by hand, written
//!    by another program) is deleted, with a warning in the log, and the
//!    request goes on anonymous.
//! 5. **Private responses.** A response whose session is signed in, or
//!    that sets or expires the session cookies, carries `Cache-Control:
//!    no-store`, so neither a shared cache nor the browser's back/forward
//!    cache keeps it; every response whose handler used the session carries
//!    `Vary: Cookie`. A handler's own `Cache-Control` is kept, except on
//!    responses that set or expire the cookies, which are always
//!    `no-store`. (An untouched session is not loaded to decide this, so a
//!    handler that never uses its session sets its own headers.)
//!
//! # Cross-origin requests
//!
//! Before anything else, an unsafe request (any method but `GET`, `HEAD`,
//! `OPTIONS` and `TRACE`) that the browser marks as coming from another
//! origin is answered `403 Forbidden`: the handler does not run, the
//! session is not loaded, no cookie is set. This closes cross-site request
//! forgery, login CSRF and cookie replacement by a forged form, also from a
//! sibling port or subdomain, which `SameSite` cookies do not tell apart.
//!
//! * `Sec-Fetch-Site` decides when present: `same-origin` and `none` (the
//!   user typed the address) pass, anything else is refused.
//! * Without it, `Origin` must be the request's own origin: the configured
//!   [`public_origin`](SessionLayer::public_origin) if there is one, else
//!   the `Host` header, with the forwarded host and scheme believed only
//!   from [`trusted_proxies`](SessionLayer::trusted_proxies). `Origin: null`
//!   is refused.
//! * A request with neither header is not a browser's forgery and passes,
//!   so API clients and scripts keep working.
//! * [`trusted_origin`](SessionLayer::trusted_origin) admits another
//!   origin's pages; [`allow_cross_origin_under`](SessionLayer::allow_cross_origin_under)
//!   exempts a path (webhooks).
//!
//! For browsers that send neither header, and as defence in depth, forms
//! carry the session's synchronizer token ([`Session::csrf_token`](crate::Session::csrf_token)),
//! checked by the [`CsrfForm`](crate::csrf::CsrfForm) and
//! [`CsrfHeader`](crate::csrf::CsrfHeader) extractors.
//!
//! # Housekeeping
//!
//! The layer purges expired rows in the background, every
//! [`purge_interval`](SessionLayer::purge_interval) (10 minutes by default):
//! each request checks whether a purge is due (a clock read), and the one
//! that finds it due starts it on a task of its own, so no timer waits
//! between purges and nothing runs once the layer is gone. The first purge
//! comes one interval after the first request. A store therefore never
//! grows without bound while the application serves.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use keycard::{Session, SessionLayer, SqliteStore};
//!
//! async fn counter(session: Session) -> Result<String, keycard::Error> {
//!     let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .layer(SessionLayer::new(store).idle_timeout(std::time::Duration::from_secs(15 * 60)));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use cookie::SameSite;
use tower_layer::Layer;

use crate::AuthVersions;
use crate::clock::{Clock, SystemClock};
use crate::config::ConcurrentSessions;
use crate::config::SessionConfig;
use crate::store::SessionStore;

mod client_ip;
mod cookies;
mod future;
mod origin;
mod purge;
mod service;

pub(crate) use client_ip::peer_ip;
pub use future::ResponseFuture;
pub use service::SessionService;

pub(crate) use crate::session::SessionContext;

/// A tower [`Layer`] that gives every request a [`Session`](crate::Session).
///
/// Build it with [`SessionLayer::new`] and the builder methods below; the
/// module documentation describes what it does per request.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    ctx: Arc<SessionContext>,
}

impl SessionLayer {
    /// A layer keeping sessions in `store`, with the defaults of
    /// [`SessionConfig`].
    pub fn new(store: impl SessionStore) -> Self {
        Self::with_shared_store(Arc::new(store))
    }

    /// A layer over a store that is shared with other code (an admin task, a
    /// second layer).
    pub fn with_shared_store(store: Arc<dyn SessionStore>) -> Self {
        Self {
            ctx: Arc::new(SessionContext {
                store,
                config: SessionConfig::default(),
                clock: Arc::new(SystemClock),
                auth_versions: None,
                background_purge: crate::session::PurgeSchedule::default(),
                live: Default::default(),
                combiner: Default::default(),
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &SessionConfig {
        &self.ctx.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.ctx.store
    }

    /// Housekeeping and per-user control over this layer's sessions, with
    /// its store, timeouts and clock: configure the layer first.
    pub fn admin(&self) -> crate::SessionAdmin {
        crate::SessionAdmin {
            ctx: self.ctx.clone(),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut SessionContext)) -> Self {
        f(Arc::make_mut(&mut self.ctx));
        self
    }

    /// Ends sessions unused for this long. Default: 30 minutes.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.config.idle_timeout = delta(timeout))
    }

    /// Ends sessions this long after they began, however active. Default:
    /// 12 hours. Persistent cookies expire at the same moment.
    pub fn absolute_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.config.absolute_timeout = delta(timeout))
    }

    /// Renews a read-only session's `last_activity` at most this often, so
    /// that reading a session costs no write most of the time. Default: a
    /// thirtieth of the idle timeout; never more than half of it.
    pub fn touch_interval(self, interval: Duration) -> Self {
        self.configure(|c| c.config.touch_interval = Some(delta(interval)))
    }

    /// Names the cookies `__Host-{base}-id` and `__Host-{base}-token`
    /// (without `__Host-` in [`insecure_dev_cookies`](Self::insecure_dev_cookies)
    /// mode). Default: `keycard`.
    ///
    /// # Panics
    ///
    /// If `base` is not 1 to 64 ASCII letters, digits, `-` or `_`: a
    /// configuration mistake, reported at start-up.
    pub fn cookie_name(self, base: &str) -> Self {
        self.configure(|c| c.config.set_cookie_base(base))
    }

    /// For development over plain `http://localhost` only: drops the
    /// `Secure` attribute and the `__Host-` prefix, which browsers refuse
    /// without HTTPS. Never use it in production.
    pub fn insecure_dev_cookies(self) -> Self {
        self.configure(|c| c.config.set_secure(false))
    }

    /// The cookies' `SameSite` attribute. Default: `Lax`. `None` is refused
    /// by browsers unless the cookies are `Secure`.
    pub fn same_site(self, same_site: SameSite) -> Self {
        self.configure(|c| c.config.same_site = same_site)
    }

    /// Binds each session to the client address it was created from: a
    /// request from another address gets a fresh anonymous session. Default:
    /// off (addresses change on mobile networks). Needs the peer address, e.g.
    /// axum's `into_make_service_with_connect_info::<SocketAddr>()`: a
    /// request without a client address (no connect info, or a trusted
    /// proxy that could not name the client) cannot show it is the same
    /// client, so its session is refused like one from another address, and
    /// a warning is logged once.
    pub fn bind_ip(self, bind: bool) -> Self {
        self.configure(|c| c.config.bind_ip = bind)
    }

    /// How far in the future a stored timestamp may lie (clocks of several
    /// app servers differ a little) before the session is refused. Default:
    /// 2 seconds.
    pub fn max_clock_skew(self, skew: Duration) -> Self {
        self.configure(|c| c.config.max_clock_skew = delta(skew))
    }

    /// The idle and absolute timeouts of persistent ("remember me")
    /// sessions, which [`Session::set_persistent`](crate::Session::set_persistent)
    /// turns on. Defaults: 14 days idle, 30 days absolute. The cookies'
    /// `Max-Age` ends with the absolute timeout.
    pub fn persistent_timeouts(self, idle: Duration, absolute: Duration) -> Self {
        self.configure(|c| {
            c.config.persistent_idle_timeout = delta(idle);
            c.config.persistent_absolute_timeout = delta(absolute);
        })
    }

    /// How many human sessions a user may have; applied at each sign-in.
    /// Default: [`ConcurrentSessions::MaxPerUser(32)`](ConcurrentSessions::MaxPerUser),
    /// which bounds the rows one account can pile up without signing people
    /// out of their other devices; the strictest rule is
    /// [`ConcurrentSessions::OnePerUser`].
    pub fn concurrent_sessions(self, policy: ConcurrentSessions) -> Self {
        self.configure(|c| c.config.concurrent_sessions = policy)
    }

    /// The reverse proxies (addresses or CIDR ranges) whose forwarded
    /// headers ([`forwarded_headers`](Self::forwarded_headers):
    /// `X-Forwarded-For` by default) name the client. The client is the
    /// right-most address that is not a trusted proxy; from any other peer
    /// these headers are ignored, so they cannot be spoofed. Default: none.
    pub fn trusted_proxies(self, proxies: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.configure(|c| c.config.trusted_proxies = proxies.into_iter().collect())
    }

    /// Which headers the [trusted proxies](Self::trusted_proxies) write
    /// (default [`ForwardedHeaders::XForwarded`](crate::config::ForwardedHeaders::XForwarded):
    /// `X-Forwarded-For`, `-Host`, `-Proto`). Only that kind is read, for
    /// the client's address and for the request's own origin: a proxy
    /// passes the other kind through as the client wrote it.
    pub fn forwarded_headers(self, headers: crate::config::ForwardedHeaders) -> Self {
        self.configure(|c| c.config.forwarded = headers)
    }

    /// How many expired rows one purge statement deletes, so that purging a
    /// million rows never locks the table for long. Default: 1,000.
    pub fn purge_batch_size(self, rows: u32) -> Self {
        self.configure(|c| c.config.purge_batch_size = rows.max(1))
    }

    /// How many API client sessions (stored for retrievers wrapped in
    /// [`StoredSession`](crate::auth::StoredSession)) a user may have;
    /// applied at each such sign-in, apart from the limit on human
    /// sessions. Default: [`ConcurrentSessions::MaxPerUser(16)`](ConcurrentSessions::MaxPerUser).
    pub fn api_sessions_per_user(self, policy: ConcurrentSessions) -> Self {
        self.configure(|c| c.config.api_sessions = policy)
    }

    /// Lets pages of `origin` (`scheme://host[:port]`) send unsafe requests
    /// to this site (see "Cross-origin requests" above).
    ///
    /// # Panics
    ///
    /// If `origin` is not of the form `scheme://host[:port]`: a
    /// configuration mistake, reported at start-up.
    pub fn trusted_origin(self, origin: &str) -> Self {
        let origin = parse_origin(origin);
        self.configure(|c| c.config.origin_check.trusted.push(origin))
    }

    /// This site's origin as browsers see it (`https://app.example`), for
    /// the `Origin` comparison when the server cannot tell it from the
    /// request (a proxy that rewrites `Host`). Without it, the origin is
    /// the `Host` header's, with `https` when cookies are `Secure`, and a
    /// trusted proxy's `X-Forwarded-Host`/`-Proto` or `Forwarded` believed.
    ///
    /// # Panics
    ///
    /// If `origin` is not of the form `scheme://host[:port]`.
    pub fn public_origin(self, origin: &str) -> Self {
        let origin = parse_origin(origin);
        self.configure(|c| c.config.origin_check.public = Some(origin))
    }

    /// Lets unsafe requests from other origins reach `prefix` and every
    /// path below it, on whole segments (`/hooks` covers `/hooks/stripe`,
    /// not `/hookshot`): for webhooks, which authenticate themselves. The
    /// layer cannot see routes, so exemptions are by path.
    ///
    /// # Panics
    ///
    /// If `prefix` does not start with `/`.
    pub fn allow_cross_origin_under(self, prefix: &str) -> Self {
        assert!(
            prefix.starts_with('/'),
            "keycard: exempt path {prefix:?} must start with `/`"
        );
        let prefix = match prefix.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        }
        .to_owned();
        self.configure(|c| c.config.origin_check.exempt.push(prefix))
    }

    /// Turns the cross-origin refusal off. Only for applications that do
    /// the same check themselves in front of keycard.
    pub fn disable_origin_check(self) -> Self {
        self.configure(|c| c.config.origin_check.disabled = true)
    }

    /// How often the sessions that live connections watch
    /// ([`Session::ended`](crate::Session::ended)) are checked, in one
    /// batched read, while any is watched (default 500 ms; at least 10
    /// ms). A session ended in this process is seen at once; one ended by
    /// another app server within this interval.
    pub fn live_check_interval(self, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        self.configure(|c| c.config.live_check_interval = every)
    }

    /// Purges expired rows in the background this often (see
    /// "Housekeeping" above). Default: 10 minutes.
    pub fn purge_interval(self, every: Duration) -> Self {
        let every = every.max(Duration::from_secs(1));
        self.configure(|c| c.config.purge_interval = Some(every))
    }

    /// No background purge: the application purges itself (with
    /// [`SessionAdmin::spawn_purge_task`](crate::SessionAdmin::spawn_purge_task),
    /// or `examples/admin.rs` from cron), or a test wants a store that
    /// changes only when it says so.
    pub fn no_background_purge(self) -> Self {
        self.configure(|c| c.config.purge_interval = None)
    }

    /// The largest a session's values may be, in bytes of their JSON: a
    /// [`Session::insert`](crate::Session::insert) or
    /// [`update`](crate::Session::update) that would make them larger is
    /// refused with [`SessionError::TooLarge`](crate::SessionError::TooLarge) (`413`) and
    /// changes nothing. Default: 64 KiB, which bounds what one client can
    /// make the store keep and every read carry.
    pub fn max_session_bytes(self, bytes: usize) -> Self {
        self.configure(|c| c.config.max_data_bytes = bytes)
    }

    /// Sends `Clear-Site-Data: "cache"` with a sign-out, so the browser
    /// drops its cached copies of this origin's pages. Default: off.
    /// (`"cookies"` would clear every application on the same host.)
    pub fn clear_site_data_on_logout(self, on: bool) -> Self {
        self.configure(|c| c.config.clear_site_data = on)
    }

    /// Checks each signed-in session's credential version against the
    /// user's current one (see [`AuthVersions`]).
    pub fn auth_versions(self, versions: impl AuthVersions) -> Self {
        self.configure(|c| c.auth_versions = Some(Arc::new(versions)))
    }

    /// The clock timeouts are measured with. Default: the system clock.
    /// Tests pass a [`ManualClock`](crate::clock::ManualClock).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.configure(|c| c.clock = Arc::new(clock))
    }
}

fn parse_origin(origin: &str) -> crate::config::Origin {
    crate::config::Origin::parse(origin).unwrap_or_else(|| {
        panic!("keycard: origin {origin:?} must be of the form `scheme://host[:port]`")
    })
}

/// A configured duration as chrono's type, capped at 100 years so that no
/// `now - timeout` can leave chrono's range (which would panic).
fn delta(duration: Duration) -> TimeDelta {
    let cap = TimeDelta::days(36_525);
    TimeDelta::from_std(duration).map_or(cap, |d| d.min(cap))
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            ctx: self.ctx.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_capped_and_never_panic() {
        let huge = delta(Duration::MAX);
        assert_eq!(huge, TimeDelta::days(36_525));
        let config = SessionConfig {
            idle_timeout: huge,
            absolute_timeout: huge,
            persistent_idle_timeout: huge,
            persistent_absolute_timeout: huge,
            ..SessionConfig::default()
        };
        let now = chrono::Utc::now();
        assert!(crate::store::ExpiryCutoffs::at(&config, now).idle_before < now);
    }
}
