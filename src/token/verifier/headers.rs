//! JOSE headers: what a token's header says, and the headers of tokens
//! already verified, remembered so that each distinct header is parsed once.

use std::borrow::Cow;

use arc_swap::ArcSwap;

/// Header segments of tokens whose signature held, with what they say. An
/// issuer sends the same header on every token, so each distinct header is
/// decoded and parsed once; what a header means depends only on its text and
/// the verifier's settings, and a clone (a sibling verifier with other
/// settings) starts empty.
#[derive(Default)]
pub(super) struct KnownHeaders(pub(super) ArcSwap<Vec<KnownHeader>>);

#[derive(Clone)]
pub(super) struct KnownHeader {
    pub(super) segment: Box<[u8]>,
    pub(super) alg: &'static str,
    pub(super) kid: Option<Box<str>>,
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
    pub(super) fn remember(&self, segment: &[u8], alg: &'static str, kid: Option<&str>) {
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

/// The header fields the verifier reads.
#[derive(serde::Deserialize)]
pub(super) struct JoseHeader<'a> {
    #[serde(borrow)]
    pub(super) alg: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) crit: Option<Vec<Cow<'a, str>>>,
}
