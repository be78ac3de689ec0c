//! Remote keys (feature `jwks`): a JWK Set fetched from an identity provider
//! (Auth0, Keycloak, Entra, Cognito, …) over HTTPS, cached, and refreshed.
//!
//! [`JwksSource`] is a [`KeySource`]: the verifier reads the cached key set
//! on every token (an `Arc` clone, no lock, no I/O), and fetching happens
//! elsewhere:
//!
//! - in the background, every [`refresh_interval`](JwksConfig::refresh_interval)
//!   or sooner when the provider's `Cache-Control: max-age` says so;
//! - once when a token names an unknown `kid` (a rotation), at most once per
//!   [`min_refetch_interval`](JwksConfig::min_refetch_interval), so random
//!   `kid`s cannot cause a refetch storm; concurrent misses share one fetch.
//!
//! When the provider is down, the last good key set keeps serving until it is
//! [`max_staleness`](JwksConfig::max_staleness) old; then tokens are answered
//! `503` (the keys are unavailable) rather than judged with stale keys. Keys
//! whose type, curve or use do not fit are skipped with a logged reason.
//!
//! The location is a JWK Set URL, or an issuer whose
//! `/.well-known/openid-configuration` names it (OpenID Connect Discovery;
//! the document's `issuer` must equal the configured one).
//!
//! ```no_run
//! use std::sync::Arc;
//! use tower_authgate::token::jwks::{JwksConfig, JwksSource};
//! use tower_authgate::token::Verifier;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let source = JwksSource::discover("https://example.eu.auth0.com/", JwksConfig::default())?;
//! source.start()?; // first fetch now, then in the background
//! let verifier = Verifier::builder_with_source(Arc::new(source))
//!     .issuer("https://example.eu.auth0.com/")
//!     .audience("https://api.example.com")
//!     .any_kind()
//!     .build()?;
//! # let _ = verifier;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::Shared;

use crate::BoxFuture;
use crate::TokenError;
use crate::error::ConfigError;
use crate::token::keys::{KeySet, KeySource};

/// How a [`JwksSource`] fetches and caches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksConfig {
    /// Refresh this often at the latest (default 5 minutes).
    pub refresh_interval: Duration,
    /// Refetch for an unknown `kid` at most this often, and never refresh
    /// more often than this whatever `max-age` says (default 30 s).
    pub min_refetch_interval: Duration,
    /// Serve the last good key set this long after it was fetched while the
    /// provider is down (default 24 hours).
    pub max_staleness: Duration,
    /// Give up on a fetch after this long (default 5 s).
    pub timeout: Duration,
    /// The largest document accepted (default 1 MiB).
    pub max_document_bytes: usize,
}

impl JwksConfig {
    /// With `refresh_interval` set to `refresh_interval`.
    pub fn with_refresh_interval(mut self, refresh_interval: Duration) -> Self {
        self.refresh_interval = refresh_interval;
        self
    }

    /// With `min_refetch_interval` set to `min_refetch_interval`.
    pub fn with_min_refetch_interval(mut self, min_refetch_interval: Duration) -> Self {
        self.min_refetch_interval = min_refetch_interval;
        self
    }

    /// With `max_staleness` set to `max_staleness`.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// With `timeout` set to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With `max_document_bytes` set to `max_document_bytes`.
    pub fn with_max_document_bytes(mut self, max_document_bytes: usize) -> Self {
        self.max_document_bytes = max_document_bytes;
        self
    }
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            max_staleness: Duration::from_secs(86_400),
            timeout: Duration::from_secs(5),
            max_document_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone)]
enum Location {
    JwksUrl(String),
    Discovery { issuer: String },
}

type SharedFetch = Shared<BoxFuture<'static, ()>>;

struct Inner {
    location: Location,
    config: JwksConfig,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When the last good set was fetched; `None` before the first.
    fetched_at: Mutex<Option<Instant>>,
    /// The `max-age` of the last good answer.
    max_age: Mutex<Option<Duration>>,
    /// When the last refetch for an unknown `kid` started.
    last_miss_fetch: Mutex<Option<Instant>>,
    in_flight: Mutex<Option<SharedFetch>>,
    /// The outcome of the last fetch.
    last_error: Mutex<Option<JwksError>>,
    fetches: AtomicU64,
    /// Bumped whenever a new key set is stored.
    generation: AtomicU64,
}

/// A JWK Set fetched from a URL or by discovery, cached and refreshed. Cheap
/// to clone.
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("location", &self.inner.location)
            .field("config", &self.inner.config)
            .field("keys", &self.inner.keys.load().keys().len())
            .finish()
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JWK Set fetch failed: {0}")]
pub struct JwksError(pub String);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))?
    })
}

impl JwksSource {
    /// A source for the JWK Set at `url`. Nothing is fetched yet: call
    /// [`start`](Self::start) or [`refresh`](Self::refresh).
    pub fn from_url(url: &str, config: JwksConfig) -> Result<Self, ConfigError> {
        Self::new(Location::JwksUrl(Self::check_url(url)?), config)
    }

    /// A source for the JWK Set named by `issuer`'s
    /// `/.well-known/openid-configuration`.
    pub fn discover(issuer: &str, config: JwksConfig) -> Result<Self, ConfigError> {
        Self::check_url(issuer)?;
        Self::new(
            Location::Discovery {
                issuer: issuer.to_owned(),
            },
            config,
        )
    }

    fn check_url(url: &str) -> Result<String, ConfigError> {
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "https" | "http") => Ok(url.to_owned()),
            _ => Err(ConfigError::InvalidUrl(url.to_owned())),
        }
    }

    fn new(location: Location, config: JwksConfig) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(JwksSource {
            inner: Arc::new(Inner {
                location,
                config,
                client,
                keys: ArcSwap::from_pointee(KeySet::empty()),
                fetched_at: Mutex::new(None),
                max_age: Mutex::new(None),
                last_miss_fetch: Mutex::new(None),
                in_flight: Mutex::new(None),
                last_error: Mutex::new(None),
                fetches: AtomicU64::new(0),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Starts the background refresh (the first fetch happens at once). It
    /// stops when the last clone of this source is dropped. Call it inside a
    /// Tokio runtime.
    pub fn start(&self) -> Result<(), ConfigError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::NoRuntime("JwksSource::start"))?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let source = JwksSource { inner };
                let _ = source.refresh().await;
                let wait = source.next_refresh_in();
                drop(source);
                tokio::time::sleep(wait).await;
            }
        });
        Ok(())
    }

    fn next_refresh_in(&self) -> Duration {
        let config = &self.inner.config;
        let age = *lock(&self.inner.max_age);
        let fetched = lock(&self.inner.fetched_at).is_some();
        if !fetched {
            // Provider down from the start: retry at the miss pace.
            return config.min_refetch_interval;
        }
        age.map_or(config.refresh_interval, |age| {
            age.min(config.refresh_interval)
        })
        .max(config.min_refetch_interval)
    }

    /// Fetches now (sharing a fetch already under way), and replaces the
    /// cached key set when the answer is good. A failed fetch keeps the last
    /// good set.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let shared = {
            let mut in_flight = lock(&self.inner.in_flight);
            match in_flight.as_ref() {
                Some(fetch) => fetch.clone(),
                None => {
                    let source = self.clone();
                    let fetch: BoxFuture<'static, ()> = Box::pin(async move {
                        let result = source.fetch_once().await;
                        match &result {
                            Ok(()) => {
                                crate::observe::count!("authgate_jwks_fetches_total", "result" => "success");
                            }
                            Err(_err) => {
                                crate::observe::count!("authgate_jwks_fetches_total", "result" => "failure");
                                crate::observe::event!(
                                    warn,
                                    error = %_err,
                                    "JWK Set fetch failed; keeping the last good keys"
                                );
                            }
                        }
                        *lock(&source.inner.in_flight) = None;
                        *lock(&source.inner.last_error) = result.err();
                    });
                    let fetch = fetch.shared();
                    *in_flight = Some(fetch.clone());
                    fetch
                }
            }
        };
        shared.await;
        match lock(&self.inner.last_error).clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    async fn get(&self, url: &str) -> Result<(reqwest::header::HeaderMap, Vec<u8>), JwksError> {
        let response = self
            .inner
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| JwksError(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(JwksError(format!("{url}: HTTP {}", response.status())));
        }
        let limit = self.inner.config.max_document_bytes;
        if response
            .content_length()
            .is_some_and(|len| len as usize > limit)
        {
            return Err(JwksError(format!("{url}: document over {limit} bytes")));
        }
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| JwksError(format!("{url}: {e}")))?;
        if body.len() > limit {
            return Err(JwksError(format!("{url}: document over {limit} bytes")));
        }
        Ok((headers, body.to_vec()))
    }

    async fn jwks_url(&self) -> Result<String, JwksError> {
        match &self.inner.location {
            Location::JwksUrl(url) => Ok(url.clone()),
            Location::Discovery { issuer } => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let (_, body) = self.get(&url).await?;
                #[derive(serde::Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let document: Discovery = serde_json::from_slice(&body)
                    .map_err(|e| JwksError(format!("{url}: not a discovery document: {e}")))?;
                // OpenID Connect Discovery 1.0 §4.3: the issuer must match.
                if document.issuer != *issuer {
                    return Err(JwksError(format!(
                        "{url}: the document names issuer {:?}, not {issuer:?}",
                        document.issuer
                    )));
                }
                Self::check_url(&document.jwks_uri).map_err(|e| JwksError(e.to_string()))
            }
        }
    }

    async fn fetch_once(&self) -> Result<(), JwksError> {
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let url = self.jwks_url().await?;
        let (headers, body) = self.get(&url).await?;
        let text =
            std::str::from_utf8(&body).map_err(|_| JwksError(format!("{url}: not UTF-8")))?;
        let (keys, skipped) =
            KeySet::from_jwks_json_lenient(text).map_err(|e| JwksError(format!("{url}: {e}")))?;
        for _reason in &skipped {
            crate::observe::event!(warn, %url, reason = %_reason, "JWK skipped");
        }
        if keys.keys().is_empty() {
            return Err(JwksError(format!("{url}: no usable key")));
        }
        crate::observe::gauge!("authgate_jwks_keys", set(keys.keys().len()));
        crate::observe::event!(debug, %url, keys = keys.keys().len(), "JWK Set fetched");
        self.inner.keys.store(Arc::new(keys));
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        *lock(&self.inner.fetched_at) = Some(Instant::now());
        *lock(&self.inner.max_age) = max_age(&headers);
        Ok(())
    }

    /// How many fetches were attempted (discovery and JWK Set count as one).
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }
}

impl KeySource for JwksSource {
    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    fn current(&self) -> Result<Arc<KeySet>, TokenError> {
        match *lock(&self.inner.fetched_at) {
            Some(at) if at.elapsed() <= self.inner.config.max_staleness => {
                Ok(self.inner.keys.load_full())
            }
            _ => Err(TokenError::KeysUnavailable),
        }
    }

    fn refresh_for_unknown_key(&self) -> Option<BoxFuture<'static, ()>> {
        {
            // A fetch under way: wait for it rather than start another.
            if let Some(fetch) = lock(&self.inner.in_flight).as_ref() {
                let fetch = fetch.clone();
                return Some(Box::pin(fetch));
            }
            let mut last = lock(&self.inner.last_miss_fetch);
            if last.is_some_and(|at| at.elapsed() < self.inner.config.min_refetch_interval) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let source = self.clone();
        Some(Box::pin(async move {
            let _ = source.refresh().await;
        }))
    }
}
