//! Revocations in Redis, read through a local cache that pub/sub keeps
//! exact.
//!
//! A revocation is one script: `SET key 1 NX EXAT until` and `PUBLISH` of
//! the id on `PREFIX + "revocations"`, so no revocation is ever written
//! without being announced. Each store subscribes to that channel on a RESP3
//! connection of its own (the listener) and applies every announcement to
//! its cache as it arrives. On a cluster the announcement reaches every
//! node, so the listener subscribes on any one of them.
//!
//! The cache answers only while the listener is subscribed. Its state is one
//! word: a flag "listener subscribed" and a generation counter, bumped by
//! every announcement and by every loss or return of the listener. A check
//! that misses the cache takes the word before reading Redis and keeps the
//! answer only if the word is unchanged when the answer comes back: a read
//! that raced an announcement, or that began before the subscription, is
//! used once and not kept.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisResult, Script, Value};

use super::{RedisStore, RedisStoreConfig};
use crate::BoxFuture;
use crate::store::{RevocationCheck, RevocationStore, StoreError};

/// Sets the revocation key once and announces the id. KEYS[1]: the
/// revocation key; ARGV: until, the channel, the id. Returns 1 when this
/// call set the key. The id is announced either way, which also reaches
/// caches about a key written by other means.
const REVOKE: &str = r"
local set = redis.call('SET', KEYS[1], 1, 'NX', 'EXAT', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
if set then return 1 end
return 0
";

/// Moves a subject's cut-off forward (never back) and announces it.
/// KEYS[1]: the subject's key, holding `CUT_OFF:UNTIL`; ARGV: cut-off,
/// until, the channel, the subject. The key lives until the later `until`;
/// the announcement is `CUT_OFF SUBJECT`, the cut-off now in force, which
/// the script returns.
const REVOKE_SUBJECT: &str = r"
local cut = tonumber(ARGV[1])
local untl = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old then
  local c, u = string.match(old, '^(%d+):(%d+)$')
  if c then
    cut = math.max(cut, tonumber(c))
    untl = math.max(untl, tonumber(u))
  end
end
local cs = string.format('%d', cut)
redis.call('SET', KEYS[1], cs .. ':' .. string.format('%d', untl), 'EXAT', untl)
redis.call('PUBLISH', ARGV[3], cs .. ' ' .. ARGV[4])
return cut
";

/// The name the listening connection gives itself (`CLIENT LIST`).
pub(super) const LISTENER_NAME: &str = "authgate-invalidations";

/// The cache shards: a power of two, enough that two cores rarely meet on
/// one lock.
const SHARDS: usize = 16;

/// Where the listener subscribes.
pub(super) enum ListenerSource {
    /// One of these nodes (a single server, or any node of a cluster), taken
    /// in turn after each failure.
    Nodes(Vec<Client>),
    /// The master the sentinels name now.
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl ListenerSource {
    async fn client(&self, attempt: usize) -> RedisResult<Client> {
        match self {
            ListenerSource::Nodes(clients) => clients
                .get(attempt % clients.len().max(1))
                .cloned()
                .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no node"))),
            ListenerSource::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                super::resp3(&client)
            }
        }
    }
}

/// The revocation side of a [`RedisStore`]: the announcement script, the
/// local cache and the listener keeping it.
pub(super) struct Revocations {
    script: Script,
    channel: String,
    subject_script: Script,
    subject_channel: String,
    cache: Option<Arc<LocalCache>>,
    listener: Option<tokio::task::AbortHandle>,
}

impl Drop for Revocations {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl Revocations {
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        source: ListenerSource,
        config: &RedisStoreConfig,
    ) -> Arc<Self> {
        let channel = format!("{}revocations", config.prefix);
        let subject_channel = format!("{}subject-revocations", config.prefix);
        let (cache, listener) = if config.local_cache_capacity == 0 {
            (None, None)
        } else {
            let cache = Arc::new(LocalCache::new(
                config.local_cache_capacity,
                subject_channel.clone(),
            ));
            let settings = ListenerSettings {
                channel: channel.clone(),
                subject_channel: subject_channel.clone(),
                heartbeat: config.invalidation_heartbeat.max(Duration::from_millis(10)),
                connection_timeout: config.connection_timeout,
                response_timeout: config.response_timeout,
            };
            let task = runtime.spawn(listen(Arc::clone(&cache), source, settings));
            (Some(cache), Some(task.abort_handle()))
        };
        Arc::new(Revocations {
            script: Script::new(REVOKE),
            channel,
            subject_script: Script::new(REVOKE_SUBJECT),
            subject_channel,
            cache,
            listener,
        })
    }

    pub(super) fn cache_active(&self) -> bool {
        self.cache.as_ref().is_some_and(|cache| cache.active())
    }

    /// The cached answer for `id` and `family`, when the cache has one.
    fn cached(&self, id: &str, family: Option<&str>) -> Option<bool> {
        let cache = self.cache.as_ref()?;
        match cache.lookup(id)? {
            true => Some(true),
            false => match family {
                None => Some(false),
                Some(family) => cache.lookup(family),
            },
        }
    }
}

impl RevocationStore for RedisStore {
    fn revoke(&self, id: &str, until: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.key("revoked", id);
        let id = id.to_owned();
        Box::pin(async move {
            let mut connection = self.connection_for("revoke");
            // A failed revocation is never reported as done, whatever the
            // policy: the caller must know the token still works.
            let set: u8 = self
                .revocations
                .script
                .key(&key)
                .arg(until.max(1))
                .arg(&self.revocations.channel)
                .arg(&id)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| super::store_error(&e))?;
            if let Some(cache) = &self.revocations.cache {
                cache.record_revoked(&id);
            }
            Ok(set == 1)
        })
    }

    fn check(&self, id: &str, family: Option<&str>) -> RevocationCheck {
        if let Some(revoked) = self.revocations.cached(id, family) {
            return RevocationCheck::Ready(Ok(revoked));
        }
        // Taken before the read: the answer is kept only if nothing changed
        // meanwhile.
        let ticket = self
            .revocations
            .cache
            .as_ref()
            .and_then(|cache| cache.ticket().map(|ticket| (Arc::clone(cache), ticket)));
        let mut keys = vec![self.key("revoked", id)];
        if let Some(family) = family {
            keys.push(self.key("revoked", family));
        }
        let names = (id.to_owned(), family.map(str::to_owned));
        let store = self.clone();
        RevocationCheck::Pending(Box::pin(async move {
            let mut connection = store.connection_for("check_revoked");
            // MGET, not EXISTS: the answer for each key, to cache each. On a
            // cluster it is split by slot.
            let mget = redis::cmd("MGET").arg(&keys).to_owned();
            let mut read: RedisResult<Vec<Value>> = mget.query_async(&mut connection).await;
            if read.as_ref().is_err_and(super::connection_lost) {
                // A read is safe to repeat, on the connection made anew.
                read = mget.query_async(&mut connection).await;
            }
            let found = match read {
                Ok(values) if values.len() == keys.len() => {
                    Ok(values.iter().map(|value| *value != Value::Nil).collect())
                }
                Ok(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "MGET answered a different number of values",
                ))),
                Err(err) => Err(err),
            };
            let found: Vec<bool> = match store.settle(found.map(Some), None)? {
                Some(found) => found,
                // Fail open, by explicit choice: not revoked, not cached.
                None => return Ok(false),
            };
            if let Some((cache, ticket)) = ticket {
                cache.fill(ticket, &names.0, found[0]);
                if let (Some(family), Some(revoked)) = (&names.1, found.get(1)) {
                    cache.fill(ticket, family, *revoked);
                }
            }
            Ok(found.contains(&true))
        }))
    }

    fn revoke_subject(
        &self,
        subject: &str,
        cut_off: u64,
        until: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let key = self.key("revoked-subject", subject);
        let subject = subject.to_owned();
        Box::pin(async move {
            let mut connection = self.connection_for("revoke_subject");
            // As a revocation: a failure is always reported.
            let in_force: u64 = self
                .revocations
                .subject_script
                .key(&key)
                .arg(cut_off)
                .arg(until.max(1))
                .arg(&self.revocations.subject_channel)
                .arg(&subject)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| super::store_error(&e))?;
            if let Some(cache) = &self.revocations.cache {
                cache.record_subject(&subject, in_force);
            }
            Ok(())
        })
    }

    fn check_subject(&self, subject: &str, issued_at: u64) -> RevocationCheck {
        if let Some(cache) = &self.revocations.cache
            && let Some(cut_off) = cache.lookup_subject(subject)
        {
            return RevocationCheck::Ready(Ok(cut_off.is_some_and(|cut| issued_at <= cut)));
        }
        let ticket = self
            .revocations
            .cache
            .as_ref()
            .and_then(|cache| cache.ticket().map(|ticket| (Arc::clone(cache), ticket)));
        let key = self.key("revoked-subject", subject);
        let subject = subject.to_owned();
        let store = self.clone();
        RevocationCheck::Pending(Box::pin(async move {
            let mut connection = store.connection_for("check_subject");
            let get = redis::cmd("GET").arg(&key).to_owned();
            let mut read: RedisResult<Option<String>> = get.query_async(&mut connection).await;
            if read.as_ref().is_err_and(super::connection_lost) {
                read = get.query_async(&mut connection).await;
            }
            let cut_off = read.and_then(|value| match value {
                None => Ok(None),
                Some(value) => parse_cut_off(&value).map(Some).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "a subject's revocation is not CUT_OFF:UNTIL",
                    ))
                }),
            });
            let cut_off = match store.settle(cut_off.map(Some), None)? {
                Some(cut_off) => cut_off,
                // Fail open, by explicit choice: not revoked, not cached.
                None => return Ok(false),
            };
            if let Some((cache, ticket)) = ticket {
                cache.fill_subject(ticket, &subject, cut_off);
            }
            Ok(cut_off.is_some_and(|cut| issued_at <= cut))
        }))
    }
}

/// The cut-off of a subject's `CUT_OFF:UNTIL` value.
fn parse_cut_off(value: &str) -> Option<u64> {
    let (cut_off, until) = value.split_once(':')?;
    until.parse::<u64>().ok()?;
    cut_off.parse().ok()
}

/// The local cache of revocation answers.
struct LocalCache {
    /// Bit 0: the listener is subscribed; the rest: the generation.
    state: AtomicU64,
    /// The listener's current connection; a loss reported by an older one
    /// is ignored.
    session: AtomicU64,
    shards: Box<[RwLock<Shard>]>,
    /// Subjects and their cut-offs (`None`: none), sharded alike.
    subjects: Box<[RwLock<SubjectShard>]>,
    shard_capacity: usize,
    hasher: foldhash::fast::RandomState,
    /// The channel whose messages are subjects' cut-offs.
    subject_channel: String,
}

type Shard = HashMap<Box<str>, bool, foldhash::fast::RandomState>;
type SubjectShard = HashMap<Box<str>, Option<u64>, foldhash::fast::RandomState>;

const SUBSCRIBED: u64 = 1;
const GENERATION: u64 = 2;

impl LocalCache {
    fn new(capacity: usize, subject_channel: String) -> Self {
        LocalCache {
            state: AtomicU64::new(0),
            session: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            subjects: (0..SHARDS)
                .map(|_| RwLock::new(SubjectShard::default()))
                .collect(),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
            subject_channel,
        }
    }

    fn shard(&self, id: &str) -> &RwLock<Shard> {
        // The high bits: the map inside the shard uses the low ones.
        let index = (self.hasher.hash_one(id) >> 60) as usize % SHARDS;
        &self.shards[index]
    }

    fn subject_shard(&self, subject: &str) -> &RwLock<SubjectShard> {
        let index = (self.hasher.hash_one(subject) >> 60) as usize % SHARDS;
        &self.subjects[index]
    }

    /// The cached cut-off of `subject` (`Some(None)`: known to have none).
    fn lookup_subject(&self, subject: &str) -> Option<Option<u64>> {
        if !self.active() {
            return None;
        }
        let shard = self
            .subject_shard(subject)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(subject).copied()
    }

    /// Keeps a cut-off read from Redis, if nothing changed since `ticket`.
    fn fill_subject(&self, ticket: u64, subject: &str, cut_off: Option<u64>) {
        let mut shard = self
            .subject_shard(subject)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.state.load(Ordering::SeqCst) != ticket {
            return;
        }
        if shard.len() >= self.shard_capacity && !shard.contains_key(subject) {
            shard.clear();
        }
        shard.insert(subject.into(), cut_off);
    }

    /// `subject` is cut off at `cut_off`: announced, or done by this store.
    /// A cut-off only moves forward.
    fn record_subject(&self, subject: &str, cut_off: u64) {
        self.state.fetch_add(GENERATION, Ordering::SeqCst);
        let mut shard = self
            .subject_shard(subject)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.shard_capacity && !shard.contains_key(subject) {
            shard.clear();
        }
        let entry = shard.entry(subject.into()).or_insert(None);
        *entry = Some(entry.map_or(cut_off, |old| old.max(cut_off)));
    }

    fn active(&self) -> bool {
        self.state.load(Ordering::SeqCst) & SUBSCRIBED != 0
    }

    fn lookup(&self, id: &str) -> Option<bool> {
        if !self.active() {
            return None;
        }
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(id).copied()
    }

    /// The state a read from Redis starts from, if its answer may be kept.
    fn ticket(&self) -> Option<u64> {
        let state = self.state.load(Ordering::SeqCst);
        (state & SUBSCRIBED != 0).then_some(state)
    }

    /// Keeps an answer read from Redis, if nothing changed since `ticket`.
    fn fill(&self, ticket: u64, id: &str, revoked: bool) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the shard's lock: an announcement bumps the
        // generation before it takes the lock, so either this sees the bump
        // or the announcement's write comes after this one.
        if self.state.load(Ordering::SeqCst) != ticket {
            return;
        }
        self.insert(&mut shard, id, revoked);
    }

    fn insert(&self, shard: &mut Shard, id: &str, revoked: bool) {
        if shard.len() >= self.shard_capacity && !shard.contains_key(id) {
            // A full shard starts over; whatever it held is read again.
            shard.clear();
        }
        shard.insert(id.into(), revoked);
    }

    /// `id` is revoked: announced, or revoked by this store.
    fn record_revoked(&self, id: &str) {
        self.state.fetch_add(GENERATION, Ordering::SeqCst);
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.insert(&mut shard, id, true);
    }

    /// A new listener connection; its number.
    fn begin_session(&self) -> u64 {
        self.session.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The listener of `session` is subscribed: the cache may answer.
    fn subscribed(&self, session: u64) {
        if self.session.load(Ordering::SeqCst) != session {
            return;
        }
        self.clear();
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
                Some((state + GENERATION) | SUBSCRIBED)
            });
    }

    /// The listener of `session` lost its connection: nothing cached can be
    /// trusted until it is back.
    fn lost(&self, session: u64) {
        if self.session.load(Ordering::SeqCst) != session {
            return;
        }
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
                Some((state + GENERATION) & !SUBSCRIBED)
            });
        self.clear();
    }

    fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        for shard in &self.subjects {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Applies a push from the listener's connection.
    fn on_push(&self, session: u64, push: &PushInfo) {
        match push.kind {
            PushKind::Message => {
                // [channel, message]: ids on the revocations channel,
                // `CUT_OFF SUBJECT` on the subjects' one.
                let channel = push.data.first().and_then(bulk_text);
                let Some(message) = push.data.get(1).and_then(bulk_text) else {
                    return;
                };
                if channel == Some(self.subject_channel.as_str()) {
                    match message
                        .split_once(' ')
                        .and_then(|(cut, subject)| Some((cut.parse().ok()?, subject)))
                    {
                        Some((cut_off, subject)) => self.record_subject(subject, cut_off),
                        // Unreadable: trust nothing cached about subjects.
                        None => self.forget_subjects(),
                    }
                } else {
                    self.record_revoked(message);
                }
            }
            PushKind::Disconnection => self.lost(session),
            _ => {}
        }
    }
}

impl LocalCache {
    /// Drops every cached subject answer (they are read again).
    fn forget_subjects(&self) {
        self.state.fetch_add(GENERATION, Ordering::SeqCst);
        for shard in &self.subjects {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

fn bulk_text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

struct ListenerSettings {
    channel: String,
    subject_channel: String,
    heartbeat: Duration,
    connection_timeout: Duration,
    response_timeout: Duration,
}

/// Keeps a subscription to the invalidation channel, forever: subscribes,
/// pings on every heartbeat, and after any failure drops the cache and
/// subscribes again (backing off up to half a second).
async fn listen(cache: Arc<LocalCache>, source: ListenerSource, settings: ListenerSettings) {
    let mut attempt = 0;
    let mut delay = Duration::from_millis(20);
    loop {
        let session = cache.begin_session();
        let subscribed = subscription(&cache, session, &source, attempt, &settings).await;
        cache.lost(session);
        if subscribed {
            crate::observe::event!(
                warn,
                "revocation listener lost its connection; revocation checks read Redis until it subscribes again"
            );
            delay = Duration::from_millis(20);
        } else {
            crate::observe::event!(debug, attempt, "revocation listener could not subscribe");
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        attempt += 1;
        tokio::time::sleep(delay).await;
    }
}

/// One listener connection, until it fails; whether it got subscribed.
async fn subscription(
    cache: &Arc<LocalCache>,
    session: u64,
    source: &ListenerSource,
    attempt: usize,
    settings: &ListenerSettings,
) -> bool {
    let Ok(Ok(mut connection)) = tokio::time::timeout(
        settings.connection_timeout * 2,
        connect_listener(cache, session, source, attempt, settings),
    )
    .await
    else {
        return false;
    };
    cache.subscribed(session);
    crate::observe::event!(
        info,
        "revocation listener subscribed; revocation checks answered from the local cache"
    );
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        heartbeat.tick().await;
        if !cache.active() {
            // The connection reported its loss already.
            return true;
        }
        let pong: RedisResult<()> = redis::cmd("PING").query_async(&mut connection).await;
        if pong.is_err() {
            return true;
        }
    }
}

async fn connect_listener(
    cache: &Arc<LocalCache>,
    session: u64,
    source: &ListenerSource,
    attempt: usize,
    settings: &ListenerSettings,
) -> RedisResult<MultiplexedConnection> {
    let client = source.client(attempt).await?;
    let pushes = Arc::clone(cache);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connection_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        .set_push_sender(move |push: PushInfo| {
            pushes.on_push(session, &push);
            Ok::<(), std::convert::Infallible>(())
        });
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(LISTENER_NAME)
        .query_async::<()>(&mut connection)
        .await?;
    connection.subscribe(&settings.channel).await?;
    connection.subscribe(&settings.subject_channel).await?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECTS: &str = "authgate:subject-revocations";

    #[test]
    fn an_announced_cut_off_is_cached_and_only_moves_forward() {
        let (cache, session) = subscribed_cache();
        cache.fill_subject(cache.ticket().unwrap(), "alice", None);
        assert_eq!(cache.lookup_subject("alice"), Some(None));
        let announce = |text: &str| PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(SUBJECTS.as_bytes().to_vec()),
                Value::BulkString(text.as_bytes().to_vec()),
            ],
        };
        cache.on_push(session, &announce("200 alice"));
        assert_eq!(cache.lookup_subject("alice"), Some(Some(200)));
        cache.on_push(session, &announce("100 alice"));
        assert_eq!(cache.lookup_subject("alice"), Some(Some(200)));
        // A subject with a space in its name.
        cache.on_push(session, &announce("300 bob smith"));
        assert_eq!(cache.lookup_subject("bob smith"), Some(Some(300)));
        // Not an id on the other channel.
        assert_eq!(cache.lookup("200 alice"), None);
        // Unreadable: every cached subject is read again.
        cache.on_push(session, &announce("junk"));
        assert_eq!(cache.lookup_subject("alice"), None);
        // A stale read does not overwrite it.
        let ticket = cache.ticket().unwrap();
        cache.record_subject("carol", 5);
        cache.fill_subject(ticket, "carol", None);
        assert_eq!(cache.lookup_subject("carol"), Some(Some(5)));
        cache.lost(session);
        assert_eq!(cache.lookup_subject("carol"), None);
    }

    fn subscribed_cache() -> (LocalCache, u64) {
        let cache = LocalCache::new(64, SUBJECTS.into());
        let session = cache.begin_session();
        cache.subscribed(session);
        (cache, session)
    }

    #[test]
    fn answers_only_while_subscribed() {
        let cache = LocalCache::new(64, SUBJECTS.into());
        assert_eq!(
            cache.ticket(),
            None,
            "nothing is kept before the subscription"
        );
        let session = cache.begin_session();
        cache.subscribed(session);
        let ticket = cache.ticket().unwrap();
        cache.fill(ticket, "jti", false);
        assert_eq!(cache.lookup("jti"), Some(false));
        cache.lost(session);
        assert_eq!(cache.lookup("jti"), None);
        let again = cache.begin_session();
        cache.subscribed(again);
        assert_eq!(cache.lookup("jti"), None, "the cache was dropped");
    }

    #[test]
    fn a_read_that_raced_an_announcement_is_not_kept() {
        let (cache, _) = subscribed_cache();
        let ticket = cache.ticket().unwrap();
        // The read is under way when the revocation is announced...
        cache.record_revoked("other");
        // ...and its stale answer comes back after.
        cache.fill(ticket, "jti", false);
        assert_eq!(cache.lookup("jti"), None);
        assert_eq!(cache.lookup("other"), Some(true));
    }

    #[test]
    fn a_read_that_began_before_a_reconnection_is_not_kept() {
        let (cache, session) = subscribed_cache();
        let ticket = cache.ticket().unwrap();
        cache.lost(session);
        let again = cache.begin_session();
        cache.subscribed(again);
        cache.fill(ticket, "jti", false);
        assert_eq!(cache.lookup("jti"), None);
    }

    #[test]
    fn a_loss_reported_by_an_old_connection_is_ignored() {
        let (cache, old) = subscribed_cache();
        cache.lost(old);
        let current = cache.begin_session();
        cache.subscribed(current);
        cache.on_push(
            old,
            &PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert!(cache.active());
        cache.on_push(
            current,
            &PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert!(!cache.active());
    }

    #[test]
    fn an_announcement_overrides_a_cached_answer() {
        let (cache, session) = subscribed_cache();
        cache.fill(cache.ticket().unwrap(), "jti", false);
        cache.on_push(
            session,
            &PushInfo {
                kind: PushKind::Message,
                data: vec![
                    Value::BulkString(b"authgate:revocations".to_vec()),
                    Value::BulkString(b"jti".to_vec()),
                ],
            },
        );
        assert_eq!(cache.lookup("jti"), Some(true));
    }

    #[test]
    fn a_full_shard_starts_over() {
        let cache = LocalCache::new(SHARDS, SUBJECTS.into());
        let session = cache.begin_session();
        cache.subscribed(session);
        for i in 0..10 * SHARDS {
            cache.fill(cache.ticket().unwrap(), &format!("id-{i}"), false);
        }
        let kept: usize = cache
            .shards
            .iter()
            .map(|shard| shard.read().unwrap().len())
            .sum();
        assert!(kept <= SHARDS, "{kept}");
    }
}
