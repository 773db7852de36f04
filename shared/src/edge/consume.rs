//! The `consume` handler: Kong request → identity → policy (`consume`, and
//! the rule's `subscriptions` for durable reads) → tenant token → Pulsar
//! read → provenance verdict per message → page. Built once per cold start
//! into a [`Reader`]; each invocation is [`Reader::handle`].
//!
//! Its own function rather than a route of publish: it never holds the
//! private provenance keys (it verifies with the public JWKS publish
//! serves), so a compromised read path cannot mint signatures; and a long
//! poll wants another timeout than a publish.
//!
//! The routes:
//! * `GET …/events/{tenant}/{namespace}/{topic}?after=…` — a cursor read
//!   ([`query`] has every parameter);
//! * `GET …?subscription=<name>` — a durable Shared subscription read;
//! * `POST …/events/{tenant}/{namespace}/{topic}/acks` — acknowledgements.
//!
//! A read answers the page (`application/json`) or, when `Accept` asks for
//! it, the same messages as a CloudEvents batch ([`accept`],
//! [`cloudevents`]): one shaping (provenance, the byte cap, the cursor) for
//! both, only the rendering of a message differs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kong_pulsar_verify::{FetchError, JwksFetcher, Received, Verifier};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::edge::kong::{HttpRequest, ProxyResponse, parse_request};
use crate::edge::problem::ApiError;
use crate::identity::Authenticator;
use crate::policy::{Decision, Policy};
use crate::pulsar::broker::{MessageId, TenantBrokers, TenantCredentials, Timeouts};
use crate::pulsar::read::{Delivered, Position, Readers, Take};
use crate::pulsar::topic::TopicName;
use crate::secrets::{CachedSecrets, SecretSource, SecretsManager};
use crate::telemetry::Operation;

use super::{AuditState, DEADLINE_MARGIN, StartupError, authenticator, budget};

pub mod accept;
pub mod cloudevents;
pub mod query;

use accept::{CLOUDEVENTS_BATCH, Format};
use query::{AckBody, Mode, ReadQuery};

/// A page's own fields, generously (the topic, counted apart, aside): the
/// cursor, the subscription, the brackets.
const PAGE_OVERHEAD: usize = 512;

/// Kept back from the budget for verifying and shaping the page.
const SHAPING_RESERVE: Duration = Duration::from_millis(200);

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET …/events/{tenant}/{namespace}/{topic}`.
    Read(TopicName),
    /// `POST …/events/{tenant}/{namespace}/{topic}/acks`.
    Acknowledge(TopicName),
}

/// Matches the read and acknowledgement routes (any deployment prefix).
pub fn route(request: &HttpRequest) -> Result<Route, ApiError> {
    let path = request.path.strip_suffix('/').unwrap_or(&request.path);
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let (route, names, method): (fn(TopicName) -> Route, &[&str], &'static str) =
        if n >= 6 && segments[n - 1] == "acks" && segments[n - 5] == "events" {
            (Route::Acknowledge, &segments[n - 4..n - 1], "POST")
        } else if n >= 5 && segments[n - 4] == "events" {
            (Route::Read, &segments[n - 3..], "GET")
        } else {
            return Err(ApiError::NotFound);
        };
    if request.method != method {
        return Err(ApiError::MethodNotAllowed(method));
    }
    let topic = TopicName::parse(names[0], names[1], names[2])?;
    // System topics (topic policies, transactions) and single partitions
    // are not the caller's to read.
    topic.check_publishable()?;
    Ok(route(topic))
}

/// Checks signatures against the gateway's public key set.
struct Provenance {
    fetcher: JwksFetcher,
    verifier: Verifier,
}

/// Everything the handler needs, built once per cold start.
pub struct Reader {
    policy: Arc<Policy>,
    auth: Authenticator,
    readers: Readers,
    provenance: Option<Provenance>,
    max_body_bytes: usize,
    max_response_bytes: usize,
}

impl Reader {
    /// Builds everything once per cold start, as [`Reader::build_with`]
    /// with the policy from `config.policy` and Secrets Manager from `aws`.
    pub fn build(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let policy = Policy::load(&config.policy)?;
        Self::build_with(config, policy, SecretsManager::from_conf(aws))
    }

    /// Builds a reader from its dependencies. With `provenance:` in the
    /// policy, `KP_PROVENANCE_JWKS_URL` must name the key set (https, or
    /// http to loopback). No network call happens here.
    pub fn build_with(
        config: &Config,
        policy: Policy,
        secrets: impl SecretSource + 'static,
    ) -> Result<Self, StartupError> {
        let policy = Arc::new(policy);
        let auth = authenticator(&policy)?;
        let settings = &config.consume;
        let provenance = match (policy.provenance(), &settings.provenance_jwks_url) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(crate::config::ConfigError::Invalid {
                    name: "KP_PROVENANCE_JWKS_URL",
                    reason: "the policy has provenance: but no key set URL is configured \
                             (publish's …/.well-known/jwks.json through Kong)"
                        .into(),
                }
                .into());
            }
            (Some(p), Some(url)) => Some(Provenance {
                fetcher: JwksFetcher::new(url)?,
                verifier: Verifier::default().with_issuer(p.issuer.clone()),
            }),
        };
        let secrets: Arc<dyn SecretSource> =
            Arc::new(CachedSecrets::new(secrets, config.secret_ttl));
        let brokers = Arc::new(TenantBrokers::new(
            config.pulsar_service_url.clone(),
            secrets,
            Timeouts::default(),
        ));
        Ok(Self {
            policy,
            auth,
            readers: Readers::new(brokers, settings.visibility_timeout, settings.max_consumers),
            provenance,
            max_body_bytes: config.max_body_bytes,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// Handles one invocation. Never fails: every outcome is an HTTP
    /// response in the proxy-integration shape, with one audit line.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> ProxyResponse {
        let started = Instant::now();
        let budget = budget(event.context.deadline);
        let mut audit = AuditState::default();
        let result = self.serve(&event, budget, &mut audit).await;
        audit.finish(Operation::Consume, &event, started, result)
    }

    async fn serve(
        &self,
        event: &LambdaEvent<Value>,
        budget: Duration,
        audit: &mut AuditState,
    ) -> Result<ProxyResponse, ApiError> {
        let request = parse_request(&event.payload, self.max_body_bytes)?;
        audit.request_id = Some(
            request
                .request_id
                .clone()
                .unwrap_or_else(|| event.context.request_id.clone()),
        );
        let route = route(&request)?;
        let topic = match &route {
            Route::Read(t) | Route::Acknowledge(t) => t.clone(),
        };
        audit.topic = Some(topic.clone());
        // The request is parsed whole before any credential is checked: a
        // malformed one costs no JWKS or STS round trip.
        let action = match route {
            Route::Read(_) => Action::Read(
                ReadQuery::parse(&request.query)?,
                accept::negotiate(&request.headers)?,
            ),
            Route::Acknowledge(_) => Action::Acknowledge(AckBody::parse(&request)?),
        };
        let subscription = match &action {
            Action::Read(q, _) => match &q.mode {
                Mode::Subscription(s) => Some(s),
                Mode::Cursor(_) => None,
            },
            Action::Acknowledge(body) => Some(&body.subscription),
        };

        let identity = tokio::time::timeout(budget, self.auth.authenticate(&request.headers))
            .await
            .map_err(|_| ApiError::Timeout)?
            .inspect_err(|e| audit.identity = e.refused_identity().cloned())?;
        let identity = &*audit.identity.insert(identity);
        match self.policy.authorize_read(identity, &topic, subscription) {
            Decision::Allow { rule } => {
                audit.decision = Some("allow");
                audit.rule = Some(rule.to_owned());
            }
            Decision::Deny => {
                audit.decision = Some("deny");
                return Err(ApiError::ReadForbidden);
            }
        }
        let tenant = self
            .policy
            .tenant(&topic.tenant)
            .ok_or(ApiError::ReadForbidden)?;
        let credentials = TenantCredentials {
            role: &tenant.role,
            token_secret: &tenant.token_secret,
        };
        let budget = budget.saturating_sub(DEADLINE_MARGIN + SHAPING_RESERVE);
        match action {
            Action::Read(query, format) => {
                self.read(credentials, &topic, query, format, budget, audit)
                    .await
            }
            Action::Acknowledge(body) => {
                self.readers
                    .acknowledge(
                        credentials,
                        &topic,
                        &body.subscription,
                        &body.message_ids,
                        budget,
                    )
                    .await?;
                Ok(ProxyResponse::json(
                    200,
                    &Acknowledged {
                        topic: &topic.to_string(),
                        subscription: body.subscription.as_str(),
                        acknowledged: body.message_ids.len(),
                    },
                ))
            }
        }
    }

    async fn read(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        query: ReadQuery,
        format: Format,
        budget: Duration,
        audit: &mut AuditState,
    ) -> Result<ProxyResponse, ApiError> {
        if query.require_provenance && self.provenance.is_none() {
            return Err(ApiError::InvalidQuery(
                "provenance=required: this deployment signs no events (no provenance: in its \
                 policy), so nothing would be returned"
                    .into(),
            ));
        }
        let take = Take {
            max: query.max,
            wait: query.wait.min(budget),
        };
        let (delivered, cursor) = match &query.mode {
            Mode::Cursor(position) => {
                let page = self
                    .readers
                    .read(credentials, topic, position, take, budget)
                    .await?;
                (page.messages, Some(page.start))
            }
            Mode::Subscription(subscription) => {
                let messages = self
                    .readers
                    .receive(credentials, topic, subscription, take, budget)
                    .await?;
                (messages, None)
            }
        };
        let full_topic = topic.to_string();
        let shaped = self
            .shape(
                &full_topic,
                delivered,
                query.require_provenance,
                format,
                cursor,
            )
            .await?;
        audit.events = shaped.messages.len();
        audit.message_id = shaped.first_id.map(|id| {
            if shaped.messages.len() > 1 {
                format!("{id} (+{})", shaped.messages.len() - 1)
            } else {
                id.to_string()
            }
        });
        let cursor = shaped.cursor.as_ref().map(Position::to_string);
        let subscription = match &query.mode {
            Mode::Subscription(s) => Some(s.as_str()),
            Mode::Cursor(_) => None,
        };
        let response = match format {
            Format::Page => ProxyResponse::json(
                200,
                &Page {
                    topic: &full_topic,
                    subscription,
                    messages: shaped.messages,
                    cursor,
                    dropped: query.require_provenance.then_some(shaped.dropped),
                },
            ),
            // The batch format is a bare array: what the page says beside
            // its messages travels in headers (the dropped ones by count
            // only, so the header stays small whatever a page dropped).
            Format::CloudEvents => {
                let mut response = ProxyResponse::json(200, &shaped.messages)
                    .with_header("content-type", CLOUDEVENTS_BATCH);
                if let Some(cursor) = cursor {
                    response = response.with_header("kp-cursor", cursor);
                }
                if query.require_provenance {
                    response = response.with_header("kp-dropped", shaped.dropped.len().to_string());
                }
                response
            }
        };
        // One URL, two bodies: a cache must key on Accept.
        Ok(response.with_header("vary", "accept"))
    }

    /// Verifies each message and renders it, stopping before the response
    /// would pass `max_response_bytes`. A read's `cursor` moves past each
    /// message taken, returned or dropped; what did not fit is read again
    /// by the next call.
    async fn shape(
        &self,
        topic: &str,
        delivered: Vec<Delivered>,
        require_provenance: bool,
        format: Format,
        cursor: Option<Position>,
    ) -> Result<Shaped, ApiError> {
        let mut shaped = Shaped {
            cursor,
            ..Shaped::default()
        };
        let mut used = PAGE_OVERHEAD + 2 * topic.len();
        // A message is rendered whole unless it could not fit an empty page.
        let room = self.max_response_bytes.saturating_sub(used);
        let mut jwks_down: Option<FetchError> = None;
        for message in delivered {
            let verdict = match &self.provenance {
                None => Verdict::refused("not_configured", "this deployment signs no events"),
                Some(_) if jwks_down.is_some() => jwks_unavailable(),
                Some(p) => match verify(p, topic, &message).await {
                    Ok(verdict) => verdict,
                    Err(e) => {
                        tracing::warn!(error = %e, "the provenance key set could not be fetched");
                        jwks_down = Some(e);
                        jwks_unavailable()
                    }
                },
            };
            if require_provenance && !verdict.verified {
                if let Some(e) = jwks_down.take() {
                    return Err(ApiError::ProvenanceUnavailable(e));
                }
                shaped.dropped.push(Dropped {
                    message_id: message.id.to_string(),
                    reason: verdict.reason.unwrap_or("unverified"),
                });
                shaped.taken(message.id);
                continue;
            }
            let rendered = match format {
                Format::Page => render(&message, verdict, room),
                Format::CloudEvents => cloudevents::render(&message, topic, &verdict, room),
            };
            let cost = escaped_len(rendered.get());
            if used + cost > self.max_response_bytes && !shaped.messages.is_empty() {
                break;
            }
            used += cost + 1;
            shaped.first_id.get_or_insert(message.id);
            shaped.taken(message.id);
            shaped.messages.push(rendered);
        }
        Ok(shaped)
    }
}

enum Action {
    Read(ReadQuery, Format),
    Acknowledge(AckBody),
}

#[derive(Default)]
struct Shaped {
    messages: Vec<Box<RawValue>>,
    dropped: Vec<Dropped>,
    first_id: Option<MessageId>,
    /// A cursor read's next position.
    cursor: Option<Position>,
}

impl Shaped {
    fn taken(&mut self, id: MessageId) {
        if let Some(cursor) = &mut self.cursor {
            cursor.advance(id);
        }
    }
}

#[derive(Serialize)]
struct Page<'a> {
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<&'a str>,
    messages: Vec<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<Vec<Dropped>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dropped {
    message_id: String,
    reason: &'static str,
}

#[derive(Serialize)]
struct Acknowledged<'a> {
    topic: &'a str,
    subscription: &'a str,
    acknowledged: usize,
}

/// The provenance check's outcome for one message.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verdict {
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// What the gateway verified about the producer, when it checks out.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<SignedIdentity>,
}

impl Verdict {
    fn refused(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            verified: false,
            reason: Some(reason),
            detail: Some(detail.into()),
            identity: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignedIdentity {
    kid: String,
    issuer: String,
    source_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tag: Option<String>,
    auth_method: String,
    auth_issuer: String,
    request_id: String,
    received_at: String,
}

fn jwks_unavailable() -> Verdict {
    Verdict::refused(
        "jwks_unavailable",
        "the gateway's key set could not be fetched; the message was not checked",
    )
}

async fn verify(
    provenance: &Provenance,
    topic: &str,
    message: &Delivered,
) -> Result<Verdict, FetchError> {
    let properties = match kong_pulsar_verify::properties_from_pairs(
        message
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        Ok(p) => p,
        Err(e) => return Ok(Verdict::refused(e.code(), e.to_string())),
    };
    let received = Received {
        topic,
        payload: &message.payload,
        key: message.key.as_deref(),
        event_time_ms: message.event_time_ms,
        properties: &properties,
    };
    Ok(
        match provenance
            .fetcher
            .verify(&provenance.verifier, &received)
            .await?
        {
            Ok(verified) => {
                let c = verified.claims;
                Verdict {
                    verified: true,
                    reason: None,
                    detail: None,
                    identity: Some(SignedIdentity {
                        kid: verified.kid,
                        issuer: c.iss,
                        source_id: c.source_id,
                        service_tag: c.service_tag,
                        auth_method: c.auth_method,
                        auth_issuer: c.auth_issuer,
                        request_id: c.request_id,
                        received_at: c.received_at,
                    }),
                }
            }
            Err(e) => Verdict::refused(e.code(), e.to_string()),
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    message_id: String,
    event_id: Option<&'a str>,
    key: Option<&'a str>,
    event_time: Option<String>,
    publish_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    /// Set when the message alone is larger than a response may be: it is
    /// listed (so a cursor moves past it and a subscription can acknowledge
    /// it) without its payload and properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_omitted: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    provenance: &'a Verdict,
}

/// One message as JSON: `data` is the payload itself when it is JSON,
/// otherwise `dataBase64`. Past `room` bytes, payload and properties are
/// left out.
fn render(message: &Delivered, verdict: Verdict, room: usize) -> Box<RawValue> {
    let json = serde_json::from_slice::<&RawValue>(&message.payload).ok();
    let mut properties = BTreeMap::new();
    for (k, v) in &message.properties {
        properties.entry(k.as_str()).or_insert(v.as_str());
    }
    let event_id = properties.get("kp-event-id").copied();
    let mut out = Message {
        message_id: message.id.to_string(),
        event_id,
        key: message.key.as_deref(),
        event_time: message.event_time_ms.and_then(rfc3339),
        publish_time: rfc3339(message.publish_time_ms),
        properties: Some(properties),
        data: json,
        data_base64: json.is_none().then(|| STANDARD.encode(&message.payload)),
        data_omitted: None,
        size: None,
        provenance: &verdict,
    };
    let full = serde_json::value::to_raw_value(&out).expect("plain data serializes");
    if escaped_len(full.get()) <= room {
        return full;
    }
    out.properties = None;
    out.data = None;
    out.data_base64 = None;
    out.data_omitted = Some("too_large");
    out.size = Some(message.payload.len());
    serde_json::value::to_raw_value(&out).expect("plain data serializes")
}

fn rfc3339(ms: u64) -> Option<String> {
    let ms = i64::try_from(ms).ok()?;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The bytes `json` takes inside Lambda's answer, where the body is a JSON
/// string: every `"` and `\` gains a backslash (JSON text holds no raw
/// control characters).
fn escaped_len(json: &str) -> usize {
    json.len() + json.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

#[cfg(test)]
mod tests;
