//! Per-address throttling of login attempts, against credential stuffing
//! across many usernames from one address.
//!
//! [`LoginThrottleLayer`] keeps a keyed GCRA rate limiter (governor) on the
//! client address: [`crate::ip::ClientIp`] when an
//! [`crate::ip::IpFilterLayer`] ran before it, the peer
//! address otherwise. Over the rate the answer is `429` with `Retry-After`.
//! A request whose address is unknown (the server passes no peer address)
//! is refused with `500` naming the set-up mistake, never counted in a
//! shared bucket.
//!
//! The keyed state is bounded: every 1,024 requests, and at most once a
//! second while it holds the configured number of addresses, addresses whose
//! bucket has refilled are pruned; while it is still full, requests from
//! addresses it does not track yet are answered `429` until room frees up, so
//! a flood of distinct addresses can grow neither memory nor the work done
//! per request.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::ip::PeerAddr;
//! use tower_authgate::throttle::LoginThrottleLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(LoginThrottleLayer::per_minute(2)?)
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let attempt = || {
//!     let mut request = Request::new(String::new());
//!     request.extensions_mut().insert(PeerAddr("192.0.2.7:4000".parse::<SocketAddr>().unwrap()));
//!     request
//! };
//! assert_eq!(service.clone().oneshot(attempt()).await?.status(), StatusCode::OK);
//! assert_eq!(service.clone().oneshot(attempt()).await?.status(), StatusCode::OK);
//! let throttled = service.oneshot(attempt()).await?;
//! assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(throttled.headers().contains_key("retry-after"));
//! # Ok(())
//! # }
//! ```

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// governor's rate, for [`LoginThrottleLayer::with_quota`].
pub use governor::Quota;

use crate::error::ConfigError;
pub use crate::future::ResponseFuture;
use crate::future::{define_inner_service_accessors, refuse};
use crate::ip::{ClientIp, ClientIpResolver};
use crate::observe::Seen;
pub use crate::reject::ThrottleRejection;
use crate::reject::{DefaultRejection, OnRejection, Rejection};

/// The default cap on addresses tracked.
pub const DEFAULT_MAX_TRACKED_ADDRESSES: usize = 100_000;

const PRUNE_EVERY: u64 = 1024;

/// governor's DashMap state, shared with the limiter so that membership can
/// be asked without touching a key's state.
#[derive(Clone, Default)]
struct TrackedStore(Arc<DashMapStateStore<IpAddr>>);

impl StateStore for TrackedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for TrackedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Shared {
    limiter: RateLimiter<IpAddr, TrackedStore, DefaultClock>,
    store: TrackedStore,
    clock: DefaultClock,
    max_tracked: AtomicUsize,
    calls: AtomicU64,
    /// When the state was last pruned, in milliseconds since `started`.
    last_prune_ms: AtomicU64,
    started: std::time::Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tracked", &self.limiter.len())
            .field("max_tracked", &self.max_tracked.load(Ordering::Relaxed))
            .finish()
    }
}

/// A [`Layer`] that throttles requests per client address; `R` renders
/// refusals. Clones share the counts: give one throttle, shaped for each
/// API with [`on_rejection`](Self::on_rejection), to every login route.
#[derive(Debug, Clone)]
pub struct LoginThrottleLayer<R = DefaultRejection> {
    shared: Arc<Shared>,
    on_rejection: R,
}

/// What the throttle said of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead.
    Allow,
    /// Wait this many seconds.
    Wait(u64),
}

impl LoginThrottleLayer {
    /// At most `attempts` per minute from one address, in bursts of up to
    /// `attempts`.
    pub fn per_minute(attempts: u32) -> Result<Self, ConfigError> {
        let attempts = NonZeroU32::new(attempts).ok_or(ConfigError::NoAttemptsAllowed)?;
        Ok(Self::with_quota(Quota::per_minute(attempts)))
    }

    /// A throttle with any governor [`Quota`].
    pub fn with_quota(quota: Quota) -> Self {
        let store = TrackedStore::default();
        let clock = DefaultClock::default();
        LoginThrottleLayer {
            shared: Arc::new(Shared {
                limiter: RateLimiter::new(quota, store.clone(), clock.clone()),
                store,
                clock,
                max_tracked: AtomicUsize::new(DEFAULT_MAX_TRACKED_ADDRESSES),
                calls: AtomicU64::new(0),
                last_prune_ms: AtomicU64::new(0),
                started: std::time::Instant::now(),
            }),
            on_rejection: DefaultRejection,
        }
    }
}

impl<R> LoginThrottleLayer<R> {
    /// Renders refusals with `on_rejection` (see [`crate::reject`]); the
    /// counts stay shared with this layer.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> LoginThrottleLayer<R2> {
        LoginThrottleLayer {
            shared: self.shared,
            on_rejection,
        }
    }

    /// Track at most `max` addresses (default
    /// [`DEFAULT_MAX_TRACKED_ADDRESSES`]).
    pub fn max_tracked(self, max: usize) -> Self {
        self.shared.max_tracked.store(max.max(1), Ordering::Relaxed);
        self
    }

    /// The number of addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.shared.limiter.len()
    }

    /// Counts one attempt from `ip`.
    pub fn check(&self, ip: IpAddr) -> ThrottleDecision {
        self.shared.check(ip)
    }
}

impl Shared {
    fn check(&self, ip: IpAddr) -> ThrottleDecision {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed);
        let max_tracked = self.max_tracked.load(Ordering::Relaxed);
        let mut tracked = self.limiter.len();
        if calls.is_multiple_of(PRUNE_EVERY)
            || (tracked >= max_tracked && self.may_prune_when_full())
        {
            self.limiter.retain_recent();
            tracked = self.limiter.len();
        }
        if tracked >= max_tracked && !self.is_tracked(ip) {
            crate::observe::count!("authgate_throttled_total");
            return ThrottleDecision::Wait(60);
        }
        match self.limiter.check_key(&ip) {
            Ok(()) => ThrottleDecision::Allow,
            Err(not_until) => {
                crate::observe::count!("authgate_throttled_total");
                let wait = not_until.wait_time_from(self.clock.now());
                ThrottleDecision::Wait(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }

    /// Pruning walks the whole table: when it is full, do it at most once a
    /// second, so a flood of new addresses cannot make every request pay
    /// for a walk.
    fn may_prune_when_full(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1_000
            && self
                .last_prune_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn is_tracked(&self, ip: IpAddr) -> bool {
        self.store.0.contains_key(&ip)
    }
}

impl<S, R: Clone> Layer<S> for LoginThrottleLayer<R> {
    type Service = LoginThrottle<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginThrottle {
            inner,
            shared: Arc::clone(&self.shared),
            on_rejection: self.on_rejection.clone(),
        }
    }
}

/// The service made by [`LoginThrottleLayer`].
#[derive(Debug, Clone)]
pub struct LoginThrottle<S, R = DefaultRejection> {
    inner: S,
    shared: Arc<Shared>,
    on_rejection: R,
}

impl<S, R> LoginThrottle<S, R> {
    define_inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for LoginThrottle<S, R>
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
        let ip = req
            .extensions()
            .get::<ClientIp>()
            .map(|c| c.0)
            .or_else(|| ClientIpResolver::peer(&req).map(|ip| ip.to_canonical()));
        let reason = match ip.map(|ip| self.shared.check(ip)) {
            Some(ThrottleDecision::Allow) => {
                crate::observe::count!(
                    "authgate_requests_total",
                    "layer" => "throttle",
                    "outcome" => "allowed",
                    "reason" => "ok"
                );
                return ResponseFuture::inner(self.inner.call(req));
            }
            Some(ThrottleDecision::Wait(retry_after)) => {
                ThrottleRejection::TooManyAttempts { retry_after }
            }
            // A server set-up error, never a shared bucket.
            None => ThrottleRejection::UnknownPeer,
        };
        let seen = Seen {
            client: ip,
            ..Seen::default()
        };
        ResponseFuture::refused(refuse(
            &self.on_rejection,
            &Rejection::Throttle(reason),
            seen,
        ))
    }
}
