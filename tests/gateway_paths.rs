//! The `authgate` binary as a real process: attacks on the edge (paths,
//! targets, `Host`, `CONNECT`, malformed bodies), each sent as raw bytes
//! through every front that can see it (the gateway's own proxy, nginx
//! `auth_request`, Caddy `forward_auth`) and judged by what the upstream
//! echo received.
//!
//! - A target whose path has more than one reading (dot segments raw or
//!   encoded, `;` path parameters and `..;`, encoded `/` and `\`, double
//!   encoding, encoded controls, encoded unreserved characters, bytes
//!   outside ASCII, `//`) never reaches the upstream, with or without a
//!   token; the gateway answers `400`.
//! - A path with encodings of reserved or non-ASCII characters is guarded:
//!   anonymous, it never reaches the upstream; with a token it does, as
//!   sent.
//! - A public entry ending in `/` is a prefix of whole segments; one
//!   without is one exact path.
//! - An original target with a fragment is refused.
//! - Two `Host` fields, an invalid `Host`, an HTTP/1.1 request without one:
//!   `400`. An absolute-form target's authority is the host.
//! - `CONNECT` (`405`) and asterisk- or authority-form targets (`400`).
//! - A malformed or truncated chunked body from the client: `400`.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use fixtures::*;

/// How long a raw exchange may take: every request says `Connection:
/// close`, so the answer normally ends long before.
const RAW_TIMEOUT: Duration = Duration::from_secs(3);

/// The upstream, the gateway (public paths `/public/` and `/favicon.ico`),
/// nginx and Caddy in front of it, and a bearer token of the admin.
struct Edge {
    fronts: Vec<(&'static str, SocketAddr)>,
    gateway: SocketAddr,
    upstream: u16,
    admin: String,
    _processes: (Gateway, Process, Process),
    _upstream: Upstream,
}

impl Edge {
    async fn start() -> Edge {
        let upstream = Upstream::start().await;
        let config = gateway_config(upstream.port, "").replace(
            r#"public_paths = ["/public/"]"#,
            r#"public_paths = ["/public/", "/favicon.ico"]"#,
        );
        let gateway = Gateway::start(&config);
        let (nginx, nginx_port) = start_nginx(gateway.addr, upstream.port).await;
        let (caddy, caddy_port) = start_caddy(gateway.addr, upstream.port).await;
        let admin = bearer_token(&Front::new("authgate", gateway.addr.port()), "admin").await;
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Edge {
            fronts: vec![
                ("authgate proxy", gateway.addr),
                ("nginx auth_request", loopback(nginx_port)),
                ("caddy forward_auth", loopback(caddy_port)),
            ],
            gateway: gateway.addr,
            upstream: upstream.port,
            admin,
            _processes: (gateway, nginx, caddy),
            _upstream: upstream,
        }
    }

    /// The decision endpoint, called as the trusted proxy (127.0.0.1).
    fn decision(&self) -> Front {
        Front {
            allowed: client_from("127.0.0.1"),
            ..Front::new("decision", self.gateway.port())
        }
    }
}

/// `GET target` with `Host: 127.0.0.1` (the host Caddy serves) and `headers` (each line ending
/// in CRLF), as raw bytes.
fn get(target: &[u8], headers: &str) -> Vec<u8> {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    raw.extend_from_slice(headers.as_bytes());
    raw.extend_from_slice(b"Connection: close\r\n\r\n");
    raw
}

/// What the upstream echo received, when the answer is its echo.
fn echo(answer: &str) -> Option<Value> {
    let body = answer.split_once("\r\n\r\n")?.1;
    let start = body.find('{')?;
    let mut values = serde_json::Deserializer::from_str(&body[start..]).into_iter::<Value>();
    let value = values.next()?.ok()?;
    value.get("uri").is_some().then_some(value)
}

/// Whether `uri` (as the upstream received it) is free of every mark of a
/// path with more than one reading.
fn has_one_reading(uri: &str) -> bool {
    let path = uri
        .split('?')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let marks = [
        "/../", "/./", ";", "%2e", "%2f", "%5c", "%25", "//", "\\", "%00",
    ];
    !marks.iter().any(|mark| path.contains(mark))
        && !path.ends_with("/..")
        && path.bytes().all(|b| b.is_ascii_graphic())
}

fn shown(target: &[u8]) -> String {
    String::from_utf8_lossy(target).into_owned()
}

/// Targets whose path has more than one reading, one or more per class.
fn ambiguous_targets() -> Vec<Vec<u8>> {
    let mut targets: Vec<Vec<u8>> = [
        // Path parameters: servlet containers drop them, `..;` is `..`.
        "/public/..;/app",
        "/public/.;/app",
        "/public/x;jsessionid=1/../../app",
        "/public;x/app",
        "/public/%3b/app",
        // Dot segments, raw and encoded.
        "/public/../app",
        "/public/./app",
        "/public/%2e%2e/app",
        "/public/%2E./app",
        "/public/.%2e/app",
        // Double encoding.
        "/public/%252e%252e/app",
        "/public/%25",
        // Encoded separators, backslashes, empty segments.
        "/public/..%2fapp",
        "/public/%2F",
        "/public/..%5capp",
        "/public/..\\app",
        "/public//app",
        // Encoded NUL and controls.
        "/public/%00",
        "/public/x%0a",
        "/public/%7f",
        // Encoded unreserved characters, malformed and overlong encodings.
        "/public/%61pp",
        "/public/%zz",
        "/public/%c0%ae%c0%ae/app",
        "/public/%ff",
        // Characters a URI does not allow.
        "/public/a|b",
        "/public/a{b}",
    ]
    .iter()
    .map(|target| target.as_bytes().to_vec())
    .collect();
    // Bytes outside ASCII, valid UTF-8 and not.
    targets.push(b"/public/caf\xc3\xa9".to_vec());
    targets.push(b"/public/\xff".to_vec());
    targets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_with_more_than_one_reading_never_reach_the_upstream() {
    let edge = Edge::start().await;
    let token = format!("Authorization: {}\r\n", edge.admin);
    for (front, addr) in &edge.fronts {
        for target in ambiguous_targets() {
            for (who, headers) in [("anonymous", ""), ("admin", token.as_str())] {
                let answer = raw_exchange(*addr, &get(&target, headers), RAW_TIMEOUT).await;
                let target = shown(&target);
                if let Some(received) = echo(&answer) {
                    // Only a front that rewrites the target into one
                    // reading (Caddy escapes `|`, `{`, `}`) may pass it on,
                    // and then only with a token, as rewritten.
                    let uri = received["uri"].as_str().unwrap_or_default();
                    assert!(
                        *front != "authgate proxy"
                            && who == "admin"
                            && uri != target
                            && has_one_reading(uri),
                        "{front}: {who}: {target:?} reached the upstream: {answer}"
                    );
                    continue;
                }
                let status = raw_status(&answer);
                if *front == "authgate proxy" {
                    assert_eq!(status, 400, "{front}: {who}: {target:?}: {answer}");
                } else {
                    // Refused by the front itself or by the decision
                    // endpoint (nginx turns its 400 into a 500).
                    assert!(
                        status >= 400 || status == 0,
                        "{front}: {who}: {target:?}: {answer}"
                    );
                }
            }
        }
    }
    // The decision endpoint refuses the same targets whatever the front.
    let decision = edge.decision();
    for target in ambiguous_targets() {
        let Ok(target) = std::str::from_utf8(&target) else {
            continue;
        };
        let Ok(value) = http::HeaderValue::from_str(target) else {
            continue;
        };
        let value = value.to_str().unwrap_or_default();
        for (uri, method) in [
            ("x-original-uri", "x-original-method"),
            ("x-forwarded-uri", "x-forwarded-method"),
        ] {
            let reply = decision
                .get("/_authgate/verify", &[(uri, value), (method, "GET")])
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}: {target:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_paths_are_guarded_and_never_public() {
    let edge = Edge::start().await;
    let token = format!("Authorization: {}\r\n", edge.admin);
    for (front, addr) in &edge.fronts {
        for target in [
            "/public/a%20b",
            "/public/caf%C3%A9",
            "/public/%3Fx",
            "/app/%40x",
        ] {
            let anonymous = raw_exchange(*addr, &get(target.as_bytes(), ""), RAW_TIMEOUT).await;
            assert!(
                echo(&anonymous).is_none(),
                "{front}: anonymous {target} reached the upstream: {anonymous}"
            );
            assert_eq!(
                raw_status(&anonymous),
                401,
                "{front}: {target}: {anonymous}"
            );
            let admin = raw_exchange(*addr, &get(target.as_bytes(), &token), RAW_TIMEOUT).await;
            let received = echo(&admin).unwrap_or_else(|| panic!("{front}: {target}: {admin}"));
            assert_eq!(received["uri"], target, "{front}");
            assert_eq!(received["headers"]["x-auth-subject"], "admin", "{front}");
        }
        // A plain public path needs no token.
        let public = raw_exchange(*addr, &get(b"/public/a.css", ""), RAW_TIMEOUT).await;
        let received = echo(&public).unwrap_or_else(|| panic!("{front}: {public}"));
        assert_eq!(received["uri"], "/public/a.css", "{front}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_path_is_an_exact_path_or_a_prefix_of_whole_segments() {
    let edge = Edge::start().await;
    for (front, addr) in &edge.fronts {
        for public in ["/favicon.ico", "/public/", "/public/x/y.js"] {
            let answer = raw_exchange(*addr, &get(public.as_bytes(), ""), RAW_TIMEOUT).await;
            let received = echo(&answer).unwrap_or_else(|| panic!("{front}: {public}: {answer}"));
            assert_eq!(received["uri"], public, "{front}");
        }
        for guarded in [
            "/favicon.ico/x",
            "/favicon.ico/",
            "/favicon.icox",
            "/public",
            "/publicx/a",
        ] {
            let answer = raw_exchange(*addr, &get(guarded.as_bytes(), ""), RAW_TIMEOUT).await;
            assert!(
                echo(&answer).is_none(),
                "{front}: anonymous {guarded} reached the upstream: {answer}"
            );
            assert_eq!(raw_status(&answer), 401, "{front}: {guarded}: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_is_never_judged_apart_from_what_is_forwarded() {
    let edge = Edge::start().await;
    for (front, addr) in &edge.fronts {
        for target in ["/public/x#/../../app", "/public/#/..;/app", "/app#x"] {
            let answer = raw_exchange(*addr, &get(target.as_bytes(), ""), RAW_TIMEOUT).await;
            match echo(&answer) {
                // The proxy reads the target without its fragment, and
                // forwards what it read.
                Some(received) if *front == "authgate proxy" => {
                    let judged = target.split('#').next().unwrap_or_default();
                    assert_eq!(received["uri"], judged, "{front}: {target}");
                    assert!(judged.starts_with("/public/"), "{front}: {target}");
                }
                Some(_) => panic!("{front}: {target} reached the upstream: {answer}"),
                None => assert!(
                    raw_status(&answer) >= 400 || raw_status(&answer) == 0,
                    "{front}: {target}: {answer}"
                ),
            }
        }
    }
    let decision = edge.decision();
    for (uri, method) in [
        ("x-original-uri", "x-original-method"),
        ("x-forwarded-uri", "x-forwarded-method"),
    ] {
        for target in ["/public/x#/../../app", "/public/#", "/app#x"] {
            let reply = decision
                .get("/_authgate/verify", &[(uri, target), (method, "GET")])
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}: {target}");
        }
    }
}

/// `GET /public/x` (public: only the `Host` check stands in the way) with
/// the raw header lines `host_lines`.
fn with_hosts(version: &str, host_lines: &str) -> Vec<u8> {
    format!("GET /public/x {version}\r\n{host_lines}Connection: close\r\n\r\n").into_bytes()
}

const INVALID_HOSTS: [&str; 10] = [
    "user@app.example",
    "user:pw@app.example",
    "app.example/x",
    "app.example:99999",
    "app.example:x",
    "app.example:",
    "app.example:80:80",
    "[::1",
    "app%2eexample",
    "",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_one_valid_authority() {
    let edge = Edge::start().await;
    let gateway = edge.gateway;
    let refused = |answer: &str, what: &str| {
        assert!(
            echo(answer).is_none(),
            "{what} reached the upstream: {answer}"
        );
        assert_eq!(raw_status(answer), 400, "{what}: {answer}");
    };
    let two = with_hosts("HTTP/1.1", "Host: app.example\r\nHost: evil.example\r\n");
    refused(&raw_exchange(gateway, &two, RAW_TIMEOUT).await, "two Hosts");
    // The login routes hold Host to the same rule.
    let login = b"POST /api/login HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    assert_eq!(
        raw_status(&raw_exchange(gateway, login, RAW_TIMEOUT).await),
        400
    );
    let none = with_hosts("HTTP/1.1", "");
    refused(&raw_exchange(gateway, &none, RAW_TIMEOUT).await, "no Host");
    for host in INVALID_HOSTS {
        let raw = with_hosts("HTTP/1.1", &format!("Host: {host}\r\n"));
        refused(&raw_exchange(gateway, &raw, RAW_TIMEOUT).await, host);
    }
    // HTTP/1.0 needs no Host; a valid one reaches the upstream as sent.
    let old = raw_exchange(gateway, &with_hosts("HTTP/1.0", ""), RAW_TIMEOUT).await;
    assert!(echo(&old).is_some(), "HTTP/1.0: {old}");
    for host in ["app.example:8080", "[::1]:80", "127.0.0.1"] {
        let raw = with_hosts("HTTP/1.1", &format!("Host: {host}\r\n"));
        let answer = raw_exchange(gateway, &raw, RAW_TIMEOUT).await;
        let received = echo(&answer).unwrap_or_else(|| panic!("{host}: {answer}"));
        assert_eq!(received["headers"]["host"], host);
    }
    // Absolute form: the target's authority is the host (RFC 9112 §3.2.2).
    let absolute = b"GET http://other.example:81/public/x?y=1 HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(gateway, absolute, RAW_TIMEOUT).await;
    let received = echo(&answer).unwrap_or_else(|| panic!("absolute form: {answer}"));
    assert_eq!(received["uri"], "/public/x?y=1");
    assert_eq!(received["headers"]["host"], "other.example:81");
    assert_eq!(received["headers"]["x-forwarded-host"], "other.example:81");
    for target in [
        "http://user@other.example/public/x",
        "http://other.example:99999/public/x",
        "ftp://other.example/public/x",
        "http://other.example/public/%2e%2e/app",
    ] {
        let raw =
            format!("GET {target} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n");
        refused(
            &raw_exchange(gateway, raw.as_bytes(), RAW_TIMEOUT).await,
            target,
        );
    }

    // Through nginx and Caddy: whatever they let through, the decision
    // endpoint holds X-Forwarded-Host (or Host) to the same rule.
    for (front, addr) in edge.fronts.iter().skip(1) {
        for host in INVALID_HOSTS {
            let raw = with_hosts("HTTP/1.1", &format!("Host: {host}\r\n"));
            let answer = raw_exchange(*addr, &raw, RAW_TIMEOUT).await;
            assert!(
                echo(&answer).is_none(),
                "{front}: Host {host:?} reached the upstream: {answer}"
            );
        }
        let answer = raw_exchange(*addr, &two, RAW_TIMEOUT).await;
        assert!(echo(&answer).is_none(), "{front}: two Hosts: {answer}");
    }
    let decision = edge.decision();
    for host in ["user@app.example", "app.example/x", "app.example:99999"] {
        let reply = decision
            .get(
                "/_authgate/verify",
                &[
                    ("x-original-uri", "/public/x"),
                    ("x-original-method", "GET"),
                    ("x-forwarded-host", host),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_targets_that_are_not_paths_are_refused() {
    let edge = Edge::start().await;
    let token = format!("Authorization: {}\r\n", edge.admin);
    let upstream = edge.upstream;
    let requests = [
        (
            format!(
                "CONNECT 127.0.0.1:{upstream} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\n{token}Connection: close\r\n\r\n"
            ),
            405,
        ),
        (
            format!("OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n{token}Connection: close\r\n\r\n"),
            400,
        ),
        (
            format!(
                "GET 127.0.0.1:{upstream} HTTP/1.1\r\nHost: 127.0.0.1\r\n{token}Connection: close\r\n\r\n"
            ),
            400,
        ),
    ];
    for (front, addr) in &edge.fronts {
        for (raw, status) in &requests {
            let answer = raw_exchange(*addr, raw.as_bytes(), RAW_TIMEOUT).await;
            let line = raw.lines().next().unwrap_or_default();
            assert!(
                echo(&answer).is_none(),
                "{front}: {line} reached the upstream: {answer}"
            );
            // (Caddy answers `OPTIONS *` itself, with an empty 200.)
            if *front == "authgate proxy" {
                assert_eq!(raw_status(&answer), *status, "{front}: {line}: {answer}");
            }
        }
    }
    let decision = edge.decision();
    for (uri, method) in [
        ("127.0.0.1:80", "CONNECT"),
        ("/public/x", "CONNECT"),
        ("*", "OPTIONS"),
    ] {
        let reply = decision
            .get(
                "/_authgate/verify",
                &[("x-original-uri", uri), ("x-original-method", method)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}");
    }
}

/// Sends `raw` to `addr`, then closes the sending half, and returns the
/// answer.
async fn send_and_close(addr: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(RAW_TIMEOUT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let head = "POST /public/upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    for body in [
        "5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n",
        "5\r\nhello\r\n5\r\nhelloXX\r\n0\r\n\r\n",
    ] {
        let answer = raw_exchange(
            gateway.addr,
            format!("{head}{body}").as_bytes(),
            RAW_TIMEOUT,
        )
        .await;
        assert_eq!(raw_status(&answer), 400, "{body:?}: {answer}");
    }
    // A body cut short: the client closes before the last chunk.
    let answer = send_and_close(
        gateway.addr,
        format!("{head}5\r\nhello\r\n8\r\nhel").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "a truncated body: {answer}");
    // A well-formed chunked body still goes through.
    let answer = raw_exchange(
        gateway.addr,
        format!("{head}5\r\nhello\r\n0\r\n\r\n").as_bytes(),
        RAW_TIMEOUT,
    )
    .await;
    let received = echo(&answer).unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(received["body"], "hello");
}
