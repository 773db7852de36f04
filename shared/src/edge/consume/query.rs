//! The read route's query and the acknowledgement body, parsed whole into
//! types before any credential is checked. Strict: an unknown or repeated
//! parameter is a 400 rather than ignored, so a typo (`wait=…`, `sub=…`)
//! does not silently turn into a read the caller did not mean.
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `after` | `earliest` (default), `latest`, or a `cursor` from a page |
//! | `subscription` | a durable Shared subscription instead of a cursor |
//! | `max` | most messages to return, 1..=[`MAX_MESSAGES`] (default [`DEFAULT_MAX`]) |
//! | `waitMs` | how long to wait for a first message, 0..=[`MAX_WAIT_MS`] (default 0) |
//! | `provenance` | `required`: drop messages whose provenance does not verify |

use std::time::Duration;

use serde::Deserialize;

use crate::edge::kong::HttpRequest;
use crate::edge::problem::ApiError;
use crate::pulsar::broker::MessageId;
use crate::pulsar::read::Position;
use crate::pulsar::topic::SubscriptionName;

/// Most messages one read returns.
pub const MAX_MESSAGES: usize = 1000;
/// Messages a read returns unless `max` says otherwise.
pub const DEFAULT_MAX: usize = 100;
/// Longest long poll; the function's deadline may cut it shorter.
pub const MAX_WAIT_MS: u64 = 20_000;
/// Most message ids one acknowledgement names.
pub const MAX_ACKS: usize = 1000;

/// What to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Cursor(Position),
    Subscription(SubscriptionName),
}

/// A parsed read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadQuery {
    pub mode: Mode,
    pub max: usize,
    pub wait: Duration,
    pub require_provenance: bool,
}

impl ReadQuery {
    pub fn parse(query: &[(String, String)]) -> Result<Self, ApiError> {
        let mut after = None;
        let mut subscription = None;
        let mut max = None;
        let mut wait = None;
        let mut provenance = None;
        for (name, value) in query {
            let slot = match name.as_str() {
                "after" => &mut after,
                "subscription" => &mut subscription,
                "max" => &mut max,
                "waitMs" => &mut wait,
                "provenance" => &mut provenance,
                other => {
                    return Err(ApiError::InvalidQuery(format!(
                        "unknown parameter {:?} (known: after, subscription, max, waitMs, \
                         provenance)",
                        truncate(other)
                    )));
                }
            };
            if slot.replace(value.as_str()).is_some() {
                return Err(ApiError::InvalidQuery(format!("{name} is given twice")));
            }
        }
        let mode = match (after, subscription) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidQuery(
                    "give after (a cursor read) or subscription (a durable read), not both".into(),
                ));
            }
            (None, Some(name)) => Mode::Subscription(
                SubscriptionName::parse(name).map_err(ApiError::InvalidSubscription)?,
            ),
            (after, None) => Mode::Cursor(
                Position::parse(after.unwrap_or("earliest")).ok_or(ApiError::InvalidCursor)?,
            ),
        };
        let max = match max {
            None => DEFAULT_MAX,
            Some(v) => number(v)
                .filter(|n| (1..=MAX_MESSAGES as u64).contains(n))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!("max must be a whole number 1..={MAX_MESSAGES}"))
                })? as usize,
        };
        let wait = match wait {
            None => 0,
            Some(v) => number(v).filter(|n| *n <= MAX_WAIT_MS).ok_or_else(|| {
                ApiError::InvalidQuery(format!("waitMs must be a whole number 0..={MAX_WAIT_MS}"))
            })?,
        };
        let require_provenance = match provenance {
            None => false,
            Some("required") => true,
            Some(_) => {
                return Err(ApiError::InvalidQuery(
                    "provenance must be `required` (or absent)".into(),
                ));
            }
        };
        Ok(Self {
            mode,
            max,
            wait: Duration::from_millis(wait),
            require_provenance,
        })
    }
}

/// Digits only (no sign, no spaces, no `0x`), at most 10 of them.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `POST …/acks`: `{"subscription": "…", "messageIds": ["…", …]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBody {
    pub subscription: SubscriptionName,
    pub message_ids: Vec<MessageId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AckDoc {
    subscription: String,
    message_ids: Vec<String>,
}

impl AckBody {
    pub fn parse(request: &HttpRequest) -> Result<Self, ApiError> {
        if !request.query.is_empty() {
            return Err(ApiError::InvalidQuery(
                "acknowledgements take no query parameters".into(),
            ));
        }
        match crate::edge::publish::media_type(&request.headers).as_str() {
            "application/json" => {}
            "" => return Err(ApiError::UnsupportedMediaType("(none)".into())),
            other => return Err(ApiError::UnsupportedMediaType(other.to_owned())),
        }
        let doc: AckDoc = serde_json::from_slice(&request.body)
            .map_err(|source| ApiError::InvalidJson { line: None, source })?;
        let subscription =
            SubscriptionName::parse(&doc.subscription).map_err(ApiError::InvalidSubscription)?;
        if doc.message_ids.is_empty() || doc.message_ids.len() > MAX_ACKS {
            return Err(ApiError::InvalidMessageId(format!(
                "messageIds must list 1..={MAX_ACKS} message ids"
            )));
        }
        let message_ids = doc
            .message_ids
            .iter()
            .enumerate()
            .map(|(i, text)| {
                MessageId::parse(text).ok_or_else(|| {
                    ApiError::InvalidMessageId(format!(
                        "messageIds[{i}] is not a message id (ledger:entry:partition:batch)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            subscription,
            message_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ReadQuery, ApiError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReadQuery::parse(&pairs)
    }

    #[test]
    fn reads_default_to_earliest_a_hundred_and_no_wait() {
        let query = q(&[]).unwrap();
        assert_eq!(query.mode, Mode::Cursor(Position::Earliest));
        assert_eq!((query.max, query.wait), (DEFAULT_MAX, Duration::ZERO));
        assert!(!query.require_provenance);
        let query = q(&[
            ("after", "12:3:-1:-1"),
            ("max", "1000"),
            ("waitMs", "20000"),
            ("provenance", "required"),
        ])
        .unwrap();
        assert_eq!(
            query.mode,
            Mode::Cursor(Position::parse("12:3:-1:-1").unwrap())
        );
        assert_eq!((query.max, query.wait), (1000, Duration::from_secs(20)));
        assert!(query.require_provenance);
        assert!(matches!(
            q(&[("subscription", "team-a")]).unwrap().mode,
            Mode::Subscription(_)
        ));
    }

    #[test]
    fn bad_queries_are_refused_with_a_stable_code() {
        for (pairs, code) in [
            (&[("after", "yesterday")][..], "invalid_cursor"),
            (&[("after", "12:3")], "invalid_cursor"),
            (&[("after", "")], "invalid_cursor"),
            (&[("after", "-1:0:-1:-1")], "invalid_cursor"),
            (&[("subscription", "a/b")], "invalid_subscription"),
            (&[("subscription", "__compaction")], "invalid_subscription"),
            (&[("subscription", "")], "invalid_subscription"),
            (
                &[("after", "earliest"), ("subscription", "s")],
                "invalid_query",
            ),
            (&[("max", "0")], "invalid_query"),
            (&[("max", "1001")], "invalid_query"),
            (&[("max", "-1")], "invalid_query"),
            (&[("max", "1e3")], "invalid_query"),
            (&[("max", " 5")], "invalid_query"),
            (&[("max", "99999999999999999999")], "invalid_query"),
            (&[("waitMs", "20001")], "invalid_query"),
            (&[("waitMs", "true")], "invalid_query"),
            (&[("max", "5"), ("max", "6")], "invalid_query"),
            (&[("wait", "5")], "invalid_query"),
            (&[("provenance", "yes")], "invalid_query"),
        ] {
            let err = q(pairs).expect_err(&format!("{pairs:?}"));
            assert_eq!(err.code(), code, "{pairs:?}");
            assert_eq!(err.status().0, 400, "{pairs:?}");
        }
    }
}
