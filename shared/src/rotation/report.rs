//! The one vocabulary rotation reports in, whatever the kind of secret: what
//! happened to each secret of a scheduled cycle ([`SecretReport`]), why a
//! value was replaced ([`Reason`]) and where a rotation stopped
//! ([`FailedStep`]). Reports go to the function's JSON result and to
//! operators; fingerprints identify values, values never appear.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What happened to one secret in a scheduled cycle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretReport {
    /// The kind of secret (`token`, `certificate`).
    pub kind: &'static str,
    /// Its policy entry (tenant name, certificate entry name).
    pub name: String,
    /// The Pulsar role it authenticates as, when it authenticates as one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The secret.
    pub secret: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The outcome for one secret.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// There was no current value; one was minted, tested and stored as
    /// `AWSCURRENT`.
    Created {
        /// Why there was no value to keep.
        reason: Reason,
        /// The new version.
        version_id: String,
        /// The new value's expiry.
        expires_at: DateTime<Utc>,
        /// The new value's fingerprint.
        fingerprint: String,
        /// What the test confirmed.
        check: Value,
    },
    /// A new value is `AWSCURRENT`; the old one is `AWSPREVIOUS` and keeps
    /// working until its own expiry.
    Rotated {
        /// Why.
        reason: Reason,
        /// The new version.
        version_id: String,
        /// The version that is now `AWSPREVIOUS`.
        previous_version_id: String,
        /// The old value's expiry, when it could be read.
        old_expires_at: Option<DateTime<Utc>>,
        /// The new value's expiry.
        new_expires_at: DateTime<Utc>,
        /// The new value's fingerprint.
        fingerprint: String,
        /// The old value's fingerprint, when it could be read.
        previous_fingerprint: Option<String>,
        /// What the test confirmed about the new value.
        check: Value,
    },
    /// Nothing to do: the current value is usable and outside its window.
    Fresh {
        /// The current value's expiry.
        expires_at: DateTime<Utc>,
    },
    /// Dry run: this secret would be created or rotated.
    Due {
        /// Why.
        reason: Reason,
        /// The current value's expiry, when known.
        expires_at: Option<DateTime<Utc>>,
    },
    /// Nothing changed: `AWSCURRENT` is what it was, and no `AWSPENDING`
    /// version was left behind.
    Failed {
        /// The step that failed.
        step: FailedStep,
        /// Why, with causes; never a secret value.
        error: String,
    },
}

impl Outcome {
    /// Whether this secret failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// Why a value is (or would be) replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The secret does not exist.
    Missing,
    /// The secret exists but has no `AWSCURRENT` value.
    NoCurrentValue,
    /// The value is not of the kind's stored form.
    Malformed,
    /// A token for another role than the policy names.
    RoleMismatch,
    /// A certificate whose CN or SANs differ from the policy.
    SubjectChanged,
    /// The value says nothing about its expiry, so no window can be computed.
    NoExpiry,
    /// The value expires within its rotation window (or has expired).
    Expiring,
    /// A certificate not issued by the CA now in its `ca_secret` (the CA was
    /// replaced): renewed so clients move to the new CA.
    CaReplaced,
    /// Asked for, whatever the value's state.
    Forced,
}

/// Where a secret's rotation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStep {
    /// The secret's role may not be given a secret at all (an admin role, a
    /// broker super-user, or the super-users could not be read): checked
    /// before anything else, so nothing is minted.
    ForbiddenRole,
    /// Describing the secret (or it is scheduled for deletion).
    Describe,
    /// Reading its `AWSCURRENT` value.
    ReadCurrent,
    /// Loading what mints new values (the signing key, the CA).
    Issuer,
    /// Minting the new value.
    Mint,
    /// Storing the new value as the secret's first (or only current) version.
    Create,
    /// Storing the new value as `AWSPENDING`.
    StagePending,
    /// Proving the new value works.
    Test,
    /// Moving `AWSCURRENT` to the new version.
    Promote,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_flat_with_snake_case_tags() {
        let report = SecretReport {
            kind: "token",
            name: "payments".into(),
            role: Some("payments-gw".into()),
            secret: "kp/tokens/payments".into(),
            outcome: Outcome::Failed {
                step: FailedStep::Test,
                error: "the broker rejected the token".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "kind": "token",
                "name": "payments",
                "role": "payments-gw",
                "secret": "kp/tokens/payments",
                "outcome": "failed",
                "step": "test",
                "error": "the broker rejected the token",
            })
        );
        let fresh = serde_json::to_value(Outcome::Fresh {
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        })
        .unwrap();
        assert_eq!(fresh["outcome"], "fresh");
        assert_eq!(fresh["expires_at"], "2030-03-17T17:46:40Z");
    }
}
