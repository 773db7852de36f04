//! What users deploy agrees with the code: `template.yaml` sets exactly the
//! configuration the functions read, with defaults they accept; its dry-run
//! schedule sends an event `rotate` takes as a dry run; the shipped policy
//! loads and names only secrets the template's IAM policies reach, rotate
//! may write token and certificate secrets only (never the signing key, admin
//! token or CA, which it reads), and consume reads tenant tokens but never the
//! provenance key set; Kong may invoke publish and consume, nothing else;
//! plaintext Pulsar URLs need an explicit opt-in; the Kong routes send every
//! request to the function meant for it (Kong's route priority replayed) and
//! strip client-sent identity headers; every sample in `events/` is a payload
//! the function it is named after recognises, and Kong routes it there.
//! (Syntax and schema checks of the same files — cfn-lint, `sam validate
//! --lint`, `deck file validate` — are in tests/stack/validate.sh.) No stack
//! needed.

use std::collections::BTreeSet;
use std::time::Duration;

use kong_pulsar::config::{Config, PolicySource, parse_duration};
use kong_pulsar::edge::kong::{PayloadError, PayloadShape, parse_request};
use kong_pulsar::policy::Policy;
use kong_pulsar::rotation::handler::Task;
use kp_tests::workspace_root;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

/// What consume reads beyond the variables every function shares, by name
/// (the template sets them on ConsumeFunction alone).
const CONSUME_VARIABLES: [&str; 4] = [
    "KP_PROVENANCE_JWKS_URL",
    "KP_VISIBILITY_TIMEOUT",
    "KP_MAX_RESPONSE_BYTES",
    "KP_MAX_CONSUMERS",
];

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

/// The lines of the template resource `name` after its `  Name:` line, up to
/// the next line at resource indentation (the next resource or section comment).
fn resource(template: &str, name: &str) -> String {
    let start = template
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no resource {name} in template.yaml"));
    template[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || indent(l) > 2)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Properties.Timeout` of the function resource `name`, in seconds.
fn function_timeout(template: &str, name: &str) -> u64 {
    resource(template, name)
        .lines()
        .find_map(|l| l.strip_prefix("      Timeout: "))
        .unwrap_or_else(|| panic!("{name} has no Timeout"))
        .trim()
        .parse()
        .expect("Timeout is a number")
}

/// Every environment variable name the template (or a part of it) sets.
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
            "KP_VISIBILITY_TIMEOUT" => "30s".into(),
            "KP_PROVENANCE_JWKS_URL" => "https://kong.example/events/.well-known/jwks.json".into(),
            "KP_MAX_BODY_BYTES" | "KP_MAX_BATCH" | "KP_MAX_PRODUCERS" => "1".into(),
            n if n.starts_with("KP_MAX_") => "1".into(),
            _ => "x".into(),
        })
    })
    .expect("config");
    let mut read = asked.into_inner();
    read.insert("RUST_LOG".into()); // the tracing filter (telemetry)
    read.insert("SSL_CERT_FILE".into()); // the TLS clients' CA bundle (rustls-native-certs)

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
    // consume's: the documented defaults, and values Config takes.
    assert_eq!(
        parameter_default(&template, "ProvenanceJwksUrl"),
        "",
        "empty: KP_PROVENANCE_JWKS_URL not set"
    );
    let visibility = parameter_default(&template, "VisibilityTimeout");
    assert_eq!(parse_duration(&visibility), Ok(Duration::from_secs(30)));
    let response = parameter_default(&template, "MaxResponseBytes");
    assert_eq!(response, (4u64 << 20).to_string());
    let consumers = parameter_default(&template, "MaxConsumers");
    assert_eq!(consumers, "64");
    let config = Config::from_lookup(|name| {
        Some(match name {
            "KP_POLICY_FILE" => "/opt/example.yaml".into(),
            "PULSAR_SERVICE_URL" => "pulsar://broker:6650".into(),
            "KP_SECRET_TTL" => ttl.clone(),
            "KP_MAX_BODY_BYTES" => body.clone(),
            "KP_MAX_BATCH" => batch.clone(),
            "KP_MAX_PRODUCERS" => producers.clone(),
            // Left out of the environment while the parameter is empty.
            "KP_PROVENANCE_JWKS_URL" => return None,
            "KP_VISIBILITY_TIMEOUT" => visibility.clone(),
            "KP_MAX_RESPONSE_BYTES" => response.clone(),
            "KP_MAX_CONSUMERS" => consumers.clone(),
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
    assert_eq!(binaries, ["publish", "consume", "rotate"]);
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

/// consume is built and run like publish (Globals: runtime, arm64, the policy
/// layer, the VPC), with its own role, its own variables and a timeout long
/// enough for a 20 s long poll.
#[test]
fn consume_is_built_like_publish_with_its_own_role_variables_and_timeout() {
    let template = template();
    let consume = resource(&template, "ConsumeFunction");
    for line in [
        "Type: AWS::Serverless::Function",
        "BuildMethod: rust-cargolambda",
        "Binary: consume",
        "Role: !GetAtt ConsumeRole.Arn",
        "LogGroup: !Ref ConsumeLogGroup",
    ] {
        assert!(
            consume.lines().any(|l| l.trim() == line),
            "ConsumeFunction lacks {line}"
        );
    }
    // Nothing that would set it apart from publish's Globals.
    for key in [
        "Runtime:",
        "Architectures:",
        "Handler:",
        "CodeUri:",
        "Layers:",
        "VpcConfig:",
    ] {
        assert!(
            !consume.lines().any(|l| l.trim().starts_with(key)),
            "ConsumeFunction overrides the Globals' {key}"
        );
    }
    assert_eq!(
        template_env_names(&consume),
        CONSUME_VARIABLES.map(String::from).into(),
        "ConsumeFunction's own variables"
    );
    for other in ["PublishFunction", "RotateFunction"] {
        let theirs = template_env_names(&resource(&template, other));
        assert!(
            CONSUME_VARIABLES.iter().all(|v| !theirs.contains(*v)),
            "{other} gets consume's variables: {theirs:?}"
        );
    }
    // Long polls wait at most 20 s; publish answers within its 10 s.
    assert_eq!(function_timeout(&template, "ConsumeFunction"), 30);
    assert_eq!(function_timeout(&template, "PublishFunction"), 10);
    for (output, value) in [
        ("ConsumeFunctionName", "!Ref ConsumeFunction"),
        ("ConsumeFunctionArn", "!GetAtt ConsumeFunction.Arn"),
    ] {
        assert!(
            resource(&template, output)
                .lines()
                .any(|l| l.trim() == format!("Value: {value}")),
            "output {output} is not {value}"
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

/// One statement of the template's IAM policies.
struct Statement {
    /// `Allow` or `Deny`.
    effect: String,
    /// Its `secretsmanager:` actions, in order.
    actions: Vec<String>,
    /// The secret-name patterns of its resources (what follows `secret:` in each ARN).
    resources: Vec<String>,
}

/// The statement `sid` of the template's IAM policies (Sids are unique in the
/// template, but `OwnLogs`).
fn statement(template: &str, sid: &str) -> Statement {
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
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("- secretsmanager:")
                .or_else(|| l.strip_prefix("Action: secretsmanager:"))
        })
        .map(|a| format!("secretsmanager:{a}"))
        .collect();
    let resources = body
        .iter()
        .filter_map(|l| {
            l.split_once(":secret:")
                .map(|(_, name)| name.trim().to_owned())
        })
        .collect();
    let effect = body
        .iter()
        .find_map(|l| l.trim().strip_prefix("Effect: "))
        .unwrap_or_else(|| panic!("statement {sid} has no Effect"))
        .to_owned();
    Statement {
        effect,
        actions,
        resources,
    }
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
    let read_tokens = statement(&template, "ReadTenantTokens");
    let publish_reads = read_tokens.resources;
    assert_eq!(
        publish_reads,
        ["${SecretPrefix}/tokens/*", "${SecretPrefix}/provenance/*"]
    );
    assert_eq!(read_tokens.effect, "Allow");
    assert_eq!(read_tokens.actions, ["secretsmanager:GetSecretValue"]);
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

    let Statement {
        actions: read_actions,
        resources: reads,
        ..
    } = statement(&template, "ReadOwnSecrets");
    let Statement {
        actions: write_actions,
        resources: writes,
        ..
    } = statement(&template, "WriteRotatedSecrets");
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

/// consume verifies provenance with the public JWKS only: its role reads tenant
/// tokens and nothing else under the prefix, never the provenance key set
/// (explicitly denied, so a policy attached later cannot grant it), and writes
/// no secret.
#[test]
fn consume_reads_tenant_tokens_and_never_the_provenance_keys() {
    let template = template();
    let file = parameter_default(&template, "PolicyFile");
    let prefix = parameter_default(&template, "SecretPrefix");
    let policy = Policy::load(&PolicySource::File(
        workspace_root().join("policy").join(&file),
    ))
    .expect("the shipped policy loads");

    let read = statement(&template, "ConsumeReadsTenantTokens");
    assert_eq!(read.effect, "Allow");
    assert_eq!(read.actions, ["secretsmanager:GetSecretValue"]);
    assert_eq!(read.resources, ["${SecretPrefix}/tokens/*"]);
    for tenant in policy.tenants() {
        assert!(
            reaches(&read.resources[0], &prefix, &tenant.token_secret),
            "consume could not read tenant token secret {}",
            tenant.token_secret
        );
    }
    let signing_keys = policy
        .provenance()
        .expect("the shipped policy signs events (provenance:)")
        .signing_secret
        .clone();
    for other in [
        signing_keys.clone(),
        policy.pulsar().token_signing_secret.clone(),
        format!("{prefix}/admin-token"),
        format!("{prefix}/ca"),
    ] {
        assert!(
            !read.resources.iter().any(|r| reaches(r, &prefix, &other)),
            "consume could read {other}"
        );
    }
    let deny = statement(&template, "ConsumeNeverReadsSigningKeys");
    assert_eq!(deny.effect, "Deny");
    assert_eq!(deny.actions, ["secretsmanager:*"]);
    assert!(
        deny.resources
            .iter()
            .any(|r| reaches(r, &prefix, &signing_keys)),
        "the Deny does not cover the provenance key set {signing_keys}"
    );
    // No other secretsmanager grant in ConsumeRole: 2 actions and 2 ARNs.
    let role = resource(&template, "ConsumeRole");
    assert_eq!(
        role.matches("secretsmanager:").count(),
        2 + 2,
        "ConsumeRole names a secretsmanager action outside its two statements"
    );
}

/// Kong's role may invoke the two functions behind its routes (and their
/// versions and aliases), not rotate, and nothing else.
#[test]
fn kong_may_invoke_publish_and_consume_only() {
    let template = template();
    let role = resource(&template, "KongInvokeRole");
    let actions: Vec<&str> = role
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Action: "))
        .collect();
    assert_eq!(actions, ["sts:AssumeRole", "lambda:InvokeFunction"]);
    assert_eq!(role.matches("Resource:").count(), 1, "{role}");
    let resources: Vec<&str> = role
        .lines()
        .skip_while(|l| l.trim() != "Resource:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert_eq!(
        resources,
        [
            "!GetAtt PublishFunction.Arn",
            "!Sub ${PublishFunction.Arn}:*",
            "!GetAtt ConsumeFunction.Arn",
            "!Sub ${ConsumeFunction.Arn}:*",
        ]
    );
    assert!(!role.contains("Rotate"), "{role}");
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
    let kong = kong_routes("kong/kong.yaml");
    // Where Kong sends the request a sample carries.
    let routed = |name: &str, method: &str, path: &str| {
        kong_select(&kong, method, path)
            .and_then(route_function)
            .unwrap_or_else(|| panic!("{name}: no kong/kong.yaml route takes {method} {path}"))
    };
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
                    assert_eq!(
                        routed(&name, &request.method, &request.path),
                        "publish",
                        "{name}"
                    );
                    // CloudEvents samples are valid events of their mode.
                    use kong_pulsar::edge::publish::cloudevents::{self, Mode};
                    let media = request
                        .headers
                        .get("content-type")
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    let mode = cloudevents::mode(&media, &request.headers)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let expected = [
                        ("-ce-binary", Mode::Binary),
                        ("-ce-structured", Mode::Structured),
                        ("-ce-batch", Mode::Batch),
                    ]
                    .into_iter()
                    .find(|(part, _)| name.contains(part))
                    .map(|(_, mode)| mode);
                    assert_eq!(mode, expected, "{name}");
                    if let Some(mode) = mode {
                        cloudevents::parse(&request, mode, 500, &Default::default())
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                    }
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
        } else if name.starts_with("consume-") {
            // consume takes the same payloads as publish (edge::kong); which
            // handler serves the request is its route() (checked with it).
            let request = parse_request(&event, 1 << 20)
                .unwrap_or_else(|e| panic!("{name}: consume does not recognise it: {e}"));
            let expected = if name.starts_with("consume-apigw-v1") {
                PayloadShape::ApiGatewayV1
            } else if name.starts_with("consume-http-v2") {
                PayloadShape::HttpApiV2
            } else {
                PayloadShape::Kong
            };
            assert_eq!(request.shape, expected, "{name}");
            let arg = |key: &str| {
                request
                    .query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let topic = "/events/payments/orders/order-created";
            if name.contains("-acks") {
                assert_eq!(request.method, "POST", "{name}");
                assert_eq!(request.path, format!("{topic}/acks"), "{name}");
                assert!(request.query.is_empty(), "{name}: {:?}", request.query);
                let body: Value = serde_json::from_slice(&request.body)
                    .unwrap_or_else(|e| panic!("{name}: the ack body is not JSON: {e}"));
                assert!(body["subscription"].is_string(), "{name}: {body}");
                let ids = body["messageIds"].as_array().expect("messageIds");
                assert!(
                    !ids.is_empty() && ids.iter().all(Value::is_string),
                    "{name}: {body}"
                );
            } else {
                assert_eq!(request.method, "GET", "{name}");
                assert_eq!(request.path, topic, "{name}");
                assert!(request.body.is_empty(), "{name}: a read has no body");
                // A cursor read names where to start, a subscription read its
                // subscription; never both.
                let cursor = name.contains("-cursor");
                assert!(
                    cursor || name.contains("-subscription"),
                    "{name}: consume-*-cursor, -subscription or -acks"
                );
                assert_eq!(arg("after").is_some(), cursor, "{name}");
                assert_eq!(arg("subscription").is_some(), !cursor, "{name}");
                for key in ["max", "waitMs"] {
                    let value = arg(key).unwrap_or_else(|| panic!("{name}: no {key}"));
                    assert!(value.parse::<u32>().is_ok(), "{name}: {key}={value}");
                }
            }
            // And consume's own route and parsers take it whole.
            use kong_pulsar::edge::consume::query::{AckBody, ReadQuery};
            use kong_pulsar::edge::consume::{Route, route};
            match route(&request).unwrap_or_else(|e| panic!("{name}: consume refuses it: {e}")) {
                Route::Acknowledge(_) => {
                    AckBody::parse(&request).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Route::Read(_) => {
                    ReadQuery::parse(&request.query).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
            assert_eq!(
                routed(&name, &request.method, &request.path),
                "consume",
                "{name}"
            );
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
            panic!(
                "{name}: sample events are named publish-*, consume-* or rotate-* after their function"
            );
        }
        seen += 1;
    }
    assert!(seen >= 17, "only {seen} sample events");
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

/// The decK files, each a gateway of its own (separate select_tags).
const KONG_FILES: [&str; 2] = ["kong/kong.yaml", "kong/kong.local.yaml"];

/// Every route of the decK file `file` (all services'), YAML anchors resolved
/// as decK resolves them.
fn kong_routes(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(workspace_root().join(file)).expect(file);
    let state: Yaml = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    state["services"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{file}: no services"))
        .iter()
        .flat_map(|service| service["routes"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

/// A YAML list of strings (empty when absent).
fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn route_name(route: &Yaml) -> &str {
    route["name"].as_str().unwrap_or("?")
}

/// The config of the route's plugin `name`.
fn plugin<'a>(route: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    route["plugins"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .map(|p| &p["config"])
}

/// The function a route invokes, from its aws-lambda `function_name` (a
/// DECK_*_FUNCTION variable in kong/kong.yaml, the binary name locally).
fn route_function(route: &Yaml) -> Option<&'static str> {
    let name = plugin(route, "aws-lambda")?["function_name"]
        .as_str()?
        .to_ascii_lowercase();
    ["publish", "consume"]
        .into_iter()
        .find(|f| name.contains(f))
}

/// A route's rank in Kong's router, compared most significant field first
/// (see [`kong_priority`]).
type KongPriority = (usize, bool, usize, bool, i64, usize);

/// Kong's priority for `route` matching through its path `path`, most
/// significant first: Kong 3.x's kong/router/transform.lua `get_priority`
/// (router_flavor traditional_compatible, the default, and expressions for
/// routes without an `expression`) packs, from the top bits down, how many
/// matching fields the route sets, "plain hosts only", the header count,
/// REGEX_URL_BIT, regex_priority (regex paths only) and the prefix length;
/// traditional.lua's `sort_routes` ranks by the same keys. Each path of a
/// route is ranked on its own (transform.lua splits routes by path kind).
fn kong_priority(route: &Yaml, path: &str) -> KongPriority {
    let set = |field: &str| match &route[field] {
        Yaml::Sequence(list) => !list.is_empty(),
        Yaml::Mapping(map) => !map.is_empty(),
        _ => false,
    };
    let weight = [
        "sources",
        "destinations",
        "methods",
        "hosts",
        "headers",
        "snis",
        "paths",
    ]
    .into_iter()
    .filter(|f| set(f))
    .count();
    let plain_hosts = matches!(route["hosts"], Yaml::Sequence(_))
        && strings(&route["hosts"]).iter().all(|h| !h.contains('*'));
    let headers = route["headers"].as_mapping().map_or(0, |m| m.len());
    let regex = path.starts_with('~');
    let regex_priority = if regex {
        route["regex_priority"].as_i64().unwrap_or(0)
    } else {
        0
    };
    let length = if regex { 0 } else { path.len() };
    (weight, plain_hosts, headers, regex, regex_priority, length)
}

/// Whether the route path `path` matches the request path: a `~` regex
/// anchored at the start as Kong anchors it (transform.lua prefixes `^`), a
/// prefix otherwise.
fn path_matches(path: &str, request: &str) -> bool {
    match path.strip_prefix('~') {
        Some(re) => regex::Regex::new(&format!("^{re}"))
            .unwrap_or_else(|e| panic!("{path} is not a regex Kong's router accepts: {e}"))
            .is_match(request),
        None => request.starts_with(path),
    }
}

/// The route Kong picks among `routes` for an HTTPS request: the matching one
/// of highest priority, which must be unique (Kong leaves ties undefined).
fn kong_select<'a>(routes: &'a [Yaml], method: &str, request: &str) -> Option<&'a Yaml> {
    let mut best: Option<(KongPriority, &Yaml)> = None;
    let mut tied: Option<&str> = None;
    for route in routes {
        let methods = strings(&route["methods"]);
        let protocols = strings(&route["protocols"]);
        if !methods.is_empty() && !methods.iter().any(|m| m == method)
            || !protocols.is_empty() && !protocols.iter().any(|p| p == "https")
        {
            continue;
        }
        for path in strings(&route["paths"]) {
            if !path_matches(&path, request) {
                continue;
            }
            let priority = kong_priority(route, &path);
            match best {
                Some((top, _)) if top > priority => {}
                Some((top, other)) if top == priority => {
                    if route_name(other) != route_name(route) {
                        tied = Some(route_name(route));
                    }
                }
                _ => {
                    best = Some((priority, route));
                    tied = None;
                }
            }
        }
    }
    if let (Some(other), Some((_, route))) = (tied, best) {
        panic!(
            "{method} {request}: {} and {other} match with the same priority",
            route_name(route)
        );
    }
    best.map(|(_, route)| route)
}

/// Which function each request under /events reaches, in both decK files:
/// the ack route wins over publish's `/events` prefix for POST, and the JWKS
/// route over the consume read route for GET — by priority, not only because
/// their paths happen not to overlap.
#[test]
fn kong_sends_each_request_to_the_function_meant_for_it() {
    const ROUTING: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/events/.well-known/jwks.json", Some("publish")),
        (
            "GET",
            "/events/payments/orders/order-created",
            Some("consume"),
        ),
        // A topic named like the ack route's suffix is still a topic.
        ("GET", "/events/payments/orders/acks", Some("consume")),
        ("POST", "/events/payments/orders/acks", Some("publish")),
        (
            "POST",
            "/events/payments/orders/order-created",
            Some("publish"),
        ),
        (
            "POST",
            "/events/payments/orders/order-created/acks",
            Some("consume"),
        ),
        // publish's prefix route; the function answers 404 or 405 itself.
        (
            "POST",
            "/events/payments/orders/order-created/acksx",
            Some("publish"),
        ),
        ("POST", "/events/.well-known/jwks.json", Some("publish")),
        ("POST", "/events", Some("publish")),
        ("GET", "/events", None),
        ("GET", "/events/payments/orders", None),
        ("GET", "/events/payments/orders/order-created/", None),
        ("GET", "/events/payments/orders/order-created/acks", None),
        ("DELETE", "/events/payments/orders/order-created", None),
        ("PUT", "/events/payments/orders/order-created/acks", None),
    ];
    for file in KONG_FILES {
        let routes = kong_routes(file);
        for (method, path, function) in ROUTING {
            let route = kong_select(&routes, method, path);
            assert_eq!(
                route.and_then(route_function),
                *function,
                "{file}: {method} {path} reaches {:?}",
                route.map(route_name)
            );
        }

        // The precedence holds wherever the paths overlap.
        let only = |function: &str, method: &str| {
            let found: Vec<&Yaml> = routes
                .iter()
                .filter(|r| {
                    route_function(r) == Some(function)
                        && strings(&r["methods"]) == [method]
                        && strings(&r["paths"])
                            .iter()
                            .any(|p| p.trim_start_matches('~').starts_with("/events"))
                })
                .collect();
            assert_eq!(found.len(), 1, "{file}: {function} {method} routes");
            let path = strings(&found[0]["paths"]).remove(0);
            kong_priority(found[0], &path)
        };
        assert!(
            only("publish", "GET") > only("consume", "GET"),
            "{file}: the JWKS route must outrank the consume read route"
        );
        assert!(
            only("consume", "POST") > only("publish", "POST"),
            "{file}: the ack route must outrank publish's /events prefix"
        );
    }
}

/// The consume routes are the publish route with another function: the same
/// aws-lambda settings (but function name and a timeout above consume's),
/// protocols, strip_path and header stripping, and no other plugin.
#[test]
fn kong_consume_routes_are_configured_like_the_publish_route() {
    let template = template();
    let consume_ms = function_timeout(&template, "ConsumeFunction") * 1000;
    let publish_ms = function_timeout(&template, "PublishFunction") * 1000;
    for (file, function_name) in [
        ("kong/kong.yaml", r#"${{ env "DECK_CONSUME_FUNCTION" }}"#),
        ("kong/kong.local.yaml", "consume"),
    ] {
        let routes = kong_routes(file);
        let publish = routes
            .iter()
            .find(|r| route_function(r) == Some("publish") && strings(&r["paths"]) == ["/events"])
            .unwrap_or_else(|| panic!("{file}: no publish route"));
        let publish_lambda = plugin(publish, "aws-lambda").expect("aws-lambda");
        let timeout = |cfg: &Yaml| cfg["timeout"].as_u64().expect("timeout");
        assert!(timeout(publish_lambda) > publish_ms, "{file}: publish");
        let without_target = |cfg: &Yaml| {
            let mut cfg = cfg.as_mapping().expect("config").clone();
            cfg.remove("function_name");
            cfg.remove("timeout");
            cfg
        };

        let consume: Vec<&Yaml> = routes
            .iter()
            .filter(|r| route_function(r) == Some("consume"))
            .collect();
        let methods: Vec<Vec<String>> = consume.iter().map(|r| strings(&r["methods"])).collect();
        assert_eq!(methods, [["GET"], ["POST"]], "{file}: consume routes");
        for route in consume {
            let name = route_name(route);
            assert_eq!(route["protocols"], publish["protocols"], "{file}: {name}");
            assert_eq!(route["strip_path"], Yaml::Bool(false), "{file}: {name}");
            let plugins: Vec<&str> = route["plugins"]
                .as_sequence()
                .expect("plugins")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(
                plugins,
                ["aws-lambda", "request-transformer"],
                "{file}: {name}"
            );
            let lambda = plugin(route, "aws-lambda").expect("aws-lambda");
            assert_eq!(
                lambda["function_name"].as_str(),
                Some(function_name),
                "{file}: {name}"
            );
            assert!(
                timeout(lambda) > consume_ms,
                "{file}: {name}: Kong's timeout must be above the function's {consume_ms} ms"
            );
            assert_eq!(
                without_target(lambda),
                without_target(publish_lambda),
                "{file}: {name}: aws-lambda differs from the publish route's"
            );
            assert_eq!(
                plugin(route, "request-transformer"),
                plugin(publish, "request-transformer"),
                "{file}: {name}: strips other headers than the publish route"
            );
        }
    }
}

/// Every DECK_* variable kong/kong.yaml reads is named in its header (with
/// the stack output it comes from) and set by validate.sh's decK checks.
#[test]
fn kong_yaml_variables_are_documented_and_validated() {
    let text = std::fs::read_to_string(workspace_root().join("kong/kong.yaml")).expect("kong.yaml");
    let validate = std::fs::read_to_string(workspace_root().join("tests/stack/validate.sh"))
        .expect("validate.sh");
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    let used: BTreeSet<&str> = text
        .split("env \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name))
        .collect();
    assert!(used.contains("DECK_CONSUME_FUNCTION"), "{used:?}");
    for name in used {
        assert!(
            header
                .iter()
                .any(|l| l.trim_start_matches('#').trim_start().starts_with(name)),
            "kong/kong.yaml's header does not document {name}"
        );
        assert!(
            validate.contains(&format!("{name}=")),
            "tests/stack/validate.sh does not set {name} for deck file validate"
        );
    }
}

/// A client must not choose the request id that lands in `kp-request-id` and
/// the audit line: every route in kong/*.yaml that invokes a function strips
/// the headers the function would take it from (it then uses the Lambda
/// invocation id, which AWS generates).
#[test]
fn kong_routes_strip_client_chosen_request_ids() {
    let mut checked = 0;
    for file in KONG_FILES {
        for route in kong_routes(file) {
            if plugin(&route, "aws-lambda").is_none() {
                continue;
            }
            let name = route_name(&route);
            let removed = plugin(&route, "request-transformer")
                .map(|cfg| strings(&cfg["remove"]["headers"]))
                .unwrap_or_else(|| panic!("{file}: {name} has no request-transformer"));
            for header in ["kong-request-id", "x-kong-request-id"] {
                assert!(
                    removed.iter().any(|h| h == header),
                    "{file}: {name} does not strip a client-sent {header}"
                );
            }
            checked += 1;
        }
    }
    // kong.yaml: publish, JWKS, partners, consume, acks; local: all but partners.
    assert_eq!(checked, 9, "routes invoking a function");
}
