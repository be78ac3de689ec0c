//! Serving: the accept loop on hyper-util's connection builder, each
//! request tagged with its peer address, upgrades allowed; `SIGTERM` (or
//! `SIGINT`) stops accepting and lets open requests finish within the grace
//! period; `SIGHUP` reads the file again and puts its address rules and
//! verifying keys in force without touching open connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;

use crate::ip::PeerAddr;

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
    header_read_timeout: Duration,
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
                                "reloaded the address rules and verifying keys; other settings take a restart"
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
        serve(gateway, listener, grace, header_read_timeout, async move {
            let _ = stop_rx.await;
        })
        .await
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        serve(gateway, listener, grace, header_read_timeout, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes, then waits up
/// to `grace` for open connections.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    grace: Duration,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = gateway.router();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn(request_handler(router.clone(), peer));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    heartbeat.abort();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "connections still open after the grace period"),
    }
    Ok(())
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
) -> impl Fn(Request<Incoming>) -> axum::routing::future::RouteFuture<Infallible> + Clone {
    move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        let mut router = router.clone();
        router.call(request.map(Body::new))
    }
}
