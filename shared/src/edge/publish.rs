//! The `publish` handler: Kong request → identity → policy → schema →
//! tenant token → provenance seal → Pulsar → receipt. Everything it needs is
//! built once per cold start into a [`Publisher`]; each invocation is
//! [`Publisher::handle`]. The same function serves the provenance JWKS
//! (`GET …/.well-known/jwks.json`, no authentication: public keys only).
//!
//! The seams, for tests and the benchmark: [`Publisher::build_with`] takes
//! the publisher's dependencies (configuration, policy, Secrets Manager
//! source) as arguments, and the pipeline's pure stages are public on their
//! own: [`route`], [`Publisher::parse_events`], [`Envelope`] and the
//! [`Publisher::signer`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Config, MetadataLimits};
use crate::edge::kong::{HttpRequest, ProxyResponse, parse_request};
use crate::edge::problem::{ApiError, Violation};
use crate::http::Headers;
use crate::identity::{Authenticator, Identity};
use crate::policy::{Decision, Policy};
use crate::provenance::Signer;
use crate::pulsar::broker::{MessageId, TenantBrokers, TenantCredentials, Timeouts};
use crate::pulsar::topic::TopicName;
use crate::secrets::{CachedSecrets, SecretSource, SecretsManager};
use crate::telemetry::Operation;

use super::idempotency::{IdempotencyCache, Replay};
use super::{AuditState, DEADLINE_MARGIN, StartupError, authenticator, budget};

pub mod cloudevents;
mod envelope;

use cloudevents::CloudEvent;
pub use envelope::Envelope;
use envelope::request_fingerprint;

/// Request limits (from [`crate::config::Config`]).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body_bytes: usize,
    max_batch: usize,
    metadata: MetadataLimits,
}

/// Everything the handler needs, built once per cold start.
pub struct Publisher {
    limits: Limits,
    policy: Arc<Policy>,
    auth: Authenticator,
    brokers: TenantBrokers,
    idempotency: IdempotencyCache,
    signer: Option<Signer>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST …/events/{tenant}/{namespace}/{topic}`.
    Publish(TopicName),
    /// `GET …/.well-known/jwks.json`: the provenance public keys.
    Jwks,
}

/// How long consumers may cache the JWKS. A new key is listed for the
/// policy's `publish_lead` before it signs, which must be longer than this
/// plus `KP_SECRET_TTL`.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// The parsed body of a request: its events, each checked against the
/// topic's schema when the policy gives one.
#[derive(Debug)]
pub struct Events {
    /// One payload per event, as sent (the bytes of the body or of its line,
    /// or a CloudEvent's `data`).
    pub payloads: Vec<Vec<u8>>,
    /// The body was a batch (NDJSON or CloudEvents): the response is a
    /// batch, however short.
    pub ndjson: bool,
    /// The CloudEvents, one per payload, when the request carried them.
    pub cloud: Vec<CloudEvent>,
}

impl Publisher {
    /// Builds everything once per cold start: the policy (from
    /// `config.policy`) and Secrets Manager (from `aws`), then the rest as
    /// [`Publisher::build_with`] does. No network call happens here.
    pub fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let policy = Policy::load(&config.policy)?;
        Self::build_with(config, policy, SecretsManager::from_conf(aws))
    }

    /// Builds a publisher from its dependencies: the OIDC verifier and the
    /// IAM verifier (from `policy`), a cache in front of `secrets` (entries
    /// live `config.secret_ttl`) and the lazily connecting Pulsar pool
    /// (`config.pulsar_service_url`), with `config`'s request limits.
    /// `config.policy` is not read: `policy` is the policy. No network call
    /// happens here.
    pub fn build_with(
        config: &Config,
        policy: Policy,
        secrets: impl SecretSource + 'static,
    ) -> Result<Self, StartupError> {
        let policy = Arc::new(policy);
        let auth = authenticator(&policy)?;
        let secrets: Arc<dyn SecretSource> =
            Arc::new(CachedSecrets::new(secrets, config.secret_ttl));
        let signer = policy
            .provenance()
            .map(|settings| Signer::new(settings, secrets.clone()));
        let brokers = TenantBrokers::new(
            config.pulsar_service_url.clone(),
            secrets,
            Timeouts::default(),
        )
        .with_max_producers(config.max_producers);
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            max_batch: config.max_batch,
            metadata: config.metadata,
        };
        Ok(Self {
            limits,
            policy,
            auth,
            brokers,
            idempotency: IdempotencyCache::new(10_000, Duration::from_secs(600)),
            signer,
        })
    }

    /// The policy the publisher authorizes with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The authenticator the publisher identifies callers with.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The provenance signer (`None` without `provenance:` in the policy),
    /// for the benchmark's replay of the seal step.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// Handles one invocation. Never fails: every outcome is an HTTP response
    /// in the proxy-integration shape, and exactly one audit line is written.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> ProxyResponse {
        let started = Instant::now();
        let budget = budget(event.context.deadline);
        let mut audit = AuditState::default();
        let result = self.serve(&event, budget, &mut audit).await;
        audit.finish(Operation::Publish, &event, started, result)
    }

    async fn serve(
        &self,
        event: &LambdaEvent<Value>,
        budget: Duration,
        audit: &mut AuditState,
    ) -> Result<ProxyResponse, ApiError> {
        let request = parse_request(&event.payload, self.limits.max_body_bytes)?;
        let request_id = request
            .request_id
            .clone()
            .unwrap_or_else(|| event.context.request_id.clone());
        audit.request_id = Some(request_id.clone());
        match route(&request)? {
            Route::Jwks => self.jwks().await,
            Route::Publish(topic) => {
                audit.topic = Some(topic.clone());
                self.publish(&request, topic, request_id, budget, audit)
                    .await
            }
        }
    }

    /// The provenance JWKS, from the same cached key set the signatures use.
    async fn jwks(&self) -> Result<ProxyResponse, ApiError> {
        let signer = self.signer.as_ref().ok_or(ApiError::NotFound)?;
        let keys = signer.keys().await?;
        let mut response = ProxyResponse::json(200, &Value::Null)
            .with_header("content-type", "application/jwk-set+json")
            .with_header(
                "cache-control",
                format!("public, max-age={}", JWKS_MAX_AGE.as_secs()),
            );
        response.body = keys.jwks_json();
        Ok(response)
    }

    async fn publish(
        &self,
        request: &HttpRequest,
        topic: TopicName,
        request_id: String,
        budget: Duration,
        audit: &mut AuditState,
    ) -> Result<ProxyResponse, ApiError> {
        // Caller metadata is bounded before any credential is checked: a
        // request past a limit costs no JWKS or STS round trip.
        let envelope = Envelope::from_headers(&request.headers, &self.limits.metadata)?;

        let identity = tokio::time::timeout(budget, self.auth.authenticate(&request.headers))
            .await
            .map_err(|_| ApiError::Timeout)?
            .inspect_err(|e| audit.identity = e.refused_identity().cloned())?;
        // Kept in the audit record and borrowed back: the claims are not copied.
        let identity = &*audit.identity.insert(identity);

        // Decoded before the policy is asked: a CloudEvent's source and type
        // are part of the question. The schema is checked only after it
        // said yes (its violations describe the schema).
        let decoded = self.decode(request)?;
        let claims: Vec<_> = decoded.cloud.iter().map(CloudEvent::claim).collect();
        let rule = match self.policy.authorize_produce(identity, &topic, &claims) {
            Decision::Allow { rule } => rule.to_owned(),
            Decision::Deny => {
                audit.decision = Some("deny");
                return Err(ApiError::Forbidden);
            }
        };
        audit.decision = Some("allow");
        audit.rule = Some(rule);
        let tenant = self
            .policy
            .tenant(&topic.tenant)
            .ok_or(ApiError::Forbidden)?;

        let Events {
            payloads: events,
            ndjson,
            cloud,
        } = self.check_schema(decoded, &topic)?;
        audit.events = events.len();

        // Without an Idempotency-Key, a CloudEvent's source + id is one (the
        // spec makes the pair unique): retries keep their kp-event-id. The
        // same event sent to another topic is not a retry, so its replay
        // slot is per topic (its event id is not).
        let idempotency_key = envelope
            .idempotency_key
            .clone()
            .or_else(|| cloud_request_key(&cloud).map(|key| format!("{key}@{topic}")));
        // The body is hashed only when there is a key to compare it under.
        let claim = match &idempotency_key {
            // Bounded: a concurrent attempt under the same key is waited for.
            Some(key) => match tokio::time::timeout(
                budget.saturating_sub(DEADLINE_MARGIN),
                self.idempotency.claim(
                    [
                        identity.method.as_str(),
                        &identity.issuer,
                        &identity.principal,
                    ],
                    key,
                    request_fingerprint(&topic, request, &envelope),
                ),
            )
            .await
            .map_err(|_| ApiError::Timeout)?
            {
                Replay::Stored(response) => {
                    return Ok(response.with_header("idempotent-replayed", "true"));
                }
                Replay::Mismatch => return Err(ApiError::IdempotencyKeyReused),
                Replay::Claimed(claim) => Some(claim),
            },
            None => None,
        };

        // Read before anything is sent: without the key, nothing is
        // published (never an unsigned event).
        let keys = match &self.signer {
            Some(signer) => Some(signer.keys().await?),
            None => None,
        };
        let now = chrono::Utc::now();
        let received_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let full_topic = topic.to_string();
        let batch = events.len() > 1 || ndjson;
        let mut messages = Vec::with_capacity(events.len());
        let mut event_ids = Vec::with_capacity(events.len());
        for (index, payload) in events.into_iter().enumerate() {
            let ce = cloud.get(index);
            let event_id = match ce {
                // Each CloudEvent's own pair: the same event keeps its id in
                // whatever batch it is sent again.
                Some(ce) if envelope.idempotency_key.is_none() => {
                    event_id(identity, Some(&cloud_event_key(ce)), None)
                }
                _ => event_id(identity, idempotency_key.as_deref(), batch.then_some(index)),
            };
            let mut message = envelope.message(
                payload,
                identity,
                &topic,
                &request_id,
                &received_at,
                &event_id,
            );
            if let Some(ce) = ce {
                message.properties.extend(ce.properties());
                message.key = ce.partition_key().map(str::to_owned);
                message.event_time_ms = ce.time.as_ref().map(|(_, ms)| *ms);
            }
            messages.push(message);
            event_ids.push(event_id);
        }

        if let Some(keys) = &keys {
            keys.seal_all(&full_topic, &mut messages, now.timestamp())?;
        }

        let credentials = TenantCredentials {
            role: &tenant.role,
            token_secret: &tenant.token_secret,
        };
        let sent = self
            .brokers
            .send(
                credentials,
                &topic,
                messages,
                budget.saturating_sub(DEADLINE_MARGIN),
            )
            .await
            .map_err(|failure| ApiError::send_failed(failure, &event_ids, batch))?;
        audit.message_id = sent.first().map(|id| {
            if sent.len() > 1 {
                format!("{id} (+{})", sent.len() - 1)
            } else {
                id.to_string()
            }
        });

        let receipts = sent.iter().zip(&event_ids);
        let response = if batch {
            let results: Vec<Receipt> = receipts
                .enumerate()
                .map(|(index, (message_id, event_id))| Receipt {
                    index: Some(index),
                    message_id,
                    event_id,
                })
                .collect();
            ProxyResponse::json(
                202,
                &BatchAccepted {
                    topic: &full_topic,
                    results,
                },
            )
        } else {
            ProxyResponse::json(
                202,
                &Accepted {
                    topic: &full_topic,
                    receipt: Receipt {
                        index: None,
                        message_id: &sent[0],
                        event_id: &event_ids[0],
                    },
                },
            )
        };
        if let Some(claim) = claim {
            claim.complete(response.clone()).await;
        }
        Ok(response)
    }

    /// Parses the body into events (one, one per NDJSON line, or
    /// CloudEvents) and checks each against the topic's schema; nothing is
    /// sent unless all pass.
    pub fn parse_events(
        &self,
        request: &HttpRequest,
        topic: &TopicName,
    ) -> Result<Events, ApiError> {
        self.check_schema(self.decode(request)?, topic)
    }

    /// The body as events, before any policy question: CloudEvents'
    /// attributes checked whole, every payload left to
    /// [`Self::check_schema`] (one parse).
    fn decode(&self, request: &HttpRequest) -> Result<Events, ApiError> {
        let media_type = media_type(&request.headers);
        if let Some(mode) = cloudevents::mode(&media_type, &request.headers)? {
            let mut cloud =
                cloudevents::parse(request, mode, self.limits.max_batch, &self.limits.metadata)?;
            // The payloads move out of the events, which keep their attributes.
            let payloads = cloud
                .iter_mut()
                .map(|e| std::mem::take(&mut e.data))
                .collect();
            return Ok(Events {
                payloads,
                ndjson: mode == cloudevents::Mode::Batch,
                cloud,
            });
        }
        let payloads: Vec<Vec<u8>> = match media_type.as_str() {
            "application/json" => vec![request.body.clone()],
            "application/x-ndjson" => {
                let lines: Vec<&[u8]> = request
                    .body
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .collect();
                // One trailing newline is customary; blank lines elsewhere are errors.
                let lines = match lines.split_last() {
                    Some((&[], rest)) => rest,
                    _ => &lines[..],
                };
                if lines.is_empty() {
                    return Err(ApiError::BadRequest("the NDJSON batch is empty".into()));
                }
                if lines.len() > self.limits.max_batch {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "the batch has {} events; at most {} are accepted",
                        lines.len(),
                        self.limits.max_batch
                    )));
                }
                lines.iter().map(|l| l.to_vec()).collect()
            }
            "" => return Err(ApiError::UnsupportedMediaType("(none)".into())),
            other => return Err(ApiError::UnsupportedMediaType(other.to_owned())),
        };
        Ok(Events {
            payloads,
            ndjson: media_type == "application/x-ndjson",
            cloud: Vec::new(),
        })
    }

    /// Checks that every event whose data is JSON is, and that every event
    /// meets the topic's schema, if it has one (one parse per event).
    fn check_schema(&self, events: Events, topic: &TopicName) -> Result<Events, ApiError> {
        let Some(schema) = self.policy.schema_for(topic) else {
            for (i, bytes) in events.payloads.iter().enumerate() {
                // A CloudEvent may carry no data, or data that is not JSON.
                let json = match events.cloud.get(i) {
                    Some(event) => event.json_data() && !bytes.is_empty(),
                    None => true,
                };
                if json {
                    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|source| {
                        ApiError::InvalidJson {
                            line: events.ndjson.then_some(i),
                            source,
                        }
                    })?;
                }
            }
            return Ok(events);
        };
        let mut violations = Vec::new();
        for (i, bytes) in events.payloads.iter().enumerate() {
            let index = events.ndjson.then_some(i);
            if events.cloud.get(i).is_some_and(|e| !e.json_data()) {
                violations.push(Violation {
                    index,
                    pointer: String::new(),
                    message: "the topic has a schema, so data must be JSON".into(),
                });
                continue;
            }
            let value: Value =
                serde_json::from_slice(bytes).map_err(|source| ApiError::InvalidJson {
                    line: index,
                    source,
                })?;
            if let Err(found) = schema.validate(&value) {
                violations.extend(found.into_iter().map(|v| Violation {
                    index,
                    pointer: v.pointer,
                    message: v.message,
                }));
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::SchemaViolation(violations));
        }
        Ok(events)
    }
}

/// The 202 of one event.
#[derive(serde::Serialize)]
struct Accepted<'a> {
    topic: &'a str,
    #[serde(flatten)]
    receipt: Receipt<'a>,
}

/// The 202 of a batch: a receipt per line.
#[derive(serde::Serialize)]
struct BatchAccepted<'a> {
    topic: &'a str,
    results: Vec<Receipt<'a>>,
}

/// One persisted event: its message id and event id (and line, in a batch).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Receipt<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(serialize_with = "display")]
    message_id: &'a MessageId,
    event_id: &'a str,
}

fn display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// The request's media type, lower-cased, without parameters ("" if none).
pub(super) fn media_type(headers: &Headers) -> String {
    headers
        .get("content-type")
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Matches `…/events/{tenant}/{namespace}/{topic}` and
/// `…/.well-known/jwks.json` (any deployment prefix).
pub fn route(request: &HttpRequest) -> Result<Route, ApiError> {
    let path = request.path.strip_suffix('/').unwrap_or(&request.path);
    if path.ends_with("/.well-known/jwks.json") {
        if request.method != "GET" {
            return Err(ApiError::MethodNotAllowed("GET"));
        }
        return Ok(Route::Jwks);
    }
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    if n < 5 || segments[n - 4] != "events" {
        return Err(ApiError::NotFound);
    }
    if request.method != "POST" {
        return Err(ApiError::MethodNotAllowed("POST"));
    }
    // Percent-encoded bytes are never legal in Pulsar names, so no decoding:
    // `%2F` or `%2e%2e` simply fail the character check.
    let topic = TopicName::parse(segments[n - 3], segments[n - 2], segments[n - 1])?;
    // A partition or a system topic would be a side door around the schema
    // and policy kept for the topic's base name.
    topic.check_publishable()?;
    Ok(Route::Publish(topic))
}

/// The idempotency key a CloudEvent stands for: its source and id,
/// length-prefixed and hashed (printable, bounded, whatever they hold).
fn cloud_event_key(event: &CloudEvent) -> String {
    let mut h = Sha256::new();
    for part in [&event.source, &event.id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("ce:{}", hex::encode(h.finalize()))
}

/// The request's key when it is CloudEvents and names none: the events'
/// keys in order (one event: its own).
fn cloud_request_key(events: &[CloudEvent]) -> Option<String> {
    match events {
        [] => None,
        [one] => Some(cloud_event_key(one)),
        many => {
            let mut h = Sha256::new();
            for key in many.iter().map(cloud_event_key) {
                h.update(key.as_bytes());
            }
            Some(format!("ce-batch:{}", hex::encode(h.finalize())))
        }
    }
}

/// A fresh UUIDv7, or — with an idempotency key — a UUIDv8 derived from the
/// caller (auth method, issuer, principal) and the key (and the batch index),
/// so every retry carries the same `kp-event-id` and consumers can drop
/// repeats, while two issuers' same-named principals never collide.
fn event_id(identity: &Identity, idempotency_key: Option<&str>, index: Option<usize>) -> String {
    match idempotency_key {
        None => uuid::Uuid::now_v7().to_string(),
        Some(key) => {
            let mut h = Sha256::new();
            for part in [
                identity.method.as_str(),
                &identity.issuer,
                &identity.principal,
                key,
            ] {
                // Length-prefixed: no two different tuples hash alike.
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
            if let Some(i) = index {
                h.update([0]);
                h.update(i.to_string().as_bytes());
            }
            let digest = h.finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests;
