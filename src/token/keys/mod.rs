//! Keys: each verifying key pins one algorithm, and a [`KeySet`] picks among
//! several by `kid` so keys can rotate.
//!
//! A token's `alg` header never chooses the algorithm: a key verifies only the
//! tokens whose `alg` equals the algorithm it was built for, so `alg: none`,
//! an HMAC token checked against an RSA public key (algorithm confusion) and
//! every other mismatch are refused before any cryptography runs.
//!
//! Keys are prepared once, when they are built (the HMAC key schedule, the
//! parsed public key), so verification does no key set-up per request.
//!
//! - [`VerifyingKey`] (`verifying`): one public key or HMAC secret, pinned
//!   to one algorithm, prepared once.
//! - `jwk`: keys from a JWK or a JWK Set document.
//! - [`KeySet`] (`set`): the keys a verifier accepts, chosen by `kid`.
//! - [`KeySource`] (`source`): keys that live elsewhere and change.
//! - [`SigningKey`] (`signing`): a private key that mints tokens.

mod jwk;
mod set;
mod signing;
mod source;
mod verifying;

pub use jsonwebtoken::Algorithm;
/// A JSON Web Key (RFC 7517), as `jsonwebtoken` models it: what
/// [`VerifyingKey::from_jwk`] reads and [`SigningKey::public_jwk`] publishes.
pub use jsonwebtoken::jwk::Jwk;
pub use set::KeySet;
pub use signing::SigningKey;
pub use source::KeySource;
pub(crate) use source::KeyStore;
pub use verifying::{MIN_RSA_BITS, VerifyingKey};

/// The JOSE name of an algorithm (`"HS256"`, `"EdDSA"`, …).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}
