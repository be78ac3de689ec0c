//! A tonic gRPC service behind the crate's layers, refusing the gRPC way
//! (`GrpcRejection`): the service of `examples/grpc_guarded.rs` served on a
//! free loopback port, called with a tonic client over h2c.

#[path = "../examples/grpc_guarded/app.rs"]
mod app;

use std::net::SocketAddr;
use std::path::Path;

use app::proto::guarded_client::GuardedClient;
use app::proto::guarded_server::GuardedServer;
use app::proto::{AuditRequest, Identity, WhoAmIRequest};
use app::{GuardedService, TOKEN_METADATA_KEY};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tower::{ServiceBuilder, ServiceExt};
use tower_authgate::ip::{ClientIpResolver, IpFilterLayer, IpRules, PeerAddr};
use tower_authgate::reject::GrpcRejection;
use tower_authgate::token::SigningKey;

/// The example's guarded service on a free loopback port, and the tokens
/// of its two callers.
struct Served {
    addr: SocketAddr,
    /// Role `auditor`, spaces `default_space` and `plant-a`.
    ann: String,
    /// Role `viewer`, space `default_space`.
    bob: String,
    key: SigningKey,
    shutdown: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    async fn start() -> Served {
        let key = SigningKey::generate_ed25519().expect("a key");
        let guard = app::guard(app::verifier(&key).expect("a verifier")).expect("the guard");
        let ann = app::token(
            &key,
            "ann",
            &[app::AUDIT_ROLE],
            &["default_space", "plant-a"],
        )
        .expect("a token");
        let bob = app::token(&key, "bob", &["viewer"], &["default_space"]).expect("a token");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = tokio::spawn(app::serve(listener, guard, async {
            let _ = stop.await;
        }));
        Served {
            addr,
            ann,
            bob,
            key,
            shutdown: Some(shutdown),
            serving,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("a URI")
            .connect()
            .await
            .expect("connected")
    }

    async fn client(&self) -> GuardedClient<Channel> {
        GuardedClient::new(self.channel().await)
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.serving)
            .await
            .expect("the server task")
            .expect("the server stops cleanly");
    }
}

/// A request carrying `metadata`.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in metadata {
        request
            .metadata_mut()
            .insert(*key, value.parse().expect("a metadata value"));
    }
    request
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn who_am_i(served: &Served, metadata: &[(&'static str, &str)]) -> Result<Identity, Status> {
    let mut client = served.client().await;
    client
        .who_am_i(with(WhoAmIRequest {}, metadata))
        .await
        .map(tonic::Response::into_inner)
}

fn assert_refused(result: Result<Identity, Status>, code: Code, message: &str) -> Status {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(message),
        "{:?} does not name {message:?}",
        status.message()
    );
    status
}

#[tokio::test]
async fn an_accepted_call_reads_its_claims_and_space() {
    let served = Served::start().await;
    let identity = who_am_i(&served, &[("authorization", &bearer(&served.ann))])
        .await
        .expect("accepted");
    assert_eq!(identity.subject, "ann");
    assert_eq!(identity.space, "default_space");
    assert_eq!(identity.roles, ["auditor"]);

    let identity = who_am_i(
        &served,
        &[
            ("authorization", &bearer(&served.bob)),
            ("x-space", "default_space"),
        ],
    )
    .await
    .expect("accepted");
    assert_eq!(
        (identity.subject.as_str(), identity.roles.as_slice()),
        ("bob", &["viewer".to_owned()][..])
    );

    let identity = who_am_i(
        &served,
        &[
            ("authorization", &bearer(&served.ann)),
            ("x-space", "plant-a"),
        ],
    )
    .await
    .expect("accepted in a granted space");
    assert_eq!(identity.space, "plant-a");
    served.stop().await;
}

#[tokio::test]
async fn the_token_may_come_in_a_metadata_key_of_its_own() {
    let served = Served::start().await;
    let identity = who_am_i(&served, &[(TOKEN_METADATA_KEY, &served.ann)])
        .await
        .expect("accepted from x-api-token");
    assert_eq!(identity.subject, "ann");
    // The same token in both places is one credential; two different ones
    // are a malformed request.
    let both = [
        ("authorization", bearer(&served.ann)),
        (TOKEN_METADATA_KEY, served.ann.clone()),
    ];
    let both: Vec<_> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        who_am_i(&served, &both).await.expect("accepted").subject,
        "ann"
    );
    let two = [
        ("authorization", bearer(&served.ann)),
        (TOKEN_METADATA_KEY, served.bob.clone()),
    ];
    let two: Vec<_> = two.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_refused(who_am_i(&served, &two).await, Code::InvalidArgument, "");
    // A bad token in the custom key is refused as in `authorization`.
    assert_refused(
        who_am_i(&served, &[(TOKEN_METADATA_KEY, "not-a-token")]).await,
        Code::Unauthenticated,
        "",
    );
    served.stop().await;
}

#[tokio::test]
async fn no_token_is_unauthenticated_with_the_challenge() {
    let served = Served::start().await;
    let status = assert_refused(
        who_am_i(&served, &[]).await,
        Code::Unauthenticated,
        "authentication is required",
    );
    assert_eq!(
        status
            .metadata()
            .get("www-authenticate")
            .map(|v| v.to_str().ok()),
        Some(Some("Bearer realm=\"api\""))
    );
    served.stop().await;
}

#[tokio::test]
async fn a_bad_token_is_unauthenticated() {
    let served = Served::start().await;
    // Signed by another key.
    let stranger = SigningKey::generate_ed25519().expect("a key");
    let forged =
        app::token(&stranger, "ann", &[app::AUDIT_ROLE], &["default_space"]).expect("a token");
    assert_refused(
        who_am_i(&served, &[("authorization", &bearer(&forged))]).await,
        Code::Unauthenticated,
        "",
    );
    // Expired.
    let expired = served
        .key
        .sign(&serde_json::json!({
            "sub": "ann", "exp": 1_000_000_000, "usefor": "access", "spaces": ["default_space"]
        }))
        .expect("a token");
    assert_refused(
        who_am_i(&served, &[("authorization", &bearer(&expired))]).await,
        Code::Unauthenticated,
        "expired",
    );
    // Not a token at all.
    assert_refused(
        who_am_i(&served, &[("authorization", "Bearer abc.def")]).await,
        Code::Unauthenticated,
        "",
    );
    served.stop().await;
}

#[tokio::test]
async fn a_space_not_granted_is_permission_denied() {
    let served = Served::start().await;
    assert_refused(
        who_am_i(
            &served,
            &[
                ("authorization", &bearer(&served.bob)),
                ("x-space", "plant-a"),
            ],
        )
        .await,
        Code::PermissionDenied,
        "the token does not grant this space",
    );
    assert_refused(
        who_am_i(
            &served,
            &[
                ("authorization", &bearer(&served.ann)),
                ("x-space", "../etc"),
            ],
        )
        .await,
        Code::InvalidArgument,
        "the space name is malformed",
    );
    served.stop().await;
}

async fn audit(
    served: &Served,
    count: u32,
    metadata: &[(&'static str, &str)],
) -> Result<Vec<app::proto::AuditEvent>, Status> {
    let mut client = served.client().await;
    let mut stream = client
        .audit(with(AuditRequest { count }, metadata))
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.push(event);
    }
    Ok(events)
}

#[tokio::test]
async fn a_streaming_call_is_accepted_with_the_role_and_refused_without() {
    let served = Served::start().await;
    let events = audit(
        &served,
        5,
        &[
            ("authorization", &bearer(&served.ann)),
            ("x-space", "plant-a"),
        ],
    )
    .await
    .expect("accepted");
    assert_eq!(events.len(), 5);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.sequence as usize, i + 1);
        assert_eq!(
            (event.subject.as_str(), event.space.as_str()),
            ("ann", "plant-a")
        );
    }

    // Missing the role: PERMISSION_DENIED naming what was needed.
    let status = audit(&served, 5, &[("authorization", &bearer(&served.bob))])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "the token does not grant what this request needs: role:auditor"
    );
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .expect("a challenge");
    assert!(
        challenge
            .to_str()
            .expect("text")
            .contains("error=\"insufficient_scope\"")
    );

    // No token: UNAUTHENTICATED before any message.
    let status = audit(&served, 5, &[]).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The method's own check still runs behind the layers.
    let status = audit(&served, 1000, &[("authorization", &bearer(&served.ann))])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    served.stop().await;
}

/// On the wire a refusal is trailers-only: HTTP 200, `content-type:
/// application/grpc`, `grpc-status` and `grpc-message` in the one HEADERS
/// frame, which ends the stream (no DATA, no trailers).
#[tokio::test]
async fn a_refusal_is_trailers_only_on_the_wire() {
    let served = Served::start().await;
    let channel = served.channel().await;
    let request = http::Request::post(format!("http://{}/guarded.Guarded/Audit", served.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", bearer(&served.bob))
        // One empty message (`AuditRequest {}`): flag 0, length 0.
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
        )))
        .expect("a request");
    let response = channel.oneshot(request).await.expect("an answer");
    assert_eq!(response.status(), http::StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "7");
    assert!(
        headers["grpc-message"]
            .to_str()
            .expect("visible ASCII")
            .contains("auditor")
    );
    assert!(
        response.body().is_end_stream(),
        "the headers end the stream"
    );
    let collected = response.into_body().collect().await.expect("the body");
    assert!(collected.trailers().is_none());
    assert!(collected.to_bytes().is_empty());
    served.stop().await;
}

/// The address filter answers the gRPC way too, with the peer address
/// tonic hands over (`TcpConnectInfo`) as `PeerAddr`.
#[tokio::test]
async fn the_address_filter_refuses_with_a_grpc_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let filter = IpFilterLayer::new(
        IpRules::parse("", "127.0.0.0/8").expect("rules"),
        ClientIpResolver::new(),
    )
    .on_rejection(GrpcRejection);
    let peer = |mut request: http::Request<tonic::body::Body>| {
        if let Some(remote) = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
        {
            request.extensions_mut().insert(PeerAddr(remote));
        }
        request
    };
    let (shutdown, stop) = oneshot::channel::<()>();
    let serving = tokio::spawn(
        Server::builder()
            .layer(ServiceBuilder::new().map_request(peer).layer(filter))
            .add_service(GuardedServer::new(GuardedService))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stop.await;
            }),
    );
    let mut client = GuardedClient::connect(format!("http://{addr}"))
        .await
        .expect("connected");
    let status = client
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "access from this address is not allowed");
    let _ = shutdown.send(());
    serving
        .await
        .expect("the server task")
        .expect("a clean stop");
}

/// `examples/grpc_guarded/guarded.rs` is what tonic-prost-build generates
/// from `guarded.proto` (with the vendored protoc): a stale copy fails
/// here. `GRPC_REGENERATE=1 cargo test --test grpc generated` writes it
/// anew.
#[test]
fn the_generated_code_is_that_of_the_proto() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grpc_guarded");
    let out = std::env::temp_dir().join(format!("grpc-guarded-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a temporary directory");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path().expect("the vendored protoc"));
    tonic_prost_build::configure()
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile_with_config(
            config,
            &[dir.join("guarded.proto")],
            std::slice::from_ref(&dir),
        )
        .expect("guarded.proto compiles");
    let fresh = std::fs::read_to_string(out.join("guarded.rs")).expect("the generated code");
    std::fs::remove_dir_all(&out).expect("the temporary directory is removed");
    let checked_in = dir.join("guarded.rs");
    if std::env::var_os("GRPC_REGENERATE").is_some() {
        std::fs::write(&checked_in, &fresh).expect("guarded.rs is written");
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "examples/grpc_guarded/guarded.rs is not what guarded.proto generates: \
         run `GRPC_REGENERATE=1 cargo test --test grpc generated`"
    );
}
