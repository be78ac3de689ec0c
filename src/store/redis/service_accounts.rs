//! The service-account registry in Redis: one hash, `PREFIX{service-accounts}`,
//! from each account's id to its record as JSON. Records of expired tokens
//! are dropped as the registry is listed. A write or a revocation that
//! cannot reach Redis fails, whatever the unreachable policy: the caller
//! must know the account is not recorded or not revoked.

use redis::{RedisResult, Script};

use super::{RedisStore, store_error};
use crate::BoxFuture;
use crate::store::{ServiceAccount, ServiceAccountStore, StoreError};

/// Marks the record ARGV[1] of the hash KEYS[1] revoked; returns the record
/// as it was, or nil.
const MARK_REVOKED: &str = r"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
local account = cjson.decode(record)
account['revoked'] = true
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(account))
return record
";

impl RedisStore {
    fn service_accounts_key(&self) -> String {
        self.key("{service-accounts}", "all")
    }
}

fn decode(record: &str) -> Result<ServiceAccount, StoreError> {
    serde_json::from_str(record)
        .map_err(|err| StoreError(format!("a service-account record does not parse: {err}")))
}

impl ServiceAccountStore for RedisStore {
    fn insert(&self, account: ServiceAccount) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let record = serde_json::to_string(&account)
                .map_err(|err| StoreError(format!("service account: {err}")))?;
            let mut connection = self.connection_for("insert_service_account");
            let set: RedisResult<()> = redis::cmd("HSET")
                .arg(self.service_accounts_key())
                .arg(&account.id)
                .arg(record)
                .query_async(&mut connection)
                .await;
            set.map_err(|err| store_error(&err))
        })
    }

    fn list(&self, now: u64) -> BoxFuture<'_, Result<Vec<ServiceAccount>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection_for("list_service_accounts");
            let key = self.service_accounts_key();
            let records: RedisResult<Vec<String>> = redis::cmd("HVALS")
                .arg(&key)
                .query_async(&mut connection)
                .await;
            let records = records.map_err(|err| store_error(&err))?;
            let mut live = Vec::with_capacity(records.len());
            let mut expired = Vec::new();
            for record in &records {
                let account = decode(record)?;
                if account.expires_at > now {
                    live.push(account);
                } else {
                    expired.push(account.id);
                }
            }
            if !expired.is_empty() {
                // Tidying only: a failure leaves the records to the next
                // listing.
                let _: RedisResult<()> = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&expired)
                    .query_async(&mut connection)
                    .await;
            }
            live.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(live)
        })
    }

    fn mark_revoked<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection_for("revoke_service_account");
            let before: RedisResult<Option<String>> = Script::new(MARK_REVOKED)
                .key(self.service_accounts_key())
                .arg(id)
                .invoke_async(&mut connection)
                .await;
            match before.map_err(|err| store_error(&err))? {
                Some(record) => decode(&record).map(Some),
                None => Ok(None),
            }
        })
    }
}
