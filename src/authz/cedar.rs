//! [`CedarPolicies`]: Cedar policies, validated against a schema, as the
//! decision of a [`RequireLayer`](crate::authz::RequireLayer) (feature
//! `cedar`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};
use http::{Extensions, Method};
use miette::Diagnostic;

use crate::authz::path::{PathShape, path_shape, percent_decode};
use crate::ip::ClientIp;
use crate::reject::AuthzRejection;
use crate::tenant::{HasSpaces, Space};
use crate::token::VerifiedToken;

/// The entity type of the principal.
const USER: &str = "User";
/// The entity type of the resource.
const PATH: &str = "Path";

/// Where a problem is: a file (its path as given, or `<policies>` /
/// `<schema>` for texts), and the line and column (from 1) when the
/// problem has a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CedarProblem {
    /// The file.
    pub file: String,
    /// The line, from 1, when known.
    pub line: Option<usize>,
    /// The column (in characters), from 1, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CedarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why Cedar policies could not be loaded (or reloaded, which then keeps
/// the policies in force). `Display` prints each problem as
/// `file:line:column: message`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CedarError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policies do not parse.
    #[error("the Cedar policies do not parse: {}", list(.0))]
    Parse(Vec<CedarProblem>),
    /// The schema does not parse, or declares something inconsistent.
    #[error("the Cedar schema is not valid: {}", list(.0))]
    Schema(Vec<CedarProblem>),
    /// The policies do not validate against the schema (strict mode).
    #[error("the Cedar policies do not validate against the schema: {}", list(.0))]
    Validation(Vec<CedarProblem>),
    /// The schema does not describe the requests the engine builds (the
    /// entity types `User` and `Path`, their attributes, the context).
    #[error("the Cedar schema does not fit the requests of the engine: {0}")]
    Model(CedarProblem),
    /// A route names an action the schema does not declare for a `User`
    /// acting on a `Path`.
    #[error("the Cedar schema declares no action {0:?} for a User on a Path")]
    UnknownAction(String),
    /// [`CedarPolicies::reload`] on policies that were not loaded from
    /// files.
    #[error("these Cedar policies were not loaded from files: nothing to reload")]
    NotFromFiles,
}

fn list(problems: &[CedarProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CedarError {
    /// The problems found, each with its file and place (none for
    /// [`Read`](Self::Read), [`UnknownAction`](Self::UnknownAction) and
    /// [`NotFromFiles`](Self::NotFromFiles)).
    pub fn problems(&self) -> &[CedarProblem] {
        match self {
            Self::Parse(problems) | Self::Schema(problems) | Self::Validation(problems) => problems,
            Self::Model(problem) => std::slice::from_ref(problem),
            Self::Read { .. } | Self::UnknownAction(_) | Self::NotFromFiles => &[],
        }
    }
}

/// The line and column (from 1; the column in characters) of the byte
/// `offset` of `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A problem of `file` (whose text is `source`) from a Cedar diagnostic:
/// its message, its help, and the place of its first label.
fn problem(file: &str, source: &str, diagnostic: &dyn Diagnostic) -> CedarProblem {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let place = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| line_column(source, label.offset()));
    CedarProblem {
        file: file.to_owned(),
        line: place.map(|(line, _)| line),
        column: place.map(|(_, column)| column),
        message,
    }
}

/// An error with its sources and its help, each said once.
fn explain<E: Diagnostic>(error: &E) -> String {
    let mut said: Vec<String> = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !said.contains(&text) {
            said.push(text);
        }
        source = cause.source();
    }
    if let Some(help) = error.help() {
        said.push(format!("(help: {help})"));
    }
    said.join(": ")
}

/// Which captured claims and spaces go into the principal.
#[derive(Clone, Default)]
struct Model {
    claims: Vec<Box<str>>,
    spaces: Option<SpacesOf>,
}

/// The spaces a token of the claims type `type_name` grants.
#[derive(Clone, Copy)]
struct SpacesOf {
    type_name: &'static str,
    read: fn(&VerifiedToken) -> Option<&[String]>,
}

fn spaces_of<C: HasSpaces + 'static>(token: &VerifiedToken) -> Option<&[String]> {
    token.claims::<C>().map(HasSpaces::spaces)
}

/// Builds [`CedarPolicies`]: what the principal carries, then where the
/// policies and the schema come from.
#[derive(Clone, Default)]
pub struct CedarPoliciesBuilder {
    model: Model,
}

impl fmt::Debug for CedarPoliciesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPoliciesBuilder")
            .field("claims", &self.model.claims)
            .field("spaces_of", &self.model.spaces.map(|s| s.type_name))
            .finish()
    }
}

impl CedarPoliciesBuilder {
    /// Puts these captured claims (see
    /// [`GrantMapping::capture`](crate::authz::GrantMapping::capture)) into
    /// the principal's `claims` record, each as a set of strings, absent
    /// when the token does not carry it. The schema declares each one,
    /// optional: `claims: { department?: Set<String> }`.
    pub fn claims<I: IntoIterator<Item = impl Into<String>>>(mut self, names: I) -> Self {
        for name in names {
            let name: Box<str> = name.into().into();
            if !self.model.claims.contains(&name) {
                self.model.claims.push(name);
            }
        }
        self
    }

    /// Puts the spaces a token grants (its claims of type `C`, through
    /// [`HasSpaces`]) into the principal's `spaces` attribute. A token
    /// verified for another claims type is refused as a wiring mistake
    /// (`500`), as [`Policy::claims`](crate::authz::Policy::claims) does.
    pub fn spaces_of<C: HasSpaces + 'static>(mut self) -> Self {
        self.model.spaces = Some(SpacesOf {
            type_name: std::any::type_name::<C>(),
            read: spaces_of::<C>,
        });
        self
    }

    /// Loads the policies from the file `policies` and the schema (Cedar
    /// schema syntax) from the file `schema`;
    /// [`reload`](CedarPolicies::reload) reads the same files again.
    pub fn load(
        self,
        policies: impl AsRef<FsPath>,
        schema: impl AsRef<FsPath>,
    ) -> Result<CedarPolicies, CedarError> {
        let files = Files {
            policies: policies.as_ref().to_owned(),
            schema: schema.as_ref().to_owned(),
        };
        let compiled = files.compile(&self.model)?;
        Ok(CedarPolicies::new(self.model, Some(files), compiled))
    }

    /// Builds from the policies' and the schema's texts (named `<policies>`
    /// and `<schema>` in errors).
    pub fn from_texts(self, policies: &str, schema: &str) -> Result<CedarPolicies, CedarError> {
        let compiled = Compiled::new(&self.model, Text::policies(policies), Text::schema(schema))?;
        Ok(CedarPolicies::new(self.model, None, compiled))
    }
}

/// A text and the name errors give it.
struct Text<'a> {
    name: Cow<'a, str>,
    source: Cow<'a, str>,
}

impl<'a> Text<'a> {
    fn policies(source: &'a str) -> Self {
        Text {
            name: Cow::Borrowed("<policies>"),
            source: Cow::Borrowed(source),
        }
    }

    fn schema(source: &'a str) -> Self {
        Text {
            name: Cow::Borrowed("<schema>"),
            source: Cow::Borrowed(source),
        }
    }

    fn read(path: &FsPath) -> Result<Text<'static>, CedarError> {
        let source = std::fs::read_to_string(path).map_err(|source| CedarError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Text {
            name: Cow::Owned(path.display().to_string()),
            source: Cow::Owned(source),
        })
    }
}

#[derive(Debug, Clone)]
struct Files {
    policies: PathBuf,
    schema: PathBuf,
}

impl Files {
    fn compile(&self, model: &Model) -> Result<Compiled, CedarError> {
        Compiled::new(
            model,
            Text::read(&self.policies)?,
            Text::read(&self.schema)?,
        )
    }
}

/// A validated policy set and what a request needs of its schema.
struct Compiled {
    types: Types,
    policies: PolicySet,
    /// The actions that apply to a `User` on a `Path`, by name, each with
    /// a store of its entity and its groups' (so that `action in
    /// Action::"read"` holds), to which a request adds its principal and
    /// resource.
    applicable: HashMap<Box<str>, (EntityUid, Entities)>,
    /// The `@id` of each policy, for events.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    names: HashMap<String, String>,
}

/// The entity types, parsed once.
struct Types {
    user: EntityTypeName,
    path: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, CedarError> {
        let parse = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| {
                CedarError::Model(CedarProblem {
                    file: String::new(),
                    line: None,
                    column: None,
                    message: e.to_string(),
                })
            })
        };
        Ok(Types {
            user: parse(USER)?,
            path: parse(PATH)?,
        })
    }
}

impl Compiled {
    fn new(model: &Model, policies: Text<'_>, schema: Text<'_>) -> Result<Self, CedarError> {
        let (schema_value, _warnings) = Schema::from_cedarschema_str(&schema.source)
            .map_err(|e| CedarError::Schema(vec![problem(&schema.name, &schema.source, &e)]))?;
        let set = PolicySet::from_str(&policies.source).map_err(|errors| {
            CedarError::Parse(
                errors
                    .iter()
                    .map(|e| problem(&policies.name, &policies.source, e))
                    .collect(),
            )
        })?;
        let validator = Validator::new(schema_value);
        let result = validator.validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            return Err(CedarError::Validation(
                result
                    .validation_errors()
                    .map(|e| problem(&policies.name, &policies.source, e))
                    .collect(),
            ));
        }
        let schema_value = validator.schema();
        let types = Types::new()?;
        let model_error = |message: String| {
            CedarError::Model(CedarProblem {
                file: schema.name.to_string(),
                line: None,
                column: None,
                message,
            })
        };
        let actions = schema_value
            .action_entities()
            .map_err(|e| model_error(e.to_string()))?;
        let mut applicable = HashMap::new();
        for action in schema_value.actions() {
            let principals: Vec<&EntityTypeName> = schema_value
                .principals_for_action(action)
                .map(Iterator::collect)
                .unwrap_or_default();
            let resources: Vec<&EntityTypeName> = schema_value
                .resources_for_action(action)
                .map(Iterator::collect)
                .unwrap_or_default();
            if principals.is_empty() && resources.is_empty() {
                // An action group: requests never name it.
                continue;
            }
            if principals != [&types.user] || resources != [&types.path] {
                return Err(model_error(format!(
                    "the action {action} applies to other principals or resources than a {USER} on a {PATH}"
                )));
            }
            let own = std::iter::once(action)
                .chain(actions.ancestors(action).into_iter().flatten())
                .filter_map(|uid| actions.get(uid).cloned());
            let store = Entities::from_entities(own, None).map_err(|e| model_error(explain(&e)))?;
            applicable.insert(Box::from(action.id().unescaped()), (action.clone(), store));
        }
        if applicable.is_empty() {
            return Err(model_error(format!(
                "no action applies to a {USER} on a {PATH}"
            )));
        }
        // The engine builds requests with and without each optional
        // part; the schema must accept both, for every action.
        for full in [true, false] {
            let sample = Sample::new(model, full);
            let principal = principal_entity(&types, sample.token_view())
                .map_err(|e| model_error(format!("the principal: {e}")))?;
            let resource =
                path_entity(&types, "/").map_err(|e| model_error(format!("the resource: {e}")))?;
            let (principal_uid, resource_uid) = (principal.uid(), resource.uid());
            Entities::from_entities([principal, resource], Some(schema_value)).map_err(|e| {
                model_error(format!(
                    "the {} entities: {}",
                    if full { "fullest" } else { "barest" },
                    explain(&e)
                ))
            })?;
            for (action, _) in applicable.values() {
                let context = context(sample.client, sample.space.as_deref(), 0)
                    .map_err(|e| model_error(e.to_string()))?;
                cedar_policy::Request::new(
                    principal_uid.clone(),
                    action.clone(),
                    resource_uid.clone(),
                    context,
                    Some(schema_value),
                )
                .map_err(|e| {
                    model_error(format!(
                        "the {} context of {action}: {} (the engine sends \
                         {{ time: Long, client?: ipaddr, space?: String }})",
                        if full { "fullest" } else { "barest" },
                        explain(&e)
                    ))
                })?;
            }
        }
        let names = set
            .policies()
            .filter_map(|p| {
                p.annotation("id")
                    .map(|name| (p.id().to_string(), name.to_owned()))
            })
            .collect();
        Ok(Compiled {
            types,
            policies: set,
            applicable,
            names,
        })
    }
}

/// A made-up request of the fullest or the barest shape, to check the
/// schema against at load.
struct Sample<'m> {
    /// The captured claims present (each with one value).
    claims: Vec<&'m str>,
    spaces: Option<Vec<String>>,
    client: Option<std::net::IpAddr>,
    space: Option<String>,
}

impl<'m> Sample<'m> {
    fn new(model: &'m Model, full: bool) -> Self {
        let claims = if full {
            model.claims.iter().map(|name| &**name).collect()
        } else {
            Vec::new()
        };
        Sample {
            claims,
            spaces: (full && model.spaces.is_some()).then(|| vec![String::from("x")]),
            client: full.then_some(std::net::IpAddr::from([127, 0, 0, 1])),
            space: full.then(|| String::from("x")),
        }
    }

    fn token_view(&self) -> TokenView<'_> {
        TokenView {
            subject: "sample",
            roles: Box::new(std::iter::once("x")),
            scopes: Box::new(std::iter::once("x")),
            claims: Box::new(self.claims.iter().map(|name| (*name, vec!["x"]))),
            spaces: self.spaces.as_deref(),
        }
    }
}

/// What the principal is made of.
struct TokenView<'a> {
    subject: &'a str,
    roles: Box<dyn Iterator<Item = &'a str> + 'a>,
    scopes: Box<dyn Iterator<Item = &'a str> + 'a>,
    claims: Box<dyn Iterator<Item = (&'a str, Vec<&'a str>)> + 'a>,
    spaces: Option<&'a [String]>,
}

fn string_set<'a>(values: impl Iterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.map(|v| RestrictedExpression::new_string(v.to_owned())))
}

fn principal_entity(
    types: &Types,
    view: TokenView<'_>,
) -> Result<Entity, Box<dyn std::error::Error + Send + Sync>> {
    let uid = EntityUid::from_type_name_and_id(types.user.clone(), EntityId::new(view.subject));
    let claims = view
        .claims
        .map(|(name, values)| (name.to_owned(), string_set(values.into_iter())));
    let mut attrs = HashMap::with_capacity(4);
    attrs.insert(String::from("roles"), string_set(view.roles));
    attrs.insert(String::from("scopes"), string_set(view.scopes));
    attrs.insert(
        String::from("claims"),
        RestrictedExpression::new_record(claims)?,
    );
    if let Some(spaces) = view.spaces {
        attrs.insert(
            String::from("spaces"),
            string_set(spaces.iter().map(String::as_str)),
        );
    }
    Ok(Entity::new(uid, attrs, HashSet::new())?)
}

fn path_entity(
    types: &Types,
    path: &str,
) -> Result<Entity, Box<dyn std::error::Error + Send + Sync>> {
    let uid = EntityUid::from_type_name_and_id(types.path.clone(), EntityId::new(path));
    let attrs = HashMap::from([(
        String::from("path"),
        RestrictedExpression::new_string(path.to_owned()),
    )]);
    Ok(Entity::new(uid, attrs, HashSet::new())?)
}

fn context(
    client: Option<std::net::IpAddr>,
    space: Option<&str>,
    time: u64,
) -> Result<Context, Box<dyn std::error::Error + Send + Sync>> {
    let mut pairs = Vec::with_capacity(3);
    pairs.push((
        String::from("time"),
        RestrictedExpression::new_long(i64::try_from(time)?),
    ));
    if let Some(client) = client {
        pairs.push((
            String::from("client"),
            RestrictedExpression::new_ip(client.to_string()),
        ));
    }
    if let Some(space) = space {
        pairs.push((
            String::from("space"),
            RestrictedExpression::new_string(space.to_owned()),
        ));
    }
    Ok(Context::from_pairs(pairs)?)
}

/// Cedar policies validated against their schema, and the model of the
/// requests they decide: give them to
/// [`RequireLayer::cedar`](crate::authz::RequireLayer::cedar).
///
/// Every request becomes one Cedar request:
///
/// - **principal** `User::"<sub>"` (`User::""` for a token without `sub`)
///   with the attributes `roles` and `scopes` (sets of strings, from the
///   token's [`Grants`](crate::authz::Grants)), `spaces` (the spaces the
///   token grants, when the engine reads them:
///   [`CedarPoliciesBuilder::spaces_of`]) and `claims`, a record of the
///   captured claims the engine names ([`CedarPoliciesBuilder::claims`]),
///   each a set of strings and absent when the token lacks it;
/// - **action** `Action::"<METHOD>"` (`Action::"GET"`), or the action a
///   route names ([`RequireLayer::cedar_action`](crate::authz::RequireLayer::cedar_action));
/// - **resource** `Path::"<path>"` with the attribute `path` (the same
///   string, for `like` patterns): the path's decoded reading; a path with
///   more than one reading (a dot segment, an encoded `/`, ...) is refused
///   with `400` before any policy sees it, as the rule tables do;
/// - **context** `time` (seconds since the Unix epoch, a `Long`), `client`
///   (an `ipaddr`, when an [`IpFilterLayer`](crate::ip::IpFilterLayer)
///   resolved the [`ClientIp`]) and `space` (a `String`, when a
///   [`SelectSpaceLayer`](crate::tenant::SelectSpaceLayer) selected one).
///
/// The schema (`examples/policies.cedarschema` is one to start from)
/// declares these shapes; the policies are validated against it in strict
/// mode when they are loaded, and the schema is checked against the
/// requests the engine builds, so that a mismatch is an error at load, not
/// a refusal of every request. Only a `permit` that matches, with no
/// `forbid` that matches and no policy that fails to evaluate, allows a
/// request; anything else is a `403` (`policy_denied`). Nothing is cached:
/// each request is decided on its own token.
///
/// # Example
///
/// ```
/// use http::{Method, Request, Response, StatusCode, header};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_authgate::auth::AuthLayer;
/// use tower_authgate::authz::{CedarPolicies, RequireLayer};
/// use tower_authgate::token::{Algorithm, KeySet, SigningKey, TokenSources, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policies = CedarPolicies::builder().from_texts(
///     r#"permit (principal, action == Action::"GET", resource)
///        when { principal.roles.contains("auditor") && resource.path like "/audit/*" };"#,
///     r#"entity User = { roles: Set<String>, scopes: Set<String>, claims: {} };
///        entity Path = { path: String };
///        action "GET", "POST" appliesTo {
///            principal: User, resource: Path,
///            context: { time: Long, client?: ipaddr, space?: String },
///        };"#,
/// )?;
/// let key = SigningKey::hmac(Algorithm::HS256, b"a secret of at least thirty-two bytes!")?;
/// let verifier = Verifier::builder(KeySet::single(key.verifying_key())).build()?;
/// let service = ServiceBuilder::new()
///     .layer(AuthLayer::<serde_json::Value>::new(verifier).sources(TokenSources::bearer()))
///     .layer(RequireLayer::cedar(policies))
///     .service(service_fn(|_req: Request<String>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(String::from("audit log")))
///     }));
///
/// let exp = tower_authgate::clock::now_seconds() + 300;
/// let token = key.sign(&serde_json::json!({
///     "sub": "ann", "exp": exp, "usefor": "access", "roles": ["auditor"]
/// }))?;
/// let request = |method: Method| {
///     Request::builder()
///         .method(method)
///         .uri("/audit/2024")
///         .header(header::AUTHORIZATION, format!("Bearer {token}"))
///         .body(String::new())
///         .unwrap()
/// };
/// let allowed = service.clone().oneshot(request(Method::GET)).await?;
/// assert_eq!(allowed.status(), StatusCode::OK);
/// let refused = service.oneshot(request(Method::POST)).await?;
/// assert_eq!(refused.status(), StatusCode::FORBIDDEN);
/// # Ok(())
/// # }
/// ```
///
/// Cloning shares them: [`reload`](Self::reload) through any clone (on
/// `SIGHUP`, say) swaps in the new set for every layer holding one, after
/// the same checks as at load, and keeps the set in force when the new
/// files are bad. Requests in flight finish with the set they started
/// with.
#[derive(Clone)]
pub struct CedarPolicies {
    shared: Arc<Shared>,
}

struct Shared {
    model: Model,
    files: Option<Files>,
    current: ArcSwap<Compiled>,
    authorizer: Authorizer,
}

impl fmt::Debug for CedarPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPolicies")
            .field("files", &self.shared.files)
            .field("policies", &self.policy_count())
            .field("claims", &self.shared.model.claims)
            .field("spaces_of", &self.shared.model.spaces.map(|s| s.type_name))
            .finish()
    }
}

impl CedarPolicies {
    /// A builder, to choose the captured claims and the spaces the
    /// principal carries.
    pub fn builder() -> CedarPoliciesBuilder {
        CedarPoliciesBuilder::default()
    }

    /// Loads the policies from the file `policies` and the schema (Cedar
    /// schema syntax) from the file `schema`, with a principal that carries
    /// roles and scopes only (no captured claims, no spaces): see
    /// [`builder`](Self::builder) for more.
    pub fn load(
        policies: impl AsRef<FsPath>,
        schema: impl AsRef<FsPath>,
    ) -> Result<Self, CedarError> {
        Self::builder().load(policies, schema)
    }

    fn new(model: Model, files: Option<Files>, compiled: Compiled) -> Self {
        CedarPolicies {
            shared: Arc::new(Shared {
                model,
                files,
                current: ArcSwap::from_pointee(compiled),
                authorizer: Authorizer::new(),
            }),
        }
    }

    /// Reads the files given to [`load`](CedarPoliciesBuilder::load) again
    /// and, when they parse and validate, puts them in force; on an error
    /// the policies in force stay. Policies built from texts answer
    /// [`CedarError::NotFromFiles`].
    pub fn reload(&self) -> Result<(), CedarError> {
        let files = self.shared.files.as_ref().ok_or(CedarError::NotFromFiles)?;
        let compiled = files.compile(&self.shared.model)?;
        self.shared.current.store(Arc::new(compiled));
        Ok(())
    }

    /// Puts the set in force in `other` (loaded with the same builder
    /// settings, so already checked) in force here too.
    #[cfg(feature = "gateway")]
    pub(crate) fn adopt(&self, other: &CedarPolicies) {
        self.shared.current.store(other.shared.current.load_full());
    }

    /// Puts the policies and schema of these texts in force, after the
    /// same checks as at load; on an error the policies in force stay.
    pub fn replace_texts(&self, policies: &str, schema: &str) -> Result<(), CedarError> {
        let compiled = Compiled::new(
            &self.shared.model,
            Text::policies(policies),
            Text::schema(schema),
        )?;
        self.shared.current.store(Arc::new(compiled));
        Ok(())
    }

    /// The policy file and the schema file, when loaded from files.
    pub fn files(&self) -> Option<(&FsPath, &FsPath)> {
        self.shared
            .files
            .as_ref()
            .map(|files| (&*files.policies, &*files.schema))
    }

    /// How many policies are in force.
    pub fn policy_count(&self) -> usize {
        self.shared.current.load().policies.policies().count()
    }

    /// Whether the schema in force declares `action` for a `User` on a
    /// `Path`.
    pub fn has_action(&self, action: &str) -> bool {
        self.shared.current.load().applicable.contains_key(action)
    }

    /// The decision on a request: its verified token when the policies
    /// allow it, else the refusal.
    pub(crate) fn decide<'r>(
        &self,
        action: Option<&str>,
        method: &Method,
        path: &str,
        extensions: &'r Extensions,
    ) -> Result<&'r VerifiedToken, AuthzRejection> {
        let token = super::layer::verified_token(extensions)?;
        let path: Cow<'_, str> = match path_shape(path) {
            Err(why) => return Err(AuthzRejection::AmbiguousPath(why.0)),
            Ok(PathShape::Plain) => Cow::Borrowed(path),
            Ok(PathShape::Encoded) => match String::from_utf8(percent_decode(path.as_bytes())) {
                Ok(decoded) => Cow::Owned(decoded),
                Err(_) => {
                    return Err(AuthzRejection::AmbiguousPath(
                        "the path's encoded bytes are not UTF-8",
                    ));
                }
            },
        };
        let spaces = match self.shared.model.spaces {
            None => None,
            Some(of) => match (of.read)(token) {
                Some(spaces) => Some(spaces),
                None => return Err(AuthzRejection::ClaimsTypeMismatch),
            },
        };
        let action = action.unwrap_or(method.as_str());
        let compiled = self.shared.current.load();
        let allowed = match compiled.applicable.get(action) {
            Some((action_uid, action_entities)) => {
                let grants = token.grants();
                let view = TokenView {
                    subject: token.meta().subject.as_deref().unwrap_or(""),
                    roles: Box::new(grants.roles()),
                    scopes: Box::new(grants.scopes()),
                    claims: Box::new(self.shared.model.claims.iter().filter_map(|name| {
                        grants
                            .claim(name)
                            .map(|values| (&**name, values.iter().map(|v| &**v).collect()))
                    })),
                    spaces,
                };
                let request = Facts {
                    view,
                    action: action_uid,
                    action_entities,
                    path: &path,
                    client: extensions.get::<ClientIp>().map(|ip| ip.0),
                    space: extensions.get::<Space>().map(|space| space.0.as_str()),
                    time: crate::clock::now_seconds(),
                };
                self.evaluate(&compiled, request)
            }
            None => {
                crate::observe::event!(
                    debug,
                    target: crate::observe::DECISION,
                    layer = "authz",
                    action,
                    "the Cedar schema declares no such action"
                );
                false
            }
        };
        if allowed {
            Ok(token)
        } else {
            Err(AuthzRejection::PolicyDenied {
                needed: Arc::from(format!("a Cedar policy permitting {action}")),
            })
        }
    }

    /// Whether the policies allow the request: a permit matched, no forbid
    /// did, and no policy failed to evaluate.
    fn evaluate(&self, compiled: &Compiled, facts: Facts<'_>) -> bool {
        let built = (|| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            let principal = principal_entity(&compiled.types, facts.view)?;
            let resource = path_entity(&compiled.types, facts.path)?;
            let request = cedar_policy::Request::new(
                principal.uid(),
                facts.action.clone(),
                resource.uid(),
                context(facts.client, facts.space, facts.time)?,
                None,
            )?;
            let entities = facts
                .action_entities
                .clone()
                .add_entities([principal, resource], None)?;
            Ok((request, entities))
        })();
        let (request, entities) = match built {
            Ok(built) => built,
            Err(_error) => {
                crate::observe::event!(
                    warn,
                    target: crate::observe::DECISION,
                    layer = "authz",
                    error = %_error,
                    "the Cedar request could not be built"
                );
                return false;
            }
        };
        let response =
            self.shared
                .authorizer
                .is_authorized(&request, &compiled.policies, &entities);
        let errors = response.diagnostics().errors().count();
        #[cfg(feature = "tracing")]
        if response.decision() != Decision::Allow || errors > 0 {
            let named = |id: &cedar_policy::PolicyId| {
                compiled
                    .names
                    .get(AsRef::<str>::as_ref(id))
                    .cloned()
                    .unwrap_or_else(|| id.to_string())
            };
            let reasons: Vec<String> = response.diagnostics().reason().map(named).collect();
            let failed: Vec<String> = response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect();
            tracing::debug!(
                target: crate::observe::DECISION,
                layer = "authz",
                decision = ?response.decision(),
                policies = ?reasons,
                errors = ?failed,
                "Cedar refused"
            );
        }
        response.decision() == Decision::Allow && errors == 0
    }
}

/// What a request is decided on.
struct Facts<'a> {
    view: TokenView<'a>,
    action: &'a EntityUid,
    action_entities: &'a Entities,
    path: &'a str,
    client: Option<std::net::IpAddr>,
    space: Option<&'a str>,
    time: u64,
}
