//! [`KeySet`]: the keys a verifier accepts, chosen by `kid`.

use crate::error::ConfigError;

use super::{VerifyingKey, algorithm_name};

/// The keys a verifier accepts.
///
/// A token with a `kid` is checked only against the key of that `kid`; a
/// token without one against the keys of its algorithm that have no `kid`,
/// or, when every key has one, against every key of its algorithm. Add the
/// new key beside the old one to rotate, and remove the old one when its
/// tokens have expired.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: std::sync::Arc<[VerifyingKey]>,
}

impl KeySet {
    /// A set of these keys, unchecked (callers check `kid`s).
    pub(super) fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        KeySet {
            keys: std::sync::Arc::from(keys),
        }
    }

    /// A key set with no key (a remote source before its first fetch).
    #[cfg(feature = "jwks")]
    pub(crate) fn empty() -> Self {
        KeySet {
            keys: std::sync::Arc::from(Vec::new()),
        }
    }

    /// A key set of one key.
    pub fn single(key: VerifyingKey) -> Self {
        KeySet {
            keys: std::sync::Arc::from(vec![key]),
        }
    }

    /// A key set of several keys; `kid`s must be distinct.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, ConfigError> {
        let keys: Vec<VerifyingKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(ConfigError::EmptyKeySet);
        }
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid()
                && keys[..i].iter().any(|other| other.kid() == Some(kid))
            {
                return Err(ConfigError::DuplicateKid(kid.to_owned()));
            }
        }
        Ok(KeySet {
            keys: std::sync::Arc::from(keys),
        })
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The keys that may verify a token with this `alg` and `kid`.
    pub(crate) fn candidates<'a>(
        &'a self,
        alg: &'a str,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        let any_without_kid = kid.is_none() && self.keys.iter().any(|k| k.kid().is_none());
        self.keys.iter().filter(move |key| {
            algorithm_name(key.algorithm()) == alg
                && match kid {
                    Some(kid) => key.kid() == Some(kid),
                    None => !any_without_kid || key.kid().is_none(),
                }
        })
    }

    /// Whether a key with this `kid` exists.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }
}
