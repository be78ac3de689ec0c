//! The RegScale API: login answering a user id and an `auth_token`, and
//! service accounts.
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
//!   `GET /api/serviceAccounts` lists them without tokens, in the same
//!   camelCase (paged with `Offset`, `Limit`, `OrderBy`);
//!   `DELETE /api/serviceAccounts/{id}` revokes one (`204`, or `404`). The
//!   registry is a [`ServiceAccountStore`]: give the preset a persistent
//!   one (Redis) and the accounts stay listable and revocable across
//!   restarts, for as long as their tokens live.
//! - [`AuthToken::auth_layer`] accepts access and service-account tokens as
//!   bearer tokens and refuses revoked ones.
//!
//! Errors answer `{"statusCode":…,"message":"…"}` ([`RegScaleFormat`]).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthLayer;
use crate::login::{AuthClaims, LoginFlow, ServiceAccounts};
use crate::store::ServiceAccountStore;
use crate::token::{TokenKind, TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, Paging, no_store, password_with_code,
    read_body, rejections_in_format, required, required_bearer, with_preset,
};

/// How long an `auth_token` lives: 24 hours.
pub const AUTH_TOKEN_SECONDS: u64 = 86_400;

/// The RegScale error format: `{"statusCode":…,"message":"…"}`, with
/// `WWW-Authenticate: Bearer` on a `401`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegScaleFormat;

impl ErrorFormat for RegScaleFormat {
    fn render(failure: &Failure) -> Response {
        let body = json!({
            "statusCode": failure.status.as_u16(),
            "message": failure.message,
        });
        (failure.status, Json(body)).into_response()
    }
}

rejections_in_format!(RegScaleFormat);

/// An error of the RegScale routes.
pub type RegScaleError = ApiError<RegScaleFormat>;

/// The auth-token preset.
#[derive(Clone, Debug)]
pub struct AuthToken {
    flow: LoginFlow,
    accounts: ServiceAccounts,
}

impl AuthToken {
    /// The preset over `flow`, with a service-account registry in memory.
    pub fn new(flow: LoginFlow) -> Self {
        let flow = flow.named_if_unnamed("auth_token");
        AuthToken {
            flow,
            accounts: ServiceAccounts::default(),
        }
    }

    /// With the service-account registry in `store` (share a persistent one
    /// between instances and restarts). Revoking a service account writes
    /// to the flow's issuer's revocation store: give that issuer a
    /// persistent [`RevocationStore`](crate::store::RevocationStore) too
    /// (both on Redis, say), or a revoked token, valid for years, verifies
    /// again after a restart.
    pub fn with_service_account_store(mut self, store: Arc<dyn ServiceAccountStore>) -> Self {
        self.accounts = ServiceAccounts::new(store);
        self
    }

    /// The service-account registry.
    pub fn service_accounts(&self) -> &ServiceAccounts {
        &self.accounts
    }

    /// The login and service-account routes.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/api/authentication/login", post(login))
            .route("/api/serviceAccounts", post(create).get(list))
            .route("/api/serviceAccounts/{id}", delete(revoke));
        with_preset(routes, self.clone())
    }

    /// An [`AuthLayer`] for API routes: bearer access or service-account
    /// tokens, revoked ones refused, refusals in the RegScale format.
    pub fn auth_layer<C>(
        &self,
        verifier: Verifier,
    ) -> Result<AuthLayer<C, RegScaleFormat>, crate::ConfigError> {
        let verifier = verifier
            .to_builder()
            .accept_kinds([TokenKind::Access, TokenKind::ServiceAccount])
            .build()?;
        Ok(AuthLayer::new(verifier)
            .sources(TokenSources::bearer())
            .revocations(self.flow.issuer().revocations())
            .on_rejection(RegScaleFormat))
    }

    /// The claims of the caller's access token, when the caller is an
    /// administrator (role `admin`).
    async fn administrator(&self, headers: &HeaderMap) -> Result<AuthClaims, RegScaleError> {
        let token = required_bearer(headers, "authentication is required")?;
        let claims = self
            .flow
            .issuer()
            .verify(token, &[TokenKind::Access])
            .await?;
        super::require_grants(super::administrators(), &claims)?;
        Ok(claims)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    username: Option<String>,
    password: Option<String>,
    // Accepted and ignored: the document describes no password change.
    #[serde(rename = "oldPassword")]
    _old_password: Option<String>,
    otp: Option<String>,
}

async fn login(
    State(preset): State<Arc<AuthToken>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, RegScaleError> {
    let login: Login = read_body(request, Accept::Json).await?;
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
    let minted = preset
        .flow
        .issuer()
        .issue_access(&principal, AUTH_TOKEN_SECONDS)?;
    Ok(no_store(
        Json(json!({
            "id": principal.id,
            "auth_token": minted.token,
            "username": principal.username,
            "expires": minted.claims.exp,
        }))
        .into_response(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewServiceAccount {
    purpose: Option<String>,
    duration_days: Option<u64>,
    duration_seconds: Option<u64>,
}

async fn create(
    State(preset): State<Arc<AuthToken>>,
    request: Request,
) -> Result<Response, RegScaleError> {
    let admin = preset.administrator(request.headers()).await?;
    let body: NewServiceAccount = read_body(request, Accept::Json).await?;
    let purpose = required(body.purpose, "purpose")?;
    let ttl = match (body.duration_seconds, body.duration_days) {
        (Some(seconds), None) => seconds,
        (None, Some(days)) => days.saturating_mul(86_400),
        _ => {
            return Err(Failure::bad_request(
                "give exactly one of durationDays or durationSeconds",
            )
            .into());
        }
    };
    let (account, token) = preset
        .accounts
        .create(
            preset.flow.issuer().as_ref(),
            &admin.principal(),
            &purpose,
            ttl,
        )
        .await?;
    let mut created = json!({
        "id": account.id,
        "purpose": account.purpose,
        "token": token,
        "roles": account.roles,
        "createdBy": account.created_by,
        "createdAt": account.created_at,
        "expiresAt": account.expires_at,
        "revoked": account.revoked,
    });
    // As the listing shows it: the scopes only when there are any.
    if !account.scopes.is_empty() {
        created["scopes"] = json!(account.scopes);
    }
    let response = (StatusCode::CREATED, Json(created)).into_response();
    Ok(no_store(response))
}

async fn list(
    State(preset): State<Arc<AuthToken>>,
    paging: Paging<RegScaleFormat>,
    headers: HeaderMap,
) -> Result<Response, RegScaleError> {
    preset.administrator(&headers).await?;
    let accounts = preset
        .accounts
        .list()
        .await?
        .into_iter()
        .map(|account| json!(account))
        .collect();
    let page = paging.apply(
        accounts,
        &[
            "id",
            "purpose",
            "createdBy",
            "createdAt",
            "expiresAt",
            "revoked",
        ],
    )?;
    Ok(Json(page).into_response())
}

async fn revoke(
    State(preset): State<Arc<AuthToken>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RegScaleError> {
    preset.administrator(&headers).await?;
    if preset
        .accounts
        .revoke(preset.flow.issuer().as_ref(), &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Failure::new(StatusCode::NOT_FOUND, "no such service account").into())
    }
}
