//! No secret reaches the telemetry: every tracing event of every target, at
//! `TRACE`, with all its fields, and every metric key and label are
//! captured while flows run through all five login APIs of the demo
//! (logins right and wrong, TOTP codes right, wrong and replayed, refresh,
//! rotation and reuse, cookie renewal, service accounts, code login,
//! registration, log-out, lockout, forged and garbage tokens); then none of
//! the passwords, codes, tokens (nor their payload or signature parts),
//! cookie values, login states and codes, nor the demo's keys and the TOTP
//! secret, appears anywhere in what was captured.
//!
//! The capture must hold the expected events (login failures, decisions,
//! the lockout, the reuse, ...) so that the test cannot pass on an empty
//! capture. The demo's own users sign in with their usernames as
//! passwords, which their events name: the flows use a registered account
//! with a distinctive password instead (the TOTP user `operator` excepted).
#![cfg(all(feature = "presets", feature = "metrics", feature = "tracing"))]

mod common;

use common::capture::Capture;
use common::demo::{Reply, Server, app, claims_of, config, multipart, operator_code, start_config};
use http::{Method, StatusCode};
use metrics_util::debugging::DebuggingRecorder;
use serde_json::{Value, json};
use tower_authgate::clock::now_seconds;
use tower_authgate::token::SigningKey;

const EMAIL: &str = "zq81x.owner@example.org";
const PASSWORD: &str = "Qz7vTn4wLk9pRx2m-Hj8";
const TAKEN_PASSWORD: &str = "Taken-Pa55-zq81x-Vb3n";
const STRENGTH_PASSWORD: &str = "Strength-Pa55-zq81x-Kp2";
const WRONG: &str = "Wr0ng-Pa55-zq81x";
const LOCKED_USER: &str = "zq81x.locked@example.org";
/// The API's answer to the registered account's valid tokens: it has no
/// space yet.
const NO_SPACE: StatusCode = StatusCode::FORBIDDEN;
const GARBAGE_TOKEN: &str = "zq81x-not-a-jwt-Gk2Lm9Tr4";

/// What must not be captured, by name.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: &str) {
        assert!(!value.is_empty(), "{name} is empty");
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// A token, and its payload and signature parts on their own.
    fn token(&mut self, name: &str, token: &str) {
        self.add(name, token);
        let parts: Vec<&str> = token.split('.').collect();
        if let [_, payload, signature] = parts[..] {
            self.add(&format!("{name} (payload)"), payload);
            if !signature.is_empty() {
                self.add(&format!("{name} (signature)"), signature);
            }
        }
    }
}

/// Whether `needle` (digits) occurs in `haystack` other than inside a
/// longer number.
fn contains_code(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn post_json(server: &Server, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    server.json(Method::POST, path, headers, body).await
}

async fn form_login(server: &Server, user: &str, password: &str) -> Reply {
    let (ct, body) = multipart(&[("username", user), ("password", password)]);
    server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_events_or_metrics() {
    let capture = Capture::default();
    let subscriber = capture.subscriber();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder");

    let mut secrets = Secrets::default();
    for (name, value) in [
        ("password", PASSWORD),
        ("taken-email password", TAKEN_PASSWORD),
        ("judged password", STRENGTH_PASSWORD),
        ("wrong password", WRONG),
        ("garbage token", GARBAGE_TOKEN),
        ("TOTP secret", app::OPERATOR_TOTP_SECRET),
    ] {
        secrets.add(name, value);
    }
    secrets.add(
        "HMAC secret",
        std::str::from_utf8(common::SECRET).expect("text"),
    );
    // The demo's signing key: each line of its PEM body.
    let pem = String::from_utf8(common::key_pem("ed25519_private")).unwrap();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        secrets.add("signing key (PEM)", line.trim());
    }

    let server = start_config(app::DemoConfig {
        // A used refresh token is reuse at once.
        refresh_reuse_grace: std::time::Duration::ZERO,
        ..config()
    })
    .await;

    // Registration (PascalCase API): a new account, then the same email
    // again with another password, and a password judged.
    let registration = json!({"Email": EMAIL, "Password": PASSWORD, "Name": "Zq Owner"});
    let registered = post_json(&server, "/user", &[], registration).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.text
    );
    let taken = post_json(
        &server,
        "/user",
        &[],
        json!({"Email": EMAIL, "Password": TAKEN_PASSWORD, "Name": "Zq Other"}),
    )
    .await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.text);
    let judged = post_json(
        &server,
        "/authenticate/password-strength",
        &[],
        json!({"Password": STRENGTH_PASSWORD}),
    )
    .await;
    assert_eq!(judged.status, StatusCode::OK);

    // Cookie session: a wrong password, the right one, the API with the
    // cookie, an expired cookie renewed from the refresh cookie, log-out.
    assert_eq!(
        form_login(&server, EMAIL, WRONG).await.status,
        StatusCode::UNAUTHORIZED
    );
    let session = form_login(&server, EMAIL, PASSWORD).await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.text);
    let access_cookie = session.cookie_value("ins_access_token").unwrap();
    let refresh_cookie = session.cookie_value("ins_refresh_token").unwrap();
    secrets.token("access cookie", &access_cookie);
    secrets.token("refresh cookie", &refresh_cookie);
    // The token passes; the new account has no space yet (403).
    let cookie = format!("ins_access_token={access_cookie}");
    assert_eq!(
        server.get("/api/me", &[("cookie", &cookie)]).await.status,
        NO_SPACE
    );
    let mut expired = claims_of(&access_cookie);
    expired["exp"] = json!(now_seconds() - 10);
    let expired = server.key.sign(&expired).unwrap();
    secrets.token("expired access cookie", &expired);
    let both = format!("ins_access_token={expired}; ins_refresh_token={refresh_cookie}");
    let renewed = server.get("/api/me", &[("cookie", &both)]).await;
    assert_eq!(renewed.status, NO_SPACE, "{}", renewed.text);
    if let Some(renewed) = renewed.cookie_value("ins_access_token") {
        secrets.token("renewed access cookie", &renewed);
    }
    let stale = format!("ins_access_token={expired}");
    assert_eq!(
        server.get("/api/me", &[("cookie", &stale)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let logout = server
        .send(Method::POST, "/logout", &[("cookie", &both)], Vec::new())
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get("/api/me", &[("cookie", &cookie)]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // TOTP, PascalCase API: the password step, a wrong code, the right
    // code; the same code replayed through the cookie-session and Core
    // APIs.
    let valid: Vec<String> = (-1..=1).map(operator_code).collect();
    let wrong_code = ["271828", "314159", "161803"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap();
    secrets.add("wrong TOTP code", wrong_code);
    let pending = post_json(
        &server,
        "/authenticate/signin",
        &[],
        json!({"Username": "operator", "Password": "operator", "KeepLoggedIn": false}),
    )
    .await;
    let pending_token = pending.str("TotpAccessCode");
    secrets.token("TOTP pending token", &pending_token);
    let refused = post_json(
        &server,
        "/authenticate/totp",
        &[],
        json!({"token": pending_token, "totp": wrong_code}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let code = operator_code(0);
    secrets.add("TOTP code", &code);
    let step = post_json(
        &server,
        "/authenticate/totp",
        &[],
        json!({"token": pending_token, "totp": code}),
    )
    .await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.text);
    secrets.token("TOTP access token", &step.str("AccessToken"));
    secrets.token("TOTP refresh token", &step.str("RefreshToken"));
    let (ct, body) = multipart(&[("username", "operator"), ("password", "operator")]);
    let step1 = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(step1.body["otp-required"], true, "{}", step1.text);
    let otp_cookie = step1.cookie_value("ins_otp_token").unwrap();
    secrets.token("TOTP pending cookie", &otp_cookie);
    let (ct, body) = multipart(&[("otp", &code)]);
    let replayed = server
        .send(
            Method::POST,
            "/login/otp",
            &[
                ("content-type", &ct),
                ("cookie", &format!("ins_otp_token={otp_cookie}")),
            ],
            body,
        )
        .await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.text
    );
    let core_replay = post_json(
        &server,
        "/api/login",
        &[],
        json!({"username": "operator", "password": "operator", "otp": code}),
    )
    .await;
    assert_eq!(core_replay.status, StatusCode::UNAUTHORIZED);

    // Core API: wrong and right passwords, the API with the bearer token,
    // a refresh, a refresh token as access token, an "external" token.
    assert_eq!(
        post_json(
            &server,
            "/api/login",
            &[],
            json!({"username": EMAIL, "password": WRONG})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let core = post_json(
        &server,
        "/api/login",
        &[],
        json!({"username": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(core.status, StatusCode::OK, "{}", core.text);
    let (core_access, core_refresh) = (core.str("access_token"), core.str("refresh_token"));
    secrets.token("Core access token", &core_access);
    secrets.token("Core refresh token", &core_refresh);
    for _ in 0..2 {
        let me = server
            .get("/api/me", &[("authorization", &bearer(&core_access))])
            .await;
        assert_eq!(me.status, NO_SPACE);
    }
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &bearer(&core_refresh))])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = server
        .get(
            "/api/login/refresh",
            &[("authorization", &bearer(&core_refresh))],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    secrets.token(
        "Core refreshed access token",
        &refreshed.str("access_token"),
    );
    let external = server
        .send(
            Method::POST,
            "/api/login",
            &[
                ("authorization", &bearer(&core_access)),
                ("content-type", "application/json"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(external.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        server.get("/api/me", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Forged tokens: another signature, a key the demo does not hold, an
    // HMAC token signed with a shared secret (algorithm confusion), garbage.
    let (signed, _) = core_access.rsplit_once('.').unwrap();
    let resigned = format!(
        "{signed}.{}",
        common::b64(b"zq81x-forged-signature-bytes-0123456789abcdefghij")
    );
    secrets.token("token with another signature", &resigned);
    let other_key = SigningKey::generate_ed25519().unwrap().with_kid("demo");
    let foreign = other_key.sign(&claims_of(&core_access)).unwrap();
    secrets.token("token of another key", &foreign);
    let confused = common::raw_hs256(
        r#"{"alg":"HS256","typ":"JWT","kid":"demo"}"#,
        &claims_of(&core_access).to_string(),
        common::SECRET,
    );
    secrets.token("HS256 token", &confused);
    for token in [&resigned, &foreign, &confused, &GARBAGE_TOKEN.to_owned()] {
        for headers in [
            vec![("authorization", bearer(token))],
            vec![("x-auth-token", token.clone())],
            vec![("cookie", format!("ins_access_token={token}"))],
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let reply = server.get("/api/me", &headers).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        }
        let refresh = server
            .get("/api/login/refresh", &[("authorization", &bearer(token))])
            .await;
        assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    }

    // PascalCase API: sign-in, refresh (rotated), the old refresh token
    // again (reuse), the Nx and plugin logins, code login, token update and
    // log-out with the password again, sign-out.
    let signin = |password: &'static str| {
        let server = &server;
        async move {
            post_json(
                server,
                "/authenticate/signin",
                &[],
                json!({"Username": EMAIL, "Password": password, "KeepLoggedIn": true}),
            )
            .await
        }
    };
    assert_eq!(signin(WRONG).await.status, StatusCode::UNAUTHORIZED);
    let nx = signin(PASSWORD).await;
    assert_eq!(nx.status, StatusCode::OK, "{}", nx.text);
    let (nx_access, nx_refresh) = (nx.str("AccessToken"), nx.str("RefreshToken"));
    secrets.token("Nx access token", &nx_access);
    secrets.token("Nx refresh token", &nx_refresh);
    let grant = json!({"GrantType": "refresh_token"});
    let rotated = post_json(
        &server,
        "/authenticate/refresh",
        &[("authorization", &bearer(&nx_refresh))],
        grant.clone(),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    secrets.token("Nx rotated access token", &rotated.str("AccessToken"));
    secrets.token("Nx rotated refresh token", &rotated.str("RefreshToken"));
    let reused = post_json(
        &server,
        "/authenticate/refresh",
        &[("authorization", &bearer(&nx_refresh))],
        grant.clone(),
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    let nx_login = post_json(
        &server,
        "/authenticate/nx",
        &[],
        json!({"Email": EMAIL, "Password": PASSWORD}),
    )
    .await;
    assert_eq!(nx_login.status, StatusCode::OK, "{}", nx_login.text);
    let plugin_refresh = nx_login.str("RefreshToken");
    let nx_login_access = nx_login.str("AccessToken");
    secrets.token("Nx login access token", &nx_login_access);
    secrets.token("Nx login refresh token", &plugin_refresh);
    let plugin = post_json(
        &server,
        "/authenticate/plugin",
        &[],
        json!({"refresh_token": plugin_refresh, "system_nxid": "zq-system"}),
    )
    .await;
    assert_eq!(plugin.status, StatusCode::OK, "{}", plugin.text);
    secrets.token("plugin access token", &plugin.str("AccessToken"));
    secrets.token("plugin refresh token", &plugin.str("RefreshToken"));

    let state_reply = post_json(
        &server,
        "/authenticate/csrf",
        &[],
        json!({
            "AuthenticationEndpoint": "https://auth.example.org/login",
            "RedirectURL": "https://app.example.org/done"
        }),
    )
    .await;
    assert_eq!(state_reply.status, StatusCode::OK, "{}", state_reply.text);
    let state = state_reply.headers["x-login-state"]
        .to_str()
        .unwrap()
        .to_owned();
    secrets.add("login state", &state);
    let issued = post_json(
        &server,
        "/authenticate/code/issue",
        &[("authorization", &bearer(&nx_login_access))],
        json!({"state": state}),
    )
    .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    let login_code = issued.str("code");
    secrets.add("login code", &login_code);
    let state_cookie = format!("nx_login_state={state}");
    let code_login = post_json(
        &server,
        "/authenticate/code",
        &[("cookie", &state_cookie)],
        json!({"code": login_code, "state": state}),
    )
    .await;
    assert_eq!(code_login.status, StatusCode::OK, "{}", code_login.text);
    let code_access = code_login.str("AccessToken");
    secrets.token("code login access token", &code_access);
    secrets.token("code login refresh token", &code_login.str("RefreshToken"));
    let again = post_json(
        &server,
        "/authenticate/code",
        &[("cookie", &state_cookie)],
        json!({"code": login_code, "state": state}),
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);

    let password_grant = |password: &str| json!({"GrantType": "password", "Password": password});
    let wrong_update = post_json(
        &server,
        "/authenticate/update",
        &[("authorization", &bearer(&code_access))],
        password_grant(WRONG),
    )
    .await;
    assert_eq!(wrong_update.status, StatusCode::UNAUTHORIZED);
    let updated = post_json(
        &server,
        "/authenticate/update",
        &[("authorization", &bearer(&code_access))],
        password_grant(PASSWORD),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    let updated_access = updated.str("AccessToken");
    secrets.token("updated access token", &updated_access);
    secrets.token("updated refresh token", &updated.str("RefreshToken"));
    let logged_out = post_json(
        &server,
        "/authenticate/logout",
        &[("authorization", &bearer(&updated_access))],
        password_grant(PASSWORD),
    )
    .await;
    assert_eq!(logged_out.status, StatusCode::OK, "{}", logged_out.text);
    let signout = post_json(
        &server,
        "/authenticate/signout",
        &[("authorization", &bearer(&nx_login_access))],
        json!({}),
    )
    .await;
    assert_eq!(signout.status, StatusCode::OK, "{}", signout.text);

    // RegScale API: logins, and service accounts (an administrator's).
    for (password, status) in [
        (WRONG, StatusCode::UNAUTHORIZED),
        (PASSWORD, StatusCode::OK),
    ] {
        let reply = post_json(
            &server,
            "/api/authentication/login",
            &[],
            json!({"username": EMAIL, "password": password, "oldPassword": ""}),
        )
        .await;
        assert_eq!(reply.status, status, "{}", reply.text);
        if status == StatusCode::OK {
            secrets.token("RegScale token", &reply.str("auth_token"));
        }
    }
    let admin = post_json(
        &server,
        "/api/authentication/login",
        &[],
        json!({"username": "admin", "password": "admin", "oldPassword": ""}),
    )
    .await;
    let admin_token = admin.str("auth_token");
    secrets.token("RegScale admin token", &admin_token);
    let created = post_json(
        &server,
        "/api/serviceAccounts",
        &[("authorization", &bearer(&admin_token))],
        json!({"purpose": "zq81x sync", "durationDays": 3}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let service_token = created.str("token");
    secrets.token("service account token", &service_token);
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &bearer(&service_token))])
            .await
            .status,
        StatusCode::OK
    );
    let listed = server
        .get(
            "/api/serviceAccounts",
            &[("authorization", &bearer(&admin_token))],
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let revoked = server
        .send(
            Method::DELETE,
            &format!("/api/serviceAccounts/{}", created.str("id")),
            &[("authorization", &bearer(&admin_token))],
            Vec::new(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &bearer(&service_token))])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Workflow API: v2 logins, logoutID, the deprecated GET with the
    // password in the URL.
    assert_eq!(
        post_json(
            &server,
            "/api/v2/login",
            &[],
            json!({"username": EMAIL, "password": WRONG})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let workflow = post_json(
        &server,
        "/api/v2/login",
        &[],
        json!({"username": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(workflow.status, StatusCode::OK, "{}", workflow.text);
    let x_token = workflow.str("X-Auth-Token");
    secrets.token("X-Auth-Token", &x_token);
    assert_eq!(
        server
            .get("/api/me", &[("x-auth-token", &x_token)])
            .await
            .status,
        NO_SPACE
    );
    let second = post_json(
        &server,
        "/api/v2/login",
        &[],
        json!({"username": EMAIL, "password": PASSWORD, "logoutID": x_token}),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);
    let second_token = second.str("X-Auth-Token");
    secrets.token("second X-Auth-Token", &second_token);
    let v1 = server
        .get(
            &format!(
                "/api/v1/login?username={}&password={PASSWORD}&logoutID={second_token}",
                EMAIL.replace('@', "%40")
            ),
            &[],
        )
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    secrets.token(
        "v1 X-Auth-Token",
        v1.headers["x-auth-token"].to_str().unwrap(),
    );

    // Lockout: five wrong passwords (each another) lock an account; the
    // sixth attempt is refused; the administrator lists the locked.
    for i in 0..6 {
        let wrong = format!("{WRONG}-{i}");
        secrets.add("lockout password", &wrong);
        let reply = post_json(
            &server,
            "/api/v2/login",
            &[],
            json!({"username": LOCKED_USER, "password": wrong}),
        )
        .await;
        let expected = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::LOCKED
        };
        assert_eq!(reply.status, expected, "attempt {i}");
    }
    let locked = server
        .get(
            "/api/auth/lockedUsers",
            &[("authorization", &bearer(&admin_token))],
        )
        .await;
    assert_eq!(locked.status, StatusCode::OK, "{}", locked.text);
    server.stop().await;

    let output = capture.text();
    let mut metric_keys = String::new();
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        metric_keys.push_str(key.name());
        for label in key.labels() {
            metric_keys.push_str(&format!(" {}={}", label.key(), label.value()));
        }
        metric_keys.push('\n');
    }

    // The capture holds what the flows must have produced.
    let lines: Vec<&str> = output.lines().collect();
    let has = |parts: &[&str]| lines.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    for expected in [
        &["tower_authgate::login", "invalid_credentials", EMAIL][..],
        &["tower_authgate::login", "success", EMAIL],
        &["tower_authgate::login", "invalid_otp"],
        &["tower_authgate::decision", "token accepted"],
        &["tower_authgate::decision", "bad_signature"],
        &["tower_authgate::decision", "missing_token"],
        &["tower_authgate::decision", "renewed"],
        &["account locked"],
        &["refresh token reused"],
        &["service account created"],
        &["token revoked"],
    ] {
        assert!(has(expected), "no event with {expected:?} in:\n{output}");
    }
    for name in [
        "authgate_requests_total",
        "authgate_logins_total",
        "authgate_lockouts_total",
        "authgate_refresh_reuse_total",
        "authgate_token_cache_hits_total",
    ] {
        assert!(metric_keys.contains(name), "no {name} in:\n{metric_keys}");
    }

    // And none of the secrets.
    let mut leaks = Vec::new();
    for (name, value) in &secrets.0 {
        let digits = value.bytes().all(|b| b.is_ascii_digit());
        for (place, text) in [("events", &output), ("metrics", &metric_keys)] {
            let found = if digits {
                contains_code(text, value)
            } else {
                text.contains(value.as_str())
            };
            if found {
                let line = text
                    .lines()
                    .find(|l| l.contains(value.as_str()))
                    .unwrap_or("");
                leaks.push(format!("{name} in the {place}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the telemetry ({} lines, {} secrets checked):\n{}",
        lines.len(),
        secrets.0.len(),
        leaks.join("\n")
    );
}
