//! The issuer side: checking credentials, minting token pairs, refreshing,
//! revoking, service-account tokens and the TOTP second step.
//!
//! - [`Authenticator`] checks credentials ([`MemoryUsers`] keeps argon2
//!   hashes in memory).
//! - [`TokenIssuer`] mints, refreshes (with rotation and reuse detection) and
//!   revokes ([`JwtIssuer`]).
//! - [`LoginFlow`] puts them together with the [`crate::otp::TotpVerifier`]:
//!   a password login either yields the principal or, for accounts with
//!   TOTP, an otp-pending token that the second step exchanges.
//! - [`ServiceAccounts`] keeps the long-lived tokens an administrator mints.
//! - [`ExternalTokenVerifier`] accepts another issuer's tokens as a login
//!   (the datarhei Core API's Auth0 login).
//!
//! The wire formats of the documented APIs are in [`schemes`](crate::schemes).

mod issuer;
mod service_accounts;
mod users;

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;

pub use issuer::{
    AuthClaims, JwtIssuer, Lifetimes, Minted, TokenIssuer, TokenPair, renew_by_refresh,
};
pub use service_accounts::{MAX_SERVICE_ACCOUNT_TTL, ServiceAccount, ServiceAccounts};
pub use users::{Authenticator, MemoryUsers, NewUser, Principal, normalize_username};

use crate::BoxFuture;
use crate::TokenError;
use crate::clock::now_seconds;
use crate::lockout::Lockout;
use crate::otp::{OtpError, TotpVerifier};
use crate::store::StoreError;
use crate::token::{TokenKind, Verifier};

/// Why a login, refresh or logout failed.
///
/// Wrong passwords and unknown users are the same
/// [`InvalidCredentials`](Self::InvalidCredentials): answers never reveal
/// which usernames exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Unknown user or wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A token was refused.
    #[error("{0}")]
    InvalidToken(TokenError),
    /// A used refresh token was presented again; its family is revoked.
    #[error("the refresh token was already used; the session is ended")]
    RefreshReused,
    /// The TOTP code is wrong, malformed or already used.
    #[error("invalid one-time code")]
    InvalidOtp,
    /// The password was right and the account requires a TOTP code, which
    /// the request did not carry.
    #[error("a one-time code is required")]
    OtpRequired,
    /// The account is locked after too many failures; nothing was checked.
    /// The same answer is given for accounts that do not exist.
    #[error("the account is locked; try again later")]
    Locked {
        /// Seconds until the lock ends.
        retry_after: u64,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A store could not be reached; the operation fails closed.
    #[error("{0}")]
    Unavailable(StoreError),
    /// Signing failed (a broken key): not caused by the request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LoginError {
    /// The HTTP status that fits.
    pub fn status(&self) -> StatusCode {
        match self {
            LoginError::InvalidCredentials
            | LoginError::InvalidToken(_)
            | LoginError::RefreshReused
            | LoginError::InvalidOtp
            | LoginError::OtpRequired => StatusCode::UNAUTHORIZED,
            LoginError::Locked { .. } => StatusCode::LOCKED,
            LoginError::Forbidden(_) => StatusCode::FORBIDDEN,
            LoginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            LoginError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds the client should wait before trying again, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LoginError::Locked { retry_after } => Some(*retry_after),
            LoginError::Unavailable(_) => Some(5),
            _ => None,
        }
    }

    /// Text safe to show the client (store and signing details are not).
    pub fn public_message(&self) -> String {
        match self {
            LoginError::Unavailable(_) => "authentication is temporarily unavailable".into(),
            LoginError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

/// What the password step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The user is logged in.
    Authenticated(Principal),
    /// The account requires a TOTP code: exchange this otp-pending token and
    /// a code at the TOTP step.
    TotpRequired(Minted),
}

/// Password login and the TOTP step, over an [`Authenticator`], a
/// [`TokenIssuer`] and a [`TotpVerifier`].
#[derive(Clone)]
pub struct LoginFlow {
    users: Arc<dyn Authenticator>,
    issuer: Arc<dyn TokenIssuer>,
    totp: TotpVerifier,
    lockout: Option<Lockout>,
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow")
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

impl LoginFlow {
    /// A flow over these parts, with the default TOTP verifier.
    pub fn new(users: Arc<dyn Authenticator>, issuer: Arc<dyn TokenIssuer>) -> Self {
        LoginFlow {
            users,
            issuer,
            totp: TotpVerifier::default(),
            lockout: None,
        }
    }

    /// Count failed passwords and codes, and lock accounts per `lockout`.
    pub fn with_lockout(mut self, lockout: Lockout) -> Self {
        self.lockout = Some(lockout);
        self
    }

    /// The lockout in force, if any.
    pub fn lockout(&self) -> Option<&Lockout> {
        self.lockout.as_ref()
    }

    /// The lockout key for `username` from `client`, when lockout is on.
    fn lock_key(&self, username: &str, client: Option<IpAddr>) -> Option<(&Lockout, String)> {
        let lockout = self.lockout.as_ref()?;
        Some((lockout, lockout.key(&normalize_username(username), client)))
    }

    async fn refuse_if_locked(&self, key: &Option<(&Lockout, String)>) -> Result<(), LoginError> {
        if let Some((lockout, key)) = key
            && let Some(retry_after) = lockout
                .retry_after(key)
                .await
                .map_err(LoginError::Unavailable)?
        {
            return Err(LoginError::Locked { retry_after });
        }
        Ok(())
    }

    async fn count_failure(&self, key: &Option<(&Lockout, String)>) -> Result<(), LoginError> {
        if let Some((lockout, key)) = key {
            lockout
                .failure(key)
                .await
                .map_err(LoginError::Unavailable)?;
        }
        Ok(())
    }

    async fn count_success(&self, key: &Option<(&Lockout, String)>) -> Result<(), LoginError> {
        if let Some((lockout, key)) = key {
            lockout
                .success(key)
                .await
                .map_err(LoginError::Unavailable)?;
        }
        Ok(())
    }

    /// With this TOTP verifier.
    pub fn with_totp_verifier(mut self, totp: TotpVerifier) -> Self {
        self.totp = totp;
        self
    }

    /// The TOTP verifier.
    pub fn totp_verifier(&self) -> &TotpVerifier {
        &self.totp
    }

    /// The issuer.
    pub fn issuer(&self) -> &Arc<dyn TokenIssuer> {
        &self.issuer
    }

    /// The authenticator.
    pub fn users(&self) -> &Arc<dyn Authenticator> {
        &self.users
    }

    /// The password step, for a request from `client` (used when lockout
    /// counts per address).
    ///
    /// A locked account is refused before its password is checked; a wrong
    /// password counts a failure; a complete login (no TOTP required)
    /// forgets the failures.
    pub async fn password(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginOutcome, LoginError> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(LoginError::InvalidCredentials);
        }
        let key = self.lock_key(username, client);
        self.refuse_if_locked(&key).await?;
        let principal = match self.users.authenticate(username, password).await {
            Ok(principal) => principal,
            Err(LoginError::InvalidCredentials) => {
                self.count_failure(&key).await?;
                return Err(LoginError::InvalidCredentials);
            }
            Err(other) => return Err(other),
        };
        if principal.totp_secret.is_some() {
            return Ok(LoginOutcome::TotpRequired(
                self.issuer.issue_otp_pending(&principal)?,
            ));
        }
        self.count_success(&key).await?;
        Ok(LoginOutcome::Authenticated(principal))
    }

    /// The TOTP step, for a request from `client`: an otp-pending token and
    /// a code give the principal. The pending token is single-use; a wrong
    /// code counts toward the lockout.
    pub async fn totp(
        &self,
        pending_token: &str,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, LoginError> {
        let claims = self
            .issuer
            .verify(pending_token, &[TokenKind::OtpPending])
            .await?;
        let key = self.lock_key(&claims.sub, client);
        self.refuse_if_locked(&key).await?;
        let principal = self
            .users
            .find(&claims.sub)
            .await
            .ok_or(LoginError::InvalidToken(TokenError::Revoked))?;
        let secret = principal
            .totp_secret
            .as_deref()
            .ok_or(LoginError::InvalidOtp)?;
        let account = normalize_username(&principal.username);
        match self.totp.check(&account, secret, code, now_seconds()).await {
            Ok(()) => {}
            Err(OtpError::InvalidCode) => {
                self.count_failure(&key).await?;
                return Err(LoginError::InvalidOtp);
            }
            Err(OtpError::Unavailable(err)) => return Err(LoginError::Unavailable(err)),
            Err(err) => return Err(LoginError::Internal(err.to_string())),
        }
        self.issuer.revoke_id(&claims.jti, claims.exp).await?;
        self.count_success(&key).await?;
        Ok(principal)
    }
}

/// Accepts a token minted by another issuer (an identity provider) as a
/// login, and names the local user it stands for.
pub trait ExternalTokenVerifier: Send + Sync + 'static {
    /// The local username for `token`, or an error.
    fn verify_external<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, LoginError>>;
}

/// An [`ExternalTokenVerifier`] over a [`Verifier`] (configured with the
/// provider's keys, issuer and audience) and a list of allowed subjects.
#[derive(Debug, Clone)]
pub struct AllowedSubjects {
    verifier: Verifier,
    allowed: Vec<String>,
}

impl AllowedSubjects {
    /// Tokens verified by `verifier` whose `sub` is in `allowed`. Build the
    /// verifier with [`any_kind`](crate::token::VerifierBuilder::any_kind):
    /// identity providers do not mark token kinds.
    pub fn new<I, S>(verifier: Verifier, allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AllowedSubjects {
            verifier,
            allowed: allowed.into_iter().map(Into::into).collect(),
        }
    }
}

impl ExternalTokenVerifier for AllowedSubjects {
    fn verify_external<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, LoginError>> {
        Box::pin(async move {
            let verified = self
                .verifier
                .verify_refreshing::<serde_json::Value>(token)
                .await
                .map_err(|err| match err {
                    TokenError::KeysUnavailable => LoginError::Unavailable(StoreError(
                        "the identity provider's keys are unavailable".into(),
                    )),
                    err => LoginError::InvalidToken(err),
                })?;
            let subject = verified
                .meta
                .subject
                .ok_or(LoginError::InvalidToken(TokenError::MissingClaim("sub")))?;
            if !self.allowed.contains(&subject) {
                return Err(LoginError::Forbidden("this user may not log in here"));
            }
            Ok(subject)
        })
    }
}
