use super::*;
use std::time::Duration;

fn entry(sans: &[&str]) -> Certificate {
    Certificate {
        name: "gw".into(),
        role: "payments-gw".into(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        validity: Duration::from_secs(30 * 86400),
        renew_before: Duration::from_secs(7 * 86400),
        secret: "kp/certs/gw".into(),
        ca_secret: "kp/ca".into(),
    }
}

fn test_ca() -> (SecretValue, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    let json = serde_json::json!({"cert_pem": cert.pem(), "key_pem": key.serialize_pem()});
    (SecretValue::new(json.to_string()), key.serialize_pem())
}

#[test]
fn sans_parse_and_garbage_is_refused() {
    assert_eq!(
        SubjectAltName::parse("GW.Internal").unwrap(),
        SubjectAltName::Dns("gw.internal".into())
    );
    assert!(matches!(
        SubjectAltName::parse("10.0.0.7").unwrap(),
        SubjectAltName::Ip(_)
    ));
    assert!(matches!(
        SubjectAltName::parse("::1").unwrap(),
        SubjectAltName::Ip(_)
    ));
    assert!(matches!(
        SubjectAltName::parse("spiffe://kp/payments").unwrap(),
        SubjectAltName::Uri(_)
    ));
    assert!(matches!(
        SubjectAltName::parse("*.gw.internal").unwrap(),
        SubjectAltName::Dns(_)
    ));
    for garbage in [
        "bad_name",
        "a..b",
        "-a.b",
        "héllo.example",
        "http://",
        "*",
        "a b",
    ] {
        assert!(SubjectAltName::parse(garbage).is_err(), "{garbage}");
    }
}

#[test]
fn issued_certificates_verify_and_mismatches_do_not() {
    let (ca_secret, _) = test_ca();
    let ca = CertificateAuthority::from_secret("kp/ca", &ca_secret).unwrap();
    let cert = entry(&["gw.internal", "10.0.0.7", "spiffe://kp/gw"]);
    let now = Utc::now();
    let issued = ca.issue(&cert, now).unwrap();
    let facts = ca
        .verify("kp/certs/gw", &issued.secret_value(), &cert, now)
        .unwrap();
    assert_eq!(facts.common_name.as_deref(), Some("payments-gw"));
    assert_eq!(facts.sans.len(), 3);
    assert_eq!(facts.not_after, issued.not_after);

    let other = entry(&["gw.internal"]);
    assert!(matches!(
        ca.verify("kp/certs/gw", &issued.secret_value(), &other, now),
        Err(CertificateError::Verification { .. })
    ));
    let (foreign_secret, _) = test_ca();
    let foreign = CertificateAuthority::from_secret("kp/ca2", &foreign_secret).unwrap();
    let err = foreign
        .verify("kp/certs/gw", &issued.secret_value(), &cert, now)
        .unwrap_err();
    assert!(
        matches!(err, CertificateError::Verification { .. }),
        "{err}"
    );
}

#[test]
fn a_ca_whose_key_is_not_its_certificates_is_refused_without_leaking_it() {
    let (ca_secret, _) = test_ca();
    let (_, other_key) = test_ca();
    let mut json: serde_json::Value = serde_json::from_str(ca_secret.expose()).unwrap();
    json["key_pem"] = other_key.clone().into();
    let err = CertificateAuthority::from_secret("kp/ca", &SecretValue::new(json.to_string()))
        .unwrap_err();
    assert!(err.to_string().contains("not the key"), "{err}");
    let err = CertificateAuthority::from_secret("kp/ca", &SecretValue::new(other_key.clone()))
        .unwrap_err();
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}
