//! A handle on the multi-broker test cluster (`tests/stack/stack.sh
//! cluster-up`: ZooKeeper, a bookie, two brokers, a proxy), shared by every
//! cluster test of a run, like [`crate::stack`].
//!
//! The cluster is one per run, so tests that break a broker must not run
//! while others count on it: [`Cluster::shared`] and [`Cluster::exclusive`]
//! are a read/write lock over it, an `flock` on a file in its directory so it
//! also holds between test processes (a developer's second `cargo test`). A
//! fault test holds the write half and brings the broker back, waiting for
//! the cluster to be whole again, before it lets go.
//!
//! Each way in is a [`Stack`] (the AWS side is the standalone stack's moto):
//! [`Cluster::proxy`] through the Pulsar proxy, [`Cluster::brokers`] straight
//! to one broker, so the same fixtures run against any of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};
use serde_json::Value;
use url::Url;

use crate::{Stack, stack, stack_dir, workspace_root};

/// The running test cluster.
pub struct Cluster {
    pub name: String,
    /// Through the Pulsar proxy (binary protocol and admin API).
    pub proxy: Stack,
    /// Straight to broker 1 and broker 2.
    pub brokers: [Stack; 2],
    dir: PathBuf,
}

/// A hold on the cluster (see [`Cluster::shared`]); released when dropped.
pub struct Lease(#[allow(dead_code)] std::fs::File);

/// The cluster, loaded once per test binary. Panics with instructions when it
/// is not running: `make test` starts it, so a missing cluster is a broken
/// set-up, not a reason to skip.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::load().unwrap_or_else(|why| panic!("{why}")))
}

/// One of the two brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BrokerId {
    One,
    Two,
}

impl BrokerId {
    pub fn index(self) -> usize {
        match self {
            Self::One => 0,
            Self::Two => 1,
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::One => Self::Two,
            Self::Two => Self::One,
        }
    }

    /// Its process name in the stack (`broker1`, `broker2`).
    pub fn process(self) -> &'static str {
        match self {
            Self::One => "broker1",
            Self::Two => "broker2",
        }
    }
}

impl Cluster {
    fn load() -> Result<Self, String> {
        let dir = stack_dir().join("cluster");
        let env_file = dir.join("cluster.env");
        let text = std::fs::read_to_string(&env_file).map_err(|e| {
            format!(
                "the test cluster is not running (cannot read {}: {e}). Run the tests \
                 with `make test`, or start it with `tests/stack/stack.sh cluster-up`.",
                env_file.display()
            )
        })?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| format!("{} has no {k}", env_file.display()))
        };
        let url = |k: &str| -> Result<Url, String> {
            Url::parse(&get(k)?).map_err(|e| format!("{k} is not a URL: {e}"))
        };
        let read = |k: &str| -> Result<Vec<u8>, String> {
            let path = get(k)?;
            std::fs::read(&path).map_err(|e| format!("cannot read {path} ({k}): {e}"))
        };
        let name = get("KP_CLUSTER_NAME")?;
        let superuser_token = String::from_utf8(read("KP_CLUSTER_SUPERUSER_TOKEN_FILE")?)
            .map_err(|_| "the cluster's super-user token is not UTF-8".to_owned())?
            .trim()
            .to_owned();
        let token_secret = read("KP_CLUSTER_TOKEN_SECRET_FILE")?;
        let standalone = stack();
        let way_in = |service: &str, admin: &str| -> Result<Stack, String> {
            Ok(Stack {
                service_url: url(service)?,
                admin_url: url(admin)?,
                cluster_name: name.clone(),
                superuser_role: get("KP_CLUSTER_SUPERUSER_ROLE")?,
                superuser_token: superuser_token.clone(),
                token_secret: token_secret.clone(),
                aws_endpoint: standalone.aws_endpoint.clone(),
                aws_region: standalone.aws_region.clone(),
                tls_service_url: None,
                tls_ca_cert_file: None,
                tls_ca_key_file: None,
            })
        };
        Ok(Self {
            proxy: way_in("KP_CLUSTER_PROXY_SERVICE_URL", "KP_CLUSTER_PROXY_ADMIN_URL")?,
            brokers: [
                way_in(
                    "KP_CLUSTER_BROKER1_SERVICE_URL",
                    "KP_CLUSTER_BROKER1_ADMIN_URL",
                )?,
                way_in(
                    "KP_CLUSTER_BROKER2_SERVICE_URL",
                    "KP_CLUSTER_BROKER2_ADMIN_URL",
                )?,
            ],
            name,
            dir,
        })
    }

    pub fn broker(&self, id: BrokerId) -> &Stack {
        &self.brokers[id.index()]
    }

    /// For a test that needs both brokers up for its whole length.
    pub async fn shared(&self) -> Lease {
        self.lease(FlockOperation::LockShared).await
    }

    /// For a test that kills or pauses a broker: no other cluster test runs
    /// meanwhile.
    pub async fn exclusive(&self) -> Lease {
        self.lease(FlockOperation::LockExclusive).await
    }

    async fn lease(&self, how: FlockOperation) -> Lease {
        let path = self.dir.join("tests.lock");
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            flock(&file, how).unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
            Lease(file)
        })
        .await
        .expect("the lock task")
    }

    /// The broker's process id (it leads its own process group).
    pub fn pid(&self, id: BrokerId) -> u32 {
        let file = self.dir.join(format!("{}.pid", id.process()));
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", file.display()))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the broker's whole process
    /// group.
    pub fn signal(&self, id: BrokerId, signal: &str) {
        let group = format!("-{}", self.pid(id));
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} -- {group}");
    }

    /// Brings a killed or paused broker back and waits until the cluster is
    /// whole (`stack.sh cluster-restart`), returning how long it took.
    pub async fn restart(&self, id: BrokerId) -> Duration {
        let started = std::time::Instant::now();
        let script = workspace_root().join("tests/stack/stack.sh");
        let output = tokio::process::Command::new(script)
            .args(["cluster-restart", id.process()])
            .env("KP_STACK_DIR", stack_dir())
            .output()
            .await
            .expect("stack.sh runs");
        assert!(
            output.status.success(),
            "stack.sh cluster-restart {} failed:\n{}",
            id.process(),
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    }

    /// Which broker owns `topic` (a full `persistent://…` name, one partition
    /// or a non-partitioned topic), from the cluster's own lookup.
    pub async fn owner(&self, topic: &str) -> BrokerId {
        let path = topic.replacen("://", "/", 1);
        let found = self
            .proxy
            .admin()
            .get(&format!("/lookup/v2/topic/{path}"))
            .await
            .unwrap_or_else(|e| panic!("lookup of {topic}: {e}"));
        self.broker_with_url(found.get("brokerUrl").and_then(Value::as_str))
            .unwrap_or_else(|| panic!("lookup of {topic} named no broker of the cluster: {found}"))
    }

    fn broker_with_url(&self, url: Option<&str>) -> Option<BrokerId> {
        let url = url?.trim_end_matches('/');
        [BrokerId::One, BrokerId::Two]
            .into_iter()
            .find(|id| self.broker(*id).service_url.as_str().trim_end_matches('/') == url)
    }

    /// Moves `topic`'s bundle to `to` (an unload naming its destination, as an
    /// operator would), returning once a lookup says `to` owns it.
    pub async fn place(&self, topic: &str, to: BrokerId) {
        let admin = self.proxy.admin();
        let path = topic.replacen("://", "/", 1);
        let bundle = admin
            .get_text(&format!("/lookup/v2/topic/{path}/bundle"))
            .await
            .unwrap_or_else(|e| panic!("bundle of {topic}: {e}"));
        let bundle = bundle.trim();
        let namespace = topic
            .trim_start_matches("persistent://")
            .rsplit_once('/')
            .map(|(ns, _)| ns.to_owned())
            .expect("tenant/namespace/topic");
        let destination = self.broker(to).admin_url.authority().to_owned();
        for _ in 0..20 {
            if self.owner(topic).await == to {
                return;
            }
            let _ = admin
                .put(
                    &format!(
                        "/admin/v2/namespaces/{namespace}/{bundle}/unload?destinationBroker={destination}"
                    ),
                    Value::Null,
                )
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{topic} did not move to {to:?}");
    }
}
