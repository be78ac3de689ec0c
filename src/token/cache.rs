//! A cache of verified tokens, so that a token seen again skips the
//! signature check and the claims parse (as Envoy's `jwt_authn` does).
//!
//! Turn it on when clients send the same token many times (sessions, API
//! clients that reuse an access token until it expires), and most of all with
//! asymmetric algorithms, whose verification costs tens of microseconds.
//! Leave it off when most tokens are seen once. Memory is bounded by the
//! capacity times the token size.
//!
//! What it keeps is safe to reuse:
//!
//! - it belongs to one verifier ([`VerifierBuilder::token_cache`](crate::token::VerifierBuilder::token_cache)):
//!   a token is served from it only to the verifier that checked it, with
//!   the settings it checked it under, so a token a lenient verifier
//!   accepted (a refresh or service-account token, say) is never served to
//!   a stricter one;
//! - the key is the whole token string (equality on every byte), so a
//!   different token never hits another's entry; the hash that only places
//!   entries covers the token's length and last 16 bytes (96 bits of its
//!   signature), with a per-process random seed;
//! - an entry is dropped at the token's `exp`, and is served only while the
//!   key source that verified it reports the generation it had then: each
//!   source's generation is kept and compared on its own (never a sum that
//!   two sources moving in opposite directions would leave unchanged), so a
//!   key removed from any source stops its tokens at once;
//! - an entry is not served while its key source reports its keys
//!   unavailable (a JWK Set past its maximum age): the request is refused
//!   as a token verified afresh would be;
//! - the [`AuthLayer`](crate::auth::AuthLayer) checks revocation on every
//!   request, cached or not, so a revoked `jti` is refused even when its
//!   token is cached;
//! - only tokens that passed every check are stored.
//!
//! Reads take one shard lock (16 shards) for a hash lookup and an `Arc`
//! clone: a hit shares the verified claims with the request, copying
//! nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use crate::observe::{LazyCounter, LazyGauge, lazy_counter, lazy_gauge};
use crate::token::claims::ErasedVerified;

const SHARDS: usize = 16;

struct Entry {
    verified: Arc<dyn ErasedVerified>,
    expires_at: u64,
    keys: KeysSeen,
}

/// The keys a token was verified under: which of the verifier's key
/// stores (its own, or one issuer's), and that store's generation read
/// before the keys were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeysSeen {
    pub(crate) store: usize,
    pub(crate) generation: u64,
}

type Shard = Mutex<HashMap<Box<[u8]>, Entry, TailHashState>>;

/// How much of a token's end is hashed to place it.
const HASHED_TAIL: usize = 16;

/// Hashes the length and the last [`HASHED_TAIL`] bytes of each token: the
/// end of its signature, which no two verified tokens share and nobody can
/// choose without the signing key (and only verified tokens are stored).
/// The hash only places an entry; a hit still compares the whole token,
/// byte for byte. A long RS256 token costs as little to place as an HS256
/// one.
#[derive(Clone)]
struct TailHashState(foldhash::fast::FixedState);

struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl BuildHasher for TailHashState {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn write_u8(&mut self, byte: u8) {
        self.0.write_u8(byte);
    }

    // The length prefix of a byte-slice key, whole.
    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// A verifier's slot for a cache: cloning the configuration (to derive a
/// sibling verifier with other settings) gives the clone a fresh, empty
/// cache of the same capacity, never the entries of the original.
#[derive(Default)]
pub(crate) struct CacheSlot(Option<TokenCache>);

impl CacheSlot {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        CacheSlot(Some(TokenCache::new(capacity)))
    }

    pub(crate) fn get(&self) -> Option<&TokenCache> {
        self.0.as_ref()
    }
}

impl Clone for CacheSlot {
    fn clone(&self) -> Self {
        CacheSlot(
            self.0
                .as_ref()
                .map(|cache| TokenCache::new(cache.capacity())),
        )
    }
}

/// A bounded cache of verified tokens, owned by one
/// [`Verifier`](crate::token::Verifier) (see
/// [`VerifierBuilder::token_cache`](crate::token::VerifierBuilder::token_cache)
/// and the [module docs](self)).
pub struct TokenCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    shards: Box<[Shard]>,
    max_per_shard: usize,
    hasher: TailHashState,
    hits: LazyCounter,
    misses: LazyCounter,
    evictions: LazyCounter,
    /// This cache's share of `authgate_token_cache_entries`.
    entries: LazyGauge,
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        let held: usize = self
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum();
        self.entries.add(-(held as i64));
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl TokenCache {
    /// A cache keeping at most `capacity` tokens.
    pub(crate) fn new(capacity: usize) -> Self {
        let hasher = TailHashState(foldhash::fast::FixedState::with_seed(rand_seed()));
        TokenCache {
            inner: Arc::new(CacheInner {
                shards: (0..SHARDS)
                    .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                    .collect(),
                max_per_shard: capacity.div_ceil(SHARDS).max(1),
                hasher,
                hits: lazy_counter!("authgate_token_cache_hits_total"),
                misses: lazy_counter!("authgate_token_cache_misses_total"),
                evictions: lazy_counter!("authgate_token_cache_evictions_total"),
                entries: lazy_gauge!("authgate_token_cache_entries"),
            }),
        }
    }

    fn shard(&self, token: &[u8]) -> &Shard {
        let hash = self.inner.hasher.hash_one(token);
        // The high bits pick the shard; the map uses the full hash.
        &self.inner.shards[(hash >> 60) as usize % SHARDS]
    }

    /// The verified value stored for `token` and the keys it was verified
    /// under, if it is there and not expired at `now`. The caller serves
    /// it only while those keys are the current ones.
    pub(crate) fn get(
        &self,
        token: &[u8],
        now: u64,
    ) -> Option<(Arc<dyn ErasedVerified>, KeysSeen)> {
        let shard = self.shard(token).lock().ok()?;
        let entry = shard.get(token)?;
        (entry.expires_at > now).then(|| (Arc::clone(&entry.verified), entry.keys))
    }

    /// Stores a verified value for `token` until `expires_at`, verified
    /// under `keys`; `is_current` tells which entries' keys are still
    /// current when room must be made.
    pub(crate) fn insert(
        &self,
        token: &[u8],
        verified: Arc<dyn ErasedVerified>,
        expires_at: u64,
        now: u64,
        keys: KeysSeen,
        is_current: impl Fn(KeysSeen) -> bool,
    ) {
        let Ok(mut shard) = self.shard(token).lock() else {
            return;
        };
        let held = shard.len();
        if shard.len() >= self.inner.max_per_shard && !shard.contains_key(token) {
            shard.retain(|_, e| e.expires_at > now && is_current(e.keys));
            if shard.len() >= self.inner.max_per_shard {
                // Still full of live entries: drop an eighth of them.
                let drop: Vec<Box<[u8]>> = shard
                    .keys()
                    .take((self.inner.max_per_shard / 8).max(1))
                    .cloned()
                    .collect();
                for key in drop {
                    shard.remove(&key);
                }
            }
        }
        let replaced = shard
            .insert(
                token.into(),
                Entry {
                    verified,
                    expires_at,
                    keys,
                },
            )
            .is_some();
        let now_held = shard.len();
        drop(shard);
        // Entries dropped to make room (expired or not).
        let dropped = (held + usize::from(!replaced)).saturating_sub(now_held);
        if dropped > 0 {
            self.inner.evictions.increment_by(dropped as u64);
        }
        self.inner.entries.add(now_held as i64 - held as i64);
    }

    /// Counts a token answered from the cache.
    pub(crate) fn count_hit(&self) {
        self.inner.hits.increment();
    }

    /// Counts a token verified in full.
    pub(crate) fn count_miss(&self) {
        self.inner.misses.increment();
    }

    /// The most tokens kept.
    pub fn capacity(&self) -> usize {
        self.inner.max_per_shard * SHARDS
    }

    /// Empties the cache.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            if let Ok(mut shard) = shard.lock() {
                self.inner.entries.add(-(shard.len() as i64));
                shard.clear();
            }
        }
    }

    /// The number of tokens kept, expired or not.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A per-process seed, so bucket placement cannot be predicted from outside.
fn rand_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system generator failing is not worth a panic: fall back to
        // the address of a local and the time.
        let local = 0u8;
        return (&local as *const u8 as u64) ^ crate::clock::now_seconds();
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::token::{FoundIn, TokenMeta, Verified, VerifiedToken};

    fn value(n: u32) -> Arc<dyn ErasedVerified> {
        Arc::new(Verified {
            claims: n,
            meta: TokenMeta {
                subject: None,
                token_id: None,
                expires_at: 0,
                issued_at: None,
                kind: None,
                family: None,
            },
            grants: Default::default(),
        })
    }

    fn seen(generation: u64) -> KeysSeen {
        KeysSeen {
            store: 0,
            generation,
        }
    }

    fn insert(
        cache: &TokenCache,
        token: &[u8],
        n: u32,
        expires_at: u64,
        now: u64,
        generation: u64,
    ) {
        cache.insert(token, value(n), expires_at, now, seen(generation), |_| true);
    }

    fn read(cache: &TokenCache, token: &str, now: u64, generation: u64) -> Option<u32> {
        cache
            .get(token.as_bytes(), now)
            .filter(|(_, keys)| *keys == seen(generation))
            .and_then(|(v, _)| {
                VerifiedToken::new(v, FoundIn::Cookie)
                    .claims::<u32>()
                    .copied()
            })
    }

    #[test]
    fn hits_only_the_same_token_before_expiry_and_under_the_same_keys() {
        let cache = TokenCache::new(100);
        insert(&cache, b"a.b.c", 1, 1_000, 900, 7);
        assert_eq!(read(&cache, "a.b.c", 999, 7), Some(1));
        assert_eq!(read(&cache, "a.b.c", 1_000, 7), None, "expired at exp");
        assert_eq!(read(&cache, "a.b.c", 999, 8), None, "keys changed");
        assert_eq!(read(&cache, "a.b.cd", 999, 7), None);
        assert_eq!(read(&cache, "a.b.", 999, 7), None);
        cache.clear();
        assert_eq!(read(&cache, "a.b.c", 999, 7), None);
    }

    #[test]
    fn tokens_that_share_their_hashed_tail_are_still_told_apart() {
        let cache = TokenCache::new(100);
        let tail = "s".repeat(HASHED_TAIL);
        insert(&cache, format!("a.{tail}").as_bytes(), 1, 1_000, 900, 0);
        insert(&cache, format!("b.{tail}").as_bytes(), 2, 1_000, 900, 0);
        assert_eq!(read(&cache, &format!("a.{tail}"), 950, 0), Some(1));
        assert_eq!(read(&cache, &format!("b.{tail}"), 950, 0), Some(2));
        assert_eq!(read(&cache, &format!("c.{tail}"), 950, 0), None);
        assert_eq!(read(&cache, &tail, 950, 0), None);
    }

    #[test]
    fn stays_within_capacity() {
        let cache = TokenCache::new(160);
        for i in 0..10_000u32 {
            insert(&cache, format!("token-{i}").as_bytes(), i, 2_000, 1_000, 0);
            assert!(cache.len() <= 160, "{} at {i}", cache.len());
        }
        assert_eq!(read(&cache, "token-9999", 1_001, 0), Some(9_999));
    }
}
