//! The scheduled cycle, the same for every kind: each secret of the kind is
//! created when missing and replaced when its value is due, one secret
//! failing never stopping the others.
//!
//! For one secret: refuse a forbidden role ([`ForbiddenRoles`]: an admin
//! role or a broker super-user never gets a token or certificate, whatever
//! the policy says) → describe it (a secret scheduled for deletion is refused:
//! writing to it fails, and restoring it is a human decision) → read
//! `AWSCURRENT` → the kind's verdict, then `force` → mint →
//!
//! * no current value: test the value in hand, then store it as
//!   `AWSCURRENT` — a value that fails its test never reaches a reader;
//! * a current value: stage it `AWSPENDING`, read back what Secrets Manager
//!   holds and test *that*, then promote it. Any failure after staging takes
//!   the `AWSPENDING` label off again, so the next cycle (or a native
//!   rotation) starts clean.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::Value;

use super::kind::{Labels, MintError, Minted, SecretKind, Verdict};
use super::report::{FailedStep, Outcome, Reason, SecretReport};
use crate::secrets::store::{AWSCURRENT, AWSPENDING, Select, Store};
use crate::telemetry::error_chain;

/// How a scheduled cycle behaves.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Replace every value, due or not (a leaked token, a distrusted key, a
    /// replaced CA).
    pub force: bool,
    /// Report what is due and change nothing (`{"detail":{"dryRun":true}}`).
    pub dry_run: bool,
    /// Secrets handled at once. Each one is a few Secrets Manager calls and
    /// perhaps one broker connection; a handful in flight keeps a run short
    /// without a burst against Secrets Manager's request quotas.
    pub concurrency: usize,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            force: false,
            dry_run: false,
            concurrency: 4,
        }
    }
}

/// Roles the engine never mints a value for, whatever the kind: a tenant
/// token or client certificate for a Pulsar admin role or a broker
/// super-user would hand whoever reads the secret every tenant (or the whole
/// cluster). The `rotate` function fills it from `pulsar.admin_roles` and the
/// broker's `superUserRoles`, read through the admin API each run.
#[derive(Debug, Clone, Default)]
pub struct ForbiddenRoles {
    /// Role → why it is forbidden.
    roles: BTreeMap<String, String>,
    /// Set when the forbidden roles could not be learnt: every role is then
    /// refused (fail closed), with this explanation.
    unknown: Option<String>,
}

impl ForbiddenRoles {
    /// No role forbidden.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `roles`, each refused with `why` (e.g. "it is in pulsar.admin_roles").
    pub fn forbid<I, S>(mut self, roles: I, why: &str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for role in roles {
            self.roles
                .entry(role.into())
                .or_insert_with(|| why.to_owned());
        }
        self
    }

    /// The forbidden roles could not be learnt (`why`): refuse every role
    /// rather than risk minting for a super-user.
    pub fn unknown(mut self, why: impl Into<String>) -> Self {
        self.unknown = Some(why.into());
        self
    }

    /// Why `role` may not be given a secret, or `None` when it may.
    pub fn refusal(&self, role: &str) -> Option<String> {
        if let Some(why) = self.roles.get(role) {
            return Some(format!(
                "role {role:?} is forbidden: {why}; a secret for it would administer Pulsar, \
                 so nothing was minted (give the entry its own, unprivileged role)"
            ));
        }
        self.unknown.as_ref().map(|why| {
            format!(
                "the roles that may not be given secrets are unknown ({why}); nothing is \
                 minted for role {role:?} until they can be read"
            )
        })
    }
}

/// One scheduled cycle over every secret of `kind`, in the kind's order; a
/// secret whose role is
/// in `forbidden` fails with step `forbidden_role` before anything is read,
/// minted or written (in a dry run too).
pub async fn cycle<K: SecretKind>(
    kind: &K,
    secrets: &Client,
    options: RotateOptions,
    forbidden: &ForbiddenRoles,
) -> Vec<SecretReport> {
    let run = Run {
        kind,
        store: Store::new(secrets),
        options,
        forbidden,
    };
    futures::stream::iter(kind.items())
        .map(|item| run.one(item))
        .buffered(options.concurrency.max(1))
        .collect()
        .await
}

/// A step failed; nothing after it ran.
struct Failure {
    step: FailedStep,
    error: String,
}

impl Failure {
    fn new(step: FailedStep, err: &(dyn StdError + 'static)) -> Self {
        Self {
            step,
            error: error_chain(err),
        }
    }
}

/// The value being replaced, when there is one.
struct Current {
    version_id: String,
    expires_at: Option<DateTime<Utc>>,
    fingerprint: Option<String>,
}

struct Run<'a, K> {
    kind: &'a K,
    store: Store<'a>,
    options: RotateOptions,
    forbidden: &'a ForbiddenRoles,
}

impl<K: SecretKind> Run<'_, K> {
    async fn one(&self, item: &K::Item) -> SecretReport {
        let labels = self.kind.labels(item);
        let outcome = match self.rotate(item, &labels).await {
            Ok(outcome) => outcome,
            Err(Failure { step, error }) => {
                tracing::warn!(
                    event = "rotation_failed",
                    kind = self.kind.kind(),
                    name = labels.name,
                    role = labels.role,
                    secret = labels.secret,
                    step = ?step,
                    error = error,
                    "rotation failed; AWSCURRENT unchanged"
                );
                Outcome::Failed { step, error }
            }
        };
        SecretReport {
            kind: self.kind.kind(),
            name: labels.name.to_owned(),
            role: labels.role.map(str::to_owned),
            secret: labels.secret.to_owned(),
            outcome,
        }
    }

    async fn rotate(&self, item: &K::Item, labels: &Labels<'_>) -> Result<Outcome, Failure> {
        if let Some(error) = labels.role.and_then(|role| self.forbidden.refusal(role)) {
            return Err(Failure {
                step: FailedStep::ForbiddenRole,
                error,
            });
        }
        let now = Utc::now();
        let (reason, current) = match self.verdict(item, labels.secret, now).await? {
            Judged::Keep { expires_at } => {
                tracing::debug!(kind = self.kind.kind(), secret = labels.secret, %expires_at, "fresh");
                return Ok(Outcome::Fresh { expires_at });
            }
            Judged::Replace { reason, current } => (reason, current),
        };
        if self.options.dry_run {
            return Ok(Outcome::Due {
                reason,
                expires_at: current.as_ref().and_then(|c| c.expires_at),
            });
        }
        let minted = self.kind.mint(self.store, item, now).await.map_err(|e| {
            let step = match e {
                MintError::Issuer(_) => FailedStep::Issuer,
                MintError::Mint(_) => FailedStep::Mint,
            };
            Failure::new(step, &e)
        })?;
        // Chosen here and sent as the ClientRequestToken, so the SDK's own
        // retries of a write cannot add a second version.
        let change = Change {
            item,
            labels,
            reason,
            minted,
            version_id: uuid::Uuid::new_v4().to_string(),
            now,
        };
        match current {
            None => self.create(&change).await,
            Some(current) => self.replace(&change, current).await,
        }
    }

    async fn verdict(
        &self,
        item: &K::Item,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Judged, Failure> {
        let Some(metadata) = self
            .store
            .describe(secret)
            .await
            .map_err(|e| Failure::new(FailedStep::Describe, &e))?
        else {
            return Ok(Judged::replace(Reason::Missing, None));
        };
        if metadata.deleted {
            return Err(Failure {
                step: FailedStep::Describe,
                error: format!(
                    "secret {secret} is scheduled for deletion; restore it or remove it from \
                     the policy"
                ),
            });
        }
        let Some(stored) = self
            .store
            .get(secret, Select::Stage(AWSCURRENT))
            .await
            .map_err(|e| Failure::new(FailedStep::ReadCurrent, &e))?
        else {
            return Ok(Judged::replace(Reason::NoCurrentValue, None));
        };
        let current = |expires_at, fingerprint| Current {
            version_id: stored.version_id.clone(),
            expires_at,
            fingerprint,
        };
        // The one force rule: what makes a value unusable is reported as
        // such; a usable value is replaced as Forced.
        Ok(
            match self.kind.judge(self.store, item, &stored.value, now).await {
                Verdict::Keep { expires_at, .. } if !self.options.force => {
                    Judged::Keep { expires_at }
                }
                Verdict::Keep {
                    expires_at,
                    fingerprint,
                } => Judged::replace(
                    Reason::Forced,
                    Some(current(Some(expires_at), Some(fingerprint))),
                ),
                Verdict::Replace {
                    reason,
                    expires_at,
                    fingerprint,
                } => Judged::replace(reason, Some(current(expires_at, fingerprint))),
            },
        )
    }

    /// No current value: test first, then store it as `AWSCURRENT`, so that a
    /// value that fails its test is never handed to a reader.
    async fn create(&self, change: &Change<'_, K::Item>) -> Result<Outcome, Failure> {
        let Change {
            item,
            labels,
            reason,
            minted,
            version_id,
            now,
        } = change;
        let (secret, version_id, reason) = (labels.secret, version_id.as_str(), *reason);
        let check = self.test(item, &minted.value, *now).await?;
        let stored = if reason == Reason::Missing {
            let description = self.kind.description(item);
            self.store
                .create(secret, &minted.value, version_id, &description)
                .await
        } else {
            self.store
                .put(secret, version_id, &minted.value, AWSCURRENT)
                .await
        };
        stored.map_err(|e| Failure::new(FailedStep::Create, &e))?;
        tracing::info!(
            event = "secret_created",
            kind = self.kind.kind(),
            name = labels.name,
            role = labels.role,
            secret,
            version_id,
            fingerprint = minted.fingerprint,
            expires_at = %minted.expires_at,
            reason = ?reason,
            "new value created as AWSCURRENT"
        );
        Ok(Outcome::Created {
            reason,
            version_id: version_id.to_owned(),
            expires_at: minted.expires_at,
            fingerprint: minted.fingerprint.clone(),
            check,
        })
    }

    /// AWSPENDING → test what Secrets Manager holds → AWSCURRENT. Any failure
    /// after staging takes the pending label off again.
    async fn replace(
        &self,
        change: &Change<'_, K::Item>,
        current: Current,
    ) -> Result<Outcome, Failure> {
        let Change {
            item,
            labels,
            reason,
            minted,
            version_id,
            now,
        } = change;
        let (secret, version_id, reason) = (labels.secret, version_id.as_str(), *reason);
        self.store
            .put(secret, version_id, &minted.value, AWSPENDING)
            .await
            .map_err(|e| Failure::new(FailedStep::StagePending, &e))?;
        let check = match self
            .test_staged(item, secret, version_id, &current, *now)
            .await
        {
            Ok(check) => check,
            Err(mut failure) => {
                if let Err(e) = self.store.unstage(secret, version_id, AWSPENDING).await {
                    failure.error.push_str(&format!(
                        "; the abandoned AWSPENDING version {version_id} could not be unstaged: {}",
                        error_chain(&e)
                    ));
                }
                return Err(failure);
            }
        };
        tracing::info!(
            event = "secret_rotated",
            kind = self.kind.kind(),
            name = labels.name,
            role = labels.role,
            secret,
            version_id,
            previous_version_id = current.version_id,
            fingerprint = minted.fingerprint,
            previous_fingerprint = current.fingerprint.as_deref(),
            expires_at = %minted.expires_at,
            reason = ?reason,
            "new value promoted to AWSCURRENT"
        );
        Ok(Outcome::Rotated {
            reason,
            version_id: version_id.to_owned(),
            previous_version_id: current.version_id,
            old_expires_at: current.expires_at,
            new_expires_at: minted.expires_at,
            fingerprint: minted.fingerprint.clone(),
            previous_fingerprint: current.fingerprint,
            check,
        })
    }

    /// Tests the version readers will get once promoted (what Secrets Manager
    /// holds, not what was sent), then promotes it.
    async fn test_staged(
        &self,
        item: &K::Item,
        secret: &str,
        version_id: &str,
        current: &Current,
        now: DateTime<Utc>,
    ) -> Result<Value, Failure> {
        let pending = self
            .store
            .get(secret, Select::VersionInStage(version_id, AWSPENDING))
            .await
            .map_err(|e| Failure::new(FailedStep::Test, &e))?
            .ok_or_else(|| Failure {
                step: FailedStep::Test,
                error: format!("the AWSPENDING version {version_id} of {secret} has no value"),
            })?;
        let check = self.test(item, &pending.value, now).await?;
        self.store
            .promote_pending(secret, version_id, Some(&current.version_id))
            .await
            .map_err(|e| Failure::new(FailedStep::Promote, &e))?;
        Ok(check)
    }

    async fn test(
        &self,
        item: &K::Item,
        value: &crate::secrets::SecretValue,
        now: DateTime<Utc>,
    ) -> Result<Value, Failure> {
        self.kind
            .test(self.store, item, value, now)
            .await
            .map_err(|e| Failure::new(FailedStep::Test, e.as_ref()))
    }
}

/// A minted value on its way in.
struct Change<'c, I> {
    item: &'c I,
    labels: &'c Labels<'c>,
    reason: Reason,
    minted: Minted,
    version_id: String,
    now: DateTime<Utc>,
}

/// The verdict after `force`.
enum Judged {
    Keep {
        expires_at: DateTime<Utc>,
    },
    Replace {
        reason: Reason,
        current: Option<Current>,
    },
}

impl Judged {
    fn replace(reason: Reason, current: Option<Current>) -> Self {
        Self::Replace { reason, current }
    }
}
