//! The datarhei Core API: JSON login, a bearer access/refresh pair, a
//! refresh endpoint, and login with an external identity provider's token.
//!
//! - `POST /api/login` with `{"username","password"}` →
//!   `{"access_token","refresh_token"}`. The tokens carry the claims of the
//!   document's sample tokens: `exi` (600 for access, 86 400 for refresh
//!   with the default [`Lifetimes`](crate::login::Lifetimes)), `exp`, `iat`,
//!   `iss` (`datarhei-core` when the issuer is so named), `jti`, `sub`,
//!   `usefor` (`access` | `refresh`), plus `uid`, `fam` (the login session,
//!   for revocation) and the user's `spaces` and `roles`.
//! - `POST /api/login` with `Authorization: Bearer <external JWT>` and no
//!   body → the same pair for the user the [`ExternalTokenVerifier`] names
//!   (Core's Auth0 login).
//! - `GET /api/login/refresh` with `Authorization: Bearer <refresh_token>` →
//!   `{"access_token"}`. A refresh token never passes as an access token,
//!   nor an access token as a refresh token.
//! - A user with TOTP sends the code in the login body as `otp`.
//! - [`BearerPair::auth_layer`] guards the API routes (`/api/v3/…`): bearer
//!   access tokens, revoked ones refused.
//!
//! - Failed logins count in the [`LoginFlow`]'s lockout, shared with every
//!   other preset on that flow (by default five failures lock an account
//!   for ten minutes). A locked account, and an unknown name that has
//!   failed as often, answers `POST /api/login` with `423 Locked`,
//!   `Retry-After` (seconds) and the Core error object
//!   `{"code":423,"message":"the account is locked; try again later","details":[]}`;
//!   its password is not checked meanwhile. The document describes
//!   neither a lockout nor error bodies: the status is the one the
//!   inSCADA preset gives a locked account, the body the preset's error
//!   object ([`CoreFormat`]), and the successful answers stay the
//!   document's.
//! - A store that cannot be reached answers `503` with `Retry-After`
//!   (login and refresh alike): a refresh never answers `401` for an
//!   outage, so clients keep their tokens.
//!
//! Errors answer `{"code":…,"message":"…","details":[…]}` as Core's API
//! does ([`CoreFormat`]).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthLayer;
use crate::login::{
    ExternalTokenVerifier, LoginError, LoginFlow, PairLifetimes, Principal, RefreshOptions,
};
use crate::token::{TokenSources, Verifier};

use super::{
    Accept, ApiError, ErrorFormat, Failure, LoginClient, bearer_token, body_bytes, no_store,
    parse_body, password_with_code, rejections_in_format, required, required_bearer, with_preset,
};

/// The datarhei Core error format: `{"code":…,"message":"…","details":[…]}`
/// (`details` names the field at fault), and `WWW-Authenticate: Bearer` on a
/// `401`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreFormat;

impl ErrorFormat for CoreFormat {
    fn render(failure: &Failure) -> Response {
        let details: Vec<String> = failure
            .field
            .iter()
            .map(|field| format!("field: {field}"))
            .collect();
        let body = json!({
            "code": failure.status.as_u16(),
            "message": failure.message,
            "details": details,
        });
        (failure.status, Json(body)).into_response()
    }
}

rejections_in_format!(CoreFormat);

/// An error of the datarhei Core routes.
pub type CoreError = ApiError<CoreFormat>;

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
        let flow = flow.named_if_unnamed("bearer_pair");
        BearerPair {
            flow,
            external: None,
        }
    }

    /// Accept external tokens at `POST /api/login`.
    pub fn with_external_login(mut self, verifier: Arc<dyn ExternalTokenVerifier>) -> Self {
        self.external = Some(verifier);
        self
    }

    /// `POST /api/login` and `GET /api/login/refresh`.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/api/login", post(login))
            .route("/api/login/refresh", get(refresh));
        with_preset(routes, self.clone())
    }

    /// An [`AuthLayer`] for the API routes: bearer access tokens, revoked
    /// ones refused, refusals in the Core format. `verifier` must accept
    /// the issuer's key.
    pub fn auth_layer<C>(&self, verifier: Verifier) -> AuthLayer<C, CoreFormat> {
        AuthLayer::new(verifier)
            .sources(TokenSources::bearer())
            .revocations(self.flow.issuer().revocations())
            .on_rejection(CoreFormat)
    }

    async fn external_principal(&self, token: &str) -> Result<Principal, LoginError> {
        let external = self
            .external
            .as_ref()
            .ok_or(LoginError::InvalidCredentials)?;
        let username = external.verify_external(token).await?;
        let found = self
            .flow
            .users()
            .find(&username)
            .await
            .map_err(LoginError::Unavailable)?;
        Ok(found.unwrap_or_else(|| Principal::new(username.clone(), username)))
    }
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    otp: Option<String>,
}

async fn login(
    State(preset): State<Arc<BearerPair>>,
    client: LoginClient,
    request: Request,
) -> Result<Response, CoreError> {
    let (parts, body) = body_bytes(request).await?;
    // A bearer token and no body: the external identity provider's login.
    let external = match bearer_token(&parts.headers)? {
        Some(token) if body.iter().all(u8::is_ascii_whitespace) => Some(token.to_owned()),
        _ => None,
    };
    let principal = match external {
        Some(token) => preset.external_principal(&token).await?,
        None => {
            let login: LoginBody = parse_body(parts, body, Accept::Json).await?;
            let username = required(login.username, "username")?;
            let password = required(login.password, "password")?;
            password_with_code(
                &preset.flow,
                &username,
                &password,
                login.otp.as_deref(),
                client,
            )
            .await?
        }
    };
    let pair = preset
        .flow
        .issuer()
        .issue_pair(&principal, PairLifetimes::new())?;
    Ok(no_store(
        Json(json!({
            "access_token": pair.access.token,
            "refresh_token": pair.refresh.map(|r| r.token),
        }))
        .into_response(),
    ))
}

async fn refresh(
    State(preset): State<Arc<BearerPair>>,
    headers: HeaderMap,
) -> Result<Response, CoreError> {
    let token = required_bearer(&headers, "a bearer refresh token is required")?;
    let pair = preset
        .flow
        .refresh(token, RefreshOptions::keeping())
        .await?;
    Ok(no_store(
        Json(json!({ "access_token": pair.access.token })).into_response(),
    ))
}
