//! Property tests for every parser that reads client input: token sources,
//! cookie headers, the verifier, and each documented API's login body. None
//! may panic, and every answer is a clear client error (never a 5xx).

mod common;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use tower_authgate::token::{
    Algorithm, KeySet, MultipleCredentials, TokenSource, TokenSources, Verifier,
};

fn sources() -> TokenSources {
    TokenSources::new([
        TokenSource::cookie("ins_access_token"),
        TokenSource::bearer(),
        TokenSource::try_header("X-Auth-Token").unwrap(),
    ])
    .unwrap()
}

fn header_map(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
        }
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn token_sources_never_panic_and_return_only_text_from_the_request(
        auth in "[ -~]{0,200}",
        cookie in "[ -~]{0,200}",
        header in "[ -~]{0,200}",
        take_first in any::<bool>(),
    ) {
        let policy = if take_first { MultipleCredentials::TakeFirst } else { MultipleCredentials::Reject };
        let map = header_map(&[("authorization", auth.clone()), ("cookie", cookie.clone()), ("x-auth-token", header.clone())]);
        if let Ok(Some(found)) = sources().on_multiple(policy).find(&map) {
            prop_assert!(!found.token.is_empty());
            prop_assert!(auth.contains(found.token) || cookie.contains(found.token) || header.contains(found.token));
            prop_assert!(found.token.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn cookie_headers_with_the_name_anywhere(
        before in "[a-z]{0,8}=[a-z0-9]{0,8}",
        value in "[A-Za-z0-9_.-]{1,64}",
        after in "[a-z]{0,8}=[a-z0-9]{0,8}",
        spaces in "[ ]{0,3}",
    ) {
        let cookie = format!("{before};{spaces}ins_access_token={value};{spaces}{after}");
        let map = header_map(&[("cookie", cookie)]);
        let found = TokenSources::single(TokenSource::cookie("ins_access_token")).find(&map).unwrap();
        prop_assert_eq!(found.map(|f| f.token), Some(value.as_str()));
    }

    #[test]
    fn the_verifier_refuses_garbage_without_panicking(token in "[A-Za-z0-9_.=+/-]{0,400}") {
        let key = common::signing_key(Algorithm::HS256);
        let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build().unwrap();
        prop_assert!(verifier.verify::<serde_json::Value>(&token).is_err());
    }

    #[test]
    fn the_verifier_refuses_any_claims_not_signed_by_its_key(claims in proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..8)) {
        let key = common::signing_key(Algorithm::HS256);
        let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build().unwrap();
        let other = common::raw_hs256(r#"{"alg":"HS256"}"#, &serde_json::to_string(&claims).unwrap(), b"another-secret-another-secret-32b!");
        prop_assert!(verifier.verify::<serde_json::Value>(&other).is_err());
    }
}

#[cfg(feature = "presets")]
mod login_bodies {
    use super::common::demo::{app, config};
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use http::Request;
    use proptest::prelude::*;
    use tower::ServiceExt;

    const ENDPOINTS: [&str; 7] = [
        "/login",
        "/login/otp",
        "/api/login",
        "/authenticate/signin",
        "/authenticate/totp",
        "/api/authentication/login",
        "/api/v2/login",
    ];
    const TYPES: [&str; 4] = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/plain",
    ];

    /// One demo for every case: building it hashes three passwords.
    static ROUTER: std::sync::LazyLock<axum::Router> = std::sync::LazyLock::new(|| {
        app::build(app::DemoConfig {
            // Garbage logins must not lock the demo users for later cases.
            lockout: tower_authgate::lockout::Lockout::new(
                tower_authgate::lockout::LockoutPolicy::default().with_max_failures(u32::MAX),
            ),
            ..config()
        })
        .unwrap()
        .layer(MockConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            9,
        ))))
    });

    fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[ -~]{0,200}".prop_map(String::into_bytes),
            (any::<Option<String>>(), any::<Option<String>>(), any::<Option<bool>>()).prop_map(|(u, p, k)| {
                serde_json::json!({"username": u, "password": p, "Username": u, "Password": p, "KeepLoggedIn": k, "token": u, "totp": p})
                    .to_string()
                    .into_bytes()
            }),
            ("[a-z]{0,10}", "[ -~]{0,30}").prop_map(|(u, p)| {
                format!("--xyz\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{u}\r\n--xyz\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{p}\r\n--xyz--\r\n").into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        #[test]
        fn every_login_endpoint_answers_garbage_with_a_client_error(
            endpoint in 0..ENDPOINTS.len(),
            content_type in 0..TYPES.len(),
            body in body_strategy(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let status = runtime.block_on(async {
                let router = ROUTER.clone();
                let request = Request::post(ENDPOINTS[endpoint])
                    .header("content-type", TYPES[content_type])
                    .body(Body::from(body))
                    .unwrap();
                router.oneshot(request).await.unwrap().status()
            });
            prop_assert!(status.is_client_error(), "{} {}: {status}", ENDPOINTS[endpoint], TYPES[content_type]);
        }
    }
}
