//! One read message as a CloudEvent 1.0 in the JSON event format, for the
//! `application/cloudevents-batch+json` answer ([`super::accept`]), so a
//! CloudEvents consumer reads the topic natively. The page's shaping (the
//! byte cap, provenance, cursors) is the handler's; this module only turns
//! one message and its verdict into one event.
//!
//! A message published as a CloudEvent (it has `ce_specversion`) is rebuilt
//! from its `ce_*` properties: the core attributes, and every other
//! `ce_<name>` back to extension `<name>`. Any other message gets an
//! envelope of the gateway's making (`kpsynthesized: true`): `id` its
//! `kp-event-id` (else the message id), `source` the full topic, `type`
//! [`SYNTHESIZED_TYPE`], `time` its event time (else its publish time). A
//! `ce_*` set that is not a valid CloudEvent (no `ce_id`, a `ce_time` that
//! is not RFC 3339, another specversion, …) is not guessed at: the message
//! gets the gateway's envelope and `kpceinvalid` says why.
//!
//! `data` is the payload itself when the content type is JSON (`*/json`,
//! `*/*+json`, or none and the payload parses), byte for byte as on the
//! page; `data_base64` otherwise; nothing for an empty payload.
//!
//! Then the gateway's own extension attributes, `kp*`, which always win:
//! no `ce_*` property (anyone with produce permission can write one) may
//! become a `kp*` attribute, so `ce_kpsourceid` is skipped rather than
//! read as `kpsourceid`. Identity attributes are the message's `kp-*`
//! properties as they are; `kpprovenance` says whether the gateway's
//! signature vouches for them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::pulsar::read::Delivered;

use super::accept::media_type;
use super::{Verdict, escaped_len, rfc3339};
use crate::edge::cloudevents_spec::{
    ATTRIBUTES, GATEWAY_PREFIX, PROPERTY_PREFIX, is_attribute_name, is_json_media,
};

/// The only specversion there is, and the one every event of a batch must
/// share.
pub const SPECVERSION: &str = "1.0";

/// `type` of an event the gateway wrapped: it was published as plain JSON,
/// so the producer named no type. Reverse-DNS-free on purpose: it names
/// this gateway's envelope, not an occurrence in anyone's domain.
pub const SYNTHESIZED_TYPE: &str = "kong-pulsar.event";

/// The spec's attributes, and `data`, which it reserves for event
/// formats: read from their own properties, never taken as extensions.
fn is_core(name: &str) -> bool {
    ATTRIBUTES.contains(&name) || name == "data"
}

/// The gateway's `kp-*` properties shown as extension attributes.
const IDENTITY: &[(&str, &str)] = &[
    ("kpeventid", "kp-event-id"),
    ("kpsourceid", "kp-source-id"),
    ("kpservicetag", "kp-service-tag"),
    ("kpauthmethod", "kp-auth-method"),
    ("kpissuer", "kp-issuer"),
    ("kptenant", "kp-tenant"),
];

/// An attribute value, in the JSON type the format maps it to.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Text(&'a str),
    Owned(String),
    Integer(i64),
    Boolean(bool),
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(t) => s.serialize_str(t),
            Self::Owned(t) => s.serialize_str(t),
            Self::Integer(n) => s.serialize_i64(*n),
            Self::Boolean(b) => s.serialize_bool(*b),
        }
    }
}

enum Data<'a> {
    None,
    /// The payload's own JSON text.
    Json(&'a RawValue),
    Base64(String),
}

struct Event<'a> {
    attributes: BTreeMap<&'a str, Value<'a>>,
    data: Data<'a>,
}

impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (name, value) in &self.attributes {
            map.serialize_entry(name, value)?;
        }
        match &self.data {
            Data::None => {}
            Data::Json(raw) => map.serialize_entry("data", raw)?,
            Data::Base64(text) => map.serialize_entry("data_base64", text)?,
        }
        map.end()
    }
}

impl<'a> Event<'a> {
    /// Sets `name` unless it is already set (the event's own attributes
    /// come first; later sources only fill gaps).
    fn fill(&mut self, name: &'a str, value: Value<'a>) {
        self.attributes.entry(name).or_insert(value);
    }

    fn to_raw(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(self).expect("plain data serializes")
    }
}

/// `message` as one CloudEvent read from `topic` (the full name). Past
/// `room` bytes (JSON-escaped, as the page counts them) the data and the
/// event's own optional attributes are left out and `kpdataomitted` /
/// `kpdatasize` say so: it is still listed, so a cursor moves past it and a
/// subscription can acknowledge it by `kpmessageid`.
pub(super) fn render(
    message: &Delivered,
    topic: &str,
    verdict: &Verdict,
    room: usize,
) -> Box<RawValue> {
    // First value wins for a repeated name, as on the page.
    let mut properties = BTreeMap::new();
    for (k, v) in &message.properties {
        properties.entry(k.as_str()).or_insert(v.as_str());
    }
    let message_id = message.id.to_string();
    let publish_time = rfc3339(message.publish_time_ms);

    let (mut event, content_type) = match properties.get("ce_specversion") {
        None => (synthesized(message, &properties, topic, &message_id), None),
        Some(_) => match rebuilt(&properties) {
            Ok(rebuilt) => rebuilt,
            Err(reason) => {
                let mut event = synthesized(message, &properties, topic, &message_id);
                event.fill("kpceinvalid", Value::Owned(reason));
                (event, None)
            }
        },
    };
    let synthesized = event.attributes.contains_key("kpsynthesized");

    // Distributed tracing's extension: the event's own `ce_traceparent`
    // first, else the one the gateway carried.
    if let Some(t) = properties.get("traceparent").filter(|t| valid_string(t)) {
        event.fill("traceparent", Value::Text(t));
    }
    // The Partitioning extension names the message key.
    if let Some(key) = message.key.as_deref().filter(|k| valid_string(k)) {
        event.fill("partitionkey", Value::Text(key));
    }
    // Caller properties whose names are already valid attribute names
    // (`region`); the others (`X-Event-Property-Order-Id`) cannot be
    // attributes and are on the page only.
    for (&name, &value) in &properties {
        if !name.starts_with(PROPERTY_PREFIX)
            && !name.starts_with("kp-")
            && name != "traceparent"
            && extension_name(name)
            && valid_string(value)
        {
            event.fill(name, Value::Text(value));
        }
    }

    // The gateway's own, last and unconditionally: nothing above can have
    // set a `kp*` name ([`extension_name`] refuses them).
    let kp = &mut event.attributes;
    kp.insert("kpmessageid", Value::Owned(message_id.clone()));
    for (attribute, property) in IDENTITY {
        if let Some(v) = properties.get(property).filter(|v| valid_string(v)) {
            kp.insert(attribute, Value::Text(v));
        }
    }
    if let Some(t) = &publish_time {
        kp.insert("kppublishtime", Value::Owned(t.clone()));
    }
    if verdict.verified {
        kp.insert("kpprovenance", Value::Text("verified"));
    } else {
        kp.insert("kpprovenance", Value::Text("unverified"));
        kp.insert(
            "kpprovenancereason",
            Value::Text(verdict.reason.unwrap_or("unverified")),
        );
    }

    event.data = data(&message.payload, content_type);
    if synthesized && matches!(event.data, Data::Json(_)) {
        event.fill("datacontenttype", Value::Text("application/json"));
    }
    let full = event.to_raw();
    if escaped_len(full.get()) <= room {
        return full;
    }
    // Too large for any page: keep what identifies it, drop the rest.
    event.data = Data::None;
    event.attributes.retain(|name, _| {
        matches!(*name, "specversion" | "id" | "source" | "type" | "time")
            || name.starts_with(GATEWAY_PREFIX)
    });
    event
        .attributes
        .insert("kpdataomitted", Value::Text("too_large"));
    event.attributes.insert(
        "kpdatasize",
        Value::Integer(i64::try_from(message.payload.len()).unwrap_or(i64::MAX)),
    );
    event.to_raw()
}

/// The gateway's envelope for a message that is not a CloudEvent.
fn synthesized<'a>(
    message: &Delivered,
    properties: &BTreeMap<&'a str, &'a str>,
    topic: &'a str,
    message_id: &str,
) -> Event<'a> {
    let id = match properties.get("kp-event-id") {
        Some(id) if !id.is_empty() && valid_string(id) => Value::Text(id),
        _ => Value::Owned(message_id.to_owned()),
    };
    let mut attributes = BTreeMap::from([
        ("specversion", Value::Text(SPECVERSION)),
        ("id", id),
        ("source", Value::Text(topic)),
        ("type", Value::Text(SYNTHESIZED_TYPE)),
        ("kpsynthesized", Value::Boolean(true)),
    ]);
    if let Some(time) = message
        .event_time_ms
        .and_then(rfc3339)
        .or_else(|| rfc3339(message.publish_time_ms))
    {
        attributes.insert("time", Value::Owned(time));
    }
    Event {
        attributes,
        data: Data::None,
    }
}

/// Whether an optional attribute's value is of its type.
type Check = fn(&str) -> bool;

/// The event a producer published, from its `ce_*` properties, and its
/// `datacontenttype`; or why they are not a valid CloudEvent.
fn rebuilt<'a>(
    properties: &BTreeMap<&'a str, &'a str>,
) -> Result<(Event<'a>, Option<&'a str>), String> {
    let get = |name: &str| {
        properties
            .get(format!("{PROPERTY_PREFIX}{name}").as_str())
            .copied()
    };
    if get("specversion") != Some(SPECVERSION) {
        return Err(format!("ce_specversion is not {SPECVERSION}"));
    }
    let mut attributes = BTreeMap::from([("specversion", Value::Text(SPECVERSION))]);
    for name in ["id", "source", "type"] {
        match get(name) {
            Some(v) if !v.is_empty() && valid_string(v) => {
                attributes.insert(name, Value::Text(v));
            }
            Some(_) => return Err(format!("ce_{name} is empty or holds control characters")),
            None => return Err(format!("ce_{name} is missing")),
        }
    }
    let optional: [(&str, Check); 4] = [
        ("subject", |v| !v.is_empty()),
        ("time", |v| chrono::DateTime::parse_from_rfc3339(v).is_ok()),
        ("dataschema", |v| url::Url::parse(v).is_ok()),
        ("datacontenttype", |v| media_type(v).is_some()),
    ];
    for (name, valid) in optional {
        if let Some(v) = get(name) {
            if !valid_string(v) || !valid(v) {
                return Err(format!("ce_{name} is not a valid {name}"));
            }
            attributes.insert(name, Value::Text(v));
        }
    }
    for (&property, &value) in properties {
        let Some(name) = property.strip_prefix(PROPERTY_PREFIX) else {
            continue;
        };
        // Skipped, not fatal: the event is still what its producer sent,
        // less an attribute no consumer could have been meant to trust.
        if !is_core(name) && extension_name(name) && valid_string(value) {
            attributes.insert(name, Value::Text(value));
        }
    }
    let content_type = get("datacontenttype");
    Ok((
        Event {
            attributes,
            data: Data::None,
        },
        content_type,
    ))
}

/// `data` per the JSON format §3.1: JSON content types (and none) embed
/// the payload's JSON text when it parses; anything else is binary.
fn data<'a>(payload: &'a [u8], content_type: Option<&str>) -> Data<'a> {
    if payload.is_empty() {
        return Data::None;
    }
    let json_type = content_type.is_none_or(is_json_media);
    match serde_json::from_slice::<&RawValue>(payload) {
        Ok(raw) if json_type => Data::Json(raw),
        _ => Data::Base64(STANDARD.encode(payload)),
    }
}

/// A name an extension attribute may take from a message: the spec's
/// syntax (lower-case ASCII letters and digits), not a core attribute, and
/// never one of the gateway's (`kp…`).
fn extension_name(name: &str) -> bool {
    is_attribute_name(name) && !is_core(name) && !name.starts_with(GATEWAY_PREFIX)
}

/// A CloudEvents `String`: no control characters (C0, DEL, C1) and no
/// Unicode noncharacters (Rust strings hold no lone surrogates).
fn valid_string(text: &str) -> bool {
    !text.chars().any(|c| {
        let n = c as u32;
        c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
    })
}

#[cfg(test)]
mod tests;
