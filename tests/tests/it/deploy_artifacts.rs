//! What users deploy agrees with the code: `template.yaml` sets exactly the
//! configuration the functions read, with defaults they accept; its dry-run
//! schedule sends an event `rotate` takes as a dry run; the shipped policy
//! loads and names only secrets the template's IAM policies reach, and rotate
//! may write token and certificate secrets only (never the signing key, admin
//! token or CA, which it reads); plaintext Pulsar URLs need an explicit
//! opt-in; every sample in `events/` is a payload the function it is named
//! after recognises. (Syntax and schema checks of the same files — cfn-lint,
//! `sam validate --lint`, `deck file validate` — are in tests/stack/validate.sh.)
//! No stack needed.

use std::collections::BTreeSet;

use kong_pulsar::config::{Config, PolicySource};
use kong_pulsar::edge::kong::{PayloadError, PayloadShape, parse_request};
use kong_pulsar::policy::Policy;
use kong_pulsar::rotation::handler::Task;
use kp_tests::workspace_root;
use serde_json::Value;

fn template() -> String {
    std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `Parameters.<name>.Default` of the template (a plain scalar).
fn parameter_default(template: &str, name: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == format!("  {name}:"))
        .unwrap_or_else(|| panic!("parameter {name} not in template.yaml"));
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > 2)
        .find_map(|l| l.trim().strip_prefix("Default: "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("parameter {name} has no Default"))
}

/// Every environment variable name the template sets (Globals and functions).
fn template_env_names(template: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut block: Option<usize> = None;
    for line in template.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(at) = block {
            if indent(line) <= at {
                block = None;
            } else if let Some((name, _)) = line.trim().split_once(':') {
                if indent(line) == at + 2 {
                    names.insert(name.to_owned());
                }
                continue;
            }
        }
        if line.trim() == "Variables:" {
            block = Some(indent(line));
        }
    }
    names
}

#[test]
fn template_sets_exactly_the_configuration_the_functions_read() {
    let template = template();
    let set = template_env_names(&template);
    assert!(!set.is_empty(), "no Environment.Variables found");

    // Every name Config asks for, recorded through its lookup.
    let asked = std::cell::RefCell::new(BTreeSet::new());
    Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        Some(match name {
            "KP_POLICY_FILE" => "/opt/example.yaml".into(),
            "PULSAR_SERVICE_URL" => "pulsar+ssl://broker:6651".into(),
            "PULSAR_ADMIN_URL" => "https://broker:8443".into(),
            "KP_SECRET_TTL" => "5m".into(),
            "KP_MAX_BODY_BYTES" | "KP_MAX_BATCH" | "KP_MAX_PRODUCERS" => "1".into(),
            n if n.starts_with("KP_MAX_") => "1".into(),
            _ => "x".into(),
        })
    })
    .expect("config");
    let mut read = asked.into_inner();
    read.insert("RUST_LOG".into()); // the tracing filter (telemetry)

    let unknown: Vec<_> = set.difference(&read).collect();
    assert!(
        unknown.is_empty(),
        "template.yaml sets variables no function reads: {unknown:?}"
    );
    // KP_POLICY is the inline alternative to KP_POLICY_FILE (the template ships a file).
    read.remove("KP_POLICY");
    let missing: Vec<_> = read.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "template.yaml does not set {missing:?} (DESIGN §9: the template sets the same names)"
    );
}

#[test]
fn template_defaults_are_values_the_functions_accept() {
    let template = template();
    let ttl = parameter_default(&template, "SecretTtl");
    let body = parameter_default(&template, "MaxBodyBytes");
    let batch = parameter_default(&template, "MaxBatch");
    let producers = parameter_default(&template, "MaxProducers");
    let metadata: Vec<(&str, String)> = [
        ("KP_MAX_PROPERTIES", "MaxProperties"),
        ("KP_MAX_PROPERTY_NAME_BYTES", "MaxPropertyNameBytes"),
        ("KP_MAX_PROPERTY_VALUE_BYTES", "MaxPropertyValueBytes"),
        ("KP_MAX_METADATA_BYTES", "MaxMetadataBytes"),
        ("KP_MAX_EVENT_KEY_BYTES", "MaxEventKeyBytes"),
    ]
    .into_iter()
    .map(|(var, param)| (var, parameter_default(&template, param)))
    .collect();
    let config = Config::from_lookup(|name| {
        Some(match name {
            "KP_POLICY_FILE" => "/opt/example.yaml".into(),
            "PULSAR_SERVICE_URL" => "pulsar://broker:6650".into(),
            "KP_SECRET_TTL" => ttl.clone(),
            "KP_MAX_BODY_BYTES" => body.clone(),
            "KP_MAX_BATCH" => batch.clone(),
            "KP_MAX_PRODUCERS" => producers.clone(),
            other => match metadata.iter().find(|(var, _)| *var == other) {
                Some((_, value)) => value.clone(),
                None => return None,
            },
        })
    })
    .expect("the template's defaults must be valid configuration");
    assert_eq!(config.secret_ttl.as_secs(), 300);
    assert_eq!(config.max_body_bytes, 1 << 20);
    assert_eq!(config.max_batch, 500);
    assert_eq!(
        config.max_producers,
        kong_pulsar::config::DEFAULT_MAX_PRODUCERS
    );
    assert_eq!(
        config.metadata,
        kong_pulsar::config::MetadataLimits::default(),
        "the template's metadata limits are the documented defaults"
    );
}

#[test]
fn template_builds_the_workspace_binaries() {
    let template = template();
    let binaries: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary: "))
        .collect();
    assert_eq!(binaries, ["publish", "rotate"]);
    for bin in binaries {
        let manifest = std::fs::read_to_string(
            workspace_root()
                .join("functions")
                .join(bin)
                .join("Cargo.toml"),
        )
        .unwrap_or_else(|e| panic!("functions/{bin}/Cargo.toml: {e}"));
        assert!(
            manifest.contains(&format!("name = \"{bin}\"")),
            "functions/{bin} does not build a binary named {bin}"
        );
    }
}

#[test]
fn dry_run_schedule_sends_a_dry_run_cycle() {
    let template = template();
    let inputs: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Input: "))
        .collect();
    assert_eq!(inputs.len(), 1, "one scheduled Input (the dry run)");
    let json = inputs[0].trim_matches('\'');
    let event: Value = serde_json::from_str(json).expect("the Input is JSON");
    match Task::parse(&event).expect("rotate recognises the dry-run schedule's input") {
        Task::Cycle {
            dry_run: true,
            force: false,
        } => {}
        other => panic!("the dry-run schedule would run {other:?}"),
    }
}

/// The statement `sid` of the template's IAM policies: its actions and the
/// secret-name patterns of its resources (what follows `secret:` in each ARN).
fn statement(template: &str, sid: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- Sid: {sid}"))
        .unwrap_or_else(|| panic!("no statement {sid} in template.yaml"));
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().starts_with("- Sid:") && !l.trim().starts_with("- !If"))
        .copied()
        .collect();
    let actions = body
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- secretsmanager:"))
        .map(|a| format!("secretsmanager:{a}"))
        .collect();
    let resources = body
        .iter()
        .filter_map(|l| {
            l.split_once(":secret:")
                .map(|(_, name)| name.trim().to_owned())
        })
        .collect();
    (actions, resources)
}

/// Whether the IAM resource pattern `pattern` (`${SecretPrefix}/tokens/*`)
/// covers the secret `name` under `prefix`.
fn reaches(pattern: &str, prefix: &str, name: &str) -> bool {
    let pattern = pattern.replace("${SecretPrefix}", prefix);
    match pattern.strip_suffix('*') {
        Some(stem) => name.starts_with(stem),
        None => pattern == name,
    }
}

#[test]
fn shipped_policy_loads_and_names_only_secrets_the_roles_reach() {
    let template = template();
    let file = parameter_default(&template, "PolicyFile");
    let prefix = parameter_default(&template, "SecretPrefix");
    let policy = Policy::load(&PolicySource::File(
        workspace_root().join("policy").join(&file),
    ))
    .unwrap_or_else(|e| panic!("policy/{file} (the template's PolicyFile) does not load: {e}"));

    // publish may read only <prefix>/tokens/* and <prefix>/provenance/*.
    let (publish_actions, publish_reads) = statement(&template, "ReadTenantTokens");
    assert_eq!(
        publish_reads,
        ["${SecretPrefix}/tokens/*", "${SecretPrefix}/provenance/*"]
    );
    assert!(publish_actions.is_empty(), "ReadTenantTokens is one action");
    for tenant in policy.tenants() {
        assert!(
            reaches(&publish_reads[0], &prefix, &tenant.token_secret),
            "tenant token secret {} is outside {prefix}/tokens/: publish could not read it",
            tenant.token_secret
        );
    }
    let provenance = policy
        .provenance()
        .expect("the shipped policy signs events (provenance:)");
    assert!(
        reaches(&publish_reads[1], &prefix, &provenance.signing_secret),
        "the provenance key set {} is outside {prefix}/provenance/: publish could not read it",
        provenance.signing_secret
    );
    // Neither pattern reaches the signing key, the admin token or a CA.
    for other in [
        policy.pulsar().token_signing_secret.clone(),
        format!("{prefix}/admin-token"),
        format!("{prefix}/ca"),
    ] {
        assert!(
            !publish_reads.iter().any(|r| reaches(r, &prefix, &other)),
            "publish could read {other}"
        );
    }
}

#[test]
fn rotate_may_write_only_token_and_certificate_secrets_and_reads_its_keys() {
    let template = template();
    let file = parameter_default(&template, "PolicyFile");
    let prefix = parameter_default(&template, "SecretPrefix");
    let policy = Policy::load(&PolicySource::File(
        workspace_root().join("policy").join(&file),
    ))
    .expect("the shipped policy loads");

    let (read_actions, reads) = statement(&template, "ReadOwnSecrets");
    let (write_actions, writes) = statement(&template, "WriteRotatedSecrets");
    assert_eq!(
        read_actions,
        [
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret"
        ]
    );
    assert_eq!(reads, ["${SecretPrefix}/*"]);
    assert_eq!(
        write_actions,
        [
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:CreateSecret"
        ]
    );
    assert_eq!(
        writes,
        [
            "${SecretPrefix}/tokens/*",
            "${SecretPrefix}/certs/*",
            "${SecretPrefix}/provenance/*"
        ]
    );
    // No other statement grants a secretsmanager action to rotate.
    let rotate_role = &template[template.find("  RotateRole:").unwrap()..];
    let rotate_role = &rotate_role[..rotate_role.find("\n  # ").unwrap_or(rotate_role.len())];
    assert_eq!(
        rotate_role.matches("secretsmanager:").count(),
        // 5 actions and 4 ARNs.
        5 + 4,
        "RotateRole grants a secretsmanager action outside the two statements"
    );

    let writable = |name: &str| writes.iter().any(|w| reaches(w, &prefix, name));
    let readable = |name: &str| reads.iter().any(|r| reaches(r, &prefix, name));
    // What rotation writes: every token and certificate secret.
    let mut written: Vec<String> = policy.tenants().map(|t| t.token_secret.clone()).collect();
    written.extend(policy.certificates().iter().map(|c| c.secret.clone()));
    written.extend(policy.provenance().map(|p| p.signing_secret.clone()));
    for secret in &written {
        assert!(writable(secret), "rotate could not write {secret}");
    }
    // What it must only read: the signing key, the CAs, the admin token.
    let admin = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("KP_ADMIN_TOKEN_SECRET: !Sub "))
        .expect("KP_ADMIN_TOKEN_SECRET")
        .replace("${SecretPrefix}", &prefix);
    let mut keys = vec![policy.pulsar().token_signing_secret.clone(), admin];
    keys.extend(policy.certificates().iter().map(|c| c.ca_secret.clone()));
    // The README's CA name, should the shipped policy list no certificate.
    keys.push(format!("{prefix}/ca"));
    for key in &keys {
        assert!(readable(key), "rotate could not read {key}");
        assert!(!writable(key), "rotate could overwrite {key}");
    }
}

#[test]
fn the_template_refuses_plaintext_pulsar_unless_allowed() {
    let template = template();
    let pattern = |name: &str| {
        let lines: Vec<&str> = template.lines().collect();
        let start = lines
            .iter()
            .position(|l| *l == format!("  {name}:"))
            .unwrap_or_else(|| panic!("parameter {name}"));
        lines[start + 1..]
            .iter()
            .take_while(|l| indent(l) > 2)
            .find_map(|l| l.trim().strip_prefix("AllowedPattern: "))
            .map(|p| p.trim_matches('"').replace("\\\\", "\\"))
            .unwrap_or_else(|| panic!("{name} has no AllowedPattern"))
    };
    // The URLs the functions get by default are TLS only (or empty, when the
    // plaintext alternative is used)...
    assert_eq!(pattern("PulsarServiceUrl"), "^(pulsar\\+ssl://.+)?$");
    assert_eq!(pattern("PulsarAdminUrl"), "^(https://.+)?$");
    assert_eq!(pattern("PlaintextPulsarServiceUrl"), "^(pulsar://.+)?$");
    assert_eq!(pattern("PlaintextPulsarAdminUrl"), "^(http://.+)?$");
    // ...and the plaintext ones are refused unless AllowPlaintextPulsar=true.
    assert_eq!(
        parameter_default(&template, "AllowPlaintextPulsar"),
        "false"
    );
    let rule = &template[template
        .find("  PlaintextPulsarNeedsOptIn:")
        .expect("the opt-in rule")..];
    let rule: String = rule.lines().take(7).collect::<Vec<_>>().join("\n");
    for needed in [
        "RuleCondition: !Equals [!Ref AllowPlaintextPulsar, \"false\"]",
        "Assert: !Equals [!Ref PlaintextPulsarServiceUrl, \"\"]",
        "Assert: !Equals [!Ref PlaintextPulsarAdminUrl, \"\"]",
    ] {
        assert!(rule.contains(needed), "{needed} not in\n{rule}");
    }
    assert!(template.contains("PULSAR_SERVICE_URL: !If [PlaintextServiceUrl, !Ref PlaintextPulsarServiceUrl, !Ref PulsarServiceUrl]"));
    assert!(template.contains("PULSAR_ADMIN_URL: !If [PlaintextAdminUrl, !Ref PlaintextPulsarAdminUrl, !Ref PulsarAdminUrl]"));
}

#[test]
fn every_sample_event_is_recognised_by_its_function() {
    let mut seen = 0;
    let mut files: Vec<_> = std::fs::read_dir(workspace_root().join("events"))
        .expect("events/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        let event: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        if name.starts_with("publish-") {
            match parse_request(&event, 1 << 20) {
                Ok(request) => {
                    let expected = if name.starts_with("publish-apigw-v1") {
                        PayloadShape::ApiGatewayV1
                    } else if name.starts_with("publish-http-v2") {
                        PayloadShape::HttpApiV2
                    } else {
                        PayloadShape::Kong
                    };
                    assert_eq!(request.shape, expected, "{name}");
                    assert!(!request.method.is_empty(), "{name}: no method");
                }
                Err(PayloadError::Legacy) => {
                    assert!(
                        name.contains("legacy"),
                        "{name}: taken for Kong's legacy mode"
                    )
                }
                Err(PayloadError::Unrecognized) => {
                    panic!("{name}: publish does not recognise it")
                }
                Err(_) => {} // a deliberately malformed sample: recognised, then refused
            }
        } else if name.starts_with("rotate-") {
            let task = Task::parse(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
            let dry = name.contains("dry-run");
            match task {
                Task::Cycle { dry_run, .. } | Task::Reconcile { dry_run } => {
                    assert_eq!(dry_run, dry, "{name}")
                }
                Task::RotateTokens { dry_run, .. } => assert_eq!(dry_run, dry, "{name}"),
                Task::Step(_) => assert!(name.starts_with("rotate-step-"), "{name}"),
                Task::CustomResource(cfn) => {
                    assert!(name.starts_with("rotate-cfn-"), "{name}");
                    assert!(cfn.request.is_ok(), "{name}: {:?}", cfn.request);
                }
            }
        } else {
            panic!("{name}: sample events are named publish-* or rotate-* after their function");
        }
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} sample events");
}

/// A policy change must reach the broker at deploy: a custom resource backed
/// by rotate whose properties change with every policy layer version.
#[test]
fn deploys_reconcile_through_a_custom_resource_backed_by_rotate() {
    let template = template();
    let start = template
        .find("\n  PolicyReconcile:\n")
        .expect("a PolicyReconcile resource");
    let block: String = template[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || indent(l) > 2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(block.contains("Type: Custom::PolicyReconcile"), "{block}");
    assert!(
        block.contains("ServiceToken: !GetAtt RotateFunction.Arn"),
        "{block}"
    );
    assert!(
        block.contains("PolicyLayerVersion: !Ref PolicyLayer"),
        "{block}"
    );
}

/// A client must not choose the request id that lands in `kp-request-id` and
/// the audit line: every route in kong/*.yaml that invokes the function strips
/// the headers the function would take it from (it then uses the Lambda
/// invocation id, which AWS generates).
#[test]
fn kong_routes_strip_client_chosen_request_ids() {
    let mut checked = 0;
    for file in ["kong/kong.yaml", "kong/kong.local.yaml"] {
        let text = std::fs::read_to_string(workspace_root().join(file)).expect(file);
        // Routes are the `- name:` items six spaces in; a route runs to the next.
        let mut routes: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("      - name: ") {
                routes.push(String::new());
            } else if !line.starts_with("      ") && !line.trim().is_empty() {
                // Left the routes list (another service or `consumers:`).
                if !line.starts_with("    ") {
                    routes.push(String::new());
                }
            }
            if let Some(route) = routes.last_mut() {
                route.push_str(line);
                route.push('\n');
            }
        }
        for route in routes.iter().filter(|r| r.contains("- name: aws-lambda")) {
            let name = route.lines().next().unwrap_or("").trim();
            let stripped = route
                .split("- name: request-transformer")
                .nth(1)
                .unwrap_or_else(|| panic!("{file}: {name} has no request-transformer"));
            for header in ["kong-request-id", "x-kong-request-id"] {
                let listed = stripped
                    .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                    .any(|w| w == header);
                assert!(
                    listed,
                    "{file}: {name} does not strip a client-sent {header}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5, "routes invoking the function");
}
