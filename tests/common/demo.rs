//! The demo application served on an ephemeral loopback port, and a small
//! HTTP client for the tests that talk to it.

#[path = "../../examples/demo/app.rs"]
pub mod app;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_authgate::clock::now_seconds;
use tower_authgate::otp::TotpVerifier;
use tower_authgate::token::{Algorithm, SigningKey};

pub struct Server {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    pub key: SigningKey,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn cookie_value(&self, name: &str) -> Option<String> {
        self.cookies().iter().find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.text))
            .to_owned()
    }
}

/// The attributes of a `Set-Cookie` value, sorted.
pub fn cookie_attributes(set_cookie: &str) -> Vec<&str> {
    let mut attributes: Vec<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    attributes.sort_unstable();
    attributes
}

pub async fn start() -> Server {
    let key = demo_key();
    start_with(key, tower_authgate::ip::IpRules::allow_all()).await
}

pub async fn start_with(key: SigningKey, ip_rules: tower_authgate::ip::IpRules) -> Server {
    start_config(app::DemoConfig {
        signing_key: Some(key),
        ip_rules,
        ..config()
    })
    .await
}

pub async fn start_config(config: app::DemoConfig) -> Server {
    let key = config.signing_key.clone().expect("a test key");
    let router = app::build(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            // Only `stop` ends it: a `Server` dropped keeps serving until
            // the test's runtime ends, as it always did.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
        .unwrap()
    });
    Server {
        addr,
        client: Client::builder(TokioExecutor::new()).build_http(),
        key,
        shutdown,
        serving,
    }
}

impl Server {
    /// Stops the instance: no new connections, its connections closed, its
    /// in-memory state gone. What outlives it is only what it kept in a
    /// shared store.
    pub async fn stop(self) {
        let Server {
            client,
            shutdown,
            serving,
            ..
        } = self;
        // The client's idle connections close with it, so the server's
        // graceful shutdown has nothing to wait for.
        drop(client);
        let _ = shutdown.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), serving)
            .await
            .expect("the demo stops within 5 s")
            .unwrap();
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .client
            .request(builder.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {text}");
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(method, path, &all, body.to_string().into_bytes())
            .await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, Vec::new()).await
    }
}

pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----authgate-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

pub fn operator_code(offset_steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(app::OPERATOR_TOTP_SECRET.into())
        .to_bytes()
        .unwrap();
    let time = (now_seconds() as i64 + offset_steps * 30) as u64;
    TotpVerifier::default().generate(&secret, time).unwrap()
}

/// The demo as the tests run it: development cookies, the fixture signing
/// key, every address allowed, 127.0.0.1 a trusted proxy, no throttle, the
/// default lockout, in-memory stores.
pub fn config() -> app::DemoConfig {
    app::DemoConfig {
        development: true,
        signing_key: Some(demo_key()),
        ip_rules: tower_authgate::ip::IpRules::allow_all(),
        trusted_proxies: tower_authgate::ip::IpRanges::parse_list("127.0.0.1").unwrap(),
        login_throttle_per_minute: 0,
        lockout: tower_authgate::lockout::Lockout::default(),
        redis_url: None,
        external: None,
        refresh_reuse_grace: tower_authgate::login::DEFAULT_REUSE_GRACE,
        issuer_clock: None,
        hashing_workers: None,
    }
}

pub fn demo_key() -> SigningKey {
    SigningKey::from_pem(Algorithm::EdDSA, &super::key_pem("ed25519_private"))
        .unwrap()
        .with_kid("demo")
}
