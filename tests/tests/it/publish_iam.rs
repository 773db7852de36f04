//! AWS IAM callers end to end: a `KP-AWS-IAM` credential made from role
//! credentials (moto's `sts:AssumeRole`) through the real Invoke API, checked
//! against moto's STS, authorised by an `iam_arn` glob rule. moto does not
//! verify SigV4 signatures; the verifier's own pre-checks are unit-tested
//! hard in `kong_pulsar::identity::iam`.

use kp_tests::app::{FOREIGN_ACCOUNT, PublishApp, kong_event, properties, receive};

#[tokio::test]
async fn an_iam_role_publishes_as_its_role_and_other_roles_are_refused() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let mut consumer = app.consumer(&topic).await;
    let event = |authorization: &str| {
        kong_event(
            "POST",
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[
                ("authorization", authorization),
                ("content-type", "application/json"),
            ],
            br#"{"orderId":"iam-1"}"#,
        )
    };

    let authorization = app.iam_authorization(&app.iam_role, "deploy-42").await;
    let resp = app.call(&event(&authorization)).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    let p = properties(&receive(&mut consumer).await);
    assert_eq!(p["kp-auth-method"], "iam");
    assert_eq!(p["kp-issuer"], "aws-iam");
    assert_eq!(
        p["kp-source-id"],
        format!("arn:aws:iam::123456789012:role/{}", app.iam_role)
    );
    assert_eq!(p["kp-service-tag"], app.iam_role);

    // The same credential again: served from the verified-identity cache.
    assert_eq!(app.call(&event(&authorization)).await.status, 202);

    // A role no rule names is authenticated but not allowed.
    let other = app
        .iam_authorization(&kp_tests::unique("other-role"), "s")
        .await;
    let resp = app.call(&event(&other)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (403, Some("forbidden"))
    );

    // A tampered credential never reaches STS and is a 401.
    let tampered = format!("{}x", authorization);
    let resp = app.call(&event(&tampered)).await;
    assert_eq!(
        (resp.status, resp.body["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(app.stored(&topic).await, 2);
    let logs = app.function.logs();
    assert!(
        !logs.contains(authorization.split_whitespace().nth(1).unwrap()),
        "a credential was logged"
    );
}

#[tokio::test]
async fn a_role_of_the_same_name_in_another_aws_account_is_403_and_publishes_nothing() {
    let app = PublishApp::spawn().await;
    let topic = app.topic(&app.tenant_a, "orders", "order-created");
    let event = |authorization: &str, order: &str| {
        kong_event(
            "POST",
            &format!("/events/{}/orders/order-created", app.tenant_a),
            &[
                ("authorization", authorization),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"orderId":"{order}"}}"#).as_bytes(),
        )
    };

    // The role name the policy's rule is about, assumed in an account the
    // policy does not allow: STS verifies it, the function refuses it.
    let foreign = app
        .iam_authorization_in(FOREIGN_ACCOUNT, &app.iam_role, "attacker")
        .await;
    for _ in 0..2 {
        let resp = app.call(&event(&foreign, "foreign")).await;
        assert_eq!(
            (resp.status, resp.body["code"].as_str()),
            (403, Some("account_not_allowed")),
            "{:?}",
            resp.body
        );
        assert!(
            resp.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(FOREIGN_ACCOUNT)),
            "{:?}",
            resp.body
        );
    }
    assert_eq!(app.stored(&topic).await, 0, "nothing was published");

    // The same role in the allowed account still publishes.
    let ours = app.iam_authorization(&app.iam_role, "deploy").await;
    let resp = app.call(&event(&ours, "ours")).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);
    assert_eq!(app.stored(&topic).await, 1);

    // The audit line names the refused caller, and so its account.
    let logs = app.function.logs();
    let refused_principal = format!("arn:aws:iam::{FOREIGN_ACCOUNT}:role/{}", app.iam_role);
    let audit = logs
        .lines()
        .find(|l| l.contains("account_not_allowed") && l.contains("\"publish\""))
        .unwrap_or_else(|| panic!("no audit line for the refusal in:\n{logs}"));
    assert!(audit.contains(&refused_principal), "{audit}");
    assert!(
        !logs.contains(foreign.split_whitespace().nth(1).unwrap()),
        "a credential was logged"
    );
}
