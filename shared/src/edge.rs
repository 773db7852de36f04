//! The edge: everything that serves HTTP through Kong. Kong's `aws-lambda`
//! payloads come in ([`kong`]), are parsed into types once, and go out as
//! proxy-integration responses; errors become `application/problem+json` in
//! exactly one place ([`problem`]). [`publish`] is the publish function's
//! handler; [`idempotency`] remembers its answers for retries. [`consume`]
//! is the consume function's: cursor reads, subscriptions, acknowledgements.
//!
//! Nothing below the edge sees a raw request: identity gets [`Headers`],
//! the policy a parsed topic name, Pulsar an outgoing message.
//!
//! [`Headers`]: crate::http::Headers

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde_json::Value;

use crate::identity::iam::{IamConfig, IamVerifier};
use crate::identity::oidc::{IssuerConfig, OidcVerifier, VerifierOptions};
use crate::identity::{Authenticator, Identity};
use crate::policy::Policy;
use crate::pulsar::topic::TopicName;
use crate::telemetry::{Audit, Operation};
use kong::ProxyResponse;
use problem::ApiError;

pub mod cloudevents_spec;
pub mod consume;
pub mod idempotency;
pub mod kong;
pub mod problem;
pub mod publish;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("OIDC issuer configuration: {0}")]
    Oidc(#[from] crate::identity::oidc::ConfigError),
    #[error("identity.iam: {0}")]
    Iam(#[from] crate::identity::iam::IamError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("KP_PROVENANCE_JWKS_URL: {0}")]
    Jwks(#[from] kong_pulsar_verify::FetchError),
}

/// The authenticator for `policy`'s identity sources (OIDC issuers, IAM,
/// trusted Kong consumers). No network call happens here.
fn authenticator(policy: &Policy) -> Result<Authenticator, StartupError> {
    let issuers: Vec<IssuerConfig> = policy
        .oidc_issuers()
        .iter()
        .map(IssuerConfig::from)
        .collect();
    IssuerConfig::validate_all(&issuers)?;
    // One client (one TLS set-up at cold start) for the IdPs and STS:
    // both need redirects off, and both set per-request timeouts.
    let http = IamVerifier::http_client()?;
    let iam = match policy.iam() {
        Some(settings) => {
            let config = IamConfig::from(settings);
            config.validate()?;
            Some(IamVerifier::new(config, http.clone()))
        }
        None => None,
    };
    Ok(Authenticator::new(
        OidcVerifier::new(issuers, http, VerifierOptions::default()),
        iam,
        policy.kong_trusted(),
    ))
}

/// What a request revealed about itself on its way through a handler, for
/// its one audit line (whatever became of it).
#[derive(Default)]
struct AuditState {
    request_id: Option<String>,
    identity: Option<Identity>,
    topic: Option<TopicName>,
    decision: Option<&'static str>,
    rule: Option<String>,
    message_id: Option<String>,
    events: usize,
}

impl AuditState {
    /// The response to `result` (a problem for an error, its cause logged
    /// when it is the server's), after writing the audit line.
    fn finish(
        self,
        operation: Operation,
        event: &LambdaEvent<Value>,
        started: Instant,
        result: Result<ProxyResponse, ApiError>,
    ) -> ProxyResponse {
        let request_id = self
            .request_id
            .unwrap_or_else(|| event.context.request_id.clone());
        let error_code = result.as_ref().err().map(ApiError::code);
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                if matches!(err.status().0, 500..) {
                    tracing::error!(
                        request_id,
                        operation = operation.name(),
                        error = %err,
                        cause = ?std::error::Error::source(&err),
                        "request failed"
                    );
                }
                err.to_response(&request_id)
            }
        };
        Audit {
            operation,
            request_id: &request_id,
            principal: self.identity.as_ref().map(|i| i.principal.as_str()),
            auth_method: self.identity.as_ref().map(|i| i.method.as_str()),
            tenant: self.topic.as_ref().map(|t| t.tenant.as_str()),
            namespace: self.topic.as_ref().map(|t| t.namespace.as_str()),
            topic: self.topic.as_ref().map(|t| t.topic.as_str()),
            decision: self.decision,
            rule: self.rule.as_deref(),
            message_id: self.message_id,
            events: self.events,
            error_code,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
        .emit();
        response
    }
}

/// Safety margin kept before the Lambda deadline so the function answers 504
/// itself instead of being killed (which Kong would turn into an opaque 502).
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(300);
/// Budget when the invocation carries no deadline (direct calls in tests).
const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// Time left before the invocation's deadline (epoch milliseconds). Direct
/// calls carry 0, and `cargo lambda watch` sends a fixed 600000 rather than an
/// epoch time; anything before 2001 is treated as "no deadline".
fn budget(deadline_ms: u64) -> Duration {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    if deadline_ms < YEAR_2001_MS {
        return DEFAULT_BUDGET;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_without_a_deadline_is_the_default() {
        assert_eq!(budget(0), DEFAULT_BUDGET);
        assert_eq!(budget(600_000), DEFAULT_BUDGET);
        assert_eq!(budget(1_000_000_000_000), Duration::ZERO);
        let in_5s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 5_000;
        assert!(budget(in_5s) > Duration::from_secs(4) && budget(in_5s) <= Duration::from_secs(5));
    }
}
