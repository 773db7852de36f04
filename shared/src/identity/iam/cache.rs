//! Verified identities and refused credentials, keyed by the credential's
//! SHA-256, so that a warm function calls STS once per distinct credential
//! and a client retrying with bad keys once per refusal window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::identity::Identity;

/// Most identities the cache holds.
pub const CACHE_CAPACITY: usize = 10_000;

/// How long a credential STS refused is refused again without asking STS
/// (bounded by the credential's own expiry).
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// Verified identities by SHA-256 of the credential. Each slot is a
/// once-cell so concurrent first uses of one credential wait for one STS call.
pub(super) struct Cache {
    slots: Mutex<CacheState>,
    capacity: usize,
}

struct CacheState {
    by_key: HashMap<[u8; 32], Arc<Slot>>,
    next_seq: u64,
    /// Credentials STS refused: its error code, and until when.
    refused: HashMap<[u8; 32], (String, SystemTime)>,
}

pub(super) struct Slot {
    pub(super) identity: tokio::sync::OnceCell<Identity>,
    expires_at: SystemTime,
    /// Insertion order, to evict the oldest when nothing has expired.
    seq: u64,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(CacheState {
                by_key: HashMap::new(),
                next_seq: 0,
                refused: HashMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The lock is never held across a panic point that could leave the
        // map half-updated, so poisoning is safe to ignore.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A verified identity for `key` that is still valid at `now`.
    pub(super) fn fresh(&self, key: &[u8; 32], now: SystemTime) -> Option<Identity> {
        let state = self.lock();
        let slot = state.by_key.get(key)?;
        if slot.expires_at <= now {
            return None;
        }
        slot.identity.get().cloned()
    }

    /// The slot to verify `key` in: the live one (possibly being verified by
    /// someone else right now) or a new one.
    pub(super) fn slot(&self, key: [u8; 32], expires_at: SystemTime, now: SystemTime) -> Arc<Slot> {
        let mut state = self.lock();
        if let Some(slot) = state.by_key.get(&key)
            && slot.expires_at > now
        {
            return slot.clone();
        }
        if state.by_key.len() >= self.capacity && !state.by_key.contains_key(&key) {
            state.by_key.retain(|_, slot| slot.expires_at > now);
            if state.by_key.len() >= self.capacity
                && let Some(oldest) = state
                    .by_key
                    .iter()
                    .min_by_key(|(_, slot)| slot.seq)
                    .map(|(key, _)| *key)
            {
                state.by_key.remove(&oldest);
            }
        }
        state.next_seq += 1;
        let slot = Arc::new(Slot {
            identity: tokio::sync::OnceCell::new(),
            expires_at,
            seq: state.next_seq,
        });
        state.by_key.insert(key, slot.clone());
        slot
    }

    /// STS's code if it refused the credential `key` and that still stands
    /// at `now`.
    pub(super) fn refused(&self, key: &[u8; 32], now: SystemTime) -> Option<String> {
        let state = self.lock();
        let (code, until) = state.refused.get(key)?;
        (*until > now).then(|| code.clone())
    }

    /// Remembers that STS refused `key`, until `until`. Bounded like the
    /// identities: expired refusals go first, and when every entry is live
    /// the new one is simply not remembered (it costs an STS call, no more).
    pub(super) fn refuse(&self, key: [u8; 32], code: &str, until: SystemTime, now: SystemTime) {
        let mut state = self.lock();
        if state.refused.len() >= self.capacity {
            state.refused.retain(|_, (_, until)| *until > now);
            if state.refused.len() >= self.capacity {
                return;
            }
        }
        state.refused.insert(key, (code.to_owned(), until));
    }

    /// Drops a slot whose verification failed, unless someone has since
    /// replaced it or filled it.
    pub(super) fn forget(&self, key: &[u8; 32], slot: &Arc<Slot>) {
        let mut state = self.lock();
        if state
            .by_key
            .get(key)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && s.identity.get().is_none())
        {
            state.by_key.remove(key);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().by_key.len()
    }
}

#[cfg(test)]
mod tests;
