//! The Scailable / Nx cloud API: PascalCase sign-in, refresh, sign-out, the
//! TOTP step, the Nx, plugin and code logins, log-out and token update with
//! the password, password strength and registration, each within its
//! documented time-out.
//!
//! | endpoint | body | answer | time-out |
//! |---|---|---|---|
//! | `POST` (or `GET`) `/authenticate/signin` | `{"Username","Password","KeepLoggedIn"}` | `{"AccessToken","RefreshToken"}` | 15 s |
//! | `POST /authenticate/refresh` + bearer refresh token | `{"GrantType":"refresh_token"}` | `{"AccessToken","RefreshToken"}` | 15 s |
//! | `POST /authenticate/signout` + bearer access token | — | the object below, `AuthorizationInvalid: true` | 15 s |
//! | `POST /authenticate/totp` | `{"token","totp"}` | four fields | 1 s |
//! | `POST /authenticate/nx` | `{"Email","Password"}` | four fields | 5 s |
//! | `POST /authenticate/plugin` | `{"refresh_token","system_nxid"}` | four fields | 5 s |
//! | `POST /authenticate/csrf` | `{"AuthenticationEndpoint","RedirectURL"}` | `{}`, the login state | 5 s |
//! | `POST /authenticate/code/issue` + bearer access token | `{"state"}` | `{"code"}` | 5 s |
//! | `POST /authenticate/code` + the `nx_login_state` cookie | `{"code","state"}` | four fields | 5 s |
//! | `POST /authenticate/logout` + bearer access token | `{"GrantType":"password","Password"}` | four fields, empty | 5 s |
//! | `POST /authenticate/update` + bearer access token | `{"GrantType":"password","Password"}` | four fields | 5 s |
//! | `POST /authenticate/password-strength` | `{"Password"}` | `{"Strong","Score","Message"}` | 5 s |
//! | `POST /user` | `{"Email","Password","Name"}` | `201`, the user's object | 5 s |
//!
//! "Four fields" is `{"AccessToken","Error","RefreshToken","TotpAccessCode"}`.
//! A refusal of the credentials on those endpoints (`401`) answers the same
//! four fields with the reason in `Error`; every other refusal, and every
//! refusal of the other endpoints and of the layers
//! ([`PascalCase::auth_layer`], and any layer given [`NxFormat`]), answers
//! the documented error object:
//! `{"AuthorizationInvalid","BackendMessage","Email","Field":{"Message","Name"},"Message","UUID"}`.
//! A request past its time-out answers `503` with `Retry-After` in that
//! object.
//!
//! # The code login, step by step
//!
//! A login through another page (the application's own authorization
//! step, a second device) in three requests; the browser keeps a cookie
//! that ties the code to it:
//!
//! 1. The browser: `POST /authenticate/csrf` with
//!    `{"AuthenticationEndpoint","RedirectURL"}` → `200 {}`, a fresh random
//!    login state in the answer's header `X-Login-State`
//!    ([`LOGIN_STATE_HEADER`]) and the same state in the `HttpOnly` cookie
//!    `nx_login_state` ([`LOGIN_STATE_COOKIE`], `Path=/authenticate`, ten
//!    minutes). The browser passes the state to the authentication
//!    endpoint.
//! 2. The authentication endpoint, for the user it has signed in: `POST
//!    /authenticate/code/issue` with that user's bearer access token and
//!    `{"state"}` → `{"code"}`, a one-time code bound to the state, living
//!    two minutes ([`LOGIN_CODE_SECONDS`]). An application that
//!    authenticates the user itself calls
//!    [`PascalCase::issue_login_code`] instead. The code goes back to the
//!    browser (the redirect).
//! 3. The browser: `POST /authenticate/code` with `{"code","state"}` and
//!    its `nx_login_state` cookie → the four fields with the user's pair,
//!    and the cookie cleared. The code is used up by the first attempt; a
//!    state that differs from the cookie's, or a missing cookie, answers
//!    `401`.
//!
//! # Choices where the document is silent
//!
//! - `KeepLoggedIn: true` gives the refresh token 30 days
//!   ([`KEEP_LOGGED_IN_SECONDS`]), `false` the issuer's default; an account
//!   with TOTP keeps the choice through the TOTP step.
//! - An account with TOTP signs in in two steps. The password step answers
//!   the four fields with an empty `AccessToken` and `RefreshToken` and the
//!   otp-pending token in `TotpAccessCode` (the document's two-field sign-in
//!   answer has no room for it), which `POST /authenticate/totp` takes as
//!   `token` with the code.
//! - The refresh takes the refresh token as bearer and rotates it: the old
//!   one is used up, presented again within the issuer's grace window it
//!   gives a sibling pair, later it ends the whole session. The document's
//!   "requires an authenticated user" is read as "the bearer of the login
//!   session's refresh token": an access token there is refused (`401`, the
//!   error object), so a stolen short-lived access token can never be turned
//!   into a long-lived pair.
//! - Sign-out answers the one object the document shows for it, the error
//!   object, saying the authorization is now invalid.
//! - The Nx login signs in with the account's email. The plugin login
//!   exchanges a refresh token for a new pair (rotating it) for the system
//!   `system_nxid` names.
//! - Code login: `POST /authenticate/csrf` checks both URLs and answers `{}`
//!   as documented, with a fresh random login state in the header
//!   `X-Login-State` and in an `HttpOnly` cookie (`nx_login_state`,
//!   `Path=/authenticate`, ten minutes). The client sends the state to the
//!   authentication endpoint, which comes back with a one-time code bound to
//!   it; `POST /authenticate/code` takes the code only with the same state
//!   in both the body and the cookie. The cookie ties the code to the
//!   browser that started the login, so a code an attacker obtained for
//!   their own account cannot be planted in a victim's browser (login
//!   CSRF). Codes come from [`PascalCase::issue_login_code`] (an
//!   application's authorization step) or from `POST /authenticate/code/issue`
//!   (bearer access token, `{"state"}` → `{"code"}`): they live two minutes
//!   in a [`LoginCodeStore`] and work once.
//! - Log user out and Update tokens check the password again (a wrong one
//!   counts toward the lockout, `GrantType` must be `"password"`). Log-out
//!   ends the session of the bearer token; update ends it and starts a new
//!   one, answering its pair.
//! - Registration: the password must pass the [`PasswordPolicy`]
//!   (`400` naming `Password` otherwise); every attempt counts against the
//!   email as a failed login does, and a locked email answers `423`. An
//!   email that is taken answers exactly as a new account does (`201`, an
//!   object of the same shape), after the same work, so registration never
//!   tells whether an account exists; the existing account is untouched and
//!   the new password does not sign in to it. The new account signs in with
//!   its email as `Username`.
//! - Password reset is not provided: the document names it but gives no
//!   path, body or answer, and it needs a way to reach the user (mail) that
//!   is the application's. An application adds its own route beside the
//!   preset's router.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on, post};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::auth::AuthLayer;
use crate::clock::now_seconds;
use crate::cookie::CookieSettings;
use crate::login::{
    AuthClaims, LoginError, LoginFlow, LoginOutcome, NewUser, PairLifetimes, PasswordPolicy,
    RefreshOptions, Registrar, TokenPair,
};
use crate::store::{LoginCode, LoginCodeStore, MemoryLoginCodes};
use crate::token::{TokenKind, TokenSource, TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, no_store, read_body, rejections_in_format,
    required, required_bearer, with_preset, within,
};

/// Refresh lifetime for `KeepLoggedIn: true`: 30 days.
pub const KEEP_LOGGED_IN_SECONDS: u64 = 30 * 86_400;

/// How long a one-time login code works: two minutes.
pub const LOGIN_CODE_SECONDS: u64 = 120;

/// The cookie that ties a code login to the browser that started it.
pub const LOGIN_STATE_COOKIE: &str = "nx_login_state";

/// The header that hands the login state to the client.
pub const LOGIN_STATE_HEADER: HeaderName = HeaderName::from_static("x-login-state");

/// How long a login state lives: ten minutes.
const LOGIN_STATE_SECONDS: u64 = 600;

/// The path of the login-state cookie: only the code login reads it.
const LOGIN_STATE_PATH: &str = "/authenticate";

/// The Scailable / Nx error object:
/// `{"AuthorizationInvalid","BackendMessage","Email","Field":{"Message","Name"},"Message","UUID"}`,
/// with `WWW-Authenticate: Bearer` on a `401`. Give it to a layer's
/// `on_rejection` to answer its refusals in this format.
#[derive(Debug, Clone, Copy, Default)]
pub struct NxFormat;

impl ErrorFormat for NxFormat {
    fn render(failure: &Failure) -> Response {
        let body = json!({
            "AuthorizationInvalid": failure.status == StatusCode::UNAUTHORIZED,
            "BackendMessage": "",
            "Email": "",
            "Field": {
                "Message": if failure.field.is_some() { &*failure.message } else { "" },
                "Name": failure.field.unwrap_or(""),
            },
            "Message": failure.message,
            "UUID": uuid::Uuid::new_v4().to_string(),
        });
        (failure.status, Json(body)).into_response()
    }
}

rejections_in_format!(NxFormat);

/// An error of the Scailable / Nx routes.
pub type NxError = ApiError<NxFormat>;

/// The PascalCase preset: the routes of the [module's table](crate::schemes::pascal_case), among
/// them the code login (`POST /authenticate/csrf` answering the login
/// state in `X-Login-State` and a cookie, `POST /authenticate/code/issue`
/// or [`issue_login_code`](Self::issue_login_code) minting a one-time code
/// for that state, `POST /authenticate/code` exchanging it): see
/// [the code login, step by step](crate::schemes::pascal_case#the-code-login-step-by-step).
#[derive(Clone)]
pub struct PascalCase {
    flow: LoginFlow,
    keep_logged_in: u64,
    registrar: Option<Arc<dyn Registrar>>,
    password_policy: PasswordPolicy,
    codes: Arc<dyn LoginCodeStore>,
    cookies: CookieSettings,
}

impl std::fmt::Debug for PascalCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PascalCase")
            .field("flow", &self.flow)
            .field("keep_logged_in", &self.keep_logged_in)
            .field("registration", &self.registrar.is_some())
            .field("password_policy", &self.password_policy)
            .finish_non_exhaustive()
    }
}

impl PascalCase {
    /// The preset over `flow`: login codes in memory, `Secure` cookies, and
    /// no registration until [`with_registrar`](Self::with_registrar).
    pub fn new(flow: LoginFlow) -> Self {
        let flow = flow.named_if_unnamed("pascal_case");
        PascalCase {
            flow,
            keep_logged_in: KEEP_LOGGED_IN_SECONDS,
            registrar: None,
            password_policy: PasswordPolicy::default(),
            codes: Arc::new(MemoryLoginCodes::default()),
            cookies: CookieSettings::default(),
        }
    }

    /// The refresh lifetime granted by `KeepLoggedIn: true`.
    pub fn with_keep_logged_in(mut self, seconds: u64) -> Self {
        self.keep_logged_in = seconds;
        self
    }

    /// Serve `POST /user`, creating accounts with `registrar` (for
    /// [`MemoryUsers`](crate::login::MemoryUsers), the same store the flow
    /// authenticates with).
    pub fn with_registrar(mut self, registrar: Arc<dyn Registrar>) -> Self {
        self.registrar = Some(registrar);
        self
    }

    /// Judge new passwords with `policy`.
    pub fn with_password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.password_policy = policy;
        self
    }

    /// Keep one-time login codes in `store` (share one between instances).
    pub fn with_login_code_store(mut self, store: Arc<dyn LoginCodeStore>) -> Self {
        self.codes = store;
        self
    }

    /// With these attributes for the login-state cookie (for example
    /// `CookieSettings::default().development()` on plain HTTP).
    pub fn with_cookies(mut self, cookies: CookieSettings) -> Self {
        self.cookies = cookies;
        self
    }

    /// The routes of the table above, each within its time-out.
    pub fn router(&self) -> Router {
        let slow = Router::new()
            .route(
                "/authenticate/signin",
                on(MethodFilter::POST.or(MethodFilter::GET), signin),
            )
            .route("/authenticate/refresh", post(refresh))
            .route("/authenticate/signout", post(signout));
        let mut moderate = Router::new()
            .route("/authenticate/nx", post(nx_login))
            .route("/authenticate/plugin", post(plugin_login))
            .route("/authenticate/csrf", post(login_state))
            .route("/authenticate/code", post(code_login))
            .route("/authenticate/code/issue", post(issue_code))
            .route("/authenticate/logout", post(log_out))
            .route("/authenticate/update", post(update_tokens))
            .route("/authenticate/password-strength", post(password_strength));
        if self.registrar.is_some() {
            moderate = moderate.route("/user", post(register));
        }
        let quick = Router::new().route("/authenticate/totp", post(totp));
        let routes = within::<NxFormat, _>(slow, Duration::from_secs(15))
            .merge(within::<NxFormat, _>(moderate, Duration::from_secs(5)))
            .merge(within::<NxFormat, _>(quick, Duration::from_secs(1)));
        with_preset(routes, self.clone())
    }

    /// An [`AuthLayer`] for the API routes: bearer access tokens, revoked
    /// ones refused, refusals in the Scailable / Nx error object. `verifier`
    /// must accept the issuer's key.
    pub fn auth_layer<C>(&self, verifier: Verifier) -> AuthLayer<C, NxFormat> {
        AuthLayer::new(verifier)
            .sources(TokenSources::bearer())
            .revocations(self.flow.issuer().revocations())
            .on_rejection(NxFormat)
    }

    /// A one-time code that logs `username` in at `POST /authenticate/code`
    /// with `state`, within [`LOGIN_CODE_SECONDS`]: what an application's
    /// own authorization step hands back to the client.
    pub async fn issue_login_code(
        &self,
        username: &str,
        state: &str,
    ) -> Result<String, LoginError> {
        let state = valid_state(state).map_err(|f| LoginError::BadRequest(f.message.into()))?;
        let code = random_token();
        let login = LoginCode::new(
            username.to_owned(),
            state.to_owned(),
            now_seconds() + LOGIN_CODE_SECONDS,
        );
        self.codes
            .insert(&code, login)
            .await
            .map_err(LoginError::Unavailable)?;
        Ok(code)
    }

    /// The login-state cookie's attributes: the preset's, for
    /// [`LOGIN_STATE_PATH`].
    fn state_cookies(&self) -> CookieSettings {
        // The path is a constant that `path` accepts.
        self.cookies
            .clone()
            .path(LOGIN_STATE_PATH)
            .unwrap_or_else(|_| self.cookies.clone())
    }

    /// The claims of the request's bearer access token.
    async fn caller(&self, headers: &HeaderMap) -> Result<AuthClaims, NxError> {
        let token = required_bearer(headers, "authentication is required")?;
        Ok(self
            .flow
            .issuer()
            .verify(token, &[TokenKind::Access])
            .await?)
    }
}

/// 32 random bytes, base64url: a login state or code.
fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No system randomness: a v4 UUID is the next best.
        return uuid::Uuid::new_v4().simple().to_string();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A login state as clients send it: 16 to 128 URL-safe characters.
fn valid_state(state: &str) -> Result<&str, Failure> {
    let ok = (16..=128).contains(&state.len())
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(state)
    } else {
        Err(Failure {
            field: Some("state"),
            ..Failure::bad_request("state is 16 to 128 characters of [A-Za-z0-9_-]")
        })
    }
}

fn pair_response(pair: &TokenPair) -> Response {
    no_store(
        Json(json!({
            "AccessToken": pair.access.token,
            "RefreshToken": pair.refresh.as_ref().map(|r| r.token.as_str()).unwrap_or(""),
        }))
        .into_response(),
    )
}

/// The four-field answer `{"AccessToken","Error","RefreshToken","TotpAccessCode"}`.
fn four_fields(status: StatusCode, pair: Option<&TokenPair>, totp: &str, error: &str) -> Response {
    let response = (
        status,
        Json(json!({
            "AccessToken": pair.map_or("", |p| p.access.token.as_str()),
            "Error": error,
            "RefreshToken": pair
                .and_then(|p| p.refresh.as_ref())
                .map_or("", |r| r.token.as_str()),
            "TotpAccessCode": totp,
        })),
    )
        .into_response();
    no_store(response)
}

/// A login's answer in four fields: the pair, or the TOTP step's code.
fn login_answer(preset: &PascalCase, outcome: LoginOutcome) -> Result<Response, NxError> {
    match outcome {
        LoginOutcome::Authenticated(principal) => {
            let pair = preset
                .flow
                .issuer()
                .issue_pair(&principal, PairLifetimes::new())?;
            Ok(four_fields(StatusCode::OK, Some(&pair), "", ""))
        }
        LoginOutcome::TotpRequired(pending) => {
            Ok(four_fields(StatusCode::OK, None, &pending.token, ""))
        }
    }
}

/// A refusal on a four-field endpoint: the credentials' (`401`) in the four
/// fields with the reason in `Error`, any other in the error object.
fn four_field_refusal(err: LoginError) -> Result<Response, NxError> {
    if err.status() != StatusCode::UNAUTHORIZED {
        return Err(err.into());
    }
    let mut response = four_fields(StatusCode::UNAUTHORIZED, None, "", &err.public_message());
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignIn {
    username: Option<String>,
    password: Option<String>,
    keep_logged_in: Option<bool>,
}

async fn signin(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let signin: SignIn = read_body(request, Accept::Json).await?;
    let username = required(signin.username, "Username")?;
    let password = required(signin.password, "Password")?;
    let keep_logged_in = required(signin.keep_logged_in, "KeepLoggedIn")?;
    let mut lifetimes = PairLifetimes::new();
    if keep_logged_in {
        lifetimes = lifetimes.with_refresh(preset.keep_logged_in);
    }
    let outcome = preset
        .flow
        .password(&username, &password, client.0, lifetimes)
        .await?;
    match outcome {
        LoginOutcome::Authenticated(principal) => Ok(pair_response(
            &preset.flow.issuer().issue_pair(&principal, lifetimes)?,
        )),
        LoginOutcome::TotpRequired(pending) => {
            Ok(four_fields(StatusCode::OK, None, &pending.token, ""))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Refresh {
    grant_type: Option<String>,
}

async fn refresh(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let headers = request.headers().clone();
    let refresh: Refresh = read_body(request, Accept::Json).await?;
    if required(refresh.grant_type, "GrantType")? != "refresh_token" {
        return Err(Failure {
            field: Some("GrantType"),
            ..Failure::bad_request("GrantType must be \"refresh_token\"")
        }
        .into());
    }
    let token = required_bearer(&headers, "a bearer refresh token is required")?;
    let pair = preset
        .flow
        .refresh(token, RefreshOptions::rotating())
        .await?;
    Ok(pair_response(&pair))
}

async fn signout(
    State(preset): State<Arc<PascalCase>>,
    headers: HeaderMap,
) -> Result<Response, NxError> {
    let token = required_bearer(&headers, "authentication is required")?;
    // Only an access token signs out; it revokes its whole session.
    let claims = preset
        .flow
        .issuer()
        .verify(token, &[TokenKind::Access])
        .await?;
    preset.flow.issuer().revoke(token).await?;
    let email = preset
        .flow
        .users()
        .find(&claims.sub)
        .await
        .map_err(LoginError::Unavailable)?
        .and_then(|principal| principal.email)
        .unwrap_or_default();
    Ok(no_store(
        Json(json!({
            "AuthorizationInvalid": true,
            "BackendMessage": "",
            "Email": email,
            "Field": {"Message": "", "Name": ""},
            "Message": "signed out",
            "UUID": claims.uid,
        }))
        .into_response(),
    ))
}

#[derive(Deserialize)]
struct TotpStep {
    token: Option<String>,
    totp: Option<String>,
}

async fn totp(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let step: TotpStep = read_body(request, Accept::Json).await?;
    let token = required(step.token, "token")?;
    let code = required(step.totp, "totp")?;
    match preset.flow.totp(&token, &code, client.0).await {
        Ok(accepted) => {
            let pair = preset
                .flow
                .issuer()
                .issue_pair(&accepted.principal, accepted.lifetimes)?;
            Ok(four_fields(StatusCode::OK, Some(&pair), "", ""))
        }
        Err(err) => four_field_refusal(err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NxLogin {
    email: Option<String>,
    password: Option<String>,
}

async fn nx_login(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let login: NxLogin = read_body(request, Accept::Json).await?;
    let email = required(login.email, "Email")?;
    let password = required(login.password, "Password")?;
    match preset
        .flow
        .password(&email, &password, client.0, PairLifetimes::new())
        .await
    {
        Ok(outcome) => login_answer(&preset, outcome),
        Err(err) => four_field_refusal(err),
    }
}

#[derive(Deserialize)]
struct PluginLogin {
    refresh_token: Option<String>,
    system_nxid: Option<String>,
}

async fn plugin_login(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let login: PluginLogin = read_body(request, Accept::Json).await?;
    let token = required(login.refresh_token, "refresh_token")?;
    let system = required(login.system_nxid, "system_nxid")?;
    let valid_system = (1..=64).contains(&system.len())
        && system
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'{' | b'}'));
    if !valid_system {
        return Err(Failure {
            field: Some("system_nxid"),
            ..Failure::bad_request("system_nxid is 1 to 64 characters of [A-Za-z0-9-{}]")
        }
        .into());
    }
    match preset
        .flow
        .refresh(&token, RefreshOptions::rotating())
        .await
    {
        Ok(pair) => Ok(four_fields(StatusCode::OK, Some(&pair), "", "")),
        Err(err) => four_field_refusal(err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoginStateRequest {
    authentication_endpoint: Option<String>,
    #[serde(rename = "RedirectURL")]
    redirect_url: Option<String>,
}

/// Whether `url` is an absolute `http` or `https` URL.
fn is_web_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && url.len() <= 2048
            && url.bytes().all(|b| b.is_ascii_graphic())
    }) && url.parse::<http::Uri>().is_ok()
}

async fn login_state(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let body: LoginStateRequest = read_body(request, Accept::Json).await?;
    for (value, field) in [
        (body.authentication_endpoint, "AuthenticationEndpoint"),
        (body.redirect_url, "RedirectURL"),
    ] {
        if !is_web_url(&required(value, field)?) {
            return Err(Failure {
                field: Some(field),
                ..Failure::bad_request(format!("{field} must be an http(s) URL"))
            }
            .into());
        }
    }
    let state = random_token();
    let mut response = no_store(Json(json!({})).into_response());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&state) {
        headers.insert(LOGIN_STATE_HEADER, value);
    }
    headers.append(
        header::SET_COOKIE,
        preset
            .state_cookies()
            .set(LOGIN_STATE_COOKIE, &state, LOGIN_STATE_SECONDS),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct IssueCode {
    state: Option<String>,
}

async fn issue_code(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let claims = preset.caller(request.headers()).await?;
    let body: IssueCode = read_body(request, Accept::Json).await?;
    let state = required(body.state, "state")?;
    // Checked here too, so the answer names the field.
    valid_state(&state)?;
    let code = preset.issue_login_code(&claims.sub, &state).await?;
    Ok(no_store(Json(json!({ "code": code })).into_response()))
}

#[derive(Deserialize)]
struct CodeLogin {
    code: Option<String>,
    state: Option<String>,
}

async fn code_login(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let cookie_state = TokenSources::single(TokenSource::cookie(LOGIN_STATE_COOKIE))
        .find(request.headers())
        .ok()
        .flatten()
        .map(|found| found.token.to_owned());
    let body: CodeLogin = read_body(request, Accept::Json).await?;
    let code = required(body.code, "code")?;
    let state = required(body.state, "state")?;
    valid_state(&state)?;
    // Taken whatever follows: a code is tried once.
    let login = preset
        .codes
        .take(&code)
        .await
        .map_err(LoginError::Unavailable)?;
    let same_browser =
        cookie_state.is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    let login = match login {
        Some(login)
            if same_browser
                && login.expires_at > now_seconds()
                && bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) =>
        {
            login
        }
        _ => {
            return four_field_refusal(LoginError::InvalidCredentials)
                .map(|response| clear_state(&preset, response));
        }
    };
    match preset.flow.account(&login.username).await {
        Ok(principal) => {
            let pair = preset
                .flow
                .issuer()
                .issue_pair(&principal, PairLifetimes::new())?;
            let response = four_fields(StatusCode::OK, Some(&pair), "", "");
            Ok(clear_state(&preset, response))
        }
        Err(err) => four_field_refusal(err),
    }
}

/// Removes the login-state cookie: a state serves one code login.
fn clear_state(preset: &PascalCase, mut response: Response) -> Response {
    response.headers_mut().append(
        header::SET_COOKIE,
        preset.state_cookies().clear(LOGIN_STATE_COOKIE),
    );
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PasswordGrant {
    grant_type: Option<String>,
    password: Option<String>,
}

/// The caller's claims, once the password of its account was given again
/// (a wrong one counts toward the lockout).
async fn password_again(
    preset: &PascalCase,
    client: LoginClient,
    request: Request,
) -> Result<Result<AuthClaims, LoginError>, NxError> {
    let claims = preset.caller(request.headers()).await?;
    let grant: PasswordGrant = read_body(request, Accept::Json).await?;
    if required(grant.grant_type, "GrantType")? != "password" {
        return Err(Failure {
            field: Some("GrantType"),
            ..Failure::bad_request("GrantType must be \"password\"")
        }
        .into());
    }
    let password = required(grant.password, "Password")?;
    // The password is right whether or not the account also has TOTP.
    Ok(preset
        .flow
        .password(&claims.sub, &password, client.0, PairLifetimes::new())
        .await
        .map(|_| claims))
}

async fn log_out(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let token = required_bearer(request.headers(), "authentication is required")?.to_owned();
    match password_again(&preset, client, request).await? {
        Ok(_) => {
            preset.flow.issuer().revoke(&token).await?;
            Ok(four_fields(StatusCode::OK, None, "", ""))
        }
        Err(err) => four_field_refusal(err),
    }
}

async fn update_tokens(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let token = required_bearer(request.headers(), "authentication is required")?.to_owned();
    match password_again(&preset, client, request).await? {
        Ok(claims) => {
            let principal = preset.flow.account(&claims.sub).await?;
            let pair = preset
                .flow
                .issuer()
                .issue_pair(&principal, PairLifetimes::new())?;
            preset.flow.issuer().revoke(&token).await?;
            Ok(four_fields(StatusCode::OK, Some(&pair), "", ""))
        }
        Err(err) => four_field_refusal(err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StrengthRequest {
    password: Option<String>,
}

async fn password_strength(
    State(preset): State<Arc<PascalCase>>,
    request: Request,
) -> Result<Response, NxError> {
    let body: StrengthRequest = read_body(request, Accept::Json).await?;
    let password = required(body.password, "Password")?;
    let strength = preset.password_policy.judge(&password, &[]);
    Ok(no_store(
        Json(json!({
            "Strong": strength.strong,
            "Score": strength.score,
            "Message": strength.message,
        }))
        .into_response(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Registration {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

/// Whether `email` looks like one: one `@` between non-empty parts, no
/// spaces, at most 254 characters.
fn is_email(email: &str) -> bool {
    email.len() <= 254
        && !email
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
}

async fn register(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, NxError> {
    let Some(registrar) = &preset.registrar else {
        return Err(Failure::new(StatusCode::NOT_FOUND, "registration is closed").into());
    };
    let body: Registration = read_body(request, Accept::Json).await?;
    let email = required(body.email, "Email")?.trim().to_owned();
    let password = required(body.password, "Password")?;
    let name = required(body.name, "Name")?.trim().to_owned();
    if !is_email(&email) {
        return Err(Failure {
            field: Some("Email"),
            ..Failure::bad_request("Email is not an email address")
        }
        .into());
    }
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Failure {
            field: Some("Name"),
            ..Failure::bad_request("Name is 1 to 100 characters")
        }
        .into());
    }
    let strength = preset.password_policy.judge(&password, &[&email, &name]);
    if !strength.strong {
        return Err(Failure {
            field: Some("Password"),
            ..Failure::bad_request(strength.message)
        }
        .into());
    }
    preset.flow.count_attempt(&email, client.0).await?;
    let user = NewUser::new(email.clone(), password)
        .email(email.clone())
        .name(name.clone());
    // A taken email answers as a new account does: the same shape, a fresh
    // id, nothing changed.
    let id = match registrar.register(user).await? {
        Some(principal) => principal.id,
        None => uuid::Uuid::new_v4().to_string(),
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "Email": email,
            "IsSuperAdmin": false,
            "Name": name,
            "NxID": "",
            "Organisation": {"Name": "", "UUID": ""},
            "UUID": id,
        })),
    )
        .into_response())
}
