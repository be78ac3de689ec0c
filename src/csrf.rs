//! Cross-site request forgery guard for cookie-authenticated requests.
//!
//! A browser sends cookies with cross-site requests, so a request whose
//! credential came from a cookie and whose method changes state (anything
//! but `GET`, `HEAD`, `OPTIONS`, `TRACE`) must come from the site itself.
//! [`CsrfLayer`] checks it the way browsers make possible (OWASP's
//! Fetch-Metadata and Origin verification):
//!
//! - `Sec-Fetch-Site: same-origin` or `none` passes; any other value passes
//!   only when `Origin` is a trusted origin.
//! - Without `Sec-Fetch-Site`, an `Origin` must equal the request's own
//!   origin (its `Host`) or be a trusted origin.
//! - A request with neither header did not come from a browser and passes.
//!
//! Requests authenticated by a header token (bearer, `X-Auth-Token`) are
//! exempt: a browser never attaches those by itself, and so are anonymous
//! requests (nothing to forge). Install the layer inside the
//! [`AuthLayer`](crate::auth::AuthLayer), which tells it where the token was
//! found ([`FoundIn`]); without an `AuthLayer` before it, it cannot tell a
//! cookie from a header and answers `500` naming the mistake rather than let
//! the request through. A refused request gets `403`; refusals are
//! [`CsrfRejection`]s rendered by the layer's [`OnRejection`] (see
//! [`crate::reject`]).
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::csrf::CsrfLayer;
//! use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSource, TokenSources, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
//! let auth = AuthLayer::<serde_json::Value>::new(verifier)
//!     .sources(TokenSources::new([TokenSource::cookie("ins_access_token")])?);
//! let service = ServiceBuilder::new()
//!     .layer(auth)
//!     .layer(CsrfLayer::new().trusted_origin("https://admin.example.com")?)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let exp = tower_authgate::clock::now_seconds() + 300;
//! let token = key.sign(&serde_json::json!({"sub": "admin", "exp": exp, "usefor": "access"}))?;
//! // A POST a browser sends with the session cookie.
//! let post = |origin: &str| {
//!     Request::builder()
//!         .method(Method::POST)
//!         .header(header::HOST, "api.example.com")
//!         .header(header::ORIGIN, origin)
//!         .header(header::COOKIE, format!("ins_access_token={token}"))
//!         .body(String::new())
//!         .unwrap()
//! };
//! let evil = service.clone().oneshot(post("https://evil.example")).await?;
//! assert_eq!(evil.status(), StatusCode::FORBIDDEN);
//! let same = service.clone().oneshot(post("https://api.example.com")).await?;
//! assert_eq!(same.status(), StatusCode::OK);
//! let trusted = service.oneshot(post("https://admin.example.com")).await?;
//! assert_eq!(trusted.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Request, Response, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
pub use crate::future::ResponseFuture;
use crate::future::{define_inner_service_accessors, refuse};
use crate::observe::{LazyCounter, Seen, lazy_counter};
pub use crate::reject::CsrfRejection;
use crate::reject::{DefaultRejection, OnRejection, Rejection};
use crate::token::{Anonymous, FoundIn, VerifiedToken};

/// A [`Layer`] refusing cross-site, state-changing requests authenticated by
/// a cookie; `R` renders refusals.
#[derive(Debug, Clone)]
pub struct CsrfLayer<R = DefaultRejection> {
    trusted: Arc<Vec<String>>,
    on_rejection: R,
    allowed: Arc<LazyCounter>,
}

impl<R: Default> Default for CsrfLayer<R> {
    fn default() -> Self {
        CsrfLayer {
            trusted: Arc::default(),
            on_rejection: R::default(),
            allowed: Arc::new(lazy_counter!(
                "authgate_requests_total",
                "layer" => "csrf",
                "outcome" => "allowed",
                "reason" => "ok"
            )),
        }
    }
}

impl CsrfLayer {
    /// A guard that trusts only the request's own origin.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<R> CsrfLayer<R> {
    /// Renders refusals with `on_rejection` (see [`crate::reject`]).
    pub fn on_rejection<R2>(self, on_rejection: R2) -> CsrfLayer<R2> {
        CsrfLayer {
            trusted: self.trusted,
            on_rejection,
            allowed: self.allowed,
        }
    }

    /// Also trust `origin` (`scheme://host[:port]`, as browsers send it).
    pub fn trusted_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        let origin = origin.trim_end_matches('/');
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = authority.is_some_and(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@'))
        });
        if !valid {
            return Err(ConfigError::InvalidOrigin(origin.to_owned()));
        }
        Arc::make_mut(&mut self.trusted).push(origin.to_ascii_lowercase());
        Ok(self)
    }

    fn is_trusted(&self, origin: &str) -> bool {
        self.trusted.iter().any(|t| t.eq_ignore_ascii_case(origin))
    }

    /// Whether a request with these parts may go through.
    pub fn allows(&self, method: &Method, headers: &HeaderMap, found_in: Option<FoundIn>) -> bool {
        if matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return true;
        }
        if !matches!(found_in, Some(FoundIn::Cookie | FoundIn::Issued)) {
            return true;
        }
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let origin = text(header::ORIGIN);
        match text(http::HeaderName::from_static("sec-fetch-site")) {
            Some("same-origin" | "none") => return true,
            Some(_) => return origin.is_some_and(|o| self.is_trusted(o)),
            None => {}
        }
        let Some(origin) = origin else {
            // Neither header: not a browser, so not a forgery.
            return true;
        };
        if self.is_trusted(origin) {
            return true;
        }
        // Same origin: the Origin's host[:port] is the request's Host.
        let host = text(header::HOST);
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
    }
}

impl<S, R: Clone> Layer<S> for CsrfLayer<R> {
    type Service = Csrf<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Csrf {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Debug, Clone)]
pub struct Csrf<S, R = DefaultRejection> {
    inner: S,
    layer: CsrfLayer<R>,
}

impl<S, R> Csrf<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Csrf<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let extensions = req.extensions();
        let found_in = match extensions.get::<VerifiedToken>() {
            Some(token) => Some(token.found_in()),
            None if extensions.get::<Anonymous>().is_some() => None,
            None => return self.refused(CsrfRejection::MissingAuthLayer, extensions, None),
        };
        if self.layer.allows(req.method(), req.headers(), found_in) {
            self.layer.allowed.increment();
            crate::observe::event!(
                debug,
                target: crate::observe::DECISION,
                layer = "csrf",
                outcome = "allowed",
                source = found_in.map(FoundIn::as_str),
                "request allowed"
            );
            ResponseFuture::inner(self.inner.call(req))
        } else {
            self.refused(CsrfRejection::CrossSite, req.extensions(), found_in)
        }
    }
}

impl<S, R> Csrf<S, R> {
    fn refused<F, B>(
        &self,
        reason: CsrfRejection,
        extensions: &http::Extensions,
        source: Option<FoundIn>,
    ) -> ResponseFuture<F, B>
    where
        R: OnRejection<B>,
    {
        let seen = Seen {
            source,
            client: Seen::client_of(extensions),
            ..Seen::default()
        };
        ResponseFuture::refused(refuse(
            &self.layer.on_rejection,
            &Rejection::Csrf(reason),
            seen,
        ))
    }
}
