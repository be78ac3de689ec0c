//! [`Auth`]: the token-verifying service.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::error::AuthRejection;
use crate::token::{Anonymous, Claims};

use super::ResponseFuture;
use super::layer::{AuthConfig, AuthLayer, OnRejection};

/// The service made by [`AuthLayer`]: verifies the request's token, then
/// calls `inner` with [`Claims<C>`], [`TokenMeta`](crate::token::TokenMeta)
/// and [`FoundIn`](crate::token::FoundIn) in the request extensions.
pub struct Auth<S, C, R> {
    inner: S,
    config: Arc<AuthConfig>,
    on_rejection: R,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C, R: Clone> Clone for Auth<S, C, R> {
    fn clone(&self) -> Self {
        Auth {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            _claims: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for Auth<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, C, R> Auth<S, C, R> {
    pub(crate) fn from_layer(inner: S, layer: AuthLayer<C, R>) -> Self {
        Auth {
            inner,
            config: layer.config,
            on_rejection: layer.on_rejection,
            _claims: PhantomData,
        }
    }

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

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
    R: OnRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let rejection = match self.config.authenticate::<C>(req.headers()) {
            Ok(Some((verified, found_in))) => {
                let extensions = req.extensions_mut();
                extensions.insert(Claims(verified.claims));
                extensions.insert(verified.meta);
                extensions.insert(found_in);
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) if !self.config.required => {
                req.extensions_mut().insert(Anonymous);
                return ResponseFuture::inner(self.inner.call(req));
            }
            Ok(None) => AuthRejection::MissingToken,
            Err(rejection) => rejection,
        };
        ResponseFuture::rejected(
            self.on_rejection
                .on_rejection(&rejection, &self.config.realm),
        )
    }
}
