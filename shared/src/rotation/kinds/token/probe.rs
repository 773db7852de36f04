//! Proving a token against the real broker before anyone is handed it.
//!
//! Connecting is the authentication test: pulsar-rs sends the token in the
//! `CONNECT` frame and the broker checks signature, `exp` and `sub` there.
//! A topic lookup in one of the tenant's namespaces then asks the
//! authorization layer too (Pulsar allows a lookup with `produce` or
//! `consume`). A lookup never creates the topic, unlike a producer, so the
//! check leaves nothing behind on the broker.

use std::sync::Arc;

use url::Url;

use crate::policy::{Action, Policy, Tenant};
use crate::pulsar::broker::{Broker, BrokerError, Timeouts};
use crate::secrets::SecretValue;

/// The topic looked up in the check. Pulsar grants per namespace, so any
/// name in a granted namespace answers the question; a fixed, obvious name
/// keeps broker logs readable.
const CHECK_TOPIC: &str = "kp-token-check";

/// What the broker confirmed about a token that it accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "access", rename_all = "snake_case")]
pub enum TokenCheck {
    /// Authenticated, and the role may use `topic`.
    Authorized {
        /// The topic looked up.
        topic: String,
    },
    /// Authenticated; the lookup did not confirm access (no grant yet — the
    /// reconciler runs after rotation — or the namespace does not exist yet).
    /// The token itself is good, which is what rotation needs to know.
    AuthenticatedOnly {
        /// The topic looked up.
        topic: String,
        /// What the lookup answered.
        reason: String,
    },
    /// Authenticated; the policy gives the tenant no namespace to look in.
    Authenticated,
}

/// The broker did not accept the token, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The broker refused the token: wrong signing key, expired, malformed.
    #[error("the broker rejected the token")]
    Rejected(#[source] BrokerError),
    /// The broker could not be reached; the token is untested.
    #[error("the broker could not be reached to test the token")]
    Unreachable(#[source] BrokerError),
}

/// Where to look: `persistent://{tenant}/{namespace}/kp-token-check` in the
/// first namespace the policy has the role produce to, else consume from,
/// else any of the tenant's namespaces.
pub(super) fn check_topic(policy: &Policy, tenant: &Tenant) -> Option<String> {
    let desired = policy.desired_permissions();
    let granted = desired.get(&tenant.name);
    let with = |action: Action| {
        granted?
            .iter()
            .find(|(_, actions)| actions.contains(action))
            .map(|(ns, _)| ns.clone())
    };
    let namespace = with(Action::Produce)
        .or_else(|| with(Action::Consume))
        .or_else(|| tenant.namespaces.keys().next().cloned())?;
    Some(format!(
        "persistent://{}/{}/{CHECK_TOPIC}",
        tenant.name.as_str(),
        namespace.as_str()
    ))
}

/// Connects as whoever `token` names, then looks up `topic` when given.
pub(super) async fn check_token(
    broker_url: &Url,
    token: &SecretValue,
    topic: Option<&str>,
    timeouts: Timeouts,
) -> Result<TokenCheck, ProbeError> {
    let broker = Broker::connect(broker_url, Arc::new(token.clone()), timeouts)
        .await
        .map_err(|err| {
            if err.is_credentials() {
                ProbeError::Rejected(err)
            } else {
                ProbeError::Unreachable(err)
            }
        })?;
    let Some(topic) = topic else {
        return Ok(TokenCheck::Authenticated);
    };
    let lookup =
        tokio::time::timeout(timeouts.operation, broker.client().lookup_topic(topic)).await;
    let answer = match lookup {
        Ok(Ok(_)) => {
            return Ok(TokenCheck::Authorized {
                topic: topic.to_owned(),
            });
        }
        Ok(Err(err)) => BrokerError::classify(err),
        Err(_) => BrokerError::Timeout,
    };
    match answer {
        // A connection re-established mid-lookup re-authenticates; a refusal
        // there is as final as one at connect.
        err @ BrokerError::Unauthenticated(_) => Err(ProbeError::Rejected(err)),
        // The connect already proved the token; whatever else the lookup
        // says is about grants and namespaces, reported, not fatal.
        other => Ok(TokenCheck::AuthenticatedOnly {
            topic: topic.to_owned(),
            reason: crate::telemetry::error_chain(&other),
        }),
    }
}
