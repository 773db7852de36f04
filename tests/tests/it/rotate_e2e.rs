//! The rotate function end to end, invoked through the Lambda Invoke API
//! with the shipped `events/` samples, against the real broker and moto:
//! a scheduled cycle onboards a tenant from the policy (tenant, namespace,
//! grant, token secret), a dry run changes nothing, a second run converges,
//! and the Secrets Manager four-step protocol rotates the token.

use base64::Engine;
use kp_tests::lambda::{Function, event, temp_file};
use kp_tests::{secrets, stack, unique};
use serde_json::{Value, json};

struct Rig {
    function: Function,
    tenant: String,
    role: String,
    token_secret: String,
    cert_secret: String,
    sm: aws_sdk_secretsmanager::Client,
}

async fn rig() -> Rig {
    let stack = stack();
    let sm = aws_sdk_secretsmanager::Client::new(&stack.aws_config().await);
    let (tenant, role) = (unique("onboard"), unique("onboard-gw"));
    let signing = unique("kong-pulsar/signing");
    let admin = unique("kong-pulsar/admin");
    let token_secret = format!("kong-pulsar/tokens/{tenant}");
    let (ca, cert_secret) = (
        unique("kong-pulsar/ca"),
        format!("kong-pulsar/certs/{tenant}"),
    );
    let read = |p: &Option<std::path::PathBuf>| {
        std::fs::read_to_string(p.as_ref().expect("the stack has a TLS CA")).unwrap()
    };
    let ca_value = json!({ "cert_pem": read(&stack.tls_ca_cert_file), "key_pem": read(&stack.tls_ca_key_file) });
    let key = base64::engine::general_purpose::STANDARD.encode(stack.token_secret());
    for (name, value) in [
        (&signing, json!({ "alg": "HS256", "key": key }).to_string()),
        (
            &admin,
            json!({ "token": stack.superuser_token() }).to_string(),
        ),
        (&ca, ca_value.to_string()),
    ] {
        sm.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    let policy = format!(
        r#"version: 1
pulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: {signing} }}
identity:
  oidc:
    - issuer: https://idp.example.com
      audiences: [kong-pulsar]
      algorithms: [RS256]
tenants:
  {tenant}:
    role: {role}
    token_secret: {token_secret}
    token_ttl: 24h
    namespaces:
      orders: {{ deduplication: true }}
rules:
  - name: checkout
    when: {{ issuer: "https://idp.example.com", groups_any: [checkout] }}
    allow: {{ tenant: {tenant}, namespaces: [orders], topics: ["*"], actions: [produce] }}
certificates:
  - name: {tenant}-client
    role: {role}
    sans: [{tenant}.internal]
    validity: 30d
    renew_before: 7d
    secret: {cert_secret}
    ca_secret: {ca}
"#
    );
    let policy_path = temp_file("kp-rotate", "policy.yaml", &policy);
    let function = Function::start(
        "rotate",
        &[
            ("KP_POLICY_FILE", policy_path.display().to_string()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("PULSAR_ADMIN_URL", stack.admin_url.to_string()),
            ("KP_ADMIN_TOKEN_SECRET", admin),
            ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
            ("AWS_REGION", stack.aws_region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ],
    );
    Rig {
        function,
        tenant,
        role,
        token_secret,
        cert_secret,
        sm,
    }
}

impl Rig {
    async fn invoke(&self, payload: &Value) -> Value {
        let (status, out) = self.function.invoke(payload).await;
        assert_eq!(
            status,
            200,
            "rotate failed: {out}\n{}",
            self.function.logs()
        );
        out
    }

    async fn current_token(&self) -> Option<String> {
        let (_, text) = secrets::staged(&self.sm, &self.token_secret, "AWSCURRENT").await?;
        let value: Value = serde_json::from_str(&text).ok()?;
        value["token"].as_str().map(str::to_owned)
    }
}

#[tokio::test]
async fn a_scheduled_cycle_onboards_a_tenant_and_a_second_run_converges() {
    let rig = rig().await;
    let admin = stack().admin();

    // Dry run: the plan, and nothing changed.
    let report = rig.invoke(&event("rotate-scheduled-dry-run.json")).await;
    assert_eq!(report["dryRun"], true);
    let kinds: Vec<&str> = report["reconcile"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"create_tenant") && kinds.contains(&"grant"),
        "{kinds:?}"
    );
    assert!(
        admin
            .get(&format!("/admin/v2/tenants/{}", rig.tenant))
            .await
            .is_err(),
        "dry run created the tenant"
    );
    assert!(
        rig.current_token().await.is_none(),
        "dry run created the secret"
    );

    // The real cycle.
    let report = rig.invoke(&event("rotate-scheduled.json")).await;
    assert_eq!(report["failedTenants"], json!([]), "{report:#}");
    let ns = admin
        .get(&format!(
            "/admin/v2/namespaces/{}/orders/permissions",
            rig.tenant
        ))
        .await
        .unwrap();
    assert_eq!(ns[&rig.role], json!(["produce"]));
    assert_eq!(
        admin
            .get(&format!(
                "/admin/v2/namespaces/{}/orders/deduplication",
                rig.tenant
            ))
            .await
            .unwrap(),
        json!(true)
    );
    let token = rig.current_token().await.expect("token secret created");
    let broker = stack()
        .broker_as(&token)
        .await
        .expect("the minted token authenticates");
    broker
        .producer(&format!("persistent://{}/orders/probe", rig.tenant))
        .await
        .expect("the tenant role may produce where the policy says");

    // The role's client certificate was issued from the CA.
    assert_eq!(
        report["certificates"][0]["outcome"], "created",
        "{report:#}"
    );
    let (_, cert) = secrets::staged(&rig.sm, &rig.cert_secret, "AWSCURRENT")
        .await
        .expect("the certificate secret has an AWSCURRENT version");
    let cert: Value = serde_json::from_str(&cert).unwrap();
    assert!(
        cert["cert_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(cert["key_pem"].as_str().unwrap().contains("PRIVATE KEY"));
    assert!(
        !report.to_string().contains("PRIVATE KEY"),
        "key material in the report"
    );

    // Converged: nothing more to do.
    let again = rig.invoke(&event("rotate-scheduled.json")).await;
    assert_eq!(again["reconcile"]["changes"], json!([]), "{again:#}");
    assert_eq!(again["tokens"][0]["outcome"], "fresh", "{again:#}");
    assert_eq!(again["certificates"][0]["outcome"], "fresh", "{again:#}");
    assert_eq!(again["failedCertificates"], json!([]));
    let manual = rig.invoke(&event("rotate-reconcile-dry-run.json")).await;
    assert_eq!(manual["reconcile"]["changes"], json!([]));
}

#[tokio::test]
async fn the_four_step_protocol_runs_through_the_function_with_the_shipped_events() {
    let rig = rig().await;
    rig.invoke(&event("rotate-scheduled.json")).await;
    let old = rig.current_token().await.expect("created");

    // What Secrets Manager does before invoking the rotation Lambda: enable
    // rotation and stage an empty AWSPENDING version under a request token.
    // (moto cannot invoke a Lambda, so it fails after doing exactly that.)
    let request_token = secrets::begin_native_rotation(&rig.sm, &rig.token_secret).await;

    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let mut payload = event(&format!("rotate-step-{step}.json"));
        payload["SecretId"] = json!(rig.token_secret);
        payload["ClientRequestToken"] = json!(request_token);
        let out = rig.invoke(&payload).await;
        assert_eq!(
            out["step"]["versionId"]
                .as_str()
                .or(out["step"]["version_id"].as_str()),
            Some(request_token.as_str()),
            "{out:#}"
        );
        // Each step is idempotent: the same event again succeeds.
        rig.invoke(&payload).await;
    }
    let new = rig.current_token().await.unwrap();
    assert_ne!(new, old, "AWSCURRENT moved to the rotated token");
    assert!(stack().broker_as(&new).await.is_ok());
    assert!(
        stack().broker_as(&old).await.is_ok(),
        "the old token stays valid until it expires"
    );

    // An unknown request token is refused, and the invocation fails.
    let mut payload = event("rotate-step-finishSecret.json");
    payload["SecretId"] = json!(rig.token_secret);
    payload["ClientRequestToken"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, out) = rig.function.invoke(&payload).await;
    assert_ne!(status, 200, "{out}");
}

#[tokio::test]
async fn input_the_function_does_not_understand_fails_the_invocation() {
    let rig = rig().await;
    for bad in [
        json!({}),
        json!({"action": "delete-everything"}),
        json!("scheduled"),
    ] {
        let (status, out) = rig.function.invoke(&bad).await;
        assert_ne!(status, 200, "{bad} -> {out}");
        assert!(out.to_string().contains("unrecognised event"), "{out}");
    }
}

/// Both functions' cold start warns about a plaintext Pulsar URL to a host
/// other than loopback (the template refuses one without an explicit
/// opt-in), and stays quiet about loopback and TLS URLs. Nothing is
/// invoked: the warning comes before any connection is made.
#[tokio::test]
async fn a_plaintext_pulsar_url_to_a_remote_host_is_warned_about_at_cold_start() {
    let stack = stack();
    let policy = temp_file(
        "kp-plaintext",
        "policy.yaml",
        "version: 1\npulsar: { cluster: standalone, token_signing_secret: kong-pulsar/unused }\n\
         tenants: {}\nrules: []\n",
    );
    let start = |binary: &str, service: &str, admin: &str| {
        Function::start(
            binary,
            &[
                ("KP_POLICY_FILE", policy.display().to_string()),
                ("PULSAR_SERVICE_URL", service.to_owned()),
                ("PULSAR_ADMIN_URL", admin.to_owned()),
                ("KP_ADMIN_TOKEN_SECRET", unique("kong-pulsar/admin")),
                ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
                ("AWS_REGION", stack.aws_region.clone()),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ],
        )
    };
    // 192.0.2.0/24 is TEST-NET-1: never routed, never contacted here.
    let cases = [
        ("pulsar://192.0.2.10:6650", "http://192.0.2.10:8080", 2),
        ("pulsar://192.0.2.10:6650", "https://192.0.2.10:8443", 1),
        ("pulsar+ssl://192.0.2.10:6651", "https://192.0.2.10:8443", 0),
        ("pulsar://127.0.0.1:6650", "http://localhost:8080", 0),
    ];
    for binary in ["rotate", "publish"] {
        for (service, admin, warnings) in cases {
            let function = start(binary, service, admin);
            // The warning is the first thing after reading the configuration.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline
                && function.logs().matches("plaintext_pulsar").count() < warnings
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            // A stray warning where none is due would be printed by now.
            let settle = if warnings > 0 { 300 } else { 1000 };
            tokio::time::sleep(std::time::Duration::from_millis(settle)).await;
            let logs = function.logs();
            let found: Vec<Value> = logs
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["fields"]["event"] == "plaintext_pulsar")
                .collect();
            assert_eq!(found.len(), warnings, "{binary} {service} {admin}:\n{logs}");
            for line in &found {
                assert_eq!(line["level"], "WARN", "{line}");
                assert_eq!(line["fields"]["host"], "192.0.2.10", "{line}");
            }
        }
    }
}
