//! The read side of Pulsar, as the consume function needs it: stateless
//! cursor reads (a non-durable reader per request, positioned after a
//! message id) and durable Shared subscriptions with a visibility timeout
//! ([`subscriptions`]). Both use the publish side's per-role clients
//! ([`TenantBrokers`]), so a tenant's token is read, cached and refreshed in
//! one place.
//!
//! Why a reader per request: a Lambda instance may be frozen between two
//! calls, or never called again; nothing that must survive between requests
//! lives in it. The cursor a caller holds is the position itself (the
//! message id of the last message it got), so any instance continues any
//! caller's read.

use std::sync::Arc;
use std::time::Duration;

use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::message::proto::MessageIdData;
use pulsar::{Consumer, TokioExecutor};
use tokio::time::{Instant, timeout_at};

use super::broker::{Broker, BrokerError, MessageId, SendError, TenantBrokers, TenantCredentials};
use super::topic::{SubscriptionName, TopicName};

mod partition_counts;
mod partitioned;
pub mod position;
pub mod subscriptions;

pub use position::{CursorMismatch, Position};
pub use subscriptions::Subscriptions;

/// One message as the broker delivered it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: MessageId,
    pub payload: Vec<u8>,
    pub key: Option<String>,
    /// Milliseconds since the epoch; `None` when the producer set none.
    pub event_time_ms: Option<u64>,
    pub publish_time_ms: u64,
    /// In wire order; a name may repeat (a producer outside the gateway can
    /// send anything), which provenance verification refuses.
    pub properties: Vec<(String, String)>,
}

impl Delivered {
    fn from_message(message: pulsar::consumer::Message<Vec<u8>>) -> Self {
        let id = MessageId::from(message.message_id());
        let metadata = message.payload.metadata;
        Self {
            id,
            payload: message.payload.data,
            key: metadata.partition_key.filter(|k| !k.is_empty()),
            event_time_ms: metadata.event_time.filter(|t| *t != 0),
            publish_time_ms: metadata.publish_time,
            properties: metadata
                .properties
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
        }
    }
}

/// How much one read takes: at most `max` messages, waiting at most `wait`
/// for a first one when none is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub max: usize,
    pub wait: Duration,
}

/// A page of a cursor read.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Delivered>,
    /// Where this read started, `latest` resolved (to the topic's, or each
    /// partition's, last message; `earliest` where there was none). The next
    /// read continues there, advanced past each message the caller was
    /// given ([`Position::advance`]): what a page leaves out (the byte cap)
    /// is read again.
    pub start: Position,
}

/// Why a read did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The tenant token could not be had, or the broker refused or failed.
    #[error(transparent)]
    Broker(#[from] SendError),
    /// An acknowledgement names a position past the topic's last message:
    /// acknowledging it would silently skip a message published later.
    #[error("message {0} is not in the topic")]
    UnknownMessage(MessageId),
    /// The topic is partitioned: a cursor here is one message id, and a
    /// pulsar-rs reader reads one partition, so reading it would be
    /// reading a quarter of it while looking like all of it.
    #[error("the topic has {0} partitions")]
    Partitioned(u32),
    /// The cursor is of another kind of topic (partitioned or not).
    #[error(transparent)]
    Cursor(#[from] CursorMismatch),
}

impl From<BrokerError> for ReadError {
    fn from(err: BrokerError) -> Self {
        Self::Broker(SendError::Broker(err))
    }
}

impl ReadError {
    fn is_credentials(&self) -> bool {
        matches!(self, Self::Broker(e) if e.is_credentials())
    }
}

/// After the first message of a long poll, how long to wait for the next
/// before answering with what arrived: a burst published together comes
/// back together, a lone event without delay.
const LINGER: Duration = Duration::from_millis(20);

/// Cursor reads and subscriptions over one instance's tenant clients.
pub struct Readers {
    brokers: Arc<TenantBrokers>,
    subscriptions: Subscriptions,
    partition_counts: partition_counts::PartitionCounts,
}

impl Readers {
    /// `visibility`: how long a message handed out from a subscription stays
    /// invisible to other consumers unless acknowledged; at most
    /// `max_consumers` subscription consumers stay open in this instance.
    pub fn new(brokers: Arc<TenantBrokers>, visibility: Duration, max_consumers: usize) -> Self {
        Self {
            subscriptions: Subscriptions::new(visibility, max_consumers),
            brokers,
            partition_counts: Default::default(),
        }
    }

    /// Up to `max` messages after `position`. When the topic holds nothing
    /// past it, waits up to `wait` for one; otherwise reads what the topic
    /// held when the read began (up to `max`), without waiting for more.
    /// Never past `budget`: what arrived by then is the page. A partitioned
    /// topic is read on every partition at once (see [`partitioned`]).
    pub async fn read(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        position: &Position,
        take: Take,
        budget: Duration,
    ) -> Result<Page, ReadError> {
        let deadline = Instant::now() + budget;
        let topic = topic.to_string();
        self.with_fresh_token(credentials, || async {
            let mut partitions = self.partitions(credentials, &topic, deadline).await?;
            if position.fits(partitions).is_err() {
                // Partitions may have been added since the count was
                // remembered: ask again before refusing the cursor.
                self.partition_counts.forget(&topic);
                partitions = self.partitions(credentials, &topic, deadline).await?;
                position.fits(partitions)?;
            }
            if partitions == 0 {
                self.read_once(credentials, &topic, -1, position, take, deadline)
                    .await
            } else {
                partitioned::read(
                    self,
                    credentials,
                    &topic,
                    partitions,
                    position,
                    take,
                    deadline,
                )
                .await
            }
        })
        .await
    }

    /// Up to `max` messages from durable Shared `subscription` (created at
    /// the topic's oldest message by its first use), invisible to the
    /// subscription's other consumers until acknowledged or until the
    /// visibility timeout (see [`subscriptions`]). Waits up to `wait` for
    /// the first one.
    pub async fn receive(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        subscription: &SubscriptionName,
        take: Take,
        budget: Duration,
    ) -> Result<Vec<Delivered>, ReadError> {
        let deadline = Instant::now() + budget;
        self.with_fresh_token(credentials, || async {
            self.refuse_partitioned(credentials, &topic.to_string(), deadline)
                .await?;
            self.subscriptions
                .receive(
                    &self.brokers,
                    credentials,
                    topic,
                    subscription,
                    take,
                    deadline,
                )
                .await
        })
        .await
    }

    /// Acknowledges `ids` on `subscription`: they are not delivered again,
    /// whichever instance read them. Refuses (before acknowledging any) an
    /// id past the topic's last message.
    pub async fn acknowledge(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        subscription: &SubscriptionName,
        ids: &[MessageId],
        budget: Duration,
    ) -> Result<(), ReadError> {
        let deadline = Instant::now() + budget;
        self.with_fresh_token(credentials, || async {
            self.refuse_partitioned(credentials, &topic.to_string(), deadline)
                .await?;
            self.subscriptions
                .acknowledge(
                    &self.brokers,
                    credentials,
                    topic,
                    subscription,
                    ids,
                    deadline,
                )
                .await
        })
        .await
    }

    /// [`ReadError::Partitioned`] for a partitioned topic: a subscription's
    /// consumer here takes one partition.
    async fn refuse_partitioned(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &str,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        match self.partitions(credentials, topic, deadline).await? {
            0 => Ok(()),
            n => Err(ReadError::Partitioned(n)),
        }
    }

    /// How many partitions `topic` has (0: not partitioned): remembered for
    /// [`partition_counts::TTL`], else one lookup.
    async fn partitions(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &str,
        deadline: Instant,
    ) -> Result<u32, ReadError> {
        if let Some(count) = self.partition_counts.get(topic) {
            return Ok(count);
        }
        let broker = within(deadline, self.brokers.broker(credentials)).await?;
        let count = within(deadline, async {
            // Boxed: pulsar-rs's lookup futures nest deep (see Broker::producer).
            Box::pin(broker.client().lookup_partitioned_topic_number(topic))
                .await
                .map_err(|e| SendError::Broker(BrokerError::classify(e)))
        })
        .await?;
        self.partition_counts.remember(topic, count);
        Ok(count)
    }

    /// Runs `attempt`, and once more with the role's token read again when
    /// the broker rejected it (rotated or expired), as sends do.
    async fn with_fresh_token<T, F: std::future::Future<Output = Result<T, ReadError>>>(
        &self,
        credentials: TenantCredentials<'_>,
        attempt: impl Fn() -> F,
    ) -> Result<T, ReadError> {
        match attempt().await {
            Err(e) if e.is_credentials() => {
                tracing::info!(
                    role = credentials.role,
                    "broker rejected the tenant token; refreshing it and retrying once"
                );
                self.brokers.forget(credentials).await;
                attempt().await
            }
            other => other,
        }
    }

    /// One non-partitioned topic (`partition` -1), or partition `partition`
    /// read as a topic of its own (`position` is then
    /// [`Position::of_partition`]'s). Every id it handles is stamped with
    /// `partition`, whatever the broker numbers it, so positions compare
    /// within the one partition.
    async fn read_once(
        &self,
        credentials: TenantCredentials<'_>,
        topic: &str,
        partition: i32,
        position: &Position,
        Take { max, wait }: Take,
        deadline: Instant,
    ) -> Result<Page, ReadError> {
        let broker = within(deadline, self.brokers.broker(credentials)).await?;
        let start = match position {
            Position::After(id) => Some(*id),
            // Checked by the caller: a cursor of several partitions is split
            // into one position per partition before it gets here.
            Position::Earliest | Position::Latest | Position::AfterEach(_) => None,
        };
        let mut reader = within(deadline, open_reader(&broker, topic, start, max)).await?;
        let last = within(deadline, async {
            reader
                .get_last_message_id()
                .await
                .map_err(|e| SendError::Broker(BrokerError::classify(e)))
        })
        .await
        .map(|id| last_message(&id))?
        .map(|id| MessageId { partition, ..id });
        // The position messages must come after: for `latest`, the last one
        // now (a reader opened at "latest" would miss one published while it
        // subscribes).
        let after = match position {
            Position::After(id) => Some(*id),
            Position::Earliest | Position::AfterEach(_) => None,
            Position::Latest => last,
        };
        if *position == Position::Latest && after.is_some() {
            drop(reader);
            reader = within(deadline, open_reader(&broker, topic, after, max)).await?;
        }
        let resolved = match (position, after) {
            (Position::Latest, None) => Position::Earliest,
            (Position::Latest, Some(id)) => Position::After(id),
            (p, _) => p.clone(),
        };
        // What the read must reach before it answers, when known.
        let target = match (last, after) {
            (Some(last), Some(after)) if last > after => Some(last),
            (Some(last), None) => Some(last),
            _ => None,
        };
        let wait_until = deadline.min(Instant::now() + wait);
        let mut messages = Vec::new();
        while messages.len() < max {
            let reached =
                target.is_some_and(|t| messages.last().is_some_and(|m: &Delivered| m.id >= t));
            if reached {
                break;
            }
            let until = match target {
                Some(_) => deadline,
                None if messages.is_empty() => wait_until,
                None => deadline.min(Instant::now() + LINGER),
            };
            let Some(mut message) = next_until(until, &mut reader).await? else {
                break;
            };
            message.id.partition = partition;
            // A reader may start at the position itself (or, for a batch,
            // at its entry): everything up to it was read already.
            if after.is_some_and(|a| message.id <= a) {
                continue;
            }
            messages.push(message);
        }
        // Whatever was not taken goes back with the reader (non-durable:
        // nothing to acknowledge).
        Ok(Page {
            messages,
            start: resolved,
        })
    }
}

/// The next message of a reader or consumer, or `None` once `until` passed.
async fn next_until<S>(until: Instant, stream: &mut S) -> Result<Option<Delivered>, ReadError>
where
    S: futures::Stream<Item = Result<pulsar::consumer::Message<Vec<u8>>, pulsar::Error>> + Unpin,
{
    match timeout_at(until, futures::StreamExt::next(stream)).await {
        Err(_) => Ok(None),
        Ok(None) => Err(BrokerError::Unavailable(Arc::new(pulsar::Error::Custom(
            "the reader or consumer stopped".into(),
        )))
        .into()),
        Ok(Some(Err(e))) => Err(BrokerError::classify(e).into()),
        Ok(Some(Ok(message))) => Ok(Some(Delivered::from_message(message))),
    }
}

/// The broker's "last message id" of an empty topic has entry id -1.
fn last_message(id: &MessageIdData) -> Option<MessageId> {
    (id.entry_id != u64::MAX).then(|| MessageId::from(id))
}

async fn open_reader(
    broker: &Broker,
    topic: &str,
    start: Option<MessageId>,
    max: usize,
) -> Result<pulsar::reader::Reader<Vec<u8>, TokioExecutor>, SendError> {
    let permits = u32::try_from(max + 1).unwrap_or(u32::MAX);
    // Boxed: pulsar-rs's subscribe futures nest deep (see Broker::producer).
    Box::pin(
        broker
            .client()
            .reader()
            .with_topic(topic)
            .with_subscription(format!("kp-read-{}", uuid::Uuid::new_v4().simple()))
            .with_batch_size(permits)
            .with_options(ConsumerOptions {
                start_message_id: start.map(MessageId::to_data),
                initial_position: InitialPosition::Earliest,
                durable: Some(false),
                // Room for two rounds of permits: the engine tops permits up
                // on its own, and a full queue would stall its other work.
                receiver_queue_size: Some(permits.saturating_mul(2)),
                ..ConsumerOptions::default()
            })
            .into_reader::<Vec<u8>>(),
    )
    .await
    .map_err(|e| SendError::Broker(BrokerError::classify(e)))
}

/// Runs `fut` until `deadline`; past it, a broker timeout.
async fn within<T, E: Into<ReadError>>(
    deadline: Instant,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ReadError> {
    match timeout_at(deadline, fut).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(BrokerError::Timeout.into()),
    }
}

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;
