//! Failed-login lockout (the inSCADA API: "5 failed login attempts → account is
//! locked for 10 minutes").
//!
//! A [`LockoutPolicy`] says how many failures within a counting window lock
//! an account, and for how long. A [`LockoutStore`] keeps the counters with
//! atomic operations (a failure is recorded and the new state learnt in one
//! step, so no count is lost and an account locks exactly once under
//! concurrency). [`Lockout`] puts them together for a
//! [`LoginFlow`](crate::login::LoginFlow), which has [`Lockout::default`]
//! unless given another, and whose presets all count in it: while an
//! account is locked its password is not checked at all, and the answer is
//! the same whether the account exists or not.
//!
//! Time comes from a [`Clock`], so tests never sleep.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::store::{LockedAccount, LockoutStore, MemoryLockoutStore, StoreError};

pub use crate::store::{FailureRecorded, LockoutPolicy};

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
    pub fn with_store(mut self, store: Arc<dyn LockoutStore>) -> Self {
        self.store = store;
        self
    }

    /// With this clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
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

    /// Counts a failure for `key`. The failure that locks the account is
    /// an event (`WARN`) and counts in `authgate_lockouts_total`.
    pub async fn failure(&self, key: &str) -> Result<FailureRecorded, StoreError> {
        let recorded = self
            .store
            .record_failure(key, &self.policy, self.clock.now())
            .await?;
        if recorded.newly_locked {
            crate::observe::count!("authgate_lockouts_total");
            crate::observe::event!(
                warn,
                account = ?key,
                failures = recorded.failures,
                locked_until = recorded.locked_until,
                "account locked"
            );
        }
        Ok(recorded)
    }

    /// Forgets `key`'s failures (after a complete, successful login).
    pub async fn success(&self, key: &str) -> Result<(), StoreError> {
        self.store.reset(key).await
    }

    /// Unlocks `key` (an administrator's decision).
    pub async fn unlock(&self, key: &str) -> Result<(), StoreError> {
        self.store.reset(key).await?;
        crate::observe::event!(info, account = ?key, "account unlocked");
        Ok(())
    }

    /// The accounts locked now. Their number is the gauge
    /// `authgate_locked_accounts`: call this before each scrape, or on a
    /// timer, to keep it current.
    pub async fn locked(&self) -> Result<Vec<LockedAccount>, StoreError> {
        let locked = self.store.list_locked(self.clock.now()).await?;
        crate::observe::gauge!("authgate_locked_accounts", set(locked.len()));
        Ok(locked)
    }

    /// The clock's reading.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}
