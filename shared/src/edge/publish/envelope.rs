//! A request's message metadata, read once from its headers and shared by
//! every event of the request: the caller's `X-Event-*` headers within the
//! metadata limits, the trace context, the idempotency key, and what makes
//! each event's [`OutgoingMessage`] (the caller's properties plus the `kp-*`
//! ones). The fingerprint an idempotent retry must match is here too: it is
//! everything the envelope and the body put into the messages.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::media_type;
use crate::config::{MAX_IDEMPOTENCY_KEY_BYTES, MetadataLimits};
use crate::edge::kong::HttpRequest;
use crate::edge::problem::{ApiError, MetadataError};
use crate::http::Headers;
use crate::identity::Identity;
use crate::pulsar::broker::OutgoingMessage;
use crate::pulsar::topic::TopicName;
use crate::telemetry::echo;

/// Per-request message metadata taken from the headers; it makes each
/// event's [`OutgoingMessage`] (the caller's properties plus the `kp-*` ones).
pub struct Envelope {
    key: Option<String>,
    event_time_ms: Option<u64>,
    traceparent: String,
    pub(super) idempotency_key: Option<String>,
    properties: Vec<(String, String)>,
}

const PROPERTY_PREFIX: &str = "x-event-property-";

impl Envelope {
    /// Reads `X-Event-Key`, `X-Event-Time`, `traceparent` (a fresh one when
    /// absent or invalid), `Idempotency-Key` and `X-Event-Property-*`, each
    /// within `limits`. Headers are the same whatever the payload shape, and
    /// the envelope is shared by every line of an NDJSON batch, so this is
    /// the one place the limits are applied.
    pub fn from_headers(headers: &Headers, limits: &MetadataLimits) -> Result<Self, ApiError> {
        let event_time_ms = match headers.get("x-event-time") {
            None => None,
            Some(text) => {
                let t = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
                    ApiError::BadRequest("X-Event-Time must be an RFC 3339 timestamp".into())
                })?;
                Some(u64::try_from(t.timestamp_millis()).map_err(|_| {
                    ApiError::BadRequest("X-Event-Time must not be before 1970".into())
                })?)
            }
        };
        let mut properties = Vec::new();
        let mut metadata_bytes = 0usize;
        for (name, value) in headers.iter() {
            let Some(property) = name.strip_prefix(PROPERTY_PREFIX) else {
                continue;
            };
            if property.is_empty() {
                return Err(ApiError::BadRequest(
                    "an X-Event-Property- header needs a name".into(),
                ));
            }
            if properties.len() == limits.max_properties {
                return Err(MetadataError::TooManyProperties {
                    limit: limits.max_properties,
                }
                .into());
            }
            if property.len() > limits.max_property_name_bytes {
                return Err(MetadataError::PropertyNameTooLong {
                    limit: limits.max_property_name_bytes,
                }
                .into());
            }
            // ce_* are a CloudEvent's attributes, which the policy checks
            // (ce_sources, ce_types): not for a caller to set by hand.
            if property.starts_with("kp-")
                || property.starts_with("ce_")
                || property == "traceparent"
            {
                return Err(ApiError::ReservedProperty(property.to_owned()));
            }
            if value.len() > limits.max_property_value_bytes {
                return Err(MetadataError::PropertyValueTooLong {
                    name: echo(property, 64),
                    limit: limits.max_property_value_bytes,
                }
                .into());
            }
            metadata_bytes += property.len() + value.len();
            properties.push((property.to_owned(), value.to_owned()));
        }
        let idempotency_key = match headers.get("idempotency-key").map(str::trim) {
            Some("") => return Err(ApiError::InvalidIdempotencyKey("is empty")),
            Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                return Err(ApiError::InvalidIdempotencyKey("is longer than 255 bytes"));
            }
            // It lands in a message property and the audit trail verbatim.
            Some(k) if !k.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) => {
                return Err(ApiError::InvalidIdempotencyKey("must be printable ASCII"));
            }
            other => other.map(str::to_owned),
        };
        let key = headers.get("x-event-key");
        if let Some(key) = key
            && key.len() > limits.max_event_key_bytes
        {
            return Err(MetadataError::EventKeyTooLong {
                limit: limits.max_event_key_bytes,
            }
            .into());
        }
        metadata_bytes += key.map_or(0, str::len) + idempotency_key.as_ref().map_or(0, String::len);
        if metadata_bytes > limits.max_metadata_bytes {
            return Err(MetadataError::TooMuchMetadata {
                limit: limits.max_metadata_bytes,
            }
            .into());
        }
        Ok(Self {
            key: key.map(str::to_owned),
            event_time_ms,
            traceparent: headers
                .get("traceparent")
                .map(str::trim)
                .filter(|t| valid_traceparent(t))
                .map(str::to_owned)
                .unwrap_or_else(new_traceparent),
            idempotency_key,
            properties,
        })
    }

    /// The message carrying `payload`, with the envelope's key, event time
    /// and properties, and the `kp-*` properties naming its origin.
    pub fn message(
        &self,
        payload: Vec<u8>,
        identity: &Identity,
        topic: &TopicName,
        request_id: &str,
        received_at: &str,
        event_id: &str,
    ) -> OutgoingMessage {
        // Room for the caller's properties and every kp-* one: no rehash.
        let mut properties = HashMap::with_capacity(self.properties.len() + 11);
        properties.extend(self.properties.iter().cloned());
        let mut set = |k: &str, v: &str| {
            properties.insert(k.to_owned(), v.to_owned());
        };
        set("kp-event-id", event_id);
        set("kp-source-id", &identity.principal);
        if let Some(service) = &identity.service {
            set("kp-service-tag", service);
        }
        set("kp-auth-method", identity.method.as_str());
        set("kp-issuer", &identity.issuer);
        set("kp-tenant", topic.tenant.as_str());
        set("kp-request-id", request_id);
        set("kp-received-at", received_at);
        set("traceparent", &self.traceparent);
        if let Some(key) = &self.idempotency_key {
            set("kp-idempotency-key", key);
        }
        OutgoingMessage {
            payload,
            key: self.key.clone(),
            event_time_ms: self.event_time_ms,
            properties,
        }
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero.
pub(super) fn valid_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

pub(super) fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let parent = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{parent}-01")
}

/// Everything that shapes the published messages: topic, media type (one
/// event or a batch), body, event key, event time and caller properties (in
/// a canonical order: the message keeps them as a map). A retry must match
/// all of it to be answered with the first response.
pub(super) fn request_fingerprint(
    topic: &TopicName,
    request: &HttpRequest,
    envelope: &Envelope,
) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(topic.to_string().as_bytes());
    field(media_type(&request.headers).as_bytes());
    field(&request.body);
    match &envelope.key {
        Some(key) => field(format!("k{key}").as_bytes()),
        None => field(b"-"),
    }
    match envelope.event_time_ms {
        Some(t) => field(format!("t{t}").as_bytes()),
        None => field(b"-"),
    }
    let mut properties: Vec<_> = envelope.properties.iter().collect();
    // A binary-mode CloudEvent's attributes are headers, not body.
    let ce_headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("ce-"))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    properties.extend(ce_headers.iter());
    properties.sort();
    field(&properties.len().to_be_bytes());
    for (name, value) in properties {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    h.finalize().into()
}
