//! A Cedar decision per request: the example set of `examples/` (21
//! policies, validated against its schema) behind an `AuthLayer` whose
//! token comes from the verified-token cache, beside the same request with
//! a role check (`RequireLayer::role`), so the difference is what the
//! Cedar decision costs: building the principal, resource and context,
//! and evaluating every policy.
//!
//! Run: `cargo bench --features cedar --bench cedar`.

mod tokens;

use std::convert::Infallible;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use http::{HeaderValue, Method, Request, Response, header};
use serde::{Deserialize, Serialize};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::authz::{CedarPolicies, GrantMapping, RequireLayer};
use tower_authgate::clock::now_seconds;
use tower_authgate::ip::ClientIp;
use tower_authgate::tenant::HasSpaces;
use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier};

use tokens::{SECRET, ready};

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    usefor: String,
    roles: Vec<String>,
    scope: String,
    department: String,
    teams: Vec<String>,
    spaces: Vec<String>,
}

impl HasSpaces for Claims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn cedar(c: &mut Criterion) {
    let key = SigningKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let token = key
        .sign(&Claims {
            sub: "ann".into(),
            exp: now_seconds() + 3600,
            usefor: "access".into(),
            roles: vec!["analyst".into(), "operator".into()],
            scope: "openid audit:read".into(),
            department: "ops".into(),
            teams: vec!["blue".into(), "red".into()],
            spaces: vec!["production".into(), "staging".into()],
        })
        .unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let verifier = Verifier::builder(KeySet::single(key.verifying_key()))
        .grants(
            GrantMapping::standard()
                .capture("department")
                .capture("teams"),
        )
        .token_cache(1_000)
        .build()
        .unwrap();
    let policies = CedarPolicies::builder()
        .claims(["department", "teams"])
        .spaces_of::<Claims>()
        .load(example("policies.cedar"), example("policies.cedarschema"))
        .unwrap();
    let handler = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut group = c.benchmark_group("cedar");
    for (case, require, method, path, status) in [
        (
            "role",
            RequireLayer::role("analyst"),
            Method::GET,
            "/reports/q3",
            200,
        ),
        (
            "cedar_permit",
            RequireLayer::cedar(policies.clone()),
            Method::GET,
            "/reports/q3",
            200,
        ),
        (
            "cedar_claim_permit",
            RequireLayer::cedar(policies.clone()),
            Method::POST,
            "/ops/deploy",
            200,
        ),
        (
            "cedar_no_permit",
            RequireLayer::cedar(policies.clone()),
            Method::GET,
            "/admin/users",
            403,
        ),
    ] {
        let service = ServiceBuilder::new()
            .layer(AuthLayer::<Claims>::new(verifier.clone()).sources(TokenSources::bearer()))
            .layer(require)
            .service(handler);
        group.bench_function(case, |b| {
            b.iter(|| {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(String::new())
                    .unwrap();
                request
                    .headers_mut()
                    .insert(header::AUTHORIZATION, bearer.clone());
                request
                    .extensions_mut()
                    .insert(ClientIp([10, 1, 2, 3].into()));
                let response = ready(service.clone().oneshot(request)).unwrap();
                assert_eq!(response.status(), status);
                response
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = cedar
}

fn main() {
    tokens::observe();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
