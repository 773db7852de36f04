use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const MAX_AGE: Duration = Duration::from_secs(900);

fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_677_300) // 2026-11-26T07:15:00Z
}

#[test]
fn a_refusal_is_remembered_for_its_window_and_bounded() {
    let cache = Cache::new(2);
    let now = signed_at();
    let key = |i: u8| [i; 32];
    let until = now + REFUSAL_TTL;
    cache.refuse(key(1), "SignatureDoesNotMatch", until, now);
    assert_eq!(
        cache.refused(&key(1), until - Duration::from_secs(1)),
        Some("SignatureDoesNotMatch".to_owned())
    );
    assert_eq!(cache.refused(&key(1), until), None, "the window ends");
    assert_eq!(cache.refused(&key(2), now), None);
    // Full of live refusals: a new one is not remembered...
    cache.refuse(key(2), "ExpiredToken", until, now);
    cache.refuse(key(3), "InvalidClientTokenId", until, now);
    assert_eq!(cache.refused(&key(3), now), None);
    // ... until the old ones have expired and make room.
    cache.refuse(key(3), "InvalidClientTokenId", until + REFUSAL_TTL, until);
    assert_eq!(
        cache.refused(&key(3), until),
        Some("InvalidClientTokenId".to_owned())
    );
    assert_eq!(cache.lock().refused.len(), 1);
}

#[test]
fn the_cache_is_bounded_evicting_expired_then_oldest() {
    let cache = Cache::new(3);
    let now = signed_at();
    let key = |i: u8| [i; 32];
    let live = now + MAX_AGE;
    cache.slot(key(1), live, now);
    cache.slot(key(2), now + Duration::from_secs(1), now);
    cache.slot(key(3), live, now);
    // Key 2 expired by then: it goes first.
    let later = now + Duration::from_secs(2);
    cache.slot(key(4), live, later);
    assert_eq!(cache.len(), 3);
    assert!(cache.lock().by_key.contains_key(&key(1)));
    assert!(!cache.lock().by_key.contains_key(&key(2)));
    // Nothing expired: the oldest (1) goes.
    cache.slot(key(5), live, later);
    assert_eq!(cache.len(), 3);
    assert!(!cache.lock().by_key.contains_key(&key(1)));
    // A failed verification's slot is forgotten; a live one is kept.
    let s = cache.slot(key(6), live, later);
    cache.forget(&key(6), &s);
    assert!(!cache.lock().by_key.contains_key(&key(6)));
    assert_eq!(cache.len(), 2);
}
