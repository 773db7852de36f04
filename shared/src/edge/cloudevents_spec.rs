//! What the CloudEvents 1.0 spec and this gateway's mapping of it into
//! Pulsar say, shared by the way in (`publish::cloudevents`) and the way out
//! (`consume::cloudevents`), so the two cannot drift apart.

/// The context attributes the spec defines (`data` aside), in property order.
pub const ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "dataschema",
    "datacontenttype",
];

/// The property prefix an attribute is published under (`ce_id`, …).
pub const PROPERTY_PREFIX: &str = "ce_";

/// Extension attribute names the gateway gives out on the way out
/// (`kpsourceid`, `kpprovenance`, …): no producer's attribute may take one.
pub const GATEWAY_PREFIX: &str = "kp";

/// The spec's attribute-name syntax: lower-case ASCII letters and digits.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `application/json`, `text/json` or any `…/…+json`, parameters aside:
/// the content types whose `data` the JSON format embeds as JSON.
pub fn is_json_media(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or("").trim();
    let Some((_, subtype)) = media.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    subtype == "json" || subtype.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_and_attribute_names() {
        for (media, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/json", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("json", false),
            ("application/jsonx", false),
        ] {
            assert_eq!(is_json_media(media), json, "{media}");
        }
        assert!(is_attribute_name("partitionkey2"));
        for bad in ["", "Upper", "with-dash", "under_score"] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
    }
}
