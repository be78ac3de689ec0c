//! Service accounts (the RegScale API): long-lived tokens an administrator
//! mints for integrations, each with a purpose and a duration, each
//! revocable on its own, listed and revocable for as long as they live.

use std::sync::Arc;

use crate::clock::now_seconds;
use crate::store::{MemoryServiceAccounts, ServiceAccount, ServiceAccountStore};

use super::{LoginError, Principal, TokenIssuer};

/// The registry of service-account tokens, over a
/// [`ServiceAccountStore`]: in memory by default, or a shared, persistent
/// one (Redis) so that listing and revocation survive restarts and are the
/// same on every instance.
#[derive(Clone)]
pub struct ServiceAccounts {
    store: Arc<dyn ServiceAccountStore>,
}

impl Default for ServiceAccounts {
    fn default() -> Self {
        ServiceAccounts::new(Arc::new(MemoryServiceAccounts::default()))
    }
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts").finish_non_exhaustive()
    }
}

/// The longest a service-account token may live: ten years.
pub const MAX_SERVICE_ACCOUNT_TTL: u64 = 10 * 365 * 86_400;

impl ServiceAccounts {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn ServiceAccountStore>) -> Self {
        ServiceAccounts { store }
    }

    /// Mints a token for `purpose`, valid `ttl` seconds, carrying `creator`'s
    /// roles and scopes, and records it. Only administrators (role `admin`)
    /// may do this. A token whose record cannot be written is revoked at
    /// once and the creation fails: no token lives that cannot be listed.
    pub async fn create(
        &self,
        issuer: &dyn TokenIssuer,
        creator: &Principal,
        purpose: &str,
        ttl: u64,
    ) -> Result<(ServiceAccount, String), LoginError> {
        self.mint(issuer, creator, purpose, ttl).await
    }

    /// As [`create`](Self::create), with only `scopes` of the creator's
    /// scopes (the roles are still the creator's): a scope the creator does
    /// not hold is refused (`403`), so a service account never exceeds the
    /// account that made it.
    pub async fn create_with_scopes<I, S>(
        &self,
        issuer: &dyn TokenIssuer,
        creator: &Principal,
        purpose: &str,
        ttl: u64,
        scopes: I,
    ) -> Result<(ServiceAccount, String), LoginError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut narrowed = Vec::new();
        for scope in scopes {
            let scope = scope.as_ref();
            if !creator.has_scope(scope) {
                return Err(LoginError::Forbidden(
                    "a service account cannot carry a scope its creator lacks",
                ));
            }
            if !narrowed.iter().any(|s| s == scope) {
                narrowed.push(scope.to_owned());
            }
        }
        let mut creator = creator.clone();
        creator.scopes = narrowed;
        self.mint(issuer, &creator, purpose, ttl).await
    }

    async fn mint(
        &self,
        issuer: &dyn TokenIssuer,
        creator: &Principal,
        purpose: &str,
        ttl: u64,
    ) -> Result<(ServiceAccount, String), LoginError> {
        if !creator.has_role("admin") {
            return Err(LoginError::Forbidden(
                "only administrators create service accounts",
            ));
        }
        let purpose = purpose.trim();
        if purpose.is_empty() || purpose.chars().count() > 200 {
            return Err(LoginError::BadRequest(
                "purpose must be 1 to 200 characters".into(),
            ));
        }
        if ttl == 0 || ttl > MAX_SERVICE_ACCOUNT_TTL {
            return Err(LoginError::BadRequest(format!(
                "duration must be 1 to {MAX_SERVICE_ACCOUNT_TTL} seconds"
            )));
        }
        let minted = issuer.issue_service_account(creator, purpose, ttl)?;
        let account = ServiceAccount::new(
            minted.claims.jti.clone(),
            purpose.to_owned(),
            creator.username.clone(),
            minted.claims.roles.clone(),
            minted.claims.iat,
            minted.claims.exp,
        )
        .with_scopes(minted.claims.scopes().map(str::to_owned).collect());
        if let Err(err) = self.store.insert(account.clone()).await {
            issuer.revoke_id(&account.id, account.expires_at).await?;
            return Err(LoginError::Unavailable(err));
        }
        crate::observe::event!(
            info,
            id = %account.id,
            purpose = ?account.purpose,
            creator = ?account.created_by,
            expires_at = account.expires_at,
            "service account created"
        );
        Ok((account, minted.token))
    }

    /// Every service account whose token has not expired.
    pub async fn list(&self) -> Result<Vec<ServiceAccount>, LoginError> {
        self.store
            .list(now_seconds())
            .await
            .map_err(LoginError::Unavailable)
    }

    /// Revokes the account `id`; `false` when there is none. The token is
    /// revoked first, then marked so in the registry: a registry never
    /// shows revoked a token that still works.
    pub async fn revoke(&self, issuer: &dyn TokenIssuer, id: &str) -> Result<bool, LoginError> {
        let accounts = self.list().await?;
        let Some(account) = accounts.iter().find(|a| a.id == id) else {
            return Ok(false);
        };
        issuer.revoke_id(id, account.expires_at).await?;
        self.store
            .mark_revoked(id)
            .await
            .map_err(LoginError::Unavailable)?;
        crate::observe::event!(info, id = %id, purpose = ?account.purpose, "service account revoked");
        Ok(true)
    }
}
