use super::*;

const ALICE: Caller = ["oidc", "https://idp.example.com", "alice"];
const BOB: Caller = ["oidc", "https://idp.example.com", "bob"];

fn ok() -> ProxyResponse {
    ProxyResponse::json(202, &serde_json::json!({"messageId": "1:2:-1:-1"}))
}

#[tokio::test]
async fn a_completed_key_replays_and_a_changed_request_is_refused() {
    let cache = IdempotencyCache::new(10, Duration::from_secs(60));
    let Replay::Claimed(claim) = cache.claim(ALICE, "k", [1; 32]).await else {
        panic!("new key")
    };
    claim.complete(ok()).await;
    assert!(matches!(cache.claim(ALICE, "k", [1; 32]).await, Replay::Stored(r) if r == ok()));
    assert!(matches!(
        cache.claim(ALICE, "k", [2; 32]).await,
        Replay::Mismatch
    ));
    // Keys are per principal.
    assert!(matches!(
        cache.claim(BOB, "k", [1; 32]).await,
        Replay::Claimed(_)
    ));
}

#[tokio::test]
async fn a_failed_attempt_releases_the_key() {
    let cache = IdempotencyCache::new(10, Duration::from_secs(60));
    let Replay::Claimed(claim) = cache.claim(ALICE, "k", [1; 32]).await else {
        panic!()
    };
    drop(claim);
    assert!(matches!(
        cache.claim(ALICE, "k", [1; 32]).await,
        Replay::Claimed(_)
    ));
}

#[tokio::test]
async fn the_cache_stays_bounded() {
    let cache = IdempotencyCache::new(3, Duration::from_secs(60));
    for i in 0..10 {
        let _ = cache.claim(ALICE, &format!("k{i}"), [0; 32]).await;
    }
    assert!(cache.entries.lock().await.len() <= 3);
}

#[tokio::test]
async fn the_same_principal_name_under_another_issuer_or_method_does_not_replay() {
    let cache = IdempotencyCache::new(10, Duration::from_secs(60));
    let Replay::Claimed(claim) = cache.claim(ALICE, "k", [1; 32]).await else {
        panic!("new key")
    };
    claim.complete(ok()).await;
    for other in [
        ["oidc", "https://other-idp.example.com", "alice"],
        ["kong", "kong", "alice"],
        ["aws-iam", "https://idp.example.com", "alice"],
    ] {
        assert!(
            matches!(cache.claim(other, "k", [1; 32]).await, Replay::Claimed(_)),
            "{other:?} got alice's response"
        );
    }
}

#[tokio::test]
async fn a_retry_during_the_first_attempt_waits_for_its_response() {
    let cache = Arc::new(IdempotencyCache::new(10, Duration::from_secs(60)));
    let Replay::Claimed(first) = cache.claim(ALICE, "k", [1; 32]).await else {
        panic!("new key")
    };
    let retry = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.claim(ALICE, "k", [1; 32]).await })
    };
    // Other keys are not held up meanwhile; a changed request is refused at once.
    assert!(matches!(
        cache.claim(BOB, "k", [1; 32]).await,
        Replay::Claimed(_)
    ));
    assert!(matches!(
        cache.claim(ALICE, "k", [2; 32]).await,
        Replay::Mismatch
    ));
    tokio::task::yield_now().await;
    assert!(!retry.is_finished(), "the retry must not publish alongside");
    first.complete(ok()).await;
    assert!(matches!(retry.await.unwrap(), Replay::Stored(r) if r == ok()));
}

#[tokio::test]
async fn a_retry_waiting_on_a_failed_attempt_gets_the_key() {
    let cache = Arc::new(IdempotencyCache::new(10, Duration::from_secs(60)));
    let Replay::Claimed(first) = cache.claim(ALICE, "k", [1; 32]).await else {
        panic!("new key")
    };
    let retry = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.claim(ALICE, "k", [1; 32]).await })
    };
    tokio::task::yield_now().await;
    drop(first);
    assert!(matches!(retry.await.unwrap(), Replay::Claimed(_)));
}
