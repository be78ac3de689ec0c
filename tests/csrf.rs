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

/// Headers with every pair appended (a name may repeat).
fn appended(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

#[test]
fn two_origin_fields_are_refused() {
    let guard = CsrfLayer::new()
        .trusted_origin("https://admin.example.com")
        .unwrap();
    let host = ("host", "api.example.com");
    for pairs in [
        &[
            host,
            ("origin", "https://api.example.com"),
            ("origin", "https://evil.example"),
        ][..],
        &[
            host,
            ("origin", "https://evil.example"),
            ("origin", "https://api.example.com"),
        ],
        &[
            host,
            ("origin", "https://api.example.com"),
            ("origin", "https://api.example.com"),
        ],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://admin.example.com"),
            ("origin", "https://evil.example"),
        ],
        // Two `Sec-Fetch-Site` or two `Host` fields are as ambiguous.
        &[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[
            ("host", "evil.example"),
            ("host", "api.example.com"),
            ("origin", "https://evil.example"),
        ],
    ] {
        assert!(
            !guard.allows(&Method::POST, &appended(pairs), Some(FoundIn::Cookie)),
            "{pairs:?}"
        );
    }
    // One field of each passes.
    assert!(guard.allows(
        &Method::POST,
        &appended(&[host, ("origin", "https://api.example.com")]),
        Some(FoundIn::Cookie)
    ));
}

/// The scheme is part of the origin, and a default port is the same as
/// none (RFC 6454 §5).
#[test]
fn origins_compare_scheme_host_and_port() {
    let guard = CsrfLayer::new()
        .trusted_origin("https://admin.example.com:443")
        .unwrap();
    let plain = CsrfLayer::new()
        .plain_http()
        .trusted_origin("http://admin.example.com")
        .unwrap();
    // Host, Origin, and whether the HTTPS guard and the plain-HTTP guard
    // let the request through.
    let cases: [(&str, &str, bool, bool); 14] = [
        ("api.example.com", "https://api.example.com", true, false),
        ("api.example.com", "http://api.example.com", false, true),
        (
            "api.example.com",
            "https://api.example.com:443",
            true,
            false,
        ),
        (
            "api.example.com:443",
            "https://api.example.com",
            true,
            false,
        ),
        ("api.example.com", "http://api.example.com:80", false, true),
        ("api.example.com:80", "http://api.example.com", false, true),
        (
            "api.example.com",
            "https://api.example.com:8443",
            false,
            false,
        ),
        (
            "api.example.com:8443",
            "https://api.example.com:8443",
            true,
            false,
        ),
        ("API.example.com", "HTTPS://api.EXAMPLE.com", true, false),
        ("api.example.com", "ftp://api.example.com", false, false),
        ("api.example.com", "https://api.example.com/", false, false),
        (
            "api.example.com",
            "https://user@api.example.com",
            false,
            false,
        ),
        ("[::1]:8443", "https://[::1]:8443", true, false),
        ("api.example.com", "https://admin.example.com", true, false),
    ];
    for (host, origin, https_allows, http_allows) in cases {
        let headers = appended(&[("host", host), ("origin", origin)]);
        assert_eq!(
            guard.allows(&Method::POST, &headers, Some(FoundIn::Cookie)),
            https_allows,
            "https: {host} {origin}"
        );
        let plain_allows = http_allows || origin == "http://admin.example.com";
        assert_eq!(
            plain.allows(&Method::POST, &headers, Some(FoundIn::Cookie)),
            plain_allows,
            "http: {host} {origin}"
        );
    }
    // A trusted origin is trusted under its own scheme only.
    for (origin, allowed) in [
        ("https://admin.example.com", true),
        ("https://admin.example.com:443", true),
        ("http://admin.example.com", false),
        ("http://admin.example.com:443", false),
        ("https://admin.example.com:444", false),
    ] {
        let headers = appended(&[("sec-fetch-site", "cross-site"), ("origin", origin)]);
        assert_eq!(
            guard.allows(&Method::POST, &headers, Some(FoundIn::Cookie)),
            allowed,
            "{origin}"
        );
    }
}
