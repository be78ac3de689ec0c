//! [`AuthLayer`]: configuration of the token-verifying middleware.

use std::marker::PhantomData;
use std::sync::Arc;

use http::{HeaderMap, Response};
use tower_layer::Layer;

use crate::authz::{
    AuthzRejection, Matched, Policy, RuleLabel, Rules, check_token, report_allowed,
};
use crate::clock::now_seconds;
use crate::error::{ConfigError, check_quoted_value};
use crate::future::refuse;
use crate::observe::{LazyCounter, Seen, lazy_counter};
use crate::reject::{AuthRejection, DefaultRejection, OnRejection, Realm, Rejection};
use crate::store::RevocationStore;
use crate::token::{FoundIn, TokenSource, TokenSources, VerifiedToken, Verifier};

use super::future::Work;
use super::{Auth, CookieRenewal};

#[derive(Clone)]
pub(crate) struct AuthConfig {
    pub(crate) verifier: Verifier,
    pub(crate) sources: TokenSources,
    pub(crate) required: bool,
    pub(crate) realm: Realm,
    pub(crate) revocations: Option<Arc<dyn RevocationStore>>,
    pub(crate) renewal: Option<(CookieRenewal, TokenSources)>,
    /// What every request must also meet ([`AuthLayer::require`],
    /// [`AuthLayer::rules`]).
    pub(crate) authorize: Option<Authorize>,
    pub(crate) counters: AuthCounters,
}

/// The authorization an [`AuthLayer`] applies itself.
#[derive(Clone, Debug)]
pub(crate) enum Authorize {
    Policy(Policy),
    Rules(Rules),
}

/// The layer's counts of accepted requests (refusals are counted where
/// they are rendered).
#[derive(Clone, Debug)]
pub(crate) struct AuthCounters {
    verified: LazyCounter,
    anonymous: LazyCounter,
    pub(crate) renewed: LazyCounter,
    authorized: LazyCounter,
}

impl Default for AuthCounters {
    fn default() -> Self {
        AuthCounters {
            verified: lazy_counter!(
                "authgate_requests_total",
                "layer" => "auth",
                "outcome" => "allowed",
                "reason" => "verified"
            ),
            anonymous: lazy_counter!(
                "authgate_requests_total",
                "layer" => "auth",
                "outcome" => "allowed",
                "reason" => "anonymous"
            ),
            renewed: lazy_counter!(
                "authgate_requests_total",
                "layer" => "auth",
                "outcome" => "allowed",
                "reason" => "renewed"
            ),
            authorized: lazy_counter!(
                "authgate_requests_total",
                "layer" => "authz",
                "outcome" => "allowed",
                "reason" => "ok"
            ),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("verifier", &self.verifier)
            .field("sources", &self.sources)
            .field("required", &self.required)
            .field("realm", &self.realm)
            .field("revocations", &self.revocations.is_some())
            .field("renewal", &self.renewal.as_ref().map(|(r, _)| r))
            .field("authorize", &self.authorize)
            .finish()
    }
}

/// The outcome of reading and verifying a request's token.
pub(crate) enum Authenticated {
    /// The token, and whether the token cache answered.
    Verified(VerifiedToken, bool),
    Missing,
    Refused(AuthRejection),
}

impl AuthConfig {
    /// Finds and verifies the request's token (through the verifier's
    /// token cache, when it has one).
    pub(crate) fn authenticate<C>(&self, headers: &HeaderMap) -> (Authenticated, Option<FoundIn>)
    where
        C: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let (token, found_in) = match self.sources.find_bytes(headers) {
            Ok(Some(found)) => found,
            Ok(None) => return (Authenticated::Missing, None),
            Err(rejection) => return (Authenticated::Refused(rejection), None),
        };
        // The verifier checks every byte (dots and base64url): the token
        // need not be made text first.
        let outcome = match self.verifier.verify_shared::<C>(token, now_seconds()) {
            Ok((verified, cached)) => {
                Authenticated::Verified(VerifiedToken::new(verified, found_in), cached)
            }
            Err(err) => Authenticated::Refused(err.into()),
        };
        (outcome, Some(found_in))
    }

    /// The renewal of the access cookie from the refresh cookie, when it
    /// applies: no access token at all, or an expired one that came from a
    /// cookie. `fallback` is the answer when the refresh cookie renews
    /// nothing.
    pub(crate) fn renewal_work(
        &self,
        headers: &HeaderMap,
        outcome_is_missing: bool,
        refused_expired_cookie: bool,
        fallback: &AuthRejection,
    ) -> Option<Work> {
        let (renewal, refresh_source) = self.renewal.as_ref()?;
        if !(outcome_is_missing || refused_expired_cookie) {
            return None;
        }
        let refresh = refresh_source
            .find(headers)
            .ok()
            .flatten()?
            .token
            .to_owned();
        let renewer = Arc::clone(&renewal.renewer);
        let renewing = Box::pin(async move { renewer.renew_access(&refresh).await });
        Some(Work::Renewal(renewing, fallback.clone()))
    }

    /// Renders `reason` with the layer's `on_rejection`, for a request with
    /// these `headers`.
    pub(crate) fn refuse<B, R: OnRejection<B>>(
        &self,
        on_rejection: &R,
        reason: AuthRejection,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Response<B> {
        // The token is looked for again only for the refusal's event.
        let found = if crate::observe::refusal_recorded(reason.status()) {
            self.sources.find_bytes(headers).ok().flatten()
        } else {
            None
        };
        refuse(
            on_rejection,
            &Rejection::Auth {
                reason,
                realm: self.realm.clone(),
            },
            Seen {
                token: found.map(|(token, _)| token),
                source: found.map(|(_, found_in)| found_in),
                client: Seen::client_of(extensions),
                ..Seen::default()
            },
        )
    }

    /// Renders the refusal `reason` of the layer's own authorization of
    /// `request`, in the layer's realm.
    pub(crate) fn refuse_authz<B, ResBody, R: OnRejection<ResBody>>(
        &self,
        on_rejection: &R,
        reason: AuthzRejection,
        request: &http::Request<B>,
    ) -> Response<ResBody> {
        crate::authz::refusal(on_rejection, reason, self.realm.clone(), request)
    }

    /// The layer's own authorization ([`AuthLayer::require`],
    /// [`AuthLayer::rules`]) of a request that passed (with its `token`, or
    /// anonymous): `Ok` when there is none or it holds, counted as the
    /// authorization layer's.
    #[inline(always)]
    pub(crate) fn authorize<B>(
        &self,
        token: Option<&VerifiedToken>,
        request: &http::Request<B>,
    ) -> Result<(), AuthzRejection> {
        match &self.authorize {
            None => Ok(()),
            Some(authorize) => self.authorize_with(authorize, token, request),
        }
    }

    fn authorize_with<B>(
        &self,
        authorize: &Authorize,
        token: Option<&VerifiedToken>,
        request: &http::Request<B>,
    ) -> Result<(), AuthzRejection> {
        let extensions = request.extensions();
        let policy_on = |policy: &Policy| match token {
            Some(token) => check_token(policy, token, extensions),
            None => Err(AuthzRejection::AuthenticationRequired),
        };
        let rules = match authorize {
            Authorize::Policy(policy) => {
                policy_on(policy)?;
                self.authorized(None);
                return Ok(());
            }
            Authorize::Rules(rules) => rules,
        };
        let (rule, decided) = match rules.decide(request.method(), request.uri().path()) {
            // Not met here: a request a public rule decides went on before
            // its token was read (`public`), and the table decides alike.
            Matched::Public(rule) => (rule, Ok(())),
            Matched::Policy(rule, policy) => (rule, policy_on(policy)),
            Matched::Deny(rule) => (rule, Err(AuthzRejection::NoMatchingRule)),
            Matched::Ambiguous(why) => return Err(AuthzRejection::AmbiguousPath(why)),
        };
        match &decided {
            Ok(()) => self.authorized(Some(rule)),
            Err(reason) => rule.refused(reason.reason()),
        }
        decided
    }

    /// Counts and reports a request the layer's authorization (`rule`,
    /// when a rule table decided) let through.
    fn authorized(&self, rule: Option<&RuleLabel>) {
        if let Some(rule) = rule {
            rule.allowed();
        }
        report_allowed(&self.counters.authorized, rule, "policy held");
    }

    /// The public rule of the layer's [`rules`](AuthLayer::rules) that
    /// lets `request` through without its token, if one does: counted as
    /// that rule's and as an anonymous request.
    #[inline(always)]
    pub(crate) fn public<B>(&self, request: &http::Request<B>) -> bool {
        let Some(Authorize::Rules(rules)) = &self.authorize else {
            return false;
        };
        let Some(rule) = rules.public_rule(request.method(), request.uri().path()) else {
            return false;
        };
        self.allowed(None, false, request.headers());
        self.authorized(Some(rule));
        true
    }

    /// Counts and reports an accepted request: `verified` with its token
    /// (`cached` when the token cache answered), or `anonymous` on an
    /// optional route.
    pub(crate) fn allowed(&self, token: Option<&VerifiedToken>, cached: bool, headers: &HeaderMap) {
        match token {
            Some(_token) => {
                self.counters.verified.increment();
                #[cfg(feature = "tracing")]
                if tracing::enabled!(target: crate::observe::DECISION, tracing::Level::DEBUG) {
                    let meta = _token.meta();
                    let found = self.sources.find_bytes(headers).ok().flatten();
                    let peeked = found
                        .map(|(token, _)| crate::token::verifier::peek(token))
                        .unwrap_or_default();
                    tracing::debug!(
                        target: crate::observe::DECISION,
                        layer = "auth",
                        outcome = "allowed",
                        reason = "verified",
                        source = _token.found_in().as_str(),
                        kind = meta.kind.map(crate::token::TokenKind::as_str),
                        sub = meta.subject.as_deref().map(crate::observe::shown),
                        alg = peeked.alg.as_deref().map(tracing::field::debug),
                        kid = peeked.kid.as_deref().map(tracing::field::debug),
                        iss = peeked.iss.as_deref().map(tracing::field::debug),
                        cached,
                        "token accepted"
                    );
                }
            }
            None => {
                self.counters.anonymous.increment();
                crate::observe::event!(
                    debug,
                    target: crate::observe::DECISION,
                    layer = "auth",
                    outcome = "allowed",
                    reason = "anonymous",
                    "anonymous request on an optional route"
                );
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (cached, headers);
    }
}

/// A [`Layer`] that verifies a token on every request and puts its claims in
/// the request extensions.
///
/// `C` is the application's claims type (any `DeserializeOwned + Send +
/// Sync + 'static`; the [`Claims`](crate::token::Claims) extractor also needs
/// `Clone`); `R` renders refusals ([`crate::reject`]). See the
/// [module docs](crate::auth) for an example.
pub struct AuthLayer<C, R = DefaultRejection> {
    pub(crate) config: Arc<AuthConfig>,
    pub(crate) on_rejection: R,
    _claims: PhantomData<fn() -> C>,
}

impl<C, R: Clone> Clone for AuthLayer<C, R> {
    fn clone(&self) -> Self {
        AuthLayer {
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            _claims: PhantomData,
        }
    }
}

impl<C, R: std::fmt::Debug> std::fmt::Debug for AuthLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("config", &self.config)
            .field("on_rejection", &self.on_rejection)
            .finish()
    }
}

impl<C> AuthLayer<C> {
    /// A layer that requires a valid token in `Authorization: Bearer`,
    /// verified by `verifier`, with realm `"api"`.
    pub fn new(verifier: Verifier) -> Self {
        AuthLayer {
            config: Arc::new(AuthConfig {
                verifier,
                sources: TokenSources::bearer(),
                required: true,
                realm: Realm::default(),
                revocations: None,
                renewal: None,
                authorize: None,
                counters: AuthCounters::default(),
            }),
            on_rejection: DefaultRejection,
            _claims: PhantomData,
        }
    }
}

impl<C, R> AuthLayer<C, R> {
    fn config_mut(&mut self) -> &mut AuthConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Where to look for the token, in order. Set the sources before a
    /// [`cookie_renewal`](Self::cookie_renewal), which checks that they
    /// read the cookie it writes; sources given after a renewal that do
    /// not read its cookie drop the renewal (requests then need a valid
    /// access token), rather than renew on every request.
    pub fn sources(mut self, sources: TokenSources) -> Self {
        let config = self.config_mut();
        if let Some((renewal, _)) = &config.renewal
            && !reads_cookie(&sources, &renewal.access_cookie)
        {
            config.renewal = None;
        }
        config.sources = sources;
        self
    }

    /// Let requests without any credential through (anonymous); a credential
    /// that is present must still be valid.
    pub fn optional(mut self) -> Self {
        self.config_mut().required = false;
        self
    }

    /// The realm named in `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: &str) -> Result<Self, ConfigError> {
        check_quoted_value(realm)?;
        self.config_mut().realm = Realm::new(realm);
        Ok(self)
    }

    /// Renders refusals with `on_rejection` (see [`crate::reject`]) instead
    /// of [`DefaultRejection`] (status and RFC 6750 headers, empty body).
    pub fn on_rejection<R2>(self, on_rejection: R2) -> AuthLayer<C, R2> {
        AuthLayer {
            config: self.config,
            on_rejection,
            _claims: PhantomData,
        }
    }

    /// Consult `store` for every token that has a `jti` or a `fam`: a token
    /// whose id is revoked, or whose family is revoked, is refused, with or
    /// without a `jti` (the family check never depends on the token id).
    /// Tokens answered from the verifier's token cache are checked too.
    /// When the store cannot answer the request fails closed with `503`.
    pub fn revocations(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.config_mut().revocations = Some(store);
        self
    }

    /// Renew an expired or missing access cookie from the refresh cookie.
    ///
    /// Refused with [`ConfigError::RenewedCookieUnread`] when none of the
    /// layer's [`sources`](Self::sources) reads the access cookie the
    /// renewal writes (a `__Host-` renewal next to the plain cookie's
    /// source, say): every request would then look tokenless and mint a
    /// new token.
    pub fn cookie_renewal(mut self, renewal: CookieRenewal) -> Result<Self, ConfigError> {
        if !reads_cookie(&self.config.sources, &renewal.access_cookie) {
            return Err(ConfigError::RenewedCookieUnread(
                renewal.access_cookie.clone(),
            ));
        }
        let source = TokenSources::single(TokenSource::Cookie(renewal.refresh_cookie.clone()));
        self.config_mut().renewal = Some((renewal, source));
        Ok(self)
    }

    /// Also requires `policy` of every verified token, in this layer: the
    /// same decision and the same refusals as a
    /// [`RequireLayer`](crate::authz::RequireLayer) right after it (`403`
    /// naming what was needed, in this layer's realm and error format;
    /// `401` for an anonymous request when the layer is
    /// [`optional`](Self::optional)), for less work per request than a
    /// layer of its own. Replaces [`rules`](Self::rules) given before.
    ///
    /// A policy that reads the selected space is refused
    /// ([`ConfigError::PolicyReadsSpace`]): the space is selected after
    /// this layer, so require it with a `RequireLayer` after the
    /// [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer).
    ///
    /// ```
    /// use http::{Request, Response, StatusCode, header};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_authgate::auth::AuthLayer;
    /// use tower_authgate::authz::Policy;
    /// use tower_authgate::token::{Algorithm, KeySet, SigningKey, Verifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
    /// let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
    /// let admins_only = ServiceBuilder::new()
    ///     .layer(AuthLayer::<serde_json::Value>::new(verifier).require(Policy::role("admin"))?)
    ///     .service(service_fn(|_req: Request<String>| async {
    ///         Ok::<_, std::convert::Infallible>(Response::new(String::from("deleted")))
    ///     }));
    ///
    /// let exp = tower_authgate::clock::now_seconds() + 300;
    /// let request = |role: &str| {
    ///     let claims = serde_json::json!({"sub": "ann", "exp": exp, "usefor": "access", "roles": [role]});
    ///     Request::builder()
    ///         .header(header::AUTHORIZATION, format!("Bearer {}", key.sign(&claims).unwrap()))
    ///         .body(String::new())
    ///         .unwrap()
    /// };
    /// let allowed = admins_only.clone().oneshot(request("admin")).await?;
    /// assert_eq!(allowed.status(), StatusCode::OK);
    /// let refused = admins_only.oneshot(request("operator")).await?;
    /// assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    /// let challenge = refused.headers()[header::WWW_AUTHENTICATE].to_str()?;
    /// assert!(challenge.contains(r#"error="insufficient_scope""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn require(mut self, policy: Policy) -> Result<Self, ConfigError> {
        if policy.reads_space() {
            return Err(ConfigError::PolicyReadsSpace(policy.to_string()));
        }
        self.config_mut().authorize = Some(Authorize::Policy(policy));
        Ok(self)
    }

    /// Applies the rule table `rules` in this layer (first match wins;
    /// unmatched requests get its default, `deny` unless configured
    /// otherwise): the same decisions and refusals as a
    /// [`RequireLayer::rules`](crate::authz::RequireLayer::rules) right
    /// after it, for less work per request, with one difference that makes
    /// it the layer of a service's whole access table: a request a
    /// [public](crate::authz::Rule::public) rule decides goes on as an
    /// anonymous request, its token neither read nor verified (a
    /// `RequireLayer` can only let through what the `AuthLayer` before it
    /// already accepted). Replaces a [`require`](Self::require)d policy.
    ///
    /// Refused ([`ConfigError::PolicyReadsSpace`]) when a rule's policy
    /// reads the selected space, which is selected after this layer.
    pub fn rules(mut self, rules: Rules) -> Result<Self, ConfigError> {
        if let Some(reader) = rules.space_reader() {
            return Err(ConfigError::PolicyReadsSpace(reader));
        }
        self.config_mut().authorize = Some(Authorize::Rules(rules));
        Ok(self)
    }

    /// The verifier this layer uses.
    pub fn verifier(&self) -> &Verifier {
        &self.config.verifier
    }
}

/// Whether one of `sources` is the cookie `name`.
fn reads_cookie(sources: &TokenSources, name: &str) -> bool {
    sources
        .sources()
        .iter()
        .any(|source| matches!(source, TokenSource::Cookie(cookie) if cookie == name))
}

impl<S, C, R: Clone> Layer<S> for AuthLayer<C, R> {
    type Service = Auth<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::from_layer(inner, self.clone())
    }
}
