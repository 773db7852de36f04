//! Tenant token rotation (DESIGN §5, §7): every tenant's Pulsar token secret
//! is created when missing and replaced before it expires, and Secrets
//! Manager's own four-step rotation protocol can drive the same replacement.
//!
//! Both paths follow one discipline, so the edge and the broker never
//! disagree about which token works:
//!
//! 1. mint a token for the tenant role with the signing key the broker trusts
//!    ([`SigningKey`], from `pulsar.token_signing_secret`);
//! 2. store it as a new secret version staged `AWSPENDING`, leaving
//!    `AWSCURRENT` alone, so readers keep the old token meanwhile;
//! 3. prove the broker accepts it (a real connect as that role, then a topic
//!    lookup in one of the tenant's namespaces);
//! 4. only then move `AWSCURRENT` to it; the old version becomes `AWSPREVIOUS`
//!    and its token stays valid until its own `exp`, so publishers holding it
//!    are never cut off mid-rotation.
//!
//! A failure at any step leaves `AWSCURRENT` where it was.
//!
//! * [`rotate_tokens`] — the scheduled cycle, one [`TenantOutcome`] per tenant;
//!   one tenant failing never stops the others.
//! * [`handle_rotation_step`] — `createSecret` / `setSecret` / `testSecret` /
//!   `finishSecret`, exactly as AWS's rotation Lambda template does them.
//!
//! Token values never reach logs, reports or error messages: only
//! [`SecretValue::fingerprint`](crate::secrets::SecretValue::fingerprint)s do.

mod probe;
mod protocol;
mod scheduled;
mod signing;

pub mod handler;
pub mod kinds;
pub mod reconcile;

pub use crate::secrets::store::StoreError;
pub use probe::{ProbeError, TokenCheck};
pub use protocol::{
    RotationError, RotationStep, RotationStepEvent, StepAction, StepRefused, StepReport,
    handle_rotation_step,
};
pub(crate) use protocol::{already_staged, describe, staged_for_rotation, token_step};
pub use scheduled::{
    FailedStep, RotateOptions, RotationReason, TenantOutcome, TokenOutcome, rotate_tokens,
};
pub use signing::{MintedToken, SigningKey, SigningKeyError};

use crate::policy::{Policy, Tenant};
use crate::secrets::TenantToken;
use crate::telemetry::error_chain;

/// The tenant whose `token_secret` names this secret (see [`names_secret`]).
pub fn tenant_for_secret<'p>(
    policy: &'p Policy,
    name: &str,
    arn: Option<&str>,
) -> Option<&'p Tenant> {
    policy
        .tenants()
        .find(|tenant| names_secret(&tenant.token_secret, name, arn))
}

/// Whether a policy's reference `wanted` to a secret is the secret `name`
/// (ARN `arn`). Secrets Manager events carry the ARN while the policy usually
/// holds the name, so both the name and the ARN (full, or partial without
/// AWS's random `-xxxxxx` suffix) match.
pub(crate) fn names_secret(wanted: &str, name: &str, arn: Option<&str>) -> bool {
    wanted == name
        || arn.is_some_and(|arn| {
            wanted == arn
                || (wanted.starts_with("arn:")
                    && arn.strip_prefix(wanted).is_some_and(is_arn_random_suffix))
        })
}

/// AWS appends `-` and six random characters to a secret's name in its ARN.
fn is_arn_random_suffix(rest: &str) -> bool {
    rest.len() == 7 && rest.starts_with('-') && rest[1..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether a stored token is for `role`: the JWT's `sub` (read without
/// verifying: only compared with the policy, never trusted) must be `role`,
/// and so must the secret's `role` field when it has one. A token whose `sub`
/// cannot be read is no use to the broker either.
fn is_for_role(token: &TenantToken, role: &str) -> bool {
    let sub = crate::secrets::unverified_claims(token.token.expose())
        .and_then(|claims| claims.get("sub")?.as_str().map(str::to_owned));
    sub.as_deref() == Some(role) && token.role.as_deref().is_none_or(|r| r == role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_str(
            r#"version: 1
pulsar: { cluster: standalone, token_signing_secret: kp/signing }
tenants:
  payments:
    role: payments-gw
    token_secret: kp/tokens/payments
    token_ttl: 24h
    namespaces: { orders: {} }
  billing:
    role: billing-gw
    token_secret: "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/billing"
    token_ttl: 24h
    namespaces: { invoices: {} }
"#,
            None,
        )
        .unwrap()
    }

    #[test]
    fn secrets_map_to_their_tenant_by_name_or_arn() {
        let policy = policy();
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/payments-AbC123";
        let found = |name, arn| tenant_for_secret(&policy, name, arn).map(|t| t.role.as_str());
        assert_eq!(found("kp/tokens/payments", Some(arn)), Some("payments-gw"));
        assert_eq!(found("other", Some(arn)), None);
        let billing =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/billing-Zz9xY8";
        assert_eq!(
            found("kp/tokens/billing", Some(billing)),
            Some("billing-gw")
        );
        // A longer name sharing the prefix is another secret.
        let longer =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/billing-old-Zz9xY8";
        assert_eq!(found("kp/tokens/billing-old", Some(longer)), None);
        assert_eq!(found("kp/signing", None), None);
    }

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
    }
}
