//! `Set-Cookie` values for session cookies, written in the attribute order of
//! the inSCADA API: `name=value; Path=/; Max-Age=300; HttpOnly; SameSite=Lax`,
//! with `; Secure` appended unless development mode is chosen explicitly.

use http::HeaderValue;

use crate::error::ConfigError;

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (the default).
    #[default]
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

/// Attributes shared by the session cookies of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    path: String,
    same_site: SameSite,
    secure: bool,
}

impl Default for CookieSettings {
    /// `Path=/; HttpOnly; SameSite=Lax; Secure`.
    fn default() -> Self {
        CookieSettings {
            path: "/".into(),
            same_site: SameSite::Lax,
            secure: true,
        }
    }
}

impl CookieSettings {
    /// Cookies without `Secure`, for plain-HTTP development servers only.
    pub fn development(mut self) -> Self {
        self.secure = false;
        self
    }

    /// Whether cookie names may carry the `__Host-` prefix (RFC 6265bis
    /// §4.1.3.2): `Secure`, `Path=/`, no `Domain`.
    pub fn allows_host_prefix(&self) -> bool {
        self.secure && self.path == "/"
    }

    /// Whether cookies carry `Secure`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// With this `SameSite` value; `None` forces `Secure`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        if same_site == SameSite::None {
            self.secure = true;
        }
        self
    }

    /// With this `Path`.
    pub fn path(mut self, path: &str) -> Result<Self, ConfigError> {
        if !path.starts_with('/') || path.bytes().any(|b| b == b';' || !b.is_ascii_graphic()) {
            return Err(ConfigError::InvalidHeaderValue(path.to_owned()));
        }
        self.path = path.to_owned();
        Ok(self)
    }

    /// `Set-Cookie` for `name=value` living `max_age` seconds.
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}",
            self.path
        );
        // Names are checked when configured, values are base64url tokens and
        // the path is checked above; an unexpected byte yields an expired,
        // empty cookie rather than a panic.
        HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// `Set-Cookie` that removes `name`.
    pub fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", 0)
    }
}
