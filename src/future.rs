//! The response future shared by the synchronous layers ([`SpaceLayer`](crate::tenant::SpaceLayer),
//! [`IpFilterLayer`](crate::ip::IpFilterLayer)): the inner service's future,
//! or a rejection ready at once. No boxing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's future, or a ready rejection.
    pub struct InnerOrRejected<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B> InnerOrRejected<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        InnerOrRejected {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(response: Response<B>) -> Self {
        InnerOrRejected {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for InnerOrRejected<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("future polled after completion"),
            },
        }
    }
}

/// A JSON error answer `{"error":…,"error_description":…}`.
pub(crate) fn json_error<B: From<String>>(
    status: http::StatusCode,
    error: &str,
    description: &str,
) -> Response<B> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
