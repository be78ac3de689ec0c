//! [`Auth`]: the token-verifying service.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::TokenError;
use crate::future::define_inner_service_accessors;
use crate::reject::{AuthRejection, OnRejection};
use crate::token::{Anonymous, FoundIn};

use super::future::{Deferred, ResponseFuture, Work, check_revocation, verify_shared};
use super::layer::{AuthConfig, AuthLayer, Authenticated};

/// The service made by [`AuthLayer`]: verifies the request's token, then
/// calls `inner` with a [`VerifiedToken`](crate::token::VerifiedToken) in the
/// request extensions.
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

    define_inner_service_accessors!();
}

// Only `Clone` is asked of the inner service and the rejection renderer:
// work that awaits a store or a key fetch moves the service that was polled
// ready into the response future and leaves a clone behind. The future is
// `Send` exactly when the service, its future, the bodies and the renderer
// are: nothing here boxes them.
impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Send + Sync + 'static,
    R: OnRejection<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if self.config.public(&req) {
            req.extensions_mut()
                .insert(Anonymous::new(self.config.realm.clone()));
            return ResponseFuture::inner(self.inner.call(req));
        }
        let (outcome, found_in) = self.config.authenticate::<C>(req.headers());
        let rejection = match outcome {
            Authenticated::Verified(token, cached) => {
                match check_revocation(&self.config, &token) {
                    Ok(None) => {
                        self.config.allowed(Some(&token), cached, req.headers());
                        if let Err(reason) = self.config.authorize(Some(&token), &req) {
                            return self.refuse_authz(reason, &req);
                        }
                        req.extensions_mut().insert(token);
                        return ResponseFuture::inner(self.inner.call(req));
                    }
                    Ok(Some(pending)) => {
                        return self.defer(req, Work::Revocation(pending, token, cached));
                    }
                    Err(rejection) => rejection,
                }
            }
            Authenticated::Missing => {
                if let Some(work) = self.config.renewal_work(
                    req.headers(),
                    true,
                    false,
                    &AuthRejection::MissingToken,
                ) {
                    return self.defer(req, work);
                }
                if !self.config.required {
                    self.config.allowed(None, false, req.headers());
                    if let Err(reason) = self.config.authorize(None, &req) {
                        return self.refuse_authz(reason, &req);
                    }
                    req.extensions_mut()
                        .insert(Anonymous::new(self.config.realm.clone()));
                    return ResponseFuture::inner(self.inner.call(req));
                }
                AuthRejection::MissingToken
            }
            Authenticated::Refused(
                AuthRejection::InvalidToken(TokenError::UnknownKey) | AuthRejection::Unavailable,
            ) if let Some(work) = self.key_refetch(req.headers()) => {
                return self.defer(req, work);
            }
            Authenticated::Refused(rejection) => {
                let expired_cookie = rejection == AuthRejection::InvalidToken(TokenError::Expired)
                    && found_in == Some(FoundIn::Cookie);
                if let Some(work) =
                    self.config
                        .renewal_work(req.headers(), false, expired_cookie, &rejection)
                {
                    return self.defer(req, work);
                }
                rejection
            }
        };
        ResponseFuture::refused(self.config.refuse(
            &self.on_rejection,
            rejection,
            req.headers(),
            req.extensions(),
        ))
    }
}

impl<S, C, R> Auth<S, C, R>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    /// The refetch of remote keys for the request's token, when its keys
    /// come from a key source that may refetch now.
    fn key_refetch(&self, headers: &http::HeaderMap) -> Option<Work> {
        let found = self.config.sources.find(headers).ok()??;
        let refetch = self.config.verifier.on_unknown_key(found.token)?;
        Some(Work::KeyRefetch(
            refetch,
            found.token.to_owned(),
            found.found_in,
        ))
    }

    /// The refusal of the layer's own policy.
    fn refuse_authz<ReqBody, ResBody>(
        &self,
        reason: crate::authz::AuthzRejection,
        req: &Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        R: OnRejection<ResBody>,
    {
        ResponseFuture::refused(self.config.refuse_authz(&self.on_rejection, reason, req))
    }

    /// Moves the request, and the inner service that was polled ready, into
    /// a future that does `work` first.
    fn defer<ReqBody>(&mut self, req: Request<ReqBody>, work: Work) -> ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>> + Clone,
        R: Clone,
    {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::deferred(Deferred {
            work,
            request: Some(req),
            inner,
            config: Arc::clone(&self.config),
            on_rejection: self.on_rejection.clone(),
            verify: verify_shared::<C>,
        })
    }
}
