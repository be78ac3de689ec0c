//! Who a request is, as headers: the claims the gateway reads from a
//! verified token, the identity headers it sends the upstream (or answers a
//! forward-auth proxy with), and the removal of every copy a client sent.
//!
//! A field is an identity header when its name equals a configured one
//! once ASCII case is ignored and `_` is read as `-` ([`identity_field`]):
//! CGI, WSGI and Rack upstreams merge `X_Auth_Roles` and `X-Auth-Roles`
//! into one `HTTP_X_AUTH_ROLES`, so a client's `X_Auth_Roles: admin` is a
//! forged identity like any other.
//!
//! The header values are worked out once per token, when its claims are
//! read ([`GatewayClaims`]), and put under their header names the first
//! time they are stated: a token served again from the verifier's cache
//! costs a copy of that small header map and the space, not a formatting
//! pass or a hash of every name.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Request};
use serde::Deserialize;

use crate::ip::ClientIp;
use crate::tenant::{HasSpaces, Space};
use crate::token::{Anonymous, VerifiedToken};

use super::config::IdentityHeaders;

/// The claims the gateway reads from any token: `sub`, `spaces`, `roles`,
/// and the whole claims set for the optional claims header.
#[derive(Debug, Clone)]
pub struct GatewayClaims {
    spaces: Vec<String>,
    values: Arc<IdentityValues>,
}

/// The identity header values of one token.
#[derive(Debug)]
struct IdentityValues {
    subject: Result<HeaderValue, &'static str>,
    roles: Result<HeaderValue, &'static str>,
    spaces: Result<HeaderValue, &'static str>,
    claims: Result<HeaderValue, &'static str>,
    /// The values under the names they were first stated with (a gateway
    /// has one set of names), with the space's header already in place.
    stated: OnceLock<(IdentityHeaders, Result<HeaderMap, &'static str>)>,
}

impl IdentityValues {
    /// The token's identity headers under `names`, the space's header
    /// holding a placeholder for the request's space.
    fn headers(&self, names: &IdentityHeaders) -> Result<HeaderMap, &'static str> {
        self.stated(names).map(Cow::into_owned)
    }

    /// [`headers`](Self::headers), borrowed when `names` are the names
    /// first stated.
    fn stated(&self, names: &IdentityHeaders) -> Result<Cow<'_, HeaderMap>, &'static str> {
        let (stated_names, stated) = self
            .stated
            .get_or_init(|| (names.clone(), self.build(names)));
        if stated_names == names {
            stated.as_ref().map(Cow::Borrowed).map_err(|err| *err)
        } else {
            self.build(names).map(Cow::Owned)
        }
    }

    fn build(&self, names: &IdentityHeaders) -> Result<HeaderMap, &'static str> {
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(names.subject.clone(), self.subject.clone()?);
        headers.insert(names.roles.clone(), self.roles.clone()?);
        headers.insert(names.spaces.clone(), self.spaces.clone()?);
        headers.insert(names.space.clone(), HeaderValue::from_static(""));
        if let Some(name) = &names.claims {
            headers.insert(name.clone(), self.claims.clone()?);
        }
        Ok(headers)
    }
}

impl HasSpaces for GatewayClaims {
    fn spaces(&self) -> &[String] {
        &self.spaces
    }
}

impl<'de> Deserialize<'de> for GatewayClaims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let claims = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let strings = |name: &str| -> Result<Vec<String>, D::Error> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| D::Error::custom(format!("`{name}` holds a non-string")))
                    })
                    .collect(),
                Some(_) => Err(D::Error::custom(format!(
                    "`{name}` is not a list of strings"
                ))),
            }
        };
        let spaces = strings("spaces")?;
        let roles = strings("roles")?;
        let subject = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) => text_value(sub),
            None => Err("the token has no subject"),
            Some(_) => Err("the token's subject is not a string"),
        };
        let json = serde_json::Value::Object(claims).to_string();
        let values = IdentityValues {
            subject,
            roles: list_value(&roles),
            spaces: list_value(&spaces),
            claims: text_value(&ascii_json(&json)),
            stated: OnceLock::new(),
        };
        Ok(GatewayClaims {
            spaces,
            values: Arc::new(values),
        })
    }
}

/// A header value for `text`: refused when it holds a control character (a
/// header cannot carry it, and it must not split one).
fn text_value(text: &str) -> Result<HeaderValue, &'static str> {
    HeaderValue::from_str(text)
        .or_else(|_| HeaderValue::from_bytes(text.as_bytes()))
        .map_err(|_| "an identity value holds a character a header cannot carry")
}

/// `a,b,c`: refused when an item holds a comma (it would read as two items
/// upstream, granting a role or space the token never named).
fn list_value(items: &[String]) -> Result<HeaderValue, &'static str> {
    if items.iter().any(|item| item.contains(',')) {
        return Err("a role or space holds a comma, which the comma-separated header cannot carry");
    }
    text_value(&items.join(","))
}

/// `json` with every non-ASCII character escaped as `\uXXXX`, so the claims
/// travel in a header as plain ASCII JSON.
fn ascii_json(json: &str) -> String {
    if json.is_ascii() {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Why the identity of a request cannot be stated: a check did not run,
/// or the token holds a value no header can carry. The gateway answers
/// `500` and says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdentityError(pub(crate) &'static str);

/// The identity of a request the guard let through, as headers named by
/// `names`. `authenticated` says whether the route required a token: then
/// every check must have left its mark (the client address, the verified
/// token of [`GatewayClaims`], the space); otherwise only the address must
/// be there and the identity headers are sent empty.
pub(crate) fn identity_headers<B>(
    request: &Request<B>,
    names: &IdentityHeaders,
    authenticated: bool,
) -> Result<HeaderMap, IdentityError> {
    let Some((values, space)) = checked(request.extensions(), authenticated)? else {
        let mut headers = HeaderMap::with_capacity(5);
        let empty = HeaderValue::from_static("");
        for name in names.names() {
            headers.insert(name.clone(), empty.clone());
        }
        return Ok(headers);
    };
    let mut headers = values.headers(names).map_err(IdentityError)?;
    // Replaces the placeholder: the map does not grow.
    headers.insert(names.space.clone(), space);
    Ok(headers)
}

/// States the identity on `headers`, a request's on its way upstream, as
/// [`identity_headers`] works it out: on a route that required a token,
/// every identity header is set to the token's value, which replaces
/// whatever a client sent under that name; on any other route, every copy
/// a client sent is removed, under any spelling ([`strip_identity`]).
/// Nothing is changed when a check did not run.
pub(crate) fn state_identity(
    extensions: &Extensions,
    names: &IdentityHeaders,
    authenticated: bool,
    headers: &mut HeaderMap,
) -> Result<(), IdentityError> {
    let Some((values, space)) = checked(extensions, authenticated)? else {
        strip_identity(headers, names);
        return Ok(());
    };
    let stated = values.stated(names).map_err(IdentityError)?;
    for (name, value) in stated.iter() {
        if *name != names.space {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(names.space.clone(), space);
    Ok(())
}

/// The token's identity values and the space's header value once every
/// check has left its mark; `None` on a route that required no token, once
/// the address filter ran.
fn checked(
    extensions: &Extensions,
    authenticated: bool,
) -> Result<Option<(&IdentityValues, HeaderValue)>, IdentityError> {
    if extensions.get::<ClientIp>().is_none() {
        return Err(IdentityError("the address filter did not run"));
    }
    if !authenticated {
        return Ok(None);
    }
    let token =
        extensions
            .get::<VerifiedToken>()
            .ok_or(if extensions.get::<Anonymous>().is_some() {
                IdentityError("an anonymous request reached an authenticated route")
            } else {
                IdentityError("the token check did not run")
            })?;
    let claims = token
        .claims::<GatewayClaims>()
        .ok_or(IdentityError("the token was read for another claims type"))?;
    let Space(space) = extensions
        .get::<Space>()
        .ok_or(IdentityError("the space check did not run"))?;
    let space = HeaderValue::from_str(space)
        .map_err(|_| IdentityError("the space is not a header value"))?;
    Ok(Some((&claims.values, space)))
}

/// Removes every header named in `names`, under any spelling
/// ([`identity_field`]): copies a client sent must never reach the upstream.
pub(crate) fn strip_identity(headers: &mut HeaderMap, names: &IdentityHeaders) {
    remove_fields(headers, |present| identity_field(present, names).is_some());
}

/// The identity header `name` stands for: the one of `names` it equals once
/// ASCII case is ignored and `_` read as `-` ([`same_field`]). CGI, WSGI
/// and Rack upstreams merge `X_Auth_Roles` and `X-Auth-Roles` into one
/// `HTTP_X_AUTH_ROLES`, so every such spelling is the identity header.
pub(crate) fn identity_field<'a>(
    name: &HeaderName,
    names: &'a IdentityHeaders,
) -> Option<&'a HeaderName> {
    let name = name.as_str().as_bytes();
    // Straight-line, lengths first: a name of another length (nearly every
    // field a request carries) costs a comparison per identity header.
    let hit = |identity: &'a HeaderName| {
        let identity_name = identity.as_str().as_bytes();
        (identity_name.len() == name.len() && same_field(name, identity_name)).then_some(identity)
    };
    hit(&names.subject)
        .or_else(|| hit(&names.roles))
        .or_else(|| hit(&names.spaces))
        .or_else(|| hit(&names.space))
        .or_else(|| names.claims.as_ref().and_then(hit))
}

/// Whether the field names `a` and `b` are one field to an upstream that
/// ignores case and reads `_` as `-`. Compares byte by byte, without
/// allocating; names of different lengths cost one comparison.
pub(crate) fn same_field(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| fold(*a) == fold(*b))
}

/// Whether the field name `name` starts with `prefix`, read as
/// [`same_field`] reads names.
pub(crate) fn field_starts_with(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && same_field(&name[..prefix.len()], prefix)
}

/// A byte of a field name as [`same_field`] compares it.
fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// Removes every field whose name `doomed` picks, all its values. One pass
/// over the names the request carries, then a removal for each one picked:
/// cheaper than a hash lookup for each name that may be removed, when most
/// of them are absent, as they are in nearly every request.
pub(crate) fn remove_fields(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let picked: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name))
        .cloned()
        .collect();
    for name in picked {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Result<GatewayClaims, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn values_are_worked_out_once_per_token() {
        let claims = claims(serde_json::json!({
            "sub": "admin", "spaces": ["default_space", "production"], "roles": ["admin"], "n": "é"
        }))
        .unwrap();
        assert_eq!(claims.spaces(), ["default_space", "production"]);
        assert_eq!(claims.values.subject.as_ref().unwrap(), "admin");
        assert_eq!(
            claims.values.spaces.as_ref().unwrap(),
            "default_space,production"
        );
        assert_eq!(claims.values.roles.as_ref().unwrap(), "admin");
        let json = claims.values.claims.as_ref().unwrap().to_str().unwrap();
        assert!(json.contains(r#""n":"\u00e9""#), "{json}");
    }

    #[test]
    fn a_request_whose_checks_did_not_run_is_left_as_it_came() {
        let names = IdentityHeaders {
            subject: HeaderName::from_static("x-auth-subject"),
            roles: HeaderName::from_static("x-auth-roles"),
            spaces: HeaderName::from_static("x-auth-spaces"),
            space: HeaderName::from_static("x-space"),
            claims: None,
        };
        let mut forged = HeaderMap::new();
        forged.insert("x-auth-subject", HeaderValue::from_static("root"));
        let mut extensions = Extensions::new();
        for authenticated in [false, true] {
            let mut headers = forged.clone();
            let err = state_identity(&extensions, &names, authenticated, &mut headers);
            assert_eq!(err, Err(IdentityError("the address filter did not run")));
            assert_eq!(headers, forged);
        }
        extensions.insert(ClientIp("192.0.2.7".parse().unwrap()));
        let mut headers = forged.clone();
        let err = state_identity(&extensions, &names, true, &mut headers);
        assert_eq!(err, Err(IdentityError("the token check did not run")));
        assert_eq!(headers, forged);
        // A route that needs no token: the forged copy goes, nothing is added.
        state_identity(&extensions, &names, false, &mut headers).unwrap();
        assert!(headers.is_empty());
    }

    #[test]
    fn headers_are_stated_under_the_names_asked_for() {
        let claims = claims(serde_json::json!({
            "sub": "admin", "spaces": ["default_space"], "roles": ["admin", "ops"]
        }))
        .unwrap();
        let names = |subject: &'static str, claims: Option<&'static str>| IdentityHeaders {
            subject: HeaderName::from_static(subject),
            roles: HeaderName::from_static("x-auth-roles"),
            spaces: HeaderName::from_static("x-auth-spaces"),
            space: HeaderName::from_static("x-space"),
            claims: claims.map(HeaderName::from_static),
        };
        let first = claims
            .values
            .headers(&names("x-auth-subject", None))
            .unwrap();
        assert_eq!(first["x-auth-subject"], "admin");
        assert_eq!(first["x-auth-roles"], "admin,ops");
        assert_eq!(first.len(), 4);
        // Other names (another gateway in the process) get their own map,
        // never the one stated first.
        let other = claims
            .values
            .headers(&names("x-user", Some("x-auth-claims")))
            .unwrap();
        assert_eq!(other["x-user"], "admin");
        assert!(!other.contains_key("x-auth-subject"));
        assert!(other["x-auth-claims"].to_str().unwrap().contains("\"ops\""));
        let again = claims
            .values
            .headers(&names("x-auth-subject", None))
            .unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn identity_headers_are_known_by_any_spelling() {
        let names = IdentityHeaders {
            subject: HeaderName::from_static("x-auth-subject"),
            roles: HeaderName::from_static("x-auth-roles"),
            spaces: HeaderName::from_static("x-auth-spaces"),
            space: HeaderName::from_static("x-space"),
            claims: Some(HeaderName::from_static("x-auth-claims")),
        };
        for (spelling, identity) in [
            ("x_auth_roles", "x-auth-roles"),
            ("x-auth_subject", "x-auth-subject"),
            ("x_space", "x-space"),
            ("x-auth-claims", "x-auth-claims"),
            ("x_auth_claims", "x-auth-claims"),
        ] {
            let name = HeaderName::from_static(spelling);
            assert_eq!(
                identity_field(&name, &names).map(HeaderName::as_str),
                Some(identity),
                "{spelling}"
            );
        }
        for other in ["x-auth-role", "x-auth-rolesx", "x-spaces", "authorization"] {
            let name = HeaderName::from_static(other);
            assert_eq!(identity_field(&name, &names), None, "{other}");
        }
        assert!(same_field(b"X_Auth-ROLES", b"x-auth-roles"));
        assert!(!same_field(b"x-auth-roles", b"x-auth-roles "));
        assert!(field_starts_with(b"X_FORWARDED_PREFIX", b"x-forwarded-"));
        assert!(!field_starts_with(b"x-forward", b"x-forwarded-"));

        let mut headers = HeaderMap::new();
        headers.insert("x_auth_roles", HeaderValue::from_static("admin"));
        headers.insert("x-auth_spaces", HeaderValue::from_static("production"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_identity(&mut headers, &names);
        assert_eq!(headers.len(), 1, "{headers:?}");
    }

    #[test]
    fn values_a_header_cannot_carry_fail_closed() {
        let comma = claims(serde_json::json!({"sub": "a", "roles": ["viewer,admin"]})).unwrap();
        assert!(comma.values.roles.is_err());
        let newline = claims(serde_json::json!({"sub": "a\r\nX-Auth-Roles: admin"})).unwrap();
        assert!(newline.values.subject.is_err());
        assert!(claims(serde_json::json!({"sub": "a", "spaces": "default_space"})).is_err());
        assert!(claims(serde_json::json!({"sub": "a", "roles": [1]})).is_err());
    }
}
