//! State that must outlive a request, behind one trait per kind of state:
//! revoked tokens ([`RevocationStore`]), failed-login counters
//! ([`LockoutStore`]) and used TOTP steps ([`OtpReplayGuard`]).
//!
//! A shared store (Redis, feature `redis`) replaces the bounded in-memory
//! defaults ([`MemoryRevocations`], [`MemoryLockoutStore`],
//! [`MemoryOtpReplayGuard`]) when a service runs as several instances.
//! Operations that decide something (revoke-if-new, use-once, count a
//! failure) are atomic: nothing is lost or granted twice under concurrency.
//!
//! The guard side reads only [`RevocationStore`]; the other traits serve the
//! issuer side (`login`, `lockout`, `otp`).

mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;

use serde::Serialize;

use crate::BoxFuture;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreConfig, RedisTopology, Unreachable};
pub use memory::{
    DEFAULT_MAX_LOCKOUT_COUNTERS, DEFAULT_MAX_REVOCATIONS, MemoryLockoutStore,
    MemoryOtpReplayGuard, MemoryRevocations,
};

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

/// When failures lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

impl LockoutPolicy {
    /// With `max_failures` set to `max_failures`.
    pub fn with_max_failures(mut self, max_failures: u32) -> Self {
        self.max_failures = max_failures;
        self
    }

    /// With `lock_seconds` set to `lock_seconds`.
    pub fn with_lock_seconds(mut self, lock_seconds: u64) -> Self {
        self.lock_seconds = lock_seconds;
        self
    }

    /// With `window_seconds` set to `window_seconds`.
    pub fn with_window_seconds(mut self, window_seconds: u64) -> Self {
        self.window_seconds = window_seconds;
        self
    }

    /// With `per_address` set to `per_address`.
    pub fn with_per_address(mut self, per_address: bool) -> Self {
        self.per_address = per_address;
        self
    }
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
#[non_exhaustive]
pub struct FailureRecorded {
    /// Failures counted in the current window.
    pub failures: u32,
    /// When the lock ends, if the account is locked.
    pub locked_until: Option<u64>,
    /// Whether this failure is the one that locked the account.
    pub newly_locked: bool,
}

impl FailureRecorded {
    /// The state after a failure: the failures counted, when the lock ends, and whether this failure locked the account.
    pub fn new(failures: u32, locked_until: Option<u64>, newly_locked: bool) -> Self {
        FailureRecorded {
            failures,
            locked_until,
            newly_locked,
        }
    }
}

/// A locked account, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockedAccount {
    /// The lockout key (the normalised username, with the address when
    /// counting per address).
    pub account: String,
    /// When the lock ends, seconds since the epoch.
    pub locked_until: u64,
    /// Failures counted.
    pub failures: u32,
}

impl LockedAccount {
    /// A locked account, as a store lists it.
    pub fn new(account: String, locked_until: u64, failures: u32) -> Self {
        LockedAccount {
            account,
            locked_until,
            failures,
        }
    }
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
