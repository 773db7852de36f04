//! The stack script fails clearly (what is wrong, what to do) instead of with
//! a stack trace, and reuses a running stack instead of starting a second.
//! Each case uses its own state directory and starts nothing.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use kp_tests::{free_port, unique, workspace_root};

fn stack_sh(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(workspace_root().join("tests/stack/stack.sh"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run stack.sh")
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("kp-stack"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_taken_port_is_named_and_nothing_is_started() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = scratch_dir();
    let out = stack_sh(
        &["up"],
        &[
            ("KP_STACK_DIR", dir.display().to_string()),
            ("KP_MOTO_PORT", port.to_string()),
        ],
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("port {port} (needed for moto")),
        "{err}"
    );
    assert!(err.contains("already in use"), "{err}");
    assert!(
        !err.contains("Traceback") && !err.contains("Exception"),
        "{err}"
    );
    assert!(!dir.join("moto.pid").exists() && !dir.join("pulsar.pid").exists());
}

#[test]
fn a_missing_java_is_reported() {
    let out = stack_sh(&["setup"], &[("JAVA_HOME", "/nonexistent-jdk".into())]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "JAVA_HOME is set to /nonexistent-jdk but there is no /nonexistent-jdk/bin/java"
        ),
        "{err}"
    );
}

#[test]
fn a_too_old_java_is_reported() {
    let jdk = scratch_dir();
    std::fs::create_dir_all(jdk.join("bin")).unwrap();
    let java = jdk.join("bin/java");
    std::fs::write(
        &java,
        "#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = stack_sh(&["setup"], &[("JAVA_HOME", jdk.display().to_string())]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("needs Java 17 or newer"), "{err}");
    assert!(err.contains("11.0.2"), "{err}");
}

#[test]
fn a_failed_maven_resolution_is_reported() {
    let out = stack_sh(
        &["setup"],
        &[("KP_PULSAR_VERSION", "0.0.0-does-not-exist".into())],
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("Maven could not resolve Apache Pulsar 0.0.0-does-not-exist"),
        "{err}"
    );
    assert!(err.contains("pulsar-broker"), "{err}");
}

#[test]
fn a_second_up_reuses_the_running_stack() {
    kp_tests::stack(); // a stack must be running
    let out = stack_sh(&["up"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Pulsar already running"), "{err}");
    assert!(err.contains("moto already running"), "{err}");
}

/// The failure that once took every producing test down: the embedded
/// bookie turns read-only when the disk passes its usage threshold, the
/// admin API still answers, and every produce times out. Start-up must catch
/// it with a real produce and say so. A second, real broker is started here
/// with a threshold below the disk's actual usage.
#[test]
fn a_broker_that_cannot_store_messages_fails_start_up_and_says_why() {
    kp_tests::stack(); // set-up (Maven classpath, .venv) is done
    let dir = scratch_dir();
    let http_port = free_port();
    let env = [
        ("KP_STACK_DIR", dir.display().to_string()),
        ("KP_PULSAR_PORT", free_port().to_string()),
        ("KP_PULSAR_HTTP_PORT", http_port.to_string()),
        ("KP_PULSAR_TLS_PORT", free_port().to_string()),
        ("KP_BOOKIE_PORT", free_port().to_string()),
        ("KP_MOTO_PORT", free_port().to_string()),
        ("KP_BOOKIE_DISK_THRESHOLD", "0.01".into()),
        ("KP_PULSAR_WRITABLE_TIMEOUT", "10".into()),
    ];
    let out = stack_sh(&["up"], &env);
    let down = stack_sh(&["down"], &env); // moto, which did start
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("Pulsar ready"), "{err}");
    assert!(
        err.contains("Pulsar answers but cannot store messages"),
        "{err}"
    );
    assert!(err.contains("Not enough non-faulty bookies"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    // The broker it started is stopped, not left running: its pid file is
    // gone and its admin port is free again.
    assert!(!dir.join("pulsar.pid").exists(), "{err}");
    assert!(
        TcpListener::bind(("127.0.0.1", http_port)).is_ok(),
        "{err}\n{}",
        stderr(&down)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
