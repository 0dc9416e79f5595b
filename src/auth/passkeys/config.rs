//! [`PasskeyConfig`]: the relying party a [`Passkeys`](super::Passkeys) is.

use std::time::Duration;

/// Who the site is to authenticators: its relying-party id (a domain name;
/// an IP address is not one, which is why a site tested on `127.0.0.1`
/// serves passkeys on `localhost`), the origins its pages are served from,
/// its name, and how long a ceremony may take.
///
/// ```
/// use std::time::Duration;
/// use keycard::auth::PasskeyConfig;
///
/// let config = PasskeyConfig::new("example.com", "https://example.com")
///     .name("Example")
///     // A second front end under the same relying-party id.
///     .allow_origin("https://login.example.com")
///     .ceremony_timeout(Duration::from_secs(120));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct PasskeyConfig {
    pub(super) rp_id: String,
    pub(super) origins: Vec<String>,
    pub(super) name: Option<String>,
    pub(super) timeout: Duration,
    pub(super) any_port: bool,
}

/// How long a ceremony waits for the user by default: WebAuthn's
/// recommended five minutes.
pub const DEFAULT_CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);

impl PasskeyConfig {
    /// The relying party `rp_id` (a domain, the origin's or one it ends
    /// with), whose pages are served from `origin` (`https://…`, or
    /// `http://localhost:…` in development).
    pub fn new(rp_id: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            rp_id: rp_id.into(),
            origins: vec![origin.into()],
            name: None,
            timeout: DEFAULT_CEREMONY_TIMEOUT,
            any_port: false,
        }
    }

    /// The site's name, which authenticators show (by default the
    /// relying-party id).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// One more origin whose pages may use the passkeys (another host
    /// under the same relying-party id).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// Accepts the origins on any port (for tests and development servers
    /// on a random port; never in production).
    pub fn allow_any_port(mut self, allow: bool) -> Self {
        self.any_port = allow;
        self
    }

    /// How long a started ceremony waits for the browser's answer (default
    /// [`DEFAULT_CEREMONY_TIMEOUT`]); it is told to the browser too.
    pub fn ceremony_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a [`PasskeyConfig`] was refused: an origin that is not a URL, or a
/// relying-party id that is not the origin's domain or one it ends with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid passkey configuration: {0}")]
pub struct PasskeyConfigError(pub(super) String);
