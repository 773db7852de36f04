//! Line numbers for problems found after parsing. serde_yaml_ng keeps no
//! spans, but it stamps the position of the node being read onto any error a
//! visitor returns. So once a check fails at, say, `rules[2].allow.tenant`, the
//! document is walked a second time down that path and the error is raised
//! *at* that node: the operator gets the same "at line L column C" as for a
//! syntax error. This runs only on the failure path.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step from the document root to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// The value under this key.
    Key(String),
    /// This key itself (for problems with a name, not with what it names).
    KeyItself(String),
    Index(usize),
}

/// Where in the document a problem is, e.g. `rules[2].allow.tenant`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NodePath(Vec<Seg>);

impl NodePath {
    pub(super) fn root() -> Self {
        Self::default()
    }

    pub(super) fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Key(key.into()));
        next
    }

    /// The path's last key itself rather than the value under it, for
    /// problems with a name (`tenants.a/b`) rather than with what it names.
    pub(super) fn the_key(&self) -> Self {
        let mut next = self.clone();
        if let Some(last) = next.0.last_mut()
            && let Seg::Key(key) = last
        {
            *last = Seg::KeyItself(std::mem::take(key));
        }
        next
    }

    pub(super) fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Index(index));
        next
    }
}

impl fmt::Display for NodePath {
    /// Same notation as serde_yaml_ng's error paths, so both kinds of message
    /// read alike.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) | Seg::KeyItself(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) | Seg::KeyItself(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Re-reads `text` and returns `message` as a serde_yaml_ng error positioned
/// at the node `path` names, or `None` if the node is not found (the caller
/// then reports the path in words instead).
pub(super) fn locate(text: &str, path: &NodePath, message: &str) -> Option<serde_yaml_ng::Error> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    Locate {
        path: &path.0,
        message,
    }
    .deserialize(deserializer)
    .err()
}

#[derive(Clone, Copy)]
struct Locate<'a> {
    path: &'a [Seg],
    message: &'a str,
}

impl Locate<'_> {
    fn here<T, E: de::Error>(self) -> Result<T, E> {
        Err(E::custom(self.message))
    }

    /// A scalar is the target only when the path ends on it.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            self.here()
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return self.here();
        };
        if let Seg::KeyItself(wanted) = first {
            while map
                .next_key_seed(KeyItself {
                    wanted,
                    message: self.message,
                })?
                .is_some()
            {
                map.next_value::<IgnoredAny>()?;
            }
            return Ok(());
        }
        while let Some(key) = map.next_key::<String>()? {
            if matches!(first, Seg::Key(k) if *k == key) {
                map.next_value_seed(Locate { path: rest, ..self })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return self.here();
        };
        let mut index = 0;
        loop {
            let found = if matches!(first, Seg::Index(n) if *n == index) {
                seq.next_element_seed(Locate { path: rest, ..self })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if found.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

/// Reads a mapping key and fails on the wanted one, so the error carries the
/// key's own position.
struct KeyItself<'a> {
    wanted: &'a str,
    message: &'a str,
}

impl<'de> DeserializeSeed<'de> for KeyItself<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyItself<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        if key == self.wanted {
            Err(E::custom(self.message))
        } else {
            Ok(())
        }
    }
}
