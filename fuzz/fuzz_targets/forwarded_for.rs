//! Client-address resolution over arbitrary X-Forwarded-For and Forwarded.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_authgate::ip::{ClientIpResolver, IpRanges, ProxyHeader};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let trusted = IpRanges::parse_list("127.0.0.1, 10.0.0.0/8").unwrap();
    for (header, name) in [(ProxyHeader::XForwardedFor, "x-forwarded-for"), (ProxyHeader::Forwarded, "forwarded")] {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.clone());
        let resolver = ClientIpResolver::new().trusted_proxies(trusted.clone()).header(header);
        let _ = resolver.resolve("127.0.0.1".parse().unwrap(), &headers);
    }
});
