//! Tenant Pulsar tokens as a secret kind (DESIGN §5, §7): every tenant's
//! `token_secret` holds a JWT for the tenant role, minted with the key the
//! broker verifies ([`SigningKey`], from `pulsar.token_signing_secret`) and
//! proven by connecting to the broker as that role (`probe.rs`).
//!
//! The old token stays valid until its own `exp` after a rotation, so
//! publishers holding it are never cut off mid-rotation; the window
//! `rotate_before` leaves them time to read the new one.

mod probe;
mod signing;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;

pub use probe::{ProbeError, TokenCheck};
pub use signing::{MintedToken, SigningKey, SigningKeyError};

use crate::policy::{Policy, Tenant};
use crate::pulsar::broker::Timeouts;
use crate::rotation::kind::{KindError, Labels, MintError, Minted, SecretKind, Verdict};
use crate::rotation::report::Reason;
use crate::secrets::store::Store;
use crate::secrets::{SecretValue, TenantToken, unverified_claims};
use crate::telemetry::error_chain;

/// Why a token did not pass the test step.
#[derive(Debug, thiserror::Error)]
pub enum TokenTestError {
    /// The value is not a token for the tenant role.
    #[error("the value does not hold a token for role {role}")]
    NotForRole {
        /// The tenant role the token must be for.
        role: String,
    },
    /// The broker refused the token, or could not be asked.
    #[error(transparent)]
    Broker(#[from] ProbeError),
}

/// The tenant tokens of a policy, tested against the broker at `broker_url`.
/// The signing key is read once per instance, and only if a token is minted.
pub struct TokenKind<'p> {
    policy: &'p Policy,
    broker_url: &'p Url,
    timeouts: Timeouts,
    signing_key: OnceCell<Result<SigningKey, String>>,
}

impl<'p> TokenKind<'p> {
    /// Tokens of `policy`'s tenants; `timeouts` bound each broker check.
    pub fn new(policy: &'p Policy, broker_url: &'p Url, timeouts: Timeouts) -> Self {
        Self {
            policy,
            broker_url,
            timeouts,
            signing_key: OnceCell::new(),
        }
    }

    async fn signing_key(&self, store: Store<'_>) -> Result<&SigningKey, KindError> {
        let name = self.policy.pulsar().token_signing_secret.as_str();
        self.signing_key
            .get_or_init(|| async {
                SigningKey::load(store, name)
                    .await
                    .map_err(|e| error_chain(&e))
            })
            .await
            .as_ref()
            .map_err(|error| error.clone().into())
    }
}

#[async_trait]
impl SecretKind for TokenKind<'_> {
    type Item = Tenant;

    fn kind(&self) -> &'static str {
        "token"
    }

    fn items(&self) -> Vec<&Tenant> {
        self.policy.tenants().collect()
    }

    fn labels<'a>(&self, tenant: &'a Tenant) -> Labels<'a> {
        Labels {
            name: tenant.name.as_str(),
            role: Some(&tenant.role),
            secret: &tenant.token_secret,
        }
    }

    fn description(&self, tenant: &Tenant) -> String {
        format!(
            "Pulsar token of tenant {} (role {}), minted and rotated by kong-pulsar",
            tenant.name.as_str(),
            tenant.role
        )
    }

    async fn judge(
        &self,
        _store: Store<'_>,
        tenant: &Tenant,
        value: &SecretValue,
        now: DateTime<Utc>,
    ) -> Verdict {
        let parsed = TenantToken::parse(&tenant.token_secret, value).ok();
        let fingerprint = parsed.as_ref().map(|t| t.token.fingerprint());
        match judge(parsed.as_ref(), tenant, now) {
            Ok(expires_at) => Verdict::Keep {
                expires_at,
                fingerprint: fingerprint.unwrap_or_default(),
            },
            Err(reason) => Verdict::Replace {
                reason,
                expires_at: parsed.and_then(|t| t.expires_at),
                fingerprint,
            },
        }
    }

    async fn mint(
        &self,
        store: Store<'_>,
        tenant: &Tenant,
        now: DateTime<Utc>,
    ) -> Result<Minted, MintError> {
        let key = self.signing_key(store).await.map_err(MintError::Issuer)?;
        let minted = key
            .mint(&tenant.role, tenant.token_ttl, now)
            .map_err(|e| MintError::Mint(e.into()))?;
        Ok(Minted {
            value: minted.secret_value(),
            expires_at: minted.expires_at,
            fingerprint: minted.token.fingerprint(),
        })
    }

    async fn test(
        &self,
        _store: Store<'_>,
        tenant: &Tenant,
        value: &SecretValue,
        _now: DateTime<Utc>,
    ) -> Result<Value, KindError> {
        let not_for_role = || TokenTestError::NotForRole {
            role: tenant.role.clone(),
        };
        let token = TenantToken::parse(&tenant.token_secret, value).map_err(|_| not_for_role())?;
        if !is_for_role(&token, &tenant.role) {
            return Err(not_for_role().into());
        }
        let topic = probe::check_topic(self.policy, tenant);
        let check = probe::check_token(
            self.broker_url,
            &token.token,
            topic.as_deref(),
            self.timeouts,
        )
        .await
        .map_err(TokenTestError::from)?;
        Ok(serde_json::to_value(check)?)
    }
}

/// Whether a stored token may stay (its expiry) or why it must be replaced.
fn judge(
    token: Option<&TenantToken>,
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Reason> {
    let token = token.ok_or(Reason::Malformed)?;
    if !is_for_role(token, &tenant.role) {
        return Err(Reason::RoleMismatch);
    }
    let expires_at = token.expires_at.ok_or(Reason::NoExpiry)?;
    let window_opens = chrono::Duration::from_std(tenant.rotate_before)
        .ok()
        .and_then(|window| expires_at.checked_sub_signed(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if window_opens <= now {
        return Err(Reason::Expiring);
    }
    Ok(expires_at)
}

/// Whether a stored token is for `role`: the JWT's `sub` (read without
/// verifying: only compared with the policy, never trusted) must be `role`,
/// and so must the secret's `role` field when it has one. A token whose `sub`
/// cannot be read is no use to the broker either.
fn is_for_role(token: &TenantToken, role: &str) -> bool {
    let sub = unverified_claims(token.token.expose())
        .and_then(|claims| claims.get("sub")?.as_str().map(str::to_owned));
    sub.as_deref() == Some(role) && token.role.as_deref().is_none_or(|r| r == role)
}

#[cfg(test)]
mod tests;
