//! Remote keys against a JWKS provider served on loopback: rotation, a
//! provider that is down (stale keys serve, then expire), unknown-`kid`
//! storms, malformed sets, slow answers, discovery, `max-age`, the AuthLayer
//! path, and document 001's external login end to end.
#![cfg(all(feature = "jwks", feature = "presets"))]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_authgate::TokenError;
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::login::{AllowedSubjects, JwtIssuer, LoginFlow, MemoryUsers};
use tower_authgate::schemes::bearer_pair::BearerPair;
use tower_authgate::token::jwks::{JwksConfig, JwksSource};
use tower_authgate::token::{KeySource, SigningKey, TokenSources, Verifier};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Slow,
    Malformed,
}

struct Provider {
    keys: Vec<SigningKey>,
    /// JWKs published as they are, beside the keys' public ones.
    extra: Vec<Value>,
    mode: Mode,
    max_age: Option<u64>,
    discovery_issuer: Option<String>,
    hits: u64,
}

type Shared = Arc<Mutex<Provider>>;

async fn jwks(State(state): State<Shared>) -> Response {
    let (mode, body, max_age) = {
        let mut p = state.lock().unwrap();
        p.hits += 1;
        let keys: Vec<Value> = p
            .keys
            .iter()
            .map(|k| serde_json::to_value(k.public_jwk().unwrap()).unwrap())
            .chain(p.extra.iter().cloned())
            .collect();
        (p.mode, json!({"keys": keys}).to_string(), p.max_age)
    };
    match mode {
        Mode::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Malformed => "{\"keys\": [not json".into_response(),
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            body.into_response()
        }
        Mode::Up => {
            let mut response = body.into_response();
            if let Some(age) = max_age {
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    format!("public, max-age={age}").parse().unwrap(),
                );
            }
            response
        }
    }
}

async fn discovery(State(state): State<Shared>, request: Request<Body>) -> Response {
    let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
    let issuer = state
        .lock()
        .unwrap()
        .discovery_issuer
        .clone()
        .unwrap_or(format!("http://{host}"));
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("http://{host}/jwks.json")}))
        .into_response()
}

struct Idp {
    base: String,
    state: Shared,
}

impl Idp {
    async fn start(keys: Vec<SigningKey>) -> Idp {
        let state = Arc::new(Mutex::new(Provider {
            keys,
            extra: Vec::new(),
            mode: Mode::Up,
            max_age: None,
            discovery_issuer: None,
            hits: 0,
        }));
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp {
            base: format!("http://{addr}"),
            state,
        }
    }

    fn url(&self) -> String {
        format!("{}/jwks.json", self.base)
    }

    fn set(&self, f: impl FnOnce(&mut Provider)) {
        f(&mut self.state.lock().unwrap());
    }

    fn hits(&self) -> u64 {
        self.state.lock().unwrap().hits
    }
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate_es256().unwrap().with_kid(kid)
}

fn external_token(key: &SigningKey, issuer: &str, sub: &str, aud: &str) -> String {
    let now = now_seconds();
    key.sign(&json!({"iss": issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + 300}))
        .unwrap()
}

fn quick() -> JwksConfig {
    JwksConfig::default()
        .with_refresh_interval(Duration::from_secs(60))
        .with_min_refetch_interval(Duration::from_secs(60))
        .with_max_staleness(Duration::from_secs(3600))
        .with_timeout(Duration::from_millis(300))
}

fn verifier(source: &JwksSource, issuer: &str) -> Verifier {
    Verifier::builder_with_source(Arc::new(source.clone()))
        .issuer(issuer)
        .audience("api")
        .any_kind()
        .build()
        .unwrap()
}

#[tokio::test]
async fn rotation_new_kid_appears_old_one_goes() {
    let (a, b) = (key("a"), key("b"));
    let idp = Idp::start(vec![a.clone()]).await;
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    let verifier = verifier(&source, "idp");
    // Before the first fetch there are no keys to judge with.
    assert_eq!(
        verifier
            .verify::<Value>(&external_token(&a, "idp", "alice", "api"))
            .map(|_| ()),
        Err(TokenError::KeysUnavailable)
    );
    source.refresh().await.unwrap();
    assert!(
        verifier
            .verify::<Value>(&external_token(&a, "idp", "alice", "api"))
            .is_ok()
    );

    // The provider rotates: b appears, a goes. A token signed by b triggers one refetch.
    idp.set(|p| p.keys = vec![b.clone()]);
    let fetches = source.fetches();
    assert!(
        verifier
            .verify_refreshing::<Value>(&external_token(&b, "idp", "alice", "api"))
            .await
            .is_ok()
    );
    assert_eq!(source.fetches(), fetches + 1);
    assert_eq!(
        verifier
            .verify::<Value>(&external_token(&a, "idp", "alice", "api"))
            .map(|_| ()),
        Err(TokenError::UnknownKey)
    );
    // Another unknown kid within the interval does not refetch.
    let c = key("c");
    assert_eq!(
        verifier
            .verify_refreshing::<Value>(&external_token(&c, "idp", "alice", "api"))
            .await
            .map(|_| ()),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(source.fetches(), fetches + 1);
}

#[tokio::test]
async fn provider_down_stale_keys_serve_then_expire() {
    let a = key("a");
    let idp = Idp::start(vec![a.clone()]).await;
    let config = quick().with_max_staleness(Duration::from_millis(400));
    let source = JwksSource::from_url(&idp.url(), config).unwrap();
    source.refresh().await.unwrap();
    idp.set(|p| p.mode = Mode::Down);
    assert!(source.refresh().await.is_err());
    let verifier = verifier(&source, "idp");
    let token = external_token(&a, "idp", "alice", "api");
    assert!(
        verifier.verify::<Value>(&token).is_ok(),
        "the last good set serves"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        verifier.verify::<Value>(&token).map(|_| ()),
        Err(TokenError::KeysUnavailable)
    );
    // The provider returns: fresh keys serve again.
    idp.set(|p| p.mode = Mode::Up);
    source.refresh().await.unwrap();
    assert!(verifier.verify::<Value>(&token).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_storm_costs_at_most_one_fetch() {
    let a = key("a");
    let idp = Idp::start(vec![a]).await;
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    source.refresh().await.unwrap();
    let verifier = verifier(&source, "idp");
    let before = idp.hits();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let verifier = verifier.clone();
            let token = external_token(&key(&format!("random-{i}")), "idp", "alice", "api");
            tokio::spawn(async move {
                verifier
                    .verify_refreshing::<Value>(&token)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(TokenError::UnknownKey));
    }
    assert!(idp.hits() - before <= 1, "{} fetches", idp.hits() - before);
}

#[tokio::test]
async fn malformed_sets_keep_the_last_good_keys() {
    let a = key("a");
    let idp = Idp::start(vec![a.clone()]).await;
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    source.refresh().await.unwrap();
    idp.set(|p| p.mode = Mode::Malformed);
    let err = source.refresh().await.unwrap_err();
    assert!(err.to_string().contains("invalid JWK"), "{err}");
    // A set whose only key is unusable (HMAC keys are never published).
    idp.set(|p| {
        p.mode = Mode::Up;
        p.keys = vec![];
    });
    assert!(
        source
            .refresh()
            .await
            .unwrap_err()
            .to_string()
            .contains("no usable key")
    );
    assert!(
        verifier(&source, "idp")
            .verify::<Value>(&external_token(&a, "idp", "alice", "api"))
            .is_ok()
    );
    assert!(JwksSource::from_url("ftp://example.com/jwks", quick()).is_err());
}

#[tokio::test]
async fn slow_answers_time_out() {
    let idp = Idp::start(vec![key("a")]).await;
    idp.set(|p| p.mode = Mode::Slow);
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    let started = Instant::now();
    assert!(source.refresh().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        source.current().map(|_| ()),
        Err(TokenError::KeysUnavailable)
    );
}

#[tokio::test]
async fn discovery_documents() {
    let a = key("a");
    let idp = Idp::start(vec![a.clone()]).await;
    let source = JwksSource::discover(&idp.base, quick()).unwrap();
    source.refresh().await.unwrap();
    assert!(
        verifier(&source, &idp.base)
            .verify::<Value>(&external_token(&a, &idp.base, "alice", "api"))
            .is_ok()
    );
    // A document naming another issuer is refused (OIDC Discovery §4.3).
    idp.set(|p| p.discovery_issuer = Some("https://evil.example".into()));
    let other = JwksSource::discover(&idp.base, quick()).unwrap();
    assert!(
        other
            .refresh()
            .await
            .unwrap_err()
            .to_string()
            .contains("names issuer")
    );
}

#[tokio::test]
async fn max_age_drives_the_background_refresh() {
    let idp = Idp::start(vec![key("a")]).await;
    idp.set(|p| p.max_age = Some(0));
    let config = quick().with_min_refetch_interval(Duration::from_millis(100));
    let source = JwksSource::from_url(&idp.url(), config).unwrap();
    source.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while idp.hits() < 3 {
        assert!(Instant::now() < deadline, "only {} fetches", idp.hits());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With the default refresh interval and no max-age, one fetch only.
    let quiet = Idp::start(vec![key("a")]).await;
    let source = JwksSource::from_url(&quiet.url(), quick()).unwrap();
    source.start().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiet.hits(), 1);
}

#[tokio::test]
async fn several_issuers_each_with_its_own_keys() {
    let (a, b) = (key("a"), key("b"));
    let (one, two) = (
        Idp::start(vec![a.clone()]).await,
        Idp::start(vec![b.clone()]).await,
    );
    let s1 = JwksSource::from_url(&one.url(), quick()).unwrap();
    let s2 = JwksSource::from_url(&two.url(), quick()).unwrap();
    s1.refresh().await.unwrap();
    s2.refresh().await.unwrap();
    let verifier = Verifier::builder_with_source(Arc::new(s1))
        .issuer("one")
        .issuer_with_keys("two", Arc::new(s2))
        .audience("api")
        .any_kind()
        .build()
        .unwrap();
    assert!(
        verifier
            .verify::<Value>(&external_token(&a, "one", "alice", "api"))
            .is_ok()
    );
    assert!(
        verifier
            .verify::<Value>(&external_token(&b, "two", "alice", "api"))
            .is_ok()
    );
    // A key of one issuer does not sign for the other.
    assert!(
        verifier
            .verify::<Value>(&external_token(&a, "two", "alice", "api"))
            .is_err()
    );
    assert_eq!(
        verifier
            .verify::<Value>(&external_token(&b, "three", "alice", "api"))
            .map(|_| ()),
        // Refused on its claims before any key is looked up.
        Err(TokenError::WrongIssuer)
    );
}

#[tokio::test]
async fn the_auth_layer_waits_for_a_rotation_refetch() {
    let (a, b) = (key("a"), key("b"));
    let idp = Idp::start(vec![a]).await;
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    source.refresh().await.unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthLayer::<Value>::new(verifier(&source, "idp")).sources(TokenSources::bearer()));
    idp.set(|p| p.keys.push(b.clone()));
    let request = Request::get("/")
        .header(
            "authorization",
            format!("Bearer {}", external_token(&b, "idp", "alice", "api")),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
    idp.set(|p| p.mode = Mode::Down);
    let stale = JwksSource::from_url(&idp.url(), quick()).unwrap();
    let never = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthLayer::<Value>::new(verifier(&stale, "idp")));
    let request = Request::get("/")
        .header(
            "authorization",
            format!("Bearer {}", external_token(&b, "idp", "alice", "api")),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        never.oneshot(request).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn document_001_external_login_end_to_end() {
    let provider_key = key("auth0-1");
    let idp = Idp::start(vec![provider_key.clone()]).await;
    let issuer = format!("{}/", idp.base);
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    source.start().unwrap();
    let external = Verifier::builder_with_source(Arc::new(source))
        .issuer(issuer.clone())
        .audience("https://core.example/api")
        .any_kind()
        .build()
        .unwrap();
    let local = JwtIssuer::new(
        common::signing_key(tower_authgate::token::Algorithm::EdDSA),
        "datarhei-core",
    )
    .unwrap();
    let flow = LoginFlow::new(Arc::new(MemoryUsers::new().unwrap()), Arc::new(local));
    let app = BearerPair::new(flow)
        .with_external_login(Arc::new(AllowedSubjects::new(external, ["auth0|alice"])))
        .router();
    let login = |token: String| {
        let app = app.clone();
        async move {
            let response = app
                .oneshot(
                    Request::post("/api/login")
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = login(external_token(
        &provider_key,
        &issuer,
        "auth0|alice",
        "https://core.example/api",
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let claims: Value =
        serde_json::from_slice(&base64_decode(access.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(
        (
            claims["sub"].as_str(),
            claims["iss"].as_str(),
            claims["usefor"].as_str()
        ),
        (Some("auth0|alice"), Some("datarhei-core"), Some("access"))
    );
    assert!(body["refresh_token"].is_string());
    // A subject not allowed in, a wrong audience, a foreign signer.
    assert_eq!(
        login(external_token(
            &provider_key,
            &issuer,
            "auth0|mallory",
            "https://core.example/api"
        ))
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login(external_token(
            &provider_key,
            &issuer,
            "auth0|alice",
            "https://other/api"
        ))
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(external_token(
            &key("auth0-1"),
            &issuer,
            "auth0|alice",
            "https://core.example/api"
        ))
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn a_secret_published_in_a_remote_key_set_is_never_used() {
    // An identity provider publishes, by mistake, an HMAC secret beside its
    // public key.
    let secret = b"a secret someone published by mistake!!";
    let published = key("public");
    let idp = Idp::start(vec![published.clone()]).await;
    idp.set(|p| {
        p.extra.push(json!({
            "kty": "oct", "kid": "leaked", "alg": "HS256",
            "k": tower_authgate_b64(secret),
        }))
    });
    let source = JwksSource::from_url(&idp.url(), quick()).unwrap();
    source.refresh().await.unwrap();
    let keys = source.current().unwrap();
    assert_eq!(keys.keys().len(), 1, "only the public key is kept");
    assert_eq!(keys.keys()[0].kid(), Some("public"));
    let verifier = verifier(&source, "https://idp.example");
    // A token minted with the leaked secret is refused.
    let forged =
        tower_authgate::token::SigningKey::hmac(tower_authgate::token::Algorithm::HS256, secret)
            .unwrap()
            .with_kid("leaked");
    let token = external_token(&forged, "https://idp.example", "mallory", "api");
    assert!(verifier.verify::<Value>(&token).is_err());
    let good = external_token(&published, "https://idp.example", "alice", "api");
    assert!(verifier.verify::<Value>(&good).is_ok());
    // The same set read as the application's own secrets keeps it, by
    // explicit choice only.
    let document = json!({"keys": [{
        "kty": "oct", "kid": "leaked", "alg": "HS256", "k": tower_authgate_b64(secret),
    }]})
    .to_string();
    assert!(tower_authgate::token::KeySet::from_jwks_json(&document).is_err());
    assert_eq!(
        tower_authgate::token::KeySet::from_secret_jwks_json(&document)
            .unwrap()
            .keys()
            .len(),
        1
    );
}

fn tower_authgate_b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWK Set past its maximum staleness answers `503` for a token the
/// verifier's cache holds as for a fresh one, and serves both again once
/// the provider is back.
#[tokio::test]
async fn a_cached_token_is_refused_while_the_key_set_is_too_old() {
    let a = key("a");
    let idp = Idp::start(vec![a.clone()]).await;
    let config = quick().with_max_staleness(Duration::from_millis(400));
    let source = JwksSource::from_url(&idp.url(), config).unwrap();
    source.refresh().await.unwrap();
    let cached_verifier = Verifier::builder_with_source(Arc::new(source.clone()))
        .issuer("idp")
        .audience("api")
        .any_kind()
        .token_cache(100)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthLayer::<Value>::new(cached_verifier.clone()).sources(TokenSources::bearer()));
    let call = |token: String| {
        let app = app.clone();
        async move {
            let request = Request::get("/")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    let cached = external_token(&a, "idp", "alice", "api");
    assert_eq!(call(cached.clone()).await, StatusCode::OK);
    assert_eq!(cached_verifier.token_cache().unwrap().len(), 1);
    idp.set(|p| p.mode = Mode::Down);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = external_token(&a, "idp", "bob", "api");
    assert_eq!(call(fresh.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        call(cached.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a cached token is not served while the keys are unavailable"
    );
    idp.set(|p| p.mode = Mode::Up);
    source.refresh().await.unwrap();
    assert_eq!(call(cached).await, StatusCode::OK);
    assert_eq!(call(fresh).await, StatusCode::OK);
}
