//! Token verification middleware.
//!
//! [`AuthLayer`] finds a token in the configured [`TokenSources`](crate::token::TokenSources)
//! (bearer header, cookie, custom header, in order), verifies it with a
//! [`Verifier`](crate::token::Verifier), and calls the inner service with a
//! [`VerifiedToken`](crate::token::VerifiedToken) in the request extensions:
//! the application's claims, the registered claims
//! ([`TokenMeta`](crate::token::TokenMeta)) and where the token was found
//! ([`FoundIn`](crate::token::FoundIn)).
//!
//! Rejections follow RFC 6750: no credential on a required route is `401`
//! with `WWW-Authenticate: Bearer realm="…"`; a refused token is `401` with
//! `error="invalid_token"` and a short `error_description`; a malformed
//! request (two different credentials, a repeated cookie, an oversized
//! value) is `400` with `error="invalid_request"`.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode, header};
//! use serde::{Deserialize, Serialize};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::token::{
//!     Algorithm, KeySet, SigningKey, TokenSource, TokenSources, VerifiedToken, Verifier,
//! };
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct MyClaims {
//!     sub: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
//! let sources = TokenSources::new([
//!     TokenSource::cookie("ins_access_token"),
//!     TokenSource::bearer(),
//!     TokenSource::try_header("X-Auth-Token")?,
//! ])?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::<MyClaims>::new(verifier).sources(sources))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let token = req.extensions().get::<VerifiedToken>().unwrap();
//!         let claims = token.claims::<MyClaims>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", claims.sub)))
//!     }));
//!
//! // No token: 401 with a challenge.
//! let response = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
//!
//! // A valid access token in the cookie: the handler sees the claims.
//! let exp = tower_authgate::clock::now_seconds() + 300;
//! let token = key.sign(&serde_json::json!({"sub": "admin", "exp": exp, "usefor": "access"}))?;
//! let request = Request::builder()
//!     .header(header::COOKIE, format!("ins_access_token={token}"))
//!     .body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.into_body(), "hello admin");
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod renew;
mod service;

pub use future::ResponseFuture;
pub use layer::AuthLayer;
pub use renew::{CookieRenewal, RenewAccess, RenewalError, RenewedAccess};
pub use service::Auth;
