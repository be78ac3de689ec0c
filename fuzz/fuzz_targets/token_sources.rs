//! Token sources over arbitrary Authorization, Cookie and X-Auth-Token values.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_authgate::token::{TokenSource, TokenSources};

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(3, |b| *b == 0).collect();
    let mut headers = HeaderMap::new();
    for (name, value) in ["authorization", "cookie", "x-auth-token"].iter().zip(parts) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(*name, value);
        }
    }
    let sources = TokenSources::new([
        TokenSource::cookie("ins_access_token"),
        TokenSource::bearer(),
        TokenSource::header(http::HeaderName::from_static("x-auth-token")),
    ])
    .unwrap();
    if let Ok(Some(found)) = sources.find(&headers) {
        assert!(found.token.bytes().all(|b| b.is_ascii_graphic()));
    }
});
