//! From the document as written to a [`Policy`]: every check serde cannot
//! express (names, references between sections, durations, algorithms,
//! schemas). The first problem found stops the load and names the node it is
//! about, so the caller can put a line number on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::document::{
    AllowDoc, CertificateDoc, ClaimsDoc, Document, DurationDoc, IamDoc, NamespaceDoc, OidcDoc,
    ProvenanceDoc, PulsarDoc, RetentionDoc, RuleDoc, TenantDoc, WhenDoc,
};
use super::locate::NodePath;
use super::{
    ActionSet, Allow, Certificate, ClaimPath, ClaimSettings, CompiledSchema, Glob, IamSettings,
    Namespace, NamespaceScope, OidcIssuer, POLICY_VERSION, Policy, ProvenanceSettings,
    PulsarSettings, Retention, Rule, Tenant, When, retention,
};
use crate::config::parse_duration;
use crate::pulsar::topic::{NameError, PulsarName, check_publishable, is_partition_name};

mod identity;
mod rules;

use identity::{iam_settings, oidc_issuer};
use rules::{build_rule, publishable};

/// What is wrong, and where.
#[derive(Debug)]
pub(super) struct Problem {
    pub path: NodePath,
    pub message: String,
}

type Checked<T> = Result<T, Problem>;

fn problem<T>(path: NodePath, message: impl Into<String>) -> Checked<T> {
    Err(Problem {
        path,
        message: message.into(),
    })
}

pub(super) fn build(doc: Document, base_dir: Option<&Path>) -> Checked<Policy> {
    let root = NodePath::root();
    if doc.version != POLICY_VERSION {
        return problem(
            root.key("version"),
            format!(
                "unsupported policy version {}; this build understands version {POLICY_VERSION}",
                doc.version
            ),
        );
    }
    let pulsar = pulsar_settings(doc.pulsar, &root.key("pulsar"))?;

    let identity = root.key("identity");
    let mut oidc: Vec<OidcIssuer> = Vec::with_capacity(doc.identity.oidc.len());
    for (i, issuer) in doc.identity.oidc.into_iter().enumerate() {
        let path = identity.key("oidc").index(i);
        let issuer = oidc_issuer(issuer, &path)?;
        if oidc.iter().any(|seen| seen.issuer == issuer.issuer) {
            return problem(
                path.key("issuer"),
                format!(
                    "issuer {:?} is listed twice; the token's `iss` must select exactly one entry",
                    issuer.issuer
                ),
            );
        }
        oidc.push(issuer);
    }
    let iam = doc
        .identity
        .iam
        .map(|iam| iam_settings(iam, &identity.key("iam")))
        .transpose()?;

    let tenants_path = root.key("tenants");
    let mut tenants: BTreeMap<PulsarName, Tenant> = BTreeMap::new();
    for (name, tenant) in doc.tenants.0 {
        let path = tenants_path.key(name.as_str());
        let tenant = build_tenant(&name, tenant, &path, base_dir)?;
        if pulsar.admin_roles.contains(&tenant.role) {
            return problem(
                path.key("role"),
                format!(
                    "role {:?} is also in pulsar.admin_roles; the role the functions publish as \
                     must not administer tenants",
                    tenant.role
                ),
            );
        }
        if let Some(other) = tenants.values().find(|t| t.role == tenant.role) {
            return problem(
                path.key("role"),
                format!(
                    "role {:?} is already the role of tenant {:?}; each tenant needs its own role, \
                     or one tenant's token would work in the other",
                    tenant.role,
                    other.name.as_str()
                ),
            );
        }
        tenants.insert(tenant.name.clone(), tenant);
    }

    let mut rules: Vec<Rule> = Vec::with_capacity(doc.rules.len());
    for (i, rule) in doc.rules.into_iter().enumerate() {
        let path = root.key("rules").index(i);
        let rule = build_rule(rule, &path, &tenants, iam.as_ref())?;
        if let Some(first) = rules.iter().position(|r| r.name == rule.name) {
            return problem(
                path.key("name"),
                format!(
                    "rule name {:?} is already used by rules[{first}]; rule names must be unique \
                     because decisions are logged by name",
                    rule.name
                ),
            );
        }
        rules.push(rule);
    }

    let mut certificates: Vec<Certificate> = Vec::with_capacity(doc.certificates.len());
    for (i, cert) in doc.certificates.into_iter().enumerate() {
        let path = root.key("certificates").index(i);
        let cert = certificate(cert, &path)?;
        if certificates.iter().any(|c| c.name == cert.name) {
            return problem(
                path.key("name"),
                format!("certificate name {:?} is used twice", cert.name),
            );
        }
        certificates.push(cert);
    }

    let provenance = match doc.provenance {
        Some(p) => Some(provenance(p, &root.key("provenance"))?),
        None => None,
    };

    check_secrets_are_distinct(&pulsar, &tenants, &certificates, provenance.as_ref())?;

    Ok(Policy {
        pulsar,
        oidc,
        iam,
        kong_trusted: doc.identity.kong.trusted,
        tenants,
        rules,
        certificates,
        provenance,
    })
}

fn pulsar_settings(doc: PulsarDoc, path: &NodePath) -> Checked<PulsarSettings> {
    let cluster = name(&doc.cluster, "cluster", &path.key("cluster"))?;
    for (i, role) in doc.admin_roles.iter().enumerate() {
        check_role(role, &path.key("admin_roles").index(i))?;
    }
    non_empty(
        &doc.token_signing_secret,
        "secret name",
        &path.key("token_signing_secret"),
    )?;
    Ok(PulsarSettings {
        cluster,
        admin_roles: doc.admin_roles,
        token_signing_secret: doc.token_signing_secret,
    })
}

fn build_tenant(
    name_text: &str,
    doc: TenantDoc,
    path: &NodePath,
    base_dir: Option<&Path>,
) -> Checked<Tenant> {
    let tenant_name = name(name_text, "tenant", &path.the_key())?;
    check_role(&doc.role, &path.key("role"))?;
    non_empty(&doc.token_secret, "secret name", &path.key("token_secret"))?;
    let token_ttl = duration(&doc.token_ttl, &path.key("token_ttl"))?;
    // The default (a quarter of the lifetime) is always shorter than it.
    let rotate_before = match &doc.rotate_before {
        None => token_ttl / 4,
        Some(text) => {
            let window = duration(text, &path.key("rotate_before"))?;
            if window >= token_ttl {
                return problem(
                    path.key("rotate_before"),
                    format!(
                        "rotate_before ({}) must be shorter than token_ttl ({}), or every token \
                         would be due for rotation the moment it is minted",
                        text.0, doc.token_ttl.0
                    ),
                );
            }
            window
        }
    };
    let mut namespaces = BTreeMap::new();
    for (ns_name, ns) in doc.namespaces.0 {
        let ns_path = path.key("namespaces").key(ns_name.as_str());
        let ns = build_namespace(&ns_name, ns, &ns_path, base_dir)?;
        namespaces.insert(ns.name.clone(), ns);
    }
    Ok(Tenant {
        name: tenant_name,
        role: doc.role,
        token_secret: doc.token_secret,
        token_ttl,
        rotate_before,
        namespaces,
    })
}

fn build_namespace(
    name_text: &str,
    doc: NamespaceDoc,
    path: &NodePath,
    base_dir: Option<&Path>,
) -> Checked<Namespace> {
    let ns_name = name(name_text, "namespace", &path.the_key())?;
    let mut schemas = BTreeMap::new();
    for (topic_text, schema) in doc.schemas.0 {
        let topic_path = path.key("schemas").key(topic_text.as_str());
        let topic = name(&topic_text, "topic", &topic_path.the_key())?;
        publishable(&topic_text, &topic_path.the_key())?;
        let compiled = build_schema(schema, &topic_path, base_dir)?;
        schemas.insert(topic, compiled);
    }
    let retention = match &doc.retention {
        Some(retention) => Some(build_retention(retention, &path.key("retention"))?),
        None => None,
    };
    Ok(Namespace {
        name: ns_name,
        deduplication: doc.deduplication,
        schemas,
        retention,
    })
}

fn build_retention(doc: &RetentionDoc, path: &NodePath) -> Checked<Retention> {
    let minutes = retention::time_limit(&doc.time.0);
    let minutes = minutes.or_else(|reason| problem(path.key("time"), reason))?;
    let mebibytes = retention::size_limit(&doc.size.0);
    let mebibytes = mebibytes.or_else(|reason| problem(path.key("size"), reason))?;
    Ok(Retention { minutes, mebibytes })
}

/// An inline schema (an object, or `true`/`false`), or a path to a JSON or
/// YAML file holding one.
fn build_schema(
    schema: Value,
    path: &NodePath,
    base_dir: Option<&Path>,
) -> Checked<CompiledSchema> {
    let (schema, file) = match schema {
        Value::String(file) => {
            let file = resolve(&file, base_dir);
            (read_schema_file(&file, path)?, Some(file))
        }
        Value::Object(_) | Value::Bool(_) => (schema, None),
        other => {
            return problem(
                path.clone(),
                format!(
                    "expected an inline JSON Schema (a mapping) or the path of a schema file, \
                     got {}",
                    kind_of(&other)
                ),
            );
        }
    };
    let display = file.as_ref().map(|f| format!(" in {}", f.display()));
    CompiledSchema::compile(schema, file).or_else(|message| {
        problem(
            path.clone(),
            format!("schema{} is {message}", display.unwrap_or_default()),
        )
    })
}

fn resolve(file: &str, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    }
}

fn read_schema_file(file: &Path, path: &NodePath) -> Checked<Value> {
    let text = std::fs::read_to_string(file).or_else(|e| {
        problem(
            path.clone(),
            format!("cannot read schema file {}: {e}", file.display()),
        )
    })?;
    let is_json = file
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.or_else(|e| {
        problem(
            path.clone(),
            format!("schema file {} does not parse: {e}", file.display()),
        )
    })
}

fn certificate(doc: CertificateDoc, path: &NodePath) -> Checked<Certificate> {
    non_empty(&doc.name, "certificate name", &path.key("name"))?;
    check_role(&doc.role, &path.key("role"))?;
    for (i, san) in doc.sans.iter().enumerate() {
        let san_path = path.key("sans").index(i);
        non_empty(san, "subject alternative name", &san_path)?;
        if san.chars().any(char::is_whitespace) {
            return problem(
                san_path,
                format!("subject alternative name {san:?} contains whitespace"),
            );
        }
    }
    let validity = duration(&doc.validity, &path.key("validity"))?;
    let renew_before = duration(&doc.renew_before, &path.key("renew_before"))?;
    if renew_before >= validity {
        return problem(
            path.key("renew_before"),
            format!(
                "renew_before ({}) must be shorter than validity ({})",
                doc.renew_before.0, doc.validity.0
            ),
        );
    }
    non_empty(&doc.secret, "secret name", &path.key("secret"))?;
    non_empty(&doc.ca_secret, "secret name", &path.key("ca_secret"))?;
    if doc.secret == doc.ca_secret {
        return problem(
            path.key("ca_secret"),
            "ca_secret names the certificate's own secret; the CA must be kept apart",
        );
    }
    Ok(Certificate {
        name: doc.name,
        role: doc.role,
        sans: doc.sans,
        validity,
        renew_before,
        secret: doc.secret,
        ca_secret: doc.ca_secret,
    })
}

const DAY: Duration = Duration::from_secs(86_400);

fn provenance(doc: ProvenanceDoc, path: &NodePath) -> Checked<ProvenanceSettings> {
    non_empty(&doc.issuer, "provenance issuer", &path.key("issuer"))?;
    // It is a claim every consumer compares byte for byte.
    if !doc.issuer.bytes().all(|b| b.is_ascii_graphic()) {
        return problem(
            path.key("issuer"),
            format!(
                "issuer {:?} must be printable ASCII without spaces",
                doc.issuer
            ),
        );
    }
    non_empty(
        &doc.signing_secret,
        "secret name",
        &path.key("signing_secret"),
    )?;
    let or = |d: &Option<DurationDoc>, key: &str, default: Duration| match d {
        Some(text) => duration(text, &path.key(key)),
        None => Ok(default),
    };
    let rotate_every = or(&doc.rotate_every, "rotate_every", 30 * DAY)?;
    let retain_retired = or(&doc.retain_retired, "retain_retired", 30 * DAY)?;
    let publish_lead = or(&doc.publish_lead, "publish_lead", Duration::from_secs(3600))?;
    if publish_lead >= rotate_every {
        return problem(
            path.key("publish_lead"),
            "publish_lead must be shorter than rotate_every, or no key would ever be old \
             enough to sign",
        );
    }
    Ok(ProvenanceSettings {
        issuer: doc.issuer,
        signing_secret: doc.signing_secret,
        rotate_every,
        retain_retired,
        publish_lead,
    })
}

/// What a secret the policy names is used for. Every use is a secret the
/// `rotate` function either writes (token and certificate secrets) or must
/// never write (the signing key, a CA): two uses of one secret would let a
/// cycle overwrite one with the other, so each needs its own secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// `pulsar.token_signing_secret`: read to mint tokens, never written.
    SigningKey,
    /// A tenant's `token_secret`: written by token rotation.
    TenantToken,
    /// A certificate entry's `secret`: written by certificate renewal.
    Certificate,
    /// A certificate entry's `ca_secret`: read to issue, never written. Only
    /// uses of this kind may share a secret (one CA issues many entries).
    Ca,
    /// `provenance.signing_secret`: written by key rotation, read by publish.
    ProvenanceKey,
}

/// Every secret the policy names, with the node that names it, in file order.
pub(super) fn secret_uses(
    pulsar: &PulsarSettings,
    tenants: &BTreeMap<PulsarName, Tenant>,
    certificates: &[Certificate],
    provenance: Option<&ProvenanceSettings>,
) -> Vec<(String, NodePath, Use)> {
    let root = NodePath::root();
    let mut uses = vec![(
        pulsar.token_signing_secret.clone(),
        root.key("pulsar").key("token_signing_secret"),
        Use::SigningKey,
    )];
    uses.extend(tenants.values().map(|t| {
        (
            t.token_secret.clone(),
            root.key("tenants").key(t.name.as_str()).key("token_secret"),
            Use::TenantToken,
        )
    }));
    for (i, c) in certificates.iter().enumerate() {
        let path = root.key("certificates").index(i);
        uses.push((c.secret.clone(), path.key("secret"), Use::Certificate));
        uses.push((c.ca_secret.clone(), path.key("ca_secret"), Use::Ca));
    }
    if let Some(p) = provenance {
        uses.push((
            p.signing_secret.clone(),
            root.key("provenance").key("signing_secret"),
            Use::ProvenanceKey,
        ));
    }
    uses
}

/// Each secret the policy names must have one use, or a typo makes rotation
/// eat its own keys: a token secret that is the signing key, a certificate
/// secret that is a CA (or the other way round) would be replaced by the next
/// cycle. Names and ARNs of one secret are compared as the same secret
/// ([`super::same_secret`]). CA secrets may be shared between entries.
fn check_secrets_are_distinct(
    pulsar: &PulsarSettings,
    tenants: &BTreeMap<PulsarName, Tenant>,
    certificates: &[Certificate],
    provenance: Option<&ProvenanceSettings>,
) -> Checked<()> {
    let uses = secret_uses(pulsar, tenants, certificates, provenance);
    for (i, (secret, path, kind)) in uses.iter().enumerate() {
        let earlier = uses[..i].iter().find(|(other, _, other_kind)| {
            !(*kind == Use::Ca && *other_kind == Use::Ca) && super::same_secret(secret, other)
        });
        if let Some((_, owner, _)) = earlier {
            return problem(
                path.clone(),
                format!(
                    "secret {secret:?} is already used by {owner}; each secret needs its own \
                     name, or rotation would overwrite one with the other"
                ),
            );
        }
    }
    Ok(())
}

fn name(text: &str, what: &'static str, path: &NodePath) -> Checked<PulsarName> {
    PulsarName::parse(text, what).or_else(|e| problem(path.clone(), format!("{e}: {text:?}")))
}

fn non_empty(text: &str, what: &str, path: &NodePath) -> Checked<()> {
    if text.trim().is_empty() {
        problem(path.clone(), format!("{what} is empty"))
    } else {
        Ok(())
    }
}

/// Pulsar roles become token subjects and segments of admin API paths.
fn check_role(role: &str, path: &NodePath) -> Checked<()> {
    non_empty(role, "role", path)?;
    if role.contains('/') || role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return problem(
            path.clone(),
            format!("role {role:?} may not contain '/', whitespace or control characters"),
        );
    }
    Ok(())
}

fn duration(text: &DurationDoc, path: &NodePath) -> Checked<Duration> {
    match parse_duration(&text.0) {
        Ok(d) if d.is_zero() => problem(path.clone(), "duration must be longer than zero"),
        Ok(d) => Ok(d),
        Err(reason) => problem(path.clone(), reason),
    }
}

fn http_url(text: &str, path: &NodePath) -> Checked<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.has_host() => Ok(url),
        Ok(_) => problem(path.clone(), format!("{text:?} is not an http(s) URL")),
        Err(e) => problem(path.clone(), format!("{text:?} is not a URL: {e}")),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod name_rule_tests {
    //! The naming rule of [`publishable`], kept beside it (the policy's own
    //! tests live in `policy/tests.rs`).
    use crate::policy::Policy;

    fn policy(schema_key: &str, topic_pattern: &str) -> Result<Policy, String> {
        let text = format!(
            r#"version: 1
pulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: kp/signing }}
identity:
  oidc:
    - {{ issuer: "https://idp.example.com", audiences: [kp], algorithms: [RS256] }}
tenants:
  payments:
    role: payments-gw
    token_secret: kp/tokens/payments
    token_ttl: 24h
    namespaces:
      orders:
        schemas:
          "{schema_key}": {{ type: object }}
rules:
  - name: r
    when: {{ issuer: "https://idp.example.com" }}
    allow: {{ tenant: payments, namespaces: [orders], topics: ["{topic_pattern}"], actions: [produce] }}
"#
        );
        Policy::from_str(&text, None).map_err(|e| e.to_string())
    }

    #[test]
    fn schema_keys_naming_a_partition_or_a_system_topic_are_refused_at_load() {
        for (key, ok) in [
            ("order-created", true),
            ("order-partition-x", true),
            ("a__b", true),
            ("order-created-partition-0", false),
            ("order-created-partition-17", false),
            ("__change_events", false),
            ("__anything", false),
        ] {
            let result = policy(key, "*");
            assert_eq!(result.is_ok(), ok, "{key}: {result:?}");
            if let Err(e) = result {
                assert!(e.contains("can never be published to"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn topic_patterns_that_only_match_partitions_or_system_topics_are_refused_at_load() {
        for (pattern, ok) in [
            ("*", true),
            ("order-*", true),
            ("*-partition-*", true),
            ("x-partition-?", true),
            ("*1", true),
            ("?_change_events", true),
            ("order-created-partition-0", false),
            ("*-partition-3", false),
            ("order-*-partition-10", false),
            ("__change_events", false),
            ("__*", false),
            ("__?x", false),
        ] {
            let result = policy("order-created", pattern);
            assert_eq!(result.is_ok(), ok, "{pattern}: {result:?}");
        }
    }
}
