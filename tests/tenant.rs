//! SpaceLayer over `oneshot`, alone and behind AuthLayer.

mod common;

use std::convert::Infallible;

use common::*;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::login::AuthClaims;
use tower_authgate::tenant::{Space, SpaceLayer};
use tower_authgate::token::{Algorithm, KeySet, TokenSources, Verifier};

async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let space = req.extensions().get::<Space>().map(|s| s.0.clone());
    Ok(Response::new(space.unwrap_or_else(|| "none".into())))
}

fn claims_token(spaces: &[&str]) -> String {
    let now = tower_authgate::clock::now_seconds();
    signing_key(Algorithm::HS256)
        .sign(&json!({
            "exi": 300, "exp": now + 300, "iat": now, "iss": "t", "jti": "j", "sub": "admin",
            "usefor": "access", "spaces": spaces,
        }))
        .unwrap()
}

async fn call(
    layer: SpaceLayer<AuthClaims>,
    token: Option<&str>,
    spaces: &[&str],
) -> (StatusCode, String) {
    let verifier = Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .build()
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(
            AuthLayer::<AuthClaims>::new(verifier)
                .sources(TokenSources::bearer())
                .optional(),
        )
        .layer(layer)
        .service(service_fn(echo));
    let mut request = Request::builder();
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for space in spaces {
        request = request.header("x-space", *space);
    }
    let response = service
        .oneshot(request.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (status, response.into_body())
}

#[tokio::test]
async fn header_selects_a_granted_space() {
    let token = claims_token(&["default_space", "production"]);
    let layer = SpaceLayer::<AuthClaims>::new;
    assert_eq!(
        call(layer(), Some(&token), &["production"]).await,
        (StatusCode::OK, "production".into())
    );
    assert_eq!(
        call(layer(), Some(&token), &[]).await,
        (StatusCode::OK, "default_space".into())
    );
    let (status, body) = call(layer(), Some(&token), &["other"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "forbidden_space");
}

#[tokio::test]
async fn configured_default_applies_when_the_header_is_absent() {
    let token = claims_token(&["production", "default_space"]);
    let layer = || {
        SpaceLayer::<AuthClaims>::new()
            .default_space("default_space")
            .unwrap()
    };
    assert_eq!(call(layer(), Some(&token), &[]).await.1, "default_space");
    // Without claims the space is only validated.
    assert_eq!(call(layer(), None, &[]).await.1, "default_space");
    assert_eq!(
        call(layer(), None, &["anything_valid"]).await.1,
        "anything_valid"
    );
    // A token that lacks the default space is refused it.
    let narrow = claims_token(&["production"]);
    assert_eq!(
        call(layer(), Some(&narrow), &[]).await.0,
        StatusCode::FORBIDDEN
    );
    // No header, no default, no claims: the request must name its space.
    assert_eq!(
        call(SpaceLayer::new(), None, &[]).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn malformed_and_repeated_values_are_refused() {
    let token = claims_token(&["default_space"]);
    let long = "a".repeat(65);
    for bad in [
        "",
        " ",
        "../etc",
        "a b",
        "a/b",
        ".hidden",
        "ümlaut",
        long.as_str(),
    ] {
        let (status, _) = call(SpaceLayer::new(), Some(&token), &[bad]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let (status, body) = call(
        SpaceLayer::new(),
        Some(&token),
        &["default_space", "default_space"],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("repeated"));
    assert!(
        SpaceLayer::<AuthClaims>::new()
            .default_space("bad space")
            .is_err()
    );
}

#[tokio::test]
async fn header_name_and_length_are_configurable() {
    let token = claims_token(&["t1"]);
    let verifier = Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .build()
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<AuthClaims>::new(verifier))
        .layer(
            SpaceLayer::<AuthClaims>::new()
                .header(http::HeaderName::from_static("x-tenant"))
                .max_len(2),
        )
        .service(service_fn(echo));
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .header("x-tenant", "t1")
        .body(String::new())
        .unwrap();
    assert_eq!(service.oneshot(request).await.unwrap().into_body(), "t1");
}

proptest::proptest! {
    #[test]
    fn any_header_value_gets_a_clear_answer(value in "\\PC{0,80}") {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let token = claims_token(&["default_space"]);
        if http::HeaderValue::from_str(&value).is_ok() {
            let (status, _) = runtime.block_on(call(SpaceLayer::new(), Some(&token), &[value.as_str()]));
            proptest::prop_assert!(matches!(status.as_u16(), 200 | 400 | 403));
        }
    }
}
