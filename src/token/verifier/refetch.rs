//! The key-refetch policy: a token whose key is unknown, verified again
//! once its key source has fetched.

use serde::de::DeserializeOwned;

use crate::BoxFuture;
use crate::error::TokenError;
use crate::token::keys::KeyStore;

use super::registered::payload_issuer;
use super::segments::decode_segment;
use super::{Verified, Verifier};

impl Verifier {
    /// When a token was refused with [`TokenError::UnknownKey`] or
    /// [`TokenError::KeysUnavailable`] and its keys come from a
    /// [`KeySource`](crate::token::KeySource), the future that refetches them (shared by concurrent
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
    /// yet, and the keys come from a [`KeySource`](crate::token::KeySource) that may refetch now (or
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
}
