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

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const OPERATOR_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const ALLOWED_CLIENT: &str = "127.0.0.5";
const DENIED_CLIENT: &str = "127.0.0.9";

/// A directory of its own under the system's temporary directory, removed
/// with everything in it when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "authgate-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The upstream: echo, WebSocket echo, slow.

struct Upstream {
    port: u16,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut accept_stopped = stopped.clone();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = accept_stopped.changed() => return,
                };
                let mut connection_stopped = stopped.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            TokioIo::new(stream),
                            hyper::service::service_fn(upstream),
                        )
                        .with_upgrades();
                    tokio::select! {
                        _ = connection => {}
                        _ = connection_stopped.changed() => {}
                    }
                });
            }
        });
        Upstream { port, stop }
    }

    /// Closes the listener and every open connection.
    async fn kill(&self) {
        self.stop.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            assert!(Instant::now() < deadline, "the upstream still listens");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn upstream(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(Response::new(Full::from("slow")));
    }
    if path == "/ws" {
        return Ok(websocket_echo(request));
    }
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let mut headers = serde_json::Map::new();
    for name in request.headers().keys() {
        let values: Vec<&str> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        headers.insert(name.to_string(), json!(values.join(" | ")));
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let echo = json!({"method": method, "uri": uri, "headers": headers, "body": String::from_utf8_lossy(&body)});
    Ok(Response::new(Full::from(echo.to_string())))
}

fn websocket_echo(mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = Response::new(Full::from("not a websocket handshake"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() || message.is_binary() {
                if ws.send(message).await.is_err() {
                    return;
                }
            } else if message.is_close() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Full::default())
        .unwrap()
}

// ---------------------------------------------------------------------------
// Processes, stopped when dropped.

struct Process {
    child: Child,
    name: &'static str,
    /// Its files, removed after the process is stopped.
    _dir: Option<TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn users_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-users.toml")
}

/// The gateway's configuration: the five presets, the upstream, the denied
/// client, a public path.
fn gateway_config(upstream: u16, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
development = true
trusted_proxies = ["127.0.0.1"]
shutdown_grace = "5s"

[upstream]
url = "http://127.0.0.1:{upstream}"
connect_timeout = "1s"
timeout = "1s"

[keys]
signing_key = "ephemeral"

[users]
file = "{users}"

[[login]]
preset = "cookie_session"
[[login]]
preset = "bearer_pair"
[[login]]
preset = "pascal_case"
[[login]]
preset = "auth_token"
[[login]]
preset = "x_auth_token"

[throttle]
per_minute = 1000

[guard]
ip_deny = ["{DENIED_CLIENT}"]
public_paths = ["/public/"]

[log]
level = "warn"
{extra}
"#,
        users = users_file().display()
    )
}

struct Gateway {
    process: Process,
    addr: SocketAddr,
    config: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    fn start(config: &str) -> Gateway {
        let dir = temp_dir("gateway");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start authgate");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("authgate listening on http://")
            .unwrap_or_else(|| panic!("authgate said {line:?}"))
            .parse()
            .unwrap();
        Gateway {
            process: Process {
                child,
                name: "authgate",
                _dir: None,
            },
            addr,
            config: path,
            _dir: dir,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.process.name);
    }
}

fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: scripts/test installs it (Debian package {name})");
}

/// The paths the gateway serves itself, which the fronts pass to it
/// without asking the decision endpoint.
const LOGIN_PATHS: &str = r"^/(login|logout|api/login|authenticate/|api/authentication/|api/v2/login|api/serviceAccounts|api/auth/lockedUsers)";

async fn start_nginx(gateway: SocketAddr, upstream: u16) -> (Process, u16) {
    let dir = temp_dir("nginx");
    let port = free_port();
    let conf = format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream authgate {{ server {gateway}; keepalive 8; }}
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location = /_authgate/verify {{
      internal;
      proxy_pass http://authgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-Method "";
    }}
    location ~ {LOGIN_PATHS} {{
      proxy_pass http://authgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
    location / {{
      auth_request /_authgate/verify;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_roles $upstream_http_x_auth_roles;
      auth_request_set $auth_spaces $upstream_http_x_auth_spaces;
      auth_request_set $auth_space $upstream_http_x_space;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Roles $auth_roles;
      proxy_set_header X-Auth-Spaces $auth_spaces;
      proxy_set_header X-Space $auth_space;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_connect_timeout 1s;
      proxy_read_timeout 1s;
      proxy_pass http://app;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(binary("nginx"))
        .arg("-p")
        .arg(&*dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let process = Process {
        child,
        name: "nginx",
        _dir: Some(dir),
    };
    wait_for_port(port, "nginx").await;
    (process, port)
}

async fn start_caddy(gateway: SocketAddr, upstream: u16) -> (Process, u16) {
    let dir = temp_dir("caddy");
    let port = free_port();
    let conf = format!(
        r#"{{
	admin off
	auto_https off
}}

http://127.0.0.1:{port} {{
	@login path_regexp login {LOGIN_PATHS}
	handle @login {{
		reverse_proxy {gateway}
	}}
	handle {{
		forward_auth {gateway} {{
			uri /_authgate/verify
			copy_headers X-Auth-Subject X-Auth-Roles X-Auth-Spaces X-Space
		}}
		reverse_proxy 127.0.0.1:{upstream} {{
			transport http {{
				dial_timeout 1s
				response_header_timeout 1s
			}}
		}}
	}}
}}
"#
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(binary("caddy"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .arg("--adapter")
        .arg("caddyfile")
        .env("HOME", &*dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caddy");
    let process = Process {
        child,
        name: "caddy",
        _dir: Some(dir),
    };
    wait_for_port(port, "caddy").await;
    (process, port)
}

// ---------------------------------------------------------------------------
// The client.

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON: {} {}", self.status, self.text))
    }

    /// The header `name` as the upstream received it.
    fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all("set-cookie").iter().find_map(|value| {
            value
                .to_str()
                .ok()?
                .strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
    }
}

struct Front {
    name: &'static str,
    port: u16,
    allowed: Client<HttpConnector, Full<Bytes>>,
    denied: Client<HttpConnector, Full<Bytes>>,
}

fn client_from(ip: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Front {
    fn new(name: &'static str, port: u16) -> Front {
        Front {
            name,
            port,
            allowed: client_from(ALLOWED_CLIENT),
            denied: client_from(DENIED_CLIENT),
        }
    }

    async fn send_with(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::from(body.to_owned())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{}: {path} hung", self.name))
            .unwrap_or_else(|err| panic!("{}: {path}: {err:?}", self.name));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.send_with(&self.allowed, method, path, headers, body)
            .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, "").await
    }

    async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await
    }
}

fn totp_now() -> String {
    use tower_authgate::login::NewUser;
    use tower_authgate::otp::TotpVerifier;
    let secret = NewUser::new("operator", "operator")
        .totp_base32(OPERATOR_TOTP_SECRET)
        .unwrap()
        .totp_secret
        .unwrap();
    TotpVerifier::default()
        .generate(&secret, tower_authgate::clock::now_seconds())
        .unwrap()
}

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
    let forged_alone = front.get("/app/echo", &[("x-auth-subject", "admin")]).await;
    assert_eq!(forged_alone.status, StatusCode::UNAUTHORIZED, "{name}");

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
    let traversal = front.get("/public/../app/echo", &[]).await;
    assert_eq!(traversal.status, StatusCode::UNAUTHORIZED);
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
