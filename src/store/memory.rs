//! The bounded in-memory stores: one sharded map each, every shard locked on
//! its own, expired entries purged as shards fill, live entries never
//! dropped to make room.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::BoxFuture;
use crate::clock::now_seconds;

use super::{
    FailureRecorded, LockedAccount, LockoutPolicy, LockoutStore, LoginCode, LoginCodeStore,
    OtpReplayGuard, RevocationCheck, RevocationStore, Rotation, RotationStore, ServiceAccount,
    ServiceAccountStore, StoreError,
};

/// Default cap on tracked ids in [`MemoryRevocations`].
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

const SHARDS: usize = 16;

/// A map from string keys split into independently locked shards, each
/// holding at most `max_per_shard` entries: the in-memory stores' base.
/// Its keys are hashed with a per-process random seed (foldhash, as the
/// Redis store's local cache): a revocation check runs on every guarded
/// request, and the hash picks the shard and the bucket alike.
#[derive(Debug)]
struct ShardedMap<V> {
    shards: Box<[Shard<V>]>,
    max_per_shard: usize,
    hasher: Hasher,
}

type Hasher = foldhash::fast::RandomState;

/// One shard of a [`ShardedMap`].
type Shard<V> = Mutex<HashMap<Box<str>, V, Hasher>>;

/// One locked shard of a [`ShardedMap`].
type ShardGuard<'a, V> = std::sync::MutexGuard<'a, HashMap<Box<str>, V, Hasher>>;

impl<V> ShardedMap<V> {
    /// A map holding at most about `max` entries.
    fn with_capacity(max: usize) -> Self {
        let hasher = Hasher::default();
        ShardedMap {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            max_per_shard: max.div_ceil(SHARDS).max(1),
            hasher,
        }
    }

    /// The shard that holds `key`, locked.
    fn lock(&self, key: &str) -> Result<ShardGuard<'_, V>, StoreError> {
        // The high bits pick the shard; the map uses the full hash.
        let hash = self.hasher.hash_one(key);
        Self::guard(&self.shards[(hash >> 60) as usize % SHARDS])
    }

    /// Every shard in turn, locked.
    fn each(&self) -> impl Iterator<Item = Result<ShardGuard<'_, V>, StoreError>> {
        self.shards.iter().map(Self::guard)
    }

    fn guard(shard: &Shard<V>) -> Result<ShardGuard<'_, V>, StoreError> {
        shard
            .lock()
            .map_err(|_| StoreError("in-memory store shard poisoned".into()))
    }

    /// The number of entries.
    fn len(&self) -> usize {
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
    /// Subjects signed out everywhere: (cut-off, until).
    subjects: ShardedMap<(u64, u64)>,
    /// Whether any subject was ever signed out: until then a subject check
    /// takes no lock.
    any_subject: AtomicBool,
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
            subjects: ShardedMap::with_capacity(max),
            any_subject: AtomicBool::new(false),
        }
    }

    /// Signs `subject` out everywhere at once (the synchronous form of
    /// [`RevocationStore::revoke_subject`]).
    pub fn revoke_subject_now(
        &self,
        subject: &str,
        cut_off: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        let now = now_seconds();
        let mut shard = self.subjects.lock(subject)?;
        // Set before the entry: a check that sees the entry sees the flag.
        self.any_subject.store(true, Ordering::SeqCst);
        if let Some((old_cut_off, old_until)) = shard.get_mut(subject) {
            if *old_until > now {
                *old_cut_off = (*old_cut_off).max(cut_off);
                *old_until = (*old_until).max(until);
            } else {
                *old_cut_off = cut_off;
                *old_until = until;
            }
            return Ok(());
        }
        if shard.len() >= self.subjects.max_per_shard {
            shard.retain(|_, (_, until)| *until > now);
            if shard.len() >= self.subjects.max_per_shard {
                return Err(StoreError("revocation store is full".into()));
            }
        }
        shard.insert(subject.into(), (cut_off, until));
        Ok(())
    }

    fn subject_cut_off_at(
        &self,
        subject: &str,
        issued_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        if !self.any_subject.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let shard = self.subjects.lock(subject)?;
        Ok(shard
            .get(subject)
            .is_some_and(|(cut_off, until)| *until > now && issued_at <= *cut_off))
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
        self.is_revoked_at(id, now_seconds())
    }

    fn is_revoked_at(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let shard = self.ids.lock(id)?;
        Ok(shard.get(id).is_some_and(|until| *until > now))
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
        let now = now_seconds();
        let answer = self
            .is_revoked_at(id, now)
            .and_then(|revoked| match family {
                Some(family) if !revoked => self.is_revoked_at(family, now),
                _ => Ok(revoked),
            });
        RevocationCheck::Ready(answer)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        cut_off: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = self.revoke_subject_now(subject, cut_off, until);
        Box::pin(std::future::ready(result))
    }

    fn check_subject(&self, subject: &str, issued_at: u64) -> RevocationCheck {
        RevocationCheck::Ready(self.subject_cut_off_at(subject, issued_at, now_seconds()))
    }
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

/// The in-memory [`RotationStore`], bounded like [`MemoryRevocations`]: when
/// a shard is full of live entries a rotation fails with a [`StoreError`]
/// rather than forget a used token.
#[derive(Debug)]
pub struct MemoryRotations {
    used: ShardedMap<(u64, u64)>,
}

impl Default for MemoryRotations {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MAX_REVOCATIONS)
    }
}

impl MemoryRotations {
    /// A store that tracks at most `max` used tokens at once.
    pub fn with_capacity(max: usize) -> Self {
        MemoryRotations {
            used: ShardedMap::with_capacity(max),
        }
    }

    /// Records a use of `token_id` at `now` (the synchronous form of
    /// [`RotationStore::rotate`]).
    pub fn rotate_now(&self, token_id: &str, now: u64, until: u64) -> Result<Rotation, StoreError> {
        let mut shard = self.used.lock(token_id)?;
        match shard.get(token_id) {
            Some(&(first_at, kept_until)) if kept_until > now => {
                return Ok(Rotation::Repeat { first_at });
            }
            _ => {}
        }
        if !shard.contains_key(token_id) && shard.len() >= self.used.max_per_shard {
            shard.retain(|_, (_, kept_until)| *kept_until > now);
            if shard.len() >= self.used.max_per_shard {
                return Err(StoreError("rotation store is full".into()));
            }
        }
        shard.insert(token_id.into(), (now, until));
        Ok(Rotation::First)
    }
}

impl RotationStore for MemoryRotations {
    fn rotate(
        &self,
        token_id: &str,
        now: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        Box::pin(std::future::ready(self.rotate_now(token_id, now, until)))
    }
}

/// The in-memory [`ServiceAccountStore`]: as long as the process lives.
/// Services whose service-account tokens must stay listable and revocable
/// across restarts use a persistent store (Redis, feature `redis`).
#[derive(Debug, Default)]
pub struct MemoryServiceAccounts {
    accounts: std::sync::Mutex<Vec<ServiceAccount>>,
}

impl MemoryServiceAccounts {
    fn locked(&self) -> Result<std::sync::MutexGuard<'_, Vec<ServiceAccount>>, StoreError> {
        self.accounts
            .lock()
            .map_err(|_| StoreError("service account registry poisoned".into()))
    }
}

impl ServiceAccountStore for MemoryServiceAccounts {
    fn insert(&self, account: ServiceAccount) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = self.locked().map(|mut accounts| {
            let now = now_seconds();
            accounts.retain(|a| a.expires_at > now);
            accounts.push(account);
        });
        Box::pin(std::future::ready(result))
    }

    fn list(&self, now: u64) -> BoxFuture<'_, Result<Vec<ServiceAccount>, StoreError>> {
        let result = self.locked().map(|accounts| {
            accounts
                .iter()
                .filter(|a| a.expires_at > now)
                .cloned()
                .collect()
        });
        Box::pin(std::future::ready(result))
    }

    fn mark_revoked<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>> {
        let result = self.locked().map(|mut accounts| {
            accounts.iter_mut().find(|a| a.id == id).map(|account| {
                let before = account.clone();
                account.revoked = true;
                before
            })
        });
        Box::pin(std::future::ready(result))
    }
}

/// The in-memory [`LoginCodeStore`], bounded: expired codes are purged as
/// shards fill, and a full shard of live codes refuses new ones.
#[derive(Debug)]
pub struct MemoryLoginCodes {
    codes: ShardedMap<LoginCode>,
}

impl Default for MemoryLoginCodes {
    fn default() -> Self {
        MemoryLoginCodes {
            codes: ShardedMap::with_capacity(100_000),
        }
    }
}

impl LoginCodeStore for MemoryLoginCodes {
    fn insert<'a>(
        &'a self,
        code: &'a str,
        login: LoginCode,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.codes.lock(code).and_then(|mut shard| {
            if shard.len() >= self.codes.max_per_shard {
                let now = now_seconds();
                shard.retain(|_, c| c.expires_at > now);
                if shard.len() >= self.codes.max_per_shard {
                    return Err(StoreError("login code store is full".into()));
                }
            }
            shard.insert(code.into(), login);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn take<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<LoginCode>, StoreError>> {
        let result = self.codes.lock(code).map(|mut shard| shard.remove(code));
        Box::pin(std::future::ready(result))
    }
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
pub const DEFAULT_MAX_LOCKOUT_COUNTERS: usize = 100_000;

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
        Self::with_capacity(DEFAULT_MAX_LOCKOUT_COUNTERS)
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

    fn make_room(
        shard: &mut HashMap<Box<str>, Counter, Hasher>,
        max: usize,
        now: u64,
        window: u64,
    ) {
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

    #[test]
    fn a_rotation_is_first_once_and_then_reports_when_it_happened() {
        let store = MemoryRotations::default();
        assert_eq!(store.rotate_now("t", 100, 200), Ok(Rotation::First));
        assert_eq!(
            store.rotate_now("t", 105, 200),
            Ok(Rotation::Repeat { first_at: 100 })
        );
        assert_eq!(
            store.rotate_now("t", 150, 200),
            Ok(Rotation::Repeat { first_at: 100 })
        );
        // Kept until the token would have expired anyway.
        assert_eq!(store.rotate_now("t", 200, 300), Ok(Rotation::First));
    }
}
