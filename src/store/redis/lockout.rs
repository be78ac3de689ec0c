//! Lockout counters in Redis: one hash per account and a sorted set of the
//! locked accounts, updated together by a Lua script. Both carry the hash
//! tag `{lockout}`, so the script runs on a cluster (all lockout keys live
//! in one slot: logins are rare next to guarded requests).

use redis::{RedisResult, Script};

use super::RedisStore;
use crate::BoxFuture;
use crate::store::{FailureRecorded, LockedAccount, LockoutPolicy, LockoutStore, StoreError};

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
    /// `PREFIX{lockout}:failures:ACCOUNT`: the account's counter hash.
    fn failures_key(&self, account: &str) -> String {
        self.key("{lockout}", &format!("failures:{account}"))
    }

    /// `PREFIX{lockout}:locked`: the locked accounts, scored by the end of
    /// their lock.
    fn locked_key(&self) -> String {
        self.key("{lockout}", "locked")
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
            let mut connection = self.connection_for("record_failure");
            let result: RedisResult<(u32, u64, u8)> = Script::new(RECORD_FAILURE)
                .key(self.failures_key(key))
                .key(self.locked_key())
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
            let mut connection = self.connection_for("locked_until");
            let result: RedisResult<Option<u64>> = redis::cmd("HGET")
                .arg(self.failures_key(key))
                .arg("locked_until")
                .query_async(&mut connection)
                .await;
            let until = self.settle(result, None)?;
            Ok(until.filter(|until| *until > now))
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection_for("reset_failures");
            let result: RedisResult<()> = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(self.failures_key(key))
                .ignore()
                .cmd("ZREM")
                .arg(self.locked_key())
                .arg(key)
                .ignore()
                .query_async(&mut connection)
                .await;
            self.settle(result, ())
        })
    }

    fn list_locked(&self, now: u64) -> BoxFuture<'_, Result<Vec<LockedAccount>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection_for("list_locked");
            let index = self.locked_key();
            let locked: RedisResult<(Vec<(String, u64)>,)> = redis::pipe()
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
                .await;
            let (locked,) = self.settle(locked, (Vec::new(),))?;
            let mut accounts = Vec::with_capacity(locked.len());
            for (account, locked_until) in locked {
                let failures: RedisResult<Option<u32>> = redis::cmd("HGET")
                    .arg(self.failures_key(&account))
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
