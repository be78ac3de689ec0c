//! Minting, refreshing and revoking tokens.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BoxFuture;
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::store::{
    MemoryRevocations, MemoryRotations, RevocationCheck, RevocationStore, Rotation, RotationStore,
};
use crate::tenant::HasSpaces;
use crate::token::{KeySet, SigningKey, TokenKind, Verifier};

use super::{LoginError, Principal};

/// The claims of every token this crate mints.
///
/// `sub`, `iss`, `iat`, `exp`, `exi` (seconds of validity), `jti` and
/// `usefor` are exactly the claims of the datarhei Core API's sample tokens;
/// `fam` ties the tokens of one login together and `frl` says how long that
/// login's refresh tokens live; `spaces`, `roles` and `scope` carry the
/// principal's grants (`scope` as RFC 8693 §4.2 and RFC 9068 §2.2.3 write
/// it: one string of space-separated scopes, absent when there are none).
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
    /// The lifetime of the family's refresh tokens, in seconds (`frl`): no
    /// token of the family can be valid longer than this after the moment
    /// it is revoked, so a revocation of the family lasts this long.
    #[serde(default, rename = "frl", skip_serializing_if = "Option::is_none")]
    pub family_refresh_lifetime: Option<u64>,
    /// On an otp-pending token: the lifetimes the pair is to have once the
    /// code is given (`pal`, `prl`), so a "keep me logged in" survives the
    /// TOTP step.
    #[serde(default, rename = "pal", skip_serializing_if = "Option::is_none")]
    pub pending_access_lifetime: Option<u64>,
    /// See [`pending_access_lifetime`](Self::pending_access_lifetime).
    #[serde(default, rename = "prl", skip_serializing_if = "Option::is_none")]
    pub pending_refresh_lifetime: Option<u64>,
    /// Spaces granted, the first being the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spaces: Vec<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Scopes, space-separated (`"audit:read projects:write"`); empty when
    /// the principal has none, and then not written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// A service-account token's stated purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl AuthClaims {
    /// The principal these claims stand for (no TOTP secret: a token never
    /// carries one).
    pub fn principal(&self) -> Principal {
        Principal::new(self.uid.clone(), self.sub.clone())
            .with_spaces(self.spaces.iter().cloned())
            .with_roles(self.roles.iter().cloned())
            .with_scopes(self.scopes())
    }

    /// The scopes of the `scope` claim, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
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

/// The lifetimes asked for one pair, in seconds; `None` takes the issuer's
/// default ([`Lifetimes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PairLifetimes {
    /// The access token's.
    pub access: Option<u64>,
    /// The refresh token's (and so the login session's).
    pub refresh: Option<u64>,
}

impl PairLifetimes {
    /// The issuer's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this access-token lifetime.
    pub fn with_access(mut self, seconds: u64) -> Self {
        self.access = Some(seconds);
        self
    }

    /// With this refresh-token lifetime.
    pub fn with_refresh(mut self, seconds: u64) -> Self {
        self.refresh = Some(seconds);
        self
    }
}

/// Mints, refreshes and revokes tokens.
///
/// Refreshing is two steps so that the account can be read again between
/// them ([`LoginFlow::refresh`](super::LoginFlow::refresh)):
/// [`redeem_refresh`](Self::redeem_refresh) checks (and, rotating, uses up)
/// the refresh token, [`reissue`](Self::reissue) mints what it grants for
/// the account as it stands.
pub trait TokenIssuer: Send + Sync + 'static {
    /// An access/refresh pair for a fresh login, a new login session.
    fn issue_pair(
        &self,
        principal: &Principal,
        lifetimes: PairLifetimes,
    ) -> Result<TokenPair, LoginError>;

    /// An access token only, with its own lifetime (the RegScale API's
    /// 24-hour `auth_token`, the Workflow API's `X-Auth-Token`).
    fn issue_access(&self, principal: &Principal, ttl: u64) -> Result<Minted, LoginError>;

    /// A short-lived otp-pending token: the password step succeeded and a
    /// TOTP code is awaited; `then` are the lifetimes of the pair the code
    /// will give.
    fn issue_otp_pending(
        &self,
        principal: &Principal,
        then: PairLifetimes,
    ) -> Result<Minted, LoginError>;

    /// A service-account token minted by `creator`, carrying the creator's
    /// roles, scopes and spaces, valid for `ttl` seconds (narrow the scopes
    /// with [`ServiceAccounts::create_with_scopes`](super::ServiceAccounts::create_with_scopes)).
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

    /// Checks a refresh token: signature, kind, expiry, and neither it nor
    /// its family revoked. With `rotate`, the token is used up: presenting
    /// it again ends its whole family (reuse detection), except within the
    /// issuer's reuse grace window. Returns its claims.
    fn redeem_refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        rotate: bool,
    ) -> BoxFuture<'a, Result<AuthClaims, LoginError>>;

    /// What a redeemed refresh token grants, minted for `principal` as the
    /// account stands now: a new access token (`access_ttl`, or the
    /// default) and, when `rotate`, a new refresh token, in the same family.
    fn reissue(
        &self,
        redeemed: &AuthClaims,
        principal: &Principal,
        access_ttl: Option<u64>,
        rotate: bool,
    ) -> Result<TokenPair, LoginError>;

    /// Revokes the token and its family, for as long as any token of the
    /// family could still be valid.
    fn revoke<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), LoginError>>;

    /// Revokes one token id until `until`.
    fn revoke_id<'a>(&'a self, id: &'a str, until: u64) -> BoxFuture<'a, Result<(), LoginError>>;

    /// Signs `subject` out everywhere: every token this issuer minted for
    /// it until now (access, refresh, service-account, otp-pending; every
    /// family) is refused from now on, for as long as any of them could
    /// live. Tokens minted afterwards (a later sign-in) work. Returns the
    /// cut-off (seconds since the epoch): tokens issued at or before it are
    /// refused.
    fn revoke_subject<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, LoginError>>;

    /// The store of revocations, for layers that must consult it.
    fn revocations(&self) -> Arc<dyn RevocationStore>;

    /// A verifier for this issuer's access (and service-account) tokens.
    fn access_verifier(&self) -> Verifier;
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

/// The default reuse grace window: a rotated refresh token presented again
/// within it (two tabs, a retried request) still works.
pub const DEFAULT_REUSE_GRACE: Duration = Duration::from_secs(10);

/// The JWT [`TokenIssuer`]: signs with one [`SigningKey`], keeps revocations
/// in a [`RevocationStore`] and used refresh tokens in a [`RotationStore`].
#[derive(Clone)]
pub struct JwtIssuer {
    key: SigningKey,
    issuer: String,
    lifetimes: Lifetimes,
    revocations: Arc<dyn RevocationStore>,
    rotations: Arc<dyn RotationStore>,
    reuse_grace: Duration,
    clock: Arc<dyn Clock>,
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
            .field("reuse_grace", &self.reuse_grace)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    /// An issuer that signs with `key` and writes `issuer` into `iss`, with
    /// default lifetimes, the default reuse grace window and in-memory
    /// stores.
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
            rotations: Arc::new(MemoryRotations::default()),
            reuse_grace: DEFAULT_REUSE_GRACE,
            clock: Arc::new(SystemClock),
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

    /// With this store of used refresh tokens (share one between instances,
    /// so that a refresh token is used up everywhere at once).
    pub fn with_rotation_store(mut self, store: Arc<dyn RotationStore>) -> Self {
        self.rotations = store;
        self
    }

    /// The reuse grace window (default [`DEFAULT_REUSE_GRACE`]): within it
    /// after a rotation, the rotated refresh token presented again yields
    /// a new pair in the same family; after it, reuse ends the family. Zero
    /// turns the grace off.
    pub fn with_reuse_grace(mut self, grace: Duration) -> Self {
        self.reuse_grace = grace;
        self
    }

    /// With this clock for minting and for the grace window.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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

    /// The reuse grace window in force.
    pub fn reuse_grace(&self) -> Duration {
        self.reuse_grace
    }

    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        principal: &Principal,
        kind: TokenKind,
        ttl: u64,
        family: Option<String>,
        family_refresh_lifetime: Option<u64>,
        pending: PairLifetimes,
        purpose: Option<String>,
    ) -> Result<Minted, LoginError> {
        let now = self.clock.now();
        // No token outlives what a sign-out everywhere covers.
        let ttl = ttl.min(super::MAX_SERVICE_ACCOUNT_TTL);
        // An account active until a date gets no token that outlives it.
        let exp = match principal.active_until {
            Some(until) => now.saturating_add(ttl).min(until),
            None => now.saturating_add(ttl),
        };
        if exp <= now {
            return Err(LoginError::AccountInactive);
        }
        let claims = AuthClaims {
            exi: exp - now,
            exp,
            iat: now,
            iss: self.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: principal.username.clone(),
            usefor: kind,
            uid: principal.id.clone(),
            fam: family,
            family_refresh_lifetime,
            pending_access_lifetime: pending.access,
            pending_refresh_lifetime: pending.refresh,
            spaces: principal.spaces.clone(),
            roles: principal.roles.clone(),
            scope: principal.scopes.join(" "),
            purpose,
        };
        let token = self
            .key
            .sign(&claims)
            .map_err(|e| LoginError::Internal(e.to_string()))?;
        Ok(Minted { token, claims })
    }

    /// An access token and, when `refresh` is given, a refresh token of that
    /// lifetime, in `family`.
    fn mint_pair(
        &self,
        principal: &Principal,
        family: String,
        access_ttl: u64,
        refresh_ttl: Option<u64>,
        family_refresh_lifetime: u64,
    ) -> Result<TokenPair, LoginError> {
        let access = self.mint(
            principal,
            TokenKind::Access,
            access_ttl,
            Some(family.clone()),
            Some(family_refresh_lifetime),
            PairLifetimes::new(),
            None,
        )?;
        let refresh = match refresh_ttl {
            Some(ttl) => Some(self.mint(
                principal,
                TokenKind::Refresh,
                ttl,
                Some(family),
                Some(family_refresh_lifetime),
                PairLifetimes::new(),
                None,
            )?),
            None => None,
        };
        Ok(TokenPair { access, refresh })
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
    /// its tokens could still be valid: every token of the family was minted
    /// before now and lives at most the family's refresh lifetime.
    async fn revoke_family(&self, claims: &AuthClaims) -> Result<(), LoginError> {
        let Some(family) = &claims.fam else {
            return Ok(());
        };
        let longest = claims
            .family_refresh_lifetime
            .unwrap_or(self.lifetimes.refresh)
            .max(claims.exi);
        let until = self.clock.now().saturating_add(longest);
        self.revocations
            .revoke(family, until)
            .await
            .map(|_| ())
            .map_err(LoginError::Unavailable)
    }

    /// Neither the token, its family, nor every token of its subject issued
    /// by then is revoked.
    async fn check_revoked(&self, claims: &AuthClaims) -> Result<(), LoginError> {
        let revoked = match self.revocations.check(&claims.jti, claims.fam.as_deref()) {
            RevocationCheck::Ready(answer) => answer,
            RevocationCheck::Pending(future) => future.await,
        };
        let revoked = match revoked {
            Ok(false) => match self.revocations.check_subject(&claims.sub, claims.iat) {
                RevocationCheck::Ready(answer) => answer,
                RevocationCheck::Pending(future) => future.await,
            },
            other => other,
        };
        match revoked {
            Ok(false) => Ok(()),
            Ok(true) => Err(LoginError::InvalidToken(crate::TokenError::Revoked)),
            Err(err) => Err(LoginError::Unavailable(err)),
        }
    }
}

impl TokenIssuer for JwtIssuer {
    fn issue_pair(
        &self,
        principal: &Principal,
        lifetimes: PairLifetimes,
    ) -> Result<TokenPair, LoginError> {
        let refresh_ttl = lifetimes.refresh.unwrap_or(self.lifetimes.refresh);
        self.mint_pair(
            principal,
            uuid::Uuid::new_v4().to_string(),
            lifetimes.access.unwrap_or(self.lifetimes.access),
            Some(refresh_ttl),
            refresh_ttl,
        )
    }

    fn issue_access(&self, principal: &Principal, ttl: u64) -> Result<Minted, LoginError> {
        let family = Some(uuid::Uuid::new_v4().to_string());
        self.mint(
            principal,
            TokenKind::Access,
            ttl,
            family,
            Some(ttl),
            PairLifetimes::new(),
            None,
        )
    }

    fn issue_otp_pending(
        &self,
        principal: &Principal,
        then: PairLifetimes,
    ) -> Result<Minted, LoginError> {
        self.mint(
            principal,
            TokenKind::OtpPending,
            self.lifetimes.otp_pending,
            None,
            None,
            then,
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
            None,
            PairLifetimes::new(),
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
            self.check_revoked(&claims).await?;
            Ok(claims)
        })
    }

    fn redeem_refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        rotate: bool,
    ) -> BoxFuture<'a, Result<AuthClaims, LoginError>> {
        Box::pin(async move {
            let claims = self.verify_signed(refresh_token, &[TokenKind::Refresh])?;
            self.check_revoked(&claims).await?;
            if rotate {
                let now = self.clock.now();
                let rotation = self
                    .rotations
                    .rotate(&claims.jti, now, claims.exp)
                    .await
                    .map_err(LoginError::Unavailable)?;
                let within_grace = |first_at: u64| {
                    !self.reuse_grace.is_zero()
                        && now.saturating_sub(first_at) <= self.reuse_grace.as_secs()
                };
                match rotation {
                    Rotation::First => {}
                    // Two tabs, or a retry after a timeout: the holder of
                    // the token asked twice. A sibling pair, same family.
                    Rotation::Repeat { first_at } if within_grace(first_at) => {}
                    Rotation::Repeat { .. } => {
                        // A used refresh token came back: someone holds a
                        // copy. End the whole login session.
                        crate::observe::event!(
                            warn,
                            user = ?claims.sub,
                            family = claims.fam.as_deref(),
                            token_id = %claims.jti,
                            "refresh token reused; its login session is revoked"
                        );
                        self.revoke_family(&claims).await?;
                        return Err(LoginError::RefreshReused);
                    }
                }
            }
            Ok(claims)
        })
    }

    fn reissue(
        &self,
        redeemed: &AuthClaims,
        principal: &Principal,
        access_ttl: Option<u64>,
        rotate: bool,
    ) -> Result<TokenPair, LoginError> {
        let family = redeemed
            .fam
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // The session's refresh lifetime stays what the login granted.
        let refresh_lifetime = redeemed
            .family_refresh_lifetime
            .unwrap_or(redeemed.exi)
            .max(redeemed.exi);
        self.mint_pair(
            principal,
            family,
            access_ttl.unwrap_or(self.lifetimes.access),
            rotate.then_some(refresh_lifetime),
            refresh_lifetime,
        )
    }

    fn revoke<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            let claims = self.verify(token, &TokenKind::ALL).await?;
            self.revocations
                .revoke(&claims.jti, claims.exp)
                .await
                .map_err(LoginError::Unavailable)?;
            self.revoke_family(&claims).await?;
            crate::observe::event!(
                info,
                user = ?claims.sub,
                kind = claims.usefor.as_str(),
                token_id = %claims.jti,
                family = claims.fam.as_deref(),
                "token revoked"
            );
            Ok(())
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

    fn revoke_subject<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, LoginError>> {
        Box::pin(async move {
            let cut_off = self.clock.now();
            // The longest any token of the subject could still live: no
            // token this issuer mints lives longer than ten years.
            let longest = self
                .lifetimes
                .refresh
                .max(self.lifetimes.access)
                .max(super::MAX_SERVICE_ACCOUNT_TTL);
            self.revocations
                .revoke_subject(subject, cut_off, cut_off.saturating_add(longest))
                .await
                .map_err(LoginError::Unavailable)?;
            crate::observe::event!(
                info,
                user = ?subject,
                cut_off,
                "signed out everywhere"
            );
            Ok(cut_off)
        })
    }

    fn revocations(&self) -> Arc<dyn RevocationStore> {
        Arc::clone(&self.revocations)
    }

    fn access_verifier(&self) -> Verifier {
        self.access_verifier.clone()
    }
}
