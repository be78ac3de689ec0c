//! The guarded gRPC service of `examples/grpc_guarded.rs`: a tonic service
//! whose methods come from `guarded.proto` (the Rust code generated into
//! `guarded.rs`), behind `AuthLayer`, `SelectSpaceLayer` and `RequireLayer`,
//! each refusing the gRPC way (`GrpcRejection`). Shared with
//! `tests/grpc.rs` and `benches/grpc.rs`, which serve it on loopback.

use std::future::Future;
use std::pin::Pin;

use futures_util::Stream;
use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;
use tower::layer::util::{Identity as NoLayer, Stack};
use tower_authgate::ConfigError;
use tower_authgate::auth::AuthLayer;
use tower_authgate::authz::{RequireLayer, Rule, RuleDefault, Rules};
use tower_authgate::clock::now_seconds;
use tower_authgate::reject::GrpcRejection;
use tower_authgate::tenant::{HasSpaces, SelectSpaceLayer, Space};
use tower_authgate::token::{
    KeySet, SigningKey, TokenSource, TokenSources, VerifiedToken, Verifier,
};

/// The code generated from `guarded.proto` (see `tests/grpc.rs`, which
/// regenerates it and fails when this copy is stale).
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub, dead_code)]
#[path = "guarded.rs"]
pub mod proto;

use proto::guarded_server::{Guarded, GuardedServer};
use proto::{AuditEvent, AuditRequest, Identity, WhoAmIRequest};

/// The metadata key a token may come in besides `authorization: Bearer`.
pub const TOKEN_METADATA_KEY: &str = "x-api-token";

/// The role `Audit` requires.
pub const AUDIT_ROLE: &str = "auditor";

/// The gRPC path of the method that requires [`AUDIT_ROLE`].
pub const AUDIT_PATH: &str = "/guarded.Guarded/Audit";

/// The most events one `Audit` call sends.
pub const MAX_AUDIT_EVENTS: u32 = 100;

/// What the service reads of a token. Roles are read by the verifier's
/// grant mapping (the `roles` claim), for `RequireLayer`.
#[derive(Debug, Clone, Deserialize)]
pub struct GuardedClaims {
    /// The subject.
    pub sub: String,
    /// The spaces the token grants, the first being its default.
    #[serde(default)]
    pub spaces: Vec<String>,
}

impl HasSpaces for GuardedClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

/// The layers in front of the service, outermost first.
pub type Guard = ServiceBuilder<
    Stack<
        RequireLayer<GrpcRejection>,
        Stack<
            SelectSpaceLayer<GuardedClaims, GrpcRejection>,
            Stack<AuthLayer<GuardedClaims, GrpcRejection>, NoLayer>,
        >,
    >,
>;

/// A verifier of the tokens `key` signs, with a token cache: a client
/// sends the same token with every call.
pub fn verifier(key: &SigningKey) -> Result<Verifier, ConfigError> {
    Verifier::builder(KeySet::single(key.verifying_key()))
        .token_cache(1024)
        .build()
}

/// The guard: the token from `authorization: Bearer` or the
/// [`TOKEN_METADATA_KEY`] metadata; the space from the `x-space` metadata
/// (else the token's first space); the role [`AUDIT_ROLE`] for `Audit`,
/// any verified token for every other method. Every refusal is a gRPC
/// status.
pub fn guard(verifier: Verifier) -> Result<Guard, ConfigError> {
    let sources = TokenSources::new([
        TokenSource::bearer(),
        TokenSource::try_header(TOKEN_METADATA_KEY)?,
    ])?;
    let auth = AuthLayer::<GuardedClaims>::new(verifier)
        .sources(sources)
        .on_rejection(GrpcRejection);
    let spaces = SelectSpaceLayer::for_auth(&auth).on_rejection(GrpcRejection);
    let rules = Rules::new([Rule::new("audit", AUDIT_PATH)?.roles([AUDIT_ROLE])])
        .default_access(RuleDefault::Authenticated);
    let require = RequireLayer::rules(rules).on_rejection(GrpcRejection);
    Ok(ServiceBuilder::new()
        .layer(auth)
        .layer(spaces)
        .layer(require))
}

/// A token `key` signs for `sub`, valid for an hour, granting `roles` and
/// `spaces`.
pub fn token(
    key: &SigningKey,
    sub: &str,
    roles: &[&str],
    spaces: &[&str],
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    Ok(key.sign(&serde_json::json!({
        "sub": sub,
        "exp": now_seconds() + 3600,
        "usefor": "access",
        "roles": roles,
        "spaces": spaces,
    }))?)
}

/// The service's methods, reading what the layers put in the request
/// extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedService;

/// Who the caller is and where it acts, as the layers verified it; an
/// `INTERNAL` status naming the layer when one did not run (a wiring
/// mistake), never an anonymous answer.
fn caller<T>(request: &Request<T>) -> Result<(&VerifiedToken, &GuardedClaims, &str), Status> {
    let token = request
        .extensions()
        .get::<VerifiedToken>()
        .ok_or_else(|| Status::internal("no verified token: is `AuthLayer` installed?"))?;
    let claims = token
        .claims::<GuardedClaims>()
        .ok_or_else(|| Status::internal("the `AuthLayer` verifies another claims type"))?;
    let space = request
        .extensions()
        .get::<Space>()
        .ok_or_else(|| Status::internal("no space: is `SelectSpaceLayer` installed?"))?;
    Ok((token, claims, &space.0))
}

type AuditStream = Pin<Box<dyn Stream<Item = Result<AuditEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Guarded for GuardedService {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<Identity>, Status> {
        let (token, claims, space) = caller(&request)?;
        Ok(Response::new(Identity {
            subject: claims.sub.clone(),
            space: space.to_owned(),
            roles: token.grants().roles().map(str::to_owned).collect(),
        }))
    }

    type AuditStream = AuditStream;

    async fn audit(
        &self,
        request: Request<AuditRequest>,
    ) -> Result<Response<Self::AuditStream>, Status> {
        let (_, claims, space) = caller(&request)?;
        let count = request.get_ref().count;
        if count > MAX_AUDIT_EVENTS {
            return Err(Status::invalid_argument(format!(
                "count is at most {MAX_AUDIT_EVENTS}"
            )));
        }
        let (subject, space) = (claims.sub.clone(), space.to_owned());
        let events = (1..=count).map(move |sequence| {
            Ok(AuditEvent {
                sequence,
                subject: subject.clone(),
                space: space.clone(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(events))))
    }
}

/// Serves [`GuardedService`] behind `guard` over h2c on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    guard: Guard,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(guard)
        .add_service(GuardedServer::new(GuardedService))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
