//! LoginThrottleLayer: per-address decisions and bounded state.
#![cfg(feature = "throttle")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::ip::{ClientIp, PeerAddr};
use tower_authgate::reject::JsonRejection;
use tower_authgate::throttle::{LoginThrottleLayer, ThrottleDecision};

#[tokio::test]
async fn each_address_has_its_own_budget() {
    let layer = LoginThrottleLayer::per_minute(3)
        .unwrap()
        .on_rejection(JsonRejection);
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }));
    let from_peer = |addr: &str| {
        let mut request = Request::new(String::new());
        request
            .extensions_mut()
            .insert(PeerAddr(addr.parse::<SocketAddr>().unwrap()));
        request
    };
    for _ in 0..3 {
        assert_eq!(
            service
                .clone()
                .oneshot(from_peer("192.0.2.1:1"))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let throttled = service
        .clone()
        .oneshot(from_peer("192.0.2.1:2"))
        .await
        .unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(throttled.body().contains("too many login attempts"));
    assert_eq!(
        service
            .clone()
            .oneshot(from_peer("192.0.2.2:1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // A resolved ClientIp (behind a trusted proxy) wins over the peer.
    let mut request = from_peer("192.0.2.1:1");
    request
        .extensions_mut()
        .insert(ClientIp("198.51.100.1".parse().unwrap()));
    assert_eq!(
        service.clone().oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
    // Mapped IPv6 peers share the IPv4 budget.
    let mapped = service
        .oneshot(from_peer("[::ffff:192.0.2.1]:9"))
        .await
        .unwrap();
    assert_eq!(mapped.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(LoginThrottleLayer::per_minute(0).is_err());
}

#[test]
fn state_stays_bounded_under_a_spray_of_addresses() {
    let layer = LoginThrottleLayer::per_minute(5)
        .unwrap()
        .max_tracked(1_000);
    let first: IpAddr = "203.0.113.1".parse().unwrap();
    assert_eq!(layer.check(first), ThrottleDecision::Allow);
    let mut refused = 0;
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
        if layer.check(ip) != ThrottleDecision::Allow {
            refused += 1;
        }
        assert!(
            layer.tracked() <= 1_000,
            "{} tracked at {i}",
            layer.tracked()
        );
    }
    // Once full, new addresses wait; a tracked address keeps its own budget.
    assert!(refused >= 99_000);
    assert_eq!(layer.check(first), ThrottleDecision::Allow);
}
