//! Who is calling: one [`Identity`] value, whatever the authentication method.
//! The authenticators (OIDC in [`oidc`], later AWS IAM and Kong consumers)
//! each produce one; the policy and the message properties consume it.

pub mod oidc;

use std::fmt;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// An OIDC access or ID token (`Authorization: Bearer`).
    Oidc,
    /// A signed `sts:GetCallerIdentity` request (`Authorization: KP-AWS-IAM`).
    Iam,
    /// A consumer that a Kong auth plugin authenticated.
    Kong,
}

impl AuthMethod {
    /// The value of the `kp-auth-method` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Iam => "iam",
            Self::Kong => "kong",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The principal (`kp-source-id`): OIDC subject, IAM ARN, Kong consumer id.
    pub principal: String,
    /// The calling service (`kp-service-tag`): OIDC client id claim, IAM role
    /// name, Kong consumer username. Empty when the credential names none.
    pub service: Option<String>,
    /// Group memberships (OIDC groups claim, Kong ACL groups).
    pub groups: Vec<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The OIDC issuer, `aws-iam` or `kong` (`kp-issuer`).
    pub issuer: String,
    /// The caller's ARN, for `iam_arn` rules (IAM only).
    pub iam_arn: Option<String>,
    /// The Kong consumer (username, else id), for `kong_consumer` rules.
    pub kong_consumer: Option<String>,
    /// The verified token's claims (OIDC), for audit and future rules.
    pub claims: serde_json::Map<String, serde_json::Value>,
}
