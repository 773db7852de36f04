//! The reconciler: makes Pulsar match the policy (DESIGN §7, step 3), through
//! the admin REST API ([`crate::pulsar::admin`]).
//!
//! # Desired state
//!
//! For every tenant the policy defines:
//!
//! * the tenant, with `adminRoles` = `pulsar.admin_roles` and
//!   `allowedClusters` = `[pulsar.cluster]`, exactly;
//! * each of its namespaces;
//! * in each namespace, the tenant role's actions = what the rules need there
//!   ([`Policy::desired_permissions`]); no grant when they need nothing;
//! * every other role's namespace grant revoked, except the broker's
//!   super-users, the `pulsar.admin_roles` and any extra
//!   [`Options::protected_roles`] (kept, and reported as [`Drift::KeptGrant`]);
//! * deduplication set explicitly (on or off) as the namespace says, so the
//!   outcome never depends on the broker's `brokerDeduplicationEnabled`;
//! * retention as the namespace declares it (`retention:`); a namespace that
//!   declares none keeps whatever the broker has, so an operator's setting
//!   is not undone by a policy that never mentioned it;
//! * `schemaValidationEnforced` **off** (see below);
//! * each topic schema stored in the schema registry.
//!
//! # Boundaries
//!
//! Only tenants the policy names are read or changed; every other tenant is
//! left alone, and the system tenants `public` and `pulsar` are refused even
//! when a policy names them. Nothing is ever deleted: a namespace that exists
//! under a managed tenant but is not in the policy is reported as
//! [`Drift::UnmanagedNamespace`] and left in place, because deleting it would
//! delete its topics and data. A tenant removed from the policy becomes
//! unmanaged: its grants stay until someone removes them.
//!
//! If the broker's super-user roles cannot be read, no role other than the
//! tenant role is revoked in that run (failing closed), and the run reports a
//! failure for step `read_superusers`.
//!
//! # Schemas and `schemaValidationEnforced`
//!
//! Tested against Pulsar 4.0.7:
//!
//! * The registry's `JSON` type means "JSON described by an **Avro** record"
//!   (what Java's `JSONSchema.of(Pojo.class)` produces). A JSON Schema
//!   document is accepted only by accident (a legacy Jackson draft-3 parser):
//!   one with `required: [...]`, as almost every real schema has, including
//!   the example in DESIGN §4, is refused with 422, and once one is stored,
//!   the next upload to the topic fails with a 500 (`Type not supported:
//!   object`) because the registry re-parses it as Avro.
//! * The broker never validates message payloads against any schema.
//!   `schemaValidationEnforced` only refuses producers that do not declare a
//!   (compatible) schema: with it on, a topic with any registered schema
//!   refuses pulsar-rs producers, which declare none — it would stop the
//!   `publish` function from publishing at all. Conversely, a producer that
//!   declares a `NONE` schema passes it whatever the definition, and (with
//!   the default `isAllowAutoUpdateSchema`) even registers that definition as
//!   the topic's latest version, so for `NONE` it guards nothing.
//!
//! Decision: each policy schema is stored as type `NONE` (raw bytes, which is
//! what our producers send) with the JSON Schema document as its definition
//! and the property [`SCHEMA_FORMAT_PROPERTY`] = `json-schema`, so consumers
//! and operators can find the contract in the registry, and a later change to
//! the policy's schema uploads a new version without tripping type checks.
//! (`BYTES` is stored as `NONE` but then refused as a different type on the
//! next upload, so `NONE` it is.) `schemaValidationEnforced` is kept **off**
//! on every managed namespace and switched back off when someone turns it on,
//! since on it breaks publishing; payload validation is the edge's job
//! (the `publish` function checks every event against the policy schema).
//! A topic whose registry already holds a schema of another type (AVRO, JSON)
//! cannot take ours: the upload fails with 409 and is reported as a failure.
//!
//! # Report
//!
//! [`reconcile`] returns a [`Report`], serialised as JSON with these stable
//! field names:
//!
//! * `dry_run`: whether this was a dry run;
//! * `changes`: what was changed (in a dry run: what would be), each with a
//!   `kind` (`create_tenant`, `update_tenant`, `create_namespace`, `grant`,
//!   `revoke`, `set_deduplication`, `set_retention`, `set_schema_validation`,
//!   `upload_schema`)
//!   and its fields (see [`Change`]);
//! * `drift`: differences the reconciler reports but deliberately does not
//!   fix (`kind` = `unmanaged_namespace`, `kept_grant`; see [`Drift`]);
//! * `failures`: `{tenant, namespace, step, error}` for each step that
//!   failed; `tenant` is `null` for run-wide steps.
//!
//! Each change is also logged as one `tracing` line (target `reconcile`,
//! fields `tenant`, `namespace`, `role`, `topic`, `change`, `dry_run`), after it
//! succeeded (or, in a dry run, when planned). A failure in one tenant is
//! recorded and the other tenants carry on; inside a tenant, a failure skips
//! only what depends on the failed step (a namespace that could not be
//! created is not configured).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{ActionSet, CompiledSchema, Namespace, Policy, Tenant};
use crate::pulsar::admin::{
    AdminClient, AdminError, RetentionPolicies, SchemaInfo, SchemaUpload, TenantInfo,
};

/// Tenants the reconciler never manages, whatever the policy says: Pulsar's
/// own (`pulsar` holds system namespaces; `public` is the shared default).
pub const SYSTEM_TENANTS: [&str; 2] = ["public", "pulsar"];

/// The schema property naming the format of the stored definition.
pub const SCHEMA_FORMAT_PROPERTY: &str = "kp-schema-format";

/// The value of [`SCHEMA_FORMAT_PROPERTY`]: a JSON Schema document.
pub const SCHEMA_FORMAT_JSON_SCHEMA: &str = "json-schema";

/// The registry type policy schemas are stored as (see the module docs).
pub const SCHEMA_TYPE: &str = "NONE";

/// Knobs beyond the policy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Roles never revoked, in addition to the broker's super-users and the
    /// policy's `pulsar.admin_roles` (e.g. an operator's break-glass role).
    pub protected_roles: BTreeSet<String>,
}

/// One change to Pulsar, applied (or, in a dry run, planned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A tenant was created.
    CreateTenant {
        tenant: String,
        admin_roles: Vec<String>,
        allowed_clusters: Vec<String>,
    },
    /// An existing tenant's settings were replaced.
    UpdateTenant {
        tenant: String,
        admin_roles: Vec<String>,
        allowed_clusters: Vec<String>,
        previous_admin_roles: Vec<String>,
        previous_allowed_clusters: Vec<String>,
    },
    /// A namespace was created.
    CreateNamespace { tenant: String, namespace: String },
    /// The tenant role's actions were set to `actions` (it had `previous`).
    Grant {
        tenant: String,
        namespace: String,
        role: String,
        actions: Vec<String>,
        previous: Vec<String>,
    },
    /// A role's namespace grant (it had `actions`) was removed.
    Revoke {
        tenant: String,
        namespace: String,
        role: String,
        actions: Vec<String>,
    },
    /// Deduplication was switched on or off (`previous`: `null` = not set).
    SetDeduplication {
        tenant: String,
        namespace: String,
        enabled: bool,
        previous: Option<bool>,
    },
    /// The retention was set, in Pulsar's units (minutes, MiB; `-1` = no
    /// limit). `previous_*`: `null` = not set.
    SetRetention {
        tenant: String,
        namespace: String,
        time_minutes: i64,
        size_mib: i64,
        previous_time_minutes: Option<i64>,
        previous_size_mib: Option<i64>,
    },
    /// `schemaValidationEnforced` was set.
    SetSchemaValidation {
        tenant: String,
        namespace: String,
        enforced: bool,
        previous: bool,
    },
    /// The policy's schema was stored as a new registry version.
    UploadSchema {
        tenant: String,
        namespace: String,
        topic: String,
        schema_type: String,
        /// The version it replaces; `null` when the topic had none.
        previous_version: Option<i64>,
        /// The version the registry gave it (unknown in a dry run).
        version: Option<i64>,
    },
}

impl Change {
    /// The `kind` this change is serialised with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CreateTenant { .. } => "create_tenant",
            Self::UpdateTenant { .. } => "update_tenant",
            Self::CreateNamespace { .. } => "create_namespace",
            Self::Grant { .. } => "grant",
            Self::Revoke { .. } => "revoke",
            Self::SetDeduplication { .. } => "set_deduplication",
            Self::SetRetention { .. } => "set_retention",
            Self::SetSchemaValidation { .. } => "set_schema_validation",
            Self::UploadSchema { .. } => "upload_schema",
        }
    }

    /// The tenant it touches.
    pub fn tenant(&self) -> &str {
        match self {
            Self::CreateTenant { tenant, .. }
            | Self::UpdateTenant { tenant, .. }
            | Self::CreateNamespace { tenant, .. }
            | Self::Grant { tenant, .. }
            | Self::Revoke { tenant, .. }
            | Self::SetDeduplication { tenant, .. }
            | Self::SetRetention { tenant, .. }
            | Self::SetSchemaValidation { tenant, .. }
            | Self::UploadSchema { tenant, .. } => tenant,
        }
    }

    /// The namespace it touches, if any.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::CreateTenant { .. } | Self::UpdateTenant { .. } => None,
            Self::CreateNamespace { namespace, .. }
            | Self::Grant { namespace, .. }
            | Self::Revoke { namespace, .. }
            | Self::SetDeduplication { namespace, .. }
            | Self::SetRetention { namespace, .. }
            | Self::SetSchemaValidation { namespace, .. }
            | Self::UploadSchema { namespace, .. } => Some(namespace),
        }
    }

    /// The role it grants to or revokes from, if any.
    pub fn role(&self) -> Option<&str> {
        match self {
            Self::Grant { role, .. } | Self::Revoke { role, .. } => Some(role),
            _ => None,
        }
    }

    /// The topic whose schema it uploads, if any.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::UploadSchema { topic, .. } => Some(topic),
            _ => None,
        }
    }
}

/// A difference from the policy that the reconciler reports but does not fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// A namespace under a managed tenant that the policy does not define.
    /// Left in place: deleting it would delete its topics.
    UnmanagedNamespace { tenant: String, namespace: String },
    /// A grant the policy does not call for, kept because the role is
    /// protected (`reason`: `super_user`, `admin_role`, `protected_role`, or
    /// `super_users_unknown` when the super-users could not be read).
    KeptGrant {
        tenant: String,
        namespace: String,
        role: String,
        actions: Vec<String>,
        reason: String,
    },
}

/// A step that failed. The rest of the run carried on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The tenant; `None` (`null`) for run-wide steps.
    pub tenant: Option<String>,
    /// The namespace, when the step was about one.
    pub namespace: Option<String>,
    /// A change kind (`create_tenant`, `grant`, …), or a read step
    /// (`read_tenant`, `read_namespaces`, `read_permissions`,
    /// `read_deduplication`, `read_retention`, `read_schema_validation`,
    /// `read_schema`, `read_superusers`), or `check_tenant` for a tenant the
    /// reconciler refuses to manage.
    pub step: String,
    /// What went wrong, with the broker's reason when it gave one.
    pub error: String,
}

/// The outcome of a run. See the module docs for the JSON shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Whether this was a dry run (nothing was changed).
    pub dry_run: bool,
    /// Changes applied, or in a dry run, those that would be.
    pub changes: Vec<Change>,
    /// Differences reported but deliberately left alone.
    pub drift: Vec<Drift>,
    /// Steps that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// True when Pulsar already matched the policy: nothing to change and
    /// nothing failed (reported drift does not count).
    pub fn is_converged(&self) -> bool {
        self.changes.is_empty() && self.failures.is_empty()
    }

    /// The names of the tenants with at least one failure.
    pub fn failed_tenants(&self) -> BTreeSet<&str> {
        self.failures
            .iter()
            .filter_map(|f| f.tenant.as_deref())
            .collect()
    }
}

/// Reconciles Pulsar with `policy`; with `dry_run`, only reports.
pub async fn reconcile(policy: &Policy, admin: &AdminClient, dry_run: bool) -> Report {
    reconcile_with(policy, admin, dry_run, &Options::default()).await
}

/// [`reconcile`] with [`Options`].
pub async fn reconcile_with(
    policy: &Policy,
    admin: &AdminClient,
    dry_run: bool,
    options: &Options,
) -> Report {
    let mut run = Run {
        admin,
        dry_run,
        report: Report {
            dry_run,
            ..Report::default()
        },
        protected: Protected {
            admin_roles: policy.pulsar().admin_roles.iter().cloned().collect(),
            extra: options.protected_roles.clone(),
            super_users: None,
        },
    };
    match admin.superuser_roles().await {
        Ok(roles) => run.protected.super_users = Some(roles),
        Err(err) => run.fail(None, None, "read_superusers", &err),
    }
    let settings = policy.pulsar();
    let tenant_info = TenantInfo {
        admin_roles: settings.admin_roles.iter().cloned().collect(),
        allowed_clusters: [settings.cluster.as_str().to_owned()].into(),
    };
    let permissions = policy.desired_permissions();
    let none = BTreeMap::new();
    for tenant in policy.tenants() {
        let wanted = permissions.get(&tenant.name).unwrap_or(&none);
        // Boxed: the nested admin-call futures make one tenant's state
        // machine large, and callers (tests, the Lambda runtime) should not
        // need a big stack to hold it.
        Box::pin(run.tenant(tenant, &tenant_info, wanted)).await;
    }
    run.report
}

/// Roles whose grants are never revoked.
struct Protected {
    admin_roles: BTreeSet<String>,
    extra: BTreeSet<String>,
    /// `None` when they could not be read: then nobody else is revoked.
    super_users: Option<BTreeSet<String>>,
}

impl Protected {
    /// Why `role` must be kept, if it must.
    fn reason(&self, role: &str) -> Option<&'static str> {
        match &self.super_users {
            Some(users) if users.contains(role) => Some("super_user"),
            _ if self.admin_roles.contains(role) => Some("admin_role"),
            _ if self.extra.contains(role) => Some("protected_role"),
            None => Some("super_users_unknown"),
            Some(_) => None,
        }
    }
}

/// A namespace's current settings, as far as the reconciler cares.
#[derive(Debug, Default)]
struct NamespaceState {
    permissions: BTreeMap<String, BTreeSet<String>>,
    deduplication: Option<bool>,
    /// Read only for a namespace that declares a retention.
    retention: Option<RetentionPolicies>,
    validation_enforced: bool,
}

struct Run<'a> {
    admin: &'a AdminClient,
    dry_run: bool,
    report: Report,
    protected: Protected,
}

impl Run<'_> {
    async fn tenant(
        &mut self,
        tenant: &Tenant,
        desired: &TenantInfo,
        permissions: &BTreeMap<crate::pulsar::topic::PulsarName, ActionSet>,
    ) {
        let name = tenant.name.as_str();
        if SYSTEM_TENANTS.contains(&name) {
            let error =
                format!("{name} is a Pulsar system tenant; the reconciler never manages it");
            tracing::warn!(target: "reconcile", tenant = name, step = "check_tenant", error = %error, "reconcile step failed");
            self.report.failures.push(Failure {
                tenant: Some(name.to_owned()),
                namespace: None,
                step: "check_tenant".to_owned(),
                error,
            });
            return;
        }
        let exists = match self.admin.tenant(name).await {
            Ok(actual) if actual == *desired => true,
            Ok(actual) => {
                let change = Change::UpdateTenant {
                    tenant: name.to_owned(),
                    admin_roles: list(&desired.admin_roles),
                    allowed_clusters: list(&desired.allowed_clusters),
                    previous_admin_roles: list(&actual.admin_roles),
                    previous_allowed_clusters: list(&actual.allowed_clusters),
                };
                let applied = match self.live() {
                    Some(admin) => admin.update_tenant(name, desired).await,
                    None => Ok(()),
                };
                if !self.apply(change, applied) {
                    return;
                }
                true
            }
            Err(AdminError::NotFound { .. }) => {
                let change = Change::CreateTenant {
                    tenant: name.to_owned(),
                    admin_roles: list(&desired.admin_roles),
                    allowed_clusters: list(&desired.allowed_clusters),
                };
                let applied = match self.live() {
                    Some(admin) => created(admin.create_tenant(name, desired).await),
                    None => Ok(()),
                };
                if !self.apply(change, applied) {
                    return;
                }
                false
            }
            Err(err) => {
                self.fail(Some(name), None, "read_tenant", &err);
                return;
            }
        };
        let existing: BTreeSet<String> = if exists {
            match self.admin.namespaces(name).await {
                Ok(names) => names.into_iter().collect(),
                Err(err) => {
                    self.fail(Some(name), None, "read_namespaces", &err);
                    return;
                }
            }
        } else {
            BTreeSet::new()
        };
        for namespace in &existing {
            let managed = tenant
                .namespaces
                .keys()
                .any(|ns| ns.as_str() == namespace.as_str());
            if !managed {
                self.report.drift.push(Drift::UnmanagedNamespace {
                    tenant: name.to_owned(),
                    namespace: namespace.clone(),
                });
            }
        }
        for namespace in tenant.namespaces.values() {
            let actions = permissions
                .get(&namespace.name)
                .copied()
                .unwrap_or(ActionSet::EMPTY);
            let exists = existing.contains(namespace.name.as_str());
            self.namespace(tenant, namespace, exists, actions).await;
        }
    }

    async fn namespace(
        &mut self,
        tenant: &Tenant,
        namespace: &Namespace,
        exists: bool,
        actions: ActionSet,
    ) {
        let (t, ns) = (tenant.name.as_str(), namespace.name.as_str());
        let state = if exists {
            match self.read_namespace(t, namespace).await {
                Some(state) => state,
                None => return,
            }
        } else {
            let change = Change::CreateNamespace {
                tenant: t.to_owned(),
                namespace: ns.to_owned(),
            };
            let applied = match self.live() {
                Some(admin) => created(admin.create_namespace(t, ns).await),
                None => Ok(()),
            };
            if !self.apply(change, applied) {
                return;
            }
            // A namespace just created (or, in a dry run, still missing)
            // carries the broker's defaults; reading them back would fail in
            // a dry run and tell nothing new otherwise.
            NamespaceState::default()
        };
        self.permissions(tenant, ns, &state.permissions, actions)
            .await;

        if state.deduplication != Some(namespace.deduplication) {
            let change = Change::SetDeduplication {
                tenant: t.to_owned(),
                namespace: ns.to_owned(),
                enabled: namespace.deduplication,
                previous: state.deduplication,
            };
            let applied = match self.live() {
                Some(admin) => {
                    admin
                        .set_deduplication(t, ns, namespace.deduplication)
                        .await
                }
                None => Ok(()),
            };
            self.apply(change, applied);
        }

        if let Some(retention) = namespace.retention {
            let wanted = RetentionPolicies {
                retention_time_in_minutes: retention.minutes.pulsar_value(),
                retention_size_in_mb: retention.mebibytes.pulsar_value(),
            };
            if state.retention != Some(wanted) {
                let change = Change::SetRetention {
                    tenant: t.to_owned(),
                    namespace: ns.to_owned(),
                    time_minutes: wanted.retention_time_in_minutes,
                    size_mib: wanted.retention_size_in_mb,
                    previous_time_minutes: state.retention.map(|r| r.retention_time_in_minutes),
                    previous_size_mib: state.retention.map(|r| r.retention_size_in_mb),
                };
                let applied = match self.live() {
                    Some(admin) => admin.set_retention(t, ns, wanted).await,
                    None => Ok(()),
                };
                self.apply(change, applied);
            }
        }

        for (topic, schema) in &namespace.schemas {
            self.schema(t, ns, topic.as_str(), schema).await;
        }

        // Off, always: on, it refuses every producer that declares no schema
        // (ours) on topics that have one. See the module docs.
        if state.validation_enforced {
            let change = Change::SetSchemaValidation {
                tenant: t.to_owned(),
                namespace: ns.to_owned(),
                enforced: false,
                previous: true,
            };
            let applied = match self.live() {
                Some(admin) => admin.set_schema_validation_enforced(t, ns, false).await,
                None => Ok(()),
            };
            self.apply(change, applied);
        }
    }

    async fn read_namespace(&mut self, t: &str, namespace: &Namespace) -> Option<NamespaceState> {
        let ns = namespace.name.as_str();
        let permissions = self.admin.permissions(t, ns).await;
        let permissions = self.ok(permissions, t, ns, "read_permissions")?;
        let deduplication = self.admin.deduplication(t, ns).await;
        let deduplication = self.ok(deduplication, t, ns, "read_deduplication")?;
        let enforced = self.admin.schema_validation_enforced(t, ns).await;
        let validation_enforced = self.ok(enforced, t, ns, "read_schema_validation")?;
        let retention = match namespace.retention {
            Some(_) => {
                let retention = self.admin.retention(t, ns).await;
                self.ok(retention, t, ns, "read_retention")?
            }
            None => None,
        };
        Some(NamespaceState {
            permissions,
            deduplication,
            retention,
            validation_enforced,
        })
    }

    async fn permissions(
        &mut self,
        tenant: &Tenant,
        ns: &str,
        actual: &BTreeMap<String, BTreeSet<String>>,
        wanted: ActionSet,
    ) {
        let t = tenant.name.as_str();
        let role = tenant.role.as_str();
        let wanted_names: BTreeSet<String> = wanted.iter().map(|a| a.as_str().to_owned()).collect();
        let had = actual.get(role);
        // The tenant role first, so it is never left with less than the
        // policy gives it while others are being revoked.
        if wanted.is_empty() {
            if let Some(had) = had {
                let change = Change::Revoke {
                    tenant: t.to_owned(),
                    namespace: ns.to_owned(),
                    role: role.to_owned(),
                    actions: list(had),
                };
                let applied = match self.live() {
                    Some(admin) => admin.revoke(t, ns, role).await,
                    None => Ok(()),
                };
                self.apply(change, applied);
            }
        } else if had != Some(&wanted_names) {
            let change = Change::Grant {
                tenant: t.to_owned(),
                namespace: ns.to_owned(),
                role: role.to_owned(),
                actions: list(&wanted_names),
                previous: had.map(list).unwrap_or_default(),
            };
            let names: Vec<&str> = wanted.iter().map(|a| a.as_str()).collect();
            let applied = match self.live() {
                Some(admin) => admin.grant(t, ns, role, &names).await,
                None => Ok(()),
            };
            self.apply(change, applied);
        }
        for (other, actions) in actual {
            if other == role {
                continue;
            }
            if let Some(reason) = self.protected.reason(other) {
                self.report.drift.push(Drift::KeptGrant {
                    tenant: t.to_owned(),
                    namespace: ns.to_owned(),
                    role: other.clone(),
                    actions: list(actions),
                    reason: reason.to_owned(),
                });
                continue;
            }
            let change = Change::Revoke {
                tenant: t.to_owned(),
                namespace: ns.to_owned(),
                role: other.clone(),
                actions: list(actions),
            };
            let applied = match self.live() {
                Some(admin) => admin.revoke(t, ns, other).await,
                None => Ok(()),
            };
            self.apply(change, applied);
        }
    }

    async fn schema(&mut self, t: &str, ns: &str, topic: &str, schema: &CompiledSchema) {
        let actual = self.admin.schema(t, ns, topic).await;
        let Some(actual) = self.ok(actual, t, ns, "read_schema") else {
            return;
        };
        let upload = schema_upload(schema);
        if actual
            .as_ref()
            .is_some_and(|actual| same_schema(actual, &upload, schema.schema()))
        {
            return;
        }
        let previous_version = actual.map(|a| a.version);
        let outcome = match self.live() {
            Some(admin) => admin.upload_schema(t, ns, topic, &upload).await,
            None => Ok(None),
        };
        let (version, applied) = match outcome {
            Ok(version) => (version, Ok(())),
            Err(err) => (None, Err(err)),
        };
        let change = Change::UploadSchema {
            tenant: t.to_owned(),
            namespace: ns.to_owned(),
            topic: topic.to_owned(),
            schema_type: upload.schema_type,
            previous_version,
            version,
        };
        self.apply(change, applied);
    }

    /// The admin client to change things with; `None` in a dry run, so no
    /// write can happen by accident.
    fn live(&self) -> Option<&AdminClient> {
        (!self.dry_run).then_some(self.admin)
    }

    /// Records `change` (and logs it) when `applied` succeeded, a failure
    /// otherwise. Returns whether it succeeded.
    fn apply(&mut self, change: Change, applied: Result<(), AdminError>) -> bool {
        match applied {
            Ok(()) => {
                tracing::info!(
                    target: "reconcile",
                    tenant = change.tenant(),
                    namespace = change.namespace(),
                    role = change.role(),
                    topic = change.topic(),
                    change = change.kind(),
                    dry_run = self.dry_run,
                    "{}",
                    if self.dry_run { "would change" } else { "changed" }
                );
                self.report.changes.push(change);
                true
            }
            Err(err) => {
                let (tenant, namespace) = (change.tenant().to_owned(), change.namespace());
                let namespace = namespace.map(str::to_owned);
                self.fail(Some(&tenant), namespace.as_deref(), change.kind(), &err);
                false
            }
        }
    }

    fn ok<T>(
        &mut self,
        result: Result<T, AdminError>,
        tenant: &str,
        namespace: &str,
        step: &str,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.fail(Some(tenant), Some(namespace), step, &err);
                None
            }
        }
    }

    fn fail(
        &mut self,
        tenant: Option<&str>,
        namespace: Option<&str>,
        step: &str,
        err: &AdminError,
    ) {
        let error = crate::telemetry::error_chain(err);
        tracing::warn!(
            target: "reconcile",
            tenant,
            namespace,
            step,
            dry_run = self.dry_run,
            error = %error,
            "reconcile step failed"
        );
        self.report.failures.push(Failure {
            tenant: tenant.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            step: step.to_owned(),
            error,
        });
    }
}

/// A create that found the resource already there (another run, or our own
/// retried PUT that had landed) has the outcome we wanted.
fn created(result: Result<(), AdminError>) -> Result<(), AdminError> {
    match result {
        Err(AdminError::Conflict { .. }) => Ok(()),
        other => other,
    }
}

/// What the registry should hold for a policy schema.
pub fn schema_upload(schema: &CompiledSchema) -> SchemaUpload {
    SchemaUpload {
        schema_type: SCHEMA_TYPE.to_owned(),
        schema: schema.schema().to_string(),
        properties: [(
            SCHEMA_FORMAT_PROPERTY.to_owned(),
            SCHEMA_FORMAT_JSON_SCHEMA.to_owned(),
        )]
        .into(),
    }
}

/// Whether the registry's schema already is the policy's. The definition is
/// compared as JSON, so key order and whitespace do not force a new version.
fn same_schema(actual: &SchemaInfo, wanted: &SchemaUpload, document: &Value) -> bool {
    actual.schema_type == wanted.schema_type
        && actual.properties == wanted.properties
        && serde_json::from_str::<Value>(&actual.data).is_ok_and(|data| data == *document)
}

fn list(set: &BTreeSet<String>) -> Vec<String> {
    set.iter().cloned().collect()
}

#[cfg(test)]
mod tests;
