//! The `authgate` binary as a real process on loopback, alone as a reverse
//! proxy and as the forward-auth decision endpoint of a real nginx
//! (`auth_request`) and a real Caddy (`forward_auth`), each in front of an
//! upstream written here with hyper (echo, WebSocket echo, slow).
//!
//! Through each front: the five presets' logins, a guarded route (401
//! without a token, 200 with one, the identity reaching the upstream), a
//! forged identity header stripped, a space not granted refused, a denied
//! address refused, a WebSocket echo, an upstream slower than the timeout
//! (504) and an upstream killed (502, without hanging).
//!
//! Clients connect from 127.0.0.5 (allowed) or 127.0.0.9 (denied); the
//! fronts reach the gateway from 127.0.0.1, the only trusted proxy.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use fixtures::*;
// ---------------------------------------------------------------------------
// The scenario every front goes through.

async fn assert_admin_passes(front: &Front, credential: (&str, &str), preset: &str) {
    let reply = front.get("/app/echo?x=1", &[credential]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}: {preset}: {}",
        front.name,
        reply.text
    );
    assert_eq!(
        reply.upstream_header("x-auth-subject").as_deref(),
        Some("admin"),
        "{}: {preset}",
        front.name
    );
    assert_eq!(
        reply.upstream_header("x-auth-roles").as_deref(),
        Some("admin"),
        "{}: {preset}",
        front.name
    );
    assert_eq!(
        reply.upstream_header("x-auth-spaces").as_deref(),
        Some("default_space,production"),
        "{}: {preset}",
        front.name
    );
    assert_eq!(
        reply.upstream_header("x-space").as_deref(),
        Some("default_space"),
        "{}: {preset}",
        front.name
    );
    assert_eq!(
        reply.json()["uri"],
        "/app/echo?x=1",
        "{}: {preset}",
        front.name
    );
}

async fn scenario(front: &Front, upstream: &Upstream) {
    let name = front.name;
    let admin = json!({"username": "admin", "password": "admin"});

    // A guarded route without a token.
    let anonymous = front.get("/app/echo", &[]).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{name}: {}",
        anonymous.text
    );
    assert!(
        anonymous
            .headers
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
        "{name}: {:?}",
        anonymous.headers
    );
    // A forged identity alone: the guard refuses it (401), or the decision
    // endpoint refuses the copy Caddy passes it (400).
    let forged_alone = front.get("/app/echo", &[("x-auth-subject", "admin")]).await;
    assert!(
        forged_alone.status == StatusCode::UNAUTHORIZED
            || refused_by_decision(front, &forged_alone),
        "{name}: {}",
        forged_alone.status
    );

    // 000: cookie session, and the operator's TOTP step.
    let login = front
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=admin&password=admin",
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{name}: {}", login.text);
    let cookie = format!(
        "ins_access_token={}",
        login.cookie("ins_access_token").expect("access cookie")
    );
    assert_admin_passes(front, ("cookie", &cookie), "cookie_session").await;
    let pending = front
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=operator&password=operator",
        )
        .await;
    assert_eq!(
        pending.json()["otp-required"],
        true,
        "{name}: {}",
        pending.text
    );
    let otp_cookie = format!("ins_otp_token={}", pending.cookie("ins_otp_token").unwrap());
    let otp = front
        .send(
            Method::POST,
            "/login/otp",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &otp_cookie),
            ],
            &format!("otp={}", totp_now()),
        )
        .await;
    assert_eq!(otp.status, StatusCode::OK, "{name}: {}", otp.text);
    let operator_cookie = format!(
        "ins_access_token={}",
        otp.cookie("ins_access_token").unwrap()
    );
    let operator = front
        .get("/app/echo", &[("cookie", &operator_cookie)])
        .await;
    assert_eq!(
        operator.upstream_header("x-auth-subject").as_deref(),
        Some("operator"),
        "{name}"
    );

    // 001: bearer pair and its refresh.
    let pair = front.post_json("/api/login", admin.clone()).await;
    assert_eq!(pair.status, StatusCode::OK, "{name}: {}", pair.text);
    let access = pair.json()["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");
    assert_admin_passes(front, ("authorization", &bearer), "bearer_pair").await;
    let refresh = format!("Bearer {}", pair.json()["refresh_token"].as_str().unwrap());
    let refreshed = front
        .get("/api/login/refresh", &[("authorization", &refresh)])
        .await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "{name}: {}",
        refreshed.text
    );
    // A refresh token never passes as an access token.
    let wrong_kind = front.get("/app/echo", &[("authorization", &refresh)]).await;
    assert_eq!(wrong_kind.status, StatusCode::UNAUTHORIZED, "{name}");

    // 002: PascalCase sign-in.
    let signin = front
        .post_json(
            "/authenticate/signin",
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": true}),
        )
        .await;
    assert_eq!(signin.status, StatusCode::OK, "{name}: {}", signin.text);
    let nx = format!("Bearer {}", signin.json()["AccessToken"].as_str().unwrap());
    assert_admin_passes(front, ("authorization", &nx), "pascal_case").await;

    // 003: auth_token.
    let regscale = front
        .post_json(
            "/api/authentication/login",
            json!({"username": "admin", "password": "admin", "oldPassword": ""}),
        )
        .await;
    assert_eq!(regscale.status, StatusCode::OK, "{name}: {}", regscale.text);
    let auth_token = format!("Bearer {}", regscale.json()["auth_token"].as_str().unwrap());
    assert_admin_passes(front, ("authorization", &auth_token), "auth_token").await;

    // 004: X-Auth-Token.
    let workflow = front.post_json("/api/v2/login", admin.clone()).await;
    assert_eq!(workflow.status, StatusCode::OK, "{name}: {}", workflow.text);
    let x_auth_token = workflow.headers["x-auth-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_admin_passes(front, ("x-auth-token", &x_auth_token), "x_auth_token").await;

    // Forged identity headers never reach the upstream.
    let forged = front
        .get(
            "/app/echo",
            &[
                ("authorization", &bearer),
                ("x-auth-subject", "root"),
                ("x-auth-subject", "root-again"),
                ("x-auth-roles", "admin,superuser"),
                ("x-auth-spaces", "everything"),
                ("x-auth-spaces", "everything-else"),
            ],
        )
        .await;
    if !refused_by_decision(front, &forged) {
        assert_eq!(forged.status, StatusCode::OK, "{name}");
        assert_eq!(
            forged.upstream_header("x-auth-subject").as_deref(),
            Some("admin"),
            "{name}"
        );
        assert_eq!(
            forged.upstream_header("x-auth-roles").as_deref(),
            Some("admin"),
            "{name}"
        );
        assert_eq!(
            forged.upstream_header("x-auth-spaces").as_deref(),
            Some("default_space,production"),
            "{name}"
        );
    }

    // Spaces: one granted, one not.
    let production = front
        .get(
            "/app/echo",
            &[("authorization", &bearer), ("x-space", "production")],
        )
        .await;
    assert_eq!(
        production.status,
        StatusCode::OK,
        "{name}: {}",
        production.text
    );
    assert_eq!(
        production.upstream_header("x-space").as_deref(),
        Some("production"),
        "{name}"
    );
    let not_granted = front
        .get(
            "/app/echo",
            &[("cookie", &operator_cookie), ("x-space", "production")],
        )
        .await;
    assert_eq!(
        not_granted.status,
        StatusCode::FORBIDDEN,
        "{name}: {}",
        not_granted.text
    );

    // A denied address, with a valid token.
    let denied = front
        .send_with(
            &front.denied,
            Method::GET,
            "/app/echo",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(
        denied.status,
        StatusCode::FORBIDDEN,
        "{name}: {}",
        denied.text
    );

    // A body streams through, both ways.
    let posted = front
        .send(
            Method::POST,
            "/app/upload",
            &[("authorization", &bearer)],
            &"x".repeat(100_000),
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{name}");
    assert_eq!(
        posted.json()["body"].as_str().unwrap().len(),
        100_000,
        "{name}"
    );

    // A WebSocket echo, with the token; refused without.
    websocket_echo_through(front, Some(&bearer)).await;
    websocket_refused_without_token(front).await;

    // An upstream slower than the timeout.
    let started = Instant::now();
    let slow = front.get("/slow", &[("authorization", &bearer)]).await;
    assert_eq!(
        slow.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{name}: {}",
        slow.text
    );
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{name}: {:?}",
        started.elapsed()
    );

    // The upstream killed: 502, at once.
    upstream.kill().await;
    let started = Instant::now();
    let down = front.get("/app/echo", &[("authorization", &bearer)]).await;
    assert_eq!(
        down.status,
        StatusCode::BAD_GATEWAY,
        "{name}: {}",
        down.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{name}: {:?}",
        started.elapsed()
    );
}

/// Whether the decision endpoint refused `reply`'s request for a forged
/// identity copy (`400`): Caddy passes a client's copies to it, where nginx
/// (as configured) sends none and the gateway's own proxy removes them.
fn refused_by_decision(front: &Front, reply: &Reply) -> bool {
    front.name == "caddy forward_auth" && reply.status == StatusCode::BAD_REQUEST
}

async fn websocket_echo_through(front: &Front, bearer: Option<&str>) {
    let mut request = format!("ws://127.0.0.1:{}/ws", front.port)
        .into_client_request()
        .unwrap();
    if let Some(bearer) = bearer {
        request
            .headers_mut()
            .insert("authorization", bearer.parse().unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ALLOWED_CLIENT.parse().unwrap(), 0))
        .unwrap();
    let stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], front.port)))
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|err| panic!("{}: websocket handshake: {err}", front.name));
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through the gateway"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no websocket echo", front.name))
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text, "{}", front.name);
    }
    ws.close(None).await.unwrap();
}

async fn websocket_refused_without_token(front: &Front) {
    let request = format!("ws://127.0.0.1:{}/ws", front.port)
        .into_client_request()
        .unwrap();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", front.port))
        .await
        .unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{}",
                front.name
            )
        }
        other => panic!(
            "{}: a websocket without a token got {:?}",
            front.name,
            other.map(|(_, r)| r.status())
        ),
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_proxy() {
    let upstream = Upstream::start().await;
    let metrics_port = free_port();
    let gateway = Gateway::start(&gateway_config(
        upstream.port,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    ));
    let front = Front::new("authgate proxy", gateway.addr.port());

    let health = front.get("/healthz", &[]).await;
    assert_eq!(
        (health.status, health.text.as_str()),
        (StatusCode::OK, "ok")
    );
    // Public paths need no token, and still lose forged identity headers.
    let public = front
        .get("/public/a.css", &[("x-auth-subject", "admin")])
        .await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.upstream_header("x-auth-subject").as_deref(), None);
    // A dot segment has more than one reading: refused on every route.
    let traversal = front.get("/public/../app/echo", &[]).await;
    assert_eq!(traversal.status, StatusCode::BAD_REQUEST);
    // The decision endpoint answers trusted proxies only.
    let direct = front
        .get(
            "/_authgate/verify",
            &[
                ("x-forwarded-uri", "/public/"),
                ("x-forwarded-method", "GET"),
            ],
        )
        .await;
    assert_eq!(direct.status, StatusCode::FORBIDDEN, "{}", direct.text);

    scenario(&front, &upstream).await;

    // The crate's events, in the Prometheus text format, on their own port.
    let metrics = Front::new("metrics", metrics_port)
        .get("/metrics", &[])
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "authgate_logins_total{preset=\"cookie_session\",result=\"success\"}",
        "authgate_locked_accounts 0",
    ] {
        assert!(
            metrics.text.contains(line),
            "no {line} in\n{}",
            metrics.text
        );
    }
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let (_nginx, port) = start_nginx(gateway.addr, upstream.port).await;
    scenario(&Front::new("nginx auth_request", port), &upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let (_caddy, port) = start_caddy(gateway.addr, upstream.port).await;
    scenario(&Front::new("caddy forward_auth", port), &upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_endpoint_fails_closed() {
    // The test's client stands in for the trusted proxy (127.0.0.1).
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let proxy = Front {
        allowed: client_from("127.0.0.1"),
        ..Front::new("decision", gateway.addr.port())
    };
    let verify =
        |headers: &'static [(&'static str, &'static str)]| proxy.get("/_authgate/verify", headers);
    // Undescribed, described twice, or with a repeated header: no decision.
    assert_eq!(verify(&[]).await.status, StatusCode::BAD_REQUEST);
    let twice = verify(&[
        ("x-original-uri", "/app"),
        ("x-original-method", "GET"),
        ("x-forwarded-uri", "/public/"),
        ("x-forwarded-method", "GET"),
    ])
    .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.text);
    let repeated = verify(&[
        ("x-forwarded-uri", "/public/"),
        ("x-forwarded-uri", "/app"),
        ("x-forwarded-method", "GET"),
    ])
    .await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
    // Described: a public path passes with empty identity headers, a
    // guarded one needs a token, a denied client address is refused.
    let public = verify(&[
        ("x-forwarded-uri", "/public/x"),
        ("x-forwarded-method", "GET"),
    ])
    .await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.headers["x-auth-subject"], "");
    let guarded = verify(&[("x-forwarded-uri", "/app"), ("x-forwarded-method", "GET")]).await;
    assert_eq!(guarded.status, StatusCode::UNAUTHORIZED);
    let denied = verify(&[
        ("x-forwarded-uri", "/public/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-for", DENIED_CLIENT),
    ])
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // A cookie-authenticated POST from another site is refused (CSRF), the
    // same request from the site itself allowed.
    let login = proxy
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=admin&password=admin",
        )
        .await;
    let cookie = format!(
        "ins_access_token={}",
        login.cookie("ins_access_token").unwrap()
    );
    let post = |origin: &'static str| {
        let cookie = cookie.clone();
        let proxy = &proxy;
        async move {
            proxy
                .get(
                    "/_authgate/verify",
                    &[
                        ("x-forwarded-uri", "/app/settings"),
                        ("x-forwarded-method", "POST"),
                        ("x-forwarded-host", "app.example"),
                        ("origin", origin),
                        ("cookie", &cookie),
                    ],
                )
                .await
        }
    };
    assert_eq!(
        post("https://evil.example").await.status,
        StatusCode::FORBIDDEN
    );
    let same_site = post("http://app.example").await;
    assert_eq!(same_site.status, StatusCode::OK, "{}", same_site.text);
    assert_eq!(same_site.headers["x-auth-subject"], "admin");
    assert_eq!(same_site.headers["x-space"], "default_space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_address_rules_and_sigterm_stops() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let front = Front::new("reload", gateway.addr.port());
    let public = || front.get("/public/x", &[]);
    assert_eq!(public().await.status, StatusCode::OK);

    // Deny the allowed client too; the open keep-alive connection stays.
    let text = std::fs::read_to_string(&gateway.config).unwrap().replace(
        &format!("ip_deny = [\"{DENIED_CLIENT}\"]"),
        &format!("ip_deny = [\"{ALLOWED_CLIENT}\"]"),
    );
    std::fs::write(&gateway.config, text).unwrap();
    gateway.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while public().await.status != StatusCode::FORBIDDEN {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the rules");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken file is refused and the running rules stay.
    std::fs::write(&gateway.config, "[guard]\nip_deny = [\"300.0.0.0/8\"]\n").unwrap();
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(public().await.status, StatusCode::FORBIDDEN);
    let health = front
        .send_with(&front.denied, Method::GET, "/healthz", &[], "")
        .await;
    assert_eq!(health.status, StatusCode::OK);

    let mut gateway = gateway;
    gateway.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = gateway.process.child.try_wait().unwrap() {
            assert!(status.success(), "authgate exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop authgate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn check_names_the_key_and_line() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
    let ok = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = temp_dir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[keys]\nsigning_key = \"ephemeral\"\n\n[guard]\nissuers = [\"a\"]\nip_allow = [\"10.0.0.0/40\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:6: guard.ip_allow[0]:"),
        "{stderr}"
    );

    // A user added from the command line logs in.
    let users = dir.join("users.toml");
    let mut add = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["user", "add"])
        .arg(&users)
        .args(["alice", "--spaces", "default_space", "--roles", "viewer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"correct horse\n").unwrap();
    assert!(add.wait().unwrap().success());
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.contains("username = \"alice\"") && text.contains("$argon2id$"),
        "{text}"
    );
    drop(dir);
}
