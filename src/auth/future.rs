//! The response future of [`Auth`](super::Auth).
//!
//! Like every layer's future it is the inner service's future or a refusal
//! ready at once, with no boxing on either path. A third arm holds the work
//! some requests need before the inner service may be called (a remote
//! revocation check, a refetch of remote keys, a renewal of the access
//! cookie): a small state machine that owns the request and the inner
//! service that was polled ready, in the manner of tower-http's
//! `AsyncRequireAuthorization`, so the service, its future and the bodies
//! need not be `Send` or `'static` for the layer to work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::SET_COOKIE;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxFuture;
use crate::clock::now_seconds;
use crate::error::TokenError;
use crate::reject::{AuthRejection, OnRejection, RefusedBy};
use crate::store::{RevocationCheck, StoreError};
use crate::token::claims::ErasedVerified;
use crate::token::{Anonymous, FoundIn, VerifiedToken, Verifier};

use super::layer::AuthConfig;
use super::{RenewalError, RenewedAccess};

pin_project! {
    /// Response future of [`Auth`](super::Auth): the inner service's future,
    /// a refusal ready at once, or the work a remote store, a key fetch or a
    /// cookie renewal needs first.
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            // A renewed access cookie for the response (boxed: rare, and
            // the future stays small for every other request).
            set_cookie: Option<Box<HeaderValue>>,
        },
        // Boxed: a refusal is rare, and the future stays the size of the
        // inner service's.
        Refused { response: Option<Box<S::Response>> },
        Deferred { work: Box<Deferred<S, ReqBody, R>> },
    }
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn inner(future: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                set_cookie: None,
            },
        }
    }

    pub(crate) fn refused(response: S::Response) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn deferred(work: Deferred<S, ReqBody, R>) -> Self {
        ResponseFuture {
            kind: Kind::Deferred {
                work: Box::new(work),
            },
        }
    }
}

impl<S, ReqBody, ResBody, R> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut kind = self.as_mut().project().kind;
            let next = match kind.as_mut().project() {
                KindProj::Inner { future, set_cookie } => {
                    let mut response = ready!(future.poll(cx))?;
                    // Renewed only for a request that passed every check:
                    // a layer inside this one that refused it (CSRF, space,
                    // address) gets no fresh access cookie sent with its
                    // refusal.
                    if let Some(cookie) = set_cookie.take()
                        && RefusedBy::passed_every_check(&response)
                    {
                        response.headers_mut().append(SET_COOKIE, *cookie);
                    }
                    return Poll::Ready(Ok(response));
                }
                KindProj::Refused { response } => match response.take() {
                    Some(response) => return Poll::Ready(Ok(*response)),
                    None => panic!("ResponseFuture polled after completion"),
                },
                KindProj::Deferred { work } => ready!(work.poll_work(cx)),
            };
            kind.set(match next {
                Next::Call(future, set_cookie) => Kind::Inner { future, set_cookie },
                Next::Refuse(response) => Kind::Refused {
                    response: Some(Box::new(response)),
                },
            });
        }
    }
}

/// A revocation check a remote store answers later.
pub(crate) type PendingCheck = BoxFuture<'static, Result<bool, StoreError>>;

/// Verifies a token for the layer's claims type, through the verifier's
/// cache (a function pointer, so the deferred work need not name the type).
pub(crate) type VerifyShared =
    fn(&Verifier, &[u8], u64) -> Result<(Arc<dyn ErasedVerified>, bool), TokenError>;

pub(crate) fn verify_shared<C>(
    verifier: &Verifier,
    token: &[u8],
    now: u64,
) -> Result<(Arc<dyn ErasedVerified>, bool), TokenError>
where
    C: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    verifier.verify_shared::<C>(token, now)
}

/// Work that needs I/O before the inner service may be called.
pub(crate) enum Work {
    /// A revocation check answered by a remote store, for this token
    /// (and whether the token cache answered for it).
    Revocation(PendingCheck, VerifiedToken, bool),
    /// A refetch of remote keys, after which this token is verified again.
    KeyRefetch(BoxFuture<'static, ()>, String, FoundIn),
    /// A renewal of the access cookie; the fallback answers when the
    /// refresh cookie renews nothing.
    Renewal(
        BoxFuture<'static, Result<RenewedAccess, RenewalError>>,
        AuthRejection,
    ),
    /// A renewed token's revocation check, then the call with its cookie.
    RenewedRevocation(PendingCheck, VerifiedToken, HeaderValue),
}

/// What the deferred work ends in.
enum Next<F, Res> {
    Call(F, Option<Box<HeaderValue>>),
    Refuse(Res),
}

/// The deferred work of one request: the work itself, the request, and the
/// inner service that was polled ready.
pub(crate) struct Deferred<S, ReqBody, R> {
    pub(crate) work: Work,
    pub(crate) request: Option<Request<ReqBody>>,
    pub(crate) inner: S,
    pub(crate) config: Arc<AuthConfig>,
    pub(crate) on_rejection: R,
    pub(crate) verify: VerifyShared,
}

impl<S, ReqBody, ResBody, R> Deferred<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<Next<S::Future, Response<ResBody>>> {
        loop {
            let next = match &mut self.work {
                Work::Revocation(pending, token, cached) => {
                    let answer = ready!(pending.as_mut().poll(cx));
                    let (token, cached) = (token.clone(), *cached);
                    return Poll::Ready(match revoked_answer(answer) {
                        Ok(()) => self.call(token, cached, None),
                        Err(rejection) => self.refuse(rejection),
                    });
                }
                Work::RenewedRevocation(pending, token, cookie) => {
                    let answer = ready!(pending.as_mut().poll(cx));
                    let (token, cookie) = (token.clone(), cookie.clone());
                    return Poll::Ready(match revoked_answer(answer) {
                        Ok(()) => self.call(token, false, Some(cookie)),
                        Err(rejection) => self.refuse(rejection),
                    });
                }
                Work::KeyRefetch(refetch, token, found_in) => {
                    ready!(refetch.as_mut().poll(cx));
                    let (verified, cached) =
                        match (self.verify)(&self.config.verifier, token.as_bytes(), now_seconds())
                        {
                            Ok((verified, cached)) => {
                                (VerifiedToken::new(verified, *found_in), cached)
                            }
                            Err(err) => return Poll::Ready(self.refuse(err.into())),
                        };
                    match check_revocation(&self.config, &verified) {
                        Ok(None) => return Poll::Ready(self.call(verified, cached, None)),
                        Ok(Some(pending)) => Work::Revocation(pending, verified, cached),
                        Err(rejection) => return Poll::Ready(self.refuse(rejection)),
                    }
                }
                Work::Renewal(renewing, fallback) => {
                    let renewed = match ready!(renewing.as_mut().poll(cx)) {
                        Ok(renewed) => renewed,
                        Err(RenewalError::Unavailable) => {
                            return Poll::Ready(self.refuse(AuthRejection::Unavailable));
                        }
                        // No access token and a refresh cookie that renews
                        // nothing: on an optional route, that is anonymous.
                        Err(_)
                            if *fallback == AuthRejection::MissingToken
                                && !self.config.required =>
                        {
                            let mut request = self.take_request();
                            self.config.allowed(None, false, request.headers());
                            if let Err(reason) = self.config.authorize(None, &request) {
                                return Poll::Ready(Next::Refuse(self.config.refuse_authz(
                                    &self.on_rejection,
                                    reason,
                                    &request,
                                )));
                            }
                            request
                                .extensions_mut()
                                .insert(Anonymous::new(self.config.realm.clone()));
                            return Poll::Ready(Next::Call(self.inner.call(request), None));
                        }
                        Err(_) => {
                            let fallback = fallback.clone();
                            return Poll::Ready(self.refuse(fallback));
                        }
                    };
                    // The new token passes this layer's own verifier and
                    // revocation check, like any other: renewal never widens
                    // what the layer accepts.
                    let verified = match (self.verify)(
                        &self.config.verifier,
                        renewed.token.as_bytes(),
                        now_seconds(),
                    ) {
                        Ok((verified, _)) => VerifiedToken::new(verified, FoundIn::Issued),
                        Err(err) => return Poll::Ready(self.refuse(err.into())),
                    };
                    let Some((renewal, _)) = &self.config.renewal else {
                        return Poll::Ready(self.refuse(AuthRejection::MissingToken));
                    };
                    let cookie = renewal.cookies.set(
                        &renewal.access_cookie,
                        &renewed.token,
                        renewed.lifetime,
                    );
                    match check_revocation(&self.config, &verified) {
                        Ok(None) => return Poll::Ready(self.call(verified, false, Some(cookie))),
                        Ok(Some(pending)) => Work::RenewedRevocation(pending, verified, cookie),
                        Err(rejection) => return Poll::Ready(self.refuse(rejection)),
                    }
                }
            };
            self.work = next;
        }
    }

    fn take_request(&mut self) -> Request<ReqBody> {
        match self.request.take() {
            Some(request) => request,
            None => panic!("ResponseFuture polled after completion"),
        }
    }

    /// Calls the inner service with `token` (`cached`: the token cache
    /// answered for it), adding the renewed access cookie to the response
    /// when there is one.
    fn call(
        &mut self,
        token: VerifiedToken,
        cached: bool,
        set_cookie: Option<HeaderValue>,
    ) -> Next<S::Future, Response<ResBody>> {
        let mut request = self.take_request();
        if set_cookie.is_some() {
            self.config.counters.renewed.increment();
            crate::observe::event!(
                info,
                target: crate::observe::DECISION,
                layer = "auth",
                outcome = "allowed",
                reason = "renewed",
                sub = token.meta().subject.as_deref().map(crate::observe::shown),
                family = token.meta().family.as_deref(),
                "access cookie renewed from the refresh cookie"
            );
        } else {
            self.config.allowed(Some(&token), cached, request.headers());
        }
        if let Err(reason) = self.config.authorize(Some(&token), &request) {
            // No renewed cookie goes with a refusal.
            return Next::Refuse(
                self.config
                    .refuse_authz(&self.on_rejection, reason, &request),
            );
        }
        request.extensions_mut().insert(token);
        Next::Call(self.inner.call(request), set_cookie.map(Box::new))
    }

    fn refuse(&mut self, rejection: AuthRejection) -> Next<S::Future, Response<ResBody>> {
        Next::Refuse(match self.request.take() {
            Some(request) => self.config.refuse(
                &self.on_rejection,
                rejection,
                request.headers(),
                request.extensions(),
            ),
            None => self.config.refuse(
                &self.on_rejection,
                rejection,
                &http::HeaderMap::new(),
                &http::Extensions::new(),
            ),
        })
    }
}

/// `Ok(None)`: not revoked (or no store); `Ok(Some)`: the store needs I/O.
///
/// Three questions: the token id, its family, and whether its subject was
/// signed out everywhere after it was issued. Answered at once by a local
/// store (no allocation); a remote store's pending answers are awaited one
/// after the other.
pub(crate) fn check_revocation(
    config: &AuthConfig,
    token: &VerifiedToken,
) -> Result<Option<PendingCheck>, AuthRejection> {
    let Some(store) = &config.revocations else {
        return Ok(None);
    };
    let meta = token.meta();
    // The family is checked whether or not the token has an id: a token
    // without `jti` that names a revoked family is refused. Without an id,
    // the family stands in for it (ids and families share the store's one
    // namespace of revoked names).
    let tokens = match (&meta.token_id, &meta.family) {
        (Some(id), family) => Some(store.check(id, family.as_deref())),
        (None, Some(family)) => Some(store.check(family, Some(family.as_str()))),
        (None, None) => None,
    };
    let pending = match tokens {
        Some(RevocationCheck::Ready(answer)) => {
            revoked_answer(answer)?;
            None
        }
        Some(RevocationCheck::Pending(future)) => Some(future),
        None => None,
    };
    // A token without `iat` is checked as issued at 0: any cut-off of its
    // subject refuses it.
    let subject = match &meta.subject {
        Some(subject) => store.check_subject(subject, meta.issued_at.unwrap_or(0)),
        None => return Ok(pending),
    };
    match (pending, subject) {
        (pending, RevocationCheck::Ready(answer)) => revoked_answer(answer).map(|()| pending),
        (None, RevocationCheck::Pending(future)) => Ok(Some(future)),
        (Some(first), RevocationCheck::Pending(second)) => Ok(Some(Box::pin(async move {
            if first.await? {
                return Ok(true);
            }
            second.await
        }))),
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
