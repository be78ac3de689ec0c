//! Failed-login lockout (document 000: "5 failed login attempts → account is
//! locked for 10 minutes").
//!
//! A [`LockoutPolicy`] says how many failures within a counting window lock
//! an account, and for how long. A [`LockoutStore`] keeps the counters with
//! atomic operations (a failure is recorded and the new state learnt in one
//! step, so no count is lost and an account locks exactly once under
//! concurrency). [`Lockout`] puts them together for a
//! [`LoginFlow`](crate::login::LoginFlow): while an account is locked its
//! password is not checked at all, and the answer is the same whether the
//! account exists or not.
//!
//! Time comes from a [`Clock`], so tests never sleep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::store::{BoxFuture, ShardedMap, StoreError};
use crate::token::now_seconds;

/// Seconds since the Unix epoch, from a source tests can control.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        now_seconds()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: u64) -> Self {
        ManualClock(AtomicU64::new(now))
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// When failures lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the account (default 5).
    pub max_failures: u32,
    /// How long a lock lasts, in seconds (default 600).
    pub lock_seconds: u64,
    /// Failures older than this many seconds no longer count (default 600).
    pub window_seconds: u64,
    /// Count failures per account and client address rather than per
    /// account (default `false`: an attacker cannot dodge the lock by
    /// changing address, at the price that anyone can lock an account).
    pub per_address: bool,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            lock_seconds: 600,
            window_seconds: 600,
            per_address: false,
        }
    }
}

/// The state after a failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRecorded {
    /// Failures counted in the current window.
    pub failures: u32,
    /// When the lock ends, if the account is locked.
    pub locked_until: Option<u64>,
    /// Whether this failure is the one that locked the account.
    pub newly_locked: bool,
}

/// A locked account, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedAccount {
    /// The lockout key (the normalised username, with the address when
    /// counting per address).
    pub account: String,
    /// When the lock ends, seconds since the epoch.
    pub locked_until: u64,
    /// Failures counted.
    pub failures: u32,
}

/// Lockout counters. Every operation is atomic for its key.
pub trait LockoutStore: Send + Sync + 'static {
    /// Counts a failure for `key` at `now` under `policy` and returns the new
    /// state.
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        policy: &'a LockoutPolicy,
        now: u64,
    ) -> BoxFuture<'a, Result<FailureRecorded, StoreError>>;

    /// When `key`'s lock ends, if it is locked at `now`.
    fn locked_until<'a>(
        &'a self,
        key: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// Forgets `key`'s failures and lock (a successful login, an unlock).
    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Every account locked at `now`.
    fn list_locked(&self, now: u64) -> BoxFuture<'_, Result<Vec<LockedAccount>, StoreError>>;
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    window_start: u64,
    last_failure: u64,
    locked_until: Option<u64>,
}

impl Counter {
    fn locked_at(&self, now: u64) -> Option<u64> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Idle: not locked and nothing left to count.
    fn is_stale(&self, now: u64, window: u64) -> bool {
        self.locked_at(now).is_none() && self.last_failure.saturating_add(window) <= now
    }
}

/// The default cap on accounts tracked by [`MemoryLockoutStore`].
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// The in-memory [`LockoutStore`]: sharded and bounded.
///
/// When a shard is full, counters that are neither locked nor recent are
/// dropped first, then the least recently failed unlocked counters; a lock
/// is never dropped. Spraying a million usernames therefore cannot grow
/// memory past the bound. If a shard holds nothing but live locks, a new
/// failure is refused with a [`StoreError`] (the login answers `503`)
/// rather than forget a lock.
#[derive(Debug)]
pub struct MemoryLockoutStore {
    counters: ShardedMap<Counter>,
}

impl Default for MemoryLockoutStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MAX_TRACKED)
    }
}

impl MemoryLockoutStore {
    /// A store tracking at most `max` accounts.
    pub fn with_capacity(max: usize) -> Self {
        MemoryLockoutStore {
            counters: ShardedMap::with_capacity(max),
        }
    }

    /// Counts a failure now (the synchronous form of
    /// [`LockoutStore::record_failure`]).
    pub fn record_failure_now(
        &self,
        key: &str,
        policy: &LockoutPolicy,
        now: u64,
    ) -> Result<FailureRecorded, StoreError> {
        let max = self.counters.max_per_shard;
        let mut shard = self.counters.lock(key)?;
        if !shard.contains_key(key) && shard.len() >= max {
            Self::make_room(&mut shard, max, now, policy.window_seconds);
            if shard.len() >= max {
                return Err(StoreError(
                    "lockout store is full of locked accounts".into(),
                ));
            }
        }
        let counter = shard.entry(key.into()).or_insert(Counter {
            failures: 0,
            window_start: now,
            last_failure: now,
            locked_until: None,
        });
        if let Some(until) = counter.locked_at(now) {
            counter.failures = counter.failures.saturating_add(1);
            counter.last_failure = now;
            return Ok(FailureRecorded {
                failures: counter.failures,
                locked_until: Some(until),
                newly_locked: false,
            });
        }
        let expired_lock = counter.locked_until.is_some();
        if expired_lock || counter.window_start.saturating_add(policy.window_seconds) <= now {
            counter.failures = 0;
            counter.window_start = now;
            counter.locked_until = None;
        }
        counter.failures = counter.failures.saturating_add(1);
        counter.last_failure = now;
        let newly_locked = counter.failures >= policy.max_failures;
        if newly_locked {
            counter.locked_until = Some(now.saturating_add(policy.lock_seconds));
        }
        Ok(FailureRecorded {
            failures: counter.failures,
            locked_until: counter.locked_until,
            newly_locked,
        })
    }

    fn make_room(shard: &mut HashMap<Box<str>, Counter>, max: usize, now: u64, window: u64) {
        shard.retain(|_, c| !c.is_stale(now, window));
        if shard.len() < max {
            return;
        }
        // Drop the least recently failed eighth of the unlocked counters.
        let mut unlocked: Vec<(u64, Box<str>)> = shard
            .iter()
            .filter(|(_, c)| c.locked_at(now).is_none())
            .map(|(k, c)| (c.last_failure, k.clone()))
            .collect();
        if unlocked.is_empty() {
            return;
        }
        let drop = (max / 8).max(1).min(unlocked.len());
        unlocked.select_nth_unstable_by_key(drop - 1, |(t, _)| *t);
        for (_, key) in unlocked.into_iter().take(drop) {
            shard.remove(&key);
        }
    }

    /// When `key`'s lock ends, if it is locked at `now`.
    pub fn locked_until_now(&self, key: &str, now: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .counters
            .lock(key)?
            .get(key)
            .and_then(|c| c.locked_at(now)))
    }

    /// The number of accounts tracked.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no account is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LockoutStore for MemoryLockoutStore {
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        policy: &'a LockoutPolicy,
        now: u64,
    ) -> BoxFuture<'a, Result<FailureRecorded, StoreError>> {
        Box::pin(std::future::ready(
            self.record_failure_now(key, policy, now),
        ))
    }

    fn locked_until<'a>(
        &'a self,
        key: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(std::future::ready(self.locked_until_now(key, now)))
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.counters.lock(key).map(|mut shard| {
            shard.remove(key);
        });
        Box::pin(std::future::ready(result))
    }

    fn list_locked(&self, now: u64) -> BoxFuture<'_, Result<Vec<LockedAccount>, StoreError>> {
        let list = || {
            let mut locked = Vec::new();
            for shard in self.counters.each() {
                locked.extend(shard?.iter().filter_map(|(key, c)| {
                    c.locked_at(now).map(|until| LockedAccount {
                        account: key.to_string(),
                        locked_until: until,
                        failures: c.failures,
                    })
                }));
            }
            locked.sort_by(|a, b| a.account.cmp(&b.account));
            Ok(locked)
        };
        Box::pin(std::future::ready(list()))
    }
}

/// Lockout for a login flow: a policy, a store and a clock.
#[derive(Clone)]
pub struct Lockout {
    policy: LockoutPolicy,
    store: Arc<dyn LockoutStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout::new(LockoutPolicy::default())
    }
}

impl Lockout {
    /// `policy` over a bounded in-memory store and the system clock.
    pub fn new(policy: LockoutPolicy) -> Self {
        Lockout {
            policy,
            store: Arc::new(MemoryLockoutStore::default()),
            clock: Arc::new(SystemClock),
        }
    }

    /// With this store (share one across instances).
    pub fn store(mut self, store: Arc<dyn LockoutStore>) -> Self {
        self.store = store;
        self
    }

    /// With this clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// The key counting failures for `account` (already normalised) from
    /// `client`.
    pub fn key(&self, account: &str, client: Option<IpAddr>) -> String {
        match (self.policy.per_address, client) {
            (true, Some(ip)) => format!("{account}@{ip}"),
            _ => account.to_owned(),
        }
    }

    /// Seconds until `key` is unlocked, if it is locked.
    pub async fn retry_after(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .store
            .locked_until(key, now)
            .await?
            .map(|until| until.saturating_sub(now).max(1)))
    }

    /// Counts a failure for `key`.
    pub async fn failure(&self, key: &str) -> Result<FailureRecorded, StoreError> {
        self.store
            .record_failure(key, &self.policy, self.clock.now())
            .await
    }

    /// Forgets `key`'s failures (after a complete, successful login).
    pub async fn success(&self, key: &str) -> Result<(), StoreError> {
        self.store.reset(key).await
    }

    /// Unlocks `key` (an administrator's decision).
    pub async fn unlock(&self, key: &str) -> Result<(), StoreError> {
        self.store.reset(key).await
    }

    /// The accounts locked now.
    pub async fn locked(&self) -> Result<Vec<LockedAccount>, StoreError> {
        self.store.list_locked(self.clock.now()).await
    }

    /// The clock's reading.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_for_ten_minutes_and_the_window_expires() {
        let store = MemoryLockoutStore::default();
        let policy = LockoutPolicy::default();
        for i in 1..=4 {
            let r = store.record_failure_now("a", &policy, 1000).unwrap();
            assert_eq!((r.failures, r.locked_until), (i, None));
        }
        let fifth = store.record_failure_now("a", &policy, 1000).unwrap();
        assert!(fifth.newly_locked);
        assert_eq!(fifth.locked_until, Some(1600));
        assert_eq!(store.locked_until_now("a", 1599).unwrap(), Some(1600));
        assert_eq!(store.locked_until_now("a", 1600).unwrap(), None);
        // Failures spread beyond the window do not add up.
        for t in [0u64, 700, 1400, 2100, 2800] {
            let r = store.record_failure_now("b", &policy, t).unwrap();
            assert_eq!(r.failures, 1, "at {t}");
        }
    }
}
