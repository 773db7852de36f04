use super::*;

#[test]
fn protected_roles_are_kept_and_unknown_super_users_fail_closed() {
    let mut protected = Protected {
        admin_roles: ["kp-admin".to_owned()].into(),
        extra: ["break-glass".to_owned()].into(),
        super_users: Some(["root".to_owned()].into()),
    };
    assert_eq!(protected.reason("root"), Some("super_user"));
    assert_eq!(protected.reason("kp-admin"), Some("admin_role"));
    assert_eq!(protected.reason("break-glass"), Some("protected_role"));
    assert_eq!(protected.reason("by-hand"), None);
    protected.super_users = None;
    assert_eq!(protected.reason("by-hand"), Some("super_users_unknown"));
    assert_eq!(protected.reason("kp-admin"), Some("admin_role"));
}

#[test]
fn schemas_compare_as_json_with_type_and_properties() {
    let policy = Policy::from_str(
        r#"version: 1
pulsar: { cluster: standalone, token_signing_secret: s }
tenants:
  t:
    role: r
    token_secret: ts
    token_ttl: 24h
    namespaces:
      ns:
        schemas:
          topic: { type: object, required: [a], properties: { a: { type: string } } }
"#,
        None,
    )
    .unwrap();
    let topic = crate::pulsar::topic::TopicName::parse("t", "ns", "topic").unwrap();
    let schema = policy.schema_for(&topic).unwrap();
    let upload = schema_upload(schema);
    assert_eq!(upload.schema_type, "NONE");
    let stored = |data: &str, ty: &str, props: &[(&str, &str)]| SchemaInfo {
        version: 3,
        schema_type: ty.to_owned(),
        data: data.to_owned(),
        properties: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let props = [(SCHEMA_FORMAT_PROPERTY, SCHEMA_FORMAT_JSON_SCHEMA)];
    let reordered =
        r#"{ "required": ["a"], "properties": {"a": {"type": "string"}}, "type": "object" }"#;
    assert!(same_schema(
        &stored(reordered, "NONE", &props),
        &upload,
        schema.schema()
    ));
    assert!(!same_schema(
        &stored(reordered, "JSON", &props),
        &upload,
        schema.schema()
    ));
    assert!(!same_schema(
        &stored(reordered, "NONE", &[]),
        &upload,
        schema.schema()
    ));
    assert!(!same_schema(
        &stored(r#"{"type":"object"}"#, "NONE", &props),
        &upload,
        schema.schema()
    ));
    assert!(!same_schema(
        &stored("not json", "NONE", &props),
        &upload,
        schema.schema()
    ));
}

#[test]
fn changes_serialise_with_a_kind_and_stable_fields() {
    let change = Change::Grant {
        tenant: "t".into(),
        namespace: "ns".into(),
        role: "r".into(),
        actions: vec!["produce".into()],
        previous: vec![],
    };
    assert_eq!(
        serde_json::to_value(&change).unwrap(),
        serde_json::json!({
            "kind": "grant", "tenant": "t", "namespace": "ns", "role": "r",
            "actions": ["produce"], "previous": []
        })
    );
    assert_eq!(change.kind(), "grant");
    let report = Report {
        dry_run: true,
        changes: vec![change],
        drift: vec![Drift::UnmanagedNamespace {
            tenant: "t".into(),
            namespace: "old".into(),
        }],
        failures: vec![Failure {
            tenant: None,
            namespace: None,
            step: "read_superusers".into(),
            error: "x".into(),
        }],
    };
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["drift"][0]["kind"], "unmanaged_namespace");
    assert!(json["failures"][0]["tenant"].is_null());
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    assert!(!back.is_converged());
}
