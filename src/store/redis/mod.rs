//! Redis stores (feature `redis`): revocations, lockout counters, used TOTP
//! steps, rotated refresh tokens, service accounts and one-time login codes,
//! shared by every instance of a service, on one Redis server, a Redis
//! Cluster or a master found through Sentinel.
//!
//! # Topologies
//!
//! [`RedisStore::open`] takes one URL ([`RedisTopology::parse`]):
//!
//! - `redis://HOST:PORT/` or `rediss://HOST:PORT/` (TLS): one server, over a
//!   connection that reconnects by itself;
//! - `redis://HOST:PORT,redis://HOST:PORT,…`: a Redis Cluster, reached
//!   through any of the nodes listed (the others are discovered);
//! - `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME`:
//!   the master named `MASTER_NAME`, found through the sentinels listed (the
//!   credentials are those of the Redis nodes). After a failover the store
//!   asks the sentinels again and follows the new master.
//!
//! Every key that one command or script touches shares a hash slot (the
//! lockout counters and their index carry the hash tag `{lockout}`), so every
//! operation runs unchanged on a cluster.
//!
//! # Atomic, expiring, prefixed
//!
//! Every operation that decides something is atomic on the server (`SET …
//! NX`, or a Lua script), every key carries an expiry so nothing outlives
//! its purpose, and every key starts with a configurable prefix.
//!
//! # Revocations at local speed
//!
//! Revocation checks run on every guarded request. The store keeps their
//! answers in a bounded local cache that the server keeps exact: a
//! revocation is written and announced on the pub/sub channel
//! `PREFIX + "revocations"` in one script, and every store listens on that
//! channel over a connection of its own. A check answered from the cache
//! comes back as [`RevocationCheck::Ready`](crate::store::RevocationCheck::Ready):
//! no round trip, no allocation. The cache fails closed:
//!
//! - it is used only while the listening connection is subscribed and
//!   answers its heartbeat ([`RedisStoreConfig::invalidation_heartbeat`]);
//!   when that connection is lost the cache is dropped and every check reads
//!   Redis until the subscription is back;
//! - an answer read from Redis is kept only if no announcement arrived and
//!   the connection did not change while it was being read (a generation
//!   counter, bumped by both), so a read that raced a revocation never
//!   leaves a stale "not revoked" behind.
//!
//! Only revocations made through a `RedisStore` are announced: a key written
//! into Redis by other means reaches the caches only when the listening
//! connection is re-established. [`RedisStoreConfig::local_cache_capacity`]
//! `0` turns the cache off.
//!
//! # When Redis cannot be reached
//!
//! The configured [`Unreachable`] policy holds: by default the store fails
//! closed (a [`StoreError`]: logins answer `503`, and no token is accepted
//! whose revocation status cannot be checked).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use tower_authgate::store::{RedisStore, RedisStoreConfig};
//!
//! # async fn run() -> Result<(), tower_authgate::store::StoreError> {
//! // One server, a cluster or sentinels: the URL says which.
//! let store = Arc::new(RedisStore::open(
//!     "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/authgate",
//!     RedisStoreConfig::default(),
//! )?);
//! # let _ = store;
//! # Ok(()) }
//! ```

mod lockout;
mod login_codes;
mod otp;
mod revocations;
mod rotations;
mod service_accounts;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult,
    Value,
};

use crate::BoxFuture;
use crate::store::StoreError;

use self::revocations::Revocations;

/// What a Redis store does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unreachable {
    /// Refuse: revocation checks and lockout operations fail with a
    /// [`StoreError`] (the default).
    #[default]
    FailClosed,
    /// Carry on as if the store were empty: tokens count as not revoked,
    /// accounts as not locked, TOTP steps as unused, failures go uncounted.
    /// Only by explicit choice.
    FailOpen,
}

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// Prefix of every key and of the invalidation channel (default
    /// `"authgate:"`). It may not contain `{` or `}`: the stores place their
    /// own hash tags after it.
    pub prefix: String,
    /// What to do when Redis cannot be reached.
    pub unreachable: Unreachable,
    /// How long to wait for a connection (default 1 s).
    pub connection_timeout: Duration,
    /// How long to wait for an answer (default 1 s).
    pub response_timeout: Duration,
    /// Revocation answers kept locally, invalidated over pub/sub (default
    /// 100,000; `0` turns the local cache off and every check reads Redis).
    pub local_cache_capacity: usize,
    /// How often the listening connection is pinged (default 250 ms). The
    /// local cache is dropped when a ping goes unanswered for
    /// [`response_timeout`](Self::response_timeout), so a connection that
    /// died silently is trusted for at most the sum of the two.
    pub invalidation_heartbeat: Duration,
}

impl RedisStoreConfig {
    /// With `prefix` set to `prefix`.
    pub fn with_prefix(mut self, prefix: String) -> Self {
        self.prefix = prefix;
        self
    }

    /// With `unreachable` set to `unreachable`.
    pub fn with_unreachable(mut self, unreachable: Unreachable) -> Self {
        self.unreachable = unreachable;
        self
    }

    /// With `connection_timeout` set to `connection_timeout`.
    pub fn with_connection_timeout(mut self, connection_timeout: Duration) -> Self {
        self.connection_timeout = connection_timeout;
        self
    }

    /// With `response_timeout` set to `response_timeout`.
    pub fn with_response_timeout(mut self, response_timeout: Duration) -> Self {
        self.response_timeout = response_timeout;
        self
    }

    /// With `local_cache_capacity` set to `local_cache_capacity`.
    pub fn with_local_cache_capacity(mut self, local_cache_capacity: usize) -> Self {
        self.local_cache_capacity = local_cache_capacity;
        self
    }

    /// With `invalidation_heartbeat` set to `invalidation_heartbeat`.
    pub fn with_invalidation_heartbeat(mut self, invalidation_heartbeat: Duration) -> Self {
        self.invalidation_heartbeat = invalidation_heartbeat;
        self
    }
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig {
            prefix: "authgate:".into(),
            unreachable: Unreachable::FailClosed,
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            local_cache_capacity: 100_000,
            invalidation_heartbeat: Duration::from_millis(250),
        }
    }
}

/// Where the Redis data lives: one server, a cluster, or a master found
/// through Sentinel.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTopology {
    /// One server: a `redis://`, `rediss://` or `unix://` URL.
    Single(String),
    /// A Redis Cluster, reached through any of these `redis://` or
    /// `rediss://` node URLs.
    Cluster(Vec<String>),
    /// The master `master_name`, found through these sentinels.
    Sentinel {
        /// The sentinels, as `redis://HOST:PORT` URLs.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// The username for the Redis nodes, if any.
        username: Option<String>,
        /// The password for the Redis nodes, if any.
        password: Option<String>,
    },
}

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTopology::Single(url) => f.debug_tuple("Single").field(&redacted(url)).finish(),
            RedisTopology::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|url| redacted(url)).collect::<Vec<_>>())
                .finish(),
            RedisTopology::Sentinel {
                sentinels,
                master_name,
                username,
                password,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master_name", master_name)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "REDACTED"))
                .finish(),
        }
    }
}

/// The URL with any password replaced by `REDACTED`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "REDACTED".into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://REDACTED@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The port a sentinel listens on when its address names none.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

impl RedisTopology {
    /// Reads a `REDIS_URL`-style string: one `redis://` or `rediss://` URL
    /// (a single server), a comma-separated list of such URLs (a cluster),
    /// or `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return parse_sentinel(rest);
        }
        if url.contains(',') {
            let nodes: Vec<String> = url.split(',').map(|node| node.trim().to_owned()).collect();
            for node in &nodes {
                if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                    return Err(StoreError(format!(
                        "redis: a cluster node must be a redis:// or rediss:// URL, not {:?}",
                        redacted(node)
                    )));
                }
            }
            return Ok(RedisTopology::Cluster(nodes));
        }
        if url.is_empty() {
            return Err(StoreError("redis: the URL is empty".into()));
        }
        Ok(RedisTopology::Single(url.to_owned()))
    }
}

fn parse_sentinel(rest: &str) -> Result<RedisTopology, StoreError> {
    let bad = |why: &str| {
        StoreError(format!(
            "redis: {why}; expected redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME"
        ))
    };
    let (authority, master_name) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
    let master_name = master_name.trim_end_matches('/');
    if master_name.is_empty() || master_name.contains(['/', '?', '#']) {
        return Err(bad("the master name is missing or not a plain name"));
    }
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(credentials) => {
            // Percent-decoding as in any redis:// URL.
            let info = format!("redis://{credentials}@127.0.0.1/")
                .into_connection_info()
                .map_err(|_| bad("the credentials are not valid URL userinfo"))?;
            let settings = info.redis_settings();
            (
                settings.username().map(str::to_owned),
                settings.password().map(str::to_owned),
            )
        }
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        if host.is_empty() {
            return Err(bad("an empty sentinel address"));
        }
        let with_port = match host.rsplit_once(':') {
            Some((_, port)) if !host.ends_with(']') => {
                port.parse::<u16>()
                    .map_err(|_| bad("a sentinel port is not a number"))?;
                host.to_owned()
            }
            _ => format!("{host}:{DEFAULT_SENTINEL_PORT}"),
        };
        sentinels.push(format!("redis://{with_port}"));
    }
    Ok(RedisTopology::Sentinel {
        sentinels,
        master_name: master_name.to_owned(),
        username,
        password,
    })
}

/// One Redis deployment serving as [`RevocationStore`](crate::store::RevocationStore),
/// [`LockoutStore`](crate::store::LockoutStore) and
/// [`OtpReplayGuard`](crate::store::OtpReplayGuard). Cheap to clone; the
/// local revocation cache and its listening connection are shared by the
/// clones and stop with the last one.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    config: Arc<RedisStoreConfig>,
    revocations: Arc<Revocations>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("local_cache_active", &self.local_cache_active())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the deployment `url` names (see [`RedisTopology::parse`]:
    /// one server, a cluster, or sentinels). Connections are made lazily, so
    /// a service can start while Redis is down; they are made again when
    /// Redis returns. Call it inside a Tokio runtime (the connections run on
    /// it); outside one it returns an error.
    pub fn open(url: &str, config: RedisStoreConfig) -> Result<Self, StoreError> {
        Self::open_topology(RedisTopology::parse(url)?, config)
    }

    /// A store on `topology`; see [`open`](Self::open).
    pub fn open_topology(
        topology: RedisTopology,
        config: RedisStoreConfig,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError("RedisStore::open must be called inside a Tokio runtime".into())
        })?;
        if config.prefix.contains(['{', '}']) {
            return Err(StoreError(format!(
                "redis: the key prefix may not contain `{{` or `}}` (it precedes the stores' hash tags): {:?}",
                config.prefix
            )));
        }
        install_tls_provider(&topology);
        let (connection, listener) = connect(&topology, &config)?;
        let config = Arc::new(config);
        let revocations = Revocations::start(&runtime, listener, &config);
        Ok(RedisStore {
            connection,
            config,
            revocations,
        })
    }

    /// Whether revocation checks are being answered from the local cache
    /// now: the cache is on and its listening connection is subscribed.
    /// While this is `false`, every check reads Redis.
    pub fn local_cache_active(&self) -> bool {
        self.revocations.cache_active()
    }

    /// The connection for one store operation: each command it sends is
    /// timed and its failure counted under `operation` (see
    /// [`observe`](crate::observe)).
    fn connection_for(&self, operation: &'static str) -> Timed {
        Timed {
            connection: self.connection.clone(),
            operation,
        }
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.config.prefix)
    }

    /// Applies the [`Unreachable`] policy to a Redis answer.
    fn settle<T>(&self, result: RedisResult<T>, open_value: T) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(_) if self.config.unreachable == Unreachable::FailOpen => Ok(open_value),
            Err(err) => Err(store_error(&err)),
        }
    }
}

fn store_error(err: &redis::RedisError) -> StoreError {
    StoreError(format!("redis: {err}"))
}

/// `rediss://` needs a process-wide rustls crypto provider; aws-lc-rs is
/// already this crate's.
fn install_tls_provider(topology: &RedisTopology) {
    let uses_tls = match topology {
        RedisTopology::Single(url) => url.starts_with("rediss://"),
        RedisTopology::Cluster(nodes) => nodes.iter().any(|url| url.starts_with("rediss://")),
        RedisTopology::Sentinel { .. } => false,
    };
    if uses_tls {
        // An application that installed its own provider keeps it.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The RESP3 form of a client: the listening connection reads pushes.
fn resp3(client: &Client) -> RedisResult<Client> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings))
}

/// The connections for `topology`: the one commands go through, and where
/// the invalidation listener subscribes.
fn connect(
    topology: &RedisTopology,
    config: &RedisStoreConfig,
) -> Result<(Connection, revocations::ListenerSource), StoreError> {
    let err = |e: redis::RedisError| store_error(&e);
    let retry_delay = Duration::from_millis(50);
    match topology {
        RedisTopology::Single(url) => {
            let client = Client::open(url.as_str()).map_err(err)?;
            let listener = revocations::ListenerSource::Nodes(vec![resp3(&client).map_err(err)?]);
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connection_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(200));
            let manager =
                ConnectionManager::new_lazy_with_config(client, manager_config).map_err(err)?;
            Ok((Connection::Single(manager), listener))
        }
        RedisTopology::Cluster(nodes) => {
            let mut listeners = Vec::with_capacity(nodes.len());
            for node in nodes {
                listeners.push(resp3(&Client::open(node.as_str()).map_err(err)?).map_err(err)?);
            }
            let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(config.connection_timeout)
                .response_timeout(config.response_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map_err(err)?;
            let client = Arc::new(client);
            let connect: ConnectFn<ClusterConnection> = Box::new(move || {
                let client = Arc::clone(&client);
                Box::pin(async move { client.get_async_connection().await })
            });
            Ok((
                Connection::Cluster(Arc::new(Reconnecting::new(
                    connect,
                    // The cluster connection finds moved slots and
                    // reconnects to nodes by itself.
                    false,
                    retry_delay,
                    config.connection_timeout * 2,
                ))),
                revocations::ListenerSource::Nodes(listeners),
            ))
        }
        RedisTopology::Sentinel {
            sentinels,
            master_name,
            username,
            password,
        } => {
            let sentinel_client = || -> Result<SentinelClient, StoreError> {
                let mut node = redis::RedisConnectionInfo::default();
                if let Some(username) = username {
                    node = node.set_username(username);
                }
                if let Some(password) = password {
                    node = node.set_password(password);
                }
                SentinelClient::build(
                    sentinels.clone(),
                    master_name.clone(),
                    Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
                    SentinelServerType::Master,
                )
                .map_err(err)
            };
            let commands = Arc::new(tokio::sync::Mutex::new(sentinel_client()?));
            let node_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connection_timeout))
                .set_response_timeout(Some(config.response_timeout));
            let connect: ConnectFn<MultiplexedConnection> = Box::new(move || {
                let commands = Arc::clone(&commands);
                let node_config = node_config.clone();
                Box::pin(async move {
                    commands
                        .lock()
                        .await
                        .get_async_connection_with_config(&node_config)
                        .await
                })
            });
            Ok((
                Connection::Sentinel(Arc::new(Reconnecting::new(
                    connect,
                    // After a failover the old master is dead or read-only:
                    // ask the sentinels again.
                    true,
                    retry_delay,
                    config.connection_timeout * 2,
                ))),
                revocations::ListenerSource::Sentinel(Arc::new(tokio::sync::Mutex::new(
                    sentinel_client()?,
                ))),
            ))
        }
    }
}

/// The connection commands go through, whatever the topology.
#[derive(Clone)]
enum Connection {
    /// One server, through a reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// A cluster, through a cluster connection made on first use.
    Cluster(Arc<Reconnecting<ClusterConnection>>),
    /// The master the sentinels name, found again after a failover.
    Sentinel(Arc<Reconnecting<MultiplexedConnection>>),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(reconnecting) => Box::pin(async move {
                reconnecting
                    .run(|mut connection| async move { connection.req_packed_command(cmd).await })
                    .await
            }),
            Connection::Sentinel(reconnecting) => Box::pin(async move {
                reconnecting
                    .run(|mut connection| async move { connection.req_packed_command(cmd).await })
                    .await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(reconnecting) => Box::pin(async move {
                reconnecting
                    .run(|mut connection| async move {
                        connection
                            .req_packed_commands(pipeline, offset, count)
                            .await
                    })
                    .await
            }),
            Connection::Sentinel(reconnecting) => Box::pin(async move {
                reconnecting
                    .run(|mut connection| async move {
                        connection
                            .req_packed_commands(pipeline, offset, count)
                            .await
                    })
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(manager) => manager.get_db(),
            Connection::Cluster(_) | Connection::Sentinel(_) => 0,
        }
    }
}

/// A [`Connection`] whose commands are timed and whose failures are
/// counted, under the name of the store operation that sends them.
#[derive(Clone)]
struct Timed {
    connection: Connection,
    operation: &'static str,
}

impl Timed {
    async fn observe<T>(operation: &'static str, command: RedisFuture<'_, T>) -> RedisResult<T> {
        let started = Instant::now();
        let result = command.await;
        crate::observe::store_operation_took("redis", operation, started.elapsed());
        if let Err(err) = &result
            // A script not cached yet is loaded and run again by the
            // client: not a failure.
            && err.kind() != redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            crate::observe::store_operation_failed("redis", operation, err);
        }
        result
    }
}

impl ConnectionLike for Timed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let operation = self.operation;
        Box::pin(Self::observe(
            operation,
            self.connection.req_packed_command(cmd),
        ))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let operation = self.operation;
        Box::pin(Self::observe(
            operation,
            self.connection.req_packed_commands(pipeline, offset, count),
        ))
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}

/// Makes a connection.
type ConnectFn<C> = Box<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;

/// A connection made on first use and made again when it fails: one
/// attempt at a time, and after a failed attempt none for `retry_delay`, so
/// that an outage does not turn every request into a connection attempt.
struct Reconnecting<C> {
    current: ArcSwapOption<C>,
    /// Held while connecting; when the last attempt failed, the moment
    /// before which no other is made.
    connecting: tokio::sync::Mutex<Option<Instant>>,
    connect: ConnectFn<C>,
    /// Whether a connection error makes the next command connect anew.
    replace_on_error: bool,
    retry_delay: Duration,
    connect_timeout: Duration,
}

impl<C: Clone + Send + Sync + 'static> Reconnecting<C> {
    fn new(
        connect: ConnectFn<C>,
        replace_on_error: bool,
        retry_delay: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Reconnecting {
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(None),
            connect,
            replace_on_error,
            retry_delay,
            connect_timeout,
        }
    }

    async fn connection(&self) -> RedisResult<Arc<C>> {
        if let Some(connection) = self.current.load_full() {
            return Ok(connection);
        }
        let mut retry_at = self.connecting.lock().await;
        if let Some(connection) = self.current.load_full() {
            return Ok(connection);
        }
        if retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected",
                "the last connection attempt failed moments ago".to_owned(),
            )));
        }
        let made = match tokio::time::timeout(self.connect_timeout, (self.connect)()).await {
            Ok(made) => made,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "connection timed out",
            ))),
        };
        match made {
            Ok(connection) => {
                let connection = Arc::new(connection);
                self.current.store(Some(Arc::clone(&connection)));
                *retry_at = None;
                Ok(connection)
            }
            Err(err) => {
                *retry_at = Some(Instant::now() + self.retry_delay);
                Err(err)
            }
        }
    }

    /// Runs `command` on the connection, replacing the connection after an
    /// error that says it is gone or no longer the master.
    async fn run<T, F>(&self, command: impl FnOnce(C) -> F) -> RedisResult<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = command(C::clone(&connection)).await;
        if let Err(err) = &result
            && self.replace_on_error
            && connection_lost(err)
        {
            let current = self.current.load();
            if current
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &connection))
            {
                self.current.store(None);
            }
        }
        result
    }
}

/// Whether an error means the connection must be replaced: it is gone, or
/// its server is no longer a master.
fn connection_lost(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_url_forms() {
        assert_eq!(
            RedisTopology::parse("redis://127.0.0.1:6379/").unwrap(),
            RedisTopology::Single("redis://127.0.0.1:6379/".into())
        );
        assert_eq!(
            RedisTopology::parse("rediss://cache.example:6380/0").unwrap(),
            RedisTopology::Single("rediss://cache.example:6380/0".into())
        );
        assert_eq!(
            RedisTopology::parse("redis://10.0.0.1:7000, redis://10.0.0.2:7000").unwrap(),
            RedisTopology::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ])
        );
        assert_eq!(
            RedisTopology::parse("redis+sentinel://:s%40cret@10.0.0.1:26380,10.0.0.2/authgate")
                .unwrap(),
            RedisTopology::Sentinel {
                sentinels: vec![
                    "redis://10.0.0.1:26380".into(),
                    "redis://10.0.0.2:26379".into()
                ],
                master_name: "authgate".into(),
                username: None,
                password: Some("s@cret".into()),
            }
        );
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_passwords() {
        for bad in [
            "",
            "redis://a:1,http://b:2",
            "redis+sentinel://10.0.0.1:26379",
            "redis+sentinel://10.0.0.1:26379/",
            "redis+sentinel://10.0.0.1:port/name",
            "redis+sentinel://10.0.0.1:1,,10.0.0.2:2/name",
            "redis+sentinel://10.0.0.1:1/a/b",
        ] {
            assert!(RedisTopology::parse(bad).is_err(), "{bad:?}");
        }
        let err = RedisTopology::parse("redis://u:hunter2@a:1,ftp://u:hunter2@b:2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let topology = RedisTopology::parse("redis://u:hunter2@a:1/").unwrap();
        assert!(!format!("{topology:?}").contains("hunter2"));
        let topology = RedisTopology::parse("redis+sentinel://u:hunter2@a:1/m").unwrap();
        assert!(!format!("{topology:?}").contains("hunter2"));
    }
}
