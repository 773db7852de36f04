//! Who is calling: one [`Identity`] value, whatever the authentication method.
//! The authenticators ([`oidc`] bearer tokens, [`iam`] signed STS requests,
//! [`kong_consumer`] headers) each produce one; [`Authenticator`] decides
//! which applies to a request. The policy and the message properties consume
//! the result.
//!
//! Precedence, when a request carries more than one credential:
//! 1. More than one `Authorization` header is a 400: never guess.
//! 2. `Authorization: KP-AWS-IAM …` (when the policy enables IAM), and
//!    `Authorization: Bearer` with a token from a configured OIDC issuer, are
//!    verified here. If Kong is trusted and also names a consumer, the request
//!    carries two identities and is refused (400) rather than one silently
//!    winning.
//! 3. Any other `Authorization` value (Kong's own jwt/basic/key plugins leave
//!    theirs in place) defers to the trusted Kong consumer when there is one;
//!    otherwise it is a 401.
//! 4. No `Authorization`: the trusted Kong consumer, else 401.

pub mod iam;
pub mod kong_consumer;
pub mod oidc;

use std::fmt;

use crate::http::Headers;
use iam::{IamError, IamVerifier};
use oidc::{OidcError, OidcVerifier};

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

/// Why a request has no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("more than one Authorization header")]
    MultipleAuthorization,
    #[error("the request carries two identities: {0} and a Kong consumer")]
    Ambiguous(AuthMethod),
    #[error("unsupported Authorization scheme")]
    UnsupportedScheme,
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error(transparent)]
    Iam(#[from] IamError),
}

impl AuthError {
    /// A caller that was verified and then turned away (an IAM caller from
    /// an account that is not allowed), so the audit line can name it.
    pub fn refused_identity(&self) -> Option<&Identity> {
        match self {
            Self::Iam(IamError::AccountNotAllowed { identity, .. }) => Some(identity),
            _ => None,
        }
    }
}

/// Every authentication method the policy enables, built once per cold start.
pub struct Authenticator {
    oidc: OidcVerifier,
    iam: Option<IamVerifier>,
    kong_trusted: bool,
}

impl Authenticator {
    /// `iam` is `None` when the policy has no `identity.iam`; `kong_trusted`
    /// is the policy's `identity.kong.trusted`.
    pub fn new(oidc: OidcVerifier, iam: Option<IamVerifier>, kong_trusted: bool) -> Self {
        Self {
            oidc,
            iam,
            kong_trusted,
        }
    }

    /// The IAM verifier, when IAM callers are enabled (benchmarks read its
    /// STS call counter).
    pub fn iam(&self) -> Option<&IamVerifier> {
        self.iam.as_ref()
    }

    /// The OIDC verifier (benchmarks read its fetch counter).
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// Finds and verifies the caller's identity (precedence in the module docs).
    pub async fn authenticate(&self, headers: &Headers) -> Result<Identity, AuthError> {
        let mut values = headers.get_all("authorization");
        let authorization = values.next().map(str::trim);
        if values.next().is_some() {
            return Err(AuthError::MultipleAuthorization);
        }
        let kong = if self.kong_trusted {
            kong_consumer::consumer(headers)
        } else {
            None
        };
        let Some(authorization) = authorization.filter(|a| !a.is_empty()) else {
            return kong.ok_or(AuthError::Missing);
        };
        let (scheme, credential) = authorization
            .split_once(' ')
            .map(|(s, c)| (s, c.trim()))
            .unwrap_or((authorization, ""));
        if scheme.eq_ignore_ascii_case(iam::SCHEME) {
            let verifier = self.iam.as_ref().ok_or(AuthError::UnsupportedScheme)?;
            let identity = verifier.verify(credential).await?;
            return match kong {
                Some(_) => Err(AuthError::Ambiguous(AuthMethod::Iam)),
                None => Ok(identity),
            };
        }
        if scheme.eq_ignore_ascii_case("bearer")
            && (kong.is_none() || self.oidc.is_ours(credential))
        {
            if credential.is_empty() {
                return Err(AuthError::UnsupportedScheme);
            }
            let identity = self.oidc.verify(credential).await?;
            return match kong {
                Some(_) => Err(AuthError::Ambiguous(AuthMethod::Oidc)),
                None => Ok(identity),
            };
        }
        kong.ok_or(AuthError::UnsupportedScheme)
    }
}
