//! [`VerifierBuilder`]: a verifier's settings, checked when it is built.

use std::sync::Arc;

use crate::authz::GrantMapping;
use crate::error::ConfigError;
use crate::token::cache::CacheSlot;
use crate::token::claims::{TokenKind, TokenKinds};
use crate::token::keys::{KeySource, KeyStore};

use super::{Verifier, VerifierConfig};

/// Builds a [`Verifier`]; see [`Verifier::builder`].
#[derive(Clone)]
pub struct VerifierBuilder {
    pub(super) config: VerifierConfig,
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

    /// Accept tokens whatever their kind claim says, or without one, from
    /// every issuer: for a verifier of one identity provider's tokens only.
    /// A verifier that also accepts the service's own tokens uses
    /// [`any_kind_from`](Self::any_kind_from) for the provider instead, so
    /// that the service's refresh and otp-pending tokens stay refused.
    pub fn any_kind(mut self) -> Self {
        self.config.kinds = None;
        self
    }

    /// Accept tokens of `issuer` whatever their kind claim says, or without
    /// one (identity providers do not mark kinds); every other issuer keeps
    /// the verifier's kinds.
    pub fn any_kind_from(self, issuer: impl Into<String>) -> Self {
        self.issuer_kind_policy(issuer.into(), None)
    }

    /// Accept only these kinds from `issuer`; every other issuer keeps the
    /// verifier's kinds.
    pub fn accept_kinds_from(
        self,
        issuer: impl Into<String>,
        kinds: impl IntoIterator<Item = TokenKind>,
    ) -> Self {
        self.issuer_kind_policy(issuer.into(), Some(kinds.into_iter().collect()))
    }

    fn issuer_kind_policy(mut self, issuer: String, kinds: Option<TokenKinds>) -> Self {
        let mut list = self.config.issuer_kinds.into_vec();
        list.retain(|(name, _)| **name != *issuer);
        list.push((issuer.into_boxed_str(), kinds));
        self.config.issuer_kinds = list.into_boxed_slice();
        self
    }

    /// The claim that names a token's kind (default
    /// [`DEFAULT_KIND_CLAIM`](super::DEFAULT_KIND_CLAIM), `usefor`).
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
    /// [`DEFAULT_MAX_TOKEN_LEN`](crate::token::source::DEFAULT_MAX_TOKEN_LEN)).
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.config.max_len = max_len;
        self
    }

    /// Keep up to `capacity` verified tokens, so that a token seen again
    /// skips the signature check and the claims parse (see [`TokenCache`](crate::token::TokenCache)
    /// for when this pays). The cache belongs to this verifier: only tokens
    /// it verified, with its settings and under its current keys, are
    /// served from it, and a verifier derived with
    /// [`Verifier::to_builder`] starts with an empty one of its own.
    pub fn token_cache(mut self, capacity: usize) -> Self {
        self.config.cache = CacheSlot::with_capacity(capacity);
        self
    }

    /// Where the token's roles and scopes are read from (default
    /// [`GrantMapping::standard`]: `roles` and `scope`). They are read once
    /// per token, when it is verified, and served with it from the token
    /// cache; a mapped claim of another shape than a string or an array of
    /// strings refuses the token.
    pub fn grants(mut self, mapping: GrantMapping) -> Self {
        self.config.grants = mapping;
        self
    }

    /// The verifier.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        let no_kind = |kinds: &Option<TokenKinds>| matches!(kinds, Some(kinds) if kinds.is_empty());
        if no_kind(&self.config.kinds)
            || self
                .config
                .issuer_kinds
                .iter()
                .any(|(_, kinds)| no_kind(kinds))
        {
            return Err(ConfigError::NoTokenKind);
        }
        if self.config.kind_claim.is_empty() {
            return Err(ConfigError::EmptyKindClaim);
        }
        Ok(Verifier {
            inner: Arc::new(self.config),
        })
    }
}
