//! The rules the rotation engine owns, shown once per kind of secret against
//! moto (and, for tokens, the real broker): whatever the kind, a failed test
//! takes `AWSPENDING` off again, a secret scheduled for deletion is refused
//! (by the cycle and by the four-step protocol), a converged second cycle
//! changes nothing, and `force` replaces a fresh value.
//!
//! Each rule is one generic function over [`SecretKind`]; each kind supplies
//! a `good` instance (its values pass their test) and a `broken` one over the
//! same secret (values mint but fail their test): for tokens a signing key
//! the broker does not trust, for certificates a validity of zero, so the
//! issued certificate is already expired when it is checked.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kong_pulsar::policy::{Certificate, Policy};
use kong_pulsar::pulsar::broker::Timeouts;
use kong_pulsar::rotation::kinds::certificate::CertificateKind;
use kong_pulsar::rotation::kinds::token::TokenKind;
use kong_pulsar::rotation::{
    FailedStep, ForbiddenRoles, Outcome, Reason, RotateOptions, RotationError, RotationStep,
    SecretKind, SecretReport, StepRefused, cycle, describe, rotation_step,
};
use kp_tests::{secrets, stack, unique};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;

const FORCE: RotateOptions = RotateOptions {
    force: true,
    dry_run: false,
    concurrency: 1,
};

async fn client() -> Client {
    Client::new(&stack().aws_config().await)
}

async fn once<K: SecretKind>(kind: &K, client: &Client, options: RotateOptions) -> Outcome {
    let reports: Vec<SecretReport> = cycle(kind, client, options, &ForbiddenRoles::none()).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    reports.into_iter().next().unwrap().outcome
}

async fn current_version(client: &Client, secret: &str) -> String {
    secrets::staged(client, secret, "AWSCURRENT")
        .await
        .unwrap_or_else(|| panic!("{secret} has no AWSCURRENT"))
        .0
}

fn pending_versions(stages: &HashMap<String, Vec<String>>) -> Vec<&String> {
    stages
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == "AWSPENDING"))
        .map(|(version, _)| version)
        .collect()
}

// ------------------------------------------------------------ the rules ---

async fn a_failed_test_unstages_pending<K: SecretKind>(
    good: &K,
    broken: &K,
    client: &Client,
    secret: &str,
) {
    let created = once(good, client, RotateOptions::default()).await;
    assert!(matches!(created, Outcome::Created { .. }), "{created:?}");
    let before = current_version(client, secret).await;

    let failed = once(broken, client, FORCE).await;
    let Outcome::Failed { step, error } = &failed else {
        panic!("{failed:?}")
    };
    assert_eq!(*step, FailedStep::Test, "{error}");
    let stages = secrets::stages(client, secret).await;
    assert!(pending_versions(&stages).is_empty(), "{stages:?}");
    // The value that failed stays stored (Secrets Manager keeps versions) but
    // carries no label, so no reader and no later rotation can pick it up.
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert_eq!(current_version(client, secret).await, before);
}

async fn a_secret_scheduled_for_deletion_is_refused<K: SecretKind>(
    kind: &K,
    client: &Client,
    secret: &str,
) {
    once(kind, client, RotateOptions::default()).await;
    let version = current_version(client, secret).await;
    client
        .delete_secret()
        .secret_id(secret)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();

    let refused = once(kind, client, FORCE).await;
    let Outcome::Failed { step, error } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*step, FailedStep::Describe, "{error}");
    assert!(error.contains("scheduled for deletion"), "{error}");

    let event = secrets::step_event(RotationStep::CreateSecret, secret, &version);
    let metadata = describe(client, secret).await.unwrap();
    let err = rotation_step(kind, &event, &metadata, client, &ForbiddenRoles::none())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RotationError::Refused(StepRefused::ScheduledForDeletion { .. })
        ),
        "{err:?}"
    );
    // Nothing was written to it.
    assert_eq!(
        secrets::stages(client, secret).await.len(),
        1,
        "only the first version"
    );
}

async fn a_converged_second_cycle_changes_nothing<K: SecretKind>(
    kind: &K,
    client: &Client,
    secret: &str,
) {
    let created = once(kind, client, RotateOptions::default()).await;
    assert!(
        matches!(
            created,
            Outcome::Created {
                reason: Reason::Missing,
                ..
            }
        ),
        "{created:?}"
    );
    let before = secrets::stages(client, secret).await;
    let again = once(kind, client, RotateOptions::default()).await;
    assert!(matches!(again, Outcome::Fresh { .. }), "{again:?}");
    assert_eq!(secrets::stages(client, secret).await, before);
}

async fn force_replaces_a_fresh_value<K: SecretKind>(kind: &K, client: &Client, secret: &str) {
    once(kind, client, RotateOptions::default()).await;
    let old = current_version(client, secret).await;
    let fresh = once(kind, client, RotateOptions::default()).await;
    assert!(matches!(fresh, Outcome::Fresh { .. }), "{fresh:?}");

    let forced = once(kind, client, FORCE).await;
    let Outcome::Rotated {
        reason,
        version_id,
        previous_version_id,
        ..
    } = &forced
    else {
        panic!("{forced:?}")
    };
    assert_eq!(*reason, Reason::Forced);
    assert_eq!(previous_version_id, &old);
    assert_eq!(&current_version(client, secret).await, version_id);
    let stages = secrets::stages(client, secret).await;
    assert_eq!(stages[&old], vec!["AWSPREVIOUS".to_owned()]);
    assert!(pending_versions(&stages).is_empty(), "{stages:?}");
}

// -------------------------------------------------------- tenant tokens ---

/// A one-tenant policy keeping the tenant's token in `secret`, whose signing
/// key secret holds `key`.
async fn token_policy(client: &Client, tenant: &str, secret: &str, key: &[u8]) -> Policy {
    let signing_secret = unique("kong-pulsar/token-signing-key");
    client
        .create_secret()
        .name(&signing_secret)
        .secret_string(json!({ "alg": "HS256", "key": STANDARD.encode(key) }).to_string())
        .send()
        .await
        .unwrap();
    let yaml = format!(
        "version: 1\npulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: \
         {signing_secret} }}\ntenants:\n  {tenant}:\n    role: {tenant}-gw\n    token_secret: \
         {secret}\n    token_ttl: 1h\n    rotate_before: 15m\n    namespaces:\n      orders: {{}}\n\
         rules: []\n"
    );
    Policy::from_str(&yaml, None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The good policy (the broker's signing key) and a broken one (a key the
/// broker does not know), alike in everything else, over one token secret.
async fn token_policies(client: &Client) -> (Policy, Policy, String) {
    let tenant = unique("eng");
    let secret = format!("kong-pulsar/tokens/{tenant}");
    let good = token_policy(client, &tenant, &secret, stack().token_secret()).await;
    let stranger = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].map(|u| u.into_bytes());
    let broken = token_policy(client, &tenant, &secret, stranger.as_flattened()).await;
    (good, broken, secret)
}

fn tokens(policy: &Policy) -> TokenKind<'_> {
    TokenKind::new(policy, &stack().service_url, Timeouts::default())
}

#[tokio::test]
async fn token_a_failed_test_unstages_pending() {
    let client = client().await;
    let (good, broken, secret) = token_policies(&client).await;
    a_failed_test_unstages_pending(&tokens(&good), &tokens(&broken), &client, &secret).await;
}

#[tokio::test]
async fn token_a_secret_scheduled_for_deletion_is_refused() {
    let client = client().await;
    let (good, _, secret) = token_policies(&client).await;
    a_secret_scheduled_for_deletion_is_refused(&tokens(&good), &client, &secret).await;
}

#[tokio::test]
async fn token_a_converged_second_cycle_changes_nothing() {
    let client = client().await;
    let (good, _, secret) = token_policies(&client).await;
    a_converged_second_cycle_changes_nothing(&tokens(&good), &client, &secret).await;
}

#[tokio::test]
async fn token_force_replaces_a_fresh_value() {
    let client = client().await;
    let (good, _, secret) = token_policies(&client).await;
    force_replaces_a_fresh_value(&tokens(&good), &client, &secret).await;
}

// ---------------------------------------------------------- certificates ---

/// A `certificates:` entry issued from a fresh CA stored in moto, and the
/// same entry with a validity of zero (not expressible in a policy, which
/// wants `renew_before < validity`): issued fine, expired when tested.
async fn certificate_entries(client: &Client) -> (Certificate, Certificate) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, unique("kp-engine-ca"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = params.self_signed(&key).unwrap();
    let ca_secret = unique("kong-pulsar/ca");
    client
        .create_secret()
        .name(&ca_secret)
        .secret_string(json!({ "cert_pem": ca.pem(), "key_pem": key.serialize_pem() }).to_string())
        .send()
        .await
        .unwrap();
    let name = unique("eng-cert");
    let good = Certificate {
        role: unique("eng-cert-role"),
        sans: vec!["gw.internal".into()],
        validity: Duration::from_secs(30 * 86_400),
        renew_before: Duration::from_secs(7 * 86_400),
        secret: format!("kong-pulsar/certs/{name}"),
        ca_secret,
        name,
    };
    let broken = Certificate {
        validity: Duration::ZERO,
        renew_before: Duration::ZERO,
        ..good.clone()
    };
    (good, broken)
}

#[tokio::test]
async fn certificate_a_failed_test_unstages_pending() {
    let client = client().await;
    let (good, broken) = certificate_entries(&client).await;
    let (good_kind, broken_kind) = (
        CertificateKind::new(std::slice::from_ref(&good)),
        CertificateKind::new(std::slice::from_ref(&broken)),
    );
    a_failed_test_unstages_pending(&good_kind, &broken_kind, &client, &good.secret).await;
}

#[tokio::test]
async fn certificate_a_secret_scheduled_for_deletion_is_refused() {
    let client = client().await;
    let (good, _) = certificate_entries(&client).await;
    let kind = CertificateKind::new(std::slice::from_ref(&good));
    a_secret_scheduled_for_deletion_is_refused(&kind, &client, &good.secret).await;
}

#[tokio::test]
async fn certificate_a_converged_second_cycle_changes_nothing() {
    let client = client().await;
    let (good, _) = certificate_entries(&client).await;
    let kind = CertificateKind::new(std::slice::from_ref(&good));
    a_converged_second_cycle_changes_nothing(&kind, &client, &good.secret).await;
}

#[tokio::test]
async fn certificate_force_replaces_a_fresh_value() {
    let client = client().await;
    let (good, _) = certificate_entries(&client).await;
    let kind = CertificateKind::new(std::slice::from_ref(&good));
    force_replaces_a_fresh_value(&kind, &client, &good.secret).await;
}
