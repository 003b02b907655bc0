//! `KvEngine`: the storage seam under everything else.
//!
//! An engine holds a small fixed set of [`Table`]s of ordered byte keys. Guarantees every
//! implementation gives:
//! - a [`WriteBatch`] is applied atomically: after a crash either all of it is there or none;
//! - writes become durable in order: a crash keeps a prefix of the written batches, and
//!   `write(batch, true)` (or [`KvEngine::sync`]) makes that batch and every earlier one durable
//!   before returning;
//! - reads see every batch written before them (durable or not).

pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocks;
#[cfg(feature = "sled")]
pub mod sled_engine;

use std::path::Path;
use std::sync::Arc;

use crate::error::StorageError;

/// The tables an engine holds. Each is an ordered map of byte keys to byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// MVCC rows: 17-byte revision keys (18 for tombstones) to `mvccpb.KeyValue`.
    Kv,
    /// Small records: consistent index, current and compacted revisions, cluster identity.
    Meta,
    /// Raft log entries keyed by 8-byte big-endian index, plus raft's hard and conf state.
    RaftLog,
    /// Granted leases keyed by 8-byte big-endian lease ID (etcd's `lease` bucket).
    Lease,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 4] = [Table::Kv, Table::Meta, Table::RaftLog, Table::Lease];

    /// The table's name on disk (RocksDB column family, sled tree).
    pub fn name(self) -> &'static str {
        match self {
            Table::Kv => "kv",
            Table::Meta => "meta",
            Table::RaftLog => "raft_log",
            Table::Lease => "lease",
        }
    }
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        table: Table,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Changes applied atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put {
            table,
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete {
            table,
            key: key.into(),
        });
    }

    pub fn delete_range(
        &mut self,
        table: Table,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.ops.push(BatchOp::DeleteRange {
            table,
            start: start.into(),
            end: end.into(),
        });
    }

    /// Adds every change of `other` after this batch's own.
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

/// A visitor of [`ReadView::try_scan`]: `Ok(false)` stops, an error stops and is returned.
pub type FallibleVisit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StorageError> + 'a;

/// A consistent point-in-time read view of every table.
pub trait ReadView: Send + Sync {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Calls `visit` for each entry with `start <= key < end` (`end = None`: to the table's end)
    /// in ascending key order, until it returns `false`.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    /// As [`ReadView::scan`], with a `visit` that can fail: the first error stops the scan and
    /// is returned.
    fn try_scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut FallibleVisit<'_>,
    ) -> Result<(), StorageError> {
        let mut failure = None;
        self.scan(
            table,
            start,
            end,
            &mut |key, value| match visit(key, value) {
                Ok(go_on) => go_on,
                Err(err) => {
                    failure = Some(err);
                    false
                }
            },
        )?;
        failure.map_or(Ok(()), Err)
    }
}

/// A storage engine. Reads through the trait see the latest written state.
pub trait KvEngine: ReadView + Send + Sync + 'static {
    /// Applies `batch` atomically; with `sync` it and every earlier batch are durable on return.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError>;

    /// Makes every batch written so far durable.
    fn sync(&self) -> Result<(), StorageError>;

    /// A point-in-time view that later writes do not change.
    fn read_view(&self) -> Result<Arc<dyn ReadView>, StorageError>;

    /// Reclaims space freed by deletions (etcd's defragment). Contents are unchanged.
    fn compact_storage(&self) -> Result<(), StorageError>;

    /// Approximate bytes the engine occupies (etcd's `dbSize`).
    fn size_bytes(&self) -> u64;

    /// A short name for logs and status: `rocksdb`, `sled`, `memory`.
    fn kind(&self) -> &'static str;
}

/// Which engine to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    #[cfg(feature = "rocksdb")]
    RocksDb,
    #[cfg(feature = "sled")]
    Sled,
    Memory,
}

impl EngineKind {
    /// The engine used when none is named: RocksDB when compiled in, else sled, else memory.
    pub fn default_kind() -> Self {
        #[cfg(feature = "rocksdb")]
        {
            EngineKind::RocksDb
        }
        #[cfg(all(not(feature = "rocksdb"), feature = "sled"))]
        {
            EngineKind::Sled
        }
        #[cfg(all(not(feature = "rocksdb"), not(feature = "sled")))]
        {
            EngineKind::Memory
        }
    }

    /// Parses `rocksdb`, `sled` or `memory`; names an engine not compiled in as an error.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            #[cfg(feature = "rocksdb")]
            "rocksdb" => Ok(EngineKind::RocksDb),
            #[cfg(feature = "sled")]
            "sled" => Ok(EngineKind::Sled),
            "memory" => Ok(EngineKind::Memory),
            other => Err(format!(
                "unknown or not compiled-in storage engine {other:?} (built with: {})",
                Self::compiled_in().join(", ")
            )),
        }
    }

    pub fn compiled_in() -> Vec<&'static str> {
        [
            #[cfg(feature = "rocksdb")]
            "rocksdb",
            #[cfg(feature = "sled")]
            "sled",
            "memory",
        ]
        .to_vec()
    }

    /// Opens (creating if absent) the engine in directory `dir`. The memory engine ignores `dir`.
    pub fn open(self, dir: &Path) -> Result<Arc<dyn KvEngine>, StorageError> {
        let _ = dir;
        match self {
            #[cfg(feature = "rocksdb")]
            EngineKind::RocksDb => Ok(Arc::new(rocks::RocksEngine::open(dir)?)),
            #[cfg(feature = "sled")]
            EngineKind::Sled => Ok(Arc::new(sled_engine::SledEngine::open(dir)?)),
            EngineKind::Memory => Ok(Arc::new(memory::MemoryEngine::new())),
        }
    }
}
