use std::error::Error as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use url::Url;

use super::claims::lookup;
use super::config::is_secure_url;
use super::jws::ParsedToken;
use super::keys::{IssuerState, KeySet, Selected};
use super::*;
use crate::identity::AuthMethod;

const ISS: &str = "https://idp.example.com/oauth2/default";

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn token(header: Value, claims: Value) -> String {
    format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims))
}

fn now() -> f64 {
    unix_now()
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn issuer(config: IssuerConfig) -> IssuerState {
    IssuerState::new(config)
}

fn verifier(configs: Vec<IssuerConfig>) -> OidcVerifier {
    OidcVerifier::new(configs, reqwest::Client::new(), VerifierOptions::default())
}

fn rsa_jwk(kid: Option<&str>, alg: Option<&str>, bits: usize) -> Value {
    let mut n = vec![0xA5u8; bits / 8];
    n[0] = 0xC3;
    let mut jwk = json!({ "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB" });
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

fn ec_jwk(kid: &str, crv: &str, len: usize) -> Value {
    let coord = URL_SAFE_NO_PAD.encode(vec![7u8; len]);
    json!({ "kty": "EC", "kid": kid, "crv": crv, "x": coord, "y": coord })
}

fn key_set(keys: Vec<Value>, algorithms: &[Algorithm]) -> KeySet {
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    KeySet::from_jwks(&body, algorithms, Instant::now()).unwrap()
}

fn malformed(token: &str) -> MalformedToken {
    match ParsedToken::parse(token) {
        Err(e) => e,
        Ok(_) => panic!("{token:?} parsed"),
    }
}

#[test]
fn a_well_formed_token_parses_into_header_claims_and_signing_input() {
    let t = token(
        json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
        json!({"iss": ISS}),
    );
    let parsed = ParsedToken::parse(&t).unwrap();
    assert_eq!(parsed.header.alg, "RS256");
    assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
    assert_eq!(parsed.claims["iss"], ISS);
    assert_eq!(parsed.signature, "c2lnbmF0dXJl");
    assert_eq!(format!("{}.c2lnbmF0dXJl", parsed.signing_input), t);
}

#[test]
fn structural_garbage_is_malformed() {
    assert!(matches!(malformed(""), MalformedToken::Segments));
    assert!(matches!(malformed("abc"), MalformedToken::Segments));
    assert!(matches!(malformed("a.b"), MalformedToken::Segments));
    assert!(matches!(malformed("a.b.c.d"), MalformedToken::Segments));
    assert!(matches!(malformed(".."), MalformedToken::Json { .. }));
    assert!(matches!(
        malformed("!!!.e30.sig"),
        MalformedToken::Base64 { part: "header", .. }
    ));
    // Padding is not part of JWS base64url.
    let padded = format!("{}=.e30.sig", b64(&json!({"alg": "RS256"})));
    assert!(matches!(malformed(&padded), MalformedToken::Base64 { .. }));
    let not_json = format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("nope"));
    assert!(matches!(
        malformed(&not_json),
        MalformedToken::Json { part: "header", .. }
    ));
    let array_payload = format!("{}.{}.sig", b64(&json!({"alg": "RS256"})), b64(&json!([1])));
    assert!(matches!(
        malformed(&array_payload),
        MalformedToken::Json {
            part: "payload",
            ..
        }
    ));
    let no_alg = token(json!({"kid": "k"}), json!({}));
    assert!(matches!(malformed(&no_alg), MalformedToken::Json { .. }));
    let bad_sig = format!(
        "{}.{}.si+g/",
        b64(&json!({"alg": "RS256"})),
        b64(&json!({}))
    );
    assert!(matches!(
        malformed(&bad_sig),
        MalformedToken::Base64 {
            part: "signature",
            ..
        }
    ));
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(malformed(&huge), MalformedToken::TooLong));
}

#[test]
fn critical_header_extensions_are_refused() {
    let t = token(json!({"alg": "RS256", "crit": ["exp"]}), json!({}));
    assert!(matches!(malformed(&t), MalformedToken::Critical));
}

#[test]
fn the_algorithm_is_pinned_by_configuration_and_never_symmetric() {
    let mut config = IssuerConfig::new(ISS, ["api"]);
    config.algorithms = vec![Algorithm::RS256, Algorithm::HS256, Algorithm::ES256];
    let state = issuer(config);
    assert_eq!(state.pin("RS256").unwrap(), Algorithm::RS256);
    assert_eq!(state.pin("ES256").unwrap(), Algorithm::ES256);
    for refused in ["HS256", "none", "None", "rs256", "RS512", "", "PS256"] {
        assert!(
            matches!(
                state.pin(refused),
                Err(OidcError::AlgorithmNotAllowed { .. })
            ),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn unknown_issuer_and_unpinned_algorithms_are_refused_without_network() {
    let v = verifier(vec![IssuerConfig::new(ISS, ["api"])]);
    let other = token(
        json!({"alg": "RS256", "kid": "k"}),
        json!({"iss": "https://evil.example.com"}),
    );
    assert!(matches!(
        v.verify(&other).await,
        Err(OidcError::UnknownIssuer(iss)) if iss == "https://evil.example.com"
    ));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&json!({"iss": ISS}))
    );
    assert!(matches!(
        v.verify(&none).await,
        Err(OidcError::AlgorithmNotAllowed { alg, .. }) if alg == "none"
    ));
    let hs = token(json!({"alg": "HS256"}), json!({"iss": ISS}));
    assert!(matches!(
        v.verify(&hs).await,
        Err(OidcError::AlgorithmNotAllowed { .. })
    ));
    let no_iss = token(json!({"alg": "RS256"}), json!({"sub": "x"}));
    assert!(matches!(v.verify(&no_iss).await, Err(OidcError::MissingClaim(c)) if c == "iss"));
    let array_iss = token(json!({"alg": "RS256"}), json!({"iss": [ISS]}));
    assert!(matches!(v.verify(&array_iss).await, Err(OidcError::MissingClaim(c)) if c == "iss"));
    assert_eq!(v.fetch_count(), 0);
}

#[tokio::test]
async fn a_plain_http_issuer_is_never_fetched_from() {
    let mut config = IssuerConfig::new("http://idp.example.com", ["api"]);
    config.algorithms = vec![Algorithm::RS256];
    let v = verifier(vec![config]);
    let t = token(
        json!({"alg": "RS256", "kid": "k"}),
        json!({"iss": "http://idp.example.com"}),
    );
    let err = v.verify(&t).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(matches!(
        err,
        OidcError::KeysUnavailable { ref source, .. } if matches!(**source, KeyFetchError::InsecureUrl(_))
    ));
    assert_eq!(v.fetch_count(), 0);
}

#[test]
fn expiry_and_not_before_honour_the_leeway() {
    let state = issuer(IssuerConfig::new(ISS, ["api"]));
    let leeway = Duration::from_secs(30);
    let t = now();
    let check = |c: Value| state.check_claims(&claims(c), t, leeway);
    assert!(check(json!({"exp": t + 60.0, "aud": "api"})).is_ok());
    assert!(check(json!({"exp": t - 10.0, "aud": "api"})).is_ok());
    assert!(check(json!({"exp": (t + 60.5), "aud": "api"})).is_ok());
    assert!(matches!(
        check(json!({"exp": t - 31.0, "aud": "api"})),
        Err(OidcError::Expired)
    ));
    assert!(matches!(
        check(json!({"aud": "api"})),
        Err(OidcError::MissingClaim(c)) if c == "exp"
    ));
    assert!(matches!(
        check(json!({"exp": "tomorrow", "aud": "api"})),
        Err(OidcError::MissingClaim(c)) if c == "exp"
    ));
    assert!(check(json!({"exp": t + 60.0, "nbf": t + 20.0, "aud": "api"})).is_ok());
    assert!(matches!(
        check(json!({"exp": t + 600.0, "nbf": t + 60.0, "aud": "api"})),
        Err(OidcError::NotYetValid)
    ));
    assert!(matches!(
        check(json!({"exp": t + 600.0, "nbf": "soon", "aud": "api"})),
        Err(OidcError::MissingClaim(c)) if c == "nbf"
    ));
}

#[test]
fn the_audience_must_intersect_the_configured_ones() {
    let state = issuer(IssuerConfig::new(ISS, ["api", "other"]));
    let exp = now() + 60.0;
    let check = |c: Value| state.check_claims(&claims(c), now(), Duration::ZERO);
    assert!(check(json!({"exp": exp, "aud": "other"})).is_ok());
    assert!(check(json!({"exp": exp, "aud": ["x", "api"]})).is_ok());
    for wrong in [
        json!("x"),
        json!(["x", "y"]),
        json!([]),
        json!(7),
        json!({"a": "api"}),
    ] {
        assert!(
            matches!(
                check(json!({"exp": exp, "aud": wrong})),
                Err(OidcError::WrongAudience)
            ),
            "{wrong}"
        );
    }
    assert!(matches!(
        check(json!({"exp": exp})),
        Err(OidcError::MissingClaim(c)) if c == "aud"
    ));
}

#[test]
fn a_custom_audience_claim_replaces_aud() {
    let mut config = IssuerConfig::new(ISS, ["app-client"]);
    config.audience_claim = "client_id".to_owned();
    let state = issuer(config);
    let exp = now() + 60.0;
    let check = |c: Value| state.check_claims(&claims(c), now(), Duration::ZERO);
    assert!(check(json!({"exp": exp, "client_id": "app-client"})).is_ok());
    assert!(matches!(
        check(json!({"exp": exp, "aud": "app-client"})),
        Err(OidcError::MissingClaim(c)) if c == "client_id"
    ));
}

#[test]
fn claims_map_onto_the_identity_for_each_provider_shape() {
    let mut okta = IssuerConfig::new(ISS, ["api"]);
    okta.claims = ClaimMapping::okta();
    let id = issuer(okta)
        .identity(claims(json!({
            "sub": "alice@example.com", "cid": "0oa1", "groups": ["checkout", 7, "ops"],
            "scp": ["publish"],
        })))
        .unwrap();
    assert_eq!(id.principal, "alice@example.com");
    assert_eq!(id.service.as_deref(), Some("0oa1"));
    assert_eq!(id.groups, ["checkout", "ops"]);
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(id.issuer, ISS);
    assert_eq!(id.claims["scp"], json!(["publish"]));
    assert!(id.iam_arn.is_none() && id.kong_consumer.is_none());

    let mut cognito = IssuerConfig::new(ISS, ["api"]);
    cognito.claims = ClaimMapping::cognito();
    let id = issuer(cognito)
        .identity(claims(
            json!({"sub": "u-1", "client_id": "c-1", "cognito:groups": "admins"}),
        ))
        .unwrap();
    assert_eq!(
        (id.service.as_deref(), id.groups),
        (Some("c-1"), vec!["admins".to_owned()])
    );

    let mut keycloak = IssuerConfig::new(ISS, ["api"]);
    keycloak.claims = ClaimMapping::keycloak();
    let id = issuer(keycloak)
        .identity(claims(json!({
            "sub": "kc-1", "azp": "gateway", "realm_access": {"roles": ["producer"]},
        })))
        .unwrap();
    assert_eq!(
        (id.service.as_deref(), id.groups),
        (Some("gateway"), vec!["producer".to_owned()])
    );
}

#[test]
fn a_missing_or_empty_subject_is_refused_and_odd_groups_become_none() {
    let state = issuer(IssuerConfig::new(ISS, ["api"]));
    for bad in [json!({}), json!({"sub": ""}), json!({"sub": 42})] {
        assert!(
            matches!(state.identity(claims(bad.clone())), Err(OidcError::MissingClaim(c)) if c == "sub"),
            "{bad}"
        );
    }
    let id = state
        .identity(claims(json!({"sub": "s", "groups": {"a": 1}, "azp": 3})))
        .unwrap();
    assert!(id.groups.is_empty());
    assert_eq!(id.service, None);
}

#[test]
fn claim_lookup_prefers_literal_names_then_dotted_paths() {
    let c = claims(json!({
        "https://example.com/groups": ["literal"],
        "realm_access": {"roles": ["nested"]},
        "a.b": "literal-dot",
        "a": {"b": "path"},
    }));
    assert_eq!(
        lookup(&c, "https://example.com/groups"),
        Some(&json!(["literal"]))
    );
    assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["nested"])));
    assert_eq!(lookup(&c, "a.b"), Some(&json!("literal-dot")));
    assert_eq!(lookup(&c, "realm_access.missing"), None);
    assert_eq!(lookup(&c, "realm_access.roles.deeper"), None);
    assert_eq!(lookup(&c, "nothing"), None);
    assert_eq!(lookup(&c, ""), None);
}

#[test]
fn claim_lookup_follows_json_pointers() {
    let c = claims(json!({
        "realm_access": {"roles": ["nested"]},
        "a/b": {"~x": "escaped"},
        "list": ["zero", "one"],
        "https://example.com/groups": ["namespaced"],
    }));
    assert_eq!(lookup(&c, "/realm_access/roles"), Some(&json!(["nested"])));
    assert_eq!(lookup(&c, "/a~1b/~0x"), Some(&json!("escaped")));
    assert_eq!(lookup(&c, "/list/1"), Some(&json!("one")));
    assert_eq!(lookup(&c, "/list/9"), None);
    assert_eq!(lookup(&c, "/realm_access/roles/x"), None);
    assert_eq!(lookup(&c, "/missing"), None);
    assert_eq!(
        lookup(&c, "https://example.com/groups"),
        Some(&json!(["namespaced"]))
    );
}

#[test]
fn unmapped_groups_and_service_stay_empty() {
    let mut config = IssuerConfig::new(ISS, ["api"]);
    config.claims.groups.clear();
    config.claims.service.clear();
    let id = issuer(config)
        .identity(claims(json!({"sub": "s", "groups": ["g"], "azp": "c"})))
        .unwrap();
    assert!(id.groups.is_empty());
    assert_eq!(id.service, None);
}

#[test]
fn jwks_parsing_keeps_only_keys_we_would_trust() {
    let all = [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let set = key_set(
        vec![
            rsa_jwk(Some("rsa"), Some("RS256"), 2048),
            rsa_jwk(Some("weak"), None, 1024),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            {
                let mut enc = rsa_jwk(Some("enc"), None, 2048);
                enc["use"] = json!("enc");
                enc
            },
            {
                let mut ops = rsa_jwk(Some("ops"), None, 2048);
                ops["key_ops"] = json!(["encrypt"]);
                ops
            },
            rsa_jwk(Some("rsa-oaep"), Some("RSA-OAEP"), 2048),
            rsa_jwk(Some("rsa-as-es"), Some("ES256"), 2048),
            ec_jwk("p256", "P-256", 32),
            ec_jwk("p256-short", "P-256", 31),
            ec_jwk("p384", "P-384", 48),
            ec_jwk("p521", "P-521", 66),
            json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])}),
            json!({"kty": "RSA", "kid": "no-n", "e": "AQAB"}),
            json!("not even an object"),
        ],
        &all,
    );
    let mut kids: Vec<_> = set.by_kid.keys().map(String::as_str).collect();
    kids.sort_unstable();
    assert_eq!(kids, ["ed", "p256", "p384", "rsa"]);
}

#[test]
fn keys_not_usable_with_the_configured_algorithms_are_dropped() {
    let set = key_set(
        vec![
            rsa_jwk(Some("rsa"), None, 2048),
            ec_jwk("p256", "P-256", 32),
        ],
        &[Algorithm::ES256],
    );
    assert_eq!(set.len(), 1);
    assert!(set.by_kid.contains_key("p256"));
}

#[test]
fn key_selection_checks_kid_alg_and_key_type() {
    let algs = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
    let set = key_set(
        vec![
            rsa_jwk(Some("rs"), Some("RS256"), 2048),
            ec_jwk("ec", "P-256", 32),
        ],
        &algs,
    );
    assert!(matches!(
        set.select(Some("rs"), Algorithm::RS256),
        Selected::Key(_)
    ));
    // The JWK pins RS256: the same RSA key must not verify PS256.
    assert!(matches!(
        set.select(Some("rs"), Algorithm::PS256),
        Selected::Mismatch
    ));
    assert!(matches!(
        set.select(Some("ec"), Algorithm::RS256),
        Selected::Mismatch
    ));
    assert!(matches!(
        set.select(Some("nope"), Algorithm::RS256),
        Selected::Missing
    ));
    // Without kid: exactly one key fits RS256, one fits ES256, none PS256.
    assert!(matches!(
        set.select(None, Algorithm::RS256),
        Selected::Key(_)
    ));
    assert!(matches!(
        set.select(None, Algorithm::ES256),
        Selected::Key(_)
    ));
    assert!(matches!(
        set.select(None, Algorithm::PS256),
        Selected::Missing
    ));

    let two = key_set(
        vec![rsa_jwk(Some("a"), None, 2048), rsa_jwk(None, None, 2048)],
        &algs,
    );
    assert!(matches!(
        two.select(None, Algorithm::RS256),
        Selected::Ambiguous
    ));
    assert!(matches!(
        two.select(Some("a"), Algorithm::RS256),
        Selected::Key(_)
    ));
}

#[test]
fn only_https_or_loopback_http_is_fetched_from() {
    for ok in [
        "https://idp.example.com/x",
        "http://127.0.0.1:8080/",
        "http://[::1]:9/",
        "http://localhost/",
    ] {
        assert!(is_secure_url(&Url::parse(ok).unwrap()), "{ok}");
    }
    for bad in [
        "http://idp.example.com/",
        "http://10.0.0.1/",
        "ftp://idp.example.com/",
        "file:///etc/passwd",
    ] {
        assert!(!is_secure_url(&Url::parse(bad).unwrap()), "{bad}");
    }
}

#[test]
fn configuration_mistakes_are_reported() {
    let good = IssuerConfig::new(ISS, ["api"]);
    assert!(good.validate().is_ok());
    let with = |f: fn(&mut IssuerConfig)| {
        let mut c = good.clone();
        f(&mut c);
        c.validate()
    };
    assert!(matches!(
        with(|c| c.algorithms = vec![Algorithm::HS256]),
        Err(ConfigError::SymmetricAlgorithm { .. })
    ));
    assert!(matches!(
        with(|c| c.algorithms.clear()),
        Err(ConfigError::NoAlgorithms { .. })
    ));
    assert!(matches!(
        with(|c| c.audiences.clear()),
        Err(ConfigError::NoAudiences { .. })
    ));
    assert!(matches!(
        with(|c| c.issuer = "http://idp.example.com".into()),
        Err(ConfigError::InsecureUrl { .. })
    ));
    assert!(matches!(
        with(|c| c.jwks_uri = Some(Url::parse("http://idp.example.com/jwks").unwrap())),
        Err(ConfigError::InsecureUrl { .. })
    ));
    assert!(matches!(
        with(|c| c.issuer = "not a url".into()),
        Err(ConfigError::IssuerUrl { .. })
    ));
    assert!(matches!(
        with(|c| c.claims.subject.clear()),
        Err(ConfigError::EmptyClaimName {
            what: "subject",
            ..
        })
    ));
    assert!(matches!(
        with(|c| c.audience_claim.clear()),
        Err(ConfigError::EmptyClaimName {
            what: "audience",
            ..
        })
    ));
    assert!(with(|c| c.claims.groups.clear()).is_ok(), "groups unmapped");
    assert!(matches!(
        IssuerConfig::validate_all(&[good.clone(), good.clone()]),
        Err(ConfigError::Duplicate { .. })
    ));
}

#[test]
fn attacker_strings_are_sanitised_before_being_echoed() {
    assert_eq!(echo("iss\n\u{1b}[31mx"), "iss??[31mx");
    let long = echo(&"a".repeat(1000));
    assert_eq!(long.chars().count(), MAX_ECHO_CHARS + 1);
}

#[test]
fn errors_keep_their_sources() {
    let err = OidcError::from(malformed("!.e30.x"));
    let source = err.source().unwrap();
    assert!(source.source().is_some(), "the base64 error is kept");
    assert!(!err.is_unavailable());
}

#[test]
fn id_tokens_cannot_pass_as_access_tokens_when_types_are_listed() {
    let with_types = |types: &[&str]| {
        let mut config = IssuerConfig::new(ISS, ["api"]);
        config.token_types = types.iter().map(|t| normalise_token_type(t)).collect();
        issuer(config)
    };
    let rfc9068 = with_types(&["at+jwt"]);
    let cognito = with_types(&["access"]);
    let any = with_types(&[]);
    let access = claims(json!({ "token_use": "access" }));
    let id = claims(json!({ "token_use": "id" }));
    let none = Map::new();
    let typ = |t: &str| Some(json!(t));
    // (issuer, typ header, claims, accepted)
    type Case<'a> = (&'a IssuerState, Option<Value>, &'a Map<String, Value>, bool);
    let cases: [Case; 14] = [
        (&rfc9068, typ("at+jwt"), &none, true),
        (&rfc9068, typ("AT+JWT"), &none, true),
        (&rfc9068, typ("application/at+jwt"), &none, true),
        // An ID token (typ JWT, or no typ at all) is not an access token.
        (&rfc9068, typ("JWT"), &none, false),
        (&rfc9068, None, &none, false),
        // Declaring a listed type does not excuse an unlisted one.
        (&rfc9068, typ("at+jwt"), &id, false),
        (&rfc9068, Some(json!(["at+jwt"])), &none, false),
        (&rfc9068, Some(json!(null)), &none, false),
        (&cognito, None, &access, true),
        (&cognito, None, &id, false),
        (&cognito, typ("JWT"), &access, false),
        (&cognito, None, &claims(json!({ "token_use": 1 })), false),
        // Without `token_types` nothing is checked.
        (&any, typ("JWT"), &id, true),
        (&any, None, &none, true),
    ];
    for (state, typ, claims, accepted) in cases {
        let result = state.check_token_type(typ.as_ref(), claims);
        assert_eq!(result.is_ok(), accepted, "{typ:?} {claims:?}: {result:?}");
        if let Err(e) = result {
            assert!(matches!(e, OidcError::TokenTypeNotAllowed { .. }), "{e:?}");
        }
    }
}

#[test]
fn a_discovered_jwks_uri_cannot_point_a_remote_issuer_at_internal_hosts() {
    let url = |s: &str| Url::parse(s).unwrap();
    let remote = url("https://idp.example.com/.well-known/openid-configuration");
    let local = url("http://127.0.0.1:9400/.well-known/openid-configuration");
    for (jwks, from_remote_ok) in [
        ("https://idp.example.com/keys", true),
        ("https://keys.example.net/jwks", true),
        ("https://10.0.0.5/jwks", true),
        ("http://127.0.0.1:9400/jwks", false),
        ("https://127.0.0.2/jwks", false),
        ("https://localhost/jwks", false),
        ("https://LOCALHOST./jwks", false),
        ("https://metadata.localhost/jwks", false),
        ("http://169.254.169.254/latest/meta-data/", false),
        ("https://[::1]/jwks", false),
        ("https://[fe80::1]/jwks", false),
        ("https://[::ffff:169.254.169.254]/jwks", false),
        ("https://0.0.0.0/jwks", false),
        ("https://[::]/jwks", false),
    ] {
        let result = keys::check_discovered_jwks_uri(&remote, url(jwks));
        assert_eq!(result.is_ok(), from_remote_ok, "{jwks}: {result:?}");
        if !from_remote_ok {
            assert!(
                matches!(result, Err(KeyFetchError::UnsafeJwksUri { .. })),
                "{jwks}"
            );
        }
        // A loopback issuer (local development, the test issuer) may.
        assert!(keys::check_discovered_jwks_uri(&local, url(jwks)).is_ok());
    }
}
