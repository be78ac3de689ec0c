//! Service accounts (the RegScale API): long-lived tokens an administrator
//! mints for integrations, each with a purpose and a duration, each
//! revocable on its own.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{LoginError, Principal, TokenIssuer};

/// One service-account token, as listed (the token itself is shown once, at
/// creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// The registry of service-account tokens.
#[derive(Clone, Default)]
pub struct ServiceAccounts {
    accounts: Arc<Mutex<Vec<ServiceAccount>>>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts").finish_non_exhaustive()
    }
}

/// The longest a service-account token may live: ten years.
pub const MAX_SERVICE_ACCOUNT_TTL: u64 = 10 * 365 * 86_400;

impl ServiceAccounts {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mints a token for `purpose`, valid `ttl` seconds, carrying `creator`'s
    /// roles. Only administrators (role `admin`) may do this.
    pub fn create(
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
        if purpose.is_empty() || purpose.len() > 200 {
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
        let account = ServiceAccount {
            id: minted.claims.jti.clone(),
            purpose: purpose.to_owned(),
            created_by: creator.username.clone(),
            roles: minted.claims.roles.clone(),
            created_at: minted.claims.iat,
            expires_at: minted.claims.exp,
            revoked: false,
        };
        self.lock()?.push(account.clone());
        Ok((account, minted.token))
    }

    /// Every service account.
    pub fn list(&self) -> Result<Vec<ServiceAccount>, LoginError> {
        Ok(self.lock()?.clone())
    }

    /// Revokes the account `id`; `false` when there is none.
    pub async fn revoke(&self, issuer: &dyn TokenIssuer, id: &str) -> Result<bool, LoginError> {
        let expires_at = {
            let accounts = self.lock()?;
            match accounts.iter().find(|a| a.id == id) {
                Some(account) => account.expires_at,
                None => return Ok(false),
            }
        };
        issuer.revoke_id(id, expires_at).await?;
        if let Some(account) = self.lock()?.iter_mut().find(|a| a.id == id) {
            account.revoked = true;
        }
        Ok(true)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<ServiceAccount>>, LoginError> {
        self.accounts
            .lock()
            .map_err(|_| LoginError::Internal("service account registry poisoned".into()))
    }
}
