//! Which address a request comes from.
//!
//! The peer address of the connection is the client's, unless the peer is a
//! configured trusted proxy: then `X-Forwarded-For` (or RFC 7239
//! `Forwarded`) is read from the right, skipping trusted proxies, and the
//! first address that is not one is the client's. Headers from untrusted
//! peers are never read, and an entry that does not parse stops the walk at
//! the last address known to be real: a forged or garbled header cannot
//! choose the client address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};

use super::IpRanges;

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

    /// The client address of a request from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut current = peer.to_canonical();
        if !self.trusted.contains(current) {
            return current;
        }
        let name = match self.header {
            ProxyHeader::XForwardedFor => X_FORWARDED_FOR,
            ProxyHeader::Forwarded => http::header::FORWARDED,
        };
        // All values of the header, in order, form one list.
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in headers.get_all(&name) {
            let Ok(text) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for element in text.split(',') {
                hops.push(match self.header {
                    ProxyHeader::XForwardedFor => parse_hop(element.trim()),
                    ProxyHeader::Forwarded => forwarded_for(element),
                });
            }
        }
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.trusted.contains(ip) => current = ip,
                Some(ip) => return ip,
                None => return current,
            }
        }
        current
    }

    /// The client address of `request`, or `None` without a peer address.
    pub fn resolve_request<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        Self::peer(request).map(|peer| self.resolve(peer, request.headers()))
    }
}

/// An address, optionally with a port (`1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]:80`), canonical (mapped IPv6 as IPv4).
fn parse_hop(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<IpAddr>().ok()
        })?;
    Some(ip.to_canonical())
}

/// The `for=` address of one `Forwarded` element; obfuscated identifiers and
/// `unknown` are not addresses.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    parse_hop(value)
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

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let r = resolver("10.0.0.0/8");
        let h = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(r.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn walks_from_the_right_past_trusted_proxies() {
        let r = resolver("10.0.0.0/8");
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Several headers form one list, in order.
        let h = headers("x-forwarded-for", &["6.6.6.6", "198.51.100.7", "10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Only trusted hops: the leftmost one.
        let h = headers("x-forwarded-for", &["10.9.9.9, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let r = resolver("10.0.0.0/8");
        let h = headers("x-forwarded-for", &["6.6.6.6, nonsense, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        let h = headers("x-forwarded-for", &["6.6.6.6, "]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_header() {
        let r = resolver("10.0.0.0/8").header(ProxyHeader::Forwarded);
        let h = headers(
            "forwarded",
            &["for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.5"],
        );
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers("forwarded", &["for=_hidden, for=10.0.0.5"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let r = resolver("10.0.0.0/8");
        assert_eq!(
            r.resolve(ip("::ffff:203.0.113.9"), &HeaderMap::new()),
            ip("203.0.113.9")
        );
        let h = headers("x-forwarded-for", &["::ffff:198.51.100.7"]);
        assert_eq!(r.resolve(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.7"));
    }
}
