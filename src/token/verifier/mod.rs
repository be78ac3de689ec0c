//! Token verification: signature, registered claims, token kind, and the
//! application's own claims type.
//!
//! The checks, in order: length cap; exactly three base64url segments; a JSON
//! header with no `crit` extension this verifier does not understand; a key
//! whose pinned algorithm equals `alg` (and whose `kid` matches, when the
//! token names one); the registered claims (below), before the signature,
//! so that a token they refuse costs no signature check; the signature;
//! then the application's claims. The registered claims: `exp` required and a
//! number, `nbf` and `iat` numbers when present, `iss` a single string among
//! the accepted issuers (required when issuers are configured), `aud` a
//! string or array of strings naming this service (required when audiences
//! are configured, refused when none are, RFC 7519 §4.1.3), the token kind
//! among the accepted kinds, and a registered claim named twice refused.
//! An expired token is refused first, at a glance: the payload's first
//! `exp`, read by a scan that builds nothing, when no registered claim is
//! named twice. Otherwise the payload is read once, before the signature
//! is checked: the
//! application's type is deserialized while the registered claims are
//! recorded and judged, which can only refuse there; the claims are handed
//! out only when the signature holds and every check passed. The roles and scopes
//! ([`Grants`]) are then read from the mapped claims only
//! ([`VerifierBuilder::grants`]), once per token.

mod builder;
mod headers;
#[cfg(feature = "tracing")]
mod peek;
mod refetch;
mod registered;
mod segments;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::authz::{GrantMapping, Grants};
use crate::clock::now_seconds;
use crate::error::TokenError;
use crate::token::cache::{CacheSlot, KeysSeen, TokenCache};
use crate::token::claims::{ErasedVerified, TokenKind, TokenKinds, TokenMeta};
use crate::token::keys::{KeySet, KeySource, KeyStore, algorithm_name};
use crate::token::payload::{
    Claim, RawRegistered, expiry_at_a_glance, parse_registered, read_claims,
    repeats_a_registered_claim,
};
use crate::token::source::DEFAULT_MAX_TOKEN_LEN;

pub use builder::VerifierBuilder;
#[cfg(feature = "tracing")]
pub(crate) use peek::peek;

use headers::{JoseHeader, KnownHeaders};
use registered::{numeric_date, payload_issuer, string_claim};
use segments::{
    HEADER_ON_STACK, PAYLOAD_ON_STACK, RSA_SIGNATURE_ON_STACK, SIGNATURE_ON_STACK,
    decode_segment_into, fits,
};

/// The claim that names a token's kind unless configured otherwise, as in
/// the datarhei Core API's sample tokens.
pub const DEFAULT_KIND_CLAIM: &str = "usefor";

/// A verified token: the application's claims and the registered ones.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified<C> {
    /// The claims, deserialized into the application's type.
    pub claims: C,
    /// The registered claims.
    pub meta: TokenMeta,
    /// The roles, scopes and captured claims, read through the verifier's
    /// [`GrantMapping`].
    pub grants: Grants,
}

/// Verifies tokens. Cheap to clone: the configuration sits behind one `Arc`.
///
/// ```
/// use tower_authgate::token::{Algorithm, KeySet, TokenKind, Verifier, VerifyingKey};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
/// let verifier = Verifier::builder(KeySet::single(key))
///     .issuer("datarhei-core")
///     .accept_kinds([TokenKind::Access])
///     .build()?;
/// # let _ = verifier;
/// # Ok::<(), tower_authgate::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierConfig>,
}

#[derive(Clone)]
struct VerifierConfig {
    keys: KeyStore,
    /// Keys chosen by `iss`, when several issuers each have their own.
    issuer_keys: Box<[(Box<str>, KeyStore)]>,
    issuers: Box<[Box<str>]>,
    audiences: Box<[Box<str>]>,
    leeway: u64,
    /// The kinds accepted (`None`: any kind, or none).
    kinds: Option<TokenKinds>,
    /// The kinds accepted from particular issuers, in place of `kinds`.
    issuer_kinds: Box<[(Box<str>, Option<TokenKinds>)]>,
    kind_claim: Box<str>,
    understood_critical: Box<[Box<str>]>,
    max_len: usize,
    known_headers: KnownHeaders,
    grants: GrantMapping,
    cache: CacheSlot,
}

/// Whether `json` starts as an object does (its first byte past white
/// space is `{`); the parser that follows checks the rest.
fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn shared<C: Send + Sync + 'static>(verified: Verified<C>) -> Arc<dyn ErasedVerified> {
    Arc::new(verified)
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner;
        f.debug_struct("Verifier")
            .field("keys", &c.keys)
            .field(
                "issuer_keys",
                &c.issuer_keys.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            )
            .field("issuers", &c.issuers)
            .field("audiences", &c.audiences)
            .field("leeway", &c.leeway)
            .field("kinds", &c.kinds)
            .field("issuer_kinds", &c.issuer_kinds)
            .field("kind_claim", &c.kind_claim)
            .field("grants", &c.grants)
            .field("token_cache", &c.cache.get())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a verifier over `keys`; by default it accepts access tokens
    /// only, requires `exp`, and has no leeway.
    pub fn builder(keys: KeySet) -> VerifierBuilder {
        Self::builder_for(KeyStore::Static(keys))
    }

    /// Starts a verifier over keys that live elsewhere and change (a JWK Set
    /// fetched from an identity provider).
    pub fn builder_with_source(source: Arc<dyn KeySource>) -> VerifierBuilder {
        Self::builder_for(KeyStore::Source(source))
    }

    fn builder_for(keys: KeyStore) -> VerifierBuilder {
        VerifierBuilder {
            config: VerifierConfig {
                keys,
                issuer_keys: Box::new([]),
                issuers: Box::new([]),
                audiences: Box::new([]),
                leeway: 0,
                kinds: Some(TokenKinds::only(TokenKind::Access)),
                issuer_kinds: Box::new([]),
                kind_claim: DEFAULT_KIND_CLAIM.into(),
                understood_critical: Box::new([]),
                max_len: DEFAULT_MAX_TOKEN_LEN,
                known_headers: KnownHeaders::default(),
                grants: GrantMapping::default(),
                cache: CacheSlot::default(),
            },
        }
    }

    /// A builder holding this verifier's settings, to derive a sibling (for
    /// example one that accepts refresh tokens over the same keys).
    pub fn to_builder(&self) -> VerifierBuilder {
        VerifierBuilder {
            config: (*self.inner).clone(),
        }
    }

    /// The keys this verifier holds, when they are a fixed set.
    pub fn keys(&self) -> Option<&KeySet> {
        match &self.inner.keys {
            KeyStore::Static(keys) => Some(keys),
            KeyStore::Source(_) => None,
        }
    }

    /// The cache of tokens this verifier verified, when it keeps one
    /// ([`VerifierBuilder::token_cache`]).
    pub fn token_cache(&self) -> Option<&TokenCache> {
        self.inner.cache.get()
    }

    /// Whether a token verified under `seen` may still be served from the
    /// cache: its key store reports the same generation (each store is
    /// compared on its own, whatever the others do). A store whose keys
    /// are unavailable answers that error, as a fresh verification would.
    fn keys_still_current(&self, seen: KeysSeen) -> Result<bool, TokenError> {
        match self.store_at(seen.store) {
            Some(KeyStore::Static(_)) => Ok(true),
            Some(KeyStore::Source(source)) => {
                source.current()?;
                Ok(source.generation() == seen.generation)
            }
            None => Ok(false),
        }
    }

    /// Like [`keys_still_current`](Self::keys_still_current), for making
    /// room in the cache: unavailable keys count as changed.
    fn keys_unchanged(&self, seen: KeysSeen) -> bool {
        match self.store_at(seen.store) {
            Some(KeyStore::Static(_)) => true,
            Some(KeyStore::Source(source)) => source.generation() == seen.generation,
            None => false,
        }
    }

    /// The key store at `index`: 0 is the verifier's own, `i + 1` the
    /// keys of the `i`-th issuer given its own.
    fn store_at(&self, index: usize) -> Option<&KeyStore> {
        match index.checked_sub(1) {
            None => Some(&self.inner.keys),
            Some(at) => self.inner.issuer_keys.get(at).map(|(_, store)| store),
        }
    }

    /// The index ([`store_at`](Self::store_at)) of the keys for `issuer`.
    fn store_index_for(&self, issuer: Option<&str>) -> usize {
        issuer
            .and_then(|iss| {
                self.inner
                    .issuer_keys
                    .iter()
                    .position(|(name, _)| **name == *iss)
            })
            .map_or(0, |at| at + 1)
    }

    fn store_for(&self, issuer: Option<&str>) -> &KeyStore {
        self.store_at(self.store_index_for(issuer))
            .unwrap_or(&self.inner.keys)
    }

    /// The name of the claim that carries the token kind.
    pub fn kind_claim(&self) -> &str {
        &self.inner.kind_claim
    }

    /// Verifies `token` now.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<Verified<C>, TokenError> {
        self.verify_at(token, now_seconds())
    }

    /// Verifies `token` as if the time were `now` (seconds since the epoch),
    /// for applications with their own clock.
    pub fn verify_at<C: DeserializeOwned>(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Verified<C>, TokenError> {
        self.verify_into(token.as_bytes(), now, |verified| verified)
    }

    /// Verifies `token` at `now` into a shared value, through the token
    /// cache when the verifier keeps one: a token this verifier verified
    /// before, not expired, whose key source reports the generation it was
    /// verified under and has its keys available, is served from the cache;
    /// any other is verified and, when it passes, stored. Entries of
    /// another claims type (a verifier shared by layers of several types)
    /// are verified again.
    pub(crate) fn verify_shared<C>(
        &self,
        token: &[u8],
        now: u64,
    ) -> Result<(Arc<dyn ErasedVerified>, bool), TokenError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let Some(cache) = self.inner.cache.get() else {
            return self
                .verify_into(token, now, shared::<C>)
                .map(|verified| (verified, false));
        };
        if let Some((hit, seen)) = cache.get(token, now)
            && hit.holds::<C>()
            && self.keys_still_current(seen)?
        {
            cache.count_hit();
            return Ok((hit, true));
        }
        cache.count_miss();
        // The generation is read before the keys: keys that change
        // meanwhile make the entry stale.
        let (verified, seen) = self.verify_keys_seen(token, now, shared::<C>)?;
        let expires_at = verified.meta().expires_at;
        cache.insert(
            token,
            Arc::clone(&verified),
            expires_at,
            now,
            seen,
            |keys| self.keys_unchanged(keys),
        );
        Ok((verified, false))
    }

    /// [`verify_at`](Self::verify_at), handing the verified token to `wrap`
    /// where it is built (into an `Arc`, say) rather than returning it.
    ///
    /// The token is taken as bytes: every one of them is checked here (the
    /// dots, and the base64url alphabet of each segment, decoded or compared
    /// with a header already verified), so a caller need not make it text.
    pub(crate) fn verify_into<C: DeserializeOwned, T>(
        &self,
        token: &[u8],
        now: u64,
        wrap: impl FnOnce(Verified<C>) -> T,
    ) -> Result<T, TokenError> {
        self.verify_keys_seen(token, now, wrap)
            .map(|(verified, _)| verified)
    }

    /// [`verify_into`](Self::verify_into), also telling which keys
    /// verified the token (for the cache).
    fn verify_keys_seen<C: DeserializeOwned, T>(
        &self,
        token: &[u8],
        now: u64,
        wrap: impl FnOnce(Verified<C>) -> T,
    ) -> Result<(T, KeysSeen), TokenError> {
        let config = &*self.inner;
        if token.len() > config.max_len {
            return Err(TokenError::TooLong);
        }
        // The first and last dots, each found from its own end: the
        // segments between them are never scanned here. A dot inside the
        // payload (four segments or more) fails its base64 decoding below,
        // before any key is looked at.
        let (Some(first_dot), Some(last_dot)) =
            (memchr::memchr(b'.', token), memchr::memrchr(b'.', token))
        else {
            return Err(TokenError::Malformed);
        };
        if first_dot == last_dot {
            return Err(TokenError::Malformed);
        }
        let (header_b64, payload_b64, signature_b64) = (
            &token[..first_dot],
            &token[first_dot + 1..last_dot],
            &token[last_dot + 1..],
        );
        let (mut payload_stack, mut payload_heap) = ([0u8; PAYLOAD_ON_STACK], Vec::new());
        let payload = decode_segment_into(payload_b64, &mut payload_stack, &mut payload_heap)?;
        // A claims set is a JSON object (RFC 7519 §7.2).
        if !is_json_object(payload) {
            return Err(TokenError::Malformed);
        }
        let message = &token[..last_dot];
        // An expired token is refused at a glance, before its claims are
        // read into the application's type (nor the signature checked);
        // one that names a registered claim twice is left to the full
        // reading, which says so.
        if let Some(expires_at) = expiry_at_a_glance(payload)
            && now >= expires_at.saturating_add(config.leeway)
            && repeats_a_registered_claim(payload, &config.kind_claim) == Some(false)
        {
            return Err(TokenError::Expired);
        }
        // The payload is read once, before the signature is checked, and
        // its registered claims judged there: a token they refuse (expired
        // beyond the leeway, not yet valid, another issuer, audience or
        // kind) costs no signature check. This only ever refuses: the
        // claims are handed out only once the signature holds.
        let mut refused_on_registered = false;
        let read =
            read_claims::<C, (C, TokenMeta)>(payload, &config.kind_claim, |claims, raw| match self
                .check_registered(raw, now)
            {
                Ok(meta) => Ok((claims, meta)),
                Err(err) => {
                    refused_on_registered = true;
                    Err(err)
                }
            });
        match read {
            Ok((claims, meta)) => {
                let seen = self.check_signature(header_b64, message, signature_b64, payload)?;
                // Only the mapped claims, on the verified payload.
                let grants = config.grants.read(payload)?;
                Ok((
                    wrap(Verified {
                        claims,
                        meta,
                        grants,
                    }),
                    seen,
                ))
            }
            Err(err) if refused_on_registered => Err(err),
            Err(err) => {
                // The application's type did not read the payload: the
                // registered claims' verdict first (an expired token is
                // expired, whatever its other claims look like), then the
                // signature's (a forged token is forged), then the type's.
                let raw = parse_registered(payload, &config.kind_claim)?;
                self.check_registered(&raw, now)?;
                self.check_signature(header_b64, message, signature_b64, payload)?;
                Err(err)
            }
        }
    }

    /// The header's checks and the signature over `message`, and the keys
    /// that verified it. `payload` (the decoded, unverified payload) is
    /// read only to pick keys by `iss` when several issuers each have
    /// their own.
    fn check_signature(
        &self,
        header_b64: &[u8],
        message: &[u8],
        signature_b64: &[u8],
        payload: &[u8],
    ) -> Result<KeysSeen, TokenError> {
        let config = &*self.inner;
        let known_headers = config.known_headers.0.load();
        let known = known_headers.iter().find(|h| *h.segment == *header_b64);
        // Filled only for a header not seen before.
        let (mut header_stack, mut header_heap);
        let parsed: JoseHeader<'_>;
        let (alg, kid) = match known {
            Some(known) => (known.alg, known.kid.as_deref()),
            None => {
                (header_stack, header_heap) = ([0u8; HEADER_ON_STACK], Vec::new());
                let header_json =
                    decode_segment_into(header_b64, &mut header_stack, &mut header_heap)?;
                // A JOSE header is a JSON object (RFC 7515 §4): an array
                // must not be read by position.
                if !is_json_object(header_json) {
                    return Err(TokenError::Malformed);
                }
                parsed = serde_json::from_slice(header_json).map_err(|_| TokenError::Malformed)?;
                if let Some(crit) = &parsed.crit {
                    let understood = |name: &Cow<'_, str>| {
                        config
                            .understood_critical
                            .iter()
                            .any(|known| **known == **name)
                    };
                    if crit.is_empty() || !crit.iter().all(understood) {
                        return Err(TokenError::UnsupportedCritical);
                    }
                }
                (&*parsed.alg, parsed.kid.as_deref())
            }
        };

        // With keys per issuer, `iss` (read before the signature is checked)
        // picks the keys; the issuer is then checked like any other claim.
        let store_index = if config.issuer_keys.is_empty() {
            0
        } else {
            self.store_index_for(payload_issuer(payload, &config.kind_claim)?.as_deref())
        };
        let store = self.store_at(store_index).unwrap_or(&config.keys);
        let fetched;
        let (keys, generation) = match store {
            KeyStore::Static(keys) => (keys, 0),
            KeyStore::Source(source) => {
                // Read before the keys, so that a change in between leaves
                // the cache entry stale rather than current.
                let generation = source.generation();
                fetched = source.current()?;
                (&*fetched, generation)
            }
        };
        let seen = KeysSeen {
            store: store_index,
            generation,
        };

        // HMAC and elliptic-curve signatures fit the small buffer, RSA's the
        // large one; only the one used is filled.
        let (mut small, mut large, mut heap) = (None, None, Vec::new());
        let signature = if fits(signature_b64.len(), SIGNATURE_ON_STACK) {
            let small = small.insert([0u8; SIGNATURE_ON_STACK]);
            decode_segment_into(signature_b64, small, &mut heap)?
        } else {
            let large = large.insert([0u8; RSA_SIGNATURE_ON_STACK]);
            decode_segment_into(signature_b64, large, &mut heap)?
        };
        let mut tried_any = false;
        for key in keys.candidates(alg, kid) {
            tried_any = true;
            if key.verify(message, signature) {
                if known.is_none() {
                    config
                        .known_headers
                        .remember(header_b64, algorithm_name(key.algorithm()), kid);
                }
                return Ok(seen);
            }
        }
        Err(if tried_any {
            TokenError::BadSignature
        } else {
            match kid {
                Some(kid) if !keys.has_kid(kid) => TokenError::UnknownKey,
                _ => TokenError::UnsupportedAlgorithm,
            }
        })
    }

    fn check_registered(&self, raw: &RawRegistered<'_>, now: u64) -> Result<TokenMeta, TokenError> {
        let config = &*self.inner;
        let expires_at =
            numeric_date(raw.exp.as_ref(), "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let not_before = numeric_date(raw.nbf.as_ref(), "nbf")?;
        let issued_at = numeric_date(raw.iat.as_ref(), "iat")?;
        if now >= expires_at.saturating_add(config.leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = not_before
            && now.saturating_add(config.leeway) < nbf
        {
            return Err(TokenError::NotYetValid);
        }

        let issuer = string_claim(raw.iss.as_ref(), "iss")?;
        if !config.issuers.is_empty() {
            let issuer = issuer.as_deref().ok_or(TokenError::MissingClaim("iss"))?;
            if !config.issuers.iter().any(|i| **i == *issuer) {
                return Err(TokenError::WrongIssuer);
            }
        }

        match (&raw.aud, config.audiences.is_empty()) {
            (None, true) => {}
            (None, false) => return Err(TokenError::MissingClaim("aud")),
            (Some(_), true) => return Err(TokenError::WrongAudience),
            (Some(aud), false) => {
                let accepted = |a: &str| config.audiences.iter().any(|x| **x == *a);
                let ok = match aud {
                    Claim::Str(one) => accepted(one),
                    Claim::Raw(raw) if raw.get().starts_with('"') => {
                        let one: Cow<'_, str> = serde_json::from_str(raw.get())
                            .map_err(|_| TokenError::InvalidClaim("aud"))?;
                        accepted(&one)
                    }
                    Claim::Raw(raw) if raw.get().starts_with('[') => {
                        let many: Vec<Cow<'_, str>> = serde_json::from_str(raw.get())
                            .map_err(|_| TokenError::InvalidClaim("aud"))?;
                        many.iter().any(|a| accepted(a))
                    }
                    _ => return Err(TokenError::InvalidClaim("aud")),
                };
                if !ok {
                    return Err(TokenError::WrongAudience);
                }
            }
        }

        // The issuer's own kind policy, when it has one: opening the door to
        // any kind for an identity provider never opens it for another
        // issuer.
        let kinds = match (&issuer, config.issuer_kinds.is_empty()) {
            (Some(issuer), false) => config
                .issuer_kinds
                .iter()
                .find(|(name, _)| **name == **issuer)
                .map_or(config.kinds, |(_, kinds)| *kinds),
            _ => config.kinds,
        };
        let kind = match kinds {
            None => None,
            Some(kinds) => {
                let text = string_claim(raw.kind.as_ref(), "kind")?
                    .ok_or(TokenError::MissingClaim("kind"))?;
                let kind: TokenKind = text.parse().map_err(|()| TokenError::WrongKind)?;
                if !kinds.contains(kind) {
                    return Err(TokenError::WrongKind);
                }
                Some(kind)
            }
        };

        Ok(TokenMeta {
            subject: string_claim(raw.sub.as_ref(), "sub")?.map(Cow::into_owned),
            token_id: string_claim(raw.jti.as_ref(), "jti")?.map(Cow::into_owned),
            expires_at,
            issued_at,
            kind,
            family: string_claim(raw.fam.as_ref(), "fam")?.map(Cow::into_owned),
        })
    }
}
