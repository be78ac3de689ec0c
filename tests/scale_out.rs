//! Two service instances sharing one real Redis server: an attacker gets five
//! tries in total, a revocation on one instance holds on the other, a TOTP
//! code used on one is refused by the other; Redis killed mid-test.
#![cfg(all(feature = "redis", feature = "presets"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::demo::{Server, app, config as demo_config, operator_code, start_config};
use common::redis::RedisServer;
use http::{Method, StatusCode};
use serde_json::json;
use tower_authgate::clock::now_seconds;
use tower_authgate::store::{
    RedisStore, RedisStoreConfig, RevocationCheck, RevocationStore, Unreachable,
};

fn config(redis: &RedisServer) -> app::DemoConfig {
    app::DemoConfig {
        redis_url: Some(redis.url()),
        ..demo_config()
    }
}

async fn two_instances(redis: &RedisServer) -> (Server, Server) {
    (
        start_config(config(redis)).await,
        start_config(config(redis)).await,
    )
}

#[tokio::test]
async fn five_failures_in_total_lock_the_account_on_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let wrong = json!({"username": "admin", "password": "wrong"});
    // Four failures at once, two on each instance.
    let (r1, r2, r3, r4) = tokio::join!(
        a.json(Method::POST, "/api/login", &[], wrong.clone()),
        b.json(Method::POST, "/api/login", &[], wrong.clone()),
        a.json(Method::POST, "/api/login", &[], wrong.clone()),
        b.json(Method::POST, "/api/login", &[], wrong.clone()),
    );
    for r in [r1, r2, r3, r4] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // The fifth, on the other instance, locks the account everywhere.
    assert_eq!(
        a.json(Method::POST, "/api/login", &[], wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    let right = json!({"username": "admin", "password": "admin"});
    for server in [&a, &b] {
        let locked = server
            .json(Method::POST, "/api/login", &[], right.clone())
            .await;
        assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
        assert!(locked.headers.contains_key("retry-after"));
    }
}

#[tokio::test]
async fn a_revocation_on_one_instance_holds_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let access = format!("Bearer {}", signin.str("AccessToken"));
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.json(
            Method::POST,
            "/authenticate/signout",
            &[("authorization", &access)],
            json!({})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let grant = json!({"GrantType": "refresh_token"});
    assert_eq!(
        b.json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    // Refresh-token reuse detected across instances ends the session on both.
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    let grant = json!({"GrantType": "refresh_token"});
    let rotated = a
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant.clone(),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let reuse = b
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant,
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    let new_access = format!("Bearer {}", rotated.str("AccessToken"));
    assert_eq!(
        a.get("/api/me", &[("authorization", &new_access)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_totp_code_used_on_one_instance_is_refused_by_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let code = operator_code(0);
    let login = json!({"username": "operator", "password": "operator", "otp": code});
    assert_eq!(
        a.json(Method::POST, "/api/login", &[], login.clone())
            .await
            .status,
        StatusCode::OK
    );
    let replay = b.json(Method::POST, "/api/login", &[], login).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.text);
}

#[tokio::test]
async fn every_key_expires_and_shares_the_prefix() {
    let redis = RedisServer::start();
    let (a, _b) = two_instances(&redis).await;
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let access = format!("Bearer {}", signin.str("AccessToken"));
    a.json(
        Method::POST,
        "/authenticate/signout",
        &[("authorization", &access)],
        json!({}),
    )
    .await;
    a.json(
        Method::POST,
        "/api/login",
        &[],
        json!({"username": "admin", "password": "wrong"}),
    )
    .await;
    a.json(
        Method::POST,
        "/api/login",
        &[],
        json!({"username": "operator", "password": "operator", "otp": operator_code(0)}),
    )
    .await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.len() >= 4, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("authgate:"), "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        // The lockout index is a sorted set whose members expire by score.
        if key != "authgate:{lockout}:locked" {
            assert!(ttl > 0, "{key} has no expiry ({ttl})");
        }
    }
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "did not recover in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_closed_and_service_resumes() {
    let mut redis = RedisServer::start();
    let (a, _b) = two_instances(&redis).await;
    let login = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    let bearer = format!("Bearer {}", login.str("access_token"));
    assert_eq!(
        a.get("/api/me", &[("authorization", &bearer)]).await.status,
        StatusCode::OK
    );

    redis.stop();
    // No token is accepted whose revocation cannot be checked, and logins
    // are refused with 503 and a clear body.
    let me = a.get("/api/me", &[("authorization", &bearer)]).await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{}", me.text);
    assert!(me.headers.contains_key("retry-after"));
    let refused = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("temporarily unavailable"));
    // Open routes are unaffected.
    assert_eq!(a.get("/healthz", &[]).await.status, StatusCode::OK);

    redis.restart();
    eventually(async || {
        a.get("/api/me", &[("authorization", &bearer)]).await.status == StatusCode::OK
    })
    .await;
    let again = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn fail_open_is_an_explicit_choice() {
    let mut redis = RedisServer::start();
    let open = RedisStore::open(
        &redis.url(),
        RedisStoreConfig {
            unreachable: Unreachable::FailOpen,
            ..Default::default()
        },
    )
    .unwrap();
    let closed = RedisStore::open(&redis.url(), RedisStoreConfig::default()).unwrap();
    let check = |store: &RedisStore| {
        let store = store.clone();
        async move {
            match store.check("some-jti", None) {
                RevocationCheck::Ready(answer) => answer,
                RevocationCheck::Pending(future) => future.await,
            }
        }
    };
    assert_eq!(check(&open).await, Ok(false));
    redis.stop();
    assert_eq!(check(&open).await, Ok(false));
    assert!(check(&closed).await.is_err());
    // A revocation is never reported done when it was not, whatever the policy.
    assert!(open.revoke("some-jti", now_seconds() + 60).await.is_err());
    redis.restart();
    let store: Arc<dyn RevocationStore> = Arc::new(closed.clone());
    eventually(async || store.revoke("some-jti", now_seconds() + 60).await.is_ok()).await;
    assert_eq!(check(&closed).await, Ok(true));
}
