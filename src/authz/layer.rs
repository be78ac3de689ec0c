//! [`RequireLayer`], [`Require<S>`] and their [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Extensions, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxFuture;
use crate::authz::policy::{Policy, Undecidable};
use crate::authz::rules::{Matched, RuleLabel, Rules};
#[cfg(feature = "cedar")]
use crate::authz::{CedarError, CedarPolicies};
use crate::future::{define_inner_service_accessors, refuse};
use crate::observe::{LazyCounter, Seen, lazy_counter};
use crate::reject::{AuthzRejection, DefaultRejection, OnRejection, Realm, Rejection};
use crate::tenant::Space;
use crate::token::{Anonymous, VerifiedToken};

/// What an [`AsyncCheck`] sees of a request: owned, so that the check may
/// hold it across its awaits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckRequest {
    /// The verified token.
    pub token: VerifiedToken,
    /// The request's method.
    pub method: Method,
    /// The request's target.
    pub uri: Uri,
    /// The space a [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer)
    /// selected, if one ran.
    pub space: Option<Space>,
}

/// An [`AsyncCheck`] could not answer (its store is unreachable): the
/// request is refused with `503`, never let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckFailed;

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the authorization check could not answer")
    }
}

impl std::error::Error for CheckFailed {}

/// A check that must wait for an answer (an ownership lookup in a
/// database), run after the layer's [`Policy`] held, as tower-http's
/// `AsyncAuthorizeRequest`. `Ok(false)` is a `403`, `Err` a `503`.
/// Implemented by every closure `Fn(CheckRequest) -> impl Future<Output =
/// Result<bool, CheckFailed>>`.
pub trait AsyncCheck: Send + Sync + 'static {
    /// Whether the request may go on.
    fn check(&self, request: CheckRequest) -> BoxFuture<'static, Result<bool, CheckFailed>>;
}

impl<F, Fut> AsyncCheck for F
where
    F: Fn(CheckRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, CheckFailed>> + Send + 'static,
{
    fn check(&self, request: CheckRequest) -> BoxFuture<'static, Result<bool, CheckFailed>> {
        Box::pin(self(request))
    }
}

/// What the layer requires.
#[derive(Clone, Debug)]
enum What {
    Policy(Policy),
    Rules(Rules),
    /// Cedar policies, with the action a route names (else the method's).
    #[cfg(feature = "cedar")]
    Cedar(CedarPolicies, Option<Arc<str>>),
}

#[derive(Clone)]
struct RequireConfig {
    what: What,
    check: Option<(Arc<str>, Arc<dyn AsyncCheck>)>,
    realm: Realm,
    allowed: LazyCounter,
}

/// Requires a [`Policy`] of every request's verified token (see the
/// [module docs](crate::authz)). Goes inside an
/// [`AuthLayer`](crate::auth::AuthLayer) (after it in a `ServiceBuilder`).
#[derive(Clone)]
pub struct RequireLayer<R = DefaultRejection> {
    config: Arc<RequireConfig>,
    on_rejection: R,
}

impl<R> fmt::Debug for RequireLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLayer")
            .field("what", &self.config.what)
            .field(
                "check",
                &self.config.check.as_ref().map(|(name, _)| &**name),
            )
            .finish_non_exhaustive()
    }
}

impl RequireLayer {
    /// Requires `policy`.
    pub fn new(policy: Policy) -> Self {
        Self::with(What::Policy(policy))
    }

    /// Applies the rule table `rules` (first match wins; unmatched requests
    /// get its default, `deny` unless configured otherwise), for services
    /// that are not axum routers. A path with more than one reading is
    /// refused (`400`).
    pub fn rules(rules: Rules) -> Self {
        Self::with(What::Rules(rules))
    }

    /// Asks `policies` about every request (see
    /// [`CedarPolicies`](crate::authz::CedarPolicies)): the action is the
    /// request's method (`Action::"GET"`). A refusal, a `forbid`, no
    /// `permit`, an evaluation error or a method the schema does not
    /// declare, is a `403` (`policy_denied`).
    #[cfg(feature = "cedar")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cedar")))]
    pub fn cedar(policies: CedarPolicies) -> Self {
        Self::with(What::Cedar(policies, None))
    }

    /// As [`cedar`](Self::cedar), with the action `action`
    /// (`Action::"<action>"`) for every request rather than the method's;
    /// refused when the schema in force does not declare it. (A reload
    /// whose schema drops it leaves the route refusing every request.)
    #[cfg(feature = "cedar")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cedar")))]
    pub fn cedar_action(
        policies: CedarPolicies,
        action: impl Into<String>,
    ) -> Result<Self, CedarError> {
        let action = action.into();
        if !policies.has_action(&action) {
            return Err(CedarError::UnknownAction(action));
        }
        Ok(Self::with(What::Cedar(policies, Some(action.into()))))
    }

    fn with(what: What) -> Self {
        RequireLayer {
            config: Arc::new(RequireConfig {
                what,
                check: None,
                realm: Realm::default(),
                allowed: lazy_counter!(
                    "authgate_requests_total",
                    "layer" => "authz",
                    "outcome" => "allowed",
                    "reason" => "ok"
                ),
            }),
            on_rejection: DefaultRejection,
        }
    }

    /// Requires the role `role` ([`Policy::role`]).
    pub fn role(role: impl Into<String>) -> Self {
        Self::new(Policy::role(role))
    }

    /// Requires the scope `scope` ([`Policy::scope`]).
    pub fn scope(scope: impl Into<String>) -> Self {
        Self::new(Policy::scope(scope))
    }
}

impl<R> RequireLayer<R> {
    fn config_mut(&mut self) -> &mut RequireConfig {
        Arc::make_mut(&mut self.config)
    }

    /// After the policy held, also wait for `check` (an ownership lookup);
    /// `name` is what a refusal says was needed.
    pub fn check_async(mut self, name: impl Into<String>, check: impl AsyncCheck) -> Self {
        self.config_mut().check = Some((name.into().into(), Arc::new(check)));
        self
    }

    /// The realm of the `403` challenge (default `"api"`); an anonymous
    /// request is challenged in the realm of the `AuthLayer` that let it
    /// through.
    pub fn realm(mut self, realm: &str) -> Result<Self, crate::ConfigError> {
        crate::error::check_quoted_value(realm)?;
        self.config_mut().realm = Realm::new(realm);
        Ok(self)
    }

    /// Renders refusals with `on_rejection` (see [`crate::reject`]), so that
    /// a route answers in its own error format.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> RequireLayer<R2> {
        RequireLayer {
            config: self.config,
            on_rejection,
        }
    }

    /// The policy, when the layer was built with one (rather than rules or
    /// Cedar policies).
    pub fn policy(&self) -> Option<&Policy> {
        match &self.config.what {
            What::Policy(policy) => Some(policy),
            What::Rules(_) => None,
            #[cfg(feature = "cedar")]
            What::Cedar(..) => None,
        }
    }
}

impl<S, R: Clone> Layer<S> for RequireLayer<R> {
    type Service = Require<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
        }
    }
}

/// The service made by [`RequireLayer`].
#[derive(Clone)]
pub struct Require<S, R = DefaultRejection> {
    inner: S,
    config: Arc<RequireConfig>,
    on_rejection: R,
}

impl<S: fmt::Debug, R> fmt::Debug for Require<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Require")
            .field("inner", &self.inner)
            .field("what", &self.config.what)
            .finish_non_exhaustive()
    }
}

impl<S, R> Require<S, R> {
    define_inner_service_accessors!();
}

/// The decision on a request's verified token: the policy's refusal, or the
/// token when it passed.
pub(crate) fn decide<'r>(
    policy: &Policy,
    extensions: &'r Extensions,
) -> Result<&'r VerifiedToken, AuthzRejection> {
    let token = verified_token(extensions)?;
    check_token(policy, token, extensions).map(|()| token)
}

/// The request's verified token: `401` for an anonymous request (an
/// optional `AuthLayer` let it through), `500` when no `AuthLayer` ran.
pub(crate) fn verified_token(extensions: &Extensions) -> Result<&VerifiedToken, AuthzRejection> {
    extensions.get::<VerifiedToken>().ok_or_else(|| {
        if extensions.get::<Anonymous>().is_some() {
            AuthzRejection::AuthenticationRequired
        } else {
            AuthzRejection::MissingAuthLayer
        }
    })
}

/// The decision of `policy` on `token`, with the request's `extensions`.
#[inline]
pub(crate) fn check_token(
    policy: &Policy,
    token: &VerifiedToken,
    extensions: &Extensions,
) -> Result<(), AuthzRejection> {
    match policy.evaluate(token, extensions) {
        Ok(true) => Ok(()),
        Ok(false) => Err(denied(policy)),
        Err(Undecidable::NoSpace) => Err(AuthzRejection::MissingSpaceLayer),
        Err(Undecidable::ClaimsType) => Err(AuthzRejection::ClaimsTypeMismatch),
    }
}

/// The decision of `policy` on `grants` alone (see
/// [`Policy::evaluate_grants`]).
#[cfg(feature = "presets")]
pub(crate) fn check_grants(
    policy: &Policy,
    grants: &crate::authz::Grants,
) -> Result<(), AuthzRejection> {
    match policy.evaluate_grants(grants) {
        Ok(true) => Ok(()),
        Ok(false) => Err(denied(policy)),
        Err(Undecidable::NoSpace) => Err(AuthzRejection::MissingSpaceLayer),
        Err(Undecidable::ClaimsType) => Err(AuthzRejection::ClaimsTypeMismatch),
    }
}

/// The `403` for `policy`.
pub(crate) fn denied(policy: &Policy) -> AuthzRejection {
    if policy.is_declarative() {
        AuthzRejection::InsufficientScope {
            needed: Arc::clone(policy.needed_shared()),
            scope: policy.scopes_needed().cloned(),
        }
    } else {
        AuthzRejection::PolicyDenied {
            needed: Arc::clone(policy.needed_shared()),
        }
    }
}

/// Counts a request an authorization layer let through in the layer's
/// `counter`, and reports it with `rule`, the rule that decided when a
/// table did.
pub(crate) fn report_allowed(counter: &LazyCounter, rule: Option<&RuleLabel>, why: &'static str) {
    counter.increment();
    crate::observe::event!(
        debug,
        target: crate::observe::DECISION,
        layer = "authz",
        outcome = "allowed",
        rule = rule.map(RuleLabel::name),
        "{why}"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (rule, why);
}

/// The realm to challenge in: the optional `AuthLayer`'s for an anonymous
/// request, else the layer's own.
pub(crate) fn realm_for(extensions: &Extensions, own: &Realm) -> Realm {
    extensions
        .get::<Anonymous>()
        .map_or_else(|| own.clone(), |anonymous| anonymous.realm().clone())
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: OnRejection<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let mut label = None;
        let decided = match &config.what {
            What::Policy(policy) => decide(policy, req.extensions()),
            What::Rules(rules) => match rules.decide(req.method(), req.uri().path()) {
                Matched::Public(rule) => {
                    rule.allowed();
                    report_allowed(&config.allowed, Some(rule), "public rule");
                    return ResponseFuture {
                        kind: Kind::Inner {
                            future: self.inner.call(req),
                        },
                    };
                }
                Matched::Policy(rule, policy) => {
                    label = Some(rule);
                    decide(policy, req.extensions())
                }
                Matched::Deny(rule) => {
                    label = Some(rule);
                    Err(AuthzRejection::NoMatchingRule)
                }
                Matched::Ambiguous(why) => Err(AuthzRejection::AmbiguousPath(why)),
            },
            #[cfg(feature = "cedar")]
            What::Cedar(policies, action) => policies.decide(
                action.as_deref(),
                req.method(),
                req.uri().path(),
                req.extensions(),
            ),
        };
        match decided {
            Ok(token) => {
                if let Some(rule) = label {
                    rule.allowed();
                }
                match &config.check {
                    None => {
                        report_allowed(&config.allowed, label, "policy held");
                        ResponseFuture {
                            kind: Kind::Inner {
                                future: self.inner.call(req),
                            },
                        }
                    }
                    Some((_, check)) => {
                        let request = CheckRequest {
                            token: token.clone(),
                            method: req.method().clone(),
                            uri: req.uri().clone(),
                            space: req.extensions().get::<Space>().cloned(),
                        };
                        // The ready service goes with the request; a clone
                        // takes its place (tower-http's
                        // `async_require_authorization`).
                        let clone = self.inner.clone();
                        let inner = std::mem::replace(&mut self.inner, clone);
                        ResponseFuture {
                            kind: Kind::Checking {
                                check: check.check(request),
                                pending: Some(Box::new(Pending {
                                    req,
                                    inner,
                                    config: Arc::clone(&self.config),
                                    on_rejection: self.on_rejection.clone(),
                                })),
                            },
                        }
                    }
                }
            }
            Err(reason) => {
                if let Some(rule) = label {
                    rule.refused(reason.reason());
                }
                let realm = realm_for(req.extensions(), &config.realm);
                ResponseFuture::refused(refusal(&self.on_rejection, reason, realm, &req))
            }
        }
    }
}

/// Renders the authorization refusal `reason` of `req` in `realm`: for
/// `RequireLayer`, and for an `AuthLayer`'s own policy or rules.
pub(crate) fn refusal<B, ResBody, R: OnRejection<ResBody>>(
    on_rejection: &R,
    reason: AuthzRejection,
    realm: Realm,
    req: &Request<B>,
) -> Response<ResBody> {
    let rejection = Rejection::Authz { reason, realm };
    let seen = Seen {
        client: Seen::client_of(req.extensions()),
        space: req.extensions().get::<Space>().map(|s| s.0.as_str()),
        ..Seen::default()
    };
    refuse(on_rejection, &rejection, seen)
}

/// What waits for the asynchronous check.
struct Pending<S, B, R> {
    req: Request<B>,
    inner: S,
    config: Arc<RequireConfig>,
    on_rejection: R,
}

pin_project! {
    /// The response future of [`Require`]: the inner service's future, a
    /// refusal ready at once, or the asynchronous check first.
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B, R>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] future: S::Future },
        Refused { response: Option<Box<S::Response>> },
        Checking {
            check: BoxFuture<'static, Result<bool, CheckFailed>>,
            // Boxed: only a request with an asynchronous check pays for
            // it, and the future stays small on the common path.
            pending: Option<Box<Pending<S, B, R>>>,
        },
    }
}

impl<S: Service<Request<B>>, B, R> ResponseFuture<S, B, R> {
    fn refused(response: S::Response) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.kind.as_mut().project() {
                KindProj::Inner { future } => return future.poll(cx),
                KindProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(*response));
                }
                KindProj::Checking { check, pending } => {
                    let answer = ready!(check.as_mut().poll(cx));
                    let Pending {
                        req,
                        mut inner,
                        config,
                        on_rejection,
                    } = *pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let name = config.check.as_ref().map(|(name, _)| Arc::clone(name));
                    let reason = match answer {
                        Ok(true) => {
                            config.allowed.increment();
                            let future = inner.call(req);
                            this.kind.set(Kind::Inner { future });
                            continue;
                        }
                        Ok(false) => AuthzRejection::PolicyDenied {
                            needed: name.unwrap_or_else(|| Arc::from("")),
                        },
                        Err(CheckFailed) => AuthzRejection::Unavailable,
                    };
                    let realm = config.realm.clone();
                    return Poll::Ready(Ok(refusal(&on_rejection, reason, realm, &req)));
                }
            }
        }
    }
}
