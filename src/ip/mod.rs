//! IP allow/deny filtering (document 000) and client-address resolution.
//!
//! [`IpFilterLayer`] resolves the client address ([`ClientIpResolver`]:
//! proxy headers only from trusted proxies), puts it in the request
//! extensions as [`ClientIp`], and answers `403` to addresses the
//! [`IpRules`] refuse. The rules compile into merged, sorted ranges looked up
//! in `O(log n)`, and can be replaced while the service runs through an
//! [`IpFilterHandle`] without locking the request path.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::ip::{ClientIpResolver, IpFilterLayer, IpRanges, IpRules, PeerAddr};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = IpRules::parse("10.0.0.0/8, 2001:db8::/32", "10.66.0.0/16")?;
//! let resolver = ClientIpResolver::new().trusted_proxies(IpRanges::parse_list("127.0.0.1")?);
//! let layer = IpFilterLayer::new(rules, resolver);
//! let handle = layer.handle();
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! let from = |addr: &str| {
//!     let mut request = Request::new(String::new());
//!     request.extensions_mut().insert(PeerAddr(addr.parse::<SocketAddr>().unwrap()));
//!     request
//! };
//! assert_eq!(service.clone().oneshot(from("10.1.2.3:5000")).await?.status(), StatusCode::OK);
//! assert_eq!(service.clone().oneshot(from("10.66.0.1:5000")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(service.clone().oneshot(from("192.0.2.1:5000")).await?.status(), StatusCode::FORBIDDEN);
//!
//! // An administrator opens the filter without a restart.
//! handle.replace(IpRules::allow_all());
//! assert_eq!(service.oneshot(from("192.0.2.1:5000")).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod ranges;
mod resolve;

use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

pub use ranges::{IpDecision, IpRanges, IpRules};
pub use resolve::{ClientIp, ClientIpResolver, PeerAddr, ProxyHeader};

use crate::future::{InnerOrRejected, json_error};

/// The response future of [`IpFilter`].
pub type ResponseFuture<F, B> = InnerOrRejected<F, B>;

#[derive(Debug)]
struct Shared {
    rules: ArcSwap<IpRules>,
    resolver: ClientIpResolver,
}

/// A [`Layer`] that filters requests by client address.
#[derive(Debug, Clone)]
pub struct IpFilterLayer {
    shared: Arc<Shared>,
}

/// Replaces the rules of an [`IpFilterLayer`] (and every service it made)
/// while requests are served.
#[derive(Debug, Clone)]
pub struct IpFilterHandle {
    shared: Arc<Shared>,
}

impl IpFilterHandle {
    /// Puts `rules` in force for the next request.
    pub fn replace(&self, rules: IpRules) {
        self.shared.rules.store(Arc::new(rules));
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<IpRules> {
        self.shared.rules.load_full()
    }
}

impl IpFilterLayer {
    /// A filter applying `rules` to the address `resolver` finds.
    pub fn new(rules: IpRules, resolver: ClientIpResolver) -> Self {
        IpFilterLayer {
            shared: Arc::new(Shared {
                rules: ArcSwap::from_pointee(rules),
                resolver,
            }),
        }
    }

    /// A handle to replace the rules at run time.
    pub fn handle(&self) -> IpFilterHandle {
        IpFilterHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> Layer<S> for IpFilterLayer {
    type Service = IpFilter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IpFilter {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`IpFilterLayer`].
#[derive(Debug, Clone)]
pub struct IpFilter<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> IpFilter<S> {
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IpFilter<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(ip) = self.shared.resolver.resolve_request(&req) else {
            // A server set-up error, not bad input: say what is missing.
            return ResponseFuture::rejected(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the peer address is unknown: serve with `into_make_service_with_connect_info::<SocketAddr>()` or insert `PeerAddr`",
            ));
        };
        match self.shared.rules.load().decide(ip) {
            IpDecision::Allow => {
                req.extensions_mut().insert(ClientIp(ip));
                ResponseFuture::inner(self.inner.call(req))
            }
            IpDecision::Denied | IpDecision::NotAllowed => ResponseFuture::rejected(json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "access from this address is not allowed",
            )),
        }
    }
}
