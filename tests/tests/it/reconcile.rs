//! The reconciler against the real broker: from an empty broker one run sets
//! up what the policy says (checked through the admin API and by what the
//! tenant role's token may do), drift is corrected only where the policy
//! rules, a dry run changes nothing, a failing tenant does not stop the
//! others, and the schema-enforcement decision holds up.

use std::collections::BTreeSet;
use std::time::Duration;

use kong_pulsar::policy::Policy;
use kong_pulsar::pulsar::admin::{AdminClient, AdminError, TenantInfo};
use kong_pulsar::pulsar::broker::BrokerError;
use kong_pulsar::rotation::reconcile::{
    Change, Drift, Options, Report, SCHEMA_FORMAT_PROPERTY, reconcile, reconcile_with,
};
use kong_pulsar::secrets::SecretValue;
use kp_tests::{stack, unique};
use serde_json::{Value, json};

const ADMIN_ROLE: &str = "kp-admin";

/// The log-capturing test installs a scoped subscriber; tracing caches each
/// callsite's interest process-wide, so events from tests running at the same
/// time can be cached as "never" and the capture misses lines. That test
/// takes this lock exclusively, every other test shares it.
static LOG_CAPTURE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn admin_client() -> AdminClient {
    let stack = stack();
    AdminClient::new(
        stack.admin_url.clone(),
        SecretValue::new(stack.superuser_token()),
    )
    .unwrap()
}

fn policy(tenants_and_rules: &str) -> Policy {
    let text = format!(
        "version: 1\n\
         pulsar: {{ cluster: standalone, admin_roles: [{ADMIN_ROLE}], token_signing_secret: kp/signing }}\n\
         {tenants_and_rules}"
    );
    Policy::from_str(&text, None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One tenant entry of a policy.
fn tenant(name: &str, role: &str, namespaces: &str) -> String {
    format!(
        "  {name}:\n    role: {role}\n    token_secret: kp/tokens/{name}\n    token_ttl: 24h\n    namespaces:\n{namespaces}"
    )
}

/// A rule letting anyone do `actions` in `tenant`'s `namespaces`.
fn rule(tenant: &str, namespaces: &str, actions: &str) -> String {
    format!(
        "  - name: {}\n    when: {{ any: true }}\n    allow: {{ tenant: {tenant}, namespaces: [{namespaces}], topics: [\"*\"], actions: [{actions}] }}\n",
        unique("rule")
    )
}

fn document(tenants: &[String], rules: &[String]) -> String {
    format!("tenants:\n{}rules:\n{}", tenants.concat(), rules.concat())
}

fn topic(tenant: &str, namespace: &str, topic: &str) -> String {
    format!("persistent://{tenant}/{namespace}/{topic}")
}

/// Whether `role` can open a producer on `topic` right now.
async fn produce_check(role: &str, topic: &str) -> Result<(), BrokerError> {
    let stack = stack();
    stack.produce_as(&stack.mint_token(role), topic).await
}

/// Waits (briefly) for the broker to see a permission change: it applies
/// namespace policy updates asynchronously.
async fn eventually_refused(role: &str, topic: &str) -> BrokerError {
    let mut last = None;
    for _ in 0..20 {
        match produce_check(role, topic).await {
            Err(err @ BrokerError::Forbidden(_)) => return err,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{role} was never refused on {topic}: last {last:?}");
}

async fn eventually_allowed(role: &str, topic: &str) {
    let mut last = None;
    for _ in 0..20 {
        match produce_check(role, topic).await {
            Ok(()) => return,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{role} was never allowed on {topic}: last {last:?}");
}

fn kinds(report: &Report) -> Vec<(&'static str, String)> {
    report
        .changes
        .iter()
        .map(|c| {
            let at = [Some(c.tenant()), c.namespace(), c.role().or(c.topic())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/");
            (c.kind(), at)
        })
        .collect()
}

fn roles(perms: &kong_pulsar::pulsar::admin::Permissions) -> BTreeSet<&str> {
    perms.keys().map(String::as_str).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

mod retention;

#[tokio::test]
async fn from_empty_one_run_sets_up_what_the_policy_says_and_the_broker_enforces_it() {
    let _shared = LOG_CAPTURE.read().await;
    let admin = admin_client();
    let (t, role) = (unique("rc"), unique("rc-role"));
    let policy = policy(&document(
        &[tenant(
            &t,
            &role,
            "      orders:\n        deduplication: true\n        schemas:\n          order-created: { type: object, required: [orderId], properties: { orderId: { type: string } } }\n      \
             reports: {}\n      \
             audit: {}\n",
        )],
        &[
            rule(&t, "orders", "produce"),
            rule(&t, "reports", "consume"),
        ],
    ));

    // A dry run against the empty broker plans it all and creates nothing.
    let dry = reconcile(&policy, &admin, true).await;
    assert!(dry.failures.is_empty(), "{dry:#?}");
    assert!(matches!(
        admin.tenant(&t).await,
        Err(AdminError::NotFound { .. })
    ));

    let report = reconcile(&policy, &admin, false).await;
    assert!(report.failures.is_empty(), "{report:#?}");
    assert!(!report.dry_run);
    assert_eq!(kinds(&dry), kinds(&report), "the dry run told the truth");
    let at = |ns: &str, what: &str| format!("{t}/{ns}/{what}");
    let expected: Vec<(&str, String)> = vec![
        ("create_tenant", t.clone()),
        ("create_namespace", format!("{t}/audit")),
        ("set_deduplication", format!("{t}/audit")),
        ("create_namespace", format!("{t}/orders")),
        ("grant", at("orders", &role)),
        ("set_deduplication", format!("{t}/orders")),
        ("upload_schema", at("orders", "order-created")),
        ("create_namespace", format!("{t}/reports")),
        ("grant", at("reports", &role)),
        ("set_deduplication", format!("{t}/reports")),
    ];
    assert_eq!(kinds(&report), expected);
    assert!(report.drift.is_empty(), "{:?}", report.drift);

    // Through the admin API.
    assert_eq!(
        admin.tenant(&t).await.unwrap(),
        TenantInfo {
            admin_roles: set(&[ADMIN_ROLE]),
            allowed_clusters: set(&["standalone"]),
        }
    );
    let mut namespaces = admin.namespaces(&t).await.unwrap();
    namespaces.sort();
    assert_eq!(namespaces, ["audit", "orders", "reports"]);
    let perms = admin.permissions(&t, "orders").await.unwrap();
    assert_eq!(perms.len(), 1);
    assert_eq!(perms[&role], set(&["produce"]));
    assert_eq!(
        admin.permissions(&t, "reports").await.unwrap()[&role],
        set(&["consume"])
    );
    assert!(admin.permissions(&t, "audit").await.unwrap().is_empty());
    assert_eq!(admin.deduplication(&t, "orders").await.unwrap(), Some(true));
    assert_eq!(admin.deduplication(&t, "audit").await.unwrap(), Some(false));
    assert!(
        !admin
            .schema_validation_enforced(&t, "orders")
            .await
            .unwrap()
    );
    let schema = admin
        .schema(&t, "orders", "order-created")
        .await
        .unwrap()
        .expect("schema stored");
    assert_eq!(schema.schema_type, "NONE");
    assert_eq!(
        serde_json::from_str::<Value>(&schema.data).unwrap(),
        json!({ "type": "object", "required": ["orderId"], "properties": { "orderId": { "type": "string" } } })
    );
    assert_eq!(schema.properties[SCHEMA_FORMAT_PROPERTY], "json-schema");

    // By behaviour: the tenant role's token produces where granted (also to
    // the topic that has a registered schema) and is refused elsewhere.
    produce_check(&role, &topic(&t, "orders", "order-created"))
        .await
        .unwrap();
    produce_check(&role, &topic(&t, "orders", "other"))
        .await
        .unwrap();
    for ns in ["audit", "reports"] {
        let err = produce_check(&role, &topic(&t, ns, "x")).await.unwrap_err();
        assert!(matches!(err, BrokerError::Forbidden(_)), "{ns}: {err:?}");
    }

    let again = reconcile(&policy, &admin, false).await;
    assert!(again.is_converged(), "{again:#?}");
}

#[tokio::test]
async fn drift_is_corrected_inside_managed_tenants_only_and_a_dry_run_changes_nothing() {
    let _shared = LOG_CAPTURE.read().await;
    let stack = stack();
    let admin = admin_client();
    let fixtures = stack.admin();
    let (a, role_a) = (unique("rca"), unique("rca-role"));
    let (b, role_b, role_b2) = (unique("rcb"), unique("rcb-role"), unique("rcb-role2"));
    let intruder = unique("intruder");
    let unmanaged = unique("rcu");

    let v1 = policy(&document(
        &[
            tenant(
                &a,
                &role_a,
                "      orders: { deduplication: true }\n      billing: {}\n",
            ),
            tenant(&b, &role_b, "      events: {}\n"),
        ],
        &[
            rule(&a, "orders, billing", "produce"),
            rule(&b, "events", "produce"),
        ],
    ));
    let first = reconcile(&v1, &admin, false).await;
    assert!(first.failures.is_empty(), "{first:#?}");

    // Drift made by hand.
    fixtures
        .grant(&a, "orders", &intruder, &["produce"])
        .await
        .unwrap();
    fixtures
        .grant(&a, "orders", &stack.superuser_role, &["consume"])
        .await
        .unwrap();
    fixtures
        .grant(&a, "billing", ADMIN_ROLE, &["produce"])
        .await
        .unwrap();
    fixtures.create_namespace(&a, "legacy").await.unwrap();
    fixtures
        .post(
            &format!("/admin/v2/namespaces/{a}/orders/schemaValidationEnforced"),
            json!(true),
        )
        .await
        .unwrap();
    fixtures
        .post(
            &format!("/admin/v2/namespaces/{a}/orders/deduplication"),
            json!(false),
        )
        .await
        .unwrap();
    // A tenant outside the policy, with grants of its own (one for the same
    // intruder role, which must survive there).
    fixtures.create_tenant(&unmanaged, &[]).await.unwrap();
    fixtures.create_namespace(&unmanaged, "ns").await.unwrap();
    fixtures
        .grant(&unmanaged, "ns", &intruder, &["produce"])
        .await
        .unwrap();
    fixtures
        .grant(&unmanaged, "ns", &role_a, &["produce", "consume"])
        .await
        .unwrap();

    // v2: billing is no longer in any rule; tenant B acts as a new role.
    let v2 = policy(&document(
        &[
            tenant(
                &a,
                &role_a,
                "      orders: { deduplication: true }\n      billing: {}\n",
            ),
            tenant(&b, &role_b2, "      events: {}\n"),
        ],
        &[rule(&a, "orders", "produce"), rule(&b, "events", "produce")],
    ));

    let snapshot = || async {
        let mut state = Vec::new();
        for (t, ns) in [
            (&a, "orders"),
            (&a, "billing"),
            (&b, "events"),
            (&unmanaged, "ns"),
        ] {
            state.push(json!({
                "perms": admin.permissions(t, ns).await.unwrap(),
                "dedup": admin.deduplication(t, ns).await.unwrap(),
                "enforced": admin.schema_validation_enforced(t, ns).await.unwrap(),
            }));
        }
        let mut namespaces = admin.namespaces(&a).await.unwrap();
        namespaces.sort();
        state.push(json!(namespaces));
        state.push(json!(admin.tenant(&unmanaged).await.unwrap()));
        state
    };
    let before = snapshot().await;

    let dry = reconcile(&v2, &admin, true).await;
    assert!(dry.dry_run);
    assert!(dry.failures.is_empty(), "{dry:#?}");
    let expected = vec![
        ("revoke", format!("{a}/billing/{role_a}")),
        ("revoke", format!("{a}/orders/{intruder}")),
        ("set_deduplication", format!("{a}/orders")),
        ("set_schema_validation", format!("{a}/orders")),
        ("grant", format!("{b}/events/{role_b2}")),
        ("revoke", format!("{b}/events/{role_b}")),
    ];
    assert_eq!(kinds(&dry), expected);
    let drift: BTreeSet<String> = dry
        .drift
        .iter()
        .map(|d| match d {
            Drift::UnmanagedNamespace { tenant, namespace } => format!("ns {tenant}/{namespace}"),
            Drift::KeptGrant {
                tenant,
                namespace,
                role,
                reason,
                ..
            } => format!("kept {tenant}/{namespace}/{role} {reason}"),
        })
        .collect();
    assert_eq!(
        drift,
        BTreeSet::from([
            format!("ns {a}/legacy"),
            format!("kept {a}/billing/{ADMIN_ROLE} admin_role"),
            format!("kept {a}/orders/{} super_user", stack.superuser_role),
        ])
    );
    assert!(
        serde_json::to_string(&dry).unwrap().contains(&b)
            && !serde_json::to_string(&dry).unwrap().contains(&unmanaged),
        "the unmanaged tenant is not even mentioned"
    );
    assert_eq!(snapshot().await, before, "the dry run changed something");
    produce_check(&intruder, &topic(&a, "orders", "t"))
        .await
        .expect("the intruder still produces after a dry run");

    let applied = reconcile(&v2, &admin, false).await;
    assert!(applied.failures.is_empty(), "{applied:#?}");
    assert_eq!(applied.changes, dry.changes, "the dry run told the truth");
    assert_eq!(applied.drift, dry.drift);

    let orders = admin.permissions(&a, "orders").await.unwrap();
    assert_eq!(
        roles(&orders),
        BTreeSet::from([role_a.as_str(), stack.superuser_role.as_str()])
    );
    let billing = admin.permissions(&a, "billing").await.unwrap();
    assert_eq!(roles(&billing), BTreeSet::from([ADMIN_ROLE]));
    let events = admin.permissions(&b, "events").await.unwrap();
    assert_eq!(roles(&events), BTreeSet::from([role_b2.as_str()]));
    assert_eq!(admin.deduplication(&a, "orders").await.unwrap(), Some(true));
    assert!(
        !admin
            .schema_validation_enforced(&a, "orders")
            .await
            .unwrap()
    );
    assert!(
        admin
            .namespaces(&a)
            .await
            .unwrap()
            .contains(&"legacy".to_owned()),
        "an unmanaged namespace is never deleted"
    );
    let after = snapshot().await;
    assert_eq!(after[3], before[3], "the unmanaged tenant's namespace");
    assert_eq!(after[5], before[5], "the unmanaged tenant");

    eventually_refused(&intruder, &topic(&a, "orders", "t")).await;
    eventually_refused(&role_a, &topic(&a, "billing", "t")).await;
    eventually_refused(&role_b, &topic(&b, "events", "t")).await;
    eventually_allowed(&role_b2, &topic(&b, "events", "t")).await;
    produce_check(&role_a, &topic(&a, "orders", "t"))
        .await
        .unwrap();
    produce_check(&intruder, &topic(&unmanaged, "ns", "t"))
        .await
        .expect("grants in an unmanaged tenant are untouched");

    let again = reconcile(&v2, &admin, false).await;
    assert!(again.is_converged(), "{again:#?}");
    assert_eq!(again.drift, applied.drift, "drift is still reported");
}

#[tokio::test]
async fn a_failing_tenant_is_reported_and_the_others_are_reconciled() {
    let _shared = LOG_CAPTURE.read().await;
    let fixtures = stack().admin();
    let admin = admin_client();
    let (bad, bad_role) = (unique("rcx"), unique("rcx-role"));
    let (good, good_role) = (unique("rcy"), unique("rcy-role"));
    let system_role = unique("rcz-role");

    // Someone's Java producer already registered an AVRO schema on the topic
    // the policy wants to describe: the registry refuses ours (409).
    fixtures.create_tenant(&bad, &[ADMIN_ROLE]).await.unwrap();
    fixtures.create_namespace(&bad, "orders").await.unwrap();
    fixtures
        .post(
            &format!("/admin/v2/schemas/{bad}/orders/order-created/schema"),
            json!({
                "type": "AVRO",
                "schema": r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
                "properties": {}
            }),
        )
        .await
        .unwrap();

    let schemas =
        "        schemas:\n          order-created: { type: object, required: [orderId] }\n";
    let policy = policy(&document(
        &[
            tenant(&bad, &bad_role, &format!("      orders:\n{schemas}")),
            // A policy naming a system tenant: refused, never touched.
            tenant("public", &system_role, "      default: {}\n"),
            tenant(&good, &good_role, &format!("      orders:\n{schemas}")),
        ],
        &[
            rule(&bad, "orders", "produce"),
            rule("public", "default", "produce"),
            rule(&good, "orders", "produce"),
        ],
    ));
    let public_before = fixtures
        .get("/admin/v2/namespaces/public/default/permissions")
        .await
        .unwrap();

    let report = reconcile(&policy, &admin, false).await;
    let failed: Vec<(Option<&str>, Option<&str>, &str)> = report
        .failures
        .iter()
        .map(|f| (f.tenant.as_deref(), f.namespace.as_deref(), f.step.as_str()))
        .collect();
    // Tenants run in name order: `public` comes first.
    assert_eq!(
        failed,
        [
            (Some("public"), None, "check_tenant"),
            (Some(bad.as_str()), Some("orders"), "upload_schema"),
        ],
        "{report:#?}"
    );
    assert!(report.failures[0].error.contains("system tenant"));
    let why = &report.failures[1].error;
    assert!(
        why.contains("409") && why.contains("Incompatible schema"),
        "{why}"
    );
    assert_eq!(
        report.failed_tenants(),
        BTreeSet::from([bad.as_str(), "public"])
    );

    // The failing tenant's other steps, and the other tenant, went through.
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, Change::Grant { tenant, .. } if *tenant == bad))
    );
    assert!(
        report
            .changes
            .iter()
            .any(|c| matches!(c, Change::UploadSchema { tenant, .. } if *tenant == good))
    );
    assert!(report.changes.iter().all(|c| c.tenant() != "public"));
    assert_eq!(
        fixtures
            .get("/admin/v2/namespaces/public/default/permissions")
            .await
            .unwrap(),
        public_before
    );
    produce_check(&good_role, &topic(&good, "orders", "order-created"))
        .await
        .unwrap();

    // The failure persists (it needs a human); everything else has converged.
    let again = reconcile(&policy, &admin, false).await;
    assert!(again.changes.is_empty(), "{again:#?}");
    assert_eq!(again.failures.len(), 2);
}

#[tokio::test]
async fn enforced_schema_validation_would_lock_out_our_producer_so_it_is_switched_off() {
    let _shared = LOG_CAPTURE.read().await;
    let fixtures = stack().admin();
    let admin = admin_client();
    let (t, role) = (unique("rcv"), unique("rcv-role"));
    let policy = policy(&document(
        &[tenant(
            &t,
            &role,
            "      orders:\n        schemas:\n          order-created: { type: object, required: [orderId] }\n",
        )],
        &[rule(&t, "orders", "produce")],
    ));
    let first = reconcile(&policy, &admin, false).await;
    assert!(first.failures.is_empty(), "{first:#?}");
    let with_schema = topic(&t, "orders", "order-created");
    produce_check(&role, &with_schema).await.unwrap();

    // Turned on by hand: pulsar-rs producers declare no schema, and the broker
    // refuses them on a topic that has one.
    fixtures
        .post(
            &format!("/admin/v2/namespaces/{t}/orders/schemaValidationEnforced"),
            json!(true),
        )
        .await
        .unwrap();
    let mut refused = None;
    for _ in 0..20 {
        match produce_check(&role, &with_schema).await {
            Err(err @ BrokerError::Rejected(_)) => {
                refused = Some(err);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let refused = refused.expect("enforcement refuses a producer without a schema");
    let text = format!("{refused:?}");
    assert!(text.contains("IncompatibleSchema"), "{text}");
    // A topic without a registered schema is still fine.
    produce_check(&role, &topic(&t, "orders", "no-schema"))
        .await
        .unwrap();

    let report = reconcile(&policy, &admin, false).await;
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(
        kinds(&report),
        [("set_schema_validation", format!("{t}/orders"))]
    );
    eventually_allowed(&role, &with_schema).await;
}

#[tokio::test]
async fn the_admin_client_types_the_brokers_answers() {
    let _shared = LOG_CAPTURE.read().await;
    let stack = stack();
    let admin = admin_client();
    let t = unique("rca");
    let info = TenantInfo {
        admin_roles: set(&[]),
        allowed_clusters: set(&["standalone"]),
    };
    assert!(matches!(
        admin.tenant(&t).await,
        Err(AdminError::NotFound { .. })
    ));
    admin.create_tenant(&t, &info).await.unwrap();
    let err = admin.create_tenant(&t, &info).await.unwrap_err();
    assert!(matches!(err, AdminError::Conflict { .. }), "{err:?}");
    let bad = TenantInfo {
        admin_roles: set(&[]),
        allowed_clusters: set(&["no-such-cluster"]),
    };
    let err = admin.update_tenant(&t, &bad).await.unwrap_err();
    assert!(
        matches!(err, AdminError::PreconditionFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Clusters do not exist"), "{err}");
    assert!(matches!(
        admin.create_namespace(&unique("nope"), "ns").await,
        Err(AdminError::NotFound { .. })
    ));

    // Roles are one path segment however they are spelt.
    admin.create_namespace(&t, "ns").await.unwrap();
    let odd = format!("{}@example.com:x%y", unique("odd"));
    admin
        .grant(&t, "ns", &odd, &["produce", "consume"])
        .await
        .unwrap();
    assert_eq!(
        admin.permissions(&t, "ns").await.unwrap()[&odd],
        set(&["consume", "produce"])
    );
    admin.revoke(&t, "ns", &odd).await.unwrap();
    assert!(admin.permissions(&t, "ns").await.unwrap().is_empty());
    assert_eq!(admin.deduplication(&t, "ns").await.unwrap(), None);
    assert!(admin.schema(&t, "ns", "nothing").await.unwrap().is_none());
    assert!(
        admin
            .superuser_roles()
            .await
            .unwrap()
            .contains(&stack.superuser_role)
    );

    // A JSON Schema document as Pulsar's JSON type: refused (see the
    // reconcile module docs for why policy schemas are stored as NONE).
    let err = admin
        .upload_schema(
            &t,
            "ns",
            "json-typed",
            &kong_pulsar::pulsar::admin::SchemaUpload {
                schema_type: "JSON".into(),
                schema: r#"{"type":"object","required":["orderId"]}"#.into(),
                properties: Default::default(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::Rejected { status: 422, .. }),
        "{err:?}"
    );

    let forged = AdminClient::new(
        stack.admin_url.clone(),
        SecretValue::new(kp_tests::sign_hs256(
            b"not the broker key",
            &json!({"sub": "x"}),
        )),
    )
    .unwrap();
    let err = forged.tenants().await.unwrap_err();
    assert!(matches!(err, AdminError::Unauthorized { .. }), "{err:?}");
    // An authenticated role without rights: Pulsar answers 401 for
    // tenant-level operations and 403 for namespace-level ones.
    let nobody = AdminClient::new(
        stack.admin_url.clone(),
        SecretValue::new(stack.mint_token(&unique("nobody"))),
    )
    .unwrap();
    let err = nobody.tenant(&t).await.unwrap_err();
    assert!(matches!(err, AdminError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Unauthorized to validate"),
        "{err}"
    );
    let err = nobody.permissions(&t, "ns").await.unwrap_err();
    assert!(matches!(err, AdminError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn without_admin_rights_every_tenant_fails_and_nothing_changes() {
    let _shared = LOG_CAPTURE.read().await;
    let stack = stack();
    let t = unique("rcn");
    let nobody = AdminClient::new(
        stack.admin_url.clone(),
        SecretValue::new(stack.mint_token(&unique("nobody"))),
    )
    .unwrap();
    let policy = policy(&document(
        &[tenant(&t, &unique("role"), "      ns: {}\n")],
        &[rule(&t, "ns", "produce")],
    ));
    let options = Options {
        protected_roles: set(&["break-glass"]),
    };
    let report = reconcile_with(&policy, &nobody, false, &options).await;
    assert!(report.changes.is_empty(), "{report:#?}");
    let steps: Vec<(Option<&str>, &str)> = report
        .failures
        .iter()
        .map(|f| (f.tenant.as_deref(), f.step.as_str()))
        .collect();
    assert_eq!(
        steps,
        [(None, "read_superusers"), (Some(t.as_str()), "read_tenant")]
    );
    assert!(report.failures[1].error.contains("401"), "{report:#?}");
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains(stack.superuser_token())
    );
    assert!(matches!(
        admin_client().tenant(&t).await,
        Err(AdminError::NotFound { .. })
    ));
}

#[tokio::test]
async fn every_change_is_one_structured_log_line_and_the_token_is_never_logged() {
    let _exclusive = LOG_CAPTURE.write().await;
    use tracing::instrument::WithSubscriber;

    let stack = stack();
    let admin = admin_client();
    let (t, role) = (unique("rcl"), unique("rcl-role"));
    let policy = policy(&document(
        &[tenant(&t, &role, "      orders: { deduplication: true }\n")],
        &[rule(&t, "orders", "produce")],
    ));
    for dry_run in [true, false] {
        let logs = kp_tests::logs::Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let report = reconcile(&policy, &admin, dry_run)
            .with_subscriber(subscriber)
            .await;
        assert!(report.failures.is_empty(), "{report:#?}");
        assert_eq!(report.changes.len(), 4, "{report:#?}");
        let lines = logs.lines();
        let changes: Vec<&Value> = lines
            .iter()
            .filter(|l| l["target"] == "reconcile" && l["level"] == "INFO")
            .collect();
        assert_eq!(changes.len(), report.changes.len(), "{lines:#?}");
        for (line, change) in changes.iter().zip(&report.changes) {
            assert_eq!(line["change"], change.kind());
            assert_eq!(line["tenant"], t.as_str());
            assert_eq!(line["dry_run"], dry_run);
            assert_eq!(line["namespace"].as_str(), change.namespace());
            assert_eq!(line["role"].as_str(), change.role());
        }
        let grant = changes.iter().find(|l| l["change"] == "grant").unwrap();
        assert_eq!(grant["role"], role.as_str());
        assert_eq!(grant["namespace"], "orders");
        let all = logs.text();
        assert!(!all.contains(stack.superuser_token()));
    }
}
