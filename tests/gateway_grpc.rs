//! A tonic gRPC service behind the `authgate` binary over h2c, called with
//! a tonic client: the gateway verifies the token, answers refusals the
//! gRPC way (`errors = "grpc"`), applies its rules to the method's path,
//! and passes the identity on as metadata; the service's trailers (its
//! status) come back intact, a stream included.

#[path = "common/gateway.rs"]
mod fixtures;

#[path = "../examples/grpc_guarded/app.rs"]
#[allow(dead_code)]
mod app;

use std::pin::Pin;

use app::proto::guarded_client::GuardedClient;
use app::proto::guarded_server::{Guarded, GuardedServer};
use app::proto::{AuditEvent, AuditRequest, Identity, WhoAmIRequest};
use futures_util::StreamExt;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

use fixtures::*;

/// The service as an upstream of the gateway sees it: the caller's
/// identity in the metadata the gateway states (and removes from what
/// the client sent).
struct BehindTheGateway;

fn metadata(request: &Request<impl Sized>, name: &str) -> String {
    request
        .metadata()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

type Events = Pin<Box<dyn futures_util::Stream<Item = Result<AuditEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Guarded for BehindTheGateway {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<Identity>, Status> {
        let subject = metadata(&request, "x-auth-subject");
        if subject.is_empty() {
            return Err(Status::internal("no identity stated"));
        }
        Ok(Response::new(Identity {
            subject,
            space: metadata(&request, "x-space"),
            roles: metadata(&request, "x-auth-roles")
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
    }

    type AuditStream = Events;

    async fn audit(&self, request: Request<AuditRequest>) -> Result<Response<Events>, Status> {
        let subject = metadata(&request, "x-auth-subject");
        let space = metadata(&request, "x-space");
        let events = (1..=request.get_ref().count).map(move |sequence| {
            Ok(AuditEvent {
                sequence,
                subject: subject.clone(),
                space: space.clone(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(events))))
    }
}

/// Audit is for administrators; who-am-I for any verified token.
const RULES: &str = r#"
[authz]
default = "deny"
[[rule]]
name = "audit"
path = "/guarded.Guarded/Audit"
roles = ["admin"]
[[rule]]
name = "who-am-i"
path = "/guarded.Guarded/WhoAmI"
"#;

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_guards_a_grpc_service_over_h2c() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    tokio::spawn(
        Server::builder()
            .add_service(GuardedServer::new(BehindTheGateway))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let config = config_with_server(upstream_port, "h2c = true", RULES)
        .replace(
            "connect_timeout = ",
            "protocol = \"h2c\"\nconnect_timeout = ",
        )
        .replace(
            "public_paths = [\"/public/\"]\n",
            "public_paths = [\"/public/\"]\nerrors = \"grpc\"\n",
        );
    let gateway = Gateway::start(&config);
    let front = Front::new("authgate", gateway.addr.port());
    let admin = bearer_token(&front, "admin").await;
    // The operator signs in with the TOTP step of the Nx API.
    let operator = {
        let pending = front
            .post_json(
                "/authenticate/signin",
                serde_json::json!({"Username": "operator", "Password": "operator", "KeepLoggedIn": false}),
            )
            .await;
        let code = pending.json()["TotpAccessCode"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", pending.text))
            .to_owned();
        let step = front
            .post_json(
                "/authenticate/totp",
                serde_json::json!({"token": code, "totp": totp_now()}),
            )
            .await;
        format!("Bearer {}", step.json()["AccessToken"].as_str().unwrap())
    };

    let channel = Channel::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gateway over h2c");
    let mut client = GuardedClient::new(channel);

    // Accepted: the identity reached the service as metadata, and the
    // client's own copy of it did not.
    let mut request = with_token(WhoAmIRequest {}, Some(&admin));
    request
        .metadata_mut()
        .insert("x-auth-subject", "root".parse().unwrap());
    let identity = client
        .who_am_i(request)
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(identity.subject, "admin");
    assert_eq!(identity.roles, ["admin"]);
    assert_eq!(identity.space, "default_space");

    // Refused the gRPC way: no token, a bad token, a missing role.
    let status = client
        .who_am_i(with_token(WhoAmIRequest {}, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .who_am_i(with_token(WhoAmIRequest {}, Some("Bearer not.a.token")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .audit(with_token(AuditRequest { count: 2 }, Some(&operator)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("role:admin"), "{status:?}");

    // A stream through the gateway: every message, then the service's
    // status from its trailers.
    let mut stream = client
        .audit(with_token(AuditRequest { count: 5 }, Some(&admin)))
        .await
        .expect("stream accepted")
        .into_inner();
    let mut sequences = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("a streamed message");
        assert_eq!(event.subject, "admin");
        sequences.push(event.sequence);
    }
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    // The operator reaches who-am-I with its own identity.
    let identity = client
        .who_am_i(with_token(WhoAmIRequest {}, Some(&operator)))
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(identity.subject, "operator");
}
