//! `/metrics` in the Prometheus text format, on a listener of its own
//! (`[metrics] listen`), never on the gateway's: the crate's events
//! ([`observe`](crate::observe)) for logins, refreshes, lockouts, throttled
//! attempts, refusals of every layer, revocations, key fetches and store
//! latency, through the `metrics` facade; and, with `[server.tls]`,
//! `authgate_tls_certificate_expiry_timestamp_seconds`, the `notAfter` of
//! the certificate in force (updated by a reload), for an alert well before
//! it comes.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::app::Gateway;

/// The gauge of the TLS certificate's `notAfter`.
const TLS_EXPIRY: &str = "authgate_tls_certificate_expiry_timestamp_seconds";

/// Installs the Prometheus recorder (once per process) and returns the
/// router serving `/metrics`. Each scrape counts the locked accounts first,
/// and states the TLS certificate's expiry in force.
pub fn metrics_router(gateway: &Gateway) -> Result<Router, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("authgate_store_operation_duration_seconds".into()),
            &[
                0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )
        .map_err(|err| format!("metrics: {err}"))?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|err| format!("metrics: {err}"))?;
    crate::observe::describe();
    ::metrics::describe_gauge!(
        TLS_EXPIRY,
        ::metrics::Unit::Seconds,
        "When the TLS certificate in force expires (its notAfter), in Unix seconds."
    );
    let lockout = gateway.lockout().cloned();
    let tls_not_after = gateway.tls_not_after();
    Ok(Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let lockout = lockout.clone();
            if let Some(not_after) = &tls_not_after {
                ::metrics::gauge!(TLS_EXPIRY).set(not_after.load(Ordering::Relaxed) as f64);
            }
            async move {
                if let Some(lockout) = lockout {
                    // A store that cannot answer leaves the gauge as it was.
                    let _ = lockout.locked().await;
                }
                handle.run_upkeep();
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    ))
}
