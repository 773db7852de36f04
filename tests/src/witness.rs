//! The two independent judges of provenance: the `kong-pulsar-verify` CLI
//! (pulsar-rs and our verifier) and the Python witness
//! (`tests/stack/provenance_witness.py`: the C++ client, PyJWT, digests of
//! its own), run side by side on the same topic.

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
