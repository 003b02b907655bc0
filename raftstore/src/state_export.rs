//! The state machine read out of one point-in-time view, row by row, for snapshots that must
//! not hold the whole store in memory (etcd's Maintenance.Snapshot, k3rs snapshot files) and
//! for the raft snapshot image ([`crate::state_image`]).
//!
//! Guarantees:
//! - [`ImagePoint::read`] and [`for_each_row`] read only the view they are given, so as long as
//!   the caller passes the same view, the point and the rows describe the same applied index;
//! - [`for_each_row`] visits every kv row, then every lease record, then the MVCC meta records
//!   ([`STATE_KEYS`]) present, each table in key order, holding one row at a time; nothing
//!   else (raft log, identity, boot counter) is visited.

use crate::engine::{ReadView, Table};
use crate::error::StorageError;
use crate::mvcc::meta::{self, STATE_KEYS};
use crate::pb::etcdserverpb::Member;

/// Where a view of the state machine stands: the cluster, its applied index and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePoint {
    pub cluster_id: u64,
    /// The member whose store the view is of.
    pub member_id: u64,
    pub members: Vec<Member>,
    /// The raft index of the last entry applied (the store's consistent index).
    pub applied_index: u64,
    /// The term of that entry.
    pub applied_term: u64,
    /// The store's current revision (1 for an empty store).
    pub revision: i64,
    /// The revision of the last finished compaction (0: never compacted).
    pub compact_revision: i64,
}

impl ImagePoint {
    /// Reads the point of `view`; a view of a store that was never bootstrapped, or whose raft
    /// log no longer knows the term of its applied entry, is an error naming it.
    pub fn read(view: &dyn ReadView) -> Result<Self, StorageError> {
        let identity = crate::identity::load(view)?.ok_or_else(|| {
            StorageError::corrupt("the store holds no cluster identity: it was never bootstrapped")
        })?;
        let meta = meta::read(view)?;
        let applied_term =
            crate::raft_log::term_in_view(view, meta.consistent_index)?.ok_or_else(|| {
                StorageError::corrupt(format!(
                    "the raft log holds neither entry {} (the last applied) nor a compacted \
                     prefix ending there",
                    meta.consistent_index
                ))
            })?;
        Ok(Self {
            cluster_id: identity.cluster_id,
            member_id: identity.member_id,
            members: identity.members,
            applied_index: meta.consistent_index,
            applied_term,
            revision: meta.current_revision.unwrap_or(1),
            compact_revision: meta.finished_compact_revision.unwrap_or(0),
        })
    }
}

/// A visitor of [`for_each_row`]: the row's table, key and value; an error stops the export.
pub type RowVisit<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// Visits every row of the state machine in `view` (see the module doc for the order).
pub fn for_each_row(view: &dyn ReadView, visit: &mut RowVisit<'_>) -> Result<(), StorageError> {
    for table in [Table::Kv, Table::Lease] {
        view.try_scan(table, &[], None, &mut |key, value| {
            visit(table, key, value)?;
            Ok(true)
        })?;
    }
    for key in STATE_KEYS {
        if let Some(value) = view.get(Table::Meta, key)? {
            visit(Table::Meta, key, &value)?;
        }
    }
    Ok(())
}

/// Whether `key` of `table` is a row [`for_each_row`] could have produced: importers refuse
/// anything else, so an image can never overwrite the raft log or the identity.
pub fn is_state_row(table: Table, key: &[u8]) -> bool {
    match table {
        Table::Kv | Table::Lease => true,
        Table::Meta => STATE_KEYS.contains(&key),
        Table::RaftLog => false,
    }
}
