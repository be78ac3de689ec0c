//! Helpers shared by the integration tests: fixture keys, token minting, and
//! a real redis-server.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "tracing")]
pub mod capture;
#[cfg(feature = "presets")]
pub mod demo;
#[cfg(feature = "redis")]
pub mod redis;

use serde_json::{Value, json};
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, SigningKey};

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn key_pem(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A signing key for every supported algorithm, from the fixture PEM files.
pub fn signing_key(alg: Algorithm) -> SigningKey {
    let pem = |name| key_pem(name);
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            SigningKey::hmac(alg, SECRET).unwrap()
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => SigningKey::from_pem(alg, &pem("rsa_private")).unwrap(),
        Algorithm::ES256 => SigningKey::from_pem(alg, &pem("ec256_private")).unwrap(),
        Algorithm::ES384 => SigningKey::from_pem(alg, &pem("ec384_private")).unwrap(),
        Algorithm::EdDSA => SigningKey::from_pem(alg, &pem("ed25519_private")).unwrap(),
        _ => unreachable!("no fixture for {alg:?}"),
    }
}

pub const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Claims of a valid access token for `sub`, expiring in five minutes.
pub fn access_claims(sub: &str) -> Value {
    let now = now_seconds();
    json!({"sub": sub, "iat": now, "exp": now + 300, "jti": format!("jti-{sub}-{now}"), "usefor": "access"})
}

/// Merges `changes` into `base` (a `null` removes the claim).
pub fn with(mut base: Value, changes: Value) -> Value {
    let map = base.as_object_mut().expect("object");
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header and payload text, HMAC-signed with `secret`.
pub fn raw_hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        message.as_bytes(),
    );
    format!("{message}.{}", b64(tag.as_ref()))
}
