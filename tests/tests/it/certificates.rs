//! Certificate issuance and renewal against moto: certificates issued from a
//! CA kept in Secrets Manager, staged `AWSPENDING`, checked, promoted; the
//! four-step protocol for certificate secrets; and, when the stack runs a TLS
//! listener, proof that an issued certificate authenticates to the real
//! broker as its role.
//!
//! Issued certificates are checked here with x509-parser directly (signature
//! against the CA's public key, CN, SANs, key), not with the library's own
//! verifier, so a bug there cannot hide one in issuance.
//!
//! moto cannot run a rotation Lambda; as in `rotation.rs`, `RotateSecret` with
//! a Lambda ARN that does not exist leaves exactly the state AWS hands the
//! rotation function (rotation enabled, a value-less `AWSPENDING` version).

use std::collections::HashMap;
use std::net::IpAddr;

use aws_sdk_secretsmanager::Client;
use chrono::{DateTime, Utc};
use kong_pulsar::policy::Policy;
use kong_pulsar::rotation::kinds::certificate::{CertificateError, CertificateKind};
use kong_pulsar::rotation::{
    FailedStep, ForbiddenRoles, Outcome, Reason, RotateOptions, RotationError, RotationStep,
    SecretReport, StepAction, StepRefused, cycle, describe, rotation_step,
};
use kong_pulsar::telemetry::error_chain;
use kp_tests::{logs, secrets, stack, unique};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use x509_parser::extensions::GeneralName;

/// A CA secret value `{"cert_pem","key_pem"}` for a fresh ECDSA test CA.
fn test_ca() -> Value {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, unique("kp-test-ca"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    json!({ "cert_pem": cert.pem(), "key_pem": key.serialize_pem() })
}

/// One `certificates:` entry of a test policy.
#[derive(Clone)]
struct Entry {
    name: String,
    role: String,
    sans: Vec<String>,
    validity: &'static str,
    renew_before: &'static str,
    secret: String,
    ca_secret: String,
}

impl Entry {
    fn new(ca_secret: &str) -> Self {
        let name = unique("cert");
        Self {
            role: unique("cert-role"),
            sans: vec![
                "gw.internal".into(),
                "10.0.0.7".into(),
                "spiffe://kong-pulsar/gw".into(),
            ],
            validity: "30d",
            renew_before: "7d",
            secret: format!("kong-pulsar/certs/{name}"),
            ca_secret: ca_secret.to_owned(),
            name,
        }
    }
}

struct Fixture {
    client: Client,
}

async fn fixture() -> Fixture {
    logs::global();
    Fixture {
        client: Client::new(&stack().aws_config().await),
    }
}

fn policy(entries: &[&Entry]) -> Policy {
    let mut yaml = "version: 1\npulsar: { cluster: standalone, admin_roles: [], \
                    token_signing_secret: kong-pulsar/unused-signing }\ntenants: {}\nrules: []\n\
                    certificates:\n"
        .to_owned();
    for e in entries {
        yaml.push_str(&format!(
            "  - name: {}\n    role: {}\n    sans: {}\n    validity: {}\n    renew_before: {}\n    secret: {}\n    ca_secret: {}\n",
            e.name,
            e.role,
            serde_json::to_string(&e.sans).unwrap(),
            e.validity,
            e.renew_before,
            e.secret,
            e.ca_secret
        ));
    }
    Policy::from_str(&yaml, None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

impl Fixture {
    async fn put_ca(&self, value: &Value) -> String {
        let name = unique("kong-pulsar/ca");
        self.client
            .create_secret()
            .name(&name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        name
    }

    async fn renew(&self, entries: &[&Entry], options: RotateOptions) -> Vec<SecretReport> {
        let policy = policy(entries);
        let kind = CertificateKind::new(policy.certificates());
        cycle(&kind, &self.client, options, &ForbiddenRoles::none()).await
    }

    async fn run(&self, entries: &[&Entry]) -> Vec<SecretReport> {
        self.renew(entries, RotateOptions::default()).await
    }

    /// (version id, value) of the version carrying `stage`.
    async fn staged(&self, secret: &str, stage: &str) -> Option<(String, Value)> {
        let (version_id, value) = secrets::staged(&self.client, secret, stage).await?;
        Some((version_id, serde_json::from_str(&value).unwrap()))
    }

    async fn current(&self, secret: &str) -> (String, Value) {
        self.staged(secret, "AWSCURRENT")
            .await
            .unwrap_or_else(|| panic!("{secret} has no AWSCURRENT"))
    }

    async fn stages(&self, secret: &str) -> HashMap<String, Vec<String>> {
        secrets::stages(&self.client, secret).await
    }

    async fn exists(&self, secret: &str) -> bool {
        self.client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .is_ok()
    }

    async fn step(
        &self,
        entries: &[&Entry],
        step: RotationStep,
        secret: &str,
        token: &str,
    ) -> Result<StepAction, RotationError> {
        let event = secrets::step_event(step, secret, token);
        let policy = policy(entries);
        let kind = CertificateKind::new(policy.certificates());
        let metadata = describe(&self.client, &event.secret_id).await?;
        rotation_step(
            &kind,
            &event,
            &metadata,
            &self.client,
            &ForbiddenRoles::none(),
        )
        .await
        .map(|report| report.action)
    }

    async fn begin_native_rotation(&self, secret: &str) -> String {
        secrets::begin_native_rotation(&self.client, secret).await
    }
}

fn only(reports: &[SecretReport]) -> &Outcome {
    assert_eq!(reports.len(), 1, "{reports:?}");
    &reports[0].outcome
}

fn pem_der(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    block.contents
}

/// Checks a certificate secret independently of the library: chains to the
/// CA, role as CN, the SANs, the key is the certificate's, `not_after` agrees.
/// Returns the certificate's `not_after`.
fn assert_issued(value: &Value, ca: &Value, e: &Entry) -> DateTime<Utc> {
    let leaf_der = pem_der(value["cert_pem"].as_str().unwrap());
    let ca_der = pem_der(ca["cert_pem"].as_str().unwrap());
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("the certificate is signed by the CA");
    assert_eq!(leaf.issuer(), ca_cert.subject());
    assert_eq!(pem_der(value["chain_pem"].as_str().unwrap()), ca_der);
    let cn: Vec<_> = leaf
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cn, vec![e.role.clone()]);
    let mut sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::URI(u) => u.to_string(),
            GeneralName::IPAddress(b) => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    sans.sort();
    let mut wanted = e.sans.clone();
    wanted.sort();
    assert_eq!(sans, wanted);
    let key = KeyPair::from_pem(value["key_pem"].as_str().unwrap()).unwrap();
    assert_eq!(
        key.public_key_raw(),
        leaf.public_key().subject_public_key.data.as_ref()
    );
    assert!(leaf.validity().is_valid());
    let not_after =
        DateTime::<Utc>::from_timestamp(leaf.validity().not_after.timestamp(), 0).unwrap();
    let stored: DateTime<Utc> = value["not_after"].as_str().unwrap().parse().unwrap();
    assert_eq!(stored, not_after);
    not_after
}

#[tokio::test]
async fn a_missing_certificate_is_issued_from_the_ca_then_left_alone_while_fresh() {
    let fx = fixture().await;
    let ca = test_ca();
    let e = Entry::new(&fx.put_ca(&ca).await);

    let reports = fx.run(&[&e]).await;
    let Outcome::Created {
        reason: Reason::Missing,
        version_id,
        expires_at: not_after,
        fingerprint,
        ..
    } = only(&reports)
    else {
        panic!("{reports:?}")
    };
    let (current_version, value) = fx.current(&e.secret).await;
    assert_eq!(&current_version, version_id);
    assert_eq!(assert_issued(&value, &ca, &e), *not_after);
    let days = (*not_after - Utc::now()).num_days();
    assert!((29..=30).contains(&days), "{not_after}");
    assert_eq!(fingerprint.len(), 12, "{fingerprint}");

    let again = fx.run(&[&e]).await;
    assert!(
        matches!(only(&again), Outcome::Fresh { expires_at: n } if n == not_after),
        "{again:?}"
    );
    assert_eq!(fx.stages(&e.secret).await.len(), 1);
}

#[tokio::test]
async fn a_certificate_inside_its_renewal_window_is_renewed_through_awspending() {
    let fx = fixture().await;
    let ca = test_ca();
    let short = Entry {
        validity: "1h",
        renew_before: "5m",
        ..Entry::new(&fx.put_ca(&ca).await)
    };
    fx.run(&[&short]).await;
    let (old_version, old) = fx.current(&short.secret).await;
    let old_not_after = assert_issued(&old, &ca, &short);

    // The same secret under a policy whose window covers the whole hour.
    let long = Entry {
        validity: "365d",
        renew_before: "90d",
        ..short.clone()
    };
    let reports = fx.run(&[&long]).await;
    let Outcome::Rotated {
        reason,
        version_id,
        previous_version_id,
        old_expires_at: reported_old,
        new_expires_at: new_not_after,
        ..
    } = only(&reports)
    else {
        panic!("{reports:?}")
    };
    assert_eq!(*reason, Reason::Expiring);
    assert_eq!(previous_version_id, &old_version);
    assert_eq!(*reported_old, Some(old_not_after));
    let (current_version, value) = fx.current(&long.secret).await;
    assert_eq!(&current_version, version_id);
    assert_eq!(assert_issued(&value, &ca, &long), *new_not_after);
    assert!((*new_not_after - Utc::now()).num_days() >= 364);
    assert_ne!(value["key_pem"], old["key_pem"], "a renewal has a new key");
    let stages = fx.stages(&long.secret).await;
    assert_eq!(stages[version_id], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(stages[&old_version], vec!["AWSPREVIOUS".to_owned()]);

    // Renewed for a year, it is outside the 90-day window now.
    let again = fx.run(&[&long]).await;
    assert!(matches!(only(&again), Outcome::Fresh { .. }), "{again:?}");
}

#[tokio::test]
async fn changed_sans_force_and_dry_run() {
    let fx = fixture().await;
    let ca = test_ca();
    let e = Entry::new(&fx.put_ca(&ca).await);
    let missing = Entry::new(&e.ca_secret);
    fx.run(&[&e]).await;
    let before = fx.stages(&e.secret).await;

    // Dry run: the missing one and the one whose SANs changed are due;
    // nothing is written.
    let changed = Entry {
        sans: vec!["gw2.internal".into()],
        ..e.clone()
    };
    let dry = fx
        .renew(
            &[&changed, &missing],
            RotateOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(
            dry[0].outcome,
            Outcome::Due {
                reason: Reason::SubjectChanged,
                expires_at: Some(_)
            }
        ),
        "{dry:?}"
    );
    assert!(
        matches!(
            dry[1].outcome,
            Outcome::Due {
                reason: Reason::Missing,
                expires_at: None
            }
        ),
        "{dry:?}"
    );
    assert_eq!(fx.stages(&e.secret).await, before);
    assert!(!fx.exists(&missing.secret).await);

    let renewed = fx.run(&[&changed]).await;
    assert!(
        matches!(
            only(&renewed),
            Outcome::Rotated {
                reason: Reason::SubjectChanged,
                ..
            }
        ),
        "{renewed:?}"
    );
    assert_issued(&fx.current(&e.secret).await.1, &ca, &changed);

    let forced = fx
        .renew(
            &[&changed],
            RotateOptions {
                force: true,
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(
            only(&forced),
            Outcome::Rotated {
                reason: Reason::Forced,
                ..
            }
        ),
        "{forced:?}"
    );
}

#[tokio::test]
async fn a_broken_ca_fails_its_entry_leaves_awscurrent_alone_and_not_the_others() {
    let fx = fixture().await;
    let ca = test_ca();
    let good_ca = fx.put_ca(&ca).await;
    let e = Entry {
        validity: "1h",
        renew_before: "5m",
        ..Entry::new(&good_ca)
    };
    fx.run(&[&e]).await;
    let (version, value) = fx.current(&e.secret).await;

    // Due (forced), but the CA key is another CA's: refused before issuing.
    let mut mismatched = ca.clone();
    mismatched["key_pem"] = test_ca()["key_pem"].clone();
    let broken = Entry {
        ca_secret: fx.put_ca(&mismatched).await,
        ..e.clone()
    };
    let garbage = Entry {
        ca_secret: fx
            .put_ca(&json!({ "cert_pem": "nope", "key_pem": "nope" }))
            .await,
        ..Entry::new(&good_ca)
    };
    let absent = Entry::new(&unique("kong-pulsar/no-such-ca"));
    let other = Entry::new(&good_ca);
    let reports = fx
        .renew(
            &[&broken, &garbage, &absent, &other],
            RotateOptions {
                force: true,
                ..Default::default()
            },
        )
        .await;
    for (report, why) in reports[..3].iter().zip([
        "not the key of cert_pem",
        "no PEM certificate",
        "does not exist",
    ]) {
        let Outcome::Failed { step, error } = &report.outcome else {
            panic!("{reports:?}")
        };
        assert_eq!(*step, FailedStep::Issuer, "{error}");
        assert!(error.contains(why), "{error}");
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }
    assert!(
        matches!(reports[3].outcome, Outcome::Created { .. }),
        "{reports:?}"
    );
    assert_eq!(fx.current(&e.secret).await, (version, value));
    assert!(!fx.exists(&garbage.secret).await);
}

#[tokio::test]
async fn the_four_step_protocol_rotates_step_by_step_and_each_step_is_idempotent() {
    let fx = fixture().await;
    let ca = test_ca();
    let e = Entry::new(&fx.put_ca(&ca).await);
    fx.run(&[&e]).await;
    let (old_version, old) = fx.current(&e.secret).await;
    let token = fx.begin_native_rotation(&e.secret).await;
    let arn = fx
        .client
        .describe_secret()
        .secret_id(&e.secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let entries = [&e];
    let step = |s| fx.step(&entries, s, &arn, &token);

    let created = step(RotationStep::CreateSecret).await.unwrap();
    let StepAction::Staged { fingerprint, .. } = &created else {
        panic!("{created:?}")
    };
    let (pending_version, pending) = fx.staged(&e.secret, "AWSPENDING").await.unwrap();
    assert_eq!(pending_version, token);
    assert_issued(&pending, &ca, &e);
    let versions = fx.stages(&e.secret).await.len();

    let again = step(RotationStep::CreateSecret).await.unwrap();
    assert!(matches!(again, StepAction::AlreadyStaged), "{again:?}");
    assert_eq!(fx.stages(&e.secret).await.len(), versions);
    assert_eq!(fx.staged(&e.secret, "AWSPENDING").await.unwrap().1, pending);

    for _ in 0..2 {
        let set = step(RotationStep::SetSecret).await.unwrap();
        assert!(matches!(set, StepAction::NothingToSet), "{set:?}");
        let tested = step(RotationStep::TestSecret).await.unwrap();
        assert!(
            matches!(&tested, StepAction::Tested { check } if check["fingerprint"] == fingerprint.as_str()),
            "{tested:?}"
        );
    }
    assert_eq!(fx.current(&e.secret).await.0, old_version);

    let finished = step(RotationStep::FinishSecret).await.unwrap();
    assert!(
        matches!(&finished, StepAction::Promoted { previous_version_id: Some(p) } if *p == old_version),
        "{finished:?}"
    );
    let (current_version, current) = fx.current(&e.secret).await;
    assert_eq!(current_version, token);
    assert_eq!(current, pending);
    let stages = fx.stages(&e.secret).await;
    assert_eq!(stages[&token], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(stages[&old_version], vec!["AWSPREVIOUS".to_owned()]);
    assert_ne!(current, old);

    for s in [
        RotationStep::FinishSecret,
        RotationStep::CreateSecret,
        RotationStep::TestSecret,
    ] {
        let action = step(s).await.unwrap();
        assert!(
            matches!(action, StepAction::AlreadyCurrent),
            "{s:?}: {action:?}"
        );
    }
    assert_eq!(fx.stages(&e.secret).await, stages);

    // Not pending any more, unknown, not a certificate secret, missing.
    kp_tests::assert_err!(
        fx.step(&[&e], RotationStep::TestSecret, &e.secret, &old_version)
            .await,
        RotationError::Refused(StepRefused::NotPending { .. })
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    kp_tests::assert_err!(
        fx.step(&[&e], RotationStep::CreateSecret, &e.secret, &unknown)
            .await,
        RotationError::Refused(StepRefused::UnknownVersion { .. })
    );
    kp_tests::assert_err!(
        fx.step(&[&e], RotationStep::CreateSecret, &e.ca_secret, &token)
            .await,
        RotationError::NotManaged { .. }
    );
    kp_tests::assert_err!(
        fx.step(
            &[&e],
            RotationStep::CreateSecret,
            &unique("kong-pulsar/none"),
            &token,
        )
        .await,
        RotationError::Refused(StepRefused::SecretNotFound { .. })
    );
}

#[tokio::test]
async fn the_protocol_test_step_refuses_a_certificate_from_another_ca() {
    let fx = fixture().await;
    let ca = test_ca();
    let e = Entry::new(&fx.put_ca(&ca).await);
    fx.run(&[&e]).await;
    let current = fx.current(&e.secret).await;

    // Never enabled for rotation.
    kp_tests::assert_err!(
        fx.step(&[&e], RotationStep::CreateSecret, &e.secret, &current.0)
            .await,
        RotationError::Refused(StepRefused::RotationNotEnabled { .. })
    );

    // A pending certificate issued by another CA (same role and SANs).
    let token = fx.begin_native_rotation(&e.secret).await;
    let foreign = Entry {
        secret: unique("kong-pulsar/certs/foreign"),
        ca_secret: fx.put_ca(&test_ca()).await,
        ..e.clone()
    };
    fx.run(&[&foreign]).await;
    let (_, foreign_value) = fx.current(&foreign.secret).await;
    fx.client
        .put_secret_value()
        .secret_id(&e.secret)
        .client_request_token(&token)
        .secret_string(foreign_value.to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let err = fx
        .step(&[&e], RotationStep::TestSecret, &e.secret, &token)
        .await
        .unwrap_err();
    let RotationError::TestFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<CertificateError>(),
            Some(CertificateError::Verification { .. })
        ),
        "{source:?}"
    );
    assert!(error_chain(&err).contains("not by the CA"), "{err}");
    assert_eq!(fx.current(&e.secret).await, current);
}

#[tokio::test]
async fn one_log_line_per_change_and_no_key_in_logs_or_reports() {
    let fx = fixture().await;
    let ca = test_ca();
    let e = Entry::new(&fx.put_ca(&ca).await);
    let reports = fx
        .renew(
            &[&e],
            RotateOptions {
                force: true,
                ..Default::default()
            },
        )
        .await;
    let reports = [
        reports,
        fx.renew(
            &[&e],
            RotateOptions {
                force: true,
                ..Default::default()
            },
        )
        .await,
    ]
    .concat();
    let text = serde_json::to_string(&reports).unwrap();
    let (_, value) = fx.current(&e.secret).await;
    let logs = logs::global().text();
    for secret_text in [&text, &logs] {
        assert!(!secret_text.contains("PRIVATE KEY"));
        assert!(!secret_text.contains(ca["key_pem"].as_str().unwrap()));
        let key_body: String = value["key_pem"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!secret_text.contains(&key_body));
    }
    let lines = |event: &str| {
        logs.lines()
            .filter(|l| l.contains(&e.secret) && l.contains(&format!("\"event\":\"{event}\"")))
            .count()
    };
    assert_eq!(lines("secret_created"), 1, "{logs}");
    assert_eq!(lines("secret_rotated"), 1, "{logs}");
}

/// The stack's TLS listener, or `None` (with a note) when this stack was
/// started before it had one.
fn tls_stack() -> (&'static url::Url, Value) {
    let s = stack();
    let (Some(url), Some(cert), Some(key)) =
        (&s.tls_service_url, &s.tls_ca_cert_file, &s.tls_ca_key_file)
    else {
        // Every stack started by stack.sh has the TLS listener; a missing one
        // is a stale stack, and this test must not pass without proving TLS.
        panic!(
            "the running stack has no TLS listener (started before it existed); \
             restart it with tests/stack/stack.sh down && tests/stack/stack.sh up"
        );
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    (url, json!({ "cert_pem": read(cert), "key_pem": read(key) }))
}

#[tokio::test]
async fn an_issued_certificate_authenticates_to_the_tls_broker_as_its_role() {
    let (url, ca) = tls_stack();
    let fx = fixture().await;
    // The stack's own CA (openssl, RSA) as the CA secret: the broker trusts it.
    let e = Entry {
        sans: vec!["localhost".into()],
        ..Entry::new(&fx.put_ca(&ca).await)
    };
    let reports = fx.run(&[&e]).await;
    assert!(
        matches!(only(&reports), Outcome::Created { .. }),
        "{reports:?}"
    );
    let (_, value) = fx.current(&e.secret).await;
    assert_issued(&value, &ca, &e);

    let admin = stack().admin();
    let tenant = unique("tls");
    admin.create_tenant(&tenant, &[]).await.unwrap();
    for ns in ["granted", "denied"] {
        admin.create_namespace(&tenant, ns).await.unwrap();
    }
    admin
        .grant(&tenant, "granted", &e.role, &["produce"])
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(unique("kp-tls-witness"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, field: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value[field].as_str().unwrap()).unwrap();
        path
    };
    let (cert, key) = (
        file("client.cert.pem", "cert_pem"),
        file("client.key.pem", "key_pem"),
    );
    let root = kp_tests::workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/stack/tls_witness.py"))
        .arg(url.as_str())
        .arg(stack().tls_ca_cert_file.as_ref().unwrap())
        .arg(&cert)
        .arg(&key)
        .arg(format!("persistent://{tenant}/granted/{}", unique("t")))
        .arg(format!("persistent://{tenant}/denied/{}", unique("t")))
        .output()
        .expect("run tls_witness.py");
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(verdict["granted"], "ok", "{verdict}");
    assert_eq!(verdict["denied"], "AuthorizationError", "{verdict}");
    assert_ne!(verdict["anonymous"], "ok", "{verdict}");
}

/// A CA secret value for a test CA with these key usages, valid until
/// `not_after` (rcgen's far-future default when `None`).
fn ca_with(usages: Vec<KeyUsagePurpose>, not_after: Option<(i32, u8, u8)>) -> Value {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, unique("kp-test-ca"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = usages;
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let cert = params.self_signed(&key).unwrap();
    json!({ "cert_pem": cert.pem(), "key_pem": key.serialize_pem() })
}

fn ca_not_after(ca: &Value) -> DateTime<Utc> {
    let der = pem_der(ca["cert_pem"].as_str().unwrap());
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0).unwrap()
}

#[tokio::test]
async fn replacing_the_ca_renews_its_certificates_with_reason_ca_replaced() {
    let fx = fixture().await;
    let old_ca = test_ca();
    let e = Entry::new(&fx.put_ca(&old_ca).await);
    fx.run(&[&e]).await;
    let (old_version, old) = fx.current(&e.secret).await;
    assert_issued(&old, &old_ca, &e);

    // The operator puts a new CA into the same secret; the old leaf is
    // fresh by date, but no longer chains to what verifiers will trust.
    let new_ca = test_ca();
    fx.client
        .put_secret_value()
        .secret_id(&e.ca_secret)
        .secret_string(new_ca.to_string())
        .send()
        .await
        .unwrap();
    let dry = fx
        .renew(
            &[&e],
            RotateOptions {
                dry_run: true,
                ..RotateOptions::default()
            },
        )
        .await;
    assert!(
        matches!(
            only(&dry),
            Outcome::Due {
                reason: Reason::CaReplaced,
                ..
            }
        ),
        "{dry:?}"
    );
    let reports = fx.run(&[&e]).await;
    let Outcome::Rotated {
        reason: Reason::CaReplaced,
        previous_version_id,
        ..
    } = only(&reports)
    else {
        panic!("{reports:?}")
    };
    assert_eq!(previous_version_id, &old_version);
    let (_, renewed) = fx.current(&e.secret).await;
    assert_issued(&renewed, &new_ca, &e);
    assert_eq!(
        serde_json::to_value(&reports[0]).unwrap()["reason"],
        "ca_replaced"
    );
    // Converged: the renewed leaf is the new CA's.
    let again = fx.run(&[&e]).await;
    assert!(matches!(only(&again), Outcome::Fresh { .. }), "{again:?}");
}

#[tokio::test]
async fn a_ca_expiring_in_ten_days_caps_a_thirty_day_leaf_at_its_own_expiry() {
    let fx = fixture().await;
    let in_ten_days = (Utc::now() + chrono::Duration::days(10)).date_naive();
    let ymd = |d: chrono::NaiveDate| {
        use chrono::Datelike as _;
        (d.year(), d.month() as u8, d.day() as u8)
    };
    let ca = ca_with(vec![KeyUsagePurpose::KeyCertSign], Some(ymd(in_ten_days)));
    let ca_expires = ca_not_after(&ca);
    let e = Entry::new(&fx.put_ca(&ca).await); // validity 30d, renew_before 7d
    let reports = fx.run(&[&e]).await;
    let Outcome::Created { expires_at, .. } = only(&reports) else {
        panic!("{reports:?}")
    };
    assert_eq!(*expires_at, ca_expires, "the leaf ends with its CA");
    let (_, value) = fx.current(&e.secret).await;
    assert_eq!(assert_issued(&value, &ca, &e), ca_expires);
    assert!((ca_expires - Utc::now()).num_days() <= 10);
}

#[tokio::test]
async fn a_ca_that_may_not_sign_certificates_or_is_not_valid_now_issues_nothing() {
    let fx = fixture().await;
    let cases = [
        (
            ca_with(vec![KeyUsagePurpose::DigitalSignature], None),
            "keyCertSign",
        ),
        (ca_with(vec![], None), "keyCertSign"),
        (
            ca_with(vec![KeyUsagePurpose::KeyCertSign], Some((2021, 1, 1))),
            "not valid now",
        ),
    ];
    for (ca, why) in cases {
        let e = Entry::new(&fx.put_ca(&ca).await);
        let reports = fx.run(&[&e]).await;
        match only(&reports) {
            Outcome::Failed {
                step: FailedStep::Issuer,
                error,
            } => {
                assert!(error.contains(why), "{why}: {error}");
                assert!(!error.contains("PRIVATE KEY"), "{error}");
            }
            other => panic!("{why}: {other:?}"),
        }
        assert!(!fx.exists(&e.secret).await, "{why}: nothing was issued");
    }
}
