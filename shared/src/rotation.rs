//! Keeping the policy's secrets fresh and Pulsar in step with the policy
//! (DESIGN §5, §7): the `rotate` function's side of the library.
//!
//! One engine rotates every kind of secret, so the edge and the broker never
//! disagree about which value works:
//!
//! 1. mint a new value ([`SecretKind::mint`]);
//! 2. store it as a new secret version staged `AWSPENDING`, leaving
//!    `AWSCURRENT` alone, so readers keep the old value meanwhile;
//! 3. prove it works against the real system ([`SecretKind::test`]);
//! 4. only then move `AWSCURRENT` to it; the old version becomes
//!    `AWSPREVIOUS` and keeps working until it expires.
//!
//! A failure at any step leaves `AWSCURRENT` where it was, and the scheduled
//! cycle takes its `AWSPENDING` label off again.
//!
//! * [`cycle()`] — the scheduled cycle over one kind, one [`SecretReport`] per
//!   secret; one secret failing never stops the others.
//! * [`rotation_step`] — Secrets Manager's four-step protocol for a secret of
//!   one kind, exactly as AWS's rotation Lambda template does it.
//! * [`kinds`] — tenant tokens and client certificates; [`kind`] is the trait
//!   a new kind implements.
//! * [`reconcile`] — tenants, namespaces, grants and schemas from the policy.
//! * [`handler`] — the `rotate` function: which of the above an event asks for.
//!
//! Secret values never reach logs, reports or error messages: only
//! fingerprints do.

pub mod custom_resource;
pub mod cycle;
pub mod handler;
pub mod kind;
pub mod kinds;
pub mod protocol;
pub mod reconcile;
pub mod report;

pub use cycle::{ForbiddenRoles, RotateOptions, cycle};
pub use kind::{KindError, Labels, MintError, Minted, SecretKind, Verdict};
pub use protocol::{
    RotationError, RotationStep, RotationStepEvent, StepAction, StepRefused, StepReport, describe,
    rotation_step,
};
pub use report::{FailedStep, Outcome, Reason, SecretReport};

/// Whether a policy's reference `wanted` to a secret is the secret `name`
/// (ARN `arn`). Secrets Manager events carry the ARN while the policy usually
/// holds the name, so both the name and the ARN (full, or partial without
/// AWS's random `-xxxxxx` suffix) match.
pub(crate) fn secret_matches(wanted: &str, name: &str, arn: Option<&str>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::kinds::token::TokenKind;
    use super::*;
    use crate::policy::Policy;
    use crate::pulsar::broker::Timeouts;
    use crate::telemetry::error_chain;

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
        let url = url::Url::parse("pulsar://127.0.0.1:6650").unwrap();
        let tokens = TokenKind::new(&policy, &url, Timeouts::default());
        let found = |name, arn| tokens.item_for_secret(name, arn).map(|t| t.role.as_str());
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/payments-AbC123";
        let billing =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/billing-Zz9xY8";
        // A longer name sharing the prefix is another secret.
        let longer =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:kp/tokens/billing-old-Zz9xY8";
        let cases = [
            ("kp/tokens/payments", Some(arn), Some("payments-gw")),
            ("other", Some(arn), None),
            ("kp/tokens/billing", Some(billing), Some("billing-gw")),
            ("kp/tokens/billing-old", Some(longer), None),
            ("kp/signing", None, None),
        ];
        for (name, arn, role) in cases {
            assert_eq!(found(name, arn), role, "{name} {arn:?}");
        }
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
