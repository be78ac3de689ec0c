//! [`KeySource`]: keys that live elsewhere and change.

use std::fmt;

use super::KeySet;

/// Keys that live elsewhere and change: a JWK Set an identity provider
/// publishes, fetched and cached by [`JwksSource`](crate::token::jwks::JwksSource)
/// (feature `jwks`), or any source of the application's.
///
/// The verifier asks [`current`](Self::current) on every token, so it must be
/// cheap (an `Arc` clone of a cached set); fetching happens elsewhere.
///
/// [`generation`](Self::generation) has no default, so a source that could
/// change its keys without telling the token cache cannot be written:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use tower_authgate::token::{KeySet, KeySource};
///
/// struct Forgetful(Arc<KeySet>);
///
/// impl KeySource for Forgetful {
///     fn current(&self) -> Result<Arc<KeySet>, tower_authgate::TokenError> {
///         Ok(self.0.clone())
///     }
///     fn refresh_for_unknown_key(&self) -> Option<tower_authgate::BoxFuture<'static, ()>> {
///         None
///     }
///     // No `generation`: refused.
/// }
/// ```
pub trait KeySource: Send + Sync + 'static {
    /// The keys in force, or [`TokenError::KeysUnavailable`](crate::TokenError::KeysUnavailable)
    /// when none can be trusted (never fetched, or older than allowed).
    /// While it answers an error, no token of this source is accepted, not
    /// even one the verifier's token cache holds.
    fn current(&self) -> Result<std::sync::Arc<KeySet>, crate::TokenError>;

    /// Called when a token names a `kid` the current keys lack: a future
    /// that refetches the keys (shared by concurrent callers), or `None` when
    /// a refetch is not allowed yet (so random `kid`s cannot cause a storm).
    fn refresh_for_unknown_key(&self) -> Option<crate::BoxFuture<'static, ()>>;

    /// A number that changes whenever the key set changes, and never
    /// returns to a value it had before (a counter that only goes up): a
    /// verifier's token cache serves a token only while the source that
    /// verified it reports the generation it was checked under, so a key
    /// removed from the set stops every token it signed at once. Each
    /// source of a verifier (its own, and each issuer's given with
    /// [`VerifierBuilder::issuer_with_keys`](crate::token::VerifierBuilder::issuer_with_keys))
    /// is compared on its own, whatever the others' numbers do. There is no
    /// default: a source that never changed it would keep serving the
    /// tokens of removed keys until they expire.
    fn generation(&self) -> u64;
}

/// Where a verifier's keys come from.
#[derive(Clone)]
pub(crate) enum KeyStore {
    Static(KeySet),
    Source(std::sync::Arc<dyn KeySource>),
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStore::Static(keys) => keys.fmt(f),
            KeyStore::Source(_) => f.write_str("KeySource"),
        }
    }
}
