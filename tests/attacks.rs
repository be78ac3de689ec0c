//! The attacks the crate is shown to refuse. Each case names the reference
//! that demands the behaviour and asserts the exact status and headers.
//!
//! Two targets: the demo (every documented API, in-memory stores, an IP deny
//! list, a trusted proxy) and a bare `AuthLayer` over RS256 and ES256 keys
//! with an issuer and an audience, for the algorithm-confusion and claim-type
//! cases. Requests go through `tower::ServiceExt::oneshot`; the peer address
//! comes from `MockConnectInfo`.
#![cfg(feature = "presets")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use common::demo::{app, config};
use common::{b64, key_pem, with};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::auth::AuthLayer;
use tower_authgate::clock::now_seconds;
use tower_authgate::ip::{IpRanges, IpRules};
use tower_authgate::store::MemoryRevocations;
use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier, VerifyingKey};

const PEER: &str = "192.0.2.10:40000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Demo,
    Keys,
}

struct Case {
    name: String,
    reference: &'static str,
    target: Target,
    peer: &'static str,
    request: Request<Body>,
    status: StatusCode,
    /// Header name and a text its value must contain.
    headers: Vec<(&'static str, &'static str)>,
}

fn case(
    name: impl Into<String>,
    reference: &'static str,
    target: Target,
    request: Request<Body>,
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
) -> Case {
    Case {
        name: name.into(),
        reference,
        target,
        peer: PEER,
        request,
        status,
        headers: headers.to_vec(),
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

fn demo_router(rules: IpRules) -> Router {
    app::build(app::DemoConfig {
        ip_rules: rules,
        trusted_proxies: IpRanges::parse_list("10.0.0.1").unwrap(),
        ..config()
    })
    .unwrap()
}

struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
    revocations: Arc<MemoryRevocations>,
}

fn keys() -> Keys {
    Keys {
        rsa: SigningKey::from_pem(Algorithm::RS256, &key_pem("rsa_private"))
            .unwrap()
            .with_kid("rs"),
        ec: SigningKey::from_pem(Algorithm::ES256, &key_pem("ec256_private"))
            .unwrap()
            .with_kid("es"),
        revocations: Arc::new(MemoryRevocations::default()),
    }
}

async fn keys_call(keys: &Keys, request: Request<Body>) -> Response<Body> {
    let set = KeySet::new([keys.rsa.verifying_key(), keys.ec.verifying_key()]).unwrap();
    let verifier = Verifier::builder(set)
        .issuer("keys-test")
        .audience("api")
        .build()
        .unwrap();
    ServiceBuilder::new()
        .layer(
            AuthLayer::<Value>::new(verifier)
                .sources(TokenSources::bearer())
                .revocations(keys.revocations.clone()),
        )
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        }))
        .oneshot(request)
        .await
        .unwrap()
}

async fn demo_call(router: &Router, peer: &str, request: Request<Body>) -> Response<Body> {
    router
        .clone()
        .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
        .oneshot(request)
        .await
        .unwrap()
}

async fn body_json(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn demo_claims() -> Value {
    let now = now_seconds();
    json!({
        "exi": 300, "exp": now + 300, "iat": now, "iss": app::DEMO_ISSUER,
        "jti": format!("jti-{}", uuid_like()), "sub": "admin", "usefor": "access",
        "spaces": ["default_space", "production"], "roles": ["admin"],
    })
}

fn keys_claims() -> Value {
    let now = now_seconds();
    json!({"sub": "admin", "exp": now + 300, "iat": now, "iss": "keys-test", "aud": "api",
           "jti": format!("k-{}", uuid_like()), "usefor": "access"})
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{}-{}", now_seconds(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A token with any header, signed by the demo's Ed25519 key.
fn demo_raw(header: Value, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&key_pem("ed25519_private")).unwrap();
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).unwrap();
    format!("{message}.{signature}")
}

fn hs256_with_secret(claims: &Value, kid: &str, secret: &[u8]) -> String {
    common::raw_hs256(
        &json!({"alg": "HS256", "kid": kid}).to_string(),
        &claims.to_string(),
        secret,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const INVALID_TOKEN: (&str, &str) = ("www-authenticate", "error=\"invalid_token\"");
const INVALID_REQUEST: (&str, &str) = ("www-authenticate", "error=\"invalid_request\"");
const NO_STORE: (&str, &str) = ("cache-control", "no-store");

/// Flips the ECDSA P-256 signature `(r, s)` of `token` to `(r, n - s)`: a
/// different byte string that verifies just the same.
fn malleate_es256(token: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut sig = engine.decode(signature).unwrap();
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let s = &mut sig[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = N[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        s[i] = d as u8;
    }
    format!("{message}.{}", engine.encode(sig))
}

#[tokio::test]
async fn attack_table() {
    let router = demo_router(IpRules::parse("", "198.51.100.0/24").unwrap());
    let keys = keys();

    // Real credentials from the demo.
    let login = demo_call(
        &router,
        PEER,
        post(
            "/api/login",
            "application/json",
            r#"{"username":"admin","password":"admin"}"#,
        ),
    )
    .await;
    let tokens = body_json(login).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let cookie_login = demo_call(
        &router,
        PEER,
        post(
            "/login",
            "application/x-www-form-urlencoded",
            "username=admin&password=admin",
        ),
    )
    .await;
    let session_cookie = cookie_login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let pending = body_json(
        demo_call(
            &router,
            PEER,
            post(
                "/authenticate/signin",
                "application/json",
                r#"{"Username":"operator","Password":"operator","KeepLoggedIn":false}"#,
            ),
        )
        .await,
    )
    .await["TotpAccessCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = body_json(
        demo_call(
            &router,
            PEER,
            post(
                "/authenticate/signin",
                "application/json",
                r#"{"Username":"admin","Password":"admin","KeepLoggedIn":false}"#,
            ),
        )
        .await,
    )
    .await["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut signout = post("/authenticate/signout", "application/json", "{}");
    signout
        .headers_mut()
        .insert("authorization", bearer(&revoked).parse().unwrap());
    assert_eq!(
        demo_call(&router, PEER, signout).await.status(),
        StatusCode::OK,
        "signed out"
    );

    let demo = |changes: Value| {
        demo_raw(
            json!({"alg": "EdDSA", "kid": "demo", "typ": "JWT"}),
            &with(demo_claims(), changes),
        )
    };
    let key_token = |changes: Value| keys.rsa.sign(&with(keys_claims(), changes)).unwrap();
    let now = now_seconds();
    let rsa_public = key_pem("rsa_public");
    let ec_public = key_pem("ec256_public");
    let huge = "A".repeat(9 * 1024);
    let megabyte_claims = demo(json!({"padding": "x".repeat(1024 * 1024)}));
    let good = access.as_str();

    use Target::{Demo, Keys as K};
    let s401 = StatusCode::UNAUTHORIZED;
    let s400 = StatusCode::BAD_REQUEST;
    let s403 = StatusCode::FORBIDDEN;
    let me = "/api/me";
    let mut cases = vec![
        case(
            "baseline: a valid access token passes",
            "RFC 6750 §2.1",
            Demo,
            get(me, &[("authorization", &bearer(good))]),
            StatusCode::OK,
            &[],
        ),
        case(
            "baseline: no credential is challenged",
            "RFC 6750 §3.1",
            Demo,
            get(me, &[]),
            s401,
            &[("www-authenticate", "Bearer realm=\"api\"")],
        ),
    ];
    let payload = b64(demo_claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        let token = format!("{header}.{payload}.");
        cases.push(case(
            format!("alg {alg} is refused"),
            "RFC 8725 §2.1, §3.1",
            Demo,
            get(me, &[("authorization", &bearer(&token))]),
            s401,
            &[INVALID_TOKEN, NO_STORE],
        ));
    }
    cases.extend([
        case("HS256 signed with the RSA public key (HS/RS confusion)", "RFC 8725 §2.1, §3.1", K, get("/", &[("authorization", &bearer(&hs256_with_secret(&keys_claims(), "rs", &rsa_public)))]), s401, &[INVALID_TOKEN]),
        case("HS256 signed with the EC public key (HS/ES confusion)", "RFC 8725 §2.1, §3.1", K, get("/", &[("authorization", &bearer(&hs256_with_secret(&keys_claims(), "es", &ec_public)))]), s401, &[INVALID_TOKEN]),
        case("RS256 token presented under the ES256 key's kid", "RFC 8725 §3.1", K, get("/", &[("authorization", &bearer(&{
            let t = key_token(json!({}));
            let header = b64(json!({"alg": "RS256", "kid": "es"}).to_string().as_bytes());
            format!("{header}.{}", t.split_once('.').unwrap().1)
        }))]), s401, &[INVALID_TOKEN]),
        case("kid naming a missing key", "RFC 8725 §3.10", Demo, get(me, &[("authorization", &bearer(&demo_raw(json!({"alg": "EdDSA", "kid": "nope"}), &demo_claims())))]), s401, &[INVALID_TOKEN, ("www-authenticate", "key is unknown")]),
        case("kid with path traversal", "RFC 8725 §3.10", Demo, get(me, &[("authorization", &bearer(&demo_raw(json!({"alg": "EdDSA", "kid": "../../../../etc/passwd"}), &demo_claims())))]), s401, &[INVALID_TOKEN]),
        case("kid with SQL text", "RFC 8725 §3.10", Demo, get(me, &[("authorization", &bearer(&demo_raw(json!({"alg": "EdDSA", "kid": "x' UNION SELECT 'secret' --"}), &demo_claims())))]), s401, &[INVALID_TOKEN]),
        case("jku pointing at an attacker's key set is ignored", "RFC 8725 §3.10; RFC 7515 §4.1.2", K, get("/", &[("authorization", &bearer(&common::raw_hs256(&json!({"alg": "HS256", "jku": "http://127.0.0.1:9/jwks.json"}).to_string(), &keys_claims().to_string(), b"attacker-secret-of-thirty-two-bytes!!")))]), s401, &[INVALID_TOKEN]),
        case("x5u pointing at an attacker's certificate is ignored", "RFC 8725 §3.10; RFC 7515 §4.1.5", K, get("/", &[("authorization", &bearer(&common::raw_hs256(&json!({"alg": "HS256", "x5u": "http://127.0.0.1:9/cert.pem"}).to_string(), &keys_claims().to_string(), b"attacker-secret-of-thirty-two-bytes!!")))]), s401, &[INVALID_TOKEN]),
        case("embedded jwk header is ignored", "RFC 8725 §3.10; RFC 7515 §4.1.3", K, get("/", &[("authorization", &bearer(&{
            let attacker = SigningKey::generate_es256().unwrap();
            let claims = with(keys_claims(), json!({}));
            let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
            header.jwk = attacker.public_jwk().cloned();
            header.kid = Some("es".into());
            let pem = attacker.to_pkcs8_pem().unwrap();
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap()
        }))]), s401, &[INVALID_TOKEN, ("www-authenticate", "signature is invalid")]),
        case("expired token", "RFC 7519 §4.1.4", Demo, get(me, &[("authorization", &bearer(&demo(json!({"exp": now - 1}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "expired")]),
        case("token not valid yet", "RFC 7519 §4.1.5", Demo, get(me, &[("authorization", &bearer(&demo(json!({"nbf": now + 3600}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "not valid yet")]),
        case("token without exp", "RFC 8725 §3.10 (bounded lifetime)", Demo, get(me, &[("authorization", &bearer(&demo(json!({"exp": null}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "lacks a required claim")]),
        case("wrong issuer", "RFC 8725 §3.8", Demo, get(me, &[("authorization", &bearer(&demo(json!({"iss": "https://evil.example"}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "issuer")]),
        case("wrong audience", "RFC 8725 §3.9", K, get("/", &[("authorization", &bearer(&key_token(json!({"aud": "other-api"}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "audience")]),
        case("refresh token used as an access token", "RFC 8725 §2.8, §3.11", Demo, get(me, &[("authorization", &bearer(&refresh))]), s401, &[INVALID_TOKEN, ("www-authenticate", "wrong kind")]),
        case("service-account token where only access tokens are accepted", "RFC 8725 §2.8, §3.11", K, get("/", &[("authorization", &bearer(&key_token(json!({"usefor": "service"}))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "wrong kind")]),
        case("otp-pending token used as an access token", "RFC 8725 §2.8, §3.11", Demo, get(me, &[("authorization", &bearer(&pending))]), s401, &[INVALID_TOKEN, ("www-authenticate", "wrong kind")]),
        case("revoked token (signed out)", "OWASP ASVS 4.0.3 V3.3.1", Demo, get(me, &[("authorization", &bearer(&revoked))]), s401, &[INVALID_TOKEN, ("www-authenticate", "revoked")]),
        case("tampered signature", "RFC 7515 §5.2", Demo, get(me, &[("authorization", &bearer(&{
            // Flip the first signature character: the last ones may carry
            // fewer bits, or already be what they would be set to.
            let (message, signature) = good.rsplit_once('.').unwrap();
            let flipped = if signature.starts_with('A') { "B" } else { "A" };
            format!("{message}.{flipped}{}", &signature[1..])
        }))]), s401, &[INVALID_TOKEN, ("www-authenticate", "signature is invalid")]),
        case("tampered payload", "RFC 7515 §5.2", Demo, get(me, &[("authorization", &bearer(&{
            let parts: Vec<&str> = good.split('.').collect();
            let mut claims: Value = serde_json::from_slice(&base64_decode(parts[1])).unwrap();
            claims["roles"] = json!(["admin", "root"]);
            format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2])
        }))]), s401, &[INVALID_TOKEN, ("www-authenticate", "signature is invalid")]),
        case("token in the query string is never read", "RFC 6750 §2.3, §5.3", Demo, get(&format!("{me}?access_token={good}"), &[]), s401, &[("www-authenticate", "Bearer realm=\"api\"")]),
        case("oversized Authorization header", "RFC 6750 §3.1 (invalid_request)", Demo, get(me, &[("authorization", &format!("Bearer {huge}"))]), s400, &[INVALID_REQUEST]),
        case("oversized access cookie", "RFC 6265bis §5.7 (limits)", Demo, get(me, &[("cookie", &format!("ins_access_token={huge}"))]), s400, &[INVALID_REQUEST]),
        case("oversized X-Space", "OWASP ASVS 4.0.3 V5.1.4", Demo, get(me, &[("authorization", &bearer(good)), ("x-space", &"s".repeat(300))]), s400, &[]),
        case("1 MB of claims", "OWASP API Security Top 10 2023, API4 (resource consumption)", Demo, get(me, &[("authorization", &bearer(&megabyte_claims))]), s400, &[INVALID_REQUEST, ("www-authenticate", "too long")]),
        case("malformed base64", "RFC 7515 §7.1", Demo, get(me, &[("authorization", &bearer("eyJ!.eyJ.sig"))]), s401, &[INVALID_TOKEN, ("www-authenticate", "malformed")]),
        case("malformed JSON claims", "RFC 7519 §7.2", Demo, get(me, &[("authorization", &bearer(&demo_raw(json!({"alg": "EdDSA", "kid": "demo"}), &json!("not an object"))))]), s401, &[INVALID_TOKEN, ("www-authenticate", "malformed")]),
        case("X-Space for a space the token lacks", "OWASP ASVS 4.0.3 V4.1.3", Demo, get(me, &[("authorization", &bearer(good)), ("x-space", "someone_elses_space")]), s403, &[]),
        case("unknown crit header extension", "RFC 7515 §4.1.11", Demo, get(me, &[("authorization", &bearer(&demo_raw(json!({"alg": "EdDSA", "kid": "demo", "crit": ["urn:x:unknown"], "urn:x:unknown": 1}), &demo_claims())))]), s401, &[INVALID_TOKEN, ("www-authenticate", "critical")]),
        case("iss as an array", "RFC 7519 §4.1.1; CVE-2026-25537 class", Demo, get(me, &[("authorization", &bearer(&demo(json!({"iss": [app::DEMO_ISSUER]}))))]), s401, &[INVALID_TOKEN]),
        case("iss as a number", "RFC 7519 §4.1.1", Demo, get(me, &[("authorization", &bearer(&demo(json!({"iss": 7}))))]), s401, &[INVALID_TOKEN]),
        case("aud as a number", "RFC 7519 §4.1.3", K, get("/", &[("authorization", &bearer(&key_token(json!({"aud": 7}))))]), s401, &[INVALID_TOKEN]),
        case("aud as an object", "RFC 7519 §4.1.3", K, get("/", &[("authorization", &bearer(&key_token(json!({"aud": {"api": true}}))))]), s401, &[INVALID_TOKEN]),
        case("exp as a string", "RFC 7519 §4.1.4; CVE-2026-25537", Demo, get(me, &[("authorization", &bearer(&demo(json!({"exp": (now + 300).to_string()}))))]), s401, &[INVALID_TOKEN]),
        case("nbf as a string", "RFC 7519 §4.1.5; CVE-2026-25537", Demo, get(me, &[("authorization", &bearer(&demo(json!({"nbf": "0"}))))]), s401, &[INVALID_TOKEN]),
        case("duplicate claim names", "RFC 7519 §4; RFC 8725 §3.10", Demo, get(me, &[("authorization", &bearer(&{
            let text = format!(r#"{{"exi":300,"exp":{},"exp":{},"iat":{now},"iss":"{}","jti":"d","sub":"admin","usefor":"access","spaces":["default_space"]}}"#, now - 100, now + 300, app::DEMO_ISSUER);
            let key = jsonwebtoken::EncodingKey::from_ed_pem(&key_pem("ed25519_private")).unwrap();
            let message = format!("{}.{}", b64(br#"{"alg":"EdDSA","kid":"demo"}"#), b64(text.as_bytes()));
            format!("{message}.{}", jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).unwrap())
        }))]), s401, &[INVALID_TOKEN, ("www-authenticate", "repeats a claim")]),
        case("two different credentials in one request", "RFC 6750 §2", Demo, get(me, &[("authorization", &bearer(good)), ("x-auth-token", &refresh)]), s400, &[INVALID_REQUEST]),
        case("Authorization header sent twice", "RFC 6750 §2; RFC 9110 §5.3", Demo, {
            let mut r = get(me, &[]);
            r.headers_mut().append("authorization", bearer(good).parse().unwrap());
            r.headers_mut().append("authorization", bearer(good).parse().unwrap());
            r
        }, s400, &[INVALID_REQUEST]),
        case("access cookie sent twice", "RFC 6265bis §5.4 (ambiguous cookies)", Demo, get(me, &[("cookie", &format!("ins_access_token={good}; ins_access_token={refresh}"))]), s400, &[INVALID_REQUEST]),
        case("X-Space sent twice", "RFC 9110 §5.3", Demo, {
            let mut r = get(me, &[("authorization", &bearer(good))]);
            r.headers_mut().append("x-space", "default_space".parse().unwrap());
            r.headers_mut().append("x-space", "production".parse().unwrap());
            r
        }, s400, &[]),
        case("login body that is not JSON", "OWASP ASVS 4.0.3 V5.1.4", Demo, post("/api/login", "application/json", "{not json"), s400, &[]),
        case("login body of the wrong content type", "RFC 9110 §15.5.16", Demo, post("/api/login", "text/plain", "username=admin"), StatusCode::UNSUPPORTED_MEDIA_TYPE, &[]),
        case("login body too large", "RFC 9110 §15.5.14", Demo, post("/api/login", "application/json", format!(r#"{{"username":"admin","password":"{}"}}"#, "p".repeat(64 * 1024))), StatusCode::PAYLOAD_TOO_LARGE, &[]),
        case("login body with a missing field", "OWASP ASVS 4.0.3 V5.1.3", Demo, post("/authenticate/signin", "application/json", r#"{"Username":"admin","KeepLoggedIn":true}"#), s400, &[]),
        case("cross-site POST with cookie credentials", "OWASP CSRF Prevention (Fetch Metadata)", Demo, {
            let mut r = get("/api/auth/lockedUsers/nobody", &[("cookie", &session_cookie), ("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]);
            *r.method_mut() = Method::DELETE;
            r
        }, s403, &[]),
        case("a header-token request is exempt from the CSRF check", "OWASP CSRF Prevention", Demo, {
            let mut r = get("/api/auth/lockedUsers/nobody", &[("authorization", &bearer(good)), ("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]);
            *r.method_mut() = Method::DELETE;
            r
        }, StatusCode::NO_CONTENT, &[]),
    ]);
    // Client-address cases: the peer differs.
    let mut spoof = case(
        "spoofed X-Forwarded-For from an untrusted peer is ignored",
        "RFC 7239 §8.1 (header spoofing)",
        Demo,
        get(
            me,
            &[
                ("authorization", &bearer(good)),
                ("x-forwarded-for", "192.0.2.99"),
            ],
        ),
        s403,
        &[],
    );
    spoof.peer = "198.51.100.7:1";
    cases.push(spoof);
    let mut mapped = case(
        "IPv4-mapped IPv6 peer against an IPv4 deny rule",
        "RFC 4291 §2.5.5.2",
        Demo,
        get(me, &[("authorization", &bearer(good))]),
        s403,
        &[],
    );
    mapped.peer = "[::ffff:198.51.100.7]:1";
    cases.push(mapped);
    let mut proxied = case(
        "a trusted proxy's X-Forwarded-For decides",
        "RFC 7239 §5.2",
        Demo,
        get(
            me,
            &[
                ("authorization", &bearer(good)),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        ),
        s403,
        &[],
    );
    proxied.peer = "10.0.0.1:1";
    cases.push(proxied);

    assert!(cases.len() >= 40, "{} cases", cases.len());
    // Everything the crate emits while the table runs, searched afterwards
    // for every credential the cases sent.
    #[cfg(feature = "tracing")]
    let capture = common::capture::Capture::default();
    #[cfg(feature = "tracing")]
    let _capturing = tracing_subscriber::util::SubscriberInitExt::set_default(capture.subscriber());
    let mut sent = vec![access.clone(), refresh.clone()];
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        sent.extend(credentials_in(&case.request));
        let response = match case.target {
            Target::Demo => demo_call(&router, case.peer, case.request).await,
            Target::Keys => keys_call(&keys, case.request).await,
        };
        let status = response.status();
        let mut problems = Vec::new();
        if status != case.status {
            problems.push(format!("status {status}, expected {}", case.status));
        }
        for (name, needle) in &case.headers {
            match response.headers().get(*name).and_then(|v| v.to_str().ok()) {
                Some(value) if value.contains(needle) => {}
                other => problems.push(format!("{name}: {other:?} lacks {needle:?}")),
            }
        }
        if status.is_server_error() {
            problems.push("a server error".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} [{}]: {}",
                case.name,
                case.reference,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    #[cfg(feature = "tracing")]
    {
        let text = capture.text();
        assert!(
            text.contains("tower_authgate::decision") && text.contains("bad_signature"),
            "the attacks' refusals were not captured"
        );
        let leaked: Vec<&String> = sent.iter().filter(|c| text.contains(c.as_str())).collect();
        assert!(
            leaked.is_empty(),
            "credentials in the telemetry: {leaked:?}"
        );
    }
}

/// The credentials a request carries, and each part of those that are
/// tokens: the `Authorization` value after its scheme, `X-Auth-Token`, and
/// every cookie's value. Parts shorter than 16 characters are left out, as
/// they could match ordinary text by chance.
fn credentials_in(request: &Request<Body>) -> Vec<String> {
    let headers = request.headers();
    let mut values = Vec::new();
    for value in headers.get_all("authorization") {
        let value = value.to_str().unwrap_or_default();
        values.push(
            value
                .split_once(' ')
                .map_or(value, |(_, token)| token)
                .trim(),
        );
    }
    for value in headers.get_all("x-auth-token") {
        values.push(value.to_str().unwrap_or_default().trim());
    }
    for value in headers.get_all("cookie") {
        for pair in value.to_str().unwrap_or_default().split(';') {
            if let Some((_, value)) = pair.split_once('=') {
                values.push(value.trim());
            }
        }
    }
    let mut credentials = Vec::new();
    for value in values {
        credentials.push(value.to_owned());
        credentials.extend(value.split('.').map(str::to_owned));
    }
    credentials.retain(|c| c.len() >= 16);
    credentials
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// OWASP Authentication Cheat Sheet (generic error messages), ASVS 4.0.3
/// V2.2.1: unknown users and wrong passwords answer alike, so usernames
/// cannot be enumerated.
#[tokio::test]
async fn username_enumeration_unknown_user_and_wrong_password_answer_identically() {
    let router = demo_router(IpRules::allow_all());
    for (path, known, unknown) in [
        (
            "/api/login",
            r#"{"username":"admin","password":"nope"}"#,
            r#"{"username":"nobody","password":"nope"}"#,
        ),
        (
            "/api/v2/login",
            r#"{"username":"admin","password":"nope"}"#,
            r#"{"username":"nobody","password":"nope"}"#,
        ),
        (
            "/api/authentication/login",
            r#"{"username":"admin","password":"nope","oldPassword":""}"#,
            r#"{"username":"nobody","password":"nope","oldPassword":""}"#,
        ),
    ] {
        let a = demo_call(&router, PEER, post(path, "application/json", known)).await;
        let b = demo_call(&router, PEER, post(path, "application/json", unknown)).await;
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(a.status(), b.status(), "{path}");
        assert_eq!(body_json(a).await, body_json(b).await, "{path}");
    }
}

/// RFC 6238 §5.2 and OWASP ASVS 4.0.3 V2.8: a code from two steps back, a
/// reused code, and codes with spaces or non-ASCII digits are refused.
#[tokio::test]
async fn totp_codes_out_of_window_reused_or_malformed() {
    let router = demo_router(IpRules::allow_all());
    let login = |otp: String| {
        let router = router.clone();
        async move {
            let body =
                json!({"username": "operator", "password": "operator", "otp": otp}).to_string();
            demo_call(&router, PEER, post("/api/login", "application/json", body))
                .await
                .status()
        }
    };
    // Each refused code counts toward the lockout (five lock the account),
    // so the refusals are split around a successful login, which resets it.
    assert_eq!(
        login(common::demo::operator_code(-2)).await,
        StatusCode::UNAUTHORIZED
    );
    let code = common::demo::operator_code(0);
    for malformed in [
        format!(" {code}"),
        format!("{} {}", &code[..3], &code[3..]),
        format!("{code}0"),
    ] {
        assert_eq!(
            login(malformed.clone()).await,
            StatusCode::UNAUTHORIZED,
            "{malformed:?}"
        );
    }
    assert_eq!(login(code.clone()).await, StatusCode::OK);
    assert_eq!(
        login("١٢٣٤٥٦".to_owned()).await,
        StatusCode::UNAUTHORIZED,
        "non-ASCII digits"
    );
    assert_eq!(login(code).await, StatusCode::UNAUTHORIZED, "reused code");
}

/// OWASP ASVS 4.0.3 V2.2.1: a locked account is refused even with the right
/// password (the password is not checked at all).
#[tokio::test]
async fn a_locked_account_with_the_right_password() {
    let router = demo_router(IpRules::allow_all());
    for _ in 0..5 {
        let r = demo_call(
            &router,
            PEER,
            post(
                "/api/login",
                "application/json",
                r#"{"username":"admin","password":"x"}"#,
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = demo_call(
        &router,
        PEER,
        post(
            "/api/login",
            "application/json",
            r#"{"username":"admin","password":"admin"}"#,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::LOCKED);
    assert!(r.headers().contains_key("retry-after"));
}

/// RFC 8725 §3.2 / RFC 7518 §3.4: ECDSA signatures are malleable; revocation
/// keys on `jti`, so the re-encoded `(r, n − s)` signature of a revoked token
/// is refused too.
#[tokio::test]
async fn a_revoked_ecdsa_token_with_its_malleated_signature() {
    let keys = keys();
    let claims = keys_claims();
    let token = keys.ec.sign(&claims).unwrap();
    let twin = malleate_es256(&token);
    assert_ne!(token, twin);
    // The twin verifies on its own: the signature check alone cannot tell.
    let verifier = Verifier::builder(KeySet::single(
        VerifyingKey::from_pem(Algorithm::ES256, &key_pem("ec256_public"))
            .unwrap()
            .with_kid("es"),
    ))
    .issuer("keys-test")
    .audience("api")
    .build()
    .unwrap();
    assert!(verifier.verify::<Value>(&twin).is_ok());
    let call = |t: &str| keys_call(&keys, get("/", &[("authorization", &bearer(t))]));
    assert_eq!(call(&twin).await.status(), StatusCode::OK);
    keys.revocations
        .revoke_now(claims["jti"].as_str().unwrap(), now_seconds() + 300)
        .unwrap();
    assert_eq!(call(&token).await.status(), StatusCode::UNAUTHORIZED);
    let response = call(&twin).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("revoked")
    );
}

/// RFC 6819 §5.2.2.3 (refresh-token rotation): twenty requests renewing from
/// one refresh cookie at once all go through, and no reuse alarm ends the
/// session.
#[tokio::test]
async fn twenty_concurrent_renewals_from_one_refresh_cookie() {
    let router = demo_router(IpRules::allow_all());
    let login = demo_call(
        &router,
        PEER,
        post(
            "/login",
            "application/x-www-form-urlencoded",
            "username=admin&password=admin",
        ),
    )
    .await;
    let refresh = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .unwrap()
                .strip_prefix("ins_refresh_token=")
                .map(|r| r.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    let cookie = format!("ins_refresh_token={refresh}");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let router = router.clone();
            let cookie = cookie.clone();
            tokio::spawn(async move {
                demo_call(&router, PEER, get("/api/me", &[("cookie", &cookie)])).await
            })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .headers()
                .get("set-cookie")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("ins_access_token=")
        );
    }
    // The session is intact afterwards.
    assert_eq!(
        demo_call(&router, PEER, get("/api/me", &[("cookie", &cookie)]))
            .await
            .status(),
        StatusCode::OK
    );
}
