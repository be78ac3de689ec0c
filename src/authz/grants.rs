//! What a token grants ([`Grants`]: roles, scopes, captured claims) and where
//! a verifier finds them in the payload ([`GrantMapping`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::TokenError;

/// The roles, scopes and captured claims of a verified token, read once by
/// the verifier through its [`GrantMapping`] and kept with the token (a
/// token served from the [`TokenCache`](crate::token::TokenCache) keeps
/// them too). Read by the [policies](crate::authz::Policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    roles: Box<[Box<str>]>,
    scopes: Box<[Box<str>]>,
    claims: Box<[CapturedClaim]>,
}

/// A captured claim: its name and its values.
type CapturedClaim = (Box<str>, Box<[Box<str>]>);

impl Grants {
    /// Grants holding these roles and scopes (for tests, and for tokens
    /// that are not JWTs).
    pub fn new<R, S>(roles: R, scopes: S) -> Self
    where
        R: IntoIterator,
        R::Item: Into<String>,
        S: IntoIterator,
        S::Item: Into<String>,
    {
        let boxed = |items: Vec<String>| {
            let mut items: Vec<Box<str>> = items.into_iter().map(String::into_boxed_str).collect();
            items.sort_unstable();
            items.dedup();
            items.into_boxed_slice()
        };
        Grants {
            roles: boxed(roles.into_iter().map(Into::into).collect()),
            scopes: boxed(scopes.into_iter().map(Into::into).collect()),
            claims: Box::new([]),
        }
    }

    /// The roles, sorted, each once.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(|r| &**r)
    }

    /// The scopes, sorted, each once.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// Whether the token grants `role`.
    pub fn has_role(&self, role: &str) -> bool {
        contains(&self.roles, role)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        contains(&self.scopes, scope)
    }

    /// The values of a claim captured with [`GrantMapping::capture`] (a
    /// string is one value, an array of strings many), `None` when the
    /// claim was not captured or the token did not carry it.
    pub fn claim(&self, name: &str) -> Option<&[Box<str>]> {
        self.claims
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, values)| &**values)
    }
}

fn contains(sorted: &[Box<str>], item: &str) -> bool {
    sorted.binary_search_by(|probe| (**probe).cmp(item)).is_ok()
}

/// What a mapped claim feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Role,
    Scope,
    Claim,
}

#[derive(Debug, Clone)]
struct Source {
    /// The claim's path: its name, then the names of nested objects' members
    /// (`["realm_access", "roles"]`).
    path: Box<[Box<str>]>,
    target: Target,
}

/// Where a verifier finds a token's roles and scopes (and the claims the
/// [policies](crate::authz::Policy) compare), set with
/// [`VerifierBuilder::grants`](crate::token::VerifierBuilder::grants).
///
/// Each mapped claim may be a string (space-separated values, as the
/// `scope` claim of RFC 8693 §4.2 and RFC 9068 §2.2.3) or an array of
/// strings; a missing claim (or `null`) grants nothing; any other JSON type
/// refuses the token (`invalid_claim`), so a claim of unexpected shape never
/// reads as "no roles". The presets name what identity providers put in
/// their tokens:
///
/// | preset | roles from | scopes from |
/// |---|---|---|
/// | [`standard`](Self::standard) (the default) | `roles` | `scope` |
/// | [`keycloak`](Self::keycloak) | `realm_access.roles`, `resource_access.<client>.roles` | `scope` |
/// | [`auth0`](Self::auth0) | `roles` | `scope`, `permissions` |
/// | [`okta`](Self::okta) | `groups` | `scp`, `scope` |
/// | [`azure`](Self::azure) | `roles`, `groups` | `scp` |
///
/// ```
/// use tower_authgate::authz::GrantMapping;
///
/// let mapping = GrantMapping::keycloak(Some("my-api")).capture("department");
/// # let _ = mapping;
/// ```
#[derive(Clone)]
pub struct GrantMapping {
    sources: Arc<[Source]>,
}

impl Default for GrantMapping {
    fn default() -> Self {
        Self::standard()
    }
}

impl fmt::Debug for GrantMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for source in self.sources.iter() {
            list.entry(&format_args!(
                "{:?} <- {}",
                source.target,
                source.path.join(".")
            ));
        }
        list.finish()
    }
}

impl GrantMapping {
    /// Reads nothing: every token grants no role and no scope.
    pub fn none() -> Self {
        GrantMapping {
            sources: Arc::new([]),
        }
    }

    /// Roles from `roles`, scopes from `scope`: what this crate's issuer
    /// mints, and the default.
    pub fn standard() -> Self {
        Self::none().roles_from(["roles"]).scopes_from(["scope"])
    }

    /// Keycloak: roles from `realm_access.roles` and, with a client, from
    /// `resource_access.<client>.roles`; scopes from `scope`.
    pub fn keycloak(client: Option<&str>) -> Self {
        let mapping = Self::none()
            .roles_from(["realm_access", "roles"])
            .scopes_from(["scope"]);
        match client {
            Some(client) => mapping.roles_from(["resource_access", client, "roles"]),
            None => mapping,
        }
    }

    /// Auth0: roles from `roles`, scopes from `scope` and from the
    /// `permissions` of its RBAC.
    pub fn auth0() -> Self {
        Self::none()
            .roles_from(["roles"])
            .scopes_from(["scope"])
            .scopes_from(["permissions"])
    }

    /// Okta: roles from `groups`, scopes from `scp` and `scope`.
    pub fn okta() -> Self {
        Self::none()
            .roles_from(["groups"])
            .scopes_from(["scp"])
            .scopes_from(["scope"])
    }

    /// Microsoft Entra ID (Azure AD): roles from the app roles `roles` and
    /// from `groups`, scopes from `scp`.
    pub fn azure() -> Self {
        Self::none()
            .roles_from(["roles"])
            .roles_from(["groups"])
            .scopes_from(["scp"])
    }

    fn with(mut self, path: Vec<Box<str>>, target: Target) -> Self {
        let mut sources = self.sources.to_vec();
        sources.push(Source {
            path: path.into_boxed_slice(),
            target,
        });
        self.sources = sources.into();
        self
    }

    /// Also read roles from the claim at `path` (its name, then the members
    /// of nested objects).
    pub fn roles_from<P: IntoIterator<Item = impl Into<String>>>(self, path: P) -> Self {
        let path = path
            .into_iter()
            .map(|s| s.into().into_boxed_str())
            .collect();
        self.with(path, Target::Role)
    }

    /// Also read scopes from the claim at `path`.
    pub fn scopes_from<P: IntoIterator<Item = impl Into<String>>>(self, path: P) -> Self {
        let path = path
            .into_iter()
            .map(|s| s.into().into_boxed_str())
            .collect();
        self.with(path, Target::Scope)
    }

    /// Also keep the top-level claim `name` (a string or an array of
    /// strings), for [`Policy::claim_equals`](crate::authz::Policy::claim_equals)
    /// and [`Policy::claim_contains`](crate::authz::Policy::claim_contains).
    pub fn capture(self, name: impl Into<String>) -> Self {
        self.with(vec![name.into().into_boxed_str()], Target::Claim)
    }

    /// Reads the grants of a verified payload: a second pass over it that
    /// keeps only the mapped claims.
    pub(crate) fn read(&self, payload: &[u8]) -> Result<Grants, TokenError> {
        if self.sources.is_empty() {
            return Ok(Grants::default());
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        let top = de
            .deserialize_map(TopLevel { mapping: self })
            .map_err(|_| TokenError::InvalidClaim("grants"))?;
        let (mut roles, mut scopes, mut claims) = (Vec::new(), Vec::new(), Vec::new());
        for source in self.sources.iter() {
            let Some(raw) = top
                .iter()
                .find(|(k, _)| *k == *source.path[0])
                .map(|(_, v)| *v)
            else {
                continue;
            };
            let mut values = Vec::new();
            let split = source.target != Target::Claim;
            read_path(raw, &source.path[1..], split, &mut values)
                .map_err(|()| TokenError::InvalidClaim("grants"))?;
            match source.target {
                Target::Role => roles.extend(values),
                Target::Scope => scopes.extend(values),
                Target::Claim => claims.push((source.path[0].clone(), values.into())),
            }
        }
        let tidy = |mut items: Vec<Box<str>>| {
            items.sort_unstable();
            items.dedup();
            items.into_boxed_slice()
        };
        Ok(Grants {
            roles: tidy(roles),
            scopes: tidy(scopes),
            claims: claims.into_boxed_slice(),
        })
    }
}

/// Follows `path` through nested objects from `raw` and appends the values
/// found there; absent members and `null` add nothing.
/// A string is split at white space when `split` (roles and scopes), kept
/// whole otherwise (a captured claim).
fn read_path(
    raw: &RawValue,
    path: &[Box<str>],
    split: bool,
    out: &mut Vec<Box<str>>,
) -> Result<(), ()> {
    let text = raw.get();
    if text == "null" {
        return Ok(());
    }
    match path.split_first() {
        None => {
            let value: StrOrList<'_> = serde_json::from_str(text).map_err(|_| ())?;
            match value {
                StrOrList::One(one) if split => {
                    out.extend(one.split_ascii_whitespace().map(Box::from));
                }
                StrOrList::One(one) => out.push(one.into()),
                StrOrList::Many(many) => out.extend(many.into_iter().map(|s| s.into())),
            }
            Ok(())
        }
        Some((name, rest)) => {
            let object: BTreeMap<Cow<'_, str>, &RawValue> =
                serde_json::from_str(text).map_err(|_| ())?;
            match object.get(&**name) {
                Some(inner) => read_path(inner, rest, split, out),
                None => Ok(()),
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StrOrList<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// The top-level members a mapping reads, kept as raw JSON; a mapped name
/// seen twice is refused.
struct TopLevel<'m> {
    mapping: &'m GrantMapping,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Self::Value = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.mapping.sources.iter().any(|s| *s.path[0] == *key) {
                if found.iter().any(|(k, _)| *k == key) {
                    return Err(de::Error::custom("duplicate claim"));
                }
                let value: &'de RawValue = map.next_value()?;
                found.push((key, value));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(mapping: &GrantMapping, json: serde_json::Value) -> Result<Grants, TokenError> {
        mapping.read(json.to_string().as_bytes())
    }

    fn roles(grants: &Grants) -> Vec<&str> {
        grants.roles().collect()
    }

    fn scopes(grants: &Grants) -> Vec<&str> {
        grants.scopes().collect()
    }

    #[test]
    fn standard_reads_a_roles_array_and_a_scope_string() {
        let g = read(
            &GrantMapping::default(),
            serde_json::json!({"sub": "a", "roles": ["admin", "operator"], "scope": "audit:read projects:write"}),
        )
        .unwrap();
        assert_eq!(roles(&g), ["admin", "operator"]);
        assert_eq!(scopes(&g), ["audit:read", "projects:write"]);
        assert!(g.has_role("admin") && !g.has_role("adm"));
        assert!(g.has_scope("audit:read"));
    }

    #[test]
    fn a_string_and_an_array_form_both_work() {
        let m = GrantMapping::default();
        let a = read(
            &m,
            serde_json::json!({"roles": "admin operator", "scope": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(roles(&a), ["admin", "operator"]);
        assert_eq!(scopes(&a), ["a", "b"]);
    }

    #[test]
    fn a_claim_of_another_type_refuses_the_token() {
        let m = GrantMapping::default();
        for bad in [
            serde_json::json!({"roles": 1}),
            serde_json::json!({"roles": {"admin": true}}),
            serde_json::json!({"roles": ["admin", 2]}),
            serde_json::json!({"scope": true}),
        ] {
            assert_eq!(read(&m, bad), Err(TokenError::InvalidClaim("grants")));
        }
        let twice = br#"{"roles":["a"],"roles":["admin"]}"#;
        assert!(m.read(twice).is_err());
    }

    #[test]
    fn missing_or_null_claims_grant_nothing() {
        let m = GrantMapping::default();
        let g = read(&m, serde_json::json!({"roles": null, "other": [1, 2]})).unwrap();
        assert_eq!(g, Grants::default());
    }

    #[test]
    fn keycloak_realm_and_client_roles() {
        let token = serde_json::json!({
            "realm_access": {"roles": ["offline_access", "admin"]},
            "resource_access": {"my-api": {"roles": ["auditor"]}, "other": {"roles": ["root"]}},
            "scope": "openid profile"
        });
        let g = read(&GrantMapping::keycloak(Some("my-api")), token.clone()).unwrap();
        assert_eq!(roles(&g), ["admin", "auditor", "offline_access"]);
        assert_eq!(scopes(&g), ["openid", "profile"]);
        let realm_only = read(&GrantMapping::keycloak(None), token).unwrap();
        assert!(!realm_only.has_role("auditor") && !realm_only.has_role("root"));
    }

    #[test]
    fn auth0_permissions_are_scopes() {
        let token = serde_json::json!({"scope": "openid", "permissions": ["read:audit", "delete:projects"]});
        let g = read(&GrantMapping::auth0(), token).unwrap();
        assert_eq!(scopes(&g), ["delete:projects", "openid", "read:audit"]);
    }

    #[test]
    fn okta_groups_and_scp() {
        let token =
            serde_json::json!({"groups": ["Everyone", "Admins"], "scp": ["openid", "audit:read"]});
        let g = read(&GrantMapping::okta(), token).unwrap();
        assert_eq!(roles(&g), ["Admins", "Everyone"]);
        assert!(g.has_scope("audit:read"));
    }

    #[test]
    fn azure_roles_groups_and_scp_string() {
        let token = serde_json::json!({"roles": ["Task.Admin"], "groups": ["0f6a"], "scp": "User.Read Audit.Read"});
        let g = read(&GrantMapping::azure(), token).unwrap();
        assert_eq!(roles(&g), ["0f6a", "Task.Admin"]);
        assert_eq!(scopes(&g), ["Audit.Read", "User.Read"]);
    }

    #[test]
    fn captured_claims() {
        let m = GrantMapping::none().capture("department").capture("teams");
        let g = read(
            &m,
            serde_json::json!({"department": "ops team", "teams": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(g.claim("department").unwrap(), [Box::from("ops team")]);
        assert_eq!(g.claim("teams").unwrap().len(), 2);
        assert!(g.claim("other").is_none());
        assert!(!g.has_role("ops"));
    }
}
