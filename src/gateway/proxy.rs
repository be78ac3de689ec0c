//! The reverse proxy: a request the guard let through goes to the upstream
//! with the identity headers added, over kept-alive connections of its own
//! ([`Upstream`]).
//!
//! What the upstream receives is what the client sent less the fields
//! below, removed in one pass over the request's field names (names
//! compared with case ignored and `_` read as `-`, as CGI, WSGI and Rack
//! upstreams read them), then what the gateway states:
//!
//! - Every incoming copy of an identity header, under any spelling
//!   (`X_Auth_Roles`, `x-auth_roles`), is removed, whatever the route, so a
//!   client cannot forge one: on a guarded route each identity header is
//!   then set to the token's value; on a public path none is sent.
//! - Hop-by-hop fields are removed both ways (RFC 9110 §7.6.1): the fields
//!   the `Connection` header names (never `Host`, and never what the
//!   gateway states, which comes after), then `Connection`,
//!   `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding` and
//!   `Upgrade`. A WebSocket handshake (`Connection: upgrade`, `Upgrade:
//!   websocket`) keeps its two fields, and after a `101` whose `Upgrade` is
//!   `websocket` too the two connections are joined byte for byte; any
//!   other upgrade (`h2c`, arbitrary tokens) goes on as a plain request,
//!   and a `101` naming another protocol is a `502`. A joined WebSocket is
//!   closed at its token's `exp`, once the token, its family or every token
//!   of its subject is found revoked, and
//!   after `[server] websocket_max_lifetime` in any case. `CONNECT` never
//!   reaches the proxy: the request-line check before routing answers it
//!   `405` ([`target`](super::target)).
//! - Request trailers are not forwarded: the `Trailer` field is removed and
//!   the trailer frames of a chunked body (or of an HTTP/2 request, gRPC
//!   included) are dropped, so no trailer can carry an identity. Response
//!   trailers pass: an HTTP/2 client gets the upstream's (gRPC's
//!   `grpc-status`); an HTTP/1.1 client only where hyper's HTTP/1 rules
//!   allow (`TE: trailers` sent, the fields named in `Trailer`).
//! - From a peer that is not a trusted proxy, every forwarding and
//!   client-address field is removed: every `X-Forwarded-*` and
//!   `X-Forwarded`, `Forwarded`, `X-Real-IP`, `True-Client-IP`,
//!   `X-Client-IP`, `Client-IP`, `X-Cluster-Client-IP`, `CF-Connecting-IP`,
//!   `Fastly-Client-IP`, `X-Originating-IP`, `X-Remote-IP`, `X-Remote-Addr`,
//!   `X-Original-URL`, `X-Original-URI`, `X-Rewrite-URL`, `X-Original-Host`,
//!   `X-Host`, `X-HTTP-Method-Override`, `X-HTTP-Method`,
//!   `X-Method-Override` and `X-Original-Method`. Then `X-Forwarded-For` is
//!   the peer's address, `X-Forwarded-Host` the `Host` and
//!   `X-Forwarded-Proto` `http` (`https` when the gateway terminates TLS). From a trusted proxy these fields are kept,
//!   the peer appended to its `X-Forwarded-For`, and `-Host` and `-Proto`
//!   set when it sent none.
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

use crate::store::{RevocationCheck, RevocationStore};
use crate::token::VerifiedToken;

use super::config::{ConnectionSettings, IdentityHeaders, UpstreamSettings};
use super::identity::{
    IdentityError, field_starts_with, identity_field, same_field, state_identity,
};
use super::serve::HeldConnectionSlot;
use super::upstream::{Upstream, UpstreamError};

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

#[derive(Clone)]
struct ProxyShared {
    upstream: Arc<Upstream>,
    timeout: Duration,
    identity: IdentityHeaders,
    trusted_proxies: Arc<IpRanges>,
    websockets: WebSocketBounds,
    /// `X-Forwarded-Proto` when no trusted proxy stated one: `https` when
    /// the gateway terminates TLS.
    proto: HeaderValue,
}

/// How long a proxied WebSocket may stay open.
#[derive(Clone)]
struct WebSocketBounds {
    /// The longest it stays open, token or not.
    max_lifetime: Duration,
    /// How often its token is looked up in `revocations`.
    revocation_check: Duration,
    /// The guard's revoked tokens and families.
    revocations: Option<Arc<dyn RevocationStore>>,
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
    ) -> Result<Self, String> {
        let parts = upstream.url.clone().into_parts();
        let authority = parts
            .authority
            .unwrap_or_else(|| http::uri::Authority::from_static("127.0.0.1"));
        let mut client = Upstream::new(
            parts.scheme.unwrap_or(http::uri::Scheme::HTTP),
            authority,
            upstream.connect_timeout,
        )
        .with_max_idle(upstream.idle_connections);
        if let Some(tls) = &upstream.tls {
            client = client.with_tls(Arc::clone(tls))?;
        }
        if upstream.http2 {
            client = client.with_http2();
        }
        Ok(Forward {
            shared: Arc::new(ProxyShared {
                upstream: Arc::new(client),
                timeout: upstream.timeout,
                identity,
                trusted_proxies: Arc::new(trusted_proxies),
                websockets: WebSocketBounds {
                    max_lifetime: ConnectionSettings::default().websocket_max_lifetime,
                    revocation_check: ConnectionSettings::default().websocket_revocation_check,
                    revocations: None,
                },
                proto: HeaderValue::from_static("http"),
            }),
            authenticated: true,
        })
    }

    /// Requests reach the gateway over TLS: `X-Forwarded-Proto: https`
    /// (unless a trusted proxy stated another).
    pub(crate) fn over_tls(mut self, tls: bool) -> Self {
        Arc::make_mut(&mut self.shared).proto = HeaderValue::from_static(match tls {
            true => "https",
            false => "http",
        });
        self
    }

    /// Bounds each proxied WebSocket: closed at its token's `exp`, once the
    /// token (or its family) is found in `revocations` (looked up every
    /// `settings.websocket_revocation_check`), and in any case after
    /// `settings.websocket_max_lifetime`.
    pub(crate) fn with_websocket_bounds(
        mut self,
        settings: &ConnectionSettings,
        revocations: Arc<dyn RevocationStore>,
    ) -> Self {
        Arc::make_mut(&mut self.shared).websockets = WebSocketBounds {
            max_lifetime: settings.websocket_max_lifetime,
            revocation_check: settings.websocket_revocation_check,
            revocations: Some(revocations),
        };
        self
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
        // The request is rewritten here, so that the future holds only
        // what the exchange with the upstream needs.
        match prepare(&self.shared, self.authenticated, request) {
            Ok(prepared) => {
                let shared = Arc::clone(&self.shared);
                Box::pin(async move { Ok(exchange(&shared, prepared).await) })
            }
            // It fails closed when a check did not run.
            Err(err) => {
                tracing::error!(reason = err.0, "authgate refused to forward a request");
                Box::pin(std::future::ready(Ok(gateway_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    err.0,
                ))))
            }
        }
    }
}

/// Whether `headers` ask for a protocol upgrade: `Connection` lists
/// `upgrade` and `Upgrade` names a protocol.
fn upgrade_requested(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_options(headers).any(|o| o.eq_ignore_ascii_case("upgrade"))
}

/// Whether `headers` carry an `Upgrade` field that is not an empty one or
/// `websocket`: a request the decision endpoint refuses, since it cannot
/// remove the field from what the proxy in front forwards.
pub(crate) fn upgrade_other_than_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    let Some(first) = values.next() else {
        return false;
    };
    (values.next().is_some() || !first.as_bytes().trim_ascii().is_empty())
        && !upgrade_is_websocket(headers)
}

/// Whether `Upgrade` is one field holding the one protocol `websocket`
/// (any case): the only upgrade the gateway tunnels.
pub(crate) fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"websocket"),
        _ => false,
    }
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

/// The hop-by-hop fields of RFC 9110 §7.6.1 besides `Upgrade` and the
/// fields `Connection` names.
static HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Whether `name` is a hop-by-hop field of a message whose `Connection`
/// fields are `connection` (RFC 9110 §7.6.1): one of [`HOP_BY_HOP`],
/// `Upgrade` unless `keep_upgrade`, or a field `Connection` names. `Host`
/// is never one: a client's `Connection: Host` must not take the target's
/// host away from the upstream.
fn hop_by_hop(
    name: &HeaderName,
    connection: &http::header::GetAll<'_, HeaderValue>,
    keep_upgrade: bool,
) -> bool {
    if name == header::UPGRADE {
        return !keep_upgrade;
    }
    HOP_BY_HOP.contains(name)
        || (name != header::HOST
            && connection
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|option| option.trim().eq_ignore_ascii_case(name.as_str())))
}

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1 ([`hop_by_hop`]); with
/// `keep_upgrade`, `Upgrade` stays and `Connection: upgrade` is put back.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    remove_hop_by_hop_and(headers, keep_upgrade, |_| false);
}

/// Removes, in one pass over the names of a request's fields, every field
/// the upstream must hear from the gateway alone or not at all:
///
/// - the hop-by-hop fields ([`remove_hop_by_hop`]) and `Trailer`: request
///   trailers are not forwarded, so no trailer can carry an identity;
/// - every spelling of an identity header ([`identity_field`]), which the
///   gateway states afterwards on a guarded route;
/// - from a peer that is not a trusted proxy, every forwarding and
///   client-address field ([`forwarding_field`]), which the gateway sets
///   afterwards ([`set_forwarded`]).
fn remove_request_fields(
    headers: &mut HeaderMap,
    identity: &IdentityHeaders,
    keep_upgrade: bool,
    from_trusted_proxy: bool,
) {
    remove_hop_by_hop_and(headers, keep_upgrade, |name| {
        *name == header::TRAILER
            || identity_field(name, identity).is_some()
            || (!from_trusted_proxy && forwarding_field(name.as_str().as_bytes()))
    });
}

/// [`remove_hop_by_hop`], and every field `also` picks, in the same pass.
fn remove_hop_by_hop_and(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    also: impl Fn(&HeaderName) -> bool,
) {
    let connection = headers.get_all(header::CONNECTION);
    // Nothing is allocated unless a field is picked.
    let picked: Vec<HeaderName> = headers
        .keys()
        .filter(|name| hop_by_hop(name, &connection, keep_upgrade) || also(name))
        .cloned()
        .collect();
    for name in picked {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `name` (a field name, compared as [`same_field`] does: case
/// ignored, `_` read as `-`) says where a request came from or what it
/// was before a proxy: every `X-Forwarded-*` and `X-Forwarded` itself,
/// `Forwarded`, the client-address fields (`X-Real-IP`, `True-Client-IP`,
/// `X-Client-IP`, `Client-IP`, `X-Cluster-Client-IP`, `CF-Connecting-IP`,
/// `Fastly-Client-IP`, `X-Originating-IP`, `X-Remote-IP`, `X-Remote-Addr`),
/// the original target or host (`X-Original-URL`, `X-Rewrite-URL`,
/// `X-Original-URI`, `X-Original-Host`, `X-Host`) and the method overrides
/// (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`,
/// `X-Original-Method`). Only a trusted proxy may send them.
fn forwarding_field(name: &[u8]) -> bool {
    const X_FIELDS: [&[u8]; 16] = [
        b"x-forwarded",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-originating-ip",
        b"x-remote-ip",
        b"x-remote-addr",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-uri",
        b"x-original-host",
        b"x-host",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        b"x-original-method",
    ];
    let fields: &[&[u8]] = match name.first().map(u8::to_ascii_lowercase) {
        Some(b'x') => {
            if field_starts_with(name, b"x-forwarded-") {
                return true;
            }
            &X_FIELDS
        }
        Some(b'f') => &[b"forwarded", b"fastly-client-ip"],
        Some(b't') => &[b"true-client-ip"],
        Some(b'c') => &[b"client-ip", b"cf-connecting-ip"],
        _ => return false,
    };
    fields.iter().any(|field| same_field(name, field))
}

/// Sets `X-Forwarded-For`, `-Host` and `-Proto` for the upstream: the peer
/// appended to a trusted proxy's `X-Forwarded-For`, or starting the chain;
/// a trusted proxy's `-Host` and `-Proto` kept, anyone else's removed
/// before ([`remove_request_fields`]) and set from `Host` and the scheme.
fn set_forwarded(
    headers: &mut HeaderMap,
    peer: Option<std::net::IpAddr>,
    from_trusted_proxy: bool,
    proto: &HeaderValue,
) {
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
    // From any other peer the forwarding fields were removed before: there
    // is nothing to look up.
    if !(from_trusted_proxy && headers.contains_key(X_FORWARDED_HOST))
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if !(from_trusted_proxy && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, proto.clone());
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

/// `body` without its trailers: a body whose length is known (empty, or
/// with `Content-Length`) has none and is passed as it is; a chunked one
/// is wrapped so that its trailer frames are dropped.
fn without_trailers(body: Body) -> Body {
    if http_body::Body::size_hint(&body).exact().is_some() {
        body
    } else {
        Body::new(WithoutTrailers(body))
    }
}

/// A request body whose trailer frames are dropped ([`without_trailers`]).
struct WithoutTrailers(Body);

impl http_body::Body for WithoutTrailers {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        // A trailer frame is the last one: what follows it is the end.
        loop {
            let frame = std::task::ready!(std::pin::Pin::new(&mut self.0).poll_frame(cx));
            if !matches!(&frame, Some(Ok(frame)) if !frame.is_data()) {
                return Poll::Ready(frame);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
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

/// A request rewritten for the upstream, with what its upgrade needs.
struct Prepared {
    request: Request<Body>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    tunnel: Option<TunnelBounds>,
}

/// The request as the upstream gets it: origin-form target, HTTP/1.1, the
/// hop-by-hop, identity and untrusted forwarding fields removed, the
/// identity and forwarding fields stated; or why the identity cannot be
/// stated (a check that should have run before did not).
fn prepare(
    shared: &ProxyShared,
    authenticated: bool,
    mut request: Request<Body>,
) -> Result<Prepared, IdentityError> {
    let peer = ClientIpResolver::peer(&request);
    let from_trusted_proxy =
        peer.is_some_and(|ip| shared.trusted_proxies.contains(ip.to_canonical()));
    // Only a WebSocket handshake is passed on as an upgrade; any other
    // `Upgrade` (h2c, arbitrary tokens) is removed with the hop-by-hop
    // fields below and the request goes on as a plain one.
    let upgrade = upgrade_requested(request.headers()) && upgrade_is_websocket(request.headers());
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
    remove_request_fields(headers, &shared.identity, upgrade, from_trusted_proxy);
    state_identity(&parts.extensions, &shared.identity, authenticated, headers)?;
    set_forwarded(headers, peer, from_trusted_proxy, &shared.proto);
    let tunnel = upgrade.then(|| TunnelBounds::of(&mut parts.extensions, &shared.websockets));
    // What only this hop needs stays here.
    parts.extensions = http::Extensions::new();
    Ok(Prepared {
        request: Request::from_parts(parts, without_trailers(body)),
        client_upgrade,
        tunnel,
    })
}

/// Sends a prepared request and answers the upstream's response (a
/// WebSocket's `101` joined to the client's connection), or the gateway's
/// own error when the upstream cannot be reached or does not answer in
/// time.
async fn exchange(shared: &ProxyShared, prepared: Prepared) -> Response<Body> {
    let Prepared {
        request,
        client_upgrade,
        tunnel,
    } = prepared;
    let response = match tokio::time::timeout(shared.timeout, shared.upstream.send(request)).await {
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
        let (Some(client_upgrade), Some(tunnel)) = (client_upgrade, tunnel) else {
            return gateway_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream switched protocols without being asked",
            );
        };
        if !upgrade_is_websocket(response.headers()) {
            // Nothing is joined: the upstream's connection is dropped.
            tracing::warn!(upstream = %shared.upstream.authority(), "the upstream switched to another protocol than websocket");
            return gateway_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream switched to another protocol than the websocket asked for",
            );
        }
        let mut response = response;
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    tunnel
                        .run(tokio::io::copy_bidirectional(&mut client, &mut upstream))
                        .await;
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

/// What ends a tunnelled WebSocket besides either side closing it.
struct TunnelBounds {
    /// The token's `exp` or the longest lifetime, whichever comes first.
    deadline: tokio::time::Instant,
    /// The token's id and family, looked up every `revocation_check`.
    token: Option<TunnelToken>,
    revocation_check: Duration,
    revocations: Option<Arc<dyn RevocationStore>>,
    /// The connection's place among the open connections, held while the
    /// tunnel stays open.
    _slot: Option<HeldConnectionSlot>,
}

impl TunnelBounds {
    fn of(extensions: &mut http::Extensions, bounds: &WebSocketBounds) -> Self {
        let mut lifetime = bounds.max_lifetime;
        let mut token = None;
        if let Some(verified) = extensions.get::<VerifiedToken>() {
            let meta = verified.meta();
            let expires = std::time::UNIX_EPOCH + Duration::from_secs(meta.expires_at);
            let left = expires
                .duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO);
            lifetime = lifetime.min(left);
            token = Some(TunnelToken {
                id: meta.token_id.clone(),
                family: meta.family.clone(),
                subject: meta.subject.clone(),
                issued_at: meta.issued_at.unwrap_or(0),
            });
        }
        TunnelBounds {
            deadline: tokio::time::Instant::now() + lifetime,
            token,
            revocation_check: bounds.revocation_check,
            revocations: bounds.revocations.clone(),
            _slot: extensions.remove::<HeldConnectionSlot>(),
        }
    }

    /// Runs `copy` (the two connections joined) until it ends or a bound
    /// closes both connections.
    async fn run<F>(self, copy: F)
    where
        F: std::future::Future<Output = std::io::Result<(u64, u64)>>,
    {
        tokio::select! {
            ended = copy => {
                if let Err(err) = ended {
                    tracing::debug!(error = %err, "an upgraded connection ended");
                }
            }
            () = tokio::time::sleep_until(self.deadline) => {
                tracing::debug!("a websocket was closed: its token expired or it reached websocket_max_lifetime");
            }
            () = revoked(self.token.as_ref(), self.revocations.as_deref(), self.revocation_check) => {
                tracing::info!("a websocket was closed: its token was revoked");
            }
        }
    }
}

/// What a tunnel's token is revoked by: its id or family, and its
/// subject's sign-out everywhere.
struct TunnelToken {
    id: Option<String>,
    family: Option<String>,
    subject: Option<String>,
    issued_at: u64,
}

/// Completes once `token` is found revoked (its id, its family, or every
/// token of its subject), or the store cannot say (fail closed); never
/// without a token or a store.
async fn revoked(
    token: Option<&TunnelToken>,
    store: Option<&dyn RevocationStore>,
    every: Duration,
) {
    let (Some(token), Some(store)) = (token, store) else {
        return std::future::pending().await;
    };
    let answer = |check| async move {
        match check {
            RevocationCheck::Ready(answer) => answer,
            RevocationCheck::Pending(answer) => answer.await,
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        // As the auth layer checks it: without an id, the family stands in
        // for it.
        let by_id = match (&token.id, &token.family) {
            (Some(id), family) => Some(store.check(id, family.as_deref())),
            (None, Some(family)) => Some(store.check(family, Some(family))),
            (None, None) => None,
        };
        if let Some(check) = by_id
            && !matches!(answer(check).await, Ok(false))
        {
            return;
        }
        if let Some(subject) = &token.subject {
            let check = store.check_subject(subject, token.issued_at);
            if !matches!(answer(check).await, Ok(false)) {
                return;
            }
        }
    }
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
    fn forwarding_fields_are_known_by_any_spelling() {
        for name in [
            "x-forwarded-for",
            "X_Forwarded_Prefix",
            "x-forwarded",
            "X-FORWARDED-SSL",
            "forwarded",
            "x_real_ip",
            "True-Client-IP",
            "client_ip",
            "x-http-method-override",
            "X_Original_URL",
            "x-original-method",
        ] {
            assert!(forwarding_field(name.as_bytes()), "{name}");
        }
        for name in [
            "x-forwardedfor",
            "x-forward",
            "host",
            "cookie",
            "x-request-id",
            "",
        ] {
            assert!(!forwarding_field(name.as_bytes()), "{name}");
        }
    }

    proptest::proptest! {
        /// Case and `_` for `-` never change what a name is: the plain
        /// reading (lower case, `-` only) against the byte comparison.
        #[test]
        fn a_name_is_a_forwarding_field_whatever_its_spelling(
            name in "(x|X|-|_|forwarded|FORWARDED|for|real|ip|IP|client|true|original|url|method|override|http|a)*",
        ) {
            let plain = name.to_ascii_lowercase().replace('_', "-");
            let expected = plain == "x-forwarded"
                || plain.starts_with("x-forwarded-")
                || [
                    "forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "client-ip",
                    "x-original-url", "x-http-method-override", "x-http-method",
                    "x-original-method",
                ]
                .contains(&plain.as_str());
            if expected {
                proptest::prop_assert!(forwarding_field(name.as_bytes()), "{}", name);
            }
            proptest::prop_assert_eq!(
                forwarding_field(name.as_bytes()),
                forwarding_field(plain.as_bytes())
            );
        }
    }

    #[test]
    fn a_request_keeps_its_host_and_loses_identity_copies_and_trailer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Host, x-auth-roles, X-Secret"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("app.example"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("x_auth_roles", HeaderValue::from_static("admin"));
        headers.insert("x-auth_subject", HeaderValue::from_static("admin"));
        headers.insert("x-auth-spaces", HeaderValue::from_static("production"));
        headers.insert(header::TRAILER, HeaderValue::from_static("x-auth-roles"));
        remove_request_fields(&mut headers, &names(), false, true);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[header::HOST], "app.example");
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

    #[tokio::test]
    async fn a_tunnel_ends_when_its_subject_is_signed_out_everywhere() {
        use crate::store::MemoryRevocations;
        let store = MemoryRevocations::default();
        let token = TunnelToken {
            id: None,
            family: None,
            subject: Some("alice".to_owned()),
            issued_at: 1_000,
        };
        let every = Duration::from_millis(20);
        // Nothing revoked: the check goes on.
        let pending = tokio::time::timeout(
            Duration::from_millis(90),
            revoked(Some(&token), Some(&store), every),
        );
        assert!(pending.await.is_err(), "a live token's tunnel was closed");
        // Every token of alice issued until 2,000 is cut off: closed at the
        // next check.
        store
            .revoke_subject("alice", 2_000, u64::MAX / 2)
            .await
            .unwrap();
        let closed = tokio::time::timeout(
            Duration::from_secs(2),
            revoked(Some(&token), Some(&store), every),
        );
        assert!(
            closed.await.is_ok(),
            "a signed-out subject's tunnel stayed open"
        );
        // A token issued after the cut-off lives on.
        let later = TunnelToken {
            issued_at: 3_000,
            ..token
        };
        let pending = tokio::time::timeout(
            Duration::from_millis(90),
            revoked(Some(&later), Some(&store), every),
        );
        assert!(pending.await.is_err(), "a later token's tunnel was closed");
    }

    fn names() -> IdentityHeaders {
        IdentityHeaders {
            subject: HeaderName::from_static("x-auth-subject"),
            roles: HeaderName::from_static("x-auth-roles"),
            spaces: HeaderName::from_static("x-auth-spaces"),
            space: HeaderName::from_static("x-space"),
            claims: None,
        }
    }

    #[test]
    fn only_the_websocket_protocol_is_an_upgrade_to_tunnel() {
        let with = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::UPGRADE, HeaderValue::from_static(value));
            }
            headers
        };
        for websocket in [&["websocket"][..], &["WebSocket"], &[" websocket "]] {
            assert!(upgrade_is_websocket(&with(websocket)), "{websocket:?}");
            assert!(!upgrade_other_than_websocket(&with(websocket)));
        }
        for other in [
            &["h2c"][..],
            &["websocket, h2c"],
            &["websocket/13"],
            &["websocket", "websocket"],
            &["h2c", "websocket"],
            &["TLS/1.2"],
        ] {
            assert!(!upgrade_is_websocket(&with(other)), "{other:?}");
            assert!(upgrade_other_than_websocket(&with(other)), "{other:?}");
        }
        // No field, or an empty one (a front's unset variable), asks nothing.
        assert!(!upgrade_other_than_websocket(&with(&[])));
        assert!(!upgrade_other_than_websocket(&with(&[""])));
        assert!(!upgrade_is_websocket(&with(&[""])));
    }

    #[test]
    fn forwarded_fields_from_untrusted_peers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        headers.insert("x_forwarded_host", HeaderValue::from_static("evil"));
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        headers.insert(header::HOST, HeaderValue::from_static("app.example"));
        remove_request_fields(&mut headers, &names(), false, false);
        let https = HeaderValue::from_static("https");
        set_forwarded(
            &mut headers,
            Some("192.0.2.7".parse().unwrap()),
            false,
            &https,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(headers[X_FORWARDED_HOST], "app.example");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers.len(), 4, "{headers:?}");

        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.9"));
        remove_request_fields(&mut headers, &names(), false, true);
        set_forwarded(
            &mut headers,
            Some("10.0.0.1".parse().unwrap()),
            true,
            &https,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.1");
        assert_eq!(headers["x-real-ip"], "203.0.113.9");

        // An IPv4-mapped IPv6 peer is written as IPv4; IPv6 as usual.
        let mut headers = HeaderMap::new();
        set_forwarded(
            &mut headers,
            Some("::ffff:192.0.2.250".parse().unwrap()),
            false,
            &https,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "192.0.2.250");
        let mut headers = HeaderMap::new();
        set_forwarded(
            &mut headers,
            Some("2001:db8::7".parse().unwrap()),
            false,
            &https,
        );
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
