//! `Set-Cookie` values for session cookies, built with the `cookie` crate:
//! `name=value; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=300`, without
//! `Secure` only when development mode is chosen explicitly. (The inSCADA
//! document lists the same attributes as `Path=/; Max-Age=300; HttpOnly;
//! SameSite=Lax`; RFC 6265 gives their order no meaning.)
//!
//! Cookies of a request are read on the hot path by
//! [`TokenSources`](crate::token::TokenSources), with a scan of their own:
//! see its docs for why.

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
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        };
        let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
        let cookie = cookie::Cookie::build((name, value))
            .path(self.path.as_str())
            .max_age(cookie::time::Duration::seconds(max_age))
            .http_only(true)
            .same_site(same_site)
            .secure(self.secure)
            .build();
        // Names are checked when configured, values are base64url tokens and
        // the path is checked when set; an unexpected byte yields an expired,
        // empty cookie rather than a panic.
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// `Set-Cookie` that removes `name`.
    pub fn clear(&self, name: &str) -> HeaderValue {
        self.set(name, "", 0)
    }
}
