//! [`Rules`]: an ordered table of (methods, path pattern, access) for
//! services that are not axum routers.

use std::borrow::Cow;
use std::fmt;

use http::Method;

use crate::authz::Policy;
use crate::authz::path::{PathShape, path_shape, percent_decode};
use crate::error::ConfigError;

/// What a matching rule lets through.
#[derive(Debug, Clone)]
enum Access {
    /// Every request, anonymous ones included.
    Public,
    /// Requests whose verified token satisfies the policy.
    Policy(Policy),
}

/// One rule of a [`Rules`] table: a name (the label of its events), a path
/// pattern, the methods it applies to (every method unless listed), and
/// what it lets through.
///
/// A pattern ending in `/` is a prefix of whole segments (`/admin/` covers
/// `/admin/` and everything below it, not `/administrators`); `/` alone
/// covers every path; any other pattern is one exact path. This is the
/// shape of a gateway `[[rule]]`: `name`, `path`, `methods`, `roles` (any
/// of), `scopes` (all of), `public`.
///
/// ```
/// use http::Method;
/// use tower_authgate::authz::{Policy, Rule};
///
/// let admin = Rule::new("admin", "/admin/")?
///     .methods([Method::GET, Method::POST, Method::DELETE])
///     .roles(["admin"]);
/// let audit = Rule::new("audit", "/audit/")?.scopes(["audit:read"]);
/// let owner = Rule::new("own", "/me")?.require(Policy::authenticated());
/// let public = Rule::new("public", "/public/")?.public();
/// # let _ = (admin, audit, owner, public);
/// # Ok::<(), tower_authgate::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    name: Box<str>,
    path: Box<str>,
    methods: Option<Box<[Method]>>,
    roles: Option<Box<[String]>>,
    scopes: Option<Box<[String]>>,
    policy: Option<Policy>,
    public: bool,
}

impl Rule {
    /// A rule named `name` over the path pattern `path`; as it is, it lets
    /// through any verified token (add [`roles`](Self::roles),
    /// [`scopes`](Self::scopes) or a [`require`](Self::require)d policy, or
    /// make it [`public`](Self::public)). A pattern that is not a plain
    /// path is refused.
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Result<Self, ConfigError> {
        let path = path.into();
        if path_shape(&path) != Ok(PathShape::Plain) {
            return Err(ConfigError::InvalidRulePath(path));
        }
        Ok(Rule {
            name: name.into().into(),
            path: path.into(),
            methods: None,
            roles: None,
            scopes: None,
            policy: None,
            public: false,
        })
    }

    /// Applies only to these methods.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Requires one of `roles` (an empty list: no token passes).
    pub fn roles<I: IntoIterator<Item = impl Into<String>>>(mut self, roles: I) -> Self {
        self.roles = Some(roles.into_iter().map(Into::into).collect());
        self
    }

    /// Requires every one of `scopes`.
    pub fn scopes<I: IntoIterator<Item = impl Into<String>>>(mut self, scopes: I) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Requires `policy` as well.
    pub fn require(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Lets every request through, anonymous ones included, whatever else
    /// the rule says. Only a plain path (no percent-encoding) ever matches
    /// a public rule; any other path skips it.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn access(&self) -> Access {
        if self.public {
            return Access::Public;
        }
        let mut parts = Vec::new();
        if let Some(roles) = &self.roles {
            parts.push(Policy::any_role(roles.iter().cloned()));
        }
        if let Some(scopes) = &self.scopes {
            parts.push(Policy::scopes(scopes.iter().cloned()));
        }
        parts.extend(self.policy.clone());
        Access::Policy(if parts.is_empty() {
            Policy::authenticated()
        } else {
            Policy::all_of(parts)
        })
    }
}

/// What a request no rule matches gets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuleDefault {
    /// Refused (`403`): the default.
    Deny,
    /// Any verified token.
    Authenticated,
    /// Requests whose token satisfies the policy.
    Policy(Policy),
}

struct Compiled {
    label: RuleLabel,
    path: Box<str>,
    methods: Option<Box<[Method]>>,
    access: Access,
}

/// A rule's name, and its count of decisions: the series
/// `authgate_authz_rule_decisions_total{rule, outcome, reason}` (with the
/// `metrics` feature), whose `rule` label is the configured name (or
/// `default` for the table's default), never a path.
pub(crate) struct RuleLabel {
    name: Box<str>,
    #[cfg(feature = "metrics")]
    allowed: std::sync::OnceLock<metrics::Counter>,
}

impl fmt::Debug for RuleLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl RuleLabel {
    fn new(name: Box<str>) -> Self {
        RuleLabel {
            name,
            #[cfg(feature = "metrics")]
            allowed: std::sync::OnceLock::new(),
        }
    }

    /// The rule's name (`default` for the table's default).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts a request the rule let through (registered once, then
    /// without allocating).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn allowed(&self) {
        #[cfg(feature = "metrics")]
        self.allowed
            .get_or_init(|| {
                metrics::counter!(
                    "authgate_authz_rule_decisions_total",
                    "rule" => self.name.to_string(),
                    "outcome" => "allowed",
                    "reason" => "ok"
                )
            })
            .increment(1);
    }

    /// Counts and reports a request the rule refused, and why.
    #[cfg_attr(
        not(any(feature = "metrics", feature = "tracing")),
        allow(clippy::unused_self)
    )]
    pub(crate) fn refused(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "authgate_authz_rule_decisions_total",
            "rule" => self.name.to_string(),
            "outcome" => "refused",
            "reason" => reason
        )
        .increment(1);
        crate::observe::event!(
            debug,
            target: crate::observe::DECISION,
            layer = "authz",
            outcome = "refused",
            reason = reason,
            rule = self.name(),
            "the rule that decided the refusal"
        );
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = reason;
    }
}

/// An ordered table of [`Rule`]s: the first rule whose methods and path
/// match a request decides it; a request no rule matches gets the
/// [`RuleDefault`] (`Deny` unless configured otherwise). Applied by
/// [`RequireLayer::rules`](crate::authz::RequireLayer::rules).
///
/// Paths are matched on their one reading ([`crate::authz`]'s path shape,
/// shared with the gateway's public paths): a path with more than one
/// reading (a dot segment, `;`, an encoded `/`, `\` or `%`, an encoded
/// unreserved character, a control, a raw byte outside ASCII) matches no
/// rule and is refused (`400`); a path with encoded reserved or non-ASCII
/// characters is matched on its decoded reading and never matches a public
/// rule.
#[derive(Clone)]
pub struct Rules {
    rules: std::sync::Arc<[Compiled]>,
    default: RuleDefault,
    default_label: std::sync::Arc<RuleLabel>,
    /// With more than [`INDEXED_FROM`] rules, the rules each first path
    /// segment can meet, in order (see [`Index`]).
    index: Option<std::sync::Arc<Index>>,
    /// Whether any rule is public (else no request needs the table
    /// before the token is verified).
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    has_public: bool,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for rule in self.rules.iter() {
            list.entry(&format_args!("{} {}", rule.label.name, rule.path));
        }
        list.entry(&format_args!("default {:?}", self.default));
        list.finish()
    }
}

/// From this many rules on, a table is indexed by first path segment.
const INDEXED_FROM: usize = 8;

/// The rules a request can meet, by its path's first segment: every
/// pattern but `/` covers only paths whose first segment is its own
/// (`/api/` and `/api` both `api`), so a request needs only the rules of
/// its segment and the `/` rules, in the table's order.
struct Index {
    by_segment: std::collections::HashMap<Box<str>, Box<[u32]>, foldhash::fast::FixedState>,
    /// The `/` rules alone: a segment no rule names.
    elsewhere: Box<[u32]>,
}

/// The first segment of an absolute path (`""` for `/`), or `None` for
/// the pattern `/`, which covers every segment.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.split('/').next().unwrap_or(rest))
}

impl Index {
    fn new(rules: &[Compiled]) -> Self {
        let mut by_segment: std::collections::HashMap<Box<str>, Vec<u32>, _> =
            std::collections::HashMap::with_hasher(foldhash::fast::FixedState::default());
        for rule in rules {
            if let Some(segment) = first_segment(&rule.path) {
                by_segment.entry(segment.into()).or_default();
            }
        }
        let mut elsewhere = Vec::new();
        for (i, rule) in (0u32..).zip(rules) {
            match first_segment(&rule.path) {
                Some(segment) => {
                    if let Some(list) = by_segment.get_mut(segment) {
                        list.push(i);
                    }
                }
                None => {
                    elsewhere.push(i);
                    for list in by_segment.values_mut() {
                        list.push(i);
                    }
                }
            }
        }
        Index {
            by_segment: by_segment
                .into_iter()
                .map(|(segment, list)| (segment, list.into_boxed_slice()))
                .collect(),
            elsewhere: elsewhere.into_boxed_slice(),
        }
    }

    /// The rules, in order, that a request for `path` can meet.
    fn candidates(&self, path: &str) -> &[u32] {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let segment = match memchr::memchr(b'/', rest.as_bytes()) {
            Some(end) => &rest[..end],
            None => rest,
        };
        // No pattern has an empty first segment (`//` is not a plain path).
        if segment.is_empty() {
            return &self.elsewhere;
        }
        self.by_segment
            .get(segment)
            .map_or(&*self.elsewhere, |list| &**list)
    }
}

/// The decision of a [`Rules`] table on a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Matched<'r> {
    /// A public rule.
    Public(&'r RuleLabel),
    /// A rule, or the default, and its policy.
    Policy(&'r RuleLabel, &'r Policy),
    /// No rule, and the default denies.
    Deny(&'r RuleLabel),
    /// The path has more than one reading.
    Ambiguous(&'static str),
}

impl Rules {
    /// The table of `rules`, in order; unmatched requests are denied.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let rules: std::sync::Arc<[Compiled]> = rules
            .into_iter()
            .map(|rule| Compiled {
                access: rule.access(),
                label: RuleLabel::new(rule.name),
                path: rule.path,
                methods: rule.methods,
            })
            .collect();
        Rules {
            has_public: rules.iter().any(|r| matches!(r.access, Access::Public)),
            index: (rules.len() > INDEXED_FROM).then(|| std::sync::Arc::new(Index::new(&rules))),
            rules,
            default: RuleDefault::Deny,
            default_label: std::sync::Arc::new(RuleLabel::new("default".into())),
        }
    }

    /// What a request no rule matches gets (default [`RuleDefault::Deny`]).
    pub fn default_access(mut self, default: RuleDefault) -> Self {
        self.default = default;
        self
    }

    /// How many rules the table holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table holds no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of the rule that decides `method` `path` (`None`: the
    /// default, or a path with more than one reading).
    pub fn rule_for(&self, method: &Method, path: &str) -> Option<&str> {
        match self.decide(method, path) {
            Matched::Public(label) | Matched::Policy(label, _)
                if !std::ptr::eq(label, &*self.default_label) =>
            {
                Some(label.name())
            }
            _ => None,
        }
    }

    /// The first policy of the table (a rule's, or the default's) that
    /// reads the selected space, named with its rule: `rule <name>:
    /// <policy>`.
    pub(crate) fn space_reader(&self) -> Option<String> {
        let rules = self.rules.iter().filter_map(|rule| match &rule.access {
            Access::Policy(policy) => Some((rule.label.name(), policy)),
            Access::Public => None,
        });
        let default = match &self.default {
            RuleDefault::Policy(policy) => Some((self.default_label.name(), policy)),
            _ => None,
        };
        rules
            .chain(default)
            .find(|(_, policy)| policy.reads_space())
            .map(|(name, policy)| format!("rule {name}: {policy}"))
    }

    /// The public rule that decides `method` `path`, if one does (only a
    /// plain path can be public).
    #[inline]
    pub(crate) fn public_rule(&self, method: &Method, path: &str) -> Option<&RuleLabel> {
        if !self.has_public {
            return None;
        }
        match self.decide(method, path) {
            Matched::Public(rule) => Some(rule),
            _ => None,
        }
    }

    /// Whether a public rule decides `method` `path` (only a plain path
    /// can be public): such a request needs no token, and is counted as
    /// that rule's.
    #[cfg(feature = "gateway")]
    pub(crate) fn is_public(&self, method: &Method, path: &str) -> bool {
        match self.public_rule(method, path) {
            Some(rule) => {
                rule.allowed();
                true
            }
            None => false,
        }
    }

    pub(crate) fn decide<'r>(&'r self, method: &Method, path: &str) -> Matched<'r> {
        let (path, plain): (Cow<'_, str>, bool) = match path_shape(path) {
            Ok(PathShape::Plain) => (Cow::Borrowed(path), true),
            // One reading, with encoded reserved or non-ASCII characters:
            // matched as the service reads it, never public.
            Ok(PathShape::Encoded) => match String::from_utf8(percent_decode(path.as_bytes())) {
                Ok(decoded) => (Cow::Owned(decoded), false),
                Err(_) => return Matched::Ambiguous("the path's encoded bytes are not UTF-8"),
            },
            Err(why) => return Matched::Ambiguous(why.0),
        };
        // Every rule, or with an index only those the path's first segment
        // can meet (in the same order).
        let (mut all, mut indexed);
        let candidates: &mut dyn Iterator<Item = &Compiled> = match &self.index {
            Some(index) => {
                indexed = index
                    .candidates(&path)
                    .iter()
                    .filter_map(|&i| self.rules.get(i as usize));
                &mut indexed
            }
            None => {
                all = self.rules.iter();
                &mut all
            }
        };
        for rule in candidates {
            // The path first: most rules differ there, and cheaply.
            if !covers(&rule.path, &path)
                || rule
                    .methods
                    .as_ref()
                    .is_some_and(|methods| !methods.contains(method))
            {
                continue;
            }
            match &rule.access {
                Access::Public if plain => return Matched::Public(&rule.label),
                // A public rule is skipped by a path that is not plain.
                Access::Public => {}
                Access::Policy(policy) => return Matched::Policy(&rule.label, policy),
            }
        }
        let default = &*self.default_label;
        match &self.default {
            RuleDefault::Deny => Matched::Deny(default),
            RuleDefault::Authenticated => Matched::Policy(default, authenticated()),
            RuleDefault::Policy(policy) => Matched::Policy(default, policy),
        }
    }
}

fn authenticated() -> &'static Policy {
    static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(Policy::authenticated);
    &POLICY
}

/// Whether the pattern covers `path`: `/` every path, a pattern ending in
/// `/` the paths of whole segments below it, any other pattern itself.
fn covers(pattern: &str, path: &str) -> bool {
    if pattern.ends_with('/') {
        path.starts_with(pattern)
    } else {
        path == pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Rules {
        Rules::new([
            Rule::new("health", "/health").unwrap().public(),
            Rule::new("admin-read", "/admin/")
                .unwrap()
                .methods([Method::GET])
                .roles(["admin", "auditor"]),
            Rule::new("admin", "/admin/").unwrap().roles(["admin"]),
            Rule::new("public", "/public/").unwrap().public(),
            Rule::new("api", "/api/").unwrap(),
        ])
    }

    fn name(m: Matched<'_>) -> String {
        match m {
            Matched::Public(n) => format!("public {}", n.name()),
            Matched::Policy(n, p) => format!("{} {p}", n.name()),
            Matched::Deny(_) => "deny".into(),
            Matched::Ambiguous(_) => "ambiguous".into(),
        }
    }

    #[test]
    fn first_match_wins_and_methods_narrow() {
        let t = table();
        assert_eq!(
            name(t.decide(&Method::GET, "/admin/users")),
            "admin-read any_of(role:admin, role:auditor)"
        );
        assert_eq!(
            name(t.decide(&Method::DELETE, "/admin/users")),
            "admin role:admin"
        );
        assert_eq!(name(t.decide(&Method::GET, "/health")), "public health");
        assert_eq!(name(t.decide(&Method::GET, "/api/x")), "api authenticated");
    }

    #[test]
    fn unmatched_is_denied_unless_configured() {
        let t = table();
        for path in [
            "/",
            "/health/x",
            "/healthz",
            "/administrators",
            "/admin",
            "/apix",
        ] {
            assert_eq!(name(t.decide(&Method::GET, path)), "deny", "{path}");
        }
        let t = table().default_access(RuleDefault::Authenticated);
        assert_eq!(
            name(t.decide(&Method::GET, "/other")),
            "default authenticated"
        );
    }

    #[test]
    fn a_path_with_two_readings_matches_nothing() {
        let t = table();
        for path in [
            "/public/..;/admin/x",
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/public/..%2fadmin",
            "/public/..\\admin",
            "/public//admin",
            "/public/%252e",
            "/%61dmin/x",
            "/public/%00",
            "/public/é",
        ] {
            assert_eq!(name(t.decide(&Method::GET, path)), "ambiguous", "{path:?}");
        }
    }

    #[test]
    fn an_encoded_path_is_matched_decoded_and_never_public() {
        let t = Rules::new([
            Rule::new("colon", "/a:b/").unwrap().roles(["admin"]),
            Rule::new("public", "/").unwrap().public(),
        ]);
        // `/a%3Ab/x` is `/a:b/x` to the service: the admin rule.
        assert_eq!(name(t.decide(&Method::GET, "/a%3Ab/x")), "colon role:admin");
        // `/caf%C3%A9` is not plain: the public rule is skipped.
        assert_eq!(name(t.decide(&Method::GET, "/caf%C3%A9")), "deny");
        assert_eq!(name(t.decide(&Method::GET, "/cafe")), "public public");
    }

    #[test]
    fn an_indexed_table_decides_as_the_rules_read_in_order() {
        let rules = || {
            let mut rules = vec![
                Rule::new("health", "/health").unwrap().public(),
                Rule::new("root-get", "/")
                    .unwrap()
                    .methods([Method::GET])
                    .roles(["viewer"]),
                Rule::new("admin-read", "/admin/")
                    .unwrap()
                    .methods([Method::GET])
                    .roles(["admin", "auditor"]),
                Rule::new("admin", "/admin/").unwrap().roles(["admin"]),
                Rule::new("admin-exact", "/admin").unwrap().roles(["x"]),
                Rule::new("public", "/public/").unwrap().public(),
            ];
            rules.extend((0..10).map(|i| {
                Rule::new(format!("r{i}"), format!("/api/r{i}/"))
                    .unwrap()
                    .roles(["operator"])
            }));
            rules.push(Rule::new("api", "/api/").unwrap());
            rules.push(Rule::new("root", "/").unwrap().roles(["admin"]));
            rules
        };
        let indexed = Rules::new(rules());
        assert!(indexed.index.is_some());
        let mut linear = Rules::new(rules());
        linear.index = None;
        for method in [Method::GET, Method::POST, Method::DELETE] {
            for path in [
                "/",
                "/health",
                "/health/x",
                "/admin",
                "/admin/",
                "/admin/x/y",
                "/administrators",
                "/public/a",
                "/public",
                "/api/r3/x",
                "/api/r3",
                "/api/r10/",
                "/api/",
                "/api",
                "/other",
                "/a%3Ab/x",
                "/caf%C3%A9",
                "/public/..;/admin",
            ] {
                assert_eq!(
                    name(indexed.decide(&method, path)),
                    name(linear.decide(&method, path)),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn patterns_must_be_plain() {
        for bad in ["admin/", "/a/../b", "/a;b", "/a%2fb", "//a", "/a b", ""] {
            assert!(Rule::new("x", bad).is_err(), "{bad:?}");
        }
    }
}
