//! Refusing unsafe requests that the browser marks as coming from another
//! origin, before the session is touched (see the module docs of
//! [`layer`](super), "Cross-origin requests").
//!
//! The rule is Fetch Metadata first, `Origin` second, as in Go 1.25's
//! `CrossOriginProtection` and tower-http's `CsrfLayer`:
//!
//! * safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) and exempt paths pass;
//! * `Sec-Fetch-Site: same-origin` or `none` passes; any other value passes
//!   only from a trusted origin (`same-site` is refused: a sibling port or
//!   subdomain is another origin, and `SameSite` cookies reach it);
//! * without `Sec-Fetch-Site`, an `Origin` must be this site's own or a
//!   trusted one (`null` never is);
//! * with neither header the request is not a browser's forgery (every
//!   browser that sends cookies on a cross-origin form sends one of them),
//!   so API clients and `curl` keep working.

use http::header::{FORWARDED, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::client_ip::peer_ip;
use crate::config::ForwardedHeaders;
use crate::config::{Origin, SessionConfig, default_port, split_host_port};

/// Why a request was refused; logged, never sent (the body is generic).
pub(crate) type Refusal = &'static str;

/// Whether `request` may go on; `Err` with the reason when it is refused.
pub(crate) fn check<B>(request: &Request<B>, config: &SessionConfig) -> Result<(), Refusal> {
    let policy = &config.origin_check;
    if policy.disabled || is_safe(request.method()) {
        return Ok(());
    }
    let path = request.uri().path();
    if policy.exempt.iter().any(|prefix| under(path, prefix)) {
        return Ok(());
    }
    let headers = request.headers();
    let origin = single(headers, &ORIGIN);
    match single(headers, &SEC_FETCH_SITE) {
        One(b"same-origin" | b"none") => Ok(()),
        One(_) => match origin {
            One(value) if trusted(value, config) => Ok(()),
            _ => Err("Sec-Fetch-Site says the request comes from another origin"),
        },
        Several => Err("Sec-Fetch-Site sent more than once"),
        Absent => match origin {
            Absent => Ok(()),
            Several => Err("Origin sent more than once"),
            One(value) => {
                let Some(origin) = std::str::from_utf8(value).ok().and_then(Origin::parse) else {
                    return Err("Origin is null or malformed");
                };
                if is_own(&origin, request, config) || policy.trusted.contains(&origin) {
                    Ok(())
                } else {
                    Err("Origin is another site's")
                }
            }
        },
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether `path` is `prefix` or below it, on whole segments.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

enum Header<'a> {
    Absent,
    One(&'a [u8]),
    Several,
}
use Header::{Absent, One, Several};

/// `Sec-Fetch-Site`, named once rather than parsed from text per request.
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// A header that must come at most once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Header<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Absent,
        (Some(value), None) => One(value.as_bytes()),
        (Some(_), Some(_)) => Several,
    }
}

fn trusted(value: &[u8], config: &SessionConfig) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(Origin::parse)
        .is_some_and(|origin| config.origin_check.trusted.contains(&origin))
}

/// Whether `origin` is the request's own: the configured public origin, or
/// else the `Host` (a trusted proxy's forwarded host and scheme when the
/// peer is one).
fn is_own<B>(origin: &Origin, request: &Request<B>, config: &SessionConfig) -> bool {
    if let Some(public) = &config.origin_check.public {
        return origin == public;
    }
    let behind_proxy = peer_ip(request).is_some_and(|peer| {
        let peer = peer.to_canonical();
        config.trusted_proxies.iter().any(|net| net.contains(&peer))
    });
    let headers = request.headers();
    let forwarded = |param, header| {
        behind_proxy
            .then(|| forwarded_value(headers, param, header, config.forwarded))
            .flatten()
    };
    let host = forwarded("host", "x-forwarded-host")
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    let Some(host) = host else {
        return false;
    };
    // The scheme is believed only from the proxies or an absolute request
    // line; otherwise `Secure` cookies mean https, and development cookies
    // accept either (a plain-http dev server behind an https tunnel, say).
    let scheme = forwarded("proto", "x-forwarded-proto")
        .map(|s| s.to_ascii_lowercase())
        .or_else(|| request.uri().scheme_str().map(str::to_ascii_lowercase))
        .or_else(|| config.secure.then(|| "https".to_owned()));
    if scheme.as_ref().is_some_and(|s| *s != origin.scheme) {
        return false;
    }
    let Some((own_host, own_port)) = split_host_port(host.trim()) else {
        return false;
    };
    let own_port = own_port.or_else(|| default_port(scheme.as_deref().unwrap_or(&origin.scheme)));
    own_host.eq_ignore_ascii_case(&origin.host) && own_port == origin.port
}

/// The last value a proxy added of the `X-Forwarded-*` header, or of
/// `param` in `Forwarded` (RFC 7239), as `which` says: the one our own
/// proxy wrote.
fn forwarded_value(
    headers: &HeaderMap,
    param: &str,
    x_header: &str,
    which: ForwardedHeaders,
) -> Option<String> {
    let last_line = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .map(HeaderValue::as_bytes)
    };
    if which == ForwardedHeaders::Rfc7239 {
        let text = std::str::from_utf8(last_line(FORWARDED.as_str())?).ok()?;
        let element = text.rsplit(',').next()?;
        return element.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            name.trim().eq_ignore_ascii_case(param).then(|| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
                    .to_owned()
            })
        });
    }
    let text = std::str::from_utf8(last_line(x_header)?).ok()?;
    let value = text.rsplit(',').next()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SessionConfig {
        SessionConfig::default()
    }

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::post("/visit").header(HOST, "app.example");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn fetch_metadata_decides_first() {
        let c = config();
        assert!(check(&post(&[("sec-fetch-site", "same-origin")]), &c).is_ok());
        assert!(check(&post(&[("sec-fetch-site", "none")]), &c).is_ok());
        for site in ["same-site", "cross-site", "bogus", ""] {
            assert!(
                check(&post(&[("sec-fetch-site", site)]), &c).is_err(),
                "{site}"
            );
        }
        let twice = post(&[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(check(&twice, &c).is_err());
    }

    #[test]
    fn origin_is_compared_with_the_host_when_fetch_metadata_is_absent() {
        let c = config();
        assert!(
            check(&post(&[]), &c).is_ok(),
            "neither header: not a browser"
        );
        assert!(check(&post(&[("origin", "https://app.example")]), &c).is_ok());
        assert!(check(&post(&[("origin", "https://app.example:443")]), &c).is_ok());
        for bad in [
            "http://app.example",
            "https://app.example:8443",
            "https://evil.example",
            "https://sub.app.example",
            "null",
            "garbage",
        ] {
            assert!(check(&post(&[("origin", bad)]), &c).is_err(), "{bad}");
        }
        let mut dev = config();
        dev.set_secure(false);
        let with_port = |origin| {
            Request::post("/x")
                .header(HOST, "localhost:3000")
                .header("origin", origin)
                .body(())
                .expect("request")
        };
        assert!(check(&with_port("http://localhost:3000"), &dev).is_ok());
        assert!(check(&with_port("http://localhost:3001"), &dev).is_err());
    }

    #[test]
    fn trusted_origins_exempt_paths_and_safe_methods_pass() {
        let mut c = config();
        c.origin_check.trusted = vec![Origin::parse("https://partner.example").expect("origin")];
        c.origin_check.exempt = vec!["/hooks".to_owned()];
        let from_partner = post(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://partner.example"),
        ]);
        assert!(check(&from_partner, &c).is_ok());
        let hook = |path| {
            Request::post(path)
                .header("sec-fetch-site", "cross-site")
                .body(())
                .expect("request")
        };
        assert!(check(&hook("/hooks"), &c).is_ok());
        assert!(check(&hook("/hooks/stripe"), &c).is_ok());
        assert!(
            check(&hook("/hooksmith"), &c).is_err(),
            "whole segments only"
        );
        let get = Request::get("/")
            .header("sec-fetch-site", "cross-site")
            .body(())
            .expect("request");
        assert!(check(&get, &c).is_ok());
    }

    #[test]
    fn the_forwarded_host_and_scheme_count_only_from_trusted_proxies() {
        let mut c = config();
        c.trusted_proxies = vec!["10.0.0.0/8".parse().expect("net")];
        let behind = |peer: &str| {
            let mut request = Request::post("/x")
                .header(HOST, "internal:8080")
                .header("x-forwarded-host", "app.example")
                .header("x-forwarded-proto", "https")
                .header("origin", "https://app.example")
                .body(())
                .expect("request");
            let peer: std::net::SocketAddr = peer.parse().expect("peer");
            request.extensions_mut().insert(peer);
            request
        };
        assert!(check(&behind("10.0.0.1:1"), &c).is_ok());
        assert!(
            check(&behind("192.0.2.1:1"), &c).is_err(),
            "spoofed headers"
        );
        c.origin_check.public = Some(Origin::parse("https://www.example").expect("origin"));
        assert!(
            check(&behind("10.0.0.1:1"), &c).is_err(),
            "public origin wins"
        );
    }

    #[test]
    fn only_the_configured_kind_of_forwarded_header_is_read() {
        let mut c = config();
        c.trusted_proxies = vec!["10.0.0.0/8".parse().expect("net")];
        // The proxy writes X-Forwarded-*; the client's own `Forwarded`
        // naming the attacker's site, passed through, must not count.
        let request = |origin: &str| {
            let mut request = Request::post("/x")
                .header(HOST, "internal:8080")
                .header("x-forwarded-host", "app.example")
                .header("x-forwarded-proto", "https")
                .header("forwarded", "host=evil.example;proto=https")
                .header("origin", origin)
                .body(())
                .expect("request");
            let peer: std::net::SocketAddr = "10.0.0.1:1".parse().expect("peer");
            request.extensions_mut().insert(peer);
            request
        };
        assert!(check(&request("https://evil.example"), &c).is_err());
        assert!(check(&request("https://app.example"), &c).is_ok());
        c.forwarded = ForwardedHeaders::Rfc7239;
        assert!(
            check(&request("https://evil.example"), &c).is_ok(),
            "as configured"
        );
        assert!(check(&request("https://app.example"), &c).is_err());
    }
}
