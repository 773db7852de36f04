//! Tenant token rotation against the real stack: tokens minted with the
//! signing key from moto, staged and promoted in moto, and proven against the
//! real broker (token authentication and authorization on).
//!
//! moto 5.2 cannot run a rotation Lambda, so the four-step tests reproduce
//! what `RotateSecret` does before invoking `createSecret` by calling it with
//! a Lambda ARN that does not exist: moto enables rotation and stages the
//! request token as a value-less `AWSPENDING` version, then fails to find the
//! Lambda. That is exactly the state AWS hands the rotation function; real
//! AWS would refuse the unknown ARN up front. Reads name `AWSCURRENT`
//! explicitly, because moto's stage-less `GetSecretValue` lags behind
//! `UpdateSecretVersionStage` (see `shared/src/rotation/store.rs`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use kong_pulsar::policy::Policy;
use kong_pulsar::pulsar::broker::{BrokerError, Timeouts};
use kong_pulsar::rotation::kinds::token::{ProbeError, TokenKind, TokenTestError};
use kong_pulsar::rotation::{
    FailedStep, ForbiddenRoles, Outcome, Reason, RotateOptions, RotationError, RotationStep,
    RotationStepEvent, SecretReport, StepAction, StepRefused, StepReport, cycle, describe,
    rotation_step,
};
use kong_pulsar::secrets::{SecretValue, TenantToken};
use kp_tests::app::token_secret;
use kp_tests::{logs, secrets, stack, unique};
use serde_json::json;

const NAMESPACE: &str = "orders";

/// One tenant of a test policy.
struct TenantSpec {
    tenant: String,
    role: String,
    secret: String,
}

impl TenantSpec {
    fn new() -> Self {
        let tenant = unique("rot");
        Self {
            role: unique("rot-role"),
            secret: format!("kong-pulsar/tokens/{tenant}"),
            tenant,
        }
    }

    /// Creates the tenant and namespace on the broker and grants the role
    /// `produce` there, as the reconciler would.
    async fn on_broker(self) -> Self {
        let admin = stack().admin();
        admin.create_tenant(&self.tenant, &[]).await.unwrap();
        admin
            .create_namespace(&self.tenant, NAMESPACE)
            .await
            .unwrap();
        admin
            .grant(&self.tenant, NAMESPACE, &self.role, &["produce"])
            .await
            .unwrap();
        self
    }

    fn topic(&self) -> String {
        format!("persistent://{}/{NAMESPACE}/{}", self.tenant, unique("t"))
    }
}

struct Fixture {
    client: Client,
    policy: Policy,
    signing_secret: String,
}

/// A policy over `tenants` (token_ttl 1h, rotate_before 15m) whose signing
/// key secret holds `key` (the broker's own unless a test breaks it).
async fn fixture(tenants: &[&TenantSpec], key: &[u8]) -> Fixture {
    logs::global();
    let client = Client::new(&stack().aws_config().await);
    let signing_secret = unique("kong-pulsar/token-signing-key");
    client
        .create_secret()
        .name(&signing_secret)
        .secret_string(json!({ "alg": "HS256", "key": STANDARD.encode(key) }).to_string())
        .send()
        .await
        .unwrap();
    let mut yaml = format!(
        "version: 1\npulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: \
         {signing_secret} }}\ntenants:\n"
    );
    for t in tenants {
        yaml.push_str(&format!(
            "  {}:\n    role: {}\n    token_secret: {}\n    token_ttl: 1h\n    rotate_before: 15m\n    namespaces:\n      {NAMESPACE}: {{}}\n",
            t.tenant, t.role, t.secret
        ));
    }
    yaml.push_str("rules:\n");
    for t in tenants {
        yaml.push_str(&format!(
            "  - name: produce-{0}\n    when: {{ any: true }}\n    allow: {{ tenant: {0}, namespaces: [{NAMESPACE}], topics: [\"*\"], actions: [produce] }}\n",
            t.tenant
        ));
    }
    let policy = Policy::from_str(&yaml, None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Fixture {
        client,
        policy,
        signing_secret,
    }
}

impl Fixture {
    fn tokens(&self) -> TokenKind<'_> {
        TokenKind::new(&self.policy, &stack().service_url, Timeouts::default())
    }

    async fn run(&self, options: RotateOptions) -> Vec<SecretReport> {
        cycle(
            &self.tokens(),
            &self.client,
            options,
            &ForbiddenRoles::none(),
        )
        .await
    }

    async fn rotate(&self) -> Vec<SecretReport> {
        self.run(RotateOptions::default()).await
    }

    async fn step(
        &self,
        step: RotationStep,
        secret: &str,
        token: &str,
    ) -> Result<StepAction, RotationError> {
        let event = secrets::step_event(step, secret, token);
        self.step_event(&event).await.map(|report| report.action)
    }

    /// One step as the `rotate` function runs it: describe, then the kind.
    async fn step_event(&self, event: &RotationStepEvent) -> Result<StepReport, RotationError> {
        let metadata = describe(&self.client, &event.secret_id).await?;
        rotation_step(
            &self.tokens(),
            event,
            &metadata,
            &self.client,
            &ForbiddenRoles::none(),
        )
        .await
    }

    /// Stores a stack-minted token for `t` expiring in `ttl` as the secret's
    /// first version; returns the token and its version id.
    async fn seed(&self, t: &TenantSpec, ttl: Duration) -> (String, String) {
        let token = stack().mint_token_expiring(&t.role, ttl, true);
        let out = self
            .client
            .create_secret()
            .name(&t.secret)
            .secret_string(token_secret(&token, &t.role, ttl))
            .send()
            .await
            .unwrap();
        (token, out.version_id.unwrap())
    }

    /// (version id, parsed token) of the version carrying `stage`.
    async fn staged(&self, secret: &str, stage: &str) -> Option<(String, TenantToken)> {
        let (version_id, value) = secrets::staged(&self.client, secret, stage).await?;
        let token = TenantToken::parse(secret, &SecretValue::new(value)).unwrap();
        Some((version_id, token))
    }

    async fn current(&self, secret: &str) -> (String, TenantToken) {
        self.staged(secret, "AWSCURRENT")
            .await
            .unwrap_or_else(|| panic!("{secret} has no AWSCURRENT"))
    }

    async fn stages(&self, secret: &str) -> HashMap<String, Vec<String>> {
        secrets::stages(&self.client, secret).await
    }

    async fn begin_native_rotation(&self, secret: &str) -> String {
        secrets::begin_native_rotation(&self.client, secret).await
    }
}

fn only(outcomes: &[SecretReport]) -> &Outcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    &outcomes[0].outcome
}

fn outcome_of<'a>(outcomes: &'a [SecretReport], t: &TenantSpec) -> &'a Outcome {
    &outcomes
        .iter()
        .find(|o| o.name == t.tenant)
        .unwrap_or_else(|| panic!("no outcome for {}: {outcomes:#?}", t.tenant))
        .outcome
}

/// Proves the broker accepts `token` as a producer on a granted namespace.
async fn produces(t: &TenantSpec, token: &str) {
    stack()
        .produce_as(token, &t.topic())
        .await
        .unwrap_or_else(|e| panic!("the broker refused the token: {e:?}"));
}

fn random_key() -> Vec<u8> {
    [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat()
}

fn near(a: chrono::DateTime<Utc>, b: chrono::DateTime<Utc>) -> bool {
    (a - b).num_seconds().abs() <= 5
}

#[tokio::test]
async fn a_missing_secret_is_created_then_left_alone_while_fresh() {
    let t = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t], stack().token_secret()).await;

    let outcomes = fx.rotate().await;
    let Outcome::Created {
        reason,
        version_id,
        expires_at,
        fingerprint,
        check,
    } = only(&outcomes)
    else {
        panic!("{outcomes:#?}")
    };
    assert_eq!(*reason, Reason::Missing);
    assert!(near(*expires_at, Utc::now() + chrono::Duration::hours(1)));
    assert_eq!(check["access"], "authorized", "{check}");

    let (current_version, token) = fx.current(&t.secret).await;
    assert_eq!(&current_version, version_id);
    assert_eq!(token.role.as_deref(), Some(t.role.as_str()));
    assert_eq!(token.expires_at, Some(*expires_at));
    assert_eq!(&token.token.fingerprint(), fingerprint);
    produces(&t, token.token.expose()).await;

    // A second run right after changes nothing.
    let again = fx.rotate().await;
    assert!(
        matches!(only(&again), Outcome::Fresh { expires_at: e } if e == expires_at),
        "{again:#?}"
    );
    assert_eq!(fx.current(&t.secret).await.0, current_version);
    assert_eq!(fx.stages(&t.secret).await.len(), 1);
}

#[tokio::test]
async fn a_token_inside_its_window_is_rotated_and_the_old_one_keeps_working() {
    let t = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t], stack().token_secret()).await;
    // Expires in 10 minutes: inside the 15-minute window.
    let (old_token, old_version) = fx.seed(&t, Duration::from_secs(600)).await;

    let outcomes = fx.rotate().await;
    let Outcome::Rotated {
        reason,
        version_id,
        previous_version_id,
        old_expires_at,
        new_expires_at,
        previous_fingerprint,
        check,
        ..
    } = only(&outcomes)
    else {
        panic!("{outcomes:#?}")
    };
    assert_eq!(*reason, Reason::Expiring);
    assert_eq!(previous_version_id, &old_version);
    assert!(near(
        old_expires_at.unwrap(),
        Utc::now() + chrono::Duration::minutes(10)
    ));
    assert!(near(
        *new_expires_at,
        Utc::now() + chrono::Duration::hours(1)
    ));
    assert_eq!(
        previous_fingerprint.as_deref(),
        Some(SecretValue::new(old_token.as_str()).fingerprint().as_str())
    );
    assert_eq!(check["access"], "authorized", "{check}");

    // AWSCURRENT is the new version, AWSPREVIOUS the old one, nothing pending.
    let (current_version, new_token) = fx.current(&t.secret).await;
    assert_eq!(&current_version, version_id);
    assert_ne!(new_token.token.expose(), old_token);
    let (previous_version, previous) = fx.staged(&t.secret, "AWSPREVIOUS").await.unwrap();
    assert_eq!(previous_version, old_version);
    assert_eq!(previous.token.expose(), old_token);
    let stages = fx.stages(&t.secret).await;
    assert_eq!(stages[version_id], vec!["AWSCURRENT".to_owned()]);
    assert!(
        !stages.values().flatten().any(|s| s == "AWSPENDING"),
        "{stages:?}"
    );

    // Both tokens work: the old one until its own expiry.
    produces(&t, new_token.token.expose()).await;
    produces(&t, &old_token).await;

    // Now fresh: nothing more to do.
    assert!(matches!(only(&fx.rotate().await), Outcome::Fresh { .. }));
}

#[tokio::test]
async fn force_rotates_a_fresh_token_and_dry_run_changes_nothing() {
    let due = TenantSpec::new().on_broker().await;
    let missing = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&due, &missing], stack().token_secret()).await;
    let (_, due_version) = fx.seed(&due, Duration::from_secs(3600)).await;

    let dry = RotateOptions {
        force: true,
        dry_run: true,
        ..RotateOptions::default()
    };
    let outcomes = fx.run(dry).await;
    assert!(
        matches!(
            outcome_of(&outcomes, &due),
            Outcome::Due {
                reason: Reason::Forced,
                expires_at: Some(_)
            }
        ),
        "{outcomes:#?}"
    );
    assert!(
        matches!(
            outcome_of(&outcomes, &missing),
            Outcome::Due {
                reason: Reason::Missing,
                expires_at: None
            }
        ),
        "{outcomes:#?}"
    );
    assert_eq!(fx.current(&due.secret).await.0, due_version);
    assert_eq!(fx.stages(&due.secret).await.len(), 1);
    assert!(
        fx.client
            .describe_secret()
            .secret_id(&missing.secret)
            .send()
            .await
            .is_err(),
        "dry run created {}",
        missing.secret
    );

    let forced = RotateOptions {
        force: true,
        ..RotateOptions::default()
    };
    let outcomes = fx.run(forced).await;
    assert!(
        matches!(
            outcome_of(&outcomes, &due),
            Outcome::Rotated {
                reason: Reason::Forced,
                ..
            }
        ),
        "{outcomes:#?}"
    );
    assert_ne!(fx.current(&due.secret).await.0, due_version);
}

#[tokio::test]
async fn a_broken_signing_key_fails_the_test_step_and_leaves_awscurrent_alone() {
    let t = TenantSpec::new().on_broker().await;
    let never_created = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t, &never_created], &random_key()).await;
    let (old_token, old_version) = fx.seed(&t, Duration::from_secs(600)).await;

    let outcomes = fx.rotate().await;
    for tenant in [&t, &never_created] {
        let Outcome::Failed { step, error } = outcome_of(&outcomes, tenant) else {
            panic!("{outcomes:#?}")
        };
        assert_eq!(*step, FailedStep::Test, "{error}");
        assert!(error.contains("the broker rejected the token"), "{error}");
    }

    // AWSCURRENT is exactly what it was; the abandoned version has no label.
    let (version, token) = fx.current(&t.secret).await;
    assert_eq!(version, old_version);
    assert_eq!(token.token.expose(), old_token);
    let stages = fx.stages(&t.secret).await;
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(
        stages.iter().all(|(v, s)| if *v == old_version {
            s == &["AWSCURRENT"]
        } else {
            s.is_empty()
        }),
        "{stages:?}"
    );
    // A token the broker refuses is never stored where none was.
    assert!(
        fx.client
            .describe_secret()
            .secret_id(&never_created.secret)
            .send()
            .await
            .is_err()
    );
    produces(&t, &old_token).await;
}

#[tokio::test]
async fn one_failing_tenant_does_not_stop_the_others() {
    let created = TenantSpec::new().on_broker().await;
    let deleted = TenantSpec::new().on_broker().await;
    let rotated = TenantSpec::new().on_broker().await;
    // In the policy, not yet on the broker (the reconciler runs after rotation).
    let not_reconciled = TenantSpec::new();
    let fx = fixture(
        &[&created, &deleted, &rotated, &not_reconciled],
        stack().token_secret(),
    )
    .await;
    fx.seed(&deleted, Duration::from_secs(600)).await;
    // Scheduled for deletion: unreadable, and nowhere to rotate into.
    fx.client
        .delete_secret()
        .secret_id(&deleted.secret)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let (_, rotated_version) = fx.seed(&rotated, Duration::from_secs(60)).await;

    let outcomes = fx.rotate().await;
    assert_eq!(outcomes.len(), 4, "{outcomes:#?}");
    let Outcome::Failed { step, error } = outcome_of(&outcomes, &deleted) else {
        panic!("{outcomes:#?}")
    };
    assert_eq!(*step, FailedStep::Describe);
    assert!(
        error.contains("scheduled for deletion") && error.contains(&deleted.secret),
        "{error}"
    );
    assert!(matches!(
        outcome_of(&outcomes, &created),
        Outcome::Created { .. }
    ));
    assert!(
        matches!(outcome_of(&outcomes, &rotated), Outcome::Rotated { previous_version_id, .. } if *previous_version_id == rotated_version)
    );
    // Authentication is proven even where the lookup cannot confirm access.
    let Outcome::Created { check, .. } = outcome_of(&outcomes, &not_reconciled) else {
        panic!("{outcomes:#?}")
    };
    assert_eq!(check["access"], "authenticated_only", "{check}");

    // The report says which tenant failed and why, in the JSON the function returns.
    let report = serde_json::to_value(&outcomes).unwrap();
    let failed: Vec<_> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["name"], deleted.tenant.as_str());
    assert_eq!(failed[0]["kind"], "token");
    assert_eq!(failed[0]["step"], "describe");
}

#[tokio::test]
async fn the_four_step_protocol_rotates_step_by_step_and_each_step_is_idempotent() {
    let t = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t], stack().token_secret()).await;
    let (old_token, old_version) = fx.seed(&t, Duration::from_secs(3600)).await;
    let token = fx.begin_native_rotation(&t.secret).await;
    // Secrets Manager sends the ARN.
    let arn = fx
        .client
        .describe_secret()
        .secret_id(&t.secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let created = fx
        .step(RotationStep::CreateSecret, &arn, &token)
        .await
        .unwrap();
    let StepAction::Staged { fingerprint, .. } = &created else {
        panic!("{created:?}")
    };
    let (pending_version, pending) = fx.staged(&t.secret, "AWSPENDING").await.unwrap();
    assert_eq!(pending_version, token);
    assert_eq!(&pending.token.fingerprint(), fingerprint);
    assert_eq!(pending.role.as_deref(), Some(t.role.as_str()));
    let versions = fx.stages(&t.secret).await.len();

    // Repeating createSecret neither adds a version nor changes the pending one.
    let again = fx
        .step(RotationStep::CreateSecret, &arn, &token)
        .await
        .unwrap();
    assert!(matches!(again, StepAction::AlreadyStaged), "{again:?}");
    assert_eq!(fx.stages(&t.secret).await.len(), versions);
    assert_eq!(
        fx.staged(&t.secret, "AWSPENDING").await.unwrap().1.token,
        pending.token
    );

    for _ in 0..2 {
        let set = fx
            .step(RotationStep::SetSecret, &arn, &token)
            .await
            .unwrap();
        assert!(matches!(set, StepAction::NothingToSet), "{set:?}");
        let tested = fx
            .step(RotationStep::TestSecret, &arn, &token)
            .await
            .unwrap();
        assert!(
            matches!(
                &tested,
                StepAction::Tested { check } if check["access"] == "authorized"
            ),
            "{tested:?}"
        );
    }
    // Until finishSecret, readers still get the old token.
    assert_eq!(fx.current(&t.secret).await.0, old_version);

    let finished = fx
        .step(RotationStep::FinishSecret, &arn, &token)
        .await
        .unwrap();
    assert!(
        matches!(&finished, StepAction::Promoted { previous_version_id: Some(p) } if *p == old_version),
        "{finished:?}"
    );
    let (current_version, current) = fx.current(&t.secret).await;
    assert_eq!(current_version, token);
    assert_eq!(current.token, pending.token);
    let stages = fx.stages(&t.secret).await;
    assert_eq!(stages[&token], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(stages[&old_version], vec!["AWSPREVIOUS".to_owned()]);

    // Every step for a version that is already current is a no-op.
    for step in [
        RotationStep::FinishSecret,
        RotationStep::CreateSecret,
        RotationStep::TestSecret,
    ] {
        let action = fx.step(step, &arn, &token).await.unwrap();
        assert!(
            matches!(action, StepAction::AlreadyCurrent),
            "{step:?}: {action:?}"
        );
    }
    assert_eq!(fx.stages(&t.secret).await, stages);

    produces(&t, current.token.expose()).await;
    produces(&t, &old_token).await;
}

#[tokio::test]
async fn the_protocol_refuses_what_the_template_refuses() {
    let t = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t], stack().token_secret()).await;
    let (_, old_version) = fx.seed(&t, Duration::from_secs(3600)).await;

    // Never enabled for rotation (moto omits RotationEnabled until asked).
    kp_tests::assert_err!(
        fx.step(RotationStep::CreateSecret, &t.secret, &old_version)
            .await,
        RotationError::Refused(StepRefused::RotationNotEnabled { .. })
    );

    let token = fx.begin_native_rotation(&t.secret).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = kp_tests::assert_err!(
        fx.step(RotationStep::CreateSecret, &t.secret, &unknown)
            .await,
        RotationError::Refused(StepRefused::UnknownVersion { .. })
    );
    assert!(err.to_string().contains(&unknown), "{err}");

    // Finish the rotation, then ask again for the version that is now AWSPREVIOUS.
    for step in [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ] {
        fx.step(step, &t.secret, &token).await.unwrap();
    }
    kp_tests::assert_err!(
        fx.step(RotationStep::TestSecret, &t.secret, &old_version)
            .await,
        RotationError::Refused(StepRefused::NotPending { .. })
    );

    // Rotation switched off again.
    fx.client
        .cancel_rotate_secret()
        .secret_id(&t.secret)
        .send()
        .await
        .unwrap();
    kp_tests::assert_err!(
        fx.step(RotationStep::FinishSecret, &t.secret, &token).await,
        RotationError::Refused(StepRefused::RotationNotEnabled { .. })
    );

    // Secrets the policy does not own, or that do not exist.
    kp_tests::assert_err!(
        fx.step(RotationStep::CreateSecret, &fx.signing_secret, &token)
            .await,
        RotationError::NotManaged { .. }
    );
    kp_tests::assert_err!(
        fx.step(
            RotationStep::CreateSecret,
            &unique("kong-pulsar/none"),
            &token,
        )
        .await,
        RotationError::Refused(StepRefused::SecretNotFound { .. })
    );
}

#[tokio::test]
async fn the_protocol_test_step_fails_for_a_token_the_broker_refuses() {
    let t = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&t], &random_key()).await;
    let (old_token, old_version) = fx.seed(&t, Duration::from_secs(3600)).await;
    let token = fx.begin_native_rotation(&t.secret).await;

    // createSecret cannot know the key is wrong; testSecret must.
    let created = fx
        .step(RotationStep::CreateSecret, &t.secret, &token)
        .await
        .unwrap();
    assert!(matches!(created, StepAction::Staged { .. }), "{created:?}");
    let err = fx
        .step(RotationStep::TestSecret, &t.secret, &token)
        .await
        .unwrap_err();
    let RotationError::TestFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<TokenTestError>(),
            Some(TokenTestError::Broker(ProbeError::Rejected(
                BrokerError::Unauthenticated(_)
            )))
        ),
        "{source:?}"
    );
    // Secrets Manager stops at the failed step; AWSCURRENT is untouched.
    let (version, current) = fx.current(&t.secret).await;
    assert_eq!(version, old_version);
    assert_eq!(current.token.expose(), old_token);
}

#[tokio::test]
async fn no_token_or_key_reaches_logs_reports_or_errors() {
    let created = TenantSpec::new().on_broker().await;
    let rotated = TenantSpec::new().on_broker().await;
    let fx = fixture(&[&created, &rotated], stack().token_secret()).await;
    let (seeded, _) = fx.seed(&rotated, Duration::from_secs(60)).await;
    let mut report = serde_json::to_string(&fx.rotate().await).unwrap();

    let token = fx.begin_native_rotation(&created.secret).await;
    for step in [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ] {
        let event = secrets::step_event(step, &created.secret, &token);
        let done = fx.step_event(&event).await.unwrap();
        report.push_str(&serde_json::to_string(&done).unwrap());
    }
    // A failure's message too.
    let broken = fixture(&[&rotated], &random_key()).await;
    let failed = broken
        .run(RotateOptions {
            force: true,
            ..RotateOptions::default()
        })
        .await;
    report.push_str(&serde_json::to_string(&failed).unwrap());

    let mut secrets = vec![seeded, STANDARD.encode(stack().token_secret())];
    for t in [&created, &rotated] {
        for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
            if let Some((_, token)) = fx.staged(&t.secret, stage).await {
                secrets.push(token.token.expose().to_owned());
            }
        }
    }
    assert_eq!(secrets.len(), 6, "every token was looked at");
    let logs = logs::global().text();
    for secret in &secrets {
        // Any JWT segment would do; the signature is the part never to leak.
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a secret reached the logs");
        assert!(!report.contains(signature), "a secret reached the report");
    }
    // The logs were captured, and name tokens by fingerprint.
    let (_, current) = fx.current(&created.secret).await;
    let fingerprint = current.token.fingerprint();
    assert!(
        logs.contains(&fingerprint),
        "{fingerprint} not in: {}",
        logs.lines()
            .filter(|l| l.contains("kong_pulsar"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        logs.contains(r#""event":"secret_rotated""#)
            && logs.contains(r#""event":"secret_created""#)
            && logs.contains(r#""kind":"token""#),
        "{logs}"
    );
}
