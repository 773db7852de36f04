//! The caller's side: makes a `KP-AWS-IAM` credential by signing an
//! `sts:GetCallerIdentity` request with the caller's own AWS credentials.
//! The request is never sent; the verifier replays it. The
//! `kong-pulsar-token` binary is a thin shell around [`authorization_header`].
//!
//! It lives in the library, beside the verifier but not in its file, because
//! the binary is not its only user: the test harness signs requests with it,
//! and the verifier's own tests check that what it makes is what the
//! verifier accepts. It shares the wire format (`credential`) and nothing
//! else with the verifier.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningError, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use url::Url;

use super::credential::{
    CONTENT_TYPE, GET_CALLER_IDENTITY_BODY, SERVER_ID_HEADER, authority, bare_root_problem,
    is_header_value,
};
use super::{SCHEME, echo};

/// The environment variables naming the STS endpoint, most specific
/// first, as the AWS SDKs read them.
const ENDPOINT_VARIABLES: [&str; 2] = ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"];

/// What a credential is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `x-kp-server-id` the verifier expects (`identity.iam.server_id`).
    pub server_id: String,
    /// The signing region (the endpoint's region).
    pub region: String,
    /// The STS endpoint the verifier is configured with.
    pub sts_endpoint: Url,
}

/// Why no credential could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The server id cannot be a header value.
    #[error("the server id must be non-empty printable ASCII")]
    ServerId,
    /// The region is not a region name.
    #[error("{0:?} is not an AWS region")]
    Region(String),
    /// The STS endpoint is not an http(s) URL with path `/`.
    #[error("{value:?} is not an STS endpoint URL (http(s), path /)")]
    Endpoint {
        /// The value given.
        value: String,
        /// The parsing error, when it did not parse at all.
        #[source]
        source: Option<url::ParseError>,
    },
    /// The signing parameters are incomplete.
    #[error("cannot sign: {0}")]
    Params(#[source] v4::signing_params::BuildError),
    /// SigV4 signing failed.
    #[error("cannot sign the request")]
    Signing(#[source] SigningError),
}

/// `https://sts.{region}.amazonaws.com/` (`.amazonaws.com.cn` in China).
pub(super) fn default_sts_endpoint(region: &str) -> Result<Url, TokenError> {
    check_region(region)?;
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    parse_endpoint(&format!("https://sts.{region}.{suffix}/"))
}

/// The endpoint to sign for: `explicit` if given, else the first of
/// `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL` that `env` has (unless
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`), else the region's
/// public endpoint, as the AWS SDKs resolve it. `env` is `std::env::var` in
/// the binary.
pub fn resolve_sts_endpoint(
    explicit: Option<&str>,
    region: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Url, TokenError> {
    if let Some(url) = explicit {
        return parse_endpoint(url);
    }
    let ignore =
        env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !ignore
        && let Some(url) = ENDPOINT_VARIABLES
            .iter()
            .filter_map(|name| env(name))
            .find(|v| !v.is_empty())
    {
        return parse_endpoint(&url);
    }
    default_sts_endpoint(region)
}

/// The base64url credential: a SigV4-signed GetCallerIdentity request for
/// `request`, signed at `time` with `credentials`.
pub fn build_token(
    credentials: &Credentials,
    request: &TokenRequest,
    time: SystemTime,
) -> Result<String, TokenError> {
    if !is_header_value(&request.server_id) || request.server_id.trim() != request.server_id {
        return Err(TokenError::ServerId);
    }
    check_region(&request.region)?;
    let url = parse_endpoint(request.sts_endpoint.as_str())?;
    let host = authority(&url);
    let content_type = format!("{CONTENT_TYPE}; charset=utf-8");
    // `host` is given explicitly so that the value signed is the value
    // the verifier compares and STS sees.
    let signed = [
        ("host", host.as_str()),
        ("content-type", content_type.as_str()),
        (SERVER_ID_HEADER, request.server_id.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        signed.iter().copied(),
        SignableBody::Bytes(GET_CALLER_IDENTITY_BODY.as_bytes()),
    )
    .map_err(TokenError::Signing)?;
    let identity = credentials.clone().into();
    let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(&request.region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(TokenError::Params)?
        .into();
    let (instructions, _signature) = sign(signable, &params)
        .map_err(TokenError::Signing)?
        .into_parts();
    let mut headers = Map::new();
    for (name, value) in signed.iter().copied().chain(instructions.headers()) {
        headers.insert(name.to_ascii_lowercase(), Value::from(value));
    }
    let json = json!({
        "method": "POST",
        "url": url.as_str(),
        "headers": headers,
        "body": GET_CALLER_IDENTITY_BODY,
    });
    Ok(URL_SAFE_NO_PAD.encode(json.to_string()))
}

/// `KP-AWS-IAM <credential>`: the whole `Authorization` header value.
pub fn authorization_header(
    credentials: &Credentials,
    request: &TokenRequest,
    time: SystemTime,
) -> Result<String, TokenError> {
    Ok(format!(
        "{SCHEME} {}",
        build_token(credentials, request, time)?
    ))
}

fn check_region(region: &str) -> Result<(), TokenError> {
    let ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TokenError::Region(echo(region)))
    }
}

fn parse_endpoint(value: &str) -> Result<Url, TokenError> {
    let url = Url::parse(value).map_err(|source| TokenError::Endpoint {
        value: echo(value),
        source: Some(source),
    })?;
    let ok = matches!(url.scheme(), "https" | "http")
        && url.has_host()
        && bare_root_problem(&url).is_none();
    if ok {
        Ok(url)
    } else {
        Err(TokenError::Endpoint {
            value: echo(value),
            source: None,
        })
    }
}
