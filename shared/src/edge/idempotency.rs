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
//! What this does *not* cover, honestly: retries that land on another
//! instance (or after this one is recycled, or after `ttl`). Those publish
//! again, with the same derived `kp-event-id`, so consumers can drop them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell};

use crate::edge::kong::ProxyResponse;

/// Auth method, issuer, principal — then the `Idempotency-Key`.
type Key = ([String; 3], String);

/// Who a key belongs to: `[auth method, issuer, principal]`.
pub(super) type Caller<'a> = [&'a str; 3];

struct Entry {
    at: Instant,
    fingerprint: [u8; 32],
    response: Arc<OnceCell<ProxyResponse>>,
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
    cell: Arc<OnceCell<ProxyResponse>>,
}

impl Claim {
    pub(super) async fn complete(self, response: ProxyResponse) {
        let _ = self.cell.set(response);
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
        let mut entries = self.entries.lock().await;
        let id = (caller.map(str::to_owned), key.to_owned());
        if let Some(entry) = entries.get(&id)
            && entry.at.elapsed() < self.ttl
        {
            if entry.fingerprint != fingerprint {
                return Replay::Mismatch;
            }
            if let Some(response) = entry.response.get() {
                return Replay::Stored(response.clone());
            }
            // An attempt that never completed (it failed): let this one try.
        }
        if entries.len() >= self.capacity {
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
        let cell = Arc::new(OnceCell::new());
        entries.insert(
            id,
            Entry {
                at: Instant::now(),
                fingerprint,
                response: cell.clone(),
            },
        );
        Replay::Claimed(Claim { cell })
    }
}

#[cfg(test)]
mod tests;
