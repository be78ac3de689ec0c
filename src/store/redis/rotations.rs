//! Rotated refresh tokens in Redis: one key per used token, holding the
//! time of its first use, set by a script that reads and sets in one step.

use redis::{RedisResult, Script};

use super::RedisStore;
use crate::BoxFuture;
use crate::store::{Rotation, RotationStore, StoreError};

/// KEYS[1]: the token's key; ARGV: now, until. Returns -1 when this call
/// recorded the first use, else the time of the first use.
const ROTATE: &str = r"
local first = redis.call('GET', KEYS[1])
if first then return tonumber(first) end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
return -1
";

impl RotationStore for RedisStore {
    fn rotate(
        &self,
        token_id: &str,
        now: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        let key = self.key("rotated", token_id);
        Box::pin(async move {
            let mut connection = self.connection_for("rotate_refresh");
            let first: RedisResult<i64> = Script::new(ROTATE)
                .key(key)
                .arg(now)
                .arg(until.max(now + 1))
                .invoke_async(&mut connection)
                .await;
            // Fail open counts the use as the first.
            Ok(match self.settle(first, -1)? {
                first if first < 0 => Rotation::First,
                first => Rotation::Repeat {
                    first_at: first.unsigned_abs(),
                },
            })
        })
    }
}
