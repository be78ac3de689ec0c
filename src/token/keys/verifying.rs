//! [`VerifyingKey`]: a key that verifies signatures of exactly one
//! algorithm, prepared once (the HMAC key schedule, the parsed public key).

use std::fmt;

use aws_lc_rs::{hmac, signature as lc};
use jsonwebtoken::{DecodingKey, DecodingKeyKind};

use crate::error::ConfigError;

use super::{Algorithm, algorithm_name};

pub(super) fn hmac_params(alg: Algorithm) -> Option<(hmac::Algorithm, usize)> {
    match alg {
        Algorithm::HS256 => Some((hmac::HMAC_SHA256, 32)),
        Algorithm::HS384 => Some((hmac::HMAC_SHA384, 48)),
        Algorithm::HS512 => Some((hmac::HMAC_SHA512, 64)),
        _ => None,
    }
}

pub(super) fn rsa_params(alg: Algorithm) -> Option<&'static lc::RsaParameters> {
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

pub(super) fn invalid_key(alg: Algorithm, reason: impl fmt::Display) -> ConfigError {
    ConfigError::InvalidKey {
        algorithm: algorithm_name(alg).to_owned(),
        reason: reason.to_string(),
    }
}

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// Refuses an RSA key whose modulus is shorter than [`MIN_RSA_BITS`] when it
/// is loaded: every token it signed would fail as a bad signature.
fn check_rsa_modulus(algorithm: Algorithm, modulus: Option<&[u8]>) -> Result<(), ConfigError> {
    let modulus = modulus.ok_or_else(|| invalid_key(algorithm, "the RSA key does not parse"))?;
    let significant = match modulus.iter().position(|&b| b != 0) {
        Some(first) => &modulus[first..],
        None => &[],
    };
    let bits = significant.first().map_or(0, |&top| {
        (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(invalid_key(
            algorithm,
            format!("the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    Ok(())
}

/// The modulus of a DER `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`,
/// RFC 8017 §A.1.1), or `None` when it is not one.
fn rsa_der_modulus(der: &[u8]) -> Option<&[u8]> {
    let (sequence, _) = crate::der::element(der, 0x30)?;
    let (modulus, _) = crate::der::element(sequence, 0x02)?;
    Some(modulus)
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
    pub(super) fn from_decoding_key(
        algorithm: Algorithm,
        key: &DecodingKey,
    ) -> Result<Self, ConfigError> {
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
                if rsa_params(algorithm).is_some() {
                    check_rsa_modulus(algorithm, rsa_der_modulus(der))?;
                }
                lc::ParsedPublicKey::new(params, der).map_err(|e| invalid_key(algorithm, e))?
            }
            (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
                let params = rsa_params(algorithm)
                    .ok_or_else(|| invalid_key(algorithm, "RSA components for a non-RSA key"))?;
                check_rsa_modulus(algorithm, Some(n.as_slice()))?;
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
