//! The policy: the one declarative document (DESIGN §4) that says who may
//! publish where. This module owns its parsing and strict validation, the
//! authorization decision the `publish` function makes per request, the topic
//! schemas compiled from it, and the queries the authenticators and the
//! `rotate` reconciler ask of it.
//!
//! A [`Policy`] is built once at cold start and never changes afterwards;
//! every query borrows from it, and [`Policy::authorize`] allocates nothing.
//!
//! Decisions the design leaves open, made here:
//!
//! * **Deny by default, everywhere.** A rule needs at least one `when`
//!   condition; a rule meant for every authenticated caller says so with
//!   `when: { any: true }` (and nothing else), so an empty or misspelt `when`
//!   can never quietly match everyone.
//! * **Rules are an allow-list, evaluated in file order**; the first rule that
//!   matches names itself in the decision (for the audit log). Order never
//!   changes the outcome, only which rule is credited.
//! * **The broker wall is namespace-wide.** Pulsar grants permissions per
//!   namespace, so [`Policy::desired_permissions`] grants the tenant role an
//!   action on a namespace as soon as any rule allows it on any topic there;
//!   topic patterns narrow only the edge check.
//! * **One role per tenant.** Two tenants may not share a Pulsar role, nor may
//!   a tenant role be an admin role: either would let one tenant's token act in
//!   another tenant, defeating the broker as a second, independent wall.
//! * **OIDC audience claim.** Cognito access tokens carry no `aud`, only
//!   `client_id`; `audience_claim` (default `aud`) names the claim checked
//!   against `audiences`.
//! * **Claim names** are used verbatim (Cognito's `cognito:groups`, Auth0's
//!   URL-shaped names with dots), except that a name starting with `/` is a
//!   JSON pointer into nested claims (Keycloak's `/realm_access/roles`).

mod build;
mod document;
mod glob;
mod locate;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
mod verifiers;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::config::PolicySource;
use crate::identity::{AuthMethod, Identity};
use crate::pulsar::topic::{PulsarName, SubscriptionName, TopicName};

pub use glob::Glob;
pub use retention::{Limit, Retention};
pub use schema::{CompiledSchema, MAX_VIOLATIONS, SchemaViolation};

/// The only policy format version this build understands.
pub const POLICY_VERSION: u32 = 1;

/// Why a policy could not be loaded. The message is written for the operator
/// reading a failed cold start: it names the problem and, where known, the
/// line and column.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        /// The file named by `KP_POLICY_FILE`.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The document is malformed or breaks a rule of the policy format.
    #[error("the policy ({origin}) is invalid: {message}")]
    Invalid {
        /// The file path, or `KP_POLICY` for an inline policy.
        origin: String,
        /// What is wrong, with the position when one is known.
        message: String,
        /// 1-based line of the offending node, when known.
        line: Option<usize>,
        /// 1-based column of the offending node, when known.
        column: Option<usize>,
    },
}

impl PolicyError {
    /// The 1-based line the problem is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::Read { .. } => None,
        }
    }
}

/// Something a caller may do to a topic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Publish events.
    Produce,
    /// Read events (cursor reads, and the subscriptions `allow.subscriptions` names).
    Consume,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 2] = [Action::Produce, Action::Consume];

    /// The name used in the policy and by Pulsar's permission API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Consume => "consume",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Produce => 1,
            Self::Consume => 2,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Action`]s. Copy-sized, so rule checks stay allocation-free.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ActionSet(u8);

impl ActionSet {
    /// No action.
    pub const EMPTY: ActionSet = ActionSet(0);

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Adds `action`.
    pub fn insert(&mut self, action: Action) {
        self.0 |= action.bit();
    }

    /// Both sets together.
    pub fn union(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in [`Action::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Action> for ActionSet {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut set = ActionSet::EMPTY;
        for action in iter {
            set.insert(action);
        }
        set
    }
}

impl fmt::Debug for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Serialized as a list of action names, the shape Pulsar's
/// grant-permission endpoint takes.
impl serde::Serialize for ActionSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The outcome of [`Policy::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Allowed, by the named rule (the first in file order that matched).
    Allow {
        /// The rule's `name`.
        rule: &'p str,
    },
    /// No rule allows it.
    Deny,
}

impl Decision<'_> {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// `pulsar:` — how the reconciler sets up tenants and where the token
/// signing key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulsarSettings {
    /// The cluster allowed for the tenants the reconciler creates.
    pub cluster: PulsarName,
    /// Tenant admin roles the reconciler sets.
    pub admin_roles: Vec<String>,
    /// Secrets Manager name of the token signing key.
    pub token_signing_secret: String,
}

/// One trusted OIDC issuer (`identity.oidc[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIssuer {
    /// The issuer, compared verbatim with the token's `iss`.
    pub issuer: String,
    /// Accepted audiences; a token must carry at least one of them.
    pub audiences: Vec<String>,
    /// The claim checked against `audiences` (`aud` unless overridden, e.g.
    /// `client_id` for Cognito access tokens). The claim is required.
    pub audience_claim: String,
    /// The signature algorithms accepted, pinned here, never from the token.
    /// Only asymmetric ones: a public JWKS cannot carry a shared HMAC secret.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The JWKS location; `None` means "ask the discovery document".
    pub jwks_uri: Option<Url>,
    /// Where the identity's fields come from in the claims.
    pub claims: ClaimSettings,
    /// Clock leeway for `exp` / `nbf` / `iat`, in seconds (default 30, at most 300).
    pub leeway_seconds: u64,
    /// How long a fetched JWKS is used before it is fetched again, in
    /// seconds (default 3600, 1..=86400). While the issuer cannot be
    /// reached, its keys stay trusted for one more such period.
    pub jwks_cache_seconds: u64,
    /// Least time between two key fetches, in seconds, however many unknown
    /// `kid`s arrive (default 30 or `jwks_cache_seconds` if shorter, 1..=300,
    /// at most `jwks_cache_seconds`).
    pub jwks_refetch_seconds: u64,
    /// Accepted token types (`typ` header, `token_use` claim), lower case;
    /// empty: any type.
    pub token_types: Vec<String>,
}

impl OidcIssuer {
    /// `{issuer}/.well-known/openid-configuration`, the OIDC discovery URL
    /// (the verifier derives its own; only the policy tests pin the shape).
    #[cfg(test)]
    fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// `claims:` — which token claims become the identity's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSettings {
    /// The principal (default `sub`).
    pub subject: ClaimPath,
    /// Group memberships (a string or a list of strings); none if unset.
    pub groups: Option<ClaimPath>,
    /// The calling service (e.g. `azp`, Okta's `cid`, Cognito's `client_id`).
    pub service: Option<ClaimPath>,
}

/// A claim name, or a JSON pointer (starting with `/`) into nested claims,
/// as the policy spells it. The verifier resolves it (see
/// [`crate::identity::oidc::ClaimMapping`] for the lookup rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    /// The name or pointer as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `identity.iam` — the AWS IAM (signed `sts:GetCallerIdentity`) method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamSettings {
    /// The only STS endpoint signed requests may target and are forwarded to.
    pub sts_endpoint: Url,
    /// Required value of the signed `x-kp-server-id` header.
    pub server_id: String,
    /// Oldest accepted signature, in seconds (at most 900, STS's own limit).
    pub max_age_seconds: u64,
    /// The AWS accounts (12 digits) whose callers are accepted at all.
    pub allowed_accounts: Vec<String>,
}

/// One tenant the functions publish into and the reconciler manages.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant name.
    pub name: PulsarName,
    /// The Pulsar role (token `sub`) the functions act as in this tenant.
    pub role: String,
    /// Secrets Manager name of the tenant's token.
    pub token_secret: String,
    /// Lifetime of a newly minted token.
    pub token_ttl: Duration,
    /// Rotate when the current token expires within this window (default:
    /// a quarter of `token_ttl`).
    pub rotate_before: Duration,
    /// The namespaces, by name.
    pub namespaces: BTreeMap<PulsarName, Namespace>,
}

/// One namespace of a tenant.
#[derive(Debug)]
pub struct Namespace {
    /// The namespace name.
    pub name: PulsarName,
    /// Whether broker-side deduplication is switched on.
    pub deduplication: bool,
    /// Topic schemas, by topic name.
    pub schemas: BTreeMap<PulsarName, CompiledSchema>,
    /// The retention `rotate` keeps set; `None` leaves the broker's alone.
    pub retention: Option<Retention>,
}

/// One rule: who (`when`) may do what (`allow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique name, reported in decisions and logs.
    pub name: String,
    /// Conditions on the identity.
    pub when: When,
    /// What the rule allows.
    pub allow: Allow,
}

/// A rule's conditions. Every present condition must hold; a `When` with none
/// present is only ever built from an explicit `any: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    /// Identity issuer equals this (OIDC issuer URL, `aws-iam` or `kong`).
    pub issuer: Option<String>,
    /// Identity principal equals this.
    pub subject: Option<String>,
    /// Identity has at least one of these groups (never empty when present).
    pub groups_any: Option<Vec<String>>,
    /// Identity service tag equals this.
    pub service: Option<String>,
    /// Identity IAM ARN matches this glob.
    pub iam_arn: Option<Glob>,
    /// Identity Kong consumer equals this.
    pub kong_consumer: Option<String>,
    /// Identity authenticated this way.
    pub auth_method: Option<AuthMethod>,
}

impl When {
    /// Whether this is `any: true`, matching every authenticated caller.
    pub fn is_anyone(&self) -> bool {
        *self == When::default()
    }

    /// Whether every present condition holds for `identity`. A condition on
    /// a field the identity lacks (no service, no ARN, no consumer) fails.
    pub fn matches(&self, identity: &Identity) -> bool {
        fn equal(want: Option<&String>, have: Option<&str>) -> bool {
            want.is_none_or(|w| have == Some(w.as_str()))
        }
        equal(self.issuer.as_ref(), Some(&identity.issuer))
            && equal(self.subject.as_ref(), Some(&identity.principal))
            && equal(self.service.as_ref(), identity.service.as_deref())
            && equal(
                self.kong_consumer.as_ref(),
                identity.kong_consumer.as_deref(),
            )
            && self.auth_method.is_none_or(|m| m == identity.method)
            && self.groups_any.as_ref().is_none_or(|wanted| {
                wanted
                    .iter()
                    .any(|g| identity.groups.iter().any(|have| have == g))
            })
            && self.iam_arn.as_ref().is_none_or(|glob| {
                identity
                    .iam_arn
                    .as_deref()
                    .is_some_and(|arn| glob.matches(arn))
            })
    }
}

/// What a rule allows: actions on topics in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The tenant (always one the policy defines).
    pub tenant: PulsarName,
    /// The namespaces (all defined under the tenant).
    pub namespaces: NamespaceScope,
    /// Topic patterns; a topic must match one.
    pub topics: Vec<Glob>,
    /// The actions allowed (never empty).
    pub actions: ActionSet,
    /// Durable subscription names a `consume` rule lets its callers use
    /// (none: cursor reads only), so one team cannot drain another's.
    pub subscriptions: Vec<Glob>,
    /// What a CloudEvent published through this rule may say it is: its
    /// `source` must match one of `ce_sources` and its `type` one of
    /// `ce_types` (each empty: any), so a caller cannot claim to be another
    /// service. Events that are not CloudEvents are not constrained.
    pub ce_sources: Vec<Glob>,
    pub ce_types: Vec<Glob>,
}

impl Allow {
    fn admits(&self, event: &CloudEventClaim<'_>) -> bool {
        let within = |patterns: &[Glob], text: &str| {
            patterns.is_empty() || patterns.iter().any(|g| g.matches(text))
        };
        within(&self.ce_sources, event.source) && within(&self.ce_types, event.r#type)
    }
}

/// What a CloudEvent says of itself, for [`Policy::authorize_produce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudEventClaim<'a> {
    pub source: &'a str,
    pub r#type: &'a str,
}

impl Allow {
    /// Whether the rule's grant covers `action` on `topic`.
    pub fn covers(&self, topic: &TopicName, action: Action) -> bool {
        self.actions.contains(action)
            && self.tenant == topic.tenant
            && self.namespaces.contains(&topic.namespace)
            && self.topics.iter().any(|g| g.matches(topic.topic.as_str()))
    }
}

/// `allow.namespaces`: `["*"]` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// `["*"]`: every namespace the policy defines for the tenant.
    All,
    /// These namespaces.
    Only(Vec<PulsarName>),
}

impl NamespaceScope {
    /// Whether `namespace` is in scope. `All` admits any name here;
    /// [`Policy::authorize`] refuses namespaces the policy does not define
    /// before any rule is consulted.
    pub fn contains(&self, namespace: &PulsarName) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(namespace),
        }
    }
}

/// An X.509 certificate the `rotate` function keeps fresh (`certificates[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Unique name, for reports.
    pub name: String,
    /// The subject CN: the Pulsar role the certificate authenticates as.
    pub role: String,
    /// Subject alternative names (DNS names or IP addresses).
    pub sans: Vec<String>,
    /// Lifetime of a newly issued certificate.
    pub validity: Duration,
    /// Renew when the current certificate expires within this window.
    pub renew_before: Duration,
    /// Secrets Manager name the certificate and key are stored under.
    pub secret: String,
    /// Secrets Manager name of the issuing CA.
    pub ca_secret: String,
}

/// `provenance:` — the key the `publish` function signs every event with
/// (`kp-provenance`) and how `rotate` keeps it. Absent: events are not signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceSettings {
    /// Names this deployment in every signature (the JWS `iss`), so a
    /// consumer can tell two gateways' events apart.
    pub issuer: String,
    /// Secrets Manager name of the key set (`rotate` writes it).
    pub signing_secret: String,
    /// How long a key signs before `rotate` replaces it (default 30 days).
    pub rotate_every: Duration,
    /// How long a retired key's public half stays in the JWKS (default 30
    /// days): messages signed with it keep verifying that long.
    pub retain_retired: Duration,
    /// How long a new key is listed in the JWKS before it may sign (default
    /// 1 hour): longer than the publish function's secret cache
    /// (`KP_SECRET_TTL`) plus the JWKS `Cache-Control` max-age, so every
    /// JWKS anyone holds lists a key before the first event signed with it.
    pub publish_lead: Duration,
}

/// Per tenant, per namespace: the actions the tenant role needs on the
/// broker. Every namespace the policy defines is present, with an empty set
/// when no rule needs it (so the reconciler revokes what the role has there).
pub type DesiredPermissions = BTreeMap<PulsarName, BTreeMap<PulsarName, ActionSet>>;

/// A loaded, validated policy. Immutable; share it behind a reference or an
/// `Arc` for the life of the process.
#[derive(Debug)]
pub struct Policy {
    pulsar: PulsarSettings,
    oidc: Vec<OidcIssuer>,
    iam: Option<IamSettings>,
    kong_trusted: bool,
    tenants: BTreeMap<PulsarName, Tenant>,
    rules: Vec<Rule>,
    certificates: Vec<Certificate>,
    provenance: Option<ProvenanceSettings>,
}

// The policy is read concurrently by every request of a warm instance.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Policy>();
};

impl Policy {
    /// Loads the policy named by the configuration. Schema paths in a policy
    /// file are relative to the file's directory; in an inline policy
    /// (`KP_POLICY`), to the current directory.
    pub fn load(source: &PolicySource) -> Result<Policy, PolicyError> {
        match source {
            PolicySource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
                    path: path.clone(),
                    source,
                })?;
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                Self::parse(&text, Some(dir), &path.display().to_string())
            }
            PolicySource::Inline(text) => Self::parse(text, None, "KP_POLICY"),
        }
    }

    /// Parses a policy document (YAML or JSON). Schema paths are resolved
    /// against `base_dir`, or the current directory when `None`.
    pub fn from_str(text: &str, base_dir: Option<&Path>) -> Result<Policy, PolicyError> {
        Self::parse(text, base_dir, "inline")
    }

    fn parse(text: &str, base_dir: Option<&Path>, origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |error: serde_yaml_ng::Error| {
            let location = error.location();
            PolicyError::Invalid {
                origin: origin.to_owned(),
                message: error.to_string(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }
        };
        if text.trim().is_empty() {
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                message: "the document is empty".to_owned(),
                line: None,
                column: None,
            });
        }
        let document: document::Document = serde_yaml_ng::from_str(text).map_err(invalid)?;
        build::build(document, base_dir).map_err(|problem| {
            match locate::locate(text, &problem.path, &problem.message) {
                Some(error) => invalid(error),
                None => PolicyError::Invalid {
                    origin: origin.to_owned(),
                    message: format!("{}: {}", problem.path, problem.message),
                    line: None,
                    column: None,
                },
            }
        })
    }

    /// Decides whether `identity` may perform `action` on `topic`: allowed
    /// when some rule's `when` matches the identity and its `allow` covers
    /// the tenant, namespace, topic and action; denied otherwise.
    /// A namespace the policy does not define is always denied, even under
    /// `namespaces: ["*"]`: the reconciler grants nothing there, and the edge
    /// should not be more generous than the broker.
    pub fn authorize(
        &self,
        identity: &Identity,
        topic: &TopicName,
        action: Action,
    ) -> Decision<'_> {
        self.first_rule(identity, topic, action, |_| true)
    }

    /// As [`Self::authorize`] for [`Action::Produce`], where every one of
    /// `cloud_events` (the request's CloudEvents; none for plain events)
    /// must also be admitted by the rule's `ce_sources` and `ce_types`: the
    /// first rule allowing the request with all of them decides.
    pub fn authorize_produce(
        &self,
        identity: &Identity,
        topic: &TopicName,
        cloud_events: &[CloudEventClaim<'_>],
    ) -> Decision<'_> {
        self.first_rule(identity, topic, Action::Produce, |allow| {
            cloud_events.iter().all(|e| allow.admits(e))
        })
    }

    /// As [`Self::authorize`] for [`Action::Consume`], where a durable
    /// `subscription` must also match one of the rule's `subscriptions`
    /// patterns: the first rule allowing the read *with that subscription*
    /// decides, so a cursor-only rule earlier in the file does not hide a
    /// later one naming the subscription.
    pub fn authorize_read(
        &self,
        identity: &Identity,
        topic: &TopicName,
        subscription: Option<&SubscriptionName>,
    ) -> Decision<'_> {
        self.first_rule(identity, topic, Action::Consume, |allow| {
            subscription.is_none_or(|s| allow.subscriptions.iter().any(|g| g.matches(s.as_str())))
        })
    }

    /// The first rule (in file order) whose grant covers `action` on
    /// `topic`, whose `also` holds and whose `when` matches `identity`.
    fn first_rule(
        &self,
        identity: &Identity,
        topic: &TopicName,
        action: Action,
        also: impl Fn(&Allow) -> bool,
    ) -> Decision<'_> {
        let defined = self
            .tenants
            .get(&topic.tenant)
            .is_some_and(|t| t.namespaces.contains_key(&topic.namespace));
        if !defined {
            return Decision::Deny;
        }
        // `covers` first: it is cheap and rejects most rules outright.
        self.rules
            .iter()
            .find(|rule| {
                rule.allow.covers(topic, action) && also(&rule.allow) && rule.when.matches(identity)
            })
            .map_or(Decision::Deny, |rule| Decision::Allow { rule: &rule.name })
    }

    /// The tenant called `name`, if the policy defines it.
    pub fn tenant(&self, name: &PulsarName) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Every tenant, in name order.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// The schema events on `topic` must satisfy, if the policy gives one.
    pub fn schema_for(&self, topic: &TopicName) -> Option<&CompiledSchema> {
        self.tenants
            .get(&topic.tenant)?
            .namespaces
            .get(&topic.namespace)?
            .schemas
            .get(&topic.topic)
    }

    /// The `pulsar:` settings.
    pub fn pulsar(&self) -> &PulsarSettings {
        &self.pulsar
    }

    /// The trusted OIDC issuers, in file order.
    pub fn oidc_issuers(&self) -> &[OidcIssuer] {
        &self.oidc
    }

    /// The trusted issuer whose `issuer` is exactly `iss`.
    pub fn oidc_issuer(&self, iss: &str) -> Option<&OidcIssuer> {
        self.oidc.iter().find(|i| i.issuer == iss)
    }

    /// The IAM settings; `None` means IAM authentication is off.
    pub fn iam(&self) -> Option<&IamSettings> {
        self.iam.as_ref()
    }

    /// Whether Kong's consumer headers are trusted as identity.
    pub fn kong_trusted(&self) -> bool {
        self.kong_trusted
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every secret the policy names and what for (`(secret, use)`, the use
    /// as the policy node that names it, e.g. `tenants.payments.token_secret`),
    /// so a secret named elsewhere (the admin token of the configuration) can
    /// be checked against them with [`same_secret`]. Load already refused
    /// two uses of one secret, except CA secrets shared between entries.
    pub fn secret_uses(&self) -> Vec<(String, String)> {
        build::secret_uses(
            &self.pulsar,
            &self.tenants,
            &self.certificates,
            self.provenance.as_ref(),
        )
        .into_iter()
        .map(|(secret, path, _)| (secret, path.to_string()))
        .collect()
    }

    /// The certificates the `rotate` function keeps fresh.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// The provenance signing settings, when events are signed.
    pub fn provenance(&self) -> Option<&ProvenanceSettings> {
        self.provenance.as_ref()
    }

    /// What the reconciler should grant each tenant role: per namespace, the
    /// union of the actions of every rule whose `allow` names the tenant and
    /// covers the namespace (whatever its topic patterns, since Pulsar grants
    /// per namespace).
    pub fn desired_permissions(&self) -> DesiredPermissions {
        let mut desired: DesiredPermissions = self
            .tenants
            .iter()
            .map(|(name, tenant)| {
                let namespaces = tenant
                    .namespaces
                    .keys()
                    .map(|ns| (ns.clone(), ActionSet::EMPTY))
                    .collect();
                (name.clone(), namespaces)
            })
            .collect();
        for rule in &self.rules {
            let Some(namespaces) = desired.get_mut(&rule.allow.tenant) else {
                continue;
            };
            for (namespace, actions) in namespaces.iter_mut() {
                if rule.allow.namespaces.contains(namespace) {
                    *actions = actions.union(rule.allow.actions);
                }
            }
        }
        desired
    }
}

/// Whether two references to Secrets Manager secrets (each a name, a partial
/// ARN, or a full ARN with AWS's random `-xxxxxx` suffix) may be the same
/// secret. Errs towards "the same": it guards against rotation writing into
/// a secret that has another use, where a false alarm costs a rename and a
/// miss costs a key.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, a_bare) = secret_name(a);
    let (b, b_bare) = secret_name(b);
    a == b || a_bare.is_some_and(|a| a == b || b_bare == Some(a)) || b_bare.is_some_and(|b| b == a)
}

/// The secret name in `reference`, and for an ARN also the name without a
/// trailing `-` and six alphanumerics (the suffix AWS adds in full ARNs).
fn secret_name(reference: &str) -> (&str, Option<&str>) {
    let Some(name) = reference
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":secret:"))
        .map(|(_, name)| name)
    else {
        return (reference, None);
    };
    let bare = name
        .len()
        .checked_sub(7)
        .filter(|&at| name.is_char_boundary(at))
        .map(|at| name.split_at(at))
        .filter(|(_, suffix)| {
            suffix.starts_with('-') && suffix[1..].bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(|(bare, _)| bare);
    (name, bare)
}

#[cfg(test)]
mod same_secret_tests {
    use super::same_secret;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

    #[test]
    fn names_and_arns_of_one_secret_are_the_same_secret() {
        let full = format!("{ARN}kp/admin-token-AbC123");
        let partial = format!("{ARN}kp/admin-token");
        for (a, b) in [
            ("kp/admin-token", "kp/admin-token"),
            ("kp/admin-token", full.as_str()),
            (full.as_str(), "kp/admin-token"),
            ("kp/admin-token", partial.as_str()),
            (partial.as_str(), full.as_str()),
            (full.as_str(), full.as_str()),
        ] {
            assert!(same_secret(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn other_secrets_and_hostile_references_are_not_confused() {
        let longer = format!("{ARN}kp/admin-token-old-AbC123");
        for (a, b) in [
            ("kp/admin-token", "kp/admin-token-old"),
            // A plain name never loses a suffix: these are two secrets.
            ("kp/admin-token", "kp/admin-token-AbC123"),
            ("kp/admin-token", longer.as_str()),
            ("kp/admin-token", ""),
            ("arn:", "kp/admin-token"),
            ("arn:aws:secretsmanager:us-east-1:1:notsecret:kp/a", "kp/a"),
        ] {
            assert!(!same_secret(a, b), "{a} / {b}");
            assert!(!same_secret(b, a), "{b} / {a}");
        }
        // Multi-byte text where the suffix would start must not panic.
        let odd = format!("{ARN}kp/ééééé");
        assert!(!same_secret(&odd, "kp/a"));
        assert!(same_secret(&odd, &odd));
    }
}
