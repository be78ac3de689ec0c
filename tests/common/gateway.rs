//! Fixtures for the tests of the `authgate` binary as a real process on
//! loopback: a hyper upstream (echo, WebSocket echo, slow), the gateway
//! started from a configuration, nginx (`auth_request`) and Caddy
//! (`forward_auth`) in front of it, and a client bound to an allowed or a
//! denied address. Included by each `tests/gateway*.rs` with
//! `#[path = "common/gateway.rs"] mod fixtures;`.
//!
//! Clients connect from 127.0.0.5 (allowed) or 127.0.0.9 (denied); the
//! fronts reach the gateway from 127.0.0.1, the only trusted proxy.
#![allow(dead_code, unreachable_pub)]

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

pub const OPERATOR_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
pub const ALLOWED_CLIENT: &str = "127.0.0.5";
pub const DENIED_CLIENT: &str = "127.0.0.9";

/// A directory of its own under the system's temporary directory, removed
/// with everything in it when dropped.
pub struct TempDir(PathBuf);

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

pub fn temp_dir(name: &str) -> TempDir {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_for_port(port: u16, what: &str) {
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

pub struct Upstream {
    pub port: u16,
    pub stop: tokio::sync::watch::Sender<bool>,
}

impl Upstream {
    pub async fn start() -> Upstream {
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
    pub async fn kill(&self) {
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

pub async fn upstream(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(Response::new(Full::from("slow")));
    }
    if path == "/ws" || path == "/public/ws" {
        return Ok(websocket_echo(request));
    }
    if path.ends_with("/switch") {
        return Ok(switch_to_h2c(request));
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
    let collected = request.into_body().collect().await.ok();
    let mut trailers = serde_json::Map::new();
    if let Some(received) = collected.as_ref().and_then(|c| c.trailers()) {
        for (name, value) in received {
            trailers.insert(name.to_string(), json!(value.to_str().unwrap_or("?")));
        }
    }
    let body = collected.map(|c| c.to_bytes()).unwrap_or_default();
    let echo = json!({"method": method, "uri": uri, "headers": headers, "trailers": trailers, "body": String::from_utf8_lossy(&body)});
    Ok(Response::new(Full::from(echo.to_string())))
}

pub fn websocket_echo(mut request: Request<Incoming>) -> Response<Full<Bytes>> {
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

pub struct Process {
    pub child: Child,
    pub name: &'static str,
    /// Its files, removed after the process is stopped.
    pub _dir: Option<TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `examples/gateway-users.toml`, copied with mode 0600 under the test
/// build's temporary directory: git checks the example out readable by
/// everyone, a mode the gateway refuses for a users file.
pub fn users_file() -> PathBuf {
    static PRIVATE_COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PRIVATE_COPY
        .get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-users.toml");
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let copy = dir.join("gateway-users.toml");
            // Written aside and renamed: test binaries run side by side.
            let aside = dir.join(format!("gateway-users.toml.{}", std::process::id()));
            std::fs::copy(&example, &aside).expect("copy the example users file");
            std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::rename(&aside, &copy).unwrap();
            copy
        })
        .clone()
}

/// The gateway's configuration: the five presets, the upstream, the denied
/// client, a public path.
pub fn gateway_config(upstream: u16, extra: &str) -> String {
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

/// [`gateway_config`] with `server` added to its `[server]` table.
pub fn config_with_server(upstream: u16, server: &str, extra: &str) -> String {
    let config = gateway_config(upstream, extra);
    let anchor = "shutdown_grace = \"5s\"\n";
    assert!(
        config.contains(anchor),
        "the fixture's [server] table moved"
    );
    config.replacen(anchor, &format!("{anchor}{server}\n"), 1)
}

pub struct Gateway {
    pub process: Process,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub _dir: TempDir,
}

impl Gateway {
    pub fn start(config: &str) -> Gateway {
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
            .or_else(|| line.trim().strip_prefix("authgate listening on https://"))
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

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.process.name);
    }
}

pub fn binary(name: &str) -> PathBuf {
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
pub const LOGIN_PATHS: &str = r"^/(login|logout|api/login|authenticate/|api/authentication/|api/v2/login|api/serviceAccounts|api/auth/lockedUsers)";

pub async fn start_nginx(gateway: SocketAddr, upstream: u16) -> (Process, u16) {
    let dir = temp_dir("nginx");
    let conf = |port: u16| {
        format!(
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
  map $http_upgrade $websocket_upgrade {{ ~*^websocket$ websocket; default ''; }}
  map $websocket_upgrade $connection_upgrade {{ default upgrade; '' close; }}
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
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-Method "";
      proxy_set_header X-Auth-Subject "";
      proxy_set_header X-Auth-Roles "";
      proxy_set_header X-Auth-Spaces "";
    }}
    location ~ {LOGIN_PATHS} {{
      proxy_pass http://authgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
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
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $websocket_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_connect_timeout 1s;
      proxy_read_timeout 1s;
      proxy_pass http://app;
    }}
  }}
}}
"#,
            dir = dir.display()
        )
    };
    let path = dir.join("nginx.conf");
    let spawn = |port: u16| {
        std::fs::write(&path, conf(port)).unwrap();
        let child = Command::new(binary("nginx"))
            .arg("-p")
            .arg(&*dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        (child, None)
    };
    let (child, port) = start_on_a_free_port("nginx", spawn).await;
    let process = Process {
        child,
        name: "nginx",
        _dir: Some(dir),
    };
    (process, port)
}

/// A process `spawn` starts listening on the port it is given (with the
/// file its errors go to, if not the test's), and that port. A free port is
/// released before the process binds it, and a connection opened meanwhile
/// may take it as its source port: a process that exits before it listens
/// says why and is started again on another port.
async fn start_on_a_free_port(
    what: &str,
    spawn: impl Fn(u16) -> (Child, Option<PathBuf>),
) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let (mut child, log) = spawn(port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return (child, port);
            }
            if let Some(status) = child.try_wait().unwrap() {
                let said = log
                    .and_then(|log| std::fs::read_to_string(log).ok())
                    .unwrap_or_default();
                let last: Vec<&str> = said.lines().rev().take(3).collect();
                eprintln!(
                    "{what} exited before it listened on {port} ({status}): {last:?}; again on another port"
                );
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not listen on {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("{what} exited before it listened, five times");
}

pub async fn start_caddy(gateway: SocketAddr, upstream: u16) -> (Process, u16) {
    let dir = temp_dir("caddy");
    let conf = |port: u16| {
        format!(
            r#"{{
	admin off
	auto_https off
}}

http://127.0.0.1:{port} {{
	bind 127.0.0.1
	@login path_regexp login {LOGIN_PATHS}
	handle @login {{
		reverse_proxy {gateway}
	}}
	handle {{
		forward_auth {gateway} {{
			uri /_authgate/verify
			copy_headers X-Auth-Subject X-Auth-Roles X-Auth-Spaces X-Space
		}}
		@upgrade header_regexp Connection (?i)\bupgrade\b
		@not_upgrade not header_regexp Connection (?i)\bupgrade\b
		request_header @not_upgrade -Connection
		request_header @upgrade Connection Upgrade
		reverse_proxy 127.0.0.1:{upstream} {{
			transport http {{
				dial_timeout 1s
				response_header_timeout 1s
			}}
		}}
	}}
}}
"#
        )
    };
    let path = dir.join("Caddyfile");
    let spawn = |port: u16| {
        std::fs::write(&path, conf(port)).unwrap();
        // Its log, kept with its files (it logs every start at INFO).
        let log = dir.join(format!("caddy-{port}.log"));
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
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start caddy");
        (child, Some(log))
    };
    let (child, port) = start_on_a_free_port("caddy", spawn).await;
    let process = Process {
        child,
        name: "caddy",
        _dir: Some(dir),
    };
    (process, port)
}

// ---------------------------------------------------------------------------
// The client.

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON: {} {}", self.status, self.text))
    }

    /// The header `name` as the upstream received it.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all("set-cookie").iter().find_map(|value| {
            value
                .to_str()
                .ok()?
                .strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
    }
}

/// The upstream echo's JSON, when `body` is one (a request the upstream
/// received); `None` for anything a front or the gateway answered itself.
pub fn echo_of(body: &str) -> Option<Value> {
    serde_json::from_str::<Value>(body)
        .ok()
        .filter(|json| json.get("headers").is_some())
}

pub struct Front {
    pub name: &'static str,
    pub port: u16,
    pub allowed: Client<HttpConnector, Full<Bytes>>,
    pub denied: Client<HttpConnector, Full<Bytes>>,
}

pub fn client_from(ip: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Front {
    pub fn new(name: &'static str, port: u16) -> Front {
        Front {
            name,
            port,
            allowed: client_from(ALLOWED_CLIENT),
            denied: client_from(DENIED_CLIENT),
        }
    }

    pub async fn send_with(
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

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.send_with(&self.allowed, method, path, headers, body)
            .await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, "").await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await
    }
}

pub fn totp_now() -> String {
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

/// Sends `raw` bytes from the allowed client's address to `addr` as they
/// are and returns everything the server answered until it closed the
/// connection or `timeout` passed: for requests no well-behaved client
/// library would send.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(ALLOWED_CLIENT.parse().unwrap(), 0))
        .expect("bind the allowed client's address");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of the first response in `answer` (0 when there is none).
pub fn raw_status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The operator's access cookie (password, then the TOTP step), signed in
/// through the gateway itself: one sign-in per gateway, as a TOTP step is
/// accepted once.
pub async fn operator_cookie(gateway: &Gateway) -> String {
    let front = Front::new("authgate proxy", gateway.addr.port());
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let pending = front
        .send(
            Method::POST,
            "/login",
            &form,
            "username=operator&password=operator",
        )
        .await;
    assert_eq!(pending.json()["otp-required"], true, "{}", pending.text);
    let otp_cookie = format!("ins_otp_token={}", pending.cookie("ins_otp_token").unwrap());
    let otp = front
        .send(
            Method::POST,
            "/login/otp",
            &[form[0], ("cookie", &otp_cookie)],
            &format!("otp={}", totp_now()),
        )
        .await;
    assert_eq!(otp.status, StatusCode::OK, "{}", otp.text);
    format!(
        "ins_access_token={}",
        otp.cookie("ins_access_token").unwrap()
    )
}

/// A bearer access token for `username` (password equal to the username,
/// as in `examples/gateway-users.toml`) from the bearer-pair login, through
/// `front`.
pub async fn bearer_token(front: &Front, username: &str) -> String {
    let pair = front
        .post_json(
            "/api/login",
            json!({"username": username, "password": username}),
        )
        .await;
    assert_eq!(pair.status, StatusCode::OK, "{}: {}", front.name, pair.text);
    let access = pair.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    format!("Bearer {access}")
}

/// An upstream that answers any request with `101` switching to `h2c`,
/// then echoes every byte: if a proxy joined it to its client, the client
/// would read back what it wrote.
pub fn switch_to_h2c(mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 1024];
        while let Ok(read) = io.read(&mut buf).await {
            if read == 0 || io.write_all(&buf[..read]).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "h2c")
        .body(Full::default())
        .unwrap()
}

/// An HTTP/2 upstream with prior knowledge (h2c) on loopback: every
/// response is the echo's JSON (method, URI, headers, and the request's
/// trailers) followed by the trailers `grpc-status: 0` and
/// `grpc-message: echoed`, as a gRPC server ends its answers. Runs until
/// the test's runtime stops.
pub async fn start_h2c_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_grpc_echo(stream));
        }
    });
    port
}

/// Serves HTTP/2 on `io` (prior knowledge, or after TLS with ALPN `h2`):
/// the echo's JSON, then the trailers `grpc-status: 0` and
/// `grpc-message: echoed`.
pub async fn serve_grpc_echo<I>(io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::StreamBody;
    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
        let echo = upstream(request)
            .await
            .unwrap_or_else(|never| match never {});
        let body = echo.into_body().collect().await.unwrap().to_bytes();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "echoed".parse().unwrap());
        let frames: Vec<Result<hyper::body::Frame<Bytes>, Infallible>> = vec![
            Ok(hyper::body::Frame::data(body)),
            Ok(hyper::body::Frame::trailers(trailers)),
        ];
        Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
            frames,
        ))))
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}
