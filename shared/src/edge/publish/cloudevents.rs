//! CloudEvents 1.0 on the publish route, in the HTTP binding's three modes:
//! binary (`ce-*` headers, the body is `data`), structured
//! (`application/cloudevents+json`) and batch
//! (`application/cloudevents-batch+json`). Parsed whole and checked
//! attribute by attribute before anything is authorized or sent; a bad event
//! is a 400 naming the attribute (and the item of a batch).
//!
//! Why not the `cloudevents-sdk` crate: its `Event` re-serializes `data`
//! through `serde_json::Value` (the payload would not be the bytes the
//! producer signed off, nor the ones the provenance digest covers), takes
//! the last of two same-named members silently, and reports a bad event as
//! one error for the whole document; here every check names its attribute,
//! and the payload is the producer's bytes.
//!
//! Into Pulsar, in the spirit of the Kafka binding: each attribute becomes a
//! `ce_<name>` property (`ce_datacontenttype` too: Pulsar has no content
//! type), `partitionkey` also the message key, `time` the event time.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::MetadataLimits;
pub use crate::edge::cloudevents_spec::is_json_media;
use crate::edge::cloudevents_spec::{
    ATTRIBUTES, GATEWAY_PREFIX, PROPERTY_PREFIX, is_attribute_name,
};
use crate::edge::kong::HttpRequest;
use crate::edge::problem::{ApiError, MetadataError};
use crate::http::Headers;
use crate::policy::CloudEventClaim;

/// How a request carries its CloudEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
    Batch,
}

pub const STRUCTURED: &str = "application/cloudevents+json";
pub const BATCH: &str = "application/cloudevents-batch+json";

/// The spec's advice for extension names, taken as a rule.
const MAX_NAME: usize = 20;

/// One CloudEvent, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub r#type: String,
    pub subject: Option<String>,
    /// As sent, and in milliseconds since the epoch (the event time).
    pub time: Option<(String, u64)>,
    pub dataschema: Option<String>,
    pub datacontenttype: Option<String>,
    /// Extension attributes, names checked, values as strings.
    pub extensions: Vec<(String, String)>,
    /// The payload: `data` as sent (JSON text, or a string's characters for
    /// non-JSON content), or `data_base64` decoded.
    pub data: Vec<u8>,
}

impl CloudEvent {
    /// What the policy checks it against.
    pub fn claim(&self) -> CloudEventClaim<'_> {
        CloudEventClaim {
            source: &self.source,
            r#type: &self.r#type,
        }
    }

    /// Whether `data` is JSON (its content type says so, or says nothing).
    pub fn json_data(&self) -> bool {
        self.datacontenttype.as_deref().is_none_or(is_json_media)
    }

    /// `partitionkey`, the message key.
    pub fn partition_key(&self) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n == "partitionkey")
            .map(|(_, v)| v.as_str())
    }

    /// Every attribute as a `ce_<name>` property.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("ce_specversion".to_owned(), "1.0".to_owned()),
            ("ce_id".to_owned(), self.id.clone()),
            ("ce_source".to_owned(), self.source.clone()),
            ("ce_type".to_owned(), self.r#type.clone()),
        ];
        let optional = [
            ("ce_subject", self.subject.as_ref()),
            ("ce_time", self.time.as_ref().map(|(t, _)| t)),
            ("ce_dataschema", self.dataschema.as_ref()),
            ("ce_datacontenttype", self.datacontenttype.as_ref()),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                out.push((name.to_owned(), v.clone()));
            }
        }
        for (name, value) in &self.extensions {
            out.push((format!("{PROPERTY_PREFIX}{name}"), value.clone()));
        }
        out
    }
}

/// Which mode the request is in, if it carries CloudEvents at all.
pub fn mode(media_type: &str, headers: &Headers) -> Result<Option<Mode>, ApiError> {
    let has_ce_headers = headers.iter().any(|(name, _)| name.starts_with("ce-"));
    let mode = match media_type {
        STRUCTURED => Mode::Structured,
        BATCH => Mode::Batch,
        _ if headers.get("ce-specversion").is_some() => Mode::Binary,
        _ if has_ce_headers => {
            return Err(invalid(
                None,
                "specversion",
                "ce- headers need ce-specversion (binary mode)",
            ));
        }
        _ => return Ok(None),
    };
    if mode != Mode::Binary && has_ce_headers {
        return Err(invalid(
            None,
            "specversion",
            "ce- headers and a structured body are two events in one request; send one",
        ));
    }
    // The attributes carry these; two sources for one thing is a mistake.
    for header in ["x-event-key", "x-event-time"] {
        if headers.get(header).is_some() {
            return Err(ApiError::BadRequest(format!(
                "{header} is not used with CloudEvents: send the partitionkey extension or the \
                 time attribute"
            )));
        }
    }
    Ok(Some(mode))
}

/// The request's CloudEvents, each checked and within `limits`.
pub fn parse(
    request: &HttpRequest,
    mode: Mode,
    max_batch: usize,
    limits: &MetadataLimits,
) -> Result<Vec<CloudEvent>, ApiError> {
    let events = match mode {
        Mode::Binary => vec![binary(request)?],
        Mode::Structured => {
            let members = members(&request.body, None)?;
            vec![structured(members, None)?]
        }
        Mode::Batch => {
            let items: Vec<&RawValue> = serde_json::from_slice(&request.body).map_err(|e| {
                invalid(
                    None,
                    "data",
                    format!("a batch is a JSON array of structured events: {e}"),
                )
            })?;
            if items.is_empty() {
                return Err(ApiError::BadRequest(
                    "the CloudEvents batch is empty".into(),
                ));
            }
            if items.len() > max_batch {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the batch has {} events; at most {max_batch} are accepted",
                    items.len()
                )));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| structured(members(item.get().as_bytes(), Some(i))?, Some(i)))
                .collect::<Result<_, _>>()?
        }
    };
    for event in &events {
        within_limits(event, limits)?;
    }
    Ok(events)
}

fn binary(request: &HttpRequest) -> Result<CloudEvent, ApiError> {
    let mut attributes = Vec::new();
    for (name, value) in request.headers.iter() {
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        if attribute == "datacontenttype" {
            return Err(invalid(
                None,
                "datacontenttype",
                "in binary mode the data's type is the Content-Type header",
            ));
        }
        let value = percent_decode(value)
            .ok_or_else(|| invalid(None, attribute, "is not valid percent-encoded UTF-8"))?;
        attributes.push((attribute.to_owned(), Value::String(value)));
    }
    let content_type = request.headers.get("content-type").map(str::to_owned);
    if let Some(ct) = &content_type {
        attributes.push(("datacontenttype".to_owned(), Value::String(ct.clone())));
    }
    build(attributes, request.body.clone(), None)
}

/// A member value as the checks need it.
enum Value {
    String(String),
    /// An extension's boolean or integer, already as text.
    Scalar(String),
    Other(&'static str),
}

fn structured(
    members: Vec<(String, &RawValue)>,
    index: Option<usize>,
) -> Result<CloudEvent, ApiError> {
    let mut attributes = Vec::with_capacity(members.len());
    let mut data: Option<&RawValue> = None;
    let mut data_base64: Option<&RawValue> = None;
    for (name, raw) in members {
        match name.as_str() {
            "data" => data = Some(raw),
            "data_base64" => data_base64 = Some(raw),
            _ => attributes.push((name, value_of(raw))),
        }
    }
    let content_type = attributes.iter().find_map(|(n, v)| match (n.as_str(), v) {
        ("datacontenttype", Value::String(s)) => Some(s.clone()),
        _ => None,
    });
    let payload = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                index,
                "data_base64",
                "an event has data or data_base64, not both",
            ));
        }
        (None, None) => Vec::new(),
        (None, Some(raw)) => {
            let text: String = serde_json::from_str(raw.get())
                .map_err(|_| invalid(index, "data_base64", "must be a string"))?;
            STANDARD
                .decode(text.as_bytes())
                .map_err(|_| invalid(index, "data_base64", "is not base64"))?
        }
        (Some(raw), None) => {
            // Non-JSON content travels as a JSON string holding it.
            let json = content_type.as_deref().is_none_or(is_json_media);
            match (json, serde_json::from_str::<String>(raw.get())) {
                (false, Ok(text)) => text.into_bytes(),
                (false, Err(_)) => {
                    return Err(invalid(
                        index,
                        "data",
                        "with a non-JSON datacontenttype, data must be a string (or use data_base64)",
                    ));
                }
                (true, _) => raw.get().as_bytes().to_vec(),
            }
        }
    };
    build(attributes, payload, index)
}

fn value_of(raw: &RawValue) -> Value {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => Value::String(s),
        Ok(serde_json::Value::Bool(b)) => Value::Scalar(b.to_string()),
        Ok(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Value::Scalar(n.to_string())
        }
        Ok(serde_json::Value::Number(_)) => Value::Other("a non-integer number"),
        Ok(serde_json::Value::Null) => Value::Other("null"),
        Ok(serde_json::Value::Array(_)) => Value::Other("an array"),
        Ok(serde_json::Value::Object(_)) => Value::Other("an object"),
        Err(_) => Value::Other("not JSON"),
    }
}

fn build(
    attributes: Vec<(String, Value)>,
    data: Vec<u8>,
    index: Option<usize>,
) -> Result<CloudEvent, ApiError> {
    let mut context: [Option<String>; ATTRIBUTES.len()] = Default::default();
    let mut extensions = Vec::new();
    for (name, value) in attributes {
        let slot = ATTRIBUTES.iter().position(|c| *c == name);
        let text = match value {
            Value::String(s) => s,
            // Context attributes are strings; extensions may be booleans
            // and integers too (the JSON format's mapping).
            Value::Scalar(s) if slot.is_none() => s,
            Value::Scalar(_) => return Err(invalid(index, &name, "must be a string")),
            Value::Other(what) => {
                return Err(invalid(
                    index,
                    &name,
                    format!("must be a string, not {what}"),
                ));
            }
        };
        match slot {
            Some(i) => context[i] = Some(text),
            None => {
                check_extension_name(&name, index)?;
                extensions.push((name, text));
            }
        }
    }
    let [
        specversion,
        id,
        source,
        r#type,
        subject,
        time,
        dataschema,
        datacontenttype,
    ] = context;
    match specversion.as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(invalid(
                index,
                "specversion",
                format!("must be 1.0, not {:?}", crate::telemetry::echo(other, 16)),
            ));
        }
        None => return Err(invalid(index, "specversion", "is missing")),
    }
    let required = |value: Option<String>, name: &str| match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(invalid(index, name, "is empty")),
        None => Err(invalid(index, name, "is missing")),
    };
    let id = required(id, "id")?;
    let source = required(source, "source")?;
    let r#type = required(r#type, "type")?;
    check_uri_reference(&source, "source", index)?;
    let optional = |value: Option<String>, name: &str| match value {
        Some(v) if v.is_empty() => Err(invalid(index, name, "is empty")),
        other => Ok(other),
    };
    let subject = optional(subject, "subject")?;
    let dataschema = optional(dataschema, "dataschema")?;
    if let Some(schema) = &dataschema {
        check_uri_reference(schema, "dataschema", index)?;
    }
    let datacontenttype = optional(datacontenttype, "datacontenttype")?;
    if let Some(ct) = &datacontenttype
        && !ct.split(';').next().unwrap_or("").contains('/')
    {
        return Err(invalid(index, "datacontenttype", "is not a media type"));
    }
    let time = match optional(time, "time")? {
        None => None,
        Some(text) => {
            let t = chrono::DateTime::parse_from_rfc3339(&text)
                .map_err(|_| invalid(index, "time", "is not an RFC 3339 timestamp"))?;
            let ms = u64::try_from(t.timestamp_millis())
                .map_err(|_| invalid(index, "time", "is before 1970"))?;
            Some((text, ms))
        }
    };
    Ok(CloudEvent {
        id,
        source,
        r#type,
        subject,
        time,
        dataschema,
        datacontenttype,
        extensions,
        data,
    })
}

fn check_extension_name(name: &str, index: Option<usize>) -> Result<(), ApiError> {
    if !is_attribute_name(name) || name.len() > MAX_NAME {
        return Err(invalid(
            index,
            &crate::telemetry::echo(name, 32),
            format!("is not an attribute name: lower-case letters and digits, at most {MAX_NAME}"),
        ));
    }
    if name.starts_with(GATEWAY_PREFIX) {
        return Err(invalid(
            index,
            name,
            "is reserved: kp… extension attributes are the gateway's (its verified identity)",
        ));
    }
    Ok(())
}

/// A URI-reference cannot hold spaces or control characters (RFC 3986);
/// a fuller parse would refuse producers the spec admits.
fn check_uri_reference(text: &str, name: &str, index: Option<usize>) -> Result<(), ApiError> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(index, name, "is not a URI-reference"));
    }
    Ok(())
}

fn within_limits(event: &CloudEvent, limits: &MetadataLimits) -> Result<(), ApiError> {
    let properties = event.properties();
    if event.extensions.len() > limits.max_properties {
        return Err(MetadataError::TooManyProperties {
            limit: limits.max_properties,
        }
        .into());
    }
    let mut total = 0;
    for (name, value) in &properties {
        if value.len() > limits.max_property_value_bytes {
            return Err(MetadataError::PropertyValueTooLong {
                name: name.clone(),
                limit: limits.max_property_value_bytes,
            }
            .into());
        }
        total += name.len() + value.len();
    }
    if total > limits.max_metadata_bytes {
        return Err(MetadataError::TooMuchMetadata {
            limit: limits.max_metadata_bytes,
        }
        .into());
    }
    if let Some(key) = event.partition_key()
        && key.len() > limits.max_event_key_bytes
    {
        return Err(MetadataError::EventKeyTooLong {
            limit: limits.max_event_key_bytes,
        }
        .into());
    }
    Ok(())
}

/// The HTTP binding's percent-encoding of header values.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn invalid(index: Option<usize>, attribute: &str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidCloudEvent {
        index,
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

/// A JSON object's members in order, refusing a name given twice (a JSON
/// parser would keep one of them silently: which `source` was checked?).
fn members(body: &[u8], index: Option<usize>) -> Result<Vec<(String, &RawValue)>, ApiError> {
    struct Members<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object (one structured CloudEvent)")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut seen = HashSet::new();
                    let mut out = Vec::new();
                    while let Some((name, value)) = map.next_entry::<String, &'de RawValue>()? {
                        if !seen.insert(name.clone()) {
                            return Err(serde::de::Error::custom(format!(
                                "member {:?} is given twice",
                                crate::telemetry::echo(&name, 32)
                            )));
                        }
                        out.push((name, value));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    let text = std::str::from_utf8(body)
        .map_err(|_| invalid(index, "data", "the event is not UTF-8 JSON"))?;
    serde_json::from_str::<Members>(text)
        .map(|m| m.0)
        .map_err(|e| {
            invalid(
                index,
                "data",
                format!("a structured event is one JSON object (a batch is application/cloudevents-batch+json): {e}"),
            )
        })
}

#[cfg(test)]
mod tests;
