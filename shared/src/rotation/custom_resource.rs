//! The `rotate` function as a CloudFormation custom resource
//! (`Custom::PolicyReconcile` in template.yaml), so a policy change reaches
//! the broker at deploy time rather than at the next hourly cycle.
//!
//! CloudFormation invokes the function with a custom-resource event and then
//! waits (up to an hour) for a JSON answer PUT to the event's pre-signed
//! `ResponseURL`. So every event that names a `ResponseURL` gets an answer,
//! even one whose other fields cannot be parsed (that answer is `FAILED`).
//!
//! * Create/Update: reconcile (never a dry run); any failure (a tenant the
//!   admin API refuses, an unreachable admin API) answers `FAILED` naming the
//!   failed tenants, so a bad policy fails the deploy and CloudFormation
//!   rolls back.
//! * Delete: nothing in Pulsar changes (tenants outlive the stack, as they
//!   outlive a policy entry); answers `SUCCESS`.
//!
//! The answer only ever goes to `https://` URLs (CloudFormation's are
//! pre-signed S3 URLs), or to plain `http://` on a loopback host (a local
//! stand-in in tests): the body names the stack, and a URL taken from the
//! event must not make the function call an arbitrary host in the clear. No
//! redirect is followed; timeouts are bounded; a failed PUT is retried twice.
//! `Reason` carries tenant names and step names only, never secret values,
//! and the body stays under CloudFormation's 4 KiB cap.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::reconcile::Report;
use crate::http::{is_loopback_host, redirect_free_client};

/// The physical id of the one reconcile resource, used when CloudFormation
/// gives none (Create). Stable, so an Update never looks like a replacement.
pub const PHYSICAL_RESOURCE_ID: &str = "kong-pulsar-reconcile";

/// CloudFormation rejects a response body larger than this.
pub const MAX_BODY: usize = 4096;

/// How many times the PUT is tried in all.
const PUT_ATTEMPTS: u32 = 3;

/// Why a custom-resource event could not be handled or answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CustomResourceError {
    /// No `ResponseURL`, or one that is not a URL.
    #[error("the custom-resource event has no usable ResponseURL: {0}")]
    NoResponseUrl(String),
    /// The `ResponseURL` is neither https nor http to a loopback host.
    #[error("refusing to answer at a ResponseURL that is not https (or http to loopback): {0}")]
    InsecureResponseUrl(String),
    /// Every attempt to PUT the answer failed.
    #[error("the answer could not be PUT to the ResponseURL after {attempts} attempts: {last}")]
    Put {
        /// Attempts made.
        attempts: u32,
        /// The last failure (status or transport error, no URL query).
        last: String,
    },
}

/// `RequestType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The fields CloudFormation sends that the function reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub resource_type: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Map<String, Value>,
}

/// A custom-resource event: where to answer, and the request if it parsed.
#[derive(Debug, Clone)]
pub struct Event {
    /// Where the answer goes, checked (`Err`: no answer can be sent).
    pub reply_to: Result<Url, CustomResourceError>,
    /// The ids echoed in the answer, as far as they could be read.
    pub ids: Ids,
    /// The parsed request, or why it did not parse.
    pub request: Result<Request, String>,
}

/// The ids every answer echoes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: String,
}

/// Whether `event` is shaped like a custom-resource event (so it is never
/// mistaken for another input, and a malformed one is still answered).
pub fn is_custom_resource(event: &Map<String, Value>) -> bool {
    event.contains_key("ResponseURL") || event.contains_key("RequestType")
}

impl Event {
    /// Reads a custom-resource event. Never fails: what is missing is
    /// recorded, so the handler can still answer when it knows where.
    pub fn parse(event: &Value) -> Self {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let reply_to = match text("ResponseURL") {
            None => Err(CustomResourceError::NoResponseUrl(
                "missing or not a string".to_owned(),
            )),
            Some(raw) => check_response_url(&raw),
        };
        let ids = Ids {
            stack_id: text("StackId").unwrap_or_default(),
            request_id: text("RequestId").unwrap_or_default(),
            logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: text("PhysicalResourceId")
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| PHYSICAL_RESOURCE_ID.to_owned()),
        };
        let request = serde_json::from_value::<Request>(event.clone())
            .map_err(|e| format!("malformed custom-resource event: {e}"));
        Self {
            reply_to,
            ids,
            request,
        }
    }
}

/// The URL, if the answer may go there: `https://`, or `http://` to a
/// loopback host. The error names the scheme and host only (the query is a
/// pre-signature).
pub fn check_response_url(raw: &str) -> Result<Url, CustomResourceError> {
    let url = Url::parse(raw)
        .map_err(|e| CustomResourceError::NoResponseUrl(format!("not a URL: {e}")))?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback_host(&url));
    if secure && url.host().is_some() {
        Ok(url)
    } else {
        Err(CustomResourceError::InsecureResponseUrl(format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or("")
        )))
    }
}

/// `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
}

/// What to answer for a reconcile `report` (Create/Update).
pub fn outcome_of(report: &Report) -> (Status, String, Value) {
    let failed: Vec<&str> = report.failed_tenants().into_iter().collect();
    let run_wide: Vec<&str> = report
        .failures
        .iter()
        .filter(|f| f.tenant.is_none())
        .map(|f| f.step.as_str())
        .collect();
    let data = json!({
        "Changes": report.changes.len(),
        "Failures": report.failures.len(),
        "FailedTenants": failed.join(","),
    });
    if report.failures.is_empty() {
        let reason = format!("reconciled: {} change(s) applied", report.changes.len());
        return (Status::Success, reason, data);
    }
    let mut reason = String::from("reconcile failed");
    if !failed.is_empty() {
        reason.push_str(&format!(" for tenant(s): {}", failed.join(", ")));
    }
    if !run_wide.is_empty() {
        reason.push_str(&format!("; run-wide step(s): {}", run_wide.join(", ")));
    }
    reason.push_str(" (see the rotate function's log)");
    (Status::Failed, reason, data)
}

/// The response body CloudFormation expects, at most [`MAX_BODY`] bytes:
/// `Reason` and `Data` are cut to fit.
pub fn response_body(ids: &Ids, status: Status, reason: &str, data: Value) -> Vec<u8> {
    let build = |reason: &str, data: &Value| {
        let mut body = json!({
            "Status": match status { Status::Success => "SUCCESS", Status::Failed => "FAILED" },
            "Reason": reason,
            "PhysicalResourceId": ids.physical_resource_id,
            "StackId": ids.stack_id,
            "RequestId": ids.request_id,
            "LogicalResourceId": ids.logical_resource_id,
            "NoEcho": false,
        });
        if !data.is_null() {
            body["Data"] = data.clone();
        }
        serde_json::to_vec(&body).expect("JSON values serialise")
    };
    let reason = truncate(reason, 1024);
    let body = build(&reason, &data);
    if body.len() <= MAX_BODY {
        return body;
    }
    // Too long (many failed tenants, or long ids): drop Data, then cut Reason.
    let body = build(&reason, &Value::Null);
    if body.len() <= MAX_BODY {
        return body;
    }
    build(&truncate(&reason, 256), &Value::Null)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// PUTs `body` to `url` with an empty `Content-Type` (as AWS's cfn-response
/// module does: the pre-signature covers it), retrying twice.
pub async fn send(url: &Url, body: Vec<u8>) -> Result<(), CustomResourceError> {
    let put_error = |last: String| CustomResourceError::Put {
        attempts: PUT_ATTEMPTS,
        last,
    };
    let client = redirect_free_client()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| put_error(e.without_url().to_string()))?;
    let mut last = String::new();
    for attempt in 1..=PUT_ATTEMPTS {
        let result = client
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "")
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("status {}", response.status()),
            Err(e) => last = e.without_url().to_string(),
        }
        tracing::warn!(attempt, error = last, "custom-resource answer PUT failed");
        if attempt < PUT_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(put_error(last))
}

#[cfg(test)]
mod tests {
    use super::super::reconcile::Failure;
    use super::*;

    fn create() -> Value {
        json!({
            "RequestType": "Create",
            "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/kp/guid",
            "RequestId": "req-1",
            "LogicalResourceId": "PolicyReconcile",
            "ResourceType": "Custom::PolicyReconcile",
            "ResourceProperties": { "ServiceToken": "arn:aws:lambda:…", "PolicyLayerVersion": "arn:…:1" }
        })
    }

    fn with(mut event: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            event.as_object_mut().unwrap().remove(key);
        } else {
            event[key] = value;
        }
        event
    }

    #[test]
    fn custom_resource_events_parse_and_keep_their_ids() {
        let cases = [
            (create(), Some(RequestType::Create), PHYSICAL_RESOURCE_ID),
            (
                with(
                    with(create(), "RequestType", json!("Update")),
                    "PhysicalResourceId",
                    json!("given-id"),
                ),
                Some(RequestType::Update),
                "given-id",
            ),
            (
                with(
                    with(create(), "RequestType", json!("Delete")),
                    "PhysicalResourceId",
                    json!("given-id"),
                ),
                Some(RequestType::Delete),
                "given-id",
            ),
            // Malformed: still answerable, with the ids it has.
            (
                with(create(), "RequestType", json!("Drop")),
                None,
                PHYSICAL_RESOURCE_ID,
            ),
            (
                with(create(), "StackId", json!(7)),
                None,
                PHYSICAL_RESOURCE_ID,
            ),
            (
                with(create(), "RequestId", Value::Null),
                None,
                PHYSICAL_RESOURCE_ID,
            ),
        ];
        for (event, kind, physical) in cases {
            let parsed = Event::parse(&event);
            assert!(parsed.reply_to.is_ok(), "{event}");
            assert_eq!(
                parsed.request.as_ref().ok().map(|r| r.request_type),
                kind,
                "{event}"
            );
            assert_eq!(parsed.ids.physical_resource_id, physical);
            assert_eq!(parsed.ids.logical_resource_id, "PolicyReconcile");
        }
    }

    #[test]
    fn the_answer_goes_only_to_https_or_loopback_http() {
        for (url, ok) in [
            ("https://bucket.s3.amazonaws.com/p?sig=1", true),
            ("http://127.0.0.1:9999/cfn", true),
            ("http://localhost:1/cfn", true),
            ("http://[::1]:1/cfn", true),
            ("http://169.254.169.254/latest/meta-data", false),
            ("http://[::ffff:127.0.0.1]:1/cfn", false),
            ("http://bucket.s3.amazonaws.com/p", false),
            ("http://127.0.0.1.evil.example/p", false),
            ("ftp://127.0.0.1/p", false),
            ("file:///etc/passwd", false),
            ("not a url", false),
        ] {
            assert_eq!(check_response_url(url).is_ok(), ok, "{url}");
        }
        let no_url = Event::parse(&with(create(), "ResponseURL", Value::Null));
        assert!(no_url.reply_to.is_err());
        // The refusal never echoes the pre-signed query.
        let err = check_response_url("http://evil.example/p?X-Amz-Signature=secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    fn failure(tenant: Option<&str>, step: &str) -> Failure {
        Failure {
            tenant: tenant.map(str::to_owned),
            namespace: None,
            step: step.into(),
            error: "broker said no".into(),
        }
    }

    #[test]
    fn response_bodies_name_failed_tenants_and_stay_under_4_kib() {
        let ids = Ids {
            stack_id: "stack".into(),
            request_id: "req".into(),
            logical_resource_id: "PolicyReconcile".into(),
            physical_resource_id: PHYSICAL_RESOURCE_ID.into(),
        };
        let many: Vec<Failure> = (0..500)
            .map(|i| {
                failure(
                    Some(&format!("tenant-with-a-long-name-{i}")),
                    "create_tenant",
                )
            })
            .collect();
        let cases = [
            (vec![], "SUCCESS", vec!["reconciled"]),
            (
                vec![failure(Some("acme"), "create_tenant")],
                "FAILED",
                vec!["acme"],
            ),
            (
                vec![failure(None, "read_superusers")],
                "FAILED",
                vec!["read_superusers"],
            ),
            (many, "FAILED", vec!["tenant-with-a-long-name-0"]),
        ];
        for (failures, status, mentions) in cases {
            let report = Report {
                failures,
                ..Report::default()
            };
            let (s, reason, data) = outcome_of(&report);
            let body = response_body(&ids, s, &reason, data);
            assert!(body.len() <= MAX_BODY, "{} bytes", body.len());
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["Status"], status);
            for key in [
                "StackId",
                "RequestId",
                "LogicalResourceId",
                "PhysicalResourceId",
            ] {
                assert!(body[key].is_string(), "{key}");
            }
            assert_eq!(body["PhysicalResourceId"], PHYSICAL_RESOURCE_ID);
            for m in mentions {
                assert!(body["Reason"].as_str().unwrap().contains(m), "{body}");
            }
            // The broker's reason stays in the log, not the answer.
            assert!(!body.to_string().contains("broker said no"));
        }
    }
}
