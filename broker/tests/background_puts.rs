//! `volume`-mode uploads run at idle CPU priority (ADR 0017), over the
//! fault-injecting store holding every PUT made from a background thread, as
//! a machine whose CPUs never idle would.
//!
//! Proves: a background PUT runs in the idle scheduling class and, once its
//! caller says it is urgent, is issued at normal priority while the starved
//! one is dropped; a starved upload holds back neither a flush nor, without
//! one, the data's upload beyond half an upload interval; nothing is lost or
//! duplicated on the way.

#[path = "support/faulty_store.rs"]
mod faulty_store;
#[path = "support/records.rs"]
mod records;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faulty_store::{append_some, assert_log, close, within, FaultyStore, Fixture};
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, WalMode};

/// A background PUT runs on a thread of the idle scheduling class; while it
/// runs, other background PUTs go at normal priority; once its caller says
/// it is urgent, the same PUT is issued at normal priority and the starved
/// one is dropped, which frees the background thread for the next PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_background_put_is_issued_again_when_urgent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = Arc::new(FaultyStore::default());
    store.faults().hold_idle_puts = true;
    let objects = Objects::new(store.clone(), "");
    let urgent = Arc::new(AtomicBool::new(false));
    let first = vec![Bytes::from_static(b"first "), Bytes::from_static(b"copy")];
    let starved = tokio::spawn({
        let (objects, urgent, first) = (objects.clone(), urgent.clone(), first.clone());
        async move {
            objects
                .put_new_parts_background("data/bg.floe", first, || urgent.load(Ordering::Relaxed))
                .await
        }
    });
    within(
        Duration::from_secs(10),
        "the background PUT to start",
        async {
            while store.faults().idle_puts.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    #[cfg(target_os = "linux")]
    assert_eq!(store.faults().idle_puts, vec![Some(libc::SCHED_IDLE)]);

    // Held: it does not land by itself...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!starved.is_finished());
    assert!(objects.get_range("data/bg.floe", 0..4).await.is_err());
    // ...and meanwhile another background PUT runs at normal priority.
    within(
        Duration::from_secs(10),
        "a second background PUT",
        objects
            .put_new_parts_background("data/other.floe", vec![Bytes::from_static(b"x")], || false),
    )
    .await
    .unwrap();
    assert_eq!(store.faults().idle_puts.len(), 1);

    // Urgent: issued again at normal priority, and it lands.
    urgent.store(true, Ordering::Relaxed);
    within(Duration::from_secs(10), "the urgent PUT", starved)
        .await
        .unwrap()
        .unwrap();
    let stats = &objects.stats;
    assert_eq!(stats.background_puts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.escalated_puts.load(Ordering::Relaxed), 1);
    assert_eq!(
        &objects.get_range("data/bg.floe", 0..10).await.unwrap()[..],
        b"first copy"
    );

    // The starved PUT is dropped, though the store still holds it.
    within(
        Duration::from_secs(10),
        "the starved PUT to be dropped",
        async {
            while store.faults().held > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    // The background thread is free for the next PUT.
    store.faults().hold_idle_puts = false;
    within(
        Duration::from_secs(10),
        "the background thread to be free",
        async {
            loop {
                objects
                    .put_new_parts_background(
                        "data/next.floe",
                        vec![Bytes::from_static(b"y")],
                        || false,
                    )
                    .await
                    .unwrap();
                if stats.background_puts.load(Ordering::Relaxed) == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    assert_eq!(
        &objects.get_range("data/bg.floe", 0..10).await.unwrap()[..],
        b"first copy"
    );
    assert_eq!(store.faults().idle_puts.len(), 2);
}

/// In `volume` mode uploads are background PUTs. One that never gets CPU
/// time holds back neither a flush (nor so a fence) nor, without one, the
/// data's upload beyond about an upload interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_background_upload_holds_back_neither_a_flush_nor_the_interval() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::new(2).await;
    fx.store.faults().hold_idle_puts = true;
    let mut cfg = records::small_config(WalMode::Volume, fx.wal_dir("wal"));
    // Only size starts an upload here, and half an interval is far away.
    cfg.upload_interval = Duration::from_secs(60);
    let storage = fx.open(cfg).await;
    let expected = append_some(&storage, &fx.ids, 60, "a").await;
    within(Duration::from_secs(10), "a background upload", async {
        while fx.store.faults().idle_puts.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(fx.committed_objects().is_empty());
    let started = std::time::Instant::now();
    within(Duration::from_secs(10), "flush", storage.flush()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a flush waited {:?} behind a starved upload",
        started.elapsed()
    );
    assert!(!fx.committed_objects().is_empty());
    let escalated = |s: &Storage| s.objects().stats.escalated_puts.load(Ordering::Relaxed);
    assert!(escalated(&storage) >= 1);
    close(storage).await;

    // Without a flush: half an interval after the round began, its data is
    // PUT at normal priority.
    let mut cfg = records::small_config(WalMode::Volume, fx.wal_dir("wal2"));
    cfg.upload_interval = Duration::from_millis(400);
    cfg.upload_bytes = 64 << 20;
    let before = fx.committed_objects().len();
    let storage = fx.open(cfg).await;
    let more = append_some(&storage, &fx.ids, 6, "b").await;
    within(Duration::from_secs(10), "the interval's upload", async {
        while fx.committed_objects().len() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(escalated(&storage) >= 1);
    fx.store.faults().hold_idle_puts = false;
    within(Duration::from_secs(10), "flush", storage.flush()).await;
    close(storage).await;

    // Everything is in objects exactly once: a fresh engine with an empty
    // WAL reads both runs' records back.
    let cold = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("empty")))
        .await;
    let all: Vec<Vec<Bytes>> = expected
        .into_iter()
        .zip(more)
        .map(|(mut a, b)| {
            a.extend(b);
            a
        })
        .collect();
    assert_log(&cold, &fx.ids, &all).await;
}
