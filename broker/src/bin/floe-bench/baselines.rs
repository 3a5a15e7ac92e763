//! The disk baselines `floe-bench` compares the engine with: one writer's
//! write + `fdatasync`, and a bare group commit at the engine's load, each
//! appending to a new file or overwriting one written out beforehand.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::report::RawFsync;

/// The bytes an overwriting baseline's file is written out to beforehand
/// (writes wrap around inside it).
const OVERWRITE_FILE_BYTES: u64 = 256 << 20;

/// The file a baseline writes durably to: appended to (the file grows, so
/// each `fdatasync` also commits the new size to the filesystem journal),
/// or overwritten in place in a file written out beforehand.
struct RawFile {
    file: std::fs::File,
    path: PathBuf,
    pos: u64,
    wrap_at: Option<u64>,
}

impl RawFile {
    fn create(path: PathBuf, overwrite: bool) -> anyhow::Result<RawFile> {
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        if overwrite {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..OVERWRITE_FILE_BYTES / zeros.len() as u64 {
                file.write_all_at(&zeros, i * zeros.len() as u64)?;
            }
            file.sync_all()?;
        }
        Ok(RawFile {
            file,
            path,
            pos: 0,
            wrap_at: overwrite.then_some(OVERWRITE_FILE_BYTES),
        })
    }

    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self
            .wrap_at
            .is_some_and(|w| self.pos + buf.len() as u64 > w)
        {
            self.pos = 0;
        }
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        self.file.sync_data()
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write-and-fdatasync to one file, as the WAL does with one group.
pub(crate) fn measure_fsync(
    dir: &Path,
    write_bytes: usize,
    secs: f64,
    overwrite: bool,
) -> anyhow::Result<RawFsync> {
    let mut f = RawFile::create(dir.join("raw-fsync.bin"), overwrite)?;
    let buf: Vec<u8> = (0..write_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let mut us = Vec::new();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    while start.elapsed() < limit || us.len() < 10 {
        let t = Instant::now();
        f.write_durably(&buf)?;
        us.push(t.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(f);
    Ok(RawFsync::new(write_bytes, us, elapsed))
}

#[derive(Default)]
struct Queue {
    buf: Vec<u8>,
    queued: u64,
    durable: u64,
    stop: bool,
    failed: Option<String>,
    /// When each queued write was issued, for writers that do not wait
    /// (the paced baseline); the syncer turns them into latencies.
    issued: Vec<Instant>,
    us: Vec<u64>,
}

type Shared = Arc<(std::sync::Mutex<Queue>, std::sync::Condvar)>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// The simplest group commit: one thread takes everything queued, writes
/// it, `fdatasync`s, and marks it durable.
fn spawn_syncer(mut f: RawFile, shared: Shared) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        let (buf, upto, issued) = {
            let mut q = lock(&shared);
            while q.buf.is_empty() && !q.stop {
                q = shared.1.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.buf.is_empty() {
                return;
            }
            (
                std::mem::take(&mut q.buf),
                q.queued,
                std::mem::take(&mut q.issued),
            )
        };
        let done = f.write_durably(&buf);
        let mut q = lock(&shared);
        match done {
            Ok(()) => {
                q.durable = upto;
                q.us.extend(issued.iter().map(|t| t.elapsed().as_micros() as u64));
            }
            Err(e) => {
                q.failed = Some(e.to_string());
                q.stop = true;
            }
        }
        shared.1.notify_all();
    })
}

/// Let the syncer write what is queued, stop it, and return the latencies
/// it recorded.
fn stop_syncer(shared: &Shared, syncer: std::thread::JoinHandle<()>) -> anyhow::Result<Vec<u64>> {
    lock(shared).stop = true;
    shared.1.notify_all();
    syncer
        .join()
        .map_err(|_| anyhow::anyhow!("the syncer thread panicked"))?;
    let mut q = lock(shared);
    if let Some(e) = q.failed.take() {
        anyhow::bail!("group commit baseline: {e}");
    }
    Ok(std::mem::take(&mut q.us))
}

/// The same load as the `volume` phase with no engine at all: `writers`
/// threads each append `batch` bytes to one file and wait until it is
/// durable, through the simplest group commit (one syncer thread takes
/// everything queued, writes it, `fdatasync`s, wakes the writers it
/// covered). What a durable append costs on this disk at this concurrency,
/// queueing included: the floor the engine's own latency is compared with.
pub(crate) fn measure_group_commit(
    dir: &Path,
    writers: usize,
    batch: usize,
    secs: f64,
    overwrite: bool,
) -> anyhow::Result<RawFsync> {
    let f = RawFile::create(dir.join("raw-group-commit.bin"), overwrite)?;
    let shared: Shared = Arc::default();
    let syncer = spawn_syncer(f, shared.clone());
    let block: Vec<u8> = (0..batch).map(|i| (i * 31 % 251) as u8).collect();
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (shared, block) = (shared.clone(), block.clone());
            std::thread::spawn(move || {
                let mut us = Vec::new();
                while start.elapsed() < limit {
                    let t = Instant::now();
                    let mut q = lock(&shared);
                    if q.stop {
                        break;
                    }
                    q.buf.extend_from_slice(&block);
                    q.queued += 1;
                    let mine = q.queued;
                    shared.1.notify_all();
                    while q.durable < mine && !q.stop {
                        q = shared.1.wait(q).unwrap_or_else(|p| p.into_inner());
                    }
                    drop(q);
                    us.push(t.elapsed().as_micros() as u64);
                }
                us
            })
        })
        .collect();
    let mut us = Vec::new();
    for t in threads {
        us.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?,
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop_syncer(&shared, syncer)?;
    Ok(RawFsync::new(batch, us, elapsed))
}

/// The paced phase's load with no engine: writes of `batch` bytes issued
/// on the same schedule (`rate_mb_s`, released once a millisecond, as the
/// engine phase's timer releases its appends), never waiting for the disk,
/// through the same bare group commit. Each latency runs from issue to
/// durable. A closed-loop baseline cannot stand in here: a writer that
/// waits records one slow sample for a millisecond-long stall of the
/// machine, where a schedule records every write issued during it.
pub(crate) fn measure_paced_group_commit(
    dir: &Path,
    batch: usize,
    rate_mb_s: f64,
    secs: f64,
    overwrite: bool,
) -> anyhow::Result<RawFsync> {
    let f = RawFile::create(dir.join("raw-paced-group-commit.bin"), overwrite)?;
    let shared: Shared = Arc::default();
    let syncer = spawn_syncer(f, shared.clone());
    let block: Vec<u8> = (0..batch).map(|i| (i * 31 % 251) as u8).collect();
    let interval = batch as f64 / (rate_mb_s * 1e6);
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let (mut issued, mut tick) = (0u64, 0u32);
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        if elapsed >= limit {
            break;
        }
        let due = (elapsed.as_secs_f64() / interval) as u64 + 1;
        if due > issued {
            let mut q = lock(&shared);
            if q.stop {
                break;
            }
            for _ in issued..due {
                q.buf.extend_from_slice(&block);
                q.issued.push(now);
            }
            q.queued += due - issued;
            issued = due;
            shared.1.notify_all();
        }
        tick += 1;
        let next = start + Duration::from_millis(u64::from(tick));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let us = stop_syncer(&shared, syncer)?;
    Ok(RawFsync::new(batch, us, elapsed))
}
