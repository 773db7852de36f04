//! What the Lambda Invoke API emulator adds (issue 11, reported, no target):
//! the release `publish` binary served by `cargo lambda watch
//! --only-lambda-apis` (from `.venv`, as the integration tests run it),
//! invoked over HTTP (`POST /2015-03-31/functions/publish/invocations`, as
//! Kong's AWS Lambda plugin does), against `Publisher::handle` in-process on
//! the same topic, call by call in the same run: a single event, and an
//! NDJSON batch of 500. Both sign (`provenance:`). The difference is the
//! emulator's HTTP hops (invoke → runtime `GET /next` → `POST /response` →
//! invoke answer) and JSON copies; Lambda's own front end is not this, so it
//! is reported, not targeted.
//!
//! The bench runs `cargo build --release -p publish -p rotate -p hello-lambda`
//! first (incremental; the same set as the cold-start bench).
//!
//! ```text
//! cargo bench -p kp-tests --bench invoke_api [-- --quick] 2>&1 >/dev/null
//! ```

use std::time::Instant;

use kong_pulsar::edge::publish::Publisher;
use kp_tests::bench::{
    CALLS_PER_TOKEN, Fixture, Stats, human, lambda_event, nanos, progress, quick, release_binaries,
};
use kp_tests::lambda::Function;
use serde_json::Value;

#[tokio::main]
async fn main() {
    let quick = quick();
    let (singles, batches) = if quick { (100, 5) } else { (1_000, 30) };
    let started = Instant::now();
    let (paths, build) = release_binaries();
    progress("setting up tenant, token secret, key set, issuer, publisher, cargo lambda watch…");
    let fixture = Fixture::setup("invoke").await;
    let publisher = fixture.publisher(true).await;
    let function = Function::start_path(&paths[0], "publish", &fixture.function_env(true));

    eprintln!(
        "\nKong Pulsar Invoke API benchmark: issue 11 ({} mode)\n\
         release publish (built in {:.1} s) behind `cargo lambda watch --only-lambda-apis`,\n\
         invoked over HTTP, vs Publisher::handle in-process (a [profile.bench] build);\n\
         same topic, alternating call by call; provenance on",
        if quick { "quick" } else { "full" },
        build.as_secs_f64()
    );
    let mut rows = Vec::new();
    for (name, events, calls) in [
        ("single event", None, singles),
        ("500-event batch", Some(500), batches),
    ] {
        progress(&format!("{name}: warm-up, then {calls} calls per arm…"));
        let (mut api, mut local) = (Vec::new(), Vec::new());
        let mut token = fixture.token();
        for i in 0..=calls {
            if i % CALLS_PER_TOKEN == CALLS_PER_TOKEN - 1 {
                token = fixture.token();
            }
            let request = fixture.request(&token, events);
            let a = through_api(&function, &request).await;
            let l = in_process(&publisher, &request).await;
            // Call 0 warms both (the function's first invoke is its cold start).
            if i > 0 {
                api.push(a);
                local.push(l);
            }
        }
        rows.push((name, Stats::of(&api), Stats::of(&local)));
    }
    eprintln!(
        "\n   {:<16} {:>22} {:>22} {:>12} {:>8}",
        "", "Invoke API p50 (p99)", "in-process p50 (p99)", "added p50", "ratio"
    );
    for (name, api, local) in &rows {
        eprintln!(
            "   {:<16} {:>22} {:>22} {:>12} {:>7.2}x",
            name,
            format!("{} ({})", human(api.p50), human(api.p99)),
            format!("{} ({})", human(local.p50), human(local.p99)),
            human(api.p50 - local.p50),
            api.p50 / local.p50,
        );
    }
    eprintln!(
        "\ndone in {:.1} s ({} mode; {:.1} s of it the release build)",
        started.elapsed().as_secs_f64(),
        if quick { "quick" } else { "full" },
        build.as_secs_f64()
    );
}

async fn through_api(function: &Function, request: &Value) -> u64 {
    let t = Instant::now();
    let (status, out) = function.invoke(request).await;
    let wall = nanos(t.elapsed());
    assert_eq!(status, 200, "the function crashed: {out}");
    assert_eq!(out["statusCode"], 202, "{out}");
    wall
}

async fn in_process(publisher: &Publisher, request: &Value) -> u64 {
    let event = lambda_event(request);
    let t = Instant::now();
    let response = publisher.handle(event).await;
    let wall = nanos(t.elapsed());
    assert_eq!(response.status_code, 202, "{}", response.body);
    wall
}
