//! Secrets Manager's four-step rotation protocol for tenant token secrets,
//! so a native rotation schedule (`RotateSecret` with this function as the
//! rotation Lambda) rotates tokens exactly as the scheduled cycle does.
//!
//! Modelled on AWS's `SecretsManagerRotationTemplate/lambda_function.py`
//! (aws-samples/aws-secrets-manager-rotation-lambdas):
//!
//! * every step first describes the secret and refuses unless rotation is
//!   enabled and the request token is a version of the secret staged
//!   `AWSPENDING`; a version that is already `AWSCURRENT` makes any step a
//!   no-op (a retried `finishSecret`, a late duplicate);
//! * `createSecret` puts a freshly minted token under the request token as
//!   `AWSPENDING`, unless that version already has a value;
//! * `setSecret` has nothing to do: Pulsar tokens are checked by signature,
//!   nothing is registered with the broker;
//! * `testSecret` connects to the broker with the pending token;
//! * `finishSecret` moves `AWSCURRENT` to the version (the old one becomes
//!   `AWSPREVIOUS`) and takes `AWSPENDING` off it.
//!
//! Before `createSecret`, `RotateSecret` itself adds the request token as a
//! value-less version labelled `AWSPENDING`; that is why the staging check
//! can come first even in the step that creates the value.
//!
//! One deliberate difference from the template: the step name is parsed with
//! the event, so an unknown step is refused before any call is made.

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use url::Url;

use super::probe::{self, ProbeError, TokenCheck};
use super::signing::{SigningKey, SigningKeyError};
use super::{is_for_role, tenant_for_secret};
use crate::policy::{Policy, Tenant};
use crate::pulsar::broker::Timeouts;
use crate::secrets::TenantToken;
use crate::secrets::store::{AWSCURRENT, AWSPENDING, SecretMetadata, Select, Store, StoreError};

/// A step of the rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum RotationStep {
    /// Mint a token and stage it `AWSPENDING`.
    #[serde(rename = "createSecret")]
    CreateSecret,
    /// Install it in the service (nothing to do for Pulsar tokens).
    #[serde(rename = "setSecret")]
    SetSecret,
    /// Prove the broker accepts it.
    #[serde(rename = "testSecret")]
    TestSecret,
    /// Make it `AWSCURRENT`.
    #[serde(rename = "finishSecret")]
    FinishSecret,
}

/// The event Secrets Manager invokes the rotation Lambda with. Other fields
/// (`RotationToken`, for cross-account rotation) are ignored.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RotationStepEvent {
    /// The step to perform.
    #[serde(rename = "Step")]
    pub step: RotationStep,
    /// The secret's ARN (or name).
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The version being rotated in; also its version id.
    #[serde(rename = "ClientRequestToken")]
    pub client_request_token: String,
}

/// What a step did, for the function's result and logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// The step.
    pub step: RotationStep,
    /// The secret's name.
    pub secret: String,
    /// The version (= the request token).
    pub version_id: String,
    /// The tenant whose token this is.
    pub tenant: String,
    /// What was done.
    #[serde(flatten)]
    pub action: StepAction,
}

/// What a step did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    /// The version is already `AWSCURRENT`: nothing to do, whatever the step.
    AlreadyCurrent,
    /// `createSecret` minted a token and staged it `AWSPENDING`.
    Staged {
        /// The new token's expiry.
        expires_at: DateTime<Utc>,
        /// The new token's fingerprint.
        fingerprint: String,
    },
    /// `createSecret` found the pending version already holding a value.
    AlreadyStaged,
    /// `setSecret`: the broker trusts the signature, nothing to install.
    NothingToSet,
    /// `testSecret`: the broker accepted the pending token.
    Tested {
        /// What the broker confirmed.
        check: TokenCheck,
    },
    /// `finishSecret` moved `AWSCURRENT` to this version.
    Promoted {
        /// The version that is now `AWSPREVIOUS`.
        previous_version_id: Option<String>,
    },
}

/// AWS's template guards, the same for every kind of secret this function
/// rotates (tenant tokens here, client certificates in
/// [`crate::rotation::kinds::certificate`]): why a step was refused before the secret's
/// content was looked at.
#[derive(Debug, thiserror::Error)]
pub enum StepRefused {
    /// A Secrets Manager call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secret does not exist.
    #[error("secret {secret} does not exist")]
    SecretNotFound {
        /// The `SecretId` of the event.
        secret: String,
    },
    /// Rotation is not enabled on the secret.
    #[error("secret {secret} is not enabled for rotation")]
    RotationNotEnabled {
        /// The secret's name.
        secret: String,
    },
    /// The request token is not a version of the secret.
    #[error("secret version {version_id} has no stage for rotation of secret {secret}")]
    UnknownVersion {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
    },
    /// The version exists but is neither `AWSPENDING` nor `AWSCURRENT`.
    #[error("secret version {version_id} is not staged AWSPENDING for rotation of secret {secret}")]
    NotPending {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
    },
    /// `createSecret` needs a current version to rotate from.
    #[error("secret {secret} has no AWSCURRENT value to rotate from")]
    NoCurrentValue {
        /// The secret's name.
        secret: String,
    },
}

/// Why a rotation step was refused or failed. Secrets Manager marks the
/// rotation failed and leaves `AWSCURRENT` where it was.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A Secrets Manager call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One of AWS's template guards refused the step.
    #[error(transparent)]
    Refused(#[from] StepRefused),
    /// No tenant in the policy keeps its token in this secret.
    #[error("secret {secret} is not a tenant token secret in the policy")]
    NotATokenSecret {
        /// The secret's name.
        secret: String,
    },
    /// The signing key could not be loaded, or the token not minted.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// `testSecret` found no usable token in the pending version.
    #[error(
        "the AWSPENDING version {version_id} of secret {secret} does not hold a token for role {role}"
    )]
    PendingNotAToken {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
        /// The tenant role the token must be for.
        role: String,
    },
    /// `testSecret`: the broker did not accept the pending token.
    #[error("testSecret failed for version {version_id} of secret {secret}")]
    TestFailed {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
        /// What the broker said (boxed: pulsar-rs errors are large).
        #[source]
        source: Box<ProbeError>,
    },
}

/// Performs one step of the rotation protocol for a tenant token secret.
/// The broker check (`testSecret`) uses the default [`Timeouts`].
pub async fn handle_rotation_step(
    event: RotationStepEvent,
    policy: &Policy,
    secrets: &Client,
    broker_url: &Url,
) -> Result<StepReport, RotationError> {
    let metadata = describe(Store::new(secrets), &event.secret_id).await?;
    token_step(event, metadata, policy, secrets, broker_url).await
}

/// [`handle_rotation_step`] for a secret already described (the `rotate`
/// function describes once and routes by what the policy says it holds).
pub(crate) async fn token_step(
    event: RotationStepEvent,
    metadata: SecretMetadata,
    policy: &Policy,
    secrets: &Client,
    broker_url: &Url,
) -> Result<StepReport, RotationError> {
    let store = Store::new(secrets);
    let secret_id = event.secret_id.as_str();
    let version_id = event.client_request_token.as_str();
    let tenant =
        tenant_for_secret(policy, &metadata.name, metadata.arn.as_deref()).ok_or_else(|| {
            RotationError::NotATokenSecret {
                secret: metadata.name.clone(),
            }
        })?;
    let report = |action| StepReport {
        step: event.step,
        secret: metadata.name.clone(),
        version_id: version_id.to_owned(),
        tenant: tenant.name.as_str().to_owned(),
        action,
    };
    if !staged_for_rotation(&metadata, version_id)? {
        tracing::info!(
            secret = metadata.name,
            version_id,
            step = ?event.step,
            "version already AWSCURRENT; nothing to do"
        );
        return Ok(report(StepAction::AlreadyCurrent));
    }
    let step = Step {
        store,
        secret_id,
        metadata: &metadata,
        version_id,
        tenant,
    };
    let action = match event.step {
        RotationStep::CreateSecret => step.create(policy).await?,
        // Pulsar keeps no per-token state: a token is valid wherever the
        // signature verifies, so there is nothing to install before testing.
        RotationStep::SetSecret => StepAction::NothingToSet,
        RotationStep::TestSecret => step.test(policy, broker_url).await?,
        RotationStep::FinishSecret => step.finish().await?,
    };
    Ok(report(action))
}

/// The secret of a step event, described; a missing secret is refused.
pub(crate) async fn describe(
    store: Store<'_>,
    secret_id: &str,
) -> Result<SecretMetadata, StepRefused> {
    store
        .describe(secret_id)
        .await?
        .ok_or_else(|| StepRefused::SecretNotFound {
            secret: secret_id.to_owned(),
        })
}

/// The template's guard: `Ok(true)` when the version is pending rotation,
/// `Ok(false)` when it is already current (every step is then a no-op).
pub(crate) fn staged_for_rotation(
    metadata: &SecretMetadata,
    version_id: &str,
) -> Result<bool, StepRefused> {
    if !metadata.rotation_enabled {
        return Err(StepRefused::RotationNotEnabled {
            secret: metadata.name.clone(),
        });
    }
    if !metadata.versions.contains_key(version_id) {
        return Err(StepRefused::UnknownVersion {
            secret: metadata.name.clone(),
            version_id: version_id.to_owned(),
        });
    }
    let stages = metadata.stages_of(version_id);
    if stages.iter().any(|s| s == AWSCURRENT) {
        return Ok(false);
    }
    if !stages.iter().any(|s| s == AWSPENDING) {
        return Err(StepRefused::NotPending {
            secret: metadata.name.clone(),
            version_id: version_id.to_owned(),
        });
    }
    Ok(true)
}

/// `createSecret`'s preconditions, as in the template: a current version to
/// rotate from must exist; `Ok(true)` when the pending version already holds
/// a value (a retried step), so nothing is to be created.
pub(crate) async fn already_staged(
    store: Store<'_>,
    secret_id: &str,
    metadata: &SecretMetadata,
    version_id: &str,
) -> Result<bool, StepRefused> {
    if store
        .get(secret_id, Select::Stage(AWSCURRENT))
        .await?
        .is_none()
    {
        return Err(StepRefused::NoCurrentValue {
            secret: metadata.name.clone(),
        });
    }
    let pending = Select::VersionInStage(version_id, AWSPENDING);
    let staged = store.get(secret_id, pending).await?.is_some();
    if staged {
        tracing::info!(
            secret = metadata.name,
            version_id,
            "createSecret: the pending version already has a value"
        );
    }
    Ok(staged)
}

struct Step<'a> {
    store: Store<'a>,
    secret_id: &'a str,
    metadata: &'a SecretMetadata,
    version_id: &'a str,
    tenant: &'a Tenant,
}

impl Step<'_> {
    async fn create(&self, policy: &Policy) -> Result<StepAction, RotationError> {
        let name = self.metadata.name.as_str();
        if already_staged(self.store, self.secret_id, self.metadata, self.version_id).await? {
            return Ok(StepAction::AlreadyStaged);
        }
        let key = SigningKey::load(self.store, &policy.pulsar().token_signing_secret).await?;
        let minted = key.mint(&self.tenant.role, self.tenant.token_ttl, Utc::now())?;
        self.store
            .put(
                self.secret_id,
                self.version_id,
                &minted.secret_value(),
                AWSPENDING,
            )
            .await?;
        tracing::info!(
            event = "token_staged",
            tenant = self.tenant.name.as_str(),
            role = self.tenant.role,
            secret = name,
            version_id = self.version_id,
            fingerprint = minted.token.fingerprint(),
            expires_at = %minted.expires_at,
            "createSecret: new tenant token staged AWSPENDING"
        );
        Ok(StepAction::Staged {
            expires_at: minted.expires_at,
            fingerprint: minted.token.fingerprint(),
        })
    }

    async fn test(&self, policy: &Policy, broker_url: &Url) -> Result<StepAction, RotationError> {
        let name = self.metadata.name.as_str();
        let not_a_token = || RotationError::PendingNotAToken {
            secret: name.to_owned(),
            version_id: self.version_id.to_owned(),
            role: self.tenant.role.clone(),
        };
        let pending = self
            .store
            .get(
                self.secret_id,
                Select::VersionInStage(self.version_id, AWSPENDING),
            )
            .await?
            .ok_or_else(not_a_token)?;
        let token = TenantToken::parse(name, &pending.value).map_err(|_| not_a_token())?;
        if !is_for_role(&token, &self.tenant.role) {
            return Err(not_a_token());
        }
        let topic = probe::check_topic(policy, self.tenant);
        let check = probe::check_token(
            broker_url,
            &token.token,
            topic.as_deref(),
            Timeouts::default(),
        )
        .await
        .map_err(|source| RotationError::TestFailed {
            secret: name.to_owned(),
            version_id: self.version_id.to_owned(),
            source: Box::new(source),
        })?;
        tracing::info!(
            secret = name,
            version_id = self.version_id,
            fingerprint = token.token.fingerprint(),
            check = ?check,
            "testSecret: the broker accepted the pending token"
        );
        Ok(StepAction::Tested { check })
    }

    async fn finish(&self) -> Result<StepAction, RotationError> {
        let name = self.metadata.name.as_str();
        // The guard saw the version not current; another version may be.
        let previous = self.metadata.version_with(AWSCURRENT).map(str::to_owned);
        self.store
            .promote_pending(self.secret_id, self.version_id, previous.as_deref())
            .await?;
        tracing::info!(
            event = "token_rotated",
            tenant = self.tenant.name.as_str(),
            role = self.tenant.role,
            secret = name,
            version_id = self.version_id,
            previous_version_id = previous.as_deref(),
            "finishSecret: AWSCURRENT moved to the new tenant token"
        );
        Ok(StepAction::Promoted {
            previous_version_id: previous,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn metadata(enabled: bool, versions: &[(&str, &[&str])]) -> SecretMetadata {
        SecretMetadata {
            name: "kp/tokens/t".into(),
            arn: None,
            rotation_enabled: enabled,
            deleted: false,
            versions: versions
                .iter()
                .map(|(id, stages)| {
                    (
                        id.to_string(),
                        stages.iter().map(|s| s.to_string()).collect(),
                    )
                })
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn events_parse_and_unknown_steps_are_refused() {
        let event: RotationStepEvent = serde_json::from_value(serde_json::json!({
            "Step": "testSecret",
            "SecretId": "arn:aws:secretsmanager:us-east-1:1:secret:kp/tokens/t-AbCdEf",
            "ClientRequestToken": "0b4c9a3e-1111-4222-8333-944445555666",
            "RotationToken": "ignored",
        }))
        .unwrap();
        assert_eq!(event.step, RotationStep::TestSecret);
        let err = serde_json::from_value::<RotationStepEvent>(serde_json::json!({
            "Step": "dropSecret", "SecretId": "s", "ClientRequestToken": "t",
        }))
        .unwrap_err();
        assert!(err.to_string().contains("dropSecret"), "{err}");
    }

    #[test]
    fn the_staging_guard_follows_the_template() {
        let both = metadata(true, &[("old", &["AWSCURRENT"]), ("new", &["AWSPENDING"])]);
        assert!(staged_for_rotation(&both, "new").unwrap());
        assert!(!staged_for_rotation(&both, "old").unwrap());
        assert!(matches!(
            staged_for_rotation(&both, "other"),
            Err(StepRefused::UnknownVersion { .. })
        ));
        let previous = metadata(true, &[("old", &["AWSPREVIOUS"]), ("new", &["AWSCURRENT"])]);
        assert!(matches!(
            staged_for_rotation(&previous, "old"),
            Err(StepRefused::NotPending { .. })
        ));
        let disabled = metadata(false, &[("new", &["AWSPENDING"])]);
        assert!(matches!(
            staged_for_rotation(&disabled, "new"),
            Err(StepRefused::RotationNotEnabled { .. })
        ));
    }
}
