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
}

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
}
