//! The Secrets Manager operations rotation needs, over the SDK client: the
//! version-and-stage view of a secret that the read path (`secrets.rs`,
//! current value only) does not have.
//!
//! Behaviour of moto 5.2 (the local emulator) around stages, checked by
//! running against it, and how this module copes with it:
//!
//! * After `UpdateSecretVersionStage` moves `AWSCURRENT`, moto's
//!   `GetSecretValue` *without* a stage or version still returns the old
//!   version (its "default version" is not updated), while `VersionIdsToStages`
//!   and `GetSecretValue(VersionStage=AWSCURRENT)` are right. Every read here
//!   names its stage or version explicitly, which means the same in AWS and is
//!   right in moto too.
//! * moto moves `AWSPREVIOUS` to the version `AWSCURRENT` left, as AWS does.
//!   Neither takes `AWSPENDING` off the promoted version; callers do, as
//!   AWS's rotation templates do, so a later `RotateSecret` starts clean.
//! * `PutSecretValue` with `AWSPENDING` moves that label off any other
//!   version (as in AWS), so a scheduled rotation simply supersedes an
//!   abandoned pending version.
//! * `DescribeSecret` omits `RotationEnabled` until rotation was first
//!   requested; absent is read as "not enabled".

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::secrets::SecretValue;

/// The staging label readers use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label of a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";

/// A Secrets Manager call about a token secret failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The secret does not exist.
    #[error("secret {secret} does not exist")]
    NotFound {
        /// The secret, as it was named in the call.
        secret: String,
    },
    /// IAM denied the call.
    #[error("access to secret {secret} was denied ({operation})")]
    AccessDenied {
        /// The secret.
        secret: String,
        /// The API operation.
        operation: &'static str,
    },
    /// Secrets Manager refused the request (a deleted secret, a stage that
    /// moved meanwhile, a request token already used for other content).
    #[error("Secrets Manager refused {operation} on secret {secret}: {code}: {message}")]
    Refused {
        /// The secret.
        secret: String,
        /// The API operation.
        operation: &'static str,
        /// The AWS error code.
        code: String,
        /// AWS's message (which never carries secret values).
        message: String,
    },
    /// Secrets Manager could not be reached or failed.
    #[error("Secrets Manager failed {operation} on secret {secret}")]
    Unavailable {
        /// The secret.
        secret: String,
        /// The API operation.
        operation: &'static str,
        /// The SDK's error, with its context.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The version holds binary data, not a string.
    #[error("secret {secret} version {version_id} has no string value")]
    NotAString {
        /// The secret.
        secret: String,
        /// The version.
        version_id: String,
    },
}

/// What `DescribeSecret` says about a secret.
#[derive(Debug, Clone)]
pub struct SecretMetadata {
    pub name: String,
    pub arn: Option<String>,
    pub rotation_enabled: bool,
    /// Scheduled for deletion: unreadable, and no place to rotate into.
    pub deleted: bool,
    pub versions: HashMap<String, Vec<String>>,
}

impl SecretMetadata {
    /// The version carrying `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }

    /// The stages of `version_id` (empty when it is unknown or unlabelled).
    pub fn stages_of(&self, version_id: &str) -> &[String] {
        self.versions.get(version_id).map_or(&[], Vec::as_slice)
    }
}

/// One version's value.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub version_id: String,
    pub value: SecretValue,
}

/// Which version to read.
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// Whatever carries this label.
    Stage(&'a str),
    /// This version, which must also carry this label.
    VersionInStage(&'a str, &'a str),
}

/// The Secrets Manager calls of a rotation.
#[derive(Clone, Copy)]
pub struct Store<'a> {
    client: &'a Client,
}

impl<'a> Store<'a> {
    pub fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// The secret's metadata; `None` when it does not exist.
    pub async fn describe(&self, secret: &str) -> Result<Option<SecretMetadata>, StoreError> {
        let out = match self.client.describe_secret().secret_id(secret).send().await {
            Ok(out) => out,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(classify(secret, "DescribeSecret", err)),
        };
        Ok(Some(SecretMetadata {
            name: out.name().unwrap_or(secret).to_owned(),
            arn: out.arn().map(str::to_owned),
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            deleted: out.deleted_date().is_some(),
            versions: out.version_ids_to_stages().cloned().unwrap_or_default(),
        }))
    }

    /// The selected version's value; `None` when there is no such version, or
    /// it has no value yet (the placeholder `RotateSecret` stages before
    /// calling `createSecret` is exactly that).
    pub async fn get(
        &self,
        secret: &str,
        select: Select<'_>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let request = self.client.get_secret_value().secret_id(secret);
        let request = match select {
            Select::Stage(stage) => request.version_stage(stage),
            Select::VersionInStage(version, stage) => {
                request.version_id(version).version_stage(stage)
            }
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(classify(secret, "GetSecretValue", err)),
        };
        let version_id = out.version_id().unwrap_or_default().to_owned();
        match out.secret_string {
            Some(value) => Ok(Some(StoredVersion {
                version_id,
                value: SecretValue::new(value),
            })),
            None => Err(StoreError::NotAString {
                secret: secret.to_owned(),
                version_id,
            }),
        }
    }

    /// Creates the secret with `value` as its first, `AWSCURRENT`, version.
    pub async fn create(
        &self,
        name: &str,
        value: &SecretValue,
        version_id: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        self.client
            .create_secret()
            .name(name)
            .description(description)
            .client_request_token(version_id)
            .secret_string(value.expose())
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(name, "CreateSecret", err))
    }

    /// Adds version `version_id` with `value`, labelled `stage`. With
    /// `AWSPENDING`, readers (who ask for `AWSCURRENT`) do not see it yet.
    pub async fn put(
        &self,
        secret: &str,
        version_id: &str,
        value: &SecretValue,
        stage: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(version_id)
            .secret_string(value.expose())
            .version_stages(stage)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(secret, "PutSecretValue", err))
    }

    /// Moves `AWSCURRENT` to `version_id`, taking it off `from` (Secrets
    /// Manager then labels `from` `AWSPREVIOUS`). `from` is `None` only when no
    /// version is current. The promoted version keeps `AWSPENDING`; callers
    /// take it off with [`Store::unstage`] once the move is done, so a failed
    /// clean-up is never mistaken for a failed promotion.
    pub async fn promote(
        &self,
        secret: &str,
        version_id: &str,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(AWSCURRENT)
            .move_to_version_id(version_id)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(secret, "UpdateSecretVersionStage", err))
    }

    /// Makes the `AWSPENDING` version `version_id` current ([`Store::promote`])
    /// and then takes `AWSPENDING` off it: `finishSecret` of the protocol.
    /// An error means `AWSCURRENT` did not move. Once it has, a failed
    /// clean-up is only logged: the next `PutSecretValue` with `AWSPENDING`
    /// moves the label anyway, and reporting it as a failed promotion would
    /// claim the old version is still current.
    pub async fn promote_pending(
        &self,
        secret: &str,
        version_id: &str,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        self.promote(secret, version_id, from).await?;
        if let Err(error) = self.unstage(secret, version_id, AWSPENDING).await {
            tracing::warn!(
                secret,
                version_id,
                error = %crate::telemetry::error_chain(&error),
                "AWSCURRENT moved, but AWSPENDING could not be taken off the new version"
            );
        }
        Ok(())
    }

    /// Takes `stage` off `version_id`. A version left without labels is
    /// deprecated, and eventually removed, by Secrets Manager.
    pub async fn unstage(
        &self,
        secret: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(stage)
            .remove_from_version_id(version_id)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(secret, "UpdateSecretVersionStage", err))
    }
}

fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ResourceNotFoundException")
}

fn classify<E, R>(secret: &str, operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let secret = secret.to_owned();
    match (err.code(), err.as_service_error()) {
        (Some("ResourceNotFoundException"), _) => StoreError::NotFound { secret },
        (Some("AccessDeniedException"), _) => StoreError::AccessDenied { secret, operation },
        (Some(code), Some(_)) => StoreError::Refused {
            secret,
            operation,
            code: code.to_owned(),
            message: err.message().unwrap_or_default().to_owned(),
        },
        _ => StoreError::Unavailable {
            secret,
            operation,
            source: DisplayErrorContext(err).to_string().into(),
        },
    }
}
