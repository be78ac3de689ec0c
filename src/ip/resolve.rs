//! Which address a request comes from.
//!
//! The peer address of the connection is the client's, unless the peer is a
//! configured trusted proxy: then `X-Forwarded-For` (or RFC 7239
//! `Forwarded`) is read from the right, skipping trusted proxies, and the
//! first address that is not one is the client's. Headers from untrusted
//! peers are never read.
//!
//! From a trusted proxy the header must be a list of addresses from end to
//! end, or the client cannot be told and the request is refused
//! ([`AddressRejection::Unresolvable`], `400`): an element that is empty,
//! junk, `unknown`, an obfuscated identifier (`_hidden`), a `unix:` path,
//! an address with a port in `X-Forwarded-For` (or an unquoted one in
//! `Forwarded`), or a value that is not visible ASCII. The walk never falls
//! back to the proxy's own address and never skips an element, so a forged
//! or garbled header cannot choose the client address, nor make the
//! proxy's address stand for the client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};

use super::IpRanges;
use crate::reject::AddressRejection;

/// The connection's peer address, for hyper services: insert it into each
/// request's extensions. (axum's `ConnectInfo<SocketAddr>` and, for tests,
/// `MockConnectInfo<SocketAddr>` are read as well, with the `axum` feature.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The resolved client address, put in the request extensions by
/// [`IpFilterLayer`](super::IpFilterLayer) (an extractor with the `axum`
/// feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Which proxy header carries the forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Resolves the client address of a request.
///
/// The peer address is the client's, unless the peer is a trusted proxy:
/// then the configured header ([`ProxyHeader`]) is read from the right,
/// past trusted proxies, and the first other address is the client's. From
/// a trusted proxy the header must be a list of addresses from end to end:
/// an element that is empty, junk, `unknown`, an obfuscated identifier, a
/// `unix:` path, an address with a port in `X-Forwarded-For` (or an
/// unquoted one in `Forwarded`) leaves the client unknown
/// ([`AddressRejection::Unresolvable`]); the proxy's own address never
/// stands in for it.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Arc<IpRanges>,
    header: ProxyHeader,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ClientIpResolver {
    /// A resolver that trusts no proxy: the peer address is the client's.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust proxy headers from peers in `proxies`.
    pub fn trusted_proxies(mut self, proxies: IpRanges) -> Self {
        self.trusted = Arc::new(proxies);
        self
    }

    /// Read this header (default `X-Forwarded-For`).
    pub fn header(mut self, header: ProxyHeader) -> Self {
        self.header = header;
        self
    }

    /// The peer address of `request`: [`PeerAddr`], or axum's
    /// `ConnectInfo<SocketAddr>`.
    pub fn peer<B>(request: &Request<B>) -> Option<IpAddr> {
        let extensions = request.extensions();
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(addr.ip());
        }
        #[cfg(feature = "axum")]
        {
            use axum::extract::ConnectInfo;
            use axum::extract::connect_info::MockConnectInfo;
            if let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<SocketAddr>>() {
                return Some(addr.ip());
            }
            if let Some(MockConnectInfo(addr)) = extensions.get::<MockConnectInfo<SocketAddr>>() {
                return Some(addr.ip());
            }
        }
        None
    }

    /// The client address of a request from `peer` with `headers`, or
    /// [`AddressRejection::Unresolvable`] when `peer` is a trusted proxy
    /// whose header holds anything but addresses (see
    /// [`ClientIpResolver`]).
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, AddressRejection> {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return Ok(peer);
        }
        let name = match self.header {
            ProxyHeader::XForwardedFor => X_FORWARDED_FOR,
            ProxyHeader::Forwarded => http::header::FORWARDED,
        };
        // All fields of the header form one list, read from the right; every
        // element is checked, also those left of the client (no allocation).
        let mut nearest_trusted = peer;
        let mut client = None;
        for value in headers.get_all(&name).iter().rev() {
            let text = value.to_str().map_err(|_| AddressRejection::Unresolvable)?;
            for element in text.rsplit(',') {
                let hop = match self.header {
                    ProxyHeader::XForwardedFor => forwarded_for_element(element),
                    ProxyHeader::Forwarded => forwarded_element(element),
                }
                .ok_or(AddressRejection::Unresolvable)?;
                if client.is_none() {
                    if self.trusted.contains(hop) {
                        nearest_trusted = hop;
                    } else {
                        client = Some(hop);
                    }
                }
            }
        }
        Ok(client.unwrap_or(nearest_trusted))
    }

    /// The client address of `request`: [`AddressRejection::UnknownPeer`]
    /// without a peer address, [`AddressRejection::Unresolvable`] when a
    /// trusted proxy's header cannot be read.
    pub fn resolve_request<B>(&self, request: &Request<B>) -> Result<IpAddr, AddressRejection> {
        let peer = Self::peer(request).ok_or(AddressRejection::UnknownPeer)?;
        self.resolve(peer, request.headers())
    }
}

/// Optional white space around a list element (RFC 9110 §5.6.1).
fn trim_ows(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// One `X-Forwarded-For` element: a bare IPv4 or IPv6 address, without
/// brackets or port, canonical (mapped IPv6 as IPv4).
fn forwarded_for_element(element: &str) -> Option<IpAddr> {
    trim_ows(element)
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The `for=` node of one RFC 7239 `Forwarded` element: `for` given once,
/// an IPv4 address, or a quoted `"ipv4:port"`, `"[ipv6]"` or
/// `"[ipv6]:port"`. `unknown`, obfuscated identifiers and anything else
/// are not addresses.
fn forwarded_element(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in element.split(';') {
        let (key, value) = trim_ows(pair).split_once('=')?;
        if key.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(value);
        }
    }
    let node = node?;
    let (node, quoted) = match node.strip_prefix('"') {
        Some(rest) => (rest.strip_suffix('"')?, true),
        None => (node, false),
    };
    let (address, port) = match node.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let v6 = inside.parse::<std::net::Ipv6Addr>().ok()?;
            (IpAddr::V6(v6), after)
        }
        None => {
            let (address, port) = match node.find(':') {
                Some(at) => node.split_at(at),
                None => (node, ""),
            };
            (IpAddr::V4(address.parse().ok()?), port)
        }
    };
    // `:` and `[` are not token characters: a node with them is quoted.
    if !quoted && address.is_ipv6() {
        return None;
    }
    match port.strip_prefix(':') {
        None if port.is_empty() => {}
        Some(digits)
            if quoted
                && !digits.is_empty()
                && digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u16>().is_ok() => {}
        _ => return None,
    }
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(trusted: &str) -> ClientIpResolver {
        ClientIpResolver::new().trusted_proxies(IpRanges::parse_list(trusted).unwrap())
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolved(r: &ClientIpResolver, peer: &str, h: &HeaderMap) -> Option<IpAddr> {
        r.resolve(ip(peer), h).ok()
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let r = resolver("10.0.0.0/8");
        let h = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(resolved(&r, "203.0.113.9", &h), Some(ip("203.0.113.9")));
        // Nor make themselves unresolvable: their header is not read.
        let h = headers("x-forwarded-for", &["nonsense"]);
        assert_eq!(resolved(&r, "203.0.113.9", &h), Some(ip("203.0.113.9")));
    }

    #[test]
    fn walks_from_the_right_past_trusted_proxies() {
        let r = resolver("10.0.0.0/8");
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(resolved(&r, "10.0.0.1", &h), Some(ip("198.51.100.7")));
        // Several headers form one list, in order.
        let h = headers("x-forwarded-for", &["6.6.6.6", "198.51.100.7", "10.0.0.2"]);
        assert_eq!(resolved(&r, "10.0.0.1", &h), Some(ip("198.51.100.7")));
        // Only trusted hops: the leftmost one.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.0.0.2"]);
        assert_eq!(resolved(&r, "10.0.0.1", &h), Some(ip("10.9.9.9")));
        // No header: the proxy itself is the client.
        assert_eq!(
            resolved(&r, "10.0.0.1", &HeaderMap::new()),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn anything_but_addresses_from_a_trusted_proxy_is_unresolvable() {
        let r = resolver("10.0.0.0/8");
        for value in [
            "6.6.6.6, nonsense, 10.0.0.2",
            "6.6.6.6, ",
            ", 6.6.6.6",
            "6.6.6.6,,10.0.0.2",
            "",
            " ",
            "unknown",
            "_hidden",
            "unix:/run/nginx.sock",
            "198.51.100.7:4711",
            "[2001:db8::1]",
            "[2001:db8::1]:80",
            "198.51.100.7 198.51.100.8",
            "nonsense, 198.51.100.7",
            "010.0.0.1",
        ] {
            let h = headers("x-forwarded-for", &[value]);
            assert_eq!(
                r.resolve(ip("10.0.0.1"), &h),
                Err(AddressRejection::Unresolvable),
                "{value:?}"
            );
        }
        // One garbled field among several.
        let h = headers("x-forwarded-for", &["6.6.6.6", "x", "10.0.0.2"]);
        assert!(r.resolve(ip("10.0.0.1"), &h).is_err());
        // Bytes that are not visible ASCII.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"6.6.6.6\xff").unwrap(),
        );
        assert!(r.resolve(ip("10.0.0.1"), &h).is_err());
    }

    #[test]
    fn forwarded_header() {
        let r = resolver("10.0.0.0/8").header(ProxyHeader::Forwarded);
        let h = headers(
            "forwarded",
            &["for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.5"],
        );
        assert_eq!(resolved(&r, "10.0.0.1", &h), Some(ip("2001:db8:cafe::17")));
        let h = headers("forwarded", &["For=\"192.0.2.43:80\";by=10.0.0.5"]);
        assert_eq!(resolved(&r, "10.0.0.1", &h), Some(ip("192.0.2.43")));
        for value in [
            "for=_hidden, for=10.0.0.5",
            "for=unknown",
            "for=\"unix:/run/app.sock\"",
            "for=192.0.2.43:80",
            "for=2001:db8::1",
            "for=\"2001:db8::1\"",
            "for=\"[2001:db8::1]:_port\"",
            "for=\"192.0.2.43:99999\"",
            "proto=https",
            "for=192.0.2.43;for=192.0.2.44",
            "for=192.0.2.43,",
            "",
        ] {
            let h = headers("forwarded", &[value]);
            assert_eq!(
                r.resolve(ip("10.0.0.1"), &h),
                Err(AddressRejection::Unresolvable),
                "{value:?}"
            );
        }
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let r = resolver("10.0.0.0/8");
        assert_eq!(
            resolved(&r, "::ffff:203.0.113.9", &HeaderMap::new()),
            Some(ip("203.0.113.9"))
        );
        let h = headers("x-forwarded-for", &["::ffff:198.51.100.7"]);
        assert_eq!(
            resolved(&r, "::ffff:10.0.0.1", &h),
            Some(ip("198.51.100.7"))
        );
    }
}
