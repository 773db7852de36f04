//! Secrets Manager's four-step rotation protocol, the same for every kind of
//! secret, so a native rotation schedule (`RotateSecret` with this function
//! as the rotation Lambda) rotates a secret exactly as the scheduled cycle
//! does: the kind mints and tests, this module does the rest.
//!
//! Modelled on AWS's `SecretsManagerRotationTemplate/lambda_function.py`
//! (aws-samples/aws-secrets-manager-rotation-lambdas):
//!
//! * every step first describes the secret and refuses unless rotation is
//!   enabled and the request token is a version of the secret staged
//!   `AWSPENDING`; a version that is already `AWSCURRENT` makes any step a
//!   no-op (a retried `finishSecret`, a late duplicate);
//! * `createSecret` puts a freshly minted value under the request token as
//!   `AWSPENDING`, unless that version already has a value;
//! * `setSecret` has nothing to do for any kind here: Pulsar checks tokens by
//!   signature and certificates by their CA, nothing is registered;
//! * `testSecret` runs the kind's test on the pending value;
//! * `finishSecret` moves `AWSCURRENT` to the version (the old one becomes
//!   `AWSPREVIOUS`) and takes `AWSPENDING` off it.
//!
//! Before `createSecret`, `RotateSecret` itself adds the request token as a
//! value-less version labelled `AWSPENDING`; that is why the staging check
//! can come first even in the step that creates the value.
//!
//! Two deliberate differences from the template: the step name is parsed with
//! the event, so an unknown step is refused before any call is made; and a
//! secret scheduled for deletion is refused, as the scheduled cycle refuses it.

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::cycle::ForbiddenRoles;
use super::kind::{KindError, MintError, SecretKind};
use crate::secrets::store::{AWSCURRENT, AWSPENDING, SecretMetadata, Select, Store, StoreError};

/// A step of the rotation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum RotationStep {
    /// Mint a value and stage it `AWSPENDING`.
    #[serde(rename = "createSecret")]
    CreateSecret,
    /// Install it in the service (nothing to do for the kinds here).
    #[serde(rename = "setSecret")]
    SetSecret,
    /// Prove it works.
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
    /// The kind of secret (`token`, `certificate`).
    pub kind: &'static str,
    /// The secret's name.
    pub secret: String,
    /// The version (= the request token).
    pub version_id: String,
    /// The policy entry the secret belongs to.
    pub name: String,
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
    /// `createSecret` minted a value and staged it `AWSPENDING`.
    Staged {
        /// The new value's expiry.
        expires_at: DateTime<Utc>,
        /// The new value's fingerprint.
        fingerprint: String,
    },
    /// `createSecret` found the pending version already holding a value.
    AlreadyStaged,
    /// `setSecret`: nothing to install.
    NothingToSet,
    /// `testSecret`: the pending value passed the kind's test.
    Tested {
        /// What the test confirmed.
        check: Value,
    },
    /// `finishSecret` moved `AWSCURRENT` to this version.
    Promoted {
        /// The version that is now `AWSPREVIOUS`.
        previous_version_id: Option<String>,
    },
}

/// AWS's template guards, the same for every kind: why a step was refused
/// before the secret's content was looked at.
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
    /// The secret is scheduled for deletion.
    #[error("secret {secret} is scheduled for deletion")]
    ScheduledForDeletion {
        /// The secret's name.
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
    /// No secret kind in the policy keeps its value in this secret.
    #[error("secret {secret} is not a secret the policy rotates")]
    NotManaged {
        /// The secret's name.
        secret: String,
    },
    /// The secret's role may not be given a secret (an admin role or a
    /// broker super-user): every step is refused, nothing is minted.
    #[error("secret {secret} is refused: {why}")]
    ForbiddenRole {
        /// The secret's name.
        secret: String,
        /// Which role, and why.
        why: String,
    },
    /// `createSecret` could not mint a value.
    #[error("createSecret could not mint a value for secret {secret}")]
    Mint {
        /// The secret's name.
        secret: String,
        /// Whether the issuer or the minting failed, and why.
        #[source]
        source: MintError,
    },
    /// `testSecret` found no value in the pending version.
    #[error("the AWSPENDING version {version_id} of secret {secret} has no value")]
    PendingMissing {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
    },
    /// `testSecret`: the pending value failed the kind's test.
    #[error("testSecret failed for version {version_id} of secret {secret}")]
    TestFailed {
        /// The secret's name.
        secret: String,
        /// The request token.
        version_id: String,
        /// What the test found (the kind's own error).
        #[source]
        source: KindError,
    },
}

/// The secret of a step event, described; a missing secret is refused.
pub async fn describe(secrets: &Client, secret_id: &str) -> Result<SecretMetadata, StepRefused> {
    Store::new(secrets)
        .describe(secret_id)
        .await?
        .ok_or_else(|| StepRefused::SecretNotFound {
            secret: secret_id.to_owned(),
        })
}

/// As [`rotation_step`], refusing every step for a secret whose role is in
/// `forbidden` before anything is read or written.
pub async fn rotation_step<K: SecretKind>(
    kind: &K,
    event: &RotationStepEvent,
    metadata: &SecretMetadata,
    secrets: &Client,
    forbidden: &ForbiddenRoles,
) -> Result<StepReport, RotationError> {
    let item = kind
        .item_for_secret(&metadata.name, metadata.arn.as_deref())
        .ok_or_else(|| RotationError::NotManaged {
            secret: metadata.name.clone(),
        })?;
    if let Some(why) = kind
        .labels(item)
        .role
        .and_then(|role| forbidden.refusal(role))
    {
        return Err(RotationError::ForbiddenRole {
            secret: metadata.name.clone(),
            why,
        });
    }
    let step = Step {
        kind,
        item,
        store: Store::new(secrets),
        secret_id: &event.secret_id,
        metadata,
        version_id: &event.client_request_token,
    };
    let report = |action| StepReport {
        step: event.step,
        kind: kind.kind(),
        secret: metadata.name.clone(),
        version_id: event.client_request_token.clone(),
        name: kind.labels(item).name.to_owned(),
        action,
    };
    if !staged_for_rotation(metadata, step.version_id)? {
        tracing::info!(
            secret = metadata.name,
            version_id = step.version_id,
            step = ?event.step,
            "version already AWSCURRENT; nothing to do"
        );
        return Ok(report(StepAction::AlreadyCurrent));
    }
    let action = match event.step {
        RotationStep::CreateSecret => step.create().await?,
        RotationStep::SetSecret => StepAction::NothingToSet,
        RotationStep::TestSecret => step.test().await?,
        RotationStep::FinishSecret => step.finish().await?,
    };
    Ok(report(action))
}

/// The template's guard: `Ok(true)` when the version is pending rotation,
/// `Ok(false)` when it is already current (every step is then a no-op).
fn staged_for_rotation(metadata: &SecretMetadata, version_id: &str) -> Result<bool, StepRefused> {
    if metadata.deleted {
        return Err(StepRefused::ScheduledForDeletion {
            secret: metadata.name.clone(),
        });
    }
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

struct Step<'a, K: SecretKind> {
    kind: &'a K,
    item: &'a K::Item,
    store: Store<'a>,
    secret_id: &'a str,
    metadata: &'a SecretMetadata,
    version_id: &'a str,
}

impl<K: SecretKind> Step<'_, K> {
    fn name(&self) -> &str {
        &self.metadata.name
    }

    /// As in the template: a current version to rotate from must exist, and
    /// a pending version that already holds a value (a retried step) is left
    /// alone.
    async fn create(&self) -> Result<StepAction, RotationError> {
        if self
            .store
            .get(self.secret_id, Select::Stage(AWSCURRENT))
            .await?
            .is_none()
        {
            return Err(StepRefused::NoCurrentValue {
                secret: self.name().to_owned(),
            }
            .into());
        }
        let pending = Select::VersionInStage(self.version_id, AWSPENDING);
        if self.store.get(self.secret_id, pending).await?.is_some() {
            tracing::info!(
                secret = self.name(),
                version_id = self.version_id,
                "createSecret: the pending version already has a value"
            );
            return Ok(StepAction::AlreadyStaged);
        }
        let minted = self
            .kind
            .mint(self.store, self.item, Utc::now())
            .await
            .map_err(|source| RotationError::Mint {
                secret: self.name().to_owned(),
                source,
            })?;
        self.store
            .put(self.secret_id, self.version_id, &minted.value, AWSPENDING)
            .await?;
        let labels = self.kind.labels(self.item);
        tracing::info!(
            event = "secret_staged",
            kind = self.kind.kind(),
            name = labels.name,
            role = labels.role,
            secret = self.name(),
            version_id = self.version_id,
            fingerprint = minted.fingerprint,
            expires_at = %minted.expires_at,
            "createSecret: new value staged AWSPENDING"
        );
        Ok(StepAction::Staged {
            expires_at: minted.expires_at,
            fingerprint: minted.fingerprint,
        })
    }

    async fn test(&self) -> Result<StepAction, RotationError> {
        let pending = self
            .store
            .get(
                self.secret_id,
                Select::VersionInStage(self.version_id, AWSPENDING),
            )
            .await?
            .ok_or_else(|| RotationError::PendingMissing {
                secret: self.name().to_owned(),
                version_id: self.version_id.to_owned(),
            })?;
        let check = self
            .kind
            .test(self.store, self.item, &pending.value, Utc::now())
            .await
            .map_err(|source| RotationError::TestFailed {
                secret: self.name().to_owned(),
                version_id: self.version_id.to_owned(),
                source,
            })?;
        tracing::info!(
            kind = self.kind.kind(),
            secret = self.name(),
            version_id = self.version_id,
            fingerprint = pending.value.fingerprint(),
            "testSecret: the pending value passed its test"
        );
        Ok(StepAction::Tested { check })
    }

    async fn finish(&self) -> Result<StepAction, RotationError> {
        // The guard saw the version not current; another version may be.
        let previous = self.metadata.version_with(AWSCURRENT).map(str::to_owned);
        self.store
            .promote_pending(self.secret_id, self.version_id, previous.as_deref())
            .await?;
        let labels = self.kind.labels(self.item);
        tracing::info!(
            event = "secret_rotated",
            kind = self.kind.kind(),
            name = labels.name,
            role = labels.role,
            secret = self.name(),
            version_id = self.version_id,
            previous_version_id = previous.as_deref(),
            "finishSecret: AWSCURRENT moved to the new value"
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
        let deleted = SecretMetadata {
            deleted: true,
            ..metadata(true, &[("new", &["AWSPENDING"])])
        };
        assert!(matches!(
            staged_for_rotation(&deleted, "new"),
            Err(StepRefused::ScheduledForDeletion { .. })
        ));
    }
}
