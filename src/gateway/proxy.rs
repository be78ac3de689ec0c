//! The reverse proxy: a request the guard let through goes to the upstream
//! with the identity headers added, over kept-alive connections of its own
//! ([`Upstream`]).
//!
//! - Every incoming copy of an identity header is removed, whatever the
//!   route, so a client cannot forge one: on a guarded route each identity
//!   header is set to the token's value, which replaces every copy; on a
//!   public path the copies are dropped.
//! - Hop-by-hop fields are removed both ways (RFC 9110 §7.6.1): the fields
//!   the `Connection` header names, then `Connection`, `Proxy-Connection`,
//!   `Keep-Alive`, `TE`, `Transfer-Encoding` and `Upgrade`. A WebSocket
//!   handshake (`Connection: upgrade`, `Upgrade: websocket`) keeps its two
//!   fields, and after a `101` the two connections are joined byte for byte.
//! - `X-Forwarded-For` gets the peer appended when the peer is a trusted
//!   proxy; from any other peer the incoming `X-Forwarded-*` and `Forwarded`
//!   fields are dropped and the peer's address starts the chain.
//!   `X-Forwarded-Host` and `X-Forwarded-Proto` are set likewise.
//! - Bodies stream both ways without buffering.
//! - An upstream that cannot be reached answers `502`, one that does not
//!   send its response head within the timeout `504`, each with a JSON body
//!   saying so. A request body that breaks off or is malformed on the
//!   client's side (a bad chunk size, the connection closed early) answers
//!   `400`, logged as the client's fault.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tower_service::Service;

use crate::BoxFuture;
use crate::ip::{ClientIpResolver, IpRanges};

use super::config::{IdentityHeaders, UpstreamSettings};
use super::identity::{remove_fields, state_identity};
use super::upstream::{Upstream, UpstreamError};

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

struct ProxyShared {
    upstream: Arc<Upstream>,
    timeout: Duration,
    identity: IdentityHeaders,
    trusted_proxies: Arc<IpRanges>,
}

/// The service that forwards a guarded request to the upstream; `authenticated`
/// says whether its route required a token (see
/// [`state_identity`]).
#[derive(Clone)]
pub(crate) struct Forward {
    shared: Arc<ProxyShared>,
    authenticated: bool,
}

impl Forward {
    pub(crate) fn new(
        upstream: &UpstreamSettings,
        identity: IdentityHeaders,
        trusted_proxies: IpRanges,
    ) -> Self {
        let parts = upstream.url.clone().into_parts();
        let authority = parts
            .authority
            .unwrap_or_else(|| http::uri::Authority::from_static("127.0.0.1"));
        Forward {
            shared: Arc::new(ProxyShared {
                upstream: Arc::new(Upstream::new(
                    parts.scheme.unwrap_or(http::uri::Scheme::HTTP),
                    authority,
                    upstream.connect_timeout,
                )),
                timeout: upstream.timeout,
                identity,
                trusted_proxies: Arc::new(trusted_proxies),
            }),
            authenticated: true,
        }
    }

    /// The same proxy for routes that need no token.
    pub(crate) fn public(&self) -> Self {
        Forward {
            shared: Arc::clone(&self.shared),
            authenticated: false,
        }
    }
}

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let authenticated = self.authenticated;
        Box::pin(async move { Ok(forward(&shared, authenticated, request).await) })
    }
}

/// Whether `headers` ask for a protocol upgrade: `Connection` lists
/// `upgrade` and `Upgrade` names a protocol.
fn upgrade_requested(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_options(headers).any(|o| o.eq_ignore_ascii_case("upgrade"))
}

fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|option| !option.is_empty())
}

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1; with `keep_upgrade`,
/// `Upgrade` stays and `Connection: upgrade` is put back.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    static HOP_BY_HOP: [HeaderName; 5] = [
        header::CONNECTION,
        PROXY_CONNECTION,
        KEEP_ALIVE,
        header::TE,
        header::TRANSFER_ENCODING,
    ];
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|option| HeaderName::from_bytes(option.as_bytes()).ok())
        .collect();
    remove_fields(headers, |name| {
        if name == header::UPGRADE {
            !keep_upgrade
        } else {
            HOP_BY_HOP.contains(name) || named.contains(name)
        }
    });
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sets `X-Forwarded-For`, `-Host` and `-Proto` for the upstream.
fn set_forwarded(headers: &mut HeaderMap, peer: Option<std::net::IpAddr>, trusted: &IpRanges) {
    let from_trusted_proxy = peer.is_some_and(|ip| trusted.contains(ip.to_canonical()));
    if !from_trusted_proxy {
        static FORWARDED: [HeaderName; 4] = [
            X_FORWARDED_FOR,
            X_FORWARDED_HOST,
            X_FORWARDED_PROTO,
            header::FORWARDED,
        ];
        remove_fields(headers, |name| FORWARDED.contains(name));
    }
    if let Some(peer) = peer {
        let mut chain = Vec::with_capacity(64);
        if from_trusted_proxy
            && let Some(existing) = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok())
            && !existing.trim().is_empty()
        {
            chain.extend_from_slice(existing.as_bytes());
            chain.extend_from_slice(b", ");
        }
        write_ip(&mut chain, peer.to_canonical());
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// Appends `ip` as text: an IPv4 address digit by digit (the common case,
/// without the formatting machinery), an IPv6 address as `Display` writes it.
fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Whether sending to the upstream failed because the client's body did (a
/// malformed chunk, a connection closed before the body's end): the
/// client's fault, not the upstream's.
fn client_body_failed(err: &hyper::Error) -> bool {
    err.is_user() && std::error::Error::source(err).is_some_and(|cause| cause.is::<axum::Error>())
}

/// A gateway error answer: `{"error":…,"error_description":…}`.
pub(crate) fn gateway_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = serde_json::json!({"error": code, "error_description": description}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn forward(
    shared: &ProxyShared,
    authenticated: bool,
    mut request: Request<Body>,
) -> Response<Body> {
    let peer = ClientIpResolver::peer(&request);
    let upgrade = upgrade_requested(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    // The upstream gets the origin form (`/path?query`); an absolute-form
    // target loses its scheme and authority.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
    }
    parts.version = http::Version::HTTP_11;
    let headers = &mut parts.headers;
    // Room for the identity and forwarding fields, grown once.
    let _ = headers.try_reserve(8);
    // Before the identity: a client's `Connection` may name an identity
    // header, and must not remove the one stated below.
    remove_hop_by_hop(headers, upgrade);
    // It fails closed when a check did not run.
    if let Err(err) = state_identity(&parts.extensions, &shared.identity, authenticated, headers) {
        tracing::error!(reason = err.0, "authgate refused to forward a request");
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", err.0);
    }
    set_forwarded(headers, peer, &shared.trusted_proxies);
    // What only this hop needs stays here.
    parts.extensions = http::Extensions::new();
    let upstream_request = Request::from_parts(parts, body);

    let response = match tokio::time::timeout(
        shared.timeout,
        shared.upstream.send(upstream_request),
    )
    .await
    {
        Err(_) => {
            tracing::warn!(upstream = %shared.upstream.authority(), "the upstream did not answer in time");
            return gateway_error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            );
        }
        Ok(Err(UpstreamError::ConnectTimeout)) => {
            tracing::warn!(upstream = %shared.upstream.authority(), "the upstream did not accept the connection in time");
            return gateway_error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not accept the connection in time",
            );
        }
        Ok(Err(UpstreamError::Request(err))) if client_body_failed(&err) => {
            tracing::info!(error = %err, "the client's request body broke off or was malformed");
            return gateway_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body is malformed or ended early",
            );
        }
        Ok(Err(err)) => {
            tracing::warn!(upstream = %shared.upstream.authority(), error = %err, "the upstream cannot be reached");
            return gateway_error(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "the upstream cannot be reached",
            );
        }
        Ok(Ok(response)) => response,
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return gateway_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream switched protocols without being asked",
            );
        };
        let mut response = response;
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    if let Err(err) =
                        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(error = %err, "an upgraded connection ended");
                    }
                }
                Err(err) => tracing::debug!(error = %err, "a protocol upgrade failed"),
            }
        });
        let (mut parts, _) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, Body::empty());
    }

    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(PROXY_CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn a_websocket_handshake_keeps_its_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(upgrade_requested(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
    }

    #[test]
    fn forwarded_fields_from_untrusted_peers_are_replaced() {
        let trusted = IpRanges::parse_list("10.0.0.1").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        headers.insert(header::HOST, HeaderValue::from_static("app.example"));
        set_forwarded(&mut headers, Some("192.0.2.7".parse().unwrap()), &trusted);
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(headers[X_FORWARDED_HOST], "app.example");

        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        set_forwarded(&mut headers, Some("10.0.0.1".parse().unwrap()), &trusted);
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.1");

        // An IPv4-mapped IPv6 peer is written as IPv4; IPv6 as usual.
        let mut headers = HeaderMap::new();
        set_forwarded(
            &mut headers,
            Some("::ffff:192.0.2.250".parse().unwrap()),
            &trusted,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.250");
        let mut headers = HeaderMap::new();
        set_forwarded(&mut headers, Some("2001:db8::7".parse().unwrap()), &trusted);
        assert_eq!(headers[X_FORWARDED_FOR], "2001:db8::7");
    }

    #[test]
    fn every_ipv4_address_is_written_as_display_writes_it() {
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, 255 - octet, octet / 3, 10]);
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
