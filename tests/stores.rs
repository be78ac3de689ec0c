//! One behavioural suite run against every store: the in-memory default and
//! Redis (feature `redis`) as one server, a 3-master cluster and a master
//! found through three sentinels, all real processes on loopback.

mod common;

use std::sync::Arc;

use tower_authgate::clock::now_seconds;
use tower_authgate::store::{LockoutPolicy, LockoutStore, MemoryLockoutStore};
use tower_authgate::store::{
    MemoryOtpReplayGuard, MemoryRevocations, OtpReplayGuard, RevocationCheck, RevocationStore,
};

/// The stores under test, and whatever must live as long as they do.
pub struct Stores {
    pub revocations: Arc<dyn RevocationStore>,
    /// Another instance's view of the same revocations (the same store in
    /// memory; a second `RedisStore`, with its own local cache, on Redis).
    pub other_instance: Arc<dyn RevocationStore>,
    pub lockout: Arc<dyn LockoutStore>,
    pub otp: Arc<dyn OtpReplayGuard>,
    #[allow(dead_code)]
    keep: Option<Box<dyn std::any::Any + Send>>,
}

fn memory() -> Stores {
    let revocations: Arc<dyn RevocationStore> = Arc::new(MemoryRevocations::default());
    Stores {
        other_instance: revocations.clone(),
        revocations,
        lockout: Arc::new(MemoryLockoutStore::default()),
        otp: Arc::new(MemoryOtpReplayGuard::default()),
        keep: None,
    }
}

#[cfg(feature = "redis")]
fn redis_on(url: &str, keep: Box<dyn std::any::Any + Send>) -> Stores {
    use tower_authgate::store::{RedisStore, RedisStoreConfig};
    let store = Arc::new(RedisStore::open(url, RedisStoreConfig::default()).unwrap());
    let other = Arc::new(RedisStore::open(url, RedisStoreConfig::default()).unwrap());
    Stores {
        revocations: store.clone(),
        other_instance: other,
        lockout: store.clone(),
        otp: store,
        keep: Some(keep),
    }
}

#[cfg(feature = "redis")]
fn redis() -> Stores {
    let server = common::redis::RedisServer::start();
    redis_on(&server.url(), Box::new(server))
}

#[cfg(feature = "redis")]
fn redis_cluster() -> Stores {
    let cluster = common::redis::RedisCluster::start();
    redis_on(&cluster.url(), Box::new(cluster))
}

#[cfg(feature = "redis")]
fn redis_sentinel() -> Stores {
    let sentinels = common::redis::RedisSentinels::start();
    redis_on(&sentinels.url(), Box::new(sentinels))
}

async fn revoked(store: &dyn RevocationStore, id: &str, family: Option<&str>) -> bool {
    match store.check(id, family) {
        RevocationCheck::Ready(answer) => answer.unwrap(),
        RevocationCheck::Pending(future) => future.await.unwrap(),
    }
}

async fn cut_off(store: &dyn RevocationStore, subject: &str, issued_at: u64) -> bool {
    match store.check_subject(subject, issued_at) {
        RevocationCheck::Ready(answer) => answer.unwrap(),
        RevocationCheck::Pending(future) => future.await.unwrap(),
    }
}

macro_rules! store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn signing_a_subject_out_cuts_off_its_tokens_issued_until_then() {
                let stores = $make;
                let r = &*stores.revocations;
                let other = &*stores.other_instance;
                let now = now_seconds();
                assert!(!cut_off(r, "alice", now).await);
                // Read once on the other instance, so that a cache holds
                // "not signed out" when the sign-out comes.
                assert!(!cut_off(other, "alice", now).await);
                r.revoke_subject("alice", now, now + 60).await.unwrap();
                assert!(cut_off(r, "alice", now - 100).await, "issued before");
                assert!(cut_off(r, "alice", now).await, "issued at the cut-off");
                assert!(!cut_off(r, "alice", now + 1).await, "issued after");
                assert!(!cut_off(r, "bob", now).await, "another subject");
                // The other instance sees it within 100 ms.
                let started = std::time::Instant::now();
                while !cut_off(other, "alice", now).await {
                    assert!(
                        started.elapsed() < std::time::Duration::from_millis(100),
                        "the other instance still accepts alice's tokens"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                // An earlier cut-off never moves it back.
                r.revoke_subject("alice", now - 50, now + 10).await.unwrap();
                assert!(cut_off(r, "alice", now).await);
                assert!(cut_off(other, "alice", now).await);
                // A later one moves it forward.
                r.revoke_subject("alice", now + 5, now + 60).await.unwrap();
                assert!(cut_off(r, "alice", now + 5).await);
                assert!(!cut_off(r, "alice", now + 6).await);
                // A subject with spaces and colons in its name.
                r.revoke_subject("Ada Lovelace: admin", now, now + 60)
                    .await
                    .unwrap();
                assert!(
                    cut_off(other, "Ada Lovelace: admin", now).await || {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        cut_off(other, "Ada Lovelace: admin", now).await
                    }
                );
                // Token and family checks are untouched by it.
                assert!(!revoked(r, "jti-of-alice", Some("fam-of-alice")).await);
            }

            #[tokio::test]
            async fn revocation_is_test_and_set_and_covers_families() {
                let stores = $make;
                let until = now_seconds() + 60;
                let r = &*stores.revocations;
                assert!(!revoked(r, "jti-1", Some("fam-1")).await);
                assert!(r.revoke("jti-1", until).await.unwrap());
                assert!(
                    !r.revoke("jti-1", until).await.unwrap(),
                    "second revoke reports reuse"
                );
                assert!(revoked(r, "jti-1", None).await);
                assert!(!revoked(r, "jti-2", Some("fam-1")).await);
                r.revoke("fam-1", until).await.unwrap();
                assert!(revoked(r, "jti-2", Some("fam-1")).await);
            }

            #[tokio::test]
            async fn concurrent_revocations_each_win_once() {
                let stores = $make;
                let until = now_seconds() + 60;
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let r = stores.revocations.clone();
                        tokio::spawn(async move {
                            let mut wins = 0;
                            for i in 0..50 {
                                if r.revoke(&format!("id-{i}"), until).await.unwrap() {
                                    wins += 1;
                                }
                            }
                            wins
                        })
                    })
                    .collect();
                let mut wins = 0;
                for task in tasks {
                    wins += task.await.unwrap();
                }
                assert_eq!(wins, 50);
            }

            #[tokio::test]
            async fn a_totp_step_is_used_once() {
                let stores = $make;
                let until = now_seconds() + 90;
                assert!(stores.otp.use_step("operator", 42, until).await.unwrap());
                assert!(!stores.otp.use_step("operator", 42, until).await.unwrap());
                assert!(stores.otp.use_step("operator", 43, until).await.unwrap());
                assert!(stores.otp.use_step("admin", 42, until).await.unwrap());
            }

            #[tokio::test]
            async fn lockout_counts_locks_lists_and_resets() {
                let stores = $make;
                let store = &*stores.lockout;
                let policy = LockoutPolicy::default();
                let now = now_seconds();
                for i in 1..=4 {
                    let r = store.record_failure("alice", &policy, now).await.unwrap();
                    assert_eq!(
                        (r.failures, r.locked_until, r.newly_locked),
                        (i, None, false)
                    );
                }
                let r = store.record_failure("alice", &policy, now).await.unwrap();
                assert_eq!(
                    (r.failures, r.locked_until, r.newly_locked),
                    (5, Some(now + 600), true)
                );
                assert_eq!(
                    store.locked_until("alice", now + 599).await.unwrap(),
                    Some(now + 600)
                );
                assert_eq!(store.locked_until("alice", now + 600).await.unwrap(), None);
                assert_eq!(store.locked_until("bob", now).await.unwrap(), None);
                let locked = store.list_locked(now).await.unwrap();
                assert_eq!(locked.len(), 1);
                assert_eq!(
                    (
                        locked[0].account.as_str(),
                        locked[0].locked_until,
                        locked[0].failures
                    ),
                    ("alice", now + 600, 5)
                );
                store.reset("alice").await.unwrap();
                assert_eq!(store.locked_until("alice", now).await.unwrap(), None);
                assert!(store.list_locked(now).await.unwrap().is_empty());
                // After the window, failures start again from one.
                store.record_failure("carol", &policy, now).await.unwrap();
                let r = store
                    .record_failure("carol", &policy, now + 601)
                    .await
                    .unwrap();
                assert_eq!(r.failures, 1);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_failures_lose_no_count_and_lock_once() {
                let stores = $make;
                let policy = LockoutPolicy::default();
                let now = now_seconds();
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let store = stores.lockout.clone();
                        tokio::spawn(async move {
                            let mut locks = 0;
                            for _ in 0..125 {
                                let r = store.record_failure("victim", &policy, now).await.unwrap();
                                locks += usize::from(r.newly_locked);
                            }
                            locks
                        })
                    })
                    .collect();
                let mut locks = 0;
                for task in tasks {
                    locks += task.await.unwrap();
                }
                assert_eq!(locks, 1);
                let locked = stores.lockout.list_locked(now).await.unwrap();
                assert_eq!(locked[0].failures, 1000);
            }
        }
    };
}

store_suite!(memory_store, memory());
#[cfg(feature = "redis")]
store_suite!(redis_store, redis());
#[cfg(feature = "redis")]
store_suite!(redis_cluster_store, redis_cluster());
#[cfg(feature = "redis")]
store_suite!(redis_sentinel_store, redis_sentinel());

#[cfg(feature = "redis")]
#[test]
fn opening_a_redis_store_outside_a_runtime_is_an_error_not_a_panic() {
    use tower_authgate::store::{RedisStore, RedisStoreConfig};
    let err = RedisStore::open("redis://127.0.0.1:1/", RedisStoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    assert!(RedisStore::open("not a url", RedisStoreConfig::default()).is_err());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_subject_check_fails_closed_when_redis_is_gone_unless_told_otherwise() {
    use tower_authgate::store::{RedisStore, RedisStoreConfig, Unreachable};
    let server = common::redis::RedisServer::start();
    let url = server.url();
    // Without the local cache: the read itself fails closed (the cache is
    // dropped with its subscription, as the other revocations' tests show).
    let quick = || {
        RedisStoreConfig::default()
            .with_local_cache_capacity(0)
            .with_connection_timeout(std::time::Duration::from_millis(200))
            .with_response_timeout(std::time::Duration::from_millis(200))
    };
    let closed = RedisStore::open(&url, quick()).unwrap();
    let open = RedisStore::open(&url, quick().with_unreachable(Unreachable::FailOpen)).unwrap();
    let now = now_seconds();
    assert!(!cut_off(&closed, "alice", now).await);
    drop(server);
    let answer = match closed.check_subject("alice", now) {
        RevocationCheck::Ready(answer) => answer,
        RevocationCheck::Pending(future) => future.await,
    };
    assert!(answer.is_err(), "{answer:?}");
    assert!(!cut_off(&open, "alice", now).await);
    assert!(closed.revoke_subject("alice", now, now + 60).await.is_err());
}
