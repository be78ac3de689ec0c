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
//!   origin or be a trusted origin.
//! - A request with neither header did not come from a browser and passes.
//! - Two `Origin` fields, two `Sec-Fetch-Site` fields or two `Host` fields
//!   are refused: which one the browser sent cannot be told.
//!
//! Origins are compared as RFC 6454 §5 says: scheme, host and port, the
//! host without regard to case and a default port (`80` for `http`, `443`
//! for `https`) the same as none, so `https://site:443` is
//! `https://site` but `http://site` is not `https://site`. The request's
//! own origin is `https://` and its `Host`, or `http://` and its `Host`
//! for a service reached over plain HTTP ([`CsrfLayer::plain_http`]).
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
    trusted: Arc<Vec<TrustedOrigin>>,
    own_scheme: Scheme,
    on_rejection: R,
    allowed: Arc<LazyCounter>,
}

/// The two schemes an origin of a web page has here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port an origin of this scheme has when it names none.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A trusted origin, parsed once: its host lower-cased.
#[derive(Debug, Clone)]
struct TrustedOrigin {
    scheme: Scheme,
    host: Box<str>,
    port: u16,
}

/// An origin read from a request (RFC 6454 §4): scheme, host, port.
#[derive(Debug, Clone, Copy)]
struct Origin<'a> {
    scheme: Scheme,
    host: &'a str,
    port: u16,
}

impl Origin<'_> {
    fn same_as(&self, other: &Origin<'_>) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(other.host)
    }
}

/// `scheme://host[:port]` as browsers serialise an origin: `http` or
/// `https`, a host (a name or an address, IPv6 in brackets) with no user
/// information, path, query or fragment, and an optional decimal port.
fn parse_origin(text: &str) -> Option<Origin<'_>> {
    let (scheme, authority) = text.split_once("://")?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else {
        return None;
    };
    let (host, port) = parse_authority(authority, scheme)?;
    Some(Origin { scheme, host, port })
}

/// `host[:port]` (a `Host` field, or an origin's authority), the port
/// defaulting to `scheme`'s.
fn parse_authority(authority: &str, scheme: Scheme) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            (&authority[..end + 2], &rest[end + 1..])
        }
        None => match authority.find(':') {
            Some(at) => authority.split_at(at),
            None => (authority, ""),
        },
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\' | b',')
        })
        && (host.starts_with('[') || !host.contains([':', '[', ']']));
    if !host_ok {
        return None;
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => scheme.default_port(),
        Some(digits)
            if !digits.is_empty()
                && digits.len() <= 5
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            digits.parse().ok()?
        }
        _ => return None,
    };
    Some((host, port))
}

impl<R: Default> Default for CsrfLayer<R> {
    fn default() -> Self {
        CsrfLayer {
            trusted: Arc::default(),
            own_scheme: Scheme::Https,
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
            own_scheme: self.own_scheme,
            on_rejection,
            allowed: self.allowed,
        }
    }

    /// Also trust `origin` (`scheme://host[:port]`, as browsers send it;
    /// a default port is the same as none).
    pub fn trusted_origin(mut self, origin: &str) -> Result<Self, ConfigError> {
        let trimmed = origin.strip_suffix('/').unwrap_or(origin);
        let Some(parsed) = parse_origin(trimmed) else {
            return Err(ConfigError::InvalidOrigin(origin.to_owned()));
        };
        Arc::make_mut(&mut self.trusted).push(TrustedOrigin {
            scheme: parsed.scheme,
            host: parsed.host.to_ascii_lowercase().into_boxed_str(),
            port: parsed.port,
        });
        Ok(self)
    }

    /// The service is reached over plain HTTP (a development set-up): its
    /// own origin is `http://` and the request's `Host` rather than
    /// `https://` and the `Host`. A page served over the other scheme is
    /// another origin, to be listed with
    /// [`trusted_origin`](Self::trusted_origin) if it may send requests.
    pub fn plain_http(mut self) -> Self {
        self.own_scheme = Scheme::Http;
        self
    }

    fn is_trusted(&self, origin: &Origin<'_>) -> bool {
        self.trusted.iter().any(|t| {
            origin.same_as(&Origin {
                scheme: t.scheme,
                host: &t.host,
                port: t.port,
            })
        })
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
        // The one value of a header: `Err` when it is repeated (which one
        // the browser sent cannot be told) or not visible ASCII.
        let single = |name| {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(value), None) => value.to_str().map(Some).map_err(|_| ()),
                (Some(_), Some(_)) => Err(()),
            }
        };
        let (Ok(origin), Ok(fetch_site)) = (
            single(header::ORIGIN),
            single(http::HeaderName::from_static("sec-fetch-site")),
        ) else {
            return false;
        };
        let origin = origin.map(|text| parse_origin(text).ok_or(()));
        match fetch_site {
            Some("same-origin" | "none") => return true,
            Some(_) => return matches!(origin, Some(Ok(o)) if self.is_trusted(&o)),
            None => {}
        }
        let origin = match origin {
            // Neither header: not a browser, so not a forgery.
            None => return true,
            // `null`, or anything that is not an origin.
            Some(Err(())) => return false,
            Some(Ok(origin)) => origin,
        };
        if self.is_trusted(&origin) {
            return true;
        }
        // Same origin: the request's own scheme, its one `Host`, and the
        // port that makes explicit.
        let Ok(Some(host)) = single(header::HOST) else {
            return false;
        };
        parse_authority(host, self.own_scheme).is_some_and(|(host, port)| {
            origin.same_as(&Origin {
                scheme: self.own_scheme,
                host,
                port,
            })
        })
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
