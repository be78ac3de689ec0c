//! The users file: one `[[user]]` table per account, with an argon2 hash in
//! PHC form, never a password.
//!
//! ```toml
//! [[user]]
//! username = "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! spaces = ["default_space", "production"]
//! roles = ["admin"]
//! scopes = ["audit:read"]                           # minted as the `scope` claim
//!
//! [[user]]
//! username = "operator"
//! id = "7d1c2a9e-0b7f-4a51-9d59-3f2b8f0c1e44"   # a stable user id (else one per start)
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! spaces = ["default_space"]
//! roles = ["operator"]
//! totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"   # base32: TOTP required after the password
//! email = "operator@example.com"                    # signs in as well as the username
//! name = "Operator"
//! active_until = 1893456000                         # seconds since the epoch: no sign-in afterwards
//! ```
//!
//! `authgate user add FILE NAME` appends a table, hashing a password read
//! from standard input; `authgate hash-password` prints a hash. Adding a
//! user ([`add_user`]):
//!
//! - judges the password with the crate's [`PasswordPolicy`] (at least 8
//!   characters and a `zxcvbn` score of 3, the username counting against
//!   it);
//! - refuses a username equal to one already in the file once both are
//!   normalised to Unicode NFKC and case-folded (`ＡＤＭＩＮ`, `Admin` and
//!   `admin` are one name; `K` with the Kelvin sign is `k`), as loading the
//!   file does;
//! - writes the new file beside the old one under a random name, created
//!   exclusively (never through a file or link already there), synced, then
//!   renamed over it: a reader sees the old file or the new one, and the
//!   file keeps its mode and owner (a new file is created `0600`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use unicode_normalization::UnicodeNormalization;

use crate::login::{MemoryUsers, NewUser, PasswordPolicy, Principal};

/// One account of the users file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEntry {
    pub(crate) username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) password_hash: String,
    #[serde(default)]
    pub(crate) spaces: Vec<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) totp_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// Seconds since the epoch after which the account cannot sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) active_until: Option<u64>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    user: Vec<UserEntry>,
}

/// The accounts of a users file, checked: every hash an argon2 PHC string,
/// every TOTP secret base32, no name twice.
#[derive(Clone)]
pub(crate) struct UsersFile {
    users: Vec<(Principal, String)>,
}

impl std::fmt::Debug for UsersFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersFile")
            .field("accounts", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl UsersFile {
    /// Reads and checks the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let form: FileForm = toml::from_str(text).map_err(|err| {
            let line = err
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", err.message().trim()),
                None => err.message().trim().to_owned(),
            }
        })?;
        let mut users: Vec<(Principal, String)> = Vec::new();
        let check_store = MemoryUsers::new().map_err(|err| err.to_string())?;
        for (i, entry) in form.user.into_iter().enumerate() {
            let at = |what: &str| format!("user[{i}] ({}): {what}", entry.username);
            if entry.username.trim().is_empty() {
                return Err(format!("user[{i}]: a username is required"));
            }
            let folded = fold_username(&entry.username);
            if let Some((other, _)) = users
                .iter()
                .find(|(p, _)| fold_username(&p.username) == folded)
            {
                return Err(at(&format!(
                    "the username is listed twice (as {:?} too; names are compared after Unicode NFKC normalisation and case folding)",
                    other.username
                )));
            }
            if let Some(bad) = entry
                .scopes
                .iter()
                .find(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
            {
                return Err(at(&format!(
                    "the scope {bad:?} is not one word (a scope has no spaces and is not empty)"
                )));
            }
            let mut principal = Principal::new(
                entry
                    .id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                entry.username.clone(),
            )
            .with_spaces(entry.spaces.clone())
            .with_roles(entry.roles.clone())
            .with_scopes(entry.scopes.clone());
            if let Some(email) = &entry.email {
                principal = principal.with_email(email.clone());
            }
            if let Some(name) = &entry.name {
                principal = principal.with_name(name.clone());
            }
            if let Some(until) = entry.active_until {
                principal = principal.with_active_until(until);
            }
            if let Some(secret) = &entry.totp_secret {
                let bytes = NewUser::new("", "")
                    .totp_base32(secret)
                    .map_err(|err| at(&err.to_string()))?
                    .totp_secret
                    .unwrap_or_default();
                principal = principal.with_totp_secret(bytes);
            }
            // The same check the store makes when the users are loaded.
            check_store
                .insert_hashed(principal.clone(), &entry.password_hash)
                .map_err(|err| at(&err.to_string()))?;
            for space in &principal.spaces {
                crate::tenant::SelectSpaceLayer::<crate::gateway::identity::GatewayClaims>::new()
                    .default_space(space)
                    .map_err(|err| at(&err.to_string()))?;
            }
            users.push((principal, entry.password_hash));
        }
        Ok(UsersFile { users })
    }

    /// The accounts, in a store.
    pub(crate) fn to_store(&self) -> Result<MemoryUsers, String> {
        let store = MemoryUsers::new().map_err(|err| err.to_string())?;
        for (principal, hash) in &self.users {
            store
                .insert_hashed(principal.clone(), hash)
                .map_err(|err| err.to_string())?;
        }
        Ok(store)
    }

    /// How many accounts the file holds.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }
}

/// `username` as it is compared with the others of a file: trimmed,
/// normalised to Unicode NFKC, lowercased, and normalised again (lowercasing
/// can undo a normal form), so that compatibility characters (fullwidth
/// letters, ligatures, the Kelvin sign) and case do not make a second name.
fn fold_username(username: &str) -> String {
    let compatible: String = username.trim().nfkc().collect();
    compatible.to_lowercase().nfkc().collect()
}

/// An argon2id hash of `password` in PHC form, with the parameters
/// [`MemoryUsers`] uses ([`crate::login::hash_password`], its error as text
/// for the command line).
pub fn hash_password(password: &str) -> Result<String, String> {
    crate::login::hash_password(password).map_err(|err| err.to_string())
}

/// A new account for [`add_user`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AddUser {
    /// The login name.
    pub username: String,
    /// Spaces, the first being the default.
    pub spaces: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes (each one word), minted as the `scope` claim.
    pub scopes: Vec<String>,
    /// A base32 TOTP secret, when a second step is required.
    pub totp_secret: Option<String>,
}

impl AddUser {
    /// An account named `username`, without spaces, roles or TOTP.
    pub fn new(username: impl Into<String>) -> Self {
        AddUser {
            username: username.into(),
            ..AddUser::default()
        }
    }

    /// With these spaces.
    pub fn with_spaces(mut self, spaces: Vec<String>) -> Self {
        self.spaces = spaces;
        self
    }

    /// With these roles.
    pub fn with_roles(mut self, roles: Vec<String>) -> Self {
        self.roles = roles;
        self
    }

    /// With these scopes.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// With this base32 TOTP secret.
    pub fn with_totp_secret(mut self, secret: Option<String>) -> Self {
        self.totp_secret = secret;
        self
    }
}

/// Appends `user` with `password` hashed to the users file at `path`
/// (created `0600` when absent). The password must pass the default
/// [`PasswordPolicy`]; the file is checked first and again with the new
/// account, so a name already there (after Unicode NFKC normalisation and
/// case folding), a bad secret or a malformed file is refused and the file
/// left as it was. The new file replaces the old one through a temporary
/// file of a random name in the same folder, created exclusively and synced
/// before the rename; the file's mode and owner are kept.
pub fn add_user(path: &Path, user: AddUser, password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let strength = PasswordPolicy::default().judge(password, &[user.username.as_str()]);
    if !strength.strong {
        return Err(format!(
            "the password is refused by the password policy: {}",
            strength.message
        ));
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let current =
        UsersFile::parse(&existing).map_err(|err| format!("{}: {err}", path.display()))?;
    if user.username.trim().is_empty() {
        return Err("a username is required".into());
    }
    let folded = fold_username(&user.username);
    if let Some((other, _)) = current
        .users
        .iter()
        .find(|(p, _)| fold_username(&p.username) == folded)
    {
        return Err(format!(
            "{}: a user named {:?} is already there ({:?} is the same name once Unicode-normalised (NFKC) and case-folded)",
            path.display(),
            other.username,
            user.username
        ));
    }
    let entry = UserEntry {
        username: user.username,
        id: Some(uuid::Uuid::new_v4().to_string()),
        password_hash: hash_password(password)?,
        spaces: user.spaces,
        roles: user.roles,
        scopes: user.scopes,
        totp_secret: user.totp_secret,
        email: None,
        name: None,
        active_until: None,
    };
    let table = toml::to_string(&FileForm { user: vec![entry] })
        .map_err(|err| format!("cannot write the account: {err}"))?;
    let mut updated = existing;
    if !updated.is_empty() && !updated.ends_with("\n\n") {
        updated.push_str(if updated.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        });
    }
    updated.push_str(&table);
    UsersFile::parse(&updated)?;
    replace_file(path, updated.as_bytes())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// Replaces the file at `path` (or the file a link there points to) with
/// `contents`, atomically: written to a new file of a random name in the
/// same folder (created exclusively: a file or link already under that name
/// makes it fail, never followed), given the old file's mode and owner (or
/// `0600`), synced, renamed over `path`, and the folder synced.
fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;

    // Through a link, the file it points to is replaced, not the link.
    let target = match std::fs::canonicalize(path) {
        Ok(target) => target,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => path.to_owned(),
        Err(err) => return Err(err),
    };
    let folder = match target.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "users.toml".to_owned());
    let old = match std::fs::metadata(&target) {
        Ok(metadata) => Some(metadata),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let temporary = folder.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    let written = (|| {
        file.write_all(contents)?;
        #[cfg(unix)]
        if let Some(old) = &old {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let current = file.metadata()?;
            if current.uid() != old.uid() || current.gid() != old.gid() {
                std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
        }
        #[cfg(not(unix))]
        let _ = &old;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    // The rename itself outlives a crash once the folder is synced; a
    // system that cannot sync a folder has written the file all the same.
    if let Ok(folder) = std::fs::File::open(&folder) {
        let _ = folder.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::Authenticator;

    const ADMIN_PASSWORD: &str = "correct horse battery staple";
    const OPS_PASSWORD: &str = "vivid-lantern-orbit-42";

    #[test]
    fn names_fold_to_one_form() {
        assert_eq!(
            fold_username("\u{ff21}\u{ff24}\u{ff2d}\u{ff29}\u{ff2e}"),
            "admin"
        );
        assert_eq!(fold_username("\u{212a}elvin"), "kelvin");
        assert_eq!(fold_username("o\u{fb03}ce"), "office");
        assert_eq!(fold_username(" Admin "), "admin");
        assert_ne!(fold_username("admin"), fold_username("admin2"));
    }

    #[tokio::test]
    async fn added_users_log_in_with_their_password() {
        let dir = std::env::temp_dir().join(format!("authgate-users-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        add_user(
            &path,
            AddUser::new("admin")
                .with_spaces(vec!["default_space".into()])
                .with_scopes(vec!["audit:read".into()]),
            ADMIN_PASSWORD,
        )
        .unwrap();
        assert!(
            add_user(
                &path,
                AddUser::new("spaced").with_scopes(vec!["audit read".into()]),
                OPS_PASSWORD
            )
            .unwrap_err()
            .contains("not one word")
        );
        add_user(&path, AddUser::new("ops"), OPS_PASSWORD).unwrap();
        for look_alike in ["ADMIN", "\u{ff21}dmin", " admin "] {
            assert!(
                add_user(&path, AddUser::new(look_alike), OPS_PASSWORD)
                    .unwrap_err()
                    .contains("already there"),
                "{look_alike:?}"
            );
        }
        assert!(
            add_user(&path, AddUser::new("weak"), "password1")
                .unwrap_err()
                .contains("password policy")
        );
        let users = UsersFile::load(&path).unwrap();
        assert_eq!(users.len(), 2);
        let store = users.to_store().unwrap();
        let admin = store.authenticate("admin", ADMIN_PASSWORD).await.unwrap();
        assert_eq!(admin.spaces, ["default_space"]);
        assert_eq!(admin.scopes, ["audit:read"]);
        assert!(store.authenticate("admin", OPS_PASSWORD).await.is_err());
        assert!(store.authenticate("ops", OPS_PASSWORD).await.is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(
            UsersFile::parse("[[user]]\nusername = \"a\"\npassword_hash = \"plain\"\n")
                .unwrap_err()
                .contains("user[0] (a)")
        );
        assert!(
            UsersFile::parse("[[user]]\nusername = \"a\"\n")
                .unwrap_err()
                .contains("line")
        );
        let hash = hash_password("x").unwrap();
        for look_alike in ["A", "\u{ff41}"] {
            let twice = format!(
                "[[user]]\nusername = \"a\"\npassword_hash = \"{hash}\"\n[[user]]\nusername = \"{look_alike}\"\npassword_hash = \"{hash}\"\n"
            );
            assert!(UsersFile::parse(&twice).unwrap_err().contains("twice"));
        }
        let bad_totp = format!(
            "[[user]]\nusername = \"a\"\npassword_hash = \"{hash}\"\ntotp_secret = \"!!\"\n"
        );
        assert!(UsersFile::parse(&bad_totp).is_err());
    }
}
