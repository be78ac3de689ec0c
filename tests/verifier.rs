//! The verifier on its own: algorithms, keys, registered claims, kinds.

mod common;

use common::*;
use serde_json::{Value, json};
use tower_authgate::TokenError;
use tower_authgate::clock::now_seconds;
use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenKind, Verifier, VerifyingKey};

fn verifier_for(key: &SigningKey) -> Verifier {
    Verifier::builder(KeySet::single(key.verifying_key()))
        .build()
        .unwrap()
}

fn verify(verifier: &Verifier, token: &str) -> Result<Value, TokenError> {
    verifier.verify::<Value>(token).map(|v| v.claims)
}

#[test]
fn every_algorithm_signs_and_verifies() {
    for alg in ALL_ALGORITHMS {
        let key = signing_key(alg);
        let token = key.sign(&access_claims("admin")).unwrap();
        let verified = verifier_for(&key).verify::<Value>(&token);
        let verified = verified.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(verified.claims["sub"], "admin", "{alg:?}");
        assert_eq!(verified.meta.kind, Some(TokenKind::Access));
        assert_eq!(verified.meta.subject.as_deref(), Some("admin"));
    }
}

#[test]
fn public_pem_keys_verify_their_private_keys_tokens() {
    let cases = [
        (Algorithm::RS256, "rsa_public"),
        (Algorithm::PS512, "rsa_public"),
        (Algorithm::ES256, "ec256_public"),
        (Algorithm::ES384, "ec384_public"),
        (Algorithm::EdDSA, "ed25519_public"),
    ];
    for (alg, public) in cases {
        let token = signing_key(alg).sign(&access_claims("a")).unwrap();
        let key = VerifyingKey::from_pem(alg, &key_pem(public)).unwrap();
        let verifier = Verifier::builder(KeySet::single(key)).build().unwrap();
        assert!(verify(&verifier, &token).is_ok(), "{alg:?}");
    }
}

#[test]
fn a_key_verifies_only_its_own_algorithm() {
    // The same RSA key material, pinned to RS256, refuses a PS256 token.
    let token = signing_key(Algorithm::PS256)
        .sign(&access_claims("a"))
        .unwrap();
    let verifier = verifier_for(&signing_key(Algorithm::RS256));
    assert_eq!(
        verify(&verifier, &token),
        Err(TokenError::UnsupportedAlgorithm)
    );
    // An ES384 key is not accepted for ES256 at build time.
    assert!(VerifyingKey::from_pem(Algorithm::ES256, &key_pem("ec384_public")).is_err());
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    let verifier = verifier_for(&signing_key(Algorithm::HS256));
    let payload = access_claims("admin").to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(payload.as_bytes()));
        assert_eq!(
            verify(&verifier, &unsigned),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }
}

#[test]
fn hmac_signed_with_the_rsa_public_key_is_refused() {
    // Algorithm confusion: the attacker signs HS256 with the server's public
    // key text as the HMAC secret.
    let public_pem = key_pem("rsa_public");
    let token = raw_hs256(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &access_claims("admin").to_string(),
        &public_pem,
    );
    let key = VerifyingKey::from_pem(Algorithm::RS256, &public_pem).unwrap();
    let verifier = Verifier::builder(KeySet::single(key)).build().unwrap();
    assert_eq!(
        verify(&verifier, &token),
        Err(TokenError::UnsupportedAlgorithm)
    );
}

#[test]
fn rfc7515_appendix_a1_hs256_vector() {
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
                 eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
                 dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let jwk = r#"{"kty":"oct","alg":"HS256","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;
    let key = VerifyingKey::from_jwk_json(jwk).unwrap();
    let verifier = Verifier::builder(KeySet::single(key))
        .issuer("joe")
        .any_kind()
        .build()
        .unwrap();
    let verified = verifier.verify_at::<Value>(token, 1_300_819_379).unwrap();
    assert_eq!(verified.claims["http://example.com/is_root"], true);
    assert_eq!(verified.meta.expires_at, 1_300_819_380);
    // One second later it has expired.
    assert_eq!(
        verifier
            .verify_at::<Value>(token, 1_300_819_380)
            .map(|_| ()),
        Err(TokenError::Expired)
    );
    // One flipped signature character breaks it.
    let tampered = format!("{}A", &token[..token.len() - 1]);
    assert_eq!(
        verifier
            .verify_at::<Value>(&tampered, 1_300_819_379)
            .map(|_| ()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn key_rotation_by_kid() {
    let old = signing_key(Algorithm::ES256).with_kid("2025");
    let new = signing_key(Algorithm::EdDSA).with_kid("2026");
    let keys = KeySet::new([old.verifying_key(), new.verifying_key()]).unwrap();
    let verifier = Verifier::builder(keys).build().unwrap();
    for key in [&old, &new] {
        let token = key.sign(&access_claims("a")).unwrap();
        assert!(verify(&verifier, &token).is_ok());
    }
    // After the old key is removed its tokens are refused as unknown.
    let verifier = Verifier::builder(KeySet::single(new.verifying_key()))
        .build()
        .unwrap();
    let token = old.sign(&access_claims("a")).unwrap();
    assert_eq!(verify(&verifier, &token), Err(TokenError::UnknownKey));
    // A kid that names a key of another algorithm does not select it.
    let hs = SigningKey::hmac(Algorithm::HS256, SECRET)
        .unwrap()
        .with_kid("2026");
    let token = hs.sign(&access_claims("a")).unwrap();
    assert_eq!(
        verify(&verifier, &token),
        Err(TokenError::UnsupportedAlgorithm)
    );
}

#[test]
fn duplicate_kids_are_refused_at_build_time() {
    let a = signing_key(Algorithm::ES256).with_kid("k");
    let b = signing_key(Algorithm::EdDSA).with_kid("k");
    assert!(KeySet::new([a.verifying_key(), b.verifying_key()]).is_err());
}

#[test]
fn jwk_set_loading_skips_unusable_keys() {
    let ed = signing_key(Algorithm::EdDSA).with_kid("ed");
    let es = signing_key(Algorithm::ES256).with_kid("es");
    let jwks = json!({"keys": [
        ed.public_jwk().unwrap(),
        es.public_jwk().unwrap(),
        {"kty": "RSA", "use": "enc", "kid": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}
    ]});
    let keys = KeySet::from_jwks_json(&jwks.to_string()).unwrap();
    assert_eq!(keys.keys().len(), 2);
    let verifier = Verifier::builder(keys).build().unwrap();
    for key in [&ed, &es] {
        assert!(verify(&verifier, &key.sign(&access_claims("a")).unwrap()).is_ok());
    }
}

#[test]
fn short_hmac_secrets_are_refused() {
    assert!(VerifyingKey::hmac(Algorithm::HS256, &[7; 31]).is_err());
    assert!(VerifyingKey::hmac(Algorithm::HS256, &[7; 32]).is_ok());
    assert!(VerifyingKey::hmac(Algorithm::HS384, &[7; 47]).is_err());
    assert!(VerifyingKey::hmac(Algorithm::HS512, &[7; 63]).is_err());
    assert!(SigningKey::hmac(Algorithm::HS256, b"secret").is_err());
}

#[test]
fn time_claims() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let now = now_seconds();
    let sign = |changes: Value| key.sign(&with(access_claims("a"), changes)).unwrap();

    assert_eq!(
        verify(&verifier, &sign(json!({"exp": now - 1}))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"exp": null}))),
        Err(TokenError::MissingClaim("exp"))
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"nbf": now + 60}))),
        Err(TokenError::NotYetValid)
    );
    assert!(verify(&verifier, &sign(json!({"nbf": now - 1}))).is_ok());
    // Fractional NumericDate values are numbers too.
    assert!(verify(&verifier, &sign(json!({"exp": (now + 60) as f64 + 0.5}))).is_ok());
    // Leeway admits a token that expired a moment ago or starts in a moment.
    let lenient = verifier.to_builder().leeway(30).build().unwrap();
    assert!(verify(&lenient, &sign(json!({"exp": now - 10}))).is_ok());
    assert!(verify(&lenient, &sign(json!({"nbf": now + 10}))).is_ok());
    assert_eq!(
        verify(&lenient, &sign(json!({"exp": now - 40}))),
        Err(TokenError::Expired)
    );
}

#[test]
fn claims_of_the_wrong_json_type_are_refused() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key)
        .to_builder()
        .issuer("me")
        .audience("api")
        .build()
        .unwrap();
    let base = with(access_claims("a"), json!({"iss": "me", "aud": "api"}));
    let sign = |changes: Value| key.sign(&with(base.clone(), changes)).unwrap();
    assert!(verify(&verifier, &sign(json!({}))).is_ok());
    let now = now_seconds();
    let cases = [
        (
            json!({"exp": (now + 60).to_string()}),
            TokenError::InvalidClaim("exp"),
        ),
        (json!({"exp": true}), TokenError::InvalidClaim("exp")),
        (json!({"exp": -5}), TokenError::InvalidClaim("exp")),
        (json!({"nbf": "0"}), TokenError::InvalidClaim("nbf")),
        (json!({"iat": [1]}), TokenError::InvalidClaim("iat")),
        (json!({"iss": ["me"]}), TokenError::InvalidClaim("iss")),
        (json!({"iss": 7}), TokenError::InvalidClaim("iss")),
        (json!({"aud": 7}), TokenError::InvalidClaim("aud")),
        (
            json!({"aud": {"a": "api"}}),
            TokenError::InvalidClaim("aud"),
        ),
        (json!({"aud": ["api", 7]}), TokenError::InvalidClaim("aud")),
        (json!({"sub": 7}), TokenError::InvalidClaim("sub")),
        (json!({"usefor": 1}), TokenError::InvalidClaim("kind")),
    ];
    for (changes, expected) in cases {
        assert_eq!(
            verify(&verifier, &sign(changes.clone())),
            Err(expected),
            "{changes}"
        );
    }
}

/// The verdict on the registered claims does not depend on how the
/// application's claims type reads the payload: watched as a `Value` reads
/// it, watched as a struct that ignores every claim reads it, or read on
/// their own when the type is a newtype the verifier cannot watch.
#[test]
fn registered_claims_get_the_same_verdict_whatever_the_claims_type() {
    #[derive(serde::Deserialize)]
    struct IgnoresAll {}
    #[derive(serde::Deserialize)]
    struct Wrapped(#[allow(dead_code)] Value);

    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key)
        .to_builder()
        .issuer("me")
        .audience("api")
        .accept_kinds([TokenKind::Access, TokenKind::Refresh])
        .build()
        .unwrap();
    let now = now_seconds();
    let base = with(
        access_claims("a"),
        json!({"iss": "me", "aud": "api", "fam": "f1"}),
    );
    let cases: Vec<(&str, Value)> = vec![
        ("exp", json!(now as f64 + 60.5)),
        (
            "exp",
            json!(format!("{}e0", now + 60).parse::<f64>().unwrap()),
        ),
        ("exp", json!((now + 60).to_string())),
        ("exp", json!(-5)),
        ("exp", Value::Null),
        ("exp", json!(true)),
        ("exp", json!([now + 60])),
        ("exp", json!({"at": now + 60})),
        ("exp", json!(now - 5)),
        ("nbf", json!(now + 3600)),
        ("nbf", json!(1.5)),
        ("iat", json!("0")),
        ("iat", json!(u64::MAX)),
        ("sub", json!("a\"b\\c\u{1}é")),
        ("sub", json!(7)),
        ("sub", Value::Null),
        ("sub", json!(["a"])),
        ("jti", json!({"x": 1})),
        ("jti", json!("")),
        ("iss", json!("other")),
        ("iss", json!(["me"])),
        ("aud", json!(["x", "api"])),
        ("aud", json!(["x"])),
        ("aud", json!(["api", 7])),
        ("aud", json!(7)),
        ("usefor", json!("refresh")),
        ("usefor", json!("service")),
        ("usefor", json!(1)),
        ("usefor", Value::Null),
        ("fam", Value::Null),
        ("fam", json!(false)),
    ];
    // Escaped spellings of accepted values, written into the JSON text.
    let escaped = [
        ("\"iss\":\"me\"", "\"iss\":\"m\\u0065\""),
        ("\"usefor\":\"access\"", "\"usefor\":\"acc\\u0065ss\""),
        ("\"aud\":\"api\"", "\"\\u0061ud\":\"api\""),
    ];
    let escaped = escaped.into_iter().map(|(from, to)| {
        let text = serde_json::to_string(&base).unwrap();
        assert!(text.contains(from), "{text}");
        (to, text.replace(from, to))
    });
    let valued = cases.into_iter().map(|(name, value)| {
        let mut claims = base.clone();
        claims[name] = value.clone();
        (name, serde_json::to_string(&claims).unwrap())
    });
    for (name, text) in valued.chain(escaped) {
        let value = &text;
        let payload = serde_json::value::RawValue::from_string(text.clone()).unwrap();
        let token = key.sign(&payload).unwrap();
        let watched_value = verifier.verify::<Value>(&token).map(|v| v.meta);
        let watched_struct = verifier.verify::<IgnoresAll>(&token).map(|v| v.meta);
        let on_their_own = verifier.verify::<Wrapped>(&token).map(|v| v.meta);
        assert_eq!(watched_value, on_their_own, "{name}: {value}");
        assert_eq!(watched_struct, on_their_own, "{name}: {value}");
    }
}

#[test]
fn issuer_and_audience() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key)
        .to_builder()
        .issuer("datarhei-core")
        .audience("api")
        .audience("admin")
        .build()
        .unwrap();
    let base = with(
        access_claims("a"),
        json!({"iss": "datarhei-core", "aud": "api"}),
    );
    let sign = |changes: Value| key.sign(&with(base.clone(), changes)).unwrap();
    assert!(verify(&verifier, &sign(json!({}))).is_ok());
    assert!(verify(&verifier, &sign(json!({"aud": ["other", "admin"]}))).is_ok());
    assert_eq!(
        verify(&verifier, &sign(json!({"iss": "evil"}))),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"iss": null}))),
        Err(TokenError::MissingClaim("iss"))
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"aud": "other"}))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"aud": []}))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        verify(&verifier, &sign(json!({"aud": null}))),
        Err(TokenError::MissingClaim("aud"))
    );
    // A verifier with no audience refuses tokens meant for some audience.
    let plain = verifier_for(&key);
    assert_eq!(
        verify(&plain, &sign(json!({}))),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn token_kinds() {
    let key = signing_key(Algorithm::HS256);
    let access_only = verifier_for(&key);
    let sign = |kind: &str| {
        key.sign(&with(access_claims("a"), json!({"usefor": kind})))
            .unwrap()
    };
    assert!(verify(&access_only, &sign("access")).is_ok());
    for kind in ["refresh", "service", "otp-pending", "other"] {
        assert_eq!(
            verify(&access_only, &sign(kind)),
            Err(TokenError::WrongKind),
            "{kind}"
        );
    }
    let no_kind = key
        .sign(&with(access_claims("a"), json!({"usefor": null})))
        .unwrap();
    assert_eq!(
        verify(&access_only, &no_kind),
        Err(TokenError::MissingClaim("kind"))
    );

    let refresh_only = access_only
        .to_builder()
        .accept_kinds([TokenKind::Refresh])
        .build()
        .unwrap();
    assert!(verify(&refresh_only, &sign("refresh")).is_ok());
    assert_eq!(
        verify(&refresh_only, &sign("access")),
        Err(TokenError::WrongKind)
    );

    let external = access_only.to_builder().any_kind().build().unwrap();
    assert!(verify(&external, &no_kind).is_ok());

    // The claim name is configurable.
    let custom = access_only
        .to_builder()
        .kind_claim("token_use")
        .build()
        .unwrap();
    let token = key
        .sign(&with(
            access_claims("a"),
            json!({"usefor": null, "token_use": "access"}),
        ))
        .unwrap();
    assert!(verify(&custom, &token).is_ok());
}

#[test]
fn malformed_tokens() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let good = key.sign(&access_claims("a")).unwrap();
    let parts: Vec<&str> = good.split('.').collect();

    let cases: Vec<(String, TokenError)> = vec![
        (String::new(), TokenError::Malformed),
        ("abc".into(), TokenError::Malformed),
        (format!("{}.{}", parts[0], parts[1]), TokenError::Malformed),
        (format!("{good}.extra"), TokenError::Malformed),
        (
            format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            TokenError::Malformed,
        ),
        (
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            TokenError::Malformed,
        ),
        ("x".repeat(9000), TokenError::TooLong),
    ];
    for (token, expected) in cases {
        assert_eq!(verify(&verifier, &token), Err(expected), "{token:.60}");
    }

    // A tampered payload breaks the signature.
    let mut claims = access_claims("a");
    claims["sub"] = json!("root");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&verifier, &forged), Err(TokenError::BadSignature));

    // A validly signed payload that is not JSON, or not an object.
    let header = r#"{"alg":"HS256"}"#;
    for payload in ["not json", "[1,2]", "{\"exp\":1", "{} trailing"] {
        let token = raw_hs256(header, payload, SECRET);
        assert_eq!(
            verify(&verifier, &token),
            Err(TokenError::Malformed),
            "{payload}"
        );
    }
}

#[test]
fn duplicate_registered_claims_are_refused() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let now = now_seconds();
    let payload = format!(
        r#"{{"sub":"a","exp":{},"exp":{},"usefor":"access"}}"#,
        now - 10,
        now + 600
    );
    let token = raw_hs256(r#"{"alg":"HS256"}"#, &payload, SECRET);
    assert_eq!(verify(&verifier, &token), Err(TokenError::DuplicateClaim));
    let payload = format!(
        r#"{{"exp":{},"usefor":"refresh","usefor":"access"}}"#,
        now + 600
    );
    let token = raw_hs256(r#"{"alg":"HS256"}"#, &payload, SECRET);
    assert_eq!(verify(&verifier, &token), Err(TokenError::DuplicateClaim));
}

#[test]
fn critical_header_extensions() {
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let payload = access_claims("a").to_string();
    let crit = raw_hs256(
        r#"{"alg":"HS256","crit":["exp-v2"],"exp-v2":1}"#,
        &payload,
        SECRET,
    );
    assert_eq!(
        verify(&verifier, &crit),
        Err(TokenError::UnsupportedCritical)
    );
    let empty = raw_hs256(r#"{"alg":"HS256","crit":[]}"#, &payload, SECRET);
    assert_eq!(
        verify(&verifier, &empty),
        Err(TokenError::UnsupportedCritical)
    );
    let understood = verifier
        .to_builder()
        .understand_critical("exp-v2")
        .build()
        .unwrap();
    assert!(verify(&understood, &crit).is_ok());
}

#[test]
fn embedded_key_headers_are_ignored() {
    // jku, x5u and an embedded jwk never supply a key: the token is checked
    // against the configured key only.
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let payload = access_claims("a").to_string();
    let attacker = b"attacker-secret-attacker-secret-attacker!";
    let header =
        r#"{"alg":"HS256","jku":"http://127.0.0.1:1/jwks","jwk":{"kty":"oct","k":"YXR0YWNrZXI"}}"#;
    let token = raw_hs256(header, &payload, attacker);
    assert_eq!(verify(&verifier, &token), Err(TokenError::BadSignature));
    let honest = raw_hs256(header, &payload, SECRET);
    assert!(verify(&verifier, &honest).is_ok());
}

#[test]
fn claims_deserialize_into_the_applications_type() {
    #[derive(serde::Deserialize, Debug)]
    struct Mine {
        sub: String,
        spaces: Vec<String>,
    }
    let key = signing_key(Algorithm::HS256);
    let verifier = verifier_for(&key);
    let token = key
        .sign(&with(
            access_claims("admin"),
            json!({"spaces": ["default_space"]}),
        ))
        .unwrap();
    let verified = verifier.verify::<Mine>(&token).unwrap();
    assert_eq!(verified.claims.sub, "admin");
    assert_eq!(verified.claims.spaces, ["default_space"]);
    let missing = key.sign(&access_claims("admin")).unwrap();
    assert_eq!(
        verifier.verify::<Mine>(&missing).map(|_| ()),
        Err(TokenError::ClaimsMismatch)
    );
}

#[test]
fn generated_keys_sign_verifiable_tokens_and_publish_their_public_half() {
    for key in [
        SigningKey::generate_ed25519().unwrap(),
        SigningKey::generate_es256().unwrap(),
    ] {
        let key = key.with_kid("fresh");
        let token = key.sign(&access_claims("a")).unwrap();
        assert!(verify(&verifier_for(&key), &token).is_ok());
        let jwk = serde_json::to_string(key.public_jwk().unwrap()).unwrap();
        assert!(jwk.contains("\"kid\":\"fresh\""), "{jwk}");
        assert!(!jwk.contains("\"d\""), "a private component leaked: {jwk}");
        let published = VerifyingKey::from_jwk_json(&jwk).unwrap();
        let verifier = Verifier::builder(KeySet::single(published))
            .build()
            .unwrap();
        assert!(verify(&verifier, &token).is_ok());
    }
    assert!(
        SigningKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .public_jwk()
            .is_none()
    );
}

#[test]
fn generated_keys_round_trip_through_pkcs8_pem() {
    for (key, alg) in [
        (SigningKey::generate_ed25519().unwrap(), Algorithm::EdDSA),
        (SigningKey::generate_es256().unwrap(), Algorithm::ES256),
    ] {
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let reloaded = SigningKey::from_pem(alg, pem.as_bytes()).unwrap();
        let token = reloaded.sign(&access_claims("a")).unwrap();
        assert!(verify(&verifier_for(&key), &token).is_ok(), "{alg:?}");
    }
    assert!(
        SigningKey::hmac(Algorithm::HS256, SECRET)
            .unwrap()
            .to_pkcs8_pem()
            .is_none()
    );
}

#[test]
fn an_rsa_key_shorter_than_2048_bits_is_refused_when_it_is_loaded() {
    use tower_authgate::token::MIN_RSA_BITS;
    // A 1024-bit key, in both PEM forms and as a JWK: each is refused with
    // an error that says why, instead of failing every token later.
    for pem in ["rsa1024_public", "rsa1024_pkcs1_public"] {
        let err = VerifyingKey::from_pem(Algorithm::RS256, &key_pem(pem)).unwrap_err();
        assert!(err.to_string().contains("1024 bits"), "{pem}: {err}");
    }
    let jwk = serde_json::json!({
        "kty": "RSA", "alg": "RS256", "e": "AQAB",
        "n": include_str!("keys/rsa1024_modulus.b64").trim(),
    });
    let err = VerifyingKey::from_jwk_json(&jwk.to_string()).unwrap_err();
    assert!(err.to_string().contains("1024 bits"), "{err}");
    assert_eq!(MIN_RSA_BITS, 2048);
    // The 2048-bit fixture is accepted.
    assert!(VerifyingKey::from_pem(Algorithm::RS256, &key_pem("rsa_public")).is_ok());
}

#[test]
fn any_kind_for_an_identity_provider_never_opens_the_door_for_the_service_itself() {
    use std::sync::Arc;
    /// The identity provider's keys, as a source.
    struct Fixed(Arc<KeySet>);
    impl tower_authgate::token::KeySource for Fixed {
        fn current(&self) -> Result<Arc<KeySet>, TokenError> {
            Ok(self.0.clone())
        }
        fn refresh_for_unknown_key(&self) -> Option<tower_authgate::BoxFuture<'static, ()>> {
            None
        }
        fn generation(&self) -> u64 {
            0
        }
    }
    let own = signing_key(Algorithm::EdDSA);
    let idp = signing_key(Algorithm::ES256);
    let verifier = Verifier::builder(KeySet::single(own.verifying_key()))
        .issuer("service")
        .issuer_with_keys(
            "https://idp.example",
            Arc::new(Fixed(Arc::new(KeySet::single(idp.verifying_key())))),
        )
        .any_kind_from("https://idp.example")
        .build()
        .unwrap();
    let now = now_seconds();
    let claims = |iss: &str, kind: Option<&str>| {
        let mut claims = json!({"sub": "alice", "iss": iss, "exp": now + 60});
        if let Some(kind) = kind {
            claims["usefor"] = json!(kind);
        }
        claims
    };
    // The provider's token, which names no kind: accepted.
    let external = idp.sign(&claims("https://idp.example", None)).unwrap();
    assert!(verifier.verify::<Value>(&external).is_ok());
    // The service's own tokens keep the default policy: access only.
    let access = own.sign(&claims("service", Some("access"))).unwrap();
    assert!(verifier.verify::<Value>(&access).is_ok());
    for kind in [Some("refresh"), Some("otp-pending"), Some("service"), None] {
        let token = own.sign(&claims("service", kind)).unwrap();
        assert!(
            verifier.verify::<Value>(&token).is_err(),
            "the service's {kind:?} token passed"
        );
    }
    // A policy per issuer is checked when the verifier is built.
    assert!(
        Verifier::builder(KeySet::single(own.verifying_key()))
            .accept_kinds_from("service", [])
            .build()
            .is_err()
    );
}

#[test]
fn a_header_or_payload_that_is_not_a_json_object_is_malformed() {
    let verifier = Verifier::builder(KeySet::single(
        signing_key(Algorithm::HS256).verifying_key(),
    ))
    .build()
    .unwrap();
    let exp = now_seconds() + 60;
    let object_payload = format!(r#"{{"sub":"a","exp":{exp},"usefor":"access"}}"#);
    // The same header as an array, read by position, would say HS256.
    for (header, payload) in [
        (r#"["HS256",null,null]"#.to_owned(), object_payload.clone()),
        (r#""HS256""#.to_owned(), object_payload.clone()),
        (
            r#"{"alg":"HS256"}"#.to_owned(),
            format!(r#"[null,"a",{exp}]"#),
        ),
    ] {
        let token = raw_hs256(&header, &payload, SECRET);
        assert_eq!(
            verifier.verify::<Value>(&token).map(|_| ()),
            Err(TokenError::Malformed),
            "{header} {payload}"
        );
    }
    // The object forms verify.
    let token = raw_hs256(r#"{"alg":"HS256"}"#, &object_payload, SECRET);
    assert!(verifier.verify::<Value>(&token).is_ok());
}

/// Counts how often the verifier asks for keys: a token refused on its
/// claims never gets that far.
#[derive(Debug)]
struct CountingKeys {
    keys: std::sync::Arc<KeySet>,
    asked: std::sync::atomic::AtomicUsize,
}

impl tower_authgate::token::KeySource for CountingKeys {
    fn current(&self) -> Result<std::sync::Arc<KeySet>, TokenError> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(std::sync::Arc::clone(&self.keys))
    }

    fn refresh_for_unknown_key(&self) -> Option<tower_authgate::BoxFuture<'static, ()>> {
        None
    }

    fn generation(&self) -> u64 {
        0
    }
}

#[test]
fn claims_that_already_fail_are_refused_before_the_signature_is_checked() {
    let key = signing_key(Algorithm::ES256);
    let source = std::sync::Arc::new(CountingKeys {
        keys: std::sync::Arc::new(KeySet::single(key.verifying_key())),
        asked: std::sync::atomic::AtomicUsize::new(0),
    });
    let verifier = Verifier::builder_with_source(source.clone())
        .issuer("authgate")
        .build()
        .unwrap();
    let asked = || source.asked.load(std::sync::atomic::Ordering::SeqCst);
    let now = now_seconds();
    let claims = |exp: u64, iss: &str, kind: &str| json!({"sub": "a", "exp": exp, "iss": iss, "usefor": kind});
    // Each refused on its claims, whether its signature is good or forged
    // (the last segment replaced): no key was looked at.
    for (claims, expected) in [
        (
            claims(now - 3600, "authgate", "access"),
            TokenError::Expired,
        ),
        (
            claims(now + 300, "someone-else", "access"),
            TokenError::WrongIssuer,
        ),
        (
            claims(now + 300, "authgate", "refresh"),
            TokenError::WrongKind,
        ),
    ] {
        let signed = key.sign(&claims).unwrap();
        let forged = format!("{}.AAAA", &signed[..signed.rfind('.').unwrap()]);
        for token in [&signed, &forged] {
            assert_eq!(verify(&verifier, token), Err(expected), "{claims}");
        }
    }
    assert_eq!(
        asked(),
        0,
        "a key was fetched for a token its claims refuse"
    );

    // Good claims: the signature decides.
    let good = key.sign(&claims(now + 300, "authgate", "access")).unwrap();
    assert!(verify(&verifier, &good).is_ok());
    let forged = format!("{}.AAAA", &good[..good.rfind('.').unwrap()]);
    assert_eq!(verify(&verifier, &forged), Err(TokenError::BadSignature));
    assert_eq!(asked(), 2);
}
