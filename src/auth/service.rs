//! [`Auth`]: the token-verifying service.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::SET_COOKIE;
use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::BoxFuture;
use crate::TokenError;
use crate::clock::now_seconds;
use crate::error::AuthRejection;
use crate::store::{RevocationCheck, StoreError};
use crate::token::{Anonymous, FoundIn, VerifiedToken};

use super::layer::{AuthConfig, AuthLayer, Authenticated, OnRejection};
use super::{RenewalError, ResponseFuture};

/// The service made by [`AuthLayer`]: verifies the request's token, then
/// calls `inner` with a [`VerifiedToken`] in the request extensions.
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

/// A revocation check a remote store answers later.
type PendingCheck = BoxFuture<'static, Result<bool, StoreError>>;

/// `Ok(None)`: not revoked (or no store); `Ok(Some)`: the store needs I/O.
fn check_revocation(
    config: &AuthConfig,
    token: &VerifiedToken,
) -> Result<Option<PendingCheck>, AuthRejection> {
    let Some(store) = &config.revocations else {
        return Ok(None);
    };
    let meta = token.meta();
    let Some(id) = &meta.token_id else {
        return Ok(None);
    };
    match store.check(id, meta.family.as_deref()) {
        RevocationCheck::Ready(answer) => revoked_answer(answer).map(|()| None),
        RevocationCheck::Pending(future) => Ok(Some(future)),
    }
}

/// The rejection, if any, for a store's answer.
fn revoked_answer(answer: Result<bool, StoreError>) -> Result<(), AuthRejection> {
    match answer {
        Ok(false) => Ok(()),
        Ok(true) => Err(TokenError::Revoked.into()),
        Err(_) => Err(AuthRejection::Unavailable),
    }
}

/// Work that needs I/O before the inner service may be called.
enum Deferred {
    /// A revocation check answered by a remote store.
    Revocation(PendingCheck, VerifiedToken),
    /// A renewal of the access cookie from this refresh token.
    Renewal(String, AuthRejection),
    /// A refetch of remote keys, after which this token is verified again.
    KeyRefresh(BoxFuture<'static, ()>, String, FoundIn),
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: DeserializeOwned + Send + Sync + 'static,
    R: OnRejection<ResBody> + Clone + Send + Sync + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (outcome, found_in) = self.config.authenticate::<C>(req.headers());
        let rejection = match outcome {
            Authenticated::Verified(token) => match check_revocation(&self.config, &token) {
                Ok(None) => {
                    req.extensions_mut().insert(token);
                    return ResponseFuture::inner(self.inner.call(req));
                }
                Ok(Some(pending)) => {
                    return self.deferred(req, Deferred::Revocation(pending, token));
                }
                Err(rejection) => rejection,
            },
            Authenticated::Missing => {
                if let Some(refresh) = self.config.renewal_token(req.headers(), true, false) {
                    let refresh = refresh.to_owned();
                    return self
                        .deferred(req, Deferred::Renewal(refresh, AuthRejection::MissingToken));
                }
                if !self.config.required {
                    req.extensions_mut().insert(Anonymous);
                    return ResponseFuture::inner(self.inner.call(req));
                }
                AuthRejection::MissingToken
            }
            Authenticated::Refused(
                AuthRejection::InvalidToken(TokenError::UnknownKey) | AuthRejection::Unavailable,
            ) if let Some((refresh, token, found_in)) = self.key_refresh(req.headers()) => {
                return self.deferred(req, Deferred::KeyRefresh(refresh, token, found_in));
            }
            Authenticated::Refused(rejection) => {
                let expired_cookie = rejection == AuthRejection::InvalidToken(TokenError::Expired)
                    && found_in == Some(FoundIn::Cookie);
                if let Some(refresh) =
                    self.config
                        .renewal_token(req.headers(), false, expired_cookie)
                {
                    let refresh = refresh.to_owned();
                    return self.deferred(req, Deferred::Renewal(refresh, rejection));
                }
                rejection
            }
        };
        ResponseFuture::rejected(
            self.on_rejection
                .on_rejection(&rejection, &self.config.realm),
        )
    }
}

impl<S, C, R> Auth<S, C, R> {
    /// The refetch of remote keys for the request's token, when its keys
    /// come from a key source that may refetch now.
    fn key_refresh(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<(BoxFuture<'static, ()>, String, FoundIn)> {
        let found = self.config.sources.find(headers).ok()??;
        let refresh = self.config.verifier.on_unknown_key(found.token)?;
        Some((refresh, found.token.to_owned(), found.found_in))
    }

    fn deferred<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
        work: Deferred,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        C: DeserializeOwned + Send + Sync + 'static,
        R: OnRejection<ResBody> + Clone + Send + Sync + 'static,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let on_rejection = self.on_rejection.clone();
        let reject = move |rejection: AuthRejection| {
            Ok(on_rejection.on_rejection(&rejection, &config.realm))
        };
        let config = Arc::clone(&self.config);
        ResponseFuture::boxed(Box::pin(async move {
            match work {
                Deferred::Revocation(pending, token) => match revoked_answer(pending.await) {
                    Ok(()) => {
                        req.extensions_mut().insert(token);
                        inner.call(req).await
                    }
                    Err(rejection) => reject(rejection),
                },
                Deferred::KeyRefresh(refresh, token, found_in) => {
                    refresh.await;
                    let verified = match config
                        .verifier
                        .verify_shared::<C>(token.as_bytes(), now_seconds())
                    {
                        Ok(verified) => VerifiedToken::new(verified, found_in),
                        Err(err) => return reject(err.into()),
                    };
                    let checked = match check_revocation(&config, &verified) {
                        Ok(None) => Ok(()),
                        Ok(Some(pending)) => revoked_answer(pending.await),
                        Err(rejection) => Err(rejection),
                    };
                    match checked {
                        Ok(()) => {
                            req.extensions_mut().insert(verified);
                            inner.call(req).await
                        }
                        Err(rejection) => reject(rejection),
                    }
                }
                Deferred::Renewal(refresh, fallback) => {
                    let Some((renewal, _)) = &config.renewal else {
                        return reject(fallback);
                    };
                    let renewed = match renewal.renewer.renew_access(&refresh).await {
                        Ok(renewed) => renewed,
                        Err(RenewalError::Unavailable) => {
                            return reject(AuthRejection::Unavailable);
                        }
                        // No access token and a refresh cookie that renews
                        // nothing: on an optional route, that is anonymous.
                        Err(_) if fallback == AuthRejection::MissingToken && !config.required => {
                            req.extensions_mut().insert(Anonymous);
                            return inner.call(req).await;
                        }
                        Err(_) => return reject(fallback),
                    };
                    // The new token passes this layer's own verifier, like
                    // any other: renewal never widens what it accepts.
                    let verified = match config
                        .verifier
                        .verify_shared::<C>(renewed.token.as_bytes(), now_seconds())
                    {
                        Ok(verified) => VerifiedToken::new(verified, FoundIn::Issued),
                        Err(err) => return reject(err.into()),
                    };
                    let checked = match check_revocation(&config, &verified) {
                        Ok(None) => Ok(()),
                        Ok(Some(pending)) => revoked_answer(pending.await),
                        Err(rejection) => Err(rejection),
                    };
                    if let Err(rejection) = checked {
                        return reject(rejection);
                    }
                    req.extensions_mut().insert(verified);
                    let mut response = inner.call(req).await?;
                    response.headers_mut().append(
                        SET_COOKIE,
                        renewal.cookies.set(
                            &renewal.access_cookie,
                            &renewed.token,
                            renewed.lifetime,
                        ),
                    );
                    Ok(response)
                }
            }
        }))
    }
}
