//! Saving a snapshot of a store: one point-in-time read view streamed through
//! [`SnapshotWriter`].
//!
//! Guarantees: the header and every row come from the one view given, so the snapshot is the
//! store at one applied raft index; rows are streamed one at a time (memory stays at one DATA
//! frame whatever the store's size); [`encoded_len`] of a view equals the byte count
//! [`write_view`] then writes for the same view, so a sender can announce the size first.

use std::io::Write;

use raftstore::engine::ReadView;
use raftstore::state_export::{for_each_row, ImagePoint};
use raftstore::StorageError;

use crate::error::SnapshotError;
use crate::format::SnapshotHeader;
use crate::writer::{SnapshotWriter, Written};

/// The header describing `view`.
pub fn header_of(view: &dyn ReadView) -> Result<SnapshotHeader, SnapshotError> {
    let point = ImagePoint::read(view)
        .map_err(|err| SnapshotError::storage("reading where the store stands", err))?;
    Ok(SnapshotHeader {
        cluster_id: point.cluster_id,
        member_id: point.member_id,
        revision: point.revision,
        compact_revision: point.compact_revision,
        raft_index: point.applied_index,
        raft_term: point.applied_term,
        members: point.members,
        writer_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// Writes the snapshot of `view` to `out`.
pub fn write_view<W: Write>(view: &dyn ReadView, out: W) -> Result<(W, Written), SnapshotError> {
    let mut writer = SnapshotWriter::new(out, &header_of(view)?)?;
    let mut failure = None;
    let scanned = for_each_row(view, &mut |table, key, value| {
        writer.row(table, key, value).map_err(|err| {
            failure = Some(err);
            StorageError::corrupt("the snapshot output failed")
        })
    });
    if let Some(err) = failure {
        return Err(err);
    }
    scanned.map_err(|err| SnapshotError::storage("reading the store", err))?;
    writer.finish()
}

/// Counts bytes and discards them.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of the snapshot of `view`, digest included, found by encoding it once.
pub fn encoded_len(view: &dyn ReadView) -> Result<u64, SnapshotError> {
    let (counter, written) = write_view(view, Counter::default())?;
    debug_assert_eq!(counter.0, written.bytes);
    Ok(written.bytes)
}
