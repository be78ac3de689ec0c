//! IP allow/deny filtering (the inSCADA API) and client-address resolution.
//!
//! [`IpFilterLayer`] resolves the client address ([`ClientIpResolver`]:
//! proxy headers only from trusted proxies), puts it in the request
//! extensions as [`ClientIp`], and answers `403` to addresses the
//! [`IpRules`] refuse. A trusted proxy's forwarding header that holds
//! anything but addresses leaves the client unknown: `400`
//! ([`AddressRejection::Unresolvable`]), never the proxy's own address in
//! its place. The rules compile into merged, sorted ranges looked up
//! in `O(log n)`, and can be replaced while the service runs through an
//! [`IpFilterHandle`] without locking the request path. Without a peer
//! address (the server passes none) it answers `500` naming the set-up
//! mistake. Refusals are [`AddressRejection`]s rendered by the layer's
//! [`OnRejection`] (see [`crate::reject`]).
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
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// An IP network (`ipnet`), for [`IpRanges::new`].
pub use ipnet::IpNet;
pub use ranges::{IpDecision, IpRanges, IpRules};
pub use resolve::{ClientIp, ClientIpResolver, PeerAddr, ProxyHeader};

pub use crate::future::ResponseFuture;
use crate::future::{define_inner_service_accessors, refuse};
use crate::observe::{LazyCounter, Seen, lazy_counter};
pub use crate::reject::AddressRejection;
use crate::reject::{DefaultRejection, OnRejection, Rejection};

#[derive(Debug)]
struct Shared {
    rules: ArcSwap<IpRules>,
    resolver: ClientIpResolver,
    allowed: LazyCounter,
}

/// A [`Layer`] that filters requests by client address; `R` renders
/// refusals.
#[derive(Debug, Clone)]
pub struct IpFilterLayer<R = DefaultRejection> {
    shared: Arc<Shared>,
    on_rejection: R,
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
                allowed: lazy_counter!(
                    "authgate_requests_total",
                    "layer" => "address",
                    "outcome" => "allowed",
                    "reason" => "ok"
                ),
            }),
            on_rejection: DefaultRejection,
        }
    }
}

impl<R> IpFilterLayer<R> {
    /// A handle to replace the rules at run time.
    pub fn handle(&self) -> IpFilterHandle {
        IpFilterHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Renders refusals with `on_rejection` (see [`crate::reject`]); the
    /// rules stay shared with this layer and its handle.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> IpFilterLayer<R2> {
        IpFilterLayer {
            shared: self.shared,
            on_rejection,
        }
    }
}

impl<S, R: Clone> Layer<S> for IpFilterLayer<R> {
    type Service = IpFilter<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        IpFilter {
            inner,
            shared: Arc::clone(&self.shared),
            on_rejection: self.on_rejection.clone(),
        }
    }
}

/// The service made by [`IpFilterLayer`].
#[derive(Debug, Clone)]
pub struct IpFilter<S, R = DefaultRejection> {
    inner: S,
    shared: Arc<Shared>,
    on_rejection: R,
}

impl<S, R> IpFilter<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for IpFilter<S, R>
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let client = self.shared.resolver.resolve_request(&req);
        let reason = match client {
            // No peer address is a server set-up error, and a trusted
            // proxy's unreadable header bad input: neither is a client.
            Err(reason) => reason,
            Ok(ip) => match self.shared.rules.load().decide(ip) {
                IpDecision::Allow => {
                    self.shared.allowed.increment();
                    crate::observe::event!(
                        debug,
                        target: crate::observe::DECISION,
                        layer = "address",
                        outcome = "allowed",
                        client = %ip,
                        "address allowed"
                    );
                    req.extensions_mut().insert(ClientIp(ip));
                    return ResponseFuture::inner(self.inner.call(req));
                }
                IpDecision::Denied | IpDecision::NotAllowed => AddressRejection::NotAllowed,
            },
        };
        let seen = Seen {
            client: client.ok(),
            ..Seen::default()
        };
        ResponseFuture::refused(refuse(
            &self.on_rejection,
            &Rejection::Address(reason),
            seen,
        ))
    }
}
