//! Tower layers and axum extractors for HTTP API authentication.
//!
//! `tower-authgate` lets an axum or hyper service speak an existing product's
//! login API: JWTs found in a cookie, an `Authorization: Bearer` header or a
//! custom header, verified with pinned algorithms and keys that rotate by
//! `kid`, with claims handed to handlers through request extensions; the
//! tenant a request acts in; client-address filtering; and, on the issuer
//! side, the login endpoints of five real products' APIs.
//!
//! # Module map
//!
//! The crate has two floors. The **guard side** runs on every request and
//! builds with no feature at all (only tower, http and the crypto and serde
//! crates); the **issuer side** serves the login endpoints and sits on top of
//! it, behind default-on features. Nothing on the guard side imports the
//! issuer side.
//!
//! | module | floor | what it holds |
//! |---|---|---|
//! | [`clock`] | below both | [`now_seconds`](clock::now_seconds), the injectable [`Clock`](clock::Clock) |
//! | [`error`] | below both | [`ConfigError`], [`TokenError`] |
//! | [`observe`] | below both | the tracing events and metrics every decision emits (features `tracing`, `metrics`) |
//! | [`reject`] | guard | [`Rejection`]: why any layer refused, and [`OnRejection`](reject::OnRejection), how every refusal is rendered |
//! | [`token`] | guard | where a token is found ([`TokenSources`](token::TokenSources)), keys, the [`Verifier`](token::Verifier) and its token cache, [`VerifiedToken`](token::VerifiedToken) |
//! | [`auth`] | guard | [`AuthLayer`](auth::AuthLayer): verifies the token, checks revocation, renews an expired access cookie through [`RenewAccess`](auth::RenewAccess) |
//! | [`authz`] | guard | what a verified token may do: [`Grants`](authz::Grants) read through a [`GrantMapping`](authz::GrantMapping), [`Policy`](authz::Policy) values, [`RequireLayer`](authz::RequireLayer), method and path [`Rules`](authz::Rules) |
//! | [`tenant`] | guard | [`SelectSpaceLayer`](tenant::SelectSpaceLayer): the `X-Space` a request acts in, checked against the token's grants |
//! | [`csrf`] | guard | [`CsrfLayer`](csrf::CsrfLayer): cross-site requests carrying cookie credentials |
//! | [`ip`] | guard | [`IpFilterLayer`](ip::IpFilterLayer): allow and deny CIDR lists, the client address behind trusted proxies |
//! | [`cookie`] | guard | `Set-Cookie` attributes of session cookies |
//! | [`store`] | guard | every store trait (revocations, lockout counters, used TOTP steps), bounded in-memory stores, Redis (feature `redis`) |
//! | [`extract`] | guard (feature `axum`) | axum extractors: `Claims<C>`, `SharedClaims<C>`, `VerifiedToken`, `TokenMeta`, `Space`, `ClientIp`, `Authorized<P>` |
//! | `login` | issuer (feature `login`) | credentials ([`Authenticator`](crate::login::Authenticator)), minting and refresh ([`TokenIssuer`](crate::login::TokenIssuer)), the TOTP step, service accounts |
//! | `lockout`, `otp` | issuer (feature `login`) | failed-login lockout; RFC 6238 codes with a replay guard |
//! | `throttle` | issuer (feature `throttle`) | per-address throttling of login attempts |
//! | `schemes` | issuer (feature `presets`) | the five documented login APIs as routers |
//! | `gateway` | on both (feature `gateway`) | the `authgate` binary's parts: configuration file, login endpoints, forward-auth decision endpoint, reverse proxy |
//!
//! # Guides
//!
//! The package ships one guide per topic beside the README, under `docs/`:
//! `modules.md` (every module, layer and store), `demo.md` (the documented
//! APIs against the demo), `gateway.md` (the `authgate` binary, its
//! configuration and its fronts), `authorization.md` (claim mappings,
//! policies and rule tables of [`authz`]), `grpc.md` (a tonic service behind
//! the layers, refusals as gRPC statuses), `security.md` (what the layers and the
//! gateway refuse, remove and bound, with the defaults), `redis.md`,
//! `observability.md`, `performance.md` and `testing.md`.
//!
//! # What reads what
//!
//! Layers hand over through request extensions; extractors only read them.
//!
//! - `IpFilterLayer` puts [`ClientIp`](ip::ClientIp) in; the login throttle
//!   reads it (or the peer address).
//! - `AuthLayer` puts one [`VerifiedToken`](token::VerifiedToken) in (or
//!   [`Anonymous`](token::Anonymous) on an optional route); `CsrfLayer` reads
//!   where it was found, `SelectSpaceLayer` its grants, the extractors its claims.
//!   Each of them refuses (`500` naming the layer) when `AuthLayer` did not
//!   run before it, so a wrong order never skips a check.
//! - `SelectSpaceLayer` puts [`Space`](tenant::Space) in.
//!
//! In a `ServiceBuilder` the first layer listed is the outermost; in axum,
//! each `route_layer` call wraps the previous ones, so list them in reverse.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header};
//! use serde::Deserialize;
//! use tower::ServiceExt;
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::token::{Algorithm, Claims, KeySet, SigningKey, TokenSources, Verifier};
//!
//! #[derive(Clone, Deserialize)]
//! struct MyClaims {
//!     sub: String,
//! }
//!
//! async fn me(Claims(claims): Claims<MyClaims>) -> String {
//!     claims.sub
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key.verifying_key()))
//!     .issuer("my-service")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/api/me", get(me))
//!     .layer(AuthLayer::<MyClaims>::new(verifier).sources(TokenSources::bearer()));
//!
//! let exp = tower_authgate::clock::now_seconds() + 300;
//! let token = key.sign(&serde_json::json!({
//!     "sub": "admin", "iss": "my-service", "exp": exp, "usefor": "access"
//! }))?;
//! let request = Request::builder()
//!     .uri("/api/me")
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(request).await?.status(), StatusCode::OK);
//!
//! let anonymous = Request::builder().uri("/api/me").body(Body::empty())?;
//! assert_eq!(app.oneshot(anonymous).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unsafe_code, unreachable_pub)]
#![warn(
    clippy::all,
    clippy::dbg_macro,
    clippy::todo,
    clippy::mem_forget,
    clippy::unused_self,
    clippy::needless_continue,
    clippy::match_wildcard_for_single_variants,
    rust_2018_idioms,
    future_incompatible,
    nonstandard_style
)]

// Below everything: the clock, the DER reader and the boxed future.
pub mod clock;
mod der;
pub mod error;
mod future;
pub mod observe;

// The guard side: runs on every request, builds with no feature at all.
pub mod auth;
pub mod authz;
pub mod cookie;
pub mod csrf;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod ip;
pub mod reject;
pub mod store;
pub mod tenant;
pub mod token;

// The issuer side: login endpoints, behind default-on features.
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
#[cfg(feature = "login")]
#[cfg_attr(docsrs, doc(cfg(feature = "login")))]
pub mod lockout;
#[cfg(feature = "login")]
#[cfg_attr(docsrs, doc(cfg(feature = "login")))]
pub mod login;
#[cfg(feature = "login")]
#[cfg_attr(docsrs, doc(cfg(feature = "login")))]
pub mod otp;
#[cfg(feature = "presets")]
#[cfg_attr(docsrs, doc(cfg(feature = "presets")))]
pub mod schemes;
#[cfg(feature = "throttle")]
#[cfg_attr(docsrs, doc(cfg(feature = "throttle")))]
pub mod throttle;

pub use error::{ConfigError, SigningError, TokenError};
pub use reject::{AuthRejection, Rejection};

/// A boxed, `Send` future, as returned by the store, key-source and issuer
/// traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
