//! Tenant selection (document 000's `X-Space`).
//!
//! [`SpaceLayer`] reads the space a request acts in from a header (default
//! `X-Space`), falls back to a default when the header is absent ("If
//! omitted, the default space is used"), validates it, and, when the request
//! carries verified claims, checks that the token grants it. The selected
//! [`Space`] goes into the request extensions (an extractor with the `axum`
//! feature).
//!
//! Answers: a malformed or repeated header is `400`; a space the token does
//! not grant is `403`; both with a JSON body naming the problem.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::login::AuthClaims;
//! use tower_authgate::tenant::{Space, SpaceLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(SpaceLayer::<AuthClaims>::new().default_space("default_space")?)
//!     .service(service_fn(|req: Request<String>| async move {
//!         let space = req.extensions().get::<Space>().unwrap().0.clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(space))
//!     }));
//!
//! let response = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.into_body(), "default_space");
//! let bad = Request::builder().header("x-space", "../etc").body(String::new())?;
//! assert_eq!(service.oneshot(bad).await?.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
use crate::future::{InnerOrRejected, json_error};
use crate::token::VerifiedToken;

/// The response future of [`SpaceGuard`].
pub type ResponseFuture<F, B> = InnerOrRejected<F, B>;

/// The space (tenant) a request acts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Space(pub String);

/// Claims that say which spaces they grant.
pub trait HasSpaces {
    /// The spaces granted, the first being the token's default.
    fn spaces(&self) -> &[String];
}

/// The longest accepted space name, by default.
pub const DEFAULT_MAX_SPACE_LEN: usize = 64;

#[derive(Debug, Clone)]
struct SpaceConfig {
    header: HeaderName,
    default_space: Option<String>,
    max_len: usize,
}

/// A [`Layer`] that selects and checks the request's space; `C` is the
/// claims type an [`AuthLayer`](crate::auth::AuthLayer) before it verified.
pub struct SpaceLayer<C> {
    config: Arc<SpaceConfig>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> Clone for SpaceLayer<C> {
    fn clone(&self) -> Self {
        SpaceLayer {
            config: Arc::clone(&self.config),
            _claims: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for SpaceLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<C> Default for SpaceLayer<C> {
    fn default() -> Self {
        Self::new()
    }
}

fn valid_space(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
}

impl<C> SpaceLayer<C> {
    /// Reads `X-Space`; without the header the space is the token's first
    /// granted space (requests without claims must then send the header).
    pub fn new() -> Self {
        SpaceLayer {
            config: Arc::new(SpaceConfig {
                header: HeaderName::from_static("x-space"),
                default_space: None,
                max_len: DEFAULT_MAX_SPACE_LEN,
            }),
            _claims: PhantomData,
        }
    }

    fn config_mut(&mut self) -> &mut SpaceConfig {
        Arc::make_mut(&mut self.config)
    }

    /// The space used when the header is absent.
    pub fn default_space(mut self, space: &str) -> Result<Self, ConfigError> {
        if !valid_space(space, self.config.max_len) {
            return Err(ConfigError::Invalid(format!(
                "invalid space name {space:?}"
            )));
        }
        self.config_mut().default_space = Some(space.to_owned());
        Ok(self)
    }

    /// Read the space from this header.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.config_mut().header = header;
        self
    }

    /// The longest accepted space name (default [`DEFAULT_MAX_SPACE_LEN`]).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.config_mut().max_len = max_len;
        self
    }
}

impl<S, C> Layer<S> for SpaceLayer<C> {
    type Service = SpaceGuard<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SpaceGuard {
            inner,
            config: Arc::clone(&self.config),
            _claims: PhantomData,
        }
    }
}

/// The service made by [`SpaceLayer`].
pub struct SpaceGuard<S, C> {
    inner: S,
    config: Arc<SpaceConfig>,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C> Clone for SpaceGuard<S, C> {
    fn clone(&self) -> Self {
        SpaceGuard {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            _claims: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for SpaceGuard<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGuard")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, C> SpaceGuard<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Why a space was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceRejection {
    /// The header is sent twice.
    Repeated,
    /// The value is empty, too long, or has characters outside
    /// `[A-Za-z0-9_.-]`.
    Malformed,
    /// No header, no default space and no granted space to fall back on.
    Missing,
    /// The token does not grant the space.
    NotGranted,
}

impl SpaceRejection {
    /// The status code of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            SpaceRejection::NotGranted => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A description for the body.
    pub fn body_text(&self) -> &'static str {
        match self {
            SpaceRejection::Repeated => "the space header is repeated",
            SpaceRejection::Malformed => "the space name is malformed",
            SpaceRejection::Missing => "the request names no space",
            SpaceRejection::NotGranted => "the token does not grant this space",
        }
    }

    fn to_response<B: From<String>>(self) -> Response<B> {
        let code = match self {
            SpaceRejection::NotGranted => "forbidden_space",
            _ => "invalid_space",
        };
        json_error(self.status(), code, self.body_text())
    }
}

impl<S, C> SpaceGuard<S, C>
where
    C: HasSpaces + Send + Sync + 'static,
{
    fn select<B>(&self, req: &Request<B>) -> Result<String, SpaceRejection> {
        let mut values = req.headers().get_all(&self.config.header).iter();
        let requested = match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Err(SpaceRejection::Repeated),
            (Some(value), None) => {
                let text = value
                    .to_str()
                    .map_err(|_| SpaceRejection::Malformed)?
                    .trim();
                if !valid_space(text, self.config.max_len) {
                    return Err(SpaceRejection::Malformed);
                }
                Some(text)
            }
            (None, _) => None,
        };
        let claims = req
            .extensions()
            .get::<VerifiedToken>()
            .and_then(VerifiedToken::claims::<C>);
        let space = match (requested, &self.config.default_space, claims) {
            (Some(space), _, _) => space.to_owned(),
            (None, Some(default), _) => default.clone(),
            (None, None, Some(claims)) => claims
                .spaces()
                .first()
                .cloned()
                .ok_or(SpaceRejection::NotGranted)?,
            (None, None, None) => return Err(SpaceRejection::Missing),
        };
        if let Some(claims) = claims
            && !claims.spaces().contains(&space)
        {
            return Err(SpaceRejection::NotGranted);
        }
        Ok(space)
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for SpaceGuard<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: HasSpaces + Send + Sync + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.select(&req) {
            Ok(space) => {
                req.extensions_mut().insert(Space(space));
                ResponseFuture::inner(self.inner.call(req))
            }
            Err(rejection) => ResponseFuture::rejected(rejection.to_response()),
        }
    }
}
