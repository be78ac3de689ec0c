//! The inSCADA API: form login, JWTs in `HttpOnly` cookies, transparent
//! renewal, spaces, and an optional TOTP step.
//!
//! - `POST /login` with `multipart/form-data` or
//!   `application/x-www-form-urlencoded` fields `username`, `password` →
//!   `200`, `Set-Cookie: ins_access_token=…; Path=/; Max-Age=300; HttpOnly;
//!   SameSite=Lax` and `ins_refresh_token` (`Max-Age=86400`), `Secure` unless
//!   development mode is chosen, and the body
//!   `{"expire-seconds":300,"spaces":["default_space","production"]}`.
//!   The lifetimes are the issuer's ([`Lifetimes`](crate::login::Lifetimes)):
//!   configure it with 300 and 86 400 seconds to match the document.
//! - For an account with TOTP, `POST /login` answers
//!   `{"otp-required":true,"expire-seconds":…}` and sets a short-lived
//!   `ins_otp_token` cookie; `POST /login/otp` with the field `otp` (same
//!   content types) then sets the session cookies.
//! - `POST /logout` revokes the session and clears the cookies (`204`).
//! - [`CookieSession::auth_layer`] reads `ins_access_token`, renews it from
//!   `ins_refresh_token` when it is missing or expired, and refuses revoked
//!   tokens.
//! - [`locked_users_router`]: `GET /api/auth/lockedUsers` and
//!   `DELETE /api/auth/lockedUsers/{username}` for administrators.
//!
//! Errors answer `{"status":…,"error":"…","message":"…"}` ([`InscadaFormat`])
//! with `WWW-Authenticate: FormBased` on a `401`.

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
    AuthClaims, LoginError, LoginFlow, LoginOutcome, Principal, normalize_username,
};
use crate::token::{Claims, TokenSource, TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, no_store, read_body, rejections_in_format,
    required, with_preset,
};

/// The access cookie's name.
pub const ACCESS_COOKIE: &str = "ins_access_token";
/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "ins_refresh_token";
/// The cookie that carries the otp-pending token between the two steps.
pub const OTP_COOKIE: &str = "ins_otp_token";

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
    cookies: CookieSettings,
    access_cookie: String,
    refresh_cookie: String,
    otp_cookie: String,
}

impl CookieSession {
    /// The preset over `flow`, with `Secure` cookies.
    pub fn new(flow: LoginFlow) -> Self {
        CookieSession {
            flow,
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
        let issuer = Arc::clone(self.flow.issuer());
        let renewal = CookieRenewal::new(
            &self.access_cookie,
            &self.refresh_cookie,
            self.cookies.clone(),
            issuer.clone(),
        )?;
        Ok(AuthLayer::new(verifier)
            .sources(TokenSources::single(TokenSource::try_cookie(
                self.access_cookie.clone(),
            )?))
            .revocations(issuer.revocations())
            .cookie_renewal(renewal)
            .on_rejection(InscadaFormat))
    }

    fn session_response(&self, principal: &Principal) -> Result<Response, InscadaError> {
        let pair = self.flow.issuer().issue_pair(principal, None)?;
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
    match preset.flow.password(&username, &password, client.0).await? {
        LoginOutcome::Authenticated(principal) => preset.session_response(&principal),
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
    let principal = preset.flow.totp(&pending, &code, client.0).await?;
    let mut response = preset.session_response(&principal)?;
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
/// Put it behind the API's [`AuthLayer`] (`Claims<AuthClaims>`); without it
/// the routes answer `500` naming the missing layer. The list answers
/// `[{"username","lockedUntil","retryAfter","failures"}]`.
pub fn locked_users_router(lockout: Lockout) -> Router {
    let routes = Router::new()
        .route("/api/auth/lockedUsers", get(locked_users))
        .route("/api/auth/lockedUsers/{username}", delete(unlock_user));
    with_preset(routes, lockout)
}

/// The caller's claims, when they hold the role `admin`.
fn administrator(claims: &AuthClaims) -> Result<(), InscadaError> {
    if claims.principal().has_role("admin") {
        Ok(())
    } else {
        Err(Failure::new(StatusCode::FORBIDDEN, "administrators only").into())
    }
}

async fn locked_users(
    State(lockout): State<Arc<Lockout>>,
    Claims(claims): Claims<AuthClaims>,
) -> Result<Response, InscadaError> {
    administrator(&claims)?;
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
    Ok(Json(list).into_response())
}

async fn unlock_user(
    State(lockout): State<Arc<Lockout>>,
    Claims(claims): Claims<AuthClaims>,
    Path(username): Path<String>,
) -> Result<Response, InscadaError> {
    administrator(&claims)?;
    lockout
        .unlock(&normalize_username(&username))
        .await
        .map_err(LoginError::Unavailable)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
