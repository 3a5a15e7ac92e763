//! Small durable files of the Raft stores (vote, committed id, purge point,
//! snapshot) and the bridge that runs blocking file I/O off the reactor.
//!
//! Contract: [`write_atomic`] leaves either the old file or the new one,
//! never a partial one, and returns once the new one is durable (file and
//! directory entry fsynced); [`read_json`] returns `None` only for a missing
//! file and an error for a damaged one.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use openraft::{AnyError, StorageIOError};
use serde::de::DeserializeOwned;

use super::{NodeId, StorageError};
use crate::store::snapshot::sync_parent;

/// Runs `f` on tokio's blocking pool, so that fsync never stalls the
/// reactor; `what` names the failed action in the storage error.
pub(super) async fn blocking<T, F>(
    f: F,
    what: impl FnOnce(AnyError) -> StorageIOError<NodeId>,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(what(AnyError::new(&e)).into()),
        Err(join) => Err(what(AnyError::error(format!("storage task failed: {join}"))).into()),
    }
}

/// An `InvalidData` I/O error: a file that is there but cannot be used.
pub(super) fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, message)
}

/// Writes `bytes` to `path` through `path.tmp`, durably and atomically.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        // Best effort: a stale temporary file is overwritten by the next write.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The JSON value in `path`, or `None` if there is no such file.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        std::io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display()))
    })
}

/// Creates `dir` (and makes its entry durable) if it does not exist.
pub(super) fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    sync_parent(dir)
}
