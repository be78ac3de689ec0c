//! Errors: configuration errors raised when a layer or key is built, and the
//! rejection every layer turns into an HTTP answer.

use std::fmt;

use http::{HeaderValue, Response, StatusCode, header};

/// A configuration value was refused when a key, verifier or layer was built.
///
/// Configuration is validated once, at build time, never per request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An HMAC secret is shorter than the hash output of its algorithm
    /// (RFC 7518 §3.2).
    #[error("HMAC secret for {algorithm} is {len} bytes; at least {min} are required")]
    WeakSecret {
        /// The algorithm the secret was meant for.
        algorithm: &'static str,
        /// The length that was given.
        len: usize,
        /// The minimum length for the algorithm.
        min: usize,
    },
    /// A key could not be parsed or does not fit its algorithm.
    #[error("invalid {algorithm} key: {reason}")]
    InvalidKey {
        /// The algorithm the key was meant for.
        algorithm: String,
        /// Why it was refused.
        reason: String,
    },
    /// A JWK or JWK Set document could not be used.
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    /// A key set contains no key.
    #[error("a key set needs at least one key")]
    EmptyKeySet,
    /// Two keys in one set share a `kid`.
    #[error("two keys share the kid {0:?}")]
    DuplicateKid(String),
    /// A list of token sources is empty.
    #[error("at least one token source is required")]
    NoTokenSource,
    /// A header or cookie name is not a valid token.
    #[error("invalid name {0:?} for a header or cookie")]
    InvalidName(String),
    /// A value that goes into a response header (realm, cookie attribute) holds
    /// characters that would break the header.
    #[error("invalid value {0:?}: only visible ASCII without quotes or backslashes is allowed")]
    InvalidHeaderValue(String),
    /// Any other invalid setting, named by its message.
    #[error("{0}")]
    Invalid(String),
}

/// Why a token was refused by the [`Verifier`](crate::token::Verifier).
///
/// Each variant renders as a short `error_description` in the
/// `WWW-Authenticate` header (RFC 6750 §3); none of them reveals key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the configured cap.
    #[error("the token is too long")]
    TooLong,
    /// The token is not three base64url segments of JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The header lists a `crit` extension this verifier does not understand.
    #[error("the token requires an unsupported critical extension")]
    UnsupportedCritical,
    /// No configured key takes the token's `alg` (this covers `none`).
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The token names a `kid` that is not in the key set.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// A required claim is absent.
    #[error("the token lacks a required claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an invalid value.
    #[error("the token has an invalid claim")]
    InvalidClaim(&'static str),
    /// A claim name appears twice in the token.
    #[error("the token repeats a claim")]
    DuplicateClaim,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not one of the accepted issuers.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not name this service.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// The token is meant for another use (a refresh token sent as an access
    /// token, for example).
    #[error("the token is of the wrong kind")]
    WrongKind,
    /// The token was revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// The token's claims do not fit the application's claims type.
    #[error("the token's claims are not accepted")]
    ClaimsMismatch,
    /// The keys come from a remote source that cannot be trusted now (never
    /// fetched, or staler than allowed): the token cannot be judged.
    #[error("the signing keys are unavailable")]
    KeysUnavailable,
}

/// Why a request was refused by a layer of this crate.
///
/// Every rejection is a complete HTTP answer: see [`status`](Self::status),
/// [`body_text`](Self::body_text) and [`to_response`](Self::to_response).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No credential was sent to a route that requires one: `401` with a bare
    /// `WWW-Authenticate: Bearer realm="…"` challenge (RFC 6750 §3.1).
    MissingToken,
    /// The request itself is malformed (two credentials at once, a repeated
    /// cookie, an oversized header): `400` with `error="invalid_request"`.
    InvalidRequest(&'static str),
    /// A credential was sent and refused: `401` with `error="invalid_token"`.
    InvalidToken(TokenError),
    /// The credential is valid but does not grant what was asked: `403` with
    /// `error="insufficient_scope"`.
    Forbidden(&'static str),
    /// A store needed to decide (revocations) cannot be reached and the
    /// layer fails closed: `503` with `Retry-After`.
    Unavailable,
}

impl AuthRejection {
    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code, if the answer carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::Unavailable => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::Forbidden(_) => Some("insufficient_scope"),
        }
    }

    /// A short human-readable description.
    pub fn description(&self) -> String {
        match self {
            Self::MissingToken => "authentication is required".to_owned(),
            Self::Unavailable => "authentication is temporarily unavailable".to_owned(),
            Self::InvalidRequest(why) | Self::Forbidden(why) => (*why).to_owned(),
            Self::InvalidToken(err) => err.to_string(),
        }
    }

    /// The JSON body of the default answer:
    /// `{"error":"…","error_description":"…"}`.
    pub fn body_text(&self) -> String {
        let body = serde_json::json!({
            "error": self.error_code().unwrap_or(match self {
                Self::Unavailable => "temporarily_unavailable",
                _ => "unauthorized",
            }),
            "error_description": self.description(),
        });
        body.to_string()
    }

    /// The `WWW-Authenticate` challenge for this rejection.
    pub fn challenge(&self, realm: &str) -> HeaderValue {
        let text = match self.error_code() {
            None => format!("Bearer realm=\"{realm}\""),
            Some(code) => format!(
                "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{}\"",
                self.description()
            ),
        };
        // `realm` is validated when the layer is built and descriptions are
        // fixed ASCII text, so this cannot fail; fall back to a bare challenge
        // rather than panic all the same.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer"))
    }

    /// Renders the default answer: status, `WWW-Authenticate`, `Cache-Control:
    /// no-store` and a JSON body.
    pub fn to_response<B: From<String>>(&self, realm: &str) -> Response<B> {
        let mut response = Response::new(B::from(self.body_text()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        if *self == Self::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else {
            headers.insert(header::WWW_AUTHENTICATE, self.challenge(realm));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for AuthRejection {}

impl From<TokenError> for AuthRejection {
    fn from(err: TokenError) -> Self {
        match err {
            // Not the token's fault: answer 503, as for an unreachable store.
            TokenError::KeysUnavailable => Self::Unavailable,
            err => Self::InvalidToken(err),
        }
    }
}

/// Checks that `value` can sit inside a quoted-string of a response header.
pub(crate) fn check_quoted_value(value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidHeaderValue(value.to_owned()))
    }
}
