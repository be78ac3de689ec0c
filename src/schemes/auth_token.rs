//! Document 003 (RegScale): login answering a user id and an `auth_token`,
//! and service accounts.
//!
//! - `POST /api/authentication/login` with
//!   `{"username","password","oldPassword"}` → `{"id","auth_token","username","expires"}`;
//!   callers send `Authorization: Bearer <auth_token>`. The token lasts 24
//!   hours.
//! - Service accounts, for administrators (role `admin`) authenticated with
//!   their own access token:
//!   `POST /api/serviceAccounts` with `{"purpose","durationDays"}` (or
//!   `"durationSeconds"`) → `201` with the token (shown once), its `id`,
//!   `purpose`, `roles` (the creator's) and `expiresAt`;
//!   `GET /api/serviceAccounts` lists them without tokens;
//!   `DELETE /api/serviceAccounts/{id}` revokes one (`204`, or `404`).
//! - [`AuthToken::auth_layer`] accepts access and service-account tokens as
//!   bearer tokens and refuses revoked ones.
//!
//! Errors answer `{"statusCode":…,"message":"…"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthLayer;
use crate::login::{AuthClaims, LoginFlow, ServiceAccounts};
use crate::token::{TokenKind, TokenSources, Verifier};

use super::{
    Failure, LOGIN_BODY_LIMIT, LoginClient, bearer_challenge, bearer_token, json_body, no_store,
    password_with_code,
};

/// How long an `auth_token` lives: 24 hours.
pub const AUTH_TOKEN_SECONDS: u64 = 86_400;

/// The auth-token preset.
#[derive(Clone, Debug)]
pub struct AuthToken {
    flow: LoginFlow,
    accounts: ServiceAccounts,
}

impl AuthToken {
    /// The preset over `flow`, with an empty service-account registry.
    pub fn new(flow: LoginFlow) -> Self {
        AuthToken {
            flow,
            accounts: ServiceAccounts::new(),
        }
    }

    /// The service-account registry.
    pub fn service_accounts(&self) -> &ServiceAccounts {
        &self.accounts
    }

    /// The login and service-account routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/authentication/login", post(login))
            .route("/api/serviceAccounts", post(create).get(list))
            .route("/api/serviceAccounts/{id}", delete(revoke))
            .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT))
            .with_state(Arc::new(self.clone()))
    }

    /// An [`AuthLayer`] for API routes: bearer access or service-account
    /// tokens, revoked ones refused.
    pub fn auth_layer<C>(&self, verifier: Verifier) -> Result<AuthLayer<C>, crate::ConfigError> {
        let verifier = verifier
            .to_builder()
            .accept_kinds([TokenKind::Access, TokenKind::ServiceAccount])
            .build()?;
        Ok(AuthLayer::new(verifier)
            .sources(TokenSources::bearer())
            .revocations(self.flow.issuer().revocations()))
    }

    async fn administrator(&self, headers: &HeaderMap) -> Result<AuthClaims, Failure> {
        let token = bearer_token(headers)?
            .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "authentication is required"))?;
        let claims = self
            .flow
            .issuer()
            .verify(token, &[TokenKind::Access])
            .await?;
        if !claims.roles.iter().any(|r| r == "admin") {
            return Err(Failure::new(StatusCode::FORBIDDEN, "administrators only"));
        }
        Ok(claims)
    }
}

fn error_response(failure: Failure) -> Response {
    let response = error_body(&failure);
    failure.finish(response)
}

fn error_body(failure: &Failure) -> Response {
    bearer_challenge(
        (
            failure.status,
            Json(json!({ "statusCode": failure.status.as_u16(), "message": failure.message })),
        )
            .into_response(),
    )
}

fn respond(result: Result<Response, Failure>) -> Response {
    result.unwrap_or_else(error_response)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    username: String,
    password: String,
    #[serde(default)]
    #[allow(dead_code)]
    old_password: Option<String>,
    #[serde(default)]
    otp: Option<String>,
}

async fn login(
    State(preset): State<Arc<AuthToken>>,
    client: LoginClient,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let login: Login = json_body(&headers, body)?;
            let principal = password_with_code(
                &preset.flow,
                &login.username,
                &login.password,
                login.otp.as_deref(),
                client,
            )
            .await?;
            let minted = preset
                .flow
                .issuer()
                .issue_access(&principal, AUTH_TOKEN_SECONDS)?;
            let response = Json(json!({
                "id": principal.id,
                "auth_token": minted.token,
                "username": principal.username,
                "expires": minted.claims.exp,
            }))
            .into_response();
            Ok(no_store(response))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewServiceAccount {
    purpose: String,
    #[serde(default)]
    duration_days: Option<u64>,
    #[serde(default)]
    duration_seconds: Option<u64>,
}

async fn create(
    State(preset): State<Arc<AuthToken>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        async {
            let admin = preset.administrator(&headers).await?;
            let request: NewServiceAccount = json_body(&headers, body)?;
            let ttl = match (request.duration_seconds, request.duration_days) {
                (Some(seconds), None) => seconds,
                (None, Some(days)) => days.saturating_mul(86_400),
                _ => {
                    return Err(Failure::bad_request(
                        "give exactly one of durationDays or durationSeconds",
                    ));
                }
            };
            let creator = crate::login::Principal {
                id: admin.uid.clone(),
                username: admin.sub.clone(),
                spaces: admin.spaces.clone(),
                roles: admin.roles.clone(),
                totp_secret: None,
            };
            let (account, token) = preset.accounts.create(
                preset.flow.issuer().as_ref(),
                &creator,
                &request.purpose,
                ttl,
            )?;
            let response = (
                StatusCode::CREATED,
                Json(json!({
                    "id": account.id,
                    "purpose": account.purpose,
                    "token": token,
                    "roles": account.roles,
                    "createdBy": account.created_by,
                    "expiresAt": account.expires_at,
                })),
            )
                .into_response();
            Ok(no_store(response))
        }
        .await,
    )
}

async fn list(State(preset): State<Arc<AuthToken>>, headers: HeaderMap) -> Response {
    respond(
        async {
            preset.administrator(&headers).await?;
            Ok(Json(preset.accounts.list()?).into_response())
        }
        .await,
    )
}

async fn revoke(
    State(preset): State<Arc<AuthToken>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            preset.administrator(&headers).await?;
            if preset
                .accounts
                .revoke(preset.flow.issuer().as_ref(), &id)
                .await?
            {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    "no such service account",
                ))
            }
        }
        .await,
    )
}
