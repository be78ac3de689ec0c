//! The request line and `Host`, checked before the guard ([`check_request`],
//! run by the guard's dispatch for the proxy and the decision endpoint, and
//! by [`ValidTargetLayer`] on the login routes), and the path shape the
//! public paths are matched on ([`path_shape`], shared with the rule tables
//! of [`crate::authz`], and [`matches_public`]).
//!
//! A path is judged by the gateway and then resolved again by the upstream
//! (and, next, matched by path-based authorization rules). Where servers
//! disagree on what a path names, a check on one reading is no check on the
//! other: Java servlet containers resolve `/public/..;/app` to `/app`,
//! IIS reads `\` as `/`, a server that decodes twice reads `%252e` as `.`.
//! So the gateway refuses (`400`, on every route, guarded or public) a
//! target whose path has more than one reading:
//!
//! - a dot segment (`.` or `..`), raw or percent-encoded (`%2e`);
//! - a path parameter (`;`, which covers `..;`), raw or encoded (`%3b`);
//! - an encoded `/` or `\` (`%2f`, `%5c`), a raw `\`, an empty segment
//!   (`//`);
//! - an encoded `%` (`%25`: double encoding, `%252e`), a malformed
//!   percent-encoding (`%zz`), an encoded control or NUL (`%00`–`%1f`,
//!   `%7f`), encoded bytes that are not UTF-8 (overlong forms such as
//!   `%c0%ae`);
//! - an encoded unreserved character (`%61` for `a`: RFC 3986 §2.3 says such
//!   a URI equals the plain one, so a rule written for `/admin` would miss
//!   `/%61dmin`);
//! - a raw byte a URI does not allow (controls, space, `"`, `<`, `>`, `\`,
//!   `^`, `` ` ``, `{`, `|`, `}`, and every byte outside ASCII).
//!
//! A path whose only encodings stand for reserved or non-ASCII characters
//! (`%20`, `%3f`, `%c3%a9`) has one reading and is served on guarded
//! routes, but it is never public: only a *plain* path (unreserved
//! characters, sub-delimiters but `;`, `:`, `@` and `/`) matches a public
//! path.
//!
//! The request line: `CONNECT` is refused (`405`), and so is any target in
//! authority form or asterisk form (`OPTIONS *`, `400`). A target in
//! absolute form is read as RFC 9112 §3.2.2 says: its authority replaces
//! `Host`, and the request goes on in origin form.
//!
//! `Host` (RFC 9112 §3.2): an HTTP/1.1 request without one, with two, or
//! with a value that is not a valid authority (a host of unreserved
//! characters and sub-delimiters, or an IP literal in brackets, and an
//! optional port of at most five digits up to 65535; no user information,
//! no path, no percent-encoding) is refused (`400`). The decision endpoint
//! holds `X-Forwarded-Host` to the same rule ([`valid_authority`]).
//!
//! An HTTP/2 request names its host in `:authority` (which hyper puts in
//! the URI, with `:scheme`: the absolute form above) or in `Host`: one
//! with neither is refused, and so is one with both that differ (compared
//! with case ignored); the authority then becomes `Host`, under the same
//! rule of validity. HTTP/2 has no `Upgrade` (hyper refuses the field) and
//! the gateway does not enable extended `CONNECT`, so a WebSocket is
//! HTTP/1.1 only.
//!
//! The decision endpoint also refuses an original target with a fragment
//! ([`original_target`]): nginx forwards the whole target, so judging the
//! part before `#` would judge something else. The gateway's own proxy
//! reads a target without its fragment (hyper drops it) and forwards what
//! it read.
//!
//! Every refusal is in the configured error format ([`refusal`]).

use std::borrow::Cow;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use tower_layer::Layer;
use tower_service::Service;

use super::config::ErrorStyle;
use super::proxy::gateway_error;
use crate::schemes::{
    ApiError, Failure, auth_token::RegScaleFormat, bearer_pair::CoreFormat,
    cookie_session::InscadaFormat, pascal_case::NxFormat, x_auth_token::WorkflowFormat,
};

use crate::authz::path::is_unreserved;
pub(crate) use crate::authz::path::{AmbiguousPath, PathShape, path_shape};
#[cfg(test)]
use crate::authz::path::{is_plain_path_byte, percent_decode};

/// Whether `b` may stand in a host name: unreserved or a sub-delimiter
/// (RFC 3986 §3.2.2, without percent-encoding).
const fn is_host_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
}

const HOST: u8 = 2;

/// Each byte's classes ([`HOST`]; the path's are in
/// [`crate::authz::path`]): one load per byte.
static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if is_host_byte(b) {
            table[i] |= HOST;
        }
        i += 1;
    }
    table
};

fn has_class(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

/// Whether `path` lies under one of `public_paths`: the path is plain
/// ([`PathShape::Plain`]) and equals an entry, or starts with an entry that
/// ends in `/` (a prefix of whole segments). `/favicon.ico` opens that one
/// path, not `/favicon.ico/x`; `/public/` opens everything below it.
#[cfg(test)]
pub(crate) fn is_public(path: &str, public_paths: &[String]) -> bool {
    !public_paths.is_empty()
        && path_shape(path) == Ok(PathShape::Plain)
        && matches_public(path, public_paths)
}

/// Whether `path`, already known to be plain, equals an entry of
/// `public_paths` or starts with one that ends in `/`.
pub(crate) fn matches_public(path: &str, public_paths: &[String]) -> bool {
    public_paths.iter().any(|public| {
        if public.ends_with('/') {
            path.starts_with(public.as_str())
        } else {
            path == public
        }
    })
}

/// Whether `value` is a valid `Host` (RFC 9112 §3.2, RFC 3986 §3.2): a
/// host of unreserved characters and sub-delimiters, or an IPv6 literal in
/// brackets, then an optional `:` and a port of one to five digits up to
/// 65535. No user information, no path, no percent-encoding, not empty.
pub(crate) fn valid_authority(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&value[1..end]).ok();
        if literal
            .and_then(|literal| literal.parse::<std::net::Ipv6Addr>().ok())
            .is_none()
        {
            return false;
        }
        end + 1
    } else {
        // One pass over a host name, up to its end or its port.
        let mut at = 0;
        while value.get(at).is_some_and(|&b| has_class(b, HOST)) {
            at += 1;
        }
        if at == 0 {
            return false;
        }
        at
    };
    match value.get(host_end) {
        None => true,
        Some(b':') => valid_port(&value[host_end + 1..]),
        Some(_) => false,
    }
}

/// One to five digits, at most 65535.
fn valid_port(port: &[u8]) -> bool {
    (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65_535
}

/// Why a request line or `Host` is refused: the status and a message safe
/// to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadTarget {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

impl BadTarget {
    fn bad_request(message: &'static str) -> Self {
        BadTarget {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl From<AmbiguousPath> for BadTarget {
    fn from(why: AmbiguousPath) -> Self {
        BadTarget::bad_request(why.0)
    }
}

/// Checks the method, target and `Host` of `request`, and puts an
/// absolute-form target in origin form with its authority as `Host`; the
/// shape of its path when it passes.
pub(crate) fn check_request<B>(request: &mut Request<B>) -> Result<PathShape, BadTarget> {
    if request.method() == Method::CONNECT {
        return Err(BadTarget {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "CONNECT is not served: the gateway is not a tunnel",
        });
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(BadTarget::bad_request("the request has two Host fields")),
        (None, None) if request.version() == Version::HTTP_11 => {
            return Err(BadTarget::bad_request(
                "an HTTP/1.1 request needs a Host field",
            ));
        }
        // HTTP/2 (RFC 9113 §8.3.1): `:authority` (the URI's authority) or
        // `Host`, and both the same when both are sent.
        (None, None)
            if request.version() == Version::HTTP_2 && request.uri().authority().is_none() =>
        {
            return Err(BadTarget::bad_request(
                "an HTTP/2 request needs :authority or a Host field",
            ));
        }
        (Some(host), None)
            if request.version() == Version::HTTP_2
                && request.uri().authority().is_some_and(|authority| {
                    !authority
                        .as_str()
                        .as_bytes()
                        .eq_ignore_ascii_case(host.as_bytes())
                }) =>
        {
            return Err(BadTarget::bad_request(
                "the Host field and :authority differ",
            ));
        }
        (Some(host), None) if !valid_authority(host.as_bytes()) => {
            return Err(BadTarget::bad_request(
                "the Host field is not a valid authority",
            ));
        }
        _ => {}
    }
    let uri = request.uri();
    if uri.scheme().is_some() {
        // Absolute form (RFC 9112 §3.2.2): the target's authority is the host.
        let scheme_ok = uri.scheme_str().is_some_and(|scheme| {
            scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
        });
        let Some(authority) = uri.authority().filter(|_| scheme_ok) else {
            return Err(BadTarget::bad_request(
                "an absolute target must be an http or https URI with a host",
            ));
        };
        if !valid_authority(authority.as_str().as_bytes()) {
            return Err(BadTarget::bad_request(
                "the target's authority is not a valid host and port",
            ));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| BadTarget::bad_request("the target's authority is not a valid host"))?;
        let shape = path_shape(uri.path())?;
        let origin_form = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()));
        request.headers_mut().insert(header::HOST, host);
        *request.uri_mut() = origin_form;
        return Ok(shape);
    }
    if uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err(BadTarget::bad_request(
            "the target is not a path (authority or asterisk form)",
        ));
    }
    Ok(path_shape(uri.path())?)
}

/// The original target a forward-auth proxy describes (`X-Original-URI`,
/// `X-Forwarded-Uri`) with its method: a path in origin form (whose
/// reading [`check_request`] checks next, as for the proxy), no fragment (nginx forwards the whole target,
/// so judging the part before `#` would judge something else), and not the
/// target of a `CONNECT`.
pub(crate) fn original_target(method: &Method, value: HeaderValue) -> Result<Uri, &'static str> {
    if method == Method::CONNECT {
        return Err("the original method CONNECT is not served");
    }
    if value.as_bytes().contains(&b'#') {
        return Err("the original target has a fragment (#)");
    }
    let uri = Uri::from_maybe_shared(value).map_err(|_| "the original target is malformed")?;
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return Err("the original target is not a path");
    }
    // Its path's shape is checked once, by the guard's dispatch
    // (`check_request`), as the proxy's is.
    Ok(uri)
}

/// A gateway refusal in the configured error format: the format's body for
/// `status` and `message`, `Cache-Control: no-store`.
pub(crate) fn refusal(
    style: ErrorStyle,
    status: StatusCode,
    code: &'static str,
    message: &'static str,
) -> Response {
    let failure = || Failure::new(status, Cow::Borrowed(message));
    let mut response = match style {
        ErrorStyle::Json => return gateway_error(status, code, message),
        ErrorStyle::Empty => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            response
        }
        ErrorStyle::Inscada => ApiError::<InscadaFormat>::from(failure()).into_response(),
        ErrorStyle::Core => ApiError::<CoreFormat>::from(failure()).into_response(),
        ErrorStyle::Nx => ApiError::<NxFormat>::from(failure()).into_response(),
        ErrorStyle::RegScale => ApiError::<RegScaleFormat>::from(failure()).into_response(),
        ErrorStyle::Workflow => ApiError::<WorkflowFormat>::from(failure()).into_response(),
        ErrorStyle::Grpc => return crate::reject::grpc_refusal(status, message),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a request [`check_request`] refused, in the configured
/// error format (a `405` names the methods served in `Allow`), logged as
/// the client's fault.
pub(crate) fn refused(style: ErrorStyle, why: BadTarget) -> Response {
    tracing::info!(
        reason = why.message,
        status = why.status.as_u16(),
        "refused a request line or Host"
    );
    if why.status == StatusCode::METHOD_NOT_ALLOWED {
        let mut response = refusal(style, why.status, "method_not_allowed", why.message);
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return response;
    }
    refusal(style, why.status, "invalid_request", why.message)
}

/// Refuses, before routing, a request whose method, target or `Host` the
/// gateway does not serve (see the [module docs](self)), in the configured
/// error format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValidTargetLayer {
    style: ErrorStyle,
}

impl ValidTargetLayer {
    pub(crate) fn new(style: ErrorStyle) -> Self {
        ValidTargetLayer { style }
    }
}

impl<S> Layer<S> for ValidTargetLayer {
    type Service = ValidTarget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidTarget {
            inner,
            style: self.style,
        }
    }
}

/// The service of [`ValidTargetLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ValidTarget<S> {
    inner: S,
    style: ErrorStyle,
}

impl<S> Service<Request<Body>> for ValidTarget<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match check_request(&mut request) {
            Ok(_) => ResponseFuture::Inner {
                future: self.inner.call(request),
            },
            Err(why) => {
                let response = refused(self.style, why);
                ResponseFuture::Refused {
                    response: Some(response),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ValidTarget`]: the inner service's, or a refusal.
    #[project = ResponseProj]
    pub(crate) enum ResponseFuture<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

impl<F, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Inner { future } => future.poll(cx),
            ResponseProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_encoded_and_ambiguous_paths() {
        for plain in [
            "/",
            "/public/a.css",
            "/a/b.c/d~e_f-g",
            "/x:y@z!$&'()*+,=",
            "/a/",
        ] {
            assert_eq!(path_shape(plain), Ok(PathShape::Plain), "{plain}");
        }
        for encoded in ["/a%20b", "/caf%C3%A9", "/q%3Fx", "/%40"] {
            assert_eq!(path_shape(encoded), Ok(PathShape::Encoded), "{encoded}");
        }
        for ambiguous in [
            "/public/..;/app",
            "/public/x;jsessionid=1",
            "/public/%3b/app",
            "/public/../app",
            "/public/./app",
            "/public/..",
            "/public/%2e%2e/app",
            "/public/%2E./app",
            "/public/%252e%252e/app",
            "/public/..%2fapp",
            "/public/..%5Capp",
            "/public/..\\app",
            "/public//app",
            "//public/app",
            "/public/%00",
            "/public/%0a",
            "/public/%7F",
            "/public/%61pp",
            "/public/%zz",
            "/public/%4",
            "/public/%c0%ae%c0%ae/app",
            "/public/%ff",
            "/public/é",
            "/public/a b",
            "/public/a|b",
            "public/x",
            "",
        ] {
            assert!(path_shape(ambiguous).is_err(), "{ambiguous:?}");
        }
    }

    #[test]
    fn public_paths_are_whole_segment_prefixes_or_exact_paths() {
        let public = vec!["/public/".to_owned(), "/favicon.ico".to_owned()];
        assert!(is_public("/public/a.css", &public));
        assert!(is_public("/public/", &public));
        assert!(is_public("/favicon.ico", &public));
        assert!(!is_public("/favicon.ico/x", &public));
        assert!(!is_public("/favicon.icox", &public));
        assert!(!is_public("/public", &public));
        assert!(!is_public("/publicx/a", &public));
        assert!(!is_public("/public/../admin", &public));
        assert!(!is_public("/public/..;/admin", &public));
        assert!(!is_public("/public/%2e%2e/admin", &public));
        assert!(!is_public("/public/..%2fadmin", &public));
        assert!(!is_public("/public/a%20b", &public));
        assert!(!is_public("/api", &public));
        assert!(!is_public("/api", &[]));
    }

    #[test]
    fn hosts() {
        for valid in [
            "app.example",
            "app.example:8080",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:80",
            "a_b-c~d",
        ] {
            assert!(valid_authority(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "",
            "user@app.example",
            "user:pw@app.example",
            "app.example/x",
            "app.example:",
            "app.example:65536",
            "app.example:123456",
            "app.example:x",
            "app.example:80:80",
            "[::1",
            "[::1]x",
            "[nothost]",
            "app example",
            "app%2eexample",
            ":80",
            "app.example?x",
            "app.example#x",
        ] {
            assert!(!valid_authority(invalid.as_bytes()), "{invalid:?}");
        }
    }

    fn request(raw_target: &str, hosts: &[&'static str], version: Version) -> Request<()> {
        let mut request = Request::builder()
            .uri(raw_target)
            .version(version)
            .body(())
            .unwrap();
        for host in hosts {
            request
                .headers_mut()
                .append(header::HOST, HeaderValue::from_static(host));
        }
        request
    }

    #[test]
    fn request_lines_and_hosts() {
        let status =
            |mut request: Request<()>| check_request(&mut request).err().map(|why| why.status);
        assert_eq!(status(request("/app", &["a"], Version::HTTP_11)), None);
        assert_eq!(status(request("/app", &[], Version::HTTP_10)), None);
        let bad = Some(StatusCode::BAD_REQUEST);
        assert_eq!(status(request("/app", &[], Version::HTTP_11)), bad);
        assert_eq!(status(request("/app", &["a", "a"], Version::HTTP_11)), bad);
        assert_eq!(status(request("/app", &["u@a"], Version::HTTP_11)), bad);
        assert_eq!(status(request("*", &["a"], Version::HTTP_11)), bad);
        assert_eq!(status(request("a:80", &["a"], Version::HTTP_11)), bad);
        assert_eq!(status(request("/a/../b", &["a"], Version::HTTP_11)), bad);
        let mut connect = request("a:443", &["a:443"], Version::HTTP_11);
        *connect.method_mut() = Method::CONNECT;
        assert_eq!(status(connect), Some(StatusCode::METHOD_NOT_ALLOWED));

        let mut absolute = request("http://b.example:81/x?y", &["a"], Version::HTTP_11);
        check_request(&mut absolute).unwrap();
        assert_eq!(absolute.uri(), "/x?y");
        assert_eq!(absolute.headers()[header::HOST], "b.example:81");
        assert_eq!(
            status(request("http://u@b/x", &["a"], Version::HTTP_11)),
            bad
        );
        assert_eq!(status(request("ftp://b/x", &["a"], Version::HTTP_11)), bad);
        assert_eq!(
            status(request("http://b/%2e%2e/x", &["a"], Version::HTTP_11)),
            bad
        );
    }

    #[test]
    fn http2_authority_and_host_agree_or_are_refused() {
        let status =
            |mut request: Request<()>| check_request(&mut request).err().map(|why| why.status);
        let bad = Some(StatusCode::BAD_REQUEST);
        // :authority alone becomes Host.
        let mut alone = request("https://App.example:8443/x", &[], Version::HTTP_2);
        check_request(&mut alone).unwrap();
        assert_eq!(alone.uri(), "/x");
        assert_eq!(alone.headers()[header::HOST], "App.example:8443");
        // Host alone is checked as for HTTP/1.1.
        assert_eq!(
            status(request("/x", &["app.example"], Version::HTTP_2)),
            None
        );
        assert_eq!(status(request("/x", &["u@app"], Version::HTTP_2)), bad);
        // Neither: refused.
        assert_eq!(status(request("/x", &[], Version::HTTP_2)), bad);
        // Both: the same (case ignored) or refused.
        assert_eq!(
            status(request(
                "https://app.example/x",
                &["APP.example"],
                Version::HTTP_2
            )),
            None
        );
        assert_eq!(
            status(request(
                "https://app.example/x",
                &["evil.example"],
                Version::HTTP_2
            )),
            bad
        );
        assert_eq!(
            status(request(
                "https://app.example/x",
                &["app.example:443"],
                Version::HTTP_2
            )),
            bad
        );
        assert_eq!(
            status(request(
                "https://app.example/a/%2e%2e/b",
                &[],
                Version::HTTP_2
            )),
            bad
        );
    }

    proptest! {
        /// Whatever the path, a public one is plain: no dot segment, no `;`,
        /// no `%`, no backslash, no empty segment, nothing outside the
        /// plain characters; and the matcher never panics.
        #[test]
        fn a_public_path_is_always_plain(path in "/[a-zA-Z0-9./;%\\\\:@!$&'()*+,=~_é -]{0,24}") {
            let public = vec!["/".to_owned()];
            if is_public(&path, &public) {
                prop_assert!(!path.contains(';') && !path.contains('%') && !path.contains('\\'));
                prop_assert!(!path.contains("//"));
                prop_assert!(path.split('/').skip(1).all(|s| s != "." && s != ".."));
                prop_assert!(path.bytes().all(|b| b == b'/' || is_plain_path_byte(b)));
            }
        }

        /// Decoding a public path changes nothing: it has one reading.
        #[test]
        fn a_public_path_reads_the_same_decoded(path in "/[a-z.%0-9A-F/;]{0,16}") {
            if path_shape(&path) == Ok(PathShape::Plain) {
                prop_assert_eq!(percent_decode(path.as_bytes()), path.as_bytes().to_vec());
            }
        }

        /// A valid authority never holds user information or a path, and
        /// the check never panics.
        #[test]
        fn an_authority_never_holds_userinfo_or_a_path(value in proptest::collection::vec(any::<u8>(), 0..24)) {
            if valid_authority(&value) {
                prop_assert!(!value.contains(&b'@') && !value.contains(&b'/'));
                prop_assert!(!value.is_empty());
            }
        }
    }
}
