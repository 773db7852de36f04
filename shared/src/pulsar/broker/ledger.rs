//! What became of each message of one send: the bookkeeping that lets a
//! pipelined batch (every message enqueued, then every receipt awaited)
//! answer honestly per line, and resend after a token refresh only the lines
//! that are known not to be persisted.
//!
//! Pure: [`super::pool::TenantBrokers::send`] records into a [`Ledger`] what
//! the broker said, and the ledger decides what may be resent and what the
//! outcome is.

use super::{BrokerError, MessageId, SendError};

/// What became of one message.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Persisted: its receipt arrived.
    Persisted(MessageId),
    /// Not persisted: the broker refused it, or it was never handed to the
    /// broker (the send stopped before it, or never started). Sending it
    /// again cannot duplicate it.
    NotPersisted(SendError),
    /// Handed to the broker, but no receipt arrived: it may or may not be
    /// persisted.
    Unknown(SendError),
}

impl Delivery {
    /// The error, unless the message was persisted.
    pub fn error(&self) -> Option<&SendError> {
        match self {
            Self::Persisted(_) => None,
            Self::NotPersisted(e) | Self::Unknown(e) => Some(e),
        }
    }
}

/// A send that did not persist every message: why, and what became of each.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SendFailure {
    /// What decides the answer: [`BrokerError::Timeout`] when the budget ran
    /// out before every receipt arrived, else the first failed message's error.
    pub error: SendError,
    /// One per message, in the order given.
    pub deliveries: Vec<Delivery>,
}

/// Per-message state of one send, across its attempts.
#[derive(Debug)]
pub(super) struct Ledger {
    /// `None`: not attempted yet.
    lines: Vec<Option<Delivery>>,
}

impl Ledger {
    pub(super) fn new(messages: usize) -> Self {
        Self {
            lines: vec![None; messages],
        }
    }

    /// The messages the next attempt sends, in order: those not attempted
    /// yet, and those not persisted because the broker refused the
    /// credentials (worth one more try with a fresh token). A message that
    /// may already be persisted is never among them.
    pub(super) fn to_send(&self) -> Vec<usize> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| match line {
                None => true,
                Some(Delivery::NotPersisted(e)) => e.is_credentials(),
                Some(_) => false,
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub(super) fn persisted(&mut self, index: usize, id: MessageId) {
        self.lines[index] = Some(Delivery::Persisted(id));
    }

    pub(super) fn not_persisted(&mut self, index: usize, error: SendError) {
        self.lines[index] = Some(Delivery::NotPersisted(error));
    }

    pub(super) fn unknown(&mut self, index: usize, error: SendError) {
        self.lines[index] = Some(Delivery::Unknown(error));
    }

    /// A message failed because the broker refused the credentials.
    pub(super) fn credentials_failed(&self) -> bool {
        self.errors().any(SendError::is_credentials)
    }

    /// The budget ran out before a message's fate was known.
    pub(super) fn timed_out(&self) -> bool {
        self.errors().any(SendError::is_timeout)
    }

    fn errors(&self) -> impl Iterator<Item = &SendError> {
        self.lines.iter().flatten().filter_map(Delivery::error)
    }

    /// The message ids when every message is persisted, else the failure.
    pub(super) fn finish(self) -> Result<Vec<MessageId>, SendFailure> {
        let deliveries: Vec<Delivery> = self
            .lines
            .into_iter()
            .map(|line| {
                // Every attempt records each message it was given; an
                // unrecorded one was never handed to the broker.
                line.unwrap_or(Delivery::NotPersisted(SendError::Broker(
                    BrokerError::Timeout,
                )))
            })
            .collect();
        let mut errors = deliveries.iter().filter_map(Delivery::error);
        let Some(first) = errors.next() else {
            return Ok(deliveries
                .into_iter()
                .filter_map(|d| match d {
                    Delivery::Persisted(id) => Some(id),
                    _ => None,
                })
                .collect());
        };
        // A timeout is the answer whenever one happened: part of the batch
        // is of unknown fate, which no other error explains.
        let error = std::iter::once(first)
            .chain(errors)
            .find(|e| e.is_timeout())
            .unwrap_or(first)
            .clone();
        Err(SendFailure { error, deliveries })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn id(entry: u64) -> MessageId {
        MessageId {
            ledger_id: 7,
            entry_id: entry,
            partition: -1,
            batch_index: -1,
        }
    }

    fn pulsar_error() -> Arc<pulsar::Error> {
        Arc::new(pulsar::Error::Custom("x".into()))
    }

    fn rejected() -> SendError {
        SendError::Broker(BrokerError::Rejected(pulsar_error()))
    }

    fn unauthenticated() -> SendError {
        SendError::Broker(BrokerError::Unauthenticated(pulsar_error()))
    }

    fn unavailable() -> SendError {
        SendError::Broker(BrokerError::Unavailable(pulsar_error()))
    }

    fn timeout() -> SendError {
        SendError::Broker(BrokerError::Timeout)
    }

    #[test]
    fn every_message_persisted_gives_the_ids_in_order() {
        let mut ledger = Ledger::new(3);
        assert_eq!(ledger.to_send(), [0, 1, 2]);
        for i in [2, 0, 1] {
            ledger.persisted(i, id(i as u64));
        }
        assert!(ledger.to_send().is_empty());
        assert_eq!(ledger.finish().unwrap(), [id(0), id(1), id(2)]);
    }

    #[test]
    fn a_refused_line_in_the_middle_leaves_the_others_reported_as_persisted() {
        let mut ledger = Ledger::new(5);
        for i in [0, 1, 3, 4] {
            ledger.persisted(i, id(i as u64));
        }
        ledger.not_persisted(2, rejected());
        assert!(!ledger.credentials_failed());
        assert!(ledger.to_send().is_empty(), "a refused message is final");
        let failure = ledger.finish().unwrap_err();
        assert!(matches!(
            failure.error,
            SendError::Broker(BrokerError::Rejected(_))
        ));
        let shape: Vec<_> = failure
            .deliveries
            .iter()
            .map(|d| match d {
                Delivery::Persisted(id) => format!("ok {}", id.entry_id),
                Delivery::NotPersisted(_) => "no".into(),
                Delivery::Unknown(_) => "?".into(),
            })
            .collect();
        assert_eq!(shape, ["ok 0", "ok 1", "no", "ok 3", "ok 4"]);
    }

    #[test]
    fn after_a_credentials_failure_only_lines_known_not_persisted_are_resent() {
        let mut ledger = Ledger::new(6);
        ledger.persisted(0, id(0));
        // Receipt lost with the connection the broker dropped: maybe persisted.
        ledger.unknown(1, unavailable());
        // The re-created producer was refused: never handed over.
        for i in 2..5 {
            ledger.not_persisted(i, unauthenticated());
        }
        // Refused for its size: resending cannot help.
        ledger.not_persisted(5, rejected());
        assert!(ledger.credentials_failed());
        assert_eq!(ledger.to_send(), [2, 3, 4]);

        // The retry with a fresh token persists them.
        for i in 2..5 {
            ledger.persisted(i, id(i as u64));
        }
        assert!(!ledger.credentials_failed());
        assert!(ledger.to_send().is_empty());
        let failure = ledger.finish().unwrap_err();
        // The first failed line decides: the lost receipt.
        assert!(matches!(
            failure.error,
            SendError::Broker(BrokerError::Unavailable(_))
        ));
        assert!(matches!(failure.deliveries[1], Delivery::Unknown(_)));
        assert!(matches!(failure.deliveries[4], Delivery::Persisted(_)));
        assert!(matches!(failure.deliveries[5], Delivery::NotPersisted(_)));
    }

    #[test]
    fn a_timeout_decides_the_answer_over_an_earlier_refusal() {
        let mut ledger = Ledger::new(4);
        ledger.persisted(0, id(0));
        ledger.not_persisted(1, rejected());
        ledger.unknown(2, timeout());
        ledger.not_persisted(3, timeout());
        assert!(ledger.timed_out());
        let failure = ledger.finish().unwrap_err();
        assert!(failure.error.is_timeout());
    }

    #[test]
    fn an_unrecorded_line_was_never_sent() {
        let mut ledger = Ledger::new(2);
        ledger.persisted(0, id(0));
        let failure = ledger.finish().unwrap_err();
        assert!(matches!(
            &failure.deliveries[1],
            Delivery::NotPersisted(e) if e.is_timeout()
        ));
    }
}
