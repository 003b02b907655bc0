//! Builds a new member's store from a state machine image streamed row by row (a restored
//! snapshot), with bounded memory.
//!
//! Guarantees:
//! - [`StateImport::new`] accepts only an engine that holds nothing: no raft state, no
//!   identity, no kv or lease row — a restore never mixes with older data;
//! - only state rows are accepted ([`crate::state_export::is_state_row`]), so an image can
//!   never write the raft log, the identity or the boot counter;
//! - rows are written in unsynced batches of at most [`BATCH_BYTES_MAX`] bytes;
//! - [`StateImport::finish`] checks that the imported MVCC records stand at the expected
//!   applied index, then writes the raft log's start (a compacted prefix ending at that index
//!   and term, this member the only voter) and the new identity in ONE synced write, which also
//!   makes every earlier batch durable. Until that write the engine holds no raft state, so an
//!   interrupted import is recognisable as unfinished (and the caller builds it in a staging
//!   directory it discards on failure).

use std::sync::Arc;

use raft::eraftpb::{ConfState, Snapshot, SnapshotMetadata};

use crate::engine::{KvEngine, Table, WriteBatch};
use crate::error::StorageError;
use crate::identity;
use crate::mvcc::meta;
use crate::pb::k3rspb::ClusterIdentity;
use crate::raft_log::RaftLogStore;
use crate::state_export::is_state_row;

/// Rows are written in batches of about this many key and value bytes.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Where the imported store starts its new raft log.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshStart {
    /// The identity of the new cluster; every member in it becomes a voter (learners stay
    /// learners).
    pub identity: ClusterIdentity,
    /// The applied index the imported state must stand at; the new log starts after it.
    pub index: u64,
    /// The term of that index.
    pub term: u64,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub rows: u64,
    pub revision: i64,
    pub compact_revision: i64,
}

/// An import in progress into an empty engine.
pub struct StateImport {
    engine: Arc<dyn KvEngine>,
    batch: WriteBatch,
    batch_bytes: usize,
    rows: u64,
}

impl StateImport {
    /// Starts an import into `engine`, which must hold nothing.
    pub fn new(engine: Arc<dyn KvEngine>) -> Result<Self, StorageError> {
        let log = RaftLogStore::open(engine.clone())?;
        let mut holds_rows = false;
        for table in [Table::Kv, Table::Lease] {
            engine.scan(table, &[], None, &mut |_, _| {
                holds_rows = true;
                false
            })?;
        }
        if !log.is_new() || identity::load(engine.as_ref())?.is_some() || holds_rows {
            return Err(StorageError::corrupt(
                "the target store is not empty: a snapshot is only imported into a new store",
            ));
        }
        Ok(Self {
            engine,
            batch: WriteBatch::new(),
            batch_bytes: 0,
            rows: 0,
        })
    }

    /// Adds one row of the image.
    pub fn add(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<(), StorageError> {
        if !is_state_row(table, &key) {
            return Err(StorageError::corrupt(format!(
                "the image holds a row that is not state: table {}, key {:?}",
                table.name(),
                String::from_utf8_lossy(&key)
            )));
        }
        self.batch_bytes += key.len() + value.len();
        self.batch.put(table, key, value);
        self.rows += 1;
        if self.batch_bytes >= BATCH_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.engine.write(std::mem::take(&mut self.batch), false)?;
        self.batch_bytes = 0;
        Ok(())
    }

    /// Completes the import (see the module doc).
    pub fn finish(mut self, start: FreshStart) -> Result<Imported, StorageError> {
        self.flush()?;
        let meta = meta::read(self.engine.as_ref())?;
        if meta.consistent_index != start.index {
            return Err(StorageError::corrupt(format!(
                "the image's state is applied up to raft index {}, not {} as announced",
                meta.consistent_index, start.index
            )));
        }
        let members = &start.identity.members;
        if !members.iter().any(|m| m.id == start.identity.member_id) {
            return Err(StorageError::corrupt(
                "the new identity does not list its own member",
            ));
        }
        let conf_state = ConfState {
            voters: members
                .iter()
                .filter(|m| !m.is_learner)
                .map(|m| m.id)
                .collect(),
            learners: members
                .iter()
                .filter(|m| m.is_learner)
                .map(|m| m.id)
                .collect(),
            ..Default::default()
        };
        let mut snapshot = Snapshot::default();
        let mut metadata = SnapshotMetadata {
            index: start.index,
            term: start.term,
            ..Default::default()
        };
        metadata.set_conf_state(conf_state);
        snapshot.set_metadata(metadata);
        let mut identity_batch = WriteBatch::new();
        identity::put(&mut identity_batch, &start.identity);
        RaftLogStore::open(self.engine.clone())?.apply_snapshot(&snapshot, identity_batch)?;
        Ok(Imported {
            rows: self.rows,
            revision: meta.current_revision.unwrap_or(1),
            compact_revision: meta.finished_compact_revision.unwrap_or(0),
        })
    }
}
