//! Tokens already verified: a bounded cache from the SHA-256 of a whole
//! bearer token to the [`Identity`] its verification produced, so a caller
//! presenting the same token again costs a hash and a lookup instead of a
//! signature check (~100 µs for RS256 on a cold CPU cache).
//!
//! This module owns the store and its bounds; the verifier owns the rules
//! for when an entry may be served, because they need the issuers' current
//! keys (see `OidcVerifier::cached`). What the store itself guarantees:
//!
//! * only what the verifier inserts is here, and it inserts only successes
//!   (failures are never remembered, so an invalid token always gets the
//!   full verification and its own error);
//! * an entry is never returned at or past the token's `exp`, whatever the
//!   leeway: after `exp`, full verification decides;
//! * the token itself is never kept or logged: the key is its digest;
//! * memory is bounded by an entry count and by the summed length of the
//!   tokens (a proxy for the size of their claims: a flood of distinct valid
//!   16 KiB tokens evicts earlier than one of small tokens). The oldest
//!   insertion is evicted first, which costs O(1) and needs no clock.
//!
//! One `std` mutex guards the map; it is only held for a lookup, an insert or
//! a removal, never across an `.await`, so concurrent invocations sharing the
//! verifier contend for well under a microsecond.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use jsonwebtoken::Algorithm;
use sha2::{Digest as _, Sha256};

use super::jws::VerifyingKey;
use crate::identity::Identity;

/// SHA-256 of a whole token: what the cache is keyed by.
pub(super) type TokenDigest = [u8; 32];

pub(super) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What one successful verification produced, and what decides whether it
/// may be served again.
pub(super) struct Verified {
    /// The caller; `identity.issuer` is the configured issuer that verified it.
    pub(super) identity: Identity,
    /// The token's `exp`: never served at or after it.
    pub(super) exp: f64,
    /// The header `kid` and the pinned algorithm the key was selected with,
    /// so a hit can ask the issuer's current key set the same question.
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    /// The key that verified the signature. Weak, so a key rotated out of
    /// the JWKS is not kept alive by the cache; and while this is held the
    /// allocation cannot be reused, so comparing addresses is sound.
    pub(super) key: Weak<VerifyingKey>,
    /// Bytes charged against the budget (the token's length).
    pub(super) weight: usize,
}

impl Verified {
    pub(super) fn issuer(&self) -> &str {
        &self.identity.issuer
    }
}

/// The cache. Zero entries turns it off.
pub(super) struct VerifiedTokens {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<TokenDigest, Slot>,
    /// Insertion order. Removals leave their item behind (skipped when
    /// popped, thanks to `seq`); it is bounded by `max_entries` all the same.
    order: VecDeque<(TokenDigest, u64)>,
    bytes: usize,
    next_seq: u64,
}

struct Slot {
    seq: u64,
    entry: Arc<Verified>,
}

impl VerifiedTokens {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
    }

    /// The entry for `digest` if `now` is strictly before its `exp`; an
    /// expired entry is dropped. The caller still has to check the key.
    pub(super) fn get(&self, digest: &TokenDigest, now: f64) -> Option<Arc<Verified>> {
        let mut inner = self.lock();
        let slot = inner.map.get(digest)?;
        if now < slot.entry.exp {
            return Some(slot.entry.clone());
        }
        inner.remove(digest);
        None
    }

    /// Counts a hit the verifier served (for [`super::OidcVerifier::cache_hits`]).
    pub(super) fn served(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Drops `entry` if it is still the one stored for `digest` (a
    /// concurrent caller may just have stored a fresher one).
    pub(super) fn forget(&self, digest: &TokenDigest, entry: &Arc<Verified>) {
        let mut inner = self.lock();
        if inner
            .map
            .get(digest)
            .is_some_and(|slot| Arc::ptr_eq(&slot.entry, entry))
        {
            inner.remove(digest);
        }
    }

    /// Stores a verification result, evicting the oldest entries to stay
    /// within both bounds.
    pub(super) fn insert(&self, digest: TokenDigest, entry: Verified) {
        if !self.enabled() || entry.weight > self.max_bytes {
            return;
        }
        let weight = entry.weight;
        let mut inner = self.lock();
        // Replacing (two concurrent misses of one token) frees the old slot
        // first so its bytes are not counted twice.
        inner.remove(&digest);
        while !inner.order.is_empty()
            && (inner.order.len() >= self.max_entries || inner.bytes + weight > self.max_bytes)
        {
            if let Some((oldest, seq)) = inner.order.pop_front()
                && inner.map.get(&oldest).is_some_and(|slot| slot.seq == seq)
            {
                inner.remove(&oldest);
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((digest, seq));
        inner.bytes += weight;
        inner.map.insert(
            digest,
            Slot {
                seq,
                entry: Arc::new(entry),
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[cfg(test)]
    fn footprint(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.order.len(), inner.bytes)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the map, the order and the byte
        // count consistent before anything that could panic, so a poisoned
        // lock holds nothing half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn remove(&mut self, digest: &TokenDigest) {
        if let Some(slot) = self.map.remove(digest) {
            self.bytes -= slot.entry.weight;
        }
    }
}

#[cfg(test)]
mod tests;
