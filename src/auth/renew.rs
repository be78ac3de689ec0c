//! Transparent renewal of an expired or missing access cookie from the
//! refresh cookie, through the narrow [`RenewAccess`] trait: the guard side
//! asks for a new access token and knows nothing of how it is minted.

use std::sync::Arc;

use crate::BoxFuture;
use crate::cookie::CookieSettings;
use crate::error::ConfigError;
use crate::token::TokenSource;

/// A new access token minted from a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewedAccess {
    /// The compact JWT.
    pub token: String,
    /// Its lifetime in seconds (the new cookie's `Max-Age`).
    pub lifetime: u64,
}

impl RenewedAccess {
    /// A renewed access token and its lifetime in seconds.
    pub fn new(token: String, lifetime: u64) -> Self {
        RenewedAccess { token, lifetime }
    }
}

/// Why a refresh token renewed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewalError {
    /// The refresh token is invalid, expired, revoked, or its account may no
    /// longer sign in: the request is judged as if it had no renewal.
    #[error("the refresh token renews nothing")]
    Refused,
    /// A store needed to decide cannot be reached: the request fails closed
    /// with `503`.
    #[error("renewal is temporarily unavailable")]
    Unavailable,
}

/// Mints a new access token from a refresh token, for [`CookieRenewal`].
///
/// The issuer side implements it with
/// [`AccessRenewal`](crate::login::AccessRenewal) (feature `login`), which
/// [`LoginFlow::access_renewal`](crate::login::LoginFlow::access_renewal)
/// returns and [`CookieSession::cookie_renewal`](crate::schemes::cookie_session::CookieSession::cookie_renewal)
/// uses: the refresh token is redeemed by the flow's issuer and the
/// account read again through its [`Authenticator`](crate::login::Authenticator)
/// (one `find`), so a removed account renews nothing and an unreachable
/// store answers [`RenewalError::Unavailable`] (`503`), never a sign-out.
/// A [`TokenIssuer`](crate::login::TokenIssuer) alone is not one. An
/// application that mints tokens elsewhere implements this one method.
pub trait RenewAccess: Send + Sync + 'static {
    /// A new access token for the holder of `refresh_token`, which stays
    /// valid (it is not rotated).
    fn renew_access<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<RenewedAccess, RenewalError>>;
}

/// Transparent renewal of an expired or missing access cookie from a valid
/// refresh cookie (the inSCADA API): the request goes through and its
/// response carries a fresh access cookie, but only when the request
/// passed every check: a refusal by a layer inside the
/// [`AuthLayer`](crate::auth::AuthLayer) (CSRF, space, address; any
/// response marked [`RefusedBy`](crate::reject::RefusedBy)) or a `401` or
/// `403` from the service gets no cookie. The refresh token is not rotated,
/// so many concurrent requests may renew from one refresh cookie.
#[derive(Clone)]
pub struct CookieRenewal {
    pub(crate) access_cookie: String,
    pub(crate) refresh_cookie: String,
    pub(crate) cookies: CookieSettings,
    pub(crate) renewer: Arc<dyn RenewAccess>,
}

impl std::fmt::Debug for CookieRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieRenewal")
            .field("access_cookie", &self.access_cookie)
            .field("refresh_cookie", &self.refresh_cookie)
            .field("cookies", &self.cookies)
            .finish_non_exhaustive()
    }
}

impl CookieRenewal {
    /// Renew the `access_cookie` from the `refresh_cookie` with `renewer`
    /// (such as `Arc::new(flow.access_renewal(None))`); new cookies get
    /// `cookies`' attributes.
    pub fn new(
        access_cookie: &str,
        refresh_cookie: &str,
        cookies: CookieSettings,
        renewer: Arc<dyn RenewAccess>,
    ) -> Result<Self, ConfigError> {
        TokenSource::try_cookie(access_cookie)?;
        TokenSource::try_cookie(refresh_cookie)?;
        Ok(CookieRenewal {
            access_cookie: access_cookie.to_owned(),
            refresh_cookie: refresh_cookie.to_owned(),
            cookies,
            renewer,
        })
    }
}
