//! CsrfLayer decisions.

use http::{HeaderMap, Method};
use tower_authgate::csrf::CsrfLayer;
use tower_authgate::token::FoundIn;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

#[test]
fn decisions() {
    let guard = CsrfLayer::new()
        .trusted_origin("https://admin.example.com")
        .unwrap();
    let cookie = Some(FoundIn::Cookie);
    let post = Method::POST;
    let host = ("host", "api.example.com");
    /// Request headers, where the token was found, the method, and whether
    /// the request may pass.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<FoundIn>, &'a Method, bool);
    let cases: [Case<'_>; 12] = [
        (
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            cookie,
            &post,
            false,
        ),
        (
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://sub.example.com"),
            ],
            cookie,
            &post,
            false,
        ),
        (
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://admin.example.com"),
            ],
            cookie,
            &post,
            true,
        ),
        (&[("sec-fetch-site", "same-origin")], cookie, &post, true),
        (&[("sec-fetch-site", "none")], cookie, &post, true),
        (
            &[host, ("origin", "https://api.example.com")],
            cookie,
            &post,
            true,
        ),
        (
            &[host, ("origin", "https://evil.example")],
            cookie,
            &post,
            false,
        ),
        (&[host, ("origin", "null")], cookie, &post, false),
        (&[host], cookie, &post, true),
        (
            &[("sec-fetch-site", "cross-site")],
            Some(FoundIn::Bearer),
            &post,
            true,
        ),
        (
            &[("sec-fetch-site", "cross-site")],
            Some(FoundIn::Issued),
            &Method::DELETE,
            false,
        ),
        (
            &[("sec-fetch-site", "cross-site")],
            cookie,
            &Method::GET,
            true,
        ),
    ];
    for (i, (pairs, found_in, method, allowed)) in cases.into_iter().enumerate() {
        assert_eq!(
            guard.allows(method, &headers(pairs), found_in),
            allowed,
            "case {i}: {pairs:?}"
        );
    }
}

#[test]
fn trusted_origins_are_validated() {
    for bad in [
        "example.com",
        "ftp://example.com",
        "https://",
        "https://a.example/path",
        "https://user@a.example",
    ] {
        assert!(CsrfLayer::new().trusted_origin(bad).is_err(), "{bad}");
    }
    assert!(
        CsrfLayer::new()
            .trusted_origin("http://127.0.0.1:8080/")
            .is_ok()
    );
}
