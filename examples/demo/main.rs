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
//! minutes; `GET /api/auth/lockedUsers` lists locked accounts (admin only);
//! `POST /api/auth/users/{username}/sign-out` signs a user out everywhere
//! (admin only).
//! `REFRESH_REUSE_GRACE_SECONDS` (default 10) is how long a rotated refresh
//! token still works. `HASHING_WORKERS` is how many passwords are verified
//! at once, off the request threads (default: the cores minus one, at least
//! one).
//! `RUST_LOG` filters the events printed (default `info`: logins, lockouts,
//! refusals; `tower_authgate=debug` adds every accepted request). With
//! `--features metrics`, the Prometheus text format is served at `/metrics`
//! on a listener of its own, `METRICS_ADDR` (default `127.0.0.1:9898`), never
//! on the API's address.
//! With `--features redis`, `REDIS_URL` shares the state between instances:
//! `redis://HOST:PORT/` (one server), `redis://A:7000,redis://B:7000,...`
//! (a cluster) or `redis+sentinel://HOST:26379,.../MASTER_NAME` (sentinels).

mod app;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let addr = std::env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let demo = app::assemble(app::DemoConfig::from_env()?)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("tower-authgate demo listening on {base}");
    #[cfg(feature = "metrics")]
    {
        let metrics_addr =
            std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9898".into());
        let metrics_listener = tokio::net::TcpListener::bind(&metrics_addr).await?;
        println!(
            "metrics (Prometheus text format) at http://{}/metrics",
            metrics_listener.local_addr()?
        );
        let metrics = metrics::router(demo.lockout.clone())?;
        tokio::spawn(async move { axum::serve(metrics_listener, metrics).await });
    }
    #[cfg(not(feature = "metrics"))]
    println!("built without feature `metrics`: no /metrics endpoint");
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
    println!("  # sign a user out everywhere (admin token): every token issued to it until now");
    println!(
        "  curl -X POST {base}/api/auth/users/operator/sign-out -H 'Authorization: Bearer <access_token>'"
    );
    println!("  # keys");
    println!("  curl {base}/.well-known/jwks.json");
    axum::serve(
        listener,
        demo.router
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(feature = "metrics")]
mod metrics {
    //! The Prometheus endpoint.

    use axum::Router;
    use axum::routing::get;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower_authgate::lockout::Lockout;

    /// Installs the Prometheus recorder and returns the router serving
    /// `/metrics`. Each scrape counts the locked accounts first.
    pub fn router(lockout: Lockout) -> Result<Router, Box<dyn std::error::Error>> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("authgate_store_operation_duration_seconds".into()),
                &[
                    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0,
                ],
            )?
            .build_recorder();
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder)?;
        tower_authgate::observe::describe();
        Ok(Router::new().route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                let lockout = lockout.clone();
                async move {
                    // A store that cannot answer leaves the gauge as it was.
                    let _ = lockout.locked().await;
                    handle.run_upkeep();
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        handle.render(),
                    )
                }
            }),
        ))
    }
}
