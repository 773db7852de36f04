//! What a caller ARN means as a principal: assumed roles become their role,
//! users, the account root and federated users keep their ARN, and any
//! other shape is refused. Policy `iam_arn` rules match what this produces.

use serde_json::{Map, Value};

use super::sts::CallerIdentity;
use super::{ISSUER, IamError};
use crate::identity::{AuthMethod, Identity};

impl CallerIdentity {
    /// The identity of the signer. Assumed roles become their role (the
    /// session name, chosen by whoever assumed the role, is only a detail);
    /// IAM users, the account root and federated users keep their ARN. Any
    /// other ARN shape is refused rather than guessed at.
    pub(super) fn into_identity(self) -> Result<Identity, IamError> {
        let unexpected = |reason: &str| IamError::UnexpectedResponse {
            status: 200,
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(unexpected("the caller ARN is not an ARN"));
        };
        let partition_ok = !partition.is_empty()
            && partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if arn != "arn" || !partition_ok || !region.is_empty() {
            return Err(unexpected("the caller ARN is not an ARN"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unexpected("the caller ARN has no account id"));
        }
        if account != self.account {
            return Err(unexpected("the caller ARN names another account"));
        }
        let mut claims = Map::new();
        let segments: Vec<&str> = resource.split('/').collect();
        let (principal, service_tag) = match (service, segments.as_slice()) {
            ("sts", &["assumed-role", role, session])
                if is_iam_name(role) && is_iam_name(session) =>
            {
                claims.insert("session_name".to_owned(), Value::from(session));
                (
                    format!("arn:{partition}:iam::{account}:role/{role}"),
                    Some(role.to_owned()),
                )
            }
            ("iam", &["user", ref path @ .., user])
                if path.iter().chain([&user]).all(|s| is_iam_name(s)) =>
            {
                (self.arn.clone(), Some(user.to_owned()))
            }
            ("iam", &["root"]) => (self.arn.clone(), None),
            ("sts", &["federated-user", user]) if is_iam_name(user) => {
                (self.arn.clone(), Some(user.to_owned()))
            }
            _ => {
                return Err(unexpected(
                    "the caller ARN is not a role, user, root or federated user",
                ));
            }
        };
        claims.insert("account".to_owned(), Value::from(self.account));
        claims.insert("user_id".to_owned(), Value::from(self.user_id));
        claims.insert("arn".to_owned(), Value::from(self.arn));
        Ok(Identity {
            iam_arn: Some(principal.clone()),
            principal,
            service: service_tag,
            groups: Vec::new(),
            method: AuthMethod::Iam,
            issuer: ISSUER.to_owned(),
            kong_consumer: None,
            claims,
        })
    }
}

/// IAM's name alphabet (roles, users, path segments, session names):
/// alphanumerics and `+=,.@_-`. Nothing a glob or a log would trip over.
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}
