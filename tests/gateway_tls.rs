//! `authgate` terminating TLS and speaking HTTP/2, as a real process on
//! loopback, with real clients: curl over TLS (`--http2`, `--http1.1`,
//! `--tls-max 1.2`) and with h2c prior knowledge, a hyper HTTP/2 client
//! over rustls holding one connection across certificate reloads, a raw
//! TLS 1.1 hello, an h2c upstream ending its answers with gRPC trailers,
//! and an HMAC signing key read from a file. Certificates are made here
//! (rcgen), each pair under its own CA so that a client trusting one CA
//! tells which certificate it was served.

#[path = "common/gateway.rs"]
mod fixtures;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fixtures::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use serde_json::Value;

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM.
struct Pair {
    ca: String,
    chain: String,
    key: String,
}

fn make_pair(name: &str) -> Pair {
    make_pair_until(name, None)
}

/// A pair whose leaf is valid from 2019-01-01 until `not_after` (year,
/// month, day), or for rcgen's default period (1975-01-01 to 4096-01-01).
fn make_pair_until(name: &str, not_after: Option<(i32, u8, u8)>) -> Pair {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("authgate test CA {name}"),
    );
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    if let Some((year, month, day)) = not_after {
        leaf.not_before = rcgen::date_time_ymd(2019, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(year, month, day);
    }
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    Pair {
        ca: ca.pem(),
        chain: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn write_private(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `pair`'s chain and key where `[server.tls]` reads them, and its
/// CA beside them as `ca-{label}.pem`; the CA's path.
fn install(dir: &Path, pair: &Pair, label: &str) -> PathBuf {
    write_private(&dir.join("chain.pem"), pair.chain.as_bytes());
    write_private(&dir.join("key.pem"), pair.key.as_bytes());
    let ca = dir.join(format!("ca-{label}.pem"));
    std::fs::write(&ca, &pair.ca).unwrap();
    ca
}

/// The gateway's test configuration, served over TLS (not in development
/// mode: cookies are `Secure`), with `extra` appended.
fn tls_config(upstream: u16, dir: &Path, extra: &str) -> String {
    let base = gateway_config(upstream, extra).replace("development = true\n", "");
    format!(
        "{base}\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("chain.pem").display(),
        dir.join("key.pem").display()
    )
}

/// What curl got: the status, the HTTP version and the body (the upstream's
/// echo for a proxied request), or `None` when curl failed (no connection,
/// a certificate it does not trust, a protocol it refused).
struct Curled {
    status: u16,
    version: String,
    body: String,
    headers: String,
}

impl Curled {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }
}

/// curl to `https://localhost:{port}{path}` (resolved to 127.0.0.1, from
/// the allowed client address) trusting only `ca`, with `args` before.
fn curl_tls(port: u16, ca: &Path, path: &str, args: &[&str]) -> Option<Curled> {
    curl(
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ],
        &format!("https://localhost:{port}{path}"),
        args,
    )
}

fn curl(connection: &[&str], url: &str, args: &[&str]) -> Option<Curled> {
    let headers = tempfile_path("curl-headers");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", ALLOWED_CLIENT])
        .args(["-D", headers.to_str().unwrap()])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(connection)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let dumped = std::fs::read_to_string(&headers).unwrap_or_default();
    let _ = std::fs::remove_file(&headers);
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (status, version) = tail.split_once(' ').unwrap();
    Some(Curled {
        status: status.parse().unwrap(),
        version: version.to_owned(),
        body: body.to_owned(),
        headers: dumped,
    })
}

fn tempfile_path(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// A bearer token for `admin` from the bearer-pair login, over curl.
fn bearer(connection: &[&str], base: &str) -> String {
    let reply = curl(
        connection,
        &format!("{base}/api/login"),
        &[
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"username":"admin","password":"admin"}"#,
        ],
    )
    .expect("login over curl");
    assert_eq!(reply.status, 200, "{}", reply.body);
    format!(
        "Authorization: Bearer {}",
        reply.json()["access_token"].as_str().unwrap()
    )
}

fn bearer_tls(port: u16, ca: &Path) -> String {
    bearer(
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ],
        &format!("https://localhost:{port}"),
    )
}

/// An HTTP/2 connection over TLS to `addr`, trusting only `ca_pem`.
async fn h2_client(
    addr: SocketAddr,
    ca_pem: &str,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Bytes, Option<http::HeaderMap>) {
    let mut request = Request::get(format!("https://localhost:{port}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await
        .expect("an answer on the HTTP/2 connection");
    let status = response.status();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_over_tls_gets_the_guard_and_its_refusals_in_http2_and_http1() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("tls-curl");
    let ca = install(&dir, &make_pair("one"), "one");
    let gateway = Gateway::start(&tls_config(upstream.port, &dir, ""));
    let port = gateway.addr.port();
    let token = bearer_tls(port, &ca);

    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let ok = curl_tls(
            port,
            &ca,
            "/app/data",
            &[
                flag,
                "-H",
                &token,
                "-H",
                "X-Auth-Subject: root",
                "-H",
                "x_auth_roles: admin",
                "-H",
                "X-Forwarded-Proto: http",
            ],
        )
        .unwrap();
        assert_eq!(
            (ok.status, ok.version.as_str()),
            (200, version),
            "{flag}: {}",
            ok.body
        );
        // The token's subject, never the client's; https as the scheme.
        assert_eq!(
            ok.upstream_header("x-auth-subject").as_deref(),
            Some("admin")
        );
        assert!(
            ok.json()["headers"].get("x_auth_roles").is_none(),
            "{flag}: {}",
            ok.body
        );
        assert_eq!(
            ok.upstream_header("x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            ok.upstream_header("host"),
            Some(format!("localhost:{port}")),
            "{flag}: the authority reaches the upstream as Host"
        );

        let refused = curl_tls(port, &ca, "/app/data", &[flag]).unwrap();
        assert_eq!(refused.status, 401, "{flag}");
        assert!(
            refused
                .headers
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{flag}: {}",
            refused.headers
        );

        let bad = curl_tls(
            port,
            &ca,
            "/a/%2e%2e/b",
            &[flag, "--path-as-is", "-H", &token],
        )
        .unwrap();
        assert_eq!(bad.status, 400, "{flag}: {}", bad.body);

        // :authority (or the absolute URL) and a Host that differ.
        let mismatch = curl_tls(
            port,
            &ca,
            "/app/data",
            &[flag, "-H", &token, "-H", "Host: evil.example"],
        );
        if flag == "--http2" {
            // curl sends the Host header as :authority: one value, no
            // disagreement to find; the upstream sees what was sent.
            let reply = mismatch.unwrap();
            assert_eq!(
                reply.upstream_header("host").as_deref(),
                Some("evil.example")
            );
        } else {
            assert_eq!(mismatch.unwrap().status, 200);
        }
    }

    // TLS 1.2 is served too.
    let twelve = curl_tls(port, &ca, "/healthz", &["--tls-max", "1.2"]).unwrap();
    assert_eq!(twelve.status, 200);

    // A login over TLS sets Secure cookies (no development mode).
    let login = curl_tls(
        port,
        &ca,
        "/login",
        &["--data", "username=admin&password=admin"],
    )
    .unwrap();
    let cookies: Vec<&str> = login
        .headers
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .collect();
    assert!(!cookies.is_empty(), "{}", login.headers);
    for cookie in cookies {
        assert!(cookie.contains("; Secure"), "{cookie}");
    }

    // A client that does not trust the CA gets no answer.
    let stranger = dir.join("stranger.pem");
    std::fs::write(&stranger, make_pair("stranger").ca).unwrap();
    assert!(curl_tls(port, &stranger, "/healthz", &[]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_of_an_http2_request_must_agree() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("tls-hosts");
    let pair = make_pair("hosts");
    let ca = install(&dir, &pair, "hosts");
    let gateway = Gateway::start(&tls_config(upstream.port, &dir, ""));
    let port = gateway.addr.port();
    let token = bearer_tls(port, &ca);
    let token = token.strip_prefix("Authorization: ").unwrap();
    let mut h2 = h2_client(gateway.addr, &pair.ca).await;
    let (status, body, _) = h2_get(&mut h2, port, "/app", &[("authorization", token)]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, _, _) = h2_get(
        &mut h2,
        port,
        "/app",
        &[("authorization", token), ("host", "evil.example")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        ":authority and Host differ"
    );
    let (status, _, _) = h2_get(
        &mut h2,
        port,
        "/app",
        &[
            ("authorization", token),
            ("host", &format!("LOCALHOST:{port}")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the same host, another case");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_swaps_the_certificate_for_new_connections_and_refuses_a_bad_pair() {
    let upstream = Upstream::start().await;
    let dir = temp_dir("tls-reload");
    let first = make_pair("first");
    let ca_first = install(&dir, &first, "first");
    let metrics_port = free_port();
    let gateway = Gateway::start(&tls_config(
        upstream.port,
        &dir,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    ));
    let port = gateway.addr.port();
    let expiry = || {
        let scraped = curl(
            &[],
            &format!("http://127.0.0.1:{metrics_port}/metrics"),
            &[],
        )
        .expect("/metrics answers");
        scraped
            .body
            .lines()
            .find_map(|line| {
                line.strip_prefix("authgate_tls_certificate_expiry_timestamp_seconds ")
            })
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no expiry gauge in\n{}", scraped.body))
    };
    // rcgen's default notAfter: 4096-01-01.
    assert_eq!(expiry(), "67090118400");

    // An HTTP/2 connection opened before the reload.
    let mut open = h2_client(gateway.addr, &first.ca).await;
    let (status, _, _) = h2_get(&mut open, port, "/public/before", &[]).await;
    assert_eq!(status, StatusCode::OK);

    let second = make_pair_until("second", Some((2051, 6, 1)));
    let ca_second = install(&dir, &second, "second");
    gateway.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl_tls(port, &ca_second, "/healthz", &[]).is_none() {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        curl_tls(port, &ca_first, "/healthz", &[]).is_none(),
        "a new connection still gets the old certificate"
    );
    // The connection opened before goes on.
    let (status, body, _) = h2_get(&mut open, port, "/public/after", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(expiry(), "2569190400");

    // An expired certificate: refused, the running pair (and its expiry) stays.
    let expired = make_pair_until("expired", Some((2020, 1, 1)));
    let ca_expired = install(&dir, &expired, "expired");
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(curl_tls(port, &ca_expired, "/healthz", &[]).is_none());
    assert_eq!(
        curl_tls(port, &ca_second, "/healthz", &[]).unwrap().status,
        200
    );
    assert_eq!(expiry(), "2569190400");
    check_refuses(
        &gateway.config,
        &[
            "server.tls.cert",
            "chain.pem",
            "expired at 2020-01-01T00:00:00Z",
        ],
    );

    // A key that is not the certificate's: refused, the running pair stays.
    write_private(&dir.join("key.pem"), make_pair("other").key.as_bytes());
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let still = curl_tls(port, &ca_second, "/healthz", &[]).expect("the running pair stays");
    assert_eq!(still.status, 200);
    // So does a chain that is not PEM.
    install(&dir, &second, "second");
    std::fs::write(dir.join("chain.pem"), "not a certificate\n").unwrap();
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        curl_tls(port, &ca_second, "/healthz", &[]).unwrap().status,
        200
    );
    let (status, _, _) = h2_get(&mut open, port, "/public/last", &[]).await;
    assert_eq!(status, StatusCode::OK);

    // `authgate check` names the file at fault.
    install(&dir, &second, "second");
    write_private(&dir.join("key.pem"), make_pair("other").key.as_bytes());
    check_refuses(&gateway.config, &["server.tls.key", "key.pem"]);
}

/// `authgate check CONFIG` fails, its error naming each of `named`.
fn check_refuses(config: &Path, named: &[&str]) {
    let checked = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("check")
        .arg(config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{said}");
    for name in named {
        assert!(said.contains(name), "{name} is not in: {said}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_1_is_refused_with_a_fatal_alert() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let dir = temp_dir("tls-old");
    install(&dir, &make_pair("old"), "old");
    let gateway = Gateway::start(&tls_config(upstream.port, &dir, ""));
    // A ClientHello offering TLS 1.1 at most (no supported_versions
    // extension), with cipher suites a TLS 1.2 server takes
    // (ECDHE-ECDSA/RSA-AES128-GCM-SHA256): only its version is wrong.
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x5a; 32]);
    hello.extend_from_slice(&[0x00, 0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f, 0x01, 0x00]);
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    // No ServerHello: a fatal alert record (rustls answers
    // handshake_failure, 40; protocol_version, 70, would do as well).
    assert_eq!(answer.first(), Some(&0x15), "{answer:02x?}");
    assert_eq!(answer.get(5), Some(&0x02), "fatal: {answer:02x?}");
    assert!(matches!(answer.get(6), Some(40 | 70)), "{answer:02x?}");
    assert_eq!(answer.len(), 7, "nothing but the alert: {answer:02x?}");
    // curl, limited to TLS 1.1, gets nothing either.
    let ca = dir.join("ca-old.pem");
    assert!(curl_tls(gateway.addr.port(), &ca, "/healthz", &["--tls-max", "1.1"]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_with_prior_knowledge_gets_the_same_guard() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config_with_server(upstream.port, "h2c = true", ""));
    let base = format!("http://{}", gateway.addr);
    let token = bearer(&["--http2-prior-knowledge"], &base);
    let ok = curl(
        &["--http2-prior-knowledge"],
        &format!("{base}/app"),
        &["-H", &token, "-H", "X-Auth-Subject: root"],
    )
    .unwrap();
    assert_eq!((ok.status, ok.version.as_str()), (200, "2"), "{}", ok.body);
    assert_eq!(
        ok.upstream_header("x-auth-subject").as_deref(),
        Some("admin")
    );
    assert_eq!(
        ok.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    let refused = curl(&["--http2-prior-knowledge"], &format!("{base}/app"), &[]).unwrap();
    assert_eq!((refused.status, refused.version.as_str()), (401, "2"));
    let bad = curl(
        &["--http2-prior-knowledge"],
        &format!("{base}/a/%2e%2e/b"),
        &["--path-as-is", "-H", &token],
    )
    .unwrap();
    assert_eq!(bad.status, 400);
    // HTTP/1.1 on the same listener still works, POST (a first byte `P`
    // as in the preface) included.
    let http1 = curl(&["--http1.1"], &format!("{base}/app"), &["-H", &token]).unwrap();
    assert_eq!((http1.status, http1.version.as_str()), (200, "1.1"));
    let post = curl(
        &["--http1.1"],
        &format!("{base}/app"),
        &["-H", &token, "--data", "x=1"],
    )
    .unwrap();
    assert_eq!(post.status, 200);
    assert_eq!(post.json()["method"], "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_over_its_bound_is_431_over_both_protocols_and_never_forwarded() {
    let upstream = Upstream::start().await;
    // The default (16 KiB), then a wider one.
    for (server_key, bound_kib) in [("", 16), ("max_request_headers_kib = 32\n", 32)] {
        let gateway = Gateway::start(&config_with_server(
            upstream.port,
            &format!("h2c = true\n{server_key}"),
            "",
        ));
        let base = format!("http://{}", gateway.addr);
        for protocol in ["--http1.1", "--http2-prior-knowledge"] {
            let token = bearer(&[protocol], &base);
            // A field 2 KiB under the bound passes whole; one as large as
            // the bound (the rest of the head on top) is refused.
            let within = "w".repeat((bound_kib - 2) * 1024);
            let passed = curl(
                &[protocol],
                &format!("{base}/app"),
                &["-H", &token, "-H", &format!("X-Padding: {within}")],
            )
            .expect("an answer within the bound");
            assert_eq!(
                passed.status, 200,
                "{protocol}, {bound_kib} KiB: {}",
                passed.body
            );
            assert_eq!(
                passed.upstream_header("x-padding").map(|value| value.len()),
                Some(within.len()),
                "{protocol}, {bound_kib} KiB"
            );
            let over = "o".repeat(bound_kib * 1024);
            for (path, credentials) in [("/app", token.as_str()), ("/public/echo", "X-Any: 1")] {
                let refused = curl(
                    &[protocol],
                    &format!("{base}{path}"),
                    &["-H", credentials, "-H", &format!("X-Padding: {over}")],
                )
                .expect("an answer over the bound");
                assert_eq!(
                    refused.status, 431,
                    "{protocol}, {bound_kib} KiB, {path}: {}",
                    refused.body
                );
                assert!(
                    !refused.body.contains("\"headers\""),
                    "{protocol}, {path}: reached the upstream: {}",
                    refused.body
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_upstream_passes_response_trailers_to_an_http2_client() {
    let h2_upstream = start_h2c_upstream().await;
    let dir = temp_dir("tls-grpc");
    let pair = make_pair("grpc");
    let ca = install(&dir, &pair, "grpc");
    let config = tls_config(h2_upstream, &dir, "").replace(
        "connect_timeout = ",
        "protocol = \"h2c\"\nconnect_timeout = ",
    );
    let gateway = Gateway::start(&config);
    let port = gateway.addr.port();
    let token = bearer_tls(port, &ca);
    let token = token.strip_prefix("Authorization: ").unwrap();
    let mut h2 = h2_client(gateway.addr, &pair.ca).await;
    for _ in 0..3 {
        let (status, body, trailers) = h2_get(
            &mut h2,
            port,
            "/svc.Echo/Call",
            &[
                ("authorization", token),
                ("content-type", "application/grpc"),
                ("x-auth-subject", "root"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["headers"]["x-auth-subject"], "admin");
        assert_eq!(echo["headers"]["te"], "trailers", "gRPC asks for trailers");
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
        let trailers = trailers.expect("the upstream's trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "echoed");
    }
    // Without a token: the guard's refusal, not the upstream.
    let (status, _, _) = h2_get(&mut h2, port, "/svc.Echo/Call", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// An HTTP/2 upstream over TLS (ALPN `h2` only) with `pair`'s certificate,
/// answering as [`serve_grpc_echo`]; its port.
async fn start_h2_tls_upstream(pair: &Pair) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(pair.chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_grpc_echo(tls).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_upstream_over_tls_is_verified_against_its_ca() {
    let upstream_pair = make_pair("upstream");
    let h2_port = start_h2_tls_upstream(&upstream_pair).await;
    let dir = temp_dir("tls-h2-upstream");
    std::fs::write(dir.join("upstream-ca.pem"), &upstream_pair.ca).unwrap();
    let front = make_pair("front");
    let ca = install(&dir, &front, "front");
    let with = |ca: &str| {
        tls_config(1, &dir, "").replace(
            "url = \"http://127.0.0.1:1\"\n",
            &format!(
                "url = \"https://localhost:{h2_port}\"\nprotocol = \"h2\"\nca = \"{}\"\n",
                dir.join(ca).display()
            ),
        )
    };
    // HTTP/2 end to end, TLS on both sides: the trailers come through.
    let gateway = Gateway::start(&with("upstream-ca.pem"));
    let port = gateway.addr.port();
    let token = bearer_tls(port, &ca);
    let token = token.strip_prefix("Authorization: ").unwrap();
    let mut h2 = h2_client(gateway.addr, &front.ca).await;
    let (status, body, trailers) = h2_get(
        &mut h2,
        port,
        "/svc.Echo/Call",
        &[
            ("authorization", token),
            ("content-type", "application/grpc+proto"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["headers"]["x-auth-subject"], "admin");
    assert_eq!(echo["headers"]["te"], "trailers");
    assert_eq!(echo["headers"]["host"], Value::Null, ":authority, not Host");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    // An HTTP/1.1 client is answered too.
    let http1 = curl_tls(
        port,
        &ca,
        "/app",
        &["--http1.1", "-H", &format!("Authorization: {token}")],
    )
    .unwrap();
    assert_eq!(http1.status, 200, "{}", http1.body);

    // An upstream whose certificate the CA file does not vouch for: 502.
    std::fs::write(dir.join("other-ca.pem"), make_pair("other").ca).unwrap();
    let wrong = Gateway::start(&with("other-ca.pem"));
    let port = wrong.addr.port();
    let token = bearer_tls(port, &ca);
    let refused = curl_tls(port, &ca, "/app", &["-H", &token]).unwrap();
    assert_eq!(refused.status, 502, "{}", refused.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hmac_key_file_signs_the_tokens() {
    use base64::Engine;
    let upstream = Upstream::start().await;
    let dir = temp_dir("tls-hmac");
    let secret = b"a shared secret of at least thirty-two bytes, for HS256";
    let path = dir.join("secret.bin");
    // A final newline, as `echo` writes: not part of the secret.
    write_private(&path, &[&secret[..], b"\n"].concat());
    let config = gateway_config(upstream.port, "").replace(
        "signing_key = \"ephemeral\"\n",
        &format!(
            "signing_key = \"{}\"\nalgorithm = \"HS256\"\n",
            path.display()
        ),
    );
    let gateway = Gateway::start(&config);
    let base = format!("http://{}", gateway.addr);
    let token = bearer(&[], &base);
    let jwt = token.strip_prefix("Authorization: Bearer ").unwrap();
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signed.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "HS256");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::hmac::sign(&key, signed.as_bytes()).as_ref());
    assert_eq!(
        signature, expected,
        "signed with the file's bytes less the newline"
    );
    let ok = curl(&[], &format!("{base}/app"), &["-H", &token]).unwrap();
    assert_eq!(ok.status, 200);

    // Too short a secret, and a file others can read: `check` says so.
    let check = |config: &str| {
        let file = dir.join("check.toml");
        std::fs::write(&file, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write_private(&path, b"too short\n");
    let (ok, said) = check(&config);
    assert!(
        !ok && said.contains("keys.signing_key") && said.contains("secret.bin"),
        "{said}"
    );
    write_private(&path, secret);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (ok, said) = check(&config);
    assert!(!ok && said.contains("signing_key_permissions"), "{said}");
}
