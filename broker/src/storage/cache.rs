//! A byte-bounded cache of object ranges (one partition's chunk of an object)
//! for catch-up readers. It is separate from the partitions' hot tails, so
//! catch-up reads can never evict data that caught-up consumers are reading.
//! Concurrent misses on the same range share one GET (single flight).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

type Key = (String, u64);

struct Entry {
    cell: Arc<OnceCell<Bytes>>,
    last_used: u64,
    size: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
}

pub struct BlockCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl BlockCache {
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, key: &str, start: u64) -> bool {
        self.lock()
            .map
            .get(&(key.to_owned(), start))
            .is_some_and(|e| e.cell.initialized())
    }

    /// Get a range, loading it with `load` on a miss. Failed loads are not cached.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, start: u64, load: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let k = (key.to_owned(), start);
        let cell = {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let e = inner.map.entry(k.clone()).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                last_used: tick,
                size: 0,
            });
            e.last_used = tick;
            e.cell.clone()
        };
        let fresh = !cell.initialized();
        let bytes = cell.get_or_try_init(load).await?.clone();
        if fresh {
            self.account(&k, bytes.len());
        }
        Ok(bytes)
    }

    /// Put a range that is already in memory (a freshly uploaded chunk).
    pub fn insert(&self, key: &str, start: u64, bytes: Bytes) {
        let k = (key.to_owned(), start);
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let cell = Arc::new(OnceCell::new());
            let _ = cell.set(bytes.clone());
            if let Some(old) = inner.map.insert(
                k.clone(),
                Entry {
                    cell,
                    last_used: tick,
                    size: 0,
                },
            ) {
                inner.bytes -= old.size;
            }
        }
        self.account(&k, bytes.len());
    }

    fn account(&self, k: &Key, size: usize) {
        let mut inner = self.lock();
        let Some(e) = inner.map.get_mut(k) else {
            return;
        };
        if e.size == size {
            return;
        }
        let old = std::mem::replace(&mut e.size, size);
        inner.bytes = inner.bytes - old + size;
        // Evict least recently used loaded entries until under capacity.
        while inner.bytes > self.capacity {
            let victim = inner
                .map
                .iter()
                .filter(|(key, e)| e.size > 0 && *key != k)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(key, _)| key.clone());
            match victim.and_then(|v| inner.map.remove(&v)) {
                Some(e) => inner.bytes -= e.size,
                None => break,
            }
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn single_flight_and_bounded() {
        let cache = Arc::new(BlockCache::new(10));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load("a", 0, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(Bytes::from_static(b"123456"))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(&t.await.unwrap()[..], b"123456");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.insert("b", 0, Bytes::from_static(b"123456"));
        // 12 bytes > 10: the older entry goes.
        assert!(cache.used_bytes() <= 10);
        assert!(!cache.contains("a", 0));
        assert!(cache.contains("b", 0));
    }

    #[tokio::test]
    async fn failed_loads_are_retried() {
        let cache = BlockCache::new(100);
        let r: Result<Bytes, &str> = cache.get_or_load("k", 1, || async { Err("boom") }).await;
        assert!(r.is_err());
        let r: Result<Bytes, &str> = cache
            .get_or_load("k", 1, || async { Ok(Bytes::from_static(b"x")) })
            .await;
        assert_eq!(&r.unwrap()[..], b"x");
    }
}
