//! The endpoints of the Scailable / Nx, inSCADA, Workflow and RegScale
//! documents, one flow each, over real HTTP against the demo; where the demo
//! cannot be set up for a case (a slow authenticator, an account active
//! until a chosen date, a flow without a lockout), through the preset's own
//! router. Statuses, headers and bodies are asserted exactly.
#![cfg(feature = "presets")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use common::demo::*;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_authgate::BoxFuture;
use tower_authgate::TokenError;
use tower_authgate::clock::now_seconds;
use tower_authgate::login::{
    Account, AuthClaims, Authenticator, JwtIssuer, LoginError, LoginFlow, MemoryUsers, NewUser,
    PairLifetimes, TokenIssuer,
};
use tower_authgate::schemes::pascal_case::PascalCase;
use tower_authgate::store::{LoginCode, LoginCodeStore, MemoryLoginCodes, StoreError};

const ERROR_OBJECT_KEYS: [&str; 6] = [
    "AuthorizationInvalid",
    "BackendMessage",
    "Email",
    "Field",
    "Message",
    "UUID",
];

const FOUR_FIELDS: [&str; 4] = ["AccessToken", "Error", "RefreshToken", "TotpAccessCode"];

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `reply` is the Scailable / Nx error object with `status`, naming the
/// request field `field` (`""`: none), with `WWW-Authenticate: Bearer…` on a
/// `401` (and, if any, a bearer challenge on another status).
fn assert_error_object(reply: &Reply, status: StatusCode, field: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(keys(&reply.body), ERROR_OBJECT_KEYS, "{}", reply.text);
    let unauthorized = status == StatusCode::UNAUTHORIZED;
    assert_eq!(reply.body["AuthorizationInvalid"], unauthorized);
    assert_eq!(reply.body["BackendMessage"], "");
    assert_eq!(reply.body["Email"], "");
    let message = reply.str("Message");
    assert!(!message.is_empty(), "{}", reply.text);
    let expected_field = if field.is_empty() {
        json!({"Message": "", "Name": ""})
    } else {
        json!({"Message": message, "Name": field})
    };
    assert_eq!(reply.body["Field"], expected_field, "{}", reply.text);
    assert!(is_uuid(&reply.str("UUID")), "{}", reply.text);
    match reply.headers.get("www-authenticate") {
        Some(challenge) => assert!(
            challenge.to_str().unwrap().starts_with("Bearer"),
            "{challenge:?}"
        ),
        None => assert!(!unauthorized, "a 401 without a challenge"),
    }
}

/// `reply` answers the four fields with `status`, marked not to be stored.
fn assert_four_fields(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(keys(&reply.body), FOUR_FIELDS, "{}", reply.text);
    assert_eq!(reply.headers["cache-control"], "no-store");
}

/// `reply` is a refusal of the credentials in the four fields: `401`,
/// `WWW-Authenticate: Bearer`, no tokens, `error` in `Error`.
fn assert_four_field_refusal(reply: &Reply, error: &LoginError) {
    assert_four_fields(reply, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.body,
        json!({
            "AccessToken": "",
            "Error": error.public_message(),
            "RefreshToken": "",
            "TotpAccessCode": "",
        })
    );
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
}

/// A successful four-field login: both tokens, no error, no TOTP step; the
/// access and refresh tokens.
fn pair_of(reply: &Reply) -> (String, String) {
    assert_four_fields(reply, StatusCode::OK);
    assert_eq!(reply.str("Error"), "");
    assert_eq!(reply.str("TotpAccessCode"), "");
    let (access, refresh) = (reply.str("AccessToken"), reply.str("RefreshToken"));
    assert_eq!(claims_of(&access)["usefor"], "access");
    assert_eq!(claims_of(&refresh)["usefor"], "refresh");
    assert_eq!(claims_of(&access)["fam"], claims_of(&refresh)["fam"]);
    (access, refresh)
}

async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    server.json(Method::POST, path, headers, body).await
}

async fn nx_login(server: &Server, email: &str, password: &str) -> Reply {
    post(
        server,
        "/authenticate/nx",
        &[],
        json!({"Email": email, "Password": password}),
    )
    .await
}

/// The status of `GET /api/me` with `token` as bearer.
async fn me_status(server: &Server, token: &str) -> StatusCode {
    server
        .get("/api/me", &[("authorization", &bearer(token))])
        .await
        .status
}

/// The status of the documented refresh with `refresh` as bearer.
async fn refresh_status(server: &Server, refresh: &str) -> StatusCode {
    post(
        server,
        "/authenticate/refresh",
        &[("authorization", &bearer(refresh))],
        json!({"GrantType": "refresh_token"}),
    )
    .await
    .status
}

/// `request` through `router`, read as the demo client reads an answer.
async fn call(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

fn json_request(path: &str, headers: &[(&str, &str)], body: Value) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// Users of the presets built outside the demo: `admin`/`admin` with an
/// email, and `operator`/`operator` with the demo's TOTP secret.
fn users() -> MemoryUsers {
    let users = MemoryUsers::new().unwrap();
    users
        .insert(
            NewUser::new("admin", "admin")
                .email("admin@example.com")
                .spaces(["default_space", "production"])
                .roles(["admin"]),
        )
        .unwrap();
    users
        .insert(
            NewUser::new("operator", "operator")
                .spaces(["default_space"])
                .totp_base32(app::OPERATOR_TOTP_SECRET)
                .unwrap(),
        )
        .unwrap();
    users
}

fn issuer() -> Arc<JwtIssuer> {
    Arc::new(JwtIssuer::new(demo_key(), app::DEMO_ISSUER).unwrap())
}

// --- Scailable / Nx -------------------------------------------------------

#[tokio::test]
async fn nx_login_signs_in_with_the_email_and_answers_four_fields() {
    let server = start().await;
    let login = nx_login(&server, "admin@example.com", "admin").await;
    let (access, refresh) = pair_of(&login);
    assert_eq!(claims_of(&access)["sub"], "admin");
    let me = server
        .get("/api/me", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["username"], "admin");
    assert_eq!(refresh_status(&server, &refresh).await, StatusCode::OK);

    // Wrong password, unknown email: the same refusal, in the four fields.
    let wrong = nx_login(&server, "admin@example.com", "wrong").await;
    assert_four_field_refusal(&wrong, &LoginError::InvalidCredentials);
    let unknown = nx_login(&server, "nobody@example.com", "wrong").await;
    assert_eq!((unknown.status, &unknown.text), (wrong.status, &wrong.text));

    // The TOTP account (the demo's has no email: its username signs in the
    // same way): the TOTP step's code, no tokens; the step gives the pair.
    let pending = nx_login(&server, "operator", "operator").await;
    assert_four_fields(&pending, StatusCode::OK);
    assert_eq!(pending.str("AccessToken"), "");
    assert_eq!(pending.str("RefreshToken"), "");
    assert_eq!(pending.str("Error"), "");
    let code = pending.str("TotpAccessCode");
    assert_eq!(claims_of(&code)["usefor"], "otp-pending");
    assert_eq!(claims_of(&code)["sub"], "operator");
    let step = post(
        &server,
        "/authenticate/totp",
        &[],
        json!({"token": code, "totp": operator_code(0)}),
    )
    .await;
    let (operator, _) = pair_of(&step);
    assert_eq!(claims_of(&operator)["sub"], "operator");

    // A missing field is a 400 naming it, in the error object.
    let missing = post(
        &server,
        "/authenticate/nx",
        &[],
        json!({"Password": "admin"}),
    )
    .await;
    assert_error_object(&missing, StatusCode::BAD_REQUEST, "Email");
    let missing = post(
        &server,
        "/authenticate/nx",
        &[],
        json!({"Email": "admin@example.com"}),
    )
    .await;
    assert_error_object(&missing, StatusCode::BAD_REQUEST, "Password");

    // An account past its end of activity: 403 once the password is right,
    // in the error object; a wrong password still answers as for anyone.
    let retired = nx_login(&server, "retired", "retired").await;
    assert_error_object(&retired, StatusCode::FORBIDDEN, "");
    assert_eq!(
        retired.str("Message"),
        LoginError::AccountInactive.public_message()
    );
    let guessed = nx_login(&server, "retired", "wrong").await;
    assert_eq!((guessed.status, &guessed.text), (wrong.status, &wrong.text));
}

#[tokio::test]
async fn plugin_login_exchanges_a_refresh_token_for_a_pair_of_the_same_session() {
    // No reuse grace: the second use of a refresh token is reuse at once.
    let server = start_config(app::DemoConfig {
        refresh_reuse_grace: Duration::ZERO,
        ..config()
    })
    .await;
    let (access, refresh) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let family = claims_of(&refresh)["fam"].clone();
    assert!(family.is_string());
    let system = "{3f1b6c2e-0a4d-4e59-9b1e-2c7d8e9f0a1b}";

    // A malformed system id is a 400 naming it, and uses nothing up.
    for bad in ["", "has spaces", "semi;colon", &"a".repeat(65)] {
        let refused = post(
            &server,
            "/authenticate/plugin",
            &[],
            json!({"refresh_token": refresh, "system_nxid": bad}),
        )
        .await;
        assert_error_object(&refused, StatusCode::BAD_REQUEST, "system_nxid");
    }
    let missing = post(
        &server,
        "/authenticate/plugin",
        &[],
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_error_object(&missing, StatusCode::BAD_REQUEST, "system_nxid");

    // An access token is no refresh token: the four fields, 401.
    let wrong_kind = post(
        &server,
        "/authenticate/plugin",
        &[],
        json!({"refresh_token": access, "system_nxid": system}),
    )
    .await;
    assert_four_field_refusal(
        &wrong_kind,
        &LoginError::InvalidToken(TokenError::WrongKind),
    );

    let plugin = post(
        &server,
        "/authenticate/plugin",
        &[],
        json!({"refresh_token": refresh, "system_nxid": system}),
    )
    .await;
    let (access2, refresh2) = pair_of(&plugin);
    assert_eq!(claims_of(&access2)["fam"], family);
    assert_eq!(claims_of(&refresh2)["fam"], family);
    assert_eq!(claims_of(&access2)["sub"], "admin");
    assert_ne!(refresh2, refresh);
    assert_eq!(me_status(&server, &access2).await, StatusCode::OK);

    // It rotated the refresh token: presenting the used one again ends the
    // session.
    let reused = post(
        &server,
        "/authenticate/plugin",
        &[],
        json!({"refresh_token": refresh, "system_nxid": system}),
    )
    .await;
    assert_four_field_refusal(&reused, &LoginError::RefreshReused);
    assert_eq!(me_status(&server, &access2).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn code_login_takes_a_one_time_code_bound_to_the_login_state_of_the_browser() {
    let server = start().await;
    let urls = json!({
        "AuthenticationEndpoint": "https://id.example.com/authorize",
        "RedirectURL": "https://app.example.com/callback?from=nx",
    });
    let csrf = post(&server, "/authenticate/csrf", &[], urls.clone()).await;
    assert_eq!(csrf.status, StatusCode::OK, "{}", csrf.text);
    assert_eq!(csrf.body, json!({}));
    assert_eq!(csrf.headers["cache-control"], "no-store");
    let state = csrf.headers["x-login-state"].to_str().unwrap().to_owned();
    assert_eq!(state.len(), 43, "{state}");
    assert!(
        state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let cookies = csrf.cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(
        csrf.cookie_value("nx_login_state").as_deref(),
        Some(&*state)
    );
    // The demo runs on plain HTTP: no `Secure`.
    assert_eq!(
        cookie_attributes(&cookies[0]),
        [
            "HttpOnly",
            "Max-Age=600",
            "Path=/authenticate",
            "SameSite=Lax"
        ],
        "{}",
        cookies[0]
    );
    let other = post(&server, "/authenticate/csrf", &[], urls).await;
    assert_ne!(
        other.headers["x-login-state"],
        csrf.headers["x-login-state"]
    );

    // Both URLs must be absolute http(s) URLs.
    for (body, field) in [
        (
            json!({"AuthenticationEndpoint": "javascript:alert(1)", "RedirectURL": "https://app.example.com/"}),
            "AuthenticationEndpoint",
        ),
        (
            json!({"AuthenticationEndpoint": "https://id.example.com/", "RedirectURL": "/callback"}),
            "RedirectURL",
        ),
        (
            json!({"AuthenticationEndpoint": "https://id.example.com/", "RedirectURL": "https:///x"}),
            "RedirectURL",
        ),
        (
            json!({"AuthenticationEndpoint": "https://id.example.com/"}),
            "RedirectURL",
        ),
    ] {
        let refused = post(&server, "/authenticate/csrf", &[], body).await;
        assert_error_object(&refused, StatusCode::BAD_REQUEST, field);
        assert!(refused.cookies().is_empty());
    }

    // The authorization step hands a code bound to the state.
    let (access, refresh) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let admin = bearer(&access);
    let issue = |state: String| {
        let (server, admin) = (&server, &admin);
        async move {
            let issued = post(
                server,
                "/authenticate/code/issue",
                &[("authorization", admin)],
                json!({ "state": state }),
            )
            .await;
            assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
            assert_eq!(keys(&issued.body), ["code"]);
            assert_eq!(issued.headers["cache-control"], "no-store");
            issued.str("code")
        }
    };
    let unauthenticated = post(
        &server,
        "/authenticate/code/issue",
        &[],
        json!({ "state": state }),
    )
    .await;
    assert_error_object(&unauthenticated, StatusCode::UNAUTHORIZED, "");
    let with_refresh = post(
        &server,
        "/authenticate/code/issue",
        &[("authorization", &bearer(&refresh))],
        json!({ "state": state }),
    )
    .await;
    assert_error_object(&with_refresh, StatusCode::UNAUTHORIZED, "");
    let short_state = post(
        &server,
        "/authenticate/code/issue",
        &[("authorization", &admin)],
        json!({"state": "short"}),
    )
    .await;
    assert_error_object(&short_state, StatusCode::BAD_REQUEST, "state");

    let code = issue(state.clone()).await;
    assert_eq!(code.len(), 43, "{code}");
    let state_cookie = |state: &str| format!("nx_login_state={state}");
    let code_login = |code: &str, state: &str, cookie: Option<String>| {
        let server = &server;
        let body = json!({"code": code, "state": state});
        async move {
            let headers: Vec<(&str, &str)> = cookie
                .as_deref()
                .map(|cookie| vec![("cookie", cookie)])
                .unwrap_or_default();
            post(server, "/authenticate/code", &headers, body).await
        }
    };
    let login = code_login(&code, &state, Some(state_cookie(&state))).await;
    let (code_access, _) = pair_of(&login);
    assert_eq!(claims_of(&code_access)["sub"], "admin");
    assert_eq!(me_status(&server, &code_access).await, StatusCode::OK);
    // The state served its one login: its cookie is removed.
    let cleared = login.cookies();
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert!(cleared[0].starts_with("nx_login_state=;"), "{}", cleared[0]);
    assert_eq!(
        cookie_attributes(&cleared[0]),
        [
            "HttpOnly",
            "Max-Age=0",
            "Path=/authenticate",
            "SameSite=Lax"
        ]
    );

    // One time only.
    let again = code_login(&code, &state, Some(state_cookie(&state))).await;
    assert_four_field_refusal(&again, &LoginError::InvalidCredentials);

    // Another state in the body and the cookie (another browser's login):
    // refused, and the code is spent.
    let code = issue(state.clone()).await;
    let foreign = other.headers["x-login-state"].to_str().unwrap().to_owned();
    let planted = code_login(&code, &foreign, Some(state_cookie(&foreign))).await;
    assert_four_field_refusal(&planted, &LoginError::InvalidCredentials);
    let after = code_login(&code, &state, Some(state_cookie(&state))).await;
    assert_four_field_refusal(&after, &LoginError::InvalidCredentials);

    // Without the state cookie: refused, and the code is spent.
    let code = issue(state.clone()).await;
    let no_cookie = code_login(&code, &state, None).await;
    assert_four_field_refusal(&no_cookie, &LoginError::InvalidCredentials);
    let after = code_login(&code, &state, Some(state_cookie(&state))).await;
    assert_four_field_refusal(&after, &LoginError::InvalidCredentials);

    // The right state in the body, another in the cookie: refused, spent.
    let code = issue(state.clone()).await;
    let mixed = code_login(&code, &state, Some(state_cookie(&foreign))).await;
    assert_four_field_refusal(&mixed, &LoginError::InvalidCredentials);
    let after = code_login(&code, &state, Some(state_cookie(&state))).await;
    assert_four_field_refusal(&after, &LoginError::InvalidCredentials);

    // A code never issued; a malformed state (a 400 naming it).
    let unknown = code_login("no-such-code", &state, Some(state_cookie(&state))).await;
    assert_four_field_refusal(&unknown, &LoginError::InvalidCredentials);
    let malformed = code_login("no-such-code", "x", Some(state_cookie("x"))).await;
    assert_error_object(&malformed, StatusCode::BAD_REQUEST, "state");
}

/// The demo's clock cannot be moved past a code's two minutes, so the
/// expired code is put into the preset's store directly: the same request
/// that logs in with a live code is refused with an expired one.
#[tokio::test]
async fn an_expired_login_code_is_refused() {
    let codes = Arc::new(MemoryLoginCodes::default());
    let preset = PascalCase::new(LoginFlow::new(Arc::new(users()), issuer()))
        .with_login_code_store(codes.clone());
    let router = preset.router();
    let state = "s".repeat(43);
    let cookie = format!("nx_login_state={state}");
    let now = now_seconds();
    codes
        .insert(
            "expired-code",
            LoginCode::new("admin".into(), state.clone(), now - 1),
        )
        .await
        .unwrap();
    codes
        .insert(
            "live-code",
            LoginCode::new("admin".into(), state.clone(), now + 60),
        )
        .await
        .unwrap();
    let login = |code: &str| {
        json_request(
            "/authenticate/code",
            &[("cookie", &cookie)],
            json!({"code": code, "state": state}),
        )
    };
    let expired = call(&router, login("expired-code")).await;
    assert_four_field_refusal(&expired, &LoginError::InvalidCredentials);
    let live = call(&router, login("live-code")).await;
    let (access, _) = pair_of(&live);
    assert_eq!(claims_of(&access)["sub"], "admin");
    // Refused or not, a code is taken out of the store.
    assert_eq!(codes.take("expired-code").await.unwrap(), None);
    assert_eq!(codes.take("live-code").await.unwrap(), None);

    // A code the preset issues lives two minutes.
    let code = preset.issue_login_code("admin", &state).await.unwrap();
    let issued = codes
        .take(&code)
        .await
        .unwrap()
        .expect("the code is stored");
    let lifetime = issued.expires_at - now_seconds();
    assert!((119..=120).contains(&lifetime), "{lifetime}");
    assert_eq!((issued.username.as_str(), &issued.state), ("admin", &state));
}

#[tokio::test]
async fn log_out_and_update_tokens_check_the_password_again() {
    let server = start().await;
    let grant = json!({"GrantType": "password", "Password": "admin"});

    // Log user out: four empty fields, the session ended.
    let (access, refresh) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let out = post(
        &server,
        "/authenticate/logout",
        &[("authorization", &bearer(&access))],
        grant.clone(),
    )
    .await;
    assert_four_fields(&out, StatusCode::OK);
    assert_eq!(
        out.body,
        json!({"AccessToken": "", "Error": "", "RefreshToken": "", "TotpAccessCode": ""})
    );
    assert_eq!(me_status(&server, &access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh_status(&server, &refresh).await,
        StatusCode::UNAUTHORIZED
    );

    // Update tokens: a new pair, a new session; the old one ended.
    let (access, refresh) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let update = post(
        &server,
        "/authenticate/update",
        &[("authorization", &bearer(&access))],
        grant.clone(),
    )
    .await;
    let (new_access, new_refresh) = pair_of(&update);
    assert_eq!(claims_of(&new_access)["sub"], "admin");
    assert_ne!(claims_of(&new_access)["fam"], claims_of(&access)["fam"]);
    assert_eq!(me_status(&server, &access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&server, &new_access).await, StatusCode::OK);
    assert_eq!(
        refresh_status(&server, &refresh).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh_status(&server, &new_refresh).await, StatusCode::OK);

    // Malformed grants: 400 naming the field, nothing ended.
    let (access, refresh) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let access_bearer = bearer(&access);
    let auth = [("authorization", access_bearer.as_str())];
    for path in ["/authenticate/logout", "/authenticate/update"] {
        for (body, field) in [
            (
                json!({"GrantType": "refresh_token", "Password": "admin"}),
                "GrantType",
            ),
            (json!({"Password": "admin"}), "GrantType"),
            (json!({"GrantType": "password"}), "Password"),
        ] {
            let refused = post(&server, path, &auth, body).await;
            assert_error_object(&refused, StatusCode::BAD_REQUEST, field);
        }
        // No bearer token, or a refresh token as one: the error object.
        let anonymous = post(&server, path, &[], grant.clone()).await;
        assert_error_object(&anonymous, StatusCode::UNAUTHORIZED, "");
        let with_refresh = post(
            &server,
            path,
            &[("authorization", &bearer(&refresh))],
            grant.clone(),
        )
        .await;
        assert_error_object(&with_refresh, StatusCode::UNAUTHORIZED, "");
        // A wrong password: the four fields.
        let wrong = post(
            &server,
            path,
            &auth,
            json!({"GrantType": "password", "Password": "wrong"}),
        )
        .await;
        assert_four_field_refusal(&wrong, &LoginError::InvalidCredentials);
    }
    assert_eq!(me_status(&server, &access).await, StatusCode::OK);
}

#[tokio::test]
async fn wrong_passwords_at_log_out_and_update_count_toward_the_lockout() {
    let server = start().await;
    let (access, _) = pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let auth = bearer(&access);
    let wrong = json!({"GrantType": "password", "Password": "wrong"});
    for (i, path) in [
        "/authenticate/logout",
        "/authenticate/update",
        "/authenticate/logout",
        "/authenticate/update",
        "/authenticate/update",
    ]
    .into_iter()
    .enumerate()
    {
        let refused = post(&server, path, &[("authorization", &auth)], wrong.clone()).await;
        assert_four_field_refusal(&refused, &LoginError::InvalidCredentials);
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Five failures lock the account, wherever it signs in.
    let core = post(
        &server,
        "/api/login",
        &[],
        json!({"username": "admin", "password": "admin"}),
    )
    .await;
    assert_eq!(core.status, StatusCode::LOCKED, "{}", core.text);
    let retry: u64 = core.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    // Even the right password at update is refused now: 423 with
    // Retry-After, in the error object.
    let locked = post(
        &server,
        "/authenticate/update",
        &[("authorization", &auth)],
        json!({"GrantType": "password", "Password": "admin"}),
    )
    .await;
    assert_error_object(&locked, StatusCode::LOCKED, "");
    assert!(locked.headers.contains_key("retry-after"));
    // The session itself was not ended by the failures.
    assert_eq!(me_status(&server, &access).await, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_answers_the_documented_object() {
    let server = start().await;
    let signin = |user: &'static str| {
        let server = &server;
        async move {
            post(
                server,
                "/authenticate/signin",
                &[],
                json!({"Username": user, "Password": user, "KeepLoggedIn": false}),
            )
            .await
        }
    };
    let admin = signin("admin").await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text);
    let access = admin.str("AccessToken");
    let uid = claims_of(&access)["uid"].clone();
    assert!(is_uuid(uid.as_str().unwrap()), "{uid}");
    let out = post(
        &server,
        "/authenticate/signout",
        &[("authorization", &bearer(&access))],
        json!({}),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert_eq!(out.headers["cache-control"], "no-store");
    assert!(!out.headers.contains_key("www-authenticate"));
    assert_eq!(
        out.body,
        json!({
            "AuthorizationInvalid": true,
            "BackendMessage": "",
            "Email": "admin@example.com",
            "Field": {"Message": "", "Name": ""},
            "Message": "signed out",
            "UUID": uid,
        })
    );
    assert_eq!(me_status(&server, &access).await, StatusCode::UNAUTHORIZED);
    // Signed out already: the error object.
    let twice = post(
        &server,
        "/authenticate/signout",
        &[("authorization", &bearer(&access))],
        json!({}),
    )
    .await;
    assert_error_object(&twice, StatusCode::UNAUTHORIZED, "");

    // An account without an email: `Email` is empty.
    let pending = signin("operator").await;
    let step = post(
        &server,
        "/authenticate/totp",
        &[],
        json!({"token": pending.str("TotpAccessCode"), "totp": operator_code(0)}),
    )
    .await;
    let (operator, _) = pair_of(&step);
    let out = post(
        &server,
        "/authenticate/signout",
        &[("authorization", &bearer(&operator))],
        json!({}),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert_eq!(out.body["Email"], "");
    assert_eq!(out.body["AuthorizationInvalid"], true);
    assert_eq!(out.body["UUID"], claims_of(&operator)["uid"]);
}

#[tokio::test]
async fn keep_logged_in_survives_the_totp_step() {
    let server = start().await;
    for (keep, code, refresh_lifetime) in [
        (true, operator_code(0), 30 * 86_400),
        // The next step's code: each step works once per account.
        (false, operator_code(1), 86_400),
    ] {
        let pending = post(
            &server,
            "/authenticate/signin",
            &[],
            json!({"Username": "operator", "Password": "operator", "KeepLoggedIn": keep}),
        )
        .await;
        assert_four_fields(&pending, StatusCode::OK);
        assert_eq!(pending.str("AccessToken"), "");
        let step = post(
            &server,
            "/authenticate/totp",
            &[],
            json!({"token": pending.str("TotpAccessCode"), "totp": code}),
        )
        .await;
        let (access, refresh) = pair_of(&step);
        let claims = claims_of(&refresh);
        assert_eq!(claims["exi"], refresh_lifetime, "KeepLoggedIn {keep}");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            refresh_lifetime
        );
        assert_eq!(claims_of(&access)["exi"], 600);
    }
}

#[tokio::test]
async fn password_strength_is_judged_before_registration() {
    let server = start().await;
    let judge = |password: &'static str| {
        let server = &server;
        async move {
            post(
                server,
                "/authenticate/password-strength",
                &[],
                json!({ "Password": password }),
            )
            .await
        }
    };
    let weak = judge("password1").await;
    assert_eq!(weak.status, StatusCode::OK, "{}", weak.text);
    assert_eq!(keys(&weak.body), ["Message", "Score", "Strong"]);
    assert_eq!(weak.body["Strong"], false);
    let score = weak.body["Score"].as_u64().unwrap();
    assert!(score <= 2, "{score}");
    assert!(!weak.str("Message").is_empty());
    let strong = judge("correct horse battery staple").await;
    assert_eq!(strong.status, StatusCode::OK);
    assert_eq!(
        strong.body,
        json!({"Strong": true, "Score": 4, "Message": "the password is strong enough"})
    );
    let short = judge("a1!").await;
    assert_eq!(short.body["Strong"], false);
    assert_eq!(short.body["Score"], 0);
    let missing = post(&server, "/authenticate/password-strength", &[], json!({})).await;
    assert_error_object(&missing, StatusCode::BAD_REQUEST, "Password");
}

#[tokio::test]
async fn registration_creates_an_account_that_signs_in_with_its_email() {
    let server = start().await;
    let register = |email: &'static str, password: &'static str| {
        let server = &server;
        async move {
            post(
                server,
                "/user",
                &[],
                json!({"Email": email, "Password": password, "Name": "Ada Lovelace"}),
            )
            .await
        }
    };
    let assert_user_object = |reply: &Reply, email: &str| {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let uuid = reply.str("UUID");
        assert!(is_uuid(&uuid), "{uuid}");
        assert_eq!(
            reply.body,
            json!({
                "Email": email,
                "IsSuperAdmin": false,
                "Name": "Ada Lovelace",
                "NxID": "",
                "Organisation": {"Name": "", "UUID": ""},
                "UUID": uuid,
            })
        );
    };
    let password = "correct horse battery staple";
    let created = register("ada@example.org", password).await;
    assert_user_object(&created, "ada@example.org");
    let signin = post(
        &server,
        "/authenticate/signin",
        &[],
        json!({"Username": "ada@example.org", "Password": password, "KeepLoggedIn": false}),
    )
    .await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.text);
    assert_eq!(keys(&signin.body), ["AccessToken", "RefreshToken"]);
    let access = signin.str("AccessToken");
    // The account's username is its email, its id the answer's `UUID`.
    let claims = claims_of(&access);
    assert_eq!(claims["sub"], "ada@example.org");
    assert_eq!(claims["uid"], created.body["UUID"]);
    // The Nx login takes the email too.
    pair_of(&nx_login(&server, "ada@example.org", password).await);

    // A weak password: 400 naming it, no account.
    let weak = register("bob@example.org", "password1").await;
    assert_error_object(&weak, StatusCode::BAD_REQUEST, "Password");
    let nobody = nx_login(&server, "bob@example.org", "password1").await;
    assert_four_field_refusal(&nobody, &LoginError::InvalidCredentials);

    // A taken email answers as a new account does; the account is untouched.
    let taken = register("admin@example.com", "a quite different passphrase").await;
    assert_user_object(&taken, "admin@example.com");
    assert_ne!(taken.body["UUID"], created.body["UUID"]);
    pair_of(&nx_login(&server, "admin@example.com", "admin").await);
    let hijack = nx_login(&server, "admin@example.com", "a quite different passphrase").await;
    assert_four_field_refusal(&hijack, &LoginError::InvalidCredentials);
    // So does the email of an account just registered.
    let again = register("ada@example.org", "another long passphrase here").await;
    assert_user_object(&again, "ada@example.org");
    pair_of(&nx_login(&server, "ada@example.org", password).await);

    // Malformed emails: 400 naming the field.
    for email in [
        "not-an-email",
        "a b@example.org",
        "@example.org",
        "a@b@c.org",
        "ada@localhost",
    ] {
        let refused = post(
            &server,
            "/user",
            &[],
            json!({"Email": email, "Password": password, "Name": "Ada"}),
        )
        .await;
        assert_error_object(&refused, StatusCode::BAD_REQUEST, "Email");
    }
    let missing = post(
        &server,
        "/user",
        &[],
        json!({"Email": "eve@example.org", "Password": password}),
    )
    .await;
    assert_error_object(&missing, StatusCode::BAD_REQUEST, "Name");

    // Every registration counts against its email as a failed login does:
    // after five, the email is locked.
    for i in 0..5 {
        let attempt = register("carol@example.org", password).await;
        assert_eq!(attempt.status, StatusCode::CREATED, "attempt {i}");
    }
    let locked = register("carol@example.org", password).await;
    assert_error_object(&locked, StatusCode::LOCKED, "");
    assert!(locked.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn failures_under_an_accounts_email_lock_the_account() {
    let server = start().await;
    for i in 0..5 {
        let wrong = nx_login(&server, "admin@example.com", "wrong").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let by_email = nx_login(&server, "admin@example.com", "admin").await;
    assert_error_object(&by_email, StatusCode::LOCKED, "");
    // Five failed logins lock the account, not one of its names.
    let by_name = post(
        &server,
        "/api/login",
        &[],
        json!({"username": "admin", "password": "admin"}),
    )
    .await;
    assert_eq!(by_name.status, StatusCode::LOCKED, "{}", by_name.text);
}

/// An [`Authenticator`] that answers as `users` does, after `delay`.
struct Slow {
    users: MemoryUsers,
    authenticate: Duration,
    find: Duration,
}

impl Authenticator for Slow {
    fn find_account<'a>(
        &'a self,
        identifier: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(self.find).await;
            self.users.find_account(identifier).await
        })
    }

    fn verify_password<'a>(
        &'a self,
        account: Option<&'a Account>,
        password: &'a str,
    ) -> BoxFuture<'a, Result<bool, LoginError>> {
        Box::pin(async move {
            tokio::time::sleep(self.authenticate).await;
            self.users.verify_password(account, password).await
        })
    }
}

#[tokio::test]
async fn past_its_time_out_an_endpoint_answers_503_with_retry_after() {
    let issuer = issuer();
    let preset = |authenticate: Duration, find: Duration| {
        let users = users();
        PascalCase::new(LoginFlow::new(
            Arc::new(Slow {
                users,
                authenticate,
                find,
            }),
            issuer.clone(),
        ))
        .router()
    };
    let operator = users().find("operator").await.unwrap().unwrap();
    let pending = || {
        issuer
            .issue_otp_pending(&operator, PairLifetimes::new())
            .unwrap()
            .token
    };
    let totp = |token: String, code: String| {
        json_request(
            "/authenticate/totp",
            &[],
            json!({"token": token, "totp": code}),
        )
    };
    let timed = |router: Router, request: Request<Body>| async move {
        let started = Instant::now();
        let reply = call(&router, request).await;
        (reply, started.elapsed())
    };
    // The TOTP step (1 s) reading an account for 30 s; the Nx login (5 s)
    // checking a password for 30 s; the TOTP step reading it for 0.5 s.
    let stuck = preset(Duration::from_secs(30), Duration::from_secs(30));
    let slowish = preset(Duration::ZERO, Duration::from_millis(500));
    let (totp_late, nx_late, totp_in_time) = tokio::join!(
        timed(stuck.clone(), totp(pending(), operator_code(0))),
        timed(
            stuck,
            json_request(
                "/authenticate/nx",
                &[],
                json!({"Email": "admin@example.com", "Password": "admin"}),
            ),
        ),
        timed(slowish, totp(pending(), operator_code(0))),
    );
    for ((reply, elapsed), limit) in [(&totp_late, 1), (&nx_late, 5)] {
        assert_error_object(reply, StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(
            reply.str("Message"),
            format!("the request timed out after {limit} s")
        );
        let limit = Duration::from_secs(limit);
        assert!(
            *elapsed >= limit && *elapsed < limit + Duration::from_millis(1500),
            "{elapsed:?}"
        );
    }
    let (reply, elapsed) = &totp_in_time;
    let (access, _) = pair_of(reply);
    assert_eq!(claims_of(&access)["sub"], "operator");
    assert!(*elapsed >= Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn past_fifteen_seconds_sign_in_and_sign_out_answer_503_with_retry_after() {
    // The 15 s group waits for real: the time-out is the preset's
    // `tokio::time::timeout`, and the tests' tokio has no paused clock
    // (`test-util`). Both stuck requests run at once, so the test takes
    // about 15 s, at most ~16.5 s.
    let issuer = issuer();
    let preset = |authenticate: Duration, find: Duration| {
        PascalCase::new(LoginFlow::new(
            Arc::new(Slow {
                users: users(),
                authenticate,
                find,
            }),
            issuer.clone(),
        ))
        .router()
    };
    let admin = users().find("admin").await.unwrap().unwrap();
    let timed = |router: Router, request: Request<Body>| async move {
        let started = Instant::now();
        let reply = call(&router, request).await;
        (reply, started.elapsed())
    };
    let signin = || {
        json_request(
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
    };
    // The sign-in checking a password for 30 s; the sign-out reading the
    // account for 30 s; the sign-in checking it for 0.5 s.
    let stuck = preset(Duration::from_secs(30), Duration::from_secs(30));
    let slowish = preset(Duration::from_millis(500), Duration::ZERO);
    let access = issuer
        .issue_pair(&admin, PairLifetimes::new())
        .unwrap()
        .access
        .token;
    let (signin_late, signout_late, signin_in_time) = tokio::join!(
        timed(stuck.clone(), signin()),
        timed(
            stuck,
            Request::post("/authenticate/signout")
                .header("authorization", bearer(&access))
                .body(Body::empty())
                .unwrap(),
        ),
        timed(slowish, signin()),
    );
    for (reply, elapsed) in [&signin_late, &signout_late] {
        assert_error_object(reply, StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(reply.str("Message"), "the request timed out after 15 s");
        let limit = Duration::from_secs(15);
        assert!(
            *elapsed >= limit && *elapsed < limit + Duration::from_millis(1500),
            "{elapsed:?}"
        );
    }
    let (reply, elapsed) = &signin_in_time;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(keys(&reply.body), ["AccessToken", "RefreshToken"]);
    assert_eq!(claims_of(&reply.str("AccessToken"))["sub"], "admin");
    assert!(*elapsed >= Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn the_refresh_refuses_an_access_token_with_the_error_object() {
    let server = start().await;
    let signin = post(
        &server,
        "/authenticate/signin",
        &[],
        json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
    )
    .await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.text);
    let (access, refresh) = (signin.str("AccessToken"), signin.str("RefreshToken"));

    // The access token as the bearer of the refresh: 401, the error object,
    // no pair.
    let refused = post(
        &server,
        "/authenticate/refresh",
        &[("authorization", &bearer(&access))],
        json!({"GrantType": "refresh_token"}),
    )
    .await;
    assert_error_object(&refused, StatusCode::UNAUTHORIZED, "");
    assert!(
        refused.body.get("AccessToken").is_none(),
        "{}",
        refused.text
    );
    assert!(!refused.text.contains(&access), "{}", refused.text);

    // The session is untouched: its access token still works, and its
    // refresh token still refreshes.
    assert_eq!(me_status(&server, &access).await, StatusCode::OK);
    assert_eq!(refresh_status(&server, &refresh).await, StatusCode::OK);
}

#[tokio::test]
async fn every_refusal_of_the_auth_layer_is_the_error_object() {
    let issuer = issuer();
    let preset = PascalCase::new(LoginFlow::new(Arc::new(users()), issuer.clone()));
    let router = Router::new()
        .route(
            "/api/licenses",
            axum::routing::get(|| async { axum::Json(json!([])) }),
        )
        .route_layer(preset.auth_layer::<AuthClaims>(issuer.access_verifier()))
        .merge(preset.router());
    let get = |headers: &[(&str, &str)]| {
        let mut builder = Request::get("/api/licenses");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    };
    let signin = call(
        &router,
        json_request(
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        ),
    )
    .await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.text);
    let (access, refresh) = (signin.str("AccessToken"), signin.str("RefreshToken"));
    let ok = call(&router, get(&[("authorization", &bearer(&access))])).await;
    assert_eq!((ok.status, ok.body.clone()), (StatusCode::OK, json!([])));

    let challenge = |reply: &Reply| {
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // No credential: 401, a challenge without an error code (RFC 6750 §3.1).
    let missing = call(&router, get(&[])).await;
    assert_error_object(&missing, StatusCode::UNAUTHORIZED, "");
    assert_eq!(missing.body["AuthorizationInvalid"], true);
    assert_eq!(challenge(&missing), "Bearer realm=\"api\"");
    let basic = call(&router, get(&[("authorization", "Basic YWRtaW46YWRtaW4=")])).await;
    assert_error_object(&basic, StatusCode::UNAUTHORIZED, "");
    assert_eq!(challenge(&basic), "Bearer realm=\"api\"");

    // A token refused: 401, `invalid_token`.
    let mut expired_claims = claims_of(&access);
    expired_claims["exp"] = json!(now_seconds() - 120);
    let expired = demo_key().sign(&expired_claims).unwrap();
    let stranger = tower_authgate::token::SigningKey::generate_ed25519()
        .unwrap()
        .with_kid("demo")
        .sign(&claims_of(&access))
        .unwrap();
    let pending = issuer
        .issue_otp_pending(
            &users().find("operator").await.unwrap().unwrap(),
            PairLifetimes::new(),
        )
        .unwrap()
        .token;
    for token in [
        "not-a-jwt".to_owned(),
        "a b".to_owned(),
        refresh.clone(),
        pending,
        expired,
        stranger,
    ] {
        let refused = call(&router, get(&[("authorization", &bearer(&token))])).await;
        assert_error_object(&refused, StatusCode::UNAUTHORIZED, "");
        assert!(
            challenge(&refused).contains("error=\"invalid_token\""),
            "{token}: {}",
            challenge(&refused)
        );
    }

    // A malformed request: 400, `invalid_request`, in the same object.
    let repeated = Request::get("/api/licenses")
        .header("authorization", bearer(&access))
        .header("authorization", bearer(&access))
        .body(Body::empty())
        .unwrap();
    let empty = |header: &'static str| get(&[("authorization", header)]);
    for request in [empty("Bearer"), empty("Bearer "), repeated] {
        let refused = call(&router, request).await;
        assert_error_object(&refused, StatusCode::BAD_REQUEST, "");
        assert!(
            challenge(&refused).contains("error=\"invalid_request\""),
            "{}",
            challenge(&refused)
        );
    }

    // Signed out: the token is revoked, and refused in the same object.
    let out = call(
        &router,
        json_request(
            "/authenticate/signout",
            &[("authorization", &bearer(&access))],
            json!({}),
        ),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    let revoked = call(&router, get(&[("authorization", &bearer(&access))])).await;
    assert_error_object(&revoked, StatusCode::UNAUTHORIZED, "");
}

// --- inSCADA ---------------------------------------------------------------

#[tokio::test]
async fn the_inscada_preset_answers_the_documents_lifetimes_and_locks_by_default() {
    use tower_authgate::schemes::cookie_session::CookieSession;
    // A flow given no lockout (it has the default one), a preset with
    // nothing configured.
    let flow = LoginFlow::new(Arc::new(users()), issuer());
    assert!(flow.lockout().is_some());
    let router = CookieSession::new(flow).router();
    let login = |password: &str| {
        Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("username=admin&password={password}")))
            .unwrap()
    };
    let session = call(&router, login("admin")).await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.text);
    assert_eq!(
        session.body,
        json!({"expire-seconds": 300, "spaces": ["default_space", "production"]})
    );
    assert_eq!(session.headers["cache-control"], "no-store");
    let cookies = session.cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[0].starts_with("ins_access_token=ey"),
        "{}",
        cookies[0]
    );
    assert_eq!(
        cookie_attributes(&cookies[0]),
        [
            "HttpOnly",
            "Max-Age=300",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    assert!(
        cookies[1].starts_with("ins_refresh_token=ey"),
        "{}",
        cookies[1]
    );
    assert_eq!(
        cookie_attributes(&cookies[1]),
        [
            "HttpOnly",
            "Max-Age=86400",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    let access = session.cookie_value("ins_access_token").unwrap();
    let refresh = session.cookie_value("ins_refresh_token").unwrap();
    assert_eq!(claims_of(&access)["exi"], 300);
    assert_eq!(claims_of(&refresh)["exi"], 86_400);

    // Five wrong passwords lock the account for ten minutes.
    for i in 0..5 {
        let wrong = call(&router, login("wrong")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(wrong.headers["www-authenticate"], "FormBased");
        assert_eq!(
            wrong.body,
            json!({
                "status": 401,
                "error": "Unauthorized",
                "message": LoginError::InvalidCredentials.public_message(),
            })
        );
    }
    let locked = call(&router, login("admin")).await;
    assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    assert_eq!(
        locked.body,
        json!({
            "status": 423,
            "error": "Locked",
            "message": LoginError::Locked { retry_after: retry }.public_message(),
        })
    );
    assert!(locked.cookies().is_empty());
}

// --- Workflow --------------------------------------------------------------

#[tokio::test]
async fn workflow_refuses_an_account_past_its_end_with_no_content() {
    let server = start().await;
    let v2 = post(
        &server,
        "/api/v2/login",
        &[],
        json!({"username": "retired", "password": "retired"}),
    )
    .await;
    assert_eq!(v2.status, StatusCode::FORBIDDEN);
    assert_eq!(v2.text, "");
    assert!(!v2.headers.contains_key("x-auth-token"));
    assert!(!v2.headers.contains_key("content-type"));
    let v1 = server
        .get("/api/v1/login?username=retired&password=retired", &[])
        .await;
    assert_eq!(v1.status, StatusCode::FORBIDDEN);
    assert_eq!(v1.text, "");
    assert_eq!(v1.headers["deprecation"], "true");
    assert!(!v1.headers.contains_key("x-auth-token"));
    // A wrong password tells nothing of the account's state.
    let wrong = post(
        &server,
        "/api/v2/login",
        &[],
        json!({"username": "retired", "password": "wrong"}),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.text.as_str()),
        (StatusCode::UNAUTHORIZED, "")
    );
}

#[tokio::test]
async fn workflow_names_the_end_of_activity_and_no_token_outlives_it() {
    use tower_authgate::schemes::x_auth_token::XAuthToken;
    let users = MemoryUsers::new().unwrap();
    // 2038-01-19T03:14:07Z, the document's example date.
    let y2038 = users
        .insert(NewUser::new("y2038", "pass-2038").active_until(2_147_483_647))
        .unwrap();
    // 2099-12-31T23:59:59Z: the last second of the day names that day.
    let century = users
        .insert(NewUser::new("century", "pass-2099").active_until(4_102_444_799))
        .unwrap();
    let until = now_seconds() + 100;
    users
        .insert(NewUser::new("soon", "pass-soon").active_until(until))
        .unwrap();
    let issuer =
        Arc::new(JwtIssuer::new(XAuthToken::restart_scoped_key().unwrap(), "workflow").unwrap());
    let preset =
        XAuthToken::new(LoginFlow::new(Arc::new(users), issuer.clone())).with_deprecated_get();
    let router = Router::new()
        .route("/api/me", axum::routing::get(|| async { "ok" }))
        .route_layer(preset.auth_layer::<AuthClaims>(issuer.access_verifier()))
        .merge(preset.router());
    let v1 = |query: &str| {
        Request::get(format!("/api/v1/login?{query}"))
            .body(Body::empty())
            .unwrap()
    };
    let token_of = |reply: &Reply| reply.headers["x-auth-token"].to_str().unwrap().to_owned();

    let answer = call(&router, v1("username=y2038&password=pass-2038")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"id": y2038.id, "username": "y2038", "activeUntil": "2038-01-19"})
    );
    assert_eq!(answer.headers["deprecation"], "true");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let claims = claims_of(&token_of(&answer));
    assert_eq!(claims["exi"], 86_400);
    // A client cannot say how long its account lives.
    let asked = call(
        &router,
        v1("username=y2038&password=pass-2038&activeUntil=2099-12-31"),
    )
    .await;
    assert_eq!(asked.body["activeUntil"], "2038-01-19");
    let answer = call(&router, v1("username=century&password=pass-2099")).await;
    assert_eq!(
        answer.body,
        json!({"id": century.id, "username": "century", "activeUntil": "2099-12-31"})
    );

    // An account that ends in 100 s: its tokens end with it.
    let v2 = call(
        &router,
        json_request(
            "/api/v2/login",
            &[],
            json!({"username": "soon", "password": "pass-soon"}),
        ),
    )
    .await;
    assert_eq!(v2.status, StatusCode::OK, "{}", v2.text);
    let token = token_of(&v2);
    assert_eq!(v2.str("X-Auth-Token"), token);
    let claims = claims_of(&token);
    let (exp, iat) = (
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap(),
    );
    assert!(exp <= until, "exp {exp} > active_until {until}");
    assert!(exp > iat);
    assert_eq!(claims["exi"].as_u64().unwrap(), exp - iat);
    assert!(exp - iat <= 100, "{claims}");
    let me = call(
        &router,
        Request::get("/api/me")
            .header("x-auth-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((me.status, me.text.as_str()), (StatusCode::OK, "ok"));
    let v1_soon = call(&router, v1("username=soon&password=pass-soon")).await;
    assert_eq!(v1_soon.status, StatusCode::OK);
    assert!(claims_of(&token_of(&v1_soon))["exp"].as_u64().unwrap() <= until);
}

// --- RegScale service accounts and paging ------------------------------------

async fn regscale_admin(server: &Server) -> String {
    let login = post(
        server,
        "/api/authentication/login",
        &[],
        json!({"username": "admin", "password": "admin", "oldPassword": ""}),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    bearer(&login.str("auth_token"))
}

async fn create_service_account(server: &Server, admin: &str, body: Value) -> Reply {
    let created = post(
        server,
        "/api/serviceAccounts",
        &[("authorization", admin)],
        body,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created
}

/// The service account as listed: the creation's answer without the token.
fn as_listed(created: &Reply) -> Value {
    let mut listed = created.body.clone();
    listed.as_object_mut().unwrap().remove("token");
    listed
}

#[tokio::test]
async fn a_service_account_needs_a_stated_purpose() {
    let server = start().await;
    let admin = regscale_admin(&server).await;
    for body in [
        json!({"durationDays": 30}),
        json!({"purpose": "   ", "durationDays": 30}),
        json!({"purpose": "", "durationSeconds": 3600}),
    ] {
        let refused = post(
            &server,
            "/api/serviceAccounts",
            &[("authorization", &admin)],
            body.clone(),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            refused.text
        );
        assert_eq!(keys(&refused.body), ["message", "statusCode"], "{body}");
        assert_eq!(refused.body["statusCode"], 400, "{body}");
        assert!(
            refused.str("message").contains("purpose"),
            "{body}: {}",
            refused.text
        );
        assert!(refused.body.get("token").is_none(), "{body}");
    }
    // None of them was created.
    let list = server
        .get("/api/serviceAccounts", &[("authorization", &admin)])
        .await;
    assert_eq!((list.status, list.body), (StatusCode::OK, json!([])));
    // A purpose with surrounding blanks is kept trimmed.
    let created = create_service_account(
        &server,
        &admin,
        json!({"purpose": "  CI sync  ", "durationDays": 1}),
    )
    .await;
    assert_eq!(created.str("purpose"), "CI sync");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn service_accounts_stay_listable_and_revocable_across_a_restart() {
    use common::redis::RedisServer;
    let redis = RedisServer::start();
    let on_redis = || app::DemoConfig {
        redis_url: Some(redis.url()),
        ..config()
    };
    let first = start_config(on_redis()).await;
    let admin = regscale_admin(&first).await;
    let ci = create_service_account(
        &first,
        &admin,
        json!({"purpose": "CI sync", "durationDays": 30}),
    )
    .await;
    let backup = create_service_account(
        &first,
        &admin,
        json!({"purpose": "nightly backup", "durationSeconds": 3600}),
    )
    .await;
    let (ci_token, backup_token) = (ci.str("token"), backup.str("token"));
    let first_addr = first.addr;
    first.stop().await;
    assert!(tokio::net::TcpStream::connect(first_addr).await.is_err());

    // A new instance: nothing in memory, the same Redis, the same key.
    let second = start_config(on_redis()).await;
    let admin = regscale_admin(&second).await;
    let list = second
        .get("/api/serviceAccounts", &[("authorization", &admin)])
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let listed = list.body.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{}", list.text);
    for account in listed {
        assert_eq!(
            keys(account),
            [
                "createdAt",
                "createdBy",
                "expiresAt",
                "id",
                "purpose",
                "revoked",
                "roles",
                "scopes"
            ]
        );
    }
    let by_id = |id: &Value| listed.iter().find(|a| a["id"] == *id).cloned();
    assert_eq!(by_id(&ci.body["id"]), Some(as_listed(&ci)));
    assert_eq!(by_id(&backup.body["id"]), Some(as_listed(&backup)));
    assert_eq!(ci.body["createdBy"], "admin");
    assert_eq!(ci.body["roles"], json!(["admin"]));
    assert_eq!(ci.body["revoked"], false);
    assert_eq!(
        ci.body["expiresAt"].as_u64().unwrap() - ci.body["createdAt"].as_u64().unwrap(),
        30 * 86_400
    );
    assert_eq!(me_status(&second, &ci_token).await, StatusCode::OK);

    let id = ci.str("id");
    let revoked = second
        .send(
            Method::DELETE,
            &format!("/api/serviceAccounts/{id}"),
            &[("authorization", &admin)],
            Vec::new(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(revoked.text, "");
    assert_eq!(
        me_status(&second, &ci_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&second, &backup_token).await, StatusCode::OK);
    let list = second
        .get("/api/serviceAccounts", &[("authorization", &admin)])
        .await;
    let revoked_flags: Vec<(String, bool)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["purpose"].as_str().unwrap().to_owned(),
                a["revoked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(revoked_flags.len(), 2);
    assert!(revoked_flags.contains(&("CI sync".to_owned(), true)));
    assert!(revoked_flags.contains(&("nightly backup".to_owned(), false)));
}

#[tokio::test]
async fn the_crates_own_lists_page_and_order() {
    use tower_authgate::clock::ManualClock;
    use tower_authgate::lockout::{Lockout, LockoutPolicy};
    use tower_authgate::schemes::MAX_PAGE_LIMIT;
    // The issuer's clock gives each service account its own creation time;
    // one failure locks an account.
    let clock = Arc::new(ManualClock::new(now_seconds() - 100));
    let server = start_config(app::DemoConfig {
        issuer_clock: Some(clock.clone()),
        lockout: Lockout::new(LockoutPolicy::default().with_max_failures(1)),
        ..config()
    })
    .await;
    let admin = regscale_admin(&server).await;
    for purpose in ["charlie", "alpha", "bravo"] {
        clock.advance(10);
        create_service_account(
            &server,
            &admin,
            json!({"purpose": purpose, "durationDays": 1}),
        )
        .await;
    }
    let page = |path: &str, query: &str| {
        let (server, admin) = (&server, &admin);
        let path = format!("{path}{query}");
        async move { server.get(&path, &[("authorization", admin)]).await }
    };
    let field = |reply: &Reply, name: &str| -> Vec<String> {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[name].as_str().unwrap().to_owned())
            .collect()
    };
    let accounts = "/api/serviceAccounts";
    let mut all = field(&page(accounts, "").await, "purpose");
    all.sort();
    assert_eq!(all, ["alpha", "bravo", "charlie"]);
    for (query, expected) in [
        ("?OrderBy=-createdAt", &["bravo", "alpha", "charlie"][..]),
        ("?OrderBy=createdAt", &["charlie", "alpha", "bravo"]),
        ("?Offset=1&Limit=1&OrderBy=-createdAt", &["alpha"]),
        ("?OrderBy=purpose", &["alpha", "bravo", "charlie"]),
        ("?OrderBy=-purpose&Limit=2", &["charlie", "bravo"]),
        ("?OrderBy=purpose&Offset=3", &[]),
        ("?OrderBy=purpose&Limit=0", &[]),
        (
            "?OrderBy=purpose&Limit=1000",
            &["alpha", "bravo", "charlie"],
        ),
    ] {
        assert_eq!(
            field(&page(accounts, query).await, "purpose"),
            expected,
            "{query}"
        );
    }
    // Several fields: revoked ones last, then by purpose.
    let alpha_id = {
        let listed = page(accounts, "?OrderBy=purpose&Limit=1").await;
        listed.body[0]["id"].as_str().unwrap().to_owned()
    };
    let revoked = server
        .send(
            Method::DELETE,
            &format!("{accounts}/{alpha_id}"),
            &[("authorization", &admin)],
            Vec::new(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        field(
            &page(accounts, "?OrderBy=revoked,-purpose").await,
            "purpose"
        ),
        ["charlie", "bravo", "alpha"]
    );
    // Malformed paging: 400 naming the parameter, in the API's format.
    let over = page(accounts, &format!("?Limit={}", MAX_PAGE_LIMIT + 1)).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        over.body,
        json!({"statusCode": 400, "message": format!("Limit is at most {MAX_PAGE_LIMIT}")})
    );
    for (query, parameter) in [
        ("?OrderBy=nope", "OrderBy"),
        ("?OrderBy=-", "OrderBy"),
        ("?Limit=ten", "Limit"),
        ("?Offset=-1", "Offset"),
    ] {
        let refused = page(accounts, query).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.body["statusCode"], 400);
        assert!(
            refused.str("message").contains(parameter),
            "{query}: {}",
            refused.text
        );
    }

    // Locked accounts (one failure locks, known or not).
    for user in ["zulu", "alpha", "mike"] {
        let wrong = post(
            &server,
            "/api/v2/login",
            &[],
            json!({"username": user, "password": "wrong"}),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let locked = "/api/auth/lockedUsers";
    for (query, expected) in [
        ("?OrderBy=username", &["alpha", "mike", "zulu"][..]),
        ("?OrderBy=-username&Limit=2", &["zulu", "mike"]),
        ("?OrderBy=username&Offset=1&Limit=1", &["mike"]),
        ("?OrderBy=username&Offset=5", &[]),
    ] {
        assert_eq!(
            field(&page(locked, query).await, "username"),
            expected,
            "{query}"
        );
    }
    let over = page(locked, &format!("?Limit={}", MAX_PAGE_LIMIT + 1)).await;
    assert_eq!(
        (over.status, over.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({
                "status": 400,
                "error": "Bad Request",
                "message": format!("Limit is at most {MAX_PAGE_LIMIT}"),
            })
        )
    );
    let nope = page(locked, "?OrderBy=nope").await;
    assert_eq!(nope.status, StatusCode::BAD_REQUEST);
    assert_eq!(nope.body["status"], 400);
    assert!(nope.str("message").contains("OrderBy"), "{}", nope.text);
}
