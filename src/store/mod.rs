//! State that must outlive a request: revoked token ids and used TOTP steps.
//!
//! Each kind of state sits behind a trait so that a shared store (Redis) can
//! replace the bounded in-memory default when a service runs as several
//! instances. Operations that decide something (revoke-if-new, use-once) are
//! atomic: nothing is lost or granted twice under concurrency.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Mutex;

use crate::token::now_seconds;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreConfig, Unreachable};

/// A boxed, `Send` future, as returned by the store traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store could not answer (a shared store is unreachable, or a bounded one
/// is full of live entries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store unavailable: {0}")]
pub struct StoreError(pub String);

/// The answer to "is this token revoked?": ready at once for in-memory
/// stores (no allocation on the request path), or a future for remote ones.
pub enum RevocationCheck {
    /// The answer is known now.
    Ready(Result<bool, StoreError>),
    /// The answer needs I/O.
    Pending(BoxFuture<'static, Result<bool, StoreError>>),
}

impl std::fmt::Debug for RevocationCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevocationCheck::Ready(answer) => f.debug_tuple("Ready").field(answer).finish(),
            RevocationCheck::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Revoked token ids (`jti`) and token families, each kept until the moment
/// after which the token it names would have expired anyway.
pub trait RevocationStore: Send + Sync + 'static {
    /// Revokes `id` until `until` (seconds since the epoch). Returns `true`
    /// when this call revoked it and `false` when it was revoked already: the
    /// test and the set are one atomic step, which is what refresh-token
    /// rotation needs to detect reuse.
    fn revoke(&self, id: &str, until: u64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Whether `id`, or the family `family`, is revoked.
    fn check(&self, id: &str, family: Option<&str>) -> RevocationCheck;
}

/// Default cap on tracked ids in [`MemoryRevocations`].
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

const SHARDS: usize = 16;

/// A map from string keys split into independently locked shards, each
/// holding at most `max_per_shard` entries: the in-memory stores' base.
#[derive(Debug)]
pub(crate) struct ShardedMap<V> {
    shards: Box<[Shard<V>]>,
    pub(crate) max_per_shard: usize,
}

/// One shard of a [`ShardedMap`].
type Shard<V> = Mutex<HashMap<Box<str>, V>>;

/// One locked shard of a [`ShardedMap`].
pub(crate) type ShardGuard<'a, V> = std::sync::MutexGuard<'a, HashMap<Box<str>, V>>;

impl<V> ShardedMap<V> {
    /// A map holding at most about `max` entries.
    pub(crate) fn with_capacity(max: usize) -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    /// The shard that holds `key`, locked.
    pub(crate) fn lock(&self, key: &str) -> Result<ShardGuard<'_, V>, StoreError> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        Self::guard(&self.shards[hasher.finish() as usize % SHARDS])
    }

    /// Every shard in turn, locked.
    pub(crate) fn each(&self) -> impl Iterator<Item = Result<ShardGuard<'_, V>, StoreError>> {
        self.shards.iter().map(Self::guard)
    }

    fn guard(shard: &Shard<V>) -> Result<ShardGuard<'_, V>, StoreError> {
        shard
            .lock()
            .map_err(|_| StoreError("in-memory store shard poisoned".into()))
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.each().map(|s| s.map(|s| s.len()).unwrap_or(0)).sum()
    }
}

/// The in-memory [`RevocationStore`]: sharded, bounded, with expired entries
/// purged as shards fill.
///
/// When a shard is full of entries that have not expired, `revoke` fails
/// with a [`StoreError`] rather than forget a revocation.
#[derive(Debug)]
pub struct MemoryRevocations {
    ids: ShardedMap<u64>,
}

impl Default for MemoryRevocations {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MAX_REVOCATIONS)
    }
}

impl MemoryRevocations {
    /// A store that tracks at most `max` ids at once.
    pub fn with_capacity(max: usize) -> Self {
        MemoryRevocations {
            ids: ShardedMap::with_capacity(max),
        }
    }

    /// Revokes `id` at once (the synchronous form of
    /// [`RevocationStore::revoke`]).
    pub fn revoke_now(&self, id: &str, until: u64) -> Result<bool, StoreError> {
        let now = now_seconds();
        let mut shard = self.ids.lock(id)?;
        if let Some(existing) = shard.get_mut(id) {
            if *existing > now {
                *existing = (*existing).max(until);
                return Ok(false);
            }
            *existing = until;
            return Ok(true);
        }
        if shard.len() >= self.ids.max_per_shard {
            shard.retain(|_, until| *until > now);
            if shard.len() >= self.ids.max_per_shard {
                return Err(StoreError("revocation store is full".into()));
            }
        }
        shard.insert(id.into(), until);
        Ok(true)
    }

    /// Whether `id` is revoked now.
    pub fn is_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let shard = self.ids.lock(id)?;
        Ok(shard.get(id).is_some_and(|until| *until > now_seconds()))
    }

    /// The number of ids tracked, expired or not.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationStore for MemoryRevocations {
    fn revoke(&self, id: &str, until: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let result = self.revoke_now(id, until);
        Box::pin(std::future::ready(result))
    }

    fn check(&self, id: &str, family: Option<&str>) -> RevocationCheck {
        let answer = self.is_revoked(id).and_then(|revoked| match family {
            Some(family) if !revoked => self.is_revoked(family),
            _ => Ok(revoked),
        });
        RevocationCheck::Ready(answer)
    }
}

/// A guard that lets each TOTP time step be used once per account
/// (RFC 6238 §5.2).
pub trait OtpReplayGuard: Send + Sync + 'static {
    /// Records that `account` used `step`; `true` when this is the first use,
    /// atomically.
    fn use_step(
        &self,
        account: &str,
        step: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// The in-memory [`OtpReplayGuard`], bounded like [`MemoryRevocations`].
#[derive(Debug, Default)]
pub struct MemoryOtpReplayGuard {
    used: MemoryRevocations,
}

impl MemoryOtpReplayGuard {
    /// A guard that tracks at most `max` (account, step) pairs.
    pub fn with_capacity(max: usize) -> Self {
        MemoryOtpReplayGuard {
            used: MemoryRevocations::with_capacity(max),
        }
    }
}

impl OtpReplayGuard for MemoryOtpReplayGuard {
    fn use_step(
        &self,
        account: &str,
        step: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let result = self
            .used
            .revoke_now(&format!("{account}\u{0}{step}"), until);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_is_test_and_set() {
        let store = MemoryRevocations::default();
        let until = now_seconds() + 60;
        assert_eq!(store.revoke_now("a", until), Ok(true));
        assert_eq!(store.revoke_now("a", until), Ok(false));
        assert_eq!(store.is_revoked("a"), Ok(true));
        assert_eq!(store.is_revoked("b"), Ok(false));
    }

    #[test]
    fn expired_entries_make_room_and_live_ones_are_never_dropped() {
        let store = MemoryRevocations::with_capacity(SHARDS);
        let past = now_seconds() - 1;
        let future = now_seconds() + 60;
        // Fill every shard with expired entries, then live ones replace them.
        let mut live = Vec::new();
        for i in 0..10_000 {
            let id = format!("old-{i}");
            store.revoke_now(&id, past).unwrap();
        }
        for i in 0..10_000 {
            let id = format!("new-{i}");
            if store.revoke_now(&id, future) == Ok(true) {
                live.push(id);
            }
        }
        assert!(!live.is_empty());
        assert!(store.len() <= SHARDS);
        for id in &live {
            assert_eq!(store.is_revoked(id), Ok(true), "{id} was dropped");
        }
    }

    #[test]
    fn concurrent_revocations_each_win_once() {
        let store = std::sync::Arc::new(MemoryRevocations::default());
        let until = now_seconds() + 60;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| store.revoke_now(&format!("id-{i}"), until) == Ok(true))
                        .count()
                })
            })
            .collect();
        let wins: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(wins, 1000);
    }
}
