//! What every layer shares: the response future of the layers that decide
//! at once ([`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer),
//! [`IpFilterLayer`](crate::ip::IpFilterLayer),
//! [`CsrfLayer`](crate::csrf::CsrfLayer), the login throttle), the one
//! place a refusal is rendered, and the inner-service accessors.
//!
//! [`AuthLayer`](crate::auth::AuthLayer)'s future has the same two arms
//! and a third for the work a remote store or key fetch needs first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::observe::Seen;
use crate::reject::{OnRejection, RefusedBy, Rejection};

pin_project! {
    /// The inner service's future, or the layer's refusal ready at once.
    /// No boxing.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        // Boxed: a refusal is rare, and the future stays the size of the
        // inner service's.
        Refused { response: Option<Box<Response<B>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn refused(response: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}

/// Renders `rejection` with the layer's `on_rejection`: the one place every
/// refusal of every layer goes through, counted and reported (with what the
/// layer `seen` of the request) on its way, and marked [`RefusedBy`] so
/// that no layer outside it treats the response as a request that passed.
pub(crate) fn refuse<B, R: OnRejection<B>>(
    on_rejection: &R,
    rejection: &Rejection,
    seen: Seen<'_>,
) -> Response<B> {
    crate::observe::refused(rejection, seen);
    let mut response = on_rejection.on_rejection(rejection);
    response
        .extensions_mut()
        .insert(RefusedBy(rejection.layer()));
    response
}

/// `get_ref`, `get_mut` and `into_inner` for a service whose wrapped service
/// is in the field `inner`.
macro_rules! define_inner_service_accessors {
    () => {
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
    };
}

pub(crate) use define_inner_service_accessors;
