//! The five documented login APIs, one preset each (feature `presets`).
//!
//! Each preset is a [`Router`](axum::Router) (a tower `Service`, so it serves
//! plain hyper as well as axum) that speaks one API's wire format exactly:
//! paths, field names, status codes, headers and cookie attributes. They all
//! run on the same parts: a [`crate::login::LoginFlow`]
//! (authenticator, token issuer, TOTP) and, for the cookie session,
//! [`crate::cookie::CookieSettings`].
//!
//! | preset | document | token travels in |
//! |---|---|---|
//! | [`cookie_session`] | 000, inSCADA | cookies `ins_access_token` / `ins_refresh_token` |
//! | [`bearer_pair`] | 001, datarhei Core | `Authorization: Bearer` |
//! | [`pascal_case`] | 002, Scailable / Nx | `AccessToken` / `RefreshToken` as bearer |
//! | [`auth_token`] | 003, RegScale | `Authorization: Bearer <auth_token>` |
//! | [`x_auth_token`] | 004, Workflow | `X-Auth-Token` header |
//!
//! Every malformed request gets a clear answer in the API's own error shape:
//! `400` for a malformed body or a missing field, `401` for wrong
//! credentials (the same for unknown users), `413` for a body over the login
//! limit, `415` for a content type the endpoint does not take, `503` when a
//! store cannot be reached.

pub mod auth_token;
pub mod bearer_pair;
pub mod cookie_session;
pub mod pascal_case;
pub mod x_auth_token;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::login::{LoginError, LoginFlow, LoginOutcome, Principal};
use crate::reject::AuthRejection;
use crate::token::TokenSources;

/// The largest login request body the presets read, in bytes.
pub const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// Why a preset's request failed: status and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
    /// Seconds to wait before trying again (a locked account, an
    /// unavailable store), sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<LoginError> for Failure {
    fn from(err: LoginError) -> Self {
        let mut failure = Failure::new(err.status(), err.public_message());
        failure.retry_after = err.retry_after();
        failure
    }
}

impl Failure {
    /// Adds `Retry-After` to `response` when the failure has one.
    pub(crate) fn finish(
        &self,
        mut response: axum::response::Response,
    ) -> axum::response::Response {
        if let Some(seconds) = self.retry_after
            && let Ok(value) = http::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The client address of a login request, for lockout per address: the
/// [`ClientIp`](crate::ip::ClientIp) an `IpFilterLayer` resolved, else the
/// peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginClient(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LoginClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(crate::ip::ClientIp(ip)) = parts.extensions.get::<crate::ip::ClientIp>() {
            return Ok(LoginClient(Some(*ip)));
        }
        use axum::extract::ConnectInfo;
        let peer = parts
            .extensions
            .get::<crate::ip::PeerAddr>()
            .map(|p| p.0.ip())
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip())
            });
        Ok(LoginClient(peer.map(|ip| ip.to_canonical())))
    }
}

impl From<AuthRejection> for Failure {
    fn from(rejection: AuthRejection) -> Self {
        Failure::new(rejection.status(), rejection.description())
    }
}

/// The body, or the answer for a body that could not be read (`413` over
/// the limit).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Failure> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Failure::new(status, "the request body is too large")
        } else {
            Failure::bad_request("the request body could not be read")
        }
    })
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
}

/// Marks a response that carries credentials as not to be stored
/// (RFC 6749 §5.1).
pub(crate) fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Adds a bare `WWW-Authenticate: Bearer` challenge to a `401`.
pub(crate) fn bearer_challenge(mut response: axum::response::Response) -> axum::response::Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Parses a JSON body: `415` without a JSON content type, `400` for
/// malformed JSON or a missing field (named in the answer).
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Failure> {
    let is_json = content_type(headers).is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
    });
    if !is_json {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        let text = err.to_string();
        let mut failure = Failure::bad_request(format!("malformed JSON body: {text}"));
        if let Some(rest) = text.strip_prefix("missing field `") {
            failure.field = rest.split('`').next().map(str::to_owned);
        }
        failure
    })
}

/// Reads a JSON body: [`body_bytes`] then [`parse_json`].
pub(crate) fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Failure> {
    parse_json(headers, &body_bytes(body)?)
}

/// The bearer token of a request, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    TokenSources::bearer()
        .find(headers)
        .map(|found| found.map(|f| f.token))
        .map_err(Failure::from)
}

/// Password login for APIs without a separate TOTP step: a user with TOTP
/// must send the code in the same request (`otp`), or is told one is needed.
pub(crate) async fn password_with_code(
    flow: &LoginFlow,
    username: &str,
    password: &str,
    code: Option<&str>,
    client: LoginClient,
) -> Result<Principal, LoginError> {
    match flow.password_from(username, password, client.0).await? {
        LoginOutcome::Authenticated(principal) => Ok(principal),
        LoginOutcome::TotpRequired(pending) => match code {
            Some(code) => flow.totp_from(&pending.token, code, client.0).await,
            None => Err(LoginError::OtpRequired),
        },
    }
}
