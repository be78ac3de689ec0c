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

use std::fmt;

use aws_lc_rs::{hmac, signature as lc};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, DecodingKeyKind, EncodingKey};

use crate::error::ConfigError;

pub use jsonwebtoken::Algorithm;

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

fn hmac_params(alg: Algorithm) -> Option<(hmac::Algorithm, usize)> {
    match alg {
        Algorithm::HS256 => Some((hmac::HMAC_SHA256, 32)),
        Algorithm::HS384 => Some((hmac::HMAC_SHA384, 48)),
        Algorithm::HS512 => Some((hmac::HMAC_SHA512, 64)),
        _ => None,
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static lc::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&lc::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&lc::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&lc::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&lc::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&lc::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&lc::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn public_params(alg: Algorithm) -> Option<&'static dyn lc::VerificationAlgorithm> {
    if let Some(rsa) = rsa_params(alg) {
        return Some(rsa);
    }
    match alg {
        Algorithm::ES256 => Some(&lc::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&lc::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Some(&lc::ED25519),
        _ => None,
    }
}

fn invalid_key(alg: Algorithm, reason: impl fmt::Display) -> ConfigError {
    ConfigError::InvalidKey {
        algorithm: algorithm_name(alg).to_owned(),
        reason: reason.to_string(),
    }
}

// Lives once behind the key's `Arc`: the size difference costs nothing, and
// boxing the HMAC key would add an indirection to every verification.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Hmac(hmac::Key),
    Public(lc::ParsedPublicKey),
}

/// A key that verifies signatures of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    inner: std::sync::Arc<VerifyingKeyInner>,
}

struct VerifyingKeyInner {
    algorithm: Algorithm,
    kid: Option<Box<str>>,
    prepared: Prepared,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &algorithm_name(self.inner.algorithm))
            .field("kid", &self.inner.kid)
            .field("material", &"REDACTED")
            .finish()
    }
}

impl VerifyingKey {
    fn new(algorithm: Algorithm, prepared: Prepared) -> Self {
        VerifyingKey {
            inner: std::sync::Arc::new(VerifyingKeyInner {
                algorithm,
                kid: None,
                prepared,
            }),
        }
    }

    /// An HMAC key (`HS256`, `HS384`, `HS512`).
    ///
    /// The secret must be at least as long as the hash output (32, 48 or 64
    /// bytes, RFC 7518 §3.2); shorter secrets are refused.
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        let (lc_alg, min) = hmac_params(algorithm)
            .ok_or_else(|| invalid_key(algorithm, "not an HMAC algorithm"))?;
        if secret.len() < min {
            return Err(ConfigError::WeakSecret {
                algorithm: algorithm_name(algorithm),
                len: secret.len(),
                min,
            });
        }
        Ok(Self::new(
            algorithm,
            Prepared::Hmac(hmac::Key::new(lc_alg, secret)),
        ))
    }

    /// A public key in PEM form (`RS*`/`PS*`: RSA, `ES*`: EC, `EdDSA`:
    /// Ed25519).
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let key = if rsa_params(algorithm).is_some() {
            DecodingKey::from_rsa_pem(pem)
        } else {
            match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                _ => return Err(invalid_key(algorithm, "PEM keys are for RSA, EC and EdDSA")),
            }
        }
        .map_err(|e| invalid_key(algorithm, e))?;
        Self::from_decoding_key(algorithm, &key)
    }

    /// A key from a `jsonwebtoken` [`DecodingKey`], pinned to `algorithm`.
    pub fn from_decoding_key(algorithm: Algorithm, key: &DecodingKey) -> Result<Self, ConfigError> {
        if key.family() != algorithm.family() {
            return Err(invalid_key(
                algorithm,
                "the key is of another algorithm family",
            ));
        }
        let prepared = match (key.kind(), hmac_params(algorithm)) {
            (DecodingKeyKind::SecretOrDer(secret), Some(_)) => {
                return Self::hmac(algorithm, secret);
            }
            (DecodingKeyKind::SecretOrDer(der), None) => {
                let params = public_params(algorithm)
                    .ok_or_else(|| invalid_key(algorithm, "unsupported"))?;
                lc::ParsedPublicKey::new(params, der).map_err(|e| invalid_key(algorithm, e))?
            }
            (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
                let params = rsa_params(algorithm)
                    .ok_or_else(|| invalid_key(algorithm, "RSA components for a non-RSA key"))?;
                lc::RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .map_err(|e| invalid_key(algorithm, e))?
            }
        };
        Ok(Self::new(algorithm, Prepared::Public(prepared)))
    }

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

    /// This key, identified by `kid`.
    pub fn with_kid(self, kid: impl Into<String>) -> Self {
        let kid: String = kid.into();
        let inner =
            std::sync::Arc::try_unwrap(self.inner).unwrap_or_else(|shared| VerifyingKeyInner {
                algorithm: shared.algorithm,
                kid: shared.kid.clone(),
                prepared: match &shared.prepared {
                    Prepared::Hmac(key) => Prepared::Hmac(key.clone()),
                    Prepared::Public(key) => Prepared::Public(key.clone()),
                },
            });
        VerifyingKey {
            inner: std::sync::Arc::new(VerifyingKeyInner {
                kid: Some(kid.into_boxed_str()),
                ..inner
            }),
        }
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.inner.kid.as_deref()
    }

    /// Whether `signature` is a valid signature of `message` under this key.
    /// HMAC tags are compared in constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner.prepared {
            Prepared::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Prepared::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
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

/// The keys a verifier accepts.
///
/// A token with a `kid` is checked only against the key of that `kid`; a
/// token without one against the keys of its algorithm that have no `kid`,
/// or, when every key has one, against every key of its algorithm. Add the
/// new key beside the old one to rotate, and remove the old one when its
/// tokens have expired.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: std::sync::Arc<[VerifyingKey]>,
}

impl KeySet {
    /// A key set with no key (a remote source before its first fetch).
    #[cfg(feature = "jwks")]
    pub(crate) fn empty() -> Self {
        KeySet {
            keys: std::sync::Arc::from(Vec::new()),
        }
    }

    /// A key set of one key.
    pub fn single(key: VerifyingKey) -> Self {
        KeySet {
            keys: std::sync::Arc::from(vec![key]),
        }
    }

    /// A key set of several keys; `kid`s must be distinct.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, ConfigError> {
        let keys: Vec<VerifyingKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(ConfigError::EmptyKeySet);
        }
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid()
                && keys[..i].iter().any(|other| other.kid() == Some(kid))
            {
                return Err(ConfigError::DuplicateKid(kid.to_owned()));
            }
        }
        Ok(KeySet {
            keys: std::sync::Arc::from(keys),
        })
    }

    /// The keys of a JWK Set document (`{"keys":[…]}`).
    ///
    /// Keys that cannot verify signatures here (encryption keys, unknown key
    /// types or curves) are skipped; the set must keep at least one key.
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        let (keys, _skipped) = Self::from_jwks_json_lenient(json)?;
        if keys.keys.is_empty() {
            return Err(ConfigError::EmptyKeySet);
        }
        Ok(keys)
    }

    /// Like [`from_jwks_json`](Self::from_jwks_json), but an empty result is
    /// allowed, and the reasons keys were skipped are returned.
    pub fn from_jwks_json_lenient(json: &str) -> Result<(Self, Vec<String>), ConfigError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| ConfigError::InvalidJwk(e.to_string()))?;
        let mut keys: Vec<VerifyingKey> = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.as_deref().unwrap_or("(no kid)");
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
        Ok((
            KeySet {
                keys: std::sync::Arc::from(keys),
            },
            skipped,
        ))
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The keys that may verify a token with this `alg` and `kid`.
    pub(crate) fn candidates<'a>(
        &'a self,
        alg: &'a str,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        let any_without_kid = kid.is_none() && self.keys.iter().any(|k| k.kid().is_none());
        self.keys.iter().filter(move |key| {
            algorithm_name(key.algorithm()) == alg
                && match kid {
                    Some(kid) => key.kid() == Some(kid),
                    None => !any_without_kid || key.kid().is_none(),
                }
        })
    }

    /// Whether a key with this `kid` exists.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }
}

/// Keys that live elsewhere and change: a JWK Set an identity provider
/// publishes, fetched and cached by [`JwksSource`](crate::token::jwks::JwksSource)
/// (feature `jwks`), or any source of the application's.
///
/// The verifier asks [`current`](Self::current) on every token, so it must be
/// cheap (an `Arc` clone of a cached set); fetching happens elsewhere.
pub trait KeySource: Send + Sync + 'static {
    /// The keys in force, or [`TokenError::KeysUnavailable`](crate::TokenError::KeysUnavailable)
    /// when none can be trusted (never fetched, or older than allowed).
    fn current(&self) -> Result<std::sync::Arc<KeySet>, crate::TokenError>;

    /// Called when a token names a `kid` the current keys lack: a future
    /// that refetches the keys (shared by concurrent callers), or `None` when
    /// a refetch is not allowed yet (so random `kid`s cannot cause a storm).
    fn refresh_for_unknown_key(&self) -> Option<crate::BoxFuture<'static, ()>>;

    /// A number that changes whenever the key set changes, so that caches
    /// of verified tokens can be emptied (default: never changes).
    fn generation(&self) -> u64 {
        0
    }
}

/// Where a verifier's keys come from.
#[derive(Clone)]
pub(crate) enum KeyStore {
    Static(KeySet),
    Source(std::sync::Arc<dyn KeySource>),
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStore::Static(keys) => keys.fmt(f),
            KeyStore::Source(_) => f.write_str("KeySource"),
        }
    }
}

/// A private key that signs tokens, with its public half for verification
/// and publication.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: Algorithm,
    kid: Option<String>,
    encoding: EncodingKey,
    verifying: VerifyingKey,
    public_jwk: Option<Jwk>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &algorithm_name(self.algorithm))
            .field("kid", &self.kid)
            .field("material", &"REDACTED")
            .finish()
    }
}

impl SigningKey {
    /// An HMAC signing key; the secret has the same length rules as
    /// [`VerifyingKey::hmac`].
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        let verifying = VerifyingKey::hmac(algorithm, secret)?;
        Ok(SigningKey {
            algorithm,
            kid: None,
            encoding: EncodingKey::from_secret(secret),
            verifying,
            public_jwk: None,
        })
    }

    /// A private key in PKCS#8 (or, for RSA, PKCS#1) PEM form.
    pub fn from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let encoding = if rsa_params(algorithm).is_some() {
            EncodingKey::from_rsa_pem(pem)
        } else {
            match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                _ => return Err(invalid_key(algorithm, "PEM keys are for RSA, EC and EdDSA")),
            }
        }
        .map_err(|e| invalid_key(algorithm, e))?;
        Self::from_encoding_key(algorithm, encoding)
    }

    /// A fresh Ed25519 key (`EdDSA`), for keys that live as long as the
    /// process: every token it signed stops verifying when the process ends.
    pub fn generate_ed25519() -> Result<Self, ConfigError> {
        let pkcs8 = lc::Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(|e| invalid_key(Algorithm::EdDSA, e))?;
        Self::from_encoding_key(Algorithm::EdDSA, EncodingKey::from_ed_der(pkcs8.as_ref()))
    }

    /// A fresh P-256 key (`ES256`).
    pub fn generate_es256() -> Result<Self, ConfigError> {
        let pkcs8 = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(|e| invalid_key(Algorithm::ES256, e))?;
        Self::from_encoding_key(Algorithm::ES256, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn from_encoding_key(algorithm: Algorithm, encoding: EncodingKey) -> Result<Self, ConfigError> {
        let jwk =
            Jwk::from_encoding_key(&encoding, algorithm).map_err(|e| invalid_key(algorithm, e))?;
        let verifying = VerifyingKey::from_jwk(&jwk)?;
        Ok(SigningKey {
            algorithm,
            kid: None,
            encoding,
            verifying,
            public_jwk: Some(jwk),
        })
    }

    /// This key, identified by `kid` (written into every token it signs).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        self.verifying = self.verifying.with_kid(kid.clone());
        if let Some(jwk) = &mut self.public_jwk {
            jwk.common.key_id = Some(kid.clone());
        }
        self.kid = Some(kid);
        self
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for
    /// EdDSA and ECDSA keys, so a generated key can be stored and shared by
    /// several instances; `None` for HMAC and RSA keys. Keep the text secret.
    pub fn to_pkcs8_pem(&self) -> Option<String> {
        use base64::Engine as _;
        if !matches!(
            self.algorithm,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::ES384
        ) {
            return None;
        }
        let body = base64::engine::general_purpose::STANDARD.encode(self.encoding.as_bytes());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Some(pem)
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }

    /// The public key as a JWK, for a `/.well-known/jwks.json` document;
    /// `None` for HMAC keys, which must never be published.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// Signs `claims` into a compact JWT whose header carries this key's
    /// algorithm and `kid`.
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}
