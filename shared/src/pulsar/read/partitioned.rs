//! Cursor reads of a partitioned topic: every partition read at once, as a
//! topic of its own, and merged.
//!
//! A partitioned topic has no order across partitions, only within each, so
//! the merge keeps each partition's order and interleaves the partitions by
//! publish time (oldest head first). The page is a prefix of that merge,
//! hence a prefix of each partition, which is what lets the cursor hold one
//! position per partition ([`Position::AfterEach`]) and skip nothing.
//!
//! Each partition is read up to `max`, so a read may fetch up to
//! `partitions × max` messages to answer `max`; the rest is read again by
//! the next call (non-durable readers: nothing to give back). A long poll
//! waits on every partition and answers with the first that gets a message.

use std::collections::VecDeque;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::{Delivered, Page, Position, ReadError, Readers, Take};
use crate::pulsar::broker::TenantCredentials;

/// Up to `max` messages of `topic`'s `partitions` partitions after
/// `position` (checked to fit them).
pub(super) async fn read(
    readers: &Readers,
    credentials: TenantCredentials<'_>,
    topic: &str,
    partitions: u32,
    position: &Position,
    take: Take,
    deadline: Instant,
) -> Result<Page, ReadError> {
    let partition = |p: u32| format!("{topic}-partition-{p}");
    let at_once = Take {
        wait: std::time::Duration::ZERO,
        ..take
    };
    let first = futures::future::join_all((0..partitions).map(|p| {
        let name = partition(p);
        let from = position.of_partition(p as i32);
        async move {
            readers
                .read_once(credentials, &name, p as i32, &from, at_once, deadline)
                .await
        }
    }))
    .await;
    let mut pages = first.into_iter().collect::<Result<Vec<Page>, _>>()?;
    if pages.iter().all(|p| p.messages.is_empty()) && !take.wait.is_zero() {
        // Nothing anywhere: wait on each from where it stands now (`latest`
        // already resolved, so nothing published meanwhile is skipped), and
        // answer with the first partition that gets something.
        let mut waiting: FuturesUnordered<_> = pages
            .iter()
            .enumerate()
            .map(|(p, page)| {
                let name = partition(p as u32);
                let from = page.start.clone();
                async move {
                    let page = readers
                        .read_once(credentials, &name, p as i32, &from, take, deadline)
                        .await;
                    (p, page)
                }
            })
            .collect();
        while let Some((p, page)) = waiting.next().await {
            let page = page?;
            let got = !page.messages.is_empty();
            pages[p] = page;
            if got {
                break;
            }
        }
    }
    Ok(merge(pages, take.max))
}

/// Interleaves the partitions' pages (in partition order, their ids
/// naming their partitions) oldest head first, up to `max`.
fn merge(pages: Vec<Page>, max: usize) -> Page {
    let mut start = Position::Earliest;
    let mut queues: Vec<VecDeque<Delivered>> = Vec::with_capacity(pages.len());
    for page in pages {
        if let Position::After(id) = page.start {
            start.advance(id);
        }
        queues.push(page.messages.into());
    }
    let mut messages = Vec::new();
    while messages.len() < max {
        let oldest = queues
            .iter()
            .enumerate()
            .filter_map(|(p, q)| q.front().map(|m| (m.publish_time_ms, p)))
            .min();
        let Some((_, p)) = oldest else { break };
        messages.extend(queues[p].pop_front());
    }
    Page { messages, start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::broker::MessageId;

    fn at(partition: i32, entry: u64) -> MessageId {
        MessageId {
            ledger_id: 7,
            entry_id: entry,
            partition,
            batch_index: -1,
        }
    }

    fn delivered(partition: i32, entry: u64, publish_time_ms: u64) -> Delivered {
        Delivered {
            id: at(partition, entry),
            payload: Vec::new(),
            key: None,
            event_time_ms: None,
            publish_time_ms,
            properties: Vec::new(),
        }
    }

    fn page(start: Position, messages: Vec<Delivered>) -> Page {
        Page { messages, start }
    }

    #[test]
    fn the_merge_keeps_each_partitions_order_and_takes_the_oldest_head_first() {
        let merged = merge(
            vec![
                // A producer's clock may step back: partition 0's order is
                // kept even so.
                page(
                    Position::Earliest,
                    vec![delivered(0, 1, 50), delivered(0, 2, 10)],
                ),
                page(
                    Position::After(at(1, 4)),
                    vec![delivered(1, 5, 20), delivered(1, 6, 60)],
                ),
                page(Position::Earliest, vec![]),
            ],
            3,
        );
        let got: Vec<(i32, u64)> = merged
            .messages
            .iter()
            .map(|m| (m.id.partition, m.id.entry_id))
            .collect();
        assert_eq!(got, [(1, 5), (0, 1), (0, 2)]);
        // Where it started: partition 1 after entry 4, the others earliest.
        assert_eq!(merged.start.to_string(), "7:4:1:-1");
    }
}
