//! SelectSpaceLayer over `oneshot`, behind an AuthLayer (required or optional).
//! The arrangements that must refuse (no AuthLayer, another claims type)
//! are in `tests/composition.rs`.

mod common;

use std::convert::Infallible;

use common::*;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::reject::JsonRejection;
use tower_authgate::tenant::{HasSpaces, SelectSpaceLayer, Space};
use tower_authgate::token::{Algorithm, KeySet, TokenSources, Verifier};

/// A claims type of the application's own.
#[derive(Deserialize)]
struct TenantClaims {
    #[serde(default)]
    spaces: Vec<String>,
}

impl HasSpaces for TenantClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

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
    layer: SelectSpaceLayer<TenantClaims>,
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
            AuthLayer::<TenantClaims>::new(verifier)
                .sources(TokenSources::bearer())
                .optional(),
        )
        .layer(layer.on_rejection(JsonRejection))
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
    let layer = SelectSpaceLayer::<TenantClaims>::new;
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
        SelectSpaceLayer::<TenantClaims>::new()
            .default_space("default_space")
            .unwrap()
    };
    assert_eq!(call(layer(), Some(&token), &[]).await.1, "default_space");
    // A token that lacks the default space is refused it.
    let narrow = claims_token(&["production"]);
    assert_eq!(
        call(layer(), Some(&narrow), &[]).await.0,
        StatusCode::FORBIDDEN
    );
    // A token that grants no space at all has none to fall back on.
    assert_eq!(
        call(SelectSpaceLayer::new(), Some(&claims_token(&[])), &[])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn anonymous_requests_get_only_the_spaces_listed_for_them() {
    // Nothing listed: every anonymous request is asked to authenticate,
    // with or without a header, with or without a default space.
    for layer in [
        SelectSpaceLayer::<TenantClaims>::new(),
        SelectSpaceLayer::new()
            .default_space("default_space")
            .unwrap(),
    ] {
        for spaces in [&[][..], &["production"], &["default_space"]] {
            let (status, body) = call(layer.clone(), None, spaces).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{spaces:?}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let public = || {
        SelectSpaceLayer::<TenantClaims>::new()
            .anonymous_spaces(["demo", "public"])
            .unwrap()
    };
    assert_eq!(
        call(public(), None, &["public"]).await,
        (StatusCode::OK, "public".into())
    );
    assert_eq!(
        call(public(), None, &[]).await,
        (StatusCode::OK, "demo".into())
    );
    assert_eq!(
        call(public(), None, &["production"]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The default space applies to anonymous requests only when listed.
    let with_default = public().default_space("public").unwrap();
    assert_eq!(call(with_default, None, &[]).await.1, "public");
    let unlisted_default = public().default_space("production").unwrap();
    assert_eq!(
        call(unlisted_default, None, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A token is judged by its own grants, never by the anonymous list.
    let token = claims_token(&["default_space"]);
    assert_eq!(
        call(public(), Some(&token), &["public"]).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(
        SelectSpaceLayer::<TenantClaims>::new()
            .anonymous_spaces(["bad space"])
            .is_err()
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
        let (status, _) = call(SelectSpaceLayer::new(), Some(&token), &[bad]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let (status, body) = call(
        SelectSpaceLayer::new(),
        Some(&token),
        &["default_space", "default_space"],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("repeated"));
    assert!(
        SelectSpaceLayer::<TenantClaims>::new()
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
        .layer(AuthLayer::<TenantClaims>::new(verifier))
        .layer(
            SelectSpaceLayer::<TenantClaims>::new()
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
            let (status, _) = runtime.block_on(call(SelectSpaceLayer::new(), Some(&token), &[value.as_str()]));
            proptest::prop_assert!(matches!(status.as_u16(), 200 | 400 | 403));
            let (anonymous, _) = runtime.block_on(call(SelectSpaceLayer::new(), None, &[value.as_str()]));
            proptest::prop_assert!(matches!(anonymous.as_u16(), 400 | 401));
        }
    }
}
