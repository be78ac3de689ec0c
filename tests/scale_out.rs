//! Two service instances sharing real Redis deployments: an attacker gets
//! five tries in total (one server, and a 3-master cluster), a revocation on
//! one instance is refused by the other within 100 ms (p99, tokens served
//! from the token cache), and so is a user signed out everywhere; a TOTP
//! code used on one is refused by the other;
//! Redis killed mid-test; a Sentinel failover with the master killed.
#![cfg(all(feature = "redis", feature = "presets"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::demo::{Server, app, config as demo_config, operator_code, start_config};
use common::redis::{RedisCluster, RedisSentinels, RedisServer};
use http::{Method, StatusCode};
use serde_json::json;
use tower_authgate::clock::now_seconds;
use tower_authgate::store::{
    RedisStore, RedisStoreConfig, RevocationCheck, RevocationStore, Unreachable,
};

/// Two instances' configuration: no reuse grace, so the second use of a
/// refresh token is reuse at once (the grace window has its own test).
fn config_for(url: String) -> app::DemoConfig {
    app::DemoConfig {
        redis_url: Some(url),
        refresh_reuse_grace: Duration::ZERO,
        ..demo_config()
    }
}

async fn two_instances(redis: &RedisServer) -> (Server, Server) {
    two_instances_on(redis.url()).await
}

async fn two_instances_on(url: String) -> (Server, Server) {
    (
        start_config(config_for(url.clone())).await,
        start_config(config_for(url)).await,
    )
}

#[tokio::test]
async fn five_failures_in_total_lock_the_account_on_every_instance() {
    let redis = RedisServer::start();
    five_failures_in_total_lock_the_account(redis.url()).await;
}

#[tokio::test]
async fn five_failures_in_total_lock_the_account_on_a_cluster() {
    let cluster = RedisCluster::start();
    five_failures_in_total_lock_the_account(cluster.url()).await;
}

async fn five_failures_in_total_lock_the_account(url: String) {
    let (a, b) = two_instances_on(url).await;
    let wrong = json!({"username": "admin", "password": "wrong"});
    // Four failures at once, two on each instance.
    let (r1, r2, r3, r4) = tokio::join!(
        a.json(Method::POST, "/api/login", &[], wrong.clone()),
        b.json(Method::POST, "/api/login", &[], wrong.clone()),
        a.json(Method::POST, "/api/login", &[], wrong.clone()),
        b.json(Method::POST, "/api/login", &[], wrong.clone()),
    );
    for r in [r1, r2, r3, r4] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // The fifth, on the other instance, locks the account everywhere.
    assert_eq!(
        a.json(Method::POST, "/api/login", &[], wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    let right = json!({"username": "admin", "password": "admin"});
    for server in [&a, &b] {
        let locked = server
            .json(Method::POST, "/api/login", &[], right.clone())
            .await;
        assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.text);
        assert!(locked.headers.contains_key("retry-after"));
    }
}

#[tokio::test]
async fn a_revocation_on_one_instance_holds_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let access = format!("Bearer {}", signin.str("AccessToken"));
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.json(
            Method::POST,
            "/authenticate/signout",
            &[("authorization", &access)],
            json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let grant = json!({"GrantType": "refresh_token"});
    assert_eq!(
        b.json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    // Refresh-token reuse detected across instances ends the session on both.
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    let grant = json!({"GrantType": "refresh_token"});
    let rotated = a
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant.clone(),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let reuse = b
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant,
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    let new_access = format!("Bearer {}", rotated.str("AccessToken"));
    assert_eq!(
        a.get("/api/me", &[("authorization", &new_access)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_totp_code_used_on_one_instance_is_refused_by_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let code = operator_code(0);
    let login = json!({"username": "operator", "password": "operator", "otp": code});
    assert_eq!(
        a.json(Method::POST, "/api/login", &[], login.clone())
            .await
            .status,
        StatusCode::OK
    );
    let replay = b.json(Method::POST, "/api/login", &[], login).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.text);
}

#[tokio::test]
async fn every_key_expires_and_shares_the_prefix() {
    let redis = RedisServer::start();
    let (a, _b) = two_instances(&redis).await;
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let access = format!("Bearer {}", signin.str("AccessToken"));
    a.json(
        Method::POST,
        "/authenticate/signout",
        &[("authorization", &access)],
        json!({}),
    )
    .await;
    a.json(
        Method::POST,
        "/api/login",
        &[],
        json!({"username": "admin", "password": "wrong"}),
    )
    .await;
    a.json(
        Method::POST,
        "/api/login",
        &[],
        json!({"username": "operator", "password": "operator", "otp": operator_code(0)}),
    )
    .await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.len() >= 4, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("authgate:"), "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        // The lockout index is a sorted set whose members expire by score.
        if key != "authgate:{lockout}:locked" {
            assert!(ttl > 0, "{key} has no expiry ({ttl})");
        }
    }
}

async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "did not recover in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_closed_and_service_resumes() {
    let mut redis = RedisServer::start();
    let (a, _b) = two_instances(&redis).await;
    let login = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    let bearer = format!("Bearer {}", login.str("access_token"));
    assert_eq!(
        a.get("/api/me", &[("authorization", &bearer)]).await.status,
        StatusCode::OK
    );

    redis.stop();
    // No token is accepted whose revocation cannot be checked, and logins
    // are refused with 503 and a clear body.
    let me = a.get("/api/me", &[("authorization", &bearer)]).await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{}", me.text);
    assert!(me.headers.contains_key("retry-after"));
    let refused = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("temporarily unavailable"));
    // Open routes are unaffected.
    assert_eq!(a.get("/healthz", &[]).await.status, StatusCode::OK);

    redis.restart();
    eventually(async || {
        a.get("/api/me", &[("authorization", &bearer)]).await.status == StatusCode::OK
    })
    .await;
    let again = a
        .json(
            Method::POST,
            "/api/login",
            &[],
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn fail_open_is_an_explicit_choice() {
    let mut redis = RedisServer::start();
    let open = RedisStore::open(
        &redis.url(),
        RedisStoreConfig::default().with_unreachable(Unreachable::FailOpen),
    )
    .unwrap();
    let closed = RedisStore::open(&redis.url(), RedisStoreConfig::default()).unwrap();
    let check = |store: &RedisStore| {
        let store = store.clone();
        async move {
            match store.check("some-jti", None) {
                RevocationCheck::Ready(answer) => answer,
                RevocationCheck::Pending(future) => future.await,
            }
        }
    };
    assert_eq!(check(&open).await, Ok(false));
    redis.stop();
    assert_eq!(check(&open).await, Ok(false));
    assert!(check(&closed).await.is_err());
    // A revocation is never reported done when it was not, whatever the policy.
    assert!(open.revoke("some-jti", now_seconds() + 60).await.is_err());
    redis.restart();
    let store: Arc<dyn RevocationStore> = Arc::new(closed.clone());
    eventually(async || store.revoke("some-jti", now_seconds() + 60).await.is_ok()).await;
    assert_eq!(check(&closed).await, Ok(true));
}

/// The `calls=` count of one command in `INFO commandstats`.
fn command_calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cli(&["info", "commandstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

async fn signin(server: &Server) -> String {
    let signin = server
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.text);
    format!("Bearer {}", signin.str("AccessToken"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_refused_on_the_other_instance_within_100_ms_p99() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    // Both instances' listeners subscribed.
    eventually(async || {
        redis
            .cli(&["client", "list"])
            .matches("name=authgate-invalidations")
            .count()
            == 2
    })
    .await;

    // A token seen once is then answered from the token cache and the local
    // revocation cache: no Redis read per request.
    let access = signin(&a).await;
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::OK
    );
    let reads = command_calls(&redis, "mget");
    for _ in 0..50 {
        assert_eq!(
            b.get("/api/me", &[("authorization", &access)]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(command_calls(&redis, "mget"), reads, "served locally");

    const SAMPLES: usize = 60;
    let mut latencies = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let access = signin(&a).await;
        for _ in 0..2 {
            assert_eq!(
                b.get("/api/me", &[("authorization", &access)]).await.status,
                StatusCode::OK
            );
        }
        // From the moment the sign-out is sent to the first refusal by the
        // other instance, polled as fast as it answers.
        let sent = Instant::now();
        let headers = [("authorization", access.as_str())];
        let signout = a.json(Method::POST, "/authenticate/signout", &headers, json!({}));
        let refused_by_b = async {
            loop {
                let status = b.get("/api/me", &[("authorization", &access)]).await.status;
                if status == StatusCode::UNAUTHORIZED {
                    return sent.elapsed();
                }
                assert_eq!(status, StatusCode::OK);
                assert!(sent.elapsed() < Duration::from_secs(5), "never refused");
            }
        };
        let (signout, latency) = tokio::join!(signout, refused_by_b);
        assert_eq!(signout.status, StatusCode::OK);
        latencies.push(latency);
    }
    latencies.sort();
    let percentile = |p: usize| latencies[(SAMPLES * p).div_ceil(100).saturating_sub(1)];
    println!(
        "cross-instance revocation, {SAMPLES} samples: p50 {:?}, p99 {:?}, max {:?}",
        percentile(50),
        percentile(99),
        latencies[SAMPLES - 1]
    );
    assert!(
        percentile(99) <= Duration::from_millis(100),
        "{latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_follows_a_sentinel_failover() {
    let mut sentinels = RedisSentinels::start();
    let server = start_config(config_for(sentinels.url())).await;
    let access = signin(&server).await;
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &access)])
            .await
            .status,
        StatusCode::OK
    );
    // A revocation that reached the replica before the master dies
    // survives the failover.
    let revoked = signin(&server).await;
    assert_eq!(
        server
            .json(
                Method::POST,
                "/authenticate/signout",
                &[("authorization", &revoked)],
                json!({})
            )
            .await
            .status,
        StatusCode::OK
    );
    assert!(sentinels.master.cli(&["wait", "1", "2000"]).trim() == "1");
    sentinels.wait_until_ready_for_failover();
    let old_master = sentinels.master.port;

    sentinels.master.stop();
    let killed = Instant::now();
    // Fail closed meanwhile: 503, never a guess; then the new master.
    let mut statuses = Vec::new();
    loop {
        let status = server
            .get("/api/me", &[("authorization", &access)])
            .await
            .status;
        statuses.push(status);
        if status == StatusCode::OK && sentinels.current_master_port() != Some(old_master) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no recovery: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "failover: answered again {:?} after the master was killed",
        killed.elapsed()
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        sentinels.current_master_port(),
        Some(sentinels.replica.port)
    );

    // The revocation survived; logins, lockout counting and revocations
    // work on the new master.
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &revoked)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = json!({"username": "admin", "password": "wrong"});
    assert_eq!(
        server
            .json(Method::POST, "/api/login", &[], wrong)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = signin(&server).await;
    assert_eq!(
        server
            .json(
                Method::POST,
                "/authenticate/signout",
                &[("authorization", &fresh)],
                json!({})
            )
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .get("/api/me", &[("authorization", &fresh)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn two_instances_share_the_reuse_grace_window_and_reuse_after_it_ends_the_session_on_both() {
    let redis = RedisServer::start();
    let clock = Arc::new(tower_authgate::clock::ManualClock::new(now_seconds()));
    let config = || app::DemoConfig {
        redis_url: Some(redis.url()),
        refresh_reuse_grace: Duration::from_secs(10),
        issuer_clock: Some(clock.clone()),
        ..demo_config()
    };
    let (a, b) = (start_config(config()).await, start_config(config()).await);
    let signin = a
        .json(
            Method::POST,
            "/authenticate/signin",
            &[],
            json!({"Username": "admin", "Password": "admin", "KeepLoggedIn": false}),
        )
        .await;
    let refresh = format!("Bearer {}", signin.str("RefreshToken"));
    let grant = json!({"GrantType": "refresh_token"});
    let headers = [("authorization", refresh.as_str())];
    // Two tabs refresh at the same moment, one on each instance.
    let (on_a, on_b) = tokio::join!(
        a.json(
            Method::POST,
            "/authenticate/refresh",
            &headers,
            grant.clone()
        ),
        b.json(
            Method::POST,
            "/authenticate/refresh",
            &headers,
            grant.clone()
        ),
    );
    assert_eq!(on_a.status, StatusCode::OK, "{}", on_a.text);
    assert_eq!(on_b.status, StatusCode::OK, "{}", on_b.text);
    let family = |token: &str| common::demo::claims_of(token)["fam"].clone();
    assert_eq!(
        family(&on_a.str("AccessToken")),
        family(&on_b.str("AccessToken"))
    );
    let accesses = [
        format!("Bearer {}", on_a.str("AccessToken")),
        format!("Bearer {}", on_b.str("AccessToken")),
    ];
    // Both sessions work everywhere (and are now in both token caches).
    for server in [&a, &b] {
        for access in &accesses {
            assert_eq!(
                server
                    .get("/api/me", &[("authorization", access)])
                    .await
                    .status,
                StatusCode::OK
            );
        }
    }
    // After the window, the same refresh token again is reuse: the family
    // ends on both instances, cached tokens included.
    clock.advance(11);
    let replay = b
        .json(
            Method::POST,
            "/authenticate/refresh",
            &[("authorization", &refresh)],
            grant,
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.text);
    for server in [&a, &b] {
        for access in &accesses {
            assert_eq!(
                server
                    .get("/api/me", &[("authorization", access)])
                    .await
                    .status,
                StatusCode::UNAUTHORIZED
            );
        }
    }
}

#[tokio::test]
async fn a_user_signed_out_everywhere_on_one_instance_is_refused_by_the_other() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    eventually(async || {
        redis
            .cli(&["client", "list"])
            .matches("name=authgate-invalidations")
            .count()
            == 2
    })
    .await;
    let access = signin(&a).await;
    // Served by B, then from B's caches (token and revocations).
    for _ in 0..3 {
        assert_eq!(
            b.get("/api/me", &[("authorization", &access)]).await.status,
            StatusCode::OK
        );
    }
    let reads = command_calls(&redis, "get");
    assert_eq!(
        b.get("/api/me", &[("authorization", &access)]).await.status,
        StatusCode::OK
    );
    assert_eq!(command_calls(&redis, "get"), reads, "served locally");
    let sent = Instant::now();
    let done = a
        .send(
            Method::POST,
            "/api/auth/users/admin/sign-out",
            &[("authorization", &access)],
            Vec::new(),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    loop {
        let status = b.get("/api/me", &[("authorization", &access)]).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            sent.elapsed() < Duration::from_millis(100),
            "B still serves a token of a user signed out everywhere"
        );
    }
    // The cut-off key expires, under the prefix.
    let ttl: i64 = redis
        .cli(&["ttl", "authgate:revoked-subject:admin"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0, "{ttl}");
}
