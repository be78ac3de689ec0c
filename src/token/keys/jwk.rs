//! Keys from JSON Web Keys (RFC 7517): one JWK, or a JWK Set document.

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};

use crate::error::ConfigError;

use super::{Algorithm, KeySet, VerifyingKey};

impl VerifyingKey {
    /// A key from a JWK. The algorithm comes from the JWK's `alg`; without
    /// one it is inferred only where the key type leaves no choice (`EC`
    /// P-256 → `ES256`, P-384 → `ES384`, `OKP` Ed25519 → `EdDSA`). The
    /// JWK's `kid` becomes the key's `kid`. A key marked `"use": "enc"` is
    /// refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(ConfigError::InvalidJwk("the key is for encryption".into()));
        }
        let algorithm = match jwk.common.key_algorithm {
            Some(alg) => Algorithm::try_from(alg)
                .map_err(|_| ConfigError::InvalidJwk(format!("unsupported alg {alg}")))?,
            None => infer_algorithm(&jwk.algorithm)?,
        };
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| ConfigError::InvalidJwk(e.to_string()))?;
        let key = Self::from_decoding_key(algorithm, &decoding)?;
        Ok(match &jwk.common.key_id {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        })
    }

    /// A key from the JSON text of one JWK.
    pub fn from_jwk_json(json: &str) -> Result<Self, ConfigError> {
        let jwk: Jwk =
            serde_json::from_str(json).map_err(|e| ConfigError::InvalidJwk(e.to_string()))?;
        Self::from_jwk(&jwk)
    }
}

fn infer_algorithm(params: &AlgorithmParameters) -> Result<Algorithm, ConfigError> {
    use jsonwebtoken::jwk::EllipticCurve;
    match params {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Ok(Algorithm::ES256),
            EllipticCurve::P384 => Ok(Algorithm::ES384),
            _ => Err(ConfigError::InvalidJwk("unsupported curve".into())),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Ok(Algorithm::EdDSA)
        }
        _ => Err(ConfigError::InvalidJwk(
            "the JWK has no alg and its key type does not fix one".into(),
        )),
    }
}

/// The reason a symmetric key is skipped in a set of public keys.
pub(crate) const SECRET_IN_PUBLIC_SET: &str =
    "a symmetric (oct) key in a public key set: anyone who reads the set could mint tokens";

impl KeySet {
    /// The public keys of a JWK Set document (`{"keys":[…]}`), as an
    /// identity provider publishes them.
    ///
    /// Keys that cannot verify signatures here (encryption keys, unknown key
    /// types or curves) are skipped, and so is every symmetric (`oct`) key:
    /// a secret in a published set lets anyone who reads it mint tokens.
    /// The set must keep at least one key. A set of secrets of the
    /// application's own is read with
    /// [`from_secret_jwks_json`](Self::from_secret_jwks_json).
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        Self::non_empty(Self::from_jwks_json_lenient(json)?.0)
    }

    /// Like [`from_jwks_json`](Self::from_jwks_json), but an empty result is
    /// allowed, and the reasons keys were skipped are returned.
    pub fn from_jwks_json_lenient(json: &str) -> Result<(Self, Vec<String>), ConfigError> {
        Self::parse_jwks(json, false)
    }

    /// The keys of a JWK Set the application keeps itself, secrets
    /// (`oct`, HMAC) included: never for a set fetched from elsewhere.
    pub fn from_secret_jwks_json(json: &str) -> Result<Self, ConfigError> {
        Self::non_empty(Self::parse_jwks(json, true)?.0)
    }

    fn non_empty(keys: Self) -> Result<Self, ConfigError> {
        if keys.keys().is_empty() {
            return Err(ConfigError::EmptyKeySet);
        }
        Ok(keys)
    }

    fn parse_jwks(json: &str, secrets: bool) -> Result<(Self, Vec<String>), ConfigError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| ConfigError::InvalidJwk(e.to_string()))?;
        let mut keys: Vec<VerifyingKey> = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.as_deref().unwrap_or("(no kid)");
            if !secrets && matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                skipped.push(format!("{kid}: {SECRET_IN_PUBLIC_SET}"));
                continue;
            }
            match VerifyingKey::from_jwk(jwk) {
                Ok(key)
                    if key
                        .kid()
                        .is_some_and(|k| keys.iter().any(|o| o.kid() == Some(k))) =>
                {
                    skipped.push(format!("{kid}: a second key with this kid"));
                }
                Ok(key) => keys.push(key),
                Err(err) => skipped.push(format!("{kid}: {err}")),
            }
        }
        Ok((KeySet::from_keys(keys), skipped))
    }
}
