//! Logging set-up shared by every function, and the one way secrets appear in
//! logs: as a short, irreversible fingerprint.

use sha2::{Digest, Sha256};
use tracing_subscriber::EnvFilter;

/// Installs JSON logging to stdout (CloudWatch picks it up line by line).
///
/// The level comes from `RUST_LOG` (default `info`). Calling it twice is
/// harmless, so tests and binaries can both call it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// An untrusted string (a header, a claim, an upstream answer) made safe to
/// put in an error or a log line: printable ASCII only (anything else, line
/// breaks and escape sequences included, becomes `?`), at most `max_chars`
/// characters, then `…`.
pub fn echo(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// A short fingerprint of a secret value (first 12 hex digits of its
/// SHA-256) for logs and error messages: enough to tell two tokens apart,
/// useless to an attacker.
pub fn fingerprint(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    hex::encode(&digest[..6])
}

/// An error with its causes, for reports and logs: `Display` alone drops the
/// source chain, and the cause is usually the useful part.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        // Wrappers often repeat their cause's message; say it once.
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

/// Which function's request an [`Audit`] records: it names the audit line
/// and the request's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    #[default]
    Publish,
    Consume,
}

impl Operation {
    /// `publish` or `consume`: the audit line's message.
    pub fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Consume => "consume",
        }
    }

    /// The outcome of a request that succeeded.
    fn success(self) -> &'static str {
        match self {
            Self::Publish => "published",
            Self::Consume => "read",
        }
    }

    fn metrics(self) -> &'static [EmfMetric] {
        const PUBLISH: &[EmfMetric] = &[
            EmfMetric::new("PublishLatency", "Milliseconds"),
            EmfMetric::new("EventsPublished", "Count"),
            EmfMetric::new("Requests", "Count"),
        ];
        const CONSUME: &[EmfMetric] = &[
            EmfMetric::new("ConsumeLatency", "Milliseconds"),
            EmfMetric::new("EventsRead", "Count"),
            EmfMetric::new("Requests", "Count"),
        ];
        match self {
            Self::Publish => PUBLISH,
            Self::Consume => CONSUME,
        }
    }
}

/// The one audit record written per request.
#[derive(Debug, Default)]
pub struct Audit<'a> {
    pub operation: Operation,
    pub request_id: &'a str,
    pub principal: Option<&'a str>,
    pub auth_method: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub topic: Option<&'a str>,
    /// `allow` or `deny` once the policy was consulted.
    pub decision: Option<&'a str>,
    pub rule: Option<&'a str>,
    /// Message ids (first one, and how many) on success.
    pub message_id: Option<String>,
    pub events: usize,
    /// The problem code on failure.
    pub error_code: Option<&'a str>,
    pub latency_ms: f64,
}

impl Audit<'_> {
    /// Writes the audit line (target `audit`), then the EMF metrics line.
    pub fn emit(&self) {
        use std::io::Write as _;
        tracing::info!(
            target: "audit",
            request_id = self.request_id,
            principal = self.principal,
            auth_method = self.auth_method,
            tenant = self.tenant,
            namespace = self.namespace,
            topic = self.topic,
            decision = self.decision,
            rule = self.rule,
            message_id = self.message_id.as_deref(),
            events = self.events,
            error_code = self.error_code,
            latency_ms = self.latency_ms,
            "{}",
            self.operation.name()
        );
        // Serialised straight into stdout's buffer: no JSON tree, no string.
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &self.emf(chrono::Utc::now().timestamp_millis()))
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
    }

    /// A CloudWatch Embedded Metric Format record: publish latency and
    /// outcome per topic, with no extra API call (CloudWatch Logs extracts it).
    ///
    /// The `Topic` dimension is only recorded once the policy allowed the
    /// caller to publish there: every distinct dimension value is a new
    /// CloudWatch metric (billed, and kept for 15 months), and before
    /// authorization the topic is whatever an anonymous client typed. Other
    /// requests count by `Outcome` alone; the audit line still names the topic.
    pub fn emf(&self, now_ms: i64) -> Emf<'_> {
        let topic = match (self.decision, self.tenant, self.namespace, self.topic) {
            (Some("allow"), Some(t), Some(n), Some(p)) => Some(EmfTopic(t, n, p)),
            _ => None,
        };
        Emf {
            aws: EmfMetadata {
                timestamp: now_ms,
                cloud_watch_metrics: [EmfDirective {
                    namespace: "KongPulsar",
                    dimensions: if topic.is_some() {
                        &[&["Topic", "Outcome"], &["Outcome"]]
                    } else {
                        &[&["Outcome"]]
                    },
                    metrics: self.operation.metrics(),
                }],
            },
            outcome: self.error_code.unwrap_or(self.operation.success()),
            measures: Measures {
                operation: self.operation,
                latency_ms: self.latency_ms,
                events: if self.error_code.is_none() {
                    self.events
                } else {
                    0
                },
            },
            requests: 1,
            topic,
        }
    }
}

/// One EMF record, borrowed from its [`Audit`]; everything but the topic
/// dimension is static.
#[derive(Debug, serde::Serialize)]
pub struct Emf<'a> {
    #[serde(rename = "_aws")]
    aws: EmfMetadata,
    #[serde(rename = "Outcome")]
    outcome: &'a str,
    #[serde(flatten)]
    measures: Measures,
    #[serde(rename = "Requests")]
    requests: u32,
    #[serde(rename = "Topic", skip_serializing_if = "Option::is_none")]
    topic: Option<EmfTopic<'a>>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfMetadata {
    timestamp: i64,
    cloud_watch_metrics: [EmfDirective; 1],
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfDirective {
    namespace: &'static str,
    dimensions: &'static [&'static [&'static str]],
    metrics: &'static [EmfMetric],
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct EmfMetric {
    name: &'static str,
    unit: &'static str,
}

impl EmfMetric {
    const fn new(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit }
    }
}

/// The latency and event-count values, under the names the operation's
/// metric directive declares (its first two metrics).
#[derive(Debug)]
struct Measures {
    operation: Operation,
    latency_ms: f64,
    events: usize,
}

impl serde::Serialize for Measures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let [latency, events, ..] = self.operation.metrics() else {
            unreachable!("every operation declares latency and events first")
        };
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(latency.name, &self.latency_ms)?;
        map.serialize_entry(events.name, &self.events)?;
        map.end()
    }
}

/// `tenant/namespace/topic`, written without building the string.
#[derive(Debug)]
struct EmfTopic<'a>(&'a str, &'a str, &'a str);

impl serde::Serialize for EmfTopic<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}/{}/{}", self.0, self.1, self.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_record_names_its_metrics_and_dimensions() {
        let audit = Audit {
            request_id: "r1",
            tenant: Some("payments"),
            namespace: Some("orders"),
            topic: Some("created"),
            decision: Some("allow"),
            events: 3,
            latency_ms: 12.5,
            ..Audit::default()
        };
        let emf = serde_json::to_value(audit.emf(1_700_000_000_000)).unwrap();
        assert_eq!(emf["Topic"], "payments/orders/created");
        assert_eq!(emf["Outcome"], "published");
        assert_eq!(emf["EventsPublished"], 3);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "KongPulsar"
        );
        assert_eq!(emf["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let failed = Audit {
            error_code: Some("forbidden"),
            ..audit
        };
        let emf = serde_json::to_value(failed.emf(0)).unwrap();
        assert_eq!(emf["Outcome"], "forbidden");
        assert_eq!(emf["EventsPublished"], 0);
        let read = Audit {
            operation: Operation::Consume,
            error_code: None,
            ..failed
        };
        let emf = serde_json::to_value(read.emf(0)).unwrap();
        assert_eq!(emf["Outcome"], "read");
        assert_eq!(emf["EventsRead"], 3);
        assert_eq!(emf["ConsumeLatency"], 12.5);
        assert!(emf.get("EventsPublished").is_none());
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "EventsRead"
        );
    }

    #[test]
    fn unauthorized_requests_mint_no_topic_dimension() {
        let named = |decision, error_code| Audit {
            request_id: "r1",
            tenant: Some("random-tenant-42"),
            namespace: Some("x"),
            topic: Some("y"),
            decision,
            error_code,
            ..Audit::default()
        };
        for (case, audit) in [
            ("unauthenticated", named(None, Some("missing_credentials"))),
            ("bad token", named(None, Some("invalid_token"))),
            ("denied", named(Some("deny"), Some("forbidden"))),
            ("reserved name", named(None, Some("reserved_name"))),
        ] {
            let emf = serde_json::to_value(audit.emf(0)).unwrap();
            assert!(emf.get("Topic").is_none(), "{case}: {emf}");
            assert_eq!(
                emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                serde_json::json!([["Outcome"]]),
                "{case}"
            );
            assert_eq!(emf["Outcome"], audit.error_code.unwrap(), "{case}");
        }
        // Allowed but failed later (schema, broker): the topic is a real one.
        let emf =
            serde_json::to_value(named(Some("allow"), Some("schema_violation")).emf(0)).unwrap();
        assert_eq!(emf["Topic"], "random-tenant-42/x/y");
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Topic", "Outcome"], ["Outcome"]])
        );
    }

    #[test]
    fn fingerprint_is_short_stable_and_does_not_contain_the_secret() {
        let fp = fingerprint(b"eyJhbGciOiJIUzI1NiJ9.secret");
        assert_eq!(fp.len(), 12);
        assert_eq!(fp, fingerprint(b"eyJhbGciOiJIUzI1NiJ9.secret"));
        assert_ne!(fp, fingerprint(b"eyJhbGciOiJIUzI1NiJ9.other"));
        assert!(!fp.contains("secret"));
    }
}
