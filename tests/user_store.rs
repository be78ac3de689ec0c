//! An application's own user store behind the presets: the lockout the
//! presets of one flow share, store outages answered `503` (never a sign
//! out), cookie renewal wired to the cookie the layer reads, and the public
//! hashing helpers a store needs.

#![cfg(feature = "presets")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_authgate::BoxFuture;
use tower_authgate::auth::AuthLayer;
use tower_authgate::cookie::CookieSettings;
use tower_authgate::error::ConfigError;
use tower_authgate::login::{
    Account, AuthClaims, Authenticator, HashingPool, JwtIssuer, LoginFlow, Principal, TokenIssuer,
    hash_password,
};
use tower_authgate::schemes::bearer_pair::BearerPair;
use tower_authgate::schemes::cookie_session::{ACCESS_COOKIE, CookieSession};
use tower_authgate::store::StoreError;
use tower_authgate::token::{Algorithm, SigningKey, TokenSource, TokenSources};

/// A store of one account (`admin`/`admin`) that counts its lookups and can
/// be taken down.
struct Accounts {
    hash: String,
    down: AtomicBool,
    lookups: AtomicUsize,
}

impl Accounts {
    fn new() -> Arc<Self> {
        Arc::new(Accounts {
            hash: hash_password("admin").unwrap(),
            down: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
        })
    }
}

impl Authenticator for Accounts {
    fn find_account<'a>(
        &'a self,
        identifier: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError("the database is down".into()));
            }
            let email: Option<&str> = None;
            Ok((identifier.trim().eq_ignore_ascii_case("admin")).then(|| {
                let principal = Principal::builder("1", "admin")
                    .email(email)
                    .name(Some("Administrator"))
                    .active_until(None)
                    .spaces("default_space,production".split(','))
                    .roles(["admin"])
                    .build();
                Account::new(principal, self.hash.clone())
            }))
        })
    }
}

fn issuer() -> Arc<dyn TokenIssuer> {
    let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")
        .unwrap()
        .with_kid("k");
    Arc::new(JwtIssuer::new(key, "test").unwrap())
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    }
}

async fn call(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn form_login(password: &str) -> Request<Body> {
    Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("username=admin&password={password}")))
        .unwrap()
}

fn core_login(password: &str) -> Request<Body> {
    Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"username": "admin", "password": password}).to_string(),
        ))
        .unwrap()
}

/// Both presets over one flow given no lockout of its own, and a guarded
/// route behind the inSCADA preset's layer.
fn two_presets(users: Arc<Accounts>) -> (Router, CookieSession) {
    let issuer = issuer();
    let flow = LoginFlow::new(users, issuer.clone());
    let session = CookieSession::new(flow.clone()).with_cookies(CookieSettings::default());
    let core = BearerPair::new(flow);
    let guarded = Router::new()
        .route("/api/me", get(|| async { "me" }))
        .route_layer(
            session
                .auth_layer::<AuthClaims>(issuer.access_verifier())
                .unwrap(),
        );
    let router = Router::new()
        .merge(session.router())
        .merge(core.router())
        .merge(guarded);
    (router, session)
}

#[tokio::test]
async fn alternating_the_presets_login_endpoints_locks_after_five_failures_in_all() {
    let (router, _) = two_presets(Accounts::new());
    for attempt in 0..5 {
        let request = match attempt % 2 {
            0 => form_login("wrong"),
            _ => core_login("wrong"),
        };
        assert_eq!(
            call(&router, request).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The right password now gets the lock on both endpoints.
    let inscada = call(&router, form_login("admin")).await;
    assert_eq!(inscada.status, StatusCode::LOCKED);
    let core = call(&router, core_login("admin")).await;
    assert_eq!(core.status, StatusCode::LOCKED);
    assert!(core.headers.contains_key(header::RETRY_AFTER));
    // Core's error object, as its documented errors are.
    assert_eq!(core.body["code"], 423);
    assert!(core.body["message"].is_string());
    assert!(core.body["details"].is_array());
}

#[tokio::test]
async fn a_store_outage_answers_503_to_refresh_and_cookie_renewal_never_401() {
    let users = Accounts::new();
    let (router, session) = two_presets(users.clone());
    let pair = call(&router, core_login("admin")).await;
    assert_eq!(pair.status, StatusCode::OK);
    let refresh_token = pair.body["refresh_token"].as_str().unwrap().to_owned();
    let cookies = call(&router, form_login("admin")).await;
    assert_eq!(cookies.status, StatusCode::OK);
    let refresh_cookie = cookies.cookie("ins_refresh_token").unwrap();

    users.down.store(true, Ordering::SeqCst);
    let refresh = call(
        &router,
        Request::get("/api/login/refresh")
            .header(header::AUTHORIZATION, format!("Bearer {refresh_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        refresh.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        refresh.body
    );
    assert!(refresh.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(refresh.body["code"], 503);

    // The access cookie is gone: the layer renews from the refresh cookie,
    // and an unreachable store is not a revoked session.
    let renewal = call(
        &router,
        Request::get("/api/me")
            .header(
                header::COOKIE,
                format!("ins_refresh_token={refresh_cookie}"),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(renewal.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(renewal.headers.contains_key(header::RETRY_AFTER));
    assert!(renewal.cookie(session.access_cookie_name()).is_none());

    let login = call(&router, form_login("admin")).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(login.headers.contains_key(header::RETRY_AFTER));

    // Back up: the same refresh cookie renews.
    users.down.store(false, Ordering::SeqCst);
    let renewed = call(
        &router,
        Request::get("/api/me")
            .header(
                header::COOKIE,
                format!("ins_refresh_token={refresh_cookie}"),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert!(renewed.cookie(ACCESS_COOKIE).is_some());
}

#[tokio::test]
async fn a_login_reads_the_store_once() {
    let users = Accounts::new();
    let (router, _) = two_presets(users.clone());
    assert_eq!(
        call(&router, form_login("admin")).await.status,
        StatusCode::OK
    );
    assert_eq!(users.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(
        call(&router, core_login("wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(users.lookups.load(Ordering::SeqCst), 2);
}

#[test]
fn a_renewal_writing_a_cookie_no_source_reads_is_refused_when_the_layer_is_built() {
    let issuer = issuer();
    let session = CookieSession::new(LoginFlow::new(Accounts::new(), issuer.clone()))
        .with_host_prefix()
        .unwrap();
    // The plain cookie's source next to the `__Host-` renewal.
    let layer = AuthLayer::<AuthClaims>::new(issuer.access_verifier())
        .sources(TokenSources::single(TokenSource::cookie(ACCESS_COOKIE)))
        .cookie_renewal(session.cookie_renewal().unwrap());
    match layer {
        Err(ConfigError::RenewedCookieUnread(name)) => {
            assert_eq!(name, "__Host-ins_access_token")
        }
        other => panic!("{other:?}"),
    }
    // The preset's own layers read the cookie they renew.
    assert!(
        session
            .auth_layer::<AuthClaims>(issuer.access_verifier())
            .is_ok()
    );
    assert!(
        session
            .shared_auth_layer::<AuthClaims>(issuer.access_verifier())
            .is_ok()
    );
}

#[tokio::test]
async fn the_shared_layer_renews_a_host_prefixed_cookie_once_then_reads_it() {
    let issuer = issuer();
    let session = CookieSession::new(LoginFlow::new(Accounts::new(), issuer.clone()))
        .with_host_prefix()
        .unwrap();
    let router = Router::new()
        .route("/api/me", get(|| async { "me" }))
        .route_layer(
            session
                .shared_auth_layer::<AuthClaims>(issuer.access_verifier())
                .unwrap(),
        )
        .merge(session.router());
    let login = call(&router, form_login("admin")).await;
    assert_eq!(login.status, StatusCode::OK);
    let refresh = login.cookie("__Host-ins_refresh_token").unwrap();
    let renewed = call(
        &router,
        Request::get("/api/me")
            .header(
                header::COOKIE,
                format!("__Host-ins_refresh_token={refresh}"),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK);
    let access = renewed.cookie("__Host-ins_access_token").unwrap();
    // With the renewed cookie the request is verified, not renewed again.
    let next = call(
        &router,
        Request::get("/api/me")
            .header(
                header::COOKIE,
                format!("__Host-ins_access_token={access}; __Host-ins_refresh_token={refresh}"),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(next.status, StatusCode::OK);
    assert!(next.headers.get(header::SET_COOKIE).is_none());
    // Bearer tokens pass the same layer.
    let bearer = call(
        &router,
        Request::get("/api/me")
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(bearer.status, StatusCode::OK);
}

#[tokio::test]
async fn the_public_hashing_helpers_hash_verify_and_cost_unknown_users_alike() {
    let pool = HashingPool::new(1, 4);
    let hash = pool.hash("s3cret").await.unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(pool.verify(Some(&hash), "s3cret").await.unwrap());
    assert!(!pool.verify(Some(&hash), "other").await.unwrap());
    assert!(!pool.verify(Some("not a hash"), "s3cret").await.unwrap());
    // No account: a verification against the dummy hash, and `false`.
    let started = std::time::Instant::now();
    assert!(!pool.verify(None, "s3cret").await.unwrap());
    let unknown = started.elapsed();
    let started = std::time::Instant::now();
    assert!(!pool.verify(Some(&hash), "other").await.unwrap());
    let known = started.elapsed();
    assert!(
        unknown * 3 > known,
        "an unknown user took {unknown:?}, a wrong password {known:?}"
    );
}

#[tokio::test]
async fn sources_set_after_a_renewal_they_do_not_read_drop_it_rather_than_mint_per_request() {
    let issuer = issuer();
    let session = CookieSession::new(LoginFlow::new(Accounts::new(), issuer.clone()));
    let layer = AuthLayer::<AuthClaims>::new(issuer.access_verifier())
        .sources(TokenSources::single(TokenSource::cookie(ACCESS_COOKIE)))
        .cookie_renewal(session.cookie_renewal().unwrap())
        .unwrap()
        .sources(TokenSources::bearer());
    let router = Router::new()
        .route("/api/me", get(|| async { "me" }))
        .route_layer(layer)
        .merge(session.router());
    let login = call(&router, form_login("admin")).await;
    let refresh = login.cookie("ins_refresh_token").unwrap();
    let refused = call(
        &router,
        Request::get("/api/me")
            .header(header::COOKIE, format!("ins_refresh_token={refresh}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.cookie(ACCESS_COOKIE).is_none());
}
