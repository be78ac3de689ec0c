//! The connections to the upstream: HTTP/1.1 over TCP, each driven by a task
//! of its own, kept alive and reused.
//!
//! A request takes the most recently used idle connection (or opens one),
//! sends on it, and the connection goes back to the idle list when the
//! response body has been read to its end and the request body sent to
//! its end. A response body dropped half-read, or a request body still
//! being sent when the response has ended (an upstream that answered
//! early), closes its connection instead: HTTP/1.1 cannot take another
//! request on it until then, and no request should wait for that. A
//! connection the upstream closed while idle is skipped, and a request it
//! could not take (the connection closed before anything was written) is
//! sent again on a new one. At most `[upstream] idle_connections` (default
//! [`DEFAULT_IDLE`]) connections wait (the
//! oldest is closed to make room), and one idle for longer than
//! [`IDLE_TIMEOUT`] is closed instead of used when a request comes; an
//! upstream that closes idle connections itself ends them at once.
//!
//! Compared with hyper-util's pooled client, this is one lock and a vector
//! push or pop per request: no pool key to hash, no connect future built
//! alongside each checkout, and no task spawned to return a connection.
//!
//! An `https://` upstream is reached over TLS (rustls, its certificate
//! verified against the configured CA or the system's roots, the name
//! checked against the URL's host). With `protocol = "h2c"` or `"h2"`
//! every request goes over one HTTP/2 connection, opened when the first
//! request comes and again when it has closed: its `:authority` is the
//! request's `Host`, response trailers come back as the body's last frame,
//! and a gRPC request (`content-type: application/grpc…`) is sent with
//! `te: trailers`, which gRPC servers ask for.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tower_service::Service;

/// Idle connections kept for reuse by default (`[upstream]
/// idle_connections`); more are closed when they come back. As many as
/// nginx's `keepalive 512` commonly configured: an HTTP/2 client with
/// hundreds of requests in flight finds its upstream connections waiting
/// rather than opened and closed for each.
pub(crate) const DEFAULT_IDLE: usize = 512;
/// How long a connection may stay idle before it is closed rather than used.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request did not get a response head from the upstream.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The connection was refused, or the name did not resolve.
    Connect(String),
    /// The upstream did not accept the connection within the connect timeout.
    ConnectTimeout,
    /// The connection failed while the request was sent or the head read.
    Request(hyper::Error),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(err) => write!(f, "cannot connect: {err}"),
            UpstreamError::ConnectTimeout => f.write_str("the connection was not accepted in time"),
            UpstreamError::Request(err) => write!(f, "{err}"),
        }
    }
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// One upstream's address and its idle connections.
pub(crate) struct Upstream {
    connector: HttpConnector,
    /// What the connector dials: `scheme://authority`.
    address: Uri,
    /// The `Host` of a request that arrived without one.
    host: HeaderValue,
    connect_timeout: Duration,
    /// The idle connections, the most recently used last.
    idle: Mutex<VecDeque<Idle>>,
    /// How many may wait.
    max_idle: usize,
    /// TLS to an `https://` upstream, and the name its certificate must hold.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// With HTTP/2: the connection every request shares, once open.
    http2: Option<tokio::sync::Mutex<Option<http2::SendRequest<Body>>>>,
}

/// How often an HTTP/2 upstream connection is pinged while open, and how
/// long an answer may take before it is closed.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

impl Upstream {
    pub(crate) fn new(scheme: Scheme, authority: Authority, connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // TLS, when the scheme is https, runs over the TCP connection it makes.
        connector.enforce_http(false);
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let address = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| Uri::from_static("http://127.0.0.1/"));
        Upstream {
            connector,
            address,
            host: HeaderValue::from_str(&host)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
            max_idle: DEFAULT_IDLE,
            tls: None,
            http2: None,
        }
    }

    /// Reaches the upstream over TLS with `config`; `Err` when the URL's
    /// host is not a name or address a certificate can hold.
    pub(crate) fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Result<Self, String> {
        let host = self
            .address
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = ServerName::try_from(host.clone())
            .map_err(|_| format!("{host:?} is not a name a certificate can hold"))?;
        self.tls = Some((tokio_rustls::TlsConnector::from(config), name));
        Ok(self)
    }

    /// Keeps at most `max_idle` idle connections (0: none, every request
    /// opens its own).
    pub(crate) fn with_max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// Sends every request over one HTTP/2 connection.
    pub(crate) fn with_http2(mut self) -> Self {
        self.http2 = Some(tokio::sync::Mutex::new(None));
        self
    }

    /// Where the upstream is, as configured: `host:port`.
    pub(crate) fn authority(&self) -> &str {
        self.address.authority().map_or("", Authority::as_str)
    }

    /// Sends `request` (origin-form target) and answers the response, whose
    /// body gives its connection back when read to the end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        // The rare paths are boxed (HTTP/2, and opening a connection with
        // its TLS handshake): their state would otherwise make every
        // request's future several kilobytes, allocated and copied each
        // time.
        if let Some(shared) = &self.http2 {
            return Box::pin(self.send_http2(shared, request)).await;
        }
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, self.host.clone());
        }
        // A request body still on its way when the response has been read
        // (an upstream that answered early) keeps its connection busy: that
        // connection is closed rather than handed to the next request.
        let uploaded = if http_body::Body::is_end_stream(request.body()) {
            None
        } else {
            let done = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&done);
            request = request.map(|body| {
                Body::new(AtEnd {
                    body,
                    at_end: Some(move || flag.store(true, Ordering::Release)),
                })
            });
            Some(done)
        };
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            if let Err(err) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Request(err));
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(sender, response, uploaded)),
                Err(mut err) => match err.take_message() {
                    // Nothing was written: an idle connection the upstream
                    // closed. Another one, or a new one, takes it.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Request(err.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { sender, since }) = idle.pop_back() {
            if since.elapsed() > IDLE_TIMEOUT {
                // The rest went idle earlier still.
                idle.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= self.max_idle {
            // The oldest goes.
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Sends `request` on the shared HTTP/2 connection (opened now if
    /// there is none or it has closed), its `Host` as `:authority`.
    async fn send_http2(
        &self,
        shared: &tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let authority = request
            .headers_mut()
            .remove(header::HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .or_else(|| self.address.authority().cloned());
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(match self.tls {
            Some(_) => Scheme::HTTPS,
            None => Scheme::HTTP,
        });
        parts.authority = authority;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(parts)
            .map_err(|err| UpstreamError::Connect(format!("no URI for HTTP/2: {err}")))?;
        *request.version_mut() = http::Version::HTTP_2;
        if is_grpc(request.headers()) {
            request
                .headers_mut()
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let mut sender = {
            let mut current = shared.lock().await;
            match current.as_ref() {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let sender = self.connect_http2().await?;
                    *current = Some(sender.clone());
                    sender
                }
            }
        };
        sender.ready().await.map_err(UpstreamError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Request)?;
        Ok(response.map(Body::new))
    }

    /// A new TCP connection, and TLS over it for an `https://` upstream.
    async fn connect_stream(&self) -> Result<Stream, UpstreamError> {
        let mut connector = self.connector.clone();
        let connecting = async {
            let stream = connector
                .call(self.address.clone())
                .await
                .map_err(|err| UpstreamError::Connect(error_chain(&err)))?;
            let Some((tls, name)) = &self.tls else {
                return Ok(Stream::Plain(stream));
            };
            let stream = tls
                .connect(name.clone(), stream.into_inner())
                .await
                .map_err(|err| UpstreamError::Connect(format!("TLS: {}", error_chain(&err))))?;
            Ok(Stream::Tls(TokioIo::new(Box::new(stream))))
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => Err(UpstreamError::ConnectTimeout),
            Ok(connected) => connected,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        match self.connect_stream().await? {
            Stream::Plain(stream) => http1_handshake(stream).await,
            Stream::Tls(stream) => http1_handshake(stream).await,
        }
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<Body>, UpstreamError> {
        match self.connect_stream().await? {
            Stream::Plain(stream) => http2_handshake(stream).await,
            Stream::Tls(stream) => http2_handshake(stream).await,
        }
    }

    /// The response, its body holding `sender` until read to the end; a
    /// protocol switch keeps the connection for the two joined streams.
    fn lease(
        self: &Arc<Self>,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
        uploaded: Option<Arc<AtomicBool>>,
    ) -> Response<Body> {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return response.map(Body::new);
        }
        let lease = Lease {
            sender,
            upstream: Arc::clone(self),
            uploaded,
        };
        if http_body::Body::is_end_stream(response.body()) {
            lease.give_back();
            return response.map(Body::new);
        }
        // A broken body drops the lease: its connection closes.
        response.map(|body| {
            Body::new(AtEnd {
                body,
                at_end: Some(move || lease.give_back()),
            })
        })
    }
}

/// A connection to the upstream, before the HTTP handshake.
enum Stream {
    Plain(TokioIo<tokio::net::TcpStream>),
    Tls(TokioIo<Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own.
async fn http1_handshake<T>(io: T) -> Result<SendRequest<Body>, UpstreamError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(UpstreamError::Request)?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(error = %err, "an upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// An HTTP/2 connection over `io` (prior knowledge, or ALPN `h2`), driven
/// by a task of its own, pinged while open.
async fn http2_handshake<T>(io: T) -> Result<http2::SendRequest<Body>, UpstreamError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE)
        .handshake(io)
        .await
        .map_err(UpstreamError::Request)?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "an HTTP/2 upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Whether the request is gRPC: `content-type: application/grpc`, alone or
/// with a `+format` or `;parameters`.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.as_bytes().get(..16))
        .is_some_and(|start| start.eq_ignore_ascii_case(b"application/grpc"))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Lease {
    sender: SendRequest<Body>,
    upstream: Arc<Upstream>,
    /// Set when the request body has been sent to its end; `None` for a
    /// request that had none.
    uploaded: Option<Arc<AtomicBool>>,
}

impl Lease {
    /// The connection goes back to the idle list once its request body is
    /// sent too; otherwise it closes.
    fn give_back(self) {
        if self
            .uploaded
            .as_ref()
            .is_none_or(|done| done.load(Ordering::Acquire))
        {
            self.upstream.give_back(self.sender);
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that runs `at_end` once it has yielded its last frame; one
    /// that fails, or is dropped before its end, drops `at_end` unrun.
    struct AtEnd<B, F> {
        #[pin]
        body: B,
        at_end: Option<F>,
    }
}

impl<B: http_body::Body, F: FnOnce()> http_body::Body for AtEnd<B, F> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = ready!(this.body.as_mut().poll_frame(cx));
        let ended = match &polled {
            None => true,
            // Whoever reads the body may stop once it says it has ended,
            // without asking for the end.
            Some(Ok(_)) => this.body.is_end_stream(),
            Some(Err(_)) => {
                *this.at_end = None;
                false
            }
        };
        if ended && let Some(at_end) = this.at_end.take() {
            at_end();
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    /// An upstream on loopback that counts the connections it accepted:
    /// `/close` answers with `Connection: close`, `/big` with a body of
    /// 4 MiB, `/early` with `ok` before reading the request body, anything
    /// else with `ok`.
    async fn counting_upstream() -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        if request.uri().path() == "/early" {
                            // Answers at once and reads the body after,
                            // keeping the connection open meanwhile.
                            tokio::spawn(request.into_body().collect());
                            return Ok(Response::new(Body::from("ok")));
                        }
                        let mut response = match request.uri().path() {
                            "/big" => Response::new(Body::from(vec![b'x'; 4 << 20])),
                            _ => Response::new(Body::from("ok")),
                        };
                        if request.uri().path() == "/close" {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (authority, accepted)
    }

    fn get(path: &str) -> Request<Body> {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    async fn read(upstream: &Arc<Upstream>, path: &str) -> Bytes {
        let response = upstream.send(get(path)).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        response.into_body().collect().await.unwrap().to_bytes()
    }

    fn upstream(authority: Authority) -> Arc<Upstream> {
        Arc::new(Upstream::new(
            Scheme::HTTP,
            authority,
            Duration::from_secs(2),
        ))
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_was_read() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = upstream(authority);
        for _ in 0..5 {
            assert_eq!(read(&upstream, "/").await, "ok");
        }
        assert_eq!(read(&upstream, "/big").await.len(), 4 << 20);
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_in_flight_keeps_its_connection_from_other_requests() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = upstream(authority);
        let streaming = upstream.send(get("/big")).await.unwrap();
        // The first response's body is not read yet: another connection.
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let body = streaming.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 4 << 20);
        // Both are idle now; no third connection.
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn at_most_the_idle_bound_waits_the_oldest_closed_first() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = Arc::new(
            Upstream::new(Scheme::HTTP, authority, Duration::from_secs(2)).with_max_idle(1),
        );
        // Two responses in flight hold two connections.
        let first = upstream.send(get("/big")).await.unwrap();
        let second = upstream.send(get("/big")).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        for response in [first, second] {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 4 << 20);
        }
        // One of them waits; two at once again need one new connection.
        let first = upstream.send(get("/big")).await.unwrap();
        let second = upstream.send(get("/big")).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        drop((first, second));

        // No idle connection at all: every request opens its own.
        let (authority, accepted) = counting_upstream().await;
        let upstream = Arc::new(
            Upstream::new(Scheme::HTTP, authority, Duration::from_secs(2)).with_max_idle(0),
        );
        for _ in 0..3 {
            assert_eq!(read(&upstream, "/").await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_closes_its_connection() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = upstream(authority);
        let mut body = upstream.send(get("/big")).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A request body that sends one chunk, then nothing, never ending.
    struct Stalled(bool);

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
            }
        }
    }

    #[tokio::test]
    async fn a_connection_still_sending_its_request_body_is_not_reused() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = upstream(authority);
        // The upstream answers without reading the body, which never ends.
        let upload = Request::builder()
            .method("POST")
            .uri("/early")
            .body(Body::new(Stalled(false)))
            .unwrap();
        let response = upstream.send(upload).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        // The next request does not wait for that upload: a new connection.
        let next = tokio::time::timeout(Duration::from_secs(5), read(&upstream, "/"))
            .await
            .expect("a request waited behind another's request body");
        assert_eq!(next, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A request body sent to its end leaves the connection reusable.
        let sent = Request::builder()
            .method("POST")
            .uri("/")
            .body(Body::from("whole"))
            .unwrap();
        let response = upstream.send(sent).await.unwrap();
        response.into_body().collect().await.unwrap();
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closes_is_not_used_again() {
        let (authority, accepted) = counting_upstream().await;
        let upstream = upstream(authority);
        assert_eq!(read(&upstream, "/close").await, "ok");
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(read(&upstream, "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_without_host_gets_the_upstreams() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(|request: Request<Incoming>| async move {
                let host = request.headers().get(header::HOST).cloned();
                Ok::<_, std::convert::Infallible>(Response::new(Body::from(
                    host.map(|h| h.as_bytes().to_vec()).unwrap_or_default(),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let upstream = upstream(Authority::try_from(address.to_string()).unwrap());
        assert_eq!(read(&upstream, "/").await, address.to_string());
        let mut kept = get("/");
        kept.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("app.example"));
        let response = upstream.send(kept).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "app.example");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let refused = upstream(Authority::try_from(address.to_string()).unwrap());
        assert!(matches!(
            refused.send(get("/")).await,
            Err(UpstreamError::Connect(_))
        ));
    }
}
