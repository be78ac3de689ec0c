//! The `authgate` binary as a real process: attacks on the edge (guard).
//!
//! Each attack is judged by what the upstream echo received: a refusal
//! never carries the echo's `"headers"` object.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use fixtures::*;

/// Sends `raw` from `from` (a loopback address) to `addr` and returns the
/// whole answer, as [`raw_exchange`] does from the allowed client.
async fn raw_exchange_from(from: &str, addr: SocketAddr, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .expect("bind a loopback address");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the upstream echo answered (its body lists the headers it got).
fn reached_upstream(answer: &str) -> bool {
    answer.contains("\"headers\"")
}

/// `X-Forwarded-For` values that hold something other than addresses.
const NOT_ADDRESSES: [&str; 9] = [
    "junk",
    "",
    "127.0.0.5,",
    ",127.0.0.5",
    "127.0.0.5,,127.0.0.1",
    "unix:/run/nginx.sock",
    "unknown",
    "127.0.0.5:4711",
    "127.0.0.9, junk",
];

/// A forwarding header from the trusted proxy's address that holds
/// anything but addresses leaves the client unknown: `400`, never the
/// proxy's own (allowed) address in its place, through the gateway's own
/// proxy and at the decision endpoint. An untrusted peer's header is not
/// read at all. Through nginx and Caddy the denied client never reaches
/// the upstream, whatever it writes in the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peers_forwarding_header_of_anything_but_addresses_is_refused() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&gateway_config(upstream.port, ""));
    let addr = gateway.addr;

    for value in NOT_ADDRESSES {
        // The gateway's own proxy, from the trusted address.
        let proxied = raw_exchange_from(
            "127.0.0.1",
            addr,
            &format!(
                "GET /public/x HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: {value}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(raw_status(&proxied), 400, "proxy, {value:?}: {proxied}");
        assert!(!reached_upstream(&proxied), "proxy, {value:?}: {proxied}");
        // The decision endpoint, from the trusted address.
        let decided = raw_exchange_from(
            "127.0.0.1",
            addr,
            &format!(
                "GET /_authgate/verify HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /public/x\r\nX-Forwarded-For: {value}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(raw_status(&decided), 400, "verify, {value:?}: {decided}");
    }
    // A well-formed chain from the trusted address still resolves.
    let chained = raw_exchange_from(
        "127.0.0.1",
        addr,
        "GET /public/x HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 127.0.0.5\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&chained), 200, "{chained}");
    assert!(reached_upstream(&chained));
    let denied = raw_exchange_from(
        "127.0.0.1",
        addr,
        &format!("GET /public/x HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: {DENIED_CLIENT}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(raw_status(&denied), 403, "{denied}");
    // From an untrusted peer the header is not read: its own address decides.
    let untrusted = raw_exchange_from(
        ALLOWED_CLIENT,
        addr,
        "GET /public/x HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: junk\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&untrusted), 200, "{untrusted}");
    let untrusted_denied = raw_exchange_from(
        DENIED_CLIENT,
        addr,
        "GET /public/x HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&untrusted_denied), 403, "{untrusted_denied}");
    assert!(!reached_upstream(&untrusted_denied));

    // nginx appends the real client, Caddy replaces the header: the denied
    // client is refused whatever it writes.
    let (_nginx, nginx_port) = start_nginx(addr, upstream.port).await;
    let (_caddy, caddy_port) = start_caddy(addr, upstream.port).await;
    for front in [
        Front::new("nginx", nginx_port),
        Front::new("caddy", caddy_port),
    ] {
        for value in [
            "junk",
            "",
            "unix:/x",
            "127.0.0.5",
            "127.0.0.1",
            "127.0.0.5, junk",
        ] {
            let reply = front
                .send_with(
                    &front.denied,
                    http::Method::GET,
                    "/public/x",
                    &[("x-forwarded-for", value)],
                    "",
                )
                .await;
            assert_ne!(reply.status, 200, "{}: {value:?}", front.name);
            assert!(!reached_upstream(&reply.text), "{}: {value:?}", front.name);
        }
    }
}
