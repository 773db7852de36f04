//! The `rotate` function's handler: one entry point for the three inputs it
//! is invoked with, each turned into a JSON report.
//!
//! * an EventBridge scheduled event (`"detail-type": "Scheduled Event"`): a
//!   full cycle — reconcile Pulsar with the policy, rotate tenant tokens that
//!   are due, renew certificates that are due. `detail.dryRun: true` reports
//!   and changes nothing; `detail.force: true` replaces every token and
//!   certificate.
//! * a Secrets Manager rotation step (`{"Step","SecretId","ClientRequestToken"}`)
//!   for a token or certificate secret: the four-step protocol.
//! * a manual request: `{"action":"reconcile"|"rotate"|"cycle","dryRun":…,"force":…}`.
//! * a CloudFormation custom-resource event (`RequestType`, `ResponseURL`…):
//!   reconcile at deploy time on Create/Update, nothing on Delete, and the
//!   answer PUT to the `ResponseURL` ([`super::custom_resource`]).
//!
//! No token or certificate is minted for a role in `pulsar.admin_roles` or in
//! the broker's `superUserRoles` (read through the admin API on every run
//! that rotates; when it cannot be read, nothing is minted): such an entry
//! fails with step `forbidden_role`, and a rotation step for its secret is
//! refused. At start-up, the admin token's secret (`KP_ADMIN_TOKEN_SECRET`)
//! may not be a secret the policy names.
//!
//! Reconciliation runs before token rotation in a cycle, so a new tenant's
//! namespaces and grants exist when its first token is tested against the
//! broker. A failure for one tenant is reported and the others go on; the
//! invocation itself fails only for input it does not understand, or for a
//! rotation step that failed (Secrets Manager must see that failure).

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::custom_resource::{self, CustomResourceError, RequestType, Status};
use super::kinds::certificate::CertificateKind;
use super::kinds::provenance_key::ProvenanceKeyKind;
use super::kinds::token::TokenKind;
use super::reconcile::reconcile;
use super::{
    ForbiddenRoles, RotateOptions, RotationError, RotationStepEvent, SecretKind, SecretReport,
    cycle, describe, rotation_step,
};
use crate::config::Config;
use crate::policy::{Policy, PolicyError, same_secret};
use crate::pulsar::admin::{AdminClient, AdminError};
use crate::pulsar::broker::Timeouts;
use crate::secrets::{SecretSource, SecretsError, SecretsManager, TenantToken};

/// What the function was asked to do.
#[derive(Debug, Clone)]
pub enum Task {
    /// Reconcile and rotate (scheduled, or `"action":"cycle"`).
    Cycle { dry_run: bool, force: bool },
    /// Only reconcile Pulsar with the policy.
    Reconcile { dry_run: bool },
    /// Only rotate tenant tokens and renew certificates.
    RotateTokens { dry_run: bool, force: bool },
    /// One Secrets Manager rotation step.
    Step(RotationStepEvent),
    /// A CloudFormation custom-resource request (possibly malformed: it is
    /// still answered when its `ResponseURL` is usable).
    CustomResource(Box<custom_resource::Event>),
}

/// Why the invocation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("unrecognised event: {0}")]
    UnknownEvent(String),
    #[error("rotation step failed: {0}")]
    Step(#[from] RotationError),
    #[error("the admin token could not be read: {0}")]
    AdminToken(#[source] SecretsError),
    #[error("the admin client could not be built: {0}")]
    Admin(#[from] AdminError),
    #[error(transparent)]
    CustomResource(#[from] CustomResourceError),
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{0} is not set (the rotate function needs it)")]
    Missing(&'static str),
    /// The admin token's secret is also a secret the policy names: a cycle
    /// would overwrite the super-user token (or mint with it as a key).
    #[error(
        "KP_ADMIN_TOKEN_SECRET {admin:?} is also {used_as} ({secret:?}); the super-user token \
         needs a secret of its own, or rotation would overwrite it"
    )]
    AdminTokenSecretInPolicy {
        /// The configured admin-token secret.
        admin: String,
        /// The policy's reference to the same secret.
        secret: String,
        /// The policy node naming it.
        used_as: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flags {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
}

impl Task {
    /// Recognises the event's shape.
    pub fn parse(event: &Value) -> Result<Self, RotateError> {
        let unknown = |why: &str| RotateError::UnknownEvent(why.to_owned());
        let object = event
            .as_object()
            .ok_or_else(|| unknown("not a JSON object"))?;
        if custom_resource::is_custom_resource(object) {
            return Ok(Self::CustomResource(Box::new(
                custom_resource::Event::parse(event),
            )));
        }
        if object.contains_key("Step") {
            let step = serde_json::from_value(event.clone())
                .map_err(|e| RotateError::UnknownEvent(format!("rotation step: {e}")))?;
            return Ok(Self::Step(step));
        }
        if object.get("source").and_then(Value::as_str) == Some("aws.events")
            || object.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        {
            let flags: Flags = match object.get("detail") {
                Some(detail @ Value::Object(_)) => serde_json::from_value(detail.clone())
                    .map_err(|e| RotateError::UnknownEvent(format!("detail: {e}")))?,
                _ => Flags {
                    dry_run: false,
                    force: false,
                },
            };
            return Ok(Self::Cycle {
                dry_run: flags.dry_run,
                force: flags.force,
            });
        }
        let action = object
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                unknown("expected a scheduled event, a rotation step or an \"action\"")
            })?;
        let flags: Flags = serde_json::from_value(event.clone())
            .map_err(|e| RotateError::UnknownEvent(format!("flags: {e}")))?;
        match action {
            "cycle" => Ok(Self::Cycle {
                dry_run: flags.dry_run,
                force: flags.force,
            }),
            "reconcile" => Ok(Self::Reconcile {
                dry_run: flags.dry_run,
            }),
            "rotate" => Ok(Self::RotateTokens {
                dry_run: flags.dry_run,
                force: flags.force,
            }),
            other => Err(RotateError::UnknownEvent(format!(
                "unknown action {other:?} (use cycle, reconcile or rotate)"
            ))),
        }
    }
}

/// Everything the rotate function needs, built once per cold start.
pub struct Rotator {
    policy: Arc<Policy>,
    secrets: aws_sdk_secretsmanager::Client,
    broker_url: Url,
    admin_url: Url,
    admin_token_secret: String,
}

impl Rotator {
    /// Builds from configuration; no network call happens here. Refuses to
    /// start when the admin token's secret is one the policy names too (the
    /// policy loader already refused two uses of one secret inside it).
    pub fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let policy = Policy::load(&config.policy)?;
        let admin_token_secret = config
            .admin_token_secret
            .clone()
            .ok_or(StartupError::Missing("KP_ADMIN_TOKEN_SECRET"))?;
        if let Some((secret, used_as)) = policy
            .secret_uses()
            .into_iter()
            .find(|(secret, _)| same_secret(secret, &admin_token_secret))
        {
            return Err(StartupError::AdminTokenSecretInPolicy {
                admin: admin_token_secret,
                secret,
                used_as,
            });
        }
        Ok(Self {
            policy: Arc::new(policy),
            secrets: aws_sdk_secretsmanager::Client::new(aws),
            broker_url: config.pulsar_service_url.clone(),
            admin_url: config
                .pulsar_admin_url
                .clone()
                .ok_or(StartupError::Missing("PULSAR_ADMIN_URL"))?,
            admin_token_secret,
        })
    }

    /// Handles one invocation and returns its report.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, RotateError> {
        let result = self.run(event).await;
        if let Err(error) = &result {
            tracing::error!(%error, cause = ?std::error::Error::source(error), "rotate failed");
        }
        result
    }

    async fn run(&self, event: LambdaEvent<Value>) -> Result<Value, RotateError> {
        let task = Task::parse(&event.payload)?;
        tracing::info!(task = ?task, "rotate invoked");
        match task {
            Task::CustomResource(event) => self.custom_resource(*event).await,
            Task::Step(step) => {
                // One DescribeSecret, then the policy says which kind the
                // secret is of.
                let metadata = describe(&self.secrets, &step.secret_id)
                    .await
                    .map_err(RotationError::from)?;
                let (name, arn) = (&metadata.name, metadata.arn.as_deref());
                let tokens = self.tokens();
                let provenance = ProvenanceKeyKind::new(self.policy.provenance());
                let admin = self.admin().await;
                let forbidden = self.forbidden_roles(admin.as_ref()).await;
                let report = if tokens.item_for_secret(name, arn).is_some() {
                    rotation_step(&tokens, &step, &metadata, &self.secrets, &forbidden).await?
                } else if provenance.item_for_secret(name, arn).is_some() {
                    rotation_step(&provenance, &step, &metadata, &self.secrets, &forbidden).await?
                } else {
                    let certificates = CertificateKind::new(self.policy.certificates());
                    rotation_step(&certificates, &step, &metadata, &self.secrets, &forbidden)
                        .await?
                };
                Ok(json!({ "step": report }))
            }

            Task::Reconcile { dry_run } => {
                let report = reconcile(&self.policy, &self.admin().await?, dry_run).await;
                Ok(json!({ "dryRun": dry_run, "reconcile": report }))
            }
            Task::RotateTokens { dry_run, force } => {
                let admin = self.admin().await;
                let forbidden = self.forbidden_roles(admin.as_ref()).await;
                let Rotated {
                    tokens,
                    certificates,
                    provenance,
                } = self.rotate_all(options(dry_run, force), &forbidden).await;
                Ok(json!({
                    "dryRun": dry_run,
                    "tokens": tokens,
                    "certificates": certificates,
                    "provenance": provenance,
                }))
            }
            Task::Cycle { dry_run, force } => {
                let admin = self.admin().await?;
                let reconcile = reconcile(&self.policy, &admin, dry_run).await;
                let forbidden = self.forbidden_roles(Ok(&admin)).await;
                let Rotated {
                    tokens,
                    certificates,
                    provenance,
                } = self.rotate_all(options(dry_run, force), &forbidden).await;
                let failed = |reports: &[SecretReport]| {
                    reports
                        .iter()
                        .filter(|r| r.outcome.is_failure())
                        .map(|r| r.name.clone())
                        .collect::<Vec<_>>()
                };
                // Once each, in name order: a tenant whose reconcile and
                // token both failed is one failed tenant.
                let failed_tenants: std::collections::BTreeSet<String> = reconcile
                    .failed_tenants()
                    .into_iter()
                    .map(str::to_owned)
                    .chain(failed(&tokens))
                    .collect();
                let failed_certificates = failed(&certificates);
                Ok(json!({
                    "dryRun": dry_run,
                    "reconcile": reconcile,
                    "tokens": tokens,
                    "certificates": certificates,
                    "provenance": provenance,
                    "failedTenants": failed_tenants,
                    "failedCertificates": failed_certificates,
                }))
            }
        }
    }

    /// Answers CloudFormation: reconcile on Create/Update, nothing on
    /// Delete. Once answered the invocation succeeds (a failed invocation
    /// would make Lambda retry the whole request); it fails when no answer
    /// could be sent.
    async fn custom_resource(&self, event: custom_resource::Event) -> Result<Value, RotateError> {
        let url = event.reply_to?;
        let mut report = Value::Null;
        let (status, reason, data) = match &event.request {
            Err(why) => (Status::Failed, why.clone(), Value::Null),
            Ok(request) if request.request_type == RequestType::Delete => (
                Status::Success,
                "delete: Pulsar is left unchanged".to_owned(),
                Value::Null,
            ),
            Ok(_) => match self.admin().await {
                Err(error) => {
                    tracing::error!(%error, "custom resource: no admin client");
                    (
                        Status::Failed,
                        "the admin API could not be reached (admin token unreadable or admin \
                         client not built; see the rotate function's log)"
                            .to_owned(),
                        Value::Null,
                    )
                }
                Ok(admin) => {
                    let reconciled = reconcile(&self.policy, &admin, false).await;
                    let outcome = custom_resource::outcome_of(&reconciled);
                    report = json!(reconciled);
                    outcome
                }
            },
        };
        let answer = if status == Status::Success {
            "SUCCESS"
        } else {
            "FAILED"
        };
        tracing::info!(status = answer, reason, "custom resource answered");
        let body = custom_resource::response_body(&event.ids, status, &reason, data);
        custom_resource::send(&url, body).await?;
        Ok(json!({ "customResource": { "status": answer, "reason": reason }, "reconcile": report }))
    }

    fn tokens(&self) -> TokenKind<'_> {
        TokenKind::new(&self.policy, &self.broker_url, Timeouts::default())
    }

    /// One cycle of every kind: tenant tokens, certificates, the
    /// provenance key (each kind's failures are its own).
    async fn rotate_all(&self, options: RotateOptions, forbidden: &ForbiddenRoles) -> Rotated {
        let certificates = CertificateKind::new(self.policy.certificates());
        let provenance = ProvenanceKeyKind::new(self.policy.provenance());
        Rotated {
            tokens: cycle(&self.tokens(), &self.secrets, options, forbidden).await,
            certificates: cycle(&certificates, &self.secrets, options, forbidden).await,
            provenance: cycle(&provenance, &self.secrets, options, forbidden).await,
        }
    }

    /// The roles no token or certificate may be minted for: the policy's
    /// admin roles and the broker's super-users, read now (a super-user added
    /// on the broker counts from the next run). When the super-users cannot
    /// be read, every role is refused: minting blind could hand out one.
    async fn forbidden_roles(&self, admin: Result<&AdminClient, &RotateError>) -> ForbiddenRoles {
        let forbidden = ForbiddenRoles::none().forbid(
            self.policy.pulsar().admin_roles.iter().cloned(),
            "it is in pulsar.admin_roles",
        );
        let superusers = match admin {
            Ok(admin) => admin.superuser_roles().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match superusers {
            Ok(roles) => forbidden.forbid(roles, "the broker lists it in superUserRoles"),
            Err(why) => {
                tracing::warn!(
                    error = why,
                    "the broker's super-user roles could not be read"
                );
                forbidden.unknown(format!(
                    "the broker's superUserRoles could not be read: {why}"
                ))
            }
        }
    }

    /// The admin client, with the super-user token read fresh for each run
    /// (it can be rotated too; a run is hourly, so one read is cheap).
    async fn admin(&self) -> Result<AdminClient, RotateError> {
        let value = SecretsManager::new(self.secrets.clone())
            .get(&self.admin_token_secret)
            .await
            .map_err(RotateError::AdminToken)?;
        let token = match TenantToken::parse(&self.admin_token_secret, &value) {
            Ok(parsed) => parsed.token,
            Err(_) => value,
        };
        // Redirects are followed to the policy's cluster's brokers only, so
        // PULSAR_ADMIN_URL may be any one broker of a multi-broker cluster.
        Ok(AdminClient::new(self.admin_url.clone(), token)?
            .within_cluster(self.policy.pulsar().cluster.as_str()))
    }
}

/// The reports of one cycle of every kind.
struct Rotated {
    tokens: Vec<SecretReport>,
    certificates: Vec<SecretReport>,
    provenance: Vec<SecretReport>,
}

fn options(dry_run: bool, force: bool) -> RotateOptions {
    RotateOptions {
        dry_run,
        force,
        ..RotateOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> Value {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_shipped_events_are_recognised() {
        assert!(matches!(
            Task::parse(&event("rotate-scheduled.json")).unwrap(),
            Task::Cycle {
                dry_run: false,
                force: false
            }
        ));
        assert!(matches!(
            Task::parse(&event("rotate-scheduled-dry-run.json")).unwrap(),
            Task::Cycle {
                dry_run: true,
                force: false
            }
        ));
        assert!(matches!(
            Task::parse(&event("rotate-reconcile-dry-run.json")).unwrap(),
            Task::Reconcile { dry_run: true }
        ));
        match Task::parse(&event("rotate-cfn-create.json")).unwrap() {
            Task::CustomResource(cfn) => {
                let request = cfn.request.unwrap();
                assert_eq!(request.request_type, RequestType::Create);
                assert_eq!(cfn.reply_to.unwrap().scheme(), "https");
            }
            other => panic!("{other:?}"),
        }
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            assert!(matches!(
                Task::parse(&event(&format!("rotate-step-{step}.json"))).unwrap(),
                Task::Step(_)
            ));
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for bad in [
            json!(null),
            json!([]),
            json!({}),
            json!({"action": "delete-everything"}),
            json!({"action": "reconcile", "dryRun": "yes"}),
            json!({"Step": "dropSecret", "SecretId": "x", "ClientRequestToken": "y"}),
            json!({"source": "aws.events", "detail": {"dryRun": 1}}),
        ] {
            assert!(
                matches!(Task::parse(&bad), Err(RotateError::UnknownEvent(_))),
                "{bad}"
            );
        }
    }
}
