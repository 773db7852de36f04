//! Functions served through the real Lambda Invoke API: `cargo lambda watch
//! --only-lambda-apis` emulates the Lambda control plane, and the built
//! function binaries (`target/debug/publish`, `…/rotate`) run as their own
//! processes against it, exactly as `cargo lambda watch` or Lambda runs them.
//! Tests then `POST /2015-03-31/functions/{name}/invocations` like Kong does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{unique, workspace_root};

/// A `cargo lambda watch --only-lambda-apis` server. It serves functions by
/// their binary names (`publish`, `rotate`), so each [`Function`] gets its
/// own server: tests with different policies never share a queue.
pub struct InvokeApi {
    port: u16,
    _child: ChildGuard,
}

impl InvokeApi {
    fn start() -> Self {
        let port = crate::free_port();
        let cargo_lambda = tool("cargo-lambda");
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("kp-invoke-api-{port}.log")))
                .expect("log file");
        let child = Command::new(cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start cargo lambda watch (is .venv set up? run `make test`)");
        let child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            _child: child,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A function process attached to its own Invoke API server.
pub struct Function {
    pub name: String,
    pub log_path: PathBuf,
    // Declared before `api` so the function stops before its control plane.
    _child: ChildGuard,
    api: InvokeApi,
    http: reqwest::Client,
}

impl Function {
    /// Starts the built `binary` (`publish` or `rotate`) with `env`.
    /// Nothing is invoked yet: cold start happens now.
    pub fn start(binary: &str, env: &[(&str, String)]) -> Self {
        Self::start_path(&function_binary(binary), binary, env)
    }

    /// Starts the executable at `path` as function `binary` (the
    /// benchmarks run the release build this way).
    pub fn start_path(path: &Path, binary: &str, env: &[(&str, String)]) -> Self {
        let api = InvokeApi::start();
        let name = binary.to_owned();
        let log_path = std::env::temp_dir().join(format!("{}.log", unique(binary)));
        let log = std::fs::File::create(&log_path).expect("function log");
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{name}", api.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        Self {
            name,
            log_path,
            _child: ChildGuard(child),
            api,
            http: reqwest::Client::new(),
        }
    }

    /// Invokes the function with `payload` through the Invoke API and returns
    /// what it answered (status of the Invoke call, JSON body).
    pub async fn invoke(&self, payload: &Value) -> (u16, Value) {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.api.base_url(),
            self.name
        );
        let resp = match self
            .http
            .post(url)
            .json(payload)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) => panic!(
                "the Invoke API did not answer ({e}); function log:\n{}",
                self.logs()
            ),
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("body");
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        (status, value)
    }

    /// Sends a real HTTP request to the function URL route of `cargo lambda
    /// watch` (`/lambda-url/{name}{path}`), which wraps it in a payload-2.0
    /// event as Lambda function URLs do, and returns the HTTP response.
    pub async fn http(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let url = format!("{}/lambda-url/{}{path}", self.api.base_url(), self.name);
        let mut req = self
            .http
            .request(method, url)
            .body(body)
            .timeout(Duration::from_secs(30));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "the function URL did not answer ({e}); function log:\n{}",
                self.logs()
            ),
        }
    }

    /// Invokes the function and returns the proxy response it produced
    /// (HTTP status, headers, body as JSON where it is JSON).
    pub async fn call(&self, event: &Value) -> crate::app::Response {
        let (invoke_status, out) = self.invoke(event).await;
        assert_eq!(
            invoke_status, 200,
            "the function crashed instead of answering: {out}"
        );
        let status = out["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("not a proxy response: {out}")) as u16;
        let body_text = out["body"].as_str().unwrap_or_default();
        let body = serde_json::from_str(body_text).unwrap_or(Value::String(body_text.into()));
        crate::app::Response {
            status,
            headers: out["headers"].clone(),
            body,
        }
    }

    /// `POST` URL of this function's Invoke API (what Kong calls).
    pub fn invoke_url(&self) -> String {
        format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.api.base_url(),
            self.name
        )
    }

    /// The function's process id (to freeze it with SIGSTOP, as Lambda
    /// freezes an idle instance).
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }

    /// Everything the function printed so far (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Kills the child when dropped, so no test leaves a process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tool from the project's `.venv` (installed by `tests/stack/stack.sh setup`).
pub fn tool(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing; run `tests/stack/stack.sh setup`",
        path.display()
    );
    path
}

/// `target/debug/{binary}`, which `make test` builds before the tests run.
pub fn function_binary(binary: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(binary);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// A temporary file holding `text` (policies, env files), kept for the test's life.
pub fn temp_file(dir_hint: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(dir_hint));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Reads a sample event from `events/`.
pub fn event(name: &str) -> Value {
    let path: &Path = &workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
