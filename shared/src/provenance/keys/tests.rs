use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn a_stored_key_set_reads_back_the_same() {
    let set = KeySet::first(at(0)).unwrap();
    let back = KeySet::parse(&set.to_secret_value()).unwrap();
    assert_eq!(back.active_kid(), set.active_kid());
    assert_eq!(back.next_kid(), set.next_kid());
    assert_eq!(back.activated_at(), at(0));
    assert_ne!(set.active_kid(), set.next_kid());
}

#[test]
fn rotation_promotes_next_and_keeps_the_old_public_key() {
    let first = KeySet::first(at(0)).unwrap();
    let second = first.rotated(at(7200), HOUR, 30 * DAY).unwrap();
    assert_eq!(second.active_kid(), first.next_kid());
    assert_eq!(
        second.retired_kids().collect::<Vec<_>>(),
        [first.active_kid()]
    );
    assert_eq!(second.activated_at(), at(7200));
    // The new active key was in the first set's JWKS all along.
    let before = first.jwks(at(7199), 30 * DAY);
    assert!(before.find(second.active_kid()).is_some());
    let after = second.jwks(at(7200), 30 * DAY);
    for kid in [first.active_kid(), second.active_kid(), second.next_kid()] {
        assert!(after.find(kid).is_some(), "{kid} must be listed");
    }
}

#[test]
fn next_signs_only_after_the_lead() {
    let first = KeySet::first(at(0)).unwrap();
    let err = first.rotated(at(60), HOUR, DAY).unwrap_err();
    assert!(
        matches!(
            err,
            KeySetError::TooSoon {
                listed_secs: 60,
                lead_secs: 3600
            }
        ),
        "{err}"
    );
}

#[test]
fn retired_keys_leave_the_jwks_after_the_retention() {
    let a = KeySet::first(at(0)).unwrap();
    let b = a.rotated(at(7200), HOUR, DAY).unwrap();
    let retired = a.active_kid();
    assert!(b.jwks(at(7200 + 86_399), DAY).find(retired).is_some());
    assert!(b.jwks(at(7200 + 86_400), DAY).find(retired).is_none());
    // And the next rotation past the retention drops it from the secret.
    let c = b.rotated(at(7200 + 2 * 86_400), HOUR, DAY).unwrap();
    assert_eq!(c.retired_kids().collect::<Vec<_>>(), [b.active_kid()]);
}

#[test]
fn the_jwks_never_carries_a_private_key() {
    let set = KeySet::first(at(0)).unwrap();
    let json = serde_json::to_value(set.jwks(at(0), DAY)).unwrap();
    for key in json["keys"].as_array().unwrap() {
        let mut names: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    }
    assert!(!format!("{set:?}").contains("PRIVATE"));
}

#[test]
fn a_signature_verifies_with_the_listed_public_key() {
    let set = KeySet::first(at(0)).unwrap();
    let signature = set.sign(b"header.payload").unwrap();
    assert_eq!(signature.len(), 64);
    let jwks = set.jwks(at(0), DAY);
    let jwk = jwks.find(set.active_kid()).unwrap();
    assert!(verifies_with(jwk, b"header.payload", &signature));
    assert!(!verifies_with(jwk, b"header.payloaD", &signature));
    // Another listed key does not verify it.
    let next = jwks.find(set.next_kid()).unwrap();
    assert!(!verifies_with(next, b"header.payload", &signature));
}

#[test]
fn edited_or_foreign_values_are_refused() {
    let set = KeySet::first(at(0)).unwrap();
    let stored: serde_json::Value = serde_json::from_str(set.to_secret_value().expose()).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = stored.clone();
        f(&mut v);
        KeySet::parse(&SecretValue::new(v.to_string()))
    };
    let cases: Vec<(&str, Result<KeySet, KeySetError>)> = vec![
        ("not json", KeySet::parse(&SecretValue::new("hunter2"))),
        ("other alg", with(&|v| v["alg"] = "HS256".into())),
        (
            "kid of another key",
            with(&|v| v["active"]["kid"] = v["next"]["kid"].clone()),
        ),
        (
            "garbage key",
            with(&|v| {
                v["next"]["private_key_pem"] =
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into()
            }),
        ),
        ("unknown field", with(&|v| v["extra"] = 1.into())),
        (
            "retired kid edited",
            with(
                &|v| v["retired"] = serde_json::json!([{"kid": "x", "x": "AA", "y": "AA", "retired_at": "2027-01-01T00:00:00Z"}]),
            ),
        ),
    ];
    for (case, result) in cases {
        let err = result.expect_err(case);
        // Errors name fields and ids, never key material.
        assert!(!err.to_string().contains("BEGIN"), "{case}: {err}");
    }
}

#[test]
fn a_p384_key_is_not_a_p256_key() {
    let pair =
        EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let pem = pem_encode(pair.to_pkcs8v1().unwrap().as_ref());
    assert!(matches!(
        PrivateKey::from_parts(None, pem, at(0), None),
        Err(KeySetError::BadKey { .. })
    ));
}
