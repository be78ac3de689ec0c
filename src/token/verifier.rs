//! Token verification: signature, registered claims, token kind, and the
//! application's own claims type.
//!
//! The checks, in order: length cap; exactly three base64url segments; a JSON
//! header with no `crit` extension this verifier does not understand; a key
//! whose pinned algorithm equals `alg` (and whose `kid` matches, when the
//! token names one); the signature; then the claims: `exp` required and a
//! number, `nbf` and `iat` numbers when present, `iss` a single string among
//! the accepted issuers (required when issuers are configured), `aud` a
//! string or array of strings naming this service (required when audiences
//! are configured, refused when none are, RFC 7519 §4.1.3), the token kind
//! among the accepted kinds, and a registered claim named twice refused.
//! The payload is read once, after the signature holds: the application's
//! type is deserialized while the registered claims are recorded, and the
//! claims are handed out only when every check passed.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
#[cfg(not(target_os = "linux"))]
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, TokenError};
use crate::store::BoxFuture;
use crate::token::claims::{TokenKind, TokenKinds, TokenMeta};
use crate::token::keys::{KeySet, KeySource, KeyStore, algorithm_name};
use crate::token::payload::{Claim, RawRegistered, parse_registered, read_claims};
use crate::token::source::DEFAULT_MAX_TOKEN_LEN;

/// The claim that names a token's kind unless configured otherwise, as in
/// document 001's sample tokens.
pub const DEFAULT_KIND_CLAIM: &str = "usefor";

/// Seconds since the Unix epoch, now.
///
/// On Linux this reads the coarse real-time clock (`CLOCK_REALTIME_COARSE`,
/// through the vDSO): the time at the kernel's last timer tick, at most a
/// few milliseconds behind, for a tenth of the cost of a precise reading.
/// Every claim it is compared with counts whole seconds. Elsewhere it reads
/// [`SystemTime`](std::time::SystemTime).
pub fn now_seconds() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        u64::try_from(now.tv_sec).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A verified token: the application's claims and the registered ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<C> {
    /// The claims, deserialized into the application's type.
    pub claims: C,
    /// The registered claims.
    pub meta: TokenMeta,
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
    kinds: Option<TokenKinds>,
    kind_claim: Box<str>,
    understood_critical: Box<[Box<str>]>,
    max_len: usize,
    known_headers: KnownHeaders,
}

/// Header segments of tokens whose signature held, with what they say. An
/// issuer sends the same header on every token, so each distinct header is
/// decoded and parsed once; what a header means depends only on its text and
/// the verifier's settings, and a clone (a sibling verifier with other
/// settings) starts empty.
#[derive(Default)]
struct KnownHeaders(ArcSwap<Vec<KnownHeader>>);

#[derive(Clone)]
struct KnownHeader {
    segment: Box<[u8]>,
    alg: &'static str,
    kid: Option<Box<str>>,
}

/// How many distinct headers are remembered (one per signing key is usual).
const KNOWN_HEADERS: usize = 8;
/// Longer header segments are parsed every time rather than remembered.
const KNOWN_HEADER_MAX_LEN: usize = 256;

impl Clone for KnownHeaders {
    fn clone(&self) -> Self {
        KnownHeaders::default()
    }
}

impl KnownHeaders {
    fn remember(&self, segment: &[u8], alg: &'static str, kid: Option<&str>) {
        if segment.len() > KNOWN_HEADER_MAX_LEN {
            return;
        }
        self.0.rcu(|known| {
            let mut known = Vec::clone(known);
            if !known.iter().any(|h| *h.segment == *segment) {
                if known.len() >= KNOWN_HEADERS {
                    known.remove(0);
                }
                known.push(KnownHeader {
                    segment: segment.into(),
                    alg,
                    kid: kid.map(Into::into),
                });
            }
            known
        });
    }
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
            .field("kind_claim", &c.kind_claim)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`]; see [`Verifier::builder`].
#[derive(Clone)]
pub struct VerifierBuilder {
    config: VerifierConfig,
}

impl VerifierBuilder {
    /// Accept tokens from `issuer`, verified with `keys` rather than the
    /// verifier's own: several issuers at once, each with its own key source,
    /// `iss` selecting which. Implies [`issuer`](Self::issuer).
    pub fn issuer_with_keys(mut self, issuer: impl Into<String>, keys: Arc<dyn KeySource>) -> Self {
        let issuer = issuer.into();
        let mut list = self.config.issuer_keys.into_vec();
        list.push((issuer.clone().into_boxed_str(), KeyStore::Source(keys)));
        self.config.issuer_keys = list.into_boxed_slice();
        self.issuer(issuer)
    }

    /// Accept tokens from `issuer`; once any issuer is set, `iss` is required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let mut list = self.config.issuers.into_vec();
        list.push(issuer.into().into_boxed_str());
        self.config.issuers = list.into_boxed_slice();
        self
    }

    /// Accept tokens for `audience`; once any audience is set, `aud` is
    /// required. Without one, a token that carries `aud` is refused.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let mut list = self.config.audiences.into_vec();
        list.push(audience.into().into_boxed_str());
        self.config.audiences = list.into_boxed_slice();
        self
    }

    /// Clock skew tolerated for `exp` and `nbf`, in seconds (default 0).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.config.leeway = seconds;
        self
    }

    /// The token kinds accepted (default: access only). The kind claim is
    /// then required.
    pub fn accept_kinds(mut self, kinds: impl IntoIterator<Item = TokenKind>) -> Self {
        self.config.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// Accept tokens whatever their kind claim says, or without one: for
    /// tokens minted by another issuer (an identity provider) that does not
    /// mark kinds.
    pub fn any_kind(mut self) -> Self {
        self.config.kinds = None;
        self
    }

    /// The claim that names a token's kind (default
    /// [`DEFAULT_KIND_CLAIM`], `usefor`).
    pub fn kind_claim(mut self, name: impl Into<String>) -> Self {
        self.config.kind_claim = name.into().into_boxed_str();
        self
    }

    /// A `crit` header extension the application handles itself; tokens
    /// listing any other critical extension are refused (RFC 7515 §4.1.11).
    pub fn understand_critical(mut self, name: impl Into<String>) -> Self {
        let mut list = self.config.understood_critical.into_vec();
        list.push(name.into().into_boxed_str());
        self.config.understood_critical = list.into_boxed_slice();
        self
    }

    /// The cap on a token's length in bytes (default
    /// [`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.config.max_len = max_len;
        self
    }

    /// The verifier.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if matches!(self.config.kinds, Some(kinds) if kinds.is_empty()) {
            return Err(ConfigError::Invalid(
                "a verifier must accept at least one token kind".into(),
            ));
        }
        if self.config.kind_claim.is_empty() {
            return Err(ConfigError::Invalid("the kind claim needs a name".into()));
        }
        Ok(Verifier {
            inner: Arc::new(self.config),
        })
    }
}

#[derive(serde::Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    crit: Option<Vec<Cow<'a, str>>>,
}

fn numeric_date(claim: Option<&Claim<'_>>, name: &'static str) -> Result<Option<u64>, TokenError> {
    let text = match claim {
        None => return Ok(None),
        Some(Claim::Int(whole)) => return Ok(Some(*whole)),
        // A JSON number with a fraction or exponent is allowed (RFC 7519
        // NumericDate); negative or non-finite values are not.
        Some(Claim::Float(v)) if v.is_finite() && *v >= 0.0 => return Ok(Some(*v as u64)),
        Some(Claim::Raw(raw)) => raw.get(),
        Some(_) => return Err(TokenError::InvalidClaim(name)),
    };
    if let Ok(whole) = text.parse::<u64>() {
        return Ok(Some(whole));
    }
    // Strings, booleans, null, negative numbers are not dates.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(TokenError::InvalidClaim(name));
    }
    match serde_json::from_str::<f64>(text) {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v as u64)),
        _ => Err(TokenError::InvalidClaim(name)),
    }
}

fn string_claim<'a>(
    claim: Option<&'a Claim<'_>>,
    name: &'static str,
) -> Result<Option<Cow<'a, str>>, TokenError> {
    let text = match claim {
        None => return Ok(None),
        Some(Claim::Str(text)) => return Ok(Some(Cow::Borrowed(text))),
        Some(Claim::Raw(raw)) => raw.get(),
        Some(_) => return Err(TokenError::InvalidClaim(name)),
    };
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Err(TokenError::InvalidClaim(name));
    };
    // The payload parser already checked this is a valid JSON string: one
    // without escapes is its own text.
    if !inner.contains('\\') {
        return Ok(Some(Cow::Borrowed(inner)));
    }
    serde_json::from_str::<String>(text)
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|_| TokenError::InvalidClaim(name))
}

/// The `iss` of an unverified payload, to choose keys by.
fn payload_issuer(payload: &[u8], kind_claim: &str) -> Result<Option<String>, TokenError> {
    let raw = parse_registered(payload, kind_claim)?;
    Ok(string_claim(raw.iss.as_ref(), "iss")?.map(Cow::into_owned))
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// Decodes a base64url segment into `stack` when it fits, else into `heap`.
fn decode_segment_into<'b>(
    segment: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], TokenError> {
    if base64::decoded_len_estimate(segment.len()) <= stack.len() {
        let len = URL_SAFE_NO_PAD
            .decode_slice(segment, stack)
            .map_err(|_| TokenError::Malformed)?;
        Ok(&stack[..len])
    } else {
        URL_SAFE_NO_PAD
            .decode_vec(segment, heap)
            .map_err(|_| TokenError::Malformed)?;
        Ok(heap)
    }
}

/// Segments this size or smaller are decoded on the stack.
const HEADER_ON_STACK: usize = 256;
const PAYLOAD_ON_STACK: usize = 1024;
/// Room for every signature but RSA's.
const SIGNATURE_ON_STACK: usize = 128;
/// Room for an RSA-4096 signature.
const RSA_SIGNATURE_ON_STACK: usize = 528;

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
                kind_claim: DEFAULT_KIND_CLAIM.into(),
                understood_critical: Box::new([]),
                max_len: DEFAULT_MAX_TOKEN_LEN,
                known_headers: KnownHeaders::default(),
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

    /// When a token was refused with [`TokenError::UnknownKey`] or
    /// [`TokenError::KeysUnavailable`] and its keys come from a
    /// [`KeySource`], the future that refetches them (shared by concurrent
    /// callers, and not offered again before the source allows).
    pub fn on_unknown_key(&self, token: &str) -> Option<BoxFuture<'static, ()>> {
        let store = if self.inner.issuer_keys.is_empty() {
            &self.inner.keys
        } else {
            let payload = token
                .split('.')
                .nth(1)
                .and_then(|p| decode_segment(p).ok())?;
            let issuer = payload_issuer(&payload, &self.inner.kind_claim).ok()??;
            self.store_for(Some(&issuer))
        };
        match store {
            KeyStore::Source(source) => source.refresh_for_unknown_key(),
            KeyStore::Static(_) => None,
        }
    }

    /// Verifies `token`; when its key is unknown, or no keys were fetched
    /// yet, and the keys come from a [`KeySource`] that may refetch now (or
    /// is fetching), waits for that fetch and tries once more (a provider
    /// that rotated its keys, a service that just started).
    pub async fn verify_refreshing<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, TokenError> {
        match self.verify::<C>(token) {
            Err(err @ (TokenError::UnknownKey | TokenError::KeysUnavailable)) => {
                match self.on_unknown_key(token) {
                    Some(refresh) => {
                        refresh.await;
                        self.verify::<C>(token)
                    }
                    None => Err(err),
                }
            }
            other => other,
        }
    }

    /// Changes whenever any of the verifier's key sets changes.
    pub(crate) fn key_generation(&self) -> u64 {
        let generation = |store: &KeyStore| match store {
            KeyStore::Static(_) => 0,
            KeyStore::Source(source) => source.generation(),
        };
        self.inner
            .issuer_keys
            .iter()
            .map(|(_, store)| generation(store))
            .fold(generation(&self.inner.keys), u64::wrapping_add)
    }

    fn store_for(&self, issuer: Option<&str>) -> &KeyStore {
        issuer
            .and_then(|iss| {
                self.inner
                    .issuer_keys
                    .iter()
                    .find(|(name, _)| **name == *iss)
                    .map(|(_, store)| store)
            })
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
        let message = &token[..last_dot];
        self.check_signature(header_b64, message, signature_b64, payload)?;

        // The signature holds: read the claims, once.
        let mut parsed = false;
        let verified = read_claims::<C, T>(payload, &config.kind_claim, |claims, raw| {
            parsed = true;
            let meta = self.check_registered(raw, now)?;
            Ok(wrap(Verified { claims, meta }))
        });
        match verified {
            Err(err) if !parsed => {
                // The registered claims' verdict comes first (an expired
                // token is expired, whatever its other claims look like).
                let raw = parse_registered(payload, &config.kind_claim)?;
                self.check_registered(&raw, now)?;
                Err(err)
            }
            verified => verified,
        }
    }

    /// The header's checks and the signature over `message`. `payload` (the
    /// decoded, unverified payload) is read only to pick keys by `iss` when
    /// several issuers each have their own.
    fn check_signature(
        &self,
        header_b64: &[u8],
        message: &[u8],
        signature_b64: &[u8],
        payload: &[u8],
    ) -> Result<(), TokenError> {
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
        let store = if config.issuer_keys.is_empty() {
            &config.keys
        } else {
            self.store_for(payload_issuer(payload, &config.kind_claim)?.as_deref())
        };
        let fetched;
        let keys = match store {
            KeyStore::Static(keys) => keys,
            KeyStore::Source(source) => {
                fetched = source.current()?;
                &*fetched
            }
        };

        // HMAC and elliptic-curve signatures fit the small buffer, RSA's the
        // large one; only the one used is filled.
        let (mut small, mut large, mut heap) = (None, None, Vec::new());
        let signature = if base64::decoded_len_estimate(signature_b64.len()) <= SIGNATURE_ON_STACK {
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
                return Ok(());
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
            let issuer = issuer.ok_or(TokenError::MissingClaim("iss"))?;
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

        let kind = match config.kinds {
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
