//! IpFilterLayer and client-address resolution over `oneshot`; compiled ranges
//! checked against a naive scan by property tests.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{Request, Response, StatusCode};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_authgate::ip::{
    ClientIp, ClientIpResolver, IpDecision, IpFilterLayer, IpRanges, IpRules, PeerAddr, ProxyHeader,
};
use tower_authgate::reject::{AddressRejection, JsonRejection};

async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let ip = req.extensions().get::<ClientIp>().map(|c| c.0.to_string());
    Ok(Response::new(ip.unwrap_or_default()))
}

async fn call(
    layer: &IpFilterLayer<JsonRejection>,
    peer: &str,
    xff: &[&str],
) -> (StatusCode, String) {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(echo));
    let mut request = Request::builder();
    for value in xff {
        request = request.header("x-forwarded-for", *value);
    }
    let mut request = request.body(String::new()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    let response = service.oneshot(request).await.unwrap();
    (response.status(), response.into_body())
}

fn layer(allow: &str, deny: &str, trusted: &str) -> IpFilterLayer<JsonRejection> {
    IpFilterLayer::new(
        IpRules::parse(allow, deny).unwrap(),
        ClientIpResolver::new().trusted_proxies(IpRanges::parse_list(trusted).unwrap()),
    )
    .on_rejection(JsonRejection)
}

#[tokio::test]
async fn allow_deny_and_mapped_addresses() {
    let filter = layer("10.0.0.0/8, 2001:db8::/32", "10.66.0.0/16", "");
    assert_eq!(
        call(&filter, "10.1.2.3:1", &[]).await,
        (StatusCode::OK, "10.1.2.3".into())
    );
    assert_eq!(
        call(&filter, "10.66.1.1:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&filter, "192.0.2.1:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&filter, "[2001:db8::1]:1", &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&filter, "[2001:db9::1]:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    // IPv4-mapped IPv6 peers are matched as IPv4, against allow and deny.
    assert_eq!(
        call(&filter, "[::ffff:10.1.2.3]:1", &[]).await,
        (StatusCode::OK, "10.1.2.3".into())
    );
    assert_eq!(
        call(&filter, "[::ffff:10.66.0.1]:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = call(&filter, "192.0.2.1:1", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("not allowed"));
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let filter = layer("", "203.0.113.0/24", "127.0.0.1");
    // The attacker is denied and claims to be someone else.
    assert_eq!(
        call(&filter, "203.0.113.5:1", &["198.51.100.1"]).await.0,
        StatusCode::FORBIDDEN
    );
    // An untrusted peer's header does not change its address.
    assert_eq!(
        call(&filter, "198.51.100.9:1", &["203.0.113.5"]).await,
        (StatusCode::OK, "198.51.100.9".into())
    );
    // Through the trusted proxy, the forwarded address decides.
    assert_eq!(
        call(&filter, "127.0.0.1:1", &["203.0.113.5"]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&filter, "127.0.0.1:1", &["198.51.100.9"]).await,
        (StatusCode::OK, "198.51.100.9".into())
    );
}

#[tokio::test]
async fn a_chain_of_proxies() {
    let filter = layer("", "", "127.0.0.1, 10.0.0.0/8");
    // Left-most entries are client-supplied and cannot be trusted.
    let chain = ["6.6.6.6, 198.51.100.20, 10.1.1.1"];
    assert_eq!(
        call(&filter, "127.0.0.1:1", &chain).await.1,
        "198.51.100.20"
    );
    let split = ["6.6.6.6", "198.51.100.20", "10.1.1.1"];
    assert_eq!(
        call(&filter, "127.0.0.1:1", &split).await.1,
        "198.51.100.20"
    );
    // Garbage anywhere in the chain leaves the client unknown.
    assert_eq!(
        call(&filter, "127.0.0.1:1", &["6.6.6.6, bogus, 10.1.1.1"])
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

/// A trusted proxy's header that holds anything but addresses is refused
/// with `400`: the proxy's own address (allowed here) never stands in for
/// the client, and no element is skipped.
#[tokio::test]
async fn a_trusted_proxys_header_of_anything_but_addresses_is_refused() {
    let allowed_proxy_only = |header| {
        IpFilterLayer::new(
            IpRules::parse("127.0.0.1", "").unwrap(),
            ClientIpResolver::new()
                .trusted_proxies(IpRanges::parse_list("127.0.0.1").unwrap())
                .header(header),
        )
        .on_rejection(JsonRejection)
    };
    let send = |layer: IpFilterLayer<JsonRejection>,
                name: &'static str,
                values: Vec<&'static str>| async move {
        let mut request = Request::builder();
        for value in values {
            request = request.header(name, value);
        }
        let mut request = request.body(String::new()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        let response = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(echo))
            .oneshot(request)
            .await
            .unwrap();
        (response.status(), response.into_body())
    };
    // Without a header the proxy itself is the client: allowed here.
    assert_eq!(
        send(
            allowed_proxy_only(ProxyHeader::XForwardedFor),
            "x-forwarded-for",
            vec![]
        )
        .await,
        (StatusCode::OK, "127.0.0.1".into())
    );
    for values in [
        vec!["junk"],
        vec![""],
        vec![" "],
        vec!["198.51.100.7,"],
        vec![",198.51.100.7"],
        vec!["198.51.100.7,,127.0.0.1"],
        vec!["unix:/run/nginx.sock"],
        vec!["unknown"],
        vec!["_hidden"],
        vec!["198.51.100.7:4711"],
        vec!["[2001:db8::7]:4711"],
        vec!["198.51.100.7", "junk"],
        vec!["junk", "127.0.0.1"],
        vec!["127.0.0.1, junk"],
    ] {
        let (status, body) = send(
            allowed_proxy_only(ProxyHeader::XForwardedFor),
            "x-forwarded-for",
            values.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{values:?}: {body}");
        assert!(body.contains("invalid_forwarding"), "{body}");
    }
    for values in [
        vec!["for=junk"],
        vec!["for=unknown"],
        vec!["for=_hidden"],
        vec!["for=\"unix:/run/app.sock\""],
        vec!["for=198.51.100.7:4711"],
        vec!["for=2001:db8::7"],
        vec!["proto=https"],
        vec!["for=198.51.100.7,"],
        vec![""],
        vec!["for=198.51.100.7", "for=junk"],
    ] {
        let (status, body) = send(
            allowed_proxy_only(ProxyHeader::Forwarded),
            "forwarded",
            values.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{values:?}: {body}");
    }
    // Well-formed chains still resolve (and are judged by the rules).
    assert_eq!(
        send(
            allowed_proxy_only(ProxyHeader::Forwarded),
            "forwarded",
            vec!["for=\"[2001:db8::7]:4711\", for=127.0.0.1"],
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            allowed_proxy_only(ProxyHeader::XForwardedFor),
            "x-forwarded-for",
            vec![" 127.0.0.1 ,\t127.0.0.1"],
        )
        .await,
        (StatusCode::OK, "127.0.0.1".into())
    );
    // An untrusted peer's header is not read at all, garbled or not.
    let untrusted = layer("", "", "10.0.0.1");
    assert_eq!(
        call(&untrusted, "127.0.0.1:1", &["junk"]).await,
        (StatusCode::OK, "127.0.0.1".into())
    );
}

#[tokio::test]
async fn rules_are_replaced_at_run_time() {
    let filter = layer("", "192.0.2.0/24", "");
    let handle = filter.handle();
    assert_eq!(
        call(&filter, "192.0.2.1:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    handle.replace(IpRules::parse("192.0.2.0/24", "").unwrap());
    assert_eq!(call(&filter, "192.0.2.1:1", &[]).await.0, StatusCode::OK);
    assert_eq!(
        call(&filter, "198.51.100.1:1", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        handle.current().decide("192.0.2.9".parse().unwrap()),
        IpDecision::Allow
    );
}

#[tokio::test]
async fn without_a_peer_address_the_setup_error_is_named() {
    let filter = layer("", "", "");
    let service = ServiceBuilder::new()
        .layer(filter)
        .service(service_fn(echo));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response
            .body()
            .contains("into_make_service_with_connect_info")
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_connect_info_and_the_extractor() {
    use axum::Router;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::routing::get;
    let app = Router::new()
        .route(
            "/",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route_layer(layer("", "192.0.2.0/24", ""))
        .layer(MockConnectInfo(SocketAddr::from(([198, 51, 100, 4], 1234))));
    let response = app
        .clone()
        .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let denied_app = Router::new()
        .route("/", get(|| async { "hi" }))
        .route_layer(layer("", "198.51.100.0/24", ""))
        .layer(MockConnectInfo(SocketAddr::from(([198, 51, 100, 4], 1234))));
    let response = denied_app
        .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

fn naive(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|net| {
        let net = match net {
            IpNet::V6(v6) => match v6.network().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap())
                }
                _ => *net,
            },
            IpNet::V4(_) => *net,
        };
        net.contains(&ip)
    })
}

fn v4_net() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc()))
}

fn v6_net() -> impl Strategy<Value = IpNet> {
    // Half of them near each other so that ranges overlap and merge.
    (any::<u128>(), 0u8..=128, any::<bool>()).prop_map(|(a, p, near)| {
        let a = if near {
            (0x2001_0db8u128 << 96) | (a & 0xffff_ffff)
        } else {
            a
        };
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), p).unwrap().trunc())
    })
}

fn mapped_net() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 96u8..=128).prop_map(|(a, p)| {
        IpNet::V6(
            Ipv6Net::new(Ipv4Addr::from(a).to_ipv6_mapped(), p)
                .unwrap()
                .trunc(),
        )
    })
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::new(
            10,
            (a >> 16) as u8,
            (a >> 8) as u8,
            a as u8
        ))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        any::<u32>().prop_map(|a| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | a as u128))),
        any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_ranges_agree_with_a_naive_scan(
        nets in proptest::collection::vec(prop_oneof![v4_net(), v6_net(), mapped_net()], 0..40),
        probes in proptest::collection::vec(address(), 1..40),
    ) {
        let compiled = IpRanges::new(nets.iter().copied());
        for ip in probes {
            prop_assert_eq!(compiled.contains(ip), naive(&nets, ip), "{:?}", ip);
        }
        // Probing the exact edges of every network too.
        for net in &nets {
            for edge in [net.network(), net.broadcast()] {
                prop_assert_eq!(compiled.contains(edge), naive(&nets, edge));
            }
        }
    }

    #[test]
    fn forwarded_for_garbage_never_panics_or_escapes_the_chain(value in "[ -~]{0,120}") {
        let resolver = ClientIpResolver::new().trusted_proxies(IpRanges::parse_list("127.0.0.1").unwrap());
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.insert("x-forwarded-for", v);
        }
        // An address written in the header, or a refusal; the peer only
        // when there is no header to read.
        match resolver.resolve("127.0.0.1".parse().unwrap(), &headers) {
            Ok(ip) => prop_assert!(
                (headers.is_empty() && ip == "127.0.0.1".parse::<IpAddr>().unwrap())
                    || value.contains(&ip.to_string())
                    || value.to_ascii_lowercase().contains(&ip.to_string())
            ),
            Err(rejection) => prop_assert_eq!(rejection, AddressRejection::Unresolvable),
        }
    }
}
