//! How many partitions each topic has, remembered for a short while, so a
//! warm instance does not ask the broker before every read and every
//! acknowledgement (a lookup round trip each).
//!
//! Safe to remember because a count only ever grows (Pulsar cannot remove
//! partitions) and a stale one is caught or bounded: a cursor that names a
//! partition past the remembered count makes the reader ask again before it
//! refuses the cursor, and otherwise partitions added (or a topic deleted
//! and created again as the other kind) are seen [`TTL`] later at the
//! latest. Nothing is authorized by it: every read still opens its readers
//! with the tenant's own token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count is trusted.
pub const TTL: Duration = Duration::from_secs(30);

/// At most this many topics are remembered: past it, the expired ones are
/// dropped, and if none has expired, all of them (a burst of distinct topics
/// costs lookups, never memory).
const MAX_TOPICS: usize = 1024;

#[derive(Default)]
pub(super) struct PartitionCounts {
    seen: Mutex<HashMap<String, (u32, Instant)>>,
}

impl PartitionCounts {
    /// The remembered count of `topic`, if younger than [`TTL`].
    pub(super) fn get(&self, topic: &str) -> Option<u32> {
        let seen = self.seen.lock().expect("partition counts lock");
        seen.get(topic)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(count, _)| *count)
    }

    pub(super) fn remember(&self, topic: &str, count: u32) {
        let mut seen = self.seen.lock().expect("partition counts lock");
        if seen.len() >= MAX_TOPICS && !seen.contains_key(topic) {
            seen.retain(|_, (_, at)| at.elapsed() < TTL);
            if seen.len() >= MAX_TOPICS {
                seen.clear();
            }
        }
        seen.insert(topic.to_owned(), (count, Instant::now()));
    }

    pub(super) fn forget(&self, topic: &str) {
        self.seen
            .lock()
            .expect("partition counts lock")
            .remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten() {
        let counts = PartitionCounts::default();
        assert_eq!(counts.get("persistent://t/ns/a"), None);
        counts.remember("persistent://t/ns/a", 4);
        counts.remember("persistent://t/ns/b", 0);
        assert_eq!(counts.get("persistent://t/ns/a"), Some(4));
        assert_eq!(counts.get("persistent://t/ns/b"), Some(0));
        counts.forget("persistent://t/ns/a");
        assert_eq!(counts.get("persistent://t/ns/a"), None);
        assert_eq!(counts.get("persistent://t/ns/b"), Some(0));
    }

    #[test]
    fn an_expired_count_is_not_served() {
        let counts = PartitionCounts::default();
        counts.remember("persistent://t/ns/a", 4);
        let old = Instant::now() - TTL - Duration::from_millis(1);
        counts
            .seen
            .lock()
            .unwrap()
            .get_mut("persistent://t/ns/a")
            .unwrap()
            .1 = old;
        assert_eq!(counts.get("persistent://t/ns/a"), None);
    }

    #[test]
    fn stays_bounded_under_many_topics() {
        let counts = PartitionCounts::default();
        for i in 0..MAX_TOPICS * 3 {
            counts.remember(&format!("persistent://t/ns/{i}"), 1);
            assert!(counts.seen.lock().unwrap().len() <= MAX_TOPICS);
        }
        let last = format!("persistent://t/ns/{}", MAX_TOPICS * 3 - 1);
        assert_eq!(counts.get(&last), Some(1));
    }
}
