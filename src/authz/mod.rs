//! Authorization: what a verified token may do.
//!
//! Authentication ([`AuthLayer`](crate::auth::AuthLayer)) says who the
//! caller is; this module says what it may do:
//!
//! - [`Grants`]: the roles, scopes and captured claims of a verified token,
//!   read once per token by the verifier through its [`GrantMapping`]
//!   ([`VerifierBuilder::grants`](crate::token::VerifierBuilder::grants);
//!   by default roles from `roles` and scopes from `scope`, with presets for
//!   Keycloak, Auth0, Okta and Entra ID);
//! - [`Policy`]: a value built once (`role`, `scope`, a claim equal to or
//!   containing a value, the selected space, `all_of` / `any_of` / `not`, a
//!   closure), evaluated without allocating;
//! - [`RequireLayer`]: applies a policy to every request, with an optional
//!   [`AsyncCheck`] (an ownership lookup) after it; with the `axum` feature
//!   the [`Authorized`](crate::extract::Authorized) extractor does the same
//!   per handler; [`AuthLayer::require`](crate::auth::AuthLayer::require)
//!   and [`AuthLayer::rules`](crate::auth::AuthLayer::rules) apply a policy
//!   or a rule table in the `AuthLayer` itself, for less work per request;
//! - with the `cedar` feature, `CedarPolicies`: a Cedar policy file
//!   validated against its schema at load and reloadable, applied by
//!   `RequireLayer::cedar`.
//!
//! Refusals are [`AuthzRejection`]s rendered by the layer's
//! [`OnRejection`](crate::reject::OnRejection): `403` with
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`
//! (RFC 6750 §3.1) when the token does not grant what the policy asks for;
//! `401` for an anonymous request (an optional `AuthLayer` let it
//! through); `500` naming `AuthLayer` when no layer verified a token, never
//! "no token, so nothing to check"; `503` when an asynchronous check cannot
//! answer. See `docs/authorization.md` for the claim mappings and recipes.
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_authgate::auth::AuthLayer;
//! use tower_authgate::authz::RequireLayer;
//! use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
//! let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::<serde_json::Value>::new(verifier).sources(TokenSources::bearer()))
//!     .layer(RequireLayer::scope("audit:read"))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("audit log")))
//!     }));
//!
//! let exp = tower_authgate::clock::now_seconds() + 300;
//! let request = |scope: &str| {
//!     let token = key
//!         .sign(&serde_json::json!({"sub": "ann", "exp": exp, "usefor": "access", "scope": scope}))
//!         .unwrap();
//!     Request::builder()
//!         .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!         .body(String::new())
//!         .unwrap()
//! };
//! let allowed = service.clone().oneshot(request("openid audit:read")).await?;
//! assert_eq!(allowed.status(), StatusCode::OK);
//! let refused = service.oneshot(request("openid")).await?;
//! assert_eq!(refused.status(), StatusCode::FORBIDDEN);
//! let challenge = refused.headers()[header::WWW_AUTHENTICATE].to_str()?;
//! assert!(challenge.contains(r#"error="insufficient_scope""#));
//! assert!(challenge.ends_with(r#"scope="audit:read""#));
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "cedar")]
mod cedar;
mod grants;
mod layer;
pub(crate) mod path;
mod policy;
mod rules;

pub use crate::reject::AuthzRejection;
#[cfg(feature = "cedar")]
#[cfg_attr(docsrs, doc(cfg(feature = "cedar")))]
pub use cedar::{CedarError, CedarPolicies, CedarPoliciesBuilder, CedarProblem};
pub use grants::{GrantMapping, Grants};
#[cfg(feature = "presets")]
pub(crate) use layer::check_grants;
pub use layer::{AsyncCheck, CheckFailed, CheckRequest, Require, RequireLayer, ResponseFuture};
pub(crate) use layer::{check_token, refusal, report_allowed};
#[cfg(feature = "axum")]
pub(crate) use layer::{decide, realm_for};
pub use policy::Policy;
pub(crate) use rules::{Matched, RuleLabel};
pub use rules::{Rule, RuleDefault, Rules};
