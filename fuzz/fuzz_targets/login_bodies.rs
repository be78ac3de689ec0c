//! Each documented API's login endpoint over arbitrary bodies and content
//! types: always a client error, never a panic or a server error.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tower_authgate::login::{Authenticator, JwtIssuer, LoginError, LoginFlow, Principal};
use tower_authgate::schemes::{auth_token, bearer_pair, cookie_session, pascal_case, x_auth_token};
use tower_authgate::BoxFuture;
use tower_authgate::token::SigningKey;

/// Knows nobody: the bodies are what is fuzzed, not password hashing.
struct Nobody;

impl Authenticator for Nobody {
    fn authenticate<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Principal, LoginError>> {
        Box::pin(async { Err(LoginError::InvalidCredentials) })
    }

    fn find<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<Principal>> {
        Box::pin(async { None })
    }
}

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let key = SigningKey::generate_ed25519().unwrap();
    let flow = LoginFlow::new(Arc::new(Nobody), Arc::new(JwtIssuer::new(key, "fuzz").unwrap()));
    Router::new()
        .merge(cookie_session::CookieSession::new(flow.clone()).router())
        .merge(bearer_pair::BearerPair::new(flow.clone()).router())
        .merge(pascal_case::PascalCase::new(flow.clone()).router())
        .merge(auth_token::AuthToken::new(flow.clone()).router())
        .merge(x_auth_token::XAuthToken::new(flow).router())
});

const ENDPOINTS: [&str; 8] = [
    "/login",
    "/login/otp",
    "/api/login",
    "/authenticate/signin",
    "/authenticate/refresh",
    "/authenticate/totp",
    "/api/authentication/login",
    "/api/v2/login",
];
const TYPES: [&str; 4] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let endpoint = ENDPOINTS[selector as usize % ENDPOINTS.len()];
    let content_type = TYPES[(selector as usize / ENDPOINTS.len()) % TYPES.len()];
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let request = Request::post(endpoint)
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .unwrap();
    let status = runtime.block_on(ROUTER.clone().oneshot(request)).unwrap().status();
    assert!(status.is_client_error(), "{endpoint} {content_type}: {status}");
});
