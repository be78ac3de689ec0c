//! [`SigningKey`]: a private key that signs tokens, with its public half
//! for verification and publication.

use std::fmt;

use aws_lc_rs::signature as lc;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::Jwk;

use crate::error::{ConfigError, SigningError};

use super::verifying::{invalid_key, rsa_params};
use super::{Algorithm, VerifyingKey, algorithm_name};

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
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| SigningError(err.to_string()))
    }
}
