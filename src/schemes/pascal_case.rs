//! The Scailable / Nx cloud API: PascalCase sign-in, refresh with a
//! `GrantType`, sign-out, and the TOTP step.
//!
//! - `POST /authenticate/signin` (`GET` with the same body is accepted, as
//!   the document also says GET) with `{"Username","Password","KeepLoggedIn"}`
//!   → `{"AccessToken","RefreshToken"}`. `KeepLoggedIn: true` gives the
//!   refresh token the long lifetime (30 days by default), `false` the
//!   issuer's default.
//! - For an account with TOTP, sign-in answers
//!   `{"AccessToken":"","Error":"","RefreshToken":"","TotpAccessCode":"<otp-pending token>"}`;
//!   `POST /authenticate/totp` with `{"token":"<TotpAccessCode>","totp":"123456"}`
//!   → `{"AccessToken","Error","RefreshToken","TotpAccessCode"}`.
//! - `POST /authenticate/refresh` with `{"GrantType":"refresh_token"}` and
//!   the refresh token as bearer → a new pair; the old refresh token is used
//!   up, and presenting it again ends the whole session.
//! - `POST /authenticate/signout` with the access token as bearer revokes the
//!   session (`204`).
//! - [`PascalCase::auth_layer`] guards the API routes: bearer access tokens,
//!   revoked ones refused, refusals in the error object below.
//!
//! Errors answer the documented object ([`NxFormat`]):
//! `{"AuthorizationInvalid","BackendMessage","Email","Field":{"Message","Name"},"Message","UUID"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthLayer;
use crate::login::{LoginFlow, LoginOutcome, TokenPair};
use crate::token::{TokenKind, TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, no_store, read_body, rejections_in_format,
    required, required_bearer, with_preset,
};

/// Refresh lifetime for `KeepLoggedIn: true`: 30 days.
pub const KEEP_LOGGED_IN_SECONDS: u64 = 30 * 86_400;

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

/// The PascalCase preset.
#[derive(Clone, Debug)]
pub struct PascalCase {
    flow: LoginFlow,
    keep_logged_in: u64,
}

impl PascalCase {
    /// The preset over `flow`.
    pub fn new(flow: LoginFlow) -> Self {
        PascalCase {
            flow,
            keep_logged_in: KEEP_LOGGED_IN_SECONDS,
        }
    }

    /// The refresh lifetime granted by `KeepLoggedIn: true`.
    pub fn with_keep_logged_in(mut self, seconds: u64) -> Self {
        self.keep_logged_in = seconds;
        self
    }

    /// The `/authenticate/*` routes.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(
                "/authenticate/signin",
                on(MethodFilter::POST.or(MethodFilter::GET), signin),
            )
            .route("/authenticate/refresh", post(refresh))
            .route("/authenticate/signout", post(signout))
            .route("/authenticate/totp", post(totp));
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
    let refresh_ttl = keep_logged_in.then_some(preset.keep_logged_in);
    match preset.flow.password(&username, &password, client.0).await? {
        LoginOutcome::Authenticated(principal) => Ok(pair_response(
            &preset.flow.issuer().issue_pair(&principal, refresh_ttl)?,
        )),
        LoginOutcome::TotpRequired(pending) => Ok(no_store(
            Json(json!({
                "AccessToken": "",
                "Error": "",
                "RefreshToken": "",
                "TotpAccessCode": pending.token,
            }))
            .into_response(),
        )),
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
    Ok(pair_response(
        &preset.flow.issuer().refresh(token, true).await?,
    ))
}

async fn signout(
    State(preset): State<Arc<PascalCase>>,
    headers: HeaderMap,
) -> Result<Response, NxError> {
    let token = required_bearer(&headers, "authentication is required")?;
    // Only an access token signs out; it revokes its whole session.
    let issuer = preset.flow.issuer();
    issuer.verify(token, &[TokenKind::Access]).await?;
    issuer.revoke(token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct TotpStep {
    token: Option<String>,
    totp: Option<String>,
}

/// The TOTP step's answer: the four-field object, with the error in
/// `Error` when the step refuses.
fn totp_answer(status: StatusCode, pair: Option<&TokenPair>, error: &str) -> Response {
    let response = (
        status,
        Json(json!({
            "AccessToken": pair.map_or("", |p| p.access.token.as_str()),
            "Error": error,
            "RefreshToken": pair
                .and_then(|p| p.refresh.as_ref())
                .map_or("", |r| r.token.as_str()),
            "TotpAccessCode": "",
        })),
    )
        .into_response();
    no_store(response)
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
        Ok(principal) => {
            let pair = preset.flow.issuer().issue_pair(&principal, None)?;
            Ok(totp_answer(StatusCode::OK, Some(&pair), ""))
        }
        Err(err) if err.status() == StatusCode::UNAUTHORIZED => {
            let failure = Failure::from(err);
            let mut response = totp_answer(failure.status, None, &failure.message);
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            Ok(response)
        }
        Err(err) => Err(err.into()),
    }
}
