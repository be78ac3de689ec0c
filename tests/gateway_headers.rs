//! The `authgate` binary as a real process: attacks on the edge (headers).
//!
//! Each class is sent through every front that can see it (the gateway's
//! own proxy, nginx `auth_request`, Caddy `forward_auth`) and judged by
//! what the upstream echo received: an identity header under another
//! spelling, an identity in request trailers, a `Connection` header naming
//! what the gateway stated, forwarding fields from an untrusted client.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use fixtures::*;

/// The identity headers of the default configuration.
const IDENTITY: [&str; 4] = ["x-auth-subject", "x-auth-roles", "x-auth-spaces", "x-space"];

/// An upstream echo, the gateway in front of it, and nginx and Caddy in
/// front of the gateway: the three ways a client reaches the upstream.
struct Edge {
    _upstream: Upstream,
    gateway: Gateway,
    _nginx: Process,
    _caddy: Process,
    fronts: [Front; 3],
}

async fn edge() -> Edge {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let (nginx, nginx_port) = start_nginx(gateway.addr, upstream.port).await;
    let (caddy, caddy_port) = start_caddy(gateway.addr, upstream.port).await;
    let fronts = [
        Front::new("authgate proxy", gateway.addr.port()),
        Front::new("nginx auth_request", nginx_port),
        Front::new("caddy forward_auth", caddy_port),
    ];
    Edge {
        _upstream: upstream,
        gateway,
        _nginx: nginx,
        _caddy: caddy,
        fronts,
    }
}

/// What the upstream received, from the echo in a reply's body: `None`
/// when the request never reached it (a front or the gateway refused).
fn received(status: StatusCode, body: &str, front: &str) -> Option<Value> {
    let echo = echo_of(body);
    if echo.is_none() {
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{front}: {status} without reaching the upstream: {body}"
        );
    }
    echo
}

/// A field name as an upstream that reads `_` as `-` (CGI, WSGI, Rack)
/// sees it.
fn merged(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Asserts the upstream received no identity header under another
/// spelling, in its headers or its trailers, and the identity the gateway
/// stated (`None` on a public path: absent or empty).
fn assert_stated_identity_only(echo: &Value, subject: Option<&str>, context: &str) {
    for part in ["headers", "trailers"] {
        for (name, _) in echo[part].as_object().into_iter().flatten() {
            let identity = IDENTITY.contains(&merged(name).as_str());
            assert!(
                !identity || (part == "headers" && name == &merged(name)),
                "{context}: the upstream received {name} in its {part}: {echo}"
            );
        }
    }
    let header = |name: &str| echo["headers"][name].as_str().unwrap_or("");
    match subject {
        Some("operator") => {
            assert_eq!(header("x-auth-subject"), "operator", "{context}: {echo}");
            assert_eq!(header("x-auth-roles"), "operator", "{context}: {echo}");
            assert_eq!(
                header("x-auth-spaces"),
                "default_space",
                "{context}: {echo}"
            );
            assert_eq!(header("x-space"), "default_space", "{context}: {echo}");
        }
        Some(other) => assert_eq!(header("x-auth-subject"), other, "{context}: {echo}"),
        None => {
            for name in IDENTITY {
                assert_eq!(header(name), "", "{context}: {name}: {echo}");
            }
        }
    }
}

/// Sends `request` (without its `Host` line, which is added) as raw bytes
/// to `front` from the allowed client, and returns the status and body of
/// the answer.
async fn raw_request(front: &Front, request: &str) -> (StatusCode, String) {
    let (head, rest) = request.split_once("\r\n").unwrap();
    let raw = format!(
        "{head}\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{rest}",
        front.port
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], front.port));
    let answer = raw_exchange(addr, raw.as_bytes(), Duration::from_secs(5)).await;
    let status = StatusCode::from_u16(raw_status(&answer))
        .unwrap_or_else(|_| panic!("{}: no answer: {answer:?}", front.name));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_aliases_never_reach_the_upstream() {
    let edge = edge().await;
    let cookie = operator_cookie(&edge.gateway).await;
    let spellings = [
        ("X_Auth_Roles", "admin"),
        ("x_auth_subject", "admin"),
        ("X-AUTH_ROLES", "admin"),
        ("X_Auth-Spaces", "production"),
        ("X_Space", "production"),
        ("X-Auth-Roles", "admin"),
    ];
    for front in &edge.fronts {
        // The gateway's proxy removes every spelling, nginx drops names
        // with `_` and replaces its own copies: the request goes on.
        // Caddy passes both to the decision endpoint, which refuses.
        let expected = if front.name == "caddy forward_auth" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        for (name, value) in spellings {
            let context = format!("{}: {name}: {value}", front.name);
            let reply = front
                .get("/app/echo", &[("cookie", &cookie), (name, value)])
                .await;
            assert_eq!(reply.status, expected, "{context}: {}", reply.text);
            if let Some(echo) = received(reply.status, &reply.text, &context) {
                assert_stated_identity_only(&echo, Some("operator"), &context);
            }
            // Anonymous, on a public path.
            let reply = front.get("/public/x", &[(name, value)]).await;
            assert_eq!(reply.status, expected, "{context} (public): {}", reply.text);
            if let Some(echo) = received(reply.status, &reply.text, &context) {
                assert_stated_identity_only(&echo, None, &format!("{context} (public)"));
            }
        }
        // In raw bytes, the spelling as sent.
        for name in ["X_AUTH_ROLES", "X_Auth_Roles", "x-Auth_roles"] {
            let context = format!("{} (raw): {name}", front.name);
            let (status, body) = raw_request(
                front,
                &format!("GET /app/echo HTTP/1.1\r\nCookie: {cookie}\r\n{name}: admin\r\n\r\n"),
            )
            .await;
            assert_eq!(status, expected, "{context}: {body}");
            if let Some(echo) = received(status, &body, &context) {
                assert_stated_identity_only(&echo, Some("operator"), &context);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_endpoint_refuses_identity_copies_and_aliases() {
    // The test's client stands in for the trusted proxy (127.0.0.1).
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let proxy = Front {
        allowed: client_from("127.0.0.1"),
        ..Front::new("decision", gateway.addr.port())
    };
    let verify = |extra: (&'static str, &'static str)| {
        let proxy = &proxy;
        async move {
            proxy
                .get(
                    "/_authgate/verify",
                    &[
                        ("x-forwarded-uri", "/public/x"),
                        ("x-forwarded-method", "GET"),
                        extra,
                    ],
                )
                .await
        }
    };
    assert_eq!(verify(("accept", "*/*")).await.status, StatusCode::OK);
    // The space the client asks for is its own input.
    assert_eq!(
        verify(("x-space", "default_space")).await.status,
        StatusCode::OK
    );
    for forged in [
        ("x-auth-subject", "admin"),
        ("x-auth-roles", "admin"),
        ("x-auth-spaces", "production"),
        ("x_auth_roles", "admin"),
        ("x-auth_subject", "admin"),
        ("x_space", "production"),
        ("connection", "x-auth-roles"),
        ("connection", "keep-alive, X_Auth_Subject"),
        ("connection", "Host"),
        ("trailer", "X_Auth_Roles"),
    ] {
        let reply = verify(forged).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{forged:?}");
        assert_eq!(reply.json()["error"], "invalid_request", "{forged:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_never_carry_an_identity() {
    let edge = edge().await;
    let cookie = operator_cookie(&edge.gateway).await;
    for front in &edge.fronts {
        for (path, credential, subject) in [
            (
                "/app/echo",
                format!("Cookie: {cookie}\r\n"),
                Some("operator"),
            ),
            ("/public/x", String::new(), None),
        ] {
            for trailer in ["X-Auth-Roles", "X_Auth_Roles", "x-auth-subject"] {
                let context = format!("{}: {path}: trailer {trailer}", front.name);
                let (status, body) = raw_request(
                    front,
                    &format!(
                        "POST {path} HTTP/1.1\r\n{credential}Transfer-Encoding: chunked\r\n\
                         TE: trailers\r\nTrailer: {trailer}\r\n\r\n\
                         5\r\nhello\r\n0\r\n{trailer}: admin\r\n\r\n"
                    ),
                )
                .await;
                if let Some(echo) = received(status, &body, &context) {
                    assert_eq!(echo["trailers"], serde_json::json!({}), "{context}");
                    // nginx passes the field on (and no trailer); the
                    // gateway's proxy removes it.
                    if front.port == edge.gateway.addr.port() {
                        assert!(echo["headers"].get("trailer").is_none(), "{context}");
                    }
                    assert_eq!(echo["body"], "hello", "{context}");
                    assert_stated_identity_only(&echo, subject, &context);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_remove_the_stated_identity_or_host() {
    let edge = edge().await;
    let cookie = operator_cookie(&edge.gateway).await;
    for front in &edge.fronts {
        for named in [
            "X-Auth-Roles",
            "x-auth-subject, X-Auth-Spaces, X-Space",
            "Host",
            "keep-alive, host, x_auth_roles",
        ] {
            let context = format!("{}: Connection: {named}", front.name);
            let (status, body) = raw_request(
                front,
                &format!(
                    "GET /app/echo HTTP/1.1\r\nCookie: {cookie}\r\nConnection: {named}\r\n\r\n"
                ),
            )
            .await;
            if let Some(echo) = received(status, &body, &context) {
                assert_stated_identity_only(&echo, Some("operator"), &context);
                let host = echo["headers"]["host"].as_str().unwrap_or("");
                assert!(!host.is_empty(), "{context}: no Host: {echo}");
                if front.port == edge.gateway.addr.port() {
                    assert_eq!(host, format!("127.0.0.1:{}", front.port), "{context}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_fields_from_an_untrusted_client_are_removed() {
    let edge = edge().await;
    let front = &edge.fronts[0];
    let bearer = bearer_token(front, "admin").await;
    // nginx and Caddy, as docs/gateway.md configures them, set the client's
    // address rather than append to what it sent.
    for front in &edge.fronts[1..] {
        let reply = front
            .get(
                "/app/echo",
                &[
                    ("authorization", &bearer),
                    ("x-forwarded-for", "203.0.113.66"),
                ],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            front.name,
            reply.text
        );
        assert_eq!(
            reply.upstream_header("x-forwarded-for").as_deref(),
            Some(ALLOWED_CLIENT),
            "{}",
            front.name
        );
    }
    let forged = [
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-Prefix",
        "X-Forwarded-Port",
        "X-Forwarded-Scheme",
        "X-Forwarded-Ssl",
        "X-Forwarded-Server",
        "X-Forwarded",
        "Forwarded",
        "X-Real-IP",
        "True-Client-IP",
        "X-Client-IP",
        "X-Cluster-Client-IP",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Original-Host",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ];
    for path in ["/app/echo", "/public/x"] {
        let mut raw = format!("GET {path} HTTP/1.1\r\nAuthorization: {bearer}\r\n");
        for name in forged {
            // Each name as sent, upper-cased, and with `_` for `-`.
            for spelling in [
                name.to_owned(),
                name.to_ascii_uppercase(),
                name.replace('-', "_"),
            ] {
                raw.push_str(&format!("{spelling}: 203.0.113.66\r\n"));
            }
        }
        raw.push_str("\r\n");
        let (status, body) = raw_request(front, &raw).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        let headers = echo["headers"].as_object().unwrap();
        for (name, value) in headers {
            let normalised = merged(name);
            assert!(
                !forged
                    .iter()
                    .any(|forged| forged.eq_ignore_ascii_case(&normalised))
                    || ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
                        .contains(&name.as_str()),
                "{path}: the upstream received {name}: {value}"
            );
            assert!(
                !value.as_str().unwrap_or("").contains("203.0.113.66"),
                "{path}: the upstream received {name}: {value}"
            );
        }
        // What the gateway states instead.
        assert_eq!(headers["x-forwarded-for"], ALLOWED_CLIENT, "{path}");
        assert_eq!(
            headers["x-forwarded-host"],
            format!("127.0.0.1:{}", front.port),
            "{path}"
        );
        assert_eq!(headers["x-forwarded-proto"], "http", "{path}");
    }
}
