//! Errors: configuration errors raised when a layer or key is built, and
//! why a token was refused. Why a request was refused is in
//! [`reject`](crate::reject).

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
    /// A verifier was told to accept no token kind at all.
    #[error("a verifier must accept at least one token kind")]
    NoTokenKind,
    /// The claim that names a token's kind was given an empty name.
    #[error("the claim that names a token's kind needs a name")]
    EmptyKindClaim,
    /// An entry of an address list is neither a CIDR block nor an address.
    #[error("not a CIDR block or an IP address: {0:?}")]
    InvalidCidr(String),
    /// A trusted origin is not `scheme://host[:port]`.
    #[error("a trusted origin is scheme://host[:port], not {0:?}")]
    InvalidOrigin(String),
    /// A space name is empty, too long, or has characters outside
    /// `[A-Za-z0-9_.-]`.
    #[error(
        "invalid space name {0:?}: 1 to the maximum length of [A-Za-z0-9_.-], not starting with a dot"
    )]
    InvalidSpaceName(String),
    /// A URL to fetch from is not an `http` or `https` URL.
    #[error("not an http(s) URL: {0:?}")]
    InvalidUrl(String),
    /// The HTTP client for remote keys could not be built.
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
    /// A function that starts background work was called outside a Tokio
    /// runtime.
    #[error("`{0}` must be called inside a Tokio runtime")]
    NoRuntime(&'static str),
    /// `__Host-` cookie names were asked for cookies that are not `Secure`
    /// with `Path=/` (RFC 6265bis §4.1.3.2).
    #[error("`__Host-` cookies must be Secure with Path=/")]
    HostPrefixNeedsSecure,
    /// A throttle was given a rate of zero attempts.
    #[error("a throttle needs at least one attempt per minute")]
    NoAttemptsAllowed,
    /// A TOTP secret is not valid base32, or too short to make codes.
    #[error("unusable TOTP secret: {0}")]
    InvalidTotpSecret(String),
    /// TOTP parameters out of range.
    #[error("TOTP needs 6 to 8 digits and a non-zero period")]
    InvalidTotpParameters,
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHashing(String),
    /// A stored password hash is not an argon2 hash in PHC string form.
    #[error("not an argon2 password hash in PHC form: {0}")]
    InvalidPasswordHash(String),
    /// A store shared between threads was poisoned by a panic elsewhere.
    #[error("the {0} was poisoned by a panic in another thread")]
    Poisoned(&'static str),
    /// A cookie renewal writes an access cookie that none of the layer's
    /// token sources reads: every request would mint a new token.
    #[error(
        "the cookie renewal writes the cookie `{0}`, which none of the layer's token sources reads"
    )]
    RenewedCookieUnread(String),
    /// A rule's path pattern is not a plain path (it must start with `/`
    /// and have one reading: no dot segment, `;`, `//` or
    /// percent-encoding).
    #[error("the rule path `{0}` is not a plain path")]
    InvalidRulePath(String),
    /// A policy given to an [`AuthLayer`](crate::auth::AuthLayer) reads
    /// the selected space, which only a
    /// [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer) after it can
    /// select: it belongs in a [`RequireLayer`](crate::authz::RequireLayer)
    /// after that layer.
    #[error(
        "the policy `{0}` reads the selected space: require it with a RequireLayer after the SelectSpaceLayer, not in the AuthLayer"
    )]
    PolicyReadsSpace(String),
}

/// Signing a token failed: the claims do not serialize, or the key cannot
/// sign (neither is caused by a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SigningError(pub String);

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

impl TokenError {
    /// Why, as one `snake_case` word named after the variant (`expired`,
    /// `bad_signature`, `unknown_key`, `revoked`, ...): the `reason` label of
    /// the metrics, never a value taken from the token.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLong => "too_long",
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedCritical => "unsupported_critical",
            TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::DuplicateClaim => "duplicate_claim",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongKind => "wrong_kind",
            TokenError::Revoked => "revoked",
            TokenError::ClaimsMismatch => "claims_mismatch",
            TokenError::KeysUnavailable => "keys_unavailable",
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
