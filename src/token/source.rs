//! Where a token is found: `Authorization: Bearer`, a named cookie, or a named
//! header, looked up in a configured order.
//!
//! A token in the query string is never read (RFC 6750 §2.3 and RFC 8725
//! advise against it: URLs end up in logs and `Referer` headers).

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName};

use crate::error::ConfigError;
use crate::reject::AuthRejection;
use crate::token::claims::FoundIn;

/// The default cap on the length of a token value, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// One place a token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`; the scheme is matched
    /// case-insensitively (RFC 7235 §2.1).
    Bearer,
    /// The cookie of this name, such as `ins_access_token`.
    Cookie(String),
    /// The header of this name, such as `X-Auth-Token`.
    Header(HeaderName),
}

impl TokenSource {
    /// `Authorization: Bearer`.
    pub fn bearer() -> Self {
        TokenSource::Bearer
    }

    /// The cookie `name`. Panics on a name that is not an RFC 6265 token; use
    /// [`try_cookie`](Self::try_cookie) for names that come from configuration.
    pub fn cookie(name: &'static str) -> Self {
        match Self::try_cookie(name) {
            Ok(source) => source,
            Err(err) => panic!("{err}"),
        }
    }

    /// The cookie `name`, checked.
    pub fn try_cookie(name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if valid {
            Ok(TokenSource::Cookie(name))
        } else {
            Err(ConfigError::InvalidName(name))
        }
    }

    /// The header `name`, such as `TokenSource::header(HeaderName::from_static("x-auth-token"))`.
    pub fn header(name: HeaderName) -> Self {
        TokenSource::Header(name)
    }

    /// The header `name`, parsed from text.
    pub fn try_header(name: &str) -> Result<Self, ConfigError> {
        HeaderName::from_bytes(name.as_bytes())
            .map(TokenSource::Header)
            .map_err(|_| ConfigError::InvalidName(name.to_owned()))
    }

    fn found_in(&self) -> FoundIn {
        match self {
            TokenSource::Bearer => FoundIn::Bearer,
            TokenSource::Cookie(_) => FoundIn::Cookie,
            TokenSource::Header(_) => FoundIn::Header,
        }
    }
}

/// What to do when a request carries credentials in more than one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultipleCredentials {
    /// Refuse the request with `400 invalid_request` when two sources hold
    /// different tokens (RFC 6750 §2: a client must not use more than one
    /// method). The same token in two places is accepted.
    #[default]
    Reject,
    /// Take the token of the first source, in configured order, that has one.
    TakeFirst,
}

/// An ordered list of [`TokenSource`]s with the rules for reading them.
#[derive(Debug, Clone)]
pub struct TokenSources {
    sources: Vec<TokenSource>,
    multiple: MultipleCredentials,
    max_len: usize,
    /// Every cookie name is one a pair can have (no `=`, no space at either
    /// end): checked once here rather than on every request.
    plain_cookie_names: bool,
}

/// A token found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundToken<'a> {
    /// The token text.
    pub token: &'a str,
    /// Which kind of source held it.
    pub found_in: FoundIn,
}

impl TokenSources {
    /// Sources looked up in the given order.
    pub fn new(sources: impl IntoIterator<Item = TokenSource>) -> Result<Self, ConfigError> {
        let sources: Vec<TokenSource> = sources.into_iter().collect();
        if sources.is_empty() {
            return Err(ConfigError::NoTokenSource);
        }
        Ok(TokenSources {
            plain_cookie_names: plain_cookie_names(&sources),
            sources,
            multiple: MultipleCredentials::Reject,
            max_len: DEFAULT_MAX_TOKEN_LEN,
        })
    }

    /// Only `Authorization: Bearer`.
    pub fn bearer() -> Self {
        Self::single(TokenSource::Bearer)
    }

    /// Only `source`.
    pub fn single(source: TokenSource) -> Self {
        let sources = vec![source];
        TokenSources {
            plain_cookie_names: plain_cookie_names(&sources),
            sources,
            multiple: MultipleCredentials::Reject,
            max_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// What to do with credentials in more than one source.
    pub fn on_multiple(mut self, policy: MultipleCredentials) -> Self {
        self.multiple = policy;
        self
    }

    /// The cap on a token value's length, checked before any decoding
    /// (default [`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn max_token_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The sources, in order.
    pub fn sources(&self) -> &[TokenSource] {
        &self.sources
    }

    /// The configured cap on a token's length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Finds the request's token.
    ///
    /// `Ok(None)` when no source holds one; `Err` for a malformed request: a
    /// repeated `Authorization` or token header, a repeated cookie, two
    /// different credentials (unless configured to take the first), a value
    /// over the cap, or a bearer header without a token; and `401
    /// invalid_token` for a token that is not printable ASCII.
    pub fn find<'a>(
        &self,
        headers: &'a HeaderMap,
    ) -> Result<Option<FoundToken<'a>>, AuthRejection> {
        let Some((token, found_in)) = self.find_bytes(headers)? else {
            return Ok(None);
        };
        Ok(Some(FoundToken {
            token: token_text(token)?,
            found_in,
        }))
    }

    /// [`find`](Self::find) before the bytes are checked and become text:
    /// a cache of verified tokens can be consulted with them as they are,
    /// and the verifier checks every byte itself.
    pub(crate) fn find_bytes<'a>(
        &self,
        headers: &'a HeaderMap,
    ) -> Result<Option<(&'a [u8], FoundIn)>, AuthRejection> {
        let mut found: Option<(&'a [u8], FoundIn)> = None;
        for source in &self.sources {
            let Some(token) = self.read(source, headers)? else {
                continue;
            };
            match found {
                None => {
                    found = Some((token, source.found_in()));
                    if self.multiple == MultipleCredentials::TakeFirst {
                        break;
                    }
                }
                Some((first, _)) if first != token => {
                    return Err(AuthRejection::InvalidRequest(
                        "the request carries more than one credential",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(found)
    }

    fn read<'a>(
        &self,
        source: &TokenSource,
        headers: &'a HeaderMap,
    ) -> Result<Option<&'a [u8]>, AuthRejection> {
        let token = match source {
            TokenSource::Bearer => read_bearer(headers, self.max_len)?,
            TokenSource::Header(name) => read_single_header(headers, name, self.max_len)?,
            TokenSource::Cookie(name) if self.plain_cookie_names || plain_cookie_name(name) => {
                read_cookie(headers, name, self.max_len)?
            }
            // A name with `=` or with spaces at either end names no cookie:
            // the name of a pair is what comes before its first `=`, trimmed.
            TokenSource::Cookie(_) => None,
        };
        Ok(token)
    }
}

const TOO_LONG: AuthRejection = AuthRejection::InvalidRequest("the credential is too long");

fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a http::HeaderValue>, AuthRejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthRejection::InvalidRequest(
            "a credential header is repeated",
        ));
    }
    Ok(first)
}

fn read_bearer(headers: &HeaderMap, max_len: usize) -> Result<Option<&[u8]>, AuthRejection> {
    let Some(value) = single(headers, &AUTHORIZATION)? else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    // "Bearer" + space + token: the cap applies to the token part.
    if bytes.len() > max_len + 7 {
        return Err(TOO_LONG);
    }
    let Some(space) = bytes.iter().position(|&b| b == b' ') else {
        return if bytes.eq_ignore_ascii_case(b"bearer") {
            Err(AuthRejection::InvalidRequest("the bearer token is empty"))
        } else {
            Ok(None)
        };
    };
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, Digest, …) is not ours to judge.
        return Ok(None);
    }
    let token = trim_ascii(&bytes[space + 1..]);
    if token.is_empty() {
        return Err(AuthRejection::InvalidRequest("the bearer token is empty"));
    }
    capped(token, max_len).map(Some)
}

fn read_single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max_len: usize,
) -> Result<Option<&'a [u8]>, AuthRejection> {
    let Some(value) = single(headers, name)? else {
        return Ok(None);
    };
    let token = trim_ascii(value.as_bytes());
    if token.is_empty() {
        return Ok(None);
    }
    capped(token, max_len).map(Some)
}

/// The value of the cookie `name`, scanned by hand rather than with the
/// `cookie` crate (which builds every `Set-Cookie` of this crate): this runs
/// on every request, and on a browser's four-cookie header the scan finds
/// the token in a fraction of the time `cookie::Cookie::split_parse` takes
/// (`cargo bench --bench validation -- cookie_header`). The crate parses
/// every cookie into a struct and wants the header as UTF-8; the scan only
/// splits at `;` and compares one name where each pair starts.
fn read_cookie<'a>(
    headers: &'a HeaderMap,
    name: &str,
    max_len: usize,
) -> Result<Option<&'a [u8]>, AuthRejection> {
    let name = name.as_bytes();
    let mut found: Option<&'a [u8]> = None;
    for header in headers.get_all(COOKIE) {
        let mut rest = header.as_bytes();
        loop {
            let (pair, next) = match memchr::memchr(b';', rest) {
                Some(semicolon) => (&rest[..semicolon], Some(&rest[semicolon + 1..])),
                None => (rest, None),
            };
            if let Some(value) = cookie_value(pair, name) {
                if found.is_some() {
                    return Err(AuthRejection::InvalidRequest(
                        "the credential cookie is repeated",
                    ));
                }
                found = Some(value);
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    match found {
        None => Ok(None),
        Some([]) => Ok(None),
        Some(value) => capped(value, max_len).map(Some),
    }
}

/// Whether a pair of a `Cookie` header can have this name: names from
/// [`TokenSource::try_cookie`] always can.
fn plain_cookie_name(name: &str) -> bool {
    !name.contains('=') && name.trim_ascii().len() == name.len()
}

fn plain_cookie_names(sources: &[TokenSource]) -> bool {
    sources.iter().all(|source| match source {
        TokenSource::Cookie(name) => plain_cookie_name(name),
        _ => true,
    })
}

/// The value of one `name=value` pair of a `Cookie` header (spaces allowed
/// around the name, the `=` and the value; a quoted value unquoted) when the
/// pair's name is `name`, which holds no `=`.
fn cookie_value<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let after_name = pair.trim_ascii_start().strip_prefix(name)?;
    let mut value = after_name
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii();
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    Some(value)
}

fn capped(token: &[u8], max_len: usize) -> Result<&[u8], AuthRejection> {
    if token.len() > max_len {
        return Err(TOO_LONG);
    }
    Ok(token)
}

/// The token as text, when it is printable ASCII without spaces: keeping
/// anything else out here keeps it out of every later step (and the
/// verifier refuses whatever is not base64url and dots).
fn token_text(token: &[u8]) -> Result<&str, AuthRejection> {
    // `fold`, not `all`: without the early exit the check runs on whole
    // vectors.
    if !token.iter().fold(true, |ok, b| ok & b.is_ascii_graphic()) {
        return Err(AuthRejection::InvalidToken(
            crate::error::TokenError::Malformed,
        ));
    }
    // Printable ASCII is UTF-8: this cannot fail.
    std::str::from_utf8(token)
        .map_err(|_| AuthRejection::InvalidToken(crate::error::TokenError::Malformed))
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let sources = TokenSources::bearer();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let map = headers(&[("authorization", &format!("{scheme} abc.def.ghi"))]);
            assert_eq!(sources.find(&map).unwrap().unwrap().token, "abc.def.ghi");
        }
    }

    #[test]
    fn other_schemes_are_not_bearer_tokens() {
        let map = headers(&[("authorization", "Basic YWRtaW46YWRtaW4=")]);
        assert_eq!(TokenSources::bearer().find(&map).unwrap(), None);
    }

    #[test]
    fn cookie_is_found_among_others_and_across_headers() {
        let sources = TokenSources::new([TokenSource::cookie("ins_access_token")]).unwrap();
        let map = headers(&[
            ("cookie", "a=1; b=2"),
            ("cookie", "ins_access_token=x.y.z; c=3"),
        ]);
        assert_eq!(sources.find(&map).unwrap().unwrap().token, "x.y.z");
        let map = headers(&[("cookie", "xins_access_token=x.y.z")]);
        assert_eq!(sources.find(&map).unwrap(), None);
    }

    /// The scan as first written: split at `;`, trim, split at the first
    /// `=`, compare the trimmed name.
    fn reference_read_cookie<'a>(
        headers: &'a HeaderMap,
        name: &str,
        max_len: usize,
    ) -> Result<Option<&'a [u8]>, AuthRejection> {
        let mut found: Option<&'a [u8]> = None;
        for header in headers.get_all(COOKIE) {
            for pair in header.as_bytes().split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if pair[..eq].trim_ascii() != name.as_bytes() {
                    continue;
                }
                if found.is_some() {
                    return Err(AuthRejection::InvalidRequest(
                        "the credential cookie is repeated",
                    ));
                }
                let mut value = pair[eq + 1..].trim_ascii();
                if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                    value = &value[1..value.len() - 1];
                }
                found = Some(value);
            }
        }
        match found {
            None | Some([]) => Ok(None),
            Some(value) => capped(value, max_len).map(Some),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_cookie_scan_answers_as_the_plain_split(
            values in proptest::collection::vec("(t|tok|x|=|;| |\t|\"|a\\.b|tok=|t =)*", 0..3),
            name in "(t|tok|x|t=|=| t|t |)",
        ) {
            let mut map = HeaderMap::new();
            for value in &values {
                map.append(COOKIE, HeaderValue::from_str(value).unwrap());
            }
            let sources = TokenSources::single(TokenSource::Cookie(name.clone())).max_token_len(6);
            proptest::prop_assert_eq!(
                sources.find_bytes(&map).map(|found| found.map(|(token, _)| token)),
                reference_read_cookie(&map, &name, 6)
            );
        }
    }

    #[test]
    fn quoted_cookie_value_is_unquoted() {
        let sources = TokenSources::new([TokenSource::cookie("t")]).unwrap();
        let map = headers(&[("cookie", "t=\"x.y.z\"")]);
        assert_eq!(sources.find(&map).unwrap().unwrap().token, "x.y.z");
    }
}
