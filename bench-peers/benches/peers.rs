//! The same tokens and requests through tower-authgate and its peers:
//! axum-jwt-auth, jwt-authorizer, tower-http's `ValidateRequestHeaderLayer`
//! with a validator that calls `jsonwebtoken::decode`, and plain
//! `jsonwebtoken::decode` as the floor. Each stack checks the signature,
//! `exp`, `iss` and `aud`, and hands the claims to the same handler.
//!
//! Run: `cd bench-peers && cargo bench`

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSource, TokenSources, Verifier, VerifyingKey};

#[derive(Clone, Serialize, Deserialize)]
struct BenchClaims {
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
    usefor: String,
    iss: String,
    aud: String,
    spaces: Vec<String>,
    roles: Vec<String>,
}

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const COOKIE: &str = "ins_access_token";

fn pem(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Fixture {
    alg: Algorithm,
    signing: SigningKey,
    private: &'static str,
    public: &'static str,
}

fn fixture(alg: Algorithm) -> Fixture {
    let (private, public) = match alg {
        Algorithm::RS256 => ("rsa_private", "rsa_public"),
        Algorithm::ES256 => ("ec256_private", "ec256_public"),
        Algorithm::EdDSA => ("ed25519_private", "ed25519_public"),
        _ => ("", ""),
    };
    let signing = if alg == Algorithm::HS256 {
        SigningKey::hmac(alg, SECRET.as_bytes()).unwrap()
    } else {
        SigningKey::from_pem(alg, pem(private).as_bytes()).unwrap()
    };
    Fixture {
        alg,
        signing,
        private,
        public,
    }
}

impl Fixture {
    fn verifying(&self) -> VerifyingKey {
        if self.alg == Algorithm::HS256 {
            VerifyingKey::hmac(self.alg, SECRET.as_bytes()).unwrap()
        } else {
            VerifyingKey::from_pem(self.alg, pem(self.public).as_bytes()).unwrap()
        }
    }

    fn decoding11(&self) -> jsonwebtoken::DecodingKey {
        if self.alg == Algorithm::HS256 {
            return jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
        }
        let public = pem(self.public);
        match self.alg {
            Algorithm::HS256 => jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
            _ => jsonwebtoken::DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
        }
    }

    fn decoding10(&self) -> (jsonwebtoken10::DecodingKey, jsonwebtoken10::Validation) {
        let public = if self.alg == Algorithm::HS256 {
            String::new()
        } else {
            pem(self.public)
        };
        let (key, alg) = match self.alg {
            Algorithm::HS256 => (
                jsonwebtoken10::DecodingKey::from_secret(SECRET.as_bytes()),
                jsonwebtoken10::Algorithm::HS256,
            ),
            Algorithm::RS256 => (
                jsonwebtoken10::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
                jsonwebtoken10::Algorithm::RS256,
            ),
            Algorithm::ES256 => (
                jsonwebtoken10::DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                jsonwebtoken10::Algorithm::ES256,
            ),
            _ => (
                jsonwebtoken10::DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
                jsonwebtoken10::Algorithm::EdDSA,
            ),
        };
        let mut validation = jsonwebtoken10::Validation::new(alg);
        validation.set_issuer(&["datarhei-core"]);
        validation.set_audience(&["api"]);
        validation.leeway = 0;
        (key, validation)
    }

    fn validation11(&self) -> jsonwebtoken::Validation {
        let mut validation = jsonwebtoken::Validation::new(self.alg);
        validation.set_issuer(&["datarhei-core"]);
        validation.set_audience(&["api"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 0;
        validation
    }
}

fn authgate(fixture: &Fixture, cookie: bool, cache: bool) -> Router {
    let mut builder = Verifier::builder(KeySet::single(fixture.verifying()))
        .issuer("datarhei-core")
        .audience("api");
    if cache {
        builder = builder.token_cache(1_000);
    }
    let verifier = builder.build().unwrap();
    let sources = if cookie {
        TokenSources::single(TokenSource::cookie(COOKIE))
    } else {
        TokenSources::bearer()
    };
    let layer = AuthLayer::<BenchClaims>::new(verifier).sources(sources);
    Router::new()
        .route("/", get(|tower_authgate::token::Claims(c): tower_authgate::token::Claims<BenchClaims>| async move { c.sub }))
        .layer(layer)
}

axum_jwt_auth::define_cookie_extractor!(AccessCookie, "ins_access_token");

fn axum_jwt_auth_router(fixture: &Fixture, cookie: bool) -> Router {
    use axum_jwt_auth::{Claims, CookieTokenExtractor, Decoder, LocalDecoder};
    let (key, validation) = fixture.decoding10();
    let decoder: Decoder<BenchClaims> = std::sync::Arc::new(
        LocalDecoder::builder()
            .keys(vec![key])
            .validation(validation)
            .build()
            .unwrap(),
    );
    if cookie {
        Router::new()
            .route(
                "/",
                get(
                    |c: Claims<BenchClaims, CookieTokenExtractor<AccessCookie>>| async move {
                        c.claims.sub
                    },
                ),
            )
            .with_state(decoder)
    } else {
        Router::new()
            .route(
                "/",
                get(|c: Claims<BenchClaims>| async move { c.claims.sub }),
            )
            .with_state(decoder)
    }
}

async fn jwt_authorizer_router(fixture: &Fixture, cookie: bool) -> axum07::Router {
    use jwt_authorizer::{IntoLayer, JwtAuthorizer, JwtClaims, Validation, layer::JwtSource};
    let builder = match fixture.alg {
        Algorithm::HS256 => JwtAuthorizer::<BenchClaims>::from_secret(SECRET),
        Algorithm::RS256 => JwtAuthorizer::from_rsa_pem_text(&pem(fixture.public)),
        Algorithm::ES256 => JwtAuthorizer::from_ec_pem_text(&pem(fixture.public)),
        _ => JwtAuthorizer::from_ed_pem_text(&pem(fixture.public)),
    };
    let mut builder = builder.validation(Validation::new().iss(&["datarhei-core"]).aud(&["api"]));
    if cookie {
        builder = builder.jwt_source(JwtSource::Cookie(COOKIE.into()));
    }
    let authorizer = builder.build().await.unwrap();
    axum07::Router::new()
        .route(
            "/",
            axum07::routing::get(|JwtClaims(c): JwtClaims<BenchClaims>| async move { c.sub }),
        )
        .layer(authorizer.into_layer())
}

fn tower_http_router(fixture: &Fixture) -> Router {
    use tower_http::validate_request::ValidateRequestHeaderLayer;
    let key = fixture.decoding11();
    let validation = fixture.validation11();
    let layer = ValidateRequestHeaderLayer::custom(move |request: &mut Request<Body>| {
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
        let data = jsonwebtoken::decode::<BenchClaims>(token, &key, &validation)
            .map_err(|_| StatusCode::UNAUTHORIZED.into_response())?;
        request.extensions_mut().insert(data.claims);
        Ok(())
    });
    Router::new()
        .route(
            "/",
            get(|axum::Extension(c): axum::Extension<BenchClaims>| async move { c.sub }),
        )
        .layer(layer)
}

use axum::response::IntoResponse;

fn peers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = now_seconds();
    let claims = BenchClaims {
        sub: "admin".into(),
        iat: now,
        exp: now + 3600,
        jti: "733d8ce1-67b1-437c-8c45-37b882fc1a1f".into(),
        usefor: "access".into(),
        iss: "datarhei-core".into(),
        aud: "api".into(),
        spaces: vec!["default_space".into(), "production".into()],
        roles: vec!["admin".into()],
    };
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let fixture = fixture(alg);
        let _ = fixture.private;
        let token = fixture.signing.sign(&claims).unwrap();
        let bearer = format!("Bearer {token}");
        let cookie = format!("{COOKIE}={token}");
        let stacks: Vec<(&str, Router, bool)> = vec![
            ("authgate", authgate(&fixture, false, false), false),
            (
                "authgate_cached_repeat",
                authgate(&fixture, false, true),
                false,
            ),
            (
                "axum_jwt_auth",
                axum_jwt_auth_router(&fixture, false),
                false,
            ),
            (
                "tower_http_validate_decode",
                tower_http_router(&fixture),
                false,
            ),
            ("authgate", authgate(&fixture, true, false), true),
            (
                "authgate_cached_repeat",
                authgate(&fixture, true, true),
                true,
            ),
            ("axum_jwt_auth", axum_jwt_auth_router(&fixture, true), true),
        ];
        let name = tower_authgate::token::algorithm_name(alg);
        let mut group = c.benchmark_group(format!("peers/{name}"));
        let key = fixture.decoding11();
        let validation = fixture.validation11();
        group.bench_function("jsonwebtoken_decode_floor", |b| {
            b.iter(|| jsonwebtoken::decode::<BenchClaims>(&token, &key, &validation).unwrap())
        });
        for (stack, router, in_cookie) in stacks {
            let (header, value) = if in_cookie {
                ("cookie", cookie.as_str())
            } else {
                ("authorization", bearer.as_str())
            };
            let request = || {
                Request::get("/")
                    .header(header, value)
                    .body(Body::empty())
                    .unwrap()
            };
            let check = runtime.block_on(router.clone().oneshot(request())).unwrap();
            assert_eq!(
                check.status(),
                StatusCode::OK,
                "{stack} {name} cookie={in_cookie}"
            );
            let label = format!("{stack}/{}", if in_cookie { "cookie" } else { "bearer" });
            group.bench_function(label, |b| {
                b.iter(|| runtime.block_on(router.clone().oneshot(request())).unwrap())
            });
        }
        for in_cookie in [false, true] {
            let router = runtime.block_on(jwt_authorizer_router(&fixture, in_cookie));
            let (header, value) = if in_cookie {
                ("cookie", cookie.as_str())
            } else {
                ("authorization", bearer.as_str())
            };
            let request = || {
                http::Request::get("/")
                    .header(header, value)
                    .body(axum07::body::Body::empty())
                    .unwrap()
            };
            let check = runtime.block_on(router.clone().oneshot(request())).unwrap();
            assert_eq!(
                check.status().as_u16(),
                200,
                "jwt_authorizer {name} cookie={in_cookie}"
            );
            let label = format!(
                "jwt_authorizer/{}",
                if in_cookie { "cookie" } else { "bearer" }
            );
            group.bench_function(label, |b| {
                b.iter(|| runtime.block_on(router.clone().oneshot(request())).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = peers
}
criterion_main!(benches);
