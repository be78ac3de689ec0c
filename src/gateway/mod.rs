//! The `authgate` gateway (feature `gateway`): the crate's layers composed
//! from one TOML file, so a service in any language can sit behind them.
//!
//! - **Login endpoints**: any of the five presets of [`schemes`](crate::schemes),
//!   each at its documented paths (under a prefix if configured), with users
//!   from a file of argon2 hashes ([`users_file`]), lockout, throttle, TOTP,
//!   service accounts, an identity provider's tokens through JWKS (feature
//!   `jwks`) and Redis (feature `redis`) when configured.
//! - **The guard**: [`IpFilterLayer`](crate::ip::IpFilterLayer),
//!   [`AuthLayer`](crate::auth::AuthLayer) (token cache, revocations,
//!   cookie renewal), [`CsrfLayer`](crate::csrf::CsrfLayer) and
//!   [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer), in that order,
//!   every refusal in one error format.
//! - **A forward-auth decision endpoint** (`/_authgate/verify`) for nginx
//!   `auth_request`, Caddy `forward_auth` and Traefik `ForwardAuth`: the
//!   original request is rebuilt from `X-Original-Method` / `X-Original-URI`
//!   or `X-Forwarded-Method` / `X-Forwarded-Uri` (and `X-Forwarded-Host`,
//!   `X-Forwarded-For`) sent by a trusted proxy and run through the guard;
//!   `200` carries the identity headers, a refusal is the guard's own
//!   `401` / `403`. A request from any other peer, or one that does not
//!   describe the original request exactly once, is refused: the endpoint
//!   never allows what it could not check. So is (`400`) one the proxy in
//!   front would pass on with an identity beside the one it copies: a copy
//!   of an identity header (the space header the client picks with
//!   excepted), another spelling of one, or a `Connection` or `Trailer`
//!   naming one or `Host`.
//! - **A reverse proxy** to one upstream ([`proxy`](self#the-proxy)):
//!   identity headers added, incoming copies removed under any spelling,
//!   hop-by-hop fields handled per RFC 9110 §7.6.1 (never `Host`), request
//!   trailers dropped, an untrusted peer's forwarding and client-address
//!   fields removed, bodies streamed, WebSocket upgrades (and no other)
//!   passed through and closed when their token expires or is revoked,
//!   `502` / `504` when the upstream is down or slow.
//! - **Bounds on what a client holds** ([`ConnectionLimits`]): the time to
//!   send a request head (from a connection's first moment), open
//!   connections in all and per client address, the time to send a login
//!   body, the life of a WebSocket.
//! - **TLS and HTTP/2**: TLS termination (`[server.tls]`, rustls, TLS 1.3
//!   and 1.2, ALPN `h2` and `http/1.1`, the certificate re-read on
//!   `SIGHUP`), HTTP/2 over TLS or with prior knowledge (`h2c`), and an
//!   upstream over TLS and/or HTTP/2 (gRPC's response trailers passed on).
//! - `/healthz`, graceful shutdown on `SIGTERM`, address rules, keys and the
//!   TLS certificate reloaded on `SIGHUP`, `tracing` output, and the crate's metrics in the
//!   Prometheus text format on a listener of their own ([`metrics_router`]).
//!
//! - **Risky configurations** (a public `/`, trusted proxies that cover
//!   every address, no lockout and no throttle, development mode or metrics
//!   off loopback, secrets others can read, an upstream loop) are found by
//!   [`Settings::risks`]; the binary starts with them only when
//!   `[server] accept_risks` names each ([`risks`]). Routes that would
//!   meet are configuration errors.
//!
//! The `authgate` binary reads the file ([`Settings::load`]), builds the
//! [`Gateway`] and serves it ([`serve_until_signalled`]). The guide
//! `docs/gateway.md` is the configuration reference.
//!
//! # The proxy
//!
//! Every request that is not a login endpoint, `/healthz` or the decision
//! endpoint goes through the guard to the upstream. Before the guard, a
//! request whose target has more than one reading, that is not in origin
//! form, that is a `CONNECT`, or whose `Host` is missing, repeated or
//! invalid is refused; only a plain path is public (the `target` module's
//! docs list the rules). The identity headers
//! (default `X-Auth-Subject`, `X-Auth-Roles`, `X-Auth-Spaces`, `X-Space`, and
//! the claims as JSON when configured) are stated only when every check has
//! left its mark in the request; otherwise the gateway answers `500` rather
//! than forward a request whose checks did not all run.
//!
//! Before that, in one pass over the request's field names (compared with
//! case ignored and `_` read as `-`, as CGI, WSGI and Rack upstreams read
//! them), the proxy removes:
//!
//! - every identity header under any spelling (`X_Auth_Roles`,
//!   `x-auth_subject`), on every route, guarded and public;
//! - the hop-by-hop fields (`Connection`, `Proxy-Connection`, `Keep-Alive`,
//!   `TE`, `Transfer-Encoding`, `Upgrade` unless a WebSocket handshake, and
//!   the fields `Connection` names except `Host`) and `Trailer`; the
//!   trailer frames of a chunked request body are dropped;
//! - from a peer that is not a trusted proxy, every forwarding and
//!   client-address field: every `X-Forwarded-*` and `X-Forwarded`,
//!   `Forwarded`, `X-Real-IP`, `True-Client-IP`, `X-Client-IP`,
//!   `Client-IP`, `X-Cluster-Client-IP`, `CF-Connecting-IP`,
//!   `Fastly-Client-IP`, `X-Originating-IP`, `X-Remote-IP`,
//!   `X-Remote-Addr`, `X-Original-URL`, `X-Original-URI`, `X-Rewrite-URL`,
//!   `X-Original-Host`, `X-Host`, `X-HTTP-Method-Override`,
//!   `X-HTTP-Method`, `X-Method-Override` and `X-Original-Method`.
//!
//! Then it sets `X-Forwarded-For` (the peer, appended to a trusted proxy's
//! chain), `X-Forwarded-Host` and `X-Forwarded-Proto` (kept from a trusted
//! proxy).

mod app;
mod config;
mod identity;
mod metrics;
mod proxy;
pub mod risks;
mod serve;
mod target;
mod tls;
mod upstream;
pub mod users_file;

pub use app::{BuildError, Gateway, ReloadHandle};
pub use config::{ConfigFileError, DEFAULT_LISTEN, DEFAULT_VERIFY_PATH, Settings};
pub use identity::GatewayClaims;
pub use metrics::metrics_router;
pub use risks::{Risk, RiskFinding};
pub use serve::{ConnectionLimits, serve, serve_until_signalled};
