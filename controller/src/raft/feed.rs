//! The feed of applied commands (by metadata sequence number) that watchers (brokers' metadata mirrors,
//! through the metadata service's `Watch`) follow.
//!
//! Contract: the feed holds the commands of the last [`FEED_CAPACITY`]
//! applied log entries, in log order, each as the JSON that travels to
//! watchers (serialized once, at apply time). A watcher at index `i` gets
//! every entry after `i` while the feed still holds them; once it fell
//! further behind (or after a snapshot was installed) it must restart from a
//! state snapshot. Entries are pushed under the state machine's state lock,
//! so the feed and the state never disagree about the last applied index.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

/// Applied entries kept for watchers.
pub const FEED_CAPACITY: usize = 4_096;

/// One applied log entry, as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub index: u64,
    /// JSON of the applied [`Command`](crate::model::Command); `None` for
    /// entries that change no metadata (blank, membership, a duplicate
    /// proposal answered from memory).
    pub command: Option<Arc<Vec<u8>>>,
}

/// What [`Feed::after`] found.
#[derive(Debug, PartialEq)]
pub enum FeedRead {
    /// The entries after the given index (possibly none yet).
    Entries(Vec<FeedEvent>),
    /// The feed no longer holds the entry right after the given index:
    /// restart from a state snapshot.
    Behind,
}

#[derive(Debug)]
pub(super) struct Feed {
    /// `entries[0]` is the command with sequence number `first`.
    first: u64,
    entries: VecDeque<Option<Arc<Vec<u8>>>>,
    applied: watch::Sender<u64>,
}

impl Feed {
    /// An empty feed after the state applied every command up to
    /// sequence number `last_applied` (0: none yet; the first is 1).
    pub(super) fn new(last_applied: u64) -> Feed {
        Feed {
            first: last_applied + 1,
            entries: VecDeque::new(),
            applied: watch::Sender::new(last_applied),
        }
    }

    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Appends the entry at `index` (the next one).
    pub(super) fn push(&mut self, index: u64, command: Option<Vec<u8>>) {
        if index != self.next() {
            // Not contiguous (cannot happen in log order): start over, so
            // that watchers re-read a snapshot instead of skipping entries.
            tracing::warn!(
                index,
                expected = self.next(),
                "applied entries out of order; watchers restart from a snapshot"
            );
            self.reset(index);
            return;
        }
        self.entries.push_back(command.map(Arc::new));
        while self.entries.len() > FEED_CAPACITY {
            self.entries.pop_front();
            self.first += 1;
        }
        self.applied.send_replace(index);
    }

    /// Forgets every entry: the state jumped to `last_applied` (a snapshot
    /// was installed). Watchers behind it restart from a snapshot.
    pub(super) fn reset(&mut self, last_applied: u64) {
        self.first = last_applied + 1;
        self.entries.clear();
        self.applied.send_replace(last_applied);
    }

    /// Up to `max` entries after `index` (`0`: from the start).
    pub(super) fn after(&self, index: u64, max: usize) -> FeedRead {
        if index + 1 < self.first {
            return FeedRead::Behind;
        }
        let skip = (index + 1 - self.first) as usize;
        FeedRead::Entries(
            self.entries
                .iter()
                .enumerate()
                .skip(skip)
                .take(max)
                .map(|(i, command)| FeedEvent {
                    index: self.first + i as u64,
                    command: command.clone(),
                })
                .collect(),
        )
    }

    /// Changes whenever an entry is applied or a snapshot installed.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(read: FeedRead) -> Vec<u64> {
        match read {
            FeedRead::Entries(e) => e.iter().map(|e| e.index).collect(),
            FeedRead::Behind => panic!("behind"),
        }
    }

    #[test]
    fn watchers_get_entries_in_order_until_they_fall_behind() {
        let mut feed = Feed::new(10);
        for i in 11..=(10 + FEED_CAPACITY as u64 + 5) {
            feed.push(i, Some(vec![1]));
        }
        assert_eq!(feed.after(10, 10), FeedRead::Behind);
        assert_eq!(feed.after(14, 10), FeedRead::Behind);
        assert_eq!(indexes(feed.after(15, 2)), vec![16, 17]);
        let last = 10 + FEED_CAPACITY as u64 + 5;
        assert_eq!(indexes(feed.after(last, 10)), Vec::<u64>::new());
        assert_eq!(*feed.subscribe().borrow(), last);
    }

    #[test]
    fn a_reset_sends_everyone_behind_it_to_a_snapshot() {
        let mut feed = Feed::new(0);
        feed.push(1, None);
        assert_eq!(indexes(feed.after(0, 10)), vec![1]);
        feed.reset(50);
        assert_eq!(feed.after(1, 10), FeedRead::Behind);
        feed.push(51, Some(vec![]));
        assert_eq!(indexes(feed.after(50, 10)), vec![51]);
    }
}
