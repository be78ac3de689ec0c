//! The inSCADA API: form login, JWTs in `HttpOnly` cookies, transparent
//! renewal, spaces, and an optional TOTP step.
//!
//! - `POST /login` with `multipart/form-data` or
//!   `application/x-www-form-urlencoded` fields `username`, `password` →
//!   `200`, `Set-Cookie: ins_access_token=…; Path=/; Max-Age=300; HttpOnly;
//!   SameSite=Lax` and `ins_refresh_token` (`Max-Age=86400`), `Secure` unless
//!   development mode is chosen, and the body
//!   `{"expire-seconds":300,"spaces":["default_space","production"]}`.
//!   These lifetimes are the preset's defaults
//!   ([`CookieSession::with_lifetimes`] changes them).
//! - For an account with TOTP, `POST /login` answers
//!   `{"otp-required":true,"expire-seconds":…}` and sets a short-lived
//!   `ins_otp_token` cookie; `POST /login/otp` with the field `otp` (same
//!   content types) then sets the session cookies.
//! - `POST /logout` revokes the session and clears the cookies (`204`).
//! - [`CookieSession::auth_layer`] reads `ins_access_token`, renews it from
//!   `ins_refresh_token` when it is missing or expired, and refuses revoked
//!   tokens.
//! - Failed logins count in the [`LoginFlow`]'s lockout, shared with every
//!   other preset on that flow: by default five lock an account for ten
//!   minutes ([`Lockout::default`]).
//! - [`locked_users_router`]: `GET /api/auth/lockedUsers` (paged with
//!   `Offset`, `Limit`, `OrderBy`) and `DELETE /api/auth/lockedUsers/{username}`
//!   for administrators.
//!
//! Errors answer `{"status":…,"error":"…","message":"…"}` ([`InscadaFormat`])
//! with `WWW-Authenticate: FormBased` on a `401`.
//!
//! # Where the preset departs from the document, and why
//!
//! - Cookies carry `Secure` unless [`CookieSettings::development`] is
//!   chosen: the document requires HTTPS in production and shows the
//!   development server's cookies.
//! - `Set-Cookie` lists the document's attributes in the `cookie` crate's
//!   order (`HttpOnly; SameSite=Lax; Path=/; Max-Age=300`); RFC 6265 gives
//!   the order no meaning.
//! - The document gives no wire format for the OTP step, the locked-users
//!   list or errors: `/login/otp`, `otp`, `otp-required`, `ins_otp_token`,
//!   the list's fields and the error object are this crate's.
//! - A locked account answers `423` with `Retry-After` (the document names
//!   no status); unknown usernames lock alike, so the answer never tells
//!   which accounts exist.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthLayer, CookieRenewal};
use crate::cookie::CookieSettings;
use crate::error::ConfigError;
use crate::lockout::Lockout;
use crate::login::{
    AuthClaims, LoginError, LoginFlow, LoginOutcome, PairLifetimes, Principal, normalize_username,
};
use crate::token::{SharedClaims, TokenSource, TokenSources, VerifiedToken, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, Paging, no_store, read_body,
    rejections_in_format, required, with_preset,
};

/// The access cookie's name.
pub const ACCESS_COOKIE: &str = "ins_access_token";
/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "ins_refresh_token";
/// The cookie that carries the otp-pending token between the two steps.
pub const OTP_COOKIE: &str = "ins_otp_token";
/// The access token's lifetime the document shows: 300 seconds.
pub const ACCESS_SECONDS: u64 = 300;
/// The refresh token's lifetime the document shows: 86 400 seconds.
pub const REFRESH_SECONDS: u64 = 86_400;

/// The inSCADA error format: `{"status":…,"error":"…","message":"…"}`, and
/// `WWW-Authenticate: FormBased` on a `401`. Give it to a layer's
/// `on_rejection` to answer its refusals in this format.
#[derive(Debug, Clone, Copy, Default)]
pub struct InscadaFormat;

impl ErrorFormat for InscadaFormat {
    const CHALLENGE: Option<&'static str> = Some("FormBased");

    fn render(failure: &Failure) -> Response {
        let reason = failure.status.canonical_reason().unwrap_or("Error");
        let body = json!({
            "status": failure.status.as_u16(),
            "error": reason,
            "message": failure.message,
        });
        (failure.status, Json(body)).into_response()
    }
}

rejections_in_format!(InscadaFormat);

/// An error of the inSCADA routes.
pub type InscadaError = ApiError<InscadaFormat>;

/// The cookie-session preset.
#[derive(Clone, Debug)]
pub struct CookieSession {
    flow: LoginFlow,
    lifetimes: PairLifetimes,
    cookies: CookieSettings,
    access_cookie: String,
    refresh_cookie: String,
    otp_cookie: String,
}

impl CookieSession {
    /// The preset over `flow`, as the document describes it: access tokens
    /// of 300 s, refresh tokens of 86 400 s, failed logins counted in the
    /// flow's lockout (by default five lock an account for ten minutes),
    /// and `Secure` cookies.
    pub fn new(flow: LoginFlow) -> Self {
        let flow = flow.named_if_unnamed("cookie_session");
        CookieSession {
            flow,
            lifetimes: PairLifetimes::new()
                .with_access(ACCESS_SECONDS)
                .with_refresh(REFRESH_SECONDS),
            cookies: CookieSettings::default(),
            access_cookie: ACCESS_COOKIE.into(),
            refresh_cookie: REFRESH_COOKIE.into(),
            otp_cookie: OTP_COOKIE.into(),
        }
    }

    /// Names the cookies `__Host-ins_access_token`, `__Host-ins_refresh_token`
    /// and `__Host-ins_otp_token`: browsers then refuse them unless they are
    /// `Secure`, for `Path=/` and without `Domain`, so a sibling subdomain
    /// cannot plant or overwrite them (RFC 6265bis §4.1.3.2). Call it after
    /// [`with_cookies`](Self::with_cookies); it is refused for development
    /// (non-`Secure`) cookies.
    pub fn with_host_prefix(mut self) -> Result<Self, ConfigError> {
        if !self.cookies.allows_host_prefix() {
            return Err(ConfigError::HostPrefixNeedsSecure);
        }
        self.access_cookie = format!("__Host-{ACCESS_COOKIE}");
        self.refresh_cookie = format!("__Host-{REFRESH_COOKIE}");
        self.otp_cookie = format!("__Host-{OTP_COOKIE}");
        Ok(self)
    }

    /// With these token lifetimes (seconds) instead of the document's 300
    /// and 86 400.
    pub fn with_lifetimes(mut self, access: u64, refresh: u64) -> Self {
        self.lifetimes = PairLifetimes::new()
            .with_access(access)
            .with_refresh(refresh);
        self
    }

    /// With these cookie attributes (for example
    /// `CookieSettings::default().development()` on plain HTTP).
    pub fn with_cookies(mut self, cookies: CookieSettings) -> Self {
        self.cookies = cookies;
        self
    }

    /// The access cookie's name in force.
    pub fn access_cookie_name(&self) -> &str {
        &self.access_cookie
    }

    /// `POST /login`, `POST /login/otp` and `POST /logout`.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/login", post(login))
            .route("/login/otp", post(login_otp))
            .route("/logout", post(logout));
        with_preset(routes, self.clone())
    }

    /// An [`AuthLayer`] for the API routes: the token from
    /// `ins_access_token`, transparent renewal from `ins_refresh_token`,
    /// revoked tokens refused, refusals in the inSCADA format. `verifier`
    /// must accept the issuer's key.
    pub fn auth_layer<C>(
        &self,
        verifier: Verifier,
    ) -> Result<AuthLayer<C, InscadaFormat>, ConfigError> {
        Ok(AuthLayer::new(verifier)
            .sources(TokenSources::single(TokenSource::try_cookie(
                self.access_cookie.clone(),
            )?))
            .revocations(self.flow.issuer().revocations())
            .cookie_renewal(self.cookie_renewal()?)?
            .on_rejection(InscadaFormat))
    }

    /// An [`AuthLayer`] for routes that the clients of several presets
    /// share: the token from this preset's access cookie (renewed from its
    /// refresh cookie, `__Host-` names included after
    /// [`with_host_prefix`](Self::with_host_prefix)), from
    /// `Authorization: Bearer` (the datarhei Core, Scailable and RegScale
    /// clients) or from `X-Auth-Token` (the Workflow API's clients), in
    /// that order; revoked tokens refused. Refusals answer with the RFC
    /// 6750 headers and an empty body: give the layer the routes' own
    /// format with [`AuthLayer::on_rejection`]. `verifier` must accept the
    /// keys and issuers of every preset whose tokens the routes take.
    pub fn shared_auth_layer<C>(&self, verifier: Verifier) -> Result<AuthLayer<C>, ConfigError> {
        let sources = TokenSources::new([
            TokenSource::try_cookie(self.access_cookie.clone())?,
            TokenSource::bearer(),
            TokenSource::header(super::x_auth_token::X_AUTH_TOKEN),
        ])?;
        AuthLayer::new(verifier)
            .sources(sources)
            .revocations(self.flow.issuer().revocations())
            .cookie_renewal(self.cookie_renewal()?)
    }

    /// The transparent renewal of this preset's access cookie from its
    /// refresh cookie, for an [`AuthLayer`] of the application's own: the
    /// account is read again on each renewal, and the new cookie lives as
    /// long as a login's.
    pub fn cookie_renewal(&self) -> Result<CookieRenewal, ConfigError> {
        CookieRenewal::new(
            &self.access_cookie,
            &self.refresh_cookie,
            self.cookies.clone(),
            Arc::new(self.flow.access_renewal(self.lifetimes.access)),
        )
    }

    fn session_response(
        &self,
        principal: &Principal,
        lifetimes: PairLifetimes,
    ) -> Result<Response, InscadaError> {
        let pair = self.flow.issuer().issue_pair(principal, lifetimes)?;
        let mut response = Json(json!({
            "expire-seconds": pair.access.claims.exi,
            "spaces": principal.spaces,
        }))
        .into_response();
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            self.cookies.set(
                &self.access_cookie,
                &pair.access.token,
                pair.access.claims.exi,
            ),
        );
        if let Some(refresh) = &pair.refresh {
            headers.append(
                header::SET_COOKIE,
                self.cookies
                    .set(&self.refresh_cookie, &refresh.token, refresh.claims.exi),
            );
        }
        Ok(no_store(response))
    }

    /// The token in the cookie `name`, if any.
    fn cookie_token<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Failure> {
        let source =
            TokenSource::try_cookie(name).map_err(|e| Failure::bad_request(e.to_string()))?;
        TokenSources::single(source)
            .find(headers)
            .map(|found| found.map(|f| f.token))
            .map_err(|reason| Failure::bad_request(reason.description()))
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct OtpForm {
    otp: Option<String>,
}

async fn login(
    State(preset): State<Arc<CookieSession>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, InscadaError> {
    let form: LoginForm = read_body(request, Accept::Form).await?;
    let username = required(form.username, "username")?;
    let password = required(form.password, "password")?;
    let outcome = preset
        .flow
        .password(&username, &password, client.0, preset.lifetimes)
        .await?;
    match outcome {
        LoginOutcome::Authenticated(principal) => {
            preset.session_response(&principal, preset.lifetimes)
        }
        LoginOutcome::TotpRequired(pending) => {
            let mut response = Json(json!({
                "otp-required": true,
                "expire-seconds": pending.claims.exi,
            }))
            .into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                preset
                    .cookies
                    .set(&preset.otp_cookie, &pending.token, pending.claims.exi),
            );
            Ok(no_store(response))
        }
    }
}

async fn login_otp(
    State(preset): State<Arc<CookieSession>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, InscadaError> {
    let pending = CookieSession::cookie_token(request.headers(), &preset.otp_cookie)?
        .ok_or(LoginError::InvalidOtp)?
        .to_owned();
    let form: OtpForm = read_body(request, Accept::Form).await?;
    let code = required(form.otp, "otp")?;
    let accepted = preset.flow.totp(&pending, &code, client.0).await?;
    let mut response = preset.session_response(&accepted.principal, accepted.lifetimes)?;
    response
        .headers_mut()
        .append(header::SET_COOKIE, preset.cookies.clear(&preset.otp_cookie));
    Ok(response)
}

async fn logout(
    State(preset): State<Arc<CookieSession>>,
    headers: HeaderMap,
) -> Result<Response, InscadaError> {
    for name in [&preset.access_cookie, &preset.refresh_cookie] {
        if let Some(token) = CookieSession::cookie_token(&headers, name)? {
            // A token that no longer verifies needs no revocation; a store
            // that cannot be reached must not be mistaken for success.
            if let Err(LoginError::Unavailable(err)) = preset.flow.issuer().revoke(token).await {
                return Err(LoginError::Unavailable(err).into());
            }
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [&preset.access_cookie, &preset.refresh_cookie] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, preset.cookies.clear(name));
    }
    Ok(response)
}

/// `GET /api/auth/lockedUsers` (the inSCADA API) and
/// `DELETE /api/auth/lockedUsers/{username}` to unlock one, for
/// administrators (role `admin`).
///
/// Put it behind the API's [`AuthLayer`] (`SharedClaims<AuthClaims>`); without it
/// the routes answer `500` naming the missing layer. The list answers
/// `[{"username","lockedUntil","retryAfter","failures"}]`.
pub fn locked_users_router(lockout: Lockout) -> Router {
    let routes = Router::new()
        .route("/api/auth/lockedUsers", get(locked_users))
        .route("/api/auth/lockedUsers/{username}", delete(unlock_user));
    with_preset(routes, lockout)
}

/// Refuses (`403 insufficient_scope`, in the inSCADA format) a caller
/// whose token does not grant the role `admin`.
fn administrator(token: &VerifiedToken) -> Result<(), InscadaError> {
    super::require(super::administrators(), token).map_err(Into::into)
}

async fn locked_users(
    State(lockout): State<Arc<Lockout>>,
    _claims: SharedClaims<AuthClaims>,
    token: VerifiedToken,
    paging: Paging<InscadaFormat>,
) -> Result<Response, InscadaError> {
    administrator(&token)?;
    let locked = lockout.locked().await.map_err(LoginError::Unavailable)?;
    let now = lockout.now();
    let list: Vec<_> = locked
        .into_iter()
        .map(|account| {
            json!({
                "username": account.account,
                "lockedUntil": account.locked_until,
                "retryAfter": account.locked_until.saturating_sub(now),
                "failures": account.failures,
            })
        })
        .collect();
    let page = paging.apply(list, &["username", "lockedUntil", "retryAfter", "failures"])?;
    Ok(Json(page).into_response())
}

async fn unlock_user(
    State(lockout): State<Arc<Lockout>>,
    _claims: SharedClaims<AuthClaims>,
    token: VerifiedToken,
    Path(username): Path<String>,
) -> Result<Response, InscadaError> {
    administrator(&token)?;
    lockout
        .unlock(&normalize_username(&username))
        .await
        .map_err(LoginError::Unavailable)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
