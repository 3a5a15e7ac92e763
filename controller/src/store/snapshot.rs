//! Snapshot files: the whole state as versioned JSON, replaced atomically.
//!
//! Contract: [`write`] leaves either the previous snapshot or the new one in
//! place, never a partial file, and returns only once the new one is durable
//! (file and directory entry fsynced). [`load`] reads what `write` wrote.

use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::MetadataState;

/// Bumped when the snapshot's shape changes incompatibly.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    state: &'a MetadataState,
}

#[derive(Deserialize)]
struct SnapshotVersion {
    version: u32,
}

#[derive(Deserialize)]
struct Snapshot {
    state: MetadataState,
}

/// The snapshot at `path`, or `None` if there is none.
pub(super) fn load(path: &Path) -> Result<Option<MetadataState>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::ReadSnapshot {
                path: path.to_owned(),
                source,
            })
        }
    };
    let decode_error = |source| StoreError::DecodeSnapshot {
        path: path.to_owned(),
        source,
    };
    // The version is checked first so that a newer snapshot is reported as
    // such, not as whatever field this version fails to parse.
    let SnapshotVersion { version } = serde_json::from_slice(&bytes).map_err(decode_error)?;
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedSnapshot {
            path: path.to_owned(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    let Snapshot { state } = serde_json::from_slice(&bytes).map_err(decode_error)?;
    Ok(Some(state))
}

/// Writes `state` to `tmp`, makes it durable, and renames it over `path`.
pub(super) fn write(state: &MetadataState, tmp: &Path, path: &Path) -> Result<(), StoreError> {
    let result = write_durably(state, tmp, path);
    if result.is_err() {
        // Best effort: a leftover temporary file is also removed on open.
        let _ = fs::remove_file(tmp);
    }
    result.map_err(|source| StoreError::WriteSnapshot {
        path: path.to_owned(),
        source,
    })
}

fn write_durably(state: &MetadataState, tmp: &Path, path: &Path) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(tmp)?);
    let snapshot = SnapshotRef {
        version: FORMAT_VERSION,
        state,
    };
    serde_json::to_writer(&mut out, &snapshot)?;
    out.flush()?;
    out.get_ref().sync_all()?;
    drop(out);
    fs::rename(tmp, path)?;
    sync_parent(path)
}

/// Makes a rename or a file creation in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
