//! Merging the sources: each [`Source`] reports, on every poll, all the
//! signals it currently sees (level-triggered); the [`Watcher`] keeps the
//! active set, remembers when each signal was first seen (so a deadline
//! derived from "first seen" does not move on later polls) and emits a
//! [`Notice`] only for a signal that is new or has become more pressing.
//!
//! A source whose poll fails keeps its previous signals: an unreachable EC2
//! endpoint must not make an interruption look cancelled.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::Stream;
use tokio_util::sync::CancellationToken;

use crate::signal::{Signal, SignalKind};

/// What a signal is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A Kubernetes node, by name.
    Node(String),
    /// An EC2 instance, by id; resolved to a node through `spec.providerID`.
    Instance(String),
}

/// One interruption signal for one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The machine.
    pub target: Target,
    /// The signal.
    pub signal: Signal,
}

/// A source's poll failed.
#[derive(Debug, thiserror::Error)]
#[error("polling {source_name} for interruption signals failed: {error}")]
pub struct PollError {
    /// Which source.
    pub source_name: &'static str,
    /// Why.
    #[source]
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl PollError {
    /// Wraps a source's own error.
    pub fn new(
        source_name: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> PollError {
        PollError {
            source_name,
            error: Box::new(error),
        }
    }
}

/// A place interruption signals are read from.
pub trait Source: Send {
    /// A stable name for logs.
    fn name(&self) -> &'static str;
    /// Every signal the source sees now. `now` is the poll's wall-clock time,
    /// for signals whose deadline runs from when they were first seen.
    fn poll(&mut self, now: SystemTime) -> BoxFuture<'_, Result<Vec<Notice>, PollError>>;
}

type Key = (Target, SignalKind);

/// Polls its sources and keeps the active signals.
pub struct Watcher {
    sources: Vec<Box<dyn Source>>,
    /// Per source, the signals its last successful poll saw.
    seen: Vec<BTreeMap<Key, Signal>>,
    interval: Duration,
}

impl Watcher {
    /// A watcher polling every `interval`. Five seconds or less keeps the
    /// detection delay small against a two-minute warning.
    pub fn new(interval: Duration) -> Watcher {
        Watcher {
            sources: Vec::new(),
            seen: Vec::new(),
            interval,
        }
    }

    /// Adds a source.
    pub fn with_source(mut self, source: impl Source + 'static) -> Watcher {
        self.sources.push(Box::new(source));
        self.seen.push(BTreeMap::new());
        self
    }

    /// Polls every source once, concurrently, and returns the notices that
    /// are new or more pressing than before, most pressing first. Failed
    /// polls are logged and leave that source's signals as they were.
    pub async fn poll_once(&mut self, now: SystemTime) -> Vec<Notice> {
        let before = self.merged();
        let polls = self.sources.iter_mut().map(|s| s.poll(now));
        let results = futures::future::join_all(polls).await;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(notices) => {
                    let previous = std::mem::take(&mut self.seen[i]);
                    for n in notices {
                        let key = (n.target.clone(), n.signal.kind);
                        // The same signal seen again keeps its first deadline
                        // unless it is now more pressing.
                        let signal = match previous.get(&key) {
                            Some(p) if p.priority() <= n.signal.priority() => p.clone(),
                            _ => n.signal,
                        };
                        match self.seen[i].get(&key) {
                            Some(s) if s.priority() <= signal.priority() => {}
                            _ => {
                                self.seen[i].insert(key, signal);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(source = self.sources[i].name(), error = %e, "interruption source poll failed; keeping its last signals");
                }
            }
        }
        let after = self.merged();
        let mut fresh: Vec<Notice> = after
            .into_iter()
            .filter(|(k, s)| before.get(k).is_none_or(|b| s.priority() < b.priority()))
            .map(|((target, _), signal)| Notice { target, signal })
            .collect();
        fresh.sort_by(|a, b| {
            (a.signal.priority(), &a.target).cmp(&(b.signal.priority(), &b.target))
        });
        for n in &fresh {
            tracing::info!(target_machine = ?n.target, kind = %n.signal.kind, origin = n.signal.origin.as_str(), detail = %n.signal.detail, "interruption signal");
        }
        fresh
    }

    /// Every active signal, across sources, the most pressing per machine and kind.
    pub fn active(&self) -> Vec<Notice> {
        self.merged()
            .into_iter()
            .map(|((target, _), signal)| Notice { target, signal })
            .collect()
    }

    fn merged(&self) -> BTreeMap<Key, Signal> {
        let mut all: BTreeMap<Key, Signal> = BTreeMap::new();
        for (k, s) in self.seen.iter().flatten() {
            match all.get(k) {
                Some(o) if o.priority() <= s.priority() => {}
                _ => {
                    all.insert(k.clone(), s.clone());
                }
            }
        }
        all
    }

    /// The notices as a stream: polls every interval until `cancel` fires.
    pub fn notices(self, cancel: CancellationToken) -> impl Stream<Item = Notice> {
        let state = (self, Vec::<Notice>::new().into_iter(), cancel, true);
        futures::stream::unfold(
            state,
            |(mut w, mut pending, cancel, mut first)| async move {
                loop {
                    if let Some(n) = pending.next() {
                        return Some((n, (w, pending, cancel, first)));
                    }
                    if !first {
                        tokio::select! {
                            _ = cancel.cancelled() => return None,
                            _ = tokio::time::sleep(w.interval) => {}
                        }
                    }
                    first = false;
                    if cancel.is_cancelled() {
                        return None;
                    }
                    pending = w.poll_once(SystemTime::now()).await.into_iter();
                }
            },
        )
    }

    /// The polling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::signal::Origin;

    /// A source that answers each poll with the next scripted result.
    struct Scripted(VecDeque<Result<Vec<Notice>, String>>);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Failed(String);

    impl Source for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn poll(&mut self, _now: SystemTime) -> BoxFuture<'_, Result<Vec<Notice>, PollError>> {
            let next = self.0.pop_front().unwrap_or(Ok(Vec::new()));
            Box::pin(async move { next.map_err(|e| PollError::new("scripted", Failed(e))) })
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn notice(node: &str, kind: SignalKind, seen: u64) -> Notice {
        Notice {
            target: Target::Node(node.to_string()),
            signal: Signal::seen_at(kind, Origin::NodeObject, at(seen), String::new()),
        }
    }

    fn watcher(script: Vec<Result<Vec<Notice>, String>>) -> Watcher {
        Watcher::new(Duration::from_secs(1)).with_source(Scripted(script.into()))
    }

    #[tokio::test]
    async fn a_signal_is_new_once_and_keeps_its_first_deadline() {
        let mut w = watcher(vec![
            Ok(vec![notice("a", SignalKind::Cordon, 0)]),
            Ok(vec![notice("a", SignalKind::Cordon, 10)]),
        ]);
        let first = w.poll_once(at(0)).await;
        assert_eq!(first, [notice("a", SignalKind::Cordon, 0)]);
        // Seen again ten seconds later: not new, deadline unchanged.
        assert!(w.poll_once(at(10)).await.is_empty());
        assert_eq!(w.active(), [notice("a", SignalKind::Cordon, 0)]);
    }

    #[tokio::test]
    async fn an_escalated_signal_is_new_again() {
        let mut urgent = notice("a", SignalKind::ScheduledEvent, 0);
        urgent.signal.deadline = at(1000);
        let mut sooner = urgent.clone();
        sooner.signal.deadline = at(500);
        let mut w = watcher(vec![Ok(vec![urgent.clone()]), Ok(vec![sooner.clone()])]);
        assert_eq!(w.poll_once(at(0)).await, [urgent]);
        assert_eq!(w.poll_once(at(1)).await, [sooner]);
    }

    #[tokio::test]
    async fn a_failed_poll_keeps_signals_and_a_cleared_one_can_return() {
        let mut w = watcher(vec![
            Ok(vec![notice("a", SignalKind::SpotInterruption, 0)]),
            Err("endpoint unreachable".into()),
            Ok(vec![]),
            Ok(vec![notice("a", SignalKind::SpotInterruption, 30)]),
        ]);
        assert_eq!(w.poll_once(at(0)).await.len(), 1);
        assert!(w.poll_once(at(10)).await.is_empty());
        assert_eq!(w.active().len(), 1, "a failed poll must not clear signals");
        assert!(w.poll_once(at(20)).await.is_empty());
        assert!(
            w.active().is_empty(),
            "a successful poll without it clears it"
        );
        assert_eq!(
            w.poll_once(at(30)).await,
            [notice("a", SignalKind::SpotInterruption, 30)]
        );
    }

    #[tokio::test]
    async fn notices_come_most_pressing_first_as_a_stream() {
        use futures::StreamExt;
        let w = watcher(vec![Ok(vec![
            notice("b", SignalKind::Cordon, 0),
            notice("a", SignalKind::InstanceGoing, 0),
            notice("c", SignalKind::SpotInterruption, 0),
        ])]);
        let cancel = CancellationToken::new();
        let got: Vec<Notice> = w.notices(cancel.clone()).take(3).collect().await;
        let kinds: Vec<_> = got.iter().map(|n| n.signal.kind).collect();
        assert_eq!(
            kinds,
            [
                SignalKind::InstanceGoing,
                SignalKind::SpotInterruption,
                SignalKind::Cordon
            ]
        );
    }
}
