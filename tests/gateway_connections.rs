//! The `authgate` binary as a real process: attacks on the edge (connections).
//!
//! What a client can hold open is bounded: the time to send a request head
//! (from the first moment of a connection), the connections open at once,
//! in all and per client address, the time to send a login body. Behind
//! nginx or Caddy these connections end at the front, which bounds them
//! itself; the gateway sees the front's few kept-alive connections, so
//! these attacks are tested on the gateway's own port.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fixtures::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to `addr` from `from` (a loopback address).
async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .expect("bind a loopback address");
    socket.connect(addr).await.expect("connect")
}

/// What the server sent before it closed `stream`, or `None` when it is
/// still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut answer = Vec::new();
    closed_within_into(stream, wait, &mut answer)
        .await
        .then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// Whether the server closed `stream` within `wait`, what it sent meanwhile
/// appended to `received`: bytes that arrive before a wait runs out stay
/// there for the next one (an answer whose close comes later is not lost).
async fn closed_within_into(
    stream: &mut TcpStream,
    wait: Duration,
    received: &mut Vec<u8>,
) -> bool {
    tokio::time::timeout(wait, stream.read_to_end(received))
        .await
        .is_ok()
}

/// The gateway with the fixture's configuration, nginx (`auth_request`) and
/// Caddy (`forward_auth`) in front of it, one upstream behind all three, and
/// a bearer token of `admin` (`Bearer …`).
struct Fronts {
    upstream: Upstream,
    /// The name and port of each front: the gateway's own, nginx, Caddy.
    ports: [(&'static str, u16); 3],
    bearer: String,
    _gateway: Gateway,
    _nginx: Process,
    _caddy: Process,
}

impl Fronts {
    async fn start() -> Fronts {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(&gateway_config(upstream.port, ""));
        let (nginx, nginx_port) = start_nginx(gateway.addr, upstream.port).await;
        let (caddy, caddy_port) = start_caddy(gateway.addr, upstream.port).await;
        let bearer = bearer_token(&Front::new("gateway", gateway.addr.port()), "admin").await;
        Fronts {
            upstream,
            ports: [
                ("gateway", gateway.addr.port()),
                ("nginx", nginx_port),
                ("caddy", caddy_port),
            ],
            bearer,
            _gateway: gateway,
            _nginx: nginx,
            _caddy: caddy,
        }
    }
}

/// `GET /healthz` from `from`, answered within `wait`: its status (0 for a
/// closed connection without an answer), or `None` when it hangs.
async fn healthz_from(addr: SocketAddr, from: &str, wait: Duration) -> Option<u16> {
    let mut stream = connect_from(addr, from).await;
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await;
    closed_within(&mut stream, wait)
        .await
        .map(|answer| raw_status(&answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_head_is_closed_after_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"1s\"",
        "",
    ));
    // Nothing at all; the first bytes of the HTTP/2 preface (which a
    // protocol sniffer waits to complete); half a request head.
    let mut silent = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    let mut preface = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    preface.write_all(b"PRI * HT").await.unwrap();
    let mut half = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    half.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for (what, stream) in [
        ("no byte", &mut silent),
        ("a partial HTTP/2 preface", &mut preface),
        ("half a head", &mut half),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(4))
                .await
                .is_some(),
            "a connection that sent {what} is still open after {:?}",
            started.elapsed()
        );
    }
    // A kept-alive connection gets the same time for its next head.
    let mut kept = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 17];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");
    assert!(
        closed_within(&mut kept, Duration::from_secs(4))
            .await
            .is_some(),
        "an idle kept-alive connection stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_first_byte_timeout_closes_a_silent_connection_first() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"10s\"\nfirst_byte_timeout = \"1s\"",
        "",
    ));
    let started = Instant::now();
    let mut silent = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    assert!(
        closed_within(&mut silent, Duration::from_secs(3))
            .await
            .is_some(),
        "a silent connection is still open after {:?}",
        started.elapsed()
    );
    // A client that sends its request at once is served as before.
    assert_eq!(
        healthz_from(gateway.addr, ALLOWED_CLIENT, Duration::from_secs(2)).await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_connection() {
    let upstream = Upstream::start().await;
    // The default caps (64 per client, 768 in all); a short head timeout.
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"2s\"",
        "",
    ));
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(connect_from(gateway.addr, ALLOWED_CLIENT).await);
    }
    // Beyond its share, the same client is refused at once.
    for _ in 0..16 {
        let mut extra = connect_from(gateway.addr, ALLOWED_CLIENT).await;
        let answer = closed_within(&mut extra, Duration::from_millis(1500))
            .await
            .expect("a connection beyond the per-client cap is still open");
        assert_eq!(raw_status(&answer), 503, "{answer}");
        assert!(answer.contains("retry-after: 1"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    // Another client is served meanwhile.
    assert_eq!(
        healthz_from(gateway.addr, "127.0.0.6", Duration::from_secs(1)).await,
        Some(200)
    );
    // A trusted proxy (every connection of an nginx in front) is not
    // counted per client.
    let mut from_proxy = Vec::new();
    for _ in 0..70 {
        from_proxy.push(connect_from(gateway.addr, "127.0.0.1").await);
    }
    for stream in &mut from_proxy[60..] {
        assert!(
            closed_within(stream, Duration::from_millis(100))
                .await
                .is_none(),
            "a trusted proxy's connection was refused"
        );
    }
    // The idle connections are closed after the head timeout, and the
    // client may connect again.
    for stream in &mut held {
        assert!(
            closed_within(stream, Duration::from_secs(4))
                .await
                .is_some(),
            "an idle connection outlived the head timeout"
        );
    }
    assert_eq!(
        healthz_from(gateway.addr, ALLOWED_CLIENT, Duration::from_secs(1)).await,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_filling_every_slot_make_room_for_a_new_one() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"5s\"\nmax_connections = 16",
        "",
    ));
    // Twice the limit from one address that is not counted per client (as
    // a front's would be): the oldest idle ones are closed to make room.
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(connect_from(gateway.addr, "127.0.0.1").await);
    }
    let started = Instant::now();
    assert_eq!(
        healthz_from(gateway.addr, "127.0.0.1", Duration::from_secs(1)).await,
        Some(200)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    a_new_client_is_served_and_the_oldest_closed(gateway.addr, &mut held).await;
}

/// With every slot held by `held` (oldest first), a new client is served
/// at once and the oldest held connection is closed to make room for it.
async fn a_new_client_is_served_and_the_oldest_closed(addr: SocketAddr, held: &mut [TcpStream]) {
    let started = Instant::now();
    assert_eq!(
        healthz_from(addr, "127.0.0.7", Duration::from_secs(1)).await,
        Some(200)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        closed_within(&mut held[0], Duration::from_secs(2))
            .await
            .is_some(),
        "the oldest connection without a request is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused_at_once_until_slots_free_up() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"2s\"\nmax_connections = 16\nmax_connections_per_client = 8",
        "",
    ));
    // Every slot is held by a kept-alive connection that has been served.
    let mut held = Vec::new();
    for client in ["127.0.0.5", "127.0.0.6"] {
        for _ in 0..8 {
            held.push(kept_alive_after_one_request(gateway.addr, client).await);
        }
    }
    // `/healthz` is refused quickly, not left hanging.
    let started = Instant::now();
    assert_eq!(
        healthz_from(gateway.addr, "127.0.0.7", Duration::from_secs(1)).await,
        Some(503)
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Once the kept-alive ones time out it answers again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        healthz_from(gateway.addr, "127.0.0.7", Duration::from_secs(1)).await,
        Some(200)
    );
    drop(held);
}

/// The head of a bearer-pair login whose body is 60 bytes long.
const LOGIN_HEAD: &[u8] = b"POST /api/login HTTP/1.1\r\nHost: gateway\r\n\
Content-Type: application/json\r\nContent-Length: 60\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "body_read_timeout = \"1s\"",
        "",
    ));
    // The clock starts once the gateway answers.
    assert_eq!(
        healthz_from(gateway.addr, ALLOWED_CLIENT, Duration::from_secs(5)).await,
        Some(200)
    );
    // Withheld: the head and a part of the body, then nothing.
    let started = Instant::now();
    let mut withheld = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    withheld.write_all(LOGIN_HEAD).await.unwrap();
    withheld.write_all(b"{\"username\":\"adm").await.unwrap();
    let answer = closed_within(&mut withheld, Duration::from_secs(6))
        .await
        .unwrap_or_else(|| {
            panic!(
                "a withheld login body holds the connection after {:?}",
                started.elapsed()
            )
        });
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Trickled: a byte every 200 ms, never reaching its end in time.
    let started = Instant::now();
    let mut trickled = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    trickled.write_all(LOGIN_HEAD).await.unwrap();
    let body = br#"{"username":"admin","password":"admin"}                     "#;
    let mut received = Vec::new();
    let mut closed = false;
    for byte in body.iter().take(59) {
        if trickled.write_all(&[*byte]).await.is_err() {
            break;
        }
        // The answer may come in one wait and the close in the next.
        if closed_within_into(&mut trickled, Duration::from_millis(200), &mut received).await {
            closed = true;
            break;
        }
    }
    if !closed {
        // The last byte's write failed: the close is there or on its way.
        closed_within_into(&mut trickled, Duration::from_secs(2), &mut received).await;
    }
    let answer = String::from_utf8_lossy(&received);
    assert!(
        !received.is_empty(),
        "a trickled login body holds the connection"
    );
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A body that arrives in time still logs in.
    let answer = raw_exchange(
        gateway.addr,
        &[
            &b"POST /api/login HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\
Content-Type: application/json\r\nContent-Length: 39\r\n\r\n"[..],
            br#"{"username":"admin","password":"admin"}"#,
        ]
        .concat(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
}

// ---------------------------------------------------------------------------
// Protocol upgrades.

/// Whether the upstream echo, in `answer` (a raw HTTP/1.1 exchange),
/// received an upgrade or switched protocols: `101`, or an echo of the
/// request holding `Upgrade` or `Connection: upgrade`.
fn upstream_saw_an_upgrade(answer: &str) -> bool {
    if raw_status(answer) == 101 {
        return true;
    }
    let Some((_, body)) = answer.split_once("\r\n\r\n") else {
        return false;
    };
    let Ok(echo) = serde_json::from_str::<serde_json::Value>(body.trim()) else {
        // Not the echo's answer: the request did not reach it.
        return false;
    };
    let headers = &echo["headers"];
    headers.get("upgrade").is_some()
        || headers["connection"]
            .as_str()
            .is_some_and(|value| value.to_ascii_lowercase().contains("upgrade"))
}

/// A WebSocket to `path` through the front on `port`, from the allowed
/// client, with `headers` added to the handshake.
async fn open_websocket(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let stream = connect_from(SocketAddr::from(([127, 0, 0, 1], port)), ALLOWED_CLIENT).await;
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|err| panic!("{port}{path}: websocket handshake: {err}"));
    assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and expects it back.
async fn echoes(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, text: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no websocket echo")
        .expect("the websocket closed")
        .expect("websocket error");
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
}

/// Whether `ws` is closed (by the server, or its connection) within `wait`,
/// while it keeps sending.
async fn websocket_closed_within(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    wait: Duration,
) -> bool {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if ws.send(Message::text("still there?")).await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(message))) if message.is_close() => return true,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_upgrades_reach_the_upstream_through_every_front() {
    let fronts = Fronts::start().await;
    let bearer = &fronts.bearer;
    for (front, port) in fronts.ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for (path, authorization) in [
            ("/public/echo", String::new()),
            ("/app/echo", format!("Authorization: {bearer}\r\n")),
        ] {
            for upgrade in [
                "h2c",
                "foo/1",
                "websocket, h2c",
                "WebSocket2",
                "h2c\r\nUpgrade: websocket",
            ] {
                let answer = raw_exchange(
                    addr,
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: {upgrade}\r\n\
HTTP2-Settings: AAMAAABkAAQAAP__\r\n{authorization}\r\n"
                    )
                    .as_bytes(),
                    Duration::from_secs(3),
                )
                .await;
                assert_ne!(
                    raw_status(&answer),
                    0,
                    "{front} {path} {upgrade:?}: no answer"
                );
                assert!(
                    !upstream_saw_an_upgrade(&answer),
                    "{front} {path}: `Upgrade: {upgrade}` reached the upstream: {answer}"
                );
            }
        }
        // A WebSocket still goes through.
        let mut ws = open_websocket(port, "/ws", &[("authorization", bearer)]).await;
        echoes(&mut ws, "hello").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_switches_to_another_protocol_is_a_502_and_nothing_is_joined() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let mut stream = connect_from(gateway.addr, ALLOWED_CLIENT).await;
    stream
        .write_all(
            b"GET /public/switch HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut head))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 502", "{}", String::from_utf8_lossy(&head));
    // Bytes sent now are not echoed by the switched upstream.
    let _ = stream.write_all(b"ECHO-ME\r\n\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("ECHO-ME"),
        "the upstream's switched connection was joined"
    );
}

// ---------------------------------------------------------------------------
// WebSocket lifetime.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_when_its_token_expires() {
    let upstream = Upstream::start().await;
    let config = gateway_config(upstream.port, "").replacen(
        "preset = \"bearer_pair\"\n",
        "preset = \"bearer_pair\"\naccess_seconds = 4\n",
        1,
    );
    let gateway = Gateway::start(&config);
    let front = Front::new("gateway", gateway.addr.port());
    let bearer = bearer_token(&front, "admin").await;
    let mut ws = open_websocket(front.port, "/ws", &[("authorization", &bearer)]).await;
    echoes(&mut ws, "while the token lives").await;
    assert!(
        websocket_closed_within(&mut ws, Duration::from_secs(7)).await,
        "a websocket outlived its token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_closed_once_its_token_is_revoked() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "websocket_revocation_check = \"300ms\"",
        "",
    ));
    let front = Front::new("gateway", gateway.addr.port());
    let login = front
        .send(
            http::Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=admin&password=admin",
        )
        .await;
    assert!(login.status.is_success(), "{} {}", login.status, login.text);
    let cookies = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let mut ws = open_websocket(front.port, "/ws", &[("cookie", &cookies)]).await;
    echoes(&mut ws, "before the logout").await;
    let logout = front
        .send(http::Method::POST, "/logout", &[("cookie", &cookies)], "")
        .await;
    assert!(
        logout.status.is_success(),
        "{} {}",
        logout.status,
        logout.text
    );
    assert!(
        websocket_closed_within(&mut ws, Duration::from_secs(2)).await,
        "a websocket outlived its revoked token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_a_public_path_is_closed_after_the_longest_lifetime() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "websocket_max_lifetime = \"2s\"",
        "",
    ));
    let mut ws = open_websocket(gateway.addr.port(), "/public/ws", &[]).await;
    echoes(&mut ws, "anonymous").await;
    assert!(
        websocket_closed_within(&mut ws, Duration::from_secs(4)).await,
        "a public websocket outlived websocket_max_lifetime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_never_reaches_the_upstream_through_any_front() {
    let fronts = Fronts::start().await;
    let (upstream, bearer) = (&fronts.upstream, &fronts.bearer);
    for (front, port) in fronts.ports {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for target in [
            format!("127.0.0.1:{}", upstream.port),
            "/public/echo".to_owned(),
            "/app/echo".to_owned(),
        ] {
            let answer = raw_exchange(
                addr,
                format!(
                    "CONNECT {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
Authorization: {bearer}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
                Duration::from_secs(3),
            )
            .await;
            let status = raw_status(&answer);
            assert!(
                status >= 400 || status == 0,
                "{front}: CONNECT {target} answered {status}: {answer}"
            );
            assert!(
                !answer.contains("\"method\":\"CONNECT\""),
                "{front}: CONNECT {target} reached the upstream: {answer}"
            );
        }
    }
}

/// A request head within `max_request_headers_kib` (16 KiB) reaches the
/// upstream through every front; a larger one never does: the gateway
/// answers `431`, Caddy's `forward_auth` passes the decision endpoint's
/// `431` on, and nginx's `auth_request`, which allows only a `2xx` and
/// reads anything but `401` and `403` as an error, answers `500`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_never_reaches_the_upstream_through_any_front() {
    let fronts = Fronts::start().await;
    // Fields of 6 KiB: below nginx's 8 KiB a line, so that each front
    // passes them on and the gateway's bound is the one met.
    let field = "f".repeat(6 * 1024);
    for ((name, port), refusal) in fronts.ports.into_iter().zip([431, 500, 431]) {
        let front = Front::new(name, port);
        for fields in [2, 3] {
            let names: Vec<String> = (0..fields).map(|i| format!("x-padding-{i}")).collect();
            let mut headers = vec![("authorization", fronts.bearer.as_str())];
            headers.extend(names.iter().map(|name| (name.as_str(), field.as_str())));
            let reply = front.get("/app/echo", &headers).await;
            if fields == 2 {
                assert_eq!(reply.status, http::StatusCode::OK, "{name}: {}", reply.text);
                assert_eq!(
                    reply.json()["headers"]["x-padding-1"]
                        .as_str()
                        .map(str::len),
                    Some(field.len()),
                    "{name}"
                );
            } else {
                assert_eq!(reply.status.as_u16(), refusal, "{name}: {}", reply.text);
                assert!(
                    !reply.text.contains("x-padding"),
                    "{name} reached the upstream: {}",
                    reply.text
                );
            }
        }
    }
    // On the gateway's own port the HTTP/1 connection closes after the
    // 431: a request pipelined behind the oversized head is never read.
    let oversized = format!(
        "GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Padding: {}\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n",
        "p".repeat(17 * 1024)
    );
    let started = Instant::now();
    let answer = raw_exchange(
        SocketAddr::from(([127, 0, 0, 1], fronts.ports[0].1)),
        oversized.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "not closed: {answer}"
    );
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_kept_alive_connections_at_once_over_both_protocols() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"30s\"\nh2c = true",
        "",
    ));
    let mut http1 = kept_alive_after_one_request(gateway.addr, "127.0.0.1").await;
    // HTTP/2 with prior knowledge, no request yet.
    let mut http2 = h2c_without_a_request(gateway.addr, "127.0.0.1").await;
    // Both stay open while the server runs (the head timeout is 30 s).
    assert!(
        closed_within(&mut http1, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        closed_within(&mut http2, Duration::from_millis(300))
            .await
            .is_none()
    );

    let stopped = Instant::now();
    gateway.signal("TERM");
    // Closed at once, far inside the 5 s grace: the HTTP/2 one with a GOAWAY
    // (frame type 7) first, once the client has answered the server's PING
    // (as h2 shuts down gracefully).
    assert!(
        closed_within(&mut http1, Duration::from_secs(2))
            .await
            .is_some(),
        "a kept-alive HTTP/1.1 connection outlived the stop"
    );
    let frames = tokio::time::timeout(Duration::from_secs(2), h2_frames_to_the_close(&mut http2))
        .await
        .expect("an HTTP/2 connection outlived the stop");
    assert!(
        frames.contains(&0x7),
        "no GOAWAY before the close: {frames:?}"
    );
    loop {
        if let Some(status) = gateway.process.child.try_wait().unwrap() {
            assert!(status.success(), "authgate exited with {status}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "authgate waited for its grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The types of the HTTP/2 frames the server sends on `stream` until it
/// closes it, each PING answered as a client does.
async fn h2_frames_to_the_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut types = Vec::new();
    loop {
        let mut header = [0u8; 9];
        if stream.read_exact(&mut header).await.is_err() {
            return types;
        }
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        if stream.read_exact(&mut payload).await.is_err() {
            return types;
        }
        types.push(header[3]);
        if header[3] == 0x6 && header[4] & 0x1 == 0 {
            let mut ack = vec![0, 0, 8, 0x6, 0x1, 0, 0, 0, 0];
            ack.extend_from_slice(&payload);
            // The server may close first.
            let _ = stream.write_all(&ack).await;
        }
    }
}

/// An HTTP/1.1 connection from `from` whose one request (`/healthz`) has
/// been answered `200`, kept alive.
async fn kept_alive_after_one_request(addr: SocketAddr, from: &str) -> TcpStream {
    let mut stream = connect_from(addr, from).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    stream
}

/// An HTTP/2 connection with prior knowledge from `from`: the client's
/// preface and the server's SETTINGS exchanged, no request sent.
async fn h2c_without_a_request(addr: SocketAddr, from: &str) -> TcpStream {
    let mut stream = connect_from(addr, from).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 0x4, "the server's first frame is SETTINGS");
    // Its payload too: what is read next starts at a frame.
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    stream.read_exact(&mut vec![0u8; length]).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_without_a_request_make_room_for_a_new_one() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(
        upstream.port,
        "header_read_timeout = \"30s\"\nmax_connections = 16\nh2c = true",
        "",
    ));
    // Every slot held by an HTTP/2 connection that has sent no request.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(h2c_without_a_request(gateway.addr, "127.0.0.1").await);
    }
    // The oldest is closed at once (the head timeout is 30 s), the newest
    // stays.
    a_new_client_is_served_and_the_oldest_closed(gateway.addr, &mut held).await;
    assert!(
        closed_within(held.last_mut().unwrap(), Duration::from_millis(300))
            .await
            .is_none()
    );
}
