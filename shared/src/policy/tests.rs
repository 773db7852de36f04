//! Tests of policy loading (strictness, messages, line numbers), decisions
//! and the queries the rest of the product makes.

use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;

const EXAMPLE: &str = include_str!("../../../policy/example.yaml");
const DEMO: &str = include_str!("../../../policy/demo.yaml");

/// DESIGN §4, verbatim.
const DESIGN_EXAMPLE: &str = r#"
version: 1
pulsar:
  cluster: standalone                 # allowedClusters for tenants the reconciler creates
  admin_roles: [kp-admin]             # tenant admin roles the reconciler sets
  token_signing_secret: kong-pulsar/token-signing-key
identity:
  oidc:
    - issuer: https://idp.example.com/oauth2/default
      audiences: [kong-pulsar]
      algorithms: [RS256]             # pinned
      jwks_uri: null                  # default: from {issuer}/.well-known/openid-configuration
      claims: { subject: sub, groups: groups, service: azp }
  iam:
    sts_endpoint: https://sts.us-east-1.amazonaws.com/
    server_id: kong-pulsar
    max_age_seconds: 900
    allowed_accounts: ["123456789012"]   # not in DESIGN §4: required since accounts are pinned
  kong:
    trusted: false
tenants:
  payments:
    role: payments-gw                 # Pulsar role (JWT sub) the functions act as for this tenant
    token_secret: kong-pulsar/tokens/payments
    token_ttl: 24h
    namespaces:
      orders:
        deduplication: true
        schemas:                      # topic -> JSON Schema (inline or a path next to the policy)
          order-created: { type: object, required: [orderId], properties: { orderId: { type: string } } }
rules:
  - name: checkout-produces-orders
    when: { issuer: "https://idp.example.com/oauth2/default", groups_any: [checkout] }   # also: subject, service, iam_arn (glob), kong_consumer, auth_method
    allow: { tenant: payments, namespaces: [orders], topics: ["*"], actions: [produce] }
certificates: []                      # X.509 material the rotate function keeps fresh (§7)
"#;

/// Two tenants, three namespaces; tests append their own `rules:`.
const BASE: &str = r#"version: 1
pulsar:
  cluster: standalone
  admin_roles: [kp-admin]
  token_signing_secret: kp/signing
identity:
  oidc:
    - issuer: https://idp.example.com
      audiences: [kong-pulsar]
      algorithms: [RS256]
tenants:
  payments:
    role: payments-gw
    token_secret: kp/tokens/payments
    token_ttl: 24h
    namespaces:
      orders:
        deduplication: true
        schemas:
          order-created: { type: object, required: [orderId], properties: { orderId: { type: string } } }
      refunds: {}
  analytics:
    role: analytics-gw
    token_secret: kp/tokens/analytics
    token_ttl: 3600
    namespaces:
      clicks: {}
"#;

const OIDC_ISSUER: &str = "https://idp.example.com";

fn with_rules(rules: &str) -> Policy {
    let text = format!("{BASE}rules:\n{rules}");
    match Policy::from_str(&text, None) {
        Ok(policy) => policy,
        Err(e) => panic!("policy did not load: {e}\n{text}"),
    }
}

/// Loads `text` expecting failure; returns the message and line.
fn failure(text: &str) -> (String, Option<usize>) {
    match Policy::from_str(text, None) {
        Ok(_) => panic!("policy loaded but should not have:\n{text}"),
        Err(e) => (e.to_string(), e.line()),
    }
}

/// `BASE` with `from` replaced by `to`, which must occur exactly once.
fn base_with(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "{from:?} is not unique in BASE"
    );
    BASE.replace(from, to)
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// Asserts loading fails on the line holding `marker`, with a message
/// containing every one of `needles`; the marker names the case.
#[track_caller]
fn assert_fails_at(text: &str, marker: &str, needles: &[&str]) {
    let (message, line) = failure(text);
    for needle in needles {
        assert!(
            message.contains(needle),
            "case {marker:?}: {needle:?} not in: {message}"
        );
    }
    assert_eq!(
        line,
        Some(line_of(text, marker)),
        "case {marker:?}: wrong line in: {message}"
    );
    assert!(
        message.contains(&format!("line {}", line_of(text, marker))),
        "case {marker:?}: {message}"
    );
}

/// `fails_at! { text => marker: [needle, …]; … }`: [`assert_fails_at`] for
/// each case (`text` a `String`).
macro_rules! fails_at {
    ($($text:expr => $marker:literal: [$($needle:expr),+ $(,)?]);+ $(;)?) => {
        $(assert_fails_at(&$text, $marker, &[$($needle),+]);)+
    };
}

/// Loads `text` expecting failure with a message containing `needle` on
/// `line`.
#[track_caller]
fn assert_fails_with(text: &str, needle: &str, line: Option<usize>) {
    let (message, found) = failure(text);
    assert!(message.contains(needle), "{needle:?} not in: {message}");
    assert_eq!(found, line, "wrong line in: {message}");
}

fn oidc_identity() -> Identity {
    Identity {
        principal: "user-1".into(),
        service: Some("checkout-web".into()),
        groups: vec!["staff".into(), "checkout".into()],
        method: AuthMethod::Oidc,
        issuer: OIDC_ISSUER.into(),
        iam_arn: None,
        kong_consumer: None,
        claims: Map::new(),
    }
}

fn iam_identity(arn: &str) -> Identity {
    Identity {
        principal: arn.into(),
        service: Some("clickstream-loader".into()),
        groups: vec![],
        method: AuthMethod::Iam,
        issuer: "aws-iam".into(),
        iam_arn: Some(arn.into()),
        kong_consumer: None,
        claims: Map::new(),
    }
}

fn kong_identity(consumer: &str) -> Identity {
    Identity {
        principal: "6f1c-consumer-id".into(),
        service: Some(consumer.into()),
        groups: vec!["partners".into()],
        method: AuthMethod::Kong,
        issuer: "kong".into(),
        iam_arn: None,
        kong_consumer: Some(consumer.into()),
        claims: Map::new(),
    }
}

fn topic(t: &str, ns: &str, name: &str) -> TopicName {
    TopicName::parse(t, ns, name).unwrap()
}

fn allowed(policy: &Policy, identity: &Identity, t: &TopicName, action: Action) -> bool {
    policy.authorize(identity, t, action).is_allowed()
}

/// [`oidc_identity`] changed by `change`.
fn oidc_with(change: impl FnOnce(&mut Identity)) -> Identity {
    let mut identity = oidc_identity();
    change(&mut identity);
    identity
}

/// `produces! { policy; case: identity, topic => expected; … }`: whether
/// `identity` may produce to `topic`, for each case.
macro_rules! produces {
    ($policy:expr; $($case:tt: $identity:expr, $topic:expr => $expected:expr);+ $(;)?) => {
        $(assert_eq!(
            allowed(&$policy, &$identity, &$topic, Action::Produce),
            $expected,
            "{}",
            $case
        );)+
    };
}

/// `BASE` with one rule `r` allowing produce on payments/orders/* when
/// `when` holds (the text [`one_rule`] loads).
fn rule_when(when: &str) -> String {
    format!(
        "{BASE}rules:\n  - name: r\n    when: {when}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
    )
}

/// `BASE` with one rule `r` for anyone allowing `allow` (a flow mapping).
fn rule_allowing(allow: &str) -> String {
    format!("{BASE}rules:\n  - name: r\n    when: {{ any: true }}\n    allow: {allow}\n")
}

/// A policy with one rule `r` allowing produce on payments/orders/* when
/// `when` holds.
fn one_rule(when: &str) -> Policy {
    let text = rule_when(when);
    match Policy::from_str(&text, None) {
        Ok(policy) => policy,
        Err(e) => panic!("policy did not load: {e}\n{text}"),
    }
}

fn orders() -> TopicName {
    topic("payments", "orders", "order-created")
}

// ---------------------------------------------------------------- parsing

#[test]
fn the_design_example_parses() {
    let policy = Policy::from_str(DESIGN_EXAMPLE, None).unwrap();
    assert_eq!(policy.pulsar().cluster.as_str(), "standalone");
    assert_eq!(policy.pulsar().admin_roles, ["kp-admin"]);
    let issuer = &policy.oidc_issuers()[0];
    assert_eq!(issuer.algorithms, [jsonwebtoken::Algorithm::RS256]);
    assert_eq!(issuer.audience_claim, "aud");
    assert_eq!(issuer.jwks_uri, None);
    assert_eq!(issuer.leeway_seconds, 30);
    assert_eq!(
        (issuer.jwks_cache_seconds, issuer.jwks_refetch_seconds),
        (3600, 30)
    );
    assert_eq!(
        issuer.claims.service.as_ref().map(ClaimPath::as_str),
        Some("azp")
    );
    let iam = policy.iam().unwrap();
    assert_eq!(iam.server_id, "kong-pulsar");
    assert_eq!(iam.max_age_seconds, 900);
    assert!(!policy.kong_trusted());
    let tenant = policy
        .tenant(&PulsarName::parse("payments", "tenant").unwrap())
        .unwrap();
    assert_eq!(tenant.role, "payments-gw");
    assert_eq!(tenant.token_ttl, Duration::from_secs(86_400));
    assert_eq!(tenant.rotate_before, Duration::from_secs(6 * 3600));
    assert!(tenant.namespaces.values().next().unwrap().deduplication);
    assert!(policy.schema_for(&orders()).is_some());
    assert!(policy.certificates().is_empty());
    assert_eq!(policy.rules()[0].name, "checkout-produces-orders");
}

#[test]
fn the_shipped_example_and_demo_policies_parse() {
    let policy = Policy::from_str(EXAMPLE, None).unwrap();
    let issuers = policy.oidc_issuers();
    assert_eq!(issuers.len(), 3);
    let cognito = policy
        .oidc_issuer("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE")
        .unwrap();
    assert_eq!(cognito.audience_claim, "client_id");
    assert_eq!(
        cognito.claims.groups.as_ref().unwrap().as_str(),
        "cognito:groups"
    );
    let okta = policy
        .oidc_issuer("https://example.okta.com/oauth2/default")
        .unwrap();
    assert_eq!(okta.claims.service.as_ref().unwrap().as_str(), "cid");
    assert_eq!(
        okta.discovery_url(),
        "https://example.okta.com/oauth2/default/.well-known/openid-configuration"
    );
    assert_eq!(
        issuers[2].algorithms,
        [
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256
        ]
    );
    let analytics = policy
        .tenant(&PulsarName::parse("analytics", "tenant").unwrap())
        .unwrap();
    assert_eq!(analytics.rotate_before, Duration::from_secs(7 * 86_400 / 4));
    assert_eq!(policy.rules().len(), 4);

    let demo = Policy::from_str(DEMO, None).unwrap();
    assert!(demo.iam().is_none());
    assert_eq!(demo.rules().len(), 2);
}

#[test]
fn json_is_accepted() {
    let text = r#"{
  "version": 1,
  "pulsar": {"cluster": "standalone", "token_signing_secret": "kp/signing"},
  "tenants": {"payments": {"role": "payments-gw", "token_secret": "kp/t", "token_ttl": "1h",
     "namespaces": {"orders": {"schemas": {"order-created": {"type": "object"}}}}}},
  "rules": [{"name": "r", "when": {"auth_method": "kong"},
     "allow": {"tenant": "payments", "namespaces": ["orders"], "topics": ["*"], "actions": ["produce"]}}]
}"#;
    let policy = Policy::from_str(text, None).unwrap();
    produces! { policy; "a Kong consumer": kong_identity("acme"), orders() => true }
    assert!(policy.schema_for(&orders()).is_some());
}

#[test]
fn json_errors_carry_line_and_column_too() {
    let text = "{\"version\": 1,\n \"pulsar\": {\"cluster\": \"standalone\", \"token_signing_secret\": \"s\", \"clustr\": 1}}";
    assert_fails_with(text, "unknown field `clustr`", Some(2));
}

#[test]
fn an_unknown_field_names_the_field_and_line() {
    fails_at! {
        rule_when("{ grups_any: [checkout] }")
            => "grups_any": ["unknown field `grups_any`", "rules[0].when"];
        base_with("    token_ttl: 24h\n", "    token_ttl: 24h\n    token_tll: 1h\n")
            => "token_tll": ["unknown field `token_tll`", "tenants.payments"];
        format!("{BASE}rule: []\n") => "rule: []": ["unknown field `rule`"];
    }
}

#[test]
fn only_version_1_is_understood() {
    fails_at! {
        base_with("version: 1", "version: 2")
            => "version: 2": ["unsupported policy version 2", "version 1"];
    }
    let (message, _) = failure(&BASE.replace("version: 1\n", ""));
    assert!(message.contains("missing field `version`"), "{message}");
}

#[test]
fn a_rule_naming_an_undefined_tenant_fails_at_its_line() {
    let text = format!(
        "{BASE}rules:\n  - name: r\n    when: {{ any: true }}\n    allow:\n      tenant: paymnts\n      namespaces: [orders]\n      topics: [\"*\"]\n      actions: [produce]\n"
    );
    fails_at! {
        text => "tenant: paymnts": [
            "rules[0].allow.tenant",
            "tenant \"paymnts\" is not defined",
            "payments",
            "analytics",
        ];
    }
}

#[test]
fn a_rule_naming_a_namespace_of_another_tenant_fails() {
    let text = format!(
        "{BASE}rules:\n  - name: r\n    when: {{ any: true }}\n    allow:\n      tenant: payments\n      namespaces:\n        - orders\n        - clicks\n      topics: [\"*\"]\n      actions: [produce]\n"
    );
    fails_at! {
        text => "- clicks": [
            "rules[0].allow.namespaces[1]",
            "namespace \"clicks\" is not defined under tenants.payments.namespaces",
            "orders, refunds",
        ];
    }
}

#[test]
fn duplicate_rule_names_fail_at_the_second() {
    let text = format!(
        "{BASE}rules:\n  - name: same\n    when: {{ any: true }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n  - name: same  # again\n    when: {{ any: true }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
    );
    fails_at! { text => "# again": ["rule name \"same\" is already used by rules[0]"] }
}

#[test]
fn an_empty_when_is_refused_and_any_must_be_explicit() {
    fails_at! {
        rule_when("{}") => "when: {}": ["`when` has no condition", "any: true"];
        rule_when("{ any: true, subject: bob }") => "any: true, subject": ["cannot be combined"];
        rule_when("{ any: false }") => "any: false": ["`any: false` means nothing"];
        rule_when("{ groups_any: [] }") => "groups_any: []": ["could never match"];
        rule_when("{ subject: \"\" }") => "subject: \"\"": ["subject is empty"];
    }
    let (message, _) = failure(&format!(
        "{BASE}rules:\n  - name: r\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
    ));
    assert!(message.contains("missing field `when`"), "{message}");

    let policy = one_rule("{ any: true }");
    assert!(policy.rules()[0].when.is_anyone());
    produces! { policy; "an IAM role": iam_identity("arn:aws:iam::1:role/x"), orders() => true }
}

#[test]
fn invalid_names_are_refused() {
    let allowing = |namespaces: &str, topics: &str| {
        rule_allowing(&format!(
            "{{ tenant: payments, namespaces: {namespaces}, topics: {topics}, actions: [produce] }}"
        ))
    };
    fails_at! {
        base_with("  analytics:\n", "  \"analytics/x\":\n")
            => "analytics/x": ["tenant contains a character outside", "analytics/x"];
        base_with("      refunds: {}\n", "      refunds..old: {}\n")
            => "refunds..old": ["namespace may not be '.' or '..'"];
        base_with("          order-created:", "          \"order created\":")
            => "order created": ["topic contains a character outside"];
        allowing("[orders]", "[\"orders/*\"]")
            => "orders/*": ["topic pattern \"orders/*\" contains '/'"];
        allowing("[\"ord*\"]", "[\"*\"]")
            => "ord*": ["namespace pattern \"ord*\" is not supported"];
        allowing("[\"*\", orders]", "[\"*\"]")
            => "namespaces: [\"*\", orders]": ["\"*\" alone"];
    }
}

#[test]
fn an_unknown_action_is_refused() {
    let actions = |actions: &str| {
        rule_allowing(&format!(
            "{{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: {actions} }}"
        ))
    };
    fails_at! {
        actions("[publish]")
            => "actions: [publish]": ["unknown variant `publish`", "produce", "consume"];
        actions("[]") => "actions: []": ["actions is empty"];
    }
}

#[test]
fn algorithms_are_pinned_to_asymmetric_ones() {
    let algorithms =
        |list: &str| base_with("algorithms: [RS256]", &format!("algorithms: [{list}]"));
    fails_at! {
        algorithms("RS256, HS256") => "HS256": [
            "identity.oidc[0].algorithms[1]",
            "\"HS256\" is refused",
            "public JWKS",
            "EdDSA",
        ];
        algorithms("RS257") => "RS257": ["unknown algorithm \"RS257\"", "PS256"];
        algorithms("") => "algorithms: []": ["algorithms is empty"];
    }
    for alg in [
        "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        assert!(Policy::from_str(&algorithms(alg), None).is_ok(), "{alg}");
    }
}

#[test]
fn oidc_settings_are_checked() {
    fails_at! {
        base_with("https://idp.example.com", "idp.example.com") => "issuer: idp": ["is not a URL"];
        base_with("audiences: [kong-pulsar]", "audiences: []")
            => "audiences: []": ["audiences is empty"];
        base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      leeway_seconds: 3600\n",
        ) => "leeway_seconds": ["leeway_seconds 3600 is too large"];
        base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      jwks_cache_seconds: 0\n",
        ) => "jwks_cache_seconds": ["jwks_cache_seconds 0 is out of range"];
        base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      jwks_cache_seconds: 172800\n",
        ) => "jwks_cache_seconds": ["twice this long"];
        base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      jwks_refetch_seconds: 0\n",
        ) => "jwks_refetch_seconds": ["jwks_refetch_seconds 0 is out of range"];
        base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      jwks_cache_seconds: 10\n      jwks_refetch_seconds: 20\n",
        ) => "jwks_refetch_seconds": ["at most jwks_cache_seconds"];
    }
    // A short cache brings the default refetch interval down with it.
    let short = Policy::from_str(
        &base_with(
            "      algorithms: [RS256]\n",
            "      algorithms: [RS256]\n      jwks_cache_seconds: 5\n",
        ),
        None,
    )
    .unwrap();
    let issuer = &short.oidc_issuers()[0];
    assert_eq!(
        (issuer.jwks_cache_seconds, issuer.jwks_refetch_seconds),
        (5, 5)
    );
    let text = base_with(
        "      algorithms: [RS256]\n",
        "      algorithms: [RS256]\n    - issuer: https://idp.example.com\n      audiences: [x]\n      algorithms: [ES256]\n",
    );
    assert_fails_with(&text, "is listed twice", Some(11));
}

#[test]
fn durations_are_checked() {
    fails_at! {
        base_with("token_ttl: 24h", "token_ttl: 24 hours")
            => "24 hours": ["tenants.payments.token_ttl", "unknown duration unit"];
        base_with("token_ttl: 24h", "token_ttl: 0s") => "token_ttl: 0s": ["longer than zero"];
        base_with("token_ttl: 24h\n", "token_ttl: 24h\n    rotate_before: 1d\n")
            => "rotate_before": ["must be shorter than token_ttl"];
    }
    // A bare YAML integer is a number of seconds.
    let policy = with_rules("  []\n");
    let analytics = policy
        .tenant(&PulsarName::parse("analytics", "tenant").unwrap())
        .unwrap();
    assert_eq!(analytics.token_ttl, Duration::from_secs(3600));
    assert_eq!(analytics.rotate_before, Duration::from_secs(900));
}

#[test]
fn an_invalid_json_schema_is_refused() {
    fails_at! {
        base_with("orderId: { type: string }", "orderId: { type: strin }") => "type: strin": [
            "tenants.payments.namespaces.orders.schemas.order-created",
            "not a valid JSON Schema",
            "/properties/orderId/type",
        ];
        base_with(
            "order-created: { type: object, required: [orderId], properties: { orderId: { type: string } } }",
            "order-created: 42",
        ) => "order-created: 42": ["expected an inline JSON Schema", "a number"];
    }
}

#[test]
fn duplicate_keys_are_refused_where_serde_would_keep_the_last() {
    let text = format!(
        "{BASE}  payments:\n    role: other-gw\n    token_secret: kp/other\n    token_ttl: 1h\n"
    );
    assert_fails_with(
        &text,
        "duplicate key \"payments\"",
        Some(text.lines().count() - 3),
    );
}

#[test]
fn tenants_cannot_share_a_role_or_a_secret_or_be_admins() {
    fails_at! {
        base_with("role: analytics-gw", "role: payments-gw # shared")
            => "# shared": ["already the role of tenant \"payments\""];
        base_with("role: analytics-gw", "role: kp-admin # admin")
            => "# admin": ["also in pulsar.admin_roles"];
        base_with("token_secret: kp/tokens/analytics", "token_secret: kp/signing # dup")
            => "# dup": ["secret \"kp/signing\" is already used by pulsar.token_signing_secret"];
        base_with("role: analytics-gw", "role: \"analytics gw\"")
            => "analytics gw": ["may not contain"];
    }
}

#[test]
fn certificates_are_typed_and_checked() {
    let cert = "  - name: gw-client\n    role: payments-gw\n    sans: [gw.internal, 10.0.0.7]\n    validity: 30d\n    renew_before: 7d\n    secret: kp/certs/gw\n    ca_secret: kp/ca\n";
    let text = format!("{BASE}certificates:\n{cert}");
    let policy = Policy::from_str(&text, None).unwrap();
    let c = &policy.certificates()[0];
    assert_eq!(c.role, "payments-gw");
    assert_eq!(c.sans, ["gw.internal", "10.0.0.7"]);
    assert_eq!(c.validity, Duration::from_secs(30 * 86_400));
    assert_eq!(c.renew_before, Duration::from_secs(7 * 86_400));
    assert_eq!(c.ca_secret, "kp/ca");

    // The certificate with `from` replaced by `to`.
    let changed = |from: &str, to: &str| format!("{BASE}certificates:\n{}", cert.replace(from, to));
    fails_at! {
        changed("renew_before: 7d", "renew_before: 30d")
            => "renew_before: 30d": ["certificates[0].renew_before", "shorter than validity"];
        changed("validity: 30d", "validity: month") => "validity: month": ["expected a duration"];
        changed("    secret: kp/certs/gw\n", "    secret: kp/certs/gw\n    issuer: x\n")
            => "issuer: x": ["unknown field `issuer`"];
    }
    // A second certificate, `cert` with `from` replaced by `to`: the error
    // and its line, counted from the end.
    for (from, to, needle, from_end) in [
        (
            "kp/certs/gw",
            "kp/certs/gw2",
            "certificate name \"gw-client\" is used twice",
            6,
        ),
        (
            "gw-client",
            "gw-client-2",
            "secret \"kp/certs/gw\" is already used by certificates[0].secret",
            1,
        ),
    ] {
        let bad = format!("{BASE}certificates:\n{cert}{}", cert.replace(from, to));
        assert_fails_with(&bad, needle, Some(bad.lines().count() - from_end));
    }
}

#[test]
fn syntax_errors_and_empty_documents_are_reported() {
    let (message, line) = failure("version: 1\npulsar: [\n");
    assert!(line.is_some(), "{message}");
    let text = "version: 1\npulsar:\n  cluster: standalone\n  token_signing_secret: s\n bad: x\n";
    assert_fails_with(text, "did not find expected key at line 5", Some(5));
    let (message, _) = failure("  \n");
    assert!(message.contains("the document is empty"), "{message}");
}

// ---------------------------------------------------------------- loading

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kp-policy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(dir.join("schemas")).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_reads_a_file_and_resolves_schema_paths_next_to_it() {
    let dir = TempDir::new("load");
    std::fs::write(
        dir.0.join("schemas/refund.json"),
        r#"{"type": "object", "required": ["refundId"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.0.join("schemas/click.yaml"),
        "type: object\nrequired: [url]\n",
    )
    .unwrap();
    let text = base_with(
        "      refunds: {}\n",
        "      refunds:\n        schemas:\n          refund-issued: schemas/refund.json\n",
    )
    .replace(
        "      clicks: {}\n",
        "      clicks:\n        schemas: { click: schemas/click.yaml }\n",
    );
    let file = dir.0.join("policy.yaml");
    std::fs::write(&file, &text).unwrap();

    let policy = Policy::load(&PolicySource::File(file.clone())).unwrap();
    let refunds = policy
        .schema_for(&topic("payments", "refunds", "refund-issued"))
        .unwrap();
    assert_eq!(
        refunds.file(),
        Some(dir.0.join("schemas/refund.json").as_path())
    );
    assert!(refunds.validate(&json!({"refundId": "r1"})).is_ok());
    assert!(refunds.validate(&json!({})).is_err());
    let click = policy
        .schema_for(&topic("analytics", "clicks", "click"))
        .unwrap();
    assert!(click.validate(&json!({"url": "/"})).is_ok());

    // Inline sources resolve against the current directory instead.
    let inline = Policy::load(&PolicySource::Inline(text.clone()));
    assert!(inline.is_err());
    let via_base = Policy::from_str(&text, Some(&dir.0)).unwrap();
    assert!(
        via_base
            .schema_for(&topic("analytics", "clicks", "click"))
            .is_some()
    );
}

#[test]
fn schema_file_problems_name_the_file_and_the_line() {
    let dir = TempDir::new("schema-errors");
    std::fs::write(dir.0.join("schemas/bad.json"), r#"{"type": "objekt"}"#).unwrap();
    std::fs::write(dir.0.join("schemas/broken.json"), "{not json").unwrap();
    for (file, expected) in [
        ("schemas/missing.json", "cannot read schema file"),
        ("schemas/bad.json", "not a valid JSON Schema"),
        ("schemas/broken.json", "does not parse"),
    ] {
        let text = base_with(
            "      refunds: {}\n",
            &format!("      refunds:\n        schemas:\n          refund-issued: {file}\n"),
        );
        let path = dir.0.join("policy.yaml");
        std::fs::write(&path, &text).unwrap();
        let err = Policy::load(&PolicySource::File(path.clone())).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(file), "{message}");
        assert!(
            message.contains(&path.display().to_string()),
            "origin missing: {message}"
        );
        assert_eq!(err.line(), Some(line_of(&text, file)), "{message}");
    }
}

#[test]
fn a_missing_policy_file_is_a_read_error() {
    let err = Policy::load(&PolicySource::File("/nonexistent/kp/policy.yaml".into())).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/kp/policy.yaml"),
        "{err}"
    );
}

// ---------------------------------------------------------------- matching

#[test]
fn no_rules_means_everything_is_denied() {
    let policy = with_rules("  []\n");
    for identity in [
        oidc_identity(),
        iam_identity("arn:aws:iam::1:role/a"),
        kong_identity("acme"),
    ] {
        for action in Action::ALL {
            assert_eq!(
                policy.authorize(&identity, &orders(), action),
                Decision::Deny,
                "{:?} {action:?}",
                identity.method
            );
        }
    }
    let no_rules_key = Policy::from_str(BASE, None).unwrap();
    assert_eq!(
        no_rules_key.authorize(&oidc_identity(), &orders(), Action::Produce),
        Decision::Deny
    );
}

#[test]
fn issuer_condition() {
    let policy = one_rule("{ issuer: \"https://idp.example.com\" }");
    produces! { policy;
        "the issuer": oidc_identity(), orders() => true;
        "a trailing slash": oidc_with(|i| i.issuer = "https://idp.example.com/".into()), orders()
            => false;
        "a Kong consumer": kong_identity("acme"), orders() => false;
    }
}

#[test]
fn subject_condition() {
    let policy = one_rule("{ issuer: \"https://idp.example.com\", subject: user-1 }");
    produces! { policy;
        "the subject": oidc_identity(), orders() => true;
        "a longer subject": oidc_with(|i| i.principal = "user-10".into()), orders() => false;
    }
}

#[test]
fn groups_any_condition() {
    let policy =
        one_rule("{ issuer: \"https://idp.example.com\", groups_any: [admins, checkout] }");
    produces! { policy;
        "one of the groups": oidc_identity(), orders() => true;
        "groups are case-sensitive":
            oidc_with(|i| i.groups = vec!["staff".into(), "Checkout".into()]), orders() => false;
        "no groups": oidc_with(|i| i.groups.clear()), orders() => false;
    }
}

#[test]
fn service_condition() {
    let policy = one_rule("{ auth_method: oidc, service: checkout-web }");
    produces! { policy;
        "the service": oidc_identity(), orders() => true;
        "a longer service": oidc_with(|i| i.service = Some("checkout-webx".into())), orders()
            => false;
        "no service": oidc_with(|i| i.service = None), orders() => false;
    }
}

#[test]
fn iam_arn_condition_is_a_glob() {
    let policy = one_rule("{ iam_arn: \"arn:aws:iam::123456789012:role/clickstream-*\" }");
    let yes = iam_identity("arn:aws:iam::123456789012:role/clickstream-loader");
    produces! { policy;
        "a matching role": yes, orders() => true;
        "the prefix only": iam_identity("arn:aws:iam::123456789012:role/clickstream-"), orders()
            => true;
        "another account":
            iam_identity("arn:aws:iam::999999999999:role/clickstream-loader"), orders() => false;
        "a user": iam_identity("arn:aws:iam::123456789012:user/clickstream-loader"), orders()
            => false;
    }
    // No ARN at all never matches, even a pattern for every role.
    let every_role = one_rule("{ iam_arn: \"arn:aws:iam::123456789012:*\" }");
    produces! { every_role;
        "no ARN": oidc_identity(), orders() => false;
        "an ARN": yes, orders() => true;
        "another account":
            iam_identity("arn:aws:iam::999999999999:role/clickstream-loader"), orders() => false;
    }
}

#[test]
fn kong_consumer_condition() {
    let policy = one_rule("{ kong_consumer: acme }");
    produces! { policy;
        "the consumer": kong_identity("acme"), orders() => true;
        "a longer consumer": kong_identity("acme2"), orders() => false;
        "no consumer": oidc_identity(), orders() => false;
    }
}

#[test]
fn auth_method_condition() {
    let policy = one_rule("{ auth_method: kong }");
    produces! { policy;
        "the method": kong_identity("acme"), orders() => true;
        "another method": oidc_identity(), orders() => false;
    }
    fails_at! {
        rule_when("{ auth_method: saml }") => "saml": ["unknown variant `saml`", "oidc"];
    }
}

#[test]
fn all_conditions_must_hold() {
    let policy = one_rule(
        "{ issuer: \"https://idp.example.com\", groups_any: [checkout], service: checkout-web }",
    );
    produces! { policy;
        "all hold": oidc_identity(), orders() => true;
        "the wrong service": oidc_with(|i| i.service = Some("other".into())), orders() => false;
        "the wrong group": oidc_with(|i| i.groups = vec!["staff".into()]), orders() => false;
    }
}

#[test]
fn a_rule_for_one_tenant_never_allows_another() {
    let policy = with_rules(
        "  - name: payments-all\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [\"*\"], topics: [\"*\"], actions: [produce, consume] }\n",
    );
    let id = oidc_identity();
    produces! { policy;
        "its tenant": id, orders() => true;
        "another tenant": id, topic("analytics", "clicks", "order-created") => false;
        // Same namespace name under another tenant: still no.
        "its namespace's name elsewhere": id, topic("analytics", "orders", "order-created")
            => false;
        "a longer tenant name": id, topic("payments2", "orders", "x") => false;
    }
}

#[test]
fn namespace_wildcard_covers_the_defined_namespaces_only() {
    let policy = with_rules(
        "  - name: all-ns\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [\"*\"], topics: [\"*\"], actions: [produce] }\n",
    );
    let id = oidc_identity();
    produces! { policy;
        "orders": id, topic("payments", "orders", "a") => true;
        "refunds": id, topic("payments", "refunds", "b") => true;
        "an undefined namespace": id, topic("payments", "undefined-ns", "c") => false;
    }

    let listed = one_rule("{ any: true }");
    produces! { listed; "an unlisted namespace": id, topic("payments", "refunds", "a") => false }
}

#[test]
fn topic_globs() {
    let policy = with_rules(
        "  - name: created-events\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [orders], topics: [\"order-*\", \"audit.v?\"], actions: [produce] }\n",
    );
    let id = oidc_identity();
    for (name, expected) in [
        ("order-created", true),
        ("order-", true),
        ("order", false),
        ("xorder-created", false),
        ("audit.v1", true),
        ("audit.v12", false),
        ("audit.v", false),
    ] {
        produces! { policy; name: id, topic("payments", "orders", name) => expected }
    }
}

#[test]
fn the_action_must_be_allowed() {
    let policy = one_rule("{ any: true }");
    for (action, expected) in [(Action::Produce, true), (Action::Consume, false)] {
        assert_eq!(
            allowed(&policy, &oidc_identity(), &orders(), action),
            expected,
            "{action:?}"
        );
    }
}

#[test]
fn the_first_matching_rule_is_credited() {
    let policy = with_rules(
        "  - name: consumers\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume] }\n  - name: checkout\n    when: { issuer: \"https://idp.example.com\", groups_any: [checkout] }\n    allow: { tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }\n  - name: everyone\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }\n",
    );
    for (identity, rule) in [
        (oidc_identity(), "checkout"),
        (kong_identity("acme"), "everyone"),
    ] {
        assert_eq!(
            policy.authorize(&identity, &orders(), Action::Produce),
            Decision::Allow { rule },
            "{:?}",
            identity.method
        );
    }
}

#[test]
fn the_example_policy_decides_as_its_comments_say() {
    let policy = Policy::from_str(EXAMPLE, None).unwrap();
    let okta = oidc_with(|i| i.issuer = "https://example.okta.com/oauth2/default".into());
    assert_eq!(
        policy.authorize(&okta, &orders(), Action::Produce),
        Decision::Allow {
            rule: "checkout-produces-orders"
        }
    );
    let loader = iam_identity("arn:aws:iam::123456789012:role/clickstream-loader");
    produces! { policy;
        "checkout, refunds": okta, topic("payments", "refunds", "refund-issued") => false;
        "the loader, clicks": loader, topic("analytics", "clicks", "page-view") => true;
        "the loader, orders": loader, orders() => false;
    }
}

// ---------------------------------------------------------------- queries

#[test]
fn desired_permissions_are_the_union_per_namespace() {
    let policy = with_rules(
        "  - name: a\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [orders], topics: [\"order-*\"], actions: [produce] }\n  - name: b\n    when: { auth_method: kong }\n    allow: { tenant: payments, namespaces: [\"*\"], topics: [\"x\"], actions: [consume] }\n",
    );
    let desired = policy.desired_permissions();
    let name = |n: &str| PulsarName::parse(n, "namespace").unwrap();
    let payments = &desired[&name("payments")];
    assert_eq!(
        payments[&name("orders")],
        [Action::Produce, Action::Consume].into_iter().collect()
    );
    assert_eq!(
        payments[&name("refunds")],
        [Action::Consume].into_iter().collect()
    );
    // Untouched namespaces are listed with nothing, so grants there get revoked.
    assert_eq!(
        desired[&name("analytics")][&name("clicks")],
        ActionSet::EMPTY
    );
    assert_eq!(desired.len(), 2);
    assert_eq!(
        serde_json::to_value(payments[&name("orders")]).unwrap(),
        json!(["produce", "consume"])
    );
}

#[test]
fn topic_schemas_validate_with_json_pointers() {
    let policy = with_rules("  []\n");
    let schema = policy.schema_for(&orders()).unwrap();
    assert_eq!(schema.validate(&json!({"orderId": "o-1"})), Ok(()));
    let violations = schema.validate(&json!({"orderId": 7})).unwrap_err();
    assert_eq!(violations[0].pointer, "/orderId");
    assert_eq!(schema.schema()["required"], json!(["orderId"]));
    assert!(
        policy
            .schema_for(&topic("payments", "orders", "other"))
            .is_none()
    );
    assert!(
        policy
            .schema_for(&topic("nope", "orders", "order-created"))
            .is_none()
    );
}

#[test]
fn keycloak_style_pointer_claims_load() {
    let text = base_with(
        "      algorithms: [RS256]\n",
        "      algorithms: [RS256]\n      claims: { groups: /realm_access/roles, service: azp }\n",
    );
    let policy = Policy::from_str(&text, None).unwrap();
    let claims = &policy.oidc_issuers()[0].claims;
    assert_eq!(claims.subject.as_str(), "sub");
    assert_eq!(
        claims.groups.as_ref().unwrap().as_str(),
        "/realm_access/roles"
    );
}

// ---------------------------------------------------------------- properties

fn arb_identity() -> impl Strategy<Value = Identity> {
    (
        "[a-z0-9:/._-]{1,30}",
        proptest::option::of("[a-z-]{1,12}"),
        proptest::collection::vec("[a-z]{1,8}", 0..4),
        prop_oneof![
            Just(AuthMethod::Oidc),
            Just(AuthMethod::Iam),
            Just(AuthMethod::Kong)
        ],
        prop_oneof![
            Just(OIDC_ISSUER.to_owned()),
            Just("aws-iam".to_owned()),
            Just("kong".to_owned())
        ],
        proptest::option::of("arn:aws:iam::[0-9]{12}:role/[a-z*-]{1,12}"),
        proptest::option::of("[a-z]{1,8}"),
    )
        .prop_map(
            |(principal, service, groups, method, issuer, iam_arn, kong_consumer)| Identity {
                principal,
                service,
                groups,
                method,
                issuer,
                iam_arn,
                kong_consumer,
                claims: Map::new(),
            },
        )
}

fn arb_topic() -> impl Strategy<Value = TopicName> {
    let tenant = prop_oneof![
        Just("payments".to_owned()),
        Just("analytics".to_owned()),
        "[a-z]{1,10}"
    ];
    let namespace = prop_oneof![
        Just("orders".to_owned()),
        Just("clicks".to_owned()),
        "[a-z]{1,10}"
    ];
    (tenant, namespace, "[A-Za-z0-9_=-]{1,20}")
        .prop_map(|(t, ns, name)| TopicName::parse(&t, &ns, &name).unwrap())
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Action::Produce), Just(Action::Consume)]
}

proptest! {
    #[test]
    fn a_policy_without_rules_denies_everything(
        identity in arb_identity(),
        topic in arb_topic(),
        action in arb_action(),
    ) {
        let policy = Policy::from_str(&format!("{BASE}rules: []\n"), None).unwrap();
        prop_assert_eq!(policy.authorize(&identity, &topic, action), Decision::Deny);
    }

    #[test]
    fn rules_for_payments_never_allow_another_tenant(
        identity in arb_identity(),
        topic in arb_topic(),
        action in arb_action(),
    ) {
        let policy = with_rules(
            "  - name: everyone\n    when: { any: true }\n    allow: { tenant: payments, namespaces: [\"*\"], topics: [\"*\"], actions: [produce, consume] }\n",
        );
        let decision = policy.authorize(&identity, &topic, action);
        if topic.tenant.as_str() != "payments" {
            prop_assert_eq!(decision, Decision::Deny);
        }
    }
}

mod anchoring;
mod retention;

#[test]
fn provenance_has_defaults_and_is_checked() {
    let section = "provenance:\n  issuer: kong-pulsar-prod\n  signing_secret: kp/provenance/keys\n";
    let policy = Policy::from_str(&format!("{BASE}{section}"), None).unwrap();
    let p = policy.provenance().unwrap();
    assert_eq!(p.issuer, "kong-pulsar-prod");
    assert_eq!(p.rotate_every, Duration::from_secs(30 * 86_400));
    assert_eq!(p.retain_retired, Duration::from_secs(30 * 86_400));
    assert_eq!(p.publish_lead, Duration::from_secs(3600));
    assert!(policy.secret_uses().contains(&(
        "kp/provenance/keys".into(),
        "provenance.signing_secret".into()
    )));
    assert!(Policy::from_str(BASE, None).unwrap().provenance().is_none());
    let with = |from: &str, to: &str| format!("{BASE}{}", section.replace(from, to));
    fails_at! {
        with("kong-pulsar-prod", "\"kong pulsar\"") => "kong pulsar": ["printable ASCII without spaces"];
        with("kong-pulsar-prod", "\"\"") => "issuer: \"\"": ["provenance issuer is empty"];
        with("kp/provenance/keys", "kp/tokens/payments # dup")
            => "# dup": ["secret \"kp/tokens/payments\" is already used by tenants.payments.token_secret"];
        with("keys\n", "keys\n  publish_lead: 30d # lead\n") => "# lead": ["publish_lead must be shorter than rotate_every"];
        with("keys\n", "keys\n  retain_retired: 0s # zero\n") => "# zero": ["longer than zero"];
        with("keys\n", "keys\n  rotate: 7d # typo\n") => "# typo": ["unknown field `rotate`"];
    }
}

// ---------------------------------------------------------------- reads

#[test]
fn reads_need_a_consume_rule_and_subscriptions_a_matching_pattern() {
    let text = format!(
        "{BASE}rules:\n  - name: cursor-only\n    when: {{ any: true }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume] }}\n  - name: team-a\n    when: {{ issuer: \"{OIDC_ISSUER}\", groups_any: [checkout] }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"order-*\"], actions: [consume], subscriptions: [\"checkout-*\"] }}\n  - name: producers\n    when: {{ any: true }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
    );
    let policy = Policy::from_str(&text, None).unwrap();
    let mut outsider = oidc_identity();
    outsider.groups = vec!["billing".into()];
    let sub = |s: &str| SubscriptionName::parse(s).unwrap();
    let other_topic = topic("payments", "orders", "refunds");
    for (case, identity, topic, subscription, expected) in [
        (
            "cursor read",
            oidc_identity(),
            orders(),
            None,
            Some("cursor-only"),
        ),
        (
            "own subscription",
            oidc_identity(),
            orders(),
            Some(sub("checkout-billing")),
            Some("team-a"),
        ),
        (
            "another team's subscription",
            oidc_identity(),
            orders(),
            Some(sub("billing-main")),
            None,
        ),
        (
            "a pattern's prefix only",
            oidc_identity(),
            orders(),
            Some(sub("checkout")),
            None,
        ),
        (
            "not in the group",
            outsider.clone(),
            orders(),
            Some(sub("checkout-x")),
            None,
        ),
        (
            "outsider cursor read",
            outsider,
            orders(),
            None,
            Some("cursor-only"),
        ),
        (
            "topic outside the rule",
            oidc_identity(),
            other_topic,
            Some(sub("checkout-x")),
            None,
        ),
        (
            "undefined namespace",
            oidc_identity(),
            topic("payments", "nowhere", "x"),
            None,
            None,
        ),
    ] {
        let decision = policy.authorize_read(&identity, &topic, subscription.as_ref());
        let expected = match expected {
            Some(rule) => Decision::Allow { rule },
            None => Decision::Deny,
        };
        assert_eq!(decision, expected, "{case}");
    }
    // Producing is not reading, and reading is not producing.
    let producers_only = Policy::from_str(
        &rule_allowing(
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }",
        ),
        None,
    )
    .unwrap();
    assert_eq!(
        producers_only.authorize_read(&oidc_identity(), &orders(), None),
        Decision::Deny
    );
}

#[test]
fn subscription_patterns_are_checked_at_load() {
    for (allow, needle) in [
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce], subscriptions: [a] }",
            "add consume to actions",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume], subscriptions: [\"a/b\"] }",
            "outside",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume], subscriptions: [\"\"] }",
            "empty",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume], subscriptions: [\"__compaction\"] }",
            "reserved",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume], subscriptions: [\"__*\"] }",
            "reserved",
        ),
    ] {
        let (message, _) = failure(&rule_allowing(allow));
        assert!(
            message.contains(needle),
            "{allow}: {needle:?} not in {message}"
        );
    }
}

#[test]
fn subscription_names_refuse_reserved_and_illegal_names() {
    for bad in ["", "__compaction", "a/b", "a b", "..", &"x".repeat(256)] {
        assert!(SubscriptionName::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        SubscriptionName::parse("team-a.main").unwrap().as_str(),
        "team-a.main"
    );
}

#[test]
fn cloud_events_must_say_what_the_rule_lets_them_say() {
    let text = format!(
        "{BASE}rules:\n  - name: checkout\n    when: {{ issuer: \"{OIDC_ISSUER}\", groups_any: [checkout] }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce], ce_sources: [\"urn:checkout:*\"], ce_types: [\"com.example.order.*\"] }}\n  - name: anyone-plain\n    when: {{ any: true }}\n    allow: {{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce], ce_types: [\"never\"] }}\n"
    );
    let policy = Policy::from_str(&text, None).unwrap();
    let ce = |source, r#type| CloudEventClaim { source, r#type };
    for (case, events, expected) in [
        ("a plain event", vec![], Some("checkout")),
        (
            "its own source and type",
            vec![ce("urn:checkout:web", "com.example.order.created")],
            Some("checkout"),
        ),
        (
            "another service's source",
            vec![ce("urn:billing:web", "com.example.order.created")],
            None,
        ),
        (
            "a type outside the patterns",
            vec![ce("urn:checkout:web", "com.example.refund")],
            None,
        ),
        (
            "one bad event of a batch",
            vec![
                ce("urn:checkout:a", "com.example.order.x"),
                ce("urn:billing", "com.example.order.x"),
            ],
            None,
        ),
        (
            "a prefix is not a match",
            vec![ce("urn:checkout", "com.example.order.x")],
            None,
        ),
    ] {
        let decision = policy.authorize_produce(&oidc_identity(), &orders(), &events);
        let expected = expected.map_or(Decision::Deny, |rule| Decision::Allow { rule });
        assert_eq!(decision, expected, "{case}");
    }
    // A rule without patterns admits any CloudEvent.
    let open = Policy::from_str(
        &rule_allowing(
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce] }",
        ),
        None,
    )
    .unwrap();
    assert!(
        open.authorize_produce(&oidc_identity(), &orders(), &[ce("anything", "at all")])
            .is_allowed()
    );
    for (allow, needle) in [
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [consume], ce_sources: [a] }",
            "add produce to actions",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce], ce_types: [\"a b\"] }",
            "space",
        ),
        (
            "{ tenant: payments, namespaces: [orders], topics: [\"*\"], actions: [produce], ce_sources: [\"\"] }",
            "empty",
        ),
    ] {
        let (message, _) = failure(&rule_allowing(allow));
        assert!(
            message.contains(needle),
            "{allow}: {needle:?} not in {message}"
        );
    }
}
