//! Serving: the accept loop on hyper's HTTP/1 and HTTP/2 connections, over
//! TLS with `[server.tls]` (ALPN picks the protocol) or plain (HTTP/2 only
//! with `h2c`, told by its preface), each request tagged with its peer
//! address, upgrades allowed on HTTP/1, every connection within the
//! [`ConnectionLimits`] (time to the first byte, to the end of the TLS
//! handshake and to each request head, open connections in all and per
//! client) and HTTP/2's own limits (streams, header list, resets, pings,
//! idle time); `SIGTERM` (or `SIGINT`) stops accepting and lets open
//! requests finish within the grace period; `SIGHUP` reads the file again
//! and puts its address rules, verifying keys and TLS certificate in force
//! without touching open connections.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::ip::{IpRanges, PeerAddr};

use super::app::Gateway;
use super::config::Settings;

/// What stops the server, and what reloads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Stop,
    Reload,
}

#[cfg(unix)]
async fn next_signal(
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
    hangup: &mut tokio::signal::unix::Signal,
) -> Event {
    tokio::select! {
        _ = terminate.recv() => Event::Stop,
        _ = interrupt.recv() => Event::Stop,
        _ = hangup.recv() => Event::Reload,
    }
}

/// Serves `gateway` on `listener` until `SIGTERM` or `SIGINT`, reloading
/// on `SIGHUP` through `reload` (which reads the settings again).
pub async fn serve_until_signalled(
    gateway: Gateway,
    listener: TcpListener,
    grace: Duration,
    limits: ConnectionLimits,
    reload: impl Fn() -> Result<Settings, String> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let reloader = gateway.reload_handle();
        tokio::spawn(async move {
            loop {
                match next_signal(&mut terminate, &mut interrupt, &mut hangup).await {
                    Event::Stop => {
                        tracing::info!("stopping: no new connections; open requests may finish");
                        let _ = stop_tx.send(());
                        return;
                    }
                    Event::Reload => match reload() {
                        Ok(settings) => match reloader.reload(&settings) {
                            Ok(()) => tracing::info!(
                                "reloaded the address rules, verifying keys and TLS certificate; other settings take a restart"
                            ),
                            Err(err) => {
                                tracing::error!(error = %err, "reload refused; the running rules stay")
                            }
                        },
                        Err(err) => {
                            tracing::error!(error = %err, "reload refused; the running rules stay")
                        }
                    },
                }
            }
        });
        serve(gateway, listener, grace, limits, async move {
            let _ = stop_rx.await;
        })
        .await
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        serve(gateway, listener, grace, limits, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    }
}

/// The bounds on the connections [`serve`] accepts.
///
/// - **Time to the request head** (`[server] header_read_timeout`, default
///   10 s): from the moment a connection is accepted, and again after each
///   response on a kept-alive connection; a client that sends no byte, or
///   not a whole head, in that time is disconnected.
/// - **Time to the first byte** (`first_byte_timeout`, default the header
///   read timeout): a shorter wait for a new connection's first byte.
/// - **Open connections** (`max_connections`, default 768, below the usual
///   limit of 1,024 descriptors): when every slot is taken, the oldest
///   connection that has not yet sent a whole request head is closed to
///   make room (so idle connections cannot keep anyone out); when every
///   open connection has sent a request, a new one is answered at once with
///   `503`, `Retry-After: 1` and `Connection: close`, and closed.
/// - **Open connections per client address** (`max_connections_per_client`,
///   default 64; IPv6 addresses counted by their /64): the same answer, so
///   that one client cannot take every slot and starve `/healthz`. The
///   trusted proxies are not counted against it: every connection of an
///   nginx in front comes from its one address.
/// - **Request head size** (`max_request_headers_kib`, default 16 KiB): an
///   HTTP/1 request whose request line and header fields are larger, or an
///   HTTP/2 one whose decoded header list is (RFC 9113 §6.5.2), is answered
///   `431 Request Header Fields Too Large`, before any check runs or
///   anything reaches the upstream.
/// - **HTTP/2 streams** (`http2_max_concurrent_streams`, default 128): the
///   requests one HTTP/2 connection may have in flight at once.
///
/// A proxied WebSocket keeps its connection's slot until it closes.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    header_read_timeout: Duration,
    first_byte_timeout: Option<Duration>,
    max_connections: usize,
    max_connections_per_client: usize,
    uncounted_clients: IpRanges,
    max_request_headers: usize,
    http2_max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::new(Duration::from_secs(10), 768, 64, IpRanges::default())
    }
}

impl ConnectionLimits {
    /// Limits of `max_connections` in all and `max_connections_per_client`
    /// from one address (addresses in `uncounted_clients`, the trusted
    /// proxies, are bound by the first only), and `header_read_timeout` to
    /// send a request head. A count of zero is read as one.
    pub fn new(
        header_read_timeout: Duration,
        max_connections: usize,
        max_connections_per_client: usize,
        uncounted_clients: IpRanges,
    ) -> Self {
        ConnectionLimits {
            header_read_timeout,
            first_byte_timeout: None,
            max_connections: max_connections.max(1),
            max_connections_per_client: max_connections_per_client.max(1),
            uncounted_clients,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        }
    }

    /// Closes a connection that has not sent its first byte within
    /// `timeout`, when that is shorter than the header read timeout (which
    /// otherwise covers the first byte too); the head's own timeout then
    /// runs from the first byte.
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    /// Answers `431` to a request whose head is larger than `bytes` (at
    /// least 1,024): an HTTP/1 request line and header fields, or an HTTP/2
    /// decoded header list, which counts 32 bytes more per field. The
    /// default is 16 KiB.
    pub fn max_request_headers(mut self, bytes: usize) -> Self {
        self.max_request_headers = bytes.max(1024);
        self
    }

    /// Lets one HTTP/2 connection have at most `streams` requests in
    /// flight at once (at least one). The default is 128.
    pub fn http2_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.http2_max_concurrent_streams = streams.max(1);
        self
    }

    /// The most connections open at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// The connections open now, in all and per client address.
struct OpenConnections {
    limits: ConnectionLimits,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// The connections in the order they were accepted, for finding the
    /// oldest one still [`WAITING`] (entries of connections since served or
    /// closed are skipped, and dropped now and then).
    accepted: Mutex<VecDeque<Weak<ConnectionSlot>>>,
}

/// A connection that has not yet sent a whole request head.
const WAITING: u8 = 0;
/// A connection that has sent at least one request.
const SERVED: u8 = 1;
/// A connection closed to make room for a newer one, which took its place
/// in the total.
const EVICTED: u8 = 2;

/// One open connection's place in [`OpenConnections`], given back when the
/// last holder (the connection, or the WebSocket tunnelled over it) drops.
pub(crate) struct ConnectionSlot {
    open: Arc<OpenConnections>,
    /// The address counted against the per-client limit, if any.
    client: Option<IpAddr>,
    /// [`WAITING`], [`SERVED`] or [`EVICTED`].
    state: AtomicU8,
    /// Woken when the connection is evicted.
    evict: tokio::sync::Notify,
    /// When the connection was accepted.
    opened: std::time::Instant,
    /// When its latest request came, in milliseconds since `opened`.
    last_request: AtomicU64,
}

impl fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSlot")
            .field("client", &self.client)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ConnectionSlot {
    /// Notes that a whole request head has arrived: the connection can no
    /// longer be evicted.
    fn served(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_request.store(since, Ordering::Relaxed);
        if self.state.load(Ordering::Relaxed) == WAITING {
            let _ =
                self.state
                    .compare_exchange(WAITING, SERVED, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// The slot of the connection an upgrade request came on, in the request's
/// extensions, so that a tunnel holds it for as long as it stays open.
#[derive(Debug, Clone)]
pub(crate) struct HeldConnectionSlot(#[allow(dead_code)] Arc<ConnectionSlot>);

impl OpenConnections {
    fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(OpenConnections {
            limits,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            accepted: Mutex::new(VecDeque::new()),
        })
    }

    /// A slot for a connection from `peer`, or `None` when a limit is
    /// reached. At the total limit the oldest connection that has not yet
    /// sent a request head is evicted to make room, so idle connections
    /// cannot keep everyone else out; with none, the answer is `None`.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<ConnectionSlot>> {
        let peer = peer.to_canonical();
        let client = (!self.limits.uncounted_clients.contains(peer)).then(|| client_key(peer));
        if let Some(client) = client {
            let mut per_client = lock(&self.per_client);
            let count = per_client.entry(client).or_insert(0);
            if *count >= self.limits.max_connections_per_client {
                return None;
            }
            *count += 1;
        }
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            // An evicted connection's place passes to this one.
            if !self.evict_the_oldest_waiting() {
                if let Some(client) = client {
                    self.release_client(client);
                }
                return None;
            }
        }
        let slot = Arc::new(ConnectionSlot {
            open: Arc::clone(self),
            client,
            state: AtomicU8::new(WAITING),
            evict: tokio::sync::Notify::new(),
            opened: std::time::Instant::now(),
            last_request: AtomicU64::new(0),
        });
        let mut accepted = lock(&self.accepted);
        if accepted.len() >= 2 * self.limits.max_connections + 16 {
            accepted.retain(|entry| {
                entry
                    .upgrade()
                    .is_some_and(|slot| slot.state.load(Ordering::Acquire) == WAITING)
            });
        }
        accepted.push_back(Arc::downgrade(&slot));
        Some(slot)
    }

    /// Marks the oldest connection still waiting for its first request
    /// head evicted and wakes it; `false` when there is none.
    fn evict_the_oldest_waiting(&self) -> bool {
        let mut accepted = lock(&self.accepted);
        while let Some(entry) = accepted.pop_front() {
            let Some(slot) = entry.upgrade() else {
                continue;
            };
            if slot
                .state
                .compare_exchange(WAITING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::debug!(client = ?slot.client, "connection evicted: every slot is taken");
                slot.evict.notify_one();
                return true;
            }
        }
        false
    }

    fn release_client(&self, client: IpAddr) {
        let mut per_client = lock(&self.per_client);
        if let Some(count) = per_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&client);
            }
        }
    }
}

/// The data behind `mutex`, whether or not a holder panicked (the counts
/// stay consistent: every change is one step).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) != EVICTED {
            self.open.total.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(client) = self.client {
            self.open.release_client(client);
        }
    }
}

/// The address a client is counted under: an IPv4 address, or the /64 of
/// an IPv6 one (a host usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
    }
}

/// The answer to a connection beyond a limit.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
cache-control: no-store\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 91\r\n\
\r\n\
{\"error\":\"too_many_connections\",\"error_description\":\"too many open connections; try again\"}";

/// Answers `503` to a connection beyond a limit and closes it, without
/// waiting for it: what the socket takes now is sent, and what the client
/// already sent is read away so that the close is not a reset.
fn refuse(stream: tokio::net::TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "connection refused: too many open connections");
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
    let mut sink = [0u8; 2048];
    let _ = stream.try_read(&mut sink);
}

/// Serves `gateway` on `listener` until `shutdown` completes, then waits up
/// to `grace` for open connections.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    grace: Duration,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = gateway.router();
    let tls = gateway.tls();
    let h2c = gateway.h2c();
    // HTTP/1 straight away: hyper's header read timeout then runs from the
    // connection's first moment (a protocol sniffer in front of it would
    // wait for bytes with no deadline).
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_request_headers)
        .keep_alive(true);
    let protocols = Arc::new(Protocols {
        http1,
        http2: http2_builder(&limits),
        header_read_timeout: limits.header_read_timeout,
    });
    // hyper's head timeout covers the first byte too; a shorter wait for it
    // runs before hyper is handed the connection.
    let first_byte_wait = limits
        .first_byte_timeout
        .filter(|wait| *wait < limits.header_read_timeout);
    let open = OpenConnections::new(limits);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(keep_the_next_timer_near());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.take(peer.ip()) else {
            refuse(stream, peer);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            hyper::service::service_fn(request_handler(router.clone(), peer, Arc::clone(&slot)));
        let protocols = Arc::clone(&protocols);
        let tls = tls.as_ref().map(|live| live.load_full());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            // Up to the first request's protocol: the first byte, the TLS
            // handshake, the h2c preface, each within its deadline, and
            // given up when evicted or stopping.
            let setup = async {
                if let Some(wait) = first_byte_wait
                    && !first_byte(&stream, wait).await
                {
                    return None;
                }
                match tls {
                    Some(config) => {
                        let accepted = tokio::time::timeout(
                            protocols.header_read_timeout,
                            tokio_rustls::TlsAcceptor::from(config).accept(stream),
                        )
                        .await;
                        match accepted {
                            Ok(Ok(stream)) => {
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                Some((Io::Tls(Box::new(stream)), h2))
                            }
                            Ok(Err(err)) => {
                                tracing::debug!(error = %err, %peer, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake not done in time");
                                None
                            }
                        }
                    }
                    None if h2c => {
                        let h2 = sends_h2c_preface(&stream, protocols.header_read_timeout).await?;
                        Some((Io::Plain(stream), h2))
                    }
                    None => Some((Io::Plain(stream), false)),
                }
            };
            let ready = tokio::select! {
                ready = setup => ready,
                () = slot.evict.notified() => None,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => None,
            };
            let Some((io, h2)) = ready else {
                return;
            };
            let ended = match io {
                Io::Plain(stream) => {
                    drive(
                        &protocols,
                        TokioIo::new(stream),
                        h2,
                        service,
                        &slot,
                        &mut stopping,
                    )
                    .await
                }
                Io::Tls(stream) => {
                    drive(
                        &protocols,
                        TokioIo::new(stream),
                        h2,
                        service,
                        &slot,
                        &mut stopping,
                    )
                    .await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(stopping);
    heartbeat.abort();
    let _ = stop.send(true);
    tokio::select! {
        () = stop.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "connections still open after the grace period"),
    }
    Ok(())
}

/// The default bound on a request's head, [`ConnectionLimits::max_request_headers`].
pub(crate) const DEFAULT_MAX_REQUEST_HEADERS: usize = 16 * 1024;
/// The default bound on an HTTP/2 connection's streams in flight,
/// [`ConnectionLimits::http2_max_concurrent_streams`].
pub(crate) const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Streams a client may open and reset before the server has accepted
/// them (rapid reset, CVE-2023-44487); beyond it the connection is closed
/// with `ENHANCE_YOUR_CALM`.
pub(crate) const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for a client's protocol errors before it
/// closes the connection.
pub(crate) const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// How often an HTTP/2 connection is pinged, and how long the answer may
/// take: a peer that does not answer is disconnected.
pub(crate) const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How long an HTTP/2 connection may go without a new request before it
/// is closed with `GOAWAY` (the streams in flight finish first).
pub(crate) const HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The connection builders every accepted connection shares.
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// The TLS handshake's deadline, the h2c preface's, and HTTP/2's for
    /// the first request.
    header_read_timeout: Duration,
}

fn http2_builder(limits: &ConnectionLimits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_request_headers).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    http2
}

/// An accepted connection, with TLS or without.
enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// Whether the connection's first byte arrives within `wait`. A peek, not
/// `readable`: a new socket may be reported readable before any byte has
/// arrived.
async fn first_byte(stream: &tokio::net::TcpStream, wait: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.peek(&mut first)).await,
        Ok(Ok(1..))
    )
}

/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection opens with the HTTP/2 preface (`Some(true)`)
/// or something else, read as HTTP/1 (`Some(false)`), judged on the bytes
/// received without consuming them; `None` when it closes or `deadline`
/// passes first. An HTTP/1 request is told apart at its first byte that
/// differs from the preface (`P` of `POST`, `PUT`, `PATCH` at the second).
async fn sends_h2c_preface(stream: &tokio::net::TcpStream, deadline: Duration) -> Option<bool> {
    let sniff = async {
        let mut seen = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut seen).await.ok()?;
            if n == 0 {
                return None;
            }
            if seen[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // A preface cut short: the rest is on its way. A peek returns
            // at once while bytes wait, so wait a moment between looks.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(deadline, sniff).await.ok().flatten()
}

/// Serves one connection's requests over HTTP/1 or HTTP/2 until it ends,
/// is evicted before its first request, or the server stops (then the
/// requests in flight finish). An HTTP/2 connection that has sent no
/// request within the header read timeout is closed.
async fn drive<I, S>(
    protocols: &Protocols,
    io: I,
    h2: bool,
    service: S,
    slot: &ConnectionSlot,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if h2 {
        let connection = protocols.http2.serve_connection(io, service);
        tokio::pin!(connection);
        // The first request within the header read timeout, each next one
        // within the idle timeout.
        let idle = async {
            loop {
                let due = if slot.state.load(Ordering::Acquire) == WAITING {
                    slot.opened + protocols.header_read_timeout
                } else {
                    slot.opened
                        + Duration::from_millis(slot.last_request.load(Ordering::Relaxed))
                        + HTTP2_IDLE_TIMEOUT
                };
                if std::time::Instant::now() >= due {
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
            }
        };
        tokio::select! {
            biased;
            ended = connection.as_mut() => ended,
            signal = WhenWoken::new(signal(slot, stopping)) => match signal {
                Signal::Evicted => Ok(()),
                Signal::Stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            },
            () = idle => {
                tracing::debug!(client = ?slot.client, "HTTP/2 connection idle: closed");
                if slot.state.load(Ordering::Acquire) == WAITING {
                    // Not one request: dropped, which closes it.
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = protocols
            .http1
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            biased;
            ended = connection.as_mut() => ended,
            signal = WhenWoken::new(signal(slot, stopping)) => match signal {
                // Made room for a newer one before sending a request head:
                // dropped, which closes it.
                Signal::Evicted => Ok(()),
                Signal::Stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            },
        }
    }
}

/// What ends a connection from outside.
enum Signal {
    /// Made room for a newer connection ([`ConnectionSlot::evict`]).
    Evicted,
    /// The server is stopping.
    Stopping,
}

/// Whichever of `slot`'s eviction and the server's stop comes first.
async fn signal(
    slot: &ConnectionSlot,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Signal {
    tokio::select! {
        () = slot.evict.notified() => Signal::Evicted,
        _ = stopping.wait_for(|stop| *stop) => Signal::Stopping,
    }
}

/// `future`, polled only on its first poll and after its own waker was
/// woken. A connection's task wakes for every read and write of its
/// requests, and the signals that end it (`Notify`, `watch`) take a lock at
/// each poll: this is one atomic swap instead, and the signal is still seen
/// as soon as it is sent.
struct WhenWoken<F> {
    future: std::pin::Pin<Box<F>>,
    flag: Arc<WokenFlag>,
    /// Wakes `flag`, then the task.
    waker: std::task::Waker,
}

/// Whether a [`WhenWoken`] future was woken since its last poll, and the
/// task to wake with it.
struct WokenFlag {
    woken: AtomicBool,
    task: atomic_waker::AtomicWaker,
}

impl std::task::Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WhenWoken<F> {
    fn new(future: F) -> Self {
        let flag = Arc::new(WokenFlag {
            woken: AtomicBool::new(true),
            task: atomic_waker::AtomicWaker::new(),
        });
        Self {
            future: Box::pin(future),
            waker: std::task::Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        // Before the flag is read: a wake from now on reaches this task.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Pending;
        }
        this.future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&this.waker))
    }
}

/// How far ahead the timer driver's next wake-up is kept.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Keeps a timer due within [`HEARTBEAT`], forever.
///
/// Tokio interrupts its I/O driver (a write to an eventfd) whenever a timer
/// is registered that is due before the driver's next planned wake-up, even
/// while the driver is busy polling tasks (tokio-rs/tokio#5207). Every
/// request registers one (hyper's header read timeout, the proxy's upstream
/// timeout), and when no other timer is pending — every connection waiting
/// on the upstream — each of them interrupted the driver: one more system
/// call per proxied request. With a timer always due within half a second,
/// the per-request ones (seconds away) never come first. The cost is one
/// wake-up every half second.
async fn keep_the_next_timer_near() {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}

fn request_handler(
    router: axum::Router,
    peer: SocketAddr,
    slot: Arc<ConnectionSlot>,
) -> impl Fn(Request<Incoming>) -> axum::routing::future::RouteFuture<Infallible> + Clone {
    move |mut request: Request<Incoming>| {
        slot.served();
        request.extensions_mut().insert(PeerAddr(peer));
        if request.headers().contains_key(http::header::UPGRADE) {
            // A tunnel outlives the connection's task: it keeps the slot.
            request
                .extensions_mut()
                .insert(HeldConnectionSlot(Arc::clone(&slot)));
        }
        let mut router = router.clone();
        router.call(request.map(Body::new))
    }
}

/// How long a login route waits for its request body: the time runs from
/// the moment the head has arrived. A body still incomplete then (withheld
/// or trickled) is answered `408` with `Connection: close`, before any
/// password is hashed.
pub(crate) async fn login_body_deadline(
    timeout: Duration,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> http::Response<Body> {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: tokio::time::sleep(timeout),
            expired: Arc::clone(&expired),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    tracing::warn!(?timeout, "a login request's body did not arrive in time");
    let mut response = super::proxy::gateway_error(
        http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
    );
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline has passed, and says so
    /// in `expired`.
    struct DeadlineBody {
        #[pin]
        inner: Body,
        #[pin]
        deadline: tokio::time::Sleep,
        expired: Arc<AtomicBool>,
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let std::task::Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return std::task::Poll::Ready(frame);
        }
        if this.deadline.poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return std::task::Poll::Ready(Some(Err(axum::Error::new(
                "the request body did not arrive in time",
            ))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize, uncounted: &str) -> ConnectionLimits {
        ConnectionLimits::new(
            Duration::from_secs(1),
            total,
            per_client,
            IpRanges::parse_list(uncounted).unwrap(),
        )
    }

    /// A slot whose connection has sent a request.
    fn served(open: &Arc<OpenConnections>, peer: &str) -> Option<Arc<ConnectionSlot>> {
        let slot = open.take(peer.parse().unwrap())?;
        slot.served();
        Some(slot)
    }

    #[test]
    fn one_client_gets_its_share_and_gives_it_back() {
        let open = OpenConnections::new(limits(4, 2, "10.0.0.1"));
        let first = served(&open, "192.0.2.7").unwrap();
        let _second = served(&open, "192.0.2.7").unwrap();
        assert!(
            served(&open, "192.0.2.7").is_none(),
            "a third from one client"
        );
        // Another client still gets a slot; a trusted proxy is not counted
        // per client, only in all.
        let _other = served(&open, "192.0.2.8").unwrap();
        let _proxy = served(&open, "10.0.0.1").unwrap();
        assert!(served(&open, "10.0.0.1").is_none(), "over the total");
        drop(first);
        let _again = served(&open, "192.0.2.7").expect("a freed slot is given again");
        assert!(served(&open, "192.0.2.9").is_none());
    }

    #[test]
    fn a_refused_connection_leaves_the_counts_as_they_were() {
        let open = OpenConnections::new(limits(3, 1, "10.0.0.1"));
        let held = served(&open, "192.0.2.7").unwrap();
        for _ in 0..10 {
            assert!(served(&open, "192.0.2.7").is_none());
        }
        let _a = served(&open, "192.0.2.8").unwrap();
        let _b = served(&open, "192.0.2.9").unwrap();
        for _ in 0..10 {
            assert!(served(&open, "192.0.2.10").is_none());
        }
        assert_eq!(open.total.load(Ordering::Acquire), 3);
        assert_eq!(lock(&open.per_client).len(), 3);
        drop(held);
        drop((_a, _b));
        assert_eq!(open.total.load(Ordering::Acquire), 0);
        assert!(lock(&open.per_client).is_empty());
    }

    #[test]
    fn at_the_limit_the_oldest_connection_without_a_request_makes_room() {
        let open = OpenConnections::new(limits(3, 3, "10.0.0.1"));
        let idle_old = open.take("192.0.2.7".parse().unwrap()).unwrap();
        let busy = served(&open, "192.0.2.7").unwrap();
        let idle_new = open.take("192.0.2.8".parse().unwrap()).unwrap();
        // Full: the newcomer takes the oldest idle connection's place.
        let newcomer = served(&open, "192.0.2.9").expect("an idle connection makes room");
        assert_eq!(idle_old.state.load(Ordering::Acquire), EVICTED);
        assert_eq!(idle_new.state.load(Ordering::Acquire), WAITING);
        assert_eq!(busy.state.load(Ordering::Acquire), SERVED);
        drop(idle_old);
        assert_eq!(open.total.load(Ordering::Acquire), 3, "the place passed on");
        let _another = served(&open, "192.0.2.10").expect("the next idle one");
        assert_eq!(idle_new.state.load(Ordering::Acquire), EVICTED);
        // Every open connection has sent a request: refused.
        assert!(served(&open, "192.0.2.11").is_none());
        drop((busy, newcomer, idle_new, _another));
        assert_eq!(open.total.load(Ordering::Acquire), 0);
        assert!(lock(&open.per_client).is_empty());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let open = OpenConnections::new(limits(10, 1, "10.0.0.1"));
        let _held = served(&open, "2001:db8:1:2::1").unwrap();
        assert!(served(&open, "2001:db8:1:2::ffff").is_none());
        assert!(served(&open, "2001:db8:1:3::1").is_some());
        // An IPv4-mapped address counts as the IPv4 address.
        let _v4 = served(&open, "192.0.2.1").unwrap();
        assert!(served(&open, "::ffff:192.0.2.1").is_none());
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }

    #[test]
    fn a_when_woken_future_is_polled_first_and_after_its_waker_only() {
        use std::task::{Context, Poll, Waker};
        let (send, receive) = tokio::sync::oneshot::channel::<u8>();
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&polls);
        let mut receive = Box::pin(receive);
        let mut future = WhenWoken::new(std::future::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            receive.as_mut().poll(cx)
        }));
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = std::pin::Pin::new(&mut future);
        // The first poll reaches the future; the task's other wake-ups do not.
        assert!(pinned.as_mut().poll(&mut cx).is_pending());
        assert!(pinned.as_mut().poll(&mut cx).is_pending());
        assert!(pinned.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // Its own waker, woken by the sender, lets the next poll through.
        send.send(7).unwrap();
        assert_eq!(pinned.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
