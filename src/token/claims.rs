//! What a verified token says: the application's own claims, the registered
//! claims every layer may read, and the token's kind.

use std::any::Any;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::authz::Grants;
use crate::reject::Realm;
use crate::token::Verified;

/// What a token is for.
///
/// Every token this crate mints says what it is for in a claim (by default
/// `usefor`, as in the datarhei Core API's sample tokens), and every verifier accepts
/// only the kinds it is configured for, so that a refresh token can never pass
/// as an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A short-lived token that authorises API calls (`"access"`).
    Access,
    /// A long-lived token accepted only by refresh endpoints (`"refresh"`).
    Refresh,
    /// A long-lived token an administrator minted for an integration
    /// (`"service"`).
    ServiceAccount,
    /// A short-lived token proving that the password step of a two-step login
    /// succeeded, accepted only by the TOTP step (`"otp-pending"`).
    OtpPending,
}

impl TokenKind {
    /// Every kind, in declaration order.
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Access,
        TokenKind::Refresh,
        TokenKind::ServiceAccount,
        TokenKind::OtpPending,
    ];

    /// The claim value that names this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::ServiceAccount => "service",
            TokenKind::OtpPending => "otp-pending",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            TokenKind::Access => 1,
            TokenKind::Refresh => 2,
            TokenKind::ServiceAccount => 4,
            TokenKind::OtpPending => 8,
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(())
    }
}

impl serde::Serialize for TokenKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TokenKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|()| serde::de::Error::custom("unknown token kind"))
    }
}

/// A small set of [`TokenKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenKinds(u8);

impl TokenKinds {
    /// No kind at all.
    pub const NONE: TokenKinds = TokenKinds(0);

    /// The set holding just `kind`.
    pub const fn only(kind: TokenKind) -> Self {
        TokenKinds(kind.bit())
    }

    /// This set with `kind` added.
    pub const fn with(self, kind: TokenKind) -> Self {
        TokenKinds(self.0 | kind.bit())
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: TokenKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<TokenKind> for TokenKinds {
    fn from_iter<I: IntoIterator<Item = TokenKind>>(iter: I) -> Self {
        iter.into_iter().fold(TokenKinds::NONE, TokenKinds::with)
    }
}

/// The registered claims of a verified token, read once by the verifier
/// ([`VerifiedToken::meta`] in the request extensions).
///
/// Later layers (revocation, tenant selection, renewal) read this rather than
/// decode the token again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenMeta {
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `jti`, when present.
    pub token_id: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// `iat`, when present.
    pub issued_at: Option<u64>,
    /// The token's kind, when the verifier checks kinds.
    pub kind: Option<TokenKind>,
    /// `fam`, the login session a token belongs to, when present: revoking
    /// the family revokes every token minted from that login, whether or not
    /// the token also carries a `jti` (see
    /// [`AuthLayer::revocations`](crate::auth::AuthLayer::revocations)).
    pub family: Option<String>,
}

/// Where a token was found in a request ([`VerifiedToken::found_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FoundIn {
    /// `Authorization: Bearer`.
    Bearer,
    /// A cookie.
    Cookie,
    /// A custom header such as `X-Auth-Token`.
    Header,
    /// The token was not read from the request (for example it was minted by
    /// a transparent renewal).
    Issued,
}

impl FoundIn {
    /// `bearer`, `cookie`, `header` or `issued`: the `source` field of the
    /// events.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundIn::Bearer => "bearer",
            FoundIn::Cookie => "cookie",
            FoundIn::Header => "header",
            FoundIn::Issued => "issued",
        }
    }
}

/// A request's verified token: what [`AuthLayer`](crate::auth::AuthLayer)
/// puts in the request extensions, one value holding the application's
/// claims, the registered claims ([`TokenMeta`]) and where the token was
/// found ([`FoundIn`]).
///
/// Cloning it clones an `Arc`: a token served from the
/// [`TokenCache`](crate::token::TokenCache) is shared, not copied. With the
/// `axum` feature it is an extractor, as are [`Claims<C>`] and [`TokenMeta`].
///
/// ```
/// # use tower_authgate::token::VerifiedToken;
/// # #[derive(Clone)] struct MyClaims { sub: String }
/// fn subject<B>(req: &http::Request<B>) -> Option<&str> {
///     let token = req.extensions().get::<VerifiedToken>()?;
///     token.claims::<MyClaims>().map(|claims| claims.sub.as_str())
/// }
/// ```
#[derive(Clone)]
pub struct VerifiedToken {
    verified: Arc<dyn ErasedVerified>,
    found_in: FoundIn,
}

/// A [`Verified<C>`] of any claims type.
pub(crate) trait ErasedVerified: Any + Send + Sync {
    fn meta(&self) -> &TokenMeta;

    /// The name of the claims type, for errors that report a mismatch.
    fn claims_type(&self) -> &'static str;

    fn grants(&self) -> &Grants;
}

impl<C: Send + Sync + 'static> ErasedVerified for Verified<C> {
    fn meta(&self) -> &TokenMeta {
        &self.meta
    }

    fn claims_type(&self) -> &'static str {
        std::any::type_name::<C>()
    }

    fn grants(&self) -> &Grants {
        &self.grants
    }
}

impl dyn ErasedVerified {
    /// The claims, when they are of type `C`.
    pub(crate) fn claims<C: 'static>(&self) -> Option<&C> {
        let any: &dyn Any = self;
        any.downcast_ref::<Verified<C>>().map(|v| &v.claims)
    }

    /// Whether the claims are of type `C`.
    pub(crate) fn holds<C: 'static>(&self) -> bool {
        self.claims::<C>().is_some()
    }
}

/// The application's claims of a verified token, shared with it rather
/// than copied: what [`Claims<C>`] is to a handler that takes its claims by
/// value, this is to one that only reads them. Cloning it, or extracting it
/// (feature `axum`, and `Option<SharedClaims<C>>` for optional
/// authentication), increments a reference count; a token served from the
/// [`TokenCache`](crate::token::TokenCache) is read without an allocation.
/// The claims are reached through [`Deref`](std::ops::Deref).
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{Request, StatusCode, header};
/// use serde::Deserialize;
/// use tower::ServiceExt;
/// use tower_authgate::auth::AuthLayer;
/// use tower_authgate::token::{Algorithm, KeySet, SharedClaims, SigningKey, TokenSources, Verifier};
///
/// #[derive(Deserialize)]
/// struct MyClaims {
///     sub: String,
/// }
///
/// async fn me(claims: SharedClaims<MyClaims>) -> String {
///     format!("{} until {}", claims.sub, claims.meta().expires_at)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
/// let verifier = Verifier::builder(KeySet::single(key.verifying_key()))
///     .issuer("my-service")
///     .build()?;
/// let app: Router = Router::new()
///     .route("/api/me", get(me))
///     .layer(AuthLayer::<MyClaims>::new(verifier).sources(TokenSources::bearer()));
///
/// let exp = tower_authgate::clock::now_seconds() + 300;
/// let token = key.sign(&serde_json::json!({
///     "sub": "admin", "iss": "my-service", "exp": exp, "usefor": "access"
/// }))?;
/// let request = Request::builder()
///     .uri("/api/me")
///     .header(header::AUTHORIZATION, format!("Bearer {token}"))
///     .body(Body::empty())?;
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// let body = axum::body::to_bytes(response.into_body(), 1024).await?;
/// assert_eq!(body, format!("admin until {exp}"));
/// # Ok(())
/// # }
/// ```
pub struct SharedClaims<C> {
    verified: Arc<Verified<C>>,
}

impl<C> SharedClaims<C> {
    /// The registered claims of the same token.
    pub fn meta(&self) -> &TokenMeta {
        &self.verified.meta
    }
}

impl<C> std::ops::Deref for SharedClaims<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.verified.claims
    }
}

impl<C> Clone for SharedClaims<C> {
    fn clone(&self) -> Self {
        SharedClaims {
            verified: Arc::clone(&self.verified),
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for SharedClaims<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedClaims")
            .field(&self.verified.claims)
            .finish()
    }
}

impl VerifiedToken {
    pub(crate) fn new(verified: Arc<dyn ErasedVerified>, found_in: FoundIn) -> Self {
        VerifiedToken { verified, found_in }
    }

    /// The application's claims, when the layer was built for claims type
    /// `C`.
    pub fn claims<C: 'static>(&self) -> Option<&C> {
        self.verified.claims::<C>()
    }

    /// The application's claims, shared with this token (a reference
    /// count, no copy), when the layer was built for claims type `C`.
    pub fn shared_claims<C: Send + Sync + 'static>(&self) -> Option<SharedClaims<C>> {
        let any: Arc<dyn Any + Send + Sync> = self.verified.clone();
        any.downcast::<Verified<C>>()
            .ok()
            .map(|verified| SharedClaims { verified })
    }

    /// Whether the layer was built for claims type `C`.
    pub fn holds<C: 'static>(&self) -> bool {
        self.claims::<C>().is_some()
    }

    /// The name of the claims type the layer was built for (as
    /// [`std::any::type_name`] gives it), for messages about a mismatch.
    pub fn claims_type_name(&self) -> &'static str {
        self.verified.claims_type()
    }

    /// The registered claims.
    pub fn meta(&self) -> &TokenMeta {
        self.verified.meta()
    }

    /// The roles, scopes and captured claims the verifier read
    /// ([`VerifierBuilder::grants`](crate::token::VerifierBuilder::grants)).
    pub fn grants(&self) -> &Grants {
        self.verified.grants()
    }

    /// Where the token was found.
    pub fn found_in(&self) -> FoundIn {
        self.found_in
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("meta", self.meta())
            .field("found_in", &self.found_in)
            .finish_non_exhaustive()
    }
}

/// The application's claims of a verified token.
///
/// With the `axum` feature this is an extractor (and `Option<Claims<C>>` one
/// for optional authentication) that clones the claims out of the request's
/// [`VerifiedToken`]; handlers that only read them can extract
/// [`SharedClaims<C>`] instead, which shares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<C>(pub C);

impl<C> std::ops::Deref for Claims<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> Claims<C> {
    /// The claims themselves.
    pub fn into_inner(self) -> C {
        self.0
    }
}

/// Marks a request that passed an optional [`AuthLayer`](crate::auth::AuthLayer)
/// without a credential, so that later layers and extractors can tell
/// "anonymous" from "no layer installed", and challenge it in the layer's
/// realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anonymous {
    realm: Realm,
}

impl Anonymous {
    pub(crate) fn new(realm: Realm) -> Self {
        Anonymous { realm }
    }

    /// The realm of the `AuthLayer` that let the request through.
    pub fn realm(&self) -> &Realm {
        &self.realm
    }
}
