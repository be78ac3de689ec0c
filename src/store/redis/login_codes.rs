//! One-time login codes in Redis: `SET key record NX EXAT expires` to
//! record one, `GETDEL` to redeem it, so a code works at most once across
//! every instance.

use redis::RedisResult;

use super::{RedisStore, store_error};
use crate::BoxFuture;
use crate::store::{LoginCode, LoginCodeStore, StoreError};

impl LoginCodeStore for RedisStore {
    fn insert<'a>(
        &'a self,
        code: &'a str,
        login: LoginCode,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let record = serde_json::json!({
                "username": login.username,
                "state": login.state,
                "expires_at": login.expires_at,
            })
            .to_string();
            let mut connection = self.connection_for("insert_login_code");
            let set: RedisResult<Option<String>> = redis::cmd("SET")
                .arg(self.key("login-code", code))
                .arg(record)
                .arg("NX")
                .arg("EXAT")
                .arg(login.expires_at.max(1))
                .query_async(&mut connection)
                .await;
            match set.map_err(|err| store_error(&err))? {
                Some(_) => Ok(()),
                None => Err(StoreError("a login code was issued twice".into())),
            }
        })
    }

    fn take<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<LoginCode>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection_for("take_login_code");
            let key = self.key("login-code", code);
            let taken: RedisResult<Option<String>> = redis::cmd("GETDEL")
                .arg(&key)
                .query_async(&mut connection)
                .await;
            let Some(record) = taken.map_err(|err| store_error(&err))? else {
                return Ok(None);
            };
            #[derive(serde::Deserialize)]
            struct Record {
                username: String,
                state: String,
                expires_at: u64,
            }
            let record: Record = serde_json::from_str(&record)
                .map_err(|err| StoreError(format!("a login code record does not parse: {err}")))?;
            Ok(Some(LoginCode::new(
                record.username,
                record.state,
                record.expires_at,
            )))
        })
    }
}
