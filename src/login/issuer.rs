//! Minting, refreshing and revoking tokens.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::BoxFuture;
use crate::auth::{RenewAccess, RenewalError, RenewedAccess};
use crate::clock::now_seconds;
use crate::error::ConfigError;
use crate::store::{MemoryRevocations, RevocationCheck, RevocationStore};
use crate::tenant::HasSpaces;
use crate::token::{KeySet, SigningKey, TokenKind, Verifier};

use super::{LoginError, Principal};

/// The claims of every token this crate mints.
///
/// `sub`, `iss`, `iat`, `exp`, `exi` (seconds of validity), `jti` and
/// `usefor` are exactly the claims of the datarhei Core API's sample tokens; `fam`
/// ties the tokens of one login together; `spaces` and `roles` carry the
/// principal's grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthClaims {
    /// Seconds of validity (`exp - iat`).
    pub exi: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// Issuer.
    pub iss: String,
    /// Unique token id.
    pub jti: String,
    /// The username.
    pub sub: String,
    /// What the token is for.
    pub usefor: TokenKind,
    /// The user id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The login session (token family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
    /// Spaces granted, the first being the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spaces: Vec<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// A service-account token's stated purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl AuthClaims {
    /// The principal these claims stand for (no TOTP secret: a token never
    /// carries one).
    pub fn principal(&self) -> Principal {
        Principal {
            id: self.uid.clone(),
            username: self.sub.clone(),
            spaces: self.spaces.clone(),
            roles: self.roles.clone(),
            totp_secret: None,
        }
    }
}

impl HasSpaces for AuthClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

/// A freshly minted token with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Minted {
    /// The compact JWT.
    pub token: String,
    /// What it says.
    pub claims: AuthClaims,
}

impl Minted {
    /// A minted token and its claims.
    pub fn new(token: String, claims: AuthClaims) -> Self {
        Minted { token, claims }
    }
}

/// An access token and, where the flow has one, a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenPair {
    /// The access token.
    pub access: Minted,
    /// The refresh token.
    pub refresh: Option<Minted>,
}

impl TokenPair {
    /// An access token and, where the flow has one, a refresh token.
    pub fn new(access: Minted, refresh: Option<Minted>) -> Self {
        TokenPair { access, refresh }
    }
}

/// Mints, refreshes and revokes tokens.
///
/// An issuer also renews access cookies for the guard side
/// ([`RenewAccess`], what [`CookieRenewal`](crate::auth::CookieRenewal)
/// needs): implement it with [`renew_by_refresh`], a refresh that does not
/// rotate.
pub trait TokenIssuer: RenewAccess {
    /// An access/refresh pair for a fresh login. `refresh_ttl` overrides the
    /// default refresh lifetime (for "keep me logged in").
    fn issue_pair(
        &self,
        principal: &Principal,
        refresh_ttl: Option<u64>,
    ) -> Result<TokenPair, LoginError>;

    /// An access token only, with its own lifetime (the RegScale API's 24-hour
    /// `auth_token`, the Workflow API's `X-Auth-Token`).
    fn issue_access(&self, principal: &Principal, ttl: u64) -> Result<Minted, LoginError>;

    /// A short-lived otp-pending token: the password step succeeded and a
    /// TOTP code is awaited.
    fn issue_otp_pending(&self, principal: &Principal) -> Result<Minted, LoginError>;

    /// A service-account token minted by `creator`, carrying the creator's
    /// roles and spaces, valid for `ttl` seconds.
    fn issue_service_account(
        &self,
        creator: &Principal,
        purpose: &str,
        ttl: u64,
    ) -> Result<Minted, LoginError>;

    /// Verifies a token of one of `kinds` minted by this issuer, including
    /// its revocation status.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        kinds: &'a [TokenKind],
    ) -> BoxFuture<'a, Result<AuthClaims, LoginError>>;

    /// A new access token from a refresh token. With `rotate`, the refresh
    /// token is used up and a new one returned; presenting a used refresh
    /// token again revokes its whole family (reuse detection).
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        rotate: bool,
    ) -> BoxFuture<'a, Result<TokenPair, LoginError>>;

    /// Revokes the token and its family.
    fn revoke<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), LoginError>>;

    /// Revokes one token id until `until`.
    fn revoke_id<'a>(&'a self, id: &'a str, until: u64) -> BoxFuture<'a, Result<(), LoginError>>;

    /// The store of revocations, for layers that must consult it.
    fn revocations(&self) -> Arc<dyn RevocationStore>;

    /// A verifier for this issuer's access (and service-account) tokens.
    fn access_verifier(&self) -> Verifier;
}

/// Renews an access token through `issuer`'s [`refresh`](TokenIssuer::refresh)
/// without rotating the refresh token: the [`RenewAccess`] of every
/// [`TokenIssuer`].
pub fn renew_by_refresh<'a, I: TokenIssuer + ?Sized>(
    issuer: &'a I,
    refresh_token: &'a str,
) -> BoxFuture<'a, Result<RenewedAccess, RenewalError>> {
    Box::pin(async move {
        match issuer.refresh(refresh_token, false).await {
            Ok(pair) => Ok(RenewedAccess {
                lifetime: pair.access.claims.exi,
                token: pair.access.token,
            }),
            Err(LoginError::Unavailable(_)) => Err(RenewalError::Unavailable),
            Err(_) => Err(RenewalError::Refused),
        }
    })
}

/// The default lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifetimes {
    /// Access tokens.
    pub access: u64,
    /// Refresh tokens.
    pub refresh: u64,
    /// Otp-pending tokens.
    pub otp_pending: u64,
}

impl Lifetimes {
    /// With `access` set to `access`.
    pub fn with_access(mut self, access: u64) -> Self {
        self.access = access;
        self
    }

    /// With `refresh` set to `refresh`.
    pub fn with_refresh(mut self, refresh: u64) -> Self {
        self.refresh = refresh;
        self
    }

    /// With `otp_pending` set to `otp_pending`.
    pub fn with_otp_pending(mut self, otp_pending: u64) -> Self {
        self.otp_pending = otp_pending;
        self
    }
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            access: 600,
            refresh: 86_400,
            otp_pending: 300,
        }
    }
}

/// The JWT [`TokenIssuer`]: signs with one [`SigningKey`] and keeps
/// revocations in a [`RevocationStore`].
#[derive(Clone)]
pub struct JwtIssuer {
    key: SigningKey,
    issuer: String,
    lifetimes: Lifetimes,
    revocations: Arc<dyn RevocationStore>,
    /// Every kind this issuer mints, for its own endpoints (refresh, TOTP
    /// step, revocation), which check the kind they expect themselves.
    verifier: Verifier,
    /// Access and service-account tokens only, for API routes.
    access_verifier: Verifier,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    /// An issuer that signs with `key` and writes `issuer` into `iss`, with
    /// default lifetimes and an in-memory revocation store.
    pub fn new(key: SigningKey, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        let verifier = Verifier::builder(KeySet::single(key.verifying_key()))
            .issuer(issuer.clone())
            .accept_kinds(TokenKind::ALL)
            .build()?;
        let access_verifier = verifier
            .to_builder()
            .accept_kinds([TokenKind::Access, TokenKind::ServiceAccount])
            .build()?;
        Ok(JwtIssuer {
            key,
            issuer,
            lifetimes: Lifetimes::default(),
            revocations: Arc::new(MemoryRevocations::default()),
            verifier,
            access_verifier,
        })
    }

    /// With these lifetimes.
    pub fn with_lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    /// With this revocation store (share one store between the issuers and
    /// instances that must see each other's revocations).
    pub fn with_revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocations = store;
        self
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The lifetimes in force.
    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    fn mint(
        &self,
        principal: &Principal,
        kind: TokenKind,
        ttl: u64,
        family: Option<String>,
        purpose: Option<String>,
    ) -> Result<Minted, LoginError> {
        let now = now_seconds();
        let claims = AuthClaims {
            exi: ttl,
            exp: now + ttl,
            iat: now,
            iss: self.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: principal.username.clone(),
            usefor: kind,
            uid: principal.id.clone(),
            fam: family,
            spaces: principal.spaces.clone(),
            roles: principal.roles.clone(),
            purpose,
        };
        let token = self
            .key
            .sign(&claims)
            .map_err(|e| LoginError::Internal(e.to_string()))?;
        Ok(Minted { token, claims })
    }

    /// Signature, registered claims and kind; no revocation check.
    fn verify_signed(&self, token: &str, kinds: &[TokenKind]) -> Result<AuthClaims, LoginError> {
        let verified = self
            .verifier
            .verify::<AuthClaims>(token)
            .map_err(LoginError::InvalidToken)?;
        if !kinds.contains(&verified.claims.usefor) {
            return Err(LoginError::InvalidToken(crate::TokenError::WrongKind));
        }
        Ok(verified.claims)
    }

    /// Revokes the login session `claims` belong to, for as long as any of
    /// its tokens could still be valid.
    async fn revoke_family(&self, claims: &AuthClaims) -> Result<(), LoginError> {
        let Some(family) = &claims.fam else {
            return Ok(());
        };
        let until = now_seconds() + self.lifetimes.refresh.max(claims.exi);
        self.revocations
            .revoke(family, until)
            .await
            .map(|_| ())
            .map_err(LoginError::Unavailable)
    }

    async fn check_revoked(&self, id: &str, family: Option<&str>) -> Result<(), LoginError> {
        let revoked = match self.revocations.check(id, family) {
            RevocationCheck::Ready(answer) => answer,
            RevocationCheck::Pending(future) => future.await,
        };
        match revoked {
            Ok(false) => Ok(()),
            Ok(true) => Err(LoginError::InvalidToken(crate::TokenError::Revoked)),
            Err(err) => Err(LoginError::Unavailable(err)),
        }
    }
}

impl RenewAccess for JwtIssuer {
    fn renew_access<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<RenewedAccess, RenewalError>> {
        renew_by_refresh(self, refresh_token)
    }
}

impl TokenIssuer for JwtIssuer {
    fn issue_pair(
        &self,
        principal: &Principal,
        refresh_ttl: Option<u64>,
    ) -> Result<TokenPair, LoginError> {
        let family = Some(uuid::Uuid::new_v4().to_string());
        let access = self.mint(
            principal,
            TokenKind::Access,
            self.lifetimes.access,
            family.clone(),
            None,
        )?;
        let refresh = self.mint(
            principal,
            TokenKind::Refresh,
            refresh_ttl.unwrap_or(self.lifetimes.refresh),
            family,
            None,
        )?;
        Ok(TokenPair {
            access,
            refresh: Some(refresh),
        })
    }

    fn issue_access(&self, principal: &Principal, ttl: u64) -> Result<Minted, LoginError> {
        let family = Some(uuid::Uuid::new_v4().to_string());
        self.mint(principal, TokenKind::Access, ttl, family, None)
    }

    fn issue_otp_pending(&self, principal: &Principal) -> Result<Minted, LoginError> {
        self.mint(
            principal,
            TokenKind::OtpPending,
            self.lifetimes.otp_pending,
            None,
            None,
        )
    }

    fn issue_service_account(
        &self,
        creator: &Principal,
        purpose: &str,
        ttl: u64,
    ) -> Result<Minted, LoginError> {
        self.mint(
            creator,
            TokenKind::ServiceAccount,
            ttl,
            None,
            Some(purpose.to_owned()),
        )
    }

    fn verify<'a>(
        &'a self,
        token: &'a str,
        kinds: &'a [TokenKind],
    ) -> BoxFuture<'a, Result<AuthClaims, LoginError>> {
        Box::pin(async move {
            let claims = self.verify_signed(token, kinds)?;
            self.check_revoked(&claims.jti, claims.fam.as_deref())
                .await?;
            Ok(claims)
        })
    }

    fn refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        rotate: bool,
    ) -> BoxFuture<'a, Result<TokenPair, LoginError>> {
        Box::pin(async move {
            let claims = self.verify_signed(refresh_token, &[TokenKind::Refresh])?;
            let principal = claims.principal();
            if let Some(family) = &claims.fam {
                self.check_revoked(family, None).await?;
            }
            if !rotate {
                self.check_revoked(&claims.jti, None).await?;
            } else {
                let first_use = self
                    .revocations
                    .revoke(&claims.jti, claims.exp)
                    .await
                    .map_err(LoginError::Unavailable)?;
                if !first_use {
                    // A used refresh token came back: someone holds a copy.
                    // End the whole login session.
                    self.revoke_family(&claims).await?;
                    return Err(LoginError::RefreshReused);
                }
            }
            let access = self.mint(
                &principal,
                TokenKind::Access,
                self.lifetimes.access,
                claims.fam.clone(),
                None,
            )?;
            let refresh = if rotate {
                Some(self.mint(
                    &principal,
                    TokenKind::Refresh,
                    claims.exi,
                    claims.fam.clone(),
                    None,
                )?)
            } else {
                None
            };
            Ok(TokenPair { access, refresh })
        })
    }

    fn revoke<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            let claims = self.verify(token, &TokenKind::ALL).await?;
            self.revocations
                .revoke(&claims.jti, claims.exp)
                .await
                .map_err(LoginError::Unavailable)?;
            self.revoke_family(&claims).await
        })
    }

    fn revoke_id<'a>(&'a self, id: &'a str, until: u64) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            self.revocations
                .revoke(id, until)
                .await
                .map(|_| ())
                .map_err(LoginError::Unavailable)
        })
    }

    fn revocations(&self) -> Arc<dyn RevocationStore> {
        Arc::clone(&self.revocations)
    }

    fn access_verifier(&self) -> Verifier {
        self.access_verifier.clone()
    }
}
