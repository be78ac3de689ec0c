//! SelectSpaceLayer over arbitrary X-Space values.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::login::AuthClaims;
use tower_authgate::tenant::SelectSpaceLayer;

fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("nothing here waits"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else { return };
    let mut request = Request::new(String::new());
    request.headers_mut().insert("x-space", value);
    let service = ServiceBuilder::new()
        .layer(SelectSpaceLayer::<AuthClaims>::new())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }));
    let status = ready(service.oneshot(request)).unwrap().status();
    assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
});
