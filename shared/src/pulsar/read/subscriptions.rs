//! Durable Shared subscriptions for callers that cannot hold a connection:
//! each read opens a consumer that the broker dispatches to one message at a
//! time (see [`open_consumer`]: a read holds at most two messages beyond
//! those it returns), takes up to the request's `max`, and then *parks* the consumer for the
//! visibility timeout instead of closing it. While it is open, the broker
//! keeps the messages it dispatched to it from every other consumer of the
//! subscription; when it closes, the broker hands the ones not acknowledged
//! to the others. That is the visibility timeout, kept by the broker's own
//! bookkeeping rather than by a timer in an instance that may be frozen.
//!
//! What bounds a message's absence, as the README states it:
//! * acknowledged (by any instance: an acknowledgement is the
//!   subscription's, whichever consumer sends it) — gone for good;
//! * the instance that read it stays alive — back to the subscription when
//!   its parked consumer closes, the visibility timeout after the read
//!   (checked every [`REAP_EVERY`]);
//! * the instance is frozen or dead — back when the broker drops its
//!   connection for missed keep-alives, within twice the broker's
//!   `keepAliveIntervalSeconds`, or the timeout if the instance thaws first.
//!
//! At most `max_consumers` consumers stay parked per instance; past that
//! the oldest closes early (its messages come back early: at-least-once
//! allows that, never the reverse).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use pulsar::SubType;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use tokio::time::Instant;

use super::{Delivered, LINGER, PulsarConsumer, ReadError, Take, last_message, next_until, within};
use crate::pulsar::broker::{
    Broker, BrokerError, MessageId, SendError, TenantBrokers, TenantCredentials,
};
use crate::pulsar::topic::{SubscriptionName, TopicName};

/// A read waits at least this long for the broker's first dispatch, even
/// with `waitMs=0`: a new consumer's first messages take a round trip.
const FIRST_DISPATCH: Duration = Duration::from_millis(250);
/// The acknowledging consumer's queue (see [`Subscriptions::acknowledge`]).
const ACKER_QUEUE: u32 = 10_000;
/// How often parked consumers past their timeout are closed.
pub const REAP_EVERY: Duration = Duration::from_millis(250);

struct Parked {
    until: Instant,
    /// Held open, never read again: dropping it closes it on the broker.
    _consumer: PulsarConsumer,
}

/// The parked consumers of one instance.
pub struct Subscriptions {
    visibility: Duration,
    max_consumers: usize,
    /// In parking order, which is expiry order (one timeout for all).
    parked: Arc<Mutex<VecDeque<Parked>>>,
    reaper: OnceLock<tokio::task::JoinHandle<()>>,
}

impl Subscriptions {
    pub(super) fn new(visibility: Duration, max_consumers: usize) -> Self {
        Self {
            visibility,
            max_consumers: max_consumers.max(1),
            parked: Arc::default(),
            reaper: OnceLock::new(),
        }
    }

    pub(super) async fn receive(
        &self,
        brokers: &TenantBrokers,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        subscription: &SubscriptionName,
        Take { max, wait }: Take,
        deadline: Instant,
    ) -> Result<Vec<Delivered>, ReadError> {
        self.reap();
        let topic = topic.to_string();
        let broker = within(deadline, brokers.broker(credentials)).await?;
        let mut consumer =
            within(deadline, open_consumer(&broker, &topic, subscription, 0)).await?;
        let first_until = deadline.min(Instant::now() + wait.max(FIRST_DISPATCH));
        let mut messages = Vec::new();
        while messages.len() < max {
            let until = if messages.is_empty() {
                first_until
            } else {
                deadline.min(Instant::now() + LINGER)
            };
            // On an error the consumer is dropped: what it held goes back now.
            match next_until(until, &mut consumer).await? {
                Some(message) => messages.push(message),
                None => break,
            }
        }
        if !messages.is_empty() {
            self.park(consumer);
        }
        Ok(messages)
    }

    pub(super) async fn acknowledge(
        &self,
        brokers: &TenantBrokers,
        credentials: TenantCredentials<'_>,
        topic: &TopicName,
        subscription: &SubscriptionName,
        ids: &[MessageId],
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let topic = topic.to_string();
        let broker = within(deadline, brokers.broker(credentials)).await?;
        // A consumer of its own, closed when done: an acknowledgement is
        // the subscription's, whichever consumer sends it. pulsar-rs's
        // engine stops at once with zero permits, so it has one; the few
        // messages dispatched to it in the milliseconds it lives go back
        // when it closes. Its queue is deep so that its engine, which also
        // carries the acknowledgements, never waits for room.
        let mut consumer = within(
            deadline,
            open_consumer(&broker, &topic, subscription, ACKER_QUEUE),
        )
        .await?;
        within(deadline, async {
            let last = consumer
                .get_last_message_id()
                .await
                .map_err(|e| ReadError::from(BrokerError::classify(e)))?
                .first()
                .and_then(last_message);
            // Acknowledging a position the topic does not hold yet would
            // mark a future message as read before anyone saw it.
            for id in ids {
                let known =
                    last.is_some_and(|l| (id.ledger_id, id.entry_id) <= (l.ledger_id, l.entry_id));
                // Ids of a non-partitioned topic carry partition -1.
                if !known || id.partition != -1 {
                    return Err(ReadError::UnknownMessage(*id));
                }
            }
            for id in ids {
                consumer
                    .ack_with_id(&topic, id.to_data())
                    .await
                    .map_err(|e| ReadError::from(BrokerError::classify(e.into())))?;
            }
            // A round trip queued behind the acknowledgements on the same
            // consumer and connection: when it answers, the broker has read
            // them (pulsar-rs asks for no acknowledgement receipts).
            consumer
                .check_connection()
                .await
                .map_err(|e| ReadError::from(BrokerError::classify(e)))
        })
        .await
    }

    fn park(&self, consumer: PulsarConsumer) {
        let evicted = {
            let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            parked.push_back(Parked {
                until: Instant::now() + self.visibility,
                _consumer: consumer,
            });
            let excess = parked.len().saturating_sub(self.max_consumers);
            parked.drain(..excess).collect::<Vec<_>>()
        };
        if !evicted.is_empty() {
            tracing::info!(
                closed = evicted.len(),
                "more parked subscription consumers than KP_MAX_CONSUMERS; closing the oldest early"
            );
        }
        self.reaper.get_or_init(|| {
            let parked = Arc::downgrade(&self.parked);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REAP_EVERY);
                while let Some(parked) = parked.upgrade() {
                    tick.tick().await;
                    drop(expired(&parked));
                }
            })
        });
    }

    fn reap(&self) {
        drop(expired(&self.parked));
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get() {
            reaper.abort();
        }
    }
}

/// Takes the parked consumers whose timeout passed; dropping them closes
/// them on the broker (outside the lock).
fn expired(parked: &Mutex<VecDeque<Parked>>) -> Vec<Parked> {
    let now = Instant::now();
    let mut parked = parked.lock().unwrap_or_else(PoisonError::into_inner);
    let n = parked.iter().take_while(|p| p.until <= now).count();
    parked.drain(..n).collect()
}

/// A consumer the broker dispatches to one message at a time: pulsar-rs
/// tops a consumer's permits up whenever half are used, whatever the
/// application took, so any larger grant would let a read hold (and a
/// frozen instance keep) up to that many messages it never returned. One
/// permit and a queue of one bound that to two, for a broker round trip per
/// message.
async fn open_consumer(
    broker: &Broker,
    topic: &str,
    subscription: &SubscriptionName,
    queue: u32,
) -> Result<PulsarConsumer, SendError> {
    // Boxed: pulsar-rs's subscribe futures nest deep (see Broker::producer).
    Box::pin(
        broker
            .client()
            .consumer()
            .with_topic(topic)
            .with_subscription(subscription.as_str())
            .with_subscription_type(SubType::Shared)
            .with_consumer_name(format!("kp-{}", uuid::Uuid::new_v4().simple()))
            .with_batch_size(1)
            .with_options(ConsumerOptions {
                // A subscription made by its first read starts at the oldest
                // message the topic holds: nothing published before the
                // first read is skipped.
                initial_position: InitialPosition::Earliest,
                durable: Some(true),
                receiver_queue_size: Some(queue),
                ..ConsumerOptions::default()
            })
            .build::<Vec<u8>>(),
    )
    .await
    .map_err(|e| SendError::Broker(BrokerError::classify(e)))
}
