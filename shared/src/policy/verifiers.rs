//! The policy's identity settings as the verifiers' own configuration. The
//! conversion lives on this side so that identity never depends on the
//! policy: the verifiers can be built (and tested) from their configuration
//! alone, and the policy's YAML shape can change without touching them.

use std::time::Duration;

use super::{ClaimPath, IamSettings, OidcIssuer};
use crate::identity::iam::IamConfig;
use crate::identity::oidc::{ClaimMapping, IssuerConfig};

impl From<&OidcIssuer> for IssuerConfig {
    /// The verifier's view of an issuer: the policy's unset claims become
    /// empty names, which the verifier reads as "not mapped".
    fn from(p: &OidcIssuer) -> Self {
        let path = |c: &Option<ClaimPath>| {
            c.as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default()
        };
        Self {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms: p.algorithms.clone(),
            jwks_uri: p.jwks_uri.clone(),
            claims: ClaimMapping {
                subject: p.claims.subject.as_str().to_owned(),
                groups: path(&p.claims.groups),
                service: path(&p.claims.service),
            },
            audience_claim: p.audience_claim.clone(),
            leeway: Some(Duration::from_secs(p.leeway_seconds)),
            jwks_ttl: Some(Duration::from_secs(p.jwks_cache_seconds)),
            min_refetch_interval: Some(Duration::from_secs(p.jwks_refetch_seconds)),
            token_types: p.token_types.clone(),
        }
    }
}

impl From<&IamSettings> for IamConfig {
    fn from(p: &IamSettings) -> Self {
        Self {
            sts_endpoint: p.sts_endpoint.clone(),
            server_id: p.server_id.clone(),
            max_age: Duration::from_secs(p.max_age_seconds),
            allowed_accounts: p.allowed_accounts.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
