//! A service whose users live in a SQLite file: the inSCADA cookie session
//! and the datarhei Core bearer pair over one `LoginFlow` (so one lockout),
//! and an API route guarded by the IP filter, the token layer (the token
//! cache, revocations, cookie renewal) and CSRF.
//!
//! ```text
//! cargo run --example sqlite_users --features presets -- users.db
//! curl -si -X POST localhost:8080/api/login -H 'content-type: application/json' \
//!      -d '{"username":"admin","password":"correct horse battery staple"}'
//! cargo test --all-features --example sqlite_users
//! ```
//!
//! The store implements [`Authenticator`] (one query per login, the
//! password verified on the crate's hashing pool) and [`Registrar`]. An
//! unreachable database answers `503` with `Retry-After`, never `401`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_authgate::BoxFuture;
use tower_authgate::csrf::CsrfLayer;
use tower_authgate::ip::{ClientIpResolver, IpFilterLayer, IpRules};
use tower_authgate::login::{
    Account, AuthClaims, Authenticator, HashingPool, JwtIssuer, LoginError, LoginFlow, NewUser,
    Principal, Registrar, TokenIssuer, normalize_username,
};
use tower_authgate::reject::JsonRejection;
use tower_authgate::schemes::bearer_pair::BearerPair;
use tower_authgate::schemes::cookie_session::CookieSession;
use tower_authgate::store::StoreError;
use tower_authgate::token::{KeySet, SharedClaims, SigningKey, TokenKind, Verifier};

/// Usernames and emails are kept normalised (trimmed, lower case); lists
/// are comma-separated, the first space being the default.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    email         TEXT UNIQUE,
    name          TEXT,
    password_hash TEXT NOT NULL,
    totp_secret   BLOB,
    spaces        TEXT NOT NULL DEFAULT '',
    roles         TEXT NOT NULL DEFAULT '',
    active_until  INTEGER
)";

const ISSUER: &str = "sqlite-example";

/// The users table, behind one connection.
#[derive(Clone)]
struct SqliteUsers {
    db: Arc<Mutex<Connection>>,
    /// Queries run, for the tests' measurements.
    reads: Arc<AtomicUsize>,
}

impl SqliteUsers {
    fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        // A locked or unreachable database fails fast (`503`), not late.
        db.busy_timeout(Duration::from_millis(250))?;
        db.execute_batch(SCHEMA)?;
        Ok(SqliteUsers {
            db: Arc::new(Mutex::new(db)),
            reads: Arc::default(),
        })
    }

    /// Runs `query` off the async executor.
    async fn query<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let db = db.lock().map_err(|_| StoreError("poisoned".into()))?;
            query(&db).map_err(|err| StoreError(err.to_string()))
        })
        .await
        .map_err(|err| StoreError(err.to_string()))?
    }
}

fn account_of(row: &Row<'_>) -> rusqlite::Result<Account> {
    let spaces: String = row.get("spaces")?;
    let roles: String = row.get("roles")?;
    let active_until: Option<i64> = row.get("active_until")?;
    let principal = Principal::builder(
        row.get::<_, String>("id")?,
        row.get::<_, String>("username")?,
    )
    .email(row.get::<_, Option<String>>("email")?)
    .name(row.get::<_, Option<String>>("name")?)
    .totp_secret(row.get("totp_secret")?)
    // A negative end is in the past: fail closed.
    .active_until(active_until.map(|until| u64::try_from(until).unwrap_or(0)))
    .spaces(spaces.split(','))
    .roles(roles.split(','))
    .build();
    Ok(Account::new(
        principal,
        row.get::<_, String>("password_hash")?,
    ))
}

impl Authenticator for SqliteUsers {
    fn find_account<'a>(
        &'a self,
        identifier: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        let key = normalize_username(identifier);
        self.reads.fetch_add(1, Ordering::Relaxed);
        Box::pin(self.query(move |db| {
            db.query_row(
                "SELECT * FROM users WHERE username = ?1 OR email = ?1 LIMIT 1",
                [key],
                account_of,
            )
            .optional()
        }))
    }
}

impl Registrar for SqliteUsers {
    fn register(&self, user: NewUser) -> BoxFuture<'_, Result<Option<Principal>, LoginError>> {
        Box::pin(async move {
            // Hashed before the check, so a taken name costs the same.
            let hash = HashingPool::shared().hash(&user.password).await?;
            let username = normalize_username(&user.username);
            let email = user.email.as_deref().map(normalize_username);
            let row = (username.clone(), email.clone(), user.name.clone());
            let (spaces, roles) = (user.spaces.join(","), user.roles.join(","));
            let (totp, until) = (user.totp_secret.clone(), user.active_until);
            let until = until.map(|until| i64::try_from(until).unwrap_or(i64::MAX));
            // One statement: nothing is inserted when the username or the
            // email is already anyone's username or email.
            let id: Option<String> = self
                .query(move |db| {
                    db.query_row(
                        "INSERT INTO users
                           (username, id, email, name, password_hash, totp_secret,
                            spaces, roles, active_until)
                         SELECT ?1, lower(hex(randomblob(16))), ?2, ?3, ?4, ?5, ?6, ?7, ?8
                         WHERE NOT EXISTS (SELECT 1 FROM users
                           WHERE username IN (?1, ?2) OR email IN (?1, ?2))
                         RETURNING id",
                        params![row.0, row.1, row.2, hash, totp, spaces, roles, until],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .await
                .map_err(LoginError::Unavailable)?;
            Ok(id.map(|id| {
                Principal::builder(id, username)
                    .email(email)
                    .name(user.name)
                    .totp_secret(user.totp_secret)
                    .active_until(user.active_until)
                    .spaces(user.spaces)
                    .roles(user.roles)
                    .build()
            }))
        })
    }
}

/// The whole service over `users`, its tokens signed with `key`.
fn app(users: SqliteUsers, key: SigningKey) -> Result<Router, Box<dyn std::error::Error>> {
    let issuer: Arc<dyn TokenIssuer> = Arc::new(JwtIssuer::new(key.clone(), ISSUER)?);
    // One flow: both presets count failures in its one lockout (by default
    // five lock an account for ten minutes).
    let flow = LoginFlow::new(Arc::new(users), issuer);
    let session = CookieSession::new(flow.clone());
    let core = BearerPair::new(flow);
    let verifier = Verifier::builder(KeySet::single(key.verifying_key()))
        .issuer(ISSUER)
        .accept_kinds([TokenKind::Access])
        .token_cache(10_000)
        .build()?;
    // The inSCADA cookie (renewed from its refresh cookie) or a bearer
    // token, revoked tokens refused; CSRF checked for cookie requests.
    let guard = ServiceBuilder::new()
        .layer(
            session
                .shared_auth_layer::<AuthClaims>(verifier)?
                .on_rejection(JsonRejection),
        )
        .layer(CsrfLayer::new().on_rejection(JsonRejection));
    let api = Router::new().route("/api/me", get(me)).route_layer(guard);
    let ip_filter = IpFilterLayer::new(
        IpRules::parse("127.0.0.0/8,::1/128", "")?,
        ClientIpResolver::new(),
    );
    Ok(Router::new()
        .merge(session.router())
        .merge(core.router())
        .merge(api)
        .layer(ip_filter.on_rejection(JsonRejection)))
}

async fn me(claims: SharedClaims<AuthClaims>) -> Json<Value> {
    Json(json!({"user": claims.sub, "spaces": claims.principal().spaces}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "users.db".into());
    let users = SqliteUsers::open(Path::new(&path))?;
    let admin = NewUser::new("admin", "correct horse battery staple")
        .spaces(["default_space"])
        .roles(["admin"]);
    users.register(admin).await?;
    let app = app(users, SigningKey::generate_ed25519()?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use http::{Request, StatusCode, header};
    use tower::ServiceExt;

    const PASSWORD: &str = "correct horse battery staple";

    struct Service {
        router: Router,
        users: SqliteUsers,
        path: std::path::PathBuf,
    }

    impl Drop for Service {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    struct Reply {
        status: StatusCode,
        headers: http::HeaderMap,
        body: Value,
    }

    impl Reply {
        fn cookie(&self, name: &str) -> Option<String> {
            self.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()?.strip_prefix(&format!("{name}=")))
                .map(|v| v.split(';').next().unwrap_or("").to_owned())
                .next()
        }
    }

    async fn service(name: &str) -> Service {
        let path =
            std::env::temp_dir().join(format!("sqlite-users-{name}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let users = SqliteUsers::open(&path).unwrap();
        let admin = NewUser::new("admin", PASSWORD)
            .email("admin@example.com")
            .spaces(["default_space"]);
        assert!(users.register(admin.clone()).await.unwrap().is_some());
        assert!(users.register(admin).await.unwrap().is_none(), "taken");
        let router = app(users.clone(), SigningKey::generate_ed25519().unwrap())
            .unwrap()
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        Service {
            router,
            users,
            path,
        }
    }

    impl Service {
        async fn call(&self, request: Request<Body>) -> Reply {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Reply {
                status,
                headers,
                body,
            }
        }

        async fn form_login(&self, username: &str, password: &str) -> Reply {
            let body = format!(
                "username={username}&password={}",
                password.replace(' ', "+")
            );
            self.call(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }

        async fn core_login(&self, username: &str, password: &str) -> Reply {
            let body = json!({"username": username, "password": password}).to_string();
            self.call(
                Request::post("/api/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }

        async fn get(&self, path: &str, header: (header::HeaderName, String)) -> Reply {
            self.call(
                Request::get(path)
                    .header(header.0, header.1)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }

        fn reads(&self) -> usize {
            self.users.reads.load(Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn both_presets_sign_in_from_the_database_and_reach_the_api() {
        let service = service("login").await;
        let cookies = service.form_login("admin@example.com", PASSWORD).await;
        assert_eq!(cookies.status, StatusCode::OK);
        let access = cookies.cookie("ins_access_token").unwrap();
        let me = service
            .get(
                "/api/me",
                (header::COOKIE, format!("ins_access_token={access}")),
            )
            .await;
        assert_eq!(
            me.body,
            json!({"user": "admin", "spaces": ["default_space"]})
        );

        let pair = service.core_login("ADMIN", PASSWORD).await;
        assert_eq!(pair.status, StatusCode::OK);
        let bearer = format!("Bearer {}", pair.body["access_token"].as_str().unwrap());
        let me = service
            .get("/api/me", (header::AUTHORIZATION, bearer))
            .await;
        assert_eq!(me.status, StatusCode::OK);
        let refresh = format!("Bearer {}", pair.body["refresh_token"].as_str().unwrap());
        let renewed = service
            .get("/api/login/refresh", (header::AUTHORIZATION, refresh))
            .await;
        assert!(renewed.body["access_token"].is_string());

        assert_eq!(
            service
                .get("/api/me", (header::COOKIE, "x=y".into()))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn five_failures_across_both_presets_lock_the_account() {
        let service = service("lockout").await;
        for attempt in 0..5 {
            let reply = match attempt % 2 {
                0 => service.form_login("admin", "wrong").await,
                _ => service.core_login("admin@example.com", "wrong").await,
            };
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        }
        for reply in [
            service.form_login("admin", PASSWORD).await,
            service.core_login("admin", PASSWORD).await,
        ] {
            assert_eq!(reply.status, StatusCode::LOCKED);
            assert!(reply.headers.contains_key(header::RETRY_AFTER));
        }
    }

    #[tokio::test]
    async fn a_cookie_renewal_costs_one_read_more_than_a_verified_request() {
        let service = service("renewal").await;
        let login = service.form_login("admin", PASSWORD).await;
        let access = login.cookie("ins_access_token").unwrap();
        let refresh = login.cookie("ins_refresh_token").unwrap();
        let before = service.reads();
        let verified = service
            .get(
                "/api/me",
                (header::COOKIE, format!("ins_access_token={access}")),
            )
            .await;
        assert_eq!(verified.status, StatusCode::OK);
        let verified_reads = service.reads() - before;
        // No access cookie: renewed from the refresh cookie.
        let before = service.reads();
        let renewed = service
            .get(
                "/api/me",
                (header::COOKIE, format!("ins_refresh_token={refresh}")),
            )
            .await;
        assert_eq!(renewed.status, StatusCode::OK);
        assert!(renewed.cookie("ins_access_token").is_some());
        let renewal_reads = service.reads() - before;
        println!("store reads: verified request {verified_reads}, cookie renewal {renewal_reads}");
        assert_eq!((verified_reads, renewal_reads), (0, 1));
    }

    #[tokio::test]
    async fn a_locked_database_answers_503_never_401() {
        let service = service("outage").await;
        let login = service.form_login("admin", PASSWORD).await;
        let refresh_cookie = login.cookie("ins_refresh_token").unwrap();
        let pair = service.core_login("admin", PASSWORD).await;
        let refresh = format!("Bearer {}", pair.body["refresh_token"].as_str().unwrap());

        // Another process holds the database.
        let other = Connection::open(&service.path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for reply in [
            service.form_login("admin", PASSWORD).await,
            service.core_login("admin", PASSWORD).await,
            service
                .get(
                    "/api/login/refresh",
                    (header::AUTHORIZATION, refresh.clone()),
                )
                .await,
            service
                .get(
                    "/api/me",
                    (
                        header::COOKIE,
                        format!("ins_refresh_token={refresh_cookie}"),
                    ),
                )
                .await,
        ] {
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{:?}",
                reply.body
            );
            assert!(reply.headers.contains_key(header::RETRY_AFTER));
        }
        other.execute_batch("ROLLBACK").unwrap();
        let renewed = service
            .get("/api/login/refresh", (header::AUTHORIZATION, refresh))
            .await;
        assert_eq!(renewed.status, StatusCode::OK);
    }
}
