//! Where a cursor read starts, and where the next one continues.
//!
//! A cursor is the position itself, so any instance continues any caller's
//! read (see [`super`]). On a non-partitioned topic that is one message id.
//! A partitioned topic has no order across its partitions, so its cursor is
//! one message id per partition, comma-separated in partition order
//! (`72:4:0:-1,75:9:2:-1`: partitions 0 and 2 read that far, the others
//! from their oldest message). Each id names its partition, as the ids the
//! publish answer gives do.

use std::fmt;

use crate::pulsar::broker::MessageId;

/// Most partitions a cursor may name: a bound on what a caller can make one
/// read open (a partitioned topic with more is read from its oldest message
/// for the rest).
pub const MAX_CURSOR_PARTITIONS: usize = 256;

/// Where a cursor read starts: after this position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Before the first message the topic still holds.
    Earliest,
    /// After the last message the topic holds now.
    Latest,
    /// After this message (of a non-partitioned topic, or of the partition
    /// it names, the others from their oldest message).
    After(MessageId),
    /// After each of these: one per partition, in partition order, at least
    /// two (one is [`Position::After`]).
    AfterEach(Vec<MessageId>),
}

/// Why a cursor does not fit the topic it is used on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorMismatch {
    #[error("the cursor names partitions, and the topic is not partitioned")]
    NotPartitioned,
    #[error("the topic is partitioned, and the cursor names no partition")]
    Partitioned,
    #[error("the cursor names partition {0}, and the topic has fewer")]
    NoSuchPartition(i32),
}

impl Position {
    /// `earliest`, `latest`, a message id (`ledger:entry:partition:batch`),
    /// or several of a partitioned topic's, comma-separated, each of its own
    /// partition.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "earliest" => return Some(Self::Earliest),
            "latest" => return Some(Self::Latest),
            _ => {}
        }
        let mut ids = Vec::new();
        for part in text.split(',') {
            if ids.len() == MAX_CURSOR_PARTITIONS {
                return None;
            }
            ids.push(MessageId::parse(part)?);
        }
        if let [one] = ids[..] {
            return Some(Self::After(one));
        }
        ids.sort_by_key(|id| id.partition);
        let distinct = ids.windows(2).all(|w| w[0].partition != w[1].partition);
        (ids[0].partition >= 0 && distinct).then_some(Self::AfterEach(ids))
    }

    /// Moves the cursor past `id`, a message just taken (of the partition it
    /// names, on a partitioned topic).
    pub fn advance(&mut self, id: MessageId) {
        if id.partition < 0 {
            *self = Self::After(id);
            return;
        }
        let mut ids = match std::mem::replace(self, Self::Earliest) {
            Self::AfterEach(ids) => ids,
            Self::After(other) if other.partition >= 0 && other.partition != id.partition => {
                vec![other]
            }
            _ => Vec::new(),
        };
        match ids.binary_search_by_key(&id.partition, |i| i.partition) {
            Ok(at) => ids[at] = id,
            Err(at) => ids.insert(at, id),
        }
        *self = match ids[..] {
            [one] => Self::After(one),
            _ => Self::AfterEach(ids),
        };
    }

    /// Checks the cursor against a topic of `partitions` partitions (0: not
    /// partitioned).
    pub fn fits(&self, partitions: u32) -> Result<(), CursorMismatch> {
        let named: &[MessageId] = match self {
            Self::Earliest | Self::Latest => return Ok(()),
            Self::After(id) => std::slice::from_ref(id),
            Self::AfterEach(ids) => ids,
        };
        for id in named {
            match (partitions, id.partition) {
                (0, -1) => {}
                (0, _) => return Err(CursorMismatch::NotPartitioned),
                (_, -1) => return Err(CursorMismatch::Partitioned),
                (n, p) if p as u32 >= n => return Err(CursorMismatch::NoSuchPartition(p)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Where partition `partition` of a partitioned topic starts: its own
    /// id of the cursor, or its oldest message when the cursor names none.
    pub fn of_partition(&self, partition: i32) -> Self {
        match self {
            Self::Earliest => Self::Earliest,
            Self::Latest => Self::Latest,
            Self::After(id) if id.partition == partition => Self::After(*id),
            Self::After(_) => Self::Earliest,
            Self::AfterEach(ids) => ids
                .iter()
                .find(|id| id.partition == partition)
                .map_or(Self::Earliest, |id| Self::After(*id)),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::After(id) => id.fmt(f),
            Self::AfterEach(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    id.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> MessageId {
        MessageId::parse(text).unwrap()
    }

    #[test]
    fn cursors_parse_what_they_print_and_refuse_the_rest() {
        for (text, parsed) in [
            ("earliest", Some("earliest")),
            ("latest", Some("latest")),
            ("12:3:-1:-1", Some("12:3:-1:-1")),
            ("12:3:2:-1", Some("12:3:2:-1")),
            // Partition order, whatever order they came in.
            ("9:1:3:-1,12:3:0:-1", Some("12:3:0:-1,9:1:3:-1")),
            ("12:3:0:-1,13:1:0:-1", None),
            ("12:3:-1:-1,13:1:0:-1", None),
            ("12:3:0:-1,", None),
            (",12:3:0:-1", None),
            ("earliest,12:3:0:-1", None),
            ("", None),
        ] {
            assert_eq!(
                Position::parse(text).map(|p| p.to_string()).as_deref(),
                parsed,
                "{text:?}"
            );
        }
        let too_many: Vec<String> = (0..=MAX_CURSOR_PARTITIONS)
            .map(|p| format!("1:1:{p}:-1"))
            .collect();
        assert_eq!(Position::parse(&too_many.join(",")), None);
    }

    #[test]
    fn advancing_keeps_one_id_per_partition() {
        let mut cursor = Position::Earliest;
        cursor.advance(id("5:1:2:-1"));
        assert_eq!(cursor, Position::After(id("5:1:2:-1")));
        cursor.advance(id("6:1:0:-1"));
        cursor.advance(id("5:2:2:-1"));
        assert_eq!(cursor.to_string(), "6:1:0:-1,5:2:2:-1");
        let mut plain = Position::Latest;
        plain.advance(id("7:7:-1:-1"));
        assert_eq!(plain, Position::After(id("7:7:-1:-1")));
    }

    #[test]
    fn a_cursor_fits_only_its_kind_of_topic_and_splits_into_partitions() {
        let each = Position::parse("6:1:0:-1,5:2:2:-1").unwrap();
        assert_eq!(each.fits(4), Ok(()));
        assert_eq!(each.fits(2), Err(CursorMismatch::NoSuchPartition(2)));
        assert_eq!(each.fits(0), Err(CursorMismatch::NotPartitioned));
        assert_eq!(
            Position::After(id("1:1:-1:-1")).fits(4),
            Err(CursorMismatch::Partitioned)
        );
        assert_eq!(Position::Latest.fits(4), Ok(()));
        assert_eq!(each.of_partition(2), Position::After(id("5:2:2:-1")));
        assert_eq!(each.of_partition(1), Position::Earliest);
        assert_eq!(Position::Latest.of_partition(3), Position::Latest);
    }
}
