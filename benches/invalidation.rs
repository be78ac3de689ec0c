//! The two ways of keeping a local revocation cache exact, measured on one
//! redis-server on loopback (started here, like `redis_store`):
//!
//! - pub/sub, as `RedisStore` does it: the revocation is a script that sets
//!   the key and publishes the id; a listener subscribed on a RESP3
//!   connection receives the message;
//! - RESP3 client tracking in broadcast mode: a plain `SET … NX EXAT`; a
//!   listener with `CLIENT TRACKING ON BCAST PREFIX …` receives the server's
//!   `invalidate` push.
//!
//! For each: the write's round trip, and the time from sending the write to
//! the listener holding the push (p50, p99, max over 2,000 writes). Then
//! the cost of a hit in redis-rs's own (experimental) client-side cache,
//! which answers through an awaited command, beside a check answered by
//! `RedisStore`'s cache.
//!
//! Run: `cargo bench --bench invalidation --features redis`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Script};
use tower_authgate::clock::now_seconds;
use tower_authgate::store::{RedisStore, RedisStoreConfig, RevocationCheck, RevocationStore};

const WRITES: usize = 2_000;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e} (scripts/test installs it)"));
    let server = Server(child);
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, port);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server did not start");
}

fn resp3(port: u16) -> Client {
    let info =
        redis::IntoConnectionInfo::into_connection_info(format!("redis://127.0.0.1:{port}/"))
            .unwrap();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings)).unwrap()
}

/// A RESP3 connection whose pushes of `kind` are timestamped into a channel.
async fn listener(
    port: u16,
    kind: PushKind,
) -> (
    redis::aio::MultiplexedConnection,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new().set_push_sender(move |push: PushInfo| {
        if push.kind == kind {
            let _ = sender.send(Instant::now());
        }
        Ok::<(), std::convert::Infallible>(())
    });
    let connection = resp3(port)
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    (connection, receiver)
}

fn summary(name: &str, what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p).div_ceil(100).saturating_sub(1)];
    println!(
        "{name:<28} {what:<22} p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        at(50),
        at(99),
        samples[samples.len() - 1]
    );
}

async fn measure(port: u16) {
    let writer_client = Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut writer = writer_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let until = now_seconds() + 600;

    // pub/sub: the store's own script.
    let (mut subscribed, mut messages) = listener(port, PushKind::Message).await;
    subscribed.subscribe("bench:revocations").await.unwrap();
    let script = Script::new(
        "local set = redis.call('SET', KEYS[1], 1, 'NX', 'EXAT', ARGV[1])
         redis.call('PUBLISH', ARGV[2], ARGV[3])
         if set then return 1 end return 0",
    );
    let (mut round_trips, mut latencies) = (Vec::new(), Vec::new());
    for i in 0..WRITES {
        let sent = Instant::now();
        let _: u8 = script
            .key(format!("bench:pubsub:{i}"))
            .arg(until)
            .arg("bench:revocations")
            .arg(i)
            .invoke_async(&mut writer)
            .await
            .unwrap();
        round_trips.push(sent.elapsed());
        latencies.push(messages.recv().await.unwrap() - sent);
    }
    summary("pub/sub (script)", "write round trip", round_trips);
    summary("pub/sub (script)", "write to push", latencies);
    drop(subscribed);

    // RESP3 client tracking, broadcast mode, prefix.
    let (mut tracking, mut invalidations) = listener(port, PushKind::Invalidate).await;
    let _: () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg("bench:tracked:")
        .query_async(&mut tracking)
        .await
        .unwrap();
    let (mut round_trips, mut latencies) = (Vec::new(), Vec::new());
    for i in 0..WRITES {
        let sent = Instant::now();
        let _: Option<String> = redis::cmd("SET")
            .arg(format!("bench:tracked:{i}"))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(until)
            .query_async(&mut writer)
            .await
            .unwrap();
        round_trips.push(sent.elapsed());
        latencies.push(invalidations.recv().await.unwrap() - sent);
    }
    summary("tracking (BCAST, SET NX)", "write round trip", round_trips);
    summary("tracking (BCAST, SET NX)", "write to push", latencies);
    drop(tracking);

    // A cache hit: redis-rs's client-side cache against RedisStore's.
    const HITS: u32 = 200_000;
    let config = AsyncConnectionConfig::new().set_cache_config(redis::caching::CacheConfig::new());
    let mut cached = resp3(port)
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let _: Option<String> = redis::cmd("GET")
        .arg("bench:pubsub:1")
        .query_async(&mut cached)
        .await
        .unwrap();
    let started = Instant::now();
    for _ in 0..HITS {
        let _: Option<String> = redis::cmd("GET")
            .arg("bench:pubsub:1")
            .query_async(&mut cached)
            .await
            .unwrap();
    }
    let per_hit = started.elapsed() / HITS;
    let hits = cached.get_cache_statistics().map_or(0, |stats| stats.hit);
    println!("redis-rs cache-aio GET hit: {per_hit:.1?} each ({hits} hits counted)");

    let store = RedisStore::open(
        &format!("redis://127.0.0.1:{port}/"),
        RedisStoreConfig::default(),
    )
    .unwrap();
    while !store.local_cache_active() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let RevocationCheck::Pending(read) = store.check("jti", Some("family")) {
        read.await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..HITS {
        match store.check("jti", Some("family")) {
            RevocationCheck::Ready(answer) => assert!(!answer.unwrap()),
            RevocationCheck::Pending(_) => panic!("not cached"),
        }
    }
    let per_check = started.elapsed() / HITS;
    println!("RedisStore cached check (jti and family): {per_check:.1?} each");
}

fn main() {
    // `cargo bench` passes `--bench`; a plain run is a measurement too.
    let (_server, port) = start_redis();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(measure(port));
}
