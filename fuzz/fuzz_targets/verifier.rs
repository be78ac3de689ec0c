//! The verifier over arbitrary token text: it refuses, never panics.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tower_authgate::token::{Algorithm, KeySet, Verifier, VerifyingKey};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let key = VerifyingKey::hmac(Algorithm::HS256, &[7; 32]).unwrap();
    Verifier::builder(KeySet::single(key)).build().unwrap()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // No key an attacker can know signs these, so nothing may pass.
        assert!(VERIFIER.verify::<serde_json::Value>(text).is_err());
    }
});
