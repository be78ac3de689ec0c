//! axum extractors (feature `axum`).
//!
//! Extractors only read the request extensions that the layers put there;
//! they never verify anything again. Without the layer they answer `500`
//! with a body that names the missing layer.

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::authz::Policy;
use crate::reject::{AuthRejection, JsonRejection, OnRejection, Realm, Rejection};
use crate::token::{Anonymous, Claims, SharedClaims, TokenMeta, VerifiedToken};

/// Why [`Claims<C>`] or [`SharedClaims<C>`] could not be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimsRejection {
    /// No [`AuthLayer`](crate::auth::AuthLayer) ran for this route.
    MissingAuthLayer,
    /// An `AuthLayer` ran, but for another claims type.
    ClaimsTypeMismatch,
    /// The layer is optional and the request is anonymous; extract
    /// `Option<Claims<C>>` on routes that allow this.
    Anonymous,
}

impl ClaimsRejection {
    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ClaimsRejection::Anonymous => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body of the answer.
    pub fn body_text(&self) -> &'static str {
        match self {
            ClaimsRejection::MissingAuthLayer => {
                "No verified claims for this request: is `AuthLayer` installed on this route?"
            }
            ClaimsRejection::ClaimsTypeMismatch => {
                "The `AuthLayer` on this route was built for another claims type"
            }
            ClaimsRejection::Anonymous => "authentication is required",
        }
    }
}

impl std::fmt::Display for ClaimsRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.body_text())
    }
}

impl std::error::Error for ClaimsRejection {}

impl IntoResponse for ClaimsRejection {
    fn into_response(self) -> Response {
        match self {
            ClaimsRejection::Anonymous => AuthRejection::MissingToken.into_response(),
            _ => (self.status(), self.body_text()).into_response(),
        }
    }
}

/// The [`JsonRejection`] answer.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        JsonRejection.on_rejection(&self)
    }
}

/// The [`JsonRejection`] answer, challenged in the default realm `"api"`.
impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        Rejection::Auth {
            reason: self,
            realm: Realm::default(),
        }
        .into_response()
    }
}

/// What an optional claims extractor answers: the claims when found, `None`
/// for an anonymous request, and a wiring mistake as the required form
/// reports it.
fn optional<T>(found: Option<T>, parts: &Parts) -> Result<Option<T>, ClaimsRejection> {
    match found {
        Some(claims) => Ok(Some(claims)),
        None => match missing(parts) {
            ClaimsRejection::Anonymous => Ok(None),
            other => Err(other),
        },
    }
}

/// Why a request has no claims of the asked type.
fn missing(parts: &Parts) -> ClaimsRejection {
    match verified_token(parts) {
        Ok(_) => ClaimsRejection::ClaimsTypeMismatch,
        Err(why) => why,
    }
}

impl<S, C> FromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = ClaimsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match claims::<C>(parts) {
            Some(claims) => Ok(Claims(claims.clone())),
            None => Err(missing(parts)),
        }
    }
}

impl<S, C> OptionalFromRequestParts<S> for Claims<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = ClaimsRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        optional(
            claims::<C>(parts).map(|claims| Claims(claims.clone())),
            parts,
        )
    }
}

impl<S, C> FromRequestParts<S> for SharedClaims<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = ClaimsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        shared_claims::<C>(parts).ok_or_else(|| missing(parts))
    }
}

impl<S, C> OptionalFromRequestParts<S> for SharedClaims<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = ClaimsRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        optional(shared_claims::<C>(parts), parts)
    }
}

fn shared_claims<C: Send + Sync + 'static>(parts: &Parts) -> Option<SharedClaims<C>> {
    parts
        .extensions
        .get::<VerifiedToken>()
        .and_then(VerifiedToken::shared_claims::<C>)
}

fn claims<C: 'static>(parts: &Parts) -> Option<&C> {
    parts
        .extensions
        .get::<VerifiedToken>()
        .and_then(VerifiedToken::claims::<C>)
}

fn verified_token(parts: &Parts) -> Result<&VerifiedToken, ClaimsRejection> {
    match parts.extensions.get::<VerifiedToken>() {
        Some(token) => Ok(token),
        None if parts.extensions.get::<Anonymous>().is_some() => Err(ClaimsRejection::Anonymous),
        None => Err(ClaimsRejection::MissingAuthLayer),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = ClaimsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified_token(parts).cloned()
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedToken {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedToken>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TokenMeta {
    type Rejection = ClaimsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified_token(parts).map(|token| token.meta().clone())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TokenMeta {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<VerifiedToken>()
            .map(|token| token.meta().clone()))
    }
}

/// A layer's extension is missing: `500` naming the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingLayer(pub &'static str);

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Missing request extension: is `{}` installed on this route?",
                self.0
            ),
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for crate::tenant::Space {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingLayer("SelectSpaceLayer"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for crate::ip::ClientIp {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .copied()
            .ok_or(MissingLayer("IpFilterLayer"))
    }
}

/// A policy named by a type, for [`Authorized<P>`]: the policy is built once
/// (in a `static`) and read on every request.
///
/// ```
/// use std::sync::LazyLock;
/// use tower_authgate::authz::Policy;
/// use tower_authgate::extract::RequiredPolicy;
///
/// struct Admin;
///
/// impl RequiredPolicy for Admin {
///     fn policy() -> &'static Policy {
///         static POLICY: LazyLock<Policy> = LazyLock::new(|| Policy::role("admin"));
///         &POLICY
///     }
/// }
/// ```
pub trait RequiredPolicy {
    /// The policy.
    fn policy() -> &'static Policy;
}

/// The request's verified token, extracted only when it satisfies the
/// policy `P` ([`RequiredPolicy`]): a per-handler
/// [`RequireLayer`](crate::authz::RequireLayer).
///
/// Refusals are [`Rejection::Authz`] answered as [`JsonRejection`]: `403`
/// `insufficient_scope` naming what was needed, `401` for an anonymous
/// request, `500` naming `AuthLayer` when none ran.
///
/// ```
/// use std::sync::LazyLock;
/// use axum::{Router, body::Body, routing::delete};
/// use http::{Request, StatusCode, header};
/// use tower::ServiceExt;
/// use tower_authgate::auth::AuthLayer;
/// use tower_authgate::authz::Policy;
/// use tower_authgate::extract::{Authorized, RequiredPolicy};
/// use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier};
///
/// struct Admin;
/// impl RequiredPolicy for Admin {
///     fn policy() -> &'static Policy {
///         static POLICY: LazyLock<Policy> = LazyLock::new(|| Policy::role("admin"));
///         &POLICY
///     }
/// }
///
/// async fn remove(_admin: Authorized<Admin>) -> StatusCode {
///     StatusCode::NO_CONTENT
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
/// let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
/// let app: Router = Router::new()
///     .route("/api/projects/{id}", delete(remove))
///     .layer(AuthLayer::<serde_json::Value>::new(verifier).sources(TokenSources::bearer()));
/// let exp = tower_authgate::clock::now_seconds() + 300;
/// let call = |roles: &[&str]| {
///     let token = key
///         .sign(&serde_json::json!({"sub": "ann", "exp": exp, "usefor": "access", "roles": roles}))
///         .unwrap();
///     Request::delete("/api/projects/7")
///         .header(header::AUTHORIZATION, format!("Bearer {token}"))
///         .body(Body::empty())
///         .unwrap()
/// };
/// assert_eq!(app.clone().oneshot(call(&["admin"])).await?.status(), StatusCode::NO_CONTENT);
/// assert_eq!(app.oneshot(call(&["operator"])).await?.status(), StatusCode::FORBIDDEN);
/// # Ok(())
/// # }
/// ```
pub struct Authorized<P> {
    token: VerifiedToken,
    _policy: std::marker::PhantomData<fn() -> P>,
}

impl<P> Authorized<P> {
    /// The verified token that satisfied the policy.
    pub fn token(&self) -> &VerifiedToken {
        &self.token
    }

    /// The verified token that satisfied the policy.
    pub fn into_token(self) -> VerifiedToken {
        self.token
    }
}

impl<P> Clone for Authorized<P> {
    fn clone(&self) -> Self {
        Authorized {
            token: self.token.clone(),
            _policy: std::marker::PhantomData,
        }
    }
}

impl<P> std::fmt::Debug for Authorized<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Authorized").field(&self.token).finish()
    }
}

impl<P: RequiredPolicy, S: Send + Sync> FromRequestParts<S> for Authorized<P> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match crate::authz::decide(P::policy(), &parts.extensions) {
            Ok(token) => Ok(Authorized {
                token: token.clone(),
                _policy: std::marker::PhantomData,
            }),
            Err(reason) => {
                let rejection = Rejection::Authz {
                    reason,
                    realm: crate::authz::realm_for(&parts.extensions, &Realm::default()),
                };
                crate::observe::refused(&rejection, crate::observe::Seen::default());
                Err(rejection)
            }
        }
    }
}
