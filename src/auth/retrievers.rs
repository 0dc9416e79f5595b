//! The built-in retrievers: HTTP Basic, bearer tokens, a trusted proxy's
//! header.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderName;
use http::header::AUTHORIZATION;
use ipnet::IpNet;

use super::{Credentials, RequestHead, Retrieved, Retriever};

/// The longest `Authorization` value looked at; longer is malformed.
const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// The `Authorization` value with the given scheme (case-insensitive), if
/// the request has exactly one `Authorization` header of that scheme.
fn authorization<'a>(
    request: &'a RequestHead<'_>,
    scheme: &str,
) -> Result<Option<&'a [u8]>, &'static str> {
    let mut values = request.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let ours = bytes.len() > scheme.len()
        && bytes[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        && bytes[scheme.len()] == b' ';
    if !ours {
        return Ok(None);
    }
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    if bytes.len() > MAX_AUTHORIZATION_BYTES {
        return Err("Authorization header too long");
    }
    Ok(Some(bytes[scheme.len() + 1..].trim_ascii()))
}

/// HTTP Basic authentication (`Authorization: Basic base64(user:password)`),
/// for API clients. Produces [`Credentials::Password`]; method `"basic"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BasicAuth;

impl Retriever for BasicAuth {
    fn method(&self) -> &'static str {
        super::method::BASIC
    }

    fn challenge(&self) -> Option<&'static str> {
        Some("Basic")
    }

    fn sent_by_browsers(&self) -> bool {
        true
    }

    fn retrieve(&self, request: &RequestHead<'_>) -> Retrieved {
        let encoded = match authorization(request, "Basic") {
            Ok(Some(encoded)) => encoded,
            Ok(None) => return Retrieved::Nothing,
            Err(why) => return Retrieved::Malformed(why),
        };
        let Ok(decoded) = STANDARD.decode(encoded) else {
            return Retrieved::Malformed("Basic credentials are not base64");
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return Retrieved::Malformed("Basic credentials are not UTF-8");
        };
        let Some((login, password)) = text.split_once(':') else {
            return Retrieved::Malformed("Basic credentials have no `:`");
        };
        if login.is_empty() || login.chars().any(char::is_control) {
            return Retrieved::Malformed("Basic credentials have an empty or invalid user name");
        }
        Retrieved::Found(Credentials::Password {
            login: login.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// Bearer API tokens (`Authorization: Bearer kc_…`), as issued by
/// [`ApiTokens`](super::ApiTokens). Produces [`Credentials::Bearer`];
/// method `"bearer"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BearerAuth;

impl Retriever for BearerAuth {
    fn method(&self) -> &'static str {
        super::method::BEARER
    }

    fn challenge(&self) -> Option<&'static str> {
        Some("Bearer")
    }

    fn retrieve(&self, request: &RequestHead<'_>) -> Retrieved {
        let token = match authorization(request, "Bearer") {
            Ok(Some(token)) => token,
            Ok(None) => return Retrieved::Nothing,
            Err(why) => return Retrieved::Malformed(why),
        };
        match std::str::from_utf8(token) {
            Ok(token) if super::tokens::looks_like_token(token) => {
                Retrieved::Found(Credentials::Bearer(token.to_owned()))
            }
            _ => Retrieved::Malformed("the bearer token is not a keycard API token"),
        }
    }
}

/// A user named in a header by a trusted front proxy that authenticated them
/// (a single-sign-on proxy's `X-Remote-User`, Django's `REMOTE_USER`): honoured only when the
/// TCP peer is one of `proxies`; from anyone else the header is ignored. A
/// header sent twice, or empty, signs nobody in. A session signed in this
/// way ends as soon as a request comes without the header or with another
/// user in it. Produces [`Credentials::TrustedUser`], which an
/// authenticator must accept: [`TrustedProxyUsers`] takes the proxy's
/// name as the user id, or register one of your own that maps or refuses
/// it. Method `"trusted-header"`; sessions are human, not API.
///
/// ```
/// use keycard::auth::TrustedHeader;
///
/// let sso = TrustedHeader::new("x-remote-user", ["10.0.0.0/8".parse().unwrap()]);
/// ```
#[derive(Clone, Debug)]
pub struct TrustedHeader {
    header: HeaderName,
    proxies: Vec<IpNet>,
}

impl TrustedHeader {
    /// Trusts `header` from the given proxies (addresses or CIDR ranges).
    ///
    /// # Panics
    ///
    /// If `header` is not a valid header name: a configuration mistake,
    /// reported at start-up.
    pub fn new(header: &str, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        let header = HeaderName::try_from(header)
            .unwrap_or_else(|_| panic!("keycard: {header:?} is not a valid header name"));
        Self {
            header,
            proxies: proxies.into_iter().collect(),
        }
    }

    /// The header's user, if the peer is trusted and sent exactly one
    /// non-empty, valid value.
    pub(crate) fn user(&self, request: &RequestHead<'_>) -> Option<String> {
        let peer = request.peer?.to_canonical();
        if !self.proxies.iter().any(|net| net.contains(&peer)) {
            return None;
        }
        let mut values = request.headers.get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let user = value.to_str().ok()?.trim();
        let chars = user.chars().count();
        let valid =
            chars > 0 && chars <= crate::MAX_USER_ID_CHARS && !user.chars().any(char::is_control);
        valid.then(|| user.to_owned())
    }
}

impl Retriever for TrustedHeader {
    fn method(&self) -> &'static str {
        super::method::TRUSTED_HEADER
    }

    fn is_api(&self) -> bool {
        false
    }

    fn stores_session(&self) -> bool {
        true
    }

    fn retrieve(&self, request: &RequestHead<'_>) -> Retrieved {
        match self.user(request) {
            Some(user) => Retrieved::Found(Credentials::TrustedUser(user)),
            None => Retrieved::Nothing,
        }
    }
}

/// The authenticator for [`TrustedHeader`]: accepts the user a trusted
/// proxy names, as it names them (the proxy authenticated them). Other
/// credentials are [`NotMine`](super::AuthenticationError::NotMine).
///
/// Register it after any authenticator of your own that maps the proxy's
/// names to your users, or refuses some of them: the first that does not
/// answer `NotMine` decides.
///
/// ```
/// use keycard::auth::{AuthLayer, TrustedHeader, TrustedProxyUsers};
///
/// let auth = AuthLayer::new()
///     .trusted_header(TrustedHeader::new("x-remote-user", ["10.0.0.0/8".parse().unwrap()]))
///     .authenticator(TrustedProxyUsers);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TrustedProxyUsers;

#[async_trait::async_trait]
impl super::Authenticator for TrustedProxyUsers {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<super::Authenticated, super::AuthenticationError> {
        match credentials {
            Credentials::TrustedUser(user) => Ok(super::Authenticated::new(user.clone())),
            _ => Err(super::AuthenticationError::NotMine),
        }
    }
}

/// A retriever whose requests get a stored session instead of being signed
/// in for one request only: the client sends its credentials once and
/// carries the session cookie from then on (a tablet that syncs, say). The
/// sessions are API sessions, capped per user by
/// [`SessionLayer::api_sessions_per_user`](crate::SessionLayer::api_sessions_per_user).
///
/// ```
/// use keycard::auth::{AuthLayer, BasicAuth, StoredSession};
///
/// let auth = AuthLayer::new().retriever(StoredSession(BasicAuth));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StoredSession<R>(pub R);

impl<R: Retriever> Retriever for StoredSession<R> {
    fn method(&self) -> &'static str {
        self.0.method()
    }

    fn is_api(&self) -> bool {
        self.0.is_api()
    }

    fn stores_session(&self) -> bool {
        true
    }

    fn sent_by_browsers(&self) -> bool {
        self.0.sent_by_browsers()
    }

    fn challenge(&self) -> Option<&'static str> {
        self.0.challenge()
    }

    fn retrieve(&self, request: &RequestHead<'_>) -> Retrieved {
        self.0.retrieve(request)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method, Uri};

    use super::*;

    fn head_with<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> RequestHead<'a> {
        RequestHead {
            method: &Method::GET,
            uri,
            headers,
            peer: Some("10.0.0.1".parse().expect("ip")),
        }
    }

    fn basic(value: &[u8]) -> Retrieved {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("value"),
        );
        let uri = Uri::from_static("/");
        BasicAuth.retrieve(&head_with(&headers, &uri))
    }

    #[test]
    fn basic_parses_and_refuses_malformed_values() {
        let ok = format!("Basic {}", STANDARD.encode("ada:pa:ss"));
        match basic(ok.as_bytes()) {
            Retrieved::Found(Credentials::Password { login, password }) => {
                assert_eq!((login.as_str(), password.as_str()), ("ada", "pa:ss"));
            }
            other => panic!("{other:?}"),
        }
        let lower = format!("basic {}", STANDARD.encode("ada:x"));
        assert!(matches!(basic(lower.as_bytes()), Retrieved::Found(_)));
        let no_colon = format!("Basic {}", STANDARD.encode("ada"));
        let empty_user = format!("Basic {}", STANDARD.encode(":pw"));
        let latin1 = format!("Basic {}", STANDARD.encode(b"ad\xe9:pw"));
        let huge = format!("Basic {}", "A".repeat(5000));
        for bad in [
            b"Basic !!!notbase64".to_vec(),
            b"Basic YWRhOng".to_vec(),
            no_colon.into_bytes(),
            empty_user.into_bytes(),
            latin1.into_bytes(),
            huge.into_bytes(),
            b"Basic \xff\xfe".to_vec(),
        ] {
            assert!(
                matches!(basic(&bad), Retrieved::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
        assert!(matches!(basic(b"Digest abc"), Retrieved::Nothing));
        assert!(matches!(basic(b"Basic"), Retrieved::Nothing));
    }

    #[test]
    fn trusted_header_needs_a_trusted_peer_and_one_value() {
        let sso = TrustedHeader::new("x-remote-user", ["10.0.0.0/8".parse().expect("net")]);
        let uri = Uri::from_static("/");
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", HeaderValue::from_static("alice"));
        let mut head = head_with(&headers, &uri);
        assert_eq!(sso.user(&head), Some("alice".into()));
        head.peer = Some("192.0.2.1".parse().expect("ip"));
        assert_eq!(sso.user(&head), None, "spoofed from an untrusted peer");
        head.peer = None;
        assert_eq!(sso.user(&head), None);
        let mut twice = HeaderMap::new();
        twice.append("x-remote-user", HeaderValue::from_static("alice"));
        twice.append("x-remote-user", HeaderValue::from_static("bob"));
        assert_eq!(sso.user(&head_with(&twice, &uri)), None);
        let mut empty = HeaderMap::new();
        empty.insert("x-remote-user", HeaderValue::from_static("  "));
        assert_eq!(sso.user(&head_with(&empty, &uri)), None);
    }
}
