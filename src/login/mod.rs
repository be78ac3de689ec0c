//! The issuer side: checking credentials, minting token pairs, refreshing,
//! revoking, service-account tokens and the TOTP second step.
//!
//! - [`Authenticator`] is where accounts live: one
//!   [`find_account`](Authenticator::find_account) per login reads an
//!   [`Account`] and its password hash, an unreachable store answers `503`
//!   ([`MemoryUsers`] keeps argon2 hashes in memory). A store of your own
//!   uses [`hash_password`], [`HashingPool::hash`] and
//!   [`HashingPool::verify`] (whose dummy verification keeps unknown users'
//!   timing) and [`Principal::builder`]; `examples/sqlite_users.rs` is one
//!   over SQLite.
//! - [`TokenIssuer`] mints, refreshes (with rotation and reuse detection) and
//!   revokes ([`JwtIssuer`]).
//! - [`LoginFlow`] puts them together with the [`crate::otp::TotpVerifier`]
//!   and one [`Lockout`] (the default unless replaced) that every preset
//!   on the flow counts in: a password login either yields the principal
//!   or, for accounts with TOTP, an otp-pending token that the second step
//!   exchanges.
//! - [`ServiceAccounts`] keeps the long-lived tokens an administrator mints,
//!   in a [`ServiceAccountStore`](crate::store::ServiceAccountStore).
//! - [`Registrar`] creates accounts, after a [`PasswordPolicy`] judged the
//!   password.
//! - [`ExternalTokenVerifier`] accepts another issuer's tokens as a login
//!   (the datarhei Core API's Auth0 login).
//!
//! The wire formats of the documented APIs are in [`schemes`](crate::schemes).

mod hashing;
mod issuer;
mod password;
mod service_accounts;
mod users;

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;

pub use hashing::{DEFAULT_HASHING_QUEUE, HashingPool};
pub use issuer::{
    AuthClaims, DEFAULT_REUSE_GRACE, JwtIssuer, Lifetimes, Minted, PairLifetimes, TokenIssuer,
    TokenPair,
};
pub use password::{PasswordPolicy, PasswordStrength};
pub use service_accounts::{MAX_SERVICE_ACCOUNT_TTL, ServiceAccounts};
pub use users::{
    Account, Authenticator, MemoryUsers, NewUser, Principal, PrincipalBuilder, Registrar,
    hash_password, normalize_username,
};

use crate::BoxFuture;
use crate::TokenError;
use crate::auth::{RenewAccess, RenewalError, RenewedAccess};
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
    /// The account is past the date it was active until (its password was
    /// right).
    #[error("the account is no longer active")]
    AccountInactive,
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A store could not be reached; the operation fails closed.
    #[error("{0}")]
    Unavailable(StoreError),
    /// Every password-hashing thread is busy and the queue is full: the
    /// attempt is refused at once (`503`, retry in a second).
    #[error("too many logins at once; try again in a moment")]
    Busy,
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
            LoginError::Forbidden(_) | LoginError::AccountInactive => StatusCode::FORBIDDEN,
            LoginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            LoginError::Unavailable(_) | LoginError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds the client should wait before trying again, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            LoginError::Locked { retry_after } => Some(*retry_after),
            LoginError::Unavailable(_) => Some(5),
            LoginError::Busy => Some(1),
            _ => None,
        }
    }

    /// The kind of failure as one `snake_case` word (`invalid_credentials`,
    /// `invalid_token`, `refresh_reused`, `invalid_otp`, `otp_required`,
    /// `locked`, `forbidden`, `account_inactive`, `bad_request`,
    /// `unavailable`, `busy`, `internal`): the `result` label of the login
    /// metrics (see [`observe`](crate::observe)).
    pub fn kind(&self) -> &'static str {
        match self {
            LoginError::InvalidCredentials => "invalid_credentials",
            LoginError::InvalidToken(_) => "invalid_token",
            LoginError::RefreshReused => "refresh_reused",
            LoginError::InvalidOtp => "invalid_otp",
            LoginError::OtpRequired => "otp_required",
            LoginError::Locked { .. } => "locked",
            LoginError::Forbidden(_) => "forbidden",
            LoginError::AccountInactive => "account_inactive",
            LoginError::BadRequest(_) => "bad_request",
            LoginError::Unavailable(_) => "unavailable",
            LoginError::Busy => "busy",
            LoginError::Internal(_) => "internal",
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
///
/// The flow owns the failed-login [`Lockout`]: every preset built on it
/// (and every clone of it) counts failures in that one lockout, so
/// alternating between two presets' login endpoints gains an attacker
/// nothing. A flow is built with [`Lockout::default`] (five failures lock
/// an account for ten minutes); [`with_lockout`](Self::with_lockout)
/// replaces it, [`without_lockout`](Self::without_lockout) turns it off.
#[derive(Clone)]
pub struct LoginFlow {
    users: Arc<dyn Authenticator>,
    issuer: Arc<dyn TokenIssuer>,
    totp: TotpVerifier,
    lockout: Option<Lockout>,
    name: Option<&'static str>,
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow")
            .field("name", &self.name())
            .field("totp", &self.totp)
            .finish_non_exhaustive()
    }
}

impl LoginFlow {
    /// A flow over these parts, with the default TOTP verifier and the
    /// default lockout (five failures lock an account for ten minutes,
    /// counted in memory: give a shared store with
    /// [`with_lockout`](Self::with_lockout) when several instances serve).
    pub fn new(users: Arc<dyn Authenticator>, issuer: Arc<dyn TokenIssuer>) -> Self {
        LoginFlow {
            users,
            issuer,
            totp: TotpVerifier::default(),
            lockout: Some(Lockout::default()),
            name: None,
        }
    }

    /// Names the flow in its events and metrics (the `preset` label, see
    /// [`observe`](crate::observe)): a short, fixed word such as the API's
    /// name. Each preset names the flow it is given after its module
    /// (`cookie_session`, ...) unless it is named already; otherwise the
    /// name is `login`.
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// The flow's name in events and metrics.
    pub fn name(&self) -> &'static str {
        self.name.unwrap_or("login")
    }

    /// This flow, named `name` unless it is named already.
    #[cfg(feature = "presets")]
    pub(crate) fn named_if_unnamed(mut self, name: &'static str) -> Self {
        self.name.get_or_insert(name);
        self
    }

    /// Count failed passwords and codes, and lock accounts per `lockout`
    /// (instead of the default one).
    pub fn with_lockout(mut self, lockout: Lockout) -> Self {
        self.lockout = Some(lockout);
        self
    }

    /// Count no failures and lock no account: for a flow guarded otherwise
    /// (a throttle in front, an identity provider's own lockout).
    pub fn without_lockout(mut self) -> Self {
        self.lockout = None;
        self
    }

    /// The lockout in force: the default one unless replaced, `None` only
    /// after [`without_lockout`](Self::without_lockout).
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
    /// counts per address). `then` are the lifetimes of the pair the login
    /// is to end in: for an account with TOTP they ride in the otp-pending
    /// token to the second step.
    ///
    /// A locked account is refused before its password is checked; a wrong
    /// password counts a failure against the account, whichever of its names
    /// (username or email) was sent, found with one
    /// [`Authenticator::find`]; an account past its `active_until` is
    /// refused (`403`) once its password is right; a complete login (no TOTP
    /// required) forgets the failures. The store is read once
    /// ([`Authenticator::find_account`]); when it cannot be reached the
    /// login answers [`LoginError::Unavailable`] (`503`).
    pub async fn password(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
        then: PairLifetimes,
    ) -> Result<LoginOutcome, LoginError> {
        let outcome = self.password_step(username, password, client, then).await;
        let result = match &outcome {
            Ok(LoginOutcome::Authenticated(_)) => "success",
            Ok(LoginOutcome::TotpRequired(_)) => "totp_required",
            Err(err) => err.kind(),
        };
        self.observe_login("password", result, username, client);
        outcome
    }

    async fn password_step(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
        then: PairLifetimes,
    ) -> Result<LoginOutcome, LoginError> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(LoginError::InvalidCredentials);
        }
        // Failures count against the account, whichever of its names (its
        // username, its email) the attempt used: five failures in all lock
        // it. A name that is no account counts on its own.
        let account = self
            .users
            .find_account(username)
            .await
            .map_err(LoginError::Unavailable)?;
        let name = account
            .as_ref()
            .map_or(username, |account| account.principal.username.as_str());
        let key = self.lock_key(name, client);
        self.refuse_if_locked(&key).await?;
        let matched = self
            .users
            .verify_password(account.as_ref(), password)
            .await?;
        let principal = match account {
            Some(account) if matched => account.principal,
            _ => {
                self.count_failure(&key).await?;
                return Err(LoginError::InvalidCredentials);
            }
        };
        if !principal.is_active_at(now_seconds()) {
            return Err(LoginError::AccountInactive);
        }
        if principal.totp_secret.is_some() {
            return Ok(LoginOutcome::TotpRequired(
                self.issuer.issue_otp_pending(&principal, then)?,
            ));
        }
        self.count_success(&key).await?;
        Ok(LoginOutcome::Authenticated(principal))
    }

    /// The TOTP step, for a request from `client`: an otp-pending token and
    /// a code give the principal, and the lifetimes the password step asked
    /// for. The pending token is single-use; a wrong code counts toward the
    /// lockout.
    pub async fn totp(
        &self,
        pending_token: &str,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<TotpAccepted, LoginError> {
        let mut seen = TotpSeen::default();
        let outcome = self.totp_step(pending_token, code, client, &mut seen).await;
        let result = match &outcome {
            Ok(_) => "success",
            Err(LoginError::InvalidOtp) if seen.replayed => "otp_replayed",
            Err(err) => err.kind(),
        };
        self.observe_login("totp", result, seen.user.as_deref().unwrap_or(""), client);
        outcome
    }

    async fn totp_step(
        &self,
        pending_token: &str,
        code: &str,
        client: Option<IpAddr>,
        seen: &mut TotpSeen,
    ) -> Result<TotpAccepted, LoginError> {
        let claims = self
            .issuer
            .verify(pending_token, &[TokenKind::OtpPending])
            .await?;
        seen.user = Some(claims.sub.clone());
        let key = self.lock_key(&claims.sub, client);
        self.refuse_if_locked(&key).await?;
        let principal = self.account(&claims.sub).await?;
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
            Err(OtpError::Replayed) => {
                // The client hears what a wrong code gets.
                seen.replayed = true;
                self.count_failure(&key).await?;
                return Err(LoginError::InvalidOtp);
            }
            Err(OtpError::Unavailable(err)) => return Err(LoginError::Unavailable(err)),
            Err(err) => return Err(LoginError::Internal(err.to_string())),
        }
        self.issuer.revoke_id(&claims.jti, claims.exp).await?;
        self.count_success(&key).await?;
        let mut lifetimes = PairLifetimes::new();
        lifetimes.access = claims.pending_access_lifetime;
        lifetimes.refresh = claims.pending_refresh_lifetime;
        Ok(TotpAccepted {
            principal,
            lifetimes,
        })
    }

    /// The account named `username` as it stands now: refused when it no
    /// longer exists (`401`) or is past its `active_until` (`403`);
    /// [`LoginError::Unavailable`] (`503`, never a `401` that would end the
    /// client's session) when the store cannot be reached.
    pub async fn account(&self, username: &str) -> Result<Principal, LoginError> {
        let principal = self
            .users
            .find(username)
            .await
            .map_err(LoginError::Unavailable)?
            .ok_or(LoginError::InvalidToken(TokenError::Revoked))?;
        if principal.is_active_at(now_seconds()) {
            Ok(principal)
        } else {
            Err(LoginError::AccountInactive)
        }
    }

    /// Counts an attempt against `identifier` the way a failed login counts
    /// (for endpoints that do not check a password, such as registration),
    /// refusing it (`423`) while the identifier is locked. Without a lockout
    /// it does nothing.
    pub async fn count_attempt(
        &self,
        identifier: &str,
        client: Option<IpAddr>,
    ) -> Result<(), LoginError> {
        let key = self.lock_key(identifier, client);
        self.refuse_if_locked(&key).await?;
        self.count_failure(&key).await
    }

    /// A new access token (and, rotating, a new refresh token) from a
    /// refresh token. The account is read again through the
    /// [`Authenticator`] (one `find`): an account removed or past its
    /// `active_until` renews nothing, and the new tokens carry the roles,
    /// scopes and spaces the account has now, not those the refresh token
    /// recorded.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        options: RefreshOptions,
    ) -> Result<TokenPair, LoginError> {
        let outcome = self.refresh_step(refresh_token, options).await;
        let result = match &outcome {
            Ok(_) if options.rotate => "rotated",
            Ok(_) => "renewed",
            Err(err) => err.kind(),
        };
        crate::observe::count!(
            "authgate_refreshes_total",
            "preset" => self.name(),
            "result" => result
        );
        match &outcome {
            Ok(_pair) => crate::observe::event!(
                info,
                preset = self.name(),
                user = ?shown(&_pair.access.claims.sub),
                family = _pair.access.claims.fam.as_deref(),
                result,
                "refresh"
            ),
            Err(LoginError::RefreshReused) => {
                crate::observe::count!("authgate_refresh_reuse_total", "preset" => self.name());
            }
            Err(_err) => crate::observe::event!(
                info,
                preset = self.name(),
                result,
                error = %_err,
                "refresh refused"
            ),
        }
        outcome
    }

    async fn refresh_step(
        &self,
        refresh_token: &str,
        options: RefreshOptions,
    ) -> Result<TokenPair, LoginError> {
        let redeemed = self
            .issuer
            .redeem_refresh(refresh_token, options.rotate)
            .await?;
        let principal = self.account(&redeemed.sub).await?;
        self.issuer
            .reissue(&redeemed, &principal, options.access_ttl, options.rotate)
    }

    /// Signs `subject` (a username) out everywhere, at once: every token
    /// minted for it until now, of every login session, kind and issuer
    /// sharing this flow's revocation store, is refused by `AuthLayer`, by
    /// refresh and by cookie renewal, including the service accounts it
    /// created. Use it when an account is removed or loses a role, so that
    /// it is cut off now rather than at its next refresh; a later sign-in
    /// works again. Returns the cut-off (seconds since the epoch). A store
    /// that cannot record it fails (`503`): the caller must know the tokens
    /// still work.
    pub async fn sign_out_everywhere(&self, subject: &str) -> Result<u64, LoginError> {
        self.issuer.revoke_subject(subject).await
    }

    /// The renewal of access cookies through this flow
    /// ([`CookieRenewal`](crate::auth::CookieRenewal)): a refresh that does
    /// not rotate, the account read again, new access tokens living
    /// `access_ttl` seconds (`None`: the issuer's default).
    pub fn access_renewal(&self, access_ttl: Option<u64>) -> AccessRenewal {
        AccessRenewal {
            flow: self.clone(),
            access_ttl,
        }
    }
}

impl LoginFlow {
    /// The event and the `authgate_logins_total` count of one login step.
    fn observe_login(
        &self,
        step: &'static str,
        result: &'static str,
        user: &str,
        client: Option<IpAddr>,
    ) {
        crate::observe::count!(
            "authgate_logins_total",
            "preset" => self.name(),
            "result" => result
        );
        #[cfg(feature = "tracing")]
        {
            let preset = self.name();
            let user = shown(user);
            let client = client.map(tracing::field::display);
            match result {
                "success"
                | "totp_required"
                | "invalid_credentials"
                | "invalid_otp"
                | "account_inactive"
                | "bad_request"
                | "forbidden"
                | "invalid_token" => {
                    tracing::info!(preset, step, result, user = ?user, client, "login")
                }
                "internal" => tracing::error!(preset, step, result, user = ?user, client, "login"),
                _ => tracing::warn!(preset, step, result, user = ?user, client, "login"),
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (step, user, client);
    }
}

/// What the TOTP step learnt before it failed, for its event.
#[derive(Default)]
struct TotpSeen {
    user: Option<String>,
    replayed: bool,
}

/// A username as events show it: at most 64 characters (recorded with
/// `Debug`, so control characters are escaped).
#[cfg(feature = "tracing")]
fn shown(user: &str) -> &str {
    match user.char_indices().nth(64) {
        Some((end, _)) => &user[..end],
        None => user,
    }
}

/// What a refresh does ([`LoginFlow::refresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RefreshOptions {
    /// Use the refresh token up and return a new one (reuse of a used one
    /// ends the session).
    pub rotate: bool,
    /// The new access token's lifetime (`None`: the issuer's default).
    pub access_ttl: Option<u64>,
}

impl RefreshOptions {
    /// Rotate the refresh token.
    pub fn rotating() -> Self {
        RefreshOptions {
            rotate: true,
            access_ttl: None,
        }
    }

    /// Keep the refresh token (it stays valid until it expires).
    pub fn keeping() -> Self {
        RefreshOptions::default()
    }

    /// With this access-token lifetime.
    pub fn with_access_ttl(mut self, seconds: u64) -> Self {
        self.access_ttl = Some(seconds);
        self
    }
}

/// What the TOTP step gives: the account, and the lifetimes the password
/// step asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TotpAccepted {
    /// Who logged in.
    pub principal: Principal,
    /// The lifetimes of the pair to issue.
    pub lifetimes: PairLifetimes,
}

/// A [`RenewAccess`] over a [`LoginFlow`]: the access-cookie renewal of the
/// guard side, with the account read again on every renewal.
#[derive(Clone, Debug)]
pub struct AccessRenewal {
    flow: LoginFlow,
    access_ttl: Option<u64>,
}

impl RenewAccess for AccessRenewal {
    fn renew_access<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<RenewedAccess, RenewalError>> {
        Box::pin(async move {
            let mut options = RefreshOptions::keeping();
            options.access_ttl = self.access_ttl;
            match self.flow.refresh(refresh_token, options).await {
                Ok(pair) => Ok(RenewedAccess::new(
                    pair.access.token,
                    pair.access.claims.exi,
                )),
                Err(LoginError::Unavailable(_)) => Err(RenewalError::Unavailable),
                Err(_) => Err(RenewalError::Refused),
            }
        })
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
    /// Tokens verified by `verifier` whose `sub` is in `allowed`. Identity
    /// providers do not mark token kinds: build the verifier with
    /// [`any_kind_from`](crate::token::VerifierBuilder::any_kind_from) the
    /// provider's issuer (or [`any_kind`](crate::token::VerifierBuilder::any_kind)
    /// when it verifies that provider's tokens only), never with `any_kind`
    /// on a verifier that also knows the service's own keys.
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
