//! Every way of composing the guard layers: the arrangements that cannot see
//! what they need refuse (a `500` naming the wiring mistake, or `401` for an
//! anonymous request), and the arrangement the demo uses answers `200`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::*;
use http::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_authgate::auth::AuthLayer;
use tower_authgate::csrf::CsrfLayer;
use tower_authgate::ip::{ClientIpResolver, IpFilterLayer, IpRules, PeerAddr};
use tower_authgate::reject::JsonRejection;
use tower_authgate::tenant::{HasSpaces, SelectSpaceLayer, Space};
use tower_authgate::token::{
    Algorithm, KeySet, SigningKey, TokenKind, TokenSource, TokenSources, Verifier,
};

/// The application's claims.
#[derive(Clone, Deserialize)]
struct AppClaims {
    sub: String,
    #[serde(default)]
    spaces: Vec<String>,
}

impl HasSpaces for AppClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

/// Another claims type that also grants spaces.
#[derive(Clone, Deserialize)]
struct OtherClaims {
    #[serde(default)]
    spaces: Vec<String>,
}

impl HasSpaces for OtherClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

fn key() -> SigningKey {
    signing_key(Algorithm::HS256)
}

fn verifier() -> Verifier {
    Verifier::builder(KeySet::single(key().verifying_key()))
        .build()
        .unwrap()
}

fn sources() -> TokenSources {
    TokenSources::new([
        TokenSource::cookie("ins_access_token"),
        TokenSource::bearer(),
    ])
    .unwrap()
}

/// A token granting only `default_space`.
fn default_space_token() -> String {
    key()
        .sign(&with(
            access_claims("admin"),
            json!({"spaces": ["default_space"]}),
        ))
        .unwrap()
}

/// Answers with the selected space and the subject, so a test sees what
/// reached the handler.
async fn handler(req: Request<String>) -> Result<Response<String>, Infallible> {
    let space = req.extensions().get::<Space>().map(|s| s.0.clone());
    let sub = req
        .extensions()
        .get::<tower_authgate::token::VerifiedToken>()
        .and_then(|t| t.claims::<AppClaims>())
        .map(|c| c.sub.clone());
    Ok(Response::new(format!("{sub:?} {space:?}")))
}

fn bearer(token: &str, space: Option<&str>) -> Request<String> {
    let mut request = Request::builder().header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(space) = space {
        request = request.header("x-space", space);
    }
    request.body(String::new()).unwrap()
}

async fn send<S>(service: S, request: Request<String>) -> (StatusCode, String)
where
    S: tower::Service<Request<String>, Response = Response<String>, Error = Infallible>,
{
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body())
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_space_layer_outside_the_auth_layer_refuses_and_names_the_mistake() {
    let token = default_space_token();
    let service = ServiceBuilder::new()
        .layer(SelectSpaceLayer::<AppClaims>::new().on_rejection(JsonRejection))
        .layer(AuthLayer::<AppClaims>::new(verifier()))
        .service_fn(handler);
    for space in [Some("production"), Some("default_space"), None] {
        let (status, body) = send(service.clone(), bearer(&token, space)).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{space:?}: {body}"
        );
        assert!(error_of(&body).contains("is `AuthLayer` installed before `SelectSpaceLayer`"));
    }
}

#[tokio::test]
async fn a_space_layer_behind_an_auth_layer_of_another_claims_type_refuses() {
    let token = default_space_token();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<AppClaims>::new(verifier()))
        .layer(SelectSpaceLayer::<OtherClaims>::new().on_rejection(JsonRejection))
        .service_fn(handler);
    for space in [Some("production"), Some("default_space"), None] {
        let (status, body) = send(service.clone(), bearer(&token, space)).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{space:?}: {body}"
        );
        assert!(error_of(&body).contains("another claims type"));
    }
    // Stated once, the claims type cannot disagree.
    let auth = AuthLayer::<AppClaims>::new(verifier());
    let spaces = SelectSpaceLayer::for_auth(&auth);
    let service = ServiceBuilder::new()
        .layer(auth)
        .layer(spaces)
        .service_fn(handler);
    assert_eq!(
        send(service.clone(), bearer(&token, Some("default_space"))).await,
        (
            StatusCode::OK,
            "Some(\"admin\") Some(\"default_space\")".into()
        )
    );
    assert_eq!(
        send(service, bearer(&token, Some("production"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_optional_auth_layer_lets_no_anonymous_request_into_a_space() {
    for spaces in [
        SelectSpaceLayer::<AppClaims>::new(),
        SelectSpaceLayer::new().default_space("production").unwrap(),
    ] {
        let service = ServiceBuilder::new()
            .layer(AuthLayer::<AppClaims>::new(verifier()).optional())
            .layer(spaces)
            .service_fn(handler);
        for space in [Some("production"), None] {
            let mut request = Request::new(String::new());
            if let Some(space) = space {
                request
                    .headers_mut()
                    .insert("x-space", space.parse().unwrap());
            }
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{space:?}");
            assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }
}

#[tokio::test]
async fn a_lenient_verifier_never_vouches_for_a_token_to_a_strict_one() {
    // A verifier that accepts refresh and service-account tokens, with a
    // cache, and a strict one derived from it.
    let lenient = Verifier::builder(KeySet::single(key().verifying_key()))
        .accept_kinds(TokenKind::ALL)
        .token_cache(100)
        .build()
        .unwrap();
    let strict = lenient
        .to_builder()
        .accept_kinds([TokenKind::Access])
        .build()
        .unwrap();
    let lenient_service = ServiceBuilder::new()
        .layer(AuthLayer::<AppClaims>::new(lenient.clone()))
        .service_fn(handler);
    let strict_service = ServiceBuilder::new()
        .layer(AuthLayer::<AppClaims>::new(strict.clone()).on_rejection(JsonRejection))
        .service_fn(handler);
    for kind in ["refresh", "service", "otp-pending"] {
        let token = key()
            .sign(&with(access_claims("admin"), json!({"usefor": kind})))
            .unwrap();
        let (status, _) = send(lenient_service.clone(), bearer(&token, None)).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        let (status, body) = send(strict_service.clone(), bearer(&token, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kind}: {body}");
        assert_eq!(error_of(&body), "the token is of the wrong kind");
    }
    assert_eq!(lenient.token_cache().unwrap().len(), 3);
    assert_eq!(
        strict.token_cache().unwrap().len(),
        0,
        "a derived verifier has a cache of its own"
    );
}

#[tokio::test]
async fn layers_of_two_claims_types_over_one_cached_verifier_each_get_their_own_claims() {
    let verifier = Verifier::builder(KeySet::single(key().verifying_key()))
        .token_cache(100)
        .build()
        .unwrap();
    let token = default_space_token();
    let app = ServiceBuilder::new()
        .layer(AuthLayer::<AppClaims>::new(verifier.clone()))
        .service_fn(handler);
    let other = ServiceBuilder::new()
        .layer(AuthLayer::<OtherClaims>::new(verifier))
        .layer(SelectSpaceLayer::<OtherClaims>::new())
        .service_fn(handler);
    for _ in 0..2 {
        assert_eq!(
            send(app.clone(), bearer(&token, None)).await,
            (StatusCode::OK, "Some(\"admin\") None".into())
        );
        assert_eq!(
            send(other.clone(), bearer(&token, None)).await,
            (StatusCode::OK, "None Some(\"default_space\")".into())
        );
    }
}

#[tokio::test]
async fn a_csrf_layer_outside_the_auth_layer_refuses_and_names_the_mistake() {
    let token = default_space_token();
    let cross_site_post = || {
        Request::builder()
            .method(Method::POST)
            .header(header::HOST, "api.example.com")
            .header(header::ORIGIN, "https://evil.example")
            .header(header::COOKIE, format!("ins_access_token={token}"))
            .body(String::new())
            .unwrap()
    };
    let outside = ServiceBuilder::new()
        .layer(CsrfLayer::new().on_rejection(JsonRejection))
        .layer(AuthLayer::<AppClaims>::new(verifier()).sources(sources()))
        .service_fn(handler);
    let (status, body) = send(outside, cross_site_post()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(error_of(&body).contains("is `AuthLayer` installed before `CsrfLayer`"));
    let inside = ServiceBuilder::new()
        .layer(AuthLayer::<AppClaims>::new(verifier()).sources(sources()))
        .layer(CsrfLayer::new())
        .service_fn(handler);
    assert_eq!(
        send(inside, cross_site_post()).await.0,
        StatusCode::FORBIDDEN
    );
}

#[cfg(feature = "throttle")]
#[tokio::test]
async fn a_login_throttle_without_a_peer_address_refuses_rather_than_share_a_bucket() {
    use tower_authgate::throttle::LoginThrottleLayer;
    let service = ServiceBuilder::new()
        .layer(
            LoginThrottleLayer::per_minute(100)
                .unwrap()
                .on_rejection(JsonRejection),
        )
        .service_fn(handler);
    let (status, body) = send(service, Request::new(String::new())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(error_of(&body).contains("peer address is unknown"));
}

/// The demo's arrangement, outermost first: address filter, token (with
/// the verifier's cache), CSRF guard, space, handler.
fn demo_stack() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let verifier = Verifier::builder(KeySet::single(key().verifying_key()))
        .token_cache(100)
        .build()
        .unwrap();
    let auth = AuthLayer::<AppClaims>::new(verifier).sources(sources());
    let spaces = SelectSpaceLayer::for_auth(&auth);
    ServiceBuilder::new()
        .layer(IpFilterLayer::new(
            IpRules::parse("", "203.0.113.0/24").unwrap(),
            ClientIpResolver::new(),
        ))
        .layer(auth)
        .layer(CsrfLayer::new())
        .layer(spaces)
        .service_fn(handler)
}

#[tokio::test]
async fn the_demo_arrangement_answers_and_keeps_every_check() {
    let token = default_space_token();
    let from = |peer: &str, mut request: Request<String>| {
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
        request
    };
    let service = demo_stack();
    for _ in 0..2 {
        assert_eq!(
            send(
                service.clone(),
                from("192.0.2.1:4000", bearer(&token, Some("default_space")))
            )
            .await,
            (
                StatusCode::OK,
                "Some(\"admin\") Some(\"default_space\")".into()
            )
        );
    }
    let refused = [
        (
            from("192.0.2.1:4000", bearer(&token, Some("production"))),
            StatusCode::FORBIDDEN,
        ),
        (
            from("203.0.113.9:4000", bearer(&token, None)),
            StatusCode::FORBIDDEN,
        ),
        (
            from("192.0.2.1:4000", Request::new(String::new())),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (request, status) in refused {
        assert_eq!(send(service.clone(), request).await.0, status);
    }
}

#[cfg(feature = "axum")]
mod router {
    //! The same arrangements through axum's `Router::route_layer`, where a
    //! later call wraps the earlier ones.
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;

    async fn space(Space(space): Space) -> String {
        space
    }

    async fn call(app: Router, token: &str, space: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .uri("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-space", space)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn route_layer_auth_then_space_puts_the_space_layer_outside_and_refuses() {
        let token = default_space_token();
        let auth = AuthLayer::<AppClaims>::new(verifier());
        let spaces = SelectSpaceLayer::for_auth(&auth);
        let app = Router::new()
            .route("/", get(space))
            .route_layer(auth)
            .route_layer(spaces);
        for wanted in ["production", "default_space"] {
            let (status, body) = call(app.clone(), &token, wanted).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        }
    }

    #[tokio::test]
    async fn route_layer_space_then_auth_checks_the_grant() {
        let token = default_space_token();
        let auth = AuthLayer::<AppClaims>::new(verifier());
        let spaces = SelectSpaceLayer::for_auth(&auth);
        let app = Router::new()
            .route("/", get(space))
            .route_layer(spaces)
            .route_layer(auth);
        assert_eq!(
            call(app.clone(), &token, "default_space").await,
            (StatusCode::OK, "default_space".into())
        );
        assert_eq!(
            call(app, &token, "production").await.0,
            StatusCode::FORBIDDEN
        );
    }
}

#[cfg(feature = "login")]
#[tokio::test]
async fn an_issuers_access_verifier_accepts_access_and_service_tokens_only() {
    use tower_authgate::login::{JwtIssuer, TokenIssuer};
    let issuer = JwtIssuer::new(key(), "composition").unwrap();
    let verifier = issuer.access_verifier();
    let token = |kind: &str| {
        let now = tower_authgate::clock::now_seconds();
        key()
            .sign(&json!({"sub": "admin", "iss": "composition", "exp": now + 60, "usefor": kind}))
            .unwrap()
    };
    for (kind, accepted) in [
        ("access", true),
        ("service", true),
        ("refresh", false),
        ("otp-pending", false),
    ] {
        assert_eq!(
            verifier.verify::<Value>(&token(kind)).is_ok(),
            accepted,
            "{kind}"
        );
    }
}

/// Mints an access token granting `default_space` for the refresh token
/// `good-refresh`, counting what it minted.
struct Minter(std::sync::atomic::AtomicUsize);

impl tower_authgate::auth::RenewAccess for Minter {
    fn renew_access<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> tower_authgate::BoxFuture<
        'a,
        Result<tower_authgate::auth::RenewedAccess, tower_authgate::auth::RenewalError>,
    > {
        Box::pin(async move {
            if refresh_token != "good-refresh" {
                return Err(tower_authgate::auth::RenewalError::Refused);
            }
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(tower_authgate::auth::RenewedAccess::new(
                default_space_token(),
                300,
            ))
        })
    }
}

/// An `AuthLayer` over the access cookie that renews it from the refresh
/// cookie.
fn renewing_auth() -> AuthLayer<AppClaims> {
    let renewal = tower_authgate::auth::CookieRenewal::new(
        "ins_access_token",
        "ins_refresh_token",
        tower_authgate::cookie::CookieSettings::default(),
        std::sync::Arc::new(Minter(Default::default())),
    )
    .unwrap();
    AuthLayer::<AppClaims>::new(verifier())
        .sources(TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap())
        .cookie_renewal(renewal)
        .unwrap()
}

/// A request from a browser holding an expired access cookie and a valid
/// refresh cookie.
fn renewing_request(method: Method, headers: &[(&str, &str)]) -> Request<String> {
    let expired = key()
        .sign(&with(
            access_claims("admin"),
            json!({"exp": tower_authgate::clock::now_seconds() - 10}),
        ))
        .unwrap();
    let mut request = Request::builder()
        .method(method)
        .header(header::HOST, "api.example.com")
        .header(
            header::COOKIE,
            format!("ins_access_token={expired}; ins_refresh_token=good-refresh"),
        );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(String::new()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("198.51.100.7:4000".parse::<SocketAddr>().unwrap()));
    request
}

/// The renewed access cookie `response` carries, if any.
fn renewed_cookie(response: &Response<String>) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("ins_access_token=")
                .map(str::to_owned)
        })
}

/// Renewal only for requests that pass every check: a refusal by a layer
/// inside the `AuthLayer` (CSRF, space, address) or a `403` of the handler
/// is sent no freshly minted access cookie; the same request that passes
/// is.
#[tokio::test]
async fn a_request_refused_inside_the_auth_layer_gets_no_renewed_cookie() {
    let auth = renewing_auth();
    let spaces = SelectSpaceLayer::for_auth(&auth);
    let with_csrf = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(CsrfLayer::new().on_rejection(JsonRejection))
        .service_fn(handler);
    let with_spaces = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(spaces.on_rejection(JsonRejection))
        .service_fn(handler);
    let with_address = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(
            IpFilterLayer::new(
                IpRules::parse("", "198.51.100.0/24").unwrap(),
                ClientIpResolver::new(),
            )
            .on_rejection(JsonRejection),
        )
        .service_fn(handler);
    let forbidding_handler =
        ServiceBuilder::new()
            .layer(auth.clone())
            .service_fn(|_req: Request<String>| async {
                let mut response = Response::new(String::from("no"));
                *response.status_mut() = StatusCode::FORBIDDEN;
                Ok::<_, Infallible>(response)
            });

    // Cross-site POST: refused by the CSRF check, no cookie.
    let response = with_csrf
        .clone()
        .oneshot(renewing_request(
            Method::POST,
            &[("origin", "https://evil.example")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(renewed_cookie(&response), None);
    let response = with_csrf
        .oneshot(renewing_request(
            Method::POST,
            &[("origin", "https://api.example.com")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed_cookie(&response).is_some());

    // A space the renewed token does not grant: no cookie.
    let response = with_spaces
        .clone()
        .oneshot(renewing_request(Method::GET, &[("x-space", "production")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(renewed_cookie(&response), None);
    let response = with_spaces
        .oneshot(renewing_request(
            Method::GET,
            &[("x-space", "default_space")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed_cookie(&response).is_some());

    // A denied address inside the auth layer, and a handler's 403.
    let response = with_address
        .oneshot(renewing_request(Method::GET, &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(renewed_cookie(&response), None);
    let response = forbidding_handler
        .oneshot(renewing_request(Method::GET, &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(renewed_cookie(&response), None);
}

/// A policy in the `AuthLayer` (`AuthLayer::require`) judges the renewed
/// token like any other: refused, no renewed cookie; held, the cookie. And
/// an optional layer's anonymous request (no access cookie, a refresh
/// cookie that renews nothing) is refused with 401.
#[tokio::test]
async fn a_policy_in_the_auth_layer_judges_the_renewed_token() {
    use tower_authgate::authz::Policy;
    let service = |policy: Policy| {
        ServiceBuilder::new()
            .layer(renewing_auth().require(policy).unwrap())
            .service_fn(handler)
    };
    // The renewed token grants no role.
    let response = service(Policy::role("admin"))
        .oneshot(renewing_request(Method::GET, &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(renewed_cookie(&response), None);
    let response = service(Policy::claim_equals("sub", "admin"))
        .oneshot(renewing_request(Method::GET, &[]))
        .await
        .unwrap();
    // `sub` is not a captured claim: refused as well.
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = service(Policy::check("subject admin", |token, _| {
        token.meta().subject.as_deref() == Some("admin")
    }))
    .oneshot(renewing_request(Method::GET, &[]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(renewed_cookie(&response).is_some());

    let optional = ServiceBuilder::new()
        .layer(
            renewing_auth()
                .optional()
                .require(Policy::authenticated())
                .unwrap(),
        )
        .service_fn(handler);
    let request = Request::builder()
        .header(header::COOKIE, "ins_refresh_token=stale")
        .body(String::new())
        .unwrap();
    let response = optional.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(renewed_cookie(&response), None);
}
