//! Tenant selection (the inSCADA API's `X-Space`).
//!
//! [`SelectSpaceLayer`] reads the space a request acts in from a header (default
//! `X-Space`), falls back to a default when the header is absent ("If
//! omitted, the default space is used"), validates it, and checks that the
//! request's verified token grants it ([`HasSpaces`]). The selected
//! [`Space`] goes into the request extensions (an extractor with the `axum`
//! feature).
//!
//! It reads the [`VerifiedToken`] an [`AuthLayer`]
//! put in the request extensions, so it goes inside that layer (after it in
//! a `ServiceBuilder`; before it in a chain of axum `route_layer` calls,
//! which wrap outward). It never skips the grant check:
//!
//! - without an `AuthLayer` before it, or behind one built for another
//!   claims type, it answers `500` naming the wiring mistake;
//!   [`SelectSpaceLayer::for_auth`] takes the claims type from the `AuthLayer`,
//!   so the second mistake cannot be written;
//! - an anonymous request (an optional `AuthLayer` let it through without a
//!   credential) gets `401`, unless it asks for a space listed with
//!   [`SelectSpaceLayer::anonymous_spaces`].
//!
//! Answers: a malformed or repeated header is `400`; a space the token does
//! not grant is `403`. Refusals are [`SpaceRejection`]s rendered by the
//! layer's [`OnRejection`] (see [`crate::reject`]).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use serde::Deserialize;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::tenant::{HasSpaces, SelectSpaceLayer, Space};
//! use tower_authgate::token::{Algorithm, KeySet, SigningKey, Verifier};
//!
//! #[derive(Deserialize)]
//! struct MyClaims {
//!     spaces: Vec<String>,
//! }
//!
//! impl HasSpaces for MyClaims {
//!     fn spaces(&self) -> &[String] {
//!         &self.spaces
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let auth = AuthLayer::<MyClaims>::new(Verifier::builder(KeySet::single(key.verifying_key())).build()?);
//! let spaces = SelectSpaceLayer::for_auth(&auth).default_space("default_space")?;
//! let service = ServiceBuilder::new()
//!     .layer(auth)
//!     .layer(spaces)
//!     .service(service_fn(|req: Request<String>| async move {
//!         let space = req.extensions().get::<Space>().unwrap().0.clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(space))
//!     }));
//!
//! let exp = tower_authgate::clock::now_seconds() + 300;
//! let token = key.sign(&serde_json::json!({
//!     "sub": "admin", "exp": exp, "usefor": "access", "spaces": ["default_space"]
//! }))?;
//! let request = |space: Option<&str>| {
//!     let mut request = Request::builder().header(header::AUTHORIZATION, format!("Bearer {token}"));
//!     if let Some(space) = space {
//!         request = request.header("x-space", space);
//!     }
//!     request.body(String::new()).unwrap()
//! };
//! let response = service.clone().oneshot(request(None)).await?;
//! assert_eq!(response.into_body(), "default_space");
//! let not_granted = service.clone().oneshot(request(Some("production"))).await?;
//! assert_eq!(not_granted.status(), StatusCode::FORBIDDEN);
//! let bad = service.oneshot(request(Some("../etc"))).await?;
//! assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::AuthLayer;
use crate::error::ConfigError;
use crate::future::{define_inner_service_accessors, refuse};
use crate::observe::{LazyCounter, Seen, lazy_counter};
use crate::reject::{DefaultRejection, OnRejection, Rejection};
use crate::token::{Anonymous, VerifiedToken};

pub use crate::future::ResponseFuture;
pub use crate::reject::SpaceRejection;

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
    anonymous_spaces: Vec<String>,
    allowed: LazyCounter,
}

/// A [`Layer`] that selects and checks the request's space; `C` is the
/// claims type the [`AuthLayer`] before it verified, `R` renders refusals.
pub struct SelectSpaceLayer<C, R = DefaultRejection> {
    config: Arc<SpaceConfig>,
    on_rejection: R,
    _claims: PhantomData<fn() -> C>,
}

impl<C, R: Clone> Clone for SelectSpaceLayer<C, R> {
    fn clone(&self) -> Self {
        SelectSpaceLayer {
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            _claims: PhantomData,
        }
    }
}

impl<C, R: std::fmt::Debug> std::fmt::Debug for SelectSpaceLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectSpaceLayer")
            .field("config", &self.config)
            .field("on_rejection", &self.on_rejection)
            .finish()
    }
}

impl<C> Default for SelectSpaceLayer<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// The bytes a space name may hold: ASCII letters and digits, `_`, `-`
/// and `.` (a table: this runs on every request).
const SPACE_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
        b += 1;
    }
    table
};

fn valid_space(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .bytes()
            .fold(true, |ok, b| ok & SPACE_BYTES[usize::from(b)])
        && !name.starts_with('.')
}

impl<C> SelectSpaceLayer<C> {
    /// Reads `X-Space`; without the header the space is the token's first
    /// granted space. `C` must be the claims type of the [`AuthLayer`]
    /// before it; [`for_auth`](Self::for_auth) takes it from the layer
    /// itself.
    pub fn new() -> Self {
        SelectSpaceLayer {
            config: Arc::new(SpaceConfig {
                header: HeaderName::from_static("x-space"),
                default_space: None,
                max_len: DEFAULT_MAX_SPACE_LEN,
                anonymous_spaces: Vec::new(),
                allowed: lazy_counter!(
                    "authgate_requests_total",
                    "layer" => "space",
                    "outcome" => "allowed",
                    "reason" => "ok"
                ),
            }),
            on_rejection: DefaultRejection,
            _claims: PhantomData,
        }
    }

    /// A layer for the claims type of `auth`, the [`AuthLayer`] that goes
    /// before it: the claims type is stated once, so the two cannot
    /// disagree.
    pub fn for_auth<R>(_auth: &AuthLayer<C, R>) -> Self {
        Self::new()
    }
}

impl<C, R> SelectSpaceLayer<C, R> {
    fn config_mut(&mut self) -> &mut SpaceConfig {
        Arc::make_mut(&mut self.config)
    }

    /// The space used when the header is absent. A token must still grant
    /// it.
    pub fn default_space(mut self, space: &str) -> Result<Self, ConfigError> {
        self.config_mut().default_space = Some(self.checked_name(space)?);
        Ok(self)
    }

    /// The spaces an anonymous request (one an optional [`AuthLayer`] let
    /// through without a credential) may act in; without the header it gets
    /// the default space, else the first of these. By default there are
    /// none: an anonymous request gets `401`.
    pub fn anonymous_spaces<I, S>(mut self, spaces: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let spaces = spaces
            .into_iter()
            .map(|space| self.checked_name(space.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.config_mut().anonymous_spaces = spaces;
        Ok(self)
    }

    fn checked_name(&self, space: &str) -> Result<String, ConfigError> {
        if valid_space(space, self.config.max_len) {
            Ok(space.to_owned())
        } else {
            Err(ConfigError::InvalidSpaceName(space.to_owned()))
        }
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

    /// Renders refusals with `on_rejection` (see [`crate::reject`]).
    pub fn on_rejection<R2>(self, on_rejection: R2) -> SelectSpaceLayer<C, R2> {
        SelectSpaceLayer {
            config: self.config,
            on_rejection,
            _claims: PhantomData,
        }
    }
}

impl<S, C, R: Clone> Layer<S> for SelectSpaceLayer<C, R> {
    type Service = SelectSpace<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SelectSpace {
            inner,
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            _claims: PhantomData,
        }
    }
}

/// The service made by [`SelectSpaceLayer`].
pub struct SelectSpace<S, C, R = DefaultRejection> {
    inner: S,
    config: Arc<SpaceConfig>,
    on_rejection: R,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C, R: Clone> Clone for SelectSpace<S, C, R> {
    fn clone(&self) -> Self {
        SelectSpace {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            _claims: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for SelectSpace<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectSpace")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, C, R> SelectSpace<S, C, R> {
    define_inner_service_accessors!();
}

/// Who the request is, as far as spaces go.
enum Grants<'a> {
    /// A verified token granting these spaces.
    Token(&'a [String]),
    /// No credential: the spaces anonymous requests may use.
    Anonymous,
}

impl<S, C, R> SelectSpace<S, C, R>
where
    C: HasSpaces + Send + Sync + 'static,
{
    /// What the layer before this one established: a token of claims type
    /// `C`, or an anonymous request. Anything else is a wiring mistake.
    fn grants<'r, B>(req: &'r Request<B>) -> Result<Grants<'r>, SpaceRejection> {
        let extensions = req.extensions();
        match extensions.get::<VerifiedToken>() {
            Some(token) => token
                .claims::<C>()
                .map(|claims| Grants::Token(claims.spaces()))
                .ok_or(SpaceRejection::ClaimsTypeMismatch),
            None if extensions.get::<Anonymous>().is_some() => Ok(Grants::Anonymous),
            None => Err(SpaceRejection::MissingAuthLayer),
        }
    }

    /// The space named by the header, if one is.
    fn requested<'r, B>(&self, req: &'r Request<B>) -> Result<Option<&'r str>, SpaceRejection> {
        let mut values = req.headers().get_all(&self.config.header).iter();
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(SpaceRejection::Repeated),
            (Some(value), None) => {
                // Header text is ASCII: its only blanks are spaces and tabs.
                let text = value
                    .to_str()
                    .map_err(|_| SpaceRejection::Malformed)?
                    .trim_ascii();
                if valid_space(text, self.config.max_len) {
                    Ok(Some(text))
                } else {
                    Err(SpaceRejection::Malformed)
                }
            }
            (None, _) => Ok(None),
        }
    }

    fn select<B>(&self, req: &Request<B>) -> Result<String, SpaceRejection> {
        let grants = Self::grants(req)?;
        let requested = self.requested(req)?;
        let (granted, refusal) = match grants {
            Grants::Token(spaces) => (spaces, SpaceRejection::NotGranted),
            Grants::Anonymous => (
                &*self.config.anonymous_spaces,
                SpaceRejection::AuthenticationRequired,
            ),
        };
        let space = requested
            .or(self.config.default_space.as_deref())
            .or(granted.first().map(String::as_str))
            .ok_or(refusal)?;
        if granted.iter().any(|g| g == space) {
            Ok(space.to_owned())
        } else {
            Err(refusal)
        }
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for SelectSpace<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: HasSpaces + Send + Sync + 'static,
    R: OnRejection<ResBody>,
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
                self.config.allowed.increment();
                crate::observe::event!(
                    debug,
                    target: crate::observe::DECISION,
                    layer = "space",
                    outcome = "allowed",
                    space = %space,
                    "space selected"
                );
                req.extensions_mut().insert(Space(space));
                ResponseFuture::inner(self.inner.call(req))
            }
            Err(reason) => {
                // The challenge of an anonymous request names the realm of
                // the AuthLayer that let it through.
                let realm = req
                    .extensions()
                    .get::<Anonymous>()
                    .map(|anonymous| anonymous.realm().clone())
                    .unwrap_or_default();
                let rejection = Rejection::Space { reason, realm };
                let space = req
                    .headers()
                    .get(&self.config.header)
                    .map(|value| value.to_str().unwrap_or("(not text)"));
                let seen = Seen {
                    space,
                    client: Seen::client_of(req.extensions()),
                    ..Seen::default()
                };
                ResponseFuture::refused(refuse(&self.on_rejection, &rejection, seen))
            }
        }
    }
}
