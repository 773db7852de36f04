//! The scheduled half of token rotation: on every EventBridge cycle, each
//! tenant's token secret is created when missing and replaced when its token
//! is inside the rotation window (`expires_at - rotate_before <= now`).

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio::sync::OnceCell;
use url::Url;

use super::probe::{self, TokenCheck};
use super::signing::{MintedToken, SigningKey};
use super::{error_chain, is_for_role};
use crate::policy::{Policy, Tenant};
use crate::pulsar::broker::Timeouts;
use crate::secrets::TenantToken;
use crate::secrets::store::{AWSCURRENT, AWSPENDING, Select, Store};

/// How a scheduled run behaves.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Rotate every token, due or not (an operator replacing a leaked or
    /// distrusted token).
    pub force: bool,
    /// Report what is due and change nothing (`{"detail":{"dryRun":true}}`).
    pub dry_run: bool,
    /// Bounds on the broker check of each new token.
    pub timeouts: Timeouts,
    /// Tenants handled at once. Each one is a few Secrets Manager calls and
    /// one broker connection; a handful in flight keeps a run short without
    /// a burst against Secrets Manager's request quotas.
    pub concurrency: usize,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            force: false,
            dry_run: false,
            timeouts: Timeouts::default(),
            concurrency: 4,
        }
    }
}

/// What happened to one tenant's token, for the rotate function's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantOutcome {
    /// The tenant.
    pub tenant: String,
    /// Its Pulsar role (the tokens' `sub`).
    pub role: String,
    /// Its token secret.
    pub secret: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: TokenOutcome,
}

/// The outcome for one tenant. Fingerprints identify tokens; values never
/// appear.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TokenOutcome {
    /// The secret had no token; one was minted, tested and stored as `AWSCURRENT`.
    Created {
        /// Why there was no token to keep.
        reason: RotationReason,
        /// The new version.
        version_id: String,
        /// The new token's expiry.
        expires_at: DateTime<Utc>,
        /// The new token's fingerprint.
        fingerprint: String,
        /// What the broker confirmed.
        check: TokenCheck,
    },
    /// A new token is `AWSCURRENT`; the old one is `AWSPREVIOUS` and valid
    /// until its own expiry.
    Rotated {
        /// Why it was rotated.
        reason: RotationReason,
        /// The new version.
        version_id: String,
        /// The version that is now `AWSPREVIOUS`.
        previous_version_id: String,
        /// The old token's expiry, when it was known.
        old_expires_at: Option<DateTime<Utc>>,
        /// The new token's expiry.
        new_expires_at: DateTime<Utc>,
        /// The new token's fingerprint.
        fingerprint: String,
        /// The old token's fingerprint, when it was a token at all.
        previous_fingerprint: Option<String>,
        /// What the broker confirmed about the new token.
        check: TokenCheck,
    },
    /// Nothing to do: the current token is outside its rotation window.
    Fresh {
        /// The current token's expiry.
        expires_at: DateTime<Utc>,
    },
    /// Dry run: this tenant would be created or rotated.
    Due {
        /// Why.
        reason: RotationReason,
        /// The current token's expiry, when known.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Nothing changed for this tenant: `AWSCURRENT` is what it was.
    Failed {
        /// The step that failed.
        step: FailedStep,
        /// Why, with causes; never a secret value.
        error: String,
    },
}

impl TokenOutcome {
    /// Whether this tenant failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// Why a token is (or would be) replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// The secret does not exist.
    Missing,
    /// The secret exists but has no `AWSCURRENT` value.
    NoCurrentValue,
    /// The value is not a token (DESIGN §5 forms).
    Malformed,
    /// The token is for another role than the policy names.
    RoleMismatch,
    /// The token has no expiry, so no window can be computed.
    NoExpiry,
    /// The token expires within `rotate_before`.
    Expiring,
    /// Asked for, whatever the token's state.
    Forced,
}

/// Where a tenant's rotation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStep {
    /// Describing the secret.
    Describe,
    /// Reading its `AWSCURRENT` value.
    ReadCurrent,
    /// Loading the signing key.
    SigningKey,
    /// Minting the token.
    Mint,
    /// Storing the new token as the secret's first version.
    Create,
    /// Storing the new token as `AWSPENDING`.
    StagePending,
    /// The broker did not accept the new token.
    Test,
    /// Moving `AWSCURRENT` to the new version.
    Promote,
}

/// One scheduled cycle over every tenant in the policy, in tenant-name order.
/// A tenant that fails is reported and the others go on.
pub async fn rotate_tokens(
    policy: &Policy,
    secrets: &Client,
    broker_url: &Url,
    options: RotateOptions,
) -> Vec<TenantOutcome> {
    let run = Run::new(policy, secrets, broker_url, options);
    futures::stream::iter(policy.tenants())
        .map(|tenant| run.tenant(tenant))
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
    fn new(step: FailedStep, err: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            step,
            error: error_chain(err),
        }
    }
}

/// The current token and why it must go, or that it may stay.
enum Verdict {
    Keep(DateTime<Utc>),
    Replace {
        reason: RotationReason,
        current: Option<Current>,
    },
}

struct Current {
    version_id: String,
    expires_at: Option<DateTime<Utc>>,
    fingerprint: Option<String>,
}

/// State shared by the tenants of one run: the signing key is read once, and
/// only if some tenant needs a token.
struct Run<'a> {
    policy: &'a Policy,
    store: Store<'a>,
    broker_url: &'a Url,
    options: RotateOptions,
    signing_key: OnceCell<Result<SigningKey, String>>,
}

impl<'a> Run<'a> {
    fn new(
        policy: &'a Policy,
        secrets: &'a Client,
        broker_url: &'a Url,
        options: RotateOptions,
    ) -> Self {
        Self {
            policy,
            store: Store::new(secrets),
            broker_url,
            options,
            signing_key: OnceCell::new(),
        }
    }

    async fn tenant(&self, tenant: &Tenant) -> TenantOutcome {
        let outcome = match self.rotate(tenant).await {
            Ok(outcome) => outcome,
            Err(Failure { step, error }) => {
                tracing::warn!(
                    event = "token_rotation_failed",
                    tenant = tenant.name.as_str(),
                    role = tenant.role,
                    secret = tenant.token_secret,
                    step = ?step,
                    error = error,
                    "tenant token rotation failed; AWSCURRENT unchanged"
                );
                TokenOutcome::Failed { step, error }
            }
        };
        TenantOutcome {
            tenant: tenant.name.as_str().to_owned(),
            role: tenant.role.clone(),
            secret: tenant.token_secret.clone(),
            outcome,
        }
    }

    async fn rotate(&self, tenant: &Tenant) -> Result<TokenOutcome, Failure> {
        let now = Utc::now();
        let secret = tenant.token_secret.as_str();
        let verdict = self.verdict(tenant, now).await?;
        let (reason, current) = match verdict {
            Verdict::Keep(expires_at) => {
                tracing::debug!(
                    tenant = tenant.name.as_str(),
                    secret,
                    %expires_at,
                    "tenant token is fresh"
                );
                return Ok(TokenOutcome::Fresh { expires_at });
            }
            Verdict::Replace { reason, current } => (reason, current),
        };
        if self.options.dry_run {
            return Ok(TokenOutcome::Due {
                reason,
                expires_at: current.and_then(|c| c.expires_at),
            });
        }
        let key = self.signing_key().await.map_err(|error| Failure {
            step: FailedStep::SigningKey,
            error: error.to_owned(),
        })?;
        let minted = key
            .mint(&tenant.role, tenant.token_ttl, now)
            .map_err(|e| Failure::new(FailedStep::Mint, &e))?;
        // Chosen here and sent as the ClientRequestToken, so the SDK's own
        // retries of a write cannot add a second version.
        let version_id = uuid::Uuid::new_v4().to_string();
        match current {
            None => self.create(tenant, reason, &minted, &version_id).await,
            Some(current) => {
                self.replace(tenant, reason, &minted, &version_id, current)
                    .await
            }
        }
    }

    async fn verdict(&self, tenant: &Tenant, now: DateTime<Utc>) -> Result<Verdict, Failure> {
        let secret = tenant.token_secret.as_str();
        let Some(metadata) = self
            .store
            .describe(secret)
            .await
            .map_err(|e| Failure::new(FailedStep::Describe, &e))?
        else {
            return Ok(Verdict::Replace {
                reason: RotationReason::Missing,
                current: None,
            });
        };
        if metadata.deleted {
            // Writing to it would fail, and restoring it is a human decision.
            return Err(Failure {
                step: FailedStep::Describe,
                error: format!(
                    "secret {secret} is scheduled for deletion; restore it or remove the \
                     tenant from the policy"
                ),
            });
        }
        let Some(stored) = self
            .store
            .get(secret, Select::Stage(AWSCURRENT))
            .await
            .map_err(|e| Failure::new(FailedStep::ReadCurrent, &e))?
        else {
            return Ok(Verdict::Replace {
                reason: RotationReason::NoCurrentValue,
                current: None,
            });
        };
        let parsed = TenantToken::parse(secret, &stored.value).ok();
        let current = Current {
            version_id: stored.version_id,
            expires_at: parsed.as_ref().and_then(|t| t.expires_at),
            fingerprint: parsed.as_ref().map(|t| t.token.fingerprint()),
        };
        match judge(parsed.as_ref(), tenant, self.options.force, now) {
            Ok(expires_at) => Ok(Verdict::Keep(expires_at)),
            Err(reason) => Ok(Verdict::Replace {
                reason,
                current: Some(current),
            }),
        }
    }

    /// No current token: test first, then store it as `AWSCURRENT`, so that a
    /// token the broker refuses is never handed to the publish path.
    async fn create(
        &self,
        tenant: &Tenant,
        reason: RotationReason,
        minted: &MintedToken,
        version_id: &str,
    ) -> Result<TokenOutcome, Failure> {
        let secret = tenant.token_secret.as_str();
        let check = self.check(tenant, minted).await?;
        let value = minted.secret_value();
        let stored = if reason == RotationReason::Missing {
            let description = format!(
                "Pulsar token of tenant {} (role {}), minted and rotated by kong-pulsar",
                tenant.name.as_str(),
                tenant.role
            );
            self.store
                .create(secret, &value, version_id, &description)
                .await
        } else {
            self.store.put(secret, version_id, &value, AWSCURRENT).await
        };
        stored.map_err(|e| Failure::new(FailedStep::Create, &e))?;
        tracing::info!(
            event = "token_created",
            tenant = tenant.name.as_str(),
            role = tenant.role,
            secret,
            version_id,
            fingerprint = minted.token.fingerprint(),
            expires_at = %minted.expires_at,
            reason = ?reason,
            "tenant token created"
        );
        Ok(TokenOutcome::Created {
            reason,
            version_id: version_id.to_owned(),
            expires_at: minted.expires_at,
            fingerprint: minted.token.fingerprint(),
            check,
        })
    }

    /// AWSPENDING → broker check → AWSCURRENT. Any failure takes the pending
    /// label off again, so the next run (or a native rotation) starts clean.
    async fn replace(
        &self,
        tenant: &Tenant,
        reason: RotationReason,
        minted: &MintedToken,
        version_id: &str,
        current: Current,
    ) -> Result<TokenOutcome, Failure> {
        let secret = tenant.token_secret.as_str();
        self.store
            .put(secret, version_id, &minted.secret_value(), AWSPENDING)
            .await
            .map_err(|e| Failure::new(FailedStep::StagePending, &e))?;
        let promoted = match self.check(tenant, minted).await {
            Ok(check) => self
                .store
                .promote_pending(secret, version_id, Some(&current.version_id))
                .await
                .map(|()| check)
                .map_err(|e| Failure::new(FailedStep::Promote, &e)),
            Err(failure) => Err(failure),
        };
        let check = match promoted {
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
            event = "token_rotated",
            tenant = tenant.name.as_str(),
            role = tenant.role,
            secret,
            version_id,
            previous_version_id = current.version_id,
            fingerprint = minted.token.fingerprint(),
            previous_fingerprint = current.fingerprint.as_deref(),
            expires_at = %minted.expires_at,
            reason = ?reason,
            "tenant token rotated"
        );
        Ok(TokenOutcome::Rotated {
            reason,
            version_id: version_id.to_owned(),
            previous_version_id: current.version_id,
            old_expires_at: current.expires_at,
            new_expires_at: minted.expires_at,
            fingerprint: minted.token.fingerprint(),
            previous_fingerprint: current.fingerprint,
            check,
        })
    }

    async fn check(&self, tenant: &Tenant, minted: &MintedToken) -> Result<TokenCheck, Failure> {
        let topic = probe::check_topic(self.policy, tenant);
        probe::check_token(
            self.broker_url,
            &minted.token,
            topic.as_deref(),
            self.options.timeouts,
        )
        .await
        .map_err(|e| Failure::new(FailedStep::Test, &e))
    }

    async fn signing_key(&self) -> Result<&SigningKey, &str> {
        let name = self.policy.pulsar().token_signing_secret.as_str();
        self.signing_key
            .get_or_init(|| async {
                SigningKey::load(self.store, name)
                    .await
                    .map_err(|e| error_chain(&e))
            })
            .await
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Whether a stored token may stay (its expiry) or why it must be replaced.
/// Reasons that make the token unusable come before `Forced`, so the report
/// says what was actually wrong with it.
fn judge(
    token: Option<&TenantToken>,
    tenant: &Tenant,
    force: bool,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, RotationReason> {
    let token = token.ok_or(RotationReason::Malformed)?;
    if !is_for_role(token, &tenant.role) {
        return Err(RotationReason::RoleMismatch);
    }
    let expires_at = token.expires_at.ok_or(RotationReason::NoExpiry)?;
    let window_opens = chrono::Duration::from_std(tenant.rotate_before)
        .ok()
        .and_then(|window| expires_at.checked_sub_signed(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if window_opens <= now {
        return Err(RotationReason::Expiring);
    }
    if force {
        return Err(RotationReason::Forced);
    }
    Ok(expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(rotate_before: &str) -> Policy {
        Policy::from_str(
            &format!(
                r#"version: 1
pulsar: {{ cluster: standalone, token_signing_secret: kp/signing }}
tenants:
  payments:
    role: payments-gw
    token_secret: kp/tokens/payments
    token_ttl: 1h
    rotate_before: {rotate_before}
    namespaces: {{ orders: {{}} }}
"#
            ),
            None,
        )
        .unwrap()
    }

    fn token(sub: &str, role: Option<&str>, expires_at: Option<DateTime<Utc>>) -> TenantToken {
        use base64::Engine as _;
        let b64 = |v: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        TenantToken {
            token: crate::secrets::SecretValue::new(format!(
                "{}.{}.sig",
                b64(r#"{"alg":"HS256"}"#.into()),
                b64(format!(r#"{{"sub":"{sub}"}}"#))
            )),
            role: role.map(str::to_owned),
            expires_at,
        }
    }

    #[test]
    fn tokens_rotate_from_expiry_minus_rotate_before() {
        let policy = tenant("15m");
        let tenant = policy.tenants().next().unwrap();
        let now = Utc::now();
        let at = |mins: i64| Some(now + chrono::Duration::minutes(mins));
        let judge_at = |expires, force| {
            judge(
                Some(&token("payments-gw", None, expires)),
                tenant,
                force,
                now,
            )
        };
        assert_eq!(judge_at(at(16), false), Ok(at(16).unwrap()));
        // The window opens exactly `rotate_before` ahead of expiry.
        assert_eq!(judge_at(at(15), false), Err(RotationReason::Expiring));
        assert_eq!(judge_at(at(1), false), Err(RotationReason::Expiring));
        assert_eq!(judge_at(at(-5), false), Err(RotationReason::Expiring));
        assert_eq!(judge_at(at(50), true), Err(RotationReason::Forced));
        assert_eq!(judge_at(None, false), Err(RotationReason::NoExpiry));
    }

    #[test]
    fn unusable_tokens_are_replaced_for_what_is_wrong_with_them() {
        let policy = tenant("15m");
        let tenant = policy.tenants().next().unwrap();
        let now = Utc::now();
        let later = Some(now + chrono::Duration::hours(1));
        assert_eq!(
            judge(None, tenant, true, now),
            Err(RotationReason::Malformed)
        );
        let other_sub = token("someone-else", None, later);
        assert_eq!(
            judge(Some(&other_sub), tenant, true, now),
            Err(RotationReason::RoleMismatch)
        );
        let other_role = token("payments-gw", Some("someone-else"), later);
        assert_eq!(
            judge(Some(&other_role), tenant, false, now),
            Err(RotationReason::RoleMismatch)
        );
    }

    #[test]
    fn outcomes_serialise_flat_with_snake_case_tags() {
        let outcome = TenantOutcome {
            tenant: "payments".into(),
            role: "payments-gw".into(),
            secret: "kp/tokens/payments".into(),
            outcome: TokenOutcome::Failed {
                step: FailedStep::Test,
                error: "the broker rejected the token".into(),
            },
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "tenant": "payments",
                "role": "payments-gw",
                "secret": "kp/tokens/payments",
                "outcome": "failed",
                "step": "test",
                "error": "the broker rejected the token",
            })
        );
        let fresh = serde_json::to_value(TokenOutcome::Fresh {
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        })
        .unwrap();
        assert_eq!(fresh["outcome"], "fresh");
        assert_eq!(fresh["expires_at"], "2030-03-17T17:46:40Z");
    }
}
