//! [`Policy`]: what a request's verified token must grant.

use std::fmt;
use std::sync::Arc;

use http::Extensions;

use crate::tenant::Space;
use crate::token::VerifiedToken;

/// What a verified token must grant: a value built once (cloning it clones
/// an `Arc`) and evaluated on every request without allocating.
///
/// Leaves read the token's [`Grants`](crate::authz::Grants) (roles, scopes
/// and captured claims, see [`GrantMapping`](crate::authz::GrantMapping)),
/// the [`Space`] a [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer)
/// selected, or the token itself through a closure; [`all_of`](Self::all_of),
/// [`any_of`](Self::any_of) and [`not`](Self::not) combine them. A check
/// that must wait (a database lookup) is an
/// [`AsyncCheck`](crate::authz::AsyncCheck) given to the layer.
///
/// ```
/// use tower_authgate::authz::Policy;
///
/// let delete = Policy::role("admin");
/// let audit = Policy::scope("audit:read");
/// let either = Policy::any_of([Policy::role("admin"), Policy::all_of([
///     Policy::role("operator"),
///     Policy::claim_equals("department", "ops"),
/// ])]);
/// assert_eq!(either.to_string(), "any_of(role:admin, all_of(role:operator, department=ops))");
/// # let _ = (delete, audit);
/// ```
#[derive(Clone)]
pub struct Policy {
    node: Arc<Node>,
    /// What the policy asks for, as shown in a refusal.
    needed: Arc<str>,
    /// The scopes it asks for (RFC 6750 §3 `scope` attribute), when it asks
    /// for scopes.
    scopes: Option<Arc<str>>,
    /// Made of roles, scopes, claims and spaces only: a refusal is
    /// `insufficient_scope`, rather than `policy_denied` for a closure's.
    declarative: bool,
}

type CheckFn = dyn Fn(&VerifiedToken, &Extensions) -> bool + Send + Sync;

enum Node {
    Authenticated,
    Role(Box<str>),
    Scope(Box<str>),
    ClaimEquals(Box<str>, Box<str>),
    ClaimContains(Box<str>, Box<str>),
    Space(Box<str>),
    AllOf(Box<[Policy]>),
    AnyOf(Box<[Policy]>),
    Not(Policy),
    Check(Box<CheckFn>),
    Claims {
        type_name: &'static str,
        check: Box<CheckFn>,
    },
}

/// Why a policy could not be decided: the service is wired wrongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undecidable {
    /// A [`Policy::space`] leaf, and no space selected.
    NoSpace,
    /// A [`Policy::claims`] leaf of another claims type than the token's.
    ClaimsType,
}

impl Policy {
    fn new(node: Node, needed: String, scopes: Option<String>, declarative: bool) -> Self {
        Policy {
            node: Arc::new(node),
            needed: needed.into(),
            scopes: scopes.map(Into::into),
            declarative,
        }
    }

    /// Any verified token.
    pub fn authenticated() -> Self {
        Self::new(Node::Authenticated, "authenticated".into(), None, true)
    }

    /// The token grants `role`.
    pub fn role(role: impl Into<String>) -> Self {
        let role = role.into();
        let needed = format!("role:{role}");
        Self::new(Node::Role(role.into()), needed, None, true)
    }

    /// The token grants `scope`.
    pub fn scope(scope: impl Into<String>) -> Self {
        let scope = scope.into();
        Self::new(
            Node::Scope(scope.clone().into()),
            scope.clone(),
            Some(scope),
            true,
        )
    }

    /// The token grants every one of `scopes` (an empty list: every token).
    pub fn scopes<I: IntoIterator<Item = impl Into<String>>>(scopes: I) -> Self {
        Self::all_of(scopes.into_iter().map(Self::scope))
    }

    /// The token grants at least one of `roles` (an empty list: none).
    pub fn any_role<I: IntoIterator<Item = impl Into<String>>>(roles: I) -> Self {
        Self::any_of(roles.into_iter().map(Self::role))
    }

    /// The captured claim `name` (see
    /// [`GrantMapping::capture`](crate::authz::GrantMapping::capture)) is
    /// the string `value`.
    pub fn claim_equals(name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let needed = format!("{name}={value}");
        Self::new(
            Node::ClaimEquals(name.into(), value.into()),
            needed,
            None,
            true,
        )
    }

    /// The captured claim `name` holds `value` (as an array element, or as
    /// the string itself).
    pub fn claim_contains(name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let needed = format!("{name}~{value}");
        Self::new(
            Node::ClaimContains(name.into(), value.into()),
            needed,
            None,
            true,
        )
    }

    /// The request acts in `space` (selected by a
    /// [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer) before this
    /// check; without one the request is refused as a wiring mistake).
    pub fn space(space: impl Into<String>) -> Self {
        let space = space.into();
        let needed = format!("space:{space}");
        Self::new(Node::Space(space.into()), needed, None, true)
    }

    /// Every one of `policies` holds (none: every token).
    pub fn all_of(policies: impl IntoIterator<Item = Policy>) -> Self {
        Self::combine(policies, "all_of", Node::AllOf)
    }

    /// At least one of `policies` holds (none: no token).
    pub fn any_of(policies: impl IntoIterator<Item = Policy>) -> Self {
        Self::combine(policies, "any_of", Node::AnyOf)
    }

    fn combine(
        policies: impl IntoIterator<Item = Policy>,
        name: &str,
        node: fn(Box<[Policy]>) -> Node,
    ) -> Self {
        let policies: Box<[Policy]> = policies.into_iter().collect();
        if let [one] = &*policies {
            return one.clone();
        }
        let needed = format!(
            "{name}({})",
            policies
                .iter()
                .map(|p| &*p.needed)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let scopes: Vec<&str> = policies
            .iter()
            .filter_map(|p| p.scopes.as_deref())
            .collect();
        let scopes = (!scopes.is_empty()).then(|| scopes.join(" "));
        let declarative = policies.iter().all(|p| p.declarative);
        Self::new(node(policies), needed, scopes, declarative)
    }

    /// `policy` does not hold.
    #[allow(clippy::should_implement_trait)]
    pub fn not(policy: Policy) -> Self {
        let needed = format!("not({})", policy.needed);
        let declarative = policy.declarative;
        Self::new(Node::Not(policy), needed, None, declarative)
    }

    /// `check` returns `true` for the token and the request's extensions
    /// (the selected [`Space`], the [`ClientIp`](crate::ip::ClientIp), ...).
    /// `name` is what a refusal says was needed.
    pub fn check<F>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn(&VerifiedToken, &Extensions) -> bool + Send + Sync + 'static,
    {
        Self::new(Node::Check(Box::new(check)), name.into(), None, false)
    }

    /// `check` returns `true` for the application's claims of type `C`. A
    /// token verified for another claims type is refused as a wiring
    /// mistake (`500`).
    pub fn claims<C, F>(name: impl Into<String>, check: F) -> Self
    where
        C: 'static,
        F: Fn(&C) -> bool + Send + Sync + 'static,
    {
        let node = Node::Claims {
            type_name: std::any::type_name::<C>(),
            check: Box::new(move |token, _| token.claims::<C>().is_some_and(&check)),
        };
        Self::new(node, name.into(), None, false)
    }

    /// What the policy asks for, as a refusal names it.
    pub fn needed(&self) -> &str {
        &self.needed
    }

    /// Whether `token` (with the request's `extensions`) satisfies the
    /// policy; a wiring mistake (a space leaf without a selected space, a
    /// claims leaf of another type) counts as `false`. The layer and the
    /// extractor tell those apart.
    pub fn allows(&self, token: &VerifiedToken, extensions: &Extensions) -> bool {
        self.evaluate(token, extensions) == Ok(true)
    }

    pub(crate) fn scopes_needed(&self) -> Option<&Arc<str>> {
        self.scopes.as_ref()
    }

    pub(crate) fn needed_shared(&self) -> &Arc<str> {
        &self.needed
    }

    pub(crate) fn is_declarative(&self) -> bool {
        self.declarative
    }

    pub(crate) fn evaluate(
        &self,
        token: &VerifiedToken,
        extensions: &Extensions,
    ) -> Result<bool, Undecidable> {
        self.judge(token.grants(), Some(token), extensions)
    }

    /// The decision on `grants` alone, for a caller that holds a token's
    /// grants but no [`VerifiedToken`] (a preset that verified the token
    /// itself): a closure or claims leaf cannot be decided and is refused
    /// as a wiring mistake.
    #[cfg(feature = "presets")]
    pub(crate) fn evaluate_grants(&self, grants: &super::Grants) -> Result<bool, Undecidable> {
        self.judge(grants, None, &Extensions::new())
    }

    /// Whether a leaf of the policy reads the selected space.
    pub(crate) fn reads_space(&self) -> bool {
        match &*self.node {
            Node::Space(_) => true,
            Node::AllOf(policies) | Node::AnyOf(policies) => {
                policies.iter().any(Policy::reads_space)
            }
            Node::Not(policy) => policy.reads_space(),
            Node::Authenticated
            | Node::Role(_)
            | Node::Scope(_)
            | Node::ClaimEquals(..)
            | Node::ClaimContains(..)
            | Node::Check(_)
            | Node::Claims { .. } => false,
        }
    }

    fn judge(
        &self,
        grants: &super::Grants,
        token: Option<&VerifiedToken>,
        extensions: &Extensions,
    ) -> Result<bool, Undecidable> {
        Ok(match &*self.node {
            Node::Authenticated => true,
            Node::Role(role) => grants.has_role(role),
            Node::Scope(scope) => grants.has_scope(scope),
            Node::ClaimEquals(name, value) => {
                matches!(grants.claim(name), Some([one]) if **one == **value)
            }
            Node::ClaimContains(name, value) => grants
                .claim(name)
                .is_some_and(|values| values.iter().any(|v| **v == **value)),
            Node::Space(space) => match extensions.get::<Space>() {
                Some(selected) => selected.0 == **space,
                None => return Err(Undecidable::NoSpace),
            },
            Node::AllOf(all) => {
                for policy in all.iter() {
                    if !policy.judge(grants, token, extensions)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::AnyOf(any) => {
                for policy in any.iter() {
                    if policy.judge(grants, token, extensions)? {
                        return Ok(true);
                    }
                }
                false
            }
            Node::Not(policy) => !policy.judge(grants, token, extensions)?,
            Node::Check(check) => match token {
                Some(token) => check(token, extensions),
                None => return Err(Undecidable::ClaimsType),
            },
            Node::Claims { type_name, check } => match token {
                Some(token) if token.claims_type_name() == *type_name => check(token, extensions),
                _ => return Err(Undecidable::ClaimsType),
            },
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.needed)
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Policy").field(&self.needed).finish()
    }
}
