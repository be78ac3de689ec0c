//! `RequireLayer::cedar` over `oneshot`, behind an AuthLayer, with the
//! example policy set and schema of `examples/`: every kind of condition
//! (role, scope, captured claim, granted and selected space, method, path,
//! client address, time), forbid over permit, no permit, evaluation errors,
//! load errors with their places, reloads, and the wiring refusals.
#![cfg(feature = "cedar")]

mod common;

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use common::*;
use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::authz::{CedarError, CedarPolicies, GrantMapping, RequireLayer};
use tower_authgate::ip::ClientIp;
use tower_authgate::reject::Rejection;
use tower_authgate::tenant::{HasSpaces, SelectSpaceLayer};
use tower_authgate::token::{Algorithm, KeySet, TokenSources, Verifier};

#[derive(serde::Deserialize)]
struct Spaced {
    #[serde(default)]
    spaces: Vec<String>,
}

impl HasSpaces for Spaced {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

type Service = BoxCloneService<Request<String>, Response<String>, Infallible>;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// The example set, with the claims and spaces its schema declares.
fn example_policies() -> CedarPolicies {
    CedarPolicies::builder()
        .claims(["department", "teams"])
        .spaces_of::<Spaced>()
        .load(example("policies.cedar"), example("policies.cedarschema"))
        .unwrap()
}

fn verifier() -> Verifier {
    Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .grants(
        GrantMapping::standard()
            .capture("department")
            .capture("teams"),
    )
    .build()
    .unwrap()
}

/// A token for `sub` carrying `extra`.
fn token(sub: &str, extra: Value) -> String {
    let now = tower_authgate::clock::now_seconds();
    let mut claims = json!({"exp": now + 300, "iat": now, "sub": sub, "usefor": "access"});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    signing_key(Algorithm::HS256).sign(&claims).unwrap()
}

/// Renders a refusal as its status and, in the body, its reason.
fn shape(rejection: &Rejection) -> Response<String> {
    let mut response = Response::new(rejection.reason().to_owned());
    *response.status_mut() = rejection.status();
    rejection.set_headers(response.headers_mut());
    response
}

async fn echo(_req: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("ok".into()))
}

/// AuthLayer, then (with `spaces`) SelectSpaceLayer, then the Cedar layer.
fn service(layer: RequireLayer, spaces: bool) -> Service {
    let auth = AuthLayer::<Spaced>::new(verifier()).sources(TokenSources::bearer());
    let require = layer.on_rejection(shape);
    if spaces {
        BoxCloneService::new(
            ServiceBuilder::new()
                .layer(auth.clone())
                .layer(SelectSpaceLayer::for_auth(&auth))
                .layer(require)
                .service(service_fn(echo)),
        )
    } else {
        BoxCloneService::new(
            ServiceBuilder::new()
                .layer(auth)
                .layer(require)
                .service(service_fn(echo)),
        )
    }
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    token: Option<String>,
    space: Option<&'a str>,
    client: Option<IpAddr>,
}

fn call<'a>(method: Method, path: &'a str, token: &str) -> Call<'a> {
    Call {
        method,
        path,
        token: Some(token.to_owned()),
        space: None,
        client: None,
    }
}

impl Call<'_> {
    fn space(mut self, space: &'static str) -> Self {
        self.space = Some(space);
        self
    }

    fn client(mut self, client: &str) -> Self {
        self.client = Some(client.parse().unwrap());
        self
    }

    /// The status and the body (the reason of a refusal).
    async fn send(self, service: &Service) -> (StatusCode, String) {
        let mut request = Request::builder().method(self.method).uri(self.path);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(space) = self.space {
            request = request.header("x-space", space);
        }
        let mut request = request.body(String::new()).unwrap();
        if let Some(client) = self.client {
            // What an IpFilterLayer before the check puts in.
            request.extensions_mut().insert(ClientIp(client));
        }
        let response = service.clone().oneshot(request).await.unwrap();
        (response.status(), response.into_body())
    }
}

fn ok() -> (StatusCode, String) {
    (StatusCode::OK, "ok".into())
}

fn denied() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "policy_denied".into())
}

#[tokio::test]
async fn a_permit_allows_and_a_forbid_overrides_it() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let admin = token("ann", json!({"roles": ["admin"]}));
    assert_eq!(
        call(Method::GET, "/admin/users", &admin)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::DELETE, "/admin/users/7", &admin)
            .send(&service)
            .await,
        ok()
    );
    // "keep-audit-trail" forbids what "admin" permits.
    assert_eq!(
        call(Method::DELETE, "/admin/audit/2024", &admin)
            .send(&service)
            .await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/admin/audit/2024", &admin)
            .send(&service)
            .await,
        ok()
    );
    // A blocked account, administrator or not.
    let mallory = token("mallory", json!({"roles": ["admin"]}));
    assert_eq!(
        call(Method::GET, "/admin/users", &mallory)
            .send(&service)
            .await,
        denied()
    );
}

#[tokio::test]
async fn no_matching_permit_is_a_403_policy_denied() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let operator = token("olaf", json!({"roles": ["operator"]}));
    assert_eq!(
        call(Method::GET, "/admin/users", &operator)
            .send(&service)
            .await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/nowhere", &operator)
            .send(&service)
            .await,
        denied()
    );
    let request = Request::builder()
        .uri("/nowhere")
        .header(header::AUTHORIZATION, format!("Bearer {operator}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn roles_and_scopes() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let analyst = token("ann", json!({"roles": ["viewer", "analyst"]}));
    let viewer = token("vic", json!({"roles": ["viewer"]}));
    assert_eq!(
        call(Method::GET, "/reports/q3", &analyst)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/reports/q3", &viewer)
            .send(&service)
            .await,
        denied()
    );
    let auditor = token("ann", json!({"scope": "openid audit:read"}));
    let other = token("ann", json!({"scope": "openid audit:write"}));
    assert_eq!(
        call(Method::GET, "/audit/2024", &auditor)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::HEAD, "/audit/2024", &auditor)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::POST, "/audit/2024", &auditor)
            .send(&service)
            .await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/audit/2024", &other)
            .send(&service)
            .await,
        denied()
    );
}

#[tokio::test]
async fn a_route_names_its_own_action() {
    let policies = example_policies();
    let export = service(
        RequireLayer::cedar_action(policies.clone(), "ExportAudit").unwrap(),
        false,
    );
    let both = token("ann", json!({"scope": "audit:read audit:export"}));
    let read_only = token("ann", json!({"scope": "audit:read"}));
    // The route's action, whatever the method.
    assert_eq!(
        call(Method::POST, "/exports", &both).send(&export).await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/exports", &both).send(&export).await,
        ok()
    );
    assert_eq!(
        call(Method::POST, "/exports", &read_only)
            .send(&export)
            .await,
        denied()
    );
    // An action the schema does not declare is refused when the layer is built.
    match RequireLayer::cedar_action(policies, "Export") {
        Err(CedarError::UnknownAction(action)) => assert_eq!(action, "Export"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn captured_claims() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let ops = token("ann", json!({"department": "ops"}));
    let sales = token("bob", json!({"department": "sales"}));
    let none = token("cid", json!({}));
    assert_eq!(
        call(Method::POST, "/ops/deploy", &ops).send(&service).await,
        ok()
    );
    assert_eq!(
        call(Method::POST, "/ops/deploy", &sales)
            .send(&service)
            .await,
        denied()
    );
    assert_eq!(
        call(Method::POST, "/ops/deploy", &none)
            .send(&service)
            .await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/ops/deploy", &none).send(&service).await,
        ok()
    );
    let blue = token("ann", json!({"teams": ["red", "blue"]}));
    let red = token("bob", json!({"teams": ["red"]}));
    assert_eq!(
        call(Method::GET, "/teams/blue/board", &blue)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/teams/blue/board", &red)
            .send(&service)
            .await,
        denied()
    );
}

#[tokio::test]
async fn granted_and_selected_spaces() {
    let service = service(RequireLayer::cedar(example_policies()), true);
    let operator = token(
        "olaf",
        json!({"roles": ["operator"], "spaces": ["production", "staging"]}),
    );
    let developer = token("dev", json!({"spaces": ["production", "staging"]}));
    let project = |method, token: &str, space| call(method, "/projects/7", token).space(space);
    assert_eq!(
        project(Method::GET, &developer, "production")
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        project(Method::PUT, &operator, "production")
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        project(Method::PUT, &developer, "production")
            .send(&service)
            .await,
        denied()
    );
    // "staging-write" reads the spaces the token grants.
    assert_eq!(
        project(Method::PUT, &developer, "staging")
            .send(&service)
            .await,
        ok()
    );
    // Without a SelectSpaceLayer, the context has no space.
    let no_space = self::service(RequireLayer::cedar(example_policies()), false);
    assert_eq!(
        call(Method::GET, "/projects/7", &developer)
            .send(&no_space)
            .await,
        denied()
    );
}

#[tokio::test]
async fn methods_and_paths() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let anyone = token("ann", json!({}));
    assert_eq!(call(Method::GET, "/me", &anyone).send(&service).await, ok());
    assert_eq!(
        call(Method::POST, "/me", &anyone).send(&service).await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/me/more", &anyone).send(&service).await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/api/public/docs", &anyone)
            .send(&service)
            .await,
        ok()
    );
    // "billing" permits every action: a method the schema does not declare
    // is still refused.
    assert_eq!(
        call(Method::PATCH, "/billing/invoices", &anyone)
            .send(&service)
            .await,
        ok()
    );
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    assert_eq!(
        call(propfind, "/billing/invoices", &anyone)
            .send(&service)
            .await,
        denied()
    );
    let support = token("sue", json!({"roles": ["support"]}));
    assert_eq!(
        call(Method::GET, "/users/7", &support).send(&service).await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/users/7/secrets", &support)
            .send(&service)
            .await,
        denied()
    );
    // The decoded reading of an encoded path.
    assert_eq!(
        call(Method::GET, "/users/%C3%A9mile", &support)
            .send(&service)
            .await,
        ok()
    );
    // A path with more than one reading never reaches a policy.
    assert_eq!(
        call(Method::GET, "/users/7/../7/secrets", &support)
            .send(&service)
            .await,
        (StatusCode::BAD_REQUEST, "ambiguous_path".into())
    );
    assert_eq!(
        call(Method::GET, "/users/7%2fsecrets", &support)
            .send(&service)
            .await,
        (StatusCode::BAD_REQUEST, "ambiguous_path".into())
    );
}

#[tokio::test]
async fn client_address_and_time() {
    let service = service(RequireLayer::cedar(example_policies()), false);
    let anyone = token("ann", json!({}));
    let internal = |client: Option<&str>| {
        let call = call(Method::GET, "/internal/metrics", &anyone);
        match client {
            Some(client) => call.client(client),
            None => call,
        }
    };
    assert_eq!(internal(Some("10.1.2.3")).send(&service).await, ok());
    assert_eq!(internal(Some("192.168.1.9")).send(&service).await, denied());
    assert_eq!(internal(Some("::1")).send(&service).await, denied());
    // An unknown client address is not an internal one.
    assert_eq!(internal(None).send(&service).await, denied());
    // "billing" holds until 2100, "legacy-sunset" forbids since 2025.
    assert_eq!(
        call(Method::GET, "/billing/x", &anyone)
            .send(&service)
            .await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/legacy/x", &anyone).send(&service).await,
        denied()
    );
}

const SMALL_SCHEMA: &str = r#"entity User = { roles: Set<String>, scopes: Set<String>, claims: {} };
entity Path = { path: String };
action "GET", "POST" appliesTo {
  principal: User,
  resource: Path,
  context: { time: Long, client?: ipaddr, space?: String },
};
"#;

#[tokio::test]
async fn an_evaluation_error_refuses() {
    let allow = r#"permit (principal, action, resource) when { resource.path like "/x/*" };"#;
    let policies = CedarPolicies::builder()
        .from_texts(allow, SMALL_SCHEMA)
        .unwrap();
    let service = service(RequireLayer::cedar(policies.clone()), false);
    let anyone = token("ann", json!({}));
    assert_eq!(
        call(Method::GET, "/x/1", &anyone).send(&service).await,
        ok()
    );
    // A forbid that overflows a Long fails to evaluate: Cedar skips it and
    // answers Allow, with the error in its diagnostics; the layer refuses.
    let erroring = format!(
        "{allow}\nforbid (principal, action, resource) when {{ context.time * 9000000000000 > 0 }};"
    );
    policies.replace_texts(&erroring, SMALL_SCHEMA).unwrap();
    assert_eq!(policies.policy_count(), 2);
    assert_eq!(
        call(Method::GET, "/x/1", &anyone).send(&service).await,
        denied()
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("authgate-cedar-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_parse_error_names_the_file_line_and_column() {
    let dir = scratch("parse");
    let schema = write(&dir, "s.cedarschema", SMALL_SCHEMA);
    let policies = write(
        &dir,
        "bad.cedar",
        "permit (principal, action, resource);\n\npermit (principal, action resource);\n",
    );
    let error = CedarPolicies::load(&policies, &schema).unwrap_err();
    assert!(matches!(error, CedarError::Parse(_)), "{error:?}");
    let problem = &error.problems()[0];
    assert!(problem.file.ends_with("bad.cedar"), "{problem:?}");
    assert_eq!(problem.line, Some(3), "{problem:?}");
    assert_eq!(problem.column, Some(27), "{problem:?}");
    let text = error.to_string();
    assert!(text.contains("bad.cedar:3:27: "), "{text}");
}

#[test]
fn a_validation_error_names_the_policy_line() {
    let dir = scratch("validation");
    let schema = write(&dir, "s.cedarschema", SMALL_SCHEMA);
    let policies = write(
        &dir,
        "typo.cedar",
        "permit (principal, action, resource);\n\
         permit (principal, action, resource)\n  \
         when { principal.role.contains(\"admin\") };\n",
    );
    let error = CedarPolicies::load(&policies, &schema).unwrap_err();
    assert!(matches!(error, CedarError::Validation(_)), "{error:?}");
    let problem = &error.problems()[0];
    assert_eq!(problem.line, Some(3), "{problem:?}");
    assert!(problem.column.is_some_and(|c| c >= 10), "{problem:?}");
    assert!(problem.message.contains("role"), "{problem:?}");
    assert!(error.to_string().contains("typo.cedar:3:"), "{error}");
    // An action the schema does not declare fails strict validation too.
    let undeclared = write(
        &dir,
        "undeclared.cedar",
        "permit (principal, action == Action::\"DELETE\", resource);\n",
    );
    let error = CedarPolicies::load(&undeclared, &schema).unwrap_err();
    assert!(matches!(error, CedarError::Validation(_)), "{error:?}");
    assert_eq!(error.problems()[0].line, Some(1), "{error}");
}

#[test]
fn a_schema_error_and_a_schema_that_does_not_fit() {
    let dir = scratch("schema");
    let policies = write(&dir, "p.cedar", "permit (principal, action, resource);\n");
    let broken = write(
        &dir,
        "broken.cedarschema",
        "entity User;\nentity Path = { path: };\n",
    );
    let error = CedarPolicies::load(&policies, &broken).unwrap_err();
    assert!(matches!(error, CedarError::Schema(_)), "{error:?}");
    assert_eq!(error.problems()[0].line, Some(2), "{error}");
    assert!(
        error.to_string().contains("broken.cedarschema:2:"),
        "{error}"
    );
    // The principal lacks `claims`: every request would fail, so the load does.
    let unfit = write(
        &dir,
        "unfit.cedarschema",
        &SMALL_SCHEMA.replace(", claims: {}", ""),
    );
    let error = CedarPolicies::load(&policies, &unfit).unwrap_err();
    assert!(matches!(error, CedarError::Model(_)), "{error:?}");
    // A captured claim the schema does not declare.
    let schema = example("policies.cedarschema");
    let declared = CedarPolicies::builder()
        .claims(["department"])
        .load(&policies, &schema);
    assert!(declared.is_ok(), "{declared:?}");
    let error = CedarPolicies::builder()
        .claims(["nickname"])
        .load(&policies, &schema)
        .unwrap_err();
    assert!(matches!(error, CedarError::Model(_)), "{error:?}");
    assert!(error.to_string().contains("nickname"), "{error}");
    // A missing file.
    let error = CedarPolicies::load(dir.join("absent.cedar"), &broken).unwrap_err();
    assert!(matches!(error, CedarError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.cedar"), "{error}");
}

#[tokio::test]
async fn reload_swaps_the_set_and_keeps_it_when_the_new_one_is_bad() {
    let dir = scratch("reload");
    let schema = write(&dir, "s.cedarschema", SMALL_SCHEMA);
    let file = write(
        &dir,
        "p.cedar",
        r#"permit (principal, action == Action::"GET", resource) when { resource.path like "/a/*" };"#,
    );
    let policies = CedarPolicies::load(&file, &schema).unwrap();
    assert_eq!(policies.files(), Some((file.as_path(), schema.as_path())));
    let service = service(RequireLayer::cedar(policies.clone()), false);
    let anyone = token("ann", json!({}));
    assert_eq!(
        call(Method::GET, "/a/1", &anyone).send(&service).await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/b/1", &anyone).send(&service).await,
        denied()
    );

    write(
        &dir,
        "p.cedar",
        r#"permit (principal, action == Action::"GET", resource) when { resource.path like "/b/*" };
permit (principal, action == Action::"POST", resource) when { resource.path like "/b/*" };"#,
    );
    policies.reload().unwrap();
    assert_eq!(policies.policy_count(), 2);
    assert_eq!(
        call(Method::GET, "/a/1", &anyone).send(&service).await,
        denied()
    );
    assert_eq!(
        call(Method::GET, "/b/1", &anyone).send(&service).await,
        ok()
    );

    write(
        &dir,
        "p.cedar",
        "permit (principal, action, resource)\n  when { principal.nope };\n",
    );
    let error = policies.reload().unwrap_err();
    assert!(error.to_string().contains("p.cedar:2:"), "{error}");
    // The set in force stays.
    assert_eq!(policies.policy_count(), 2);
    assert_eq!(
        call(Method::GET, "/b/1", &anyone).send(&service).await,
        ok()
    );
    assert_eq!(
        call(Method::GET, "/a/1", &anyone).send(&service).await,
        denied()
    );

    // A set built from texts has no files to read again.
    let texts = CedarPolicies::builder()
        .from_texts("permit (principal, action, resource);", SMALL_SCHEMA)
        .unwrap();
    assert!(matches!(texts.reload(), Err(CedarError::NotFromFiles)));
}

#[tokio::test]
async fn no_token_is_a_500_and_anonymous_a_401() {
    let anyone = token("ann", json!({}));
    let unwired = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(RequireLayer::cedar(example_policies()).on_rejection(shape))
            .service(service_fn(echo)),
    );
    assert_eq!(
        call(Method::GET, "/me", &anyone).send(&unwired).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing_auth_layer".into()
        )
    );
    let optional: Service = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(
                AuthLayer::<Spaced>::new(verifier())
                    .sources(TokenSources::bearer())
                    .optional(),
            )
            .layer(RequireLayer::cedar(example_policies()).on_rejection(shape))
            .service(service_fn(echo)),
    );
    let mut anonymous = call(Method::GET, "/api/public/docs", &anyone);
    anonymous.token = None;
    assert_eq!(
        anonymous.send(&optional).await,
        (StatusCode::UNAUTHORIZED, "authentication_required".into())
    );
    assert_eq!(
        call(Method::GET, "/me", &anyone).send(&optional).await,
        ok()
    );
}

#[tokio::test]
async fn spaces_of_another_claims_type_is_a_wiring_mistake() {
    let service = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(AuthLayer::<Value>::new(verifier()).sources(TokenSources::bearer()))
            .layer(RequireLayer::cedar(example_policies()).on_rejection(shape))
            .service(service_fn(echo)),
    );
    let anyone = token("ann", json!({}));
    assert_eq!(
        call(Method::GET, "/me", &anyone).send(&service).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "claims_type_mismatch".into()
        )
    );
}
