//! Token rotation with an RS256 signing key, against a real broker that holds
//! only the public half (`tokenPublicKey`): the set-up security teams prefer,
//! since the broker then cannot mint tokens. The shared test stack verifies
//! HS256, so this test starts a second broker of its own (`KP_TOKEN_ALG=RS256`,
//! its own state directory and ports) and stops it when done.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kong_pulsar::policy::Policy;
use kong_pulsar::pulsar::broker::{Broker, BrokerError, Timeouts};
use kong_pulsar::rotation::kinds::token::{SigningKey, TokenKind};
use kong_pulsar::rotation::{ForbiddenRoles, Outcome, RotateOptions, cycle};
use kong_pulsar::secrets::{SecretValue, TenantToken};
use kp_tests::{Admin, free_port, produce_one, secrets, stack, unique, workspace_root};
use serde_json::{Value, json};
use url::Url;

/// A broker verifying RS256 tokens, stopped (with its moto) when dropped.
struct Rs256Broker {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    service_url: Url,
    admin_url: Url,
}

impl Rs256Broker {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("kp-rs256"));
        let (port, http_port) = (free_port(), free_port());
        let env = vec![
            ("KP_STACK_DIR", dir.display().to_string()),
            ("KP_TOKEN_ALG", "RS256".to_owned()),
            ("KP_PULSAR_PORT", port.to_string()),
            ("KP_PULSAR_HTTP_PORT", http_port.to_string()),
            ("KP_PULSAR_TLS_PORT", free_port().to_string()),
            ("KP_BOOKIE_PORT", free_port().to_string()),
            ("KP_MOTO_PORT", free_port().to_string()),
        ];
        let broker = Self {
            service_url: Url::parse(&format!("pulsar://127.0.0.1:{port}")).unwrap(),
            admin_url: Url::parse(&format!("http://127.0.0.1:{http_port}")).unwrap(),
            dir,
            env,
        };
        let out = broker.stack_sh("up");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        broker
    }

    fn stack_sh(&self, command: &str) -> std::process::Output {
        Command::new(workspace_root().join("tests/stack/stack.sh"))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run stack.sh")
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }

    fn admin(&self) -> Admin {
        Admin::new(
            self.admin_url.clone(),
            self.file("superuser.token").trim().to_owned(),
        )
    }

    async fn connect(&self, token: &str) -> Result<Broker, BrokerError> {
        Broker::connect(
            &self.service_url,
            Arc::new(SecretValue::new(token)),
            Timeouts::default(),
        )
        .await
    }
}

impl Drop for Rs256Broker {
    fn drop(&mut self) {
        let _ = self.stack_sh("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A signing key secret value for a fresh RSA key (not the broker's).
fn other_rsa_key() -> SecretValue {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let pem = String::from_utf8(out.stdout).unwrap();
    SecretValue::new(json!({ "alg": "RS256", "private_key_pem": pem }).to_string())
}

fn jwt_alg(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_rs256_key_rotates_tokens_a_public_key_broker_accepts_and_nothing_else_passes() {
    stack(); // set-up done, moto up
    let broker = Rs256Broker::start();
    let (tenant, role) = (unique("rs"), unique("rs-role"));
    let admin = broker.admin();
    admin.create_tenant(&tenant, &[]).await.unwrap();
    admin.create_namespace(&tenant, "orders").await.unwrap();
    admin
        .grant(&tenant, "orders", &role, &["produce"])
        .await
        .unwrap();

    // The signing key secret holds the broker's private key, as a deployment's would.
    let sm = Client::new(&stack().aws_config().await);
    let signing_secret = unique("kong-pulsar/rs256-signing");
    let signing_value =
        json!({ "alg": "RS256", "private_key_pem": broker.file("token-private.pem") }).to_string();
    sm.create_secret()
        .name(&signing_secret)
        .secret_string(&signing_value)
        .send()
        .await
        .unwrap();
    let token_secret = format!("kong-pulsar/tokens/{tenant}");
    let policy = Policy::from_str(
        &format!(
            "version: 1\npulsar: {{ cluster: standalone, admin_roles: [], token_signing_secret: {signing_secret} }}\n\
             tenants:\n  {tenant}:\n    role: {role}\n    token_secret: {token_secret}\n    token_ttl: 1h\n    namespaces:\n      orders: {{}}\n\
             rules:\n  - name: produce\n    when: {{ any: true }}\n    allow: {{ tenant: {tenant}, namespaces: [orders], topics: [\"*\"], actions: [produce] }}\n"
        ),
        None,
    )
    .unwrap();

    // Created, tested against the RS256 broker (a real connect + lookup).
    let tokens = TokenKind::new(&policy, &broker.service_url, Timeouts::default());
    let outcomes = cycle(
        &tokens,
        &sm,
        RotateOptions::default(),
        &ForbiddenRoles::none(),
    )
    .await;
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    let Outcome::Created { check, .. } = &outcomes[0].outcome else {
        panic!("{outcomes:#?}")
    };
    assert_eq!(check["access"], "authorized", "{check}");

    // What was stored is an RS256 token for the role, and it produces.
    let (_, value) = secrets::staged(&sm, &token_secret, "AWSCURRENT")
        .await
        .expect("AWSCURRENT");
    let stored = TenantToken::parse(&token_secret, &SecretValue::new(value)).unwrap();
    assert_eq!(jwt_alg(stored.token.expose()), "RS256");
    let client = broker.connect(stored.token.expose()).await.unwrap();
    produce_one(
        &client,
        &format!("persistent://{tenant}/orders/{}", unique("t")),
    )
    .await
    .unwrap();

    // A forced rotation replaces it with another token the broker accepts.
    let forced = RotateOptions {
        force: true,
        ..RotateOptions::default()
    };
    let outcomes = cycle(&tokens, &sm, forced, &ForbiddenRoles::none()).await;
    assert!(
        matches!(outcomes[0].outcome, Outcome::Rotated { .. }),
        "{outcomes:#?}"
    );

    // The broker holds only the public key: a token for the same role signed
    // by another RSA key, or with the HS256 key of the shared stack, is
    // refused at connect.
    let forged = SigningKey::from_secret("other", &other_rsa_key())
        .unwrap()
        .mint(&role, Duration::from_secs(3600), chrono::Utc::now())
        .unwrap();
    for token in [forged.token.expose().to_owned(), stack().mint_token(&role)] {
        let refused = broker.connect(&token).await.err();
        assert!(
            matches!(refused, Some(BrokerError::Unauthenticated(_))),
            "{refused:?}"
        );
    }
}
