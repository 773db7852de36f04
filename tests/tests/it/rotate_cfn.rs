//! The rotate function as a CloudFormation custom resource, end to end
//! through the Lambda Invoke API against the real broker, with a local HTTP
//! server standing in for the pre-signed `ResponseURL`: a deploy reconciles
//! the policy before it completes, a bad policy fails the deploy, Delete
//! touches nothing, and the answer never goes anywhere but https/loopback.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, Uri};
use kp_tests::lambda::{Function, temp_file};
use kp_tests::{stack, unique};
use serde_json::{Value, json};

/// What the stand-in ResponseURL server received: method, path+query,
/// `Content-Type` (None when absent), body.
type Seen = Arc<Mutex<Vec<(Method, String, Option<String>, Value)>>>;

async fn response_server() -> (String, Seen) {
    flaky_response_server(0).await
}

/// The same, answering 503 to the first `failures` requests.
async fn flaky_response_server(failures: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let router = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                let mut seen = state.lock().unwrap();
                seen.push((method, uri.to_string(), content_type, body));
                if seen.len() <= failures {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (
        format!("http://127.0.0.1:{port}/cfn?X-Amz-Signature=sig"),
        seen,
    )
}

/// The rotate function with a one-tenant policy on `cluster`.
async fn rotate(tenant: &str, cluster: &str) -> Function {
    rotate_at(tenant, cluster, stack().admin_url.to_string()).await
}

/// The same, with the admin API at `admin_url`.
async fn rotate_at(tenant: &str, cluster: &str, admin_url: String) -> Function {
    let stack = stack();
    let sm = aws_sdk_secretsmanager::Client::new(&stack.aws_config().await);
    let admin = unique("kong-pulsar/admin");
    sm.create_secret()
        .name(&admin)
        .secret_string(json!({ "token": stack.superuser_token() }).to_string())
        .send()
        .await
        .unwrap();
    let policy = format!(
        r#"version: 1
pulsar: {{ cluster: {cluster}, admin_roles: [], token_signing_secret: {signing} }}
identity:
  oidc:
    - issuer: https://idp.example.com
      audiences: [kong-pulsar]
      algorithms: [RS256]
tenants:
  {tenant}:
    role: {tenant}-gw
    token_secret: kong-pulsar/tokens/{tenant}
    token_ttl: 24h
    namespaces:
      orders: {{}}
rules:
  - name: checkout
    when: {{ issuer: "https://idp.example.com", groups_any: [checkout] }}
    allow: {{ tenant: {tenant}, namespaces: [orders], topics: ["*"], actions: [produce] }}
"#,
        signing = unique("kong-pulsar/signing"),
    );
    let policy_path = temp_file("kp-rotate-cfn", "policy.yaml", &policy);
    Function::start(
        "rotate",
        &[
            ("KP_POLICY_FILE", policy_path.display().to_string()),
            ("PULSAR_SERVICE_URL", stack.service_url.to_string()),
            ("PULSAR_ADMIN_URL", admin_url),
            ("KP_ADMIN_TOKEN_SECRET", admin),
            ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
            ("AWS_REGION", stack.aws_region.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ],
    )
}

fn cfn_event(request_type: &str, response_url: &str) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:rotate",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/kp-test/guid",
        "RequestId": unique("req"),
        "LogicalResourceId": "PolicyReconcile",
        "ResourceType": "Custom::PolicyReconcile",
        "ResourceProperties": { "PolicyLayerVersion": "arn:aws:lambda:us-east-1:123456789012:layer:PolicyLayer:7" }
    });
    if request_type != "Create" {
        event["PhysicalResourceId"] = json!("given-physical-id");
    }
    event
}

/// The one answer the function PUT, checked for CloudFormation's contract.
fn the_answer(seen: &Seen, event: &Value) -> Value {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "exactly one answer: {seen:?}");
    let (method, uri, content_type, body) = &seen[0];
    assert_eq!(method, Method::PUT);
    assert_eq!(
        uri, "/cfn?X-Amz-Signature=sig",
        "the pre-signed URL as given"
    );
    assert_eq!(content_type.as_deref(), Some(""), "empty Content-Type");
    for key in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(body[key], event[key], "{key}: {body}");
    }
    body.clone()
}

#[tokio::test]
async fn a_deploy_reconciles_the_policy_before_it_completes() {
    let tenant = unique("cfn");
    let function = rotate(&tenant, "standalone").await;
    let (url, seen) = response_server().await;
    let event = cfn_event("Create", &url);
    let (status, out) = function.invoke(&event).await;
    assert_eq!(status, 200, "{out}\n{}", function.logs());
    let body = the_answer(&seen, &event);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], "kong-pulsar-reconcile");
    assert_eq!(body["Data"]["FailedTenants"], "");
    // Read back from the broker: the tenant, its namespace and its grant exist.
    let admin = stack().admin();
    admin
        .get(&format!("/admin/v2/tenants/{tenant}"))
        .await
        .expect("the deploy created the tenant");
    let permissions = admin
        .get(&format!("/admin/v2/namespaces/{tenant}/orders/permissions"))
        .await
        .unwrap();
    assert_eq!(permissions[format!("{tenant}-gw")], json!(["produce"]));
}

#[tokio::test]
async fn a_stack_delete_leaves_pulsar_alone() {
    let tenant = unique("cfn-del");
    let function = rotate(&tenant, "standalone").await;
    let (url, seen) = response_server().await;
    let event = cfn_event("Delete", &url);
    let (status, out) = function.invoke(&event).await;
    assert_eq!(status, 200, "{out}\n{}", function.logs());
    let body = the_answer(&seen, &event);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], "given-physical-id");
    assert!(
        stack()
            .admin()
            .get(&format!("/admin/v2/tenants/{tenant}"))
            .await
            .is_err(),
        "Delete created (reconciled) the tenant"
    );
}

#[tokio::test]
async fn a_policy_the_broker_refuses_fails_the_deploy() {
    // The admin API refuses a tenant on a cluster it does not have.
    let tenant = unique("cfn-bad");
    let function = rotate(&tenant, "no-such-cluster").await;
    let (url, seen) = response_server().await;
    let event = cfn_event("Update", &url);
    let (status, out) = function.invoke(&event).await;
    assert_eq!(status, 200, "{out}\n{}", function.logs());
    let body = the_answer(&seen, &event);
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert_eq!(body["PhysicalResourceId"], "given-physical-id");
    assert!(body["Reason"].as_str().unwrap().contains(&tenant), "{body}");
    assert_eq!(body["Data"]["FailedTenants"], json!(tenant));
}

#[tokio::test]
async fn a_response_url_off_https_is_never_called() {
    let tenant = unique("cfn-http");
    let function = rotate(&tenant, "standalone").await;
    let (url, seen) = response_server().await;
    // Plain http to a host that is not loopback by the rule (an IPv4-mapped
    // IPv6 address), though it would reach the stand-in server: refused
    // before any request and any reconcile; the invocation fails and says why.
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let event = cfn_event(
        "Create",
        &format!("http://[::ffff:127.0.0.1]:{port}/cfn?X-Amz-Signature=sig"),
    );
    let (status, out) = function.invoke(&event).await;
    let failed =
        status != 200 || out.get("errorType").is_some() || out.get("errorMessage").is_some();
    assert!(failed, "{status} {out}");
    assert!(out.to_string().contains("not https"), "{out}");
    assert!(seen.lock().unwrap().is_empty());
    assert!(
        stack()
            .admin()
            .get(&format!("/admin/v2/tenants/{tenant}"))
            .await
            .is_err(),
        "reconciled for an event it refused"
    );
}

#[tokio::test]
async fn a_malformed_custom_resource_event_still_gets_an_answer() {
    let tenant = unique("cfn-bad-event");
    let function = rotate(&tenant, "standalone").await;
    let (url, seen) = response_server().await;
    for event in [cfn_event("Explode", &url), {
        let mut e = cfn_event("Create", &url);
        e.as_object_mut().unwrap().remove("ResourceType");
        e
    }] {
        seen.lock().unwrap().clear();
        let (status, out) = function.invoke(&event).await;
        assert_eq!(status, 200, "{out}\n{}", function.logs());
        let body = the_answer(&seen, &event);
        assert_eq!(body["Status"], "FAILED", "{body}");
        assert!(
            body["Reason"].as_str().unwrap().contains("malformed"),
            "{body}"
        );
    }
    assert!(
        stack()
            .admin()
            .get(&format!("/admin/v2/tenants/{tenant}"))
            .await
            .is_err(),
        "reconciled a malformed event"
    );
}

#[tokio::test]
async fn an_unreachable_admin_api_fails_the_deploy() {
    let tenant = unique("cfn-down");
    let closed = format!("http://127.0.0.1:{}/", kp_tests::free_port());
    let function = rotate_at(&tenant, "standalone", closed).await;
    let (url, seen) = response_server().await;
    let event = cfn_event("Create", &url);
    let (status, out) = function.invoke(&event).await;
    assert_eq!(status, 200, "{out}\n{}", function.logs());
    let body = the_answer(&seen, &event);
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(!body["Reason"].as_str().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn a_failed_answer_put_is_retried() {
    let tenant = unique("cfn-retry");
    let function = rotate(&tenant, "standalone").await;
    let (url, seen) = flaky_response_server(2).await;
    let event = cfn_event("Delete", &url);
    let (status, out) = function.invoke(&event).await;
    assert_eq!(status, 200, "{out}\n{}", function.logs());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two failures, then the answer: {seen:?}");
    assert!(seen.iter().all(|(_, _, _, body)| body == &seen[2].3));
    assert_eq!(seen[2].3["Status"], "SUCCESS");
}
