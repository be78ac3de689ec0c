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
//!   never allows what it could not check.
//! - **A reverse proxy** to one upstream ([`proxy`](self#the-proxy)):
//!   identity headers added, incoming copies removed, hop-by-hop fields
//!   handled per RFC 9110 §7.6.1, bodies streamed, WebSocket upgrades
//!   passed through, `502` / `504` when the upstream is down or slow.
//! - `/healthz`, graceful shutdown on `SIGTERM`, address rules and keys
//!   reloaded on `SIGHUP`, `tracing` output, and the crate's metrics in the
//!   Prometheus text format on a listener of their own ([`metrics_router`]).
//!
//! The `authgate` binary reads the file ([`Settings::load`]), builds the
//! [`Gateway`] and serves it ([`serve_until_signalled`]). The README's
//! Gateway section is the configuration reference.
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

mod app;
mod config;
mod identity;
mod metrics;
mod proxy;
mod serve;
mod target;
mod upstream;
pub mod users_file;

pub use app::{BuildError, Gateway, ReloadHandle};
pub use config::{ConfigFileError, DEFAULT_LISTEN, DEFAULT_VERIFY_PATH, Settings};
pub use identity::GatewayClaims;
pub use metrics::metrics_router;
pub use serve::{serve, serve_until_signalled};
