//! The gRPC code in `controller/src/grpc/floe.controller.v1.rs` is generated
//! from `controller/proto` and committed, so that building Floe needs no
//! `protoc`. This test regenerates it and fails when the two differ.
//!
//! Needs `protoc` (Debian: protobuf-compiler; `scripts/test` installs it).
//! `FLOE_UPDATE_PROTO=1` rewrites the committed file instead of comparing.

use std::path::Path;

#[test]
fn generated_grpc_code_matches_the_proto() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = root.join("proto/floe/controller/v1/controller.proto");
    let committed = root.join("src/grpc/floe.controller.v1.rs");
    let out = tempfile::tempdir()?;
    tonic_prost_build::configure()
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        // A state snapshot is shared by every watcher it is sent to.
        .bytes(".floe.controller.v1.StateSnapshot.state")
        .bytes(".floe.controller.v1.StateSnapshotPart.data")
        .compile_protos(&[proto], &[root.join("proto")])
        .map_err(|e| anyhow::anyhow!("protoc failed (is protobuf-compiler installed?): {e}"))?;
    let generated = std::fs::read_to_string(out.path().join("floe.controller.v1.rs"))?;
    if std::env::var_os("FLOE_UPDATE_PROTO").is_some() {
        std::fs::write(&committed, &generated)?;
        return Ok(());
    }
    let current = std::fs::read_to_string(&committed).unwrap_or_default();
    anyhow::ensure!(
        current == generated,
        "{} is out of date with controller/proto; regenerate it with \
         `FLOE_UPDATE_PROTO=1 cargo nextest run -p floe-controller --features grpc -E 'test(generated_grpc_code)'`",
        committed.display()
    );
    Ok(())
}
