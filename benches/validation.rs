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

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Request, Response, header};
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{
    Algorithm, KeySet, SigningKey, TokenSource, TokenSources, Verifier, VerifyingKey,
};

/// The least work an HS256 verifier must do: split, base64-decode the
/// signature and payload, one HMAC-SHA256 with a prepared key, one JSON parse.
fn floor_hs256(token: &str, key: &aws_lc_rs::hmac::Key) -> Option<BenchClaims> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (message, signature) = token.rsplit_once('.')?;
    let (_, payload) = message.split_once('.')?;
    let signature = engine.decode(signature).ok()?;
    aws_lc_rs::hmac::verify(key, message.as_bytes(), &signature).ok()?;
    let payload = engine.decode(payload).ok()?;
    serde_json::from_slice(&payload).ok()
}

#[derive(Clone, Serialize, Deserialize)]
struct BenchClaims {
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
    usefor: String,
    iss: String,
    spaces: Vec<String>,
    roles: Vec<String>,
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Raw signature verification with a prepared aws-lc key: the least work an
/// asymmetric verifier must do (the JSON parse is noise beside it).
fn raw_verify(token: &str, key: &aws_lc_rs::signature::ParsedPublicKey) -> bool {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = engine.decode(signature) else {
        return false;
    };
    key.verify_sig(message.as_bytes(), &signature).is_ok()
}

/// The public key as aws-lc parses it, for [`raw_verify`].
fn parsed_public_key(alg: Algorithm) -> aws_lc_rs::signature::ParsedPublicKey {
    use aws_lc_rs::signature::{self, ParsedPublicKey};
    let (algorithm, name): (&'static dyn signature::VerificationAlgorithm, _) = match alg {
        Algorithm::RS256 => (&signature::RSA_PKCS1_2048_8192_SHA256, "rsa_public"),
        Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, "ec256_public"),
        Algorithm::EdDSA => (&signature::ED25519, "ed25519_public"),
        _ => unreachable!(),
    };
    let pem = String::from_utf8(pem(name)).unwrap();
    let der: Vec<u8> = {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    ParsedPublicKey::new(algorithm, &der).unwrap()
}

/// The signing key, the same key for `jsonwebtoken`, and for this crate.
fn keys(alg: Algorithm) -> (SigningKey, DecodingKey, VerifyingKey) {
    match alg {
        Algorithm::HS256 => (
            SigningKey::hmac(alg, SECRET).unwrap(),
            DecodingKey::from_secret(SECRET),
            VerifyingKey::hmac(alg, SECRET).unwrap(),
        ),
        Algorithm::RS256 => (
            SigningKey::from_pem(alg, &pem("rsa_private")).unwrap(),
            DecodingKey::from_rsa_pem(&pem("rsa_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("rsa_public")).unwrap(),
        ),
        Algorithm::ES256 => (
            SigningKey::from_pem(alg, &pem("ec256_private")).unwrap(),
            DecodingKey::from_ec_pem(&pem("ec256_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("ec256_public")).unwrap(),
        ),
        Algorithm::EdDSA => (
            SigningKey::from_pem(alg, &pem("ed25519_private")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed25519_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("ed25519_public")).unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// Polls a future that completes without waiting (every future here does).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked services never wait"),
    }
}

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
/// Built with feature `metrics`, the bench records through a Prometheus
/// recorder; with feature `tracing`, events go to a subscriber at `INFO`
/// writing nowhere: the set-up of a service in production, where an
/// accepted request's `DEBUG` event is filtered out and its counters count.
/// `scripts/bench-observe` runs the bench with both features and without,
/// side by side.
fn main() {
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("no recorder was installed before");
    }
    #[cfg(feature = "tracing")]
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::sink)
        .init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
