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
//! Every layer's decision is an event of the target
//! `tower_authgate::decision` (so `RUST_LOG=tower_authgate::decision=debug`
//! shows each request's), with the fields `layer` (`auth`, `space`,
//! `address`, `csrf`, `throttle`), `outcome` (`allowed`, `refused`) and
//! `reason`, and what the layer knows: the token's `source`, `kind`, `alg`,
//! `kid`, `iss` and `sub`, whether the token cache answered (`cached`), the
//! `space`, the `client` address. Values taken from a request are cut to 64
//! characters and recorded with `Debug`, so control characters are escaped.
//!
//! | target | level | when |
//! |---|---|---|
//! | `tower_authgate::decision` | `DEBUG` | a request passes a layer (a token accepted, a space selected, an address allowed, ...) |
//! | `tower_authgate::decision` | `INFO` | an expired access cookie is renewed from the refresh cookie; a request is refused for the client's reasons (`4xx`) |
//! | `tower_authgate::decision` | `WARN` | a request is refused because a store or the keys cannot answer (`503`) |
//! | `tower_authgate::decision` | `ERROR` | a layer is wired wrongly (`500`: no `AuthLayer` before it, another claims type, no peer address) |
//! | `tower_authgate::login` | `INFO` | a login step (`step` `password` or `totp`) succeeded, asked for TOTP, or failed with wrong credentials, a wrong code, an inactive account; a refresh; a token revoked at log-out; a service account created or revoked |
//! | `tower_authgate::login` | `WARN` | a login refused while the account is locked, a TOTP code replayed, a store unavailable or the hashing threads busy; a refresh token reused (with its `family`, which is revoked) |
//! | `tower_authgate::lockout` | `WARN` / `INFO` | an account is locked (`account`, `failures`, `locked_until`) / unlocked by an administrator |
//! | `tower_authgate::token::jwks` | `DEBUG` / `WARN` | a JWK Set fetched (`url`, `keys`) / a fetch failed or a key was skipped (`error`, `reason`) |
//! | `tower_authgate::store::redis` | `INFO` / `WARN` | the revocation listener subscribed / lost its connection |
//! | `tower_authgate::observe` | `WARN` | a store operation failed (`backend`, `operation`, `error`) |
//!
//! Login events carry `preset` (the flow's [name](crate::login::LoginFlow::with_name)),
//! `result` ([`LoginError::kind`](crate::login::LoginError::kind), `success`,
//! `totp_required` or `otp_replayed`), `user` (the username as sent) and
//! `client`.
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

/// A counter whose handle is looked up once, on first use, from the
/// recorder installed then, and kept: the hot paths pay one atomic add, not
/// a registry lookup. (Install the recorder before the first request.)
pub(crate) struct LazyCounter {
    #[cfg(feature = "metrics")]
    handle: std::sync::OnceLock<metrics::Counter>,
    #[cfg(feature = "metrics")]
    register: fn() -> metrics::Counter,
}

/// A `LazyCounter` for `counter!(name, labels...)` (literal name and
/// labels).
#[allow(unused_macros)]
macro_rules! lazy_counter {
    ($name:literal $(, $key:literal => $value:literal)* $(,)?) => {{
        #[cfg(feature = "metrics")]
        let counter =
            $crate::observe::LazyCounter::new(|| ::metrics::counter!($name $(, $key => $value)*));
        #[cfg(not(feature = "metrics"))]
        let counter = $crate::observe::LazyCounter::new();
        counter
    }};
}

#[allow(unused_imports)]
pub(crate) use lazy_counter;

impl LazyCounter {
    #[cfg(feature = "metrics")]
    pub(crate) const fn new(register: fn() -> metrics::Counter) -> Self {
        LazyCounter {
            handle: std::sync::OnceLock::new(),
            register,
        }
    }

    #[cfg(not(feature = "metrics"))]
    pub(crate) const fn new() -> Self {
        LazyCounter {}
    }

    /// Adds one.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn increment(&self) {
        #[cfg(feature = "metrics")]
        self.handle.get_or_init(self.register).increment(1);
    }

    /// Adds `by`.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn increment_by(&self, by: u64) {
        #[cfg(feature = "metrics")]
        self.handle.get_or_init(self.register).increment(by);
        #[cfg(not(feature = "metrics"))]
        let _ = by;
    }
}

impl Clone for LazyCounter {
    /// A clone looks its handle up again: it may live under another
    /// recorder.
    fn clone(&self) -> Self {
        LazyCounter {
            #[cfg(feature = "metrics")]
            handle: std::sync::OnceLock::new(),
            #[cfg(feature = "metrics")]
            register: self.register,
        }
    }
}

impl std::fmt::Debug for LazyCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyCounter")
    }
}

/// A gauge whose handle is looked up once, like [`LazyCounter`].
pub(crate) struct LazyGauge {
    #[cfg(feature = "metrics")]
    handle: std::sync::OnceLock<metrics::Gauge>,
    #[cfg(feature = "metrics")]
    register: fn() -> metrics::Gauge,
}

/// A `LazyGauge` for `gauge!(name)` (literal name).
#[allow(unused_macros)]
macro_rules! lazy_gauge {
    ($name:literal) => {{
        #[cfg(feature = "metrics")]
        let gauge = $crate::observe::LazyGauge::new(|| ::metrics::gauge!($name));
        #[cfg(not(feature = "metrics"))]
        let gauge = $crate::observe::LazyGauge::new();
        gauge
    }};
}

#[allow(unused_imports)]
pub(crate) use lazy_gauge;

impl LazyGauge {
    #[cfg(feature = "metrics")]
    pub(crate) const fn new(register: fn() -> metrics::Gauge) -> Self {
        LazyGauge {
            handle: std::sync::OnceLock::new(),
            register,
        }
    }

    #[cfg(not(feature = "metrics"))]
    pub(crate) const fn new() -> Self {
        LazyGauge {}
    }

    /// Adds `by` (negative to subtract).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn add(&self, by: i64) {
        #[cfg(feature = "metrics")]
        {
            let gauge = self.handle.get_or_init(self.register);
            if by >= 0 {
                gauge.increment(by as f64);
            } else {
                gauge.decrement(by.unsigned_abs() as f64);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = by;
    }
}

impl std::fmt::Debug for LazyGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyGauge")
    }
}

/// What a layer knows of a request, for the event of its decision.
#[derive(Clone, Copy, Default)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct Seen<'a> {
    /// The credential, read for its `alg`, `kid` and `iss` only when the
    /// event is recorded (never shown itself).
    pub(crate) token: Option<&'a [u8]>,
    pub(crate) source: Option<crate::token::FoundIn>,
    pub(crate) space: Option<&'a str>,
    pub(crate) client: Option<std::net::IpAddr>,
}

impl Seen<'_> {
    /// The client address an [`IpFilterLayer`](crate::ip::IpFilterLayer)
    /// before this layer resolved, if one did.
    pub(crate) fn client_of(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
        extensions
            .get::<crate::ip::ClientIp>()
            .map(|client| client.0)
    }
}

/// The target of every layer's decision events: `RUST_LOG=tower_authgate::decision=debug`
/// shows every request's.
#[cfg(feature = "tracing")]
pub(crate) const DECISION: &str = "tower_authgate::decision";

/// Counts and reports a refusal: `INFO` for the client's fault, `WARN` when
/// a store or the keys cannot answer (`503`), `ERROR` for a wiring mistake
/// (`500`).
pub(crate) fn refused(rejection: &crate::reject::Rejection, seen: Seen<'_>) {
    count!(
        "authgate_requests_total",
        "layer" => rejection.layer(),
        "outcome" => "refused",
        "reason" => rejection.reason()
    );
    // The token is read for the event only when it is recorded.
    #[cfg(feature = "tracing")]
    if refusal_recorded(rejection.status()) {
        let peeked = seen
            .token
            .map(crate::token::verifier::peek)
            .unwrap_or_default();
        macro_rules! refusal {
            ($level:ident) => {
                tracing::$level!(
                    target: "tower_authgate::decision",
                    layer = rejection.layer(),
                    outcome = "refused",
                    reason = rejection.reason(),
                    status = rejection.status().as_u16(),
                    source = seen.source.map(crate::token::FoundIn::as_str),
                    space = seen.space.map(shown),
                    client = seen.client.map(tracing::field::display),
                    alg = peeked.alg.as_deref().map(tracing::field::debug),
                    kid = peeked.kid.as_deref().map(tracing::field::debug),
                    iss = peeked.iss.as_deref().map(tracing::field::debug),
                    "{}",
                    rejection.message()
                )
            };
        }
        match rejection.status().as_u16() {
            500 => refusal!(error),
            503 => refusal!(warn),
            _ => refusal!(info),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = seen;
}

/// Whether the event of a refusal with `status` is recorded (at `error`
/// for a `500`, `warn` for a `503`, `info` otherwise), so that a layer
/// looks for what it would show only then.
#[inline]
pub(crate) fn refusal_recorded(_status: http::StatusCode) -> bool {
    #[cfg(feature = "tracing")]
    {
        match _status.as_u16() {
            500 => tracing::enabled!(target: "tower_authgate::decision", tracing::Level::ERROR),
            503 => tracing::enabled!(target: "tower_authgate::decision", tracing::Level::WARN),
            _ => tracing::enabled!(target: "tower_authgate::decision", tracing::Level::INFO),
        }
    }
    #[cfg(not(feature = "tracing"))]
    false
}

/// A value taken from a request, for an event: at most 64 characters,
/// recorded with `Debug` (quoted, control characters escaped).
#[cfg(feature = "tracing")]
pub(crate) fn shown(text: &str) -> tracing::field::DebugValue<&str> {
    let end = text
        .char_indices()
        .nth(64)
        .map_or(text.len(), |(end, _)| end);
    tracing::field::debug(&text[..end])
}
