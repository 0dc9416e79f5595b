//! [`SessionConfig`]: cookie names and attributes, timeouts and binding.
//!
//! The defaults are the safe ones; every setting is also a builder method on
//! [`SessionLayer`](crate::SessionLayer), which is how applications set them.

use chrono::TimeDelta;
use cookie::SameSite;
use ipnet::IpNet;

/// How many human (non-API) sessions one user may have at once: what a
/// sign-in does to the user's other sessions (OWASP ASVS 7.1.2).
///
/// Enforced when a sign-in is saved, in one statement that keeps the most
/// recently active sessions, so two sign-ins racing each other still end
/// with at most the allowed number. API client sessions are exempt, as in
/// CamCOPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrentSessions {
    /// A sign-in ends the user's other human sessions (CamCOPS' rule).
    OnePerUser,
    /// A sign-in ends the user's least recently active human sessions beyond
    /// this many (itself included). `MaxPerUser(0)` behaves as `MaxPerUser(1)`.
    MaxPerUser(u32),
    /// No limit.
    Unlimited,
}

impl ConcurrentSessions {
    /// How many sessions to keep, if limited.
    pub(crate) fn keep(self) -> Option<u32> {
        match self {
            ConcurrentSessions::OnePerUser => Some(1),
            ConcurrentSessions::MaxPerUser(n) => Some(n.max(1)),
            ConcurrentSessions::Unlimited => None,
        }
    }
}

/// Everything the layer needs to know about cookies and lifetimes.
///
/// | setting | default | builder method |
/// |---|---|---|
/// | cookie names | `__Host-keycard-id`, `__Host-keycard-token` | [`cookie_name`](crate::SessionLayer::cookie_name) |
/// | `Secure` + `__Host-` prefix | on | [`insecure_dev_cookies`](crate::SessionLayer::insecure_dev_cookies) |
/// | `SameSite` | `Lax` | [`same_site`](crate::SessionLayer::same_site) |
/// | idle timeout | 30 minutes | [`idle_timeout`](crate::SessionLayer::idle_timeout) |
/// | absolute timeout | 12 hours | [`absolute_timeout`](crate::SessionLayer::absolute_timeout) |
/// | persistent idle timeout | 14 days | [`persistent_timeouts`](crate::SessionLayer::persistent_timeouts) |
/// | persistent absolute timeout | 30 days | [`persistent_timeouts`](crate::SessionLayer::persistent_timeouts) |
/// | sessions per user | at most 32 human sessions | [`concurrent_sessions`](crate::SessionLayer::concurrent_sessions) |
/// | trusted proxies | none | [`trusted_proxies`](crate::SessionLayer::trusted_proxies) |
/// | purge batch size | 1,000 rows | [`purge_batch_size`](crate::SessionLayer::purge_batch_size) |
/// | touch interval | idle timeout / 30 (1 minute) | [`touch_interval`](crate::SessionLayer::touch_interval) |
/// | IP binding | off | [`bind_ip`](crate::SessionLayer::bind_ip) |
/// | tolerated clock skew | 2 seconds | [`max_clock_skew`](crate::SessionLayer::max_clock_skew) |
///
/// Cookies are always `HttpOnly` and `Path=/`. They are browser-session
/// cookies (no `Max-Age`) unless the handler calls
/// [`Session::set_persistent`](crate::Session::set_persistent).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub(crate) cookie_base: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) idle_timeout: TimeDelta,
    pub(crate) absolute_timeout: TimeDelta,
    pub(crate) persistent_idle_timeout: TimeDelta,
    pub(crate) persistent_absolute_timeout: TimeDelta,
    pub(crate) concurrent_sessions: ConcurrentSessions,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) purge_batch_size: u32,
    pub(crate) touch_interval: Option<TimeDelta>,
    pub(crate) bind_ip: bool,
    pub(crate) max_clock_skew: TimeDelta,
    // Derived from `cookie_base` and `secure`, kept so the hot path does not
    // format strings.
    pub(crate) id_cookie: String,
    pub(crate) token_cookie: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let mut config = Self {
            cookie_base: "keycard".to_owned(),
            secure: true,
            same_site: SameSite::Lax,
            idle_timeout: TimeDelta::minutes(30),
            absolute_timeout: TimeDelta::hours(12),
            persistent_idle_timeout: TimeDelta::days(14),
            persistent_absolute_timeout: TimeDelta::days(30),
            concurrent_sessions: ConcurrentSessions::MaxPerUser(32),
            trusted_proxies: Vec::new(),
            purge_batch_size: 1000,
            touch_interval: None,
            bind_ip: false,
            max_clock_skew: TimeDelta::seconds(2),
            id_cookie: String::new(),
            token_cookie: String::new(),
        };
        config.derive_cookie_names();
        config
    }
}

impl SessionConfig {
    /// The name of the cookie that carries the session id.
    pub fn id_cookie_name(&self) -> &str {
        &self.id_cookie
    }

    /// The name of the cookie that carries the session token.
    pub fn token_cookie_name(&self) -> &str {
        &self.token_cookie
    }

    /// How long a session may go unused before it ends.
    pub fn idle_timeout(&self) -> TimeDelta {
        self.idle_timeout
    }

    /// How long a session may live at most, however busy.
    pub fn absolute_timeout(&self) -> TimeDelta {
        self.absolute_timeout
    }

    /// The idle and absolute timeouts of a session: the persistent pair for
    /// "remember me" sessions, the browser-session pair otherwise.
    pub fn timeouts(&self, persistent: bool) -> (TimeDelta, TimeDelta) {
        if persistent {
            (
                self.persistent_idle_timeout,
                self.persistent_absolute_timeout,
            )
        } else {
            (self.idle_timeout, self.absolute_timeout)
        }
    }

    /// The per-user limit on human sessions.
    pub fn concurrent_sessions(&self) -> ConcurrentSessions {
        self.concurrent_sessions
    }

    /// The proxies whose `X-Forwarded-For` and `Forwarded` headers are
    /// believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// How many expired rows one purge statement deletes at most.
    pub fn purge_batch_size(&self) -> u32 {
        self.purge_batch_size
    }

    /// The cut-offs of [`SessionStore::delete_expired`](crate::store::SessionStore::delete_expired)
    /// at `now`.
    pub fn expiry_cutoffs(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::store::ExpiryCutoffs {
        crate::store::ExpiryCutoffs {
            idle_before: now - self.idle_timeout,
            created_before: now - self.absolute_timeout,
            persistent_idle_before: now - self.persistent_idle_timeout,
            persistent_created_before: now - self.persistent_absolute_timeout,
        }
    }

    /// How often a read-only request renews `last_activity`: the configured
    /// value, or a thirtieth of the idle timeout, never more than half of it.
    pub fn touch_interval(&self) -> TimeDelta {
        let half_idle = self.idle_timeout / 2;
        self.touch_interval
            .unwrap_or(self.idle_timeout / 30)
            .clamp(TimeDelta::zero(), half_idle)
    }

    /// Whether cookies are `Secure` and `__Host-` prefixed.
    pub fn secure(&self) -> bool {
        self.secure
    }

    pub(crate) fn set_cookie_base(&mut self, base: &str) {
        let valid = !base.is_empty()
            && base.len() <= 64
            && base
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        assert!(
            valid,
            "keycard: cookie name {base:?} must be 1 to 64 ASCII letters, digits, `-` or `_`"
        );
        base.clone_into(&mut self.cookie_base);
        self.derive_cookie_names();
    }

    pub(crate) fn set_secure(&mut self, secure: bool) {
        self.secure = secure;
        self.derive_cookie_names();
    }

    fn derive_cookie_names(&mut self) {
        // `__Host-` makes the browser refuse the cookie unless it is Secure,
        // has Path=/ and no Domain: a subdomain cannot plant a session on us.
        let prefix = if self.secure { "__Host-" } else { "" };
        self.id_cookie = format!("{prefix}{}-id", self.cookie_base);
        self.token_cookie = format!("{prefix}{}-token", self.cookie_base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let config = SessionConfig::default();
        assert_eq!(config.id_cookie_name(), "__Host-keycard-id");
        assert_eq!(config.token_cookie_name(), "__Host-keycard-token");
        assert!(config.secure());
        assert_eq!(config.touch_interval(), TimeDelta::minutes(1));
    }

    #[test]
    fn touch_interval_never_exceeds_half_the_idle_timeout() {
        let config = SessionConfig {
            touch_interval: Some(TimeDelta::hours(5)),
            ..SessionConfig::default()
        };
        assert_eq!(config.touch_interval(), TimeDelta::minutes(15));
    }

    #[test]
    #[should_panic(expected = "must be 1 to 64 ASCII letters")]
    fn cookie_names_are_validated() {
        SessionConfig::default().set_cookie_base("bad name;");
    }
}
