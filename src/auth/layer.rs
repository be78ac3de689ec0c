//! [`AuthLayer`]: configuration of the token-verifying middleware.

use std::marker::PhantomData;
use std::sync::Arc;

use http::{HeaderMap, Response};
use tower_layer::Layer;

use crate::clock::now_seconds;
use crate::error::{AuthRejection, ConfigError, check_quoted_value};
use crate::store::RevocationStore;
use crate::token::{FoundIn, TokenSource, TokenSources, VerifiedToken, Verifier};

use super::{Auth, CookieRenewal};

/// Turns an [`AuthRejection`] into the response sent to the client.
///
/// [`DefaultRejection`] renders RFC 6750 answers with a JSON body; a closure
/// `Fn(&AuthRejection) -> Response<B>` renders anything else.
pub trait OnRejection<B> {
    /// The response for `rejection`; `realm` is the layer's configured realm.
    fn on_rejection(&self, rejection: &AuthRejection, realm: &str) -> Response<B>;
}

/// The default rejection: [`AuthRejection::to_response`], for any body type
/// that can be built from a `String` (axum's `Body`, `http_body_util::Full`,
/// `String`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl<B: From<String>> OnRejection<B> for DefaultRejection {
    fn on_rejection(&self, rejection: &AuthRejection, realm: &str) -> Response<B> {
        rejection.to_response(realm)
    }
}

impl<B, F> OnRejection<B> for F
where
    F: Fn(&AuthRejection) -> Response<B>,
{
    fn on_rejection(&self, rejection: &AuthRejection, _realm: &str) -> Response<B> {
        self(rejection)
    }
}

#[derive(Clone)]
pub(crate) struct AuthConfig {
    pub(crate) verifier: Verifier,
    pub(crate) sources: TokenSources,
    pub(crate) required: bool,
    pub(crate) realm: Box<str>,
    pub(crate) revocations: Option<Arc<dyn RevocationStore>>,
    pub(crate) renewal: Option<(CookieRenewal, TokenSources)>,
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
    Verified(VerifiedToken),
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
            Ok(verified) => Authenticated::Verified(VerifiedToken::new(verified, found_in)),
            Err(err) => Authenticated::Refused(err.into()),
        };
        (outcome, Some(found_in))
    }

    /// The refresh cookie to renew from, when renewal applies: no access
    /// token at all, or an expired one that came from a cookie.
    pub(crate) fn renewal_token<'h>(
        &self,
        headers: &'h HeaderMap,
        outcome_is_missing: bool,
        refused_expired_cookie: bool,
    ) -> Option<&'h str> {
        let (_, refresh_source) = self.renewal.as_ref()?;
        if !(outcome_is_missing || refused_expired_cookie) {
            return None;
        }
        refresh_source.find(headers).ok().flatten().map(|f| f.token)
    }
}

/// A [`Layer`] that verifies a token on every request and puts its claims in
/// the request extensions.
///
/// `C` is the application's claims type (any `DeserializeOwned + Send +
/// Sync + 'static`; the [`Claims`](crate::token::Claims) extractor also needs
/// `Clone`). See the [module docs](crate::auth) for an
/// example.
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
                realm: "api".into(),
                revocations: None,
                renewal: None,
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

    /// Where to look for the token, in order.
    pub fn sources(mut self, sources: TokenSources) -> Self {
        self.config_mut().sources = sources;
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
        self.config_mut().realm = realm.into();
        Ok(self)
    }

    /// Renders rejections with `on_rejection` instead of the default RFC 6750
    /// JSON answer.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> AuthLayer<C, R2> {
        AuthLayer {
            config: self.config,
            on_rejection,
            _claims: PhantomData,
        }
    }

    /// Consult `store` for every token that has a `jti`: a revoked token, or
    /// one of a revoked family, is refused. When the store cannot answer the
    /// request fails closed with `503`.
    pub fn revocations(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.config_mut().revocations = Some(store);
        self
    }

    /// Renew an expired or missing access cookie from the refresh cookie.
    pub fn cookie_renewal(mut self, renewal: CookieRenewal) -> Self {
        let source = TokenSources::single(TokenSource::Cookie(renewal.refresh_cookie.clone()));
        self.config_mut().renewal = Some((renewal, source));
        self
    }

    /// The verifier this layer uses.
    pub fn verifier(&self) -> &Verifier {
        &self.config.verifier
    }
}

impl<S, C, R: Clone> Layer<S> for AuthLayer<C, R> {
    type Service = Auth<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::from_layer(inner, self.clone())
    }
}
