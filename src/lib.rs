//! Tower layers and axum extractors for HTTP API authentication.
//!
//! `tower-authgate` lets an axum or hyper service speak an existing product's
//! login API: JWTs found in a cookie, an `Authorization: Bearer` header or a
//! custom header, verified with pinned algorithms and keys that rotate by
//! `kid`, with claims handed to handlers through request extensions.
//!
//! - [`token`]: token sources, keys, the [`Verifier`](token::Verifier).
//! - [`auth`]: [`AuthLayer`](auth::AuthLayer), the verifying middleware.
//! - [`extract`] (feature `axum`): the `Claims<C>` extractor.
//!
//! # Example with axum
//!
//! ```
//! use axum::{Router, routing::get};
//! use serde::{Deserialize, Serialize};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::token::{Algorithm, Claims, KeySet, TokenSources, Verifier, VerifyingKey};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct MyClaims {
//!     sub: String,
//! }
//!
//! async fn me(Claims(claims): Claims<MyClaims>) -> String {
//!     claims.sub
//! }
//!
//! # fn main() -> Result<(), tower_authgate::ConfigError> {
//! let key = VerifyingKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key)).issuer("my-service").build()?;
//! let app: Router = Router::new()
//!     .route("/api/me", get(me))
//!     .layer(AuthLayer::<MyClaims>::new(verifier).sources(TokenSources::bearer()));
//! # let _ = app;
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

// Below everything: the clock and the boxed future.
pub mod clock;
pub mod error;
mod future;

// The guard side: runs on every request, builds with no feature at all.
pub mod auth;
pub mod cookie;
pub mod csrf;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod ip;
pub mod store;
pub mod tenant;
pub mod token;

// The issuer side: login endpoints, behind default-on features.
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

pub use error::{AuthRejection, ConfigError, TokenError};

/// A boxed, `Send` future, as returned by the store, key-source and issuer
/// traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
