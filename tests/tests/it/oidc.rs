//! OIDC verification against a real (in-process) OpenID Provider over HTTP:
//! provider token shapes, the classic JWT attacks, key discovery, caching,
//! rotation, rate-limited refetching and outages. Every test that can asserts
//! how many requests reached the provider. No Pulsar needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kong_pulsar::identity::AuthMethod;
use kong_pulsar::identity::oidc::{
    ClaimMapping, IssuerConfig, KeyFetchError, MalformedToken, OidcError, OidcVerifier,
    VerifierOptions,
};
use kp_tests::oidc::{
    KeyType, Kid, Provider, SignOptions, TEST_CLIENT_ID, TestIssuer, Typ, unreachable_url,
    unsecured,
};
use kp_tests::unix_now;
use serde_json::{Value, json};

const AUD: &str = "kong-pulsar";

/// Short enough that rate-limit tests can wait it out, long enough that two
/// back-to-back verifications fall inside it.
const REFETCH: Duration = Duration::from_millis(400);

fn options() -> VerifierOptions {
    VerifierOptions {
        min_refetch_interval: REFETCH,
        http_timeout: Duration::from_secs(2),
        ..VerifierOptions::default()
    }
}

fn verifier(configs: Vec<IssuerConfig>) -> OidcVerifier {
    verifier_with(configs, options())
}

fn verifier_with(configs: Vec<IssuerConfig>, options: VerifierOptions) -> OidcVerifier {
    OidcVerifier::new(configs, reqwest::Client::new(), options)
}

/// Where a provider's tokens carry groups and the calling client, as its
/// policy `claims:` would say.
fn mapping(groups: &str, service: &str) -> ClaimMapping {
    ClaimMapping {
        subject: "sub".to_owned(),
        groups: groups.to_owned(),
        service: service.to_owned(),
    }
}

fn claims(idp: &TestIssuer, subject: &str) -> Value {
    idp.claims_for(Provider::Okta, subject, &["checkout"], AUD)
}

async fn wait_out_rate_limit() {
    tokio::time::sleep(REFETCH + Duration::from_millis(100)).await;
}

fn unavailable_source(err: &OidcError) -> &KeyFetchError {
    match err {
        OidcError::KeysUnavailable { source, .. } => source,
        other => panic!("expected KeysUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_okta_access_token_maps_to_the_identity() {
    let idp = TestIssuer::start_with("/oauth2/default", KeyType::Rs256).await;
    let mut config = idp.config("api://kong-pulsar");
    config.claims = mapping("groups", "cid");
    let v = verifier(vec![config]);

    let token = idp.sign(&idp.claims_for(
        Provider::Okta,
        "alice@example.com",
        &["checkout", "ops"],
        "api://kong-pulsar",
    ));
    let id = v.verify(&token).await.unwrap();

    assert_eq!(id.principal, "alice@example.com");
    assert_eq!(id.service.as_deref(), Some(TEST_CLIENT_ID));
    assert_eq!(id.groups, ["checkout", "ops"]);
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(id.issuer, idp.issuer());
    assert!(id.issuer.ends_with("/oauth2/default"));
    assert_eq!(id.iam_arn, None);
    assert_eq!(id.kong_consumer, None);
    assert_eq!(id.claims["scp"], json!(["pulsar.publish"]));
    assert_eq!(
        (idp.discovery_fetch_count(), idp.jwks_fetch_count()),
        (1, 1)
    );
    assert_eq!(v.fetch_count(), 2);
}

#[tokio::test]
async fn a_cognito_access_token_is_audience_checked_on_client_id() {
    let idp = TestIssuer::start().await;
    let mut config = idp.config("app-client-1");
    config.claims = mapping("cognito:groups", "client_id");
    config.audience_claim = "client_id".to_owned();
    let v = verifier(vec![config]);

    let good = idp.claims_for(
        Provider::Cognito,
        "c0ffee-sub",
        &["producers"],
        "app-client-1",
    );
    assert!(
        good.get("aud").is_none(),
        "Cognito access tokens have no aud"
    );
    let id = v.verify(&idp.sign(&good)).await.unwrap();
    assert_eq!(id.principal, "c0ffee-sub");
    assert_eq!(id.service.as_deref(), Some("app-client-1"));
    assert_eq!(id.groups, ["producers"]);
    assert_eq!(id.claims["token_use"], "access");

    let other_client = idp.claims_for(Provider::Cognito, "c0ffee-sub", &[], "app-client-2");
    assert!(matches!(
        v.verify(&idp.sign(&other_client)).await,
        Err(OidcError::WrongAudience)
    ));
    assert_eq!(v.fetch_count(), 2);
}

#[tokio::test]
async fn a_keycloak_es256_token_maps_realm_roles_to_groups() {
    let idp = TestIssuer::start_with("/realms/pulsar", KeyType::Es256).await;
    let mut config = idp.config(AUD);
    config.claims = mapping("realm_access.roles", "azp");
    assert_eq!(config.algorithms, [Algorithm::ES256]);
    let v = verifier(vec![config]);

    let token = idp.sign(&idp.claims_for(Provider::Keycloak, "kc-user-1", &["producer"], AUD));
    let id = v.verify(&token).await.unwrap();
    assert_eq!(id.principal, "kc-user-1");
    assert_eq!(id.service.as_deref(), Some(TEST_CLIENT_ID));
    assert_eq!(id.groups, ["producer"]);
    assert_eq!(v.fetch_count(), 2);
}

#[tokio::test]
async fn a_warm_verifier_does_not_touch_the_network() {
    let idp = TestIssuer::start().await;
    let uncached = verifier_with(
        vec![idp.config(AUD)],
        VerifierOptions {
            verified_tokens: 0,
            ..options()
        },
    );
    let cached = verifier(vec![idp.config(AUD)]);
    let token = idp.sign(&claims(&idp, "warm"));
    for (name, v) in [("uncached", &uncached), ("cached", &cached)] {
        v.verify(&token).await.unwrap();
        assert_eq!(v.fetch_count(), 2);

        let rounds = 500u32;
        let started = Instant::now();
        for _ in 0..rounds {
            v.verify(&token).await.unwrap();
        }
        let per_token = started.elapsed() / rounds;
        // Informational only (targets are benchmarked, not timed tests): this
        // is a debug build unless run with --release.
        println!("warm RS256 verification, {name}: {per_token:?} per token");
        assert_eq!(v.fetch_count(), 2);
    }
    assert_eq!(uncached.cache_hits(), 0);
    assert_eq!(cached.cache_hits(), 500);
    assert_eq!(idp.fetch_count(), 4);
}

#[tokio::test]
async fn a_cached_token_stops_being_accepted_at_its_exp() {
    let idp = TestIssuer::start().await;
    let v = verifier_with(
        vec![idp.config(AUD)],
        VerifierOptions {
            leeway: Duration::ZERO,
            ..options()
        },
    );
    let mut brief = claims(&idp, "brief");
    let exp = unix_now() + 2;
    brief["exp"] = json!(exp);
    let token = idp.sign(&brief);
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(
        v.cache_hits(),
        1,
        "the second call was served from the cache"
    );

    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        assert!(matches!(v.verify(&token).await, Err(OidcError::Expired)));
    }
    assert_eq!(v.cache_hits(), 1);
    assert_eq!(idp.fetch_count(), 2);
}

#[tokio::test]
async fn a_cached_token_stops_working_once_its_key_is_refetched_away() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let old_token = idp.sign(&claims(&idp, "x"));
    v.verify(&old_token).await.unwrap();
    v.verify(&old_token).await.unwrap();
    assert_eq!(v.cache_hits(), 1);

    // The provider drops the key; until we refetch, nothing has changed here
    // (the same rule as without the cache: keys change on refetch only).
    idp.rotate_key(false);
    v.verify(&old_token).await.unwrap();
    assert_eq!(v.cache_hits(), 2);
    assert_eq!(idp.jwks_fetch_count(), 1);

    // A token with the new kid makes us refetch; the old key is gone from
    // the new set, so its cached token is refused, however often it comes.
    wait_out_rate_limit().await;
    v.verify(&idp.sign(&claims(&idp, "y"))).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 2);
    for _ in 0..3 {
        assert!(matches!(
            v.verify(&old_token).await,
            Err(OidcError::UnknownKey { .. })
        ));
    }
    assert_eq!(v.cache_hits(), 2);
    assert_eq!(idp.jwks_fetch_count(), 2, "the refusals stay rate limited");
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_is_fetched() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let kid = idp.current_key().kid().to_owned();
    for token in [
        unsecured(&claims(&idp, "mallory"), Some(&kid)),
        unsecured(&claims(&idp, "mallory"), None),
    ] {
        let err = v.verify(&token).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::AlgorithmNotAllowed { alg, .. } if alg == "none"),
            "{err:?}"
        );
    }
    assert_eq!(v.fetch_count(), 0);
    assert_eq!(idp.fetch_count(), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_issuers_public_key_is_refused() {
    let idp = TestIssuer::start().await;
    // Even a policy that (wrongly) lists HS256 must not enable the attack.
    let mut config = idp.config(AUD);
    config.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
    let v = verifier(vec![config]);
    v.verify(&idp.sign(&claims(&idp, "warm-up"))).await.unwrap();

    let pem = idp.public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(idp.current_key().kid().to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(&idp, "mallory"),
        &EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    let err = v.verify(&forged).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::AlgorithmNotAllowed { alg, .. } if alg == "HS256"),
        "{err:?}"
    );

    // The raw modulus as the secret, the other common variant.
    let n = idp.current_key().jwk()["n"].as_str().unwrap().to_owned();
    let forged = jsonwebtoken::encode(
        &header,
        &claims(&idp, "mallory"),
        &EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&forged).await,
        Err(OidcError::AlgorithmNotAllowed { .. })
    ));
    assert_eq!(v.fetch_count(), 2, "only the warm-up fetched keys");
}

#[tokio::test]
async fn an_es256_token_is_refused_by_an_rs256_pinned_issuer() {
    let idp = TestIssuer::start().await;
    let ec = idp.new_key(KeyType::Es256);
    idp.publish(ec.clone());
    let v = verifier(vec![idp.config(AUD)]);
    let err = v.verify(&ec.sign(&claims(&idp, "x"))).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::AlgorithmNotAllowed { alg, .. } if alg == "ES256"),
        "{err:?}"
    );
    assert_eq!(v.fetch_count(), 0);
}

#[tokio::test]
async fn expired_tokens_are_refused_but_the_leeway_is_honoured() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let now = unix_now();

    let mut expired = claims(&idp, "late");
    expired["exp"] = json!(now - 120);
    assert!(matches!(
        v.verify(&idp.sign(&expired)).await,
        Err(OidcError::Expired)
    ));

    let mut within_leeway = claims(&idp, "late");
    within_leeway["exp"] = json!(now - 5);
    v.verify(&idp.sign(&within_leeway)).await.unwrap();

    let strict = verifier_with(
        vec![idp.config(AUD)],
        VerifierOptions {
            leeway: Duration::ZERO,
            ..options()
        },
    );
    assert!(matches!(
        strict.verify(&idp.sign(&within_leeway)).await,
        Err(OidcError::Expired)
    ));
    // A per-issuer leeway overrides the verifier-wide one.
    let mut per_issuer = idp.config(AUD);
    per_issuer.leeway = Some(Duration::ZERO);
    assert!(matches!(
        verifier(vec![per_issuer])
            .verify(&idp.sign(&within_leeway))
            .await,
        Err(OidcError::Expired)
    ));

    let mut no_exp = claims(&idp, "forever");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        v.verify(&idp.sign(&no_exp)).await,
        Err(OidcError::MissingClaim(c)) if c == "exp"
    ));
    assert_eq!(v.fetch_count(), 2);
}

#[tokio::test]
async fn not_yet_valid_tokens_are_refused() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let mut early = claims(&idp, "early");
    early["nbf"] = json!(unix_now() + 600);
    assert!(matches!(
        v.verify(&idp.sign(&early)).await,
        Err(OidcError::NotYetValid)
    ));
    early["nbf"] = json!(unix_now() + 5);
    v.verify(&idp.sign(&early)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_audience_is_refused() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let wrong = idp.claims_for(Provider::Okta, "x", &[], "some-other-api");
    assert!(matches!(
        v.verify(&idp.sign(&wrong)).await,
        Err(OidcError::WrongAudience)
    ));
    let mut several = claims(&idp, "x");
    several["aud"] = json!(["a", AUD, "b"]);
    v.verify(&idp.sign(&several)).await.unwrap();
    let mut none = claims(&idp, "x");
    none.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        v.verify(&idp.sign(&none)).await,
        Err(OidcError::MissingClaim(c)) if c == "aud"
    ));
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_without_any_fetch() {
    let trusted = TestIssuer::start().await;
    let stranger = TestIssuer::start().await;
    let v = verifier(vec![trusted.config(AUD)]);

    let token = stranger.sign(&claims(&stranger, "eve"));
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::UnknownIssuer(iss) if *iss == stranger.issuer()),
        "{err:?}"
    );
    // An issuer is an exact string: a trailing slash is another issuer.
    let mut slash = claims(&trusted, "eve");
    slash["iss"] = json!(format!("{}/", trusted.issuer()));
    assert!(matches!(
        v.verify(&trusted.sign(&slash)).await,
        Err(OidcError::UnknownIssuer(_))
    ));
    assert_eq!(v.fetch_count(), 0);
    assert_eq!(trusted.fetch_count() + stranger.fetch_count(), 0);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_rate_limited() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 1);

    wait_out_rate_limit().await;
    let unknown = |kid: &str| {
        idp.sign_with(
            &claims(&idp, "x"),
            &SignOptions {
                kid: Kid::Named(kid.to_owned()),
                ..SignOptions::default()
            },
        )
    };
    let err = v.verify(&unknown("nope-1")).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::UnknownKey { kid: Some(k), .. } if k == "nope-1"),
        "{err:?}"
    );
    assert_eq!(idp.jwks_fetch_count(), 2, "one refetch for the unknown kid");

    for kid in ["nope-2", "nope-3", "nope-1"] {
        assert!(matches!(
            v.verify(&unknown(kid)).await,
            Err(OidcError::UnknownKey { .. })
        ));
    }
    assert_eq!(idp.jwks_fetch_count(), 2, "rate limited: no new fetch");
    // Known keys keep working while unknown ones are rate limited.
    v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap();

    wait_out_rate_limit().await;
    assert!(matches!(
        v.verify(&unknown("nope-4")).await,
        Err(OidcError::UnknownKey { .. })
    ));
    assert_eq!(
        idp.jwks_fetch_count(),
        3,
        "allowed again after the interval"
    );
    assert_eq!(idp.discovery_fetch_count(), 1, "discovery is cached");
    assert_eq!(v.fetch_count(), idp.fetch_count());
}

#[tokio::test]
async fn key_rotation_costs_exactly_one_refetch() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let old_token = idp.sign(&claims(&idp, "x"));
    v.verify(&old_token).await.unwrap();
    assert_eq!(idp.fetch_count(), 2);

    let old_kid = idp.current_key().kid().to_owned();
    let new_key = idp.rotate_key(true);
    assert_ne!(new_key.kid(), old_kid);
    v.verify(&old_token).await.unwrap();
    assert_eq!(idp.fetch_count(), 2, "the old key is still cached");

    wait_out_rate_limit().await;
    let new_token = idp.sign(&claims(&idp, "x"));
    v.verify(&new_token).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 2, "one refetch for the new kid");
    for _ in 0..10 {
        v.verify(&new_token).await.unwrap();
        v.verify(&old_token).await.unwrap();
    }
    assert_eq!(idp.jwks_fetch_count(), 2);

    // Once the provider drops the old key and we have refetched, tokens
    // signed with it stop working.
    idp.rotate_key(false);
    idp.unpublish(new_key.kid());
    wait_out_rate_limit().await;
    v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 3);
    wait_out_rate_limit().await;
    assert!(matches!(
        v.verify(&new_token).await,
        Err(OidcError::UnknownKey { .. })
    ));
    assert_eq!(idp.discovery_fetch_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verifications_of_a_new_kid_share_one_fetch() {
    let idp = TestIssuer::start().await;
    let v = Arc::new(verifier(vec![idp.config(AUD)]));
    v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 1);

    wait_out_rate_limit().await;
    idp.rotate_key(true);
    idp.set_jwks_delay(Duration::from_millis(300));
    let token = idp.sign(&claims(&idp, "x"));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            tokio::spawn(async move { v.verify(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.jwks_fetch_count(), 2, "32 misses, one fetch");
    assert_eq!(v.fetch_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_concurrent_verifications_share_the_first_fetch() {
    let idp = TestIssuer::start().await;
    idp.set_jwks_delay(Duration::from_millis(200));
    let v = Arc::new(verifier(vec![idp.config(AUD)]));
    let token = idp.sign(&claims(&idp, "x"));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move { v.verify(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.fetch_count(), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_keys_unavailable_and_not_hammered() {
    let idp = TestIssuer::start().await;
    let mut config = idp.config(AUD);
    config.jwks_uri = Some(unreachable_url("/jwks").await);
    let v = verifier(vec![config]);
    let token = idp.sign(&claims(&idp, "x"));

    let err = v.verify(&token).await.unwrap_err();
    assert!(err.is_unavailable());
    assert!(
        matches!(unavailable_source(&err), KeyFetchError::Request { .. }),
        "{err:?}"
    );
    assert_eq!(v.fetch_count(), 1);
    // Within the interval the last failure is returned without a new attempt.
    let err = v.verify(&token).await.unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(v.fetch_count(), 1);
    assert_eq!(idp.fetch_count(), 0, "configured jwks_uri: no discovery");
}

#[tokio::test]
async fn a_failing_provider_is_keys_unavailable_until_it_recovers() {
    let idp = TestIssuer::start().await;
    idp.set_failing(Some(StatusCode::SERVICE_UNAVAILABLE));
    let v = verifier(vec![idp.config(AUD)]);
    let token = idp.sign(&claims(&idp, "x"));
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(
            unavailable_source(&err),
            KeyFetchError::Status { status: 503, .. }
        ),
        "{err:?}"
    );
    assert_eq!(idp.fetch_count(), 1, "discovery failed, JWKS never tried");

    idp.set_failing(None);
    wait_out_rate_limit().await;
    v.verify(&token).await.unwrap();
    assert_eq!(idp.fetch_count(), 3);
}

#[tokio::test]
async fn cached_keys_survive_a_failed_refresh() {
    let idp = TestIssuer::start().await;
    let v = verifier_with(
        vec![idp.config(AUD)],
        VerifierOptions {
            jwks_ttl: Duration::from_millis(300),
            min_refetch_interval: Duration::from_millis(50),
            ..options()
        },
    );
    let token = idp.sign(&claims(&idp, "x"));
    v.verify(&token).await.unwrap();

    idp.set_failing(Some(StatusCode::INTERNAL_SERVER_ERROR));
    tokio::time::sleep(Duration::from_millis(350)).await;
    v.verify(&token).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 2, "the refresh was attempted");

    // Beyond twice the TTL, stale keys are no longer trusted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = v.verify(&token).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    idp.set_failing(None);
    tokio::time::sleep(Duration::from_millis(60)).await;
    v.verify(&token).await.unwrap();
}

#[tokio::test]
async fn an_expired_cache_is_refreshed_on_schedule() {
    let idp = TestIssuer::start().await;
    let v = verifier_with(
        vec![idp.config(AUD)],
        VerifierOptions {
            jwks_ttl: Duration::from_millis(200),
            min_refetch_interval: Duration::from_millis(50),
            ..options()
        },
    );
    let token = idp.sign(&claims(&idp, "x"));
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.verify(&token).await.unwrap();
    v.verify(&token).await.unwrap();
    assert_eq!(idp.jwks_fetch_count(), 2);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let idp = TestIssuer::start().await;
    idp.set_discovery_issuer(Some("https://evil.example.com"));
    let v = verifier(vec![idp.config(AUD)]);
    let err = v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap_err();
    assert!(
        matches!(
            unavailable_source(&err),
            KeyFetchError::IssuerMismatch { found, .. } if found == "https://evil.example.com"
        ),
        "{err:?}"
    );
    assert_eq!(idp.discovery_fetch_count(), 1);
    assert_eq!(idp.jwks_fetch_count(), 0, "its jwks_uri is never followed");
}

#[tokio::test]
async fn a_configured_jwks_uri_skips_discovery() {
    let idp = TestIssuer::start().await;
    let mut config = idp.config(AUD);
    config.jwks_uri = Some(idp.jwks_uri());
    let v = verifier(vec![config]);
    v.verify(&idp.sign(&claims(&idp, "x"))).await.unwrap();
    assert_eq!(
        (idp.discovery_fetch_count(), idp.jwks_fetch_count()),
        (0, 1)
    );
}

#[tokio::test]
async fn an_invalid_or_useless_jwks_is_keys_unavailable() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let token = idp.sign(&claims(&idp, "x"));

    idp.set_raw_jwks(Some("<html>not json</html>"));
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(
            unavailable_source(&err),
            KeyFetchError::Document { what: "JWKS", .. }
        ),
        "{err:?}"
    );

    // Only a symmetric key: never usable, whatever the token says.
    idp.set_raw_jwks(Some(
        r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0","alg":"HS256"}]}"#,
    ));
    wait_out_rate_limit().await;
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(unavailable_source(&err), KeyFetchError::NoUsableKeys { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_known_kid_with_the_wrong_key_is_an_invalid_signature() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let kid = idp.current_key().kid().to_owned();
    let impostor = idp.new_key(KeyType::Rs256).with_kid(&kid);
    let err = v
        .verify(&impostor.sign(&claims(&idp, "x")))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InvalidSignature), "{err:?}");
}

#[tokio::test]
async fn a_tampered_payload_is_an_invalid_signature() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let token = idp.sign(&claims(&idp, "alice"));
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut evil = claims(&idp, "admin");
    evil["groups"] = json!(["admins"]);
    let payload = base64_url(&evil);
    parts[1] = &payload;
    let err = v.verify(&parts.join(".")).await.unwrap_err();
    assert!(matches!(err, OidcError::InvalidSignature), "{err:?}");
}

#[tokio::test]
async fn a_token_without_kid_needs_exactly_one_candidate_key() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let no_kid = SignOptions {
        kid: Kid::Absent,
        ..SignOptions::default()
    };
    v.verify(&idp.sign_with(&claims(&idp, "x"), &no_kid))
        .await
        .unwrap();

    // Two RS256 keys: which one is meant is no longer unambiguous.
    let second = idp.new_key(KeyType::Rs256);
    idp.publish(second);
    let v = verifier(vec![idp.config(AUD)]);
    let err = v
        .verify(&idp.sign_with(&claims(&idp, "x"), &no_kid))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::UnknownKey { kid: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_jwk_alg_must_agree_with_the_header_alg() {
    let idp = TestIssuer::start().await;
    let mut config = idp.config(AUD);
    config.algorithms = vec![Algorithm::RS256, Algorithm::PS256];
    let v = verifier(vec![config.clone()]);
    // The published JWK says RS256; the same RSA key used for PS256 is refused.
    let ps256 = SignOptions {
        alg: Some(Algorithm::PS256),
        ..SignOptions::default()
    };
    let err = v
        .verify(&idp.sign_with(&claims(&idp, "x"), &ps256))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OidcError::KeyAlgorithmMismatch {
                alg: Algorithm::PS256,
                ..
            }
        ),
        "{err:?}"
    );

    // Without an alg on the JWK, the key type decides and PS256 is fine.
    let key = idp.current_key().with_jwk_alg(None);
    idp.set_published(vec![key.clone()]);
    let v = verifier(vec![config]);
    v.verify(&key.sign_with(&claims(&idp, "x"), &ps256))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_subject_is_a_missing_claim() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let mut no_sub = claims(&idp, "x");
    no_sub.as_object_mut().unwrap().remove("sub");
    assert!(matches!(
        v.verify(&idp.sign(&no_sub)).await,
        Err(OidcError::MissingClaim(c)) if c == "sub"
    ));
}

#[tokio::test]
async fn garbage_is_malformed_and_never_panics_or_fetches() {
    let idp = TestIssuer::start().await;
    let v = verifier(vec![idp.config(AUD)]);
    let valid = idp.sign(&claims(&idp, "x"));
    let huge = format!("{valid}{}", "A".repeat(100 * 1024));
    let garbled: String = valid.chars().rev().collect();
    let cases = [
        String::new(),
        "Bearer".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
        "a.b.c".to_owned(),
        "a.b.c.d.e".to_owned(),
        garbled,
        huge,
        "\u{0}\u{7f}é.☃.🙂".to_owned(),
        valid.replace('.', "!"),
        format!("{valid}.extra"),
    ];
    for token in &cases {
        let err = v.verify(token).await.unwrap_err();
        assert!(
            matches!(err, OidcError::Malformed(_)),
            "{:?}: {err:?}",
            token.get(..40)
        );
    }
    let err = v.verify(&"A".repeat(100 * 1024)).await.unwrap_err();
    assert!(matches!(err, OidcError::Malformed(MalformedToken::TooLong)));
    assert_eq!(v.fetch_count(), 0);
}

fn base64_url(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn an_id_token_is_refused_where_only_at_jwt_access_tokens_are_allowed() {
    // The same issuer, the same keys, the same audience: only the token type
    // tells an ID token from an access token.
    let idp = TestIssuer::start().await;
    let mut config = idp.config(AUD);
    config.token_types = vec!["at+jwt".to_owned()];
    let v = verifier(vec![config]);
    let sign = |typ: Typ| {
        idp.sign_with(
            &claims(&idp, "alice"),
            &SignOptions {
                typ,
                ..SignOptions::default()
            },
        )
    };

    let access = v
        .verify(&sign(Typ::Named("at+jwt".to_owned())))
        .await
        .expect("an RFC 9068 access token");
    assert_eq!(access.principal, "alice");
    let fetches = idp.fetch_count();

    for (typ, found) in [
        (Typ::Jwt, "JWT"),
        (Typ::Absent, "none"),
        (Typ::Named("id+jwt".to_owned()), "id+jwt"),
    ] {
        let err = v.verify(&sign(typ)).await.unwrap_err();
        match &err {
            OidcError::TokenTypeNotAllowed { found: f, .. } => {
                assert_eq!(f.to_ascii_lowercase(), found.to_ascii_lowercase())
            }
            other => panic!("expected TokenTypeNotAllowed, got {other:?}"),
        }
        assert!(!err.is_unavailable());
    }
    assert_eq!(idp.fetch_count(), fetches, "refusals cost no key fetch");
}

#[tokio::test]
async fn a_cognito_id_token_is_refused_where_only_access_tokens_are_allowed() {
    let idp = TestIssuer::start().await;
    let mut config = idp.config(TEST_CLIENT_ID);
    config.audience_claim = "client_id".to_owned();
    config.token_types = vec!["access".to_owned()];
    let v = verifier(vec![config]);
    let no_typ = SignOptions {
        typ: Typ::Absent,
        ..SignOptions::default()
    };
    let mut token_claims = idp.claims_for(Provider::Cognito, "bob", &["ops"], TEST_CLIENT_ID);
    v.verify(&idp.sign_with(&token_claims, &no_typ))
        .await
        .expect("a Cognito access token");
    token_claims["token_use"] = json!("id");
    assert!(matches!(
        v.verify(&idp.sign_with(&token_claims, &no_typ)).await,
        Err(OidcError::TokenTypeNotAllowed { .. })
    ));
}
