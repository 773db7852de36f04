//! Which partition of a partitioned topic a message goes to.
//!
//! Decided here, not inside pulsar-rs, for two reasons:
//! - The message id a caller gets back must name the partition: to the
//!   broker each partition is a topic of its own, so its send receipt says
//!   partition `-1`, and only the producer knows where the message went.
//!   Without it, a cursor (`after=<messageId>`) could not say which
//!   partition it points into.
//! - Keyed messages must land where the official clients would put them, so
//!   a key's events stay in one partition (in order) whoever produces them:
//!   the Java, C++ and Python clients' `Murmur3_32Hash` scheme, i.e.
//!   `(murmur3_32(utf8 key, seed 0) & i32::MAX) % partitions`. pulsar-rs's
//!   default routing ignores keys, and its key hash keeps the sign bit (the
//!   same partition only when the count is a power of two).
//!
//! Messages without a key go round robin, one partition after the other.

/// A partitioned topic's routing state (one per producer).
#[derive(Debug)]
pub(super) struct Router {
    partitions: u32,
    next: u32,
}

impl Router {
    pub(super) fn new(partitions: u32) -> Self {
        Self {
            partitions: partitions.max(1),
            next: 0,
        }
    }

    /// The partition for a message with `key` (or none).
    pub(super) fn route(&mut self, key: Option<&str>) -> u32 {
        match key {
            Some(key) => partition_for_key(key, self.partitions),
            None => {
                let chosen = self.next;
                self.next = (self.next + 1) % self.partitions;
                chosen
            }
        }
    }
}

/// The partition the official clients' `Murmur3_32Hash` scheme picks for
/// `key` among `partitions`.
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    // Reading from a byte slice cannot fail.
    let hash = murmur3::murmur3_32(&mut key.as_bytes(), 0).unwrap_or(0);
    (hash & i32::MAX as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_as_the_official_clients_murmur3_scheme() {
        // Java: `Murmur3_32Hash.getInstance().makeHash(key) % n`; the values
        // are Guava's murmur3_32 of the UTF-8 bytes with the sign bit cleared.
        for (key, partitions, expected) in [
            ("", 4, 0),
            ("hello", 7, (0x248b_fa47_u32 & 0x7fff_ffff) % 7),
            ("hello", 4, 0x248b_fa47_u32 % 4),
            ("order-1001", 1, 0),
        ] {
            assert_eq!(
                partition_for_key(key, partitions),
                expected,
                "{key:?} of {partitions}"
            );
        }
    }

    #[test]
    fn a_key_always_lands_in_the_same_partition_and_keyless_messages_take_turns() {
        let mut router = Router::new(4);
        let first = router.route(Some("customer-7"));
        for _ in 0..10 {
            assert_eq!(router.route(Some("customer-7")), first);
        }
        let turns: Vec<u32> = (0..8).map(|_| router.route(None)).collect();
        assert_eq!(turns, [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn the_sign_bit_is_cleared_before_the_modulo() {
        // A key whose murmur3 hash has the top bit set: with 3 partitions the
        // raw and the cleared hash pick different partitions, and the official
        // clients pick the cleared one.
        let key = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| murmur3::murmur3_32(&mut k.as_bytes(), 0).unwrap() & 0x8000_0000 != 0)
            .expect("some key hashes with the top bit set");
        let raw = murmur3::murmur3_32(&mut key.as_bytes(), 0).unwrap();
        assert_eq!(partition_for_key(&key, 3), (raw & 0x7fff_ffff) % 3);
    }
}
