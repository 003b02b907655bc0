//! Restoring a snapshot into a new, empty store, as the single member of a new cluster.
//!
//! Guarantees:
//! - [`verify_file`] reads the whole file and checks every frame and the digest, changing
//!   nothing: callers run it before they touch any data directory;
//! - [`import`] streams the rows into the engine (bounded memory) and writes the raft state
//!   that makes it a store — the one synced write of [`StateImport::finish`] — only after the
//!   reader has checked the END frame and the digest; an error before leaves an engine with
//!   rows but no raft state, which the caller discards;
//! - the restored store holds exactly the snapshot's kv rows, leases and MVCC records (current
//!   and compacted revision, applied index), checked against the header.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use raftstore::engine::KvEngine;
use raftstore::pb::k3rspb::ClusterIdentity;
use raftstore::state_image::into_rows;
use raftstore::state_import::{FreshStart, StateImport};

use crate::error::SnapshotError;
use crate::format::SnapshotHeader;
use crate::reader::{SnapshotReader, Verified};

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub header: SnapshotHeader,
    pub rows: u64,
}

pub fn open_file(path: &Path) -> Result<BufReader<File>, SnapshotError> {
    let file = File::open(path)
        .map_err(|err| SnapshotError::io(format!("opening snapshot {}", path.display()), err))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

/// Reads and checks the whole snapshot file at `path`.
pub fn verify_file(path: &Path) -> Result<Verified, SnapshotError> {
    crate::reader::verify(open_file(path)?)
}

/// Restores the snapshot read from `input` into the empty `engine`, whose member becomes the
/// one member of the cluster `identity` describes.
pub fn import(
    input: impl Read,
    engine: Arc<dyn KvEngine>,
    identity: ClusterIdentity,
) -> Result<Restored, SnapshotError> {
    let mut reader = SnapshotReader::open(input)?;
    let mut target = StateImport::new(engine)
        .map_err(|err| SnapshotError::storage("preparing the new store", err))?;
    while let Some(image) = reader.next_data()? {
        for (table, row) in into_rows(image) {
            target
                .add(table, row.key, row.value)
                .map_err(|err| SnapshotError::storage("writing the new store", err))?;
        }
    }
    let header = reader.header().clone();
    let imported = target
        .finish(FreshStart {
            identity,
            index: header.raft_index,
            term: header.raft_term,
        })
        .map_err(|err| SnapshotError::storage("completing the new store", err))?;
    if (imported.revision, imported.compact_revision) != (header.revision, header.compact_revision)
    {
        return Err(SnapshotError::damaged(
            0,
            format!(
                "the header says revision {} compacted at {}, the data holds revision {} \
                 compacted at {}",
                header.revision,
                header.compact_revision,
                imported.revision,
                imported.compact_revision
            ),
        ));
    }
    Ok(Restored {
        header,
        rows: imported.rows,
    })
}

/// [`import`] from the snapshot file at `path`.
pub fn import_file(
    path: &Path,
    engine: Arc<dyn KvEngine>,
    identity: ClusterIdentity,
) -> Result<Restored, SnapshotError> {
    import(open_file(path)?, engine, identity)
}
