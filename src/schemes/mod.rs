//! The five documented login APIs, one preset each (feature `presets`).
//!
//! Each preset is a [`Router`] (a tower `Service`, so it serves
//! plain hyper as well as axum) that speaks one API's wire format exactly:
//! paths, field names, status codes, headers and cookie attributes. They all
//! run on the same parts: a [`LoginFlow`] (authenticator, token issuer, TOTP,
//! lockout) and, for the cookie session,
//! [`CookieSettings`](crate::cookie::CookieSettings).
//!
//! | preset | API | token travels in | error format |
//! |---|---|---|---|
//! | [`cookie_session`] | inSCADA | cookies `ins_access_token` / `ins_refresh_token` | [`cookie_session::InscadaFormat`] |
//! | [`bearer_pair`] | datarhei Core | `Authorization: Bearer` | [`bearer_pair::CoreFormat`] |
//! | [`pascal_case`] | Scailable / Nx | `AccessToken` / `RefreshToken` as bearer | [`pascal_case::NxFormat`] |
//! | [`auth_token`] | RegScale | `Authorization: Bearer <auth_token>` | [`auth_token::RegScaleFormat`] |
//! | [`x_auth_token`] | Workflow | `X-Auth-Token` header | [`x_auth_token::WorkflowFormat`] |
//!
//! Every preset has an `auth_layer` for the API routes it protects, whose
//! refusals answer in the API's error format. The format is an
//! [`OnRejection`](crate::reject::OnRejection): give it to every other layer
//! on the API's routes (`on_rejection(pascal_case::NxFormat)`) and the
//! service answers in one format throughout, throttled sign-ins and refused
//! addresses included.
//!
//! Every malformed request gets a clear answer in the API's own format:
//! `400` for a malformed body or a missing field (named), `401` for wrong
//! credentials (the same for unknown users), `413` for a body over
//! [`LOGIN_BODY_LIMIT`], `415` for a content type the endpoint does not
//! take, `423` for a locked account and `503` when a store cannot be
//! reached, the last two with `Retry-After`.

pub mod auth_token;
pub mod bearer_pair;
pub mod cookie_session;
pub mod pascal_case;
pub mod x_auth_token;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::login::{LoginError, LoginFlow, LoginOutcome, PairLifetimes, Principal};
use crate::reject::Rejection;
use crate::token::TokenSources;

/// The largest login request body the presets read, in bytes.
pub const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// The most fields a form body may have.
const MAX_FORM_FIELDS: usize = 16;

/// Why a preset's request failed, before it is rendered in the API's error
/// format: status, a message safe to show, the request field at fault, and
/// what the headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, safe to show the client.
    pub message: Cow<'static, str>,
    /// The request field at fault, if one is.
    pub field: Option<&'static str>,
    /// Seconds to wait before trying again (a locked account, a throttled
    /// address, an unavailable store), sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge, when a layer's refusal names one;
    /// otherwise a `401` carries the format's own.
    pub challenge: Option<HeaderValue>,
}

impl Failure {
    /// A failure with this status and message.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// A `400` for a malformed request.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A `400` naming the missing field.
    pub fn missing_field(field: &'static str) -> Self {
        Failure {
            field: Some(field),
            ..Self::bad_request(format!("missing field `{field}`"))
        }
    }

    /// A `401` asking for a credential.
    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<LoginError> for Failure {
    fn from(err: LoginError) -> Self {
        Failure {
            retry_after: err.retry_after(),
            ..Failure::new(err.status(), err.public_message())
        }
    }
}

impl From<&Rejection> for Failure {
    fn from(rejection: &Rejection) -> Self {
        Failure {
            retry_after: rejection.retry_after(),
            challenge: rejection.challenge(),
            ..Failure::new(rejection.status(), rejection.message())
        }
    }
}

/// The policy of the presets' administrator routes: the role `admin`.
pub(crate) fn administrators() -> &'static crate::authz::Policy {
    static POLICY: std::sync::LazyLock<crate::authz::Policy> =
        std::sync::LazyLock::new(|| crate::authz::Policy::role("admin"));
    &POLICY
}

/// Applies `policy` to a verified token: the refusal is the authorization
/// layer's (`403 insufficient_scope` naming what was needed), as a
/// [`Failure`] the preset renders in its API's format.
pub(crate) fn require(
    policy: &crate::authz::Policy,
    token: &crate::token::VerifiedToken,
) -> Result<(), Failure> {
    crate::authz::check_token(policy, token, &http::Extensions::new()).map_err(authz_failure)
}

/// Applies `policy` to what an issuer's verified claims grant (a preset
/// that verified the token through its issuer): the same refusal as
/// [`require`].
pub(crate) fn require_grants(
    policy: &crate::authz::Policy,
    claims: &crate::login::AuthClaims,
) -> Result<(), Failure> {
    let grants =
        crate::authz::Grants::new(claims.roles.iter().map(String::as_str), claims.scopes());
    crate::authz::check_grants(policy, &grants).map_err(authz_failure)
}

fn authz_failure(reason: crate::authz::AuthzRejection) -> Failure {
    Failure::from(&Rejection::Authz {
        reason,
        realm: crate::reject::Realm::default(),
    })
}

/// The value of a required field, or a `400` naming it.
pub(crate) fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Failure> {
    value.ok_or_else(|| Failure::missing_field(field))
}

/// A login API's error format: how a [`Failure`] is rendered.
pub trait ErrorFormat: Send + Sync + 'static {
    /// The challenge a `401` carries when the failure names none (`None`:
    /// no `WWW-Authenticate`).
    const CHALLENGE: Option<&'static str> = Some("Bearer");

    /// The status and body of the answer to `failure`; `Retry-After` and
    /// the challenge are added to it.
    fn render(failure: &Failure) -> Response;
}

/// An error of a preset's routes, answered in the format `F`: what every
/// handler of a preset returns, and what its layers' refusals become.
pub struct ApiError<F> {
    failure: Failure,
    _format: PhantomData<fn() -> F>,
}

impl<F> ApiError<F> {
    /// The failure this error answers.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl<F> std::fmt::Debug for ApiError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ApiError").field(&self.failure).finish()
    }
}

impl<F> From<Failure> for ApiError<F> {
    fn from(failure: Failure) -> Self {
        ApiError {
            failure,
            _format: PhantomData,
        }
    }
}

impl<F> From<LoginError> for ApiError<F> {
    fn from(err: LoginError) -> Self {
        Failure::from(err).into()
    }
}

impl<F> From<&Rejection> for ApiError<F> {
    fn from(rejection: &Rejection) -> Self {
        Failure::from(rejection).into()
    }
}

impl<F: ErrorFormat> IntoResponse for ApiError<F> {
    fn into_response(self) -> Response {
        let failure = self.failure;
        let mut response = F::render(&failure);
        let headers = response.headers_mut();
        if let Some(seconds) = failure.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        match (&failure.challenge, F::CHALLENGE) {
            (Some(challenge), _) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            (None, Some(challenge)) if failure.status == StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            _ => {}
        }
        response
    }
}

/// Implements [`OnRejection`](crate::reject::OnRejection) for error
/// formats, so a layer's refusal answers in the API's format.
macro_rules! rejections_in_format {
    ($format:ty) => {
        impl crate::reject::OnRejection<axum::body::Body> for $format {
            fn on_rejection(
                &self,
                rejection: &crate::reject::Rejection,
            ) -> axum::response::Response {
                use axum::response::IntoResponse as _;
                crate::schemes::ApiError::<$format>::from(rejection).into_response()
            }
        }
    };
}

pub(crate) use rejections_in_format;

/// Which request bodies an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// `application/json` (or `application/*+json`).
    Json,
    /// `multipart/form-data` or `application/x-www-form-urlencoded`.
    Form,
}

/// Reads and parses a request body: at most [`LOGIN_BODY_LIMIT`] bytes
/// (`413` beyond), of a content type `accept` allows (`415` otherwise),
/// parsed into `T` (`400` for malformed input). Required fields are
/// `Option`s in `T`, checked with [`required`] so the answer names them.
pub(crate) async fn read_body<T: DeserializeOwned>(
    request: Request,
    accept: Accept,
) -> Result<T, Failure> {
    let (parts, bytes) = body_bytes(request).await?;
    parse_body(parts, bytes, accept).await
}

/// The request's head and its body, at most [`LOGIN_BODY_LIMIT`] bytes
/// (`413` beyond).
pub(crate) async fn body_bytes(
    request: Request,
) -> Result<(http::request::Parts, axum::body::Bytes), Failure> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, LOGIN_BODY_LIMIT)
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        })?;
    Ok((parts, bytes))
}

/// Parses a body already read (see [`read_body`]).
pub(crate) async fn parse_body<T: DeserializeOwned>(
    parts: http::request::Parts,
    bytes: axum::body::Bytes,
    accept: Accept,
) -> Result<T, Failure> {
    let content_type = content_type(&parts.headers).to_ascii_lowercase();
    let kind = match (accept, content_type.as_str()) {
        (Accept::Json, ct)
            if ct == "application/json"
                || (ct.starts_with("application/") && ct.ends_with("+json")) =>
        {
            BodyKind::Json
        }
        (Accept::Form, "application/x-www-form-urlencoded") => BodyKind::Urlencoded,
        (Accept::Form, "multipart/form-data") => BodyKind::Multipart,
        (Accept::Json, _) => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        (Accept::Form, _) => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected multipart/form-data or application/x-www-form-urlencoded",
            ));
        }
    };
    match kind {
        BodyKind::Json => serde_json::from_slice(&bytes)
            .map_err(|err| Failure::bad_request(format!("malformed JSON body: {err}"))),
        BodyKind::Urlencoded => serde_urlencoded::from_bytes(&bytes)
            .map_err(|err| Failure::bad_request(format!("malformed form body: {err}"))),
        BodyKind::Multipart => {
            let request = Request::from_parts(parts, Body::from(bytes));
            let fields = multipart_fields(request).await?;
            // The text fields, re-read as a urlencoded form: one parser for
            // both form encodings.
            let encoded = serde_urlencoded::to_string(&fields)
                .map_err(|err| Failure::bad_request(format!("malformed form body: {err}")))?;
            serde_urlencoded::from_str(&encoded)
                .map_err(|err| Failure::bad_request(format!("malformed form body: {err}")))
        }
    }
}

enum BodyKind {
    Json,
    Urlencoded,
    Multipart,
}

/// The text fields of a multipart body, at most [`MAX_FORM_FIELDS`].
async fn multipart_fields(request: Request) -> Result<Vec<(String, String)>, Failure> {
    let malformed = |err: axum::extract::multipart::MultipartError| {
        Failure::bad_request(format!("malformed multipart body: {}", err.body_text()))
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| Failure::bad_request(rejection.body_text()))?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if fields.len() == MAX_FORM_FIELDS {
            return Err(Failure::bad_request("too many form fields"));
        }
        let name = field.name().unwrap_or("").to_owned();
        let value = field.text().await.map_err(malformed)?;
        fields.push((name, value));
    }
    Ok(fields)
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("", |v| v.split(';').next().unwrap_or("").trim())
}

/// Marks a response that carries credentials as not to be stored
/// (RFC 6749 §5.1).
pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The bearer token of a request, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    TokenSources::bearer()
        .find(headers)
        .map(|found| found.map(|f| f.token))
        .map_err(|reason| {
            Failure::from(&Rejection::Auth {
                reason,
                realm: crate::reject::Realm::default(),
            })
        })
}

/// The bearer token of a request, or a `401` saying which token is needed.
pub(crate) fn required_bearer<'h>(
    headers: &'h HeaderMap,
    what: &'static str,
) -> Result<&'h str, Failure> {
    bearer_token(headers)?.ok_or_else(|| Failure::unauthenticated(what))
}

/// `routes`, each answering within `after` or, past it, `503` with
/// `Retry-After` in the API's format `F` (the Scailable / Nx API documents a
/// time-out per endpoint).
pub(crate) fn within<F: ErrorFormat, S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    after: std::time::Duration,
) -> Router<S> {
    routes.route_layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(after, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::<F>::from(Failure {
                    retry_after: Some(1),
                    ..Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the request timed out after {} s", after.as_secs()),
                    )
                })
                .into_response(),
            }
        },
    ))
}

/// The default page size of [`Paging`].
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// The largest page [`Paging`] gives.
pub const MAX_PAGE_LIMIT: usize = 1000;
/// The most fields `OrderBy` may name.
const MAX_ORDER_FIELDS: usize = 4;

/// Paging of the crate's own lists, as the Scailable / Nx API pages its
/// lists: the query parameters `Offset` (items skipped, default 0), `Limit`
/// (items returned, default [`DEFAULT_PAGE_LIMIT`], at most
/// [`MAX_PAGE_LIMIT`]) and `OrderBy` (fields separated by commas, each
/// reversed by a leading `-`). A malformed parameter is a `400` in the
/// API's format `F`, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging<F> {
    offset: usize,
    limit: usize,
    order_by: Vec<(String, bool)>,
    _format: PhantomData<fn() -> F>,
}

#[derive(serde::Deserialize)]
struct PagingQuery {
    #[serde(rename = "Offset")]
    offset: Option<String>,
    #[serde(rename = "Limit")]
    limit: Option<String>,
    #[serde(rename = "OrderBy")]
    order_by: Option<String>,
}

impl<F> Paging<F> {
    fn parse(query: Option<&str>) -> Result<Self, Failure> {
        let query: PagingQuery = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|err| Failure::bad_request(format!("malformed query: {err}")))?;
        let number = |value: Option<String>, field: &'static str, default: usize| match value {
            None => Ok(default),
            Some(text) => text.trim().parse::<usize>().map_err(|_| Failure {
                field: Some(field),
                ..Failure::bad_request(format!("{field} must be a whole number"))
            }),
        };
        let offset = number(query.offset, "Offset", 0)?;
        let limit = number(query.limit, "Limit", DEFAULT_PAGE_LIMIT)?;
        if limit > MAX_PAGE_LIMIT {
            return Err(Failure {
                field: Some("Limit"),
                ..Failure::bad_request(format!("Limit is at most {MAX_PAGE_LIMIT}"))
            });
        }
        let mut order_by = Vec::new();
        for field in query.order_by.iter().flat_map(|o| o.split(',')) {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            let (name, descending) = match field.strip_prefix('-') {
                Some(name) => (name, true),
                None => (field, false),
            };
            if order_by.len() == MAX_ORDER_FIELDS || name.is_empty() || name.len() > 64 {
                return Err(Failure {
                    field: Some("OrderBy"),
                    ..Failure::bad_request(format!(
                        "OrderBy names at most {MAX_ORDER_FIELDS} fields"
                    ))
                });
            }
            order_by.push((name.to_owned(), descending));
        }
        Ok(Paging {
            offset,
            limit,
            order_by,
            _format: PhantomData,
        })
    }

    /// The page of `items` asked for, ordered first; `sortable` lists the
    /// fields `OrderBy` may name (a `400` for any other).
    pub fn apply(
        &self,
        mut items: Vec<serde_json::Value>,
        sortable: &[&str],
    ) -> Result<Vec<serde_json::Value>, Failure> {
        if let Some((name, _)) = self
            .order_by
            .iter()
            .find(|(name, _)| !sortable.contains(&name.as_str()))
        {
            return Err(Failure {
                field: Some("OrderBy"),
                ..Failure::bad_request(format!(
                    "OrderBy cannot name {name:?}; it takes {}",
                    sortable.join(", ")
                ))
            });
        }
        items.sort_by(|a, b| {
            self.order_by
                .iter()
                .map(|(name, descending)| {
                    let order = compare_json(&a[name.as_str()], &b[name.as_str()]);
                    if *descending { order.reverse() } else { order }
                })
                .find(|order| order.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect())
    }
}

/// Orders JSON values of one field: nulls first, then booleans, numbers and
/// strings, each in their natural order.
fn compare_json(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    let rank = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    };
    match (a, b) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0)),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        _ => rank(a).cmp(&rank(b)),
    }
}

impl<S: Send + Sync, F: ErrorFormat> axum::extract::FromRequestParts<S> for Paging<F> {
    type Rejection = ApiError<F>;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query()).map_err(ApiError::from)
    }
}

/// A preset's routes with the preset as their state.
pub(crate) fn with_preset<P: Send + Sync + 'static>(routes: Router<Arc<P>>, preset: P) -> Router {
    routes.with_state(Arc::new(preset))
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

/// Password login for APIs without a separate TOTP step: a user with TOTP
/// must send the code in the same request (`otp`), or is told one is needed.
pub(crate) async fn password_with_code(
    flow: &LoginFlow,
    username: &str,
    password: &str,
    code: Option<&str>,
    client: LoginClient,
) -> Result<Principal, LoginError> {
    let outcome = flow
        .password(username, password, client.0, PairLifetimes::new())
        .await?;
    match outcome {
        LoginOutcome::Authenticated(principal) => Ok(principal),
        LoginOutcome::TotpRequired(pending) => match code {
            Some(code) => Ok(flow.totp(&pending.token, code, client.0).await?.principal),
            None => Err(LoginError::OtpRequired),
        },
    }
}
