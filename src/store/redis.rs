//! Redis stores (feature `redis`): revocations, lockout counters and used
//! TOTP steps shared by every instance of a service.
//!
//! Every operation is atomic on the server (`SET … NX`, or a Lua script for
//! the lockout counter), every key carries an expiry so nothing outlives its
//! purpose, and every key starts with a configurable prefix. The connection
//! is a multiplexed [`ConnectionManager`] that reconnects by itself.
//!
//! When Redis cannot be reached the configured [`Unreachable`] policy holds:
//! by default the store fails closed (a [`StoreError`]: logins answer `503`,
//! and no token is accepted whose revocation status cannot be checked).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use crate::BoxFuture;
use crate::store::{
    FailureRecorded, LockedAccount, LockoutPolicy, LockoutStore, OtpReplayGuard, RevocationCheck,
    RevocationStore, StoreError,
};

/// What a Redis store does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unreachable {
    /// Refuse: revocation checks and lockout operations fail with a
    /// [`StoreError`] (the default).
    #[default]
    FailClosed,
    /// Carry on as if the store were empty: tokens count as not revoked,
    /// accounts as not locked, TOTP steps as unused, failures go uncounted.
    /// Only by explicit choice.
    FailOpen,
}

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// Prefix of every key (default `"authgate:"`).
    pub prefix: String,
    /// What to do when Redis cannot be reached.
    pub unreachable: Unreachable,
    /// How long to wait for a connection (default 1 s).
    pub connection_timeout: Duration,
    /// How long to wait for an answer (default 1 s).
    pub response_timeout: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig {
            prefix: "authgate:".into(),
            unreachable: Unreachable::FailClosed,
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        }
    }
}

/// One Redis connection serving as [`RevocationStore`], [`LockoutStore`] and
/// [`OtpReplayGuard`]. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    config: std::sync::Arc<RedisStoreConfig>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Records a failure and returns `{failures, locked_until (0 = none),
/// newly_locked}`. KEYS[1]: the counter hash; KEYS[2]: the sorted set of
/// locked accounts. ARGV: now, max failures, lock seconds, window seconds,
/// the account name.
const RECORD_FAILURE: &str = r"
local now = tonumber(ARGV[1])
local max_failures = tonumber(ARGV[2])
local lock_seconds = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'locked_until')
local failures = tonumber(state[1]) or 0
local window_start = tonumber(state[2]) or now
local locked_until = tonumber(state[3]) or 0
if locked_until > now then
  failures = failures + 1
  redis.call('HSET', KEYS[1], 'failures', failures, 'last_failure', now)
  return {failures, locked_until, 0}
end
if locked_until > 0 or window_start + window <= now then
  failures = 0
  window_start = now
  locked_until = 0
end
failures = failures + 1
local newly = 0
if failures >= max_failures then
  locked_until = now + lock_seconds
  newly = 1
  redis.call('ZADD', KEYS[2], locked_until, ARGV[5])
end
redis.call('HSET', KEYS[1], 'failures', failures, 'window_start', window_start,
  'last_failure', now, 'locked_until', locked_until)
local expire_at = window_start + window
if locked_until > expire_at then expire_at = locked_until end
redis.call('EXPIREAT', KEYS[1], expire_at)
return {failures, locked_until, newly}
";

impl RedisStore {
    /// A store on `url` (`redis://127.0.0.1:6379`). The connection is made
    /// lazily, so a service can start while Redis is down; it reconnects by
    /// itself when Redis returns. Call it inside a Tokio runtime (the
    /// connection runs on it); outside one it returns an error.
    pub fn open(url: &str, config: RedisStoreConfig) -> Result<Self, StoreError> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError("RedisStore::open must be called inside a Tokio runtime".into())
        })?;
        let client = Client::open(url).map_err(|e| StoreError(format!("redis: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StoreError(format!("redis: {e}")))?;
        Ok(RedisStore {
            connection,
            config: std::sync::Arc::new(config),
        })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.config.prefix)
    }

    /// Applies the [`Unreachable`] policy to a Redis answer.
    fn settle<T>(&self, result: redis::RedisResult<T>, open_value: T) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(_) if self.config.unreachable == Unreachable::FailOpen => Ok(open_value),
            Err(err) => Err(StoreError(format!("redis: {err}"))),
        }
    }

    /// `SET key 1 NX EXAT until`: whether this call set it.
    async fn set_once(&self, key: &str, until: u64) -> redis::RedisResult<bool> {
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(until.max(1))
            .query_async(&mut connection)
            .await?;
        Ok(set.is_some())
    }
}

impl RevocationStore for RedisStore {
    fn revoke(&self, id: &str, until: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.key("revoked", id);
        Box::pin(async move {
            // A failed revocation is never reported as done, whatever the
            // policy: the caller must know the token still works.
            self.set_once(&key, until)
                .await
                .map_err(|e| StoreError(format!("redis: {e}")))
        })
    }

    fn check(&self, id: &str, family: Option<&str>) -> RevocationCheck {
        let mut keys = vec![self.key("revoked", id)];
        if let Some(family) = family {
            keys.push(self.key("revoked", family));
        }
        let store = self.clone();
        RevocationCheck::Pending(Box::pin(async move {
            let mut connection = store.connection.clone();
            let result: redis::RedisResult<u64> = redis::cmd("EXISTS")
                .arg(&keys)
                .query_async(&mut connection)
                .await;
            store.settle(result.map(|count| count > 0), false)
        }))
    }
}

impl OtpReplayGuard for RedisStore {
    fn use_step(
        &self,
        account: &str,
        step: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.key("otp", &format!("{account}:{step}"));
        Box::pin(async move {
            let result = self.set_once(&key, until).await;
            // Fail open treats the step as unused.
            self.settle(result, true)
        })
    }
}

impl LockoutStore for RedisStore {
    fn record_failure<'a>(
        &'a self,
        key: &'a str,
        policy: &'a LockoutPolicy,
        now: u64,
    ) -> BoxFuture<'a, Result<FailureRecorded, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let result: redis::RedisResult<(u32, u64, u8)> = Script::new(RECORD_FAILURE)
                .key(self.key("lockout", key))
                .key(self.key("locked", "index"))
                .arg(now)
                .arg(policy.max_failures)
                .arg(policy.lock_seconds)
                .arg(policy.window_seconds)
                .arg(key)
                .invoke_async(&mut connection)
                .await;
            let recorded = self.settle(result, (0, 0, 0))?;
            Ok(FailureRecorded {
                failures: recorded.0,
                locked_until: (recorded.1 > 0).then_some(recorded.1),
                newly_locked: recorded.2 == 1,
            })
        })
    }

    fn locked_until<'a>(
        &'a self,
        key: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let result: redis::RedisResult<Option<u64>> = redis::cmd("HGET")
                .arg(self.key("lockout", key))
                .arg("locked_until")
                .query_async(&mut connection)
                .await;
            let until = self.settle(result, None)?;
            Ok(until.filter(|until| *until > now))
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let result: redis::RedisResult<()> = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(self.key("lockout", key))
                .ignore()
                .cmd("ZREM")
                .arg(self.key("locked", "index"))
                .arg(key)
                .ignore()
                .query_async(&mut connection)
                .await;
            self.settle(result, ())
        })
    }

    fn list_locked(&self, now: u64) -> BoxFuture<'_, Result<Vec<LockedAccount>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let index = self.key("locked", "index");
            let cleaned: redis::RedisResult<((), Vec<(String, u64)>)> = redis::pipe()
                .atomic()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(now)
                .ignore()
                .cmd("ZRANGE")
                .arg(&index)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await
                .map(|(locked,): (Vec<(String, u64)>,)| ((), locked));
            let (_, locked) = self.settle(cleaned, ((), Vec::new()))?;
            let mut accounts = Vec::with_capacity(locked.len());
            for (account, locked_until) in locked {
                let failures: redis::RedisResult<Option<u32>> = redis::cmd("HGET")
                    .arg(self.key("lockout", &account))
                    .arg("failures")
                    .query_async(&mut connection)
                    .await;
                let failures = self.settle(failures, None)?.unwrap_or(0);
                accounts.push(LockedAccount {
                    account,
                    locked_until,
                    failures,
                });
            }
            accounts.sort_by(|a, b| a.account.cmp(&b.account));
            Ok(accounts)
        })
    }
}
