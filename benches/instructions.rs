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
mod tokens;

use std::convert::Infallible;
use std::hint::black_box;

use http::{HeaderValue, Request, Response, header};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, KeySet, TokenSource, TokenSources, Verifier};

use fixtures::Stage;
use tokens::{BenchClaims, SECRET, floor_hs256, keys, parsed_public_key, raw_verify, ready};

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
    let (signing, _, verifying) = keys(alg);
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
        // The set-up of a service in production (`scripts/bench-observe`).
        tokens::observe();
    }
    // Warm-up: the first request fills the token cache and the known
    // headers, as on a running server.
    for _ in 0..50 {
        run();
    }
    measured(&mut run, times);
}
