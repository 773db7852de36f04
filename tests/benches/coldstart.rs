//! Cold start (issue 11): the release `publish` and `rotate` binaries and a
//! hello-world `lambda_runtime` function (`tests/hello-lambda`, the
//! baseline), each spawned N times against a minimal Lambda Runtime API
//! emulator in this bench (axum on loopback: `GET …/invocation/next` hands
//! out the next event, `POST …/invocation/{id}/response` takes the answer).
//!
//! Per spawn: **init**, spawn to the first `GET /next` (what Lambda bills as
//! init: process start, configuration, clients built, no network call);
//! **first invoke**, the first event handed out to its answer (publish: JWKS
//! fetch, token secret and key set read from moto, broker connect, producer,
//! seal, send → 202; rotate: a reconcile dry run against the broker's admin
//! API); **warm invokes** after it; **peak RSS**, `VmHWM` from
//! `/proc/<pid>/status`, read when the process asks for the event after the
//! last one (idle), just before it is killed.
//!
//! `publish` and `rotate` get the `SSL_CERT_FILE` that `template.yaml` sets
//! (this machine's bundle standing in for Amazon Linux's); one more row,
//! `publish` without it, shows what naming the bundle saves: without it, each
//! TLS client (the AWS SDK's, the JWKS/STS one) also reads `/etc/ssl/certs`
//! file by file.
//!
//! Targets against the baseline measured in the same run: init ≤ 1.3×, peak
//! RSS ≤ 1.5×. All three binaries come from one `cargo build --release`
//! (the release profile as shipped: fat LTO, one codegen unit, stripped),
//! which this bench runs first (incremental: seconds when nothing changed,
//! minutes after a change). They are x86_64 builds of this machine, not the
//! aarch64 `sam build` ships.
//!
//! ```text
//! cargo bench -p kp-tests --bench coldstart [-- --quick] 2>&1 >/dev/null
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kp_tests::bench::{Fixture, Stats, human, nanos, progress, quick, release_binaries, target};
use kp_tests::{stack, unique};
use serde_json::{Value, json};
use tokio::sync::Notify;

const INIT_TARGET: f64 = 1.3;
const RSS_TARGET: f64 = 1.5;

/// What one emulator saw of one process.
#[derive(Default)]
struct Timeline {
    first_next: Option<Instant>,
    handed_out: Vec<Instant>,
    answered: Vec<(Instant, bool, String)>,
}

/// A Runtime API serving one process: its events, in order, then idle.
struct Emulator {
    events: Mutex<VecDeque<Value>>,
    timeline: Mutex<Timeline>,
    /// Notified when the process asks for an event after the last one.
    idle: Notify,
}

async fn next(State(emu): State<Arc<Emulator>>) -> axum::response::Response {
    let now = Instant::now();
    let event = {
        let mut timeline = emu.timeline.lock().expect("timeline");
        timeline.first_next.get_or_insert(now);
        let event = emu.events.lock().expect("events").pop_front();
        if event.is_some() {
            timeline.handed_out.push(now);
        }
        event
    };
    let Some(event) = event else {
        emu.idle.notify_one();
        // Never answered: the process waits here, as between invocations
        // on Lambda, until it is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let id = uuid::Uuid::new_v4().to_string();
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".into(),
    );
    set("content-type", "application/json".into());
    (headers, event.to_string()).into_response()
}

async fn answer(emu: &Emulator, ok: bool, body: String) -> StatusCode {
    let now = Instant::now();
    emu.timeline
        .lock()
        .expect("timeline")
        .answered
        .push((now, ok, body));
    StatusCode::ACCEPTED
}

async fn response(
    State(emu): State<Arc<Emulator>>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    answer(&emu, true, body).await
}

async fn error(
    State(emu): State<Arc<Emulator>>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    answer(&emu, false, body).await
}

async fn init_error(State(emu): State<Arc<Emulator>>, body: String) -> StatusCode {
    answer(&emu, false, format!("init error: {body}")).await
}

/// One binary under test.
struct Subject {
    name: &'static str,
    path: PathBuf,
    env: Vec<(&'static str, String)>,
    event: Box<dyn Fn() -> Value>,
    /// What a good answer contains.
    expect: &'static str,
}

/// One spawn's figures (ns, and kB).
struct Start {
    init: u64,
    first: u64,
    warm: Vec<u64>,
    hwm_kb: u64,
}

async fn spawn_once(subject: &Subject, warm: usize) -> Result<Start, String> {
    let events: VecDeque<Value> = (0..=warm).map(|_| (subject.event)()).collect();
    let emu = Arc::new(Emulator {
        events: Mutex::new(events),
        timeline: Mutex::new(Timeline::default()),
        idle: Notify::new(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(emu.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let log_path = std::env::temp_dir().join(format!("{}.log", unique(subject.name)));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new(&subject.path);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", subject.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .envs(subject.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        // The EMF lines: Lambda ships stdout to CloudWatch, here it is dropped.
        .stdout(Stdio::null())
        .stderr(log);
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", subject.path.display()))?;
    let idle = tokio::time::timeout(Duration::from_secs(30), emu.idle.notified()).await;
    let hwm_kb = vm_hwm_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    if idle.is_err() {
        return Err(format!(
            "{} did not finish its events within 30 s; log:\n{}",
            subject.name,
            logs()
        ));
    }
    let timeline = emu.timeline.lock().expect("timeline");
    let first_next = timeline.first_next.ok_or("no GET /next")?;
    if let Some((_, _, body)) = timeline
        .answered
        .iter()
        .find(|(_, ok, body)| !ok || !body.contains(subject.expect))
    {
        return Err(format!(
            "{} answered {body}; log:\n{}",
            subject.name,
            logs()
        ));
    }
    let invokes: Vec<u64> = timeline
        .handed_out
        .iter()
        .zip(&timeline.answered)
        .map(|(handed, (answered, _, _))| nanos(*answered - *handed))
        .collect();
    let _ = std::fs::remove_file(&log_path);
    Ok(Start {
        init: nanos(first_next - spawned),
        first: invokes[0],
        warm: invokes[1..].to_vec(),
        hwm_kb: hwm_kb.ok_or("no VmHWM")?,
    })
}

/// Peak resident set size of process `pid`, kB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() {
    let quick = quick();
    let (spawns, warm) = if quick { (5, 10) } else { (20, 50) };
    let started = Instant::now();
    let (paths, build) = release_binaries();
    progress("setting up tenant, token secret, key set, issuer, admin token secret…");
    let fixture = Arc::new(Fixture::setup("cold").await);
    let stack = stack();
    let admin_secret = unique("kong-pulsar/admin");
    aws_sdk_secretsmanager::Client::new(&stack.aws_config().await)
        .create_secret()
        .name(&admin_secret)
        .secret_string(json!({ "token": stack.superuser_token() }).to_string())
        .send()
        .await
        .expect("the admin token secret");
    // Without the template's SSL_CERT_FILE, for the row that shows what it saves.
    let unnamed_bundle_env = fixture.function_env(true);
    let mut publish_env = unnamed_bundle_env.clone();
    publish_env.push(("SSL_CERT_FILE", ca_bundle()));
    let mut rotate_env: Vec<(&'static str, String)> = publish_env
        .iter()
        .filter(|(k, _)| *k != "KP_MAX_BATCH")
        .cloned()
        .collect();
    rotate_env.push(("PULSAR_ADMIN_URL", stack.admin_url.to_string()));
    rotate_env.push(("KP_ADMIN_TOKEN_SECRET", admin_secret));
    let publish = |name, env| {
        let fixture = fixture.clone();
        Subject {
            name,
            path: paths[0].clone(),
            env,
            event: Box::new(move || fixture.request(&fixture.token(), None)),
            expect: r#""statusCode":202"#,
        }
    };
    let subjects = [
        Subject {
            name: "hello-lambda",
            path: paths[2].clone(),
            env: Vec::new(),
            event: Box::new(|| json!({ "hello": "world" })),
            expect: "world",
        },
        publish("publish", publish_env),
        publish("publish, no SSL_CERT_FILE", unnamed_bundle_env),
        Subject {
            name: "rotate",
            path: paths[1].clone(),
            env: rotate_env,
            event: Box::new(|| json!({ "action": "reconcile", "dryRun": true })),
            expect: "",
        },
    ];

    eprintln!(
        "\nKong Pulsar cold-start benchmark: issue 11 ({} mode)\n\
         release binaries (fat LTO, x86_64, stripped), built by this run in {:.1} s;\n\
         each spawned {spawns} times (interleaved) against a Runtime API emulator on\n\
         loopback; {warm} warm invokes after the first; publish signs (provenance on)",
        if quick { "quick" } else { "full" },
        build.as_secs_f64(),
    );
    let mut starts: Vec<Vec<Start>> = subjects.iter().map(|_| Vec::new()).collect();
    for round in 0..spawns {
        progress(&format!("round {}/{spawns}…", round + 1));
        for (subject, starts) in subjects.iter().zip(&mut starts) {
            match spawn_once(subject, warm).await {
                Ok(start) => starts.push(start),
                Err(why) => panic!("{why}"),
            }
        }
    }

    let base_init = Stats::of(&starts[0].iter().map(|s| s.init).collect::<Vec<_>>());
    let base_rss = Stats::of(&starts[0].iter().map(|s| s.hwm_kb).collect::<Vec<_>>());
    eprintln!(
        "\n   {:<26} {:>10} {:>28} {:>11} {:>19} {:>11} {:>9}",
        "", "size", "init median (min, p90)", "1st invoke", "warm p50 (p90)", "peak RSS", "ratios"
    );
    for (subject, starts) in subjects.iter().zip(&starts) {
        let init = Stats::of(&starts.iter().map(|s| s.init).collect::<Vec<_>>());
        let first = Stats::of(&starts.iter().map(|s| s.first).collect::<Vec<_>>());
        let warm = Stats::of(
            &starts
                .iter()
                .flat_map(|s| s.warm.clone())
                .collect::<Vec<_>>(),
        );
        let rss = Stats::of(&starts.iter().map(|s| s.hwm_kb).collect::<Vec<_>>());
        eprintln!(
            "   {:<26} {:>10} {:>28} {:>11} {:>19} {:>11} init {:.2}x, RSS {:.2}x",
            subject.name,
            size(&subject.path),
            format!(
                "{} ({}, {})",
                human(init.p50),
                human(init.min),
                human(init.p90)
            ),
            human(first.p50),
            format!("{} ({})", human(warm.p50), human(warm.p90)),
            format!("{:.1} MiB", rss.p50 / 1024.0),
            init.p50 / base_init.p50,
            rss.p50 / base_rss.p50,
        );
    }
    eprintln!(
        "   targets (against hello-lambda, medians): init ≤{INIT_TARGET}x, peak RSS ≤{RSS_TARGET}x"
    );
    for (subject, starts) in subjects.iter().zip(&starts).skip(1) {
        let init =
            Stats::of(&starts.iter().map(|s| s.init).collect::<Vec<_>>()).p50 / base_init.p50;
        let rss =
            Stats::of(&starts.iter().map(|s| s.hwm_kb).collect::<Vec<_>>()).p50 / base_rss.p50;
        eprintln!(
            "   {:<26} init {:.2}x {}   peak RSS {:.2}x {}",
            subject.name,
            init,
            target(init, INIT_TARGET),
            rss,
            target(rss, RSS_TARGET)
        );
    }
    eprintln!(
        "\ndone in {:.1} s ({} mode; {:.1} s of it the release build)",
        started.elapsed().as_secs_f64(),
        if quick { "quick" } else { "full" },
        build.as_secs_f64()
    );
}

/// This machine's CA bundle, standing in for the one `template.yaml` names
/// in `SSL_CERT_FILE` (Amazon Linux's `/etc/pki/tls/certs/ca-bundle.crt`).
fn ca_bundle() -> String {
    [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
    .expect("a CA bundle on this machine")
    .to_owned()
}

/// A file's size, MB (10^6 bytes).
fn size(path: &Path) -> String {
    std::fs::metadata(path)
        .map(|m| format!("{:.1} MB", m.len() as f64 / 1e6))
        .unwrap_or_else(|_| "?".into())
}
