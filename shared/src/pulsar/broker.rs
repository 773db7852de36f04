//! The Pulsar side: a client per tenant role that authenticates with the
//! role's *current* token on every (re)connect, producers, and broker errors
//! classified into what the caller can act on.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulsar::error::{AuthenticationError, ConnectionError, ProducerError, ServiceDiscoveryError};
use pulsar::message::proto::{MessageIdData, ServerError};
use pulsar::producer::{Message, ProducerOptions, SendFuture};
use pulsar::{ConnectionRetryOptions, OperationRetryOptions, Pulsar, TokioExecutor};
use url::Url;

use crate::secrets::SecretValue;

mod ledger;
mod partitions;
mod pool;

pub use ledger::{Delivery, SendFailure};
use partitions::Router;
pub use partitions::partition_for_key;
pub use pool::{EXPIRY_MARGIN, SendError, TenantBrokers, TenantCredentials};

/// Hands out the Pulsar token a client should present *now*. Asked on every
/// connect and on every broker auth challenge, so a rotated token is picked up
/// when the broker drops a connection whose token expired.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The token to authenticate with.
    async fn token(&self) -> Result<SecretValue, TokenError>;
}

/// A token that never changes (tests, and tokens a caller manages itself).
#[async_trait]
impl TokenSource for SecretValue {
    async fn token(&self) -> Result<SecretValue, TokenError> {
        Ok(self.clone())
    }
}

/// The token source could not produce a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the tenant token could not be read")]
    Secret(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Malformed(#[from] crate::secrets::MalformedTokenSecret),
    #[error("secret {secret} holds a token for role {found}, not {expected}")]
    RoleMismatch {
        secret: String,
        expected: String,
        found: String,
    },
}

/// pulsar-rs's authentication hook, backed by a [`TokenSource`].
struct CurrentToken(Arc<dyn TokenSource>);

#[async_trait]
impl pulsar::authentication::Authentication for CurrentToken {
    fn auth_method_name(&self) -> String {
        "token".into()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        let token = self
            .0
            .token()
            .await
            .map_err(|e| AuthenticationError::Custom(e.to_string()))?;
        Ok(token.expose().as_bytes().to_vec())
    }
}

/// Bounds on how long broker operations may take. Derived from the Lambda
/// deadline by the handlers; the defaults suit tools and tests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing a TCP/TLS connection and the Pulsar handshake.
    pub connect: Duration,
    /// One broker operation (lookup, producer creation).
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            operation: Duration::from_secs(10),
        }
    }
}

/// What went wrong talking to the broker, in terms a caller can act on.
/// Cheap to clone (the pulsar-rs error is shared): one failure can be the
/// reason for several messages of a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker rejected the credentials (bad signature, expired, unknown).
    #[error("the broker rejected the credentials")]
    Unauthenticated(#[source] Arc<pulsar::Error>),
    /// Authenticated, but the role may not do this on this topic.
    #[error("the broker refused the operation for this role")]
    Forbidden(#[source] Arc<pulsar::Error>),
    /// The topic (or its namespace / tenant) does not exist.
    #[error("the topic does not exist")]
    TopicNotFound(#[source] Arc<pulsar::Error>),
    /// The payload does not fit the topic's schema or size limits.
    #[error("the broker rejected the message")]
    Rejected(#[source] Arc<pulsar::Error>),
    /// The broker did not answer in time.
    #[error("the broker did not answer in time")]
    Timeout,
    /// The broker is unreachable or not ready; retrying later may succeed.
    #[error("the broker is unavailable")]
    Unavailable(#[source] Arc<pulsar::Error>),
}

impl BrokerError {
    /// Maps a pulsar-rs error onto the cases above.
    pub fn classify(err: pulsar::Error) -> Self {
        let code = server_error(&err);
        Self::from_code(code, err)
    }

    fn from_code(code: Option<ServerError>, err: pulsar::Error) -> Self {
        match code {
            Some(ServerError::AuthenticationError) => Self::Unauthenticated(Arc::new(err)),
            Some(ServerError::AuthorizationError) => Self::Forbidden(Arc::new(err)),
            Some(ServerError::TopicNotFound) => Self::TopicNotFound(Arc::new(err)),
            Some(ServerError::IncompatibleSchema | ServerError::InvalidTopicName) => {
                Self::Rejected(Arc::new(err))
            }
            _ if is_auth_failure(&err) => Self::Unauthenticated(Arc::new(err)),
            _ => Self::Unavailable(Arc::new(err)),
        }
    }

    /// True when a fresh token might fix it (the cached one was rotated or expired).
    pub fn is_credentials(&self) -> bool {
        matches!(self, Self::Unauthenticated(_))
    }
}

/// Why a receipt brought no message id.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReceiptError {
    /// The broker answered this message with a send error: it is not
    /// persisted (a message over the topic's `maxMessageSize`, a producer
    /// over its quota, …).
    #[error("the broker refused the message: {0}")]
    Refused(BrokerError),
    /// No receipt came (the connection dropped, the producer could not be
    /// re-created, pulsar-rs's operation timeout passed): the message may or
    /// may not be persisted.
    #[error("the receipt was lost: {0}")]
    Lost(BrokerError),
}

impl ReceiptError {
    fn classify(err: pulsar::Error) -> Self {
        match send_error_code(&err) {
            // Refused for what the message is (its size, above all).
            Some(ServerError::NotAllowedError) => {
                Self::Refused(BrokerError::Rejected(Arc::new(err)))
            }
            Some(code) => Self::Refused(BrokerError::from_code(Some(code), err)),
            None => Self::Lost(BrokerError::classify(err)),
        }
    }

    /// The broker error behind it, whatever became of the message.
    pub fn broker_error(&self) -> &BrokerError {
        match self {
            Self::Refused(e) | Self::Lost(e) => e,
        }
    }
}

/// The code of the broker's `CommandSendError` inside `err`, if that is what
/// `err` is. pulsar-rs 6.9 resolves a send error where it waits for the
/// receipt, finds no receipt in it, and reports
/// `UnexpectedResponse(format!("{command:?}"))` (the whole `BaseCommand`
/// printed), so the code is read back from that text. Any send error means
/// the broker did not persist the message; a persistence error (a fenced
/// topic) is not one of them: pulsar-rs treats it as a producer close and
/// resends the message itself.
fn send_error_code(err: &pulsar::Error) -> Option<ServerError> {
    let ConnectionError::UnexpectedResponse(text) = connection_error(err)? else {
        return None;
    };
    const MARK: &str = "send_error: Some(CommandSendError {";
    let rest = &text[text.find(MARK)? + MARK.len()..];
    let field = rest.split_once("error: ")?.1;
    let value = field.split([',', ' ', '}']).next()?;
    // prost prints a known enum value by name, an unknown one as its number.
    ServerError::from_str_name(value)
        .or_else(|| ServerError::try_from(value.parse::<i32>().ok()?).ok())
        .or(Some(ServerError::UnknownError))
}

/// The connection-level error inside `err`, wherever pulsar-rs nests it.
fn connection_error(err: &pulsar::Error) -> Option<&ConnectionError> {
    match err {
        pulsar::Error::Connection(c)
        | pulsar::Error::Producer(ProducerError::Connection(c))
        | pulsar::Error::Consumer(pulsar::error::ConsumerError::Connection(c))
        | pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(c)) => Some(c),
        _ => None,
    }
}

fn server_error(err: &pulsar::Error) -> Option<ServerError> {
    if let pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(Some(code), _)) = err {
        return Some(*code);
    }
    match connection_error(err)? {
        ConnectionError::PulsarError(Some(code), _) => Some(*code),
        _ => None,
    }
}

// The broker answers a bad CONNECT with an AuthenticationError frame, but
// pulsar-rs 6.9 folds every non-retryable CONNECT failure into one
// `io::Error` ("fatal error when connecting to the Pulsar server") and logs the
// real cause. Refused and timed-out connections stay retryable and surface as
// themselves, so against a reachable plain-TCP broker that folded error is the
// broker refusing the credentials. (A TLS handshake failure would fold the same
// way; TLS set-up is validated before the first connect.)
const PULSAR_RS_FATAL_CONNECT: &str = "fatal error when connecting to the Pulsar server";

fn is_auth_failure(err: &pulsar::Error) -> bool {
    if matches!(err, pulsar::Error::Authentication(_)) {
        return true;
    }
    let Some(connection) = connection_error(err) else {
        return false;
    };
    match connection {
        ConnectionError::Authentication(_) => true,
        ConnectionError::Io(e) => {
            e.kind() == std::io::ErrorKind::Other && e.to_string() == PULSAR_RS_FATAL_CONNECT
        }
        ConnectionError::PulsarError(_, Some(message)) => {
            let m = message.to_ascii_lowercase();
            m.contains("authentication") || m.contains("unauthorized")
        }
        _ => false,
    }
}

/// A message's position in Pulsar, `ledger:entry:partition:batch`. Ordered
/// as the broker orders a topic's (or one partition's) messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub ledger_id: u64,
    pub entry_id: u64,
    pub partition: i32,
    pub batch_index: i32,
}

impl From<&MessageIdData> for MessageId {
    fn from(id: &MessageIdData) -> Self {
        Self {
            ledger_id: id.ledger_id,
            entry_id: id.entry_id,
            partition: id.partition.unwrap_or(-1),
            batch_index: id.batch_index.unwrap_or(-1),
        }
    }
}

impl MessageId {
    /// Parses the `ledger:entry:partition:batch` form [`fmt::Display`]
    /// prints (what the publish answer calls `messageId`). Partition and
    /// batch index are -1 when not set; nothing else below 0 is accepted.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let ledger_id = parts.next()?.parse::<u64>().ok()?;
        let entry_id = parts.next()?.parse::<u64>().ok()?;
        let partition = parts.next()?.parse::<i32>().ok().filter(|p| *p >= -1)?;
        let batch_index = parts.next()?.parse::<i32>().ok().filter(|b| *b >= -1)?;
        if parts.next().is_some() || text.len() > 64 || text.contains('+') {
            return None;
        }
        Some(Self {
            ledger_id,
            entry_id,
            partition,
            batch_index,
        })
    }

    /// The protocol form, to seek to or acknowledge this message.
    pub fn to_data(self) -> MessageIdData {
        MessageIdData {
            ledger_id: self.ledger_id,
            entry_id: self.entry_id,
            partition: Some(self.partition),
            batch_index: Some(self.batch_index),
            ..MessageIdData::default()
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.ledger_id, self.entry_id, self.partition, self.batch_index
        )
    }
}

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    pub payload: Vec<u8>,
    /// Message key (ordering and partition routing).
    pub key: Option<String>,
    /// Event time, milliseconds since the Unix epoch.
    pub event_time_ms: Option<u64>,
    pub properties: HashMap<String, String>,
}

/// A connected Pulsar client acting as one role.
#[derive(Clone)]
pub struct Broker {
    client: Pulsar<TokioExecutor>,
    timeouts: Timeouts,
}

impl Broker {
    /// Connects to `service_url`, authenticating with whatever `tokens`
    /// returns at each connect.
    pub async fn connect(
        service_url: &Url,
        tokens: Arc<dyn TokenSource>,
        timeouts: Timeouts,
    ) -> Result<Self, BrokerError> {
        let builder = Pulsar::builder(service_url.as_str(), TokioExecutor)
            .with_auth_provider(Box::new(CurrentToken(tokens)))
            // Fail fast: the handler, not the client, decides about retries,
            // and an auth failure must not spin through 12 backoff rounds.
            .with_connection_retry_options(ConnectionRetryOptions {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                max_retries: 2,
                connection_timeout: timeouts.connect,
                ..ConnectionRetryOptions::default()
            })
            .with_operation_retry_options(OperationRetryOptions {
                operation_timeout: timeouts.operation,
                retry_delay: Duration::from_millis(200),
                max_retries: Some(3),
            });
        let client = within(timeouts.connect + timeouts.operation, builder.build()).await?;
        Ok(Self { client, timeouts })
    }

    /// Creates a producer on `topic` (a full `persistent://t/ns/name` name):
    /// on a partitioned topic, one per partition, each connected to the
    /// broker that owns it. This is where the broker checks the role's
    /// `produce` permission.
    pub async fn producer(&self, topic: &str) -> Result<Producer, BrokerError> {
        // Boxed: pulsar-rs's lookup and creation futures nest deep, and in
        // debug builds polling them inline overflows a 2 MiB thread stack.
        // Producers are opened rarely, so the allocation costs nothing.
        let partitions = Box::pin(within(
            self.timeouts.operation,
            self.client.lookup_partitioned_topic_number(topic),
        ))
        .await?;
        let names: Vec<String> = match partitions {
            0 => vec![topic.to_owned()],
            n => (0..n).map(|i| format!("{topic}-partition-{i}")).collect(),
        };
        let opened = futures::future::join_all(names.iter().map(|name| {
            Box::pin(within(
                self.timeouts.operation,
                self.client
                    .producer()
                    .with_topic(name)
                    // Wait for room rather than fail with `SlowDown` once 100
                    // messages (pulsar-rs's outbound channel) wait to be
                    // written: a batch enqueues all its messages before the
                    // first receipt.
                    .with_options(ProducerOptions {
                        block_queue_if_full: true,
                        ..ProducerOptions::default()
                    })
                    .build(),
            ))
        }))
        .await;
        Ok(Producer {
            partitions: opened.into_iter().collect::<Result<_, _>>()?,
            router: (partitions > 0).then(|| Router::new(partitions)),
        })
    }

    /// The underlying pulsar-rs client (consumers, in tests and tools).
    pub fn client(&self) -> &Pulsar<TokioExecutor> {
        &self.client
    }
}

/// A producer on one topic (one pulsar-rs producer per partition).
pub struct Producer {
    partitions: Vec<pulsar::Producer<TokioExecutor>>,
    /// `None` for a topic that is not partitioned.
    router: Option<Router>,
}

impl Producer {
    /// Sends one message and waits for the broker's receipt (the message is
    /// persisted when this returns `Ok`).
    pub async fn send(&mut self, message: OutgoingMessage) -> Result<MessageId, BrokerError> {
        self.enqueue(message)
            .await?
            .await
            .map_err(|e| e.broker_error().clone())
    }

    /// Hands one message to the connection without waiting for its receipt,
    /// so a batch costs one round trip rather than one per message. Messages
    /// go out in the order they are enqueued. `Err` means the message was not
    /// handed over (it is not persisted); the receipt says the rest.
    pub async fn enqueue(&mut self, message: OutgoingMessage) -> Result<Receipt, BrokerError> {
        let OutgoingMessage {
            payload,
            key,
            event_time_ms,
            properties,
        } = message;
        let partition = self.router.as_mut().map(|r| r.route(key.as_deref()));
        let message = Message {
            payload,
            properties,
            partition_key: key,
            event_time: event_time_ms,
            ..Message::default()
        };
        // `partitions` has one producer per partition the router can name.
        let producer = &mut self.partitions[partition.unwrap_or(0) as usize];
        producer
            .send_non_blocking(message)
            .await
            .map(|future| Receipt { future, partition })
            .map_err(BrokerError::classify)
    }
}

/// The broker's answer to one enqueued message, still to come.
pub struct Receipt {
    future: SendFuture,
    /// The partition it was sent to, which the receipt does not say.
    partition: Option<u32>,
}

impl std::future::Future for Receipt {
    type Output = Result<MessageId, ReceiptError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let partition = self.partition;
        std::pin::Pin::new(&mut self.future)
            .poll(cx)
            .map(|receipt| {
                let receipt = receipt.map_err(ReceiptError::classify)?;
                receipt
                    .message_id
                    .as_ref()
                    .map(|id| MessageId {
                        partition: partition.map_or(-1, |p| p as i32),
                        ..MessageId::from(id)
                    })
                    .ok_or_else(|| {
                        ReceiptError::Lost(BrokerError::Unavailable(Arc::new(
                            pulsar::Error::Custom("send receipt without a message id".into()),
                        )))
                    })
            })
    }
}

async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, pulsar::Error>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(BrokerError::classify),
        Err(_) => Err(BrokerError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_parse_what_they_print_and_nothing_else() {
        for text in ["12:3:-1:-1", "0:0:2:7", "18446744073709551615:1:-1:0"] {
            assert_eq!(MessageId::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "12:3:-1",
            "12:3:-1:-1:0",
            "-1:3:-1:-1",
            "12:3:-2:-1",
            "12:3:-1:-5",
            "a:b:c:d",
            "+12:3:-1:-1",
            "12:3:-1:-1 ",
            "12: 3:-1:-1",
            "99999999999999999999:0:-1:-1",
        ] {
            assert_eq!(MessageId::parse(bad), None, "{bad:?}");
        }
        let id = |l, e, b| MessageId {
            ledger_id: l,
            entry_id: e,
            partition: -1,
            batch_index: b,
        };
        assert!(id(1, 9, -1) < id(2, 0, -1));
        assert!(id(2, 0, -1) < id(2, 1, -1));
        assert!(id(2, 1, 0) < id(2, 1, 1));
    }

    #[test]
    fn message_ids_print_in_pulsar_order() {
        let id = MessageId {
            ledger_id: 12,
            entry_id: 3,
            partition: -1,
            batch_index: -1,
        };
        assert_eq!(id.to_string(), "12:3:-1:-1");
    }

    /// The error pulsar-rs 6.9 hands back for a receipt that was a
    /// `CommandSendError`: the whole command, printed.
    fn folded_send_error(code: i32) -> pulsar::Error {
        use pulsar::message::proto::{BaseCommand, CommandSendError};
        let command = BaseCommand {
            send_error: Some(CommandSendError {
                producer_id: 3,
                sequence_id: 7,
                error: code,
                message: "Exceed maximum message size".into(),
            }),
            ..BaseCommand::default()
        };
        pulsar::Error::Producer(ProducerError::Connection(
            ConnectionError::UnexpectedResponse(format!("{command:?}")),
        ))
    }

    #[test]
    fn a_send_error_receipt_is_a_refusal_and_anything_else_a_lost_receipt() {
        let refused = |code: ServerError| ReceiptError::classify(folded_send_error(code as i32));
        assert!(matches!(
            refused(ServerError::NotAllowedError),
            ReceiptError::Refused(BrokerError::Rejected(_))
        ));
        assert!(matches!(
            refused(ServerError::ProducerBlockedQuotaExceededError),
            ReceiptError::Refused(BrokerError::Unavailable(_))
        ));
        assert!(matches!(
            refused(ServerError::AuthorizationError),
            ReceiptError::Refused(BrokerError::Forbidden(_))
        ));
        // A code this pulsar-rs does not know is still a refusal.
        assert!(matches!(
            ReceiptError::classify(folded_send_error(9999)),
            ReceiptError::Refused(BrokerError::Unavailable(_))
        ));
        for lost in [
            pulsar::Error::Producer(ProducerError::Connection(ConnectionError::Disconnected)),
            pulsar::Error::Producer(ProducerError::Custom(
                "could not re-create the producer: x".into(),
            )),
            pulsar::Error::Producer(ProducerError::Connection(
                ConnectionError::UnexpectedResponse("BaseCommand { pong: Some(..) }".into()),
            )),
        ] {
            assert!(
                matches!(ReceiptError::classify(lost), ReceiptError::Lost(_)),
                "a lost receipt"
            );
        }
    }

    #[test]
    fn server_error_codes_are_classified() {
        let err = |code| {
            pulsar::Error::Connection(ConnectionError::PulsarError(Some(code), Some("x".into())))
        };
        assert!(matches!(
            BrokerError::classify(err(ServerError::AuthorizationError)),
            BrokerError::Forbidden(_)
        ));
        assert!(matches!(
            BrokerError::classify(err(ServerError::AuthenticationError)),
            BrokerError::Unauthenticated(_)
        ));
        assert!(matches!(
            BrokerError::classify(err(ServerError::TopicNotFound)),
            BrokerError::TopicNotFound(_)
        ));
        assert!(matches!(
            BrokerError::classify(err(ServerError::ServiceNotReady)),
            BrokerError::Unavailable(_)
        ));
    }
}
