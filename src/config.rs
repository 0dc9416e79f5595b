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
/// with at most the allowed number. API client sessions have a limit of
/// their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrentSessions {
    /// A sign-in ends the user's other human sessions.
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
/// | the headers they write | `X-Forwarded-*` | [`forwarded_headers`](crate::SessionLayer::forwarded_headers) |
/// | purge batch size | 1,000 rows | [`purge_batch_size`](crate::SessionLayer::purge_batch_size) |
/// | touch interval | idle timeout / 30 (1 minute) | [`touch_interval`](crate::SessionLayer::touch_interval) |
/// | IP binding | off | [`bind_ip`](crate::SessionLayer::bind_ip) |
/// | tolerated clock skew | 2 seconds | [`max_clock_skew`](crate::SessionLayer::max_clock_skew) |
/// | cross-origin refusal of unsafe requests | on | [`trusted_origin`](crate::SessionLayer::trusted_origin), [`public_origin`](crate::SessionLayer::public_origin), [`allow_cross_origin_under`](crate::SessionLayer::allow_cross_origin_under), [`disable_origin_check`](crate::SessionLayer::disable_origin_check) |
/// | API sessions per user | at most 16 | [`api_sessions_per_user`](crate::SessionLayer::api_sessions_per_user) |
/// | checks of sessions live connections watch ([`Session::ended`](crate::Session::ended)) | every 500 ms while any is watched | [`live_check_interval`](crate::SessionLayer::live_check_interval) |
/// | background purge of expired rows | every 10 minutes | [`purge_interval`](crate::SessionLayer::purge_interval), [`no_background_purge`](crate::SessionLayer::no_background_purge) |
/// | `Clear-Site-Data: "cache"` on sign-out | off | [`clear_site_data_on_logout`](crate::SessionLayer::clear_site_data_on_logout) |
/// | largest session data (JSON) | 64 KiB | [`max_session_bytes`](crate::SessionLayer::max_session_bytes) |
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
    pub(crate) forwarded: ForwardedHeaders,
    pub(crate) purge_batch_size: u32,
    pub(crate) touch_interval: Option<TimeDelta>,
    pub(crate) bind_ip: bool,
    pub(crate) max_clock_skew: TimeDelta,
    pub(crate) origin_check: OriginCheck,
    pub(crate) api_sessions: ConcurrentSessions,
    pub(crate) purge_interval: Option<std::time::Duration>,
    pub(crate) live_check_interval: std::time::Duration,
    pub(crate) clear_site_data: bool,
    pub(crate) max_data_bytes: usize,
    // Derived from `cookie_base` and `secure`, kept so the hot path does not
    // format strings.
    pub(crate) id_cookie: String,
    pub(crate) token_cookie: String,
    pub(crate) remember_cookie: String,
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
            forwarded: ForwardedHeaders::XForwarded,
            purge_batch_size: 1000,
            touch_interval: None,
            bind_ip: false,
            max_clock_skew: TimeDelta::seconds(2),
            origin_check: OriginCheck::default(),
            api_sessions: ConcurrentSessions::MaxPerUser(16),
            purge_interval: Some(std::time::Duration::from_secs(600)),
            live_check_interval: crate::session::live::DEFAULT_CHECK_INTERVAL,
            clear_site_data: false,
            max_data_bytes: 64 * 1024,
            id_cookie: String::new(),
            token_cookie: String::new(),
            remember_cookie: String::new(),
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

    /// The name of the cookie that remembers a browser
    /// ([`RememberMe`](crate::auth::RememberMe)): `__Host-keycard-remember`
    /// by default.
    pub fn remember_cookie_name(&self) -> &str {
        &self.remember_cookie
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

    /// The per-user limit on API client sessions (those stored for
    /// retrievers wrapped in [`StoredSession`](crate::auth::StoredSession)).
    pub fn api_sessions_per_user(&self) -> ConcurrentSessions {
        self.api_sessions
    }

    /// The largest a session's values may be, in bytes of JSON.
    pub fn max_session_bytes(&self) -> usize {
        self.max_data_bytes
    }

    /// How often the layer purges expired rows in the background; `None`
    /// when the application turned it off.
    pub fn purge_interval(&self) -> Option<std::time::Duration> {
        self.purge_interval
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
        self.remember_cookie = format!("{prefix}{}-remember", self.cookie_base);
    }
}

/// Which headers a trusted reverse proxy writes to name the client, its
/// host and scheme ([`SessionLayer::forwarded_headers`](crate::SessionLayer::forwarded_headers)).
/// Only the chosen kind is read: a proxy passes the other kind through as
/// the client sent it, so reading both would let a client name its own
/// address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`: what
    /// nginx, Caddy, Traefik, HAProxy and the cloud load balancers write by
    /// default.
    #[default]
    XForwarded,
    /// RFC 7239's `Forwarded` (`for=`, `host=`, `proto=`), for a proxy set
    /// up to write it.
    Rfc7239,
}

/// How the layer refuses unsafe requests that a browser marks as coming
/// from another origin (see [`crate::layer`], "Cross-origin requests").
#[derive(Clone, Debug, Default)]
pub(crate) struct OriginCheck {
    /// Turned off by the application.
    pub(crate) disabled: bool,
    /// Origins whose pages may send unsafe requests here.
    pub(crate) trusted: Vec<Origin>,
    /// This site's own origin as browsers see it, when the application
    /// names it (behind a proxy that rewrites `Host`, say).
    pub(crate) public: Option<Origin>,
    /// Path prefixes (whole segments) that take cross-origin requests
    /// (webhooks).
    pub(crate) exempt: Vec<String>,
}

/// A web origin: scheme, host and port, compared as browsers do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]` (an `Origin` header's form); `None`
    /// for anything else, `null` included. Scheme and host are compared
    /// without case; a missing port is the scheme's default.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let valid_scheme = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !valid_scheme {
            return None;
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority
                .bytes()
                .any(|b| b"/?#@\\".contains(&b) || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return None;
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.or_else(|| default_port(&scheme));
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` if malformed.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        match &rest[end + 1..] {
            "" => (host, None),
            tail => (host, Some(tail.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// The port a scheme implies.
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
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
    fn origins_parse_as_browsers_send_them() {
        let o = Origin::parse("HTTPS://Example.COM").expect("origin");
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "example.com", Some(443))
        );
        let o = Origin::parse("http://127.0.0.1:3000").expect("origin");
        assert_eq!(o.port, Some(3000));
        let o = Origin::parse("http://[::1]:8080").expect("origin");
        assert_eq!((o.host.as_str(), o.port), ("[::1]", Some(8080)));
        for bad in [
            "null",
            "",
            "example.com",
            "https://",
            "https://a@b",
            "https://a/b",
            "https://a:99999",
            "https://a:",
            "https://a:x",
            "ht tp://a",
            "https://a b",
            "https://[::1",
            "https://::1",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    #[should_panic(expected = "must be 1 to 64 ASCII letters")]
    fn cookie_names_are_validated() {
        SessionConfig::default().set_cookie_base("bad name;");
    }
}
