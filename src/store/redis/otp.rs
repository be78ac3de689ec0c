//! Used TOTP steps in Redis: `SET key 1 NX EXAT until`, one key per account
//! and step.

use super::RedisStore;
use crate::BoxFuture;
use crate::store::{OtpReplayGuard, StoreError};

impl OtpReplayGuard for RedisStore {
    fn use_step(
        &self,
        account: &str,
        step: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.key("otp", &format!("{account}:{step}"));
        Box::pin(async move {
            let mut connection = self.connection_for("use_otp_step");
            let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("EXAT")
                .arg(until.max(1))
                .query_async(&mut connection)
                .await;
            // Fail open treats the step as unused.
            self.settle(set.map(|set| set.is_some()), true)
        })
    }
}
