//! Kong's `aws-lambda` plugin payloads: this module owns turning whatever the
//! plugin sent into one [`HttpRequest`], and the proxy-integration
//! [`ProxyResponse`] every function answers with (DESIGN §1).
//!
//! Kong can invoke a function with four payload shapes, and the function has
//! to cope with whichever the route's plugin configuration produces:
//!
//! * Kong's own format (`forward_request_method`, `_uri`, `_headers`, `_body`
//!   on) → [`PayloadShape::Kong`];
//! * `awsgateway_compatible: true` (API Gateway REST payload 1.0)
//!   → [`PayloadShape::ApiGatewayV1`];
//! * payload format 2.0 (Kong 3.12+'s `awsgateway_compatible_payload_version`,
//!   Lambda function URLs, `cargo lambda watch`'s `/lambda-url/` route)
//!   → [`PayloadShape::HttpApiV2`];
//! * the legacy flat merge of query and body arguments, which carries no
//!   method, path or headers and so no credentials → [`PayloadError::Legacy`].
//!
//! Detection looks at the payload alone: there is no configuration to consult,
//! and one function may sit behind routes configured differently.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::http::Headers;

/// Which shape Kong sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadShape {
    /// Kong's own format, `forward_request_*` flags on.
    Kong,
    /// `awsgateway_compatible: true`: an API Gateway REST (payload 1.0) event.
    ApiGatewayV1,
    /// Payload format 2.0: HTTP API, Lambda function URL, `cargo lambda watch`.
    HttpApiV2,
}

impl PayloadShape {
    /// A short stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kong => "kong",
            Self::ApiGatewayV1 => "apigateway-v1",
            Self::HttpApiV2 => "http-v2",
        }
    }
}

impl fmt::Display for PayloadShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP request as Kong forwarded it, whatever the payload shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// The payload shape it arrived in.
    pub shape: PayloadShape,
    /// Upper-case method, e.g. `POST`.
    pub method: String,
    /// Path only, without the query string, as sent (not percent-decoded).
    pub path: String,
    /// Request headers, names lower-cased.
    pub headers: Headers,
    /// Decoded query arguments in the order the payload gave them. A key with
    /// no value (`?flag`) becomes `"true"`, as Kong reports it; a repeated key
    /// becomes repeated pairs.
    pub query: Vec<(String, String)>,
    /// The body bytes, base64 already decoded when the payload flagged it.
    pub body: Vec<u8>,
    /// Kong's `kong-request-id` header (correlation-id plugin) if present,
    /// else `requestContext.requestId`, else `x-kong-request-id`.
    pub request_id: Option<String>,
}

/// Why a payload could not be turned into an [`HttpRequest`].
///
/// Messages are safe to show to the caller: they never echo header values.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Kong's legacy mode (no `forward_request_*` flag), or only some of the
    /// flags on: the payload lacks the method, path or headers.
    #[error(
        "Kong's aws-lambda plugin did not forward the HTTP request (legacy payload: no method, \
         path or headers, so no credentials); turn on forward_request_method, \
         forward_request_uri, forward_request_headers and forward_request_body on the plugin"
    )]
    Legacy,
    /// Not any shape we know (not an object, empty, another AWS event, ...).
    #[error(
        "the invocation payload is not an HTTP request from Kong's aws-lambda plugin (expected \
         Kong's forward_request_* format, an awsgateway_compatible event or a payload 2.0 event)"
    )]
    Unrecognized,
    /// A known shape, but a field is missing or has the wrong type.
    #[error("malformed invocation payload: `{field}` {reason}")]
    Malformed {
        /// The payload field, e.g. `request_headers`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The body is flagged base64 but is not valid base64.
    #[error("the request body is flagged as base64 but is not valid base64")]
    InvalidBase64,
    /// The body (decoded) is larger than the configured limit.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client sent a body (`content-length` > 0) but Kong forwarded none.
    #[error(
        "the client sent a {content_length}-byte body but Kong forwarded none: turn on the \
         aws-lambda plugin's forward_request_body, and raise Kong's \
         nginx_http_client_body_buffer_size or turn off skip_large_bodies"
    )]
    BodyNotForwarded {
        /// The `content-length` the client declared.
        content_length: u64,
    },
}

fn malformed(field: &'static str, reason: impl Into<String>) -> PayloadError {
    PayloadError::Malformed {
        field,
        reason: reason.into(),
    }
}

/// Top-level keys only Kong's own format produces (request-util.lua,
/// `build_request_payload`).
const KONG_KEYS: &[&str] = &[
    "request_method",
    "request_uri",
    "request_uri_args",
    "request_headers",
    "request_body",
    "request_body_args",
    "request_body_base64",
];

/// Keys of other Lambda event sources (or broken gateway events): an object
/// carrying one is not a legacy argument merge.
const AWS_EVENT_KEYS: &[&str] = &[
    "Records",
    "detail-type",
    "Step",
    "requestContext",
    "routeKey",
    "rawPath",
    "httpMethod",
    "multiValueHeaders",
    "isBase64Encoded",
];

/// Parses a Lambda event payload into the request Kong forwarded.
///
/// `max_body_bytes` bounds the decoded body; an oversized body, base64 or
/// not, is rejected before it is decoded.
pub fn parse_request(event: &Value, max_body_bytes: usize) -> Result<HttpRequest, PayloadError> {
    let Value::Object(obj) = event else {
        return Err(PayloadError::Unrecognized);
    };
    if obj.is_empty() {
        return Err(PayloadError::Unrecognized);
    }
    match detect(obj) {
        Detected::Kong => parse_kong(obj, max_body_bytes),
        Detected::ApiGatewayV1 => parse_v1(obj, max_body_bytes),
        Detected::HttpApiV2 => parse_v2(obj, max_body_bytes),
        Detected::Legacy => Err(PayloadError::Legacy),
        Detected::Unknown => Err(PayloadError::Unrecognized),
    }
}

enum Detected {
    Kong,
    ApiGatewayV1,
    HttpApiV2,
    Legacy,
    Unknown,
}

fn detect(obj: &Map<String, Value>) -> Detected {
    let has = |key: &str| obj.contains_key(key);
    // A legacy payload is made of the caller's own argument names, so a single
    // marker key (`?version=2.0`, `?httpMethod=x`) must not select a shape.
    if obj.get("version").and_then(Value::as_str) == Some("2.0")
        && (has("rawPath") || has("requestContext"))
    {
        return Detected::HttpApiV2;
    }
    if has("httpMethod")
        && (has("path") || has("requestContext") || has("headers") || has("multiValueHeaders"))
    {
        return Detected::ApiGatewayV1;
    }
    if KONG_KEYS.iter().any(|k| has(k)) {
        // Kong only sets the fields whose forward_request_* flag is on; without
        // method, uri and headers the request cannot be routed or
        // authenticated, and the fix is the same as for legacy mode.
        let set = |key: &str| present(obj, key).is_some();
        return if set("request_method") && set("request_uri") && set("request_headers") {
            Detected::Kong
        } else {
            Detected::Legacy
        };
    }
    if AWS_EVENT_KEYS.iter().any(|k| has(k)) {
        return Detected::Unknown;
    }
    // Legacy mode is `kong.table.merge(get_query(), get_body())`
    // (request-util.lua): any object of caller-chosen keys.
    Detected::Legacy
}

// ---------------------------------------------------------------------------
// The three shapes

fn parse_kong(obj: &Map<String, Value>, limit: usize) -> Result<HttpRequest, PayloadError> {
    let method = parse_method(required_str(obj, "request_method", "request_method")?)
        .ok_or_else(|| malformed("request_method", "is not an HTTP method"))?;
    // `request_uri` is `kong.request.get_path_with_query()`, i.e. nginx's
    // `$request_uri`: the client's original path *with* its query string.
    let uri = required_str(obj, "request_uri", "request_uri")?;
    if uri.is_empty() {
        return Err(malformed("request_uri", "is empty"));
    }
    let (path, raw_query) = split_uri(uri);

    let mut headers = Headers::new();
    let raw_headers = object_field(obj, "request_headers", "request_headers")?
        .ok_or_else(|| malformed("request_headers", "is missing"))?;
    for (name, value) in raw_headers {
        push_header_values(&mut headers, name, value, "request_headers")?;
    }

    // `request_uri_args` is `kong.request.get_query()`: strings, `true` for a
    // bare key, arrays for repeated keys (kong/pdk/request.lua). Only when the
    // field is missing do we fall back to parsing the raw query ourselves.
    let query = match object_field(obj, "request_uri_args", "request_uri_args")? {
        Some(args) => args_from_object(args, "request_uri_args")?,
        None if obj.contains_key("request_uri_args") => Vec::new(),
        None => raw_query.map(parse_query_string).unwrap_or_default(),
    };

    check_declared_length(&headers, limit)?;
    // request-util.lua only ever sets `request_body_base64 = true`, for content
    // types kong.request.get_body() cannot parse (anything but form, multipart
    // and JSON) unless they are one of its `raw_content_types`; JSON bodies
    // arrive raw, with the parsed value in `request_body_args`.
    let base64 = bool_field(obj, "request_body_base64", "request_body_base64")?;
    let body = decode_body(
        str_field(obj, "request_body", "request_body")?,
        base64,
        limit,
    )?;
    // `request_body_args` is Kong's parse of that same body: nothing to add.
    let request_id = pick_request_id(&headers, None);
    finish(HttpRequest {
        shape: PayloadShape::Kong,
        method,
        path,
        headers,
        query,
        body,
        request_id,
    })
}

fn parse_v1(obj: &Map<String, Value>, limit: usize) -> Result<HttpRequest, PayloadError> {
    let method = parse_method(required_str(obj, "httpMethod", "httpMethod")?)
        .ok_or_else(|| malformed("httpMethod", "is not an HTTP method"))?;
    let context = object_field(obj, "requestContext", "requestContext")?;

    // Kong's aws_serializer sends `upstream_uri` minus its query, i.e. the path
    // *after* strip_path (request-util.lua); requestContext.path is the same.
    let raw_path = match str_field(obj, "path", "path")? {
        Some(p) => Some(p),
        None => match context {
            Some(ctx) => str_field(ctx, "path", "requestContext.path")?,
            None => None,
        },
    };
    let path = match raw_path {
        Some(p) if !p.is_empty() => split_uri(p).0,
        _ => return Err(malformed("path", "is missing")),
    };

    // Kong fills `headers` with the first value only and `multiValueHeaders`
    // with all of them (request-util.lua), so the multi-value map wins.
    let mut headers = Headers::new();
    if let Some(multi) = object_field(obj, "multiValueHeaders", "multiValueHeaders")? {
        for (name, value) in multi {
            push_header_values(&mut headers, name, value, "multiValueHeaders")?;
        }
    }
    if let Some(single) = object_field(obj, "headers", "headers")? {
        for (name, value) in single {
            if !headers.contains(name) {
                push_header_values(&mut headers, name, value, "headers")?;
            }
        }
    }

    // Same rule for the query; Kong puts JSON `true` (not a string) here for a
    // bare `?flag` (spec/03-plugins/27-aws-lambda/05-aws-serializer_spec.lua).
    let mut query = match object_field(
        obj,
        "multiValueQueryStringParameters",
        "multiValueQueryStringParameters",
    )? {
        Some(multi) => args_from_object(multi, "multiValueQueryStringParameters")?,
        None => Vec::new(),
    };
    if let Some(single) = object_field(obj, "queryStringParameters", "queryStringParameters")? {
        let extra: Vec<_> = single
            .iter()
            .filter(|(name, _)| !query.iter().any(|(n, _)| n == *name))
            .collect();
        for (name, value) in extra {
            push_args(&mut query, name, value, "queryStringParameters")?;
        }
    }

    gateway_body(
        obj,
        context,
        limit,
        HttpRequest {
            shape: PayloadShape::ApiGatewayV1,
            method,
            path,
            headers,
            query,
            body: Vec::new(),
            request_id: None,
        },
    )
}

fn parse_v2(obj: &Map<String, Value>, limit: usize) -> Result<HttpRequest, PayloadError> {
    let context = object_field(obj, "requestContext", "requestContext")?;
    let http = match context {
        Some(ctx) => object_field(ctx, "http", "requestContext.http")?,
        None => None,
    };
    let raw_method = match http {
        Some(http) => str_field(http, "method", "requestContext.http.method")?,
        None => None,
    }
    .ok_or_else(|| malformed("requestContext.http.method", "is missing"))?;
    let method = parse_method(raw_method)
        .ok_or_else(|| malformed("requestContext.http.method", "is not an HTTP method"))?;

    let raw_path = match str_field(obj, "rawPath", "rawPath")? {
        Some(p) => Some(p),
        None => match http {
            Some(http) => str_field(http, "path", "requestContext.http.path")?,
            None => None,
        },
    };
    let path = match raw_path {
        Some(p) if !p.is_empty() => split_uri(p).0,
        _ => return Err(malformed("rawPath", "is missing")),
    };

    // Payload 2.0 has no multi-value maps: the gateway joins a repeated
    // header's values with commas into one value. We keep that one value
    // rather than split it, since commas are legal inside many header values.
    let mut headers = Headers::new();
    if let Some(raw_headers) = object_field(obj, "headers", "headers")? {
        for (name, value) in raw_headers {
            push_header_values(&mut headers, name, value, "headers")?;
        }
    }
    // ... and moves cookies out of the headers into `cookies`.
    if let Some(cookies) = obj.get("cookies").filter(|v| !v.is_null()) {
        let list = cookies
            .as_array()
            .ok_or_else(|| malformed("cookies", "is not an array"))?;
        let mut parts = Vec::with_capacity(list.len());
        for cookie in list {
            parts.push(
                cookie
                    .as_str()
                    .ok_or_else(|| malformed("cookies", "holds a non-string value"))?,
            );
        }
        if !parts.is_empty() && !headers.contains("cookie") {
            headers.push("cookie", parts.join("; "));
        }
    }

    // rawQueryString keeps repeated keys apart; queryStringParameters has
    // them comma-joined, so it is only a fallback.
    let query = match str_field(obj, "rawQueryString", "rawQueryString")? {
        Some(raw) => parse_query_string(raw),
        None => match object_field(obj, "queryStringParameters", "queryStringParameters")? {
            Some(params) => args_from_object(params, "queryStringParameters")?,
            None => Vec::new(),
        },
    };

    gateway_body(
        obj,
        context,
        limit,
        HttpRequest {
            shape: PayloadShape::HttpApiV2,
            method,
            path,
            headers,
            query,
            body: Vec::new(),
            request_id: None,
        },
    )
}

/// What payloads 1.0 and 2.0 share: the body (`isBase64Encoded`) and the
/// request id (`requestContext.requestId`), filled into `request`.
fn gateway_body(
    obj: &Map<String, Value>,
    context: Option<&Map<String, Value>>,
    limit: usize,
    mut request: HttpRequest,
) -> Result<HttpRequest, PayloadError> {
    let context_id = match context {
        Some(ctx) => str_field(ctx, "requestId", "requestContext.requestId")?,
        None => None,
    };
    check_declared_length(&request.headers, limit)?;
    // With awsgateway_compatible Kong base64-encodes every non-empty body
    // unless `base64_encode_body` is off, whatever its content type.
    let base64 = bool_field(obj, "isBase64Encoded", "isBase64Encoded")?;
    request.body = decode_body(str_field(obj, "body", "body")?, base64, limit)?;
    request.request_id = pick_request_id(&request.headers, context_id);
    finish(request)
}

/// Checks shared by every shape once the request is assembled.
fn finish(request: HttpRequest) -> Result<HttpRequest, PayloadError> {
    // With `skip_large_bodies` on (the default) Kong drops a body nginx
    // buffered to disk, i.e. one over `client_body_buffer_size` (8k by
    // default), and sends "" or nothing (request-util.lua `read_request_body`,
    // spec/03-plugins/27-aws-lambda/06-request-util_spec.lua). Treating that
    // as an empty body would give the caller a misleading error.
    if request.body.is_empty()
        && let Some(content_length) = declared_length(&request.headers)
        && content_length > 0
    {
        return Err(PayloadError::BodyNotForwarded { content_length });
    }
    Ok(request)
}

// ---------------------------------------------------------------------------
// Field access. JSON null counts as absent: cjson and API Gateway both emit
// null for "nothing" (e.g. API Gateway's `"body": null` on a GET).

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<&'a str>, PayloadError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(field, "is not a string")),
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, PayloadError> {
    str_field(obj, key, field)?.ok_or_else(|| malformed(field, "is missing"))
}

fn bool_field(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<bool, PayloadError> {
    match present(obj, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(malformed(field, "is not a boolean")),
    }
}

/// An object-valued field. An empty array counts as an empty object: cjson
/// encodes an empty Lua table either way depending on its metatable.
fn object_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<&'a Map<String, Value>>, PayloadError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(Value::Array(items)) if items.is_empty() => Ok(None),
        Some(_) => Err(malformed(field, "is not an object")),
    }
}

fn push_header_values(
    headers: &mut Headers,
    name: &str,
    value: &Value,
    field: &'static str,
) -> Result<(), PayloadError> {
    let bad = || malformed(field, format!("has a non-string value for header {name:?}"));
    match value {
        Value::String(v) => headers.push(name, v.as_str()),
        // Kong sends a repeated header as an array (kong.request.get_headers()).
        Value::Array(values) => {
            for v in values {
                headers.push(name, v.as_str().ok_or_else(bad)?);
            }
        }
        Value::Null => {}
        _ => return Err(bad()),
    }
    Ok(())
}

fn args_from_object(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<(String, String)>, PayloadError> {
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        push_args(&mut out, name, value, field)?;
    }
    Ok(out)
}

fn push_args(
    out: &mut Vec<(String, String)>,
    name: &str,
    value: &Value,
    field: &'static str,
) -> Result<(), PayloadError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let bad = || {
        malformed(
            field,
            format!("has a value for argument {name:?} that is not a string or boolean"),
        )
    };
    match value {
        Value::Array(values) => {
            for v in values {
                out.push((name.to_owned(), scalar(v).ok_or_else(bad)?));
            }
        }
        other => out.push((name.to_owned(), scalar(other).ok_or_else(bad)?)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Values

/// Upper-cases an RFC 9110 method token; `None` if it is not one.
fn parse_method(raw: &str) -> Option<String> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (!raw.is_empty() && raw.len() <= 32 && raw.chars().all(is_tchar))
        .then(|| raw.to_ascii_uppercase())
}

/// Splits a request target into path and query. An absolute-form target
/// (`http://host/p?q`, which nginx keeps in `$request_uri`) loses its scheme
/// and authority.
fn split_uri(uri: &str) -> (String, Option<&str>) {
    let mut rest = uri;
    for scheme in ["http://", "https://"] {
        if rest
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        {
            let after = &rest[scheme.len()..];
            rest = after.find(['/', '?']).map_or("", |i| &after[i..]);
            break;
        }
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    (path.to_owned(), query)
}

/// Parses a raw query string the way nginx's `ngx.req.get_uri_args()` does
/// (the source of Kong's `request_uri_args`): `&`-separated, percent- and
/// `+`-decoded, and a key without `=` means `true`.
fn parse_query_string(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|segment| !segment.is_empty())
        .filter_map(|segment| {
            let (key, value) = url::form_urlencoded::parse(segment.as_bytes()).next()?;
            if key.is_empty() {
                return None;
            }
            let value = if segment.contains('=') {
                value.into_owned()
            } else {
                "true".to_owned()
            };
            Some((key.into_owned(), value))
        })
        .collect()
}

/// The first usable request id: correlation-id's header, then the gateway's
/// own id, then Kong's upstream request-id header. Ids are caller-influenced
/// and end up in logs and message properties, so odd ones are ignored.
fn pick_request_id(headers: &Headers, context_id: Option<&str>) -> Option<String> {
    let usable =
        |id: &&str| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    headers
        .get("kong-request-id")
        .filter(usable)
        .or_else(|| context_id.filter(usable))
        .or_else(|| headers.get("x-kong-request-id").filter(usable))
        .map(str::to_owned)
}

fn declared_length(headers: &Headers) -> Option<u64> {
    headers.get("content-length")?.trim().parse().ok()
}

/// Rejects a body the client declared too large before touching the payload's
/// body field (Kong may have dropped it anyway, see [`finish`]).
fn check_declared_length(headers: &Headers, limit: usize) -> Result<(), PayloadError> {
    match declared_length(headers) {
        Some(n) if n > limit as u64 => Err(PayloadError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Standard alphabet (what both Kong's `ngx.encode_base64` and API Gateway
/// emit), padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Room over `4 * ceil(limit / 3)` for padding quirks.
const BASE64_SLACK: usize = 4;

fn decode_body(body: Option<&str>, base64: bool, limit: usize) -> Result<Vec<u8>, PayloadError> {
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    let too_large = PayloadError::BodyTooLarge { limit };
    if !base64 {
        return if body.len() > limit {
            Err(too_large)
        } else {
            Ok(body.as_bytes().to_vec())
        };
    }
    // Bound the work before decoding: base64 of `limit` bytes is at most
    // 4 * ceil(limit / 3) characters.
    let max_encoded = limit
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(BASE64_SLACK);
    if body.len() > max_encoded {
        return Err(too_large);
    }
    let bytes = BASE64
        .decode(body)
        .map_err(|_| PayloadError::InvalidBase64)?;
    if bytes.len() > limit {
        return Err(too_large);
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Responses

/// The proxy-integration response shape every function returns
/// (`statusCode`, `headers`, `body`, `isBase64Encoded`); Kong's route must set
/// `is_proxy_integration: true` to read it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResponse {
    /// HTTP status.
    pub status_code: u16,
    /// Response headers; names lower-cased by [`ProxyResponse::with_header`].
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, base64 when `is_base64_encoded`.
    #[serde(default)]
    pub body: String,
    /// Whether Kong must base64-decode `body` before sending it.
    #[serde(default)]
    pub is_base64_encoded: bool,
    /// Always empty; present because the payload-2.0 response parsers
    /// (function URLs, `cargo lambda watch`) require the field.
    #[serde(default)]
    pub cookies: Vec<String>,
}

impl ProxyResponse {
    /// A JSON response with `content-type: application/json`.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Self {
        Self {
            status_code: status,
            headers: BTreeMap::new(),
            // Serialising plain data into a String cannot fail.
            body: serde_json::to_string(body).unwrap_or_default(),
            is_base64_encoded: false,
            cookies: Vec::new(),
        }
        .with_header("content-type", "application/json")
    }

    /// Sets a header, replacing any earlier value. The name is lower-cased so
    /// `Content-Type` and `content-type` cannot both reach Kong, which would
    /// apply them in map order and keep whichever came last.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .insert(name.into().to_ascii_lowercase(), value.into());
        self
    }
}

#[cfg(test)]
mod tests;
