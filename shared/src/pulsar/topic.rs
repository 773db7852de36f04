//! Pulsar names as they arrive at the edge: parsed once into types, so the
//! core never handles a raw tenant, namespace or topic string.

use std::fmt;

/// One Pulsar name segment (tenant, namespace or topic): `[A-Za-z0-9_.=-]+`,
/// not `.` or `..`, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PulsarName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than 255 characters")]
    TooLong { what: &'static str },
    #[error("{what} contains a character outside [A-Za-z0-9_.=-]")]
    IllegalCharacter { what: &'static str },
    #[error("{what} may not be '.' or '..' or contain '..'")]
    DotSegment { what: &'static str },
    /// `__`-prefixed names belong to Pulsar itself (`__change_events` holds
    /// topic policies, `__transaction_*` the coordinator's state).
    #[error("{what} names starting with '__' are reserved for Pulsar's system topics")]
    SystemName { what: &'static str },
    /// `x-partition-<n>` is one partition of partitioned topic `x`: publishing
    /// to it directly would go around the schema and policy kept for `x`.
    #[error(
        "topic names ending in '-partition-<n>' address one partition of a partitioned topic; \
         publish to the topic's base name"
    )]
    PartitionName,
}

/// The naming rule for names callers may publish to, beyond the character
/// rules of [`PulsarName::parse`]: no `__` prefix on any segment, and no
/// `-partition-<n>` suffix on the topic. Kept apart from `parse` because the
/// admin side (rotation, tests) must still be able to name system topics.
pub fn check_publishable(text: &str, what: &'static str) -> Result<(), NameError> {
    if text.starts_with("__") {
        return Err(NameError::SystemName { what });
    }
    if what == "topic" && is_partition_name(text) {
        return Err(NameError::PartitionName);
    }
    Ok(())
}

/// Whether `text` ends in `-partition-<digits>`, Pulsar's name for one
/// partition (`TopicName.PARTITIONED_TOPIC_SUFFIX`).
pub fn is_partition_name(text: &str) -> bool {
    match text.rsplit_once(PARTITION_SUFFIX) {
        // Pulsar itself reads an index after the last suffix whatever precedes it.
        Some((_, n)) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// What Pulsar appends to a partitioned topic's name, before the index.
pub const PARTITION_SUFFIX: &str = "-partition-";

impl PulsarName {
    /// Checks `text` as the `what` segment ("tenant", "namespace", "topic").
    pub fn parse(text: &str, what: &'static str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty { what });
        }
        if text.len() > 255 {
            return Err(NameError::TooLong { what });
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'=' | b'-'))
        {
            return Err(NameError::IllegalCharacter { what });
        }
        if text == "." || text.contains("..") {
            return Err(NameError::DotSegment { what });
        }
        Ok(Self(text.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PulsarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A durable subscription's name, as a caller gives it: a [`PulsarName`]
/// that does not start with `__` (Pulsar's own, such as `__compaction`,
/// whose cursor a caller must never move).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionName(PulsarName);

impl SubscriptionName {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let name = PulsarName::parse(text, "subscription")?;
        if text.starts_with("__") {
            return Err(NameError::SystemName {
                what: "subscription",
            });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for SubscriptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A persistent topic, `persistent://tenant/namespace/topic`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicName {
    pub tenant: PulsarName,
    pub namespace: PulsarName,
    pub topic: PulsarName,
}

impl TopicName {
    /// Parses the three path segments of `/events/{tenant}/{namespace}/{topic}`.
    pub fn parse(tenant: &str, namespace: &str, topic: &str) -> Result<Self, NameError> {
        Ok(Self {
            tenant: PulsarName::parse(tenant, "tenant")?,
            namespace: PulsarName::parse(namespace, "namespace")?,
            topic: PulsarName::parse(topic, "topic")?,
        })
    }
}

impl TopicName {
    /// Applies [`check_publishable`] to every segment.
    pub fn check_publishable(&self) -> Result<(), NameError> {
        check_publishable(self.tenant.as_str(), "tenant")?;
        check_publishable(self.namespace.as_str(), "namespace")?;
        check_publishable(self.topic.as_str(), "topic")
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "persistent://{}/{}/{}",
            self.tenant, self.namespace, self.topic
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse_and_print_as_a_persistent_topic() {
        let t = TopicName::parse("payments", "orders", "order-created.v1=x_y").unwrap();
        assert_eq!(
            t.to_string(),
            "persistent://payments/orders/order-created.v1=x_y"
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            "a/b",
            "a%2Fb",
            "a b",
            "ä",
            "a\0b",
            "a\nb",
            "*",
            "a:b",
            "persistent://x",
        ] {
            assert!(PulsarName::parse(bad, "topic").is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            PulsarName::parse(&"a".repeat(256), "tenant"),
            Err(NameError::TooLong { what: "tenant" })
        ));
        assert!(PulsarName::parse(&"a".repeat(255), "tenant").is_ok());
    }

    #[test]
    fn system_and_partition_names_are_not_publishable() {
        let cases: &[(&str, &str, &str, Option<NameError>)] = &[
            ("t", "ns", "order-created", None),
            ("t", "ns", "_single-underscore", None),
            ("t", "ns", "a__b", None),
            ("t", "ns", "x-partition-", None),
            ("t", "ns", "x-partition-1a", None),
            ("t", "ns", "x-partition-a", None),
            ("t", "ns", "-partition-0", Some(NameError::PartitionName)),
            ("t", "ns", "x-partition--1", None),
            ("t", "ns", "partition-0", None),
            (
                "t",
                "ns",
                "order-created-partition-0",
                Some(NameError::PartitionName),
            ),
            (
                "t",
                "ns",
                "a-partition-0-partition-12",
                Some(NameError::PartitionName),
            ),
            (
                "t",
                "ns",
                "__change_events",
                Some(NameError::SystemName { what: "topic" }),
            ),
            (
                "t",
                "ns",
                "__transaction_log_0",
                Some(NameError::SystemName { what: "topic" }),
            ),
            (
                "t",
                "__kafka",
                "x",
                Some(NameError::SystemName { what: "namespace" }),
            ),
            (
                "__system",
                "ns",
                "x",
                Some(NameError::SystemName { what: "tenant" }),
            ),
            // Partition suffixes only matter on topics.
            ("t-partition-1", "ns-partition-2", "x", None),
        ];
        for (t, ns, topic, want) in cases {
            let name = TopicName::parse(t, ns, topic).unwrap();
            assert_eq!(name.check_publishable().err(), *want, "{name}");
        }
    }
}
