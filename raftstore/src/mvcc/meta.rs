//! The MVCC store's records in `Table::Meta`, private to the `mvcc` module.
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `consistent_index` | u64 big-endian | raft index of the last applied entry (absent: 0) |
//! | `current_revision` | i64 big-endian | the store's current revision (absent: 1, an empty store) |
//! | `scheduled_compact_revision` | i64 big-endian | revision of the last compaction begun |
//! | `finished_compact_revision` | i64 big-endian | revision of the last compaction completed (absent: never compacted) |
//!
//! Every apply writes these in the same atomic batch as the rows they describe. A value of any
//! other length is reported as corrupt, naming the key.

use crate::engine::{ReadView, Table, WriteBatch};
use crate::error::StorageError;

pub(super) const CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub(super) const CURRENT_REVISION: &[u8] = b"current_revision";
pub(super) const SCHEDULED_COMPACT_REVISION: &[u8] = b"scheduled_compact_revision";
pub(super) const FINISHED_COMPACT_REVISION: &[u8] = b"finished_compact_revision";

/// Every record of the MVCC state in `Table::Meta` (what a raft snapshot carries).
pub const STATE_KEYS: [&[u8]; 4] = [
    CONSISTENT_INDEX,
    CURRENT_REVISION,
    SCHEDULED_COMPACT_REVISION,
    FINISHED_COMPACT_REVISION,
];

/// The meta records as read at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub consistent_index: u64,
    pub current_revision: Option<i64>,
    pub scheduled_compact_revision: Option<i64>,
    pub finished_compact_revision: Option<i64>,
}

pub(crate) fn read(view: &dyn ReadView) -> Result<Meta, StorageError> {
    Ok(Meta {
        consistent_index: read_u64(view, CONSISTENT_INDEX)?.unwrap_or(0),
        current_revision: read_i64(view, CURRENT_REVISION)?,
        scheduled_compact_revision: read_i64(view, SCHEDULED_COMPACT_REVISION)?,
        finished_compact_revision: read_i64(view, FINISHED_COMPACT_REVISION)?,
    })
}

pub(super) fn put_u64(batch: &mut WriteBatch, key: &[u8], value: u64) {
    batch.put(Table::Meta, key, value.to_be_bytes());
}

pub(super) fn put_i64(batch: &mut WriteBatch, key: &[u8], value: i64) {
    batch.put(Table::Meta, key, value.to_be_bytes());
}

fn read_eight_bytes(view: &dyn ReadView, key: &[u8]) -> Result<Option<[u8; 8]>, StorageError> {
    let name = String::from_utf8_lossy(key);
    let Some(value) = view
        .get(Table::Meta, key)
        .map_err(|err| StorageError::io(format!("reading meta record {name:?}"), err))?
    else {
        return Ok(None);
    };
    let bytes: [u8; 8] = value.as_slice().try_into().map_err(|_| {
        StorageError::corrupt(format!(
            "meta record {name:?} is {} bytes long, not 8",
            value.len()
        ))
    })?;
    Ok(Some(bytes))
}

fn read_u64(view: &dyn ReadView, key: &[u8]) -> Result<Option<u64>, StorageError> {
    Ok(read_eight_bytes(view, key)?.map(u64::from_be_bytes))
}

fn read_i64(view: &dyn ReadView, key: &[u8]) -> Result<Option<i64>, StorageError> {
    Ok(read_eight_bytes(view, key)?.map(i64::from_be_bytes))
}
