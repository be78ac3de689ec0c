//! Document 001 (datarhei Core): JSON login, a bearer access/refresh pair, a
//! refresh endpoint, and login with an external identity provider's token.
//!
//! - `POST /api/login` with `{"username","password"}` →
//!   `{"access_token","refresh_token"}`. The tokens carry exactly the claims
//!   of the document's samples: `exi` (600 for access, 86 400 for refresh
//!   with the default [`Lifetimes`](crate::login::Lifetimes)), `exp`, `iat`,
//!   `iss` (`datarhei-core` when the issuer is so named), `jti`, `sub`,
//!   `usefor` (`access` | `refresh`), plus `fam`/`uid` for revocation.
//! - `POST /api/login` with `Authorization: Bearer <external JWT>` and no
//!   body → the same pair for the user the [`ExternalTokenVerifier`] names.
//! - `GET /api/login/refresh` with `Authorization: Bearer <refresh_token>` →
//!   `{"access_token"}`. A refresh token never passes as an access token,
//!   nor an access token as a refresh token.
//! - A user with TOTP sends the code in the login body as `otp`.
//!
//! Errors answer `{"code":…,"message":"…","details":[…]}` as Core's API does.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::login::{ExternalTokenVerifier, LoginError, LoginFlow, Principal};

use super::{
    Failure, LOGIN_BODY_LIMIT, LoginClient, bearer_challenge, bearer_token, body_bytes, no_store,
    parse_json, password_with_code,
};

/// The bearer-pair preset.
#[derive(Clone)]
pub struct BearerPair {
    flow: LoginFlow,
    external: Option<Arc<dyn ExternalTokenVerifier>>,
}

impl std::fmt::Debug for BearerPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerPair")
            .field("flow", &self.flow)
            .field("external", &self.external.is_some())
            .finish()
    }
}

impl BearerPair {
    /// The preset over `flow`, without external login.
    pub fn new(flow: LoginFlow) -> Self {
        BearerPair {
            flow,
            external: None,
        }
    }

    /// Accept external tokens at `POST /api/login`.
    pub fn external_login(mut self, verifier: Arc<dyn ExternalTokenVerifier>) -> Self {
        self.external = Some(verifier);
        self
    }

    /// `POST /api/login` and `GET /api/login/refresh`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/login", post(login))
            .route("/api/login/refresh", get(refresh))
            .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
            .with_state(Arc::new(self.clone()))
    }

    async fn external_principal(&self, token: &str) -> Result<Principal, LoginError> {
        let external = self
            .external
            .as_ref()
            .ok_or(LoginError::InvalidCredentials)?;
        let username = external.verify_external(token).await?;
        Ok(match self.flow.users().find(&username).await {
            Some(principal) => principal,
            None => Principal {
                id: username.clone(),
                username,
                spaces: Vec::new(),
                roles: Vec::new(),
                totp_secret: None,
            },
        })
    }
}

fn error_response(failure: Failure) -> Response {
    let response = error_body(&failure);
    failure.finish(response)
}

fn error_body(failure: &Failure) -> Response {
    let details: Vec<String> = failure
        .field
        .iter()
        .map(|f| format!("field: {f}"))
        .collect();
    bearer_challenge(
        (
            failure.status,
            Json(json!({
                "code": failure.status.as_u16(),
                "message": failure.message,
                "details": details,
            })),
        )
            .into_response(),
    )
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
}

async fn login(
    State(preset): State<Arc<BearerPair>>,
    client: LoginClient,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body_bytes(body)?;
        let principal = match bearer_token(&headers)? {
            Some(token) if body.iter().all(u8::is_ascii_whitespace) => {
                preset.external_principal(token).await?
            }
            _ => {
                let login: LoginBody = parse_json(&headers, &body)?;
                password_with_code(
                    &preset.flow,
                    &login.username,
                    &login.password,
                    login.otp.as_deref(),
                    client,
                )
                .await?
            }
        };
        let pair = preset.flow.issuer().issue_pair(&principal, None)?;
        Ok::<_, Failure>(Json(json!({
            "access_token": pair.access.token,
            "refresh_token": pair.refresh.map(|r| r.token),
        })))
    }
    .await;
    match result {
        Ok(body) => no_store(body.into_response()),
        Err(failure) => error_response(failure),
    }
}

async fn refresh(State(preset): State<Arc<BearerPair>>, headers: HeaderMap) -> Response {
    let result = async {
        let token = bearer_token(&headers)?.ok_or_else(|| {
            Failure::new(
                http::StatusCode::UNAUTHORIZED,
                "a bearer refresh token is required",
            )
        })?;
        let pair = preset.flow.issuer().refresh(token, false).await?;
        Ok::<_, Failure>(Json(json!({ "access_token": pair.access.token })))
    }
    .await;
    match result {
        Ok(body) => no_store(body.into_response()),
        Err(failure) => error_response(failure),
    }
}
