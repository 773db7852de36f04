//! The replay: sending a checked credential to the configured STS endpoint
//! and reading the answer, which is XML (an identity, or an error code that
//! decides whether the caller or STS is at fault).

use std::sync::atomic::Ordering;
use std::time::Duration;

use url::Url;

use super::credential::{Checked, bare_root_problem};
use super::{IamError, IamVerifier, echo};
use crate::http::{BodyError, read_body};
use crate::identity::Identity;

/// Time allowed for one STS call, body included.
pub(super) const STS_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest STS answer read, in bytes (a real one is under 1 KiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// STS error codes meaning "this signed request is not valid": the caller's
/// fault, 401.
const REJECTION_CODES: [&str; 11] = [
    "AccessDenied",
    "AuthFailure",
    "ExpiredToken",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "RegionDisabledException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

/// STS error codes meaning "try later": STS's fault, 503.
const UNAVAILABLE_CODES: [&str; 5] = [
    "InternalFailure",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
];

impl IamVerifier {
    /// Replays a checked request to the configured endpoint and reads the
    /// caller from the answer.
    pub(super) async fn call_sts(&self, checked: &Checked) -> Result<Identity, IamError> {
        let endpoint = &self.config.sts_endpoint;
        if let Some(why) = endpoint_problem(endpoint) {
            return Err(IamError::InvalidConfig(why));
        }
        self.sts_calls.fetch_add(1, Ordering::Relaxed);
        let unavailable = |reason: &str, source| IamError::StsUnavailable {
            reason: reason.to_owned(),
            source,
        };
        let mut request = self
            .http
            .post(endpoint.clone())
            .timeout(STS_TIMEOUT)
            .body(checked.body.clone());
        for (name, value) in &checked.forward {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable("request failed", Some(e)))?;
        let status = response.status().as_u16();
        if response.url() != endpoint {
            // Only possible with a client that follows redirects: whatever
            // answered is not the endpoint we trust.
            return Err(IamError::UnexpectedResponse {
                status,
                reason: "redirected away from the configured endpoint".to_owned(),
            });
        }
        let body = read_body(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|error| match error {
                BodyError::TooLarge { .. } => IamError::UnexpectedResponse {
                    status,
                    reason: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                },
                BodyError::Read(e) => unavailable("reading the answer failed", Some(e)),
            })?;
        let body = String::from_utf8_lossy(&body);
        let result = if status == 200 {
            parse_caller_identity(&body).and_then(CallerIdentity::into_identity)
        } else {
            Err(classify_error(status, &body))
        };
        match &result {
            Ok(identity) => {
                tracing::debug!(principal = %identity.principal, "verified an IAM caller with STS");
            }
            Err(error) if error.is_unavailable() => {
                tracing::warn!(error = %crate::telemetry::error_chain(error), "STS call failed");
            }
            Err(_) => {}
        }
        result
    }
}

/// Why `url` cannot be the STS endpoint, if it cannot.
pub(super) fn endpoint_problem(url: &Url) -> Option<&'static str> {
    if url.host().is_none() {
        return Some("sts_endpoint has no host");
    }
    let loopback = crate::http::is_loopback_host(url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Some("sts_endpoint must be https (plain http only for a loopback host)"),
    }
    bare_root_problem(url)
}

/// What GetCallerIdentity says about the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallerIdentity {
    pub(super) arn: String,
    pub(super) user_id: String,
    pub(super) account: String,
}

/// Reads a `GetCallerIdentityResponse`.
pub(super) fn parse_caller_identity(xml: &str) -> Result<CallerIdentity, IamError> {
    let unexpected = |reason: &str| IamError::UnexpectedResponse {
        status: 200,
        reason: reason.to_owned(),
    };
    if !xml.contains("<GetCallerIdentityResponse") {
        return Err(unexpected("not a GetCallerIdentityResponse"));
    }
    let result = xml_element(xml, "GetCallerIdentityResult")
        .ok_or_else(|| unexpected("no GetCallerIdentityResult"))?;
    let field = |name: &str| {
        xml_element(result, name)
            .and_then(xml_unescape)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| unexpected(&format!("no single {name}")))
    };
    Ok(CallerIdentity {
        arn: field("Arn")?,
        user_id: field("UserId")?,
        account: field("Account")?,
    })
}

/// Maps a non-200 STS answer onto the error the caller gets.
pub(super) fn classify_error(status: u16, xml: &str) -> IamError {
    let code = xml_element(xml, "Code").and_then(xml_unescape);
    let code_is = |codes: &[&str]| code.as_deref().is_some_and(|c| codes.contains(&c));
    if status >= 500 || status == 429 || code_is(&UNAVAILABLE_CODES) {
        return IamError::StsUnavailable {
            reason: format!(
                "HTTP {status} {}",
                code.as_deref().map(echo).unwrap_or_default()
            )
            .trim_end()
            .to_owned(),
            source: None,
        };
    }
    if status == 401 || status == 403 || code_is(&REJECTION_CODES) {
        return IamError::BadSignature {
            code: code
                .as_deref()
                .map_or_else(|| format!("HTTP {status}"), echo),
        };
    }
    IamError::UnexpectedResponse {
        status,
        reason: code
            .as_deref()
            .map_or_else(|| "no error code".to_owned(), echo),
    }
}

/// The text inside the only `<name>…</name>` of `xml`. STS's answers are
/// small, flat and namespace-prefix free, so a substring search is enough;
/// anything irregular (the element twice, nested markup) is `None`.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let inner = &xml[start..start + len];
    let after = &xml[start + len + close.len()..];
    if after.contains(&open) || inner.contains(&open) {
        return None;
    }
    Some(inner)
}

/// Decodes the five predefined XML entities; text with any other markup is
/// `None`.
fn xml_unescape(text: &str) -> Option<String> {
    if !text.contains(['<', '&']) {
        return Some(text.trim().to_owned());
    }
    if text.contains('<') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        out.push(match &rest[at + 1..end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out.trim().to_owned())
}
