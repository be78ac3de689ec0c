//! Checking credentials: the [`Authenticator`] trait and an in-memory user
//! store that keeps argon2 hashes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::BoxFuture;
use crate::error::ConfigError;
use crate::store::StoreError;

use super::LoginError;
use super::hashing::HashingPool;

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Principal {
    /// A stable user id (a GUID in the RegScale API's `id`).
    pub id: String,
    /// The login name.
    pub username: String,
    /// The spaces (tenants) the user may act in; the first is the default.
    pub spaces: Vec<String>,
    /// The user's roles, such as `admin`.
    pub roles: Vec<String>,
    /// The user's scopes, such as `audit:read`: minted into access tokens
    /// as the `scope` claim (RFC 8693 §4.2, one space-separated string).
    pub scopes: Vec<String>,
    /// The user's TOTP secret when a second step is required.
    pub totp_secret: Option<Vec<u8>>,
    /// The user's email address, when the account has one; it signs in as
    /// well as the username.
    pub email: Option<String>,
    /// The user's display name.
    pub name: Option<String>,
    /// The moment (seconds since the epoch) after which the account may no
    /// longer sign in and its tokens stop working (the Workflow API's
    /// `activeUntil`); `None`: no end.
    pub active_until: Option<u64>,
}

impl Principal {
    /// A user with this id and name, no spaces, no roles and no TOTP.
    pub fn new(id: impl Into<String>, username: impl Into<String>) -> Self {
        Principal {
            id: id.into(),
            username: username.into(),
            spaces: Vec::new(),
            roles: Vec::new(),
            scopes: Vec::new(),
            totp_secret: None,
            email: None,
            name: None,
            active_until: None,
        }
    }

    /// With this email address.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With this display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Active until `until` (seconds since the epoch).
    pub fn with_active_until(mut self, until: u64) -> Self {
        self.active_until = Some(until);
        self
    }

    /// Whether the account may sign in at `now`.
    pub fn is_active_at(&self, now: u64) -> bool {
        self.active_until.is_none_or(|until| now < until)
    }

    /// With these spaces (the first is the default).
    pub fn with_spaces<I, S>(mut self, spaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spaces = spaces.into_iter().map(Into::into).collect();
        self
    }

    /// With these roles.
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// With these scopes. A scope is one word of the `scope` claim, so
    /// empty scopes and scopes holding whitespace are left out.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scope_words(scopes);
        self
    }

    /// Requiring a TOTP code after the password, with this secret (raw
    /// bytes).
    pub fn with_totp_secret(mut self, secret: Vec<u8>) -> Self {
        self.totp_secret = Some(secret);
        self
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the user holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// A builder for a principal read from a store's row, whose optional
    /// columns are `Option`s:
    ///
    /// ```
    /// use tower_authgate::login::Principal;
    ///
    /// let email: Option<String> = None; // a NULL column
    /// let principal = Principal::builder("7d1c2a9e", "admin")
    ///     .email(email)
    ///     .name(Some("Administrator"))
    ///     .active_until(None)
    ///     .roles(["admin"])
    ///     .scopes("audit:read projects:write".split(' '))
    ///     .spaces("default_space,production".split(','))
    ///     .build();
    /// assert_eq!(principal.email, None);
    /// assert_eq!(principal.spaces, ["default_space", "production"]);
    /// assert!(principal.has_scope("audit:read"));
    /// ```
    pub fn builder(id: impl Into<String>, username: impl Into<String>) -> PrincipalBuilder {
        PrincipalBuilder {
            principal: Principal::new(id, username),
        }
    }
}

/// Builds a [`Principal`] from optional values ([`Principal::builder`]):
/// each setter takes the `Option` a nullable column gives, `None` leaving
/// the field empty.
#[derive(Debug, Clone)]
pub struct PrincipalBuilder {
    principal: Principal,
}

impl PrincipalBuilder {
    /// The email address, if any.
    pub fn email<S: Into<String>>(mut self, email: Option<S>) -> Self {
        self.principal.email = email.map(Into::into);
        self
    }

    /// The display name, if any.
    pub fn name<S: Into<String>>(mut self, name: Option<S>) -> Self {
        self.principal.name = name.map(Into::into);
        self
    }

    /// The end of the account's activity (seconds since the epoch), if any.
    pub fn active_until(mut self, until: Option<u64>) -> Self {
        self.principal.active_until = until;
        self
    }

    /// The TOTP secret (raw bytes), if the account requires a code.
    pub fn totp_secret(mut self, secret: Option<Vec<u8>>) -> Self {
        self.principal.totp_secret = secret;
        self
    }

    /// The spaces, the first being the default; empty strings (an empty
    /// column split on commas) are left out.
    pub fn spaces<I, S>(mut self, spaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.principal.spaces = non_empty(spaces);
        self
    }

    /// The roles; empty strings are left out.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.principal.roles = non_empty(roles);
        self
    }

    /// The scopes; empty strings and strings holding whitespace (which
    /// cannot be one word of the `scope` claim) are left out.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.principal.scopes = scope_words(scopes);
        self
    }

    /// The principal.
    pub fn build(self) -> Principal {
        self.principal
    }
}

/// The scopes that can be words of a `scope` claim: not empty, no
/// whitespace (RFC 6749 §3.3).
fn scope_words<I, S>(scopes: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    scopes
        .into_iter()
        .map(Into::into)
        .filter(|scope| !scope.is_empty() && !scope.contains(char::is_whitespace))
        .collect()
}

fn non_empty<I, S>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    values
        .into_iter()
        .map(Into::into)
        .filter(|value: &String| !value.trim().is_empty())
        .collect()
}

/// An account as a store keeps it: the principal and the argon2 hash of
/// its password, read together in one lookup
/// ([`Authenticator::find_account`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Account {
    /// Who the account is.
    pub principal: Principal,
    /// The argon2 hash of the password in PHC string form; `None`: the
    /// account cannot sign in with a password.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("principal", &self.principal)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "REDACTED"),
            )
            .finish()
    }
}

impl Account {
    /// `principal`, whose password has this PHC-form argon2 hash.
    pub fn new(principal: Principal, password_hash: impl Into<String>) -> Self {
        Account {
            principal,
            password_hash: Some(password_hash.into()),
        }
    }

    /// `principal`, which cannot sign in with a password.
    pub fn without_password(principal: Principal) -> Self {
        Account {
            principal,
            password_hash: None,
        }
    }
}

/// Where accounts live: the one trait a user store implements.
///
/// A store answers [`find_account`](Self::find_account), one lookup that
/// reads an account (by username or email) with its password hash; the
/// login flow checks the lockout for that account and then verifies the
/// password with [`verify_password`](Self::verify_password), by default on
/// the process's shared [`HashingPool`] (an unknown user is verified
/// against a dummy hash, so answers and timing never tell which usernames
/// exist). A store that cannot be reached answers `Err(StoreError)`: the
/// flow answers `503` with `Retry-After`, and never signs a user out for it.
///
/// ```
/// use tower_authgate::BoxFuture;
/// use tower_authgate::login::{Account, Authenticator, Principal};
/// use tower_authgate::store::StoreError;
///
/// struct OneUser {
///     hash: String,
/// }
///
/// impl Authenticator for OneUser {
///     fn find_account<'a>(
///         &'a self,
///         identifier: &'a str,
///     ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
///         Box::pin(async move {
///             Ok((identifier == "admin")
///                 .then(|| Account::new(Principal::new("1", "admin"), self.hash.clone())))
///         })
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let users = OneUser { hash: tower_authgate::login::hash_password("s3cret").unwrap() };
/// assert!(users.authenticate("admin", "s3cret").await.is_ok());
/// assert!(users.authenticate("admin", "wrong").await.is_err());
/// assert!(users.authenticate("ghost", "s3cret").await.is_err());
/// # }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// The account `identifier` (a username or an email) names, with its
    /// password hash, in one lookup; `Ok(None)` when there is none;
    /// `Err` when the store cannot be reached.
    fn find_account<'a>(
        &'a self,
        identifier: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;

    /// Whether `password` is `account`'s (`None`: no such account, which
    /// must cost the same and answer `false`). By default an argon2
    /// verification on [`HashingPool::shared`] ([`HashingPool::verify`]).
    fn verify_password<'a>(
        &'a self,
        account: Option<&'a Account>,
        password: &'a str,
    ) -> BoxFuture<'a, Result<bool, LoginError>> {
        let hash = account.and_then(|account| account.password_hash.as_deref());
        Box::pin(HashingPool::shared().verify(hash, password))
    }

    /// The principal `username` names, without a password check (for
    /// tokens that already prove who the user is, such as a refresh token
    /// or an external identity provider's token): `Ok(None)` when the
    /// account no longer exists, `Err` when the store cannot be reached. By
    /// default [`find_account`](Self::find_account)'s principal.
    fn find<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .find_account(username)
                .await?
                .map(|account| account.principal))
        })
    }

    /// The principal for `username` and `password`, or
    /// [`LoginError::InvalidCredentials`] (unknown user and wrong password
    /// alike): one [`find_account`](Self::find_account) and one
    /// [`verify_password`](Self::verify_password). The
    /// [`LoginFlow`](super::LoginFlow) calls those two itself, with the
    /// lockout checked between them.
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Principal, LoginError>> {
        Box::pin(async move {
            let account = self
                .find_account(username)
                .await
                .map_err(LoginError::Unavailable)?;
            match (
                self.verify_password(account.as_ref(), password).await?,
                account,
            ) {
                (true, Some(account)) => Ok(account.principal),
                _ => Err(LoginError::InvalidCredentials),
            }
        })
    }
}

/// A user record for [`MemoryUsers`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The plain password; only its argon2 hash is kept.
    pub password: String,
    /// Spaces, the first being the default.
    pub spaces: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes, minted into access tokens as the `scope` claim.
    pub scopes: Vec<String>,
    /// A TOTP secret (raw bytes), when a second step is required.
    pub totp_secret: Option<Vec<u8>>,
    /// An email address the user also signs in with.
    pub email: Option<String>,
    /// A display name.
    pub name: Option<String>,
    /// The end of the account's activity, seconds since the epoch.
    pub active_until: Option<u64>,
}

impl NewUser {
    /// A user with a password and no spaces, roles or TOTP.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        NewUser {
            username: username.into(),
            password: password.into(),
            spaces: Vec::new(),
            roles: Vec::new(),
            scopes: Vec::new(),
            totp_secret: None,
            email: None,
            name: None,
            active_until: None,
        }
    }

    /// With this email address, which signs in as well as the username.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With this display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Active until `until` (seconds since the epoch): afterwards the
    /// account cannot sign in and its tokens stop working.
    pub fn active_until(mut self, until: u64) -> Self {
        self.active_until = Some(until);
        self
    }

    /// With these spaces (the first is the default).
    pub fn spaces<I, S>(mut self, spaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spaces = spaces.into_iter().map(Into::into).collect();
        self
    }

    /// With these roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// With these scopes (empty ones and ones holding whitespace are left
    /// out).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scope_words(scopes);
        self
    }

    /// Requiring a TOTP code after the password, with this base32 secret.
    pub fn totp_base32(mut self, secret: &str) -> Result<Self, ConfigError> {
        let bytes = totp_rs::Secret::Encoded(secret.to_owned())
            .to_bytes()
            .map_err(|e| ConfigError::InvalidTotpSecret(format!("{e:?}")))?;
        self.totp_secret = Some(bytes);
        Ok(self)
    }
}

struct StoredUser {
    principal: Principal,
    hash: String,
}

/// The accounts, by normalised username, and the usernames by normalised
/// email.
#[derive(Default)]
struct Accounts {
    by_name: HashMap<String, StoredUser>,
    by_email: HashMap<String, String>,
}

impl Accounts {
    /// The account a username or an email names.
    fn get(&self, identifier: &str) -> Option<&StoredUser> {
        let key = normalize_username(identifier);
        self.by_name.get(&key).or_else(|| {
            self.by_email
                .get(&key)
                .and_then(|name| self.by_name.get(name))
        })
    }

    /// Whether a username or an email is taken by an account.
    fn taken(&self, identifier: &str) -> bool {
        let key = normalize_username(identifier);
        self.by_name.contains_key(&key) || self.by_email.contains_key(&key)
    }

    fn remove(&mut self, identifier: &str) -> bool {
        let key = normalize_username(identifier);
        let name = match self.by_name.contains_key(&key) {
            true => key,
            false => match self.by_email.get(&key) {
                Some(name) => name.clone(),
                None => return false,
            },
        };
        match self.by_name.remove(&name) {
            Some(user) => {
                if let Some(email) = &user.principal.email {
                    self.by_email.remove(&normalize_username(email));
                }
                true
            }
            None => false,
        }
    }

    fn put(&mut self, user: StoredUser) {
        let name = normalize_username(&user.principal.username);
        if let Some(old) = self.by_name.get(&name)
            && let Some(email) = &old.principal.email
        {
            self.by_email.remove(&normalize_username(email));
        }
        if let Some(email) = &user.principal.email {
            self.by_email
                .insert(normalize_username(email), name.clone());
        }
        self.by_name.insert(name, user);
    }
}

/// An in-memory [`Authenticator`] keeping argon2id hashes, never passwords.
///
/// Usernames and emails are matched case-insensitively; either signs in. An
/// unknown username still costs one hash verification (against a fixed
/// dummy hash), so timing does not tell known from unknown names. It is also
/// a [`Registrar`]: accounts can be created while the service runs.
#[derive(Clone)]
pub struct MemoryUsers {
    users: Arc<RwLock<Accounts>>,
    pool: HashingPool,
}

impl std::fmt::Debug for MemoryUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.users.read().map(|u| u.by_name.len()).unwrap_or(0);
        f.debug_struct("MemoryUsers")
            .field("users", &count)
            .finish()
    }
}

/// An argon2id hash of `password` in PHC string form
/// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), with the crate's default
/// parameters, computed on the calling thread (about 15 ms of one core):
/// for set-up and tools. A service hashes on a pool
/// ([`HashingPool::hash`]).
pub fn hash_password(password: &str) -> Result<String, ConfigError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ConfigError::PasswordHashing(e.to_string()))
}

/// Whether `password` matches the PHC-format argon2 `hash`, computed in
/// `memory` (grown as needed). Every block is written by the hash before it
/// is read, so a reused buffer needs no clearing.
pub(crate) fn verify_password(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let hashed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
        .is_ok();
    // `Output` compares in constant time.
    hashed && Output::new(out).is_ok_and(|out| out == expected)
}

/// Whether `phc` is an argon2 hash that [`verify_password`] can check.
fn check_argon2_phc(phc: &str) -> Result<(), ConfigError> {
    let invalid = |why: &str| ConfigError::InvalidPasswordHash(why.to_owned());
    let parsed = PasswordHash::new(phc).map_err(|e| invalid(&e.to_string()))?;
    Algorithm::try_from(parsed.algorithm).map_err(|_| invalid("not an argon2 hash"))?;
    Params::try_from(&parsed).map_err(|e| invalid(&e.to_string()))?;
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|e| invalid(&e.to_string()))?;
    }
    let salt = parsed.salt.ok_or_else(|| invalid("no salt"))?;
    salt.decode_b64(&mut [0u8; 64])
        .map_err(|e| invalid(&e.to_string()))?;
    parsed.hash.ok_or_else(|| invalid("no hash output"))?;
    Ok(())
}

/// The normalised form of a username used as a key: trimmed, lower case.
pub fn normalize_username(username: &str) -> String {
    username.trim().to_lowercase()
}

impl MemoryUsers {
    /// An empty store.
    pub fn new() -> Result<Self, ConfigError> {
        Ok(MemoryUsers {
            users: Arc::new(RwLock::new(Accounts::default())),
            pool: HashingPool::shared().clone(),
        })
    }

    /// With this pool for hashing and verifying passwords (see
    /// [`HashingPool`]: by default the process's [`HashingPool::shared`]).
    pub fn with_hashing_pool(mut self, pool: HashingPool) -> Self {
        self.pool = pool;
        self
    }

    /// Removes the account named `username` (or with that email): its
    /// refresh tokens renew nothing from then on. Whether there was one.
    pub fn remove(&self, username: &str) -> bool {
        let Ok(mut users) = self.users.write() else {
            return false;
        };
        users.remove(username)
    }

    /// Adds (or replaces) a user; the password is hashed with argon2id.
    pub fn insert(&self, user: NewUser) -> Result<Principal, ConfigError> {
        let hash = hash_password(&user.password)?;
        let principal = principal_of(user);
        let mut users = self
            .users
            .write()
            .map_err(|_| ConfigError::Poisoned("user store"))?;
        users.put(StoredUser {
            principal: principal.clone(),
            hash,
        });
        Ok(principal)
    }

    /// Adds (or replaces) a user whose password is already hashed: `phc` is
    /// an argon2 hash in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
    /// as a users file keeps it. A hash that is not argon2, or whose
    /// parameters, salt or output do not parse, is refused.
    pub fn insert_hashed(&self, principal: Principal, phc: &str) -> Result<Principal, ConfigError> {
        check_argon2_phc(phc)?;
        let mut users = self
            .users
            .write()
            .map_err(|_| ConfigError::Poisoned("user store"))?;
        users.put(StoredUser {
            principal: principal.clone(),
            hash: phc.to_owned(),
        });
        Ok(principal)
    }

    fn lookup(&self, identifier: &str) -> Result<Option<Account>, StoreError> {
        let users = self
            .users
            .read()
            .map_err(|_| StoreError("user store poisoned".into()))?;
        Ok(users
            .get(identifier)
            .map(|u| Account::new(u.principal.clone(), u.hash.clone())))
    }
}

/// The principal a new user record makes, with a fresh id.
fn principal_of(user: NewUser) -> Principal {
    Principal {
        id: uuid::Uuid::new_v4().to_string(),
        username: user.username,
        spaces: user.spaces,
        roles: user.roles,
        scopes: user.scopes,
        totp_secret: user.totp_secret,
        email: user.email,
        name: user.name,
        active_until: user.active_until,
    }
}

/// Creates accounts while the service runs (the Scailable / Nx API's
/// `POST /user`).
///
/// Registering a username or email that is taken answers exactly as a
/// registration that succeeded would, after the same work, so registration
/// never tells whether an account exists; the existing account is left as
/// it was.
pub trait Registrar: Send + Sync + 'static {
    /// Creates `user`'s account. `Ok(Some)`: created; `Ok(None)`: the name or
    /// email is taken and nothing changed.
    fn register(&self, user: NewUser) -> BoxFuture<'_, Result<Option<Principal>, LoginError>>;
}

impl Registrar for MemoryUsers {
    fn register(&self, user: NewUser) -> BoxFuture<'_, Result<Option<Principal>, LoginError>> {
        Box::pin(async move {
            // Hashed (on the pool) before the check, so a taken name costs
            // the same.
            let hash = self.pool.hash(&user.password).await?;
            let mut users = self
                .users
                .write()
                .map_err(|_| LoginError::Internal("user store poisoned".into()))?;
            let taken = users.taken(&user.username)
                || user
                    .email
                    .as_deref()
                    .is_some_and(|email| users.taken(email));
            if taken {
                return Ok(None);
            }
            let principal = principal_of(user);
            users.put(StoredUser {
                principal: principal.clone(),
                hash,
            });
            Ok(Some(principal))
        })
    }
}

impl Authenticator for MemoryUsers {
    fn find_account<'a>(
        &'a self,
        identifier: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move { self.lookup(identifier) })
    }

    fn verify_password<'a>(
        &'a self,
        account: Option<&'a Account>,
        password: &'a str,
    ) -> BoxFuture<'a, Result<bool, LoginError>> {
        let hash = account.and_then(|account| account.password_hash.as_deref());
        Box::pin(self.pool.verify(hash, password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_with(params: Params, algorithm: Algorithm, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn hashes_verify_alike_through_reused_memory_whatever_their_parameters() {
        let mut memory = Vec::new();
        let hashes = [
            hash_password("right").unwrap(),
            hash_with(
                Params::new(8, 2, 1, None).unwrap(),
                Algorithm::Argon2id,
                "right",
            ),
            hash_with(
                Params::new(64, 1, 2, Some(16)).unwrap(),
                Algorithm::Argon2i,
                "right",
            ),
            hash_with(
                Params::new(32, 3, 1, Some(48)).unwrap(),
                Algorithm::Argon2d,
                "right",
            ),
        ];
        // Twice round, so that later hashes run in memory left by others.
        for _ in 0..2 {
            for hash in &hashes {
                assert!(verify_password("right", hash, &mut memory), "{hash}");
                assert!(!verify_password("wrong", hash, &mut memory), "{hash}");
                assert!(!verify_password("righ", hash, &mut memory), "{hash}");
            }
        }
        assert!(memory.len() >= Params::default().block_count());
    }

    #[test]
    fn malformed_hashes_never_verify() {
        let mut memory = Vec::new();
        let good = hash_password("right").unwrap();
        for hash in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            &good[..good.len() - 2],
        ] {
            assert!(!verify_password("right", hash, &mut memory), "{hash:?}");
        }
    }
}
