//! The demo application: all five documented login APIs on one router, with
//! in-memory stores. `main.rs` serves it; the integration tests start it on
//! an ephemeral loopback port.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_authgate::authz::RequireLayer;
use tower_authgate::cookie::CookieSettings;
use tower_authgate::csrf::CsrfLayer;
use tower_authgate::ip::{ClientIp, ClientIpResolver, IpFilterLayer, IpRanges, IpRules};
use tower_authgate::lockout::Lockout;
use tower_authgate::login::{
    AuthClaims, DEFAULT_HASHING_QUEUE, DEFAULT_REUSE_GRACE, HashingPool, JwtIssuer, LoginFlow,
    MemoryUsers, NewUser, TokenIssuer,
};
use tower_authgate::otp::TotpVerifier;
use tower_authgate::reject::{JsonRejection, OnRejection};
use tower_authgate::schemes::{auth_token, bearer_pair, cookie_session, pascal_case, x_auth_token};
use tower_authgate::store::{
    LoginCodeStore, MemoryLoginCodes, MemoryRevocations, MemoryRotations, MemoryServiceAccounts,
    RevocationStore, RotationStore, ServiceAccountStore,
};
use tower_authgate::tenant::{SelectSpaceLayer, Space};
use tower_authgate::throttle::LoginThrottleLayer;
use tower_authgate::token::{KeySet, SharedClaims, SigningKey, TokenKind, Verifier};

/// The TOTP secret of the demo user `operator`.
pub const OPERATOR_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The issuer named in tokens of every API but the datarhei Core API's.
pub const DEMO_ISSUER: &str = "tower-authgate-demo";

/// How the demo is set up.
#[derive(Clone, Debug, Default)]
pub struct DemoConfig {
    /// Cookies without `Secure` (plain HTTP).
    pub development: bool,
    /// The signing key; generated when absent.
    pub signing_key: Option<SigningKey>,
    /// The IP allow and deny lists for the API and login routes.
    pub ip_rules: IpRules,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: IpRanges,
    /// Login attempts allowed per minute from one address; 0 turns the
    /// throttle off.
    pub login_throttle_per_minute: u32,
    /// The lockout policy and clock.
    pub lockout: Lockout,
    /// Redis for revocations, lockout counters and used TOTP steps
    /// (`REDIS_URL`: one `redis://` or `rediss://` URL, a comma-separated
    /// list of cluster node URLs, or
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME`); in-memory
    /// stores when absent.
    pub redis_url: Option<String>,
    /// An identity provider whose tokens log users in at `POST /api/login`
    /// (the datarhei Core API's Auth0 login).
    pub external: Option<ExternalLogin>,
    /// How long a rotated refresh token still works
    /// (`REFRESH_REUSE_GRACE_SECONDS`, default 10; 0 turns the grace off).
    pub refresh_reuse_grace: std::time::Duration,
    /// The issuers' clock (tests move it); the system clock when absent.
    pub issuer_clock: Option<Arc<tower_authgate::clock::ManualClock>>,
    /// Threads verifying passwords at once (`HASHING_WORKERS`); by default
    /// the number of cores minus one, at least one.
    pub hashing_workers: Option<usize>,
}

/// An external identity provider for the datarhei Core API's login.
#[derive(Clone, Debug)]
// Without the `jwks` feature the demo refuses the configuration instead.
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub struct ExternalLogin {
    /// `EXTERNAL_ISSUER`: the provider's issuer (`iss`).
    pub issuer: String,
    /// `EXTERNAL_AUDIENCE`: the audience its tokens must name.
    pub audience: String,
    /// `EXTERNAL_JWKS_URL`; discovery from the issuer when absent.
    pub jwks_url: Option<String>,
    /// `EXTERNAL_ALLOWED_SUBJECTS`: comma-separated `sub` values allowed in;
    /// the local username is the `sub`.
    pub allowed_subjects: Vec<String>,
}

/// The default login throttle: generous enough for an office behind one
/// address, tight enough to slow credential stuffing.
pub const DEFAULT_LOGIN_THROTTLE_PER_MINUTE: u32 = 60;

impl DemoConfig {
    /// The configuration from the environment: `IP_ALLOW`, `IP_DENY` and
    /// `TRUSTED_PROXIES` (comma-separated CIDRs; none set allows every
    /// address and trusts no proxy header), `LOGIN_THROTTLE_PER_MINUTE`,
    /// `REDIS_URL`, and `DEMO_SIGNING_KEY` (a PEM file holding the Ed25519
    /// signing key, created when it does not exist yet, so that the instances
    /// of one deployment accept each other's tokens).
    pub fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let var = |name| std::env::var(name).unwrap_or_default();
        Ok(DemoConfig {
            development: true,
            signing_key: match std::env::var("DEMO_SIGNING_KEY") {
                Ok(path) if !path.is_empty() => Some(load_or_create_key(&path)?),
                _ => None,
            },
            ip_rules: IpRules::parse(&var("IP_ALLOW"), &var("IP_DENY"))?,
            trusted_proxies: IpRanges::parse_list(&var("TRUSTED_PROXIES"))?,
            login_throttle_per_minute: match var("LOGIN_THROTTLE_PER_MINUTE").trim() {
                "" => DEFAULT_LOGIN_THROTTLE_PER_MINUTE,
                value => value.parse().map_err(|_| {
                    format!("LOGIN_THROTTLE_PER_MINUTE must be a whole number, not {value:?}")
                })?,
            },
            lockout: Lockout::default(),
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            external: match (var("EXTERNAL_ISSUER"), var("EXTERNAL_AUDIENCE")) {
                (issuer, audience) if !issuer.is_empty() && !audience.is_empty() => {
                    Some(ExternalLogin {
                        issuer,
                        audience,
                        jwks_url: Some(var("EXTERNAL_JWKS_URL")).filter(|u| !u.is_empty()),
                        allowed_subjects: var("EXTERNAL_ALLOWED_SUBJECTS")
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    })
                }
                _ => None,
            },
            refresh_reuse_grace: match var("REFRESH_REUSE_GRACE_SECONDS").trim() {
                "" => DEFAULT_REUSE_GRACE,
                value => std::time::Duration::from_secs(value.parse().map_err(|_| {
                    format!("REFRESH_REUSE_GRACE_SECONDS must be a whole number, not {value:?}")
                })?),
            },
            issuer_clock: None,
            hashing_workers: match var("HASHING_WORKERS").trim() {
                "" => None,
                value => match value.parse() {
                    Ok(workers) if workers > 0 => Some(workers),
                    _ => {
                        return Err(format!(
                            "HASHING_WORKERS must be a whole number above 0, not {value:?}"
                        )
                        .into());
                    }
                },
            },
        })
    }
}

fn issuer(
    key: &SigningKey,
    name: &str,
    shared: &SharedState,
    config: &DemoConfig,
) -> Result<Arc<dyn TokenIssuer>, Box<dyn std::error::Error>> {
    let mut issuer = JwtIssuer::new(key.clone(), name)?
        .with_revocation_store(Arc::clone(&shared.revocations))
        .with_rotation_store(Arc::clone(&shared.rotations))
        .with_reuse_grace(config.refresh_reuse_grace);
    if let Some(clock) = &config.issuer_clock {
        issuer = issuer.with_clock(clock.clone());
    }
    Ok(Arc::new(issuer))
}

/// The demo's router, and the lockout its logins count in (whose locked
/// accounts the metrics endpoint counts).
pub struct Demo {
    /// Every route of the demo.
    pub router: Router,
    /// The lockout shared by the five APIs.
    #[allow(dead_code)] // Read by `main.rs` with feature `metrics` only.
    pub lockout: Lockout,
}

/// Builds the demo's router.
#[allow(dead_code)] // The tests' entry point.
pub fn build(config: DemoConfig) -> Result<Router, Box<dyn std::error::Error>> {
    Ok(assemble(config)?.router)
}

/// Builds the demo.
pub fn assemble(config: DemoConfig) -> Result<Demo, Box<dyn std::error::Error>> {
    let mut users = MemoryUsers::new()?;
    if let Some(workers) = config.hashing_workers {
        users = users.with_hashing_pool(HashingPool::new(workers, DEFAULT_HASHING_QUEUE));
    }
    users.insert(
        NewUser::new("admin", "admin")
            .email("admin@example.com")
            .name("Administrator")
            .spaces(["default_space", "production"])
            .roles(["admin"])
            // `GET /api/audit` requires it; `operator` has none.
            .scopes(["audit:read"]),
    )?;
    users.insert(
        NewUser::new("operator", "operator")
            .spaces(["default_space"])
            .roles(["operator"])
            .totp_base32(OPERATOR_TOTP_SECRET)?,
    )?;
    // An account whose activity ended a day ago: it cannot sign in.
    users.insert(
        NewUser::new("retired", "retired")
            .spaces(["default_space"])
            .active_until(tower_authgate::clock::now_seconds().saturating_sub(86_400)),
    )?;
    let users = Arc::new(users);

    let key = match config.signing_key.clone() {
        Some(key) => key,
        None => SigningKey::generate_ed25519()?.with_kid("demo"),
    };
    let restart_key = x_auth_token::XAuthToken::restart_scoped_key()?;
    // Shared state: Redis when configured (several instances), memory otherwise.
    let shared = match &config.redis_url {
        Some(url) => redis_stores(url, config.lockout.clone())?,
        None => SharedState {
            revocations: Arc::new(MemoryRevocations::default()),
            rotations: Arc::new(MemoryRotations::default()),
            service_accounts: Arc::new(MemoryServiceAccounts::default()),
            login_codes: Arc::new(MemoryLoginCodes::default()),
            lockout: config.lockout.clone(),
            totp: TotpVerifier::default(),
        },
    };
    let lockout = shared.lockout.clone();
    let flow = |issuer: Arc<dyn TokenIssuer>| {
        LoginFlow::new(users.clone(), issuer)
            .with_lockout(lockout.clone())
            .with_totp_verifier(shared.totp.clone())
    };

    let demo_issuer = issuer(&key, DEMO_ISSUER, &shared, &config)?;
    // Every issuer shares the revocation store: one sign-out everywhere
    // reaches the tokens of every API.
    let sign_out = flow(demo_issuer.clone());
    let core_issuer = issuer(&key, "datarhei-core", &shared, &config)?;
    let workflow_issuer = issuer(&restart_key, DEMO_ISSUER, &shared, &config)?;

    let cookies = if config.development {
        CookieSettings::default().development()
    } else {
        CookieSettings::default()
    };
    let session =
        cookie_session::CookieSession::new(flow(demo_issuer.clone())).with_cookies(cookies.clone());
    let mut core = bearer_pair::BearerPair::new(flow(core_issuer));
    if let Some(external) = &config.external {
        core = core.with_external_login(external_login(external)?);
    }
    let nx = pascal_case::PascalCase::new(flow(demo_issuer.clone()))
        .with_registrar(users.clone())
        .with_login_code_store(Arc::clone(&shared.login_codes))
        .with_cookies(cookies.clone());
    let regscale = auth_token::AuthToken::new(flow(demo_issuer))
        .with_service_account_store(Arc::clone(&shared.service_accounts));
    let workflow = x_auth_token::XAuthToken::new(flow(workflow_issuer)).with_deprecated_get();

    // One verifier for the API routes: both signing keys, both issuer names,
    // access and service-account tokens.
    let verifier = Verifier::builder(KeySet::new([
        key.verifying_key(),
        restart_key.verifying_key(),
    ])?)
    .issuer(DEMO_ISSUER)
    .issuer("datarhei-core")
    .accept_kinds([TokenKind::Access, TokenKind::ServiceAccount])
    // Browsers and API clients send the same token until it expires: keep
    // verified tokens (revocation is still checked on every request).
    .token_cache(10_000)
    .build()?;
    // The inSCADA cookie (renewed from its refresh cookie), bearer tokens
    // and `X-Auth-Token`, revoked tokens refused.
    let api_auth = session
        .shared_auth_layer::<AuthClaims>(verifier)?
        // The API routes serve every API's clients: they answer
        // `{"error","error_description"}` with the RFC 6750 headers.
        .on_rejection(JsonRejection);

    let jwks = Arc::new(json!({
        "keys": [key.public_jwk(), restart_key.public_jwk()]
    }));
    let spaces = SelectSpaceLayer::for_auth(&api_auth).on_rejection(JsonRejection);
    // One address filter and one throttle (their rules and counts shared),
    // each API's routes answering their refusals in its own error format.
    let guards = LoginGuards {
        ip_filter: IpFilterLayer::new(
            config.ip_rules,
            ClientIpResolver::new().trusted_proxies(config.trusted_proxies),
        ),
        throttle: match config.login_throttle_per_minute {
            0 => None,
            attempts => Some(LoginThrottleLayer::per_minute(attempts)?),
        },
    };
    // The whole API stack in one `route_layer`: axum boxes and clones each
    // route layer's service on every request, so one layer of routing
    // rather than one per guard.
    // Plain HTTP in development: the demo's own origin is `http://`.
    let csrf = match config.development {
        true => CsrfLayer::new().plain_http(),
        false => CsrfLayer::new(),
    };
    // Authorization per route: deleting a project takes the role `admin`,
    // reading the audit log the scope `audit:read`; the refusals answer
    // like the other API refusals.
    let projects_store = Projects::default();
    let list = projects_store.clone();
    let removed = projects_store.clone();
    let api = Router::new()
        .route("/api/me", get(me))
        .route(
            "/api/projects",
            get(move |space: Space| projects(list.clone(), space)),
        )
        .route(
            "/api/projects/{id}",
            delete(move |Path(id): Path<u64>| remove_project(removed.clone(), id))
                .route_layer(RequireLayer::role("admin").on_rejection(JsonRejection)),
        )
        .route(
            "/api/audit",
            get(audit).route_layer(RequireLayer::scope("audit:read").on_rejection(JsonRejection)),
        )
        .merge(cookie_session::locked_users_router(lockout.clone()))
        .route(
            "/api/auth/users/{username}/sign-out",
            post(move |username| sign_out_everywhere(sign_out.clone(), username))
                .route_layer(RequireLayer::role("admin").on_rejection(JsonRejection)),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(guards.ip_filter.clone().on_rejection(JsonRejection))
                .layer(api_auth)
                .layer(csrf.on_rejection(JsonRejection))
                .layer(spaces),
        );
    let router = Router::new()
        .merge(guards.apply(session.router(), cookie_session::InscadaFormat))
        .merge(guards.apply(core.router(), bearer_pair::CoreFormat))
        .merge(guards.apply(nx.router(), pascal_case::NxFormat))
        .merge(guards.apply(regscale.router(), auth_token::RegScaleFormat))
        .merge(guards.apply(workflow.router(), x_auth_token::WorkflowFormat))
        .merge(api)
        .route("/healthz", get(|| async { "ok" }))
        // The projects handler without any layer, as the load test's baseline.
        .route(
            "/open/projects",
            get(move || projects(projects_store.clone(), Space("default_space".to_owned()))),
        )
        .route(
            "/browser-login.html",
            get(|| async { axum::response::Html(include_str!("browser.html")) }),
        )
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = Arc::clone(&jwks);
                async move { Json((*jwks).clone()) }
            }),
        );
    Ok(Demo { router, lockout })
}

/// The address filter and the login throttle, shared by every API's login
/// routes.
struct LoginGuards {
    ip_filter: IpFilterLayer,
    throttle: Option<LoginThrottleLayer>,
}

impl LoginGuards {
    /// `routes` behind the throttle and, outside it, the address filter
    /// (whose `ClientIp` the throttle reads), refusing in `format`.
    fn apply<F>(&self, routes: Router, format: F) -> Router
    where
        F: OnRejection<axum::body::Body> + Clone + Send + Sync + 'static,
    {
        let routes = match &self.throttle {
            Some(throttle) => routes.route_layer(throttle.clone().on_rejection(format.clone())),
            None => routes,
        };
        routes.route_layer(self.ip_filter.clone().on_rejection(format))
    }
}

async fn me(
    claims: SharedClaims<AuthClaims>,
    Space(space): Space,
    ClientIp(ip): ClientIp,
) -> Json<serde_json::Value> {
    Json(json!({
        "sub": &claims.sub,
        "username": &claims.sub,
        "id": &claims.uid,
        "space": space,
        "kind": &claims.usefor,
        "client_ip": ip,
    }))
}

/// `POST /api/auth/users/{username}/sign-out`, for administrators (the
/// route requires the role `admin`): every
/// token of `username` issued until now stops working at once, on every
/// API and instance (its next sign-in works).
async fn sign_out_everywhere(flow: LoginFlow, Path(username): Path<String>) -> Response {
    match flow.sign_out_everywhere(&username).await {
        Ok(cut_off) => Json(json!({"username": username, "signedOutAt": cut_off})).into_response(),
        Err(err) => (
            err.status(),
            Json(json!({"error": err.kind(), "error_description": err.public_message()})),
        )
            .into_response(),
    }
}

/// The projects deleted so far (every space lists the same two).
#[derive(Clone, Default)]
struct Projects {
    deleted: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Projects {
    fn is_deleted(&self, id: u64) -> bool {
        self.deleted.lock().is_ok_and(|d| d.contains(&id))
    }
}

async fn projects(store: Projects, Space(space): Space) -> Json<serde_json::Value> {
    let all = [
        json!({"id": 1, "name": format!("{space} water plant"), "space": space}),
        json!({"id": 2, "name": format!("{space} substation"), "space": space}),
    ];
    Json(
        all.into_iter()
            .filter(|p| !store.is_deleted(p["id"].as_u64().unwrap_or_default()))
            .collect(),
    )
}

/// `DELETE /api/projects/{id}` (role `admin`): `204`, or `404` for a
/// project that is not there.
async fn remove_project(store: Projects, id: u64) -> StatusCode {
    if !(1..=2).contains(&id) || store.is_deleted(id) {
        return StatusCode::NOT_FOUND;
    }
    if let Ok(mut deleted) = store.deleted.lock() {
        deleted.push(id);
    }
    StatusCode::NO_CONTENT
}

/// `GET /api/audit` (scope `audit:read`): who called, and the log.
async fn audit(claims: SharedClaims<AuthClaims>) -> Json<serde_json::Value> {
    Json(json!({
        "reader": &claims.sub,
        "entries": [{"event": "login", "subject": "admin"}],
    }))
}

/// The state every instance of a deployment must share.
struct SharedState {
    revocations: Arc<dyn RevocationStore>,
    rotations: Arc<dyn RotationStore>,
    service_accounts: Arc<dyn ServiceAccountStore>,
    login_codes: Arc<dyn LoginCodeStore>,
    lockout: Lockout,
    totp: TotpVerifier,
}

#[cfg(feature = "redis")]
fn redis_stores(url: &str, lockout: Lockout) -> Result<SharedState, Box<dyn std::error::Error>> {
    use tower_authgate::store::{RedisStore, RedisStoreConfig};
    let store = Arc::new(RedisStore::open(url, RedisStoreConfig::default())?);
    Ok(SharedState {
        revocations: store.clone(),
        rotations: store.clone(),
        service_accounts: store.clone(),
        login_codes: store.clone(),
        lockout: lockout.with_store(store.clone()),
        totp: TotpVerifier::default().with_replay_guard(store),
    })
}

#[cfg(not(feature = "redis"))]
fn redis_stores(_url: &str, _lockout: Lockout) -> Result<SharedState, Box<dyn std::error::Error>> {
    Err(
        "REDIS_URL is set but the demo was built without the `redis` feature: \
         cargo run --example demo --features redis"
            .into(),
    )
}

/// The Ed25519 key in the PEM file at `path`, or a new one written there.
fn load_or_create_key(path: &str) -> Result<SigningKey, Box<dyn std::error::Error>> {
    use tower_authgate::token::Algorithm;
    match std::fs::read(path) {
        Ok(pem) => Ok(SigningKey::from_pem(Algorithm::EdDSA, &pem)?.with_kid("demo")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate_ed25519()?.with_kid("demo");
            let pem = key.to_pkcs8_pem().ok_or("an Ed25519 key has a PEM form")?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(path)?, pem.as_bytes())?;
            Ok(key)
        }
        Err(err) => Err(format!("DEMO_SIGNING_KEY {path}: {err}").into()),
    }
}

#[cfg(feature = "jwks")]
fn external_login(
    external: &ExternalLogin,
) -> Result<Arc<dyn tower_authgate::login::ExternalTokenVerifier>, Box<dyn std::error::Error>> {
    use tower_authgate::login::AllowedSubjects;
    use tower_authgate::token::jwks::{JwksConfig, JwksSource};
    let source = match &external.jwks_url {
        Some(url) => JwksSource::from_url(url, JwksConfig::default())?,
        None => JwksSource::discover(&external.issuer, JwksConfig::default())?,
    };
    source.start()?;
    let verifier = Verifier::builder_with_source(Arc::new(source))
        .issuer(external.issuer.clone())
        .audience(external.audience.clone())
        .any_kind_from(external.issuer.clone())
        .build()?;
    Ok(Arc::new(AllowedSubjects::new(
        verifier,
        external.allowed_subjects.clone(),
    )))
}

#[cfg(not(feature = "jwks"))]
fn external_login(
    _external: &ExternalLogin,
) -> Result<Arc<dyn tower_authgate::login::ExternalTokenVerifier>, Box<dyn std::error::Error>> {
    Err(
        "EXTERNAL_ISSUER is set but the demo was built without the `jwks` feature: \
         cargo run --example demo --features jwks"
            .into(),
    )
}
