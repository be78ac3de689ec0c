//! The configuration file: its TOML form, read with `serde` and `toml`, and
//! the checks that turn it into [`Settings`] before anything is served.
//!
//! Every error names the file, the line and the key at fault
//! ([`ConfigFileError`]): unknown keys, wrong types and missing keys are
//! found by the parser (whose spans give the line), and values that parse
//! but cannot be honoured (a bad CIDR, an unknown preset, a key file that
//! cannot be read, an unreadable users file) by the checks here, through
//! the spans `toml` keeps for each value.
//!
//! Two more kinds of check run here: routes that would meet (the decision
//! endpoint's path, `/healthz`, `/metrics` and every login preset's paths
//! under its prefix must be distinct, and the decision endpoint's path and
//! the prefixes plain: letters, digits, `-._~` and `/`), and the known
//! holes a file may open, which start only when `[server] accept_risks`
//! names them ([`risks`](super::risks)).

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, Method, Uri};
use serde::Deserialize;
use toml::Spanned;

use super::tls;
use crate::authz::{Rule, RuleDefault, Rules};
use crate::ip::{IpRanges, IpRules};
use crate::token::{Algorithm, SigningKey, VerifyingKey};

/// A configuration file that cannot be honoured: the file, the line, the key
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    file: PathBuf,
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

impl ConfigFileError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigFileError {
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error about `key` at `line` of `file`.
    pub(crate) fn at(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigFileError {
            file: file.to_owned(),
            line,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// The file the error is in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The line (from 1) of the value at fault, when one is.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The key at fault (`guard.ip_deny`), when one is.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Why the value was refused.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// The text of a configuration file, for turning byte spans into lines.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error about the value at `span`, under `key`.
    pub(crate) fn error(
        &self,
        key: impl Into<String>,
        span: &Range<usize>,
        message: impl fmt::Display,
    ) -> ConfigFileError {
        ConfigFileError {
            file: self.path.to_owned(),
            line: Some(self.line_of(span)),
            key: Some(key.into()),
            message: message.to_string(),
        }
    }

    /// An error about `key`, which is absent (no line to point at).
    pub(crate) fn missing(&self, key: &str, message: impl fmt::Display) -> ConfigFileError {
        ConfigFileError {
            file: self.path.to_owned(),
            line: None,
            key: Some(key.to_owned()),
            message: message.to_string(),
        }
    }

    /// A path in the file, relative to the file's folder.
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(path)
        }
    }

    fn parse_error(&self, err: &toml::de::Error) -> ConfigFileError {
        let line = err.span().map(|span| self.line_of(&span));
        // The parser names unknown and missing keys itself; for a value of
        // the wrong type the line's text shows which key it was.
        let key = err
            .span()
            .and_then(|span| self.text[span.start.min(self.text.len())..].lines().next())
            .and_then(|rest| {
                let line_start = self.text[..err.span()?.start.min(self.text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                let line_text = self.text[line_start..].lines().next().unwrap_or(rest);
                line_text
                    .split_once('=')
                    .map(|(key, _)| key.trim().to_owned())
            })
            .filter(|key| !key.is_empty() && !key.starts_with('['));
        ConfigFileError {
            file: self.path.to_owned(),
            line,
            key,
            message: err.message().trim().to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------
// The file's form.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    pub(crate) upstream: Option<RawUpstream>,
    pub(crate) keys: Option<RawKeys>,
    pub(crate) users: Option<RawUsers>,
    #[serde(default)]
    pub(crate) login: Vec<RawLogin>,
    pub(crate) external_login: Option<RawExternalLogin>,
    #[serde(default)]
    pub(crate) lockout: RawLockout,
    #[serde(default)]
    pub(crate) throttle: RawThrottle,
    pub(crate) redis: Option<RawRedis>,
    #[serde(default)]
    pub(crate) guard: RawGuard,
    #[serde(default)]
    pub(crate) identity: RawIdentity,
    #[serde(default)]
    pub(crate) verify: RawVerify,
    #[serde(default)]
    pub(crate) log: RawLog,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) authz: Option<RawAuthz>,
    /// `[[rule]]` tables, in order.
    #[serde(default)]
    pub(crate) rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthz {
    /// What a request no rule matches gets: `"authenticated"` or `"deny"`.
    pub(crate) default: Option<Spanned<String>>,
    /// Cedar policies every request a rule lets through (public rules
    /// aside) must also satisfy (feature `cedar`), and their schema.
    pub(crate) cedar: Option<Spanned<String>>,
    pub(crate) cedar_schema: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) path: Spanned<String>,
    pub(crate) methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) roles: Option<Spanned<Vec<String>>>,
    pub(crate) scopes: Option<Spanned<Vec<String>>>,
    pub(crate) public: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) development: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
    /// Known holes the operator accepts by name (see [`super::risks`]).
    #[serde(default)]
    pub(crate) accept_risks: Vec<Spanned<String>>,
    pub(crate) shutdown_grace: Option<Spanned<String>>,
    pub(crate) header_read_timeout: Option<Spanned<String>>,
    pub(crate) worker_threads: Option<Spanned<usize>>,
    // What a client may hold: connections, body read time, WebSockets.
    pub(crate) first_byte_timeout: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<usize>>,
    pub(crate) max_connections_per_client: Option<Spanned<usize>>,
    pub(crate) max_request_headers_kib: Option<Spanned<usize>>,
    pub(crate) http2_max_concurrent_streams: Option<Spanned<usize>>,
    pub(crate) body_read_timeout: Option<Spanned<String>>,
    pub(crate) websocket_max_lifetime: Option<Spanned<String>>,
    pub(crate) websocket_revocation_check: Option<Spanned<String>>,
    /// TLS termination (`[server.tls]`).
    pub(crate) tls: Option<RawTls>,
    /// HTTP/2 with prior knowledge on a plain listener.
    pub(crate) h2c: Option<Spanned<bool>>,
}

/// `[server.tls]`: the certificate chain and key, PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) url: Spanned<String>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    /// `http1` (default), `h2c` or `h2`.
    pub(crate) protocol: Option<Spanned<String>>,
    /// The CA certificates an `https://` upstream is verified against.
    pub(crate) ca: Option<Spanned<String>>,
    /// Idle HTTP/1.1 connections kept for reuse.
    pub(crate) idle_connections: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    pub(crate) signing_key: Spanned<String>,
    pub(crate) algorithm: Option<Spanned<String>>,
    pub(crate) kid: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) verify: Vec<RawVerifyingKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerifyingKey {
    pub(crate) file: Spanned<String>,
    pub(crate) algorithm: Spanned<String>,
    pub(crate) kid: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUsers {
    pub(crate) file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogin {
    pub(crate) preset: Spanned<String>,
    #[serde(default)]
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) issuer: Option<Spanned<String>>,
    pub(crate) access_seconds: Option<Spanned<u64>>,
    pub(crate) refresh_seconds: Option<Spanned<u64>>,
    /// `cookie_session`: `__Host-` cookie names.
    #[serde(default)]
    pub(crate) host_prefix: Option<Spanned<bool>>,
    /// `x_auth_token`: the deprecated `GET /api/v1/login`.
    #[serde(default)]
    pub(crate) deprecated_get: Option<Spanned<bool>>,
    /// `x_auth_token`: sign with a key made at start (tokens void on restart).
    #[serde(default)]
    pub(crate) restart_scoped_key: Option<Spanned<bool>>,
    /// `pascal_case`: the refresh lifetime of `KeepLoggedIn`.
    pub(crate) keep_logged_in_seconds: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExternalLogin {
    pub(crate) issuer: Spanned<String>,
    pub(crate) audience: Spanned<String>,
    pub(crate) jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) allowed_subjects: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLockout {
    pub(crate) enabled: Option<Spanned<bool>>,
    pub(crate) attempts: Option<Spanned<u32>>,
    pub(crate) window: Option<Spanned<String>>,
    pub(crate) lock: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) per_address: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThrottle {
    pub(crate) per_minute: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub(crate) url: Spanned<String>,
    pub(crate) prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    pub(crate) issuers: Option<Vec<Spanned<String>>>,
    pub(crate) token_sources: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) ip_allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) ip_deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) trusted_origins: Vec<Spanned<String>>,
    pub(crate) space_header: Option<Spanned<String>>,
    pub(crate) default_space: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) public_paths: Vec<Spanned<String>>,
    pub(crate) errors: Option<Spanned<String>>,
    pub(crate) realm: Option<Spanned<String>>,
    pub(crate) token_cache: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub(crate) subject: Option<Spanned<String>>,
    pub(crate) roles: Option<Spanned<String>>,
    pub(crate) spaces: Option<Spanned<String>>,
    pub(crate) space: Option<Spanned<String>>,
    pub(crate) claims: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    pub(crate) path: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) level: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// The checked form.

/// The five login presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PresetKind {
    CookieSession,
    BearerPair,
    PascalCase,
    AuthToken,
    XAuthToken,
}

impl PresetKind {
    pub(crate) const NAMES: [&'static str; 5] = [
        "cookie_session",
        "bearer_pair",
        "pascal_case",
        "auth_token",
        "x_auth_token",
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "cookie_session" => PresetKind::CookieSession,
            "bearer_pair" => PresetKind::BearerPair,
            "pascal_case" => PresetKind::PascalCase,
            "auth_token" => PresetKind::AuthToken,
            "x_auth_token" => PresetKind::XAuthToken,
            _ => return None,
        })
    }
}

/// One login preset as configured.
#[derive(Debug, Clone)]
pub(crate) struct LoginSettings {
    pub(crate) preset: PresetKind,
    pub(crate) prefix: String,
    pub(crate) issuer: String,
    pub(crate) access_seconds: Option<u64>,
    pub(crate) refresh_seconds: Option<u64>,
    pub(crate) host_prefix: bool,
    pub(crate) deprecated_get: bool,
    pub(crate) restart_scoped_key: bool,
    pub(crate) keep_logged_in_seconds: Option<u64>,
}

/// The identity provider whose tokens log users in (`bearer_pair`).
#[derive(Debug, Clone)]
// Without the `jwks` feature such a file is refused before these are read.
#[cfg_attr(not(feature = "jwks"), allow(dead_code))]
pub(crate) struct ExternalLoginSettings {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) jwks_url: Option<String>,
    pub(crate) allowed_subjects: Vec<String>,
}

/// What one client may hold (`[server]`): open connections, the time to
/// send a login body, the life of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionSettings {
    /// How long a new connection may take to send its first byte
    /// (`first_byte_timeout`, default the header read timeout, which covers
    /// it anyway); at most the header read timeout.
    pub(crate) first_byte_timeout: Option<Duration>,
    /// Open connections at once (`max_connections`, default 768).
    pub(crate) max_connections: usize,
    /// Open connections from one client address (`max_connections_per_client`,
    /// default 64; trusted proxies are not counted against it).
    pub(crate) max_connections_per_client: usize,
    /// The largest request head, in bytes (`max_request_headers_kib`,
    /// default 16 KiB): the request line and header fields of an HTTP/1
    /// request, the decoded header list of an HTTP/2 one.
    pub(crate) max_request_headers: usize,
    /// Streams one HTTP/2 connection may have open at once
    /// (`http2_max_concurrent_streams`, default 128).
    pub(crate) http2_max_concurrent_streams: u32,
    /// How long a login route waits for the whole body (`body_read_timeout`,
    /// default 10 s).
    pub(crate) body_read_timeout: Duration,
    /// The longest a proxied WebSocket stays open (`websocket_max_lifetime`,
    /// default 1 h); one with a token closes at the token's `exp` if sooner.
    pub(crate) websocket_max_lifetime: Duration,
    /// How often an open WebSocket's token is checked against the revocations
    /// (`websocket_revocation_check`, default 10 s).
    pub(crate) websocket_revocation_check: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            first_byte_timeout: None,
            max_connections: 768,
            max_connections_per_client: 64,
            max_request_headers: super::serve::DEFAULT_MAX_REQUEST_HEADERS,
            http2_max_concurrent_streams: super::serve::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            body_read_timeout: Duration::from_secs(10),
            websocket_max_lifetime: Duration::from_secs(3600),
            websocket_revocation_check: Duration::from_secs(10),
        }
    }
}

/// Where the upstream is and how long it may take.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    pub(crate) url: Uri,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    /// HTTP/2 rather than HTTP/1.1 (`protocol = "h2c"` or `"h2"`).
    pub(crate) http2: bool,
    /// For an `https://` upstream: how its certificate is verified.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// Idle HTTP/1.1 connections kept for reuse (`idle_connections`).
    pub(crate) idle_connections: usize,
}

/// `[server.tls]`, checked: the files and the configuration they make.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The certificate's `notAfter`, Unix seconds.
    pub(crate) not_after: i64,
}

/// How a refusal of the guard is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorStyle {
    Json,
    Empty,
    Inscada,
    Core,
    Nx,
    RegScale,
    Workflow,
    /// gRPC's trailers-only answer (`200`, `grpc-status`, `grpc-message`).
    Grpc,
}

/// The names of the identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityHeaders {
    pub(crate) subject: HeaderName,
    pub(crate) roles: HeaderName,
    pub(crate) spaces: HeaderName,
    pub(crate) space: HeaderName,
    pub(crate) claims: Option<HeaderName>,
}

impl IdentityHeaders {
    /// Every configured name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.subject, &self.roles, &self.spaces, &self.space]
            .into_iter()
            .chain(self.claims.as_ref())
    }
}

/// A token source of the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceSetting {
    Bearer,
    Cookie(String),
    Header(HeaderName),
}

/// Everything the IP filter reloads on `SIGHUP`, and the keys the guard
/// accepts beside the signing key's (`[[keys.verify]]`): the signing key
/// itself is the one the running presets sign with, kept until a restart.
#[derive(Clone)]
pub(crate) struct Reloadable {
    pub(crate) ip_rules: IpRules,
    pub(crate) verifying_keys: Vec<VerifyingKey>,
}

/// A configuration file, checked: every value parsed, every file read.
#[derive(Clone)]
pub struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) development: bool,
    /// TLS termination: requests are `https`.
    pub(crate) tls: Option<TlsSettings>,
    /// HTTP/2 with prior knowledge on a plain listener.
    pub(crate) h2c: bool,
    pub(crate) trusted_proxies: IpRanges,
    pub(crate) shutdown_grace: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) connections: ConnectionSettings,
    pub(crate) upstream: Option<UpstreamSettings>,
    pub(crate) signing_key: Option<SigningKey>,
    pub(crate) reloadable: Reloadable,
    pub(crate) users: Option<crate::gateway::users_file::UsersFile>,
    pub(crate) logins: Vec<LoginSettings>,
    pub(crate) external_login: Option<ExternalLoginSettings>,
    pub(crate) lockout: Option<crate::lockout::LockoutPolicy>,
    pub(crate) throttle_per_minute: u32,
    pub(crate) redis: Option<(String, String)>,
    pub(crate) issuers: Vec<String>,
    pub(crate) token_sources: Vec<SourceSetting>,
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) space_header: HeaderName,
    pub(crate) default_space: Option<String>,
    /// Paths served without a token (the address filter still applies): an
    /// entry ending in `/` opens every path below it (a prefix of whole
    /// segments), one without opens that one path. Only a plain path (no
    /// percent-encoding, dot segment, `;`, `\` or `//`) ever matches; see
    /// `gateway::target`.
    pub(crate) public_paths: Vec<String>,
    /// `[authz]` and the `[[rule]]`s: what each verified token may reach
    /// (first match wins), and what a request no rule matches gets.
    pub(crate) rules: Rules,
    /// `[authz] cedar` and `cedar_schema`, loaded and validated.
    #[cfg(feature = "cedar")]
    pub(crate) cedar: Option<crate::authz::CedarPolicies>,
    pub(crate) errors: ErrorStyle,
    pub(crate) realm: String,
    pub(crate) token_cache: usize,
    pub(crate) identity: IdentityHeaders,
    pub(crate) verify_path: String,
    pub(crate) log_level: String,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) risk_sites: crate::gateway::risks::RiskSites,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("upstream", &self.upstream.as_ref().map(|u| &u.url))
            .field("logins", &self.logins.len())
            .finish_non_exhaustive()
    }
}

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default path of the forward-auth decision endpoint.
pub const DEFAULT_VERIFY_PATH: &str = "/_authgate/verify";

impl Settings {
    /// Reads and checks the configuration file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigFileError::new(path, format!("cannot read the file: {err}")))?;
        Self::from_toml(path, &text)
    }

    /// Checks configuration `text`, as if read from `path` (relative paths
    /// in it are relative to `path`'s folder).
    pub fn from_toml(path: impl AsRef<Path>, text: &str) -> Result<Self, ConfigFileError> {
        let source = Source {
            path: path.as_ref(),
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|err| source.parse_error(&err))?;
        check(&source, raw)
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Listen on `addr` instead of the file's address (`--listen`).
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self.risk_sites.listen_from_flag = true;
        self
    }

    /// Proxy to `url` instead of the file's upstream (`--upstream`).
    pub fn with_upstream(mut self, url: &str) -> Result<Self, ConfigFileError> {
        let uri = parse_upstream(url).map_err(|message| {
            ConfigFileError::new(&self.path, format!("--upstream: {message}"))
        })?;
        self.risk_sites.upstream_line = None;
        self.risk_sites.upstream_from_flag = true;
        let flag_error =
            |message: String| ConfigFileError::new(&self.path, format!("--upstream: {message}"));
        match &mut self.upstream {
            Some(upstream) => {
                // The file's protocol and CA stay; the scheme must suit them.
                if upstream.http2
                    && (uri.scheme() == Some(&Scheme::HTTPS)) != upstream.tls.is_some()
                {
                    return Err(flag_error(format!(
                        "{url} does not suit upstream.protocol (h2 is https://, h2c is http://)"
                    )));
                }
                if uri.scheme() == Some(&Scheme::HTTPS) && upstream.tls.is_none() {
                    upstream.tls = Some(tls::client_config(None, b"http/1.1").map_err(flag_error)?);
                }
                if uri.scheme() != Some(&Scheme::HTTPS) {
                    upstream.tls = None;
                }
                upstream.url = uri;
            }
            None => {
                let tls = match uri.scheme() == Some(&Scheme::HTTPS) {
                    true => Some(tls::client_config(None, b"http/1.1").map_err(flag_error)?),
                    false => None,
                };
                self.upstream = Some(UpstreamSettings {
                    url: uri,
                    connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                    timeout: DEFAULT_UPSTREAM_TIMEOUT,
                    http2: false,
                    tls,
                    idle_connections: super::upstream::DEFAULT_IDLE,
                })
            }
        }
        Ok(self)
    }

    /// Whether the gateway terminates TLS (`[server.tls]`).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The file these settings were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log filter (`[log] level`), used when `RUST_LOG` is unset.
    pub fn log_level(&self) -> &str {
        &self.log_level
    }

    /// Where `/metrics` is served (`[metrics] listen`), if anywhere.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics_listen
    }

    /// The upstream URL, if one is configured.
    pub fn upstream_url(&self) -> Option<String> {
        self.upstream.as_ref().map(|u| u.url.to_string())
    }

    /// The grace period for open requests at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// The runtime's worker threads (`[server] worker_threads`); `None`:
    /// one per core.
    pub fn worker_threads(&self) -> Option<usize> {
        self.worker_threads
    }

    /// How long a client may take to send a request head: from the
    /// connection's start (a client that never sends a byte is closed after
    /// it) and from the end of each response on a kept-alive connection.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// The bounds on the connections the server accepts
    /// (`[server] header_read_timeout`, `first_byte_timeout`, `max_connections`,
    /// `max_connections_per_client`, `max_request_headers_kib`,
    /// `http2_max_concurrent_streams`), for [`serve`](crate::gateway::serve).
    pub fn connection_limits(&self) -> crate::gateway::ConnectionLimits {
        let limits = crate::gateway::ConnectionLimits::new(
            self.header_read_timeout,
            self.connections.max_connections,
            self.connections.max_connections_per_client,
            self.trusted_proxies.clone(),
        )
        .max_request_headers(self.connections.max_request_headers)
        .http2_max_concurrent_streams(self.connections.http2_max_concurrent_streams);
        match self.connections.first_byte_timeout {
            Some(timeout) => limits.first_byte_timeout(timeout),
            None => limits,
        }
    }
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// `500ms`, `30s`, `10m`, `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("a duration is a whole number and a unit (500ms, 30s, 10m, 1h), not {text:?}")
    })?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "a duration is a whole number and a unit (500ms, 30s, 10m, 1h), not {text:?}"
            ));
        }
    };
    Ok(duration)
}

fn duration(
    source: &Source<'_>,
    key: &str,
    value: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigFileError> {
    match value {
        None => Ok(default),
        Some(value) => {
            let parsed = parse_duration(value.get_ref())
                .map_err(|message| source.error(key, &value.span(), message))?;
            if parsed.is_zero() {
                return Err(source.error(key, &value.span(), "must be longer than zero"));
            }
            Ok(parsed)
        }
    }
}

/// The largest `max_request_headers_kib`: 1 MiB, already far above what
/// browsers and proxies send (nginx takes 32 KiB at most by default).
const MOST_REQUEST_HEADERS_KIB: usize = 1024;
/// The largest `http2_max_concurrent_streams`: each open stream may hold a
/// request and an upstream call.
const MOST_HTTP2_CONCURRENT_STREAMS: u32 = 1024;

/// The `[server]` keys that bound what one client may hold.
fn connection_settings(
    source: &Source<'_>,
    server: &RawServer,
    header_read_timeout: Duration,
) -> Result<ConnectionSettings, ConfigFileError> {
    let default = ConnectionSettings::default();
    let first_byte_timeout = match &server.first_byte_timeout {
        None => None,
        Some(value) => {
            let timeout = duration(
                source,
                "server.first_byte_timeout",
                &server.first_byte_timeout,
                header_read_timeout,
            )?;
            if timeout > header_read_timeout {
                return Err(source.error(
                    "server.first_byte_timeout",
                    &value.span(),
                    "must not be longer than server.header_read_timeout, which covers the first byte too",
                ));
            }
            Some(timeout)
        }
    };
    let count = |key: &str, value: &Option<Spanned<usize>>, default: usize, most: usize| match value
    {
        None => Ok(default),
        Some(value) if *value.get_ref() == 0 || *value.get_ref() > most => {
            Err(source.error(key, &value.span(), format!("must be 1 to {most}")))
        }
        Some(value) => Ok(*value.get_ref()),
    };
    let max_connections = count(
        "server.max_connections",
        &server.max_connections,
        default.max_connections,
        1_000_000,
    )?;
    let max_connections_per_client = count(
        "server.max_connections_per_client",
        &server.max_connections_per_client,
        default.max_connections_per_client.min(max_connections),
        max_connections,
    )?;
    let max_request_headers = count(
        "server.max_request_headers_kib",
        &server.max_request_headers_kib,
        default.max_request_headers / 1024,
        MOST_REQUEST_HEADERS_KIB,
    )? * 1024;
    let http2_max_concurrent_streams = count(
        "server.http2_max_concurrent_streams",
        &server.http2_max_concurrent_streams,
        default.http2_max_concurrent_streams as usize,
        MOST_HTTP2_CONCURRENT_STREAMS as usize,
    )? as u32;
    Ok(ConnectionSettings {
        first_byte_timeout,
        max_connections,
        max_connections_per_client,
        max_request_headers,
        http2_max_concurrent_streams,
        body_read_timeout: duration(
            source,
            "server.body_read_timeout",
            &server.body_read_timeout,
            default.body_read_timeout,
        )?,
        websocket_max_lifetime: duration(
            source,
            "server.websocket_max_lifetime",
            &server.websocket_max_lifetime,
            default.websocket_max_lifetime,
        )?,
        websocket_revocation_check: duration(
            source,
            "server.websocket_revocation_check",
            &server.websocket_revocation_check,
            default.websocket_revocation_check,
        )?,
    })
}

fn parse_upstream(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|err| format!("not a URL: {url:?} ({err})"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "the upstream is an http:// or https:// URL, not {url:?}"
        ));
    }
    if uri.authority().is_none() {
        return Err(format!("the upstream URL names no host: {url:?}"));
    }
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err(format!(
            "the upstream URL is scheme://host:port, without a path: {url:?}"
        ));
    }
    Ok(uri)
}

/// `[server.tls]`: the chain and key read and checked now (and again on
/// each reload).
fn server_tls(source: &Source<'_>, raw: &RawTls) -> Result<TlsSettings, ConfigFileError> {
    let cert = read_file(source, "server.tls.cert", &raw.cert)?;
    let key = read_file(source, "server.tls.key", &raw.key)?;
    let cert_path = source.resolve(raw.cert.get_ref());
    let key_path = source.resolve(raw.key.get_ref());
    let (config, not_after) =
        tls::server_config(&cert_path, &cert, &key_path, &key).map_err(|message| {
            // The error names the file; the key is the one at fault.
            let (key_name, span) = if message.starts_with(&cert_path.display().to_string()) {
                ("server.tls.cert", raw.cert.span())
            } else {
                ("server.tls.key", raw.key.span())
            };
            source.error(key_name, &span, message)
        })?;
    Ok(TlsSettings { config, not_after })
}

/// `[upstream]`: where, how long, and over which protocol.
fn upstream_settings(
    source: &Source<'_>,
    upstream: &RawUpstream,
) -> Result<UpstreamSettings, ConfigFileError> {
    let url = parse_upstream(upstream.url.get_ref())
        .map_err(|message| source.error("upstream.url", &upstream.url.span(), message))?;
    let https = url.scheme() == Some(&Scheme::HTTPS);
    let http2 = match &upstream.protocol {
        None => false,
        Some(protocol) => match (protocol.get_ref().as_str(), https) {
            ("http1", _) => false,
            ("h2c", false) | ("h2", true) => true,
            ("h2c", true) => {
                return Err(source.error(
                    "upstream.protocol",
                    &protocol.span(),
                    "h2c is HTTP/2 without TLS: an http:// upstream (for https://, protocol = \"h2\")",
                ));
            }
            ("h2", false) => {
                return Err(source.error(
                    "upstream.protocol",
                    &protocol.span(),
                    "h2 is HTTP/2 over TLS: an https:// upstream (for http://, protocol = \"h2c\")",
                ));
            }
            (other, _) => {
                return Err(source.error(
                    "upstream.protocol",
                    &protocol.span(),
                    format!("unknown protocol {other:?}; one of http1, h2c, h2"),
                ));
            }
        },
    };
    let tls = match (&upstream.ca, https) {
        (Some(ca), false) => {
            return Err(source.error(
                "upstream.ca",
                &ca.span(),
                "a CA file verifies an https:// upstream; this one is http://",
            ));
        }
        (_, false) => None,
        (ca, true) => {
            let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
            let config = match ca {
                Some(ca) => {
                    let pem = read_file(source, "upstream.ca", ca)?;
                    tls::client_config(Some((&source.resolve(ca.get_ref()), &pem)), alpn)
                        .map_err(|message| source.error("upstream.ca", &ca.span(), message))?
                }
                None => tls::client_config(None, alpn).map_err(|message| {
                    source.error("upstream.url", &upstream.url.span(), message)
                })?,
            };
            Some(config)
        }
    };
    Ok(UpstreamSettings {
        url,
        connect_timeout: duration(
            source,
            "upstream.connect_timeout",
            &upstream.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        timeout: duration(
            source,
            "upstream.timeout",
            &upstream.timeout,
            DEFAULT_UPSTREAM_TIMEOUT,
        )?,
        http2,
        tls,
        idle_connections: match &upstream.idle_connections {
            None => super::upstream::DEFAULT_IDLE,
            Some(count) if *count.get_ref() > MAX_IDLE_CONNECTIONS => {
                return Err(source.error(
                    "upstream.idle_connections",
                    &count.span(),
                    format!("must be 0 to {MAX_IDLE_CONNECTIONS}"),
                ));
            }
            Some(count) => *count.get_ref(),
        },
    })
}

/// The most idle upstream connections `idle_connections` may keep: more
/// than a gateway's open connections could ever use.
const MAX_IDLE_CONNECTIONS: usize = 65_536;

fn header_name(
    source: &Source<'_>,
    key: &str,
    value: &Option<Spanned<String>>,
    default: &'static str,
) -> Result<HeaderName, ConfigFileError> {
    match value {
        None => Ok(HeaderName::from_static(default)),
        Some(value) => HeaderName::try_from(value.get_ref().as_str()).map_err(|_| {
            source.error(
                key,
                &value.span(),
                format!("not a header name: {:?}", value.get_ref()),
            )
        }),
    }
}

fn ranges(
    source: &Source<'_>,
    key: &str,
    list: &[Spanned<String>],
) -> Result<IpRanges, ConfigFileError> {
    for (i, entry) in list.iter().enumerate() {
        IpRanges::parse_list(entry.get_ref())
            .map_err(|err| source.error(format!("{key}[{i}]"), &entry.span(), err))?;
    }
    let joined: Vec<&str> = list.iter().map(|e| e.get_ref().as_str()).collect();
    IpRanges::parse_list(&joined.join(",")).map_err(|err| source.missing(key, err))
}

fn read_file(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
) -> Result<Vec<u8>, ConfigFileError> {
    let path = source.resolve(value.get_ref());
    std::fs::read(&path).map_err(|err| {
        source.error(
            key,
            &value.span(),
            format!("cannot read {}: {err}", path.display()),
        )
    })
}

fn algorithm(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
) -> Result<Algorithm, ConfigFileError> {
    value.get_ref().parse::<Algorithm>().map_err(|_| {
        source.error(
            key,
            &value.span(),
            format!(
                "unknown algorithm {:?} (EdDSA, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512; HS256, HS384, HS512 for keys.signing_key)",
                value.get_ref()
            ),
        )
    })
}

/// The keys that [`Reloadable`] holds, read anew on `SIGHUP`.
fn verifying_keys(
    source: &Source<'_>,
    keys: Option<&RawKeys>,
    signing: Option<&SigningKey>,
) -> Result<Vec<VerifyingKey>, ConfigFileError> {
    let mut list: Vec<VerifyingKey> = signing.map(SigningKey::verifying_key).into_iter().collect();
    for (i, entry) in keys
        .map(|k| k.verify.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let key = format!("keys.verify[{i}]");
        let alg = algorithm(source, &format!("{key}.algorithm"), &entry.algorithm)?;
        let pem = read_file(source, &format!("{key}.file"), &entry.file)?;
        let mut verifying = VerifyingKey::from_pem(alg, &pem)
            .map_err(|err| source.error(format!("{key}.file"), &entry.file.span(), err))?;
        if let Some(kid) = &entry.kid {
            verifying = verifying.with_kid(kid.get_ref().clone());
        }
        if let Some(kid) = verifying.kid()
            && list.iter().any(|other| other.kid() == Some(kid))
        {
            return Err(source.error(
                format!("{key}.kid"),
                &entry.kid.as_ref().map_or(entry.file.span(), |k| k.span()),
                format!("two keys share the kid {kid:?}"),
            ));
        }
        list.push(verifying);
    }
    // The signing key's own public key was there for the kid check only:
    // the running gateway keeps the key it signs with (see `Reloadable`).
    let signing_count = usize::from(signing.is_some());
    Ok(list.split_off(signing_count))
}

fn signing_key(source: &Source<'_>, keys: &RawKeys) -> Result<SigningKey, ConfigFileError> {
    let kid = keys.kid.as_ref().map(|k| k.get_ref().clone());
    let key = if keys.signing_key.get_ref() == "ephemeral" {
        let key = SigningKey::generate_ed25519()
            .map_err(|err| source.error("keys.signing_key", &keys.signing_key.span(), err))?;
        // A fresh key per start: a kid of its own, so tokens of an earlier
        // start are told apart.
        key.with_kid(kid.unwrap_or_else(|| format!("ephemeral-{}", uuid::Uuid::new_v4())))
    } else {
        let alg = match &keys.algorithm {
            Some(alg) => algorithm(source, "keys.algorithm", alg)?,
            None => Algorithm::EdDSA,
        };
        let bytes = read_file(source, "keys.signing_key", &keys.signing_key)?;
        let key = match alg {
            // An HMAC secret: the file's bytes, one final newline excepted.
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                SigningKey::hmac(alg, hmac_secret(&bytes))
            }
            _ => SigningKey::from_pem(alg, &bytes),
        }
        .map_err(|err| {
            let path = source.resolve(keys.signing_key.get_ref());
            source.error(
                "keys.signing_key",
                &keys.signing_key.span(),
                format!("{}: {err}", path.display()),
            )
        })?;
        match kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        }
    };
    Ok(key)
}

/// The secret an HMAC key file holds: every byte, but one final `\n` or
/// `\r\n` (what `echo` and editors add) is not part of it.
fn hmac_secret(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes)
}

fn check_path(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
) -> Result<String, ConfigFileError> {
    let path = value.get_ref();
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(source.error(
            key,
            &value.span(),
            format!("a path starts with / and has no query: {path:?}"),
        ));
    }
    Ok(path.clone())
}

/// `[authz] cedar` and `cedar_schema`: both or neither; the files loaded
/// and the policies validated against the schema, an error naming the
/// file, line and column of the first problem.
#[cfg(feature = "cedar")]
fn check_cedar(
    source: &Source<'_>,
    raw: &RawConfig,
) -> Result<Option<crate::authz::CedarPolicies>, ConfigFileError> {
    let Some(authz) = &raw.authz else {
        return Ok(None);
    };
    let (policies, schema) = match (&authz.cedar, &authz.cedar_schema) {
        (None, None) => return Ok(None),
        (Some(policies), Some(schema)) => (policies, schema),
        (Some(given), None) | (None, Some(given)) => {
            return Err(source.error(
                "authz.cedar",
                &given.span(),
                "`cedar` (the policies) and `cedar_schema` (their schema) go together",
            ));
        }
    };
    crate::authz::CedarPolicies::builder()
        .spaces_of::<crate::gateway::identity::GatewayClaims>()
        .load(
            source.resolve(policies.get_ref()),
            source.resolve(schema.get_ref()),
        )
        .map(Some)
        .map_err(|err| match err.problems().first() {
            Some(problem) => ConfigFileError::at(
                Path::new(&problem.file),
                problem.line,
                "authz.cedar",
                match problem.column {
                    Some(column) => format!("column {column}: {}", problem.message),
                    None => problem.message.clone(),
                },
            ),
            None => source.error("authz.cedar", &policies.span(), err),
        })
}

/// Without the `cedar` feature, `[authz] cedar` is refused.
#[cfg(not(feature = "cedar"))]
fn check_cedar(source: &Source<'_>, raw: &RawConfig) -> Result<(), ConfigFileError> {
    let given = raw
        .authz
        .as_ref()
        .and_then(|authz| authz.cedar.as_ref().or(authz.cedar_schema.as_ref()));
    match given {
        Some(given) => Err(source.error(
            "authz.cedar",
            &given.span(),
            "this authgate was built without Cedar (cargo feature `cedar`)",
        )),
        None => Ok(()),
    }
}

/// A `[[rule]]` as read, for the checks between rules.
struct ReadRule {
    name: String,
    path: String,
    methods: Option<Vec<Method>>,
    public: bool,
}

/// Whether `earlier` takes every request `later` would match, so that
/// `later` can never decide one. A public rule matches plain paths only,
/// so it shadows another public rule but not one with a policy (which
/// still decides the encoded readings of its paths).
fn shadows(earlier: &ReadRule, later: &ReadRule) -> bool {
    if earlier.public && !later.public {
        return false;
    }
    let path_covered = if earlier.path.ends_with('/') {
        later.path.starts_with(&earlier.path)
    } else {
        later.path == earlier.path
    };
    let methods_covered = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(earlier), Some(later)) => later.iter().all(|m| earlier.contains(m)),
    };
    path_covered && methods_covered
}

/// `[authz]` and the `[[rule]]` tables: the gateway's rule table. Without
/// either, every verified token passes (the default `authenticated`); with
/// rules and no `[authz] default`, a request no rule matches is denied.
fn check_rules(source: &Source<'_>, raw: &RawConfig) -> Result<Rules, ConfigFileError> {
    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut read: Vec<ReadRule> = Vec::with_capacity(raw.rule.len());
    for (i, rule) in raw.rule.iter().enumerate() {
        let key = |field: &str| format!("rule[{i}].{field}");
        let name = match &rule.name {
            None => format!("rule[{i}]"),
            Some(name) => {
                let text = name.get_ref();
                let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.:".contains(c);
                if text.is_empty() || text.len() > 64 || !text.chars().all(allowed) {
                    return Err(source.error(
                        key("name"),
                        &name.span(),
                        format!(
                            "a rule's name is its metrics label: 1 to 64 letters, digits, '_', '-', '.' or ':', not {text:?}"
                        ),
                    ));
                }
                if text == "default" {
                    return Err(source.error(
                        key("name"),
                        &name.span(),
                        "\"default\" is the label of the requests no rule matches",
                    ));
                }
                if let Some(j) = read.iter().position(|r| r.name == *text) {
                    return Err(source.error(
                        key("name"),
                        &name.span(),
                        format!("rule[{j}] has the name {text:?} already"),
                    ));
                }
                text.clone()
            }
        };
        let path = check_path(source, &key("path"), &rule.path)?;
        let mut built = Rule::new(name.clone(), path.clone()).map_err(|_| {
            source.error(
                key("path"),
                &rule.path.span(),
                format!(
                    "a rule's path is plain: no percent-encoding, dot segment, ';', '\\' or '//': {path:?}"
                ),
            )
        })?;
        let methods = match &rule.methods {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(source.error(
                    key("methods"),
                    &list.span(),
                    "an empty list matches no request: leave `methods` out for every method",
                ));
            }
            Some(list) => {
                let mut methods = Vec::with_capacity(list.get_ref().len());
                for method in list.get_ref() {
                    let text = method.get_ref();
                    let parsed = Method::from_bytes(text.as_bytes())
                        .ok()
                        .filter(|_| text.bytes().all(|b| b.is_ascii_uppercase()));
                    let Some(parsed) = parsed else {
                        return Err(source.error(
                            key("methods"),
                            &method.span(),
                            format!("not a method in upper case (GET, POST, ...): {text:?}"),
                        ));
                    };
                    methods.push(parsed);
                }
                built = built.methods(methods.iter().cloned());
                Some(methods)
            }
        };
        let public = rule.public.as_ref().is_some_and(|p| *p.get_ref());
        for (field, list) in [("roles", &rule.roles), ("scopes", &rule.scopes)] {
            let Some(list) = list else { continue };
            if public {
                return Err(source.error(
                    key(field),
                    &list.span(),
                    "a public rule lets every request through: it takes no roles or scopes",
                ));
            }
            if list.get_ref().is_empty() || list.get_ref().iter().any(String::is_empty) {
                return Err(source.error(
                    key(field),
                    &list.span(),
                    format!(
                        "name at least one of the {field}, none empty (or leave `{field}` out)"
                    ),
                ));
            }
            built = match field {
                "roles" => built.roles(list.get_ref().iter().cloned()),
                _ => built.scopes(list.get_ref().iter().cloned()),
            };
        }
        if public {
            built = built.public();
        }
        let this = ReadRule {
            name,
            path,
            methods,
            public,
        };
        if let Some(j) = read.iter().position(|earlier| shadows(earlier, &this)) {
            return Err(source.error(
                key("path"),
                &rule.path.span(),
                format!(
                    "this rule can never match: rule[{j}] ({:?}) comes first and takes every request it would",
                    read[j].name
                ),
            ));
        }
        read.push(this);
        rules.push(built);
    }
    let default = match raw.authz.as_ref().and_then(|a| a.default.as_ref()) {
        None if raw.rule.is_empty() => RuleDefault::Authenticated,
        None => RuleDefault::Deny,
        Some(default) => match default.get_ref().as_str() {
            "authenticated" => RuleDefault::Authenticated,
            "deny" => RuleDefault::Deny,
            other => {
                return Err(source.error(
                    "authz.default",
                    &default.span(),
                    format!("\"authenticated\" or \"deny\", not {other:?}"),
                ));
            }
        },
    };
    Ok(Rules::new(rules).default_access(default))
}

fn check(source: &Source<'_>, raw: RawConfig) -> Result<Settings, ConfigFileError> {
    let server = &raw.server;
    let listen = match &server.listen {
        Some(listen) => listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            source.error(
                "server.listen",
                &listen.span(),
                format!("not an address and port: {:?}", listen.get_ref()),
            )
        })?,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| source.missing("server.listen", "bad default"))?,
    };
    let development = server.development.as_ref().is_some_and(|d| *d.get_ref());
    let trusted_proxies = ranges(source, "server.trusted_proxies", &server.trusted_proxies)?;
    let shutdown_grace = duration(
        source,
        "server.shutdown_grace",
        &server.shutdown_grace,
        Duration::from_secs(10),
    )?;
    let header_read_timeout = duration(
        source,
        "server.header_read_timeout",
        &server.header_read_timeout,
        Duration::from_secs(10),
    )?;

    let worker_threads = match &server.worker_threads {
        Some(threads) if *threads.get_ref() == 0 || *threads.get_ref() > 1024 => {
            return Err(source.error(
                "server.worker_threads",
                &threads.span(),
                "must be 1 to 1024",
            ));
        }
        other => other.as_ref().map(|t| *t.get_ref()),
    };
    let connections = connection_settings(source, server, header_read_timeout)?;
    let tls = server
        .tls
        .as_ref()
        .map(|raw| server_tls(source, raw))
        .transpose()?;
    let h2c = server.h2c.as_ref().is_some_and(|h2c| *h2c.get_ref());
    if h2c && let (Some(value), Some(_)) = (&server.h2c, &tls) {
        return Err(source.error(
            "server.h2c",
            &value.span(),
            "h2c is HTTP/2 without TLS: with [server.tls], HTTP/2 is offered by ALPN already",
        ));
    }
    let upstream = match &raw.upstream {
        None => None,
        Some(upstream) => Some(upstream_settings(source, upstream)?),
    };

    let signing = raw
        .keys
        .as_ref()
        .map(|keys| signing_key(source, keys))
        .transpose()?;
    let verifying = verifying_keys(source, raw.keys.as_ref(), signing.as_ref())?;

    // Login presets.
    let mut logins = Vec::new();
    for (i, login) in raw.login.iter().enumerate() {
        let key = format!("login[{i}]");
        let preset = PresetKind::parse(login.preset.get_ref()).ok_or_else(|| {
            source.error(
                format!("{key}.preset"),
                &login.preset.span(),
                format!(
                    "unknown preset {:?}; one of {}",
                    login.preset.get_ref(),
                    PresetKind::NAMES.join(", ")
                ),
            )
        })?;
        if logins.iter().any(|l: &LoginSettings| l.preset == preset) {
            return Err(source.error(
                format!("{key}.preset"),
                &login.preset.span(),
                format!(
                    "the preset {:?} is configured twice",
                    login.preset.get_ref()
                ),
            ));
        }
        let prefix = match &login.prefix {
            None => String::new(),
            Some(prefix) if prefix.get_ref().is_empty() => String::new(),
            Some(prefix) => {
                let path = check_route_path(source, &format!("{key}.prefix"), prefix)?;
                if path.ends_with('/') {
                    return Err(source.error(
                        format!("{key}.prefix"),
                        &prefix.span(),
                        "a prefix does not end with /",
                    ));
                }
                path
            }
        };
        let only = |value: &Option<Spanned<bool>>, name: &str, for_preset: PresetKind| match value {
            Some(v) if preset != for_preset => Err(source.error(
                format!("{key}.{name}"),
                &v.span(),
                format!(
                    "only the {} preset takes {name}",
                    PresetKind::NAMES[for_preset as usize]
                ),
            )),
            Some(v) => Ok(Some(*v.get_ref())),
            None => Ok(None),
        };
        let host_prefix =
            only(&login.host_prefix, "host_prefix", PresetKind::CookieSession)?.unwrap_or(false);
        if host_prefix && development {
            return Err(source.error(
                format!("{key}.host_prefix"),
                &login
                    .host_prefix
                    .as_ref()
                    .map_or(login.preset.span(), |v| v.span()),
                "`__Host-` cookies must be Secure: not with server.development",
            ));
        }
        let deprecated_get = only(
            &login.deprecated_get,
            "deprecated_get",
            PresetKind::XAuthToken,
        )?
        .unwrap_or(false);
        let restart_scoped_key = only(
            &login.restart_scoped_key,
            "restart_scoped_key",
            PresetKind::XAuthToken,
        )?
        .unwrap_or(true);
        let keep_logged_in_seconds = match &login.keep_logged_in_seconds {
            Some(v) if preset != PresetKind::PascalCase => {
                return Err(source.error(
                    format!("{key}.keep_logged_in_seconds"),
                    &v.span(),
                    "only the pascal_case preset takes keep_logged_in_seconds",
                ));
            }
            other => other.as_ref().map(|v| *v.get_ref()),
        };
        for (name, value) in [
            ("access_seconds", &login.access_seconds),
            ("refresh_seconds", &login.refresh_seconds),
        ] {
            if let Some(v) = value
                && *v.get_ref() == 0
            {
                return Err(source.error(
                    format!("{key}.{name}"),
                    &v.span(),
                    "must be more than zero",
                ));
            }
        }
        let issuer = match &login.issuer {
            Some(issuer) if issuer.get_ref().trim().is_empty() => {
                return Err(source.error(
                    format!("{key}.issuer"),
                    &issuer.span(),
                    "an issuer needs a name",
                ));
            }
            Some(issuer) => issuer.get_ref().clone(),
            None if preset == PresetKind::BearerPair => "datarhei-core".to_owned(),
            None => "authgate".to_owned(),
        };
        logins.push(LoginSettings {
            preset,
            prefix,
            issuer,
            access_seconds: login.access_seconds.as_ref().map(|v| *v.get_ref()),
            refresh_seconds: login.refresh_seconds.as_ref().map(|v| *v.get_ref()),
            host_prefix,
            deprecated_get,
            restart_scoped_key,
            keep_logged_in_seconds,
        });
    }
    let needs_signing_key = logins
        .iter()
        .any(|l| !(l.preset == PresetKind::XAuthToken && l.restart_scoped_key));
    if needs_signing_key && signing.is_none() {
        return Err(source.missing(
            "keys.signing_key",
            "the login presets sign tokens: set [keys] signing_key to a PEM file (or \"ephemeral\")",
        ));
    }
    if verifying.is_empty()
        && signing.is_none()
        && !logins.iter().any(|l| l.preset == PresetKind::XAuthToken)
    {
        return Err(source.missing(
            "keys",
            "no key verifies tokens: configure [keys] signing_key or [[keys.verify]], or a login preset",
        ));
    }

    let users = match &raw.users {
        Some(users) => {
            let path = source.resolve(users.file.get_ref());
            Some(
                crate::gateway::users_file::UsersFile::load(&path)
                    .map_err(|err| source.error("users.file", &users.file.span(), err))?,
            )
        }
        None if !logins.is_empty() => {
            return Err(source.missing(
                "users.file",
                "the login presets need a users file: set [users] file",
            ));
        }
        None => None,
    };

    let external_login = match &raw.external_login {
        None => None,
        Some(external) => {
            if !logins.iter().any(|l| l.preset == PresetKind::BearerPair) {
                return Err(source.error(
                    "external_login.issuer",
                    &external.issuer.span(),
                    "an external login is taken at the bearer_pair preset's POST /api/login: configure that preset",
                ));
            }
            if !cfg!(feature = "jwks") {
                return Err(source.error(
                    "external_login.issuer",
                    &external.issuer.span(),
                    "this authgate was built without the `jwks` feature: cargo install tower-authgate --features gateway,jwks",
                ));
            }
            if let Some(url) = &external.jwks_url
                && !(url.get_ref().starts_with("https://") || url.get_ref().starts_with("http://"))
            {
                return Err(source.error(
                    "external_login.jwks_url",
                    &url.span(),
                    "not an http(s) URL",
                ));
            }
            Some(ExternalLoginSettings {
                issuer: external.issuer.get_ref().clone(),
                audience: external.audience.get_ref().clone(),
                jwks_url: external.jwks_url.as_ref().map(|u| u.get_ref().clone()),
                allowed_subjects: external.allowed_subjects.clone(),
            })
        }
    };

    let lockout = if raw.lockout.enabled.as_ref().is_none_or(|e| *e.get_ref()) {
        let mut policy =
            crate::lockout::LockoutPolicy::default().with_per_address(raw.lockout.per_address);
        if let Some(attempts) = &raw.lockout.attempts {
            if *attempts.get_ref() == 0 {
                return Err(source.error(
                    "lockout.attempts",
                    &attempts.span(),
                    "must be at least 1",
                ));
            }
            policy = policy.with_max_failures(*attempts.get_ref());
        }
        if raw.lockout.window.is_some() {
            policy = policy.with_window_seconds(
                duration(
                    source,
                    "lockout.window",
                    &raw.lockout.window,
                    Duration::ZERO,
                )?
                .as_secs()
                .max(1),
            );
        }
        if raw.lockout.lock.is_some() {
            policy = policy.with_lock_seconds(
                duration(source, "lockout.lock", &raw.lockout.lock, Duration::ZERO)?
                    .as_secs()
                    .max(1),
            );
        }
        Some(policy)
    } else {
        None
    };

    let redis = match &raw.redis {
        None => None,
        Some(redis) => {
            if !cfg!(feature = "redis") {
                return Err(source.error(
                    "redis.url",
                    &redis.url.span(),
                    "this authgate was built without the `redis` feature: cargo install tower-authgate --features gateway,redis",
                ));
            }
            #[cfg(feature = "redis")]
            crate::store::RedisTopology::parse(redis.url.get_ref())
                .map_err(|err| source.error("redis.url", &redis.url.span(), err))?;
            Some((
                redis.url.get_ref().clone(),
                redis
                    .prefix
                    .clone()
                    .unwrap_or_else(|| "authgate:".to_owned()),
            ))
        }
    };

    let guard = &raw.guard;
    let issuers = match &guard.issuers {
        Some(list) => {
            for (i, issuer) in list.iter().enumerate() {
                if issuer.get_ref().trim().is_empty() {
                    return Err(source.error(
                        format!("guard.issuers[{i}]"),
                        &issuer.span(),
                        "an issuer needs a name",
                    ));
                }
            }
            list.iter().map(|i| i.get_ref().clone()).collect()
        }
        None => {
            let mut names: Vec<String> = Vec::new();
            for login in &logins {
                if !names.contains(&login.issuer) {
                    names.push(login.issuer.clone());
                }
            }
            names
        }
    };
    if issuers.is_empty() {
        return Err(source.missing(
            "guard.issuers",
            "name the issuers whose tokens the guard accepts (no login preset names one)",
        ));
    }
    let token_sources = match &guard.token_sources {
        None => default_sources(&logins),
        Some(list) => {
            if list.is_empty() {
                return Err(source.missing(
                    "guard.token_sources",
                    "at least one token source is required",
                ));
            }
            let mut sources = Vec::new();
            for (i, entry) in list.iter().enumerate() {
                let key = format!("guard.token_sources[{i}]");
                let text = entry.get_ref();
                let parsed = if text == "bearer" {
                    SourceSetting::Bearer
                } else if let Some(name) = text.strip_prefix("cookie:") {
                    crate::token::TokenSource::try_cookie(name)
                        .map_err(|err| source.error(&key, &entry.span(), err))?;
                    SourceSetting::Cookie(name.to_owned())
                } else if let Some(name) = text.strip_prefix("header:") {
                    SourceSetting::Header(HeaderName::try_from(name).map_err(|_| {
                        source.error(&key, &entry.span(), format!("not a header name: {name:?}"))
                    })?)
                } else {
                    return Err(source.error(
                        &key,
                        &entry.span(),
                        format!("a token source is \"bearer\", \"cookie:NAME\" or \"header:NAME\", not {text:?}"),
                    ));
                };
                sources.push(parsed);
            }
            sources
        }
    };
    let ip_rules = IpRules::new(
        ranges(source, "guard.ip_allow", &guard.ip_allow)?,
        ranges(source, "guard.ip_deny", &guard.ip_deny)?,
    );
    let mut trusted_origins = Vec::new();
    for (i, origin) in guard.trusted_origins.iter().enumerate() {
        crate::csrf::CsrfLayer::new()
            .trusted_origin(origin.get_ref())
            .map_err(|err| {
                source.error(format!("guard.trusted_origins[{i}]"), &origin.span(), err)
            })?;
        trusted_origins.push(origin.get_ref().clone());
    }
    let space_header = header_name(source, "guard.space_header", &guard.space_header, "x-space")?;
    let default_space = match &guard.default_space {
        None => None,
        Some(space) => {
            crate::tenant::SelectSpaceLayer::<crate::gateway::identity::GatewayClaims>::new()
                .default_space(space.get_ref())
                .map_err(|err| source.error("guard.default_space", &space.span(), err))?;
            Some(space.get_ref().clone())
        }
    };
    let mut public_paths = Vec::new();
    for (i, path) in guard.public_paths.iter().enumerate() {
        let key = format!("guard.public_paths[{i}]");
        let checked = check_path(source, &key, path)?;
        // An entry that is not a plain path could never match one.
        if crate::gateway::target::path_shape(&checked)
            != Ok(crate::gateway::target::PathShape::Plain)
        {
            return Err(source.error(
                key,
                &path.span(),
                format!(
                    "a public path is plain: no percent-encoding, dot segment, ';', '\\' or '//': {checked:?}"
                ),
            ));
        }
        public_paths.push(checked);
    }
    let rules = check_rules(source, &raw)?;
    #[cfg(feature = "cedar")]
    let cedar = check_cedar(source, &raw)?;
    #[cfg(not(feature = "cedar"))]
    check_cedar(source, &raw)?;
    let errors = match &guard.errors {
        None => ErrorStyle::Json,
        Some(style) => match style.get_ref().as_str() {
            "json" => ErrorStyle::Json,
            "empty" => ErrorStyle::Empty,
            "inscada" => ErrorStyle::Inscada,
            "core" => ErrorStyle::Core,
            "nx" => ErrorStyle::Nx,
            "regscale" => ErrorStyle::RegScale,
            "workflow" => ErrorStyle::Workflow,
            "grpc" => ErrorStyle::Grpc,
            other => {
                return Err(source.error(
                    "guard.errors",
                    &style.span(),
                    format!("unknown error format {other:?}; one of json, empty, inscada, core, nx, regscale, workflow, grpc"),
                ));
            }
        },
    };
    let realm = match &guard.realm {
        None => "api".to_owned(),
        Some(realm) => {
            crate::error::check_quoted_value(realm.get_ref())
                .map_err(|err| source.error("guard.realm", &realm.span(), err))?;
            realm.get_ref().clone()
        }
    };

    let identity = &raw.identity;
    let identity = IdentityHeaders {
        subject: header_name(
            source,
            "identity.subject",
            &identity.subject,
            "x-auth-subject",
        )?,
        roles: header_name(source, "identity.roles", &identity.roles, "x-auth-roles")?,
        spaces: header_name(source, "identity.spaces", &identity.spaces, "x-auth-spaces")?,
        space: header_name(source, "identity.space", &identity.space, "x-space")?,
        claims: match &identity.claims {
            None => None,
            some => Some(header_name(
                source,
                "identity.claims",
                some,
                "x-auth-claims",
            )?),
        },
    };
    {
        let names: Vec<&HeaderName> = identity.names().collect();
        for (i, name) in names.iter().enumerate() {
            // `X-User` and `X_User` are one header to a CGI, WSGI or Rack upstream.
            if names[..i].iter().any(|other| {
                super::identity::same_field(other.as_str().as_bytes(), name.as_str().as_bytes())
            }) {
                return Err(source.missing("identity", format!("the header {name} is named twice")));
            }
            if is_reserved_header(name) {
                return Err(source.missing(
                    "identity",
                    format!("{name} cannot carry the identity: the client's credentials or the proxy's own headers use it"),
                ));
            }
        }
    }

    let verify_path = match &raw.verify.path {
        None => DEFAULT_VERIFY_PATH.to_owned(),
        Some(path) => check_route_path(source, "verify.path", path)?,
    };
    check_routes_apart(source, &raw, &logins, &verify_path)?;
    let log_level = match &raw.log.level {
        None => "info".to_owned(),
        Some(level) => {
            tracing_subscriber::EnvFilter::try_new(level.get_ref())
                .map_err(|err| source.error("log.level", &level.span(), err))?;
            level.get_ref().clone()
        }
    };

    let metrics_listen =
        match &raw.metrics {
            None => None,
            Some(metrics) => Some(metrics.listen.get_ref().parse::<SocketAddr>().map_err(
                |_| {
                    source.error(
                        "metrics.listen",
                        &metrics.listen.span(),
                        format!("not an address and port: {:?}", metrics.listen.get_ref()),
                    )
                },
            )?),
        };

    let risk_sites = risk_sites(source, &raw)?;
    Ok(Settings {
        risk_sites,
        metrics_listen,
        path: source.path.to_owned(),
        listen,
        development,
        tls,
        h2c,
        trusted_proxies,
        shutdown_grace,
        header_read_timeout,
        worker_threads,
        connections,
        upstream,
        signing_key: signing,
        reloadable: Reloadable {
            ip_rules,
            verifying_keys: verifying,
        },
        users,
        logins,
        external_login,
        lockout,
        throttle_per_minute: raw
            .throttle
            .per_minute
            .as_ref()
            .map_or(60, |p| *p.get_ref()),
        redis,
        issuers,
        token_sources,
        trusted_origins,
        space_header,
        default_space,
        public_paths,
        rules,
        #[cfg(feature = "cedar")]
        cedar,
        errors,
        realm,
        token_cache: guard.token_cache.unwrap_or(10_000),
        identity,
        verify_path,
        log_level,
    })
}

/// `[server] accept_risks`, and where each risk would be in the file.
fn risk_sites(
    source: &Source<'_>,
    raw: &RawConfig,
) -> Result<crate::gateway::risks::RiskSites, ConfigFileError> {
    use crate::gateway::risks::{Risk, RiskSites};
    let line = |span: Range<usize>| source.line_of(&span);
    let mut sites = RiskSites::default();
    for (i, name) in raw.server.accept_risks.iter().enumerate() {
        let risk = Risk::from_name(name.get_ref()).ok_or_else(|| {
            source.error(
                format!("server.accept_risks[{i}]"),
                &name.span(),
                format!(
                    "unknown risk {:?}; one of {}",
                    name.get_ref(),
                    Risk::ALL.map(Risk::name).join(", ")
                ),
            )
        })?;
        sites.accepted.push(risk);
    }
    sites.public_root = raw
        .guard
        .public_paths
        .iter()
        .enumerate()
        .find(|(_, path)| path.get_ref().trim_matches('/').is_empty())
        .map(|(i, path)| (format!("guard.public_paths[{i}]"), line(path.span())))
        .or_else(|| {
            raw.rule
                .iter()
                .enumerate()
                .find(|(_, rule)| {
                    rule.public.as_ref().is_some_and(|p| *p.get_ref())
                        && rule.path.get_ref().trim_matches('/').is_empty()
                })
                .map(|(i, rule)| (format!("rule[{i}].path"), line(rule.path.span())))
        });
    sites.trusted_proxies_line = raw.server.trusted_proxies.first().map(|p| line(p.span()));
    sites.unlimited_logins = match (&raw.lockout.enabled, &raw.throttle.per_minute) {
        (Some(enabled), _) => Some(("lockout.enabled".to_owned(), Some(line(enabled.span())))),
        (None, Some(per_minute)) => Some((
            "throttle.per_minute".to_owned(),
            Some(line(per_minute.span())),
        )),
        (None, None) => None,
    };
    sites.development_line = raw.server.development.as_ref().map(|d| line(d.span()));
    sites.h2c_line = raw.server.h2c.as_ref().map(|h2c| line(h2c.span()));
    sites.tls_key_file = raw
        .server
        .tls
        .as_ref()
        .map(|tls| (source.resolve(tls.key.get_ref()), line(tls.key.span())));
    sites.metrics_line = raw.metrics.as_ref().map(|m| line(m.listen.span()));
    sites.upstream_line = raw.upstream.as_ref().map(|u| line(u.url.span()));
    sites.users_file = raw.users.as_ref().map(|users| {
        (
            source.resolve(users.file.get_ref()),
            line(users.file.span()),
        )
    });
    sites.signing_key_file = raw
        .keys
        .as_ref()
        .filter(|keys| keys.signing_key.get_ref() != "ephemeral")
        .map(|keys| {
            (
                source.resolve(keys.signing_key.get_ref()),
                line(keys.signing_key.span()),
            )
        });
    Ok(sites)
}

/// A path the router serves (the decision endpoint, a preset's prefix):
/// plain segments of letters, digits and `-._~`, none empty, `.` or `..`,
/// so that the router reads no capture or wildcard in it and it means the
/// same to every proxy in front.
fn check_route_path(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
) -> Result<String, ConfigFileError> {
    let path = check_path(source, key, value)?;
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    let trimmed = path.strip_prefix('/').unwrap_or(&path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if path != "/" && !trimmed.split('/').all(plain) {
        return Err(source.error(
            key,
            &value.span(),
            format!(
                "a route is plain path segments (letters, digits, -._~ between single slashes, no . or ..): {path:?}"
            ),
        ));
    }
    Ok(path)
}

/// The paths each preset's router serves, as the presets declare them
/// (`{name}` stands for any one segment), the optional ones included.
fn preset_routes(preset: PresetKind) -> &'static [&'static str] {
    match preset {
        PresetKind::CookieSession => &[
            "/login",
            "/login/otp",
            "/logout",
            "/api/auth/lockedUsers",
            "/api/auth/lockedUsers/{username}",
        ],
        PresetKind::BearerPair => &["/api/login", "/api/login/refresh"],
        PresetKind::PascalCase => &[
            "/authenticate/signin",
            "/authenticate/refresh",
            "/authenticate/signout",
            "/authenticate/nx",
            "/authenticate/plugin",
            "/authenticate/csrf",
            "/authenticate/code",
            "/authenticate/code/issue",
            "/authenticate/logout",
            "/authenticate/update",
            "/authenticate/password-strength",
            "/authenticate/totp",
            "/user",
        ],
        PresetKind::AuthToken => &[
            "/api/authentication/login",
            "/api/serviceAccounts",
            "/api/serviceAccounts/{id}",
        ],
        PresetKind::XAuthToken => &["/api/v2/login", "/api/v1/login"],
    }
}

/// Whether two route paths can match one request: as many segments, each
/// equal or one of them a `{capture}`.
fn routes_meet(a: &str, b: &str) -> bool {
    let capture = |segment: &str| segment.starts_with('{');
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || capture(x) || capture(y) => {}
            _ => return false,
        }
    }
}

/// The decision endpoint, `/healthz`, `/metrics` and every login route
/// are apart: two routes one request could match would make the router
/// panic, or one shadow the other.
fn check_routes_apart(
    source: &Source<'_>,
    raw: &RawConfig,
    logins: &[LoginSettings],
    verify_path: &str,
) -> Result<(), ConfigFileError> {
    // (route, what serves it)
    let mut taken: Vec<(String, String)> = vec![
        ("/healthz".to_owned(), "the health check".to_owned()),
        (
            "/metrics".to_owned(),
            "the metrics (kept apart even on their own listener)".to_owned(),
        ),
    ];
    if !logins.is_empty() {
        taken.push((
            crate::gateway::app::SIGN_OUT_PATH.to_owned(),
            "the administrators' sign-out everywhere".to_owned(),
        ));
    }
    for (i, login) in logins.iter().enumerate() {
        let key = format!("login[{i}].prefix");
        let preset = PresetKind::NAMES[login.preset as usize];
        for route in preset_routes(login.preset) {
            let path = format!("{}{route}", login.prefix);
            if let Some((_, owner)) = taken.iter().find(|(other, _)| routes_meet(other, &path)) {
                let span = raw.login[i]
                    .prefix
                    .as_ref()
                    .map_or(raw.login[i].preset.span(), |p| p.span());
                return Err(source.error(
                    key,
                    &span,
                    format!("the {preset} preset's {path} meets {owner}: give the preset a prefix of its own"),
                ));
            }
            taken.push((path, format!("the {preset} preset's route")));
        }
    }
    if let Some((other, owner)) = taken
        .iter()
        .find(|(other, _)| routes_meet(other, verify_path))
    {
        let message = format!("the decision endpoint's path {verify_path} meets {other}, {owner}");
        return Err(match &raw.verify.path {
            Some(path) => source.error("verify.path", &path.span(), message),
            None => source.missing("verify.path", message),
        });
    }
    Ok(())
}

/// Headers that must never carry the identity.
fn is_reserved_header(name: &HeaderName) -> bool {
    use http::header;
    [
        header::AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::FORWARDED,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str().starts_with("x-forwarded-")
        || name.as_str().starts_with("x-original-")
}

/// The token sources of the configured presets: each preset's own, in the
/// order cookie, bearer, `X-Auth-Token`; all three when no preset is
/// configured.
fn default_sources(logins: &[LoginSettings]) -> Vec<SourceSetting> {
    let has = |kind| logins.iter().any(|l| l.preset == kind);
    let mut sources = Vec::new();
    if logins.is_empty() || has(PresetKind::CookieSession) {
        let host = logins
            .iter()
            .any(|l| l.preset == PresetKind::CookieSession && l.host_prefix);
        let name = crate::schemes::cookie_session::ACCESS_COOKIE;
        sources.push(SourceSetting::Cookie(if host {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }));
    }
    if logins.is_empty()
        || has(PresetKind::BearerPair)
        || has(PresetKind::PascalCase)
        || has(PresetKind::AuthToken)
    {
        sources.push(SourceSetting::Bearer);
    }
    if logins.is_empty() || has(PresetKind::XAuthToken) {
        sources.push(SourceSetting::Header(
            crate::schemes::x_auth_token::X_AUTH_TOKEN,
        ));
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ConfigFileError {
        Settings::from_toml("/nonexistent/gateway.toml", text).unwrap_err()
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1 fortnight").is_err());
    }

    #[test]
    fn connection_bounds_have_safe_defaults_and_are_checked() {
        let minimal = |server: &str| {
            Settings::from_toml(
                "/nonexistent/gateway.toml",
                &format!(
                    "[server]\n{server}[keys]\nsigning_key = \"ephemeral\"\n\
                     [guard]\nissuers = [\"a\"]\n"
                ),
            )
            .unwrap()
        };
        let settings = minimal("");
        assert_eq!(settings.connections, ConnectionSettings::default());
        assert!(settings.connections.max_connections < 1024);
        assert_eq!(settings.connections.max_request_headers, 16 * 1024);
        assert_eq!(settings.connections.http2_max_concurrent_streams, 128);
        let settings = minimal(
            "max_connections = 100\nmax_connections_per_client = 10\n\
             max_request_headers_kib = 64\nhttp2_max_concurrent_streams = 16\n\
             body_read_timeout = \"2s\"\nwebsocket_max_lifetime = \"5m\"\n\
             websocket_revocation_check = \"500ms\"\n",
        );
        assert_eq!(
            settings.connections,
            ConnectionSettings {
                first_byte_timeout: None,
                max_connections: 100,
                max_connections_per_client: 10,
                max_request_headers: 64 * 1024,
                http2_max_concurrent_streams: 16,
                body_read_timeout: Duration::from_secs(2),
                websocket_max_lifetime: Duration::from_secs(300),
                websocket_revocation_check: Duration::from_millis(500),
            }
        );
        let settings = minimal("header_read_timeout = \"5s\"\nfirst_byte_timeout = \"1s\"\n");
        assert_eq!(
            settings.connections.first_byte_timeout,
            Some(Duration::from_secs(1))
        );
        // The per-client default never exceeds the total.
        let settings = minimal("max_connections = 8\n");
        assert_eq!(settings.connections.max_connections_per_client, 8);
        for bad in [
            "max_connections = 0\n",
            "max_connections = 8\nmax_connections_per_client = 9\n",
            "max_connections_per_client = 0\n",
            "max_request_headers_kib = 0\n",
            "max_request_headers_kib = 1025\n",
            "http2_max_concurrent_streams = 0\n",
            "http2_max_concurrent_streams = 1025\n",
            "body_read_timeout = \"0s\"\n",
            "websocket_max_lifetime = \"forever\"\n",
            "header_read_timeout = \"5s\"\nfirst_byte_timeout = \"6s\"\n",
        ] {
            let err = error(&format!("[server]\n{bad}"));
            assert!(
                err.key().is_some_and(|key| key.starts_with("server.")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_hmac_key_file_loses_one_final_newline_only() {
        assert_eq!(hmac_secret(b"secret"), b"secret");
        assert_eq!(hmac_secret(b"secret\n"), b"secret");
        assert_eq!(hmac_secret(b"secret\r\n"), b"secret");
        assert_eq!(hmac_secret(b"secret\n\n"), b"secret\n");
        assert_eq!(hmac_secret(b"secret "), b"secret ");
        assert_eq!(hmac_secret(b""), b"");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_their_line() {
        let err = error("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n");
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.message().contains("listn"), "{err}");

        let err = error("[server]\n\nlisten = 5\n");
        assert_eq!(err.line(), Some(3), "{err}");
        assert_eq!(err.key(), Some("listen"), "{err}");
    }

    #[test]
    fn values_that_cannot_be_honoured_name_key_and_line() {
        let keys = "[keys]\nsigning_key = \"ephemeral\"\n[guard]\nissuers = [\"a\"]\n";
        let err = error(&format!(
            "{keys}ip_deny = [\"10.0.0.0/8\",\n  \"10.0.0.0/33\"]\n"
        ));
        assert_eq!(err.key(), Some("guard.ip_deny[1]"), "{err}");
        assert_eq!(err.line(), Some(6), "{err}");

        let err = error(&format!(
            "{keys}public_paths = [\"/public/\", \"/a/..;/b\"]\n"
        ));
        assert_eq!(err.key(), Some("guard.public_paths[1]"), "{err}");

        let err = error("[keys]\nsigning_key = \"ephemeral\"\n[[login]]\npreset = \"cookie\"\n");
        assert_eq!(err.key(), Some("login[0].preset"), "{err}");
        assert_eq!(err.line(), Some(4), "{err}");
        assert!(err.message().contains("cookie_session"), "{err}");

        let err = error("[keys]\nsigning_key = \"missing.pem\"\n");
        assert_eq!(err.key(), Some("keys.signing_key"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/gateway.toml:2: keys.signing_key: cannot read"),
            "{err}"
        );

        let err = error("[upstream]\nurl = \"ftp://example.com\"\n");
        assert_eq!(err.key(), Some("upstream.url"), "{err}");
        let err = error("[upstream]\nurl = \"https://example.com\"\nprotocol = \"h2c\"\n");
        assert_eq!(err.key(), Some("upstream.protocol"), "{err}");
        assert_eq!(err.line(), Some(3), "{err}");
        let err = error("[upstream]\nurl = \"http://example.com\"\nprotocol = \"h2\"\n");
        assert_eq!(err.key(), Some("upstream.protocol"), "{err}");
        let err = error("[upstream]\nurl = \"http://example.com\"\nprotocol = \"h3\"\n");
        assert!(err.message().contains("http1, h2c, h2"), "{err}");
        let err = error("[upstream]\nurl = \"http://example.com\"\nidle_connections = 70000\n");
        assert_eq!(err.key(), Some("upstream.idle_connections"), "{err}");
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.message().contains("0 to 65536"), "{err}");
        let err = error("[upstream]\nurl = \"http://example.com\"\nidle_connections = -1\n");
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.to_string().contains("idle_connections"), "{err}");
        let err = error("[upstream]\nurl = \"http://example.com\"\nca = \"ca.pem\"\n");
        assert_eq!(err.key(), Some("upstream.ca"), "{err}");
        let err = error("[upstream]\nurl = \"https://example.com\"\nca = \"ca.pem\"\n");
        assert_eq!(err.key(), Some("upstream.ca"), "{err}");
        assert!(err.message().contains("/nonexistent/ca.pem"), "{err}");

        let err = error("[server.tls]\ncert = \"chain.pem\"\nkey = \"key.pem\"\n");
        assert_eq!(err.key(), Some("server.tls.cert"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(err.message().contains("/nonexistent/chain.pem"), "{err}");

        let err = error("[keys]\nsigning_key = \"ephemeral\"\n[users]\nfile = \"users.toml\"\n");
        assert_eq!(err.key(), Some("users.file"), "{err}");
        assert_eq!(err.line(), Some(4), "{err}");

        let err = error(&format!("{keys}[identity]\nsubject = \"Authorization\"\n"));
        assert_eq!(err.key(), Some("identity"), "{err}");
        let err = error(&format!(
            "{keys}[identity]\nsubject = \"X-User\"\nclaims = \"X_User\"\n"
        ));
        assert_eq!(err.key(), Some("identity"), "{err}");
    }

    #[test]
    fn presets_need_users_and_keys() {
        let err = error("[[login]]\npreset = \"bearer_pair\"\n");
        assert_eq!(err.key(), Some("keys.signing_key"), "{err}");
        let err =
            error("[keys]\nsigning_key = \"ephemeral\"\n[[login]]\npreset = \"bearer_pair\"\n");
        assert_eq!(err.key(), Some("users.file"), "{err}");
    }

    #[test]
    fn routes_meet_when_a_request_could_match_both() {
        assert!(routes_meet("/api/login", "/api/login"));
        assert!(routes_meet(
            "/api/serviceAccounts/{id}",
            "/api/serviceAccounts/verify"
        ));
        assert!(!routes_meet("/api/login", "/api/login/refresh"));
        assert!(!routes_meet("/auth", "/auth/login"));
        assert!(!routes_meet("/login", "/login/"));
    }

    /// Every route the collision check lists is one the presets' routers
    /// serve (a listed route the router lacks would fall to the proxy's
    /// 404), so the list keeps up with the presets.
    #[tokio::test]
    async fn the_listed_preset_routes_are_served_by_the_presets() {
        use tower::ServiceExt;
        let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway-users.toml");
        let mut text = format!(
            "[keys]\nsigning_key = \"ephemeral\"\n[users]\nfile = {:?}\n",
            users.display().to_string()
        );
        for name in PresetKind::NAMES {
            text.push_str(&format!("[[login]]\npreset = \"{name}\"\n"));
        }
        text.push_str("deprecated_get = true\n");
        let settings = Settings::from_toml("/nonexistent/gateway.toml", &text).unwrap();
        let router = crate::gateway::Gateway::build(&settings).unwrap().router();
        for name in PresetKind::NAMES {
            let preset = PresetKind::parse(name).unwrap();
            // `/user` is served only with registration, which the gateway
            // does not configure.
            for route in preset_routes(preset).iter().filter(|r| **r != "/user") {
                let path = route.replace("{username}", "x").replace("{id}", "x");
                let request = http::Request::get(&path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                assert_ne!(
                    response.status(),
                    http::StatusCode::NOT_FOUND,
                    "{name}: {path}"
                );
            }
        }
    }

    #[test]
    fn a_minimal_file_has_defaults() {
        let settings = Settings::from_toml(
            "gateway.toml",
            "[keys]\nsigning_key = \"ephemeral\"\n[guard]\nissuers = [\"authgate\"]\n",
        )
        .unwrap();
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.verify_path, DEFAULT_VERIFY_PATH);
        assert_eq!(settings.identity.subject, "x-auth-subject");
        assert_eq!(settings.token_sources.len(), 3);
    }

    #[test]
    fn rules_are_checked_and_each_mistake_names_its_key() {
        let base = "[keys]\nsigning_key = \"ephemeral\"\n[guard]\nissuers = [\"a\"]\n";
        let rules =
            |text: &str| Settings::from_toml("/nonexistent/gateway.toml", &format!("{base}{text}"));
        let ok = rules(
            "[authz]\ndefault = \"deny\"\n[[rule]]\nname = \"read\"\npath = \"/admin/\"\n\
             methods = [\"GET\"]\nroles = [\"admin\", \"auditor\"]\n[[rule]]\npath = \"/admin/\"\n\
             roles = [\"admin\"]\n[[rule]]\npath = \"/status\"\npublic = true\n",
        )
        .unwrap();
        assert_eq!(ok.rules.len(), 3);
        assert_eq!(ok.rules.rule_for(&Method::GET, "/admin/x"), Some("read"));
        // An unnamed rule is labelled by its place.
        assert_eq!(
            ok.rules.rule_for(&Method::POST, "/admin/x"),
            Some("rule[1]")
        );
        assert_eq!(ok.rules.rule_for(&Method::GET, "/elsewhere"), None);
        // No rules: any verified token, as before rules existed; rules
        // without a default: deny.
        let none = rules("").unwrap();
        assert!(none.rules.is_empty());

        for (text, key, says) in [
            (
                "[[rule]]\npath = \"/a/\"\nmethods = []\n",
                "rule[0].methods",
                "empty list",
            ),
            (
                "[[rule]]\npath = \"/a/\"\nmethods = [\"get\"]\n",
                "rule[0].methods",
                "upper case",
            ),
            (
                "[[rule]]\npath = \"/a/\"\nroles = []\n",
                "rule[0].roles",
                "at least one",
            ),
            (
                "[[rule]]\npath = \"/a/\"\nscopes = [\"\"]\n",
                "rule[0].scopes",
                "none empty",
            ),
            (
                "[[rule]]\npath = \"/a/\"\npublic = true\nroles = [\"x\"]\n",
                "rule[0].roles",
                "public rule",
            ),
            ("[[rule]]\npath = \"/a/../b\"\n", "rule[0].path", "plain"),
            ("[[rule]]\npath = \"a/\"\n", "rule[0].path", "starts with /"),
            (
                "[[rule]]\nname = \"a b\"\npath = \"/a/\"\n",
                "rule[0].name",
                "metrics label",
            ),
            (
                "[[rule]]\nname = \"default\"\npath = \"/a/\"\n",
                "rule[0].name",
                "default",
            ),
            (
                "[[rule]]\nname = \"x\"\npath = \"/a/\"\n[[rule]]\nname = \"x\"\npath = \"/b/\"\n",
                "rule[1].name",
                "already",
            ),
            (
                "[[rule]]\npath = \"/a/\"\n[[rule]]\npath = \"/a/b\"\nroles = [\"x\"]\n",
                "rule[1].path",
                "never match",
            ),
            (
                "[[rule]]\npath = \"/a\"\nmethods = [\"GET\", \"POST\"]\n[[rule]]\npath = \"/a\"\nmethods = [\"POST\"]\n",
                "rule[1].path",
                "never match",
            ),
            ("[authz]\ndefault = \"allow\"\n", "authz.default", "deny"),
        ] {
            let err = rules(text).unwrap_err();
            assert_eq!(err.key(), Some(key), "{text}: {err}");
            assert!(err.message().contains(says), "{text}: {err}");
            assert!(err.line().is_some(), "{text}: {err}");
        }
        // An unknown key is an error naming it.
        let err = rules("[[rule]]\npath = \"/a/\"\nrole = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
        // Narrower methods first, then the whole path: both can match.
        rules("[[rule]]\npath = \"/a/\"\nmethods = [\"GET\"]\n[[rule]]\npath = \"/a/\"\nroles = [\"x\"]\n").unwrap();
        // A public rule does not take the encoded readings of a later one.
        rules(
            "[[rule]]\npath = \"/a/\"\npublic = true\n[[rule]]\npath = \"/a/b\"\nroles = [\"x\"]\n",
        )
        .unwrap();
        // A public rule over `/` is the `public_root` risk.
        let settings = rules("[[rule]]\npath = \"/\"\npublic = true\n").unwrap();
        let sites = &settings.risk_sites;
        assert_eq!(
            sites.public_root.as_ref().map(|(key, _)| key.as_str()),
            Some("rule[0].path")
        );
    }
}
