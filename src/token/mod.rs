//! What a token is and how it is found and checked.
//!
//! - [`source`]: where a token is found in a request (bearer, cookie, header).
//! - [`keys`]: verifying and signing keys, each pinned to one algorithm.
//! - [`verifier`]: signature, registered claims, token kind, claims type.
//! - [`cache`]: the verifier's cache of tokens it verified.
//! - [`claims`]: what a verified token yields.

pub mod cache;
pub mod claims;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
pub mod keys;
mod payload;
pub mod source;
pub mod verifier;

pub use cache::TokenCache;
pub use claims::{
    Anonymous, Claims, FoundIn, SharedClaims, TokenKind, TokenKinds, TokenMeta, VerifiedToken,
};
pub use keys::{
    Algorithm, Jwk, KeySet, KeySource, MIN_RSA_BITS, SigningKey, VerifyingKey, algorithm_name,
};
pub use source::{FoundToken, MultipleCredentials, TokenSource, TokenSources};
pub use verifier::{Verified, Verifier, VerifierBuilder};
