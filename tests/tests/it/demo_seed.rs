//! The README's "run it" command seeds the local stack (`tests/stack/demo.sh`)
//! so that both functions work against it. Here: the environment it writes
//! for the functions starts `rotate`, whose super-user token and signing key
//! come from the secrets it seeded — a forced rotation mints a token the
//! broker accepts and that produces to the demo namespace.

use std::path::PathBuf;

use kp_tests::lambda::{Function, event};
use kp_tests::{secrets, stack, unique, workspace_root};
use serde_json::{Value, json};

/// Runs demo.sh into a scratch state directory (a copy of the running
/// stack's `stack.env`), so a developer's own `functions.env` is left alone.
fn seed() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("kp-demo"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        kp_tests::stack_dir().join("stack.env"),
        dir.join("stack.env"),
    )
    .unwrap();
    let out = std::process::Command::new(workspace_root().join("tests/stack/demo.sh"))
        .env("STACK_DIR", &dir)
        .output()
        .expect("run demo.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    dir
}

/// `functions.env` as the variables cargo lambda watch would give a function.
fn functions_env(dir: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("functions.env"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_run_commands_seeding_lets_rotate_reconcile_and_rotate_the_demo_tenant() {
    stack();
    let dir = seed();
    let env = functions_env(&dir);
    assert!(
        env.iter().any(|(k, _)| k == "KP_ADMIN_TOKEN_SECRET"),
        "{env:?}"
    );
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let rotate = Function::start("rotate", &env);

    // The shipped dry-run event: the admin token works (the tenant is read
    // and compared), the seeded demo token is fresh, nothing fails.
    let (status, report) = rotate.invoke(&event("rotate-scheduled-dry-run.json")).await;
    assert_eq!(status, 200, "{report}\n{}", rotate.logs());
    assert_eq!(report["failedTenants"], json!([]), "{report:#}");
    assert_eq!(report["reconcile"]["failures"], json!([]), "{report:#}");
    assert_eq!(report["tokens"][0]["name"], "demo", "{report:#}");
    assert_eq!(report["tokens"][0]["kind"], "token", "{report:#}");
    assert_eq!(report["tokens"][0]["outcome"], "fresh", "{report:#}");

    // A forced rotation mints with the seeded signing key: the broker must
    // accept the new token (the function's own test step), and it produces.
    let (status, report) = rotate
        .invoke(&json!({"action": "rotate", "force": true}))
        .await;
    assert_eq!(status, 200, "{report}\n{}", rotate.logs());
    assert_eq!(report["tokens"][0]["outcome"], "rotated", "{report:#}");
    let secret = report["tokens"][0]["secret"].as_str().unwrap().to_owned();
    let sm = aws_sdk_secretsmanager::Client::new(&stack().aws_config().await);
    let (_, current) = secrets::staged(&sm, &secret, "AWSCURRENT")
        .await
        .expect("AWSCURRENT");
    let value: Value = serde_json::from_str(&current).unwrap();
    stack()
        .produce_as(
            value["token"].as_str().unwrap(),
            &format!("persistent://demo/orders/{}", unique("seed")),
        )
        .await
        .expect("the rotated demo token produces to demo/orders");
    let _ = std::fs::remove_dir_all(&dir);
}
