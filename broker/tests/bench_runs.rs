//! `floe-bench` is how the storage targets are measured, so it must keep
//! running: one short run of every phase, checked for a sane report (not
//! for speed: this is a debug build on a shared machine).

use std::process::Command;

use serde_json::Value;

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn number(v: &Value, path: &str) -> f64 {
    field(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v}"))
}

#[test]
fn every_phase_runs_and_reports() {
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floe-bench"))
        .args([
            "--objects",
            "memory",
            "--partitions",
            "4",
            "--concurrency",
            "4",
            "--raw-secs",
            "0.3",
            "--probe-secs",
            "0.3",
            "--duration-secs",
            "0.6",
            "--read-secs",
            "0.1",
            "--rate-mb-s",
            "20",
            "--object-rate-mb-s",
            "20",
            "--raw-write-bytes",
            "4096",
            "--raw-large-write-bytes",
            "65536",
            "--upload-bytes",
            "1048576",
            "--max-gb",
            "0.05",
        ])
        .arg("--dir")
        .arg(scratch.path())
        .env_remove("FLOE_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "floe-bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON line ({e}): {stderr}"));
    for phase in [
        "raw_fsync",
        "raw_fsync_overwrite",
        "raw_fsync_large",
        "paced_group_commit",
        "paced_group_commit_overwrite",
        "raw_group_commit",
        "raw_group_commit_overwrite",
    ] {
        assert!(
            number(&report, &format!("{phase}.samples")) > 0.0,
            "{phase}"
        );
        assert!(number(&report, &format!("{phase}.mb_s")) > 0.0, "{phase}");
    }
    for phase in [
        "volume_probe",
        "volume_paced",
        "volume",
        "object",
        "object_paced",
    ] {
        assert!(
            number(&report, &format!("{phase}.ack.samples")) > 0.0,
            "{phase}"
        );
        let p50 = number(&report, &format!("{phase}.ack.p50_us"));
        let p99 = number(&report, &format!("{phase}.ack.p99_us"));
        assert!(p50 > 0.0 && p99 >= p50, "{phase}: p50 {p50} p99 {p99}");
        assert!(number(&report, &format!("{phase}.puts")) > 0.0, "{phase}");
    }
    // The schedule was kept: 20 MB/s offered for 0.6 s is 12 MB issued,
    // however long the last acks take on a busy machine.
    let paced = number(&report, "volume_paced.bytes");
    assert!(
        (11.9e6..=12.1e6).contains(&paced),
        "paced phase issued {paced} bytes"
    );
    assert_eq!(number(&report, "volume_paced.target_mb_s"), 20.0);
    // Object mode at a producer's load: the same schedule, and one PUT per
    // upload window or full object, not one per append.
    let paced = number(&report, "object_paced.bytes");
    assert!(
        (11.9e6..=12.1e6).contains(&paced),
        "paced object phase issued {paced} bytes"
    );
    let (puts, appends) = (
        number(&report, "object_paced.puts"),
        number(&report, "object_paced.ack.samples"),
    );
    assert!(puts * 10.0 < appends, "{puts} PUTs for {appends} appends");
    for diff in [
        "paced_broker_added_p99_us",
        "paced_over_group_commit_p99_us",
        "paced_over_overwrite_group_commit_p99_us",
        "volume_broker_added_p99_us",
    ] {
        number(&report, diff);
    }
    // The hot tail serves tail reads; catch-up reads come from objects.
    assert_eq!(number(&report, "tail_read.gets"), 0.0);
    assert!(number(&report, "tail_read.bytes") > 0.0);
    assert!(number(&report, "catchup_read.gets") > 0.0);
    assert!(number(&report, "catchup_read.bytes") >= number(&report, "volume.bytes"));
}
