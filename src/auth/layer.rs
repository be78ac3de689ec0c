//! [`AuthLayer`]: configuration of the token-verifying middleware.

use std::marker::PhantomData;
use std::sync::Arc;

use http::{HeaderMap, Response};
use tower_layer::Layer;

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
    pub(crate) counters: AuthCounters,
}

/// The layer's counts of accepted requests (refusals are counted where
/// they are rendered).
#[derive(Clone, Debug)]
pub(crate) struct AuthCounters {
    verified: LazyCounter,
    anonymous: LazyCounter,
    pub(crate) renewed: LazyCounter,
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
        let found = self.sources.find_bytes(headers).ok().flatten();
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
