//! The local revocation cache of `RedisStore`: cached answers come back
//! ready, a revocation made through another store reaches them, and when
//! the invalidation channel is lost every check reads Redis (and stays
//! exact) until the channel is back.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer};
use tower_authgate::clock::now_seconds;
use tower_authgate::store::{RedisStore, RedisStoreConfig, RevocationCheck, RevocationStore};

fn open(url: &str) -> RedisStore {
    RedisStore::open(url, RedisStoreConfig::default()).unwrap()
}

/// The answer, and whether it came from the cache.
async fn check(store: &RedisStore, id: &str, family: Option<&str>) -> (bool, bool) {
    match store.check(id, family) {
        RevocationCheck::Ready(answer) => (answer.unwrap(), true),
        RevocationCheck::Pending(future) => (future.await.unwrap(), false),
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cached_answers_are_ready_and_revocations_reach_them(url: &str) {
    let (a, b) = (open(url), open(url));
    wait_for("the listeners", || {
        a.local_cache_active() && b.local_cache_active()
    })
    .await;
    let until = now_seconds() + 60;
    assert_eq!(check(&b, "jti-1", Some("fam-1")).await, (false, false));
    assert_eq!(check(&b, "jti-1", Some("fam-1")).await, (false, true));

    // Revoked through the other store: the announcement reaches the cache.
    assert!(a.revoke("jti-1", until).await.unwrap());
    let revoked_at = Instant::now();
    wait_for("the announcement", || {
        matches!(
            b.check("jti-1", Some("fam-1")),
            RevocationCheck::Ready(Ok(true))
        )
    })
    .await;
    assert!(revoked_at.elapsed() < Duration::from_millis(100));

    // A family revocation reaches every token of the family.
    assert_eq!(check(&b, "jti-2", Some("fam-2")).await, (false, false));
    assert_eq!(check(&b, "jti-2", Some("fam-2")).await, (false, true));
    assert!(a.revoke("fam-2", until).await.unwrap());
    wait_for("the family's announcement", || {
        matches!(
            b.check("jti-2", Some("fam-2")),
            RevocationCheck::Ready(Ok(true))
        )
    })
    .await;
    // The store that revoked knows at once.
    assert!(b.revoke("jti-3", until).await.unwrap());
    assert_eq!(check(&b, "jti-3", None).await, (true, true));
}

#[tokio::test]
async fn cached_answers_are_ready_and_revocations_reach_them_on_one_server() {
    let redis = RedisServer::start();
    cached_answers_are_ready_and_revocations_reach_them(&redis.url()).await;
}

#[tokio::test]
async fn cached_answers_are_ready_and_revocations_reach_them_on_a_cluster() {
    let cluster = RedisCluster::start();
    cached_answers_are_ready_and_revocations_reach_them(&cluster.url()).await;
}

fn listener_ids(redis: &RedisServer) -> Vec<String> {
    redis
        .cli(&["client", "list"])
        .lines()
        .filter(|line| line.contains("name=authgate-invalidations"))
        .filter_map(|line| line.split(' ').next()?.strip_prefix("id="))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn losing_the_invalidation_channel_drops_the_cache_and_reads_redis() {
    let redis = RedisServer::start();
    let (a, b) = (open(&redis.url()), open(&redis.url()));
    wait_for("the listeners", || {
        a.local_cache_active() && b.local_cache_active()
    })
    .await;
    let until = now_seconds() + 60;
    assert_eq!(check(&b, "jti", None).await, (false, false));
    assert_eq!(check(&b, "jti", None).await, (false, true));

    // Kill the listening connections and keep them from subscribing again.
    assert!(
        redis
            .cli(&["acl", "setuser", "default", "-subscribe"])
            .contains("OK")
    );
    let ids = listener_ids(&redis);
    assert_eq!(ids.len(), 2, "one listener per store");
    for id in ids {
        redis.cli(&["client", "kill", "id", &id]);
    }
    wait_for("the loss to be noticed", || !b.local_cache_active()).await;

    // Meanwhile every check reads Redis, and stays exact: a revocation whose
    // announcement nobody hears, and a key written behind the stores' back.
    assert_eq!(check(&b, "jti", None).await, (false, false));
    assert!(a.revoke("jti", until).await.unwrap());
    assert_eq!(check(&b, "jti", None).await, (true, false));
    redis.cli(&["set", "authgate:revoked:written-by-hand", "1", "ex", "60"]);
    assert_eq!(check(&b, "written-by-hand", None).await, (true, false));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!b.local_cache_active(), "no subscription while refused");
    assert_eq!(check(&b, "other", None).await, (false, false));
    assert_eq!(check(&b, "other", None).await, (false, false));

    // The channel comes back: the cache answers again, from a clean slate.
    redis.cli(&["acl", "setuser", "default", "+subscribe"]);
    wait_for("the subscription", || b.local_cache_active()).await;
    assert_eq!(check(&b, "jti", None).await, (true, false));
    assert_eq!(check(&b, "jti", None).await, (true, true));
    assert_eq!(check(&b, "other", None).await, (false, false));
    assert_eq!(check(&b, "other", None).await, (false, true));
}

#[tokio::test]
async fn a_restarted_server_empties_the_cache() {
    let mut redis = RedisServer::start();
    let store = open(&redis.url());
    wait_for("the listener", || store.local_cache_active()).await;
    store.revoke("jti", now_seconds() + 60).await.unwrap();
    assert_eq!(check(&store, "jti", None).await, (true, true));
    redis.stop();
    wait_for("the loss to be noticed", || !store.local_cache_active()).await;
    assert!(matches!(
        store.check("jti", None),
        RevocationCheck::Pending(_)
    ));
    redis.restart();
    wait_for("the subscription", || store.local_cache_active()).await;
    // The restarted server kept nothing (no persistence in this test), and
    // the cache says what the server says.
    assert_eq!(check(&store, "jti", None).await, (false, false));
}

#[tokio::test]
async fn without_a_local_cache_every_check_reads_redis() {
    let redis = RedisServer::start();
    let store = RedisStore::open(
        &redis.url(),
        RedisStoreConfig::default().with_local_cache_capacity(0),
    )
    .unwrap();
    assert_eq!(check(&store, "jti", None).await, (false, false));
    assert_eq!(check(&store, "jti", None).await, (false, false));
    assert!(!store.local_cache_active());
    assert!(listener_ids(&redis).is_empty());
}
