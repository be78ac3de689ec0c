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

/// Signs `admin` in with the inSCADA cookie login through `front`: the
/// access and refresh cookies.
async fn cookie_login(front: &Front) -> (String, String) {
    let login = front
        .send(
            http::Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=admin&password=admin",
        )
        .await;
    assert_eq!(login.status, 200, "{}: {}", front.name, login.text);
    (
        login.cookie("ins_access_token").expect("access cookie"),
        login.cookie("ins_refresh_token").expect("refresh cookie"),
    )
}

/// Cross-site requests with cookie credentials, through the gateway's own
/// proxy, nginx `auth_request` and Caddy `forward_auth`: two `Origin`
/// fields and an origin of the other scheme never reach the upstream, and
/// a request the CSRF check refuses is sent no freshly minted access
/// cookie (renewed from the refresh cookie, the access cookie missing or
/// expired). The same requests from the site itself pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_never_reach_the_upstream_nor_renew_the_access_cookie() {
    let upstream = Upstream::start().await;
    // Four-second access tokens, so that a cookie can expire in the test
    // (and live through one front's checks on a loaded machine).
    let config = gateway_config(upstream.port, "").replace(
        "preset = \"cookie_session\"\n",
        "preset = \"cookie_session\"\naccess_seconds = 4\n",
    );
    let gateway = Gateway::start(&config);
    let (_nginx, nginx_port) = start_nginx(gateway.addr, upstream.port).await;
    let (_caddy, caddy_port) = start_caddy(gateway.addr, upstream.port).await;
    let fronts = [
        Front::new("gateway", gateway.addr.port()),
        Front::new("nginx", nginx_port),
        Front::new("caddy", caddy_port),
    ];
    let mut logins = Vec::new();
    for front in &fronts {
        // Signed in just before this front's checks, so that its access
        // cookie is alive through them.
        logins.push(cookie_login(front).await);
        let (access, refresh) = logins.last().expect("just signed in");
        let name = front.name;
        let own = format!("http://127.0.0.1:{}", front.port);
        let other_scheme = format!("https://127.0.0.1:{}", front.port);
        let with_access = format!("ins_access_token={access}");
        let refresh_only = format!("ins_refresh_token={refresh}");
        let post = |cookie: &str, origins: &[&str]| {
            let mut headers = vec![("cookie", cookie.to_owned())];
            headers.extend(origins.iter().map(|o| ("origin", (*o).to_owned())));
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                front
                    .send(http::Method::POST, "/app/settings", &headers, "{}")
                    .await
            }
        };
        for (cookie, origins) in [
            (&with_access, vec!["https://evil.example"]),
            (&with_access, vec![own.as_str(), "https://evil.example"]),
            (&with_access, vec!["https://evil.example", own.as_str()]),
            (&with_access, vec![own.as_str(), own.as_str()]),
            (&with_access, vec![other_scheme.as_str()]),
            (&refresh_only, vec!["https://evil.example"]),
            (&refresh_only, vec![other_scheme.as_str()]),
            (&refresh_only, vec![own.as_str(), "https://evil.example"]),
        ] {
            let reply = post(cookie, &origins).await;
            assert_ne!(reply.status, 200, "{name}: {origins:?}");
            assert!(!reached_upstream(&reply.text), "{name}: {origins:?}");
            assert_eq!(
                reply.cookie("ins_access_token"),
                None,
                "{name}: a refused request is sent no renewed access cookie ({origins:?})"
            );
        }
        // From the site itself: it passes.
        let same = post(&with_access, &[own.as_str()]).await;
        assert_eq!(same.status, 200, "{name}: {}", same.text);
        assert!(reached_upstream(&same.text));
        let renewed = post(&refresh_only, &[own.as_str()]).await;
        assert_eq!(renewed.status, 200, "{name}: {}", renewed.text);
        if name == "gateway" {
            assert!(renewed.cookie("ins_access_token").is_some(), "{name}");
        }
    }

    // The access cookies expire: a cross-site request with the expired one
    // and the refresh cookie is refused without a renewed cookie.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    for (front, (access, refresh)) in fronts.iter().zip(&logins) {
        let cookie = format!("ins_access_token={access}; ins_refresh_token={refresh}");
        let cross = front
            .send(
                http::Method::POST,
                "/app/settings",
                &[("cookie", &cookie), ("origin", "https://evil.example")],
                "{}",
            )
            .await;
        assert_ne!(cross.status, 200, "{}", front.name);
        assert!(!reached_upstream(&cross.text), "{}", front.name);
        assert_eq!(cross.cookie("ins_access_token"), None, "{}", front.name);
        let own = format!("http://127.0.0.1:{}", front.port);
        let same = front
            .send(
                http::Method::POST,
                "/app/settings",
                &[("cookie", &cookie), ("origin", &own)],
                "{}",
            )
            .await;
        assert_eq!(same.status, 200, "{}: {}", front.name, same.text);
        if front.name == "gateway" {
            assert!(same.cookie("ins_access_token").is_some());
        }
    }
}
