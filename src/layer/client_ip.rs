//! Who the client is: the TCP peer, or, behind trusted reverse proxies, the
//! right-most address in `X-Forwarded-For` (or `Forwarded`, as configured)
//! that is not one of them. Headers from any other peer are ignored, so
//! they cannot be spoofed, and only the configured kind is read, since a
//! proxy passes the other kind through as the client wrote it.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Request};
use ipnet::IpNet;

use crate::config::ForwardedHeaders;

/// The client's address, IPv4-mapped IPv6 addresses written as IPv4.
pub(crate) fn client_ip<B>(
    request: &Request<B>,
    trusted: &[IpNet],
    which: ForwardedHeaders,
) -> Option<IpAddr> {
    let peer = peer_ip(request)?.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let Some(hops) = forwarded_hops(request.headers(), which) else {
        return Some(peer);
    };
    // Walk from the proxy nearest to us outwards; the first hop we do not
    // trust is the client. Anything further left was written by the client
    // itself and proves nothing.
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip.to_canonical(), trusted) => continue,
            Some(ip) => return Some(ip.to_canonical()),
            // A hop a trusted proxy could not name: the client is unknown.
            None => return None,
        }
    }
    // Every hop is one of our proxies: the request came from inside.
    hops.first().copied().flatten().map(|ip| ip.to_canonical())
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The TCP peer: axum's `ConnectInfo` (from
/// `into_make_service_with_connect_info`), or a plain `SocketAddr`
/// extension put there by another server.
pub(crate) fn peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The hops of `X-Forwarded-For` or `Forwarded` (RFC 7239), as `which`
/// says, left to right, over all lines of the header; `None` for a hop
/// that is not an address (`unknown`, an obfuscated name, garbage). `None`
/// overall when the header is absent.
fn forwarded_hops(headers: &HeaderMap, which: ForwardedHeaders) -> Option<Vec<Option<IpAddr>>> {
    if which == ForwardedHeaders::Rfc7239 {
        let forwarded: Vec<_> = headers.get_all(http::header::FORWARDED).iter().collect();
        if forwarded.is_empty() {
            return None;
        }
        let hops = forwarded
            .iter()
            .flat_map(|line| split_list(line.as_bytes()))
            .map(|element| forwarded_for(&element))
            .collect();
        return Some(hops);
    }
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    if xff.is_empty() {
        return None;
    }
    Some(
        xff.iter()
            .flat_map(|line| split_list(line.as_bytes()))
            .map(|hop| parse_node(&hop))
            .collect(),
    )
}

fn split_list(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

/// The address in a `Forwarded` element's `for=` parameter.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

/// `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bracketed = node.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XF: ForwardedHeaders = ForwardedHeaders::XForwarded;
    const RFC: ForwardedHeaders = ForwardedHeaders::Rfc7239;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).expect("request");
        let peer: SocketAddr = peer.parse().expect("peer");
        request.extensions_mut().insert(peer);
        request
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let r = request("198.51.100.9:1234", &[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(
            client_ip(&r, &nets(&["10.0.0.0/8"]), XF),
            ip("198.51.100.9")
        );
        assert_eq!(client_ip(&r, &[], XF), ip("198.51.100.9"));
        let r = request("198.51.100.9:1234", &[("forwarded", "for=10.9.9.9")]);
        assert_eq!(
            client_ip(&r, &nets(&["10.0.0.0/8"]), RFC),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let r = request(
            "10.0.0.1:80",
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")],
        );
        assert_eq!(
            client_ip(&r, &trusted, XF),
            ip("203.0.113.7"),
            "6.6.6.6 is spoofed"
        );
        let r = request(
            "10.0.0.1:80",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        );
        assert_eq!(
            client_ip(&r, &trusted, XF),
            ip("203.0.113.7"),
            "several lines"
        );
    }

    #[test]
    fn a_clients_own_forwarded_header_is_ignored_by_default() {
        // nginx appends to X-Forwarded-For and passes the client's own
        // `Forwarded` through: reading it would let the client choose.
        let trusted = nets(&["10.0.0.0/8"]);
        let r = request(
            "10.0.0.1:80",
            &[
                ("forwarded", "for=6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        );
        assert_eq!(client_ip(&r, &trusted, XF), ip("203.0.113.7"));
        let r = request("10.0.0.1:80", &[("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            client_ip(&r, &trusted, XF),
            ip("10.0.0.1"),
            "no XFF: the proxy"
        );
        // And the other way round when the proxy writes `Forwarded`.
        let r = request(
            "10.0.0.1:80",
            &[
                ("forwarded", "for=203.0.113.7"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
        );
        assert_eq!(client_ip(&r, &trusted, RFC), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_is_parsed_when_chosen() {
        let trusted = nets(&["10.0.0.0/8"]);
        let r = request(
            "10.0.0.1:80",
            &[
                (
                    "forwarded",
                    "for=\"[2001:db8::17]:4711\";proto=https, For=10.0.0.3",
                ),
                ("x-forwarded-for", "6.6.6.6"),
            ],
        );
        assert_eq!(client_ip(&r, &trusted, RFC), ip("2001:db8::17"));
        let r = request(
            "10.0.0.1:80",
            &[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")],
        );
        assert_eq!(client_ip(&r, &trusted, RFC), ip("192.0.2.60"));
    }

    #[test]
    fn unnamed_or_garbage_hops_make_the_client_unknown() {
        let trusted = nets(&["10.0.0.0/8"]);
        for (name, value) in [
            ("forwarded", "for=unknown"),
            ("forwarded", "for=_hidden"),
            ("x-forwarded-for", "not-an-ip"),
            ("x-forwarded-for", ""),
        ] {
            let r = request("10.0.0.1:80", &[(name, value)]);
            let which = if name == "forwarded" { RFC } else { XF };
            assert_eq!(client_ip(&r, &trusted, which), None, "{name}: {value}");
        }
    }

    #[test]
    fn mapped_addresses_are_normalised_and_inside_requests_keep_the_peer() {
        let r = request("[::ffff:192.0.2.1]:80", &[]);
        assert_eq!(client_ip(&r, &[], XF), ip("192.0.2.1"));
        let trusted = nets(&["10.0.0.0/8"]);
        let r = request("10.0.0.1:80", &[]);
        assert_eq!(client_ip(&r, &trusted, XF), ip("10.0.0.1"), "no header");
        let r = request("10.0.0.1:80", &[("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(client_ip(&r, &trusted, XF), ip("10.0.0.5"), "all hops ours");
    }
}
