//! What `floe-bench` reports: latency summaries, each phase's result and the
//! JSON line, plus the object-store counters the append phases take.

use std::sync::atomic::Ordering;

use floe_broker::storage::objects::Objects;
use serde::Serialize;

use crate::ObjectsKind;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

impl Latency {
    pub(crate) fn from(mut us: Vec<u64>) -> Latency {
        us.sort_unstable();
        let at = |q: f64| {
            us.get(((us.len().saturating_sub(1)) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Latency {
            samples: us.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: us.last().copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RawFsync {
    pub(crate) write_bytes: usize,
    #[serde(flatten)]
    pub(crate) latency: Latency,
    pub(crate) mb_s: f64,
}

impl RawFsync {
    /// `us`: one latency per write of `write_bytes`, over `secs` seconds.
    pub(crate) fn new(write_bytes: usize, us: Vec<u64>, secs: f64) -> RawFsync {
        RawFsync {
            write_bytes,
            mb_s: (us.len() * write_bytes) as f64 / secs / 1e6,
            latency: Latency::from(us),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AppendResult {
    pub(crate) concurrency: usize,
    pub(crate) seconds: f64,
    pub(crate) bytes: u64,
    pub(crate) append_mb_s: f64,
    pub(crate) ack: Latency,
    pub(crate) puts: u64,
    pub(crate) put_mb: f64,
    pub(crate) puts_per_gb: f64,
    /// PUTs run at idle priority, and those of them issued again at normal
    /// priority because they waited too long (`volume` mode, ADR 0017).
    pub(crate) background_puts: u64,
    pub(crate) escalated_puts: u64,
}

/// Object-store counters at one moment.
#[derive(Clone, Copy)]
pub(crate) struct PutCounts {
    pub(crate) puts: u64,
    pub(crate) bytes: u64,
    pub(crate) background: u64,
    pub(crate) escalated: u64,
}

impl PutCounts {
    pub(crate) fn now(objects: &Objects) -> PutCounts {
        let s = &objects.stats;
        PutCounts {
            puts: s.puts.load(Ordering::Relaxed),
            bytes: s.put_bytes.load(Ordering::Relaxed),
            background: s.background_puts.load(Ordering::Relaxed),
            escalated: s.escalated_puts.load(Ordering::Relaxed),
        }
    }

    /// The append result for `us` acks of `batch_bytes` each, with the PUTs
    /// since `self`.
    pub(crate) fn result(
        self,
        objects: &Objects,
        concurrency: usize,
        seconds: f64,
        bytes: u64,
        us: Vec<u64>,
    ) -> AppendResult {
        let now = PutCounts::now(objects);
        let puts = now.puts - self.puts;
        AppendResult {
            concurrency,
            seconds,
            bytes,
            append_mb_s: bytes as f64 / seconds / 1e6,
            ack: Latency::from(us),
            puts,
            put_mb: (now.bytes - self.bytes) as f64 / 1e6,
            puts_per_gb: puts as f64 / (bytes as f64 / 1e9),
            background_puts: now.background - self.background,
            escalated_puts: now.escalated - self.escalated,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PacedResult {
    /// The offered load.
    pub(crate) target_mb_s: f64,
    /// How far the issuer fell behind its schedule at worst (timer
    /// granularity, or the in-flight cap reached).
    pub(crate) max_schedule_lag_us: u64,
    /// `concurrency` is the most appends in flight at once.
    #[serde(flatten)]
    pub(crate) result: AppendResult,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReadResult {
    pub(crate) seconds: f64,
    pub(crate) bytes: u64,
    pub(crate) mb_s: f64,
    pub(crate) gets: u64,
    pub(crate) get_mb: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) cores: usize,
    /// 1-minute load average before and after (other work on the machine skews results).
    pub(crate) loadavg_start: f64,
    pub(crate) loadavg_end: f64,
    pub(crate) dir: String,
    pub(crate) objects: ObjectsKind,
    pub(crate) partitions: i32,
    pub(crate) batch_bytes: usize,
    pub(crate) raw_fsync: RawFsync,
    /// The same writes overwriting a file written out beforehand (no file
    /// growth, so `fdatasync` needs no journal commit), as the WAL writes
    /// into reused segments.
    pub(crate) raw_fsync_overwrite: RawFsync,
    pub(crate) raw_fsync_large: RawFsync,
    /// `--concurrency` writers of `batch_bytes` through a bare group commit
    /// on one file (no engine): the durable-append floor at that load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_group_commit: Option<RawFsync>,
    /// The same, overwriting a file written out beforehand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_group_commit_overwrite: Option<RawFsync>,
    /// volume ack p99 minus that overwriting group commit's p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_over_overwrite_group_commit_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_probe: Option<AppendResult>,
    /// The bare group commit at `--rate-mb-s` offered load, appending and
    /// overwriting: the paced phase's floor, measured the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_group_commit: Option<RawFsync>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_group_commit_overwrite: Option<RawFsync>,
    /// `volume` mode at `--rate-mb-s` offered load; its ack p99 minus the
    /// raw fdatasync p99 and minus the two paced group commits' p99s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_paced: Option<PacedResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_broker_added_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_over_group_commit_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_over_overwrite_group_commit_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume: Option<AppendResult>,
    /// volume ack p99 minus raw fdatasync p99 (same run), and their ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_broker_added_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_p99_over_fsync_p99: Option<f64>,
    /// volume ack p99 minus the bare group commit's p99 (same run, same
    /// concurrency and batch size), and their ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_over_group_commit_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_p99_over_group_commit_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) probe_broker_added_p99_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tail_read: Option<ReadResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) catchup_read: Option<ReadResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) object: Option<AppendResult>,
    /// `object` mode at `--object-rate-mb-s` offered load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) object_paced: Option<PacedResult>,
}
