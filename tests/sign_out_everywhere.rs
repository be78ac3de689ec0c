//! Signing one user out everywhere through the demo's administrator
//! endpoint: every token of that user issued until then stops working on
//! every API at once, refresh included, and a later sign-in works.
#![cfg(feature = "presets")]

mod common;

use std::sync::Arc;

use common::demo::*;
use http::{Method, StatusCode};
use serde_json::json;
use tower_authgate::clock::{ManualClock, now_seconds};
use tower_authgate::login::{JwtIssuer, Principal, TokenIssuer};

const SIGN_OUT_ADMIN: &str = "/api/auth/users/admin/sign-out";

async fn core_login(server: &Server) -> (String, String) {
    let login = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    (
        format!("Bearer {}", login.str("access_token")),
        format!("Bearer {}", login.str("refresh_token")),
    )
}

#[tokio::test]
async fn an_administrator_signs_a_user_out_everywhere() {
    let clock = Arc::new(ManualClock::new(now_seconds()));
    let server = start_config(tower_authgate_demo_config(clock.clone())).await;
    let (bearer, refresh) = core_login(&server).await;
    let workflow = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    let x_auth_token = workflow.headers["x-auth-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let me = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            server.get("/api/me", &headers).await.status
        }
    };
    assert_eq!(
        me(vec![("authorization", bearer.clone())]).await,
        StatusCode::OK
    );
    assert_eq!(
        me(vec![("x-auth-token", x_auth_token.clone())]).await,
        StatusCode::OK
    );

    // Anonymous: 401; not an administrator: 403; nothing is signed out.
    let anonymous = server
        .send(Method::POST, SIGN_OUT_ADMIN, &[], Vec::new())
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let operator = JwtIssuer::new(server.key.clone(), app::DEMO_ISSUER)
        .unwrap()
        .issue_access(
            &Principal::new("2", "operator")
                .with_spaces(["default_space"])
                .with_roles(["operator"]),
            60,
        )
        .unwrap()
        .token;
    let refused = server
        .send(
            Method::POST,
            SIGN_OUT_ADMIN,
            &[("authorization", &format!("Bearer {operator}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(
        me(vec![("authorization", bearer.clone())]).await,
        StatusCode::OK
    );

    // The administrator signs `admin` out everywhere (itself included).
    clock.advance(2);
    let done = server
        .send(
            Method::POST,
            SIGN_OUT_ADMIN,
            &[("authorization", &bearer)],
            Vec::new(),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["username"], "admin");
    assert_eq!(done.body["signedOutAt"], now_of(&clock));
    // Every API's token, and the refresh token: refused at once.
    assert_eq!(
        me(vec![("authorization", bearer.clone())]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(vec![("x-auth-token", x_auth_token)]).await,
        StatusCode::UNAUTHORIZED
    );
    let renewed = server
        .get("/api/login/refresh", &[("authorization", &refresh)])
        .await;
    assert_eq!(renewed.status, StatusCode::UNAUTHORIZED, "{}", renewed.text);

    // A sign-in after the cut-off works, refresh included.
    clock.advance(1);
    let (bearer, refresh) = core_login(&server).await;
    assert_eq!(me(vec![("authorization", bearer)]).await, StatusCode::OK);
    let renewed = server
        .get("/api/login/refresh", &[("authorization", &refresh)])
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
}

fn now_of(clock: &ManualClock) -> u64 {
    tower_authgate::clock::Clock::now(clock)
}

fn tower_authgate_demo_config(clock: Arc<ManualClock>) -> app::DemoConfig {
    app::DemoConfig {
        issuer_clock: Some(clock),
        ..config()
    }
}
