//! One rejection model for every layer: why a request was refused
//! ([`Rejection`]), and how the refusal is rendered ([`OnRejection`]).
//!
//! Every layer of this crate ([`AuthLayer`](crate::auth::AuthLayer),
//! [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer),
//! [`IpFilterLayer`](crate::ip::IpFilterLayer),
//! [`CsrfLayer`](crate::csrf::CsrfLayer),
//! [`RequireLayer`](crate::authz::RequireLayer) and the login throttle) refuses by
//! handing a [`Rejection`] to its `OnRejection`, set with the layer's
//! `on_rejection` method. Give every layer of a service the same one and the
//! service answers in one error format throughout:
//!
//! - [`DefaultRejection`] (every layer's default) answers the status and
//!   the headers a client needs (`WWW-Authenticate`, `Retry-After`,
//!   `Cache-Control: no-store`) with an empty body, for any body type that
//!   has a [`Default`], as tower-http's layers do;
//! - [`JsonRejection`] adds `{"error":…,"error_description":…}`;
//! - [`GrpcRejection`] answers the gRPC way, for a tonic (or any gRPC)
//!   service behind the layers: HTTP `200`, `content-type:
//!   application/grpc`, a `grpc-status` and a percent-encoded
//!   `grpc-message`, headers only (a trailers-only response);
//! - a closure `Fn(&Rejection) -> Response<B>` renders anything else; each
//!   preset of the `schemes` module has one for its API's error object.
//!
//! A `500` always means a wiring mistake (a layer missing, or listed in the
//! wrong order): the message names it.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::reject::Rejection;
//! use tower_authgate::token::{Algorithm, KeySet, SigningKey, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
//! // The service's own error format: `{"code":401,"reason":"…"}`.
//! let shape = |rejection: &Rejection| {
//!     let body = serde_json::json!({
//!         "code": rejection.status().as_u16(),
//!         "reason": rejection.message(),
//!     });
//!     let mut response = Response::new(body.to_string());
//!     *response.status_mut() = rejection.status();
//!     rejection.set_headers(response.headers_mut());
//!     response
//! };
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::<serde_json::Value>::new(verifier).on_rejection(shape))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//!
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
//! assert_eq!(response.into_body(), r#"{"code":401,"reason":"authentication is required"}"#);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::error::TokenError;

/// Why a layer of this crate refused a request.
///
/// Read it through [`status`](Self::status), [`code`](Self::code),
/// [`message`](Self::message), [`retry_after`](Self::retry_after) and
/// [`set_headers`](Self::set_headers), or match on the layer's own reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The token layer ([`AuthLayer`](crate::auth::AuthLayer)) refused.
    Auth {
        /// Why.
        reason: AuthRejection,
        /// The realm named in the `WWW-Authenticate` challenge.
        realm: Realm,
    },
    /// The space layer ([`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer))
    /// refused.
    Space {
        /// Why.
        reason: SpaceRejection,
        /// The realm of the `AuthLayer` before it, for the challenge of an
        /// anonymous request.
        realm: Realm,
    },
    /// The address filter ([`IpFilterLayer`](crate::ip::IpFilterLayer))
    /// refused.
    Address(AddressRejection),
    /// The cross-site request guard ([`CsrfLayer`](crate::csrf::CsrfLayer))
    /// refused.
    Csrf(CsrfRejection),
    /// The login throttle refused.
    Throttle(ThrottleRejection),
    /// The authorization layer ([`RequireLayer`](crate::authz::RequireLayer))
    /// or extractor refused.
    Authz {
        /// Why.
        reason: AuthzRejection,
        /// The realm named in the `WWW-Authenticate` challenge.
        realm: Realm,
    },
}

impl Rejection {
    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Auth { reason, .. } => reason.status(),
            Rejection::Space { reason, .. } => reason.status(),
            Rejection::Address(reason) => reason.status(),
            Rejection::Csrf(reason) => reason.status(),
            Rejection::Throttle(reason) => reason.status(),
            Rejection::Authz { reason, .. } => reason.status(),
        }
    }

    /// A short machine-readable code: the RFC 6750 error code for the token
    /// layer's refusals (`invalid_request`, `invalid_token`,
    /// `insufficient_scope`), else one of `unauthorized`,
    /// `temporarily_unavailable`, `invalid_space`, `forbidden_space`,
    /// `forbidden_address`, `invalid_forwarding`, `cross_site_request`, `too_many_requests` and
    /// `server_error` (a wiring mistake). An authorization refusal is
    /// `insufficient_scope`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Auth { reason, .. } => reason.code(),
            Rejection::Space { reason, .. } => reason.code(),
            Rejection::Address(reason) => reason.code(),
            Rejection::Csrf(reason) => reason.code(),
            Rejection::Throttle(reason) => reason.code(),
            Rejection::Authz { reason, .. } => reason.code(),
        }
    }

    /// The layer that refused: `auth`, `space`, `address`, `csrf`,
    /// `throttle` or `authz` (the `layer` label of the metrics, see
    /// [`observe`](crate::observe)).
    pub fn layer(&self) -> &'static str {
        match self {
            Rejection::Auth { .. } => "auth",
            Rejection::Space { .. } => "space",
            Rejection::Address(_) => "address",
            Rejection::Csrf(_) => "csrf",
            Rejection::Throttle(_) => "throttle",
            Rejection::Authz { .. } => "authz",
        }
    }

    /// Why, as one `snake_case` word from a fixed set: the name of the
    /// layer's reason (`missing_token`, `expired`, `bad_signature`,
    /// `not_granted`, `not_allowed`, `cross_site`, `too_many_attempts`, ...).
    /// It is the `reason` label of the metrics and field of the events,
    /// never a value taken from the request.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Auth { reason, .. } => reason.reason(),
            Rejection::Space { reason, .. } => reason.reason(),
            Rejection::Address(reason) => reason.reason(),
            Rejection::Csrf(reason) => reason.reason(),
            Rejection::Throttle(reason) => reason.reason(),
            Rejection::Authz { reason, .. } => reason.reason(),
        }
    }

    /// A short description, safe to show the client.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Rejection::Auth { reason, .. } => reason.description(),
            Rejection::Space { reason, .. } => Cow::Borrowed(reason.message()),
            Rejection::Address(reason) => Cow::Borrowed(reason.message()),
            Rejection::Csrf(reason) => Cow::Borrowed(reason.message()),
            Rejection::Throttle(reason) => Cow::Borrowed(reason.message()),
            Rejection::Authz { reason, .. } => reason.message(),
        }
    }

    /// Seconds the client should wait before trying again, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::Auth {
                reason: AuthRejection::Unavailable,
                ..
            } => Some(UNAVAILABLE_RETRY_AFTER),
            Rejection::Throttle(ThrottleRejection::TooManyAttempts { retry_after }) => {
                Some((*retry_after).max(1))
            }
            Rejection::Authz {
                reason: AuthzRejection::Unavailable,
                ..
            } => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, for the answers that carry one:
    /// every `401`, and the token layer's `400` and `403` (RFC 6750 §3).
    pub fn challenge(&self) -> Option<HeaderValue> {
        match self {
            Rejection::Auth { reason, realm } if *reason != AuthRejection::Unavailable => {
                Some(reason.challenge(realm.as_str()))
            }
            Rejection::Space {
                reason: SpaceRejection::AuthenticationRequired,
                realm,
            } => Some(AuthRejection::MissingToken.challenge(realm.as_str())),
            Rejection::Authz { reason, realm } => reason.challenge(realm.as_str()),
            _ => None,
        }
    }

    /// Sets the headers the answer needs whatever its body:
    /// `WWW-Authenticate` ([`challenge`](Self::challenge)), `Retry-After`
    /// ([`retry_after`](Self::retry_after)) and `Cache-Control: no-store`.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        if let Some(challenge) = self.challenge() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    /// The gRPC status code of the answer ([`GrpcRejection`]), from its
    /// HTTP [`status`](Self::status): `16` UNAUTHENTICATED for a `401`, `7`
    /// PERMISSION_DENIED for a `403` (an authorization layer's
    /// `insufficient_scope` among them), `3` INVALID_ARGUMENT for a `400`,
    /// `8` RESOURCE_EXHAUSTED for a `429`, `14` UNAVAILABLE for a `503` and
    /// `13` INTERNAL for a `500` (a wiring mistake).
    pub fn grpc_status(&self) -> u8 {
        grpc_status_of(self.status())
    }

    /// The JSON body of [`JsonRejection`]:
    /// `{"error":"<code>","error_description":"<message>"}`.
    pub fn json_body(&self) -> String {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
        }
        let body = Body {
            error: self.code(),
            error_description: &self.message(),
        };
        // Two strings: serializing cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Rejection {}

/// How long a client waits before retrying when a store cannot answer.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// The realm of a `WWW-Authenticate` challenge (RFC 7235 §2.2), as set with
/// [`AuthLayer::realm`](crate::auth::AuthLayer::realm); `"api"` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm(Arc<str>);

impl Realm {
    pub(crate) fn new(realm: &str) -> Self {
        Realm(realm.into())
    }

    /// The realm's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Realm {
    fn default() -> Self {
        Realm::new("api")
    }
}

/// Why the token layer refused a request.
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
    /// A store needed to decide (revocations, remote keys) cannot be reached
    /// and the layer fails closed: `503` with `Retry-After`.
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

    fn code(&self) -> &'static str {
        self.error_code().unwrap_or(match self {
            Self::Unavailable => "temporarily_unavailable",
            _ => "unauthorized",
        })
    }

    /// Why, as one `snake_case` word: `missing_token`, `invalid_request`,
    /// the [`TokenError::reason`] of a refused token, `insufficient_scope`
    /// or `unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken(err) => err.reason(),
            Self::Forbidden(_) => "insufficient_scope",
            Self::Unavailable => "unavailable",
        }
    }

    /// A short human-readable description.
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            Self::MissingToken => Cow::Borrowed("authentication is required"),
            Self::Unavailable => Cow::Borrowed("authentication is temporarily unavailable"),
            Self::InvalidRequest(why) | Self::Forbidden(why) => Cow::Borrowed(why),
            Self::InvalidToken(err) => Cow::Owned(err.to_string()),
        }
    }

    /// The `WWW-Authenticate` challenge for this rejection in `realm`.
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

/// Why the space layer refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceRejection {
    /// The header is sent twice: `400`.
    Repeated,
    /// The value is empty, too long, or has characters outside
    /// `[A-Za-z0-9_.-]`: `400`.
    Malformed,
    /// The token does not grant the space (or grants none to fall back on):
    /// `403`.
    NotGranted,
    /// The request is anonymous and the space is not one anonymous requests
    /// may use: `401`.
    AuthenticationRequired,
    /// No [`AuthLayer`](crate::auth::AuthLayer) ran before the space layer:
    /// it is missing, or installed outside it. `500`.
    MissingAuthLayer,
    /// The `AuthLayer` before the space layer was built for another claims
    /// type: `500`.
    ClaimsTypeMismatch,
}

impl SpaceRejection {
    /// Why, as one `snake_case` word: `repeated`, `malformed`,
    /// `not_granted`, `authentication_required`, `missing_auth_layer` or
    /// `claims_type_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Repeated => "repeated",
            Self::Malformed => "malformed",
            Self::NotGranted => "not_granted",
            Self::AuthenticationRequired => "authentication_required",
            Self::MissingAuthLayer => "missing_auth_layer",
            Self::ClaimsTypeMismatch => "claims_type_mismatch",
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Repeated | Self::Malformed => StatusCode::BAD_REQUEST,
            Self::NotGranted => StatusCode::FORBIDDEN,
            Self::AuthenticationRequired => StatusCode::UNAUTHORIZED,
            Self::MissingAuthLayer | Self::ClaimsTypeMismatch => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Repeated | Self::Malformed => "invalid_space",
            Self::NotGranted => "forbidden_space",
            Self::AuthenticationRequired => "unauthorized",
            Self::MissingAuthLayer | Self::ClaimsTypeMismatch => "server_error",
        }
    }

    /// A short description.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Repeated => "the space header is repeated",
            Self::Malformed => "the space name is malformed",
            Self::NotGranted => "the token does not grant this space",
            Self::AuthenticationRequired => "authentication is required for this space",
            Self::MissingAuthLayer => {
                "no verified token for this request: is `AuthLayer` installed before `SelectSpaceLayer`?"
            }
            Self::ClaimsTypeMismatch => {
                "the `AuthLayer` before `SelectSpaceLayer` was built for another claims type"
            }
        }
    }
}

/// Why the address filter refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressRejection {
    /// The client address is denied, or not on the allow list: `403`.
    NotAllowed,
    /// The peer is a trusted proxy whose forwarding header
    /// (`X-Forwarded-For` or `Forwarded`) holds something other than
    /// addresses (junk, an empty element, `unknown`, an obfuscated
    /// identifier, a `unix:` path, a port where none belongs): the client
    /// cannot be told, so no rule can be applied. `400`: the request is
    /// malformed as it reached this service, and sending it again as it is
    /// never succeeds; the proxy's own address never stands in for the
    /// client.
    Unresolvable,
    /// The server passes no peer address to the service: `500`.
    UnknownPeer,
}

impl AddressRejection {
    /// Why, as one `snake_case` word: `not_allowed`, `unresolvable` or
    /// `unknown_peer`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAllowed => "not_allowed",
            Self::Unresolvable => "unresolvable",
            Self::UnknownPeer => "unknown_peer",
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAllowed => StatusCode::FORBIDDEN,
            Self::Unresolvable => StatusCode::BAD_REQUEST,
            Self::UnknownPeer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed => "forbidden_address",
            Self::Unresolvable => "invalid_forwarding",
            Self::UnknownPeer => "server_error",
        }
    }

    /// A short description.
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotAllowed => "access from this address is not allowed",
            Self::Unresolvable => {
                "the client address cannot be resolved: the proxy's forwarding header holds something other than addresses"
            }
            Self::UnknownPeer => UNKNOWN_PEER,
        }
    }
}

const UNKNOWN_PEER: &str = "the peer address is unknown: serve with `into_make_service_with_connect_info::<SocketAddr>()` or insert `PeerAddr`";

/// Why the cross-site request guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// A state-changing request with cookie credentials came from another
    /// site: `403`.
    CrossSite,
    /// No [`AuthLayer`](crate::auth::AuthLayer) ran before the guard, so it
    /// cannot tell a cookie from a header: `500`.
    MissingAuthLayer,
}

impl CsrfRejection {
    /// Why, as one `snake_case` word: `cross_site` or `missing_auth_layer`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CrossSite => "cross_site",
            Self::MissingAuthLayer => "missing_auth_layer",
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::MissingAuthLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::CrossSite => "cross_site_request",
            Self::MissingAuthLayer => "server_error",
        }
    }

    /// A short description.
    pub fn message(&self) -> &'static str {
        match self {
            Self::CrossSite => "cross-site requests with cookie credentials are not allowed",
            Self::MissingAuthLayer => {
                "no verified token for this request: is `AuthLayer` installed before `CsrfLayer`?"
            }
        }
    }
}

/// Why the login throttle refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleRejection {
    /// Too many attempts from this address: `429` with `Retry-After`.
    TooManyAttempts {
        /// Seconds until the next attempt is allowed.
        retry_after: u64,
    },
    /// The server passes no peer address to the service: `500`.
    UnknownPeer,
}

impl ThrottleRejection {
    /// Why, as one `snake_case` word: `too_many_attempts` or
    /// `unknown_peer`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::UnknownPeer => "unknown_peer",
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownPeer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::TooManyAttempts { .. } => "too_many_requests",
            Self::UnknownPeer => "server_error",
        }
    }

    /// A short description.
    pub fn message(&self) -> &'static str {
        match self {
            Self::TooManyAttempts { .. } => {
                "too many login attempts from this address; try again later"
            }
            Self::UnknownPeer => UNKNOWN_PEER,
        }
    }
}

/// Why the authorization layer or extractor refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthzRejection {
    /// The token does not grant what the policy asks for: `403` with
    /// `WWW-Authenticate: Bearer error="insufficient_scope"` and, when the
    /// policy asks for scopes, `scope="<the scopes>"` (RFC 6750 §3.1).
    InsufficientScope {
        /// What the policy asks for ([`Policy::needed`](crate::authz::Policy::needed)).
        needed: Arc<str>,
        /// The scopes it asks for, space-separated, if any.
        scope: Option<Arc<str>>,
    },
    /// A closure or an asynchronous check of the policy said no: `403`
    /// with `error="insufficient_scope"`.
    PolicyDenied {
        /// What the policy asks for.
        needed: Arc<str>,
    },
    /// The request is anonymous (an optional `AuthLayer` let it through):
    /// `401`.
    AuthenticationRequired,
    /// No [`AuthLayer`](crate::auth::AuthLayer) ran before the check: it is
    /// missing, or installed inside it. `500`.
    MissingAuthLayer,
    /// The policy reads the selected space and no
    /// [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer) ran before the
    /// check: `500`.
    MissingSpaceLayer,
    /// The policy reads claims of another type than the `AuthLayer` was
    /// built for: `500`.
    ClaimsTypeMismatch,
    /// An asynchronous check could not answer (its store is down): `503`
    /// with `Retry-After`.
    Unavailable,
    /// No rule of the table matched and its default denies: `403`.
    NoMatchingRule,
    /// The path has more than one reading (a dot segment, `;`, an encoded
    /// `/`, ...), so no rule can be applied: `400`.
    AmbiguousPath(&'static str),
}

impl AuthzRejection {
    /// Why, as one `snake_case` word: `insufficient_scope`,
    /// `policy_denied`, `authentication_required`, `missing_auth_layer`,
    /// `missing_space_layer`, `claims_type_mismatch`, `unavailable`,
    /// `no_rule` or `ambiguous_path`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::AuthenticationRequired => "authentication_required",
            Self::MissingAuthLayer => "missing_auth_layer",
            Self::MissingSpaceLayer => "missing_space_layer",
            Self::ClaimsTypeMismatch => "claims_type_mismatch",
            Self::Unavailable => "unavailable",
            Self::NoMatchingRule => "no_rule",
            Self::AmbiguousPath(_) => "ambiguous_path",
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope { .. } | Self::PolicyDenied { .. } | Self::NoMatchingRule => {
                StatusCode::FORBIDDEN
            }
            Self::AmbiguousPath(_) => StatusCode::BAD_REQUEST,
            Self::AuthenticationRequired => StatusCode::UNAUTHORIZED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingAuthLayer | Self::MissingSpaceLayer | Self::ClaimsTypeMismatch => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InsufficientScope { .. } | Self::PolicyDenied { .. } | Self::NoMatchingRule => {
                "insufficient_scope"
            }
            Self::AmbiguousPath(_) => "invalid_request",
            Self::AuthenticationRequired => "unauthorized",
            Self::Unavailable => "temporarily_unavailable",
            Self::MissingAuthLayer | Self::MissingSpaceLayer | Self::ClaimsTypeMismatch => {
                "server_error"
            }
        }
    }

    /// What the policy asked for, when the refusal is a `403`.
    pub fn needed(&self) -> Option<&str> {
        match self {
            Self::InsufficientScope { needed, .. } | Self::PolicyDenied { needed } => Some(needed),
            _ => None,
        }
    }

    /// A short description, naming what was needed for a `403`.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::InsufficientScope { needed, .. } | Self::PolicyDenied { needed } => Cow::Owned(
                format!("the token does not grant what this request needs: {needed}"),
            ),
            Self::AuthenticationRequired => Cow::Borrowed("authentication is required"),
            Self::MissingAuthLayer => Cow::Borrowed(
                "no verified token for this request: is `AuthLayer` installed before `RequireLayer`?",
            ),
            Self::MissingSpaceLayer => Cow::Borrowed(
                "the policy reads the selected space: is `SelectSpaceLayer` installed before `RequireLayer`?",
            ),
            Self::ClaimsTypeMismatch => Cow::Borrowed(
                "the policy reads claims of another type than the `AuthLayer` before `RequireLayer` was built for",
            ),
            Self::Unavailable => Cow::Borrowed("authorization is temporarily unavailable"),
            Self::NoMatchingRule => Cow::Borrowed("no rule allows this request"),
            Self::AmbiguousPath(why) => Cow::Borrowed(why),
        }
    }

    fn challenge(&self, realm: &str) -> Option<HeaderValue> {
        match self {
            Self::AuthenticationRequired => Some(AuthRejection::MissingToken.challenge(realm)),
            Self::InsufficientScope { needed, scope } => {
                let mut text = format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"the token does not grant {}\"",
                    quotable(needed).unwrap_or("what this request needs")
                );
                if let Some(scope) = scope.as_deref().and_then(quotable) {
                    text.push_str(&format!(", scope=\"{scope}\""));
                }
                Some(HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer")))
            }
            Self::PolicyDenied { .. } | Self::NoMatchingRule => Some(
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\""
                ))
                .unwrap_or(HeaderValue::from_static("Bearer")),
            ),
            _ => None,
        }
    }
}

/// `text` when it can stand inside a quoted string of a challenge as it is
/// (visible ASCII and spaces, no `"` or `\`, RFC 6750 §3).
fn quotable(text: &str) -> Option<&str> {
    text.bytes()
        .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
        .then_some(text)
}

/// The mark every refusal of this crate's layers carries in its response
/// extensions, whatever renders it: which layer refused (`auth`, `space`,
/// `address`, `csrf` or `throttle`, as [`Rejection::layer`]).
///
/// [`AuthLayer`](crate::auth::AuthLayer) adds an access cookie it renewed
/// from the refresh cookie only to a response that passed every check: one
/// without this mark, and neither `401` nor `403`. A layer of the
/// application's own that refuses with another status can insert this mark
/// into its refusals for the same effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedBy(pub &'static str);

impl RefusedBy {
    /// Whether `response` passed every check: it carries no [`RefusedBy`]
    /// mark and is neither `401` nor `403`.
    pub fn passed_every_check<B>(response: &Response<B>) -> bool {
        response.extensions().get::<RefusedBy>().is_none()
            && !matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            )
    }
}

/// Renders a [`Rejection`] as the response sent to the client.
///
/// Implemented by [`DefaultRejection`], [`JsonRejection`], every closure
/// `Fn(&Rejection) -> Response<B>`, and the presets' error formats.
pub trait OnRejection<B> {
    /// The response for `rejection`.
    fn on_rejection(&self, rejection: &Rejection) -> Response<B>;
}

/// Every layer's default: the status and [`Rejection::set_headers`], with an
/// empty body (`B::default()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl<B: Default> OnRejection<B> for DefaultRejection {
    fn on_rejection(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = rejection.status();
        rejection.set_headers(response.headers_mut());
        response
    }
}

/// The status, [`Rejection::set_headers`], and the JSON body
/// [`Rejection::json_body`], for any body type that can be built from a
/// `String` (axum's `Body`, `http_body_util::Full<Bytes>`, `String`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRejection;

impl<B: From<String>> OnRejection<B> for JsonRejection {
    fn on_rejection(&self, rejection: &Rejection) -> Response<B> {
        let mut response = Response::new(B::from(rejection.json_body()));
        *response.status_mut() = rejection.status();
        rejection.set_headers(response.headers_mut());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Answers the gRPC way, for a gRPC service (tonic's, or any other tower
/// service speaking gRPC over HTTP/2) behind the layers: HTTP `200`,
/// `content-type: application/grpc`, `grpc-status`
/// ([`Rejection::grpc_status`]: `16` UNAUTHENTICATED, `7`
/// PERMISSION_DENIED, `3` INVALID_ARGUMENT, `8` RESOURCE_EXHAUSTED, `14`
/// UNAVAILABLE, `13` INTERNAL), `grpc-message` ([`Rejection::message`],
/// percent-encoded as the gRPC protocol over HTTP/2 requires), and
/// [`Rejection::set_headers`] (`WWW-Authenticate`, `Retry-After` and
/// `Cache-Control`, which a gRPC client reads as response metadata).
///
/// The body is empty (`B::default()`, tonic's `Body::default()` among
/// them), so the server sends the headers with the end of the stream: a
/// trailers-only response, which every gRPC client reads as the call's
/// status. Give it to every layer in front of the service
/// (`AuthLayer`, `SelectSpaceLayer`, `RequireLayer`, `IpFilterLayer`, ...),
/// so that each refusal reaches the client as a gRPC status. Tokens come
/// from the request's metadata as from any headers: the `authorization`
/// metadata with [`TokenSource::bearer`](crate::token::TokenSource::bearer),
/// a key of its own with
/// [`TokenSource::try_header`](crate::token::TokenSource::try_header)
/// (metadata keys are lower-case header names).
///
/// # Example
///
/// ```
/// use http::{Request, Response, StatusCode, header};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_authgate::auth::AuthLayer;
/// use tower_authgate::authz::RequireLayer;
/// use tower_authgate::reject::GrpcRejection;
/// use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
/// let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
/// let service = ServiceBuilder::new()
///     .layer(
///         AuthLayer::<serde_json::Value>::new(verifier)
///             .sources(TokenSources::bearer())
///             .on_rejection(GrpcRejection),
///     )
///     .layer(RequireLayer::role("admin").on_rejection(GrpcRejection))
///     // Stands for a tonic service; its body type (`tonic::body::Body`)
///     // has a `Default` too.
///     .service(service_fn(|_req: Request<String>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(String::from("a message")))
///     }));
///
/// let anonymous = Request::post("/guarded.Guarded/Purge")
///     .header(header::CONTENT_TYPE, "application/grpc")
///     .body(String::new())?;
/// let response = service.clone().oneshot(anonymous).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
/// assert_eq!(response.headers()["grpc-status"], "16"); // UNAUTHENTICATED
/// assert_eq!(response.headers()["grpc-message"], "authentication is required");
/// assert!(response.into_body().is_empty());
///
/// let exp = tower_authgate::clock::now_seconds() + 300;
/// let token = key.sign(&serde_json::json!({
///     "sub": "ann", "exp": exp, "usefor": "access", "roles": ["viewer"]
/// }))?;
/// let viewer = Request::post("/guarded.Guarded/Purge")
///     .header(header::CONTENT_TYPE, "application/grpc")
///     .header(header::AUTHORIZATION, format!("Bearer {token}"))
///     .body(String::new())?;
/// let response = service.oneshot(viewer).await?;
/// assert_eq!(response.headers()["grpc-status"], "7"); // PERMISSION_DENIED
/// assert_eq!(
///     response.headers()["grpc-message"],
///     "the token does not grant what this request needs: role:admin"
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRejection;

impl<B: Default> OnRejection<B> for GrpcRejection {
    fn on_rejection(&self, rejection: &Rejection) -> Response<B> {
        let mut response = grpc_refusal(rejection.status(), &rejection.message());
        rejection.set_headers(response.headers_mut());
        response
    }
}

/// The gRPC status code of a refusal with the HTTP status `status` (see
/// [`Rejection::grpc_status`]).
pub(crate) fn grpc_status_of(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::BAD_REQUEST => 3,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::INTERNAL_SERVER_ERROR => 13,
        // No layer answers another status today; a new one is refused
        // all the same, as UNKNOWN.
        _ => 2,
    }
}

/// A trailers-only gRPC answer (`200`, `application/grpc`, `grpc-status`,
/// a percent-encoded `grpc-message`, `Cache-Control: no-store`) for a
/// refusal with the HTTP status `status` and `message`; an empty or
/// unencodable message is left out rather than answered unreadable.
pub(crate) fn grpc_refusal<B: Default>(status: StatusCode, message: &str) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from(u16::from(grpc_status_of(status))),
    );
    if let Ok(message) = HeaderValue::from_str(&grpc_percent_encode(message)) {
        headers.insert("grpc-message", message);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `text` percent-encoded for `grpc-message`: its UTF-8 bytes, each one
/// outside `%x20-%x24 / %x26-%x7E` (a space and visible ASCII but `%`)
/// written `%XX` in upper-case hexadecimal, as the gRPC protocol over
/// HTTP/2 specifies (`Percent-Byte-Unencoded`).
fn grpc_percent_encode(text: &str) -> Cow<'_, str> {
    const fn unencoded(b: u8) -> bool {
        matches!(b, 0x20..=0x24 | 0x26..=0x7E)
    }
    if text.bytes().all(unencoded) {
        return Cow::Borrowed(text);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if unencoded(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
    Cow::Owned(out)
}

impl<B, F> OnRejection<B> for F
where
    F: Fn(&Rejection) -> Response<B>,
{
    fn on_rejection(&self, rejection: &Rejection) -> Response<B> {
        self(rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded_as_the_protocol_specifies() {
        assert_eq!(
            grpc_percent_encode("the token does not grant what this request needs: role admin"),
            "the token does not grant what this request needs: role admin"
        );
        assert!(matches!(
            grpc_percent_encode("plain text"),
            Cow::Borrowed(_)
        ));
        assert_eq!(grpc_percent_encode("100% sure"), "100%25 sure");
        assert_eq!(grpc_percent_encode("tab\there\r\n"), "tab%09here%0D%0A");
        assert_eq!(
            grpc_percent_encode("espace \u{e9}t\u{e9}"),
            "espace %C3%A9t%C3%A9"
        );
        assert_eq!(grpc_percent_encode("\u{7f}~ !$&"), "%7F~ !$&");
    }

    #[test]
    fn every_http_status_of_a_refusal_has_its_grpc_status() {
        let realm = Realm::default();
        let cases = [
            (
                Rejection::Auth {
                    reason: AuthRejection::MissingToken,
                    realm: realm.clone(),
                },
                16,
            ),
            (
                Rejection::Auth {
                    reason: AuthRejection::InvalidRequest("two credentials"),
                    realm: realm.clone(),
                },
                3,
            ),
            (
                Rejection::Auth {
                    reason: AuthRejection::Unavailable,
                    realm: realm.clone(),
                },
                14,
            ),
            (
                Rejection::Authz {
                    reason: AuthzRejection::InsufficientScope {
                        needed: "role admin".into(),
                        scope: None,
                    },
                    realm: realm.clone(),
                },
                7,
            ),
            (
                Rejection::Authz {
                    reason: AuthzRejection::MissingAuthLayer,
                    realm: realm.clone(),
                },
                13,
            ),
            (
                Rejection::Space {
                    reason: SpaceRejection::NotGranted,
                    realm,
                },
                7,
            ),
            (Rejection::Address(AddressRejection::Unresolvable), 3),
            (
                Rejection::Throttle(ThrottleRejection::TooManyAttempts { retry_after: 3 }),
                8,
            ),
        ];
        for (rejection, code) in cases {
            assert_eq!(rejection.grpc_status(), code, "{rejection:?}");
            let response: Response<String> = GrpcRejection.on_rejection(&rejection);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["grpc-status"], code.to_string().as_str());
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
            assert_eq!(
                response.headers()["grpc-message"],
                grpc_percent_encode(&rejection.message()).as_ref()
            );
            assert!(response.body().is_empty());
        }
    }

    #[test]
    fn a_grpc_refusal_keeps_the_challenge_and_the_wait() {
        let response: Response<String> =
            GrpcRejection.on_rejection(&Rejection::Throttle(ThrottleRejection::TooManyAttempts {
                retry_after: 7,
            }));
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let response: Response<String> = GrpcRejection.on_rejection(&Rejection::Auth {
            reason: AuthRejection::MissingToken,
            realm: Realm::default(),
        });
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\""
        );
    }
}
