//! The per-instance idempotency record: a retry with the same
//! `Idempotency-Key` from the same caller, arriving at the same warm
//! instance, gets the first response back instead of publishing again.
//!
//! The caller is the whole verified identity — auth method, issuer and
//! principal — since a principal alone is only unique within its issuer (two
//! IdPs may both have a subject `alice`). The stored request fingerprint
//! covers everything that shapes the message, so the same key with another
//! key, time or property is refused rather than answered with a response
//! that does not describe it.
//!
//! Concurrent invocations (multi-concurrency) share the cache. A retry that
//! arrives while the first attempt is still publishing waits for it, on that
//! key alone, and is then answered with its response (or, if it failed,
//! tries itself): two attempts under one key never publish side by side.
//!
//! What this does *not* cover, honestly: retries that land on another
//! instance (or after this one is recycled, or after `ttl`). Those publish
//! again, with the same derived `kp-event-id`, so consumers can drop them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::edge::kong::ProxyResponse;

/// Auth method, issuer, principal — then the `Idempotency-Key`.
type Key = ([String; 3], String);

/// Who a key belongs to: `[auth method, issuer, principal]`.
pub(super) type Caller<'a> = [&'a str; 3];

/// A key's response once an attempt completed; locked by the attempt that
/// holds the key.
type Outcome = Arc<Mutex<Option<ProxyResponse>>>;

struct Entry {
    at: Instant,
    fingerprint: [u8; 32],
    outcome: Outcome,
}

/// Bounded map of recent idempotency keys to their responses.
pub(super) struct IdempotencyCache {
    capacity: usize,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// What the cache says about a request.
pub(super) enum Replay {
    /// Seen before with the same request: send this response again.
    Stored(ProxyResponse),
    /// Seen before with a different request under the same key.
    Mismatch,
    /// New (or the earlier attempt failed): go ahead and publish.
    Claimed(Claim),
}

/// The right to publish under a key; record the response with `complete`.
/// Dropping it without completing releases the key for a later retry.
pub(super) struct Claim {
    outcome: OwnedMutexGuard<Option<ProxyResponse>>,
}

impl Claim {
    pub(super) async fn complete(mut self, response: ProxyResponse) {
        *self.outcome = Some(response);
    }
}

impl IdempotencyCache {
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn claim(
        &self,
        caller: Caller<'_>,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Replay {
        let outcome = {
            let mut entries = self.entries.lock().await;
            let id = (caller.map(str::to_owned), key.to_owned());
            match entries.get(&id) {
                Some(entry) if entry.at.elapsed() < self.ttl => {
                    if entry.fingerprint != fingerprint {
                        return Replay::Mismatch;
                    }
                    entry.outcome.clone()
                }
                _ => {
                    self.make_room(&mut entries);
                    let outcome = Outcome::default();
                    entries.insert(
                        id,
                        Entry {
                            at: Instant::now(),
                            fingerprint,
                            outcome: outcome.clone(),
                        },
                    );
                    outcome
                }
            }
        };
        // Waits (without the map lock) for an attempt under this key that is
        // still publishing; the caller's budget bounds the wait.
        let outcome = outcome.lock_owned().await;
        match &*outcome {
            Some(response) => Replay::Stored(response.clone()),
            // New, or an attempt that never completed (it failed): try.
            None => Replay::Claimed(Claim { outcome }),
        }
    }

    fn make_room(&self, entries: &mut HashMap<Key, Entry>) {
        if entries.len() < self.capacity {
            return;
        }
        let ttl = self.ttl;
        entries.retain(|_, e| e.at.elapsed() < ttl);
        if entries.len() >= self.capacity
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
