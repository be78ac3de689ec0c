//! State that must outlive a request, behind one trait per kind of state:
//! revoked tokens and subjects signed out everywhere ([`RevocationStore`]), failed-login counters
//! ([`LockoutStore`]), used TOTP steps ([`OtpReplayGuard`]), rotated refresh
//! tokens ([`RotationStore`]), service accounts ([`ServiceAccountStore`])
//! and one-time login codes ([`LoginCodeStore`]).
//!
//! A shared store (Redis, feature `redis`) replaces the bounded in-memory
//! defaults ([`MemoryRevocations`], [`MemoryLockoutStore`],
//! [`MemoryOtpReplayGuard`], [`MemoryRotations`],
//! [`MemoryServiceAccounts`], [`MemoryLoginCodes`]) when a service runs as
//! several instances or must keep its state across restarts.
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
    DEFAULT_MAX_LOCKOUT_COUNTERS, DEFAULT_MAX_REVOCATIONS, MemoryLockoutStore, MemoryLoginCodes,
    MemoryOtpReplayGuard, MemoryRevocations, MemoryRotations, MemoryServiceAccounts,
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

    /// Signs `subject` out everywhere: every token of that subject issued
    /// (`iat`) at or before `cut_off` (seconds since the epoch) is refused,
    /// whatever its id, family or kind, until `until`, which must be when
    /// the longest-lived of those tokens would have expired anyway (the
    /// store may forget the cut-off after it, or keep it). A later
    /// call moves the cut-off and `until` forward, never back; the change is
    /// atomic and, in a shared store, seen by every instance.
    fn revoke_subject(
        &self,
        subject: &str,
        cut_off: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether the token of `subject` issued at `issued_at` is cut off by
    /// [`revoke_subject`](Self::revoke_subject) (a token without `iat` is
    /// checked as issued at `0`, so any cut-off refuses it).
    fn check_subject(&self, subject: &str, issued_at: u64) -> RevocationCheck;
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

/// What a refresh token's rotation found: the token's first use, or a
/// repeat of a rotation done at `first_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// This call used the token up.
    First,
    /// The token was used up before, at `first_at` (seconds since the
    /// epoch).
    Repeat {
        /// When the first rotation happened.
        first_at: u64,
    },
}

/// Refresh tokens used up by rotation, each kept until it would have
/// expired, with the time of its first use (for the reuse grace window).
pub trait RotationStore: Send + Sync + 'static {
    /// Records that `token_id` is used at `now`, kept until `until`:
    /// [`Rotation::First`] when this call is the first use, else the time of
    /// the first, in one atomic step.
    fn rotate(
        &self,
        token_id: &str,
        now: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>>;
}

/// A service-account token as its registry keeps it (the token itself is
/// shown once, at creation, and never kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceAccount {
    /// The token's id (its `jti`).
    pub id: String,
    /// What it is for.
    pub purpose: String,
    /// Who minted it.
    pub created_by: String,
    /// The roles it carries (its creator's).
    pub roles: Vec<String>,
    /// The scopes it carries (its creator's, or fewer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// Whether it has been revoked.
    pub revoked: bool,
}

impl ServiceAccount {
    /// A live service account.
    pub fn new(
        id: String,
        purpose: String,
        created_by: String,
        roles: Vec<String>,
        created_at: u64,
        expires_at: u64,
    ) -> Self {
        ServiceAccount {
            id,
            purpose,
            created_by,
            roles,
            scopes: Vec::new(),
            created_at,
            expires_at,
            revoked: false,
        }
    }

    /// With these scopes.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }
}

/// The registry of service-account tokens: what a service must be able to
/// list and revoke for as long as the tokens live, across restarts and
/// instances.
pub trait ServiceAccountStore: Send + Sync + 'static {
    /// Records a new account.
    fn insert(&self, account: ServiceAccount) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every account not yet expired at `now`, revoked or not.
    fn list(&self, now: u64) -> BoxFuture<'_, Result<Vec<ServiceAccount>, StoreError>>;

    /// Marks `id` revoked; the account as it was before, or `None` when
    /// there is none.
    fn mark_revoked<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>>;
}

/// A one-time login code, bound to the `state` of the login it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginCode {
    /// The account the code logs in.
    pub username: String,
    /// The `state` the code is bound to.
    pub state: String,
    /// When the code stops working, seconds since the epoch.
    pub expires_at: u64,
}

impl LoginCode {
    /// A code for `username`, bound to `state`, valid until `expires_at`.
    pub fn new(username: String, state: String, expires_at: u64) -> Self {
        LoginCode {
            username,
            state,
            expires_at,
        }
    }
}

/// One-time login codes (the Scailable / Nx code login): each is redeemed
/// at most once, atomically.
pub trait LoginCodeStore: Send + Sync + 'static {
    /// Records `code`.
    fn insert<'a>(
        &'a self,
        code: &'a str,
        login: LoginCode,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Takes `code` out of the store, whatever it is bound to: it never
    /// works twice. `None` when there is no such code.
    fn take<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<LoginCode>, StoreError>>;
}
