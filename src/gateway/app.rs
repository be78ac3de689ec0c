//! The gateway assembled from [`Settings`]: the login presets, the guard
//! (the crate's own layers), the decision endpoint, the proxy and
//! `/healthz`, on one axum router.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tower::{ServiceBuilder, ServiceExt};
use tower_service::Service;

use crate::BoxFuture;
use crate::auth::Auth;
use crate::auth::{AuthLayer, CookieRenewal};
use crate::authz::{Require, RequireLayer, Rules};
use crate::cookie::CookieSettings;
use crate::csrf::Csrf;
use crate::csrf::CsrfLayer;
use crate::ip::{ClientIpResolver, IpFilter, IpFilterHandle, IpFilterLayer, PeerAddr};
use crate::lockout::Lockout;
use crate::login::{AuthClaims, JwtIssuer, Lifetimes, LoginFlow, TokenIssuer};
use crate::otp::TotpVerifier;
use crate::reject::{DefaultRejection, JsonRejection, OnRejection, Rejection};
use crate::schemes::{auth_token, bearer_pair, cookie_session, pascal_case, x_auth_token};
use crate::store::{
    LoginCodeStore, MemoryLoginCodes, MemoryRevocations, MemoryRotations, MemoryServiceAccounts,
    RevocationStore, RotationStore, ServiceAccountStore,
};
use crate::tenant::SelectSpace;
use crate::tenant::SelectSpaceLayer;
use crate::throttle::LoginThrottleLayer;
use crate::token::{
    KeySet, KeySource, TokenKind, TokenSource, TokenSources, Verifier, VerifyingKey,
};

use super::config::{
    ErrorStyle, IdentityHeaders, LoginSettings, PresetKind, Settings, SourceSetting,
};
use super::identity::{GatewayClaims, identity_field, identity_headers, same_field};
use super::proxy::{Forward, gateway_error, upgrade_other_than_websocket};
use super::target::{
    PathShape, ValidTargetLayer, check_request, matches_public, original_target, refused,
};

/// Why the gateway could not be assembled from valid settings (a store or
/// key source that cannot start).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl BuildError {
    fn new(what: &str, err: impl std::fmt::Display) -> Self {
        BuildError(format!("{what}: {err}"))
    }
}

/// The guard's verifying keys, replaced on `SIGHUP`: a [`KeySource`] whose
/// generation changes with every replacement, so the verifier's token
/// cache never serves a token verified under keys no longer in force.
struct ReloadableKeys {
    keys: ArcSwap<KeySet>,
    generation: AtomicU64,
    /// Keys made at start (the Workflow API's restart-scoped key), kept
    /// across reloads.
    fixed: Vec<VerifyingKey>,
}

impl ReloadableKeys {
    fn key_set(
        fixed: &[VerifyingKey],
        loaded: &[VerifyingKey],
    ) -> Result<KeySet, crate::ConfigError> {
        KeySet::new(fixed.iter().chain(loaded).cloned())
    }

    fn replace(&self, loaded: &[VerifyingKey]) -> Result<(), crate::ConfigError> {
        let set = Self::key_set(&self.fixed, loaded)?;
        self.keys.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

impl KeySource for ReloadableKeys {
    fn current(&self) -> Result<Arc<KeySet>, crate::TokenError> {
        Ok(self.keys.load_full())
    }

    fn refresh_for_unknown_key(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// How every refusal of the guard is rendered, as `[guard] errors` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatewayRejection(ErrorStyle);

impl OnRejection<Body> for GatewayRejection {
    fn on_rejection(&self, rejection: &Rejection) -> Response<Body> {
        match self.0 {
            ErrorStyle::Json => JsonRejection.on_rejection(rejection),
            ErrorStyle::Empty => DefaultRejection.on_rejection(rejection),
            ErrorStyle::Inscada => cookie_session::InscadaFormat.on_rejection(rejection),
            ErrorStyle::Core => bearer_pair::CoreFormat.on_rejection(rejection),
            ErrorStyle::Nx => pascal_case::NxFormat.on_rejection(rejection),
            ErrorStyle::RegScale => auth_token::RegScaleFormat.on_rejection(rejection),
            ErrorStyle::Workflow => x_auth_token::WorkflowFormat.on_rejection(rejection),
            ErrorStyle::Grpc => crate::reject::GrpcRejection.on_rejection(rejection),
        }
    }
}

/// Sends a request to the stack of its route: the full guard, or, for a
/// public path, the address filter alone.
#[derive(Clone)]
struct ByPolicy<G, P> {
    guarded: G,
    public: P,
    public_paths: Arc<[String]>,
    /// The `[[rule]]`s, for their public ones.
    rules: Rules,
    /// The format of a refused request line or `Host`.
    errors: ErrorStyle,
}

impl<G, P> Service<Request> for ByPolicy<G, P>
where
    G: Service<Request, Response = Response, Error = Infallible> + Clone,
    P: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = PolicyFuture<tower::util::Oneshot<G, Request>, tower::util::Oneshot<P, Request>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.dispatch(request)
    }
}

impl<G, P> ByPolicy<G, P>
where
    G: Service<Request, Response = Response, Error = Infallible> + Clone,
    P: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    /// Calls a clone of the stack `request`'s path belongs to, once its
    /// method, target and `Host` pass [`check_request`].
    fn dispatch(
        &self,
        mut request: Request,
    ) -> PolicyFuture<tower::util::Oneshot<G, Request>, tower::util::Oneshot<P, Request>> {
        let shape = match check_request(&mut request) {
            Ok(shape) => shape,
            Err(why) => {
                return PolicyFuture::Refused {
                    response: Some(refused(self.errors, why)),
                };
            }
        };
        // Only a plain path may be public (see `target`).
        if shape == PathShape::Plain
            && (matches_public(request.uri().path(), &self.public_paths)
                || self.rules.is_public(request.method(), request.uri().path()))
        {
            PolicyFuture::Public {
                future: self.public.clone().oneshot(request),
            }
        } else {
            PolicyFuture::Guarded {
                future: self.guarded.clone().oneshot(request),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ByPolicy`]: the guarded or the public stack's, or
    /// the refusal of a request line or `Host`.
    #[project = PolicyProj]
    pub(crate) enum PolicyFuture<G, P> {
        Guarded { #[pin] future: G },
        Public { #[pin] future: P },
        Refused { response: Option<Response> },
    }
}

impl<G, P> std::future::Future for PolicyFuture<G, P>
where
    G: std::future::Future<Output = Result<Response, Infallible>>,
    P: std::future::Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PolicyProj::Guarded { future } => future.poll(cx),
            PolicyProj::Public { future } => future.poll(cx),
            PolicyProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

/// The decision endpoint's answer for a request the guard let through:
/// `200` with the identity headers.
#[derive(Clone)]
struct Allow {
    identity: Arc<IdentityHeaders>,
    authenticated: bool,
}

impl Service<Request> for Allow {
    type Response = Response;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let response = match identity_headers(&request, &self.identity, self.authenticated) {
            Ok(headers) => {
                let mut response = Response::new(Body::empty());
                *response.headers_mut() = headers;
                response
            }
            Err(err) => {
                tracing::error!(
                    reason = err.0,
                    "the decision endpoint cannot state an identity"
                );
                gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", err.0)
            }
        };
        std::future::ready(Ok(response))
    }
}

/// The guard: the same layers for the proxy and the decision endpoint.
#[derive(Clone)]
struct Guard {
    ip_filter: IpFilterLayer<GatewayRejection>,
    auth: AuthLayer<GatewayClaims, GatewayRejection>,
    csrf: CsrfLayer<GatewayRejection>,
    space: SelectSpaceLayer<GatewayClaims, GatewayRejection>,
    /// The `[[rule]]` table, after the space is selected.
    require: RequireLayer<GatewayRejection>,
    /// `[authz] cedar`: the Cedar policies after the rules.
    cedar: Option<RequireLayer<GatewayRejection>>,
    public_paths: Arc<[String]>,
    rules: Rules,
    errors: ErrorStyle,
}

/// A terminal service behind the whole guard.
type Guarded<T> = IpFilter<
    Auth<
        Csrf<
            SelectSpace<
                Require<tower::util::Either<Require<T, GatewayRejection>, T>, GatewayRejection>,
                GatewayClaims,
                GatewayRejection,
            >,
            GatewayRejection,
        >,
        GatewayClaims,
        GatewayRejection,
    >,
    GatewayRejection,
>;

/// `T` on the guarded routes and, on public paths, behind the address
/// filter alone.
type GuardService<T> = ByPolicy<Guarded<T>, IpFilter<T, GatewayRejection>>;

/// The future of [`GuardService`].
type GuardFuture<T> = PolicyFuture<
    tower::util::Oneshot<Guarded<T>, Request>,
    tower::util::Oneshot<IpFilter<T, GatewayRejection>, Request>,
>;

impl Guard {
    /// `terminal` behind the guard: the address filter, the token, the
    /// cross-site check and the space, in that order; the address filter
    /// alone on public paths (`public` is `terminal` for such routes).
    fn wrap<T>(&self, terminal: T, public: T) -> GuardService<T> {
        let guarded = ServiceBuilder::new()
            .layer(self.ip_filter.clone())
            .layer(self.auth.clone())
            .layer(self.csrf.clone())
            .layer(self.space.clone())
            .layer(self.require.clone())
            .option_layer(self.cedar.clone())
            .service(terminal);
        let public = ServiceBuilder::new()
            .layer(self.ip_filter.clone())
            .service(public);
        ByPolicy {
            guarded,
            public,
            public_paths: Arc::clone(&self.public_paths),
            rules: self.rules.clone(),
            errors: self.errors,
        }
    }
}

/// The decision endpoint, a service of its own on its route (no
/// extractor runs before it): rebuilds the original request from the
/// proxy's headers and runs it through the guard.
#[derive(Clone)]
struct Decision {
    guard: GuardService<Allow>,
    trusted_proxies: Arc<crate::ip::IpRanges>,
    identity: Arc<IdentityHeaders>,
    /// The header a client picks its space with: its own input.
    space_header: HeaderName,
}

impl Service<Request> for Decision {
    type Response = Response;
    type Error = Infallible;
    type Future = DecisionFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.judge(request)
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Decision`]: the guard's, or an answer given before
    /// the guard ran.
    #[project = DecisionProj]
    enum DecisionFuture {
        Guard { #[pin] future: GuardFuture<Allow> },
        Answered { #[pin] future: std::future::Ready<Result<Response, Infallible>> },
    }
}

impl std::future::Future for DecisionFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DecisionProj::Guard { future } => future.poll(cx),
            DecisionProj::Answered { future } => future.poll(cx),
        }
    }
}

const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The headers that describe the original request to the decision
/// endpoint: the method and target of nginx's family, then of Caddy's and
/// Traefik's, then the host.
static DESCRIBING: [HeaderName; 5] = [
    X_ORIGINAL_METHOD,
    X_ORIGINAL_URI,
    X_FORWARDED_METHOD,
    X_FORWARDED_URI,
    X_FORWARDED_HOST,
];

/// The one item of `values`: `None` when there is none, an error when a
/// header describing the original request is repeated.
fn only<T>(mut values: impl Iterator<Item = T>) -> Result<Option<T>, &'static str> {
    let first = values.next();
    if values.next().is_some() {
        return Err("a header describing the original request is repeated");
    }
    Ok(first)
}

/// Takes every value of `name` out of `headers`: `None` when absent, the
/// value when there is one, an error when the header is repeated. One hash
/// lookup, and the value is moved out, not copied.
fn take_single(
    headers: &mut HeaderMap,
    name: HeaderName,
) -> Result<Option<HeaderValue>, &'static str> {
    match headers.entry(name) {
        http::header::Entry::Vacant(_) => Ok(None),
        http::header::Entry::Occupied(entry) => only(entry.remove_entry_mult().1),
    }
}

/// The original request a forward-auth proxy describes: its method and
/// target from `X-Original-Method` / `X-Original-URI` (nginx) or
/// `X-Forwarded-Method` / `X-Forwarded-Uri` (Caddy, Traefik), its host from
/// `X-Forwarded-Host` or `Host`. Both families at once, a repeated header
/// or a missing one leave it undescribed: the endpoint cannot judge.
/// `parts` becomes the original request's head: the describing headers
/// removed, the rest (credentials, `X-Space`, `Origin`, `X-Forwarded-For`)
/// kept.
fn original_request(parts: &mut http::request::Parts) -> Result<(), &'static str> {
    let headers = &mut parts.headers;
    // Which describing headers are there, in one pass over the names: the
    // ones absent (most of them) then cost no lookup.
    let mut present = [false; 5];
    for name in headers.keys() {
        if let Some(at) = DESCRIBING.iter().position(|describing| describing == name) {
            present[at] = true;
        }
    }
    let mut take = |at: usize| match present[at] {
        true => take_single(headers, DESCRIBING[at].clone()),
        false => Ok(None),
    };
    let nginx = (take(0)?, take(1)?);
    let forwarded = (take(2)?, take(3)?);
    let (method, uri) = match (nginx, forwarded) {
        ((None, None), (None, None)) => {
            return Err(
                "the proxy did not describe the original request (X-Original-URI and \
                        X-Original-Method, or X-Forwarded-Uri and X-Forwarded-Method)",
            );
        }
        ((Some(method), Some(uri)), (None, None)) | ((None, None), (Some(method), Some(uri))) => {
            (method, uri)
        }
        ((Some(_), Some(_)), _) | (_, (Some(_), Some(_))) => {
            return Err("the original request is described twice (X-Original-* and X-Forwarded-*)");
        }
        _ => return Err("the original request's method or target is missing"),
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| "the original method is malformed")?;
    let uri = original_target(&method, uri)?;
    if present[4]
        && let Some(host) = only(headers.get_all(X_FORWARDED_HOST).iter())?.cloned()
    {
        // Held to the rule of `Host` by the guard's dispatch (`check_request`).
        headers.insert(header::HOST, host);
    }
    headers.remove(header::CONTENT_LENGTH);
    parts.method = method;
    parts.uri = uri;
    Ok(())
}

/// Refuses an original request that carries an identity header, as the
/// proxy in front would pass it to the upstream beside the identity it
/// copies from the decision: nginx and Caddy replace the configured names
/// only, so another spelling (`X_Auth_Roles`, which a CGI, WSGI or Rack
/// upstream reads as `X-Auth-Roles`) would reach the upstream, and so would
/// a copy under a name the proxy is not told to copy; a `Connection` naming
/// an identity header or `Host` would make the proxy delete what it
/// copied, and a `Trailer` naming one announces a trailer the endpoint
/// never sees (it gets no body). The space header is the client's own
/// input under its name (`space_header`), never under another spelling.
/// An `Upgrade` other than `websocket` is refused too: the proxy in front
/// would pass it on, and only WebSocket is tunnelled. One pass over the
/// names; the fields that name others are read only when present.
fn fields_the_front_would_pass_on(
    headers: &HeaderMap,
    names: &IdentityHeaders,
    space_header: &HeaderName,
) -> Result<(), &'static str> {
    // `Connection` and `Trailer` are read only when present: the proxies
    // in front rarely pass them.
    let mut naming_fields = false;
    let mut upgrade = false;
    for name in headers.keys() {
        naming_fields |= *name == header::CONNECTION || *name == header::TRAILER;
        upgrade |= *name == header::UPGRADE;
        if let Some(identity) = identity_field(name, names)
            && !(name == identity && name == space_header)
        {
            return Err("the request carries an identity header, or another spelling of one");
        }
    }
    if upgrade && upgrade_other_than_websocket(headers) {
        // The proxy in front would pass it on: only WebSocket is tunnelled.
        return Err("only websocket upgrades are passed on");
    }
    if !naming_fields {
        return Ok(());
    }
    let names_identity_or_host = |option: &str| {
        let option = option.trim().as_bytes();
        same_field(option, b"host")
            || names
                .names()
                .any(|name| same_field(option, name.as_str().as_bytes()))
    };
    let names_one = |field| {
        headers
            .get_all(field)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(names_identity_or_host)
    };
    if names_one(header::CONNECTION) {
        return Err("the request's Connection header names an identity header or Host");
    }
    if names_one(header::TRAILER) {
        return Err("the request announces an identity header or Host as a trailer");
    }
    Ok(())
}

impl Decision {
    /// The guard's future for the original request `request` describes, or
    /// the answer when it cannot be judged.
    fn judge(&self, request: Request) -> DecisionFuture {
        let answer = |response| DecisionFuture::Answered {
            future: std::future::ready(Ok(response)),
        };
        let Some(peer) = request.extensions().get::<PeerAddr>().copied() else {
            return answer(gateway_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server passed no peer address",
            ));
        };
        if !self.trusted_proxies.contains(peer.0.ip().to_canonical()) {
            // Its headers cannot be believed, so the original request is unknown.
            return answer(gateway_error(
                StatusCode::FORBIDDEN,
                "untrusted_proxy",
                "the decision endpoint answers the proxies listed in server.trusted_proxies only",
            ));
        }
        let (mut parts, _) = request.into_parts();
        let described =
            fields_the_front_would_pass_on(&parts.headers, &self.identity, &self.space_header)
                .and_then(|()| original_request(&mut parts));
        if let Err(why) = described {
            tracing::warn!(reason = why, "the decision endpoint cannot judge a request");
            return answer(gateway_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                why,
            ));
        }
        // Only the peer address goes on: nothing a route left in the
        // extensions may pass for a check. (`clear` keeps the map's room for
        // the marks the guard's layers leave.)
        parts.extensions.clear();
        parts.extensions.insert(peer);
        DecisionFuture::Guard {
            future: self
                .guard
                .dispatch(Request::from_parts(parts, Body::empty())),
        }
    }
}

/// The assembled gateway: its router and the handles `SIGHUP` reloads.
pub struct Gateway {
    router: Router,
    reload: ReloadHandle,
    lockout: Option<Lockout>,
    /// HTTP/2 with prior knowledge on the plain listener.
    h2c: bool,
}

/// Puts new address rules and verifying keys in force in a running
/// [`Gateway`].
#[derive(Clone)]
pub struct ReloadHandle {
    ip_filter: IpFilterHandle,
    keys: Arc<ReloadableKeys>,
    /// The TLS certificate and key in force, with `[server.tls]`.
    tls: Option<super::tls::LiveServerConfig>,
    /// The `notAfter` of that certificate, Unix seconds.
    tls_not_after: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// The Cedar policies in force, with `[authz] cedar`.
    #[cfg(feature = "cedar")]
    cedar: Option<crate::authz::CedarPolicies>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle").finish_non_exhaustive()
    }
}

impl ReloadHandle {
    /// Puts the address rules, verifying keys and TLS certificate of
    /// `settings` in force for the next request (the certificate for the
    /// next connection) on `SIGHUP`; everything else needs a restart.
    /// Turning TLS on or off is refused: that takes a restart.
    pub fn reload(&self, settings: &Settings) -> Result<(), BuildError> {
        if self.tls.is_some() != settings.tls.is_some() {
            return Err(BuildError::new(
                "server.tls",
                "turning TLS on or off takes a restart",
            ));
        }
        #[cfg(feature = "cedar")]
        match (&self.cedar, &settings.cedar) {
            (None, None) => {}
            (Some(live), Some(new)) if live.files() == new.files() => {}
            _ => {
                return Err(BuildError::new(
                    "authz.cedar",
                    "adding, removing or renaming the Cedar files takes a restart",
                ));
            }
        }
        if let (Some(live), Some(tls)) = (&self.tls, &settings.tls) {
            live.store(Arc::clone(&tls.config));
        }
        if let (Some(live), Some(tls)) = (&self.tls_not_after, &settings.tls) {
            live.store(tls.not_after, std::sync::atomic::Ordering::Relaxed);
        }
        self.keys
            .replace(&settings.reloadable.verifying_keys)
            .map_err(|err| BuildError::new("keys", err))?;
        self.ip_filter.replace(settings.reloadable.ip_rules.clone());
        // The files were read and validated as the settings were loaded.
        #[cfg(feature = "cedar")]
        if let (Some(live), Some(new)) = (&self.cedar, &settings.cedar) {
            live.adopt(new);
        }
        Ok(())
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// The Cedar layer of `[authz] cedar`, when configured.
#[cfg(feature = "cedar")]
fn cedar_layer(
    settings: &Settings,
    style: GatewayRejection,
) -> Result<Option<RequireLayer<GatewayRejection>>, BuildError> {
    settings
        .cedar
        .as_ref()
        .map(|policies| {
            Ok(RequireLayer::cedar(policies.clone())
                .realm(&settings.realm)
                .map_err(|err| BuildError::new("guard.realm", err))?
                .on_rejection(style))
        })
        .transpose()
}

#[cfg(not(feature = "cedar"))]
#[allow(clippy::unnecessary_wraps)]
fn cedar_layer(
    _settings: &Settings,
    _style: GatewayRejection,
) -> Result<Option<RequireLayer<GatewayRejection>>, BuildError> {
    Ok(None)
}

/// The stores every login preset shares.
struct SharedStores {
    revocations: Arc<dyn RevocationStore>,
    rotations: Arc<dyn RotationStore>,
    service_accounts: Arc<dyn ServiceAccountStore>,
    login_codes: Arc<dyn LoginCodeStore>,
    lockout: Option<Lockout>,
    totp: TotpVerifier,
}

fn shared_stores(settings: &Settings) -> Result<SharedStores, BuildError> {
    let lockout = settings.lockout.map(Lockout::new);
    match &settings.redis {
        None => Ok(SharedStores {
            revocations: Arc::new(MemoryRevocations::default()),
            rotations: Arc::new(MemoryRotations::default()),
            service_accounts: Arc::new(MemoryServiceAccounts::default()),
            login_codes: Arc::new(MemoryLoginCodes::default()),
            lockout,
            totp: TotpVerifier::default(),
        }),
        #[cfg(feature = "redis")]
        Some((url, prefix)) => {
            use crate::store::{RedisStore, RedisStoreConfig};
            let store = Arc::new(
                RedisStore::open(url, RedisStoreConfig::default().with_prefix(prefix.clone()))
                    .map_err(|err| BuildError::new("redis.url", err))?,
            );
            Ok(SharedStores {
                revocations: store.clone(),
                rotations: store.clone(),
                service_accounts: store.clone(),
                login_codes: store.clone(),
                lockout: lockout.map(|lockout| lockout.with_store(store.clone())),
                totp: TotpVerifier::default().with_replay_guard(store),
            })
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(BuildError(
            "redis.url: built without the `redis` feature".into(),
        )),
    }
}

#[cfg(feature = "jwks")]
fn external_login(
    external: &super::config::ExternalLoginSettings,
) -> Result<Arc<dyn crate::login::ExternalTokenVerifier>, BuildError> {
    use crate::login::AllowedSubjects;
    use crate::token::jwks::{JwksConfig, JwksSource};
    let source = match &external.jwks_url {
        Some(url) => JwksSource::from_url(url, JwksConfig::default()),
        None => JwksSource::discover(&external.issuer, JwksConfig::default()),
    }
    .map_err(|err| BuildError::new("external_login", err))?;
    source
        .start()
        .map_err(|err| BuildError::new("external_login", err))?;
    let verifier = Verifier::builder_with_source(Arc::new(source))
        .issuer(external.issuer.clone())
        .audience(external.audience.clone())
        .any_kind()
        .build()
        .map_err(|err| BuildError::new("external_login", err))?;
    Ok(Arc::new(AllowedSubjects::new(
        verifier,
        external.allowed_subjects.clone(),
    )))
}

#[cfg(not(feature = "jwks"))]
fn external_login(
    _external: &super::config::ExternalLoginSettings,
) -> Result<Arc<dyn crate::login::ExternalTokenVerifier>, BuildError> {
    Err(BuildError(
        "external_login: built without the `jwks` feature".into(),
    ))
}

/// The login routes of every configured preset, their keys, and what the
/// guard needs from them.
struct Logins {
    router: Router,
    /// Keys made at start.
    fixed_keys: Vec<VerifyingKey>,
    renewal: Option<CookieRenewal>,
    revocations: Arc<dyn RevocationStore>,
    lockout: Option<Lockout>,
    /// A flow over the users file and the shared revocations, for the
    /// administrators' sign-out everywhere (any preset's: every token is
    /// capped at the lifetime a subject's revocation covers).
    sign_out: Option<LoginFlow>,
}

/// The administrators' route that signs one user out everywhere.
pub(crate) const SIGN_OUT_PATH: &str = "/_authgate/users/{username}/sign-out";

/// `POST /_authgate/users/{username}/sign-out`: every token of `username`
/// issued until now stops working at once, on every preset and instance
/// sharing the revocations (its next sign-in works).
async fn sign_out_everywhere(
    flow: LoginFlow,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> Response {
    match flow.sign_out_everywhere(&username).await {
        Ok(cut_off) => {
            tracing::info!(user = %username, cut_off, "signed out everywhere");
            let body = serde_json::json!({"username": username, "signedOutAt": cut_off});
            let mut response = Response::new(Body::from(body.to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => gateway_error(err.status(), err.kind(), &err.public_message()),
    }
}

fn lifetimes(login: &LoginSettings, default: Lifetimes) -> Lifetimes {
    let mut lifetimes = default;
    if let Some(access) = login.access_seconds {
        lifetimes = lifetimes.with_access(access);
    }
    if let Some(refresh) = login.refresh_seconds {
        lifetimes = lifetimes.with_refresh(refresh);
    }
    lifetimes
}

fn mount(router: Router, prefix: &str) -> Router {
    if prefix.is_empty() {
        router
    } else {
        Router::new().nest(prefix, router)
    }
}

fn build_logins(settings: &Settings, ip_filter: &IpFilterLayer) -> Result<Logins, BuildError> {
    let stores = shared_stores(settings)?;
    let mut logins = Logins {
        router: Router::new(),
        fixed_keys: Vec::new(),
        renewal: None,
        revocations: Arc::clone(&stores.revocations),
        lockout: stores.lockout.clone(),
        sign_out: None,
    };
    if settings.logins.is_empty() {
        return Ok(logins);
    }
    let users = settings
        .users
        .as_ref()
        .ok_or_else(|| BuildError("users.file: the login presets need a users file".into()))?;
    tracing::info!(accounts = users.len(), "users file read");
    let users = Arc::new(
        users
            .to_store()
            .map_err(|err| BuildError::new("users.file", err))?,
    );
    let throttle = match settings.throttle_per_minute {
        0 => None,
        attempts => Some(
            LoginThrottleLayer::per_minute(attempts)
                .map_err(|err| BuildError::new("throttle", err))?,
        ),
    };
    let cookies = if settings.development {
        CookieSettings::default().development()
    } else {
        CookieSettings::default()
    };
    for login in &settings.logins {
        let key = match (&settings.signing_key, login.preset) {
            (_, PresetKind::XAuthToken) if login.restart_scoped_key => {
                let key = x_auth_token::XAuthToken::restart_scoped_key()
                    .map_err(|err| BuildError::new("x_auth_token", err))?
                    .with_kid(format!("restart-{}", uuid::Uuid::new_v4()));
                logins.fixed_keys.push(key.verifying_key());
                key
            }
            (Some(key), _) => key.clone(),
            (None, _) => {
                return Err(BuildError(
                    "keys.signing_key: required by the login presets".into(),
                ));
            }
        };
        let issuer: Arc<dyn TokenIssuer> = Arc::new(
            JwtIssuer::new(key, login.issuer.clone())
                .map_err(|err| BuildError::new("login issuer", err))?
                .with_lifetimes(lifetimes(login, Lifetimes::default()))
                .with_revocation_store(Arc::clone(&stores.revocations))
                .with_rotation_store(Arc::clone(&stores.rotations)),
        );
        let mut flow = LoginFlow::new(users.clone(), Arc::clone(&issuer))
            .with_totp_verifier(stores.totp.clone());
        flow = match &stores.lockout {
            Some(lockout) => flow.with_lockout(lockout.clone()),
            None => flow.without_lockout(),
        };
        if logins.sign_out.is_none() {
            logins.sign_out = Some(flow.clone());
        }
        let body_read_timeout = settings.connections.body_read_timeout;
        let guards = |routes: Router, format| {
            apply_login_guards(routes, format, ip_filter, throttle.as_ref()).route_layer(
                axum::middleware::from_fn(move |request, next| {
                    super::serve::login_body_deadline(body_read_timeout, request, next)
                }),
            )
        };
        let routes = match login.preset {
            PresetKind::CookieSession => {
                let mut session =
                    cookie_session::CookieSession::new(flow).with_cookies(cookies.clone());
                if login.access_seconds.is_some() || login.refresh_seconds.is_some() {
                    // The document's 300 and 86 400 seconds unless configured.
                    session = session.with_lifetimes(
                        login.access_seconds.unwrap_or(300),
                        login.refresh_seconds.unwrap_or(86_400),
                    );
                }
                if login.host_prefix {
                    session = session
                        .with_host_prefix()
                        .map_err(|err| BuildError::new("cookie_session.host_prefix", err))?;
                }
                let access = session.access_cookie_name().to_owned();
                logins.renewal = Some(
                    session
                        .cookie_renewal()
                        .map_err(|err| BuildError::new("cookie_session", err))?,
                );
                let mut routes = guards(session.router(), LoginFormat::Inscada);
                if let Some(lockout) = &stores.lockout {
                    // Locked accounts, for administrators with an access token.
                    let admin = AuthLayer::<AuthClaims>::new(issuer.access_verifier())
                        .sources(
                            TokenSources::new([
                                TokenSource::try_cookie(access)
                                    .map_err(|err| BuildError::new("cookie_session", err))?,
                                TokenSource::bearer(),
                            ])
                            .map_err(|err| BuildError::new("cookie_session", err))?,
                        )
                        .revocations(Arc::clone(&stores.revocations))
                        .on_rejection(cookie_session::InscadaFormat);
                    routes = routes.merge(
                        cookie_session::locked_users_router(lockout.clone())
                            .route_layer(admin)
                            .route_layer(
                                ip_filter
                                    .clone()
                                    .on_rejection(cookie_session::InscadaFormat),
                            ),
                    );
                }
                routes
            }
            PresetKind::BearerPair => {
                let mut core = bearer_pair::BearerPair::new(flow);
                if let Some(external) = &settings.external_login {
                    core = core.with_external_login(external_login(external)?);
                }
                guards(core.router(), LoginFormat::Core)
            }
            PresetKind::PascalCase => {
                let mut nx = pascal_case::PascalCase::new(flow)
                    .with_login_code_store(Arc::clone(&stores.login_codes))
                    .with_cookies(cookies.clone());
                if let Some(seconds) = login.keep_logged_in_seconds {
                    nx = nx.with_keep_logged_in(seconds);
                }
                guards(nx.router(), LoginFormat::Nx)
            }
            PresetKind::AuthToken => guards(
                auth_token::AuthToken::new(flow)
                    .with_service_account_store(Arc::clone(&stores.service_accounts))
                    .router(),
                LoginFormat::RegScale,
            ),
            PresetKind::XAuthToken => {
                let mut workflow = x_auth_token::XAuthToken::new(flow);
                if login.deprecated_get {
                    workflow = workflow.with_deprecated_get();
                }
                guards(workflow.router(), LoginFormat::Workflow)
            }
        };
        logins.router = logins.router.merge(mount(routes, &login.prefix));
    }
    Ok(logins)
}

/// The error format of a login preset's routes.
#[derive(Clone, Copy)]
enum LoginFormat {
    Inscada,
    Core,
    Nx,
    RegScale,
    Workflow,
}

fn apply_login_guards(
    routes: Router,
    format: LoginFormat,
    ip_filter: &IpFilterLayer,
    throttle: Option<&LoginThrottleLayer>,
) -> Router {
    let style = GatewayRejection(match format {
        LoginFormat::Inscada => ErrorStyle::Inscada,
        LoginFormat::Core => ErrorStyle::Core,
        LoginFormat::Nx => ErrorStyle::Nx,
        LoginFormat::RegScale => ErrorStyle::RegScale,
        LoginFormat::Workflow => ErrorStyle::Workflow,
    });
    let routes = match throttle {
        Some(throttle) => routes.route_layer(throttle.clone().on_rejection(style)),
        None => routes,
    };
    routes.route_layer(ip_filter.clone().on_rejection(style))
}

fn token_sources(settings: &Settings) -> Result<TokenSources, BuildError> {
    let sources = settings
        .token_sources
        .iter()
        .map(|source| -> Result<TokenSource, BuildError> {
            Ok(match source {
                SourceSetting::Bearer => TokenSource::bearer(),
                SourceSetting::Cookie(name) => TokenSource::try_cookie(name.clone())
                    .map_err(|err| BuildError::new("guard.token_sources", err))?,
                SourceSetting::Header(name) => TokenSource::header(name.clone()),
            })
        });
    TokenSources::new(sources.collect::<Result<Vec<_>, _>>()?)
        .map_err(|err| BuildError::new("guard.token_sources", err))
}

impl Gateway {
    /// Assembles the gateway. Call it inside a Tokio runtime: Redis and
    /// remote keys start their background work here.
    pub fn build(settings: &Settings) -> Result<Self, BuildError> {
        let resolver = ClientIpResolver::new().trusted_proxies(settings.trusted_proxies.clone());
        let ip_filter = IpFilterLayer::new(settings.reloadable.ip_rules.clone(), resolver);
        let mut logins = build_logins(settings, &ip_filter)?;
        // The key the presets sign with stays accepted across reloads (a
        // reload reads a new `ephemeral` key, or a changed file, that
        // nothing signs with).
        if let Some(signing) = &settings.signing_key {
            logins.fixed_keys.push(signing.verifying_key());
        }

        let keys = Arc::new(ReloadableKeys {
            keys: ArcSwap::from_pointee(
                ReloadableKeys::key_set(&logins.fixed_keys, &settings.reloadable.verifying_keys)
                    .map_err(|err| BuildError::new("keys", err))?,
            ),
            generation: AtomicU64::new(0),
            fixed: logins.fixed_keys.clone(),
        });
        let mut verifier = Verifier::builder_with_source(keys.clone() as Arc<dyn KeySource>)
            .accept_kinds([TokenKind::Access, TokenKind::ServiceAccount]);
        for issuer in &settings.issuers {
            verifier = verifier.issuer(issuer.clone());
        }
        if settings.token_cache > 0 {
            verifier = verifier.token_cache(settings.token_cache);
        }
        let verifier = verifier
            .build()
            .map_err(|err| BuildError::new("guard", err))?;
        let style = GatewayRejection(settings.errors);
        let mut auth = AuthLayer::<GatewayClaims>::new(verifier)
            .sources(token_sources(settings)?)
            .realm(&settings.realm)
            .map_err(|err| BuildError::new("guard.realm", err))?
            .revocations(Arc::clone(&logins.revocations));
        if let Some(renewal) = logins.renewal.clone() {
            auth = auth
                .cookie_renewal(renewal)
                .map_err(|err| BuildError::new("guard", err))?;
        }
        let auth = auth.on_rejection(style);
        let mut csrf = match settings.development && settings.tls.is_none() {
            // Plain HTTP in development: the site's own origin is `http://`.
            true => CsrfLayer::new().plain_http(),
            false => CsrfLayer::new(),
        };
        for origin in &settings.trusted_origins {
            csrf = csrf
                .trusted_origin(origin)
                .map_err(|err| BuildError::new("guard.trusted_origins", err))?;
        }
        let mut space = SelectSpaceLayer::for_auth(&auth).header(settings.space_header.clone());
        if let Some(default) = &settings.default_space {
            space = space
                .default_space(default)
                .map_err(|err| BuildError::new("guard.default_space", err))?;
        }
        let guard = Guard {
            ip_filter: ip_filter.clone().on_rejection(style),
            auth,
            csrf: csrf.on_rejection(style),
            space: space.on_rejection(style),
            require: RequireLayer::rules(settings.rules.clone())
                .realm(&settings.realm)
                .map_err(|err| BuildError::new("guard.realm", err))?
                .on_rejection(style),
            cedar: cedar_layer(settings, style)?,
            public_paths: settings.public_paths.clone().into(),
            rules: settings.rules.clone(),
            errors: settings.errors,
        };

        let allow = Allow {
            identity: Arc::new(settings.identity.clone()),
            authenticated: true,
        };
        let allow_public = Allow {
            authenticated: false,
            ..allow.clone()
        };
        let identity = Arc::clone(&allow.identity);
        let decision = Decision {
            guard: guard.wrap(allow, allow_public),
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
            identity,
            space_header: settings.space_header.clone(),
        };
        // The login routes check the request line and `Host` as the proxy
        // and the decision endpoint do (in `ByPolicy::dispatch`, where it
        // costs no allocation).
        // Inside the request-line check, as the login routes.
        if let Some(flow) = logins.sign_out.clone() {
            // The guard (address, token, cross-site check), then the role.
            let admin = ServiceBuilder::new()
                .layer(guard.ip_filter.clone())
                .layer(guard.auth.clone())
                .layer(guard.csrf.clone())
                .layer(
                    RequireLayer::role("admin")
                        .realm(&settings.realm)
                        .map_err(|err| BuildError::new("guard.realm", err))?
                        .on_rejection(style),
                );
            logins.router = logins.router.route(
                SIGN_OUT_PATH,
                axum::routing::post(move |username| sign_out_everywhere(flow.clone(), username))
                    .route_layer(admin),
            );
        }
        let mut router = logins
            .router
            .layer(ValidTargetLayer::new(settings.errors))
            .route("/healthz", get(|| async { "ok" }))
            .route_service(&settings.verify_path, decision);
        router = match &settings.upstream {
            Some(upstream) => {
                let forward = Forward::new(
                    upstream,
                    settings.identity.clone(),
                    settings.trusted_proxies.clone(),
                )
                .map_err(|err| BuildError::new("upstream.url", err))?
                .over_tls(settings.tls.is_some())
                .with_websocket_bounds(&settings.connections, Arc::clone(&logins.revocations));
                let public = forward.public();
                router.fallback_service(guard.wrap(forward, public))
            }
            None => router.fallback(|| async {
                gateway_error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no upstream is configured",
                )
            }),
        };
        Ok(Gateway {
            lockout: logins.lockout.clone(),
            router,
            reload: ReloadHandle {
                ip_filter: ip_filter.handle(),
                keys,
                tls: settings
                    .tls
                    .as_ref()
                    .map(|tls| Arc::new(ArcSwap::new(Arc::clone(&tls.config)))),
                tls_not_after: settings
                    .tls
                    .as_ref()
                    .map(|tls| Arc::new(std::sync::atomic::AtomicI64::new(tls.not_after))),
                #[cfg(feature = "cedar")]
                cedar: settings.cedar.clone(),
            },
            h2c: settings.h2c,
        })
    }

    /// The router: login endpoints, `/healthz`, the decision endpoint, and
    /// the proxy for everything else.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The failed-login lockout the presets share, if any (for the
    /// locked-account gauge of `/metrics`).
    pub fn lockout(&self) -> Option<&Lockout> {
        self.lockout.as_ref()
    }

    /// A handle that reloads the address rules, verifying keys and TLS
    /// certificate.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// The TLS configuration in force (`[server.tls]`), swapped on reload.
    pub(crate) fn tls(&self) -> Option<super::tls::LiveServerConfig> {
        self.reload.tls.clone()
    }

    /// The `notAfter` (Unix seconds) of the TLS certificate in force, with
    /// `[server.tls]`; a reload updates it.
    pub(crate) fn tls_not_after(&self) -> Option<Arc<std::sync::atomic::AtomicI64>> {
        self.reload.tls_not_after.clone()
    }

    /// Whether a plain connection may speak HTTP/2 with prior knowledge.
    pub(crate) fn h2c(&self) -> bool {
        self.h2c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::target::is_public;

    #[test]
    fn public_paths_never_cover_dot_segments_or_encoded_slashes() {
        let public = vec![
            "/public/".to_owned(),
            "/favicon.ico".to_owned(),
            "/docs".to_owned(),
        ];
        assert!(is_public("/public/a.css", &public));
        assert!(is_public("/favicon.ico", &public));
        assert!(is_public("/docs", &public));
        assert!(
            !is_public("/docs/x", &public),
            "an entry without / is one path"
        );
        assert!(!is_public("/favicon.ico/x", &public));
        assert!(!is_public("/docsecret", &public));
        assert!(!is_public("/public/../admin", &public));
        assert!(!is_public("/public/%2e%2e/admin", &public));
        assert!(!is_public("/public/..%2fadmin", &public));
        assert!(!is_public("/api", &public));
        assert!(!is_public("/api", &[]));
    }

    #[test]
    fn identity_copies_aliases_and_connection_naming_them_are_refused() {
        let names = IdentityHeaders {
            subject: HeaderName::from_static("x-auth-subject"),
            roles: HeaderName::from_static("x-auth-roles"),
            spaces: HeaderName::from_static("x-auth-spaces"),
            space: HeaderName::from_static("x-space"),
            claims: None,
        };
        let space_header = HeaderName::from_static("x-space");
        let check = |headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            fields_the_front_would_pass_on(&map, &names, &space_header)
        };
        assert!(check(&[("x-space", "production"), ("connection", "keep-alive")]).is_ok());
        for forged in [
            ("x-auth-roles", "admin"),
            ("x_auth_roles", "admin"),
            ("x_space", "production"),
            ("x-auth_spaces", "production"),
            ("connection", "X-Auth-Subject"),
            ("connection", "keep-alive, x_auth_roles"),
            ("connection", "HOST"),
            ("connection", "x-space"),
            ("trailer", "X_Auth_Roles"),
        ] {
            assert!(check(&[forged]).is_err(), "{forged:?}");
        }
        // A space picked with another header: `X-Space` is then stated only.
        let tenant = HeaderName::from_static("x-tenant");
        let mut map = HeaderMap::new();
        map.insert("x-space", HeaderValue::from_static("production"));
        assert!(fields_the_front_would_pass_on(&map, &names, &tenant).is_err());
    }

    #[test]
    fn the_original_request_must_be_described_once() {
        let parts = |headers: &[(&'static str, &'static str)]| {
            let mut request = Request::new(Body::empty());
            for (name, value) in headers {
                request
                    .headers_mut()
                    .append(*name, HeaderValue::from_static(value));
            }
            request.into_parts().0
        };
        assert!(original_request(&mut parts(&[])).is_err());
        assert!(
            original_request(&mut parts(&[("x-original-uri", "/api/me")])).is_err(),
            "no method"
        );
        let mut described = parts(&[
            ("x-original-uri", "/api/me?x=1"),
            ("x-original-method", "POST"),
            ("x-forwarded-host", "app.example"),
            ("authorization", "Bearer x"),
        ]);
        original_request(&mut described).unwrap();
        assert_eq!(described.method, Method::POST);
        assert_eq!(described.uri, "/api/me?x=1");
        assert_eq!(described.headers[header::HOST], "app.example");
        assert_eq!(described.headers[header::AUTHORIZATION], "Bearer x");
        assert!(!described.headers.contains_key(X_ORIGINAL_URI));

        let twice = [
            ("x-original-uri", "/app"),
            ("x-original-method", "GET"),
            ("x-forwarded-uri", "/public/"),
            ("x-forwarded-method", "GET"),
        ];
        assert!(
            original_request(&mut parts(&twice)).is_err(),
            "two descriptions"
        );
        let absolute = [
            ("x-forwarded-uri", "http://evil/"),
            ("x-forwarded-method", "GET"),
        ];
        assert!(original_request(&mut parts(&absolute)).is_err());
        let repeated = [
            ("x-forwarded-uri", "/public/"),
            ("x-forwarded-uri", "/app"),
            ("x-forwarded-method", "GET"),
        ];
        assert!(original_request(&mut parts(&repeated)).is_err());
    }
}
