//! The metrics the crate records, counted exactly: known sequences of
//! requests through the demo (every layer and all five login APIs, served
//! on loopback) and the exact change of every metric they cause, labels
//! included; and every label value of every metric recorded from a small,
//! fixed set (never a username, a token, an address or an email).
//!
//! The layers look their counters up once, from the recorder installed
//! then: a `DebuggingRecorder` is installed globally before any request,
//! and one test runs the scenarios one after the other, each reading the
//! change since the last (a snapshot swaps every counter and gauge to 0).
#![cfg(all(feature = "presets", feature = "metrics"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use common::demo::{Server, app, claims_of, config, multipart, operator_code, start_config};
use http::{Method, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use tower_authgate::clock::now_seconds;
use tower_authgate::ip::IpRules;
use tower_authgate::lockout::{Lockout, LockoutPolicy};

/// A metric's name and its labels, sorted.
type MetricKey = (String, Vec<(String, String)>);

/// The global recorder's snapshotter, and every metric key seen so far.
struct Recorded {
    snapshotter: Snapshotter,
    keys: Mutex<BTreeSet<MetricKey>>,
}

fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        Recorded {
            snapshotter,
            keys: Mutex::new(BTreeSet::new()),
        }
    })
}

/// What changed since the last call: every counter and gauge that moved,
/// as `name{label=value,...}` (labels sorted) and its change.
fn delta() -> BTreeMap<String, f64> {
    let recorded = recorded();
    let mut changed = BTreeMap::new();
    let mut keys = recorded.keys.lock().unwrap();
    for (key, _, _, value) in recorded.snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        keys.insert((key.name().to_owned(), labels.clone()));
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(values) => values.len() as f64,
        };
        if value != 0.0 {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            changed.insert(format!("{}{{{}}}", key.name(), labels.join(",")), value);
        }
    }
    changed
}

fn expected(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

const ADDRESS_OK: &str = "authgate_requests_total{layer=address,outcome=allowed,reason=ok}";
const AUTH_VERIFIED: &str = "authgate_requests_total{layer=auth,outcome=allowed,reason=verified}";
const CSRF_OK: &str = "authgate_requests_total{layer=csrf,outcome=allowed,reason=ok}";
const SPACE_OK: &str = "authgate_requests_total{layer=space,outcome=allowed,reason=ok}";
const CACHE_HITS: &str = "authgate_token_cache_hits_total{}";
const CACHE_MISSES: &str = "authgate_token_cache_misses_total{}";
const CACHE_ENTRIES: &str = "authgate_token_cache_entries{}";

fn logins(preset: &str, result: &str) -> String {
    format!("authgate_logins_total{{preset={preset},result={result}}}")
}

/// The usernames, emails and addresses the scenarios send: none may be a
/// label value.
const SENT_NAMES: &[&str] = &[
    "admin",
    "operator",
    "retired",
    "nobody-cookie",
    "nobody-core",
    "nobody-nx",
    "nobody-regscale",
    "nobody-workflow",
    "ghost-locked",
    "throttled-user",
    "admin@example.com",
    "127.0.0.1",
    "203.0.113.9",
    "198.51.100.7",
    "198.51.100.1",
];

async fn core_login(server: &Server, user: &str, password: &str, from: Option<&str>) -> StatusCode {
    let headers: Vec<(&str, &str)> = from.map(|ip| ("x-forwarded-for", ip)).into_iter().collect();
    server
        .json(
            Method::POST,
            "/api/login",
            &headers,
            json!({"username": user, "password": password}),
        )
        .await
        .status
}

#[tokio::test]
async fn metrics_count_every_decision_exactly_with_bounded_labels() {
    recorded();
    let lockout = Lockout::new(LockoutPolicy::default());
    let server = start_config(app::DemoConfig {
        ip_rules: IpRules::parse("", "203.0.113.0/24").unwrap(),
        lockout: lockout.clone(),
        // A used refresh token is reuse at once (no grace).
        refresh_reuse_grace: std::time::Duration::ZERO,
        ..config()
    })
    .await;
    let mut tokens = Vec::new();
    assert_eq!(delta(), expected(&[]), "nothing before the first request");

    // A successful login through the address filter.
    let login = server
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let access = login.str("access_token");
    tokens.push(access.clone());
    tokens.push(login.str("refresh_token"));
    assert_eq!(
        delta(),
        expected(&[(ADDRESS_OK, 1.0), (&logins("bearer_pair", "success"), 1.0)]),
        "one login"
    );

    // Three requests with the token: each passes the four layers; the
    // first is verified in full, the other two answered by the cache.
    let bearer = format!("Bearer {access}");
    for _ in 0..3 {
        let me = server.get("/api/me", &[("authorization", &bearer)]).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    }
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 3.0),
            (AUTH_VERIFIED, 3.0),
            (CSRF_OK, 3.0),
            (SPACE_OK, 3.0),
            (CACHE_MISSES, 1.0),
            (CACHE_HITS, 2.0),
            (CACHE_ENTRIES, 1.0),
        ]),
        "three accepted requests"
    );

    // No token.
    let none = server.get("/api/me", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (
                "authgate_requests_total{layer=auth,outcome=refused,reason=missing_token}",
                1.0
            ),
        ]),
        "no token"
    );

    // The token with another signature: verified in full, refused, not
    // kept.
    let (signed, _) = access.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", common::b64(&[0x5a; 64]));
    tokens.push(forged.clone());
    let bad = server
        .get("/api/me", &[("authorization", &format!("Bearer {forged}"))])
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (
                "authgate_requests_total{layer=auth,outcome=refused,reason=bad_signature}",
                1.0
            ),
            (CACHE_MISSES, 1.0),
        ]),
        "bad signature"
    );

    // A space the token does not grant.
    let foreign = server
        .get(
            "/api/me",
            &[("authorization", &bearer), ("x-space", "other")],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (AUTH_VERIFIED, 1.0),
            (CSRF_OK, 1.0),
            (CACHE_HITS, 1.0),
            (
                "authgate_requests_total{layer=space,outcome=refused,reason=not_granted}",
                1.0
            ),
        ]),
        "forbidden space"
    );

    // A denied address (the demo believes 127.0.0.1's X-Forwarded-For), on
    // the API and on a login route; an allowed one passes.
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
    assert_eq!(
        core_login(&server, "admin", "admin", Some("203.0.113.9")).await,
        StatusCode::FORBIDDEN
    );
    let allowed = server
        .get(
            "/api/me",
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        delta(),
        expected(&[
            (
                "authgate_requests_total{layer=address,outcome=refused,reason=not_allowed}",
                2.0
            ),
            (ADDRESS_OK, 1.0),
            (AUTH_VERIFIED, 1.0),
            (CSRF_OK, 1.0),
            (SPACE_OK, 1.0),
            (CACHE_HITS, 1.0),
        ]),
        "denied address"
    );

    // One success and one failure through each of the five presets (each
    // failure for another unknown account, so that none locks).
    let (ct, body) = multipart(&[("username", "admin"), ("password", "admin")]);
    let cookie_login = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(cookie_login.status, StatusCode::OK);
    let access_cookie = cookie_login.cookie_value("ins_access_token").unwrap();
    let refresh_cookie = cookie_login.cookie_value("ins_refresh_token").unwrap();
    tokens.extend([access_cookie.clone(), refresh_cookie.clone()]);
    let (ct, body) = multipart(&[("username", "nobody-cookie"), ("password", "wrong")]);
    let failed = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        core_login(&server, "admin", "admin", None).await,
        StatusCode::OK
    );
    assert_eq!(
        core_login(&server, "nobody-core", "wrong", None).await,
        StatusCode::UNAUTHORIZED
    );

    let signin = |user: &'static str, password: &'static str| {
        let server = &server;
        async move {
            server
                .json(
                    Method::POST,
                    "/authenticate/signin",
                    &[],
                    json!({"Username": user, "Password": password, "KeepLoggedIn": false}),
                )
                .await
        }
    };
    let nx = signin("admin", "admin").await;
    assert_eq!(nx.status, StatusCode::OK, "{}", nx.text);
    let nx_refresh = nx.str("RefreshToken");
    tokens.extend([nx.str("AccessToken"), nx_refresh.clone()]);
    assert_eq!(
        signin("nobody-nx", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );

    for (user, status) in [
        ("admin", StatusCode::OK),
        ("nobody-regscale", StatusCode::UNAUTHORIZED),
    ] {
        let reply = server
            .json(
                Method::POST,
                "/api/authentication/login",
                &[],
                json!({"username": user, "password": if user == "admin" { "admin" } else { "wrong" }}),
            )
            .await;
        assert_eq!(reply.status, status, "{}", reply.text);
        if status == StatusCode::OK {
            tokens.push(reply.str("auth_token"));
        }
    }
    for (user, status) in [
        ("admin", StatusCode::OK),
        ("nobody-workflow", StatusCode::UNAUTHORIZED),
    ] {
        let reply = server
            .json(
                Method::POST,
                "/api/v2/login",
                &[],
                json!({"username": user, "password": if user == "admin" { "admin" } else { "wrong" }}),
            )
            .await;
        assert_eq!(reply.status, status, "{}", reply.text);
        if status == StatusCode::OK {
            tokens.push(reply.str("X-Auth-Token"));
        }
    }
    let mut five = vec![(ADDRESS_OK, 10.0)];
    let names: Vec<(String, f64)> = [
        "cookie_session",
        "bearer_pair",
        "pascal_case",
        "auth_token",
        "x_auth_token",
    ]
    .iter()
    .flat_map(|preset| {
        [
            (logins(preset, "success"), 1.0),
            (logins(preset, "invalid_credentials"), 1.0),
        ]
    })
    .collect();
    five.extend(names.iter().map(|(k, v)| (k.as_str(), *v)));
    assert_eq!(delta(), expected(&five), "the five presets");

    // The TOTP user: the password step asks for the code, a wrong code is
    // refused, the right one logs in; the Core API wants both at once.
    let (ct, body) = multipart(&[("username", "operator"), ("password", "operator")]);
    let step1 = server
        .send(Method::POST, "/login", &[("content-type", &ct)], body)
        .await;
    assert_eq!(step1.body["otp-required"], true);
    let pending = format!(
        "ins_otp_token={}",
        step1.cookie_value("ins_otp_token").unwrap()
    );
    for (code, status) in [
        ("000000".to_owned(), StatusCode::UNAUTHORIZED),
        (operator_code(0), StatusCode::OK),
    ] {
        let (ct, body) = multipart(&[("otp", &code)]);
        let step2 = server
            .send(
                Method::POST,
                "/login/otp",
                &[("content-type", &ct), ("cookie", &pending)],
                body,
            )
            .await;
        assert_eq!(step2.status, status, "{}", step2.text);
    }
    assert_eq!(
        core_login(&server, "operator", "operator", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 4.0),
            (&logins("cookie_session", "totp_required"), 1.0),
            (&logins("cookie_session", "invalid_otp"), 1.0),
            (&logins("cookie_session", "success"), 1.0),
            (&logins("bearer_pair", "totp_required"), 1.0),
        ]),
        "TOTP"
    );

    // An expired access cookie renewed from the refresh cookie.
    let mut expired = claims_of(&access_cookie);
    expired["exp"] = json!(now_seconds() - 10);
    let expired = server.key.sign(&expired).unwrap();
    tokens.push(expired.clone());
    let both = format!("ins_access_token={expired}; ins_refresh_token={refresh_cookie}");
    let renewed = server.get("/api/me", &[("cookie", &both)]).await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    tokens.push(renewed.cookie_value("ins_access_token").unwrap());
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (
                "authgate_requests_total{layer=auth,outcome=allowed,reason=renewed}",
                1.0
            ),
            (
                "authgate_refreshes_total{preset=cookie_session,result=renewed}",
                1.0
            ),
            (CSRF_OK, 1.0),
            (SPACE_OK, 1.0),
            // The expired token, then the renewed one (which passes the
            // layer's own verifier, and is kept).
            (CACHE_MISSES, 2.0),
            (CACHE_ENTRIES, 1.0),
        ]),
        "cookie renewal"
    );

    // Refresh: rotated once, then the used token again (no grace): reuse,
    // the whole session ended.
    let refresh = |token: String| {
        let server = &server;
        async move {
            server
                .json(
                    Method::POST,
                    "/authenticate/refresh",
                    &[("authorization", &format!("Bearer {token}"))],
                    json!({"GrantType": "refresh_token"}),
                )
                .await
        }
    };
    let rotated = refresh(nx_refresh.clone()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    tokens.extend([rotated.str("AccessToken"), rotated.str("RefreshToken")]);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (
                "authgate_refreshes_total{preset=pascal_case,result=rotated}",
                1.0
            ),
        ]),
        "refresh"
    );
    let reused = refresh(nx_refresh).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (
                "authgate_refreshes_total{preset=pascal_case,result=refresh_reused}",
                1.0
            ),
            ("authgate_refresh_reuse_total{preset=pascal_case}", 1.0),
        ]),
        "refresh reuse"
    );

    // Five failures lock the account once; the sixth attempt is refused
    // as locked; listing the locked accounts sets the gauge.
    for _ in 0..5 {
        let reply = server
            .json(
                Method::POST,
                "/api/v2/login",
                &[],
                json!({"username": "ghost-locked", "password": "wrong"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let locked = server
        .json(
            Method::POST,
            "/api/v2/login",
            &[],
            json!({"username": "ghost-locked", "password": "wrong"}),
        )
        .await;
    assert_eq!(locked.status, StatusCode::LOCKED);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 6.0),
            (&logins("x_auth_token", "invalid_credentials"), 5.0),
            (&logins("x_auth_token", "locked"), 1.0),
            ("authgate_lockouts_total{}", 1.0),
        ]),
        "lockout"
    );
    let listed = lockout.locked().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        delta(),
        expected(&[("authgate_locked_accounts{}", 1.0)]),
        "locked accounts"
    );
    // The administrators' listing sets it as well (through the API stack).
    let list = server
        .get("/api/auth/lockedUsers", &[("authorization", &bearer)])
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 1.0),
            (AUTH_VERIFIED, 1.0),
            (CSRF_OK, 1.0),
            (SPACE_OK, 1.0),
            (CACHE_HITS, 1.0),
            ("authgate_locked_accounts{}", 1.0),
        ]),
        "locked accounts listed by an administrator"
    );
    server.stop().await;
    // The stopped demo's token cache (the admin's token and the renewed
    // cookie) leaves the gauge with it, once its last connection is gone.
    let mut dropped = BTreeMap::new();
    for _ in 0..100 {
        for (key, value) in delta() {
            *dropped.entry(key).or_insert(0.0) += value;
        }
        if !dropped.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        dropped,
        expected(&[(CACHE_ENTRIES, -2.0)]),
        "the demo stopped"
    );

    // The login throttle: two attempts a minute from one address.
    let throttled = start_config(app::DemoConfig {
        login_throttle_per_minute: 2,
        ..config()
    })
    .await;
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(
            core_login(&throttled, "throttled-user", "wrong", Some("198.51.100.1")).await,
            status
        );
    }
    assert_eq!(
        delta(),
        expected(&[
            (ADDRESS_OK, 3.0),
            (
                "authgate_requests_total{layer=throttle,outcome=allowed,reason=ok}",
                2.0
            ),
            (
                "authgate_requests_total{layer=throttle,outcome=refused,reason=too_many_attempts}",
                1.0
            ),
            ("authgate_throttled_total{}", 1.0),
            (&logins("bearer_pair", "invalid_credentials"), 2.0),
        ]),
        "throttle"
    );
    throttled.stop().await;

    check_labels(&tokens);
}

/// Every metric is one of the crate's, and every label value one of a
/// small fixed set: never a username, an email, an address or a token.
fn check_labels(tokens: &[String]) {
    let keys = recorded().keys.lock().unwrap().clone();
    assert!(keys.len() >= 20, "the scenarios recorded {keys:?}");
    let layers = ["auth", "space", "address", "csrf", "throttle"];
    let outcomes = ["allowed", "refused"];
    let reasons = [
        // Allowed.
        "verified",
        "anonymous",
        "renewed",
        "ok",
        // The token layer's and the tokens'.
        "missing_token",
        "invalid_request",
        "insufficient_scope",
        "unavailable",
        "too_long",
        "malformed",
        "unsupported_critical",
        "unsupported_algorithm",
        "unknown_key",
        "bad_signature",
        "missing_claim",
        "invalid_claim",
        "duplicate_claim",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "wrong_kind",
        "revoked",
        "claims_mismatch",
        "keys_unavailable",
        // Spaces, addresses, CSRF, throttle.
        "repeated",
        "not_granted",
        "authentication_required",
        "missing_auth_layer",
        "claims_type_mismatch",
        "not_allowed",
        "unknown_peer",
        "cross_site",
        "too_many_attempts",
    ];
    let presets = [
        "cookie_session",
        "bearer_pair",
        "pascal_case",
        "auth_token",
        "x_auth_token",
        "login",
    ];
    let results = [
        "success",
        "failure",
        "totp_required",
        "otp_replayed",
        "rotated",
        "renewed",
        "invalid_credentials",
        "invalid_token",
        "refresh_reused",
        "invalid_otp",
        "otp_required",
        "locked",
        "forbidden",
        "account_inactive",
        "bad_request",
        "unavailable",
        "busy",
        "internal",
    ];
    for (name, labels) in &keys {
        assert!(
            tower_authgate::observe::METRIC_NAMES.contains(&name.as_str()),
            "{name} is not one of the crate's metrics"
        );
        for (label, value) in labels {
            let allowed: &[&str] = match label.as_str() {
                "layer" => &layers,
                "outcome" => &outcomes,
                "reason" => &reasons,
                "preset" => &presets,
                "result" => &results,
                other => panic!("{name} has an unexpected label {other}={value}"),
            };
            assert!(
                allowed.contains(&value.as_str()),
                "{name}{{{label}={value}}}: not a known value"
            );
            assert!(
                value.parse::<std::net::IpAddr>().is_err() && !value.contains('@'),
                "{name}{{{label}={value}}}"
            );
            assert!(value.len() <= 32, "{name}{{{label}={value}}}");
            for sent in SENT_NAMES
                .iter()
                .copied()
                .chain(tokens.iter().map(String::as_str))
            {
                assert_ne!(value, sent, "{name}{{{label}}} holds a sent value");
                assert!(
                    sent.len() < 8 || !value.contains(sent),
                    "{name}{{{label}={value}}} holds {sent}"
                );
            }
        }
    }
    // The scenarios saw refusals by every guard but CSRF, and every preset.
    let seen: BTreeSet<&str> = keys
        .iter()
        .flat_map(|(_, labels)| labels.iter().map(|(_, v)| v.as_str()))
        .collect();
    for value in presets
        .iter()
        .take(5)
        .chain(&["address", "auth", "space", "throttle"])
    {
        assert!(seen.contains(value), "no metric labelled {value}");
    }
}
