//! The `rules:` section: each rule's `when` (identity conditions, which must
//! be anchored to where the identity comes from) and `allow` (tenant,
//! namespaces, topic patterns, actions), and the naming rule that keeps
//! patterns off names the edge refuses.

use super::identity::is_account_id;
use super::*;
use crate::policy::Action;

pub(super) fn build_rule(
    doc: RuleDoc,
    path: &NodePath,
    tenants: &BTreeMap<PulsarName, Tenant>,
    iam: Option<&IamSettings>,
) -> Checked<Rule> {
    if doc.name.trim().is_empty() {
        return problem(path.key("name"), "rule name is empty");
    }
    let when = build_when(doc.when, &path.key("when"), &doc.name, iam)?;
    Ok(Rule {
        name: doc.name,
        when,
        allow: build_allow(doc.allow, &path.key("allow"), tenants)?,
    })
}

/// An `iam_arn` pattern must pin everything up to and including the account:
/// `arn:aws:iam::*:role/x` would admit that role name in every AWS account in
/// the world. Only the resource part (after the fifth `:`) may hold
/// wildcards; the account must be 12 digits, and (when `identity.iam` is
/// configured) one of its `allowed_accounts`, or the rule could never match.
fn iam_arn_pattern(
    pattern: &str,
    path: &NodePath,
    rule: &str,
    iam: Option<&IamSettings>,
) -> Checked<Glob> {
    let fields: Vec<&str> = pattern.splitn(6, ':').collect();
    let [arn, partition, service, _region, account, resource] = fields[..] else {
        return problem(
            path.clone(),
            format!(
                "rule {rule:?}: iam_arn {pattern:?} is not an ARN pattern; write \
                 arn:aws:iam::<12-digit account>:role/<name or pattern>"
            ),
        );
    };
    let head = &pattern[..pattern.len() - resource.len()];
    if head.contains(['*', '?']) {
        return problem(
            path.clone(),
            format!(
                "rule {rule:?}: iam_arn {pattern:?} has a wildcard before the resource; the \
                 partition, service and account must be written out, or the rule admits \
                 principals of that name in every AWS account (only the part after the \
                 account, e.g. role/checkout-*, may use * and ?)"
            ),
        );
    }
    if arn != "arn" || partition.is_empty() || service.is_empty() || resource.is_empty() {
        return problem(
            path.clone(),
            format!(
                "rule {rule:?}: iam_arn {pattern:?} is not an ARN pattern; write \
                 arn:aws:iam::<12-digit account>:role/<name or pattern>"
            ),
        );
    }
    if !is_account_id(account) {
        return problem(
            path.clone(),
            format!(
                "rule {rule:?}: iam_arn {pattern:?} must name one AWS account (12 digits), \
                 found {account:?}"
            ),
        );
    }
    if let Some(iam) = iam
        && !iam.allowed_accounts.iter().any(|a| a == account)
    {
        return problem(
            path.clone(),
            format!(
                "rule {rule:?}: iam_arn names account {account}, which is not in \
                 identity.iam.allowed_accounts, so the rule could never match"
            ),
        );
    }
    Ok(Glob::new(pattern))
}

fn build_when(
    doc: WhenDoc,
    path: &NodePath,
    rule: &str,
    iam: Option<&IamSettings>,
) -> Checked<When> {
    let string = |value: Option<String>, field: &str| -> Checked<Option<String>> {
        match value {
            Some(v) if v.is_empty() => problem(
                path.key(field),
                format!("{field} is empty; remove the condition or give a value"),
            ),
            other => Ok(other),
        }
    };
    let groups_any = match doc.groups_any {
        Some(groups) if groups.is_empty() => {
            return problem(
                path.key("groups_any"),
                "groups_any is empty, so the rule could never match; list at least one group",
            );
        }
        Some(groups) => {
            for (i, group) in groups.iter().enumerate() {
                non_empty(group, "group", &path.key("groups_any").index(i))?;
            }
            Some(groups)
        }
        None => None,
    };
    let iam_arn = string(doc.iam_arn, "iam_arn")?
        .map(|pattern| iam_arn_pattern(&pattern, &path.key("iam_arn"), rule, iam))
        .transpose()?;
    let when = When {
        issuer: string(doc.issuer, "issuer")?,
        subject: string(doc.subject, "subject")?,
        groups_any,
        service: string(doc.service, "service")?,
        iam_arn,
        kong_consumer: string(doc.kong_consumer, "kong_consumer")?,
        auth_method: doc.auth_method,
    };
    let has_conditions = when != When::default();
    let when = match (doc.any, has_conditions) {
        (None, true) | (Some(true), false) => when,
        (Some(true), true) => {
            return problem(
                path.key("any"),
                "`any: true` matches every caller and cannot be combined with other conditions; \
             remove `any` or the conditions",
            );
        }
        (Some(false), _) => {
            return problem(
                path.key("any"),
                "`any: false` means nothing; remove it (conditions alone decide)",
            );
        }
        (None, false) => {
            return problem(
                path.clone(),
                "`when` has no condition; name at least one (issuer, subject, groups_any, service, \
             iam_arn, kong_consumer, auth_method), or write `any: true` to match every \
             authenticated caller",
            );
        }
    };
    // A subject, service or group name means nothing on its own: the same
    // string can be a role in any AWS account, a federated user, or a client
    // id at any configured issuer. Such a rule must say whose names it means.
    if when.issuer.is_none() && when.auth_method.is_none() {
        let unanchored = [
            ("subject", when.subject.is_some()),
            ("service", when.service.is_some()),
            ("groups_any", when.groups_any.is_some()),
        ]
        .into_iter()
        .find_map(|(field, present)| present.then_some(field));
        if let Some(field) = unanchored {
            return problem(
                path.key(field),
                format!(
                    "rule {rule:?}: `{field}` matches that name from every identity source \
                     (any AWS account's role, any federated user, any configured issuer's \
                     client or user); pin `issuer` (an OIDC issuer, aws-iam or kong) or \
                     `auth_method` in the same `when`"
                ),
            );
        }
    }
    Ok(when)
}

fn build_allow(
    doc: AllowDoc,
    path: &NodePath,
    tenants: &BTreeMap<PulsarName, Tenant>,
) -> Checked<Allow> {
    let tenant_path = path.key("tenant");
    let tenant_name = name(&doc.tenant, "tenant", &tenant_path)?;
    let Some(tenant) = tenants.get(&tenant_name) else {
        let defined: Vec<&str> = tenants.keys().map(PulsarName::as_str).collect();
        return problem(
            tenant_path,
            format!(
                "tenant {:?} is not defined under `tenants` (defined: {})",
                doc.tenant,
                list_or_none(&defined)
            ),
        );
    };

    let ns_path = path.key("namespaces");
    if doc.namespaces.is_empty() {
        return problem(
            ns_path,
            "namespaces is empty; list namespaces of the tenant, or [\"*\"] for all of them",
        );
    }
    let namespaces = if doc.namespaces.iter().any(|n| n == "*") {
        if doc.namespaces.len() > 1 {
            return problem(
                ns_path,
                "\"*\" already means every namespace of the tenant; list either \"*\" alone or \
                 namespace names",
            );
        }
        NamespaceScope::All
    } else {
        let mut names = Vec::with_capacity(doc.namespaces.len());
        for (i, text) in doc.namespaces.iter().enumerate() {
            let item = ns_path.index(i);
            if text.contains(['*', '?']) {
                return problem(
                    item,
                    format!(
                        "namespace pattern {text:?} is not supported; use \"*\" for every \
                         namespace or list names"
                    ),
                );
            }
            let ns = name(text, "namespace", &item)?;
            if !tenant.namespaces.contains_key(&ns) {
                let defined: Vec<&str> = tenant.namespaces.keys().map(PulsarName::as_str).collect();
                return problem(
                    item,
                    format!(
                        "namespace {text:?} is not defined under tenants.{}.namespaces \
                         (defined: {})",
                        tenant.name,
                        list_or_none(&defined)
                    ),
                );
            }
            names.push(ns);
        }
        NamespaceScope::Only(names)
    };

    let topics_path = path.key("topics");
    if doc.topics.is_empty() {
        return problem(
            topics_path,
            "topics is empty; list topic names or patterns, or [\"*\"] for all topics",
        );
    }
    let mut topics = Vec::with_capacity(doc.topics.len());
    for (i, pattern) in doc.topics.iter().enumerate() {
        topics.push(topic_pattern(pattern, &topics_path.index(i))?);
    }

    if doc.actions.is_empty() {
        return problem(
            path.key("actions"),
            "actions is empty; list at least one of produce, consume",
        );
    }
    let actions = doc.actions.into_iter().collect::<ActionSet>();
    let subscriptions_path = path.key("subscriptions");
    if !doc.subscriptions.is_empty() && !actions.contains(Action::Consume) {
        return problem(
            subscriptions_path,
            "subscriptions name what a consume rule may read through; add consume to actions \
             or remove subscriptions",
        );
    }
    let mut subscriptions = Vec::with_capacity(doc.subscriptions.len());
    for (i, pattern) in doc.subscriptions.iter().enumerate() {
        subscriptions.push(subscription_pattern(pattern, &subscriptions_path.index(i))?);
    }
    let mut ce = [Vec::new(), Vec::new()];
    for (patterns, field, out) in [
        (&doc.ce_sources, "ce_sources", 0),
        (&doc.ce_types, "ce_types", 1),
    ] {
        let field_path = path.key(field);
        if !patterns.is_empty() && !actions.contains(Action::Produce) {
            return problem(
                field_path,
                format!(
                    "{field} constrain what a produce rule publishes; add produce to actions or remove {field}"
                ),
            );
        }
        for (i, pattern) in patterns.iter().enumerate() {
            // Sources are URI-references and types free strings: any
            // printable text is a pattern, nothing else could ever match.
            if pattern.is_empty() || !pattern.chars().all(|c| c.is_ascii_graphic()) {
                return problem(
                    field_path.index(i),
                    format!(
                        "{field} pattern {pattern:?} is empty or holds a space or non-ASCII character"
                    ),
                );
            }
            ce[out].push(Glob::new(pattern));
        }
    }
    let [ce_sources, ce_types] = ce;
    Ok(Allow {
        tenant: tenant_name,
        namespaces,
        topics,
        actions,
        subscriptions,
        ce_sources,
        ce_types,
    })
}

/// A subscription pattern holds subscription-name characters and the two
/// wildcards, and cannot only match Pulsar's reserved `__` names.
fn subscription_pattern(pattern: &str, path: &NodePath) -> Checked<Glob> {
    let legal =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '=' | '-' | '*' | '?');
    if pattern.is_empty() || !pattern.chars().all(legal) {
        return problem(
            path.clone(),
            format!(
                "subscription pattern {pattern:?} is empty or holds a character outside \
                 [A-Za-z0-9_.=-*?]"
            ),
        );
    }
    if pattern
        .split(['*', '?'])
        .next()
        .unwrap_or("")
        .starts_with("__")
    {
        return problem(
            path.clone(),
            format!("{pattern:?} can only match Pulsar's reserved '__' subscriptions"),
        );
    }
    Ok(Glob::new(pattern))
}

/// A topic pattern may only hold characters a topic name can, plus the two
/// wildcards; anything else could never match and is surely a mistake.
fn topic_pattern(pattern: &str, path: &NodePath) -> Checked<Glob> {
    if pattern.is_empty() {
        return problem(path.clone(), "topic pattern is empty");
    }
    let legal =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '=' | '-' | '*' | '?');
    if let Some(bad) = pattern.chars().find(|c| !legal(*c)) {
        return problem(
            path.clone(),
            format!(
                "topic pattern {pattern:?} contains {bad:?}; topic names use [A-Za-z0-9_.=-], \
                 patterns add * (any run) and ? (one character)"
            ),
        );
    }
    publishable(pattern, path)?;
    Ok(Glob::new(pattern))
}

/// The edge refuses `__`-prefixed and `-partition-<n>` topic names
/// ([`check_publishable`]), so a schema key or topic pattern that can only
/// match such names is a mistake (and a schema on one partition would be a
/// side door around the topic's own). Checks the literal start (before the
/// first wildcard) and, for the partition suffix, the literal end (after the
/// last wildcard); a pattern that can also match ordinary names is kept.
pub(super) fn publishable(pattern: &str, path: &NodePath) -> Checked<()> {
    let head = pattern.split(['*', '?']).next().unwrap_or("");
    let tail = pattern.rsplit(['*', '?']).next().unwrap_or("");
    let refused = if head.starts_with("__") {
        check_publishable("__", "topic").err()
    } else if is_partition_name(tail) {
        Some(NameError::PartitionName)
    } else {
        None
    };
    match refused {
        Some(rule) => problem(
            path.clone(),
            format!("{pattern:?} can never be published to: {rule}"),
        ),
        None => Ok(()),
    }
}
