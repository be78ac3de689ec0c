//! The Workflow API: login answering an `X-Auth-Token` header, which every
//! call then carries.
//!
//! - `POST /api/v2/login` with `{"username","password","logoutID"?}` → `200`
//!   with the header `X-Auth-Token` and the body
//!   `{"userId","username","X-Auth-Token"}`; `401` for wrong credentials
//!   (unknown users alike), `400`/`413`/`415` for a bad body. `logoutID`, when
//!   it is a token of this service, is revoked (the session it replaces).
//! - Tokens last 24 hours. The document's "a restart voids every token"
//!   holds when the flow's issuer signs with a key generated when the
//!   service starts: give it [`XAuthToken::restart_scoped_key`] (the demo
//!   does). The preset takes the flow as it is given and cannot enforce it:
//!   an issuer with a persistent key keeps tokens valid across restarts.
//! - The deprecated `GET /api/v1/login?username=&password=` puts credentials
//!   in the URL; it is off unless [`XAuthToken::with_deprecated_get`] is
//!   called, and then answers `{"id","username","activeUntil"?}` with
//!   `Deprecation: true` and a `Link` to its successor. It reads `logoutID`
//!   like v2 (from the query, or a JSON body).
//! - An account may be active until a date
//!   ([`Principal::active_until`](crate::login::Principal::active_until),
//!   "defined in Workflow"): after it, logins are refused (`403`, no content)
//!   and no token of the account outlives it, because every token minted
//!   for it expires by then. The v1 answer names the date as `activeUntil`
//!   (`YYYY-MM-DD`, UTC), and leaves it out for an account without an end.
//!   A client's own `activeUntil` parameter is ignored: a client never sets
//!   how long its account lives.
//! - [`XAuthToken::auth_layer`] reads `X-Auth-Token` on the API routes.
//!
//! Errors follow the document ([`WorkflowFormat`]): `401` and `403` have no
//! content; the answers the document does not list (`400`, `413`, `415`,
//! `423`, `429`, `503`) carry `{"message":"…"}`.
//!
//! # Where the preset departs from the document, and why
//!
//! - An unknown username gets the same `401` as a wrong password, not the
//!   `404` the document lists: a `404` would tell anyone which accounts
//!   exist.
//! - The statuses the document does not list (`400`, `413`, `415`, `423`,
//!   `429`, `503`) answer what it cannot: a malformed body, a locked
//!   account, a throttled address, a store that cannot be reached.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthLayer;
use crate::error::ConfigError;
use crate::login::{LoginError, LoginFlow, Principal};
use crate::token::{SigningKey, TokenSource, TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, body_bytes, no_store, parse_body,
    password_with_code, read_body, rejections_in_format, required, with_preset,
};

/// The header the token travels in.
pub const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");

/// How long a token lives: 24 hours.
pub const TOKEN_SECONDS: u64 = 86_400;

/// The Workflow error format: `401` and `403` with no content, as the
/// document lists them; the other refusals with `{"message":"…"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowFormat;

impl ErrorFormat for WorkflowFormat {
    // The token travels in `X-Auth-Token`, not in an `Authorization` scheme.
    const CHALLENGE: Option<&'static str> = None;

    fn render(failure: &Failure) -> Response {
        match failure.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => failure.status.into_response(),
            status => (status, Json(json!({ "message": failure.message }))).into_response(),
        }
    }
}

rejections_in_format!(WorkflowFormat);

/// An error of the Workflow routes.
pub type WorkflowError = ApiError<WorkflowFormat>;

/// The X-Auth-Token preset.
#[derive(Clone, Debug)]
pub struct XAuthToken {
    flow: LoginFlow,
    deprecated_get: bool,
}

impl XAuthToken {
    /// A signing key that lives as long as the process: tokens it signs stop
    /// verifying when the service restarts. Give it to the
    /// [`JwtIssuer`](crate::login::JwtIssuer) of this preset's flow.
    pub fn restart_scoped_key() -> Result<SigningKey, ConfigError> {
        Ok(SigningKey::generate_ed25519()?.with_kid(format!("x-auth-{}", uuid::Uuid::new_v4())))
    }

    /// The preset over `flow`.
    pub fn new(flow: LoginFlow) -> Self {
        let flow = flow.named_if_unnamed("x_auth_token");
        XAuthToken {
            flow,
            deprecated_get: false,
        }
    }

    /// Also serve the deprecated `GET /api/v1/login`.
    pub fn with_deprecated_get(mut self) -> Self {
        self.deprecated_get = true;
        self
    }

    /// `POST /api/v2/login`, and `GET /api/v1/login` when enabled.
    pub fn router(&self) -> Router {
        let mut routes = Router::new().route("/api/v2/login", post(login_v2));
        if self.deprecated_get {
            routes = routes.route("/api/v1/login", get(login_v1));
        }
        with_preset(routes, self.clone())
    }

    /// An [`AuthLayer`] reading `X-Auth-Token`, refusing revoked tokens,
    /// refusals in the Workflow format.
    pub fn auth_layer<C>(&self, verifier: Verifier) -> AuthLayer<C, WorkflowFormat> {
        AuthLayer::new(verifier)
            .sources(TokenSources::single(TokenSource::header(X_AUTH_TOKEN)))
            .revocations(self.flow.issuer().revocations())
            .on_rejection(WorkflowFormat)
    }

    fn token_for(&self, principal: &Principal) -> Result<String, LoginError> {
        Ok(self
            .flow
            .issuer()
            .issue_access(principal, TOKEN_SECONDS)?
            .token)
    }
}

fn with_token(mut response: Response, token: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(token) {
        response.headers_mut().insert(X_AUTH_TOKEN, value);
    }
    no_store(response)
}

#[derive(Deserialize)]
struct LoginV2 {
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "logoutID")]
    logout_id: Option<String>,
    otp: Option<String>,
}

async fn login_v2(
    State(preset): State<Arc<XAuthToken>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, WorkflowError> {
    let login: LoginV2 = read_body(request, Accept::Json).await?;
    let username = required(login.username, "username")?;
    let password = required(login.password, "password")?;
    let principal = password_with_code(
        &preset.flow,
        &username,
        &password,
        login.otp.as_deref(),
        client,
    )
    .await?;
    log_out(&preset, login.logout_id.as_deref()).await?;
    let token = preset.token_for(&principal)?;
    Ok(with_token(
        Json(json!({
            "userId": principal.id,
            "username": principal.username,
            "X-Auth-Token": token,
        }))
        .into_response(),
        &token,
    ))
}

#[derive(Deserialize)]
struct LoginV1 {
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "logoutID")]
    logout_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct LoginV1Body {
    #[serde(rename = "logoutID")]
    logout_id: Option<String>,
}

/// Ends the session a `logoutID` names, when it is a token of this service;
/// anything else is ignored, as an unknown logout id would be.
async fn log_out(preset: &XAuthToken, logout_id: Option<&str>) -> Result<(), LoginError> {
    if let Some(previous) = logout_id.filter(|t| !t.is_empty())
        && let Err(LoginError::Unavailable(err)) = preset.flow.issuer().revoke(previous).await
    {
        return Err(LoginError::Unavailable(err));
    }
    Ok(())
}

/// `YYYY-MM-DD` (UTC) of a moment in seconds since the epoch.
fn date_of(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .map(|moment| moment.date().to_string())
}

async fn login_v1(
    State(preset): State<Arc<XAuthToken>>,
    client: LoginClient,
    query: Result<Query<LoginV1>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let result = async {
        let Query(query) = query.map_err(|e| Failure::bad_request(e.body_text()))?;
        let username = required(query.username, "username")?;
        let password = required(query.password, "password")?;
        let (parts, body) = body_bytes(request).await?;
        let body: LoginV1Body = if body.iter().all(u8::is_ascii_whitespace) {
            LoginV1Body::default()
        } else {
            parse_body(parts, body, Accept::Json).await?
        };
        let principal =
            password_with_code(&preset.flow, &username, &password, None, client).await?;
        log_out(&preset, query.logout_id.or(body.logout_id).as_deref()).await?;
        let token = preset.token_for(&principal)?;
        let mut answer = json!({ "id": principal.id, "username": principal.username });
        if let Some(date) = principal.active_until.and_then(date_of) {
            answer["activeUntil"] = json!(date);
        }
        Ok::<_, WorkflowError>(with_token(Json(answer).into_response(), &token))
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let headers = response.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static("true"));
    headers.insert(
        header::LINK,
        HeaderValue::from_static("</api/v2/login>; rel=\"successor-version\""),
    );
    response
}
