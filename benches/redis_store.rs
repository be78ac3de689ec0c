//! Lockout check and revocation lookup against Redis on loopback, beside the
//! in-memory stores, in one run. Starts its own redis-server on a free
//! loopback port (`REDIS_SERVER_BIN`, or `redis-server` on the PATH; the
//! test script installs it).
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

async fn revoked(store: &dyn RevocationStore, id: &str) -> bool {
    match store.check(id, Some("family")) {
        RevocationCheck::Ready(answer) => answer.unwrap(),
        RevocationCheck::Pending(future) => future.await.unwrap(),
    }
}

fn stores(c: &mut Criterion) {
    let (_server, url) = start_redis();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let redis = {
        let _runtime = runtime.enter();
        Arc::new(RedisStore::open(&url, RedisStoreConfig::default()).unwrap())
    };
    let memory_revocations = Arc::new(MemoryRevocations::default());
    let memory_lockout = Arc::new(MemoryLockoutStore::default());
    let policy = LockoutPolicy::default();
    let now = now_seconds();
    runtime.block_on(async {
        for store in [&*redis as &dyn RevocationStore, &*memory_revocations] {
            store.revoke("revoked-jti", now + 600).await.unwrap();
        }
        for store in [&*redis as &dyn LockoutStore, &*memory_lockout] {
            store.record_failure("admin", &policy, now).await.unwrap();
        }
    });

    let mut group = c.benchmark_group("stores");
    for (name, store) in [
        (
            "memory",
            memory_revocations.clone() as Arc<dyn RevocationStore>,
        ),
        ("redis", redis.clone() as Arc<dyn RevocationStore>),
    ] {
        group.bench_function(format!("revocation_lookup/{name}"), |b| {
            b.iter(|| runtime.block_on(revoked(&*store, "live-jti")))
        });
    }
    for (name, store) in [
        ("memory", memory_lockout.clone() as Arc<dyn LockoutStore>),
        ("redis", redis.clone() as Arc<dyn LockoutStore>),
    ] {
        group.bench_function(format!("lockout_check/{name}"), |b| {
            b.iter(|| runtime.block_on(store.locked_until("admin", now)).unwrap())
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
