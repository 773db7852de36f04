//! Test support: a handle on the running local stack (real Pulsar broker with
//! authentication and authorization on, moto for AWS) that every integration
//! test starts from, plus unique names so tests never interfere.
//!
//! The stack is started by `tests/stack/stack.sh` (`make test` does it); its
//! coordinates come from the environment that script exports, or from the
//! `stack.env` file it writes, so `cargo test` also works against a stack left
//! running by `make run` or `tests/stack/stack.sh up`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kong_pulsar::pulsar::broker::{Broker, BrokerError, Timeouts};
use kong_pulsar::secrets::SecretValue;
use serde_json::json;
use url::Url;

pub mod admin;
pub mod app;
pub mod bench;
pub mod cluster;
pub mod lambda;
pub mod load;
pub mod logs;
pub mod oidc;
pub mod outage;
pub mod secrets;
pub mod witness;

pub use admin::Admin;
pub use cluster::{Cluster, cluster};

/// Where the running stack is and how to act on it.
pub struct Stack {
    pub service_url: Url,
    pub admin_url: Url,
    /// The Pulsar cluster's name (`standalone`, or the test cluster's).
    pub cluster_name: String,
    pub superuser_role: String,
    superuser_token: String,
    token_secret: Vec<u8>,
    pub aws_endpoint: String,
    pub aws_region: String,
    /// The broker's TLS listener (`pulsar+ssl://…`), when the stack has one
    /// (a stack started before the listener existed, and reused, has not).
    pub tls_service_url: Option<Url>,
    /// The test CA the TLS listener trusts for client certificates (and
    /// whose server certificate it presents), PEM.
    pub tls_ca_cert_file: Option<PathBuf>,
    /// That CA's private key, PEM (PKCS#8), to issue client certificates.
    pub tls_ca_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("service_url", &self.service_url.as_str())
            .field("cluster_name", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

/// The stack, loaded once per test binary. Panics with instructions when no
/// stack is running, because every integration test needs one.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack::load().unwrap_or_else(|why| panic!("{why}")))
}

impl Stack {
    fn load() -> Result<Self, String> {
        let mut vars: HashMap<String, String> = HashMap::new();
        let env_file = stack_dir().join("stack.env");
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if let Some((k, v)) = line.split_once('=') {
                    vars.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        // The process environment (set by stack.sh test) wins over the file.
        for key in [
            "PULSAR_SERVICE_URL",
            "PULSAR_ADMIN_URL",
            "KP_STACK_SUPERUSER_ROLE",
            "KP_STACK_SUPERUSER_TOKEN_FILE",
            "KP_STACK_TOKEN_SECRET_FILE",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "PULSAR_TLS_SERVICE_URL",
            "KP_STACK_TLS_CA_CERT_FILE",
            "KP_STACK_TLS_CA_KEY_FILE",
        ] {
            if let Ok(v) = std::env::var(key) {
                vars.insert(key.to_owned(), v);
            }
        }
        let get = |k: &str| {
            vars.get(k).cloned().ok_or_else(|| {
                format!(
                    "the local stack is not running ({k} unknown, no {}). \
                     Run the tests with `make test`, or start the stack with \
                     `tests/stack/stack.sh up` first.",
                    env_file.display()
                )
            })
        };
        let read = |k: &str| -> Result<Vec<u8>, String> {
            let path = get(k)?;
            std::fs::read(&path).map_err(|e| format!("cannot read {path} ({k}): {e}"))
        };
        let url = |k: &str| -> Result<Url, String> {
            Url::parse(&get(k)?).map_err(|e| format!("{k} is not a URL: {e}"))
        };
        Ok(Self {
            service_url: url("PULSAR_SERVICE_URL")?,
            admin_url: url("PULSAR_ADMIN_URL")?,
            cluster_name: "standalone".into(),
            superuser_role: get("KP_STACK_SUPERUSER_ROLE")?,
            superuser_token: String::from_utf8(read("KP_STACK_SUPERUSER_TOKEN_FILE")?)
                .map_err(|_| "the super-user token is not UTF-8".to_owned())?
                .trim()
                .to_owned(),
            token_secret: read("KP_STACK_TOKEN_SECRET_FILE")?,
            aws_endpoint: get("AWS_ENDPOINT_URL")?,
            aws_region: get("AWS_REGION")?,
            tls_service_url: match vars.get("PULSAR_TLS_SERVICE_URL") {
                Some(_) => Some(url("PULSAR_TLS_SERVICE_URL")?),
                None => None,
            },
            tls_ca_cert_file: vars.get("KP_STACK_TLS_CA_CERT_FILE").map(PathBuf::from),
            tls_ca_key_file: vars.get("KP_STACK_TLS_CA_KEY_FILE").map(PathBuf::from),
        })
    }

    /// The super-user's token (admin API, consumers that read anything).
    pub fn superuser_token(&self) -> &str {
        &self.superuser_token
    }

    /// The broker's HS256 signing key (what `tokenSecretKey` points at).
    pub fn token_secret(&self) -> &[u8] {
        &self.token_secret
    }

    /// A token for `role`, valid for an hour, signed with the broker's key.
    pub fn mint_token(&self, role: &str) -> String {
        self.mint_token_expiring(role, Duration::from_secs(3600), true)
    }

    /// A token for `role` expiring `ttl` from now (`future = true`) or `ttl`
    /// ago (`future = false`).
    pub fn mint_token_expiring(&self, role: &str, ttl: Duration, future: bool) -> String {
        let now = unix_now();
        let exp = if future {
            now + ttl.as_secs()
        } else {
            now - ttl.as_secs()
        };
        sign_hs256(&self.token_secret, &json!({ "sub": role, "exp": exp }))
    }

    /// Connects a pulsar-rs client acting as whoever `token` names.
    pub async fn broker_as(&self, token: &str) -> Result<Broker, BrokerError> {
        Broker::connect(
            &self.service_url,
            Arc::new(SecretValue::new(token)),
            Timeouts::default(),
        )
        .await
    }

    /// Opens a producer on `topic` as whoever `token` names and sends one
    /// small JSON message: the broker's own answer to "may this token produce
    /// here?".
    pub async fn produce_as(&self, token: &str, topic: &str) -> Result<(), BrokerError> {
        produce_one(&self.broker_as(token).await?, topic).await
    }

    /// The broker's admin REST API as the super-user.
    pub fn admin(&self) -> Admin {
        Admin::new(self.admin_url.clone(), self.superuser_token.clone())
            .for_cluster(&self.cluster_name)
    }

    /// AWS SDK configuration pointed at moto through `AWS_ENDPOINT_URL`
    /// (exactly as the functions find it), with dummy static credentials.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.aws_endpoint)
            .region(aws_config::Region::new(self.aws_region.clone()))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "kp-tests",
            ))
            .load()
            .await
    }
}

/// Signs `claims` as an HS256 JWT with `key`.
pub fn sign_hs256(key: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .expect("HS256 signing cannot fail")
}

/// A name no other test (or earlier run) uses: `prefix-` plus 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Opens a producer on `topic` through `broker` and sends one small JSON
/// message (boxed: pulsar-rs futures are large in debug builds).
pub async fn produce_one(broker: &Broker, topic: &str) -> Result<(), BrokerError> {
    Box::pin(async {
        let mut producer = broker.producer(topic).await?;
        producer
            .send(kong_pulsar::pulsar::broker::OutgoingMessage {
                payload: br#"{"orderId":"42"}"#.to_vec(),
                ..Default::default()
            })
            .await
            .map(drop)
    })
    .await
}

/// The running stack's state directory (`KP_STACK_DIR`, as stack.sh reads it).
pub fn stack_dir() -> PathBuf {
    std::env::var("KP_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/stack"))
}

/// A free loopback port: the OS picks it and the listener is dropped again,
/// for a second broker or a fake server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The workspace's root directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
}

/// Asserts that `result` is an error matching `pattern` (showing the error
/// when it is not) and yields the error, for tests that check refusals one
/// after another.
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {{
        let err = $result.expect_err(concat!("expected ", stringify!($pattern)));
        assert!(matches!(err, $pattern), "{err:?}");
        err
    }};
}
