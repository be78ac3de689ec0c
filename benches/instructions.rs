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
use tower_authgate::authz::{Policy, RequireLayer};
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, KeySet, TokenSource, TokenSources, Verifier};

use fixtures::Stage;
use tokens::{BenchClaims, SECRET, floor_hs256, keys, parsed_public_key, raw_verify, ready};

const VALIDATION: [&str; 11] = [
    "floor",
    "raw_verify",
    "authgate_verifier",
    "authgate_verifier_expired",
    "no_layer",
    "authgate_layer_cookie",
    "authgate_layer_cookie_cached",
    "authgate_layer_cookie_cached_role",
    "authgate_layer_cookie_cached_require",
    "authgate_layer_cookie_cached_rules50",
    "authgate_layer_cookie_cached_require_rules50",
];

/// The case named `name`, ready to run once per call.
fn case(name: &str) -> Option<Box<dyn FnMut()>> {
    #[cfg(feature = "gateway")]
    if let Some(what) = name.strip_prefix("gateway/") {
        return gateway::case(what);
    }
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
    let signed_until = |exp: u64| {
        signing
            .sign(&BenchClaims {
                sub: "admin".into(),
                iat: exp - 3600,
                exp,
                jti: "733d8ce1-67b1-437c-8c45-37b882fc1a1f".into(),
                usefor: "access".into(),
                iss: "datarhei-core".into(),
                spaces: vec!["default_space".into(), "production".into()],
                roles: vec!["admin".into()],
            })
            .unwrap()
    };
    let token = signed_until(now + 3600);
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
        // A token an hour past its `exp`: refused on its claims.
        "authgate_verifier_expired" => {
            let expired = signed_until(now - 3600);
            Box::new(move || {
                black_box(verifier.verify::<BenchClaims>(black_box(&expired)).is_err());
            })
        }
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
        "authgate_layer_cookie_cached_role" | "authgate_layer_cookie_cached_rules50"
            if alg == Algorithm::HS256 =>
        {
            let cached = verifier.to_builder().token_cache(1_000).build().unwrap();
            let require = if what.ends_with("role") {
                RequireLayer::role("admin")
            } else {
                RequireLayer::rules(tokens::fifty_rules())
            };
            let service = ServiceBuilder::new()
                .layer(AuthLayer::<BenchClaims>::new(cached).sources(sources()))
                .layer(require)
                .service(handler);
            Box::new(move || check(ready(service.clone().oneshot(request()))))
        }
        // The same role check, and the same table, in the `AuthLayer`
        // itself.
        "authgate_layer_cookie_cached_require" | "authgate_layer_cookie_cached_require_rules50"
            if alg == Algorithm::HS256 =>
        {
            let cached = verifier.to_builder().token_cache(1_000).build().unwrap();
            let auth = AuthLayer::<BenchClaims>::new(cached).sources(sources());
            let auth = if what.ends_with("rules50") {
                auth.rules(tokens::fifty_rules()).unwrap()
            } else {
                auth.require(Policy::role("admin")).unwrap()
            };
            let service = ServiceBuilder::new().layer(auth).service(handler);
            Box::new(move || check(ready(service.clone().oneshot(request()))))
        }
        _ => return None,
    })
}

/// The gateway's cases (feature `gateway`): its router, as `authgate` serves
/// `examples/gateway.toml`, answering `/healthz` and the decision endpoint
/// for a signed-in user's bearer token.
#[cfg(feature = "gateway")]
const GATEWAY: &[&str] = &["healthz", "verify"];
#[cfg(not(feature = "gateway"))]
const GATEWAY: &[&str] = &[];

#[cfg(feature = "gateway")]
mod gateway {
    use std::net::SocketAddr;

    use axum::body::Body;
    use http::{HeaderMap, HeaderValue, Request, Uri, header};
    use tower::ServiceExt;
    use tower_authgate::gateway::{Gateway, Settings};
    use tower_authgate::ip::PeerAddr;

    use super::{black_box, ready};

    pub fn case(what: &str) -> Option<Box<dyn FnMut()>> {
        let dir = env!("CARGO_MANIFEST_DIR");
        let text = std::fs::read_to_string(format!("{dir}/examples/gateway.toml")).unwrap();
        let settings = Settings::from_toml(format!("{dir}/examples/gateway.toml"), &text).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let router = Gateway::build(&settings).unwrap().router();
        let peer = PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        let login = Request::post("/api/login")
            .header(header::HOST, "authgate")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(peer)
            .body(Body::from(r#"{"username":"admin","password":"admin"}"#))
            .unwrap();
        let token = runtime.block_on(async {
            let response = router.clone().oneshot(login).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        });
        // Each request is made from a head built once, as a server hands
        // over a parsed head: the cost counted is the gateway's.
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, bearer);
        // An HTTP/1.1 request without `Host` is refused (RFC 9112 §3.2).
        headers.insert(header::HOST, HeaderValue::from_static("authgate"));
        let uri = match what {
            "healthz" => Uri::from_static("/healthz"),
            "verify" => {
                headers.insert("x-original-uri", HeaderValue::from_static("/api/projects"));
                headers.insert("x-original-method", HeaderValue::from_static("GET"));
                Uri::from_static("/_authgate/verify")
            }
            _ => return None,
        };
        let request = move || {
            let mut request = Request::new(Body::empty());
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            request.extensions_mut().insert(peer);
            request
        };
        Some(Box::new(move || {
            let _entered = runtime.enter();
            let response = ready(router.clone().oneshot(request())).unwrap();
            assert_eq!(response.status(), 200);
            black_box(response);
        }))
    }
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
        .chain(GATEWAY.iter().map(|what| format!("gateway/{what}")))
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
