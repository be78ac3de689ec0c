//! What the guard adds to a tonic unary call: the same service, bare and
//! behind the layers of `examples/grpc_guarded.rs` (`AuthLayer` with its
//! token cache, `SelectSpaceLayer`, `RequireLayer` with a rule table, each
//! refusing with `GrpcRejection`), served side by side over h2c on
//! loopback in one run, each called by a tonic client on one connection:
//! one call in flight (`unary/...`), and eight at once (`unary_x8/...`,
//! the time of a batch of eight). The two medians of each group compare
//! the call at the same load.
//!
//! Run: `cargo bench --bench grpc`
//!
//! `cargo bench --bench grpc -- --p50` times every call instead: rounds of
//! 2,000 calls one at a time and of 2,000 calls eight at once, the
//! unguarded and the guarded server taking turns round by round (so a
//! change in the machine's load falls on both), then prints each one's
//! p50 and p90 per call and the guard's share of the p50.

#[path = "../examples/grpc_guarded/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use app::proto::guarded_client::GuardedClient;
use app::proto::guarded_server::{Guarded, GuardedServer};
use app::proto::{AuditEvent, AuditRequest, Identity, WhoAmIRequest};
use criterion::{Criterion, criterion_group};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tower_authgate::tenant::Space;
use tower_authgate::token::{SigningKey, VerifiedToken};

/// The service measured: the verified subject and space when the layers
/// ran, the same answer without them, so both servers send the same bytes.
#[derive(Clone, Copy)]
struct Measured;

#[tonic::async_trait]
impl Guarded for Measured {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<Identity>, Status> {
        let subject = request
            .extensions()
            .get::<VerifiedToken>()
            .and_then(VerifiedToken::claims::<app::GuardedClaims>)
            .map_or("ann", |claims| claims.sub.as_str());
        let space = request
            .extensions()
            .get::<Space>()
            .map_or("default_space", |space| space.0.as_str());
        Ok(Response::new(Identity {
            subject: subject.to_owned(),
            space: space.to_owned(),
            roles: vec![app::AUDIT_ROLE.to_owned()],
        }))
    }

    type AuditStream = futures_util::stream::Empty<Result<AuditEvent, Status>>;

    async fn audit(
        &self,
        _request: Request<AuditRequest>,
    ) -> Result<Response<Self::AuditStream>, Status> {
        Ok(Response::new(futures_util::stream::empty()))
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    (listener, addr)
}

async fn client(addr: SocketAddr) -> GuardedClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a URI")
        .connect()
        .await
        .expect("connected");
    GuardedClient::new(channel)
}

async fn call(
    client: &GuardedClient<Channel>,
    authorization: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
) {
    let mut request = Request::new(WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    let identity = client
        .clone()
        .who_am_i(request)
        .await
        .expect("the call is accepted")
        .into_inner();
    assert_eq!(identity.subject, "ann");
}

type Authorization = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// Both servers on a runtime of their own, a client of each, and the
/// token's `authorization` value; the first guarded call has verified the
/// token, so every later one is answered from the token cache, as a
/// client's calls are.
struct Setup {
    clients: tokio::runtime::Runtime,
    cases: [(&'static str, GuardedClient<Channel>); 2],
    authorization: Authorization,
    _servers: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    // The servers on a runtime of their own, the client on another: one
    // worker each, as a 2-core machine has room for.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let key = SigningKey::generate_ed25519().expect("a key");
    let token = app::token(&key, "ann", &[app::AUDIT_ROLE], &["default_space"]).expect("a token");
    let authorization: Authorization = format!("Bearer {token}").parse().expect("a metadata value");
    let guard = app::guard(app::verifier(&key).expect("a verifier")).expect("the guard");

    let (bare_listener, bare) = servers.block_on(listener());
    servers.spawn(
        Server::builder()
            .add_service(GuardedServer::new(Measured))
            .serve_with_incoming(TcpIncoming::from(bare_listener).with_nodelay(Some(true))),
    );
    let (guarded_listener, guarded) = servers.block_on(listener());
    servers.spawn(
        Server::builder()
            .layer(guard)
            .add_service(GuardedServer::new(Measured))
            .serve_with_incoming(TcpIncoming::from(guarded_listener).with_nodelay(Some(true))),
    );
    let cases = [
        ("unguarded", clients.block_on(client(bare))),
        ("guarded", clients.block_on(client(guarded))),
    ];
    for (_, client) in &cases {
        clients.block_on(call(client, &authorization));
    }
    Setup {
        clients,
        cases,
        authorization,
        _servers: servers,
    }
}

/// Each call's time, `calls` of them, `in_flight` at once.
async fn timed(
    client: &GuardedClient<Channel>,
    authorization: &Authorization,
    calls: usize,
    in_flight: usize,
) -> Vec<Duration> {
    let worker = |n: usize| async move {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            call(client, authorization).await;
            times.push(start.elapsed());
        }
        times
    };
    futures_util::future::join_all((0..in_flight).map(|_| worker(calls / in_flight)))
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn p50_report() {
    const ROUNDS: usize = 20;
    const CALLS: usize = 2000;
    let setup = setup();
    for in_flight in [1, 8] {
        let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            // Alternate which goes first, so neither always follows the other.
            for i in [round % 2, 1 - round % 2] {
                let (_, client) = &setup.cases[i];
                let batch =
                    setup
                        .clients
                        .block_on(timed(client, &setup.authorization, CALLS, in_flight));
                times[i].extend(batch);
            }
        }
        let mut p50 = [Duration::ZERO; 2];
        for (i, (name, _)) in setup.cases.iter().enumerate() {
            times[i].sort_unstable();
            p50[i] = percentile(&times[i], 0.5);
            println!(
                "{in_flight} in flight, {name:>9}: p50 {:>7.1} µs  p90 {:>7.1} µs  ({} calls)",
                p50[i].as_secs_f64() * 1e6,
                percentile(&times[i], 0.9).as_secs_f64() * 1e6,
                times[i].len()
            );
        }
        println!(
            "{in_flight} in flight: the guard adds {:+.1}% to the p50",
            (p50[1].as_secs_f64() / p50[0].as_secs_f64() - 1.0) * 100.0
        );
    }
}

fn grpc(c: &mut Criterion) {
    let Setup {
        clients,
        cases,
        authorization,
        _servers,
    } = setup();

    let mut group = c.benchmark_group("unary");
    for (name, client) in &cases {
        group.bench_function(*name, |b| {
            b.to_async(&clients).iter(|| call(client, &authorization));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("unary_x8");
    for (name, client) in &cases {
        group.bench_function(*name, |b| {
            b.to_async(&clients).iter(|| {
                futures_util::future::join_all((0..8).map(|_| call(client, &authorization)))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = grpc
}
fn main() {
    if std::env::args().any(|arg| arg == "--p50") {
        p50_report();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
