//! Each document's flow over real HTTP against the demo router, served on an
//! ephemeral loopback port.
#![cfg(feature = "presets")]

mod common;

use common::demo::*;
use http::{Method, Request, StatusCode};
use serde_json::json;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::SigningKey;

/// The keys of a JSON object, sorted.
fn keys(body: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn document_000_cookie_session() {
    let server = start().await;
    let (content_type, body) = multipart(&[("username", "admin"), ("password", "admin")]);
    let login = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(
        login.body,
        json!({"expire-seconds": 300, "spaces": ["default_space", "production"]})
    );
    assert_eq!(login.headers["content-type"], "application/json");
    let cookies = login.cookies();
    assert_eq!(cookies.len(), 2);
    assert!(cookies[0].starts_with("ins_access_token=ey"));
    // The document's attributes (their order carries no meaning, RFC 6265).
    assert_eq!(
        cookie_attributes(&cookies[0]),
        ["HttpOnly", "Max-Age=300", "Path=/", "SameSite=Lax"],
        "{}",
        cookies[0]
    );
    assert!(cookies[1].starts_with("ins_refresh_token=ey"));
    assert_eq!(
        cookie_attributes(&cookies[1]),
        ["HttpOnly", "Max-Age=86400", "Path=/", "SameSite=Lax"],
        "{}",
        cookies[1]
    );
    let access = login.cookie_value("ins_access_token").unwrap();
    let refresh = login.cookie_value("ins_refresh_token").unwrap();

    // The urlencoded form works too (Python requests' `data=`).
    let form = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"username=admin&password=admin".to_vec(),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK);

    // API call with the cookie and X-Space; omitted means the default space.
    let cookie = format!("ins_access_token={access}");
    let projects = server
        .get(
            "/api/projects",
            &[("cookie", &cookie), ("x-space", "production")],
        )
        .await;
    assert_eq!(projects.status, StatusCode::OK);
    assert_eq!(projects.body[0]["space"], "production");
    let me = server.get("/api/me", &[("cookie", &cookie)]).await;
    assert_eq!(me.body["space"], "default_space");
    assert_eq!(me.body["username"], "admin");
    let foreign = server
        .get("/api/me", &[("cookie", &cookie), ("x-space", "other")])
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    // Expired access cookie + valid refresh cookie: renewed transparently.
    let mut expired_claims = claims_of(&access);
    expired_claims["exp"] = json!(now_seconds() - 10);
    let expired = server.key.sign(&expired_claims).unwrap();
    let both = format!("ins_access_token={expired}; ins_refresh_token={refresh}");
    let renewed = server.get("/api/me", &[("cookie", &both)]).await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    let fresh = renewed
        .cookie_value("ins_access_token")
        .expect("a fresh access cookie");
    assert_eq!(
        cookie_attributes(&renewed.cookies()[0]),
        ["HttpOnly", "Max-Age=300", "Path=/", "SameSite=Lax"]
    );
    assert_eq!(claims_of(&fresh)["usefor"], "access");
    // Missing access cookie: renewed as well.
    let only_refresh = format!("ins_refresh_token={refresh}");
    assert_eq!(
        server
            .get("/api/me", &[("cookie", &only_refresh)])
            .await
            .status,
        StatusCode::OK
    );
    // Without a refresh cookie an expired one is refused.
    let stale = format!("ins_access_token={expired}");
    let refused = server.get("/api/me", &[("cookie", &stale)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("expired")
    );

    // Logout clears both cookies and revokes the session.
    let logout = server
        .send(Method::POST, "/logout", &[("cookie", &both)], Vec::new())
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert!(
        logout
            .cookies()
            .iter()
            .all(|c| c.contains("=;") && cookie_attributes(c).contains(&"Max-Age=0"))
    );
    assert_eq!(
        server
            .get("/api/me", &[("cookie", &only_refresh)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.get("/api/me", &[("cookie", &cookie)]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn document_000_errors_and_otp() {
    let server = start().await;
    let post = |fields: &[(&str, &str)]| multipart(fields);
    // Wrong password and unknown user answer identically.
    let (ct, body) = post(&[("username", "admin"), ("password", "wrong")]);
    let wrong = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    let (ct, body) = post(&[("username", "nobody"), ("password", "wrong")]);
    let unknown = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((wrong.status, &wrong.text), (unknown.status, &unknown.text));
    assert!(wrong.cookies().is_empty());
    // Missing field, wrong content type, malformed multipart, huge body.
    let (ct, body) = post(&[("username", "admin")]);
    let missing = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.text.contains("password"));
    let json_body = server
        .json(Method::POST, "/login", &[], json!({"username": "admin"}))
        .await;
    assert_eq!(json_body.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", "multipart/form-data; boundary=x")],
            b"garbage".to_vec(),
        )
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    let huge = "a".repeat(64 * 1024);
    let (ct, body) = post(&[("username", "admin"), ("password", &huge)]);
    let too_big = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);

    // OTP: the password step sets only a pending cookie; the code completes it.
    let (ct, body) = post(&[("username", "operator"), ("password", "operator")]);
    let step1 = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(step1.status, StatusCode::OK);
    assert_eq!(step1.body["otp-required"], true);
    assert!(step1.cookie_value("ins_access_token").is_none());
    let pending = format!(
        "ins_otp_token={}",
        step1.cookie_value("ins_otp_token").unwrap()
    );
    // The pending token is no access token.
    assert_eq!(
        server
            .get(
                "/api/me",
                &[(
                    "cookie",
                    &pending.replace("ins_otp_token", "ins_access_token")
                )]
            )
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let (ct, body) = post(&[("otp", "000000")]);
    let bad = server
        .send(
            Method::POST,
            "/login/otp",
            &[("content-type", &ct), ("cookie", &pending)],
            body,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let (ct, body) = post(&[("otp", &operator_code(0))]);
    let step2 = server
        .send(
            Method::POST,
            "/login/otp",
            &[("content-type", &ct), ("cookie", &pending)],
            body,
        )
        .await;
    assert_eq!(step2.status, StatusCode::OK, "{}", step2.text);
    assert_eq!(step2.body["spaces"], json!(["default_space"]));
    assert!(step2.cookie_value("ins_access_token").is_some());
}

#[tokio::test]
async fn document_001_bearer_pair() {
    let server = start().await;
    let login = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.headers["content-type"], "application/json");
    assert_eq!(
        keys(&login.body),
        ["access_token", "refresh_token"],
        "{}",
        login.text
    );
    let (access, refresh) = (login.str("access_token"), login.str("refresh_token"));
    let claims = claims_of(&access);
    assert_eq!(claims["iss"], "datarhei-core");
    assert_eq!(claims["usefor"], "access");
    assert_eq!(claims["exi"], 600);
    assert_eq!(claims["sub"], "admin");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    for field in ["exi", "exp", "iat", "iss", "jti", "sub", "usefor"] {
        assert!(claims.get(field).is_some(), "{field}");
    }
    let refresh_claims = claims_of(&refresh);
    assert_eq!(refresh_claims["usefor"], "refresh");
    assert_eq!(refresh_claims["exi"], 86_400);

    let bearer = format!("Bearer {access}");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::OK
    );
    // A refresh token never passes as an access token, nor the reverse.
    let refresh_bearer = format!("Bearer {refresh}");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &refresh_bearer)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server
            .get("/api/login/refresh", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let renewed = server
        .get("/api/login/refresh", &[("authorization", &refresh_bearer)])
        .await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(keys(&renewed.body), ["access_token"], "{}", renewed.text);
    assert_eq!(renewed.headers["content-type"], "application/json");
    let new_access = renewed.str("access_token");
    assert_eq!(claims_of(&new_access)["usefor"], "access");
    let new_bearer = format!("Bearer {new_access}");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &new_bearer)])
            .await
            .status,
        StatusCode::OK
    );

    // Errors in Core's shape.
    let wrong = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "x"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["code"], 401);
    let missing = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["details"], json!(["field: password"]));
    // An external token is refused when no external login is configured.
    let external = server
        .send(
            Method::POST,
            "/api/login",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(external.status, StatusCode::UNAUTHORIZED);
    // The TOTP user sends the code with the password.
    let no_code = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "operator", "password": "operator"}),
        )
        .await;
    assert_eq!(no_code.status, StatusCode::UNAUTHORIZED);
    assert!(no_code.text.contains("one-time code is required"));
    let with_code = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "operator", "password": "operator", "otp": operator_code(0)}),
        )
        .await;
    assert_eq!(with_code.status, StatusCode::OK, "{}", with_code.text);
}

#[tokio::test]
async fn document_001_the_documents_raw_login_sample() {
    // The document's sample request, as it is: `Authorization: YOUR_API_KEY`
    // (no scheme: not a bearer token, so not the external login) and the
    // JSON credentials.
    let server = start().await;
    let body = br#"{
  "password": "admin",
  "username": "admin"
}"#
    .to_vec();
    let login = server
        .send(
            Method::POST,
            "/api/login",
            &[
                ("authorization", "YOUR_API_KEY"),
                ("content-type", "application/json"),
                ("accept", "*/*"),
            ],
            body,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.headers["content-type"], "application/json");
    assert_eq!(keys(&login.body), ["access_token", "refresh_token"]);
    let access = login.str("access_token");
    assert_eq!(claims_of(&access)["sub"], "admin");
    assert_eq!(claims_of(&access)["usefor"], "access");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &format!("Bearer {access}"))])
            .await
            .status,
        StatusCode::OK
    );
    // The same header with wrong credentials is still a password login:
    // Core's 401, not a refusal of the header.
    let wrong = server
        .send(
            Method::POST,
            "/api/login",
            &[
                ("authorization", "YOUR_API_KEY"),
                ("content-type", "application/json"),
            ],
            br#"{"password": "x", "username": "admin"}"#.to_vec(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    assert_eq!(wrong.body["code"], 401);
}

#[tokio::test]
async fn document_002_pascal_case() {
    // No reuse grace here: the second use of a refresh token is reuse at
    // once (the grace window has its own tests).
    let server = start_config(app::DemoConfig {
        refresh_reuse_grace: std::time::Duration::ZERO,
        ..config()
    })
    .await;
    let signin = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": true}),
        )
        .await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.text);
    let refresh = signin.str("RefreshToken");
    assert_eq!(claims_of(&refresh)["exi"], 30 * 86_400);
    let short = server
        .json(
            Method::GET,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    assert_eq!(claims_of(&short.str("RefreshToken"))["exi"], 86_400);

    // Refresh rotates; the old refresh token is used up.
    let grant = json!({"GrantType": "refresh_token"});
    let rb = format!("Bearer {refresh}");
    let rotated = server
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &rb)],
            grant.clone(),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let access2 = format!("Bearer {}", rotated.str("AccessToken"));
    let refresh2 = format!("Bearer {}", rotated.str("RefreshToken"));
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &access2)])
            .await
            .status,
        StatusCode::OK
    );
    // Reuse of the old refresh token ends the whole session.
    let reuse = server
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &rb)],
            grant.clone(),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.body["AuthorizationInvalid"], true);
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &access2)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let after = server
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh2)],
            grant.clone(),
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // The error body has exactly the documented keys.
    let wrong = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "x", "KeepLoggedIn": false}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let mut keys: Vec<&String> = wrong.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "AuthorizationInvalid",
            "BackendMessage",
            "Email",
            "Field",
            "Message",
            "UUID"
        ]
    );
    let missing = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["Field"]["Name"], "Password");
    let bad_grant = server
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh2)],
            json!({"GrantType": "password"}),
        )
        .await;
    assert_eq!(bad_grant.status, StatusCode::BAD_REQUEST);

    // Sign-out revokes.
    let fresh = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let ab = format!("Bearer {}", fresh.str("AccessToken"));
    let rb = format!("Bearer {}", fresh.str("RefreshToken"));
    assert_eq!(
        server
            .json(
                Method::POST,
                "/authenticate/signout",
                &[("authorization", &rb)],
                json!({})
            )
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let signout = server
        .json(
            Method::POST,
            "/authenticate/signout",
            &[("authorization", &ab)],
            json!({}),
        )
        .await;
    assert_eq!(signout.status, StatusCode::OK, "{}", signout.text);
    // The documented object, saying the authorization is now invalid.
    assert_eq!(signout.body["AuthorizationInvalid"], true);
    assert_eq!(signout.body["Email"], "admin@example.com");
    assert_eq!(signout.str("Message"), "signed out");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &ab)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server
            .json(
                Method::POST,
                "/authenticate/refresh",
                &[("authorization", &rb)],
                grant
            )
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // TOTP step.
    let pending = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "operator", "Password": "operator", "KeepLoggedIn": false}),
        )
        .await;
    assert_eq!(pending.str("AccessToken"), "");
    let code = pending.str("TotpAccessCode");
    assert_eq!(claims_of(&code)["usefor"], "otp-pending");
    let wrong_code = server
        .json(
            Method::POST,
            "/authenticate/totp",
            &[],
            json!({"token": code, "totp": "12345"}),
        )
        .await;
    assert_eq!(wrong_code.status, StatusCode::UNAUTHORIZED);
    assert_ne!(wrong_code.str("Error"), "");
    let step = server
        .json(
            Method::POST,
            "/authenticate/totp",
            &[],
            json!({"token": code, "totp": operator_code(0)}),
        )
        .await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.text);
    let mut keys: Vec<&String> = step.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["AccessToken", "Error", "RefreshToken", "TotpAccessCode"]
    );
    assert_eq!(claims_of(&step.str("AccessToken"))["sub"], "operator");
    // The pending token and the code are single-use.
    let again = server
        .json(
            Method::POST,
            "/authenticate/totp",
            &[],
            json!({"token": code, "totp": operator_code(0)}),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn document_003_auth_token_and_service_accounts() {
    let server = start().await;
    let login = server
        .json(
            Method::POST,
            "/api/authentication/login",
            &[],
            json!({"username": "admin", "password": "admin", "oldPassword": ""}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let token = login.str("auth_token");
    assert_eq!(login.str("id").len(), 36, "a GUID");
    let claims = claims_of(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        86_400
    );
    let admin = format!("Bearer {token}");
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &admin)])
            .await
            .status,
        StatusCode::OK
    );

    let created = server
        .json(
            Method::POST,
            "/api/serviceAccounts",
            &[("authorization", &admin)],
            json!({"purpose": "CI sync", "durationDays": 30}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["roles"], json!(["admin"]));
    let service = format!("Bearer {}", created.str("token"));
    let second = server
        .json(
            Method::POST,
            "/api/serviceAccounts",
            &[("authorization", &admin)],
            json!({"purpose": "backup", "durationSeconds": 3600}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let service_claims = claims_of(&created.str("token"));
    assert_eq!(service_claims["usefor"], "service");
    assert_eq!(service_claims["purpose"], "CI sync");
    assert_eq!(service_claims["exi"], 30 * 86_400);
    let me = server.get("/api/me", &[("authorization", &service)]).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["kind"], "service");

    let list = server
        .get("/api/serviceAccounts", &[("authorization", &admin)])
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert!(
        !list.text.contains(&created.str("token")),
        "tokens are shown once"
    );
    // A service-account token cannot administer service accounts.
    assert_eq!(
        server
            .get("/api/serviceAccounts", &[("authorization", &service)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Revoking one leaves the other.
    let id = created.str("id");
    let revoked = server
        .send(
            Method::DELETE,
            &format!("/api/serviceAccounts/{id}"),
            &[("authorization", &admin)],
            Vec::new(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &service)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let other = format!("Bearer {}", second.str("token"));
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &other)])
            .await
            .status,
        StatusCode::OK
    );
    let unknown = server
        .send(
            Method::DELETE,
            "/api/serviceAccounts/nope",
            &[("authorization", &admin)],
            Vec::new(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Non-administrators may not mint service accounts; bad durations are 400.
    let operator = server
        .json(
            Method::POST,
            "/api/authentication/login",
            &[],
            json!({"username": "operator", "password": "operator", "otp": operator_code(0)}),
        )
        .await;
    let op = format!("Bearer {}", operator.str("auth_token"));
    let forbidden = server
        .json(
            Method::POST,
            "/api/serviceAccounts",
            &[("authorization", &op)],
            json!({"purpose": "x", "durationDays": 1}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    // The authorization module's refusal, in RegScale's format: what was
    // needed, and RFC 6750's challenge.
    assert!(forbidden.text.contains("role:admin"), "{}", forbidden.text);
    let challenge = forbidden.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let bad = server
        .json(
            Method::POST,
            "/api/serviceAccounts",
            &[("authorization", &admin)],
            json!({"purpose": "x", "durationDays": 100000}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn document_004_x_auth_token() {
    let server = start().await;
    let login = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let header = login.headers["x-auth-token"].to_str().unwrap().to_owned();
    assert_eq!(login.str("X-Auth-Token"), header);
    assert_eq!(login.str("username"), "admin");
    assert!(login.body.get("userId").is_some());
    let claims = claims_of(&header);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        86_400
    );
    let me = server.get("/api/me", &[("x-auth-token", &header)]).await;
    assert_eq!(me.status, StatusCode::OK);

    // logoutID ends the session it names.
    let second = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "admin", "password": "admin", "logoutID": header}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &header)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let wrong = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "admin", "password": "x"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get("x-auth-token").is_none());
    // The demo serves the deprecated GET login; an account without an end
    // has no `activeUntil`, and `logoutID` ends the session it names.
    let second_token = second.headers["x-auth-token"].to_str().unwrap().to_owned();
    let v1 = server
        .get(
            &format!("/api/v1/login?username=admin&password=admin&logoutID={second_token}"),
            &[],
        )
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    assert_eq!(v1.headers["deprecation"], "true");
    assert!(v1.body.get("activeUntil").is_none());
    assert!(v1.headers.contains_key("x-auth-token"));
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &second_token)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Wrong credentials and a refused login answer with no content.
    assert_eq!(wrong.text, "");

    // The restart-scoped key is published beside the main key; a token signed
    // by a key the demo does not hold (a "previous run") is refused.
    let jwks = server.get("/.well-known/jwks.json", &[]).await;
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.get("d").is_none()));
    let previous_run = SigningKey::generate_ed25519()
        .unwrap()
        .with_kid(claims_of(&header)["jti"].as_str().unwrap());
    let stale = previous_run.sign(&claims).unwrap();
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &stale)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn workflow_login(server: &Server) -> String {
    let login = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    login.headers["x-auth-token"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn document_004_a_restart_voids_x_auth_tokens_but_not_regscale_tokens() {
    // The demo's configuration has a persistent signing key (`config()`
    // gives the fixture key): RegScale tokens are signed with it and outlive
    // a restart, while the Workflow API signs with a key made at each start
    // (`XAuthToken::restart_scoped_key`), so its tokens do not.
    let first = start_config(config()).await;
    let workflow = workflow_login(&first).await;
    let regscale = first
        .json(
            Method::POST,
            "/api/authentication/login",
            &[],
            json!({"username": "admin", "password": "admin", "oldPassword": ""}),
        )
        .await;
    assert_eq!(regscale.status, StatusCode::OK, "{}", regscale.text);
    let regscale = format!("Bearer {}", regscale.str("auth_token"));
    let me = first.get("/api/me", &[("x-auth-token", &workflow)]).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(
        first
            .get("/api/me", &[("authorization", &regscale)])
            .await
            .status,
        StatusCode::OK
    );
    let first_addr = first.addr;
    first.stop().await;

    let second = start_config(config()).await;
    assert_ne!(second.addr, first_addr);
    let voided = second.get("/api/me", &[("x-auth-token", &workflow)]).await;
    assert_eq!(voided.status, StatusCode::UNAUTHORIZED, "{}", voided.text);
    let projects = second
        .get("/api/projects", &[("x-auth-token", &workflow)])
        .await;
    assert_eq!(
        projects.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        projects.text
    );
    let kept = second.get("/api/me", &[("authorization", &regscale)]).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_eq!(kept.body["username"], "admin");
    // The second instance's own X-Auth-Tokens work.
    let fresh = workflow_login(&second).await;
    assert_ne!(fresh, workflow);
    assert_eq!(
        second
            .get("/api/me", &[("x-auth-token", &fresh)])
            .await
            .status,
        StatusCode::OK
    );
    second.stop().await;
}

#[tokio::test]
async fn document_004_the_v1_login_reads_logout_id_from_a_json_body() {
    let server = start().await;
    let previous = workflow_login(&server).await;
    let bystander = workflow_login(&server).await;
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &previous)])
            .await
            .status,
        StatusCode::OK
    );
    let v1 = server
        .json(
            Method::GET,
            "/api/v1/login?username=admin&password=admin",
            &[],
            json!({"logoutID": previous}),
        )
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    assert_eq!(v1.headers["deprecation"], "true");
    let token = v1.headers["x-auth-token"].to_str().unwrap().to_owned();
    // The session the body named is over; the new one and the others live.
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &previous)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    for live in [&token, &bystander] {
        assert_eq!(
            server
                .get("/api/me", &[("x-auth-token", live)])
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn the_deprecated_get_login_says_so_when_enabled() {
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_authgate::login::{JwtIssuer, LoginFlow, MemoryUsers, NewUser};
    use tower_authgate::schemes::x_auth_token::XAuthToken;
    let users = MemoryUsers::new().unwrap();
    users.insert(NewUser::new("user", "pass")).unwrap();
    let issuer = JwtIssuer::new(XAuthToken::restart_scoped_key().unwrap(), "workflow").unwrap();
    let preset = XAuthToken::new(LoginFlow::new(
        std::sync::Arc::new(users),
        std::sync::Arc::new(issuer),
    ))
    .with_deprecated_get();
    let response = preset
        .router()
        .oneshot(
            Request::get("/api/v1/login?username=user&password=pass")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["deprecation"], "true");
    assert!(response.headers().contains_key("x-auth-token"));
    assert!(
        response.headers()["link"]
            .to_str()
            .unwrap()
            .contains("/api/v2/login")
    );
}

#[tokio::test]
async fn garbage_never_yields_a_server_error() {
    let server = start().await;
    let paths = [
        "/login",
        "/login/otp",
        "/logout",
        "/api/login",
        "/api/login/refresh",
        "/authenticate/signin",
        "/authenticate/refresh",
        "/authenticate/signout",
        "/authenticate/totp",
        "/api/authentication/login",
        "/api/serviceAccounts",
        "/api/v2/login",
        "/api/me",
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"{",
        b"null",
        b"[1,2,3]",
        b"{\"username\":7,\"password\":[]}",
        &[0xff, 0xfe, 0x00],
    ];
    let types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "text/plain",
    ];
    for path in paths {
        for body in bodies {
            for content_type in types {
                for auth in ["", "Bearer x.y.z", "Bearer "] {
                    let mut headers = vec![("content-type", content_type)];
                    if !auth.is_empty() {
                        headers.push(("authorization", auth));
                    }
                    let reply = server
                        .send(Method::POST, path, &headers, body.to_vec())
                        .await;
                    // Logging out without a session is a harmless success.
                    let expected = if path == "/logout" {
                        reply.status == StatusCode::NO_CONTENT
                    } else {
                        reply.status.is_client_error()
                    };
                    assert!(
                        expected,
                        "{path} {content_type} {body:?}: {} {}",
                        reply.status, reply.text
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn ip_filter_and_trusted_proxy_headers() {
    use tower_authgate::ip::IpRules;
    let key = demo_key();
    // The test client connects from 127.0.0.1, which the demo trusts as a proxy.
    let server = start_with(key.clone(), IpRules::parse("", "203.0.113.0/24").unwrap()).await;
    let login = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    let bearer = format!("Bearer {}", login.str("access_token"));
    let me = server
        .get(
            "/api/me",
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["client_ip"], "198.51.100.7");
    let denied = server
        .get(
            "/api/me",
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let mapped = server
        .get(
            "/api/me",
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "::ffff:203.0.113.9"),
            ],
        )
        .await;
    assert_eq!(mapped.status, StatusCode::FORBIDDEN);
    let login_denied = server
        .json(
            Method::POST,
            "/api/login",
            &[("x-forwarded-for", "203.0.113.9")],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login_denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        server
            .get("/healthz", &[("x-forwarded-for", "203.0.113.9")])
            .await
            .status,
        StatusCode::OK
    );

    // Loopback itself denied: everything but the open routes is refused.
    let closed = start_with(key, IpRules::parse("10.0.0.0/8", "").unwrap()).await;
    assert_eq!(
        closed
            .get("/api/me", &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(closed.get("/healthz", &[]).await.status, StatusCode::OK);
    assert_eq!(
        closed.get("/.well-known/jwks.json", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn lockout_after_five_failures_and_locked_users_listing() {
    use std::sync::Arc;
    use tower_authgate::clock::ManualClock;
    use tower_authgate::lockout::{Lockout, LockoutPolicy};
    let clock = Arc::new(ManualClock::new(now_seconds()));
    let server = start_config(app::DemoConfig {
        trusted_proxies: tower_authgate::ip::IpRanges::default(),
        lockout: Lockout::new(LockoutPolicy::default()).with_clock(clock.clone()),
        ..config()
    })
    .await;
    let admin = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    let admin = format!("Bearer {}", admin.str("access_token"));

    let attempt = |user: &'static str, password: &'static str| {
        let server = &server;
        async move {
            server
                .json(
                    Method::POST,
                    "/api/v2/login",
                    &[],
                    json!({"username": user, "password": password}),
                )
                .await
        }
    };
    for i in 0..5 {
        assert_eq!(
            attempt("operator", "wrong").await.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}"
        );
        assert_eq!(
            attempt("ghost", "wrong").await.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}"
        );
    }
    // Locked: the right password is not even checked, and the answer for an
    // unknown account is the same.
    let locked = attempt("operator", "operator").await;
    assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry));
    let ghost = attempt("ghost", "anything").await;
    assert_eq!((ghost.status, &ghost.text), (locked.status, &locked.text));
    // Every preset answers the lock the same way.
    let (ct, body) = multipart(&[("username", "operator"), ("password", "operator")]);
    let cookie = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(cookie.status, StatusCode::LOCKED);
    assert!(cookie.headers.contains_key("retry-after"));

    let list = server
        .get("/api/auth/lockedUsers", &[("authorization", &admin)])
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ghost", "operator"]);
    assert!(list.body[1]["lockedUntil"].as_u64().unwrap() > now_seconds());
    // Anonymous callers and non-administrators may not see it.
    assert_eq!(
        server.get("/api/auth/lockedUsers", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // An administrator unlocks one; the other unlocks when its time is up.
    let unlock = server
        .send(
            Method::DELETE,
            "/api/auth/lockedUsers/operator",
            &[("authorization", &admin)],
            Vec::new(),
        )
        .await;
    assert_eq!(unlock.status, StatusCode::NO_CONTENT);
    let after = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "operator", "password": "operator", "otp": operator_code(0)}),
        )
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    let operator = format!("Bearer {}", after.str("access_token"));
    let refused = server
        .get("/api/auth/lockedUsers", &[("authorization", &operator)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // The authorization core's refusal, in the inSCADA format.
    let challenge = refused.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(refused.text.contains("role:admin"), "{}", refused.text);
    assert_eq!(attempt("ghost", "x").await.status, StatusCode::LOCKED);
    clock.advance(601);
    assert_eq!(attempt("ghost", "x").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_throttle_per_address() {
    let server = start_config(app::DemoConfig {
        login_throttle_per_minute: 3,
        ..config()
    })
    .await;
    let from = |ip: &'static str| {
        let server = &server;
        async move {
            server
                .json(
                    Method::POST,
                    "/api/login",
                    &[("x-forwarded-for", ip)],
                    json!({"username": "nobody", "password": "x"}),
                )
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(from("198.51.100.1").await.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = from("198.51.100.1").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address is not affected; API routes are not throttled.
    assert_eq!(from("198.51.100.2").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server
            .get("/healthz", &[("x-forwarded-for", "198.51.100.1")])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn each_api_answers_throttled_and_refused_addresses_in_its_own_error_format() {
    let server = start_config(app::DemoConfig {
        login_throttle_per_minute: 2,
        ip_rules: tower_authgate::ip::IpRules::parse("", "203.0.113.0/24").unwrap(),
        ..config()
    })
    .await;
    let signin = |ip: &'static str| {
        let server = &server;
        async move {
            server
                .json(
                    Method::POST,
                    "/authenticate/signin",
                    &[("x-forwarded-for", ip)],
                    json!({"Username": "nobody", "Password": "x", "KeepLoggedIn": false}),
                )
                .await
        }
    };
    // One budget per address across every API: a Core login spends it too.
    let core = server
        .json(
            Method::POST,
            "/api/login",
            &[("x-forwarded-for", "198.51.100.7")],
            json!({"username": "nobody", "password": "x"}),
        )
        .await;
    assert_eq!(core.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        signin("198.51.100.7").await.status,
        StatusCode::UNAUTHORIZED
    );
    let throttled = signin("198.51.100.7").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));
    let mut keys: Vec<&str> = throttled
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "AuthorizationInvalid",
            "BackendMessage",
            "Email",
            "Field",
            "Message",
            "UUID"
        ]
    );
    assert_eq!(throttled.body["AuthorizationInvalid"], false);
    assert!(throttled.str("Message").contains("too many login attempts"));

    // A refused address, in each API's format.
    let denied = signin("203.0.113.9").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.str("Message"),
        "access from this address is not allowed"
    );
    let inscada = server
        .send(
            Method::POST,
            "/login",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"username=admin&password=admin".to_vec(),
        )
        .await;
    assert_eq!(inscada.status, StatusCode::FORBIDDEN);
    assert_eq!(inscada.body["status"], 403);
    assert_eq!(inscada.body["error"], "Forbidden");
    let workflow = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[("x-forwarded-for", "203.0.113.9")],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(workflow.status, StatusCode::FORBIDDEN);
    assert_eq!(workflow.text, "", "the Workflow API's 403 has no content");
}

#[tokio::test]
async fn host_prefixed_cookies() {
    use axum::body::Body;
    use std::sync::Arc;
    use tower::ServiceExt;
    use tower_authgate::cookie::CookieSettings;
    use tower_authgate::login::{JwtIssuer, LoginFlow, MemoryUsers, NewUser};
    use tower_authgate::schemes::cookie_session::CookieSession;
    let users = MemoryUsers::new().unwrap();
    users
        .insert(NewUser::new("admin", "admin").spaces(["default_space"]))
        .unwrap();
    let issuer = JwtIssuer::new(demo_key(), "t").unwrap();
    let flow = LoginFlow::new(Arc::new(users), Arc::new(issuer));
    assert!(
        CookieSession::new(flow.clone())
            .with_cookies(CookieSettings::default().development())
            .with_host_prefix()
            .is_err()
    );
    let preset = CookieSession::new(flow).with_host_prefix().unwrap();
    assert_eq!(preset.access_cookie_name(), "__Host-ins_access_token");
    let response = preset
        .router()
        .oneshot(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("username=admin&password=admin"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(cookies[0].starts_with("__Host-ins_access_token="));
    assert!(cookies[1].starts_with("__Host-ins_refresh_token="));
    assert_eq!(
        cookie_attributes(cookies[0]),
        [
            "HttpOnly",
            "Max-Age=300",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    assert_eq!(
        cookie_attributes(cookies[1]),
        [
            "HttpOnly",
            "Max-Age=86400",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
}

#[tokio::test]
async fn optional_routes_treat_a_dead_refresh_cookie_as_anonymous() {
    use axum::body::Body;
    use std::sync::Arc;
    use tower::ServiceExt;
    use tower_authgate::login::{JwtIssuer, LoginFlow, MemoryUsers, TokenIssuer};
    use tower_authgate::schemes::cookie_session::CookieSession;
    use tower_authgate::token::{Anonymous, VerifiedToken};
    let issuer = Arc::new(JwtIssuer::new(demo_key(), "t").unwrap());
    let verifier = issuer.access_verifier();
    let session = CookieSession::new(LoginFlow::new(
        Arc::new(MemoryUsers::new().unwrap()),
        issuer,
    ));
    let layer = session.auth_layer::<serde_json::Value>(verifier).unwrap();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|request: axum::extract::Request| async move {
                match (
                    request.extensions().get::<VerifiedToken>(),
                    request.extensions().get::<Anonymous>(),
                ) {
                    (Some(_), _) => "signed in",
                    (None, Some(_)) => "anonymous",
                    (None, None) => "neither",
                }
            }),
        )
        .layer(layer.clone().optional());
    let request = |cookie: &str| {
        Request::get("/")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap()
    };
    let response = app
        .clone()
        .oneshot(request("ins_refresh_token=not.a.token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"anonymous");
    // On a required route the same request is refused.
    let required = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hi" }))
        .layer(layer);
    let response = required
        .oneshot(request("ins_refresh_token=not.a.token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_both_stay_signed_in() {
    // The demo's default reuse grace window (ten seconds).
    let server = start().await;
    let signin = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": true}),
        )
        .await;
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    let headers = [("authorization", refresh.as_str())];
    let grant = json!({"GrantType": "refresh_token"});
    let (first, second) = tokio::join!(
        server.json(
            Method::POST,
            "/authenticate/refresh",
            &headers,
            grant.clone()
        ),
        server.json(
            Method::POST,
            "/authenticate/refresh",
            &headers,
            grant.clone()
        ),
    );
    for tab in [&first, &second] {
        assert_eq!(tab.status, StatusCode::OK, "{}", tab.text);
        let access = format!("Bearer {}", tab.str("AccessToken"));
        assert_eq!(
            server
                .get("/api/me", &[("authorization", &access)])
                .await
                .status,
            StatusCode::OK
        );
        // Each tab's new refresh token keeps the 30-day session.
        assert_eq!(claims_of(&tab.str("RefreshToken"))["exi"], 30 * 86_400);
    }
    assert_eq!(
        claims_of(&first.str("AccessToken"))["fam"],
        claims_of(&second.str("AccessToken"))["fam"],
        "one session"
    );
}

/// Authorization per route: `DELETE /api/projects/{id}` takes the role
/// `admin`, `GET /api/audit` the scope `audit:read`, through a bearer
/// token, the Workflow `X-Auth-Token` and the inSCADA cookie.
#[tokio::test]
async fn projects_delete_needs_admin_and_audit_needs_its_scope() {
    let server = start().await;
    let bearer_of = |login: &Reply| format!("Bearer {}", login.str("access_token"));
    let login = |body: serde_json::Value| server.json(Method::POST, "/api/login", &[], body);
    let admin = login(json!({"username": "admin", "password": "admin"})).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text);
    let admin = bearer_of(&admin);
    let operator =
        login(json!({"username": "operator", "password": "operator", "otp": operator_code(0)}))
            .await;
    assert_eq!(operator.status, StatusCode::OK, "{}", operator.text);
    let operator = bearer_of(&operator);
    let ids = |reply: &Reply| -> Vec<u64> {
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect()
    };
    let delete = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .send(Method::DELETE, path, &headers, Vec::new())
                .await
        }
    };

    // Anonymous: 401; an operator: 403 insufficient_scope, nothing deleted.
    assert_eq!(
        delete("/api/projects/1", vec![]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused = delete("/api/projects/1", vec![("authorization", operator.clone())]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["error"], "insufficient_scope");
    let challenge = refused.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let list = server
        .get("/api/projects", &[("authorization", &operator)])
        .await;
    assert_eq!(ids(&list), [1, 2]);

    // An administrator deletes it; it is gone from the list.
    let deleted = delete("/api/projects/1", vec![("authorization", admin.clone())]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let list = server
        .get("/api/projects", &[("authorization", &admin)])
        .await;
    assert_eq!(ids(&list), [2]);

    // The Workflow `X-Auth-Token`: the operator is refused, the admin is not.
    let workflow = |body: serde_json::Value| server.json(Method::POST, "/api/v2/login", &[], body);
    // (The operator's bearer token, sent in the Workflow header: a second
    // TOTP login in the same step would be a replay.)
    let wf_operator = operator.trim_start_matches("Bearer ").to_owned();
    let refused = delete(
        "/api/projects/2",
        vec![("x-auth-token", wf_operator.clone())],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wf_admin = workflow(json!({"username": "admin", "password": "admin"})).await;
    let wf_admin = wf_admin.headers["x-auth-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let deleted = delete("/api/projects/2", vec![("x-auth-token", wf_admin.clone())]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let gone = delete("/api/projects/2", vec![("x-auth-token", wf_admin.clone())]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // The inSCADA cookie, same-origin as CSRF requires.
    let (content_type, body) = multipart(&[("username", "admin"), ("password", "admin")]);
    let cookie_login = server
        .send(
            Method::POST,
            "/login",
            &[("content-type", &content_type)],
            body,
        )
        .await;
    let cookie = format!(
        "ins_access_token={}",
        cookie_login.cookie_value("ins_access_token").unwrap()
    );
    let same_origin = || {
        vec![
            ("cookie", cookie.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ]
    };
    // Project 1 is already gone: past the role check, the handler answers.
    assert_eq!(
        delete("/api/projects/1", same_origin()).await.status,
        StatusCode::NOT_FOUND
    );

    // `GET /api/audit`: the scope `audit:read`, which the issuer mints for
    // the admin only, named in the refusal.
    for (name, headers, granted) in [
        (
            "operator bearer",
            vec![("authorization", operator.clone())],
            false,
        ),
        ("admin bearer", vec![("authorization", admin.clone())], true),
        (
            "operator x-auth-token",
            vec![("x-auth-token", wf_operator.clone())],
            false,
        ),
        (
            "admin x-auth-token",
            vec![("x-auth-token", wf_admin.clone())],
            true,
        ),
        ("admin cookie", same_origin(), true),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let audit = server.get("/api/audit", &headers).await;
        if granted {
            assert_eq!(audit.status, StatusCode::OK, "{name}: {}", audit.text);
            assert_eq!(audit.body["reader"], "admin", "{name}");
        } else {
            assert_eq!(
                audit.status,
                StatusCode::FORBIDDEN,
                "{name}: {}",
                audit.text
            );
            let challenge = audit.headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.ends_with(r#"scope="audit:read""#),
                "{name}: {challenge}"
            );
        }
    }
    assert_eq!(
        server.get("/api/audit", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}
