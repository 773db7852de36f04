//! Rotation cannot eat its own keys, against moto and the real broker:
//!
//! * a policy that names the signing key, a CA or the admin token as a secret
//!   rotation writes is refused — at load, or (the admin token lives in the
//!   configuration) when the `rotate` function starts — with a message naming
//!   both uses, and the key secrets are read back from moto untouched;
//! * a tenant or certificate whose role is a broker super-user (read from the
//!   broker's runtime configuration) or a `pulsar.admin_roles` entry gets a
//!   `forbidden_role` failure and no secret is created, in every entry point
//!   (scheduled cycle, dry run, rotation step), while its neighbours rotate;
//!   when the super-users cannot be read, nothing is minted at all.

use aws_sdk_secretsmanager::Client;
use base64::Engine as _;
use kong_pulsar::config::Config;
use kong_pulsar::rotation::RotationError;
use kong_pulsar::rotation::handler::{RotateError, Rotator, StartupError};
use kp_tests::{logs, secrets, stack, unique};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// The secrets rotation must never write, created fresh in moto.
struct Keys {
    client: Client,
    signing: String,
    admin: String,
    ca: String,
}

async fn keys() -> Keys {
    logs::global();
    let stack = stack();
    let client = Client::new(&stack.aws_config().await);
    let keys = Keys {
        signing: unique("kong-pulsar/signing"),
        admin: unique("kong-pulsar/admin-token"),
        ca: unique("kong-pulsar/ca"),
        client,
    };
    let read = |p: &Option<std::path::PathBuf>| {
        std::fs::read_to_string(p.as_ref().expect("the stack has a TLS CA")).unwrap()
    };
    let key = base64::engine::general_purpose::STANDARD.encode(stack.token_secret());
    for (name, value) in [
        (&keys.signing, json!({ "alg": "HS256", "key": key })),
        (&keys.admin, json!({ "token": stack.superuser_token() })),
        (
            &keys.ca,
            json!({ "cert_pem": read(&stack.tls_ca_cert_file), "key_pem": read(&stack.tls_ca_key_file) }),
        ),
    ] {
        keys.client
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
    }
    keys
}

impl Keys {
    /// Every version of the key secrets with its value: what must not change.
    async fn snapshot(&self) -> Vec<(String, Vec<String>, String)> {
        let mut all = Vec::new();
        for secret in [&self.signing, &self.admin, &self.ca] {
            let stages = secrets::stages(&self.client, secret).await;
            let (_, value) = secrets::staged(&self.client, secret, "AWSCURRENT")
                .await
                .expect("AWSCURRENT");
            let mut versions: Vec<String> = stages.keys().cloned().collect();
            versions.sort();
            all.push((secret.clone(), versions, value));
        }
        all
    }

    async fn exists(&self, secret: &str) -> bool {
        self.client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .is_ok()
    }

    /// A rotator over `policy` with these keys, as the function builds it.
    async fn rotator(&self, policy: &str, admin_secret: &str) -> Result<Rotator, String> {
        let stack = stack();
        let vars = [
            ("KP_POLICY", policy.to_owned()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("PULSAR_ADMIN_URL", stack.admin_url.to_string()),
            ("KP_ADMIN_TOKEN_SECRET", admin_secret.to_owned()),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        Rotator::build(&config, &stack.aws_config().await).map_err(|e| match e {
            StartupError::Policy(e) => format!("policy: {e}"),
            other => other.to_string(),
        })
    }
}

/// A policy with one tenant (`role`, `token_secret`) and, when given, one
/// certificate entry (`cert_role`, `cert_secret`) issued from `ca`.
fn policy(
    keys: &Keys,
    tenant: &str,
    role: &str,
    token_secret: &str,
    cert: Option<(&str, &str)>,
) -> String {
    let mut yaml = format!(
        "version: 1\npulsar: {{ cluster: standalone, admin_roles: [kp-test-admin], \
         token_signing_secret: {} }}\ntenants:\n  {tenant}:\n    role: {role}\n    \
         token_secret: \"{token_secret}\"\n    token_ttl: 24h\n    namespaces: {{ orders: {{}} }}\n\
         rules: []\n",
        keys.signing
    );
    if let Some((cert_role, cert_secret)) = cert {
        yaml.push_str(&format!(
            "certificates:\n  - name: {tenant}-client\n    role: {cert_role}\n    sans: [gw.internal]\n    \
             validity: 30d\n    renew_before: 7d\n    secret: \"{cert_secret}\"\n    ca_secret: {}\n",
            keys.ca
        ));
    }
    yaml
}

async fn invoke(rotator: &Rotator, payload: Value) -> Result<Value, RotateError> {
    rotator
        .handle(LambdaEvent::new(payload, Context::default()))
        .await
}

#[tokio::test]
async fn a_policy_typo_naming_the_signing_key_or_a_ca_as_a_written_secret_is_refused_at_load() {
    let keys = keys().await;
    let before = keys.snapshot().await;
    let tenant = unique("typo");
    let tokens = format!("kong-pulsar/tokens/{tenant}");
    let certs = format!("kong-pulsar/certs/{tenant}");
    let arn =
        |name: &str| format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbC123");
    let cases = [
        // token_secret: the signing key, by name and by full ARN
        (
            policy(&keys, &tenant, "typo-gw", &keys.signing, None),
            vec!["tenants", "token_secret", "pulsar.token_signing_secret"],
        ),
        (
            policy(&keys, &tenant, "typo-gw", &arn(&keys.signing), None),
            vec!["tenants", "pulsar.token_signing_secret"],
        ),
        // token_secret: the CA
        (
            policy(
                &keys,
                &tenant,
                "typo-gw",
                &keys.ca,
                Some(("typo-gw", &certs)),
            ),
            vec!["ca_secret", "tenants"],
        ),
        // a certificate's secret: the CA (its own or by ARN), the signing key
        (
            policy(
                &keys,
                &tenant,
                "typo-gw",
                &tokens,
                Some(("typo-gw", &arn(&keys.ca))),
            ),
            vec!["certificates[0].ca_secret", "certificates[0].secret"],
        ),
        (
            policy(
                &keys,
                &tenant,
                "typo-gw",
                &tokens,
                Some(("typo-gw", &keys.signing)),
            ),
            vec!["certificates[0].secret", "pulsar.token_signing_secret"],
        ),
    ];
    for (yaml, named) in cases {
        let err = keys
            .rotator(&yaml, &keys.admin)
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{yaml}"));
        assert!(err.starts_with("policy: "), "{err}");
        for what in named {
            assert!(err.contains(what), "{what} not in {err}\n{yaml}");
        }
        assert!(err.contains("already used by"), "{err}");
    }
    assert_eq!(keys.snapshot().await, before, "no key secret was written");
}

#[tokio::test]
async fn an_admin_token_secret_the_policy_also_names_stops_rotate_at_start() {
    let keys = keys().await;
    let tenant = unique("typo");
    let certs = format!("kong-pulsar/certs/{tenant}");
    let arn = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-Zz9xY8",
        keys.admin
    );
    // The policy writes into the admin token (a tenant's or a certificate's
    // secret), or reads it as the signing key or a CA.
    let cases = [
        (
            policy(&keys, &tenant, "typo-gw", &keys.admin, None),
            "token_secret",
        ),
        (
            policy(&keys, &tenant, "typo-gw", &arn, None),
            "token_secret",
        ),
        (
            policy(
                &keys,
                &tenant,
                "typo-gw",
                &format!("kong-pulsar/tokens/{tenant}"),
                Some(("typo-gw", &keys.admin)),
            ),
            "certificates[0].secret",
        ),
    ];
    let before = keys.snapshot().await;
    for (yaml, used_as) in &cases {
        let err = keys
            .rotator(yaml, &keys.admin)
            .await
            .err()
            .expect("refused");
        assert!(err.contains("KP_ADMIN_TOKEN_SECRET"), "{err}");
        assert!(err.contains(&keys.admin), "{err}");
        assert!(err.contains(used_as), "{used_as} not in {err}");
    }
    // The admin token named as the signing key or the CA, from the config side.
    let fine = policy(
        &keys,
        &tenant,
        "typo-gw",
        &format!("kong-pulsar/tokens/{tenant}"),
        Some(("typo-gw", &certs)),
    );
    for (admin, used_as) in [
        (&keys.signing, "pulsar.token_signing_secret"),
        (&keys.ca, "certificates[0].ca_secret"),
    ] {
        let err = keys.rotator(&fine, admin).await.err().expect("refused");
        assert!(
            err.contains(used_as) && err.contains("KP_ADMIN_TOKEN_SECRET"),
            "{err}"
        );
    }
    assert_eq!(keys.snapshot().await, before, "no key secret was written");
    assert!(!keys.exists(&format!("kong-pulsar/tokens/{tenant}")).await);
}

#[tokio::test]
async fn a_tenant_whose_role_is_the_broker_superuser_gets_no_token() {
    let keys = keys().await;
    let superuser = &stack().superuser_role;
    let (tenant, neighbour) = (unique("su"), unique("ok"));
    let (su_secret, ok_secret) = (
        format!("kong-pulsar/tokens/{tenant}"),
        format!("kong-pulsar/tokens/{neighbour}"),
    );
    let yaml = format!(
        "version: 1\npulsar: {{ cluster: standalone, admin_roles: [kp-test-admin], \
         token_signing_secret: {} }}\ntenants:\n  {tenant}:\n    role: {superuser}\n    \
         token_secret: {su_secret}\n    token_ttl: 24h\n    namespaces: {{ orders: {{}} }}\n  \
         {neighbour}:\n    role: {neighbour}-gw\n    token_secret: {ok_secret}\n    token_ttl: 24h\n    \
         namespaces: {{ orders: {{}} }}\nrules:\n  - name: produce\n    when: {{ any: true }}\n    \
         allow: {{ tenant: {neighbour}, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n",
        keys.signing
    );
    let rotator = keys.rotator(&yaml, &keys.admin).await.unwrap();

    for dry_run in [true, false] {
        let out = invoke(&rotator, json!({ "action": "cycle", "dryRun": dry_run }))
            .await
            .unwrap();
        let tokens = out["tokens"].as_array().unwrap();
        let su = tokens
            .iter()
            .find(|t| t["name"] == tenant.as_str())
            .unwrap();
        assert_eq!(su["outcome"], "failed", "{su}");
        assert_eq!(su["step"], "forbidden_role", "{su}");
        let error = su["error"].as_str().unwrap();
        assert!(
            error.contains(superuser.as_str()) && error.contains("superUserRoles"),
            "{error}"
        );
        assert!(
            out["failedTenants"]
                .as_array()
                .unwrap()
                .contains(&json!(tenant))
        );
        let ok = tokens
            .iter()
            .find(|t| t["name"] == neighbour.as_str())
            .unwrap();
        let expected = if dry_run { "due" } else { "created" };
        assert_eq!(ok["outcome"], expected, "the neighbour rotates: {ok}");
    }
    assert!(
        !keys.exists(&su_secret).await,
        "no token was minted for the super-user"
    );
    assert!(keys.exists(&ok_secret).await);
    let all = logs::global().text();
    assert!(
        !all.contains(stack().superuser_token()),
        "the super-user token was logged"
    );
}

#[tokio::test]
async fn a_certificate_for_an_admin_role_or_the_superuser_is_never_issued() {
    let keys = keys().await;
    for role in ["kp-test-admin", stack().superuser_role.as_str()] {
        let tenant = unique("cert");
        let cert_secret = format!("kong-pulsar/certs/{tenant}");
        let yaml = policy(
            &keys,
            &tenant,
            &format!("{tenant}-gw"),
            &format!("kong-pulsar/tokens/{tenant}"),
            Some((role, &cert_secret)),
        );
        let rotator = keys.rotator(&yaml, &keys.admin).await.unwrap();
        let out = invoke(&rotator, json!({ "action": "rotate" }))
            .await
            .unwrap();
        let cert = &out["certificates"][0];
        assert_eq!(cert["step"], "forbidden_role", "{role}: {cert}");
        let error = cert["error"].as_str().unwrap();
        assert!(error.contains(role), "{error}");
        let why = if role == "kp-test-admin" {
            "pulsar.admin_roles"
        } else {
            "superUserRoles"
        };
        assert!(error.contains(why), "{error}");
        assert!(
            !keys.exists(&cert_secret).await,
            "{role}: a certificate was issued"
        );
        // The tenant's own token is unaffected.
        assert_eq!(out["tokens"][0]["outcome"], "created", "{out}");
    }
}

#[tokio::test]
async fn a_rotation_step_for_a_superuser_secret_is_refused_before_anything_is_minted() {
    let keys = keys().await;
    let tenant = unique("su-step");
    let secret = format!("kong-pulsar/tokens/{tenant}");
    let superuser = &stack().superuser_role;
    // Someone stored a super-user token there by hand; a native rotation
    // must not mint a fresh one.
    keys.client
        .create_secret()
        .name(&secret)
        .secret_string(json!({ "token": "placeholder", "role": superuser }).to_string())
        .send()
        .await
        .unwrap();
    let token = secrets::begin_native_rotation(&keys.client, &secret).await;
    let yaml = policy(&keys, &tenant, superuser, &secret, None);
    let rotator = keys.rotator(&yaml, &keys.admin).await.unwrap();
    let err = invoke(
        &rotator,
        json!({ "Step": "createSecret", "SecretId": secret, "ClientRequestToken": token }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RotateError::Step(RotationError::ForbiddenRole { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("superUserRoles"), "{err}");
    assert!(
        secrets::staged(&keys.client, &secret, "AWSPENDING")
            .await
            .is_none(),
        "the pending version got a value"
    );
}

#[tokio::test]
async fn a_tenant_whose_role_is_an_admin_role_never_reaches_a_cycle() {
    let keys = keys().await;
    let tenant = unique("adm");
    let secret = format!("kong-pulsar/tokens/{tenant}");
    let yaml = policy(&keys, &tenant, "kp-test-admin", &secret, None);
    let err = keys
        .rotator(&yaml, &keys.admin)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("kp-test-admin") && err.contains("pulsar.admin_roles"),
        "{err}"
    );
    assert!(!keys.exists(&secret).await, "no token was minted");
}

#[tokio::test]
async fn when_the_superusers_cannot_be_read_nothing_is_minted_blind() {
    let keys = keys().await;
    // An admin token the broker rejects: the super-user list is unknown.
    let bogus = unique("kong-pulsar/admin-bogus");
    let bogus_token = stack().mint_token("not-a-superuser");
    keys.client
        .create_secret()
        .name(&bogus)
        .secret_string(json!({ "token": bogus_token }).to_string())
        .send()
        .await
        .unwrap();
    let tenant = unique("blind");
    let secret = format!("kong-pulsar/tokens/{tenant}");
    let yaml = policy(&keys, &tenant, &format!("{tenant}-gw"), &secret, None);
    let rotator = keys.rotator(&yaml, &bogus).await.unwrap();
    let out = invoke(&rotator, json!({ "action": "rotate" }))
        .await
        .unwrap();
    let token = &out["tokens"][0];
    assert_eq!(token["step"], "forbidden_role", "{out}");
    let error = token["error"].as_str().unwrap();
    assert!(error.contains("could not be read"), "{error}");
    assert!(!keys.exists(&secret).await, "a token was minted blind");
    assert!(
        !out.to_string()
            .contains(stack().mint_token("not-a-superuser").as_str())
    );
}
