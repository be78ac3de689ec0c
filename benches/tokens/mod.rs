//! What the `validation` and `instructions` benches share (and `stack`'s
//! fixtures, `ready`): the tokens' claims, the keys, the least work a
//! verifier must do, and the observability set-up of `scripts/bench-observe`.
//! No web framework: the `validation` bench builds without one.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use tower_authgate::token::{Algorithm, SigningKey, VerifyingKey};

/// The claims of the benches' tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct BenchClaims {
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub usefor: String,
    pub iss: String,
    pub spaces: Vec<String>,
    pub roles: Vec<String>,
}

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The least work an HS256 verifier must do: split, base64-decode the
/// signature and payload, one HMAC-SHA256 with a prepared key, one JSON parse.
pub fn floor_hs256(token: &str, key: &aws_lc_rs::hmac::Key) -> Option<BenchClaims> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (message, signature) = token.rsplit_once('.')?;
    let (_, payload) = message.split_once('.')?;
    let signature = engine.decode(signature).ok()?;
    aws_lc_rs::hmac::verify(key, message.as_bytes(), &signature).ok()?;
    let payload = engine.decode(payload).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Raw signature verification with a prepared aws-lc key: the least work an
/// asymmetric verifier must do (the JSON parse is noise beside it).
pub fn raw_verify(token: &str, key: &aws_lc_rs::signature::ParsedPublicKey) -> bool {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = engine.decode(signature) else {
        return false;
    };
    key.verify_sig(message.as_bytes(), &signature).is_ok()
}

/// The public key as aws-lc parses it, for [`raw_verify`].
pub fn parsed_public_key(alg: Algorithm) -> aws_lc_rs::signature::ParsedPublicKey {
    use aws_lc_rs::signature::{self, ParsedPublicKey};
    let (algorithm, name): (&'static dyn signature::VerificationAlgorithm, _) = match alg {
        Algorithm::RS256 => (&signature::RSA_PKCS1_2048_8192_SHA256, "rsa_public"),
        Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED, "ec256_public"),
        Algorithm::EdDSA => (&signature::ED25519, "ed25519_public"),
        _ => unreachable!(),
    };
    let pem = String::from_utf8(pem(name)).unwrap();
    let der: Vec<u8> = {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    ParsedPublicKey::new(algorithm, &der).unwrap()
}

/// The signing key, the same key for `jsonwebtoken`, and for this crate.
pub fn keys(alg: Algorithm) -> (SigningKey, DecodingKey, VerifyingKey) {
    match alg {
        Algorithm::HS256 => (
            SigningKey::hmac(alg, SECRET).unwrap(),
            DecodingKey::from_secret(SECRET),
            VerifyingKey::hmac(alg, SECRET).unwrap(),
        ),
        Algorithm::RS256 => (
            SigningKey::from_pem(alg, &pem("rsa_private")).unwrap(),
            DecodingKey::from_rsa_pem(&pem("rsa_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("rsa_public")).unwrap(),
        ),
        Algorithm::ES256 => (
            SigningKey::from_pem(alg, &pem("ec256_private")).unwrap(),
            DecodingKey::from_ec_pem(&pem("ec256_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("ec256_public")).unwrap(),
        ),
        Algorithm::EdDSA => (
            SigningKey::from_pem(alg, &pem("ed25519_private")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed25519_public")).unwrap(),
            VerifyingKey::from_pem(alg, &pem("ed25519_public")).unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// Polls a future that completes without waiting (every future here does).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked services never wait"),
    }
}

/// With feature `metrics`, a Prometheus recorder; with feature `tracing`, a
/// subscriber at `INFO` writing nowhere: the set-up of a service in
/// production, where an accepted request's `DEBUG` event is filtered out and
/// its counters count. `scripts/bench-observe` compares the benches built
/// with both features and without.
pub fn observe() {
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("no recorder was installed before");
    }
    #[cfg(feature = "tracing")]
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::sink)
        .init();
}

/// A 50-rule table whose last rule (`/`, role `admin`) is the one a
/// request for `/` matches: 49 rules are tried and passed over first.
pub fn fifty_rules() -> tower_authgate::authz::Rules {
    use tower_authgate::authz::{Rule, Rules};
    let mut rules: Vec<Rule> = (0..49)
        .map(|i| {
            Rule::new(format!("r{i}"), format!("/api/r{i}/"))
                .unwrap()
                .methods([http::Method::GET, http::Method::POST])
                .roles(["admin", "operator"])
        })
        .collect();
    rules.push(Rule::new("root", "/").unwrap().roles(["admin"]));
    Rules::new(rules)
}
