//! Token validation, side by side on the same tokens: the least work an
//! HS256 verifier must do (the floor: split, base64-decode, one HMAC, one
//! JSON parse), raw aws-lc signature verification for the asymmetric
//! algorithms (`raw_verify`), plain `jsonwebtoken::decode`, the request
//! harness alone (`no_layer`), this crate's `Verifier`, and a
//! whole request through `AuthLayer` (token in a cookie) via `oneshot`, first
//! seen and repeated through the verified-token cache.
//!
//! Run: `cargo bench --bench validation`; `scripts/bench-observe` compares
//! the layer's two paths with metrics and tracing on and off.

mod tokens;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, Response, header};
use jsonwebtoken::Validation;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::authz::{Policy, RequireLayer};
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSource, TokenSources, Verifier};

use tokens::{BenchClaims, SECRET, floor_hs256, keys, parsed_public_key, raw_verify, ready};

fn validation(c: &mut Criterion) {
    let now = now_seconds();
    let claims = BenchClaims {
        sub: "admin".into(),
        iat: now,
        exp: now + 3600,
        jti: "733d8ce1-67b1-437c-8c45-37b882fc1a1f".into(),
        usefor: "access".into(),
        iss: "datarhei-core".into(),
        spaces: vec!["default_space".into(), "production".into()],
        roles: vec!["admin".into()],
    };
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let (signing, decoding, verifying) = keys(alg);
        let token = signing.sign(&claims).unwrap();
        let mut jwt_validation = Validation::new(alg);
        jwt_validation.set_issuer(&["datarhei-core"]);
        jwt_validation.set_required_spec_claims(&["exp", "iss"]);
        jwt_validation.leeway = 0;

        let verifier = Verifier::builder(KeySet::single(verifying))
            .issuer("datarhei-core")
            .build()
            .unwrap();
        let layer = AuthLayer::<BenchClaims>::new(verifier.clone())
            .sources(TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap());
        let handler = service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let service = ServiceBuilder::new().layer(layer.clone()).service(handler);
        let cached_verifier = verifier.to_builder().token_cache(1_000).build().unwrap();
        let cached = ServiceBuilder::new()
            .layer(
                AuthLayer::<BenchClaims>::new(cached_verifier)
                    .sources(TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap()),
            )
            .service(handler);
        let cookie = HeaderValue::from_str(&format!("ins_access_token={token}")).unwrap();
        assert!(jsonwebtoken::decode::<BenchClaims>(&token, &decoding, &jwt_validation).is_ok());
        assert!(verifier.verify::<BenchClaims>(&token).is_ok());

        let name = tower_authgate::token::algorithm_name(alg);
        let mut group = c.benchmark_group(format!("validation/{name}"));
        if alg == Algorithm::HS256 {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
            assert!(floor_hs256(&token, &key).is_some());
            group.bench_function("floor", |b| {
                b.iter(|| floor_hs256(black_box(&token), &key).unwrap())
            });
        }
        if alg != Algorithm::HS256 {
            let key = parsed_public_key(alg);
            assert!(raw_verify(&token, &key));
            group.bench_function("raw_verify", |b| {
                b.iter(|| assert!(raw_verify(black_box(&token), &key)))
            });
        }
        group.bench_function("jsonwebtoken_decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<BenchClaims>(black_box(&token), &decoding, &jwt_validation)
                    .unwrap()
            })
        });
        group.bench_function("authgate_verifier", |b| {
            b.iter(|| verifier.verify::<BenchClaims>(black_box(&token)).unwrap())
        });
        group.bench_function("no_layer", |b| {
            b.iter(|| {
                let mut request = Request::new(String::new());
                request.headers_mut().insert(header::COOKIE, cookie.clone());
                let response = ready(handler.oneshot(request)).unwrap();
                assert_eq!(response.status(), 200);
                response
            })
        });
        group.bench_function("authgate_layer_cookie", |b| {
            b.iter(|| {
                let mut request = Request::new(String::new());
                request.headers_mut().insert(header::COOKIE, cookie.clone());
                let response = ready(service.clone().oneshot(request)).unwrap();
                assert_eq!(response.status(), 200);
                response
            })
        });
        group.bench_function("authgate_layer_cookie_cached", |b| {
            b.iter(|| {
                let mut request = Request::new(String::new());
                request.headers_mut().insert(header::COOKIE, cookie.clone());
                let response = ready(cached.clone().oneshot(request)).unwrap();
                assert_eq!(response.status(), 200);
                response
            })
        });
        if alg == Algorithm::HS256 {
            // Authorization on the cached path: a role check, and a 50-rule
            // table whose last rule matches.
            for (case, require) in [
                (
                    "authgate_layer_cookie_cached_role",
                    RequireLayer::role("admin"),
                ),
                (
                    "authgate_layer_cookie_cached_rules50",
                    RequireLayer::rules(tokens::fifty_rules()),
                ),
            ] {
                let cached_verifier = verifier.to_builder().token_cache(1_000).build().unwrap();
                let service = ServiceBuilder::new()
                    .layer(AuthLayer::<BenchClaims>::new(cached_verifier).sources(
                        TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap(),
                    ))
                    .layer(require)
                    .service(handler);
                group.bench_function(case, |b| {
                    b.iter(|| {
                        let mut request = Request::new(String::new());
                        request.headers_mut().insert(header::COOKIE, cookie.clone());
                        let response = ready(service.clone().oneshot(request)).unwrap();
                        assert_eq!(response.status(), 200);
                        response
                    })
                });
            }
            // The same role check, and the same table, in the `AuthLayer`
            // itself.
            for case in [
                "authgate_layer_cookie_cached_require",
                "authgate_layer_cookie_cached_require_rules50",
            ] {
                let cached_verifier = verifier.to_builder().token_cache(1_000).build().unwrap();
                let auth = AuthLayer::<BenchClaims>::new(cached_verifier)
                    .sources(TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap());
                let auth = if case.ends_with("rules50") {
                    auth.rules(tokens::fifty_rules()).unwrap()
                } else {
                    auth.require(Policy::role("admin")).unwrap()
                };
                let service = ServiceBuilder::new().layer(auth).service(handler);
                group.bench_function(case, |b| {
                    b.iter(|| {
                        let mut request = Request::new(String::new());
                        request.headers_mut().insert(header::COOKIE, cookie.clone());
                        let response = ready(service.clone().oneshot(request)).unwrap();
                        assert_eq!(response.status(), 200);
                        response
                    })
                });
            }
        }
        group.finish();
    }
}

/// The credential cookie read with the `cookie` crate, with the same
/// answers as `TokenSources`: the value of the one cookie so named, a
/// repeated one refused, printable ASCII only.
fn cookie_crate_find<'h>(headers: &'h http::HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut found = None;
    for header in headers.get_all(header::COOKIE) {
        let text = header.to_str().map_err(|_| ())?;
        for cookie in cookie::Cookie::split_parse(text).flatten() {
            if cookie.name() == name {
                if found.is_some() {
                    return Err(());
                }
                found = cookie.value_raw();
            }
        }
    }
    match found {
        Some(value) if !value.bytes().all(|b| b.is_ascii_graphic()) => Err(()),
        found => Ok(found.filter(|v| !v.is_empty())),
    }
}

/// Reading the credential from a browser's `Cookie` header (four cookies,
/// the token third): the hand-written scan `TokenSources` uses beside the
/// `cookie` crate's parser.
fn cookie_header(c: &mut Criterion) {
    let key = SigningKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
    let now = now_seconds();
    let token = key
        .sign(
            &serde_json::json!({"sub": "admin", "exp": now + 3600, "usefor": "access",
            "spaces": ["default_space", "production"], "roles": ["admin"]}),
        )
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!(
            "_ga=GA1.2.1234567890.1234567890; theme=dark; ins_access_token={token}; ins_refresh_token={token}"
        ))
        .unwrap(),
    );
    let sources = TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap();
    assert_eq!(sources.find(&headers).unwrap().unwrap().token, token);
    assert_eq!(
        cookie_crate_find(&headers, "ins_access_token"),
        Ok(Some(token.as_str()))
    );
    let mut group = c.benchmark_group("cookie_header");
    group.bench_function("hand_written_scan", |b| {
        b.iter(|| black_box(sources.find(black_box(&headers)).unwrap()).is_some())
    });
    group.bench_function("cookie_crate", |b| {
        b.iter(|| black_box(cookie_crate_find(black_box(&headers), "ins_access_token")).is_ok())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = validation, cookie_header
}
/// `tokens::observe` first: with features `metrics` and `tracing` the bench
/// records as a service in production does (`scripts/bench-observe`).
fn main() {
    tokens::observe();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
