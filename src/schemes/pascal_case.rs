//! Document 002 (Scailable / Nx cloud): PascalCase sign-in, refresh with a
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
//!
//! Errors answer the documented shape:
//! `{"AuthorizationInvalid","BackendMessage","Email","Field":{"Message","Name"},"Message","UUID"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::login::{LoginFlow, LoginOutcome, TokenPair};
use crate::token::TokenKind;

use super::{
    Failure, LOGIN_BODY_LIMIT, LoginClient, bearer_challenge, bearer_token, json_body, no_store,
};

/// Refresh lifetime for `KeepLoggedIn: true`: 30 days.
pub const KEEP_LOGGED_IN_SECONDS: u64 = 30 * 86_400;

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
    pub fn keep_logged_in_for(mut self, seconds: u64) -> Self {
        self.keep_logged_in = seconds;
        self
    }

    /// The `/authenticate/*` routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/authenticate/signin",
                on(MethodFilter::POST.or(MethodFilter::GET), signin),
            )
            .route("/authenticate/refresh", post(refresh))
            .route("/authenticate/signout", post(signout))
            .route("/authenticate/totp", post(totp))
            .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
            .with_state(Arc::new(self.clone()))
    }
}

fn error_response(failure: Failure) -> Response {
    let response = error_body(&failure);
    failure.finish(response)
}

fn error_body(failure: &Failure) -> Response {
    let authorization_invalid = failure.status == StatusCode::UNAUTHORIZED;
    let response = (
        failure.status,
        Json(json!({
            "AuthorizationInvalid": authorization_invalid,
            "BackendMessage": "",
            "Email": "",
            "Field": {
                "Message": if failure.field.is_some() { failure.message.as_str() } else { "" },
                "Name": failure.field.as_deref().unwrap_or(""),
            },
            "Message": failure.message,
            "UUID": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response();
    bearer_challenge(response)
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

fn respond(result: Result<Response, Failure>) -> Response {
    result.unwrap_or_else(error_response)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignIn {
    username: String,
    password: String,
    keep_logged_in: bool,
}

async fn signin(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let signin: SignIn = json_body(&headers, body)?;
            let refresh_ttl = signin.keep_logged_in.then_some(preset.keep_logged_in);
            match preset
                .flow
                .password_from(&signin.username, &signin.password, client.0)
                .await?
            {
                LoginOutcome::Authenticated(principal) => Ok(pair_response(
                    &preset.flow.issuer().issue_pair(&principal, refresh_ttl)?,
                )),
                LoginOutcome::TotpRequired(pending) => Ok(Json(json!({
                    "AccessToken": "",
                    "Error": "",
                    "RefreshToken": "",
                    "TotpAccessCode": pending.token,
                }))
                .into_response()),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Refresh {
    grant_type: String,
}

async fn refresh(
    State(preset): State<Arc<PascalCase>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let request: Refresh = json_body(&headers, body)?;
            if request.grant_type != "refresh_token" {
                let mut failure = Failure::bad_request("GrantType must be \"refresh_token\"");
                failure.field = Some("GrantType".into());
                return Err(failure);
            }
            let token = bearer_token(&headers)?.ok_or_else(|| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "a bearer refresh token is required",
                )
            })?;
            Ok(pair_response(
                &preset.flow.issuer().refresh(token, true).await?,
            ))
        }
        .await,
    )
}

async fn signout(State(preset): State<Arc<PascalCase>>, headers: HeaderMap) -> Response {
    respond(
        async {
            let token = bearer_token(&headers)?.ok_or_else(|| {
                Failure::new(StatusCode::UNAUTHORIZED, "authentication is required")
            })?;
            // Only an access token signs out; it revokes its whole session.
            preset
                .flow
                .issuer()
                .verify(token, &[TokenKind::Access])
                .await?;
            preset.flow.issuer().revoke(token).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
struct TotpStep {
    token: String,
    totp: String,
}

async fn totp(
    State(preset): State<Arc<PascalCase>>,
    client: LoginClient,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let step: TotpStep = json_body(&headers, body)?;
        let principal = preset
            .flow
            .totp_from(&step.token, &step.totp, client.0)
            .await?;
        Ok::<_, Failure>(preset.flow.issuer().issue_pair(&principal, None)?)
    }
    .await;
    match result {
        Ok(pair) => {
            let response = Json(json!({
                "AccessToken": pair.access.token,
                "Error": "",
                "RefreshToken": pair.refresh.map(|r| r.token).unwrap_or_default(),
                "TotpAccessCode": "",
            }))
            .into_response();
            no_store(response)
        }
        Err(failure) if failure.status == StatusCode::UNAUTHORIZED => {
            // The step's own shape carries the error in `Error`.
            let response = (
                failure.status,
                Json(json!({
                    "AccessToken": "",
                    "Error": failure.message,
                    "RefreshToken": "",
                    "TotpAccessCode": "",
                })),
            )
                .into_response();
            bearer_challenge(response)
        }
        Err(failure) => error_response(failure),
    }
}
