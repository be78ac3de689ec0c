//! [`AuthLayer`]: configuration of the token-verifying middleware.

use std::marker::PhantomData;
use std::sync::Arc;

use http::{HeaderMap, Response};
use tower_layer::Layer;

use crate::error::{AuthRejection, ConfigError, check_quoted_value};
use crate::token::{FoundIn, TokenSources, Verified, Verifier};

use super::Auth;

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

#[derive(Debug, Clone)]
pub(crate) struct AuthConfig {
    pub(crate) verifier: Verifier,
    pub(crate) sources: TokenSources,
    pub(crate) required: bool,
    pub(crate) realm: Box<str>,
}

impl AuthConfig {
    /// Finds and verifies the request's token.
    pub(crate) fn authenticate<C: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Verified<C>, FoundIn)>, AuthRejection> {
        let Some(found) = self.sources.find(headers)? else {
            return Ok(None);
        };
        let verified = self.verifier.verify::<C>(found.token)?;
        Ok(Some((verified, found.found_in)))
    }
}

/// A [`Layer`] that verifies a token on every request and puts its claims in
/// the request extensions.
///
/// `C` is the application's claims type (any `DeserializeOwned + Clone +
/// Send + Sync + 'static`). See the [module docs](crate::auth) for an
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
