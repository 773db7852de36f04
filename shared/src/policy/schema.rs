//! Topic schemas: JSON Schemas compiled once when the policy loads, then used
//! to check every event before it is published.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// At most this many violations are reported for one event. A large batch
/// event of the wrong shape can fail thousands of times; the first few name
/// the problem, and the problem response and log line stay bounded.
pub const MAX_VIOLATIONS: usize = 32;

/// A topic's JSON Schema, compiled.
pub struct CompiledSchema {
    schema: Value,
    file: Option<PathBuf>,
    validator: jsonschema::Validator,
}

/// One way an event fails its topic's schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON pointer (RFC 6901) to the offending part of the event; `""` is
    /// the whole event.
    pub pointer: String,
    /// What is wrong. Instance values are masked ("value is not of type
    /// ...") so that event data never lands in responses or logs.
    pub message: String,
}

impl CompiledSchema {
    /// Compiles `schema`, read from `file` if it came from one. Remote `$ref`s
    /// are not fetched (the crate builds jsonschema without network
    /// resolvers), so a schema cannot make cold start depend on a web server.
    pub(super) fn compile(schema: Value, file: Option<PathBuf>) -> Result<Self, String> {
        match jsonschema::validator_for(&schema) {
            Ok(validator) => Ok(Self {
                schema,
                file,
                validator,
            }),
            Err(error) => {
                let at = error.instance_path().as_str();
                Err(if at.is_empty() {
                    format!("not a valid JSON Schema: {error}")
                } else {
                    format!("not a valid JSON Schema: at {at}: {error}")
                })
            }
        }
    }

    /// The schema document, as written (for the reconciler to upload).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The file the schema was read from, when it was not inline.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Checks one event. On failure, returns up to [`MAX_VIOLATIONS`]
    /// violations, each with the JSON pointer of the offending value.
    pub fn validate(&self, event: &Value) -> Result<(), Vec<SchemaViolation>> {
        // The common case (a valid event) takes the cheaper boolean path.
        if self.validator.is_valid(event) {
            return Ok(());
        }
        let violations: Vec<SchemaViolation> = self
            .validator
            .iter_errors(event)
            .take(MAX_VIOLATIONS)
            .map(|error| SchemaViolation {
                pointer: error.instance_path().as_str().to_owned(),
                message: error.masked().to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("schema", &self.schema)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> CompiledSchema {
        CompiledSchema::compile(
            json!({
                "type": "object",
                "required": ["orderId"],
                "properties": {
                    "orderId": { "type": "string" },
                    "lines": { "type": "array", "items": { "type": "object", "required": ["sku"] } },
                },
            }),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_valid_event_passes() {
        let s = order_schema();
        assert_eq!(
            s.validate(&json!({"orderId": "o-1", "lines": [{"sku": "x"}]})),
            Ok(())
        );
    }

    #[test]
    fn violations_carry_json_pointers() {
        let s = order_schema();
        let err = s
            .validate(&json!({"orderId": 7, "lines": [{"sku": "x"}, {"qty": 1}]}))
            .unwrap_err();
        let pointers: Vec<&str> = err.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&"/orderId"), "{err:?}");
        assert!(pointers.contains(&"/lines/1"), "{err:?}");
        let missing = s.validate(&json!({})).unwrap_err();
        assert_eq!(missing[0].pointer, "");
        assert!(missing[0].message.contains("orderId"), "{missing:?}");
    }

    #[test]
    fn messages_do_not_echo_event_data() {
        let s = order_schema();
        let err = s.validate(&json!({"orderId": 4242424242u64})).unwrap_err();
        assert!(!err[0].message.contains("4242424242"), "{err:?}");
        assert!(err[0].message.contains("string"), "{err:?}");
    }

    #[test]
    fn violations_are_capped() {
        let s =
            CompiledSchema::compile(json!({"type": "array", "items": {"type": "string"}}), None)
                .unwrap();
        let err = s
            .validate(&json!((0..1000).collect::<Vec<_>>()))
            .unwrap_err();
        assert_eq!(err.len(), MAX_VIOLATIONS);
        assert_eq!(err[3].pointer, "/3");
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_schema_location() {
        let err = CompiledSchema::compile(json!({"properties": {"a": {"type": "strin"}}}), None)
            .unwrap_err();
        assert!(err.contains("/properties/a/type"), "{err}");
        let err = CompiledSchema::compile(json!({"$ref": "https://example.com/s.json"}), None)
            .unwrap_err();
        assert!(err.starts_with("not a valid JSON Schema"), "{err}");
    }
}
