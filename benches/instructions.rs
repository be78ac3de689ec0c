//! Instruction counts, for `valgrind --tool=callgrind`: the cases of the
//! `validation` and `stack` benches, each run N times inside `measured`
//! after a warm-up, so that callgrind counts that function alone. Counts
//! do not move with the machine's load, where wall time does.
//!
//! `scripts/instructions [CASE...]` builds this bench and prints each case's
//! instructions per iteration. By hand:
//! `cargo bench --bench instructions -- CASE N` runs CASE N times (the list
//! of cases is printed when none is given). `scripts/bench-observe` runs it
//! built with and without `metrics` and `tracing`.

mod fixtures;

use std::convert::Infallible;
use std::hint::black_box;

use http::{HeaderValue, Request, Response, header};
use serde::{Deserialize, Serialize};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{
    Algorithm, KeySet, SigningKey, TokenSource, TokenSources, Verifier, VerifyingKey,
};

use fixtures::{Stage, ready};

/// The claims of the `validation` bench's tokens.
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

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn keys(alg: Algorithm) -> (SigningKey, VerifyingKey) {
    let (private, public) = match alg {
        Algorithm::HS256 => {
            return (
                SigningKey::hmac(alg, SECRET).unwrap(),
                VerifyingKey::hmac(alg, SECRET).unwrap(),
            );
        }
        Algorithm::RS256 => ("rsa_private", "rsa_public"),
        Algorithm::ES256 => ("ec256_private", "ec256_public"),
        _ => ("ed25519_private", "ed25519_public"),
    };
    (
        SigningKey::from_pem(alg, &pem(private)).unwrap(),
        VerifyingKey::from_pem(alg, &pem(public)).unwrap(),
    )
}

/// The `validation` bench's floor: split, base64-decode, one HMAC, one
/// JSON parse.
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

/// The `validation` bench's raw signature verification.
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

fn parsed_public_key(alg: Algorithm) -> aws_lc_rs::signature::ParsedPublicKey {
    use aws_lc_rs::signature::{self, ParsedPublicKey};
    use base64::Engine as _;
    let (algorithm, name): (&'static dyn signature::VerificationAlgorithm, _) = match alg {
        Algorithm::RS256 => (&signature::RSA_PKCS1_2048_8192_SHA256, "rsa_public"),
        Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, "ec256_public"),
        _ => (&signature::ED25519, "ed25519_public"),
    };
    let pem = String::from_utf8(pem(name)).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    ParsedPublicKey::new(algorithm, &der).unwrap()
}

const VALIDATION: [&str; 6] = [
    "floor",
    "raw_verify",
    "authgate_verifier",
    "no_layer",
    "authgate_layer_cookie",
    "authgate_layer_cookie_cached",
];

/// The case named `name`, ready to run once per call.
fn case(name: &str) -> Option<Box<dyn FnMut()>> {
    if let Some(stage) = name.strip_prefix("stack/") {
        let stage = Stage::ALL.into_iter().find(|s| s.name() == stage)?;
        let (key, cookie) = fixtures::credentials();
        let router = fixtures::router(stage, &key);
        return Some(Box::new(move || {
            black_box(fixtures::call(&router, fixtures::request(&cookie)));
        }));
    }
    let (alg, what) = name.split_once('/')?;
    let alg = match alg {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    };
    let now = now_seconds();
    let (signing, verifying) = keys(alg);
    let token = signing
        .sign(&BenchClaims {
            sub: "admin".into(),
            iat: now,
            exp: now + 3600,
            jti: "733d8ce1-67b1-437c-8c45-37b882fc1a1f".into(),
            usefor: "access".into(),
            iss: "datarhei-core".into(),
            spaces: vec!["default_space".into(), "production".into()],
            roles: vec!["admin".into()],
        })
        .unwrap();
    let verifier = Verifier::builder(KeySet::single(verifying))
        .issuer("datarhei-core")
        .build()
        .unwrap();
    let sources = || TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap();
    let handler = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let cookie = HeaderValue::from_str(&format!("ins_access_token={token}")).unwrap();
    let request = move || {
        let mut request = Request::new(String::new());
        request.headers_mut().insert(header::COOKIE, cookie.clone());
        request
    };
    let check = |response: Result<Response<String>, Infallible>| {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        black_box(response);
    };
    Some(match what {
        "floor" if alg == Algorithm::HS256 => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
            Box::new(move || {
                black_box(floor_hs256(black_box(&token), &key).unwrap());
            })
        }
        "raw_verify" if alg != Algorithm::HS256 => {
            let key = parsed_public_key(alg);
            Box::new(move || assert!(raw_verify(black_box(&token), &key)))
        }
        "authgate_verifier" => Box::new(move || {
            black_box(verifier.verify::<BenchClaims>(black_box(&token)).unwrap());
        }),
        "no_layer" => Box::new(move || check(ready(handler.oneshot(request())))),
        "authgate_layer_cookie" => {
            let service = ServiceBuilder::new()
                .layer(AuthLayer::<BenchClaims>::new(verifier).sources(sources()))
                .service(handler);
            Box::new(move || check(ready(service.clone().oneshot(request()))))
        }
        "authgate_layer_cookie_cached" => {
            let cached = verifier.to_builder().token_cache(1_000).build().unwrap();
            let service = ServiceBuilder::new()
                .layer(AuthLayer::<BenchClaims>::new(cached).sources(sources()))
                .service(handler);
            Box::new(move || check(ready(service.clone().oneshot(request()))))
        }
        _ => return None,
    })
}

/// Runs `run` `times` times: the only function callgrind counts.
#[inline(never)]
fn measured(run: &mut dyn FnMut(), times: u64) {
    for _ in 0..times {
        run();
    }
}

/// With `AUTHGATE_BENCH_OBSERVE` set, the set-up of a service in
/// production: a Prometheus recorder (feature `metrics`) and a subscriber at
/// `INFO` writing nowhere (feature `tracing`), as `scripts/bench-observe`
/// compares.
fn observe() {
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
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<String> = ["HS256", "RS256", "ES256", "EdDSA"]
        .into_iter()
        .flat_map(|alg| VALIDATION.map(|what| format!("{alg}/{what}")))
        .chain(Stage::ALL.map(|s| format!("stack/{}", s.name())))
        .collect();
    let [name, times] = args.as_slice() else {
        // `cargo bench` with no case: run each case once, as a check.
        for name in &names {
            if let Some(mut run) = case(name) {
                run();
                println!("{name}");
            }
        }
        return;
    };
    let Some(mut run) = case(name) else {
        eprintln!("unknown case {name}");
        std::process::exit(2);
    };
    let times: u64 = times.parse().expect("a number of iterations");
    if std::env::var_os("AUTHGATE_BENCH_OBSERVE").is_some() {
        observe();
    }
    // Warm-up: the first request fills the token cache and the known
    // headers, as on a running server.
    for _ in 0..50 {
        run();
    }
    measured(&mut run, times);
}
