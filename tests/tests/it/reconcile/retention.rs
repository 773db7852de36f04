//! `retention:` through the reconciler: set where a namespace declares it,
//! put back when someone changes it, and left alone where the policy says
//! nothing, read back through the broker's admin API.

use kong_pulsar::pulsar::admin::RetentionPolicies;

use super::*;

fn retention(minutes: i64, mebibytes: i64) -> Option<RetentionPolicies> {
    Some(RetentionPolicies {
        retention_time_in_minutes: minutes,
        retention_size_in_mb: mebibytes,
    })
}

fn set_retention<'r>(report: &'r Report, namespace: &str) -> Option<&'r Change> {
    report
        .changes
        .iter()
        .find(|c| c.kind() == "set_retention" && c.namespace() == Some(namespace))
}

#[tokio::test]
async fn declared_retention_is_set_and_kept_and_undeclared_retention_is_left_alone() {
    let _shared = LOG_CAPTURE.read().await;
    let admin = admin_client();
    let fixtures = stack().admin();
    let (t, role) = (unique("rret"), unique("rret-role"));
    let policy = policy(&document(
        &[tenant(
            &t,
            &role,
            "      orders: { retention: { time: 7d, size: 10GiB } }\n      \
             audit: { retention: { time: unlimited, size: 1GiB } }\n      \
             plain: {}\n",
        )],
        &[rule(&t, "orders, audit, plain", "produce")],
    ));

    // From nothing: both declared retentions are set, in Pulsar's units.
    let first = reconcile(&policy, &admin, false).await;
    assert!(first.failures.is_empty(), "{first:#?}");
    assert_eq!(
        set_retention(&first, "orders"),
        Some(&Change::SetRetention {
            tenant: t.clone(),
            namespace: "orders".into(),
            time_minutes: 7 * 24 * 60,
            size_mib: 10 * 1024,
            previous_time_minutes: None,
            previous_size_mib: None,
        })
    );
    assert!(set_retention(&first, "audit").is_some(), "{first:#?}");
    assert!(set_retention(&first, "plain").is_none(), "{first:#?}");
    assert_eq!(
        admin.retention(&t, "orders").await.unwrap(),
        retention(10_080, 10_240)
    );
    assert_eq!(
        admin.retention(&t, "audit").await.unwrap(),
        retention(-1, 1024)
    );
    assert_eq!(admin.retention(&t, "plain").await.unwrap(), None);

    // Converged: nothing to do.
    let again = reconcile(&policy, &admin, false).await;
    assert!(again.is_converged(), "{again:#?}");

    // Someone switches orders' retention off and gives plain one of their own.
    for (namespace, body) in [
        (
            "orders",
            json!({"retentionTimeInMinutes": 0, "retentionSizeInMB": 0}),
        ),
        (
            "plain",
            json!({"retentionTimeInMinutes": 30, "retentionSizeInMB": 5}),
        ),
    ] {
        fixtures
            .post(
                &format!("/admin/v2/namespaces/{t}/{namespace}/retention"),
                body,
            )
            .await
            .unwrap();
    }

    // A dry run names the drift and changes nothing.
    let dry = reconcile(&policy, &admin, true).await;
    assert!(dry.failures.is_empty(), "{dry:#?}");
    assert_eq!(
        kinds(&dry),
        [("set_retention", format!("{t}/orders"))],
        "{dry:#?}"
    );
    let Some(Change::SetRetention {
        previous_time_minutes,
        previous_size_mib,
        ..
    }) = set_retention(&dry, "orders")
    else {
        unreachable!()
    };
    assert_eq!(
        (*previous_time_minutes, *previous_size_mib),
        (Some(0), Some(0))
    );
    assert_eq!(
        admin.retention(&t, "orders").await.unwrap(),
        retention(0, 0)
    );

    // The live run puts orders back and leaves plain's setting, which the
    // policy never mentioned, as the operator made it.
    let fixed = reconcile(&policy, &admin, false).await;
    assert_eq!(
        kinds(&fixed),
        [("set_retention", format!("{t}/orders"))],
        "{fixed:#?}"
    );
    assert_eq!(
        admin.retention(&t, "orders").await.unwrap(),
        retention(10_080, 10_240)
    );
    assert_eq!(
        admin.retention(&t, "plain").await.unwrap(),
        retention(30, 5)
    );
}
