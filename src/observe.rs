//! What the crate tells an operator: tracing events for every decision and
//! metrics through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Both are optional: feature `tracing` (on by default) emits events
//! through [`tracing`](https://docs.rs/tracing), feature `metrics` (off by
//! default) records through whatever `metrics` recorder the application
//! installs (`metrics-exporter-prometheus`, StatsD, ...). Without the
//! features the calls compile to nothing.
//!
//! No event field and no metric label ever holds a token, a password, a
//! one-time code, a secret or key material. Metric labels take a small,
//! fixed set of values (never a username, a token id or an address); events
//! name the account and the client address, which metrics do not.
//!
//! # Events
//!
//! | target | level | when | fields |
//! |---|---|---|---|
//! | `tower_authgate::auth` | `DEBUG` | a token is accepted | `outcome`, `source`, `kind`, `alg`, `kid`, `iss`, `cached` |
//! | `tower_authgate::auth` | `DEBUG` | an optional route is reached without a token | `outcome = "anonymous"` |
//! | `tower_authgate::auth` | `INFO` | an expired access cookie is renewed | `outcome = "renewed"` |
//! | every layer | `INFO` | a request is refused (`4xx`) | `layer`, `outcome = "refused"`, `reason`, `status`, and what the layer knows (`source`, `space`, `client`) |
//! | every layer | `WARN` | a request is refused because a store or the keys cannot answer (`503`) | as above |
//! | every layer | `ERROR` | a layer is wired wrongly (`500`: no `AuthLayer` before it, another claims type) | as above |
//! | `tower_authgate::tenant` | `DEBUG` | a space is selected | `space`, `defaulted` |
//! | `tower_authgate::ip` | `DEBUG` | an address passes the filter | `client` |
//! | `tower_authgate::login` | `INFO` | login succeeded, TOTP asked, TOTP accepted, refresh, revocation, service account created or revoked | `preset`, `user`, `result`, and `family` or `id` where there is one |
//! | `tower_authgate::login` | `INFO` | login failed (wrong password, unknown user, wrong code) | `preset`, `user`, `result`, `client` |
//! | `tower_authgate::login` | `WARN` | a refresh token was reused (its family is revoked), a TOTP step replayed, a login refused while locked | `preset`, `user`, `family` |
//! | `tower_authgate::lockout` | `WARN` / `INFO` | an account is locked / unlocked by an administrator | `account`, `failures`, `locked_until` |
//! | `tower_authgate::throttle` | `INFO` | a login attempt is throttled | `client`, `retry_after` |
//! | `tower_authgate::token::jwks` | `DEBUG` / `WARN` | keys fetched / a fetch failed or a key was skipped | `url`, `keys`, `error` |
//! | `tower_authgate::store::redis` | `WARN` | a Redis operation failed | `operation`, `error` |
//!
//! # Metrics
//!
//! | name | type | labels |
//! |---|---|---|
//! | `authgate_requests_total` | counter | `layer` (`auth`, `space`, `address`, `csrf`, `throttle`), `outcome` (`allowed`, `refused`), `reason` ([`Rejection::reason`](crate::reject::Rejection::reason) when refused; `verified`, `anonymous`, `renewed` or `ok` when allowed) |
//! | `authgate_token_cache_hits_total`, `authgate_token_cache_misses_total`, `authgate_token_cache_evictions_total` | counter | |
//! | `authgate_token_cache_entries` | gauge | |
//! | `authgate_lockouts_total` | counter | |
//! | `authgate_locked_accounts` | gauge (set each time the locked accounts are listed, see [`Lockout::locked`](crate::lockout::Lockout::locked)) | |
//! | `authgate_throttled_total` | counter | |
//! | `authgate_logins_total` | counter | `preset`, `result` (`success`, `totp_required`, and the failures of [`LoginError::kind`](crate::login::LoginError::kind)) |
//! | `authgate_refreshes_total` | counter | `preset`, `result` (`rotated`, `renewed`, or a failure) |
//! | `authgate_refresh_reuse_total` | counter | `preset` |
//! | `authgate_store_operation_duration_seconds` | histogram | `backend` (`redis`), `operation` |
//! | `authgate_store_errors_total` | counter | `backend`, `operation` |
//! | `authgate_jwks_fetches_total` | counter | `result` (`success`, `failure`) |
//! | `authgate_jwks_keys` | gauge | |
//!
//! Call [`describe`] once after installing the recorder to give every
//! metric its help text and unit. In-memory stores answer in nanoseconds
//! and cannot fail, so only the Redis store's operations are timed.

/// Every metric this crate records, by name.
pub const METRIC_NAMES: &[&str] = &[
    "authgate_requests_total",
    "authgate_token_cache_hits_total",
    "authgate_token_cache_misses_total",
    "authgate_token_cache_evictions_total",
    "authgate_token_cache_entries",
    "authgate_lockouts_total",
    "authgate_locked_accounts",
    "authgate_throttled_total",
    "authgate_logins_total",
    "authgate_refreshes_total",
    "authgate_refresh_reuse_total",
    "authgate_store_operation_duration_seconds",
    "authgate_store_errors_total",
    "authgate_jwks_fetches_total",
    "authgate_jwks_keys",
];

/// Gives every metric of this crate its description and unit, through the
/// recorder installed now (call it after installing one).
///
/// ```
/// let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
/// let scrape = recorder.handle();
/// metrics::with_local_recorder(&recorder, || {
///     tower_authgate::observe::describe();
///     metrics::counter!("authgate_lockouts_total").increment(1);
/// });
/// assert!(scrape.render().contains(
///     "# HELP authgate_lockouts_total Accounts locked after too many failed logins."
/// ));
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "authgate_requests_total",
            "Decisions of the guard layers, by layer, outcome and reason."
        );
        describe_counter!(
            "authgate_token_cache_hits_total",
            "Tokens answered from the verifier's cache of verified tokens."
        );
        describe_counter!(
            "authgate_token_cache_misses_total",
            "Tokens verified in full (not in the cache)."
        );
        describe_counter!(
            "authgate_token_cache_evictions_total",
            "Entries dropped from the token cache to make room."
        );
        describe_gauge!(
            "authgate_token_cache_entries",
            "Verified tokens held in the token caches."
        );
        describe_counter!(
            "authgate_lockouts_total",
            "Accounts locked after too many failed logins."
        );
        describe_gauge!(
            "authgate_locked_accounts",
            "Accounts locked when they were last listed."
        );
        describe_counter!(
            "authgate_throttled_total",
            "Login attempts refused by the per-address throttle."
        );
        describe_counter!(
            "authgate_logins_total",
            "Password and TOTP login steps, by preset and result."
        );
        describe_counter!(
            "authgate_refreshes_total",
            "Refresh-token exchanges, by preset and result."
        );
        describe_counter!(
            "authgate_refresh_reuse_total",
            "Used refresh tokens presented again (their login session is ended)."
        );
        describe_histogram!(
            "authgate_store_operation_duration_seconds",
            Unit::Seconds,
            "Time a shared store took to answer, by backend and operation."
        );
        describe_counter!(
            "authgate_store_errors_total",
            "Store operations that failed, by backend and operation."
        );
        describe_counter!(
            "authgate_jwks_fetches_total",
            "Fetches of an identity provider's JWK Set, by result."
        );
        describe_gauge!("authgate_jwks_keys", "Keys in the JWK Set fetched last.");
    }
}

/// A tracing event when feature `tracing` is on; nothing otherwise. The
/// first argument is the level's macro (`debug`, `info`, `warn`, `error`).
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        ::tracing::$level!($($arg)+);
    }};
}

pub(crate) use event;

/// Adds one to a counter when feature `metrics` is on. The name must be a
/// literal: the key is then built at compile time.
#[allow(unused_macros)]
macro_rules! count {
    ($name:literal $(, $key:literal => $value:expr)* $(,)?) => {{
        #[cfg(feature = "metrics")]
        ::metrics::counter!($name $(, $key => $value)*).increment(1);
        #[cfg(not(feature = "metrics"))]
        {
            $(let _ = $value;)*
        }
    }};
}

#[allow(unused_imports)]
pub(crate) use count;

/// Sets, raises or lowers a gauge when feature `metrics` is on.
#[allow(unused_macros)]
macro_rules! gauge {
    ($name:literal, $op:ident($value:expr)) => {{
        #[cfg(feature = "metrics")]
        ::metrics::gauge!($name).$op($value as f64);
    }};
}

#[allow(unused_imports)]
pub(crate) use gauge;

/// Records how long `operation` of a store `backend` took.
#[cfg(feature = "redis")]
pub(crate) fn store_operation_took(
    backend: &'static str,
    operation: &'static str,
    elapsed: std::time::Duration,
) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(
        "authgate_store_operation_duration_seconds",
        "backend" => backend,
        "operation" => operation
    )
    .record(elapsed.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, operation, elapsed);
}

/// Counts and reports a failed `operation` of a store `backend`.
#[cfg(feature = "redis")]
pub(crate) fn store_operation_failed(
    backend: &'static str,
    operation: &'static str,
    error: &dyn std::fmt::Display,
) {
    count!(
        "authgate_store_errors_total",
        "backend" => backend,
        "operation" => operation
    );
    event!(warn, backend, operation, %error, "store operation failed");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
}
