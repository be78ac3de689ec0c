//! The floor `authgate`'s reverse proxy is measured against: a plain
//! HTTP/1.1 reverse proxy built from hyper and tokio alone, as `authgate`
//! is, on one thread, with the same allocator, that checks nothing.
//!
//! It passes every request to the upstream with `X-Forwarded-For` added,
//! over kept-alive connections (a connection is used again once its last
//! response has been read), and streams the response back. What
//! `authgate` spends beyond it is its own: the router, the guard, the
//! identity and forwarding fields, the timeouts and connection limits.
//! `scripts/gateway-peers` runs it beside `authgate` and nginx.
//!
//! ```sh
//! cargo run --release --features gateway --example hyper_proxy_floor -- 127.0.0.1:9100 127.0.0.1:9000
//! ```
//!
//! It is a measuring instrument, not a proxy to deploy: no header hygiene,
//! no timeouts, no limits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// Upstream connections, idle or still reading a response.
#[derive(Clone)]
struct Pool {
    upstream: SocketAddr,
    connections: Arc<Mutex<Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    /// A connection ready for a request: a kept one, or a new one.
    async fn take(&self) -> std::io::Result<SendRequest<Incoming>> {
        let kept = {
            let mut connections = self
                .connections
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            connections.retain(|sender| !sender.is_closed());
            connections
                .iter()
                .position(SendRequest::is_ready)
                .map(|at| connections.swap_remove(at))
        };
        if let Some(sender) = kept {
            return Ok(sender);
        }
        let stream = tokio::net::TcpStream::connect(self.upstream).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn give_back(&self, sender: SendRequest<Incoming>) {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(sender);
    }

    async fn forward(&self, peer: SocketAddr, mut request: Request<Incoming>) -> Response<Body> {
        if let Ok(value) = HeaderValue::try_from(peer.ip().to_string()) {
            request.headers_mut().insert("x-forwarded-for", value);
        }
        let answer = async {
            let mut sender = self.take().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            // Ready again once this response's body has been read.
            self.give_back(sender);
            Ok::<_, std::io::Error>(response.map(BodyExt::boxed_unsync))
        };
        answer.await.unwrap_or_else(|_| {
            let mut response = Response::new(
                Full::new(Bytes::from_static(b"the upstream cannot be reached"))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: hyper_proxy_floor LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let pool = Pool {
        upstream: upstream.parse()?,
        connections: Arc::default(),
    };
    // One thread, as `authgate` with `worker_threads = 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        loop {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let pool = pool.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let pool = pool.clone();
                    async move { Ok::<_, std::convert::Infallible>(pool.forward(peer, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
