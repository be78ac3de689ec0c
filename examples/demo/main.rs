//! The demo server: every documented login API on 127.0.0.1, in-memory
//! stores.
//!
//! ```sh
//! cargo run --example demo            # 127.0.0.1:8080, or DEMO_ADDR
//! ```
//!
//! `IP_ALLOW` and `IP_DENY` (comma-separated CIDRs) filter the API and login
//! routes; `TRUSTED_PROXIES` names the peers whose `X-Forwarded-For` is read;
//! `LOGIN_THROTTLE_PER_MINUTE` caps login attempts per address (default 60,
//! `0` turns the throttle off). Five failed logins lock an account for ten
//! minutes; `GET /api/auth/lockedUsers` lists locked accounts (admin only).
//! `REFRESH_REUSE_GRACE_SECONDS` (default 10) is how long a rotated refresh
//! token still works.
//! With `--features redis`, `REDIS_URL` shares the state between instances:
//! `redis://HOST:PORT/` (one server), `redis://A:7000,redis://B:7000,...`
//! (a cluster) or `redis+sentinel://HOST:26379,.../MASTER_NAME` (sentinels).

mod app;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let demo = app::build(app::DemoConfig::from_env()?)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("tower-authgate demo listening on {base}");
    println!("DEVELOPMENT MODE: plain HTTP, cookies without `Secure`. Use HTTPS in production.");
    println!(
        "users: admin/admin (email admin@example.com; spaces default_space, production; role admin),"
    );
    println!(
        "       operator/operator (space default_space; TOTP secret {}),",
        app::OPERATOR_TOTP_SECRET
    );
    println!("       retired/retired (active until yesterday: its logins are refused)");
    println!();
    println!("try:");
    println!("  # inSCADA: cookie session");
    println!("  curl -c cookies.txt -X POST {base}/login -F username=admin -F password=admin");
    println!("  curl -b cookies.txt {base}/api/projects -H 'X-Space: default_space'");
    println!("  # datarhei Core: bearer pair");
    println!(
        "  curl {base}/api/login -H 'Content-Type: application/json' -X POST -d '{{\"username\":\"admin\",\"password\":\"admin\"}}'"
    );
    println!("  curl {base}/api/login/refresh -H 'Authorization: Bearer <refresh_token>'");
    println!("  # Scailable / Nx: sign-in, Nx login");
    println!(
        "  curl {base}/authenticate/signin -H 'Content-Type: application/json' -d '{{\"Username\":\"admin\",\"Password\":\"admin\",\"KeepLoggedIn\":true}}'"
    );
    println!(
        "  curl {base}/authenticate/nx -H 'Content-Type: application/json' -d '{{\"Email\":\"admin@example.com\",\"Password\":\"admin\"}}'"
    );
    println!("  # RegScale: auth_token");
    println!(
        "  curl {base}/api/authentication/login -H 'Content-Type: application/json' -d '{{\"username\":\"admin\",\"password\":\"admin\",\"oldPassword\":\"\"}}'"
    );
    println!("  # Workflow: X-Auth-Token");
    println!(
        "  curl -i {base}/api/v2/login -H 'Content-Type: application/json' -d '{{\"username\":\"admin\",\"password\":\"admin\"}}'"
    );
    println!("  curl {base}/api/me -H 'X-Auth-Token: <token>'");
    println!("  # locked accounts (admin token), unlock one");
    println!("  curl {base}/api/auth/lockedUsers -H 'Authorization: Bearer <access_token>'");
    println!(
        "  curl -X DELETE {base}/api/auth/lockedUsers/operator -H 'Authorization: Bearer <access_token>'"
    );
    println!("  # keys");
    println!("  curl {base}/.well-known/jwks.json");
    axum::serve(
        listener,
        demo.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
