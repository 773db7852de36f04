//! Every way a request can fail, and the one place each maps to an HTTP
//! status and an `application/problem+json` body (DESIGN §8).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::edge::kong::{PayloadError, ProxyResponse};
use crate::identity::AuthError;
use crate::identity::iam::IamError;
use crate::identity::oidc::OidcError;
use crate::provenance::ProvenanceError;
use crate::pulsar::broker::{BrokerError, Delivery, SendError, SendFailure, TokenError};
use crate::pulsar::read::{CursorMismatch, ReadError};
use crate::pulsar::topic::NameError;

/// One schema violation: where in the event, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Index of the event in an NDJSON batch (absent for a single event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// JSON pointer into the event.
    pub pointer: String,
    pub message: String,
}

/// What became of one line of a batch that was not wholly persisted: its
/// message id, or why not (`unknown` when it may be persisted: its receipt
/// never came).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub event_id: String,
    /// The problem code the line alone would have had, or [`UNKNOWN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The per-line code of a line that may or may not be persisted.
pub const UNKNOWN: &str = "unknown";

/// Caller metadata past one of [`crate::config::MetadataLimits`]. Messages
/// name the limit, never the offending value (it may be huge or hostile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("more than {limit} X-Event-Property-* headers")]
    TooManyProperties { limit: usize },
    #[error("an X-Event-Property-* name is longer than {limit} bytes")]
    PropertyNameTooLong { limit: usize },
    #[error("the value of X-Event-Property-{name} is longer than {limit} bytes")]
    PropertyValueTooLong { name: String, limit: usize },
    #[error("X-Event-Key is longer than {limit} bytes")]
    EventKeyTooLong { limit: usize },
    #[error(
        "the event key, idempotency key and properties come to more than {limit} bytes together"
    )]
    TooMuchMetadata { limit: usize },
}

/// Why a request was not published.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is malformed: {0}")]
    BadRequest(String),
    #[error("invalid {0}")]
    InvalidName(#[from] NameError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("no credentials were presented")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidToken(#[source] OidcError),
    #[error("the AWS IAM credentials are not valid")]
    InvalidIamToken(#[source] IamError),
    #[error("AWS STS could not confirm the caller")]
    StsUnavailable(#[source] IamError),
    #[error("unsupported Authorization scheme (use Bearer or KP-AWS-IAM)")]
    UnsupportedScheme,
    #[error("the caller may not publish to this topic")]
    Forbidden,
    #[error("the caller may not read this topic, or not through this subscription")]
    ReadForbidden,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{}attribute `{attribute}` {reason}", index.map(|i| format!("CloudEvent [{i}]: ")).unwrap_or_default())]
    InvalidCloudEvent {
        /// The item of a batch (0-based).
        index: Option<usize>,
        attribute: String,
        reason: String,
    },
    #[error(
        "`after` must be earliest, latest, a message id (ledger:entry:partition:batch) or, on a partitioned topic, one per partition comma-separated, as a page's `cursor` gives"
    )]
    InvalidCursor,
    #[error("invalid subscription name: {0}")]
    InvalidSubscription(#[source] NameError),
    #[error("{0}")]
    InvalidMessageId(String),
    /// The provenance key set could not be fetched, and the caller asked for
    /// verified messages only: dropping them all would skip them for good.
    #[error("the provenance key set is unavailable")]
    ProvenanceUnavailable(#[source] kong_pulsar_verify::FetchError),
    #[error("{0}")]
    AccountNotAllowed(#[source] IamError),
    #[error("the broker refused the operation for the tenant role")]
    BrokerForbidden(#[source] BrokerError),
    #[error("no such route")]
    NotFound,
    #[error(
        "the topic has {0} partitions: read it with a cursor (`after`); subscriptions and \
         acknowledgements take non-partitioned topics only"
    )]
    PartitionedTopic(u32),
    #[error("{0}; use the `cursor` a page of this topic gave")]
    CursorMismatch(#[source] CursorMismatch),
    #[error("the topic does not exist")]
    TopicNotFound(#[source] BrokerError),
    /// The route exists; the value is the `Allow` header (`POST`, `GET`).
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// The read route answers `application/json` or
    /// `application/cloudevents-batch+json`, and `Accept` allows neither.
    #[error(
        "this route answers application/json or application/cloudevents-batch+json, and the \
         Accept header allows neither"
    )]
    NotAcceptable,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the body is not valid JSON{}", line.map(|l| format!(" (line {})", l + 1)).unwrap_or_default())]
    InvalidJson {
        /// The NDJSON line (0-based) for batches.
        line: Option<usize>,
        #[source]
        source: serde_json::Error,
    },
    #[error("the event does not match the topic's schema")]
    SchemaViolation(Vec<Violation>),
    #[error("property {0:?} is reserved")]
    ReservedProperty(String),
    #[error("{0}")]
    Metadata(#[from] MetadataError),
    #[error("Idempotency-Key {0}")]
    InvalidIdempotencyKey(&'static str),
    #[error(
        "Idempotency-Key was already used for a different request (topic, body, content type, \
         event key, event time or properties differ); use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("the broker is unavailable")]
    BrokerUnavailable(#[source] BrokerError),
    #[error("the broker rejected the message")]
    BrokerRejected(#[source] BrokerError),
    #[error("the tenant's Pulsar credentials are unavailable")]
    CredentialsUnavailable(#[source] Arc<TokenError>),
    #[error("the broker rejected the tenant's Pulsar token, even after re-reading it")]
    CredentialsRejected(#[source] BrokerError),
    #[error("the identity provider's keys are unavailable")]
    KeysUnavailable(#[source] OidcError),
    /// Provenance is configured and its key set cannot be read: nothing is
    /// published unsigned.
    #[error("the provenance signing key is unavailable")]
    SigningKeyUnavailable(#[source] ProvenanceError),
    #[error("gave up waiting before the function deadline")]
    Timeout,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A batch not wholly persisted: answered as `cause`, plus what became
    /// of each line.
    #[error("{cause}")]
    BatchFailed {
        #[source]
        cause: Box<ApiError>,
        results: Vec<LineResult>,
    },
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Self::MissingCredentials,
            AuthError::MultipleAuthorization => {
                Self::BadRequest("more than one Authorization header".into())
            }
            AuthError::Ambiguous(method) => Self::BadRequest(format!(
                "the request carries two identities ({method} credentials and a Kong consumer); \
                 send one, or hide the credential from the upstream in the Kong auth plugin"
            )),
            AuthError::UnsupportedScheme => Self::UnsupportedScheme,
            AuthError::Oidc(e) if e.is_unavailable() => Self::KeysUnavailable(e),
            AuthError::Oidc(e) => Self::InvalidToken(e),
            AuthError::Iam(e) => match e.status() {
                401 => Self::InvalidIamToken(e),
                403 => Self::AccountNotAllowed(e),
                500 => Self::Internal(Box::new(e)),
                _ => Self::StsUnavailable(e),
            },
        }
    }
}

impl From<SendError> for ApiError {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Token(e) => Self::CredentialsUnavailable(e),
            SendError::Broker(source) => source.into(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Broker(e) => e.into(),
            ReadError::UnknownMessage(id) => Self::InvalidMessageId(format!(
                "message {id} is not in the topic (it is past the topic's last message)"
            )),
            ReadError::Partitioned(partitions) => Self::PartitionedTopic(partitions),
            ReadError::Cursor(mismatch) => Self::CursorMismatch(mismatch),
        }
    }
}

impl From<ProvenanceError> for ApiError {
    fn from(err: ProvenanceError) -> Self {
        if err.is_key_unavailable() {
            Self::SigningKeyUnavailable(err)
        } else {
            Self::Internal(Box::new(err))
        }
    }
}

impl ApiError {
    /// The answer to a send that did not persist every message. A batch
    /// (`event_ids` has an id per message) says per line what became of it,
    /// each failed line with the code it would have alone; a single event is
    /// answered with the error alone.
    pub fn send_failed(failure: SendFailure, event_ids: &[String], batch: bool) -> Self {
        let SendFailure { error, deliveries } = failure;
        let cause = Self::from(error);
        if !batch {
            return cause;
        }
        let results = deliveries
            .into_iter()
            .zip(event_ids)
            .enumerate()
            .map(|(index, (delivery, event_id))| {
                let (message_id, error) = match delivery {
                    Delivery::Persisted(id) => (Some(id.to_string()), None),
                    Delivery::NotPersisted(e) => (None, Some(Self::from(e).code())),
                    Delivery::Unknown(_) => (None, Some(UNKNOWN)),
                };
                LineResult {
                    index,
                    message_id,
                    event_id: event_id.clone(),
                    error,
                }
            })
            .collect();
        Self::BatchFailed {
            cause: Box::new(cause),
            results,
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> Self {
        match err {
            BrokerError::Forbidden(_) => Self::BrokerForbidden(err),
            BrokerError::TopicNotFound(_) => Self::TopicNotFound(err),
            BrokerError::Rejected(_) => Self::BrokerRejected(err),
            BrokerError::Timeout => Self::Timeout,
            // The token still failed after one refresh: a credentials problem
            // on our side, not the caller's.
            BrokerError::Unauthenticated(_) => Self::CredentialsRejected(err),
            BrokerError::Unavailable(_) => Self::BrokerUnavailable(err),
        }
    }
}

/// How long clients should wait before retrying a 503.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// The HTTP status, problem `code` and human title.
    pub fn status(&self) -> (u16, &'static str, &'static str) {
        match self {
            Self::InvalidName(NameError::SystemName { .. } | NameError::PartitionName) => {
                (400, "reserved_name", "Reserved name")
            }
            Self::BadRequest(_) | Self::InvalidName(_) => (400, "bad_request", "Bad request"),
            Self::Payload(PayloadError::Legacy) => {
                (400, "unsupported_payload", "Unsupported Kong payload")
            }
            // Kong drops bodies above its buffer when `skip_large_bodies` is on.
            Self::Payload(
                PayloadError::BodyTooLarge { .. } | PayloadError::BodyNotForwarded { .. },
            )
            | Self::PayloadTooLarge(_) => (413, "payload_too_large", "Payload too large"),
            Self::Payload(_) => (400, "bad_request", "Bad request"),
            Self::MissingCredentials => (401, "missing_credentials", "Missing credentials"),
            Self::InvalidToken(OidcError::TokenTypeNotAllowed { .. }) => {
                (401, "token_type_not_allowed", "Token type not accepted")
            }
            Self::InvalidToken(_) | Self::InvalidIamToken(_) | Self::UnsupportedScheme => {
                (401, "invalid_token", "Invalid credentials")
            }
            Self::AccountNotAllowed(_) => (403, "account_not_allowed", "AWS account not allowed"),
            Self::Forbidden | Self::ReadForbidden | Self::BrokerForbidden(_) => {
                (403, "forbidden", "Forbidden")
            }
            Self::InvalidQuery(_) => (400, "invalid_query", "Invalid query"),
            Self::InvalidCloudEvent { .. } => (400, "invalid_cloudevent", "Invalid CloudEvent"),
            Self::InvalidCursor | Self::CursorMismatch(_) => {
                (400, "invalid_cursor", "Invalid cursor")
            }
            Self::InvalidSubscription(_) => {
                (400, "invalid_subscription", "Invalid subscription name")
            }
            Self::InvalidMessageId(_) => (400, "invalid_message_id", "Invalid message id"),
            Self::NotFound | Self::TopicNotFound(_) => (404, "not_found", "Not found"),
            Self::PartitionedTopic(_) => (
                501,
                "partitioned_topic_unsupported",
                "Partitioned topics are not readable here",
            ),
            Self::MethodNotAllowed(_) => (405, "method_not_allowed", "Method not allowed"),
            Self::UnsupportedMediaType(_) => {
                (415, "unsupported_media_type", "Unsupported media type")
            }
            Self::NotAcceptable => (406, "not_acceptable", "Not acceptable"),
            Self::InvalidJson { .. } => (400, "invalid_json", "Invalid JSON"),
            Self::SchemaViolation(_) => (422, "schema_violation", "Schema violation"),
            Self::ReservedProperty(_) => (400, "reserved_property", "Reserved property"),
            // 431: every one of these is a request header past its bound.
            Self::Metadata(e) => match e {
                MetadataError::TooManyProperties { .. } => {
                    (431, "too_many_properties", "Too many properties")
                }
                MetadataError::PropertyNameTooLong { .. }
                | MetadataError::PropertyValueTooLong { .. } => {
                    (431, "property_too_large", "Property too large")
                }
                MetadataError::EventKeyTooLong { .. } => {
                    (431, "event_key_too_large", "Event key too large")
                }
                MetadataError::TooMuchMetadata { .. } => {
                    (431, "metadata_too_large", "Metadata too large")
                }
            },
            Self::InvalidIdempotencyKey(_) => {
                (400, "invalid_idempotency_key", "Invalid Idempotency-Key")
            }
            Self::IdempotencyKeyReused => (400, "idempotency_key_reused", "Idempotency-Key reused"),
            Self::BrokerRejected(_) => (422, "bad_request", "Rejected by the broker"),
            Self::BrokerUnavailable(_) => (503, "broker_unavailable", "Broker unavailable"),
            Self::CredentialsUnavailable(_)
            | Self::CredentialsRejected(_)
            | Self::KeysUnavailable(_)
            | Self::SigningKeyUnavailable(_)
            | Self::StsUnavailable(_) => {
                (503, "credentials_unavailable", "Credentials unavailable")
            }
            Self::ProvenanceUnavailable(_) => {
                (503, "provenance_unavailable", "Provenance keys unavailable")
            }
            Self::Timeout => (504, "timeout", "Timeout"),
            Self::Internal(_) => (500, "internal", "Internal error"),
            Self::BatchFailed { cause, .. } => cause.status(),
        }
    }

    /// The problem code (`forbidden`, …), for logs and metrics.
    pub fn code(&self) -> &'static str {
        self.status().1
    }

    /// The `application/problem+json` response. Server-side failures carry
    /// no detail: their causes go to the log, never to the caller.
    pub fn to_response(&self, request_id: &str) -> ProxyResponse {
        let (this, results) = match self {
            Self::BatchFailed { cause, results } => (&**cause, Some(results)),
            other => (other, None),
        };
        this.problem(request_id, results)
    }

    fn problem(&self, request_id: &str, results: Option<&Vec<LineResult>>) -> ProxyResponse {
        let (status, code, title) = self.status();
        let mut detail = match self {
            Self::Internal(_)
            | Self::BrokerUnavailable(_)
            | Self::CredentialsUnavailable(_)
            | Self::CredentialsRejected(_)
            | Self::KeysUnavailable(_)
            | Self::SigningKeyUnavailable(_)
            | Self::ProvenanceUnavailable(_)
            | Self::StsUnavailable(_) => title.to_owned(),
            Self::InvalidToken(OidcError::TokenTypeNotAllowed { .. }) => {
                "this kind of token (e.g. an ID token) is not accepted; send an access token"
                    .to_owned()
            }
            // Which check failed helps an attacker more than a caller.
            Self::InvalidToken(_) => "the bearer token could not be verified".to_owned(),
            Self::InvalidIamToken(_) => {
                "the KP-AWS-IAM credential could not be verified".to_owned()
            }
            _ => self.to_string(),
        };
        if results.is_some() {
            detail.push_str("; `results` says which lines were persisted");
        }
        let mut body = json!({
            "status": status,
            "code": code,
            "title": title,
            "detail": detail,
            "requestId": request_id,
        });
        if let Self::SchemaViolation(violations) = self {
            body["violations"] = json!(violations);
        }
        if let Self::InvalidCloudEvent {
            index, attribute, ..
        } = self
        {
            body["attribute"] = json!(attribute);
            if let Some(i) = index {
                body["index"] = json!(i);
            }
        }
        if let Some(results) = results {
            body["results"] = json!(results);
        }
        let mut response = ProxyResponse::json(status, &body)
            .with_header("content-type", "application/problem+json");
        match self {
            Self::MissingCredentials => {
                response = response.with_header("www-authenticate", r#"Bearer realm="kong-pulsar""#)
            }
            Self::InvalidToken(_) | Self::InvalidIamToken(_) | Self::UnsupportedScheme => {
                response = response.with_header(
                    "www-authenticate",
                    r#"Bearer realm="kong-pulsar", error="invalid_token""#,
                )
            }
            Self::MethodNotAllowed(allow) => response = response.with_header("allow", *allow),
            _ if status == 503 => {
                response = response.with_header("retry-after", RETRY_AFTER.as_secs().to_string())
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::broker::MessageId;

    fn id(entry: u64) -> MessageId {
        MessageId {
            ledger_id: 9,
            entry_id: entry,
            partition: -1,
            batch_index: -1,
        }
    }

    fn failure(error: SendError) -> SendFailure {
        let rejected = SendError::Broker(BrokerError::Rejected(Arc::new(pulsar::Error::Custom(
            "too large".into(),
        ))));
        SendFailure {
            error,
            deliveries: vec![
                Delivery::Persisted(id(0)),
                Delivery::NotPersisted(rejected),
                Delivery::Unknown(SendError::Broker(BrokerError::Timeout)),
                Delivery::NotPersisted(SendError::Broker(BrokerError::Timeout)),
            ],
        }
    }

    fn body(response: &ProxyResponse) -> serde_json::Value {
        serde_json::from_str(&response.body).unwrap()
    }

    #[test]
    fn a_failed_batch_answers_as_its_cause_with_a_result_per_line() {
        let event_ids: Vec<String> = (0..4).map(|i| format!("e{i}")).collect();
        let err = ApiError::send_failed(
            failure(SendError::Broker(BrokerError::Timeout)),
            &event_ids,
            true,
        );
        assert_eq!(err.code(), "timeout");
        let response = err.to_response("req-1");
        assert_eq!(response.status_code, 504);
        assert_eq!(response.headers["content-type"], "application/problem+json");
        let body = body(&response);
        assert_eq!(body["code"], "timeout");
        assert_eq!(body["requestId"], "req-1");
        assert_eq!(
            body["results"],
            json!([
                { "index": 0, "messageId": "9:0:-1:-1", "eventId": "e0" },
                { "index": 1, "eventId": "e1", "error": "bad_request" },
                { "index": 2, "eventId": "e2", "error": "unknown" },
                { "index": 3, "eventId": "e3", "error": "timeout" },
            ])
        );
    }

    #[test]
    fn server_side_causes_keep_their_headers_and_hide_their_detail() {
        let unavailable = SendError::Broker(BrokerError::Unavailable(Arc::new(
            pulsar::Error::Custom("broker-internal detail".into()),
        )));
        let ids: Vec<String> = (0..4).map(|i| format!("e{i}")).collect();
        let response = ApiError::send_failed(failure(unavailable), &ids, true).to_response("r");
        assert_eq!(response.status_code, 503);
        assert_eq!(response.headers["retry-after"], "1");
        assert!(!response.body.contains("broker-internal detail"));
        assert_eq!(body(&response)["results"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_single_event_is_answered_with_the_error_alone() {
        let err = ApiError::send_failed(
            SendFailure {
                error: SendError::Broker(BrokerError::Timeout),
                deliveries: vec![Delivery::Unknown(SendError::Broker(BrokerError::Timeout))],
            },
            &["e0".to_owned()],
            false,
        );
        assert!(matches!(err, ApiError::Timeout));
        assert!(body(&err.to_response("r")).get("results").is_none());
    }
}
