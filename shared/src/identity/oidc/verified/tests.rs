//! The store on its own (an injected clock: `now` is a parameter), then the
//! verifier's serving rules with real ES256 signatures and key sets stored
//! directly, so nothing here needs an identity provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::super::keys::KeySet;
use super::super::{IssuerConfig, OidcError, OidcVerifier, VerifierOptions, unix_now};
use super::*;
use crate::identity::AuthMethod;

const ISS: &str = "https://idp.example.com";
const AUD: &str = "kong-pulsar";

fn identity(principal: &str) -> Identity {
    Identity {
        principal: principal.to_owned(),
        service: None,
        groups: vec!["checkout".to_owned()],
        method: AuthMethod::Oidc,
        issuer: ISS.to_owned(),
        iam_arn: None,
        kong_consumer: None,
        claims: serde_json::Map::new(),
    }
}

fn entry(principal: &str, exp: f64, weight: usize) -> Verified {
    Verified {
        identity: identity(principal),
        exp,
        kid: Some("k1".to_owned()),
        alg: Algorithm::ES256,
        key: Weak::new(),
        weight,
    }
}

#[test]
fn a_hit_returns_what_was_stored_and_another_token_misses() {
    let cache = VerifiedTokens::new(10, 1 << 20);
    let (a, b) = (digest("token-a"), digest("token-b"));
    cache.insert(a, entry("alice", 1000.0, 7));
    assert_eq!(cache.get(&a, 999.0).unwrap().identity, identity("alice"));
    assert!(cache.get(&b, 999.0).is_none());
    assert_ne!(
        digest("token-a"),
        digest("token-a "),
        "the whole token is hashed"
    );
}

#[test]
fn an_entry_is_never_served_at_or_after_exp() {
    let cache = VerifiedTokens::new(10, 1 << 20);
    let d = digest("t");
    for (now, served) in [(999.999, true), (1000.0, false), (1000.001, false)] {
        cache.insert(d, entry("alice", 1000.0, 1));
        assert_eq!(cache.get(&d, now).is_some(), served, "now = {now}");
    }
    assert_eq!(cache.len(), 0, "the expired entry was dropped");
}

#[test]
fn both_bounds_evict_the_oldest_first() {
    let cache = VerifiedTokens::new(100, 1 << 20);
    for i in 0..250 {
        cache.insert(digest(&format!("t{i}")), entry("x", 1e12, 10));
    }
    assert_eq!(cache.footprint(), (100, 100, 1000));
    assert!(cache.get(&digest("t149"), 0.0).is_none());
    assert!(cache.get(&digest("t150"), 0.0).is_some());
    assert!(cache.get(&digest("t249"), 0.0).is_some());

    let cache = VerifiedTokens::new(100, 1000);
    for i in 0..30 {
        cache.insert(digest(&format!("t{i}")), entry("x", 1e12, 300));
    }
    let (entries, _, bytes) = cache.footprint();
    assert_eq!((entries, bytes), (3, 900));
    assert!(cache.get(&digest("t29"), 0.0).is_some());
    cache.insert(digest("huge"), entry("x", 1e12, 1001));
    assert!(
        cache.get(&digest("huge"), 0.0).is_none(),
        "larger than the budget"
    );
}

#[test]
fn removals_and_replacements_keep_the_bookkeeping_bounded() {
    let cache = VerifiedTokens::new(8, 1 << 20);
    for i in 0..1000 {
        let d = digest(&format!("t{i}"));
        cache.insert(d, entry("x", 10.0, 5));
        cache.insert(d, entry("x", 10.0, 5));
        assert!(cache.get(&d, 11.0).is_none());
    }
    let (entries, order, bytes) = cache.footprint();
    assert_eq!((entries, bytes), (0, 0));
    assert!(order <= 8, "{order} order items for an empty map");

    // A stale `forget` does not drop a fresher entry for the same token.
    let d = digest("t");
    cache.insert(d, entry("old", 1e12, 1));
    let old = cache.get(&d, 0.0).unwrap();
    cache.insert(d, entry("new", 1e12, 1));
    cache.forget(&d, &old);
    assert_eq!(cache.get(&d, 0.0).unwrap().identity.principal, "new");
}

#[test]
fn a_disabled_cache_stores_nothing() {
    let cache = VerifiedTokens::new(0, 1 << 20);
    assert!(!cache.enabled());
    cache.insert(digest("t"), entry("x", 1e12, 1));
    assert_eq!(cache.len(), 0);
}

// ---------------------------------------------------------------------------
// The verifier's rules, with real signatures

struct Signer {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn signer(kid: &str) -> Signer {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pkcs8 = pair.to_pkcs8v1().unwrap();
    let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
    Signer {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }),
    }
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims(subject: &str) -> Value {
    let now = unix_now().floor();
    json!({ "iss": ISS, "aud": AUD, "sub": subject, "iat": now, "exp": now + 300.0 })
}

/// A verifier for [`ISS`] (ES256) whose JWKS holds `keys`, stored as if just
/// fetched. Its `jwks_uri` is a closed loopback port, so a test that makes it
/// fetch gets `KeysUnavailable` at once instead of reaching the internet.
fn verifier(keys: &[&Signer], options: VerifierOptions) -> OidcVerifier {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = IssuerConfig::new(ISS, [AUD]);
    config.algorithms = vec![Algorithm::ES256];
    config.jwks_uri = Some(format!("http://{closed}/jwks").parse().unwrap());
    let v = OidcVerifier::new(vec![config], reqwest::Client::new(), options);
    publish(&v, keys, Instant::now());
    v
}

fn publish(v: &OidcVerifier, keys: &[&Signer], fetched_at: Instant) {
    let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    let set = KeySet::from_jwks(
        &serde_json::to_vec(&jwks).unwrap(),
        &[Algorithm::ES256],
        fetched_at,
    )
    .unwrap();
    v.issuers[ISS].store(Arc::new(set));
}

#[tokio::test]
async fn a_verified_token_is_served_again_with_the_same_identity() {
    let key = signer("k1");
    let v = verifier(&[&key], VerifierOptions::default());
    let token = key.sign(&claims("alice"));
    let first = v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 0);
    assert_eq!(v.verify(&token).await.unwrap(), first);
    assert_eq!(v.cache_hits(), 1);

    let other = key.sign(&claims("bob"));
    assert_eq!(v.verify(&other).await.unwrap().principal, "bob");
    assert_eq!(v.cache_hits(), 1, "another token is its own entry");
    assert_eq!(v.verified.len(), 2);
    assert_eq!(v.fetch_count(), 0);
}

#[tokio::test]
async fn failures_are_never_cached_and_a_near_miss_is_not_a_hit() {
    let key = signer("k1");
    let v = verifier(&[&key], VerifierOptions::default());
    let good = key.sign(&claims("alice"));
    v.verify(&good).await.unwrap();

    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    // The cached token's header and payload with another signature.
    let (signed, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
    let impostor = signer("k1").sign(&claims("alice"));
    for (token, why) in [
        (key.sign(&wrong_aud), "wrong audience"),
        (key.sign(&no_sub), "no subject"),
        (forged, "the cached token's claims, another signature"),
        (impostor, "same kid, another key"),
        (format!("{good}x"), "the cached token with a byte more"),
    ] {
        for _ in 0..2 {
            assert!(v.verify(&token).await.is_err(), "{why}");
        }
    }
    assert_eq!(v.cache_hits(), 0);
    assert_eq!(v.verified.len(), 1, "only the good token is stored");
}

#[tokio::test]
async fn tokens_accepted_only_by_the_leeway_are_not_cached() {
    let key = signer("k1");
    let v = verifier(&[&key], VerifierOptions::default());
    let now = unix_now().floor();
    let mut late = claims("late");
    late["exp"] = json!(now - 5.0);
    let mut early = claims("early");
    early["nbf"] = json!(now + 10.0);
    let mut started = claims("started");
    started["nbf"] = json!(now - 10.0);
    for (claims, cached) in [(late, false), (early, false), (started, true)] {
        let token = key.sign(&claims);
        v.verify(&token).await.unwrap();
        v.verify(&token).await.unwrap();
        let hit = v.verified.get(&digest(&token), unix_now()).is_some();
        assert_eq!(hit, cached, "{claims}");
    }
    assert_eq!(v.cache_hits(), 1);
}

#[tokio::test]
async fn a_token_past_exp_gets_the_full_verification() {
    let key = signer("k1");
    let v = verifier(
        &[&key],
        VerifierOptions {
            leeway: Duration::ZERO,
            ..VerifierOptions::default()
        },
    );
    let mut short = claims("brief");
    short["exp"] = json!(unix_now() + 0.3);
    let token = key.sign(&short);
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(v.verify(&token).await, Err(OidcError::Expired)));
    assert_eq!(v.cache_hits(), 1);
    assert_eq!(v.verified.len(), 0);
}

#[tokio::test]
async fn an_entry_whose_key_left_the_key_set_is_not_served() {
    let (old, new) = (signer("old"), signer("new"));
    let v = verifier(&[&old, &new], VerifierOptions::default());
    let token = old.sign(&claims("alice"));
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 1);

    // The JWKS is refetched and still lists the key: verified again once,
    // then served from the cache again.
    publish(&v, &[&old, &new], Instant::now());
    v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 1);
    v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 2);

    // The JWKS is refetched without it: the token stops working.
    publish(&v, &[&new], Instant::now());
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(
            err,
            OidcError::UnknownKey { .. } | OidcError::KeysUnavailable { .. }
        ),
        "{err:?}"
    );
    assert_eq!(v.cache_hits(), 2);
    assert_eq!(v.verified.len(), 0);

    // Same kid, other material: the cached entry does not carry over.
    let token = new.sign(&claims("bob"));
    v.verify(&token).await.unwrap();
    publish(&v, &[&signer("new")], Instant::now());
    assert!(matches!(
        v.verify(&token).await,
        Err(OidcError::InvalidSignature)
    ));
    assert_eq!(v.cache_hits(), 2);
}

#[tokio::test]
async fn an_expired_key_set_is_not_trusted_by_a_hit() {
    let key = signer("k1");
    let ttl = Duration::from_secs(60);
    let v = verifier(
        &[&key],
        VerifierOptions {
            jwks_ttl: ttl,
            ..VerifierOptions::default()
        },
    );
    let token = key.sign(&claims("alice"));
    v.verify(&token).await.unwrap();
    let entry = v.verified.get(&digest(&token), unix_now()).unwrap();
    let issuer = &v.issuers[ISS];
    assert!(issuer.still_selects(entry.kid.as_deref(), entry.alg, &entry.key, ttl));

    // The same set, as if fetched longer than the TTL ago: a hit must go
    // through `key_for`, which refreshes it (here: fails to, and serves the
    // stale key, still within twice the TTL).
    let Some(stale) = Instant::now().checked_sub(ttl + Duration::from_secs(1)) else {
        return; // a machine up for less than a minute
    };
    publish(&v, &[&key], stale);
    let entry = v.verified.get(&digest(&token), unix_now()).unwrap();
    assert!(!issuer.still_selects(entry.kid.as_deref(), entry.alg, &entry.key, ttl));
    v.verify(&token).await.unwrap();
    assert_eq!(v.cache_hits(), 0);
    assert_eq!(v.fetch_count(), 1, "the refresh was attempted");
}

#[tokio::test]
async fn over_long_tokens_are_refused_without_touching_the_cache() {
    let key = signer("k1");
    let v = verifier(&[&key], VerifierOptions::default());
    let long = "a".repeat(crate::identity::oidc::MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        v.verify(&long).await,
        Err(OidcError::Malformed(_))
    ));
    assert_eq!(v.verified.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_the_cache() {
    let key = signer("k1");
    let v = Arc::new(verifier(&[&key], VerifierOptions::default()));
    let tokens: Vec<String> = (0..8)
        .map(|i| key.sign(&claims(&format!("u{i}"))))
        .collect();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let v = v.clone();
            let token = tokens[i % tokens.len()].clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let identity = v.verify(&token).await.unwrap();
                    assert_eq!(identity.principal, format!("u{}", i % 8));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(v.verified.len(), 8);
    assert!(v.cache_hits() >= 64 * 20 - 64, "{}", v.cache_hits());
}
