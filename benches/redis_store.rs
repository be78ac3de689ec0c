//! Revocation checks and lockout checks against Redis on loopback, beside
//! the in-memory stores, in one run, awaited on a Tokio runtime
//! (`to_async`): a revocation check answered by the local cache, one read
//! from Redis (the cache turned off), and the in-memory store. Starts its
//! own redis-server on a free loopback port (`REDIS_SERVER_BIN`, or
//! `redis-server` on the PATH; the test script installs it).
//!
//! Run: `cargo bench --bench redis_store --features redis`

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_authgate::clock::now_seconds;
use tower_authgate::store::{LockoutPolicy, LockoutStore, MemoryLockoutStore};
use tower_authgate::store::{
    MemoryRevocations, RedisStore, RedisStoreConfig, RevocationCheck, RevocationStore,
};

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(&binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e} (scripts/test installs it)"));
    let server = Server(child);
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, format!("redis://127.0.0.1:{port}/"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server did not start");
}

/// What a guarded request awaits: the answer, ready or read.
async fn revoked(store: &dyn RevocationStore) -> bool {
    match store.check("live-jti", Some("live-family")) {
        RevocationCheck::Ready(answer) => answer.unwrap(),
        RevocationCheck::Pending(future) => future.await.unwrap(),
    }
}

fn stores(c: &mut Criterion) {
    let (_server, url) = start_redis();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cached, uncached) = runtime.block_on(async {
        let cached = RedisStore::open(&url, RedisStoreConfig::default()).unwrap();
        let uncached = RedisStore::open(
            &url,
            RedisStoreConfig::default().with_local_cache_capacity(0),
        )
        .unwrap();
        while !cached.local_cache_active() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (Arc::new(cached), Arc::new(uncached))
    });
    let memory_revocations = Arc::new(MemoryRevocations::default());
    let memory_lockout = Arc::new(MemoryLockoutStore::default());
    let policy = LockoutPolicy::default();
    let now = now_seconds();
    runtime.block_on(async {
        for store in [&*cached as &dyn RevocationStore, &*memory_revocations] {
            store.revoke("revoked-jti", now + 600).await.unwrap();
        }
        for store in [&*cached as &dyn LockoutStore, &*memory_lockout] {
            store.record_failure("admin", &policy, now).await.unwrap();
        }
        // The first check reads Redis and fills the cache.
        assert!(!revoked(&*cached).await);
        assert!(matches!(
            cached.check("live-jti", Some("live-family")),
            RevocationCheck::Ready(Ok(false))
        ));
    });

    let mut group = c.benchmark_group("stores");
    for (name, store) in [
        (
            "memory",
            memory_revocations.clone() as Arc<dyn RevocationStore>,
        ),
        ("redis_cached", cached.clone() as Arc<dyn RevocationStore>),
        (
            "redis_uncached",
            uncached.clone() as Arc<dyn RevocationStore>,
        ),
    ] {
        group.bench_function(format!("revocation_check/{name}"), |b| {
            b.to_async(&runtime).iter(|| revoked(&*store))
        });
    }
    for (name, store) in [
        ("memory", memory_lockout.clone() as Arc<dyn LockoutStore>),
        ("redis", cached.clone() as Arc<dyn LockoutStore>),
    ] {
        group.bench_function(format!("lockout_check/{name}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { store.locked_until("admin", now).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = stores
}
criterion_main!(benches);
