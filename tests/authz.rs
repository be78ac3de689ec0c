//! RequireLayer and the `Authorized` extractor over `oneshot`, behind an
//! AuthLayer: every policy kind, every claim mapping (a token as each
//! identity provider shapes it), every refusal (the wiring mistakes
//! included).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::authz::{CheckFailed, CheckRequest, GrantMapping, Policy, RequireLayer};
use tower_authgate::reject::{JsonRejection, Rejection};
use tower_authgate::tenant::SelectSpaceLayer;
use tower_authgate::token::{Algorithm, KeySet, TokenSources, Verifier};

async fn echo(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("ok".into()))
}

/// A token carrying `extra` beside the registered claims.
fn token(extra: Value) -> String {
    let now = tower_authgate::clock::now_seconds();
    let mut claims = json!({"exp": now + 300, "iat": now, "sub": "ann", "usefor": "access"});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    signing_key(Algorithm::HS256).sign(&claims).unwrap()
}

fn verifier(mapping: GrantMapping) -> Verifier {
    Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .grants(mapping)
    .token_cache(16)
    .build()
    .unwrap()
}

fn request(token: Option<&str>) -> Request<String> {
    let mut request = Request::builder().uri("/api/projects/7");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(String::new()).unwrap()
}

/// The status and the `WWW-Authenticate` header of `policy` applied to a
/// token carrying `claims`, read through `mapping`.
async fn decide_with(mapping: GrantMapping, policy: Policy, claims: Value) -> (StatusCode, String) {
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<Value>::new(verifier(mapping)).sources(TokenSources::bearer()))
        .layer(RequireLayer::new(policy))
        .service(service_fn(echo));
    let token = token(claims);
    let response = service.oneshot(request(Some(&token))).await.unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), challenge)
}

async fn decide(policy: Policy, claims: Value) -> StatusCode {
    decide_with(GrantMapping::default(), policy, claims).await.0
}

#[tokio::test]
async fn role_and_scope() {
    let claims = json!({"roles": ["operator"], "scope": "projects:read audit:read"});
    assert_eq!(
        decide(Policy::role("operator"), claims.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        decide(Policy::role("admin"), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::scope("audit:read"), claims.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        decide(Policy::scope("audit"), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(
            Policy::scopes(["projects:read", "audit:read"]),
            claims.clone()
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        decide(
            Policy::scopes(["projects:read", "projects:write"]),
            claims.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::any_role(["admin", "operator"]), claims.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        decide(Policy::any_role(Vec::<String>::new()), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::authenticated(), claims).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn combinators() {
    let claims = json!({"roles": ["operator"], "scope": "audit:read"});
    let op = || Policy::role("operator");
    let admin = || Policy::role("admin");
    assert_eq!(
        decide(
            Policy::all_of([op(), Policy::scope("audit:read")]),
            claims.clone()
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        decide(Policy::all_of([op(), admin()]), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::any_of([admin(), op()]), claims.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        decide(
            Policy::any_of([admin(), Policy::scope("x")]),
            claims.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::not(admin()), claims.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        decide(Policy::not(op()), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide(Policy::any_of([]), claims.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(decide(Policy::all_of([]), claims).await, StatusCode::OK);
}

#[tokio::test]
async fn captured_claims() {
    let mapping = || {
        GrantMapping::standard()
            .capture("department")
            .capture("teams")
    };
    let claims = json!({"department": "ops", "teams": ["blue", "red"]});
    let eq = |v: &str| Policy::claim_equals("department", v);
    let has = |v: &str| Policy::claim_contains("teams", v);
    assert_eq!(
        decide_with(mapping(), eq("ops"), claims.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        decide_with(mapping(), eq("dev"), claims.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        decide_with(mapping(), has("red"), claims.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        decide_with(mapping(), has("green"), claims.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    // An array is not equal to one of its elements.
    assert_eq!(
        decide_with(
            mapping(),
            Policy::claim_equals("teams", "red"),
            claims.clone()
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // A claim the verifier does not capture grants nothing.
    assert_eq!(
        decide_with(GrantMapping::standard(), eq("ops"), claims)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn closures() {
    let claims = json!({"sub": "ann", "roles": []});
    let own = Policy::check("subject ann", |token, _| {
        token.meta().subject.as_deref() == Some("ann")
    });
    assert_eq!(decide(own, claims.clone()).await, StatusCode::OK);
    let other = Policy::check("subject bob", |token, _| {
        token.meta().subject.as_deref() == Some("bob")
    });
    let (status, challenge) = decide_with(GrantMapping::default(), other, claims.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let typed = Policy::claims::<Value, _>("sub claim", |c| c["sub"] == "ann");
    assert_eq!(decide(typed, claims).await, StatusCode::OK);
}

#[tokio::test]
async fn a_claims_policy_of_another_type_is_a_wiring_mistake() {
    #[derive(serde::Deserialize)]
    struct Other;
    let policy = Policy::claims::<Other, _>("other", |_| true);
    assert_eq!(
        decide(policy, json!({})).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn insufficient_scope_names_what_was_needed() {
    let (status, challenge) = decide_with(
        GrantMapping::default(),
        Policy::scope("audit:read"),
        json!({"scope": "openid"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.ends_with(r#"scope="audit:read""#), "{challenge}");

    let (status, challenge) = decide_with(
        GrantMapping::default(),
        Policy::role("admin"),
        json!({"roles": ["operator"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("role:admin"), "{challenge}");
    assert!(!challenge.contains("scope=\""), "{challenge}");
}

#[tokio::test]
async fn a_route_answers_in_its_own_error_format() {
    let shape = |rejection: &Rejection| {
        let mut response = Response::new(
            json!({"code": rejection.status().as_u16(), "why": rejection.message(), "reason": rejection.reason()})
                .to_string(),
        );
        *response.status_mut() = rejection.status();
        rejection.set_headers(response.headers_mut());
        response
    };
    let service = ServiceBuilder::new()
        .layer(
            AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                .sources(TokenSources::bearer()),
        )
        .layer(RequireLayer::role("admin").on_rejection(shape))
        .service(service_fn(echo));
    let response = service
        .oneshot(request(Some(&token(json!({"roles": ["operator"]})))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["code"], 403);
    assert_eq!(body["reason"], "insufficient_scope");
    assert!(body["why"].as_str().unwrap().contains("role:admin"));
}

#[tokio::test]
async fn anonymous_on_an_optional_route_is_401() {
    let service = ServiceBuilder::new()
        .layer(
            AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                .sources(TokenSources::bearer())
                .optional(),
        )
        .layer(RequireLayer::role("admin"))
        .service(service_fn(echo));
    let response = service.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    let admin = token(json!({"roles": ["admin"]}));
    assert_eq!(
        service
            .oneshot(request(Some(&admin)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_auth_layer_is_a_500_naming_it() {
    let service = ServiceBuilder::new()
        .layer(RequireLayer::role("admin").on_rejection(JsonRejection))
        .service(service_fn(echo));
    let response = service
        .oneshot(request(Some(&token(json!({"roles": ["admin"]})))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.body().contains("AuthLayer"), "{}", response.body());
    // Even a policy every token satisfies.
    let service = ServiceBuilder::new()
        .layer(RequireLayer::new(Policy::authenticated()))
        .service(service_fn(echo));
    let response = service.oneshot(request(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_space_policy_reads_the_selected_space() {
    #[derive(serde::Deserialize)]
    struct Spaced {
        spaces: Vec<String>,
    }
    impl tower_authgate::tenant::HasSpaces for Spaced {
        fn spaces(&self) -> &[String] {
            &self.spaces
        }
    }
    let auth =
        AuthLayer::<Spaced>::new(verifier(GrantMapping::default())).sources(TokenSources::bearer());
    let service = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(SelectSpaceLayer::for_auth(&auth))
        .layer(RequireLayer::new(Policy::space("production")))
        .service(service_fn(echo));
    let token = token(json!({"spaces": ["production", "staging"]}));
    let in_space = |space: &str| {
        let mut req = request(Some(&token));
        req.headers_mut().insert("x-space", space.parse().unwrap());
        req
    };
    assert_eq!(
        service
            .clone()
            .oneshot(in_space("production"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        service.oneshot(in_space("staging")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Without a space layer: a wiring mistake.
    let service = ServiceBuilder::new()
        .layer(auth)
        .layer(RequireLayer::new(Policy::space("production")))
        .service(service_fn(echo));
    let response = service.oneshot(request(Some(&token))).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn an_async_check_runs_after_the_policy() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    // Ann owns project 7, nothing else; project 13's store is down.
    let owns = move |request: CheckRequest| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match request.uri.path() {
                "/api/projects/13" => Err(CheckFailed),
                path => Ok(path == "/api/projects/7"
                    && request.token.meta().subject.as_deref() == Some("ann")),
            }
        }
    };
    let service = ServiceBuilder::new()
        .layer(
            AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                .sources(TokenSources::bearer()),
        )
        .layer(RequireLayer::role("operator").check_async("owner", owns))
        .service(service_fn(echo));
    let operator = token(json!({"roles": ["operator"]}));
    let at = |path: &str, token: &str| {
        Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(String::new())
            .unwrap()
    };
    assert_eq!(
        service
            .clone()
            .oneshot(at("/api/projects/7", &operator))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        service
            .clone()
            .oneshot(at("/api/projects/8", &operator))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let down = service
        .clone()
        .oneshot(at("/api/projects/13", &operator))
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(down.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The policy refuses first: the check is not asked.
    let nobody = token(json!({"roles": []}));
    assert_eq!(
        service
            .oneshot(at("/api/projects/7", &nobody))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A token shaped as each identity provider shapes it, read through its
/// mapping.
#[tokio::test]
async fn every_claim_mapping() {
    let cases: Vec<(&str, GrantMapping, Value, Policy)> = vec![
        (
            "roles array",
            GrantMapping::standard(),
            json!({"roles": ["admin"]}),
            Policy::role("admin"),
        ),
        (
            "roles string",
            GrantMapping::standard(),
            json!({"roles": "admin"}),
            Policy::role("admin"),
        ),
        (
            "scope string (RFC 8693/9068)",
            GrantMapping::standard(),
            json!({"scope": "openid audit:read"}),
            Policy::scope("audit:read"),
        ),
        (
            "scope array",
            GrantMapping::standard(),
            json!({"scope": ["audit:read"]}),
            Policy::scope("audit:read"),
        ),
        (
            "scp array",
            GrantMapping::okta(),
            json!({"scp": ["audit:read"]}),
            Policy::scope("audit:read"),
        ),
        (
            "scp string",
            GrantMapping::azure(),
            json!({"scp": "User.Read audit:read"}),
            Policy::scope("audit:read"),
        ),
        (
            "keycloak realm roles",
            GrantMapping::keycloak(None),
            json!({"realm_access": {"roles": ["admin"]}}),
            Policy::role("admin"),
        ),
        (
            "keycloak client roles",
            GrantMapping::keycloak(Some("demo")),
            json!({"resource_access": {"demo": {"roles": ["admin"]}, "account": {"roles": ["manage-account"]}}}),
            Policy::role("admin"),
        ),
        (
            "auth0 permissions",
            GrantMapping::auth0(),
            json!({"permissions": ["audit:read"]}),
            Policy::scope("audit:read"),
        ),
        (
            "okta groups",
            GrantMapping::okta(),
            json!({"groups": ["admin", "Everyone"]}),
            Policy::role("admin"),
        ),
        (
            "azure roles",
            GrantMapping::azure(),
            json!({"roles": ["admin"]}),
            Policy::role("admin"),
        ),
        (
            "azure groups",
            GrantMapping::azure(),
            json!({"groups": ["admin"]}),
            Policy::role("admin"),
        ),
    ];
    for (name, mapping, claims, policy) in cases {
        let (status, _) = decide_with(mapping.clone(), policy.clone(), claims).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        // The same token without the claim is refused.
        let (status, _) = decide_with(mapping, policy, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} without the claim");
    }
    // A mapping never reads another provider's claim.
    let (status, _) = decide_with(
        GrantMapping::keycloak(Some("demo")),
        Policy::role("manage-account"),
        json!({"resource_access": {"account": {"roles": ["manage-account"]}}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = decide_with(
        GrantMapping::standard(),
        Policy::scope("audit:read"),
        json!({"scp": ["audit:read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_mapped_claim_of_another_shape_refuses_the_token() {
    let (status, challenge) = decide_with(
        GrantMapping::default(),
        Policy::authenticated(),
        json!({"roles": {"admin": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

#[tokio::test]
async fn grants_are_served_from_the_token_cache() {
    let verifier = verifier(GrantMapping::default());
    let service = ServiceBuilder::new()
        .layer(AuthLayer::<Value>::new(verifier.clone()).sources(TokenSources::bearer()))
        .layer(RequireLayer::role("admin"))
        .service(service_fn(echo));
    let admin = token(json!({"roles": ["admin"]}));
    for _ in 0..3 {
        let response = service
            .clone()
            .oneshot(request(Some(&admin)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // One entry, served twice: with its grants, or the role would be missing.
    assert_eq!(verifier.token_cache().unwrap().len(), 1);
}

mod extractor {
    use std::sync::LazyLock;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower_authgate::extract::{Authorized, RequiredPolicy};

    use super::*;

    struct Auditor;
    impl RequiredPolicy for Auditor {
        fn policy() -> &'static Policy {
            static POLICY: LazyLock<Policy> = LazyLock::new(|| Policy::scope("audit:read"));
            &POLICY
        }
    }

    async fn audit(auditor: Authorized<Auditor>) -> String {
        auditor.token().meta().subject.clone().unwrap_or_default()
    }

    fn get_audit(token: Option<&str>) -> Request<Body> {
        let mut request = Request::builder().uri("/api/audit");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn applies_the_policy() {
        let app: Router = Router::new().route("/api/audit", get(audit)).layer(
            AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                .sources(TokenSources::bearer())
                .optional(),
        );
        let ok = app
            .clone()
            .oneshot(get_audit(Some(&token(json!({"scope": "audit:read"})))))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let refused = app
            .clone()
            .oneshot(get_audit(Some(&token(json!({"scope": "openid"})))))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let challenge = refused.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(challenge.ends_with(r#"scope="audit:read""#), "{challenge}");
        let anonymous = app.oneshot(get_audit(None)).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn without_an_auth_layer_is_a_500() {
        let app: Router = Router::new().route("/api/audit", get(audit));
        let response = app.oneshot(get_audit(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("AuthLayer"));
    }
}

mod rules {
    use http::Method;
    use tower_authgate::authz::{Rule, RuleDefault, Rules};

    use super::*;

    /// A public rule, two rules on one prefix told apart by method, and a
    /// scope rule.
    pub(super) fn table_rules() -> Vec<Rule> {
        vec![
            Rule::new("public", "/public/").unwrap().public(),
            Rule::new("admin-read", "/admin/")
                .unwrap()
                .methods([Method::GET])
                .roles(["admin", "auditor"]),
            Rule::new("admin", "/admin/").unwrap().roles(["admin"]),
            Rule::new("audit", "/audit/")
                .unwrap()
                .scopes(["audit:read"]),
        ]
    }

    fn table() -> Rules {
        Rules::new(table_rules())
    }

    async fn call(rules: Rules, method: Method, path: &str, claims: Option<Value>) -> StatusCode {
        let service = ServiceBuilder::new()
            .layer(
                AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                    .sources(TokenSources::bearer())
                    .optional(),
            )
            .layer(RequireLayer::rules(rules))
            .service(service_fn(echo));
        let mut request = Request::builder().method(method).uri(path);
        if let Some(claims) = claims {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token(claims)));
        }
        service
            .oneshot(request.body(String::new()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn first_match_wins() {
        let auditor = || Some(json!({"roles": ["auditor"]}));
        assert_eq!(
            call(table(), Method::GET, "/admin/users", auditor()).await,
            StatusCode::OK
        );
        assert_eq!(
            call(table(), Method::DELETE, "/admin/users", auditor()).await,
            StatusCode::FORBIDDEN
        );
        let admin = Some(json!({"roles": ["admin"]}));
        assert_eq!(
            call(table(), Method::DELETE, "/admin/users", admin).await,
            StatusCode::OK
        );
        let scoped = Some(json!({"scope": "audit:read"}));
        assert_eq!(
            call(table(), Method::GET, "/audit/log", scoped).await,
            StatusCode::OK
        );
        assert_eq!(
            call(table(), Method::GET, "/audit/log", auditor()).await,
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn public_rules_need_no_token() {
        assert_eq!(
            call(table(), Method::GET, "/public/a.css", None).await,
            StatusCode::OK
        );
        assert_eq!(
            call(table(), Method::GET, "/admin/users", None).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn unmatched_requests_get_the_default() {
        let anyone = || Some(json!({"roles": ["admin"]}));
        assert_eq!(
            call(table(), Method::GET, "/other", anyone()).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(table(), Method::GET, "/administrators", anyone()).await,
            StatusCode::FORBIDDEN
        );
        let open = table().default_access(RuleDefault::Authenticated);
        assert_eq!(
            call(open.clone(), Method::GET, "/other", anyone()).await,
            StatusCode::OK
        );
        assert_eq!(
            call(open, Method::GET, "/other", None).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn a_path_with_two_readings_is_refused() {
        for path in [
            "/public/..;/admin/users",
            "/public/%2e%2e/admin/users",
            "/public/..%2fadmin",
            "/%61dmin/users",
        ] {
            assert_eq!(
                call(table(), Method::GET, path, None).await,
                StatusCode::BAD_REQUEST,
                "{path}"
            );
        }
        // One reading, encoded: never public.
        assert_eq!(
            call(table(), Method::GET, "/public/caf%C3%A9", None).await,
            StatusCode::FORBIDDEN
        );
    }
}

/// The README's routes: one line each.
#[tokio::test]
async fn one_line_per_route() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{delete, get};

    let app: Router = Router::new()
        .route(
            "/api/projects/{id}",
            delete(|| async {}).route_layer(RequireLayer::role("admin")),
        )
        .route(
            "/api/audit",
            get(|| async {}).route_layer(RequireLayer::scope("audit:read")),
        )
        .route_layer(
            AuthLayer::<Value>::new(verifier(GrantMapping::default()))
                .sources(TokenSources::bearer()),
        );
    let call = |method: &str, uri: &str, claims: Value| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", token(claims)))
            .body(Body::empty())
            .unwrap()
    };
    let admin = json!({"roles": ["admin"]});
    let operator = json!({"roles": ["operator"], "scope": "audit:read"});
    assert_eq!(
        app.clone()
            .oneshot(call("DELETE", "/api/projects/1", admin.clone()))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(call("DELETE", "/api/projects/1", operator.clone()))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.clone()
            .oneshot(call("GET", "/api/audit", operator))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let refused = app.oneshot(call("GET", "/api/audit", admin)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .ends_with(r#"scope="audit:read""#)
    );
}

/// The policy or the rule table in the `AuthLayer` itself
/// (`AuthLayer::require`, `AuthLayer::rules`): the same answers as a
/// `RequireLayer` right after it, bar the one difference documented (a
/// public rule does not read the token).
mod in_the_auth_layer {
    use http::Method;
    use tower_authgate::ConfigError;
    use tower_authgate::authz::{Rule, RuleDefault, Rules};

    use super::*;

    fn auth(optional: bool) -> AuthLayer<Value> {
        let layer = AuthLayer::<Value>::new(verifier(GrantMapping::default()))
            .sources(TokenSources::bearer());
        if optional { layer.optional() } else { layer }
    }

    /// What a client sees: status, challenge, body, and whether the
    /// handler ran.
    async fn answer<S>(service: S, method: &Method, path: &str, bearer: Option<&str>) -> String
    where
        S: tower::Service<Request<String>, Response = Response<String>, Error = Infallible>,
    {
        let mut request = Request::builder().method(method.clone()).uri(path);
        if let Some(bearer) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        let response = service
            .oneshot(request.body(String::new()).unwrap())
            .await
            .unwrap();
        format!(
            "{} {:?} {:?}",
            response.status(),
            response.headers().get(header::WWW_AUTHENTICATE),
            response.body()
        )
    }

    /// Bearer values: none, a forged one, and tokens of several grants.
    fn bearers() -> Vec<Option<String>> {
        vec![
            None,
            Some("not.a.token".to_owned()),
            Some(token(json!({}))),
            Some(token(json!({"roles": ["admin"]}))),
            Some(token(json!({"roles": ["auditor", "operator"]}))),
            Some(token(json!({"scope": "openid audit:read"}))),
            Some(token(
                json!({"roles": ["admin"], "scope": "audit:read", "dept": "ops"}),
            )),
        ]
    }

    fn policies() -> Vec<Policy> {
        vec![
            Policy::authenticated(),
            Policy::role("admin"),
            Policy::scope("audit:read"),
            Policy::any_of([Policy::role("auditor"), Policy::scope("audit:read")]),
            Policy::all_of([Policy::role("admin"), Policy::not(Policy::role("operator"))]),
            Policy::check("subject ann", |token, _| {
                token.meta().subject.as_deref() == Some("ann")
            }),
        ]
    }

    #[tokio::test]
    async fn require_answers_as_a_require_layer_after_it() {
        let bearers = bearers();
        let mut compared = 0;
        for policy in policies() {
            for optional in [false, true] {
                let fused = ServiceBuilder::new()
                    .layer(auth(optional).require(policy.clone()).unwrap())
                    .service(service_fn(echo));
                let composed = ServiceBuilder::new()
                    .layer(auth(optional))
                    .layer(RequireLayer::new(policy.clone()))
                    .service(service_fn(echo));
                for bearer in &bearers {
                    let bearer = bearer.as_deref();
                    let a = answer(fused.clone(), &Method::GET, "/api/projects/7", bearer).await;
                    let b = answer(composed.clone(), &Method::GET, "/api/projects/7", bearer).await;
                    assert_eq!(a, b, "{policy} optional={optional} {bearer:?}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 6 * 2 * 7);
        // And the answers are the policy's: an operator is refused naming
        // the role, an anonymous request on an optional layer is a 401.
        let fused = ServiceBuilder::new()
            .layer(auth(true).require(Policy::role("admin")).unwrap())
            .service(service_fn(echo));
        let operator = token(json!({"roles": ["operator"]}));
        let refused = answer(fused.clone(), &Method::GET, "/", Some(&operator)).await;
        assert!(refused.starts_with("403 "), "{refused}");
        assert!(
            refused.contains(r#"error=\"insufficient_scope\""#),
            "{refused}"
        );
        let anonymous = answer(fused, &Method::GET, "/", None).await;
        assert!(anonymous.starts_with("401 "), "{anonymous}");
    }

    /// The rule module's table, and a rule on a captured claim.
    fn table() -> Rules {
        let mut rules = super::rules::table_rules();
        rules.push(
            Rule::new("ops", "/ops/")
                .unwrap()
                .require(Policy::claim_equals("dept", "ops")),
        );
        Rules::new(rules)
    }

    const PATHS: [&str; 13] = [
        "/public/a.css",
        "/public",
        "/admin/users",
        "/audit/log",
        "/ops/x",
        "/other",
        "/administrators",
        "/public/..;/admin/users",
        "/public/%2e%2e/admin/users",
        "/%61dmin/users",
        "/public/caf%C3%A9",
        "/public/./a.css",
        "//admin/users",
    ];

    #[tokio::test]
    async fn rules_answer_as_a_require_layer_after_it_except_public_paths() {
        let verifier = GrantMapping::default().capture("dept");
        let auth = |optional: bool| {
            let layer = AuthLayer::<Value>::new(super::verifier(verifier.clone()))
                .sources(TokenSources::bearer());
            if optional { layer.optional() } else { layer }
        };
        let bearers = bearers();
        let mut compared = 0;
        for default in [RuleDefault::Deny, RuleDefault::Authenticated] {
            for optional in [false, true] {
                let rules = table().default_access(default.clone());
                let fused = ServiceBuilder::new()
                    .layer(auth(optional).rules(rules.clone()).unwrap())
                    .service(service_fn(echo));
                let composed = ServiceBuilder::new()
                    .layer(auth(optional))
                    .layer(RequireLayer::rules(rules))
                    .service(service_fn(echo));
                for method in [Method::GET, Method::DELETE] {
                    for path in PATHS {
                        for bearer in &bearers {
                            let bearer = bearer.as_deref();
                            let a = answer(fused.clone(), &method, path, bearer).await;
                            let b = answer(composed.clone(), &method, path, bearer).await;
                            if path == "/public/a.css" {
                                // Public: the fused layer never reads the
                                // token, so even a forged one goes through.
                                assert!(a.starts_with("200 "), "{path} {bearer:?}: {a}");
                            } else {
                                assert_eq!(
                                    a, b,
                                    "{default:?} optional={optional} {method} {path} {bearer:?}"
                                );
                            }
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 2 * 2 * 2 * PATHS.len() * 7);
    }

    #[tokio::test]
    async fn rule_decisions() {
        let service = ServiceBuilder::new()
            .layer(auth(false).rules(table()).unwrap())
            .service(service_fn(echo));
        let status = |method: Method, path: &'static str, bearer: Option<String>| {
            let service = service.clone();
            async move {
                let answer = answer(service, &method, path, bearer.as_deref()).await;
                answer[..3].to_owned()
            }
        };
        let auditor = || Some(token(json!({"roles": ["auditor"]})));
        let admin = || Some(token(json!({"roles": ["admin"]})));
        assert_eq!(status(Method::GET, "/admin/users", auditor()).await, "200");
        assert_eq!(
            status(Method::DELETE, "/admin/users", auditor()).await,
            "403"
        );
        assert_eq!(status(Method::DELETE, "/admin/users", admin()).await, "200");
        assert_eq!(status(Method::GET, "/other", admin()).await, "403");
        assert_eq!(status(Method::GET, "/admin/users", None).await, "401");
        assert_eq!(status(Method::GET, "/public/a.css", None).await, "200");
        assert_eq!(
            status(Method::GET, "/public/a.css", Some("forged".into())).await,
            "200"
        );
        // A path with two readings is never public, and is refused once
        // its token passed.
        assert_eq!(
            status(Method::GET, "/public/..;/admin/users", None).await,
            "401"
        );
        assert_eq!(
            status(Method::GET, "/public/..;/admin/users", admin()).await,
            "400"
        );
    }

    /// A public request goes on anonymous: no identity reaches the
    /// handler, even with a valid token.
    #[tokio::test]
    async fn a_public_request_carries_no_identity() {
        let service = ServiceBuilder::new()
            .layer(auth(false).rules(table()).unwrap())
            .service(service_fn(|req: Request<String>| async move {
                let seen = match req
                    .extensions()
                    .get::<tower_authgate::token::VerifiedToken>()
                {
                    Some(token) => format!("token {:?}", token.meta().subject),
                    None => "no token".to_owned(),
                };
                Ok::<_, Infallible>(Response::new(seen))
            }));
        let admin = token(json!({"roles": ["admin"]}));
        let public = answer(service.clone(), &Method::GET, "/public/a.css", Some(&admin)).await;
        assert_eq!(public, r#"200 OK None "no token""#);
        let admin_path = answer(service, &Method::GET, "/admin/users", Some(&admin)).await;
        assert_eq!(admin_path, r#"200 OK None "token Some(\"ann\")""#);
    }

    #[test]
    fn a_policy_over_the_space_is_refused_in_the_auth_layer() {
        let space = Policy::any_of([Policy::role("admin"), Policy::space("production")]);
        assert!(matches!(
            auth(false).require(space.clone()),
            Err(ConfigError::PolicyReadsSpace(what)) if what.contains("space:production")
        ));
        let rules = Rules::new([Rule::new("prod", "/prod/").unwrap().require(space.clone())]);
        assert!(matches!(
            auth(false).rules(rules),
            Err(ConfigError::PolicyReadsSpace(what)) if what.starts_with("rule prod: ")
        ));
        let by_default = Rules::new([]).default_access(RuleDefault::Policy(space));
        assert!(auth(false).rules(by_default).is_err());
    }

    /// A claims policy of another type than the layer's is the wiring
    /// mistake it is in a `RequireLayer`: a 500, never a pass.
    #[tokio::test]
    async fn a_claims_policy_of_another_type_is_a_500() {
        #[derive(serde::Deserialize)]
        struct Other {}
        let policy = Policy::claims::<Other, _>("other claims", |_| true);
        let service = ServiceBuilder::new()
            .layer(auth(false).require(policy).unwrap())
            .service(service_fn(echo));
        let bearer = token(json!({"roles": ["admin"]}));
        let answer = answer(service, &Method::GET, "/", Some(&bearer)).await;
        assert!(answer.starts_with("500 "), "{answer}");
    }
}
