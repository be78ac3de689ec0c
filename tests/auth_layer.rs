//! AuthLayer, black-box over `tower::ServiceExt::oneshot`.

mod common;

use std::convert::Infallible;

use common::*;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::reject::JsonRejection;
use tower_authgate::token::{
    Algorithm, Anonymous, KeySet, MultipleCredentials, SigningKey, TokenSource, TokenSources,
    VerifiedToken, Verifier,
};

fn all_sources() -> TokenSources {
    TokenSources::new([
        TokenSource::cookie("ins_access_token"),
        TokenSource::bearer(),
        TokenSource::try_header("X-Auth-Token").unwrap(),
    ])
    .unwrap()
}

fn key() -> SigningKey {
    signing_key(Algorithm::HS256)
}

fn layer(sources: TokenSources) -> AuthLayer<Value> {
    let verifier = Verifier::builder(KeySet::single(key().verifying_key()))
        .build()
        .unwrap();
    AuthLayer::new(verifier).sources(sources)
}

/// A verifier over [`key`] that keeps a cache of the tokens it verified.
fn cached_verifier() -> Verifier {
    Verifier::builder(KeySet::single(key().verifying_key()))
        .token_cache(100)
        .build()
        .unwrap()
}

/// Echoes who the request was authenticated as, and where the token was.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let ext = req.extensions();
    let token = ext.get::<VerifiedToken>();
    let body = match (
        token.and_then(VerifiedToken::claims::<Value>),
        ext.get::<Anonymous>(),
    ) {
        (Some(c), _) => {
            let token = token.expect("claims come in a verified token");
            let meta = token.meta();
            let found = token.found_in();
            format!(
                "{} {:?} {}",
                c["sub"].as_str().unwrap_or("?"),
                found,
                meta.expires_at > 0
            )
        }
        (None, Some(_)) => "anonymous".to_owned(),
        (None, None) => "unreachable".to_owned(),
    };
    Ok(Response::new(body))
}

async fn send_with<R>(layer: AuthLayer<Value, R>, request: Request<String>) -> Response<String>
where
    R: tower_authgate::reject::OnRejection<String> + Clone,
{
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(echo))
        .oneshot(request)
        .await
        .unwrap()
}

async fn send(layer: AuthLayer<Value>, request: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(echo))
        .oneshot(request)
        .await
        .unwrap()
}

fn request(headers: &[(&str, &str)]) -> Request<String> {
    let mut builder = Request::builder().uri("/api/me");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

fn token_for(sub: &str) -> String {
    key().sign(&access_claims(sub)).unwrap()
}

fn challenge(response: &Response<String>) -> &str {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("WWW-Authenticate")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn each_source_yields_the_claims() {
    let token = token_for("admin");
    let cases = [
        (("cookie", format!("ins_access_token={token}")), "Cookie"),
        (("authorization", format!("Bearer {token}")), "Bearer"),
        (("x-auth-token", token.clone()), "Header"),
    ];
    for ((name, value), found) in cases {
        let response = send(layer(all_sources()), request(&[(name, &value)])).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(response.body(), &format!("admin {found} true"));
    }
}

#[tokio::test]
async fn sources_not_configured_are_not_read() {
    let token = token_for("admin");
    let response = send(
        layer(TokenSources::bearer()),
        request(&[
            ("x-auth-token", &token),
            ("cookie", &format!("ins_access_token={token}")),
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_query_string_is_never_read() {
    let token = token_for("admin");
    let request = Request::builder()
        .uri(format!("/api/me?access_token={token}"))
        .body(String::new())
        .unwrap();
    let response = send(layer(all_sources()), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), r#"Bearer realm="api""#);
}

#[tokio::test]
async fn two_different_credentials_are_refused_unless_take_first() {
    let admin = token_for("admin");
    let other = token_for("operator");
    let headers = [
        ("authorization", format!("Bearer {other}")),
        ("x-auth-token", admin.clone()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();

    let response = send(layer(all_sources()), request(&headers)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&response).contains(r#"error="invalid_request""#));
    assert_eq!(response.body(), "", "the default answer has no body");
    let json = layer(all_sources()).on_rejection(JsonRejection);
    let response = send_with(json, request(&headers)).await;
    let body: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["error"], "invalid_request");

    // Configured to take the first present source, in the configured order.
    let first = all_sources().on_multiple(MultipleCredentials::TakeFirst);
    let response = send(layer(first), request(&headers)).await;
    assert_eq!(response.body(), "operator Bearer true");
    let header_first = TokenSources::new([
        TokenSource::try_header("X-Auth-Token").unwrap(),
        TokenSource::bearer(),
    ])
    .unwrap()
    .on_multiple(MultipleCredentials::TakeFirst);
    let response = send(layer(header_first), request(&headers)).await;
    assert_eq!(response.body(), "admin Header true");

    // The same token in two places is one credential.
    let cookie = format!("ins_access_token={admin}");
    let bearer = format!("Bearer {admin}");
    let response = send(
        layer(all_sources()),
        request(&[("cookie", &cookie), ("authorization", &bearer)]),
    )
    .await;
    assert_eq!(response.body(), "admin Cookie true");
}

#[tokio::test]
async fn repeated_headers_and_cookies_are_ambiguous() {
    let admin = token_for("admin");
    let other = token_for("operator");
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("authorization", format!("Bearer {admin}")),
            ("authorization", format!("Bearer {other}")),
        ],
        vec![
            ("x-auth-token", admin.clone()),
            ("x-auth-token", other.clone()),
        ],
        vec![(
            "cookie",
            format!("ins_access_token={admin}; ins_access_token={other}"),
        )],
        vec![
            ("cookie", format!("ins_access_token={admin}")),
            ("cookie", format!("a=b; ins_access_token={admin}")),
        ],
    ];
    for case in cases {
        let headers: Vec<(&str, &str)> = case.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = send(layer(all_sources()), request(&headers)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case:?}");
        assert!(challenge(&response).contains("invalid_request"));
    }
}

#[tokio::test]
async fn oversized_values_are_refused_before_decoding() {
    let huge = "a".repeat(9 * 1024);
    for (name, value) in [
        ("authorization", format!("Bearer {huge}")),
        ("x-auth-token", huge.clone()),
        ("cookie", format!("ins_access_token={huge}")),
    ] {
        let response = send(layer(all_sources()), request(&[(name, &value)])).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(challenge(&response).contains("too long"));
    }
    // The cap is configurable.
    let token = token_for("admin");
    let tight = all_sources().max_token_len(64);
    let response = send(layer(tight), request(&[("x-auth-token", &token)])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_tokens_get_invalid_token_challenges() {
    let k = key();
    let now = tower_authgate::clock::now_seconds();
    let expired = k
        .sign(&with(access_claims("a"), json!({"exp": now - 5})))
        .unwrap();
    let refresh = k
        .sign(&with(access_claims("a"), json!({"usefor": "refresh"})))
        .unwrap();
    let other_key = SigningKey::hmac(Algorithm::HS256, &[9; 32]).unwrap();
    let foreign = other_key.sign(&access_claims("a")).unwrap();
    let cases = [
        (expired, "the token has expired"),
        (refresh, "the token is of the wrong kind"),
        (foreign, "the token's signature is invalid"),
        ("a.b".to_owned(), "the token is malformed"),
        ("not a token".to_owned(), "the token is malformed"),
    ];
    for (token, description) in cases {
        let response = send(layer(all_sources()), request(&[("x-auth-token", &token)])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{description}");
        assert_eq!(
            challenge(&response),
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
            )
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let json = layer(all_sources()).on_rejection(JsonRejection);
        let response = send_with(json, request(&[("x-auth-token", &token)])).await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], description);
    }
}

#[tokio::test]
async fn empty_bearer_is_an_invalid_request() {
    for value in ["Bearer", "Bearer ", "bearer    "] {
        let response = send(layer(all_sources()), request(&[("authorization", value)])).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
    }
}

#[tokio::test]
async fn required_and_optional_modes() {
    let realm_layer = layer(all_sources()).realm("inSCADA").unwrap();
    let response = send(realm_layer, request(&[])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), r#"Bearer realm="inSCADA""#);

    let response = send(layer(all_sources()).optional(), request(&[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "anonymous");

    // Optional does not mean a bad token is ignored.
    let response = send(
        layer(all_sources()).optional(),
        request(&[("x-auth-token", "x.y.z")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let token = token_for("admin");
    let response = send(
        layer(all_sources()).optional(),
        request(&[("x-auth-token", &token)]),
    )
    .await;
    assert_eq!(response.body(), "admin Header true");
}

#[tokio::test]
async fn realm_is_validated_at_build_time() {
    assert!(layer(all_sources()).realm("bad\"realm").is_err());
    assert!(layer(all_sources()).realm("").is_err());
}

#[tokio::test]
async fn the_rejection_response_is_customisable() {
    let custom = layer(all_sources()).on_rejection(|rejection: &tower_authgate::Rejection| {
        let mut response = Response::new(format!("custom: {rejection}"));
        *response.status_mut() = rejection.status();
        response
            .headers_mut()
            .insert("x-custom", HeaderValue::from_static("1"));
        response
    });
    let response = ServiceBuilder::new()
        .layer(custom)
        .service(service_fn(echo))
        .oneshot(request(&[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-custom"], "1");
    assert_eq!(response.body(), "custom: authentication is required");
}

#[tokio::test]
async fn a_typed_claims_struct_reaches_the_handler() {
    #[derive(Clone, serde::Deserialize)]
    struct Mine {
        sub: String,
    }
    let verifier = Verifier::builder(KeySet::single(key().verifying_key()))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<Mine>::new(verifier))
        .service(service_fn(|req: Request<String>| async move {
            let claims = req
                .extensions()
                .get::<VerifiedToken>()
                .and_then(VerifiedToken::claims::<Mine>)
                .cloned();
            Ok::<_, Infallible>(Response::new(
                claims.map(|c| c.sub.clone()).unwrap_or_default(),
            ))
        }));
    let bearer = format!("Bearer {}", token_for("admin"));
    let response = service
        .oneshot(request(&[("authorization", &bearer)]))
        .await
        .unwrap();
    assert_eq!(response.body(), "admin");
}

/// A store that answers through a future, as a remote one would, or fails.
struct RemoteLike {
    revoked: Vec<String>,
    down: bool,
}

impl tower_authgate::store::RevocationStore for RemoteLike {
    fn revoke(
        &self,
        _id: &str,
        _until: u64,
    ) -> tower_authgate::BoxFuture<'_, Result<bool, tower_authgate::store::StoreError>> {
        Box::pin(async { Ok(true) })
    }

    fn check(&self, id: &str, _family: Option<&str>) -> tower_authgate::store::RevocationCheck {
        let answer = if self.down {
            Err(tower_authgate::store::StoreError("down".into()))
        } else {
            Ok(self.revoked.iter().any(|r| r == id))
        };
        tower_authgate::store::RevocationCheck::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            answer
        }))
    }

    fn revoke_subject(
        &self,
        _subject: &str,
        _cut_off: u64,
        _until: u64,
    ) -> tower_authgate::BoxFuture<'_, Result<(), tower_authgate::store::StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// A subject listed as `subject@CUT_OFF` is signed out at `CUT_OFF`.
    fn check_subject(
        &self,
        subject: &str,
        issued_at: u64,
    ) -> tower_authgate::store::RevocationCheck {
        let answer = if self.down {
            Err(tower_authgate::store::StoreError("down".into()))
        } else {
            Ok(self.revoked.iter().any(|r| {
                r.split_once('@').is_some_and(|(who, cut)| {
                    who == subject && cut.parse::<u64>().is_ok_and(|cut| issued_at <= cut)
                })
            }))
        };
        tower_authgate::store::RevocationCheck::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            answer
        }))
    }
}

#[tokio::test]
async fn a_subject_signed_out_everywhere_loses_every_token_issued_until_then() {
    let k = key();
    let now = tower_authgate::clock::now_seconds();
    let token = |sub: &str, iat: u64, extra: Value| {
        k.sign(&with(
            with(
                access_claims(sub),
                json!({"iat": iat, "jti": format!("{sub}-{iat}")}),
            ),
            extra,
        ))
        .unwrap()
    };
    let before = token("alice", now - 10, json!({"fam": "fam-a"}));
    let at = token("alice", now, json!({}));
    let after = token("alice", now + 1, json!({}));
    // Neither id nor family: the subject is still checked.
    let bare = token("alice", now - 1, json!({"jti": null}));
    let no_iat = token("alice", now, json!({"iat": null}));
    let other = token("bob", now - 10, json!({}));

    // In memory, on the cached path and off it.
    let memory = std::sync::Arc::new(tower_authgate::store::MemoryRevocations::default());
    let verifier = cached_verifier();
    let cached = || {
        AuthLayer::<Value>::new(verifier.clone())
            .sources(all_sources())
            .revocations(memory.clone())
    };
    let status = |response: Response<String>| response.status();
    for _ in 0..2 {
        assert_eq!(
            status(send(cached(), request(&[("x-auth-token", &before)])).await),
            StatusCode::OK
        );
    }
    memory.revoke_subject_now("alice", now, now + 600).unwrap();
    for layer in [cached(), layer(all_sources()).revocations(memory.clone())] {
        for refused in [&before, &at, &bare, &no_iat] {
            let response = send(layer.clone(), request(&[("x-auth-token", refused)])).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(challenge(&response).contains("revoked"));
        }
        for accepted in [&after, &other] {
            assert_eq!(
                status(send(layer.clone(), request(&[("x-auth-token", accepted)])).await),
                StatusCode::OK
            );
        }
    }

    // Through a store that answers with a future, and one that is down.
    let remote = std::sync::Arc::new(RemoteLike {
        revoked: vec![format!("alice@{now}")],
        down: false,
    });
    let with_remote = || layer(all_sources()).revocations(remote.clone());
    assert_eq!(
        status(send(with_remote(), request(&[("x-auth-token", &before)])).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(send(with_remote(), request(&[("x-auth-token", &after)])).await),
        StatusCode::OK
    );
    let down = std::sync::Arc::new(RemoteLike {
        revoked: Vec::new(),
        down: true,
    });
    let response = send(
        layer(all_sources()).revocations(down),
        request(&[("x-auth-token", &bare)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_that_is_neither_send_nor_static_works_behind_the_layer() {
    use std::cell::Cell;
    use std::rc::Rc;
    // The inner service holds an `Rc` and borrows a local: the layer asks
    // only `Clone` of it, even on the path that awaits a remote store.
    let calls = Rc::new(Cell::new(0));
    let greeting = String::from("hello");
    let greeting = greeting.as_str();
    let inner = service_fn({
        let calls = Rc::clone(&calls);
        move |req: Request<String>| {
            let calls = Rc::clone(&calls);
            async move {
                calls.set(calls.get() + 1);
                let sub = req
                    .extensions()
                    .get::<VerifiedToken>()
                    .and_then(|t| t.claims::<Value>())
                    .and_then(|c| c["sub"].as_str().map(str::to_owned));
                Ok::<_, Infallible>(Response::new(format!("{greeting} {sub:?}")))
            }
        }
    });
    let store = std::sync::Arc::new(RemoteLike {
        revoked: vec!["revoked-id".into()],
        down: false,
    });
    let service = ServiceBuilder::new()
        .layer(layer(all_sources()).revocations(store))
        .service(inner);
    let fine = token_for("admin");
    let revoked = key()
        .sign(&with(access_claims("gone"), json!({"jti": "revoked-id"})))
        .unwrap();
    let response = service
        .clone()
        .oneshot(request(&[("x-auth-token", &fine)]))
        .await
        .unwrap();
    assert_eq!(response.body(), "hello Some(\"admin\")");
    let response = service
        .oneshot(request(&[("x-auth-token", &revoked)]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        calls.get(),
        1,
        "the revoked token never reached the service"
    );
}

#[tokio::test]
async fn revocations_are_checked_through_remote_stores_and_fail_closed() {
    let k = key();
    let revoked_claims = with(access_claims("gone"), json!({"jti": "revoked-id"}));
    let revoked = k.sign(&revoked_claims).unwrap();
    let fine = k.sign(&access_claims("admin")).unwrap();
    let store = std::sync::Arc::new(RemoteLike {
        revoked: vec!["revoked-id".into()],
        down: false,
    });
    let with_store = || layer(all_sources()).revocations(store.clone());

    let response = send(with_store(), request(&[("x-auth-token", &fine)])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "admin Header true");
    let response = send(with_store(), request(&[("x-auth-token", &revoked)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("revoked"));

    let down = std::sync::Arc::new(RemoteLike {
        revoked: Vec::new(),
        down: true,
    });
    let response = send(
        layer(all_sources()).revocations(down),
        request(&[("x-auth-token", &fine)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");

    // The in-memory store answers without a future.
    let memory = std::sync::Arc::new(tower_authgate::store::MemoryRevocations::default());
    memory
        .revoke_now("revoked-id", tower_authgate::clock::now_seconds() + 60)
        .unwrap();
    let response = send(
        layer(all_sources()).revocations(memory.clone()),
        request(&[("x-auth-token", &revoked)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = send(
        layer(all_sources()).revocations(memory),
        request(&[("x-auth-token", &fine)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_token_cache_serves_repeats_but_revocation_is_still_checked() {
    let k = key();
    let claims = with(access_claims("cached"), json!({"jti": "cached-jti"}));
    let token = k.sign(&claims).unwrap();
    let verifier = cached_verifier();
    let cache = verifier.token_cache().unwrap();
    let memory = std::sync::Arc::new(tower_authgate::store::MemoryRevocations::default());
    let layer = || {
        AuthLayer::<Value>::new(verifier.clone())
            .sources(all_sources())
            .revocations(memory.clone())
    };
    for _ in 0..3 {
        let response = send(layer(), request(&[("x-auth-token", &token)])).await;
        assert_eq!(response.body(), "cached Header true");
    }
    assert_eq!(cache.len(), 1);
    memory
        .revoke_now("cached-jti", tower_authgate::clock::now_seconds() + 60)
        .unwrap();
    let response = send(layer(), request(&[("x-auth-token", &token)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("revoked"));
    // A refused token is never cached.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        send(layer(), request(&[("x-auth-token", &forged)]))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn the_token_cache_forgets_tokens_when_the_keys_change() {
    use std::sync::{Arc, Mutex};
    use tower_authgate::token::KeySource;
    struct Swappable(Mutex<(Arc<KeySet>, u64)>);
    impl KeySource for Swappable {
        fn current(&self) -> Result<Arc<KeySet>, tower_authgate::TokenError> {
            Ok(self.0.lock().unwrap().0.clone())
        }
        fn refresh_for_unknown_key(&self) -> Option<tower_authgate::BoxFuture<'static, ()>> {
            None
        }
        fn generation(&self) -> u64 {
            self.0.lock().unwrap().1
        }
    }
    let old = key();
    let new = SigningKey::hmac(Algorithm::HS256, &[3; 32]).unwrap();
    let source = Arc::new(Swappable(Mutex::new((
        Arc::new(KeySet::single(old.verifying_key())),
        1,
    ))));
    let verifier = Verifier::builder_with_source(source.clone())
        .token_cache(100)
        .build()
        .unwrap();
    let layer = || AuthLayer::<Value>::new(verifier.clone()).sources(all_sources());
    let token = old.sign(&access_claims("admin")).unwrap();
    assert_eq!(
        send(layer(), request(&[("x-auth-token", &token)]))
            .await
            .status(),
        StatusCode::OK
    );
    *source.0.lock().unwrap() = (Arc::new(KeySet::single(new.verifying_key())), 2);
    let response = send(layer(), request(&[("x-auth-token", &token)])).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a token of a removed key is not served from the cache"
    );
}

#[tokio::test]
async fn a_token_that_is_not_printable_ascii_is_refused_alike_with_and_without_the_cache() {
    let token = token_for("bytes");
    let verifier = cached_verifier();
    let cache = verifier.token_cache().unwrap();
    let cached = || AuthLayer::<Value>::new(verifier.clone()).sources(all_sources());
    // The clean token is cached first.
    let response = send(cached(), request(&[("x-auth-token", &token)])).await;
    assert_eq!(response.body(), "bytes Header true");
    for bad in [
        format!("{token}\u{e9}").into_bytes(),
        {
            let mut bytes = token.clone().into_bytes();
            bytes[10] = 0xff;
            bytes
        },
        format!("{}\t{}", &token[..20], &token[20..]).into_bytes(),
    ] {
        for layer in [layer(all_sources()), cached()] {
            let mut request = request(&[]);
            request.headers_mut().insert(
                "x-auth-token",
                HeaderValue::from_bytes(&bad).expect("a header value may carry these bytes"),
            );
            let response = send(layer, request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(challenge(&response).contains("invalid_token"));
        }
    }
    assert_eq!(cache.len(), 1);
}

/// A key source written by hand: its keys, its generation, and whether it
/// reports its keys unavailable, all set by the test.
struct HandSource(std::sync::Mutex<(std::sync::Arc<KeySet>, u64, bool)>);

impl HandSource {
    fn new(key: &SigningKey, generation: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(HandSource(std::sync::Mutex::new((
            std::sync::Arc::new(KeySet::single(key.verifying_key())),
            generation,
            true,
        ))))
    }

    fn set(&self, key: &SigningKey, generation: u64) {
        let mut state = self.0.lock().unwrap();
        state.0 = std::sync::Arc::new(KeySet::single(key.verifying_key()));
        state.1 = generation;
    }

    fn set_available(&self, available: bool) {
        self.0.lock().unwrap().2 = available;
    }
}

impl tower_authgate::token::KeySource for HandSource {
    fn current(&self) -> Result<std::sync::Arc<KeySet>, tower_authgate::TokenError> {
        let state = self.0.lock().unwrap();
        match state.2 {
            true => Ok(state.0.clone()),
            false => Err(tower_authgate::TokenError::KeysUnavailable),
        }
    }
    fn refresh_for_unknown_key(&self) -> Option<tower_authgate::BoxFuture<'static, ()>> {
        None
    }
    fn generation(&self) -> u64 {
        self.0.lock().unwrap().1
    }
}

/// Two key sources whose generations move by +1 and -1 at once: the
/// removed key's token is not served from the cache (each source's
/// generation is compared on its own, never their sum).
#[tokio::test]
async fn a_verifier_over_several_key_sources_forgets_a_sources_tokens_when_its_keys_change() {
    let own_key = key();
    let idp_key = SigningKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
    let other = SigningKey::hmac(Algorithm::HS256, &[8; 32]).unwrap();
    let own = HandSource::new(&own_key, 10);
    let idp = HandSource::new(&idp_key, 10);
    let verifier = Verifier::builder_with_source(own.clone())
        .issuer("own")
        .issuer_with_keys("idp", idp.clone())
        .token_cache(100)
        .build()
        .unwrap();
    let layer = || AuthLayer::<Value>::new(verifier.clone()).sources(all_sources());
    let idp_token = idp_key
        .sign(&with(access_claims("from-idp"), json!({"iss": "idp"})))
        .unwrap();
    let own_token = own_key
        .sign(&with(access_claims("own"), json!({"iss": "own"})))
        .unwrap();
    for token in [&idp_token, &own_token] {
        let response = send(layer(), request(&[("x-auth-token", token)])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(verifier.token_cache().unwrap().len(), 2);
    // The identity provider drops its key (+1), the service's own source
    // moves the other way (-1): the sum is unchanged.
    idp.set(&other, 11);
    own.set(&own_key, 9);
    let response = send(layer(), request(&[("x-auth-token", &idp_token)])).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a token of a removed key is not served from the cache"
    );
    // The own source still holds its key: its token is verified again and passes.
    let response = send(layer(), request(&[("x-auth-token", &own_token)])).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// A cached token is refused with `503`, as a fresh one is, while its key
/// source reports its keys unavailable (a JWK Set past its maximum age),
/// and served again once they are back.
#[tokio::test]
async fn a_cached_token_is_not_served_while_its_keys_are_unavailable() {
    let k = key();
    let source = HandSource::new(&k, 1);
    let verifier = Verifier::builder_with_source(source.clone())
        .token_cache(100)
        .build()
        .unwrap();
    let layer = || AuthLayer::<Value>::new(verifier.clone()).sources(all_sources());
    let cached = k.sign(&access_claims("cached")).unwrap();
    let fresh = k.sign(&access_claims("fresh")).unwrap();
    let response = send(layer(), request(&[("x-auth-token", &cached)])).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(verifier.token_cache().unwrap().len(), 1);
    source.set_available(false);
    for token in [&fresh, &cached] {
        let response = send(layer(), request(&[("x-auth-token", token)])).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }
    source.set_available(true);
    let response = send(layer(), request(&[("x-auth-token", &cached)])).await;
    assert_eq!(response.body(), "cached Header true");
}

/// A token without `jti` that names a revoked family (`fam`) is refused,
/// verified afresh or served from the token cache: the family check does
/// not depend on the token id.
#[tokio::test]
async fn a_token_without_jti_of_a_revoked_family_is_refused() {
    let k = key();
    let memory = std::sync::Arc::new(tower_authgate::store::MemoryRevocations::default());
    let no_id = k
        .sign(&with(
            access_claims("no-id"),
            json!({"fam": "family-1", "jti": null}),
        ))
        .unwrap();
    let with_id = k
        .sign(&with(
            access_claims("with-id"),
            json!({"fam": "family-1", "jti": "id-1"}),
        ))
        .unwrap();
    let other_family = k
        .sign(&with(
            access_claims("other"),
            json!({"fam": "family-2", "jti": null}),
        ))
        .unwrap();
    let plain = k
        .sign(&with(access_claims("plain"), json!({"jti": null})))
        .unwrap();
    let cached = cached_verifier();
    let layers = || {
        [
            layer(all_sources()).revocations(memory.clone()),
            AuthLayer::<Value>::new(cached.clone())
                .sources(all_sources())
                .revocations(memory.clone()),
        ]
    };
    for layer in layers() {
        let response = send(layer, request(&[("x-auth-token", &no_id)])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    memory
        .revoke_now("family-1", tower_authgate::clock::now_seconds() + 60)
        .unwrap();
    for layer in layers() {
        for token in [&no_id, &with_id] {
            let response = send(layer.clone(), request(&[("x-auth-token", token)])).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(challenge(&response).contains("revoked"));
        }
        for token in [&other_family, &plain] {
            let response = send(layer.clone(), request(&[("x-auth-token", token)])).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
}

/// A policy in the `AuthLayer` (`AuthLayer::require`) judges a token whose
/// revocation check a remote store answers later, after that answer: a
/// revoked token is a 401 whatever it grants, a store that is down a 503,
/// and a token that is not revoked passes only when it grants the policy.
#[tokio::test]
async fn a_policy_in_the_auth_layer_waits_for_the_remote_revocation_check() {
    use tower_authgate::authz::Policy;
    let with_roles = |sub: &str, roles: &[&str]| {
        key()
            .sign(&with(access_claims(sub), json!({"roles": roles})))
            .unwrap()
    };
    let admin = with_roles("alice", &["admin"]);
    let operator = with_roles("bob", &["operator"]);
    let revoked_admin = with_roles("carol", &["admin"]);
    let store = std::sync::Arc::new(RemoteLike {
        revoked: vec![format!("carol@{}", tower_authgate::clock::now_seconds())],
        down: false,
    });
    let guarded = || {
        layer(all_sources())
            .revocations(store.clone())
            .require(Policy::role("admin"))
            .unwrap()
    };
    let bearer = |token: &str| request(&[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(
        send(guarded(), bearer(&admin)).await.status(),
        StatusCode::OK
    );
    let refused = send(guarded(), bearer(&operator)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&refused).contains(r#"error="insufficient_scope""#));
    assert_eq!(
        send(guarded(), bearer(&revoked_admin)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let down = std::sync::Arc::new(RemoteLike {
        revoked: Vec::new(),
        down: true,
    });
    let response = send(
        layer(all_sources())
            .revocations(down)
            .require(Policy::role("admin"))
            .unwrap(),
        bearer(&admin),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A refusal's event names the refused token's `alg`, `kid` and `iss`
/// (never the token) when it is recorded; the refusal is the same when no
/// subscriber records it.
#[cfg(feature = "tracing")]
#[tokio::test]
async fn a_refusals_event_names_the_tokens_header_when_recorded() {
    let forged = key()
        .with_kid("k-event")
        .sign(&with(
            access_claims("alice"),
            json!({"iss": "issuer-event", "exp": tower_authgate::clock::now_seconds() - 600}),
        ))
        .unwrap();
    let bearer = format!("Bearer {forged}");
    let capture = common::capture::Capture::default();
    {
        let _recording =
            tracing_subscriber::util::SubscriberInitExt::set_default(capture.subscriber());
        let response = send(layer(all_sources()), request(&[("authorization", &bearer)])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let text = capture.text();
    let line = text
        .lines()
        .find(|line| line.contains("outcome=\"refused\"") || line.contains("outcome=refused"))
        .unwrap_or_else(|| panic!("no refusal event in {text}"));
    for field in [
        r#"alg="HS256""#,
        r#"kid="k-event""#,
        r#"iss="issuer-event""#,
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(!text.contains(&forged), "the token itself was recorded");

    // Nothing records `INFO`: the same answer, and nothing written.
    let quiet = common::capture::Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(quiet.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _quiet = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    let response = send(layer(all_sources()), request(&[("authorization", &bearer)])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("expired"));
    assert_eq!(quiet.text(), "");
}
