//! Reading a token's payload: the registered claims and the application's
//! claims type in one pass over the JSON.
//!
//! [`parse_claims`] deserializes the application's type through a
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
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess,
    Visitor,
};
use serde_json::value::RawValue;

use crate::error::TokenError;

/// The raw JSON of each registered claim a payload carries.
#[derive(Default)]
pub(crate) struct RawRegistered<'a> {
    pub(crate) exp: Option<&'a RawValue>,
    pub(crate) nbf: Option<&'a RawValue>,
    pub(crate) iat: Option<&'a RawValue>,
    pub(crate) iss: Option<&'a RawValue>,
    pub(crate) aud: Option<&'a RawValue>,
    pub(crate) sub: Option<&'a RawValue>,
    pub(crate) jti: Option<&'a RawValue>,
    pub(crate) fam: Option<&'a RawValue>,
    pub(crate) kind: Option<&'a RawValue>,
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
        Some(match key {
            "exp" => Slot::Exp,
            "nbf" => Slot::Nbf,
            "iat" => Slot::Iat,
            "iss" => Slot::Iss,
            "aud" => Slot::Aud,
            "sub" => Slot::Sub,
            "jti" => Slot::Jti,
            "fam" => Slot::Fam,
            other if other == kind_claim => Slot::Kind,
            _ => return None,
        })
    }
}

impl<'a> RawRegistered<'a> {
    /// Records `value` for `slot`; `false` when the claim was already seen.
    fn record(&mut self, slot: Slot, value: &'a RawValue) -> bool {
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

/// An object key, borrowed from the payload unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What the pass over the payload learned besides the application's claims.
struct Capture<'k, 'de> {
    kind_claim: &'k str,
    raw: RefCell<RawRegistered<'de>>,
    duplicate: Cell<bool>,
    /// The top-level object was read to its end.
    complete: Cell<bool>,
}

impl<'de> Capture<'_, 'de> {
    fn record<E: de::Error>(&self, slot: Slot, value: &'de RawValue) -> Result<(), E> {
        if self.raw.borrow_mut().record(slot, value) {
            Ok(())
        } else {
            self.duplicate.set(true);
            Err(E::custom("duplicate claim"))
        }
    }
}

/// Deserializes the application's claims from the payload and, in the same
/// pass, captures the registered claims of the top-level object.
pub(crate) fn parse_claims<'de, C: DeserializeOwned>(
    payload: &'de [u8],
    kind_claim: &str,
) -> Result<(C, RawRegistered<'de>), TokenError> {
    let capture = Capture {
        kind_claim,
        raw: RefCell::new(RawRegistered::default()),
        duplicate: Cell::new(false),
        complete: Cell::new(false),
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = C::deserialize(Tee {
        inner: &mut de,
        capture: &capture,
    })
    .and_then(|claims| de.end().map(|()| claims));
    match parsed {
        Ok(claims) if capture.complete.get() => Ok((claims, capture.raw.into_inner())),
        // A claims type that did not read the payload as one plain object:
        // read the registered claims on their own.
        Ok(claims) => Ok((claims, parse_registered(payload, kind_claim)?)),
        Err(_) if capture.duplicate.get() => Err(TokenError::DuplicateClaim),
        Err(err) if err.to_string().starts_with("duplicate field") => {
            Err(TokenError::DuplicateClaim)
        }
        Err(_) => Err(TokenError::ClaimsMismatch),
    }
}

/// Reads only the registered claims of a payload.
pub(crate) fn parse_registered<'de>(
    payload: &'de [u8],
    kind_claim: &str,
) -> Result<RawRegistered<'de>, TokenError> {
    let capture = Capture {
        kind_claim,
        raw: RefCell::new(RawRegistered::default()),
        duplicate: Cell::new(false),
        complete: Cell::new(false),
    };
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
        let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else {
            self.capture.complete.set(true);
            return Ok(None);
        };
        self.pending = Slot::of(&key, self.capture.kind_claim);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            None => self.map.next_value_seed(seed),
            Some(slot) => {
                let raw: &'de RawValue = self.map.next_value()?;
                self.capture.record(slot, raw)?;
                seed.deserialize(raw).map_err(de::Error::custom)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

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
        assert_eq!(raw.exp.unwrap().get(), "17");
        assert_eq!(raw.iss.unwrap().get(), r#""core""#);
        assert_eq!(raw.kind.unwrap().get(), r#""access""#);
        assert!(raw.nbf.is_none());
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
        assert_eq!(raw.exp.unwrap().get(), "5");
        let (_, raw) = parse_claims::<Option<Value>>(payload, "usefor").unwrap();
        assert_eq!(raw.sub.unwrap().get(), r#""x""#);
        let (value, raw) = parse_claims::<Value>(payload, "usefor").unwrap();
        assert_eq!(value["exp"], 5);
        assert_eq!(raw.exp.unwrap().get(), "5");
    }

    #[test]
    fn escaped_keys_still_name_registered_claims() {
        let payload = br#"{"\u0065xp":9,"sub":"a"}"#;
        let (mine, raw) = parse_claims::<Mine>(payload, "usefor").unwrap();
        assert_eq!(mine.exp, 9);
        assert_eq!(raw.exp.unwrap().get(), "9");
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
