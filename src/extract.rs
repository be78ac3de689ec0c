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
