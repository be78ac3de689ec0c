//! axum extractors, with and without the layer.
#![cfg(feature = "axum")]

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tower_authgate::auth::AuthLayer;
use tower_authgate::token::{
    Algorithm, Claims, KeySet, SharedClaims, TokenMeta, TokenSources, VerifiedToken, Verifier,
};

#[derive(Clone, serde::Deserialize)]
struct Mine {
    sub: String,
}

async fn me(Claims(claims): Claims<Mine>) -> String {
    claims.sub
}

async fn maybe(claims: Option<Claims<Mine>>) -> String {
    claims.map_or_else(|| "anonymous".to_owned(), |c| c.0.sub)
}

async fn shared(claims: SharedClaims<Mine>) -> String {
    claims.sub.clone()
}

async fn maybe_shared(claims: Option<SharedClaims<Mine>>) -> String {
    claims.map_or_else(|| "anonymous".to_owned(), |c| c.sub.clone())
}

/// Whether the shared claims are the very claims the token holds (no copy).
async fn same(token: VerifiedToken, claims: SharedClaims<Mine>) -> String {
    let held: &Mine = token.claims::<Mine>().unwrap();
    std::ptr::eq(held, &*claims).to_string()
}

async fn meta(meta: TokenMeta) -> String {
    meta.subject.unwrap_or_default()
}

fn verifier() -> Verifier {
    Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .build()
    .unwrap()
}

async fn call(app: Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut builder = Request::builder().uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn token() -> String {
    signing_key(Algorithm::HS256)
        .sign(&access_claims("admin"))
        .unwrap()
}

#[tokio::test]
async fn extractors_read_what_the_layer_verified() {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/meta", get(meta))
        .layer(AuthLayer::<Mine>::new(verifier()).sources(TokenSources::bearer()));
    let token = token();
    assert_eq!(
        call(app.clone(), "/me", Some(&token)).await,
        (StatusCode::OK, "admin".into())
    );
    assert_eq!(
        call(app.clone(), "/maybe", Some(&token)).await,
        (StatusCode::OK, "admin".into())
    );
    assert_eq!(
        call(app.clone(), "/meta", Some(&token)).await,
        (StatusCode::OK, "admin".into())
    );
    assert_eq!(call(app, "/me", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn optional_layer_gives_none_to_option_and_401_to_required_extractor() {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .layer(AuthLayer::<Mine>::new(verifier()).optional());
    assert_eq!(
        call(app.clone(), "/maybe", None).await,
        (StatusCode::OK, "anonymous".into())
    );
    assert_eq!(call(app.clone(), "/maybe", Some(&token())).await.1, "admin");
    let (status, _) = call(app, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_the_layer_the_extractor_names_it() {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe));
    for path in ["/me", "/maybe"] {
        let (status, body) = call(app.clone(), path, Some(&token())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("is `AuthLayer` installed"), "{body}");
    }
}

#[tokio::test]
async fn a_layer_for_another_claims_type_is_reported() {
    let app = Router::new()
        .route("/me", get(me))
        .layer(AuthLayer::<Value>::new(verifier()));
    let (status, body) = call(app, "/me", Some(&token())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("another claims type"), "{body}");
}

#[tokio::test]
async fn shared_claims_are_the_tokens_own_and_refuse_like_claims() {
    let token = token();
    let app = Router::new()
        .route("/shared", get(shared))
        .route("/maybe", get(maybe_shared))
        .route("/same", get(same))
        .layer(AuthLayer::<Mine>::new(verifier()).sources(TokenSources::bearer()));
    assert_eq!(
        call(app.clone(), "/shared", Some(&token)).await,
        (StatusCode::OK, "admin".into())
    );
    assert_eq!(
        call(app.clone(), "/same", Some(&token)).await,
        (StatusCode::OK, "true".into())
    );
    assert_eq!(
        call(app.clone(), "/maybe", Some(&token)).await,
        (StatusCode::OK, "admin".into())
    );
    assert_eq!(call(app, "/shared", None).await.0, StatusCode::UNAUTHORIZED);

    let optional = Router::new()
        .route("/shared", get(shared))
        .route("/maybe", get(maybe_shared))
        .layer(AuthLayer::<Mine>::new(verifier()).optional());
    assert_eq!(
        call(optional.clone(), "/maybe", None).await,
        (StatusCode::OK, "anonymous".into())
    );
    assert_eq!(
        call(optional, "/shared", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let without_layer = Router::new()
        .route("/shared", get(shared))
        .route("/maybe", get(maybe_shared));
    for path in ["/shared", "/maybe"] {
        let (status, body) = call(without_layer.clone(), path, Some(&token)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("is `AuthLayer` installed"), "{body}");
    }

    let other_type = Router::new()
        .route("/shared", get(shared))
        .route("/maybe", get(maybe_shared))
        .layer(AuthLayer::<Value>::new(verifier()));
    for path in ["/shared", "/maybe"] {
        let (status, body) = call(other_type.clone(), path, Some(&token)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("another claims type"), "{body}");
    }
}
