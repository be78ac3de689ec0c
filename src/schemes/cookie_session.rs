//! Document 000 (inSCADA): form login, JWTs in `HttpOnly` cookies, transparent
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
//!
//! Errors answer `{"status":…,"error":"…","message":"…"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthLayer, CookieRenewal};
use crate::cookie::CookieSettings;
use crate::error::ConfigError;
use crate::login::{LoginError, LoginFlow, LoginOutcome, Principal, TokenPair};
use crate::token::{TokenSource, TokenSources, Verifier};

use super::{Failure, LOGIN_BODY_LIMIT, LoginClient, body_bytes, no_store};

/// The access cookie's name.
pub const ACCESS_COOKIE: &str = "ins_access_token";
/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "ins_refresh_token";
/// The cookie that carries the otp-pending token between the two steps.
pub const OTP_COOKIE: &str = "ins_otp_token";

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
    /// [`cookies`](Self::cookies); it is refused for development (non-`Secure`)
    /// cookies.
    pub fn host_prefixed(mut self) -> Result<Self, ConfigError> {
        if !self.cookies.allows_host_prefix() {
            return Err(ConfigError::HostPrefixNeedsSecure);
        }
        self.access_cookie = format!("__Host-{ACCESS_COOKIE}");
        self.refresh_cookie = format!("__Host-{REFRESH_COOKIE}");
        self.otp_cookie = format!("__Host-{OTP_COOKIE}");
        Ok(self)
    }

    /// The access cookie's name in force.
    pub fn access_cookie_name(&self) -> &str {
        &self.access_cookie
    }

    /// With these cookie attributes (for example
    /// `CookieSettings::default().development()` on plain HTTP).
    pub fn cookies(mut self, cookies: CookieSettings) -> Self {
        self.cookies = cookies;
        self
    }

    /// `POST /login`, `POST /login/otp` and `POST /logout`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/login/otp", post(login_otp))
            .route("/logout", post(logout))
            .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
            .with_state(Arc::new(self.clone()))
    }

    /// An [`AuthLayer`] for the API routes: the token from
    /// `ins_access_token`, transparent renewal from `ins_refresh_token`,
    /// revoked tokens refused. `verifier` must accept the issuer's key.
    pub fn auth_layer<C>(&self, verifier: Verifier) -> Result<AuthLayer<C>, ConfigError> {
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
            .cookie_renewal(renewal))
    }

    fn session_response(&self, pair: &TokenPair, principal_spaces: &[String]) -> Response {
        let mut response = Json(json!({
            "expire-seconds": pair.access.claims.exi,
            "spaces": principal_spaces,
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
        no_store(response)
    }

    fn tokens_for(&self, principal: &Principal) -> Response {
        match self.flow.issuer().issue_pair(principal, None) {
            Ok(pair) => self.session_response(&pair, &principal.spaces),
            Err(err) => error_response(err.into()),
        }
    }
}

fn error_response(failure: Failure) -> Response {
    let response = error_body(&failure);
    failure.finish(response)
}

fn error_body(failure: &Failure) -> Response {
    let reason = failure.status.canonical_reason().unwrap_or("Error");
    let mut response = (
        failure.status,
        Json(json!({
            "status": failure.status.as_u16(),
            "error": reason,
            "message": failure.message,
        })),
    )
        .into_response();
    if failure.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("FormBased"),
        );
    }
    response
}

#[derive(Default, Deserialize)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
    otp: Option<String>,
}

const MAX_FIELDS: usize = 16;

/// Reads `multipart/form-data` or `application/x-www-form-urlencoded`.
async fn read_form(request: Request) -> Result<LoginForm, Failure> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| Failure::bad_request(e.body_text()))?;
        let mut form = LoginForm::default();
        let mut fields = 0;
        while let Some(field) = multipart.next_field().await.map_err(multipart_failure)? {
            fields += 1;
            if fields > MAX_FIELDS {
                return Err(Failure::bad_request("too many form fields"));
            }
            let name = field.name().unwrap_or("").to_owned();
            let value = field.text().await.map_err(multipart_failure)?;
            match name.as_str() {
                "username" => form.username = Some(value),
                "password" => form.password = Some(value),
                "otp" => form.otp = Some(value),
                _ => {}
            }
        }
        Ok(form)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = body_bytes(Bytes::from_request(request, &()).await)?;
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| Failure::bad_request(format!("malformed form body: {e}")))
    } else {
        Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected multipart/form-data or application/x-www-form-urlencoded",
        ))
    }
}

fn multipart_failure(err: axum::extract::multipart::MultipartError) -> Failure {
    let status = err.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Failure::new(status, "the request body is too large")
    } else {
        Failure::bad_request(format!("malformed multipart body: {}", err.body_text()))
    }
}

fn required(value: Option<String>, name: &str) -> Result<String, Failure> {
    value.ok_or_else(|| {
        let mut failure = Failure::bad_request(format!("missing field `{name}`"));
        failure.field = Some(name.to_owned());
        failure
    })
}

async fn login(
    State(preset): State<Arc<CookieSession>>,
    client: LoginClient,
    request: Request,
) -> Response {
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(failure) => return error_response(failure),
    };
    let (username, password) = match (
        required(form.username, "username"),
        required(form.password, "password"),
    ) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(f), _) | (_, Err(f)) => return error_response(f),
    };
    match preset
        .flow
        .password_from(&username, &password, client.0)
        .await
    {
        Ok(LoginOutcome::Authenticated(principal)) => preset.tokens_for(&principal),
        Ok(LoginOutcome::TotpRequired(pending)) => {
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
            response
        }
        Err(err) => error_response(err.into()),
    }
}

fn cookie_token<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Failure> {
    let source = TokenSource::try_cookie(name).map_err(|e| Failure::bad_request(e.to_string()))?;
    TokenSources::single(source)
        .find(headers)
        .map(|found| found.map(|f| f.token))
        .map_err(Failure::from)
}

async fn login_otp(
    State(preset): State<Arc<CookieSession>>,
    client: LoginClient,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let pending = match cookie_token(&headers, &preset.otp_cookie) {
        Ok(Some(token)) => token.to_owned(),
        Ok(None) => return error_response(LoginError::InvalidOtp.into()),
        Err(failure) => return error_response(failure),
    };
    let code = match read_form(request)
        .await
        .and_then(|f| required(f.otp, "otp"))
    {
        Ok(code) => code,
        Err(failure) => return error_response(failure),
    };
    match preset.flow.totp_from(&pending, &code, client.0).await {
        Ok(principal) => {
            let mut response = preset.tokens_for(&principal);
            response
                .headers_mut()
                .append(header::SET_COOKIE, preset.cookies.clear(&preset.otp_cookie));
            response
        }
        Err(err) => error_response(err.into()),
    }
}

async fn logout(State(preset): State<Arc<CookieSession>>, headers: HeaderMap) -> Response {
    for name in [&preset.access_cookie, &preset.refresh_cookie] {
        if let Ok(Some(token)) = cookie_token(&headers, name) {
            // A token that no longer verifies needs no revocation; a store
            // that cannot be reached must not be mistaken for success.
            if let Err(LoginError::Unavailable(err)) = preset.flow.issuer().revoke(token).await {
                return error_response(LoginError::Unavailable(err).into());
            }
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [&preset.access_cookie, &preset.refresh_cookie] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, preset.cookies.clear(name));
    }
    response
}

/// `GET /api/auth/lockedUsers` (document 000) and
/// `DELETE /api/auth/lockedUsers/{username}` to unlock one, for
/// administrators (role `admin`).
///
/// Put it behind the API's [`AuthLayer`] (`Claims<AuthClaims>`); without it
/// the routes answer `500` naming the missing layer. The list answers
/// `[{"username","lockedUntil","retryAfter","failures"}]`.
pub fn locked_users_router(lockout: crate::lockout::Lockout) -> Router {
    Router::new()
        .route("/api/auth/lockedUsers", axum::routing::get(locked_users))
        .route(
            "/api/auth/lockedUsers/{username}",
            axum::routing::delete(unlock_user),
        )
        .with_state(Arc::new(lockout))
}

/// The answer for a caller who is not an administrator, if this one is not.
fn refuse_non_admin(claims: &crate::login::AuthClaims) -> Option<Response> {
    (!claims.roles.iter().any(|r| r == "admin"))
        .then(|| error_response(Failure::new(StatusCode::FORBIDDEN, "administrators only")))
}

async fn locked_users(
    State(lockout): State<Arc<crate::lockout::Lockout>>,
    crate::token::Claims(claims): crate::token::Claims<crate::login::AuthClaims>,
) -> Response {
    if let Some(response) = refuse_non_admin(&claims) {
        return response;
    }
    match lockout.locked().await {
        Ok(locked) => {
            let now = lockout.now();
            Json(
                locked
                    .into_iter()
                    .map(|account| {
                        json!({
                            "username": account.account,
                            "lockedUntil": account.locked_until,
                            "retryAfter": account.locked_until.saturating_sub(now),
                            "failures": account.failures,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response()
        }
        Err(err) => error_response(LoginError::Unavailable(err).into()),
    }
}

async fn unlock_user(
    State(lockout): State<Arc<crate::lockout::Lockout>>,
    crate::token::Claims(claims): crate::token::Claims<crate::login::AuthClaims>,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> Response {
    if let Some(response) = refuse_non_admin(&claims) {
        return response;
    }
    let key = crate::login::normalize_username(&username);
    match lockout.unlock(&key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => error_response(LoginError::Unavailable(err).into()),
    }
}
