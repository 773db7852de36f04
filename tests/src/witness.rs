//! Independent witnesses of what Pulsar holds. The two judges of
//! provenance: the `kong-pulsar-verify` CLI (pulsar-rs and our verifier) and
//! the Python witness (`tests/stack/provenance_witness.py`: the C++ client,
//! PyJWT, digests of its own), run side by side on the same topic; and
//! [`partitions`], what a (partitioned) topic holds as the official client
//! finds it (`tests/stack/partition_witness.py`).

use std::process::{Command, Output};

use serde_json::Value;

use crate::lambda::function_binary;

/// Runs the CLI (key set from `cli_jwks`) and the Python witness (key set
/// from `jwks_file`) side by side on the first `count` messages of `topic`.
pub async fn judge_both(
    topic: &str,
    count: usize,
    token: &str,
    cli_jwks: &[&str; 2],
    jwks_file: &std::path::Path,
    signer: &str,
) -> (Output, Output) {
    let count = count.to_string();
    let url = crate::stack().service_url.to_string();
    let mut cli = Command::new(function_binary("kong-pulsar-verify"));
    cli.args(["read", "--service-url", &url, "--token-env", "KP_READER"])
        .args(["--topic", topic])
        .args(cli_jwks)
        .args(["--max", &count, "--wait-ms", "15000", "--issuer", signer])
        .env("KP_READER", token);
    let root = crate::workspace_root();
    let mut python = Command::new(root.join(".venv/bin/python"));
    python
        .arg(root.join("tests/stack/provenance_witness.py"))
        .args([&url, "env:KP_READER", topic])
        .arg(jwks_file)
        .args([&count, "15", signer])
        .env("KP_READER", token);
    let (cli, python) = (
        tokio::task::spawn_blocking(move || cli.output().expect("run kong-pulsar-verify")),
        tokio::task::spawn_blocking(move || python.output().expect("run provenance_witness.py")),
    );
    (cli.await.unwrap(), python.await.unwrap())
}

pub fn verdicts(what: &str, out: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect()
}

/// Both judges' verdicts on the first `count` messages of `topic`, read as
/// the stack's super-user with the key set in `jwks_file`: `(who, exit
/// status, one verdict per message)` for `cli` and `python`.
pub async fn both_verdicts(
    topic: &str,
    count: usize,
    jwks_file: &std::path::Path,
    signer: &str,
) -> [(&'static str, Option<i32>, Vec<Value>); 2] {
    let file = jwks_file.to_str().expect("a UTF-8 temp path").to_owned();
    let (cli, python) = judge_both(
        topic,
        count,
        crate::stack().superuser_token(),
        &["--jwks-file", &file],
        jwks_file,
        signer,
    )
    .await;
    [("cli", cli), ("python", python)].map(|(who, out)| {
        let lines = verdicts(who, &out);
        assert_eq!(
            lines.len(),
            count,
            "{who} judged {} of {count} messages: {}",
            lines.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        (who, out.status.code(), lines)
    })
}

/// What the official client finds on `topic` through `via` (read as its
/// super-user), expecting `count`: one JSON object per message
/// (`partition`, `key`, `data`, `properties`, `messageId`). With `keys`,
/// the witness first produces one `witness:<key>` message per key itself,
/// routed as the official clients' Murmur3_32Hash scheme routes them
/// (`count` includes them). Panics, showing what it found, when fewer came.
pub async fn partitions(
    via: &crate::Stack,
    topic: &str,
    count: usize,
    keys: &[String],
) -> Vec<Value> {
    let (found, out) = run_partition_witness(via, topic, count, keys, 10, None).await;
    assert!(
        out.status.success(),
        "the witness read {} of {count} messages of {topic}: {}",
        found.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    found
}

/// Everything `topic` holds (up to `at_most`), as the official client finds
/// it through `via`: patiently until it has `at_least` (the acknowledged
/// ones), then until nothing came for 3 s (sends answered `timeout` that
/// landed anyway).
pub async fn everything_on(
    via: &crate::Stack,
    topic: &str,
    at_least: usize,
    at_most: usize,
) -> Vec<Value> {
    run_partition_witness(via, topic, at_most, &[], 3, Some(at_least))
        .await
        .0
}

async fn run_partition_witness(
    via: &crate::Stack,
    topic: &str,
    count: usize,
    keys: &[String],
    quiet_seconds: u32,
    at_least: Option<usize>,
) -> (Vec<Value>, Output) {
    let root = crate::workspace_root();
    let mut python = Command::new(root.join(".venv/bin/python"));
    python
        .arg(root.join("tests/stack/partition_witness.py"))
        .args([via.service_url.as_str(), "KP_READER", topic])
        .args([count.to_string(), quiet_seconds.to_string()])
        .args(at_least.map(|n| n.to_string()))
        .env("KP_READER", via.superuser_token())
        .env("KP_WITNESS_KEYS", keys.join(","));
    let out =
        tokio::task::spawn_blocking(move || python.output().expect("run partition_witness.py"))
            .await
            .unwrap();
    (verdicts("partition witness", &out), out)
}
