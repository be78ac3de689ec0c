//! Reading a token's payload: the registered claims and the application's
//! claims type in one pass over the JSON.
//!
//! [`read_claims`] deserializes the application's type through a
//! deserializer that watches the top-level object go by and keeps the raw
//! JSON of every registered claim it sees (`exp`, `nbf`, `iat`, `iss`, `aud`,
//! `sub`, `jti`, `fam` and the kind claim). The verifier then checks those
//! without reading the payload again. A registered claim named twice is
//! refused whatever the application's type does with it.
//!
//! Claims types whose `Deserialize` does not read the payload as a plain
//! object (a newtype, an `Option`) are still served: when the top-level object
//! was not seen through to its end, the registered claims are read by a
//! second, registered-only pass ([`parse_registered`]).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

use serde::Deserialize as _;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::error::TokenError;

/// A registered claim's value, as seen going by.
#[derive(Debug, Clone)]
pub(crate) enum Claim<'a> {
    /// The claim's JSON text, kept whole.
    Raw(&'a RawValue),
    /// A non-negative integer.
    Int(u64),
    /// Any other number but a negative integer.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// Anything else: `null`, a boolean, a negative integer, an array, an
    /// object.
    Other,
}

/// Each registered claim a payload carries.
#[derive(Default, Clone)]
pub(crate) struct RawRegistered<'a> {
    pub(crate) exp: Option<Claim<'a>>,
    pub(crate) nbf: Option<Claim<'a>>,
    pub(crate) iat: Option<Claim<'a>>,
    pub(crate) iss: Option<Claim<'a>>,
    pub(crate) aud: Option<Claim<'a>>,
    pub(crate) sub: Option<Claim<'a>>,
    pub(crate) jti: Option<Claim<'a>>,
    pub(crate) fam: Option<Claim<'a>>,
    pub(crate) kind: Option<Claim<'a>>,
}

/// Which registered claim a key names.
#[derive(Clone, Copy)]
enum Slot {
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
    Sub,
    Jti,
    Fam,
    Kind,
}

impl Slot {
    fn of(key: &str, kind_claim: &str) -> Option<Slot> {
        Slot::of_bytes(key.as_bytes(), kind_claim)
    }

    fn of_bytes(key: &[u8], kind_claim: &str) -> Option<Slot> {
        if key.len() != 3 {
            return (key == kind_claim.as_bytes()).then_some(Slot::Kind);
        }
        Some(match key {
            b"exp" => Slot::Exp,
            b"nbf" => Slot::Nbf,
            b"iat" => Slot::Iat,
            b"iss" => Slot::Iss,
            b"aud" => Slot::Aud,
            b"sub" => Slot::Sub,
            b"jti" => Slot::Jti,
            b"fam" => Slot::Fam,
            other if other == kind_claim.as_bytes() => Slot::Kind,
            _ => return None,
        })
    }
}

impl<'a> RawRegistered<'a> {
    /// Records `value` for `slot`; `false` when the claim was already seen.
    fn record(&mut self, slot: Slot, value: Claim<'a>) -> bool {
        let place = match slot {
            Slot::Exp => &mut self.exp,
            Slot::Nbf => &mut self.nbf,
            Slot::Iat => &mut self.iat,
            Slot::Iss => &mut self.iss,
            Slot::Aud => &mut self.aud,
            Slot::Sub => &mut self.sub,
            Slot::Jti => &mut self.jti,
            Slot::Fam => &mut self.fam,
            Slot::Kind => &mut self.kind,
        };
        if place.is_some() {
            return false;
        }
        *place = Some(value);
        true
    }
}

/// What the pass over the payload learned besides the application's claims.
struct Capture<'k, 'de> {
    kind_claim: &'k str,
    /// Keep every registered claim's JSON text whole (the registered-only
    /// pass), rather than watching the claims type read it.
    keep_raw: bool,
    raw: RefCell<RawRegistered<'de>>,
    /// How many values were recorded.
    recorded: Cell<usize>,
    duplicate: Cell<bool>,
    /// The top-level object was read to its end.
    complete: Cell<bool>,
    /// A registered claim went by that the claims type read in a way that
    /// could not be watched (a newtype, a raw value).
    unseen: Cell<bool>,
}

impl<'k, 'de> Capture<'k, 'de> {
    fn new(kind_claim: &'k str, keep_raw: bool) -> Self {
        Capture {
            kind_claim,
            keep_raw,
            raw: RefCell::new(RawRegistered::default()),
            recorded: Cell::new(0),
            duplicate: Cell::new(false),
            complete: Cell::new(false),
            unseen: Cell::new(false),
        }
    }

    fn record<E: de::Error>(&self, slot: Slot, value: Claim<'de>) -> Result<(), E> {
        self.recorded.set(self.recorded.get() + 1);
        if self.raw.borrow_mut().record(slot, value) {
            Ok(())
        } else {
            self.duplicate.set(true);
            Err(E::custom("duplicate claim"))
        }
    }
}

/// The payload's first top-level `exp` when it is a whole non-negative
/// number: `None` otherwise, or when the payload is not a JSON object of
/// plainly named members up to it (a name with an escape ends the scan).
/// A scan of the bytes up to `exp`, which builds nothing.
///
/// It only ever serves a refusal, and a sound one: a payload whose first
/// `exp` is past is refused by the full reading too (as expired, or for a
/// second `exp`, or for what does not parse after it), so an expired token
/// is refused before its claims are read into the application's type or
/// its signature checked, however long the rest of it is.
pub(crate) fn expiry_at_a_glance(payload: &[u8]) -> Option<u64> {
    let mut found = None;
    members(payload, |name, value| {
        if name != b"exp" {
            return true;
        }
        if !value.is_empty() {
            found = value.iter().try_fold(0u64, |whole, &digit| {
                let digit = digit.checked_sub(b'0').filter(|d| *d <= 9)?;
                whole.checked_mul(10)?.checked_add(u64::from(digit))
            });
        }
        false
    });
    found
}

/// Whether a registered claim (`exp`, `nbf`, `iat`, `iss`, `aud`, `sub`,
/// `jti`, `fam` or `kind_claim`) is named twice at the top level: `None`
/// when the scan cannot tell (a name with an escape, a payload that is not
/// a JSON object).
pub(crate) fn repeats_a_registered_claim(payload: &[u8], kind_claim: &str) -> Option<bool> {
    let mut seen = [false; 9];
    let mut repeated = false;
    let complete = members(payload, |name, _| {
        let Some(slot) = Slot::of_bytes(name, kind_claim) else {
            return true;
        };
        let seen = &mut seen[slot as usize];
        repeated = *seen;
        *seen = true;
        !repeated
    });
    (complete || repeated).then_some(repeated)
}

/// Calls `visit` with each top-level member's name and the text of its
/// value, in order, while it answers `true`. `true` when every member was
/// visited to the object's end; `false` when `visit` stopped, or when the
/// payload is not a JSON object of plainly named members (a name with an
/// escape, a truncated value) from there on.
fn members(payload: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> bool) -> bool {
    let mut at = skip_space(payload, 0);
    if payload.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_space(payload, at + 1);
    if payload.get(at) == Some(&b'}') {
        return skip_space(payload, at + 1) == payload.len();
    }
    loop {
        // A name, without escapes.
        if payload.get(at) != Some(&b'"') {
            return false;
        }
        // Names are short: a plain search.
        let Some(end) = payload
            .get(at + 1..)
            .and_then(|rest| rest.iter().position(|&b| b == b'"'))
        else {
            return false;
        };
        let name = &payload[at + 1..at + 1 + end];
        if name.contains(&b'\\') {
            return false;
        }
        at = skip_space(payload, at + end + 2);
        if payload.get(at) != Some(&b':') {
            return false;
        }
        at = skip_space(payload, at + 1);
        let Some(value_end) = skip_value(payload, at) else {
            return false;
        };
        if !visit(name, &payload[at..value_end]) {
            return false;
        }
        at = skip_space(payload, value_end);
        match payload.get(at) {
            Some(b',') => at = skip_space(payload, at + 1),
            Some(b'}') => return skip_space(payload, at + 1) == payload.len(),
            _ => return false,
        }
    }
}

/// The end of the JSON value that starts at `at`: a string (escapes
/// skipped), an object or array (nested ones counted, strings in them
/// skipped), or a scalar (to the next `,`, `}`, `]` or whitespace). Not a
/// validation: the full reading judges the value.
fn skip_value(payload: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *payload.get(at)? {
            b'"' => {
                at += 1;
                loop {
                    at += memchr::memchr2(b'"', b'\\', payload.get(at..)?)?;
                    if payload[at] == b'"' {
                        break;
                    }
                    at += 2;
                }
                at += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                at += 1;
            }
            _ if depth > 0 => at += 1,
            _ => {
                while !matches!(
                    payload.get(at),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    at += 1;
                }
                return Some(at);
            }
        }
        if depth == 0 {
            return Some(at);
        }
    }
}

/// The index of the first byte from `at` that is not JSON whitespace.
fn skip_space(payload: &[u8], mut at: usize) -> usize {
    while matches!(payload.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Deserializes the application's claims from the payload and, in the same
/// pass, captures the registered claims of the top-level object; hands both
/// to `then`, which sees the registered claims where they were captured
/// (they are not moved out). An error from `then` is returned as it is.
pub(crate) fn read_claims<'de, C: DeserializeOwned, T>(
    payload: &'de [u8],
    kind_claim: &str,
    then: impl FnOnce(C, &RawRegistered<'de>) -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    let capture = Capture::new(kind_claim, false);
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = C::deserialize(Tee {
        inner: &mut de,
        capture: &capture,
    })
    .and_then(|claims| de.end().map(|()| claims));
    match parsed {
        Ok(claims) if capture.complete.get() && !capture.unseen.get() => {
            then(claims, &capture.raw.borrow())
        }
        // A claims type that did not read the payload as one plain object,
        // or read a registered claim out of sight: read the registered claims
        // on their own.
        Ok(claims) => then(claims, &parse_registered(payload, kind_claim)?),
        Err(_) if capture.duplicate.get() => Err(TokenError::DuplicateClaim),
        Err(err) if err.to_string().starts_with("duplicate field") => {
            Err(TokenError::DuplicateClaim)
        }
        Err(_) => Err(TokenError::ClaimsMismatch),
    }
}

/// [`read_claims`], returning the claims and the registered claims.
#[cfg(test)]
pub(crate) fn parse_claims<'de, C: DeserializeOwned>(
    payload: &'de [u8],
    kind_claim: &str,
) -> Result<(C, RawRegistered<'de>), TokenError> {
    read_claims(payload, kind_claim, |claims, raw| Ok((claims, raw.clone())))
}

/// Reads only the registered claims of a payload.
pub(crate) fn parse_registered<'de>(
    payload: &'de [u8],
    kind_claim: &str,
) -> Result<RawRegistered<'de>, TokenError> {
    let capture = Capture::new(kind_claim, true);
    let mut de = serde_json::Deserializer::from_slice(payload);
    let read = IgnoredAny::deserialize(Tee {
        inner: &mut de,
        capture: &capture,
    })
    .and_then(|_| de.end());
    match read {
        Ok(()) if capture.complete.get() => Ok(capture.raw.into_inner()),
        Err(_) if capture.duplicate.get() => Err(TokenError::DuplicateClaim),
        _ => Err(TokenError::Malformed),
    }
}

/// The deserializer handed to the claims type: the payload's own, with the
/// top-level object watched.
struct Tee<'c, 'k, 'de, D> {
    inner: D,
    capture: &'c Capture<'k, 'de>,
}

impl<'c, 'k, 'de, D> Tee<'c, 'k, 'de, D> {
    fn watch<V>(self, visitor: V) -> (D, TeeVisitor<'c, 'k, 'de, V>) {
        (
            self.inner,
            TeeVisitor {
                visitor,
                capture: self.capture,
            },
        )
    }
}

/// Forwards `deserialize_*` methods untouched: the claims type did not ask
/// for an object, so there is nothing to watch.
macro_rules! forward_untouched {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tee<'_, '_, 'de, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let (inner, visitor) = self.watch(visitor);
        inner.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let (inner, visitor) = self.watch(visitor);
        inner.deserialize_map(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (inner, visitor) = self.watch(visitor);
        inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // The payload's own `ignored_any` would skip the object unseen.
        let (inner, visitor) = self.watch(visitor);
        inner.deserialize_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    forward_untouched! {
        deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(),
        deserialize_u32(), deserialize_u64(), deserialize_u128(), deserialize_f32(),
        deserialize_f64(), deserialize_char(), deserialize_str(), deserialize_string(),
        deserialize_bytes(), deserialize_byte_buf(), deserialize_option(), deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
    }
}

/// The claims type's visitor, handed a watched map.
struct TeeVisitor<'c, 'k, 'de, V> {
    visitor: V,
    capture: &'c Capture<'k, 'de>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TeeVisitor<'_, '_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(TeeMap {
            map,
            capture: self.capture,
            pending: None,
        })
    }
}

/// The top-level object, each registered claim's raw JSON kept as it goes by.
struct TeeMap<'c, 'k, 'de, A> {
    map: A,
    capture: &'c Capture<'k, 'de>,
    /// The registered claim whose value comes next.
    pending: Option<Slot>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TeeMap<'_, '_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut named = None;
        let key = self.map.next_key_seed(KeySeed {
            seed,
            kind_claim: self.capture.kind_claim,
            named: &mut named,
        })?;
        if key.is_none() {
            self.capture.complete.set(true);
            return Ok(None);
        }
        self.pending = match named {
            Some(slot) => slot,
            // The key reached the claims type other than as a string: its
            // name went by unseen, so the registered claims are read on
            // their own.
            None => {
                self.capture.unseen.set(true);
                None
            }
        };
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            None => self.map.next_value_seed(seed),
            // An audience may be an array: kept whole, then handed on.
            Some(slot) if self.capture.keep_raw || matches!(slot, Slot::Aud) => {
                let raw: &'de RawValue = self.map.next_value()?;
                self.capture.record(slot, Claim::Raw(raw))?;
                seed.deserialize(raw).map_err(de::Error::custom)
            }
            // Anything else is seen as the claims type reads it.
            Some(slot) => {
                let before = self.capture.recorded.get();
                let value = self.map.next_value_seed(Watched {
                    seed,
                    slot,
                    capture: self.capture,
                })?;
                if self.capture.recorded.get() == before {
                    self.capture.unseen.set(true);
                }
                Ok(value)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The claims type's seed for a key, handed the payload's key through a
/// deserializer whose visitor notes which registered claim, if any, the key
/// names: the key is read once, by the claims type, and seen going by.
struct KeySeed<'n, 'k, K> {
    seed: K,
    kind_claim: &'k str,
    /// `Some` once the key went by as a string: the claim it names, if any.
    named: &'n mut Option<Option<Slot>>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, '_, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        self.seed.deserialize(KeyName {
            inner: deserializer,
            kind_claim: self.kind_claim,
            named: self.named,
        })
    }
}

struct KeyName<'n, 'k, D> {
    inner: D,
    kind_claim: &'k str,
    named: &'n mut Option<Option<Slot>>,
}

/// `deserialize_*` methods handed on with a visitor that notes the key.
macro_rules! watch_key {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* KeyVisitor {
                visitor,
                kind_claim: self.kind_claim,
                named: self.named,
            })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyName<'_, '_, D> {
    type Error = D::Error;

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    watch_key! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
        deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
        deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
        deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
        deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_option(), deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize), deserialize_map(),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }
}

/// The claims type's visitor for a key: a string key is noted, then every
/// visit goes on unchanged.
struct KeyVisitor<'n, 'k, V> {
    visitor: V,
    kind_claim: &'k str,
    named: &'n mut Option<Option<Slot>>,
}

impl<V> KeyVisitor<'_, '_, V> {
    fn note(&mut self, key: &str) {
        *self.named = Some(Slot::of(key, self.kind_claim));
    }
}

/// Visits handed on as they are.
macro_rules! forward_visit {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, $($arg: $ty),*) -> Result<V::Value, E> {
            self.visitor.$method($($arg),*)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<V::Value, E> {
        self.note(v);
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<V::Value, E> {
        self.note(v);
        self.visitor.visit_str(v)
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<V::Value, E> {
        self.note(&v);
        self.visitor.visit_string(v)
    }

    forward_visit! {
        visit_bool(v: bool), visit_i8(v: i8), visit_i16(v: i16), visit_i32(v: i32),
        visit_i64(v: i64), visit_i128(v: i128), visit_u8(v: u8), visit_u16(v: u16),
        visit_u32(v: u32), visit_u64(v: u64), visit_u128(v: u128), visit_f32(v: f32),
        visit_f64(v: f64), visit_char(v: char), visit_bytes(v: &[u8]),
        visit_borrowed_bytes(v: &'de [u8]), visit_byte_buf(v: Vec<u8>), visit_none(),
        visit_unit(),
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// A registered claim's value, handed to the claims type's seed through a
/// deserializer whose visitor records what `serde_json` shows it.
struct Watched<'c, 'k, 'de, S> {
    seed: S,
    slot: Slot,
    capture: &'c Capture<'k, 'de>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Watched<'_, '_, 'de, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(WatchedValue {
            inner: deserializer,
            slot: self.slot,
            capture: self.capture,
        })
    }
}

struct WatchedValue<'c, 'k, 'de, D> {
    inner: D,
    slot: Slot,
    capture: &'c Capture<'k, 'de>,
}

impl<'c, 'k, 'de, D> WatchedValue<'c, 'k, 'de, D> {
    fn watch<V>(self, visitor: V) -> (D, WatchingVisitor<'c, 'k, 'de, V>) {
        (
            self.inner,
            WatchingVisitor {
                visitor,
                slot: self.slot,
                capture: self.capture,
            },
        )
    }
}

/// `deserialize_*` methods handed on with a watching visitor.
macro_rules! watch_value {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let (inner, visitor) = self.watch(visitor);
            inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WatchedValue<'_, '_, 'de, D> {
    type Error = D::Error;

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // `serde_json` would skip the value unseen; `IgnoredAny` takes any
        // visit.
        let (inner, visitor) = self.watch(visitor);
        inner.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // Left unwatched (this is how a `RawValue` is asked for): nothing
        // is recorded, and the registered claims are read on their own.
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    watch_value! {
        deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
        deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
        deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
        deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
        deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_option(), deserialize_unit(), deserialize_unit_struct(name: &'static str),
        deserialize_seq(), deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize), deserialize_map(),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
    }
}

/// The claims type's visitor for a registered claim: each visit records
/// the value, then goes on.
struct WatchingVisitor<'c, 'k, 'de, V> {
    visitor: V,
    slot: Slot,
    capture: &'c Capture<'k, 'de>,
}

/// Visits recorded as [`Claim::Other`].
macro_rules! visit_other {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, $($arg: $ty),*) -> Result<V::Value, E> {
            self.capture.record::<E>(self.slot, Claim::Other)?;
            self.visitor.$method($($arg),*)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for WatchingVisitor<'_, '_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.capture.record::<E>(self.slot, Claim::Int(v))?;
        self.visitor.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.capture.record::<E>(self.slot, Claim::Float(v))?;
        self.visitor.visit_f64(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.capture
            .record::<E>(self.slot, Claim::Str(Cow::Borrowed(v)))?;
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.capture
            .record::<E>(self.slot, Claim::Str(Cow::Owned(v.to_owned())))?;
        self.visitor.visit_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.capture
            .record::<E>(self.slot, Claim::Str(Cow::Owned(v.clone())))?;
        self.visitor.visit_string(v)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        // Not null: the value itself is visited next.
        self.visitor.visit_some(WatchedValue {
            inner: deserializer,
            slot: self.slot,
            capture: self.capture,
        })
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.capture.record::<E>(self.slot, Claim::Other)?;
        self.visitor.visit_none()
    }

    visit_other! {
        visit_bool(v: bool), visit_i8(v: i8), visit_i16(v: i16), visit_i32(v: i32),
        visit_i64(v: i64), visit_i128(v: i128), visit_u8(v: u8), visit_u16(v: u16),
        visit_u32(v: u32), visit_u128(v: u128), visit_f32(v: f32), visit_char(v: char),
        visit_bytes(v: &[u8]), visit_borrowed_bytes(v: &'de [u8]), visit_byte_buf(v: Vec<u8>),
        visit_unit(),
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.capture.record::<D::Error>(self.slot, Claim::Other)?;
        self.visitor.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.capture.record::<A::Error>(self.slot, Claim::Other)?;
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.capture.record::<A::Error>(self.slot, Claim::Other)?;
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.capture.record::<A::Error>(self.slot, Claim::Other)?;
        self.visitor.visit_enum(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{Value, json};

    #[test]
    fn expiry_at_a_glance_reads_the_first_whole_exp() {
        let glance = |json: &str| expiry_at_a_glance(json.as_bytes());
        assert_eq!(glance(r#"{"exp":123}"#), Some(123));
        assert_eq!(glance(r#"{"sub":"a","iat":1,"exp":5,"x":[1]}"#), Some(5));
        assert_eq!(
            glance(" {\n \"sub\" : \"a\\\"b\" ,\t\"exp\" : 7 }"),
            Some(7)
        );
        assert_eq!(glance(r#"{"sub":"has \"exp\":1 inside","exp":2}"#), Some(2));
        assert_eq!(
            glance(r#"{"ok":true,"n":null,"f":-1.5e3,"exp":3}"#),
            Some(3)
        );
        assert_eq!(glance(r#"{"nested":{"exp":1,"a":["}"]},"exp":9}"#), Some(9));
        assert_eq!(glance(r#"{"list":["exp",1,[2,{}]],"exp":9}"#), Some(9));
        assert_eq!(glance(r#"{"exp":1,"exp":2}"#), Some(1));
        // No whole number: left to the full reading.
        for json in [
            r#"{"e\u0078p":1}"#,
            r#"{"exp":1.5}"#,
            r#"{"exp":1e9}"#,
            r#"{"exp":"9"}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":}"#,
            r#"{"exp":99999999999999999999999}"#,
            r#"{"sub":"a"}"#,
            r#"{"sub":"a"#,
            r#"{"sub":"a" "exp":1}"#,
            r#"{"list":[1,"exp":2}"#,
            r#"["exp",1]"#,
            "",
            "{",
        ] {
            assert_eq!(glance(json), None, "{json}");
        }
    }

    #[test]
    fn a_repeated_registered_claim_is_seen_past_nested_values() {
        let repeats = |json: &str| repeats_a_registered_claim(json.as_bytes(), "usefor");
        assert_eq!(
            repeats(r#"{"exp":1,"sub":"a","roles":["a"],"x":{"exp":2}}"#),
            Some(false)
        );
        assert_eq!(repeats(r#"{"exp":1,"x":{"exp":2},"exp":3}"#), Some(true));
        assert_eq!(repeats(r#"{"iss":"a","exp":1,"iss":"b"}"#), Some(true));
        assert_eq!(
            repeats(r#"{"usefor":"access","exp":1,"usefor":"refresh"}"#),
            Some(true)
        );
        assert_eq!(repeats(r#"{"name":1,"name":2,"exp":1}"#), Some(false));
        assert_eq!(repeats("{}"), Some(false));
        // Cannot tell: an escaped name, or not one object to its end.
        for json in [
            r#"{"\u0065xp":1,"exp":2}"#,
            r#"{"exp":1,"x":[1}"#,
            r#"{"exp":1} x"#,
            "[]",
        ] {
            assert_eq!(repeats(json), None, "{json}");
        }
    }

    /// Whatever the object, a glance that answers agrees with a full
    /// reading of the first `exp`, and the repeat scan with serde's.
    #[test]
    fn the_scans_agree_with_the_full_reading() {
        let values = [
            json!("text with \"quotes\", \\ and } , {"),
            json!(17),
            json!(-3),
            json!(2.5),
            json!(true),
            json!(null),
            json!([1, {"exp": 4}, "]"]),
            json!({"exp": 5, "a": "}"}),
            json!("é, ünïcode"),
        ];
        let mut answered = 0;
        for (i, before) in values.iter().enumerate() {
            for after in &values {
                for exp in [json!(1_700_000_000u64), json!(0), json!(1.0), json!("1")] {
                    let json = format!(
                        r#"{{"k{i}":{before},"exp":{exp},"z":{after}}}"#,
                        before = serde_json::to_string(before).unwrap(),
                        exp = serde_json::to_string(&exp).unwrap(),
                        after = serde_json::to_string(after).unwrap(),
                    );
                    let full: Value = serde_json::from_str(&json).unwrap();
                    if let Some(exp) = expiry_at_a_glance(json.as_bytes()) {
                        assert_eq!(full["exp"].as_u64(), Some(exp), "{json}");
                        answered += 1;
                    }
                    assert_eq!(
                        repeats_a_registered_claim(json.as_bytes(), "usefor"),
                        Some(false),
                        "{json}"
                    );
                    let twice = format!("{},\"exp\":2}}", &json[..json.len() - 1]);
                    assert_eq!(
                        repeats_a_registered_claim(twice.as_bytes(), "usefor"),
                        Some(true),
                        "{twice}"
                    );
                }
            }
        }
        // Every whole `exp` is answered.
        assert_eq!(answered, 9 * 9 * 2);
    }

    mod scans {
        use proptest::prelude::*;

        use super::super::{expiry_at_a_glance, repeats_a_registered_claim};

        const TEMPLATE: &[u8] =
            br#"{"sub":"a\"b","iat":1,"exp":1700000000,"roles":["x","y"],"n":{"k":[1,{"exp":2}]},"iss":"i"}"#;
        const SIGNIFICANT: &[u8] = br#""\{}[],: expx01"#;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// Any bytes: an answer, never a panic.
            #[test]
            fn the_scans_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = expiry_at_a_glance(&bytes);
                let _ = repeats_a_registered_claim(&bytes, "usefor");
            }

            /// A payload changed at a few places by JSON's own characters:
            /// whenever the scans would refuse on `exp`, a full reading of
            /// the payload, if it reads at all, finds that `exp`.
            #[test]
            fn a_glance_that_answers_matches_the_full_reading(
                changes in prop::collection::vec((0..TEMPLATE.len(), 0..SIGNIFICANT.len()), 1..5),
            ) {
                let mut bytes = TEMPLATE.to_vec();
                for (at, byte) in changes {
                    bytes[at] = SIGNIFICANT[byte];
                }
                let glanced = expiry_at_a_glance(&bytes);
                let repeated = repeats_a_registered_claim(&bytes, "usefor");
                if let (Some(exp), Some(false)) = (glanced, repeated)
                    && let Ok(full) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
                {
                    prop_assert_eq!(full.get("exp").and_then(serde_json::Value::as_u64), Some(exp));
                }
            }
        }
    }

    /// A recorded claim as JSON text.
    fn text(claim: &Option<Claim<'_>>) -> String {
        match claim {
            Some(Claim::Raw(raw)) => raw.get().to_owned(),
            Some(Claim::Int(v)) => v.to_string(),
            Some(Claim::Float(v)) => v.to_string(),
            Some(Claim::Str(v)) => format!("{v:?}"),
            Some(Claim::Other) => "other".to_owned(),
            None => "none".to_owned(),
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Mine {
        sub: String,
        exp: u64,
        #[serde(default)]
        roles: Vec<String>,
    }

    #[derive(Deserialize, Debug)]
    struct Wrapped(#[allow(dead_code)] Value);

    #[test]
    fn one_pass_reads_both_the_claims_type_and_the_registered_claims() {
        let payload = br#"{"sub":"admin","exp":17,"iss":"core","usefor":"access","roles":["a"]}"#;
        let (mine, raw) = parse_claims::<Mine>(payload, "usefor").unwrap();
        assert_eq!(mine.sub, "admin");
        assert_eq!(mine.exp, 17);
        assert_eq!(mine.roles, ["a"]);
        assert_eq!(text(&raw.exp), "17");
        assert_eq!(text(&raw.iss), r#""core""#);
        assert_eq!(text(&raw.kind), r#""access""#);
        assert!(raw.nbf.is_none());
    }

    #[test]
    fn plain_types_are_watched_without_a_second_pass() {
        #[derive(Deserialize)]
        struct IgnoresAll {}
        let payload = br#"{"sub":"a","exp":17,"aud":["x"]}"#;
        let watched = |raw: RawRegistered<'_>| {
            matches!(raw.exp, Some(Claim::Int(17)))
                && matches!(raw.sub, Some(Claim::Str(Cow::Borrowed("a"))))
                // An audience is kept whole.
                && matches!(raw.aud, Some(Claim::Raw(_)))
        };
        assert!(watched(parse_claims::<Mine>(payload, "usefor").unwrap().1));
        assert!(watched(parse_claims::<Value>(payload, "usefor").unwrap().1));
        assert!(watched(
            parse_claims::<IgnoresAll>(payload, "usefor").unwrap().1
        ));
        // The registered-only pass keeps every claim whole.
        let raw = parse_registered(payload, "usefor").unwrap();
        assert!(matches!(raw.exp, Some(Claim::Raw(_))));
    }

    #[test]
    fn a_registered_claim_twice_is_refused_even_when_the_type_ignores_it() {
        let payload = br#"{"sub":"a","exp":1,"iss":"x","iss":"y"}"#;
        assert_eq!(
            parse_claims::<Mine>(payload, "usefor").err(),
            Some(TokenError::DuplicateClaim)
        );
        let payload = br#"{"sub":"a","exp":1,"roles":[],"roles":[]}"#;
        assert_eq!(
            parse_claims::<Mine>(payload, "usefor").err(),
            Some(TokenError::DuplicateClaim)
        );
    }

    #[test]
    fn types_that_do_not_read_an_object_get_a_second_pass() {
        let payload = br#"{"exp":5,"sub":"x"}"#;
        let (_, raw) = parse_claims::<Wrapped>(payload, "usefor").unwrap();
        assert_eq!(text(&raw.exp), "5");
        let (_, raw) = parse_claims::<Option<Value>>(payload, "usefor").unwrap();
        assert_eq!(text(&raw.sub), r#""x""#);
        let (value, raw) = parse_claims::<Value>(payload, "usefor").unwrap();
        assert_eq!(value["exp"], 5);
        assert_eq!(text(&raw.exp), "5");
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Use {
        Access,
    }

    #[derive(Deserialize, Debug)]
    struct Shapes {
        exp: f64,
        iat: Option<u32>,
        nbf: Option<i64>,
        sub: Option<String>,
        jti: Value,
        iss: Box<RawValue>,
        aud: Vec<String>,
        usefor: Use,
        fam: Option<String>,
    }

    #[test]
    fn registered_claims_reach_the_claims_type_as_serde_json_would_give_them() {
        let payload = br#"{"exp":17,"iat":3,"nbf":-2,"sub":"a\"b","jti":{"x":[1]},
            "iss":"core","aud":["p","q"],"usefor":"access","fam":null}"#;
        let (shapes, raw) = parse_claims::<Shapes>(payload, "usefor").unwrap();
        assert_eq!(shapes.exp, 17.0);
        assert_eq!(shapes.iat, Some(3));
        assert_eq!(shapes.nbf, Some(-2));
        assert_eq!(shapes.sub.as_deref(), Some("a\"b"));
        assert_eq!(shapes.jti["x"][0], 1);
        assert_eq!(shapes.iss.get(), r#""core""#);
        assert_eq!(shapes.aud, ["p", "q"]);
        assert_eq!(shapes.usefor, Use::Access);
        assert_eq!(shapes.fam, None);
        assert_eq!(text(&raw.fam), "null");

        // Shapes serde_json refuses are refused the same way.
        for payload in [
            &br#"{"exp":"17","iat":3,"nbf":1,"sub":"a","jti":1,"iss":"c","aud":[],"usefor":"access","fam":null}"#[..],
            br#"{"exp":17,"iat":70000000000,"nbf":1,"sub":"a","jti":1,"iss":"c","aud":[],"usefor":"access","fam":null}"#,
            br#"{"exp":17,"iat":3,"nbf":1,"sub":5,"jti":1,"iss":"c","aud":[],"usefor":"access","fam":null}"#,
            br#"{"exp":17,"iat":3,"nbf":1,"sub":"a","jti":1,"iss":"c","aud":"p","usefor":"access","fam":null}"#,
            br#"{"exp":17,"iat":3,"nbf":1,"sub":"a","jti":1,"iss":"c","aud":[],"usefor":"refresh","fam":null}"#,
        ] {
            let ours = parse_claims::<Shapes>(payload, "usefor").is_ok();
            let theirs = serde_json::from_slice::<Shapes>(payload).is_ok();
            assert!(!ours && !theirs, "{}", String::from_utf8_lossy(payload));
        }
    }

    /// A claims type that reads the payload's keys as bytes.
    struct ByteKeys(Vec<Vec<u8>>);

    impl<'de> Deserialize<'de> for ByteKeys {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Bytes(Vec<u8>);
            impl<'de> Deserialize<'de> for Bytes {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    struct V;
                    impl<'de> Visitor<'de> for V {
                        type Value = Bytes;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            f.write_str("bytes")
                        }
                        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                            Ok(Bytes(v.to_vec()))
                        }
                    }
                    d.deserialize_bytes(V)
                }
            }
            struct Keys;
            impl<'de> Visitor<'de> for Keys {
                type Value = ByteKeys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ByteKeys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(Bytes(key)) = map.next_key()? {
                        map.next_value::<IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(ByteKeys(keys))
                }
            }
            deserializer.deserialize_map(Keys)
        }
    }

    #[test]
    fn keys_read_other_than_as_strings_get_a_second_pass() {
        let payload = br#"{"exp":9,"nbf":12,"sub":"a"}"#;
        let (keys, raw) = parse_claims::<ByteKeys>(payload, "usefor").unwrap();
        assert_eq!(keys.0, [&b"exp"[..], b"nbf", b"sub"]);
        assert_eq!(text(&raw.exp), "9");
        assert_eq!(text(&raw.nbf), "12");
    }

    #[test]
    fn escaped_keys_still_name_registered_claims() {
        let payload = br#"{"\u0065xp":9,"sub":"a"}"#;
        let (mine, raw) = parse_claims::<Mine>(payload, "usefor").unwrap();
        assert_eq!(mine.exp, 9);
        assert_eq!(text(&raw.exp), "9");
    }

    #[test]
    fn not_an_object_or_trailing_bytes_is_refused() {
        assert_eq!(
            parse_claims::<Value>(b"[1,2]", "usefor").err(),
            Some(TokenError::ClaimsMismatch)
        );
        assert_eq!(
            parse_registered(b"[1,2]", "usefor").err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(
            parse_claims::<Mine>(br#"{"sub":"a","exp":1} x"#, "usefor").err(),
            Some(TokenError::ClaimsMismatch)
        );
        assert_eq!(
            parse_registered(br#"{"exp":1} x"#, "usefor").err(),
            Some(TokenError::Malformed)
        );
    }
}
